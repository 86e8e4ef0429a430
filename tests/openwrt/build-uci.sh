#!/bin/sh
# Builds OpenWrt's uci CLI, libuci, libubox and jshn/jshn.sh from the C sources the
# crates.io crate libuci-sys vendors (fetched with cargo, built with cmake +
# libjson-c-dev). Idempotent; prints the install prefix (bin/uci, bin/jshn,
# share/libubox/jshn.sh, lib/*.so).
set -eu
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${LANVEIL_UCI_PREFIX:-$ROOT/target/openwrt-test/uci}"
if [ -x "$OUT/bin/uci" ] && [ -x "$OUT/bin/jshn" ] && [ -f "$OUT/share/libubox/jshn.sh" ]; then
	echo "$OUT"
	exit 0
fi
for p in cmake libjson-c-dev pkg-config; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -q '^installed$' ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" >&2
done
WORK="$ROOT/target/openwrt-test/uci-build"
rm -rf "$WORK"
mkdir -p "$WORK/fetch/src"
cat >"$WORK/fetch/Cargo.toml" <<'TOML'
[package]
name = "uci-fetch"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
libuci-sys = "=1.0.5"
[workspace]
TOML
echo 'fn main() {}' >"$WORK/fetch/src/main.rs"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
(cd "$WORK/fetch" && cargo fetch -q) >&2
SRC="$(cd "$WORK/fetch" && cargo metadata --format-version 1 -q |
	python3 -c 'import json,sys; m=json.load(sys.stdin); print([p["manifest_path"] for p in m["packages"] if p["name"]=="libuci-sys"][0].rsplit("/",1)[0])')"
cmake -S "$SRC/libubox" -B "$WORK/ubox" -DCMAKE_INSTALL_PREFIX="$OUT" -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF \
	-DCMAKE_INSTALL_RPATH="$OUT/lib" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$WORK/ubox" -j2 >&2
cmake --install "$WORK/ubox" >&2
cmake -S "$SRC/uci" -B "$WORK/uci" -DCMAKE_INSTALL_PREFIX="$OUT" -DBUILD_LUA=OFF -DBUILD_STATIC=OFF \
	-Dubox_include_dir="$OUT/include" -DCMAKE_LIBRARY_PATH="$OUT/lib" -DCMAKE_INSTALL_RPATH="$OUT/lib" \
	-DCMAKE_C_FLAGS="-I$OUT/include" -DCMAKE_EXE_LINKER_FLAGS="-L$OUT/lib" -DCMAKE_SHARED_LINKER_FLAGS="-L$OUT/lib" \
	-DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$WORK/uci" -j2 >&2
cmake --install "$WORK/uci" >&2
"$OUT/bin/uci" -h 2>&1 | grep -q 'Usage' || { echo "uci did not build" >&2; exit 1; }
echo "$OUT"

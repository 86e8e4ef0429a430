#!/usr/bin/env bash
# Stripped static binary sizes of lanveil for the router targets, DoT-only and DoT+DoH, built with the board
# tool (`cargo board build`, see board/README.md: static musl, the OpenWrt SDK's release settings, stripped).
# Writes tests/bench/results/footprint.json and prints a Markdown table. Takes ~10-20 min on 2 cores the first
# time (std is rebuilt from source per target). Needs the board toolchain (`cargo board setup`, root).
# Usage: bash tests/bench/footprint.sh [PROFILE...]   (default: aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4)
set -euo pipefail
cd "$(dirname "$0")/../.."
profiles=("$@"); [ ${#profiles[@]} -gt 0 ] || profiles=(aarch64_cortex-a53 arm_cortex-a7_neon-vfpv4)
out=tests/bench/results; mkdir -p "$out" target/bench-footprint
rows=()
for p in "${profiles[@]}"; do
  for variant in dot-doh dot-only; do
    flags=(); [ "$variant" = dot-only ] && flags=(--no-default-features)
    log=target/bench-footprint/$p-$variant.log
    echo "== cargo board build $p ${flags[*]}" >&2
    if cargo board build "$p" "${flags[@]}" >"$log" 2>&1; then
      cp "target/board/$p/lanveil" "target/bench-footprint/lanveil-$p-$variant"
      bytes=$(stat -c %s "target/bench-footprint/lanveil-$p-$variant")
      kind=$(file -b "target/bench-footprint/lanveil-$p-$variant" | tr -d '"')
      rows+=("{\"profile\":\"$p\",\"variant\":\"$variant\",\"bytes\":$bytes,\"file\":\"$kind\"}")
      printf '| %s | %s | %d B (%.0f KiB) |\n' "$p" "$variant" "$bytes" "$(echo "$bytes/1024" | bc -l)"
    else
      echo "build failed, see $log" >&2
      rows+=("{\"profile\":\"$p\",\"variant\":\"$variant\",\"error\":\"build failed, see $log\"}")
    fi
  done
done
(IFS=,; printf '{"date":"%s","commit":"%s","rustc":"%s","results":[%s]}\n' "$(date -u +%FT%TZ)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(/usr/bin/rustc --version 2>/dev/null || echo ?)" \
  "${rows[*]}") > "$out/footprint.json"

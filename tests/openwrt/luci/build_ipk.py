#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Packs openwrt/luci-app-lanveil into an ipk the way LuCI's luci.mk lays it out
(htdocs/ -> /www, root/ -> /; po/ is for the i18n packages and not shipped here),
for the emulated router: `opkg install` takes it like a feed build's ipk.

    tests/openwrt/luci/build_ipk.py OUTDIR      prints the ipk's path

Reproducible: entries sorted, uid/gid 0, one mtime (SOURCE_DATE_EPOCH or 0),
gzip without name or timestamp. Control fields from the package's Makefile
(LUCI_TITLE, LUCI_DEPENDS, PKG_VERSION, PKG_RELEASE, PKG_LICENSE, PKG_MAINTAINER).
The postinst is luci.mk's default (drop LuCI's caches, make rpcd reload plugins and ACLs).
"""
import gzip
import io
import os
import re
import sys
import tarfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PKG = os.path.join(ROOT, "openwrt", "luci-app-lanveil")
MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

POSTINST = """#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
"""


def makefile_vars(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^([A-Z_]+):=(.*)$", line.rstrip("\n"))
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2).strip()
    return out


def tar_bytes(entries):
    """entries: {path: (mode, bytes or None for a directory)}"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for path in sorted(entries):
            mode, data = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def data_entries():
    entries = {"./": (0o755, None)}
    for src, dest in (("htdocs", "www"), ("root", "")):
        base = os.path.join(PKG, src)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, base)
            parts = [p for p in (dest, "" if rel == "." else rel) if p]
            d = "./" + "/".join(parts) + "/" if parts else "./"
            # every parent directory as its own entry, as ipkg-build makes them
            acc = "."
            for p in d.strip("./").split("/") if d != "./" else []:
                acc += "/" + p
                entries.setdefault(acc + "/", (0o755, None))
            for f in sorted(filenames):
                full = os.path.join(dirpath, f)
                mode = 0o755 if os.access(full, os.X_OK) else 0o644
                entries[d + f] = (mode, open(full, "rb").read())
    return entries


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: build_ipk.py OUTDIR")
    mk = makefile_vars(os.path.join(PKG, "Makefile"))
    name = "luci-app-lanveil"
    version = "%s-r%s" % (mk["PKG_VERSION"], mk["PKG_RELEASE"])
    deps = ["libc"] + [d.lstrip("+") for d in mk["LUCI_DEPENDS"].split() if d.startswith("+")]
    data = tar_bytes(data_entries())
    control = "".join(
        "%s: %s\n" % kv
        for kv in (
            ("Package", name),
            ("Version", version),
            ("Depends", ", ".join(deps)),
            ("Source", "feeds/lanveil/" + name),
            ("SourceName", name),
            ("License", mk["PKG_LICENSE"]),
            ("Section", "luci"),
            ("SourceDateEpoch", str(MTIME)),
            ("Maintainer", mk["PKG_MAINTAINER"]),
            ("Architecture", "all"),
            ("Installed-Size", str(len(data))),
            ("Description", mk["LUCI_TITLE"]),
        )
    )
    ctl = tar_bytes(
        {
            "./": (0o755, None),
            "./control": (0o644, control.encode()),
            "./postinst": (0o755, POSTINST.encode()),
        }
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for member, body in (
            ("./debian-binary", b"2.0\n"),
            ("./data.tar.gz", gz(data)),
            ("./control.tar.gz", gz(ctl)),
        ):
            info = tarfile.TarInfo(member)
            info.mtime = MTIME
            info.mode = 0o644
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    out = os.path.join(sys.argv[1], "%s_%s_all.ipk" % (name, version))
    os.makedirs(sys.argv[1], exist_ok=True)
    with open(out, "wb") as f:
        f.write(gz(buf.getvalue()))
    print(out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Writes openwrt/luci-app-lanveil/po/templates/lanveil.pot from the strings the app
passes to _() (views, overview card) and the menu titles, as LuCI's i18n-scan.pl
collects them. `--check` exits 1 when the committed file differs (test_luci.sh)."""
import json
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PKG = os.path.join(ROOT, "openwrt", "luci-app-lanveil")
POT = os.path.join(PKG, "po", "templates", "lanveil.pot")
CALL = re.compile(r"""\b_\(\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*[,)]""")


def unescape_js(s):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


def po_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def collect():
    found = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(PKG, "htdocs")):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.endswith(".js"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, PKG)
            text = open(path, encoding="utf-8").read()
            for m in CALL.finditer(text):
                s = unescape_js(m.group(1) if m.group(1) is not None else m.group(2))
                line = text.count("\n", 0, m.start()) + 1
                found.setdefault(s, []).append("%s:%d" % (rel, line))
    menu = os.path.join(PKG, "root", "usr", "share", "luci", "menu.d", "luci-app-lanveil.json")
    for node in json.load(open(menu, encoding="utf-8")).values():
        if "title" in node:
            found.setdefault(node["title"], []).append(os.path.relpath(menu, PKG))
    return found


def render(found):
    out = ['msgid ""', 'msgstr "Content-Type: text/plain; charset=UTF-8"', ""]
    for s in sorted(found):
        out.append("#: " + " ".join(found[s]))
        out.append("msgid " + po_quote(s))
        out.append('msgstr ""')
        out.append("")
    return "\n".join(out)


def main():
    text = render(collect())
    if "--check" in sys.argv:
        cur = open(POT, encoding="utf-8").read() if os.path.exists(POT) else ""
        if cur != text:
            sys.exit("lanveil.pot is out of date: run tests/openwrt/luci/make_pot.py")
        return
    os.makedirs(os.path.dirname(POT), exist_ok=True)
    open(POT, "w", encoding="utf-8").write(text)
    print(POT)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""The browser half of tests/openwrt/test_luci.sh: headless Chromium (Debian's, via
chromium-driver and Selenium) inside the LAN client's namespace, against LuCI on the
emulated router at http://192.168.1.1/. Prints one "PASS name" / "FAIL name: why" line
per check; router-side facts come from `router.sh exec router -- ...`.
Screenshots go to $LANVEIL_LUCI_OUT/*.png."""
import os
import re
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BASE = "http://192.168.1.1/cgi-bin/luci"
ROUTER = os.environ["LANVEIL_LUCI_ROUTER"]
OUT = os.environ["LANVEIL_LUCI_OUT"]
PASSWORD = os.environ["LANVEIL_LUCI_PASSWORD"]
HOSTILE = "https://203.0.113.56/q<img\tsrc=x\tonerror=window.lanveilPwned=1>#dot.test"
failed = 0


def report(name, ok, why=""):
    global failed
    if ok:
        print("PASS " + name, flush=True)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, str(why).replace("\n", " ")[:300]), flush=True)
    return ok


def router(*cmd, check=False):
    p = subprocess.run([ROUTER, "exec", "router", "--", *cmd], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr))
    return p


def wait(what, fn, secs=30):
    """fn() until truthy; returns its value or None (after secs)."""
    end = time.time() + secs
    last = None
    while time.time() < end:
        try:
            last = fn()
            if last:
                return last
        except WebDriverException:
            pass
        time.sleep(0.3)
    return None


def text_of(d, css):
    """The first match's text ("" if none). LuCI re-renders polled views (the overview card, the status
    page) while it is read: an element replaced between the lookup and `.text` is looked up again."""
    for _ in range(5):
        els = d.find_elements(By.CSS_SELECTOR, css)
        try:
            return els[0].text if els else ""
        except StaleElementReferenceException:
            time.sleep(0.1)
    return ""


def shot(d, name):
    d.save_screenshot(os.path.join(OUT, name + ".png"))


def upstream_rows(d):
    rows = {}
    for tr in d.find_elements(By.CSS_SELECTOR, "#lanveil-upstreams tr.lanveil-upstream"):
        cells = {c: tr.find_element(By.CSS_SELECTOR, "td.lanveil-" + c).text
                 for c in ("name", "url", "state", "rtt", "cert", "error")}
        rows[cells["name"]] = cells
    return rows


_seq = [0]


def dig(name):
    """A fresh name under NAME each time (dnsmasq and lanveil cache answers)."""
    _seq[0] += 1
    p = subprocess.run(["dig", "+short", "+time=2", "+tries=1", "@192.168.1.1",
                        "n%d-%d.%s" % (os.getpid(), _seq[0], name), "A"],
                       capture_output=True, text=True, timeout=10)
    return p.stdout.strip()


def config_sha():
    return router("sha256sum", "/etc/config/lanveil").stdout.split(" ")[0]


def reload_count():
    return router("sh", "-c", "logread | grep -c 'configuration reloaded'").stdout.strip()


def service_running():
    out = router("ubus", "call", "service", "list", '{"name":"lanveil"}').stdout
    return '"running": true' in out


def open_settings(d):
    d.get(BASE + "/admin/services/lanveil/settings")
    return wait("settings form", lambda: d.find_elements(By.ID, "widget.cbid.lanveil.rig.url"))


def set_url(d, value):
    # The form may be rendered again right after it appears (LuCI's apply reloads): find it afresh.
    for attempt in range(5):
        try:
            inp = d.find_element(By.ID, "widget.cbid.lanveil.rig.url")
            inp.clear()
            inp.send_keys(value)
            inp.send_keys("\t")
            if inp.get_attribute("value") == value:
                return
        except WebDriverException:
            pass
        time.sleep(1)
        wait("settings form", lambda: d.find_elements(By.ID, "widget.cbid.lanveil.rig.url"))


def save_apply(d):
    # The footer's "Save & Apply" (a ComboButton: its first item is the action).
    btn = d.find_element(By.CSS_SELECTOR, ".cbi-page-actions .cbi-button-apply")
    d.execute_script("arguments[0].scrollIntoView()", btn)
    items = btn.find_elements(By.CSS_SELECTOR, "li")
    target = items[0] if items else btn
    try:
        target.click()
    except WebDriverException:  # covered by a notification banner: click it as the user would after scrolling
        d.execute_script("arguments[0].click()", target)


def apply_field(d, option, value):
    """VALUE typed into the form's field for lanveil.OPTION, then Save & Apply: True once LuCI
    says the apply is confirmed."""
    fld = d.find_element(By.ID, "widget.cbid.lanveil." + option)
    d.execute_script("arguments[0].scrollIntoView()", fld)
    fld.clear()
    fld.send_keys(value)
    save_apply(d)
    return wait("applied", lambda: "Configuration changes applied" in d.find_element(By.TAG_NAME, "body").text, 90)


def uci_get(key):
    return router("uci", "-q", "get", key).stdout.strip()


def leak_table():
    """The init script's leak guard table is loaded."""
    return router("nft", "list", "table", "inet", "lanveil_leak").returncode == 0


def leak_status(d, want, secs=30):
    """Status page's leak guard line: (data-state, text) once it has want, or the last seen."""
    d.get(BASE + "/admin/services/lanveil/status")
    wait("leak guard " + want, lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-leak-guard[data-state='%s']" % want), secs)
    els = d.find_elements(By.ID, "lanveil-leak-guard")
    try:
        return (els[0].get_attribute("data-state") if els else None, text_of(d, "#lanveil-leak-guard"))
    except WebDriverException:
        return (None, text_of(d, "#lanveil-leak-guard"))


LEAK_FLAG = "input[data-widget-id='widget.cbid.lanveil.openwrt.leak_guard']"
LEAK_ZONES = "[id='cbid.lanveil.openwrt.leak_guard_zone']"
FORCE_ZONES = "[id='cbid.lanveil.openwrt.force_dns_zone']"
# test_luci.sh's operator: an rpcd login with the app's and luci-base's ACLs, nothing else.
OPERATOR = ("operator", "operator-pass")


def zone_values(d, option):
    """A zone list's value, as the form reads it (the widget's getValue)."""
    v = d.execute_script("var e = document.getElementById('cbid.lanveil.openwrt.' + arguments[0]);"
                         "return e ? L.dom.callClassMethod(e, 'getValue') : null", option)
    return v if isinstance(v, list) else ([v] if v else [])


def leak_zone_values(d):
    return zone_values(d, "leak_guard_zone")


def zone_choices(d, option):
    """The zones a zone list offers (its items' values)."""
    v = d.execute_script("var e = document.getElementById('cbid.lanveil.openwrt.' + arguments[0]);"
                         "return e ? Array.prototype.map.call(e.querySelectorAll('li[data-value]'),"
                         " function(li) { return li.getAttribute('data-value') }) : null", option)
    return sorted(v) if isinstance(v, list) else []


def zone_label(d, option, zone):
    return d.execute_script("var e = document.getElementById('cbid.lanveil.openwrt.' + arguments[0]);"
                            "var li = e && e.querySelector('li[data-value=\"' + arguments[1] + '\"]');"
                            "return li ? li.textContent : null", option, zone)


def router_zones():
    """The router's firewall zones, by name (uci on the router, as root)."""
    out = router("sh", "-c", 'i=0; while n="$(uci -q get "firewall.@zone[$i].name")"; do echo "$n"; i=$((i+1)); done').stdout
    return sorted(out.split())


def pick_zone(d, css, zone):
    """Adds zone to a zone list, clicked as a user does (dispatched by script: the page's
    sticky header may cover it)."""
    dd = d.find_element(By.CSS_SELECTOR, css)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", dd)
    d.execute_script("arguments[0].click()", dd)
    wait("dropdown open", lambda: dd.get_attribute("open") is not None, 10)
    items = dd.find_elements(By.CSS_SELECTOR, "li[data-value='%s']" % zone)
    if items:
        d.execute_script("arguments[0].click()", items[0])
    d.execute_script("arguments[0].click()", d.find_element(By.TAG_NAME, "h2"))
    wait("dropdown closed", lambda: dd.get_attribute("open") is None, 10)


def set_leak_flag(d, on):
    box = d.find_element(By.CSS_SELECTOR, LEAK_FLAG)
    d.execute_script("arguments[0].scrollIntoView()", box)
    if box.is_selected() != on:
        d.execute_script("arguments[0].click()", box)
    return box.is_selected() == on


def leak_guard_checks(d):
    # --- the leak guard: on by default, off and on again from Settings, its zones, on Status ---
    # Saved through Save & Apply (the daemon's check, then LuCI's apply: procd's reload
    # trigger runs the init script, which loads or removes table inet lanveil_leak).
    st, text = leak_status(d, "on")
    report("status-leak-guard-on", st == "on" and text.startswith("on") and "wan" in text and leak_table(), "%s: %r" % (st, text))
    shot(d, "05d-status-leak-guard")
    # A second zone to guard (no network in it: the guard stays on wan's devices).
    router("sh", "-c", "uci -q delete firewall.lanveil_guest; uci set firewall.lanveil_guest=zone && "
           "uci set firewall.lanveil_guest.name=guest && uci set firewall.lanveil_guest.input=REJECT && "
           "uci set firewall.lanveil_guest.output=ACCEPT && uci set firewall.lanveil_guest.forward=REJECT && uci commit firewall", check=True)
    report("settings-form-leak-guard", open_settings(d), d.current_url)
    flag = wait("leak guard flag", lambda: d.find_elements(By.CSS_SELECTOR, LEAK_FLAG), 20)
    zones = d.find_elements(By.CSS_SELECTOR, LEAK_ZONES)
    report("settings-leak-guard-rendered", flag and flag[0].is_selected() and zones and zones[0].is_displayed() and leak_zone_values(d) == ["wan"],
           "flag %s, zones %s" % (flag and flag[0].is_selected(), zones and leak_zone_values(d)))
    # Both zone lists offer the router's zones (the plugin's zones method), guest included.
    want = router_zones()
    report("settings-zone-lists-offer-router-zones", "guest" in want and zone_choices(d, "leak_guard_zone") == want and zone_choices(d, "force_dns_zone") == want,
           "router %s, leak_guard_zone %s, force_dns_zone %s" % (want, zone_choices(d, "leak_guard_zone"), zone_choices(d, "force_dns_zone")))
    report("settings-zone-label-networks", zone_label(d, "leak_guard_zone", "lan") == "lan: lan" and zone_label(d, "leak_guard_zone", "guest") == "guest",
           "%r, %r" % (zone_label(d, "leak_guard_zone", "lan"), zone_label(d, "leak_guard_zone", "guest")))
    set_leak_flag(d, False)
    hidden = wait("zones hidden", lambda: not [z for z in d.find_elements(By.CSS_SELECTOR, LEAK_ZONES) if z.is_displayed()], 10)
    report("settings-leak-guard-zone-depends-on-flag", hidden, "zone select still shown with the guard off")
    shot(d, "05e-settings-leak-guard-off")
    save_apply(d)
    applied = wait("applied", lambda: "Configuration changes applied" in d.find_element(By.TAG_NAME, "body").text, 90)
    off = wait("uci off", lambda: uci_get("lanveil.openwrt.leak_guard") == "0", 30)
    report("leak-guard-off-saved", applied and off, "uci get lanveil.openwrt.leak_guard = %r" % uci_get("lanveil.openwrt.leak_guard"))
    gone = wait("table removed", lambda: not leak_table(), 30)
    report("leak-guard-off-table-removed", gone, "table inet lanveil_leak still loaded")
    st, text = leak_status(d, "off")
    report("status-leak-guard-off", st == "off" and text.startswith("off"), "%s: %r" % (st, text))
    # On again, guarding wan and guest: the flag's default (unset) or '1', the list written.
    report("settings-form-leak-guard-on", open_settings(d), d.current_url)
    wait("leak guard flag", lambda: d.find_elements(By.CSS_SELECTOR, LEAK_FLAG), 20)
    set_leak_flag(d, True)
    shown = wait("zones shown", lambda: [z for z in d.find_elements(By.CSS_SELECTOR, LEAK_ZONES) if z.is_displayed()], 10)
    report("settings-leak-guard-zone-shown-again", shown and leak_zone_values(d) == ["wan"], "zones %s" % leak_zone_values(d))
    if shown:
        pick_zone(d, LEAK_ZONES, "guest")
    report("settings-leak-guard-zone-picked", sorted(leak_zone_values(d)) == ["guest", "wan"], "zones %s" % leak_zone_values(d))
    shot(d, "05f-settings-leak-guard-zones")
    save_apply(d)
    applied = wait("applied", lambda: "Configuration changes applied" in d.find_element(By.TAG_NAME, "body").text, 90)
    zones_saved = wait("zones saved", lambda: sorted(uci_get("lanveil.openwrt.leak_guard_zone").split()) == ["guest", "wan"], 30)
    report("leak-guard-zone-saved", applied and zones_saved, "uci get lanveil.openwrt.leak_guard_zone = %r" % uci_get("lanveil.openwrt.leak_guard_zone"))
    report("leak-guard-on-saved", uci_get("lanveil.openwrt.leak_guard") in ("", "1"), "uci get lanveil.openwrt.leak_guard = %r" % uci_get("lanveil.openwrt.leak_guard"))
    back = wait("table loaded", leak_table, 30)
    report("leak-guard-on-table-loaded", back, "no table inet lanveil_leak")
    st, text = leak_status(d, "on")
    report("status-leak-guard-on-zones", st == "on" and re.search(r"zone\(s\) (wan guest|guest wan)$", text), "%s: %r" % (st, text))
    # A server= line outside uci that names the ISP's plain resolver: dnsmasq's queries there
    # are dropped, and Status counts them.
    router("sh", "-c", "{ cp /etc/dnsmasq.conf /tmp/dnsmasq.conf.leak 2>/dev/null || : >/tmp/dnsmasq.conf.leak; } && "
           "echo server=198.51.100.53 >>/etc/dnsmasq.conf && /etc/init.d/dnsmasq restart")
    wait("dnsmasq answers", lambda: dig("probe.test") == "1.2.3.78", 30)
    for _ in range(5):
        dig("probe.test")
    st, text = leak_status(d, "dropped")
    report("status-leak-guard-dropped", st == "dropped" and re.search(r"dropped [1-9]\d* packets", text), "%s: %r" % (st, text))
    shot(d, "05g-status-leak-guard-dropped")


def force_dns_zone_checks(d):
    # --- the capture's zones: unset shows lan; a zone the config names that the router no
    # longer has stays listed and is kept when another zone is added and saved ---
    router("sh", "-c", "uci -q delete lanveil.openwrt.force_dns_zone; uci commit lanveil", check=True)
    report("settings-form-force-dns-zone", open_settings(d), d.current_url)
    wait("zone list", lambda: d.find_elements(By.CSS_SELECTOR, FORCE_ZONES), 20)
    report("settings-force-dns-zone-unset-shows-lan", zone_values(d, "force_dns_zone") == ["lan"], "zones %s" % zone_values(d, "force_dns_zone"))
    router("sh", "-c", "uci add_list lanveil.openwrt.force_dns_zone=lan && uci add_list lanveil.openwrt.force_dns_zone=gone && uci commit lanveil", check=True)
    report("settings-form-force-dns-zone-gone", open_settings(d), d.current_url)
    wait("zone list", lambda: d.find_elements(By.CSS_SELECTOR, FORCE_ZONES), 20)
    report("settings-zone-gone-still-shown", sorted(zone_values(d, "force_dns_zone")) == ["gone", "lan"] and "gone" in zone_choices(d, "force_dns_zone")
           and zone_label(d, "force_dns_zone", "gone") == "gone (not a firewall zone)",
           "zones %s, choices %s, label %r" % (zone_values(d, "force_dns_zone"), zone_choices(d, "force_dns_zone"), zone_label(d, "force_dns_zone", "gone")))
    pick_zone(d, FORCE_ZONES, "guest")
    report("settings-force-dns-zone-picked", sorted(zone_values(d, "force_dns_zone")) == ["gone", "guest", "lan"], "zones %s" % zone_values(d, "force_dns_zone"))
    shot(d, "05h-settings-force-dns-zones")
    save_apply(d)
    applied = wait("applied", lambda: "Configuration changes applied" in d.find_element(By.TAG_NAME, "body").text, 90)
    saved = wait("zones saved", lambda: sorted(uci_get("lanveil.openwrt.force_dns_zone").split()) == ["gone", "guest", "lan"], 30)
    report("force-dns-zone-saved", applied and saved, "uci get lanveil.openwrt.force_dns_zone = %r" % uci_get("lanveil.openwrt.force_dns_zone"))


def zones_unread_checks(d):
    # --- the plugin's zones call fails for one page load (no firewall config: the call's status
    # is "not found"; an ACL without it or an rpcd error fail the same rpc call): the zone lists
    # show the zones the config names, as they are, say why, and Save & Apply keeps them ---
    force, leak = sorted(uci_get("lanveil.openwrt.force_dns_zone").split()), sorted(uci_get("lanveil.openwrt.leak_guard_zone").split())
    router("mv", "/etc/config/firewall", "/tmp/firewall.zones-unread", check=True)
    try:
        call = router("ubus", "call", "luci.lanveil", "zones")
        report("zones-call-fails-without-firewall-config", call.returncode != 0 and "Not found" in call.stderr,
               "exit %d: %r %r" % (call.returncode, call.stdout, call.stderr))
        report("settings-form-zones-unread", open_settings(d), d.current_url)
        wait("zone list", lambda: d.find_elements(By.CSS_SELECTOR, FORCE_ZONES), 20)
    finally:
        router("mv", "/tmp/firewall.zones-unread", "/etc/config/firewall", check=True)
    note = wait("notice", lambda: text_of(d, "#lanveil-zones-unread"), 10) or ""
    report("settings-zones-unread-notice", "firewall zones could not be read" in note, note or text_of(d, "#maincontent")[:200])
    labels = {z: zone_label(d, "force_dns_zone", z) for z in force}
    labels.update({"leak:" + z: zone_label(d, "leak_guard_zone", z) for z in leak})
    report("settings-zones-unread-configured-shown-plainly", force == ["gone", "guest", "lan"] and leak == ["guest", "wan"]
           and zone_choices(d, "force_dns_zone") == force and zone_choices(d, "leak_guard_zone") == leak
           and sorted(zone_values(d, "force_dns_zone")) == force and sorted(zone_values(d, "leak_guard_zone")) == leak
           and all(v == k.split(":")[-1] for k, v in labels.items()),
           "config %s / %s, choices %s / %s, labels %s" % (force, leak, zone_choices(d, "force_dns_zone"), zone_choices(d, "leak_guard_zone"), labels))
    shot(d, "05j-settings-zones-unread")
    # Another setting changed and saved: the zone lists are written as they were (not emptied).
    applied = apply_field(d, "main.query_log", "7")
    saved = wait("saved", lambda: uci_get("lanveil.main.query_log") == "7", 30)
    report("settings-zones-unread-save-keeps-zones", applied and saved and sorted(uci_get("lanveil.openwrt.force_dns_zone").split()) == force
           and sorted(uci_get("lanveil.openwrt.leak_guard_zone").split()) == leak,
           "query_log %r, force_dns_zone %r, leak_guard_zone %r" % (uci_get("lanveil.main.query_log"), uci_get("lanveil.openwrt.force_dns_zone"),
                                                                   uci_get("lanveil.openwrt.leak_guard_zone")))


def operator_zone_checks():
    # --- the zone lists for a login with only the app's ACLs (no read of the firewall config) ---
    d = browser("chromium-profile-operator")
    try:
        d.get(BASE + "/")
        wait("login form", lambda: [e for e in d.find_elements(By.NAME, "luci_password") if e.is_displayed()], 30)
        u = d.find_element(By.NAME, "luci_username")
        u.clear()
        u.send_keys(OPERATOR[0])
        d.find_element(By.NAME, "luci_password").send_keys(OPERATOR[1])
        d.find_element(By.NAME, "luci_password").submit()
        # No logout link in its menu (that node needs ACLs it does not have): logged in = the app's menu entry.
        report("operator-login-luci", wait("logged in", lambda: d.find_elements(By.CSS_SELECTOR, "a[href$='/admin/services/lanveil']")), d.current_url)
        report("operator-settings-form", open_settings(d), text_of(d, "#maincontent")[:200])
        wait("zone list", lambda: d.find_elements(By.CSS_SELECTOR, LEAK_ZONES), 20)
        # force_dns_zone also lists the zone force_dns_zone_checks saved that the router has not.
        want = router_zones()
        report("operator-zone-lists-offer-router-zones", "guest" in want and zone_choices(d, "leak_guard_zone") == want
               and zone_choices(d, "force_dns_zone") == sorted(want + ["gone"]),
               "router %s, leak_guard_zone %s, force_dns_zone %s" % (want, zone_choices(d, "leak_guard_zone"), zone_choices(d, "force_dns_zone")))
        # The page itself cannot read the firewall config (rpcd refuses the session).
        d.set_script_timeout(20)
        fw = d.execute_async_script("var done = arguments[arguments.length - 1];"
                              "L.require('uci').then(function(u) { return u.load('firewall') })"
                              ".then(function() { done('loaded') }, function(e) { done('refused: ' + e) })")
        lv = d.execute_async_script("var done = arguments[arguments.length - 1];"
                                    "L.require('uci').then(function(u) { return u.load('lanveil') })"
                                    ".then(function() { done('loaded') }, function(e) { done('refused: ' + e) })")
        report("operator-cannot-read-firewall-config", lv == "loaded" and (fw or "").startswith("refused") and "Permission denied" in fw, "lanveil %r, firewall %r" % (lv, fw))
        shot(d, "05i-settings-operator")
    finally:
        d.quit()


def operator_zone_checks_retried():
    """A second browser on the 2-core rig right after an apply: its login or a page load timed
    out in some suite runs. One more try with a fresh browser when the first one did not pass
    every check; the second try's results are the ones reported.
    What is known (an apply, then a fresh browser's login, timed step by step over ~140 rounds):
    it happens only while the machine is busy with something else (another test, another
    browser starting), about one round in 15 then, never in ~60 quiet rounds; it is a page load
    (the login page itself, or the login POST) that never completes ("Timed out receiving
    message from renderer"), with uhttpd's script child for it alive the whole time, blocked in
    poll, and rpcd and ubusd idle. Ruled out: an rpcd or uhttpd restart (same processes
    throughout), the apply's rollback window (confirmed before; rpcd idle), rpcd held by a
    plugin call (no child, idle), uhttpd's script limit (-n 3: one child), the lanveil reload
    the apply triggers (done before). Not found: what the script child waits for."""
    global report
    real_report = report
    for attempt in (1, 2):
        results = []
        report = lambda name, ok, why="": results.append((name, ok, why)) or ok
        try:
            operator_zone_checks()
        except (TimeoutException, WebDriverException) as e:
            results.append(("operator-zones-exception", False, repr(e)))
        finally:
            report = real_report
        if all(ok for _, ok, _ in results) or attempt == 2:
            for name, ok, why in results:
                report(name, ok, why)
            return
        print("# operator zone checks: %s; once more" % [r for r in results if not r[1]][:2], flush=True)


# --- the plugin's calls failing (a ubus status, not an answer) ---------------------------------
PLUGIN = "/usr/share/rpcd/ucode/lanveil.uc"
FAIL_FILE = "/tmp/lanveil-luci-fail"
FAIL_CALLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail-calls.uc")


def router_stdin(data, script, *args):
    return subprocess.run([ROUTER, "exec", "router", "--", "sh", "-c", script, "_", *args], input=data,
                          capture_output=True, text=True, timeout=60)


def fail_calls(text):
    """The calls the test plugin fails from now on ("METHOD STATUS" lines; "" for none)."""
    router_stdin(text, 'cat >"$1"', FAIL_FILE)


def rpcd_answers(method, want_ok, secs=30):
    """rpcd (re-executed by SIGHUP) answers luci.lanveil METHOD: ok, or with "Method not found"."""
    def answered():
        p = router("ubus", "-t", "5", "call", "luci.lanveil", method)
        return p.returncode == 0 if want_ok else (p.returncode != 0 and "Method not found" in p.stderr)
    return wait("rpcd " + method, answered, secs)


def install_failing_plugin():
    """The shipped plugin with tests/openwrt/luci/fail-calls.uc in place of its last line; rpcd
    reloads it (SIGHUP, as the package's postinst; sessions are kept). True once it answers."""
    shipped = router("cat", PLUGIN).stdout
    if shipped.rstrip("\n").split("\n")[-1] != "return { 'luci.lanveil': methods };":
        return False
    wrapped = shipped.rstrip("\n").rsplit("\n", 1)[0] + "\n" + open(FAIL_CALLS).read()
    fail_calls("presets 3\n")
    p = router_stdin(wrapped, 'cp -p "$1" /tmp/lanveil.uc.shipped && cat >"$1" && kill -HUP "$(pidof rpcd)"', PLUGIN)
    return p.returncode == 0 and rpcd_answers("presets", False)


def restore_plugin():
    """The shipped plugin back (it ignores FAIL_FILE: presets answers again once rpcd has it)."""
    fail_calls("presets 3\n")
    router("sh", "-c", 'cp -p /tmp/lanveil.uc.shipped "$1" && kill -HUP "$(pidof rpcd)"', "_", PLUGIN)
    ok = rpcd_answers("presets", True)
    router("sh", "-c", 'rm -f "$1" /tmp/lanveil.uc.shipped', "_", FAIL_FILE)
    return ok


def rpc_failure_checks(d):
    # Every call the views make, failing with a ubus status (3: the method missing from an older
    # plugin; 9: an exception in it): the page says which call failed and why (LuCI's error's
    # first line, without the stack it appends: no "rpc.js"), never the call's expected default
    # read as an answer.
    report("failing-plugin-installed", install_failing_plugin(), router("cat", FAIL_FILE).stdout)
    try:
        failing_calls_checks(d)
    finally:
        report("failing-plugin-removed", restore_plugin(), "rpcd does not answer presets with the shipped plugin")
        report("plugin-as-shipped", router("sh", "-c", '[ ! -e /tmp/lanveil.uc.shipped ] && ! grep -q lanveil_test "$1" && '
                                            '[ "$(tail -n 1 "$1")" = "return { \'luci.lanveil\': methods };" ]', "_", PLUGIN).returncode == 0,
               "plugin file not restored")


def failing_calls_checks(d):
    # Status: the status call fails. Not "runs, but its control socket does not answer", no
    # stale init status, leak guard or data.
    fail_calls("status 9\n")
    d.get(BASE + "/admin/services/lanveil/status")
    st = wait("unread", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='unread']"), 30)
    text = text_of(d, "#lanveil-service-state")
    report("status-page-status-call-failed", st and text.startswith("The status could not be read from the router:")
           and "luci.lanveil/status" in text and "Unspecified error" in text and "rpc.js" not in text, "%s: %r" % (st and "unread", text))
    report("status-page-status-call-failed-no-stale", not d.find_elements(By.CSS_SELECTOR, "#lanveil-upstreams")
           and text_of(d, "#lanveil-init-status") == "" and text_of(d, "#lanveil-leak-guard") == "",
           "upstreams %s, init %r, leak guard %r" % (bool(d.find_elements(By.CSS_SELECTOR, "#lanveil-upstreams")),
                                                     text_of(d, "#lanveil-init-status"), text_of(d, "#lanveil-leak-guard")))
    shot(d, "14-status-call-failed")
    d.get(BASE + "/admin/status/overview")
    card = wait("card unknown", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-overview-state[data-state='unknown']"), 30)
    text = text_of(d, "#lanveil-overview-state")
    report("card-status-call-failed", card and "luci.lanveil/status" in text and "Unspecified error" in text and "rpc.js" not in text, text)

    # The signals call fails (as a plugin without the method): not "none in force".
    fail_calls("signals 3\n")
    d.get(BASE + "/admin/services/lanveil/status")
    sig = wait("signals unread", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-signals[data-state='unread']"), 30)
    text = text_of(d, "#lanveil-signals")
    report("status-page-signals-call-failed", sig and text.startswith("Cannot read the signals:") and "luci.lanveil/signals" in text
           and "Method not found" in text and "rpc.js" not in text, text or text_of(d, "#lanveil-data")[-200:])

    # The service call fails: the button's result names the call and why; nothing restarted.
    fail_calls("service 9\n")
    wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 30)
    pid_before = router("sh", "-c", "pidof lanveil").stdout.strip()
    d.find_element(By.ID, "lanveil-restart").click()
    res = wait("restart result", lambda: "failed" in text_of(d, "#lanveil-action-result") and text_of(d, "#lanveil-action-result"), 30) or ""
    report("status-page-service-call-failed", res.startswith("restart: failed (") and "luci.lanveil/service" in res and "Unspecified error" in res and "rpc.js" not in res, res)
    report("status-page-service-call-failed-nothing-done", router("sh", "-c", "pidof lanveil").stdout.strip() == pid_before and service_running(),
           "pid %s before, %s after" % (pid_before, router("sh", "-c", "pidof lanveil").stdout.strip()))

    # Settings: presets, zones (as an older plugin without them), probe and check fail.
    fail_calls("presets 3\nzones 3\nprobe 9\ncheck 9\n")
    report("settings-form-calls-failed", open_settings(d), d.current_url)
    note = wait("presets notice", lambda: text_of(d, "#lanveil-presets-unread"), 20) or ""
    report("settings-presets-call-failed", note.startswith("The presets could not be read (") and "luci.lanveil/presets" in note
           and "Method not found" in note and "rpc.js" not in note, note or text_of(d, "#maincontent")[:200])
    note = text_of(d, "#lanveil-zones-unread")
    report("settings-zones-call-failed-names-call", "firewall zones could not be read" in note and "luci.lanveil/zones" in note
           and "Method not found" in note and "rpc.js" not in note, note)
    click_probe(d)
    state = wait("probe failed", lambda: text_of(d, "#lanveil-probe-rig .lanveil-probe-state"), 30) or ""
    report("settings-probe-call-failed", state.startswith("The probe could not run:") and "luci.lanveil/probe" in state
           and "Unspecified error" in state and "rpc.js" not in state, state)
    before_sha, before_reloads = config_sha(), reload_count()
    save_apply(d)
    box = wait("check error", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-check-error[data-state='unchecked']"), 30)
    text = text_of(d, "#lanveil-check-error")
    report("settings-check-call-failed", box and text.startswith("Not applied: the configuration could not be checked")
           and "luci.lanveil/check" in text and "Unspecified error" in text and "refused" not in text and "unknown error" not in text and "rpc.js" not in text,
           text or text_of(d, "#maincontent")[:200])
    shot(d, "15-settings-calls-failed")
    time.sleep(3)
    report("settings-check-call-failed-not-applied", config_sha() == before_sha and reload_count() == before_reloads
           and "Configuration changes applied" not in d.find_element(By.TAG_NAME, "body").text,
           "config changed or daemon reloaded")


# A zone name fw4 refuses (not an identifier) that is markup.
EVIL_ZONE = "x<img/src=x/onerror=window.lanveilPwned=5>"


def zones_unloaded_checks(d):
    # --- zones fw4 does not load (option enabled '0', a name fw4 refuses) that the settings name:
    # not offered as zones, labelled with why where the config names them, and a warning lists
    # them with the zone that is no firewall zone at all (uci only; no firewall reload) ---
    router("sh", "-c", "cp -p /etc/config/firewall /tmp/firewall.unloaded && cp -p /etc/config/lanveil /tmp/lanveil.unloaded", check=True)
    try:
        router("sh", "-c", 'set -e\n'
               'uci set firewall.lvz_off=zone; uci set firewall.lvz_off.name=offz; uci set firewall.lvz_off.enabled=0\n'
               'uci set firewall.lvz_bad=zone; uci set firewall.lvz_bad.name=1bad\n'
               'uci set firewall.lvz_evil=zone; uci set firewall.lvz_evil.name="$1"\n'
               'uci set firewall.lvz_spare=zone; uci set firewall.lvz_spare.name=spare; uci set firewall.lvz_spare.enabled=no\n'
               'uci commit firewall\n'
               'uci -q delete lanveil.openwrt.force_dns_zone || :\n'
               'for z in lan offz 1bad "$1"; do uci add_list lanveil.openwrt.force_dns_zone="$z"; done\n'
               'uci -q delete lanveil.openwrt.leak_guard_zone || :\n'
               'for z in wan gone; do uci add_list lanveil.openwrt.leak_guard_zone="$z"; done\n'
               'uci commit lanveil', "_", EVIL_ZONE, check=True)
        report("settings-form-zones-unloaded", open_settings(d), d.current_url)
        wait("zone list", lambda: d.find_elements(By.CSS_SELECTOR, FORCE_ZONES), 20)
        force, leak = zone_choices(d, "force_dns_zone"), zone_choices(d, "leak_guard_zone")
        report("settings-zone-lists-offer-loaded-zones-only", force == sorted(["1bad", "lan", "offz", "wan", EVIL_ZONE]) and leak == ["gone", "lan", "wan"],
               "force_dns_zone %s, leak_guard_zone %s" % (force, leak))
        report("settings-zones-unloaded-kept-in-lists", sorted(zone_values(d, "force_dns_zone")) == sorted(["1bad", "lan", "offz", EVIL_ZONE])
               and sorted(zone_values(d, "leak_guard_zone")) == ["gone", "wan"], "%s / %s" % (zone_values(d, "force_dns_zone"), zone_values(d, "leak_guard_zone")))
        labels = [zone_label(d, "force_dns_zone", z) for z in ("offz", "1bad")] + [zone_label(d, "leak_guard_zone", "gone")]
        report("settings-zone-disabled-labelled", labels[0] == "offz (disabled in the firewall)", labels)
        report("settings-zone-invalid-labelled", labels[1] == "1bad (the firewall does not load it: invalid zone section)", labels)
        report("settings-zone-gone-labelled", labels[2] == "gone (not a firewall zone)", labels)
        note = wait("warning", lambda: text_of(d, "#lanveil-zones-unloaded"), 10) or ""
        report("settings-zones-unloaded-warning", note.startswith("These settings name zones the firewall does not load: Zones captured: ")
               and "offz (disabled in the firewall), 1bad (the firewall does not load it: invalid zone section), " + EVIL_ZONE in note
               and "; Zones guarded: gone (not a firewall zone)." in note and "lan (" not in note and "wan (" not in note, note)
        imgs = d.execute_script("return document.querySelectorAll('#maincontent img').length")
        pwned = d.execute_script("return window.lanveilPwned === undefined ? null : window.lanveilPwned")
        report("settings-zone-name-markup-as-text", imgs == 0 and pwned is None and EVIL_ZONE in (zone_label(d, "force_dns_zone", EVIL_ZONE) or ""),
               "%s img elements, window.lanveilPwned = %r, label %r" % (imgs, pwned, zone_label(d, "force_dns_zone", EVIL_ZONE)))
        shot(d, "05k-settings-zones-unloaded")
    finally:
        router("sh", "-c", "cp -p /tmp/firewall.unloaded /etc/config/firewall && cp -p /tmp/lanveil.unloaded /etc/config/lanveil && "
               "rm -f /tmp/firewall.unloaded /tmp/lanveil.unloaded")
    report("zones-unloaded-undone", router("sh", "-c", "! grep -q lvz_ /etc/config/firewall && ! grep -q offz /etc/config/lanveil").returncode == 0, "left behind")


def spki_pin(pem):
    """sha256/BASE64 of the certificate's SubjectPublicKeyInfo, computed here with openssl."""
    pub = subprocess.run(["openssl", "x509", "-in", pem, "-pubkey", "-noout"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True, check=True).stdout
    import base64
    import hashlib
    return "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def click_probe(d):
    btn = d.find_element(By.CSS_SELECTOR, "[id='cbid.lanveil.rig._probe'], button[data-widget-id='cbid.lanveil.rig._probe'], #cbi-lanveil-rig-_probe button")
    d.execute_script("arguments[0].scrollIntoView()", btn)
    btn.click()
    return wait("probe result", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-probe-rig .lanveil-probe-state"), 30)


def browser(profile):
    """Debian's headless chromium with a profile directory of its own under OUT."""
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1100", "--user-data-dir=" + os.path.join(OUT, profile)):
        o.add_argument(a)
    o.binary_location = "/usr/bin/chromium"
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(60)
    return d


def isolated(name, checks, d):
    """checks(d); an exception there is a FAIL (name) with its reason, and the run goes on."""
    try:
        checks(d)
    except Exception as e:
        report(name, False, repr(e))


def main():
    d = browser("chromium-profile")
    try:
        run(d)
    finally:
        d.quit()


def run(d):
    # --- login as root ------------------------------------------------------------------
    d.get(BASE + "/")
    # The login form is shown by LuCI's JS once the page has loaded.
    shown = wait("login form", lambda: [e for e in d.find_elements(By.NAME, "luci_password") if e.is_displayed()], 30)
    report("login-page", shown, d.title)
    shot(d, "01-login")
    u = d.find_element(By.NAME, "luci_username")
    u.clear()
    u.send_keys("root")
    d.find_element(By.NAME, "luci_password").send_keys(PASSWORD)
    d.find_element(By.NAME, "luci_password").submit()
    ok = wait("logged in", lambda: d.find_elements(By.CSS_SELECTOR, "a[href$='/admin/logout']"))
    report("login-root", ok, d.current_url)

    # --- the front page's card ------------------------------------------------------------
    d.get(BASE + "/admin/status/overview")
    card = wait("card", lambda: "up" in text_of(d, "#lanveil-overview-state") and text_of(d, "#lanveil-overview-state"), 40)
    report("overview-card", card and "1 of 1 upstreams up" in card, card or text_of(d, "body")[:200])
    shot(d, "02-overview")
    cards = d.find_elements(By.XPATH, "//*[@id='lanveil-overview']/ancestor::div[contains(@class,'cbi-section')][1]")
    if cards:
        d.execute_script("arguments[0].scrollIntoView()", cards[0])
        cards[0].screenshot(os.path.join(OUT, "02-overview-card.png"))

    # --- Services -> lanveil -> Status ------------------------------------------------------
    link = wait("menu", lambda: [a for a in d.find_elements(By.CSS_SELECTOR, "a[href$='/admin/services/lanveil']")])
    report("menu-services-lanveil", link, "no Services → lanveil link")
    if link:
        d.execute_script("arguments[0].click()", link[0])
    ok = wait("status", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 40)
    report("status-page-running", ok and "/admin/services/lanveil" in d.current_url, d.current_url)
    rows = wait("rig up", lambda: (lambda r: r if r.get("rig", {}).get("state") == "up" else None)(upstream_rows(d)), 30) or upstream_rows(d)
    rig = rows.get("rig", {})
    report("status-upstream-up", rig.get("state") == "up" and "203.0.113.53" in rig.get("url", ""), rows)
    report("status-upstream-rtt", re.fullmatch(r"\d+ ms", rig.get("rtt", "")), rig.get("rtt"))
    report("status-cert-expiry", re.search(r"\d{4}-\d\d-\d\d .*\(\d+ days\)", rig.get("cert", "")), rig.get("cert"))
    report("status-dnsmasq-wired", text_of(d, "#lanveil-dnsmasq") == "yes", text_of(d, "#lanveil-dnsmasq"))
    report("status-capture-active", text_of(d, "#lanveil-capture") == "yes", text_of(d, "#lanveil-capture"))
    report("status-clock", text_of(d, "#lanveil-clock").startswith("synchronized"), text_of(d, "#lanveil-clock"))
    report("status-counters", "queries" in text_of(d, "#lanveil-counters"), text_of(d, "#lanveil-counters")[:100])
    shot(d, "03-status")

    # --- Settings: presets, inline validation, a second DoT server -------------------------------
    report("settings-form", open_settings(d), d.current_url)
    presets = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "select[id$='.rig._preset'] option, [id$='.rig._preset'] li")]
    report("settings-presets", any("dns.quad9.net" in (p or "") for p in presets), presets[:5])
    set_url(d, "not a url")
    inp = d.find_element(By.ID, "widget.cbid.lanveil.rig.url")
    report("settings-inline-validation", "cbi-input-invalid" in (inp.get_attribute("class") or ""), inp.get_attribute("class"))
    # Every scheme the daemon reads passes the form's own check (the daemon's checker has the
    # last word at Save & Apply): DoQ, a name with '_', a scoped IPv6 address, https without a path.
    for name, url in [("quic", "quic://203.0.113.53:853#dot.test"), ("underscore", "https://dns_1.example"),
                      ("scoped-ipv6", "tls://[fe80::53%eth0]:853#dot.test"), ("https-no-path", "https://203.0.113.53#dot.test")]:
        set_url(d, url)
        inp = d.find_element(By.ID, "widget.cbid.lanveil.rig.url")
        report("settings-accepts-" + name, "cbi-input-invalid" not in (inp.get_attribute("class") or ""), url)
    before_sha, before_reloads = config_sha(), reload_count()
    set_url(d, "tls://203.0.113.54:853#dot2.test")
    shot(d, "04-settings")
    save_apply(d)
    # LuCI applies with rollback: the browser confirms, as a user's page does before it reloads.
    applied = wait("applied", lambda: "Configuration changes applied" in d.find_element(By.TAG_NAME, "body").text, 90)
    report("apply-confirmed-in-page", applied, text_of(d, "body")[:200])
    changed = wait("config", lambda: "dot2.test" in router("cat", "/etc/config/lanveil").stdout, 40)
    report("apply-changes-config-file", changed and config_sha() != before_sha, router("cat", "/etc/config/lanveil").stdout[-300:])
    reloaded = wait("reload", lambda: reload_count() != before_reloads, 30)
    report("apply-reloads-daemon", reloaded, "no new 'configuration reloaded' in logread")
    ans = wait("dig", lambda: dig("probe.test") == "1.2.3.78", 30)
    report("lan-answered-by-new-upstream", ans, dig("probe.test"))
    d.get(BASE + "/admin/services/lanveil/status")
    rows = wait("dot2 up", lambda: (lambda r: r if "203.0.113.54" in r.get("rig", {}).get("url", "") and r["rig"]["state"] == "up" else None)(upstream_rows(d)), 40) or upstream_rows(d)
    report("status-new-upstream-up", rows.get("rig", {}).get("state") == "up" and "dot2.test" in rows.get("rig", {}).get("url", ""), rows)
    shot(d, "05-status-new-upstream")

    # --- probe from the router, pin the key in one click ------------------------------------------------
    report("settings-form-probe", open_settings(d), d.current_url)
    want_pin = spki_pin(os.path.join(OUT, "dot2.test.pem"))
    probe_box = click_probe(d)
    report("probe-authenticated", probe_box and text_of(d, "#lanveil-probe-rig .lanveil-probe-state").startswith("Authenticated"), text_of(d, "#lanveil-probe-rig"))
    report("probe-shows-spki", text_of(d, "#lanveil-probe-rig .lanveil-probe-spki") == want_pin, "%r, want %r" % (text_of(d, "#lanveil-probe-rig .lanveil-probe-spki"), want_pin))
    shot(d, "05b-settings-probe")
    pins = d.find_elements(By.CSS_SELECTOR, "#lanveil-probe-rig .lanveil-probe-pin")
    if pins:
        pins[0].click()
    before_reloads = reload_count()
    save_apply(d)
    applied = wait("applied", lambda: "Configuration changes applied" in d.find_element(By.TAG_NAME, "body").text, 90)
    pinned = wait("pin in config", lambda: want_pin in router("cat", "/etc/config/lanveil").stdout, 30)
    report("pin-one-click-applied", applied and pinned, router("cat", "/etc/config/lanveil").stdout[-300:])
    report("pin-reloads-daemon", wait("reload", lambda: reload_count() != before_reloads, 30), "no reload")
    report("pinned-upstream-answers", wait("dig", lambda: dig("probe.test") == "1.2.3.78", 30), dig("probe.test"))
    # LAN signals: a captive-portal URI set in the form shows up in Status's signals.
    report("settings-form-signals", open_settings(d), d.current_url)
    applied = apply_field(d, "main.captive_portal_uri", "https://router.lan/capport")
    report("signal-applied", applied and "router.lan/capport" in router("uci", "get", "lanveil.main.captive_portal_uri").stdout,
           router("uci", "-q", "get", "lanveil.main.captive_portal_uri").stdout)
    d.get(BASE + "/admin/services/lanveil/status")
    sig = wait("signals", lambda: "https://router.lan/capport" in text_of(d, "#lanveil-signals") and text_of(d, "#lanveil-signals"), 30)
    report("status-shows-signals", sig and "dnsmasq_dhcp_option" in sig, text_of(d, "#lanveil-signals") or text_of(d, "#lanveil-data")[-200:])

    # --- the leak guard (its own function: a failure there still runs the checks after it) ---
    isolated("leak-guard-exception", leak_guard_checks, d)
    # The zone lists (with the guest zone leak_guard_checks added).
    isolated("force-dns-zone-exception", force_dns_zone_checks, d)
    isolated("zones-unread-exception", zones_unread_checks, d)
    operator_zone_checks_retried()
    router("sh", "-c", "if [ -f /tmp/dnsmasq.conf.leak ]; then "
           "if [ -s /tmp/dnsmasq.conf.leak ]; then cp /tmp/dnsmasq.conf.leak /etc/dnsmasq.conf; else rm -f /etc/dnsmasq.conf; fi; "
           "rm -f /tmp/dnsmasq.conf.leak; /etc/init.d/dnsmasq restart; fi; uci -q delete firewall.lanveil_guest; uci commit firewall; "
           "uci -q delete lanveil.openwrt.leak_guard; uci -q delete lanveil.openwrt.leak_guard_zone; "
           "uci -q delete lanveil.openwrt.force_dns_zone; uci add_list lanveil.openwrt.force_dns_zone=lan; uci -q delete lanveil.main.query_log; "
           "uci commit lanveil; /etc/init.d/lanveil reload")
    report("leak-guard-restored", wait("dig", lambda: dig("probe.test") == "1.2.3.78", 30) and leak_table(), "no answer or no guard")

    # The hostile upstream: a probe whose failure text carries the certificate's name (markup).
    report("settings-form-hostile-probe", open_settings(d), d.current_url)
    set_url(d, "tls://203.0.113.55:853#dot.test")
    click_probe(d)
    state = wait("probe failed", lambda: text_of(d, "#lanveil-probe-rig .lanveil-probe-state").startswith("Failed") and text_of(d, "#lanveil-probe-rig .lanveil-probe-state"), 30) or ""
    report("hostile-cert-name-shown-as-text", "evil<img src=x onerror=window.lanveilPwned=2>.test" in state, state)
    imgs = d.execute_script("return document.querySelectorAll('#lanveil-probe-rig img').length")
    pwned = d.execute_script("return window.lanveilPwned === undefined ? null : window.lanveilPwned")
    report("hostile-cert-name-no-element", imgs == 0, "%s img elements" % imgs)
    report("hostile-cert-name-no-script", pwned is None, "window.lanveilPwned = %r" % pwned)
    shot(d, "05c-settings-hostile-probe")

    # --- an invalid URL: the daemon's error in the form, nothing applied ---------------------------
    report("settings-form-again", open_settings(d), d.current_url)
    before_sha, before_reloads = config_sha(), reload_count()
    set_url(d, "tls://203.0.113.300:853#dot2.test")
    save_apply(d)
    msg = wait("check message", lambda: text_of(d, "#lanveil-check-message"), 30)
    report("invalid-url-daemon-error-shown", msg and msg.startswith("/etc/config/lanveil:") and "url" in msg, msg or text_of(d, "body")[:300])
    time.sleep(3)
    report("invalid-url-error-stays", text_of(d, "#lanveil-check-message") == msg, text_of(d, "#lanveil-check-message"))
    d.execute_script("window.scrollTo(0, 0)")
    shot(d, "06-settings-invalid")
    report("invalid-url-config-untouched", config_sha() == before_sha, "config file changed")
    report("invalid-url-no-reload", reload_count() == before_reloads, "daemon reloaded")
    report("invalid-url-still-on-dot2", dig("probe.test") == "1.2.3.78", dig("probe.test"))

    # --- hostile data: rendered as text ----------------------------------------------------------------
    router("sh", "-c", "uci set lanveil.evil=upstream && uci set lanveil.evil.url=\"$1\" && "
           "uci commit lanveil && /etc/init.d/lanveil reload", "_", HOSTILE, check=True)
    d.get(BASE + "/admin/services/lanveil/status")
    rows = wait("evil row", lambda: (lambda r: r if "evil" in r else None)(upstream_rows(d)), 40) or {}
    evil = rows.get("evil", {})
    report("hostile-url-shown-as-text", "<img" in evil.get("url", "") and "onerror" in evil.get("url", ""), evil)
    imgs = d.execute_script("return document.querySelectorAll('#maincontent img, #lanveil-data img').length")
    pwned = d.execute_script("return window.lanveilPwned === undefined ? null : window.lanveilPwned")
    report("hostile-url-no-element", imgs == 0, "%s img elements" % imgs)
    report("hostile-url-no-script", pwned is None, "window.lanveilPwned = %r" % pwned)
    shot(d, "07-status-hostile")
    d.get(BASE + "/admin/status/overview")
    wait("card", lambda: text_of(d, "#lanveil-overview-state"), 30)
    pwned = d.execute_script("return window.lanveilPwned === undefined ? null : window.lanveilPwned")
    report("hostile-overview-no-script", pwned is None and "evil" in text_of(d, "#lanveil-overview"), text_of(d, "#lanveil-overview"))
    router("sh", "-c", "uci delete lanveil.evil && uci commit lanveil && /etc/init.d/lanveil reload", check=True)

    # --- a captive portal announced on the WAN (the udhcpc hook's call): a warning on Status ---------------
    router("lanveil", "--control", "/var/run/lanveil/daemon/control.sock", "wan-portal", "set",
           "https://portal.example/api", "192.0.2.1", check=True)
    d.get(BASE + "/admin/services/lanveil/status")
    warn = wait("captive warning", lambda: text_of(d, "#lanveil-captive"), 30) or ""
    report("captive-portal-warning", "signalled" in warn and "https://portal.example/api" in warn, warn)
    shot(d, "07a-status-captive")
    router("lanveil", "--control", "/var/run/lanveil/daemon/control.sock", "wan-portal", "clear", check=True)
    gone = wait("warning gone", lambda: not d.find_elements(By.ID, "lanveil-captive"), 30)
    report("captive-portal-warning-cleared", gone, text_of(d, "#lanveil-captive"))

    # --- the daemon runs but does not answer (SIGSTOP): the page says so, shows no stale data ---------------
    d.get(BASE + "/admin/services/lanveil/status")
    wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 30)
    pid = router("sh", "-c", "pidof lanveil").stdout.strip()
    router("kill", "-STOP", pid)
    try:
        silent = wait("silent", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='silent']"), 60)
        report("silent-daemon-page-says-so", silent and "does not answer" in text_of(d, "#lanveil-service-state"), text_of(d, "#lanveil-service-state"))
        report("silent-daemon-no-stale-data", not d.find_elements(By.CSS_SELECTOR, "#lanveil-upstreams"), "upstream table still shown")
        shot(d, "07b-status-silent")
    finally:
        router("kill", "-CONT", pid)
    back = wait("answering again", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 60)
    report("silent-daemon-back", back and d.find_elements(By.CSS_SELECTOR, "#lanveil-upstreams"), text_of(d, "#lanveil-service-state"))

    # --- stop / start / restart from the page ----------------------------------------------------------
    d.get(BASE + "/admin/services/lanveil/status")
    wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 30)
    d.find_element(By.ID, "lanveil-stop").click()
    res = wait("stop result", lambda: "done" in text_of(d, "#lanveil-action-result") and text_of(d, "#lanveil-action-result"), 30)
    report("button-stop-result", res == "stop: done", text_of(d, "#lanveil-action-result"))
    st = wait("stopped", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='stopped']"), 30)
    report("stopped-page-says-so", st and text_of(d, "#lanveil-service-state") == "The lanveil service is not running.", text_of(d, "#lanveil-service-state"))
    report("stopped-no-stale-data", not d.find_elements(By.CSS_SELECTOR, "#lanveil-upstreams"), "upstream table still shown")
    report("stopped-really", not service_running(), "procd still runs lanveil")
    shot(d, "08-status-stopped")
    d.get(BASE + "/admin/status/overview")
    card = wait("card", lambda: text_of(d, "#lanveil-overview-state"), 30)
    report("overview-says-stopped", card and "not running" in card, card)
    d.get(BASE + "/admin/services/lanveil/status")
    wait("state", lambda: text_of(d, "#lanveil-service-state"), 30)
    d.find_element(By.ID, "lanveil-start").click()
    res = wait("start result", lambda: "done" in text_of(d, "#lanveil-action-result") and text_of(d, "#lanveil-action-result"), 30)
    report("button-start-result", res == "start: done", text_of(d, "#lanveil-action-result"))
    st = wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 40)
    report("started-page-says-running", st and service_running(), text_of(d, "#lanveil-service-state"))
    pid_before = router("sh", "-c", "pidof lanveil").stdout.strip()
    d.find_element(By.ID, "lanveil-restart").click()
    res = wait("restart result", lambda: "done" in text_of(d, "#lanveil-action-result") and text_of(d, "#lanveil-action-result"), 30)
    report("button-restart-result", res == "restart: done", text_of(d, "#lanveil-action-result"))
    pid_after = wait("new pid", lambda: (lambda p: p if p and p != pid_before else None)(router("sh", "-c", "pidof lanveil").stdout.strip()), 30)
    report("restart-new-process", pid_after, "pid %s before, %s after" % (pid_before, pid_after))
    st = wait("running", lambda: d.find_elements(By.CSS_SELECTOR, "#lanveil-service-state[data-state='running']"), 40)
    report("restarted-page-says-running", st, text_of(d, "#lanveil-service-state"))

    # --- zones the firewall does not load; every call failing (own functions: a failure there
    # still runs the checks after it, and the shipped plugin is put back) ---
    isolated("zones-unloaded-exception", zones_unloaded_checks, d)
    isolated("rpc-failure-exception", rpc_failure_checks, d)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # an unexpected error is a failure, with its reason
        report("browser-exception", False, repr(e))
    sys.exit(1 if failed else 0)

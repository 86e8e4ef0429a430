#!/usr/bin/env python3
"""Cache-miss latency over an emulated WAN (issue 17), lanveil side by side with other forwarders.

Each *rig* is two network namespaces joined by `wan-delay` (tests/src/bin/wan-delay.rs), a userspace delay
line between two TUN devices (this kernel has no netem):

    ns C: load generator --UDP--> FORWARDER (127.0.0.1:port) --DoT--> tun ==[delay, loss]==> tun  ns S: upstream (DoT :853)

Every SYN, TLS flight and answer crosses the delay line; the upstream (dnsdist, or Debian's unbound with
WAN_UPSTREAM=unbound, answering every name itself, no recursion) closes idle TCP connections after
`--server-idle` seconds, as public resolvers do (Cloudflare: about 10 s). Each forwarder has its own upstream
instance at its own address (10.77.<rig>.10+i), all configured alike, so no forwarder's connections can
disturb another's (a burst's wave of new connections made one shared dnsdist 1.7.3 close another
forwarder's established connection). The rigs run at the same time, so the whole
run stays within ~15 min on 2 cores; all forwarders of a rig see the same schedule at the same moments,
each with its own unique names (no cache can answer):

  gaps   idle gaps of 5 s, 30 s, 2 min before short Poisson bursts of queries, then 50 names at once
         after 2 min idle (burst after silence); cold start at the beginning
  long   one 10-min gap (2 min in --quick)
  loss1  1 % loss each way: Poisson queries with 12-s gaps in between
  loss3  3 % loss each way: the same

Latency is reported as (latency - RTT) / RTT. Writes tests/bench/results/wan.json and wan.md.
Normally started by tests/bench/wan.sh.
"""

from __future__ import annotations

import argparse
import math
import datetime as dt
import json
import os
import random
import re
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (shared helpers: PKI, DNS query builder, process wrapper, versions)

ROOT = peers.ROOT
LANVEIL = Path(os.environ.get("LANVEIL_BIN", peers.LANVEIL)).resolve()
DELAY = ROOT / "target/debug/wan-delay"
TLS_NAME = peers.TLS_NAME
log = peers.log

# name -> base UDP port in namespace C (loopback); one namespace per rig, so ports repeat across rigs
FORWARDERS = {"lanveil": 5301, "lanveil-noprobe": 5308, "lanveil-rto0": 5307, "lanveil-base": 5302,
              "kresd": 5303, "unbound": 5304, "stubby": 5305, "dnsdist": 5306,
              "lanveil-doh": 5309, "lanveil-doh-rto0": 5310, "lanveil-doh-noprobe": 5311}
# run only when named in --only: lanveil over DoH (HTTP/2), and without the retransmission-timeout floor or
# the loss probe there
OPT_IN = ("lanveil-doh", "lanveil-doh-rto0", "lanveil-doh-noprobe")
# lanveil variants (UCI lines): lanveil-base behaves as before issue 17 (no standby, the kernel's 200-ms
# retransmission floor, no loss probe; it still sends the RFC 7828 option, which this upstream ignores);
# the others each turn one mechanism off
VARIANTS = {"lanveil": {}, "lanveil-noprobe": {"upstream_loss_probe": "0"},
            "lanveil-rto0": {"upstream_tcp_rto_min_ms": "0"},
            "lanveil-base": {"upstream_standby_s": "0", "upstream_tcp_rto_min_ms": "0", "upstream_loss_probe": "0"},
            "lanveil-doh": {}, "lanveil-doh-rto0": {"upstream_tcp_rto_min_ms": "0"},
            "lanveil-doh-noprobe": {"upstream_loss_probe": "0"}}


# The emulated network (delay line), the upstream and the load generator run SCHED_FIFO so that other jobs on
# this shared machine do not add their scheduling delays to every forwarder's figures; the forwarders under
# test run at normal priority.
RT = ["chrt", "-f", "10"]
# The upstream: dnsdist (Quad9's front end) by default; unbound holds the first answer on a new TLS connection
# back by 2-3 round trips (it answers only once the client's next segment arrives), which no public resolver
# is known to do, so it would measure unbound's quirk rather than the forwarders.
UPSTREAM_KIND = os.environ.get("WAN_UPSTREAM", "dnsdist")


def ipns(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


# ------------------------------------------------------------------ forwarders


def forwarder_conf(name: str, port: int, up: str, work: Path) -> tuple[list[str], dict]:
    """Command and the settings that matter for this benchmark (recorded in the results)."""
    if name.startswith("lanveil"):
        extra = VARIANTS[name]
        url = (f"https://{up}/dns-query#{TLS_NAME}" if name.startswith("lanveil-doh")
               else f"tls://{up}:853#{TLS_NAME}")
        conf = work / f"{name}.uci"
        conf.write_text(
            f"config lanveil 'main'\n\tlist listen '127.0.0.1:{port}'\n\toption log_level '{os.environ.get('WAN_LOG_LEVEL', 'warn')}'\n"
            + "".join(f"\toption {k} '{v}'\n" for k, v in extra.items())
            + f"\nconfig upstream 'wan'\n\toption url '{url}'\n\toption ca_file '{work}/ca.pem'\n")
        settings = {"upstream_idle_timeout_ms": 20000,
                    "upstream_standby_s": int(extra.get("upstream_standby_s", 600)),
                    "upstream_tcp_rto_min_ms": int(extra.get("upstream_tcp_rto_min_ms", 50)),
                    "upstream_loss_probe": int(extra.get("upstream_loss_probe", 1)),
                    "edns_tcp_keepalive": "sent on DoT, honoured", "tls_resumption": "no",
                    "padding": "RFC 8467 128-octet blocks", "cache": "default (on; names are unique)",
                    "transport": "DoH (HTTP/2)" if name.startswith("lanveil-doh") else "DoT"}
        cmd = [str(LANVEIL), "--config", str(conf)]
        if os.environ.get("WAN_LOG_LEVEL") in ("debug", "trace"):
            # experiments: each log line stamped with CLOCK_MONOTONIC seconds (the loadgen's clock); the
            # burst's connection count then reads 0 for lanveil (ss names the wrapped child's pid)
            cmd = ["sh", "-c", '"$@" 2>&1 | python3 -u -c "import sys,time\nfor l in sys.stdin: '
                   'sys.stdout.write(f\'{time.monotonic():.4f} {l}\')"', "lanveil"] + cmd
        return cmd, settings
    if name == "stubby":
        conf = work / "stubby.yml"
        conf.write_text(peers.stubby_conf(work, "127.0.0.1", port, up, 853, TLS_NAME))
        return ["stubby", "-C", str(conf)], {
            "idle_timeout": "10000 ms (OpenWrt's stubby.yml)", "tls_query_padding_blocksize": 128,
            "edns_tcp_keepalive": "sent (getdns), idle_timeout sent as its wish"}
    if name == "unbound":
        conf = work / "unbound-fwd.conf"
        conf.write_text(f"""server:
  interface: 127.0.0.1@{port}
  port: {port}
  num-threads: 1
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  directory: "{work}"
  module-config: "iterator"
  do-ip6: no
  tls-cert-bundle: "{work}/ca.pem"
  access-control: 127.0.0.0/8 allow
  local-zone: "test." nodefault
  prefetch: no
forward-zone:
  name: "."
  forward-addr: {up}@853#{TLS_NAME}
  forward-tls-upstream: yes
remote-control:
  control-enable: no
""")
        return ["/usr/sbin/unbound", "-d", "-c", str(conf)], {
            "tcp-reuse-timeout": "60000 ms (default)", "max-reuse-tcp-queries": "200 (default)",
            "num-threads": 1}
    if name == "dnsdist":
        conf = work / "dnsdist-fwd.conf"
        conf.write_text(f"""
setSecurityPollSuffix("")
setLocal("127.0.0.1:{port}")
newServer({{address="{up}:853", tls="openssl", subjectName="{TLS_NAME}",
           caStore="{work}/ca.pem", validateCertificates=true, checkName="bench.test."}})
""")
        return ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)], {
            "backend": "newServer{tls='openssl'} defaults (UDP queries to a DoT backend: no connection reuse)",
            "health check": "checkName bench.test. (the default a.root-servers.net has no answer here)"}
    if name == "kresd":
        conf = work / "kresd.conf"
        conf.write_text(peers.kresd_conf(work, "127.0.0.1", port, up, 853, TLS_NAME))
        return ["kresd", "-n", "-c", str(conf), str(work / "kresd")], {
            "policy": "TLS_FORWARD (defaults: connections kept while used, idle close by server)",
            "dnssec": "trust anchor removed (the test zone is unsigned)"}
    raise ValueError(name)


# ------------------------------------------------------------------ rigs


class Rig:
    def __init__(self, name: str, n: int, delay_ms: float, loss: float, server_idle_s: int, work: Path,
                 timeout_s: int, forwarders: list[str]):
        self.name, self.n, self.delay_ms, self.loss, self.server_idle_s = name, n, delay_ms, loss, server_idle_s
        self.work = work / name
        self.work.mkdir()
        tag = f"{os.getpid() % 10000}{n}"
        self.ns_c, self.ns_s = f"lvwan{tag}c", f"lvwan{tag}s"
        self.up = f"10.77.{n}.2"  # the delay line's end in namespace S
        # each forwarder talks to its own upstream instance (same configuration) at its own address behind the
        # same delay line: one forwarder's connections (dnsdist's 30 at a burst) cannot make the shared server
        # shed or delay another forwarder's connection, which would measure the neighbours, not the forwarder
        self.ups = {name: f"10.77.{n}.{10 + i}" for i, name in enumerate(forwarders)}
        self.procs: list[peers.Proc] = []
        self.fw: dict[str, peers.Proc] = {}
        self.settings: dict[str, dict] = {}
        self.forwarders = forwarders
        self.timeout_s = timeout_s
        self.started_at: dict[str, float] = {}

    def up_net(self) -> None:
        for ns in (self.ns_c, self.ns_s):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for f in ("ca.pem", "leaf.pem", "leaf.key"):
            shutil.copy(self.work.parent / f, self.work / f)
        cmd = RT + [str(DELAY), "--a-ns", self.ns_c, "--a-dev", "wanc", "--a-addr", f"10.77.{self.n}.1/24",
               "--b-ns", self.ns_s, "--b-dev", "wans", "--b-addr", f"{self.up}/24",
               "--delay-ms", str(self.delay_ms), "--loss", str(self.loss), "--seed", str(1000 + self.n),
               "--queue", "2048", "--timeout", str(self.timeout_s),
               "--events", str(self.work / "wire.jsonl"), "--stats", str(self.work / "wire-stats.json")]
        self.delay = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.work / "wan-delay.log", "wb"))
        line = self.delay.stdout.readline().decode().strip() if self.delay.stdout else ""
        if line != "ready":
            raise RuntimeError(f"wan-delay did not start: {(self.work / 'wan-delay.log').read_text()}")
        for i, (name, addr) in enumerate(self.ups.items()):
            sh("ip", "-n", self.ns_s, "addr", "add", f"{addr}/24", "dev", "wans")
            self.start_upstream(name, addr, 5300 + i)

    def start_upstream(self, fw: str, addr: str, udp_port: int) -> None:
        """The upstream instance of forwarder `fw` at `addr`:853 in namespace S."""
        if UPSTREAM_KIND == "dnsdist":
            conf = self.work / f"upstream-{fw}-dnsdist.conf"
            conf.write_text(f"""
setSecurityPollSuffix("")
setLocal("127.0.0.1:{udp_port}")
addTLSLocal("{addr}:853", "{self.work}/leaf.pem", "{self.work}/leaf.key")
addDOHLocal("{addr}:443", "{self.work}/leaf.pem", "{self.work}/leaf.key", "/dns-query",
            {{idleTimeout={self.server_idle_s}}})
-- the idle close: a connection that brings no query for this long is closed
setTCPRecvTimeout({self.server_idle_s})
setMaxTCPConnectionsPerClient(100)
-- every A query is answered here, no recursion, no cache
addAction(AllRule(), SpoofAction({{"192.0.2.7"}}, {{ttl=300}}))
""")
            self.procs.append(peers.Proc(f"{self.name}-upstream-{fw}", RT + ipns(self.ns_s) + [
                "dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)], self.work))
            return
        conf = self.work / f"upstream-{fw}.conf"
        conf.write_text(f"""server:
  interface: {addr}@853
  tls-port: 853
  tls-service-key: "{self.work}/leaf.key"
  tls-service-pem: "{self.work}/leaf.pem"
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  do-ip6: no
  directory: "{self.work}"
  module-config: "iterator"
  tcp-idle-timeout: {self.server_idle_s * 1000}
  edns-tcp-keepalive: no
  incoming-num-tcp: 100
  verbosity: {int(os.environ.get("WAN_UPSTREAM_VERBOSITY", "0"))}
  # every other name is answered locally too: a query the upstream would try to recurse for (kresd's
  # root priming, say) stays pending and keeps its connection from ever being idle
  local-zone: "." static
  local-zone: "bench.test." redirect
  local-data: "bench.test. 300 IN A 192.0.2.7"
  access-control: 10.77.0.0/16 allow
remote-control:
  control-enable: no
""")
        self.procs.append(peers.Proc(f"{self.name}-upstream-{fw}", RT + ipns(self.ns_s) + [
            "/usr/sbin/unbound", "-d", "-c", str(conf)], self.work))

    def start_forwarders(self) -> None:
        for name in self.forwarders:
            cmd, settings = forwarder_conf(name, FORWARDERS[name], self.ups[name], self.work)
            self.settings[name] = settings
            self.started_at[name] = time.monotonic()
            self.fw[name] = peers.Proc(name, ipns(self.ns_c) + cmd, self.work)

    def connections(self) -> dict[str, int]:
        """Established DoT connections per forwarder (ss in namespace C)."""
        out = subprocess.run(ipns(self.ns_c) + ["ss", "-tnpH", "state", "established", "dport", "=", ":853"],
                             capture_output=True, text=True).stdout
        pid_name = {p.pid: n for n, p in self.fw.items()}
        counts = {n: 0 for n in self.fw}
        for m in re.finditer(r"pid=(\d+)", out):
            n = pid_name.get(int(m.group(1)))
            if n:
                counts[n] += 1
        return counts

    def stop(self) -> None:
        for p in list(self.fw.values()) + self.procs:
            try:
                p.stop()
            except Exception:
                pass
        if getattr(self, "delay", None) and self.delay.poll() is None:
            self.delay.terminate()
            try:
                self.delay.wait(5)
            except subprocess.TimeoutExpired:
                self.delay.kill()
        for ns in (self.ns_c, self.ns_s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# ------------------------------------------------------------------ load generator (runs inside ns C)


def loadgen(spec: dict) -> dict:
    """Runs a schedule against every forwarder at once; returns every query's latency.

    spec: {"targets": {name: port}, "steps": [{"at": s, "count": k, "label": str, "index0": i}], "timeout": s}
    Each step sends `count` queries (one per target each) at time `at` (seconds from start)."""
    targets = spec["targets"]
    socks = {}
    sel = selectors.DefaultSelector()
    for name, port in targets.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks[name] = s
        sel.register(s, selectors.EVENT_READ, name)
    tag = spec["tag"]
    pending: dict[tuple[str, int], dict] = {}
    results: list[dict] = []
    qid = 0
    t0 = time.monotonic()
    steps = sorted(spec["steps"], key=lambda s: s["at"])
    i = 0
    end = t0 + steps[-1]["at"] + spec["timeout"] + 0.5 if steps else t0
    while True:
        now = time.monotonic()
        while i < len(steps) and now >= t0 + steps[i]["at"]:
            st = steps[i]
            for _ in range(st["count"]):
                qid = (qid + 1) & 0xFFFF
                for name, s in socks.items():
                    qname = f"q{qid:x}-{i}.{tag}-{name}.bench.test"
                    sent = time.monotonic()
                    try:
                        s.send(peers.dns_query(qname, qid))
                    except OSError:
                        continue
                    pending[(name, qid)] = {"target": name, "label": st["label"], "step": i, "sent": sent,
                                            "at": st["at"], "k": st.get("k")}
            i += 1
        # expire
        for k, q in list(pending.items()):
            if now - q["sent"] > spec["timeout"]:
                q["latency_ms"] = None
                results.append(q)
                del pending[k]
        if i >= len(steps) and not pending:
            break
        if now > end:
            break
        nxt = t0 + steps[i]["at"] if i < len(steps) else now + 0.05
        for key, _ in sel.select(max(0.0, min(nxt - time.monotonic(), 0.05))):
            s = key.fileobj
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                except OSError:
                    break
                got = time.monotonic()
                if len(data) < 12:
                    continue
                rid = struct.unpack(">H", data[:2])[0]
                q = pending.pop((key.data, rid), None)
                if q:
                    q["latency_ms"] = (got - q["sent"]) * 1000
                    q["rcode"] = data[3] & 0x0F
                    results.append(q)
    for q in pending.values():
        q["latency_ms"] = None
        results.append(q)
    for q in results:
        q["sent"] = round(q["sent"] - t0, 4)
    return {"results": results, "t0": t0}


def run_loadgen(rig: Rig, steps: list[dict], timeout: float = 5.0) -> list[dict]:
    spec = {"targets": {n: FORWARDERS[n] for n in rig.forwarders}, "steps": steps, "timeout": timeout,
            "tag": f"{rig.name}{random.randrange(1 << 20):x}"}
    p = subprocess.run(RT + ipns(rig.ns_c) + [sys.executable, __file__, "--loadgen", json.dumps(spec)],
                       capture_output=True, text=True, timeout=steps[-1]["at"] + timeout + 120)
    if p.returncode != 0:
        raise RuntimeError(f"loadgen failed: {p.stderr[-2000:]}")
    out = json.loads(p.stdout)
    if os.environ.get("WAN_KEEP"):  # every query with its send time (CLOCK_MONOTONIC = t0 + sent)
        (rig.work / "queries.json").write_text(json.dumps(out))
    return out["results"]


def cold_start(rig: Rig) -> dict[str, float | None]:
    """Process start to first answer: the prober starts first (probing every 10 ms, ≤ 10 s), then the rig's
    forwarders; both clocks are CLOCK_MONOTONIC. The system clock is right, so lanveil's clock floor (its
    certificate checks before the clock is trusted) is satisfied from the start."""
    code = f"""
import socket, struct, time, json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import peers
ports = {json.dumps({n: FORWARDERS[n] for n in rig.forwarders})}
out = {{}}
t0 = time.monotonic()
socks = {{}}
for n, p in ports.items():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('127.0.0.1', p)); s.setblocking(False)
    socks[n] = s
i = 0
while len(out) < len(ports) and time.monotonic() - t0 < 10:
    i += 1
    for n, s in socks.items():
        if n in out: continue
        try: s.send(peers.dns_query(f'c{{i}}.cold-{{n}}.bench.test', i))
        except OSError: pass
    end = time.monotonic() + 0.01
    while time.monotonic() < end:
        for n, s in socks.items():
            if n in out: continue
            try:
                d = s.recv(4096)
                if len(d) > 12 and (d[3] & 15) == 0 and d[7] > 0: out[n] = time.monotonic()
            except OSError: pass
        time.sleep(0.001)
print(json.dumps({{n: t for n, t in out.items()}}))
"""
    # the forwarders were started just before; their start times are in this process's monotonic clock,
    # which is the same clock (CLOCK_MONOTONIC is not namespaced here)
    p = subprocess.Popen(RT + ipns(rig.ns_c) + [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the prober is up and sending into closed ports
    rig.start_forwarders()
    out, _ = p.communicate(timeout=30)
    got = json.loads(out or "{}")
    return {n: (round((got[n] - rig.started_at[n]) * 1000, 1) if n in got else None) for n in rig.forwarders}


# ------------------------------------------------------------------ schedules


def poisson_steps(rng: random.Random, start: float, n: int, rate: float, label: str) -> tuple[list[dict], float]:
    steps, t = [], start
    for k in range(n):
        steps.append({"at": round(t, 4), "count": 1, "label": label, "k": k})
        t += rng.expovariate(rate)
    return steps, t


def gaps_schedule(quick: bool, rng: random.Random, smoke: bool = False) -> list[dict]:
    steps, t = [], 0.0
    s, t = poisson_steps(rng, t, 3, 2.0, "warmup")
    steps += s
    plan = [5] * (6 if quick else 8) + [30] * (2 if quick else 4) + ["burst"] + ([] if quick else [120])
    if smoke:
        plan = [5, 15, "burst"]
    if os.environ.get("WAN_GAPS"):  # e.g. WAN_GAPS=30,30,30 (experiments; seconds, or "burst")
        plan = [g if g == "burst" else (int(g) if g.isdigit() else float(g)) for g in os.environ["WAN_GAPS"].split(",")]
    for gap in plan:
        if gap == "burst":
            t += 15 if smoke else 120 if not quick else 60
            steps.append({"at": round(t, 4), "count": 50, "label": "burst", "k": 0})
            t += 3
            continue
        t += gap
        s, t = poisson_steps(rng, t, 5, 2.0, f"gap{gap}")
        steps += s
    return steps


def long_schedule(quick: bool, rng: random.Random, smoke: bool = False) -> list[dict]:
    steps, t = poisson_steps(rng, 0.0, 3, 2.0, "warmup")
    gap = 20 if smoke else 120 if quick else 600
    s, _ = poisson_steps(rng, t + gap, 5, 2.0, f"gap{gap}")
    return steps + s


def loss_schedule(quick: bool, rng: random.Random, label: str, smoke: bool = False) -> list[dict]:
    steps, t = [], 0.0
    total = 15 if smoke else 90 if quick else 330
    while t < total:
        s, t = poisson_steps(rng, t, 60, 3.0, label)  # ~20 s of queries at 3/s
        steps += s
        t += 12  # beyond the server's 10-s idle close
    return steps


# ------------------------------------------------------------------ statistics and report


def pct(vals: list[float], p: float) -> float | None:
    v = sorted(vals)
    return peers.pct(v, p) if v else None


def summarize(results: list[dict], rtt: float) -> dict:
    out: dict = {}
    by: dict[tuple[str, str], list[dict]] = {}
    for q in results:
        by.setdefault((q["target"], q["label"]), []).append(q)
    for (target, label), qs in by.items():
        # A query that got no answer, or an answer other than NOERROR (a forwarder's SERVFAIL), failed: it
        # counts as slower than any answer in the percentiles.
        def good(q: dict) -> bool:
            return q.get("latency_ms") is not None and q.get("rcode", 0) == 0

        lat = [q["latency_ms"] for q in qs if good(q)]
        failed = len(qs) - len(lat)
        ranked = lat + [math.inf] * failed
        first_q = [q for q in qs if q.get("k") == 0]
        first = [q["latency_ms"] if good(q) else math.inf for q in first_q]
        e = {"n": len(qs), "unanswered": sum(1 for q in qs if q.get("latency_ms") is None),
             "servfail": sum(1 for q in qs if q.get("rcode") not in (None, 0)), "failed": failed}
        for p in (50, 95, 99):
            v = pct(ranked, p)
            e[f"p{p}_ms"] = None if v is None or v == math.inf else round(v, 1)
            e[f"p{p}_rtt"] = None if v is None or v == math.inf else round((v - rtt) / rtt, 2)
            if v == math.inf:
                e[f"p{p}_failed"] = True
        e["over_1s_pct"] = round(100 * sum(1 for x in ranked if x > 1000) / len(qs), 2) if qs else None
        e["max_ms"] = round(max(lat), 1) if lat else None
        if first:
            e["first_n"] = len(first)
            f50, fmax = pct(sorted(first), 50), max(first)
            e["first_p50_rtt"] = None if f50 == math.inf else round((f50 - rtt) / rtt, 2)
            e["first_max_rtt"] = None if fmax == math.inf else round((fmax - rtt) / rtt, 2)
            e["first_failed"] = sum(1 for x in first if x == math.inf)
        if label == "burst":
            e["last_answer_ms"] = round(max(lat), 1) if not failed and lat else None
        out.setdefault(target, {})[label] = e
    return out


PEER_NAMES = ("kresd", "unbound", "stubby", "dnsdist")


def checks(data: dict) -> list[tuple[str, str, bool]]:
    s, rtt = data["summary"], data["params"]["rtt_ms"]
    out = []
    lv = {rig: t.get("lanveil", {}) for rig, t in s.items()}
    gaps = [(rig, lab, e) for rig in ("gaps", "long") for lab, e in lv.get(rig, {}).items() if lab.startswith("gap")]
    if gaps:
        worst = max(math.inf if e.get("p95_failed") or e["p95_rtt"] is None else e["p95_rtt"] for _, _, e in gaps)
        per = ", ".join(f"{lab[3:]} s: {fp(e, 'p95_rtt')}" for _, lab, e in sorted(gaps, key=lambda g: int(g[1][3:])))
        out.append(("p95 added latency ≤ 0.2 RTT after every gap", per, worst <= 0.2))
    e = lv.get("loss1", {}).get("loss1")
    if e and e["p99_ms"] is not None:
        pe = {n: s["loss1"].get(n, {}).get("loss1") for n in PEER_NAMES}
        peers_p99 = {n: (math.inf if e2.get("p99_failed") else e2["p99_ms"]) for n, e2 in pe.items()
                     if e2 and (e2.get("p99_failed") or e2["p99_ms"] is not None)}
        limit = 2 * rtt + 50
        out.append((f"1 % loss: p99 ≤ 2 RTT + 50 ms ({limit:.0f} ms)", f"{e['p99_ms']:.0f} ms", e["p99_ms"] <= limit))
        if peers_p99:
            best = min(peers_p99, key=peers_p99.get)
            out.append(("1 % loss: p99 below every peer's", f"{e['p99_ms']:.0f} ms vs best peer {best} "
                        f"{peers_p99[best]:.0f} ms", e["p99_ms"] < peers_p99[best]))
    elif e:
        out.append(("1 % loss: p99 ≤ 2 RTT + 50 ms", "failed queries above the 99th percentile", False))
    b = lv.get("gaps", {}).get("burst")
    if b and b.get("last_answer_ms") is not None:
        peers_b = {n: s["gaps"].get(n, {}).get("burst", {}).get("last_answer_ms") for n in PEER_NAMES}
        peers_b = {n: v for n, v in peers_b.items() if v is not None}
        conns = data.get("burst_connections", {}).get("lanveil")
        if peers_b:
            best = min(peers_b, key=peers_b.get)
            ok = b["last_answer_ms"] <= peers_b[best] + rtt and (conns is None or conns <= 4)
            out.append(("burst: last answer within 1 RTT of the best peer, ≤ upstream_max_connections (4) connections",
                        f"{b['last_answer_ms']:.0f} ms vs {best} {peers_b[best]:.0f} ms; {conns} connection(s)", ok))
    return out


def fp(e: dict, key: str, spec: str = ".2f") -> str:
    """A percentile from a summary entry: 'fail' when it falls among the failed queries."""
    p = key.split("_")[0]
    return "fail" if e.get(f"{p}_failed") else fmt(e.get(key), spec)


def fmt(v, spec=".2f"):
    return "–" if v is None else format(v, spec)


def report(data: dict) -> str:
    rtt = data["params"]["rtt_ms"]
    L = []
    s = data["summary"]
    names = data["forwarders"]
    gaps = sorted({lab for t in s.get("gaps", {}).values() for lab in t if lab.startswith("gap")},
                  key=lambda x: int(x[3:]))
    longs = sorted({lab for t in s.get("long", {}).values() for lab in t if lab.startswith("gap")})
    up = data["params"].get("upstream", "dnsdist")
    L.append(f"RTT {rtt:.0f} ms (one-way {rtt / 2:.0f} ms each way), upstream {up} (one instance per forwarder) closing idle DoT connections "
             f"after {data['params']['server_idle_s']} s. Figures: (latency − RTT) / RTT; the first query after a gap "
             "is the cache miss that finds the connection closed or not.")
    L.append("")
    L.append("**Sporadic** — first query after the gap: p50 (max); all queries of the episodes: p95 / p99 "
             "(n per forwarder in brackets)")
    L.append("")
    cols = [("gaps", g) for g in gaps] + [("long", g) for g in longs]
    L.append("| forwarder | " + " | ".join(f"gap {g[3:]} s" for _, g in cols) + " | cold start |")
    L.append("|---|" + "---|" * (len(cols) + 1))
    for n in names:
        row = []
        for rig, g in cols:
            e = s.get(rig, {}).get(n, {}).get(g)
            row.append("–" if not e else f"{fmt(e.get('first_p50_rtt'))} ({fmt(e.get('first_max_rtt'))}); "
                       f"{fp(e, 'p95_rtt')} / {fp(e, 'p99_rtt')} [{e['n']}"
                       + (f", {e['failed']} failed]" if e.get("failed") else "]"))
        cs = data["cold_start_ms"].get(n)
        L.append(f"| {n} | " + " | ".join(row) + f" | {fmt(cs, '.0f')} ms |")
    L.append("")
    L.append("**Loss** — p95 / p99 in ms (and in RTT over RTT), share of answers over 1 s, unanswered")
    L.append("")
    L.append("| forwarder | 1 % loss | 3 % loss |")
    L.append("|---|---|---|")
    for n in names:
        row = []
        for rig in ("loss1", "loss3"):
            e = s.get(rig, {}).get(n, {}).get(rig)
            row.append("–" if not e else f"{fp(e, 'p95_ms', '.0f')} / {fp(e, 'p99_ms', '.0f')} ms "
                       f"({fp(e, 'p95_rtt')} / {fp(e, 'p99_rtt')}); {fmt(e['over_1s_pct'])} % > 1 s or failed; "
                       f"{e.get('failed', e['unanswered'])} of {e['n']} failed")
        L.append(f"| {n} | " + " | ".join(row) + " |")
    L.append("")
    L.append("**Burst after silence** — 50 names at once after 2 min idle (1 min in --quick)")
    L.append("")
    L.append("| forwarder | time to last answer | p50 | DoT connections open after it |")
    L.append("|---|---|---|---|")
    for n in names:
        e = s.get("gaps", {}).get(n, {}).get("burst")
        c = data.get("burst_connections", {}).get(n)
        L.append(f"| {n} | {fmt(e and e.get('last_answer_ms'), '.0f')} ms | {fp(e or {}, 'p50_ms', '.0f')} ms "
                 f"| {fmt(c, 'd')} |")
    L.append("")
    L.append("**Issue 17's goals** (lanveil with its defaults; peers: kresd, unbound, stubby, dnsdist)")
    L.append("")
    L.append("| goal | measured | met |")
    L.append("|---|---|---|")
    for goal, measured, met in checks(data):
        L.append(f"| {goal} | {measured} | {'yes' if met else '**no**'} |")
    L.append("")
    L.append("Settings per forwarder:")
    L.append("")
    for n in names:
        L.append(f"- **{n}**: " + "; ".join(f"{k} {v}" for k, v in data["settings"].get(n, {}).items()))
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------ main


def compact(results: dict[str, list]) -> dict:
    """Per rig, target and label: the latencies in send order (ms, 0.1 ms; null = unanswered; "rcodeN@ms" = an
    answer with RCODE N, a failure)."""
    out: dict = {}
    for rig, qs in results.items():
        for q in sorted(qs, key=lambda q: q["sent"]):
            lat = q.get("latency_ms")
            v = None if lat is None else round(lat, 1) if q.get("rcode", 0) == 0 else f"rcode{q['rcode']}@{lat:.1f}"
            out.setdefault(rig, {}).setdefault(q["target"], {}).setdefault(q["label"], []).append(v)
    return out


def write(data: dict, out: Path) -> None:
    md = report(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = data.pop("raw", {})
    old = data.pop("raw_latency_ms", {})
    text = json.dumps(data, indent=1, default=str)
    # the per-query latencies, one line per target and label
    lines = ",\n".join(f' "{rig}/{t}/{lab}": {json.dumps(v)}' for rig, ts in raw.items() for t, labs in ts.items()
                       for lab, v in labs.items())
    lines = lines or ",\n".join(f' "{k}": {json.dumps(v)}' for k, v in old.items())
    out.write_text(text[:-2] + ',\n "raw_latency_ms": {\n' + lines + "\n }\n}\n")
    data["raw"] = raw
    out.with_suffix(".md").write_text(md)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        print(json.dumps(loadgen(json.loads(sys.argv[2]))))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--compact":
        # rewrites a JSON written with every query as an object into the compact form, and its Markdown
        path = Path(sys.argv[2])
        data = json.loads(path.read_text())
        if isinstance(data.get("raw"), dict) and any(isinstance(v, list) and v and isinstance(v[0], dict)
                                                    for v in data["raw"].values()):
            data["raw"] = compact(data["raw"])
        write(data, path)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter gaps and loss runs (~4 min)")
    ap.add_argument("--smoke", action="store_true", help="tiny schedules, to check the set-up (~1 min)")
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--server-idle", type=int, default=10, help="upstream idle close, seconds (10 or 60)")
    ap.add_argument("--only", default="", help="comma-separated forwarders")
    ap.add_argument("--rigs", default="gaps,long,loss1,loss3")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--out", default=str(ROOT / "tests/bench/results/wan.json"))
    a = ap.parse_args()
    names = [n for n in FORWARDERS if (n in a.only.split(",") if a.only else n not in OPT_IN)]
    missing = [n for n in names if not (
        LANVEIL.exists() if n.startswith("lanveil") else shutil.which(n) or Path(f"/usr/sbin/{n}").exists())]
    if missing:
        raise SystemExit(f"missing: {missing} (tests/bench/wan.sh installs them)")
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="lanveil-wan-"))
    peers.make_pki(work)
    schedules = {"gaps": gaps_schedule(a.quick, rng, a.smoke), "long": long_schedule(a.quick, rng, a.smoke),
                 "loss1": loss_schedule(a.quick, rng, "loss1", a.smoke),
                 "loss3": loss_schedule(a.quick, rng, "loss3", a.smoke)}
    losses = {"gaps": 0.0, "long": 0.0, "loss1": 0.01, "loss3": 0.03}
    rig_names = a.rigs.split(",")
    budget = int(max(schedules[r][-1]["at"] for r in rig_names)) + 180
    rigs = [Rig(r, i + 1, a.rtt_ms / 2, losses[r], a.server_idle, work, budget, names)
            for i, r in enumerate(rig_names)]
    data = {"issue": 17, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "bash tests/bench/wan.sh " + " ".join(sys.argv[1:]), "machine": peers.machine(),
            "versions": {**peers.versions(), "kresd": peers.version_of(["kresd", "--version"], r"version \S+")},
            "params": {"rtt_ms": a.rtt_ms, "server_idle_s": a.server_idle, "upstream": UPSTREAM_KIND, "quick": a.quick, "seed": a.seed,
                       "losses": losses}, "forwarders": names, "errors": []}
    started = time.time()
    results: dict[str, list] = {}
    import threading
    try:
        for r in rigs:
            r.up_net()
        time.sleep(0.5)
        data["cold_start_ms"] = cold_start(rigs[0])
        for r in rigs[1:]:
            r.start_forwarders()
        log(f"cold start (ms): {data['cold_start_ms']}")
        burst_conn: dict = {}

        def go(r: Rig) -> None:
            try:
                steps = schedules[r.name]
                if r.name == "gaps":
                    # note the connections right after the burst (its answers take < 3 s)
                    bt = next(s["at"] for s in steps if s["label"] == "burst")
                    t0 = time.monotonic()
                    th = threading.Thread(target=lambda: (time.sleep(max(0.0, bt + 2.0 - (time.monotonic() - t0))),
                                                          burst_conn.update(r.connections())), daemon=True)
                    th.start()
                results[r.name] = run_loadgen(r, steps)
                if r.name == "gaps":
                    th.join(10)
                log(f"rig {r.name}: {len(results[r.name])} queries done")
            except Exception as e:  # one broken rig must not void the others
                data["errors"].append({"rig": r.name, "error": str(e)[:2000]})
                log(f"rig {r.name} FAILED: {e}")

        threads = [threading.Thread(target=go, args=(r,)) for r in rigs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        data["burst_connections"] = burst_conn
        data["settings"] = rigs[0].settings
        data["settings"][f"upstream ({UPSTREAM_KIND})"] = (
            {"setTCPRecvTimeout": f"{a.server_idle} s (the idle close)", "answers": "SpoofAction, every name",
             "instances": "one per forwarder, each at its own address behind the rig's delay line"}
            if UPSTREAM_KIND == "dnsdist" else
            {"tcp-idle-timeout": f"{a.server_idle * 1000} ms", "edns-tcp-keepalive": "no",
             "instances": "one per forwarder, each at its own address behind the rig's delay line"})
        data["wire_stats"] = {}
        for r in rigs:
            try:
                data["wire_stats"][r.name] = json.loads((r.work / "wire-stats.json").read_text())
            except (OSError, ValueError):
                pass
    finally:
        for r in rigs:
            r.stop()
    data["summary"] = {rig: summarize(res, a.rtt_ms) for rig, res in results.items()}
    data["raw"] = compact(results)
    data["elapsed_s"] = round(time.time() - started, 1)
    out = Path(a.out)
    write(data, out)
    print(out.with_suffix(".md").read_text())
    log(f"wrote {out} and {out.with_suffix('.md')} in {data['elapsed_s']} s; work dir {work}")
    if not data["errors"] and not os.environ.get("WAN_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

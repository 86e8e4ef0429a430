#!/usr/bin/env python3
"""A/B of lanveil's CPU per query at saturation: two (or more) builds, interleaved, same load.

    dnsperf --UDP--> lanveil (build A or B) --DoT--> dnsdist (SpoofAction answers every name)

The set-up of tests/bench/peers.py (same upstream, same lanveil configuration, unique names so every query
crosses TLS), without the other peers and the latency run: per run, every name of a fixed list is sent once
(dnsperf -n 1, CLIENTS x OUTSTANDING), and lanveil's utime and stime (clock ticks, all threads, from /proc)
and context switches are read before and after; after the run, the upstream connections' TCP segments sent with
data and without (pure ACKs) per 1,000 queries (`ss -ti`, over the connections' life: the start-up probes add a
handful). `--perf-stat DIR` counts system calls, `--perf-record DIR` records call graphs. Builds are run in turn (A B, B A, A B, ...) so a slow patch of a
shared machine does not land on one build only. Run under the machine lock, as root or not:

    flock /work/wt/machine.lock python3 tests/bench/cpu_ab.py new=target/release/lanveil old=/tmp/lanveil.old

Prints one line per run and the medians per build. Needs dnsdist, dnsperf and openssl (peers.sh installs them).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402


PERF_EVENTS = ",".join(["task-clock", "context-switches"] + [f"syscalls:sys_enter_{c}" for c in (
    "epoll_wait", "epoll_pwait", "sendmmsg", "recvmmsg", "recvfrom", "sendto", "writev", "write", "read",
    "futex")])


def ticks(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches, summed over the process's threads."""
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return vol, invol


def callgrind_wrapper(binary: Path, work: Path, out: Path) -> Path:
    """A script that runs `binary` under callgrind (`--check-config` runs it bare)."""
    w = work / f"callgrind-{secrets.token_hex(3)}.sh"
    w.write_text(f"""#!/bin/sh
case "$1" in --check-config) exec {binary} "$@";; esac
exec valgrind --tool=callgrind --callgrind-out-file={out} {binary} "$@"
""")
    w.chmod(0o755)
    return w


def callgrind_total(out: Path) -> int:
    """The instructions (Ir) a callgrind profile counted."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"{out}: no totals line")


def one_run(name: str, binary: Path, work: Path, a) -> dict:
    cg_out = None
    if a.callgrind:
        cg_out = Path(a.callgrind) / f"{name}-{secrets.token_hex(2)}.out"
        binary = callgrind_wrapper(binary, work, cg_out)
    peers.LANVEIL = binary
    target = peers.Lanveil("lanveil-dot", 18560, "DoT")
    proc, _ = peers.start_and_wait(target, work)
    try:
        f = work / "queries"
        peers.write_queries(f, f"ab{secrets.token_hex(4)}", a.names)
        peers.wait_quiet(a.quiet_wait, a.quiet_cores)
        perf = None
        if a.perf_stat or a.perf_record:
            out = Path(a.perf_record or a.perf_stat) / f"{name}-{secrets.token_hex(2)}"
            cmd = (["perf", "stat", "-o", f"{out}.stat", "-e", PERF_EVENTS] if a.perf_stat else
                   ["perf", "record", "-g", "-q", "-o", f"{out}.data"])
            perf = subprocess.Popen([*cmd, "-p", str(proc.pid)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        u0, s0 = ticks(proc.pid)
        v0, i0 = switches(proc.pid)
        r = peers.dnsperf(work, "udp", target.port, f, a.limit, a.clients, a.outstanding)
        u1, s1 = ticks(proc.pid)
        v1, i1 = switches(proc.pid)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
        # the upstream connections' TCP counters: segments out (of which with data) and in
        ss = subprocess.run(["ss", "-tinH", "state", "established", f"( dport = :{peers.UP_DOT} )"],
                            capture_output=True, text=True).stdout
        tcp = {k: sum(int(v) for v in re.findall(rf"\b{k}:(\d+)", ss))
               for k in ("segs_out", "data_segs_out", "segs_in")}
        f.unlink()
        done = r["completed"] or 0
        per = 1e5 / done if done else float("nan")
        result = {"build": name, "qps": r["qps"], "completed": done, "lost": r["lost"],
                "utime": u1 - u0, "stime": s1 - s0,
                "cpu_per_100k_s": (u1 - u0 + s1 - s0) / peers.CLK_TCK * per,
                "vcsw_per_q": (v1 - v0) / done if done else float("nan"),
                "icsw_per_q": (i1 - i0) / done if done else float("nan"),
                "loadgen_cpu_s": r["loadgen_cpu_s"], "rss_kib": peers.proc_kib(proc.pid, "VmHWM"),
                "writes_per_kq": tcp["data_segs_out"] / done * 1e3 if done else float("nan"),
                "acks_per_kq": (tcp["segs_out"] - tcp["data_segs_out"]) / done * 1e3 if done else float("nan")}
    finally:
        proc.stop()
    if cg_out:
        # callgrind writes its profile as the daemon exits; start-up and shutdown are in the count
        for _ in range(100):
            if cg_out.exists():
                break
            time.sleep(0.1)
        result["ir_per_q"] = callgrind_total(cg_out) / done if done else float("nan")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a lanveil binary")
    ap.add_argument("--pairs", type=int, default=4, help="runs per build")
    ap.add_argument("--names", type=int, default=400_000, help="queries per run (each name once)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--outstanding", type=int, default=200)
    ap.add_argument("--limit", type=int, default=60, help="longest run, seconds")
    ap.add_argument("--quiet-cores", type=float, default=0.15)
    ap.add_argument("--quiet-wait", type=float, default=20)
    ap.add_argument("--perf-stat", metavar="DIR", help="count system calls with perf stat (slows the daemon)")
    ap.add_argument("--perf-record", metavar="DIR", help="perf record -g the daemon during each run")
    ap.add_argument("--callgrind", metavar="DIR", help="run the daemon under callgrind and report user-space "
                    "instructions per query (deterministic, unlike CPU time; use --names 50000 --limit 120)")
    a = ap.parse_args()
    builds = []
    for b in a.builds:
        name, _, path = b.partition("=")
        p = Path(path).resolve()
        if not p.is_file():
            sys.exit(f"no such binary: {p}")
        builds.append((name, p))
    work = Path(tempfile.mkdtemp(prefix="lanveil-cpuab-"))
    runs: list[dict] = []
    up = None
    try:
        peers.make_pki(work)
        up = peers.start_upstream(work)
        for i in range(a.pairs):
            order = builds if i % 2 == 0 else builds[::-1]
            for name, path in order:
                r = one_run(name, path, work, a)
                runs.append(r)
                print(f"{name:>8}: {r['qps']:>9,.0f} q/s  lost {r['lost']:.0f}  utime {r['utime']:>4} "
                      f"stime {r['stime']:>4} ticks  {r['cpu_per_100k_s']:.3f} s/100k  "
                      f"vcsw/q {r['vcsw_per_q']:.3f} icsw/q {r['icsw_per_q']:.3f}  "
                      f"dnsperf {r['loadgen_cpu_s']:.2f} s  hwm {r['rss_kib']} KiB  upstream segments per 1k q: "
                      f"data {r['writes_per_kq']:.1f} ack {r['acks_per_kq']:.1f}"
                      + (f"  Ir/q {r['ir_per_q']:,.0f}" if "ir_per_q" in r else ""), flush=True)
    finally:
        if up:
            up.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    for name, _ in builds:
        mine = [r for r in runs if r["build"] == name]
        cpu = sorted(r["cpu_per_100k_s"] for r in mine)
        print(f"{name:>8}: cpu s/100k median {statistics.median(cpu):.3f} (range {cpu[0]:.3f}-{cpu[-1]:.3f}), "
              f"utime {statistics.median(r['utime'] for r in mine)} stime "
              f"{statistics.median(r['stime'] for r in mine)} ticks, "
              f"q/s {statistics.median(r['qps'] for r in mine):,.0f}, "
              f"vcsw/q {statistics.median(r['vcsw_per_q'] for r in mine):.3f}, "
              f"segments/1k q data {statistics.median(r['writes_per_kq'] for r in mine):.1f} "
              f"ack {statistics.median(r['acks_per_kq'] for r in mine):.1f}, n={len(mine)}"
              + (f", Ir/q median {statistics.median(r['ir_per_q'] for r in mine):,.0f}"
                 if a.callgrind else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

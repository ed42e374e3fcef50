"""Shared by the benchmarks that compare implementations in fresh processes (bench_pix2pixhd,
bench_sean): resident memory readings, one measured worker process, and alternating rounds.

The scripts import it by name: `python benchmarks/bench_x.py` puts benchmarks/ on sys.path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence


def rss_mb() -> float:
    """Resident memory of this process now (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB). VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over fork + exec, so a worker would report its parent's peak (the driver holds the
    weights while it starts the measured runs)."""
    with open("/proc/self/status") as f:
        line = next(s for s in f if s.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024.0  # kB


def run_worker(script: str, kind: str, args: Sequence[str], name: str) -> dict:
    """`python SCRIPT --worker KIND ARGS...` in a fresh process; its last stdout line is a JSON dict.
    A failed worker ends the benchmark with its error output."""
    cmd = [sys.executable, script, "--worker", kind, *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{name}: the {kind} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def alternate(kinds: Sequence[str], rounds: int, measure: Callable[[str], dict],
              memory_keys: Sequence[str]) -> dict[str, dict]:
    """`rounds` processes per implementation, the implementations alternating so that a change in
    the machine's load hits them alike. Per kind: all `seconds` and `cpu` samples, and the largest
    of each memory reading."""
    rows: dict[str, dict] = {}
    for _ in range(rounds):
        for k in kinds:
            r = measure(k)
            row = rows.setdefault(k, {"seconds": [], "cpu": []})
            row["seconds"] += r["seconds"]
            row["cpu"] += r["cpu"]
            for key in memory_keys:
                row[key] = max(row.get(key, 0.0), r[key])
    return rows

"""Load test of `gancanvas serve`: a burst of concurrent inpaint requests on loopback.

    python benchmarks/load_test_server.py                 # 50 concurrent 512 px requests, 2 rounds
    python benchmarks/load_test_server.py --retry         # clients retry on 503 until served
    python benchmarks/load_test_server.py --model path/to/model.safetensors --queue-size 8

The server runs in its own process (`gancanvas serve` on 127.0.0.1, a free port) with a DeepFill v2
generator (random weights, cnum 16 unless --cnum; the built-in model is cnum 32), so its peak
memory is its own. Each round sends `--requests` requests at once (an image of the built-in scenes
and a free-form hole) and waits for every answer, each within `--timeout` seconds; the whole run is
bounded by `--deadline`.

What must hold (issue 7): every request is answered with 200 (the inpainted PNG, known pixels
exact) or 503 (queue full, at once); none is lost, none hangs, nothing else comes back; the server's
memory stays bounded (its peak RSS does not grow from one round to the next) and it still serves
afterwards. The script prints a table per round (counts, p50/p95 latency of 200s and of 503s, the
server's RSS) and exits with 1 if any of that fails.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB, from /proc (Linux)."""
    cur = peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_model(path: Path, cnum: int) -> None:
    import torch

    from gancanvas import registry
    from gancanvas.weights import save_model

    torch.manual_seed(0)
    cfg = {"cnum": cnum}
    save_model(path, registry.create("deepfill_v2", **cfg), arch="deepfill_v2",
               config=registry.model_config("deepfill_v2", cfg).__dict__)


def make_inputs(size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A few different (image, mask) pairs, reused round-robin (decoding is part of the cost)."""
    from gancanvas.data.masks import free_form_mask
    from gancanvas.data.synthetic import render_scene

    out = []
    for i in range(count):
        img = render_scene(i, size, size).image
        mask = free_form_mask(size, size, np.random.default_rng(i)) > 0
        out.append((img, mask))
    return out


async def one_request(client, url: str, files: dict, timeout: float, retry: bool, deadline: float) -> dict:
    import httpx

    t0 = time.perf_counter()
    tries = 0
    while True:
        tries += 1
        try:
            r = await client.post(url, files=files, timeout=timeout)
        except httpx.TimeoutException:
            return {"status": "hung", "seconds": time.perf_counter() - t0, "tries": tries}
        except httpx.HTTPError as err:
            return {"status": f"lost ({type(err).__name__})", "seconds": time.perf_counter() - t0,
                    "tries": tries}
        if r.status_code == 503 and retry and time.monotonic() < deadline:
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            continue
        return {"status": r.status_code, "seconds": time.perf_counter() - t0, "tries": tries,
                "body": r.content if r.status_code == 200 else r.text}


async def burst(base: str, inputs, n: int, timeout: float, retry: bool, deadline: float) -> list[dict]:
    import httpx

    payloads = [{"image": ("image.png", _png(img)), "mask": ("mask.png", _png(mask.astype(np.uint8) * 255))}
                for img, mask in inputs]
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits) as client:
        url = f"{base}/api/inpaint"
        tasks = [one_request(client, url, payloads[i % len(payloads)], timeout, retry, deadline)
                 for i in range(n)]
        results = await asyncio.gather(*tasks)
    for i, res in enumerate(results):
        res["input"] = i % len(payloads)
    return results


def check_results(results: list[dict], inputs) -> list[str]:
    """Problems: anything but 200/503, and 200s whose known pixels differ from the input."""
    from PIL import Image

    problems = []
    for i, res in enumerate(results):
        if res["status"] not in (200, 503):
            problems.append(f"request {i}: {res['status']} {str(res.get('body', ''))[:120]}")
        elif res["status"] == 200:
            img, mask = inputs[res["input"]]
            out = np.asarray(Image.open(io.BytesIO(res["body"])))
            if out.shape != img.shape or not (out[~mask] == img[~mask]).all():
                problems.append(f"request {i}: result does not keep the known pixels")
        res.pop("body", None)
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=50, help="concurrent requests per round (default 50)")
    ap.add_argument("--rounds", type=int, default=2, help="bursts, one after the other (default 2)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    ap.add_argument("--queue-size", type=int, default=8, help="the server's --queue-size (default 8)")
    ap.add_argument("--model", default=None, help="inpainting model file (default: random DeepFill v2)")
    ap.add_argument("--cnum", type=int, default=16, help="width of the random model (default 16)")
    ap.add_argument("--retry", action="store_true", help="clients retry after 503 (Retry-After) until served")
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds (default 300)")
    ap.add_argument("--deadline", type=float, default=900.0, help="whole run, seconds (default 900)")
    ap.add_argument("--threads", type=int, default=None, help="the server's torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= 200 or not 1 <= args.rounds <= 10:
        ap.error("--requests must be 1..200 and --rounds 1..10 (this is a bounded test)")

    start = time.monotonic()
    deadline = start + args.deadline
    with tempfile.TemporaryDirectory(prefix="gancanvas-load-") as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        if args.model:
            os.symlink(Path(args.model).resolve(), models / "model.safetensors")
        else:
            make_model(models / "model.safetensors", args.cnum)
        inputs = make_inputs(args.size, 4)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"  # loopback only
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        log = open(Path(tmp) / "server.log", "w")
        server = subprocess.Popen(
            [sys.executable, "-m", "gancanvas", "serve", "--models-dir", str(models), "--host", "127.0.0.1",
             "--port", str(port), "--queue-size", str(args.queue_size), "--max-pixels", str(args.size ** 2)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            return _drive(args, base, server, inputs, start, deadline, Path(tmp) / "server.log")
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


def _drive(args, base, server, inputs, start, deadline, log_path) -> int:
    import httpx

    while True:  # wait for the server, then warm the model up (load + first run are not the test)
        if server.poll() is not None or time.monotonic() > deadline:
            print(log_path.read_text()[-2000:], file=sys.stderr)
            print("error: the server did not start", file=sys.stderr)
            return 1
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    warm = asyncio.run(burst(base, inputs[:1], 1, args.timeout, False, deadline))
    if warm[0]["status"] != 200:
        print(f"error: warm-up request failed: {warm[0]['status']} {warm[0].get('body', '')}",
              file=sys.stderr)
        return 1
    idle_rss, _ = _rss_mb(server.pid)
    model = "given" if args.model else f"DeepFill v2 cnum {args.cnum} (random weights)"
    retry = "retry on 503" if args.retry else "no retries"
    print(f"# gancanvas serve load test: {args.requests} concurrent POST /api/inpaint, "
          f"{args.size}x{args.size} PNG, queue size {args.queue_size}, model {model}, {retry}, "
          f"{os.cpu_count()} CPUs")
    print(f"# server RSS after loading the model and one warm-up run: {idle_rss:.0f} MiB\n")
    header = ("| round | 200 | 503 | other | lost/hung | p50 200 (s) | p95 200 (s) | max 200 (s) "
              "| p50 503 (s) | p95 503 (s) | wall (s) | server RSS after (MiB) | server peak RSS (MiB) |")
    print(header)
    print("|" + "|".join(["---"] * 13) + "|")
    failed, peaks = [], []
    for rnd in range(1, args.rounds + 1):
        t0 = time.monotonic()
        results = asyncio.run(burst(base, inputs, args.requests, args.timeout, args.retry, deadline))
        wall = time.monotonic() - t0
        problems = check_results(results, inputs)
        ok = [r["seconds"] for r in results if r["status"] == 200]
        busy = [r["seconds"] for r in results if r["status"] == 503]
        bad = [r for r in results if r["status"] not in (200, 503)]
        lost = [r for r in bad if str(r["status"]).startswith(("lost", "hung"))]
        rss, peak = _rss_mb(server.pid)
        peaks.append(peak)
        print(f"| {rnd} | {len(ok)} | {len(busy)} | {len(bad) - len(lost)} | {len(lost)} | "
              f"{_pct(ok, 50):.2f} | {_pct(ok, 95):.2f} | {max(ok, default=float('nan')):.2f} | "
              f"{_pct(busy, 50):.3f} | {_pct(busy, 95):.3f} | {wall:.1f} | {rss:.0f} | {peak:.0f} |")
        failed += problems
        if len(ok) + len(busy) != args.requests:
            failed.append(f"round {rnd}: {args.requests - len(ok) - len(busy)} requests not answered 200/503")
        if not ok:
            failed.append(f"round {rnd}: no request was served")
    health = httpx.get(f"{base}/api/health", timeout=10)
    print(f"\nafter the rounds: /api/health {health.status_code} {health.json()}")
    if health.status_code != 200 or health.json()["queue"]["waiting"] != 0:
        failed.append("the server is not idle and healthy afterwards")
    # Bounded memory: the second burst must not need (much) more than the first (10 % slack for the
    # allocator's fragmentation).
    if len(peaks) > 1 and peaks[-1] > peaks[0] * 1.10:
        failed.append(f"peak RSS grew from {peaks[0]:.0f} to {peaks[-1]:.0f} MiB between rounds")
    print(f"total {time.monotonic() - start:.0f} s")
    for p in failed:
        print(f"FAIL: {p}", file=sys.stderr)
    print("FAIL" if failed else "PASS: every request answered 200 or 503, none lost or hung, memory bounded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

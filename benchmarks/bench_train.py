"""Training throughput of a config on this machine: where a step's time goes, side by side per variant.

    python benchmarks/bench_train.py configs/deepfill_v2/scenes-256-gpu.yaml
    python benchmarks/bench_train.py configs/deepfill_v2/scenes-256-gpu.yaml --steps 50 \
        --variant train.amp=none --variant train.amp=bf16 --variant train.amp=bf16,train.workers=12
    python benchmarks/bench_train.py configs/deepfill_v2/tiny-test.yaml train.device=cpu   # a CPU smoke run

Each variant (a comma-separated list of `key=value` overrides on top of the common ones; the first
is the reference the others are compared to) runs in a fresh subprocess: the real `Trainer` with
its DataLoader, `--warmup` steps untimed (cuDNN autotuning, worker start-up), then `--steps` timed
steps. Per step it separates the time spent waiting for the loader (`data`) from the optimisation
phases (`step`, CUDA synchronised), so a data-bound configuration shows up as a large `data`
share. Printed: the median step time, steps/s and images/s (generator-step images), the data
share, the peak memory (CUDA: max allocated; CPU: peak RSS) and images/s relative to the first
variant. Nothing is saved: the run folder is a temporary directory (validation set shrunk to 4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(config: str, overrides: list[str], steps: int, warmup: int) -> dict:
    import torch

    from gancanvas.train.config import load_config
    from gancanvas.train.engine import Trainer, init_distributed

    cfg = load_config(config, overrides + ["data.val_count=4", "train.image_every=0", "train.eval_every=0"])
    dist = init_distributed(cfg.train.device)
    sync = torch.cuda.synchronize if dist.device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, dist, config_name=config)
        params = {k: sum(p.numel() for p in m.parameters()) for k, m in trainer.nets.items()}
        loader = trainer._loader()
        data = iter(loader)
        data_s, step_s = [], []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            batches = [trainer._to_device(next(data)) for _ in range(trainer.draws_per_step)]
            sync()
            t1 = time.perf_counter()
            trainer.train_step(batches)
            sync()
            t2 = time.perf_counter()
            if i == warmup - 1 and dist.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dist.device)
            if i >= warmup:
                data_s.append(t1 - t0)
                step_s.append(t2 - t1)
        del data, loader
        trainer.close()
    total = [a + b for a, b in zip(data_s, step_s)]
    med = statistics.median(total)
    return {"device": str(dist.device), "batch": cfg.train.batch_size, "params": params,
            "median_s": med, "steps_per_s": 1.0 / med, "images_per_s": cfg.train.batch_size / med,
            "data_share": sum(data_s) / sum(total), "peak_mb": _peak_mb(dist.device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*", help="key=value overrides common to every variant")
    ap.add_argument("--variant", action="append", default=[],
                    help="comma-separated key=value overrides of one variant (repeatable; default: one "
                         "variant with no extra overrides)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 1:
        sys.exit("bench_train: --steps and --warmup must be at least 1")
    if args._worker is not None:
        extra = [o for o in args._worker.split(",") if o]
        print(json.dumps(measure(args.config, args.overrides + extra, args.steps, args.warmup)), flush=True)
        return

    import torch

    variants = args.variant or [""]
    print(f"# training throughput: {args.config} {' '.join(args.overrides)}\n")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
          + f"; {args.warmup} warm-up + {args.steps} timed steps per variant\n")
    rows = []
    for v in variants:
        cmd = [sys.executable, __file__, args.config, *args.overrides, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--_worker", v]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            rows.append((v, None, tail))
            continue
        rows.append((v, json.loads(proc.stdout.strip().splitlines()[-1]), ""))
    ref = next((r for _, r, _ in rows if r is not None), None)
    print("| variant | device | batch | s/step (median) | steps/s | images/s | data wait | peak MB "
          "| images/s vs first |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v, r, err in rows:
        name = v or "(config as is)"
        if r is None:
            print(f"| {name} | failed: {err} | | | | | | | |")
            continue
        rel = r["images_per_s"] / ref["images_per_s"]
        print(f"| {name} | {r['device']} | {r['batch']} | {r['median_s']:.3g} | {r['steps_per_s']:.3g} | "
              f"{r['images_per_s']:.1f} | {100 * r['data_share']:.0f} % | {r['peak_mb']:.0f} | {rel:.2f}x |")
    if ref is not None:
        print("\nparameters: " + ", ".join(f"{k} {n:,}" for k, n in ref["params"].items()))


if __name__ == "__main__":
    main()

"""pix2pixHD global generator forward at 512x1024 on CPU: gancanvas next to the official code, same weights.

    python benchmarks/bench_pix2pixhd.py --official-repo /path/to/NVIDIA/pix2pixHD   # both, side by side
    python benchmarks/bench_pix2pixhd.py                                            # gancanvas only
    python benchmarks/bench_pix2pixhd.py --threads 2 --repeats 3 --height 512 --width 1024

The model is the official default 512p global generator (`--netG global`, ngf 64, 4 downsamplings,
9 residual blocks, instance norm) for Cityscapes inputs: label_nc 35 + the instance edge channel.

The reference is the official code itself: `models/networks.py` of a pix2pixHD checkout given with
`--official-repo` is imported at run time (nothing of it is copied here; torchvision, which that
module imports for its VGG class only, is stubbed when it is not installed). Its `GlobalGenerator`
is built and initialised with the official `weights_init`, saved as `latest_net_G.pth`, and
converted with `gancanvas convert`'s mapping (`convert_pix2pixhd`), so both run the same weights.
Without `--official-repo` only gancanvas is measured, on weights of the same initialisation.

Inputs: a built-in scene's label and instance maps at the benchmark size, one-hot (35) + edges.
Rows:
- G forward, both implementations, on the same prepared input tensor under torch.no_grad (the
  official `inference` path);
- gancanvas `synthesize(labels, instances)`: label map -> image, one-hot and edges included.
Each row runs in fresh subprocesses (`--rounds` of them, the implementations alternating): latency
over `--repeats` runs after one warm-up per process (median and best; on a shared machine the best
is the least disturbed), CPU time per forward, the resident memory after loading (weights and
inputs), the peak resident memory while running the forwards (the high-water mark is reset after
loading, whose transient second copy of the weights is not the model's cost) and "forward" = that
peak minus the loaded.
max abs Δ compares each output with the official one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _procs import alternate, peak_rss_mb, rss_mb, run_worker

LABEL_NC = 35


def import_official(repo: str | Path):
    """`models/networks.py` of an official checkout, imported from there."""
    import importlib.util
    import types

    path = Path(repo) / "models" / "networks.py"
    if not path.is_file():
        sys.exit(f"bench_pix2pixhd: {path} not found: --official-repo must be a NVIDIA/pix2pixHD checkout")
    if importlib.util.find_spec("torchvision") is None:
        # The module imports torchvision at top level for its Vgg19 class, which is not built here.
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        sys.modules["torchvision"].models = types.SimpleNamespace()
    spec = importlib.util.spec_from_file_location("official_pix2pixhd_networks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_generator(repo):
    net = import_official(repo)
    # The official define_G(..., 'global', n_downsample_global=4 (base_options), 9 blocks, 'instance').
    return net.GlobalGenerator(LABEL_NC + 1, 3, 64, 4, 9, net.get_norm_layer("instance")), net.weights_init


# ----------------------------------------------------------------------------- the measured process
def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    d = Path(args.dir)
    if args.worker == "official":
        model, _ = official_generator(args.official_repo)
        model.load_state_dict(torch.load(d / "latest_net_G.pth", weights_only=True))
    else:
        from gancanvas.weights import load_model

        model, _ = load_model(d / "model.safetensors")
    model.eval()
    inputs = torch.load(d / "inputs.pt", weights_only=True)
    load_peak, loaded = peak_rss_mb(), rss_mb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: from here on the peak is the forward's (loading holds weights twice)
    if args.worker == "synthesize":
        def fn():
            return model.synthesize(inputs["labels"], inputs["instances"])
    else:
        G = model if args.worker == "official" else model.G

        def fn():
            with torch.no_grad():
                return G(inputs["x"])
    out = fn()  # warm-up
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    torch.save(out, d / f"out_{args.worker}.pt")
    peak = peak_rss_mb()
    print(json.dumps({"seconds": times, "cpu": cpu, "loaded_mb": loaded, "peak_mb": peak,
                      "forward_mb": peak - loaded, "load_peak_mb": load_peak}))


# ----------------------------------------------------------------------------- the driver
def prepare(d: Path, args) -> int:
    """Weights (official init -> .pth -> converted, or gancanvas' init) and inputs into `d`."""
    import torch

    from gancanvas.data.synthetic import render_scene

    torch.manual_seed(0)
    if args.official_repo:
        from gancanvas.convert.pix2pixhd import convert_pix2pixhd

        G, weights_init = official_generator(args.official_repo)
        G.apply(weights_init)
        torch.save(G.state_dict(), d / "latest_net_G.pth")
        del G
        convert_pix2pixhd(d / "latest_net_G.pth", d / "model.safetensors", label_nc=LABEL_NC)
    else:
        from gancanvas import registry
        from gancanvas.weights import save_model

        model = registry.create("pix2pixhd", label_nc=LABEL_NC)
        save_model(d / "model.safetensors", model.eval(), arch="pix2pixhd", config={"label_nc": LABEL_NC})
        del model
    from gancanvas.weights import load_model

    model, _ = load_model(d / "model.safetensors")
    scene = render_scene(7, args.height, args.width)
    labels = torch.from_numpy(scene.labels)[None]
    instances = torch.from_numpy(scene.instances)[None]
    x = model.semantic_input(labels, instances)
    assert x.shape[1] == LABEL_NC + 1
    torch.save({"x": x, "labels": labels, "instances": instances}, d / "inputs.pt")
    return sum(p.numel() for p in model.parameters())


def measure(kind: str, d: Path, args) -> dict:
    extra = ["--dir", str(d), "--threads", str(args.threads), "--repeats", str(args.repeats)]
    if args.official_repo:
        extra += ["--official-repo", str(args.official_repo)]
    return run_worker(__file__, kind, extra, "bench_pix2pixhd")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-repo", default="", help="a NVIDIA/pix2pixHD checkout (the reference)")
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per process (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=1, help="processes per implementation, alternating")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--worker", choices=("official", "ours", "synthesize"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    import torch

    with tempfile.TemporaryDirectory(prefix="bench_pix2pixhd-") as tmp:
        d = Path(tmp)
        n_params = prepare(d, args)
        kinds = (["official"] if args.official_repo else []) + ["ours", "synthesize"]
        rows = alternate(kinds, args.rounds, lambda k: measure(k, d, args),
                         ("loaded_mb", "peak_mb", "forward_mb"))
        ref = torch.load(d / "out_official.pt", weights_only=True) if args.official_repo else None
        for k in kinds:
            out = torch.load(d / f"out_{k}.pt", weights_only=True)
            rows[k]["delta"] = float((out - ref).abs().max()) if ref is not None else None

    print(f"pix2pixHD global generator forward, {args.height}x{args.width}, label_nc {LABEL_NC} + edge, "
          f"ngf 64, batch 1, CPU ({platform.processor() or platform.machine()}, {args.threads} threads), "
          f"torch {torch.__version__}, {n_params / 1e6:.1f}M parameters, "
          f"{args.rounds} x {args.repeats} runs each")
    names = {"official": "official GlobalGenerator (G only)", "ours": "gancanvas Pix2PixHD.G (G only)",
             "synthesize": "gancanvas synthesize (labels -> image)"}
    header = (f"| {'implementation':<38} | {'median (s)':>10} | {'best (s)':>8} | {'CPU (s)':>7} "
              f"| {'vs official':>11} | {'loaded (MiB)':>12} | {'peak RSS (MiB)':>14} "
              f"| {'forward (MiB)':>13} | {'max abs Δ':>9} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    best = {k: min(r["seconds"]) for k, r in rows.items()}
    for k in kinds:
        r = rows[k]
        rel = f"{best['official'] / best[k]:.2f}x" if "official" in best else "n/a"
        delta = f"{r['delta']:.2e}" if r["delta"] is not None else "n/a"
        print(f"| {names[k]:<38} | {statistics.median(r['seconds']):>10.2f} | {best[k]:>8.2f} "
              f"| {statistics.median(r['cpu']):>7.1f} | {rel:>11} | {r['loaded_mb']:>12.0f} "
              f"| {r['peak_mb']:>14.0f} "
              f"| {r['forward_mb']:>13.0f} | {delta:>9} |")
    print("latency: wall-clock per forward; best = the least disturbed run on a shared machine (vs official "
          "compares those); CPU = process CPU time per forward, all threads; loaded = resident after loading "
          "weights + inputs; peak RSS = during the forwards; forward = peak - loaded")
    if not args.official_repo:
        print("(the official reference needs --official-repo PATH, a checkout of NVIDIA/pix2pixHD)")


if __name__ == "__main__":
    main()

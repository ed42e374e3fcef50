"""Turn a training run into a shippable model file: the EMA generator in fp16 + provenance.

    python scripts/release_model.py runs/deepfill-v2-scenes \
        src/gancanvas/pretrained/deepfill-v2-scenes.safetensors

The metadata keeps the architecture and its options (so `gancanvas.load` needs nothing else),
the training step, and the run's resolved config (so the model can be reproduced).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gancanvas.weights import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    ap.add_argument("--palette", default=None,
                    help="label-map palette stored with a synthesis model (e.g. scenes), so colour label "
                         "maps are read without --palette")
    args = ap.parse_args()
    model, meta = load_model(args.run_dir / "model.safetensors")
    extra = dict(meta.get("extra", {}))
    extra["config_yaml"] = (args.run_dir / "config.yaml").read_text()
    steps = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines() if line]
    evals = [s for s in steps if s.get("kind") == "eval"]
    # The exported EMA belongs to the newest complete checkpoint (`last` names it: step-XXXXXXXX).
    last = (args.run_dir / "last").read_text().strip() if (args.run_dir / "last").is_file() else ""
    extra["train_steps"] = (int(last.rsplit("-", 1)[-1]) if last.startswith("step-")
                            else max((s.get("step", 0) for s in steps), default=0))
    if evals:
        extra["last_eval"] = evals[-1]["metrics"]
    if args.palette:
        from gancanvas.data.labels import load_palette

        load_palette(args.palette)  # fail here, not when a user reads a label map
        extra["palette"] = args.palette
    save_model(args.output, model, arch=meta["arch"], config=meta["config"], extra=extra,
               dtype=None if args.fp32 else torch.float16)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB, step {extra['train_steps']})")


if __name__ == "__main__":
    main()

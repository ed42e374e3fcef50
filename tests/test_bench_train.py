"""benchmarks/bench_train.py runs the real trainer and reports each variant's throughput."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_train_reports_every_variant():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"),
           str(ROOT / "configs/deepfill_v2/tiny-test.yaml"), "train.device=cpu",
           "--steps", "2", "--warmup", "1",
           "--variant", "train.batch_size=2", "--variant", "train.batch_size=4",
           "--variant", "train.amp=bogus"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.stdout.splitlines() if line.startswith("| train.")}
    assert rows["train.batch_size=2"][:2] == ["cpu", "2"] and rows["train.batch_size=4"][1] == "4"
    for name in ("train.batch_size=2", "train.batch_size=4"):
        steps_per_s, images_per_s = float(rows[name][3]), float(rows[name][4])
        assert steps_per_s > 0 and abs(images_per_s - steps_per_s * int(rows[name][1])) < 0.1 * images_per_s
    assert rows["train.batch_size=2"][-1] == "1.00x"
    assert re.match(r"failed: .*train\.amp must be one of", rows["train.amp=bogus"][0])

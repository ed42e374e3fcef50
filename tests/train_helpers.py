"""Shared scaffolding of the training tests: batches from a trainer's dataset, one-line errors,
metrics.jsonl, flattened checkpoints and the exact-resume check (N steps straight against N/2 steps,
a stop by SIGINT, a resume and the other N/2).

Imported as `from train_helpers import ...`: tests/ is on sys.path (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gancanvas.train import engine, run


def train_batch(t: engine.Trainer, start: int = 0) -> dict[str, torch.Tensor]:
    """Training samples start .. start + batch_size of `t`, stacked."""
    items = [t.train_set[n] for n in range(start, start + t.cfg.train.batch_size)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def one_line(err) -> str:
    """The message of a `pytest.raises` result, checked to be a single line."""
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def tiny_vgg19_file(tmp_path_factory) -> Path:
    """A random VGG19 file at 1/16 of the channels, up to relu5_1 (`loss.vgg_channel_divisor=16`)."""
    from gancanvas.nn.vgg import make_random_vgg19_weights

    return make_random_vgg19_weights(tmp_path_factory.mktemp("vgg") / "vgg19.safetensors", channel_divisor=16,
                                     depth="relu5_1")


def metrics_lines(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def checkpoint_state(ckpt: Path) -> dict:
    """Everything of a checkpoint: weights, EMA, optimizer and grad-scaler states, flattened."""
    out = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        out.update({f"{f.stem}.{k}": v for k, v in load_file(str(f)).items()})
    blob = torch.load(ckpt / "state.pt", weights_only=True)

    def walk(prefix, x):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(f"{prefix}.{i}", v)
        else:
            out[prefix] = x

    walk("opt", blob["optimizers"])
    walk("scaler", blob["scalers"])  # empty without fp16
    return out


def assert_same_state(a: dict, b: dict) -> None:
    """Two `checkpoint_state`s are equal, bit for bit."""
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def assert_exact_resume(config: Path, tmp_path: Path, recipe_cls: type, overrides: list[str],
                        init: Path | None = None) -> None:
    """A 4-step run of `config` equals one stopped by SIGINT after step 2 (from `recipe_cls.on_step`)
    and resumed: the step-4 checkpoints are identical. `overrides` must keep train.total_steps=4 and
    the step-2 checkpoint."""
    full = run(config, run_dir=tmp_path / "full", init=init, overrides=overrides)
    # The signal comes from inside the session (a schedule that depends on total_steps must be the
    # same in both); the resumed session starts at step 3.
    original = recipe_cls.on_step

    def interrupt_at_2(self, step, optimizers):
        original(self, step, optimizers)
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipe_cls, "on_step", interrupt_at_2)
        half = run(config, run_dir=tmp_path / "half", init=init, overrides=overrides)
    assert (half / "last").read_text().strip() == "step-00000002"
    run(config, run_dir=half, resume=True, overrides=overrides)
    assert_same_state(checkpoint_state(full / "checkpoints/step-00000004"),
                      checkpoint_state(half / "checkpoints/step-00000004"))


def learning_rates(trainer, steps) -> list[tuple[float, float]]:
    """(G, D) learning rates of the first parameter groups that `recipe.on_step` sets for each step."""
    out = []
    for step in steps:
        trainer.recipe.on_step(step, trainer.opts)
        out.append((trainer.opts["G"].param_groups[0]["lr"], trainer.opts["D"].param_groups[0]["lr"]))
    return out

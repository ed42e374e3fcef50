"""What a training recipe is: networks, optimizers, phases and one loss per phase.

The engine owns everything else (loop, AMP, DDP, EMA, logging, checkpoints, resume). One
training *step* runs every phase in order, each `count` times; every phase run trains one
network with one optimizer on one batch:

    DeepFill v2:  [Phase("D", "D"), Phase("G", "G")]            1:1, as the official trainer
    DeepFill v1:  [Phase("D", "D", count=5), Phase("G", "G")]   5 critic updates per G update

Inside `loss(phase, nets, batch)` the network being trained is the DDP-wrapped one and the
others are the plain modules (their parameters do not require grad), so no DDP instance
waits for gradients that never come. Call the trained network once per loss (concatenate real
and fake batches): DDP expects one forward per backward. A loss returns `(scalar, {name: detached scalar})`;
the engine averages the dict over `log_every` steps and logs it as `<phase>/<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ... import registry
from ...config import structured
from ...errors import CheckpointError, ConfigError
from ...weights import load_state_strict


def decay_learning_rates(cfg, niter_decay: int, step: int, optimizers) -> None:
    """Set each optimizer's lr for the step after `step` steps: train.lr_g / lr_d (by key), constant,
    then linear towards 0 over the last `niter_decay` steps (pix2pixHD's and SPADE's official
    epoch schedule, in steps)."""
    f = 1.0 if niter_decay == 0 else max(0.0, min(1.0, (cfg.steps() - step) / niter_decay))
    for key, opt in optimizers.items():
        for group in opt.param_groups:
            group["lr"] = (cfg.train.lr_g if key == "G" else cfg.train.lr_d) * f


def check_niter_decay(niter_decay: int, cfg) -> None:
    """`loss.niter_decay` (the steps of linear learning-rate decay) must fit in the run."""
    total = cfg.steps()
    if not 0 <= niter_decay <= total:
        raise ConfigError(f"loss.niter_decay must be in 0..{total} (the training steps), got {niter_decay}")


@dataclass
class Phase:
    name: str  # label in logs ("D", "G")
    net: str  # the network this phase updates (a key of build_networks()); its optimizer has the same key
    count: int = 1  # runs per step
    new_batch: bool = True  # False: reuse the batch of the previous phase run (no new samples drawn)


@dataclass
class NoLoss:
    """A recipe without options."""


class Recipe:
    """Base class. Subclasses set `name`, `Loss` and implement `loss`, `complete` and `visuals`."""

    name: ClassVar[str] = "base"
    Loss: ClassVar[type] = NoLoss  # dataclass of the `loss:` section
    generator: ClassVar[str] = "G"  # the network that gets an EMA copy and is exported

    def __init__(self, cfg):
        self.cfg = cfg
        self.arch = cfg.model.arch
        self.model_cfg = registry.model_config(self.arch, cfg.model.options)
        self.loss_cfg = structured(self.Loss, cfg.loss, name=f"loss ({self.name} recipe)")

    # --- structure ---------------------------------------------------------------------------
    def build_networks(self) -> dict[str, nn.Module]:
        """The generator (registry.create) and its registered discriminator."""
        opts = dict(self.cfg.model.options)
        return {"G": registry.create(self.arch, **opts),
                "D": registry.create_discriminator(self.arch, **opts)}

    def build_optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        betas = tuple(t.betas)
        return {"G": torch.optim.Adam(nets["G"].parameters(), lr=t.lr_g, betas=betas),
                "D": torch.optim.Adam(nets["D"].parameters(), lr=t.lr_d, betas=betas)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D"), Phase("G", "G")]

    def build_datasets(self, trainer) -> tuple[Any, Any] | None:
        """(train_set, val_set) for families whose samples are not inpainting crops + masks.

        None (the default) means the engine's inpainting data: `data.datasets.InpaintTrainSet`
        (global sample key n -> dict of tensors, deterministic in n for exact resume) and a fixed
        `InpaintValSet`. A family that needs other samples (margins, label maps) returns sets with
        the same contract; `trainer` gives `cfg`, `run_dir`, `dist` (rank 0 writes shared files)
        and `sketch`.
        """
        return None

    @property
    def uses_sketch(self) -> bool:
        """Whether batches need a `sketch` entry (the data section can force it on or off)."""
        return bool(getattr(self.model_cfg, "guided", False))

    # --- training ----------------------------------------------------------------------------
    def on_step(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Called by the engine before every training step; `step` = the steps done so far (0 first).

        For learning-rate schedules and staged training: set `param_groups` values, or reset an
        optimizer's state. What it does must depend on `step` alone (not on earlier calls), since a
        resumed run calls it from the resumed step on with the optimizers restored from the checkpoint.
        The default does nothing.
        """

    def loss(self, phase: Phase, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # --- evaluation and pictures -------------------------------------------------------------
    def complete(self, G: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The composited output (known pixels kept) that metrics are computed on, N3HW [-1, 1]."""
        raise NotImplementedError

    def visuals(self, G: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named N3HW / N1HW tensors in [-1, 1] (masks in [0, 1]), one column each in the image grid."""
        return {"input": batch["image"] * (1 - batch["mask"]), "mask": batch["mask"],
                "completed": self.complete(G, batch), "ground truth": batch["image"]}

    # --- checkpoints -------------------------------------------------------------------------
    def init_generator(self, G: nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                       source: str) -> None:
        """`--init`: load generator weights from a model file. Families whose stages change the
        architecture (SRN stage 2, pix2pixHD local enhancers) override this with a partial load."""
        if meta.get("arch") != self.arch:
            raise CheckpointError(f"{source}: holds a '{meta.get('arch')}' generator, this run trains "
                                  f"'{self.arch}'")
        load_state_strict(G, tensors, source)

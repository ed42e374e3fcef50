"""DeepFill v2 training, following the official trainer (REFERENCE.md 2.3-2.5).

- D phase then G phase, 1:1 (`SecondaryMultiGPUTrainer(max_iters=1)`), each on its own batch
  (every official `sess.run` dequeues a fresh batch).
- The SN-PatchGAN critic sees concat(image, mask[, sketch]): the ground truth for real, the
  composited output `x2 * mask + gt * (1 - mask)` for fake; hinge loss
  0.5 mean relu(1 - pos) + 0.5 mean relu(1 + neg).
- G loss = gan_alpha * (-mean D(completed)) + l1_alpha * (mean|gt - x1| + mean|gt - x2|), the L1
  over the whole image (no hole/valid split, no spatial discount).
- Adam(1e-4, 0.5, 0.999) for both: the train-section defaults. The official rate is constant;
  `loss.niter_decay` (default 0) lets both fall linearly to 0 over the last steps, as pix2pixHD's
  schedule does, to settle a fine-tune.

With `gan_alpha: 0` the recipe is a pure reconstruction one: no critic phase and no critic call
in the generator phase (the critic stays at its initial weights), so a step costs the generator
alone.

Departure: masks are drawn per sample (the official draws one mask per batch); more mask
variety per step, the same distribution. The sketch channel (guided models) comes from Canny
edges of the ground truth inside the hole (data.sketch), standing in for the unreleased HED edges.

Mixed precision: the contextual attention computes its scores and softmax in float32 under
autocast itself; the losses here are computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...losses.gan import hinge_d_loss, hinge_g_loss
from . import register_recipe
from .base import Phase, Recipe, check_niter_decay, decay_learning_rates


@dataclass
class DeepFillV2Loss:
    l1_alpha: float = 1.0  # official l1_loss_alpha
    gan_alpha: float = 1.0  # official gan_loss_alpha
    niter_decay: int = 0  # last steps over which the learning rates fall linearly to 0 (0: constant)


@register_recipe
class DeepFillV2Recipe(Recipe):
    name = "deepfill_v2"
    Loss = DeepFillV2Loss

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.data.size % 8:
            raise ConfigError(f"data.size must be a multiple of 8 for DeepFill v2, got {cfg.data.size}")
        check_niter_decay(self.loss_cfg.niter_decay, cfg)

    @property
    def adversarial(self) -> bool:
        return self.loss_cfg.gan_alpha != 0

    def phases(self) -> list[Phase]:
        return [Phase("D", "D"), Phase("G", "G")] if self.adversarial else [Phase("G", "G")]

    def on_step(self, step, optimizers):
        decay_learning_rates(self.cfg, self.loss_cfg.niter_decay, step, optimizers)

    def _critic_input(self, image: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [image, batch["mask"]]
        if self.model_cfg.guided:
            parts.append(batch["sketch"])
        return torch.cat(parts, dim=1)

    def _generate(self, G, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return G(batch["image"], batch["mask"], batch.get("sketch") if self.model_cfg.guided else None)

    def loss(self, phase, nets, batch):
        G, D = nets["G"], nets["D"]
        gt, mask = batch["image"], batch["mask"]
        if phase.net == "D":
            with torch.no_grad():
                x2 = self._generate(G, batch)["refined"]
            completed = x2 * mask + gt * (1 - mask)
            # Real and fake in one critic call, as the official graph does; a DDP-wrapped module
            # must be called once per backward.
            real, fake = self._critic_input(gt, batch), self._critic_input(completed, batch)
            pos, neg = D(torch.cat([real, fake])).float().chunk(2)
            d_loss = hinge_d_loss(pos, neg)
            return d_loss, {"hinge": d_loss, "real": pos.mean(), "fake": neg.mean()}

        out = self._generate(G, batch)
        x1, x2 = out["coarse"].float(), out["refined"].float()
        l1 = (gt - x1).abs().mean() + (gt - x2).abs().mean()
        c = self.loss_cfg
        if not self.adversarial:
            total = c.l1_alpha * l1
            return total, {"total": total, "l1": l1}
        completed = x2 * mask + gt * (1 - mask)
        neg = D(self._critic_input(completed, batch)).float()
        adv = hinge_g_loss(neg)
        total = c.gan_alpha * adv + c.l1_alpha * l1
        return total, {"total": total, "adv": adv, "l1": l1}

    def complete(self, G, batch):
        x2 = self._generate(G, batch)["refined"].float()
        return x2 * batch["mask"] + batch["image"] * (1 - batch["mask"])

    def visuals(self, G, batch):
        gt, mask = batch["image"], batch["mask"]
        out = self._generate(G, batch)
        x1, x2 = out["coarse"].float(), out["refined"].float()
        cols = {"input": gt * (1 - mask), "mask": mask}
        if self.model_cfg.guided:
            cols["sketch"] = batch["sketch"]
        cols.update({"coarse": x1, "refined": x2, "completed": x2 * mask + gt * (1 - mask)})
        try:
            from ...nn.attention import flow_to_image
        except ImportError:
            pass
        else:  # where each hole position copies from, in the official colour wheel
            flow = flow_to_image(out["offsets"]).float()
            cols["attention"] = F.interpolate(flow, size=gt.shape[-2:], mode="nearest")
        cols["ground truth"] = gt
        return cols

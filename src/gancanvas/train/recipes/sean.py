"""SEAN training: SPADE's trainer (`spade.py`: G update, then a D update that re-generates the fake
with the updated G; hinge GAN averaged over the scales, feature matching x10, VGG x10; TTUR Adam,
G 1e-4 / D 4e-4, betas (0, 0.9), set in the configs; linear decay over the last `niter_decay`
steps), with SEAN's generator call (REFERENCE.md 8.4).

- Training is pure reconstruction, as officially: the generator gets the label map and the real
  image, whose per-region style codes (its style encoder, region-wise average pooling under the
  same label map) modulate the synthesis. No KL term, no separate encoder loss: the style encoder
  is part of the generator and trained by G's losses.
- The per-layer noise is drawn from the global RNG, which the engine reseeds every step (exact
  resume).
- Validation (`complete`): the reconstruction from the real image's styles, what SEAN reports
  PSNR / SSIM on, with a fixed noise draw so the scores do not depend on the RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import register_recipe
from .spade import SPADEFamilyLoss, SPADERecipe


@dataclass
class SEANLoss(SPADEFamilyLoss):
    """SPADE's losses without the KL term (SEAN has no VAE)."""


@register_recipe
class SEANRecipe(SPADERecipe):
    name = "sean"
    Loss = SEANLoss

    def generate(self, G, sem, batch):
        return G(sem, image=batch["image"]), {}

    def regenerate(self, G, sem, batch):
        return G(sem, image=batch["image"])

    def complete(self, G, batch):
        gen = torch.Generator(batch["image"].device).manual_seed(0)
        return G(self.semantic(G, batch), image=batch["image"], generator=gen).float()

    def visuals(self, G, batch):
        cols = super().visuals(G, batch)
        cols["reconstruction"] = cols.pop("synthesized")
        if batch["image"].shape[0] > 1:
            # Every label map with the styles of the next row's image (regions it lacks: zero codes).
            core = getattr(G, "module", G)
            sem = self.semantic(G, batch)
            styles, present = core.encode_styles(batch["image"], sem)
            gen = torch.Generator(batch["image"].device).manual_seed(0)
            cols["next row's styles"] = G(sem, styles=styles.roll(-1, 0), present=present.roll(-1, 0),
                                          generator=gen).float()
        gt = cols.pop("ground truth")
        cols["ground truth"] = gt
        return cols

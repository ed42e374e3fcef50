"""SRN training in two stages, following the official trainer (REFERENCE.md 3.1, 3.4-3.7).

Stage 1 (`loss.pretrain: true`, official `--pretrain_network 1`): reconstruction only,

    G = l1_alpha * l1 + ae_alpha * ae
    l1 = pretrain_l1_alpha * mean(|Y - Yhat| * W)             W the RSV weights of the mask
    ae = pretrain_l1_alpha * mean(|Y - Yhat| * (1 - M)) / mean(1 - M)   (the known region)

on the raw (not composited) output Yhat, with M = 1 on the margins. No critic is built (the
official graph builds one but never steps it; --init takes the generator only either way).

Stage 2 (`loss.pretrain: false`, started with `--init <stage-1 run>/last`): all losses,

    G = gan_alpha * (g_global + g_context) + mrf_alpha * ID-MRF(Yhat, Y) + l1_alpha * l1 + ae_alpha * ae
    D = WGAN(global) + WGAN(context) + gp_lambda * (GP over M + GP over the critic's pooled mask)

with 5 critic phases per generator phase, each on its own batch, fake = the composited canvas,
one set of interpolates for both critics (losses/srn.py). Adam(1e-4, 0.5, 0.9): the configs set
`train.betas: [0.5, 0.9]`. ID-MRF uses VGG19 (`loss.vgg19_weights`, else $GANCANVAS_VGG19_WEIGHTS),
loaded when the trainer is built, so a missing file stops the run before the first step.

Samples (data/outpaint_datasets.py): a canvas-sized crop of the ground truth and margins that
place a known box of the fixed `loss.known_size` on it. The generator takes one set of margins
per call, so all samples of a batch share the known box's position (the official graph draws
one box per batch too); the position changes from batch to batch. The margin settings sit in
this section because `data:` has no outpainting keys. Validation: fixed (image, margins) pairs,
the margins drawn from `eval.seed` and kept in `<run>/val_margins.json` (`eval.masks` may name
another run's file); there the margins vary per pair and `complete` runs G once per distinct set.

Departures: one optimizer per network (official: one Adam object; its state is per variable,
so the same). The critics and the losses run in float32 even under AMP (the gradient penalty
differentiates twice through the critics). Images are RGB (official: BGR). VGG19 defaults to
torchvision's weights and input normalisation (official: MatConvNet weights with Caffe
normalisation, `loss.vgg19_normalize: caffe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...data.margins import Margins, crop_known
from ...errors import CheckpointError, ConfigError, MissingWeightsError
from ...losses.srn import (
    confidence_driven_weights,
    relative_spatial_variant_weights,
    srn_critic_loss,
    srn_generator_adversarial,
    srn_reconstruction_losses,
)
from . import register_recipe
from .base import Phase, Recipe

L1_TYPES = ("rsv", "confidence", "mask")


@dataclass
class SRNLoss:
    pretrain: bool = False  # official --pretrain_network: stage 1, reconstruction only, no critic
    l1_alpha: float = 4.2  # official l1_loss_alpha (the RSV-weighted term)
    ae_alpha: float = 1.2  # official ae_loss_alpha (the known-region term)
    pretrain_l1_alpha: float = 1.2  # official pretrain_l1_alpha: the scale inside both terms
    l1_type: str = "rsv"  # official l1_type 0 (rsv), 1 (confidence: GMCNN's weights), 2 (mask: plain)
    gan_alpha: float = 0.001  # official gan_loss_alpha (both critics, weight 1 each)
    mrf_alpha: float = 0.05  # official mrf_alpha (ID-MRF on relu3_2 + 2 x relu4_2); 0 = no VGG19 needed
    gp_lambda: float = 10.0  # official wgan_gp_lambda
    critic_steps: int = 5  # critic updates per generator update (official 5)
    vgg19_weights: str = ""  # VGG19 file for ID-MRF (torchvision layout); empty = $GANCANVAS_VGG19_WEIGHTS
    vgg19_normalize: str = "imagenet"  # input normalisation of the weights: imagenet | caffe
    vgg19_channel_divisor: int = 1  # tests only: tiny random VGG19 files (nn/vgg.py)
    mrf_max_positions: int = 65 * 65  # official sampling cap per layer (positions); 0 = never sample
    mrf_max_scores: int = 1 << 22  # ID-MRF score entries computed at once (chunking; same result)
    # Outpainting samples (data/outpaint_datasets.py). The known box has one size for the whole run.
    known_size: list[int] = field(default_factory=lambda: [128, 128])  # official mask_shapes (h, w)
    margin_mode: str = "random"  # random (official random_mask) | one-sided (the box touches an edge)
    margin_sides: list[str] = field(default_factory=lambda: ["top", "left", "bottom", "right"])
    min_margin: list[int] = field(default_factory=lambda: [0, 0])  # official --margins (top, left)


def _detached(**logs: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in logs.items()}


def _margins_of(batch: dict[str, torch.Tensor]) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in row) for row in batch["margins"].tolist()]


@register_recipe
class SRNRecipe(Recipe):
    name = "srn"
    Loss = SRNLoss

    def __init__(self, cfg):
        super().__init__(cfg)
        c, size = self.loss_cfg, cfg.data.size
        if c.l1_type not in L1_TYPES:
            raise ConfigError(f"loss.l1_type must be one of {', '.join(L1_TYPES)}, got '{c.l1_type}'")
        if c.critic_steps < 1:
            raise ConfigError(f"loss.critic_steps must be at least 1, got {c.critic_steps}")
        if c.vgg19_normalize not in ("imagenet", "caffe"):
            raise ConfigError(f"loss.vgg19_normalize must be imagenet or caffe, got '{c.vgg19_normalize}'")
        if list(self.model_cfg.critic_size) != [size, size]:
            raise ConfigError(f"model.options.critic_size ({list(self.model_cfg.critic_size)}) must be "
                              f"[{size}, {size}] (data.size): the global critic is built for the canvas size")
        from ...data.outpaint_datasets import check_margin_sampling

        check_margin_sampling(size, c.known_size, c.margin_mode, c.margin_sides, c.min_margin, prefix="loss.")
        self.known = (int(c.known_size[0]), int(c.known_size[1]))
        self._check_expansion(size)
        self.mrf = None if c.pretrain or c.mrf_alpha == 0 else self._build_mrf()

    def _check_expansion(self, size: int) -> None:
        """The canvas must be one this generator can expand the known box to (SRNGenerator.check_margins)."""
        (h, w), m = self.known, self.model_cfg
        if m.compat == "official":
            if h % 4 or w % 4 or size % h or size % w or (size // h) * (size // w) != m.ratio:
                raise ConfigError(f"loss.known_size {h}x{w}: official SRN expands by reshaping, so the "
                                  f"{size}x{size} canvas must be whole multiples of it (sides multiples of "
                                  f"4) with (H/h)*(W/w) = model.options.ratio ({m.ratio})")
        elif size > math.isqrt(m.ratio) * min(h, w):
            s = math.isqrt(m.ratio)
            raise ConfigError(f"loss.known_size {h}x{w}: the model expands at most {s}x per side "
                              f"(model.options.ratio {m.ratio}), too little for the {size}x{size} canvas")

    def _build_mrf(self):
        from ...losses.perceptual import IDMRFLoss

        c = self.loss_cfg
        try:
            return IDMRFLoss(weights=c.vgg19_weights or None, normalize=c.vgg19_normalize, pool="avg",
                             max_positions=c.mrf_max_positions or None, max_scores=c.mrf_max_scores,
                             channel_divisor=c.vgg19_channel_divisor)
        except (MissingWeightsError, CheckpointError) as err:
            raise type(err)(f"loss.vgg19_weights: {err} (ID-MRF of SRN stage 2; loss.mrf_alpha=0 "
                            "trains without it)") from None

    # --- structure ---------------------------------------------------------------------------
    def build_networks(self):
        nets = super().build_networks()
        if self.loss_cfg.pretrain:
            del nets["D"]  # stage 1 trains no critic; every generator parameter gets a gradient
        return nets

    def build_optimizers(self, nets):
        t = self.cfg.train
        return {k: torch.optim.Adam(m.parameters(), lr=t.lr_g if k == "G" else t.lr_d, betas=tuple(t.betas))
                for k, m in nets.items()}

    def phases(self) -> list[Phase]:
        if self.loss_cfg.pretrain:
            return [Phase("G", "G")]
        return [Phase("D", "D", count=self.loss_cfg.critic_steps), Phase("G", "G")]

    def build_datasets(self, trainer):
        from ...data import outpaint_datasets as od
        from ...data.datasets import build_sources

        cfg, c = trainer.cfg, self.loss_cfg
        d = cfg.data
        train_src, val_src = build_sources(d)
        sampling = dict(mode=c.margin_mode, sides=list(c.margin_sides), min_margin=list(c.min_margin))
        # One margin draw per global batch: every rank's share of a batch gets the same margins.
        train_set = od.OutpaintTrainSet(train_src, d.size, self.known, cfg.train.seed,
                                        group=cfg.train.batch_size, flip=d.flip, load_size=d.load_size,
                                        **sampling)
        path = Path(cfg.eval.masks) if cfg.eval.masks else trainer.run_dir / "val_margins.json"
        # Written once by rank 0 and read back ever after (as the inpainting mask sets).
        if not cfg.eval.masks and trainer.dist.main:
            od.write_val_margins(path, d.val_count, d.size, self.known, cfg.eval.seed, **sampling)
        if trainer.dist.world > 1:
            torch.distributed.barrier()
        margins = od.read_val_margins(path, d.size, self.known)[:d.val_count]
        return train_set, od.OutpaintValSet(val_src, margins, d.size, load_size=d.load_size)

    # --- losses ------------------------------------------------------------------------------
    def _weights(self, mask: torch.Tensor) -> torch.Tensor:
        t = self.loss_cfg.l1_type
        if t == "rsv":
            return relative_spatial_variant_weights(mask)
        if t == "confidence":
            return confidence_driven_weights(mask)
        return mask

    @staticmethod
    def _shared_margins(batch) -> Margins:
        rows = _margins_of(batch)
        if any(r != rows[0] for r in rows):
            raise ValueError("SRN training batches must share one set of margins (OutpaintTrainSet draws "
                             f"one per batch), got {sorted(set(rows))}")
        return Margins(*rows[0])

    def loss(self, phase, nets, batch):
        G, c = nets["G"], self.loss_cfg
        gt = batch["image"]
        m = self._shared_margins(batch)
        if phase.net == "D":
            with torch.no_grad():
                out = G(crop_known(gt, m), m)
            with torch.autocast(gt.device.type, enabled=False):
                d = srn_critic_loss(nets["D"], gt.float(), out["complete"].float(), out["mask"].float(),
                                    gp_lambda=c.gp_lambda)
            return d["total"], _detached(**d)

        out = G(crop_known(gt, m), m)
        with torch.autocast(gt.device.type, enabled=False):
            gt32, pred, mask = gt.float(), out["output"].float(), out["mask"].float()
            rec = srn_reconstruction_losses(pred, gt32, mask, self._weights(mask), scale=c.pretrain_l1_alpha)
            total = c.l1_alpha * rec["l1"] + c.ae_alpha * rec["ae"]
            logs = {"l1": rec["l1"], "ae": rec["ae"]}
            if not c.pretrain:
                adv = srn_generator_adversarial(nets["D"], out["complete"].float(), mask)
                total = total + c.gan_alpha * adv
                logs["adv"] = adv
        if self.mrf is not None:
            if self.mrf.vgg.scale.device != gt.device:
                self.mrf.to(gt.device)
            # ID-MRF on the raw prediction (official); its VGG may run under autocast, the scores do not.
            mrf = self.mrf(out["output"], gt).float()
            total = total + c.mrf_alpha * mrf
            logs["mrf"] = mrf
        return total, _detached(total=total, **logs)

    # --- evaluation and pictures -------------------------------------------------------------
    def _predict(self, G, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw output, completed canvas), running G once per distinct set of margins in the batch."""
        gt = batch["image"]
        rows = _margins_of(batch)
        output = torch.empty_like(gt, dtype=torch.float32)
        complete = torch.empty_like(output)
        for m in dict.fromkeys(rows):
            idx = torch.tensor([i for i, r in enumerate(rows) if r == m], device=gt.device)
            out = G(crop_known(gt.index_select(0, idx), m), m)
            output[idx], complete[idx] = out["output"].float(), out["complete"].float()
        return output, complete

    def complete(self, G, batch):
        return self._predict(G, batch)[1]

    def visuals(self, G, batch):
        gt, mask = batch["image"], batch["mask"]
        output, complete = self._predict(G, batch)
        return {"input": gt * (1 - mask), "mask": mask, "output": output, "completed": complete,
                "ground truth": gt}

"""SPADE training, following the official trainer (REFERENCE.md 7.4); SEAN's recipe (`sean.py`) is
this one with another generator call.

- One iteration: a G update, then a D update on the same batch. The D update **re-generates** the
  fake under `torch.no_grad()` with the G just updated (the official `run_discriminator_one_step`,
  unlike pix2pixHD's single forward); with the VAE that also draws a new z from the encoding.
- D sees concat(semantic map, image), fake and real concatenated along the batch in one call (the
  official `discriminate`; one spectral-norm power iteration per D call, as officially).
- Hinge GAN loss (`gan_mode`, official default): D = mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))
  (no 1/2), G = -mean(D(fake)); on the last output of every scale, **averaged** over the num_d scales.
- loss_G = GAN + feature matching (L1 between D's features of fake and of the detached real, every
  layer but the prediction, each scale weighted lambda_feat / num_d; no pix2pixHD 4/(n+1) factor)
  + lambda_vgg * VGG19 loss (relu1_1..relu5_1 weighted 1/32..1 on [-1, 1] images, `no_vgg` to
  drop it) + lambda_kld * KL(N(mu, var) || N(0, 1)) (summed, as officially) with the VAE
  (`model.options.use_vae`): z is then sampled from the encoding of the real image.
- Optimizers: Adam for G and D with `train.lr_g`, `train.lr_d`, `train.betas`. The official TTUR
  default (lr 2e-4): G lr / 2 = 1e-4, D lr * 2 = 4e-4, betas (0, 0.9) — the configs say so. The
  official --no_TTUR is lr_g = lr_d = 2e-4 with betas (0.5, 0.999).
- Schedule in steps (the official one is in epochs: niter constant + niter_decay linear): the
  learning rates stay constant, then fall linearly over the last `niter_decay` steps (the last
  step runs at lr / niter_decay), the G / D ratio kept, as the official TTUR decay.
- Validation (`complete`, on the EMA generator in eval mode): the synthesis from the label map;
  with the VAE, from z = mu of the encoded real image (the reconstruction; the mean, so the scores
  do not depend on a random draw). Scored with the pixel metrics of `eval.metrics`.

Departures: the official code has no EMA generator (the engine keeps one; model.safetensors is the
EMA); "syncbatch" normalisation is plain batch norm in one process and SyncBatchNorm only for
multi-process CUDA training (CPU DDP cannot synchronise batch norm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import ConfigError, MissingWeightsError
from ...losses.gan import adversarial_loss, feature_matching_loss
from . import register_recipe
from .base import Phase, Recipe, decay_learning_rates
from .label_maps import check_label_loss_options, colour_labels

GAN_MODES = ("hinge", "lsgan", "vanilla", "wgan")  # official hinge / ls / original / w
DONTCARE_ID = 255  # the official "don't care" label id (SPADE / SEAN `contain_dontcare`)


@dataclass
class SPADEFamilyLoss:
    """The `loss:` options SPADE and SEAN share."""

    gan_mode: str = "hinge"  # official default (--gan_mode)
    lambda_feat: float = 10.0  # feature matching weight (official --lambda_feat; 0 = --no_ganFeat_loss)
    lambda_vgg: float = 10.0  # VGG loss weight (official --lambda_vgg)
    no_vgg: bool = False  # official --no_vgg_loss
    vgg19_weights: str = ""  # torchvision VGG19 state dict; empty = $GANCANVAS_VGG19_WEIGHTS
    vgg_channel_divisor: int = 1  # 1 for real weights; > 1 only for tiny random test files
    niter_decay: int = 0  # last steps over which the learning rates fall linearly to 0
    # Width / height of the training images: data.size x round(data.size * aspect) (2 = Cityscapes).
    aspect: float = 1.0


@dataclass
class SPADELoss(SPADEFamilyLoss):
    lambda_kld: float = 0.05  # KL weight with the VAE encoder (official --lambda_kld)


def _float(preds):
    """Multi-scale D outputs (lists of feature lists) in float32, for losses under autocast."""
    return [[f.float() for f in scale] for scale in preds]


def _sync_batchnorm_wanted(device_pref: str) -> bool:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    return device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())


@register_recipe
class SPADERecipe(Recipe):
    name = "spade"
    Loss = SPADELoss

    def __init__(self, cfg):
        super().__init__(cfg)
        c, m = self.loss_cfg, self.model_cfg
        check_label_loss_options(c, cfg, GAN_MODES)
        for key in ("lambda_feat", "lambda_vgg", "lambda_kld"):
            if getattr(c, key, 0.0) < 0:
                raise ConfigError(f"loss.{key} must be >= 0, got {getattr(c, key)}")
        self.height = cfg.data.size
        self.width = round(cfg.data.size * c.aspect)
        self._check_size()
        self.use_vae = bool(getattr(m, "use_vae", False))
        self.vgg = None
        if not c.no_vgg and c.lambda_vgg:
            from ...losses.perceptual import VGGPerceptualLoss

            try:
                self.vgg = VGGPerceptualLoss(weights=c.vgg19_weights or None,
                                             channel_divisor=c.vgg_channel_divisor)
            except MissingWeightsError as err:
                raise MissingWeightsError(f"loss.vgg19_weights: {err}; or set loss.no_vgg=true to train "
                                          "without the VGG loss") from None

    def _check_size(self) -> None:
        m, h, w = self.model_cfg, self.height, self.width
        stride = 2 ** m.num_up
        if getattr(m, "use_vae", False):
            # The VAE generator's output size is fixed by crop_size and aspect_ratio (official rule).
            gh, gw = m.latent_grid()
            if (gh * stride, gw * stride) != (h, w):
                raise ConfigError(f"model.options.crop_size {m.crop_size} and aspect_ratio {m.aspect_ratio} "
                                  f"make {gh * stride}x{gw * stride} images but the data is {h}x{w} "
                                  f"(data.size x loss.aspect); set crop_size to {w} and aspect_ratio to "
                                  f"the width / height")
        elif h % stride or w % stride:
            raise ConfigError(f"the training images are {h}x{w} (data.size x loss.aspect) but this "
                              f"'{self.arch}' model needs sides that are multiples of {stride} "
                              f"(num_upsampling_layers '{m.num_upsampling_layers}')")

    # --- structure ---------------------------------------------------------------------------
    def build_networks(self):
        nets = super().build_networks()
        if self.model_cfg.param_free_norm == "syncbatch" and _sync_batchnorm_wanted(self.cfg.train.device):
            nets["G"] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets["G"])
        return nets

    def build_optimizers(self, nets):
        t = self.cfg.train
        betas = tuple(float(b) for b in t.betas)  # (0, 0.9) with an int 0 is a TypeError in torch 2 Adam
        return {"G": torch.optim.Adam(nets["G"].parameters(), lr=t.lr_g, betas=betas),
                "D": torch.optim.Adam(nets["D"].parameters(), lr=t.lr_d, betas=betas)}

    def phases(self) -> list[Phase]:
        return [Phase("G", "G"), Phase("D", "D", new_batch=False)]

    def build_datasets(self, trainer):
        from ...data.label_datasets import build_label_sets

        m = self.model_cfg
        return build_label_sets(self.cfg.data, self.height, self.width, self.cfg.train.seed,
                                label_nc=m.label_nc, dontcare=DONTCARE_ID if m.contain_dontcare else None,
                                instances=m.use_instance)

    # --- schedule ----------------------------------------------------------------------------
    def on_step(self, step, optimizers):
        decay_learning_rates(self.cfg, self.loss_cfg.niter_decay, step, optimizers)

    # --- the generator -----------------------------------------------------------------------
    def semantic(self, G, batch) -> torch.Tensor:
        """The semantic map (one-hot classes [+ don't care] [+ instance edges]) of a batch."""
        core = getattr(G, "module", G)  # building it needs no parameters: the DDP wrapper is not needed
        inst = batch["instances"] if self.model_cfg.use_instance else None
        return core.semantic_input(batch["labels"], inst)

    def generate(self, G, sem, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training fake and the extra generator losses (weighted, by name).

        With the VAE, z is sampled from the encoding of the real image (through G's own forward,
        so a DDP wrapper sees one forward); the encoder's (mu, logvar) give the KL term.
        """
        if not self.use_vae:
            return G(sem), {}
        core = getattr(G, "module", G)
        seen = []
        handle = core.encoder.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            fake = G(sem, image=batch["image"])
        finally:
            handle.remove()
        mu, logvar = seen[-1]
        from ...models.spade import kld_loss

        return fake, {"kld": kld_loss(mu.float(), logvar.float()) * self.loss_cfg.lambda_kld}

    def regenerate(self, G, sem, batch) -> torch.Tensor:
        """The D phase's fake (called under no_grad with the updated G), as officially."""
        return G(sem, image=batch["image"]) if self.use_vae else G(sem)

    # --- losses ------------------------------------------------------------------------------
    def _discriminate(self, D, sem, fake, real):
        """(fake predictions, real predictions): one D call on the fake and real halves."""
        fake_in = torch.cat([sem, fake.to(sem.dtype)], 1)
        real_in = torch.cat([sem, real.to(sem.dtype)], 1)
        preds = _float(D(torch.cat([fake_in, real_in])))
        return ([[f.chunk(2)[0] for f in scale] for scale in preds],
                [[f.chunk(2)[1] for f in scale] for scale in preds])

    def loss(self, phase, nets, batch):
        G, D = nets["G"], nets["D"]
        c = self.loss_cfg
        gt = batch["image"]
        sem = self.semantic(G, batch)
        if phase.net == "D":
            with torch.no_grad():
                fake = self.regenerate(G, sem, batch).detach()
            fake_p, real_p = self._discriminate(D, sem, fake, gt)
            d_fake = adversarial_loss(fake_p, False, c.gan_mode, reduce_scales="mean")
            d_real = adversarial_loss(real_p, True, c.gan_mode, reduce_scales="mean")
            total = d_fake + d_real
            return total, {"total": total.detach(), "fake": d_fake.detach(), "real": d_real.detach()}

        fake, extra = self.generate(G, sem, batch)
        pred_fake, pred_real = self._discriminate(D, sem, fake, gt)
        adv = adversarial_loss(pred_fake, True, c.gan_mode, for_discriminator=False, reduce_scales="mean")
        total, logs = adv, {"gan": adv.detach()}
        if c.lambda_feat:
            fm = feature_matching_loss(pred_fake, pred_real, drop_last=True)  # real detached inside
            total = total + c.lambda_feat * fm
            logs["feat"] = fm.detach()
        if self.vgg is not None:
            vgg = self.vgg.to(gt.device)  # a no-op after the first call
            v = vgg(fake, gt).float()
            total = total + c.lambda_vgg * v
            logs["vgg"] = v.detach()
        for name, value in extra.items():
            total = total + value
            logs[name] = value.detach()
        logs["total"] = total.detach()
        return total, logs

    # --- evaluation and pictures -------------------------------------------------------------
    def complete(self, G, batch):
        sem = self.semantic(G, batch)
        if self.use_vae:
            core = getattr(G, "module", G)
            mu, _ = core.encode(batch["image"])
            return G(sem, z=mu).float()
        return G(sem).float()

    def visuals(self, G, batch):
        cols = {"labels": colour_labels(batch["labels"], self.model_cfg.label_nc)}
        if self.model_cfg.use_instance:
            from ...data.labels import instance_edges

            cols["edges"] = instance_edges(batch["instances"].unsqueeze(1))
        cols.update({"synthesized": self.complete(G, batch), "ground truth": batch["image"]})
        if self.use_vae:  # z ~ N(0, 1), a fixed draw, so pictures of different steps compare
            gen = torch.Generator(batch["image"].device).manual_seed(0)
            cols["random z"] = G(self.semantic(G, batch), generator=gen).float()
        return cols

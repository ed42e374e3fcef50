"""pix2pixHD training, following the official trainer (REFERENCE.md 6.4-6.6).

- One iteration: a G update, then a D update on the same batch (the official `optimizer_G.step()`
  then `optimizer_D.step()` after one forward). The D update scores the fake of that forward,
  made before the G update, as the official code does (it is cached between the two phases).
- D sees concat(one-hot labels [+ instance edges], image); LSGAN (MSE to 1 / 0) by default or the
  vanilla GAN (`gan_mode: vanilla`, BCE on logits), on the last output of every scale, summed over
  scales; loss_D = 0.5 * (fake + real).
- loss_G = GAN + lambda_feat * feature matching (L1 between D's features of fake and real, every
  D layer but the prediction, weight 1/num_D * 4/(n_layers_D + 1)) + lambda_vgg * VGG19 loss
  (relu1_1..relu5_1 weighted 1/32..1, [-1, 1] images without ImageNet normalisation).
- Adam(2e-4, 0.5, 0.999) for both (set train.lr_g / lr_d: the configs do); with
  `instance_feat` / `label_feat` the feature encoder E (part of the generator model) is trained with G
  on the real photo's instance-averaged features.
- Schedule in steps (the official one is in epochs): the learning rates of both optimizers stay
  constant, then decay linearly over the last `niter_decay` steps (the official
  `lr -= lr0 / niter_decay` after each epoch past `niter`, so the last step runs at lr0 / niter_decay).
- Local enhancer stage (`--init` a global run): the global generator's weights go into the
  enhancer model's global part (`Pix2PixHD.load_global`); for the first `niter_fix_global` steps only
  the finest enhancer (and E) are updated, then everything, with a fresh Adam state as the official
  optimizer rebuild.

Departures: the fake and real halves go through D in one call (one forward per backward under
DDP); with instance norm that is exactly two calls, with `norm: batch` the two halves share batch
statistics. `gan_mode: vanilla` with feature matching works (the official one crashes: its Sigmoid is
never applied). Validation scores the synthesis from the encoded real photo when the model has
styles (the official --use_encoded_image): the cluster styles are computed after training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import CheckpointError, ConfigError, MissingWeightsError
from ...losses.gan import adversarial_loss, feature_matching_loss
from ...weights import load_state_strict
from . import register_recipe
from .base import Phase, Recipe, decay_learning_rates
from .label_maps import check_label_loss_options, colour_labels

GAN_MODES = ("lsgan", "vanilla")


@dataclass
class Pix2PixHDLoss:
    gan_mode: str = "lsgan"  # official default; "vanilla" = --no_lsgan
    lambda_feat: float = 10.0  # feature matching weight (official --lambda_feat)
    lambda_vgg: float = 10.0  # VGG loss weight (official: lambda_feat as well)
    no_vgg: bool = False  # official --no_vgg_loss
    vgg19_weights: str = ""  # torchvision VGG19 state dict; empty = $GANCANVAS_VGG19_WEIGHTS
    vgg_channel_divisor: int = 1  # 1 for real weights; > 1 only for tiny random test files
    niter_fix_global: int = 0  # steps training only the local enhancer (and E) after --init
    niter_decay: int = 0  # last steps over which the learning rates fall linearly to 0
    # Width / height of the training images: data.size x round(data.size * aspect) (2 = Cityscapes).
    aspect: float = 1.0


def _float(preds):
    """Multi-scale D outputs (lists of feature lists) in float32, for losses under autocast."""
    return [[f.float() for f in scale] for scale in preds]


@register_recipe
class Pix2PixHDRecipe(Recipe):
    name = "pix2pixhd"
    Loss = Pix2PixHDLoss

    def __init__(self, cfg):
        super().__init__(cfg)
        c, m = self.loss_cfg, self.model_cfg
        check_label_loss_options(c, cfg, GAN_MODES)
        if c.niter_fix_global < 0:
            raise ConfigError(f"loss.niter_fix_global must be >= 0, got {c.niter_fix_global}")
        if c.niter_fix_global and m.n_local_enhancers == 0:
            raise ConfigError("loss.niter_fix_global needs a local enhancer (model.options.n_local_enhancers "
                              f"is 0); got {c.niter_fix_global}")
        self.height = cfg.data.size
        self.width = round(cfg.data.size * c.aspect)
        if self.width < 8:
            raise ConfigError(f"loss.aspect {c.aspect} gives {self.width}-pixel wide images at data.size "
                              f"{cfg.data.size}")
        self.staged = c.niter_fix_global > 0
        self.vgg = None
        if not c.no_vgg:
            from ...losses.perceptual import VGGPerceptualLoss

            try:
                self.vgg = VGGPerceptualLoss(weights=c.vgg19_weights or None,
                                             channel_divisor=c.vgg_channel_divisor)
            except MissingWeightsError as err:
                raise MissingWeightsError(f"loss.vgg19_weights: {err}; or set loss.no_vgg=true to train "
                                          "without the VGG loss") from None
        self._cache: tuple[dict, torch.Tensor] | None = None  # (batch, fake) from G phase to D phase

    # --- structure ---------------------------------------------------------------------------
    def build_optimizers(self, nets):
        t = self.cfg.train
        betas = tuple(t.betas)
        G = nets["G"]
        if self.staged:
            # Two groups from the start, the global one at lr 0 while it is fixed: the optimizer keeps
            # one layout for the whole run, so any checkpoint resumes (the official one rebuilds Adam).
            first = G.enhancer_parameters()
            ids = {id(p) for p in first}
            params = [{"params": first}, {"params": [p for p in G.parameters() if id(p) not in ids]}]
        else:
            params = list(G.parameters())
        return {"G": torch.optim.Adam(params, lr=t.lr_g, betas=betas),
                "D": torch.optim.Adam(nets["D"].parameters(), lr=t.lr_d, betas=betas)}

    def phases(self) -> list[Phase]:
        return [Phase("G", "G"), Phase("D", "D", new_batch=False)]

    def build_datasets(self, trainer):
        from ...data.label_datasets import build_label_sets

        m = self.model_cfg
        # Instance maps feed the edge channel and the style pooling; without either they are not read.
        return build_label_sets(self.cfg.data, self.height, self.width, self.cfg.train.seed,
                                label_nc=m.label_nc, dontcare=m.dontcare,
                                instances=not m.no_instance or m.instance_feat)

    # --- schedule ----------------------------------------------------------------------------
    def on_step(self, step, optimizers):
        decay_learning_rates(self.cfg, self.loss_cfg.niter_decay, step, optimizers)
        if self.staged and "G" in optimizers:
            opt = optimizers["G"]
            if step < self.loss_cfg.niter_fix_global:
                opt.param_groups[1]["lr"] = 0.0  # Adam with lr 0 leaves the global weights bit for bit
            elif step == self.loss_cfg.niter_fix_global:
                opt.state.clear()  # the official rebuild: a new Adam over all G parameters

    # --- losses ------------------------------------------------------------------------------
    def _semantic(self, G, batch) -> torch.Tensor:
        core = getattr(G, "module", G)  # prepare() has no parameters: the DDP wrapper is not needed
        return core.prepare(batch["labels"], batch["instances"])["semantic"]

    def _generate(self, G, batch) -> torch.Tensor:
        image = batch["image"] if self.model_cfg.use_features else None
        return G(batch["labels"], batch["instances"], image=image)

    def loss(self, phase, nets, batch):
        G, D = nets["G"], nets["D"]
        c, m = self.loss_cfg, self.model_cfg
        gt = batch["image"]
        sem = self._semantic(G, batch)
        if phase.net == "D":
            cached, self._cache = self._cache, None
            if cached is not None and cached[0] is batch:
                fake = cached[1]
            else:  # a D phase on its own
                with torch.no_grad():
                    fake = self._generate(G, batch)
            preds = _float(D(torch.cat([torch.cat([sem, fake.to(sem.dtype)], 1), torch.cat([sem, gt], 1)])))
            fake_p = [[f.chunk(2)[0] for f in scale] for scale in preds]
            real_p = [[f.chunk(2)[1] for f in scale] for scale in preds]
            d_fake = adversarial_loss(fake_p, False, c.gan_mode)
            d_real = adversarial_loss(real_p, True, c.gan_mode)
            total = 0.5 * (d_fake + d_real)
            return total, {"total": total.detach(), "fake": d_fake.detach(), "real": d_real.detach()}

        fake = self._generate(G, batch)
        self._cache = (batch, fake.detach())
        pred_fake = _float(D(torch.cat([sem, fake.to(sem.dtype)], 1)))
        adv = adversarial_loss(pred_fake, True, c.gan_mode, for_discriminator=False)
        total, logs = adv, {"gan": adv.detach()}
        if not m.no_ganFeat_loss and c.lambda_feat:
            with torch.no_grad():
                pred_real = _float(D(torch.cat([sem, gt], 1)))
            fm = feature_matching_loss(pred_fake, pred_real, layer_weight=4.0 / (m.n_layers_D + 1),
                                       drop_last=True)
            total = total + c.lambda_feat * fm
            logs["feat"] = fm.detach()
        if self.vgg is not None and c.lambda_vgg:
            vgg = self.vgg.to(gt.device)  # a no-op after the first call
            v = vgg(fake, gt).float()
            total = total + c.lambda_vgg * v
            logs["vgg"] = v.detach()
        logs["total"] = total.detach()
        return total, logs

    # --- evaluation and pictures -------------------------------------------------------------
    def complete(self, G, batch):
        return self._generate(G, batch).float()

    def visuals(self, G, batch):
        cols = {"labels": colour_labels(batch["labels"], self.model_cfg.label_nc)}
        if not self.model_cfg.no_instance:
            from ...data.labels import instance_edges

            cols["edges"] = instance_edges(batch["instances"].unsqueeze(1))
        cols.update({"synthesized": self.complete(G, batch), "ground truth": batch["image"]})
        return cols

    # --- checkpoints -------------------------------------------------------------------------
    def init_generator(self, G, tensors, meta, source):
        """`--init`: a model of the same layout loads strictly; a global generator (no local enhancer)
        into a local-enhancer model fills its global part (the official --load_pretrain 512p -> 1024p)."""
        if meta.get("arch") != self.arch:
            raise CheckpointError(f"{source}: holds a '{meta.get('arch')}' generator, this run trains "
                                  f"'{self.arch}'")
        src_local = int(meta.get("config", {}).get("n_local_enhancers", 0))
        if self.model_cfg.n_local_enhancers > 0 and src_local == 0:
            G.load_global(tensors, source)
        else:
            load_state_strict(G, tensors, source)

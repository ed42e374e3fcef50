"""The training loop: plain PyTorch, one process per device (torchrun), one recipe.

Per step (see recipes/base.py): the batches of the step are fetched first, then every phase
runs `count` times: zero the phase's optimizer, forward + loss under autocast, backward
(through its GradScaler with fp16), optimizer step; after a generator phase the EMA copy is
updated. Around the steps: logging (metrics.jsonl, TensorBoard, tqdm on rank 0), image grids,
evaluation of the EMA generator on the fixed validation set, checkpoints, and clean stops on
SIGINT/SIGTERM.

Exact resume rests on three things: (1) the data is a function of a global sample counter
(data/datasets.py) that restarts at step * draws_per_step * batch_size; (2) the global RNGs
are re-seeded at every step from (seed, rank, step), so a loss that draws random numbers
draws the same ones after a resume, on every rank; (3) networks, EMA, optimizers and scalers
are restored from the checkpoint bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ..utils.fs import atomic_write
from . import checkpoint as ckpt_io
from .config import RunConfig, config_to_yaml
from .logging import RunLogger
from .recipes import Phase, get_recipe


# ----------------------------------------------------------------------------- processes
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we called init_process_group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str = "auto") -> Dist:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); nccl on
    GPUs, gloo on CPU. A plain `python` run is a world of one without a process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    owns = False
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        owns = True
    return Dist(rank, world, local_rank, device, owns)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        torch_dist.barrier()


def step_seed(*ints: int) -> int:
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # all devices


# ----------------------------------------------------------------------------- signals
class StopSignal:
    """First SIGINT/SIGTERM: finish the step, checkpoint, exit cleanly. Second: exit at once
    (the atomic checkpoint writes guarantee nothing on disk is torn)."""

    def __init__(self, verbose: bool):
        self.requested = False
        self.verbose = verbose
        self._old: dict[int, Any] = {}
        self._pid = os.getpid()  # forked DataLoader workers inherit the handler; only we print

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():  # signals only work there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.requested:
            os._exit(128 + signum)
        self.requested = True
        if self.verbose and os.getpid() == self._pid:
            print(f"\ngancanvas: {signal.Signals(signum).name}: finishing the current step and writing a "
                  "checkpoint (send it again to exit at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the trainer. A scheduler's stop, `pkill -f` or
    a Ctrl-C reach the workers too; a worker that died of it would make the DataLoader raise in
    the trainer mid-step, before its checkpoint. The trainer shuts its workers down itself."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path, dist: Dist, *, resume: bool = False,
                 init: str | Path | None = None, config_name: str = "config"):
        self.cfg, self.run_dir, self.dist = cfg, Path(run_dir), dist
        self.device = dist.device
        t = cfg.train
        self.recipe = get_recipe(t.recipe)(cfg)
        self.gen = self.recipe.generator
        self.phases: list[Phase] = self.recipe.phases()
        if not self.phases or not self.phases[0].new_batch:
            raise ConfigError(f"recipe '{t.recipe}': the first phase must draw a batch")
        self.draws_per_step = sum(p.count for p in self.phases if p.new_batch)
        if t.batch_size % dist.world:
            raise ConfigError(f"{config_name}: train.batch_size ({t.batch_size}) must be divisible by the "
                              f"{dist.world} processes")
        self.total_steps = cfg.steps()
        self.ema_beta = cfg.ema_beta()
        if self.device.type == "cuda":
            # Process-wide switches; a training process owns its GPU. cuDNN autotuning pays off
            # because every step has the same shapes.
            torch.backends.cuda.matmul.allow_tf32 = t.tf32
            torch.backends.cudnn.allow_tf32 = t.tf32
            torch.backends.cudnn.benchmark = t.tf32
        self.sketch = self._sketch_setting(config_name)

        # Networks: the same seed on every rank gives the same init (DDP would broadcast rank 0's anyway).
        seed_all(t.seed)
        built = self.recipe.build_networks()
        self.nets: dict[str, nn.Module] = {k: m.to(self.device).train() for k, m in built.items()}
        if self.gen not in self.nets:
            raise ConfigError(f"recipe '{t.recipe}' builds no '{self.gen}' network")
        self.ema = copy.deepcopy(self.nets[self.gen]).eval().requires_grad_(False)
        self.opts = self.recipe.build_optimizers(self.nets)
        fp16 = t.amp == "fp16"
        self.scalers = {k: torch.amp.GradScaler(self.device.type) for k in self.opts} if fp16 else {}
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(t.amp)
        # One DDP per network: a phase calls only the wrapper of the network it trains.
        if dist.world > 1:
            ids = [dist.local_rank] if self.device.type == "cuda" else None
            self.wrapped = {k: DistributedDataParallel(m, device_ids=ids) for k, m in self.nets.items()}
        else:
            self.wrapped = dict(self.nets)

        self.step, self.seconds_before, self.resumed_from, self.init_from = 0, 0.0, None, None
        if dist.main:
            ckpt_io.clean_temporary(self.run_dir)
        _barrier(dist)
        found = ckpt_io.find_checkpoint(self.run_dir) if resume else None
        if resume and found is None and dist.main:
            print(f"gancanvas: no checkpoint in {self.run_dir}; starting from step 0", file=sys.stderr)
        if found is not None:
            info = ckpt_io.load_checkpoint(found, nets=self.nets, ema=self.ema, optimizers=self.opts,
                                           scalers=self.scalers, arch=cfg.model.arch, recipe=t.recipe,
                                           generator=self.gen)
            self.step, self.seconds_before, self.resumed_from = info["step"], info.get("seconds", 0.0), found
            if info.get("samples") != self.step * self.draws_per_step * t.batch_size:
                raise ConfigError(f"{found}: written with another batch size or recipe phases "
                                  f"({info.get('samples')} samples at step {self.step}); "
                                  "cannot resume exactly")
            if init is not None and dist.main:
                print(f"gancanvas: resuming {found.name}; --init {init} ignored", file=sys.stderr)
        elif init is not None:
            self._init_generator(init)

        self.train_set, self.val_set = self._build_data()
        self.logger = RunLogger(self.run_dir, dist.main, resume_step=self.step if found is not None else None)
        if dist.main:
            with atomic_write(self.run_dir / "config.yaml", "w") as f:
                f.write(config_to_yaml(cfg))
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self.stopped = False  # set by train(): True when a signal ended it early
        self._restore_mkldnn = False
        critic = any(p.net != "G" for p in self.recipe.phases())
        if self.device.type == "cpu" and t.amp == "bf16" and critic and torch.backends.mkldnn.enabled:
            # oneDNN's bf16 CPU convolutions gave nondeterministic NaNs in the SN-PatchGAN forward
            # (torch 2.13); the native kernels are exact. A generator-only run keeps oneDNN: its bf16
            # convolutions are what make CPU bf16 faster than fp32 (bench_train.py, the DeepFill v2
            # fine-tune config: 1.13 -> 0.76 s/step).
            # Process-wide, so close() turns it back on.
            torch.backends.mkldnn.enabled = False
            self._restore_mkldnn = True
            if dist.main:
                print("gancanvas: note: bf16 on CPU: oneDNN disabled for this process", file=sys.stderr)

    # --- setup helpers -----------------------------------------------------------------------
    def _sketch_setting(self, where: str) -> bool:
        wanted = self.recipe.uses_sketch
        given = self.cfg.data.sketch
        if given is not None and given != wanted:
            state = "is" if wanted else "is not"
            raise ConfigError(f"{where}: data.sketch is {given} but the model {state} sketch-guided "
                              f"(model.options.guided); leave data.sketch empty to follow the model")
        return wanted

    def _init_generator(self, init: str | Path) -> None:
        from ..weights import read_model_file

        path = ckpt_io.generator_file(init)
        tensors, meta = read_model_file(path)
        self.recipe.init_generator(self.nets[self.gen], tensors, meta, str(path))
        self.ema.load_state_dict(self.nets[self.gen].state_dict())
        self.init_from = path

    def _build_data(self):
        from ..data import datasets as ds

        custom = self.recipe.build_datasets(self)
        if custom is not None:
            return custom
        c, d = self.cfg, self.cfg.data
        train_src, val_src = ds.build_sources(d)
        train_set = ds.InpaintTrainSet(train_src, d.size, d.mask, c.train.seed, sketch=self.sketch,
                                       canny=d.canny, flip=d.flip, mask_params=dict(d.mask_params),
                                       load_size=d.load_size)
        mask_dir = Path(c.eval.masks) if c.eval.masks else self.run_dir / "val_masks"
        # Generated once per run by rank 0 and read back from disk ever after: fixed for the whole
        # run even if the mask code changes between a run and its resume.
        if not c.eval.masks and self.dist.main and not (mask_dir / "manifest.json").is_file():
            # The training mask parameters apply when the set is drawn like the training masks.
            params = dict(d.mask_params) if c.eval.mask == d.mask else None
            ds.write_val_masks(mask_dir, c.eval.mask, d.size, d.val_count, c.eval.seed, params)
        _barrier(self.dist)
        val_set = ds.InpaintValSet(val_src, ds.read_val_masks(mask_dir), d.size, sketch=self.sketch,
                                   canny=d.canny, load_size=d.load_size)
        return train_set, val_set

    def _loader(self) -> DataLoader:
        from ..data.datasets import SampleKeys, limit_opencv_threads

        t = self.cfg.train
        if t.workers:
            limit_opencv_threads()
        keys = SampleKeys(self.step * self.draws_per_step, t.batch_size, self.dist.rank, self.dist.world)
        return DataLoader(self.train_set, batch_size=t.batch_size // self.dist.world, sampler=keys,
                          num_workers=t.workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, worker_init_fn=_ignore_stop_signals)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # --- one step ----------------------------------------------------------------------------
    def _run_phase(self, phase: Phase, batch: dict[str, torch.Tensor]) -> None:
        key = phase.net
        for k, m in self.nets.items():
            m.requires_grad_(k == key)  # no grads accumulate in the networks not being trained
        view = {k: (self.wrapped[k] if k == key else m) for k, m in self.nets.items()}
        opt = self.opts[key]
        opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss, logs = self.recipe.loss(phase, view, batch)
        scaler = self.scalers.get(key)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        for name, v in logs.items():
            k = f"{phase.name}/{name}"
            self._sums[k] = self._sums.get(k, 0.0) + v.detach().float()
            self._counts[k] = self._counts.get(k, 0) + 1
        if key == self.gen:
            self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        g = self.nets[self.gen]
        for p_ema, p in zip(self.ema.parameters(), g.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - self.ema_beta)
        for b_ema, b in zip(self.ema.buffers(), g.buffers()):
            b_ema.copy_(b)

    def train_step(self, batches: list[dict[str, torch.Tensor]]) -> None:
        # Any randomness inside the losses is a function of (seed, rank, step): exact on resume.
        seed_all(step_seed(self.cfg.train.seed, self.dist.rank, self.step))
        self.recipe.on_step(self.step, self.opts)  # learning-rate schedules, staged training
        it = iter(batches)
        batch = None
        for phase in self.phases:
            for _ in range(phase.count):
                if phase.new_batch or batch is None:
                    batch = next(it)
                self._run_phase(phase, batch)
        self.step += 1

    # --- logging, pictures, evaluation -------------------------------------------------------
    def _reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.dist.world > 1:
            values = values.to(self.device)
            torch_dist.all_reduce(values)
            values /= self.dist.world
        return values

    def _log_train(self, seconds: float, it_per_s: float) -> dict[str, float]:
        names = sorted(self._sums)
        if names:
            vals = torch.stack([self._sums[k] / self._counts[k] for k in names])
            vals = self._reduce_mean(vals).cpu().tolist()
        else:
            vals = []
        losses = dict(zip(names, vals))
        self._sums.clear()
        self._counts.clear()
        lr = {k: o.param_groups[0]["lr"] for k, o in self.opts.items()}
        self.logger.train(self.step, self.kimg, seconds, it_per_s, losses, lr)
        return losses

    @property
    def kimg(self) -> float:
        return self.step * self.cfg.train.batch_size / 1000

    def _collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        items = [self.val_set[j] for j in idx]
        return self._to_device({k: torch.stack([it[k] for it in items]) for k in items[0]})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Metrics of the EMA generator on the fixed validation set (sharded over the ranks)."""
        from ..eval.metrics import get_metric

        names = list(self.cfg.eval.metrics)
        metrics = [get_metric(n) for n in names]
        sums = torch.zeros(len(names), dtype=torch.float64)
        counts = torch.zeros(len(names), dtype=torch.float64)
        shard = list(range(self.dist.rank, len(self.val_set), self.dist.world))
        bs = self.cfg.eval.batch_size
        for i in range(0, len(shard), bs):
            batch = self._collate(shard[i:i + bs])
            with self._autocast():
                out = self.recipe.complete(self.ema, batch)
            # Scored as the 8-bit images a user would get, like the evaluation protocol.
            pred = torch.round((out.float().clamp(-1, 1) + 1) * 127.5) / 255
            target = torch.round((batch["image"] + 1) * 127.5) / 255
            for j, m in enumerate(metrics):
                v = m(pred, target, batch["mask"]).double().cpu()
                ok = torch.isfinite(v)
                sums[j] += v[ok].sum()
                counts[j] += ok.sum()
        if self.dist.world > 1:
            both = torch.cat([sums, counts]).to(self.device)
            torch_dist.all_reduce(both)
            sums, counts = both.cpu().split(len(names))
        return {n: float(s / c) if c > 0 else math.nan
                for n, s, c in zip(names, sums.tolist(), counts.tolist())}

    @torch.no_grad()
    def log_images(self) -> None:
        n = min(self.cfg.eval.images, len(self.val_set))
        if not self.dist.main or n == 0 or self.logger.tb is None:
            return
        batch = self._collate(list(range(n)))
        with self._autocast():
            cols = self.recipe.visuals(self.ema, batch)
        self.logger.images(self.step, "samples/ema", cols)

    # --- checkpoints -------------------------------------------------------------------------
    def save(self, seconds: float) -> None:
        if self.dist.main:
            t = self.cfg.train
            info = {"samples": self.step * self.draws_per_step * t.batch_size, "kimg": self.kimg,
                    "seconds": seconds, "recipe": t.recipe, "world_size": self.dist.world,
                    "batch_size": t.batch_size}
            ckpt_io.save_checkpoint(self.run_dir, self.step, nets=self.nets, ema=self.ema,
                                    optimizers=self.opts, scalers=self.scalers, info=info,
                                    config_text=config_to_yaml(self.cfg),
                                    arch=self.cfg.model.arch, model_config=dict(self.cfg.model.options),
                                    keep=t.keep_checkpoints, generator=self.gen)
            from ..weights import save_model

            save_model(self.run_dir / "model.safetensors", self.ema, arch=self.cfg.model.arch,
                       config=dict(self.cfg.model.options),
                       extra={"step": self.step, "kimg": self.kimg, "recipe": t.recipe, "ema": True,
                              "run": self.run_dir.name})
        _barrier(self.dist)

    def close(self) -> None:
        """Flush and close the logs; undo process-wide settings made for this run."""
        self.logger.flush()
        self.logger.close()
        if self._restore_mkldnn:
            torch.backends.mkldnn.enabled = True
            self._restore_mkldnn = False

    # --- the loop ----------------------------------------------------------------------------
    def _stop_everywhere(self, local: bool) -> bool:
        if self.dist.world == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def train(self) -> None:
        from tqdm import tqdm

        t, d = self.cfg.train, self.dist
        self.logger.write({"kind": "start", "step": self.step, "world_size": d.world,
                           "device": str(self.device),
                           "resumed_from": self.resumed_from.name if self.resumed_from else None,
                           "init": str(self.init_from) if self.init_from else None})
        if d.main:
            n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in self.nets.items()}
            print(f"gancanvas: {self.cfg.model.arch} / recipe {t.recipe}: " +
                  ", ".join(f"{k} {v:,} params" for k, v in n_params.items()) +
                  f"; {d.world} process(es) on {self.device}; run folder {self.run_dir}", flush=True)
        start = time.perf_counter()
        last_log_t, last_log_step = start, self.step
        last_saved = self.step if self.resumed_from is not None else None
        stopped = False
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not d.main, unit="it",
                   dynamic_ncols=True, file=sys.stderr)
        with StopSignal(verbose=d.main) as stop:
            # Workers are forked inside: they inherit the handler, so a Ctrl-C (sent to the whole
            # process group) does not kill them before the last step and its checkpoint are done.
            loader = self._loader()
            data = iter(loader)
            while self.step < self.total_steps:
                # All batches of the step are fetched before any update, so a stop that kills the
                # loader workers (a signal sent to the whole process group) cannot cut a step in half.
                try:
                    batches = [self._to_device(next(data)) for _ in range(self.draws_per_step)]
                except Exception:
                    if not stop.requested:
                        raise
                    stopped = True
                    break
                self.train_step(batches)
                bar.update(1)
                seconds = self.seconds_before + time.perf_counter() - start
                final = self.step == self.total_steps
                if self.step % t.log_every == 0 or final:
                    now = time.perf_counter()
                    it_per_s = (self.step - last_log_step) / max(now - last_log_t, 1e-9)
                    losses = self._log_train(seconds, it_per_s)
                    last_log_t, last_log_step = now, self.step
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                if t.image_every and (self.step % t.image_every == 0 or final):
                    self.log_images()
                if (t.eval_every and self.step % t.eval_every == 0) or final:
                    self.logger.eval(self.step, self.kimg, seconds, self.evaluate())
                if self._stop_everywhere(stop.requested):
                    stopped = True
                    break
                if (t.ckpt_every and self.step % t.ckpt_every == 0) or final:
                    self.save(seconds)
                    last_saved = self.step
            bar.close()
            if last_saved != self.step:  # a stop request, or total_steps already reached on resume
                self.save(self.seconds_before + time.perf_counter() - start)
        self.close()
        del data, loader
        if stopped and d.main:
            print(f"gancanvas: stopped at step {self.step}; continue with --resume", file=sys.stderr,
                  flush=True)
        self.stopped = stopped

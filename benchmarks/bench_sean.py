"""SEAN generator forward at 256x256 on CPU: gancanvas next to the official code, same weights and input.

    python benchmarks/bench_sean.py --official-repo /path/to/SEAN   # official vs gancanvas
    python benchmarks/bench_sean.py                                # gancanvas vs a loop re-implementation
    python benchmarks/bench_sean.py --official-repo /path/to/SEAN --threads 2 --repeats 3 --rounds 2

The model is the official CelebAMask-HQ generator (ZPdesu/SEAN `test.py --label_nc 19 --no_instance
--load_size 256 --crop_size 256`, `--dataset_mode custom`, which sets `contain_dontcare_label` False):
19 label channels, ngf 64, style codes of 512, Zencoder ngf 32, SPADE hidden 128,
`norm_G spectralspadesyncbatch3x3`, `num_upsampling_layers normal`; 267M parameters. `--ngf` (and
`--size`) give smaller models for quick correctness checks; style_length 512 and nhidden 128 are
constants in the official code and stay.

**The reference is the official code itself.** With `--official-repo`, the checkout's
`models/networks/generator.py` (`SPADEGenerator`) and what it imports (`base_network.py`,
`normalization.py` (ACE, SPADE), `architecture.py` (SPADEResnetBlock, Zencoder) and the
`sync_batchnorm` package) are imported at run time; nothing of it is copied here. Only what is
needed to import and run it on CPU is patched, in the measuring process: the `models` and
`models.networks` packages are registered empty (their `__init__` would import the losses,
discriminators, `util` (dill) and torchvision, which the generator does not use); torchvision,
imported by `architecture.py` for its VGG19 class only, is stubbed when not installed;
`torch.Tensor.cuda` is the identity (ACE draws its noise with a hard `.cuda()`); the options
object is built directly (the values `test.py` parses for the command above). `sync_batchnorm` is
taken from `models/networks/sync_batchnorm` (where the official README has it copied), else from
the `Synchronized-BatchNorm-PyTorch` submodule.

Side effect avoided: in `status == 'test'` (what `test.py` sets), ACE `up_2_ACE_0` writes every style
code to `./styles_test/style_codes/<image>/<class>/ACE.npy` (and needs the image paths in
`obj_dic`). The benchmark keeps `status = 'test'` and turns that off with the official per-layer
flag, `ACE.save_npy = False`; the forward then runs exactly the test path (the per-sample,
per-class loops of `Zencoder.forward` and `ACE.forward`) without writing files. ('train' runs the
same code too; 'UI_mode' is the editing path, batch item 0 only.)

Weights: the official generator is built from those options and initialised with the official
`init_weights` (xavier_normal, gain 1.0 = `--init_variance 1.0`, as in the test fixtures; the
default 0.02 gives a nearly constant output), then biases U(-0.1, 0.1), `blending_gamma/beta`
U(-2, 2), `noise_var` U(0, 0.25) (all three are 0 at init, which would hide the style branch and
the noise), 5 spectral-norm power iterations, BatchNorm running statistics := the batch
statistics of one train-mode forward on the benchmark input (so that eval-mode activations are
normalised roughly as in a trained model), and `conv_img` scaled so that the eval-mode output
before tanh (on the benchmark input and noise) has std 0.5 (with random weights the residual
stream grows to std ~10 and the tanh would saturate, hiding differences; the table's last column
is the output's std). Saved as `latest_net_G.pth`
and converted with `gancanvas convert sean`'s function (`CONVERTERS["sean"]`, i.e.
`convert_sean`), so both implementations run the same weights.
Without `--official-repo`, gancanvas' model gets the same kind of weights and the reference is
the **loop re-implementation** below: a re-implementation of the official forward's structure
(per-sample / per-class `masked_select` pooling and `masked_scatter_` style maps, 512-channel
conv_gamma / conv_beta) written here on gancanvas' modules; it is not the official code. `--reimpl`
also measures it next to the official code.

Input: a CelebAMask-HQ-like face label map (16 of the 19 classes present) at `--size`, one-hot
(1, 19, H, W), and a random image in [-1, 1] (batch 1): the official test path's generator call
`netG(input_semantics, real_image)`, i.e. encode the image's region styles, then synthesise.

Noise: the official ACE adds `torch.randn(N, W, H, 1)` (x `noise_var`, transposed) in every layer,
drawn inside its forward; gancanvas draws the same tensors in the same order from the same
generator when no noise is given (checked against the official fixtures in tests/test_sean.py), and
the re-implementation draws them likewise. Every forward, timed or not, is preceded by
`torch.manual_seed(--seed)` (outside the timed region) in every implementation, so all of them
add identical noise, with noise on while timed, and the outputs are compared directly.

Method (as benchmarks/bench_pix2pixhd.py): each implementation runs in fresh subprocesses
(`--rounds` of them, the implementations alternating, so a change in the machine's load hits them
alike), `--threads` torch threads, eval mode, `torch.inference_mode()`, one warm-up forward then
`--repeats` timed ones: median and best wall-clock time, median process CPU time (all threads; the
steadier figure on a shared machine), speedups against the reference row on both, resident memory
after loading and peak during the forwards, and max |Δ| of the output against the reference
(the official output when given).

gancanvas pools all regions with one einsum and folds each style map's convolution onto the
codes (conv(sum_r onehot_r * mu_r) = a convolution with one input channel per region, 19 instead
of 512, `nn.norm.RegionConv`), gamma and beta in one call; at inference on a label map the
label-map convolutions are per-region tables plus convolutions on the boundary band only
(`nn.norm.label_pieces`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _procs import alternate, peak_rss_mb, rss_mb, run_worker

LABEL_NC = 19

# ------------------------------------------------------------------------------------------------
# Loop-based re-implementation of the official forward structure (reference without a checkout)
# ------------------------------------------------------------------------------------------------


def reference_region_pool(codes: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Official Zencoder pooling: per sample and class, masked_select + mean; absent classes 0."""
    b, f = codes.shape[:2]
    out = torch.zeros((b, seg.shape[1], f), dtype=codes.dtype)
    for i in range(b):
        for j in range(seg.shape[1]):
            area = int(torch.sum(seg.bool()[i, j]))
            if area > 0:
                out[i][j] = codes[i].masked_select(seg.bool()[i, j]).reshape(f, area).mean(1)
    return out


def reference_ace(norm, x: torch.Tensor, segmap: torch.Tensor, style_codes: torch.Tensor | None,
                  noise: torch.Tensor | None) -> torch.Tensor:
    """Official ACE.forward structure on the parameters of a gancanvas SEAN layer."""
    if noise is not None:
        x = x + noise * norm.noise_var.view(1, -1, 1, 1)
    normalized = norm.param_free_norm(x)
    segmap = F.interpolate(segmap, size=x.size()[2:], mode="nearest")
    mb = norm.mask_branch
    actv = F.relu(mb.mlp_shared(segmap))
    gamma_spade, beta_spade = mb.mlp_gamma(actv), mb.mlp_beta(actv)
    if not norm.use_styles:
        return normalized * (1 + gamma_spade) + beta_spade
    b_size, _, h, w = normalized.shape
    style_length = norm.style_fc.weight.shape[1]
    middle_avg = torch.zeros((b_size, style_length, h, w), dtype=x.dtype)
    for i in range(b_size):
        for j in range(norm.regions):
            area = int(torch.sum(segmap.bool()[i, j]))
            if area > 0:
                fc_mu_j = (norm.style_fc.weight[j], norm.style_fc.bias[j])  # the official fc_mu<j>
                middle_mu = F.relu(F.linear(style_codes[i][j], *fc_mu_j))
                component_mu = middle_mu.reshape(style_length, 1).expand(style_length, area)
                middle_avg[i].masked_scatter_(segmap.bool()[i, j], component_mu)
    # conv_gamma and conv_beta: gancanvas stores them stacked, input-major (RegionConv).
    w_gamma, w_beta = norm.style_conv.conv_weight().chunk(2)
    b_gamma, b_beta = norm.style_conv.bias.chunk(2)
    gamma_avg = F.conv2d(middle_avg, w_gamma, b_gamma, padding=w_gamma.shape[-1] // 2)
    beta_avg = F.conv2d(middle_avg, w_beta, b_beta, padding=w_beta.shape[-1] // 2)
    a_g, a_b = torch.sigmoid(norm.blending_gamma), torch.sigmoid(norm.blending_beta)
    gamma = a_g * gamma_avg + (1 - a_g) * gamma_spade
    beta = a_b * beta_avg + (1 - a_b) * beta_spade
    return normalized * (1 + gamma) + beta


def reference_block(block, x, seg, style_codes, noise):
    if block.learned_shortcut:
        n_s, n_0, n_1 = noise
        x_s = block.conv_s(reference_ace(block.norm_s, x, seg, style_codes, n_s))
    else:
        (n_0, n_1), x_s = noise, x
    dx = block.conv_0(F.leaky_relu(reference_ace(block.norm_0, x, seg, style_codes, n_0), 0.2))
    dx = block.conv_1(F.leaky_relu(reference_ace(block.norm_1, dx, seg, style_codes, n_1), 0.2))
    return x_s + dx


def reference_forward(model, seg: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Official SPADEGenerator.forward (SEAN) structure, normal upsampling, noise drawn like ACE."""
    n, _, h, w = seg.shape
    noise = [torch.randn(n, lw, lh, 1).permute(0, 3, 2, 1) for _, lh, lw in model.noise_layout(h, w)]
    codes = model.style_encoder.features(image)
    styles = reference_region_pool(codes, F.interpolate(seg[:, :model.cfg.regions], size=codes.shape[2:],
                                                        mode="nearest"))
    s = model.stride
    x = model.fc(F.interpolate(seg, size=(h // s, w // s)))
    i = 0
    for name in ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"):
        block = getattr(model, name)
        if name != "head_0" and name != "G_middle_1":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = reference_block(block, x, seg, styles, noise[i:i + block.n_noise])
        i += block.n_noise
    return torch.tanh(model.conv_img(F.leaky_relu(x, 0.2)))


# ------------------------------------------------------------------------------------------------
# The official code, imported from a checkout
# ------------------------------------------------------------------------------------------------


def import_official(repo: str | Path):
    """`models/networks/generator.py` of a ZPdesu/SEAN checkout (and its imports), imported from there."""
    import importlib
    import importlib.util
    import types
    import warnings

    root = Path(repo).resolve()
    nets = root / "models" / "networks"
    if not (nets / "generator.py").is_file() or not (nets / "normalization.py").is_file():
        sys.exit(f"bench_sean: {nets}/generator.py not found: --official-repo must be a ZPdesu/SEAN checkout")
    if "models.networks.generator" in sys.modules:
        return sys.modules["models.networks.generator"]
    # Register `models` and `models.networks` as bare packages: their __init__ files import the
    # losses, discriminators, encoders, util (dill, PIL) and the dataset code, none of which the
    # generator needs. Submodules then load from the checkout as usual.
    for name, path in (("models", root / "models"), ("models.networks", nets)):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path)]
        sys.modules[name] = pkg
    sb = nets / "sync_batchnorm"
    if not (sb / "__init__.py").is_file():
        sb = nets / "Synchronized-BatchNorm-PyTorch" / "sync_batchnorm"
        if not (sb / "__init__.py").is_file():
            sys.exit("bench_sean: the official code needs the sync_batchnorm package: copy "
                     "vacancy/Synchronized-BatchNorm-PyTorch's sync_batchnorm/ into models/networks/ "
                     "(the SEAN README's install step)")
        spec = importlib.util.spec_from_file_location("models.networks.sync_batchnorm", sb / "__init__.py",
                                                      submodule_search_locations=[str(sb)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    if importlib.util.find_spec("torchvision") is None:
        # architecture.py imports torchvision at top level for its VGG19 (the loss network) only.
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        sys.modules["torchvision"].models = types.SimpleNamespace()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # the official '\D' regex escapes
        return importlib.import_module("models.networks.generator")


def official_options(args):
    """The options `test.py --label_nc 19 --no_instance --load_size S --crop_size S` parses into,
    as far as the generator reads them (custom dataset: contain_dontcare_label False)."""
    return argparse.Namespace(
        ngf=args.ngf, label_nc=LABEL_NC, contain_dontcare_label=False, no_instance=True,
        semantic_nc=LABEL_NC, crop_size=args.size, load_size=args.size, aspect_ratio=1.0,
        num_upsampling_layers="normal", norm_G="spectralspadesyncbatch3x3", netG="spade",
        status="test", init_type="xavier", init_variance=1.0, gpu_ids=[])


def official_generator(args):
    """The official SPADEGenerator (SEAN) on CPU, test status, without the style-code dump."""
    import warnings

    gen = import_official(args.official_repo)
    torch.Tensor.cuda = lambda self, *a, **k: self  # ACE: torch.randn(...).cuda()
    # Zencoder's InstanceNorm2d(64) on its 256-channel layer (affine=False, so harmless) warns per call.
    warnings.filterwarnings("ignore", message="input's size at dim=1 does not match num_features")
    net = gen.SPADEGenerator(official_options(args))
    for m in net.modules():
        if hasattr(m, "save_npy"):  # ACE: status 'test' would write styles_test/.../ACE.npy
            m.save_npy = False
    return net


# ------------------------------------------------------------------------------------------------
# Inputs and weights
# ------------------------------------------------------------------------------------------------


def face_labels(size: int) -> torch.Tensor:
    """A CelebAMask-HQ-like label map (ids of the 19 classes): 16 classes present, like a real face."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")

    def ellipse(cy, cx, ry, rx):
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1

    lab = torch.zeros(size, size, dtype=torch.long)  # 0 background
    lab[yy > 0.55] = 18  # cloth
    lab[ellipse(0.55, 0, 0.35, 0.25)] = 17  # neck
    lab[ellipse(-0.15, 0, 0.85, 0.7)] = 13  # hair
    lab[ellipse(0.0, 0, 0.65, 0.5)] = 1  # skin
    lab[ellipse(0.0, -0.52, 0.15, 0.07)] = 8  # l_ear
    lab[ellipse(0.0, 0.52, 0.15, 0.07)] = 9  # r_ear
    lab[ellipse(-0.22, -0.22, 0.04, 0.14)] = 6  # l_brow
    lab[ellipse(-0.22, 0.22, 0.04, 0.14)] = 7  # r_brow
    lab[ellipse(-0.1, -0.2, 0.05, 0.1)] = 4  # l_eye
    lab[ellipse(-0.1, 0.2, 0.05, 0.1)] = 5  # r_eye
    lab[ellipse(0.12, 0, 0.15, 0.07)] = 2  # nose
    lab[ellipse(0.36, 0, 0.03, 0.16)] = 11  # u_lip
    lab[ellipse(0.42, 0, 0.04, 0.16)] = 12  # l_lip
    lab[ellipse(0.39, 0, 0.015, 0.12)] = 10  # mouth
    lab[ellipse(-0.75, 0, 0.2, 0.6) & (lab == 13)] = 14  # hat
    return lab


def randomise(model: torch.nn.Module) -> None:
    """Biases U(-0.1, 0.1), blending weights U(-2, 2), noise scales U(0, 0.25) (0 at init), and 5
    power iterations of every spectral norm (official `weight_u/_v` buffers or gancanvas'
    parametrisation); names of both layouts."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("blending_gamma", "blending_beta")):
                p.uniform_(-2, 2)
            elif name.endswith("noise_var"):
                p.uniform_(0, 0.25)
            elif name.endswith("bias"):
                p.uniform_(-0.1, 0.1)
        for m in model.modules():
            if hasattr(m, "weight_orig") and hasattr(m, "weight_u"):  # torch.nn.utils.spectral_norm
                w, u, v = m.weight_orig.flatten(1), m.weight_u, m.weight_v
                for _ in range(5):
                    v.copy_(F.normalize(w.t() @ u, dim=0, eps=1e-12))
                    u.copy_(F.normalize(w @ v, dim=0, eps=1e-12))


def calibrate(model: torch.nn.Module, forward) -> None:
    """BatchNorm running statistics := the batch statistics of one train-mode forward on the
    benchmark input (momentum 1); then, in eval mode, `conv_img` scaled so that the output before
    tanh has std 0.5 with the benchmark's noise (`forward` seeds it; random residual blocks let
    activations grow to std ~10, which would saturate the tanh and hide differences)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        forward()
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
    pre_tanh = []
    hook = model.conv_img.register_forward_hook(lambda mod, i, o: pre_tanh.append(float(o.std())))
    with torch.no_grad():
        forward()
        hook.remove()
        model.conv_img.weight.mul_(0.5 / pre_tanh[0])
        model.conv_img.bias.mul_(0.5 / pre_tanh[0])


def prepare(d: Path, args) -> int:
    """Weights (official -> latest_net_G.pth -> converted, or gancanvas') and inputs into `d`."""
    from gancanvas.weights import load_model

    torch.manual_seed(args.seed)
    labels = face_labels(args.size)[None]
    seg = F.one_hot(labels, LABEL_NC).permute(0, 3, 1, 2).float()  # the official scatter_ one-hot
    image = torch.rand(1, 3, args.size, args.size) * 2 - 1
    if args.official_repo:
        from gancanvas.convert import CONVERTERS

        G = official_generator(args)
        G.init_weights("xavier", 1.0)  # the official create_network init, --init_variance 1.0
        randomise(G)
        calibrate(G, lambda: (torch.manual_seed(args.seed), G(seg, image)))
        torch.save(G.state_dict(), d / "latest_net_G.pth")
        del G
        CONVERTERS["sean"](d / "latest_net_G.pth", d / "model.safetensors")
    else:
        import gancanvas.models.sean  # noqa: F401  (registers "sean")
        from gancanvas import registry
        from gancanvas.models.sean import CELEBAMASK_HQ_CLASSES
        from gancanvas.weights import save_model

        config = {"label_nc": LABEL_NC, "class_names": list(CELEBAMASK_HQ_CLASSES), "ngf": args.ngf,
                  "style_dim": 512, "encoder_ngf": 32, "spade_hidden": 128, "init_gain": 1.0}
        model = registry.create("sean", **config)
        randomise(model)
        calibrate(model, lambda: (torch.manual_seed(args.seed), model(seg, image=image)))
        save_model(d / "model.safetensors", model, arch="sean", config=config)
        del model
    model, _ = load_model(d / "model.safetensors")
    assert torch.equal(model.semantic_input(labels), seg)
    torch.save({"seg": seg, "image": image, "labels": labels}, d / "inputs.pt")
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# The measured process
# ------------------------------------------------------------------------------------------------


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    d = Path(args.dir)
    if args.worker == "official":
        model = official_generator(args)
        model.load_state_dict(torch.load(d / "latest_net_G.pth", weights_only=True))
    else:
        from gancanvas.weights import load_model

        model, _ = load_model(d / "model.safetensors")
    model.eval()
    inputs = torch.load(d / "inputs.pt", weights_only=True)
    seg, image = inputs["seg"], inputs["image"]
    load_peak, loaded = peak_rss_mb(), rss_mb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: from here on the peak is the forwards' (loading holds weights twice)
    if args.worker == "official":
        def fn():
            return model(seg, image)  # SPADEGenerator.forward(input_semantics, real_image)
    elif args.worker == "ours":
        def fn():
            return model(seg, image=image)
    else:
        def fn():
            return reference_forward(model, seg, image)
    times, cpu = [], []
    with torch.inference_mode():
        torch.manual_seed(args.seed)
        out = fn()  # warm-up
        for _ in range(args.repeats):
            torch.manual_seed(args.seed)  # the same noise in every forward and implementation
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    torch.save(out.clone(), d / f"out_{args.worker}.pt")
    peak = peak_rss_mb()
    print(json.dumps({"seconds": times, "cpu": cpu, "loaded_mb": loaded, "peak_mb": peak,
                      "load_peak_mb": load_peak}))


# ------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------


def measure(kind: str, d: Path, args) -> dict:
    extra = ["--dir", str(d), "--threads", str(args.threads), "--repeats", str(args.repeats),
             "--size", str(args.size), "--ngf", str(args.ngf), "--seed", str(args.seed)]
    if args.official_repo:
        extra += ["--official-repo", str(args.official_repo)]
    return run_worker(__file__, kind, extra, "bench_sean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-repo", default="", help="a ZPdesu/SEAN checkout (the reference)")
    ap.add_argument("--reimpl", action="store_true",
                    help="with --official-repo: also measure the loop re-implementation")
    ap.add_argument("--size", type=int, default=256, help="image size (a multiple of 32)")
    ap.add_argument("--ngf", type=int, default=64, help="generator width (official 64; smaller for checks)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per process (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=1, help="processes per implementation, alternating")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed before every forward (noise)")
    ap.add_argument("--worker", choices=("official", "ours", "reimpl"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.size % 32:
        ap.error("--size must be a multiple of 32")
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory(prefix="bench_sean-") as tmp:
        d = Path(tmp)
        n_params = prepare(d, args)
        # The reference first: the official code, else the loop re-implementation.
        kinds = ["official", "ours"] + (["reimpl"] if args.reimpl else []) if args.official_repo \
            else ["reimpl", "ours"]
        ref_kind = kinds[0]
        rows = alternate(kinds, args.rounds, lambda k: measure(k, d, args), ("loaded_mb", "peak_mb"))
        ref = torch.load(d / f"out_{ref_kind}.pt", weights_only=True)
        for k in kinds:
            out = torch.load(d / f"out_{k}.pt", weights_only=True)
            rows[k]["delta"] = float((out - ref).abs().max())
            rows[k]["std"] = float(out.std())
        n_present = int(torch.load(d / "inputs.pt", weights_only=True)["seg"].amax((2, 3)).sum())

    print(f"SEAN generator forward (encode styles + synthesise), {args.size}x{args.size}, batch 1, "
          f"label_nc {LABEL_NC} ({n_present} present), ngf {args.ngf}, CPU "
          f"({platform.processor() or platform.machine()}, {args.threads} threads), "
          f"torch {torch.__version__}, "
          f"{n_params / 1e6:.1f}M parameters, {args.rounds} x {args.repeats} runs each, inference_mode, "
          f"same noise (seed {args.seed})")
    names = {"official": "official SEAN SPADEGenerator (reference)",
             "ours": "gancanvas SEAN",
             "reimpl": "loop re-implementation" + (" (reference)" if ref_kind == "reimpl" else "")}
    header = (f"| {'implementation':<40} | {'median (s)':>10} | {'best (s)':>8} | {'CPU (s)':>7} "
              f"| {'speedup':>7} | {'speedup (CPU)':>13} | {'loaded (MiB)':>12} | {'peak (MiB)':>10} "
              f"| {'max abs Δ':>9} | {'out std':>7} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    med = {k: statistics.median(r["seconds"]) for k, r in rows.items()}
    med_cpu = {k: statistics.median(r["cpu"]) for k, r in rows.items()}
    for k in kinds:
        r = rows[k]
        print(f"| {names[k]:<40} | {med[k]:>10.3f} | {min(r['seconds']):>8.3f} | {med_cpu[k]:>7.2f} "
              f"| {med[ref_kind] / med[k]:>6.2f}x | {med_cpu[ref_kind] / med_cpu[k]:>12.2f}x "
              f"| {r['loaded_mb']:>12.0f} | {r['peak_mb']:>10.0f} | {r['delta']:>9.2e} | {r['std']:>7.3f} |")
    print("median / best: wall-clock per forward; CPU: process CPU time per forward (all threads); speedups: "
          "the reference's median over the row's (wall, CPU); loaded: resident after loading weights + "
          "inputs; peak: resident peak during the forwards; max abs Δ: output vs the reference's")
    if not args.official_repo:
        print("(the loop re-implementation is written in this script, not the official code; the official "
              "reference needs --official-repo PATH, a ZPdesu/SEAN checkout)")


if __name__ == "__main__":
    main()

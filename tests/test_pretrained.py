"""The built-in default model: shipped, loadable by name, and better than knowing nothing."""

import numpy as np
import pytest

import gancanvas
from gancanvas import registry
from gancanvas.data.masks import MaskSampler
from gancanvas.data.synthetic import render_scene
from gancanvas.weights import read_model_file


def test_default_inpaint_model_is_shipped_with_provenance():
    spec = registry.default_model("inpaint")
    assert spec.name == "deepfill-v2-scenes"
    assert spec.path.is_file(), "the built-in model file is missing from the package"
    assert spec.path.stat().st_size < 5_000_000  # small enough for git
    tensors, meta = read_model_file(spec.path)
    assert meta["arch"] == "deepfill_v2"
    assert meta["extra"]["train_steps"] > 0
    assert "scenes" in meta["extra"]["config_yaml"]


@pytest.fixture(scope="module")
def default_model():
    return gancanvas.load("deepfill-v2-scenes")


def test_default_model_fills_holes_from_context(default_model):
    # Held-out scenes (seed 1 is never used by the training config's seed-0 scenes) with fixed
    # free-form holes at the training size: the fill must be closer to the truth than the best
    # constant fill (the mean colour of the known pixels), and leave the known pixels alone.
    sampler = MaskSampler("free-form", min_width=6, max_width=20)
    ours, constant = [], []
    for i in range(4):
        scene = render_scene(1_000_003 + i, 128, 128)
        hole = sampler.sample(128, 128, np.random.default_rng(i)) > 0
        out = default_model.inpaint(scene.image, hole)
        assert np.array_equal(out[~hole], scene.image[~hole])
        truth = scene.image[hole].astype(np.float64)
        ours.append(np.abs(out[hole].astype(np.float64) - truth).mean())
        fill = scene.image[~hole].astype(np.float64).mean(axis=0)
        constant.append(np.abs(fill - truth).mean())
    assert np.mean(ours) < 0.8 * np.mean(constant), (ours, constant)


def test_default_outpaint_model_beats_reflection_padding():
    # Held-out scenes (seed 1), the training geometry (64 px known box in a 128 px canvas, margins
    # on all four sides): the predicted margins must be closer to the truth than reflection padding
    # of the known box, and the known box must come back unchanged.
    from gancanvas.eval.baselines import reflect_pad

    spec = registry.default_model("outpaint")
    assert spec.name == "srn-scenes" and spec.path.is_file()
    model = gancanvas.load("srn-scenes")
    ours, reflected = [], []
    for i, (top, left) in enumerate([(32, 32), (10, 50), (60, 5), (0, 64)]):
        scene = render_scene(1_000_101 + i, 128, 128)
        known = scene.image[top:top + 64, left:left + 64]
        out = model.outpaint(known, top=top, left=left, bottom=64 - top, right=64 - left)
        assert out.shape == scene.image.shape
        assert np.array_equal(out[top:top + 64, left:left + 64], known)
        unknown = np.ones((128, 128), dtype=bool)
        unknown[top:top + 64, left:left + 64] = False
        truth = scene.image[unknown].astype(np.float64)
        ours.append(np.abs(out[unknown].astype(np.float64) - truth).mean())
        ref = reflect_pad(known, (top, left, 64 - top, 64 - left))
        reflected.append(np.abs(ref[unknown].astype(np.float64) - truth).mean())
    assert np.mean(ours) < 0.85 * np.mean(reflected), (ours, reflected)

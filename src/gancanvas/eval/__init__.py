"""Evaluation: metrics (hole-L1, L1, L2, PSNR, RMSE, SSIM, LPIPS, FID), fixed protocols, baselines.

    from gancanvas.eval import evaluate, evaluate_outpaint, evaluate_synthesis, compare, BASELINES
    res = evaluate(BASELINES["telea"], "images/", "masks/")               # inpainting, a mask set
    res = evaluate_outpaint("srn-scenes", "images/", "margins/")          # outpainting, a margin set
    res = evaluate_synthesis("sean-scenes", "labels/", "images/")         # label map -> image
    print(res.table())
"""

from .baselines import (
    BASELINES,
    OUTPAINT_BASELINES,
    SYNTHESIS_BASELINES,
    class_mean,
    navier_stokes,
    reflect_pad,
    telea,
)
from .metrics import METRICS, Metric, get_metric, register_metric
from .outpaint import evaluate_outpaint
from .protocol import EvalResult, compare, evaluate
from .synthesis import evaluate_synthesis

__all__ = [
    "BASELINES", "METRICS", "OUTPAINT_BASELINES", "SYNTHESIS_BASELINES", "EvalResult", "Metric",
    "class_mean", "compare", "evaluate", "evaluate_outpaint", "evaluate_synthesis", "get_metric",
    "navier_stokes", "reflect_pad", "register_metric", "telea",
]

"""Classic non-learned baselines for the three evaluation protocols.

Inpainting (`BASELINES`, `evaluate`): `fn(image u8 HxWx3, mask bool HxW) -> u8 HxWx3`.

Each baseline is `fn(image u8 HxWx3, mask bool HxW, radius=3) -> u8 HxWx3` and plugs into
`evaluate()` like any model. Both call `cv2.inpaint`, which fills the hole from its boundary
inwards and ignores the pixel values inside the hole:

- `telea`: Telea 2004, fast marching; each pixel is a weighted average of known pixels within
  `radius` (weights: direction, distance and level-set closeness).
- `navier_stokes`: Bertalmio, Bertozzi & Sapiro 2001, continues the image's isophotes into the
  hole as a fluid-dynamics transport problem.

`radius` = 3 px is the neighbourhood radius (OpenCV's `inpaintRadius`): the value used in
OpenCV's own examples, small enough that the fill follows nearby structure rather than blurring
far context. The colour channels are processed independently, so RGB order needs no conversion.
Known pixels are returned unchanged.

Outpainting (`OUTPAINT_BASELINES`, `evaluate_outpaint`): `fn(known u8 hxwx3, margins) -> u8 HxWx3`,
the whole canvas (h + top + bottom) x (w + left + right) with the known image at (top, left):

- `reflect`: `numpy.pad(known, mode="reflect")`: the canvas is the known image mirrored about its
  edge pixels (edge not repeated, as torch's "reflect"), repeatedly when a margin is wider than
  the image.
- `telea`, `ns`: the known image on a zero canvas, `cv2.inpaint` of the margins with the same
  radius (3 px) and flags as for inpainting: the fill grows inwards from the known box's border.

Label-to-image (`SYNTHESIS_BASELINES`, `evaluate_synthesis`): `fn(labels int HxW, instances or None,
photo u8 HxWx3) -> u8 HxWx3`:

- `class-mean`: every pixel of class c gets the mean colour of the photo over the pixels of class c
  in the same image (per channel, rounded half to even). An oracle flat baseline: it reads the
  answer's colours, so it is the reconstruction a per-class constant-style model could reach at
  best; a model below it on PSNR gets the mean colours of regions wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from ..errors import MaskError

__all__ = ["telea", "navier_stokes", "BASELINES", "DEFAULT_RADIUS", "reflect_pad", "telea_outpaint",
           "ns_outpaint", "OUTPAINT_BASELINES", "class_mean", "SYNTHESIS_BASELINES"]

DEFAULT_RADIUS = 3


def _cv2_inpaint(image: np.ndarray, mask: np.ndarray, radius: float, flags: int) -> np.ndarray:
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"baselines expect a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise MaskError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                        f"{image.shape[1]}x{image.shape[0]}")
    m8 = (mask != 0).astype(np.uint8)
    out = cv2.inpaint(image, m8, float(radius), flags)
    # cv2.inpaint copies the known pixels already; this makes the contract explicit.
    return np.where(m8[..., None] != 0, out, image)


def telea(image: np.ndarray, mask: np.ndarray, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """cv2.inpaint with INPAINT_TELEA (fast marching), radius 3 px by default."""
    return _cv2_inpaint(image, mask, radius, cv2.INPAINT_TELEA)


def navier_stokes(image: np.ndarray, mask: np.ndarray, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """cv2.inpaint with INPAINT_NS (Navier-Stokes), radius 3 px by default."""
    return _cv2_inpaint(image, mask, radius, cv2.INPAINT_NS)


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "telea": telea,
    "ns": navier_stokes,
}


# ----------------------------------------------------------------------------- outpainting

def _known(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"baselines expect a uint8 h x w x 3 image, got {image.dtype} {image.shape}")
    return image


def reflect_pad(known: np.ndarray, margins) -> np.ndarray:
    """The canvas by reflection padding of the known image (numpy "reflect", edge not repeated)."""
    top, left, bottom, right = (int(v) for v in margins)
    known = _known(known)
    if min(known.shape[:2]) == 1:  # nothing to mirror about a single row / column: repeat it
        return np.pad(known, ((top, bottom), (left, right), (0, 0)), mode="edge")
    return np.pad(known, ((top, bottom), (left, right), (0, 0)), mode="reflect")


def _cv2_outpaint(known: np.ndarray, margins, radius: float, flags: int) -> np.ndarray:
    from ..data.margins import outpaint_canvas

    canvas, mask = outpaint_canvas(_known(known), margins, fill=0)
    return _cv2_inpaint(canvas, mask > 0, radius, flags)


def telea_outpaint(known: np.ndarray, margins, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """cv2.inpaint (INPAINT_TELEA, radius 3 px) of the margins around the known image."""
    return _cv2_outpaint(known, margins, radius, cv2.INPAINT_TELEA)


def ns_outpaint(known: np.ndarray, margins, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """cv2.inpaint (INPAINT_NS, radius 3 px) of the margins around the known image."""
    return _cv2_outpaint(known, margins, radius, cv2.INPAINT_NS)


OUTPAINT_BASELINES: dict[str, Callable[[np.ndarray, object], np.ndarray]] = {
    "reflect": reflect_pad,
    "telea": telea_outpaint,
    "ns": ns_outpaint,
}


# ----------------------------------------------------------------------------- label to image

def class_mean(labels: np.ndarray, instances: np.ndarray | None, photo: np.ndarray) -> np.ndarray:
    """Each class region filled with the photo's mean colour over that region (an oracle baseline)."""
    labels = np.asarray(labels)
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3 or photo.shape[:2] != labels.shape:
        raise ValueError(f"class_mean expects a uint8 HxWx3 photo of the label map's size, got "
                         f"{photo.dtype} {photo.shape} for labels {labels.shape}")
    ids, inverse = np.unique(labels.reshape(-1), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    flat = photo.reshape(-1, 3).astype(np.float64)
    means = np.stack([np.bincount(inverse, weights=flat[:, c], minlength=len(ids)) / counts
                      for c in range(3)], axis=1)
    return np.clip(np.round(means), 0, 255).astype(np.uint8)[inverse].reshape(photo.shape)


SYNTHESIS_BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "class-mean": class_mean,
}

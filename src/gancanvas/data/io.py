"""Image, mask and sketch I/O: accept the files and arrays users actually have.

Everything that enters the package as pixels goes through this module (or `pipelines.py`), so
the rest of the code can rely on the conventions of `docs/internals.md`:

- images: ``np.uint8`` HxWx3 **RGB** arrays here, float32 1x3xHxW tensors in [-1, 1] inside;
- masks: ``np.bool_`` HxW arrays here (True = hole / unknown), float32 1x1xHxW {0, 1} inside;
- sketches: like masks, True = a line.

Reading is forgiving about *formats* (JPEG, PNG, WebP, BMP, TIFF; grey, palette, alpha, 16-bit,
float, EXIF orientation) and strict about *damage*: a missing, empty, truncated or unreadable
file raises `ImageReadError` with one line ``"PATH: <problem>"``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError, InputError, MaskError
from ..utils.fs import atomic_write

__all__ = [
    "IMAGE_EXTS",
    "read_image",
    "read_mask",
    "read_sketch",
    "check_mask",
    "write_image",
    "image_to_tensor",
    "tensor_to_image",
    "mask_to_tensor",
    "coerce_image",
    "coerce_mask",
    "restore_type",
    "list_images",
    "match_by_stem",
]

#: File extensions (lower case) treated as images by `list_images` and `match_by_stem`.
IMAGE_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

Kind = Literal["pil", "numpy"]

_EXIF_ORIENTATION = 0x0112

# Pillow format name and save options per extension. JPEG: quality 95 and no chroma subsampling,
# so the thin seam around a filled hole does not bleed colour; WebP lossless so a written result
# is exactly the array that was computed.
_WRITE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
}


# --------------------------------------------------------------------------------------------
# Decoding: file -> "raw" array (native dtype, RGB(A)/grey channel order, orientation applied)
# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line (error messages must be one line)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, not an image file") from None
    except PermissionError:
        if path.is_dir():  # Windows reports directories as PermissionError
            raise ImageReadError(f"{path}: is a directory, not an image file") from None
        raise ImageReadError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({_one_line(exc)})") from None
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    return data


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW[xC] array, exactly as `ImageOps.exif_transpose`."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, k=-1)
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, k=1)
    return np.ascontiguousarray(arr)


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block must not make the pixels unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _is_16bit_colour(img: Image.Image) -> bool:
    """True for 16-bit RGB(A) files, which Pillow opens as 8-bit RGB(A) by truncating to the high
    byte (129 -> 0 instead of 1); those are decoded again with OpenCV to keep full precision."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    for tile in getattr(img, "tile", None) or ():
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _cv2_decode(data: bytes) -> np.ndarray | None:
    """Decode with OpenCV keeping bit depth and alpha; returns RGB(A) channel order, or None."""
    import cv2  # imported here: OpenCV adds ~15 MiB to every process that only runs models

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _pil_to_array(img: Image.Image, where: str) -> np.ndarray:
    """A loaded Pillow image as a numpy array in its native depth: bool, uint8, uint16, int32 or
    float32; shape HxW (grey), HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA)."""
    mode = img.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA", "I", "F"):
        pass
    elif mode.startswith("I;16"):
        # I;16B etc. come out big-endian; make the dtype native before any arithmetic.
        return np.asarray(img).astype(np.uint16)
    elif mode in ("P", "PA"):
        # A palette index means nothing by itself: expand to the colours the user sees, keeping a
        # transparency entry as an alpha channel.
        img = img.convert("RGBA" if (mode == "PA" or "transparency" in img.info) else "RGB")
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageReadError(f"{where}: unsupported colour mode {mode!r} ({_one_line(exc)})") from None
    return np.asarray(img)


def _decode(path: str | os.PathLike) -> np.ndarray:
    """Read a file into a raw array (see `_pil_to_array`) with EXIF orientation applied."""
    p = Path(path)
    data = _read_bytes(p)
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        # Pillow cannot open everything OpenCV can (e.g. 3-channel float32 TIFF). Such files carry
        # no orientation we could read, so none is applied.
        arr = _cv2_decode(data)
        if arr is None:
            raise ImageReadError(
                f"{p}: not an image file in a supported format (PNG, JPEG, WebP, BMP, TIFF)"
            ) from None
        return arr
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: image too large ({_one_line(exc)})") from None
    except Exception as exc:
        raise ImageReadError(f"{p}: corrupt image header ({_one_line(exc)})") from None
    high_depth = _is_16bit_colour(img)  # before load(), which empties `img.tile`
    try:
        # Force the full decode now: a truncated or corrupt file fails here, with its path,
        # instead of later inside some array operation.
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: image too large ({_one_line(exc)})") from None
    except Exception as exc:
        raise ImageReadError(f"{p}: corrupt or truncated image data ({_one_line(exc)})") from None

    if high_depth:
        arr = _cv2_decode(data)
        if arr is not None and arr.shape[:2] == (img.height, img.width):
            return _orient(arr, _exif_orientation(img))
        # OpenCV failed on something Pillow read: fall through to Pillow's 8-bit reading.
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not make the pixels unreadable
        pass
    return _pil_to_array(img, str(p))


# --------------------------------------------------------------------------------------------
# Raw array -> image (uint8 RGB) / mask (bool)
# --------------------------------------------------------------------------------------------


def _u16_to_u8(arr: np.ndarray) -> np.ndarray:
    """round(x / 257) in integers: 257 is odd, so there are no ties and (x + 128) // 257 is exact."""
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _float_to_u8(arr: np.ndarray) -> np.ndarray:
    return np.rint(arr * 255.0).astype(np.uint8)


def _channels_to_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    """HxW / HxWx1 / HxWx2 (grey+alpha) / HxWx3 / HxWx4 -> HxWx3; alpha is dropped.

    Always a new, writable array: Pillow's buffers are read-only and a caller's array must not
    be aliased (the pipeline writes into its copy)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    if arr.ndim == 3 and arr.shape[2] == 2:
        return np.ascontiguousarray(np.repeat(arr[..., :1], 3, axis=2))
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.array(arr[..., :3], order="C")
    raise InputError(f"{where}: expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {arr.shape}")


def _file_array_to_u8(arr: np.ndarray, where: str) -> np.ndarray:
    """Scale a decoded file's pixels to uint8 (RGB channel handling happens afterwards)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return _u16_to_u8(arr)
    if arr.dtype.kind in "iu":
        # Pillow mode "I" (32-bit int) in practice holds 16-bit data (some PNG/TIFF readers).
        return _u16_to_u8(np.clip(arr, 0, 65535))
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        # Float files come in two conventions: [0, 1] (HDR/scientific tools, OpenCV) and [0, 255]
        # (Pillow mode "F"). An image whose values all lie in [0, 1] would be black in the second
        # one, so that case is read as [0, 1]; anything else is clipped to [0, 255].
        if arr.size and arr.max() <= 1.0:
            return _float_to_u8(np.clip(arr, 0.0, 1.0))
        return np.rint(np.clip(arr, 0.0, 255.0)).astype(np.uint8)
    raise ImageReadError(f"{where}: unsupported pixel type {arr.dtype}")


def _full_alpha(dtype: np.dtype) -> float:
    if dtype == np.bool_:
        return 1
    if dtype.kind in "iu":
        return 65535 if dtype.itemsize >= 2 else 255
    return 1.0


def _raw_to_mask(arr: np.ndarray, where: str) -> np.ndarray:
    """Hole = non-zero. With an alpha channel that is not fully opaque, the alpha is the mask."""
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr, nan=0.0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return arr != 0
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = arr[..., -1]
        if (alpha < _full_alpha(arr.dtype)).any():
            # The user painted the hole on a transparent layer (#327 of the official repo: an
            # alpha-channel mask was silently ignored there).
            return alpha > 0
        return (arr[..., :-1] != 0).any(axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return (arr != 0).any(axis=2)
    raise InputError(f"{where}: expected an HxW, HxWx1, HxWx3 or HxWx4 mask, got shape {arr.shape}")


# --------------------------------------------------------------------------------------------
# Public reading / checking / writing
# --------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``np.uint8`` HxWx3 RGB.

    - Formats: whatever Pillow reads (JPEG, PNG, WebP, BMP, TIFF, ...); files Pillow cannot
      identify are tried with OpenCV (e.g. 3-channel float TIFF).
    - EXIF orientation is applied, so the array is upright as a photo viewer shows it.
    - Grey and palette images become RGB. **Alpha is dropped** without compositing: transparent
      pixels keep whatever colour they store (use `read_mask` to read an alpha channel as a hole).
    - 16-bit data (grey ``I;16``, 16-bit RGB(A) PNG/TIFF via OpenCV) -> ``round(x / 257)``.
    - Float data: [0, 1] if all values lie there, else [0, 255]; clipped and rounded.

    Raises `ImageReadError` (one line, ``"PATH: problem"``) for a missing, empty, unreadable,
    corrupt or truncated file, a directory, or an unsupported format.
    """
    where = str(path)
    raw = _decode(path)
    return _channels_to_rgb(_file_array_to_u8(raw, where), where)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask file as ``np.bool_`` HxW, True = hole.

    Hole = any non-zero pixel in any colour channel, at the file's native depth (a 16-bit value
    of 1 is a hole). If the file has an alpha channel that is not fully opaque, the alpha channel
    alone is the mask (alpha > 0 = hole) and the colours are ignored. EXIF orientation is applied.
    Raises `ImageReadError` like `read_image`.

    Note that lossy formats (JPEG) turn black into "almost black" near edges, which counts as
    hole; save masks as PNG.
    """
    return _raw_to_mask(_decode(path), str(path))


def read_sketch(path: str | os.PathLike) -> np.ndarray:
    """Read a sketch (guidance lines) as ``np.bool_`` HxW, True = a line; same rules as `read_mask`."""
    return read_mask(path)


def _size_text(hw: Sequence[int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def check_mask(
    mask: np.ndarray,
    image_shape: Sequence[int],
    path: str | os.PathLike | None = None,
    resize: bool = False,
    allow_empty: bool = False,
) -> np.ndarray:
    """Check that a bool HxW mask fits an image of shape ``(H, W)`` or ``(H, W, C)``.

    Returns the mask as bool (resized with nearest neighbour when ``resize=True`` and the sizes
    differ). Raises `MaskError` when the size differs and ``resize`` is False (sizes are written
    width x height, as image viewers do), or when the mask has no hole at all unless
    ``allow_empty`` (for sketches, where no line is a valid input).
    """
    prefix = f"{path}: " if path is not None else ""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"{prefix}mask must be a single-channel HxW array, got shape {mask.shape}")
    mask = mask != 0 if mask.dtype != np.bool_ else mask
    target = (int(image_shape[0]), int(image_shape[1]))
    if mask.shape != target:
        if not resize:
            raise MaskError(
                f"{prefix}mask is {_size_text(mask.shape)} but the image is {_size_text(target)} "
                "(use --resize-mask to resize it)"
            )
        # INTER_NEAREST_EXACT samples pixel centres like Pillow's NEAREST; plain INTER_NEAREST is
        # shifted by half a pixel.
        import cv2

        resized = cv2.resize(
            mask.astype(np.uint8), (target[1], target[0]), interpolation=cv2.INTER_NEAREST_EXACT
        )
        mask = resized != 0
    if not allow_empty and not mask.any():
        raise MaskError(f"{prefix}mask has no hole (no non-zero pixels)")
    return mask


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 HxWx3 (RGB) or HxW (grey) pixels; the format follows the extension.

    ``.png``; ``.jpg``/``.jpeg`` (quality 95, no chroma subsampling); ``.webp`` (lossless);
    ``.bmp``; ``.tif``/``.tiff``. A bool HxW array is written as 0/255 (a mask). The file is
    written atomically (`atomic_write`): a crash leaves the old file or the new one. Raises
    `InputError` for an unknown extension or an array of the wrong type or shape.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _WRITE_FORMATS:
        known = ", ".join(_WRITE_FORMATS)
        raise InputError(f"{p}: unknown image extension {ext or '(none)'!r} (use one of {known})")
    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise InputError(f"{p}: can only write uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or 0 in arr.shape:
        raise InputError(f"{p}: expected an HxWx3 or HxW array, got shape {arr.shape}")
    fmt, options = _WRITE_FORMATS[ext]
    img = Image.fromarray(np.ascontiguousarray(arr))
    with atomic_write(p, "wb") as f:
        img.save(f, format=fmt, **options)


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 1x3xHxW in [-1, 1] (``x / 127.5 - 1``)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"image_to_tensor expects uint8 HxWx3, got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0)
    return t.to(torch.float32) / 127.5 - 1.0


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float 3xHxW or 1x3xHxW in [-1, 1] -> uint8 HxWx3.

    ``round((x + 1) * 127.5)`` with round-half-to-even (``torch.round``), clamped to [0, 255];
    NaN becomes 0 (a diverged model should give a visibly black image, not undefined bytes).
    """
    t = tensor.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise InputError(f"tensor_to_image expects 3xHxW or 1x3xHxW, got {tuple(tensor.shape)}")
    t = torch.nan_to_num(t.to(device="cpu", dtype=torch.float32), nan=-1.0)
    u8 = torch.round((t + 1.0) * 127.5).clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(u8.permute(1, 2, 0).numpy())


def mask_to_tensor(mask: np.ndarray) -> torch.Tensor:
    """bool (or any numeric, non-zero = hole) HxW -> float32 1x1xHxW in {0, 1}."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"mask_to_tensor expects an HxW mask, got shape {arr.shape}")
    return torch.from_numpy((arr != 0).astype(np.float32))[None, None]


# --------------------------------------------------------------------------------------------
# Python API inputs
# --------------------------------------------------------------------------------------------


def _api_array(x: Any, what: str) -> tuple[np.ndarray, Kind]:
    """PIL image / numpy array / path -> (raw array, kind); validates dtypes and float ranges."""
    if isinstance(x, Image.Image):
        # An in-memory image is taken as the pixel grid the caller means: no EXIF rotation, so a
        # result handed back lines up with what was passed in.
        try:
            x.load()
        except Exception as exc:
            raise InputError(f"{what}: cannot decode the PIL image ({_one_line(exc)})") from None
        return _pil_to_array(x, what), "pil"
    if isinstance(x, (str, os.PathLike)):
        return _decode(x), "numpy"
    if not isinstance(x, np.ndarray):
        raise InputError(f"{what}: expected a PIL.Image, a numpy array or a path, got {type(x).__name__}")
    arr = x
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or 0 in arr.shape:
        raise InputError(f"{what}: expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(f"{what}: float array contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{what}: float values must lie in [0, 1], got [{lo:g}, {hi:g}] "
                "(divide by 255, or pass uint8)"
            )
    elif arr.dtype not in (np.uint8, np.uint16, np.bool_):
        raise InputError(
            f"{what}: unsupported dtype {arr.dtype} (use uint8, uint16, bool or float in [0, 1])"
        )
    return arr, "numpy"


def coerce_image(x: Any) -> tuple[np.ndarray, Kind]:
    """An API image argument -> ``(uint8 HxWx3 RGB, kind)``.

    Accepts a PIL image (any mode), a numpy array HxW / HxWx1 / HxWx3 / HxWx4 (RGB order; alpha
    dropped) of dtype uint8, uint16 (``round(x / 257)``), bool or float in [0, 1], or a file
    path (read with `read_image`). ``kind`` ("pil" or "numpy") tells `restore_type` what to hand
    back. Raises `InputError` for anything else.
    """
    arr, kind = _api_array(x, "image")
    # Float arrays were checked to lie in [0, 1], which `_file_array_to_u8` reads as such.
    return _channels_to_rgb(_file_array_to_u8(arr, "image"), "image"), kind


def coerce_mask(x: Any) -> np.ndarray:
    """An API mask (or sketch) argument -> bool HxW, with the rules of `read_mask`.

    Accepts what `coerce_image` accepts; hole = non-zero, or alpha > 0 for a 2/4-channel input
    whose alpha is not fully opaque. No kind is returned: results are images, so the image's
    kind decides the returned type.
    """
    arr, _ = _api_array(x, "mask")
    return _raw_to_mask(arr, "mask")


def restore_type(image: np.ndarray, kind: Kind) -> np.ndarray | Image.Image:
    """Hand a uint8 HxWx3 result back as the type the caller passed in (see `coerce_image`)."""
    if kind == "pil":
        return Image.fromarray(np.ascontiguousarray(image))
    if kind == "numpy":
        return image
    raise ValueError(f"unknown kind {kind!r} (expected 'pil' or 'numpy')")


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def _natural_key(name: str) -> tuple:
    """Sort key putting img2 before img10; ties broken by the exact name for a total order."""
    parts = re.split(r"(\d+)", name.casefold())
    return tuple(int(s) if i % 2 else s for i, s in enumerate(parts)), name


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def _scan_dir(directory: str | os.PathLike, what: str) -> list[os.DirEntry]:
    d = Path(directory)
    if not d.exists():
        raise InputError(f"{d}: no such {what} folder")
    if not d.is_dir():
        raise InputError(f"{d}: not a folder")
    try:
        with os.scandir(d) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        raise InputError(f"{d}: cannot list the folder ({_one_line(exc)})") from None


def list_images(directory: str | os.PathLike) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files directly inside ``directory``, in natural name order.

    Returns ``(paths, skipped)``: ``skipped`` lists ``(path, reason)`` for the other files.
    Hidden files (``.name``) and sub-folders are ignored (not searched). The extension decides,
    not the content: a damaged file is reported when it is read. Raises `InputError` when the
    folder is missing or holds no image.
    """
    d = Path(directory)
    entries = _scan_dir(d, "image")
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    n_dirs = 0
    for e in entries:
        if e.is_dir():
            n_dirs += 1
        elif _is_image_name(e.name):
            images.append(d / e.name)
        else:
            ext = os.path.splitext(e.name)[1]
            skipped.append((d / e.name, f"not an image extension ({ext or 'no extension'})"))
    if not images:
        hint = f"; {n_dirs} sub-folder(s) not searched" if n_dirs else ""
        raise InputError(f"{d}: no images ({', '.join(IMAGE_EXTS)}){hint}")
    images.sort(key=lambda p: _natural_key(p.name))
    skipped.sort(key=lambda item: _natural_key(item[0].name))
    return images, skipped


def match_by_stem(
    images: Iterable[str | os.PathLike], masks_dir: str | os.PathLike
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair each image with its mask in ``masks_dir`` for batch mode.

    The mask of ``photo.jpg`` is ``photo.<any image ext>`` or ``photo_mask.<any image ext>``.
    When several match, the exact stem wins over ``_mask``, then extensions in `IMAGE_EXTS`
    order (PNG first, lossless). An image is never its own mask, so images and masks may share
    one folder. Returns ``(pairs, missing)`` with ``missing`` the images that have no mask.
    """
    candidates: dict[str, list[tuple[int, str]]] = {}
    mdir = Path(masks_dir)
    for e in _scan_dir(mdir, "mask"):
        stem, ext = os.path.splitext(e.name)
        if ext.lower() in IMAGE_EXTS and not e.is_dir():
            candidates.setdefault(stem, []).append((IMAGE_EXTS.index(ext.lower()), e.name))
    for names in candidates.values():
        names.sort()

    pairs: list[tuple[Path, Path]] = []
    missing: list[Path] = []
    for image in images:
        ip = Path(image)
        found = None
        for stem in (ip.stem, ip.stem + "_mask"):
            for _, name in candidates.get(stem, ()):
                mp = mdir / name
                if _same_file(mp, ip):
                    continue
                found = mp
                break
            if found is not None:
                break
        if found is None:
            missing.append(ip)
        else:
            pairs.append((ip, found))
    return pairs, missing


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False

"""Decoding image files into 8-bit RGB arrays, with typed errors.

Every reader of pixels in the library (preprocessing, the dataset, the scan, the
duplicate check) goes through :func:`decode_rgb`, so one set of rules applies:

* RGB 8-bit images are returned unchanged.
* Grayscale (``L``, ``1``), palette (``P``), ``CMYK`` and ``YCbCr`` images are
  converted with Pillow's ``convert("RGB")`` (grayscale is replicated to 3 channels).
* Images with alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency) are composited
  over a white background, the colour of an empty smear field.
* 16-bit grayscale (``I;16*``) is scaled by 255/65535; 32-bit integer (``I``) by
  255/65535 when its values fit in 16 bits (how Pillow opens 16-bit PNGs), else by its
  maximum; float (``F``) images by 255 when they lie in [0, 1], else by their maximum.
  Pillow's own ``convert`` would clip these to 255 instead of scaling them.

Failures raise :class:`~neurall_neuro.errors.BadImageError` naming the path and the
reason: missing file, permission denied, zero-byte file, not an image, truncated or
corrupt data. Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left untouched
(False), so truncated files are errors, never silently padded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurall_neuro.errors import BadImageError

#: File extensions (lower case) that the dataset layouts treat as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
)


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has an image extension and is not a hidden file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth single-channel array to uint8 (rules in the module docstring)."""
    a = arr.astype(np.float64)
    if mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif mode == "F":
        peak = float(np.nanmax(a)) if a.size else 0.0
        scale = 255.0 if peak <= 1.0 else 255.0 / peak
    else:  # "I": 32-bit signed integers
        peak = float(a.max()) if a.size else 0.0
        scale = 255.0 / 65535.0 if peak <= 65535 else 255.0 / peak
    return np.clip(np.nan_to_num(a * scale) + 0.5, 0, 255).astype(np.uint8)


def _to_rgb_array(img) -> np.ndarray:  # img: PIL.Image.Image
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.asarray(img), mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_rgb(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array.

    Returns the array and the file's original Pillow mode (``"RGB"``, ``"L"``,
    ``"RGBA"``, ``"I;16"``, ...), so callers can count conversions.

    Raises:
        BadImageError: the file is missing, unreadable, empty, not an image, or corrupt.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise BadImageError(f"{p}: file not found") from None
    except PermissionError:
        raise BadImageError(f"{p}: permission denied") from None
    except OSError as exc:
        raise BadImageError(f"{p}: cannot access file ({exc.strerror or exc})") from None
    if p.is_dir():
        raise BadImageError(f"{p}: is a directory, not an image file")
    if size == 0:
        raise BadImageError(f"{p}: empty file (0 bytes)")
    try:
        with Image.open(p) as img:
            img.load()
            mode = img.mode
            arr = _to_rgb_array(img)
    except PermissionError:
        raise BadImageError(f"{p}: permission denied") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{p}: not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"{p}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated"),
        # and some malformed headers as SyntaxError / ValueError.
        raise BadImageError(f"{p}: truncated or corrupt image data ({exc})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImageError(f"{p}: decoded to an unusable array of shape {arr.shape}")
    return np.ascontiguousarray(arr), mode


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array (see :func:`decode_rgb`)."""
    return decode_rgb(path)[0]

"""The one preprocessing pipeline, training augmentation, and robustness transforms.

Training, evaluation and export calibration all turn an image file into a model
input with :class:`Preprocessing`, so a model sees the same pixels everywhere:

1. **Load** the file as 8-bit RGB (:func:`neurall_neuro.data.imageio.decode_rgb`:
   grayscale replicated, alpha composited on white, palette expanded, 16-bit scaled).
2. **Stain normalisation** (optional, ``stain_norm="macenko"``): Macenko normalisation
   at full resolution onto a fitted :class:`~neurall_neuro.data.stain.StainReference`
   stored with the settings; images on which it fails are kept unnormalised (one
   :class:`~neurall_neuro.data.stain.StainNormWarning` counts them).
3. **Resize** to ``size x size`` with Pillow's bilinear filter (antialiased when
   shrinking; the aspect ratio is not kept: smear crops are square or nearly so).
4. **CLAHE** (optional): OpenCV contrast-limited adaptive histogram equalisation on
   the L channel of CIE-LAB (clip limit 2.0, 8x8 tiles), colour channels untouched.
5. **Scale** to a float32 tensor ``[3, size, size]`` with values in [0, 1].
   No mean/std normalisation: models normalise themselves if they want to.

Steps 1-4 give a uint8 ``(size, size, 3)`` array (:meth:`Preprocessing.load_uint8`),
which :class:`~neurall_neuro.data.dataset.ImageDataset` caches in memory; step 5 is
:func:`to_tensor`.

Augmentation (:func:`train_augmentation`, HED stain augmentation
:class:`~neurall_neuro.data.stain.HEDAugment`) and robustness transforms act on the
float tensor. Robustness transforms (``ROBUSTNESS_TRANSFORMS``) model staining and
colour shifts at evaluation time: ``none``, ``grayscale`` (ITU-R 601 luminance
replicated to 3 channels), ``stain-jitter`` (hue, saturation, brightness and
per-channel gain jitter) and ``hed-jitter`` (per-stain scale and shift in HED space,
:class:`~neurall_neuro.data.stain.HEDJitter`), the jitters deterministic for a
(seed, image index) pair.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from neurall_neuro.data.stain import (
    STAIN_NORMS,
    MacenkoStainNormalizer,
    StainReference,
    check_choice,
    hed_jitter,
    warn_stain_fallback,
)
from neurall_neuro.errors import ConfigError
from neurall_neuro.registry import Registry

if TYPE_CHECKING:
    import torch

#: CLAHE settings (OpenCV ``createCLAHE``).
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)


@dataclass(frozen=True)
class Preprocessing:
    """Settings of the preprocessing pipeline (see the module docstring).

    Attributes:
        size: output side length in pixels (images become ``size x size``).
        clahe: apply CLAHE on the L channel of LAB after resizing.
        stain_norm: ``none`` or ``macenko`` (stain normalisation before resizing).
        stain_reference: the fitted Macenko reference (needed to process images with
            ``stain_norm="macenko"``; see :func:`~neurall_neuro.data.stain.fit_stain_reference`).

    ``to_dict`` leaves the stain keys out when ``stain_norm`` is ``none``, so the dict
    of such settings is the same as before stain normalisation existed, and dicts
    without them (older checkpoints) read back as ``none``.
    """

    size: int = 64
    clahe: bool = False
    stain_norm: str = "none"
    stain_reference: StainReference | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 8:
            raise ConfigError(f"Preprocessing.size must be an integer >= 8, got {self.size!r}")
        if not isinstance(self.clahe, bool):
            raise ConfigError(f"Preprocessing.clahe must be true or false, got {self.clahe!r}")
        check_choice("stain_norm", self.stain_norm, STAIN_NORMS)
        if self.stain_reference is not None and not isinstance(
            self.stain_reference, StainReference
        ):
            raise ConfigError(
                "Preprocessing.stain_reference must be a StainReference or None, got "
                f"{type(self.stain_reference).__name__} (Preprocessing.from_dict reads dicts)"
            )
        if self.stain_norm == "none" and self.stain_reference is not None:
            raise ConfigError("a stain_reference is given but stain_norm is 'none'")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON (``from_dict`` reads it back)."""
        out = asdict(self)
        if self.stain_norm == "none":
            del out["stain_norm"], out["stain_reference"]
        elif self.stain_reference is not None:
            out["stain_reference"] = self.stain_reference.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Build from :meth:`to_dict` output; unknown keys are a ConfigError.

        Missing stain keys (checkpoints from before stain normalisation) mean ``none``.
        """
        known = {"size", "clahe", "stain_norm", "stain_reference"}
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError(
                f"unknown preprocessing keys {extra}; valid keys: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if values.get("stain_reference") is not None:
            values["stain_reference"] = StainReference.from_dict(values["stain_reference"])
        return cls(**values)

    def normalize_stain(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """Step 2 on an ``(H, W, 3)`` uint8 array: ``(pixels, fell_back)``.

        ``fell_back`` is true when normalisation failed and ``rgb`` is returned unchanged.
        """
        if self.stain_norm == "none":
            return rgb, False
        if self.stain_reference is None:
            raise ConfigError(
                f"stain_norm={self.stain_norm!r} needs a fitted stain_reference "
                "(neurall_neuro.data.stain.fit_stain_reference)"
            )
        out = MacenkoStainNormalizer(self.stain_reference).normalize(rgb)
        return (rgb, True) if out is None else (out, False)

    def prepare_array(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """Steps 2-4 on an ``(H, W, 3)`` uint8 array: ``((size, size, 3) uint8, fell_back)``.

        ``fell_back`` says stain normalisation failed on this image (it was kept
        unnormalised); callers count these and warn once.
        """
        from PIL import Image

        rgb, fell_back = self.normalize_stain(rgb)
        if rgb.shape[0] != self.size or rgb.shape[1] != self.size:
            img = Image.fromarray(rgb).resize((self.size, self.size), Image.BILINEAR)
            rgb = np.asarray(img, dtype=np.uint8)
        if self.clahe:
            rgb = apply_clahe(rgb)
        return np.ascontiguousarray(rgb), fell_back

    def process_array(self, rgb: np.ndarray) -> np.ndarray:
        """Steps 2-4: ``(H, W, 3)`` uint8 -> ``(size, size, 3)`` uint8 (warns on a stain fallback)."""
        out, fell_back = self.prepare_array(rgb)
        if fell_back:
            warn_stain_fallback(1, 1, self.stain_norm)
        return out

    def load_uint8(self, path: str | os.PathLike[str]) -> np.ndarray:
        """Steps 1-4: file -> ``(size, size, 3)`` uint8 RGB array (BadImageError on failure)."""
        from neurall_neuro.data.imageio import read_rgb

        return self.process_array(read_rgb(path))

    def load(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """The whole pipeline: file -> float32 tensor ``[3, size, size]`` in [0, 1]."""
        return to_tensor(self.load_uint8(path))


def apply_clahe(rgb: np.ndarray) -> np.ndarray:
    """CLAHE on the L channel of LAB (OpenCV, clip 2.0, 8x8 tiles); uint8 RGB in and out."""
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(S, S, 3)`` uint8 array -> float32 tensor ``[3, S, S]`` in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


def train_augmentation(size: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random training augmentation on float tensors ``[3, S, S]`` (torchvision v2).

    Horizontal and vertical flips (p = 0.5 each), rotation within +-15 degrees and
    zoom by 0.95-1.05 (one affine; the image is reflect-padded by 1/8 of its side first
    and centre-cropped back, so no black corners appear), brightness x0.9-1.1.
    The zoom range is kept small on purpose: cell size is a class cue (blasts are
    larger than hematogones) and a dataset has one magnification.
    ``size`` is accepted for symmetry with other builders; the output keeps the input size.
    """
    import torch
    from torchvision.transforms import v2

    del size  # the output always has the input's size

    def pad_rotate_crop(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad = max(1, min(h, w) // 8)
        padded = torch.nn.functional.pad(x[None], (pad, pad, pad, pad), mode="reflect")[0]
        out = affine(padded)
        return out[..., pad : pad + h, pad : pad + w]

    affine = v2.RandomAffine(
        degrees=15, scale=(0.95, 1.05), interpolation=v2.InterpolationMode.BILINEAR
    )
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomVerticalFlip(p=0.5),
            v2.Lambda(pad_rotate_crop),
            v2.ColorJitter(brightness=0.1),
            v2.Lambda(lambda x: x.clamp_(0.0, 1.0)),
        ]
    )


class RobustnessTransform(Protocol):
    """A deterministic evaluation-time transform: ``(image [3,S,S] in [0,1], index) -> image``."""

    def __call__(self, image: torch.Tensor, index: int = 0) -> torch.Tensor: ...


#: Luminance weights (ITU-R BT.601) used by :func:`grayscale`.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def grayscale(image: torch.Tensor, index: int = 0) -> torch.Tensor:
    """Luminance ``0.299 R + 0.587 G + 0.114 B`` replicated to 3 channels."""
    del index
    w = image.new_tensor(LUMA_WEIGHTS).view(3, 1, 1)
    luma = (image * w).sum(dim=0, keepdim=True)
    return luma.expand(3, -1, -1).contiguous()


def identity(image: torch.Tensor, index: int = 0) -> torch.Tensor:
    """The ``none`` robustness transform: the image unchanged."""
    del index
    return image


@dataclass(frozen=True)
class StainJitter:
    """Random stain variation, deterministic for a given ``(seed, index)``.

    For ``strength`` s each image gets, drawn uniformly: a hue shift within +-0.05 s
    (fraction of the colour circle), a saturation factor within 2^(+-0.5 s), a
    brightness factor within 1 +- 0.1 s, and independent per-channel gains within
    1 +- 0.08 s (stain-vector variation). ``strength = 0`` is the identity.
    """

    strength: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) <= 5.0:
            raise ConfigError(f"stain-jitter strength must be in [0, 5], got {self.strength!r}")

    def params(self, index: int) -> dict[str, Any]:
        """The jitter parameters drawn for image ``index``."""
        rng = np.random.default_rng([int(self.seed), int(index), 0x5A17])
        s = float(self.strength)
        return {
            "hue": float(rng.uniform(-0.05, 0.05) * s),
            "saturation": float(2.0 ** (rng.uniform(-0.5, 0.5) * s)),
            "brightness": float(1.0 + rng.uniform(-0.1, 0.1) * s),
            "gains": [float(1.0 + g * s) for g in rng.uniform(-0.08, 0.08, size=3)],
        }

    def __call__(self, image: torch.Tensor, index: int = 0) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        if self.strength == 0:
            return image
        p = self.params(index)
        x = F.adjust_hue(image, p["hue"])
        x = F.adjust_saturation(x, p["saturation"])
        x = F.adjust_brightness(x, p["brightness"])
        x = x * x.new_tensor(p["gains"]).view(3, 1, 1)
        return x.clamp(0.0, 1.0)


def stain_jitter(strength: float = 1.0, seed: int = 0) -> StainJitter:
    """A :class:`StainJitter` transform (hue/saturation/colour jitter, deterministic per seed)."""
    return StainJitter(strength=float(strength), seed=int(seed))


def _no_params(fn: RobustnessTransform) -> Callable[..., RobustnessTransform]:
    def factory(strength: float = 1.0, seed: int = 0) -> RobustnessTransform:
        del strength, seed
        return fn

    factory.__doc__ = fn.__doc__
    return factory


#: Robustness transform factories by name: ``factory(strength=1.0, seed=0) -> transform``.
ROBUSTNESS_TRANSFORMS: Registry[Callable[..., RobustnessTransform]] = Registry(
    "robustness transform"
)
ROBUSTNESS_TRANSFORMS.register("none", _no_params(identity))
ROBUSTNESS_TRANSFORMS.register("grayscale", _no_params(grayscale))
ROBUSTNESS_TRANSFORMS.register("stain-jitter", stain_jitter)
ROBUSTNESS_TRANSFORMS.register("hed-jitter", hed_jitter)


def get_robustness_transform(
    name: str, strength: float = 1.0, seed: int = 0
) -> RobustnessTransform:
    """Build the robustness transform ``name`` (UnknownNameError lists the valid names)."""
    return ROBUSTNESS_TRANSFORMS.get(name)(strength=strength, seed=seed)

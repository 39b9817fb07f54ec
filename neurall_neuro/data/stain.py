"""Stain robustness: HED-space stain augmentation and Macenko stain normalisation.

**HED colour deconvolution** (Ruifrok & Johnston 2001). An RGB image ``I`` in [0, 1]
becomes optical density, scaled as scikit-image's ``rgb2hed`` does so that it lies in
[0, 1] for ``I`` in [eps, 1] (``eps = 1e-6``)::

    OD = ln(max(I, eps)) / ln(eps)                  (per pixel, a row vector [R, G, B])
    S  = OD @ HED_FROM_RGB,  HED_FROM_RGB = inverse(RGB_FROM_HED)   (S = [H, E, DAB])

and back: ``OD = S @ RGB_FROM_HED``, ``I = exp(OD * ln(eps))``. The rows of
:data:`RGB_FROM_HED` are the optical-density colour vectors of haematoxylin, eosin and
DAB. Stain concentrations are not clipped at 0, so the round trip is exact.

**HED augmentation** (Tellez et al. 2018, 2019): every stain channel ``c`` of a pixel
is perturbed as ``S'_c = alpha_c * S_c + beta_c`` with, per image,
``alpha_c ~ U(1 - sigma, 1 + sigma)`` and ``beta_c ~ U(-sigma, sigma)``; the result is
remixed, converted back to RGB and clamped to [0, 1]. ``sigma = 0`` is the identity.
Tellez et al. (2019) call ``sigma = 0.05`` "HED-light" and ``sigma = 0.2`` "HED-strong".
:class:`HEDAugment` draws from torch's global generator (training: seeded per epoch by
the trainer, like the other augmentation); :class:`HEDJitter` is the evaluation-time
robustness transform ``hed-jitter``, deterministic for a ``(seed, image index)`` pair,
with ``sigma = 0.05 * strength``.

**Macenko stain normalisation** (Macenko et al. 2009) maps an image's H&E stain
vectors and 99th-percentile concentrations onto those of a reference, using
torchstain's numpy implementation (``torchstain.normalizers.MacenkoNormalizer``,
defaults ``Io = 240``, ``alpha = 1``, ``beta = 0.15``). A :class:`StainReference` holds
the fitted reference (``HERef``, 3 x 2, and ``maxCRef``, 2 values) as plain floats, so a
checkpoint reproduces the normalisation without the reference image.
:func:`fit_stain_reference` picks the reference among training images (see there).
Images on which Macenko fails (blank or background-only crops: torchstain raises or
produces NaN) are left unnormalised; :class:`MacenkoStainNormalizer` reports them and
callers warn once with the count (:class:`StainNormWarning`).

References:
    A. C. Ruifrok, D. A. Johnston, "Quantification of histochemical staining by color
    deconvolution", Anal. Quant. Cytol. Histol. 23(4):291-299, 2001.
    D. Tellez et al., "Whole-slide mitosis detection in H&E breast histology using PHH3
    as a reference to train distilled stain-invariant convolutional networks", IEEE TMI
    37(9):2126-2136, 2018; "Quantifying the effects of data augmentation and stain color
    normalization in convolutional neural networks for computational pathology",
    Medical Image Analysis 58:101544, 2019.
    M. Macenko et al., "A method for normalizing histology slides for quantitative
    analysis", ISBI 2009, 1107-1110.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurall_neuro.errors import ConfigError, DataError, MissingDependencyError

if TYPE_CHECKING:
    import torch

#: Optical-density colour vectors (rows: haematoxylin, eosin, DAB; columns: R, G, B) of
#: Ruifrok & Johnston (2001), as in scikit-image's ``skimage.color.rgb_from_hed``.
RGB_FROM_HED: tuple[tuple[float, float, float], ...] = (
    (0.65, 0.70, 0.29),  # haematoxylin
    (0.07, 0.99, 0.11),  # eosin
    (0.27, 0.57, 0.78),  # DAB
)
#: Unmixing matrix: ``S = OD @ HED_FROM_RGB`` (the inverse of :data:`RGB_FROM_HED`).
HED_FROM_RGB: tuple[tuple[float, ...], ...] = tuple(
    tuple(float(v) for v in row) for row in np.linalg.inv(np.array(RGB_FROM_HED))
)
#: Smallest intensity before the logarithm; optical density is ``ln(I) / ln(OD_EPS)``.
OD_EPS = 1e-6
#: Names of the stain channels, in the order of :data:`RGB_FROM_HED`.
STAIN_CHANNELS = ("haematoxylin", "eosin", "DAB")
#: Default ``sigma`` of the training augmentation (Tellez et al. 2019 "HED-light").
DEFAULT_HED_SIGMA = 0.05
#: Largest allowed ``sigma`` (``alpha`` stays >= 0).
MAX_HED_SIGMA = 1.0
#: ``sigma`` of the ``hed-jitter`` robustness transform per unit of strength.
HED_JITTER_SIGMA = 0.05

#: Training stain augmentations (``TrainConfig.stain_augment``).
STAIN_AUGMENTS: tuple[str, ...] = ("none", "hed")
#: Stain normalisations (``Preprocessing.stain_norm``).
STAIN_NORMS: tuple[str, ...] = ("none", "macenko")
#: Training images tried when fitting the Macenko reference (evenly spaced, sorted by path).
REFERENCE_CANDIDATES = 32


class StainNormWarning(UserWarning):
    """Stain normalisation failed on some images, which were used unnormalised."""


# --------------------------------------------------------------------------- HED space
def _matrix(values: tuple[tuple[float, ...], ...], like: torch.Tensor) -> torch.Tensor:
    return like.new_tensor(values)


def rgb_to_hed(image: torch.Tensor) -> torch.Tensor:
    """RGB ``[3, H, W]`` in [0, 1] -> stain concentrations ``[3, H, W]`` (H, E, DAB)."""
    import torch

    od = torch.log(image.clamp_min(OD_EPS)) / math.log(OD_EPS)
    return torch.einsum("chw,cs->shw", od, _matrix(HED_FROM_RGB, image))


def hed_to_rgb(stains: torch.Tensor) -> torch.Tensor:
    """Stain concentrations ``[3, H, W]`` -> RGB ``[3, H, W]`` (not clamped)."""
    import torch

    od = torch.einsum("shw,sc->chw", stains, _matrix(RGB_FROM_HED, stains))
    return torch.exp(od * math.log(OD_EPS))


def hed_perturb(image: torch.Tensor, alpha: Sequence[float], beta: Sequence[float]) -> torch.Tensor:
    """``S'_c = alpha_c * S_c + beta_c`` in HED space, back to RGB clamped to [0, 1]."""
    stains = rgb_to_hed(image)
    a = image.new_tensor([float(v) for v in alpha]).view(3, 1, 1)
    b = image.new_tensor([float(v) for v in beta]).view(3, 1, 1)
    return hed_to_rgb(stains * a + b).clamp(0.0, 1.0)


def _check_sigma(name: str, sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise ConfigError(f"{name} must be a number in [0, {MAX_HED_SIGMA:g}], got {sigma!r}")
    if not 0.0 <= float(sigma) <= MAX_HED_SIGMA:
        raise ConfigError(f"{name} must be in [0, {MAX_HED_SIGMA:g}], got {sigma!r}")
    return float(sigma)


@dataclass(frozen=True)
class HEDAugment:
    """Training augmentation: a random HED perturbation per call (torch's global generator).

    ``alpha_c ~ U(1 - sigma, 1 + sigma)``, ``beta_c ~ U(-sigma, sigma)`` for the three
    stain channels; the trainer seeds the global generator per epoch (and per worker),
    so runs are reproducible and resumable like the rest of the augmentation.
    """

    sigma: float = DEFAULT_HED_SIGMA

    def __post_init__(self) -> None:
        _check_sigma("stain_augment_strength", self.sigma)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        import torch

        if self.sigma == 0:
            return image
        draws = torch.rand(6) * 2.0 - 1.0  # U(-1, 1)
        alpha = (1.0 + self.sigma * draws[:3]).tolist()
        beta = (self.sigma * draws[3:]).tolist()
        return hed_perturb(image, alpha, beta)


@dataclass(frozen=True)
class HEDJitter:
    """The ``hed-jitter`` robustness transform: HED perturbation deterministic per ``(seed, index)``.

    ``sigma = 0.05 * strength`` (strength 1: "HED-light", 4: "HED-strong");
    ``strength = 0`` is the identity.
    """

    strength: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) <= MAX_HED_SIGMA / HED_JITTER_SIGMA:
            raise ConfigError(
                f"hed-jitter strength must be in [0, {MAX_HED_SIGMA / HED_JITTER_SIGMA:g}], "
                f"got {self.strength!r}"
            )

    @property
    def sigma(self) -> float:
        return HED_JITTER_SIGMA * float(self.strength)

    def params(self, index: int) -> dict[str, list[float]]:
        """The ``alpha`` and ``beta`` (3 values each) drawn for image ``index``."""
        rng = np.random.default_rng([int(self.seed), int(index), 0x4ED])
        draws = rng.uniform(-1.0, 1.0, size=6)
        return {
            "alpha": [float(1.0 + self.sigma * d) for d in draws[:3]],
            "beta": [float(self.sigma * d) for d in draws[3:]],
        }

    def __call__(self, image: torch.Tensor, index: int = 0) -> torch.Tensor:
        if self.strength == 0:
            return image
        p = self.params(index)
        return hed_perturb(image, p["alpha"], p["beta"])


def hed_jitter(strength: float = 1.0, seed: int = 0) -> HEDJitter:
    """A :class:`HEDJitter` robustness transform (``sigma = 0.05 * strength``)."""
    return HEDJitter(strength=float(strength), seed=int(seed))


# --------------------------------------------------------------------------- Macenko
@dataclass(frozen=True)
class StainReference:
    """A fitted Macenko reference: torchstain's ``HERef`` (3 x 2) and ``maxCRef`` (2).

    ``image`` names the reference image (informational; not needed to normalise).
    """

    he: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    max_c: tuple[float, float]
    image: str = ""

    def __post_init__(self) -> None:
        he = np.asarray(self.he, dtype=float)
        max_c = np.asarray(self.max_c, dtype=float)
        if he.shape != (3, 2) or max_c.shape != (2,):
            raise ConfigError(
                "a Macenko stain reference needs 'he' (3 x 2 numbers) and 'max_c' (2 numbers), "
                f"got shapes {he.shape} and {max_c.shape}"
            )
        if not (np.isfinite(he).all() and np.isfinite(max_c).all() and (max_c > 0).all()):
            raise ConfigError(
                f"a Macenko stain reference must be finite with max_c > 0, got {self.to_dict()}"
            )

    @classmethod
    def from_arrays(cls, he: np.ndarray, max_c: np.ndarray, image: str = "") -> StainReference:
        rows = np.asarray(he, dtype=float).reshape(3, 2)
        c = np.asarray(max_c, dtype=float).reshape(2)
        return cls(
            he=tuple((float(r[0]), float(r[1])) for r in rows),  # type: ignore[arg-type]
            max_c=(float(c[0]), float(c[1])),
            image=image,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and floats for checkpoints and JSON."""
        return {
            "he": [list(row) for row in self.he],
            "max_c": list(self.max_c),
            "image": self.image,
        }

    @classmethod
    def from_dict(cls, data: Any) -> StainReference:
        """Read :meth:`to_dict` output (ConfigError on anything else)."""
        if isinstance(data, StainReference):
            return data
        if not isinstance(data, dict) or not {"he", "max_c"} <= set(data):
            raise ConfigError(
                f"stain_reference must be a mapping with 'he' and 'max_c', got {data!r}"
            )
        extra = sorted(set(data) - {"he", "max_c", "image"})
        if extra:
            raise ConfigError(f"unknown stain_reference keys {extra}; valid keys: he, image, max_c")
        try:
            return cls.from_arrays(data["he"], data["max_c"], str(data.get("image", "")))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid stain_reference {data!r}: {exc}") from None

    def vector(self) -> np.ndarray:
        """The 8 numbers (``he`` row-major, then ``max_c``) as one vector."""
        return np.concatenate([np.asarray(self.he, dtype=float).ravel(), self.max_c])


def _torchstain_macenko() -> Any:
    try:
        import torchstain
    except ImportError as exc:
        raise MissingDependencyError(
            f"Macenko stain normalisation needs torchstain (pip install torchstain): {exc}"
        ) from None
    return torchstain.normalizers.MacenkoNormalizer(backend="numpy")


def _guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; numpy's invalid/divide errors and RuntimeWarnings become exceptions."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(divide="raise", invalid="raise", over="ignore", under="ignore"):
            return fn(*args, **kwargs)


#: What torchstain raises on images without usable stain (no tissue pixels, NaN).
_MACENKO_FAILURES = (ArithmeticError, ValueError, IndexError, np.linalg.LinAlgError, RuntimeWarning)


class MacenkoStainNormalizer:
    """torchstain's numpy Macenko normaliser set to a :class:`StainReference`."""

    def __init__(self, reference: StainReference):
        self.reference = reference
        self._normalizer = _torchstain_macenko()
        self._normalizer.HERef = np.asarray(reference.he, dtype=float)
        self._normalizer.maxCRef = np.asarray(reference.max_c, dtype=float)

    def normalize(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 -> normalised uint8, or ``None`` when Macenko fails."""
        try:
            out, _, _ = _guarded(self._normalizer.normalize, rgb, stains=False)
        except _MACENKO_FAILURES:
            return None
        return np.ascontiguousarray(out, dtype=np.uint8)


def fit_macenko(rgb: np.ndarray, image: str = "") -> StainReference | None:
    """Fit a reference on one ``(H, W, 3)`` uint8 image (``None`` when Macenko fails)."""
    normalizer = _torchstain_macenko()
    try:
        _guarded(normalizer.fit, rgb)
        return StainReference.from_arrays(normalizer.HERef, normalizer.maxCRef, image)
    except (*_MACENKO_FAILURES, ConfigError):
        return None


def fit_stain_reference(
    paths: Sequence[str | os.PathLike[str]],
    root: str | os.PathLike[str] | None = None,
    candidates: int = REFERENCE_CANDIDATES,
) -> StainReference:
    """The Macenko reference of a training split: its most typical image's fit.

    The paths are sorted; up to ``candidates`` of them, evenly spaced, are decoded (full
    resolution, as normalisation runs before resizing) and fitted. The reference is the
    fit closest (Euclidean, over the 8 numbers of ``HERef`` and ``maxCRef``) to the
    element-wise median of all successful fits (the first such image on ties). The
    choice depends only on the file set, so every process and a resumed run pick the
    same image. ``image`` records its path relative to ``root``.
    Raises :class:`DataError` when Macenko fails on every candidate.
    """
    from neurall_neuro.data.imageio import read_rgb

    ordered = sorted((Path(p) for p in paths), key=lambda p: p.as_posix())
    if not ordered:
        raise DataError("cannot fit the Macenko stain reference: no training images")
    n = min(int(candidates), len(ordered))
    picks = sorted({round(i * (len(ordered) - 1) / max(1, n - 1)) for i in range(n)})
    fits: list[StainReference] = []
    for i in picks:
        path = ordered[i]
        inside_root = root is not None and path.is_relative_to(root)
        name = path.relative_to(root).as_posix() if inside_root else path.as_posix()
        fitted = fit_macenko(read_rgb(path), image=name)
        if fitted is not None:
            fits.append(fitted)
    if not fits:
        raise DataError(
            f"cannot fit the Macenko stain reference: it failed on all {len(picks)} training "
            "images tried (blank or background-only images?)"
        )
    vectors = np.stack([f.vector() for f in fits])
    median = np.median(vectors, axis=0)
    best = int(np.argmin(np.linalg.norm(vectors - median, axis=1)))
    return fits[best]


def check_choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    """``value`` if it is one of ``valid``, else ConfigError naming the valid options."""
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"{name}={value!r} is invalid; valid options: {', '.join(valid)}")
    return value


def warn_stain_fallback(failed: int, total: int, method: str = "macenko") -> None:
    """One :class:`StainNormWarning` saying on how many images normalisation fell back."""
    warnings.warn(
        f"{method} stain normalisation failed on {failed} of {total} image(s) (blank or "
        "background-only?); they were used unnormalised",
        StainNormWarning,
        stacklevel=3,
    )

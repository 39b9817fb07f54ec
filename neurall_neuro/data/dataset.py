"""A torch Dataset over image records, with an in-memory cache of decoded pixels.

Each item is ``(image, label, index)``: a float32 tensor ``[3, S, S]`` in [0, 1]
made by :class:`~neurall_neuro.data.preprocess.Preprocessing`, the integer label,
and the record's index (so evaluation can map predictions back to files).

With ``cache=True`` (default) every image is decoded, stain-normalised (if set),
resized (and CLAHE'd) once, when the dataset is built, into one uint8 array
``[N, S, S, 3]`` (12 KiB per 64 px image): epochs then cost only augmentation, which keeps CPU training on two
cores from being bound by JPEG decoding, and a broken file is reported before
training starts. With ``cache=False`` files are decoded on every access. Either way
an unreadable file raises :class:`~neurall_neuro.errors.BadImageError` naming the
path and the reason, never a bare Pillow error in the middle of an epoch. Images on
which stain normalisation fails are kept unnormalised, with one warning counting them.

Training-time randomness (``augment``, ``stain_augment``) draws from torch's global
generator, which the trainer seeds per epoch and per data-loader worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from neurall_neuro.data.imageio import read_rgb
from neurall_neuro.data.preprocess import (
    Preprocessing,
    get_robustness_transform,
    to_tensor,
    train_augmentation,
)
from neurall_neuro.data.records import Cohort, ImageRecord
from neurall_neuro.data.stain import (
    DEFAULT_HED_SIGMA,
    STAIN_AUGMENTS,
    HEDAugment,
    check_choice,
    warn_stain_fallback,
)
from neurall_neuro.progress import track


class ImageDataset(Dataset):
    """Images of ``records`` as model inputs.

    Args:
        records: the images (a list of :class:`ImageRecord` or a :class:`Cohort`).
        preprocessing: the pipeline settings (size, CLAHE, stain normalisation).
        augment: apply :func:`train_augmentation` on every access (training only).
        stain_augment: ``none`` or ``hed``: :class:`~neurall_neuro.data.stain.HEDAugment`
            on every access, before ``augment``'s transforms (training only; independent
            of ``augment``).
        stain_augment_strength: its ``sigma``.
        cache: decode every image once at construction and keep uint8 pixels in memory.
        robustness: name in ``ROBUSTNESS_TRANSFORMS`` applied after augmentation
            (``none``, ``grayscale``, ``stain-jitter``, ``hed-jitter``).
        robustness_strength: strength passed to the robustness transform.
        robustness_seed: seed of the robustness transform (jitter is a function of
            ``(seed, index)``, independent of loading order and worker processes).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord] | Cohort,
        preprocessing: Preprocessing | None = None,
        augment: bool = False,
        cache: bool = True,
        robustness: str = "none",
        robustness_strength: float = 1.0,
        robustness_seed: int = 0,
        stain_augment: str = "none",
        stain_augment_strength: float = DEFAULT_HED_SIGMA,
    ):
        self.records: list[ImageRecord] = list(
            records.records if isinstance(records, Cohort) else records
        )
        self.preprocessing = preprocessing if preprocessing is not None else Preprocessing()
        self.augment = augment
        self.robustness = robustness
        self._robust = get_robustness_transform(
            robustness, strength=robustness_strength, seed=robustness_seed
        )
        self._augmentation = train_augmentation() if augment else None
        self.stain_augment = check_choice("stain_augment", stain_augment, STAIN_AUGMENTS)
        self._stain_augmentation = (
            HEDAugment(sigma=stain_augment_strength) if stain_augment == "hed" else None
        )
        self._pixels: np.ndarray | None = None
        if cache:
            self._pixels = self._decode_all()

    @property
    def cached(self) -> bool:
        """Whether decoded pixels are held in memory."""
        return self._pixels is not None

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def _decode_all(self) -> np.ndarray:
        s = self.preprocessing.size
        out = np.empty((len(self.records), s, s, 3), dtype=np.uint8)
        items = enumerate(self.records)
        if len(self.records) >= 200:
            items = track(items, "decoding images", total=len(self.records))
        failed = 0
        for i, rec in items:
            out[i], fell_back = self.preprocessing.prepare_array(read_rgb(rec.path))
            failed += int(fell_back)
        if failed:
            warn_stain_fallback(failed, len(self.records), self.preprocessing.stain_norm)
        return out

    def pixels(self, index: int) -> np.ndarray:
        """The preprocessed uint8 ``(S, S, 3)`` pixels of item ``index`` (no augmentation)."""
        if self._pixels is not None:
            return self._pixels[index]
        return self.preprocessing.load_uint8(self.records[index].path)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        image = to_tensor(self.pixels(index))
        if self._stain_augmentation is not None:
            image = self._stain_augmentation(image)
        if self._augmentation is not None:
            image = self._augmentation(image)
        image = self._robust(image, index)
        return image, self.records[index].label, index

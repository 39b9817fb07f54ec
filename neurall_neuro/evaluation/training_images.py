"""Which evaluated images a checkpoint was trained or validated on, from hashes it stores.

A score on images the model was trained on is inflated. ``neurall train`` therefore
stores two small codes per training and validation image in every checkpoint (key
``image_hashes``, see :mod:`neurall_neuro.models.checkpoint`), and ``evaluate``
compares the evaluated images with them. The training data itself is not needed:
the check works on any machine, with or without a split file.

Codes per image (24 bytes; 2,212 images take 53 KB, 55 KB in the checkpoint file):

* **exact**: the first 8 bytes of ``SHA-256(file bytes)`` as a big-endian signed
  int64. It identifies byte-identical files (the chance that two different files
  share it is ``2^-64`` per pair).
* **perceptual**: the 128 bits ``imagehash.phash`` (8x8) followed by
  ``imagehash.dhash`` (8x8) of the decoded image, the code of
  :mod:`neurall_neuro.data.dedup`, packed into 16 bytes (``numpy.packbits``). It is
  unchanged or nearly so by re-encoding (JPEG quality), resizing and small shifts.

Counting rule, for every evaluated image ``x`` with codes ``e(x)`` and ``p(x)``
(``H`` is the Hamming distance, ``E_P`` and ``C_P`` the remembered codes of part
``P`` in {train, val}, training first when both apply)::

    x is an exact match of P   if e(x) in E_P
    else a near-duplicate of P if min_{c in C_P} H(p(x), c) <= NEAR_DISTANCE
    else held out.

Near-duplicate threshold. :mod:`neurall_neuro.data.dedup` reports a pair when the hash
distance is <= 30 bits **and** aligned thumbnails of both images correlate; a
checkpoint holds no thumbnails, so here the hash alone decides and must be stricter.
Measured with the ``dedup`` hash (ad-hoc script, not kept): the closest *different*
images are 16 bits apart (generated cohort, 800 cells at 64 px; 23 at 32 px, 27 at
16 px) and 24 bits apart (``all-aria-dev``, 2,604 real fields: 3.4 M pairs); resized
and JPEG re-encoded copies stay within 6 bits; of the 94 near-duplicate pairs
confirmed by ``dedup`` in ``all-aria-dev`` (slightly shifted frames), 79 lie within
10 bits and 15 at 11-30 bits. :data:`NEAR_DISTANCE` = 10 keeps 6 bits of margin below
the closest different images and catches the copies and most shifted frames; a
training root on disk (``overlap`` check) still finds the rest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neurall_neuro.data.dedup import HASH_BITS
from neurall_neuro.errors import BadImageError, CheckpointError, ConfigError
from neurall_neuro.progress import track

if TYPE_CHECKING:
    from neurall_neuro.data.records import Cohort
    from neurall_neuro.models.checkpoint import Checkpoint

#: ``format`` and ``version`` of the checkpoint's ``image_hashes`` entry.
HASHES_FORMAT = "neurall-image-hashes"
HASHES_VERSION = 1
#: Parts of a split whose images a checkpoint remembers, in order of precedence.
REMEMBERED_PARTS: tuple[str, ...] = ("train", "val")
#: Bytes of SHA-256 kept as the exact code.
EXACT_BYTES = 8
#: Bytes of the packed perceptual code (128 bits).
PERCEPTUAL_BYTES = HASH_BITS // 8
#: Largest perceptual-hash distance (bits of 128) counted as a near-duplicate.
NEAR_DISTANCE = 10
#: Matched images listed in ``metrics.json`` (all of them go to ``training_overlap.csv``).
MAX_EXAMPLES = 20
#: Number of images from which hashing shows progress.
_PROGRESS_FROM = 200
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


class TrainingOverlapWarning(UserWarning):
    """Evaluated images were in the checkpoint's training or validation set."""


# --------------------------------------------------------------------------- codes
def exact_code(data: bytes) -> int:
    """The exact code of a file's bytes: ``SHA-256[:8]`` as a big-endian signed int64."""
    return int.from_bytes(hashlib.sha256(data).digest()[:EXACT_BYTES], "big", signed=True)


@dataclass
class ImageFingerprints:
    """The codes of a list of images (see the module docstring).

    Attributes:
        exact: ``(n,)`` int64 exact codes (0 for files that could not be read).
        perceptual: ``(n, 16)`` uint8 packed 128-bit perceptual codes (zero rows for
            images that could not be decoded).
        readable: ``(n,)`` bool, False where the file could not be read (no exact code).
        decoded: ``(n,)`` bool, False where the image could not be decoded (no
            perceptual code).
    """

    exact: np.ndarray
    perceptual: np.ndarray
    readable: np.ndarray
    decoded: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.exact)
        shapes = (self.perceptual.shape, self.readable.shape, self.decoded.shape)
        if shapes != ((n, PERCEPTUAL_BYTES), (n,), (n,)):
            raise ConfigError(
                f"inconsistent image fingerprints: exact {self.exact.shape}, perceptual "
                f"{self.perceptual.shape} (expected ({n}, {PERCEPTUAL_BYTES})), readable "
                f"{self.readable.shape}, decoded {self.decoded.shape}"
            )

    def __len__(self) -> int:
        return len(self.exact)

    @classmethod
    def empty(cls) -> ImageFingerprints:
        return cls(
            np.zeros(0, dtype=np.int64),
            np.zeros((0, PERCEPTUAL_BYTES), dtype=np.uint8),
            np.zeros(0, dtype=bool),
            np.zeros(0, dtype=bool),
        )


def fingerprint_images(
    paths: Sequence[str | os.PathLike[str]],
    description: str = "hashing images",
    progress: bool = True,
) -> ImageFingerprints:
    """Read every file once: its exact code from the bytes, its perceptual code from
    the decoded image. Unreadable files and undecodable images are flagged, never raised."""
    from neurall_neuro.data.dedup import image_hash_bits
    from neurall_neuro.data.imageio import read_rgb

    n = len(paths)
    exact = np.zeros(n, dtype=np.int64)
    perceptual = np.zeros((n, PERCEPTUAL_BYTES), dtype=np.uint8)
    readable = np.zeros(n, dtype=bool)
    decoded = np.zeros(n, dtype=bool)
    items: Any = enumerate(paths)
    if progress and n >= _PROGRESS_FROM:
        items = track(items, description, total=n)
    for i, path in items:
        try:
            exact[i] = exact_code(Path(path).read_bytes())
        except OSError:
            continue
        readable[i] = True
        try:
            rgb = read_rgb(path)
        except BadImageError:
            continue
        perceptual[i] = np.packbits(image_hash_bits(rgb))
        decoded[i] = True
    return ImageFingerprints(exact, perceptual, readable, decoded)


# --------------------------------------------------------------------------- storage
@dataclass
class RememberedPart:
    """The codes of one part's images as stored in a checkpoint.

    Attributes:
        n_images: images in the part.
        exact: ``(m,)`` int64 exact codes of its readable files (``m <= n_images``).
        perceptual: ``(k, 16)`` uint8 packed perceptual codes of its decodable images.
    """

    n_images: int
    exact: np.ndarray
    perceptual: np.ndarray

    def __post_init__(self) -> None:
        if (
            self.exact.ndim != 1
            or self.perceptual.ndim != 2
            or (self.perceptual.shape[1] != PERCEPTUAL_BYTES)
        ):
            raise ConfigError(
                f"malformed remembered codes: exact {tuple(self.exact.shape)} (expected (m,)), "
                f"perceptual {tuple(self.perceptual.shape)} (expected (k, {PERCEPTUAL_BYTES}))"
            )
        if max(len(self.exact), len(self.perceptual)) > self.n_images:
            raise ConfigError(
                f"{len(self.exact)} exact / {len(self.perceptual)} perceptual codes for "
                f"{self.n_images} images"
            )

    @classmethod
    def from_fingerprints(cls, fp: ImageFingerprints) -> RememberedPart:
        return cls(len(fp), fp.exact[fp.readable].copy(), fp.perceptual[fp.decoded].copy())


@dataclass
class TrainingImageHashes:
    """The remembered codes of a checkpoint's training and validation images."""

    parts: dict[str, RememberedPart]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.parts) - set(REMEMBERED_PARTS))
        if unknown:
            raise ConfigError(
                f"unknown part(s) {', '.join(unknown)}; valid options: {', '.join(REMEMBERED_PARTS)}"
            )

    def counts(self) -> dict[str, int]:
        """Remembered images per part (all of ``REMEMBERED_PARTS``, 0 when absent)."""
        return {p: self.parts[p].n_images if p in self.parts else 0 for p in REMEMBERED_PARTS}

    @classmethod
    def from_cohorts(
        cls, parts: Mapping[str, Cohort], progress: bool = True
    ) -> TrainingImageHashes:
        """Hash the images of each part (e.g. ``{"train": ..., "val": ...}`` of a split)."""
        return cls(
            {
                name: RememberedPart.from_fingerprints(
                    fingerprint_images(cohort.paths, f"hashing {name} images", progress)
                )
                for name, cohort in parts.items()
            }
        )

    def to_payload(self) -> dict[str, Any]:
        """The checkpoint entry: strings, ints and tensors only (``weights_only``-loadable)."""
        return {
            "format": HASHES_FORMAT,
            "version": HASHES_VERSION,
            "exact": f"sha256(file bytes)[:{EXACT_BYTES}] as a big-endian signed int64",
            "perceptual": "imagehash.phash(8x8) + imagehash.dhash(8x8) bits, numpy.packbits "
            f"into {PERCEPTUAL_BYTES} uint8",
            "parts": {
                name: {
                    "n_images": int(part.n_images),
                    "exact": torch.from_numpy(part.exact.astype(np.int64)),
                    "perceptual": torch.from_numpy(part.perceptual.astype(np.uint8)),
                }
                for name, part in self.parts.items()
            },
        }

    @classmethod
    def from_payload(cls, payload: Any, source: str = "checkpoint") -> TrainingImageHashes:
        """Parse a checkpoint's ``image_hashes`` entry (CheckpointError when malformed)."""
        if not isinstance(payload, dict) or payload.get("format") != HASHES_FORMAT:
            raise CheckpointError(
                f"{source}: 'image_hashes' is not a {HASHES_FORMAT!r} entry; re-create it with "
                "scripts/add_training_hashes.py"
            )
        if payload.get("version", 0) > HASHES_VERSION:
            raise CheckpointError(
                f"{source}: image hashes version {payload['version']}; this neurall-neuro reads "
                f"up to version {HASHES_VERSION}"
            )
        entries = dict(payload.get("parts", {}))
        unknown = sorted(set(entries) - set(REMEMBERED_PARTS))
        if unknown:
            raise CheckpointError(
                f"{source}: image hashes of unknown part(s) {', '.join(unknown)}; valid options: "
                f"{', '.join(REMEMBERED_PARTS)}"
            )
        parts: dict[str, RememberedPart] = {}
        for name, entry in entries.items():
            try:
                parts[name] = RememberedPart(
                    int(entry["n_images"]),
                    entry["exact"].numpy().astype(np.int64, copy=False),
                    entry["perceptual"].numpy().astype(np.uint8, copy=False),
                )
            except (KeyError, TypeError, AttributeError, ConfigError) as exc:
                raise CheckpointError(
                    f"{source}: malformed image hashes of part {name!r} ({type(exc).__name__}: "
                    f"{exc}); expected 'n_images' and tensors 'exact', 'perceptual'"
                ) from exc
        return cls(parts)


def checkpoint_image_hashes(checkpoint: Checkpoint) -> TrainingImageHashes | None:
    """The checkpoint's remembered image hashes, or None when it stores none."""
    if checkpoint.image_hashes is None:
        return None
    source = str(checkpoint.path) if checkpoint.path else "checkpoint"
    return TrainingImageHashes.from_payload(checkpoint.image_hashes, source)


# --------------------------------------------------------------------------- matching
def _min_distances(codes: np.ndarray, reference: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per row of ``codes`` (packed bits), the smallest Hamming distance to any row of
    ``reference`` (``HASH_BITS + 1`` when ``reference`` is empty)."""
    out = np.full(len(codes), HASH_BITS + 1, dtype=np.int64)
    if len(reference) == 0:
        return out
    for start in range(0, len(codes), chunk):
        rows = codes[start : start + chunk]
        dist = _POPCOUNT[rows[:, None, :] ^ reference[None, :, :]].sum(axis=2, dtype=np.int64)
        out[start : start + chunk] = dist.min(axis=1)
    return out


@dataclass(frozen=True)
class ImageMatch:
    """One evaluated image found among the remembered ones.

    ``index`` indexes the evaluated cohort; ``part`` is ``train`` or ``val``; ``kind``
    is ``exact`` (identical file) or ``near`` (perceptual hash within the threshold);
    ``hash_distance`` is 0 for exact matches.
    """

    index: int
    part: str
    kind: str
    hash_distance: int


@dataclass
class TrainingOverlap:
    """Result of :func:`find_training_images` (``to_dict`` goes to ``metrics.json``)."""

    n_evaluated: int
    remembered: dict[str, int]
    matches: list[ImageMatch]
    near_distance: int = NEAR_DISTANCE
    n_unreadable: int = 0
    excluded: bool = False
    paths: list[str] = field(default_factory=list, repr=False)

    def count(self, part: str, kind: str | None = None) -> int:
        return sum(1 for m in self.matches if m.part == part and (kind is None or m.kind == kind))

    @property
    def n_overlapping(self) -> int:
        return len(self.matches)

    @property
    def n_held_out(self) -> int:
        return self.n_evaluated - self.n_overlapping

    def held_out_indices(self) -> list[int]:
        """Indices of the evaluated images that match no remembered image."""
        matched = {m.index for m in self.matches}
        return [i for i in range(self.n_evaluated) if i not in matched]

    def _near_clause(self) -> str:
        near = {p: self.count(p, "near") for p in REMEMBERED_PARTS}
        if not any(near.values()):
            return ""
        return (
            f"; {near['train']:,} more are near-duplicates of training images and "
            f"{near['val']:,} of validation images (perceptual hash within "
            f"{self.near_distance} of {HASH_BITS} bits)"
        )

    def message(self) -> str:
        """The warning printed when images overlap (empty when none do)."""
        if not self.matches or self.excluded:
            return ""
        return (
            f"WARNING: {self.count('train', 'exact'):,} of {self.n_evaluated:,} images were in "
            f"this checkpoint's training set and {self.count('val', 'exact'):,} in its "
            f"validation set (identical files){self._near_clause()}; their scores are inflated. "
            f"Score the {self.n_held_out:,} held-out images only with --exclude-training "
            "(Python: exclude_training=True)."
        )

    def summary(self) -> str:
        """One line for the evaluation summary: the warning, the exclusion or the all-clear."""
        if self.excluded:
            near = sum(1 for m in self.matches if m.kind == "near")
            return (
                f"NOTE: scored the {self.n_held_out:,} held-out images only; excluded "
                f"{self.count('train', 'exact'):,} training and {self.count('val', 'exact'):,} "
                f"validation images (identical files) and {near:,} near-duplicates of them "
                f"(perceptual hash within {self.near_distance} bits), found by the "
                "checkpoint's image hashes"
            )
        if self.matches:
            return self.message()
        return (
            f"checked against the checkpoint's {self.remembered.get('train', 0):,} training and "
            f"{self.remembered.get('val', 0):,} validation image hashes: no overlap"
        )

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.matches, key=lambda m: (m.kind != "near", m.index))
        examples = [
            {
                "path": self.paths[m.index] if self.paths else None,
                "part": m.part,
                "match": m.kind,
                "hash_distance": m.hash_distance,
            }
            for m in ordered[:MAX_EXAMPLES]
        ]
        return {
            "checked": True,
            "source": "image hashes stored in the checkpoint",
            "remembered": dict(self.remembered),
            "n_evaluated": self.n_evaluated,
            **{
                part: {"exact": self.count(part, "exact"), "near": self.count(part, "near")}
                for part in REMEMBERED_PARTS
            },
            "n_overlapping": self.n_overlapping,
            "n_held_out": self.n_held_out,
            "excluded": self.excluded,
            "n_scored": self.n_held_out if self.excluded else self.n_evaluated,
            "near_distance": self.near_distance,
            "hash_bits": HASH_BITS,
            "n_unreadable": self.n_unreadable,
            "examples": examples,
            "message": self.summary(),
        }

    def rows(self) -> list[dict[str, Any]]:
        """Every matched image (``path, part, match, hash_distance``), in evaluation order."""
        return [
            {
                "path": self.paths[m.index] if self.paths else m.index,
                "part": m.part,
                "match": m.kind,
                "hash_distance": m.hash_distance,
            }
            for m in sorted(self.matches, key=lambda m: m.index)
        ]


def find_training_images(
    evaluated: ImageFingerprints,
    remembered: TrainingImageHashes,
    near_distance: int = NEAR_DISTANCE,
    paths: Sequence[str | os.PathLike[str]] = (),
) -> TrainingOverlap:
    """Apply the counting rule of the module docstring to every evaluated image."""
    if not 0 <= near_distance < HASH_BITS:
        raise ConfigError(
            f"near-duplicate distance must be in 0..{HASH_BITS - 1} bits, got {near_distance}"
        )
    exact_sets = {part: set(rp.exact.tolist()) for part, rp in remembered.parts.items()}
    distances = {
        part: _min_distances(evaluated.perceptual, rp.perceptual)
        for part, rp in remembered.parts.items()
    }
    parts = [p for p in REMEMBERED_PARTS if p in remembered.parts]
    matches: list[ImageMatch] = []
    for i in range(len(evaluated)):
        if not evaluated.readable[i]:
            continue
        code = int(evaluated.exact[i])
        hit = next((p for p in parts if code in exact_sets[p]), None)
        if hit is not None:
            matches.append(ImageMatch(i, hit, "exact", 0))
            continue
        if not evaluated.decoded[i]:
            continue
        near = next((p for p in parts if distances[p][i] <= near_distance), None)
        if near is not None:
            matches.append(ImageMatch(i, near, "near", int(distances[near][i])))
    return TrainingOverlap(
        n_evaluated=len(evaluated),
        remembered=remembered.counts(),
        matches=matches,
        near_distance=int(near_distance),
        n_unreadable=int((~evaluated.readable).sum()),
        paths=[str(p) for p in paths],
    )


def check_training_images(
    cohort: Cohort,
    checkpoint: Checkpoint,
    near_distance: int = NEAR_DISTANCE,
    progress: bool = True,
) -> TrainingOverlap | None:
    """Compare ``cohort``'s images with the checkpoint's remembered images (None when the
    checkpoint stores no image hashes)."""
    remembered = checkpoint_image_hashes(checkpoint)
    if remembered is None:
        return None
    fingerprints = fingerprint_images(cohort.paths, "hashing evaluated images", progress)
    return find_training_images(fingerprints, remembered, near_distance, cohort.paths)


def no_hashes_note() -> dict[str, Any]:
    """The ``metrics.json`` entry when the checkpoint stores no image hashes."""
    return {
        "checked": False,
        "note": "this checkpoint stores no training-image hashes (written by neurall train "
        "since they were introduced; scripts/add_training_hashes.py adds them when the "
        "training images and split are at hand), so overlap with its training data is unknown",
    }


def add_image_hashes(
    path: str | os.PathLike[str],
    hashes: TrainingImageHashes,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Store ``hashes`` in an existing checkpoint file (replacing any it had), merging
    ``metadata`` into its metadata; the weights and every other entry stay as they are.

    The file is rewritten atomically and read back: CheckpointError if any tensor of
    the state dict differs in dtype, shape or value from before.
    """
    from neurall_neuro.models.checkpoint import (
        IMAGE_HASHES_KEY,
        read_checkpoint_dict,
        write_checkpoint_dict,
    )

    path = Path(path)
    payload = read_checkpoint_dict(path)
    before = {k: v.clone() for k, v in payload["state_dict"].items()}
    payload[IMAGE_HASHES_KEY] = hashes.to_payload()
    payload["metadata"] = {**payload.get("metadata", {}), **dict(metadata or {})}
    write_checkpoint_dict(path, payload)
    after = read_checkpoint_dict(path)["state_dict"]
    changed = [
        k
        for k, v in before.items()
        if k not in after
        or after[k].dtype != v.dtype
        or after[k].shape != v.shape
        or not torch.equal(after[k], v)
    ]
    if changed or set(after) != set(before):
        raise CheckpointError(
            f"{path}: the state dict changed while adding image hashes ({', '.join(changed)})"
        )
    return path

"""Near-duplicate detection within a cohort, across the parts of a split, across cohorts.

Method (two stages; every image is decoded once):

1. **Candidates by perceptual hash (ImageHash).** Each image gets a 128-bit code,
   ``imagehash.phash`` (8x8 DCT signs, 64 bits) followed by ``imagehash.dhash``
   (8x8 gradient signs, 64 bits). Hamming distances of all pairs are computed at
   once as two matrix products of the bit matrices (in row chunks); pairs within
   :data:`CANDIDATE_DISTANCE` = 30 bits are candidates.
2. **Confirmation by aligned detail correlation.** The two images of a candidate
   are compared as square grayscale thumbnails at the resolution of the smaller
   one (at most :data:`THUMB_SIZE` = 96 px: a downscaled copy holds no finer
   detail). Their translation is estimated by phase correlation (Hann window);
   over the overlapping area the band-pass detail (difference of Gaussians, sigma
   0.7 and 3 px) is correlated, leaving out the 30 % of pixels on the strongest
   smoothed edges (cell and nucleus outlines). A pair is a duplicate when this
   similarity is >= :data:`MIN_SIMILARITY` = 0.7.

Thresholds chosen by measurement (ad-hoc scripts, not kept; numbers from the
session that wrote this module):

* Real data, ``all-aria-dev`` (2,604 smear fields, 224 px). Ground truth: phase
  correlation of all 3.4 M pairs, then correlation of the aligned overlap (clean
  gap between >= 0.6 and <= 0.5): 202 pairs show the same field, 91 of them the
  "almost identical, slightly shifted" frames (shift <= 10 px, 4.5 % of the side),
  111 overlapping fields shifted by 11-125 px. The 91 lie at 0-30 bits of the
  hash, while the closest pair of *different* fields is at 29-30 bits, so a hash
  threshold alone trades misses against false alarms (a 16x16 phash is worse: a
  10 px shift already costs 96 of 256 bits). With the defaults: 94 pairs found,
  all true (90 of the 91 slightly shifted frames plus 4 overlapping fields), no
  false alarm; the missed frame pair (``WBC-Malignant-Pro-772/773``) is partly
  refocused (similarity 0.59). Candidate pairs of different fields score <= 0.11.
  Fields overlapping after a shift of more than about 5 % of the side are beyond
  the hash stage and are not reported.
* Generated cohorts (:mod:`neurall_neuro.data.synth`, 800 centred single cells):
  distinct cells come as close as 16 bits (closer than real shifted frames):
  2,663 candidates within 34 bits at 64 px, 3,099 at 128 px. Correlating all
  detail, outlines included, they reach 0.86 (above resized copies); with
  outlines left out they score <= 0.57 (64 px) and <= 0.61 (128 px): none reported.
* Planted copies, resized by x0.625-x1.5 and JPEG re-encoded (quality 70-85):
  <= 6 bits; similarity >= 0.84 (generated cells, 64 and 128 px) and >= 0.99
  (real fields).

Speed: one decode per image (a few ms for a 224 px JPEG); all-pair hash
distances for 2,604 images take well under a second; confirmation costs about
1 ms per candidate pair.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from neurall_neuro.atomic import atomic_write_text
from neurall_neuro.data.imageio import read_rgb
from neurall_neuro.data.records import Cohort
from neurall_neuro.errors import BadImageError, ConfigError
from neurall_neuro.progress import track


class SplitParts(Protocol):
    """What the split-leak check needs of a split: the record indices of each part.

    :class:`neurall_neuro.data.splits.Split` provides it. The dependency runs one way
    (``splits`` imports this module for :func:`~neurall_neuro.data.splits.groups_from_duplicates`),
    so this module names the interface instead of importing the class.
    """

    def indices(self, cohort: Cohort) -> dict[str, list[int]]:
        """``{part name: [record indices of cohort]}``."""
        ...


#: Bits of the combined phash + dhash code.
HASH_BITS = 128
#: Hash distance (bits of 128) up to which a pair is a candidate.
CANDIDATE_DISTANCE = 30
#: Aligned band-pass correlation from which a candidate is confirmed as a duplicate.
MIN_SIMILARITY = 0.7
#: Largest side of the grayscale thumbnails, i.e. the finest comparison scale.
THUMB_SIZE = 96
#: Smallest comparison scale.
MIN_THUMB = 32
#: The aligned overlap must cover at least this fraction of the thumbnail.
MIN_OVERLAP = 0.5
_DOG_SIGMAS = (0.7, 3.0)
#: Smoothing of the edge map, and the percentile of edge strength above which pixels
#: (cell and nucleus outlines) are left out of the detail correlation.
_EDGE_SIGMA = 2.0
_EDGE_PERCENTILE = 70


@dataclass
class ImageHashes:
    """Hash codes and thumbnails of a list of images (:func:`hash_images`).

    Attributes:
        paths: the images, in input order.
        bits: ``(n, 128)`` uint8 array of hash bits (phash then dhash); rows of
            unreadable images are zero and excluded from comparisons.
        thumbs: square uint8 grayscale thumbnail of each image, of side
            ``min(shorter image side, THUMB_SIZE)`` (empty if unreadable).
        valid: ``(n,)`` bool, False for images that could not be decoded.
        failed: ``(path, reason)`` for every image that could not be decoded.
    """

    paths: list[Path]
    bits: np.ndarray
    thumbs: list[np.ndarray]
    valid: np.ndarray
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def image_hash_bits(rgb: np.ndarray) -> np.ndarray:
    """The 128 hash bits (``imagehash.phash`` then ``imagehash.dhash``) of an RGB array."""
    import imagehash
    from PIL import Image

    img = Image.fromarray(rgb)
    return np.concatenate(
        [imagehash.phash(img).hash.ravel(), imagehash.dhash(img).hash.ravel()]
    ).astype(np.uint8)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """Square uint8 grayscale thumbnail of side ``min(shorter side, THUMB_SIZE)`` (Pillow, bilinear)."""
    from PIL import Image

    side = max(MIN_THUMB, min(rgb.shape[0], rgb.shape[1], THUMB_SIZE))
    img = Image.fromarray(rgb).convert("L").resize((side, side), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def hash_images(
    paths: Sequence[str | os.PathLike[str]], description: str = "hashing images"
) -> ImageHashes:
    """Decode every image once and compute its hash bits and thumbnail.

    Images that cannot be decoded are recorded in ``failed`` (never raised), so a
    duplicate check of a folder with a few broken files still runs.
    """
    n = len(paths)
    bits = np.zeros((n, HASH_BITS), dtype=np.uint8)
    empty = np.zeros((0, 0), dtype=np.uint8)
    thumbs = [empty] * n
    valid = np.zeros(n, dtype=bool)
    failed: list[tuple[Path, str]] = []
    items = enumerate(paths)
    if n >= 200:
        items = track(items, description, total=n)
    for i, p in items:
        try:
            rgb = read_rgb(p)
        except BadImageError as exc:
            failed.append((Path(p), str(exc)))
            continue
        bits[i] = image_hash_bits(rgb)
        thumbs[i] = thumbnail(rgb)
        valid[i] = True
    return ImageHashes([Path(p) for p in paths], bits, thumbs, valid, failed)


def hamming_candidates(
    a: np.ndarray, b: np.ndarray | None, max_distance: int, chunk: int = 1024
) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)`` with Hamming distance <= ``max_distance``.

    ``a`` and ``b`` are ``(n, bits)`` 0/1 arrays; with ``b=None`` pairs within
    ``a`` with ``i < j`` are returned. The distance matrix is computed in row
    chunks as ``A (1 - B)^T + (1 - A) B^T`` in float32 (exact for these sizes).
    """
    af = a.astype(np.float32)
    bf = af if b is None else b.astype(np.float32)
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(af), chunk):
        rows = af[start : start + chunk]
        d = rows @ (1.0 - bf).T + (1.0 - rows) @ bf.T
        ii, jj = np.nonzero(d <= max_distance + 0.5)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            gi = start + i
            if b is None and j <= gi:
                continue
            out.append((gi, j, int(round(float(d[i, j])))))
    return out


def _ncc(p: np.ndarray, q: np.ndarray) -> float:
    """Normalised cross-correlation of two equally shaped arrays (0 when either is flat)."""
    p = p - p.mean()
    q = q - q.mean()
    denom = float(np.sqrt((p * p).sum() * (q * q).sum()))
    return float((p * q).sum() / denom) if denom > 1e-9 else 0.0


def comparison_side(thumb_a: np.ndarray, thumb_b: np.ndarray) -> int:
    """Side at which two thumbnails are compared: the smaller one's (the lower-resolution
    image holds no finer detail, e.g. a downscaled copy)."""
    return min(thumb_a.shape[0], thumb_b.shape[0])


class _Aligner:
    """Alignment and detail correlation of thumbnails (per-image arrays cached by key and side)."""

    def __init__(self) -> None:
        self._windows: dict[int, np.ndarray] = {}
        self._cache: dict[tuple[tuple[int, int], int], tuple[np.ndarray, ...]] = {}

    def _prepare(self, key: tuple[int, int], thumb: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        import cv2

        if (key, n) not in self._cache:
            g = thumb.astype(np.float32)
            if g.shape[0] != n:
                g = cv2.resize(g, (n, n), interpolation=cv2.INTER_AREA)
            if n not in self._windows:
                self._windows[n] = np.outer(np.hanning(n), np.hanning(n))
            spectrum = np.fft.fft2((g - g.mean()) * self._windows[n])
            lo, hi = _DOG_SIGMAS
            band = cv2.GaussianBlur(g, (0, 0), lo) - cv2.GaussianBlur(g, (0, 0), hi)
            gy, gx = np.gradient(cv2.GaussianBlur(g, (0, 0), _EDGE_SIGMA))
            self._cache[(key, n)] = (spectrum, band.astype(np.float64), np.hypot(gx, gy))
        return self._cache[(key, n)]

    def compare(
        self,
        ka: tuple[int, int],
        ta: np.ndarray,
        kb: tuple[int, int],
        tb: np.ndarray,
        n: int | None = None,
    ) -> tuple[float, tuple[int, int]]:
        """``(similarity, (dy, dx))`` at side ``n`` (default: the smaller thumbnail's);
        similarity is -1 when the aligned overlap is too small."""
        n = comparison_side(ta, tb) if n is None else n
        fa, band_a, edge_a = self._prepare(ka, ta, n)
        fb, band_b, edge_b = self._prepare(kb, tb, n)
        cross = fa * np.conj(fb)
        cross /= np.abs(cross) + 1e-9
        corr = np.real(np.fft.ifft2(cross))
        y, x = np.unravel_index(int(np.argmax(corr)), corr.shape)
        dy = int(y if y <= n // 2 else y - n)
        dx = int(x if x <= n // 2 else x - n)
        if (n - abs(dy)) * (n - abs(dx)) < MIN_OVERLAP * n * n:
            return -1.0, (dy, dx)
        sa = (slice(max(dy, 0), n + min(dy, 0)), slice(max(dx, 0), n + min(dx, 0)))
        sb = (slice(max(-dy, 0), n + min(-dy, 0)), slice(max(-dx, 0), n + min(-dx, 0)))
        edges = np.maximum(edge_a[sa], edge_b[sb])
        keep = edges <= np.percentile(edges, _EDGE_PERCENTILE)
        return _ncc(band_a[sa][keep], band_b[sb][keep]), (dy, dx)


@dataclass(frozen=True)
class DuplicatePair:
    """Two images found to be near-duplicates.

    ``index_a``/``index_b`` index the record lists that were compared (the cohort
    for within-cohort and split checks; cohort A and cohort B across cohorts).
    ``hash_distance`` is in bits of 128 (phash + dhash), ``similarity`` the aligned
    band-pass correlation, ``shift`` the ``(dy, dx)`` of b relative to a in
    pixels of the comparison thumbnail (at most 96 px side). ``where_a``/``where_b`` name the split part or
    cohort of each image where that matters.
    """

    index_a: int
    index_b: int
    path_a: Path
    path_b: Path
    hash_distance: int
    similarity: float
    shift: tuple[int, int]
    label_a: str = ""
    label_b: str = ""
    where_a: str = ""
    where_b: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path_a"], d["path_b"] = str(self.path_a), str(self.path_b)
        d["shift"] = list(self.shift)
        d["similarity"] = round(self.similarity, 4)
        return d


def _check_thresholds(candidate_distance: int, min_similarity: float) -> None:
    if not 0 <= candidate_distance <= HASH_BITS:
        raise ConfigError(f"candidate distance must be in 0..{HASH_BITS}, got {candidate_distance}")
    if not -1.0 <= min_similarity <= 1.0:
        raise ConfigError(f"min_similarity must be in [-1, 1], got {min_similarity}")


def compare_hashes(
    a: ImageHashes,
    b: ImageHashes | None = None,
    candidate_distance: int | None = None,
    min_similarity: float | None = None,
) -> list[tuple[int, int, int, float, tuple[int, int]]]:
    """Confirmed duplicate pairs ``(i, j, hash_distance, similarity, shift)``.

    Within ``a`` (``b=None``, pairs ``i < j``) or between ``a`` and ``b``. Sorted by
    similarity, highest first.
    """
    cand_d = CANDIDATE_DISTANCE if candidate_distance is None else int(candidate_distance)
    min_sim = MIN_SIMILARITY if min_similarity is None else float(min_similarity)
    _check_thresholds(cand_d, min_sim)
    other = a if b is None else b
    candidates = hamming_candidates(a.bits, None if b is None else b.bits, cand_d)
    aligner = _Aligner()
    out = []
    for i, j, dist in candidates:
        if not (a.valid[i] and other.valid[j]):
            continue
        side = comparison_side(a.thumbs[i], other.thumbs[j])
        sim, shift = aligner.compare(
            (0, i), a.thumbs[i], (0 if b is None else 1, j), other.thumbs[j], side
        )
        if sim >= min_sim:
            out.append((i, j, dist, sim, shift))
    out.sort(key=lambda t: (-t[3], t[0], t[1]))
    return out


def _pairs(
    ca: Cohort,
    cb: Cohort,
    found: list[tuple[int, int, int, float, tuple[int, int]]],
    where=("", ""),
) -> list[DuplicatePair]:
    return [
        DuplicatePair(
            i,
            j,
            ca.records[i].path,
            cb.records[j].path,
            d,
            s,
            sh,
            ca.class_names[ca.records[i].label],
            cb.class_names[cb.records[j].label],
            where[0],
            where[1],
        )
        for i, j, d, s, sh in found
    ]


def find_duplicate_pairs(
    cohort: Cohort,
    threshold: int | None = None,
    min_similarity: float | None = None,
    hashes: ImageHashes | None = None,
) -> list[DuplicatePair]:
    """Near-duplicate pairs within ``cohort`` (``threshold``: candidate hash distance)."""
    h = hashes if hashes is not None else hash_images(cohort.paths)
    return _pairs(cohort, cohort, compare_hashes(h, None, threshold, min_similarity))


def find_split_leaks(
    cohort: Cohort,
    split: SplitParts,
    threshold: int | None = None,
    min_similarity: float | None = None,
    hashes: ImageHashes | None = None,
) -> list[DuplicatePair]:
    """Near-duplicate pairs of ``cohort`` whose two images lie in different parts of ``split``."""
    part_of: dict[int, str] = {}
    for part, idx in split.indices(cohort).items():
        for i in idx:
            part_of[i] = part
    h = hashes if hashes is not None else hash_images(cohort.paths)
    out = []
    for p in find_duplicate_pairs(cohort, threshold, min_similarity, h):
        pa, pb = part_of.get(p.index_a, ""), part_of.get(p.index_b, "")
        if pa and pb and pa != pb:
            out.append(
                DuplicatePair(
                    p.index_a,
                    p.index_b,
                    p.path_a,
                    p.path_b,
                    p.hash_distance,
                    p.similarity,
                    p.shift,
                    p.label_a,
                    p.label_b,
                    pa,
                    pb,
                )
            )
    return out


def find_cross_duplicates(
    cohort_a: Cohort,
    cohort_b: Cohort,
    threshold: int | None = None,
    min_similarity: float | None = None,
    hashes_a: ImageHashes | None = None,
    hashes_b: ImageHashes | None = None,
) -> list[DuplicatePair]:
    """Near-duplicate pairs with one image in ``cohort_a`` and one in ``cohort_b``."""
    ha = hashes_a if hashes_a is not None else hash_images(cohort_a.paths)
    hb = hashes_b if hashes_b is not None else hash_images(cohort_b.paths)
    found = compare_hashes(ha, hb, threshold, min_similarity)
    return _pairs(cohort_a, cohort_b, found, (str(cohort_a.root), str(cohort_b.root)))


@dataclass
class DedupReport:
    """Result of :func:`check_duplicates`.

    Attributes:
        settings: hash method and thresholds used.
        cohorts: per cohort: root, layout, number of images, unreadable files.
        within: duplicate pairs inside each cohort (keyed by cohort root).
        across_splits: duplicate pairs whose images are in different split parts.
        across_cohorts: duplicate pairs between cohorts (keyed ``"A <-> B"``).
    """

    settings: dict[str, Any]
    cohorts: list[dict[str, Any]]
    within: dict[str, list[DuplicatePair]] = field(default_factory=dict)
    across_splits: list[DuplicatePair] | None = None
    across_cohorts: dict[str, list[DuplicatePair]] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        """Number of pairs (and of images involved) per scope."""

        def images(pairs: list[DuplicatePair]) -> int:
            return len({p.path_a for p in pairs} | {p.path_b for p in pairs})

        return {
            "within": {k: {"pairs": len(v), "images": images(v)} for k, v in self.within.items()},
            "across_splits": None
            if self.across_splits is None
            else {"pairs": len(self.across_splits), "images": images(self.across_splits)},
            "across_cohorts": {
                k: {"pairs": len(v), "images": images(v)} for k, v in self.across_cohorts.items()
            },
        }

    @property
    def n_pairs(self) -> int:
        """All pairs found (within, across splits, across cohorts)."""
        total = sum(len(v) for v in self.within.values())
        total += sum(len(v) for v in self.across_cohorts.values())
        return total + len(self.across_splits or [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "cohorts": self.cohorts,
            "counts": self.counts(),
            "within": {k: [p.to_dict() for p in v] for k, v in self.within.items()},
            "across_splits": None
            if self.across_splits is None
            else [p.to_dict() for p in self.across_splits],
            "across_cohorts": {k: [p.to_dict() for p in v] for k, v in self.across_cohorts.items()},
        }

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON (atomic: temporary file, then rename)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    def summary(self, examples: int = 5) -> str:
        """Readable counts and up to ``examples`` example pairs per scope."""

        def block(title: str, pairs: list[DuplicatePair]) -> list[str]:
            n_img = len({p.path_a for p in pairs} | {p.path_b for p in pairs})
            lines = [f"{title}: {len(pairs)} pair(s), {n_img} image(s)"]
            for p in pairs[:examples]:
                where = f" [{p.where_a} / {p.where_b}]" if p.where_a or p.where_b else ""
                lines.append(
                    f"  {p.path_a}  ~  {p.path_b}  (hash distance {p.hash_distance}/{HASH_BITS}, "
                    f"similarity {p.similarity:.2f}, shift {p.shift}){where}"
                )
            if len(pairs) > examples:
                lines.append(f"  ... {len(pairs) - examples} more (see --json)")
            return lines

        lines: list[str] = []
        for c in self.cohorts:
            bad = f", {len(c['unreadable'])} unreadable (skipped)" if c["unreadable"] else ""
            lines.append(f"cohort {c['root']} ({c['layout']}): {c['n_images']} images{bad}")
        for root, pairs in self.within.items():
            lines += block(f"within {root}", pairs)
        if self.across_splits is not None:
            lines += block("across split parts", self.across_splits)
        for key, pairs in self.across_cohorts.items():
            lines += block(f"across cohorts {key}", pairs)
        return "\n".join(lines)


def check_duplicates(
    cohorts: Sequence[Cohort],
    split: SplitParts | None = None,
    split_cohort: int = 0,
    threshold: int | None = None,
    min_similarity: float | None = None,
) -> DedupReport:
    """Duplicates within each cohort, across ``split``'s parts, and between every two cohorts.

    Each cohort is hashed once. ``split`` (a :class:`~neurall_neuro.data.splits.Split`)
    applies to ``cohorts[split_cohort]``.
    """
    cand_d = CANDIDATE_DISTANCE if threshold is None else int(threshold)
    min_sim = MIN_SIMILARITY if min_similarity is None else float(min_similarity)
    _check_thresholds(cand_d, min_sim)
    hashes = [hash_images(c.paths, f"hashing {c.root.name}") for c in cohorts]
    report = DedupReport(
        settings={
            "hash": "imagehash.phash(8x8) + imagehash.dhash(8x8), 128 bits",
            "candidate_distance": cand_d,
            "confirmation": f"phase-correlation alignment + band-pass correlation of {THUMB_SIZE} px thumbnails",
            "min_similarity": min_sim,
        },
        cohorts=[
            {
                "root": str(c.root),
                "layout": c.layout,
                "n_images": len(c),
                "unreadable": [{"path": str(p), "reason": r} for p, r in h.failed],
            }
            for c, h in zip(cohorts, hashes, strict=True)
        ],
    )
    for c, h in zip(cohorts, hashes, strict=True):
        report.within[str(c.root)] = find_duplicate_pairs(c, cand_d, min_sim, h)
    if split is not None:
        c, h = cohorts[split_cohort], hashes[split_cohort]
        report.across_splits = find_split_leaks(c, split, cand_d, min_sim, h)
    for a in range(len(cohorts)):
        for b in range(a + 1, len(cohorts)):
            key = f"{cohorts[a].root} <-> {cohorts[b].root}"
            report.across_cohorts[key] = find_cross_duplicates(
                cohorts[a], cohorts[b], cand_d, min_sim, hashes[a], hashes[b]
            )
    return report

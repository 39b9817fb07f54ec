"""A generated cohort of single-cell blood-smear images for four ALL-like classes.

**These images are synthetic. They are procedurally rendered for software tests,
demos and benchmarks, and carry no clinical meaning whatsoever**: the class cues
are loosely inspired by textbook descriptions of hematogones and B-lymphoblasts,
not fitted to patient data, and a model's accuracy on them says nothing about
its accuracy on real smears.

What is rendered (Beer-Lambert absorption: ``image = illumination * exp(-OD)``,
where every structure adds its stain optical density OD per RGB channel):

* one white cell near the centre: a cytoplasm disc (blue, "basophilic") with a
  star-shaped contour and a purple nucleus inside it, off-centre, with a dark rim;
* **class cues**, all overlapping between classes (see :data:`CLASS_MORPHOLOGY`):
  cell size, nucleus-to-cytoplasm ratio, chromatin texture (scale, contrast and
  clumping: condensed and blotchy in ``Benign``, fine in the blast classes),
  nucleus stain density, visible nucleoli (pale spots, most in ``Pro``), nuclear
  contour irregularity and clefts, cytoplasm tint (basophilia) and vacuoles;
* **nuisance variation**: stain hue/intensity (per-channel optical-density gains),
  background tint, illumination gradient and vignetting, Gaussian blur, sensor
  noise, up to 8 neighbouring red cells with central pallor, a few platelets, and
  the cell's position and orientation.

Cells belong to synthetic *patients* (one class per patient). A patient shares
the nuisance parameters (stain gains, background tint, illumination strength,
blur, noise, red-cell density; each image adds a smaller jitter of its own) and
a patient-level offset of every morphological parameter, so images of one
patient look alike and splits must be made by patient (the manifest carries
``patient_id``). The per-image share of the stain variation was raised during
tuning: with stain mostly per patient, a CNN trained on 6 patients per class
learned the patients' colours instead of the morphology (test accuracy ~0.7).

Difficulty: ``difficulty`` scales every within-class spread (cell-level and
patient-level standard deviations) and pulls the class-dependent rates
(nucleoli, clefts, vacuoles) towards their pooled mean by ``1 / difficulty``.
The default ``"realistic"`` (1.0) was tuned by measurement with
``benchmarks/cohort_difficulty.py``: a small plain CNN trained for a few CPU
minutes on 200 images per class at 64 px reaches 0.89-0.96 test accuracy on a
patient-level split (mean 0.93 over 4 seeds; details in that script's docstring).
Early Pre-B is the hardest class. ``"easy"`` (0.5) and ``"hard"`` (1.6) are
not separately calibrated.

Output (:func:`generate_cohort`): ``out/<Class>/<patient>_<nnnn>.png`` for classes
``Benign, Early, Pre, Pro``, plus ``out/manifest.csv`` (``path,label,patient_id``)
and ``out/synth.json`` (the generator settings). The same arguments always give
byte-identical files (every image draws from its own ``numpy`` generator seeded
by ``(seed, class, patient, image)``; PNGs are written without timestamps).
Rendering is vectorised numpy plus OpenCV blurs: 800 images take about 5 s at
64 px and 18 s at 128 px on one (shared) core, PNG writing included.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neurall_neuro.data.layouts import CLASSES_4
from neurall_neuro.data.records import Cohort
from neurall_neuro.errors import ConfigError
from neurall_neuro.progress import track

#: Named difficulty levels (the factor applied to within-class spreads).
DIFFICULTY_LEVELS: dict[str, float] = {"easy": 0.5, "realistic": 1.0, "hard": 1.6}

#: Bumped whenever the rendering changes (so old cohorts can be told apart).
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Morphology:
    """Class-level mean of each morphological cue (lengths are fractions of the image side)."""

    cell_radius: float  # radius of the cell
    nc_ratio: float  # nucleus radius / cell radius
    chromatin_scale: float  # correlation length of the chromatin texture
    chromatin_contrast: float  # relative amplitude of the chromatin texture
    clumping: float  # 0 = fine/dispersed, 1 = condensed blotches
    nucleus_density: float  # optical-density factor of the nucleus stain
    irregularity: float  # amplitude of the nuclear contour harmonics
    basophilia: float  # blue optical density of the cytoplasm
    nucleoli: float  # mean number of visible nucleoli (Poisson)
    cleft_prob: float  # probability of a nuclear cleft/indentation
    vacuole_prob: float  # probability of cytoplasmic vacuoles


#: Class means of the morphological cues (order of :data:`CLASSES_4`).
CLASS_MORPHOLOGY: dict[str, Morphology] = {
    "Benign": Morphology(0.160, 0.90, 0.034, 0.60, 0.85, 1.28, 0.015, 0.38, 0.05, 0.02, 0.00),
    "Early": Morphology(0.200, 0.84, 0.018, 0.28, 0.25, 0.98, 0.030, 0.55, 0.50, 0.08, 0.05),
    "Pre": Morphology(0.240, 0.76, 0.021, 0.24, 0.15, 0.95, 0.050, 0.75, 1.30, 0.20, 0.15),
    "Pro": Morphology(0.280, 0.66, 0.024, 0.20, 0.10, 0.88, 0.090, 0.60, 2.40, 0.60, 0.25),
}

#: Within-class standard deviations of the continuous cues: (per cell, per patient).
MORPHOLOGY_SPREAD: dict[str, tuple[float, float]] = {
    "cell_radius": (0.012, 0.004),
    "nc_ratio": (0.022, 0.008),
    "chromatin_scale": (0.003, 0.0015),
    "chromatin_contrast": (0.04, 0.015),
    "clumping": (0.10, 0.03),
    "nucleus_density": (0.07, 0.02),
    "irregularity": (0.012, 0.004),
    "basophilia": (0.08, 0.03),
}

# Stain optical densities per RGB channel (before per-patient gains).
_OD_NUCLEUS = np.array([0.80, 1.05, 0.40], np.float32)  # purple
_OD_CYTOPLASM = np.array([0.55, 0.30, 0.10], np.float32)  # blue (times basophilia)
_OD_RBC = np.array([0.10, 0.42, 0.30], np.float32)  # pink-red
_OD_PLATELET = np.array([0.50, 0.70, 0.25], np.float32)
_OD_PLASMA = np.array([0.02, 0.05, 0.03], np.float32)


def resolve_difficulty(difficulty: str | float) -> float:
    """The spread factor for a level name or a number (> 0)."""
    if isinstance(difficulty, str):
        if difficulty not in DIFFICULTY_LEVELS:
            raise ConfigError(
                f"unknown difficulty {difficulty!r}; valid: {', '.join(DIFFICULTY_LEVELS)} "
                "or a positive number"
            )
        return DIFFICULTY_LEVELS[difficulty]
    value = float(difficulty)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"difficulty must be a positive number, got {difficulty!r}")
    return value


@dataclass(frozen=True)
class Patient:
    """Nuisance parameters and morphology offsets shared by one synthetic patient's cells."""

    patient_id: str
    class_name: str
    morph_offset: dict[str, float]
    od_gain: tuple[float, float, float]  # per-channel stain gain (hue/intensity)
    intensity: float
    background: tuple[float, float, float]
    gradient: tuple[float, float]
    vignette: float
    blur: float  # Gaussian sigma, fraction of the image side
    noise: float
    rbc_rate: float


def _make_patient(rng: np.random.Generator, class_name: str, pid: str, spread: float) -> Patient:
    offset = {
        k: float(rng.normal(0.0, sd_p * spread)) for k, (_, sd_p) in MORPHOLOGY_SPREAD.items()
    }
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.14)
    return Patient(
        patient_id=pid,
        class_name=class_name,
        morph_offset=offset,
        od_gain=tuple(float(g) for g in np.exp(rng.normal(0.0, 0.04, 3))),  # type: ignore[arg-type]
        intensity=float(np.exp(rng.normal(0.0, 0.08))),
        background=tuple(float(b) for b in rng.uniform(0.9, 1.0) * rng.uniform(0.97, 1.0, 3)),  # type: ignore[arg-type]
        gradient=(float(strength * np.cos(angle)), float(strength * np.sin(angle))),
        vignette=float(rng.uniform(0.0, 0.12)),
        blur=float(rng.uniform(0.003, 0.010)),
        noise=float(rng.uniform(0.004, 0.022)),
        rbc_rate=float(rng.uniform(2.5, 7.0)),
    )


def _noise_field(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-filtered white noise of shape (size, size)."""
    import cv2

    white = rng.standard_normal((size, size)).astype(np.float32)
    field = cv2.GaussianBlur(white, (0, 0), max(sigma_px, 0.3), borderType=cv2.BORDER_REFLECT)
    return (field - field.mean()) / (field.std() + 1e-6)


def _soft_inside(signed: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance (positive inside), edge ~``width`` px."""
    return 0.5 * (1.0 + np.tanh(signed / width))


def _contour_radius(
    theta: np.ndarray, radius: float, amps: np.ndarray, phases: np.ndarray
) -> np.ndarray:
    """Star-shaped contour ``r(theta) = radius * (1 + sum_k a_k cos(k theta + phi_k))``, k = 2.."""
    r = np.ones_like(theta)
    for k, (a, ph) in enumerate(zip(amps, phases, strict=True), start=2):
        r += a * np.cos(k * theta + ph)
    return radius * r


def _render_cell(
    rng: np.random.Generator, size: int, patient: Patient, spread: float, pooled: Morphology
) -> np.ndarray:
    """Render one image as float32 (size, size, 3) in [0, 1]."""
    import cv2

    s = float(size)
    px = 1.0  # anti-aliasing width in pixels
    mean = CLASS_MORPHOLOGY[patient.class_name]

    def cue(name: str, lo: float, hi: float) -> float:
        sd_cell, _ = MORPHOLOGY_SPREAD[name]
        value = getattr(mean, name) + patient.morph_offset[name] + rng.normal(0.0, sd_cell * spread)
        return float(np.clip(value, lo, hi))

    def rate(name: str) -> float:
        shrink = min(1.0, 1.0 / spread)
        p = getattr(pooled, name) + (getattr(mean, name) - getattr(pooled, name)) * shrink
        return float(p)

    cell_r = cue("cell_radius", 0.12, 0.36) * s
    nc = cue("nc_ratio", 0.55, 0.93)
    chrom_scale = cue("chromatin_scale", 0.008, 0.06) * s
    chrom_contrast = cue("chromatin_contrast", 0.05, 0.8)
    clumping = cue("clumping", 0.0, 1.0)
    nuc_density = cue("nucleus_density", 0.6, 1.6)
    irregular = cue("irregularity", 0.0, 0.16)
    basophilia = cue("basophilia", 0.1, 1.1)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy += 0.5
    xx += 0.5
    # Stain: the patient's gains with a smaller per-image jitter (slide-to-field variation).
    gain = np.asarray(patient.od_gain, np.float32) * patient.intensity
    gain = (
        gain
        * np.exp(rng.normal(0.0, 0.05, 3)).astype(np.float32)
        * float(np.exp(rng.normal(0.0, 0.06)))
    )

    # --- background: plasma, red cells, platelets -------------------------------
    od = np.broadcast_to(_OD_PLASMA * gain, (size, size, 3)).copy()
    od *= (1.0 + 0.5 * _noise_field(rng, size, 0.15 * s))[:, :, None]
    cx = s / 2 + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1)) * s
    cy = s / 2 + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1)) * s
    n_rbc = int(min(8, rng.poisson(patient.rbc_rate)))
    for _ in range(n_rbc):
        rr = float(rng.uniform(0.10, 0.14)) * s
        for _try in range(8):  # keep red cells mostly clear of the white cell
            x0, y0 = rng.uniform(-0.1, 1.1, 2) * s
            if math.hypot(x0 - cx, y0 - cy) > cell_r + 0.6 * rr:
                break
        rho = np.hypot(xx - x0, yy - y0)
        ecc = 1.0 + 0.08 * np.cos(2 * np.arctan2(yy - y0, xx - x0) + rng.uniform(0, np.pi))
        disc = _soft_inside(rr * ecc - rho, px)
        pallor = 1.0 - rng.uniform(0.35, 0.6) * np.exp(-((rho / (0.5 * rr)) ** 2))
        od += (disc * pallor)[:, :, None] * (_OD_RBC * gain * rng.uniform(0.85, 1.15))
    for _ in range(int(rng.poisson(1.0))):
        x0, y0 = rng.uniform(0.0, 1.0, 2) * s
        pr = float(rng.uniform(0.012, 0.025)) * s
        blob = _soft_inside(pr - np.hypot(xx - x0, yy - y0), px)
        od += blob[:, :, None] * (_OD_PLATELET * gain)

    # --- the white cell ---------------------------------------------------------
    dx, dy = xx - cx, yy - cy
    rho = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    cell_amps = rng.normal(0.0, 0.02, 3)
    cell_edge = _contour_radius(theta, cell_r, cell_amps, rng.uniform(0, 2 * np.pi, 3))
    cell_mask = _soft_inside(cell_edge - rho, px)

    nuc_r = nc * cell_r
    room = max(cell_r - nuc_r, 0.0)
    off_angle = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0.2, 0.8) * room
    ncx, ncy = cx + off * math.cos(off_angle), cy + off * math.sin(off_angle)
    ndx, ndy = xx - ncx, yy - ncy
    nrho = np.hypot(ndx, ndy)
    ntheta = np.arctan2(ndy, ndx)
    amps = rng.normal(0.0, irregular, 4) * np.array([1.0, 0.8, 0.6, 0.5])
    nuc_edge = _contour_radius(ntheta, nuc_r, amps, rng.uniform(0, 2 * np.pi, 4))
    if rng.random() < rate("cleft_prob"):  # an indentation of the nuclear contour
        phi = rng.uniform(-np.pi, np.pi)
        width = rng.uniform(0.18, 0.35)
        dphi = np.angle(np.exp(1j * (ntheta - phi)))
        nuc_edge = nuc_edge * (1.0 - rng.uniform(0.15, 0.35) * np.exp(-((dphi / width) ** 2)))
    nuc_edge = np.minimum(nuc_edge, cell_edge - 0.6)  # the nucleus stays inside the cell
    nuc_mask = _soft_inside(nuc_edge - nrho, px)

    # Cytoplasm: blue, slightly mottled, optional pale vacuoles.
    cyto = basophilia * (1.0 + 0.12 * _noise_field(rng, size, 0.03 * s))
    if rng.random() < rate("vacuole_prob"):
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(0, 2 * np.pi)
            d = nuc_r + rng.uniform(0.25, 0.75) * max(cell_r - nuc_r, 1.0)
            vx, vy = cx + d * math.cos(a), cy + d * math.sin(a)
            vr = rng.uniform(0.02, 0.035) * s
            cyto = cyto * (1.0 - 0.75 * _soft_inside(vr - np.hypot(xx - vx, yy - vy), px))
    od += (cell_mask * (1.0 - nuc_mask) * cyto)[:, :, None] * (_OD_CYTOPLASM * gain)

    # Nucleus: chromatin texture (fine vs clumped), rim, pale nucleoli.
    t = _noise_field(rng, size, chrom_scale)
    texture = (1.0 - clumping) * t + clumping * np.tanh(2.5 * t) * 1.3
    nuc = nuc_density * np.clip(1.0 + chrom_contrast * texture, 0.25, None)
    nuc = nuc + 0.25 * np.exp(-(((nuc_edge - nrho) / (0.02 * s + 0.5)) ** 2))
    for _ in range(int(min(4, rng.poisson(rate("nucleoli"))))):
        a = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(0.0, 0.55) * nuc_r
        ux, uy = ncx + d * math.cos(a), ncy + d * math.sin(a)
        ur = rng.uniform(0.13, 0.22) * nuc_r
        nuc = nuc * (
            1.0 - rng.uniform(0.45, 0.7) * _soft_inside(ur - np.hypot(xx - ux, yy - uy), px)
        )
    od += (nuc_mask * nuc)[:, :, None] * (_OD_NUCLEUS * gain)

    # --- illumination, blur, noise ----------------------------------------------
    u, v = xx / s - 0.5, yy / s - 0.5
    strength = math.hypot(*patient.gradient)  # the patient's gradient strength, any direction
    angle = rng.uniform(0, 2 * np.pi)
    illum = 1.0 + 2 * strength * (math.cos(angle) * u + math.sin(angle) * v)
    illum = illum * (1.0 - patient.vignette * (u * u + v * v) * 2)
    background = np.asarray(patient.background, np.float32) * rng.uniform(0.98, 1.02, 3)
    img = illum[:, :, None] * background.astype(np.float32) * np.exp(-od)
    img = img.astype(np.float32)
    sigma = patient.blur * s * float(rng.uniform(0.7, 1.4))
    img = cv2.GaussianBlur(img, (0, 0), max(sigma, 0.3), borderType=cv2.BORDER_REFLECT)
    noise = patient.noise * float(rng.uniform(0.7, 1.4))
    img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def render_image(
    seed: int,
    class_name: str,
    patient_index: int,
    image_index: int,
    size: int = 64,
    difficulty: str | float = "realistic",
) -> np.ndarray:
    """One generated image as uint8 ``(size, size, 3)``, exactly as :func:`generate_cohort` writes it."""
    spread = resolve_difficulty(difficulty)
    label = CLASSES_4.index(class_name)
    patient = _patient(seed, label, patient_index, spread)
    rng = np.random.default_rng([int(seed), label, int(patient_index), int(image_index)])
    img = _render_cell(rng, int(size), patient, spread, _pooled())
    return (img * 255.0 + 0.5).astype(np.uint8)


def _pooled() -> Morphology:
    values = [asdict(m) for m in CLASS_MORPHOLOGY.values()]
    return Morphology(**{k: float(np.mean([v[k] for v in values])) for k in values[0]})


def patient_id(class_name: str, patient_index: int) -> str:
    """Id of a generated patient, e.g. ``benign-p03`` (unique across classes)."""
    return f"{class_name.lower()}-p{patient_index:02d}"


def _patient(seed: int, label: int, patient_index: int, spread: float) -> Patient:
    rng = np.random.default_rng([int(seed), label, int(patient_index), 1_000_003])
    name = CLASSES_4[label]
    return _make_patient(rng, name, patient_id(name, patient_index), spread)


def generate_cohort(
    out_dir: str | os.PathLike[str],
    n_per_class: int = 200,
    size: int = 64,
    seed: int = 0,
    n_patients_per_class: int = 8,
    difficulty: str | float = "realistic",
    overwrite: bool = False,
) -> Cohort:
    """Write a generated 4-class cohort (see the module docstring) and return it.

    Args:
        out_dir: output folder (created). It must be empty or absent unless
            ``overwrite`` is true and it holds a previous generated cohort (its
            ``synth.json``): then that cohort's class folders, manifest and settings
            file are deleted first. Other non-empty folders are never touched.
        n_per_class: images per class (spread evenly over the patients).
        size: image side in pixels (>= 16).
        seed: generation seed; the same arguments give byte-identical files.
        n_patients_per_class: synthetic patients per class (at most ``n_per_class``
            are used).
        difficulty: ``"easy"``, ``"realistic"``, ``"hard"`` or a positive factor.

    Returns:
        The cohort, loaded through its manifest (layout ``manifest``, patient ids set).
    """
    from PIL import Image

    from neurall_neuro.data.layouts import load_cohort

    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ConfigError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    if not isinstance(size, int) or size < 16:
        raise ConfigError(f"size must be an integer >= 16, got {size!r}")
    if not isinstance(n_patients_per_class, int) or n_patients_per_class < 1:
        raise ConfigError(
            f"n_patients_per_class must be a positive integer, got {n_patients_per_class!r}"
        )
    n_patients_per_class = min(n_patients_per_class, n_per_class)
    spread = resolve_difficulty(difficulty)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output folder {out} is not empty; choose another folder or pass overwrite=True "
                "(CLI: --overwrite)"
            )
        if not (out / "synth.json").is_file():
            raise ConfigError(
                f"output folder {out} is not empty and holds no generated cohort (no synth.json); "
                "refusing to delete anything there, choose another folder"
            )
        for name in CLASSES_4:
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("manifest.csv", "synth.json"):
            (out / name).unlink(missing_ok=True)
    pooled = _pooled()
    rows: list[tuple[str, str, str]] = []
    jobs = []
    for label, name in enumerate(CLASSES_4):
        (out / name).mkdir(parents=True, exist_ok=True)
        patients = [_patient(seed, label, k, spread) for k in range(n_patients_per_class)]
        for i in range(n_per_class):
            jobs.append((label, name, patients[i % n_patients_per_class], i))
    for label, name, patient, i in track(jobs, "generating images"):
        k = int(patient.patient_id.rsplit("-p", 1)[1])
        rng = np.random.default_rng([int(seed), label, k, i])
        img = _render_cell(rng, size, patient, spread, pooled)
        pixels = (img * 255.0 + 0.5).astype(np.uint8)
        rel = f"{name}/{patient.patient_id}_{i:04d}.png"
        Image.fromarray(pixels).save(out / rel, format="PNG", compress_level=6)
        rows.append((rel, name, patient.patient_id))
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "label", "patient_id"])
        writer.writerows(rows)
    settings = {
        "generator": "neurall_neuro.data.synth",
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "note": "procedurally generated images with no clinical meaning",
        "n_per_class": n_per_class,
        "size": size,
        "seed": seed,
        "n_patients_per_class": n_patients_per_class,
        "difficulty": difficulty,
        "spread": spread,
        "class_names": list(CLASSES_4),
    }
    (out / "synth.json").write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    return load_cohort(out, "manifest")

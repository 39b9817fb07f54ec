"""Dataset folder layouts: detection and loading into a :class:`Cohort`.

Each supported layout is a small object with ``name``, ``description`` (the
expected structure, one line), ``priority``, ``detect(root) -> bool`` and
``load(root) -> Cohort``, registered in :data:`LAYOUTS`. :func:`detect_layout`
tries them in ascending ``priority`` and returns the first that matches.

Detection rules (``root`` is the folder the user names):

* ``aria`` -- ALL image dataset (Aria, Ghaderzadeh et al.): ``root/Original/`` with
  class folders among ``Benign, Early, Pre, Pro`` (at least two), or ``root`` is that
  ``Original`` folder itself (by its name, or by ``WBC-*`` file names). A
  ``Segmented/`` folder beside ``Original/`` is ignored; load it by naming the layout
  ``aria-segmented`` (or by pointing at the ``Segmented`` folder itself).
* ``kaggle-blood-cells`` -- Kaggle "Blood Cells Cancer (ALL)": ``root`` or
  ``root/Blood cell Cancer [ALL]/`` holds class folders ``Benign``,
  ``[Malignant] early Pre-B``, ``[Malignant] Pre-B``, ``[Malignant] Pro-B`` (at least
  one ``[Malignant] ...`` folder is required to tell it apart from ``imagefolder``).
* ``cnmc`` -- C-NMC 2019: ``root`` or ``root/training_data/`` holds ``fold_<k>/``
  folders with ``all/`` and/or ``hem/`` inside (or ``root`` is one fold). Patient ids
  come from ``UID_<subject>_<img>_<cell>_all.bmp`` (subject ``<subject>``) and
  ``UID_H<subject>_..._hem.bmp`` (subject ``H<subject>``).
* ``all-idb1`` / ``all-idb2`` -- ALL-IDB: ``root`` (or ``root/im`` resp. ``root/img``)
  holds files ``ImNNN_Y.jpg`` (IDB1) resp. ``ImNNN_Y.tif`` (IDB2), ``Y`` = 1 for ALL,
  0 for healthy; at least two such files and no class sub-folders.
* ``manifest`` -- ``root/manifest.csv`` (or ``root`` is a ``.csv`` file) with a header
  ``path,label[,patient_id]``; paths are relative to the CSV's folder (absolute paths
  are allowed); labels are class names, or integers ``0..K-1``.
* ``imagefolder`` -- generic: at least two sub-folders, at least one holding images;
  each sub-folder is a class. Lowest priority.

Class names: 4-class ALL sets use :data:`CLASSES_4` ``("Benign", "Early", "Pre",
"Pro")`` (Benign = hematogones) and 2-class sets use :data:`CLASSES_2`
``("Normal", "ALL")``. ``imagefolder`` and ``manifest`` use the canonical names (in
canonical order) when every source name maps onto one canonical set (e.g. folders
``benign/early/pre/pro``), keeping only the classes present; otherwise the source
names, sorted.

Images are files with an extension in :data:`~neurall_neuro.data.imageio.IMAGE_EXTENSIONS`
(found recursively inside class folders, hidden files skipped); other files are
ignored. Records are sorted by class, then path.

Empty classes: a class folder without images (or a missing one for the fixed
layouts) gives a :class:`DataWarning` naming the folder and the class stays in
``class_names`` with zero images, so label indices stay fixed. If no class has any
image, loading raises :class:`~neurall_neuro.errors.DataError` naming the folder.
"""

from __future__ import annotations

import csv
import re
import shlex
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from neurall_neuro.data.imageio import is_image_name
from neurall_neuro.data.records import Cohort, DataWarning, ImageRecord
from neurall_neuro.data.scan import BAD_IMAGE_POLICIES, check_cohort_images
from neurall_neuro.errors import ConfigError, DataError, UnknownLayoutError
from neurall_neuro.registry import Registry

#: Canonical class names of 4-class ALL subtype datasets (Benign = hematogones).
CLASSES_4: tuple[str, ...] = ("Benign", "Early", "Pre", "Pro")
#: Canonical class names of 2-class datasets (C-NMC: hem/all; ALL-IDB: 0/1).
CLASSES_2: tuple[str, ...] = ("Normal", "ALL")

# Normalised source spelling -> canonical name. Normalisation (see `normalize_class_name`)
# lower-cases, drops a bracketed prefix like "[Malignant]" and turns -_ into spaces.
_SYNONYMS: dict[str, str] = {
    "benign": "Benign",
    "hematogone": "Benign",
    "hematogones": "Benign",
    "early": "Early",
    "early pre b": "Early",
    "early preb": "Early",
    "pre": "Pre",
    "pre b": "Pre",
    "preb": "Pre",
    "pro": "Pro",
    "pro b": "Pro",
    "prob": "Pro",
    "normal": "Normal",
    "hem": "Normal",
    "healthy": "Normal",
    "all": "ALL",
    "leukemia": "ALL",
    "leukaemia": "ALL",
    "blast": "ALL",
}


def normalize_class_name(name: str) -> str:
    """Lower-case, drop a leading ``[...]`` tag, map ``-``/``_`` to spaces, squeeze spaces.

    >>> normalize_class_name("[Malignant] early Pre-B")
    'early pre b'
    """
    s = re.sub(r"^\s*\[[^\]]*\]\s*", "", name.strip().lower())
    s = re.sub(r"[-_\s]+", " ", s)
    return s.strip()


def canonical_class_name(name: str) -> str | None:
    """The canonical class name for a source spelling, or ``None`` if unknown.

    >>> canonical_class_name("[Malignant] Pro-B"), canonical_class_name("hem")
    ('Pro', 'Normal')
    """
    return _SYNONYMS.get(normalize_class_name(name))


def canonical_set(names: Iterable[str]) -> tuple[str, ...] | None:
    """:data:`CLASSES_4` or :data:`CLASSES_2` if ``names`` map one-to-one into it, else None."""
    names = list(names)
    mapped = [canonical_class_name(n) for n in names]
    if not names or None in mapped or len(set(mapped)) != len(mapped):
        return None
    for target in (CLASSES_4, CLASSES_2):
        if set(mapped) <= set(target):
            return target
    return None


def _images_in(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted, hidden files and folders skipped)."""
    if not folder.is_dir():
        return []
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel):
            continue
        if is_image_name(p) and p.is_file():
            out.append(p)
    return sorted(out)


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _warn_empty(folder: Path, class_name: str, missing: bool = False) -> None:
    if missing:
        msg = f"{folder} has no folder for class {class_name!r}; the class will have 0 images"
    else:
        msg = f"class folder {folder} holds no images; class {class_name!r} will have 0 images"
    warnings.warn(msg, DataWarning, stacklevel=4)


def _finish(
    root: Path, layout: str, class_names: Sequence[str], records: list[ImageRecord]
) -> Cohort:
    if not records:
        raise DataError(
            f"{root}: no images found for layout {layout!r} (classes {list(class_names)})"
        )
    records.sort(key=lambda r: (r.label, str(r.path)))
    return Cohort(root=root, layout=layout, class_names=tuple(class_names), records=records)


def _load_class_folders(
    root: Path,
    layout: str,
    class_names: Sequence[str],
    folders: dict[str, Path | None],
    patient_of: Callable[[Path], str | None] | None = None,
) -> Cohort:
    """Records from ``folders`` (class name -> folder or None when missing)."""
    records: list[ImageRecord] = []
    for label, name in enumerate(class_names):
        folder = folders.get(name)
        if folder is None:
            _warn_empty(root, name, missing=True)
            continue
        files = _images_in(folder)
        if not files:
            _warn_empty(folder, name)
        for f in files:
            pid = patient_of(f) if patient_of else None
            records.append(ImageRecord(f, label, pid, folder.name))
    return _finish(root, layout, class_names, records)


@dataclass(frozen=True)
class Layout:
    """Base of the layouts: ``name``, one-line ``description``, detection ``priority``."""

    name: str
    description: str
    priority: int

    def detect(self, root: Path) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def load(self, root: Path) -> Cohort:  # pragma: no cover - overridden
        raise NotImplementedError


# ----------------------------------------------------------------------------- aria
@dataclass(frozen=True)
class AriaLayout(Layout):
    """ALL image dataset: ``Original/{Benign,Early,Pre,Pro}`` (or ``Segmented/``)."""

    part: str = "Original"

    def _class_root(self, root: Path) -> Path | None:
        if (root / self.part).is_dir():
            candidate = root / self.part
        elif root.name.lower() == self.part.lower() or (
            self.part == "Original"
            and root.name.lower() != "segmented"
            and any(
                f.name.startswith("WBC-")
                for d in _subdirs(root)
                for f in d.iterdir()
                if f.is_file()
            )
        ):
            candidate = root
        else:
            return None
        present = {d.name for d in _subdirs(candidate)}
        return candidate if len(present & set(CLASSES_4)) >= 2 else None

    def detect(self, root: Path) -> bool:
        return self._class_root(root) is not None

    def load(self, root: Path) -> Cohort:
        base = self._class_root(root)
        if base is None:
            raise DataError(
                f"{root} is not an ALL image dataset folder: expected {self.part}/ with class "
                f"folders {', '.join(CLASSES_4)}"
            )
        folders = {c: (base / c if (base / c).is_dir() else None) for c in CLASSES_4}
        return _load_class_folders(root, self.name, CLASSES_4, folders)


# ------------------------------------------------------------- kaggle blood cells
KAGGLE_TOP = "Blood cell Cancer [ALL]"


@dataclass(frozen=True)
class KaggleBloodCellsLayout(Layout):
    """Kaggle Blood Cells Cancer (ALL): ``Blood cell Cancer [ALL]/{Benign, [Malignant] ...}``."""

    def _class_root(self, root: Path) -> Path | None:
        base = root / KAGGLE_TOP if (root / KAGGLE_TOP).is_dir() else root
        names = [d.name for d in _subdirs(base)]
        if not any(n.lower().startswith("[malignant]") for n in names):
            return None
        mapped = {canonical_class_name(n) for n in names} - {None}
        return base if len(mapped & set(CLASSES_4)) >= 2 else None

    def detect(self, root: Path) -> bool:
        return self._class_root(root) is not None

    def load(self, root: Path) -> Cohort:
        base = self._class_root(root)
        if base is None:
            raise DataError(
                f"{root} is not a Kaggle Blood Cells Cancer (ALL) folder: expected "
                f"'{KAGGLE_TOP}/' with Benign and '[Malignant] ...' class folders"
            )
        folders: dict[str, Path | None] = dict.fromkeys(CLASSES_4)
        for d in _subdirs(base):
            c = canonical_class_name(d.name)
            if c in folders:
                folders[c] = d
        return _load_class_folders(root, self.name, CLASSES_4, folders)


# ----------------------------------------------------------------------------- cnmc
_CNMC_FOLD = re.compile(r"^fold_\d+$", re.IGNORECASE)
_CNMC_NAME = re.compile(r"^UID_(H?\d+)_", re.IGNORECASE)


def cnmc_patient_id(path: Path) -> str | None:
    """Subject id of a C-NMC file name: ``UID_11_3_2_all.bmp`` -> ``"11"``, ``UID_H4_...`` -> ``"H4"``."""
    m = _CNMC_NAME.match(path.name)
    return m.group(1).upper() if m else None


@dataclass(frozen=True)
class CnmcLayout(Layout):
    """C-NMC 2019: ``fold_{0,1,2}/{all,hem}/UID_*.bmp``."""

    def _folds(self, root: Path) -> list[Path]:
        for base in (root, root / "training_data"):
            folds = [d for d in _subdirs(base) if _CNMC_FOLD.match(d.name)]
            folds = [d for d in folds if (d / "all").is_dir() or (d / "hem").is_dir()]
            if folds:
                return folds
        if (root / "all").is_dir() and (root / "hem").is_dir():
            return [root]  # a single fold
        return []

    def detect(self, root: Path) -> bool:
        return bool(self._folds(root))

    def load(self, root: Path) -> Cohort:
        folds = self._folds(root)
        if not folds:
            raise DataError(
                f"{root} is not a C-NMC folder: expected fold_<k>/ folders with all/ and hem/"
            )
        records: list[ImageRecord] = []
        for label, sub in ((0, "hem"), (1, "all")):
            n_before = len(records)
            for fold in folds:
                for f in _images_in(fold / sub):
                    source = f"{fold.name}/{sub}" if fold != root else sub
                    records.append(ImageRecord(f, label, cnmc_patient_id(f), source))
            if len(records) == n_before:
                _warn_empty(folds[0] / sub, CLASSES_2[label])
        return _finish(root, self.name, CLASSES_2, records)


# -------------------------------------------------------------------------- all-idb
@dataclass(frozen=True)
class AllIdbLayout(Layout):
    """ALL-IDB1 / ALL-IDB2: files ``ImNNN_Y.<ext>`` with Y = 1 (ALL) or 0 (healthy)."""

    pattern: str = ""
    subfolder: str = ""

    def _files(self, root: Path) -> tuple[Path, list[Path]]:
        rx = re.compile(self.pattern, re.IGNORECASE)
        for base in (root, root / self.subfolder):
            if not base.is_dir():
                continue
            files = sorted(p for p in base.iterdir() if p.is_file() and rx.match(p.name))
            # In root itself, sub-folders would mean a class-folder layout instead.
            if len(files) >= 2 and (base != root or not _subdirs(base)):
                return base, files
        return root, []

    def detect(self, root: Path) -> bool:
        return bool(self._files(root)[1])

    def load(self, root: Path) -> Cohort:
        base, files = self._files(root)
        if not files:
            raise DataError(f"{root} is not an {self.name.upper()} folder: {self.description}")
        rx = re.compile(self.pattern, re.IGNORECASE)
        records = []
        for f in files:
            y = rx.match(f.name).group(1)  # type: ignore[union-attr]
            records.append(ImageRecord(f, int(y), None, y))
        for label, name in enumerate(CLASSES_2):
            if not any(r.label == label for r in records):
                _warn_empty(base, name)
        return _finish(root, self.name, CLASSES_2, records)


# ------------------------------------------------------------------------- manifest
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class ManifestLayout(Layout):
    """A CSV ``path,label[,patient_id]`` with paths relative to the CSV."""

    def _csv(self, root: Path) -> Path | None:
        if root.is_file() and root.suffix.lower() == ".csv":
            return root
        if (root / MANIFEST_NAME).is_file():
            return root / MANIFEST_NAME
        return None

    def detect(self, root: Path) -> bool:
        return self._csv(root) is not None

    def load(self, root: Path) -> Cohort:
        csv_path = self._csv(root)
        if csv_path is None:
            raise DataError(f"{root}: no {MANIFEST_NAME} found (columns path,label[,patient_id])")
        try:
            with csv_path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                columns = [c.strip() for c in (reader.fieldnames or [])]
                rows = [
                    {k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader
                ]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{csv_path}: cannot read manifest ({exc})") from None
        missing_cols = [c for c in ("path", "label") if c not in columns]
        if missing_cols:
            raise DataError(
                f"{csv_path}: manifest lacks column(s) {missing_cols}; found {columns}, "
                "expected path,label[,patient_id]"
            )
        rows = [r for r in rows if r.get("path")]
        if not rows:
            raise DataError(f"{csv_path}: manifest lists no images")
        unlabeled = [r["path"] for r in rows if not r.get("label")]
        if unlabeled:
            raise DataError(
                f"{csv_path}: {len(unlabeled)} row(s) have no label, e.g. {unlabeled[:3]}"
            )
        raw_labels = [r["label"] for r in rows]
        if all(re.fullmatch(r"\d+", lab) for lab in raw_labels):
            n = max(int(lab) for lab in raw_labels) + 1
            class_names: tuple[str, ...] = tuple(str(i) for i in range(n))
            label_of = {str(i): i for i in range(n)} | {lab: int(lab) for lab in raw_labels}
        else:
            distinct = sorted(set(raw_labels))
            canon = canonical_set(distinct)
            if canon is not None:
                present = {canonical_class_name(lab) for lab in distinct}
                class_names = tuple(c for c in canon if c in present)
                label_of = {lab: class_names.index(canonical_class_name(lab)) for lab in distinct}  # type: ignore[arg-type]
            else:
                class_names = tuple(distinct)
                label_of = {lab: i for i, lab in enumerate(distinct)}
        base = csv_path.parent
        records, missing = [], []
        for r in rows:
            p = Path(r["path"])
            p = p if p.is_absolute() else base / p
            if not p.exists():
                missing.append(r["path"])
                continue
            pid = r.get("patient_id") or None
            records.append(ImageRecord(p, label_of[r["label"]], pid, r["label"]))
        if missing:
            raise DataError(
                f"{csv_path}: {len(missing)} listed file(s) do not exist, e.g. {missing[:5]}"
            )
        return _finish(csv_path, self.name, class_names, records)


# ---------------------------------------------------------------------- imagefolder
@dataclass(frozen=True)
class ImageFolderLayout(Layout):
    """Generic class-per-folder tree: ``root/<class>/*.png``."""

    def detect(self, root: Path) -> bool:
        dirs = _subdirs(root)
        return len(dirs) >= 2 and any(_images_in(d) for d in dirs)

    def load(self, root: Path) -> Cohort:
        dirs = _subdirs(root)
        if len(dirs) < 2:
            raise DataError(f"{root}: an image folder needs at least two class sub-folders")
        names = [d.name for d in dirs]
        canon = canonical_set(names)
        if canon is not None:
            present = {canonical_class_name(n): d for n, d in zip(names, dirs, strict=True)}
            class_names = tuple(c for c in canon if c in present)
            folders: dict[str, Path | None] = {c: present[c] for c in class_names}
        else:
            class_names = tuple(names)
            folders = dict(zip(names, dirs, strict=True))
        return _load_class_folders(root, self.name, class_names, folders)


# ------------------------------------------------------------------------- registry
#: All dataset layouts by name.
LAYOUTS: Registry[Layout] = Registry("dataset layout")
for _layout in (
    AriaLayout(
        "aria",
        "ALL image dataset: Original/{Benign,Early,Pre,Pro}/*.jpg (root or the Original folder)",
        10,
    ),
    AriaLayout(
        "aria-segmented",
        "ALL image dataset, segmented part: Segmented/{Benign,Early,Pre,Pro}/ (only on request)",
        11,
        part="Segmented",
    ),
    KaggleBloodCellsLayout(
        "kaggle-blood-cells",
        "Blood cell Cancer [ALL]/{Benign,[Malignant] early Pre-B,[Malignant] Pre-B,[Malignant] Pro-B}/",
        20,
    ),
    CnmcLayout(
        "cnmc", "C-NMC 2019: fold_{0,1,2}/{all,hem}/UID_<subject>_<img>_<cell>_<all|hem>.bmp", 30
    ),
    AllIdbLayout(
        "all-idb1",
        "ALL-IDB1: ImNNN_Y.jpg (Y=1 ALL, 0 healthy) in the folder or im/",
        40,
        pattern=r"^Im\d+_([01])\.jpe?g$",
        subfolder="im",
    ),
    AllIdbLayout(
        "all-idb2",
        "ALL-IDB2: ImNNN_Y.tif (Y=1 ALL, 0 healthy) in the folder or img/",
        41,
        pattern=r"^Im\d+_([01])\.tiff?$",
        subfolder="img",
    ),
    ManifestLayout(
        "manifest", "manifest.csv with columns path,label[,patient_id] (paths relative to it)", 50
    ),
    ImageFolderLayout(
        "imagefolder", "generic: one sub-folder of images per class (>= 2 folders)", 90
    ),
):
    LAYOUTS.register(_layout.name, _layout)


def list_layouts() -> list[Layout]:
    """All layouts in detection order (ascending priority)."""
    return sorted((LAYOUTS.get(n) for n in LAYOUTS.names()), key=lambda lay: lay.priority)


def _layouts_help() -> str:
    return "\n".join(f"  {lay.name:<20} {lay.description}" for lay in list_layouts())


def detect_layout(root: str | Path) -> str:
    """Name of the first layout (by priority) whose ``detect`` accepts ``root``.

    ``aria-segmented`` is only detected when ``root`` is the ``Segmented`` folder itself.

    Raises:
        DataError: ``root`` does not exist.
        UnknownLayoutError: no layout matches; the message lists every layout and its
            expected structure.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    for layout in list_layouts():
        if layout.detect(root):
            return layout.name
    raise UnknownLayoutError(
        f"{root} does not match any supported dataset layout. Supported layouts:\n"
        f"{_layouts_help()}\nName one explicitly with layout=... (CLI: --layout)."
    )


def load_cohort(root: str | Path, layout: str | None = None, bad_images: str = "keep") -> Cohort:
    """Load the dataset at ``root`` with ``layout`` (detected when ``None``).

    ``bad_images`` says what happens to files that cannot be decoded (truncated,
    corrupt, zero-byte, not an image; :data:`~neurall_neuro.data.scan.BAD_IMAGE_POLICIES`):
    ``"keep"`` (default) reads the structure only and decodes nothing; ``"skip"``
    decodes every image and leaves the unreadable ones out with one
    :class:`~neurall_neuro.data.records.BadImageWarning` listing them (the commands
    that work on a dataset folder use it); ``"error"`` raises instead.

    Raises:
        UnknownNameError: ``layout`` is not a registered layout name (lists them).
        UnknownLayoutError: detection found no layout.
        DataError: the folder does not have the structure of ``layout`` or holds no images.
        BadImageError: ``bad_images="error"`` and a file is unreadable, or ``"skip"`` and
            none is readable.
        ConfigError: ``bad_images`` is not a policy name.
    """
    root = Path(root).expanduser()
    if bad_images not in BAD_IMAGE_POLICIES:
        raise ConfigError(
            f"bad_images={bad_images!r} is invalid; valid options: {', '.join(BAD_IMAGE_POLICIES)}"
        )
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    name = layout or detect_layout(root)
    lay = LAYOUTS.get(name)
    if layout is not None and not lay.detect(root):
        raise DataError(f"{root} does not have the structure of layout {name!r}: {lay.description}")
    cohort = lay.load(root.resolve())
    command = f"neurall data scan {shlex.quote(str(root))}"
    if layout is not None:
        command += f" --layout {shlex.quote(name)}"
    return check_cohort_images(cohort, bad_images, scan_command=command, stacklevel=2)


def map_labels(
    cohort: Cohort,
    target_class_names: Sequence[str],
    mapping: dict[str, str] | None = None,
) -> Cohort:
    """Re-express ``cohort``'s labels as indices into ``target_class_names``.

    Each source class is matched by name: first through ``mapping`` (source name ->
    target name, e.g. ``{"Benign": "Normal"}`` to score a 4-class model on a
    2-class set), then case-insensitively, then through the canonical synonyms
    (``hem`` -> ``Normal``, ``[Malignant] Pro-B`` -> ``Pro``). Source classes without
    images are dropped silently if they cannot be mapped.

    Raises:
        DataError: a source class holding images matches no target class; the message
            lists both name sets.
    """
    target = tuple(target_class_names)
    lower = {t.lower(): i for i, t in enumerate(target)}
    canon = {canonical_class_name(t): i for i, t in enumerate(target) if canonical_class_name(t)}
    counts = cohort.counts()
    index_of: dict[int, int] = {}
    unmapped = []
    for i, name in enumerate(cohort.class_names):
        wanted = (mapping or {}).get(name, name)
        j = lower.get(wanted.lower())
        if j is None:
            j = canon.get(canonical_class_name(wanted))
        if j is None:
            if counts[name]:
                unmapped.append(name)
            continue
        index_of[i] = j
    if unmapped:
        raise DataError(
            f"cannot map classes {unmapped} of {cohort.root} onto {list(target)}; "
            f"source classes: {list(cohort.class_names)}, target classes: {list(target)} "
            "(pass mapping={source: target} to map them explicitly)"
        )
    records = [
        ImageRecord(r.path, index_of[r.label], r.patient_id, r.source_label)
        for r in cohort.records
        if r.label in index_of
    ]
    return Cohort(cohort.root, cohort.layout, target, records, list(cohort.skipped))

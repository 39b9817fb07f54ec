"""Training configuration: :class:`TrainConfig`, recipe files and ``--set key=value`` parsing.

A **recipe file** (``--config FILE.yaml``) is a YAML mapping whose keys are the fields
of :class:`TrainConfig` (dashes or underscores: ``batch-size`` = ``batch_size``);
``set`` is accepted as an alias of ``model_options`` and may be a mapping or a list
of ``key=value`` strings. Command-line flags override the file. A run's
``config.yaml`` is itself a recipe file: its ``resolved`` section (model config,
classes, split sizes, environment) is informational and ignored when read back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurall_neuro.data.stain import (
    DEFAULT_HED_SIGMA,
    MAX_HED_SIGMA,
    STAIN_AUGMENTS,
    STAIN_NORMS,
    check_choice,
)
from neurall_neuro.errors import ConfigError

SCHEDULERS: tuple[str, ...] = ("plateau", "cosine", "none")
#: Knowledge-distillation defaults (Hinton et al. 2015; see neurall_neuro.training.distillation).
DEFAULT_KD_TEMPERATURE = 4.0
DEFAULT_KD_ALPHA = 0.7
#: Keys of a run's config.yaml that are output, not input.
INFORMATIONAL_KEYS: tuple[str, ...] = ("resolved",)


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults are the project's training recipe.

    Data and split:
        model: registered model name (``neurall_neuro.models.registry.list_models()``).
        data: dataset folder or manifest (``load_cohort``); ``layout`` forces a layout.
        out: run directory (created; holds config, metrics, checkpoints, plots).
        split_file: reuse this split; otherwise a new patient-grouped, class-stratified
            split with ``val_fraction`` / ``test_fraction`` and ``seed`` is made (groups:
            patient ids, or near-duplicate clusters with ``group_duplicates``).
    Model and preprocessing:
        size: image side in pixels (model ``input_size`` and preprocessing size).
        timesteps: simulation steps (spiking models only).
        model_options: further model config overrides (``--set key=value``).
        clahe: CLAHE in preprocessing.
        stain_norm: ``none`` or ``macenko``: Macenko stain normalisation of every image,
            before resizing, onto a reference fitted on the training split and stored in
            the checkpoints (:mod:`neurall_neuro.data.stain`).
    Optimisation:
        Adam (``lr``, ``weight_decay``), ``batch_size``, up to ``epochs``; early stopping
        on validation loss after ``patience`` epochs without an improvement larger
        than ``min_delta`` (0 disables it; best weights are restored either way);
        ``scheduler`` ``plateau`` (ReduceLROnPlateau, ``lr_factor``, ``lr_patience``),
        ``cosine`` (to 0 over ``epochs``) or ``none``; ``class_balance`` weights the
        loss by inverse class frequency; ``augment`` enables training augmentation;
        ``stain_augment`` (``none``/``hed``) adds HED-space stain augmentation of the
        training images with ``sigma = stain_augment_strength`` (default 0.05; only with
        ``hed``; independent of ``augment``);
        ``amp`` mixed precision (``None``: on for CUDA, never on CPU);
        ``bn_recal_images``: before every validation, BatchNorm running statistics are
        recomputed from this many training images (fixed random subset, no
        augmentation; 0 keeps torch's moving averages; see
        :mod:`neurall_neuro.training.precise_bn`).
    Knowledge distillation (:mod:`neurall_neuro.training.distillation`):
        ``teacher``: a checkpoint whose softened scores the student also learns from
        (same classes and preprocessing; ``None``: plain training); the loss is
        ``(1 - kd_alpha) CE + kd_alpha T^2 KL(softmax(teacher/T) || softmax(student/T))``
        with ``T = kd_temperature`` (defaults 4 and 0.7; other values need a teacher).
    Execution:
        ``device`` (``auto``/``cpu``/``cuda``), ``seed``, ``deterministic``,
        ``num_workers`` (data loader processes; 0 = in the training process),
        ``threads`` (torch CPU threads; default: cores / local processes),
        ``time_limit_s`` (stop after the epoch that exceeds it), ``resume`` (continue
        from ``out/last.pt``), ``evaluate_test`` and ``bootstrap`` (test evaluation at
        the end), ``log`` (progress and one line per epoch on stderr).
    """

    model: str
    data: str | Path
    out: str | Path
    layout: str | None = None
    size: int | None = None
    timesteps: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    clahe: bool = False
    stain_norm: str = "none"
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 3
    patience: int = 5
    min_delta: float = 0.0
    class_balance: bool = True
    augment: bool = True
    stain_augment: str = "none"
    stain_augment_strength: float = DEFAULT_HED_SIGMA
    amp: bool | None = None
    bn_recal_images: int = 256
    teacher: str | Path | None = None
    kd_temperature: float = DEFAULT_KD_TEMPERATURE
    kd_alpha: float = DEFAULT_KD_ALPHA
    device: str = "auto"
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 0
    threads: int | None = None
    split_file: str | Path | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    group_duplicates: bool = False
    time_limit_s: float | None = None
    resume: bool = False
    evaluate_test: bool = True
    bootstrap: int = 1000
    log: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field and the valid range."""
        for name in ("epochs", "batch_size"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in (
            "lr_patience", "patience", "num_workers", "bootstrap", "seed", "bn_recal_images",
        ):  # fmt: skip
            _check_int(name, getattr(self, name), minimum=0)
        if self.size is not None:
            _check_int("size", self.size, minimum=8)
        if self.timesteps is not None:
            _check_int("timesteps", self.timesteps, minimum=1)
        if self.threads is not None:
            _check_int("threads", self.threads, minimum=1)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be a number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < float(self.lr_factor) < 1.0:
            raise ConfigError(f"lr_factor must be in (0, 1), got {self.lr_factor!r}")
        if float(self.min_delta) < 0:
            raise ConfigError(f"min_delta must be >= 0, got {self.min_delta!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"scheduler={self.scheduler!r} is invalid; valid options: {', '.join(SCHEDULERS)}"
            )
        if self.time_limit_s is not None and not float(self.time_limit_s) > 0:
            raise ConfigError(f"time_limit_s must be > 0, got {self.time_limit_s!r}")
        if not isinstance(self.model_options, Mapping):
            raise ConfigError(
                f"model_options must be a mapping of model config keys, got {self.model_options!r}"
            )
        self._validate_distillation()
        self._validate_stain()
        if self.device != "auto" and not str(self.device).startswith(("cpu", "cuda")):
            raise ConfigError(
                f"device={self.device!r} is invalid; valid options: auto, cpu, cuda[:N]"
            )

    def _validate_stain(self) -> None:
        check_choice("stain_norm", self.stain_norm, STAIN_NORMS)
        check_choice("stain_augment", self.stain_augment, STAIN_AUGMENTS)
        strength = self.stain_augment_strength
        if not (_is_number(strength) and 0.0 <= strength <= MAX_HED_SIGMA):
            raise ConfigError(
                f"stain_augment_strength must be a number in [0, {MAX_HED_SIGMA:g}], "
                f"got {strength!r}"
            )
        if self.stain_augment == "none" and strength != DEFAULT_HED_SIGMA:
            raise ConfigError(
                "stain_augment_strength applies only to stain augmentation; "
                "give --stain-augment hed too"
            )

    def _validate_distillation(self) -> None:
        temperature, alpha = self.kd_temperature, self.kd_alpha
        if not (_is_number(temperature) and math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"kd_temperature must be a number > 0, got {temperature!r}")
        if not (_is_number(alpha) and 0.0 <= alpha <= 1.0):
            raise ConfigError(f"kd_alpha must be a number in [0, 1], got {alpha!r}")
        if self.teacher is None:
            if temperature != DEFAULT_KD_TEMPERATURE or alpha != DEFAULT_KD_ALPHA:
                raise ConfigError(
                    "kd_temperature and kd_alpha apply only to knowledge distillation; "
                    "give the teacher checkpoint too (--teacher CKPT)"
                )
        elif not isinstance(self.teacher, (str, Path)) or str(self.teacher).strip() == "":
            raise ConfigError(
                f"teacher must be the path of a checkpoint file, got {self.teacher!r}"
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings) for YAML and checkpoint metadata."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a recipe mapping (see the module docstring); unknown keys raise."""
        return cls(**normalize_keys(values))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def normalize_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Recipe keys -> TrainConfig field names (``-`` -> ``_``, ``set`` -> ``model_options``).

    Informational keys (``resolved``) are dropped; unknown keys raise ConfigError.
    """
    known = set(field_names())
    out: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key in INFORMATIONAL_KEYS:
            continue
        if key == "set":
            key = "model_options"
            value = parse_set_items(value) if isinstance(value, list) else value
        if key not in known:
            raise ConfigError(
                f"unknown training option {raw_key!r}; valid options: {', '.join(sorted(known))}"
            )
        out[key] = value
    return out


def parse_set_items(items: Iterable[str]) -> dict[str, Any]:
    """``["timesteps=8", "se_mode=none", "channels=[8, 16]"]`` -> dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r} as YAML: {exc}") from None
    return out


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe file into normalised TrainConfig keys (not yet validated as a whole)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a training config must be a YAML mapping, got {type(data).__name__}"
        )
    return normalize_keys(data)

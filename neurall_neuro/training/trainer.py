"""``train(config)``: one training run, single-process or under ``torchrun`` (DDP).

A run directory holds::

    config.yaml        resolved configuration (a recipe file: reusable with --config)
    split.json         the train/val/test split
    metrics.csv        per epoch: train loss/acc, val loss/acc, lr, time
    best.pt            weights of the epoch with the lowest validation loss (+ hashes of
                       the training and validation images, see
                       neurall_neuro.evaluation.training_images)
    last.pt            weights after the last epoch + optimizer, scheduler, early-stopping,
                       AMP-scaler and RNG state (``--resume`` continues from it)
    curves.png         loss / accuracy / learning-rate curves
    test_metrics.json  evaluation of best.pt on the test split (and test/ with the
                       predictions and confusion matrix)

With a ``teacher`` (knowledge distillation, :mod:`neurall_neuro.training.distillation`)
the training loss adds the teacher's softened scores; config.yaml (``resolved``) and the
checkpoints' metadata (``distillation``) record the teacher's path and SHA-256, ``T`` and
``alpha``.

Reproducibility: the run is seeded, uses ``torch.use_deterministic_algorithms(True,
warn_only=True)``, and seeds every epoch from ``(seed, epoch, rank)``, so on CPU a run
resumed from ``last.pt`` ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from neurall_neuro import __version__
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.errors import CheckpointError, ConfigError
from neurall_neuro.models.checkpoint import read_checkpoint_dict, save_checkpoint
from neurall_neuro.models.registry import get_model, get_model_spec, model_config_dict
from neurall_neuro.models.summary import model_size
from neurall_neuro.training.class_weights import class_weights
from neurall_neuro.training.config import TrainConfig
from neurall_neuro.training.curves import plot_curves
from neurall_neuro.training.data import TrainingData, prepare_data
from neurall_neuro.training.distillation import Distiller, load_teacher
from neurall_neuro.training.distributed import (
    DistContext,
    ShardSampler,
    all_reduce_max,
    barrier,
    init_distributed,
    shutdown,
)
from neurall_neuro.training.early_stopping import EarlyStopping
from neurall_neuro.training.history import EpochRecord, read_history, write_history
from neurall_neuro.training.loop import EpochStats, run_epoch
from neurall_neuro.training.precise_bn import (
    batchnorm_layers,
    recalibrate_batchnorm,
    recalibration_loader,
)
from neurall_neuro.training.progress_bar import EpochProgress
from neurall_neuro.training.seeding import (
    configure_determinism,
    derive_seed,
    rng_state,
    seed_epoch,
    seed_everything,
    seed_worker,
    set_rng_state,
)

BEST = "best.pt"
LAST = "last.pt"
CONFIG = "config.yaml"
METRICS = "metrics.csv"
CURVES = "curves.png"
TEST_METRICS = "test_metrics.json"
TEST_DIR = "test"


@dataclass
class TrainResult:
    """Paths and final figures of a run (test figures only on rank 0)."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    config_path: Path
    metrics_csv: Path
    split_path: Path
    curves_png: Path | None
    test_metrics_path: Path | None
    model: str
    parameters: int
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_acc: float
    stopped_early: bool
    train_time_s: float
    train_images_per_s: float
    test_metrics: dict[str, Any] | None = None
    rank: int = 0

    @property
    def test_accuracy(self) -> float | None:
        return None if self.test_metrics is None else self.test_metrics["accuracy"]


# --------------------------------------------------------------------------- helpers
def _logger(ctx: DistContext, enabled: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if enabled and ctx.is_main:
            print(message, file=sys.stderr, flush=True)

    return log


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_threads(processes_per_machine: int = 1) -> int:
    """Torch CPU threads per process: the cores shared among this machine's processes,
    but 1 when the machine is already busy (1-minute load average >= cores).

    Measured on 2 cores: with the cores free, 2 threads train the 64 px SE-SNN at 40 vs
    30 img/s (1 thread); with other jobs on them, 1 thread is 2.5-4x faster than 2
    (OpenMP workers wait for a core). ``--threads`` overrides this.
    """
    cores = _cpu_count()
    share = max(1, cores // max(1, processes_per_machine))
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:  # pragma: no cover - not available
        busy = False
    return 1 if busy else share


def build_model(config: TrainConfig, num_classes: int) -> tuple[nn.Module, Preprocessing]:
    """The model and the preprocessing of a run (``size`` sets both input sizes)."""
    spec = get_model_spec(config.model)
    options = dict(config.model_options)
    for fixed in ("num_classes",):
        if fixed in options and options[fixed] != num_classes:
            raise ConfigError(
                f"--set {fixed}={options[fixed]} conflicts with the {num_classes} classes of the data"
            )
    options["num_classes"] = num_classes
    set_size = options.get("input_size")
    if config.size is not None:
        if set_size is not None and set_size != config.size:
            raise ConfigError(
                f"--size {config.size} conflicts with --set input_size={set_size}; give one of them"
            )
        options["input_size"] = config.size
    if config.timesteps is not None:
        if not spec.spiking:
            raise ConfigError(
                f"--timesteps applies to spiking models only; {config.model!r} is not spiking"
            )
        options["timesteps"] = config.timesteps
    model = get_model(config.model, **options)
    size = int(model.config.input_size)
    try:
        preprocessing = Preprocessing(size=size, clahe=config.clahe)
    except ConfigError as exc:
        raise ConfigError(f"input size {size}: {exc}") from None
    return model, preprocessing


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """ReduceLROnPlateau, CosineAnnealingLR (per epoch) or None."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def _resolve_amp(config: TrainConfig, device: torch.device) -> bool:
    if config.amp is None:
        return device.type == "cuda"
    if config.amp and device.type != "cuda":
        raise ConfigError("mixed precision (--amp) needs a CUDA device; it is off on CPU")
    return bool(config.amp)


def _check_run_dir(config: TrainConfig) -> None:
    run_dir = Path(config.out)
    if config.resume:
        if not (run_dir / LAST).is_file():
            raise ConfigError(
                f"cannot resume: {run_dir / LAST} does not exist (start a new run without --resume)"
            )
    elif (run_dir / LAST).exists() or (run_dir / BEST).exists():
        raise ConfigError(
            f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out"
        )


def _metadata(
    config: TrainConfig,
    data: TrainingData,
    epoch: int,
    stats: EpochStats | None,
    ctx: DistContext,
    distillation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "epoch": epoch,
        "train_root": str(Path(data.cohort.root)),
        "train_layout": data.cohort.layout,
        "split_file": str(data.split_path),
        "seed": config.seed,
        "world_size": ctx.world_size,
        "neurall_neuro_version": __version__,
        "torch_version": str(torch.__version__),
        "train_counts": data.parts["train"].counts(),
        "train_config": config.to_dict(),
    }
    if distillation is not None:
        meta["distillation"] = dict(distillation)
    if stats is not None:
        meta["val_loss"] = stats.loss
        meta["val_acc"] = stats.accuracy
    return meta


def _image_hashes(data: TrainingData, log: Callable[[str], None], progress: bool) -> dict[str, Any]:
    """The checkpoint entry remembering the run's training and validation images by hash
    (exact and perceptual codes, 24 bytes per image; no image content)."""
    from neurall_neuro.evaluation.training_images import TrainingImageHashes

    parts = {name: data.parts[name] for name in ("train", "val")}
    hashes = TrainingImageHashes.from_cohorts(parts, progress=progress)
    counts = hashes.counts()
    log(
        f"hashed {counts['train']} training and {counts['val']} validation images for the checkpoints"
    )
    return hashes.to_payload()


def _write_config(
    config: TrainConfig,
    model: nn.Module,
    data: TrainingData,
    ctx: DistContext,
    amp: bool,
    threads: int,
    distillation: dict[str, Any] | None = None,
) -> Path:
    size = model_size(model)
    payload = config.to_dict()
    payload.pop("resume")  # a recipe starts a run; `--resume --out RUN` continues one
    payload["resolved"] = {
        "model_config": model_config_dict(model),
        "parameters": size.parameters,
        "fp32_megabytes": size.fp32_megabytes,
        "preprocessing": data.preprocessing.to_dict(),
        "class_names": list(data.cohort.class_names),
        "layout": data.cohort.layout,
        "split": {p: len(c) for p, c in data.parts.items()},
        "split_group_by": data.split.group_by,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "amp": amp,
        "torch_threads": threads,
        "neurall_neuro_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if distillation is not None:
        payload["resolved"]["distillation"] = dict(distillation)
    path = Path(config.out) / CONFIG
    text = (
        "# neurall train: resolved configuration (reusable with --config; 'resolved' is ignored)\n"
    )
    path.write_text(text + yaml.safe_dump(payload, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- train
def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` on ``config.data`` into ``config.out`` (see the module docstring).

    Works unchanged under ``torchrun --nproc_per_node N`` (DistributedDataParallel,
    gloo on CPU, NCCL on CUDA); only rank 0 writes files and logs.
    """
    config.validate()
    ctx = init_distributed(config.device)
    try:
        return _train(config, ctx)
    finally:
        shutdown(ctx)


def _train(config: TrainConfig, ctx: DistContext) -> TrainResult:
    log = _logger(ctx, config.log)
    run_dir = Path(config.out)
    _check_run_dir(config)
    amp = _resolve_amp(config, ctx.device)
    threads = config.threads or default_threads(ctx.local_world_size)
    if ctx.device.type == "cpu":
        torch.set_num_threads(threads)
    configure_determinism(config.deterministic)
    seed_everything(config.seed)

    # Classes are needed to build the model: load the cohort first. Option errors
    # surface here, before anything is written.
    from neurall_neuro.data.layouts import load_cohort

    cohort = load_cohort(config.data, config.layout, bad_images="skip")
    model, preprocessing = build_model(config, len(cohort.class_names))
    distiller, distillation = None, None
    if config.teacher is not None:
        planned = preprocessing.to_dict()  # the stain method; its reference comes later
        if config.stain_norm != "none":
            planned["stain_norm"] = config.stain_norm
        teacher = load_teacher(
            config.teacher, list(cohort.class_names), planned,
            int(model.config.input_size), ctx.device,
        )  # fmt: skip
        distiller = Distiller(teacher, config.kd_temperature, config.kd_alpha, amp=amp)
        distillation = teacher.record(config.kd_temperature, config.kd_alpha)
    barrier(ctx)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(config, preprocessing, ctx, log, cohort=cohort)
    preprocessing = data.preprocessing  # with the stain reference fitted on the train split
    if distiller is not None:
        distiller.teacher.check_stain_reference(preprocessing.to_dict())
    class_names = list(cohort.class_names)
    image_hashes = _image_hashes(data, log, config.log) if ctx.is_main else None
    weights = class_weights(data.train_set.labels, class_names) if config.class_balance else None

    model.to(ctx.device)
    unwrapped = model
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    optimizer = torch.optim.Adam(
        unwrapped.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = _make_scheduler(config, optimizer)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    early = EarlyStopping(config.patience, config.min_delta)
    history: list[EpochRecord] = []
    start_epoch, stopped, elapsed_before = 1, False, 0.0

    if config.resume:
        payload = read_checkpoint_dict(run_dir / LAST)
        if payload["model"] != config.model or payload["config"] != model_config_dict(unwrapped):
            raise CheckpointError(
                f"{run_dir / LAST} holds model {payload['model']!r} with a different configuration "
                "than requested; resume with the run's own config.yaml"
            )
        state = payload.get("training_state")
        if state is None:
            raise CheckpointError(f"{run_dir / LAST} has no training state to resume from")
        _check_resumed_teacher(run_dir / LAST, payload.get("metadata", {}), distillation)
        unwrapped.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        early.load_state_dict(state["early_stopping"])
        early.patience, early.min_delta = config.patience, config.min_delta
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        stopped = bool(state.get("stopped", False))
        elapsed_before = float(state.get("train_time_s", 0.0))
        history = [r for r in read_history(run_dir / METRICS) if r.epoch < start_epoch]
        log(f"resuming {run_dir} after epoch {start_epoch - 1}")

    if ctx.is_main:
        _write_config(config, unwrapped, data, ctx, amp, threads, distillation)
    size = model_size(unwrapped)
    log(
        f"model {config.model}: {size.describe()}; device {ctx.device}"
        + (f" x{ctx.world_size} ({ctx.backend})" if ctx.distributed else "")
        + f", amp {'on' if amp else 'off'}, threads {threads}"
    )
    if distillation is not None:
        log(
            f"distilling from teacher {distillation['teacher_model']} ({distillation['teacher']}): "
            f"T {config.kd_temperature:g}, alpha {config.kd_alpha:g}"
        )

    # Loaders. Shuffling draws from `loader_gen`, reseeded every epoch (resumable).
    loader_gen = torch.Generator()
    if ctx.distributed:
        train_sampler: Any = DistributedSampler(
            data.train_set,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=config.seed,
        )
    else:
        train_sampler = RandomSampler(data.train_set, generator=loader_gen)
    pin = ctx.device.type == "cuda"
    train_loader = DataLoader(
        data.train_set,
        batch_size=config.batch_size,
        sampler=train_sampler,
        num_workers=config.num_workers,
        worker_init_fn=seed_worker if config.num_workers else None,
        generator=loader_gen,
        pin_memory=pin,
    )
    val_loader = DataLoader(
        data.val_set,
        batch_size=config.batch_size,
        sampler=ShardSampler(len(data.val_set), ctx.rank, ctx.world_size),
        num_workers=config.num_workers,
        pin_memory=pin,
    )

    recal_loader = None
    if config.bn_recal_images and batchnorm_layers(unwrapped):
        recal_loader = recalibration_loader(
            data.train_set, config.bn_recal_images, config.batch_size, ctx,
            seed=derive_seed(config.seed, 0, 0xB4), num_workers=config.num_workers,
        )  # fmt: skip

    train_seconds, train_images = elapsed_before, 0
    run_start = time.monotonic()
    if stopped:
        log(f"{run_dir} already stopped early at epoch {start_epoch - 1}; nothing left to train")
    epochs = range(start_epoch, config.epochs + 1) if not stopped else range(0)
    for epoch in epochs:
        seed_epoch(config.seed, epoch, ctx.rank)
        loader_gen.manual_seed(derive_seed(config.seed, epoch, 0x10AD))
        if isinstance(train_sampler, DistributedSampler):
            train_sampler.set_epoch(epoch)
        lr = float(optimizer.param_groups[0]["lr"])
        t0 = time.monotonic()
        label = f"epoch {epoch}/{config.epochs}"
        with EpochProgress(
            f"{label} train", len(train_loader), enabled=config.log and ctx.is_main
        ) as bar:
            train_stats = run_epoch(
                model, train_loader, ctx, weights, optimizer, scaler, amp, bar, distiller
            )
        t_train = time.monotonic() - t0
        if recal_loader is not None:  # population BN statistics of this epoch's weights
            recalibrate_batchnorm(model, recal_loader, ctx, amp)
        with EpochProgress(
            f"{label} val", len(val_loader), enabled=config.log and ctx.is_main
        ) as bar:
            val_stats = run_epoch(model, val_loader, ctx, weights, amp=amp, progress=bar)
        seconds = time.monotonic() - t0
        train_seconds += t_train
        train_images += train_stats.n

        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_stats.loss)
        elif scheduler is not None:
            scheduler.step()
        improved_before = early.best_epoch
        stopped = early.step(val_stats.loss, epoch, unwrapped)
        improved = early.best_epoch != improved_before
        history.append(
            EpochRecord(
                epoch,
                train_stats.loss,
                train_stats.accuracy,
                val_stats.loss,
                val_stats.accuracy,
                lr,
                seconds,
            )
        )
        over_time = False
        if config.time_limit_s is not None:
            over_time = all_reduce_max(time.monotonic() - run_start, ctx) > config.time_limit_s
        if ctx.is_main:
            write_history(run_dir / METRICS, history)
            meta = _metadata(config, data, epoch, val_stats, ctx, distillation)
            if improved:
                save_checkpoint(
                    run_dir / BEST, unwrapped, class_names, preprocessing.to_dict(), meta,
                    image_hashes=image_hashes,
                )  # fmt: skip
            training_state = {
                "epoch": epoch,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "early_stopping": early.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng_state(),
                "stopped": stopped,
                "train_time_s": train_seconds,
            }
            save_checkpoint(
                run_dir / LAST, unwrapped, class_names, preprocessing.to_dict(), meta,
                extra={"training_state": training_state}, image_hashes=image_hashes,
            )  # fmt: skip
        log(
            f"{label}  train loss {train_stats.loss:.4f} acc {train_stats.accuracy:.3f} | "
            f"val loss {val_stats.loss:.4f} acc {val_stats.accuracy:.3f} | lr {lr:.2e} | "
            f"{seconds:.1f} s ({train_stats.n / max(t_train, 1e-9):.1f} img/s)"
            + (" *" if improved else "")
        )
        if stopped:
            log(f"early stopping: no val-loss improvement for {early.patience} epochs")
            break
        if over_time:
            log(f"time limit of {config.time_limit_s:.0f} s reached after epoch {epoch}")
            break
    barrier(ctx)

    # Best weights back into the model; final artefacts on rank 0.
    early.restore_best(unwrapped)
    if not (run_dir / BEST).is_file() and ctx.is_main:
        # No epoch ran in this call and none before (cannot happen after a real epoch).
        raise CheckpointError(f"{run_dir / BEST} was not written: no epoch completed")
    curves_path = test_path = None
    test_metrics = None
    if ctx.is_main:
        curves_path = plot_curves(
            history,
            run_dir / CURVES,
            title=f"{config.model} ({run_dir.name})",
            best_epoch=early.best_epoch,
        )
        if config.evaluate_test and len(data.parts["test"]) > 0:
            test_metrics, test_path = _evaluate_test(config, data, run_dir, ctx, amp, log)
    barrier(ctx)
    best_record = next((r for r in history if r.epoch == early.best_epoch), None)
    images_per_s = train_images / max(train_seconds - elapsed_before, 1e-9) if train_images else 0.0
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=run_dir / BEST,
        last_checkpoint=run_dir / LAST,
        config_path=run_dir / CONFIG,
        metrics_csv=run_dir / METRICS,
        split_path=data.split_path,
        curves_png=curves_path,
        test_metrics_path=test_path,
        model=config.model,
        parameters=size.parameters,
        epochs_run=history[-1].epoch if history else 0,
        best_epoch=early.best_epoch,
        best_val_loss=early.best,
        best_val_acc=best_record.val_acc if best_record else float("nan"),
        stopped_early=early.should_stop,
        train_time_s=train_seconds,
        train_images_per_s=images_per_s,
        test_metrics=test_metrics,
        rank=ctx.rank,
    )


def _check_resumed_teacher(
    path: Path, metadata: dict[str, Any], distillation: dict[str, Any] | None
) -> None:
    """A resumed run must distil from the same teacher file (by SHA-256) as before."""
    before = metadata.get("distillation")
    if before is None and distillation is None:
        return
    if before is None:
        raise ConfigError(
            f"{path} was trained without a teacher; cannot resume it with --teacher "
            "(start a new run to distil)"
        )
    if distillation is None:
        raise ConfigError(
            f"{path} was distilled from the teacher {before['teacher']}; resume it with that teacher"
        )
    if before["teacher_sha256"] != distillation["teacher_sha256"]:
        raise CheckpointError(
            f"the teacher changed since {path} was written: it was trained with "
            f"{before['teacher']} (sha256 {before['teacher_sha256'][:12]}...), now "
            f"{distillation['teacher']} has sha256 {distillation['teacher_sha256'][:12]}..."
        )


def _evaluate_test(
    config: TrainConfig,
    data: TrainingData,
    run_dir: Path,
    ctx: DistContext,
    amp: bool,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], Path]:
    """Evaluate best.pt on the test split into ``test/`` and ``test_metrics.json``."""
    from neurall_neuro.evaluation.evaluator import evaluate
    from neurall_neuro.evaluation.outputs import write_json

    result = evaluate(
        run_dir / BEST,
        data.cohort,
        run_dir / TEST_DIR,
        split_file=data.split_path,
        split="test",
        bootstrap=config.bootstrap,
        seed=config.seed,
        batch_size=max(config.batch_size, 64),
        device=str(ctx.device),
        amp=amp,
        overlap_check=not config.group_duplicates,
        progress=config.log,
    )
    path = write_json(run_dir / TEST_METRICS, result.to_dict())
    log("test: " + result.summary().replace("\n", "\n      "))
    return result.to_dict(), path

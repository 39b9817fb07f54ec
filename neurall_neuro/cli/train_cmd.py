"""``neurall train``: train a registered model on a dataset folder into a run directory.

Options come from (later wins): the run's own ``config.yaml`` when resuming, a recipe
file (``--config``), then the flags given on the command line. Runs unchanged under
``torchrun --nproc_per_node N -m neurall_neuro.cli.main train ...`` (DDP).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from neurall_neuro.devices import add_device_argument

S = argparse.SUPPRESS  # flags not given do not appear, so recipe values survive


class _ModelNames:
    """The registered model names, looked up when ``--help`` is rendered: importing the
    registry imports torch, which the parser itself must not (``neurall --help`` stays fast)."""

    def __str__(self) -> str:
        from neurall_neuro.models.registry import list_models

        return ", ".join(list_models())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (SE-SNN or SE-CNN) on a dataset folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=S,
    )
    g = p.add_argument_group("what to train")
    model = g.add_argument("--model", metavar="NAME", help="registered model: %(registered)s")
    model.registered = _ModelNames()  # type: ignore[attr-defined]  # expanded by --help
    g.add_argument("--data", help="dataset folder or manifest.csv")
    g.add_argument("--out", help="run directory to create (or to resume with --resume)")
    g.add_argument("--config", dest="recipe", metavar="FILE.yaml", help="training recipe file")
    g.add_argument("--layout", help="dataset layout (default: detected)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")

    g = p.add_argument_group("model and preprocessing")
    g.add_argument("--size", type=int, help="image side in pixels (default: the model's, 64)")
    g.add_argument("--timesteps", type=int, help="simulation steps (spiking models)")
    g.add_argument(
        "--set", dest="set_items", action="append", metavar="KEY=VALUE",
        help="model config override, value parsed as YAML (repeatable), e.g. --set se_mode=analog",
    )  # fmt: skip
    g.add_argument("--clahe", action="store_true", help="apply CLAHE in preprocessing")
    g.add_argument(
        "--stain-norm", dest="stain_norm", choices=("none", "macenko"),
        help="stain normalisation of every image before resizing (none); macenko: onto a "
        "reference fitted on the training split and stored in the checkpoints",
    )  # fmt: skip

    g = p.add_argument_group("optimisation (defaults: the project recipe)")
    g.add_argument("--epochs", type=int, help="maximum epochs (50)")
    g.add_argument("--batch-size", dest="batch_size", type=int, help="batch size per process (32)")
    g.add_argument("--lr", type=float, help="Adam learning rate (1e-4)")
    g.add_argument("--weight-decay", dest="weight_decay", type=float, help="Adam weight decay (0)")
    g.add_argument(
        "--scheduler", choices=("plateau", "cosine", "none"), help="LR schedule (plateau)"
    )
    g.add_argument("--lr-factor", dest="lr_factor", type=float, help="plateau LR factor (0.5)")
    g.add_argument("--lr-patience", dest="lr_patience", type=int, help="plateau patience (3)")
    g.add_argument("--patience", type=int, help="early-stopping patience in epochs (5; 0 = off)")
    g.add_argument(
        "--min-delta", dest="min_delta", type=float, help="minimum val-loss improvement (0)"
    )
    g.add_argument(
        "--no-class-balance", dest="class_balance", action="store_false",
        help="do not weight the loss by inverse class frequency",
    )  # fmt: skip
    g.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no training augmentation"
    )
    g.add_argument(
        "--stain-augment", dest="stain_augment", choices=("none", "hed"),
        help="stain augmentation of training images (none); hed: random per-stain scale "
        "and shift in haematoxylin-eosin-DAB space (Tellez et al. 2018)",
    )  # fmt: skip
    g.add_argument(
        "--stain-augment-strength", dest="stain_augment_strength", type=float, metavar="S",
        help="sigma of --stain-augment hed: alpha ~ U(1-S, 1+S), beta ~ U(-S, S) (0.05)",
    )  # fmt: skip
    g.add_argument(
        "--amp", dest="amp", action="store_true", help="force mixed precision (CUDA only)"
    )
    g.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision")
    g.add_argument(
        "--bn-recal-images", dest="bn_recal_images", type=int, metavar="N",
        help="before every validation, recompute BatchNorm statistics from N training images "
        "(256; 0 = keep torch's moving averages)",
    )  # fmt: skip

    g = p.add_argument_group(
        "knowledge distillation (loss: (1 - A) * CE + A * T^2 * KL(teacher/T || student/T))"
    )
    g.add_argument(
        "--teacher", metavar="CKPT",
        help="distil from this trained checkpoint (same classes and preprocessing as the student)",
    )  # fmt: skip
    g.add_argument(
        "--kd-temperature", dest="kd_temperature", type=float, metavar="T",
        help="softmax temperature of the distillation term (4; > 0)",
    )  # fmt: skip
    g.add_argument(
        "--kd-alpha", dest="kd_alpha", type=float, metavar="A",
        help="weight of the distillation term, in [0, 1] (0.7; 1 ignores the labels)",
    )  # fmt: skip

    g = p.add_argument_group("split")
    g.add_argument("--split-file", dest="split_file", help="reuse this split.json")
    g.add_argument(
        "--val-fraction", dest="val_fraction", type=float, help="validation fraction (0.15)"
    )
    g.add_argument("--test-fraction", dest="test_fraction", type=float, help="test fraction (0.15)")
    g.add_argument(
        "--group-duplicates", dest="group_duplicates", action="store_true",
        help="keep near-duplicate images on one side of the split (cohorts without patient ids)",
    )  # fmt: skip

    g = p.add_argument_group("execution")
    add_device_argument(g, default=S)
    g.add_argument("--seed", type=int, help="seed (0)")
    g.add_argument(
        "--no-deterministic", dest="deterministic", action="store_false",
        help="allow non-deterministic (faster) kernels",
    )  # fmt: skip
    g.add_argument("--num-workers", dest="num_workers", type=int, help="data-loader workers (0)")
    g.add_argument("--threads", type=int, help="torch CPU threads per process")
    g.add_argument(
        "--time-limit", dest="time_limit_s", type=float, metavar="SECONDS",
        help="stop after the epoch during which this wall time is exceeded",
    )  # fmt: skip
    g.add_argument(
        "--no-test", dest="evaluate_test", action="store_false", help="skip the test evaluation"
    )
    g.add_argument("--bootstrap", type=int, help="bootstrap resamples of the test CIs (1000)")
    g.add_argument(
        "--quiet", dest="log", action="store_false", help="no progress or per-epoch lines"
    )
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """Merge the run's config.yaml (resume), the recipe file and the flags into a TrainConfig."""
    from neurall_neuro.errors import ConfigError
    from neurall_neuro.training.config import TrainConfig, load_recipe, parse_set_items

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command", "debug")}
    values: dict[str, Any] = {}
    if flags.get("resume"):
        out = flags.get("out")
        if out is None:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        run_config = Path(out) / "config.yaml"
        if not run_config.is_file():
            raise ConfigError(f"cannot resume: {run_config} does not exist")
        values.update(load_recipe(run_config))
    recipe = flags.pop("recipe", None)
    if recipe is not None:
        recipe_values = load_recipe(recipe)
        options = {**values.get("model_options", {}), **recipe_values.pop("model_options", {})}
        values.update(recipe_values)
        values["model_options"] = options
    set_items = flags.pop("set_items", None)
    if set_items:
        values["model_options"] = {**values.get("model_options", {}), **parse_set_items(set_items)}
    values.update(flags)
    missing = [f"--{k}" for k in ("model", "data", "out") if values.get(k) in (None, "")]
    if missing:
        raise ConfigError(
            f"missing required option(s) {', '.join(missing)} (or give them in --config)"
        )
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    from neurall_neuro.atomic import removed_on_failure
    from neurall_neuro.training import train
    from neurall_neuro.training.trainer import LAST

    config = build_config(args)
    # A new run folder is removed again if training fails before saving a checkpoint.
    with removed_on_failure(config.out, keep_if=lambda run_dir: (run_dir / LAST).exists()):
        result = train(config)
    if result.rank == 0 and config.log:
        lines = [
            f"run: {result.run_dir}",
            f"best epoch {result.best_epoch} of {result.epochs_run}: val loss {result.best_val_loss:.4f}, "
            f"val acc {result.best_val_acc:.4f}; {result.train_images_per_s:.1f} train img/s",
        ]
        if result.test_metrics is not None:
            m = result.test_metrics
            lo, hi = m["accuracy_ci95"]
            lines.append(
                f"test accuracy {m['accuracy']:.4f} (95% CI {lo:.4f}-{hi:.4f}), "
                f"balanced {m['balanced_accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
                f"on {m['n_images']} images"
            )
        print("\n".join(lines), file=sys.stdout)
    return 0

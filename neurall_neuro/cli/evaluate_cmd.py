"""``neurall evaluate``: score a checkpoint on a dataset folder (held-out, external, or one split).

The checkpoint describes its model, classes and preprocessing: no model flags are needed.
Classes of another cohort are mapped by name (``--map SOURCE=TARGET`` for explicit ones).
Writes OUT/metrics.json, predictions.csv, confusion_matrix.{csv,png}.

Checkpoints written by ``neurall train`` remember their training and validation images
by hash: evaluated images among them are counted and a WARNING is printed (their scores
are inflated); ``--exclude-training`` scores the held-out images only.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from neurall_neuro.devices import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a dataset (metrics with bootstrapped CIs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt)")
    p.add_argument("--data", required=True, help="dataset folder or manifest.csv to evaluate")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--layout", default=None, help="dataset layout (default: detected)")
    p.add_argument(
        "--split-file", dest="split_file", default=None, help="evaluate one part of this split"
    )
    p.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="part (default test)"
    )
    p.add_argument(
        "--map", dest="mapping", action="append", default=[], metavar="SOURCE=TARGET",
        help="map a source class name onto a checkpoint class (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--robustness", default="",
        help="comma-separated input perturbations to evaluate too, e.g. grayscale,stain-jitter",
    )  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and perturbations")
    p.add_argument(
        "--batch-size", dest="batch_size", type=int, default=64,
        help="images per forward pass (default 64; lower it if memory runs out)",
    )  # fmt: skip
    add_device_argument(p)
    p.add_argument(
        "--train-data", dest="train_data", default=None,
        help="training data to check for near-duplicates (default: the checkpoint's training root)",
    )  # fmt: skip
    p.add_argument(
        "--exclude-training", dest="exclude_training", action="store_true",
        help="score only images that are not among the checkpoint's training or validation "
        "images (identical files or near-duplicates, recognised by the hashes it stores)",
    )  # fmt: skip
    p.add_argument(
        "--no-overlap-check", dest="overlap_check", action="store_false",
        help="skip the near-duplicate check against training data",
    )  # fmt: skip
    p.set_defaults(func=run)


def parse_mapping(items: list[str]) -> dict[str, str] | None:
    """``["Benign=Normal"]`` -> ``{"Benign": "Normal"}`` (ConfigError on a malformed item)."""
    from neurall_neuro.errors import ConfigError

    out: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigError(f"--map expects SOURCE=TARGET, got {item!r}")
        out[source.strip()] = target.strip()
    return out or None


def run(args: argparse.Namespace) -> int:
    from neurall_neuro.atomic import removed_on_failure
    from neurall_neuro.evaluation.evaluator import evaluate
    from neurall_neuro.evaluation.overlap import OverlapWarning
    from neurall_neuro.evaluation.training_images import TrainingOverlapWarning

    robustness = [r.strip() for r in args.robustness.split(",") if r.strip()]
    with removed_on_failure(args.out), warnings.catch_warnings():
        warnings.simplefilter("ignore", OverlapWarning)  # reported below, once, in plain words
        warnings.simplefilter("ignore", TrainingOverlapWarning)  # printed by result.summary()
        result = evaluate(
            args.checkpoint,
            args.data,
            args.out,
            layout=args.layout,
            split_file=args.split_file,
            split=args.split,
            label_mapping=parse_mapping(args.mapping),
            robustness=robustness,
            bootstrap=args.bootstrap,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            train_data=args.train_data,
            overlap_check=args.overlap_check,
            exclude_training=args.exclude_training,
        )
    overlap = result.overlap or {}
    if overlap.get("n_overlapping_images"):
        print(
            f"warning: {overlap['n_overlapping_images']} of {overlap['n_evaluated']} evaluated images "
            f"are near-duplicates of training images in {overlap['reference']} "
            f"({overlap['n_pairs']} pairs, examples in metrics.json); the scores are optimistic",
            file=sys.stderr,
        )
    print(result.summary())
    print(f"wrote {result.files.get('metrics_json', args.out)}")
    return 0

"""Store the hashes of a checkpoint's training and validation images in the checkpoint.

    python scripts/add_training_hashes.py --data ../shared/data/all-aria-dev \
        --split-file pretrained/aria-dev.split.json \
        pretrained/neurallnet-aria.pt pretrained/se-cnn-aria.pt

For checkpoints trained before ``neurall train`` stored these hashes (the shipped
``pretrained/*-aria.pt``). The ``train`` and ``val`` parts of the split are read from
the data folder and hashed (24 bytes per image, no image content: see
``neurall_neuro.evaluation.training_images``); every checkpoint then gets them, plus
``metadata["split_file"]`` naming the split file when it lies beside the checkpoint.
Weights are untouched (checked: every state-dict tensor is read back and compared).

Guards: the split's class names must equal the checkpoint's, and the per-class counts
of its ``train`` part must equal the ``train_counts`` the checkpoint recorded during
training (a different split is refused). Rerunning gives byte-identical hashes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurall_neuro.data.layouts import load_cohort  # noqa: E402
from neurall_neuro.data.splits import Split  # noqa: E402
from neurall_neuro.errors import CheckpointError, NeurallError  # noqa: E402
from neurall_neuro.evaluation.training_images import (  # noqa: E402
    REMEMBERED_PARTS,
    TrainingImageHashes,
    add_image_hashes,
)
from neurall_neuro.models.checkpoint import read_checkpoint_dict  # noqa: E402

#: Largest shipped checkpoint (tests/models/test_pretrained.py checks the same bound).
MAX_BYTES = 5 * 1024 * 1024


def check_split_matches(path: Path, split: Split, train_counts: dict[str, int]) -> None:
    """CheckpointError unless ``split`` is the split the checkpoint was trained on."""
    payload = read_checkpoint_dict(path)
    if list(split.class_names) != list(payload["class_names"]):
        raise CheckpointError(
            f"{path}: classes {payload['class_names']} differ from the split's "
            f"{list(split.class_names)}"
        )
    recorded = payload.get("metadata", {}).get("train_counts")
    if recorded is not None and dict(recorded) != train_counts:
        raise CheckpointError(
            f"{path} was trained on {recorded} images per class, the split's train part has "
            f"{train_counts}: this is not its split"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint files to update")
    parser.add_argument("--data", type=Path, required=True, help="the training data folder")
    parser.add_argument("--split-file", type=Path, required=True, help="the run's split.json")
    parser.add_argument("--layout", default=None, help="dataset layout (default: detected)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NEURALL_NO_PROGRESS", "1")
    try:
        cohort = load_cohort(args.data, args.layout)
        split = Split.load(args.split_file)
        parts = split.apply(cohort)
        expected = {p: len(getattr(split, p)) for p in REMEMBERED_PARTS}
        found = {p: len(parts[p]) for p in REMEMBERED_PARTS}
        if found != expected:
            raise CheckpointError(
                f"{args.data} holds {found} of the split's {expected} train/val images"
            )
        for path in args.checkpoints:
            check_split_matches(path, split, parts["train"].counts())
        hashes = TrainingImageHashes.from_cohorts({p: parts[p] for p in REMEMBERED_PARTS})
        for path in args.checkpoints:
            beside = args.split_file.resolve().parent == path.resolve().parent
            metadata = {"split_file": args.split_file.name} if beside else {}
            add_image_hashes(path, hashes, metadata)
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise CheckpointError(f"{path} grew to {size:,} bytes (limit {MAX_BYTES:,})")
            print(
                f"{path}: remembers {found['train']} training and {found['val']} validation "
                f"images; {size:,} bytes, weights unchanged"
            )
    except NeurallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

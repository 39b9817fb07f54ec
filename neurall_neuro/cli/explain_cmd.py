"""``neurall explain``: Grad-CAM (SE-CNN and SE-SNN) and spike activation maps (SE-SNN).

Writes one overlay PNG per image and method (image, heat map; predicted and true class
in the title); ``--per-timestep`` adds one PNG per simulation step for the SE-SNN.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neurall_neuro.devices import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="saliency maps (Grad-CAM, SAM) of a checkpoint's predictions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="IMG", help="image files to explain")
    src.add_argument("--data", help="dataset folder: explain --n images spread over the classes")
    p.add_argument(
        "--n", type=int, default=8, help="number of images taken from --data (default 8)"
    )
    p.add_argument("--layout", default=None, help="layout of --data (default: detected)")
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument(
        "--method", default="all", choices=("gradcam", "sam", "all"),
        help="gradcam, sam (spiking models only) or all (default: Grad-CAM, plus SAM for an SNN)",
    )  # fmt: skip
    p.add_argument(
        "--layer", default=None, help="layer to explain (default: last LIF / last residual stage)"
    )
    p.add_argument(
        "--per-timestep", dest="per_timestep", action="store_true", help="one map per step (SNN)"
    )
    p.add_argument("--gamma", type=float, default=None, help="SAM temporal decay (default 0.5)")
    p.add_argument(
        "--target", default=None, help="class to explain (name or index; default: predicted)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for picking images from --data")
    add_device_argument(p)
    p.set_defaults(func=run)


def _label_from_folder(path: Path, class_names: list[str]) -> int | None:
    """The class of an image whose parent folder names one of ``class_names`` (else None)."""
    from neurall_neuro.data.layouts import canonical_class_name

    folder = path.parent.name
    for i, name in enumerate(class_names):
        if folder.lower() == name.lower():
            return i
    canon = canonical_class_name(folder)
    if canon is not None and canon in class_names:
        return class_names.index(canon)
    return None


def _pick(labels: list[int], n: int, seed: int) -> list[int]:
    """Up to ``n`` indices, round-robin over classes, random within a class (seeded)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    queues = {c: list(rng.permutation(idx)) for c, idx in sorted(by_class.items())}
    picked: list[int] = []
    while len(picked) < n and any(queues.values()):
        for c in sorted(queues):
            if queues[c] and len(picked) < n:
                picked.append(int(queues[c].pop()))
    return picked


def _target(value: str | None, class_names: list[str]) -> int | None:
    from neurall_neuro.errors import ConfigError

    if value is None:
        return None
    if value in class_names:
        return class_names.index(value)
    if value.isdigit() and int(value) < len(class_names):
        return int(value)
    raise ConfigError(f"--target {value!r} is not a class; valid options: {', '.join(class_names)}")


def run(args: argparse.Namespace) -> int:
    import torch

    from neurall_neuro.atomic import removed_on_failure
    from neurall_neuro.data.preprocess import Preprocessing
    from neurall_neuro.errors import ConfigError
    from neurall_neuro.explain.runner import explain_images
    from neurall_neuro.explain.sam import DEFAULT_GAMMA
    from neurall_neuro.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    pre = Preprocessing.from_dict(ckpt.preprocessing)
    class_names = list(ckpt.class_names)
    if args.images:
        paths = [Path(p) for p in args.images]
        labels = [_label_from_folder(p, class_names) for p in paths]
    else:
        from neurall_neuro.data.layouts import load_cohort, map_labels

        if args.n < 1:
            raise ConfigError(f"--n must be >= 1, got {args.n}")
        cohort = load_cohort(args.data, args.layout, bad_images="skip")
        if tuple(cohort.class_names) != tuple(class_names):
            cohort = map_labels(cohort, class_names)
        chosen = _pick(cohort.labels, args.n, args.seed)
        paths = [Path(cohort.records[i].path) for i in chosen]
        labels = [cohort.records[i].label for i in chosen]
    images = torch.stack([pre.load(p) for p in paths])
    names = [f"{i:03d}_{p.stem}" for i, p in enumerate(paths)]
    with removed_on_failure(args.out):  # no half-written folder of overlays on failure
        result = explain_images(
            ckpt, images, args.out, names=names, labels=labels, method=args.method,
            layer=args.layer, per_timestep=args.per_timestep,
            gamma=DEFAULT_GAMMA if args.gamma is None else args.gamma,
            target=_target(args.target, class_names), device=args.device,
        )  # fmt: skip
    for method, exp in result.explanations.items():
        correct = sum(int(exp.predicted[i]) == y for i, y in enumerate(labels) if y is not None)
        known = sum(y is not None for y in labels)
        print(
            f"{method} on {exp.layer}: {len(paths)} images"
            + (f", {correct}/{known} correct" if known else "")
        )
    print(f"wrote {len(result.files)} PNG files to {args.out}")
    return 0

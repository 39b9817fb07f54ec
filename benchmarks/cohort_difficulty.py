"""How hard is the generated cohort? Train a small plain CNN on it and report test accuracy.

Not a test: a measurement used to tune ``neurall_neuro.data.synth`` (its
``difficulty`` levels). The target for the default ``"realistic"`` level is roughly
90-97 % test accuracy on a patient-level split for a small CNN trained a few CPU
minutes on ~200 images per class at 64 px: clearly above chance (25 %) and below
100 %, so that a small spiking CNN can still reach >= 90 %.

Run::

    .venv/bin/python -m benchmarks.cohort_difficulty --seeds 0 1 2

Protocol: generate ``n_per_class`` images per class (8 patients per class), split by
patient (test 25 % = 2 patients per class, val 12.5 %, the rest train), train the
CNN below (3 conv blocks 16-32-64 with BN, ReLU and max-pool, global average pool,
linear; 24 k parameters) with Adam (lr 2e-3, weight decay 1e-4, cosine decay),
batch 32, the library's training augmentation, for ``epochs`` epochs on
train+val, then report accuracy on the two held-out patients of each class.

Measured for the default ``"realistic"`` level (generator version 1; 2 shared CPU
cores, torch 2.3.1 with 1 thread; 200/class at 64 px; 35 epochs, 90-100 s of
training per seed)::

    seed 0: 0.960   seed 1: 0.890   seed 2: 0.955   seed 3: 0.900   mean 0.926

Early Pre-B is the hardest class (recall 0.56-1.00 across seeds, confused with
its neighbours); with only two test patients per class one atypical patient
moves the accuracy by several points, so compare means over seeds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def build_cnn(n_classes: int = 4):
    import torch.nn as nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(3, 16),
        block(16, 32),
        block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, n_classes),
    )


def run_once(
    seed: int,
    n_per_class: int,
    size: int,
    epochs: int,
    difficulty: str | float,
    workdir: Path,
) -> dict[str, float]:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from neurall_neuro.data.dataset import ImageDataset
    from neurall_neuro.data.preprocess import Preprocessing
    from neurall_neuro.data.splits import make_split
    from neurall_neuro.data.synth import generate_cohort

    t0 = time.perf_counter()
    cohort = generate_cohort(
        workdir / f"cohort-{seed}",
        n_per_class=n_per_class,
        size=size,
        seed=seed,
        difficulty=difficulty,
    )
    t_gen = time.perf_counter() - t0
    split = make_split(cohort, val_fraction=0.125, test_fraction=0.25, seed=seed)
    parts = split.apply(cohort)
    train_records = parts["train"].records + parts["val"].records
    prep = Preprocessing(size=size)
    train_ds = ImageDataset(train_records, prep, augment=True)
    test_ds = ImageDataset(parts["test"].records, prep)

    torch.manual_seed(seed)
    model = build_cnn(len(cohort.class_names))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loader = DataLoader(train_ds, batch_size=32, shuffle=True, num_workers=0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    loss_fn = torch.nn.CrossEntropyLoss()
    t1 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y, _idx in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
    t_train = time.perf_counter() - t1
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for x, y, _idx in DataLoader(test_ds, batch_size=128):
            preds.append(model(x).argmax(1).numpy())
            labels.append(y.numpy())
    p, y = np.concatenate(preds), np.concatenate(labels)
    per_class = {
        cohort.class_names[c]: float((p[y == c] == c).mean())
        for c in range(len(cohort.class_names))
    }
    return {
        "seed": seed,
        "test_accuracy": float((p == y).mean()),
        "n_train": len(train_ds),
        "n_test": len(test_ds),
        "generate_s": t_gen,
        "train_s": t_train,
        **{f"recall_{k}": v for k, v in per_class.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-per-class", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=35)
    parser.add_argument("--difficulty", default="realistic")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import os

    import torch

    os.environ.setdefault("NEURALL_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    try:
        difficulty: str | float = float(args.difficulty)
    except ValueError:
        difficulty = args.difficulty
    accs = []
    with tempfile.TemporaryDirectory(prefix="neurall-difficulty-") as tmp:
        for seed in args.seeds:
            r = run_once(seed, args.n_per_class, args.size, args.epochs, difficulty, Path(tmp))
            accs.append(r["test_accuracy"])
            recalls = ", ".join(f"{k[7:]} {v:.2f}" for k, v in r.items() if k.startswith("recall_"))
            print(
                f"seed {seed}: test accuracy {r['test_accuracy']:.3f} "
                f"(n_train {r['n_train']}, n_test {r['n_test']}; recall {recalls}); "
                f"generation {r['generate_s']:.1f} s, training {r['train_s']:.0f} s",
                flush=True,
            )
    mean = sum(accs) / len(accs)
    print(f"difficulty {args.difficulty}: mean test accuracy {mean:.3f} over seeds {args.seeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

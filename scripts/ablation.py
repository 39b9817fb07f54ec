"""SE vs no-SE (or any two models) over several seeds, with a paired test per seed.

Trains ``--models`` (default ``neurallnet`` and ``neurallnet-nose``) with the same recipe
and split for every seed in ``--seeds`` (one ``neurall train`` run each, in
``OUT/MODEL-seedS``; finished runs are reused, so the script can be resumed), then
compares them on the same test images: accuracy mean +- sd over seeds per model, and per
seed McNemar's test (:func:`neurall_neuro.evaluation.paired.mcnemar`) of the first model
against the second. Writes ``OUT/ablation.json`` and ``OUT/ablation.md``.

    .venv/bin/python scripts/ablation.py --data ../shared/data/all-aria-dev \\
        --split-file pretrained/aria-dev.split.json --out runs/ablation-aria
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurall_neuro.evaluation.paired import mcnemar  # noqa: E402


def train(model: str, seed: int, args: argparse.Namespace) -> Path:
    """Run (or reuse) one training run; returns its folder."""
    run = Path(args.out) / f"{model}-seed{seed}"
    if (run / "test_metrics.json").is_file():
        print(f"{run}: done before, reused", flush=True)
        return run
    cmd = [
        str(Path(sys.executable).with_name("neurall")),
        "train", "--config", args.recipe, "--data", args.data, "--model", model,
        "--seed", str(seed), "--out", str(run), "--threads", str(args.threads),
    ]  # fmt: skip
    if args.split_file:
        cmd += ["--split-file", args.split_file]
    if run.exists():
        cmd = [*cmd, "--resume"]
    env = {**os.environ, "NEURALL_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.monotonic()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    print(f"{run}: {time.monotonic() - t0:.0f} s", flush=True)
    return run


def predictions(run: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image paths, true and predicted class names of a run's test split, sorted by path."""
    with (run / "test" / "predictions.csv").open(newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["path"])
    return (
        [r["path"] for r in rows],
        np.array([r["true"] for r in rows]),
        np.array([r["predicted"] for r in rows]),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--recipe", default="configs/neurallnet-aria-quick.yaml")
    p.add_argument("--split-file", dest="split_file")
    p.add_argument("--models", nargs=2, default=["neurallnet", "neurallnet-nose"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    runs = {m: {s: train(m, s, args) for s in args.seeds} for m in args.models}
    a, b = args.models
    result: dict[str, Any] = {"recipe": args.recipe, "seeds": args.seeds, "models": {}}
    for model in args.models:
        accs = [
            json.loads((runs[model][s] / "test_metrics.json").read_text())["accuracy"]
            for s in args.seeds
        ]
        result["models"][model] = {
            "accuracy": accs,
            "mean": float(np.mean(accs)),
            "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
        }
    result["paired"] = []
    for seed in args.seeds:
        paths_a, true_a, pred_a = predictions(runs[a][seed])
        paths_b, true_b, pred_b = predictions(runs[b][seed])
        if paths_a != paths_b or list(true_a) != list(true_b):
            raise SystemExit(f"seed {seed}: the two runs were tested on different images")
        test = mcnemar(true_a, pred_a, pred_b, name_a=a, name_b=b)
        result["paired"].append({"seed": seed, **test.to_dict(), "summary": test.summary()})
    lines = [
        f"Recipe `{args.recipe}`, seeds {', '.join(map(str, args.seeds))}, "
        f"{len(paths_a)} test images.",
        "",
        "| model | test accuracy per seed | mean +- sd |",
        "| --- | --- | --- |",
    ]
    for model, r in result["models"].items():
        per_seed = ", ".join(f"{100 * v:.2f} %" for v in r["accuracy"])
        lines.append(f"| {model} | {per_seed} | {100 * r['mean']:.2f} +- {100 * r['sd']:.2f} % |")
    lines += ["", f"McNemar ({a} vs {b}, same images, per seed):", ""]
    lines += [f"* seed {r['seed']}: {r['summary']}" for r in result["paired"]]
    out = Path(args.out)
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Publish a finished training run as a pretrained model with a model card.

    python scripts/publish_pretrained.py --run runs/neurallnet-aria --name neurallnet-aria \
        --data ../shared/data/all-aria-dev --recipe configs/neurallnet-aria.yaml

Writes ``pretrained/<name>.pt`` (the run's best checkpoint, self-describing, loadable with
``weights_only=True``), ``pretrained/<split-name>.split.json`` (which dev images were train /
val / test), ``pretrained/<name>.json`` (the machine-readable card) and
``pretrained/<name>.md`` (the card). Every figure in the card is measured here: the
validation and test splits are re-evaluated (bootstrap CIs, grayscale and stain-jitter
robustness), the SE gates' open rates are measured on the test split (for models with SE
blocks) and the batch-1 CPU latency is timed. ``--no-checkpoint`` writes the card
only (for ablations).

The published checkpoint keeps the hashes of its training and validation images (from
the run's ``best.pt``; runs older than these hashes get them computed from the split
here, as ``scripts/add_training_hashes.py`` does), so ``neurall evaluate`` recognises
them anywhere; its ``metadata["split_file"]`` names the split file published beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurall_neuro.benchmarking import cpu_model, time_it  # noqa: E402
from neurall_neuro.data.dataset import ImageDataset  # noqa: E402
from neurall_neuro.data.layouts import load_cohort  # noqa: E402
from neurall_neuro.data.preprocess import Preprocessing  # noqa: E402
from neurall_neuro.data.sampling import sample_images  # noqa: E402
from neurall_neuro.data.splits import Split  # noqa: E402
from neurall_neuro.evaluation.evaluator import evaluate  # noqa: E402
from neurall_neuro.evaluation.gates import gate_statistics, render_gate_table  # noqa: E402
from neurall_neuro.evaluation.training_images import (  # noqa: E402
    REMEMBERED_PARTS,
    TrainingImageHashes,
)
from neurall_neuro.explain.class_mean import class_mean_maps, plot_class_mean_maps  # noqa: E402
from neurall_neuro.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from neurall_neuro.models.summary import model_size  # noqa: E402

PAPER = {
    "accuracy": 0.9816,
    "accuracy_ci95": [0.9663, 0.9939],
    "parameters": "~0.3 M",
    "megabytes": 1.35,
    "cpu_latency_ms": 454.67,
    "gpu_latency_ms": 11.24,
}


def latency_ms(model: torch.nn.Module, size: int, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = {}
    with torch.inference_mode():
        if hasattr(model, "to_inference"):
            fast = model.to_inference(channels_last=True)
            out["fast_path"] = 1e3 * time_it(lambda: fast.run(x), repeats=30, warmup=3).median_s
            out["norse_reference"] = (
                1e3 * time_it(lambda: model.run_stepwise(x), repeats=15, warmup=2).median_s
            )
        else:
            out["eager"] = 1e3 * time_it(lambda: model(x), repeats=30, warmup=3).median_s
    return out


def saliency_figure(best, data: Path, split_file: Path, path: Path, title: str) -> Path:
    """Mean Grad-CAM (and SAM) map per true class over the test split: no image content."""
    test = Split.load(split_file).apply(load_cohort(data))["test"]
    batch = sample_images(test, best.preprocessing, class_names=best.class_names)
    result = class_mean_maps(best.model, batch.images, batch.labels, best.class_names)
    return plot_class_mean_maps(result, path, f"{title}: mean saliency per true class, test split")


def se_gate_statistics(best, data: Path, split_file: Path) -> dict:
    """Open rates of the SE gates over the test split, the images ``evaluate`` scores
    (``GateStatistics.to_dict()``; no layers for a model without SE gates)."""
    test = Split.load(split_file).apply(load_cohort(data, bad_images="skip"))["test"]
    dataset = ImageDataset(test, Preprocessing.from_dict(best.preprocessing), augment=False)
    return gate_statistics(best.model, dataset, device="cpu", progress=False).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--recipe", default="")
    parser.add_argument("--hardware", default=f"{cpu_model()}, {os.cpu_count()} cores (CPU only)")
    parser.add_argument(
        "--note", action="append", default=[], help="extra limitation / remark (repeatable)"
    )
    parser.add_argument("--no-checkpoint", action="store_true")
    parser.add_argument(
        "--split-name",
        default=None,
        help="name of the split file (default: --name); runs sharing one split share the file",
    )
    parser.add_argument("--out", type=Path, default=Path("pretrained"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("NEURALL_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)

    run = args.run
    config = yaml.safe_load((run / "config.yaml").read_text())
    with (run / "metrics.csv").open() as fh:
        epochs = list(csv.DictReader(fh))
    best = load_checkpoint(run / "best.pt")
    best_epoch = min(epochs, key=lambda r: float(r["val_loss"]))
    train_time_s = sum(float(r["time_s"]) for r in epochs)
    size = model_size(best.model)
    args.out.mkdir(parents=True, exist_ok=True)
    split_path = args.out / f"{args.split_name or args.name}.split.json"
    shutil.copyfile(run / "split.json", split_path)

    sections = {}
    for part in ("val", "test"):
        result = evaluate(
            best,
            args.data,
            split_file=run / "split.json",
            split=part,
            robustness=("grayscale", "stain-jitter"),
            bootstrap=2000,
            seed=0,
            device="cpu",
            progress=False,
            overlap_check=False,
        )
        sections[part] = result.to_dict()
    card = {
        "name": args.name,
        "model": best.model_name,
        "config": best.config,
        "class_names": best.class_names,
        "preprocessing": best.preprocessing,
        "parameters": size.parameters,
        "fp32_megabytes": round(size.fp32_megabytes, 4),
        "data": {
            "dataset": "ALL image dataset (Aria, Ghaderzadeh et al., Taleqani hospital), development portion: "
            "2,604 of 3,256 images; 20 % of the dataset is held out elsewhere and was never seen here",
            "citation": "M. Aria, M. Ghaderzadeh et al., Kaggle 2021, DOI 10.34740/KAGGLE/DSV/2175623",
            "split": "class-stratified train/val/test of the development images, near-duplicate frames grouped "
            "(dedup check), seed 0",
            "split_file": split_path.name,
            "sizes": {
                k: len(v)
                for k, v in json.loads(split_path.read_text()).items()
                if k in ("train", "val", "test")
            },
        },
        "training": {
            "recipe": args.recipe,
            "command": f"neurall train --config {args.recipe} --data DIR --out RUN"
            if args.recipe
            else "",
            "epochs": len(epochs),
            "best_epoch": int(best_epoch["epoch"]),
            "train_time_min": round(train_time_s / 60, 1),
            "hardware": args.hardware,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "optimizer": f"Adam lr {config['lr']} weight decay {config['weight_decay']}, {config['scheduler']} schedule, "
            f"batch {config['batch_size']}, class-balanced loss, augmentation on",
        },
        "validation": sections["val"],
        "test": sections["test"],
        "latency_ms_batch1_cpu": latency_ms(
            best.model, int(best.preprocessing["size"]), args.threads
        ),
        "latency_threads": args.threads,
        "saliency_figure": saliency_figure(
            best, args.data, run / "split.json", args.out / f"{args.name}.saliency.png", args.name
        ).name,
        "se_gates": se_gate_statistics(best, args.data, run / "split.json"),
        "paper_neurallnet": PAPER,
        "notes": args.note,
        "checkpoint": None if args.no_checkpoint else f"{args.name}.pt",
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(card, indent=2))
    (args.out / f"{args.name}.md").write_text(render_card(card))
    if not args.no_checkpoint:
        save_checkpoint(
            args.out / f"{args.name}.pt",
            best.model,
            best.class_names,
            best.preprocessing,
            metadata={
                **best.metadata,
                "published_as": args.name,
                "card": f"{args.name}.md",
                "split_file": split_path.name,
            },
            image_hashes=best.image_hashes or run_image_hashes(args.data, run / "split.json"),
        )
    print(f"wrote {args.out / args.name}.{{json,md}}" + ("" if args.no_checkpoint else " and .pt"))


def run_image_hashes(data: Path, split_file: Path) -> dict:
    """The ``image_hashes`` entry of a run trained before checkpoints stored it."""
    parts = Split.load(split_file).apply(load_cohort(data))
    return TrainingImageHashes.from_cohorts({p: parts[p] for p in REMEMBERED_PARTS}).to_payload()


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _ci(ci: list[float]) -> str:
    return f"{100 * ci[0]:.2f}–{100 * ci[1]:.2f}"


def render_card(card: dict) -> str:
    t, v = card["test"], card["validation"]
    lines = [
        f"# Model card: `{card['name']}`",
        "",
        f"`{card['model']}` trained on real peripheral blood smear images. "
        "Research use only; not a medical device, not validated for diagnosis.",
        "",
        "## Model",
        "",
        f"* Parameters: {card['parameters']:,} ({card['fp32_megabytes']:.2f} MB fp32).",
        f"* Config: `{json.dumps(card['config'])}`",
        f"* Input: {card['preprocessing']['size']} x {card['preprocessing']['size']} RGB, bilinear resize, "
        "scaled to [0, 1]" + (", CLAHE" if card["preprocessing"].get("clahe") else "") + ".",
        f"* Classes: {', '.join(card['class_names'])}.",
        "",
        "## Data and split",
        "",
        f"* {card['data']['dataset']}.",
        f"* {card['data']['split']}: train {card['data']['sizes']['train']}, val {card['data']['sizes']['val']}, "
        f"test {card['data']['sizes']['test']} images (`{card['data']['split_file']}`).",
        *(
            [
                "* The checkpoint stores hashes of its training and validation images (no image "
                "content): `neurall evaluate` counts and warns about evaluated images among them, "
                "and `--exclude-training` scores the others only (on the development folder: "
                "exactly the test split)."
            ]
            if card["checkpoint"]
            else []
        ),
        f"* Citation: {card['data']['citation']}.",
        "",
        "## Training",
        "",
        f"* Recipe: `{card['training']['recipe']}` — {card['training']['optimizer']}.",
        f"* {card['training']['epochs']} epochs, best validation loss at epoch {card['training']['best_epoch']}; "
        f"{card['training']['train_time_min']} min of training on {card['training']['hardware']} "
        f"(torch {card['training']['torch']}).",
        "",
        "## Results (internal split of the development images)",
        "",
        "| split | n | accuracy (95 % CI) | balanced accuracy | macro-F1 | AUROC (macro) | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in (("validation", v), ("test", t)):
        lines.append(
            f"| {name} | {s['n_images']} | {_pct(s['accuracy'])} ({_ci(s['accuracy_ci95'])}) | "
            f"{_pct(s['balanced_accuracy'])} | {_pct(s['macro_f1'])} | {s['auroc'].get('macro', float('nan')):.4f} | "
            f"{s['ece']:.4f} |"
        )
    lines += [
        "",
        "Per class on the test split:",
        "",
        "| class | sensitivity | specificity | PPV | NPV |",
        "|---|---|---|---|---|",
    ]
    for cls, m in t["per_class"].items():
        lines.append(
            f"| {cls} | {_pct(m['sensitivity'])} | {_pct(m['specificity'])} | {_pct(m['ppv'])} | {_pct(m['npv'])} |"
        )
    lines += [
        "",
        "Robustness on the test split (colour shortcuts):",
        "",
        "| input | accuracy (95 % CI) | balanced accuracy | macro-F1 | accuracy change |",
        "|---|---|---|---|---|",
        f"| as is | {_pct(t['accuracy'])} ({_ci(t['accuracy_ci95'])}) | {_pct(t['balanced_accuracy'])} | "
        f"{_pct(t['macro_f1'])} | |",
    ]
    for name, r in t.get("robustness", {}).items():
        lines.append(
            f"| {name} | {_pct(r['accuracy'])} ({_ci(r['accuracy_ci95'])}) | {_pct(r['balanced_accuracy'])} | "
            f"{_pct(r['macro_f1'])} | {-100 * r['drop']['accuracy']:+.2f} points |"
        )
    lines += [
        "",
        f"Where the model looks: [mean saliency per true class]({card['saliency_figure']}) over the "
        "test split (Grad-CAM"
        + (" and SAM" if "fast_path" in card["latency_ms_batch1_cpu"] else "")
        + " of the last spiking/convolutional stage; averaged maps only, no image content).",
    ]
    lat = card["latency_ms_batch1_cpu"]
    lat_text = ", ".join(f"{k.replace('_', ' ')} {ms:.1f} ms" for k, ms in lat.items())
    p = card["paper_neurallnet"]
    lines += [
        "",
        f"Batch-1 CPU latency ({card['latency_threads']} threads, median): {lat_text}.",
        "",
        f"NeurALLNet paper, for reference (its own split, hardware and resolution): accuracy {_pct(p['accuracy'])} "
        f"(95 % CI {_ci(p['accuracy_ci95'])}), {p['parameters']} parameters, {p['megabytes']} MB, "
        f"{p['cpu_latency_ms']} ms CPU / {p['gpu_latency_ms']} ms GPU per image.",
        *gate_section(card),
        "## Limitations",
        "",
        "* All figures come from one hospital's development images split by us; the held-out 20 % of the "
        "dataset and external cohorts are not reflected here. The file names carry no patient ids, so the split "
        "groups near-duplicate frames, not patients: images of one patient can sit on both sides.",
        "* Colour is a strong cue in this dataset (staining differs by class); the robustness rows above show how "
        "much the model relies on it.",
        "* Per-image saliency overlays are not shipped because they reproduce the licensed images (the class-mean "
        "maps above carry no image content); make overlays locally with "
        f"`neurall explain --checkpoint {'pretrained/' + card['checkpoint'] if card['checkpoint'] else 'RUN/best.pt'} "
        "--data DIR --n 8 --out maps`.",
        *[f"* {n}" for n in card["notes"]],
        "",
    ]
    return "\n".join(lines)


def gate_section(card: dict) -> list[str]:
    """The "SE gate statistics" section (nothing for cards written before it existed)."""
    gates = card.get("se_gates")
    if gates is None:
        return [""]
    threshold = f"{100 * gates['always_open_threshold']:g} %"
    always = gates["always_open_layers"]
    lines = [
        "",
        "## SE gate statistics",
        "",
    ]
    if gates["layers"]:
        lines += [
            f"How often each SE gate lets its channel through, over the {gates['n_images']} test "
            "images: a gate neuron-step is one channel of one image at one timestep; it is open "
            "when the spiking gate fires (analog gates: gate value >= "
            f"{gates['analog_open_at']:g}). Per image: the layer's open rate on one image, "
            "across images; per channel: the channels' open rates and the largest spread of one "
            "channel's per-image open rate across images. A layer open on at least "
            f"{threshold} of its neuron-steps is flagged as always open: it is nearly an identity "
            "that still costs its squeeze, excitation and gating operations.",
            "",
        ]
    lines += [render_gate_table(gates), ""]
    if always:
        lines += [f"Always open (>= {threshold}): {', '.join(f'`{n}`' for n in always)}.", ""]
    return lines


if __name__ == "__main__":
    main()

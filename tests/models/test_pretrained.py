"""The shipped checkpoints under ``pretrained/``: self-describing, small, plain state dicts,
evaluable with no flags on any folder in the ALL image dataset's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from neurall_neuro.cli.main import main
from neurall_neuro.data.shared_data import shared_dataset
from neurall_neuro.data.synth import generate_cohort
from neurall_neuro.models.checkpoint import load_checkpoint

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
NAMES = ["neurallnet-aria", "se-cnn-aria"]
CARD_KEYS = {"data", "training", "validation", "test", "parameters", "latency_ms_batch1_cpu"}


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_is_small_self_describing_and_weights_only(name: str) -> None:
    path = PRETRAINED / f"{name}.pt"
    assert path.stat().st_size <= 5 * 1024 * 1024
    raw = torch.load(path, weights_only=True, map_location="cpu")  # plain tensors and values
    assert isinstance(raw, dict)
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == ["Benign", "Early", "Pre", "Pro"]
    size = int(ckpt.preprocessing["size"])
    with torch.inference_mode():
        scores = ckpt.model(torch.rand(2, 3, size, size))
    assert scores.shape == (2, 4)
    card = json.loads((PRETRAINED / f"{name}.json").read_text())
    assert set(card) >= CARD_KEYS
    assert card["parameters"] == sum(p.numel() for p in ckpt.model.parameters())
    lo, hi = card["test"]["accuracy_ci95"]
    assert lo <= card["test"]["accuracy"] <= hi
    assert (PRETRAINED / f"{name}.md").read_text().startswith("# Model card")
    split = json.loads((PRETRAINED / card["data"]["split_file"]).read_text())
    assert not set(split["train"]) & set(split["test"])


def write_aria_layout(root: Path, n_per_class: int) -> Path:
    """A folder in the ALL image dataset's own layout (``Original/<class>/*.jpg``), made
    from generated cells (the real images never enter the repository)."""
    cohort = generate_cohort(root / "gen", n_per_class=n_per_class, size=64, seed=1)
    aria = root / "aria"
    for rec in cohort.records:
        dst = aria / "Original" / cohort.class_names[rec.label] / (Path(rec.path).stem + ".jpg")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.open(rec.path).convert("RGB").resize((224, 224)).save(dst, quality=92)
    return aria


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_needs_no_flags(name: str, tmp_path: Path) -> None:
    data = write_aria_layout(tmp_path, n_per_class=3)
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(PRETRAINED / f"{name}.pt"), "--data", str(data)]
    assert main([*argv, "--out", str(out)]) == 0
    metrics = json.loads(next(out.rglob("*metrics*.json")).read_text())
    assert metrics["n_images"] == 12


ARIA = shared_dataset("all-aria-dev")


@pytest.mark.realdata
@pytest.mark.skipif(ARIA is None, reason="shared data all-aria-dev not present")
@pytest.mark.parametrize("name", NAMES)
def test_pretrained_on_its_own_real_test_split(name: str) -> None:
    """Re-measure a slice of the card's test figure on the real images (when present)."""
    from neurall_neuro.evaluation.evaluator import evaluate

    card = json.loads((PRETRAINED / f"{name}.json").read_text())
    ckpt = load_checkpoint(PRETRAINED / f"{name}.pt")
    result = evaluate(
        ckpt, ARIA, split_file=PRETRAINED / card["data"]["split_file"], split="test",
        bootstrap=100, seed=0, device="cpu", progress=False, overlap_check=False,
    )  # fmt: skip
    assert result.n_images == card["test"]["n_images"]
    assert result.accuracy == pytest.approx(card["test"]["accuracy"], abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_remembers_its_split_by_hash(name: str) -> None:
    """The shipped checkpoints store hashes of their training and validation images
    (sizes as in the split file), no image content."""
    from neurall_neuro.evaluation.training_images import checkpoint_image_hashes

    card = json.loads((PRETRAINED / f"{name}.json").read_text())
    hashes = checkpoint_image_hashes(load_checkpoint(PRETRAINED / f"{name}.pt"))
    assert hashes is not None
    sizes = card["data"]["sizes"]
    assert hashes.counts() == {"train": sizes["train"], "val": sizes["val"]}
    assert (
        load_checkpoint(PRETRAINED / f"{name}.pt").metadata["split_file"]
        == card["data"]["split_file"]
    )


@pytest.mark.realdata
@pytest.mark.skipif(ARIA is None, reason="shared data all-aria-dev not present")
@pytest.mark.parametrize("name", NAMES)
def test_pretrained_finds_its_training_images_in_the_dev_folder(name: str) -> None:
    """Hashes alone (no split file) find the 1,823 training and 389 validation images among
    the 2,604 development images; the rest is exactly the split's test part."""
    from neurall_neuro.data.layouts import load_cohort
    from neurall_neuro.data.splits import Split, record_key
    from neurall_neuro.evaluation.training_images import check_training_images

    cohort = load_cohort(ARIA)
    found = check_training_images(
        cohort, load_checkpoint(PRETRAINED / f"{name}.pt"), progress=False
    )
    assert found is not None and found.n_evaluated == 2604
    assert (found.count("train", "exact"), found.count("val", "exact")) == (1823, 389)
    assert found.count("train", "near") == found.count("val", "near") == 0
    test = set(Split.load(PRETRAINED / "aria-dev.split.json").test)
    assert {record_key(cohort, i) for i in found.held_out_indices()} == test

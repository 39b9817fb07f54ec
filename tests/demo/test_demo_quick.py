"""``neurall demo --quick`` end to end on tiny settings: every stage runs for real and the
report and its JSON sections are filled with measured values."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from neurall_neuro.cli.demo_stages import STAGES
from neurall_neuro.cli.main import main

HAVE_LAVA = importlib.util.find_spec("lava") is not None


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    argv = ["demo", "--quick", "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--epochs", "1", "--n-per-class", "12"]) == 0
    return out


def test_report_has_every_section_done(demo_dir: Path) -> None:
    report = (demo_dir / "report.md").read_text()
    assert "Not clinical evidence" in report
    for index, stage in enumerate(STAGES, start=1):
        assert f"## {index}. {stage.title}" in report
        assert re.search(rf"\| {index} \| {re.escape(stage.title)} \| done \|", report), stage.key
        assert (demo_dir / f"{stage.key}.json").is_file(), stage.key
    # every embedded figure exists
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(figures) >= 6
    for fig in figures:
        assert (demo_dir / fig).stat().st_size > 0, fig


def load(demo_dir: Path, key: str) -> dict:
    return json.loads((demo_dir / f"{key}.json").read_text())


def test_json_sections_hold_measured_values(demo_dir: Path) -> None:
    data = load(demo_dir, "data")
    assert sum(data["class_counts"].values()) == 48
    split = load(demo_dir, "split")
    assert sum(split["sizes"].values()) == 48 and split["cross_split_duplicates"] == 0

    models = {m["model"]: m for m in load(demo_dir, "train")["models"]}
    assert set(models) == {"neurallnet", "se-cnn", "neurallnet-nose", "se-cnn-nose"}
    for m in models.values():
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["parameters"] > 0
        lo, hi = m["test_accuracy_ci95"]
        assert lo <= m["test_accuracy"] <= hi

    evaluation = load(demo_dir, "evaluate")
    for name in ("neurallnet", "se-cnn"):
        assert evaluation[name]["n_images"] == split["sizes"]["test"]
        assert set(evaluation[name]["per_class"]) == {"Benign", "Early", "Pre", "Pro"}

    export = load(demo_dir, "export")
    assert export["nir"]["bytes"] > 0 and (demo_dir / export["nir"]["file"]).is_file()

    deploy = {t["target"]: t for t in load(demo_dir, "deploy")["targets"]}
    assert deploy["torch"]["status"] == "ok"
    assert deploy["torch"]["agreement_with_norse"] == 1.0
    assert deploy["loihi-emu"]["status"] == "ok"
    assert (
        deploy["lava-sim"]["status"] == "ok"
        if HAVE_LAVA
        else deploy["lava-sim"]["status"] != "failed"
    )

    energy = load(demo_dir, "energy")
    assert energy["snn"]["totals"]["neuron_updates"] > 0 and energy["cnn"]["totals"]["macs"] > 0
    assert energy["snn"]["totals"]["synops"] <= energy["snn"]["totals"]["synops_dense"]
    assert any(r["snn_profile"] == "loihi" for r in energy["ratios"])

    bench = load(demo_dir, "benchmark")
    assert bench["rows"] and all(r["value"] > 0 for r in bench["rows"])
    assert bench["environment"]["torch_version"]

"""The report API and its renderings (JSON, CSV, Markdown, rich table, PNG plot)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from energy.plot import plot_report
from energy.render import render, to_csv, to_json, to_markdown
from energy.report import EnergyReport, energy_report


@pytest.fixture
def report(tiny_snn, tiny_cnn, images) -> EnergyReport:
    return energy_report(
        tiny_snn, tiny_cnn, images, profiles="45nm-fp32,45nm-int8,loihi", batch_size=2, data="test"
    )


def test_report_fields(report: EnergyReport) -> None:
    assert report.snn is not None and report.cnn is not None
    assert report.snn.parameters == sum(p.numel() for p in report_model_params(report))
    assert report.snn.timesteps == 4 and report.cnn.timesteps == 1 and report.snn.samples == 4
    assert report.snn.fp32_bytes == 4 * report.snn.parameters
    assert 0 < report.snn.firing_rate < 1
    assert {e.profile for e in report.energies if e.role == "snn"} == {
        "45nm-fp32",
        "45nm-int8",
        "loihi",
    }
    assert {e.profile for e in report.energies if e.role == "cnn"} == {
        "45nm-fp32",
        "45nm-int8",
    }  # digital only
    assert len(report.ratios) == 3 * 2 and len(report.break_even) == 3 * 2 * 2
    ratio = report.ratio("45nm-int8", "45nm-int8")
    snn, cnn = report.energy("snn", "45nm-int8"), report.energy("cnn", "45nm-int8")
    assert ratio.arithmetic == pytest.approx(snn.arithmetic_pj / cnn.arithmetic_pj)
    assert ratio.with_memory == pytest.approx(snn.total_pj / cnn.total_pj)
    assert report.energy("snn", "loihi").host_pj > 0  # the direct-encoding conv runs on the host
    rows = {row.name: row for row in report.snn.layers}
    assert rows["body.conv2"].folded == "body.pool2" and rows["body.conv2"].op == "AC"
    assert rows["stem.conv"].op == "MAC" and rows["stem.conv"].steps == 1


def report_model_params(report: EnergyReport):  # noqa: ANN201 - helper
    import torch

    from neurall_neuro.models.registry import get_model

    torch.manual_seed(0)
    return get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=4).parameters()


def test_json_has_the_same_fields(report: EnergyReport) -> None:
    data = json.loads(to_json(report))
    assert set(data) == {
        "data",
        "snn",
        "cnn",
        "profiles",
        "energies",
        "ratios",
        "break_even",
        "assumptions",
        "notes",
    }
    assert data["snn"]["layers"][0]["name"] == "stem.conv"
    assert data["energies"][0]["total_pj"] == pytest.approx(report.energies[0].total_pj)


def test_csv_is_one_long_table(report: EnergyReport) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert set(rows[0]) == {"section", "model", "profile", "layer", "quantity", "value"}
    sections = {row["section"] for row in rows}
    assert {"model", "layer", "energy", "ratio", "break_even", "profile", "assumption"} <= sections
    synops = [
        r
        for r in rows
        if r["section"] == "totals" and r["model"] == "snn" and r["quantity"] == "synops"
    ]
    assert float(synops[0]["value"]) == pytest.approx(report.snn.totals["synops"])


def test_markdown_and_table(report: EnergyReport) -> None:
    text = to_markdown(report)
    for heading in ("## SNN", "## CNN", "## Energy per inference", "## SNN / CNN energy ratio",
                    "## Break-even firing rate", "## Profiles", "## Assumptions"):  # fmt: skip
        assert heading in text
    assert "Horowitz" in text and "body.conv2 (+body.pool2)" in text
    table = render(report, "table")
    assert "Energy per inference" in table and "loihi" in table


def test_plot_is_a_png(report: EnergyReport, tmp_path: Path) -> None:
    path = plot_report(report, tmp_path / "energy.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_needs_a_model_and_images(tiny_snn) -> None:
    from neurall_neuro.errors import ConfigError

    with pytest.raises(ConfigError, match="needs images"):
        energy_report(tiny_snn)
    with pytest.raises(ConfigError, match="unknown format"):
        render(None, "xml")  # type: ignore[arg-type]


def test_api_refuses_a_cnn_as_snn_and_an_snn_as_cnn(tiny_snn, tiny_cnn, images) -> None:
    from energy.sources import TorchModel
    from neurall_neuro.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'se-cnn' is a non-spiking model.*--cnn.*cnn="):
        energy_report(tiny_cnn, None, images)
    with pytest.raises(ConfigError, match=r"'neurallnet' is a spiking model.*--snn.*snn="):
        energy_report(None, tiny_snn, images)
    with pytest.raises(ConfigError, match=r"^b\.pt: 'se-cnn' is a non-spiking model"):
        energy_report(TorchModel(tiny_cnn, label="b.pt", name="se-cnn"), tiny_snn, images)


def test_energy_report_counts_a_nir_graph_like_the_model(tiny_snn, images) -> None:
    from conversion.nir_export import to_nir

    graph = to_nir(tiny_snn, example_input=images[:1])
    from_graph = energy_report(graph, None, images, target="torch", profiles="loihi")
    from_model = energy_report(tiny_snn, None, images, profiles="loihi")
    assert from_graph.snn.totals["synops"] == from_model.snn.totals["synops"]
    assert from_graph.snn.totals["neuron_updates"] == from_model.snn.totals["neuron_updates"]
    assert any("spike counts from" in note for note in from_graph.notes)


def test_table_rendering_is_never_truncated(report: EnergyReport) -> None:
    table = render(report, "table")
    assert "…" not in table and "\x1b[" not in table
    assert "body.conv2 (+body.pool2)" in table and "of which host" in table


def test_plot_is_single_column_and_renders(report: EnergyReport, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from energy.plot import DPI, WIDTH_IN

    with Image.open(plot_report(report, tmp_path / "energy.png")) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert width == round(WIDTH_IN * DPI) == 1050  # 3.5 in at 300 dpi
    assert 600 <= height <= 1800  # at most 6 in tall
    assert (pixels < 128).mean() > 0.01  # bars and text were drawn


def test_stage_grouping() -> None:
    from energy.plot import stage_of

    assert stage_of("features.stage3.se.fc1") == "stage 3"
    assert stage_of("body.conv2") == stage_of("body.lif2") == "stage 2"
    assert stage_of("body.se4.fc1") == "stage 4"
    assert stage_of("stem.conv") == "stem"
    assert stage_of("body.head_fc") == stage_of("readout") == stage_of("fc") == "head"

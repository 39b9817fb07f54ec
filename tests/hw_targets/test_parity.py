"""The parity report: every number on stated images, comparisons on the images both runs
ran, n/a (null plus a reason) where a statistic means nothing, readable speed units."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conversion.nir_export import to_nir
from hw_targets.parity import (
    MIN_CORRELATION_SAMPLES,
    REFERENCE,
    ParityReport,
    count_correlation,
    equal_fraction,
    firing_rate,
    format_latency,
    format_throughput,
    parity_report,
    plot_report,
    reference_layer_names,
    render_table,
    significant,
)
from neurall_neuro.errors import UnknownNameError
from neurall_neuro.models.registry import get_model

HAVE_LAVA = (
    importlib.util.find_spec("lava") is not None
    and importlib.util.find_spec("lava.magma") is not None
)
T = 3


@pytest.fixture(scope="module")
def firing_snn() -> tuple[torch.nn.Module, object, torch.Tensor, torch.Tensor]:
    """A tiny SE-SNN whose layers fire (BN biases raised), its NIR graph, 6 images, labels."""
    torch.manual_seed(0)
    snn = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=T).eval()
    with torch.no_grad():
        for module in snn.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(1.5)
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    return snn, to_nir(snn), images, labels


def _norse_rates(snn: torch.nn.Module, graph, images: torch.Tensor) -> dict[str, float]:
    """Norse's firing rate per NIR layer on ``images``, computed independently."""
    with torch.no_grad():
        ref = snn.run(images, timesteps=T, record=True)
    names = reference_layer_names(list(ref.spikes))
    return {
        names[k]: float(v.sum()) / (len(images) * T * int(np.prod(v.shape[2:])))
        for k, v in ref.spikes.items()
    }


def _norse_counts(snn: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        ref = snn.run(images, timesteps=T, record=True)
    names = reference_layer_names(list(ref.spikes))
    return {names[k]: v.flatten(2).sum(dim=(0, 2)).numpy() for k, v in ref.spikes.items()}


# --- the statistics --------------------------------------------------------------------------


def test_correlation_is_na_below_three_samples_and_without_variance() -> None:
    two = count_correlation(np.array([1, 5]), np.array([2, 9]), ("a", "b"))
    assert (
        two[0] is None and f"at least {MIN_CORRELATION_SAMPLES}" in two[1] and "2 samples" in two[1]
    )
    one = count_correlation(np.array([4]), np.array([4]), ("a", "b"))
    assert one == (None, "1 sample; a correlation needs at least 3")
    flat = count_correlation(np.array([3, 3, 3]), np.array([1, 2, 4]), ("lava-sim", "norse"))
    assert flat[0] is None and flat[1] == "zero variance (lava-sim: every sample 3)"
    value, reason = count_correlation(np.array([1, 2, 4]), np.array([2, 4, 8]), ("a", "b"))
    assert reason is None and value == pytest.approx(1.0)


def test_agreement_and_rates_over_no_images_are_na() -> None:
    value, reason = equal_fraction(np.array([]), np.array([]), "agreement")
    assert value is None and "0 images" in reason
    assert equal_fraction(np.array([1, 2]), np.array([1, 3]), "agreement") == (0.5, None)
    assert firing_rate(np.array([], dtype=np.int64), 10, T, "l")[0] is None
    rate, reason = firing_rate(np.array([3, 6]), None, T, "body.x")
    assert rate is None and "'body.x'" in reason
    assert firing_rate(np.array([3, 6]), 10, T, "l") == (4.5 / 30, None)


@pytest.mark.parametrize(
    ("img_per_s", "text"),
    [
        (0.0125, "80.0 s/img"),  # a 64 px SE-SNN in Lava: not "0.0 img/s"
        (0.2135, "4.68 s/img"),
        (1.0, "1.00 img/s"),
        (23.46, "23.5 img/s"),
        (345.72, "346 img/s"),
        (12345.4, "12345 img/s"),
        (None, "n/a"),
    ],
)
def test_throughput_has_readable_units(img_per_s: float | None, text: str) -> None:
    assert format_throughput(img_per_s) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [(80_000.0, "80.0 s"), (4683.89, "4.68 s"), (2.891, "2.89 ms"), (0.5, "500 us"), (None, "n/a")],
)
def test_latency_has_readable_units(ms: float | None, text: str) -> None:
    assert format_latency(ms) == text


def test_significant_digits() -> None:
    assert [significant(v) for v in (0.0123456, 2.891, 99.96, 1234.4, 0.0)] == [
        "0.0123",
        "2.89",
        "100",
        "1234",
        "0",
    ]


# --- real runs: a target on fewer images -----------------------------------------------------


def test_a_target_on_fewer_images_is_compared_on_the_images_it_ran(
    firing_snn, tmp_path: Path
) -> None:
    """loihi-emu on the first 2 of 6 images: its n, its Norse comparison, the pair with
    torch and the shared-images rates all use those 2 images; its correlation is n/a."""
    snn, graph, images, labels = firing_snn
    report = parity_report(
        snn, graph, images, labels, ["torch", "loihi-emu"], timesteps=T,
        max_samples={"loihi-emu": 2},
    )  # fmt: skip
    torch_t, emu = report.target("torch"), report.target("loihi-emu")
    assert (report.n, torch_t.n, emu.n) == (6, 6, 2)
    first2 = _norse_rates(snn, graph, images[:2])
    all6 = _norse_rates(snn, graph, images)
    for layer, rate in first2.items():
        # each target's reference is Norse on that target's own images
        assert emu.layers[layer].reference_firing_rate == pytest.approx(rate)
        assert torch_t.layers[layer].reference_firing_rate == pytest.approx(all6[layer])
        assert report.reference_firing_rates[layer] == pytest.approx(all6[layer])
        assert emu.layers[layer].count_correlation is None
        assert "2 samples" in emu.layers[layer].not_applicable["count_correlation"]
    counts6 = _norse_counts(snn, images)
    assert any(len(set(c.tolist())) > 1 for c in counts6.values()), "test needs varying counts"
    for layer, counts in counts6.items():
        entry = torch_t.layers[layer]
        if len(set(counts.tolist())) > 1:
            assert entry.count_correlation == pytest.approx(1.0)  # torch computes what Norse does
            assert "count_correlation" not in entry.not_applicable
        else:
            assert entry.count_correlation is None
            assert entry.not_applicable["count_correlation"].startswith("zero variance")

    pair = report.comparison("loihi-emu", "torch")
    assert pair.targets == ["torch", "loihi-emu"] and pair.n == 2
    assert pair.prediction_agreement is not None
    for layer, comp in pair.layers.items():
        torch_rate, emu_rate = comp.firing_rates["torch"], comp.firing_rates["loihi-emu"]
        assert emu_rate == pytest.approx(emu.layers[layer].firing_rate)  # emu ran 2 images
        assert comp.firing_rate_delta == pytest.approx(torch_rate - emu_rate)
        assert (
            comp.count_correlation is None
            and "2 samples" in comp.not_applicable["count_correlation"]
        )
        if layer in first2:
            assert torch_rate == pytest.approx(first2[layer])  # torch equals Norse, 2 images

    shared = report.shared
    assert shared is not None and shared.n == 2 and shared.targets == ["torch", "loihi-emu"]
    for layer, rate in first2.items():
        assert shared.firing_rates[layer][REFERENCE] == pytest.approx(rate)
        assert shared.firing_rates[layer]["loihi-emu"] == pytest.approx(
            emu.layers[layer].firing_rate
        )
    assert shared.agreement_with_norse["loihi-emu"] == emu.agreement_with_norse

    data = json.loads(report.to_json())  # strict JSON: n/a is null, never NaN
    emu_json = next(t for t in data["targets"] if t["target"] == "loihi-emu")
    assert emu_json["n"] == 2
    assert emu_json["layers"]["body.lif1"]["count_correlation"] is None
    assert (
        "needs at least 3" in emu_json["layers"]["body.lif1"]["not_applicable"]["count_correlation"]
    )
    assert data["comparisons"][0]["n"] == 2 and data["shared"]["n"] == 2
    assert ParityReport.from_dict(data) == report

    table = render_table(report)
    assert "img/s" in table and "n/a" in table
    pair_line = next(line for line in table.splitlines() if line.startswith("torch vs loihi-emu"))
    assert pair_line.split()[3] == "2", pair_line  # the pair's n

    path = plot_report(report, tmp_path / "parity.png")
    one_panel = plot_report(
        parity_report(snn, graph, images, labels, ["torch"], timesteps=T), tmp_path / "one.png"
    )
    with Image.open(path) as two, Image.open(one_panel) as one:
        assert two.size[1] > 1.6 * one.size[1]  # a second panel: the images every target ran


def test_failed_targets_are_not_compared(firing_snn) -> None:
    snn, graph, images, labels = firing_snn
    report = parity_report(
        snn, graph, images, labels, ["torch", "loihi-emu"], timesteps=T,
        target_options={"loihi-emu": {"input_mode": "bogus"}},
    )  # fmt: skip
    assert [t.status for t in report.targets] == ["ok", "failed"]
    assert report.comparisons == [] and report.shared is not None
    assert report.shared.n == 6 and report.shared.targets == ["torch"]
    with pytest.raises(UnknownNameError, match="valid options: \\(none registered\\)"):
        report.comparison("torch", "loihi-emu")
    with pytest.raises(UnknownNameError, match="lava-sim.*valid options: loihi-emu, torch"):
        report.target("lava-sim")


# --- lava-sim: the slow target on the first images only ---------------------------------------


@pytest.mark.lava
@pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed (Python 3.10 env)")
def test_lava_sim_is_compared_with_the_others_on_the_images_it_ran(
    firing_snn, tmp_path: Path
) -> None:
    """lava-sim on 2 of 6 images: bit-exact with loihi-emu on those 2 (identical counts,
    zero rate differences), correlations n/a, its own n everywhere."""
    snn, graph, images, labels = firing_snn
    report = parity_report(
        snn, graph, images, labels, ["torch", "loihi-emu", "lava-sim"], timesteps=T,
        max_samples={"lava-sim": 2},
    )  # fmt: skip
    assert [(t.target, t.status, t.n) for t in report.targets] == [
        ("torch", "ok", 6), ("loihi-emu", "ok", 6), ("lava-sim", "ok", 2),
    ]  # fmt: skip
    lava = report.target("lava-sim")
    assert lava.throughput_img_per_s is not None and lava.latency_ms_per_sample is not None
    pair = report.comparison("loihi-emu", "lava-sim")
    assert pair.n == 2 and pair.prediction_agreement == 1.0
    for layer, comp in pair.layers.items():
        assert comp.counts_equal_fraction == 1.0, layer
        assert comp.firing_rate_delta == 0.0, layer
        assert comp.count_correlation is None
        assert (
            comp.not_applicable["count_correlation"] == "2 samples; a correlation needs at least 3"
        )
    assert report.comparison("torch", "lava-sim").n == 2
    assert report.comparison("torch", "loihi-emu").n == 6
    shared = report.shared
    assert shared is not None and shared.n == 2
    for layer, rates in shared.firing_rates.items():
        assert rates["lava-sim"] == rates["loihi-emu"], layer  # the same images: bit-exact

    data = json.loads(report.to_json())
    lava_json = next(t for t in data["targets"] if t["target"] == "lava-sim")
    assert lava_json["n"] == 2
    assert all(v["count_correlation"] is None for v in lava_json["layers"].values())
    pair_json = next(p for p in data["comparisons"] if p["targets"] == ["loihi-emu", "lava-sim"])
    assert pair_json["n"] == 2 and pair_json["prediction_agreement"] == 1.0
    table = render_table(report)
    lava_line = next(line for line in table.splitlines() if line.startswith("lava-sim "))
    assert lava_line.split()[2] == "2" and "0.0 img/s" not in lava_line
    path = plot_report(report, tmp_path / "parity.png")
    assert path.stat().st_size > 0

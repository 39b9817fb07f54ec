"""Every file we export by default is portable: stock ``nir.read`` (nir 1.0.8, with its
type check) reads it, and snnTorch 1.0.0's importer builds and runs it where snnTorch
supports the node types, agreeing with our runtime.

The zoo is the model registry: every spiking model (plus the analog-SE variant, folded
with calibration images) is exported with the defaults of ``export_nir``; the non-spiking
models are refused by name (they contain ReLU / max pooling, which NIR cannot express).
snnTorch's importer runs one timestep per call at batch size 1 (its ``Flatten`` counts
the batch; see ``test_nir_snntorch.py``), with ``dt = 1e-4`` hard-coded: our zoo's dt.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nir
import pytest
import torch

from conversion.nir_export import export_nir
from conversion.nir_runtime import load_nir
from neurall_neuro.errors import UnsupportedModuleError
from neurall_neuro.models.registry import MODELS, get_model, list_models

_spec = importlib.util.spec_from_file_location(
    "nir_export_tests_portable", Path(__file__).with_name("test_nir_export.py")
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
images = _helpers.images
_zoo_spec = importlib.util.spec_from_file_location(
    "zoo_models", Path(__file__).parents[1] / "zoo_models.py"
)
zoo_models = sys.modules.setdefault("zoo_models", importlib.util.module_from_spec(_zoo_spec))
if not hasattr(zoo_models, "ZOO"):  # loaded once per process (shared with tests/zoo)
    _zoo_spec.loader.exec_module(zoo_models)
SNNTORCH_NODES, snntorch_scores = zoo_models.SNNTORCH_NODES, zoo_models.snntorch_scores
tiny = zoo_models.tiny

N_IMAGES, T = 12, 4


def zoo() -> list[tuple[str, dict]]:
    """(registry name, config overrides) of every spiking model, plus the analog SE mode."""
    entries = [(name, {}) for name in list_models() if MODELS.get(name).spiking]
    entries.append(("neurallnet", {"se_mode": "analog"}))
    return entries


@pytest.mark.parametrize(
    ("name", "overrides"), zoo(), ids=lambda v: v if isinstance(v, str) else str(v or "")
)
def test_zoo_exports_are_read_by_stock_nir_and_snntorch(tmp_path, name, overrides):
    model = tiny(name, overrides)
    calibration = images(16, seed=5) if overrides.get("se_mode") == "analog" else None
    path = tmp_path / "model.nir"
    graph = export_nir(model, path, calibration=calibration)  # the defaults: portable
    back = nir.read(path)  # stock reader with its type check: raises on what it rejects
    assert sorted(back.nodes) == sorted(graph.nodes)
    assert all(int(getattr(n, "groups", 1)) == 1 for n in back.nodes.values())

    x = images(N_IMAGES, seed=11)
    ours = load_nir(path).run(x).output.mean(0)
    types = {type(node).__name__ for node in back.nodes.values()}
    assert types <= SNNTORCH_NODES, f"{name}: snnTorch cannot import {types - SNNTORCH_NODES}"
    pytest.importorskip("snntorch")
    theirs = snntorch_scores(back, x, T)
    agreement = (ours.argmax(1) == theirs.argmax(1)).float().mean().item()
    print(f"{name} {overrides}: snnTorch vs runtime prediction agreement {agreement:.3f}")
    assert agreement >= 0.99
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in list_models() if not MODELS.get(n).spiking])
def test_non_spiking_zoo_models_are_refused_by_name(tmp_path, name):
    model = get_model(name, input_size=16, channels=[4, 8])
    with pytest.raises(UnsupportedModuleError, match="ReLU at 'features.stage1.relu1'"):
        export_nir(model, tmp_path / "refused.nir", example_input=torch.zeros(1, 3, 16, 16))


def test_dense_per_channel_maps_equal_the_grouped_ones():
    """The portable default writes per-channel maps as groups=1 convolutions with a diagonal
    channel matrix: the same outputs, counted as the same synapses."""
    from conversion.nir_builder import structural_groups
    from conversion.nir_export import graph_summary, to_nir

    model = _helpers.make_model("spiking")
    dense, grouped = to_nir(model), to_nir(model, se_broadcast="grouped")
    broadcast = dense.nodes["body.se3.broadcast"]
    assert int(broadcast.groups) == 1 and broadcast.weight.shape == (8, 8, 4, 4)
    assert structural_groups(broadcast.weight, 1) == 8
    assert graph_summary(dense)["parameters"] == graph_summary(grouped)["parameters"]
    x = images(8, seed=3)
    a, b = load_nir(dense).run(x, record=True), load_nir(grouped).run(x, record=True)
    assert torch.equal(a.output, b.output) and a.recorded["body.se3.and"].any()
    assert all(torch.equal(a.recorded[k], b.recorded[k]) for k in b.recorded)

    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.weight.normal_()
    alone = torch.nn.Sequential(torch.nn.AvgPool2d(2), bn).eval()
    x = torch.randn(2, 3, 6, 6)
    graph = to_nir(alone, example_input=x)
    assert int(graph.nodes["1"].groups) == 1 and structural_groups(graph.nodes["1"].weight, 1) == 3
    torch.testing.assert_close(load_nir(graph).run(x, timesteps=1).output[0], alone(x))

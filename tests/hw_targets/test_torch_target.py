"""The ``torch`` hardware target against the Norse SE-SNN it was exported from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from conversion.nir_export import export_nir, to_nir
from hw_targets.registry import BUILTIN_TARGET_MODULES, TARGETS
from hw_targets.torch_target import TorchTarget
from neurall_neuro.errors import ConfigError, TargetError

_spec = importlib.util.spec_from_file_location(
    "nir_export_tests", Path(__file__).parents[1] / "conversion" / "test_nir_export.py"
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_model, images = _helpers.make_model, _helpers.images

T = 4


def layer_of(node: str) -> str:
    """Norse layer name (``model.run(record=True)`` keys) of a NIR feature node."""
    parts = node.split(".")
    return parts[1]


@pytest.fixture(scope="module")
def spiking(tmp_path_factory):
    model = make_model("spiking")
    path = tmp_path_factory.mktemp("torch-target") / "spiking.nir"
    export_nir(model, path, class_names=["a", "b", "c", "d"])
    return model, path


def get_target(name: str) -> TorchTarget:
    # The registry's own get_target() also imports the other built-in targets; the torch
    # target is looked up directly so these tests depend on nothing else.
    return TARGETS.get(name)()


def test_registered_as_torch():
    assert "hw_targets.torch_target" in BUILTIN_TARGET_MODULES
    assert TARGETS.get("torch") is TorchTarget and TorchTarget.name == "torch"


def test_check_lists_problems(spiking, tmp_path):
    target = get_target("torch")
    _, path = spiking
    assert target.check(path) == []
    assert target.check(to_nir(make_model("none"))) == []

    class Custom(nir.NIRNode):
        def __init__(self):
            self.metadata = {}
            self.input_type = {"input": np.array([2])}
            self.output_type = {"output": np.array([2])}

    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "odd": Custom(),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "odd"), ("odd", "output")],
        type_check=False,
    )
    (problem,) = target.check(graph)
    assert "'odd'" in problem and "Custom" in problem and "LIF" in problem
    text = tmp_path / "x.nir"
    text.write_text("not a graph")
    assert "not an HDF5 file" in target.check(text)[0]
    lif = nir.LIF(tau=np.full(2, 2e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    no_dt = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "lif": lif,
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "lif"), ("lif", "output")],
    )
    assert "dt" in target.check(no_dt)[0]
    with pytest.raises(TypeError):
        target.check(42)


def test_run_matches_norse_predictions_and_spikes(spiking):
    model, path = spiking
    deployed = get_target("torch").compile(path, timesteps=T)
    x = images(12, seed=21)
    result = deployed.run(x)
    with torch.no_grad():
        ref = model.run(x, record=True)
    assert result.target == "torch" and result.timesteps == T and result.hardware_steps == T
    np.testing.assert_array_equal(result.predictions(), ref.logits.argmax(1).numpy())
    np.testing.assert_allclose(result.scores, ref.logits.double().numpy(), rtol=1e-6, atol=1e-6)
    for layer, spikes in ref.spikes.items():
        node = f"body.{layer}.and" if layer.startswith("se") else f"body.{layer}"
        want = spikes.flatten(2).sum(dim=(0, 2)).long().numpy()
        np.testing.assert_array_equal(result.spike_counts[node], want, err_msg=node)
    # the SE-internal neurons are counted as well
    assert {"body.se3.act1", "body.se3.act2", "body.se4.and"} <= set(result.spike_counts)
    assert result.extra["output_layer"] == "body.se4.and"
    np.testing.assert_array_equal(result.output_spikes, ref.spikes["se4"].numpy().astype(np.uint8))
    assert result.extra["output"].shape == (T, 12, 4)


def test_sequence_input_chunking_and_recording(spiking):
    model, path = spiking
    x = images(10, seed=22)
    target = get_target("torch")
    whole = target.compile(path, timesteps=T).run(x)
    chunked = target.compile(
        path, timesteps=T, batch_size=3, record=["body.lif2"], record_voltage=["body.lif1"]
    ).run(x.unsqueeze(0).expand(T, *x.shape))
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=1e-6, atol=1e-6)
    for name, counts in whole.spike_counts.items():
        np.testing.assert_array_equal(chunked.spike_counts[name], counts)
    with torch.no_grad():
        ref = model.run(x, record=True)
    np.testing.assert_array_equal(
        chunked.spikes["body.lif2"], ref.spikes["lif2"].numpy().astype(np.uint8)
    )
    assert chunked.voltages["body.lif1"].shape == (T, 10, 4, 16, 16)


def test_bad_options_and_inputs():
    target = get_target("torch")
    graph = to_nir(make_model("none"))
    with pytest.raises(ConfigError, match="unknown option"):
        target.compile(graph, timesteps=T, speed="fast")
    with pytest.raises(ConfigError, match="timesteps"):
        target.compile(graph)
    with pytest.raises(ConfigError, match="unknown layer"):
        target.compile(graph, timesteps=T, record=["body.nope"])
    deployed = target.compile(graph, timesteps=T)
    with pytest.raises(ConfigError, match="timesteps"):
        deployed.run(torch.zeros(T + 1, 2, 3, 16, 16))
    if not torch.cuda.is_available():
        with pytest.raises(TargetError, match="CUDA"):
            target.compile(graph, timesteps=T, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_and_norse(spiking):
    model, path = spiking
    x = images(64, seed=23)
    target = get_target("torch")
    cpu = target.compile(path, timesteps=T).run(x)
    cuda = target.compile(path, timesteps=T, device="cuda").run(x)
    assert cuda.extra["device"].startswith("cuda")
    with torch.no_grad():
        norse = model.run(x).logits.argmax(1).numpy()
    assert (cuda.predictions() == norse).mean() >= 0.98
    assert (cuda.predictions() == cpu.predictions()).mean() >= 0.98
    for name, counts in cpu.spike_counts.items():
        total = max(int(counts.sum()), 1)
        assert np.abs(cuda.spike_counts[name] - counts).sum() / total < 0.01, name

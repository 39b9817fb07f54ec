"""The target API: registry, option validation, check() messages, graph inputs, results."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from hw_targets.base import Target
from hw_targets.loihi.netx import write_netx
from hw_targets.loihi.quantize import quantize_graph
from hw_targets.registry import TARGETS, get_target, list_targets, register_target
from neurall_neuro.errors import ConfigError, DuplicateNameError, TargetError, UnknownNameError


def test_registry_lists_and_gets_targets():
    names = list_targets()
    assert {"loihi-emu", "lava-sim"} <= set(names)
    assert get_target("loihi-emu").name == "loihi-emu"
    with pytest.raises(
        UnknownNameError,
        match="unknown hardware target 'loihi3'; valid options: .*lava-sim.*loihi-emu",
    ):
        get_target("loihi3")


def test_register_rejects_duplicates_and_non_targets():
    with pytest.raises(DuplicateNameError):
        register_target("loihi-emu")(type("Other", (Target,), {"check": None, "compile": None}))
    with pytest.raises(TypeError):
        register_target("not-a-target")(int)  # type: ignore[arg-type]
    assert "not-a-target" not in TARGETS


def test_options_are_validated(se_graph):
    target = get_target("loihi-emu")
    with pytest.raises(
        ConfigError, match="unknown option\\(s\\) timestep; valid options: .*timesteps"
    ):
        target.compile(se_graph(), timestep=4)
    with pytest.raises(ConfigError, match="timesteps must be a positive int"):
        target.compile(se_graph())
    with pytest.raises(TargetError, match="fixed point only"):
        target.compile(se_graph(), timesteps=4, precision="float")
    with pytest.raises(ConfigError, match="precision must be 'fixed' or 'float'"):
        target.compile(se_graph(), timesteps=4, precision="double")
    with pytest.raises(ConfigError, match="lava-sim runs on the CPU only"):
        get_target("lava-sim").compile(se_graph(), timesteps=4, device="cuda")
    with pytest.raises(ConfigError, match="record: unknown layer\\(s\\) nope"):
        target.compile(se_graph(), timesteps=4, record=["nope"])
    with pytest.raises(ConfigError, match="bias_schedule must be one of network, depth, none"):
        target.compile(se_graph(), timesteps=4, bias_schedule="later")


def test_check_lists_unsupported_nodes_without_running(se_graph):
    graph = se_graph()
    assert get_target("loihi-emu").check(graph) == []
    assert get_target("lava-sim").check(graph) == []
    graph.nodes["se_gate"] = nir.Threshold(threshold=np.full((6, 1, 1), 0.5))
    for name in ("loihi-emu", "lava-sim"):
        problems = get_target(name).check(graph)
        assert (
            len(problems) == 1
            and "'se_gate' (Threshold)" in problems[0]
            and "supported:" in problems[0]
        )


def test_check_of_files_and_backends(tmp_path, chain_graph):
    bad = tmp_path / "bad.net"
    bad.write_text("not hdf5")
    assert "not an HDF5 file" in get_target("loihi-emu").check(bad)[0]
    net = quantize_graph(chain_graph(), timesteps=5, netx_compatible=True)
    path = write_netx(net, tmp_path / "chain.net")
    assert get_target("lava-sim").check(path) == []
    problems = get_target("lava-sim").check(path, backend="netx", precision="float")
    assert problems == [
        "backend='netx' runs fixed point only (its neuron parameters are fixed-point values)"
    ]
    assert "needs a netx file" in get_target("lava-sim").check(net, backend="netx")[0]
    nir_path = tmp_path / "chain.nir"
    nir.write(nir_path, chain_graph())
    assert get_target("loihi-emu").check(nir_path) == []


def test_graph_inputs_nir_file_netx_file_and_network(tmp_path, chain_graph):
    images = np.random.default_rng(0).uniform(0, 1, (2, 2, 6, 6))
    graph = chain_graph()
    net = quantize_graph(graph, timesteps=5, calibration=images, netx_compatible=True)
    nir_path = tmp_path / "chain.nir"
    nir.write(nir_path, graph)
    netx_path = write_netx(net, tmp_path / "chain.net")
    target = get_target("loihi-emu")
    q = {"calibration": images, "netx_compatible": True}
    results = [
        target.compile(graph, timesteps=5, quantization=q).run(images),
        target.compile(nir_path, timesteps=5, quantization=q).run(images),
        target.compile(net, timesteps=5).run(images),
        target.compile(netx_path, timesteps=5).run(images),
    ]
    for res in results[1:]:
        np.testing.assert_array_equal(res.scores, results[0].scores)
        np.testing.assert_array_equal(res.output_spikes, results[0].output_spikes)
    res = results[0]
    assert res.target == "loihi-emu" and res.timesteps == 5 and res.wall_time_s > 0
    assert res.batch_size == 2 and res.output_spikes.dtype == np.uint8
    with pytest.raises(ConfigError, match=r"images must be \[B, 2, 6, 6\]"):
        target.compile(net, timesteps=5).run(np.zeros((2, 3, 6, 6)))
    biases = net.encoder.encode(images)
    by_bias = target.compile(net, timesteps=5, input_mode="bias").run(biases)
    np.testing.assert_array_equal(by_bias.scores, res.scores)


@pytest.fixture
def count_quantize(monkeypatch):
    """Count calls of quantize_graph (the Loihi targets look it up when they quantise)."""
    import hw_targets.loihi.quantize as quantize

    calls: list[dict] = []
    real = quantize.quantize_graph

    def counting(graph, **options):
        calls.append(options)
        return real(graph, **options)

    monkeypatch.setattr(quantize, "quantize_graph", counting)
    return calls


def test_check_validates_without_quantising(se_graph, count_quantize, tmp_path):
    graph = se_graph()
    assert get_target("loihi-emu").check(graph) == []
    assert get_target("lava-sim").check(graph) == []
    nir_path = tmp_path / "se.nir"
    nir.write(nir_path, graph)
    assert get_target("loihi-emu").check(nir_path) == []
    assert count_quantize == []
    # structural problems found without quantising: a pool that is not folded into a layer
    bad = se_graph()
    bad.edges = [e for e in bad.edges if e != ("pool2", "conv2")] + [("pool2", "lif2")]
    bad.edges = [e for e in bad.edges if e != ("conv2", "lif2")]
    del bad.nodes["conv2"]
    (problem,) = get_target("loihi-emu").check(bad)
    assert "pool must be followed by a Conv2d" in problem and count_quantize == []


def test_lowered_graphs_quantise_once_per_options(se_graph, count_quantize):
    from hw_targets.loihi.network import LoihiNetwork
    from hw_targets.parity import LoweredGraphs

    graph = se_graph()
    images = np.random.default_rng(0).uniform(0, 1, (2, 3, 8, 8))
    emu, lava = get_target("loihi-emu"), get_target("lava-sim")
    lowered = LoweredGraphs(graph)
    first = lowered.get(emu, {"timesteps": 6, "device": "cpu"})
    assert isinstance(first, LoihiNetwork) and len(count_quantize) == 1
    assert lowered.get(lava, {"timesteps": 6, "precision": "float"}) is first
    calibrated = lowered.get(emu, {"timesteps": 6, "quantization": {"calibration": images}})
    same = lowered.get(lava, {"timesteps": 6, "quantization": {"calibration": images.copy()}})
    assert calibrated is same and calibrated is not first and len(count_quantize) == 2
    assert lowered.get(get_target("torch"), {"timesteps": 6}) is graph
    # compiling the lowered network equals compiling the graph
    direct = emu.compile(graph, timesteps=6, quantization={"calibration": images}).run(images)
    shared = emu.compile(same, timesteps=6, quantization={"calibration": images}).run(images)
    np.testing.assert_array_equal(direct.scores, shared.scores)
    np.testing.assert_array_equal(direct.output_spikes, shared.output_spikes)


def test_parity_report_quantises_the_graph_once(count_quantize):
    import torch

    from conversion.nir_export import to_nir
    from hw_targets.parity import parity_report
    from neurall_neuro.models.registry import get_model

    torch.manual_seed(0)
    snn = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=2).eval()
    images = torch.rand(2, 3, 16, 16)
    report = parity_report(
        snn, to_nir(snn), images, torch.tensor([0, 1]), ["torch", "loihi-emu"], timesteps=2
    )
    assert [t.status for t in report.targets] == ["ok", "ok"]
    assert len(count_quantize) == 1  # check() does not quantise; compile() does, once

"""NIR-graph counting: hand-built graphs, and agreement with the hook counter on one model."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from energy.nir_counter import count_nir, spike_counts_from_runtime
from energy.torch_counter import count_model
from neurall_neuro.errors import ConfigError, UnsupportedNodeError

AGREEING = (
    "synops",
    "synops_dense",
    "macs",
    "macs_dense",
    "neuron_updates",
    "spikes",
    "bias_adds",
    "adds",
    "mults",
)


def _lif(shape: tuple[int, ...]) -> nir.LIF:
    return nir.LIF(
        tau=np.full(shape, 2e-4),
        r=np.ones(shape),
        v_leak=np.zeros(shape),
        v_threshold=np.ones(shape),
    )


def _graph(metadata: dict | None = None) -> nir.NIRGraph:
    """input (1, 4, 4) -> conv 3x3 pad 1 (2 ch) -> lif1 -> avgpool 2 -> conv 1x1 (3 ch, bias)
    -> lif2 -> avgpool 2 (global) -> flatten -> affine (3 -> 2) -> output."""
    conv1 = nir.Conv2d(
        input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
        bias=np.zeros(2),
    )  # fmt: skip
    conv2 = nir.Conv2d(
        input_shape=(2, 2), weight=np.ones((3, 2, 1, 1)), stride=1, padding=0, dilation=1, groups=1,
        bias=np.full(3, 0.5),
    )  # fmt: skip
    pool = {
        "kernel_size": np.array([2, 2]),
        "stride": np.array([2, 2]),
        "padding": np.array([0, 0]),
    }
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv1": conv1,
        "lif1": _lif((2, 4, 4)),
        "pool": nir.AvgPool2d(**pool),
        "conv2": conv2,
        "lif2": _lif((3, 2, 2)),
        "gap": nir.AvgPool2d(**pool),
        "flat": nir.Flatten(input_type={"input": np.array([3, 1, 1])}, start_dim=0),
        "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    order = list(nodes)
    edges = list(zip(order[:-1], order[1:], strict=True))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {})


def _spike_counts() -> dict[str, np.ndarray]:
    lif1 = np.zeros((2, 4, 4))
    lif1[0, 0, 0] = 3  # three spikes of one neuron over time
    lif1[1, 2, 3] = 1
    lif2 = np.zeros((3, 2, 2))
    lif2[2, 1, 1] = 2
    return {"lif1": lif1, "lif2": lif2}


def test_hand_built_graph_by_hand() -> None:
    counts = count_nir(_graph(), _spike_counts(), timesteps=4, samples=1, static_input=True)
    conv1, conv2, fc = counts.layer("conv1"), counts.layer("conv2"), counts.layer("fc")
    spatial = 4 * 4 + 8 * 6 + 4 * 9
    assert (conv1.op, conv1.steps, conv1.macs_dense, conv1.bias_adds) == ("MAC", 1, 2 * spatial, 0)
    # pool + 1x1 conv folded: every lif1 spike reaches the 3 channels of its pooled position
    assert (conv2.folded, conv2.synops, conv2.synops_dense) == ("pool", 4 * 3, 4 * 2 * 16 * 3)
    assert conv2.bias_adds == 4 * 3 * 2 * 2
    # global pool + flatten + affine folded: each lif2 spike reaches both outputs
    assert (fc.folded, fc.synops, fc.synops_dense) == ("gap", 2 * 2, 4 * 12 * 2)
    assert counts.layer("lif1").neuron_updates == 4 * 32 and counts.layer("lif1").spikes == 4
    assert [layer.name for layer in counts.layers] == ["conv1", "lif1", "conv2", "lif2", "fc"]


def test_static_input_and_readout_from_metadata() -> None:
    graph = _graph({"timesteps": 4, "input_encoding": "per_step", "readout": "mean_over_time"})
    counts = count_nir(graph, _spike_counts())
    assert counts.timesteps == 4 and counts.layer("conv1").steps == 4  # per-step input: T times
    readout = counts.layer("readout")
    assert (readout.neuron_updates, readout.firing_rate) == (4 * 2, None)


def test_neurobench_view_counts_pools_as_layers() -> None:
    counts = count_nir(_graph(), _spike_counts(), timesteps=4, fold_pooling=False)
    assert counts.layer("pool").adds == 4 * 2 * 4 * 3
    assert counts.layer("conv2").op == "MAC"


def test_total_counts_are_an_approximation() -> None:
    totals = {"lif1": 4, "lif2": 2}
    counts = count_nir(_graph(), totals, timesteps=4)
    assert counts.layer("conv2").synops == 4 * 3  # uniform fan-out here: exact anyway
    assert any("mean fan-out" in note for note in counts.notes)


def test_missing_and_bad_counts_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="no spike counts for node 'lif1'"):
        count_nir(_graph(), {"lif2": 1}, timesteps=4)
    with pytest.raises(ConfigError, match="output shape"):
        count_nir(_graph(), {"lif1": np.zeros((3, 3)), "lif2": 0}, timesteps=4)
    with pytest.raises(ConfigError, match="unknown node"):
        count_nir(_graph(), {**_spike_counts(), "nope": 1}, timesteps=4)
    with pytest.raises(ConfigError, match="timesteps"):
        count_nir(_graph(), _spike_counts())


def test_threshold_delay_and_unsupported_nodes() -> None:
    graph = _graph()
    graph.nodes["fc"] = nir.Threshold(threshold=np.ones(3))  # a stateless spiking population
    graph.nodes["output"] = nir.Output(output_type={"output": np.array([3])})
    counts = count_nir(graph, {**_spike_counts(), "fc": 5}, timesteps=4)
    assert (counts.layer("fc").kind, counts.layer("fc").spikes) == ("lif", 5)
    assert counts.layer("gap").kind == "avgpool"  # feeds no synapse: counted, not folded
    graph.nodes["fc"] = nir.Delay(delay=np.ones(3))  # pass-through: no operations
    assert "fc" not in [
        layer.name for layer in count_nir(graph, _spike_counts(), timesteps=4).layers
    ]
    conv1d = nir.Conv1d(
        input_shape=5,
        weight=np.ones((1, 1, 3)),
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        bias=np.zeros(1),
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 5])}),
            "conv": conv1d,
            "lif": _lif((1, 5)),
            "output": nir.Output(output_type={"output": np.array([1, 5])}),
        },
        edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")],
    )
    with pytest.raises(UnsupportedNodeError, match="'conv' has type Conv1d"):
        count_nir(graph, {"lif": 0}, timesteps=2)


def test_nir_counting_agrees_with_hook_counting(tiny_snn, images) -> None:
    """Same model and images: exporter + NIR runtime spike counts -> NIR counter == hooks."""
    from conversion.nir_export import to_nir

    hooks = count_model(tiny_snn, images)
    graph = to_nir(tiny_snn)
    counts, samples = spike_counts_from_runtime(graph, images)
    from_graph = count_nir(graph, counts, samples=samples)
    assert from_graph.timesteps == hooks.timesteps == 4
    assert hooks.total("spikes") > 0 and hooks.total("synops") > 0
    for name in AGREEING:
        assert from_graph.total(name) == hooks.total(name), name
    assert from_graph.layer("body.conv2").synops == hooks.layer("body.conv2").synops
    assert from_graph.layer("body.head_fc").synops == hooks.layer("body.head_fc").synops


def test_hook_counting_agrees_with_a_hand_built_equivalent_graph() -> None:
    """Independent of the exporter: a conv-LIF-pool-conv-LIF stack and its NIR graph."""
    from neurall_neuro.models.neurons import LIFLayer

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
            self.lif1 = LIFLayer(2e-4, dt=1e-4)
            self.pool = torch.nn.AvgPool2d(2)
            self.conv2 = torch.nn.Conv2d(2, 3, 1)
            self.lif2 = LIFLayer(2e-4, dt=1e-4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            current = self.conv1(x)
            s1 = self.lif1(current.unsqueeze(0).expand(4, *current.shape))
            s2 = self.lif2(self.conv2(self.pool(s1.flatten(0, 1))).unflatten(0, (4, x.shape[0])))
            self.recorded = {"lif1": s1.sum((0, 1)), "lif2": s2.sum((0, 1))}
            return s2

    net = Net()
    with torch.no_grad():
        net.conv1.weight.fill_(1.0)
        net.conv2.weight.fill_(2.0)
        net.conv2.bias.fill_(0.5)
    x = torch.rand(3, 1, 4, 4)
    hooks = count_model(net, x)
    graph = _graph()
    del graph.nodes["gap"], graph.nodes["flat"], graph.nodes["fc"]
    graph.nodes["output"] = nir.Output(output_type={"output": np.array([3, 2, 2])})
    graph.edges = [e for e in graph.edges if e[0] not in ("lif2", "gap", "flat", "fc")] + [
        ("lif2", "output")
    ]
    graph.nodes["conv1"].weight = net.conv1.weight.detach().numpy()
    from_graph = count_nir(
        graph,
        {k: v.numpy() for k, v in net.recorded.items()},
        timesteps=4,
        samples=3,
        static_input=True,
    )
    for name in AGREEING:
        assert from_graph.total(name) == hooks.total(name), name


def test_counts_from_the_torch_hardware_target_match_hooks(tiny_snn, images) -> None:
    """Through the hw_targets registry (target 'torch', spike trains recorded): same counts."""
    from energy.targets import _registry_has, spike_counts_on_target

    if not _registry_has("torch"):
        pytest.skip("hw_targets registry has no 'torch' target in this checkout")
    from conversion.nir_export import to_nir

    graph = to_nir(tiny_snn)
    counts, samples, notes = spike_counts_on_target(graph, images, target="torch", batch_size=2)
    assert samples == 4 and "target 'torch'" in notes[0]
    from_target = count_nir(graph, counts, samples=samples)
    hooks = count_model(tiny_snn, images)
    for name in AGREEING:
        assert from_target.total(name) == hooks.total(name), name

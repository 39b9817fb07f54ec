"""Export of the SE-SNN to NIR, checked against the Norse model itself.

References are independent of the exporter: the Norse model's own ``run`` (spikes per
layer, step logits), Norse's ``lif_box_feed_forward_step`` stepped over the model's own
LIF input currents (membranes), the unfolded torch BatchNorm in eval mode, and for the
folded analog SE a copy of the Norse model whose gates are replaced by constants that
the test computes itself from the model's gate outputs.
"""

from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
import torch
from norse.torch.functional.lif_box import LIFBoxFeedForwardState, lif_box_feed_forward_step
from torch import nn

from conversion.bn_folding import fold_batchnorm
from conversion.nir_conventions import CONVENTION, decode_metadata
from conversion.nir_export import export_nir, graph_summary, to_nir
from conversion.nir_io import read_nir
from conversion.nir_runtime import load_nir
from conversion.se_folding import folding_report
from neurall_neuro.errors import ConversionError, UnsupportedModuleError
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.registry import get_model
from neurall_neuro.models.se_block import AND_THRESHOLD, SEBlock

T = 4


def make_model(se_mode: str, seed: int = 0) -> nn.Module:
    """A tiny SE-SNN with realistic activity: BN statistics from data, gates that vary."""
    torch.manual_seed(seed)
    model = get_model(
        "neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=T, se_mode=se_mode
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model.run(torch.randn(16, 3, 16, 16))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.8, 2.0)
                module.bias.uniform_(0.0, 1.0)
            if isinstance(module, SEBlock) and module.mode != "none":
                module.fc2.bias.uniform_(-1.0, 2.0)
        model.body.head_fc.weight.normal_(0.0, 1.0)
    return model.eval()


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def lif_inputs(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], object]:
    """The currents every LIF layer of ``model`` receives during ``model.run(x)``."""
    currents: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda m, inp, name=name: currents.__setitem__(name, inp[0])
        )
        for name, module in model.named_modules()
        if isinstance(module, LIFLayer)
    ]
    try:
        with torch.no_grad():
            run = model.run(x, record=True)
    finally:
        for handle in handles:
            handle.remove()
    return currents, run


def norse_membranes(layer: LIFLayer, currents: torch.Tensor) -> torch.Tensor:
    state = LIFBoxFeedForwardState(v=torch.zeros_like(currents[0]))
    vs = []
    for current in currents:
        _, state = lif_box_feed_forward_step(current, state, layer.params, layer.dt)
        vs.append(state.v)
    return torch.stack(vs)


# ------------------------------------------------------------------ structure & metadata


def test_spiking_graph_structure_names_and_conventions():
    model = make_model("spiking")
    graph = to_nir(model, class_names=["Benign", "Early", "Pre", "Pro"], se_broadcast="grouped")
    names = list(graph.nodes)
    for expected in (
        "input",
        "stem.conv",
        "body.lif1",
        "body.pool2",
        "body.conv2",
        "body.lif3",
        "body.se3.squeeze",
        "body.se3.fc1",
        "body.se3.act1",
        "body.se3.fc2",
        "body.se3.act2",
        "body.se3.broadcast",
        "body.se3.and",
        "body.head_pool",
        "body.head_flatten",
        "body.head_fc",
        "output",
    ):
        assert expected in names
    assert not any(n.endswith("bn") or ".bn" in n for n in names), "BatchNorm must be folded away"
    assert ("body.lif3", "body.se3.and") in graph.edges and (
        "body.se3.broadcast",
        "body.se3.and",
    ) in graph.edges

    # Stem: direct encoding, static input.
    assert (
        isinstance(graph.nodes["stem.conv"], nir.Conv2d) and ("input", "stem.conv") in graph.edges
    )
    meta = decode_metadata(graph.metadata)
    assert meta["dt"] == 1e-4 and meta["timesteps"] == T and meta["readout"] == "mean_over_time"
    assert meta["input_encoding"] == "static" and meta["convention"] == CONVENTION
    assert meta["class_names"] == ["Benign", "Early", "Pre", "Pro"]
    assert meta["model"] == "neurallnet" and meta["model_config"]["channels"] == [4, 8, 8, 8]

    # Every neuron: LIF with numpy arrays of the node's shape and dt in its metadata.
    for name, node in graph.nodes.items():
        for key, value in vars(node).items():
            assert not isinstance(value, torch.Tensor), f"{name}.{key} is a torch tensor"
        assert node is not None
        if isinstance(node, nir.LIF):
            assert node.metadata["dt"] == 1e-4
            shape = tuple(node.output_type["output"])
            for key in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
                assert (
                    isinstance(getattr(node, key), np.ndarray) and getattr(node, key).shape == shape
                )
            assert np.all(node.r == 1) and np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    assert np.all(graph.nodes["body.lif1"].tau == 2e-4)
    gate, and_node = graph.nodes["body.se3.act2"], graph.nodes["body.se3.and"]
    assert np.all(gate.tau == 1e-4) and np.all(and_node.tau == 1e-4)
    assert np.all(and_node.v_threshold == AND_THRESHOLD)

    # SE squeeze / broadcast / head pooling as specified.
    squeeze = graph.nodes["body.se3.squeeze"]
    assert list(squeeze.kernel_size) == [4, 4] and list(squeeze.stride) == [4, 4]
    broadcast = graph.nodes["body.se3.broadcast"]
    assert broadcast.groups == 8 and broadcast.weight.shape == (8, 1, 4, 4)
    assert np.all(broadcast.weight == 1) and np.all(broadcast.bias == 0)
    assert tuple(broadcast.padding) == (3, 3)
    head = graph.nodes["body.head_pool"]
    assert list(head.kernel_size) == [2, 2] and list(head.stride) == [2, 2]
    flatten = graph.nodes["body.head_flatten"]
    assert (flatten.start_dim, flatten.end_dim) == (0, -1)
    assert isinstance(graph.nodes["body.head_fc"], nir.Affine)


def test_graph_summary_counts_nodes_parameters_and_time():
    summary = graph_summary(to_nir(make_model("none")))
    assert summary["nodes_by_type"] == {
        "Affine": 1,
        "AvgPool2d": 4,
        "Conv2d": 4,
        "Flatten": 1,
        "Input": 1,
        "LIF": 4,
        "Output": 1,
    }
    # convs (BN folded: + bias) and head: 3*4*9+4 + 4*8*9+8 + 2*(8*8*9+8) + 8*4+4
    assert summary["parameters"] == 112 + 296 + 2 * 584 + 36
    assert summary["neurons"] == 4 * 256 + 8 * 64 + 8 * 16 + 8 * 4
    assert summary["dt"] == 1e-4 and summary["timesteps"] == T
    assert summary["inputs"] == {"input": [3, 16, 16]} and summary["outputs"] == {"output": [4]}


def test_batchnorm_folding_is_exact_in_eval_mode():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True)
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    x = torch.randn(6, 3, 9, 9)
    weight, bias = fold_batchnorm(conv.weight.detach().numpy(), conv.bias.detach().numpy(), bn)
    folded = nn.functional.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias), padding=1)
    torch.testing.assert_close(folded, bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_batchnorm_without_a_conv_becomes_a_per_channel_conv():
    torch.manual_seed(4)
    bn = nn.BatchNorm2d(2)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
    model = nn.Sequential(nn.AvgPool2d(2), bn).eval()
    x = torch.randn(3, 2, 6, 6)
    graph = to_nir(model, example_input=x, se_broadcast="grouped")
    assert graph.nodes["1"].groups == 2
    out = load_nir(graph).run(x, timesteps=1).output[0]
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)


def test_batchnorm1d_folds_into_linear_or_stands_alone():
    torch.manual_seed(5)
    bn1, bn2 = nn.BatchNorm1d(4), nn.BatchNorm1d(4)
    for bn in (bn1, bn2):
        with torch.no_grad():
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    model = nn.Sequential(nn.Linear(3, 4, bias=False), bn1, nn.Flatten(), bn2).eval()
    x = torch.randn(5, 3)
    graph = to_nir(model, example_input=x)
    assert (
        isinstance(graph.nodes["0"], nir.Affine)
        and graph.nodes["0"].metadata["folded_batchnorm"] == "1"
    )
    assert "1" not in graph.nodes and isinstance(graph.nodes["3"], nir.Affine)
    out = load_nir(graph).run(x, timesteps=1).output[0]
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("se_mode", ["none", "spiking"])
def test_file_round_trip_reproduces_norse_spikes_and_membranes(tmp_path, se_mode):
    model = make_model(se_mode)
    path = tmp_path / f"{se_mode}.nir"
    export_nir(model, path)
    module = load_nir(path)
    x = images(8, seed=1)
    currents, ref = lif_inputs(model, x)
    run = module.run(x, record=True, record_states=True)

    # Spikes are compared exactly below; the readout is a float matmul whose last bit may
    # depend on the BLAS kernel.
    torch.testing.assert_close(run.output, ref.step_logits, rtol=1e-6, atol=1e-6)
    assert torch.equal(run.output.mean(0).argmax(1), ref.logits.argmax(1))
    for layer, spikes in ref.spikes.items():
        node = f"body.{layer}.and" if layer.startswith("se") else f"body.{layer}"
        assert torch.equal(run.recorded[node], spikes), node
        assert 0.02 < spikes.mean() < 0.98, f"{node} should be active for a meaningful test"
    for path_name, module_layer in model.named_modules():
        if isinstance(module_layer, LIFLayer):
            want = norse_membranes(module_layer, currents[path_name])
            if ".se" in path_name:  # no BatchNorm upstream: same currents, bit-identical LIF
                assert torch.equal(run.states[path_name]["v"], want), path_name
            else:  # currents differ by the float rounding of the folded BatchNorm
                torch.testing.assert_close(run.states[path_name]["v"], want, rtol=1e-5, atol=2e-5)


def test_spiking_se_graph_reproduces_the_product_gate_exactly():
    model = make_model("spiking")
    module = load_nir(to_nir(model))
    x = images(8, seed=2)
    _, ref = lif_inputs(model, x)
    run = module.run(x, record=True)
    for stage in ("se3", "se4"):
        block = getattr(model.body, stage)
        features = ref.spikes[f"lif{stage[-1]}"]
        with torch.no_grad():
            gate = block.gate_values(features)  # [T, B, C, 1, 1] spikes of the model's gate
        assert 0.05 < gate.mean() < 0.95, "gates must be neither all open nor all closed"
        assert torch.equal(run.recorded[f"body.{stage}.act2"], gate)
        assert torch.equal(run.recorded[f"body.{stage}.broadcast"], gate.expand_as(features))
        assert torch.equal(run.recorded[f"body.{stage}.and"], features * gate)


def test_and_neuron_is_an_and_for_all_binary_input_sequences():
    channels = 3
    nodes = {
        "s": nir.Input(input_type={"input": np.array([channels])}),
        "g": nir.Input(input_type={"input": np.array([channels])}),
        "and": nir.LIF(
            tau=np.full(channels, 1e-4),
            r=np.ones(channels),
            v_leak=np.zeros(channels),
            v_threshold=np.full(channels, AND_THRESHOLD),
            v_reset=np.zeros(channels),
        ),
        "output": nir.Output(output_type={"output": np.array([channels])}),
    }
    edges = [("s", "and"), ("g", "and"), ("and", "output")]
    module = load_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=1e-4)
    # Every sequence of 4 steps of (s, g) pairs: 4^4 = 256 sequences per channel.
    combos = np.array(list(np.ndindex(*(4,) * 4)))  # [256, 4] codes 0..3
    s = torch.as_tensor((combos // 2).T, dtype=torch.float32)[..., None].repeat(1, 1, channels)
    g = torch.as_tensor((combos % 2).T, dtype=torch.float32)[..., None].repeat(1, 1, channels)
    assert torch.equal(module({"s": s, "g": g}), s * g)


def test_analog_se_folds_calibrated_gates_into_the_next_layer(tmp_path):
    model = make_model("analog")
    calibration = images(24, seed=5)
    graph = to_nir(model, calibration=calibration)
    assert not any(".se" in name for name in graph.nodes), "no SE nodes after folding"
    assert graph.nodes["body.conv4"].metadata["folded_se_gate"] == "body.se3"
    assert graph.nodes["body.head_fc"].metadata["folded_se_gate"] == "body.se4"

    # Independent reference: the Norse model with each gate replaced by its mean over the
    # calibration images and timesteps, computed here from the model's own gate values.
    class ConstantGate(nn.Module):
        def __init__(self, gate: torch.Tensor):
            super().__init__()
            self.gate = gate.view(1, -1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gate

    reference = copy.deepcopy(model)
    _, calib_run = lif_inputs(model, calibration)
    for stage in ("se3", "se4"):
        with torch.no_grad():
            gate = getattr(model.body, stage).gate_values(calib_run.spikes[f"lif{stage[-1]}"])
        reference.body._modules[stage] = ConstantGate(
            gate.double().mean(dim=(0, 1)).flatten().float()
        )
    x = images(16, seed=6)
    with torch.no_grad():
        want = reference.run(x, record=True)
    path = tmp_path / "analog.nir"
    nir.write(path, graph)
    run = load_nir(path).run(x, record=True)
    for layer in ("lif1", "lif2", "lif3", "lif4"):
        agreement = (run.recorded[f"body.{layer}"] == want.spikes[layer]).float().mean()
        assert agreement >= 0.999, (layer, agreement)
    torch.testing.assert_close(run.output.mean(0), want.logits, rtol=1e-3, atol=1e-3)
    assert torch.equal(run.output.mean(0).argmax(1), want.logits.argmax(1))

    report = folding_report(model, graph, x, torch.arange(16) % 4)
    dynamic = model.run(x).logits.argmax(1)
    assert report.n_images == 16
    assert report.accuracy_dynamic == pytest.approx(
        float((dynamic == torch.arange(16) % 4).float().mean())
    )
    assert report.agreement == pytest.approx(
        float((dynamic == want.logits.argmax(1)).float().mean())
    )


def test_analog_se_without_calibration_is_refused():
    with pytest.raises(ConversionError, match="calibration"):
        to_nir(make_model("analog"))


# ------------------------------------------------------------------ errors


def test_se_cnn_is_refused_naming_the_first_unmappable_module():
    model = get_model("se-cnn", input_size=16, channels=[4, 8])
    with pytest.raises(UnsupportedModuleError) as info:
        to_nir(model, example_input=torch.zeros(1, 3, 16, 16))
    error = info.value
    assert error.module_class == "ReLU" and error.path == "features.stage1.relu1"
    assert "MaxPool2d" in str(error) and "residual" in str(error)
    assert "Conv2d" in error.supported and "LIFLayer" in error.supported


def test_unmapped_module_inside_the_snn_names_its_path():
    model = make_model("spiking")
    model.body.se3.fc1 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.Hardtanh())
    with pytest.raises(
        UnsupportedModuleError,
        match=r"Hardtanh at 'body\.se3\.fc1\.1'.*Supported modules: .*Conv2d",
    ):
        to_nir(model)


def test_error_fields_format_the_message_and_survive_pickling():
    import pickle

    error = UnsupportedModuleError("ReLU", "", ["Conv2d", "Affine"], "no ReLU in NIR")
    assert (error.module_class, error.path, error.supported) == (
        "ReLU",
        "<model root>",
        ["Affine", "Conv2d"],
    )
    assert str(error) == (
        "cannot export to NIR: ReLU at '<model root>' has no NIR mapping (no ReLU in NIR). "
        "Supported modules: Affine, Conv2d"
    )
    back = pickle.loads(pickle.dumps(error))
    assert (str(back), back.path, back.supported) == (str(error), error.path, error.supported)


def test_unsupported_option_names_module_path_and_option():
    with pytest.raises(
        UnsupportedModuleError, match=r"AvgPool2d at '0'.*\(ceil_mode=True\)"
    ) as info:
        to_nir(
            nn.Sequential(nn.AvgPool2d(2, ceil_mode=True)), example_input=torch.zeros(1, 2, 4, 4)
        )
    assert (info.value.module_class, info.value.path) == ("AvgPool2d", "0")


def test_whole_model_exporters_are_found_by_class_and_mro():
    from conversion.model_exporters import (
        MODEL_EXPORTERS,
        ExportRequest,
        find_model_exporter,
        register_model_exporter,
    )
    from conversion.nir_mappings import class_key

    snn = make_model("none")
    assert find_model_exporter(snn) is not None
    subclass = type("MySNN", (type(snn),), {})
    mine = copy.deepcopy(snn)
    mine.__class__ = subclass  # a subclass exports like its registered base
    assert find_model_exporter(mine) is find_model_exporter(snn)

    class Doubler(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    seen: list[ExportRequest] = []

    @register_model_exporter(Doubler)
    def export_doubler(model: nn.Module, request: ExportRequest) -> nir.NIRGraph:
        seen.append(request)
        return to_nir(nn.Sequential(nn.Flatten()), example_input=request.example_input)

    try:
        graph = to_nir(Doubler(), example_input=torch.zeros(1, 2, 3), class_names=["a"])
        assert list(graph.nodes) == ["input", "0", "output"]
        assert seen[0].class_names == ["a"] and seen[0].input_shape() == (2, 3)
    finally:
        MODEL_EXPORTERS._items.pop(class_key(Doubler))


def test_a_readout_the_graph_cannot_state_is_refused():
    model = make_model("none")
    model.readout = nn.Identity()
    with pytest.raises(UnsupportedModuleError, match=r"Identity at 'readout'.*MeanOverTime"):
        to_nir(model)


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    graph = to_nir(make_model("none"))
    graph.metadata["bad"] = None  # HDF5 cannot store None
    with pytest.raises(Exception, match="bad"):
        export_path = tmp_path / "out.nir"
        from conversion.nir_io import write_nir

        write_nir(graph, export_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("se_mode", ["none", "spiking"])
def test_nir_read_reads_our_files_back(tmp_path, se_mode):
    model = make_model(se_mode)
    for broadcast in ("grouped", "dense") if se_mode == "spiking" else ("grouped",):
        path = tmp_path / f"{se_mode}-{broadcast}.nir"
        graph = export_nir(model, path, class_names=["a", "b", "c", "d"], se_broadcast=broadcast)
        # nir 1.0.8's type check ignores Conv2d groups (it takes weight.shape[1] as the input
        # channels), so plain nir.read rejects any grouped convolution; read those unchecked.
        back = nir.read(path, type_check=broadcast != "grouped" or se_mode != "spiking")
        ours = read_nir(path)
        assert sorted(back.nodes) == sorted(graph.nodes) == sorted(ours.nodes)  # HDF5 sorts groups
        assert sorted(back.edges) == sorted(graph.edges)
        for name, node in graph.nodes.items():
            for key in ("weight", "bias", "tau", "v_threshold", "kernel_size"):
                if hasattr(node, key):
                    np.testing.assert_array_equal(
                        np.asarray(getattr(back.nodes[name], key)), np.asarray(getattr(node, key))
                    )
        assert decode_metadata(back.metadata)["class_names"] == ["a", "b", "c", "d"]
        assert float(back.nodes["body.lif1"].metadata["dt"]) == 1e-4
        x = images(4, seed=9)
        torch.testing.assert_close(
            load_nir(back).run(x).output, model.run(x).step_logits, rtol=1e-6, atol=1e-6
        )

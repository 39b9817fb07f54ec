"""netx HDF5 I/O: reading lava-dl's files exactly as Lava does, writing files Lava loads,
and one clear error per kind of bad file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from hw_targets.loihi.network import LoihiNetwork, NeuronGroup, Synapse
from hw_targets.loihi.netx import netx_to_nir, read_netx, write_netx
from hw_targets.loihi.quantize import quantize_graph
from neurall_neuro.errors import ConversionError, GraphFileError, UnsupportedNodeError

_spec = importlib.util.spec_from_file_location(
    "hw_helpers", Path(__file__).parents[1] / "hw_targets" / "conftest.py"
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
GT = _helpers.lava_gt_dir()
needs_gt = pytest.mark.skipif(GT is None, reason="lava-dl's netx test files are not installed")
needs_lava = pytest.mark.skipif(
    importlib.util.find_spec("lava") is None, reason="lava-nc is not installed"
)


def lava_effective_dense(synapse) -> np.ndarray:
    """What Lava's PyDenseModelBitAcc multiplies with (its own weightutils)."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    params = synapse.proc_params._parameters
    w = np.asarray(synapse.weights.init)
    mode = determine_sign_mode(w)
    w = truncate_weights(clip_weights(w, mode, num_bits=8), mode, params.get("num_weight_bits", 8))
    return w.astype(np.float64) * 2.0 ** params.get("weight_exp", 0)


@pytest.mark.parametrize("name", ["tiny.net", "mnist.net", "gts/pilotnet_lif/network.net"])
@pytest.mark.lava
@needs_lava
@needs_gt
def test_read_matches_what_lava_loads(name):
    from lava.lib.dl import netx

    net = read_netx(GT / name)
    lava = netx.hdf5.Network(net_config=str(GT / name))
    assert len(lava.layers) == len(net.groups)
    for layer, group in zip(lava.layers, net.groups, strict=True):
        neuron = layer.neuron
        assert tuple(layer.shape) == tuple(reversed(group.shape)), group.name
        assert (neuron.du.init, neuron.dv.init, neuron.vth.init) == (
            group.du,
            group.dv,
            group.vth,
        ), group.name
        assert neuron.bias_exp.init == group.bias_exp == 6
        lava_bias = np.broadcast_to(np.asarray(neuron.bias_mant.init), layer.shape)
        np.testing.assert_array_equal(
            lava_bias, group.bias_mant.transpose(tuple(range(group.bias_mant.ndim))[::-1])
        )
        if group.name == net.input:
            continue
        (syn,) = net.incoming(group.name)
        if type(layer).__name__ == "Conv":
            lw = np.asarray(layer.synapse.weight.init)  # Lava layout (out, x, y, in), flipped
            torch_w = lw.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]
            np.testing.assert_array_equal(torch_w, syn.effective_weight)
            assert tuple(layer.synapse.stride.init) == syn.stride[::-1]
            assert tuple(layer.synapse.padding.init) == syn.padding[::-1]
            assert tuple(layer.synapse.dilation.init) == syn.dilation[::-1]
            assert layer.synapse.groups.init == syn.groups
        else:
            np.testing.assert_array_equal(lava_effective_dense(layer.synapse), syn.effective_weight)


@needs_gt
def test_read_tiny_and_mnist_structure():
    tiny = read_netx(GT / "tiny.net")
    assert [g.shape for g in tiny.groups] == [(3, 16, 16), (24, 6, 6), (36, 1, 1)]
    assert [(g.du, g.dv, g.vth) for g in tiny.groups] == [(4095, 1024, 25)] * 3
    assert tiny.metadata["input_transform"] == {"weight": 36, "bias": 34}
    mnist = read_netx(GT / "mnist.net")
    assert [g.shape for g in mnist.groups] == [(784,), (512,), (512,), (10,)]
    last = mnist.groups[-1]  # no neuron in the file: netx's default integrator
    assert (last.du, last.dv, last.vth) == (-1, 4096, 131072)
    assert all(s.kind == "dense" for s in mnist.synapses)


def _chain_network(seed: int = 0) -> LoihiNetwork:
    graph = _helpers.make_chain_graph(seed)
    images = np.random.default_rng(seed).uniform(0, 1, (4, 2, 6, 6))
    return quantize_graph(graph, timesteps=5, calibration=images, netx_compatible=True)


def test_write_read_roundtrip(tmp_path):
    net = _chain_network()
    path = write_netx(net, tmp_path / "chain.net")
    back = read_netx(path)
    assert [g.name for g in back.groups] == [g.name for g in net.groups]
    for a, b in zip(net.groups, back.groups, strict=True):
        assert (a.shape, a.du, a.dv, a.vth, a.bias_start_step, a.readout, a.scale) == (
            b.shape, b.du, b.dv, b.vth, b.bias_start_step, b.readout, b.scale
        )  # fmt: skip
        if a.name != net.input:
            np.testing.assert_array_equal(a.effective_bias, b.effective_bias)
    for a, b in zip(net.synapses, back.synapses, strict=True):
        np.testing.assert_array_equal(a.effective_weight, b.effective_weight)
        assert (a.kind, a.delay, a.stride, a.padding) == (b.kind, b.delay, b.stride, b.padding)
    assert back.encoder is not None and back.encoder.scale == net.encoder.scale
    with h5py.File(path) as f:
        assert [f[f"layer/{i}/type"][0] for i in range(len(f["layer"]))] == [
            b"input",
            b"conv",
            b"flatten",
            b"dense",
        ]


@pytest.mark.lava
@needs_lava
def test_written_file_loads_and_runs_in_lava_bit_exact(tmp_path):
    """Our file through lava-dl's own loader (netx backend) equals the emulator."""
    from hw_targets.registry import get_target

    path = write_netx(_chain_network(1), tmp_path / "chain.net")
    images = np.random.default_rng(2).uniform(0, 1, (1, 2, 6, 6))
    kw = {"timesteps": 5, "record": "all", "record_voltage": "all"}
    emu = get_target("loihi-emu").compile(path, **kw).run(images)
    lava = get_target("lava-sim").compile(path, backend="netx", **kw).run(images)
    _helpers.assert_same_traces(emu.spikes, lava.spikes)
    _helpers.assert_same_traces(emu.voltages, lava.voltages, "voltages")
    np.testing.assert_array_equal(emu.scores, lava.scores)


def test_branching_network_cannot_be_written(tmp_path):
    graph = _helpers.make_se_graph()
    net = quantize_graph(graph, timesteps=4, netx_compatible=True)
    with pytest.raises(ConversionError, match="process backend") as info:
        write_netx(net, tmp_path / "se.net")
    assert "pool/average/concat" in str(info.value)
    assert not (tmp_path / "se.net").exists()


def test_write_is_atomic_and_checks_representability(tmp_path):
    net = _chain_network()
    path = write_netx(net, tmp_path / "chain.net")
    before = path.read_bytes()
    bad = _chain_network()
    bad.synapses[0].weight[...] = 2
    bad.synapses[0].weight_exp = -2  # effective weight 0.5: netx stores integers only
    with pytest.raises(ConversionError, match="not integers"):
        write_netx(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.net"]


def test_netx_to_nir_gives_a_float_graph(tmp_path):
    import torch

    from conversion.nir_runtime import NIRModule
    from hw_targets.loihi.emulator import LoihiEmulator

    net = _chain_network(3)
    path = write_netx(net, tmp_path / "chain.net")
    graph = netx_to_nir(path)
    images = np.random.default_rng(4).uniform(0, 1, (2, 2, 6, 6))
    ref = NIRModule(graph).run(
        torch.tensor(images, dtype=torch.float32), timesteps=5, count_spikes=True
    )
    depth = net.depths()
    trace = LoihiEmulator(read_netx(path)).simulate(
        5 + max(depth.values()), bias=net.encoder.encode(images)
    )
    for name, counts in trace.counts.items():
        ours = counts[depth[name] : depth[name] + 5].sum(axis=0)
        np.testing.assert_allclose(ours, ref.spike_counts[name].numpy(), rtol=0.1, atol=2)


# ----------------------------------------------------------------------------- bad files


def _write_minimal(path: Path, mutate=None) -> Path:
    net = LoihiNetwork(
        [
            NeuronGroup("in", (1, 4, 4), vth=10, bias_exp=6),
            NeuronGroup("c", (2, 2, 2), vth=10, bias_exp=6),
        ],
        [Synapse("s", "in", "c", "conv", np.full((2, 1, 3, 3), 2))],
        "in",
        "c",
    )
    write_netx(net, path)
    if mutate is not None:
        with h5py.File(path, "a") as f:
            mutate(f)
    return path


def test_bad_file_not_hdf5(tmp_path):
    path = tmp_path / "x.net"
    path.write_text("layer 0: input\n")
    with pytest.raises(GraphFileError, match="not an HDF5 file"):
        read_netx(path)


def test_bad_file_truncated(tmp_path):
    path = _write_minimal(tmp_path / "t.net")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphFileError, match="truncated|corrupt|not an HDF5"):
        read_netx(path)


def test_bad_file_missing_layer_group(tmp_path):
    path = _write_minimal(tmp_path / "m.net", lambda f: f.__delitem__("layer"))
    with pytest.raises(GraphFileError, match="no 'layer' group"):
        read_netx(path)


def test_bad_file_missing_field(tmp_path):
    path = _write_minimal(tmp_path / "f.net", lambda f: f.__delitem__("layer/1/weight"))
    with pytest.raises(GraphFileError, match=r"layer 1: missing field 'weight'"):
        read_netx(path)
    path = _write_minimal(tmp_path / "n.net", lambda f: f.__delitem__("layer/1/neuron/vThMant"))
    with pytest.raises(GraphFileError, match=r"layer 1/neuron: missing field 'vThMant'"):
        read_netx(path)


def test_bad_file_unknown_and_unimplemented_layer_types(tmp_path):
    def retype(kind: bytes):
        def mutate(f):
            del f["layer/1/type"]
            f["layer/1"].create_dataset("type", data=np.array([kind], dtype="S10"))

        return mutate

    with pytest.raises(
        UnsupportedNodeError, match="unknown layer type 'maxpool'.*supported: input, conv"
    ):
        read_netx(_write_minimal(tmp_path / "u.net", retype(b"maxpool")))
    with pytest.raises(
        UnsupportedNodeError, match="'pool' is not implemented by Lava's netx loader"
    ):
        read_netx(_write_minimal(tmp_path / "p.net", retype(b"pool")))


def test_bad_file_shape_mismatch_between_layers(tmp_path):
    def reshape(f):
        del f["layer/1/shape"]
        f["layer/1"].create_dataset("shape", data=np.array([2, 3, 3]))

    with pytest.raises(
        GraphFileError,
        match=r"shape mismatch: convolution of the previous layer \(1, 4, 4\) gives \(2, 2, 2\)",
    ):
        read_netx(_write_minimal(tmp_path / "s.net", reshape))

    def dense_mismatch(f):
        g = f["layer"].create_group("2")
        g.create_dataset("type", data=np.array([b"flatten"], dtype="S10"))
        g = f["layer"].create_group("3")
        g.create_dataset("type", data=np.array([b"dense"], dtype="S10"))
        g.create_dataset("shape", data=np.array([3]))
        g.create_dataset("weight", data=np.zeros((3, 5)))

    with pytest.raises(
        GraphFileError, match=r"shape mismatch: dense weight \(3, 5\) must be \(3, 8\)"
    ):
        read_netx(_write_minimal(tmp_path / "d.net", dense_mismatch))


def test_bad_file_not_a_file():
    with pytest.raises(GraphFileError, match="not found"):
        read_netx("/nonexistent/file.net")

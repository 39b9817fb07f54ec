"""The generic NIR runtime against independent references.

* every nir 1.0.8 primitive against a brute-force numpy implementation of its equation
  (float64, explicit loops), run in a one-node graph over several timesteps;
* non-sequential graphs (branch + join, a recurrent loop, a nested graph), static inputs;
* graphs written by other frameworks: snnTorch's ``export_to_nir`` (conv net, synaptic
  neurons, a recurrent ``RLeaky``) against snnTorch's own simulation, and Norse 1.1.0's
  ``to_nir`` against Norse's own simulation.

Norse 1.1.0's ``to_nir`` output is not valid NIR: it keeps a batch dimension of 1 in the
Input/Output shapes, leaves torch tensors in the nodes and writes ``tau = dt /
tau_mem_inv`` (i.e. ``dt * tau``) for box-LIF cells. The runtime tolerates the first two;
the test corrects ``tau`` and then matches Norse bit for bit.
"""

from __future__ import annotations

import contextlib
import io

import nir
import numpy as np
import pytest
import torch

from conversion.nir_runtime import load_nir
from neurall_neuro.errors import ConversionError, GraphFileError, UnsupportedNodeError

DT = 1e-4
T, B = 6, 3
RNG = np.random.default_rng(1234)


def single_node_graph(node: nir.NIRNode, in_shape: tuple[int, ...], **meta) -> nir.NIRGraph:
    nodes = {
        "input": nir.Input(input_type={"input": np.array(in_shape)}),
        "node": node,
        "output": nir.Output(output_type={"output": None}),  # shape left to inference
    }
    edges = [("input", "node"), ("node", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(meta), type_check=False)


def run_node(node: nir.NIRNode, x: np.ndarray, dt: float | None = DT) -> np.ndarray:
    module = load_nir(single_node_graph(node, x.shape[2:]), dt=dt)
    return module(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)


def f32(a: np.ndarray) -> np.ndarray:
    """Values exactly representable in float32 (so float64 references see the same inputs)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# ------------------------------------------------------------------ numpy references


def np_conv(x, w, b, stride, padding, dilation, groups):
    """Direct cross-correlation; x [N, C, *S], w [O, C/groups, *K]."""
    dims = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    spatial = x.shape[2:]
    kernel = w.shape[2:]
    out_size = [
        (spatial[d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1 for d in range(dims)
    ]
    out = np.zeros((x.shape[0], w.shape[0], *out_size))
    per_group_out = w.shape[0] // groups
    per_group_in = w.shape[1]
    for o in range(w.shape[0]):
        g = o // per_group_out
        channels = slice(g * per_group_in, (g + 1) * per_group_in)
        for index in np.ndindex(*out_size):
            window = tuple(
                slice(
                    index[d] * stride[d],
                    index[d] * stride[d] + dilation[d] * (kernel[d] - 1) + 1,
                    dilation[d],
                )
                for d in range(dims)
            )
            out[(slice(None), o, *index)] = (x[(slice(None), channels, *window)] * w[o]).sum(
                axis=tuple(range(1, dims + 2))
            ) + b[o]
    return out


def np_pool(x, kernel, stride, padding, average):
    x = np.pad(x, [(0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])])
    oh = (x.shape[2] - kernel[0]) // stride[0] + 1
    ow = (x.shape[3] - kernel[1]) // stride[1] + 1
    out = np.zeros((*x.shape[:2], oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[
                :,
                :,
                i * stride[0] : i * stride[0] + kernel[0],
                j * stride[1] : j * stride[1] + kernel[1],
            ]
            out[:, :, i, j] = window.sum(axis=(2, 3)) / (kernel[0] * kernel[1] if average else 1)
    return out


def np_neuron(kind, x, p, dt):
    """Forward-Euler reference of the NIR neuron equations; returns (output, v) over time."""
    v = np.zeros(x.shape[1:])
    i = np.zeros(x.shape[1:])
    outs, vs = [], []
    for t in range(x.shape[0]):
        if kind in ("I", "IF"):
            v = v + dt * p["r"] * x[t]
        elif kind in ("LI", "LIF"):
            v = v + dt / p["tau"] * (p["v_leak"] - v + p["r"] * x[t])
        else:  # Cuba*: synaptic current first, then the membrane with the new current
            i = i + dt / p["tau_syn"] * (p["w_in"] * x[t] - i)
            v = v + dt / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
        if kind in ("IF", "LIF", "CubaLIF"):
            z = (v > p["v_threshold"]).astype(float)
            v = np.where(z > 0, p["v_reset"], v)
            outs.append(z)
        else:
            outs.append(v.copy())
        vs.append(v.copy())
    return np.stack(outs), np.stack(vs)


# ------------------------------------------------------------------ primitives


def test_affine_linear_scale_match_numpy():
    x = f32(RNG.normal(size=(T, B, 5)))
    w, b = f32(RNG.normal(size=(4, 5))), f32(RNG.normal(size=4))
    np.testing.assert_allclose(
        run_node(nir.Affine(weight=w, bias=b), x), x @ w.T + b, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(run_node(nir.Linear(weight=w), x), x @ w.T, rtol=1e-5, atol=1e-5)
    s = f32(RNG.normal(size=5))
    np.testing.assert_allclose(run_node(nir.Scale(scale=s), x), x * s, rtol=1e-6)


@pytest.mark.parametrize(
    "stride, padding, dilation, groups",
    [((1, 1), (1, 1), (1, 1), 1), ((2, 1), (0, 2), (1, 2), 2), ((1, 1), (2, 2), (1, 1), 4)],
)
def test_conv2d_matches_numpy(stride, padding, dilation, groups):
    x = f32(RNG.normal(size=(T, B, 4, 7, 6)))
    w = f32(RNG.normal(size=(8, 4 // groups, 3, 2)))
    b = f32(RNG.normal(size=8))
    node = nir.Conv2d(
        input_shape=None,
        weight=w,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=b,
    )
    got = run_node(node, x)
    want = np_conv(x.reshape(T * B, 4, 7, 6), w, b, stride, padding, dilation, groups)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def test_conv1d_matches_numpy():
    x = f32(RNG.normal(size=(T, B, 2, 9)))
    w, b = f32(RNG.normal(size=(3, 2, 3))), f32(RNG.normal(size=3))
    node = nir.Conv1d(input_shape=9, weight=w, stride=2, padding=1, dilation=1, groups=1, bias=b)
    want = np_conv(x.reshape(T * B, 2, 9), w, b, (2,), (1,), (1,), 1)
    np.testing.assert_allclose(run_node(node, x).reshape(want.shape), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("average", [True, False])
def test_pooling_matches_numpy(average):
    x = f32(RNG.normal(size=(T, B, 2, 6, 5)))
    cls = nir.AvgPool2d if average else nir.SumPool2d
    node = cls(kernel_size=np.array([2, 3]), stride=np.array([2, 1]), padding=np.array([1, 0]))
    want = np_pool(x.reshape(T * B, 2, 6, 5), (2, 3), (2, 1), (1, 0), average)
    np.testing.assert_allclose(run_node(node, x).reshape(want.shape), want, rtol=1e-5, atol=1e-6)


def test_flatten_uses_batch_free_dims():
    x = f32(RNG.normal(size=(T, B, 2, 3, 4)))
    got = run_node(
        nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=1, end_dim=2), x
    )
    np.testing.assert_array_equal(got, x.reshape(T, B, 2, 12))
    got = run_node(
        nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=0, end_dim=-1), x
    )
    np.testing.assert_array_equal(got, x.reshape(T, B, 24))


def test_threshold_is_strict():
    x = f32(np.array([0.5, 1.0, 1.5, -2.0]) * np.ones((T, B, 4)))
    got = run_node(nir.Threshold(threshold=np.ones(4)), x)
    np.testing.assert_array_equal(got, (x > 1.0).astype(float))


def test_delay_shifts_by_rounded_steps():
    x = f32(RNG.normal(size=(T, B, 3)))
    delays = np.array([0.0, 1e-4, 2.6e-4])  # 0, 1 and round(2.6) = 3 steps
    got = run_node(nir.Delay(delay=delays), x)
    want = np.zeros_like(x)
    for k, d in enumerate([0, 1, 3]):
        want[d:, :, k] = x[: T - d, :, k]
    np.testing.assert_array_equal(got, want)


def _neuron_params(shape):
    return {
        "tau": f32(RNG.uniform(2e-4, 1e-3, size=shape)),
        "tau_mem": f32(RNG.uniform(2e-4, 1e-3, size=shape)),
        "tau_syn": f32(RNG.uniform(2e-4, 1e-3, size=shape)),
        "r": f32(RNG.uniform(0.5, 2.0, size=shape)),
        "v_leak": f32(RNG.uniform(-0.2, 0.2, size=shape)),
        "v_threshold": f32(RNG.uniform(0.5, 1.5, size=shape)),
        "v_reset": f32(RNG.uniform(-0.3, 0.1, size=shape)),
        "w_in": f32(RNG.uniform(0.5, 2.0, size=shape)),
    }


@pytest.mark.parametrize("kind", ["I", "IF", "LI", "LIF", "CubaLI", "CubaLIF"])
def test_neurons_match_forward_euler(kind):
    shape = (4, 3)
    p = _neuron_params(shape)
    scale = 1e4 if kind in ("I", "IF") else 1.0  # I/IF integrate dt * r * x
    x = f32(RNG.normal(0.8, 1.0, size=(20, B, *shape)) * scale)
    fields = {
        "I": ["r"],
        "IF": ["r", "v_threshold", "v_reset"],
        "LI": ["tau", "r", "v_leak"],
        "LIF": ["tau", "r", "v_leak", "v_threshold", "v_reset"],
        "CubaLI": ["tau_syn", "tau_mem", "r", "v_leak", "w_in"],
        "CubaLIF": ["tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"],
    }[kind]
    node = getattr(nir, kind)(**{k: p[k] for k in fields})
    module = load_nir(single_node_graph(node, shape), dt=DT)
    run = module.run(torch.as_tensor(x, dtype=torch.float32), record_states=True)
    want_out, want_v = np_neuron(kind, x, p, DT)
    got_v = run.states["node"]["v"].numpy()
    np.testing.assert_allclose(got_v, want_v, rtol=1e-4, atol=1e-4)
    if kind in ("IF", "LIF", "CubaLIF"):
        assert 0.05 < want_out.mean() < 0.95, "test input should make the neurons spike sometimes"
        np.testing.assert_array_equal(run.output.numpy(), want_out)
    else:
        np.testing.assert_allclose(run.output.numpy(), want_out, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ graph structure


def test_branches_and_joins_sum_all_edges_and_static_input_equals_repeated_input():
    w1, b1 = f32(RNG.normal(size=(4, 3))), f32(RNG.normal(size=4))
    w2 = f32(RNG.normal(size=(4, 3)))
    tau = np.full(4, 3e-4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a": nir.Affine(weight=w1, bias=b1),
        "lif": nir.LIF(tau=tau, r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4)),
        "skip": nir.Linear(weight=w2),
        "join": nir.LI(tau=tau, r=np.ones(4), v_leak=np.zeros(4)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [
        ("input", "a"),
        ("a", "lif"),
        ("input", "skip"),
        ("lif", "join"),
        ("skip", "join"),
        ("join", "output"),
    ]
    module = load_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=DT)
    image = f32(RNG.normal(size=(B, 3)) * 2)
    repeated = np.broadcast_to(image, (T, B, 3))
    current_a = repeated @ w1.T + b1
    spikes, _ = np_neuron(
        "LIF",
        current_a,
        {"tau": tau, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0},
        DT,
    )
    want, _ = np_neuron("LI", spikes + repeated @ w2.T, {"tau": tau, "r": 1.0, "v_leak": 0.0}, DT)
    static = module(torch.as_tensor(image, dtype=torch.float32), timesteps=T).numpy()
    dynamic = module(torch.as_tensor(np.ascontiguousarray(repeated), dtype=torch.float32)).numpy()
    np.testing.assert_allclose(static, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(static, dynamic, rtol=1e-6, atol=1e-6)  # [B] vs [T*B] matmuls
    assert 0 < spikes.mean() < 1


def test_recurrent_graph_runs_stepwise_with_previous_step_feedback():
    w_in, w_rec = f32(RNG.normal(size=(5, 3)) * 2), f32(RNG.normal(size=(5, 5)))
    b_rec = f32(RNG.normal(size=5) * 0.1)
    p = {"tau": 5e-4, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0}
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "w_in": nir.Linear(weight=w_in),
        "lif": nir.LIF(
            tau=np.full(5, p["tau"]), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.ones(5)
        ),
        "w_rec": nir.Affine(weight=w_rec, bias=b_rec),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [
        ("input", "w_in"),
        ("w_in", "lif"),
        ("lif", "w_rec"),
        ("w_rec", "lif"),
        ("lif", "output"),
    ]
    module = load_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=DT)
    assert module.recurrent
    x = f32(RNG.normal(size=(12, B, 3)))
    v, z = np.zeros((B, 5)), np.zeros((B, 5))
    want = []
    for t in range(12):
        current = x[t] @ w_in.T + z @ w_rec.T + b_rec  # feedback of the previous step's spikes
        v = v + DT / p["tau"] * (current - v)
        z = (v > 1.0).astype(float)
        v = np.where(z > 0, 0.0, v)
        want.append(z)
    want = np.stack(want)
    assert 0 < want.mean() < 1
    np.testing.assert_array_equal(module(torch.as_tensor(x, dtype=torch.float32)).numpy(), want)


def test_nested_graph_is_inlined():
    w1, b1 = f32(RNG.normal(size=(4, 3))), f32(RNG.normal(size=4))
    w2, b2 = f32(RNG.normal(size=(2, 4))), f32(RNG.normal(size=2))
    inner = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Affine(weight=w1, bias=b1),
            "out": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("in", "fc"), ("fc", "out")],
        type_check=False,
    )
    outer = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "sub": inner,
            "fc2": nir.Affine(weight=w2, bias=b2),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "sub"), ("sub", "fc2"), ("fc2", "output")],
        type_check=False,
    )
    module = load_nir(outer)
    assert "sub.fc" in module.node_names
    x = f32(RNG.normal(size=(T, B, 3)))
    want = (x @ w1.T + b1) @ w2.T + b2
    np.testing.assert_allclose(
        module(torch.as_tensor(x, dtype=torch.float32)).numpy(), want, rtol=1e-5, atol=1e-5
    )


def test_dt_comes_from_metadata_or_argument():
    lif = nir.LIF(tau=np.full(2, 2e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(GraphFileError, match="dt"):
        load_nir(single_node_graph(lif, (2,)))
    assert load_nir(single_node_graph(lif, (2,)), dt=1e-3).dt == 1e-3
    assert load_nir(single_node_graph(lif, (2,), dt=1e-4)).dt == 1e-4
    lif.metadata = {"dt": 5e-5}
    assert load_nir(single_node_graph(lif, (2,))).dt == 5e-5
    # Stateless graphs need no dt at all.
    assert load_nir(single_node_graph(nir.Scale(scale=np.ones(2)), (2,))).dt is None


def test_unknown_node_type_and_bad_inputs_raise_clear_errors():
    class Custom(nir.NIRNode):
        def __init__(self):
            self.metadata = {}
            self.input_type = {"input": np.array([2])}
            self.output_type = {"output": np.array([2])}

    with pytest.raises(UnsupportedNodeError, match=r"'node'.*Custom.*supported node types: .*LIF"):
        load_nir(single_node_graph(Custom(), (2,)))
    module = load_nir(single_node_graph(nir.Scale(scale=np.ones(2)), (2,)))
    with pytest.raises(ConversionError, match="timesteps"):
        module(torch.zeros(B, 2))
    with pytest.raises(ConversionError, match=r"\[B, 2\]"):
        module(torch.zeros(T, B, 3))


# ------------------------------------------------------------------ other frameworks


def _snn_leaky(shape, beta):
    import snntorch as snn

    return snn.Leaky(
        beta=torch.full(shape, beta),
        threshold=torch.ones(shape),
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )


def _snntorch_export(net, sample):
    from snntorch.export_nir import export_to_nir

    with contextlib.redirect_stdout(io.StringIO()):
        return export_to_nir(net, sample, ignore_dims=[0])


def test_snntorch_exported_conv_net_matches_snntorch():
    snn = pytest.importorskip("snntorch")
    from snntorch import utils as snn_utils

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        _snn_leaky((4, 8, 8), 0.8),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        _snn_leaky((5,), 0.7),
        torch.nn.Linear(5, 3),
        snn.Synaptic(
            alpha=torch.full((3,), 0.7),
            beta=torch.full((3,), 0.9),
            threshold=torch.ones(3),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
            output=True,
        ),
    )
    with torch.no_grad():
        net[0].weight.mul_(2)
        net[4].weight.mul_(6)
        net[6].weight.mul_(6)
    graph = _snntorch_export(net, torch.randn(1, 2, 8, 8))
    x = (torch.rand(10, 16, 2, 8, 8) < 0.4).float() * 2
    snn_utils.reset(net)
    with torch.no_grad():
        want = torch.stack([net(x[t])[0] for t in range(10)])
    run = load_nir(graph, dt=1e-4).run(x, record=["1", "5"])  # snnTorch's convention: dt = 1e-4
    assert (
        0 < run.recorded["1"].mean() < 1
        and 0 < run.recorded["5"].mean() < 1
        and 0 < want.mean() < 1
    )
    assert torch.equal(run.output, want)


def test_snntorch_recurrent_rleaky_matches_snntorch():
    snn = pytest.importorskip("snntorch")
    from snntorch import utils as snn_utils

    torch.manual_seed(0)
    rleaky = snn.RLeaky(
        beta=torch.full((5,), 0.8),
        threshold=torch.ones(5),
        linear_features=5,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )
    net = torch.nn.Sequential(torch.nn.Linear(8, 5), rleaky)
    with torch.no_grad():
        net[0].weight.mul_(3)
        rleaky.recurrent.weight.mul_(3)
    graph = _snntorch_export(net, torch.randn(1, 8))
    x = torch.randn(12, 6, 8)
    snn_utils.reset(net)
    with torch.no_grad():
        want = torch.stack([net(x[t]) for t in range(12)])
    module = load_nir(graph, dt=1e-4)
    assert module.recurrent and 0 < want.mean() < 1
    assert torch.equal(module(x), want)


def test_norse_to_nir_graph_loads_and_matches_norse_after_tau_fix():
    import norse.torch as norse

    torch.manual_seed(0)
    cell = norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0)))
    net = norse.SequentialState(torch.nn.Linear(6, 5), cell, torch.nn.Linear(5, 3))
    graph = norse.to_nir(net, torch.randn(1, 6))  # Norse's dt: 1e-3
    assert isinstance(graph.nodes["1"], nir.LIF)
    assert float(graph.nodes["1"].tau) == pytest.approx(1e-3 / 200.0)  # the dt * tau bug
    graph.nodes["1"].tau = graph.nodes["1"].tau / 1e-3
    module = load_nir(graph, dt=1e-3)
    assert module.input_shapes == {"input": (6,)}  # batch dimension of 1 dropped
    x = torch.randn(8, 4, 6) * 3
    state, outputs = None, []
    with torch.no_grad():
        for t in range(8):
            out, state = net(x[t], state)
            outputs.append(out)
    # The LIF spikes must match exactly: a single flipped spike would move an output by a
    # whole weight; the tolerance only covers the last bit of the float matmuls.
    torch.testing.assert_close(module(x), torch.stack(outputs), rtol=1e-6, atol=1e-6)

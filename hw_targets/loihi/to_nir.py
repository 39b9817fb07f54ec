r"""The float NIR graph of a :class:`~hw_targets.loihi.network.LoihiNetwork` (our conventions).

Signals are in a_in units (``v / 64``). A group with ``du = 4095`` and ``dv > 0`` becomes a
``LIF`` with ``tau = dt 4096 / dv``, whose incoming weights and bias are divided by
``alpha = dv / 4096`` so that ``v <- (1 - alpha) v + alpha I`` adds exactly the synaptic
input plus bias; ``dv = 0`` becomes an ``IF`` with ``r = 1 / dt``. Thresholds are
``vth``. Synapses become ``Conv2d`` (weights ``M 2^E``) or ``Flatten`` + ``Affine``;
a voltage-readout group (or a never-firing integrator, as netx files end with) becomes
an ``Affine -> Output`` readout whose mean over time is the score (divided by the group's
``scale`` when known). The host encoder becomes ``Input -> Conv2d``; without one the
``Input`` carries the input group's bias (a_in units) as a constant current.

What the float graph drops: the decays' rounding toward zero, the floor of negative
weight exponents, 24-bit wrapping and clipping, and the per-layer synaptic delays (NIR's
feed-forward semantics have none; for depth-equalised networks, as the quantiser makes,
the Loihi run is this graph's run shifted by each layer's depth).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from hw_targets.loihi.network import LoihiNetwork, NeuronGroup
from hw_targets.loihi.spec import (
    A_IN_UNIT,
    DECAY_MAX,
    DECAY_UNITY,
    DU_MEMORYLESS,
    DU_NEVER_DECAYS,
    VTH_HW_MAX,
)
from neurall_neuro.errors import ConversionError


def _is_integrator(group: NeuronGroup) -> bool:
    never_fires = group.vth >= VTH_HW_MAX
    return group.readout == "voltage" or (
        never_fires
        and ((group.du == DU_MEMORYLESS and group.dv == 0) or group.du == DU_NEVER_DECAYS)
    )


def _alpha(group: NeuronGroup) -> float:
    return group.dv / DECAY_UNITY if group.dv > 0 else 1.0


def _neuron(group: NeuronGroup, dt: float) -> nir.NIRNode:
    if group.du != DU_MEMORYLESS:
        raise ConversionError(
            f"group {group.name!r}: du = {group.du} keeps a synaptic current; only du = 4095 groups map to LIF/IF"
        )
    shape = group.shape
    th = np.full(shape, float(group.vth))
    meta = {"dt": dt}
    if group.dv == 0:
        return nir.IF(
            r=np.full(shape, 1.0 / dt), v_threshold=th, v_reset=np.zeros(shape), metadata=meta
        )
    if group.dv > DECAY_MAX:
        raise ConversionError(
            f"group {group.name!r}: dv = {group.dv} (full decay) has no LIF tau >= dt"
        )
    alpha = group.dv / DECAY_UNITY
    return nir.LIF(
        tau=np.full(shape, dt / alpha),
        r=np.ones(shape),
        v_leak=np.zeros(shape),
        v_threshold=th,
        v_reset=np.zeros(shape),
        metadata=meta,
    )


def network_to_nir(
    network: LoihiNetwork, dt: float = 1e-4, timesteps: int | None = None
) -> nir.NIRGraph:
    """A float NIR graph computing what ``network`` computes (see the module docstring)."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    readout = [g for g in network.groups if g.name != network.input and _is_integrator(g)]
    if len(readout) > 1:
        raise ConversionError(
            f"several readout/integrator groups: {', '.join(g.name for g in readout)}"
        )
    readout_group = readout[0] if readout else None
    inp = network.group(network.input)
    alpha_in = _alpha(inp)
    nodes["input"] = nir.Input(
        input_type={
            "input": np.array(network.encoder.input_shape if network.encoder else inp.shape)
        }
    )
    if network.encoder is not None:
        enc = network.encoder
        factor = enc.float_scale / alpha_in
        nodes["encoder"] = nir.Conv2d(
            input_shape=enc.input_shape[1:],
            weight=enc.weight * factor,
            stride=enc.stride,
            padding=enc.padding,
            dilation=enc.dilation,
            groups=enc.groups,
            bias=enc.bias * factor,
        )
        edges += [("input", "encoder"), ("encoder", inp.name)]
    elif len(inp.shape) == 3:
        c = inp.shape[0]
        nodes["encoder"] = nir.Conv2d(
            input_shape=inp.shape[1:], weight=np.full((c, 1, 1, 1), 1.0 / alpha_in),
            stride=1, padding=0, dilation=1, groups=c, bias=np.zeros(c),
        )  # fmt: skip
        edges += [("input", "encoder"), ("encoder", inp.name)]
    else:
        nodes["encoder"] = nir.Affine(weight=np.eye(inp.size) / alpha_in, bias=np.zeros(inp.size))
        edges += [("input", "encoder"), ("encoder", inp.name)]
    for group in network.groups:
        if group is not readout_group:
            nodes[group.name] = _neuron(group, dt)
    for group in network.groups:
        if group.name == network.input:
            continue
        ins = network.incoming(group.name)
        is_readout = group is readout_group
        divide = (group.scale or 1.0) if is_readout else _alpha(group)
        bias = group.effective_bias.astype(np.float64) / A_IN_UNIT
        for i, syn in enumerate(ins):
            src = network.group(syn.src)
            weight = syn.effective_weight / divide
            with_bias = bias / divide if i == 0 else np.zeros(group.shape)
            name = syn.name if syn.name not in nodes else f"{syn.name}.synapse"
            if syn.kind == "conv":
                per_channel = with_bias.reshape(with_bias.shape[0], -1)
                if not np.all(per_channel == per_channel[:, :1]):
                    raise ConversionError(
                        f"group {group.name!r}: a per-neuron bias cannot go into a Conv2d bias"
                    )
                nodes[name] = nir.Conv2d(
                    input_shape=src.shape[1:], weight=weight, stride=syn.stride, padding=syn.padding,
                    dilation=syn.dilation, groups=syn.groups, bias=per_channel[:, 0].copy(),
                )  # fmt: skip
                edges.append((syn.src, name))
            else:
                if len(group.shape) != 1:
                    raise ConversionError(
                        f"synapse {syn.name!r}: a dense synapse into the 3-D group {group.name!r}"
                    )
                head = syn.src
                if len(src.shape) == 3:
                    nodes[f"{name}.flatten"] = nir.Flatten(
                        input_type={"input": np.array(src.shape)}, start_dim=0, end_dim=-1
                    )
                    edges.append((syn.src, f"{name}.flatten"))
                    head = f"{name}.flatten"
                nodes[name] = nir.Affine(weight=weight, bias=with_bias.reshape(-1))
                edges.append((head, name))
            edges.append((name, "output" if is_readout else group.name))
        if is_readout and len(ins) != 1:
            raise ConversionError(f"the readout group {group.name!r} must have exactly one synapse")
    if readout_group is None:
        edges.append((network.output, "output"))
        out_shape = network.group(network.output).shape
    else:
        out_shape = readout_group.shape
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    meta: dict[str, Any] = {"dt": dt, "source": "LoihiNetwork"}
    if timesteps is not None:
        meta["timesteps"] = int(timesteps)
    if readout_group is not None:
        meta["readout"] = "mean_over_time"
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)

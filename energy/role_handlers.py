r"""What each built-in counting role does with a call: record it, then resolve it.

:class:`RoleHandlers` holds the record handlers (run in the forward hooks) and the resolve
handlers (run after the pass, once every device count is read back) of the built-in roles
of :mod:`energy.counting_rules`, which are registered at the end of this module (a rule
names a role, so importing this module comes before registering a rule). It is a base
class of :class:`~energy.torch_counter.OpCounter`: a role's handlers are called as
``handler(counter, call, ...)``.

What the hooks record
---------------------
Hooks only run vectorised torch reductions on tensors that already exist (no Python
loops over elements, no copies of activations):

* synaptic layers (``Conv2d``, ``Linear``) and average pools: per input position, the
  number of non-zero values over all frames, and whether the input is binary
  (``#(x == 1) == #(x != 0)``, decided from the actual values);
* neuron layers (:class:`~neurall_neuro.models.neurons.LIFLayer`): population size,
  updates (one per neuron per timestep) and spikes emitted;
* :class:`~neurall_neuro.models.se_block.ChannelGate` (the SE multiply, a module exactly so
  that hooks see it): the spike counts of both inputs, or the multiplies in analog mode;
* sums of branches (:class:`~neurall_neuro.models.blocks.ResidualAdd`), readout
  integrators (:class:`~neurall_neuro.models.blocks.MeanOverTime`) and element-wise
  layers: their sizes;
* recurrent populations: the input statistics of both weight matrices (the layer input,
  and the population's own spikes, each delivered once through the recurrent matrix);
* functional operations outside ruled modules (a bare ``x + y`` in a container's
  ``forward``): their sizes, through :class:`~energy.functional_ops.FunctionalOpTracker`;
  a functional operation no rule counts is named in the result's notes.

Resolution (after each forward pass)
------------------------------------
Calls are matched producer -> consumer by tensor identity (storage pointer and size; the
time-folding reshapes are views), as the hooks run. With ``fold_pooling=True`` (the
hardware view) a non-overlapping average pool whose input is binary and whose consumer
is a synaptic layer is folded into it (:mod:`energy.fanout`): the consumer is counted as
ACs of the pool's input spikes through the folded fan-out and the pool costs nothing.
This covers ``AvgPool2d(2) -> conv`` between stages, the SE squeeze into ``fc1``, and
global average pooling + linear in the head. With ``fold_pooling=False`` (the NeuroBench
view) the pool is counted (adds and a multiply per output) and the consumer sees a
non-binary input, so it performs MACs. Pools are therefore a *deferred* role: resolved
after their consumers.

Sums and readouts: a sum of ``k`` branches with ``n`` elements costs ``(k - 1) n`` adds (the
residual join ``y + shortcut(x)``: ``n``); the SE-SNN readout (the mean over time of the
head output) is a non-leaking integrator population: one update per class per timestep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from typing import Any

import torch
from torch import nn

from energy.counting_rules import CountingRole, _Call, register_role
from energy.counts import LayerCounts
from energy.fanout import (
    ConvGeometry,
    conv2d_fanout,
    conv2d_fanout_total,
    folded_conv2d_fanout,
    folded_linear_fanout,
    linear_fanout,
)
from energy.pooling import fold_kernel, module_window_sizes
from energy.rules import and_gate_ops, effective_ops, pooling_ops, sum_ops
from energy.tensor_stats import _Counts, _InputStats, _Key, _key, _version
from neurall_neuro.errors import ConfigError, UnsupportedModuleError


class RoleHandlers:
    """The record and resolve handlers of the built-in counting roles (a base of
    :class:`~energy.torch_counter.OpCounter`, which sets the attributes below)."""

    #: Hardware view: fold non-overlapping average pools on spikes into the next layer.
    fold_pooling: bool
    #: BatchNorm folded into the preceding layer (bias adds) rather than counted unfolded.
    fold_batchnorm: bool
    #: Output storage key -> the call that produced it, in this pass.
    _producers: dict[_Key, _Call]
    #: ``(id(module), check) -> result`` of :meth:`_cached_check`.
    _checks: dict[tuple[int, str], bool]
    #: ``(id(module), mask) -> mask`` of :meth:`_cached_mask`.
    _masks: dict[tuple[int, str], torch.Tensor]

    # -- producers and shared counts ----------------------------------------------------

    def _producer(self, tensor: torch.Tensor) -> _Call | None:
        """The call that produced ``tensor``, looking through transparent layers.

        The latest call whose output has the tensor's storage and size is the producer:
        the tensor is alive from its production to this call, so no other tensor can have
        taken its storage in between. Outputs whose counts are shared (:class:`_Counts`)
        are moreover held until the pass ends, so their storage cannot be reused by a
        tensor that no hook sees.
        """
        source = self._producers.get(_key(tensor))
        if source is not None and source.role.transparent:
            return source.source
        return source

    @staticmethod
    def _shared_counts(tensor: torch.Tensor, source: _Call | None) -> _Counts | None:
        """The producer's counts of ``tensor``, if it made them and nothing changed it since.

        ``tensor`` has the producer's output storage (same key); its version counter tells
        whether an operation no hook sees modified it in place after it was counted.
        """
        if source is None or source.out_counts is None or source.out_version is None:
            return None
        return source.out_counts if _version(tensor) == source.out_version else None

    def _counts_of(self, tensor: torch.Tensor, source: _Call | None) -> _Counts:
        """The producer's counts of ``tensor`` if they still hold, else counted here."""
        shared = self._shared_counts(tensor, source)
        return shared if shared is not None else _Counts.of(tensor)

    # -- recording, per role (run in the forward hooks) -------------------------------

    def _record_input_stats(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        """Per-position input counts (average pools; synaptic layers without a folded pool)."""
        if call.role.name == "avgpool" or self._pool_fold(call) is None:
            x = inputs[0]
            call.stats = _InputStats.of(x, self._shared_counts(x, call.source))

    def _record_neuron(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        """A neuron population (``[T, B, ...]``, or one step ``[B, ...]``): one update per
        neuron per frame, and its spikes (shared with its consumers). A voltage readout
        (``rule.spiking`` false) emits none; its output's counts are still shared."""
        x = inputs[0]
        counts = _Counts.of(output)
        call.out_counts, call.out_version = counts, _version(output)
        call.kind = "lif"
        call.lazy = {
            "neuron_updates": output.numel(),
            "spikes": counts.events if call.rule.spiking else 0,
            "input_elements": x.numel(),
            "output_elements": output.numel(),
        }

    def _record_recurrent(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        r"""A recurrent population: statistics of its input (into ``W_in``) and of the
        spikes it emits, each of which is delivered once through ``W_rec`` (event-driven:
        routed when emitted, integrated at the next step)."""
        if call.rule.recurrent is None:
            raise ConfigError(f"{call.name}: a 'recurrent' rule needs its RecurrentSpec")
        x = inputs[0]
        call.stats = _InputStats.of(
            x.reshape(-1, *call.in_shape), self._shared_counts(x, call.source)
        )
        counts = _Counts.of(output)
        call.extra["recurrent"] = _InputStats.of(output.reshape(-1, *call.out_shape), counts)
        call.out_counts, call.out_version = counts, _version(output)
        call.lazy = {
            "neuron_updates": output.numel(),
            "spikes": counts.events if call.rule.spiking else 0,
            "input_elements": output.numel(),
            "output_elements": output.numel(),
        }

    def _record_gate(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        """``features * gate``: the counts of both inputs and of the output (shared)."""
        x, gate = inputs[0], inputs[1]
        call.out_counts, call.out_version = _Counts.of(output), _version(output)
        call.extra = {
            "features": self._counts_of(x, call.source),
            "gate": self._counts_of(gate, self._producer(gate)),
            "gate_shape": tuple(gate.shape[1:]),
        }
        call.lazy = {"spikes": call.out_counts.events}

    def _record_elementwise(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        if call.rule.elementwise is None:
            raise ConfigError(f"{call.name}: an 'elementwise' rule needs its elementwise function")
        call.kind, call.lazy = call.rule.elementwise(call.module, inputs, output)

    def _record_sum(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        """A sum of tensor inputs: its sizes (:func:`energy.rules.sum_ops`)."""
        terms = [t for t in inputs if isinstance(t, torch.Tensor)]
        n = output.numel()
        call.lazy = {
            "adds": sum_ops(len(terms), n),
            "input_elements": sum(t.numel() for t in terms),
            "output_elements": n,
        }

    def _record_integrator(self, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
        """Non-leaking integrators on ``[T, B, ...]``: one update per unit per step."""
        updates = inputs[0].numel()
        call.lazy = {
            "neuron_updates": updates,
            "input_elements": updates,
            "output_elements": output.numel(),
        }

    def _pool_fold(self, call: _Call) -> tuple[int, int] | None:
        """Kernel of the average pool folded into synaptic ``call``, or ``None``.

        Folded: a non-overlapping average pool (``fold_pooling``) with the same frames whose
        input is binary. Decided in the hook where the pool's counts are already known (CPU:
        the layer's own input statistics are then never computed) and again in resolution,
        after every count is read back.
        """
        pool = call.source
        if pool is None or pool.role.name != "avgpool" or pool.stats is None:
            return None
        kernel = self._foldable(pool)
        if kernel is None or pool.frames != call.frames or not pool.stats.counts.known_binary():
            return None
        return kernel

    # -- resolution, per role (after the pass) ------------------------------------------

    @staticmethod
    def _layer(
        call: _Call, samples: int, kind: str, values: Mapping[str, Any], **fields: Any
    ) -> LayerCounts:
        steps = fields.pop("steps", max(1, call.frames // samples))
        name = fields.pop("name", call.name)
        # Values may still be device tensors here; _resolve reads them back in one transfer.
        return LayerCounts(name=name, kind=kind, steps=steps, **dict(values), **fields)

    @staticmethod
    def _geometry(call: _Call) -> ConvGeometry:
        if len(call.in_shape) != 3:
            raise _shape_error(call)
        return ConvGeometry.from_module(call.module)

    def _synaptic(self, call: _Call, samples: int) -> LayerCounts:
        """Rules of :mod:`energy.rules`: effective = sum_i n_i F_i (kept on the device until
        read back), dense = N sum_i F_i (from cached per-shape totals)."""
        module, source, frames = call.module, call.source, call.frames
        kernel = self._pool_fold(call)
        if source is not None and source.role.name == "avgpool":
            source.folded_by.append(kernel is not None)
        stats = source.stats if kernel is not None and source is not None else call.stats
        if stats is None:
            raise RuntimeError(f"{call.name}: no input statistics and no folded pool (a bug)")
        device = stats.nonzero.device
        conv = isinstance(module, nn.Conv2d)
        geometry = self._geometry(call) if conv else None
        if conv:
            fanout = conv2d_fanout(geometry, call.in_shape[1], call.in_shape[2], device)
            per_frame = conv2d_fanout_total(geometry, call.in_shape[1], call.in_shape[2])
        else:
            fanout = linear_fanout(call.in_shape, module.out_features, device)
            per_frame = prod(call.in_shape) * module.out_features
        folded = ""
        if kernel is not None and source is not None:
            channels, height, width = source.in_shape
            if conv:
                fanout = folded_conv2d_fanout(geometry, kernel, height, width, device)
            else:
                fanout = folded_linear_fanout(
                    channels, module.out_features, kernel, height, width, device
                )
            per_frame *= kernel[0] * kernel[1]  # every pooled position repeated k_h x k_w times
            folded = source.name
        events, binary = stats.resolve()
        effective, dense = effective_ops(stats.nonzero, fanout), frames * per_frame
        out_elements = frames * prod(call.out_shape)
        values = {
            "input_elements": frames * int(stats.nonzero.numel()),
            "input_events": events,
            "output_elements": out_elements,
            "bias_adds": out_elements if self._cached_check(module, _has_bias) else 0,
        }
        if binary:
            values.update(synops=effective, synops_dense=dense)
        else:
            values.update(macs=effective, macs_dense=dense)
        kind = "conv" if conv else "linear"
        return self._layer(call, samples, kind, values, input_binary=binary, folded=folded)

    def _cached_check(self, module: nn.Module, check: Callable[[nn.Module], bool]) -> bool:
        """``check(module)`` once per module and counter (parameters are fixed while counting)."""
        key = (id(module), check.__name__)
        if key not in self._checks:
            self._checks[key] = check(module)
        return self._checks[key]

    def _foldable(self, pool: _Call) -> tuple[int, int] | None:
        if not self.fold_pooling or len(pool.in_shape) != 3:
            return None
        return fold_kernel(pool.module, (pool.in_shape[1], pool.in_shape[2]))

    def _lif(self, call: _Call, samples: int) -> LayerCounts:
        return self._layer(
            call,
            samples,
            call.rule.kind or "lif",
            call.lazy,
            steps=max(1, call.frames // samples),
            neurons=prod(call.out_shape),
            note=call.rule.note,
        )

    def _resolve_recurrent(self, call: _Call, samples: int) -> list[LayerCounts]:
        r"""Three rows: ``<name>.input_weights`` (ACs of binary inputs, else MACs:
        :math:`\sum_i n_i F^{in}_i`), ``<name>.recurrent_weights`` (ACs of the spikes
        emitted: :math:`\sum_j s_j F^{rec}_j`, :math:`F^{rec}_j` the neurons spike ``j``
        reaches) and ``<name>``, the neurons (updates and spikes)."""
        spec = call.rule.recurrent
        assert spec is not None and call.stats is not None  # checked when recorded
        rows = []
        for suffix, stats, mask in (
            ("input_weights", call.stats, self._cached_mask(call.module, spec.input_mask)),
            ("recurrent_weights", call.extra["recurrent"], self._cached_mask(call.module, spec.recurrent_mask)),
        ):  # fmt: skip
            device = stats.nonzero.device
            fanout = mask.to(device).sum(0).to(torch.int64).reshape(stats.nonzero.shape)
            events, binary = stats.resolve()
            frames = call.frames
            values: dict[str, Any] = {
                "input_elements": frames * int(stats.nonzero.numel()),
                "input_events": events,
                "output_elements": frames * prod(call.out_shape),
            }
            effective, dense = effective_ops(stats.nonzero, fanout), frames * int(fanout.sum())
            if binary:
                values.update(synops=effective, synops_dense=dense)
            else:
                values.update(macs=effective, macs_dense=dense)
            kind = "linear" if suffix == "input_weights" else "recurrent"
            rows.append(
                self._layer(
                    call,
                    samples,
                    kind,
                    values,
                    name=f"{call.name}.{suffix}",
                    input_binary=binary,
                )
            )
        rows.append(self._lif(call, samples))
        return rows

    def _cached_mask(
        self, module: nn.Module, mask: Callable[[nn.Module], torch.Tensor]
    ) -> torch.Tensor:
        """A structural mask, once per module and counter (weights are fixed while counting)."""
        key = (id(module), getattr(mask, "__qualname__", repr(mask)))
        if key not in self._masks:
            self._masks[key] = mask(module).detach().to(torch.bool)
        return self._masks[key]

    def _resolve_functional(self, call: _Call, samples: int) -> LayerCounts:
        return self._layer(call, samples, call.rule.kind or "functional", call.lazy)

    def _gate(self, call: _Call, samples: int) -> LayerCounts:
        features: _Counts = call.extra["features"]
        gate: _Counts = call.extra["gate"]
        feature_spikes, features_binary = features.resolve()
        gate_spikes, gate_binary = gate.resolve()
        channels, height, width = call.in_shape
        gate_elements = call.frames * prod(call.extra["gate_shape"])
        feature_elements = call.frames * prod(call.in_shape)
        if features_binary and gate_binary:
            synops, dense, updates = and_gate_ops(
                gate_spikes, feature_spikes, call.frames, channels, height, width
            )
            values = {
                "synops": synops,
                "synops_dense": dense,
                "neuron_updates": updates,
                "spikes": call.lazy["spikes"],
                "input_elements": feature_elements + gate_elements,
                "input_events": feature_spikes + gate_spikes,
                "output_elements": feature_elements,
            }
            return self._layer(
                call,
                samples,
                "and-gate",
                values,
                input_binary=True,
                neurons=channels * height * width,
                note="spiking SE gate: AND neurons; gate spike -> H*W synapses, feature spike -> 1",
            )
        values = {
            "mults": feature_elements,
            "input_elements": feature_elements + gate_elements,
            "input_events": feature_spikes + gate_spikes,
            "output_elements": feature_elements,
        }
        return self._layer(call, samples, "gate-mult", values, input_binary=False)

    def _pool(self, call: _Call, samples: int, average: bool) -> LayerCounts:
        if len(call.in_shape) != 3:
            raise _shape_error(call)
        channels = call.in_shape[0]
        windows = module_window_sizes(call.module, call.in_shape[1:], call.out_shape[1:])
        reductions, outputs = pooling_ops(windows, channels, call.frames)
        values = {
            "input_elements": call.frames * prod(call.in_shape),
            "output_elements": outputs,
        }
        if average:  # one multiply (the 1/n scale) per output whose window has n > 1 inputs
            values.update(adds=reductions, mults=call.frames * channels * int((windows > 1).sum()))
            if call.stats is not None:
                values["input_events"], binary = call.stats.resolve()
                return self._layer(call, samples, "avgpool", values, input_binary=binary)
            return self._layer(call, samples, "avgpool", values)
        values["comparisons"] = reductions
        return self._layer(call, samples, "maxpool", values)

    def _resolve_avgpool(self, call: _Call, samples: int) -> LayerCounts | None:
        """Counted as its own layer unless every consumer folded it (deferred role)."""
        if call.folded_by and all(call.folded_by):
            return None
        return self._pool(call, samples, average=True)

    def _resolve_maxpool(self, call: _Call, samples: int) -> LayerCounts:
        return self._pool(call, samples, average=False)

    def _resolve_elementwise(self, call: _Call, samples: int) -> LayerCounts:
        return self._layer(call, samples, call.rule.kind or call.kind, call.lazy)

    def _resolve_sum(self, call: _Call, samples: int) -> LayerCounts:
        return self._layer(call, samples, call.rule.kind or "add", call.lazy, note=call.rule.note)

    def _resolve_integrator(self, call: _Call, samples: int) -> LayerCounts:
        kind = call.rule.kind or "integrator"
        neurons = prod(call.in_shape)
        return self._layer(call, samples, kind, call.lazy, neurons=neurons, note=call.rule.note)

    def _batchnorm(self, call: _Call, samples: int) -> LayerCounts:
        n = call.frames * prod(call.out_shape)
        if self.fold_batchnorm:
            shifted = self._cached_check(call.module, _batchnorm_shift_nonzero)
            values = {"bias_adds": n if shifted else 0}
            note = "folded into the preceding layer: its shift is a bias"
        else:
            values = {"mults": n, "adds": n, "input_elements": n, "output_elements": n}
            note = "unfolded: y = a x + b per element"
        return self._layer(call, samples, "batchnorm", values, note=note)


def _shape_error(call: _Call) -> UnsupportedModuleError:
    """A 2-d layer (convolution, pooling) called on something else than ``[N, C, H, W]``."""
    return UnsupportedModuleError(
        type(call.module),
        call.name,
        reason=f"got per-frame shape {call.in_shape}",
        operation="count operations",
        problem="needs a [N, C, H, W] input",
    )


def _has_bias(module: nn.Module) -> bool:
    """A bias costs one add per output only if it exists and is not all zero (as in NIR)."""
    bias = getattr(module, "bias", None)
    return isinstance(bias, torch.Tensor) and bool(torch.any(bias != 0))


def _batchnorm_shift_nonzero(bn: nn.Module) -> bool:
    """Whether the shift ``beta - mean * gamma / sqrt(var + eps)`` of a folded BN is non-zero."""
    mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
    if mean is None or var is None:
        return True  # batch statistics at inference: the shift is data dependent
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return bool(torch.any(shift != 0))


# The built-in roles (their rules: the torch.nn layers at the end of energy.torch_counter,
# energy.rules_neurall_layers, energy.rules_norse).
for _role in (
    CountingRole(
        "synaptic", record=RoleHandlers._record_input_stats, resolve=RoleHandlers._synaptic
    ),
    CountingRole(
        "avgpool",
        record=RoleHandlers._record_input_stats,
        resolve=RoleHandlers._resolve_avgpool,
        deferred=True,
    ),
    CountingRole("maxpool", resolve=RoleHandlers._resolve_maxpool),
    CountingRole("batchnorm", resolve=RoleHandlers._batchnorm),
    CountingRole(
        "neuron", record=RoleHandlers._record_neuron, resolve=RoleHandlers._lif, time_major=True
    ),
    CountingRole("gate", record=RoleHandlers._record_gate, resolve=RoleHandlers._gate),
    CountingRole("add", record=RoleHandlers._record_sum, resolve=RoleHandlers._resolve_sum),
    CountingRole(
        "integrator",
        record=RoleHandlers._record_integrator,
        resolve=RoleHandlers._resolve_integrator,
        time_major=True,
    ),
    CountingRole(
        "elementwise",
        record=RoleHandlers._record_elementwise,
        resolve=RoleHandlers._resolve_elementwise,
    ),
    CountingRole("passthrough", transparent=True),
    CountingRole(
        "recurrent", record=RoleHandlers._record_recurrent, resolve=RoleHandlers._resolve_recurrent
    ),
    CountingRole("functional", resolve=RoleHandlers._resolve_functional),  # filled by _on_op
):
    register_role(_role)

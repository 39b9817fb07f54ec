r"""Counting the operations of a torch / Norse model with forward hooks.

:class:`OpCounter` attaches a forward hook to every leaf module (and to the few
containers that hold functional operations), runs the model on data in eval mode, and
turns what the hooks saw into exact :class:`~energy.counts.LayerCounts`.

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
* element-wise layers: their sizes.

Each spike tensor is counted once: the hook of the layer that emits it (LIF, gate) counts
its non-zero values and its ones, and the consumers of the same storage reuse those counts
unless the tensor's version counter says an unhooked operation changed it in place since.
To make "same storage" mean "same tensor", the counter holds these outputs until the pass
ends (extra memory: one batch's spike tensors). A synaptic layer into which an average pool
on binary input is folded (below) computes no input statistics of its own.

Time folding: the SE-SNN runs stateless layers on ``[T*B, ...]`` (time folded into the
batch) and stateful ones on ``[T, B, ...]``; every call's leading dimension(s) are frames,
and per-sample figures divide by the batch size ``B`` of the images passed in. The
direct-encoding convolution is called once per image (``[B, ...]``), so it is counted
once per image, not ``T`` times.

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
non-binary input, so it performs MACs.

Functional operations invisible to hooks are counted by container rules: the residual
join ``y + shortcut(x)`` of :class:`~neurall_neuro.models.se_cnn.ResidualSEStage` (one add
per element of the sum) and the SE-SNN readout (the mean over time of the head output is a
non-leaking integrator population: one update per class per timestep).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn

from energy.counts import COUNT_FIELDS, LayerCounts, ModelCounts
from energy.fanout import (
    ConvGeometry,
    conv2d_fanout,
    conv2d_fanout_total,
    folded_conv2d_fanout,
    folded_linear_fanout,
    linear_fanout,
)
from energy.pooling import fold_kernel, module_window_sizes
from energy.rules import and_gate_ops, effective_ops, pooling_ops
from neurall_neuro.errors import ConfigError, UnsupportedModuleError
from neurall_neuro.models.neurallnet import NeurAllNet
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.se_block import ChannelGate, SEBlock
from neurall_neuro.models.se_cnn import ResidualSEStage
from neurall_neuro.progress import track

_Key = tuple[int, int, torch.dtype, torch.device]

SYNAPTIC_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
AVG_POOL_TYPES: tuple[type[nn.Module], ...] = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
MAX_POOL_TYPES: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)
PASSTHROUGH_TYPES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Dropout, nn.Identity)

#: Element-wise rule: ``(module, inputs, output) -> (kind, counts)`` with counts a dict of
#: :class:`LayerCounts` count fields (ints or 0-dim tensors). Extend via ``extra_rules``.
ElementwiseRule = Callable[
    [nn.Module, tuple[torch.Tensor, ...], torch.Tensor], tuple[str, dict[str, Any]]
]


def _key(tensor: torch.Tensor) -> _Key:
    return (tensor.data_ptr(), tensor.numel(), tensor.dtype, tensor.device)


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place modification counter (shared by views), ``None`` for inference tensors."""
    try:
        return tensor._version
    except RuntimeError:  # tensors created under torch.inference_mode() have none
        return None


#: Frames up to which a float32 sum of 0/1 values over frames is exact (2^24).
_EXACT_FLOAT_SUM = 2**24


@dataclass
class _Counts:
    """Exact counts of one tensor: non-zero values (events) and values equal to 1.

    The tensor is binary iff ``#(x == 1) == #(x != 0)``. On the CPU the counts are ints at
    once; on an accelerator they stay 0-dim device tensors (the hook does not synchronise)
    and are read back together after the forward pass (:func:`_read_back`). A spike tensor
    is counted once, by the hook of the layer that emits it, and every consumer of the same
    storage reuses these counts (:meth:`OpCounter._record`).
    """

    events: torch.Tensor | int
    ones: torch.Tensor | int

    @classmethod
    def of(cls, x: torch.Tensor) -> _Counts:
        events, ones = torch.count_nonzero(x), torch.count_nonzero(x == 1)
        if x.device.type == "cpu":
            return cls(events=int(events), ones=int(ones))
        return cls(events=events, ones=ones)

    def known_binary(self) -> bool | None:
        """Whether all non-zero values equal 1, or ``None`` while the counts are on a device."""
        if isinstance(self.events, torch.Tensor) or isinstance(self.ones, torch.Tensor):
            return None
        return self.events == self.ones

    def resolve(self) -> tuple[int, bool]:
        """``(events, binary)``: total non-zero values and whether all of them equal 1."""
        events, ones = int(self.events), int(self.ones)
        return events, ones == events


@dataclass
class _InputStats:
    """Non-zero counts per input position (summed over frames) and the input's :class:`_Counts`.

    When the input is known to be binary (CPU counts) the per-position counts take the fast
    contiguous reduction ``x.sum(0)`` (exact: sums of 0/1 over fewer than 2^24 frames);
    otherwise ``(x != 0).sum(0)``.
    """

    nonzero: torch.Tensor
    counts: _Counts

    @classmethod
    def of(cls, x: torch.Tensor, counts: _Counts | None = None) -> _InputStats:
        """Statistics of ``x``, reusing ``counts`` of the same tensor if its producer made them."""
        if counts is None and x.device.type != "cpu":
            nonzero = (x != 0).sum(0)  # events from the per-position counts: one pass fewer
            return cls(nonzero, _Counts(events=nonzero.sum(), ones=torch.count_nonzero(x == 1)))
        if counts is None:
            counts = _Counts.of(x)
        if counts.known_binary() and x.shape[0] < _EXACT_FLOAT_SUM and x.is_floating_point():
            nonzero = x.sum(0, dtype=torch.float32).to(torch.int64)
        else:
            nonzero = (x != 0).sum(0)
        return cls(nonzero=nonzero, counts=counts)

    def resolve(self) -> tuple[int, bool]:
        """``(events, binary)``: total non-zero inputs and whether all of them equal 1."""
        return self.counts.resolve()


def _read_back(slots: list[tuple[Any, str]]) -> None:
    """Replace the 0-dim tensors at ``slots`` (object attribute or dict key) by ints, with
    one device-to-host transfer per device instead of one synchronisation per value."""

    def get(owner: Any, key: str) -> Any:
        return owner[key] if isinstance(owner, dict) else getattr(owner, key)

    groups: dict[torch.device, list[tuple[Any, str]]] = {}
    for owner, key in slots:
        value = get(owner, key)
        if isinstance(value, torch.Tensor):
            groups.setdefault(value.device, []).append((owner, key))
    for group in groups.values():
        values = [get(o, k) for o, k in group]
        if any(v.dtype != torch.int64 or v.dim() for v in values):
            values = [v.reshape(()).to(torch.int64) for v in values]
        stacked = torch.stack(values)
        for (owner, key), value in zip(group, stacked.tolist(), strict=True):
            if isinstance(owner, dict):
                owner[key] = int(value)
            else:
                setattr(owner, key, int(value))


@dataclass
class _Call:
    """One module call seen by a hook (tensors stay on their device until resolution)."""

    name: str
    module: nn.Module
    role: str  # synaptic | avgpool | passthrough | lif | gate | elementwise | container
    frames: int
    out_key: _Key | None = None
    in_shape: tuple[int, ...] = ()  # per frame
    out_shape: tuple[int, ...] = ()  # per frame
    stats: _InputStats | None = None
    source: _Call | None = None  # producer of the input (looking through pass-throughs)
    out_counts: _Counts | None = None  # counts of the output, shared with its consumers
    out_version: int | None = None  # the output's in-place version when it was counted
    kind: str = ""
    lazy: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    folded_by: list[bool] = field(default_factory=list)


def _relu_rule(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> tuple[str, dict]:
    n = output.numel()
    return "relu", {"comparisons": n, "input_elements": n, "output_elements": n}


def _sigmoid_rule(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> tuple[str, dict]:
    n = output.numel()
    return "sigmoid", {"nonlinear": n, "input_elements": n, "output_elements": n}


DEFAULT_ELEMENTWISE_RULES: dict[type[nn.Module], ElementwiseRule] = {
    nn.ReLU: _relu_rule,
    nn.Sigmoid: _sigmoid_rule,
}


def _container_residual(
    module: nn.Module, name: str, calls: list[_Call], samples: int
) -> list[LayerCounts]:
    """Residual join of a ResidualSEStage: one add per element of ``y + shortcut(x)``."""
    relu = next((c for c in calls if c.name == _join(name, "relu2")), None)
    if relu is None:
        raise UnsupportedModuleError(
            f"{name}: cannot find relu2, the input of which is the residual sum"
        )
    n = int(relu.lazy["input_elements"])
    return [
        LayerCounts(
            name=_join(name, "residual"),
            kind="residual",
            steps=max(1, relu.frames // samples),
            adds=n,
            input_elements=2 * n,
            output_elements=n,
            note="y + shortcut(x): functional add, counted by the stage rule",
        )
    ]


def _container_readout(
    module: nn.Module, name: str, calls: list[_Call], samples: int
) -> list[LayerCounts]:
    """SE-SNN readout: the time-mean of the head is a non-leaking integrator (K per step)."""
    head = next((c for c in calls if c.name == _join(name, "body.head_fc")), None)
    if head is None:
        raise UnsupportedModuleError(f"{name}: cannot find body.head_fc for the readout integrator")
    classes = head.out_shape[-1]
    updates = head.frames * prod(head.out_shape)
    return [
        LayerCounts(
            name=_join(name, "readout"),
            kind="readout",
            steps=max(1, head.frames // samples),
            neurons=classes,
            neuron_updates=updates,
            input_elements=updates,
            output_elements=samples * classes,
            note="mean over T of the head output = non-leaking integrator, one update per class per step",
        )
    ]


ContainerRule = Callable[[nn.Module, str, list[_Call], int], list[LayerCounts]]

DEFAULT_CONTAINER_RULES: dict[type[nn.Module], ContainerRule] = {
    ResidualSEStage: _container_residual,
    NeurAllNet: _container_readout,
}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class OpCounter:
    """Counts the operations of ``model`` over one or more forward passes.

    Use as a context manager (hooks are removed on exit)::

        with OpCounter(model) as counter:
            for images in batches:
                counter.run(images)
        counts = counter.result()

    Only passes made through :meth:`run` are counted: calling the model directly while
    the hooks are attached counts nothing and keeps nothing.

    Args:
        model: a torch module; every leaf must have a counting rule (unknown leaves raise
            :class:`~neurall_neuro.errors.UnsupportedModuleError` before anything runs).
        fold_pooling: hardware view (fold non-overlapping average pools on spikes into the
            next synaptic layer); ``False`` gives the NeuroBench view.
        fold_batchnorm: BatchNorm folded into the preceding layer (costs one bias add per
            element); ``False`` counts one multiply and one add per element.
        name: the model's name in the result (default: its ``registry_name`` or class).
        extra_rules: rules for additional element-wise leaf module types.
    """

    def __init__(
        self,
        model: nn.Module,
        fold_pooling: bool = True,
        fold_batchnorm: bool = True,
        name: str | None = None,
        extra_rules: Mapping[type[nn.Module], ElementwiseRule] | None = None,
    ):
        self.model = model
        self.fold_pooling = fold_pooling
        self.fold_batchnorm = fold_batchnorm
        self.name = name or getattr(model, "registry_name", None) or type(model).__name__
        self.elementwise_rules = {**DEFAULT_ELEMENTWISE_RULES, **dict(extra_rules or {})}
        self.container_rules = dict(DEFAULT_CONTAINER_RULES)
        self._handles: list[Any] = []
        self._checks: dict[tuple[int, str], bool] = {}
        self._calls: list[_Call] = []
        self._producers: dict[_Key, _Call] = {}
        self._held: list[torch.Tensor] = []
        self._running = False
        self._layers: dict[str, LayerCounts] = {}
        self._samples = 0
        self._timesteps = 1
        self._roles = self._plan()

    # -- planning -----------------------------------------------------------------------

    def _role(self, module: nn.Module) -> str | None:
        if isinstance(module, SYNAPTIC_TYPES):
            return "synaptic"
        if isinstance(module, AVG_POOL_TYPES):
            return "avgpool"
        if isinstance(module, MAX_POOL_TYPES):
            return "maxpool"
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            return "batchnorm"
        if isinstance(module, LIFLayer):
            return "lif"
        if isinstance(module, ChannelGate):
            return "gate"
        if isinstance(module, PASSTHROUGH_TYPES) or (
            isinstance(module, SEBlock) and module.mode == "none"
        ):
            return "passthrough"
        if type(module) in self.elementwise_rules:
            return "elementwise"
        if type(module) in self.container_rules:
            return "container"
        if next(module.children(), None) is not None:
            return None  # plain container: its children are counted
        return "unknown"

    def _plan(self) -> dict[str, str]:
        roles: dict[str, str] = {}
        unknown = []
        for name, module in self.model.named_modules():
            role = self._role(module)
            if role == "unknown":
                unknown.append(f"{name or '<root>'} ({type(module).__name__})")
            elif role is not None:
                roles[name] = role
        if unknown:
            supported = sorted(
                {
                    t.__name__
                    for t in SYNAPTIC_TYPES + AVG_POOL_TYPES + MAX_POOL_TYPES + PASSTHROUGH_TYPES
                }
                | {"BatchNorm1d", "BatchNorm2d", "LIFLayer", "ChannelGate"}
                | {t.__name__ for t in self.elementwise_rules}
            )
            raise UnsupportedModuleError(
                f"no counting rule for module(s) {', '.join(unknown)}; supported leaf types: "
                f"{', '.join(supported)} (add element-wise ones with OpCounter(extra_rules=...))"
            )
        return roles

    # -- hooks --------------------------------------------------------------------------

    def __enter__(self) -> OpCounter:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> None:
        """Register the forward hooks (idempotent)."""
        if self._handles:
            return
        for name, module in self.model.named_modules():
            role = self._roles.get(name)
            if role is not None:
                self._handles.append(module.register_forward_hook(self._make_hook(name, role)))

    def detach(self) -> None:
        """Remove all hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _make_hook(self, name: str, role: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if not self._running:  # a forward pass outside run(): not counted, nothing kept
                return
            call = self._record(name, role, module, inputs, output)
            self._calls.append(call)
            if call.out_key is not None:
                self._producers[call.out_key] = call
                if call.out_counts is not None:  # its storage stays taken until the pass ends
                    self._held.append(output)

        return hook

    def _producer(self, tensor: torch.Tensor) -> _Call | None:
        """The call that produced ``tensor``, looking through pass-through layers.

        The latest call whose output has the tensor's storage and size is the producer:
        the tensor is alive from its production to this call, so no other tensor can have
        taken its storage in between. Outputs whose counts are shared (:class:`_Counts`)
        are moreover held until the pass ends, so their storage cannot be reused by a
        tensor that no hook sees.
        """
        source = self._producers.get(_key(tensor))
        if source is not None and source.role == "passthrough":
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

    def _record(
        self, name: str, role: str, module: nn.Module, inputs: tuple[Any, ...], output: Any
    ) -> _Call:
        if role == "container":
            return _Call(name=name, module=module, role=role, frames=0)
        x = inputs[0]
        if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
            raise UnsupportedModuleError(f"{name}: counting needs tensor inputs and outputs")
        source = self._producer(x)
        if role == "lif":  # [T, B, ...]
            spikes = _Counts.of(output)
            return _Call(
                name=name,
                module=module,
                role=role,
                frames=x.shape[0] * x.shape[1],
                out_key=_key(output),
                in_shape=tuple(x.shape[2:]),
                out_shape=tuple(output.shape[2:]),
                source=source,
                out_counts=spikes,
                out_version=_version(output),
                kind="lif",
                extra={"steps": x.shape[0]},
                lazy={
                    "neuron_updates": x.numel(),
                    "spikes": spikes.events,
                    "input_elements": x.numel(),
                    "output_elements": output.numel(),
                },
            )
        call = _Call(
            name=name,
            module=module,
            role=role,
            frames=x.shape[0],
            out_key=_key(output),
            in_shape=tuple(x.shape[1:]),
            out_shape=tuple(output.shape[1:]),
            source=source,
        )
        if role == "avgpool" or (role == "synaptic" and self._pool_fold(call) is None):
            call.stats = _InputStats.of(x, self._shared_counts(x, source))
        elif role == "gate":
            gate = inputs[1]
            call.out_counts, call.out_version = _Counts.of(output), _version(output)
            call.extra = {
                "features": self._counts_of(x, source),
                "gate": self._counts_of(gate, self._producer(gate)),
                "gate_shape": tuple(gate.shape[1:]),
            }
            call.lazy = {"spikes": call.out_counts.events}
        elif role == "elementwise":
            call.kind, call.lazy = self.elementwise_rules[type(module)](module, inputs, output)
        return call

    def _pool_fold(self, call: _Call) -> tuple[int, int] | None:
        """Kernel of the average pool folded into synaptic ``call``, or ``None``.

        Folded: a non-overlapping average pool (``fold_pooling``) with the same frames whose
        input is binary. Decided in the hook where the pool's counts are already known (CPU:
        the layer's own input statistics are then never computed) and again in resolution,
        after every count is read back.
        """
        pool = call.source
        if pool is None or pool.role != "avgpool" or pool.stats is None:
            return None
        kernel = self._foldable(pool)
        if kernel is None or pool.frames != call.frames or not pool.stats.counts.known_binary():
            return None
        return kernel

    # -- running ------------------------------------------------------------------------

    def run(self, inputs: torch.Tensor) -> Any:
        """One forward pass on a batch ``[B, ...]`` (eval mode, no grad); returns the output."""
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
            raise ConfigError("inputs must be a batched tensor [B, ...]")
        attached = bool(self._handles)
        self.attach()
        training = self.model.training
        self.model.eval()
        try:
            self._running = True
            with torch.no_grad():
                output = self.model(inputs)
            self._resolve(inputs.shape[0])
        finally:  # the next pass starts from empty calls; held spike tensors are let go
            self._running = False
            self._calls, self._producers, self._held = [], {}, []
            self.model.train(training)
            if not attached:
                self.detach()
        return output

    def result(self) -> ModelCounts:
        """Counts accumulated over every :meth:`run` so far."""
        if not self._samples:
            raise ConfigError("no data counted yet: call run() with at least one batch")
        return ModelCounts(
            model=self.name,
            samples=self._samples,
            timesteps=self._timesteps,
            layers=list(self._layers.values()),
            source="torch-hooks",
            view="hardware" if self.fold_pooling else "neurobench",
            notes=[
                "BatchNorm folded into the preceding layer (bias adds)"
                if self.fold_batchnorm
                else "BatchNorm counted unfolded (1 mult + 1 add per element)",
            ],
        )

    # -- resolution ---------------------------------------------------------------------

    def _resolve(self, samples: int) -> None:
        slots: list[tuple[Any, str]] = []
        for call in self._calls:
            counts = [call.out_counts, call.extra.get("features"), call.extra.get("gate")]
            counts.append(call.stats.counts if call.stats is not None else None)
            slots += [(c, key) for c in counts if c is not None for key in ("events", "ones")]
            slots += [(call.lazy, key) for key in call.lazy]
        _read_back(slots)
        results: list[tuple[_Call, LayerCounts | None]] = []
        for call in self._calls:
            counts: LayerCounts | None = None
            if call.role == "synaptic":
                counts = self._synaptic(call, samples)
            elif call.role == "lif":
                counts = self._lif(call, samples)
            elif call.role == "gate":
                counts = self._gate(call, samples)
            elif call.role == "maxpool":
                counts = self._pool(call, samples, average=False)
            elif call.role == "batchnorm":
                counts = self._batchnorm(call, samples)
            elif call.role == "elementwise":
                counts = self._layer(call, samples, call.kind, call.lazy)
            results.append((call, counts))
        ordered: list[LayerCounts] = []
        for call, counts in results:
            if call.role == "avgpool" and not (call.folded_by and all(call.folded_by)):
                counts = self._pool(call, samples, average=True)
            if call.role == "container":
                rule = self.container_rules[type(call.module)]
                prefix = call.name + "."
                children = [c for c in self._calls if not call.name or c.name.startswith(prefix)]
                ordered.extend(rule(call.module, call.name, children, samples))
            if counts is not None:
                ordered.append(counts)
        _read_back([(layer, name) for layer in ordered for name in COUNT_FIELDS])
        for counts in ordered:
            self._add(counts)
        self._samples += samples
        self._timesteps = max(
            [self._timesteps]
            + [layer.steps for layer in self._layers.values() if layer.kind == "lif"]
        )

    def _add(self, counts: LayerCounts) -> None:
        existing = self._layers.get(counts.name)
        if existing is None:
            self._layers[counts.name] = counts
        else:
            existing.merge(counts)

    @staticmethod
    def _layer(
        call: _Call, samples: int, kind: str, values: Mapping[str, Any], **fields: Any
    ) -> LayerCounts:
        steps = fields.pop("steps", max(1, call.frames // samples))
        # Values may still be device tensors here; _resolve reads them back in one transfer.
        return LayerCounts(name=call.name, kind=kind, steps=steps, **dict(values), **fields)

    @staticmethod
    def _geometry(call: _Call) -> ConvGeometry:
        if len(call.in_shape) != 3:
            raise UnsupportedModuleError(
                f"{call.name}: expected a [N, C, H, W] input, got per-frame {call.in_shape}"
            )
        return ConvGeometry.from_module(call.module)

    def _synaptic(self, call: _Call, samples: int) -> LayerCounts:
        """Rules of :mod:`energy.rules`: effective = sum_i n_i F_i (kept on the device until
        read back), dense = N sum_i F_i (from cached per-shape totals)."""
        module, source, frames = call.module, call.source, call.frames
        kernel = self._pool_fold(call)
        if source is not None and source.role == "avgpool":
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
            "lif",
            call.lazy,
            steps=max(1, call.frames // samples),
            neurons=prod(call.in_shape),
        )

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
            raise UnsupportedModuleError(
                f"{call.name}: expected a [N, C, H, W] input, got per-frame {call.in_shape}"
            )
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


def _batches(
    inputs: torch.Tensor | Iterable[Any], batch_size: int | None
) -> Iterator[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        size = batch_size or inputs.shape[0]
        yield from inputs.split(size)
        return
    for item in inputs:
        yield item[0] if isinstance(item, tuple | list) else item


def count_model(
    model: nn.Module,
    inputs: torch.Tensor | Iterable[Any],
    *,
    batch_size: int | None = None,
    fold_pooling: bool = True,
    fold_batchnorm: bool = True,
    name: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> ModelCounts:
    """Count the operations of ``model`` on ``inputs``.

    Args:
        model: the model (left in the train/eval mode it had).
        inputs: a tensor ``[N, ...]`` (split into ``batch_size`` chunks) or an iterable of
            batches (tensors, or ``(images, labels, ...)`` tuples as a DataLoader yields).
        batch_size: chunk size when ``inputs`` is a tensor (default: all at once).
        fold_pooling: hardware view (``True``) or NeuroBench view (``False``).
        fold_batchnorm: count BatchNorm as folded (bias adds) or unfolded.
        name: name of the model in the result.
        device: move each batch to this device first (default: leave it where it is).
        progress: show a progress bar over the batches.
    """
    counter = OpCounter(model, fold_pooling=fold_pooling, fold_batchnorm=fold_batchnorm, name=name)
    batches: Iterable[torch.Tensor] = _batches(inputs, batch_size)
    if progress:
        total = None
        if isinstance(inputs, torch.Tensor):
            size = batch_size or inputs.shape[0]
            total = -(-inputs.shape[0] // size)
        batches = track(batches, f"counting {counter.name}", total=total)
    with counter:
        for batch in batches:
            counter.run(batch if device is None else batch.to(device))
    return counter.result()

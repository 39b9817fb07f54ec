"""Incremental construction of a NIR graph while walking a torch model.

The exporter walks the model's layers in execution order; each layer's mapping function
(:mod:`conversion.nir_mappings`) appends nodes through a :class:`GraphBuilder`, which
tracks the node that currently produces the signal (``tail``) and its batch-free shape.
The signal may also be a *sum* of several nodes (a residual add traced by
:mod:`conversion.fx_trace`): then ``tail`` is ``None``, ``joined`` lists the summed
nodes, and the next node added gets one edge from each (NIR sums all edges into a node).

A *pending scale* is a per-channel factor on the current signal that has not been
emitted as a node: a calibrated analog SE gate (:mod:`conversion.se_folding`). Linear,
channel-preserving layers (pooling, flatten) carry it along; the next convolution or
affine layer absorbs it into its input weights. Reaching a neuron or the graph output
with a pending scale is an error (the gate would be lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from conversion.nir_conventions import encode_metadata
from conversion.nir_graph import Shape, check_portable, output_shape, validate_graph
from neurall_neuro.errors import ConversionError

#: Forms of per-channel maps (the spiking SE broadcast, a BatchNorm2d without a preceding
#: convolution): a compact grouped ``Conv2d`` or an equivalent ``groups=1`` one with a
#: diagonal channel matrix. "dense" is the default: stock ``nir.read`` (nir 1.0.8) and the
#: snnTorch/Norse/sinabs importers reject grouped convolutions (see DESIGN.md).
SE_BROADCASTS = ("grouped", "dense")
DEFAULT_SE_BROADCAST = "dense"


@dataclass
class PendingScale:
    """A per-element factor (broadcastable to the current shape) owed to the next layer."""

    values: np.ndarray
    source: str


class GraphBuilder:
    """Collects nodes and edges; ``tail`` is the node producing the current signal."""

    def __init__(
        self,
        dt: float,
        se_gates: dict[str, np.ndarray] | None = None,
        se_broadcast: str = DEFAULT_SE_BROADCAST,
        leading_dims: int = 1,
    ):
        if se_broadcast not in SE_BROADCASTS:
            raise ConversionError(
                f"se_broadcast={se_broadcast!r} is invalid; valid options: {', '.join(SE_BROADCASTS)}"
            )
        if leading_dims not in (1, 2):
            raise ConversionError(
                f"leading_dims must be 1 ([B, ...]) or 2 ([T, B, ...]), got {leading_dims}"
            )
        self.dt = float(dt)
        #: How per-channel maps are written ("grouped" or "dense" Conv2d), see SE_BROADCASTS.
        self.se_broadcast = se_broadcast
        #: Non-feature dims in front of a torch tensor at the current module: 1 for a
        #: per-step model (``[B, ...]``), 2 for a sequence model (``[T, B, ...]``: Norse's
        #: non-Cell modules); torch dims minus this give the batch-free NIR dims.
        self.leading_dims = leading_dims
        #: Calibrated expected gate per analog SE block path (see conversion.se_folding).
        self.se_gates: dict[str, np.ndarray] = dict(se_gates or {})
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.tail: str | None = None
        #: The summed sources of the current signal when it is a sum (``tail`` is None then).
        self.joined: list[str] | None = None
        self.shape: Shape = ()
        self.pending: PendingScale | None = None
        #: Name of the node most recently added (BatchNorm folds into it if it is the tail).
        self.last_added: str | None = None

    def add(
        self,
        name: str,
        node: nir.NIRNode,
        inputs: list[str] | None = None,
        shape: Shape | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Add ``node`` fed by ``inputs`` (default: the current signal, i.e. the tail or
        every node of a sum); it becomes the new tail."""
        if name in self.nodes:
            raise ConversionError(f"duplicate NIR node name {name!r}")
        if inputs is not None:
            sources = list(inputs)
        elif self.joined:
            sources = list(self.joined)
        else:
            sources = [self.tail]
        if any(s is None for s in sources):
            raise ConversionError(f"node {name!r} has no input (the graph has no Input node yet)")
        if metadata:
            node.metadata = {**node.metadata, **metadata}
        self.nodes[name] = node
        self.edges.extend((src, name) for src in sources)  # type: ignore[misc]
        self.shape = output_shape(name, node, self.shape) if shape is None else tuple(shape)
        self.tail = name
        self.joined = None
        self.last_added = name
        return name

    def add_edge(self, source: str, target: str) -> None:
        """An extra edge between existing nodes (e.g. a recurrent connection back into a
        neuron; the runtime delivers an edge that closes a cycle one step later)."""
        for end in (source, target):
            if end not in self.nodes:
                raise ConversionError(f"edge ({source!r}, {target!r}): no node {end!r}")
        self.edges.append((source, target))

    def set_signal(self, sources: list[str], shape: Shape, fold_into_tail: bool = True) -> None:
        """Make the sum of ``sources`` (one or more node names) the current signal.

        ``fold_into_tail=False`` stops a following BatchNorm from folding into the tail
        node (needed when that node also feeds other consumers)."""
        if not sources:
            raise ConversionError("a signal needs at least one source node")
        missing = [s for s in sources if s not in self.nodes]
        if missing:
            raise ConversionError(f"unknown source node(s) {missing}")
        if len(sources) == 1:
            self.tail, self.joined = sources[0], None
        else:
            self.tail, self.joined = None, list(sources)
        self.shape = tuple(shape)
        self.last_added = self.tail if fold_into_tail else None

    def signal(self) -> list[str]:
        """The node names whose sum is the current signal."""
        if self.joined:
            return list(self.joined)
        if self.tail is None:
            raise ConversionError("the graph has no signal yet (no Input node)")
        return [self.tail]

    def materialize_sum(self, name: str, metadata: dict[str, Any] | None = None) -> None:
        """If the current signal is a sum of several nodes, add an explicit node for it
        (a ``Scale`` by 1, exact), for mappings that need one source node; else nothing."""
        if not self.joined:
            return
        node = nir.Scale(scale=np.ones(self.shape, dtype=np.float32))
        self.add(name, node, shape=self.shape, metadata={"role": "sum", **(metadata or {})})

    def add_input(self, name: str, shape: Shape, metadata: dict[str, Any] | None = None) -> str:
        node = nir.Input(input_type={"input": np.array(shape)}, metadata=dict(metadata or {}))
        self.nodes[name] = node
        self.tail, self.shape, self.last_added = name, tuple(shape), name
        self.joined = None
        return name

    def add_output(self, name: str) -> str:
        self.require_no_pending(f"the graph output {name!r}")
        node = nir.Output(output_type={"output": np.array(self.shape)})
        return self.add(name, node, shape=self.shape)

    def finish(self, metadata: dict[str, Any], output: str = "output") -> nir.NIRGraph:
        """Add the ``Output`` node fed by the tail and return the graph with ``metadata``
        (encoded by :func:`conversion.nir_conventions.encode_metadata`), checked by NIR's
        own type check, :func:`conversion.nir_graph.validate_graph` and
        :func:`conversion.nir_graph.check_portable`."""
        self.add_output(output)
        try:
            graph = nir.NIRGraph(
                nodes=self.nodes,
                edges=self.edges,
                metadata=encode_metadata(metadata),
                type_check=True,
            )
        except (ValueError, AssertionError) as exc:
            raise ConversionError(f"the exported graph fails NIR's own type check: {exc}") from exc
        validate_graph(graph)
        check_portable(graph)
        return graph

    # ---------------------------------------------------------------- pending scales

    def push_scale(self, values: np.ndarray, source: str) -> None:
        """Multiply the current signal by ``values`` (broadcastable to ``self.shape``)."""
        if self.pending is not None:
            values = self.pending.values * values
            source = f"{self.pending.source}+{source}"
        self.pending = PendingScale(np.asarray(values, dtype=np.float64), source)

    def require_no_pending(self, where: str) -> None:
        if self.pending is not None:
            raise ConversionError(
                f"the folded gate of {self.pending.source} reaches {where} before any "
                "convolution or affine layer could absorb it"
            )

    def take_input_scale(
        self, channels_axis_len: int, per_channel: bool
    ) -> tuple[np.ndarray, str] | None:
        """Remove the pending scale as a vector over the next layer's input features.

        ``per_channel``: the consumer is a convolution (scale must be constant over
        space, returns ``[C]``); otherwise an affine layer on a flat signal (``[N]``).
        """
        if self.pending is None:
            return None
        values = np.broadcast_to(self.pending.values, self.shape)
        if per_channel:
            flat = values.reshape(values.shape[0], -1)
            if not np.all(flat == flat[:, :1]):
                raise ConversionError(
                    f"the folded gate of {self.pending.source} varies over space; only "
                    "per-channel gates fold into a convolution"
                )
            vector = flat[:, 0]
        else:
            vector = values.reshape(-1)
        if vector.shape[0] != channels_axis_len:
            raise ConversionError(
                f"the folded gate of {self.pending.source} has {vector.shape[0]} entries but "
                f"the consuming layer has {channels_axis_len} inputs"
            )
        source = self.pending.source
        self.pending = None
        return vector, source


def structural_groups(weight: np.ndarray, groups: int) -> int:
    """The group count a convolution has *structurally*: for a ``groups=1`` weight
    ``[C_out, C_in, ...]`` whose non-zero entries all lie in the diagonal blocks of ``G``
    equal channel groups (e.g. the ``"dense"`` form of a per-channel map, see
    :data:`SE_BROADCASTS`), the largest such ``G``; otherwise ``groups`` itself.

    Exact fan-out counts (energy) use it, so that the dense and the grouped form of the
    same map count the same synapses: a zero weight off the diagonal blocks is no synapse.
    """
    weight = np.asarray(weight)
    if groups != 1 or weight.ndim < 2:
        return groups
    out_channels, in_channels = int(weight.shape[0]), int(weight.shape[1])
    connected = np.any(weight.reshape(out_channels, in_channels, -1) != 0, axis=-1)
    common = np.gcd(out_channels, in_channels)
    for candidate in range(common, 1, -1):
        if common % candidate:
            continue
        rows = np.arange(out_channels) // (out_channels // candidate)
        cols = np.arange(in_channels) // (in_channels // candidate)
        if not np.any(connected & (rows[:, None] != cols[None, :])):
            return candidate
    return 1

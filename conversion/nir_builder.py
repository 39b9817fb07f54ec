"""Incremental construction of a NIR graph while walking a torch model.

The exporter walks the model's layers in execution order; each layer's mapping function
(:mod:`conversion.nir_mappings`) appends nodes through a :class:`GraphBuilder`, which
tracks the node that currently produces the signal (``tail``) and its batch-free shape.

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

from conversion.nir_graph import Shape, output_shape
from neurall_neuro.errors import ConversionError

#: Forms of the spiking SE broadcast convolution (see conversion.nir_mappings.map_spiking_se).
SE_BROADCASTS = ("grouped", "dense")


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
        se_broadcast: str = "grouped",
    ):
        if se_broadcast not in SE_BROADCASTS:
            raise ConversionError(
                f"se_broadcast={se_broadcast!r} is invalid; valid options: {', '.join(SE_BROADCASTS)}"
            )
        self.dt = float(dt)
        #: How a spiking SE gate is broadcast over space ("grouped" or "dense" Conv2d).
        self.se_broadcast = se_broadcast
        #: Calibrated expected gate per analog SE block path (see conversion.se_folding).
        self.se_gates: dict[str, np.ndarray] = dict(se_gates or {})
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.tail: str | None = None
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
        """Add ``node`` fed by ``inputs`` (default: the tail); it becomes the new tail."""
        if name in self.nodes:
            raise ConversionError(f"duplicate NIR node name {name!r}")
        sources = [self.tail] if inputs is None else inputs
        if any(s is None for s in sources):
            raise ConversionError(f"node {name!r} has no input (the graph has no Input node yet)")
        if metadata:
            node.metadata = {**node.metadata, **metadata}
        self.nodes[name] = node
        self.edges.extend((src, name) for src in sources)  # type: ignore[misc]
        self.shape = output_shape(name, node, self.shape) if shape is None else tuple(shape)
        self.tail = name
        self.last_added = name
        return name

    def add_input(self, name: str, shape: Shape, metadata: dict[str, Any] | None = None) -> str:
        node = nir.Input(input_type={"input": np.array(shape)}, metadata=dict(metadata or {}))
        self.nodes[name] = node
        self.tail, self.shape, self.last_added = name, tuple(shape), name
        return name

    def add_output(self, name: str) -> str:
        self.require_no_pending(f"the graph output {name!r}")
        node = nir.Output(output_type={"output": np.array(self.shape)})
        return self.add(name, node, shape=self.shape)

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

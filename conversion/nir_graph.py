"""Structure of NIR graphs: inlining nested graphs, execution order, shapes, validation.

Used by the file reader/writer (:mod:`conversion.nir_io`), the runtime
(:mod:`conversion.nir_runtime`) and the exporter. Every structural problem raises one
:class:`~neurall_neuro.errors.GraphFileError` naming the node or edge at fault; an
unknown node type raises :class:`~neurall_neuro.errors.UnsupportedNodeError`.

Shapes exclude the batch (NIR convention). Edges carry no weights: all edges into a node
are summed, so every edge into a node must deliver the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from conversion import nir_types
from conversion.nir_nodes import BUILDERS, as_array, int_tuple, supported_node_types
from neurall_neuro.errors import GraphFileError, UnsupportedNodeError

Shape = tuple[int, ...]
Edge = tuple[str, str]


@dataclass
class FlatGraph:
    """A NIR graph with nested graphs inlined (inner nodes named ``outer.inner``).

    ``inputs``/``outputs`` are the top-level Input/Output nodes; the Input/Output nodes of
    inlined subgraphs stay in ``nodes`` as pass-through nodes.
    """

    nodes: dict[str, nir.NIRNode]
    edges: list[Edge]
    inputs: list[str]
    outputs: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    def predecessors(self, name: str) -> list[str]:
        return [src for src, dst in self.edges if dst == name]


def _single(graph: nir.NIRGraph, kind: type, prefix: str) -> str:
    names = [n for n, node in graph.nodes.items() if isinstance(node, kind)]
    if len(names) != 1:
        raise UnsupportedNodeError(
            f"nested graph {prefix!r} has {len(names)} {kind.__name__} nodes; an edge to or from "
            f"the subgraph as a whole needs exactly one (address inner nodes as "
            f"'{prefix}.<name>' instead)"
        )
    return f"{prefix}.{names[0]}"


def flatten_graph(graph: nir.NIRGraph) -> FlatGraph:
    """Inline nested ``NIRGraph`` nodes; check node types and that every edge names a node."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphFileError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[Edge] = []

    def inline(g: nir.NIRGraph, prefix: str) -> None:
        if not isinstance(g.nodes, dict) or not g.nodes:
            raise GraphFileError(f"graph {prefix or '<root>'!r} has no nodes")
        entry: dict[str, str] = {}
        exit_: dict[str, str] = {}
        for name, node in g.nodes.items():
            full = f"{prefix}{name}"
            if node is None:
                raise GraphFileError(f"node {full!r} is None (an exporter dropped a layer)")
            if isinstance(node, nir.NIRGraph):
                inline(node, full + ".")
                entry[name] = _single(node, nir.Input, full)
                exit_[name] = _single(node, nir.Output, full)
                continue
            if type(node) not in BUILDERS:
                raise UnsupportedNodeError(
                    f"node {full!r} has unsupported type {type(node).__name__}; "
                    f"supported node types: {', '.join(supported_node_types())}"
                )
            nodes[full] = node
            entry[name] = exit_[name] = full
        try:
            edge_list = [(str(a), str(b)) for a, b in g.edges]
        except (TypeError, ValueError) as exc:
            raise GraphFileError(
                f"graph {prefix or '<root>'!r}: malformed edge list: {exc}"
            ) from exc
        for src, dst in edge_list:
            edges.append((_resolve(src, exit_, prefix, nodes), _resolve(dst, entry, prefix, nodes)))

    def _resolve(name: str, table: dict[str, str], prefix: str, known: dict) -> str:
        if name in table:
            return table[name]
        if f"{prefix}{name}" in known:  # dotted reference into an inlined subgraph
            return f"{prefix}{name}"
        raise GraphFileError(
            f"edge endpoint {prefix + name!r} is not a node of the graph (dangling edge); "
            f"nodes: {', '.join(sorted(prefix + n for n in table))}"
        )

    inline(graph, "")
    seen: set[Edge] = set()
    for edge in edges:
        if edge in seen:
            raise GraphFileError(f"duplicate edge {edge[0]!r} -> {edge[1]!r}")
        seen.add(edge)
    top_inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    top_outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if not top_inputs:
        raise GraphFileError("graph has no Input node")
    if not top_outputs:
        raise GraphFileError("graph has no Output node")
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    return FlatGraph(nodes, edges, top_inputs, top_outputs, dict(metadata))


def execution_order(flat: FlatGraph) -> tuple[list[str], list[Edge]]:
    """Topological order of the nodes and the list of back edges (edges closing a cycle).

    Depth-first search from the Input nodes (in graph order); an edge to a node still on
    the search stack is a back edge. Removing the back edges leaves a DAG whose reverse
    post-order is returned. Raises GraphFileError for nodes unreachable from any input.
    """
    successors: dict[str, list[str]] = {name: [] for name in flat.nodes}
    for src, dst in flat.edges:
        successors[src].append(dst)
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    postorder: list[str] = []
    back: list[Edge] = []
    for root in flat.inputs:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, index = stack[-1]
            if index < len(successors[node]):
                stack[-1] = (node, index + 1)
                nxt = successors[node][index]
                if state.get(nxt) == 1:
                    back.append((node, nxt))
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                postorder.append(node)
                stack.pop()
    unreachable = [n for n in flat.nodes if n not in state]
    if unreachable:
        raise GraphFileError(
            f"node(s) {', '.join(map(repr, unreachable))} cannot be reached from any Input node "
            "(missing edge?)"
        )
    return postorder[::-1], back


def _param_shape(name: str, node: nir.NIRNode) -> Shape:
    for key in ("tau", "tau_mem", "r", "threshold", "delay", "v_threshold", "scale"):
        if hasattr(node, key) and getattr(node, key) is not None:
            return tuple(as_array(name, key, getattr(node, key)).shape)
    return ()


def _declared(types: Any) -> Shape | None:
    if not isinstance(types, dict) or len(types) != 1:
        return None
    value = next(iter(types.values()))
    if value is None:
        return None
    try:
        return tuple(int(v) for v in np.asarray(value).reshape(-1))
    except (TypeError, ValueError):
        return None


def _window_out(
    name: str, size: Shape, kernel: Shape, stride: Shape, padding: Any, dilation: Shape
) -> Shape:
    if padding == "same":
        return size
    pad = (0,) * len(size) if padding == "valid" else padding
    out = tuple(
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, k, st, p, d in zip(size, kernel, stride, pad, dilation, strict=True)
    )
    if min(out) < 1:
        raise GraphFileError(f"node {name!r}: input {size} is too small for kernel {kernel}")
    return out


def _mismatch(name: str, what: str, got: Shape, want: Shape) -> GraphFileError:
    return GraphFileError(f"shape mismatch at node {name!r}: {what} {want}, but it receives {got}")


def output_shape(name: str, node: nir.NIRNode, shape: Shape) -> Shape:
    """Output shape of ``node`` for an input of batch-free ``shape``."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = as_array(name, "weight", node.weight)
        if weight.ndim != 2:
            raise UnsupportedNodeError(f"node {name!r}: only 2-D weights are supported")
        if shape != (weight.shape[1],):
            raise _mismatch(
                name, f"its weight {weight.shape} expects input", shape, (weight.shape[1],)
            )
        return (weight.shape[0],)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        dims = 1 if isinstance(node, nir.Conv1d) else 2
        weight = as_array(name, "weight", node.weight)
        groups = int(as_array(name, "groups", node.groups))
        if len(shape) != dims + 1 or shape[0] != weight.shape[1] * groups:
            want = (weight.shape[1] * groups,) + ("*",) * dims  # type: ignore[operator]
            raise _mismatch(name, f"Conv{dims}d expects input (channels, ...) =", shape, want)
        padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
        if not isinstance(padding, str):
            padding = int_tuple(name, "padding", padding, dims)
        spatial = _window_out(
            name,
            shape[1:],
            tuple(weight.shape[2:]),
            int_tuple(name, "stride", node.stride, dims),
            padding,
            int_tuple(name, "dilation", node.dilation, dims),
        )
        return (weight.shape[0], *spatial)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        if len(shape) != 3:
            raise _mismatch(name, "2-D pooling expects (C, H, W), e.g.", shape, (1, 1, 1))
        spatial = _window_out(
            name,
            shape[1:],
            int_tuple(name, "kernel_size", node.kernel_size, 2),
            int_tuple(name, "stride", node.stride, 2),
            int_tuple(name, "padding", node.padding, 2),
            (1, 1),
        )
        return (shape[0], *spatial)
    if isinstance(node, nir.Flatten):
        ndim = len(shape)
        start = int(as_array(name, "start_dim", node.start_dim))
        end = int(as_array(name, "end_dim", node.end_dim))
        valid = -ndim <= start < ndim and -ndim <= end < ndim
        start, end = start % max(ndim, 1), end % max(ndim, 1)
        if not valid or start > end:
            raise GraphFileError(
                f"node {name!r}: Flatten dims start_dim={node.start_dim}, end_dim={node.end_dim} "
                f"are invalid for a batch-free input of shape {shape}"
            )
        return (*shape[:start], int(np.prod(shape[start : end + 1])), *shape[end + 1 :])
    if isinstance(node, (nir.Input,)):
        declared = _declared(node.input_type)
        if declared is None:
            raise GraphFileError(f"Input node {name!r} declares no shape")
        return declared
    param = _param_shape(name, node)
    if param == shape or int(np.prod(param)) == 1 or not param:
        return shape
    raise _mismatch(name, f"its parameters ({type(node).__name__}) have shape", shape, param)


def _accepts(name: str, node: nir.NIRNode, shape: Shape) -> bool:
    if isinstance(node, (nir.Output, nir.Input)):
        return True
    declared = None if isinstance(node, (nir.Conv1d, nir.Conv2d)) else _declared(node.input_type)
    if (
        declared is not None
        and isinstance(node, nir_types.ELEMENTWISE)
        and int(np.prod(declared)) == 1
    ):
        declared = None
    if declared is not None and declared != shape:
        return False
    try:
        output_shape(name, node, shape)
    except (GraphFileError, UnsupportedNodeError):
        return False
    return True


def _input_shape(flat: FlatGraph, name: str, node: nir.Input) -> Shape:
    """The Input's declared shape; a leading batch dimension of 1 (written by nirtorch-based
    exporters such as Norse's ``to_nir``) is dropped when the consumers expect the rest."""
    shape = output_shape(name, node, ())
    if len(shape) < 2 or shape[0] != 1:
        return shape
    consumers = [(dst, flat.nodes[dst]) for src, dst in flat.edges if src == name]
    fits = consumers and all(_accepts(d, n, shape) for d, n in consumers)
    if consumers and not fits and all(_accepts(d, n, shape[1:]) for d, n in consumers):
        return shape[1:]
    return shape


def infer_shapes(
    flat: FlatGraph, order: list[str], back: list[Edge]
) -> dict[str, tuple[Shape, Shape]]:
    """``{node: (input_shape, output_shape)}`` propagated from the Input nodes along
    ``order`` (see :func:`execution_order`); raises GraphFileError on any mismatch,
    including a declared ``input_type`` that disagrees with the propagated shape.
    """
    back_set = set(back)
    shapes: dict[str, tuple[Shape, Shape]] = {}
    for name in order:
        node = flat.nodes[name]
        if isinstance(node, nir.Input) and name in flat.inputs:
            shape = _input_shape(flat, name, node)
            shapes[name] = (shape, shape)
            continue
        incoming = [
            (src, shapes[src][1]) for src in flat.predecessors(name) if (src, name) not in back_set
        ]
        if not incoming:
            raise GraphFileError(
                f"node {name!r} ({type(node).__name__}) receives no input (missing edge?)"
            )
        shape = incoming[0][1]
        for src, other in incoming[1:]:
            if other != shape:
                raise GraphFileError(
                    f"shape mismatch at node {name!r}: edges deliver {shape} from "
                    f"{incoming[0][0]!r} and {other} from {src!r} (edges into a node are summed)"
                )
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            # nir 1.0.8 derives a convolution's input_type from weight.shape[1], ignoring
            # groups; check the spatial input_shape instead (channels: in output_shape).
            declared_in = None
            spatial = getattr(node, "input_shape", None)
            if spatial is not None:
                spatial_shape = tuple(int(v) for v in np.asarray(spatial).reshape(-1))
                if spatial_shape != tuple(shape[1:]):
                    declared_in = (shape[0], *spatial_shape)
        else:
            declared_in = _declared(getattr(node, "input_type", None))
        if (
            declared_in is not None
            and isinstance(node, nir_types.ELEMENTWISE)
            and int(np.prod(declared_in)) == 1
        ):
            declared_in = shape  # scalar parameters broadcast over the input
        if isinstance(node, nir.Output) and declared_in == (1, *shape):
            declared_in = shape  # a batch dimension of 1 written by nirtorch-based exporters
        if declared_in is not None and declared_in != shape and not isinstance(node, nir.Input):
            raise GraphFileError(
                f"shape mismatch on edge {incoming[0][0]!r} -> {name!r}: {incoming[0][0]!r} "
                f"produces {shape}, {name!r} declares input {declared_in}"
            )
        out = (
            shape if isinstance(node, (nir.Input, nir.Output)) else output_shape(name, node, shape)
        )
        shapes[name] = (shape, out)
    for src, dst in back:
        if shapes[src][1] != shapes[dst][0]:
            raise GraphFileError(
                f"shape mismatch on recurrent edge {src!r} -> {dst!r}: "
                f"{shapes[src][1]} vs {shapes[dst][0]}"
            )
    return shapes


def check_leaves(flat: FlatGraph) -> None:
    """Every node except Output nodes must feed at least one edge."""
    sources = {src for src, _ in flat.edges}
    for name, node in flat.nodes.items():
        if name not in sources and not (isinstance(node, nir.Output) and name in flat.outputs):
            raise GraphFileError(
                f"node {name!r} ({type(node).__name__}) has no outgoing edge: its output goes "
                "nowhere (missing edge to an Output node?)"
            )


def check_portable(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Raise GraphFileError if a node holds torch tensors or other non-HDF5 values."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_portable(node, f"{prefix}{name}.")
            continue
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                raise GraphFileError(
                    f"node {prefix}{name!r}: field {key!r} is a torch tensor; NIR nodes must "
                    "hold numpy arrays"
                )


@dataclass
class GraphInfo:
    """Result of :func:`validate_graph`."""

    flat: FlatGraph
    order: list[str]
    back_edges: list[Edge]
    shapes: dict[str, tuple[Shape, Shape]]

    @property
    def recurrent(self) -> bool:
        return bool(self.back_edges)


def validate_graph(graph: nir.NIRGraph) -> GraphInfo:
    """Check structure (node types, edges, reachability, leaves) and shapes of ``graph``."""
    flat = flatten_graph(graph)
    order, back = execution_order(flat)
    check_leaves(flat)
    shapes = infer_shapes(flat, order, back)
    return GraphInfo(flat, order, back, shapes)

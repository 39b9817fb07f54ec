"""Reading and writing NIR files (HDF5) with validation and clear errors.

``nir.read`` turns a bad file into whatever h5py, an ``assert`` or a ``KeyError`` happens
to raise. :func:`read_nir` instead gives one typed error per problem:

* not a file / not HDF5 / truncated or corrupt HDF5 -> :class:`GraphFileError`;
* a node of a type nir 1.0.8 does not define -> :class:`UnsupportedNodeError` naming the
  node and the supported types;
* a node with missing or malformed fields, missing or dangling edges, unreachable nodes,
  shape mismatches -> :class:`GraphFileError` naming the node or edge.

:func:`write_nir` validates the graph, then writes atomically (temporary file in the
target folder, then ``os.replace``) so an interrupted export never leaves a half-written
file under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
from nir.serialization import hdf2dict

from conversion.nir_conventions import decode_metadata
from conversion.nir_graph import GraphInfo, check_portable, validate_graph
from conversion.nir_nodes import supported_node_types
from neurall_neuro.atomic import atomic_path
from neurall_neuro.errors import GraphFileError, UnsupportedNodeError

#: Node type names that nir 1.0.8 can deserialise.
NIR_TYPES = frozenset(nir.ir.__all_ir) if hasattr(nir.ir, "__all_ir") else frozenset(nir.ir.__all__)


def _type_name(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf8", "replace")
    return str(raw)


def _check_raw_node(raw: Any, path: str) -> None:
    """Check node types recursively (before nir constructs anything) and disable nir's
    own type check on nested graphs (we validate shapes ourselves, with better messages)."""
    if not isinstance(raw, dict) or "type" not in raw:
        raise GraphFileError(f"node {path or '<root>'!r} has no 'type' field (corrupt file?)")
    kind = _type_name(raw["type"])
    raw["type"] = kind
    if kind not in NIR_TYPES or kind == "NIRNode":
        raise UnsupportedNodeError(
            f"node {path or '<root>'!r} has unknown type {kind!r}; supported node types: "
            f"{', '.join(supported_node_types())}"
        )
    if kind == "NIRGraph":
        if "nodes" not in raw or not isinstance(raw["nodes"], dict):
            raise GraphFileError(f"graph {path or '<root>'!r} has no 'nodes' group")
        if "edges" not in raw:
            raise GraphFileError(f"graph {path or '<root>'!r} has no 'edges' (missing edge list)")
        edges = np.asarray(raw["edges"])
        if edges.size and (edges.ndim != 2 or edges.shape[1] != 2):
            raise GraphFileError(
                f"graph {path or '<root>'!r}: edges must be (source, target) pairs, "
                f"got an array of shape {edges.shape}"
            )
        if not edges.size:
            raw["edges"] = []
        raw["type_check"] = False
        for name, child in raw["nodes"].items():
            _check_raw_node(child, f"{path}.{name}" if path else name)


def _build(raw: dict[str, Any], path: str) -> nir.NIRNode:
    """``nir.dict2NIRNode`` node by node, so a failure names the node at fault."""
    if raw["type"] == "NIRGraph":
        nodes = {
            name: _build(child, f"{path}.{name}" if path else name)
            for name, child in raw["nodes"].items()
        }
        edges = [(_type_name(a), _type_name(b)) for a, b in raw["edges"]]
        metadata = raw.get("metadata", {})
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(metadata), type_check=False)
    try:
        return nir.dict2NIRNode(dict(raw))
    except Exception as exc:  # noqa: BLE001 - nir raises assert/Key/Type/ValueError
        raise GraphFileError(
            f"node {path!r} ({raw['type']}) is malformed: {type(exc).__name__}: {exc}"
        ) from exc


def read_nir(path: str | os.PathLike[str], validate: bool = True) -> nir.NIRGraph:
    """Read a NIR file; with ``validate`` also check edges and shapes (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise GraphFileError(f"NIR file not found: {path}")
    if not h5py.is_hdf5(path):
        raise GraphFileError(f"{path} is not an HDF5 file (NIR graphs are stored as HDF5)")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise GraphFileError(f"{path} is HDF5 but holds no NIR graph (no 'node' group)")
            raw = hdf2dict(f["node"])
    except GraphFileError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise GraphFileError(
            f"cannot read {path}: {type(exc).__name__}: {exc} (truncated or corrupt file?)"
        ) from exc
    _check_raw_node(raw, "")
    if raw["type"] != "NIRGraph":
        raise GraphFileError(f"{path} holds a single {raw['type']} node, not a NIRGraph")
    graph = _build(raw, "")
    if validate:
        try:
            validate_graph(graph)
        except (GraphFileError, UnsupportedNodeError) as exc:
            raise type(exc)(f"{path}: {exc}") from exc
    return graph


def _check_metadata(metadata: Any, where: str) -> None:
    if not isinstance(metadata, dict):
        raise GraphFileError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if "/" in str(key):
            raise GraphFileError(f"{where}: metadata key {key!r} contains '/'")
        if isinstance(value, dict):
            _check_metadata(value, f"{where}.{key}")
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufS":
                raise GraphFileError(
                    f"{where}: metadata {key!r} has unstorable dtype {value.dtype}"
                )
        elif not isinstance(value, (str, bytes, bool, int, float, np.generic)):
            raise GraphFileError(
                f"{where}: metadata {key!r} is a {type(value).__name__}, which HDF5 cannot store; "
                "use conversion.nir_conventions.encode_metadata"
            )


def check_writable(graph: nir.NIRGraph) -> GraphInfo:
    """Validate ``graph`` and check that every node and metadata value is storable."""
    info = validate_graph(graph)
    check_portable(graph)
    _check_metadata(graph.metadata, "graph")
    for name, node in info.flat.nodes.items():
        _check_metadata(node.metadata, f"node {name!r}")
    return info


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike[str]) -> Path:
    """Validate and write ``graph`` to ``path`` atomically; returns the path."""
    check_writable(graph)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:  # mode 0o666 & ~umask, like any file the user writes
            nir.write(tmp, graph)
    except (OSError, TypeError, ValueError) as exc:
        raise GraphFileError(f"cannot write {path}: {type(exc).__name__}: {exc}") from exc
    return path


def graph_metadata(graph: nir.NIRGraph) -> dict[str, Any]:
    """The graph's metadata with JSON fields decoded and HDF5 scalars as Python values."""
    return decode_metadata(graph.metadata if isinstance(graph.metadata, dict) else {})

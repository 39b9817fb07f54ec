"""What the Loihi targets accept as a graph, and how it becomes a :class:`LoihiNetwork`.

A graph argument is a :class:`~hw_targets.loihi.network.LoihiNetwork`, a
``nir.NIRGraph``, or the path of a NIR or a lava-dl netx HDF5 file.

* :func:`check_graph_argument` validates one without quantising: the node types and
  the structure of a NIR graph (:func:`hw_targets.loihi.mapping.check_graph`), the
  layers of a netx file (read as Lava reads it), the type of anything else. This is
  what ``Target.check`` runs.
* :func:`lower_to_network` quantises NIR inputs (:func:`~hw_targets.loihi.quantize.
  quantize_graph`) and returns every other input unchanged (a netx path stays a path,
  so ``lava-sim`` can still load it with lava-dl's own loader).
* :func:`resolve_graph` turns any of them into a network (netx files are read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hw_targets.loihi.network import LoihiNetwork
from neurall_neuro.errors import ConfigError, GraphFileError, NeurallError

GraphSource = Literal["network", "nir", "netx"]


@dataclass
class ResolvedGraph:
    """A graph argument turned into a LoihiNetwork (``netx_path`` set for netx files)."""

    network: LoihiNetwork
    source: GraphSource
    netx_path: Path | None = None


@dataclass
class GraphCheck:
    """What :func:`check_graph_argument` found: ``problems`` (one message each; empty if
    none), the ``network`` when the argument already is one or a netx file (None for NIR
    graphs, which are not quantised by a check) and the netx file's path, if any."""

    problems: list[str] = field(default_factory=list)
    network: LoihiNetwork | None = None
    netx_path: Path | None = None


def file_kind(path: str | os.PathLike[str]) -> Literal["netx", "nir"]:
    """``"netx"`` for an HDF5 file with a ``layer`` group, ``"nir"`` for one with ``node``."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise GraphFileError(f"graph file not found: {p}")
    if not h5py.is_hdf5(p):
        raise GraphFileError(f"{p} is not an HDF5 file (NIR graphs and netx networks are HDF5)")
    try:
        with h5py.File(p, "r") as f:
            keys = set(f.keys())
    except OSError as exc:
        raise GraphFileError(f"cannot open {p}: {exc} (truncated or corrupt file?)") from exc
    if "layer" in keys:
        return "netx"
    if "node" in keys:
        return "nir"
    raise GraphFileError(
        f"{p} is HDF5 but neither a netx network (no 'layer' group) nor a NIR graph (no 'node' group)"
    )


def _wrong_type(graph: Any) -> ConfigError:
    return ConfigError(
        "graph must be a nir.NIRGraph, a LoihiNetwork, or a path to a NIR or netx file; "
        f"got {type(graph).__name__}"
    )


def _nir_graph(graph: Any) -> Any | None:
    """``graph`` as a ``nir.NIRGraph`` if it is one or a NIR file's path, else None."""
    import nir

    if isinstance(graph, nir.NIRGraph):
        return graph
    if isinstance(graph, (str, os.PathLike)) and file_kind(graph) == "nir":
        from conversion.nir_io import read_nir

        return read_nir(graph)
    return None


#: The input encoding a target's ``input_mode`` implies for a NIR graph (others: the
#: quantiser's ``"auto"``).
_ENCODING_OF_MODE = {"events": "events", "image": "direct"}


def _quantize(
    nir_graph: Any,
    timesteps: int | None,
    quantization: Mapping[str, Any] | None,
    input_mode: str | None = None,
) -> Any:
    from hw_targets.loihi.quantize import quantize_graph

    options = dict(quantization or {})
    if timesteps is not None:
        options.setdefault("timesteps", timesteps)
    if input_mode in _ENCODING_OF_MODE:
        options.setdefault("input_encoding", _ENCODING_OF_MODE[input_mode])
    return quantize_graph(nir_graph, **options)


def lower_to_network(
    graph: Any,
    timesteps: int | None = None,
    quantization: Mapping[str, Any] | None = None,
    input_mode: str | None = None,
) -> Any:
    """A NIR graph (or NIR file) quantised to a LoihiNetwork; a LoihiNetwork or a netx
    file's path unchanged. ``quantization``: options of ``quantize_graph`` (its
    ``timesteps`` defaults to ``timesteps``; its ``input_encoding`` to ``"events"`` for
    ``input_mode="events"`` and ``"direct"`` for ``"image"``)."""
    if isinstance(graph, LoihiNetwork):
        return graph
    nir_graph = _nir_graph(graph)
    if nir_graph is not None:
        return _quantize(nir_graph, timesteps, quantization, input_mode)
    if isinstance(graph, (str, os.PathLike)):
        return graph  # a netx file (file_kind checked it)
    raise _wrong_type(graph)


def resolve_graph(
    graph: Any,
    timesteps: int | None = None,
    quantization: Mapping[str, Any] | None = None,
    input_mode: str | None = None,
) -> ResolvedGraph:
    """LoihiNetwork for ``graph`` (LoihiNetwork, nir.NIRGraph, or a NIR / netx file path);
    ``input_mode`` as in :func:`lower_to_network`."""
    if isinstance(graph, LoihiNetwork):
        return ResolvedGraph(graph, "network")
    nir_graph = _nir_graph(graph)
    if nir_graph is not None:
        return ResolvedGraph(_quantize(nir_graph, timesteps, quantization, input_mode), "nir")
    if isinstance(graph, (str, os.PathLike)):
        from hw_targets.loihi.netx import read_netx

        return ResolvedGraph(read_netx(graph), "netx", Path(graph))
    raise _wrong_type(graph)


def check_graph_argument(graph: Any) -> GraphCheck:
    """Structural problems that stop any Loihi target, without quantising anything.

    NIR graphs (and files): unsupported node types and structures
    (:func:`hw_targets.loihi.mapping.check_graph`); netx files: read and validated;
    LoihiNetworks are valid by construction. Errors come back as messages.
    """
    from hw_targets.loihi.mapping import check_graph

    try:
        if isinstance(graph, LoihiNetwork):
            return GraphCheck(network=graph)
        nir_graph = _nir_graph(graph)
        if nir_graph is not None:
            return GraphCheck(problems=check_graph(nir_graph))
        resolved = resolve_graph(graph)
        return GraphCheck(network=resolved.network, netx_path=resolved.netx_path)
    except NeurallError as exc:
        return GraphCheck(problems=[str(exc)])

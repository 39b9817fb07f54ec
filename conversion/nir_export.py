"""Export of torch / Norse models to NIR graphs (our own mapping; Norse's ``to_nir`` is
broken for these models, see DESIGN.md).

:func:`to_nir` knows no model. It first looks up a whole-model exporter registered for the
model's class (:mod:`conversion.model_exporters`; the SE-SNN's, with its static input,
readout convention and SE folding, is :mod:`conversion.mappings.neurallnet`). Any other
model is exported module by module (:mod:`conversion.nir_mappings`): a single mapped module
or a tree of ``nn.Sequential`` and mapped modules is walked as a chain; anything else
(Norse's ``SequentialState``, a ``forward`` with residual adds, branches, concatenation)
is traced with torch.fx (:mod:`conversion.fx_trace`). Norse 1.1.0's neuron modules are
mapped by :mod:`conversion.mappings.norse`. ``example_input`` gives the input shape
(``[B, ...]`` per step, ``[T, B, ...]`` for Norse's sequence modules). A module or
operation without a NIR form, e.g. the Residual SE-CNN's ReLU and max pooling, raises
:class:`~neurall_neuro.errors.UnsupportedModuleError` naming it; nothing is dropped.

Node names are the module paths; every node's ``metadata["module"]`` names the module it
comes from. The graph metadata records the conventions of :mod:`conversion.nir_conventions`
(dt, convention string, input encoding, and what the model's exporter adds: ``T``, the
readout, the model name and config, class names when known, the SE folding details).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from conversion import nir_types
from conversion.fx_trace import TracedModel, leading_dims, model_dt, returns_state
from conversion.model_exporters import ExportRequest, find_model_exporter
from conversion.nir_builder import DEFAULT_SE_BROADCAST, GraphBuilder, structural_groups
from conversion.nir_conventions import (
    CONVENTION,
    INPUT_PER_STEP,
    METADATA_FORMAT,
    METADATA_FORMAT_VERSION,
)
from conversion.nir_graph import validate_graph
from conversion.nir_io import graph_metadata, write_nir
from conversion.nir_mappings import find_mapping, mapping_traits, walk
from conversion.se_folding import FoldingReport, ImageSource, folding_report
from neurall_neuro.errors import ConversionError
from neurall_neuro.models.neurons import DEFAULT_DT

__all__ = [
    "FoldingReport",
    "export_nir",
    "folding_report",
    "graph_summary",
    "to_nir",
]

_WEIGHT_FIELDS = ("weight", "bias", "scale")


def _unwrap(model: nn.Module) -> nn.Module:
    return (
        model.module
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
        else model
    )


def to_nir(
    model: nn.Module,
    example_input: torch.Tensor | None = None,
    calibration: ImageSource | None = None,
    class_names: Sequence[str] | None = None,
    calibration_batch_size: int = 32,
    se_broadcast: str = DEFAULT_SE_BROADCAST,
) -> nir.NIRGraph:
    """Export ``model`` to a NIR graph (see the module docstring).

    ``example_input``: a batch ``[B, ...]`` of inputs fixing the input shape (for the SE-SNN
    also one image ``[C, H, W]``; default there: ``(in_channels, input_size, input_size)``).
    ``calibration``: images (tensor ``[N, C, H, W]`` or iterable of batches) required
    for SE blocks in ``analog`` mode, whose gates are replaced by their expectation over
    these images and timesteps and folded into the next layer (:mod:`conversion.se_folding`).
    ``class_names`` are stored in the metadata. ``se_broadcast``: how per-channel maps (the
    spiking SE gate's broadcast, a BatchNorm2d without a preceding convolution) are
    written: ``"dense"`` (default, portable: an equivalent ``groups=1`` convolution with a
    diagonal channel matrix, read by stock ``nir.read`` and snnTorch) or ``"grouped"``
    (compact: one ``Conv2d`` group per channel, which nir 1.0.8's ``nir.read`` and the
    snnTorch/Norse/sinabs importers reject; read it with
    :func:`conversion.nir_io.read_nir`). See :func:`conversion.nir_mappings.map_spiking_se`.

    A model of Norse modules (``SequentialState``, ``nn.Sequential``, any ``forward`` with
    residual adds or branches) exports through :mod:`conversion.fx_trace` and the Norse
    mappings of :mod:`conversion.mappings.norse`; ``example_input`` is then ``[B, ...]``
    for a model of Cells (one step per call) or ``[T, B, ...]`` for one of Norse's
    sequence modules (``LIF``, ``LI``, ``Lift``, ...); the graph's ``dt`` is the modules'
    ``dt`` (Norse's default 1e-3 s).
    """
    model = _unwrap(model)
    request = ExportRequest(
        example_input=example_input,
        calibration=calibration,
        class_names=class_names,
        calibration_batch_size=calibration_batch_size,
        se_broadcast=se_broadcast,
    )
    exporter = find_model_exporter(model)
    if exporter is not None:
        return exporter(model, request)
    return _export_generic(model, request)


def _walkable(module: nn.Module, root: bool = True) -> bool:
    """A single mapped module, or a tree of plain ``nn.Sequential`` containers and mapped
    modules that return a tensor: the module walker maps it as a chain. (A Norse Cell
    inside an ``nn.Sequential`` cannot get its state back; the trace refuses it.)"""
    if find_mapping(module) is not None:
        return root or mapping_traits(module).sequence or not returns_state(module)
    return type(module) is nn.Sequential and all(_walkable(c, False) for c in module.children())


def _input_shape(request: ExportRequest, leading: int) -> tuple[int, ...]:
    """Batch-free input shape: ``example_input`` is ``[B, ...]`` (per-step model) or
    ``[T, B, ...]`` (a model of Norse's sequence modules)."""
    if leading == 1:
        return request.input_shape()
    if request.example_input is None or request.example_input.dim() <= leading:
        got = None if request.example_input is None else tuple(request.example_input.shape)
        raise ConversionError(
            "this model contains modules that take whole [T, B, ...] sequences (Norse's "
            f"non-Cell modules or Lift): to_nir needs example_input [T, B, ...], got {got}"
        )
    return tuple(int(s) for s in request.example_input.shape[leading:])


def _export_generic(model: nn.Module, request: ExportRequest) -> nir.NIRGraph:
    """Any other model, driven per step (see the module docstring).

    A single mapped module or a tree of ``nn.Sequential`` and mapped modules is walked as a
    chain; anything else (``SequentialState``, a module with its own ``forward``: residual
    adds, branches, concatenation) is traced with torch.fx (:mod:`conversion.fx_trace`).
    """
    leading = leading_dims(model)
    dt = model_dt(model, DEFAULT_DT)
    builder = GraphBuilder(dt, se_broadcast=request.se_broadcast, leading_dims=leading)
    # A container's children are named by their paths; a single mapped module by its class.
    single = find_mapping(model) is not None
    traced = None if _walkable(model) else TracedModel(model)  # fails before asking for a shape
    shape = _input_shape(request, leading)
    builder.add_input("input", shape, metadata={"encoding": INPUT_PER_STEP})
    if traced is not None:
        traced.replay(builder)
    else:
        walk(model, type(model).__name__.lower() if single else "", builder)
    metadata: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "dt": float(dt),
        "convention": CONVENTION,
        "input_encoding": INPUT_PER_STEP,
        "model": type(model).__name__,
        "model_input": "[T, B, ...] sequence" if leading == 2 else "[B, ...] per step",
    }
    if request.class_names is not None:
        metadata["class_names"] = list(request.class_names)
    return builder.finish(metadata)


def export_nir(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: torch.Tensor | None = None,
    calibration: ImageSource | None = None,
    class_names: Sequence[str] | None = None,
    se_broadcast: str = DEFAULT_SE_BROADCAST,
) -> nir.NIRGraph:
    """:func:`to_nir`, then write the graph to ``path`` atomically; returns the graph."""
    graph = to_nir(
        model,
        example_input=example_input,
        calibration=calibration,
        class_names=class_names,
        se_broadcast=se_broadcast,
    )
    write_nir(graph, Path(path))
    return graph


def graph_summary(graph: nir.NIRGraph) -> dict[str, Any]:
    """Nodes by type, edges, parameter and neuron counts, dt, T and I/O shapes of ``graph``.

    ``parameters`` counts synaptic values (weights, biases, scales; a ``groups=1``
    convolution whose non-zero weights form diagonal channel blocks, e.g. the dense SE
    broadcast, counts the weights of its grouped form); ``neurons`` the state-holding
    units (LIF, IF, LI, I, Cuba*) per sample.
    """
    info = validate_graph(graph)
    nodes = info.flat.nodes
    meta = graph_metadata(graph)
    parameters = 0
    for node in nodes.values():
        for key in _WEIGHT_FIELDS:
            value = getattr(node, key, None)
            if value is not None:
                size = int(np.asarray(value).size)
                if key == "weight" and isinstance(node, nir.Conv2d):
                    # a dense per-channel map holds the synapses of its grouped form
                    groups = int(np.asarray(node.groups))
                    size = size * groups // structural_groups(np.asarray(value), groups)
                parameters += size
    neurons = sum(
        int(np.prod(info.shapes[name][1]))
        for name, node in nodes.items()
        if isinstance(node, nir_types.NEURONS)
    )
    return {
        "nodes_by_type": dict(sorted(Counter(type(n).__name__ for n in nodes.values()).items())),
        "nodes": len(nodes),
        "edges": len(info.flat.edges),
        "parameters": parameters,
        "neurons": neurons,
        "dt": meta.get("dt"),
        "timesteps": meta.get("timesteps"),
        "readout": meta.get("readout"),
        "inputs": {name: list(info.shapes[name][1]) for name in info.flat.inputs},
        "outputs": {name: list(info.shapes[name][0]) for name in info.flat.outputs},
        "recurrent": info.recurrent,
    }

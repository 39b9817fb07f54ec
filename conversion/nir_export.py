"""Export of neurall-neuro models to NIR graphs (our own mapping; Norse's ``to_nir`` is
broken for these models, see DESIGN.md).

The SE-SNN (``neurallnet``) becomes::

    Input (C, H, W), static  ->  stem.conv (Conv2d, BatchNorm folded)  ->  body.lif1 (LIF)
    -> body.pool2 (AvgPool2d 2x2) -> body.conv2 (+bn2 folded) -> body.lif2 -> ...
    [-> body.seK.* spiking SE subgraph, or nothing for folded analog / no SE]
    -> body.head_pool (AvgPool2d over the whole map) -> body.head_flatten (Flatten)
    -> body.head_fc (Affine) -> output

Node names are the module paths; every node's ``metadata["module"]`` names the module it
comes from. The graph metadata records the conventions of :mod:`conversion.nir_conventions`
(dt, convention string, ``T``, static input, ``readout = "mean_over_time"``), the model
name and config, class names when known, and the SE folding details.

Other models are walked module by module (:mod:`conversion.nir_mappings`): plain
``nn.Sequential`` stacks of mapped modules export (per-step input, ``example_input``
gives the shape); anything else, e.g. the Residual SE-CNN (ReLU, max pooling, residual
adds), raises :class:`~neurall_neuro.errors.UnsupportedModuleError`.
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

from conversion.nir_builder import GraphBuilder
from conversion.nir_conventions import (
    CONVENTION,
    INPUT_PER_STEP,
    INPUT_STATIC,
    METADATA_FORMAT,
    METADATA_FORMAT_VERSION,
    READOUT_MEAN_OVER_TIME,
    encode_metadata,
)
from conversion.nir_graph import check_portable, validate_graph
from conversion.nir_io import graph_metadata, write_nir
from conversion.nir_mappings import find_mapping, unsupported_module_error, walk
from conversion.se_folding import (
    FoldingReport,
    ImageSource,
    analog_se_blocks,
    calibrate_se_gates,
    folding_report,
)
from neurall_neuro.errors import ConversionError
from neurall_neuro.models.neurallnet import DEFAULT_DT, NeurAllNet
from neurall_neuro.models.neurons import LIFLayer

__all__ = [
    "FoldingReport",
    "export_nir",
    "folding_report",
    "graph_summary",
    "to_nir",
]

_NEURON_TYPES = (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI)
_WEIGHT_FIELDS = ("weight", "bias", "scale")


def _unwrap(model: nn.Module) -> nn.Module:
    return (
        model.module
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
        else model
    )


def _input_shape(
    example_input: torch.Tensor | None,
    default: tuple[int, ...] | None,
    image_dims: int | None = None,
) -> tuple[int, ...]:
    """Batch-free input shape: ``example_input`` is a batch ``[B, ...]``; with ``image_dims``
    a single unbatched sample of that many dims is accepted too."""
    if example_input is None:
        if default is None:
            raise ConversionError(
                "to_nir needs example_input (a batch [B, ...] of model inputs) to know the "
                "input shape of this model"
            )
        return default
    shape = tuple(int(s) for s in example_input.shape)
    if image_dims is not None and len(shape) == image_dims:
        return shape
    if len(shape) < 2:
        raise ConversionError(f"example_input must be a batch [B, ...], got shape {shape}")
    return shape[1:]


def _finish(builder: GraphBuilder, metadata: dict[str, Any]) -> nir.NIRGraph:
    builder.add_output("output")
    try:
        graph = nir.NIRGraph(
            nodes=builder.nodes,
            edges=builder.edges,
            metadata=encode_metadata(metadata),
            type_check=True,
        )
    except (ValueError, AssertionError) as exc:
        raise ConversionError(f"the exported graph fails NIR's own type check: {exc}") from exc
    validate_graph(graph)
    check_portable(graph)
    return graph


def to_nir(
    model: nn.Module,
    example_input: torch.Tensor | None = None,
    calibration: ImageSource | None = None,
    class_names: Sequence[str] | None = None,
    calibration_batch_size: int = 32,
    se_broadcast: str = "grouped",
) -> nir.NIRGraph:
    """Export ``model`` to a NIR graph (see the module docstring).

    ``example_input``: a batch ``[B, ...]`` of inputs fixing the input shape (for the SE-SNN
    also one image ``[C, H, W]``; default there: ``(in_channels, input_size, input_size)``).
    ``calibration``: images (tensor ``[N, C, H, W]`` or iterable of batches) required
    for SE blocks in ``analog`` mode, whose gates are replaced by their expectation over
    these images and timesteps and folded into the next layer (:mod:`conversion.se_folding`).
    ``class_names`` are stored in the metadata. ``se_broadcast``: ``"grouped"`` (the
    convention: one ``Conv2d`` group per channel) or ``"dense"`` (an equivalent ``groups=1``
    convolution, for consumers that mishandle grouped convolutions; see
    :func:`conversion.nir_mappings.map_spiking_se`).
    """
    model = _unwrap(model)
    if isinstance(model, NeurAllNet):
        return _export_neurallnet(
            model, example_input, calibration, class_names, calibration_batch_size, se_broadcast
        )
    return _export_generic(model, example_input, class_names)


def _export_neurallnet(
    model: NeurAllNet,
    example_input: torch.Tensor | None,
    calibration: ImageSource | None,
    class_names: Sequence[str] | None,
    batch_size: int,
    se_broadcast: str,
) -> nir.NIRGraph:
    config = model.config
    default = (config.in_channels, config.input_size, config.input_size)
    shape = _input_shape(example_input, default, image_dims=3)
    if shape[0] != config.in_channels:
        raise ConversionError(
            f"example_input has {shape[0]} channels, the model expects {config.in_channels}"
        )
    gates: dict[str, np.ndarray] = {}
    n_calibration = 0
    if analog_se_blocks(model):
        if calibration is None:
            raise ConversionError(
                f"model has SE blocks in 'analog' mode ({', '.join(analog_se_blocks(model))}); "
                "their sigmoid gate multiplies two signals, which NIR cannot express. Pass "
                "calibration images: to_nir(model, calibration=images) (CLI: --calibration-data "
                "DIR) to fold each gate's expectation into the next layer"
            )
        gates, n_calibration = calibrate_se_gates(model, calibration, batch_size)
    builder = GraphBuilder(config.dt, se_gates=gates, se_broadcast=se_broadcast)
    builder.add_input("input", shape, metadata={"encoding": INPUT_STATIC})
    walk(model.stem, "stem", builder)
    walk(model.body, "body", builder)
    name = getattr(model, "registry_name", model.model_name)
    metadata: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "dt": float(config.dt),
        "convention": CONVENTION,
        "timesteps": int(config.timesteps),
        "input_encoding": INPUT_STATIC,
        "readout": READOUT_MEAN_OVER_TIME,
        "model": name,
        "model_config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()
        },
        "se_mode": config.se_mode,
    }
    if config.se_mode == "spiking" and config.se_stages:
        metadata["se_broadcast"] = se_broadcast
    if class_names is not None:
        metadata["class_names"] = list(class_names)
    if gates:
        metadata["se_folding"] = "calibrated_expectation"
        metadata["se_calibration_images"] = int(n_calibration)
        metadata["se_gates"] = {path: gate.astype(np.float64) for path, gate in gates.items()}
    return _finish(builder, metadata)


def _export_generic(
    model: nn.Module, example_input: torch.Tensor | None, class_names: Sequence[str] | None
) -> nir.NIRGraph:
    lif_dts = {m.dt for m in model.modules() if isinstance(m, LIFLayer)}
    if len(lif_dts) > 1:
        raise ConversionError(f"the model's LIF layers use different dt values {sorted(lif_dts)}")
    dt = lif_dts.pop() if lif_dts else DEFAULT_DT
    builder = GraphBuilder(dt)
    # A container's children are named by their paths; a single mapped module by its class.
    root = "" if type(model) is nn.Sequential else type(model).__name__.lower()
    if root and find_mapping(model) is None:
        # Fail before asking for an input shape if the model cannot be mapped at all.
        raise unsupported_module_error(model, "")
    shape = _input_shape(example_input, None)
    builder.add_input("input", shape, metadata={"encoding": INPUT_PER_STEP})
    walk(model, root, builder)
    metadata: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "dt": float(dt),
        "convention": CONVENTION,
        "input_encoding": INPUT_PER_STEP,
        "model": type(model).__name__,
    }
    if class_names is not None:
        metadata["class_names"] = list(class_names)
    return _finish(builder, metadata)


def export_nir(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: torch.Tensor | None = None,
    calibration: ImageSource | None = None,
    class_names: Sequence[str] | None = None,
    se_broadcast: str = "grouped",
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

    ``parameters`` counts synaptic values (weights, biases, scales); ``neurons`` the
    state-holding units (LIF, IF, LI, I, Cuba*) per sample.
    """
    info = validate_graph(graph)
    nodes = info.flat.nodes
    meta = graph_metadata(graph)
    parameters = 0
    for node in nodes.values():
        for key in _WEIGHT_FIELDS:
            value = getattr(node, key, None)
            if value is not None:
                parameters += int(np.asarray(value).size)
    neurons = sum(
        int(np.prod(info.shapes[name][1]))
        for name, node in nodes.items()
        if isinstance(node, _NEURON_TYPES)
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

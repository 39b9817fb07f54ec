"""NIR export of the SE-SNN (:class:`~neurall_neuro.models.neurallnet.NeurAllNet`).

The graph::

    Input (C, H, W), static  ->  stem.conv (Conv2d, BatchNorm folded)  ->  body.lif1 (LIF)
    -> body.pool2 (AvgPool2d 2x2) -> body.conv2 (+bn2 folded) -> body.lif2 -> ...
    [-> body.seK.* spiking SE subgraph, or nothing for folded analog / no SE]
    -> body.head_pool (AvgPool2d over the whole map) -> body.head_flatten (Flatten)
    -> body.head_fc (Affine) -> output

``stem`` and ``body`` are walked with the per-module mappings of
:mod:`conversion.nir_mappings`. The model's ``readout`` module (the mean over the ``T``
steps, :class:`~neurall_neuro.models.blocks.MeanOverTime`) is no node: it is the graph's
readout convention, ``metadata["readout"] = "mean_over_time"``
(:mod:`conversion.nir_conventions`). The direct-encoded image is a static input
(``metadata["input_encoding"] = "static"``). SE blocks in ``analog`` mode are folded with
gates calibrated on ``request.calibration`` (:mod:`conversion.se_folding`).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from conversion.model_exporters import ExportRequest, register_model_exporter
from conversion.nir_builder import GraphBuilder
from conversion.nir_conventions import (
    CONVENTION,
    INPUT_STATIC,
    METADATA_FORMAT,
    METADATA_FORMAT_VERSION,
    READOUT_MEAN_OVER_TIME,
)
from conversion.nir_mappings import walk
from conversion.se_folding import analog_se_blocks, calibrate_se_gates
from neurall_neuro.errors import ConversionError, UnsupportedModuleError
from neurall_neuro.models.blocks import MeanOverTime
from neurall_neuro.models.neurallnet import NeurAllNet


def _check_readout(model: NeurAllNet) -> None:
    """The graph states its readout in metadata; only the mean over time has a name there."""
    readout = getattr(model, "readout", None)
    if not isinstance(readout, MeanOverTime):
        raise UnsupportedModuleError(
            type(readout),
            "readout",
            [MeanOverTime.__name__],
            "NIR graphs of this library state their readout in metadata, and only "
            f"{READOUT_MEAN_OVER_TIME!r} is defined",
            problem="is not a known readout",
        )


@register_model_exporter(NeurAllNet)
def export_neurallnet(model: NeurAllNet, request: ExportRequest) -> nir.NIRGraph:
    """The SE-SNN as a NIR graph (see the module docstring)."""
    config = model.config
    default = (config.in_channels, config.input_size, config.input_size)
    shape = request.input_shape(default, image_dims=3)
    if shape[0] != config.in_channels:
        raise ConversionError(
            f"example_input has {shape[0]} channels, the model expects {config.in_channels}"
        )
    _check_readout(model)
    gates: dict[str, np.ndarray] = {}
    n_calibration = 0
    if analog_se_blocks(model):
        if request.calibration is None:
            raise ConversionError(
                f"model has SE blocks in 'analog' mode ({', '.join(analog_se_blocks(model))}); "
                "their sigmoid gate multiplies two signals, which NIR cannot express. Pass "
                "calibration images: to_nir(model, calibration=images) (CLI: --calibration-data "
                "DIR) to fold each gate's expectation into the next layer"
            )
        gates, n_calibration = calibrate_se_gates(
            model, request.calibration, request.calibration_batch_size
        )
    builder = GraphBuilder(config.dt, se_gates=gates, se_broadcast=request.se_broadcast)
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
        metadata["se_broadcast"] = request.se_broadcast
    if request.class_names is not None:
        metadata["class_names"] = list(request.class_names)
    if gates:
        metadata["se_folding"] = "calibrated_expectation"
        metadata["se_calibration_images"] = int(n_calibration)
        metadata["se_gates"] = {path: gate.astype(np.float64) for path, gate in gates.items()}
    return builder.finish(metadata)

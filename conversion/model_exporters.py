"""Registry of whole-model NIR exporters, keyed by model class.

Most models export by walking their modules (:func:`conversion.nir_mappings.walk`). A model
whose graph needs more than its modules' mappings (a static input, a readout convention,
calibrated SE gates, model metadata) registers a *whole-model exporter*: a function
``(model, request) -> nir.NIRGraph`` for its class, with :func:`register_model_exporter`.
:func:`conversion.nir_export.to_nir` asks :func:`find_model_exporter` first and falls back
to the generic walk, so the export code itself knows no model.

A model's exporter is found through its class's MRO (a subclass of a registered model
exports like it unless it registers its own). The built-in exporters live in
:mod:`conversion.mappings` and are imported on the first lookup
(:data:`BUILTIN_MODEL_EXPORTER_MODULES`); a third-party exporter only has to be imported
before the export.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nir
import torch
from torch import nn

from conversion.nir_builder import DEFAULT_SE_BROADCAST
from conversion.nir_mappings import class_key, load_builtin_mappings
from conversion.se_folding import ImageSource
from neurall_neuro.errors import ConversionError
from neurall_neuro.registry import Registry


@dataclass(frozen=True)
class ExportRequest:
    """The options of one :func:`~conversion.nir_export.to_nir` call (see its docstring)."""

    example_input: torch.Tensor | None = None
    calibration: ImageSource | None = None
    class_names: Sequence[str] | None = None
    calibration_batch_size: int = 32
    se_broadcast: str = DEFAULT_SE_BROADCAST

    def input_shape(
        self, default: tuple[int, ...] | None = None, image_dims: int | None = None
    ) -> tuple[int, ...]:
        """Batch-free input shape: ``example_input`` is a batch ``[B, ...]``; with
        ``image_dims`` a single unbatched sample of that many dims is accepted too;
        without ``example_input``, ``default`` (an error if there is none)."""
        if self.example_input is None:
            if default is None:
                raise ConversionError(
                    "to_nir needs example_input (a batch [B, ...] of model inputs) to know the "
                    "input shape of this model"
                )
            return default
        shape = tuple(int(s) for s in self.example_input.shape)
        if image_dims is not None and len(shape) == image_dims:
            return shape
        if len(shape) < 2:
            raise ConversionError(f"example_input must be a batch [B, ...], got shape {shape}")
        return shape[1:]


ModelExporter = Callable[[nn.Module, ExportRequest], nir.NIRGraph]

#: Model class (qualified name) -> whole-model exporter.
MODEL_EXPORTERS: Registry[ModelExporter] = Registry("NIR model exporter")

#: Modules that register the built-in exporters (imported by the first lookup).
BUILTIN_MODEL_EXPORTER_MODULES: tuple[str, ...] = ("conversion.mappings.neurallnet",)


def register_model_exporter(cls: type[nn.Module]) -> Callable[[ModelExporter], ModelExporter]:
    """Decorator: register the whole-model exporter of ``cls`` (one per class)."""

    def decorator(fn: ModelExporter) -> ModelExporter:
        MODEL_EXPORTERS.register(class_key(cls), fn)
        return fn

    return decorator


def _load_builtins() -> None:
    for module in BUILTIN_MODEL_EXPORTER_MODULES:
        importlib.import_module(module)  # registers on first import; cached afterwards
    load_builtin_mappings()  # the module mappings the exporters and the generic export use


def find_model_exporter(model: nn.Module) -> ModelExporter | None:
    """The exporter registered for the nearest class in ``type(model).__mro__``, or ``None``."""
    _load_builtins()
    for cls in type(model).__mro__:
        key = class_key(cls)
        if key in MODEL_EXPORTERS:
            return MODEL_EXPORTERS.get(key)
    return None

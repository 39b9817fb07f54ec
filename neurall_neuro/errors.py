"""Typed exceptions of neurall-neuro.

Every error a user can cause derives from :class:`NeurallError`; the CLI prints
such errors as one line (full traceback with ``--debug`` or ``NEURALL_DEBUG=1``).
Messages name the problem and, where there is a choice, the valid options.
"""

from __future__ import annotations

from collections.abc import Iterable


class NeurallError(Exception):
    """Base class of all errors raised for bad input or a bad environment."""


class ConfigError(NeurallError, ValueError):
    """An option or configuration value is invalid."""


class UnknownNameError(NeurallError, LookupError):
    """A name was looked up in a registry that does not hold it."""

    def __init__(self, kind: str, name: str, options: Iterable[str]):
        self.kind = kind
        self.name = name
        self.options = sorted(options)
        super().__init__(
            f"unknown {kind} {name!r}; valid options: {', '.join(self.options) or '(none registered)'}"
        )

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return self.args[0]


class DuplicateNameError(NeurallError, ValueError):
    """A name was registered twice in the same registry."""


class MissingDependencyError(NeurallError, ImportError):
    """An optional dependency is not installed."""


class DataError(NeurallError):
    """A dataset folder, manifest, split file or image could not be used."""


class UnknownLayoutError(DataError):
    """A folder does not match any supported dataset layout."""


class BadImageError(DataError):
    """An image file is corrupt, truncated, or not an image."""


class CheckpointError(NeurallError):
    """A checkpoint file is missing, corrupt, or does not describe a known model."""


class ConversionError(NeurallError):
    """A model or graph cannot be converted between formats."""


class UnsupportedModuleError(ConversionError):
    """A torch module has no NIR mapping."""


class UnsupportedNodeError(ConversionError):
    """A NIR node (or netx layer) cannot be handled by the requested consumer."""


class GraphFileError(ConversionError):
    """A NIR or netx file is unreadable, truncated, or structurally invalid."""


class QuantizationError(ConversionError):
    """A value cannot be represented in the requested fixed-point format."""


class TargetError(NeurallError):
    """A hardware target cannot compile or run a graph."""

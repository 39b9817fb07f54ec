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
    """A torch module (or one of its options) cannot be exported or counted.

    Fields: ``module_class`` (class name), ``path`` (the module's path in the model,
    ``"<model root>"`` for the model itself), ``supported`` (sorted names of what is
    supported) and an optional ``reason``. The message reads::

        cannot {operation}: {module_class} at {path!r} {problem} ({reason}); {detail}.
        Supported modules: {supported}

    where the parenthesis, ``; detail`` and the supported list appear only when given.
    ``operation`` says what failed (default ``"export to NIR"``, e.g. ``"count
    operations"``), ``problem`` what is wrong with the module (default ``"has no NIR
    mapping"``), ``detail`` any further context (e.g. other unsupported modules).
    """

    def __init__(
        self,
        module_class: str | type,
        path: str,
        supported: Iterable[str] = (),
        reason: str | None = None,
        *,
        operation: str = "export to NIR",
        problem: str = "has no NIR mapping",
        detail: str | None = None,
    ):
        self.module_class = module_class if isinstance(module_class, str) else module_class.__name__
        self.path = path or "<model root>"
        self.supported = sorted(supported)
        self.reason = reason
        message = f"cannot {operation}: {self.module_class} at {self.path!r} {problem}"
        if reason:
            message += f" ({reason})"
        if detail:
            message += f"; {detail}"
        if self.supported:
            message += f". Supported modules: {', '.join(self.supported)}"
        super().__init__(message)

    def __reduce__(self) -> tuple:
        # The default reduction calls cls(*args) with the message only; rebuild from state.
        return _restore_error, (type(self), self.args, dict(self.__dict__))


class UnsupportedNodeError(ConversionError):
    """A NIR node (or netx layer) cannot be handled by the requested consumer."""


class GraphFileError(ConversionError):
    """A NIR or netx file is unreadable, truncated, or structurally invalid."""


class QuantizationError(ConversionError):
    """A value cannot be represented in the requested fixed-point format."""


class TargetError(NeurallError):
    """A hardware target cannot compile or run a graph."""


def _restore_error(cls: type[NeurallError], args: tuple, state: dict) -> NeurallError:
    """Unpickle an error whose constructor takes fields rather than the message."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error

"""A researcher's own torch model, named by a factory: ``package.module:factory``.

The CLI (``neurall export/deploy/energy --model SPEC --weights FILE --input-shape C,H,W``)
and Python share one loader, :func:`load_user_model`:

1. ``SPEC`` is ``module:attribute`` (``module`` a dotted import path, ``attribute`` a
   possibly dotted name inside it, e.g. ``mynets.tiny:build`` or ``mynets:Net.small``);
2. the module is imported with :mod:`importlib` from the current directory (searched
   first) and ``sys.path``; ``sys.path`` is restored afterwards;
3. the attribute is called without arguments and must return an ``nn.Module``;
4. ``weights`` (optional) is a state dict saved with ``torch.save(model.state_dict(), F)``,
   read with ``torch.load(F, weights_only=True)`` (no pickled code runs) and loaded with
   ``load_state_dict(strict=True)``; the model is put in eval mode.

Every failure is one typed error naming the spec or file and what went wrong:
:class:`~neurall_neuro.errors.ConfigError` for a malformed spec or shape, a module or
attribute that cannot be found or imported, a factory that raises or returns no module;
:class:`~neurall_neuro.errors.CheckpointError` for a weights file that cannot be read or
does not match the model (missing and unexpected keys, shape mismatches).

>>> user = load_user_model("mynets.tiny:build", "tiny.pt", "3,16,16", timesteps=4)  # doctest: +SKIP
>>> graph = to_nir(user.model, example_input=user.example_input())                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurall_neuro.errors import CheckpointError, ConfigError
from neurall_neuro.models.checkpoint import FORMAT as CHECKPOINT_FORMAT

#: Example of a spec, for messages.
SPEC_EXAMPLE = "mypackage.mymodule:build_model"
#: Keys listed in full in a weights mismatch message before it says "and N more".
MAX_LISTED_KEYS = 6


@dataclass(frozen=True)
class UserModel:
    """A loaded user model: the module (eval mode), the spec it came from, its weights
    file (``None``: the factory's own parameters), the per-sample ``input_shape`` and the
    number of timesteps ``T`` the user asked for (``None``: not given)."""

    model: nn.Module
    spec: str
    weights: Path | None
    input_shape: tuple[int, ...]
    timesteps: int | None = None

    @property
    def name(self) -> str:
        """The factory's name (the part after the colon), for reports."""
        return self.spec.partition(":")[2]

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """Zeros ``[batch, *input_shape]`` (fixes the input shape of an export)."""
        return torch.zeros(batch, *self.input_shape)


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``(module, attribute)`` of ``"module:attribute"``; ConfigError if malformed."""
    text = spec.strip() if isinstance(spec, str) else ""
    module, colon, attribute = text.partition(":")
    parts = module.split(".") + attribute.split(".")
    if not colon or not all(part.isidentifier() for part in parts):
        raise ConfigError(
            f"model spec {spec!r} is not MODULE:FACTORY (a dotted module path, a colon and "
            f"the name of a function or class in it), e.g. {SPEC_EXAMPLE}"
        )
    return module, attribute


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3,64,64"`` (or a sequence of ints) as a tuple of positive ints; ConfigError else."""
    if isinstance(text, str):
        items = [item.strip() for item in text.replace("x", ",").split(",")]
    else:
        items = list(text)
    try:
        shape = tuple(int(item) for item in items)
        valid = bool(shape) and all(
            not isinstance(item, bool) and str(item).strip().lstrip("+").isdigit() for item in items
        )
    except (TypeError, ValueError):
        valid = False
    if not valid or any(d < 1 for d in shape):
        raise ConfigError(
            f"input shape {text!r}: expected positive integers separated by commas, "
            "one sample without the batch, e.g. 3,64,64 for (C, H, W)"
        )
    return shape


def parse_timesteps(value: int | str | None) -> int | None:
    """A positive number of timesteps, or None; ConfigError otherwise."""
    if value is None:
        return None
    try:
        steps = int(value)
    except (TypeError, ValueError):
        steps = 0
    if isinstance(value, bool) or steps < 1 or str(value).strip() != str(steps):
        raise ConfigError(f"timesteps must be a positive integer, got {value!r}")
    return steps


def _import_module(module: str, spec: str, search: Sequence[Path]) -> Any:
    """Import ``module`` with ``search`` folders ahead of ``sys.path`` (restored after)."""
    saved = list(sys.path)
    sys.path[:0] = [str(p) for p in search if str(p) not in sys.path]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise ConfigError(
                f"model spec {spec!r}: no module named {missing!r} in "
                f"{', '.join(str(p) for p in search)} or on sys.path (run from the folder "
                "that holds it, or install it)"
            ) from None
        raise ConfigError(
            f"model spec {spec!r}: importing module {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
        raise ConfigError(
            f"model spec {spec!r}: importing module {module!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.path[:] = saved


def _factory(module_obj: Any, module: str, attribute: str, spec: str) -> Any:
    target = module_obj
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = sorted(
                n for n, v in vars(module_obj).items() if callable(v) and not n.startswith("_")
            )
            where = module if target is module_obj else f"{module}:{attribute}"
            raise ConfigError(
                f"model spec {spec!r}: {where} has no attribute {part!r}; callables in "
                f"{module}: {', '.join(names) or 'none'}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(
            f"model spec {spec!r}: {attribute!r} is a {type(target).__name__}, not a function "
            "or class that returns an nn.Module"
        )
    return target


def _build(factory: Any, spec: str) -> nn.Module:
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory may raise anything
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"model spec {spec!r}: the factory raised {type(exc).__name__}: {detail}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model spec {spec!r}: the factory returned an object of type "
            f"{type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"cannot read weights {path} with torch.load(weights_only=True): "
            f"{type(exc).__name__}: {detail}; save them with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a neurall checkpoint: give it with --checkpoint")
    if not isinstance(payload, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()
    ):
        hint = (
            " (it has a 'state_dict' entry: save that one)"
            if isinstance(payload, Mapping) and "state_dict" in payload
            else ""
        )
        raise CheckpointError(
            f"{path} is not a state dict (a mapping of parameter names to tensors){hint}; "
            "save it with torch.save(model.state_dict(), path)"
        )
    return payload


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return shown + (f" and {more} more" if more > 0 else "")


def _check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, spec: str
) -> None:
    """CheckpointError listing missing and unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_listed(shapes)}")
    if problems:
        raise CheckpointError(
            f"weights {path} do not match the model of {spec!r}: {'; '.join(problems)}"
        )


def load_user_model(
    spec: str,
    weights: str | Path | None = None,
    input_shape: str | Sequence[int] = (),
    timesteps: int | str | None = None,
    search_path: Sequence[str | Path] | None = None,
) -> UserModel:
    """Import ``spec``'s factory, build the model, load ``weights`` (see the module docstring).

    ``search_path``: folders searched before ``sys.path`` (default: the current directory).
    ``input_shape``: one sample's shape without the batch, e.g. ``"3,64,64"``.
    """
    module, attribute = parse_model_spec(spec)
    shape = parse_input_shape(input_shape)
    steps = parse_timesteps(timesteps)
    search = [Path(p).resolve() for p in (search_path if search_path is not None else ["."])]
    factory = _factory(_import_module(module, spec, search), module, attribute, spec)
    model = _build(factory, spec)
    path = None
    if weights is not None:
        path = Path(weights)
        state = _read_state_dict(path)
        _check_state_dict(model, state, path, spec)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            raise CheckpointError(
                f"weights {path} do not match the model of {spec!r}: {detail}"
            ) from exc
    return UserModel(model.eval(), spec.strip(), path, shape, steps)

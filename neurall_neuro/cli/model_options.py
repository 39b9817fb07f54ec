"""Options shared by ``neurall export``, ``deploy`` and ``energy``: where the model comes
from (a checkpoint, a NIR file, or the user's own torch model) and the NIR time step.

* ``--nir FILE`` reads any NIR graph; ``--dt SECONDS|CONVENTION`` states the time step it
  was written for (:mod:`conversion.dt_conventions`; default: the graph's own
  ``metadata["dt"]``).
* ``--model MODULE:FACTORY --weights STATE_DICT.pt --input-shape C,H,W [--timesteps T]``
  loads the user's model through :func:`neurall_neuro.models.user_model.load_user_model`.

Only argparse plumbing lives here; heavy imports stay inside the functions, so
``neurall --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from neurall_neuro.errors import ConfigError

#: The built-in dt conventions as the help texts list them (``tests/conversion/
#: test_dt_conventions.py`` checks this against the registry).
DT_CONVENTION_HELP: tuple[tuple[str, str], ...] = (
    ("neurall", "the graph's own metadata dt, else 1e-4"),
    ("norse", "1e-3"),
    ("snntorch", "1e-4"),
    ("sinabs", "1: tau in steps"),
    ("rockpool", "read back from r"),
    ("lava-dl", "1e-4"),
)

DT_HELP = (
    "time step the NIR file was written for: seconds (e.g. 1e-3) or a convention: "
    + ", ".join(f"{name} ({meaning})" for name, meaning in DT_CONVENTION_HELP)
    + "; default: the graph's metadata dt (see docs/export.md)"
)

#: The flags that name the model, in the order messages list them.
SOURCE_FLAGS: dict[str, str] = {
    "checkpoint": "--checkpoint CKPT",
    "snn": "--snn CKPT",
    "nir": "--nir FILE",
    "model": "--model MODULE:FACTORY",
}


def add_nir_arguments(group: Any, nir_help: str) -> None:
    """``--nir FILE`` and ``--dt SECONDS|CONVENTION``."""
    group.add_argument("--nir", metavar="FILE", help=nir_help)
    group.add_argument("--dt", metavar="SECONDS|CONVENTION", help=DT_HELP)


def add_user_model_arguments(group: Any, timesteps: bool = True) -> None:
    """``--model``, ``--weights``, ``--input-shape`` (and ``--timesteps`` unless the
    command has its own)."""
    group.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="your own torch model: a function or class in an importable module (searched in "
        "the current directory first) returning an nn.Module, e.g. mynets.tiny:build",
    )
    group.add_argument(
        "--weights",
        metavar="STATE_DICT.pt",
        help="state dict for --model (torch.save(model.state_dict(), path); loaded with "
        "weights_only=True, strict=True)",
    )
    group.add_argument(
        "--input-shape",
        dest="input_shape",
        metavar="C,H,W",
        help="one input sample's shape for --model, without the batch, e.g. 3,64,64",
    )
    if timesteps:
        group.add_argument(
            "--timesteps",
            type=int,
            metavar="T",
            help="timesteps T for --nir / --model (default: the graph's metadata)",
        )


def chosen_source(args: argparse.Namespace, flags: Sequence[str], required: bool = True) -> str:
    """The one model flag of ``flags`` (argparse dests) given; ConfigError for none (when
    ``required``) or several; ConfigError for model options without ``--model`` and for
    ``--dt`` without ``--nir``."""
    given = [flag for flag in flags if getattr(args, flag, None)]
    listed = ", ".join(SOURCE_FLAGS[flag] for flag in flags)
    if len(given) > 1:
        raise ConfigError(
            f"{' and '.join('--' + g for g in given)} both name the model; give one of {listed}"
        )
    if not given and required:
        raise ConfigError(f"give one of {listed}")
    source = given[0] if given else ""
    if source != "model":
        extra = [
            f"--{name.replace('_', '-')}"
            for name in ("weights", "input_shape")
            if getattr(args, name, None) is not None
        ]
        if extra:
            raise ConfigError(f"{', '.join(extra)} belong to --model MODULE:FACTORY")
    if getattr(args, "dt", None) is not None and source != "nir":
        raise ConfigError(
            "--dt states the time step of a NIR file read with --nir FILE; a model's own dt "
            "comes from its LIF layers"
        )
    return source


def load_user_model_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~neurall_neuro.models.user_model.UserModel` of ``--model``."""
    from neurall_neuro.models.user_model import load_user_model

    if args.input_shape is None:
        raise ConfigError("--model needs --input-shape C,H,W (one sample's shape, e.g. 3,64,64)")
    return load_user_model(
        args.model, args.weights, args.input_shape, getattr(args, "timesteps", None)
    )


def user_model_graph(user: Any) -> Any:
    """``to_nir(model, example_input=zeros(1, *input_shape))`` of a user model; an input
    shape the model cannot take is a ConfigError naming it."""
    from conversion.nir_export import to_nir
    from neurall_neuro.errors import GraphFileError

    try:
        return to_nir(user.model, example_input=user.example_input())
    except GraphFileError as exc:
        shape = ",".join(str(d) for d in user.input_shape)
        raise ConfigError(
            f"--input-shape {shape} does not fit the model of {user.spec!r}: {exc}"
        ) from exc


def parsed_dt(args: argparse.Namespace) -> float | str | None:
    """``--dt`` as seconds or a convention name (ConfigError listing the conventions)."""
    if getattr(args, "dt", None) is None:
        return None
    from conversion.dt_conventions import parse_dt

    return parse_dt(args.dt)


#: Spike probability per input element and step of ``--random`` event streams.
RANDOM_EVENT_RATE = 0.3


def random_event_steps(args: argparse.Namespace, graph: Any) -> int | None:
    """``T`` of the ``--random`` inputs when they are binary event streams, i.e. for a
    per-step (event) graph (``metadata["input_encoding"] == "per_step"``); ``None`` when
    ``--random`` is not given or the graph takes static images."""
    from conversion.nir_conventions import INPUT_PER_STEP
    from conversion.nir_io import graph_metadata

    metadata = graph_metadata(graph)
    if not args.random or metadata.get("input_encoding") != INPUT_PER_STEP:
        return None
    steps = args.timesteps or metadata.get("timesteps")
    if steps is None:
        raise ConfigError("the graph's metadata has no 'timesteps'; pass --timesteps T")
    return int(steps)


def random_events(n: int, shape: Sequence[int], steps: int, seed: int) -> Any:
    """``n`` seeded binary event streams ``[steps, n, *shape]``, each element spiking with
    probability :data:`RANDOM_EVENT_RATE` per step."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, n, *shape, generator=generator) < RANDOM_EVENT_RATE).float()

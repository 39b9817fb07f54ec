"""``neurall deploy``: run an SE-SNN checkpoint on several hardware targets and report parity.

Target options: every target declares its compile options (``Target.valid_options()``:
the common ones, ``device``, ``batch_size``, ``align``, ``record``, ..., plus the target's
``extra_options``, e.g. ``lava-sim``'s ``precision`` and ``backend``). Set any of them with
the repeatable ``--target-option TARGET.KEY=VALUE``; ``TARGET.max_samples=N`` limits the
images a slow target runs (at most ``--n``). ``--list-targets`` lists the options of
every target. The older flags are shortcuts for the same mechanism:

    --device D           torch.device=D and loihi-emu.device=D
    --lava-precision P   lava-sim.precision=P
    --lava-n N           lava-sim.max_samples=N

A ``--target-option`` wins over a shortcut. ``timesteps`` comes from the checkpoint.
A target limited to N images is compared with Norse and with every other target on the
images both ran; the table gives each target's n. Ctrl-C stops every target (Lava's
processes included) with one line and exit status 130, writing nothing.

Examples::

    neurall deploy --checkpoint snn.pt --data DATA --targets torch,lava-sim \\
        --target-option lava-sim.backend=process --target-option lava-sim.max_samples=2
    neurall deploy --checkpoint snn.pt --data DATA --target-option loihi-emu.bias_schedule=depth
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neurall_neuro.cli.model_options import add_nir_arguments, add_user_model_arguments
from neurall_neuro.devices import add_device_argument
from neurall_neuro.errors import ConfigError, NeurallError

#: Per-target options deploy itself handles (not passed to ``compile``).
DEPLOY_OPTIONS: dict[str, str] = {
    "max_samples": "images this target runs (the first ones of --n; for slow targets)",
}
#: Exit status after Ctrl-C (128 + SIGINT, like a shell).
INTERRUPTED_STATUS = 130
#: Options deploy sets itself: not accepted from ``--target-option``.
RESERVED_OPTIONS: dict[str, str] = {
    "timesteps": "it comes from the checkpoint's config, or --timesteps / the graph's metadata"
}

#: Shortcut flag (argparse dest) -> the (target, option) pairs it sets.
SHORTCUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "device": (("torch", "device"), ("loihi-emu", "device")),
    "lava_precision": (("lava-sim", "precision"),),
    "lava_n": (("lava-sim", "max_samples"),),
}


def _literal(text: str) -> Any:
    """A JSON literal (number, true/false/null, list, object, "string"), none/true/false in
    any case, or else the text itself as a string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def _string(text: str) -> str:
    return text


def _boolean(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.strip().lower() not in words:
        raise ValueError("must be true or false")
    return words[text.strip().lower()]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a positive integer") from None
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _optional_positive_int(text: str) -> int | None:
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return _positive_int(text)
    except ValueError:
        raise ValueError("must be a positive integer or none") from None


def _dt_value(text: str) -> float | str | None:
    """Seconds per step, a dt convention name (conversion.dt_conventions), or none."""
    if text.strip().lower() in ("none", "null"):
        return None
    from conversion.dt_conventions import list_dt_conventions, parse_dt

    try:
        return parse_dt(text)
    except NeurallError:
        raise ValueError(
            f"must be seconds > 0 or a convention: {', '.join(list_dt_conventions())}"
        ) from None


def _layer_names(text: str) -> str | list[str] | None:
    """``all``, ``none`` or comma-separated layer (NIR node) names."""
    lowered = text.strip().lower()
    if lowered in ("all", "none", "null"):
        return "all" if lowered == "all" else None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("must be all, none or comma-separated layer names")
    return names


def _mapping(text: str) -> dict[str, Any] | None:
    value = _literal(text)
    if value is not None and not isinstance(value, dict):
        raise ValueError('must be a JSON object, e.g. {"weight_bits": 8}, or none')
    return value


#: Option name -> parser of its value text (options not listed: :func:`_literal`).
OPTION_PARSERS: dict[str, Callable[[str], Any]] = {
    "device": _string,
    "batch_size": _optional_positive_int,
    "align": _boolean,
    "record": _layer_names,
    "record_voltage": _layer_names,
    "max_samples": _positive_int,
    "dt": _dt_value,
    "dt_convention": _dt_value,
    "precision": _string,
    "backend": _string,
    "input_mode": _string,
    "bias_schedule": _string,
    "quantization": _mapping,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="run a checkpoint on hardware targets (torch, loihi-emu, lava-sim) with a parity report",
        description=(
            "Export the checkpoint to NIR, run it on each target and compare with the Norse\n"
            "model: accuracy, prediction agreement, per-layer spike-count correlation and\n"
            "firing rates, latency and throughput. Writes parity.json and parity.png.\n\n"
            + __doc__.split("\n\n", 1)[1]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    required = parser.add_argument_group("required (unless --list-targets)")
    required.add_argument(
        "--checkpoint", metavar="CKPT", help="SE-SNN checkpoint (.pt); or give --nir or --model"
    )
    required.add_argument(
        "--data",
        metavar="DIR",
        help="dataset folder (any supported layout); with --nir / --model also --random N",
    )
    own = parser.add_argument_group(
        "your own model or NIR file (instead of --checkpoint; the reference is the torch target)"
    )
    add_nir_arguments(own, "a NIR graph file to run on the targets")
    add_user_model_arguments(own)
    own.add_argument(
        "--random",
        type=int,
        metavar="N",
        help="run N seeded uniform random inputs of the model's input shape instead of --data",
    )
    parser.add_argument(
        "--targets",
        default="torch,loihi-emu,lava-sim",
        help="comma-separated targets (see --list-targets); default: torch,loihi-emu,lava-sim",
    )
    parser.add_argument(
        "--list-targets",
        action="store_true",
        help="list the registered targets with their options and exit",
    )
    parser.add_argument("--n", type=int, default=32, help="images to run (default 32)")
    parser.add_argument(
        "--target-option",
        dest="target_options",
        action="append",
        default=[],
        metavar="TARGET.KEY=VALUE",
        help="a compile option of one target, e.g. lava-sim.backend=process or "
        "loihi-emu.max_samples=8 (repeatable; see --list-targets for each target's keys)",
    )
    parser.add_argument(
        "--lava-n",
        type=int,
        default=4,
        help="images for lava-sim, which simulates in Python processes and is slow "
        "(default 4; shortcut for --target-option lava-sim.max_samples=N)",
    )
    parser.add_argument(
        "--lava-precision",
        choices=("fixed", "float"),
        default="fixed",
        help="lava-sim precision (default fixed; shortcut for --target-option lava-sim.precision=P)",
    )
    add_device_argument(
        parser,
        purpose="device of torch and loihi-emu (shortcut for --target-option torch.device=D "
        "--target-option loihi-emu.device=D)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the images")
    parser.add_argument(
        "--out", default="deploy-report", help="output folder (default deploy-report)"
    )
    parser.set_defaults(func=run)


def settable_options(target: str) -> dict[str, str]:
    """Option name -> meaning of everything ``--target-option TARGET.KEY=...`` accepts."""
    from hw_targets.registry import get_target

    valid = {
        k: v for k, v in get_target(target).valid_options().items() if k not in RESERVED_OPTIONS
    }
    return {**valid, **DEPLOY_OPTIONS}


def parse_target_option(text: str, known_targets: Sequence[str]) -> tuple[str, str, Any]:
    """``TARGET.KEY=VALUE`` as ``(target, key, value)``, the value parsed to the option's type.

    ConfigError (one line, listing the valid choices) for a malformed text, an unknown
    target, a key the target does not accept, or a value of the wrong type.
    """
    left, equals, raw = text.partition("=")
    target, dot, key = left.strip().rpartition(".")
    if not equals or not dot or not target or not key:
        raise ConfigError(
            f"--target-option {text!r}: expected TARGET.KEY=VALUE, e.g. lava-sim.precision=float"
        )
    if target not in known_targets:
        raise ConfigError(
            f"--target-option {text!r}: unknown target {target!r}; "
            f"valid targets: {', '.join(known_targets)}"
        )
    options = settable_options(target)
    if key not in options:
        reserved = (
            f" ({key} is set by deploy: {RESERVED_OPTIONS[key]})" if key in RESERVED_OPTIONS else ""
        )
        raise ConfigError(
            f"--target-option {text!r}: target {target!r} has no option {key!r}{reserved}; "
            f"valid options: {', '.join(sorted(options))}"
        )
    try:
        value = OPTION_PARSERS.get(key, _literal)(raw)
    except ValueError as exc:
        raise ConfigError(f"--target-option {text!r}: {key} {exc}") from None
    return target, key, value


def target_settings(
    args: argparse.Namespace, targets: Sequence[str], known_targets: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """``(compile options per target, max_samples per target)`` from the shortcut flags
    (for the chosen targets) and ``--target-option`` (which must name a chosen target)."""
    chosen: dict[str, dict[str, Any]] = {name: {} for name in targets}
    for dest, pairs in SHORTCUTS.items():
        for target, key in pairs:
            if target in chosen:
                chosen[target][key] = getattr(args, dest)
    for text in args.target_options:
        target, key, value = parse_target_option(text, known_targets)
        if target not in chosen:
            raise ConfigError(
                f"--target-option {text!r}: target {target!r} is not in --targets "
                f"({', '.join(targets)})"
            )
        chosen[target][key] = value
    limits: dict[str, int] = {}
    for target, options in chosen.items():
        for key in DEPLOY_OPTIONS:
            if key in options:
                limits[target] = options.pop(key)
    return chosen, limits


def interrupted_message(exc: KeyboardInterrupt) -> str:
    """The one line ``neurall deploy`` prints on Ctrl-C, e.g. ``interrupted: lava-sim
    stopped after 1 of 4 samples; partial results not written``."""
    detail = str(exc).strip()
    return f"interrupted: {detail + '; ' if detail else ''}partial results not written"


def _list_targets() -> int:
    from hw_targets.registry import get_target, list_targets

    for name in list_targets():
        print(f"{name:<10} {get_target(name).description}")
        for key, meaning in sorted(settable_options(name).items()):
            print(f"    {name}.{key}: {meaning}")
    return 0


def _check_dt_options(args: argparse.Namespace, graph: Any, options: dict[str, dict]) -> None:
    """ConfigError when ``--dt`` and a target's ``dt`` / ``dt_convention`` option give
    different time steps (each named)."""
    from conversion.dt_conventions import resolve_graph_dt

    stated = [("--dt", args.dt)] if args.dt is not None else []
    for target, opts in options.items():
        stated += [
            (f"--target-option {target}.{key}", opts[key])
            for key in ("dt", "dt_convention")
            if opts.get(key) is not None
        ]
    seconds = [(label, value, resolve_graph_dt(graph, dt=value).dt) for label, value in stated]
    for label, value, dt in seconds[1:]:
        first_label, first_value, first_dt = seconds[0]
        if not math.isclose(dt, first_dt, rel_tol=1e-9):
            raise ConfigError(
                f"{first_label} {first_value} ({first_dt:g} s) and {label}={value} ({dt:g} s) "
                "give different time steps; give one"
            )


def _graph_inputs(args: argparse.Namespace, graph: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(inputs, labels or None, source description)``: ``[N, *shape]`` images, or for a
    per-step (event) graph ``[T, N, *shape]`` binary events, from ``--random N`` or
    ``--n`` images of ``--data`` (RGB, resized to the graph's square input; labelled when
    the graph's metadata names classes the dataset maps onto)."""
    import torch

    from conversion.nir_io import graph_metadata
    from energy.sources import nir_input_shape
    from neurall_neuro.cli.model_options import (
        RANDOM_EVENT_RATE,
        random_event_steps,
        random_events,
    )
    from neurall_neuro.data.sampling import sample_images

    if (args.data is None) == (args.random is None):
        raise ConfigError("give exactly one of --data DIR or --random N")
    if args.random is not None:
        from conversion.nir_graph import validate_graph

        info = validate_graph(graph)
        if len(info.flat.inputs) != 1:
            raise ConfigError(f"the graph has {len(info.flat.inputs)} inputs; deploy needs one")
        shape = tuple(int(d) for d in info.shapes[info.flat.inputs[0]][1])
        if args.random < 1:
            raise ConfigError(f"--random must be a positive number of inputs, got {args.random}")
        steps = random_event_steps(args, graph)
        if steps is not None:  # a per-step (event) graph: binary event streams [T, N, *shape]
            inputs = random_events(args.random, shape, steps, args.seed)
            return (
                inputs,
                None,
                {
                    "random": args.random,
                    "events": True,
                    "rate": RANDOM_EVENT_RATE,
                    "seed": args.seed,
                },
            )
        generator = torch.Generator().manual_seed(args.seed)
        inputs = torch.rand(args.random, *shape, generator=generator)
        return inputs, None, {"random": args.random, "seed": args.seed}
    shape = nir_input_shape(graph)
    if shape[0] != 3 or shape[1] != shape[2]:
        raise ConfigError(
            f"--data gives RGB images (3, S, S); the model's input is {shape}: use --random N"
        )
    classes = graph_metadata(graph).get("class_names")
    batch = sample_images(
        args.data, {"size": shape[1]}, n=args.n, seed=args.seed, class_names=classes
    )
    labels = batch.labels if classes is not None else None
    return batch.images, labels, {"data": str(args.data), "seed": args.seed}


def _run_graph(
    args: argparse.Namespace,
    source: str,
    targets: list[str],
    options: dict[str, dict[str, Any]],
    limits: dict[str, int],
) -> int:
    """``--nir FILE`` / ``--model``: the graph on every target against the torch target
    (the NIR runtime), without accuracy unless the graph names classes of ``--data``."""
    from conversion.dt_conventions import apply_dt
    from conversion.nir_io import graph_metadata, read_nir
    from hw_targets.graph_parity import graph_parity_report, render_graph_table
    from neurall_neuro.cli.model_options import (
        load_user_model_from_args,
        parsed_dt,
        user_model_graph,
    )

    if source == "nir":
        graph = read_nir(args.nir)
        _check_dt_options(args, graph, options)
        graph = apply_dt(graph, parsed_dt(args))
        described = {"nir": str(args.nir), "dt": args.dt}
    else:
        user = load_user_model_from_args(args)
        graph = user_model_graph(user)
        described = {
            "model": user.spec,
            "weights": str(user.weights),
            "input_shape": list(user.input_shape),
        }
    timesteps = args.timesteps or graph_metadata(graph).get("timesteps")
    if timesteps is None:
        raise ConfigError("the graph's metadata has no 'timesteps'; pass --timesteps T")
    inputs, labels, data = _graph_inputs(args, graph)
    try:
        report = graph_parity_report(
            graph,
            inputs,
            targets,
            int(timesteps),
            labels=labels,
            target_options=options,
            max_samples=limits,
            source={**described, **data},
            events=bool(data.get("events")),
        )
    except KeyboardInterrupt as exc:  # Ctrl-C: one line (lava-sim says how far it got)
        print(interrupted_message(exc), file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(report.to_json())
    print(render_graph_table(report))
    for target in report.targets:  # the table cuts long reasons: print them in full
        if target.status != "ok" and target.reason:
            print(f"{target.target} {target.status}: {target.reason}")
    if labels is None:
        print("no class labels: agreement with the torch reference only, no accuracy")
    print(f"wrote {out / 'parity.json'}")
    return 0 if all(t.status != "failed" for t in report.targets) else 1


def run(args: argparse.Namespace) -> int:
    from conversion.nir_export import to_nir
    from hw_targets.parity import parity_report, plot_report, render_table
    from hw_targets.registry import list_targets
    from neurall_neuro.cli.model_options import chosen_source
    from neurall_neuro.data.sampling import sample_images
    from neurall_neuro.errors import DataError
    from neurall_neuro.models.checkpoint import load_checkpoint

    if args.list_targets:
        return _list_targets()
    source = chosen_source(args, ("checkpoint", "nir", "model"), required=False)
    if source == "checkpoint" and (args.timesteps is not None or args.random is not None):
        raise ConfigError(
            "--timesteps and --random apply to --nir / --model; a checkpoint brings its own "
            "T and needs labelled --data"
        )
    if not source or (source == "checkpoint" and not args.data):
        raise ConfigError(
            "neurall deploy needs --checkpoint CKPT and --data DIR, or --nir FILE / --model "
            "MODULE:FACTORY with --data DIR or --random N (or --list-targets)"
        )
    known = list_targets()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown target(s) {', '.join(unknown)}; valid options: {', '.join(known)}"
        )
    options, limits = target_settings(args, targets, known)
    if source != "checkpoint":
        return _run_graph(args, source, targets, options, limits)
    ckpt = load_checkpoint(args.checkpoint)
    if not hasattr(ckpt.model, "run"):
        raise ConfigError(
            f"{args.checkpoint} holds a {ckpt.model_name!r}, not a spiking model; deploy needs an SE-SNN"
        )
    batch = sample_images(
        args.data, ckpt.preprocessing, n=args.n, seed=args.seed, class_names=ckpt.class_names
    )
    if batch.labels is None:
        raise DataError(
            f"the classes of {args.data} ({', '.join(batch.class_names)}) do not map onto the "
            f"checkpoint's ({', '.join(ckpt.class_names)})"
        )
    calibration = batch.images if ckpt.config.get("se_mode") == "analog" else None
    graph = to_nir(
        ckpt.model,
        example_input=batch.images[:1],
        calibration=calibration,
        class_names=ckpt.class_names,
    )
    try:
        report = parity_report(
            ckpt.model,
            graph,
            batch.images,
            batch.labels,
            targets,
            timesteps=int(ckpt.config["timesteps"]),
            target_options=options,
            max_samples=limits,
            source={"checkpoint": str(args.checkpoint), "data": str(args.data), "seed": args.seed},
        )
    except KeyboardInterrupt as exc:  # Ctrl-C: one line (lava-sim says how far it got)
        print(interrupted_message(exc), file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(report.to_json())
    plot = plot_report(report, out / "parity.png")
    print(render_table(report))
    for target in report.targets:  # the table cuts long reasons: print them in full
        if target.status != "ok" and target.reason:
            print(f"{target.target} {target.status}: {target.reason}")
    print(f"wrote {out / 'parity.json'} and {plot}")
    return 0 if all(t.status != "failed" for t in report.targets) else 1

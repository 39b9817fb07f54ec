"""``neurall energy``: operation counts and energy per inference of the SE-SNN vs the SE-CNN.

Counts SynOps (spike-driven accumulates, exact fan-out), MACs, neuron updates and spikes
per layer on real images, prices them on hardware profiles (45 nm fp32/int8 with SRAM or
DRAM, Loihi, SpiNNaker, SpiNNaker2, TrueNorth), and reports arithmetic-only and
with-memory energy, the SNN/CNN ratio and the break-even firing rate. See docs/energy.md.
The command loads the checkpoints (or the NIR graph) and the images and prints what
``energy.report.energy_report`` returns: the Python API gives the same report.

Examples::

    neurall energy --snn runs/snn/best.pt --cnn runs/cnn/best.pt --data DATA --n 64
    neurall energy --snn snn.pt --cnn cnn.pt --random 16 --format md --output energy.md --plot energy.png
    neurall energy --nir model.nir --target torch --data DATA --cnn cnn.pt
    neurall energy --nir theirs.nir --dt snntorch --timesteps 8 --random 16
    neurall energy --model mynets.tiny:build --weights tiny.pt --input-shape 3,64,64 \\
        --timesteps 4 --random 16
    neurall energy --list-profiles

Your own spiking model (--model MODULE:FACTORY --weights STATE_DICT.pt --input-shape
C,H,W) is exported to NIR (to_nir with a zero example input) and counted like --nir, from
the spike counts of --target over --timesteps steps. --dt states the time step a --nir
file was written for (seconds or a convention: neurall, norse, snntorch, sinabs,
rockpool, lava-dl).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from neurall_neuro.cli.model_options import (
    add_nir_arguments,
    add_user_model_arguments,
    load_user_model_from_args,
    parsed_dt,
    user_model_graph,
)
from neurall_neuro.devices import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "energy",
        help="SynOps/MACs per layer and energy per inference on hardware profiles (SNN vs CNN)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--snn", metavar="CKPT", help="spiking model checkpoint (e.g. neurallnet best.pt)"
    )
    g.add_argument(
        "--cnn", metavar="CKPT", help="non-spiking baseline checkpoint (e.g. se-cnn best.pt)"
    )
    add_nir_arguments(g, "count a NIR graph instead of --snn (run on --target)")
    add_user_model_arguments(g, timesteps=False)
    g.add_argument(
        "--target",
        default="torch",
        help="target that runs --nir / --model to get spike counts (torch)",
    )
    g.add_argument(
        "--timesteps", type=int, help="T for --nir / --model (default: the graph's metadata)"
    )

    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="DIR", help="dataset folder or manifest.csv")
    g.add_argument("--layout", help="dataset layout (default: detected)")
    g.add_argument(
        "--random", type=int, metavar="N", help="use N uniform random images instead of data"
    )
    g.add_argument(
        "--n", type=int, default=64, help="images to count on, spread over the dataset (64)"
    )
    g.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="batch size (32)")
    g.add_argument("--seed", type=int, default=0, help="seed of --random images (0)")
    add_device_argument(g)

    g = p.add_argument_group("pricing and output")
    g.add_argument(
        "--profiles", default="all", help="comma-separated profile names, or all (default)"
    )
    g.add_argument(
        "--profile-file", dest="profile_files", action="append", default=[], metavar="FILE.toml",
        help="extra profiles (add or override; repeatable)",
    )  # fmt: skip
    g.add_argument(
        "--view", choices=("hardware", "neurobench"), default="hardware",
        help="hardware: fold pooling on spikes into the next layer (default); neurobench: count it",
    )  # fmt: skip
    g.add_argument(
        "--format", dest="fmt", choices=("table", "json", "csv", "md"), default="table",
        help="report format: table (default, for the terminal), json, csv or md (Markdown)",
    )  # fmt: skip
    g.add_argument("--output", metavar="FILE", help="write the report here (default: stdout)")
    g.add_argument(
        "--plot", metavar="FILE.png", help="also write a plot (per-layer ops, energy per profile)"
    )
    g.add_argument(
        "--list-profiles", action="store_true", help="list the profiles with sources and exit"
    )
    p.set_defaults(func=run)


def _list_profiles(profile_files: list[str]) -> int:
    from energy.profiles import load_profiles

    catalog = load_profiles(profile_files)
    for name in catalog.names():
        profile = catalog.get(name)
        host = f", host {profile.host}" if profile.host else ""
        print(f"{profile.name} ({profile.kind}{host}): {profile.description}")
        for op, figure in profile.ops.items():
            print(f"    {op:14s} {figure.pj:>10g} pJ  [{figure.source}] {figure.note}")
        for label, figure in (
            ("memory read", profile.memory_read),
            ("memory write", profile.memory_write),
        ):
            if figure is not None:
                print(
                    f"    {label:14s} {figure.pj:>10g} pJ per {figure.bits} bits  [{figure.source}] {figure.note}"
                )
    print("sources:")
    for key, citation in sorted(catalog.sources.items()):
        print(f"  {key}: {citation}")
    return 0


def _select(count: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``count`` items (all when ``n >= count``)."""
    if n >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(n - 1, 1)) for i in range(n)})


class _Images:
    """Re-iterable batches of preprocessed images (a fresh pass per model)."""

    def __init__(self, make_batches: Any, total: int, batches: int, label: str):
        self.make_batches = make_batches
        self.total = total
        self.batches = batches
        self.label = label

    def __iter__(self) -> Any:
        from neurall_neuro.progress import track

        return iter(track(self.make_batches(), f"counting on {self.label}", total=self.batches))


def _dataset_images(args: argparse.Namespace, preprocessing: dict[str, Any]) -> _Images:
    import torch

    from neurall_neuro.data.dataset import ImageDataset
    from neurall_neuro.data.layouts import load_cohort
    from neurall_neuro.data.preprocess import Preprocessing

    cohort = getattr(args, "cohort", None)  # loaded once by run(), shared by both models
    if cohort is None:
        cohort = load_cohort(args.data, args.layout, bad_images="skip")
    chosen = _select(len(cohort.records), args.n)
    records = [cohort.records[i] for i in chosen]
    dataset = ImageDataset(records, Preprocessing.from_dict(preprocessing), cache=False)

    def batches() -> Any:
        for start in range(0, len(dataset), args.batch_size):
            items = [
                dataset[i][0] for i in range(start, min(start + args.batch_size, len(dataset)))
            ]
            yield torch.stack(items)

    n_batches = -(-len(dataset) // args.batch_size)
    return _Images(batches, len(dataset), n_batches, f"{len(dataset)} images")


def _random_images(args: argparse.Namespace, shape: tuple[int, int, int]) -> _Images:
    import torch

    def batches() -> Any:
        generator = torch.Generator().manual_seed(args.seed)
        images = torch.rand(args.random, *shape, generator=generator)
        yield from images.split(args.batch_size)

    return _Images(
        batches, args.random, -(-args.random // args.batch_size), f"{args.random} random images"
    )


def _random_events(args: argparse.Namespace, shape: tuple[int, ...], steps: int) -> _Images:
    """``--random N`` binary event streams ``[T, N, *shape]`` for a per-step (event) graph."""
    from neurall_neuro.cli.model_options import random_events

    def batches() -> Any:
        events = random_events(args.random, shape, steps, args.seed)
        yield from events.split(args.batch_size, dim=1)

    label = f"{args.random} random event streams"
    return _Images(batches, args.random, -(-args.random // args.batch_size), label)


def _images(
    args: argparse.Namespace, preprocessing: dict[str, Any], shape: tuple[int, int, int]
) -> _Images:
    if args.random:
        return _random_images(args, shape)
    return _dataset_images(args, preprocessing)


def _data_description(args: argparse.Namespace, events: bool = False) -> str:
    if args.random and events:
        from neurall_neuro.cli.model_options import RANDOM_EVENT_RATE

        return (
            f"{args.random} random binary event streams (spike probability {RANDOM_EVENT_RATE} "
            f"per element and step, seed {args.seed}); not real data"
        )
    if args.random:
        return f"{args.random} uniform random images in [0, 1] (seed {args.seed}); not real data"
    return f"up to {args.n} images spread over {args.data}"


def _checkpoint_source(path: str, args: argparse.Namespace) -> Any:
    """A checkpoint as a :class:`energy.sources.TorchModel` with its own images."""
    from energy.sources import TorchModel
    from neurall_neuro.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, map_location=args.device)
    config = ckpt.config
    shape = (config.get("in_channels", 3), config["input_size"], config["input_size"])
    return TorchModel(
        ckpt.model,
        images=_images(args, ckpt.preprocessing, shape),
        name=ckpt.model_name,
        label=path,
    )


def _graph_images(args: argparse.Namespace, graph: Any) -> tuple[_Images, bool]:
    """``(images, events)`` for a NIR graph: with ``--random`` a per-step (event) graph gets
    binary event streams ``[T, N, *shape]``, any other graph images ``[N, *shape]``."""
    from energy.sources import nir_input_shape
    from neurall_neuro.cli.model_options import random_event_steps

    shape = nir_input_shape(graph)
    steps = random_event_steps(args, graph)
    if steps is not None:
        return _random_events(args, shape, steps), True
    return _images(args, {"size": shape[1]}, shape), False


def _graph_source(path: str, args: argparse.Namespace) -> Any:
    """A NIR file as a :class:`energy.sources.NIRModel` (run on ``--target``) with its images."""
    from conversion.nir_io import read_nir
    from energy.sources import NIRModel

    graph = read_nir(path)
    images, events = _graph_images(args, graph)
    return NIRModel(
        graph,
        images=images,
        target=args.target,
        timesteps=args.timesteps,
        name=Path(path).name,
        label=path,
        dt=parsed_dt(args),
        events=events,
    )


def _user_model_source(args: argparse.Namespace) -> Any:
    """``--model``: the user's model exported to NIR, counted as a :class:`NIRModel`."""
    from energy.sources import NIRModel, nir_input_shape

    user = load_user_model_from_args(args)
    graph = user_model_graph(user)
    shape = nir_input_shape(graph)
    if args.data and (shape[0] != 3 or shape[1] != shape[2]):
        from neurall_neuro.errors import ConfigError

        raise ConfigError(
            f"--data gives RGB images (3, S, S); the model's input is {shape}: use --random N"
        )
    images, events = _graph_images(args, graph)
    return NIRModel(
        graph,
        images=images,
        target=args.target,
        timesteps=args.timesteps,
        name=user.name,
        label=user.spec,
        events=events,
    )


def run(args: argparse.Namespace) -> int:
    from neurall_neuro.cli.model_options import chosen_source
    from neurall_neuro.errors import ConfigError

    if args.list_profiles:
        return _list_profiles(args.profile_files)
    if not (args.snn or args.cnn or args.nir or args.model):
        raise ConfigError(
            "give at least one of --snn CKPT, --nir FILE, --model MODULE:FACTORY, --cnn CKPT "
            "(or --list-profiles)"
        )
    source = chosen_source(args, ("snn", "nir", "model"), required=False)
    if bool(args.data) == bool(args.random):
        raise ConfigError("give exactly one of --data DIR or --random N")
    if args.n < 1 or args.batch_size < 1 or (args.random is not None and args.random < 1):
        raise ConfigError("--n, --batch-size and --random must be positive")

    from energy.plot import plot_report
    from energy.profiles import load_profiles
    from energy.render import render, render_table
    from energy.report import energy_report

    catalog = load_profiles(args.profile_files)
    catalog.select(args.profiles)  # fail early on unknown profile names
    if args.data:  # load the dataset once: unreadable images are skipped (one warning) up front
        from neurall_neuro.data.layouts import load_cohort

        args.cohort = load_cohort(args.data, args.layout, bad_images="skip")
    snn = None
    if source == "snn":
        snn = _checkpoint_source(args.snn, args)
    elif source == "nir":
        snn = _graph_source(args.nir, args)
    elif source == "model":
        snn = _user_model_source(args)
    report = energy_report(
        snn,
        _checkpoint_source(args.cnn, args) if args.cnn else None,
        catalog=catalog,
        profiles=args.profiles,
        batch_size=args.batch_size,
        fold_pooling=args.view == "hardware",
        device=args.device,
        data=_data_description(args, events=bool(getattr(snn, "events", False))),
    )
    if args.plot:
        path = plot_report(report, args.plot)
        print(f"plot written to {path}", file=sys.stderr)
    if args.fmt == "table" and not args.output:
        render_table(report)
        return 0
    text = render(report, args.fmt)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0

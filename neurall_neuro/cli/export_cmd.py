"""``neurall export``: a model to a NIR graph or a quantised lava-dl netx file.

    neurall export --checkpoint CKPT --format nir --out model.nir
    neurall export --checkpoint CKPT --out model.nir --calibration-data DIR --n 256
    neurall export --model mynets.tiny:build --weights tiny.pt --input-shape 3,64,64 --out m.nir
    neurall export --nir theirs.nir --dt snntorch --format netx --timesteps 8 --out m.net

Checkpoints are self-describing (model, config, class names, preprocessing), so no model
flags are needed. SE blocks in ``analog`` mode need ``--calibration-data`` (a dataset
folder in any supported layout): their gates are replaced by the expectation over ``--n``
of its images and folded into the next layer; the command then prints the accuracy and
agreement of the folded graph next to the dynamic model on those images.

Your own model: ``--model MODULE:FACTORY`` (a function or class returning an nn.Module,
imported from the current directory or sys.path), ``--weights`` (its state dict) and
``--input-shape C,H,W``; it is exported with ``to_nir(model, example_input=zeros(1, C, H,
W))``. A NIR file from elsewhere: ``--nir FILE`` with ``--dt`` naming the time step it
was written for (seconds or a convention: neurall, norse, snntorch, sinabs, rockpool,
lava-dl); the written graph stores that dt in its metadata. ``--format netx`` quantises
either for Loihi (``--timesteps T`` unless the graph stores T).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from neurall_neuro.cli.model_options import add_nir_arguments, add_user_model_arguments

FORMATS = ("nir", "netx")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to NIR or to a quantised lava-dl netx file (Loihi)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="checkpoint file (.pt); or give --nir or --model"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="nir", help="output format (default: nir)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output file")
    parser.add_argument(
        "--calibration-data",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset folder for calibrating analog SE gates (needed for se_mode=analog)",
    )
    parser.add_argument(
        "--n", type=int, default=256, help="number of calibration images (default: 256)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing calibration images")
    parser.add_argument(
        "--se-broadcast",
        choices=("dense", "grouped"),
        default="dense",
        help="per-channel maps (spiking SE gate broadcast) as an equivalent groups=1 Conv2d "
        "(default: portable, read by stock nir.read and snnTorch) or a compact grouped one",
    )
    own = parser.add_argument_group("your own model or NIR file (instead of --checkpoint)")
    add_nir_arguments(own, "a NIR graph file to re-export (with --dt) or quantise (--format netx)")
    add_user_model_arguments(own)
    parser.set_defaults(func=run)


def load_calibration(root: Path, checkpoint: Any, n: int, seed: int) -> tuple[Any, Any]:
    """``(images [N, C, S, S], labels [N] or None)``: ``n`` seeded-random images of the
    dataset at ``root``, preprocessed as the checkpoint was trained. Labels are given
    when the dataset's classes map onto the checkpoint's."""
    from neurall_neuro.data.sampling import sample_images

    batch = sample_images(
        root, checkpoint.preprocessing, n=n, seed=seed, class_names=checkpoint.class_names
    )
    return batch.images, batch.labels


def _export_netx(args: argparse.Namespace, checkpoint: Any, images: Any, labels: Any) -> int:
    """``--format netx``: NIR graph -> Loihi quantisation -> lava-dl netx HDF5, with the
    per-layer quantisation report and, given labelled calibration images, the accuracy of
    the fixed-point network (bit-exact Loihi emulator) next to the float model."""
    from conversion.nir_export import to_nir
    from conversion.se_folding import analog_se_blocks
    from hw_targets.loihi.netx import write_netx
    from hw_targets.loihi.quantize import quantize_graph

    graph = to_nir(
        checkpoint.model,
        calibration=images if analog_se_blocks(checkpoint.model) else None,
        class_names=checkpoint.class_names,
    )
    timesteps = int(checkpoint.config["timesteps"])
    network = quantize_graph(graph, timesteps=timesteps, calibration=images, netx_compatible=True)
    path = write_netx(network, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB), T = {timesteps} steps")
    print("quantisation report (per layer):")
    for line in network.report:
        print(f"  {line}")
    if labels is not None:
        from hw_targets.quantization_report import quantization_accuracy

        result = quantization_accuracy(checkpoint.model, network, images, labels, timesteps)
        print(f"  {result} (on the calibration images)")
    else:
        print("  (give --calibration-data with labelled images for the quantised accuracy)")
    return 0


def _print_summary(out: Path, graph: Any, model: str) -> None:
    """Size, nodes, parameters, dt, T, readout and I/O shapes of the graph written to ``out``."""
    from conversion.nir_export import graph_summary

    summary = graph_summary(graph)
    size = out.stat().st_size
    types = ", ".join(f"{count} {kind}" for kind, count in summary["nodes_by_type"].items())
    print(f"wrote {out} ({size / 1024:.1f} KiB)")
    print(f"  model       {model}")
    print(f"  nodes       {summary['nodes']} ({types}), {summary['edges']} edges")
    print(
        f"  parameters  {summary['parameters']:,} synaptic values, {summary['neurons']:,} neurons"
    )
    print(
        f"  time        dt = {summary['dt']} s per step, T = {summary['timesteps']} steps, "
        f"readout: {summary['readout']}"
    )
    print(f"  input       {summary['inputs']}  output {summary['outputs']}")


def _graph_calibration(args: argparse.Namespace, graph: Any) -> Any:
    """``--calibration-data`` images for a graph without a checkpoint, preprocessed to the
    graph's ``(3, S, S)`` input (None without the flag)."""
    if args.calibration_data is None:
        return None
    from energy.sources import nir_input_shape
    from neurall_neuro.data.sampling import sample_images
    from neurall_neuro.errors import ConfigError

    shape = nir_input_shape(graph)
    if shape[0] != 3 or shape[1] != shape[2]:
        raise ConfigError(
            f"--calibration-data gives RGB images (3, S, S); the graph's input is {shape}"
        )
    return sample_images(args.calibration_data, {"size": shape[1]}, n=args.n, seed=args.seed).images


def _export_graph(args: argparse.Namespace, source: str) -> int:
    """``--nir FILE`` or ``--model``: the graph (with ``--dt`` stored), written as NIR, or
    quantised to a lava-dl netx file (``--timesteps`` unless the graph stores T)."""
    from conversion.dt_conventions import apply_dt
    from conversion.nir_io import graph_metadata, read_nir, write_nir
    from neurall_neuro.cli.model_options import (
        load_user_model_from_args,
        parsed_dt,
        user_model_graph,
    )

    if source == "nir":
        graph = apply_dt(read_nir(args.nir), parsed_dt(args))
        label = f"NIR file {args.nir}"
    else:
        user = load_user_model_from_args(args)
        graph = user_model_graph(user)
        weights = user.weights if user.weights is not None else "the factory's own parameters"
        label = f"{user.spec} (weights: {weights})"
    if args.timesteps is not None:
        graph.metadata = {**graph.metadata, "timesteps": int(args.timesteps)}
    images = _graph_calibration(args, graph)
    if args.format == "nir":
        write_nir(graph, args.out)
        _print_summary(args.out, graph, label)
        return 0
    from hw_targets.loihi.netx import write_netx
    from hw_targets.loihi.quantize import quantize_graph

    timesteps = graph_metadata(graph).get("timesteps")
    network = quantize_graph(graph, timesteps=timesteps, calibration=images, netx_compatible=True)
    path = write_netx(network, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB) from {label}, T = {timesteps}")
    print("quantisation report (per layer):")
    for line in network.report:
        print(f"  {line}")
    return 0


def run(args: argparse.Namespace) -> int:
    from conversion.nir_export import export_nir
    from conversion.se_folding import analog_se_blocks, folding_report
    from neurall_neuro.cli.model_options import chosen_source
    from neurall_neuro.errors import ConfigError
    from neurall_neuro.models.checkpoint import load_checkpoint

    source = chosen_source(args, ("checkpoint", "nir", "model"))
    if source != "checkpoint":
        return _export_graph(args, source)
    if args.timesteps is not None:
        raise ConfigError("--timesteps applies to --nir / --model; a checkpoint's T is its own")
    checkpoint = load_checkpoint(args.checkpoint)
    images = labels = None
    if args.calibration_data is not None:
        images, labels = load_calibration(args.calibration_data, checkpoint, args.n, args.seed)
    if args.format == "netx":
        return _export_netx(args, checkpoint, images, labels)
    graph = export_nir(
        checkpoint.model,
        args.out,
        calibration=images if analog_se_blocks(checkpoint.model) else None,
        class_names=checkpoint.class_names,
        se_broadcast=args.se_broadcast,
    )
    _print_summary(args.out, graph, f"{checkpoint.model_name} ({checkpoint.path})")
    if analog_se_blocks(checkpoint.model):
        if labels is not None:
            report = folding_report(checkpoint.model, graph, images, labels)
            print(f"  {report} (on the calibration images)")
        else:
            print("  (calibration classes do not match the checkpoint's: no folding report)")
    return 0

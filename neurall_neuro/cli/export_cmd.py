"""``neurall export``: a trained checkpoint to a NIR graph or a quantised lava-dl netx file.

    neurall export --checkpoint CKPT --format nir --out model.nir
    neurall export --checkpoint CKPT --out model.nir --calibration-data DIR --n 256

Checkpoints are self-describing (model, config, class names, preprocessing), so no model
flags are needed. SE blocks in ``analog`` mode need ``--calibration-data`` (a dataset
folder in any supported layout): their gates are replaced by the expectation over ``--n``
of its images and folded into the next layer; the command then prints the accuracy and
agreement of the folded graph next to the dynamic model on those images.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

FORMATS = ("nir", "netx")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to NIR or to a quantised lava-dl netx file (Loihi)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file (.pt)")
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
        choices=("grouped", "dense"),
        default="grouped",
        help="spiking SE gate broadcast as a grouped (default) or an equivalent dense Conv2d",
    )
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
    from conversion.loihi_quantize import quantize_graph
    from conversion.netx import write_netx
    from conversion.nir_export import to_nir
    from conversion.se_folding import analog_se_blocks

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


def run(args: argparse.Namespace) -> int:
    from conversion.nir_export import export_nir, graph_summary
    from conversion.se_folding import analog_se_blocks, folding_report
    from neurall_neuro.models.checkpoint import load_checkpoint

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
    summary = graph_summary(graph)
    size = args.out.stat().st_size
    types = ", ".join(f"{count} {kind}" for kind, count in summary["nodes_by_type"].items())
    print(f"wrote {args.out} ({size / 1024:.1f} KiB)")
    print(f"  model       {checkpoint.model_name} ({checkpoint.path})")
    print(f"  nodes       {summary['nodes']} ({types}), {summary['edges']} edges")
    print(
        f"  parameters  {summary['parameters']:,} synaptic values, {summary['neurons']:,} neurons"
    )
    print(
        f"  time        dt = {summary['dt']} s per step, T = {summary['timesteps']} steps, "
        f"readout: {summary['readout']}"
    )
    print(f"  input       {summary['inputs']}  output {summary['outputs']}")
    if analog_se_blocks(checkpoint.model):
        if labels is not None:
            report = folding_report(checkpoint.model, graph, images, labels)
            print(f"  {report} (on the calibration images)")
        else:
            print("  (calibration classes do not match the checkpoint's: no folding report)")
    return 0

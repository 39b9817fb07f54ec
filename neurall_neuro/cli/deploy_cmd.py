"""``neurall deploy``: run an SE-SNN checkpoint on several hardware targets and report parity."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="run a checkpoint on hardware targets (torch, loihi-emu, lava-sim) with a parity report",
        description=(
            "Export the checkpoint to NIR, run it on each target and compare with the Norse "
            "model: accuracy, prediction agreement, per-layer spike-count correlation and "
            "firing rates, latency and throughput. Writes parity.json and parity.png."
        ),
    )
    parser.add_argument("--checkpoint", help="SE-SNN checkpoint (.pt)")
    parser.add_argument("--data", help="dataset folder (any supported layout)")
    parser.add_argument(
        "--targets",
        default="torch,loihi-emu,lava-sim",
        help="comma-separated targets (see --list-targets); default: torch,loihi-emu,lava-sim",
    )
    parser.add_argument(
        "--list-targets", action="store_true", help="list the registered targets and exit"
    )
    parser.add_argument("--n", type=int, default=32, help="images to run (default 32)")
    parser.add_argument(
        "--lava-n",
        type=int,
        default=4,
        help="images for lava-sim, which simulates in Python processes and is slow (default 4)",
    )
    parser.add_argument("--lava-precision", choices=("fixed", "float"), default="fixed")
    parser.add_argument(
        "--device", default="cpu", help="device for torch and loihi-emu (cpu, cuda)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the images")
    parser.add_argument(
        "--out", default="deploy-report", help="output folder (default deploy-report)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conversion.nir_export import to_nir
    from hw_targets.parity import parity_report, plot_report, render_table
    from hw_targets.registry import list_targets
    from neurall_neuro.data.sampling import sample_images
    from neurall_neuro.errors import ConfigError, DataError
    from neurall_neuro.models.checkpoint import load_checkpoint

    if args.list_targets:
        from hw_targets.registry import get_target

        for name in list_targets():
            print(f"{name:<10} {get_target(name).description}")
        return 0
    if not args.checkpoint or not args.data:
        raise ConfigError(
            "neurall deploy needs --checkpoint CKPT and --data DIR (or --list-targets)"
        )
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(list_targets()))
    if unknown:
        raise ConfigError(
            f"unknown target(s) {', '.join(unknown)}; valid options: {', '.join(list_targets())}"
        )
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
    options = {
        "torch": {"device": args.device},
        "loihi-emu": {"device": args.device},
        "lava-sim": {"precision": args.lava_precision},
    }
    report = parity_report(
        ckpt.model,
        graph,
        batch.images,
        batch.labels,
        targets,
        timesteps=int(ckpt.config["timesteps"]),
        target_options={t: options.get(t, {}) for t in targets},
        max_samples={"lava-sim": args.lava_n},
        source={"checkpoint": str(args.checkpoint), "data": str(args.data), "seed": args.seed},
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(report.to_json())
    plot = plot_report(report, out / "parity.png")
    print(render_table(report))
    print(f"wrote {out / 'parity.json'} and {plot}")
    return 0 if all(t.status != "failed" for t in report.targets) else 1

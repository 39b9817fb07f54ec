"""``neurall demo``: the main job end to end, written to one run directory with ``report.md``.

Generates the built-in cohort (or loads ``--data DIR``), checks it for duplicates, splits it
by patient, trains the SE-SNN and the SE-CNN (and the no-SE ablations at a reduced
budget), evaluates them with bootstrap confidence intervals and robustness checks,
explains a few images, exports the SE-SNN to NIR and netx, deploys it on the ``torch``,
``loihi-emu`` and ``lava-sim`` targets with a parity report, runs the energy report and a
quick benchmark. Same seed, same machine: same numbers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neurall_neuro.devices import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole study (data -> train -> evaluate -> export -> deploy -> energy)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run directory (default runs/demo-<time>)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings: a 2-3 minute run")
    parser.add_argument(
        "--data",
        default=None,
        help="use this dataset folder (any supported layout) instead of generating one",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    add_device_argument(parser)
    parser.add_argument("--epochs", type=int, default=None, help="override the main models' epochs")
    parser.add_argument(
        "--n-per-class", type=int, default=None, help="override the generated images per class"
    )
    parser.add_argument("--size", type=int, default=None, help="override the image size")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurall_neuro.cli.demo_pipeline import DemoContext, run_pipeline
    from neurall_neuro.cli.demo_report import write_report
    from neurall_neuro.cli.demo_stages import (
        FULL,
        QUICK,
        STAGES,
        dump_settings,
        settings_with,
    )

    settings = settings_with(
        QUICK if args.quick else FULL,
        seed=args.seed,
        data=args.data,
        device=args.device,  # resolved by the --device type ("auto" -> cuda or cpu)
        epochs=args.epochs,
        n_per_class=args.n_per_class,
        size=args.size,
    )
    run_dir = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "settings.json").write_text(dump_settings(settings))
    ctx = DemoContext(run_dir=run_dir, settings=settings)
    header = f"neurall demo{' --quick' if args.quick else ''} (seed {settings.seed}, device {settings.device})"
    print(f"neurall demo: writing to {run_dir}", flush=True)
    start = time.monotonic()
    run_pipeline(list(STAGES), ctx, header, write_report)
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s; report: {run_dir / 'report.md'}")
    return 0

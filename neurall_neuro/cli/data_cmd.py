"""``neurall data``: generate, inspect, scan, de-duplicate and split datasets.

Sub-commands::

    neurall data layouts                       supported dataset layouts
    neurall data synth --out DIR [...]         write the generated (synthetic) cohort
    neurall data info DIR                      layout, class counts, patients
    neurall data scan DIR [--strict]           find unreadable / corrupt images
    neurall data check DIR [DIR2 ...]          near-duplicates within/across cohorts/splits
    neurall data split DIR --out FILE          grouped, stratified train/val/test split

Imports of the data modules (and through them numpy, Pillow, OpenCV) happen inside
the handlers so that ``neurall --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its sub-commands."""
    parser = subparsers.add_parser(
        "data",
        help="generate, inspect, scan, de-duplicate and split datasets",
        description="Dataset tools: layouts, synthetic cohort, info, scan, duplicate check, split.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _no_subcommand(parser))

    p = sub.add_parser("layouts", help="list supported dataset layouts")
    p.set_defaults(func=cmd_layouts)

    p = sub.add_parser(
        "synth",
        help="write the generated 4-class cohort (synthetic, no clinical meaning)",
        description="Write procedurally generated single-cell smear images (synthetic; "
        "for tests and demos only) as OUT/<Class>/*.png plus OUT/manifest.csv.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--n-per-class", type=int, default=200, help="images per class (200)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (0)")
    p.add_argument("--patients", type=int, default=8, help="synthetic patients per class (8)")
    p.add_argument(
        "--difficulty", default="realistic", help="easy, realistic, hard, or a positive factor"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a previous cohort in OUT")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("info", help="layout, class counts and patients of a dataset folder")
    p.add_argument("dir", type=Path, help="dataset folder or manifest.csv")
    p.add_argument("--layout", help="layout name (default: detected)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("scan", help="decode every image and report unusable files")
    p.add_argument("dir", type=Path, help="dataset folder or manifest.csv")
    p.add_argument("--layout", help="layout name (default: detected)")
    p.add_argument("--strict", action="store_true", help="exit with an error if any file is bad")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser(
        "check", help="find near-duplicate images within and across cohorts and split parts"
    )
    p.add_argument(
        "dirs", nargs="+", type=Path, metavar="DIR",
        help="dataset folders (or manifest.csv files); pairs are reported within and across them",
    )  # fmt: skip
    p.add_argument("--split-file", type=Path, help="split JSON of the first DIR to check for leaks")
    p.add_argument("--json", type=Path, help="write the full report (all pairs) as JSON")
    p.add_argument("--examples", type=int, default=5, help="example pairs shown per scope (5)")
    p.add_argument("--threshold", type=int, help="candidate hash distance in bits of 128")
    p.add_argument(
        "--min-similarity", type=float, help="confirmation threshold (detail correlation)"
    )
    p.add_argument("--fail-on-duplicates", action="store_true", help="exit 1 if any pair is found")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("split", help="make a grouped, class-stratified train/val/test split")
    p.add_argument("dir", type=Path, help="dataset folder or manifest.csv to split")
    p.add_argument("--out", required=True, type=Path, help="split JSON to write")
    p.add_argument("--layout", help="layout name (default: detected)")
    p.add_argument("--val", type=float, default=0.15, help="validation fraction (0.15)")
    p.add_argument("--test", type=float, default=0.15, help="test fraction (0.15)")
    p.add_argument("--seed", type=int, default=0, help="seed of the group assignment (0)")
    p.add_argument(
        "--group-by",
        choices=("auto", "patient", "duplicates", "patient+duplicates", "none"),
        default="auto",
        help="auto: patient ids when present, else near-duplicate clusters",
    )
    p.set_defaults(func=cmd_split)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _load(path: Path, layout: str | None = None, bad_images: str = "keep"):
    from neurall_neuro.data.layouts import load_cohort

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = load_cohort(path, layout, bad_images=bad_images)
    for w in caught:  # every one (not once per source line); neurall's main prints each as one line
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return cohort


def cmd_layouts(args: argparse.Namespace) -> int:
    from neurall_neuro.data.layouts import list_layouts

    for lay in list_layouts():
        print(f"{lay.name:<20} {lay.description}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    import time

    from neurall_neuro.data.synth import generate_cohort

    try:
        difficulty: str | float = float(args.difficulty)
    except ValueError:
        difficulty = args.difficulty
    start = time.perf_counter()
    cohort = generate_cohort(
        args.out,
        n_per_class=args.n_per_class,
        size=args.size,
        seed=args.seed,
        n_patients_per_class=args.patients,
        difficulty=difficulty,
        overwrite=args.overwrite,
    )
    took = time.perf_counter() - start
    print(f"wrote {len(cohort)} synthetic images to {args.out} in {took:.1f} s")
    print("  " + ", ".join(f"{k} {v}" for k, v in cohort.counts().items()))
    print("  (procedurally generated; no clinical meaning)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    cohort = _load(args.dir, args.layout)
    print(f"folder:  {cohort.root}")
    print(f"layout:  {cohort.layout}")
    print(f"images:  {len(cohort)}")
    patients = cohort.patients()
    for name, n in cohort.counts().items():
        pat = f", {len(patients[name])} patients" if cohort.has_patient_ids else ""
        print(f"  {name:<10} {n:>6} images{pat}")
    if not cohort.has_patient_ids:
        print("patients: none in this layout (use `neurall data check` to group near-duplicates)")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from neurall_neuro.data.scan import scan_images

    cohort = _load(args.dir, args.layout)
    report = scan_images(cohort, strict=False)
    print(report.summary())
    for path, reason in report.bad:
        print(f"  bad: {path}: {reason}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    if args.strict and report.bad:
        scan_images(cohort, strict=True)  # raises BadImageError listing the files
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from neurall_neuro.data.dedup import check_duplicates
    from neurall_neuro.data.splits import Split

    cohorts = [_load(d) for d in args.dirs]
    split = Split.load(args.split_file) if args.split_file else None
    report = check_duplicates(
        cohorts, split=split, threshold=args.threshold, min_similarity=args.min_similarity
    )
    print(report.summary(examples=args.examples))
    if args.json:
        report.save_json(args.json)
        print(f"report written to {args.json}")
    return 1 if args.fail_on_duplicates and report.n_pairs else 0


def cmd_split(args: argparse.Namespace) -> int:
    from neurall_neuro.data.splits import groups_from_duplicates, make_split

    cohort = _load(args.dir, args.layout, bad_images="skip")  # split usable images only
    mode = args.group_by
    if mode == "auto":
        mode = "patient" if cohort.has_patient_ids else "duplicates"
    groups = None
    if mode == "patient" and not cohort.has_patient_ids:
        from neurall_neuro.errors import ConfigError

        raise ConfigError(
            f"{args.dir} has no patient ids (layout {cohort.layout}); "
            "use --group-by duplicates, none or auto"
        )
    if mode == "duplicates":
        groups = groups_from_duplicates(cohort)
    elif mode == "patient+duplicates":
        groups = groups_from_duplicates(cohort, base_groups=cohort.groups)
    elif mode == "none":
        groups = [f"img-{i}" for i in range(len(cohort))]
    split = make_split(
        cohort,
        val_fraction=args.val,
        test_fraction=args.test,
        seed=args.seed,
        groups=groups,
        group_by=mode,
    )
    split.save(args.out)
    print(f"split ({mode}, seed {args.seed}) written to {args.out}")
    print(split.summary(cohort))
    return 0

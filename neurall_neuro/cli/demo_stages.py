"""The stages of ``neurall demo``: the whole study, from data to energy, on one cohort.

Every stage reads what earlier stages left in ``ctx.values`` and returns its JSON and a
Markdown section for ``report.md``. The CLI layer may import the ``conversion``,
``hw_targets`` and ``energy`` packages (``neurall_neuro`` itself never does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from neurall_neuro.cli.demo_pipeline import DemoContext, Stage, StageOutput

#: Models trained by the demo: (registry name, role, budget: "main" or "ablation").
DEMO_MODELS: tuple[tuple[str, str, str], ...] = (
    ("neurallnet", "SE-SNN", "main"),
    ("se-cnn", "SE-CNN", "main"),
    ("neurallnet-nose", "SNN, no SE (ablation)", "ablation"),
    ("se-cnn-nose", "CNN, no SE (ablation)", "ablation"),
)


@dataclass(frozen=True)
class DemoSettings:
    """Budgets of one demo run (``FULL`` for ``make demo``, ``QUICK`` for ``--quick``)."""

    n_per_class: int
    size: int
    patients_per_class: int
    timesteps: int
    snn_channels: tuple[int, ...] | None
    cnn_channels: tuple[int, ...] | None
    epochs: int
    ablation_epochs: int
    lr: float
    batch_size: int
    bootstrap: int
    explain_n: int
    parity_n: int
    lava_n: int
    energy_n: int
    bench_repeats: int
    seed: int = 0
    data: str | None = None
    device: str = "cpu"


FULL = DemoSettings(
    n_per_class=160,
    size=64,
    patients_per_class=8,
    timesteps=4,
    snn_channels=None,
    cnn_channels=None,
    epochs=12,
    ablation_epochs=6,
    lr=1e-3,
    batch_size=32,
    bootstrap=1000,
    explain_n=4,
    parity_n=32,
    lava_n=1,
    energy_n=64,
    bench_repeats=10,
)

QUICK = DemoSettings(
    n_per_class=32,
    size=32,
    patients_per_class=6,
    timesteps=3,
    snn_channels=(8, 16, 16, 16),
    cnn_channels=(8, 16, 16, 16),
    epochs=8,
    ablation_epochs=1,
    lr=3e-3,
    batch_size=16,
    bootstrap=200,
    explain_n=2,
    parity_n=8,
    lava_n=1,
    energy_n=8,
    bench_repeats=3,
)


def settings_with(base: DemoSettings, **overrides: Any) -> DemoSettings:
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _fmt_ci(value: float, ci: list[float] | tuple[float, float]) -> str:
    return f"{100 * value:.1f} % ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"


def _rel(ctx: DemoContext, path: Path | str) -> str:
    return str(Path(path).resolve().relative_to(ctx.run_dir.resolve()))


# ----------------------------------------------------------------------------- data
def stage_data(ctx: DemoContext) -> StageOutput:
    from neurall_neuro.data.dedup import check_duplicates
    from neurall_neuro.data.layouts import load_cohort
    from neurall_neuro.data.scan import scan_images
    from neurall_neuro.data.synth import generate_cohort

    s = ctx.settings
    if s.data is None:
        cohort = generate_cohort(
            ctx.path("data", "cohort"),
            n_per_class=s.n_per_class,
            size=s.size,
            seed=s.seed,
            n_patients_per_class=s.patients_per_class,
            overwrite=True,
        )
        source = "generated (procedural cells; NOT clinical evidence)"
    else:
        cohort = load_cohort(s.data)
        source = f"{s.data} (layout {cohort.layout})"
    scan = scan_images(cohort)
    if scan.bad:
        keep = {r.path for r in scan.ok}
        cohort = cohort.subset([i for i, r in enumerate(cohort.records) if r.path in keep])
    dedup = check_duplicates([cohort])
    dedup.save_json(ctx.path("data", "dedup.json"))
    ctx.values["cohort"] = cohort
    counts = cohort.counts()
    patients = len({r.patient_id for r in cohort.records if r.patient_id is not None})
    within = sum(len(v) for v in dedup.within.values())
    md = [
        f"Source: {source}.",
        "",
        "| class | images |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in counts.items()],
        "",
        f"Patients: {patients or 'no patient ids'}. Scan: {scan.summary()}.",
        f"Near-duplicate pairs within the cohort (perceptual hash): {within}.",
    ]
    return StageOutput(
        {
            "source": source,
            "layout": cohort.layout,
            "class_counts": counts,
            "patients": patients,
            "scan": scan.to_dict(),
            "dedup": dedup.counts(),
        },
        "\n".join(md),
    )


def stage_split(ctx: DemoContext) -> StageOutput:
    from neurall_neuro.data.dedup import check_duplicates
    from neurall_neuro.data.splits import groups_from_duplicates, make_split

    cohort = ctx.values["cohort"]
    has_patients = any(r.patient_id for r in cohort.records)
    groups = None if has_patients else groups_from_duplicates(cohort)
    split = make_split(cohort, seed=ctx.settings.seed, groups=groups)
    path = split.save(ctx.path("data", "split.json"))
    leaks = check_duplicates([cohort], split=split)
    n_leaks = len(leaks.across_splits or [])
    ctx.values["split_file"] = path
    sizes = {k: len(v) for k, v in split.parts().items()}
    md = (
        f"Grouped by {split.group_by} (no group in two parts, checked): "
        f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']} images. "
        f"Near-duplicate pairs across parts: {n_leaks}."
    )
    return StageOutput(
        {
            "group_by": split.group_by,
            "sizes": sizes,
            "cross_split_duplicates": n_leaks,
            "file": _rel(ctx, path),
        },
        md,
    )


# ------------------------------------------------------------------------- training
def _model_options(s: DemoSettings, name: str) -> dict[str, Any]:
    channels = s.snn_channels if name.startswith("neurallnet") else s.cnn_channels
    return {"channels": list(channels)} if channels else {}


def stage_train(ctx: DemoContext) -> StageOutput:
    from neurall_neuro.training.config import TrainConfig
    from neurall_neuro.training.trainer import train

    s = ctx.settings
    runs: dict[str, Any] = {}
    rows = []
    for name, role, budget in DEMO_MODELS:
        config = TrainConfig(
            model=name,
            data=str(ctx.values["cohort"].root),
            out=str(ctx.path("runs", name)),
            split_file=str(ctx.values["split_file"]),
            size=s.size,
            timesteps=s.timesteps if name.startswith("neurallnet") else None,
            model_options=_model_options(s, name),
            epochs=s.epochs if budget == "main" else s.ablation_epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            scheduler="cosine",
            patience=0,
            seed=s.seed,
            device=s.device,
            bootstrap=s.bootstrap,
        )
        result = train(config)
        runs[name] = result
        test = result.test_metrics or {}
        rows.append(
            {
                "model": name,
                "role": role,
                "parameters": result.parameters,
                "epochs": result.epochs_run,
                "best_epoch": result.best_epoch,
                "train_time_s": round(result.train_time_s, 1),
                "train_images_per_s": round(result.train_images_per_s, 1),
                "best_val_acc": result.best_val_acc,
                "test_accuracy": test.get("accuracy"),
                "test_accuracy_ci95": test.get("accuracy_ci95"),
                "test_balanced_accuracy": test.get("balanced_accuracy"),
                "test_macro_f1": test.get("macro_f1"),
                "checkpoint": _rel(ctx, result.best_checkpoint),
                "curves": _rel(ctx, result.curves_png) if result.curves_png else None,
            }
        )
    ctx.values["runs"] = runs
    md = [
        "| model | role | params | epochs | train time | test accuracy (95 % CI) | balanced acc. | macro-F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = (
            _fmt_ci(r["test_accuracy"], r["test_accuracy_ci95"])
            if r["test_accuracy"] is not None
            else "–"
        )
        md.append(
            f"| {r['model']} | {r['role']} | {r['parameters']:,} | {r['epochs']} | {r['train_time_s']:.0f} s | "
            f"{acc} | {100 * (r['test_balanced_accuracy'] or 0):.1f} % | {100 * (r['test_macro_f1'] or 0):.1f} % |"
        )
    snn, nose = rows[0], rows[2]
    if snn["test_accuracy"] is not None and nose["test_accuracy"] is not None:
        md.append("")
        md.append(
            f"SE vs no-SE (SNN): {100 * (snn['test_accuracy'] - nose['test_accuracy']):+.1f} points "
            f"(the ablation trained for {nose['epochs']} instead of {snn['epochs']} epochs)."
        )
    md.append("")
    md += [f"![{r['model']} training curves]({r['curves']})" for r in rows[:2] if r["curves"]]
    return StageOutput({"models": rows}, "\n".join(md))


def stage_evaluate(ctx: DemoContext) -> StageOutput:
    from neurall_neuro.evaluation.evaluator import evaluate

    s = ctx.settings
    results = {}
    md = []
    for name in ("neurallnet", "se-cnn"):
        run = ctx.values["runs"][name]
        out = ctx.path("evaluation", name)
        result = evaluate(
            run.best_checkpoint,
            ctx.values["cohort"],
            out,
            split_file=ctx.values["split_file"],
            split="test",
            robustness=("grayscale", "stain-jitter"),
            bootstrap=s.bootstrap,
            seed=s.seed,
            device=s.device,
            progress=False,
        )
        results[name] = result.to_dict()
        md.append(f"**{name}** — {result.summary()}".replace("\n", "  \n"))
        cm = result.files.get("confusion_matrix_png")
        if cm:
            md.append(f"\n![{name} confusion matrix]({_rel(ctx, cm)})\n")
    return StageOutput(results, "\n".join(md))


def _test_batch(ctx: DemoContext, preprocessing: dict[str, Any], n: int):
    from neurall_neuro.data.sampling import sample_images
    from neurall_neuro.data.splits import Split

    cohort = ctx.values["cohort"]
    test = Split.load(ctx.values["split_file"]).apply(cohort)["test"]
    return sample_images(test, preprocessing, n=min(n, len(test.records)), seed=ctx.settings.seed)


def stage_explain(ctx: DemoContext) -> StageOutput:
    from neurall_neuro.explain.runner import explain_images
    from neurall_neuro.models.checkpoint import load_checkpoint

    s = ctx.settings
    files = {}
    md = []
    for name in ("neurallnet", "se-cnn"):
        ckpt = load_checkpoint(ctx.values["runs"][name].best_checkpoint)
        batch = _test_batch(ctx, ckpt.preprocessing, s.explain_n)
        result = explain_images(
            ckpt,
            batch.images,
            ctx.path("explain", name),
            names=[r.path.stem for r in batch.records],
            labels=batch.labels.tolist(),
            method="all",
        )
        files[name] = [_rel(ctx, f) for f in result.files]
        md.append(f"**{name}** ({', '.join(result.explanations)}):\n")
        md += [f"![{Path(f).stem}]({f})" for f in files[name][: 2 * s.explain_n]]
        md.append("")
    return StageOutput({"files": files}, "\n".join(md))


# ----------------------------------------------------------------- export & deploy
def stage_export(ctx: DemoContext) -> StageOutput:
    from conversion.nir_export import export_nir, graph_summary
    from hw_targets.loihi.netx import write_netx
    from hw_targets.loihi.quantize import quantize_graph
    from hw_targets.quantization_report import quantization_accuracy
    from neurall_neuro.errors import ConversionError
    from neurall_neuro.models.checkpoint import load_checkpoint

    s = ctx.settings
    ckpt = load_checkpoint(ctx.values["runs"]["neurallnet"].best_checkpoint)
    nir_path = ctx.path("export", "neurallnet.nir")
    graph = export_nir(ckpt.model, nir_path, class_names=ckpt.class_names)
    summary = graph_summary(graph)
    ctx.values["snn_checkpoint"] = ckpt
    ctx.values["snn_graph"] = graph
    data: dict[str, Any] = {
        "nir": {"file": _rel(ctx, nir_path), "bytes": nir_path.stat().st_size, "summary": summary}
    }
    md = [
        f"NIR: `{_rel(ctx, nir_path)}` ({nir_path.stat().st_size / 1024:.0f} KiB), "
        f"{summary['nodes']} nodes ({', '.join(f'{v} {k}' for k, v in summary['nodes_by_type'].items())}), "
        f"dt = {summary['dt']} s, T = {summary['timesteps']}.",
    ]
    try:
        write_netx(
            quantize_graph(graph, timesteps=s.timesteps, netx_compatible=True),
            ctx.path("export", "neurallnet.net"),
        )
    except ConversionError as exc:
        data["netx_se_snn"] = {"exported": False, "reason": str(exc)}
        md.append(f"\nnetx (SE-SNN): not expressible — {exc}")
    # The no-SE ablation is a chain: it goes to netx, with its quantisation report.
    nose = load_checkpoint(ctx.values["runs"]["neurallnet-nose"].best_checkpoint)
    batch = _test_batch(ctx, nose.preprocessing, s.parity_n)
    from conversion.nir_export import to_nir

    network = quantize_graph(
        to_nir(nose.model, class_names=nose.class_names),
        timesteps=s.timesteps,
        calibration=batch.images,
        netx_compatible=True,
    )
    netx_path = write_netx(network, ctx.path("export", "neurallnet-nose.net"))
    acc = quantization_accuracy(nose.model, network, batch.images, batch.labels, s.timesteps)
    data["netx_nose"] = {
        "file": _rel(ctx, netx_path),
        "layers": [str(r) for r in network.report],
        **acc.to_dict(),
    }
    md += [
        f"\nnetx (no-SE ablation, a chain): `{_rel(ctx, netx_path)}`; {acc} on test images.",
        "",
        "```",
        *[str(r) for r in network.report],
        "```",
    ]
    return StageOutput(data, "\n".join(md))


def stage_deploy(ctx: DemoContext) -> StageOutput:
    from hw_targets.parity import parity_report, plot_report, render_table

    s = ctx.settings
    ckpt = ctx.values["snn_checkpoint"]
    batch = _test_batch(ctx, ckpt.preprocessing, s.parity_n)
    report = parity_report(
        ckpt.model,
        ctx.values["snn_graph"],
        batch.images,
        batch.labels,
        ["torch", "loihi-emu", "lava-sim"],
        timesteps=s.timesteps,
        target_options={"torch": {"device": s.device}, "loihi-emu": {"device": s.device}},
        max_samples={"lava-sim": s.lava_n},
    )
    plot = plot_report(report, ctx.path("deploy", "parity.png"))
    table = render_table(report)
    print(table)
    md = ["```", table, "```", "", f"![parity]({_rel(ctx, plot)})"]
    return StageOutput(report.to_dict(), "\n".join(md))


def stage_energy(ctx: DemoContext) -> StageOutput:
    from energy.plot import plot_report
    from energy.render import to_markdown
    from energy.report import energy_report
    from neurall_neuro.models.checkpoint import load_checkpoint

    s = ctx.settings
    snn = ctx.values["snn_checkpoint"]
    cnn = load_checkpoint(ctx.values["runs"]["se-cnn"].best_checkpoint)
    batch = _test_batch(ctx, snn.preprocessing, s.energy_n)
    report = energy_report(
        snn.model, cnn.model, batch.images, data=f"{len(batch.records)} test images"
    )
    plot = plot_report(report, ctx.path("energy", "energy.png"))
    md = to_markdown(report) + f"\n\n![energy]({_rel(ctx, plot)})"
    return StageOutput(report.to_dict(), md)


def stage_benchmark(ctx: DemoContext) -> StageOutput:
    from neurall_neuro.cli.quick_bench import quick_benchmark

    s = ctx.settings
    cnn = ctx.values["runs"]["se-cnn"].best_checkpoint
    result = quick_benchmark(ctx.values["snn_checkpoint"].path, cnn, repeats=s.bench_repeats)
    return StageOutput(result.to_dict(), result.to_markdown())


STAGES: tuple[Stage, ...] = (
    Stage("data", "Cohort: generate / load, scan, duplicate check", stage_data),
    Stage("split", "Patient-grouped split", stage_split),
    Stage("train", "Training (SE-SNN, SE-CNN, no-SE ablations)", stage_train),
    Stage("evaluate", "Evaluation with bootstrap CIs and robustness", stage_evaluate),
    Stage("explain", "Explanations (Grad-CAM, SAM)", stage_explain),
    Stage("export", "Export to NIR and netx (quantisation report)", stage_export),
    Stage("deploy", "Deployment parity: torch, loihi-emu, lava-sim", stage_deploy),
    Stage("energy", "Energy report (SynOps vs MACs)", stage_energy),
    Stage("benchmark", "Quick benchmark", stage_benchmark),
)


def dump_settings(settings: DemoSettings) -> str:
    return json.dumps(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
        indent=2,
    )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"

"""Print the reference zoo's table (issue 15, point 6) with measured values.

Runs every model of ``tests/zoo_models.py`` (builders and measurements shared with
``tests/zoo/test_zoo.py``) through every column and prints one markdown row per model::

    .venv/bin/python scripts/zoo_table.py            # with Lava (lava-nc installed)
    .venv/bin/python scripts/zoo_table.py --no-lava  # without the Lava column

Columns: the NIR export; stock ``nir.read``; snnTorch 1.0.0's ``import_from_nir`` (share
of samples whose mean output equals our torch target's, or the node types it lacks);
torch target vs the model's own forward (mismatching spikes over the spiking layers);
loihi-emu vs lava-sim on one sample (every layer); float (torch) vs fixed (loihi-emu):
prediction / output agreement and the per-layer spike-count correlation; the energy
report (SynOps and neuron updates per sample, and whether the first spike-driven layer's
SynOps equal the brute-force count).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))  # appended: the tests folder must not shadow the packages

import zoo_models as zoo  # noqa: E402

HEADER = (
    "zoo model",
    "export",
    "stock nir.read",
    "snnTorch import",
    "torch == reference",
    "loihi-emu == Lava",
    "float vs fixed agreement",
    "energy counted",
)


def _cell(measure: Callable[[], str]) -> str:
    """A column's text, or the error that stopped it (type and first line)."""
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - the table reports every failure in its cell
        traceback.print_exc(file=sys.stderr)
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"


def snntorch_cell(entry: zoo.ZooModel, graph: nir.NIRGraph) -> str:
    missing = zoo.unsupported_by_snntorch(graph)
    if missing:
        return "skipped: no " + ", ".join(missing)
    failure = zoo.SNNTORCH_IMPORT_FAILS.get(entry.name)
    expected: tuple[type[Exception], ...] = (failure.error,) if failure else ()
    try:
        agreement, activity = zoo.snntorch_vs_runtime(entry, graph)
    except expected as exc:
        return f"fails ({type(exc).__name__}: snnTorch cannot re-import its AvgPool2d)"
    return f"{100 * agreement:.1f} % equal outputs (mean output {activity:.3f})"


def torch_cell(entry: zoo.ZooModel, model: Any, graph: nir.NIRGraph) -> str:
    mismatches = zoo.torch_vs_reference(entry, model, graph)
    total = sum(mismatches.values())
    verdict = "identical" if total == 0 else f"{total} mismatching spikes"
    return f"{verdict} ({len(mismatches)} spiking layers)"


def lava_cell(entry: zoo.ZooModel, graph: nir.NIRGraph) -> str:
    layers = zoo.lava_vs_emu(entry, graph)
    wrong = sum(m for m, _ in layers.values())
    spikes = sum(s for _, s in layers.values())
    verdict = "identical" if wrong == 0 else f"{wrong} mismatching spikes"
    return f"{verdict} ({len(layers)} layers, {spikes} spikes)"


def float_fixed_cell(entry: zoo.ZooModel, graph: nir.NIRGraph) -> str:
    measured = zoo.float_vs_fixed(entry, graph)
    corr = [v for k, v in measured.items() if k.startswith("corr:")]
    return f"{100 * measured['agreement']:.1f} %; spike-count corr >= {min(corr):.3f} ({len(corr)} layers)"


def energy_cell(entry: zoo.ZooModel, model: Any, path: Path) -> str:
    parts = []
    for check in zoo.energy_checks(entry, model, path):
        exact = "==" if abs(check.layer_synops - check.brute_synops) < 1e-6 else "!="
        parts.append(
            f"{check.form}: {check.synops:.0f} SynOps, {check.neuron_updates:.0f} updates; "
            f"layer {check.layer!r} {check.layer_synops:.1f} {exact} brute {check.brute_synops:.1f}"
        )
    return "; ".join(parts)


def row(entry: zoo.ZooModel, directory: Path, lava: bool) -> list[str]:
    model = entry.build()
    try:
        path = zoo.export(entry, model, directory)
    except Exception as exc:  # noqa: BLE001 - reported in the row
        return [entry.name, f"error: {type(exc).__name__}: {exc}"] + ["-"] * 6
    graph = nir.read(path)
    return [
        entry.name,
        "ok",
        f"ok ({len(graph.nodes)} nodes)",
        _cell(lambda: snntorch_cell(entry, graph)),
        _cell(lambda: torch_cell(entry, model, graph)),
        _cell(lambda: lava_cell(entry, graph)) if lava else "not run (--no-lava)",
        _cell(lambda: float_fixed_cell(entry, graph)),
        _cell(lambda: energy_cell(entry, model, path)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-lava", action="store_true", help="skip the loihi-emu == Lava column")
    parser.add_argument(
        "--models", nargs="*", choices=list(zoo.ZOO), help="only these zoo models (default: all)"
    )
    args = parser.parse_args(argv)
    rows = [HEADER, ("---",) * len(HEADER)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or zoo.ZOO:
            rows.append(row(zoo.ZOO[name], Path(tmp), not args.no_lava))
            print(f"done: {name}", file=sys.stderr, flush=True)
    print("\n".join("| " + " | ".join(cells) + " |" for cells in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

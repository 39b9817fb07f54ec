"""The benchmark code runs (tiny models, one repetition). Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.run import main


def test_benchmark_suite_runs_quick(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    results = main(["--quick", "--threads", "1", "--no-cuda", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == json.loads(
        json.dumps(results["rows"], default=str)
    )
    cases = " ".join(r["case"] for r in results["rows"])
    for expected in (
        "Norse loop vs fast path",
        "training",
        "loihi-emu vs lava-sim",
        "energy",
        "peak RSS",
    ):
        assert expected in cases, expected
    for key in ("cpu", "torch_version", "torch_threads"):
        assert key in results["environment"]
    assert "ours" in capsys.readouterr().out
    fast = next(r for r in results["rows"] if "Norse loop vs fast path" in r["case"])
    assert "identical spikes: True" in fast["note"]  # the fast path was checked before timing

"""Files the library writes are readable like any file the user writes (mode ``0o666 &
~umask``), atomic writes leave nothing behind, and failed commands remove new folders.

Each test sets the process umask and restores it afterwards (the tests are
single-threaded); artifacts: checkpoints, splits, ``.nir``, netx ``.net``, duplicate
reports, ``metrics.csv``, and whole run / evaluation / deploy folders, NIR exports and
energy reports written by the CLI.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from neurall_neuro.atomic import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    removed_on_failure,
)
from neurall_neuro.cli.main import main
from neurall_neuro.errors import ConfigError

TINY = ["--size", "16", "--set", "channels=[4, 8, 8, 8]", "--timesteps", "2"]
FAST = ["--batch-size", "8", "--threads", "1", "--bootstrap", "20", "--quiet", "--device", "cpu"]


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the umask ``request.param`` (restored afterwards)."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_modes(paths: list[Path], umask: int) -> None:
    """Every file is ``0o666 & ~umask`` and every folder ``0o777 & ~umask``."""
    assert paths
    wrong = {}
    for p in paths:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        if _mode(p) != want:
            wrong[str(p)] = f"{_mode(p):o} (want {want:o})"
    assert not wrong, wrong


def _chain_network():
    """A small netx-writable LoihiNetwork (the chain graph of the hw_targets tests)."""
    spec = importlib.util.spec_from_file_location(
        "hw_helpers_modes", Path(__file__).parent / "hw_targets" / "conftest.py"
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    from hw_targets.loihi.quantize import quantize_graph

    images = np.random.default_rng(0).uniform(0, 1, (4, 2, 6, 6))
    return quantize_graph(
        helpers.make_chain_graph(0), timesteps=5, calibration=images, netx_compatible=True
    )


# ---------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], indirect=True)
def test_atomic_writers_follow_the_umask(umask, tmp_path):
    paths = [
        atomic_write_text(tmp_path / "a.txt", "text\n"),
        atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01"),
    ]
    with atomic_open(tmp_path / "c.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write("x,y\r\n")
    with atomic_path(tmp_path / "d.pt") as tmp:
        torch.save({"w": torch.ones(2)}, tmp)
    paths += [tmp_path / "c.csv", tmp_path / "d.pt", tmp_path / "sub"]
    _assert_modes(paths, umask)
    assert (tmp_path / "c.csv").read_bytes() == b"x,y\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "c.csv", "d.pt", "sub"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "r.json", "old\n")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(path) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    with pytest.raises(ConfigError, match="valid options: w, wt, wb"), atomic_open(path, "a"):
        pass
    with pytest.raises(ConfigError, match="binary"), atomic_open(path, "wb", encoding="utf-8"):
        pass


def test_removed_on_failure_removes_only_new_folders(tmp_path):
    new = tmp_path / "new"
    with pytest.raises(ValueError), removed_on_failure(new):
        (new / "deep").mkdir(parents=True)
        (new / "deep" / "half.json").write_text("{")
        raise ValueError("failed before the results")
    assert not new.exists()

    kept = tmp_path / "kept"
    with (
        pytest.raises(ValueError),
        removed_on_failure(kept, keep_if=lambda d: (d / "last.pt").exists()),
    ):
        kept.mkdir()
        (kept / "last.pt").write_bytes(b"resumable")
        raise ValueError("interrupted after a checkpoint")
    assert (kept / "last.pt").is_file()

    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ValueError), removed_on_failure(existing):
        (existing / "x").write_text("x")
        raise ValueError("failed")
    assert (existing / "x").is_file()

    with removed_on_failure(tmp_path / "ok") as ok:
        ok.mkdir()
    assert ok.is_dir()


# --------------------------------------------------------------------------- artifacts
@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True)
def test_library_artifacts_follow_the_umask(umask, tmp_path):
    from conversion.nir_export import to_nir
    from conversion.nir_io import write_nir
    from hw_targets.loihi.netx import write_netx
    from neurall_neuro.data.dedup import check_duplicates
    from neurall_neuro.data.splits import make_split
    from neurall_neuro.data.synth import generate_cohort
    from neurall_neuro.models.checkpoint import save_checkpoint
    from neurall_neuro.models.registry import get_model
    from neurall_neuro.training.history import EpochRecord, write_history

    cohort = generate_cohort(tmp_path / "cohort", n_per_class=2, size=16, seed=0)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=2).eval()
    paths = [
        save_checkpoint(
            tmp_path / "ckpt" / "best.pt", model, list(cohort.class_names), {"size": 16}
        ),
        make_split(cohort, 0.25, 0.25).save(tmp_path / "split.json"),
        write_nir(to_nir(model), tmp_path / "model.nir"),
        write_netx(_chain_network(), tmp_path / "chain.net"),
        check_duplicates([cohort]).save_json(tmp_path / "dups.json"),
        write_history(tmp_path / "metrics.csv", [EpochRecord(1, 1.0, 0.5, 1.0, 0.5, 1e-3, 0.1)]),
        tmp_path / "ckpt",
    ]
    _assert_modes([*paths, *(tmp_path / "cohort").rglob("*")], umask)
    assert not list(tmp_path.rglob(".*.tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True)
def test_cli_run_folders_follow_the_umask(umask, tmp_path, capsys):
    from neurall_neuro.data.synth import generate_cohort

    data = tmp_path / "cohort"
    generate_cohort(data, n_per_class=4, size=16, seed=0, n_patients_per_class=4)
    run = tmp_path / "run"
    argv = ["train", "--model", "neurallnet", "--data", str(data), "--out", str(run)]
    assert main([*argv, "--epochs", "1", "--val-fraction", "0.25", *TINY, *FAST]) == 0
    ckpt = run / "best.pt"
    assert {"best.pt", "last.pt", "split.json", "metrics.csv", "config.yaml"} <= {
        p.name for p in run.iterdir()
    }
    evaluation = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(evaluation)]
    assert main([*argv, "--bootstrap", "20", "--device", "cpu", "--no-overlap-check"]) == 0
    assert (evaluation / "metrics.json").is_file()
    parity = tmp_path / "parity"
    argv = ["deploy", "--checkpoint", str(ckpt), "--data", str(data), "--targets", "torch"]
    assert main([*argv, "--n", "2", "--out", str(parity)]) == 0
    assert (parity / "parity.json").is_file()
    nir_file = tmp_path / "export" / "model.nir"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(nir_file)]) == 0
    report = tmp_path / "reports" / "energy.md"
    argv = ["energy", "--snn", str(ckpt), "--random", "2", "--profiles", "loihi"]
    assert main([*argv, "--format", "md", "--output", str(report)]) == 0
    capsys.readouterr()
    written = [run, evaluation, parity, nir_file, nir_file.parent, report, report.parent]
    for folder in (run, evaluation, parity):
        written += list(folder.rglob("*"))
    _assert_modes(written, umask)

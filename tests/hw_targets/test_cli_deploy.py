"""``neurall deploy`` through the CLI entry point: real targets, parity.json and parity.png."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from neurall_neuro.cli import deploy_cmd
from neurall_neuro.cli.main import main
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.synth import generate_cohort
from neurall_neuro.models.checkpoint import save_checkpoint
from neurall_neuro.models.registry import get_model

HAVE_LAVA = importlib.util.find_spec("lava") is not None


@pytest.fixture(scope="module")
def snn_and_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deploy")
    cohort = root / "cohort"
    generate_cohort(cohort, n_per_class=3, size=16, seed=0, n_patients_per_class=3)
    torch.manual_seed(0)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=3)
    model.train()
    with torch.no_grad():  # a few BN batches so that the layers actually spike
        for _ in range(3):
            model(torch.rand(8, 3, 16, 16))
    model.eval()
    ckpt = save_checkpoint(
        root / "snn.pt", model, ["Benign", "Early", "Pre", "Pro"], Preprocessing(size=16).to_dict()
    )
    return ckpt, cohort


def test_cli_deploy_writes_a_parity_report(
    snn_and_cohort: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, cohort = snn_and_cohort
    targets = "torch,loihi-emu" + (",lava-sim" if HAVE_LAVA else "")
    out = tmp_path / "parity"
    argv = ["deploy", "--checkpoint", str(ckpt), "--data", str(cohort), "--targets", targets]
    assert main([*argv, "--n", "6", "--lava-n", "1", "--out", str(out)]) == 0
    report = json.loads((out / "parity.json").read_text())
    by_name = {t["target"]: t for t in report["targets"]}
    assert set(by_name) == set(targets.split(","))
    assert all(t["status"] == "ok" for t in by_name.values()), by_name
    # the float NIR runtime computes exactly what the Norse model computes
    assert by_name["torch"]["agreement_with_norse"] == 1.0
    assert by_name["torch"]["n"] == 6
    if HAVE_LAVA:
        assert by_name["lava-sim"]["n"] == 1
    assert (out / "parity.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "loihi-emu" in printed and "parity.json" in printed
    if HAVE_LAVA:  # lava-sim is compared with the others on the one image it ran
        pairs = {tuple(p["targets"]): p for p in report["comparisons"]}
        lava_emu = pairs[("loihi-emu", "lava-sim")]
        assert lava_emu["n"] == 1 and report["shared"]["n"] == 1
        for layer in lava_emu["layers"].values():
            assert layer["count_correlation"] is None
            assert layer["not_applicable"]["count_correlation"].startswith("1 sample;")
        lava_row = next(line for line in printed.splitlines() if line.startswith("lava-sim "))
        assert "0.0 img/s" not in lava_row and ("s/img" in lava_row or "img/s" in lava_row)


def test_cli_deploy_rejects_unknown_targets(
    snn_and_cohort: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, cohort = snn_and_cohort
    argv = ["deploy", "--checkpoint", str(ckpt), "--data", str(cohort), "--targets", "torch,tpu"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "tpu" in err and "loihi-emu" in err  # names the problem and the valid options


def _deploy_args(snn_and_cohort: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    ckpt, cohort = snn_and_cohort
    return ["deploy", "--checkpoint", str(ckpt), "--data", str(cohort), "--n", "4",
            "--out", str(out), *extra]  # fmt: skip


def test_cli_deploy_target_options_reach_the_targets(
    snn_and_cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "parity"
    argv = _deploy_args(snn_and_cohort, out, "--targets", "torch,loihi-emu",
                        "--target-option", "loihi-emu.max_samples=2",
                        "--target-option", "torch.batch_size=2",
                        "--target-option", "torch.align=true")  # fmt: skip
    assert main(argv) == 0
    by_name = {t["target"]: t for t in json.loads((out / "parity.json").read_text())["targets"]}
    # values parsed to the option's type; max_samples limits the images, it is no compile option
    assert by_name["torch"]["options"] == {"device": "cpu", "batch_size": 2, "align": True}
    assert by_name["torch"]["n"] == 4 and by_name["torch"]["status"] == "ok"
    assert by_name["loihi-emu"]["options"] == {"device": "cpu"}
    assert by_name["loihi-emu"]["n"] == 2 and by_name["loihi-emu"]["status"] == "ok"


def test_shortcut_flags_map_to_target_options() -> None:
    from neurall_neuro.cli.deploy_cmd import target_settings

    parser = argparse.ArgumentParser(prog="neurall")
    sub = parser.add_subparsers()
    deploy_cmd.register(sub)
    targets = ["torch", "loihi-emu", "lava-sim"]
    args = parser.parse_args(["deploy"])
    # the defaults: exactly what deploy passed before --target-option existed
    assert target_settings(args, targets, targets) == (
        {"torch": {"device": "cpu"}, "loihi-emu": {"device": "cpu"}, "lava-sim": {"precision": "fixed"}},
        {"lava-sim": 4},
    )  # fmt: skip
    short = parser.parse_args(["deploy", "--lava-n", "2", "--lava-precision", "float"])
    long = parser.parse_args(["deploy", "--target-option", "lava-sim.max_samples=2",
                              "--target-option", "lava-sim.precision=float"])  # fmt: skip
    assert target_settings(short, targets, targets) == target_settings(long, targets, targets)
    both = parser.parse_args(["deploy", "--lava-precision", "float",
                              "--target-option", "lava-sim.precision=fixed"])  # fmt: skip
    assert target_settings(both, targets, targets)[0]["lava-sim"]["precision"] == "fixed"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("tpu.noise=1", ["unknown target 'tpu'", "valid targets:", "loihi-emu", "lava-sim"]),
        ("torch.foo=1", ["no option 'foo'", "valid options:", "batch_size", "dt", "max_samples"]),
        ("loihi-emu.speed=2", ["no option 'speed'", "bias_schedule", "input_mode", "precision"]),
        ("torch.timesteps=2", ["comes from the checkpoint"]),
        ("torch.batch_size=many", ["batch_size must be a positive integer"]),
        ("torch.align=maybe", ["align must be true or false"]),
        ("torch-batch_size", ["expected TARGET.KEY=VALUE"]),
        ("loihi-emu.device=cpu", ["'loihi-emu' is not in --targets"]),
    ],
)
def test_cli_deploy_rejects_bad_target_options(
    snn_and_cohort: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    expected: list[str],
) -> None:
    argv = _deploy_args(snn_and_cohort, tmp_path, "--targets", "torch", "--target-option", option)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --target-option"), err
    for text in expected:
        assert text in err, err


def test_cli_deploy_prints_failure_reasons_in_full(
    snn_and_cohort: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _deploy_args(snn_and_cohort, tmp_path, "--targets", "torch,loihi-emu",
                        "--target-option", "loihi-emu.input_mode=bogus")  # fmt: skip
    assert main(argv) == 1  # a failed target
    printed = capsys.readouterr().out
    assert (
        "loihi-emu failed: ConfigError: input_mode must be one of auto, image, bias, spikes; got 'bogus'"
        in printed
    )


def test_cli_deploy_compares_targets_on_the_images_both_ran(
    snn_and_cohort: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "parity"
    argv = _deploy_args(snn_and_cohort, out, "--targets", "torch,loihi-emu",
                        "--target-option", "loihi-emu.max_samples=2")  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "parity.json").read_text())
    assert [(t["target"], t["n"]) for t in report["targets"]] == [("torch", 4), ("loihi-emu", 2)]
    (pair,) = report["comparisons"]
    assert pair["targets"] == ["torch", "loihi-emu"] and pair["n"] == 2
    assert report["shared"]["n"] == 2
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("torch vs loihi-emu"))
    assert row.split()[3] == "2" and "n/a" in row  # n, and no correlation over 2 images
    assert "img/s" in printed


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.lava
@pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed (Python 3.10 env)")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_ctrl_c_during_lava_sim_prints_one_line_and_leaves_no_process(
    snn_and_cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while Lava's
    processes run: one line, exit status 130, no traceback, no process left behind."""
    ckpt, cohort = snn_and_cohort
    out = tmp_path / "parity"
    cmd = [sys.executable, "-m", "neurall_neuro.cli.main", "deploy", "--checkpoint", str(ckpt),
           "--data", str(cohort), "--targets", "lava-sim", "--n", "6", "--lava-n", "6",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 3:  # Lava forked its processes
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "Lava did not start within 120 s"
            time.sleep(0.1)
        time.sleep(0.5)
        started = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 3, stderr
    assert re.search(
        r"^interrupted: lava-sim stopped after \d of 6 samples; partial results not written$",
        stderr,
        re.M,
    ), stderr
    assert not (out / "parity.json").exists()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in started if _running(pid)], "Lava processes outlived deploy"

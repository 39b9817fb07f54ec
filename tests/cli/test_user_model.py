"""A researcher's own model on the CLI: ``--model MODULE:FACTORY --weights --input-shape``
and ``--nir FILE --dt`` for ``neurall export``, ``deploy`` and ``energy``.

The factory module is written to a temporary folder and imported from the current
directory, as a user would run it. The success paths run ``neurall`` in a subprocess;
the error cases go through the same ``main`` in-process (one line on stderr, exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from conversion.nir_io import graph_metadata, read_nir, write_nir
from conversion.nir_runtime import load_nir
from neurall_neuro.cli.main import main
from neurall_neuro.models.user_model import load_user_model

MODULE = "usernets"
FACTORIES = '''
"""Tiny user models for the CLI tests."""
import torch
from torch import nn

from neurall_neuro.models.neurons import LIFLayer


def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        LIFLayer(tau_mem=2e-4),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5),
        LIFLayer(tau_mem=2e-4),
    )


def norse_net():
    import norse.torch as snn

    torch.manual_seed(0)
    return snn.SequentialState(
        nn.Conv2d(3, 4, 3, padding=1),
        snn.LIFBoxCell(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5),
        snn.LIFBoxCell(),
    )


def broken():
    raise ValueError("needs a GPU")


def not_a_module():
    return 42
'''
SHAPE = "3,8,8"


def _fire(model: torch.nn.Module) -> None:
    """Biases and weights that make the untrained network spike in every layer."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.bias.fill_(1.5)
            if isinstance(module, torch.nn.Linear):
                module.weight.abs_().mul_(0.3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``usernets.py``, its weights ``tiny.pt`` (firing), a state dict of
    another model ``wrong.pt``, a non-state-dict ``config.pt`` and an IF graph ``if.nir``
    without dt (written for sinabs's dt = 1)."""
    root = tmp_path_factory.mktemp("user-model")
    (root / f"{MODULE}.py").write_text(FACTORIES)
    user = load_user_model(f"{MODULE}:build", None, SHAPE, search_path=[root])
    _fire(user.model)
    torch.save(user.model.state_dict(), root / "tiny.pt")
    torch.save(torch.nn.Linear(3, 3).state_dict(), root / "wrong.pt")
    torch.save({"lr": 0.1, "epochs": 3}, root / "config.pt")
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3, 4, 4])}),
        "flat": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(
            weight=np.full((5, 48), 0.05, dtype=np.float32), bias=np.zeros(5, dtype=np.float32)
        ),
        "if": nir.IF(r=np.ones(5), v_threshold=np.ones(5)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "flat"), ("flat", "fc"), ("fc", "if"), ("if", "output")]
    write_nir(nir.NIRGraph(nodes=nodes, edges=edges), root / "if.nir")
    sys.modules.pop(MODULE, None)
    return root


@pytest.fixture(autouse=True)
def _forget_user_module() -> Iterator[None]:
    """In-process runs import ``usernets``; drop it so every test imports it afresh."""
    yield
    sys.modules.pop(MODULE, None)


def neurall(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``neurall ARGV`` in a subprocess started in ``cwd`` (where the factory module is)."""
    env = {**os.environ, "NEURALL_NO_PROGRESS": "1", "COLUMNS": "100"}
    env.pop("NEURALL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "neurall_neuro.cli.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_sequential(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The per-step semantics of a Sequential with LIFLayers on ``[T, B, ...]``: stateless
    layers on the flattened time x batch, LIF layers over time."""
    from neurall_neuro.models.neurons import LIFLayer

    steps = x.shape[0]
    for module in model:
        if isinstance(module, LIFLayer):
            x = module(x)
        else:
            x = module(x.flatten(0, 1)).unflatten(0, (steps, -1))
    return x


# ----------------------------------------------------------------------------- success paths


def test_export_a_user_model_to_nir(workdir: Path) -> None:
    out = workdir / "user.nir"
    done = neurall(workdir, "export", "--model", f"{MODULE}:build", "--weights", "tiny.pt",
                   "--input-shape", SHAPE, "--timesteps", "4", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{MODULE}:build (weights: tiny.pt)" in done.stdout and "2 LIF" in done.stdout
    graph = read_nir(out)
    assert graph_metadata(graph)["timesteps"] == 4 and graph_metadata(graph)["dt"] == 1e-4
    user = load_user_model(f"{MODULE}:build", workdir / "tiny.pt", SHAPE, search_path=[workdir])
    x = torch.rand(4, 2, 3, 8, 8)
    expected = run_sequential(user.model, x)
    ours = load_nir(graph).run(x).output
    assert torch.equal(ours, expected) and expected.any()


def test_deploy_a_user_model_on_random_inputs(workdir: Path) -> None:
    out = workdir / "deploy"
    done = neurall(workdir, "deploy", "--model", f"{MODULE}:build", "--weights", "tiny.pt",
                   "--input-shape", SHAPE, "--timesteps", "3", "--random", "4",
                   "--targets", "torch,loihi-emu", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no class labels" in done.stdout
    report = json.loads((out / "parity.json").read_text())
    assert report["reference"] == "torch" and report["reference_accuracy"] is None
    assert report["source"]["model"] == f"{MODULE}:build" and report["source"]["random"] == 4
    torch_run, emu = report["targets"]
    assert torch_run["status"] == "ok" and torch_run["agreement"] == 1.0
    assert torch_run["accuracy"] is None and torch_run["agreement_of"] == "output spikes"
    assert sum(report["reference_spikes_per_sample"].values()) > 0
    assert emu["status"] in ("ok", "skipped", "failed") and emu["target"] == "loihi-emu"


def test_energy_of_a_user_model(workdir: Path) -> None:
    out = workdir / "energy.json"
    done = neurall(workdir, "energy", "--model", f"{MODULE}:build", "--weights", "tiny.pt",
                   "--input-shape", SHAPE, "--timesteps", "3", "--random", "2",
                   "--profiles", "loihi", "--format", "json", "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["snn"]["model"] == "build" and report["snn"]["samples"] == 2
    assert report["snn"]["totals"]["synops"] > 0 and report["snn"]["totals"]["spikes"] > 0


def test_dt_convention_changes_the_count_of_an_if_graph(workdir: Path) -> None:
    """The IF graph stores no dt. At our default step (1e-4) v grows by 1e-4 r I per step
    and nothing fires; written for sinabs (dt = 1: v += r I), it fires."""
    spikes = {}
    for dt in ("neurall", "sinabs"):
        out = workdir / f"if-{dt}.json"
        done = neurall(workdir, "energy", "--nir", "if.nir", "--dt", dt, "--timesteps", "4",
                       "--random", "2", "--profiles", "loihi", "--format", "json",
                       "--output", str(out))  # fmt: skip
        assert done.returncode == 0, done.stderr
        spikes[dt] = json.loads(out.read_text())["snn"]["totals"]["spikes"]
    assert spikes["neurall"] == 0 and spikes["sinabs"] > 0
    missing = neurall(workdir, "energy", "--nir", "if.nir", "--timesteps", "4", "--random", "2")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "pass --dt SECONDS or a convention name" in missing.stderr


def test_a_bad_spec_is_one_line_in_a_subprocess(workdir: Path) -> None:
    done = neurall(workdir, "export", "--model", "no_such_module:build", "--input-shape", SHAPE,
                   "--out", "x.nir")  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: model spec 'no_such_module:build': no module named")
    assert not (workdir / "x.nir").exists()


# ----------------------------------------------------------------------------- in-process


def test_export_and_deploy_a_nir_file_with_a_dt_convention(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    assert main(["export", "--nir", "if.nir", "--dt", "sinabs", "--out", "if-sinabs.nir"]) == 0
    assert "dt = 1.0 s per step" in capsys.readouterr().out
    stamped = read_nir(workdir / "if-sinabs.nir")
    assert graph_metadata(stamped)["dt"] == 1.0
    fired = {}
    for dt in ("snntorch", "sinabs"):
        code = main(["deploy", "--nir", "if.nir", "--dt", dt, "--timesteps", "4", "--random", "3",
                     "--targets", "torch", "--out", f"dep-{dt}"])  # fmt: skip
        assert code == 0
        fired[dt] = json.loads((workdir / f"dep-{dt}" / "parity.json").read_text())
    assert fired["snntorch"]["reference_spikes_per_sample"]["if"] == 0
    assert fired["sinabs"]["reference_spikes_per_sample"]["if"] > 0
    assert fired["sinabs"]["source"]["dt"] == "sinabs"


def test_a_norse_model_exports_through_the_same_loader(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``norse.torch.LIFBoxCell`` in a ``SequentialState``: exported with Norse's dt (1e-3),
    the graph runs spike for spike like stepping the Norse model."""
    from norse.torch import LIFBoxCell

    from conversion.nir_mappings import find_mapping

    if find_mapping(LIFBoxCell()) is None:
        pytest.skip("no NIR mapping for norse.torch.LIFBoxCell")
    monkeypatch.chdir(workdir)
    model = load_user_model(f"{MODULE}:norse_net", None, SHAPE, search_path=[workdir]).model
    _fire(model)
    with torch.no_grad():  # Norse's tau = 10 ms at dt = 1 ms integrates slowly: drive it harder
        model[3].weight.fill_(0.05)
    torch.save(model.state_dict(), workdir / "norse.pt")
    code = main(["export", "--model", f"{MODULE}:norse_net", "--weights", "norse.pt",
                 "--input-shape", SHAPE, "--out", "norse.nir"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    graph = read_nir(workdir / "norse.nir")
    assert graph_metadata(graph)["dt"] == 1e-3
    x = torch.rand(30, 2, 3, 8, 8)
    state, expected = None, []
    with torch.no_grad():
        for x_t in x:
            z, state = model(x_t, state)
            expected.append(z)
    ours = load_nir(graph).run(x).output
    assert torch.equal(ours, torch.stack(expected)) and ours.any()


ERRORS = [
    (["--model", MODULE, "--input-shape", SHAPE], "is not MODULE:FACTORY"),
    (["--model", "nosuchmodule:build", "--input-shape", SHAPE], "no module named 'nosuchmodule'"),
    (["--model", f"{MODULE}:nope", "--input-shape", SHAPE], "has no attribute 'nope'"),
    (["--model", f"{MODULE}:broken", "--input-shape", SHAPE],
     "the factory raised ValueError: needs a GPU"),
    (["--model", f"{MODULE}:not_a_module", "--input-shape", SHAPE],
     "the factory returned an object of type int, not a torch.nn.Module"),
    (["--model", f"{MODULE}:build", "--weights", "wrong.pt", "--input-shape", SHAPE],
     "do not match the model of 'usernets:build': missing keys 0.bias, 0.weight"),
    (["--model", f"{MODULE}:build", "--weights", "config.pt", "--input-shape", SHAPE],
     "config.pt is not a state dict"),
    (["--model", f"{MODULE}:build", "--weights", "missing.pt", "--input-shape", SHAPE],
     "weights file not found: missing.pt"),
    (["--model", f"{MODULE}:build", "--input-shape", "3,x,8"], "expected positive integers"),
    (["--model", f"{MODULE}:build", "--input-shape", "3,9,8"],
     "--input-shape 3,9,8 does not fit the model"),
    (["--model", f"{MODULE}:build"], "--model needs --input-shape C,H,W"),
    (["--model", f"{MODULE}:build", "--checkpoint", "x.pt", "--input-shape", SHAPE],
     "--checkpoint and --model both name the model"),
    (["--nir", "if.nir", "--model", f"{MODULE}:build"], "--nir and --model both name the model"),
    (["--nir", "if.nir", "--weights", "tiny.pt"], "--weights belong to --model"),
    (["--model", f"{MODULE}:build", "--input-shape", SHAPE, "--dt", "sinabs"],
     "--dt states the time step of a NIR file"),
    (["--nir", "if.nir", "--dt", "brian2"], "valid conventions: lava-dl, neurall, norse"),
    ([], "give one of --checkpoint CKPT, --nir FILE, --model MODULE:FACTORY"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), ERRORS)
def test_export_errors_are_one_line(
    argv: list[str],
    message: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(workdir)
    assert main(["export", *argv, "--out", "bad.nir"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (workdir / "bad.nir").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["deploy", "--model", f"{MODULE}:build", "--input-shape", SHAPE, "--timesteps", "2"],
         "exactly one of --data DIR or --random N"),
        (["deploy", "--model", f"{MODULE}:build", "--input-shape", SHAPE, "--random", "2"],
         "has no 'timesteps'; pass --timesteps T"),
        (["deploy", "--checkpoint", "x.pt", "--random", "2"], "apply to --nir / --model"),
        (["deploy", "--nir", "if.nir", "--dt", "norse", "--random", "2", "--timesteps", "2",
          "--targets", "torch", "--target-option", "torch.dt=1e-4"],
         "--dt norse (0.001 s) and --target-option torch.dt=0.0001 (0.0001 s)"),
        (["energy", "--model", f"{MODULE}:build", "--snn", "x.pt", "--random", "2"],
         "--snn and --model both name the model"),
        (["energy", "--snn", "x.pt", "--dt", "sinabs", "--random", "2"],
         "--dt states the time step of a NIR file"),
    ],
)  # fmt: skip
def test_deploy_and_energy_errors_are_one_line(
    argv: list[str],
    message: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    assert main([*argv, "--out" if argv[0] == "deploy" else "--output", "bad-out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (workdir / "bad-out").exists()


def test_the_help_of_every_command_lists_the_new_options() -> None:
    from neurall_neuro.cli.main import build_parser, iter_parsers

    parsers = {p.prog: p for p in iter_parsers(build_parser())}
    for command in ("export", "deploy", "energy"):
        options = parsers[f"neurall {command}"]._option_string_actions
        for flag in ("--nir", "--dt", "--model", "--weights", "--input-shape", "--timesteps"):
            assert flag in options, f"neurall {command} lacks {flag}"
        assert "sinabs (1: tau in steps)" in parsers[f"neurall {command}"].format_help()

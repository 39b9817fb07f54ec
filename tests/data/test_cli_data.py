"""``neurall data ...`` through the real entry point ``neurall_neuro.cli.main.main``."""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path
from unittest import mock

import pytest
from PIL import Image

from neurall_neuro.data.splits import Split


def run(argv: list[str]) -> int:
    """``main(argv)``; command modules of other teams that do not exist yet are left out."""
    from neurall_neuro.cli import main as cli

    available = []
    for name in cli.COMMAND_MODULES:
        try:
            importlib.import_module(f"neurall_neuro.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"neurall_neuro.cli.{name}_cmd":
                raise
            continue
        available.append(name)
    assert "data" in available
    with mock.patch.object(cli, "COMMAND_MODULES", tuple(available)):
        return cli.main(argv)


@pytest.fixture(scope="module")
def cli_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "synth"
    assert (
        run(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--n-per-class",
                "6",
                "--size",
                "48",
                "--seed",
                "2",
                "--patients",
                "3",
            ]
        )
        == 0
    )
    return out


def test_synth_and_info(cli_cohort, capsys):
    assert len(list(cli_cohort.rglob("*.png"))) == 24
    assert (cli_cohort / "manifest.csv").is_file()
    capsys.readouterr()
    assert run(["data", "info", str(cli_cohort)]) == 0
    out = capsys.readouterr().out
    assert "layout:  manifest" in out
    assert "Benign" in out and "3 patients" in out


def test_layouts_listing(capsys):
    assert run(["data", "layouts"]) == 0
    out = capsys.readouterr().out
    for name in (
        "aria",
        "kaggle-blood-cells",
        "cnmc",
        "all-idb1",
        "all-idb2",
        "manifest",
        "imagefolder",
    ):
        assert name in out


def test_scan_reports_and_strict_fails(tmp_path, write_image, capsys):
    for i in range(2):
        write_image(tmp_path / "d" / "a" / f"{i}.png", seed=i)
        write_image(tmp_path / "d" / "b" / f"{i}.png", seed=10 + i)
    (tmp_path / "d" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert run(["data", "scan", str(tmp_path / "d"), "--json", str(tmp_path / "scan.json")]) == 0
    out = capsys.readouterr().out
    assert "4 ok, 1 bad" in out and "broken.png" in out
    assert json.loads((tmp_path / "scan.json").read_text())["bad"][0]["path"].endswith("broken.png")
    assert run(["data", "scan", str(tmp_path / "d"), "--strict"]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_split_then_check_finds_a_planted_leak(cli_cohort, tmp_path, capsys):
    split_file = tmp_path / "split.json"
    assert (
        run(
            [
                "data",
                "split",
                str(cli_cohort),
                "--out",
                str(split_file),
                "--val",
                "0.3",
                "--test",
                "0.3",
            ]
        )
        == 0
    )
    split = Split.load(split_file)
    assert split.group_by == "patient"
    assert run(["data", "check", str(cli_cohort), "--split-file", str(split_file)]) == 0
    out = capsys.readouterr().out
    assert "across split parts: 0 pair(s)" in out

    # A second cohort holding a resized, re-encoded copy of a generated image.
    src = next(cli_cohort.glob("Pro/*.png"))
    other = tmp_path / "other"
    for cls in ("x", "y"):
        (other / cls).mkdir(parents=True)
    buf = io.BytesIO()
    Image.open(src).convert("RGB").resize((72, 72), Image.BILINEAR).save(buf, "JPEG", quality=85)
    (other / "x" / "copy.jpg").write_bytes(buf.getvalue())
    Image.open(next(cli_cohort.glob("Benign/*.png"))).rotate(90).save(other / "y" / "turned.png")
    report = tmp_path / "dedup.json"
    code = run(
        [
            "data",
            "check",
            str(cli_cohort),
            str(other),
            "--json",
            str(report),
            "--fail-on-duplicates",
        ]
    )
    assert code == 1
    data = json.loads(report.read_text())
    (pairs,) = data["across_cohorts"].values()
    assert len(pairs) == 1 and Path(pairs[0]["path_b"]).name == "copy.jpg"
    assert Path(pairs[0]["path_a"]).name == src.name


def test_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run(["data", "info", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "imagefolder" in err
    assert run(["data", "synth", "--out", str(tmp_path / "s"), "--difficulty", "brutal"]) == 2
    assert "difficulty" in capsys.readouterr().err

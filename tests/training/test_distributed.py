"""DDP: ``torchrun --nproc_per_node 2`` on CPU (gloo) trains and writes every file once."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neurall_neuro.models.checkpoint import load_checkpoint


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "neurall_neuro.cli.main", "train",
        "--model", "neurallnet", "--data", str(tiny_cohort_dir), "--out", str(out),
        "--size", "16", "--timesteps", "2", "--set", "channels=[4, 8, 8, 8]",
        "--epochs", "1", "--batch-size", "8", "--lr", "3e-3", "--device", "cpu",
        "--threads", "1", "--bootstrap", "20",
    ]  # fmt: skip
    env = {**os.environ, "NEURALL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    # Rank 0 alone logs and writes: one epoch line, one header + one row.
    assert log.count("epoch 1/1  train loss") == 1, log
    assert log.count("test accuracy") == 1, log
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 2 and rows[1][0] == "1"
    resolved = yaml.safe_load((out / "config.yaml").read_text())["resolved"]
    assert resolved["world_size"] == 2 and resolved["device"] == "cpu"
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.metadata["world_size"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "best.pt",
            "config.yaml",
            "curves.png",
            "last.pt",
            "metrics.csv",
            "split.json",
            "test",
            "test_metrics.json",
        ]
    )

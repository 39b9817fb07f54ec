"""Fixtures of the Loihi target tests: test graphs, lava-dl's ground truth, trace comparison.

Helpers are exposed as fixtures (the suite runs with ``--import-mode=importlib``, so test
modules cannot import this file).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np
import pytest

DT = 1e-4
HAVE_LAVA = (
    importlib.util.find_spec("lava") is not None
    and importlib.util.find_spec("lava.magma") is not None
)


def lava_gt_dir() -> Path | None:
    """``tests/lava/lib/dl/netx`` shipped in the lava-dl wheel (None without lava-dl)."""
    spec = importlib.util.find_spec("lava")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(next(iter(spec.submodule_search_locations))).parent
    path = site / "tests" / "lava" / "lib" / "dl" / "netx"
    return path if (path / "tiny.net").is_file() else None


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def gt_dir() -> Path:
    path = lava_gt_dir()
    if path is None:
        pytest.skip(
            "lava-dl's netx ground truth (tests/lava/lib/dl/netx in the wheel) is not installed"
        )
    return path


def _lif(shape: tuple[int, ...], tau_steps: float, threshold: float) -> nir.LIF:
    return nir.LIF(
        tau=np.full(shape, tau_steps * DT),
        r=np.ones(shape),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, threshold),
        v_reset=np.zeros(shape),
        metadata={"dt": DT},
    )


def _conv(
    w: np.ndarray, b: np.ndarray, hw: tuple[int, int], padding=0, stride=1, groups=1
) -> nir.Conv2d:
    return nir.Conv2d(
        input_shape=hw, weight=w, stride=stride, padding=padding, dilation=1, groups=groups, bias=b
    )


def make_se_graph(
    seed: int = 0, c_in: int = 3, h: int = 8, c1: int = 4, c2: int = 6, k: int = 4, T: int = 6
) -> nir.NIRGraph:
    """A tiny SE-SNN in our conventions: encoder conv -> LIF -> conv -> LIF (features) ->
    spiking SE branch (global pool + 1x1 conv -> LIF -> 1x1 conv -> gate LIF (tau = dt) ->
    broadcast conv) AND-ed with the features (LIF tau = dt, threshold 1.5) -> pool(2) + conv
    -> LIF -> global pool + flatten + affine -> Output."""
    rng = np.random.default_rng(seed)
    n: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([c_in, h, h])}),
        "conv0": _conv(
            rng.normal(0, 0.6, (c1, c_in, 3, 3)), rng.normal(0.3, 0.1, c1), (h, h), padding=1
        ),
        "lif0": _lif((c1, h, h), 2, 1.0),
        "conv1": _conv(
            rng.normal(0.15, 0.5, (c2, c1, 3, 3)), rng.normal(0.2, 0.1, c2), (h, h), padding=1
        ),
        "lif1": _lif((c2, h, h), 2, 1.0),
        "se_pool": nir.AvgPool2d(
            kernel_size=np.array([h, h]), stride=np.array([h, h]), padding=np.array([0, 0])
        ),
        "se_fc1": _conv(rng.normal(0.5, 1.0, (2, c2, 1, 1)), rng.normal(0.2, 0.1, 2), (1, 1)),
        "se_lif1": _lif((2, 1, 1), 2, 0.2),
        "se_fc2": _conv(rng.normal(0.3, 1.0, (c2, 2, 1, 1)), rng.normal(0.4, 0.2, c2), (1, 1)),
        "se_gate": _lif((c2, 1, 1), 1, 0.5),
        "se_bcast": _conv(
            np.ones((c2, 1, h, h)), np.zeros(c2), (1, 1), padding=(h - 1, h - 1), groups=c2
        ),
        "se_and": _lif((c2, h, h), 1, 1.5),
        "pool2": nir.AvgPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "conv2": _conv(
            rng.normal(0.3, 1.0, (c2, c2, 3, 3)),
            rng.normal(0.2, 0.1, c2),
            (h // 2, h // 2),
            padding=1,
        ),
        "lif2": _lif((c2, h // 2, h // 2), 2, 1.0),
        "gap": nir.AvgPool2d(
            kernel_size=np.array([h // 2, h // 2]),
            stride=np.array([h // 2, h // 2]),
            padding=np.array([0, 0]),
        ),
        "flat": nir.Flatten(input_type={"input": np.array([c2, 1, 1])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 1.0, (k, c2)), bias=rng.normal(0, 0.1, k)),
        "output": nir.Output(output_type={"output": np.array([k])}),
    }
    edges = [
        ("input", "conv0"), ("conv0", "lif0"), ("lif0", "conv1"), ("conv1", "lif1"),
        ("lif1", "se_pool"), ("se_pool", "se_fc1"), ("se_fc1", "se_lif1"), ("se_lif1", "se_fc2"),
        ("se_fc2", "se_gate"), ("se_gate", "se_bcast"), ("se_bcast", "se_and"), ("lif1", "se_and"),
        ("se_and", "pool2"), ("pool2", "conv2"), ("conv2", "lif2"), ("lif2", "gap"), ("gap", "flat"),
        ("flat", "fc"), ("fc", "output"),
    ]  # fmt: skip
    return nir.NIRGraph(nodes=n, edges=edges, metadata={"dt": DT, "timesteps": T}, type_check=False)


def make_chain_graph(seed: int = 0, T: int = 5) -> nir.NIRGraph:
    """Encoder conv -> LIF -> conv -> LIF -> flatten + affine readout (a netx-able chain)."""
    rng = np.random.default_rng(seed)
    n: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv0": _conv(
            rng.normal(0, 0.6, (3, 2, 3, 3)), rng.normal(0.3, 0.1, 3), (6, 6), padding=1
        ),
        "lif0": _lif((3, 6, 6), 2, 1.0),
        "conv1": _conv(
            rng.normal(0.2, 0.6, (4, 3, 3, 3)), rng.normal(0.1, 0.1, 4), (6, 6), stride=2
        ),
        "lif1": _lif((4, 2, 2), 3, 1.0),
        "flat": nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 1.0, (3, 16)), bias=rng.normal(0, 0.1, 3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv0"), ("conv0", "lif0"), ("lif0", "conv1"), ("conv1", "lif1"),
             ("lif1", "flat"), ("flat", "fc"), ("fc", "output")]  # fmt: skip
    return nir.NIRGraph(nodes=n, edges=edges, metadata={"dt": DT, "timesteps": T}, type_check=False)


def assert_same_traces(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str = "spikes"
) -> None:
    """Equal per-layer ``[T, B, *shape]`` traces; else fail naming the first mismatching
    layer, sample, neuron index (torch layout) and step."""
    assert sorted(a) == sorted(b), f"different layers: {sorted(a)} vs {sorted(b)}"
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.shape == y.shape, f"{what} of layer {name!r}: shapes {x.shape} vs {y.shape}"
        diff = np.argwhere(x != y)
        if diff.size:
            t, s, *idx = (int(v) for v in diff[0])
            pytest.fail(
                f"{what} differ in layer {name!r}: first at step {t}, sample {s}, neuron {tuple(idx)} "
                f"({x[(t, s, *idx)]} vs {y[(t, s, *idx)]}); {len(diff)} mismatches in total"
            )


@pytest.fixture(scope="session")
def se_graph() -> Callable[..., nir.NIRGraph]:
    return make_se_graph


@pytest.fixture(scope="session")
def chain_graph() -> Callable[..., nir.NIRGraph]:
    return make_chain_graph


@pytest.fixture(scope="session")
def same_traces() -> Callable[..., None]:
    return assert_same_traces


def hypothesis_examples(default: int) -> int:
    """Examples per hypothesis test (``NEURALL_HYPOTHESIS_EXAMPLES`` overrides)."""
    return int(os.environ.get("NEURALL_HYPOTHESIS_EXAMPLES", default))

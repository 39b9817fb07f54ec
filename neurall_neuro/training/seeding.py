"""Seeding, deterministic execution and RNG state capture.

Every epoch starts from generators seeded by ``(seed, epoch, rank)``
(:func:`seed_epoch`), so an epoch's shuffling, augmentation and dropout do not
depend on what ran before it: a run resumed at epoch ``e`` draws exactly the random
numbers an uninterrupted run draws there. :func:`rng_state` / :func:`set_rng_state`
additionally capture the global generators (as tensors and plain lists, loadable
with ``weights_only=True``).
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across runs and platforms)."""
    seq = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
    return int(seq.generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed all global generators for ``epoch`` on process ``rank``; returns the seed used."""
    value = derive_seed(seed, epoch, rank)
    seed_everything(value)
    return value


def configure_determinism(enabled: bool) -> None:
    """Make torch as deterministic as it allows (or restore the fast defaults).

    Sets ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops without a
    deterministic implementation warn instead of failing), disables cuDNN autotuning
    and sets ``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS (must happen before
    the first CUDA matmul). Process-wide settings: training owns the process.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed NumPy/Python from the worker's torch seed."""
    del worker_id
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states as tensors and plain lists (``weights_only``-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

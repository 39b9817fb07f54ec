"""Locating the project's shared real data (``../shared/data`` beside the checkout).

The real images (e.g. the ALL image dataset in ``all-aria-dev``) are not part of the
repository and must never be copied into it. Tests and benchmarks that use them
call :func:`shared_dataset` and skip when it returns ``None``.

Search order: the environment variable ``NEURALL_SHARED_DATA`` (a folder holding
the data sets), then ``<checkout>/../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "NEURALL_SHARED_DATA"
#: Name of the development portion of the ALL image dataset in the shared folder.
ARIA_DEV = "all-aria-dev"


def shared_data_dir() -> Path | None:
    """The shared data folder, or ``None`` when it does not exist."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    # neurall_neuro/data/shared_data.py -> parents[2] is the checkout root.
    p = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return p if p.is_dir() else None


def shared_dataset(name: str = ARIA_DEV) -> Path | None:
    """The folder of data set ``name`` inside the shared data folder, or ``None``."""
    base = shared_data_dir()
    if base is None:
        return None
    p = base / name
    return p if p.is_dir() else None

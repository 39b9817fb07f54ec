"""Shared plumbing of the library's PNG figures (matplotlib's non-interactive Agg backend).

Every figure is drawn with :func:`pyplot` (Agg, so it works without a display) and written
with :func:`save_figure` (parent folders created, the figure closed so that long runs do
not accumulate open figures).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (imported lazily: matplotlib is slow to load)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    fig: Any, path: str | os.PathLike[str], dpi: int, tight: bool = True, **savefig: Any
) -> Path:
    """Lay out (``tight``), write ``fig`` to ``path`` (folders created), close it; return the path."""
    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig)
    pyplot().close(fig)
    return path

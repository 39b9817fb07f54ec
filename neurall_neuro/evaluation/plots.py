"""Evaluation figures (PNG, matplotlib's non-interactive Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurall_neuro.figures import pyplot, save_figure


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Save a confusion matrix (rows true, columns predicted) with counts and row percentages."""
    plt = pyplot()

    matrix = np.asarray(matrix)
    k = len(class_names)
    row_sums = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(row_sums > 0, matrix / np.maximum(row_sums, 1), 0.0)
    size = 1.2 + 0.9 * k
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{100 * share[i, j]:.0f}%",
                ha="center",
                va="center",
                color=colour,
                fontsize=8,
            )
    if title:
        ax.set_title(title)
    return save_figure(fig, path, dpi=120)

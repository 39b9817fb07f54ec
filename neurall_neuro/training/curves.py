"""Training curves (loss, accuracy, learning rate per epoch) as a PNG."""

from __future__ import annotations

from pathlib import Path

from neurall_neuro.figures import pyplot, save_figure
from neurall_neuro.training.history import EpochRecord


def plot_curves(
    records: list[EpochRecord], path: str | Path, title: str = "", best_epoch: int | None = None
) -> Path:
    """Three panels: train/val loss, train/val accuracy, learning rate (log scale)."""
    plt = pyplot()

    epochs = [r.epoch for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r.train_loss for r in records], "o-", label="train")
    axes[0].plot(epochs, [r.val_loss for r in records], "o-", label="val")
    axes[0].set_ylabel("loss (class-weighted CE)")
    axes[1].plot(epochs, [r.train_acc for r in records], "o-", label="train")
    axes[1].plot(epochs, [r.val_acc for r in records], "o-", label="val")
    axes[1].set_ylabel("accuracy")
    axes[1].set_ylim(0, 1.02)
    axes[2].plot(epochs, [r.lr for r in records], "o-", color="tab:green")
    axes[2].set_ylabel("learning rate")
    if records and min(r.lr for r in records) > 0:
        axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if best_epoch is not None and ax is not axes[2]:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best")
    axes[0].legend()
    axes[1].legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)

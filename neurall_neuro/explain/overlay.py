"""Rendering saliency maps over their images as PNG figures (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurall_neuro.figures import pyplot, save_figure

#: Opacity of the heat map drawn over the image.
ALPHA = 0.5


def _image_array(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``(H, W, 3)`` float array for imshow."""
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def save_overlay(
    image: torch.Tensor,
    heatmap: torch.Tensor,
    path: str | Path,
    title: str = "",
    heatmap_label: str = "saliency",
) -> Path:
    """Two panels: the input image and the heat map (``[H, W]`` in [0, 1]) overlaid on it."""
    plt = pyplot()

    img = _image_array(image)
    heat = heatmap.detach().float().cpu().numpy()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.5))
    axes[0].imshow(img, interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(img, interpolation="nearest")
    shown = axes[1].imshow(
        heat, cmap="jet", alpha=ALPHA, vmin=0.0, vmax=1.0, interpolation="bilinear"
    )
    axes[1].set_title(heatmap_label, fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110)

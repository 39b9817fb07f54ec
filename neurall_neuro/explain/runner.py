"""Explaining a checkpoint's predictions on images: maps plus overlay PNGs.

``explain_images`` runs Grad-CAM and/or SAM on a batch of images and writes, per image
and method, ``<name>_<method>.png`` (image, overlay; predicted and true class in the
title) and with ``per_timestep`` one ``<name>_<method>_t<k>.png`` per simulation step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neurall_neuro.errors import ConfigError
from neurall_neuro.explain.gradcam import Explanation, grad_cam, is_spiking
from neurall_neuro.explain.overlay import save_overlay
from neurall_neuro.explain.sam import DEFAULT_GAMMA, sam
from neurall_neuro.models.checkpoint import Checkpoint, load_checkpoint

METHODS: tuple[str, ...] = ("gradcam", "sam", "all")


@dataclass
class ExplainResult:
    """Maps per method and the files written."""

    explanations: dict[str, Explanation]
    files: list[Path] = field(default_factory=list)


def methods_for(model: torch.nn.Module, method: str) -> list[str]:
    """Concrete methods for ``method`` (``all``: Grad-CAM, plus SAM for spiking models)."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is invalid; valid options: {', '.join(METHODS)}")
    spiking = is_spiking(model)
    if method == "sam" and not spiking:
        raise ConfigError("SAM needs a spiking model (it reads spike timing); use --method gradcam")
    if method == "all":
        return ["gradcam", "sam"] if spiking else ["gradcam"]
    return [method]


def _title(
    exp: Explanation, i: int, class_names: Sequence[str], true: int | None, name: str
) -> str:
    pred = int(exp.predicted[i])
    p = float(exp.probs[i, pred])
    truth = class_names[true] if true is not None and 0 <= true < len(class_names) else "?"
    mark = "" if true is None else (" (correct)" if true == pred else " (wrong)")
    return f"{name}\npredicted {class_names[pred]} ({p:.2f}) | true {truth}{mark}"


def explain_images(
    checkpoint: str | Path | Checkpoint,
    images: torch.Tensor,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    labels: Sequence[int | None] | None = None,
    method: str = "all",
    layer: str | None = None,
    per_timestep: bool = False,
    gamma: float = DEFAULT_GAMMA,
    target: int | None = None,
    device: str = "cpu",
) -> ExplainResult:
    """Explain ``images`` ``[B, 3, H, W]`` (preprocessed as the checkpoint says) and save PNGs."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    model = ckpt.model.to(device)
    batch = images.shape[0]
    names = list(names) if names is not None else [f"image{i:03d}" for i in range(batch)]
    labels = list(labels) if labels is not None else [None] * batch
    if len(names) != batch or len(labels) != batch:
        raise ConfigError(f"{len(names)} names and {len(labels)} labels for {batch} images")
    out = Path(out_dir)
    result = ExplainResult(explanations={})
    for m in methods_for(model, method):
        if m == "gradcam":
            exp = grad_cam(model, images, target=target, layer=layer)
        else:
            exp = sam(model, images, layer=layer, gamma=gamma)
        result.explanations[m] = exp
        label = "Grad-CAM" if m == "gradcam" else f"SAM (gamma {gamma:g})"
        for i in range(batch):
            title = _title(exp, i, ckpt.class_names, labels[i], names[i])
            heading = f"{label}, {exp.layer}"
            result.files.append(
                save_overlay(images[i], exp.maps[i], out / f"{names[i]}_{m}.png", title, heading)
            )
            if per_timestep and exp.step_maps is not None:
                for t in range(exp.step_maps.shape[0]):
                    result.files.append(
                        save_overlay(
                            images[i], exp.step_maps[t, i], out / f"{names[i]}_{m}_t{t}.png",
                            title, f"{heading}, step {t}",
                        )
                    )  # fmt: skip
    return result

r"""Grad-CAM for CNNs and for spiking networks.

**CNN** (Selvaraju et al., 2017). For the activations :math:`A \in \mathbb{R}^{C\times
h\times w}` of a layer and the score :math:`y^c` (logit) of the explained class:

.. math::
    \alpha_k = \frac{1}{hw}\sum_{i,j} \frac{\partial y^c}{\partial A_{k,ij}}, \qquad
    L = \mathrm{ReLU}\Bigl(\sum_k \alpha_k A_k\Bigr).

**SNN** (the SNN-crafted Grad-CAM of Kim & Panda, 2021). ``A`` is a spiking layer's
output over time, ``[T, B, C, h, w]``; gradients of the class score (the time-mean
logit) w.r.t. the spikes flow through the surrogate spike derivative. Per timestep

.. math::
    \alpha_{t,k} = \frac{1}{hw}\sum_{i,j} \frac{\partial y^c}{\partial A_{t,k,ij}}, \qquad
    L_t = \mathrm{ReLU}\Bigl(\sum_k \alpha_{t,k} A_{t,k}\Bigr),

and the map is the average :math:`\frac{1}{T}\sum_t L_t`; ``step_maps`` keeps every
:math:`L_t`.

Maps are upsampled (bilinear) to the input size and scaled to [0, 1] per image (the
per-step maps of one image share one scale, so steps are comparable); an all-zero map
stays zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurall_neuro.errors import ConfigError


@dataclass
class Explanation:
    """A batch of saliency maps.

    Attributes:
        method: ``gradcam`` or ``sam``.
        layer: name of the explained layer.
        maps: ``[B, H, W]`` maps at input resolution, scaled to [0, 1] per image.
        raw: ``[B, h, w]`` unscaled maps at the layer's resolution.
        step_maps: ``[T, B, H, W]`` per-timestep maps in [0, 1] (spiking models), else None.
        target: ``[B]`` explained class of every image.
        predicted: ``[B]`` predicted class. probs: ``[B, K]`` class probabilities.
    """

    method: str
    layer: str
    maps: torch.Tensor
    raw: torch.Tensor
    step_maps: torch.Tensor | None
    target: torch.Tensor
    predicted: torch.Tensor
    probs: torch.Tensor


def is_spiking(model: nn.Module) -> bool:
    """Whether ``model`` is an SNN with ``run(images, record=True)`` (e.g. ``NeurAllNet``)."""
    return hasattr(model, "run") and hasattr(model, "spiking_layer_names")


def module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def default_layer(model: nn.Module) -> str:
    """The layer explained unless ``layer`` is given.

    SNN: the last LIF layer (its spikes before SE gating). SE-CNN: the output of the
    last residual stage before its max-pooling (``features.<last>.relu2``). Other
    networks: the last ``Conv2d``.
    """
    if is_spiking(model):
        lifs = [n for n in model.spiking_layer_names() if n.startswith("lif")]
        names = lifs or model.spiking_layer_names()
        if not names:
            raise ConfigError("the spiking model has no spiking layers to explain")
        return names[-1]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) and hasattr(features[-1], "relu2"):
        last = list(features.named_children())[-1][0]
        return f"features.{last}.relu2"
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError("cannot choose a Grad-CAM layer: the model has no Conv2d; pass layer=...")
    return convs[-1]


def normalize_maps(maps: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Scale ``maps`` to [0, 1] by their maximum over ``dims`` (zero maps stay zero)."""
    peak = maps.amax(dim=dims, keepdim=True)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``[N, h, w]`` maps to ``size`` (non-negative maps stay >= 0)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    out = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return out.squeeze(1).clamp_min(0.0)


def _targets(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    batch, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, device=logits.device).long().expand(batch).clone()
    if (t < 0).any() or (t >= k).any():
        raise ConfigError(f"target class must be in 0..{k - 1}, got {t.tolist()}")
    return t


def _cnn_grad_cam(
    model: nn.Module, images: torch.Tensor, target: int | torch.Tensor | None, layer: str
) -> Explanation:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ConfigError(
            f"unknown layer {layer!r}; valid layers: {', '.join(module_names(model))}"
        )
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(output)

    handle = modules[layer].register_forward_hook(hook)
    try:
        logits = model(images)
    finally:
        handle.remove()
    if not captured or captured[-1].dim() != 4:
        raise ConfigError(f"layer {layer!r} does not output [B, C, H, W] feature maps")
    acts = captured[-1]
    tgt = _targets(logits, target)
    score = logits.gather(1, tgt[:, None]).sum()
    (grads,) = torch.autograd.grad(score, acts)
    alpha = grads.mean(dim=(2, 3), keepdim=True)
    raw = F.relu((alpha * acts).sum(dim=1)).detach()
    maps = normalize_maps(upsample(raw, tuple(images.shape[-2:])), (1, 2))
    return Explanation(
        method="gradcam", layer=layer, maps=maps, raw=raw, step_maps=None, target=tgt.detach(),
        predicted=logits.argmax(1).detach(), probs=torch.softmax(logits.detach().float(), 1),
    )  # fmt: skip


def _snn_grad_cam(
    model: nn.Module, images: torch.Tensor, target: int | torch.Tensor | None, layer: str
) -> Explanation:
    run = model.run(images, record=True)
    if layer not in run.spikes:
        raise ConfigError(
            f"unknown spiking layer {layer!r}; valid layers: {', '.join(sorted(run.spikes))}"
        )
    spikes = run.spikes[layer]  # [T, B, C, h, w]
    if spikes.dim() != 5:
        raise ConfigError(f"layer {layer!r} does not output [T, B, C, H, W] spike maps")
    tgt = _targets(run.logits, target)
    score = run.logits.gather(1, tgt[:, None]).sum()
    (grads,) = torch.autograd.grad(score, spikes)
    alpha = grads.mean(dim=(3, 4), keepdim=True)
    steps_raw = F.relu((alpha * spikes).sum(dim=2)).detach()  # [T, B, h, w]
    raw = steps_raw.mean(dim=0)
    size = tuple(images.shape[-2:])
    steps, batch = steps_raw.shape[:2]
    steps_up = upsample(steps_raw.flatten(0, 1), size).unflatten(0, (steps, batch))
    step_maps = normalize_maps(steps_up.transpose(0, 1), (1, 2, 3)).transpose(0, 1)
    maps = normalize_maps(upsample(raw, size), (1, 2))
    return Explanation(
        method="gradcam", layer=layer, maps=maps, raw=raw, step_maps=step_maps, target=tgt.detach(),
        predicted=run.logits.argmax(1).detach(), probs=torch.softmax(run.logits.detach().float(), 1),
    )  # fmt: skip


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    target: int | torch.Tensor | None = None,
    layer: str | None = None,
) -> Explanation:
    """Grad-CAM maps of ``images`` ``[B, 3, H, W]`` for class ``target`` (default: predicted).

    Works for CNNs (any module name as ``layer``) and for spiking models exposing
    ``run(images, record=True)`` (``layer``: a spiking layer name, e.g. ``lif4``).
    The model is run in eval mode; its training flag is restored afterwards.
    """
    if images.dim() != 4:
        raise ConfigError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    layer = layer or default_layer(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = images.to(device).clone().requires_grad_(True)  # a graph exists even with frozen weights
    try:
        with torch.enable_grad():
            if is_spiking(model):
                return _snn_grad_cam(model, x, target, layer)
            return _cnn_grad_cam(model, x, target, layer)
    finally:
        model.train(was_training)

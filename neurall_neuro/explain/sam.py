r"""Spike activation maps (SAM; Kim & Panda, 2021): gradient-free saliency from spike timing.

For a spiking layer with spikes :math:`S_{t,k,ij} \in \{0, 1\}` (timestep ``t``,
channel ``k``, position ``(i, j)``), the **neuronal contribution score** counts the
neuron's previous spikes, each discounted by how long ago it fired:

.. math::
    N_{t,k,ij} = \sum_{t' < t,\; S_{t',k,ij} = 1} e^{-\gamma (t - t')}

(computed recursively: :math:`N_0 = 0`, :math:`N_t = e^{-\gamma}(N_{t-1} + S_{t-1})`).
A neuron firing now after short inter-spike intervals carries the most information.
The map at step ``t`` sums, over channels, the scores of the neurons that fire at ``t``:

.. math::
    M_{t,ij} = \sum_k N_{t,k,ij}\, S_{t,k,ij}

and the image's map is :math:`\sum_t M_t`. SAM needs no gradients and no class label;
it is non-negative, and zero for a silent layer. At ``t = 0`` no neuron has a past, so
:math:`M_0 = 0`: SAM needs ``T >= 2``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.explain.gradcam import (
    Explanation,
    default_layer,
    is_spiking,
    normalize_maps,
    upsample,
)

#: Default decay of the temporal kernel exp(-gamma * steps).
DEFAULT_GAMMA = 0.5


def spike_activation_map(spikes: torch.Tensor, gamma: float = DEFAULT_GAMMA) -> torch.Tensor:
    """Per-timestep SAM ``[T, B, h, w]`` of spikes ``[T, B, C, h, w]`` (see the module docstring)."""
    if spikes.dim() != 5:
        raise ConfigError(f"spikes must be [T, B, C, H, W], got shape {tuple(spikes.shape)}")
    if not gamma >= 0:
        raise ConfigError(f"gamma must be >= 0, got {gamma}")
    decay = math.exp(-gamma)
    spikes = spikes.float()
    score = torch.zeros_like(spikes[0])
    maps = []
    for t in range(spikes.shape[0]):
        if t > 0:
            score = decay * (score + spikes[t - 1])
        maps.append((score * spikes[t]).sum(dim=1))
    return torch.stack(maps)


@torch.no_grad()
def sam(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    gamma: float = DEFAULT_GAMMA,
) -> Explanation:
    """SAM of ``images`` ``[B, 3, H, W]`` for a spiking model's ``layer`` (default: last LIF)."""
    if not is_spiking(model):
        raise ConfigError(
            "SAM explains spiking models only (it reads spike timing); use Grad-CAM for CNNs"
        )
    layer = layer or default_layer(model)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        run = model.run(images.to(device), record=True)
    finally:
        model.train(was_training)
    if layer not in run.spikes:
        raise ConfigError(
            f"unknown spiking layer {layer!r}; valid layers: {', '.join(sorted(run.spikes))}"
        )
    steps_raw = spike_activation_map(run.spikes[layer], gamma)  # [T, B, h, w]
    raw = steps_raw.sum(dim=0)
    size = tuple(images.shape[-2:])
    steps, batch = steps_raw.shape[:2]
    steps_up = upsample(steps_raw.flatten(0, 1), size).unflatten(0, (steps, batch))
    step_maps = normalize_maps(steps_up.transpose(0, 1), (1, 2, 3)).transpose(0, 1)
    logits = run.logits.float()
    predicted = logits.argmax(1)
    return Explanation(
        method="sam", layer=layer, maps=normalize_maps(upsample(raw, size), (1, 2)), raw=raw,
        step_maps=step_maps, target=predicted, predicted=predicted, probs=torch.softmax(logits, 1),
    )  # fmt: skip

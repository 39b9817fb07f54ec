r"""Fast inference path for the SE-SNN (``NeurAllNet.to_inference()``).

Same weights, same arithmetic, less overhead. It relies on three facts:

* the network is feed-forward, so it can be executed layer by layer: every stateless
  layer (convolution, BatchNorm, pooling, linear) processes all ``T`` timesteps in one
  call with time folded into the batch; only the LIF recurrences loop over time;
* the direct-encoded first layer receives the same current at every step, computed once;
* at inference no surrogate-gradient bookkeeping is needed: the LIF step is done with
  in-place tensor operations in exactly Norse's order of floating-point operations,

.. math::
    d = I[t] - v;\quad d \leftarrow (\Delta t/\tau)\, d;\quad v \leftarrow v + d;\quad
    z = [v > v_\text{th}];\quad v \leftarrow v - v z,

so spikes are bit-identical to ``norse.torch.functional.lif_box_feed_forward_step``
(``(I + v_leak) - v`` with ``v_leak = 0`` rounds the same as ``I - v``, and
``v - v_th > 0`` holds exactly when ``v > v_th`` for finite floats, and ``v - v z`` is
exactly Norse's reset ``(1 - z) v + z v_reset`` for ``z`` in {0, 1} and ``v_reset = 0``).

Optional ``channels_last`` memory format is measured in ``benchmarks/``; it is used only
where it pays.

This module depends only on the shared pieces of :mod:`neurall_neuro.models.spiking`
(the model's structure, :class:`~neurall_neuro.models.spiking.LayerMajorSNN`, and the
result type): ``NeurAllNet`` imports it, not the other way round.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.se_block import SEBlock
from neurall_neuro.models.spiking import LayerMajorSNN, SNNRun


def lif_multi_step(
    currents: torch.Tensor, decay: torch.Tensor, v_th: float, steps: int | None = None
) -> torch.Tensor:
    """Run a box-LIF population over time without autograd; returns ``[T, ...]`` spikes.

    ``currents`` is ``[T, ...]``, or ``[...]`` together with ``steps`` for a constant input.
    ``decay`` is the 0-dim tensor ``dt * (1/tau)`` computed exactly as Norse does. State
    and spikes keep the input's memory format (channels-last stays channels-last).
    """
    constant = steps is not None
    first = currents if constant else currents[0]
    steps = steps if constant else currents.shape[0]
    v = torch.zeros_like(first)
    delta = torch.empty_like(first)
    spikes = _empty_steps(first, steps)
    for t in range(steps):
        torch.sub(currents if constant else currents[t], v, out=delta)
        delta.mul_(decay)
        v.add_(delta)
        torch.gt(v, v_th, out=spikes[t])  # z as 0./1. in the spike tensor itself
        v.addcmul_(v, spikes[t], value=-1.0)  # v - v*z: exactly 0 where z = 1, v elsewhere
    return spikes


def _empty_steps(like: torch.Tensor, steps: int) -> torch.Tensor:
    """An uninitialised ``[steps, *like.shape]`` tensor whose every step has ``like``'s layout."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        folded = torch.empty(
            (steps * like.shape[0], *like.shape[1:]),
            dtype=like.dtype,
            device=like.device,
            memory_format=torch.channels_last,
        )
        return folded.unflatten(0, (steps, like.shape[0]))
    return torch.empty((steps, *like.shape), dtype=like.dtype, device=like.device)


def _decay(layer: LIFLayer) -> torch.Tensor:
    # Norse computes ``dt * p.tau_mem_inv`` (python float times float32 0-dim tensor).
    return layer.dt * layer.params.tau_mem_inv


class InferenceNeurAllNet(nn.Module):
    """Inference-only execution of a ``NeurAllNet`` (a frozen copy of its weights).

    ``model``: a module with the :class:`~neurall_neuro.models.spiking.LayerMajorSNN`
    structure (``config.timesteps``, ``encode``, ``body``, ``readout``).
    """

    def __init__(self, model: nn.Module, channels_last: bool = False):
        if not isinstance(model, LayerMajorSNN):
            missing = [a for a in ("config", "encode", "body", "readout") if not hasattr(model, a)]
            raise ConfigError(
                "the fast inference path needs a layer-major SNN with config, encode(), body "
                f"and readout; {type(model).__name__} lacks {', '.join(missing)}"
            )
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.channels_last = channels_last
        if channels_last:
            # Spatial convolutions only: the SE block's 1x1 convolutions on 1x1 maps would
            # pick another kernel for channels-last weights and round differently.
            for module in self.model.modules():
                if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
                    module.to(memory_format=torch.channels_last)
        self.config = self.model.config

    def _lif(self, layer: LIFLayer, x: torch.Tensor, steps: int, constant: bool) -> torch.Tensor:
        return lif_multi_step(x, _decay(layer), layer.v_th, steps if constant else None)

    def _se(self, block: SEBlock, spikes: torch.Tensor) -> torch.Tensor:
        steps, batch = spikes.shape[:2]
        # The excitation step by step on the reference's batch shape [B, C, 1, 1]: the 1x1
        # convolutions pick their kernel by batch size (and thread count) and would round
        # differently on T*B rows. The spatial mean is taken in the reference's NCHW
        # order (a channels-last reduction sums in another order). Both are tiny.
        hidden = torch.stack(
            [block.fc1(block.squeeze(spikes[t].contiguous())) for t in range(steps)]
        )
        if block.mode == "spiking":
            hidden = self._lif(block.act1, hidden, steps, False)
            gate = self._lif(
                block.act2, torch.stack([block.fc2(hidden[t]) for t in range(steps)]), steps, False
            )
        else:
            gate = torch.stack([block.act2(block.fc2(block.act1(hidden[t]))) for t in range(steps)])
        return (spikes.flatten(0, 1) * gate.flatten(0, 1)).unflatten(0, (steps, batch))

    @torch.inference_mode()
    def run(
        self, images: torch.Tensor, timesteps: int | None = None, record: bool = False
    ) -> SNNRun:
        steps = timesteps or self.config.timesteps
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        x = self.model.encode(images)
        batch = x.shape[0]
        constant = True  # the first LIF sees the same current at every step
        spikes: dict[str, torch.Tensor] = {}
        for name, module in self.model.body.named_children():
            if isinstance(module, LIFLayer):
                x = self._lif(module, x, steps, constant)
                constant = False
            elif isinstance(module, SEBlock):
                x = self._se(module, x)
            else:
                x = module(x.flatten(0, 1)).unflatten(0, (steps, batch))
                continue
            if record:
                spikes[name] = x
        return SNNRun(logits=self.model.readout(x), step_logits=x, spikes=spikes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images).logits

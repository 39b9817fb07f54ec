r"""Squeeze-and-Excitation (SE) channel attention for spiking feature maps.

For spikes :math:`s_t \in \{0,1\}^{C \times H \times W}` at timestep :math:`t`:

* squeeze: :math:`q_t[c] = \frac{1}{HW}\sum_{h,w} s_t[c,h,w]` (spatial average pooling);
* excitation: :math:`e_t = W_2\, \phi(W_1 q_t + b_1) + b_2` (two 1x1 convolutions,
  reduction ``r``: ``C -> max(4, C // r) -> C``);
* gate: :math:`y_t[c,h,w] = s_t[c,h,w] \cdot g_t[c]`.

Three modes (``SEBlock.mode``):

``none``
    identity (the ablation).
``analog``
    :math:`\phi = \mathrm{ReLU}`, :math:`g_t = \sigma(e_t) \in (0,1)`: the usual SE gate.
    Its output is no longer binary (the next layer performs MACs, not ACs) and a product
    of two signals has no NIR primitive, so export folds it: the gate is replaced by its
    expectation over a calibration set (see ``conversion``).
``spiking``
    :math:`\phi` is a LIF population and the gate is a memoryless spiking neuron,
    :math:`g_t = \Theta(e_t - \vartheta)`, so gate and features are both binary and the
    product is an AND. One threshold neuron computes it on hardware:
    :math:`y_t = \Theta(s_t + g_t - 1.5)`; for binary inputs that equals
    :math:`s_t \cdot g_t`, which is what training uses (with surrogate gradients through
    both spike functions). Everything maps to NIR primitives: AvgPool2d, Conv2d, LIF, a
    broadcasting grouped Conv2d, and a LIF with ``tau = dt`` and threshold 1.5.

The gate bias is initialised so gates start open (every feature passes) and training
learns which channels to suppress.
"""

from __future__ import annotations

import torch
from torch import nn

from neurall_neuro.models.config import check_choice
from neurall_neuro.models.neurons import LIFLayer

SE_MODES = ("none", "analog", "spiking")

#: Threshold of the AND neuron that implements the spiking gate on hardware.
AND_THRESHOLD = 1.5


class ChannelGate(nn.Module):
    """``features * gate`` with the per-channel gate broadcast over space.

    A module (not a bare ``*``) so that forward hooks, e.g. the energy counter, see it.
    ``features``: ``[N, C, H, W]``; ``gate``: ``[N, C, 1, 1]``.
    """

    def forward(self, features: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return features * gate


class SEBlock(nn.Module):
    """SE channel attention over a ``[T, B, C, H, W]`` spike tensor (see module docstring)."""

    stateful = True

    def __init__(
        self,
        channels: int,
        mode: str = "spiking",
        reduction: int = 8,
        tau_mem: float = 2e-4,
        tau_gate: float = 1e-4,
        v_th: float = 1.0,
        dt: float = 1e-4,
    ):
        super().__init__()
        check_choice("se_mode", mode, SE_MODES)
        self.mode = mode
        self.channels = channels
        self.hidden = max(4, channels // reduction)
        if mode == "none":
            return
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, self.hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(self.hidden, channels, kernel_size=1)
        self.gate = ChannelGate()
        if mode == "analog":
            self.act1: nn.Module = nn.ReLU()
            self.act2: nn.Module = nn.Sigmoid()
            nn.init.constant_(self.fc2.bias, 2.0)  # sigmoid(2) = 0.88: mostly open at start
        else:
            self.act1 = LIFLayer(tau_mem=tau_mem, v_th=v_th, dt=dt)
            self.act2 = LIFLayer(tau_mem=tau_gate, v_th=v_th, dt=dt)
            nn.init.constant_(self.fc2.bias, 2.0 * v_th)  # memoryless gate: e_t > v_th => open

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}, hidden={self.hidden}"

    def gate_values(self, spikes: torch.Tensor) -> torch.Tensor:
        """The gate ``g`` as ``[T, B, C, 1, 1]`` for a ``[T, B, C, H, W]`` input."""
        if self.mode == "none":
            raise RuntimeError("SEBlock in mode 'none' has no gate")
        steps, batch = spikes.shape[:2]
        q = self.squeeze(spikes.flatten(0, 1))
        hidden = self.fc1(q)
        if self.mode == "spiking":
            hidden = self.act1(hidden.unflatten(0, (steps, batch))).flatten(0, 1)
        else:
            hidden = self.act1(hidden)
        excitation = self.fc2(hidden)
        if self.mode == "spiking":
            return self.act2(excitation.unflatten(0, (steps, batch)))
        return self.act2(excitation).unflatten(0, (steps, batch))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return spikes
        gate = self.gate_values(spikes)
        return self.gate(spikes.flatten(0, 1), gate.flatten(0, 1)).unflatten(0, spikes.shape[:2])

    def initial_state(self) -> tuple:
        return (None, None)

    def step(self, spikes: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """One timestep on ``[B, C, H, W]`` spikes: returns ``(gated spikes, new_state)``."""
        if self.mode == "none":
            return spikes, ()
        hidden_state, gate_state = state or (None, None)
        hidden = self.fc1(self.squeeze(spikes))
        if self.mode == "spiking":
            hidden, hidden_state = self.act1.step(hidden, hidden_state)
            gate, gate_state = self.act2.step(self.fc2(hidden), gate_state)
        else:
            gate = self.act2(self.fc2(self.act1(hidden)))
        return self.gate(spikes, gate), (hidden_state, gate_state)

r"""Spiking neuron layers built on Norse's box LIF neuron (a LIF without synaptic current).

Dynamics (forward Euler with step :math:`\Delta t`, Norse ``lif_box_feed_forward_step``):

.. math::
    v[t] = v[t-1] + \frac{\Delta t}{\tau_\text{mem}} \bigl(v_\text{leak} - v[t-1] + I[t]\bigr)

    z[t] = \Theta\bigl(v[t] - v_\text{th}\bigr) \quad (\text{strict: } z = 1 \text{ iff } v > v_\text{th})

    v[t] \leftarrow (1 - z[t])\, v[t] + z[t]\, v_\text{reset}

with :math:`v_\text{leak} = v_\text{reset} = 0` and :math:`v[-1] = 0`. This is exactly
NIR's ``LIF`` node (``tau * dv/dt = (v_leak - v) + r * I`` with ``r = 1``) discretised
with the project's one dt convention (``dt = 1e-4`` s per step, :data:`DEFAULT_DT`; see
:mod:`neurall_neuro.models.neurallnet`), and a Loihi CUBA neuron with ``du = 4095``
(no current memory) and ``dv = 4096 * dt / tau``. With ``tau = dt`` the neuron is
memoryless: ``v[t] = I[t]`` (a threshold unit).

Training uses Norse's SuperSpike surrogate gradient. In Norse 1.1.0 its backward pass is
:math:`\partial z / \partial v \approx 1 / (|v - v_\text{th}| + 1)^2` — the ``alpha``
parameter of ``LIFBoxParameters`` is stored but not used by the gradient — so no sharpness
parameter is exposed here.
"""

from __future__ import annotations

import torch
from norse.torch.functional.lif_box import (
    LIFBoxFeedForwardState,
    LIFBoxParameters,
    lif_box_feed_forward_step,
)
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.models.config import check_positive

#: The project's one time-step convention (seconds per simulation step).
DEFAULT_DT = 1e-4


class LIFLayer(nn.Module):
    """A population of box-LIF neurons run over time.

    ``forward`` takes a ``[T, B, ...]`` input current and returns ``[T, B, ...]`` spikes
    (all timesteps at once: the multi-step path used for training and fast inference).
    ``step`` advances one timestep with explicit state (the classic Norse usage); both
    call the same Norse step function, so they produce identical spikes.
    """

    stateful = True

    def __init__(self, tau_mem: float, v_th: float = 1.0, dt: float = DEFAULT_DT):
        super().__init__()
        check_positive("tau_mem", tau_mem)
        check_positive("dt", dt)
        if tau_mem < dt:
            raise ConfigError(f"tau_mem ({tau_mem}) must be >= dt ({dt}) for a stable Euler step")
        self.tau_mem = float(tau_mem)
        self.v_th = float(v_th)
        self.dt = float(dt)
        # Constants as non-persistent buffers: they follow .to(device) but stay out of state dicts.
        self.register_buffer("_tau_mem_inv", torch.tensor(1.0 / self.tau_mem), persistent=False)
        self.register_buffer("_v_th", torch.tensor(self.v_th), persistent=False)
        self.register_buffer("_zero", torch.tensor(0.0), persistent=False)
        self.register_buffer("_one", torch.tensor(1.0), persistent=False)

    def extra_repr(self) -> str:
        return f"tau_mem={self.tau_mem:g}, v_th={self.v_th:g}, dt={self.dt:g}"

    def initial_state(self, like: torch.Tensor) -> LIFBoxFeedForwardState:
        return LIFBoxFeedForwardState(v=torch.zeros_like(like))

    def step(
        self, current: torch.Tensor, state: LIFBoxFeedForwardState | None = None
    ) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
        """One timestep: returns ``(spikes, new_state)``."""
        if state is None:
            state = self.initial_state(current)
        return lif_box_feed_forward_step(current, state, self.params, self.dt)

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        state = self.initial_state(currents[0])
        params = self.params
        spikes = []
        for current in currents:
            z, state = lif_box_feed_forward_step(current, state, params, self.dt)
            spikes.append(z)
        return torch.stack(spikes)

    @property
    def params(self) -> LIFBoxParameters:
        """Norse parameters (``v_leak = v_reset = 0``)."""
        return LIFBoxParameters(
            tau_mem_inv=self._tau_mem_inv,
            v_leak=self._zero,
            v_th=self._v_th,
            v_reset=self._zero,
            method="super",
            alpha=self._one,  # stored by Norse, unused by its 1.1.0 SuperSpike backward
        )

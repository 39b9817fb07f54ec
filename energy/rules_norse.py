r"""Counting rules for Norse 1.1.0 neuron modules (registered with the torch-hook counter).

Imported by :class:`energy.torch_counter.OpCounter` on first use (listed in
:data:`energy.counting_rules.BUILTIN_RULE_MODULES`); Norse is a core dependency. Cells
(``*Cell``) are called once per timestep on ``[B, ...]`` with a state and return
``(output, state)``; sequence modules (``LIF``, ``LI``, ``IAF``, ``LIFRecurrent``) take
``[T, B, ...]``. Drive a model of cells with ``count_model(model, x, timesteps=T)``
(:mod:`energy.input_modes`).

Neurons (Norse's discretisation, ``dt`` the step):

==================== ========== ============================================================
module               kind       one step (``z`` spikes, ``Theta`` the Heaviside step)
==================== ========== ============================================================
``LIFCell``, ``LIF`` ``cubalif`` :math:`i \leftarrow i + x`,
                                :math:`v \leftarrow v + \frac{dt}{\tau_m}(v_l - v + i)`,
                                :math:`i \leftarrow i - \frac{dt}{\tau_s} i`,
                                :math:`z = \Theta(v - v_{th})`, reset
                                :math:`v \leftarrow (1 - z) v + z v_r`
``LIFBoxCell``       ``lif``    :math:`v \leftarrow v + \frac{dt}{\tau_m}(v_l - v + x)`,
                                :math:`z = \Theta(v - v_{th})`, reset
``IAFCell``, ``IAF`` ``if``     :math:`v \leftarrow v + x`, :math:`z = \Theta(v - v_{th})`, reset
``LICell``, ``LI``   ``cubali`` as ``LIFCell`` without threshold: the output is :math:`v`
``LIBoxCell``        ``li``     :math:`v \leftarrow v + \frac{dt}{\tau_m}(v_l - v + x)`, output
                                :math:`v`
==================== ========== ============================================================

Counted per population of :math:`N` neurons over :math:`T` steps and :math:`B` samples:

* **neuron updates** :math:`= T B N`: one per neuron per step, whatever its number of
  state variables. ``LIFCell``/``LICell`` (CUBA: a current :math:`i` and a voltage
  :math:`v`) update two state variables in that one neuron update, as a Loihi CUBA
  compartment updates :math:`u` and :math:`v` in one (priced once per profile's
  ``neuron_update``); the row's note says how many state variables it holds;
* **spikes** :math:`= \sum_{t, b, n} z_{t,b,n}` for the spiking kinds (``cubalif``,
  ``lif``, ``if``); the voltage readouts ``LICell``, ``LI``, ``LIBoxCell`` emit none
  (their kinds are non-spiking: excluded from firing rates).

Recurrent populations (``LIFRecurrentCell``, ``LIFRecurrent``: ``H`` CUBA LIF neurons with
input weights :math:`W_{in}` ``[H, I]`` and recurrent weights :math:`W_{rec}` ``[H, H]``,
:math:`i \leftarrow i + W_{in} x_t + W_{rec} z_{t-1}`) give three rows:

* ``<name>.input_weights``: :math:`\sum_i n_i F^{in}_i` with :math:`F^{in}_i = H` (every
  entry of :math:`W_{in}` is a synapse): ACs when :math:`x` is binary, else MACs;
  dense :math:`T B I H`;
* ``<name>.recurrent_weights``: every spike the population emits is delivered once to its
  exact fan-out :math:`F^{rec}_j = H - 1` (Norse removes the autapses, ``autapses=False``:
  no neuron synapses onto itself) or :math:`H` (``autapses=True``):
  :math:`\text{synops} = \sum_j s_j F^{rec}_j` with :math:`s_j` the spikes of neuron
  :math:`j` over the :math:`T` steps (event-driven: a spike is routed when emitted and
  integrated at the next step, so the last step's spikes count too, as the NIR counter
  counts them from spike totals), dense :math:`T B \sum_j F^{rec}_j`;
* ``<name>``: the neurons (updates and spikes, as above).

Norse 1.1.0 has no ``LIFBoxRecurrentCell``, ``LIFBox`` or ``LIBox`` module (only their
cells and functional steps), so there is no rule for them here.
"""

from __future__ import annotations

import torch
from norse.torch.module.iaf import IAF, IAFCell
from norse.torch.module.leaky_integrator import LI, LICell
from norse.torch.module.leaky_integrator_box import LIBoxCell
from norse.torch.module.lif import LIF, LIFCell, LIFRecurrent, LIFRecurrentCell
from norse.torch.module.lif_box import LIFBoxCell
from torch import nn

import energy.role_handlers  # noqa: F401  (registers the built-in roles these rules name)
from energy.counting_rules import ModuleRule, RecurrentSpec, register_module_rule

#: One state variable (``v``) or two (CUBA: ``v`` and the synaptic current ``i``).
_ONE_STATE = "1 state variable (v): one neuron update per neuron per step"
_TWO_STATES = "2 state variables (v, i): one neuron update per neuron per step covers both"


def _input_mask(cell: nn.Module) -> torch.Tensor:
    """Every entry of ``input_weights [H, I]`` is a synapse (zero weights included)."""
    return torch.ones_like(cell.input_weights, dtype=torch.bool)


def _recurrent_mask(cell: nn.Module) -> torch.Tensor:
    """``recurrent_weights [H, H]`` without the diagonal unless ``autapses`` is set."""
    mask = torch.ones_like(cell.recurrent_weights, dtype=torch.bool)
    if not getattr(cell, "autapses", False):
        mask.fill_diagonal_(False)
    return mask


_RECURRENT = RecurrentSpec(_input_mask, _recurrent_mask)

for _classes, _rule in (
    ((LIFCell,), ModuleRule("neuron", kind="cubalif", note=_TWO_STATES, time_major=False)),
    ((LIF,), ModuleRule("neuron", kind="cubalif", note=_TWO_STATES, time_major=True)),
    ((LIFBoxCell,), ModuleRule("neuron", kind="lif", note=_ONE_STATE, time_major=False)),
    ((IAFCell,), ModuleRule("neuron", kind="if", note=_ONE_STATE, time_major=False)),
    ((IAF,), ModuleRule("neuron", kind="if", note=_ONE_STATE, time_major=True)),
    (
        (LICell,),
        ModuleRule("neuron", kind="cubali", note=_TWO_STATES, time_major=False, spiking=False),
    ),
    ((LI,), ModuleRule("neuron", kind="cubali", note=_TWO_STATES, time_major=True, spiking=False)),
    (
        (LIBoxCell,),
        ModuleRule("neuron", kind="li", note=_ONE_STATE, time_major=False, spiking=False),
    ),
    (
        (LIFRecurrentCell,),
        ModuleRule(
            "recurrent", kind="cubalif", note=_TWO_STATES, time_major=False, recurrent=_RECURRENT
        ),
    ),
    (
        (LIFRecurrent,),
        ModuleRule(
            "recurrent", kind="cubalif", note=_TWO_STATES, time_major=True, recurrent=_RECURRENT
        ),
    ),
):
    register_module_rule(*_classes, rule=_rule)

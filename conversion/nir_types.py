"""The groups of NIR node types that exporters, runtimes, counters and hardware mappings
reason about, defined once (nir 1.0.8 primitives).

Neuron dynamics (NIR's continuous form; see :mod:`conversion.nir_nodes` for the
discretisation):

* spiking: ``LIF`` (``tau dv/dt = (v_leak - v) + r I``, spike when ``v > v_threshold``,
  then ``v = v_reset``), ``IF`` (``dv/dt = r I``), ``CubaLIF`` (an ``LIF`` fed by a
  synaptic current ``tau_syn dI/dt = -I + w_in x``);
* analog (no spikes, the state is the output): ``LI``, ``CubaLI``, ``I`` (integrator).
"""

from __future__ import annotations

import nir

#: Neurons that emit binary spikes.
SPIKING_NEURONS: tuple[type[nir.NIRNode], ...] = (nir.LIF, nir.IF, nir.CubaLIF)
#: Neurons whose output is their (leaky) state: voltage readouts.
ANALOG_NEURONS: tuple[type[nir.NIRNode], ...] = (nir.LI, nir.CubaLI, nir.I)
#: Every stateful neuron type.
NEURONS: tuple[type[nir.NIRNode], ...] = SPIKING_NEURONS + ANALOG_NEURONS
#: Nodes whose output is binary (spiking neurons and the stateless ``Threshold``).
SPIKE_EMITTING: tuple[type[nir.NIRNode], ...] = (*SPIKING_NEURONS, nir.Threshold)
#: Nodes whose discretisation needs a ``dt`` (state evolves in time).
TIMED: tuple[type[nir.NIRNode], ...] = (*NEURONS, nir.Delay)
#: Nodes acting elementwise with parameters of the node's shape (or a broadcast scalar).
ELEMENTWISE: tuple[type[nir.NIRNode], ...] = (*NEURONS, nir.Threshold, nir.Delay, nir.Scale)
#: Dense synapses.
AFFINE: tuple[type[nir.NIRNode], ...] = (nir.Affine, nir.Linear)
#: Weighted synapses (a spike into them costs one operation per target).
SYNAPTIC: tuple[type[nir.NIRNode], ...] = (nir.Conv2d, *AFFINE)
#: Pooling.
POOLS: tuple[type[nir.NIRNode], ...] = (nir.AvgPool2d, nir.SumPool2d)
#: Nodes that move or reshape signals without arithmetic.
PASS_THROUGH: tuple[type[nir.NIRNode], ...] = (nir.Flatten, nir.Delay, nir.Input, nir.Output)

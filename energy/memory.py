r"""Memory-traffic model (after Lemaire et al., 2022), reported next to arithmetic-only energy.

Arithmetic-only estimates flatter SNNs: on real chips moving data costs more than the
arithmetic (Lemaire et al., "An Analytical Estimation of Spiking Neural Networks Energy
Efficiency", ICONIP 2022, arXiv:2210.13107; Yan et al. 2024 find an SNN at ``T = 5``
needs a spike rate below about 6 % to beat an equivalent quantised ANN once data
movement counts). Following the structure of Lemaire et al.'s model, every layer's
accesses are counted in values (words of the profile's ``word_bits``):

.. math::
    R_W &= \text{SynOps} + \text{MACs}_\text{dense} + \text{bias adds}
        &&\text{(one weight per synaptic event or MAC, one bias per bias add)}\\
    R_V = W_V &= \text{SynOps} + \text{neuron updates}
        &&\text{(membrane/accumulator read-modify-write per synaptic event and per update)}\\
    R_I &= \text{MACs}_\text{dense} + [\text{AC layer}]\,\text{input events}
        + [\text{element-wise}]\,\text{input elements}\\
    W_O &= \text{spikes} + [\text{MAC or element-wise layer}]\,\text{output elements}

Assumptions (stated, deliberately simple and dataflow-agnostic):

* no on-chip reuse: a MAC reads its weight and its input operand; an event-driven
  synaptic operation reads one weight and read-modify-writes the target neuron's state
  (the state lives in memory because events arrive in any order);
* partial sums of a MAC layer stay in a register: each output is written once;
* a neuron update reads and writes its membrane potential; an emitted spike is one
  write (an address event); a spike read by the next layer is one read;
* element-wise layers (pooling, ReLU, residual adds, the analog SE multiply) read each
  input once and write each output once; a folded BatchNorm only reads its bias;
* reads and writes cost the profile's per-access energy scaled to ``word_bits``
  (:mod:`energy.profiles`); neuromorphic profiles whose per-operation figures already
  include on-chip memory (``memory_included``) add no separate memory term.

``spike_scale`` multiplies every spike-driven quantity (SynOps, input events of AC
layers, spikes) for the break-even analysis (:mod:`energy.breakeven`).
"""

from __future__ import annotations

from dataclasses import dataclass

from energy.counts import LayerCounts


@dataclass(frozen=True)
class MemoryTraffic:
    """Memory accesses (values of the profile's word size) of one layer."""

    weight_reads: float = 0.0
    state_reads: float = 0.0
    state_writes: float = 0.0
    input_reads: float = 0.0
    output_writes: float = 0.0

    @property
    def reads(self) -> float:
        return self.weight_reads + self.state_reads + self.input_reads

    @property
    def writes(self) -> float:
        return self.state_writes + self.output_writes


def is_elementwise(layer: LayerCounts) -> bool:
    """A layer of element-wise operations only (no synapses, no neurons)."""
    synaptic_or_neural = layer.synops_dense or layer.macs_dense or layer.neuron_updates
    elementwise = layer.adds or layer.mults or layer.comparisons or layer.nonlinear
    return bool(elementwise) and not synaptic_or_neural


def layer_traffic(layer: LayerCounts, spike_scale: float = 1.0) -> MemoryTraffic:
    """Memory accesses of ``layer`` summed over its samples (see the module equations)."""
    synops = layer.synops * spike_scale
    elementwise = is_elementwise(layer)
    ac_inputs = (
        layer.input_events * spike_scale if layer.synops_dense and layer.input_binary else 0.0
    )
    return MemoryTraffic(
        weight_reads=synops + layer.macs_dense + layer.bias_adds,
        state_reads=synops + layer.neuron_updates,
        state_writes=synops + layer.neuron_updates,
        input_reads=layer.macs_dense + ac_inputs + (layer.input_elements if elementwise else 0),
        output_writes=layer.spikes * spike_scale
        + (layer.output_elements if (layer.macs_dense or elementwise) else 0),
    )

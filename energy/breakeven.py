r"""Break-even firing rate: the spike rate at which the SNN stops saving energy.

Assumption: every spike count of the SNN is scaled by one factor :math:`s` (the measured
spatial and temporal distribution of spikes is kept; every layer fires :math:`s` times
as much). Spike-driven quantities (SynOps, spikes emitted, and the memory traffic they
cause: weight reads, state read-modify-writes, spike reads and writes) scale with
:math:`s`; neuron updates, the direct-encoding MACs, biases and everything else do not.
Energy is then linear in :math:`s`,

.. math::
    E_\text{SNN}(s) = E_0 + s\,(E_1 - E_0), \qquad
    s^* = \frac{E_\text{CNN} - E_0}{E_1 - E_0}, \qquad
    r^* = s^*\, r_\text{measured},

where :math:`E_0 = E_\text{SNN}(0)`, :math:`E_1 = E_\text{SNN}(1)` (as measured) and
:math:`r` is the mean firing rate (spikes per spiking-neuron update). The SNN saves
energy for :math:`r < r^*`. If :math:`E_0 \ge E_\text{CNN}` the SNN never saves energy
(even silent); :math:`r^* > 1` means it saves at every possible rate (a neuron spikes at
most once per step). Computed for arithmetic-only and with-memory energies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from energy.counts import ModelCounts
from energy.pricing import price
from energy.profiles import EnergyProfile, ProfileCatalog


@dataclass
class BreakEven:
    """Break-even of the SNN on ``snn_profile`` against the CNN on ``cnn_profile``.

    ``scale``: :math:`s^*`; ``rate``: :math:`r^*` (``None`` when undefined, see ``status``);
    ``measured_rate``: the SNN's mean firing rate; ``basis``: ``arithmetic`` or
    ``with_memory``; ``status``: ``saves_below``, ``never_saves``, ``always_saves`` or
    ``no_spikes``.
    """

    snn_profile: str
    cnn_profile: str
    basis: str
    measured_rate: float | None
    scale: float | None
    rate: float | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.status == "never_saves":
            return "never (costs more even without spikes)"
        if self.status == "no_spikes":
            return "undefined (no spikes measured to scale)"
        assert self.rate is not None
        text = f"{self.rate:.4g} spikes/neuron/step ({self.scale:.3g}x measured)"
        return text + (" - saves at every rate" if self.status == "always_saves" else "")


def break_even(
    snn: ModelCounts,
    cnn_energy_pj: float,
    snn_profile: EnergyProfile,
    catalog: ProfileCatalog,
    cnn_profile: str,
    with_memory: bool,
) -> BreakEven:
    """Break-even firing rate of ``snn`` on ``snn_profile`` against a CNN costing ``cnn_energy_pj``."""
    basis = "with_memory" if with_memory else "arithmetic"

    def energy(scale: float) -> float:
        priced = price(snn, snn_profile, catalog, spike_scale=scale)
        return priced.total_pj if with_memory else priced.arithmetic_pj

    measured = snn.firing_rate
    e0, e1 = energy(0.0), energy(1.0)
    if e0 >= cnn_energy_pj:
        return BreakEven(snn_profile.name, cnn_profile, basis, measured, None, None, "never_saves")
    slope = e1 - e0
    if not measured or slope <= 0:
        return BreakEven(snn_profile.name, cnn_profile, basis, measured, None, None, "no_spikes")
    scale = (cnn_energy_pj - e0) / slope
    rate = scale * measured
    status = "always_saves" if rate > 1.0 else "saves_below"
    return BreakEven(snn_profile.name, cnn_profile, basis, measured, scale, rate, status)

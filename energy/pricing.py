r"""Energy per inference = operation counts x per-operation energies, per profile.

For a layer :math:`\ell` executed on profile :math:`p` (per sample):

.. math::
    E^\text{arith}_\ell = \sum_{\text{op}} n_{\ell,\text{op}}\, e_{p,\text{op}}, \qquad
    E^\text{mem}_\ell = R_\ell\, e^\text{read}_p + W_\ell\, e^\text{write}_p

with the counts mapped to operations as

=================  ==============  ======================================================
count              operation       note
=================  ==============  ======================================================
``synops``         ``ac``          effective (spike-driven) accumulates
``macs_dense``     ``mac``         a MAC engine does not skip zero operands
``adds``           ``add``
``mults``          ``mult``
``comparisons``    ``comparison``
``nonlinear``      ``nonlinear``
``bias_adds``      ``bias_add``
``neuron_updates`` ``neuron_update``
``spikes``         ``spike``
=================  ==============  ======================================================

and :math:`R, W` the reads and writes of :mod:`energy.memory`. A layer with an operation
the profile does not price (e.g. the direct-encoding convolution's MACs on a
neuromorphic chip) is executed, with all its operations and memory traffic, on the
profile's ``host`` (45 nm fp32 by default: the host CPU computes ``conv1(image)`` once per
image and hands it to the chip as a bias current). ``spike_scale`` multiplies every
spike-driven count (see :mod:`energy.breakeven`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from energy.counts import LayerCounts, ModelCounts
from energy.memory import layer_traffic
from energy.profiles import EnergyProfile, ProfileCatalog
from neurall_neuro.errors import ConfigError

#: Count field -> operation priced.
PRICED_COUNTS: dict[str, str] = {
    "synops": "ac",
    "macs_dense": "mac",
    "adds": "add",
    "mults": "mult",
    "comparisons": "comparison",
    "nonlinear": "nonlinear",
    "bias_adds": "bias_add",
    "neuron_updates": "neuron_update",
    "spikes": "spike",
}
#: Counts proportional to the number of spikes.
SPIKE_DRIVEN_COUNTS: tuple[str, ...] = ("synops", "spikes")


@dataclass
class LayerEnergy:
    """Energy of one layer per sample (picojoules)."""

    name: str
    executor: str
    arithmetic_pj: float
    memory_pj: float
    ops_pj: dict[str, float] = field(default_factory=dict)

    @property
    def total_pj(self) -> float:
        return self.arithmetic_pj + self.memory_pj


@dataclass
class ModelEnergy:
    """Energy of one model on one profile, per inference (picojoules).

    ``host_pj``: the part (arithmetic + memory) executed on the profile's host.
    """

    model: str
    role: str
    profile: str
    arithmetic_pj: float
    memory_pj: float
    host_pj: float = 0.0
    layers: list[LayerEnergy] = field(default_factory=list)
    ops_pj: dict[str, float] = field(default_factory=dict)

    @property
    def total_pj(self) -> float:
        """Arithmetic plus memory traffic."""
        return self.arithmetic_pj + self.memory_pj

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total_pj"] = self.total_pj
        out["layers"] = [{**asdict(layer), "total_pj": layer.total_pj} for layer in self.layers]
        return out


def layer_executor(
    layer: LayerCounts, profile: EnergyProfile, catalog: ProfileCatalog
) -> EnergyProfile:
    """``profile`` if it prices every operation ``layer`` performs, else its host."""
    needed = {op for count, op in PRICED_COUNTS.items() if getattr(layer, count)}
    if all(profile.supports(op) for op in needed):
        return profile
    host = catalog.host_of(profile)
    if host is None:
        missing = sorted(op for op in needed if not profile.supports(op))
        raise ConfigError(
            f"profile {profile.name!r} cannot price {', '.join(missing)} (layer {layer.name!r}) and has no host"
        )
    return host


def price_layer(
    layer: LayerCounts,
    profile: EnergyProfile,
    catalog: ProfileCatalog,
    samples: int,
    spike_scale: float = 1.0,
) -> LayerEnergy:
    """Energy per sample of one layer on ``profile`` (or its host, see the module docstring)."""
    executor = layer_executor(layer, profile, catalog)
    ops: dict[str, float] = {}
    for count, op in PRICED_COUNTS.items():
        n = getattr(layer, count)
        if not n:
            continue
        if count in SPIKE_DRIVEN_COUNTS:
            n = n * spike_scale
        ops[op] = ops.get(op, 0.0) + n * executor.energy(op) / samples
    traffic = layer_traffic(layer, spike_scale)
    memory = (traffic.reads * executor.read_pj + traffic.writes * executor.write_pj) / samples
    return LayerEnergy(
        name=layer.name,
        executor=executor.name,
        arithmetic_pj=sum(ops.values()),
        memory_pj=memory,
        ops_pj=ops,
    )


def price(
    counts: ModelCounts,
    profile: EnergyProfile,
    catalog: ProfileCatalog,
    role: str = "",
    spike_scale: float = 1.0,
) -> ModelEnergy:
    """Energy per inference of ``counts`` on ``profile``."""
    layers = [
        price_layer(layer, profile, catalog, counts.samples, spike_scale) for layer in counts.layers
    ]
    ops: dict[str, float] = {}
    for layer in layers:
        for op, pj in layer.ops_pj.items():
            ops[op] = ops.get(op, 0.0) + pj
    return ModelEnergy(
        model=counts.model,
        role=role,
        profile=profile.name,
        arithmetic_pj=sum(layer.arithmetic_pj for layer in layers),
        memory_pj=sum(layer.memory_pj for layer in layers),
        host_pj=sum(layer.total_pj for layer in layers if layer.executor != profile.name),
        layers=layers,
        ops_pj=ops,
    )

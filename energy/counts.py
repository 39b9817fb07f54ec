r"""Operation counts per layer and per model (the output of every counter).

All counts are exact integers summed over every frame of every counted sample; divide by
``samples`` for per-sample (per-inference) figures (:meth:`ModelCounts.per_sample`). A
*frame* is one timestep of one sample: a layer run for ``T`` timesteps has ``steps = T``
frames per sample, a layer computed once per image (the direct-encoding convolution) has
``steps = 1``.

Vocabulary (per layer):

``synops`` / ``synops_dense``
    accumulate operations (ACs) driven by binary inputs (spikes):
    :math:`\text{synops} = \sum_{\text{input spikes } i} F_i` (``F`` the exact fan-out,
    :mod:`energy.fanout`), and the dense figure :math:`\text{steps} \sum_i F_i` (every
    input active). Bias is not a synaptic operation (as in NeuroBench).
``macs`` / ``macs_dense``
    multiply-accumulates of a synaptic layer whose input is not binary (analog currents,
    images, SE-scaled or residual-summed activations): effective = over non-zero inputs,
    dense = over all inputs, with the same fan-out rule.
``adds``, ``mults``, ``comparisons``, ``nonlinear``
    element-wise operations: residual and pooling adds, the analog SE gate's multiplies,
    unfolded BatchNorm, ReLU and max-pool comparisons, sigmoid evaluations.
``bias_adds``
    one add per output element per frame of a layer with a bias (or a folded BN shift).
``neuron_updates`` / ``spikes``
    state updates of a neuron population (one per neuron per timestep) and spikes emitted.
``input_elements`` / ``input_events`` / ``output_elements``
    values entering the layer, how many of them were non-zero (spikes when binary), and
    values leaving it: the memory-traffic model (:mod:`energy.memory`) uses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from neurall_neuro.errors import ConfigError

#: Integer count fields of :class:`LayerCounts`, in report order.
COUNT_FIELDS: tuple[str, ...] = (
    "synops",
    "synops_dense",
    "macs",
    "macs_dense",
    "adds",
    "mults",
    "comparisons",
    "nonlinear",
    "bias_adds",
    "neuron_updates",
    "spikes",
    "input_elements",
    "input_events",
    "output_elements",
)


#: Layer kinds whose neurons are updated but never spike.
NON_SPIKING_KINDS: tuple[str, ...] = ("readout", "li", "cubali", "i")


@dataclass
class LayerCounts:
    """Exact operation counts of one layer, summed over ``samples`` samples.

    Attributes:
        name: the layer (module path or NIR node name).
        kind: what it is (``conv``, ``linear``, ``lif``, ``and-gate``, ``gate-mult``,
            ``avgpool``, ``maxpool``, ``batchnorm``, ``relu``, ``sigmoid``, ``residual``,
            ``readout``, ``identity``).
        steps: frames per sample (``T`` for per-timestep layers, 1 for once-per-image).
        neurons: size of the neuron population (neurons per frame) for neuron layers.
        input_binary: whether every input value was 0 or 1 (``None``: no synaptic input).
        folded: layers folded into this one (e.g. the average pool before a conv).
        note: free-text remark on how the layer was counted.
    """

    name: str
    kind: str
    steps: int = 1
    neurons: int = 0
    input_binary: bool | None = None
    folded: str = ""
    note: str = ""
    synops: int = 0
    synops_dense: int = 0
    macs: int = 0
    macs_dense: int = 0
    adds: int = 0
    mults: int = 0
    comparisons: int = 0
    nonlinear: int = 0
    bias_adds: int = 0
    neuron_updates: int = 0
    spikes: int = 0
    input_elements: int = 0
    input_events: int = 0
    output_elements: int = 0

    def merge(self, other: LayerCounts) -> None:
        """Add ``other``'s counts (same layer, another batch) into this one."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.steps = max(self.steps, other.steps)
        self.neurons = max(self.neurons, other.neurons)
        if other.input_binary is not None:
            self.input_binary = (
                other.input_binary
                if self.input_binary is None
                else self.input_binary and other.input_binary
            )
        if other.folded and other.folded not in self.folded.split(","):
            self.folded = ",".join(p for p in (self.folded, other.folded) if p)
        if other.note and other.note not in self.note:
            self.note = "; ".join(p for p in (self.note, other.note) if p)

    @property
    def op(self) -> str:
        """Synaptic operation type: ``AC`` (spike input), ``MAC`` (analog input), both, or ``-``."""
        kinds = [k for k, n in (("AC", self.synops_dense), ("MAC", self.macs_dense)) if n]
        return "+".join(kinds) or "-"

    @property
    def spiking(self) -> bool:
        """Whether the layer's neurons can spike (integrator readouts and LI nodes cannot)."""
        return bool(self.neuron_updates) and self.kind not in NON_SPIKING_KINDS

    @property
    def firing_rate(self) -> float | None:
        """Spikes per neuron per timestep (``None`` for layers without spiking neurons)."""
        if not self.spiking:
            return None
        return self.spikes / self.neuron_updates

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["op"] = self.op
        out["firing_rate"] = self.firing_rate
        return out


@dataclass
class ModelCounts:
    """Counts of every layer of one model over ``samples`` samples.

    Attributes:
        model: the model's name (registry name, NIR file, ...).
        samples: number of samples (inferences) the counts are summed over.
        timesteps: simulation steps per sample ``T`` (1 for a non-spiking model).
        layers: per-layer counts, in execution order.
        source: how the counts were obtained (``torch-hooks`` or ``nir``).
        view: ``hardware`` (pooling before a synaptic layer folded into it) or
            ``neurobench`` (pooling counted as its own layer, as NeuroBench does).
        notes: remarks on the counting (approximations, assumptions).
    """

    model: str
    samples: int
    timesteps: int
    layers: list[LayerCounts] = field(default_factory=list)
    source: str = "torch-hooks"
    view: str = "hardware"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"samples must be >= 1, got {self.samples}")

    def total(self, name: str) -> int:
        """Sum of count field ``name`` over all layers (all samples)."""
        if name not in COUNT_FIELDS:
            raise ConfigError(f"unknown count {name!r}; valid options: {', '.join(COUNT_FIELDS)}")
        return sum(getattr(layer, name) for layer in self.layers)

    def per_sample(self, name: str) -> float:
        """Count field ``name`` per sample (per inference)."""
        return self.total(name) / self.samples

    def layer(self, name: str) -> LayerCounts:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(
            f"no layer {name!r}; layers: {', '.join(layer.name for layer in self.layers)}"
        )

    @property
    def spiking_updates(self) -> int:
        """Neuron updates of the populations that can spike (excludes integrator readouts)."""
        return sum(layer.neuron_updates for layer in self.layers if layer.spiking)

    @property
    def firing_rate(self) -> float | None:
        """Mean spikes per spiking-neuron update over the whole model (``None`` without neurons)."""
        updates = self.spiking_updates
        return self.total("spikes") / updates if updates else None

    def totals(self) -> dict[str, float]:
        """Every count field per sample."""
        return {name: self.per_sample(name) for name in COUNT_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "samples": self.samples,
            "timesteps": self.timesteps,
            "source": self.source,
            "view": self.view,
            "notes": list(self.notes),
            "layers": [layer.to_dict() for layer in self.layers],
        }

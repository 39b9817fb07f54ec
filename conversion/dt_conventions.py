r"""Named dt conventions: the time step each SNN framework assumes when it reads NIR.

NIR stores continuous-time equations (``tau dv/dt = (v_leak - v) + r I``, ``dv/dt = r I``)
and **no time step**: every importer picks its own ``dt``, and the same file means
different networks in different frameworks. Our runtime discretises every neuron with
forward Euler at one ``dt`` per graph (:mod:`conversion.nir_nodes`):

.. math::
    \text{LIF: } v[t] = v[t-1] + \frac{dt}{\tau}\bigl(v_\text{leak} - v[t-1] + r\,I[t]\bigr),
    \qquad \text{IF: } v[t] = v[t-1] + dt\; r\, I[t],

spike iff ``v[t] > v_threshold``, then ``v[t] = v_reset``. A *convention* names the ``dt``
a framework's graphs were written for, so that a graph from that framework runs here as
its authors meant it:

===========  ==============================  ==============================================
name         dt (seconds per step)           source
===========  ==============================  ==============================================
neurall      the graph's ``metadata["dt"]``  ours (:mod:`conversion.nir_conventions`);
             (else 1e-4)                     ``model.config.dt``
norse        1e-3                            Norse 1.1.0 ``from_nir``/``to_nir`` default
snntorch     1e-4                            snnTorch 1.0.0 importer and exporter (hard-coded)
sinabs       1 (tau counted in steps)        sinabs ``sinabs/nir.py``
rockpool     min over neurons of             rockpool ``from_nir`` (recovers dt from ``r``)
             ``tau / (1 + r)`` (else 1e-3)
lava-dl      1e-4 (no official convention)   lava-dl 0.6.0 reads no NIR; the NIR paper's
                                             Lava bridge uses 1e-4
===========  ==============================  ==============================================

Each :class:`DtConvention` in :data:`DT_CONVENTIONS` documents one framework's step
equations and where they come from (file and function of the installed package, or the
repository file for packages not installed here).

Resolution (:func:`resolve_graph_dt`, the one function every NIR reader uses: the runtime
:func:`conversion.nir_runtime.load_nir`, the ``torch`` target, the Loihi quantiser,
``energy`` through :func:`apply_dt`): a value the user gives (``dt=`` seconds or a
convention name, or ``dt_convention=`` a name) wins; otherwise the graph's own
``metadata["dt"]``; otherwise the common ``metadata["dt"]`` of its neuron nodes; otherwise
none (nodes that need one then raise, asking for it). Two user values that disagree raise
:class:`~neurall_neuro.errors.ConfigError` naming both.

>>> resolve_graph_dt(graph, dt="sinabs").dt                       # doctest: +SKIP
1.0
>>> load_nir("model_from_snntorch.nir", dt="snntorch")           # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nir
import numpy as np

from conversion import nir_types
from conversion.nir_io import graph_metadata
from neurall_neuro.errors import ConfigError, ConversionError, GraphFileError
from neurall_neuro.models.neurons import DEFAULT_DT
from neurall_neuro.registry import Registry

if TYPE_CHECKING:
    from conversion.nir_graph import GraphInfo

#: What a user may pass as ``dt``: seconds (a number or a numeric string), a convention
#: name, or ``None`` (use the graph's own).
DtSpec = float | int | str | None

#: A rule that derives ``dt`` from a graph's neuron nodes (``None``: the graph says nothing).
DtRule = Callable[[dict[str, nir.NIRNode]], float | None]

#: Relative tolerance under which two time steps count as the same value.
DT_REL_TOL = 1e-9


@dataclass(frozen=True)
class DtConvention:
    """How one framework discretises NIR neurons: its ``dt`` and its step equations.

    ``dt``: a fixed step in seconds; or ``rule``: a function of the graph's neuron nodes
    (``None`` when the graph tells nothing), with ``fallback`` seconds when it does not.
    ``lif_step`` / ``if_step``: one step of that framework's LIF / IF, as it computes it;
    ``source``: file and function (installed package) or repository file and docs;
    ``notes``: how far our runtime at this ``dt`` reproduces the framework.
    """

    name: str
    framework: str
    summary: str
    lif_step: str
    if_step: str
    source: str
    notes: str = ""
    dt: float | None = None
    rule: DtRule | None = None
    fallback: float | None = None

    def __post_init__(self) -> None:
        if (self.dt is None) == (self.rule is None):
            raise ConfigError(f"dt convention {self.name!r}: give exactly one of dt and rule")
        if self.dt is not None and not self.dt > 0:
            raise ConfigError(f"dt convention {self.name!r}: dt must be > 0, got {self.dt!r}")

    def dt_for(self, nodes: dict[str, nir.NIRNode] | None = None) -> float:
        """The step in seconds for a graph with these (flattened) ``nodes``."""
        if self.dt is not None:
            return float(self.dt)
        assert self.rule is not None  # __post_init__ guarantees one of them
        found = self.rule(nodes or {})
        if found is not None:
            return float(found)
        if self.fallback is None:
            raise ConversionError(
                f"dt convention {self.name!r} derives dt from the graph, but the graph has no "
                "node to derive it from; pass dt=SECONDS"
            )
        return float(self.fallback)

    def describe(self) -> str:
        """One line: ``name: summary`` (help texts, ``--dt`` listings)."""
        return f"{self.name}: {self.summary}"


#: Name -> :class:`DtConvention` (built-in ones below; add your own with ``register``).
DT_CONVENTIONS: Registry[DtConvention] = Registry("dt convention")


def register_dt_convention(convention: DtConvention) -> DtConvention:
    """Add ``convention`` under its name (DuplicateNameError for a taken name)."""
    DT_CONVENTIONS.register(convention.name, convention)
    return convention


def list_dt_conventions() -> list[str]:
    """Names of the registered conventions, sorted."""
    return DT_CONVENTIONS.names()


def get_dt_convention(name: str) -> DtConvention:
    """The convention called ``name`` (case-insensitive); UnknownNameError lists the names."""
    return DT_CONVENTIONS.get(name.strip().lower())


def conventions_help() -> str:
    """The conventions, one ``name: summary`` per line (for CLI help texts)."""
    return "\n".join(get_dt_convention(name).describe() for name in list_dt_conventions())


# --------------------------------------------------------------------------- graph rules


def _own_dt(nodes: dict[str, nir.NIRNode]) -> float | None:
    """The common ``metadata["dt"]`` of the neuron nodes (None if none stores one)."""
    found = {
        float(node.metadata["dt"])
        for node in nodes.values()
        if isinstance(node, nir_types.TIMED)
        and isinstance(node.metadata, dict)
        and "dt" in node.metadata
    }
    if len(found) > 1:
        raise GraphFileError(
            f"neuron nodes disagree on dt ({sorted(found)}); pass load_nir(..., dt=...)"
        )
    return found.pop() if found else None


def _rockpool_dt(nodes: dict[str, nir.NIRNode]) -> float | None:
    """rockpool's ``from_nir`` rule ``dt = min(tau / (1 + r))``, over every neuron of every
    ``LI``/``LIF`` (``tau``) and ``CubaLI``/``CubaLIF`` (``tau_mem``) node (rockpool takes
    the minimum per node; one graph here has one dt, so over all of them)."""
    values = []
    for node in nodes.values():
        if isinstance(node, (nir.CubaLI, nir.CubaLIF)):
            tau = node.tau_mem
        elif isinstance(node, (nir.LI, nir.LIF)):
            tau = node.tau
        else:
            continue
        r = getattr(node, "r", None)
        if tau is None or r is None:
            continue
        ratio = np.asarray(tau, dtype=np.float64) / (1.0 + np.asarray(r, dtype=np.float64))
        values.append(float(ratio.min()))
    if not values:
        return None
    dt = min(values)
    if not dt > 0:
        raise ConversionError(
            f"rockpool convention: min(tau / (1 + r)) = {dt!r} is not a positive time step"
        )
    return dt


# --------------------------------------------------------------------------- built-ins

NEURALL = register_dt_convention(
    DtConvention(
        name="neurall",
        framework="neurall-neuro",
        summary="the graph's own metadata dt (our exports store it), else 1e-4 s",
        lif_step="v[t] = v[t-1] + (dt/tau) (v_leak - v[t-1] + r I[t]); spike v > v_th, v = v_reset",
        if_step="v[t] = v[t-1] + dt r I[t]; spike v > v_th, v = v_reset",
        source=(
            "conversion/nir_conventions.py (CONVENTION), conversion/nir_nodes.py (LIFOp, IFOp); "
            "dt = model.config.dt (neurall_neuro.models.neurons.DEFAULT_DT = 1e-4)"
        ),
        notes="Bit-identical to Norse's lif_box_feed_forward_step at the same dt (r = 1).",
        rule=_own_dt,
        fallback=DEFAULT_DT,
    )
)

NORSE = register_dt_convention(
    DtConvention(
        name="norse",
        framework="Norse 1.1.0",
        summary="dt = 1e-3 s, Norse's default step",
        lif_step=(
            "v = v + dt * tau_mem_inv * (v_leak - v + I); z = [v > v_th]; v = v_reset where z "
            "(tau_mem_inv = 1/tau, r ignored)"
        ),
        if_step="v = v + I (dt unused); z = [v > v_th]; v = v_reset where z",
        source=(
            "norse/torch/functional/lif_box.py: lif_box_feed_forward_step(dt=0.001); "
            "norse/torch/utils/import_nir.py: from_nir(dt=0.001); "
            "norse/torch/utils/export_nir.py: to_nir(dt=0.001); "
            "norse/torch/functional/iaf.py: iaf_feed_forward_step"
        ),
        notes=(
            "LIF identical to our runtime at dt = 1e-3 for r = 1 (Norse's importer warns on "
            "r != 1 and drops r). Norse's IF adds its input once per step whatever dt is, "
            "i.e. dt r = 1: an IF graph from Norse (r = 1) runs like the sinabs convention."
        ),
        dt=1e-3,
    )
)

SNNTORCH = register_dt_convention(
    DtConvention(
        name="snntorch",
        framework="snnTorch 1.0.0",
        summary="dt = 1e-4 s, hard-coded in snnTorch's NIR importer and exporter",
        lif_step=(
            "import: Leaky(beta = 1 - dt/tau), input scaled by r dt/tau, threshold v_th: "
            "mem = beta mem + (r dt/tau) I; export: tau = dt/(1 - beta), r = tau/dt, so "
            "our LIF at dt = 1e-4 is mem = beta mem + I"
        ),
        if_step="import: IF becomes Leaky(beta = 0.9) (not an IF); Leaky is never exported as IF",
        source=(
            "snntorch/import_nir.py: _nir_to_snntorch_module (dt = 1e-4); "
            "snntorch/export_nir.py: _extract_snntorch_module (dt = 1e-4)"
        ),
        notes=(
            "Spikes equal ours for reset-to-zero Leaky; snnTorch's default subtractive reset "
            "is written as a NIR LIF (reset to a value) without warning."
        ),
        dt=1e-4,
    )
)

SINABS = register_dt_convention(
    DtConvention(
        name="sinabs",
        framework="sinabs (SynSense)",
        summary="dt = 1: tau counted in steps, IF adds r*I once per step",
        lif_step=(
            "LIFSqueeze(tau_mem = tau, norm_input=False): v = exp(-1/tau) v + I; "
            "spikes = floor(v / v_th) (multi-spike), v = v - spikes v_th"
        ),
        if_step="IAFSqueeze: v = v + I; multi-spike, subtractive reset; exported IF has r = 1",
        source=(
            "sinabs/nir.py: _import_sinabs_module, _extract_sinabs_module; "
            "sinabs/layers/functional/lif.py: lif_forward_single (repository synsense/sinabs)"
        ),
        notes=(
            "With dt = 1 our IF step v += r I is sinabs's (single spike, reset to v_reset "
            "instead of multi-spike subtractive reset). Our LIF at dt = 1 decays by 1 - 1/tau "
            "and scales its input by 1/tau: only an approximation of sinabs's exp(-1/tau)."
        ),
        dt=1.0,
    )
)

ROCKPOOL = register_dt_convention(
    DtConvention(
        name="rockpool",
        framework="rockpool (SynSense)",
        summary="dt read back from the graph: min(tau / (1 + r)) over the neurons (else 1e-3 s)",
        lif_step=(
            "LIFTorch: isyn += I; v = exp(-dt/tau_mem) v; isyn = exp(-dt/tau_syn) isyn; "
            "v += isyn + bias; spikes = floor(v / v_th), v -= spikes v_th"
        ),
        if_step="no IF mapping (rockpool's from_nir maps LI, CubaLIF, Linear, Affine only)",
        source=(
            "rockpool/nn/modules/torch/nir.py: _extract_rockpool_module "
            "(r = tau exp(-dt/tau) / dt), _convert_nir_to_rockpool (dt = min(tau / (1 + r))); "
            "rockpool/nn/modules/torch/lif_torch.py: LIFTorch (dt default 1e-3) "
            "(repository synsense/rockpool)"
        ),
        notes=(
            "rockpool stores dt in r; graphs without LI/LIF/Cuba nodes get LIFTorch's default "
            "1e-3 s. rockpool's exponential decay and multi-spike reset differ from our "
            "forward Euler: an approximation."
        ),
        rule=_rockpool_dt,
        fallback=1e-3,
    )
)

LAVA_DL = register_dt_convention(
    DtConvention(
        name="lava-dl",
        framework="lava-dl 0.6.0",
        summary="dt = 1e-4 s (lava-dl reads no NIR; the NIR paper's Lava bridge uses 1e-4)",
        lif_step=(
            "CUBA neuron: u = u (1 - du) + a_in, v = v (1 - dv) + u; bridge: du = 1 (no current "
            "memory), dv = dt/tau, weights times dt/tau"
        ),
        if_step="bridge: current_decay = 1, voltage_decay = 0, threshold v_th r: v += I per step",
        source=(
            "lava-dl 0.6.0 has no NIR module (nothing under lava/lib/dl imports nir); netx HDF5 "
            "stores integer decays per step, not tau. Repository neuromorphs/NIR, "
            "paper/nir_to_lava.py: ImportConfig.dt = 1e-4, _nir_node_to_lava, "
            "_nir_node_to_lava_dl"
        ),
        notes=(
            "No official lava-dl convention exists; 1e-4 is the NIR paper's choice. Our own "
            "Loihi mapping (hw_targets.loihi.quantize) uses the graph's dt: dv = 4096 dt/tau."
        ),
        dt=1e-4,
    )
)


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedDt:
    """The ``dt`` a graph runs with and where it came from (for messages and reports)."""

    dt: float | None
    source: str


def _positive_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not math.isfinite(value) or not value > 0:
        raise ConversionError(f"dt must be > 0, got {value!r} ({what})")
    return float(value)


def parse_dt(value: DtSpec) -> float | str | None:
    """A user's ``dt``: seconds (a number, or text such as ``"1e-3"``) as float, a
    convention name (lower case), or None. ConfigError for anything else, listing the
    conventions; ConversionError for a non-positive number."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"dt must be seconds or a convention name, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _positive_seconds(float(value), "dt")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            if text.lower() in DT_CONVENTIONS:
                return text.lower()
            raise ConfigError(
                f"dt {value!r} is neither seconds (e.g. 1e-4) nor a dt convention; "
                f"valid conventions: {', '.join(list_dt_conventions())}"
            ) from None
        return _positive_seconds(number, f"dt={value!r}")
    raise ConfigError(
        f"dt must be seconds or a convention name, got a {type(value).__name__} ({value!r})"
    )


def _flat_nodes(graph: nir.NIRGraph, info: GraphInfo | None) -> dict[str, nir.NIRNode]:
    if info is not None:
        return info.flat.nodes
    from conversion.nir_graph import flatten_graph

    return flatten_graph(graph).nodes


def _user_value(
    graph: nir.NIRGraph, info: GraphInfo | None, spec: float | str, label: str
) -> tuple[float, str]:
    """``(seconds, description)`` of one user value (a number or a convention name)."""
    if isinstance(spec, float):
        return spec, f"{label}={spec:g}"
    convention = get_dt_convention(spec)
    nodes = _flat_nodes(graph, info) if convention.rule is not None else None
    if convention.name == NEURALL.name:
        own = graph_metadata(graph).get("dt")
        if own is not None:
            return float(own), f"{label}={spec!r} (the graph's metadata dt)"
    return convention.dt_for(nodes), f"{label}={spec!r} ({convention.summary})"


def resolve_graph_dt(
    graph: nir.NIRGraph,
    info: GraphInfo | None = None,
    dt: DtSpec = None,
    dt_convention: str | None = None,
) -> ResolvedDt:
    """The step ``graph`` runs with (see the module docstring for the order).

    ``dt``: seconds, or a convention name; ``dt_convention``: a convention name. Both given
    and different: ConfigError naming both. ``info`` (from :func:`validate_graph`) saves
    flattening the graph again. ``ResolvedDt.dt`` is None when nothing gives a step.
    """
    given = []
    parsed = parse_dt(dt)
    if parsed is not None:
        given.append(_user_value(graph, info, parsed, "dt"))
    if dt_convention is not None:
        if not isinstance(dt_convention, str) or parse_dt(dt_convention) not in DT_CONVENTIONS:
            raise ConfigError(
                f"dt_convention must be a convention name, got {dt_convention!r}; "
                f"valid conventions: {', '.join(list_dt_conventions())}"
            )
        given.append(_user_value(graph, info, dt_convention.strip().lower(), "dt_convention"))
    if len(given) == 2 and not math.isclose(given[0][0], given[1][0], rel_tol=DT_REL_TOL):
        raise ConfigError(
            f"conflicting time steps: {given[0][1]} gives {given[0][0]:g} s but "
            f"{given[1][1]} gives {given[1][0]:g} s; give one of them"
        )
    if given:
        return ResolvedDt(given[0][0], given[0][1])
    meta = graph_metadata(graph)
    if "dt" in meta:
        return ResolvedDt(float(meta["dt"]), "the graph's metadata['dt']")
    own = _own_dt(_flat_nodes(graph, info))
    if own is not None:
        return ResolvedDt(own, "the neuron nodes' metadata['dt']")
    return ResolvedDt(None, "no dt (the graph stores none and none was given)")


def apply_dt(
    graph: nir.NIRGraph, dt: DtSpec = None, dt_convention: str | None = None
) -> nir.NIRGraph:
    """``graph`` with the resolved step stored in its metadata (and every neuron node's),
    so that any reader runs it with that step; ``graph`` itself (unchanged) when neither
    ``dt`` nor ``dt_convention`` is given. The copy records the choice in
    ``metadata["dt_source"]``; the original is not modified."""
    if dt is None and dt_convention is None:
        return graph
    resolved = resolve_graph_dt(graph, None, dt, dt_convention)
    assert resolved.dt is not None  # a user value always resolves to a number
    return _stamped(graph, resolved.dt, resolved.source)


def _stamped(graph: nir.NIRGraph, dt: float, source: str) -> nir.NIRGraph:
    out = copy.copy(graph)
    nodes: dict[str, Any] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            node = _stamped(node, dt, source)
        elif isinstance(node, nir_types.TIMED):
            node = copy.copy(node)
            node.metadata = {**(node.metadata or {}), "dt": float(dt)}
        nodes[name] = node
    out.nodes = nodes
    out.metadata = {**(graph.metadata or {}), "dt": float(dt), "dt_source": source}
    return out

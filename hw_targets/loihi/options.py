"""Compile options both Loihi targets (``loihi-emu``, ``lava-sim``) understand.

``precision`` (fixed point or Lava's floating-point models), ``input_mode`` (what
``Deployed.run`` receives), ``quantization`` (options of
:func:`hw_targets.loihi.quantize.quantize_graph`, used for NIR graphs) and
``bias_schedule`` (from which step each group receives its bias).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from hw_targets.loihi.network import LoihiNetwork
from neurall_neuro.errors import ConfigError, TargetError

Precision = Literal["fixed", "float"]
InputMode = Literal["auto", "image", "bias", "spikes", "events"]

#: Help text of the ``quantization`` option.
QUANT_OPTION_HELP = "dict of options for hw_targets.loihi.quantize.quantize_graph (NIR graphs only)"

#: Valid ``bias_schedule`` values.
BIAS_SCHEDULES = ("network", "depth", "none")
#: Help text of the ``bias_schedule`` option.
BIAS_SCHEDULE_HELP = (
    "'network' (each group's bias_start_step), 'depth' (every bias starts at its group's synaptic "
    "depth: what lava-dl's zero-delay training assumes) or 'none' (every bias from step 0)"
)


def parse_precision(value: Any) -> Precision:
    """``value`` if it is ``"fixed"`` or ``"float"``; ConfigError otherwise."""
    if value not in ("fixed", "float"):
        raise ConfigError(f"precision must be 'fixed' or 'float', got {value!r}")
    return value  # type: ignore[return-value]


def require_fixed(precision: Precision, target: str) -> None:
    """TargetError unless ``precision`` is ``"fixed"`` (for bit-exact-only targets)."""
    if precision != "fixed":
        raise TargetError(
            f"target {target!r} is bit-exact fixed point only; precision='float' is not available"
        )


def apply_bias_schedule(network: LoihiNetwork, mode: str) -> LoihiNetwork:
    """``network`` with its groups' ``bias_start_step`` set per ``mode`` (a copy unless
    ``"network"``, which keeps the network's own start steps).

    ``"depth"``: every group's bias starts at its synaptic depth
    (:meth:`~hw_targets.loihi.network.LoihiNetwork.depths`; a bias source listed in
    ``metadata["bias_sources"]`` keeps its start, one step before its group's);
    ``"none"``: at step 0.
    """
    if mode not in BIAS_SCHEDULES:
        raise ConfigError(f"bias_schedule must be one of {', '.join(BIAS_SCHEDULES)}; got {mode!r}")
    if mode == "network":
        return network
    depth = network.depths() if mode == "depth" else {g.name: 0 for g in network.groups}
    if mode == "depth":  # a bias source starts one step before the group it feeds
        for name in network.metadata.get("bias_sources") or []:
            depth[name] = network.group(name).bias_start_step
    groups = [dataclasses.replace(g, bias_start_step=depth[g.name]) for g in network.groups]
    return dataclasses.replace(network, groups=groups)

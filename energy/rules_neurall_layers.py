"""Counting rules for neurall-neuro's own layers (registered with the torch-hook counter).

Imported by :class:`energy.torch_counter.OpCounter` on first use (listed in
:data:`energy.counting_rules.BUILTIN_RULE_MODULES`). The rules name layers, never models:

==========================  =============  ==================================================
layer                       role           counted (:mod:`energy.rules`)
==========================  =============  ==================================================
``LIFLayer``                ``neuron``     one update per neuron per step, spikes emitted
``ChannelGate``             ``gate``       AND neurons (binary inputs) or one multiply per
                                           feature element (analog gate)
``SEBlock`` (mode ``none``) ``passthrough`` nothing (the block is the identity); other modes
                                           are containers whose layers are counted
``ResidualAdd``             ``add``        one add per element of ``y + shortcut(x)``
``MeanOverTime``            ``integrator`` the readout: ``K`` non-leaking integrators, one
                                           update per class per step
==========================  =============  ==================================================
"""

from __future__ import annotations

from torch import nn

import energy.role_handlers  # noqa: F401  (registers the built-in roles these rules name)
from energy.counting_rules import ModuleRule, register_module_rule
from neurall_neuro.models.blocks import MeanOverTime, ResidualAdd
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.se_block import ChannelGate, SEBlock


def _se_block_is_identity(module: nn.Module) -> bool:
    return getattr(module, "mode", None) == "none"


register_module_rule(LIFLayer, rule=ModuleRule("neuron", kind="lif"))
register_module_rule(ChannelGate, rule=ModuleRule("gate"))
register_module_rule(SEBlock, rule=ModuleRule("passthrough", applies=_se_block_is_identity))
register_module_rule(
    ResidualAdd,
    rule=ModuleRule(
        "add",
        kind="residual",
        note="y + shortcut(x): one add per output element (the ResidualAdd module)",
    ),
)
register_module_rule(
    MeanOverTime,
    rule=ModuleRule(
        "integrator",
        kind="readout",
        note="mean over T of the head output = non-leaking integrator, one update per class per step",
    ),
)

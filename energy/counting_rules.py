r"""The counting rules and roles of the torch-hook counter (:mod:`energy.torch_counter`).

Rules and roles
---------------
Two tables drive the counter; neither names a model:

* :data:`ROLES` maps a *role* name to a :class:`CountingRole`: how a call of a module in
  that role is recorded in the hook and turned into counts after the pass. Built-in roles:
  ``synaptic`` (``Conv2d``, ``Linear``), ``avgpool``, ``maxpool``, ``batchnorm``,
  ``neuron`` (LIF populations), ``gate`` (the SE product), ``add`` (element-wise sum of
  branches), ``integrator`` (a non-leaking readout population), ``elementwise`` and
  ``passthrough``. Adding a role is adding an entry (:func:`register_role`).
* :data:`MODULE_RULES` maps a module class to its :class:`ModuleRule` (its role and what
  the role needs from it), found through the class's MRO. ``torch.nn`` layers are
  registered by :mod:`energy.torch_counter`; the rules for neurall-neuro's own layers
  (LIF, SE gate, residual join, readout) live in :mod:`energy.rules_neurall_layers` and
  those of Norse's neuron modules in :mod:`energy.rules_norse`, imported on first use
  (:data:`BUILTIN_RULE_MODULES`). A third-party layer registers its rule with
  :func:`register_module_rule` (or, for element-wise leaves,
  ``OpCounter(extra_rules=...)``). Two more roles serve them:
  ``recurrent`` (a population with input and recurrent weight matrices, e.g. Norse's
  ``LIFRecurrentCell``) and ``functional`` (operations a ``forward`` calls on tensors
  itself, :mod:`energy.functional_ops`).

A role's handlers take the counter (an :class:`~energy.torch_counter.OpCounter`, typed
``Any`` here: this module imports no counter) and a :class:`_Call` (one module call seen by
a hook, with the statistics of :mod:`energy.tensor_stats`). The built-in roles and their
handlers are in :mod:`energy.role_handlers`, which registers them on import; a rule can
only name a registered role.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from energy.counts import LayerCounts
from energy.tensor_stats import _Counts, _InputStats, _Key
from neurall_neuro.registry import Registry

#: Element-wise rule: ``(module, inputs, output) -> (kind, counts)`` with counts a dict of
#: :class:`LayerCounts` count fields (ints or 0-dim tensors). Extend via ``extra_rules``.
ElementwiseRule = Callable[
    [nn.Module, tuple[torch.Tensor, ...], torch.Tensor], tuple[str, dict[str, Any]]
]


@dataclass(frozen=True)
class RecurrentSpec:
    r"""What the ``recurrent`` role needs from a recurrent population's module.

    The population of ``H`` neurons receives ``W_in x_t`` (input weights ``[H, I]``) and
    ``W_rec z_{t-1}`` (recurrent weights ``[H, H]``, driven by its own spikes).

    Attributes:
        input_mask: structural synapses of the input matrix, ``[H, I]`` boolean
            (``mask[o, i]``: input ``i`` reaches neuron ``o``).
        recurrent_mask: structural synapses of the recurrent matrix, ``[H, H]`` boolean.
    """

    input_mask: Callable[[nn.Module], torch.Tensor]
    recurrent_mask: Callable[[nn.Module], torch.Tensor]


@dataclass(frozen=True)
class ModuleRule:
    """How the modules of one class are counted.

    Attributes:
        role: name of the :class:`CountingRole` in :data:`ROLES`.
        elementwise: for role ``elementwise``: the rule giving its kind and counts.
        kind: the :class:`~energy.counts.LayerCounts` kind (default: set by the role).
        note: a note for the layer's row.
        applies: ``applies(module)`` says whether the rule holds for that instance (e.g.
            an SE block only in mode ``none``); otherwise the lookup goes on up the MRO.
        subclasses: whether the rule holds for subclasses too (a subclass may change
            ``forward``; element-wise rules hold for their exact class only).
        time_major: overrides the role's input layout: ``True`` for ``[T, B, ...]``
            (sequence modules), ``False`` for one step ``[B, ...]`` (Norse cells);
            ``None`` keeps the role's.
        spiking: for neuron roles, whether the output is spikes (``False``: a voltage
            readout such as Norse's ``LICell``, which emits none).
        recurrent: for role ``recurrent``, the module's weight structure and state.
    """

    role: str
    elementwise: ElementwiseRule | None = None
    kind: str | None = None
    note: str = ""
    applies: Callable[[nn.Module], bool] | None = None
    subclasses: bool = True
    time_major: bool | None = None
    spiking: bool = True
    recurrent: RecurrentSpec | None = None

    def is_time_major(self, role: CountingRole) -> bool:
        """Whether calls of this rule's modules take ``[T, B, ...]`` inputs."""
        return role.time_major if self.time_major is None else self.time_major


@dataclass
class _Call:
    """One module call seen by a hook (tensors stay on their device until resolution)."""

    name: str
    module: nn.Module
    role: CountingRole
    rule: ModuleRule
    frames: int
    out_key: _Key | None = None
    in_shape: tuple[int, ...] = ()  # per frame
    out_shape: tuple[int, ...] = ()  # per frame
    stats: _InputStats | None = None
    source: _Call | None = None  # producer of the input (looking through pass-throughs)
    out_counts: _Counts | None = None  # counts of the output, shared with its consumers
    out_version: int | None = None  # the output's in-place version when it was counted
    kind: str = ""
    lazy: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    folded_by: list[bool] = field(default_factory=list)


#: Fills a call in the forward hook: ``(counter, call, inputs, output)``.
RecordHandler = Callable[[Any, _Call, tuple[Any, ...], torch.Tensor], None]
#: Counts a call after the pass: ``(counter, call, samples) -> LayerCounts | None`` (or a
#: list of rows, e.g. a recurrent population's two weight matrices and its neurons).
ResolveHandler = Callable[[Any, _Call, int], "LayerCounts | list[LayerCounts] | None"]


def _record_nothing(counter: Any, call: _Call, inputs: tuple[Any, ...], output: Any) -> None:
    """Shapes and the producer link (set for every call) are all this role needs."""


@dataclass(frozen=True)
class CountingRole:
    """What the counter does with a call of a module in this role.

    Attributes:
        name: the role's name (what :class:`ModuleRule` refers to).
        record: fills the call in the forward hook (vectorised reductions only).
        resolve: turns the call into counts after the pass, once every device count is
            read back (``None``: the call costs nothing).
        time_major: inputs are ``[T, B, ...]`` (stateful layers; frames = ``T * B``)
            rather than ``[N, ...]``.
        deferred: resolved after every other call of the pass (an average pool learns
            from its consumers whether it was folded into them).
        transparent: consumers look through the call to its producer (identity layers).
    """

    name: str
    record: RecordHandler = _record_nothing
    resolve: ResolveHandler | None = None
    time_major: bool = False
    deferred: bool = False
    transparent: bool = False


#: Role name -> :class:`CountingRole` (the built-in ones: :mod:`energy.role_handlers`).
ROLES: Registry[CountingRole] = Registry("counting role")

#: Module class (qualified name) -> :class:`ModuleRule`.
MODULE_RULES: Registry[ModuleRule] = Registry("counting rule")

#: Modules that register the rules of the built-in layers (imported by the first counter).
BUILTIN_RULE_MODULES: tuple[str, ...] = ("energy.rules_neurall_layers", "energy.rules_norse")


def _class_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_role(role: CountingRole) -> CountingRole:
    """Add a counting role (a duplicate name raises ``DuplicateNameError``)."""
    ROLES.register(role.name, role)
    return role


def register_module_rule(*classes: type[nn.Module], rule: ModuleRule) -> None:
    """Count the modules of ``classes`` with ``rule`` (one rule per class)."""
    ROLES.get(rule.role)  # unknown roles fail here, listing the valid ones
    for cls in classes:
        MODULE_RULES.register(_class_key(cls), rule)


def _load_builtin_rules() -> None:
    for module in BUILTIN_RULE_MODULES:
        importlib.import_module(module)  # registers on first import; cached afterwards


def find_rule(
    module: nn.Module, extra_rules: Mapping[type, ModuleRule] | None = None
) -> ModuleRule | None:
    """The rule of ``module``: ``extra_rules`` for its exact class, else the registered
    rule of the nearest class in its MRO that applies to it (``None``: no rule)."""
    exact = type(module)
    if extra_rules and exact in extra_rules:
        return extra_rules[exact]
    for cls in exact.__mro__:
        key = _class_key(cls)
        if key not in MODULE_RULES:
            continue
        rule = MODULE_RULES.get(key)
        if (cls is exact or rule.subclasses) and (rule.applies is None or rule.applies(module)):
            return rule
    return None

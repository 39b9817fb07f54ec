"""The data flow of functional operations outside ruled modules, for the torch-hook counter.

A bare ``x + y`` in a container's ``forward`` is invisible to forward hooks; the
:class:`~energy.functional_ops.FunctionalOpTracker` reports it to
:meth:`FunctionalFlow._on_op`, which makes it a counted call when a functional rule
counts it. Each such operation, each ruled module's inputs and the model's output are
steps of the pass's data flow; after the pass, :meth:`FunctionalFlow._prune_unused` walks
the flow backwards from what the model uses, drops the counted operations whose results
nothing uses (bookkeeping) and notes them, and notes the uncounted functions whose
results are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from energy.counting_rules import ROLES, ModuleRule, _Call
from energy.functional_ops import OpEvent, per_frame_shape, tensors_in
from energy.role_handlers import RoleHandlers
from energy.tensor_stats import _Key, _key, _keys


@dataclass
class _FlowStep:
    """One step of a pass's data flow outside ruled modules (:meth:`FunctionalFlow._prune_unused`).

    A ruled module's call (or the model's output) only uses ``inputs`` (``where`` is
    ``None``); a functional operation at ``where`` (module path, function) turns
    ``inputs`` into ``outputs`` (``call``: its counted call, if it has a rule).
    """

    inputs: set[_Key]
    outputs: set[_Key] = field(default_factory=set)
    call: _Call | None = None
    where: tuple[str, str] | None = None
    free: bool = False


class FunctionalFlow(RoleHandlers):
    """Functional operations of a pass: counted calls and the data flow (a base of
    :class:`~energy.torch_counter.OpCounter`, which sets the attributes below)."""

    #: The calls of this pass, in order.
    _calls: list[_Call]
    #: The data flow of this pass.
    _flow: list[_FlowStep]
    #: Uncounted functional operations whose results are used: (module path, function) -> calls.
    _unhooked: dict[tuple[str, str], int]
    #: Functional operations whose results nothing uses: (module path, function) -> calls.
    _unused: dict[tuple[str, str], int]
    #: One rule per functional kind counted so far.
    _functional_rules: dict[str, ModuleRule]

    def _on_op(self, event: OpEvent) -> None:
        """A torch function called outside ruled modules (:mod:`energy.functional_ops`):
        a step of the pass's data flow; a call to count when it has a rule."""
        call = None
        if event.rule is not None:
            result = event.result
            frames, out_shape = per_frame_shape(result)
            rule = self._functional_rules.get(event.rule.kind)
            if rule is None:
                note = "functional operation in a forward, counted from its shapes"
                rule = ModuleRule("functional", kind=event.rule.kind, note=note)
                self._functional_rules[event.rule.kind] = rule
            first = next(iter(tensors_in(event.args)), None)
            call = _Call(
                name=event.row,
                module=event.module,
                role=ROLES.get("functional"),
                rule=rule,
                frames=frames,
                out_key=_key(result),
                in_shape=per_frame_shape(first)[1] if first is not None else (),
                out_shape=out_shape,
                source=self._producer(first) if first is not None else None,
                lazy=event.rule.count(event.args, event.kwargs, result),
            )
            self._calls.append(call)
            self._producers[call.out_key] = call  # its result is no hooked layer's output
        self._flow.append(
            _FlowStep(
                inputs=_keys(event.args) | _keys(event.kwargs),
                outputs=_keys(event.result),
                call=call,
                where=(event.path or "<model root>", event.function),
                free=event.free,
            )
        )

    def _prune_unused(self) -> None:
        """Drop the functional calls whose results the model does not use, and note them
        and the uncounted functions it does use (a backward pass over the data flow)."""
        needed: set[_Key] = set()
        dead: set[int] = set()
        for step in reversed(self._flow):
            if step.where is None:  # a ruled module's inputs, or the model's output
                needed |= step.inputs
                continue
            if not step.outputs & needed:
                if not step.free:
                    self._unused[step.where] = self._unused.get(step.where, 0) + 1
                if step.call is not None:
                    dead.add(id(step.call))
                continue
            needed -= step.outputs
            needed |= step.inputs
            if step.call is None and not step.free:
                self._unhooked[step.where] = self._unhooked.get(step.where, 0) + 1
        if dead:
            self._calls = [call for call in self._calls if id(call) not in dead]

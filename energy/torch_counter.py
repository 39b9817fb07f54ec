r"""Counting the operations of a torch / Norse model with forward hooks.

:class:`OpCounter` attaches a forward hook to every leaf module that has a counting rule,
runs the model on data in eval mode, and turns what the hooks saw into exact
:class:`~energy.counts.LayerCounts`.

The counter's parts live in files of their own: the rule and role tables and their
registration API in :mod:`energy.counting_rules`, the per-tensor statistics in
:mod:`energy.tensor_stats`, what each built-in role records in the hook and counts after
the pass in :mod:`energy.role_handlers` (which registers the built-in roles), and the
data flow of functional operations in :mod:`energy.functional_flow` (both bases of
:class:`OpCounter`). The rules of the ``torch.nn`` layers are registered at the end of
this module.

Modules may return ``(output, state)`` (Norse's stateful modules): the hooks count the
output; keyword arguments (``cell(x, state=s)``) are bound to ``forward``'s parameters,
so every role sees a call's arguments in order.

Each spike tensor is counted once: the hook of the layer that emits it (LIF, gate) counts
its non-zero values and its ones, and the consumers of the same storage reuse those counts
unless the tensor's version counter says an unhooked operation changed it in place since.
To make "same storage" mean "same tensor", the counter holds these outputs until the pass
ends (extra memory: one batch's spike tensors). A synaptic layer into which an average pool
on binary input is folded (:mod:`energy.role_handlers`) computes no input statistics of
its own.

Time folding: the SE-SNN runs stateless layers on ``[T*B, ...]`` (time folded into the
batch) and stateful ones on ``[T, B, ...]`` (roles with ``time_major``); every call's
leading dimension(s) are frames, and per-sample figures divide by the batch size ``B`` of
the images passed in. The direct-encoding convolution is called once per image
(``[B, ...]``), so it is counted once per image, not ``T`` times.

Stepping: a researcher's Norse model is called once per timestep (input modes ``static``
and ``sequence`` of :mod:`energy.input_modes`), its cells on ``[B, ...]`` (rules with
``time_major=False``). Every call of one module within a pass is one more set of frames:
the layer's ``steps`` is the sum over its calls of frames per sample (``T`` for a layer
called once per step).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from math import prod
from typing import Any

import torch
from torch import nn

from energy.counting_rules import (
    MODULE_RULES,
    ROLES,
    CountingRole,
    ElementwiseRule,
    ModuleRule,
    _Call,
    _load_builtin_rules,
    find_rule,
    register_module_rule,
)
from energy.counts import COUNT_FIELDS, LayerCounts, ModelCounts
from energy.functional_flow import FunctionalFlow, _FlowStep
from energy.functional_ops import FunctionalOpTracker
from energy.input_modes import InputMode, get_input_mode
from energy.tensor_stats import _InputStats, _Key, _key, _keys, _read_back
from neurall_neuro.errors import ConfigError, UnsupportedModuleError
from neurall_neuro.progress import track


def _relu_rule(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> tuple[str, dict]:
    n = output.numel()
    return "relu", {"comparisons": n, "input_elements": n, "output_elements": n}


def _sigmoid_rule(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> tuple[str, dict]:
    n = output.numel()
    return "sigmoid", {"nonlinear": n, "input_elements": n, "output_elements": n}


class OpCounter(FunctionalFlow):
    """Counts the operations of ``model`` over one or more forward passes.

    Use as a context manager (hooks are removed on exit)::

        with OpCounter(model) as counter:
            for images in batches:
                counter.run(images)
        counts = counter.result()

    Only passes made through :meth:`run` are counted: calling the model directly while
    the hooks are attached counts nothing and keeps nothing. :meth:`run` drives the model
    as its ``mode`` says (:mod:`energy.input_modes`: once per batch, or stepped over
    ``T`` timesteps).

    Args:
        model: a torch module; every leaf must have a counting rule (unknown leaves raise
            :class:`~neurall_neuro.errors.UnsupportedModuleError` before anything runs).
        fold_pooling: hardware view (fold non-overlapping average pools on spikes into the
            next synaptic layer); ``False`` gives the NeuroBench view.
        fold_batchnorm: BatchNorm folded into the preceding layer (costs one bias add per
            element); ``False`` counts one multiply and one add per element.
        name: the model's name in the result (default: its ``registry_name`` or class).
        extra_rules: rules for additional element-wise leaf module types (exact classes;
            they take precedence over registered rules).
    """

    def __init__(
        self,
        model: nn.Module,
        fold_pooling: bool = True,
        fold_batchnorm: bool = True,
        name: str | None = None,
        extra_rules: Mapping[type[nn.Module], ElementwiseRule] | None = None,
    ):
        _load_builtin_rules()
        self.model = model
        self.fold_pooling = fold_pooling
        self.fold_batchnorm = fold_batchnorm
        self.name = name or getattr(model, "registry_name", None) or type(model).__name__
        self.extra_rules: dict[type[nn.Module], ModuleRule] = {
            cls: ModuleRule("elementwise", elementwise=rule, subclasses=False)
            for cls, rule in dict(extra_rules or {}).items()
        }
        self._handles: list[Any] = []
        self._checks: dict[tuple[int, str], bool] = {}
        self._masks: dict[tuple[int, str], torch.Tensor] = {}
        self._calls: list[_Call] = []
        self._producers: dict[_Key, _Call] = {}
        self._held: list[torch.Tensor] = []
        self._running = False
        self._layers: dict[str, LayerCounts] = {}
        self._samples = 0
        self._timesteps = 1
        self._stepped: dict[str, int] = {}  # input mode -> T, for the result's notes
        # functional operations outside ruled modules: the data flow of one pass, and what
        # was left uncounted over all passes ((module path, function) -> calls)
        self._flow: list[_FlowStep] = []
        self._unhooked: dict[tuple[str, str], int] = {}
        self._unused: dict[tuple[str, str], int] = {}
        self._functional_rules: dict[str, ModuleRule] = {}
        self._signatures: dict[type, inspect.Signature | None] = {}
        self._tracker = FunctionalOpTracker(model, self._on_op)
        self._rules = self._plan()

    # -- planning -----------------------------------------------------------------------

    def _rule(self, module: nn.Module) -> ModuleRule | None:
        return find_rule(module, self.extra_rules)

    def _plan(self) -> dict[str, ModuleRule]:
        rules: dict[str, ModuleRule] = {}
        unknown: list[tuple[str, nn.Module]] = []
        for name, module in self.model.named_modules():
            rule = self._rule(module)
            if rule is not None:
                rules[name] = rule
            elif next(module.children(), None) is None:
                unknown.append((name, module))
            # else: a plain container, whose children are counted
        if unknown:
            supported = {key.rsplit(".", 1)[-1] for key in MODULE_RULES.names()}
            supported |= {cls.__name__ for cls in self.extra_rules}
            listing = ", ".join(f"{name or '<root>'} ({type(m).__name__})" for name, m in unknown)
            first_name, first = unknown[0]
            raise UnsupportedModuleError(
                type(first),
                first_name,
                supported,
                "add element-wise ones with OpCounter(extra_rules=...), others with "
                "energy.counting_rules.register_module_rule",
                operation="count operations",
                problem="has no counting rule",
                detail=f"leaf modules without a rule: {listing}",
            )
        return rules

    # -- hooks --------------------------------------------------------------------------

    def __enter__(self) -> OpCounter:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> None:
        """Register the forward hooks (idempotent).

        Every ruled module gets its counting hook; every module also gets the functional
        tracker's pre-hook (enter) and hook (leave), registered after the counting hook so
        that the counting hook runs while its module is still on the tracker's stack.
        """
        if self._handles:
            return
        for name, module in self.model.named_modules():
            rule = self._rules.get(name)
            if rule is not None:
                hook = self._make_hook(name, rule)
                self._handles.append(module.register_forward_hook(hook, with_kwargs=True))
            self._handles.append(
                module.register_forward_pre_hook(self._make_enter(name, rule is not None))
            )
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))

    def detach(self) -> None:
        """Remove all hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _make_hook(self, name: str, rule: ModuleRule) -> Callable[..., None]:
        role = ROLES.get(rule.role)

        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            if not self._running:  # a forward pass outside run(): not counted, nothing kept
                return
            inputs = self._bind(module, args, kwargs) if kwargs else args
            self._flow.append(_FlowStep(inputs=_keys(inputs)))  # uses its inputs
            primary = _primary_output(output)
            self._tracker.suspended += 1  # the counter's own reductions are not the model's
            try:
                call = self._record(name, role, rule, module, inputs, primary)
            finally:
                self._tracker.suspended -= 1
            self._calls.append(call)
            if call.out_key is not None:
                self._producers[call.out_key] = call
                if call.out_counts is not None:  # its storage stays taken until the pass ends
                    self._held.append(primary)

        return hook

    def _make_enter(self, name: str, ruled: bool) -> Callable[..., None]:
        def enter(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self._running:
                self._tracker.enter(module, name, ruled)

        return enter

    def _leave(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._running:
            self._tracker.leave()
            if module is self.model:  # the model's output is used
                self._flow.append(_FlowStep(inputs=_keys(output)))

    def _bind(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Positional and keyword arguments of a call, in ``forward``'s parameter order
        (``cell(x, state=s)`` is recorded as ``(x, s)``)."""
        cls = type(module)
        if cls not in self._signatures:
            try:
                self._signatures[cls] = inspect.signature(module.forward)
            except (TypeError, ValueError):
                self._signatures[cls] = None
        signature = self._signatures[cls]
        if signature is None:
            return args + tuple(kwargs.values())
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return args + tuple(kwargs.values())
        return tuple(bound.arguments.values())

    def _record(
        self,
        name: str,
        role: CountingRole,
        rule: ModuleRule,
        module: nn.Module,
        inputs: tuple[Any, ...],
        output: Any,
    ) -> _Call:
        """The call with its frames, per-frame shapes and producer; then the role's record.

        ``output`` is the module's output tensor (the first element of an ``(output,
        state)`` tuple).
        """
        x = inputs[0] if inputs else None
        if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
            raise UnsupportedModuleError(
                type(module),
                name,
                operation="count operations",
                problem="has non-tensor inputs or outputs",
                reason="hooks count tensors: the first input and the output (or the first "
                "element of an (output, state) tuple) must be tensors",
            )
        lead = 2 if rule.is_time_major(role) else 1  # [T, B, ...] or [N, ...]
        call = _Call(
            name=name,
            module=module,
            role=role,
            rule=rule,
            frames=prod(x.shape[:lead]),
            out_key=_key(output),
            in_shape=tuple(x.shape[lead:]),
            out_shape=tuple(output.shape[lead:]),
            source=self._producer(x),
        )
        role.record(self, call, inputs, output)
        return call

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        inputs: torch.Tensor,
        *,
        mode: str | InputMode = "batch",
        timesteps: int | None = None,
    ) -> Any:
        """One pass over a batch (eval mode, no grad); returns the model's output.

        Args:
            inputs: the batch: ``[B, ...]``, or ``[T, B, ...]`` for the time-major modes.
            mode: how to drive the model (:data:`energy.input_modes.INPUT_MODES`): ``batch``
                (one call, the model loops over time itself), ``static`` (stepped
                ``timesteps`` times on the same input), ``sequence`` (stepped over
                ``inputs[t]``), ``time-major`` (one call on the whole sequence).
            timesteps: ``T`` for ``static`` (checked against the inputs for the
                time-major modes; must be ``None`` for ``batch``).
        """
        input_mode = get_input_mode(mode)
        samples = input_mode.samples(inputs)
        attached = bool(self._handles)
        self.attach()
        training = self.model.training
        self.model.eval()
        try:
            self._running = True
            with torch.no_grad(), self._tracker:
                output, steps = input_mode.forward(self.model, inputs, timesteps)
            self._resolve(samples)
            if steps is not None:
                self._stepped[input_mode.name] = steps
                self._timesteps = max(self._timesteps, steps)
        finally:  # the next pass starts from empty calls; held spike tensors are let go
            self._running = False
            self._tracker.reset()
            self._calls, self._producers, self._held, self._flow = [], {}, [], []
            self.model.train(training)
            if not attached:
                self.detach()
        return output

    def result(self) -> ModelCounts:
        """Counts accumulated over every :meth:`run` so far."""
        if not self._samples:
            raise ConfigError("no data counted yet: call run() with at least one batch")
        return ModelCounts(
            model=self.name,
            samples=self._samples,
            timesteps=self._timesteps,
            layers=list(self._layers.values()),
            source="torch-hooks",
            view="hardware" if self.fold_pooling else "neurobench",
            notes=[
                "BatchNorm folded into the preceding layer (bias adds)"
                if self.fold_batchnorm
                else "BatchNorm counted unfolded (1 mult + 1 add per element)",
                *self._notes(),
            ],
        )

    def _notes(self) -> list[str]:
        """How the model was driven, and every functional operation left uncounted."""
        notes = [
            f"input mode {mode!r}: the model was stepped T = {steps} times per sample"
            for mode, steps in self._stepped.items()
        ]
        if self._functional_rules:
            notes.append(
                "functional operations in forward methods (x + y, x * y, ...) counted from "
                "their shapes: one operation per output element"
            )
        for (path, function), calls in self._unhooked.items():
            notes.append(
                f"NOT COUNTED: functional {function!r} called {calls} time(s) in the forward "
                f"of {path!r}; make it a module with a counting rule to count it"
            )
        for (path, function), calls in self._unused.items():
            notes.append(
                f"not counted: functional {function!r} called {calls} time(s) in the forward "
                f"of {path!r}, whose result the model does not use (bookkeeping)"
            )
        return notes

    # -- resolution ---------------------------------------------------------------------

    def _resolve(self, samples: int) -> None:
        self._prune_unused()
        slots: list[tuple[Any, str]] = []
        for call in self._calls:
            counts = [call.out_counts, call.extra.get("features"), call.extra.get("gate")]
            counts.append(call.stats.counts if call.stats is not None else None)
            counts += [v.counts for v in call.extra.values() if isinstance(v, _InputStats)]
            slots += [(c, key) for c in counts if c is not None for key in ("events", "ones")]
            slots += [(call.lazy, key) for key in call.lazy]
        _read_back(slots)
        results: list[tuple[_Call, Any]] = []
        for call in self._calls:
            resolve = call.role.resolve
            now = resolve is not None and not call.role.deferred
            results.append((call, resolve(self, call, samples) if now else None))
        ordered: list[LayerCounts] = []
        for call, counts in results:
            if call.role.deferred and call.role.resolve is not None:
                counts = call.role.resolve(self, call, samples)
            if isinstance(counts, LayerCounts):
                ordered.append(counts)
            elif counts is not None:
                ordered.extend(counts)
        _read_back([(layer, name) for layer in ordered for name in COUNT_FIELDS])
        for counts in self._merge_calls(ordered).values():
            self._add(counts)
        self._samples += samples
        self._timesteps = max(
            [self._timesteps]
            + [layer.steps for layer in self._layers.values() if layer.neuron_updates]
        )

    @staticmethod
    def _merge_calls(rows: list[LayerCounts]) -> dict[str, LayerCounts]:
        """Rows of one pass by layer, in first-call order: the calls of a layer called once
        per timestep add up (counts and ``steps``: frames per sample of all its calls)."""
        merged: dict[str, LayerCounts] = {}
        for row in rows:
            existing = merged.get(row.name)
            if existing is None:
                merged[row.name] = row
                continue
            steps = existing.steps + row.steps
            existing.merge(row)
            existing.steps = steps
        return merged

    def _add(self, counts: LayerCounts) -> None:
        existing = self._layers.get(counts.name)
        if existing is None:
            self._layers[counts.name] = counts
        else:
            existing.merge(counts)


def _primary_output(output: Any) -> Any:
    """The tensor a module computed: ``output``, or its first element for an ``(output,
    state)`` tuple (Norse's stateful modules)."""
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return output


# torch.nn layers (neurall-neuro's own: energy.rules_neurall_layers).
register_module_rule(nn.Conv2d, nn.Linear, rule=ModuleRule("synaptic"))
register_module_rule(nn.AvgPool2d, nn.AdaptiveAvgPool2d, rule=ModuleRule("avgpool"))
register_module_rule(nn.MaxPool2d, nn.AdaptiveMaxPool2d, rule=ModuleRule("maxpool"))
register_module_rule(nn.BatchNorm1d, nn.BatchNorm2d, rule=ModuleRule("batchnorm"))
register_module_rule(nn.Flatten, nn.Dropout, nn.Identity, rule=ModuleRule("passthrough"))
register_module_rule(
    nn.ReLU, rule=ModuleRule("elementwise", elementwise=_relu_rule, subclasses=False)
)
register_module_rule(
    nn.Sigmoid, rule=ModuleRule("elementwise", elementwise=_sigmoid_rule, subclasses=False)
)


def _batches(
    inputs: torch.Tensor | Iterable[Any], batch_size: int | None, mode: InputMode
) -> Iterator[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        yield from mode.split(inputs, batch_size)
        return
    for item in inputs:
        yield item[0] if isinstance(item, tuple | list) else item


def resolve_input_mode(input_mode: str | None, timesteps: int | None) -> str:
    """The input mode to use: ``input_mode`` if given, else ``batch`` without ``timesteps``
    (the model loops over time itself) and ``static`` with them (step the model ``T``
    times on each batch)."""
    if input_mode is not None:
        return get_input_mode(input_mode).name
    return "batch" if timesteps is None else "static"


def count_model(
    model: nn.Module,
    inputs: torch.Tensor | Iterable[Any],
    *,
    batch_size: int | None = None,
    fold_pooling: bool = True,
    fold_batchnorm: bool = True,
    name: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    timesteps: int | None = None,
    input_mode: str | None = None,
) -> ModelCounts:
    """Count the operations of ``model`` on ``inputs``.

    Args:
        model: the model (left in the train/eval mode it had).
        inputs: a tensor (split into ``batch_size`` chunks along its sample dimension) or
            an iterable of batches (tensors, or ``(inputs, labels, ...)`` tuples as a
            DataLoader yields). ``[N, ...]`` for modes ``batch`` and ``static``,
            ``[T, N, ...]`` for ``sequence`` and ``time-major``.
        batch_size: chunk size when ``inputs`` is a tensor (default: all at once).
        fold_pooling: hardware view (``True``) or NeuroBench view (``False``).
        fold_batchnorm: count BatchNorm as folded (bias adds) or unfolded.
        name: name of the model in the result.
        device: move each batch to this device first (default: leave it where it is).
        progress: show a progress bar over the batches.
        timesteps: step the model ``T`` times per batch (mode ``static``); for the
            time-major modes ``T`` comes from the inputs (and must match when given).
        input_mode: how each batch drives the model (:mod:`energy.input_modes`):
            ``batch`` (default without ``timesteps``: ``model(x)`` once, the model loops
            over time itself, as the SE-SNN does), ``static`` (default with ``timesteps``:
            ``output, state = model(x, state)`` at each of ``T`` steps for a model that
            takes a ``state``, as Norse's ``SequentialState`` and cells do, else
            ``model(x)``), ``sequence`` (the same, step ``t`` on ``x[t]`` of ``[T, N, ...]``
            event inputs) or ``time-major`` (``model(x)`` once on ``[T, N, ...]``, for
            Norse sequence modules such as ``LIF`` or ``Lift``).
    """
    refuse_foreign_neurons(model)
    mode = get_input_mode(resolve_input_mode(input_mode, timesteps))
    counter = OpCounter(model, fold_pooling=fold_pooling, fold_batchnorm=fold_batchnorm, name=name)
    batches: Iterable[torch.Tensor] = _batches(inputs, batch_size, mode)
    if progress:
        total = None
        if isinstance(inputs, torch.Tensor):
            size = batch_size or inputs.shape[mode.batch_dim]
            total = -(-inputs.shape[mode.batch_dim] // size)
        batches = track(batches, f"counting {counter.name}", total=total)
    with counter:
        for batch in batches:
            batch = batch if device is None else batch.to(device)
            counter.run(batch, mode=mode, timesteps=timesteps)
    return counter.result()


#: Spiking-neuron base classes of other frameworks, by (module prefix, class name): their
#: neurons have no counting rule here, and counted as a torch module they would vanish
#: (the model would look non-spiking). Their models are counted through NIR instead.
FOREIGN_NEURON_BASES: dict[tuple[str, str], str] = {
    ("snntorch", "SpikingNeuron"): "snnTorch: snntorch.export_to_nir(model, sample)",
    ("spikingjelly", "BaseNode"): "SpikingJelly: export the model to NIR",
    ("sinabs", "StatefulLayer"): "sinabs: sinabs.to_nir(model, sample)",
}


def refuse_foreign_neurons(model: nn.Module) -> None:
    """ConfigError if ``model`` holds spiking neurons of another framework
    (:data:`FOREIGN_NEURON_BASES`) that no counting rule covers; the message names them
    and how to count the model instead (export to NIR, count the graph)."""
    _load_builtin_rules()
    found: list[str] = []
    how = ""
    for path, module in model.named_modules():
        if find_rule(module) is not None:
            continue
        for base in type(module).__mro__:
            key = (base.__module__.split(".")[0], base.__name__)
            if key in FOREIGN_NEURON_BASES:
                found.append(f"{type(module).__name__} at {path or '(root)'!r}")
                how = FOREIGN_NEURON_BASES[key]
                break
    if found:
        raise ConfigError(
            f"{', '.join(found[:4])}{' ...' if len(found) > 4 else ''}: spiking neurons of "
            "another framework have no counting rule for a torch module (they would be "
            f"counted as nothing). Export the model to NIR ({how}) and count the graph: "
            "neurall energy --nir FILE, or energy_report(snn=nir_graph)"
        )


def has_spiking_neurons(model: nn.Module) -> bool:
    """Whether ``model`` has a module whose counting rule is a spiking neuron population
    (roles ``neuron`` and ``recurrent`` with ``spiking`` rules: LIF layers, Norse cells)."""
    _load_builtin_rules()
    for module in model.modules():
        rule = find_rule(module)
        if rule is not None and rule.role in ("neuron", "recurrent") and rule.spiking:
            return True
    return False

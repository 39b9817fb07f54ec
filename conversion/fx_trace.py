r"""Export of arbitrary torch / Norse models by tracing their ``forward`` with torch.fx.

:class:`TracedModel` traces one call of (a deep copy of) the model's ``forward`` (one
timestep for a per-step model, the whole sequence for a model of Norse's non-Cell
modules) into a ``torch.fx`` graph, checks it, and replays it on a
:class:`~conversion.nir_builder.GraphBuilder` (:meth:`TracedModel.replay`):

* **Leaves.** A module with a NIR mapping (:mod:`conversion.nir_mappings`, including
  Norse's neuron modules from :mod:`conversion.mappings.norse`) is a leaf of the trace and
  becomes its mapped nodes; so is every ``torch.nn`` layer and every module of a package
  in :data:`LEAF_PACKAGES` (Norse: their forwards loop over time or carry state), except
  containers registered with :func:`~conversion.nir_mappings.register_traced_container`
  (``SequentialState``) and ``nn.Sequential``, which are traced through like any user
  module. A leaf without a mapping is refused by name.
* **State.** Norse modules return ``(output, state)`` (see
  :class:`~conversion.nir_mappings.MappingTraits`); ``[0]`` is the signal, the state is
  held by the NIR neuron itself and may not be used as a signal. ``forward`` arguments
  after the input that default to ``None`` (Norse's ``state=None``) are traced as ``None``.
  A per-step model must return its Cells' states (``return out, states``, as
  ``SequentialState`` does): a Cell whose state ``forward`` discards restarts at every
  call in Norse, which a stateful NIR neuron would not reproduce, so it is refused.
* **Operations** (``call_function`` / ``call_method`` nodes):

  =================================  =================================================
  ``a + b`` (``torch.add``, ``+=``)  the sum as a signal: the next node gets one edge from
                                     each summand (NIR sums all edges into a node); a
                                     summand used twice becomes a ``Scale`` by 2
  ``a - b``, ``-a``                  the same with ``b`` through a ``Scale`` by -1
  ``c * a``, ``a * c`` (number c)    ``Scale`` by ``c``
  ``torch.cat([a, b], dim)``         one ``Linear`` (flat signals) or 1x1 ``Conv2d``
                                     (channels of ``(C, H, W)``) per part, embedding it in
                                     the concatenation (weights 0/1: exact), summed
  ``torch.flatten``, ``x.flatten``   ``Flatten``
  =================================  =================================================

  Anything else (a product of two signals, ``view``/``reshape``, indexing, activation
  functions, ...) raises :class:`~neurall_neuro.errors.UnsupportedModuleError` naming the
  operation and the module whose ``forward`` contains it; so does every unmapped leaf.
  Nothing is dropped silently: all problems are collected first and reported together.

Node names are module paths (a module called twice gets ``path@1``, ...); operations are
named ``<module path>.<fx node name>`` (e.g. ``block.add``).
"""

from __future__ import annotations

import copy
import inspect
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch
import torch.fx
from torch import nn

from conversion.nir_builder import GraphBuilder
from conversion.nir_mappings import (
    find_mapping,
    is_traced_container,
    map_flatten,
    mapping_traits,
    supported_modules,
    unsupported_module_error,
    unsupported_reason,
)
from neurall_neuro.errors import ConversionError, UnsupportedModuleError

#: Top-level packages whose modules are leaves of the trace (mapped, or refused by name).
LEAF_PACKAGES: tuple[str, ...] = ("norse",)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Signal:
    """A traced tensor: the sum of the outputs of NIR nodes ``sources`` (batch-free
    ``shape``)."""

    sources: tuple[str, ...]
    shape: Shape


@dataclass(frozen=True)
class Stateful:
    """The ``(output, state)`` pair a stateful module returns."""

    signal: Signal
    path: str


@dataclass(frozen=True)
class State:
    """A module's state: held by its NIR neuron, not a signal."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """A traced value that is not a signal (a shape, a parameter, ...)."""

    what: str


# ------------------------------------------------------------------------------ ops

_ADD = {operator.add, operator.iadd, torch.add}
_SUB = {operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul}
_NEG = {operator.neg, torch.neg}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_FLATTEN = {torch.flatten}
#: Tensor methods (in-place ones such as ``add_`` are refused: the trace would lose them).
_METHODS = {"add": "add", "sub": "sub", "mul": "mul", "neg": "neg", "flatten": "flatten"}
#: Human-readable list of what a traced forward may contain besides modules.
SUPPORTED_OPERATIONS = "a + b, a - b, -a, number * a, torch.cat, torch.flatten"


def _op_kind(node: torch.fx.Node) -> str | None:
    """The supported operation a call node is, or None (``getitem``/asserts separately)."""
    if node.op == "call_method":
        return _METHODS.get(str(node.target))
    target = node.target
    for kind, group in (
        ("add", _ADD),
        ("sub", _SUB),
        ("mul", _MUL),
        ("neg", _NEG),
        ("cat", _CAT),
        ("flatten", _FLATTEN),
    ):
        if target in group:
            return kind
    return None


def _op_label(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module.startswith("torch"):
        return f"torch.{name}"
    return f"{module}.{name}" if module else name


def _is_inspection(node: torch.fx.Node) -> bool:
    """``x.shape``, ``x.size()``, ``x.dim()``: values about a signal, not signals. They are
    harmless unless an unsupported operation uses them (which is refused itself)."""
    if node.op == "call_method":
        return node.target in ("size", "dim")
    return node.op == "call_function" and node.target is getattr


def _is_assert(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "") in (
        "_assert_is_none",
        "_assert",
    )


# ------------------------------------------------------------------------------ tracing


class _Tracer(torch.fx.Tracer):
    """Leaves: mapped modules, torch.nn layers, modules of :data:`LEAF_PACKAGES`."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m) is nn.Sequential or is_traced_container(m):
            return False
        if find_mapping(m) is not None or unsupported_reason(m) is not None:
            return True
        if type(m).__module__.split(".")[0] in LEAF_PACKAGES:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _concrete_args(model: nn.Module) -> dict[str, Any]:
    """``forward``'s arguments after the input, traced as their defaults (``state=None``)."""
    parameters = list(inspect.signature(model.forward).parameters.values())
    positional = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not positional:
        raise ConversionError(f"{type(model).__name__}.forward takes no input to trace")
    concrete: dict[str, Any] = {}
    for parameter in positional[1:]:
        if parameter.default is inspect.Parameter.empty:
            raise ConversionError(
                f"{type(model).__name__}.forward needs a second input {parameter.name!r}; only "
                "forwards of one input (plus arguments with defaults, e.g. state=None) can be "
                "exported"
            )
        concrete[parameter.name] = parameter.default
    return concrete


def trace(model: nn.Module) -> tuple[torch.fx.GraphModule, dict[str, str]]:
    """The traced ``forward`` of ``model`` and, per fx node name, the path of the module
    whose ``forward`` contains it."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model, concrete_args=_concrete_args(model))
    except ConversionError:
        raise
    except Exception as exc:  # torch.fx raises TraceError, TypeError, ... on dynamic code
        raise ConversionError(
            f"cannot trace {type(model).__name__}.forward with torch.fx ({type(exc).__name__}: "
            f"{exc}). A forward that loops over time or branches on tensor values cannot be "
            "traced: export the per-step model (Norse Cells, one step per call) or use Norse's "
            "non-Cell modules (LIF, LI, ...) for whole sequences"
        ) from exc
    module = torch.fx.GraphModule(tracer.root, graph)
    scopes = {name: scope[0] for name, scope in tracer.node_name_to_scope.items()}
    return module, scopes


def returns_state(module: nn.Module) -> bool:
    """Whether a call of ``module`` returns ``(output, state)`` (see MappingTraits)."""
    hook = mapping_traits(module).returns_state
    if hook is not None:
        return bool(hook(module))
    return "state" in inspect.signature(module.forward).parameters


# ------------------------------------------------------------------------------ replay


class _Replay:
    """Replays a traced graph on a GraphBuilder (see the module docstring)."""

    def __init__(self, module: torch.fx.GraphModule, scopes: dict[str, str], builder: GraphBuilder):
        self.module = module
        self.scopes = scopes
        self.builder = builder
        self.values: dict[torch.fx.Node, Any] = {}
        self.calls: Counter[str] = Counter()
        self.pending_owner: torch.fx.Node | None = None
        self.input_node: torch.fx.Node | None = None

    # -- errors ----------------------------------------------------------------------

    def _where(self, node: torch.fx.Node) -> str:
        return self.scopes.get(node.name, "") or "<model root>"

    def _op_problem(self, node: torch.fx.Node, reason: str) -> dict[str, Any]:
        return {
            "module_class": _op_label(node),
            "path": self._where(node),
            "reason": reason,
            "problem": f"(traced operation {node.name!r}) has no NIR form",
            "detail": f"operations a traced forward may use: {SUPPORTED_OPERATIONS}",
        }

    def _op_error(self, node: torch.fx.Node, reason: str) -> UnsupportedModuleError:
        problem = self._op_problem(node, reason)
        return UnsupportedModuleError(
            problem.pop("module_class"), problem.pop("path"), supported_modules(), **problem
        )

    def check(self) -> None:
        """Collect every unmapped leaf and unsupported operation; raise the first, naming
        the others."""
        problems: list[tuple[str, dict[str, Any]]] = []
        for node in self.module.graph.nodes:
            if node.op == "call_module":
                sub = self.module.get_submodule(node.target)
                if find_mapping(sub) is None:
                    label = f"{type(sub).__name__} at {node.target!r}"
                    problems.append(
                        (
                            label,
                            {
                                "module_class": type(sub),
                                "path": str(node.target),
                                "reason": unsupported_reason(sub),
                            },
                        )
                    )
            elif node.op in ("call_function", "call_method"):
                if _is_assert(node) or _is_inspection(node) or node.target is operator.getitem:
                    continue
                if _op_kind(node) is None:
                    label = f"{_op_label(node)} in {self._where(node)!r}"
                    problems.append((label, self._op_problem(node, self._op_reason(node))))
        if not problems:
            return
        first = dict(problems[0][1])
        details = [first.pop("detail")] if first.get("detail") else []
        if len(problems) > 1:
            others = ", ".join(label for label, _ in problems[1:6])
            details.append(f"also unsupported: {others}{', ...' if len(problems) > 6 else ''}")
            details.append(
                "the forward was traced with torch.fx (residual adds, branches and skip "
                "connections are supported)"
            )
        raise UnsupportedModuleError(
            first.pop("module_class"),
            first.pop("path"),
            supported_modules(),
            first.pop("reason", None),
            detail="; ".join(details) or None,
            **first,
        )

    def check_states_kept(self, threads_state: bool) -> None:
        """A Cell whose returned state ``forward`` discards (or cannot take back: a
        ``forward(x)`` without a state argument) restarts at every call in Norse, while its
        NIR neuron keeps its state: refuse instead of exporting other dynamics. (Sequence
        modules keep their state over the sequence themselves.)"""
        nodes = list(self.module.graph.nodes)
        output = next(n for n in nodes if n.op == "output")
        returned = set(output.all_input_nodes)
        reaching: set[torch.fx.Node] = set()
        stack = [output]
        while stack:
            for parent in stack.pop().all_input_nodes:
                if parent not in reaching:
                    reaching.add(parent)
                    stack.append(parent)
        for node in nodes:
            if node.op != "call_module":
                continue
            sub = self.module.get_submodule(node.target)
            if mapping_traits(sub).sequence or not returns_state(sub):
                continue
            if not threads_state:
                raise ConversionError(
                    f"{type(sub).__name__} at {node.target!r} is a Norse Cell, but the model's "
                    "forward(x) takes no state to give back to it, so Norse restarts the cell "
                    "at every call (every step), while its NIR neuron keeps its state. Use "
                    "SequentialState, or forward(x, state=None) returning (out, states)"
                )
            kept = node in returned or any(
                user.target is operator.getitem and user.args[1] == 1 and user in reaching
                for user in node.users
            )
            if not kept:
                raise ConversionError(
                    f"{type(sub).__name__} at {node.target!r} returns a state that forward() "
                    "discards, so Norse restarts this neuron at every call (every step), while "
                    "its NIR neuron keeps its state across steps. Thread the states: return "
                    "them next to the output, as SequentialState does (return out, states)"
                )

    @staticmethod
    def _op_reason(node: torch.fx.Node) -> str:
        label = _op_label(node)
        if node.op == "call_method" and node.target in ("view", "reshape", "permute", "transpose"):
            return f"NIR has no general reshape; use nn.Flatten / torch.flatten ({label})"
        if node.op == "call_method" and str(node.target).endswith("_"):
            return "an in-place operation; write it out of place (a = a + b)"
        return "NIR has no primitive for it"

    # -- values ----------------------------------------------------------------------

    def _value(self, arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node):
            return self.values[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self._value(a) for a in arg)
        return arg

    def _signal(self, node: torch.fx.Node, arg: Any, what: str) -> Signal:
        value = self._value(arg)
        if isinstance(value, Signal):
            return value
        if isinstance(value, Stateful):
            raise ConversionError(
                f"{what} at {self._where(node)!r} receives the (output, state) tuple of "
                f"{value.path!r}; take its output [0]"
            )
        if isinstance(value, State):
            raise self._op_error(
                node,
                f"it uses the state of {value.path!r} as a signal; the state lives inside the "
                "NIR neuron and is not an output",
            )
        raise self._op_error(node, f"its input is not a traced signal ({value!r})")

    def _name(self, node: torch.fx.Node) -> str:
        scope = self.scopes.get(node.name, "")
        return f"{scope}.{node.name}" if scope else node.name

    def _fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.builder.nodes:
            name, k = f"{base}@{k}", k + 1
        return name

    def _module_path(self, target: str) -> str:
        count = self.calls[target]
        self.calls[target] += 1
        return target if count == 0 else f"{target}@{count}"

    # -- replay ----------------------------------------------------------------------

    def run(self) -> Signal:
        output: Signal | None = None
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                self.values[node] = self._placeholder(node)
            elif node.op == "get_attr":
                self.values[node] = Opaque(f"attribute {node.target}")
            elif node.op == "call_module":
                self.values[node] = self._call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.values[node] = self._call(node)
            elif node.op == "output":
                output = self._output(node)
        if output is None:
            raise ConversionError("the traced forward returns nothing")
        return output

    def _placeholder(self, node: torch.fx.Node) -> Any:
        if self.input_node is None:  # the first argument is the model's input
            self.input_node = node
            return Signal(tuple(self.builder.signal()), self.builder.shape)
        return Opaque(f"argument {node.target}")

    def _enter(self, node: torch.fx.Node, x: Signal, source: torch.fx.Node | None) -> None:
        builder = self.builder
        if builder.pending is not None and source is not self.pending_owner:
            raise ConversionError(
                f"the folded gate of {builder.pending.source} must be absorbed by the next layer "
                f"on its own path, not by {self._where(node)!r}"
            )
        # BatchNorm folds into the tail node only if nothing else reads that node.
        single_user = source is not None and len(source.users) == 1
        builder.set_signal(list(x.sources), x.shape, fold_into_tail=single_user)

    def _call_module(self, node: torch.fx.Node) -> Any:
        module = self.module.get_submodule(node.target)
        mapping = find_mapping(module)
        if mapping is None:  # check() found it first; kept for safety
            raise unsupported_module_error(module, str(node.target))
        for extra in (*node.args[1:], *node.kwargs.values()):
            if self._value(extra) is not None:
                raise ConversionError(
                    f"{type(module).__name__} at {node.target!r} is called with a second "
                    "argument (e.g. an explicit state); export the model so that every module "
                    "is called once per step with state=None"
                )
        if not node.args:
            raise ConversionError(f"{type(module).__name__} at {node.target!r} gets no input")
        source = node.args[0] if isinstance(node.args[0], torch.fx.Node) else None
        x = self._signal(node, node.args[0], f"{type(module).__name__} {node.target!r}")
        self._enter(node, x, source)
        builder = self.builder
        before = len(builder.nodes)
        mapping(module, self._module_path(str(node.target)), builder)
        if len(builder.nodes) == before and builder.pending is None:
            out = x  # identity at inference (Identity, Dropout, SE 'none')
        else:
            out = Signal(tuple(builder.signal()), builder.shape)
        self.pending_owner = node if builder.pending is not None else None
        if returns_state(module):
            return Stateful(out, str(node.target))
        return out

    def _call(self, node: torch.fx.Node) -> Any:
        if _is_assert(node):
            return None
        if _is_inspection(node):
            return Opaque(f"{_op_label(node)} of a signal")
        if node.target is operator.getitem:
            return self._getitem(node)
        kind = _op_kind(node)
        args = list(node.args)
        if kind in ("add", "sub"):
            if node.kwargs.get("alpha", 1) != 1:
                raise self._op_error(node, "add/sub with alpha != 1")
            a = self._signal(node, args[0], _op_label(node))
            b = self._signal_or_error(
                node,
                args[1],
                "a sum with a constant is a bias NIR cannot add to an arbitrary signal",
            )
            if kind == "sub":
                b = self._scaled(node, b, -1.0)
            return self._sum(node, [a, b])
        if kind == "neg":
            return self._scaled(node, self._signal(node, args[0], _op_label(node)), -1.0)
        if kind == "mul":
            return self._mul(node, args)
        if kind == "cat":
            return self._cat(node)
        if kind == "flatten":
            return self._flatten(node)
        raise self._op_error(node, "NIR has no primitive for it")

    def _signal_or_error(self, node: torch.fx.Node, arg: Any, reason: str) -> Signal:
        value = self._value(arg)
        if isinstance(value, (int, float, torch.Tensor)):
            raise self._op_error(node, reason)
        return self._signal(node, arg, _op_label(node))

    def _getitem(self, node: torch.fx.Node) -> Any:
        base, index = self._value(node.args[0]), node.args[1]
        if isinstance(base, Stateful):
            if index == 0:
                return base.signal
            if index == 1:
                return State(base.path)
            raise ConversionError(f"{base.path!r} returns (output, state); index {index!r}")
        if isinstance(base, (list, tuple)) and isinstance(index, int):
            return base[index]
        if isinstance(base, Signal):
            raise self._op_error(node, "indexing or slicing a signal (x[...]) has no NIR form")
        return Opaque(f"item {index!r}")

    def _sum(self, node: torch.fx.Node, parts: list[Signal]) -> Signal:
        shape = parts[0].shape
        for part in parts[1:]:
            if part.shape != shape:
                raise self._op_error(
                    node,
                    f"a sum of signals of shapes {shape} and {part.shape}: NIR sums edges "
                    "into a node, which needs equal shapes (no broadcasting)",
                )
        counts = Counter(source for part in parts for source in part.sources)
        sources: list[str] = []
        for source, count in counts.items():
            if count == 1:
                sources.append(source)
            else:  # the same node twice: one edge scaled by its multiplicity
                scaled = self._scaled(node, Signal((source,), shape), float(count))
                sources.extend(scaled.sources)
        return Signal(tuple(sources), shape)

    def _scaled(self, node: torch.fx.Node, x: Signal, factor: float) -> Signal:
        """``factor * x`` as one ``Scale`` node fed by every source of ``x``."""
        builder = self.builder
        builder.set_signal(list(x.sources), x.shape, fold_into_tail=False)
        name = self._fresh(self._name(node) + ("" if factor != -1.0 else ".neg"))
        scale = nir.Scale(scale=np.full(x.shape, factor, dtype=np.float32))
        builder.add(name, scale, shape=x.shape, metadata={"module": self._where(node)})
        return Signal((name,), x.shape)

    def _mul(self, node: torch.fx.Node, args: list[Any]) -> Signal:
        values = [self._value(a) for a in args[:2]]
        numbers = [
            i
            for i, v in enumerate(values)
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        signals = [i for i, v in enumerate(values) if isinstance(v, (Signal, Stateful, State))]
        if len(numbers) == 1 and len(signals) == 1:
            x = self._signal(node, args[signals[0]], _op_label(node))
            return self._scaled(node, x, float(values[numbers[0]]))
        if len(signals) == 2:
            raise self._op_error(
                node, "a product of two signals: NIR 1.0.8 has no multiplication of signals"
            )
        raise self._op_error(node, "multiplication by a tensor; only a number is supported")

    def _dim(self, node: torch.fx.Node, dim: int, ndim: int) -> int:
        lead = self.builder.leading_dims
        if dim < 0:
            dim += ndim + lead
        if dim < lead:
            raise self._op_error(
                node, f"dim {dim} is the batch{' or time' if lead == 2 else ''} dim"
            )
        return dim - lead

    def _cat(self, node: torch.fx.Node) -> Signal:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        parts = [self._signal(node, t, _op_label(node)) for t in tensors]
        shape = parts[0].shape
        axis = self._dim(node, int(dim), len(shape))
        for part in parts[1:]:
            if len(part.shape) != len(shape) or any(
                a != b for i, (a, b) in enumerate(zip(part.shape, shape, strict=True)) if i != axis
            ):
                raise self._op_error(node, f"parts of shapes {[p.shape for p in parts]}")
        if axis != 0 or len(shape) not in (1, 3):
            raise self._op_error(
                node,
                f"concatenation along batch-free dim {axis} of a {len(shape)}-D signal; only "
                "flat signals and the channels of (C, H, W) maps can be concatenated (as "
                "embedding Linear / 1x1 Conv2d nodes)",
            )
        total = sum(p.shape[0] for p in parts)
        out_shape = (total, *shape[1:])
        builder = self.builder
        base = self._name(node)
        offset, sources = 0, []
        for k, part in enumerate(parts):
            size = part.shape[0]
            embed = np.zeros((total, size), dtype=np.float32)
            embed[offset + np.arange(size), np.arange(size)] = 1.0
            builder.set_signal(list(part.sources), part.shape, fold_into_tail=False)
            if len(shape) == 1:
                layer: nir.NIRNode = nir.Linear(weight=embed)
            else:
                layer = nir.Conv2d(
                    input_shape=tuple(part.shape[1:]),
                    weight=embed[:, :, None, None],
                    stride=1,
                    padding=0,
                    dilation=1,
                    groups=1,
                    bias=np.zeros(total, dtype=np.float32),
                )
            name = self._fresh(f"{base}.{k}")
            builder.add(name, layer, metadata={"module": self._where(node), "role": "concat"})
            sources.append(name)
            offset += size
        return Signal(tuple(sources), out_shape)

    def _flatten(self, node: torch.fx.Node) -> Signal:
        args = list(node.args)
        x = self._signal(node, args[0], _op_label(node))
        start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
        self._enter(node, x, None)
        map_flatten(nn.Flatten(int(start), int(end)), self._fresh(self._name(node)), self.builder)
        return Signal(tuple(self.builder.signal()), self.builder.shape)

    def _output(self, node: torch.fx.Node) -> Signal:
        value = self._value(node.args[0])
        if isinstance(value, (tuple, list)) and value:
            rest = list(value[1:])
            while rest:  # Norse's (output, state) convention: the rest must be states
                item = rest.pop()
                if isinstance(item, (tuple, list)):
                    rest.extend(item)
                elif isinstance(item, (Signal, Stateful)):
                    raise ConversionError(
                        "the model returns several signals; a graph exported here has one "
                        "output (return the output, or (output, state) as Norse does)"
                    )
            value = value[0]
        if isinstance(value, Stateful):
            value = value.signal
        if not isinstance(value, Signal):
            raise ConversionError(
                f"the model's output is not a traced signal ({value!r}); it must return a "
                "tensor or (tensor, state)"
            )
        if self.builder.pending is not None:
            self.builder.require_no_pending("the graph output")
        return value


class TracedModel:
    """A model's traced ``forward``, checked for unmapped modules and operations (raises
    :class:`~neurall_neuro.errors.UnsupportedModuleError` naming all of them)."""

    def __init__(self, model: nn.Module):
        # Trace a copy: tracing runs forward() with proxies, and a forward that stores
        # values on its modules (self.state = ...) would keep proxies afterwards.
        self.module, self.scopes = trace(copy.deepcopy(model))
        #: forward takes arguments besides the input (Norse's state=None): it can thread states
        self.threads_state = bool(_concrete_args(model))
        # Check everything, dead code included (an in-place op's result may look unused),
        # then drop computations whose results reach no output (unused states, branches).
        replay = _Replay(self.module, self.scopes, GraphBuilder(1.0))
        replay.check()
        replay.check_states_kept(self.threads_state)
        self.module.graph.eliminate_dead_code()

    def replay(self, builder: GraphBuilder) -> None:
        """Append the model's nodes to ``builder``, whose current signal (the ``Input``
        node) is the model's input; afterwards its signal is the model's output."""
        output = _Replay(self.module, self.scopes, builder).run()
        builder.set_signal(list(output.sources), output.shape, fold_into_tail=False)


def leading_dims(model: nn.Module) -> int:
    """2 if ``model`` contains a module taking ``[T, B, ...]`` sequences, else 1."""
    return 2 if any(mapping_traits(m).sequence for m in model.modules()) else 1


def model_dt(model: nn.Module, default: float) -> float:
    """The one time step of ``model``'s time-dependent modules (MappingTraits.dt), or
    ``default`` when it has none; different values raise ConversionError."""
    found: dict[float, str] = {}
    for path, module in model.named_modules():
        getter: Callable[[nn.Module], float | None] | None = mapping_traits(module).dt
        value = getter(module) if getter is not None else None
        if value is not None:
            found.setdefault(float(value), f"{type(module).__name__} at {path or '<model root>'!r}")
    if len(found) > 1:
        listing = ", ".join(f"{where}: dt={dt}" for dt, where in sorted(found.items()))
        raise ConversionError(
            f"the model's neuron modules use different dt values ({listing}); one NIR graph "
            "has one dt"
        )
    return next(iter(found)) if found else default

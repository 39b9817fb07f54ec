r"""Functional operations between hooked layers: counted exactly, or named in a note.

Forward hooks see modules, not the operations a ``forward`` performs on tensors itself:
the residual join ``self.lif2(self.conv2(z) + x)`` of a researcher's block is a bare
``+``. While the torch-hook counter runs a model, :class:`FunctionalOpTracker` (a
``torch.overrides.TorchFunctionMode``) sees every torch function called and hands those
called *outside* every module that has a counting rule (i.e. in the ``forward`` of a
plain container, or in the model's own ``forward``) to the counter:

* operations in :data:`FUNCTIONAL_RULES` are counted exactly, from the shapes of that
  call (``n_out`` = elements of the result, ``n_in`` = elements of the reduced input):

  ======================================================  =====================================
  operation                                               counted
  ======================================================  =====================================
  ``+``, ``-`` (``add``, ``sub``, in place or not)         ``adds = n_out``
  ``*``, ``/``, unary ``-`` (``mul``, ``div``, ``neg``)    ``mults = n_out``
  ``relu``, ``clamp``, ``maximum``, ``minimum``, ``>``...  ``comparisons = n_out``
  ``sigmoid``, ``tanh``, ``exp``, ``log``                  ``nonlinear = n_out``
  ``sum``                                                  ``adds = n_in - n_out``
  ``mean``                                                 ``adds = n_in - n_out``, ``mults = n_out``
  ======================================================  =====================================

  (a broadcast operand costs nothing extra: one operation per output element);
* data movement (:data:`FREE_FUNCTIONS`: views, reshapes, indexing, ``cat``/``stack``,
  copies, tensor factories, attribute reads) costs nothing;
* any other function (a functional ``conv2d``, ``avg_pool2d``, ``matmul``, ``softmax``,
  ...) is not counted and is reported: the counter adds a note naming it and where it
  was called, so a report never omits an operation silently. Make such an operation a
  module with a counting rule to count it.

Only operations whose result the model *uses* are counted: the counter follows each
result (through data movement and further operations) to the input of a ruled module or
to the model's output. An operation whose result goes nowhere (bookkeeping in a
``forward``, such as summing spikes to record them) is not part of the inference; the
counter names it in a note instead of counting it.

Operations inside a module that has a counting rule belong to that rule (a Norse cell's
neuron dynamics are its neuron update), and the counter's own statistics are computed
while the tracker is suspended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from neurall_neuro.registry import Registry

#: ``(args, kwargs, result) -> counts`` (count fields of :class:`energy.counts.LayerCounts`).
CountFn = Callable[[tuple[Any, ...], Mapping[str, Any], torch.Tensor], dict[str, int]]


@dataclass(frozen=True)
class FunctionalRule:
    """How one functional operation is counted.

    Attributes:
        kind: the :class:`~energy.counts.LayerCounts` kind of its rows (``add``, ``mult``...).
        count: its counts for one call.
    """

    kind: str
    count: CountFn


def _tensors(args: tuple[Any, ...]) -> list[torch.Tensor]:
    return [a for a in args if isinstance(a, torch.Tensor)]


def _elementwise(field: str) -> CountFn:
    def count(args: tuple[Any, ...], kwargs: Mapping[str, Any], result: torch.Tensor) -> dict:
        n = result.numel()
        return {
            field: n,
            "input_elements": sum(t.numel() for t in _tensors(args)),
            "output_elements": n,
        }

    return count


def _reduction(mean: bool) -> CountFn:
    def count(args: tuple[Any, ...], kwargs: Mapping[str, Any], result: torch.Tensor) -> dict:
        source = args[0]
        n_in, n_out = source.numel(), result.numel()
        values = {"adds": n_in - n_out, "input_elements": n_in, "output_elements": n_out}
        if mean:
            values["mults"] = n_out  # the 1/n scale
        return values

    return count


#: Canonical operation name -> :class:`FunctionalRule`.
FUNCTIONAL_RULES: Registry[FunctionalRule] = Registry("functional operation rule")

#: Torch function names (``func.__name__``) -> canonical operation name of a rule.
FUNCTION_ALIASES: dict[str, str] = {}

for _canonical, _kind, _count, _aliases in (
    ("add", "add", _elementwise("adds"), ("add", "add_", "__add__", "__radd__", "__iadd__")),
    ("sub", "add", _elementwise("adds"),
     ("sub", "sub_", "subtract", "rsub", "__sub__", "__rsub__", "__isub__")),
    ("mul", "mult", _elementwise("mults"),
     ("mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__")),
    ("div", "mult", _elementwise("mults"),
     ("div", "div_", "divide", "true_divide", "__truediv__", "__rtruediv__", "__itruediv__",
      "__div__", "__rdiv__", "__idiv__")),
    ("neg", "mult", _elementwise("mults"), ("neg", "neg_", "negative", "__neg__")),
    ("relu", "comparison", _elementwise("comparisons"), ("relu", "relu_")),
    ("clamp", "comparison", _elementwise("comparisons"),
     ("clamp", "clamp_", "clip", "clamp_min", "clamp_max", "maximum", "minimum")),
    ("compare", "comparison", _elementwise("comparisons"),
     ("gt", "lt", "ge", "le", "eq", "ne", "__gt__", "__lt__", "__ge__", "__le__", "__eq__",
      "__ne__", "greater", "less", "greater_equal", "less_equal", "heaviside")),
    ("sigmoid", "nonlinear", _elementwise("nonlinear"), ("sigmoid", "sigmoid_")),
    ("tanh", "nonlinear", _elementwise("nonlinear"), ("tanh", "tanh_")),
    ("exp", "nonlinear", _elementwise("nonlinear"), ("exp", "exp_")),
    ("log", "nonlinear", _elementwise("nonlinear"), ("log", "log_")),
    ("sum", "sum", _reduction(mean=False), ("sum",)),
    ("mean", "mean", _reduction(mean=True), ("mean",)),
):  # fmt: skip
    FUNCTIONAL_RULES.register(_canonical, FunctionalRule(_kind, _count))
    FUNCTION_ALIASES.update(dict.fromkeys(_aliases, _canonical))

#: Torch functions that move, view or create data without arithmetic (never counted).
FREE_FUNCTIONS: frozenset[str] = frozenset(
    [
        "__get__",
        "__set__",
        "__getitem__",
        "__setitem__",
        "__len__",
        "__iter__",
        "__bool__",
        "__int__",
        "__float__",
        "__index__",
        "__format__",
        "__repr__",
        "__hash__",
        "__contains__",
        "__reduce_ex__",
        "__deepcopy__",
        "size",
        "dim",
        "numel",
        "item",
        "tolist",
        "numpy",
        "data_ptr",
        "storage_offset",
        "stride",
        "is_contiguous",
        "is_floating_point",
        "element_size",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "t",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "repeat",
        "repeat_interleave",
        "contiguous",
        "clone",
        "detach",
        "detach_",
        "to",
        "type",
        "type_as",
        "float",
        "double",
        "half",
        "bfloat16",
        "int",
        "long",
        "bool",
        "cpu",
        "cuda",
        "requires_grad_",
        "cat",
        "concat",
        "concatenate",
        "stack",
        "hstack",
        "vstack",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "narrow",
        "select",
        "index_select",
        "gather",
        "movedim",
        "moveaxis",
        "flip",
        "roll",
        "pad",
        "constant_pad_nd",
        "zeros",
        "ones",
        "full",
        "empty",
        "zeros_like",
        "ones_like",
        "full_like",
        "empty_like",
        "rand",
        "rand_like",
        "randn",
        "randn_like",
        "arange",
        "tensor",
        "as_tensor",
        "new_zeros",
        "new_ones",
        "new_full",
        "new_empty",
        "new_tensor",
        "fill_",
        "zero_",
        "copy_",
        "masked_fill",
        "masked_fill_",
        "broadcast_to",
        "broadcast_tensors",
        "align_to",
        "rename",
        "refine_names",
    ]
)


@dataclass
class _Frame:
    """A module whose ``forward`` is running: its path, whether it has a counting rule,
    and how many operations of each kind its ``forward`` called so far (for row names)."""

    module: nn.Module
    path: str
    ruled: bool
    seen: dict[str, int]


@dataclass
class OpEvent:
    """One torch function called outside every ruled module, with a tensor result.

    Attributes:
        module: the innermost running module (the model itself between steps).
        path: its path in the model (``""`` for the model itself).
        function: the torch function's name (``__add__``, ``cat``, ``conv2d``...).
        rule: its :class:`FunctionalRule` (``None``: data movement, or not countable).
        free: data movement (:data:`FREE_FUNCTIONS`): costs nothing.
        row: the row name of a counted operation (``<path>.<op>``, ``_<k>`` for the
            ``k``-th further one of the same forward call), else ``""``.
        args, kwargs, result: the call.
    """

    module: nn.Module
    path: str
    function: str
    rule: FunctionalRule | None
    free: bool
    row: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    result: Any


class FunctionalOpTracker(TorchFunctionMode):
    """Reports the torch functions called outside ruled modules to the counter.

    The counter pushes every module on :meth:`enter` (a forward pre-hook) and pops it on
    :meth:`leave` (a forward hook); a function is reported (as an :class:`OpEvent`, to
    ``on_op``) only while no module with a counting rule is running, the tracker is not
    :attr:`suspended`, and its result holds a tensor. The counter counts those with a
    rule, follows data movement to know which results the model uses, and names the rest.
    """

    def __init__(self, root: nn.Module, on_op: Callable[[OpEvent], None]):
        super().__init__()
        self.on_op = on_op
        self.suspended = 0
        self._root = root
        self._frames: list[_Frame] = []
        self._ruled = 0

    def reset(self) -> None:
        """Forget the module stack (after a pass, or one that raised)."""
        self._frames.clear()
        self._ruled = 0
        self.suspended = 0

    def enter(self, module: nn.Module, path: str, ruled: bool) -> None:
        self._frames.append(_Frame(module, path, ruled, {}))
        self._ruled += ruled

    def leave(self) -> None:
        if self._frames:
            self._ruled -= self._frames.pop().ruled

    @property
    def active(self) -> bool:
        """Whether an operation called now is the tracker's to report."""
        return not self.suspended and not self._ruled

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not self.active or not has_tensor(result):
            return result
        name = getattr(func, "__name__", repr(func))
        frame = self._frames[-1] if self._frames else _Frame(self._root, "", False, {})
        canonical = FUNCTION_ALIASES.get(name)
        rule, row = None, ""
        if canonical is not None and isinstance(result, torch.Tensor):
            rule = FUNCTIONAL_RULES.get(canonical)
            index = frame.seen.get(canonical, 0)
            frame.seen[canonical] = index + 1
            row = f"{frame.path}.{canonical}" if frame.path else canonical
            row = row if index == 0 else f"{row}_{index}"
        event = OpEvent(
            frame.module, frame.path, name, rule, name in FREE_FUNCTIONS, row, args, kwargs, result
        )
        self.suspended += 1
        try:
            self.on_op(event)
        finally:
            self.suspended -= 1
        return result


def has_tensor(value: Any) -> bool:
    """Whether ``value`` is a tensor or a tuple/list holding one."""
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, tuple | list) and any(isinstance(v, torch.Tensor) for v in value)


def tensors_in(values: Any) -> list[torch.Tensor]:
    """The tensors in ``values`` (a tensor, or tuples/lists/dicts of them, one level deep)."""
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, Mapping):
        values = list(values.values())
    if isinstance(values, tuple | list):
        found = []
        for value in values:
            if isinstance(value, torch.Tensor):
                found.append(value)
            elif isinstance(value, tuple | list):
                found += [v for v in value if isinstance(v, torch.Tensor)]
        return found
    return []


def per_frame_shape(tensor: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """``(frames, per-frame shape)`` of a functional result: its first dimension is frames."""
    if tensor.dim() == 0:
        return 1, ()
    return int(tensor.shape[0]), tuple(int(s) for s in tensor.shape[1:])

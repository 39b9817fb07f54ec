r"""Torch implementations of the nir 1.0.8 primitives, in discrete time with step ``dt``.

Every op works on a batch: stateless ops on ``[N, *shape]`` (the runtime folds time into
the batch, ``N = T * B``), neuron ops one step at a time on ``[B, *shape]`` with an
explicit state. Shapes in NIR exclude the batch; parameters of shape ``()``/``(1,)``
broadcast over the node's input.

Discretisation (forward Euler with the graph's ``dt``; ``x[t]`` is the sum of all edges
into the node at step ``t``; states start at 0; a spike is ``z[t] = 1`` iff the voltage
is *strictly* above threshold, after which the voltage is set to ``v_reset``):

=========  ===================================================================================
node       update per step
=========  ===================================================================================
Affine     ``y = W x + b``
Linear     ``y = W x``
Scale      ``y = s * x`` (elementwise)
Conv1d/2d  ``torch.nn.functional.conv1d/conv2d`` (cross-correlation, as torch), bias added
SumPool2d  sum over each window (zero padding)
AvgPool2d  mean over each window (zero padding counted, torch's ``count_include_pad=True``)
Flatten    flattens dims ``start_dim..end_dim`` of the batch-free shape
Threshold  ``z = [x > threshold]``
Delay      ``y[t] = x[t - d]`` with ``d = round(delay / dt)`` steps (0 before the first input)
I          ``v[t] = v[t-1] + dt * (r * x[t])``; output ``v``
IF         ``v[t] = v[t-1] + dt * (r * x[t])``; spike/reset as above
LI         ``v[t] = v[t-1] + (dt/tau) * ((r * x[t] + v_leak) - v[t-1])``; output ``v``
LIF        ``v[t] = v[t-1] + (dt/tau) * ((r * x[t] + v_leak) - v[t-1])``; spike/reset
CubaLI     ``i[t] = i[t-1] + (dt/tau_syn) * (w_in * x[t] - i[t-1])`` first, then the LI update
           of ``v`` driven by the *new* current ``i[t]`` (``r * i[t]``); output ``v``
CubaLIF    as CubaLI, then spike/reset of ``v`` (the current ``i`` is not reset)
=========  ===================================================================================

The LIF arithmetic is Norse's ``lif_box_feed_forward_step`` operation for operation
(``(dt * tau_inv) * ((input + v_leak) - v)``, threshold as ``v - v_th > 0``), so a
Norse box-LIF layer and a NIR ``LIF`` node produce bit-identical spikes and membranes.
I and IF are the literal Euler steps of ``dv/dt = r * I``: a graph that means "add the
input once per step" must store ``r = 1 / dt``. With snnTorch's parametrisation
(``r = tau / dt``, CubaLIF ``w_in = tau_syn / dt``) LIF/CubaLIF reduce to snnTorch's
``mem = beta * mem + input`` / ``syn = alpha * syn + input``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurall_neuro.errors import GraphFileError, UnsupportedNodeError
from neurall_neuro.int_tuples import int_tuple as parse_int_tuple

State = Any


# --------------------------------------------------------------------------- helpers


def as_array(node_name: str, field: str, value: Any) -> np.ndarray:
    """A finite numeric numpy array from a node field (numpy, Python number or torch)."""
    if value is None:
        raise GraphFileError(f"node {node_name!r}: field {field!r} is missing (None)")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise GraphFileError(
            f"node {node_name!r}: field {field!r} must be numeric, got dtype {array.dtype}"
        )
    if not np.all(np.isfinite(array)):
        raise GraphFileError(f"node {node_name!r}: field {field!r} contains NaN or inf")
    return array


def int_tuple(node_name: str, field: str, value: Any, n: int) -> tuple[int, ...]:
    """``value`` (int, sequence or array) of a node's field as a tuple of ``n`` ints."""
    array = as_array(node_name, field, value)
    return parse_int_tuple(array, n, f"node {node_name!r}: field {field!r}", error=GraphFileError)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)


def _positive(node_name: str, field: str, array: np.ndarray) -> np.ndarray:
    if np.any(array <= 0):
        raise GraphFileError(f"node {node_name!r}: {field} must be > 0, got min {array.min()!r}")
    return array


def regroup(weight: np.ndarray, groups: int = 1) -> tuple[int, np.ndarray]:
    """The most groups ``g`` (a multiple of ``groups``) in which a convolution weight
    ``[C_out, C_in / groups, ...]`` can be written, and its weight ``[C_out, C_in / g, ...]``.

    A weight is block-diagonal in ``g`` groups when output channel ``o`` has non-zero
    taps only on the input channels of its own block (``o // (C_out / g)``). The
    grouped convolution then computes the same products without the zero ones (for
    example the SE gate's broadcast written as a dense ``C x C`` convolution is a
    depthwise one). Returns ``(groups, weight)`` when nothing more can be split off.
    """
    c_out, c_in_g = int(weight.shape[0]), int(weight.shape[1])
    c_in = c_in_g * groups
    if groups < 1 or c_out % groups:
        return groups, weight
    dense = np.zeros((c_out, c_in, *weight.shape[2:]), dtype=weight.dtype)
    per_out = c_out // groups
    for g in range(groups):
        dense[g * per_out : (g + 1) * per_out, g * c_in_g : (g + 1) * c_in_g] = weight[
            g * per_out : (g + 1) * per_out
        ]
    used = np.abs(dense).reshape(c_out, c_in, -1).max(axis=-1) != 0  # [C_out, C_in]
    out_idx, in_idx = np.nonzero(used)
    common = int(np.gcd(c_out, c_in))
    for g in sorted((d for d in range(groups, common + 1) if common % d == 0), reverse=True):
        if g % groups or c_out % g or c_in % g:
            continue
        if np.array_equal(out_idx // (c_out // g), in_idx // (c_in // g)):
            if g == groups:
                return groups, weight
            block_in = c_in // g
            rows = [
                dense[o, (o // (c_out // g)) * block_in : (o // (c_out // g) + 1) * block_in]
                for o in range(c_out)
            ]
            return g, np.stack(rows)
    return groups, weight


# --------------------------------------------------------------------------- base ops


class NodeOp(nn.Module):
    """One NIR node as a torch op. Stateless ops implement :meth:`apply`; stateful ops
    (neurons, delays) implement :meth:`init_state` and :meth:`step`."""

    stateful = False
    #: True for ops whose output is binary spikes (counted by the torch target).
    spiking = False

    def __init__(self, name: str):
        super().__init__()
        self.node_name = name

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_state(self, like: torch.Tensor) -> State:
        return None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One timestep on ``[B, *shape]``; stateless ops ignore ``state``."""
        return self.apply(x), state

    def state_values(self, state: State) -> dict[str, torch.Tensor]:
        """Named state variables (for recording membranes)."""
        return {}

    def forward_seq(
        self, x: torch.Tensor, static: bool, steps: int, states: dict[str, list] | None = None
    ) -> tuple[torch.Tensor, bool]:
        """Run all ``steps`` timesteps. ``x`` is ``[T, B, ...]``, or ``[B, ...]`` when
        ``static`` (the same input at every step). Returns ``(y, y_is_static)``.

        Stateless ops run once on the time-folded batch (or once on a static input).
        """
        if static:
            return self.apply(x), True
        return self.apply(x.flatten(0, 1)).unflatten(0, x.shape[:2]), False


class StatefulOp(NodeOp):
    """Base of ops with memory: :meth:`forward_seq` loops :meth:`step` over time."""

    stateful = True

    def forward_seq(
        self, x: torch.Tensor, static: bool, steps: int, states: dict[str, list] | None = None
    ) -> tuple[torch.Tensor, bool]:
        first = x if static else x[0]
        state = self.init_state(first)
        outputs = []
        for t in range(steps):
            y, state = self.step(x if static else x[t], state)
            outputs.append(y)
            if states is not None:
                for key, value in self.state_values(state).items():
                    states.setdefault(key, []).append(value)
        return torch.stack(outputs), False


class IdentityOp(NodeOp):
    """Input, Output and Identity nodes."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x


class AffineOp(NodeOp):
    r""":math:`y = W x + b` (``Affine``) or :math:`y = W x` (``Linear``, ``bias=None``)."""

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray | None):
        super().__init__(name)
        if weight.ndim != 2:
            raise UnsupportedNodeError(
                f"node {name!r}: only 2-D Affine/Linear weights (out, in) are supported, "
                f"got shape {weight.shape}"
            )
        if bias is not None and bias.shape != (weight.shape[0],):
            raise GraphFileError(
                f"node {name!r}: bias shape {bias.shape} does not match weight {weight.shape}"
            )
        self.register_buffer("weight", _tensor(weight))
        self.register_buffer("bias", None if bias is None else _tensor(bias))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class ScaleOp(NodeOp):
    r""":math:`y = s \odot x`."""

    def __init__(self, name: str, scale: np.ndarray):
        super().__init__(name)
        self.register_buffer("scale", _tensor(scale))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ConvOp(NodeOp):
    """``Conv1d`` / ``Conv2d``: torch cross-correlation with stride, padding (ints or
    ``'same'``/``'valid'``), dilation, groups and bias."""

    def __init__(self, name: str, node: nir.Conv1d | nir.Conv2d, dims: int):
        super().__init__(name)
        weight = as_array(name, "weight", node.weight)
        if weight.ndim != dims + 2:
            raise GraphFileError(
                f"node {name!r}: Conv{dims}d weight must have {dims + 2} dims, got {weight.shape}"
            )
        groups = int(as_array(name, "groups", node.groups))
        if groups < 1 or weight.shape[0] % groups:
            raise GraphFileError(
                f"node {name!r}: groups={groups} must divide the {weight.shape[0]} output channels"
            )
        padding = node.padding
        if isinstance(padding, bytes):
            padding = padding.decode("utf8")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise GraphFileError(
                    f"node {name!r}: padding must be 'same', 'valid' or integers, got {padding!r}"
                )
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = int_tuple(name, "padding", padding, dims)
        self.stride = int_tuple(name, "stride", node.stride, dims)
        self.dilation = int_tuple(name, "dilation", node.dilation, dims)
        self.groups = groups
        if node.bias is None:
            bias_array = np.zeros(weight.shape[0])
        else:
            bias_array = as_array(name, "bias", node.bias).reshape(-1)
            if bias_array.size == 1:
                bias_array = np.repeat(bias_array, weight.shape[0])
        if bias_array.shape != (weight.shape[0],):
            raise GraphFileError(
                f"node {name!r}: bias shape {bias_array.shape} does not match "
                f"{weight.shape[0]} output channels"
            )
        self.register_buffer("weight", _tensor(weight))
        self.register_buffer("bias", _tensor(bias_array))
        self._conv: Callable[..., torch.Tensor] = F.conv1d if dims == 1 else F.conv2d
        # a block-diagonal weight reaching one input channel per output (e.g. the SE
        # broadcast exported as a dense conv) broadcasts a 1x1 map with one product each
        point_groups, point_weight = regroup(weight, groups) if dims == 2 else (groups, weight)
        self._point_groups = point_groups if point_weight.shape[1] == 1 else groups
        self.register_buffer(
            "_point_weight",
            _tensor(point_weight) if self._point_groups != groups else None,
            persistent=False,
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self._is_point_broadcast(x):
            return self._point_broadcast(x)
        return self._conv(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def _is_point_broadcast(self, x: torch.Tensor) -> bool:
        """A 2-D convolution of a 1x1 map with a larger kernel (e.g. the SE gate broadcast)."""
        return (
            x.dim() == 4
            and x.shape[-2:] == (1, 1)
            and self.weight.shape[-2] * self.weight.shape[-1] > 1
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and isinstance(self.padding, tuple)
            and 2 * self.padding[0] + 2 > self.weight.shape[-2] > self.padding[0]
            and 2 * self.padding[1] + 2 > self.weight.shape[-1] > self.padding[1]
        )

    def _point_broadcast(self, x: torch.Tensor) -> torch.Tensor:
        r"""The same result as ``conv2d`` without the sliding window over mostly zeros.

        With a single input pixel, output ``(i, j)`` sees it through kernel tap
        ``(p_h - i, p_w - j)``: :math:`y[o, i, j] = b_o + \sum_c W[o, c, p_h - i, p_w - j]\,
        x[c]` (taps outside the kernel give 0). For the SE broadcast (kernel ``H x W``,
        padding ``(H-1, W-1)``, weights 1) every output is a single product, so the result
        is bit-identical to the convolution; a dense weight that is zero off one input
        channel per output (:func:`regroup`) is used in that depthwise form (the dropped
        products are zeros: the sum is the one product, whatever the order).
        """
        weight = self.weight if self._point_weight is None else self._point_weight
        out_c, in_per_group, kh, kw = weight.shape
        ph, pw = self.padding
        oh, ow = 2 * ph - kh + 2, 2 * pw - kw + 2
        # taps[o, c, i, j] = W[o, c, ph - i, pw - j] (zero outside the kernel)
        flipped = weight.flip(-2, -1)
        top, left = kh - 1 - ph, kw - 1 - pw
        taps = flipped[:, :, top : top + oh, left : left + ow]
        groups = self._point_groups
        if in_per_group == 1:  # one product per output: an elementwise broadcast
            xg = x.reshape(x.shape[0], groups, 1, 1)
            tg = taps.reshape(groups, out_c // groups, oh * ow)
            out = (xg * tg).reshape(x.shape[0], out_c, oh, ow)
        else:
            xg = x.reshape(x.shape[0], groups, in_per_group)
            tg = taps.reshape(groups, out_c // groups, in_per_group, oh * ow)
            out = torch.einsum("ngc,gocp->ngop", xg, tg).reshape(x.shape[0], out_c, oh, ow)
        return out + self.bias.view(1, -1, 1, 1)


class PoolOp(NodeOp):
    """``AvgPool2d`` (mean, zero padding counted) or ``SumPool2d`` (window sum)."""

    def __init__(self, name: str, node: nir.AvgPool2d | nir.SumPool2d, average: bool):
        super().__init__(name)
        self.kernel = int_tuple(name, "kernel_size", node.kernel_size, 2)
        self.stride = int_tuple(name, "stride", node.stride, 2)
        self.padding = int_tuple(name, "padding", node.padding, 2)
        self.average = average
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise GraphFileError(
                f"node {name!r}: invalid pooling kernel {self.kernel}, stride {self.stride} "
                f"or padding {self.padding}"
            )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(
            x,
            self.kernel,
            self.stride,
            self.padding,
            count_include_pad=True,
            divisor_override=None if self.average else 1,
        )


class FlattenOp(NodeOp):
    """Flattens batch-free dims ``start_dim..end_dim`` (negative dims count from the end)."""

    def __init__(self, name: str, node: nir.Flatten):
        super().__init__(name)
        self.start = int(as_array(name, "start_dim", node.start_dim))
        self.end = int(as_array(name, "end_dim", node.end_dim))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        start = self.start + 1 if self.start >= 0 else self.start
        end = self.end + 1 if self.end >= 0 else self.end
        return x.flatten(start, end)


class ThresholdOp(NodeOp):
    r""":math:`z = [x > \theta]` (stateless)."""

    spiking = True

    def __init__(self, name: str, threshold: np.ndarray):
        super().__init__(name)
        self.register_buffer("threshold", _tensor(threshold))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.threshold > 0).to(x.dtype)


class DelayOp(StatefulOp):
    r""":math:`y[t] = x[t - d]`, ``d = round(delay / dt)`` steps per element, zeros before."""

    def __init__(self, name: str, delay: np.ndarray, dt: float):
        super().__init__(name)
        if np.any(delay < 0):
            raise GraphFileError(f"node {name!r}: delays must be >= 0")
        steps = np.rint(delay / dt).astype(np.int64)
        self.register_buffer("steps", torch.as_tensor(steps))
        self.max_steps = int(steps.max()) if steps.size else 0
        self.unique_steps = sorted({int(s) for s in steps.reshape(-1)})

    def init_state(self, like: torch.Tensor) -> State:
        return [torch.zeros_like(like) for _ in range(self.max_steps)]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        history = [x, *state]  # history[k] = x[t - k]
        y = torch.zeros_like(x)
        for d in self.unique_steps:
            y = torch.where(self.steps == d, history[d], y)
        return y, history[: self.max_steps]

    def forward_seq(
        self, x: torch.Tensor, static: bool, steps: int, states: dict[str, list] | None = None
    ) -> tuple[torch.Tensor, bool]:
        if static:
            x = x.unsqueeze(0).expand(steps, *x.shape)
        y = torch.zeros_like(x)
        for d in self.unique_steps:
            if d >= steps:
                continue
            shifted = torch.zeros_like(x)
            shifted[d:] = x[: steps - d]
            y = torch.where(self.steps == d, shifted, y)
        return y, False


# --------------------------------------------------------------------------- neurons


class _MembraneOp(StatefulOp):
    """Shared parameters of the voltage-based neurons."""

    def _register(self, **arrays: np.ndarray) -> None:
        for key, value in arrays.items():
            self.register_buffer(key, _tensor(value))

    def _fire(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (v - self.v_threshold > 0).to(v.dtype)
        return z, torch.where(z > 0, self.v_reset.expand_as(v), v)

    def state_values(self, state: State) -> dict[str, torch.Tensor]:
        if isinstance(state, tuple):
            return {"i": state[0], "v": state[1]}
        return {"v": state}


def _dt_over_tau(dt: float, tau: np.ndarray) -> torch.Tensor:
    # Same arithmetic as Norse: tau_inv = float32(1 / tau) (computed in float64), then
    # dt * tau_inv as a float32 tensor op.
    return dt * _tensor(1.0 / tau.astype(np.float64))


class LIFOp(_MembraneOp):
    r"""``LIF``: :math:`v[t] = v[t-1] + \frac{dt}{\tau}\bigl((r x[t] + v_\text{leak}) - v[t-1]\bigr)`,
    :math:`z = [v > v_\text{th}]`, then :math:`v = v_\text{reset}` where :math:`z = 1`.

    Bit-identical to Norse's ``lif_box_feed_forward_step`` for ``r = 1``."""

    spiking = True

    def __init__(self, name: str, node: nir.LIF, dt: float):
        super().__init__(name)
        tau = _positive(name, "tau", as_array(name, "tau", node.tau))
        self.register_buffer("dt_tau", _dt_over_tau(dt, tau))
        self._register(
            r=as_array(name, "r", node.r),
            v_leak=as_array(name, "v_leak", node.v_leak),
            v_threshold=as_array(name, "v_threshold", node.v_threshold),
            v_reset=as_array(name, "v_reset", node.v_reset),
        )
        # parameter values that let forward_seq skip work without changing any bit
        self._r_is_one = bool(torch.all(self.r == 1))
        self._leak_is_zero = bool(torch.all(self.v_leak == 0))
        self._reset_is_zero = bool(
            torch.all(self.v_reset == 0) and not torch.any(torch.signbit(self.v_reset))
        )
        self._uniform = {
            key: bool(torch.all(getattr(self, key) == getattr(self, key).reshape(-1)[0]))
            for key in ("dt_tau", "v_threshold")
        }

    def init_state(self, like: torch.Tensor) -> State:
        return torch.zeros_like(like)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        v = state + self.dt_tau * (self.r * x + self.v_leak - state)
        return self._fire(v)

    def _scalar_or_full(self, key: str) -> torch.Tensor:
        """A uniform parameter as a 0-dim tensor (same value, no broadcast reads)."""
        value = getattr(self, key)
        return value.reshape(-1)[0] if self._uniform[key] else value

    def forward_seq(
        self, x: torch.Tensor, static: bool, steps: int, states: dict[str, list] | None = None
    ) -> tuple[torch.Tensor, bool]:
        r"""All steps with in-place updates, bit-identical to looping :meth:`step`.

        The same float operations in the same order per element:
        :math:`c = r x + v_\text{leak}` (for the whole input at once; ``r = 1`` and
        ``v_leak = 0`` are skipped: ``1 x = x`` exactly, and ``x + 0`` differs from ``x``
        only in the sign of a zero, which no later result keeps), then per step
        ``d = c - v; d *= dt/tau; v += d``, ``z = [v > v_th]`` (equal to ``v - v_th > 0``
        for IEEE floats with gradual underflow) and the reset. With ``v_reset = +0`` the
        reset is ``v - v z``, which equals ``where(z, 0, v)`` unless ``v = +inf`` spikes;
        that case leaves a NaN in ``v`` for good, so a NaN at the end reruns the node with
        :meth:`step`.
        """
        cur = x if self._r_is_one else self.r * x
        if not self._leak_is_zero:
            cur = cur + self.v_leak
        first = cur if static else cur[0]
        dt_tau = self._scalar_or_full("dt_tau")
        threshold = self._scalar_or_full("v_threshold")
        shape = torch.broadcast_shapes(
            first.shape, self.dt_tau.shape, self.v_threshold.shape, self.v_reset.shape
        )
        v = torch.zeros(shape, dtype=first.dtype, device=first.device)
        delta = torch.empty_like(v)
        out = torch.empty((steps, *shape), dtype=v.dtype, device=v.device)
        history: list[torch.Tensor] = []
        for t in range(steps):
            torch.sub(cur if static else cur[t], v, out=delta)
            delta.mul_(dt_tau)
            v.add_(delta)
            torch.gt(v, threshold, out=out[t])
            if self._reset_is_zero:
                v.addcmul_(v, out[t], value=-1)
            else:
                v = torch.where(out[t] > 0, self.v_reset.expand_as(v), v)
            if states is not None:
                history.append(v.clone())
        if self._reset_is_zero and bool(torch.isnan(v.sum())):  # any NaN makes the sum NaN
            return super().forward_seq(x, static, steps, states)
        if states is not None:
            states.setdefault("v", []).extend(history)
        return out, False


class LIOp(_MembraneOp):
    r"""``LI``: :math:`v[t] = v[t-1] + \frac{dt}{\tau}\bigl((r x[t] + v_\text{leak}) - v[t-1]\bigr)`;
    the output is :math:`v`."""

    def __init__(self, name: str, node: nir.LI, dt: float):
        super().__init__(name)
        tau = _positive(name, "tau", as_array(name, "tau", node.tau))
        self.register_buffer("dt_tau", _dt_over_tau(dt, tau))
        self._register(r=as_array(name, "r", node.r), v_leak=as_array(name, "v_leak", node.v_leak))

    def init_state(self, like: torch.Tensor) -> State:
        return torch.zeros_like(like)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        v = state + self.dt_tau * (self.r * x + self.v_leak - state)
        return v, v


class IOp(_MembraneOp):
    r"""``I``: :math:`v[t] = v[t-1] + dt\,(r x[t])`; the output is :math:`v`."""

    def __init__(self, name: str, node: nir.I, dt: float):
        super().__init__(name)
        self.dt = float(dt)
        self._register(r=as_array(name, "r", node.r))

    def init_state(self, like: torch.Tensor) -> State:
        return torch.zeros_like(like)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        v = state + self.dt * (self.r * x)
        return v, v


class IFOp(_MembraneOp):
    r"""``IF``: :math:`v[t] = v[t-1] + dt\,(r x[t])`, :math:`z = [v > v_\text{th}]`, then
    :math:`v = v_\text{reset}` where :math:`z = 1`."""

    spiking = True

    def __init__(self, name: str, node: nir.IF, dt: float):
        super().__init__(name)
        self.dt = float(dt)
        self._register(
            r=as_array(name, "r", node.r),
            v_threshold=as_array(name, "v_threshold", node.v_threshold),
            v_reset=as_array(name, "v_reset", node.v_reset),
        )

    def init_state(self, like: torch.Tensor) -> State:
        return torch.zeros_like(like)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        v = state + self.dt * (self.r * x)
        return self._fire(v)


class CubaOp(_MembraneOp):
    r"""``CubaLI`` / ``CubaLIF`` (current-based synapse, then membrane):

    .. math::
        i[t] = i[t-1] + \frac{dt}{\tau_\text{syn}}\bigl(w_\text{in} x[t] - i[t-1]\bigr)

        v[t] = v[t-1] + \frac{dt}{\tau_\text{mem}}\bigl((r\, i[t] + v_\text{leak}) - v[t-1]\bigr)

    The current is updated first and the membrane integrates the *new* current. CubaLIF
    then spikes on :math:`v > v_\text{th}` and resets :math:`v` (not :math:`i`)."""

    def __init__(self, name: str, node: nir.CubaLI | nir.CubaLIF, dt: float, fires: bool):
        super().__init__(name)
        self.spiking = fires
        tau_syn = _positive(name, "tau_syn", as_array(name, "tau_syn", node.tau_syn))
        tau_mem = _positive(name, "tau_mem", as_array(name, "tau_mem", node.tau_mem))
        self.register_buffer("dt_tau_syn", _dt_over_tau(dt, tau_syn))
        self.register_buffer("dt_tau_mem", _dt_over_tau(dt, tau_mem))
        self._register(
            r=as_array(name, "r", node.r),
            v_leak=as_array(name, "v_leak", node.v_leak),
            w_in=as_array(name, "w_in", node.w_in),
        )
        if fires:
            self._register(
                v_threshold=as_array(name, "v_threshold", node.v_threshold),
                v_reset=as_array(name, "v_reset", node.v_reset),
            )

    def init_state(self, like: torch.Tensor) -> State:
        return (torch.zeros_like(like), torch.zeros_like(like))

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        i, v = state
        i = i + self.dt_tau_syn * (self.w_in * x - i)
        v = v + self.dt_tau_mem * (self.r * i + self.v_leak - v)
        if not self.spiking:
            return v, (i, v)
        z, v = self._fire(v)
        return z, (i, v)


# --------------------------------------------------------------------------- builders

OpBuilder = Callable[[str, nir.NIRNode, float | None], NodeOp]


def _need_dt(name: str, node: nir.NIRNode, dt: float | None) -> float:
    if dt is None:
        raise GraphFileError(
            f"node {name!r} ({type(node).__name__}) needs a time step, but the graph stores no "
            "dt (metadata['dt']); pass it explicitly: load_nir(graph, dt=...) "
            "(neurall-neuro and snnTorch use 1e-4 s, Norse 1e-3 s)"
        )
    return dt


BUILDERS: dict[type, OpBuilder] = {
    nir.Input: lambda n, node, dt: IdentityOp(n),
    nir.Output: lambda n, node, dt: IdentityOp(n),
    nir.Affine: lambda n, node, dt: AffineOp(
        n, as_array(n, "weight", node.weight), as_array(n, "bias", node.bias).reshape(-1)
    ),
    nir.Linear: lambda n, node, dt: AffineOp(n, as_array(n, "weight", node.weight), None),
    nir.Scale: lambda n, node, dt: ScaleOp(n, as_array(n, "scale", node.scale)),
    nir.Conv1d: lambda n, node, dt: ConvOp(n, node, 1),
    nir.Conv2d: lambda n, node, dt: ConvOp(n, node, 2),
    nir.SumPool2d: lambda n, node, dt: PoolOp(n, node, average=False),
    nir.AvgPool2d: lambda n, node, dt: PoolOp(n, node, average=True),
    nir.Flatten: lambda n, node, dt: FlattenOp(n, node),
    nir.Threshold: lambda n, node, dt: ThresholdOp(n, as_array(n, "threshold", node.threshold)),
    nir.Delay: lambda n, node, dt: DelayOp(
        n, as_array(n, "delay", node.delay), _need_dt(n, node, dt)
    ),
    nir.I: lambda n, node, dt: IOp(n, node, _need_dt(n, node, dt)),
    nir.IF: lambda n, node, dt: IFOp(n, node, _need_dt(n, node, dt)),
    nir.LI: lambda n, node, dt: LIOp(n, node, _need_dt(n, node, dt)),
    nir.LIF: lambda n, node, dt: LIFOp(n, node, _need_dt(n, node, dt)),
    nir.CubaLI: lambda n, node, dt: CubaOp(n, node, _need_dt(n, node, dt), fires=False),
    nir.CubaLIF: lambda n, node, dt: CubaOp(n, node, _need_dt(n, node, dt), fires=True),
}
# nir.ir.graph.Identity exists in nir 1.0.8 but is not serialisable; accept it in memory.
if hasattr(nir.ir.graph, "Identity"):
    BUILDERS[nir.ir.graph.Identity] = lambda n, node, dt: IdentityOp(n)

#: Node types that need a time step.


def supported_node_types() -> list[str]:
    """Names of the NIR node types the runtime executes (plus nested ``NIRGraph``)."""
    return sorted({t.__name__ for t in BUILDERS} | {"NIRGraph"})


def build_op(name: str, node: nir.NIRNode, dt: float | None) -> NodeOp:
    """The torch op for one (non-graph) NIR node; unknown types raise UnsupportedNodeError."""
    builder = BUILDERS.get(type(node))
    if builder is None:
        raise UnsupportedNodeError(
            f"node {name!r} has unsupported type {type(node).__name__}; "
            f"supported node types: {', '.join(supported_node_types())}"
        )
    return builder(name, node, dt)

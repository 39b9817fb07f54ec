"""Read and write lava-dl netx HDF5 networks as :class:`~hw_targets.loihi.network.LoihiNetwork`.

File layout (what ``lava.lib.dl.netx.hdf5.Network`` of lava-dl 0.6.0 reads)
--------------------------------------------------------------------------
``layer/{0..n-1}`` groups, each with a ``type``: ``input``, ``conv``, ``flatten``,
``dense``, ``dense_rec`` (``pool``, ``average``, ``concat``, ... are not implemented by
the loader, and netx is a sequential stack: layer ``i`` feeds layer ``i + 1``).

* ``shape``: the layer's output shape in **(C, H, W)** (z, y, x) order; Lava reverses
  it to its (x, y, z) layout. Dense layers use ``prod(shape)`` neurons.
* ``neuron/{type, iDecay, vDecay, vThMant, refDelay, ...}``: ``LOIHI``/``CUBA`` become a
  Lava ``LIF`` with ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant`` and
  ``bias_exp = 6`` for every layer; ``refDelay`` is ignored (Lava's LIF has no
  refractory period). A dense layer without ``neuron`` gets Lava's default
  "non-leaky integrator" (``iDecay = 0``, ``vDecay = 4096``, ``vThMant = 1 << 17``).
* ``bias`` (per channel or scalar): the neurons' ``bias_mant`` (read with
  ``astype(int)``, i.e. truncated). The input layer's ``weight``/``bias`` are only a
  stored "transform"; its neurons are driven by ``bias_mant`` set at run time.
* conv: ``weight [C_out, C_in/groups, kH, kW(, 1)]`` in torch correlation layout (Lava
  flips and transposes it for its true convolution), ``stride``/``padding``/
  ``dilation`` in (h, w) order, ``groups``; used as given (Lava's Conv applies neither
  clipping nor ``weight_exp``). A ``delay`` on a conv layer is ignored by Lava.
* dense: ``weight [N_out, N_in]`` (integers; Lava's ``optimize_weight_bits`` picks a
  mantissa/exponent, then its Dense clips and truncates them), optional axonal
  ``delay`` (0 = the native one-step delay; clamped to 62). A dense layer after a
  3-D layer needs a ``flatten`` layer before it (Lava then flattens in (C, H, W)
  C-order, like torch).
* dense_rec: a dense layer plus ``weight_rec [N_out, N_out]``, a synapse from the
  layer's neurons back into them (lava-dl's ``RecurrentDense`` block: the neurons'
  ``s_out`` feeds a second Dense into their ``a_in``, one step later). Lava optimises
  ``hstack(weight, weight_rec)`` together: both share one weight exponent, and the
  recurrent synapse gets the layer's delay.

:func:`read_netx` reproduces all of that (bit-exact with Lava, see the tests) and
:func:`write_netx` writes files that Lava loads, plus our own attributes (layer names,
bias start steps, readout, scales, the host encoder) that Lava ignores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hw_targets.loihi.network import (
    HostEncoder,
    LoihiNetwork,
    NeuronGroup,
    Synapse,
    conv_output_shape,
)
from hw_targets.loihi.spec import (
    BIAS_MANT_RANGE,
    DELAY_RANGE,
    DU_OFFSET,
    LAVA_WEIGHT_MAX,
    NETX_BIAS_EXP,
    NETX_DEFAULT_I_DECAY,
    NETX_DEFAULT_V_DECAY,
    NETX_DEFAULT_VTH_MANT,
    NETX_EXCITATORY_SCALE,
    NETX_INHIBITORY_SCALE,
    NETX_INPUT_TRANSFORM_WEIGHT,
    NETX_MAX_DELAY,
    NETX_MIXED_CLIP,
    NETX_MIXED_SCALE,
    NETX_REF_DELAY,
    WEIGHT_BITS,
    WEIGHT_EXP_RANGE,
    WEIGHT_MANT_STEP,
    WEIGHT_RANGE,
)
from neurall_neuro.atomic import atomic_path
from neurall_neuro.errors import (
    ConversionError,
    GraphFileError,
    QuantizationError,
    UnsupportedNodeError,
)
from neurall_neuro.int_tuples import int_pair

#: Layer types Lava's netx loader builds (and we read).
SUPPORTED_LAYER_TYPES = ("input", "conv", "flatten", "dense", "dense_rec")
#: Types the loader knows but does not implement (or that are not LIF networks).
UNSUPPORTED_LAYER_TYPES = (
    "dense_comp",
    "pool",
    "convT",
    "unpool",
    "average",
    "concat",
)
FORMAT_NAME = "neurall-netx"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- Lava's weight pipeline


def _netx_optimize_weight_bits(weight: np.ndarray, where: str) -> tuple[np.ndarray, int, int]:
    """``lava.lib.dl.netx.utils.optimize_weight_bits`` (mantissa, num_weight_bits, exponent)."""
    weight = weight.astype(np.int64)
    max_w, min_w = int(weight.max()), int(weight.min())
    clip_lo, clip_hi = NETX_MIXED_CLIP
    if max_w > clip_hi and min_w < 0:
        weight = np.clip(weight, clip_lo, clip_hi)
        max_w = int(weight.max())
    if min_w < clip_lo and max_w > 0:
        weight = np.clip(weight, clip_lo, clip_hi)
        min_w = int(weight.min())
    if max_w == min_w == 0:
        raise UnsupportedNodeError(
            f"{where}: all weights are zero; Lava's netx loader cannot scale them (log2(inf))"
        )
    if max_w < 0:
        scale, signed = NETX_INHIBITORY_SCALE / min_w, 0
    elif min_w >= 0:
        scale, signed = NETX_EXCITATORY_SCALE / max_w, 0
    else:
        neg, pos = NETX_MIXED_SCALE
        scale = min(pos / max_w if max_w > 0 else np.inf, neg / min_w)
        signed = 1
    scale_bits = int(np.floor(np.log2(scale))) + signed
    if scale_bits < 0:
        raise UnsupportedNodeError(
            f"{where}: single-sign weights up to {max(abs(max_w), abs(min_w))} exceed 8 bits; Lava's "
            "netx loader shifts them by a negative count (undefined); keep |weight| <= 255"
        )
    n = WEIGHT_BITS
    while n > 0 and np.sum(np.abs(weight / 2**n - np.round(weight / 2**n))) != 0:
        n -= 1
    n -= signed
    num_weight_bits = WEIGHT_BITS - scale_bits - n
    return weight << scale_bits, int(num_weight_bits), -scale_bits


def _lava_dense_effective(weight: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """What ``PyDenseModelBitAcc`` makes of ``weights``: lava's ``determine_sign_mode``,
    ``clip_weights(..., 8)`` and ``truncate_weights(..., num_weight_bits)``."""
    w = weight.astype(np.int64)
    if w.min() >= 0:
        mode = "exc"
    elif w.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    if mode == "inh":
        w = -w
    w = np.clip(w, WEIGHT_RANGE[0] * mixed, LAVA_WEIGHT_MAX)
    if mode == "inh":
        w = -w
    trunc = WEIGHT_BITS - num_weight_bits + mixed
    if trunc < 0:
        raise UnsupportedNodeError(f"Lava would truncate weights by a negative bit count ({trunc})")
    if mode == "inh":
        w = -w
    w = (w >> trunc) << trunc
    if mode == "inh":
        w = -w
    return w


def _as_ir_weights(mant: np.ndarray, exp: int, where: str) -> tuple[np.ndarray, int]:
    """(M, E) with M even in [-256, 254] and shift(sum M z, E) == shift(sum mant z, exp)."""
    fits = (
        np.all(mant % WEIGHT_MANT_STEP == 0)
        and mant.min() >= WEIGHT_RANGE[0]
        and mant.max() <= WEIGHT_RANGE[1]
    )
    if fits and WEIGHT_EXP_RANGE[0] <= exp <= WEIGHT_EXP_RANGE[1]:
        return mant, exp
    doubled = mant * WEIGHT_MANT_STEP
    if (
        doubled.min() >= WEIGHT_RANGE[0]
        and doubled.max() <= WEIGHT_RANGE[1]
        and exp - 1 >= WEIGHT_EXP_RANGE[0]
    ):
        return doubled, exp - 1
    raise QuantizationError(
        f"{where}: weights {int(mant.min())}..{int(mant.max())} (exponent {exp}) cannot be held as "
        f"Loihi 8-bit mixed-sign mantissas (even, {WEIGHT_RANGE[0]}..{WEIGHT_RANGE[1]})"
    )


def split_integer_weights(weight: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """(M, E) with ``M * 2**E == weight`` exactly, M even in [-256, 254]; E = 0 preferred."""
    w = weight.astype(np.int64)
    for exp in (0, -1, *range(1, WEIGHT_EXP_RANGE[1] + 1)):
        if exp >= 0:
            if np.any(w % (1 << exp)):
                continue
            mant = w >> exp
        else:
            mant = w << -exp
        if (
            np.all(mant % WEIGHT_MANT_STEP == 0)
            and mant.min(initial=0) >= WEIGHT_RANGE[0]
            and mant.max(initial=0) <= WEIGHT_RANGE[1]
        ):
            return mant, exp
    raise QuantizationError(
        f"{where}: integer weights {int(w.min())}..{int(w.max())} are not representable as even "
        f"8-bit mantissas {WEIGHT_RANGE[0]}..{WEIGHT_RANGE[1]} times 2**exp, exp in {WEIGHT_EXP_RANGE}"
    )


# ----------------------------------------------------------------------------- reading


def _read(group: Any, key: str, where: str) -> np.ndarray:
    if key not in group:
        raise GraphFileError(
            f"{where}: missing field {key!r} (fields present: {', '.join(sorted(group.keys()))})"
        )
    try:
        return np.asarray(group[key][()])
    except (OSError, ValueError, KeyError) as exc:
        raise GraphFileError(
            f"{where}: cannot read field {key!r}: {exc} (truncated file?)"
        ) from exc


def _read_str(group: Any, key: str, where: str) -> str:
    value = _read(group, key, where)
    if value.ndim > 0:
        value = value.reshape(-1)[0]
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _read_int(group: Any, key: str, where: str) -> int:
    value = _read(group, key, where)
    if value.size != 1:
        raise GraphFileError(f"{where}: field {key!r} must be a scalar, got shape {value.shape}")
    return int(value.reshape(-1)[0])


def _read_pair(group: Any, key: str, where: str) -> tuple[int, int]:
    return int_pair(_read(group, key, where), f"{where}: field {key!r}", error=GraphFileError)


def _attr(group: Any, key: str, default: Any = None) -> Any:
    value = group.attrs.get(key, default)
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _neuron_fields(layer: Any, where: str, default: bool) -> dict[str, int]:
    if "neuron" not in layer:
        if default:  # lava-dl's default "non-leaky integrator" neuron
            return {
                "du": NETX_DEFAULT_I_DECAY - DU_OFFSET,
                "dv": NETX_DEFAULT_V_DECAY,
                "vth": NETX_DEFAULT_VTH_MANT,
            }
        raise GraphFileError(f"{where}: missing group 'neuron'")
    neuron = layer["neuron"]
    kind = _read_str(neuron, "type", f"{where}/neuron")
    if kind not in ("LOIHI", "CUBA"):
        raise UnsupportedNodeError(
            f"{where}: neuron type {kind!r} is not supported (supported: LOIHI, CUBA; "
            "SDNN and resonate-and-fire neurons are not LIF)"
        )
    return {
        "du": _read_int(neuron, "iDecay", f"{where}/neuron") - DU_OFFSET,
        "dv": _read_int(neuron, "vDecay", f"{where}/neuron"),
        "vth": _read_int(neuron, "vThMant", f"{where}/neuron"),
    }


def _bias(layer: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    if "bias" not in layer:
        return np.zeros(shape, dtype=np.int64)
    bias = _read(layer, "bias", where).astype(float).astype(int)  # Lava: astype(int)
    if len(shape) == 1 or bias.size == 1:
        if bias.size not in (1, int(np.prod(shape))):
            raise GraphFileError(
                f"{where}: bias has {bias.size} values for {int(np.prod(shape))} neurons"
            )
        return (
            np.broadcast_to(bias.reshape(-1) if bias.size > 1 else bias.reshape(()), shape)
            .reshape(shape)
            .copy()
        )
    if bias.shape == (shape[0],):
        return np.broadcast_to(bias[:, None, None], shape).copy()
    if bias.shape == shape[::-1]:  # Lava also accepts a full bias in its (x, y, z) layout
        return bias.transpose(2, 1, 0).copy()
    raise GraphFileError(
        f"{where}: bias of shape {bias.shape} fits neither {shape[0]} channels nor shape {shape}"
    )


def _layer_shape(layer: Any, where: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in _read(layer, "shape", where).reshape(-1))
    if not shape or min(shape) < 1:
        raise GraphFileError(f"{where}: invalid shape {shape}")
    return shape


def read_netx(path: str | os.PathLike[str]) -> LoihiNetwork:
    """Read a netx HDF5 file into a :class:`LoihiNetwork` (same parameters as Lava loads).

    Raises GraphFileError for unreadable or structurally invalid files and
    UnsupportedNodeError for layer or neuron types Lava's loader does not implement.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise GraphFileError(f"netx file not found: {p}")
    if not h5py.is_hdf5(p):
        raise GraphFileError(f"{p} is not an HDF5 file (netx networks are HDF5)")
    try:
        with h5py.File(p, "r") as f:
            return _read_file(f, p)
    except (GraphFileError, UnsupportedNodeError, QuantizationError):
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise GraphFileError(
            f"cannot read {p}: {type(exc).__name__}: {exc} (truncated or corrupt file?)"
        ) from exc


def _read_file(f: Any, path: Path) -> LoihiNetwork:
    if "layer" not in f:
        raise GraphFileError(
            f"{path}: no 'layer' group; not a netx network (top-level keys: {', '.join(f.keys()) or 'none'})"
        )
    layers = f["layer"]
    keys = sorted(layers.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if not keys or keys != [str(i) for i in range(len(keys))]:
        raise GraphFileError(
            f"{path}: layer groups must be named 0..n-1, found {', '.join(layers.keys()) or 'none'}"
        )
    groups: list[NeuronGroup] = []
    synapses: list[Synapse] = []
    flatten_next = False
    for i, key in enumerate(keys):
        layer = layers[key]
        where = f"{path.name}: layer {i}"
        kind = _read_str(layer, "type", where)
        name = str(_attr(layer, "neurall_name", f"layer{i}"))
        start = int(_attr(layer, "neurall_bias_start_step", 0))
        readout = str(_attr(layer, "neurall_readout", "spikes"))
        scale = _attr(layer, "neurall_scale", None)
        scale = (
            None
            if scale is None or (isinstance(scale, float) and np.isnan(scale))
            else float(scale)
        )
        if kind in UNSUPPORTED_LAYER_TYPES:
            raise UnsupportedNodeError(
                f"{where}: layer type {kind!r} is not implemented by Lava's netx loader "
                f"(supported: {', '.join(SUPPORTED_LAYER_TYPES)})"
            )
        if kind not in SUPPORTED_LAYER_TYPES:
            raise UnsupportedNodeError(
                f"{where}: unknown layer type {kind!r} (supported: {', '.join(SUPPORTED_LAYER_TYPES)})"
            )
        if kind == "input":
            if groups:
                raise GraphFileError(f"{where}: an input layer may only come first")
            if "neuron" not in layer:
                raise UnsupportedNodeError(
                    f"{where}: an input layer without neurons (external spike input) is not supported; "
                    "the input layer must be LIF neurons driven by their bias"
                )
            shape = _layer_shape(layer, where)
            groups.append(
                NeuronGroup(
                    name,
                    shape,
                    **_neuron_fields(layer, where, default=False),
                    bias_mant=0,
                    bias_exp=NETX_BIAS_EXP,
                    bias_start_step=start,
                    readout=readout,  # type: ignore[arg-type]
                    scale=scale,
                )
            )
            continue
        if not groups:
            raise UnsupportedNodeError(
                f"{where}: the first layer must be an input layer (got {kind!r})"
            )
        if kind == "flatten":
            flatten_next = True
            continue
        prev = groups[-1]
        if kind == "conv":
            if flatten_next:
                raise GraphFileError(
                    f"{where}: a flatten layer must be followed by a dense layer, not conv"
                )
            if "delay" in layer and np.any(_read(layer, "delay", where) != 0):
                raise UnsupportedNodeError(
                    f"{where}: conv layers with delays are not supported (Lava's netx loader ignores them)"
                )
            shape = _layer_shape(layer, where)
            if len(prev.shape) != 3 or len(shape) != 3:
                raise GraphFileError(
                    f"{where}: conv layers need (C, H, W) shapes; previous layer has {prev.shape}, this {shape}"
                )
            weight = _read(layer, "weight", where).astype(float).astype(np.int64)
            while weight.ndim > 4 and weight.shape[-1] == 1:
                weight = weight[..., 0]
            if weight.ndim != 4:
                raise GraphFileError(
                    f"{where}: conv weight must be [C_out, C_in/groups, kH, kW], got shape {weight.shape}"
                )
            groups_n = _read_int(layer, "groups", where)
            stride, padding, dilation = (
                _read_pair(layer, k, where) for k in ("stride", "padding", "dilation")
            )
            if groups_n < 1 or prev.shape[0] != weight.shape[1] * groups_n:
                raise GraphFileError(
                    f"{where}: shape mismatch: weight {weight.shape} with groups={groups_n} takes "
                    f"{weight.shape[1] * groups_n} channels, previous layer {prev.name!r} has {prev.shape}"
                )
            out = conv_output_shape(
                prev.shape, weight.shape[0], weight.shape[2:], stride, padding, dilation
            )
            if out != shape:
                raise GraphFileError(
                    f"{where}: shape mismatch: convolution of the previous layer {prev.shape} gives {out}, "
                    f"the layer declares {shape}"
                )
            mant, exp = split_integer_weights(weight, where)
            syn = Synapse(
                f"{name}.synapse",
                prev.name,
                name,
                "conv",
                mant,
                exp,
                stride,
                padding,
                dilation,
                groups_n,
            )
        else:  # dense
            n_out = int(np.prod(_layer_shape(layer, where)))
            shape = (n_out,)
            if len(prev.shape) == 3 and not flatten_next:
                raise GraphFileError(
                    f"{where}: dense layer after the 3-D layer {prev.name!r} {prev.shape} needs a flatten layer"
                )
            flatten_next = False
            weight = _read(layer, "weight", where).astype(float).astype(np.int64)
            if weight.ndim == 1:
                weight = weight.reshape(n_out, -1)
            if weight.shape != (n_out, prev.size):
                raise GraphFileError(
                    f"{where}: shape mismatch: dense weight {weight.shape} must be ({n_out}, {prev.size}) "
                    f"for {n_out} neurons after layer {prev.name!r} {prev.shape}"
                )
            n_in = weight.shape[1]
            if kind == "dense_rec":  # Lava optimises both matrices together: one exponent
                weight_rec = _read(layer, "weight_rec", where).astype(float).astype(np.int64)
                weight_rec = weight_rec.reshape(n_out, -1)
                if weight_rec.shape != (n_out, n_out):
                    raise GraphFileError(
                        f"{where}: recurrent weight {weight_rec.shape} must be ({n_out}, {n_out})"
                    )
                weight = np.hstack((weight, weight_rec))
            lava_w, nbits, lava_exp = _netx_optimize_weight_bits(weight, where)
            mant, exp = _as_ir_weights(_lava_dense_effective(lava_w, nbits), lava_exp, where)
            mant, mant_rec = mant[:, :n_in], mant[:, n_in:]
            delay = 1
            if "delay" in layer:
                d = np.clip(_read(layer, "delay", where).astype(np.int64), 0, NETX_MAX_DELAY)
                if d.size and np.any(d != d.reshape(-1)[0]):
                    raise UnsupportedNodeError(
                        f"{where}: per-synapse delays that differ are not supported (one delay per layer)"
                    )
                delay = int(d.reshape(-1)[0]) + 1 if d.size else 1
                if not DELAY_RANGE[0] <= delay <= DELAY_RANGE[1]:
                    raise GraphFileError(f"{where}: delay {delay - 1} out of range")
            syn = Synapse(f"{name}.synapse", prev.name, name, "dense", mant, exp, delay=delay)
            if kind == "dense_rec":
                rec_name = str(_attr(layer, "neurall_recurrent_name", f"{name}.recurrent"))
                synapses.append(Synapse(rec_name, name, name, "dense", mant_rec, exp, delay=delay))
        groups.append(
            NeuronGroup(
                name,
                shape,
                **_neuron_fields(layer, where, default=(kind in ("dense", "dense_rec"))),
                bias_mant=_bias(layer, shape, where),
                bias_exp=NETX_BIAS_EXP,
                bias_start_step=start,
                readout=readout,  # type: ignore[arg-type]
                scale=scale,
            )
        )
        synapses.append(syn)
    if flatten_next:
        raise GraphFileError(f"{path.name}: the last layer is a flatten layer")
    if not groups:
        raise GraphFileError(f"{path.name}: no layers")
    encoder = _read_encoder(f)
    meta: dict[str, Any] = {"source": str(path), "format": "netx"}
    if "neurall_metadata" in f.attrs:
        with contextlib.suppress(TypeError, ValueError):  # foreign or damaged attribute: ignore
            meta.update(json.loads(_attr(f, "neurall_metadata")))
    output = str(_attr(f, "neurall_output", groups[-1].name))
    if "layer/0/weight" in f or "layer/0/bias" in f:
        lay0 = f["layer/0"]
        meta["input_transform"] = {
            "weight": int(np.asarray(lay0["weight"][()]).reshape(-1)[0])
            if "weight" in lay0
            else NETX_INPUT_TRANSFORM_WEIGHT,
            "bias": int(np.asarray(lay0["bias"][()]).reshape(-1)[0]) if "bias" in lay0 else 0,
        }
    return LoihiNetwork(groups, synapses, groups[0].name, output, encoder, meta)


def _read_encoder(f: Any) -> HostEncoder | None:
    if "neurall/encoder" not in f:
        return None
    enc = f["neurall/encoder"]
    where = "neurall/encoder"
    return HostEncoder(
        weight=_read(enc, "weight", where),
        bias=_read(enc, "bias", where),
        input_shape=tuple(int(v) for v in _read(enc, "input_shape", where)),
        scale=float(_read(enc, "scale", where)),
        float_scale=float(_read(enc, "float_scale", where)),
        stride=_read_pair(enc, "stride", where),
        padding=_read_pair(enc, "padding", where),
        dilation=_read_pair(enc, "dilation", where),
        groups=_read_int(enc, "groups", where),
    )


# ----------------------------------------------------------------------------- writing


def _netx_bias(group: NeuronGroup) -> np.ndarray:
    """Bias mantissas for Lava's fixed ``bias_exp = 6``; ConversionError if inexact."""
    eff = group.effective_bias
    if np.any(eff % (1 << NETX_BIAS_EXP)):
        raise ConversionError(
            f"group {group.name!r}: bias_mant << {group.bias_exp} is not a multiple of 64; netx "
            "fixes bias_exp = 6 for every layer (quantize with bias_exp=6 for netx export)"
        )
    mant = eff >> NETX_BIAS_EXP
    if mant.min(initial=0) < BIAS_MANT_RANGE[0] or mant.max(initial=0) > BIAS_MANT_RANGE[1]:
        raise ConversionError(
            f"group {group.name!r}: bias does not fit 13 bits at netx's bias_exp = 6"
        )
    return mant


def _write_neuron(layer: Any, group: NeuronGroup) -> None:
    neuron = layer.create_group("neuron")
    neuron.create_dataset("type", data=np.bytes_("LOIHI"))
    neuron.create_dataset("iDecay", data=np.int64(group.du + DU_OFFSET))
    neuron.create_dataset("vDecay", data=np.int64(group.dv))
    neuron.create_dataset("vThMant", data=np.int64(group.vth))
    neuron.create_dataset("refDelay", data=np.int64(NETX_REF_DELAY))
    neuron.create_dataset("gradedSpike", data=False)


def _write_layer_attrs(layer: Any, group: NeuronGroup) -> None:
    layer.attrs["neurall_name"] = group.name
    layer.attrs["neurall_bias_start_step"] = group.bias_start_step
    layer.attrs["neurall_readout"] = group.readout
    if group.scale is not None:
        layer.attrs["neurall_scale"] = float(group.scale)


def write_netx(network: LoihiNetwork, path: str | os.PathLike[str]) -> Path:
    """Write a chain-shaped network as a netx HDF5 file that Lava's ``hdf5.Network`` loads.

    Atomic (a temporary file renamed into place). Raises ConversionError for what netx
    cannot hold: branches (netx is a sequential stack without pool/concat layers),
    conv delays, weights that are not integers after the exponent, biases that are not
    exact at ``bias_exp = 6``. The file is read back and compared before it replaces
    ``path``. Groups' ``bias_start_step`` are stored as attributes (honoured by our
    lava-sim target; plain Lava applies every bias from step 0).
    """
    import h5py

    _check_netx_describable(network)
    recurrent = {s.dst: s for s in network.recurrent_synapses()}
    forward = dataclasses.replace(network, synapses=[s for s in network.synapses if s.src != s.dst])
    order = forward.chain_order()
    if order is None:
        raise ConversionError(
            "netx can only describe a sequential chain of layers (lava-dl's hdf5.Network connects layer i "
            "to layer i+1 and implements no pool/average/concat layers), but this network branches or "
            "joins (e.g. an SE gate path rejoining the feature path). Run it with the lava-sim target's "
            "process backend instead: get_target('lava-sim').compile(network, backend='process', ...)"
        )
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    inp = network.group(network.input)
    if inp.bias_exp != NETX_BIAS_EXP:
        raise ConversionError(
            f"input group {inp.name!r} has bias_exp={inp.bias_exp}; netx's input layer uses bias_exp=6 "
            "(quantize with bias_exp=6 for netx export)"
        )
    with atomic_path(dest) as tmp:  # mode 0o666 & ~umask, like any file the user writes
        with h5py.File(tmp, "w") as f:
            layers = f.create_group("layer")
            idx = 0
            for name in order:
                group = network.group(name)
                if name == network.input:
                    layer = layers.create_group(str(idx))
                    layer.create_dataset("type", data=np.array([b"input"], dtype="S10"))
                    layer.create_dataset("shape", data=np.array(group.shape, dtype=np.int64))
                    _write_neuron(layer, group)
                    _write_layer_attrs(layer, group)
                    idx += 1
                    continue
                (syn,) = forward.incoming(name)
                src = network.group(syn.src)
                bias = _netx_bias(group)
                if syn.kind == "conv":
                    if syn.delay != 1:
                        raise ConversionError(
                            f"synapse {syn.name!r}: delay {syn.delay} on a conv layer cannot be written "
                            "(Lava's netx loader ignores conv delays)"
                        )
                    weight = _integer_weights(syn)
                    layer = layers.create_group(str(idx))
                    layer.create_dataset("type", data=np.array([b"conv"], dtype="S10"))
                    layer.create_dataset("shape", data=np.array(group.shape, dtype=np.int64))
                    layer.create_dataset("weight", data=weight.astype(np.float32))
                    layer.create_dataset("inChannels", data=np.int64(src.shape[0]))
                    layer.create_dataset("outChannels", data=np.int64(group.shape[0]))
                    layer.create_dataset("kernelSize", data=np.array(syn.kernel, dtype=np.int64))
                    layer.create_dataset("stride", data=np.array(syn.stride, dtype=np.int64))
                    layer.create_dataset("padding", data=np.array(syn.padding, dtype=np.int64))
                    layer.create_dataset("dilation", data=np.array(syn.dilation, dtype=np.int64))
                    layer.create_dataset("groups", data=np.int64(syn.groups))
                    per_channel = bias.reshape(bias.shape[0], -1)
                    if np.all(per_channel == per_channel[:, :1]):
                        layer.create_dataset("bias", data=per_channel[:, 0].astype(np.float32))
                    else:
                        layer.create_dataset(
                            "bias", data=bias.transpose(2, 1, 0).astype(np.float32)
                        )
                else:
                    if len(src.shape) == 3:
                        flat = layers.create_group(str(idx))
                        flat.create_dataset("type", data=np.array([b"flatten"], dtype="S10"))
                        flat.create_dataset(
                            "shape", data=np.array([1, 1, src.size], dtype=np.int64)
                        )
                        idx += 1
                    if len(group.shape) != 1:
                        raise ConversionError(
                            f"synapse {syn.name!r}: netx dense layers have 1-D outputs, not {group.shape}"
                        )
                    layer = layers.create_group(str(idx))
                    kind = b"dense_rec" if name in recurrent else b"dense"
                    layer.create_dataset("type", data=np.array([kind], dtype="S10"))
                    layer.create_dataset("shape", data=np.array(group.shape, dtype=np.int64))
                    layer.create_dataset("weight", data=_integer_weights(syn).astype(np.float32))
                    if name in recurrent:
                        rec = recurrent[name]
                        layer.create_dataset(
                            "weight_rec", data=_integer_weights(rec).astype(np.float32)
                        )
                        layer.attrs["neurall_recurrent_name"] = rec.name
                    layer.create_dataset("inFeatures", data=np.int64(src.size))
                    layer.create_dataset("outFeatures", data=np.int64(group.size))
                    layer.create_dataset("bias", data=bias.reshape(-1).astype(np.float32))
                    if syn.delay != 1:
                        layer.create_dataset(
                            "delay", data=np.full(group.size, syn.delay - 1, dtype=np.int64)
                        )
                _write_neuron(layer, group)
                _write_layer_attrs(layer, group)
                idx += 1
            sim = f.create_group("simulation")
            sim.create_dataset("Ts", data=np.int64(1))
            f.attrs["neurall_format"] = FORMAT_NAME
            f.attrs["neurall_format_version"] = FORMAT_VERSION
            f.attrs["neurall_output"] = network.output
            f.attrs["neurall_metadata"] = json.dumps(_jsonable(network.metadata))
            if network.encoder is not None:
                _write_encoder(f, network.encoder)
        _verify_roundtrip(network, Path(tmp))
    return dest


def _check_netx_describable(network: LoihiNetwork) -> None:
    """ConversionError for the structures of the NIR mapping that a netx file cannot
    hold: recurrent synapses, an event-input spike source, bias sources."""
    for rec in network.recurrent_synapses():
        ins = network.incoming(rec.dst)
        group = network.group(rec.dst)
        if (
            rec.kind != "dense"
            or rec.delay != 1
            or len(group.shape) != 1
            or any(s.kind != "dense" or s.delay != 1 for s in ins)
        ):
            raise ConversionError(
                f"recurrent synapse {rec.name!r} cannot be written: netx's 'dense_rec' layer is a dense layer "
                "of 1-D neurons whose recurrent weights share the layer's delay (a conv or delayed layer "
                "with a recurrent connection has no netx form); run the network with the lava-sim "
                "target's process backend or loihi-emu"
            )
    if network.metadata.get("input_encoding") == "events":
        raise ConversionError(
            "netx cannot describe event input: its input layer is a bias-driven LIF (external spikes into "
            "the input layer are not part of the format); run the network with the lava-sim target's "
            "process backend (a RingBuffer spike source) or loihi-emu"
        )
    sources = network.metadata.get("bias_sources") or []
    if sources:
        raise ConversionError(
            f"netx cannot describe the bias sources {', '.join(sources)} (always-spiking neurons that feed a "
            "current-based neuron's bias into its current, not its voltage); run the network with the "
            "lava-sim target's process backend or loihi-emu"
        )


def _integer_weights(syn: Synapse) -> np.ndarray:
    eff = syn.weight.astype(np.int64)
    if syn.weight_exp >= 0:
        return eff << syn.weight_exp
    k = -syn.weight_exp
    if np.any(eff % (1 << k)):
        raise ConversionError(
            f"synapse {syn.name!r}: weights * 2**{syn.weight_exp} are not integers; netx stores integer "
            "weights only (quantize with weight exponents >= 0, or use the lava-sim process backend)"
        )
    return eff >> k


def _write_encoder(f: Any, enc: HostEncoder) -> None:
    g = f.create_group("neurall/encoder")
    g.create_dataset("weight", data=enc.weight)
    g.create_dataset("bias", data=enc.bias)
    g.create_dataset("input_shape", data=np.array(enc.input_shape, dtype=np.int64))
    g.create_dataset("scale", data=np.float64(enc.scale))
    g.create_dataset("float_scale", data=np.float64(enc.float_scale))
    g.create_dataset("stride", data=np.array(enc.stride, dtype=np.int64))
    g.create_dataset("padding", data=np.array(enc.padding, dtype=np.int64))
    g.create_dataset("dilation", data=np.array(enc.dilation, dtype=np.int64))
    g.create_dataset("groups", data=np.int64(enc.groups))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _verify_roundtrip(network: LoihiNetwork, path: Path) -> None:
    """Read ``path`` back (as Lava would) and compare with ``network``."""
    back = read_netx(path)
    for group in network.groups:
        other = back.group(group.name)
        for field_name in ("shape", "du", "dv", "vth", "bias_start_step", "readout"):
            if getattr(group, field_name) != getattr(other, field_name):
                raise ConversionError(
                    f"group {group.name!r}: {field_name} {getattr(group, field_name)!r} does not survive netx "
                    f"(reads back as {getattr(other, field_name)!r})"
                )
        if group.name != network.input and not np.array_equal(
            group.effective_bias, other.effective_bias
        ):
            raise ConversionError(f"group {group.name!r}: bias does not survive netx")
    for syn in network.synapses:
        (other,) = [s for s in back.incoming(syn.dst) if s.src == syn.src]
        if (
            not np.array_equal(syn.effective_weight, other.effective_weight)
            or syn.delay != other.delay
        ):
            raise ConversionError(
                f"synapse {syn.name!r}: weights or delay do not survive Lava's netx weight pipeline "
                "(optimize_weight_bits / clipping); keep dense weights within -256..254"
            )


def netx_to_nir(path: str | os.PathLike[str], dt: float = 1e-4) -> Any:
    """The float NIR graph of a netx network (see :func:`hw_targets.loihi.to_nir.network_to_nir`)."""
    from hw_targets.loihi.to_nir import network_to_nir

    return network_to_nir(read_netx(path), dt=dt)

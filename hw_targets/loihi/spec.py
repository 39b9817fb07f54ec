"""Every Loihi limit, bit width and shift the library uses, each named once with its source.

The numbers describe Loihi as lava-nc 0.10.0 and lava-dl 0.6.0 model it (checked
bit-exact against those Python process models). Sources are files of the installed
packages (``lava/...``); "derived" marks a value computed from the ones above it, "ours"
a limit this library chooses. No other module of ``hw_targets``, ``conversion`` or
``energy`` spells these numbers out (``tests/docs/test_architecture.py`` checks it).
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- neuron state

#: Width of the state variables u (current) and v (voltage), signed.
STATE_BITS = 24  # lava/proc/lif/models.py AbstractPyLifModelFixed: uv_bitwidth = 24
#: 2**23: u wraps by 2**24 past +-UV_LIMIT; v is clipped inside it.
UV_LIMIT = 1 << (STATE_BITS - 1)  # lava/proc/lif/models.py: max_uv_val = 2 ** (uv_bitwidth - 1)
#: Largest |v|: v is clipped to [-V_MAX, V_MAX].
V_MAX = UV_LIMIT - 1  # lava/proc/lif/models.py PyLifModelBitAcc: pos_voltage_limit = max_uv_val - 1
#: Width of Lava's integer arithmetic for u, v and a_in (numpy int32, wrapping).
LAVA_INT_BITS = 32  # lava/proc/lif/models.py AbstractPyLifModelFixed: u, v LavaPyType(np.int32)
#: Synaptic input is MSB-aligned: a_in << 6 is added to u.
ACT_SHIFT = 6  # lava/proc/lif/models.py AbstractPyLifModelFixed: act_shift = 6
#: The threshold is used as vth << 6.
VTH_SHIFT = 6  # lava/proc/lif/models.py AbstractPyLifModelFixed: vth_shift = 6
#: v per "a_in unit" (one unit of synaptic input): 64.
A_IN_UNIT = 1 << ACT_SHIFT  # derived from act_shift
#: decay(x, k) = sign(x k) (|x k| >> 12): multiply by k / 4096, rounding toward zero.
DECAY_SHIFT = 12  # lava/proc/lif/models.py AbstractPyLifModelFixed: decay_shift = 12
#: 4096: the decay factor that keeps everything.
DECAY_UNITY = 1 << DECAY_SHIFT  # lava/proc/lif/models.py: decay_unity = 2**decay_shift
#: u decays by the factor DECAY_UNITY - (du + DU_OFFSET).
DU_OFFSET = 1  # lava/proc/lif/models.py AbstractPyLifModelFixed: ds_offset = 1
#: v decays by the factor DECAY_UNITY - (dv + DV_OFFSET).
DV_OFFSET = 0  # lava/proc/lif/models.py AbstractPyLifModelFixed: dm_offset = 0

# ----------------------------------------------------------------------------- neuron parameters

#: du and dv are 12-bit unsigned: 0..4095.
DECAY_MAX = DECAY_UNITY - 1  # lava/proc/lif/process.py LIF docstring: du, dv unsigned 12-bit
#: du = -1: decay factor 4096, the current never decays (lava-dl netx's default integrator).
DU_NEVER_DECAYS = -1  # lava/lib/dl/netx/hdf5.py: du = iDecay - 1 with iDecay = 0
#: du = 4095: decay factor 0, u keeps nothing between steps (u is this step's input).
DU_MEMORYLESS = DECAY_MAX  # derived: DECAY_UNITY - (DECAY_MAX + DU_OFFSET) = 0
#: Valid du: the 12-bit field plus Lava's -1.
DU_RANGE = (DU_NEVER_DECAYS, DECAY_MAX)  # lava/proc/lif/models.py PyLifModelBitAcc (accepts -1)
#: Valid dv: the 12-bit field plus 4096 (full decay; netx's default integrator).
DV_RANGE = (0, DECAY_UNITY)  # lava/lib/dl/netx/hdf5.py default neuron vDecay = 4096
#: Width of the threshold mantissa vth.
VTH_BITS = 17  # lava/proc/lif/models.py PyLifModelBitAcc: vth LavaPyType(precision=17)
#: Largest threshold a Loihi core can hold: 131071.
VTH_HW_MAX = (1 << VTH_BITS) - 1  # lava/proc/lif/process.py LIF docstring: vth 0 to 131071
#: Valid vth: Lava also accepts 131072, what netx's default ``1 << 18 - 1`` evaluates to.
VTH_RANGE = (0, 1 << VTH_BITS)  # lava/lib/dl/netx/hdf5.py default neuron vThMant
#: Width of the signed bias mantissa.
BIAS_MANT_BITS = 13  # lava/proc/lif/process.py LIF docstring: bias_mant signed 13-bit
#: -4096..4095.
BIAS_MANT_RANGE = (-(1 << (BIAS_MANT_BITS - 1)), (1 << (BIAS_MANT_BITS - 1)) - 1)  # same
#: Width of the unsigned bias exponent.
BIAS_EXP_BITS = 3  # lava/proc/lif/models.py AbstractPyLifModelFixed: bias_exp precision=3
#: 0..7.
BIAS_EXP_RANGE = (0, (1 << BIAS_EXP_BITS) - 1)  # lava/proc/lif/process.py LIF docstring

# ----------------------------------------------------------------------------- synapses

#: Width of a weight (magnitude bits of Loihi's synapse format).
WEIGHT_BITS = 8  # lava/utils/weightutils.py clip_weights/truncate_weights: num_bits = 8
#: Mixed-sign weights lose their lowest bit: mantissas are multiples of 2.
WEIGHT_MANT_STEP = 2  # lava/utils/weightutils.py truncate_weights: 8 - num_weight_bits + mixed
#: Even mantissas -256..254 (clipped to [-256, 255], then the lowest bit cleared).
WEIGHT_RANGE = (-(1 << WEIGHT_BITS), (1 << WEIGHT_BITS) - WEIGHT_MANT_STEP)  # weightutils
#: Largest single-sign weight magnitude: clip_weights' max_wgt = 2**num_bits - 1 = 255.
LAVA_WEIGHT_MAX = (1 << WEIGHT_BITS) - 1  # lava/utils/weightutils.py clip_weights
#: Weight exponent: Loihi's 4-bit signed synapse exponent field.
WEIGHT_EXP_RANGE = (-8, 7)  # lava/proc/dense/process.py Dense weight_exp (Loihi 4-bit field)
#: Synaptic delay in steps; 1 is the native one-step delay, DelayDense adds 0..63 steps.
DELAY_RANGE = (1, 64)  # Loihi 2's 6-bit synaptic delay (ours; lava's DelayDense sets none)
#: Most extra steps a Lava DelayDense realises.
DELAY_EXTRA_MAX = DELAY_RANGE[1] - DELAY_RANGE[0]  # derived
#: Dense layers send their sums through an int32 port (wrapping).
DENSE_OUT_BITS = LAVA_INT_BITS  # lava/proc/dense/models.py PyDenseModelBitAcc: a_out np.int32
#: Conv layers wrap their sums to signed 24 bits.
CONV_OUT_BITS = 24  # lava/proc/conv/models.py PyConvModelFixed: signed_clamp(x, bits=24)
#: Lava's Conv process models hold groups, kernel size, stride, padding, dilation in int8.
LAVA_CONV_MAX_GROUPS = 127  # lava/proc/conv/models.py AbstractPyConvModel: groups np.int8
#: |a_in| << 6 below 2**30 plus the 24-bit state cannot overflow int32 (skip the wraps).
INT32_SAFE_INPUT = 1 << (LAVA_INT_BITS - 2)  # derived (ours: the emulator's fast path)
#: Largest per-step synaptic input (a_in units) whose << 6 stays inside the 24-bit state.
INPUT_MAX_AIN = (UV_LIMIT >> ACT_SHIFT) - 1  # derived
#: Largest unrolled conv (N_dst * N_src weights) lava-sim builds as a Dense process.
MAX_UNROLLED_ENTRIES = 1 << 24  # ours: bounds the memory of an unrolled conv

# ----------------------------------------------------------------------------- lava-dl netx

#: Bias exponent lava-dl's netx loader gives every layer.
NETX_BIAS_EXP = 6  # lava/lib/dl/netx/hdf5.py Network._create_...: 'bias_exp': 6
#: Largest dense delay the netx loader keeps (larger ones are clamped).
NETX_MAX_DELAY = 62  # lava/lib/dl/netx/hdf5.py: np.clip(delay, a_min=0, a_max=62)
#: iDecay of the loader's default neuron (a dense layer without ``neuron``).
NETX_DEFAULT_I_DECAY = 0  # lava/lib/dl/netx/hdf5.py default neuron 'iDecay': 0
#: vDecay of that default neuron.
NETX_DEFAULT_V_DECAY = DECAY_UNITY  # lava/lib/dl/netx/hdf5.py default neuron 'vDecay': 4096
#: vThMant of that default neuron, spelt as lava-dl spells it (it evaluates to 1 << 17).
NETX_DEFAULT_VTH_MANT = 1 << 18 - 1  # lava/lib/dl/netx/hdf5.py default 'vThMant': 1 << 18 - 1
#: Weight of the input layer's stored "transform" when the file has none.
NETX_INPUT_TRANSFORM_WEIGHT = 64  # lava/lib/dl/netx/hdf5.py get_input_params: weight = 64
#: Refractory delay we write (Lava's LIF has no refractory period and ignores it).
NETX_REF_DELAY = 1  # ours (lava/lib/dl/netx/hdf5.py reads and drops refDelay)
#: optimize_weight_bits clips mixed-sign weights beyond this range.
NETX_MIXED_CLIP = (-256, 254)  # lava/lib/dl/netx/utils.py optimize_weight_bits: np.clip
#: Scale targets of optimize_weight_bits: mixed (negative, positive) ...
NETX_MIXED_SCALE = (-128, 127)  # lava/lib/dl/netx/utils.py: -128 / min_w, 127 / max_w
#: ... inhibitory-only and excitatory-only weights.
NETX_INHIBITORY_SCALE = -256  # lava/lib/dl/netx/utils.py: scale = -256 / min_weight
NETX_EXCITATORY_SCALE = LAVA_WEIGHT_MAX  # lava/lib/dl/netx/utils.py: scale = 255 / max_weight

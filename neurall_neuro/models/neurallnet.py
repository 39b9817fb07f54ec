r"""``neurallnet``: the SE-SNN, a convolutional spiking network with SE channel attention.

Design (and why)
----------------
* **Direct encoding.** The image enters the first convolution (+BatchNorm) as an analog
  current. A static image gives the same current at every step, so it is computed once
  per image (not ``T`` times); on Loihi it becomes the constant bias of the first LIF
  population (lava-dl netx's input layer is exactly a LIF driven by its bias).
* **Stages.** ``len(channels)`` stages; stage 1 is ``conv -> BN -> LIF``; every later
  stage is ``AvgPool2d(2) -> conv3x3 -> BN -> LIF``. Average pooling of spikes followed
  by a convolution folds exactly into one strided convolution for Loihi; BatchNorm folds
  into the convolution at export. LIF neurons are Norse box-LIF neurons
  (:mod:`neurall_neuro.models.neurons`), trained with Norse's SuperSpike surrogate gradient.
* **SE attention** (:mod:`neurall_neuro.models.se_block`) after the LIF of the stages in
  ``se_stages`` (default: the last two, where maps are small — 16x16 and 8x8 at 64 px —
  so broadcasting the per-channel gate to every position stays cheap: H*W synapses per
  gate spike). ``se_mode`` is ``spiking`` (hardware-mappable AND gate), ``analog``
  (sigmoid reference, folded at export) or ``none`` (ablation).
* **Readout.** Global average pooling of the last spike maps, a linear layer, and the
  class scores are the mean over the ``T`` steps of that layer's output (a non-leaking
  integrator read at the end: the :class:`~neurall_neuro.models.blocks.MeanOverTime`
  module ``readout``, so hooks and exporters see it). Because the readout is linear in the spike counts it
  decodes rate codes without tuning a readout time constant, trains well with few steps,
  and maps to a non-spiking integrator population on chip.

Time convention
---------------
One simulation step is ``dt = 1e-4`` s (the NIR paper's and snnTorch's importer
convention); ``tau_mem = 2e-4`` s gives a membrane decay ``1 - dt/tau = 0.5`` per step.
The exported NIR graph stores ``dt`` in its metadata.

Execution
---------
:meth:`NeurAllNet.run` is layer-major: every stateless layer (conv, BN, pooling, linear)
processes all ``T`` steps at once (time folded into the batch); only the LIF recurrence
loops over time. :meth:`NeurAllNet.run_stepwise` is the classic Norse loop (every layer
stepped once per timestep). Both use the same Norse step function.
:meth:`NeurAllNet.to_inference` gives the fast inference-only path
(:mod:`neurall_neuro.models.inference`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.models.blocks import MeanOverTime
from neurall_neuro.models.config import check_choice, check_positive
from neurall_neuro.models.inference import InferenceNeurAllNet
from neurall_neuro.models.neurons import DEFAULT_DT, LIFLayer
from neurall_neuro.models.se_block import SE_MODES, SEBlock
from neurall_neuro.models.spiking import SNNRun

__all__ = ["DEFAULT_DT", "NeurAllNet", "NeurAllNetConfig", "SNNRun"]


@dataclass(frozen=True)
class NeurAllNetConfig:
    """Configuration of the SE-SNN. Stage indices in ``se_stages`` are 1-based."""

    num_classes: int = 4
    in_channels: int = 3
    input_size: int = 64
    timesteps: int = 4
    channels: tuple[int, ...] = (32, 64, 128, 160)
    se_mode: str = "spiking"
    se_stages: tuple[int, ...] = (3, 4)
    se_reduction: int = 8
    stem_stride: int = 1
    tau_mem: float = 2e-4
    tau_gate: float = 1e-4
    v_th: float = 1.0
    dt: float = DEFAULT_DT

    def __post_init__(self) -> None:
        check_choice("se_mode", self.se_mode, SE_MODES)
        for name in (
            "num_classes",
            "in_channels",
            "input_size",
            "timesteps",
            "se_reduction",
            "stem_stride",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ConfigError(
                f"channels must be a non-empty list of positive widths, got {self.channels!r}"
            )
        bad = [s for s in self.se_stages if not 1 <= s <= len(self.channels)]
        if bad:
            raise ConfigError(
                f"se_stages {bad} out of range; valid stage indices: 1..{len(self.channels)}"
            )
        for name in ("tau_mem", "tau_gate", "v_th", "dt"):
            check_positive(name, getattr(self, name))
        factor = self.stem_stride * 2 ** (len(self.channels) - 1)
        if self.input_size % factor:
            raise ConfigError(
                f"input_size {self.input_size} must be divisible by {factor} "
                f"(stem_stride {self.stem_stride} x 2^(stages-1) pooling)"
            )

    @property
    def final_size(self) -> int:
        """Spatial size of the last stage's maps."""
        return self.input_size // (self.stem_stride * 2 ** (len(self.channels) - 1))


class NeurAllNet(nn.Module):
    """The SE-SNN (see the module docstring for the design)."""

    model_name = "neurallnet"

    def __init__(self, config: NeurAllNetConfig | None = None):
        super().__init__()
        self.config = config = config or NeurAllNetConfig()
        widths = [int(c) for c in config.channels]
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(
                    config.in_channels,
                    widths[0],
                    3,
                    stride=config.stem_stride,
                    padding=1,
                    bias=False,
                ),
                bn=nn.BatchNorm2d(widths[0]),
            )
        )
        body: OrderedDict[str, nn.Module] = OrderedDict()
        for stage, width in enumerate(widths, start=1):
            if stage > 1:
                body[f"pool{stage}"] = nn.AvgPool2d(2)
                body[f"conv{stage}"] = nn.Conv2d(widths[stage - 2], width, 3, padding=1, bias=False)
                body[f"bn{stage}"] = nn.BatchNorm2d(width)
            body[f"lif{stage}"] = self._lif(config.tau_mem)
            if stage in config.se_stages and config.se_mode != "none":
                body[f"se{stage}"] = SEBlock(
                    width,
                    mode=config.se_mode,
                    reduction=config.se_reduction,
                    tau_mem=config.tau_mem,
                    tau_gate=config.tau_gate,
                    v_th=config.v_th,
                    dt=config.dt,
                )
        body["head_pool"] = nn.AdaptiveAvgPool2d(1)
        body["head_flatten"] = nn.Flatten()
        body["head_fc"] = nn.Linear(widths[-1], config.num_classes)
        self.body = nn.Sequential(body)
        self.readout = MeanOverTime()  # class scores: the mean over T of head_fc's output

    def _lif(self, tau: float) -> LIFLayer:
        c = self.config
        return LIFLayer(tau_mem=tau, v_th=c.v_th, dt=c.dt)

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def spiking_layer_names(self) -> list[str]:
        """Names (in ``body``) of the layers whose output is spikes."""
        return [n for n, m in self.body.named_children() if getattr(m, "stateful", False)]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Direct encoding: the first convolution's current ``[B, C, H, W]`` (computed once)."""
        return self.stem(images)

    def run(
        self, images: torch.Tensor, timesteps: int | None = None, record: bool = False
    ) -> SNNRun:
        """Layer-major execution over ``timesteps`` (default ``config.timesteps``)."""
        steps = timesteps or self.config.timesteps
        current = self.encode(images)
        batch = current.shape[0]
        x = current.unsqueeze(0).expand(steps, *current.shape)
        spikes: dict[str, torch.Tensor] = {}
        for name, module in self.body.named_children():
            if getattr(module, "stateful", False):
                x = module(x)
                if record:
                    spikes[name] = x
            else:
                x = module(x.flatten(0, 1)).unflatten(0, (steps, batch))
        return SNNRun(logits=self.readout(x), step_logits=x, spikes=spikes)

    def run_stepwise(
        self, images: torch.Tensor, timesteps: int | None = None, record: bool = False
    ) -> SNNRun:
        """The classic Norse loop, as a researcher writes it: at every timestep the whole
        network, first convolution included, is stepped once on the (static) image."""
        steps = timesteps or self.config.timesteps
        states: dict[str, object] = {}
        outputs = []
        recorded: dict[str, list[torch.Tensor]] = {}
        for _ in range(steps):
            x = self.encode(images)
            for name, module in self.body.named_children():
                if getattr(module, "stateful", False):
                    x, states[name] = module.step(x, states.get(name))
                    if record:
                        recorded.setdefault(name, []).append(x)
                else:
                    x = module(x)
            outputs.append(x)
        step_logits = torch.stack(outputs)
        spikes = {name: torch.stack(values) for name, values in recorded.items()}
        return SNNRun(logits=self.readout(step_logits), step_logits=step_logits, spikes=spikes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, K]``."""
        return self.run(images).logits

    def to_inference(self, channels_last: bool = False) -> nn.Module:
        """A fast, inference-only copy (see :mod:`neurall_neuro.models.inference`)."""
        return InferenceNeurAllNet(self, channels_last=channels_last)

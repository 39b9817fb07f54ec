"""How often the SE gates are open: ``gate_statistics(model, images) -> GateStatistics``.

An SE block (:mod:`neurall_neuro.models.se_block`) multiplies every channel of its
feature map by a per-channel gate ``g_t[c]`` at every timestep. One *gate neuron-step*
is one gate value: one channel of one image at one timestep. The gate is **open** on a
neuron-step when

* ``spiking`` mode: the gate neuron fires (``g = 1``, the AND neuron lets the feature
  spikes through);
* ``analog`` mode: the sigmoid gate passes at least half of the signal
  (``g >= analog_open_at``, default 0.5). The mean gate value is reported beside it,
  since an analog gate that is always "open" still scales its input unless it is ~1.

Measured per SE layer (found by module type, :class:`~neurall_neuro.models.se_block.SEBlock`
in mode ``spiking`` or ``analog``, so any model built from SE blocks works):

* ``open_rate``: the fraction of the layer's gate neuron-steps that are open (over all
  images, timesteps and channels);
* per channel: the open rate over all images and timesteps, and the spread of the
  per-image open rate (the fraction of timesteps a channel is open on one image)
  across images: mean, sample standard deviation (``ddof=1``; 0 for one image), min, max;
* per image (the whole layer): the spread of the per-image open rate across images;
* per timestep: the open rate of every step (e.g. a gate that is closed on the first
  step only, while its hidden LIF layer charges).

A layer open on at least ``always_open`` (default 98 %) of its neuron-steps is reported
as **always open**: it is (nearly) an identity that still costs its squeeze, excitation
and gating operations, and is a candidate for removal. Channels above the same threshold
are listed per layer, as are channels that never open.

The gate values are captured with a forward pre-hook on each block's
:class:`~neurall_neuro.models.se_block.ChannelGate` (whose arguments are the features
and the gate), so the model runs unchanged: layer-major ``run``, the stepwise loop and
the SE-CNN's one-step blocks all pass through it. Pass the model itself, not the
inference-only copy of ``to_inference()`` (which fuses the gate product).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from neurall_neuro.errors import ConfigError, DataError
from neurall_neuro.evaluation.predict import resolve_device
from neurall_neuro.models.se_block import SEBlock
from neurall_neuro.progress import track

#: A layer open on at least this fraction of its gate neuron-steps is "always open".
ALWAYS_OPEN = 0.98

#: An analog (sigmoid) gate counts as open when its value is at least this.
ANALOG_OPEN_AT = 0.5


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation, min and max of values across images."""

    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Spread:
        """Spread of a 1-D array (``sd`` is 0 for a single value)."""
        values = np.asarray(values, dtype=float)
        sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
        return cls(float(values.mean()), sd, float(values.min()), float(values.max()))

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "sd": self.sd, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class GateLayerStatistics:
    """Gate statistics of one SE layer.

    Attributes:
        name: the block's module path in the model (e.g. ``body.se3``).
        mode: ``spiking`` or ``analog``.
        channels, timesteps, n_images: the gate neurons, steps per image and images.
        open_rate: fraction of all gate neuron-steps that are open.
        mean_gate: mean gate value (equals ``open_rate`` for the binary spiking gate).
        step_open_rate: ``[T]`` open rate at every timestep (images and channels).
        image_open_rate: spread across images of the per-image open rate of the layer.
        channel_open_rate: ``[C]`` open rate of every channel (images and steps).
        channel_image_sd, channel_image_min, channel_image_max: ``[C]`` spread across
            images of every channel's per-image open rate (its mean is
            ``channel_open_rate``).
        always_open_threshold: the threshold used for ``always_open`` and the channel lists.
    """

    name: str
    mode: str
    channels: int
    timesteps: int
    n_images: int
    open_rate: float
    mean_gate: float
    step_open_rate: list[float]
    image_open_rate: Spread
    channel_open_rate: list[float]
    channel_image_sd: list[float]
    channel_image_min: list[float]
    channel_image_max: list[float]
    always_open_threshold: float = ALWAYS_OPEN

    @property
    def neuron_steps(self) -> int:
        """Number of gate neuron-steps measured (images x timesteps x channels)."""
        return self.n_images * self.timesteps * self.channels

    @property
    def always_open(self) -> bool:
        """Open on at least ``always_open_threshold`` of the neuron-steps."""
        return self.open_rate >= self.always_open_threshold

    @property
    def always_open_channels(self) -> list[int]:
        """Channels open on at least ``always_open_threshold`` of their neuron-steps."""
        return [c for c, r in enumerate(self.channel_open_rate) if r >= self.always_open_threshold]

    @property
    def never_open_channels(self) -> list[int]:
        """Channels that were not open on any neuron-step."""
        return [c for c, r in enumerate(self.channel_open_rate) if r == 0.0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "channels": self.channels,
            "timesteps": self.timesteps,
            "n_images": self.n_images,
            "neuron_steps": self.neuron_steps,
            "open_rate": self.open_rate,
            "mean_gate": self.mean_gate,
            "always_open": self.always_open,
            "step_open_rate": self.step_open_rate,
            "image_open_rate": self.image_open_rate.to_dict(),
            "always_open_channels": self.always_open_channels,
            "never_open_channels": self.never_open_channels,
            "per_channel": {
                "open_rate": self.channel_open_rate,
                "image_sd": self.channel_image_sd,
                "image_min": self.channel_image_min,
                "image_max": self.channel_image_max,
            },
        }


@dataclass(frozen=True)
class GateStatistics:
    """Gate statistics of every SE layer of a model (empty for a model without SE gates)."""

    layers: list[GateLayerStatistics] = field(default_factory=list)
    n_images: int = 0
    always_open_threshold: float = ALWAYS_OPEN
    analog_open_at: float = ANALOG_OPEN_AT

    @property
    def always_open_layers(self) -> list[str]:
        """Names of the layers open on at least ``always_open_threshold`` of neuron-steps."""
        return [layer.name for layer in self.layers if layer.always_open]

    def layer(self, name: str) -> GateLayerStatistics:
        """The statistics of the layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(
            f"no SE gate layer {name!r}; layers: {', '.join(x.name for x in self.layers) or '(none)'}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``render_gate_table`` renders it)."""
        return {
            "n_images": self.n_images,
            "always_open_threshold": self.always_open_threshold,
            "analog_open_at": self.analog_open_at,
            "always_open_layers": self.always_open_layers,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def to_markdown(self) -> str:
        """The per-layer markdown table of a model card (see :func:`render_gate_table`)."""
        return render_gate_table(self.to_dict())

    def summary(self) -> str:
        """A few human-readable lines."""
        if not self.layers:
            return "no SE gates"
        lines = []
        for layer in self.layers:
            flag = "  ALWAYS OPEN" if layer.always_open else ""
            lines.append(
                f"{layer.name} ({layer.mode}, {layer.channels} ch): open on "
                f"{100 * layer.open_rate:.2f} % of {layer.neuron_steps:,} neuron-steps{flag}"
            )
        return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render_gate_table(data: Mapping[str, Any]) -> str:
    """Markdown table of :meth:`GateStatistics.to_dict` output, one row per SE layer.

    Columns: open rate over all neuron-steps; the mean gate value (differs from the open
    rate for analog gates only); the open rate at every timestep; the per-image open rate across images
    (mean ± sd, min–max); the range over channels of the channel open rate and the
    largest per-channel sd across images; channels open on >= threshold / never open;
    the always-open flag.
    """
    layers = data.get("layers", [])
    if not layers:
        return "The model has no SE gates."
    threshold = data.get("always_open_threshold", ALWAYS_OPEN)
    lines = [
        f"| SE layer | mode | channels x steps | open rate | mean gate | open rate per step | "
        f"per image: mean ± sd (min–max) | "
        f"per channel: open rate min–max, max sd across images | channels open >= "
        f"{_pct(threshold)} | channels never open | always open |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in layers:
        img = layer["image_open_rate"]
        ch = layer["per_channel"]
        lines.append(
            f"| {layer['name']} | {layer['mode']} | {layer['channels']} x {layer['timesteps']} | "
            f"{_pct(layer['open_rate'])} | {layer['mean_gate']:.3f} | "
            f"{' / '.join(_pct(r) for r in layer['step_open_rate'])} | "
            f"{_pct(img['mean'])} ± {_pct(img['sd'])} "
            f"({_pct(img['min'])}–{_pct(img['max'])}) | "
            f"{_pct(min(ch['open_rate']))}–{_pct(max(ch['open_rate']))}, "
            f"{_pct(max(ch['image_sd']))} | "
            f"{len(layer['always_open_channels'])} / {layer['channels']} | "
            f"{len(layer['never_open_channels'])} | {'**yes**' if layer['always_open'] else 'no'} |"
        )
    return "\n".join(lines)


def se_gate_blocks(model: nn.Module) -> list[tuple[str, SEBlock]]:
    """``(module path, block)`` of every SE block with a gate (mode other than ``none``)."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, SEBlock) and module.mode != "none"
    ]


def _batches(
    images: torch.Tensor | Dataset, batch_size: int
) -> tuple[Iterator[torch.Tensor], int, int]:
    """An iterator of image batches, the number of images and the number of batches."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ConfigError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        n = images.shape[0]
        it = (images[i : i + batch_size] for i in range(0, n, batch_size))
        return it, n, -(-n // batch_size)
    n = len(images)  # type: ignore[arg-type]
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=0)

    def first(batch: Any) -> torch.Tensor:
        # ImageDataset items are (image, label, index); plain datasets may yield tensors
        return batch[0] if isinstance(batch, (list, tuple)) else batch

    return (first(b) for b in loader), n, len(loader)


@torch.no_grad()
def gate_statistics(
    model: nn.Module,
    images: torch.Tensor | Dataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    always_open: float = ALWAYS_OPEN,
    analog_open_at: float = ANALOG_OPEN_AT,
) -> GateStatistics:
    """Run ``model`` (eval mode, no gradients) over ``images`` and measure its SE gates.

    Args:
        model: any model containing :class:`SEBlock` modules (the module itself, not a
            ``to_inference()`` copy). Without gated SE blocks the result is empty and
            the model is not run.
        images: ``[N, C, H, W]`` model inputs, or a Dataset whose items are images or
            ``(image, ...)`` tuples (e.g. :class:`~neurall_neuro.data.dataset.ImageDataset`).
        batch_size: images per forward pass.
        device: where to run (``auto``, ``cpu``, ``cuda``, ...).
        progress: show progress over the batches (:func:`neurall_neuro.progress.track`).
        always_open: open-rate threshold of "always open" layers and channels, in (0, 1].
        analog_open_at: gate value from which an analog gate counts as open, in (0, 1).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 < always_open <= 1.0:
        raise ConfigError(f"always_open must be in (0, 1], got {always_open}")
    if not 0.0 < analog_open_at < 1.0:
        raise ConfigError(f"analog_open_at must be in (0, 1), got {analog_open_at}")
    blocks = se_gate_blocks(model)
    batches, n_images, n_batches = _batches(images, batch_size)
    if not blocks:
        return GateStatistics([], n_images, always_open, analog_open_at)
    if n_images == 0:
        raise DataError("no images to measure the SE gates on")

    # Per layer: this batch's gate tensors ([steps, B, C] each), then per image and
    # channel the number of open steps and the sum of gate values over the run.
    current: dict[str, list[torch.Tensor]] = {name: [] for name, _ in blocks}
    open_steps: dict[str, list[np.ndarray]] = {name: [] for name, _ in blocks}
    gate_sums: dict[str, list[np.ndarray]] = {name: [] for name, _ in blocks}
    step_open: dict[str, np.ndarray] = {}  # [T] open gate neurons per step, all images
    steps_seen: dict[str, int] = {}
    batch_holder = {"size": 0}

    def make_hook(name: str):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            gate = args[1]  # ChannelGate.forward(features, gate): [steps * B, C, 1, 1]
            current[name].append(gate.detach().reshape(-1, batch_holder["size"], gate.shape[1]))

        return hook

    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    handles = [block.gate.register_forward_pre_hook(make_hook(name)) for name, block in blocks]
    iterator = track(batches, "SE gate statistics", total=n_batches) if progress else batches
    try:
        for batch in iterator:
            batch_holder["size"] = int(batch.shape[0])
            for name in current:
                current[name] = []
            model(batch.to(dev))
            for name, block in blocks:
                if not current[name]:
                    raise RuntimeError(
                        f"SE block {name} was not run through its ChannelGate; pass the model "
                        "itself, not an inference-only copy"
                    )
                gate = torch.cat(current[name]).float()  # [T, B, C]
                steps = gate.shape[0]
                if steps_seen.setdefault(name, steps) != steps:
                    raise RuntimeError(
                        f"SE block {name} ran {steps} steps on one batch and "
                        f"{steps_seen[name]} on another"
                    )
                is_open = gate > 0 if block.mode == "spiking" else gate >= analog_open_at
                open_steps[name].append(is_open.sum(0).cpu().numpy().astype(np.int64))
                gate_sums[name].append(gate.sum(0).double().cpu().numpy())
                counts = is_open.sum(dim=(1, 2)).cpu().numpy().astype(np.int64)
                step_open[name] = step_open.get(name, 0) + counts
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    layers = []
    for name, block in blocks:
        steps = steps_seen[name]
        per_image = np.concatenate(open_steps[name]) / steps  # [N, C]
        mean_gate = float(np.concatenate(gate_sums[name]).sum() / (per_image.size * steps))
        sd = per_image.std(axis=0, ddof=1) if per_image.shape[0] > 1 else np.zeros(block.channels)
        layers.append(
            GateLayerStatistics(
                name=name,
                mode=block.mode,
                channels=int(per_image.shape[1]),
                timesteps=steps,
                n_images=int(per_image.shape[0]),
                open_rate=float(per_image.mean()),
                mean_gate=mean_gate,
                step_open_rate=[float(x) / per_image.size for x in step_open[name]],
                image_open_rate=Spread.of(per_image.mean(axis=1)),
                channel_open_rate=[float(x) for x in per_image.mean(axis=0)],
                channel_image_sd=[float(x) for x in sd],
                channel_image_min=[float(x) for x in per_image.min(axis=0)],
                channel_image_max=[float(x) for x in per_image.max(axis=0)],
                always_open_threshold=always_open,
            )
        )
    return GateStatistics(layers, n_images, always_open, analog_open_at)

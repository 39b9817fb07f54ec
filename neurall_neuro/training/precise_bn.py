r"""Recompute BatchNorm statistics of the current weights before validation ("precise BN").

Why. In eval mode a BatchNorm layer normalises with its running statistics, an
exponential moving average of the batch statistics seen in training::

    r_n = (1 - m) r_{n-1} + m s_n,   m = 0.1 (torch's momentum),  r_0 = (mean 0, var 1)

After ``n`` batches the initial variance 1 still weighs ``0.9^n``, and the average is
taken over augmented images under weights that move fast while the learning rate is
high. In the spiking network these errors are fatal: the pre-activations of its
convolutions have variances far below 1 (sparse binary inputs), so an inflated running
variance shrinks every normalised current, the LIF neurons stop firing, the layers
after them fall silent, and the class scores become the readout bias -- one answer for
every image, validation loss ``ln K``; smaller offsets flip spike patterns through the
thresholded layers. Measured on the generated cohort (``docs/training.md``, "Validation
at chance"): after epoch 1 the running variances were 66x, 32x, 17x and 5x the
population variances, stages 2-4 fired at 0 %, and validation accuracy sat at 0.25 for
three epochs while training accuracy rose to 0.75; the same weights with recomputed
statistics scored 0.46, 0.71 and 0.61.

What. :func:`recalibrate_batchnorm` runs the training images (without augmentation: the
distribution validation and inference see) through the model with every BatchNorm in
training mode (batch statistics, exactly as in a training step; dropout and everything
else in eval mode) and no gradients, accumulates per channel over all images, steps
and positions the exact population moments of each BatchNorm's input::

    mu = S1 / N,   sigma^2 = (S2 / N - mu^2) * N / (N - 1),   S1 = sum x,  S2 = sum x^2

(summed over every process under DDP), and stores them as the running statistics. It
only changes BatchNorm buffers, never a parameter: training-mode forward passes use
batch statistics, so the weights of a run are the same with or without it; what changes
is the validation figure (hence the best epoch, the plateau schedule and early
stopping) and the statistics saved in the checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.preprocess import to_tensor
from neurall_neuro.training.distributed import DistContext, all_reduce_sum

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class PlainImages(Dataset):
    """The images of an :class:`ImageDataset` without its augmentation (same order, same
    cached pixels, no second decode)."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return to_tensor(self.dataset.pixels(index)), self.dataset.records[index].label, index


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BN_TYPES) and m.track_running_stats]


class _MomentAccumulator:
    """Per-channel ``count``, ``sum x`` and ``sum x^2`` of one BatchNorm's input (float64)."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm):
        c = layer.num_features
        device = layer.running_mean.device
        self.sums = torch.zeros(3, c, dtype=torch.float64, device=device)

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().to(torch.float64)
        dims = [d for d in range(x.dim()) if d != 1]
        n = x.numel() // x.shape[1]
        self.sums[0] += n
        self.sums[1] += x.sum(dim=dims)
        self.sums[2] += (x * x).sum(dim=dims)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    ctx: DistContext,
    amp: bool = False,
) -> int:
    """Set every BatchNorm's running statistics to the population moments of its input
    over ``batches`` (see the module docstring); returns the number of images used here.

    ``model`` may be wrapped in DistributedDataParallel; the moments are summed over all
    processes. The modes of all modules and the BatchNorm momenta are restored.
    """
    unwrapped = model.module if hasattr(model, "module") else model
    layers = batchnorm_layers(unwrapped)
    if not layers:
        return 0
    modes = {m: m.training for m in unwrapped.modules()}
    saved = {m: (m.momentum, m.num_batches_tracked.clone()) for m in layers}
    accumulators = [_MomentAccumulator(m) for m in layers]
    hooks = [m.register_forward_pre_hook(acc) for m, acc in zip(layers, accumulators, strict=True)]
    images = 0
    try:
        unwrapped.eval()
        for m in layers:
            m.train()
            m.momentum = 0.0  # batch statistics for the forward pass, running ones untouched
        for batch in batches:
            x = batch[0].to(ctx.device, non_blocking=True)
            with torch.autocast(device_type=ctx.device.type, enabled=amp):
                unwrapped(x)
            images += int(x.shape[0])
    finally:
        for h in hooks:
            h.remove()
        for m, (momentum, tracked) in saved.items():
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
        for m, mode in modes.items():
            m.training = mode
    for m, acc in zip(layers, accumulators, strict=True):
        count, s1, s2 = all_reduce_sum(acc.sums, ctx)
        if float(count[0]) < 2:
            continue
        mean = s1 / count
        var = (s2 / count - mean * mean).clamp_min(0.0) * count / (count - 1)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))
    return images


def recalibration_loader(
    dataset: ImageDataset,
    n_images: int,
    batch_size: int,
    ctx: DistContext,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """``n_images`` training images (all when fewer) without augmentation, this process's
    shard: a random subset in random order (seeded, so the same every epoch; every batch
    mixes classes)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    chosen = order[: min(n_images, len(dataset))].tolist()  # random order: classes mixed
    return DataLoader(
        Subset(PlainImages(dataset), chosen[ctx.rank :: ctx.world_size]),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=ctx.device.type == "cuda",
    )

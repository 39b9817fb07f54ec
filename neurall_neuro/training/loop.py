"""One pass over a data loader: a training epoch or a validation epoch.

The loss is cross-entropy, weighted per class when ``weights`` is given (class
balancing). Epoch figures are exact over the whole split, also under DDP: every
process sums ``weighted loss``, ``weight``, ``correct`` and ``count`` over its shard and
the sums are all-reduced, so the epoch loss is ``sum_i w_{y_i} l_i / sum_i w_{y_i}``
(the same normalisation as ``F.cross_entropy(..., weight=w)`` over the whole split).
With a ``distiller`` (knowledge distillation, training passes only) the training loss
is :func:`neurall_neuro.training.distillation.distillation_loss` instead, logged the
same way; validation passes always use the hard-label loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from neurall_neuro.training.distillation import Distiller
from neurall_neuro.training.distributed import DistContext, all_reduce_sum
from neurall_neuro.training.progress_bar import EpochProgress


@dataclass(frozen=True)
class EpochStats:
    """Loss (class-weighted mean) and accuracy over a whole split, and its size."""

    loss: float
    accuracy: float
    n: int


def run_epoch(
    model: nn.Module,
    loader: DataLoader,
    ctx: DistContext,
    weights: torch.Tensor | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    progress: EpochProgress | None = None,
    distiller: Distiller | None = None,
) -> EpochStats:
    """Train (``optimizer`` given) or evaluate ``model`` for one pass over ``loader``.

    ``amp`` runs forward passes under autocast (CUDA); ``scaler`` scales the loss for
    float16 gradients. ``distiller`` adds the teacher's soft targets to the training
    loss (ignored when evaluating). Returns statistics all-reduced over the DDP processes.
    """
    training = optimizer is not None
    model.train(training)
    device = ctx.device
    w = weights.to(device) if weights is not None else None
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss*w, w, correct, count
    done = 0
    grad_context = torch.enable_grad() if training else torch.no_grad()
    with grad_context:
        for images, labels, _ in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, enabled=amp):
                logits = model(images)
            if training and distiller is not None:
                loss = distiller.loss(logits.float(), images, labels, w)
            else:
                loss = F.cross_entropy(logits.float(), labels, weight=w)
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            batch_weight = (
                w[labels].sum()
                if w is not None
                else torch.tensor(float(labels.numel()), device=device)
            )
            correct = (logits.detach().argmax(dim=1) == labels).sum()
            sums += torch.stack(
                [
                    loss.detach().double() * batch_weight.double(),
                    batch_weight.double(),
                    correct.double(),
                    torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
                ]
            )
            done += 1
            if progress is not None and progress.wants_update(done):
                local = sums.tolist()
                progress.update(done, local[0] / max(local[1], 1e-12), local[2] / max(local[3], 1))
    total = all_reduce_sum(sums, ctx).tolist()
    n = int(round(total[3]))
    if n == 0:
        return EpochStats(loss=float("nan"), accuracy=float("nan"), n=0)
    return EpochStats(loss=total[0] / total[1], accuracy=total[2] / total[3], n=n)

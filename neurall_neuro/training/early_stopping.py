"""Early stopping on a monitored loss, keeping the best weights."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` epochs.

    An epoch *improves* when ``value < best - min_delta``; then the model's weights are
    copied (to CPU) as the best so far. ``patience = 0`` never stops early but still
    tracks the best weights. :meth:`restore_best` loads them back into a model.
    The whole state (best weights included) round-trips through :meth:`state_dict`,
    which holds only tensors and plain values (``weights_only``-loadable).
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0) -> None:
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best: float = math.inf
        self.best_epoch: int = 0
        self.bad_epochs: int = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def step(self, value: float, epoch: int, model: nn.Module) -> bool:
        """Record epoch ``epoch``'s value; returns True when training should stop."""
        if value < self.best - self.min_delta:
            self.best = float(value)
            self.best_epoch = int(epoch)
            self.bad_epochs = 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def restore_best(self, model: nn.Module) -> bool:
        """Load the best weights into ``model``; False if no epoch was recorded."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": copy.copy(self.best_state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patience = int(state["patience"])
        self.min_delta = float(state["min_delta"])
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.best_state = state.get("best_state")

r"""How the torch-hook counter drives a model over time: the *input modes*.

A model is run once per batch of inputs. How one batch becomes forward calls depends on
how the model handles time, so :func:`energy.torch_counter.count_model` takes an
``input_mode`` (a name in :data:`INPUT_MODES`):

==============  ===================  =========================================================
mode            inputs               forward calls per batch
==============  ===================  =========================================================
``batch``       ``[N, ...]``         ``model(x)`` once: the model loops over time itself (the
                                     SE-SNN takes images and runs its ``T`` steps inside)
``static``      ``[N, ...]``         stepped ``T = timesteps`` times with the same ``x`` at
                                     every step (direct encoding of a static image)
``sequence``    ``[T, N, ...]``      stepped over the first dimension: step ``t`` gets
                                     ``x[t]`` (event data); ``T = inputs.shape[0]``
``time-major``  ``[T, N, ...]``      ``model(x)`` once on the whole sequence (models of Norse
                                     sequence modules ``LIF``, ``LI``, ``LIFRecurrent`` or
                                     ``Lift``); ``T = inputs.shape[0]``
==============  ===================  =========================================================

Batches are taken along the sample dimension (dimension 0 of ``[N, ...]``, dimension 1
of ``[T, N, ...]``), so per-sample figures divide by ``N``.

Stepping (:func:`step_model`): a model whose ``forward`` has a parameter named ``state``
(Norse's convention: ``SequentialState``, every ``*Cell``, ``Lift`` of one) is called
``output, state = model(x_t, state)`` with the state it returned at the previous step
(``None`` at the first); any other model is called ``model(x_t)`` at every step (it keeps
its own state, or has none).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.registry import Registry

#: ``(model, batch, timesteps) -> (output, T)``: runs one batch; ``T`` is the number of
#: timesteps the model was driven for (``None`` when the model loops over time itself).
ForwardFn = Callable[[nn.Module, torch.Tensor, int | None], tuple[Any, int | None]]


@dataclass(frozen=True)
class InputMode:
    """One way of turning a batch of inputs into forward calls.

    Attributes:
        name: the mode's name (what ``input_mode=`` takes).
        description: one line for messages and documentation.
        batch_dim: the sample dimension of the inputs (0: ``[N, ...]``, 1: ``[T, N, ...]``).
        forward: runs one batch (see :data:`ForwardFn`).
    """

    name: str
    description: str
    batch_dim: int
    forward: ForwardFn

    def split(self, inputs: torch.Tensor, batch_size: int | None) -> tuple[torch.Tensor, ...]:
        """``inputs`` cut into batches of ``batch_size`` samples (all at once by default)."""
        self.check(inputs)
        size = batch_size or inputs.shape[self.batch_dim]
        return inputs.split(size, dim=self.batch_dim)

    def samples(self, batch: torch.Tensor) -> int:
        """Number of samples in ``batch``."""
        self.check(batch)
        return int(batch.shape[self.batch_dim])

    def check(self, batch: Any) -> None:
        """ConfigError unless ``batch`` is a tensor with a sample dimension (and a time one)."""
        needed = self.batch_dim + 2  # time (if any), samples, at least one feature dimension
        if not isinstance(batch, torch.Tensor) or batch.dim() < needed:
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            layout = "[T, N, ...]" if self.batch_dim else "[N, ...]"
            raise ConfigError(
                f"input mode {self.name!r} takes batched tensors {layout} with at least "
                f"{needed} dimensions, got {shape}"
            )


#: Mode name -> :class:`InputMode` (the built-ins are registered below).
INPUT_MODES: Registry[InputMode] = Registry("input mode")


def get_input_mode(mode: str | InputMode) -> InputMode:
    """The :class:`InputMode` named ``mode`` (UnknownNameError listing the valid names)."""
    return mode if isinstance(mode, InputMode) else INPUT_MODES.get(mode)


def takes_state(model: nn.Module) -> bool:
    """Whether ``model.forward`` has a ``state`` parameter (Norse's stateful convention)."""
    try:
        return "state" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def step_model(model: nn.Module, frames: Iterable[torch.Tensor]) -> Any:
    """Call ``model`` once per frame, feeding back its state; returns the last output.

    A model that takes a ``state`` must return ``(output, state)``; the state is passed
    back at the next step (``None`` at the first). Other models are called ``model(x_t)``.
    """
    stateful = takes_state(model)
    state: Any = None
    output: Any = None
    for x in frames:
        if not stateful:
            output = model(x)
            continue
        result = model(x, state)
        if not (isinstance(result, tuple | list) and len(result) == 2):
            raise ConfigError(
                f"{type(model).__name__}.forward takes a state, so stepping expects it to return "
                f"(output, state) as Norse modules do; got {type(result).__name__}"
            )
        output, state = result
    return output


def _positive_timesteps(mode: str, timesteps: int | None) -> int:
    if timesteps is None or int(timesteps) < 1:
        raise ConfigError(
            f"input mode {mode!r} steps the model: give timesteps=T >= 1, got {timesteps}"
        )
    return int(timesteps)


def _sequence_length(mode: str, batch: torch.Tensor, timesteps: int | None) -> int:
    length = int(batch.shape[0])
    if timesteps is not None and int(timesteps) != length:
        raise ConfigError(
            f"input mode {mode!r} takes T from the inputs [T, N, ...] (T = {length}); "
            f"timesteps={timesteps} does not match"
        )
    return length


def _forward_batch(model: nn.Module, batch: torch.Tensor, timesteps: int | None) -> tuple:
    if timesteps is not None:
        raise ConfigError(
            "input mode 'batch' calls the model once per batch (it loops over time itself, as "
            f"the SE-SNN does), so timesteps={timesteps} has no effect; step the model with "
            "input_mode='static' (the same input at every step) or 'sequence' ([T, N, ...])"
        )
    return model(batch), None


def _forward_static(model: nn.Module, batch: torch.Tensor, timesteps: int | None) -> tuple:
    steps = _positive_timesteps("static", timesteps)
    return step_model(model, repeat(batch, steps)), steps


def _forward_sequence(model: nn.Module, batch: torch.Tensor, timesteps: int | None) -> tuple:
    steps = _sequence_length("sequence", batch, timesteps)
    frames: Iterator[torch.Tensor] = (batch[t] for t in range(steps))
    return step_model(model, frames), steps


def _forward_time_major(model: nn.Module, batch: torch.Tensor, timesteps: int | None) -> tuple:
    steps = _sequence_length("time-major", batch, timesteps)
    return model(batch), steps


for _mode in (
    InputMode("batch", "model(x) once per batch [N, ...]; the model loops over time", 0, _forward_batch),
    InputMode("static", "stepped T times on the same batch [N, ...]", 0, _forward_static),
    InputMode("sequence", "stepped over the first dimension of [T, N, ...]", 1, _forward_sequence),
    InputMode("time-major", "model(x) once on the whole sequence [T, N, ...]", 1, _forward_time_major),
):  # fmt: skip
    INPUT_MODES.register(_mode.name, _mode)

"""Self-describing checkpoints.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with
``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists and dicts only)::

    {
      "format": "neurall-checkpoint", "format_version": 1,
      "model": "neurallnet",                # registry name
      "config": {...},                      # the model's full config
      "class_names": ["Benign", ...],
      "preprocessing": {"size": 64, ...},   # neurall_neuro.data.preprocess.Preprocessing
      "state_dict": {...},
      "metadata": {...},                    # training info (epoch, metrics, seed, ...)
      "image_hashes": {...},                # optional: hashes of the training and
    }                                       # validation images (no image content)

so ``evaluate``, ``export``, ``deploy`` and ``energy`` need no other model flags.

``image_hashes`` lets ``evaluate`` recognise the images a checkpoint was trained and
validated on without the training data; its content (written by ``neurall train``)
is defined by :mod:`neurall_neuro.evaluation.training_images`. Checkpoints without it
(older ones) load unchanged; readers ignore top-level keys they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurall_neuro.atomic import atomic_open
from neurall_neuro.errors import CheckpointError, NeurallError
from neurall_neuro.models.registry import get_model, model_config_dict

FORMAT = "neurall-checkpoint"
FORMAT_VERSION = 1
#: Top-level key of the optional training/validation image hashes.
IMAGE_HASHES_KEY = "image_hashes"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the built model plus everything needed to use it."""

    model: nn.Module
    model_name: str
    config: dict[str, Any]
    class_names: list[str]
    preprocessing: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: The raw ``image_hashes`` entry (None when the checkpoint has none).
    image_hashes: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def timesteps(self) -> int | None:
        return self.config.get("timesteps")


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    class_names: list[str] | tuple[str, ...],
    preprocessing: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    image_hashes: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + rename). ``extra`` adds top-level keys
    (e.g. optimizer state for resuming) that must also be ``weights_only``-loadable;
    ``image_hashes`` is the payload of
    :meth:`neurall_neuro.evaluation.training_images.TrainingImageHashes.to_payload`."""
    name = getattr(model, "registry_name", None)
    if name is None:
        raise CheckpointError("model was not built by get_model(); its registry name is unknown")
    unwrapped = model.module if hasattr(model, "module") else model
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": model_config_dict(unwrapped),
        "class_names": list(class_names),
        "preprocessing": dict(preprocessing),
        "state_dict": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    if image_hashes is not None:
        payload[IMAGE_HASHES_KEY] = image_hashes
    payload.update(extra or {})
    return write_checkpoint_dict(path, payload)


def write_checkpoint_dict(path: str | Path, payload: dict[str, Any]) -> Path:
    """Save a raw checkpoint dict (as from :func:`read_checkpoint_dict`) atomically:
    ``torch.save`` to a temporary file in the same folder, then rename."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"refusing to write a dict without format={FORMAT!r} as a checkpoint")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Mode 0o666 & ~umask, like any file the user writes. Saving through a file object
    # (not the temporary path) keeps the archive's inner folder name fixed, so the same
    # payload always gives the same bytes.
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)
    return path


def read_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """Load the raw checkpoint dict with ``weights_only=True`` and check its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        with open(path, "rb") as fh:  # torch.save writes a zip archive ("PK\x03\x04")
            head = fh.read(4)
        if not head:
            reason = "the file is empty"
        elif head == b"PK\x03\x04":
            detail = (str(exc).strip().splitlines() or [""])[0]
            reason = f"a damaged or truncated torch.save archive: {type(exc).__name__}: {detail}"
        else:
            reason = "not a torch.save archive"
        raise CheckpointError(
            f"not a neurall checkpoint: {path} (cannot read checkpoint: {reason}); a checkpoint "
            "is a .pt file written by neurall train / save_checkpoint"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a neurall-neuro checkpoint (expected a dict with format={FORMAT!r}); "
            "plain state dicts cannot describe their model"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload['format_version']}; "
            f"this neurall-neuro reads up to version {FORMAT_VERSION}"
        )
    missing = [
        k
        for k in ("model", "config", "class_names", "preprocessing", "state_dict")
        if k not in payload
    ]
    if missing:
        raise CheckpointError(f"{path} lacks required field(s): {', '.join(missing)}")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model described by a checkpoint and load its weights (eval mode)."""
    payload = read_checkpoint_dict(path)
    try:
        model = get_model(payload["model"], **payload["config"])
    except NeurallError as exc:
        raise CheckpointError(f"{path}: cannot rebuild model {payload['model']!r}: {exc}") from exc
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not match model {payload['model']!r}: {exc}"
        ) from exc
    model.to(map_location).eval()
    return Checkpoint(
        model=model,
        model_name=payload["model"],
        config=dict(payload["config"]),
        class_names=list(payload["class_names"]),
        preprocessing=dict(payload["preprocessing"]),
        metadata=dict(payload.get("metadata", {})),
        path=Path(path),
        image_hashes=payload.get(IMAGE_HASHES_KEY),
    )

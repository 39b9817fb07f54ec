"""Knowledge distillation (Hinton, Vinyals and Dean 2015): train a student on a teacher's
softened class scores as well as on the labels.

With student logits ``s``, teacher logits ``t``, labels ``y``, temperature ``T`` and
weight ``alpha``, the training loss of a batch of ``B`` images is::

    L = (1 - alpha) * CE_w(s, y)
        + alpha * T^2 * (1/B) sum_i KL( softmax(t_i / T) || softmax(s_i / T) )

    KL(p || q) = sum_k p_k log(p_k / q_k)

``CE_w`` is the trainer's hard-label loss (cross-entropy, class-weighted when class
balancing is on); the KL term is ``F.kl_div(..., reduction="batchmean")``. The factor
``T^2`` keeps the gradient of the soft term on the scale of the hard term when ``T``
changes (the soft gradients scale as ``1/T^2``). ``alpha = 0`` is plain training,
``alpha = 1`` ignores the labels. Defaults: ``T = 4``, ``alpha = 0.7``.

The teacher is a checkpoint of this project (:func:`load_teacher`), frozen and in eval
mode on the student's device; it sees the very batch the student sees (after
augmentation), so it must use the same preprocessing (input size, CLAHE) and the same
class names in the same order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurall_neuro.errors import CheckpointError, ConfigError
from neurall_neuro.models.checkpoint import load_checkpoint
from neurall_neuro.training.config import DEFAULT_KD_ALPHA, DEFAULT_KD_TEMPERATURE


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = DEFAULT_KD_TEMPERATURE,
    alpha: float = DEFAULT_KD_ALPHA,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(1 - alpha) CE_w(s, y) + alpha T^2 KL(softmax(t/T) || softmax(s/T))`` (batch mean).

    ``weight``: per-class weights of the hard-label cross-entropy (as the trainer's);
    the soft term is unweighted. Gradients flow into ``student_logits`` only.
    """
    hard = F.cross_entropy(student_logits, labels, weight=weight)
    student_log_p = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(student_log_p, teacher_log_p, reduction="batchmean", log_target=True)
    return (1.0 - alpha) * hard + alpha * temperature**2 * soft


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Teacher:
    """A frozen teacher model (eval mode, no gradients) and where it came from."""

    model: nn.Module
    model_name: str
    path: Path
    sha256: str
    class_names: list[str]
    preprocessing: dict[str, Any]

    def check_stain_reference(self, preprocessing: dict[str, Any]) -> None:
        """ConfigError unless the student's fitted stain reference (``preprocessing``, a
        ``Preprocessing.to_dict()``) is the teacher's: the teacher sees the student's
        normalised images."""
        theirs = self.preprocessing.get("stain_reference")
        ours = preprocessing.get("stain_reference")
        if theirs != ours:
            raise ConfigError(
                f"the teacher {self.path} normalises stains with the reference {theirs!r}, "
                f"the student with {ours!r}; train both on the same split so that they fit "
                "the same reference"
            )

    def record(self, temperature: float, alpha: float) -> dict[str, Any]:
        """What a run's config and checkpoints store about the distillation."""
        return {
            "teacher": str(self.path),
            "teacher_sha256": self.sha256,
            "teacher_model": self.model_name,
            "temperature": float(temperature),
            "alpha": float(alpha),
        }


def load_teacher(
    path: str | Path,
    class_names: list[str],
    preprocessing: dict[str, Any],
    input_size: int,
    device: torch.device,
) -> Teacher:
    """Load and check a teacher checkpoint for a student with these classes and inputs.

    Raises :class:`CheckpointError` when the file is missing or unreadable and
    :class:`ConfigError` when its classes or preprocessing differ from the student's.
    """
    path = Path(path).expanduser().resolve()
    try:
        ckpt = load_checkpoint(path, map_location=device)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot use the teacher (--teacher): {exc}") from exc
    if list(ckpt.class_names) != list(class_names):
        raise ConfigError(
            f"the teacher {path} was trained on classes {list(ckpt.class_names)}, but the "
            f"dataset's classes are {list(class_names)}; distillation needs the same class "
            "names in the same order"
        )
    differences = []
    # the stain reference is fitted on the training split after this check: compared by
    # Teacher.check_stain_reference once it exists
    keys = (set(ckpt.preprocessing) | set(preprocessing)) - {"stain_reference"}
    for key in sorted(keys):
        theirs = ckpt.preprocessing.get(key, "(not recorded)")
        ours = preprocessing.get(key, "(not recorded)")
        if theirs != ours:
            differences.append(f"{key} {theirs!r} (teacher) vs {ours!r} (student)")
    teacher_size = ckpt.config.get("input_size")
    if not differences and teacher_size is not None and teacher_size != input_size:
        differences.append(f"input_size {teacher_size!r} (teacher) vs {input_size!r} (student)")
    if differences:
        raise ConfigError(
            f"the teacher {path} expects different inputs than the student: "
            + "; ".join(differences)
            + ". The teacher sees the student's batches, so both must use the same "
            "preprocessing (set --size / --clahe to the teacher's)"
        )
    model = ckpt.model.eval()
    model.requires_grad_(False)
    return Teacher(
        model=model,
        model_name=ckpt.model_name,
        path=path,
        sha256=file_sha256(path),
        class_names=list(ckpt.class_names),
        preprocessing=dict(ckpt.preprocessing),
    )


@dataclass
class Distiller:
    """The training loss with a teacher: runs the teacher on the student's batch."""

    teacher: Teacher
    temperature: float = DEFAULT_KD_TEMPERATURE
    alpha: float = DEFAULT_KD_ALPHA
    amp: bool = False

    def loss(
        self,
        student_logits: torch.Tensor,
        images: torch.Tensor,
        labels: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:func:`distillation_loss` of ``student_logits`` against the teacher on ``images``."""
        with torch.no_grad(), torch.autocast(device_type=images.device.type, enabled=self.amp):
            teacher_logits = self.teacher.model(images)
        return distillation_loss(
            student_logits, teacher_logits.float(), labels, self.temperature, self.alpha, weight
        )

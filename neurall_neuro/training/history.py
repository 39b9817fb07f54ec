"""Per-epoch training history: ``metrics.csv`` rows and reading them back."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from neurall_neuro.atomic import atomic_open


@dataclass(frozen=True)
class EpochRecord:
    """One row of ``metrics.csv``.

    ``lr`` is the learning rate the epoch trained with; ``time_s`` its wall time
    (training + validation) in seconds.
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    time_s: float


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EpochRecord))


def write_history(path: str | Path, records: list[EpochRecord]) -> Path:
    """(Re)write the whole CSV atomically: header plus one row per epoch."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for rec in records:
            row = asdict(rec)
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    return path


def read_history(path: str | Path) -> list[EpochRecord]:
    """Rows of a ``metrics.csv`` (empty list when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        EpochRecord(
            epoch=int(r["epoch"]),
            **{k: float(r[k]) for k in COLUMNS if k != "epoch"},
        )
        for r in rows
    ]

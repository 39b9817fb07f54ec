"""Writing files atomically, with the permissions of an ordinary file; output folders
that disappear when the command filling them fails.

Every artifact the library writes in one piece (checkpoints, split files, ``.nir`` and
netx ``.net`` graphs, reports, ``metrics.csv``) goes through :func:`atomic_path` (or its
wrappers :func:`atomic_open`, :func:`atomic_write_text`, :func:`atomic_write_bytes`):

1. a temporary file ``.<name>.<random>.tmp`` is created in the destination's folder (the
   same file system, so the final rename is atomic; the leading dot keeps it out of
   dataset scans);
2. the caller writes it (by path or through a file object);
3. it is flushed to disk (``fsync``) and renamed over the destination with
   :func:`os.replace`; the folder entry is synced too where the platform allows it.

A reader therefore sees the old file or the complete new one, never a half-written
file, and an interrupted write leaves no temporary file behind (it is removed when the
block raises).

Permissions: :func:`tempfile.mkstemp` creates its file with mode ``0600`` and a rename
keeps the mode, so artifacts written that way could not be read by colleagues on a
shared machine. Here the temporary file is created with
``os.open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0o666)``: the kernel applies the process
umask exactly as it does for ``open(path, "w")``, giving ``0o666 & ~umask`` (``0644``
under umask ``022``, ``0664`` under ``002``, ``0600`` under ``077``). The umask is never
read or changed, so there is no window in which other threads create files with a
wrong mask (``os.umask`` can only be read by setting it).

:func:`removed_on_failure` is the folder-level counterpart: a command that creates an
output folder and then fails before producing its results removes the folder again,
so no half-made run folder is left behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from neurall_neuro.errors import ConfigError

#: Mode requested for new files; the process umask is subtracted by the kernel.
FILE_MODE = 0o666
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_ATTEMPTS = 100


def _create_temp(folder: Path, name: str) -> Path:
    """Create an empty, new temporary file next to ``name`` with mode ``0o666 & ~umask``."""
    for _ in range(_ATTEMPTS):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(
        f"no unused temporary file name for {folder / name} after {_ATTEMPTS} tries"
    )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder`` (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The temporary file already exists (empty, mode ``0o666 & ~umask``) in ``path``'s
    folder, which is created if needed; writers that open by name (``torch.save``,
    ``h5py.File(tmp, "w")``, ``nir.write``) truncate it and keep its mode. When the block
    raises, the temporary file is removed and ``path`` is left untouched.

    Example::

        with atomic_path("runs/a/best.pt") as tmp:
            torch.save(payload, tmp)
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(dest.parent, dest.name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(dest.parent)


@contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "w",
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``mode`` ``"w"`` or ``"wb"``); on a clean exit
    it replaces ``path`` atomically (see :func:`atomic_path`).

    Raises:
        ConfigError: ``mode`` is not a write mode (valid: ``"w"``, ``"wt"``, ``"wb"``), or
            a binary mode was given an encoding or newline.
    """
    if mode not in ("w", "wt", "wb"):
        raise ConfigError(f"atomic_open mode {mode!r} is invalid; valid options: w, wt, wb")
    if "b" in mode and (encoding is not None or newline is not None):
        raise ConfigError("atomic_open: binary mode 'wb' takes no encoding or newline")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, newline=newline) as fh:
        yield fh


def atomic_write_text(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", newline: str | None = None
) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_open(path, "w", encoding=encoding, newline=newline) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


@contextmanager
def removed_on_failure(
    folder: str | os.PathLike[str], keep_if: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Remove ``folder`` again if the block raises and ``folder`` did not exist before.

    For commands that write into an output folder: a failure before the results exist
    (bad input, an error half-way through) must not leave a half-made folder that the
    next run would trip over or that looks like a result. A folder that existed before
    the block is never touched; ``keep_if(folder)`` returning True keeps a new one too
    (e.g. a training run that already saved a resumable checkpoint).

    The exception is always re-raised.
    """
    path = Path(folder)
    existed = path.exists()
    try:
        yield path
    except BaseException:
        if not existed and path.is_dir() and not (keep_if is not None and keep_if(path)):
            shutil.rmtree(path, ignore_errors=True)
        raise

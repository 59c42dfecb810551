"""Output folders that appear whole or not at all, and one writer per folder at a time.

A folder is written beside its final place under a hidden name (`.NAME.partial-*`) and
renamed into place only when everything succeeded; a replaced folder is first moved
aside (`.NAME.old-*`), so `out` is always the previous complete result or the new one.
Hidden folders left by a killed run are removed by the next run that holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from covid_chestxray_seg import BuildError


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold the lock beside `out` for the whole block: a second writer refuses at once."""
    path = lock_path(out)
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(
                out, "output folder", f"another build is writing it (it holds {path.name}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_leftovers(out: Path) -> None:
    """Hidden folders of earlier runs into `out`; only call it while holding `exclusive(out)`."""
    for pattern in (f".{out.name}.partial-*", f".{out.name}.old-*"):
        for leftover in out.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def staged(out: Path, *, replace: bool) -> Iterator[Path]:
    """A hidden folder beside `out`, moved to `out` when the block succeeds and removed when
    it fails. With `replace=False` an existing `out` is refused before anything is written."""
    out = Path(out)
    if not replace and out.exists():
        raise ValueError(f"{out}: already exists; choose a new --out (an export never overwrites)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def move_into_place(staging: Path, out: Path) -> None:
    """Make the finished hidden `staging` folder `out`, replacing an older `out` whole."""
    # mkdtemp makes the folder private; the result is an ordinary folder.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())

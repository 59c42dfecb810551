"""Output folders that appear whole or not at all, and one writer per folder at a time.

A folder is written beside its final place under a hidden name (`.NAME.partial-*`) and
renamed into place only when everything succeeded; a replaced folder is first moved
aside (`.NAME.old-*`), so `out` is always the previous complete result or the new one.
Hidden folders left by a killed run are removed by the next run that holds the lock.

The lock (an flock on `.NAME.lock`) dies with the process that took it: forked workers
give up their copy of it and are killed with their parent (see `processes`). An OS error
while writing (disk full, read-only or denied folder) becomes one `OutputError` that names
the folder and the cause, after the partial output is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import multiprocessing.pool
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import multiprocess.pool

from covid_chestxray_seg import BuildError, setting
from covid_chestxray_seg_tools import processes
from covid_chestxray_seg_tools.errors import CovidSegError, exception_chain

__all__ = [
    "BusyError",
    "ExistsError",
    "OutputError",
    "exclusive",
    "folder_bytes",
    "lock_path",
    "move_into_place",
    "staged",
    "write_failure",
]

# OS errors that only writing causes: whatever file they name (or none, as pyarrow's), the
# output's disk or folder refuses the output.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
# Errors that reading an input can cause too: the output's only when they name its files.
_DENIED_ERRNOS = (errno.EACCES, errno.EPERM)
# An error raised in a pool worker reaches this process as its type and message, with the
# worker's traceback (its causes included) as text in a RemoteTraceback.
# typeshed's multiprocessing.pool declares no RemoteTraceback (as of mypy 2.4), which the module defines.
_REMOTE_TRACEBACKS = (multiprocess.pool.RemoteTraceback, multiprocessing.pool.RemoteTraceback)  # type: ignore[attr-defined]
_REMOTE_ERRNO = re.compile(r"^[\w.]*(?:Error|Exception): \[Errno (\d+)\]", re.MULTILINE)


class OutputError(CovidSegError, OSError):
    """The output folder cannot be written; the message names it, the cause and what was kept."""


class BusyError(CovidSegError):
    """Another run holds the output folder's lock."""


class ExistsError(CovidSegError, ValueError):
    """An export's output folder exists already (an export never overwrites)."""


def lock_path(out: Path) -> Path:
    """The lock file beside `out` (`.NAME.lock`), which `exclusive` holds."""
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def exclusive(out: Path, *, what: str = "build") -> Iterator[None]:
    """Hold the lock beside `out` for the whole block: a second writer refuses at once.
    Children forked in the block do not hold it, so it ends with this process."""
    path = lock_path(out)
    with open(path, "a") as lock, processes.private_fd(lock.fileno()):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{out}: output folder: another {what} is writing it (it holds {path.name}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_leftovers(out: Path) -> None:
    """Hidden folders of earlier runs into `out`; only call it while holding `exclusive(out)`.
    A run killed (SIGKILL) between the two renames of `move_into_place` left the previous
    result moved aside and no `out`: that result is put back first."""
    if not out.exists():
        for old in sorted(out.parent.glob(f".{out.name}.old-*")):
            if (old / out.name).is_dir():
                os.replace(old / out.name, out)
                break
    for pattern in (f".{out.name}.partial-*", f".{out.name}.old-*"):
        for leftover in out.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def staged(out: Path, *, replace: bool) -> Iterator[Path]:
    """A hidden folder beside `out`, moved to `out` when the block succeeds and removed when
    it fails. With `replace=False` (an export) an existing `out` is refused before anything
    is written. The block holds `out`'s lock, after removing what killed runs left; worker
    processes it forks die with this process; an OS error while writing is an OutputError."""
    out = Path(out)
    what = "build" if replace else "export"
    existed = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(out, what=what), processes.bound_children():
            # Checked under the lock: an export that finished meanwhile is seen.
            if not replace and out.exists():
                raise ExistsError(
                    "already exists (an export never overwrites)",
                    file=out,
                    fix=f"choose a new {setting('out')}",
                )
            # Under the lock, hidden folders left by a killed run are nobody's.
            _remove_leftovers(out)
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
            try:
                yield staging
                move_into_place(staging, out)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except Exception as error:
        cause = write_failure(error, out=out)
        if cause is None or cause.errno is None:
            raise
        kept = (
            f"the previous {what} there is untouched and no partial output is left"
            if existed
            else "no partial output is left"
        )
        raise OutputError(f"{out}: cannot write the {what}: {os.strerror(cause.errno)}; {kept}") from None


def write_failure(error: BaseException, *, out: Path) -> OSError | None:
    """The OS error behind `error` (or behind what it wraps) that means `out` cannot be
    written, or None: bad input and errors about other files are not the output's."""
    for link in exception_chain(error):
        if isinstance(link, (BuildError, CovidSegError)):
            return None
        if isinstance(link, OSError):
            ours = link.filename is not None and _is_output_path(Path(os.fsdecode(link.filename)), out=out)
            if link.errno in _WRITE_ERRNOS and (link.filename is None or ours):
                return link
            if link.errno in _DENIED_ERRNOS and ours:
                return link
        if isinstance(link, _REMOTE_TRACEBACKS):
            # Only the errno survives as text; a full disk in a worker has no file name anyway.
            for match in _REMOTE_ERRNO.finditer(str(link)):
                if int(match.group(1)) in _WRITE_ERRNOS:
                    return OSError(int(match.group(1)), os.strerror(int(match.group(1))))
    return None


def _is_output_path(path: Path, *, out: Path) -> bool:
    """`out`, its lock, its hidden folders beside it, or anything inside those."""
    out = Path(os.path.abspath(out))
    path = Path(os.path.abspath(path))
    for candidate in (path, *path.parents):
        if candidate.parent == out.parent and (
            candidate.name == out.name or candidate.name.startswith(f".{out.name}.")
        ):
            return True
    return False


def move_into_place(staging: Path, out: Path) -> None:
    """Make the finished hidden `staging` folder `out`, replacing an older `out` whole."""
    # mkdtemp makes the folder private; the result is an ordinary folder.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        # Between the two renames there is no `out`: a stopping signal waits until both are
        # done, and a failed second rename puts the previous result back.
        try:
            with processes.signals_held():
                os.replace(out, old / out.name)
                try:
                    os.replace(staging, out)
                except BaseException:
                    os.replace(old / out.name, out)
                    raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def folder_bytes(folder: Path) -> int:
    """The size of every file under `folder`, in bytes."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())

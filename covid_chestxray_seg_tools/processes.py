"""Processes that end with the one that started them, and signals that stop a script cleanly.

`datasets` builds with a pool of forked worker processes (plus a manager process). A
forked child shares its parent's open files, the output folder's lock among them, and
keeps running when its parent is killed: without what follows, `kill -9` of a build (the
OOM killer, a closed terminal) leaves workers that hold the lock for good.

- A child forked while `private_fd(fd)` is active gives up its copy of `fd` (an flock is
  released only when every descriptor of its open file description is closed).
- A child forked while `bound_children()` is active asks the kernel to SIGKILL it when its
  parent dies (`PR_SET_PDEATHSIG`, Linux), exits at once if the parent died before that
  took effect, ignores SIGINT and takes SIGTERM / SIGHUP as the default (die at once): the
  parent handles Ctrl-C and terminates its pool, and a child must not print a traceback
  from the parent's handler.

`stopping_signals()` turns SIGTERM and SIGHUP into a `Terminated` exception in the main
thread, so that `finally` and `with` blocks remove partial output as they do for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from covid_chestxray_seg_tools.errors import exception_chain

__all__ = ["Terminated", "bound_children", "private_fd", "signal_behind", "signals_held", "stopping_signals"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Signals that stop a script with cleanup; the exit code is 128 + the signal number.
_STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread. A BaseException, like KeyboardInterrupt,
    so that a library's `except Exception` does not swallow it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


_guard = threading.Lock()
_bound = 0  # depth of bound_children() blocks; inherited by children, so grandchildren are bound too
_private_fds: dict[int, int] = {}  # fd -> how many private_fd() blocks hold it
_parent_pid = 0  # this process's pid, recorded just before each fork for the child to compare
_registered = False
_held = 0  # depth of signals_held() blocks
_deferred: list[int] = []  # stopping signals that arrived in a signals_held() block
_prctl = None  # libc's prctl; None where there is none (not Linux): children are then not killed with the parent


def _before_fork() -> None:
    global _parent_pid
    _parent_pid = os.getpid()


def _after_fork_in_child() -> None:
    for fd in list(_private_fds):
        _drop_fd(fd)
    if not _bound:
        return
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _parent_pid:
        # The parent died between the fork and the prctl: nobody would ever stop this child.
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _drop_fd(fd: int) -> None:
    # dup2 of /dev/null rather than close: the number stays valid, so the child's copy of
    # the file object (never closed in a worker, which leaves by os._exit) cannot later
    # close an unrelated file that reused the number.
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _register() -> None:
    global _registered, _prctl
    if _registered:
        return
    _registered = True
    try:
        # Looked up once here: the child should do as little as possible before prctl.
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        logger.debug("no prctl here: forked workers give up the lock but are not killed with their parent")
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def bound_children() -> Iterator[None]:
    """Children forked inside the block die with this process and leave Ctrl-C to it."""
    global _bound
    with _guard:
        _register()
        _bound += 1
    try:
        yield
    finally:
        with _guard:
            _bound -= 1


@contextlib.contextmanager
def private_fd(fd: int) -> Iterator[None]:
    """Children forked inside the block do not keep `fd` open."""
    with _guard:
        _register()
        _private_fds[fd] = _private_fds.get(fd, 0) + 1
    try:
        yield
    finally:
        with _guard:
            _private_fds[fd] -= 1
            if not _private_fds[fd]:
                del _private_fds[fd]


@contextlib.contextmanager
def stopping_signals() -> Iterator[None]:
    """In the block, SIGINT raises KeyboardInterrupt and SIGTERM / SIGHUP raise Terminated,
    once: a second signal while the first one's cleanup runs is logged and ignored, so the
    cleanup finishes. Outside the main thread, where Python cannot set handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if _held:
            _deferred.append(signum)
            return
        if stopping:
            logger.warning(f"{signal.Signals(signum).name} again: already stopping, removing partial output first")
            return
        stopping.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in _STOPPING_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP that arrive in the block take effect when it ends: for
    steps that must not be cut in two.

    Blocking them (`pthread_sigmask`) covers this thread only: the kernel hands a signal to
    any thread that does not block it (datasets, pyarrow and tqdm start threads), and Python
    then runs the handler in the main thread anyway. So `stopping_signals`' handler also
    defers the signal while a block is open, and the block raises it again at its end."""
    global _held
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING_SIGNALS)
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if not _held and _deferred:
            signum = _deferred.pop(0)
            _deferred.clear()
            signal.raise_signal(signum)


def signal_behind(error: BaseException | None) -> int | None:
    """The signal behind `error` (SIGINT for KeyboardInterrupt), also when cleanup code raised
    another error while it unwound; None when `error` is not an interruption."""
    for link in exception_chain(error):
        if isinstance(link, KeyboardInterrupt):
            return signal.SIGINT
        if isinstance(link, Terminated):
            return link.signum
    return None

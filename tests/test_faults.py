"""OS faults while writing: a full disk, a read-only folder, a folder the user may not write.

Each gives one `error:` line naming the folder and the cause, exit code 1, no traceback, the
previous output untouched and no partial output. The disks are small tmpfs mounts (root
only; the tests skip with the reason where mounting is not allowed), so they really run
out of space. Also here: how forked workers are bound to the process that holds the lock,
and how the scripts' error boundary words an interruption.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import multiprocess
import pytest
from datasets.exceptions import DatasetGenerationError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import processes, staging
from covid_chestxray_seg_tools.cli import boundary
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.errors import exception_chain
from tests.helpers import FIXTURE_ARGS, REPO, big_args, names, tree

BUILD_OPTIONS = [*FIXTURE_ARGS, "--allow-modified", "--quiet", "--num-proc", "2"]
PR_GET_PDEATHSIG = 2  # <linux/prctl.h>


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a new tmpfs of that size under tmp_path; every mount is undone afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
            )
        except FileNotFoundError:
            pytest.skip("no mount command here: cannot make a small disk")
        if result.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not allowed here (it needs root): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            # Still busy (a failed test's open file): detach it now, it goes when released.
            subprocess.run(["umount", "--lazy", str(point)], check=True)


def fill(disk: Path, *, leave: int) -> None:
    """Take all the free space of `disk` but `leave` bytes, in one file named filler."""
    stats = os.statvfs(disk)
    with open(disk / "filler", "wb") as filler:
        filler.write(b"\1" * (stats.f_bavail * stats.f_frsize - leave))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("error:", "interrupted"))]


def test_a_full_disk_is_one_message_and_keeps_the_previous_build(small_disk, capsys):
    disk = small_disk("16m")
    out = disk / "out"
    assert covid_seg(["build", *BUILD_OPTIONS, "--out", str(out)]) == 0
    previous = tree(out)
    fill(disk, leave=400_000)  # room to start the next build, not to finish it
    capsys.readouterr()

    assert covid_seg(["build", *BUILD_OPTIONS, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"error: {out}: cannot write the build: No space left on device; "
        "the previous build there is untouched and no partial output is left"
    ]
    assert "Traceback" not in err
    assert tree(out) == previous
    assert names(disk) == [".out.lock", "filler", "out"]


def test_a_full_disk_in_the_build_workers_is_the_same_message(small_disk, big_data, capsys):
    disk = small_disk("1m")  # the workers' first Arrow shards already do not fit
    out = disk / "out"
    assert covid_seg(["build", *big_args(big_data), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"error: {out}: cannot write the build: No space left on device; no partial output is left"
    ]
    assert "Traceback" not in err
    assert names(disk) == [".out.lock"]


def test_a_read_only_folder_is_one_message_and_keeps_the_previous_build(small_disk, capsys):
    disk = small_disk("16m")
    out = disk / "out"
    assert covid_seg(["build", *BUILD_OPTIONS, "--out", str(out)]) == 0
    previous = tree(out)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"remounting read-only is not allowed here: {remount.stderr.strip()}")
    capsys.readouterr()

    assert covid_seg(["build", *BUILD_OPTIONS, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"error: {out}: cannot write the build: Read-only file system; "
        "the previous build there is untouched and no partial output is left"
    ]
    assert "Traceback" not in err
    assert tree(out) == previous
    assert names(disk) == [".out.lock", "out"]


@pytest.mark.slow
def test_a_folder_the_user_may_not_write_is_one_message_and_keeps_the_previous_build(fixture_build, tmp_path):
    parent = tmp_path / "denied"
    out = parent / "out"
    shutil.copytree(fixture_build, out)
    command = [sys.executable, str(REPO / "scripts" / "build.py"), *BUILD_OPTIONS, "--out", str(out)]
    if os.geteuid() == 0:
        # Permission bits do not stop root: the build runs as root without the capabilities that override them.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("as root, this test needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    parent.chmod(0o555)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        parent.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert error_lines(result.stderr) == [
        f"error: {out}: cannot write the build: Permission denied; "
        "the previous build there is untouched and no partial output is left"
    ]
    assert "Traceback" not in result.stderr
    assert tree(out) == tree(fixture_build)
    assert names(parent) == ["out"]


@pytest.mark.parametrize(
    ("fault", "cause"), [("full", "No space left on device"), ("read-only", "Read-only file system")]
)
def test_an_export_to_a_full_or_read_only_disk_is_one_message_and_leaves_nothing(
    small_disk, fixture_build, capsys, fault, cause
):
    disk = small_disk("8m")
    if fault == "full":
        fill(disk, leave=100_000)  # less than the fixture's images
    else:
        remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"remounting read-only is not allowed here: {remount.stderr.strip()}")
    out = disk / "out"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "coco", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [f"error: {out}: cannot write the export: {cause}; no partial output is left"]
    assert "Traceback" not in err
    assert names(disk) == ([".out.lock", "filler"] if fault == "full" else [])


def test_an_os_error_on_an_output_file_names_the_folder_and_the_cause(tmp_path):
    out = tmp_path / "out"
    with (
        pytest.raises(
            staging.OutputError,
            match=re.escape(f"{out}: cannot write the export: Permission denied; no partial output is left"),
        ),
        staging.staged(out, replace=False) as folder,
    ):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder / "images" / "a.jpg"))
    assert names(tmp_path) == [".out.lock"]


def test_an_os_error_on_an_input_file_is_left_as_it_is(tmp_path):
    # Reading the data can be denied too: that error names its own file.
    with (
        pytest.raises(PermissionError, match=re.escape("[Errno 13] Permission denied: '/data/images/a.jpg'")),
        staging.staged(tmp_path / "out", replace=True),
    ):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/images/a.jpg")
    assert names(tmp_path) == [".out.lock"]


def test_a_full_disk_in_a_worker_process_is_recognised_from_what_reaches_the_parent(tmp_path):
    def write_shard():
        # What datasets does in a worker when its Arrow writer fails.
        try:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        except OSError as error:
            raise DatasetGenerationError("An error occurred while generating the dataset") from error

    out = tmp_path / "out"
    with (
        pytest.raises(
            staging.OutputError,
            match=re.escape(f"{out}: cannot write the build: No space left on device; no partial output is left"),
        ),
        staging.staged(out, replace=True),
        multiprocess.Pool(1) as pool,
    ):
        pool.apply(write_shard)  # the error arrives without its cause; the worker's traceback is text


def test_a_forked_child_gives_up_the_lock_and_is_bound_to_its_parent(tmp_path):
    out = tmp_path / "out"
    lock = str(staging.lock_path(out))

    def fork_and_report(fd: int | None) -> str:
        """What a child forked now sees: its copy of `fd`, its parent-death signal, its SIGINT."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave at once, running none of pytest's cleanup
            try:
                deathsig = ctypes.c_int()
                ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(deathsig), 0, 0, 0)
                held = os.readlink(f"/proc/self/fd/{fd}") if fd is not None else "-"
                ignores_sigint = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
                os.write(write, f"{held} {deathsig.value} {ignores_sigint}".encode())
            finally:
                os._exit(0)
        os.close(write)
        report = os.read(read, 1000).decode()
        os.close(read)
        os.waitpid(pid, 0)
        return report

    # What this process started with: a shell ignores SIGINT in a job it starts with `&`
    # (`nohup pytest &`), and a child inherits that, bound or not.
    inherited = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    with staging.exclusive(out):
        (fd,) = [int(name) for name in os.listdir("/proc/self/fd") if _link(f"/proc/self/fd/{name}") == lock]
        assert fork_and_report(fd) == f"/dev/null 0 {inherited}"  # the lock alone: never in a child
        with processes.bound_children():  # as in staging.staged, around a build or an export
            assert fork_and_report(fd) == f"/dev/null {int(signal.SIGKILL)} True"
    assert fork_and_report(None) == f"- 0 {inherited}"  # outside, a fork is left alone


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # the descriptor listdir itself used, closed meanwhile
        return None


def test_an_interruption_is_one_line_even_when_cleanup_raised_another_error(capsys):
    def interrupted_pool():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            # What multiprocessing's pool raises while it unwinds after Ctrl-C.
            raise multiprocess.TimeoutError  # noqa: B904 - the pool's error carries the interrupt only as __context__

    def terminated():
        raise processes.Terminated(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    assert boundary.run(interrupted_pool) == 130
    assert (
        capsys.readouterr().err
        == "interrupted by SIGINT (Ctrl-C): stopped before finishing; no partial output is left\n"
    )
    assert boundary.run(terminated) == 143
    assert capsys.readouterr().err == "interrupted by SIGTERM: stopped before finishing; no partial output is left\n"
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the script's only while it works


def _previous(out: Path) -> None:
    out.mkdir()
    (out / "README.md").write_text("previous build\n")


def test_a_stopping_signal_during_the_swap_waits_until_out_is_the_new_build(tmp_path, monkeypatch):
    out = tmp_path / "build"
    _previous(out)
    rename = os.replace

    # A second thread, as datasets and pyarrow start: the kernel may hand it a signal that
    # the main thread blocks, and Python still runs the handler in the main thread.
    done = threading.Event()
    waiting = threading.Thread(target=done.wait)
    waiting.start()

    def signalled_rename(source, target):
        # SIGTERM right after the previous build is moved aside, the worst moment, to the other thread.
        rename(source, target)
        if Path(target).name == out.name and ".old-" in str(target):
            signal.pthread_kill(waiting.ident, signal.SIGTERM)
            time.sleep(0.2)  # time for that thread's C handler to flag it for the main thread

    monkeypatch.setattr(os, "replace", signalled_rename)
    try:
        with (
            processes.stopping_signals(),
            pytest.raises(processes.Terminated, match="stopped by SIGTERM"),
            staging.staged(out, replace=True) as folder,
        ):
            (folder / "README.md").write_text("new build\n")
    finally:
        done.set()
        waiting.join()
    assert (out / "README.md").read_text() == "new build\n"
    assert names(tmp_path) == [".build.lock", "build"]


def test_a_build_killed_between_the_two_renames_gets_its_previous_result_back(tmp_path):
    # What SIGKILL after the first rename of move_into_place leaves: the previous build aside, no `out`.
    out = tmp_path / "build"
    aside = tmp_path / ".build.old-x1y2"
    aside.mkdir()
    _previous(aside / out.name)
    with pytest.raises(ValueError, match="bad input"), staging.staged(out, replace=True):
        raise ValueError("bad input")
    assert (out / "README.md").read_text() == "previous build\n"
    assert names(tmp_path) == [".build.lock", "build"]


def test_a_failed_second_rename_puts_the_previous_build_back(tmp_path, monkeypatch):
    out = tmp_path / "build"
    _previous(out)
    rename = os.replace

    def refused_rename(source, target):
        if ".partial-" in str(source):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))
        rename(source, target)

    monkeypatch.setattr(os, "replace", refused_rename)
    with (
        pytest.raises(
            staging.OutputError,
            match=r"build: cannot write the build: Permission denied; the previous build there is untouched",
        ),
        staging.staged(out, replace=True) as folder,
    ):
        (folder / "README.md").write_text("new build\n")
    assert (out / "README.md").read_text() == "previous build\n"
    assert names(tmp_path) == [".build.lock", "build"]


def test_no_error_line_prints_a_hub_token_even_where_the_script_names_no_secret(capsys):
    def leaky():
        raise recipe.BuildError("https://user:hf_abcdefghijklmnop@example.org/archive.zip", "download", "failed")

    assert boundary.run(leaky) == 1
    assert capsys.readouterr().err == "error: https://user:hf_***@example.org/archive.zip: download: failed\n"


def test_a_bug_keeps_its_traceback_and_debug_shows_every_traceback(monkeypatch, capsys):
    def buggy():
        raise ValueError("a bug in our own code")

    # Not an error the package raises on purpose: it propagates (the interpreter prints its traceback).
    with pytest.raises(ValueError, match="a bug in our own code"):
        boundary.run(buggy)

    def refused():
        raise staging.BusyError("out: output folder: another build is writing it")

    monkeypatch.setenv(boundary.DEBUG_VARIABLE, "1")
    assert boundary.run(refused) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in refused" in err
    assert err.endswith("error: out: output folder: another build is writing it\n")


def test_an_error_chain_that_loops_back_ends():
    first, second = ValueError("first"), OSError("second")
    first.__cause__, second.__context__ = second, first
    assert list(exception_chain(first)) == [first, second]
    assert processes.signal_behind(first) is None
    assert staging.write_failure(first, out=Path("out")) is None

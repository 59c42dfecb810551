"""Killed, interrupted and concurrent runs of the scripts: never a partial or mixed output, no
process left behind, no lock that blocks the next run, and the next run just works.

Signals go to the script's main process only (what the OOM killer, `kill` or a supervisor
does), except where a test sends Ctrl-C to the whole process group as a terminal does. The
HOLD driver runs a script unchanged but stops it at a known point, so that the signal lands
while the build's worker processes run or just before the output is moved into place.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import FIXTURE_ARGS, FIXTURE_BUILD_OPTIONS, REPO, big_args, names, tree

# Each test runs the command in subprocesses (and most wait for signals): seconds each.
# test_faults.py covers the same modules in-process for the fast loop.
pytestmark = pytest.mark.slow

BUILD = [sys.executable, str(REPO / "scripts" / "build.py"), *FIXTURE_ARGS, "--allow-modified", "--quiet"]
REPO_ID = "org/covid-chestxray-seg"
# In the environment of every process a test starts (forked children inherit it): finds them
# all in /proc, orphans included.
MARKER = "COVID_SEG_TEST_RUN"
SECONDS = 10  # a stopped script and its workers are gone well within this

HOLD = """
import os, runpy, sys, time
from pathlib import Path

hold, signals, script = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if hold == "workers":
    # Each of the build's worker processes yields one record, says so, and waits.
    import covid_chestxray_seg as recipe

    generate = recipe.CovidChestXraySeg._generate_examples

    def held(self, *args, **kwargs):
        for item in generate(self, *args, **kwargs):
            yield item
            (signals / f"worker-{os.getpid()}").touch()
            time.sleep(3600)

    recipe.CovidChestXraySeg._generate_examples = held
elif hold == "move":
    # Everything is written in the hidden folder; wait just before it would be moved into place.
    from covid_chestxray_seg_tools import staging

    def held(folder, out):
        (signals / f"ready-{os.getpid()}").touch()
        time.sleep(3600)

    staging.move_into_place = held
# hold == "none": the script runs as it is.
sys.argv = sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def processes_with(marker: str) -> list[int]:
    """Live processes (zombies excluded) whose environment holds `marker`."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # it ended while we looked
            continue
        if needle in environ and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(condition, *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {seconds} s: {what}")
        time.sleep(0.05)


class Run:
    """A script started through HOLD, its output in files (a pipe nobody reads could block it)."""

    def __init__(self, hold: str, script: str, args: list[str], *, folder: Path, new_session: bool = False):
        self.marker = uuid.uuid4().hex
        self.signals = folder / f"signals-{self.marker}"
        self.signals.mkdir()
        self.stderr_path = folder / f"stderr-{self.marker}"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", HOLD, hold, str(self.signals), str(REPO / "scripts" / script), *args],
                cwd=REPO,
                env={**os.environ, MARKER: self.marker},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=new_session,
            )

    def held(self, prefix: str, count: int) -> None:
        wait_for(
            lambda: len(list(self.signals.glob(f"{prefix}-*"))) >= count or self.process.poll() is not None,
            seconds=60,
            what=f"{count} {prefix} signal(s) from the held run",
        )
        assert self.process.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture
def runs(tmp_path):
    """Start held scripts; whatever a failing test leaves running is killed afterwards."""
    folder = tmp_path / "runs"
    folder.mkdir()
    started: list[Run] = []

    def start(hold: str, script: str, *args: str, new_session: bool = False) -> Run:
        started.append(Run(hold, script, list(args), folder=folder, new_session=new_session))
        return started[-1]

    yield start
    for run in started:
        for pid in processes_with(run.marker):
            os.kill(pid, signal.SIGKILL)
        if run.process.poll() is None:
            run.process.kill()
        run.process.wait(timeout=SECONDS)


@pytest.fixture(scope="module")
def big_build(tmp_path_factory, big_data) -> Path:
    out = tmp_path_factory.mktemp("fixture-x4-build") / "out"
    assert covid_seg(["build", *big_args(big_data), "--out", str(out)]) == 0
    return out


def test_a_killed_build_ends_its_workers_and_the_next_build_is_identical(runs, big_data, big_build, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    run = runs("workers", "build.py", *big_args(big_data), "--out", str(out))
    run.held("worker", 2)
    workers = set(processes_with(run.marker)) - {run.process.pid}
    assert len(workers) >= 2  # the pool's workers (and datasets' manager process)

    os.kill(run.process.pid, signal.SIGKILL)  # the main process only
    assert run.process.wait(timeout=SECONDS) == -signal.SIGKILL
    wait_for(lambda: not processes_with(run.marker), seconds=5, what="a worker of the killed build is still running")
    assert not out.exists()  # a partial folder is never where a finished one would be
    assert [name.split("-")[0] for name in names(work)] == [
        ".out.lock",
        ".out.partial",
        ".out.partial",
    ]  # folder + its cache
    with staging.exclusive(out):  # nobody holds the lock any more
        pass

    assert covid_seg(["build", *big_args(big_data), "--out", str(out)]) == 0
    assert tree(out) == tree(big_build)
    assert names(work) == [".out.lock", "out"]  # the killed build's hidden folders are gone


@pytest.mark.parametrize(
    ("signum", "group", "line"),
    [
        (signal.SIGINT, False, "interrupted by SIGINT (Ctrl-C): stopped before finishing; no partial output is left"),
        (signal.SIGINT, True, "interrupted by SIGINT (Ctrl-C): stopped before finishing; no partial output is left"),
        (signal.SIGTERM, False, "interrupted by SIGTERM: stopped before finishing; no partial output is left"),
        (signal.SIGHUP, False, "interrupted by SIGHUP: stopped before finishing; no partial output is left"),
    ],
    ids=["SIGINT", "Ctrl-C to the process group", "SIGTERM", "SIGHUP"],
)
def test_an_interrupted_build_stops_at_once_and_keeps_the_previous_build(
    runs, big_data, big_build, tmp_path, signum, group, line
):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    shutil.copytree(big_build, out)
    run = runs("workers", "build.py", *big_args(big_data), "--out", str(out), new_session=group)
    run.held("worker", 2)

    started = time.monotonic()
    if group:
        os.killpg(run.process.pid, signum)  # what a terminal does: the workers get it too
    else:
        os.kill(run.process.pid, signum)
    assert run.process.wait(timeout=SECONDS) == 128 + signum
    assert time.monotonic() - started < 5
    wait_for(
        lambda: not processes_with(run.marker), seconds=5, what="a worker of the interrupted build is still running"
    )
    err = run.stderr()
    assert [entry for entry in err.splitlines() if entry.startswith(("interrupted", "error"))] == [line]
    assert "Traceback" not in err
    assert tree(out) == tree(big_build)
    assert names(work) == [".out.lock", "out"]


@pytest.fixture(scope="module")
def clean_export(tmp_path_factory, fixture_build) -> Path:
    out = tmp_path_factory.mktemp("clean-export") / "out"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "coco", "--out", str(out)]) == 0
    return out


def test_a_killed_export_leaves_no_output_and_the_next_one_is_identical(runs, fixture_build, clean_export, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    run = runs("move", "export.py", "--source", str(fixture_build), "--format", "coco", "--out", str(out))
    run.held("ready", 1)

    os.kill(run.process.pid, signal.SIGKILL)
    assert run.process.wait(timeout=SECONDS) == -signal.SIGKILL
    assert processes_with(run.marker) == []
    assert not out.exists()
    assert [name.split("-")[0] for name in names(work)] == [".out.lock", ".out.partial"]

    assert covid_seg(["export", "--source", str(fixture_build), "--format", "coco", "--out", str(out)]) == 0
    assert tree(out) == tree(clean_export)
    assert names(work) == [".out.lock", "out"]


@pytest.mark.parametrize(
    ("signum", "line"),
    [
        (signal.SIGINT, "interrupted by SIGINT (Ctrl-C): stopped before finishing; no partial output is left"),
        (signal.SIGTERM, "interrupted by SIGTERM: stopped before finishing; no partial output is left"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_an_interrupted_export_leaves_nothing(runs, fixture_build, tmp_path, signum, line):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    run = runs("move", "export.py", "--source", str(fixture_build), "--format", "coco", "--out", str(out))
    run.held("ready", 1)

    os.kill(run.process.pid, signum)
    assert run.process.wait(timeout=SECONDS) == 128 + signum
    assert processes_with(run.marker) == []
    err = run.stderr()
    assert [entry for entry in err.splitlines() if entry.startswith(("interrupted", "error"))] == [line]
    assert "Traceback" not in err
    assert names(work) == [".out.lock"]


def test_a_publish_killed_mid_upload_commits_nothing_and_a_rerun_makes_one_commit(runs, hub, token, fixture_build):
    uploading, release = threading.Event(), threading.Event()

    def hold_upload(state):
        # Runs in the server's request thread: the first upload hangs until the test lets go.
        uploading.set()
        release.wait(SECONDS * 3)

    hub.state.before("PUT", r"^/lfs-upload/", hold_upload)
    run = runs("none", "publish.py", "--repo-id", REPO_ID, "--source", str(fixture_build), "--no-verify")
    try:
        assert uploading.wait(60), run.stderr()
        os.kill(run.process.pid, signal.SIGKILL)
        assert run.process.wait(timeout=SECONDS) == -signal.SIGKILL
    finally:
        release.set()
    assert processes_with(run.marker) == []
    assert [c.parent for c in hub.state.commits(REPO_ID)] == [None]  # the repo exists, with its initial commit only

    # Verified: every remote file equals what publish sends (size and SHA-256), and the data loads back.
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build)]) == 0
    assert len([c for c in hub.state.commits(REPO_ID) if c.parent is not None]) == 1
    local = [p.relative_to(fixture_build).as_posix() for p in fixture_build.rglob("*") if p.is_file()]
    assert sorted(hub.state.files(REPO_ID)) == sorted([".gitattributes", *local])


def test_concurrent_builds_into_one_folder_never_mix(tmp_path, fixture_build):
    out = tmp_path / "out"
    # The session's fixture build's options, so that the winner's folder is that build, byte for byte.
    command = [sys.executable, str(REPO / "scripts" / "build.py"), *FIXTURE_ARGS, *FIXTURE_BUILD_OPTIONS]
    processes = [
        subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for code, err in results:
        assert code == 0 or "another build is writing it (it holds .out.lock); wait for it to finish" in err, err
    assert any(code == 0 for code, _ in results)
    assert tree(out) == tree(fixture_build)


def test_a_second_build_refuses_while_the_first_holds_the_lock(tmp_path, capsys):
    out = tmp_path / "out"
    with staging.exclusive(out.resolve()):
        code = covid_seg(["build", *FIXTURE_ARGS, "--allow-modified", "--quiet", "--out", str(out)])
    assert code == 1
    assert (
        "out: output folder: another build is writing it (it holds .out.lock); wait for it to finish"
        in capsys.readouterr().err
    )
    assert not out.exists()


def test_a_terminated_benchmark_ends_the_build_it_measures_and_removes_its_work(runs, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where the benchmark makes its work folder
    run = runs("none", "benchmark.py", *FIXTURE_ARGS, "--smoke", "--scale", "1")
    # A measured task runs in a subprocess of its own (and the build there forks workers).
    wait_for(
        lambda: len(processes_with(run.marker)) >= 2 or run.process.poll() is not None,
        seconds=60,
        what="a measured subprocess",
    )
    assert run.process.poll() is None, run.stderr()
    os.kill(run.process.pid, signal.SIGTERM)
    assert run.process.wait(timeout=SECONDS) == 128 + signal.SIGTERM
    wait_for(
        lambda: not processes_with(run.marker), seconds=5, what="a process of the terminated benchmark is still running"
    )
    assert [line for line in run.stderr().splitlines() if line.startswith(("interrupted", "error"))] == [
        "interrupted by SIGTERM: stopped before finishing; no partial output is left"
    ]
    assert list(temp.iterdir()) == []

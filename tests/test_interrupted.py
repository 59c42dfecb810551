"""Killed and concurrent builds: never a partial or mixed output, and the next run just works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import FIXTURE_DIR, REPO
from covid_chestxray_seg_tools import staging
from scripts import build

BUILD = [sys.executable, str(REPO / "scripts" / "build.py"), "--data-dir", str(FIXTURE_DIR), "--allow-modified", "--quiet"]


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_killed_build_leaves_no_output_and_the_next_one_is_identical(tmp_path, fixture_build):
    out = tmp_path / "out"
    process = subprocess.Popen([*BUILD, "--out", str(out)], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # Kill it (and its worker processes) once it has started writing its hidden folder.
    while not list(tmp_path.glob(".out.partial-*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the build finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists()  # a partial folder is never where a finished one would be
    assert list(tmp_path.glob(".out.partial-*"))  # ... it stays hidden until the next run

    assert build.main(["--data-dir", str(FIXTURE_DIR), "--allow-modified", "--quiet", "--out", str(out), "--num-proc", "2"]) == 0
    assert tree(out) == tree(fixture_build)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # leftovers cleaned


def test_concurrent_builds_into_one_folder_never_mix(tmp_path, fixture_build):
    out = tmp_path / "out"
    processes = [
        subprocess.Popen([*BUILD, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for code, err in results:
        assert code == 0 or "another build is writing it (it holds .out.lock); wait for it to finish" in err, err
    assert any(code == 0 for code, _ in results)
    assert tree(out) == tree(fixture_build)


def test_a_second_build_refuses_while_the_first_holds_the_lock(tmp_path, capsys):
    out = tmp_path / "out"
    with staging.exclusive(out.resolve()):
        code = build.main(["--data-dir", str(FIXTURE_DIR), "--allow-modified", "--quiet", "--out", str(out)])
    assert code == 1
    assert "out: output folder: another build is writing it (it holds .out.lock); wait for it to finish" in capsys.readouterr().err
    assert not out.exists()

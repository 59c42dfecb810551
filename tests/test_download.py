"""The default source: the upstream archive through the datasets download manager, served from 127.0.0.1."""

from __future__ import annotations

import re
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import datasets
import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import FIXTURE_DIR, FIXTURE_SEVERITY, parquet_rows


@pytest.fixture
def archive_server(tmp_path, monkeypatch):
    """A zip laid out like GitHub's archive of the upstream commit, served on a free local port."""
    root = tmp_path / "served"
    root.mkdir()
    top = f"covid-19-chest-xray-segmentations-dataset-{recipe.UPSTREAM_COMMIT}"
    with zipfile.ZipFile(root / "archive.zip", "w") as archive:
        for path in sorted(FIXTURE_DIR.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(FIXTURE_DIR).as_posix()}")
    requests: list[str] = []
    faults: list[int] = []  # statuses to answer the next GETs with

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            if faults:
                self.send_error(faults.pop(0))
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll so that shutdown() at teardown returns at once instead of after 0.5 s.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "downloads")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/archive.zip", requests, faults, root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_build_without_data_dir_downloads_the_archive_once(archive_server, tmp_path):
    url, requests, _, _ = archive_server
    for name in ("first", "second"):
        out = tmp_path / name
        assert (
            covid_seg(
                [
                    "build",
                    "--data-url",
                    url,
                    "--severity-file",
                    str(FIXTURE_SEVERITY),
                    "--out",
                    str(out),
                    "--allow-modified",
                    "--quiet",
                ]
            )
            == 0
        )
        loaded = datasets.load_dataset(str(out))
        assert sum(len(split) for split in loaded.values()) == 3
    # The second build reads the archive from the download cache.
    assert [path for path in requests if path.endswith(".zip")] == ["/archive.zip"]
    assert (tmp_path / "first" / "README.md").read_bytes() == (tmp_path / "second" / "README.md").read_bytes()


def test_the_default_url_is_the_pinned_upstream_archive():
    config = recipe.CovidChestXraySeg(data_dir=None).config
    assert config.data_url == (
        "https://github.com/GeneralBlockchain/covid-19-chest-xray-segmentations-dataset/archive/"
        "377a49490e910a66a7f7aee1b92cdc3d5ac4bddf.zip"
    )


def test_an_archive_without_one_top_folder_is_refused(archive_server, tmp_path, capsys):
    url, _, _, served = archive_server
    with zipfile.ZipFile(served / "flat.zip", "w") as archive:
        archive.writestr("a/x.txt", "1")
        archive.writestr("b/y.txt", "2")
    code = covid_seg(
        [
            "build",
            "--data-url",
            url.replace("archive.zip", "flat.zip"),
            "--severity-file",
            str(FIXTURE_SEVERITY),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 1
    assert "flat.zip: archive: expected one top-level folder, found 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def build_from(url: str, out, *extra: str) -> int:
    return covid_seg(
        ["build", "--data-url", url, "--severity-file", str(FIXTURE_SEVERITY), "--out", str(out), "--quiet", *extra]
    )


@pytest.mark.slow
def test_a_truncated_archive_is_a_clear_error_and_the_next_good_run_works(archive_server, tmp_path, capsys):
    url, _, _, served = archive_server
    good = (served / "archive.zip").read_bytes()
    (served / "archive.zip").write_bytes(good[: len(good) // 2])
    assert build_from(url, tmp_path / "out", "--allow-modified") == 1
    err = capsys.readouterr().err
    assert re.search(
        r"archive\.zip: archive: (cannot be extracted|is not a zip or tar archive).*removed from the cache", err
    ), err
    assert not (tmp_path / "out").exists()
    (served / "archive.zip").write_bytes(good)
    assert build_from(url, tmp_path / "out", "--allow-modified") == 0  # no manual cache cleaning
    assert (tmp_path / "out" / "README.md").is_file()


@pytest.mark.slow
def test_a_wrong_archive_fails_the_manifest_check_and_is_not_kept(archive_server, tmp_path, capsys):
    url, requests, _, _ = archive_server
    # The fixture's metadata.csv is cut down: without --allow-modified the manifest refuses it.
    assert build_from(url, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "metadata.csv: has 1395 bytes, upstream 495738" in err and "removed from the cache" in err
    assert build_from(url, tmp_path / "out", "--allow-modified") == 0
    assert len([p for p in requests if p.endswith(".zip")]) == 2  # downloaded again, not reused


@pytest.mark.slow
def test_a_server_error_during_download_is_clear_and_the_retry_works(archive_server, tmp_path, capsys):
    url, _, faults, _ = archive_server
    faults.extend([500] * 10)  # more than any client retries
    assert build_from(url, tmp_path / "out", "--allow-modified") == 1
    err = capsys.readouterr().err
    assert re.search(r"archive\.zip: download: failed: ", err), err
    assert "Traceback" not in err
    faults.clear()
    assert build_from(url, tmp_path / "out", "--allow-modified") == 0


@pytest.mark.slow
def test_without_severity_file_the_build_downloads_it_once(archive_server, tmp_path):
    url, requests, _, root = archive_server
    (root / "covid-severity-scores.csv").write_bytes(FIXTURE_SEVERITY.read_bytes())
    severity_url = url.replace("archive.zip", "covid-severity-scores.csv")
    for name in ("first", "second"):
        out = tmp_path / name
        code = covid_seg(
            [
                "build",
                "--data-dir",
                str(FIXTURE_DIR),
                "--severity-url",
                severity_url,
                "--out",
                str(out),
                "--allow-modified",
                "--quiet",
            ]
        )
        assert code == 0
        rows = {
            row["file_name"]: row["severity_geographic_extent"]
            for row in parquet_rows(out, columns=["file_name", "severity_geographic_extent"])
        }
        assert rows["ARDSSevere.png"] == 4.3
    # Cached by the datasets download manager: the second build asks only whether it changed.
    assert [path for path in requests if path.endswith(".csv")] == ["/covid-severity-scores.csv"]


def test_a_severity_download_that_fails_is_one_clear_message(archive_server, tmp_path, capsys):
    url, _, faults, _ = archive_server
    faults.append(404)
    severity_url = url.replace("archive.zip", "covid-severity-scores.csv")
    code = covid_seg(
        [
            "build",
            "--data-dir",
            str(FIXTURE_DIR),
            "--severity-url",
            severity_url,
            "--out",
            str(tmp_path / "out"),
            "--allow-modified",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {severity_url}: download: failed: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_host_says_the_network_failed_and_names_the_offline_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "downloads")
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/archive.zip"
    code = covid_seg(["build", "--data-url", url, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {url}: download: failed: ") and "Traceback" not in err
    assert "The network or the server failed" in err
    assert (
        "to build offline, give --data-dir <a copy of the upstream repository> and "
        "--severity-file <a copy of ieee8023's annotations/covid-severity-scores.csv>" in err
    )
    assert "data_dir=" not in err and not (tmp_path / "out").exists()


def test_the_builder_names_its_config_fields_for_the_offline_build():
    message = recipe.download_failure(FileNotFoundError("Couldn't reach http://example.invalid/a.zip"))
    assert message.startswith("failed: FileNotFoundError: Couldn't reach http://example.invalid/a.zip. The network")
    # Worded by whoever shows it: Python's config fields in str(BuildError), the command's options at its boundary.
    error = recipe.BuildError("http://example.invalid/a.zip", "download", message)
    assert "give data_dir=<a copy of the upstream repository> and severity_file=<" in str(error)

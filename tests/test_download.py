"""The default source: the upstream archive through the datasets download manager, served from 127.0.0.1."""

from __future__ import annotations

import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import datasets
import pytest

import covid_chestxray_seg as recipe
from conftest import FIXTURE_DIR
from scripts import build


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

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "downloads")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/archive.zip", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_build_without_data_dir_downloads_the_archive_once(archive_server, tmp_path):
    url, requests = archive_server
    for name in ("first", "second"):
        out = tmp_path / name
        assert build.main(["--data-url", url, "--out", str(out), "--allow-modified", "--quiet"]) == 0
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
    url, _ = archive_server
    served = tmp_path / "served"
    with zipfile.ZipFile(served / "flat.zip", "w") as archive:
        archive.writestr("a/x.txt", "1")
        archive.writestr("b/y.txt", "2")
    code = build.main(["--data-url", url.replace("archive.zip", "flat.zip"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    assert "flat.zip: archive: expected one top-level folder, found 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

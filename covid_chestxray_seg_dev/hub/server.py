"""A small, strict, in-memory Hugging Face Hub for tests, on 127.0.0.1.

It speaks the part of the Hub's HTTP API that `huggingface_hub` (uploads, with
HF_HUB_DISABLE_XET=1 so files go through the LFS protocol) and `datasets` (loading,
streaming) use, and rejects what the real Hub rejects: unknown repos, missing or
wrong tokens on writes, LFS uploads whose SHA-256 or size is wrong, commits that
reference LFS objects never uploaded, and commits on a stale parent. Every request
is logged (method, path, query, body, whether it was authorized) so tests can assert
on what was sent; `fail` injects server errors and rate limits.
"""

from __future__ import annotations

import os
import tempfile
import threading
from http.server import ThreadingHTTPServer

from covid_chestxray_seg_dev.hub.handler import make_handler
from covid_chestxray_seg_dev.hub.state import HubState

__all__ = ["HubServer", "use_local_hub"]


class HubServer:
    """The server on a free port of 127.0.0.1, serving in a daemon thread until `stop`."""

    def __init__(self, port: int = 0) -> None:
        self.state = HubState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.state))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hub-server", daemon=True)

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def use_local_hub(server: HubServer) -> str:
    """Point datasets and huggingface_hub at `server`, with a private Hugging Face home,
    and return that home. Call it before either library is imported: they read these once."""
    home = tempfile.mkdtemp(prefix="covid-chestxray-seg-tests-hf-")
    os.environ.update(
        {
            "HF_HOME": home,
            "HF_DATASETS_CACHE": os.path.join(home, "datasets"),
            "HF_ENDPOINT": server.url,
            # The Xet upload protocol cannot be served locally; uploads go through LFS.
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        }
    )
    # A token or offline switch from the caller's shell must not leak into the tests.
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.pop(name, None)
    return home

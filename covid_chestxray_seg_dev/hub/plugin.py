"""pytest plugin: every test session talks to a local Hub on 127.0.0.1, never the real one.

Loaded through `pytest_plugins` by both test suites, before their test modules import
`datasets` or `huggingface_hub` (which read the endpoint and home once, at import). It
starts the server, gives the session a private Hugging Face home, and provides the
`hub` (emptied for each test) and `token` fixtures.
"""

from __future__ import annotations

import shutil

import pytest

from covid_chestxray_seg_dev.hub.server import HubServer, use_local_hub
from covid_chestxray_seg_dev.hub.state import VALID_TOKEN

HUB = HubServer().start()
_HF_HOME = use_local_hub(HUB)


def pytest_sessionfinish(session, exitstatus):
    HUB.stop()
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture
def hub() -> HubServer:
    """The local Hub, emptied for each test."""
    HUB.state.reset()
    yield HUB
    HUB.state.reset()


@pytest.fixture
def token(monkeypatch) -> str:
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    return VALID_TOKEN

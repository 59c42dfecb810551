"""The strict local Hub the tests publish to (covid_chestxray_seg_dev/hub/): it refuses what the
real Hub refuses, so a test that passes against it did not lean on leniency."""

from __future__ import annotations

import httpx2

from covid_chestxray_seg_dev.hub.state import signature

REPO_ID = "org/covid-chestxray-seg"


def test_the_server_rejects_a_wrong_hash_and_an_unknown_repo(hub):
    hub.state.create_repo(REPO_ID)
    oid = "0" * 64
    bad = httpx2.put(f"{hub.url}/lfs-upload/{oid}?size=12&signature={signature(oid, 12)}", content=b"not matching")
    assert bad.status_code == 400 and "SHA-256" in bad.json()["error"]
    unsigned = httpx2.put(f"{hub.url}/lfs-upload/{oid}?size=12", content=b"not matching")
    assert unsigned.status_code == 403
    missing = httpx2.get(f"{hub.url}/api/datasets/org/nothing-here")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RepoNotFound"
    ranged = httpx2.get(f"{hub.url}/datasets/{REPO_ID}/resolve/main/.gitattributes", headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"*.pa" and ranged.headers["X-Repo-Commit"]

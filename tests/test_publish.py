"""covid-seg publish against the strict local Hub: one commit, idempotence, load and stream back, failures."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import datasets
import huggingface_hub
import pytest
from datasets.distributed import split_dataset_by_node

import covid_chestxray_seg as recipe
from covid_chestxray_seg_dev.hub.state import VALID_TOKEN
from covid_chestxray_seg_tools import publish as publishing
from covid_chestxray_seg_tools.card.companion import companion_repo_id, link_companion
from covid_chestxray_seg_tools.card.repo import card_for_repo
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.cli import publish as cli_publish
from covid_chestxray_seg_tools.hub_folder import checksums
from tests.helpers import FIXTURE_TOOLS_URL, parquet_rows

REPO_ID = "org/covid-chestxray-seg"
# The FiftyOne companion the published card names without --fiftyone, and the Hub's answer to
# whether it exists (repo_exists asks for the repo's info).
COMPANION = companion_repo_id(REPO_ID)
COMPANION_CHECKS = rf"^/api/datasets/{re.escape(COMPANION)}(/revision/.*)?$"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(publishing.hub, "COMMIT_RETRY_WAIT", 0.0)


def run(*args: str) -> int:
    return covid_seg(["publish", "--repo-id", REPO_ID, *args])


def posts(hub, path_regex: str = "") -> list:
    """POSTs that can change the Hub: validating the card changes nothing."""
    return [r for r in hub.state.requests("POST", path_regex) if r.path != "/api/validate-yaml"]


def new_commits(hub, repo_id: str = REPO_ID) -> list:
    return [c for c in hub.state.commits(repo_id) if c.parent is not None]


def undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """The same rows with image and mask bytes as stored, for byte-for-byte comparison."""
    features = dataset.features.copy()
    for column in ("image", *recipe.MASK_COLUMNS):
        features[column] = datasets.Image(decode=False)
    return dataset.cast(features)


def test_publish_commits_once_and_loads_back_identical(hub, token, fixture_build, capsys):
    assert run("--source", str(fixture_build)) == 0
    out = capsys.readouterr().out
    assert "plan for org/covid-chestxray-seg@main (new repo)" in out
    assert "loaded back: train 1 rows, validation 1 rows, test 1 rows" in out
    assert len(new_commits(hub)) == 1
    assert sorted(hub.state.files(REPO_ID)) == sorted(
        [".gitattributes"] + [p.relative_to(fixture_build).as_posix() for p in fixture_build.rglob("*") if p.is_file()]
    )
    # What was sent: no .py anywhere, never the token in a body, every write authorized.
    assert not [r for r in hub.state.log if ".py" in r.path and r.method in ("POST", "PUT")]
    assert all(b'.py"' not in r.body for r in hub.state.log)
    assert all(VALID_TOKEN.encode() not in r.body for r in hub.state.log)
    # Hub API calls carry the token; uploads go to signed storage URLs, as on the real Hub.
    assert all(r.authorized for r in posts(hub))
    assert all("signature" in r.query for r in hub.state.requests("PUT"))
    assert VALID_TOKEN not in out

    loaded = datasets.load_dataset(REPO_ID)
    # the viewer lists them all
    assert datasets.get_dataset_config_names(REPO_ID) == ["default", "licensed", "size-256", "size-256-licensed"]
    assert datasets.get_dataset_split_names(REPO_ID) == ["train", "validation", "test"]
    for split, dataset in loaded.items():
        assert dataset.features == recipe.features()
        raw = undecoded(dataset).to_list()
        local = parquet_rows(fixture_build, split)
        assert [r["image_id"] for r in raw] == [r["image_id"] for r in local]
        for ours, theirs in zip(raw, local):
            for column in ("image", *recipe.MASK_COLUMNS):
                assert (ours[column] or {}).get("bytes") == (theirs[column] or {}).get("bytes"), column
            assert ours["objects"] == theirs["objects"]
    streamed = datasets.load_dataset(REPO_ID, split="test", streaming=True)
    assert next(iter(streamed))["image_id"] == loaded["test"][0]["image_id"]


def test_republishing_unchanged_makes_no_commit(hub, token, fixture_build, capsys):
    assert run("--source", str(fixture_build), "--no-verify") == 0
    commits = len(new_commits(hub))
    hub.state.log.clear()
    assert run("--source", str(fixture_build), "--no-verify") == 0
    assert "nothing to commit: org/covid-chestxray-seg@main already holds these files" in capsys.readouterr().out
    assert len(new_commits(hub)) == commits == 1
    assert not posts(hub)


def test_republishing_a_change_is_one_commit_and_removes_stale_shards(hub, token, fixture_build, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(fixture_build, older)
    stale = "data/licensed/train-00001-of-00002.parquet"
    shutil.copyfile(older / "data/licensed/train-00000-of-00001.parquet", older / stale)
    checksums.write(older)  # a build that wrote that shard
    (older / "README.md").write_text((older / "README.md").read_text() + "\nolder build\n")
    assert run("--source", str(older), "--no-verify") == 0
    assert stale in hub.state.files(REPO_ID)
    hub.state.log.clear()

    assert run("--source", str(fixture_build)) == 0
    assert len(new_commits(hub)) == 2
    commit_posts = posts(hub, r"/commit/")
    assert len(commit_posts) == 1
    assert b'"deletedFile"' in commit_posts[0].body and stale.encode() in commit_posts[0].body
    files = hub.state.files(REPO_ID)
    assert stale not in files
    assert files["README.md"] == published_card(fixture_build)


def published_card(folder) -> bytes:
    """The built card as publishing to REPO_ID makes it: its code names REPO_ID, its FiftyOne
    section REPO_ID's companion."""
    card = card_for_repo((folder / "README.md").read_text(encoding="utf-8"), REPO_ID)
    return link_companion(card, companion_repo_id(REPO_ID)).encode("utf-8")


def test_publishing_writes_the_repo_id_into_the_card(hub, token, fixture_build):
    assert run("--source", str(fixture_build), "--no-verify") == 0
    card = hub.state.files(REPO_ID)["README.md"].decode("utf-8")
    calls = re.findall(r"load_dataset\(\s*\"([^\"]+)\"", card)
    assert calls and set(calls) == {REPO_ID}
    assert "ORG/covid-chestxray-seg" in (fixture_build / "README.md").read_text()  # built for the default id
    # Publishing the same folder again changes nothing: the rewritten card is what the repo holds.
    commits = len(new_commits(hub))
    assert run("--source", str(fixture_build), "--no-verify") == 0
    assert len(new_commits(hub)) == commits


def test_dry_run_prints_the_plan_and_writes_nothing(hub, token, fixture_build, capsys):
    assert run("--source", str(fixture_build), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "+ data/licensed/train-00000-of-00001.parquet" in out
    files = [path for path in fixture_build.rglob("*") if path.is_file()]
    assert f"{len(files)} to upload" in out and "dry run: nothing was written" in out
    assert not posts(hub) and not hub.state.requests("PUT")
    assert hub.state.repos == {}
    # Nothing was published, so the card's companion link is not checked either.
    assert not hub.state.requests("GET", COMPANION_CHECKS) and "warning" not in out


def test_publish_returns_what_it_did(hub, token, fixture_build, tmp_path):
    files = sorted(p.relative_to(fixture_build).as_posix() for p in fixture_build.rglob("*") if p.is_file())
    lines: list[str] = []

    def publish(folder, **options):
        request = publishing.PublishRequest(repo_id=REPO_ID, token=token, verify=False, **options)
        return publishing.publish(folder=folder, request=request, say=lines.append)

    expected = {"repo_id": REPO_ID, "revision": "main", "deleted": 0}
    planned = publish(fixture_build, dry_run=True)
    assert planned == publishing.PublishResult(
        **expected, commit=None, committed=False, uploaded=len(files), unchanged=0, dry_run=True
    )
    assert hub.state.repos == {}

    first = publish(fixture_build)
    head = hub.state.repos[("dataset", REPO_ID)].refs["main"]
    assert first == publishing.PublishResult(
        **expected, commit=head, committed=True, uploaded=len(files), unchanged=0, dry_run=False
    )
    again = publish(fixture_build)
    assert again == publishing.PublishResult(
        **expected, commit=head, committed=False, uploaded=0, unchanged=len(files), dry_run=False
    )
    assert again.to_json() == {
        "repo_id": REPO_ID,
        "revision": "main",
        "commit": head,
        "committed": False,
        "uploaded": 0,
        "deleted": 0,
        "unchanged": len(files),
        "dry_run": False,
    }

    # A build with an extra shard (and its checksums) and another card, then this one again: the
    # card and the checksums are uploaded, the shard deleted, the rest left as it is.
    older = tmp_path / "older"
    shutil.copytree(fixture_build, older)
    shutil.copyfile(
        older / "data/licensed/train-00000-of-00001.parquet", older / "data/licensed/train-00001-of-00002.parquet"
    )
    checksums.write(older)
    (older / "README.md").write_text((older / "README.md").read_text() + "\nolder build\n")
    assert publish(older).uploaded == 3
    back = publish(fixture_build)
    assert (back.committed, back.uploaded, back.deleted, back.unchanged) == (True, 2, 1, len(files) - 2)
    assert back.commit == hub.state.repos[("dataset", REPO_ID)].refs["main"] != head


def test_without_fiftyone_a_missing_companion_is_a_warning(hub, token, fixture_build, tmp_path, capsys):
    report = tmp_path / "publish.json"
    options = ["--revision", "v1", "--private", "--no-verify", "--json", str(report)]
    assert run("--source", str(fixture_build), *options) == 0
    # The command to copy keeps the branch and the privacy: --fiftyone publishes the companion
    # with the same options, and the companion of private data must not become public.
    command = ["covid-seg", "publish", "--source", str(fixture_build), "--repo-id", REPO_ID, "--fiftyone"]
    warning = (
        f"warning: the card's FiftyOne section links to {COMPANION}, which does not exist on the Hub yet; "
        f"publish it with `{shlex.join([*command, '--revision', 'v1', '--private'])}` "
        "(needs the extra: pip install 'covid-chestxray-seg[fiftyone]')"
    )
    assert warning in capsys.readouterr().out.splitlines()
    assert json.loads(report.read_text(encoding="utf-8"))["warnings"] == [warning]
    assert f'load_from_hub("{COMPANION}")' in hub.state.files(REPO_ID, revision="v1")["README.md"].decode("utf-8")
    # One question to the Hub, after the commit.
    checks = hub.state.requests("GET", COMPANION_CHECKS)
    assert len(checks) == 1
    assert hub.state.log.index(checks[0]) > hub.state.log.index(hub.state.requests("POST", r"/commit/v1$")[0])


def test_without_fiftyone_an_existing_companion_is_no_warning(hub, token, fixture_build, tmp_path, capsys):
    hub.state.create_repo(COMPANION)
    report = tmp_path / "publish.json"
    assert run("--source", str(fixture_build), "--no-verify", "--json", str(report)) == 0
    assert "warning" not in capsys.readouterr().out
    assert len(hub.state.requests("GET", COMPANION_CHECKS)) == 1
    # --json holds the publish's result.
    assert json.loads(report.read_text(encoding="utf-8")) == {
        "repo_id": REPO_ID,
        "revision": "main",
        "commit": hub.state.repos[("dataset", REPO_ID)].refs["main"],
        "committed": True,
        "uploaded": len([path for path in fixture_build.rglob("*") if path.is_file()]),
        "deleted": 0,
        "unchanged": 0,
        "dry_run": False,
        "warnings": [],
    }


def test_a_failed_companion_check_is_a_warning_after_a_good_publish(hub, token, fixture_build, capsys):
    hub.state.fail("GET", COMPANION_CHECKS, 500, times=10)
    assert run("--source", str(fixture_build), "--no-verify") == 0
    out = capsys.readouterr().out
    assert re.search(
        rf"^warning: could not check whether the FiftyOne companion {re.escape(COMPANION)} exists: HTTP 500", out, re.M
    )
    assert len(new_commits(hub)) == 1


def test_create_pr_leaves_main_alone(hub, token, fixture_build, capsys):
    assert run("--source", str(fixture_build), "--create-pr", "--no-verify") == 0
    repo = hub.state.repos[("dataset", REPO_ID)]
    assert "refs/pr/1" in repo.refs
    assert sorted(hub.state.files(REPO_ID)) == [".gitattributes"]
    assert "README.md" in hub.state.files(REPO_ID, revision="refs/pr/1")
    assert "/discussions/1" in capsys.readouterr().out


def test_revision_creates_the_branch(hub, token, fixture_build):
    assert run("--source", str(fixture_build), "--revision", "v1", "--no-verify") == 0
    assert "README.md" in hub.state.files(REPO_ID, revision="v1")
    assert "README.md" not in hub.state.files(REPO_ID)


def test_private_repo_needs_the_token_to_load(hub, token, fixture_build, monkeypatch):
    assert run("--source", str(fixture_build), "--private") == 0  # verification loads it with the token
    assert hub.state.repos[("dataset", REPO_ID)].private
    monkeypatch.delenv("HF_TOKEN")
    assert not huggingface_hub.HfApi(token=False).repo_exists(REPO_ID, repo_type="dataset")
    assert huggingface_hub.HfApi(token=VALID_TOKEN).repo_exists(REPO_ID, repo_type="dataset")


@pytest.mark.parametrize("status", [500, 429])
def test_a_transient_error_on_the_commit_is_retried_into_one_commit(hub, token, fixture_build, status, capsys):
    hub.state.fail("POST", r"/commit/main$", status, headers={"Retry-After": "0"})
    assert run("--source", str(fixture_build), "--no-verify") == 0
    assert f"HTTP {status} from the Hub, retrying the commit" in capsys.readouterr().out
    assert len(new_commits(hub)) == 1


@pytest.mark.slow
def test_transient_errors_during_upload_are_retried(hub, token, fixture_build):
    hub.state.fail("POST", r"/info/lfs/objects/batch$", 429, headers={"Retry-After": "0"})
    hub.state.fail("PUT", r"^/lfs-upload/", 500)
    assert run("--source", str(fixture_build), "--no-verify") == 0
    assert len(new_commits(hub)) == 1
    assert [r.status for r in hub.state.requests("POST", r"lfs/objects/batch")][:2] == [429, 200]


def test_a_commit_that_keeps_failing_commits_nothing(hub, token, fixture_build, capsys):
    hub.state.fail("POST", r"/commit/main$", 500, times=publishing.COMMIT_ATTEMPTS)
    assert run("--source", str(fixture_build), "--no-verify") == 1
    err = capsys.readouterr().err
    assert re.search(
        r"the Hub refused the commit to org/covid-chestxray-seg@main \(HTTP 500\) after 4 attempt\(s\); "
        r"nothing was committed",
        err,
    )
    assert new_commits(hub) == []
    assert VALID_TOKEN not in err


def test_a_stale_parent_commits_nothing(hub, token, fixture_build, capsys):
    hub.state.create_repo(REPO_ID)
    # Someone else commits between our plan and our commit.
    hub.state.before("POST", r"/commit/main$", lambda state: state.commit_directly(REPO_ID, {"notes.txt": b"theirs"}))
    assert run("--source", str(fixture_build), "--no-verify") == 1
    assert re.search(
        r"org/covid-chestxray-seg@main changed while publishing .* nothing was committed: run the command again",
        capsys.readouterr().err,
    )
    assert sorted(hub.state.files(REPO_ID)) == [".gitattributes", "notes.txt"]
    assert [r.status for r in posts(hub, r"/commit/")] == [412]


@pytest.mark.slow
def test_a_dropped_connection_during_the_lfs_upload_is_retried(hub, token, fixture_build):
    hub.state.fail("PUT", r"^/lfs-upload/", 0)
    assert run("--source", str(fixture_build), "--no-verify") == 0
    assert len(new_commits(hub)) == 1
    assert sorted(hub.state.files(REPO_ID)) == sorted(
        [".gitattributes"] + [p.relative_to(fixture_build).as_posix() for p in fixture_build.rglob("*") if p.is_file()]
    )


def test_garbage_from_the_server_is_a_clear_error_and_commits_nothing(hub, token, fixture_build, capsys):
    hub.state.fail("POST", r"/preupload/main$", 200, body=b"<html>not json</html>")
    assert run("--source", str(fixture_build), "--no-verify") == 1
    err = capsys.readouterr().err
    assert "error: unexpected answer from the Hub (JSONDecodeError" in err and "Traceback" not in err
    assert new_commits(hub) == []
    assert run("--source", str(fixture_build), "--no-verify") == 0  # rerunning completes
    assert len(new_commits(hub)) == 1


def test_a_commit_rejected_after_the_uploads_keeps_the_repo_and_a_rerun_completes(
    hub, token, fixture_build, tmp_path, capsys
):
    older = tmp_path / "older"
    shutil.copytree(fixture_build, older)
    (older / "README.md").write_text((older / "README.md").read_text() + "\nolder\n")
    assert run("--source", str(older), "--no-verify") == 0
    before = hub.state.files(REPO_ID)
    hub.state.fail("POST", r"/commit/main$", 422, body=b'{"error": "rejected"}')
    assert run("--source", str(fixture_build), "--no-verify") == 1
    assert "HTTP 422" in capsys.readouterr().err
    assert hub.state.files(REPO_ID) == before  # the previous state, untouched
    assert run("--source", str(fixture_build), "--no-verify") == 0
    assert hub.state.files(REPO_ID)["README.md"] == published_card(fixture_build)


def test_missing_token_is_a_clear_error(hub, fixture_build, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(cli_publish, "get_token", lambda: None)
    assert run("--source", str(fixture_build)) == 1
    assert "error: no Hugging Face token; set HF_TOKEN, run `hf auth login`, or give --token" in capsys.readouterr().err
    assert hub.state.log == []


def test_a_wrong_token_is_refused_and_never_printed(hub, fixture_build, capsys):
    hub.state.create_repo(REPO_ID)
    wrong = "hf_wrongwrongwrong123456"
    assert run("--source", str(fixture_build), "--token", wrong) == 1
    captured = capsys.readouterr()
    assert "HTTP 401" in captured.err
    assert wrong not in captured.err + captured.out
    assert new_commits(hub) == []


@pytest.mark.parametrize(
    ("repo_id", "message"),
    [
        ("no-namespace", r"--repo-id no-namespace: must be ORG/NAME"),
        ("org/bad name!", r"--repo-id org/bad name!: not a valid repo id"),
        ("a/b/c", r"--repo-id a/b/c: not a valid repo id"),
    ],
)
def test_malformed_repo_ids_are_refused(hub, token, fixture_build, capsys, repo_id, message):
    assert covid_seg(["publish", "--repo-id", repo_id, "--source", str(fixture_build)]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert hub.state.log == []


def test_a_model_repo_of_that_name_is_refused(hub, token, fixture_build, capsys):
    hub.state.create_repo(REPO_ID, repo_type="model")
    assert run("--source", str(fixture_build)) == 1
    assert (
        "--repo-id org/covid-chestxray-seg: exists as a model repository, not a dataset; choose another --repo-id"
        in capsys.readouterr().err
    )
    assert ("dataset", REPO_ID) not in hub.state.repos


def test_an_empty_commit_message_is_refused(hub, token, fixture_build, capsys):
    assert run("--source", str(fixture_build), "--commit-message", " ") == 1
    assert "error: --commit-message: must not be empty" in capsys.readouterr().err
    assert hub.state.log == []


def test_a_folder_with_a_python_file_is_refused(hub, token, fixture_build, tmp_path, capsys):
    folder = tmp_path / "with-script"
    shutil.copytree(fixture_build, folder)
    (folder / "covid_chestxray_seg.py").write_text("# loading script\n")
    assert run("--source", str(folder)) == 1
    assert re.search(
        r"holds covid_chestxray_seg\.py: a loading script would make datasets >= 4 and the Hub viewer refuse the repo",
        capsys.readouterr().err,
    )
    assert hub.state.log == []


def test_a_folder_that_is_not_built_is_refused(hub, token, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run("--source", str(tmp_path / "empty")) == 1
    assert re.search(
        r"empty: not a built folder \(missing README\.md, dataset_infos\.json, LICENSE\.md, checksums\.json\); "
        r"build it again \(covid-seg build\)",
        capsys.readouterr().err,
    )
    assert run("--source", str(tmp_path / "nowhere")) == 1
    assert re.search(r"nowhere: does not exist; build it first", capsys.readouterr().err)


def test_a_folder_from_another_builder_version_is_refused(hub, token, fixture_build, tmp_path, capsys):
    folder = tmp_path / "old"
    shutil.copytree(fixture_build, folder)
    infos = folder / "dataset_infos.json"
    infos.write_text(infos.read_text().replace(f'"version_str": "{recipe.BUILDER_VERSION}"', '"version_str": "0.9.0"'))
    assert run("--source", str(folder)) == 1
    assert f"old: built by builder version 0.9.0, this checkout is {recipe.BUILDER_VERSION}" in capsys.readouterr().err


def test_a_card_the_hub_refuses_stops_before_any_upload(hub, token, fixture_build, tmp_path, capsys):
    folder = tmp_path / "bad-card"
    shutil.copytree(fixture_build, folder)
    card = folder / "README.md"
    card.write_text(re.sub(r"(?m)^license_name: .*\n", "", card.read_text(), count=1))
    assert run("--source", str(folder)) == 1
    assert re.search(
        r"README\.md: the Hub refuses the card's metadata "
        r"\(.*license_name: None must be set with license: other.*\); nothing was uploaded",
        capsys.readouterr().err,
    )
    assert [r.path for r in hub.state.log] == ["/api/validate-yaml"]


def test_network_down_is_a_clear_error(token, fixture_build, capsys, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    assert run("--source", str(fixture_build)) == 1
    assert "cannot reach the Hub" in capsys.readouterr().err


def test_help_has_options_and_examples(capsys):
    assert covid_seg(["publish", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--repo-id",
        "--source",
        "--private",
        "--revision",
        "--create-pr",
        "--commit-message",
        "--dry-run",
        "--token",
        "--no-verify",
    ):
        assert option in text
    assert "examples:" in text and "covid-seg publish --repo-id ORG/covid-chestxray-seg --dry-run" in text


def test_full_data_publish_streams_in_four_shards_each_row_once(hub, token, real_build):
    assert run("--source", str(real_build), "--tools-url", FIXTURE_TOOLS_URL) == 0
    stream = datasets.load_dataset(REPO_ID, split="train", streaming=True)
    assert stream.num_shards >= 4
    ids = []
    for rank in range(4):
        part = split_dataset_by_node(stream.select_columns(["image_id"]), rank=rank, world_size=4)
        ids += [row["image_id"] for row in part]
    expected = [row["image_id"] for row in parquet_rows(real_build, "train")]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids)) == 69
    loaded = datasets.load_dataset(REPO_ID, split="validation")
    raw = undecoded(loaded).to_list()
    for ours, theirs in zip(raw, parquet_rows(real_build, "validation")):
        for column in ("image", *recipe.MASK_COLUMNS):
            assert (ours[column] or {}).get("bytes") == (theirs[column] or {}).get("bytes"), column

"""`covid-seg publish`: a built folder -> a Hugging Face dataset repo, in one verified commit."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import get_token
from huggingface_hub.errors import HfHubHTTPError

from covid_chestxray_seg_tools.card.companion import check_companion_id, companion_repo_id
from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.build import DEFAULT_OUT
from covid_chestxray_seg_tools.cli.outcome import Outcome
from covid_chestxray_seg_tools.errors import describe
from covid_chestxray_seg_tools.fiftyone import companion as fiftyone_companion
from covid_chestxray_seg_tools.publish import DEFAULT_COMMIT_MESSAGE, PublishRequest, publish

__all__ = ["register", "run"]

_EXAMPLES = """\
  # publish build/ to a new or existing public dataset repo (token from HF_TOKEN or `hf auth login`)
  covid-seg publish --repo-id ORG/covid-chestxray-seg

  # see what would change, without writing anything
  covid-seg publish --repo-id ORG/covid-chestxray-seg --dry-run

  # open a pull request instead of committing to main
  covid-seg publish --repo-id ORG/covid-chestxray-seg --create-pr --commit-message "Rebuild with builder 1.2.0"

  # the card tells people to install covid-seg from your fork of the tools
  covid-seg publish --repo-id ORG/covid-chestxray-seg --tools-url https://github.com/OWNER/covid-chestxray-seg

  # a private repo, another folder, no load-back check
  covid-seg publish --repo-id ORG/covid-chestxray-seg --private --source /tmp/out --no-verify

  # also the FiftyOne-format companion, ORG/covid-chestxray-seg-fiftyone (the cards link each other;
  # needs the extra: pip install 'covid-chestxray-seg[fiftyone]')
  covid-seg publish --repo-id ORG/covid-chestxray-seg --fiftyone
  covid-seg publish --repo-id ORG/covid-chestxray-seg --fiftyone ORG/cxr-seg-for-fiftyone
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "publish",
        summary="publish a built folder to a Hub dataset repo in one commit",
        description="Publish a built folder to a Hugging Face dataset repo in one commit, then load it back. "
        "Publishing an unchanged folder makes no commit.",
        examples=_EXAMPLES,
    )
    options.add_source(parser, default=str(DEFAULT_OUT), what="the folder to publish", revision=False)
    parser.add_argument("--repo-id", required=True, help="dataset repo to publish to, as ORG/NAME (created if missing)")
    parser.add_argument(
        "--private", action="store_true", help="create the repo as private (an existing repo keeps its visibility)"
    )
    parser.add_argument(
        "--revision", default="main", help="branch to commit to, created from main if missing (default: main)"
    )
    parser.add_argument(
        "--create-pr", action="store_true", help="open a pull request against --revision instead of committing to it"
    )
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE, help="commit or pull-request title")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, changes); write nothing")
    parser.add_argument(
        "--token",
        default=None,
        help="Hugging Face token with write access (default: HF_TOKEN or the token saved by `hf auth login`); "
        "never printed",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip comparing the remote files and loading the dataset back"
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="publish a card with gaps (baseline or data-quality sections not computed, a placeholder such as OWNER "
        "or ORG in a link or command) as a draft, marked so at its top; without it such a card is refused",
    )
    options.add_tools_url(
        parser,
        help="repository of these tools, which the card tells people to install covid-seg from "
        "(default: the URL the folder was built with, `covid-seg build --tools-url`)",
        default=None,
    )
    parser.add_argument(
        "--fiftyone",
        nargs="?",
        const="",
        default=None,
        metavar="REPO_ID",
        help="also publish the build in FiftyOne's format to this dataset repo (default with no value: "
        "--repo-id + '-fiftyone'), after the Parquet repo and with the same options; the main card's FiftyOne "
        "section names this repo (without --fiftyone: --repo-id + '-fiftyone')",
    )
    parser.set_defaults(handler=run, secrets=lambda args: [args.token])


def run(args: argparse.Namespace) -> Outcome:
    lines: list[str] = []
    say = print if args.json is None or str(args.json) != "-" else lines.append
    token = args.token or get_token()
    companion = None
    if args.fiftyone is not None:
        companion = args.fiftyone or companion_repo_id(args.repo_id)
        # Before anything is published: a wrong id or a missing optional extra stops both publishes,
        # not the second.
        check_companion_id(repo_id=args.repo_id, companion_id=companion)
        fiftyone_companion.exporter()
    request = PublishRequest(
        repo_id=args.repo_id,
        token=token,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
        dry_run=args.dry_run,
        verify=not args.no_verify,
        allow_incomplete=args.allow_incomplete,
    )
    result = publish(
        folder=Path(args.source), request=request, fiftyone_repo_id=companion, tools_url=args.tools_url, say=say
    )
    data: dict[str, Any] = result.to_json()
    warnings: list[str] = []
    if companion is not None:
        data["fiftyone"] = fiftyone_companion.publish_companion(
            folder=Path(args.source), request=request, companion_id=companion, tools_url=args.tools_url, say=say
        ).to_json()
    elif not args.dry_run:
        warning = _missing_companion(args, token=token)
        if warning is not None:
            say(warning)
            warnings.append(warning)
    data["warnings"] = warnings
    return Outcome(text="", data=data)


def _missing_companion(args: argparse.Namespace, *, token: str | None) -> str | None:
    """Without --fiftyone the published card still names the companion (--repo-id + '-fiftyone'),
    which may not exist: a warning saying how to publish it, or None when it exists."""
    companion = companion_repo_id(args.repo_id)
    try:
        if fiftyone_companion.companion_exists(companion, token=token):
            return None
    except (HfHubHTTPError, httpx2.TransportError) as error:
        # The publish itself succeeded: a failed check is no reason to fail the command.
        return f"warning: could not check whether the FiftyOne companion {companion} exists: {describe(error)}"
    # The same folder and repo, and what a copied command must not lose: the branch, and that
    # the data is private (--fiftyone publishes the companion with the same options).
    command = ["covid-seg", "publish", "--repo-id", args.repo_id, "--fiftyone"]
    if args.source != str(DEFAULT_OUT):
        command[2:2] = ["--source", args.source]
    if args.revision != "main":
        command += ["--revision", args.revision]
    if args.private:
        command.append("--private")
    return (
        f"warning: the card's FiftyOne section links to {companion}, which does not exist on the Hub yet; "
        f"publish it with `{shlex.join(command)}` (needs the extra: {fiftyone_companion.INSTALL})"
    )

"""Publish the folder scripts/build.py wrote to a Hugging Face dataset repo: the command line.

The work is `covid_chestxray_seg_tools.publish.publish` (one verified commit); this script
parses the options, calls it and turns its errors into one line, never printing the token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import get_token

from covid_chestxray_seg_tools import cli
from covid_chestxray_seg_tools.publish import DEFAULT_COMMIT_MESSAGE, publish

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO_ROOT / "build"

EXAMPLES = """\
examples:
  # publish build/ to a new or existing public dataset repo (token from HF_TOKEN or `hf auth login`)
  python scripts/publish.py --repo-id ORG/covid-chestxray-seg

  # see what would change, without writing anything
  python scripts/publish.py --repo-id ORG/covid-chestxray-seg --dry-run

  # open a pull request instead of committing to main
  python scripts/publish.py --repo-id ORG/covid-chestxray-seg --create-pr --commit-message "Rebuild with builder 1.0.1"

  # a private repo, another folder, no load-back check
  python scripts/publish.py --repo-id ORG/covid-chestxray-seg --private --folder /tmp/out --no-verify
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/publish.py",
        description="Publish the built folder to a Hugging Face dataset repo in one commit, then load it back.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repo-id", required=True, help="dataset repo as ORG/NAME (created if missing)")
    parser.add_argument(
        "--folder",
        type=Path,
        default=DEFAULT_FOLDER,
        help=f"folder built by scripts/build.py (default: {DEFAULT_FOLDER.name}/)",
    )
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
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan (files, sizes, changes) and write nothing"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="Hugging Face token with write access (default: HF_TOKEN or the token saved by `hf auth login`); never printed",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip comparing the remote files and loading the dataset back"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    token = args.token or get_token()

    def work() -> None:
        publish(
            folder=args.folder,
            repo_id=args.repo_id,
            token=token,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
            verify=not args.no_verify,
        )

    return cli.run(work, secrets=[token])


if __name__ == "__main__":
    sys.exit(main())

"""What a caller asks of a publish, what a publish did, and what refuses one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Public (in huggingface_hub.utils.__all__), but that list is built at run time, which mypy cannot read.
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = [
    "DEFAULT_COMMIT_MESSAGE",
    "NO_TOKEN",
    "TOKEN_FIX",
    "PublishError",
    "PublishRequest",
    "PublishResult",
]

DEFAULT_COMMIT_MESSAGE = f"Publish covid-chestxray-seg (builder {recipe.BUILDER_VERSION})"
# A publish without a token, in words, and where a token comes from.
NO_TOKEN = "no Hugging Face token"
TOKEN_FIX = f"set HF_TOKEN, run `hf auth login`, or give {recipe.setting('token')}"


class PublishError(CovidSegError, ValueError):
    """A publish that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class PublishRequest:
    """Where and how to publish: one commit to a dataset repo, checked afterwards.

    Attributes:
        repo_id: the dataset repo, ORG/NAME.
        token: a token with write access (None: only a dry run works); never printed.
        private: create a missing repo as private (an existing repo keeps its visibility).
        revision: the branch to commit to (created from main if missing).
        create_pr: open a pull request against `revision` instead of committing to it.
        commit_message: the commit or pull request title.
        dry_run: print the plan (files, sizes, changes) and write nothing.
        verify: afterwards compare the remote files with the local ones (size and SHA-256)
            and load the dataset back.
        allow_incomplete: publish a card with gaps (sections the build left out, placeholders)
            as a draft, marked so at its top, instead of refusing it.
    """

    repo_id: str
    token: str | None = None
    private: bool = False
    revision: str = "main"
    create_pr: bool = False
    commit_message: str = DEFAULT_COMMIT_MESSAGE
    dry_run: bool = False
    verify: bool = True
    allow_incomplete: bool = False

    def check(self) -> None:
        """Refuse what no Hub call is needed to refuse.

        Raises:
            PublishError: a repo id that is not ORG/NAME, an empty commit message, no token
                for a publish that writes.
        """
        try:
            validate_repo_id(self.repo_id)
        except HFValidationError as error:
            raise PublishError(f"not a valid repo id: {error}", setting="repo_id", value=self.repo_id) from None
        if self.repo_id.count("/") != 1:
            raise PublishError(
                "must be ORG/NAME (or USER/NAME), so that load_dataset(ORG/NAME) finds it",
                setting="repo_id",
                value=self.repo_id,
            )
        if not self.commit_message.strip():
            raise PublishError("must not be empty", setting="commit_message")
        if not self.token and not self.dry_run:
            raise PublishError(NO_TOKEN, fix=TOKEN_FIX)

    def __repr__(self) -> str:
        # The token never appears in a log or a traceback.
        shown = {**asdict(self), "token": None if self.token is None else "***"}
        return f"PublishRequest({', '.join(f'{key}={value!r}' for key, value in shown.items())})"


@dataclass(frozen=True)
class PublishResult:
    """What a publish did (on a dry run: what it would do).

    Attributes:
        repo_id: the dataset repo published to.
        revision: the branch committed to (with a pull request: the branch it is against).
        commit: the commit that holds the files (a pull request's commit); None on a dry run.
        committed: whether this publish made that commit; False when the repo held the files
            already, and on a dry run.
        uploaded: files uploaded (new or changed).
        deleted: files deleted (stale shards, a loading script).
        unchanged: files the repo held already.
        dry_run: nothing was written.
    """

    repo_id: str
    revision: str
    commit: str | None
    committed: bool
    uploaded: int
    deleted: int
    unchanged: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values, for `--json`."""
        return asdict(self)

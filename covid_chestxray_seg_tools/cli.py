"""What every script shares: logging set-up and the one place where errors become a message.

A script parses its arguments, then hands the work to `run`: the error types the library
raises on purpose (bad input, a refused publish, an OS error, a Hub answer) become one
`error: ...` line on stderr and exit code 1, with any secret scrubbed from the text.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable, Iterable

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from covid_chestxray_seg_tools.publish import PublishError, describe, scrub

# Errors whose message is meant for the user as it is (the library words them so).
EXPECTED_ERRORS = (PublishError, HfHubHTTPError, httpx2.TransportError, ValueError, OSError)


def setup_logging(*, quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")


def run(work: Callable[[], int | None], *, secrets: Iterable[str | None] = (), rewrite: Callable[[str], str] | None = None) -> int:
    """Call `work`; its return value (None counts as 0) is the exit code, an expected error is
    one line on stderr and exit code 1. `rewrite` adapts a message to the script's own options."""
    try:
        return work() or 0
    except EXPECTED_ERRORS as error:
        message = describe(error)
        if rewrite is not None:
            message = rewrite(message)
        for secret in secrets:
            message = scrub(message, secret)
        print(f"error: {message}", file=sys.stderr)
        return 1

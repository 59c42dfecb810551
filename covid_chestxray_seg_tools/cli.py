"""What every script shares: logging set-up and the one place where errors become a message.

A script parses its arguments, then hands the work to `run`: the error types the library
raises on purpose (bad input, a refused publish, an OS error, a Hub answer) become one
`error: ...` line on stderr and exit code 1, with any secret scrubbed from the text.
Ctrl-C, SIGTERM and SIGHUP stop the work through the same cleanup as an error (partial
output removed, worker processes ended) and become one `interrupted by ...` line and exit
code 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterable

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from covid_chestxray_seg_tools import processes
from covid_chestxray_seg_tools.publish import PublishError, describe, scrub

# Errors whose message is meant for the user as it is (the library words them so).
EXPECTED_ERRORS = (PublishError, HfHubHTTPError, httpx2.TransportError, ValueError, OSError)


def setup_logging(*, quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")


def run(
    work: Callable[[], int | None], *, secrets: Iterable[str | None] = (), rewrite: Callable[[str], str] | None = None
) -> int:
    """Call `work`; its return value (None counts as 0) is the exit code, an expected error is
    one line on stderr and exit code 1, an interruption one line and 128 + the signal number.
    `rewrite` adapts a message to the script's own options."""
    try:
        with processes.stopping_signals():
            return work() or 0
    except BaseException as error:
        # First: an interruption may surface as another error raised while the work unwound
        # (multiprocessing's pool answers a KeyboardInterrupt with a TimeoutError).
        signum = processes.signal_behind(error)
        if signum is not None:
            name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
            print(f"interrupted by {name}: stopped before finishing; no partial output is left", file=sys.stderr)
            return 128 + signum
        if not isinstance(error, EXPECTED_ERRORS):
            raise
        message = describe(error)
        if rewrite is not None:
            message = rewrite(message)
        for secret in secrets:
            message = scrub(message, secret)
        # Also where the script passed no secret: anything shaped like a Hub token.
        message = scrub(message, None)
        print(f"error: {message}", file=sys.stderr)
        return 1

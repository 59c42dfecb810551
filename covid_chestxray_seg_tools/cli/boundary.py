"""The one place where an error becomes a message, and where logging is set up.

`run` calls a subcommand's work. What the library raises on purpose (bad input, a refused
publish, an output folder that cannot be written, a Hub or network failure) is one
`error: ...` line on stderr and exit code 1, with anything shaped like a token scrubbed
from it. Ctrl-C, SIGTERM and SIGHUP stop the work through the same cleanup as an error
(partial output removed, worker processes ended) and are one `interrupted by ...` line
and exit code 128 + the signal number (130, 143, 129). Anything else is a bug in this
package or a library: it keeps its traceback. `COVID_SEG_DEBUG=1` shows the traceback of
every error, expected ones included (as `HF_DEBUG` does for the `hf` command).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import httpx2
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from covid_chestxray_seg import BuildError, SettingNames
from covid_chestxray_seg_tools import processes
from covid_chestxray_seg_tools.cli.options import CommandParser
from covid_chestxray_seg_tools.errors import CovidSegError, describe, scrub

__all__ = ["DEBUG_VARIABLE", "EXPECTED_ERRORS", "FlagNames", "run", "setup_logging"]

DEBUG_VARIABLE = "COVID_SEG_DEBUG"
# Errors whose message is meant for the user as it is: ours (the library words them so; the
# builder's BuildError names file, record and problem) and the Hub's or the network's.
EXPECTED_ERRORS = (CovidSegError, BuildError, HfHubHTTPError, OfflineModeIsEnabled, httpx2.TransportError)


class FlagNames(SettingNames):
    """The command's words for the settings an error names: each setting by the option of the
    running subcommand that sets it; a setting only another subcommand has as that command and
    its option (`covid-seg build --baseline`); any other setting as Python names it.

    Args:
        command: the running subcommand's parser.
        commands: every subcommand's parser.
    """

    def __init__(self, *, command: CommandParser, commands: Sequence[CommandParser]):
        self.own = dict(command.flags)
        # The flags the option sets itself (its value is not written after it).
        self.switches = {setting for setting, flag in self.own.items() if not flag.endswith(setting.replace("_", "-"))}
        self.elsewhere = {
            setting: f"{parser.prog} {flag}"
            for parser in commands
            for setting, flag in parser.flags.items()
            if setting not in self.own
        }

    def reference(self, name: str, value: str | None) -> str:
        flag = self.own.get(name) or self.elsewhere.get(name)
        if flag is None:
            return super().reference(name, value)
        # An option named otherwise than its setting stands for the value it sets (--allow-modified
        # for verify_upstream=False); a plain option is followed by the value the text gives it.
        return flag if value is None or name in self.switches else f"{flag} {value}"

    def value(self, name: str, value: object) -> str:
        flag = self.own.get(name)
        if flag is None:
            return super().value(name, value)
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return f"{flag} {shown}"


# Libraries that log every HTTP request at INFO: their lines would bury ours.
_CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "fsspec", "filelock")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (pytest's capture swaps it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_logging(*, quiet: bool = False) -> None:
    """Log INFO and up as plain lines on stderr; with `quiet`, warnings and errors only, and no
    progress bars from `datasets` or `huggingface_hub`. Calling it again changes the level only."""
    root = logging.getLogger()
    if not any(isinstance(handler, _StderrHandler) for handler in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if quiet:
        # Both read these when they draw a bar; set before either is imported, or now if it was.
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "datasets" in sys.modules:
            import datasets

            datasets.disable_progress_bars()
            datasets.logging.set_verbosity_error()


def run(
    work: Callable[[], int | None],
    *,
    secrets: Iterable[str | None] = (),
    names: SettingNames | None = None,
) -> int:
    """Call `work` and return the exit code: its return value (None counts as 0), 1 after an
    expected error, 128 + the signal number after an interruption.

    Args:
        work: the subcommand's work, called with no arguments.
        secrets: strings never to print (a token given on the command line), besides anything
            shaped like a Hugging Face token, which is always hidden.
        names: how the command words the settings an error names (its options, `FlagNames`);
            None: as Python names them.

    Raises:
        Any error that is not expected: a bug keeps its traceback.
    """
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        with processes.stopping_signals():
            return work() or 0
    except BaseException as error:
        # First: an interruption may surface as another error raised while the work unwound
        # (multiprocessing's pool answers a KeyboardInterrupt with a TimeoutError).
        signum = processes.signal_behind(error)
        if signum is not None:
            if debug:
                traceback.print_exc()
            name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
            print(f"interrupted by {name}: stopped before finishing; no partial output is left", file=sys.stderr)
            return 128 + signum
        if not isinstance(error, EXPECTED_ERRORS):
            raise
        message = describe(error, names)
        for secret in secrets:
            message = scrub(message, secret)
        # Also where no secret was passed: anything shaped like a Hub token.
        message = scrub(message, None)
        if debug:
            # The traceback may quote a token too: scrub it the same way.
            text = "".join(traceback.format_exception(error))
            for secret in secrets:
                text = scrub(text, secret)
            print(scrub(text, None), end="", file=sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        return 1

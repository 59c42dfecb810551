"""Errors the package raises on purpose, and how any error reads for a user.

Every module raises its own subclass of `CovidSegError` (`PublishError`, `EvaluateError`,
...): a message worded for the user, naming the file, the record and the problem. The
command's boundary (`cli.boundary`) prints those as one line; anything else is a bug and
keeps its traceback. Subclasses also derive from the built-in type that fits (ValueError
for bad input, OSError for an output that cannot be written), so a library user's
`except ValueError` keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx2  # huggingface_hub's HTTP client: its transport errors mean "network down"
from huggingface_hub.errors import HfHubHTTPError

__all__ = ["CovidSegError", "describe", "exception_chain", "scrub"]

_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


class CovidSegError(Exception):
    """An error this package raises on purpose: its message is for the user as it is."""


def exception_chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what caused it or was being handled when it was raised, and so on; each
    error once, so a chain that loops back ends. Libraries (datasets, multiprocessing) re-raise
    the error a user should see as the cause or context of their own."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def describe(error: BaseException) -> str:
    """One line for the user: our errors as they are worded, the Hub's and the network's with
    what they mean."""
    if isinstance(error, httpx2.TransportError):
        return f"cannot reach the Hub ({type(error).__name__}: {error}); check the network or HF_ENDPOINT"
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        if status == 401:
            return f"the Hub refused the token (HTTP 401): {first_line}"
        return f"HTTP {status}: {first_line}"
    return str(error)


def scrub(text: str, token: str | None) -> str:
    """`text` without `token` and without anything shaped like a Hugging Face token."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN.sub("hf_***", text)

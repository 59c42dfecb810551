"""Errors the package raises on purpose, and how any error reads for a user.

Every module raises its own subclass of `CovidSegError` (`PublishError`, `EvaluateError`,
...), which carries what went wrong as fields: the `file` (or folder, repo, cell) it is in,
the `setting` and `value` that are wrong, the `problem` and the `fix`. A setting named in
the problem or the fix is written `${name}` (`covid_chestxray_seg.setting`). `str(error)`
words the settings as Python names them (`revision='v2'`); the command's boundary
(`cli.boundary`) words them with its options (`--revision v2`), as huggingface_hub's CLI
words errors at its boundary, and prints one line; anything else is a bug and keeps its
traceback. Subclasses also derive from the built-in type that fits (ValueError for bad
input, OSError for an output that cannot be written), so a library user's `except
ValueError` keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx2  # huggingface_hub's HTTP client: its transport errors mean "network down"
from huggingface_hub.errors import HfHubHTTPError

import covid_chestxray_seg as recipe

__all__ = ["CovidSegError", "describe", "exception_chain", "scrub"]

_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


_UNSET = object()


class CovidSegError(Exception):
    """An error this package raises on purpose, as fields; its message is for the user.

    Args:
        problem: what is wrong, naming settings as `${name}`.
        file: the file, folder, repo or cell the problem is in.
        setting: the setting whose value is wrong (its Python name).
        value: that setting's value.
        fix: what to do about it, naming settings as `${name}`.

    The message reads "FILE: SETTING VALUE: PROBLEM; FIX", each part where it is given.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: object = None,
        setting: str | None = None,
        value: object = _UNSET,
        fix: str | None = None,
    ):
        self.problem, self.file, self.setting, self.fix = problem, file, setting, fix
        self.value = value
        super().__init__(self.render())

    def render(self, names: recipe.SettingNames | None = None) -> str:
        """The message, its settings worded by `names` (default: as Python names them)."""
        names = names or recipe.SettingNames()
        head = [] if self.file is None else [str(self.file)]
        if self.setting is not None:
            head.append(
                names.reference(self.setting, None) if self.value is _UNSET else names.value(self.setting, self.value)
            )
        text = ": ".join([*head, self.problem]) + (f"; {self.fix}" if self.fix else "")
        return names.words(text)

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its fields when it crosses from a worker process (the "no value" marker
        # is this process's own object, so it travels as a flag).
        given = self.value is not _UNSET
        return (
            _rebuild,
            (type(self), self.problem, self.file, self.setting, given, self.value if given else None, self.fix),
        )


def _rebuild(
    kind: type[CovidSegError],
    problem: str,
    file: object,
    setting: str | None,
    given: bool,
    value: object,
    fix: str | None,
) -> CovidSegError:
    return kind(problem, file=file, setting=setting, value=value if given else _UNSET, fix=fix)


def exception_chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what caused it or was being handled when it was raised, and so on; each
    error once, so a chain that loops back ends. Libraries (datasets, multiprocessing) re-raise
    the error a user should see as the cause or context of their own."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def describe(error: BaseException, names: recipe.SettingNames | None = None) -> str:
    """One line for the user: our errors (and the builder's) with their settings worded by
    `names`, the Hub's and the network's with what they mean."""
    if isinstance(error, (CovidSegError, recipe.BuildError)):
        return error.render(names)
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

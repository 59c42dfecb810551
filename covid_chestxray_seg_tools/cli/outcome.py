"""What a subcommand hands back to the command: the text to print, the same as JSON for
`--json`, and the exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = ["Outcome", "OutcomeError"]


class OutcomeError(CovidSegError, OSError):
    """The --json file cannot be written."""


@dataclass(frozen=True)
class Outcome:
    """A subcommand's result.

    Attributes:
        text: what is printed on stdout (a summary, a table).
        data: the same as plain JSON values, written by `--json`.
        exit_code: 0 when the work succeeded; 1 for a result that is a failure (a validation
            report with hard errors).
    """

    text: str
    data: Mapping[str, Any] = field(default_factory=dict)
    exit_code: int = 0

    def emit(self, *, json_path: Path | None) -> int:
        """Print the text (or, with `--json -`, the JSON), write `--json FILE`; the exit code."""
        document = json.dumps(self.data, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n"
        if json_path is not None and str(json_path) == "-":
            sys.stdout.write(document)
            return self.exit_code
        if self.text:
            print(self.text.rstrip("\n"))
        if json_path is not None:
            try:
                Path(json_path).write_text(document, encoding="utf-8")
            except OSError as error:
                raise OutcomeError(f"--json {json_path}: cannot write the file ({error.strerror or error})") from None
        return self.exit_code

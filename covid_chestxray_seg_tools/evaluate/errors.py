"""The evaluation's errors: input that cannot be scored, and a report that cannot be written."""

from __future__ import annotations

from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = ["EvaluateError", "ReportError"]


class EvaluateError(CovidSegError, ValueError):
    """Predictions or options that cannot be scored: the message names the file, cell or option and the problem."""


class ReportError(CovidSegError, OSError):
    """A report file (the per-image CSV, the HTML report) that cannot be written."""

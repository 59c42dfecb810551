"""What the Hub's dataset viewer shows of a build: its first-rows preview.

The rule (dataset-viewer's `create_first_rows_response` in libcommon
`viewer_utils/rows.py` and its `FIRST_ROWS_*` settings, as read in its source and
measured with it for issue #11, 2026-11): the first-rows response has a byte budget
(FIRST_ROWS_MAX_BYTES, 200 KB in production); at least FIRST_ROWS_MIN_NUMBER (10) rows
are kept, later rows are added only while the JSON of the rows stays within the budget;
image cells are served as URLs of re-saved JPEGs, so they count as their URL (about 180
bytes), not as their bytes. This module applies that rule to a build, so the card can
say how many rows the viewer's first page shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = [
    "FIRST_ROWS_MAX_BYTES",
    "FIRST_ROWS_MAX_NUMBER",
    "ROWS_INDEX_MAX_ARROW_BYTES",
    "first_rows_shown",
    "row_bytes",
]

# One read of the viewer's rows index may scan at most this much Arrow data
# (ROWS_INDEX_MAX_ARROW_DATA_IN_MEMORY); a row group is the smallest unit a read scans.
# The former 100 MB row-group rule for copying Parquet files is gone (dataset-viewer PR #3267,
# 2025-11): a Parquet repo whose data files are all on the Hub is served as it is.
ROWS_INDEX_MAX_ARROW_BYTES = 300_000_000
FIRST_ROWS_MAX_BYTES = 200_000
_FIRST_ROWS_MIN_NUMBER = 10
FIRST_ROWS_MAX_NUMBER = 100
# A viewer image cell: {"src": URL, "height": H, "width": W}, where URL is
# https://datasets-server.huggingface.co/assets/<repo>/--/<rev>/--/<config>/<split>/<row>/<column>/image.jpg?Expires=...&Signature=...&Key-Pair-Id=...
_IMAGE_CELL_BYTES = 180


def row_bytes(row: dict, image_columns: Iterable[str]) -> int:
    """The JSON size of a row as the viewer serves it: image cells as their URL."""
    images = set(image_columns)
    cells = {
        key: (None if value is None else "u" * _IMAGE_CELL_BYTES) if key in images else value
        for key, value in row.items()
    }
    return len(json.dumps(cells, ensure_ascii=False, default=str).encode("utf-8"))


def first_rows_shown(rows: Iterable[dict], image_columns: Iterable[str]) -> int:
    """How many of `rows` (in order) the first-rows preview shows."""
    images = list(image_columns)
    shown, total = 0, 0
    for row in rows:
        if shown >= FIRST_ROWS_MAX_NUMBER:
            break
        size = row_bytes(row, images)
        if shown >= _FIRST_ROWS_MIN_NUMBER and total + size > FIRST_ROWS_MAX_BYTES:
            break
        total += size
        shown += 1
    return shown

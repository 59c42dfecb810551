"""The text output's Markdown as HTML, for the report: the same tables, cell for cell.

Only what `report` writes: paragraphs, pipe tables (`| a | b |`, a `---:` column is numeric),
`**bold**` and `` `code` ``. A cell "mean [low, high]" shows its interval in a quieter style;
the text inside stays the same characters, so the page reads (and parses) as the terminal does.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Table", "inline", "markdown_blocks", "table_html"]

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
# "0.812 [0.792, 0.834]", "+0.012 [0.001, 0.020] *": a mean, its interval, the mark.
_INTERVAL = re.compile(r"^(\S+) (\[[^\]]+\])( \*)?$")


@dataclass(frozen=True)
class Table:
    """A table: its head, its rows of cell texts (Markdown inline), its numeric columns.

    A row shorter than the head has its last cell span the remaining columns.
    """

    head: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: frozenset[int]

    def with_column(self, index: int, name: str, cells: Sequence[str]) -> Table:
        """This table with a column `name` inserted at `index` (`cells`: one per row)."""

        def shift(column: int) -> int:
            return column + 1 if column >= index else column

        return Table(
            head=[*self.head[:index], name, *self.head[index:]],
            rows=[[*row[:index], cell, *row[index:]] for row, cell in zip(self.rows, cells)],
            numeric=frozenset(shift(column) for column in self.numeric),
        )


def inline(text: str) -> str:
    """Markdown inline text (`**bold**`, `` `code` ``) as escaped HTML."""
    escaped = html.escape(text, quote=False)
    return _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<strong>\1</strong>", escaped))


def _split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def markdown_blocks(text: str) -> list[str | Table]:
    """The paragraphs (joined lines) and tables of Markdown text, in order.

    Args:
        text: Markdown as `report` writes it.

    Returns:
        A paragraph as its text, a table as a `Table`.
    """
    blocks: list[str | Table] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        if lines[0].startswith("|") and len(lines) >= 2:
            rule = _split_row(lines[1])
            blocks.append(
                Table(
                    head=_split_row(lines[0]),
                    rows=[_split_row(line) for line in lines[2:]],
                    numeric=frozenset(index for index, cell in enumerate(rule) if cell.endswith(":")),
                )
            )
        else:
            blocks.append(" ".join(line.strip() for line in lines))
    return blocks


def _cell(text: str) -> str:
    match = _INTERVAL.match(text)
    if match is None:
        return inline(text)
    mean, interval, mark = match.groups()
    marked = ' <span class="mark">*</span>' if mark else ""
    # The interval and its mark wrap together, never apart.
    return f'{inline(mean)} <span class="ci">{inline(interval)}{marked}</span>'


def table_html(table: Table, *, ident: str, span: int | None = None) -> str:
    """A `Table` as an HTML table with id `ident`.

    Args:
        table: the table.
        ident: the element's id.
        span: the columns a short row's last cell spans up to (default: the head's).

    Returns:
        HTML.
    """
    width = span or len(table.head)

    def cls(index: int) -> str:
        return ' class="num"' if index in table.numeric else ""

    head = "".join(f"<th{cls(index)}>{inline(cell)}</th>" for index, cell in enumerate(table.head))
    rows = []
    for row in table.rows:
        cells = [f"<td{cls(index)}>{_cell(cell)}</td>" for index, cell in enumerate(row[:-1])]
        last = len(row) - 1
        if len(row) < width:
            cells.append(f'<td class="skipped" colspan="{width - last}">{_cell(row[-1])}</td>')
        else:
            cells.append(f"<td{cls(last)}>{_cell(row[-1])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'

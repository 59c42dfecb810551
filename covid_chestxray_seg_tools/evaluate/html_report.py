"""The HTML report (`covid-seg evaluate --report FILE.html`): one self-contained page that renders
what `--json` holds, for a reader and for a paper's supplement.

One file: the styles inline, every picture a `data:` URI, no script, nothing from the network,
so it opens offline and from an e-mail. Its numbers are the result's: the per-class, per-fold,
severity and comparison tables are the text output's own Markdown tables (`report`) turned
into HTML, so the page and the terminal cannot round differently; only the pictures need more
than the result (the source's images and the predictions' masks, `worst_cases`).

    what was scored   source and revision, split / cv / fold, images, patients, classes and
                      tiers, the protocol's conventions, who computed each metric (versions)
    headline          the benchmark's number (`summary`)
    per class         mean and 95 % interval per metric, each fold's mean under cv
    distributions     per-image values of each class with enough scored pairs
    worst cases       per class the lowest-Dice images, true / false positives / negatives
    severity          the opacity burden against the radiologists' scores
    comparison        with a second set of predictions: the forest plot and where A and B differ
    every pair        every image x class scored, and every pair skipped with why
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate import figures
from covid_chestxray_seg_tools.evaluate.errors import ReportError
from covid_chestxray_seg_tools.evaluate.html_sections import (
    comparison_section,
    metric_label,
    pairs_section,
    worst_section,
)
from covid_chestxray_seg_tools.evaluate.markdown_html import Table, inline, markdown_blocks, table_html
from covid_chestxray_seg_tools.evaluate.metrics import OVERLAP_METRICS
from covid_chestxray_seg_tools.evaluate.protocol import CV
from covid_chestxray_seg_tools.evaluate.report import (
    format_results,
    headline_text,
    severity_table,
    tiers_text,
    write_atomically,
)
from covid_chestxray_seg_tools.evaluate.result import Metric, ScoreResult
from covid_chestxray_seg_tools.evaluate.worst_cases import DEFAULT_WORST, draw_cases
from covid_chestxray_seg_tools.source import Source, open_source

if TYPE_CHECKING:
    from covid_chestxray_seg_tools.evaluate import EvaluateRequest

__all__ = ["DEFAULT_WORST", "ReportOptions", "render_report", "write_report"]

_DISTRIBUTION_METRICS: tuple[Metric, ...] = ("dice", "nsd", "hd95_pct")
# Which code computed what, the packages whose versions the page gives beside it.
_IMPLEMENTATIONS = (
    ("Dice, IoU", "ours (covid_chestxray_seg_tools.evaluate.metrics), numpy", ("numpy",)),
    (
        "HD95, ASSD",
        "ours with MONAI's definitions (compute_hausdorff_distance at the 95th percentile, "
        "compute_average_surface_distance symmetric); surface distances by scipy's cKDTree; "
        "tests/test_monai.py checks them against MONAI",
        ("numpy", "scipy"),
    ),
    ("NSD", "ours with MONAI's compute_surface_dice definition, checked against MONAI", ("numpy", "scipy")),
    ("clDice", "ours (Shit et al., CVPR 2021) with scikit-image's skeletonize", ("scikit-image",)),
    ("95 % intervals", "ours: percentile bootstrap over patients", ("numpy",)),
    (
        "Severity agreement",
        "Spearman's rho by scipy.stats.spearmanr; its interval ours (patient bootstrap)",
        ("scipy",),
    ),
    ("Reading the data", "the source through datasets and pyarrow", ("datasets", "pyarrow")),
    ("This page", "covid-seg; plots by matplotlib, thumbnails by Pillow", ("matplotlib", "pillow")),
)
_PACKAGE = "covid-chestxray-seg"
_STYLE = """
:root{--ink:#1b1b1b;--muted:#5d5d5d;--rule:#d8dbe0;--band:#f3f5f8;--accent:#0072b2}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
max-width:1240px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:40px 0 10px;padding-bottom:4px;
border-bottom:2px solid var(--rule)}h3{font-size:16px;margin:22px 0 6px}
p{margin:6px 0 10px;max-width:110ch}.muted,.ci{color:var(--muted)}.ci{font-size:12px;white-space:nowrap}
code{font:0.9em ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;background:#eff1f4;
padding:0 3px;border-radius:3px}
nav ol{columns:2;margin:8px 0 0;padding-left:20px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13.5px;margin:8px 0 18px}
th,td{padding:4px 10px;border-bottom:1px solid var(--rule);text-align:left;vertical-align:top}
th{background:var(--band);font-weight:600}td.num,th.num{text-align:right}
tbody tr:hover{background:#fafbfc}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:8px 0 14px}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.headline{border-left:6px solid var(--accent);background:var(--band);padding:12px 18px;font-size:18px;margin:10px 0}
.headline strong{font-size:19px}
img.plot{max-width:100%;height:auto;display:block;margin:8px 0}
.legend{display:flex;gap:22px;flex-wrap:wrap;margin:6px 0 12px;font-size:14px}
.swatch{display:inline-block;width:16px;height:16px;vertical-align:-3px;margin-right:6px;border:1px solid #0004}
.cases{display:flex;flex-wrap:wrap;gap:16px}
figure.case{margin:0;width:256px;font-size:12.5px;line-height:1.4}
figure.case img{display:block;max-width:256px;border:1px solid var(--rule)}
figure.case figcaption{margin-top:4px;overflow-wrap:anywhere}
details{margin:4px 0}summary{cursor:pointer;font-weight:600;padding:3px 0}
td.skipped{color:var(--muted);font-style:italic}
.mark{color:#b34700;font-weight:700}
@media print{nav{display:none}h2,h3{break-after:avoid}figure,tr,img{break-inside:avoid}body{max-width:none}}
"""


@dataclass(frozen=True)
class ReportOptions:
    """What the report is asked for.

    Attributes:
        path: the HTML file written (replaced when it exists).
        worst: the worst cases shown per class.
    """

    path: Path
    worst: int = DEFAULT_WORST


def write_report(result: ScoreResult, *, request: EvaluateRequest, options: ReportOptions) -> int:
    """Write the HTML report of a result: whole or not at all (a temporary file beside it,
    then renamed over it).

    Args:
        result: what `evaluate(request)` returned.
        request: what was scored: the source, the predictions and their threshold.
        options: the file, and how many worst cases per class.

    Returns:
        The page's size in bytes.

    Raises:
        ReportError: the file cannot be written, or `worst` is below 1.
        source.SourceError: the source cannot be read.
        EvaluateError: the predictions cannot be read.
    """
    path = Path(options.path)
    if options.worst < 1:
        raise ReportError("must be at least 1", setting="report_worst", value=options.worst)
    page = render_report(result, request=request, worst=options.worst).encode("utf-8")
    write_atomically(path, page, setting="report")
    return len(page)


def render_report(result: ScoreResult, *, request: EvaluateRequest, worst: int = DEFAULT_WORST) -> str:
    """The report's HTML.

    Args:
        result: what `evaluate(request)` returned.
        request: what was scored. Its source opened (a `Source`, as the command passes it)
            names the commit scored; a Hub repo id given as a string is opened again here,
            at whatever commit its branch is on by then.
        worst: the worst cases shown per class.

    Returns:
        The page, one self-contained HTML document.

    Raises:
        source.SourceError: the source cannot be read.
        EvaluateError: the predictions cannot be read.
    """
    source = open_source(request.source)
    cases = draw_cases(result, source=source, predictions=request.predictions, threshold=request.threshold, count=worst)
    sections = [
        ("scored", "What was scored", _scored(result, source=source, request=request)),
        ("headline", "Headline", _headline(result)),
        ("classes", "Per class", _per_class(result)),
        ("distributions", "Per-image distributions", _distributions(result)),
        ("worst", "Worst cases", worst_section(result, cases, worst=worst)),
    ]
    if result.get("severity"):
        sections.append(("severity", "Agreement with the radiologists' severity scores", _severity(result)))
    if result.get("comparison"):
        sections.append(("comparison", "Comparison A - B", comparison_section(result, cases)))
    sections.append(("pairs", "Every image and class", pairs_section(result, cases)))
    title = f"Evaluation report: {_PACKAGE}"
    toc = "".join(f'<li><a href="#{anchor}">{html.escape(name)}</a></li>' for anchor, name, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{html.escape(name)}</h2>{content}</section>' for anchor, name, content in sections
    )
    scope = _scope(result)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}: {html.escape(scope)}</title><style>{_STYLE}</style></head><body>"
        f'<header><h1>{html.escape(title)}</h1><p class="muted">{inline(f"`{request.predictions}`")} scored on '
        f"{html.escape(scope)} against {inline(f'`{source}`')} by covid-seg {html.escape(_version(_PACKAGE))}.</p>"
        f"<nav><strong>Contents</strong><ol>{toc}</ol></nav></header><main>{body}</main></body></html>\n"
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _scope(result: ScoreResult) -> str:
    if result["split"] != CV:
        return f"the {result['split']} split"
    if result.get("fold") is None:
        return f"cross-validation ({recipe.FOLDS} folds, out-of-fold predictions)"
    return f"cross-validation fold {result['fold']}"


def _paragraphs(text: str) -> list[str]:
    return [block for block in markdown_blocks(text) if isinstance(block, str)]


def _tables(text: str) -> list[Table]:
    return [block for block in markdown_blocks(text) if isinstance(block, Table)]


def _scored(result: ScoreResult, *, source: Source, request: EvaluateRequest) -> str:
    counts = result["counts"]
    revision = "" if source.revision is None else f" at commit <code>{html.escape(source.revision)}</code>"
    facts = [
        ("Source", f"{inline(f'`{source.location}`')}{revision}"),
        ("Predictions", inline(f"`{request.predictions}`")),
    ]
    comparison = result.get("comparison")
    if comparison:
        facts.append(("Compared with (B)", inline(f"`{comparison['against']}`")))
    facts += [
        ("Scored", html.escape(_scope(result))),
        ("Images", f"{counts['images']} of {counts['patients']} patients"),
        ("Image-class pairs", f"{counts['scored']} scored of {counts['pairs']}"),
    ]
    if result.get("not_predicted"):
        facts.append(("Not predicted", html.escape(", ".join(result["not_predicted"]))))
    if request.threshold is not None:
        facts.append(("Threshold", f"probability maps cut at {request.threshold:g} of full scale"))
    listed = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    tiers = result.get("tiers", {})
    rows = [
        [name, tiers.get(name, recipe.CLASS_TIERS[name]), str(entry["n"])] for name, entry in result["classes"].items()
    ]
    classes = table_html(Table(head=["Class", "Tier", "n scored"], rows=rows, numeric=frozenset({2})), ident="tiers")
    # The protocol's conventions as the text output states them: its closing paragraph.
    conventions = _paragraphs(format_results([result]))[-1]
    implementations = Table(
        head=["What", "Computed by", "Versions"],
        rows=[
            [what, who, ", ".join(f"{package} {_version(package)}" for package in (_PACKAGE, *packages))]
            for what, who, packages in _IMPLEMENTATIONS
        ],
        numeric=frozenset(),
    )
    return (
        f'<dl class="facts">{listed}</dl><h3>Classes and tiers</h3><p>{inline(tiers_text())}</p>{classes}'
        f"<h3>Conventions</h3><p>{inline(conventions)}</p>"
        f"<h3>Implementations</h3>{table_html(implementations, ident='implementations')}"
    )


def _headline(result: ScoreResult) -> str:
    return f'<div class="headline">{inline(headline_text(result))}</div>'


def _per_class(result: ScoreResult) -> str:
    tables = _tables(format_results([result]))
    tiers = result.get("tiers", {})
    names = ("overlap", "distances", "folds")
    parts = []
    for ident, table in zip(names, tables):
        if ident != "folds":
            table = table.with_column(1, "Tier", [tiers.get(row[0], "") for row in table.rows])
        else:
            parts.append("<p>Mean of each fold, Dice / NSD:</p>")
        parts.append(table_html(table, ident=ident))
    return "".join(parts)


def _distributions(result: ScoreResult) -> str:
    shown = [name for name, entry in result["classes"].items() if entry["n"] >= figures.MIN_DISTRIBUTION_PAIRS]
    small = [name for name in result["classes"] if name not in shown]
    note = (
        f'<p class="muted">Fewer than {figures.MIN_DISTRIBUTION_PAIRS} scored pairs, in the tables only: '
        f"{html.escape(', '.join(small))}.</p>"
        if small
        else ""
    )
    if not shown:
        return note
    values: dict[str, dict[str, list[float]]] = {
        name: {
            metric: [value for image in result["images"] if (value := image["classes"][name].get(metric)) is not None]
            for metric in _DISTRIBUTION_METRICS
        }
        for name in shown
    }
    labels: dict[str, str] = {metric: metric_label(result, metric) for metric in _DISTRIBUTION_METRICS}
    png = figures.distribution_png(values, labels=labels, bounded=OVERLAP_METRICS)
    caption = (
        "Each scored pair's value (a dot) over a box of the quartiles and the median, whiskers to the furthest "
        "values within 1.5 IQR. Distances exist only where both masks have pixels."
    )
    return (
        f'<p>{caption}</p><img class="plot" id="distribution" alt="per-image Dice, NSD and HD95 per class" '
        f'src="{figures.data_uri(png)}">{note}'
    )


def _severity(result: ScoreResult) -> str:
    if result["split"] == CV and result.get("fold") is None:
        lines = "\n".join(severity_table(result))
        intro, table = _paragraphs(lines)[0], _tables(lines)[0]
        return f"<p>{inline(intro)}</p>{table_html(table, ident='severity')}"
    # Few images are scored outside the cross-validation (11 on the test split): a rank
    # correlation's point value means little there, so the page gives the number and the interval.
    rows = []
    for column, entry in result.get("severity", {}).items():
        interval = entry["interval"]
        shown = "–" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"
        rows.append([f"`{column}`", str(entry["n"]), shown])
    small = Table(head=["score", "n", "95 % interval of rho (predicted)"], rows=rows, numeric=frozenset({1}))
    return (
        "<p>Spearman's rho between the opacity burden of the predictions' own masks (the share of the lung "
        "fields covered by ground-glass opacity or consolidation) and ieee8023's expert scores, with a "
        f"patient-bootstrap 95 % interval. <strong>n is small here</strong>: on {html.escape(_scope(result))} "
        "only the number of images and the interval are given; the agreement to read is the "
        "cross-validation's.</p>"
        f"{table_html(small, ident='severity')}"
    )

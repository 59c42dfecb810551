"""`covid-seg benchmark`: build, loading, streaming and size, each against a baseline run in the
same process tree. A maintainer's tool: it needs a clone of the repository (its naive
baselines and the local Hub live beside the tests, not in the installed package)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = ["register", "run"]

_EXAMPLES = """\
  covid-seg benchmark --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset \\
      --severity-file ../shared/data/ieee8023-covid-chestxray-dataset/annotations/covid-severity-scores.csv \\
      --json benchmark.json --markdown benchmarks/RESULTS.md
  covid-seg benchmark --data-dir tests/fixtures/data \\
      --severity-file tests/fixtures/severity/covid-severity-scores.csv --smoke
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "benchmark",
        summary="measure build, load, stream and size against baselines (from a clone)",
        description="Benchmark the build, loading, streaming and size, each against a baseline run in the same "
        "process tree on the same machine (about 9 minutes on the full data).",
        examples=_EXAMPLES,
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the upstream data (or the fixture, --smoke)")
    parser.add_argument(
        "--severity-file", type=Path, required=True, help="ieee8023's covid-severity-scores.csv (a local copy)"
    )
    parser.add_argument(
        "--scale",
        type=options.positive_int,
        default=10,
        help="copies of the data for the scale test; 1 skips it (default: 10)",
    )
    parser.add_argument("--smoke", action="store_true", help="small data: accept a cut-down metadata.csv")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the table, with the date and the machine, as Markdown (benchmarks/RESULTS.md)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> Outcome:
    from covid_chestxray_seg_tools import benchmark

    # Under the boundary, SIGTERM and SIGHUP unwind like Ctrl-C: the measured subprocess is
    # killed and the work folder removed, instead of a build left running.
    with tempfile.TemporaryDirectory(prefix="covid-chestxray-seg-benchmark-") as folder:
        results = benchmark.run(
            data_dir=args.data_dir.resolve(),
            severity_file=args.severity_file.resolve(),
            smoke=args.smoke,
            scale=args.scale,
            work=Path(folder),
        )
    if args.markdown is not None:
        try:
            args.markdown.write_text(benchmark.format_markdown(results), encoding="utf-8")
        except OSError as error:
            raise benchmark.BenchmarkError(
                f"cannot write the file ({error.strerror or error})", setting="markdown", value=str(args.markdown)
            ) from None
    return Outcome(text=benchmark.format_table(results), data=results)

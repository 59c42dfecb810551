"""Benchmark the build, loading, streaming and size against the loaders people write by hand:
the command line. The measurements are `covid_chestxray_seg_tools.benchmark`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from covid_chestxray_seg_tools import benchmark, cli

EXAMPLES = """\
examples:
  python scripts/benchmark.py --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset \
      --severity-file ../shared/data/ieee8023-covid-chestxray-dataset/annotations/covid-severity-scores.csv --json benchmark.json
  python scripts/benchmark.py --data-dir tests/fixtures/data --severity-file tests/fixtures/severity/covid-severity-scores.csv --smoke
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/benchmark.py",
        description="Benchmark the build, loading, streaming and size, each against a baseline run in the same process tree.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="the upstream data (or the test fixture with --smoke)"
    )
    parser.add_argument(
        "--severity-file", type=Path, required=True, help="ieee8023's covid-severity-scores.csv (a local copy)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--scale", type=int, default=10, help="copies of the data for the scale test; 1 skips it (default: 10)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="small data: accept a cut-down metadata.csv, skip nothing else"
    )
    args = parser.parse_args(argv)

    def work() -> None:
        # Under cli.run, SIGTERM and SIGHUP unwind like Ctrl-C: the measured subprocess is
        # killed and the work folder removed, instead of a build left running.
        with tempfile.TemporaryDirectory(prefix="covid-chestxray-seg-benchmark-") as folder:
            results = benchmark.run(
                data_dir=args.data_dir.resolve(),
                severity_file=args.severity_file.resolve(),
                smoke=args.smoke,
                scale=args.scale,
                work=Path(folder),
            )
        print(benchmark.format_table(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main())

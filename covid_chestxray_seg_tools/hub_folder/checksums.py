"""The build's manifest of its data files, `checksums.json`: size, SHA-256 and git blob SHA-1 of
every Parquet shard, so that a copy (a folder, a Hub repo) missing, truncating or swapping a
shard is found without reading it.

    {"format": 1, "files": {"data/licensed/test-00000-of-00004.parquet":
                            {"size": 183219, "sha256": "9f2c...", "git_sha1": "41ab..."}, ...}}

The Hub's tree lists every LFS file's size and SHA-256 (git blob id for the others), so a Hub
copy is checked against it without a download. This module compares; `source` words what
differs for the user.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = ["FORMAT", "FileSum", "Mismatch", "compare", "describe", "file_sum", "parse", "scan", "write"]

FORMAT = 1


@dataclass(frozen=True)
class FileSum:
    """A file as the manifest knows it (or as a copy shows it: a Hub tree gives no SHA-256 for
    a file outside LFS, no git blob id is computed for a local one).

    Attributes:
        size: bytes.
        sha256: hex digest, or None where unknown.
        git_sha1: git blob id, or None where unknown.
    """

    size: int
    sha256: str | None = None
    git_sha1: str | None = None


@dataclass(frozen=True)
class Mismatch:
    """A data file whose copy differs from the manifest.

    Attributes:
        path: the file, relative to the build's root.
        problem: "missing", "extra" (not in the manifest), or "different".
        expected: what the manifest says (None for a file it does not list).
        found: what the copy holds (None for a missing file).
    """

    path: str
    problem: str
    expected: FileSum | None
    found: FileSum | None

    @property
    def split(self) -> str | None:
        """The split the file belongs to, from its name (`<split>-NNNNN-of-NNNNN.parquet`)."""
        stem = Path(self.path).name.split("-", 1)[0]
        return stem if stem in recipe.SPLITS else None


def file_sum(data: bytes) -> FileSum:
    """Size and both hashes of `data`."""
    return FileSum(size=len(data), sha256=hashlib.sha256(data).hexdigest(), git_sha1=recipe.git_blob_sha1(data))


def scan(folder: Path) -> dict[str, FileSum]:
    """The data files of a built folder (every Parquet file under `data/`), by path, hashed."""
    root = Path(folder)
    return {
        path.relative_to(root).as_posix(): file_sum(path.read_bytes())
        for path in sorted((root / layout.DATA_DIR).rglob("*.parquet"))
    }


def write(folder: Path) -> dict[str, FileSum]:
    """Write `checksums.json` for the data files of `folder`; returns what it lists."""
    files = scan(folder)
    document = {
        "format": FORMAT,
        "files": {path: {"size": s.size, "sha256": s.sha256, "git_sha1": s.git_sha1} for path, s in files.items()},
    }
    (Path(folder) / layout.CHECKSUMS_FILENAME).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return files


def parse(data: bytes) -> dict[str, FileSum]:
    """The files a `checksums.json` lists.

    Raises:
        ValueError: not such a file (the message says what is wrong).
    """
    try:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT}")
        return {
            str(path): FileSum(size=int(entry["size"]), sha256=str(entry["sha256"]), git_sha1=str(entry["git_sha1"]))
            for path, entry in document["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a readable manifest ({type(error).__name__}: {error})") from None


def compare(expected: Mapping[str, FileSum], found: Mapping[str, FileSum]) -> list[Mismatch]:
    """The data files of a copy that differ from the manifest: missing, extra (a config's file
    pattern would read them), or with another size or hash. Hashes are compared where both
    sides know one.

    Args:
        expected: the manifest's files.
        found: the copy's data files (every Parquet file under `data/`).

    Returns:
        The differences, in path order; empty when the copy is intact.
    """
    mismatches = []
    for path in sorted({*expected, *found}):
        want, have = expected.get(path), found.get(path)
        if have is None:
            mismatches.append(Mismatch(path, "missing", want, None))
        elif want is None:
            mismatches.append(Mismatch(path, "extra", None, have))
        elif not _same(want, have):
            mismatches.append(Mismatch(path, "different", want, have))
    return mismatches


def describe(mismatches: Sequence[Mismatch]) -> str:
    """The first difference in words (with its split), and how many more there are.

    Args:
        mismatches: what `compare` found, not empty.
    """
    first = mismatches[0]
    manifest = layout.CHECKSUMS_FILENAME
    if first.problem == "missing" and first.expected is not None:
        what = f"is missing (the build's {manifest} lists it, {first.expected.size:,} bytes)"
    elif first.problem == "extra":
        what = f"is not in the build's {manifest} (a file the build did not write, which a config would read)"
    elif first.expected is not None and first.found is not None and first.expected.size != first.found.size:
        what = f"differs from the build's {manifest}: {first.found.size:,} bytes, expected {first.expected.size:,}"
    else:
        what = f"differs from the build's {manifest}: the same size, other content"
    more = f" (and {len(mismatches) - 1} more data files)" if len(mismatches) > 1 else ""
    split = f"split {first.split}: " if first.split else ""
    return f"{split}{first.path} {what}{more}"


def _same(want: FileSum, have: FileSum) -> bool:
    if want.size != have.size:
        return False
    if want.sha256 and have.sha256:
        return want.sha256 == have.sha256
    if want.git_sha1 and have.git_sha1:
        return want.git_sha1 == have.git_sha1
    return False

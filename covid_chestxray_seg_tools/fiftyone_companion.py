"""The FiftyOne companion repo: its id, its card, the main card's links to it, and its publish.

FiftyOne's `load_from_hub` cannot read masks or `objects` from the Parquet repo (see the
README, "FiftyOne"), so the same records are also published in FiftyOne's own format
(`fiftyone_export`) to a second dataset repo, by default the main repo's id + "-fiftyone".
The two cards link each other. This module does not import FiftyOne: the main card and the
command line use it whether FiftyOne is installed or not; `exporter()` and
`publish_companion` need it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from huggingface_hub import DatasetCard, DatasetCardData

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout
from covid_chestxray_seg_tools.card.render import DEFAULT_REPO_ID, LICENSE_NAME
from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = [
    "DEFAULT_REPO_ID",
    "OWNED_FOLDERS",
    "SUFFIX",
    "CompanionError",
    "FiftyOneMissingError",
    "check_companion_id",
    "companion_card",
    "companion_repo_id",
    "exporter",
    "is_repo_id",
    "link_companion",
    "publish_companion",
]

SUFFIX = "-fiftyone"
# The folders of FiftyOne's export layout: media (data/) and files of media and label fields
# (fields/); a publish deletes what an export no longer has there.
OWNED_FOLDERS = ("data/", "fields/")
SECTION = "## FiftyOne"
INSTALL = "pip install 'covid-chestxray-seg[fiftyone]'"
_LOAD_FROM_HUB = re.compile(r"""load_from_hub\(\s*["']([^"']+)["']""")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class CompanionError(CovidSegError, ValueError):
    """A companion publish that cannot go ahead."""


class FiftyOneMissingError(CovidSegError, ImportError):
    """FiftyOne, an optional extra, is not installed."""


def companion_repo_id(repo_id: str) -> str:
    """The companion of `repo_id` unless told otherwise: ``ORG/NAME`` -> ``ORG/NAME-fiftyone``."""
    return repo_id + SUFFIX


def is_repo_id(source: str) -> bool:
    """`source` names a Hub repo (ORG/NAME), not a folder on disk."""
    return not Path(source).exists() and bool(_REPO_ID.match(source))


def exporter() -> ModuleType:
    """The `fiftyone_export` module.

    Returns:
        The module, with FiftyOne imported.

    Raises:
        FiftyOneMissingError: FiftyOne is not installed (it is an optional extra).
    """
    try:
        from covid_chestxray_seg_tools import fiftyone_export
    except ModuleNotFoundError as error:
        if error.name != "fiftyone" and not (error.name or "").startswith("fiftyone."):
            raise
        raise FiftyOneMissingError(f"FiftyOne is not installed (an optional extra): {INSTALL}") from None
    return fiftyone_export


def link_companion(card: str, companion_id: str) -> str:
    """The main card with its FiftyOne section naming `companion_id` (in the `load_from_hub`
    call and the links); a card without that section is returned as it is."""
    head, found, rest = card.partition(f"\n{SECTION}\n")
    if not found:
        return card
    section, next_heading, tail = rest.partition("\n## ")
    call = _LOAD_FROM_HUB.search(section)
    if call is None:
        return card
    section = section.replace(call.group(1), companion_id)
    return f"{head}{found}{section}{next_heading}{tail}"


def companion_card(*, repo_id: str, companion_id: str, samples: int, fiftyone_version: str) -> str:
    """The companion repo's README.md: what it holds, how to load it, the link back to
    `repo_id`, and the same licence information as the main card (LICENSE.md is the same file).

    Args:
        repo_id: the Parquet repo.
        companion_id: this repo.
        samples: the number of samples exported.
        fiftyone_version: the FiftyOne version that wrote the export.

    Returns:
        The card, YAML header included.
    """
    data = DatasetCardData(
        pretty_name="COVID-19 Chest X-ray Segmentations (FiftyOne)",
        license="other",
        license_name=LICENSE_NAME,
        license_link=layout.LICENSE_FILENAME,
        language=["en"],
        task_categories=["image-segmentation", "object-detection"],
        size_categories=["n<1K"],
        tags=["fiftyone", "image", "medical", "chest-x-ray", "covid-19", "segmentation-masks"],
        # The Hub's viewer would list data/ and fields/ as one folder of unrelated images; the
        # Parquet repo's viewer shows the records.
        viewer=False,
    )
    main = f"https://huggingface.co/datasets/{repo_id}"
    first_mask = recipe.MASK_COLUMNS[0]
    probes = recipe.mask_column("Monitoring Probes")
    body = f"""# COVID-19 Chest X-ray Segmentations (FiftyOne)

The [FiftyOne](https://docs.voxel51.com/) format of [{repo_id}]({main}): the same {samples}
chest X-rays with radiologist segmentations in {len(recipe.CLASSES)} classes, their COCO
annotations, metadata, expert severity scores, splits and folds, in one `load_from_hub` call.
The records, their classes, splits, folds, the evaluation protocol, the data's provenance and its
limitations are described on [{repo_id}]({main}), which also loads with `datasets` alone and
shows the records in the dataset viewer.

```python
import fiftyone as fo
from fiftyone.utils.huggingface import load_from_hub

dataset = load_from_hub("{companion_id}")
test = dataset.match_tags("test")  # the split is a sample tag
session = fo.launch_app(dataset)
```

## Fields

- `filepath`: the X-ray, the original file (JPEG or PNG); `overlay`: the X-ray with every class mask
  drawn (a second media field: switch to it in the App).
- `{first_mask}` ... one `Segmentation` field per class, pixel for pixel the mask columns of
  [{repo_id}]({main}): 255 where the class is (`dataset.mask_targets` names it), 0 elsewhere.
  A class not on the image has an all-zero mask. A class annotated on the image without a mask
  upstream (the null masks of the Parquet repo) has no label: the field is `None`
  (`dataset.exists("{probes}", False)` lists those images).
- `objects`: `Detections`, one per COCO annotation, as FiftyOne's COCO importer makes them:
  `label` (the class), `bounding_box` (relative `[x, y, w, h]`), `mask` (the instance mask inside
  the box), `iscrowd`, `coco_id` (the annotation id), `supercategory`, `area`. An annotation
  without a mask upstream has `mask` None.
- `image_id`, `file_name`, `width`, `height`, the metadata (`patient_id`, `sex`, `age`, `finding`,
  `view`, `license`, ...), `severity_geographic_extent`, `severity_opacity`, `fold` and the other
  columns of the Parquet repo, with the same names, types and nulls.

Samples are in the order of the Parquet repo (train, validation, test), with the same
`image_id`s and annotation ids. Scoring a prediction field against a class mask, with FiftyOne:

```python
results = dataset.evaluate_segmentations("my_left_lung", gt_field="{first_mask}", eval_key="eval_left_lung")
```

## Why a second repo

Pointed at a Parquet repo, `load_from_hub` reads the rows through the Hub's dataset-viewer server,
whose address FiftyOne fixes (`DATASETS_SERVER_URL`), downloads no mask file, and stops at a null
mask (fiftyone 1.22.1, `fiftyone/utils/huggingface.py`, as of 2026-12). So [{repo_id}]({main}) has
no `fiftyone.yml`, and this repo holds the same records as FiftyOne itself exports them.

## Licences

The same as [{repo_id}]({main}): the annotations are CC BY 4.0 (GeneralBlockchain); every image
keeps the licence of its source, in its `license` field, and where upstream names none `license`
is None and you must check the source (`url`, `doi`) before you redistribute the image
(`dataset.exists("license")` are the images with a known licence); the severity scores are
CC BY-SA 4.0 (ieee8023). [LICENSE.md](LICENSE.md) says it in full.

## Files

`metadata.json`, `samples.json`, `data/` and `fields/` are what FiftyOne {fiftyone_version} writes
for `fiftyone.types.FiftyOneDataset`; `fiftyone.yml` is what `load_from_hub` reads first. They were
exported from the Parquet build with `covid-seg export --format fiftyone` (covid-chestxray-seg
builder {recipe.BUILDER_VERSION}); exporting the same build again gives the same bytes. Cite the
dataset as [{repo_id}]({main}) says.
"""
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def check_companion_id(*, repo_id: str, companion_id: str) -> None:
    """Refuse a companion id that is not a repo id, or is the Parquet repo's own.

    Raises:
        CompanionError: what is wrong with `companion_id`.
    """
    if not _REPO_ID.match(companion_id) or companion_id.count("/") != 1:
        raise CompanionError(f"--fiftyone {companion_id!r}: not a dataset repo id (ORG/NAME)")
    if companion_id == repo_id:
        raise CompanionError(f"--fiftyone {companion_id}: the companion must be another repo than --repo-id")


def publish_companion(
    *,
    folder: Path,
    repo_id: str,
    companion_id: str,
    token: str | None,
    private: bool = False,
    revision: str = "main",
    create_pr: bool = False,
    commit_message: str | None = None,
    dry_run: bool = False,
    verify: bool = True,
    say: Callable[[str], None] = print,
) -> str | None:
    """Export the build in `folder` in FiftyOne's format and publish it to `companion_id` in one
    commit (none when the repo holds those files already: the export is byte-reproducible).

    Args:
        folder: a built folder (as `publish.publish` takes it).
        repo_id: the Parquet repo the companion's card links back to.
        companion_id: the companion repo.
        token, private, revision, create_pr, dry_run, verify, say: as `publish.publish`.
        commit_message: the commit title (default: names the builder and FiftyOne versions).

    Returns:
        The commit that holds the export (None on a dry run).

    Raises:
        CompanionError: `companion_id` is `repo_id`.
        FiftyOneMissingError: FiftyOne is not installed.
        PublishError: as `publish.publish`.
    """
    from covid_chestxray_seg_tools import publish

    check_companion_id(repo_id=repo_id, companion_id=companion_id)
    if not token and not dry_run:
        raise publish.PublishError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token")
    # The same checks as for the Parquet repo: a complete build of this builder.
    publish.local_files(folder=Path(folder), repo_id=repo_id)
    fiftyone_export = exporter()
    with tempfile.TemporaryDirectory(prefix="covid-chestxray-seg-fiftyone-") as scratch:
        out = Path(scratch) / "export"
        fiftyone_export.export_fiftyone(source=str(folder), out=out, repo_id=repo_id, companion_id=companion_id)
        local = {
            path.relative_to(out).as_posix(): publish.local_file(path, path.read_bytes())
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }
        message = commit_message or (
            f"Publish covid-chestxray-seg in FiftyOne format (builder {recipe.BUILDER_VERSION}, "
            f"fiftyone {fiftyone_export.FIFTYONE_VERSION})"
        )
        return publish.push_files(
            local=local,
            repo_id=companion_id,
            token=token,
            private=private,
            revision=revision,
            create_pr=create_pr,
            commit_message=message,
            dry_run=dry_run,
            verify=verify,
            say=say,
            owned=OWNED_FOLDERS,
        )

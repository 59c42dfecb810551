"""The FiftyOne companion repo's id and card, and the main card's link to it: text only.

FiftyOne's `load_from_hub` cannot read masks or `objects` from the Parquet repo (see the
README, "FiftyOne"), so the same records are also published in FiftyOne's own format to a
second dataset repo, by default the main repo's id + "-fiftyone", and the two cards link each
other. Publishing the main card (`publish`) and exporting the companion (`fiftyone_export`)
both need these; neither the Hub nor FiftyOne is called here.
"""

from __future__ import annotations

import re

from huggingface_hub import DatasetCard, DatasetCardData

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.render import LICENSE_NAME
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.source import REPO_ID

__all__ = [
    "SUFFIX",
    "CompanionError",
    "check_companion_id",
    "companion_card",
    "companion_repo_id",
    "link_companion",
]

SUFFIX = "-fiftyone"
_SECTION = "## FiftyOne"
_LOAD_FROM_HUB = re.compile(r"""load_from_hub\(\s*["']([^"']+)["']""")


class CompanionError(CovidSegError, ValueError):
    """A companion publish that cannot go ahead."""


def companion_repo_id(repo_id: str) -> str:
    """The companion of `repo_id` unless told otherwise: ``ORG/NAME`` -> ``ORG/NAME-fiftyone``."""
    return repo_id + SUFFIX


def check_companion_id(*, repo_id: str, companion_id: str) -> None:
    """Refuse a companion id that is not a repo id, or is the Parquet repo's own.

    Raises:
        CompanionError: what is wrong with `companion_id`.
    """
    if not REPO_ID.match(companion_id) or companion_id.count("/") != 1:
        raise CompanionError("not a dataset repo id (ORG/NAME)", setting="fiftyone", value=companion_id)
    if companion_id == repo_id:
        raise CompanionError(
            f"the companion must be another repo than {recipe.setting('repo_id')}",
            setting="fiftyone",
            value=companion_id,
        )


def link_companion(card: str, companion_id: str) -> str:
    """The main card with its FiftyOne section naming `companion_id` (in the `load_from_hub`
    call and the links); a card without that section is returned as it is."""
    head, found, rest = card.partition(f"\n{_SECTION}\n")
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

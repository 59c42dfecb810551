"""COVID-19 Chest X-ray Segmentations: 100 chest X-rays with radiologist masks in 14 classes.

The builder reads the upstream COCO annotation file, the per-image metadata of the
ieee8023 collection and the original image files, and yields one record per image:
the untouched image bytes, one full-size lossless mask per class, the COCO objects
(with their segmentation as RLE) and the typed metadata, including the image's own
licence. Splits are grouped by patient so that no patient appears in two splits.

Usage::

    builder = CovidChestXraySeg(data_dir="path/to/covid-19-chest-xray-segmentations-dataset")
    builder.download_and_prepare()
    train = builder.as_dataset(split="train")

Without ``data_dir`` the upstream GitHub archive at the pinned commit is downloaded
through the ``datasets`` download manager.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import struct
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import datasets
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = [
    "ANNOTATIONS_LICENSE",
    "ANNOTATION_FILE",
    "ARCHIVE_URL",
    "BUILDER_CHANGES",
    "BUILDER_VERSION",
    "CITATION",
    "CLASSES",
    "CLASS_COLOURS",
    "CLASS_STYLES",
    "CLASS_TIERS",
    "CLASS_TIER_NAMES",
    "DEVELOPMENT_MASK_IMAGES",
    "EXPECTED_CLASSES",
    "EXPECTED_SIDE",
    "FOLDS",
    "FOLD_SPLITS",
    "HEADLINE_CLASSES",
    "HEADLINE_MIN_IMAGES",
    "HOMEPAGE",
    "IMAGES_DIR",
    "IMAGE_LICENSE_TERMS",
    "LICENSE",
    "LUNG_CLASSES",
    "MANIFEST_NAME",
    "MANIFEST_PATH",
    "MASK_COLUMNS",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "METADATA_JOIN_COLUMN",
    "OPACITY_CLASSES",
    "OVERLAY_ALPHA",
    "OVERLAY_MAX_SIDE",
    "OVERLAY_OUTLINE_WIDTH",
    "OVERLAY_STYLE_ORDER",
    "QUALITY_FLAG_KINDS",
    "RARE_BELOW",
    "SETTING_REFERENCE",
    "SEVERITY_COLUMNS",
    "SEVERITY_COMMIT",
    "SEVERITY_HOMEPAGE",
    "SEVERITY_LICENSE",
    "SEVERITY_MANIFEST",
    "SEVERITY_PATH",
    "SEVERITY_URL",
    "SINGLE_INSTANCE_CLASSES",
    "SPLITS",
    "SUPERCATEGORIES",
    "UPSTREAM_ANNOTATORS",
    "UPSTREAM_CLASS_ALIASES",
    "UPSTREAM_COMMIT",
    "BuildError",
    "BuildReport",
    "CocoAnnotations",
    "CovidChestXraySeg",
    "CovidChestXraySegConfig",
    "LicenseTerms",
    "SettingNames",
    "assign_splits",
    "bit_png",
    "check_upstream",
    "class_names",
    "class_tier",
    "compressed_rle_runs",
    "decode_class_mask",
    "decode_mask",
    "download_failure",
    "draw_overlay",
    "empty_mask_png",
    "encode_mask_png",
    "features",
    "git_blob_sha1",
    "has_known_license",
    "mask_column",
    "mask_outline",
    "overlay_jpeg",
    "overlay_size",
    "pack_mask_rows",
    "parse_quality_flag",
    "quality_flag",
    "quality_flags",
    "read_manifest",
    "read_metadata",
    "read_severity",
    "rle_centroid_x",
    "rle_for_pycocotools",
    "segmentation_to_rle",
    "setting",
    "stack_masks",
    "thick_outline",
    "thumbnail_mask",
    "thumbnail_mask_any",
    "union_rle",
]

if TYPE_CHECKING:
    import torch

# === Sources, licences and the schema's constants ==========================================

CITATION = """\
@article{cohen2020covid,
  title   = {COVID-19 Image Data Collection},
  author  = {Joseph Paul Cohen and Paul Morrison and Lan Dao},
  journal = {arXiv 2003.11597},
  url     = {https://github.com/ieee8023/covid-chestxray-dataset},
  year    = {2020}
}
@article{cohen2020prospective,
  title   = {COVID-19 Image Data Collection: Prospective Predictions Are the Future},
  author  = {Joseph Paul Cohen and Paul Morrison and Lan Dao and Karsten Roth and Tim Q Duong and Marzyeh Ghassemi},
  journal = {arXiv 2006.11988},
  url     = {https://arxiv.org/abs/2006.11988},
  year    = {2020}
}
@misc{generalblockchain2020segmentations,
  title        = {COVID-19 Chest X-ray Segmentations Dataset},
  author       = {{GeneralBlockchain}},
  howpublished = {\\url{https://github.com/GeneralBlockchain/covid-19-chest-xray-segmentations-dataset}},
  year         = {2020}
}
@article{cohen2020severity,
  title   = {Predicting COVID-19 Pneumonia Severity on Chest X-ray with Deep Learning},
  author  = {Joseph Paul Cohen and Lan Dao and Paul Morrison and Karsten Roth and Yoshua Bengio and Beiyi Shen
             and Almas Abbasi and Mahsa Hoshmand-Kochi and Marzyeh Ghassemi and Haifang Li and Tim Q Duong},
  journal = {arXiv 2005.11856},
  url     = {https://arxiv.org/abs/2005.11856},
  year    = {2020}
}
"""

_DESCRIPTION = """\
100 chest X-rays from the ieee8023 COVID-19 image data collection with radiologist
segmentations in 14 classes (anatomy, pathology, devices), one full-size mask per
class, a coloured overlay, the COCO annotations as RLE, each image's metadata and own
licence, ieee8023's expert severity scores and patient-grouped cross-validation folds.
"""

HOMEPAGE = "https://github.com/GeneralBlockchain/covid-19-chest-xray-segmentations-dataset"
# Upstream's README: "Each image was manually annotated by qualified radiologists", and it thanks
# these radiologists "who worked to the best of their ability to make our research possible".
UPSTREAM_ANNOTATORS = ("Dr. Ayoub El Hajjami", "Dr. Mohamed Soliman")

# Annotations are CC BY 4.0; every image keeps the licence of its source, recorded
# per record in the `license` column (null where upstream names none).
LICENSE = (
    "Annotations: CC BY 4.0. Images: each image's own licence, see the `license` column. "
    "Severity scores: CC BY-SA 4.0 (ieee8023)."
)
ANNOTATIONS_LICENSE = "CC BY 4.0"


@dataclass(frozen=True)
class LicenseTerms:
    """What an image licence allows, as its Creative Commons (or other) deed says."""

    commercial: bool  # commercial use allowed
    derivatives: bool  # adapted or remixed copies may be shared
    share_alike: bool  # adaptations must carry the same licence


# The image licences metadata.csv names (its spelling, no version given), and what each allows.
IMAGE_LICENSE_TERMS = {
    "CC0": LicenseTerms(commercial=True, derivatives=True, share_alike=False),
    "CC BY": LicenseTerms(commercial=True, derivatives=True, share_alike=False),
    "CC BY-SA": LicenseTerms(commercial=True, derivatives=True, share_alike=True),
    "CC BY-ND": LicenseTerms(commercial=True, derivatives=False, share_alike=False),
    "CC BY-NC": LicenseTerms(commercial=False, derivatives=True, share_alike=False),
    "CC BY-NC-SA": LicenseTerms(commercial=False, derivatives=True, share_alike=True),
    "CC BY-NC-ND": LicenseTerms(commercial=False, derivatives=False, share_alike=False),
    "Apache 2.0": LicenseTerms(commercial=True, derivatives=True, share_alike=False),
}

UPSTREAM_COMMIT = "377a49490e910a66a7f7aee1b92cdc3d5ac4bddf"

# GitHub's archive of the upstream repository at the pinned commit: the default source.
ARCHIVE_URL = f"{HOMEPAGE}/archive/{UPSTREAM_COMMIT}.zip"

# ieee8023's expert severity scores (Cohen et al. 2020, arXiv 2005.11856), pinned by
# commit, size and git blob SHA-1 like the upstream files.
SEVERITY_COMMIT = "81fba7aafbb5739aae44bdf10b970b17faa1e615"
SEVERITY_PATH = "annotations/covid-severity-scores.csv"
SEVERITY_HOMEPAGE = "https://github.com/ieee8023/covid-chestxray-dataset"
SEVERITY_URL = f"https://raw.githubusercontent.com/ieee8023/covid-chestxray-dataset/{SEVERITY_COMMIT}/{SEVERITY_PATH}"
SEVERITY_MANIFEST = {SEVERITY_PATH: (5162, "4977b770046cc79f59e2208591b28ca27c0c7eb0")}
SEVERITY_LICENSE = "CC BY-SA 4.0"
# Severity file column -> (record column, highest score): the mean of 3 raters per image.
SEVERITY_COLUMNS = {
    "geographic_mean": ("severity_geographic_extent", 8.0),
    "opacity_mean": ("severity_opacity", 6.0),
}
_SEVERITY_JOIN_COLUMN = "filename"

BUILDER_VERSION = "1.2.0"
# What each version changed in the records; the card's provenance names the current one.
BUILDER_CHANGES = {
    "1.2.0": "adds the `quality_flags` column (missing, doubled or wrong-side anatomy); "
    "overlay redrawn: anatomy as outlines, opacities as fills, devices as lines",
}

# The one class list: mask column order, ClassLabel names and card tables derive from it.
CLASSES = (
    "Left Lung",
    "Right Lung",
    "Cardiomediastinum",
    "Airways",
    "Ground Glass Opacities",
    "Consolidation",
    "Pleural Effusion",
    "Pneumothorax",
    "Endotracheal Tube",
    "Central Venous Line",
    "Monitoring Probes",
    "Nasogastric Tube",
    "Chest Tube",
    "Tubings",
)

# Upstream spellings that name one of CLASSES differently.
UPSTREAM_CLASS_ALIASES = {"Nosogastric Tube": "Nasogastric Tube"}
# Upstream's COCO supercategory of each class; exports back to COCO write it again.
SUPERCATEGORIES = {
    **dict.fromkeys(CLASSES[:4], "Anatomical"),
    **dict.fromkeys(CLASSES[4:8], "Pathology"),
    **dict.fromkeys(CLASSES[8:], "Objects"),
}


def mask_column(class_name: str) -> str:
    """The record column holding the mask of `class_name`: ``"Left Lung"`` -> ``"mask_left_lung"``."""
    return "mask_" + re.sub(r"[^a-z0-9]+", "_", class_name.lower()).strip("_")


MASK_COLUMNS = tuple(mask_column(name) for name in CLASSES)

# Data-quality flags (the `quality_flags` column). Every chest X-ray shows these, each once:
# a missing or doubled one is an annotation slip, not anatomy.
EXPECTED_CLASSES = ("Left Lung", "Right Lung", "Cardiomediastinum", "Airways")
SINGLE_INSTANCE_CLASSES = EXPECTED_CLASSES
# "Left Lung" is the patient's left, which a PA or AP film shows on the image's right: the
# half of the image (by x) where each sided class's centroid must lie.
EXPECTED_SIDE = {"Left Lung": "right", "Right Lung": "left"}
# A flag is "<kind>:<mask column>", e.g. "missing:mask_left_lung" (quality_flag builds one).
QUALITY_FLAG_KINDS = ("missing", "duplicate", "wrong_side")

# The benchmark's class tiers. A class's tier follows from how many development images (train +
# validation) hold a non-empty true mask of it (a null mask, or one the build flags missing,
# does not count): from HEADLINE_MIN_IMAGES up it is a headline class, averaged into the one
# headline number; under RARE_BELOW it is rare, reported but never averaged (a mean over one
# or two images says nothing); in between a tube, line or probe is a device, any other class
# reported per class. DEVELOPMENT_MASK_IMAGES are the pinned data's counts (a test derives
# them from the data again), so every source, a Hub copy too, scores the same tiers.
HEADLINE_MIN_IMAGES = 20
RARE_BELOW = 3
CLASS_TIER_NAMES = ("headline", "device", "reported", "rare")
DEVELOPMENT_MASK_IMAGES = {
    "Left Lung": 83,
    "Right Lung": 84,
    "Cardiomediastinum": 84,
    "Airways": 83,
    "Ground Glass Opacities": 78,
    "Consolidation": 24,
    "Pleural Effusion": 1,
    "Pneumothorax": 1,
    "Endotracheal Tube": 11,
    "Central Venous Line": 9,
    "Monitoring Probes": 12,
    "Nasogastric Tube": 7,
    "Chest Tube": 0,
    "Tubings": 13,
}


def class_tier(name: str, images: int) -> str:
    """The tier of class `name` when `images` development images hold a mask of it (see
    `HEADLINE_MIN_IMAGES`): "headline", "device", "reported" or "rare"."""
    if images >= HEADLINE_MIN_IMAGES:
        return "headline"
    if images < RARE_BELOW:
        return "rare"
    return "device" if SUPERCATEGORIES[name] == "Objects" else "reported"


CLASS_TIERS = {name: class_tier(name, DEVELOPMENT_MASK_IMAGES[name]) for name in CLASSES}
HEADLINE_CLASSES = tuple(name for name in CLASSES if CLASS_TIERS[name] == "headline")

# The opacity burden of an image: the share of its lung fields (the union of these lungs) that
# these opacities cover. ieee8023's geographic-extent score rates the same thing by eye.
LUNG_CLASSES = ("Left Lung", "Right Lung")
OPACITY_CLASSES = ("Ground Glass Opacities", "Consolidation")

# metadata.csv column -> (record column, type). `filename` is the join key (the
# record's `file_name`); `folder` only names upstream's own directory and is dropped.
METADATA_COLUMNS = {
    "patientid": ("patient_id", "int32"),
    "offset": ("offset", "int32"),
    "sex": ("sex", "string"),
    "age": ("age", "int32"),
    "finding": ("finding", "string"),
    "survival": ("survival", "bool"),
    "intubated": ("intubated", "bool"),
    "intubation_present": ("intubation_present", "bool"),
    "went_icu": ("went_icu", "bool"),
    "in_icu": ("in_icu", "bool"),
    "needed_supplemental_O2": ("needed_supplemental_o2", "bool"),
    "extubated": ("extubated", "bool"),
    "temperature": ("temperature", "float64"),
    "pO2_saturation": ("po2_saturation", "float64"),
    "leukocyte_count": ("leukocyte_count", "float64"),
    "neutrophil_count": ("neutrophil_count", "float64"),
    "lymphocyte_count": ("lymphocyte_count", "float64"),
    "view": ("view", "string"),
    "modality": ("modality", "string"),
    "date": ("date", "string"),
    "location": ("location", "string"),
    "doi": ("doi", "string"),
    "url": ("url", "string"),
    "license": ("license", "string"),
    "clinical_notes": ("clinical_notes", "string"),
    "other_notes": ("other_notes", "string"),
}
METADATA_JOIN_COLUMN = "filename"

# Fractions of the images per split; whole patients are assigned (see assign_splits).
SPLITS = {"train": 0.70, "validation": 0.15, "test": 0.15}
# Cross-validation folds over train + validation, whole patients (see _assign_folds); test stays out.
FOLDS = 5
FOLD_SPLITS = ("train", "validation")

# The overlay column: the X-ray with every class mask drawn, small enough for the viewer.
OVERLAY_MAX_SIDE = 512
OVERLAY_ALPHA = 0.45
_OVERLAY_JPEG_QUALITY = 80
# How each kind of class is drawn, so that two classes that meet stay apart: anatomy as an
# outline (the lungs, heart and airways overlap each other and hold the opacities), opacities
# as a translucent fill (the X-ray stays visible under them), devices as an opaque line.
_STYLE_OF_SUPERCATEGORY = {"Anatomical": "outline", "Pathology": "fill", "Objects": "line"}
CLASS_STYLES = tuple(_STYLE_OF_SUPERCATEGORY[SUPERCATEGORIES[name]] for name in CLASSES)
# Drawn in this order, class order within a style: fills first, outlines over them, devices on top.
OVERLAY_STYLE_ORDER = ("fill", "outline", "line")
# Outline width in overlay pixels (fills get a one-pixel edge in their colour).
OVERLAY_OUTLINE_WIDTH = 2
# One colour per class, in class order: chosen for the largest smallest CIEDE2000 difference
# between the classes as drawn (fills blended over grey), where two classes overlap, and from
# every grey an X-ray shows (card.colours measures it; the README gives the numbers).
CLASS_COLOURS = (
    (255, 136, 119),  # Left Lung: salmon outline
    (0, 187, 238),  # Right Lung: sky-blue outline
    (0, 255, 136),  # Cardiomediastinum: spring-green outline
    (255, 187, 255),  # Airways: pale-pink outline
    (119, 238, 0),  # Ground Glass Opacities: lime fill
    (221, 102, 238),  # Consolidation: violet fill
    (238, 34, 51),  # Pleural Effusion: red fill
    (17, 136, 102),  # Pneumothorax: teal fill
    (153, 170, 255),  # Endotracheal Tube: lavender line
    (153, 136, 0),  # Central Venous Line: olive line
    (238, 238, 0),  # Monitoring Probes: yellow line
    (0, 255, 238),  # Nasogastric Tube: cyan line
    (238, 34, 0),  # Chest Tube: vermilion line
    (255, 187, 102),  # Tubings: light-orange line
)

ANNOTATION_FILE = "annotation/results.json"
METADATA_FILE = "metadata.csv"
IMAGES_DIR = "images"
MANIFEST_NAME = "upstream-manifest.tsv"
MANIFEST_PATH = Path(__file__).with_name(MANIFEST_NAME)

# The COCO input, one record of each list (from annotation/results.json):
#
# {"categories": [{"id": 12, "name": "Nosogastric Tube", "supercategory": "Objects"}],
#  "images": [{"id": 1, "file_name": "X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg",
#              "width": 943, "height": 751, "license": 1}],
#  "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "iscrowd": 0,
#                   "bbox": [336.0, 0.0, 295.0, 410.0], "area": 31478,
#                   "segmentation": {"size": [751, 943], "counts": "fif78Pg0:J4N3K4..."}}]}
#
# `segmentation` may also be a list of polygons ([[x1, y1, x2, y2, ...], ...]), an
# uncompressed RLE ({"size": [h, w], "counts": [int, ...]}, with iscrowd 1), or []
# when the annotation has no mask (14 upstream "Monitoring Probes").


# === The builder: config, errors, split generation =========================================


# A setting (a config field, a function's parameter) named in a message is written
# `${name}` or `${name=value}` (see `setting`): str() of an error words it as Python does
# (`name=value`), the covid-seg command as the option that sets it (`--name value`), so one
# message serves both.
SETTING_REFERENCE = re.compile(r"\$\{(\w+)(?:=([^}]*))?\}")


def setting(name: str, value: object = None) -> str:
    """`name` (set to `value`) as a reference in a message; see `SETTING_REFERENCE`."""
    return f"${{{name}}}" if value is None else f"${{{name}={value}}}"


class SettingNames:
    """How a message names settings: as Python does (`name=value`, a value as its repr); the
    command's boundary words them with its options instead (a subclass)."""

    def reference(self, name: str, value: str | None) -> str:
        """A setting named in the text, with the value the text gives it (or none)."""
        return name if value is None else f"{name}={value}"

    def value(self, name: str, value: object) -> str:
        """A setting and the value it was given, at the head of a message."""
        return f"{name}={value!r}"

    def words(self, text: str) -> str:
        """`text` with every `${...}` reference worded."""
        return SETTING_REFERENCE.sub(lambda match: self.reference(match.group(1), match.group(2)), text)


class BuildError(ValueError):
    """Bad input: names the file, the record and the problem in one line.

    Attributes:
        file: the file (or URL) the problem is in.
        record: where in it (a record, a line, a setting written `${name}`).
        problem: what is wrong and, where there is one, the fix; settings as `${name}`.
    """

    def __init__(self, file: str | os.PathLike, record: str, problem: str):
        self.file, self.record, self.problem = str(file), record, problem
        super().__init__(self.render())

    def render(self, names: SettingNames | None = None) -> str:
        """The message, settings worded by `names` (default: as Python names them)."""
        return (names or SettingNames()).words(f"{self.file}: {self.record}: {self.problem}")

    def __reduce__(self) -> tuple[type[BuildError], tuple[str, str, str]]:
        # Rebuilt from its parts when it crosses from a worker process.
        return type(self), (self.file, self.record, self.problem)


@dataclass
class CovidChestXraySegConfig(datasets.BuilderConfig):
    """BuilderConfig for COVID-19 Chest X-ray Segmentations.

    Args:
        annotation_file: COCO file to read, relative to the data folder.
        data_url: archive of the upstream repository, used when no `data_dir` is given.
        verify_upstream: check the images, metadata.csv and the severity file against
            their pinned manifests (size and git blob SHA-1) and stop on any difference. Set
            it to False to build from modified data; differences are then logged and counted.
        severity_file: local copy of ieee8023's covid-severity-scores.csv; when None, the
            file is downloaded from `severity_url` (ieee8023's repository at the pinned commit).
        licensed_only: keep only the images whose own licence is known (`license` not null),
            each in the split it has in the full dataset.
    """

    annotation_file: str = ANNOTATION_FILE
    data_url: str = ARCHIVE_URL
    verify_upstream: bool = True
    severity_file: str | None = None
    severity_url: str = SEVERITY_URL
    licensed_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        path = Path(self.annotation_file)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(
                f"annotation_file={self.annotation_file!r} must be a path inside the data folder, "
                f"for example {ANNOTATION_FILE!r} or 'annotation/results_polygons.json'."
            )


class CovidChestXraySeg(datasets.GeneratorBasedBuilder):
    """COVID-19 Chest X-ray Segmentations, one record per image."""

    VERSION = datasets.Version(BUILDER_VERSION)
    BUILDER_CONFIG_CLASS = CovidChestXraySegConfig
    BUILDER_CONFIGS: ClassVar[list[CovidChestXraySegConfig]] = [
        CovidChestXraySegConfig(
            name="default",
            version=datasets.Version(BUILDER_VERSION),
            description="One record per image: image, overlay, 14 class masks, COCO objects, metadata, severity, fold.",
        ),
        CovidChestXraySegConfig(
            name="licensed",
            version=datasets.Version(BUILDER_VERSION),
            description="The records of `default` whose image has a known licence, each in the same split.",
            licensed_only=True,
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"
    # Rows a worker holds before writing them out: a row with 14 full-size masks can be
    # several MB, and a fixed small batch keeps memory flat however large the data.
    DEFAULT_WRITER_BATCH_SIZE = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Filled by _split_generators: where the data was read from, and what was flagged.
        self.data_root: Path | None = None
        self.report: BuildReport | None = None
        self._downloaded: list[Path] = []  # cached archive and its extraction, when the source was downloaded
        # datasets sets config kwargs on a copy of the default config, past __post_init__.
        self.config.validate()

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=features(),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        try:
            return self._read_source(dl_manager)
        except BuildError as error:
            if self._downloaded:
                # A bad archive must not stay in the cache, or every later run would reuse it.
                for path in self._downloaded:
                    _remove_cached(path)
                raise BuildError(
                    error.file,
                    error.record,
                    f"{error.problem} (the downloaded copy was removed from the cache: "
                    "the next run downloads it again)",
                ) from None
            raise

    def _read_source(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        root = self._data_root(dl_manager)
        self.data_root = root
        manifest = read_manifest(self._manifest_path())
        report = BuildReport()
        coco = CocoAnnotations(root / self.config.annotation_file, report=report)
        report.annotation_file = self.config.annotation_file
        expected = manifest.get(self.config.annotation_file)
        report.annotation_sha256 = coco.sha256
        report.annotation_upstream = expected is not None and coco.git_blob_sha1 == expected[1]
        paths = [
            _safe_join(root, IMAGES_DIR, image["file_name"], coco.path, f"image id {image['id']}")
            for image in coco.images
        ]
        metadata_path = root / METADATA_FILE
        check_upstream(metadata_path, METADATA_FILE, manifest, self.config.verify_upstream, report)
        metadata = read_metadata(metadata_path, needed={image["file_name"] for image in coco.images})
        severity_path = self._severity_path(dl_manager)
        severity_data = check_upstream(
            severity_path, SEVERITY_PATH, SEVERITY_MANIFEST, self.config.verify_upstream, report, commit=SEVERITY_COMMIT
        )
        severity = read_severity(severity_data, severity_path)

        items = []
        # Decoding every image here, in threads (Pillow releases the GIL), makes a corrupt file
        # stop the build before anything is written; errors raised in datasets' worker
        # processes would reach the user without their message.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(_check_image, paths, coco.images, [coco.path] * len(paths)))
        for image, path in zip(coco.images, paths):
            check_upstream(path, f"{IMAGES_DIR}/{image['file_name']}", manifest, self.config.verify_upstream, report)
            meta = metadata[image["file_name"]]
            if meta["license"] is None:
                report.images_without_license += 1
            scores = severity.get(image["file_name"])
            report.images_with_severity += scores is not None
            annotations = coco.annotations_for(image["id"])
            flags = quality_flags(annotations, width=image["width"])
            if flags:
                report.quality_flags[image["file_name"]] = flags
            items.append(
                {
                    "image": image,
                    "path": str(path),
                    "annotations": annotations,
                    "quality_flags": flags,
                    "metadata": meta,
                    "severity": scores or dict.fromkeys(column for column, _ in SEVERITY_COLUMNS.values()),
                }
            )

        report.images = len(items)
        report.annotations = sum(len(item["annotations"]) for item in items)
        by_split = assign_splits(items)
        empty = [split for split, chosen in by_split.items() if not chosen]
        if empty:
            patients = len({item["metadata"]["patient_id"] for item in items})
            raise BuildError(
                coco.path,
                "images",
                f"{patients} patient(s) cannot fill {len(SPLITS)} patient-disjoint splits "
                f"({', '.join(empty)} would be empty); the data needs at least {len(SPLITS)} patients",
            )
        folds = _assign_folds([item for split in FOLD_SPLITS for item in by_split[split]])
        for item in items:
            item["fold"] = folds.get(item["image"]["id"])
        if self.config.licensed_only:
            # Filtered after the splits and folds are drawn, so every image keeps its split and fold.
            by_split = {
                split: [item for item in chosen if has_known_license(item["metadata"])]
                for split, chosen in by_split.items()
            }
        report.log()
        self.report = report
        return [datasets.SplitGenerator(name=split, gen_kwargs={"items": by_split[split]}) for split in SPLITS]

    def _generate_examples(self, items: list[dict]) -> Iterator[tuple[int, dict]]:
        for item in items:
            yield item["image"]["id"], _make_record(item)

    def _manifest_path(self) -> Path:
        # datasets 3.x runs a copy of this script from its modules cache and passes the
        # script's own folder as base_path; the manifest stays in that folder.
        # An installed wheel has no file beside this module in site-packages: the tools
        # package ships a copy (pip install puts it next door).
        candidates = [MANIFEST_PATH, MANIFEST_PATH.parent / "covid_chestxray_seg_tools" / MANIFEST_NAME]
        if self.base_path and "://" not in str(self.base_path):
            candidates.append(Path(self.base_path) / MANIFEST_NAME)
        for path in candidates:
            if path.is_file():
                return path
        raise BuildError(
            MANIFEST_PATH,
            "upstream manifest",
            "not found; keep it beside covid_chestxray_seg.py, it lists the upstream files the build checks",
        )

    def _severity_path(self, dl_manager: datasets.DownloadManager) -> Path:
        if self.config.severity_file:
            path = Path(self.config.severity_file)
            if not path.is_file():
                raise BuildError(
                    path, setting("severity_file"), "file not found; pass a copy of ieee8023's " + SEVERITY_PATH
                )
            return path
        url = self.config.severity_url
        try:
            path = Path(dl_manager.download(url))
        except Exception as error:  # noqa: BLE001 - aiohttp, fsspec and datasets raise unrelated types here
            raise BuildError(url, "download", download_failure(error)) from None
        self._downloaded.append(path)
        return path

    def _data_root(self, dl_manager: datasets.DownloadManager) -> Path:
        if self.config.data_dir:
            root = Path(self.config.data_dir)
            if not root.is_dir():
                raise BuildError(
                    root, setting("data_dir"), "is not a folder; pass a clone or copy of the upstream repository"
                )
            return root
        url = self.config.data_url
        try:
            archive = dl_manager.download(url)
        except Exception as error:  # noqa: BLE001 - aiohttp, fsspec and datasets raise unrelated types here
            raise BuildError(url, "download", download_failure(error)) from None
        self._downloaded.append(Path(archive))
        try:
            extracted = Path(dl_manager.extract(archive))
        except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise BuildError(
                url, "archive", f"cannot be extracted ({type(error).__name__}: {error}); truncated or not an archive"
            ) from None
        self._downloaded.append(extracted)
        if not extracted.is_dir():
            raise BuildError(url, "archive", "is not a zip or tar archive (datasets could not extract it)")
        # GitHub archives hold one top-level folder named <repo>-<commit>.
        entries = [entry for entry in extracted.iterdir() if entry.is_dir()]
        if len(entries) != 1:
            raise BuildError(self.config.data_url, "archive", f"expected one top-level folder, found {len(entries)}")
        return entries[0]


# === The record schema and the build report ================================================


def features() -> datasets.Features:
    """The record schema: identity, image, one mask per class, COCO objects, metadata."""
    value_types = {"int32": "int32", "float64": "float64", "string": "string", "bool": "bool"}
    return datasets.Features(
        {
            "image": datasets.Image(),
            # JPEG, at most OVERLAY_MAX_SIDE px: the viewer shows it as a picture of the segmentation.
            "overlay": datasets.Image(),
            "image_id": datasets.Value("int64"),
            "file_name": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            **{column: datasets.Image() for column in MASK_COLUMNS},
            # A plain list of dicts (not Sequence) keeps one dict per object in datasets 3.x and >= 4.
            "objects": [
                {
                    "id": datasets.Value("int64"),
                    "category": datasets.ClassLabel(names=list(CLASSES)),
                    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
                    "area": datasets.Value("float64"),
                    "iscrowd": datasets.Value("bool"),
                    "segmentation": {
                        # [height, width]. Not a fixed-length Sequence: datasets 3.x cannot cast one
                        # under a null struct (an annotation without mask), pyarrow leaves [] there.
                        "size": [datasets.Value("int32")],
                        "counts": datasets.Value("string"),
                    },
                }
            ],
            **{column: datasets.Value(value_types[kind]) for column, kind in METADATA_COLUMNS.values()},
            **{column: datasets.Value("float64") for column, _ in SEVERITY_COLUMNS.values()},
            "fold": datasets.Value("int32"),
            # Codes such as "missing:mask_left_lung" (see quality_flag); [] when nothing is wrong.
            "quality_flags": [datasets.Value("string")],
        }
    )


@dataclass
class BuildReport:
    """What the build read, and the upstream quirks it handled (logged, shown in the card)."""

    images: int = 0
    annotations: int = 0
    annotations_without_segmentation: int = 0
    renamed_categories: dict[str, str] = field(default_factory=dict)  # upstream name -> ours
    images_without_license: int = 0
    modified_files: list[str] = field(default_factory=list)
    annotation_file: str = ANNOTATION_FILE
    annotation_sha256: str = ""
    annotation_upstream: bool = False
    images_with_severity: int = 0
    # File name -> the image's flags, flagged images only.
    quality_flags: dict[str, list[str]] = field(default_factory=dict)

    def flag_counts(self) -> dict[str, int]:
        """Images per flag code, in code order."""
        counts: dict[str, int] = defaultdict(int)
        for flags in self.quality_flags.values():
            for flag in flags:
                counts[flag] += 1
        return dict(sorted(counts.items()))

    def log(self) -> None:
        logger = datasets.logging.get_logger(__name__)
        logger.info(f"read {self.images} images and {self.annotations} annotations")
        if self.annotations_without_segmentation:
            logger.warning(
                f"{self.annotations_without_segmentation} annotations have no segmentation: "
                "kept in `objects` with a null segmentation, their class mask is null"
            )
        for upstream, name in self.renamed_categories.items():
            logger.info(f"category {upstream!r} renamed to {name!r}")
        if self.images_without_license:
            logger.warning(
                f"{self.images_without_license} images have no licence in {METADATA_FILE}: `license` is null"
            )
        logger.info(
            f"{self.images_with_severity} of {self.images} images have expert severity scores; "
            f"the other {self.images - self.images_with_severity} have null severity columns"
        )
        if self.quality_flags:
            logger.warning(
                f"{len(self.quality_flags)} images carry quality flags ("
                + ", ".join(f"{flag} {count}" for flag, count in self.flag_counts().items())
                + "): "
                + "; ".join(f"{name}: {', '.join(flags)}" for name, flags in sorted(self.quality_flags.items()))
            )
        else:
            logger.info("no image carries a quality flag")
        if not self.annotation_upstream:
            logger.warning(
                f"{self.annotation_file} is not upstream's file (sha256 {self.annotation_sha256}); "
                "the card records its hash"
            )
        for path in self.modified_files:
            logger.warning(f"{path} differs from the upstream manifest (accepted: verify_upstream=False)")


# === Readers: COCO, metadata.csv, the severity file; splits and folds ======================


class CocoAnnotations:
    """A COCO file, validated and indexed by image id; images and annotations sorted by id."""

    def __init__(self, path: Path, *, report: BuildReport):
        self.path = path
        raw = _read_annotation_bytes(path)
        # Hashed here, from the bytes parsed, so provenance never reads the file a second time.
        self.sha256, self.git_blob_sha1 = hashlib.sha256(raw).hexdigest(), git_blob_sha1(raw)
        data = _parse_json(raw, path)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise BuildError(path, f"top-level key {key!r}", "missing or not a list; is this a COCO file?")
        self.categories = self._index_categories(data["categories"], report)
        self.images = sorted(data["images"], key=lambda image: image["id"] if isinstance(image, dict) else 0)
        images_by_id = {}
        for index, image in enumerate(self.images):
            record = f"images[{index}]"
            if not isinstance(image, dict) or not all(key in image for key in ("id", "file_name", "width", "height")):
                raise BuildError(path, record, "needs id, file_name, width and height")
            if image["id"] in images_by_id:
                raise BuildError(path, f"image id {image['id']}", "duplicate image id")
            if not (
                _is_int(image["width"]) and _is_int(image["height"]) and image["width"] > 0 and image["height"] > 0
            ):
                raise BuildError(path, f"image id {image['id']}", f"bad size {image['width']}x{image['height']}")
            images_by_id[image["id"]] = image
        self._by_image: dict[Any, list[dict]] = defaultdict(list)
        seen = set()
        for annotation in sorted(
            data["annotations"], key=lambda a: a["id"] if isinstance(a, dict) and "id" in a else -1
        ):
            if not isinstance(annotation, dict) or "id" not in annotation:
                raise BuildError(path, "annotation", "has no id")
            record = f"annotation id {annotation['id']}"
            if annotation["id"] in seen:
                raise BuildError(path, record, "duplicate annotation id")
            seen.add(annotation["id"])
            image = images_by_id.get(annotation.get("image_id"))
            if image is None:
                raise BuildError(path, record, f"image_id {annotation.get('image_id')!r} is not in 'images'")
            category = self.categories.get(annotation.get("category_id"))
            if category is None:
                raise BuildError(path, record, f"category_id {annotation.get('category_id')!r} is not in 'categories'")
            rle = segmentation_to_rle(annotation.get("segmentation"), image, path, record)
            if not _is_number(annotation.get("area", 0.0)):
                raise BuildError(path, record, f"area {annotation.get('area')!r} is not a number")
            if rle is None:
                report.annotations_without_segmentation += 1
            self._by_image[image["id"]].append(
                {
                    "id": annotation["id"],
                    "category": category,
                    "bbox": _check_bbox(annotation.get("bbox"), image, path, record),
                    "area": float(annotation.get("area", 0.0)),
                    "iscrowd": bool(annotation.get("iscrowd", 0)),
                    "segmentation": rle,
                }
            )

    def annotations_for(self, image_id: Any) -> list[dict]:
        """The image's annotations sorted by id; [] for an image without any."""
        return list(self._by_image.get(image_id, []))

    def _index_categories(self, categories: list, report: BuildReport) -> dict:
        index = {}
        for position, category in enumerate(categories):
            if not isinstance(category, dict) or "id" not in category or "name" not in category:
                raise BuildError(self.path, f"categories[{position}]", "needs id and name")
            name = UPSTREAM_CLASS_ALIASES.get(category["name"], category["name"])
            if name not in CLASSES:
                raise BuildError(
                    self.path,
                    f"category id {category['id']}",
                    f"unknown category name {category['name']!r}; known classes: {', '.join(CLASSES)}",
                )
            if name != category["name"]:
                report.renamed_categories[category["name"]] = name
            if category["id"] in index:
                raise BuildError(self.path, f"category id {category['id']}", "duplicate category id")
            index[category["id"]] = CLASSES.index(name)
        return index


def segmentation_to_rle(segmentation: Any, image: dict, path: Path, record: str) -> dict | None:
    """Any COCO segmentation as one compressed RLE {"size": [h, w], "counts": str}; None when empty."""
    height, width = image["height"], image["width"]
    if segmentation is None or (isinstance(segmentation, list) and not segmentation):
        return None
    if isinstance(segmentation, list):
        for number, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                raise BuildError(path, record, f"polygon {number} is not a list of finite numbers")
            if len(polygon) < 6 or len(polygon) % 2:
                raise BuildError(
                    path,
                    record,
                    f"polygon {number} has {len(polygon)} coordinates; a polygon needs at least 3 (x, y) points",
                )
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = segmentation["size"]
        if not isinstance(size, list) or size != [height, width]:
            raise BuildError(
                path, record, f"RLE size {size} disagrees with the image size [height, width] = [{height}, {width}]"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != height * width:
                raise BuildError(
                    path, record, f"uncompressed RLE counts must be non-negative and sum to {height * width}"
                )
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(counts, (str, bytes)):
            text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
            # pycocotools decodes without bounds checks: a damaged string would write past the mask.
            runs = compressed_rle_runs(text)
            if runs is None or int(runs.sum()) != height * width:
                raise BuildError(
                    path, record, f"compressed RLE counts are damaged or do not cover {height}x{width} pixels"
                )
            rle = {"counts": text.encode("ascii")}
        else:
            raise BuildError(path, record, f"RLE counts must be a string or a list, not {type(counts).__name__}")
    else:
        raise BuildError(path, record, "segmentation is neither a polygon list nor an RLE dict")
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _check_bbox(bbox: Any, image: dict, path: Path, record: str) -> list[float]:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise BuildError(path, record, f"bbox {bbox!r} is not [x, y, width, height]")
    x, y, w, h = bbox
    if x < 0 or y < 0 or w < 0 or h < 0 or x + w > image["width"] or y + h > image["height"]:
        raise BuildError(
            path,
            record,
            f"bbox {bbox} lies outside the {image['width']}x{image['height']} image {image['file_name']!r}",
        )
    return [float(v) for v in bbox]


def read_metadata(path: Path, *, needed: set[str]) -> dict[str, dict]:
    """The typed metadata of each needed image, keyed by file name."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [column for column in (METADATA_JOIN_COLUMN, *METADATA_COLUMNS) if column not in header]
            if missing:
                raise BuildError(path, "header", f"missing columns {missing}")
            rows = {}
            for line, row in enumerate(reader, start=2):
                if None in row:
                    raise BuildError(
                        path, f"line {line}", f"has {len(header) + len(row[None])} fields, the header {len(header)}"
                    )
                name = row[METADATA_JOIN_COLUMN]
                if name in needed:
                    if name in rows:
                        raise BuildError(path, f"line {line}", f"second row for image {name!r}")
                    rows[name] = {
                        column: _parse_value(row[source], kind, path, f"line {line}, column {source!r}")
                        for source, (column, kind) in METADATA_COLUMNS.items()
                    }
    except FileNotFoundError:
        raise BuildError(path, METADATA_FILE, "file not found") from None
    except UnicodeDecodeError as error:
        raise BuildError(path, f"byte {error.start}", "is not UTF-8") from None
    absent = sorted(needed - rows.keys())
    if absent:
        raise BuildError(
            path, f"image {absent[0]!r}", f"has no row ({len(absent)} images missing from {METADATA_FILE})"
        )
    return rows


def assign_splits(items: list[dict]) -> dict[str, list[dict]]:
    """Whole patients to splits, about SPLITS of the images, deterministic from patient ids.

    Patients are taken in the order of the SHA-256 of their id; each goes to the
    split furthest below its share of the images (relative to that share), so every
    split gets a patient before any gets a second while they are few.
    """
    by_patient: dict[int, list[dict]] = defaultdict(list)
    for item in items:
        by_patient[item["metadata"]["patient_id"]].append(item)
    total = len(items)
    counts = dict.fromkeys(SPLITS, 0)
    assigned: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for patient in sorted(by_patient, key=lambda p: hashlib.sha256(str(p).encode()).hexdigest()):
        split = max(SPLITS, key=lambda s: (SPLITS[s] * total - counts[s]) / (SPLITS[s] * total))
        counts[split] += len(by_patient[patient])
        assigned[split].extend(by_patient[patient])
    return {split: sorted(chosen, key=lambda item: item["image"]["id"]) for split, chosen in assigned.items()}


def read_severity(data: bytes, path: Path) -> dict[str, dict[str, float]]:
    """ieee8023's severity scores by file name: {file_name: {record column: score}}.

    The file (as stored at SEVERITY_COMMIT) starts with comment lines that begin with
    "##" and, saved through a spreadsheet, end with ",,"; then the header
    `filename,geographic_mean,opacity_mean` and one row per scored image::

        ## COVID-19 Pneumonia Severity Scores (Mean of 3 expert raters),,
        filename,geographic_mean,opacity_mean
        1-s2.0-S1684118220300682-main.pdf-002-a1.png,0.0,0.0
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BuildError(path, f"byte {error.start}", "is not UTF-8") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if not line.startswith("##")]
    rows = list(zip((number for number, _ in lines), csv.reader(line for _, line in lines)))
    expected = [_SEVERITY_JOIN_COLUMN, *SEVERITY_COLUMNS]
    if not rows or rows[0][1] != expected:
        where = f"line {rows[0][0]}" if rows else "header"
        raise BuildError(
            path,
            where,
            f"header {rows[0][1] if rows else None} is not {','.join(expected)}; is this covid-severity-scores.csv?",
        )
    scores: dict[str, dict[str, float]] = {}
    for number, row in rows[1:]:
        if not any(value.strip() for value in row):
            continue
        if len(row) != len(expected):
            raise BuildError(path, f"line {number}", f"has {len(row)} fields, the header {len(expected)}")
        name = row[0].strip()
        if name in scores:
            raise BuildError(path, f"line {number}", f"second row for image {name!r}")
        scores[name] = {}
        for value, (source, (column, highest)) in zip(row[1:], SEVERITY_COLUMNS.items()):
            try:
                score = float(value)
            except ValueError:
                raise BuildError(
                    path, f"line {number}, column {source!r}", f"value {value!r} is not a number"
                ) from None
            if not 0.0 <= score <= highest:
                raise BuildError(path, f"line {number}, column {source!r}", f"score {score} lies outside 0-{highest:g}")
            scores[name][column] = score
    return scores


def _assign_folds(items: list[dict], *, folds: int = FOLDS) -> dict[Any, int]:
    """image id -> fold (0 .. folds-1), whole patients, deterministic from patient ids.

    Patients are taken finding by finding (the commonest first; a patient's finding is
    that of their first image), and within a finding the largest series first, ties in
    the order of the SHA-256 of the patient id. Each goes to the fold with the fewest
    images of that finding, then the fewest images overall: folds balanced by images and,
    as far as whole patients allow, by finding.
    """
    by_patient: dict[int, list[dict]] = defaultdict(list)
    for item in sorted(items, key=lambda item: item["image"]["id"]):
        by_patient[item["metadata"]["patient_id"]].append(item)
    finding_of = {patient: chosen[0]["metadata"]["finding"] or "" for patient, chosen in by_patient.items()}
    finding_images: dict[str, int] = defaultdict(int)
    for patient, chosen in by_patient.items():
        finding_images[finding_of[patient]] += len(chosen)
    order = sorted(
        by_patient,
        key=lambda p: (
            -finding_images[finding_of[p]],
            finding_of[p],
            -len(by_patient[p]),
            hashlib.sha256(str(p).encode()).hexdigest(),
        ),
    )
    images = [0] * folds
    per_finding: dict[str, list[int]] = defaultdict(lambda: [0] * folds)
    assigned: dict[Any, int] = {}
    for patient in order:
        counts = per_finding[finding_of[patient]]
        fold = min(range(folds), key=lambda f: (counts[f], images[f], f))
        size = len(by_patient[patient])
        counts[fold] += size
        images[fold] += size
        assigned.update((item["image"]["id"], fold) for item in by_patient[patient])
    return assigned


def has_known_license(metadata: dict) -> bool:
    """Whether upstream names the image's own licence (the `licensed` config keeps only these)."""
    return metadata.get("license") is not None


# === Record encoding: masks, overlay =======================================================


def _make_record(item: dict) -> dict:
    """One dataset record from an image item of _split_generators."""
    image, annotations = item["image"], item["annotations"]
    data = Path(item["path"]).read_bytes()
    height, width = image["height"], image["width"]
    by_class: dict[int, list[dict]] = defaultdict(list)
    for annotation in annotations:
        by_class[annotation["category"]].append(annotation)
    masks: dict[str, dict | None] = {}
    decoded: dict[int, np.ndarray] = {}
    for index, column in enumerate(MASK_COLUMNS):
        anns = by_class.get(index, [])
        if any(a["segmentation"] is None for a in anns):
            # Part of this class has no mask upstream: a partial mask would be silently wrong.
            masks[column] = None
        elif not anns:
            masks[column] = {"path": None, "bytes": empty_mask_png(width, height)}
        else:
            decoded[index], box = decode_class_mask([a["segmentation"] for a in anns])
            masks[column] = {"path": None, "bytes": bit_png(pack_mask_rows(decoded[index], box=box), width)}
    return {
        "image": {"path": image["file_name"], "bytes": data},
        "overlay": {"path": None, "bytes": overlay_jpeg(data, decoded)},
        "image_id": image["id"],
        "file_name": image["file_name"],
        "width": width,
        "height": height,
        **masks,
        "objects": annotations,
        **item["metadata"],
        **item["severity"],
        "fold": item["fold"],
        "quality_flags": item["quality_flags"],
    }


def decode_class_mask(segmentations: list[dict]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The union of stored segmentations as an (H, W) uint8 array, and the box (x0, y0, x1, y1)
    outside which it is zero (pycocotools' bounding box of the RLE; a box reaching past the
    image, as odd runs can give, is cut to it by slicing)."""
    # Merging the RLEs costs next to nothing; OR-ing decoded full-size arrays would not.
    rle = union_rle(segmentations)
    x, y, w, h = (int(value) for value in mask_utils.toBbox(rle))
    return mask_utils.decode(rle), (x, y, x + w, y + h)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A boolean (H, W) mask as a 1-bit PNG: lossless, decodes to a bool array, shows black/white."""
    return bit_png(pack_mask_rows(mask), mask.shape[1])


def pack_mask_rows(mask: np.ndarray, *, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A (H, W) mask as PNG's 1-bit rows: (H, ceil(W / 8)) bytes, first pixel in the high bit.

    `box` (x0, y0, x1, y1), when given, must hold every set pixel. pycocotools decodes in
    column-major order, and reordering a full-size array to rows is the costliest step of
    a record; within the box it costs a quarter of that on this data."""
    height, width = mask.shape
    x0, y0, x1, y1 = box if box is not None else (0, 0, width, height)
    x0 -= x0 % 8  # whole bytes: the bits left of the box are zero anyway
    rows = np.zeros((height, (width + 7) // 8), dtype=np.uint8)
    if x1 > x0 and y1 > y0:
        packed = np.packbits(np.ascontiguousarray(mask[y0:y1, x0:x1]), axis=1)
        rows[y0:y1, x0 // 8 : x0 // 8 + packed.shape[1]] = packed
    return rows


def bit_png(rows: np.ndarray, width: int) -> bytes:
    """A 1-bit greyscale PNG `width` pixels wide from packed rows (pack_mask_rows).

    Written here, not by Pillow: Pillow expands the bits to a byte per pixel and tries
    every PNG filter on every row, which made mask encoding the slowest part of a build.
    Masks are long runs, so no filter and zlib's run-length strategy compress them about
    as well, six times faster. Pillow's own `compress_type=zlib.Z_RLE` save option was
    measured too (2026-12, Pillow 13.0, the 177 non-empty masks of 30 real rows): 2.0 s
    against these 30 lines' 0.87 s, for 16 % fewer bytes; the build's costliest step
    stays ours."""
    height, row_bytes = rows.shape
    lines = np.zeros((height, row_bytes + 1), dtype=np.uint8)  # each line: filter type 0, then the row
    lines[:, 1:] = rows
    compressor = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = compressor.compress(lines.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_EMPTY_MASKS: dict[tuple[int, int], bytes] = {}


def empty_mask_png(width: int, height: int) -> bytes:
    key = (width, height)
    if key not in _EMPTY_MASKS:
        _EMPTY_MASKS[key] = encode_mask_png(np.zeros((height, width), dtype=bool))
    return _EMPTY_MASKS[key]


def overlay_size(width: int, height: int, *, max_side: int = OVERLAY_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of an overlay: the image's shape, its long side at most `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def thumbnail_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (H, W) mask at `size` (width, height), nearest neighbour, as a bool array.

    Samples the pixels Pillow's NEAREST resize samples, without making a full-size image
    of the mask first."""
    height, width = mask.shape
    return mask[:, _nearest_sources(width, size[0])][_nearest_sources(height, size[1])] > 0


def _nearest_sources(source: int, target: int) -> np.ndarray:
    # The source pixel under each target pixel's centre, summed step by step in float64 as
    # Pillow's ImagingScaleAffine does, so that both round alike (tests compare with Pillow).
    steps = np.full(target, source / target)
    steps[0] *= 0.5
    return np.cumsum(steps).astype(np.intp)


def thumbnail_mask_any(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (H, W) mask at `size` (width, height) as a bool array, a pixel set when any source
    pixel of its block is: a one-pixel tube stays an unbroken line, where nearest-neighbour
    sampling (thumbnail_mask) would cut it into dashes."""
    height, width = mask.shape
    # Separable, one gather per offset within a block: numpy's reduceat is ten times slower
    # here, and pycocotools' masks are column-major, so whole columns are gathered first.
    column_offsets, row_offsets = _block_offsets(width, size[0]), _block_offsets(height, size[1])
    columns = mask[:, column_offsets[0]]
    for sources in column_offsets[1:]:
        columns = np.maximum(columns, mask[:, sources])
    rows = columns[row_offsets[0]]
    for sources in row_offsets[1:]:
        rows = np.maximum(rows, columns[sources])
    return rows > 0


def _block_offsets(source: int, target: int) -> list[np.ndarray]:
    # The source pixels of each target pixel's block (blocks tile the source), as one index
    # array per offset into the block; a shorter block repeats its last pixel.
    starts = (np.arange(target) * source) // target
    ends = np.append(starts[1:], source)
    return [np.minimum(starts + offset, ends - 1) for offset in range(int((ends - starts).max()))]


def thick_outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of a bool mask within `width` 4-connected steps of its background (mask_outline
    peeled `width` times)."""
    outline = np.zeros_like(mask)
    rest = mask
    for _ in range(width):
        layer = mask_outline(rest)
        outline |= layer
        rest = rest & ~layer
    return outline


def draw_overlay(image_bytes: bytes, masks: dict[int, np.ndarray], *, max_side: int = OVERLAY_MAX_SIDE) -> Image.Image:
    """The X-ray as RGB, its long side at most `max_side`, each class mask (class index ->
    full-size (H, W) array) drawn in its colour and its class's style (CLASS_STYLES): fills
    translucent, then outlines, then lines opaque (OVERLAY_STYLE_ORDER), class order within
    a style."""
    with Image.open(io.BytesIO(image_bytes)) as opened:
        size = overlay_size(*opened.size, max_side=max_side)
        opened.draft(None, size)  # JPEG: decode at reduced scale, the thumbnail needs no more
        # Shrink first, convert the thumbnail: greyscale and RGB(A) resize as they are; other
        # modes (palette, 16-bit) become RGB before anything is averaged.
        picture = opened if opened.mode in ("L", "RGB", "RGBA", "LA") else opened.convert("RGB")
        # reducing_gap shrinks by whole factors first: a thumbnail needs no full-size Lanczos pass.
        picture = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0).convert("RGB")
    # PIL's C loops blend a 512 px thumbnail in well under a millisecond per class.
    for index in sorted(masks, key=lambda index: (OVERLAY_STYLE_ORDER.index(CLASS_STYLES[index]), index)):
        colour = Image.new("RGB", size, CLASS_COLOURS[index])
        style = CLASS_STYLES[index]
        if style == "fill":
            inside = thumbnail_mask(masks[index], size)
            tinted = Image.blend(picture, colour, OVERLAY_ALPHA)
            picture = Image.composite(tinted, picture, Image.fromarray(inside))
        elif style == "outline":
            inside = thumbnail_mask(masks[index], size)
            picture.paste(colour, mask=Image.fromarray(thick_outline(inside, OVERLAY_OUTLINE_WIDTH)))
        else:
            line = thumbnail_mask_any(masks[index], size)
            # Two pixels wide, so that a tube reads as a line, not as a seam in the film.
            line[1:, :] |= line[:-1, :].copy()
            line[:, 1:] |= line[:, :-1].copy()
            picture.paste(colour, mask=Image.fromarray(line))
    return picture


def overlay_jpeg(image_bytes: bytes, masks: dict[int, np.ndarray]) -> bytes:
    """draw_overlay as the JPEG the `overlay` column stores."""
    buffer = io.BytesIO()
    draw_overlay(image_bytes, masks).save(buffer, format="JPEG", quality=_OVERLAY_JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a bool (H, W) mask with a 4-connected background neighbour (outside the
    image counts as background): the overlay's outline and the evaluation's surface. Equal to
    ``mask & ~scipy.ndimage.binary_erosion(mask)`` (tests check it), about ten times faster on
    full-size masks."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return mask & ~inner


# === Data-quality flags ====================================================================


def quality_flag(kind: str, column: str) -> str:
    """The flag code for a problem of `kind` with the class of mask column `column`.

    Args:
        kind: one of QUALITY_FLAG_KINDS.
        column: a mask column, e.g. ``"mask_left_lung"``.

    Returns:
        ``"<kind>:<column>"``, e.g. ``"missing:mask_left_lung"``.

    Raises:
        ValueError: `kind` or `column` is unknown.
    """
    if kind not in QUALITY_FLAG_KINDS:
        raise ValueError(f"quality flag kind {kind!r} is not one of {list(QUALITY_FLAG_KINDS)}")
    if column not in MASK_COLUMNS:
        raise ValueError(f"{column!r} is not a mask column; choose from {list(MASK_COLUMNS)}")
    return f"{kind}:{column}"


def parse_quality_flag(flag: str) -> tuple[str, str]:
    """A flag code back as (kind, mask column).

    Args:
        flag: a code from a record's `quality_flags`, e.g. ``"missing:mask_left_lung"``.

    Returns:
        (kind, mask column), e.g. ``("missing", "mask_left_lung")``.

    Raises:
        ValueError: `flag` is not a code quality_flag makes.
    """
    kind, separator, column = str(flag).partition(":")
    if not separator or kind not in QUALITY_FLAG_KINDS or column not in MASK_COLUMNS:
        raise ValueError(f"{flag!r} is not a quality flag (<kind>:<mask column>, kinds {list(QUALITY_FLAG_KINDS)})")
    return kind, column


def quality_flags(annotations: Sequence[dict], *, width: int) -> list[str]:
    """The data-quality flags of one image, in class order, then in QUALITY_FLAG_KINDS order.

    Args:
        annotations: the image's annotations as a record's `objects` holds them: `category`
            (class index) and `segmentation` (stored RLE, or None when there is no mask).
        width: the image's width in pixels.

    Returns:
        Codes (see quality_flag): an expected class that is missing, a single-instance class
        annotated more than once, a sided class with an instance whose centroid lies in the
        wrong half of the image. Empty when nothing is wrong.
    """
    by_class: dict[str, list[dict]] = defaultdict(list)
    for annotation in annotations:
        by_class[CLASSES[annotation["category"]]].append(annotation)
    flags = []
    for name, column in zip(CLASSES, MASK_COLUMNS):
        found = by_class.get(name, [])
        if name in EXPECTED_CLASSES and not found:
            flags.append(quality_flag("missing", column))
        if name in SINGLE_INSTANCE_CLASSES and len(found) > 1:
            flags.append(quality_flag("duplicate", column))
        if name in EXPECTED_SIDE and any(
            _on_wrong_side(annotation["segmentation"], EXPECTED_SIDE[name], width) for annotation in found
        ):
            flags.append(quality_flag("wrong_side", column))
    return flags


def _on_wrong_side(segmentation: dict | None, side: str, width: int) -> bool:
    centroid = rle_centroid_x(segmentation) if segmentation is not None else None
    if centroid is None:
        return False
    return centroid < width / 2 if side == "right" else centroid > width / 2


def rle_centroid_x(segmentation: dict) -> float | None:
    """The mean x of a stored segmentation's pixels.

    Read from the run lengths, with no mask decoded: COCO runs go down the columns, so
    pixel i lies in column i // height, and the columns of a run sum in closed form.

    Args:
        segmentation: a stored RLE, ``{"size": [height, width], "counts": str}``.

    Returns:
        The centroid's x in pixel units (a pixel's centre is at x + 0.5); None when the
        segmentation has no pixel.
    """
    height = segmentation["size"][0]
    runs = compressed_rle_runs(segmentation["counts"])
    if runs is None or height == 0:
        return None
    ends = np.cumsum(runs)
    starts, stops = (ends - runs)[1::2], ends[1::2]  # odd runs are the set pixels
    pixels = int((stops - starts).sum())
    if pixels == 0:
        return None

    def columns_below(n: np.ndarray) -> np.ndarray:
        # The sum of i // height over 0 <= i < n.
        whole, rest = np.divmod(n, height)
        return height * whole * (whole - 1) // 2 + rest * whole

    return float((columns_below(stops) - columns_below(starts)).sum()) / pixels + 0.5


# === Public record helpers =================================================================


def decode_mask(value: Any) -> np.ndarray | None:
    """A stored mask (PIL image, array, tensor, bytes or {"bytes": ...}) as a bool (H, W) array;
    None stays None."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value["bytes"]
    if isinstance(value, (bytes, bytearray)):
        with Image.open(io.BytesIO(value)) as image:
            # Most stored masks are all zero; Pillow finds that while decoding, with no array made.
            if image.mode in ("1", "L") and image.getbbox() is None:
                return np.zeros((image.height, image.width), dtype=bool)
            value = np.asarray(image)
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[0] == 1:
        # with_format("torch") gives every image channel-first: a mask is (1, H, W).
        array = array[0]
    return array > 0


def class_names(classes: Sequence[str] | None = None) -> list[str]:
    """`classes` as a list (all 14 when None), refusing names that are not classes."""
    names = list(CLASSES if classes is None else classes)
    unknown = [name for name in names if name not in CLASSES]
    if unknown:
        raise ValueError(f"classes={unknown!r} are not classes of this dataset; choose from {list(CLASSES)}")
    return names


def stack_masks(
    example: dict, classes: Sequence[str] | None = None, *, fill_missing: bool = False
) -> np.ndarray | torch.Tensor:
    """The class masks of one record as a bool array (C, H, W), in `classes` order (default: all 14).

    Works on records as `datasets` gives them: PIL images (the default format), numpy arrays
    (`with_format("numpy")`), torch tensors (`with_format("torch")`, then the result is a torch
    bool tensor too) or undecoded `{"bytes": ...}`. A null mask (the class is annotated on the
    image but upstream has no mask) becomes `fill_missing` everywhere; pass True to mark those
    pixels as "maybe" and mask them out of a loss yourself. (H, W) is the masks' size: a
    size-256 row's masks are 256 x 256 whatever its `width` and `height`.
    """
    names = class_names(classes)
    masks = [decode_mask(example[mask_column(name)]) for name in names]
    size = next((mask.shape for mask in masks if mask is not None), (int(example["height"]), int(example["width"])))
    stacked = np.empty((len(names), *size), dtype=bool)
    for index, mask in enumerate(masks):
        stacked[index] = fill_missing if mask is None else mask
    if any(type(example[mask_column(name)]).__module__ == "torch" for name in names):
        # torch is not a dependency: it is imported only when the rows already hold its tensors.
        import torch

        return torch.from_numpy(stacked)
    return stacked


# === Input checks: manifests, images, paths, the download cache ============================


def read_manifest(path: Path) -> dict[str, tuple[int | None, str]]:
    """Upstream path -> (size or None, git blob SHA-1)."""
    manifest = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            size = int(row["size"]) if row["size"].isdigit() else None
            manifest[row["path"]] = (size, row["git_blob_sha1"])
    return manifest


def git_blob_sha1(data: bytes) -> str:
    """The hash `git hash-object` prints, which the upstream manifest records."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_upstream(
    path: Path, upstream_path: str, manifest: dict, strict: bool, report: BuildReport, *, commit: str = UPSTREAM_COMMIT
) -> bytes:
    """The file's bytes; stop (strict) or count (not strict) when it differs from the pinned one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BuildError(path, upstream_path, "file not found") from None
    expected = manifest.get(upstream_path)
    if expected is None:
        problem = "is not a file of the upstream commit"
    elif expected[0] is not None and expected[0] != len(data):
        problem = f"has {len(data)} bytes, upstream {expected[0]}"
    elif git_blob_sha1(data) != expected[1]:
        problem = f"git blob SHA-1 {git_blob_sha1(data)} differs from upstream {expected[1]}"
    else:
        return data
    if strict:
        raise BuildError(
            path,
            upstream_path,
            f"{problem} (commit {commit}); to build from modified data give {setting('verify_upstream', False)}",
        )
    report.modified_files.append(upstream_path)
    return data


def _check_image(path: Path, image: dict, coco_path: Path) -> None:
    """The image file decodes completely and has the size the COCO file gives."""
    try:
        with Image.open(path) as opened:
            size = opened.size
            if opened.format == "JPEG":
                # libjpeg still reads every byte at 1/8 scale, so truncation is caught, 2x faster.
                opened.draft(opened.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            opened.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BuildError(path, f"image id {image['id']}", f"cannot be decoded as an image: {error}") from None
    if size != (image["width"], image["height"]):
        raise BuildError(
            coco_path,
            f"image id {image['id']}",
            f"width x height {image['width']}x{image['height']} disagrees with {path.name}, "
            f"which is {size[0]}x{size[1]}",
        )


def download_failure(error: BaseException) -> str:
    """What a failed download means and what to do: datasets reports an unreachable host as
    FileNotFoundError or ConnectionError, which reads like a missing local file."""
    return (
        f"failed: {type(error).__name__}: {error}. The network or the server failed (no connection, "
        "or the server did not deliver the file); to build offline, give "
        f"{setting('data_dir', '<a copy of the upstream repository>')} and "
        + setting("severity_file", f"<a copy of ieee8023's {SEVERITY_PATH}>")
    )


def _safe_join(root: Path, folder: str, file_name: Any, source: Path, record: str) -> Path:
    """root/folder/file_name, refusing names that leave the folder."""
    if (
        not isinstance(file_name, str)
        or not file_name
        or Path(file_name).is_absolute()
        or ".." in Path(file_name).parts
    ):
        raise BuildError(source, record, f"file_name {file_name!r} must name a file inside {folder}/")
    base = (root / folder).resolve()
    path = (base / file_name).resolve()
    if base not in path.parents:
        raise BuildError(source, record, f"file_name {file_name!r} resolves outside {folder}/")
    if not path.is_file():
        raise BuildError(root / folder / file_name, record, "image file not found")
    return path


def _remove_cached(path: Path) -> None:
    """Remove a downloaded or extracted file from the datasets cache, with its metadata files."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    for suffix in (".json", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# === Parsing helpers and COCO RLE ==========================================================


def _read_annotation_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BuildError(path, "annotation file", "file not found") from None


def _parse_json(raw: bytes, path: Path) -> dict:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BuildError(path, "JSON", f"unreadable or truncated: {error}") from None
    if not isinstance(data, dict):
        raise BuildError(path, "JSON", "the top level is not an object; is this a COCO file?")
    return data


def _parse_value(text: str, kind: str, path: Path, record: str) -> str | int | float | bool | None:
    text = text.strip()
    if text == "":
        return None
    try:
        if kind == "int32":
            return int(text)
        if kind == "float64":
            return float(text)
        if kind == "bool":
            return {"Y": True, "N": False}[text.upper()]
    except (ValueError, KeyError):
        raise BuildError(path, record, f"value {text!r} is not a {'Y/N flag' if kind == 'bool' else kind}") from None
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def rle_for_pycocotools(rle: dict) -> dict:
    """A stored segmentation ({"size": [h, w], "counts": str}) in the form pycocotools'
    decode, area, merge and toBbox take: counts as ASCII bytes."""
    return {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}


def union_rle(segmentations: Sequence[dict]) -> dict:
    """The union of stored segmentations (one or more) as one pycocotools RLE."""
    rles = [rle_for_pycocotools(segmentation) for segmentation in segmentations]
    return rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)


def compressed_rle_runs(counts: str) -> np.ndarray | None:
    """The run lengths of a COCO compressed RLE string (pycocotools' rleFrString), None if malformed.

    Each run is a little-endian group of 5-bit digits (chars 48..111); a digit with bit
    0x20 set continues the group, bit 0x10 of the last digit is the sign; from the
    fourth run on, each run is stored as the difference to the run two places before.
    """
    try:
        codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return None
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    if codes.min() < 0 or codes.max() >= 64 or codes[-1] & 0x20:
        return None
    ends = np.flatnonzero((codes & 0x20) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 12:  # more digits than any image size needs: damaged, and would overflow
        return None
    group = np.repeat(np.arange(ends.size), lengths)
    shift = 5 * (np.arange(codes.size) - starts[group])
    values = np.bincount(group, weights=(codes & 0x1F) << shift, minlength=ends.size).astype(np.int64)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return None if (runs < 0).any() else runs

"""nnU-Net v2's raw dataset as `covid-seg export --format nnunet` writes it and `covid-seg
evaluate` reads its predictions back: names, label encoding and the files' facts.

    OUT/Dataset777_CovidChestXraySeg/
        dataset.json            channels, labels and regions, and what the export did (`RECORD_KEY`)
        imagesTr/<case>_0000.png   the 84 train + validation images, greyscale
        labelsTr/<case>.png        their label maps
        imagesTs/<case>_0000.png   the 16 test images
        splits_final.json       our 5 patient-grouped folds

A case is `cxrseg_<image_id>`. The classes overlap (29 % of the left lung's pixels are also
cardiomediastinum), and an nnU-Net label map holds one label per pixel, so each distinct
combination of classes found at a pixel of a training image is one label, and each class is a
region: the labels whose combination holds it. nnU-Net's region-based training (sigmoid per
region) then learns the 14 masks as they are, and decoding a label map through the regions
gives back every mask pixel for pixel. Labels are numbered from 1 by the number of classes they
hold, then by those classes in class order: the same data always gets the same numbers.

What nnU-Net cannot hold, decided here and counted in the export's summary:
- A class with no pixel in any training label map (Chest Tube: no annotation at all) has no
  region: a region nothing ever fills only gives nnU-Net a NaN Dice. `evaluate` lists the class
  as not predicted.
- A null mask (annotated upstream without a mask: monitoring probes) adds no pixel: a label map
  has no "unknown" per class (nnU-Net's ignore label would blank every class at once).
- A mask the build flags missing (an expected lung or airway not annotated) is empty, as stored:
  the image stays in its fold, so the folds are exactly ours.

As of nnunetv2 2.8.1 (checked against its source, 2026-12): label ids must run 0..N with no gap
(`verify_dataset_integrity`); the output channels follow the order of `labels`; region-based
training is on only when some region has two labels or more; `regions_class_order` is written
into its uint8 output PNG, so it holds class index + 1 (upstream's category ids, all < 256);
`splits_final.json` is read from `nnUNet_preprocessed/<dataset>/`, where its planner copies
it from the raw folder (`ExperimentPlanner.__init__`, `_maybe_copy_splits_file`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = [
    "CASE_PREFIX",
    "CHANNEL_SUFFIX",
    "CONFIGS",
    "DATASET_JSON",
    "DATASET_NAME",
    "DEFAULT_DATASET_ID",
    "FILE_ENDING",
    "RECORD_KEY",
    "SPLITS_FILE",
    "LabelEncoding",
    "NnUNetExportError",
    "case_name",
    "class_bits",
    "dataset_folder_name",
    "image_id_of_case",
    "splits_note",
]

# 777: no dataset converter or integration test shipped with nnunetv2 2.8.1 uses it (they take
# 1-10 for the Medical Segmentation Decathlon, 15-227 and 987-999), and it is far from the
# low ids people give their own datasets; `dataset_id` changes it.
DEFAULT_DATASET_ID = 777
DATASET_NAME = "CovidChestXraySeg"
CASE_PREFIX = "cxrseg"
# One input channel: nnU-Net names an image <case>_<4-digit channel><file ending>.
CHANNEL_SUFFIX = "_0000"
FILE_ENDING = ".png"
DATASET_JSON = "dataset.json"
SPLITS_FILE = "splits_final.json"
# What the export did, inside dataset.json (nnU-Net keeps unknown keys through every copy it makes).
RECORD_KEY = "covid_chestxray_seg"
CONFIGS = (layout.CONFIG_NAME, layout.SIZE_256_CONFIG)
# Label maps are uint8 PNGs: label ids 0..255.
_MAX_LABEL = 255
_CASE = re.compile(r"^(?P<prefix>[A-Za-z]+)_(?P<id>0|[1-9][0-9]*)$")


class NnUNetExportError(CovidSegError, ValueError):
    """Data that nnU-Net's format cannot hold as asked (too many class combinations, no overlap)."""


def dataset_folder_name(dataset_id: int) -> str:
    """nnU-Net's folder name for the export: `Dataset<id, 3 digits>_CovidChestXraySeg`."""
    return f"Dataset{dataset_id:03d}_{DATASET_NAME}"


def case_name(image_id: int, *, prefix: str = CASE_PREFIX) -> str:
    """The nnU-Net case of an image: `cxrseg_<image_id>`."""
    return f"{prefix}_{int(image_id)}"


def image_id_of_case(case: str, *, prefix: str = CASE_PREFIX) -> int | None:
    """The image id a case name stands for; None when it is not `<prefix>_<image_id>`."""
    match = _CASE.match(case)
    if match is None or match["prefix"] != prefix:
        return None
    return int(match["id"])


def splits_note(dataset_id: int) -> str:
    """Where nnU-Net reads the folds from, for the summary and dataset.json."""
    folder = dataset_folder_name(dataset_id)
    return (
        f"{SPLITS_FILE} holds the dataset's 5 patient-grouped folds: nnU-Net reads it from "
        f"$nnUNet_preprocessed/{folder}/{SPLITS_FILE}; nnUNetv2_plan_and_preprocess copies it there from "
        f"$nnUNet_raw/{folder}/ (copy it by hand if you preprocess otherwise)"
    )


def class_bits(masks: Sequence[np.ndarray | None], *, shape: tuple[int, int]) -> np.ndarray:
    """The classes at each pixel as bits: bit i set where class i's mask is (a null mask sets none).

    Args:
        masks: one bool (H, W) mask or None per class, in class order.
        shape: (H, W), for an image whose masks are all null.

    Returns:
        A uint16 (H, W) array (14 classes fit in 16 bits).
    """
    bits = np.zeros(shape, dtype=np.uint16)
    for index, mask in enumerate(masks):
        if mask is not None:
            bits |= mask.astype(np.uint16) << np.uint16(index)
    return bits


def _members(pattern: int) -> tuple[int, ...]:
    return tuple(index for index in range(len(recipe.CLASSES)) if pattern >> index & 1)


@dataclass(frozen=True)
class LabelEncoding:
    """Label ids for the class combinations of the training images, and the regions.

    Attributes:
        combinations: label id - 1 -> the class indices at that label's pixels, ordered by the
            number of classes, then by the classes in class order.
    """

    combinations: tuple[tuple[int, ...], ...]

    @classmethod
    def from_patterns(cls, patterns: Iterable[int]) -> LabelEncoding:
        """The encoding of the class-bit patterns found in the training images.

        Args:
            patterns: the `class_bits` values found, in any order, repeats and 0 (background) included.

        Returns:
            One label per distinct non-zero pattern, numbered by class count, then class order.

        Raises:
            NnUNetExportError: more combinations than a uint8 label map holds.
        """
        combinations = sorted({_members(int(pattern)) for pattern in patterns if pattern}, key=lambda c: (len(c), c))
        if len(combinations) > _MAX_LABEL:
            raise NnUNetExportError(
                f"the training masks hold {len(combinations)} distinct class combinations: more than the "
                f"{_MAX_LABEL} labels of a uint8 label map"
            )
        return cls(combinations=tuple(combinations))

    @classmethod
    def from_labels(cls, labels: Mapping[str, Sequence[str]]) -> LabelEncoding:
        """The encoding the export's record in dataset.json holds, as `to_labels` wrote it.

        Args:
            labels: label id (a string, as JSON keys are) -> the class names at its pixels.

        Returns:
            The encoding the export used.

        Raises:
            NnUNetExportError: ids that do not run 1..N, or a name that is not a class.
        """
        if sorted(labels) != sorted(str(label) for label in range(1, len(labels) + 1)):
            raise NnUNetExportError(f"label ids must run 1..{len(labels)}, not {', '.join(sorted(labels))}")
        unknown = sorted({str(name) for names in labels.values() for name in names} - set(recipe.CLASSES))
        if unknown:
            raise NnUNetExportError(f"{', '.join(unknown)}: not classes of this dataset")
        return cls(
            combinations=tuple(
                tuple(recipe.CLASSES.index(name) for name in labels[str(label)]) for label in range(1, len(labels) + 1)
            )
        )

    def to_labels(self) -> dict[str, list[str]]:
        """label id -> the class names at its pixels, for dataset.json."""
        return {str(label): [recipe.CLASSES[i] for i in members] for label, members in self.numbered()}

    def numbered(self) -> list[tuple[int, tuple[int, ...]]]:
        """(label id, class indices) for every label, from 1."""
        return [(label, members) for label, members in enumerate(self.combinations, start=1)]

    def regions(self) -> dict[str, list[int]]:
        """Class name -> its region (the label ids whose combination holds it), in class order;
        a class no label holds has none."""
        found = {
            name: [label for label, members in self.numbered() if index in members]
            for index, name in enumerate(recipe.CLASSES)
        }
        return {name: ids for name, ids in found.items() if ids}

    def checked_regions(self, *, where: object) -> dict[str, list[int]]:
        """`regions`, checked to make nnU-Net train regions: at least one holds two labels.

        Args:
            where: the source, for the message.

        Returns:
            Class name -> its label ids, as `regions`.

        Raises:
            NnUNetExportError: every region is a single label (no two classes overlap), which
                nnU-Net would train as plain labels, one softmax, instead of regions.
        """
        regions = self.regions()
        if not any(len(ids) > 1 for ids in regions.values()):
            raise NnUNetExportError(
                "no two classes overlap in the training masks: every region would be a single label, and nnU-Net "
                "would then train one softmax over labels instead of a sigmoid per region",
                file=where,
            )
        return regions

    def encode(self, bits: np.ndarray) -> np.ndarray:
        """A class-bit map as a label map.

        Args:
            bits: a uint16 (H, W) map from `class_bits`.

        Returns:
            A uint8 (H, W) label map, 0 where no class is.

        Raises:
            NnUNetExportError: a pixel whose combination has no label.
        """
        table = np.full(1 << len(recipe.CLASSES), -1, dtype=np.int16)
        table[0] = 0
        for label, members in self.numbered():
            table[sum(1 << index for index in members)] = label
        labels = table[bits]
        if (labels < 0).any():
            unknown = _members(int(bits[labels < 0][0]))
            raise NnUNetExportError(
                f"classes {[recipe.CLASSES[i] for i in unknown]} meet at a pixel, a combination with no label"
            )
        return labels.astype(np.uint8)

    def decode(self, label_map: np.ndarray) -> dict[str, np.ndarray]:
        """A label map back as masks: what nnU-Net's regions hold.

        Args:
            label_map: a (H, W) label map of this encoding.

        Returns:
            Mask column -> bool (H, W), for every class with a region.
        """
        patterns = np.zeros(len(self.combinations) + 1, dtype=np.uint16)
        for label, members in self.numbered():
            patterns[label] = sum(1 << index for index in members)
        bits = patterns[np.asarray(label_map)]
        return {
            recipe.MASK_COLUMNS[recipe.CLASSES.index(name)]: (bits >> np.uint16(recipe.CLASSES.index(name)) & 1) == 1
            for name in self.regions()
        }

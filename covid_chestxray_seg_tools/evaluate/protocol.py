"""What is scored and what a baseline may learn from: a split, cross-validation, one fold.

- `--split test` (or any split): that split's images, predictions in `DIR/<split>/`.
- `--split cv`: every train and validation image, each predicted by the model of its own fold
  (out-of-fold predictions), found under its own split (`DIR/train/`, `DIR/validation/`).
- `--fold K`: fold K's images only (cross-validation).

A baseline predicting a split fits on the development images (train + validation) outside it;
under cross-validation it fits one model per fold on the other four folds (`fit_rounds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError
from covid_chestxray_seg_tools.evaluate.predictions import Targets
from covid_chestxray_seg_tools.source import Source, load_rows, open_source

__all__ = [
    "BENCHMARK",
    "CV",
    "DEVELOPMENT_SPLITS",
    "FLAGS_COLUMN",
    "FOLD_COLUMN",
    "OPTIONAL_TRUTH_COLUMNS",
    "RULES",
    "TRUTH_COLUMNS",
    "FitRound",
    "Selection",
    "fit_rounds",
    "fit_splits",
    "read_truth",
]

CV = "cv"

# The benchmark and the protocol's rules, in words, once: the card renders them (its protocol
# section), `covid-seg evaluate --help` prints them, the docs link here; `scoring` and
# `predictions` are the code that applies them.
BENCHMARK = (
    "Cross-validation is the primary measure: out-of-fold predictions of every development image "
    f"(train + validation, {recipe.FOLDS} patient-grouped folds); the test split is secondary (few images). "
    f"The headline number is the macro mean Dice (and NSD) over the headline classes "
    f"({', '.join(recipe.HEADLINE_CLASSES)}: a mask on at least {recipe.HEADLINE_MIN_IMAGES} development "
    "images), with a 95 % bootstrap interval that resamples patients for all of them at once. The devices are "
    f"reported per class; rare classes (a mask on fewer than {recipe.RARE_BELOW} development images) are "
    "reported, never averaged."
)
RULES = {
    "binary": (
        "A prediction is a binary mask at the image's full size: 0 is background, its other value the class "
        "(0/1, 0/255, 1-bit). A probability map (more than two values) is refused unless `--threshold T` cuts it at "
        "T of its format's full scale (255 for 8-bit, 65535 for 16-bit, 1.0 for float images)."
    ),
    "skipped": (
        "Skipped, and counted: a pair whose true mask is null (annotated without a mask), a pair whose class the "
        "image's `quality_flags` mark `missing:<mask column>` (left out of the annotation by mistake), and a pair "
        "where both masks are empty."
    ),
    "one_empty": (
        "When exactly one of the two masks is empty, Dice, IoU, NSD and clDice are 0 and the distances are missing "
        "(counted, never averaged as 0 or infinity)."
    ),
    "not_predicted": (
        "A class no image's predictions hold is reported as not predicted, not scored as empty masks, so that two "
        "models' tables compare; `--classes` chooses the classes scored. The headline needs every headline class."
    ),
    "interval": (
        "Each mean comes with a 95 % percentile-bootstrap interval that resamples patients (all images of a patient "
        "together; 2000 resamples, seed 0); under cross-validation each fold's mean too."
    ),
    "compare": (
        "`--compare` gives, per class and metric and for the headline, the mean of the paired differences A−B "
        "over the image-class pairs both score, with a patient-bootstrap 95 % interval, marked where it excludes 0."
    ),
}
DEVELOPMENT_SPLITS = tuple(recipe.FOLD_SPLITS)
FOLD_COLUMN = "fold"
# The build's data-quality codes; "missing:<mask column>" marks a class left out by mistake.
FLAGS_COLUMN = "quality_flags"
# Columns of the ground truth that scoring reads (the image bytes are never read), and those it
# reads where the source has them (builds of older builders lack some).
TRUTH_COLUMNS = ("image_id", "patient_id", "width", "height", *recipe.MASK_COLUMNS)
OPTIONAL_TRUTH_COLUMNS = (FOLD_COLUMN, FLAGS_COLUMN, *(column for column, _ in recipe.SEVERITY_COLUMNS.values()))


@dataclass(frozen=True)
class Selection:
    """The images scored: one split, or cross-validation (`split` "cv"), or one fold of it.

    Attributes:
        split: a split name, or "cv".
        fold: under cross-validation, one fold (0 .. FOLDS-1); None: all of them.
    """

    split: str
    fold: int | None = None

    @classmethod
    def parse(cls, *, split: str | None, fold: int | None) -> Selection:
        """The selection `--split` and `--fold` ask for (`--fold` alone means cross-validation).

        Raises:
            EvaluateError: a fold outside 0 .. FOLDS-1, or a fold with a split other than cv.
        """
        if fold is not None:
            if split not in (None, CV):
                raise EvaluateError(
                    f"scores a fold of the cross-validation: use {recipe.setting('split', CV)}, not {split}",
                    setting="fold",
                    value=fold,
                )
            if not 0 <= fold < recipe.FOLDS:
                raise EvaluateError(f"the folds are 0 to {recipe.FOLDS - 1}", setting="fold", value=fold)
            return cls(split=CV, fold=fold)
        return cls(split=split or "test")

    @property
    def cross_validation(self) -> bool:
        return self.split == CV

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits whose images are scored."""
        return DEVELOPMENT_SPLITS if self.cross_validation else (self.split,)

    @property
    def label(self) -> str:
        """ "test", "cv" or "cv fold 2"."""
        return self.split if self.fold is None else f"{self.split} fold {self.fold}"

    def keeps(self, row: Mapping) -> bool:
        return self.fold is None or row[FOLD_COLUMN] == self.fold


def read_truth(*, source: str | Source, selection: Selection) -> tuple[list[dict], Targets]:
    """The ground-truth rows scored under `selection`, with only the columns scoring needs.

    Args:
        source: a built folder or a Hub dataset repo id, or a `Source` opened at a revision.
        selection: the split, cross-validation or fold.

    Returns:
        (the rows scored, each with the `TRUTH_COLUMNS`, `fold`, `quality_flags` where the
        source has it, and its `split`; the images predictions are read for).

    Raises:
        source.SourceError: the source cannot be read, is damaged, lacks a split or a column.
        EvaluateError: a development image without a fold under cross-validation, or nothing to score.
    """
    source = open_source(source)
    columns = (*TRUTH_COLUMNS, FOLD_COLUMN) if selection.cross_validation else TRUTH_COLUMNS
    rows, known = [], {}
    for split in selection.splits:
        read = load_rows(source=source, split=split, columns=columns, optional=OPTIONAL_TRUTH_COLUMNS)
        for row in read:
            row["split"] = split
            if selection.cross_validation and row[FOLD_COLUMN] is None:
                raise EvaluateError(f"{source}: image {row['image_id']} of split {split} has no fold")
        known[split] = frozenset(int(row["image_id"]) for row in read)
        rows += read
    kept = [row for row in rows if selection.keeps(row)]
    if not kept:
        raise EvaluateError(f"{source}: {selection.label} has no images to score")
    images = {
        split: {int(row["image_id"]): (int(row["width"]), int(row["height"])) for row in kept if row["split"] == split}
        for split in selection.splits
    }
    return kept, Targets(images={split: sizes for split, sizes in images.items() if sizes}, known=known)


@dataclass(frozen=True)
class FitRound:
    """One model of a baseline.

    Attributes:
        fold: the fold it predicts (cross-validation), or None.
        fit: the image ids it learns from.
        predict: the image ids it predicts.
    """

    fold: int | None
    fit: frozenset[int]
    predict: frozenset[int]


def fit_splits(split: str) -> tuple[str, ...]:
    """The splits a baseline predicting `split` learns from: the development splits outside it
    (train + validation for test and cross-validation, train for validation, validation for train)."""
    return tuple(name for name in DEVELOPMENT_SPLITS if name != split)


def fit_rounds(*, split: str, rows: Mapping[str, Sequence[Mapping]]) -> list[FitRound]:
    """The models a baseline fits to predict `split`, and what each learns from.

    Args:
        split: the split predicted, or "cv".
        rows: split -> its rows (image_id, and fold under cross-validation), for `split` (its
            own splits under cross-validation) and `fit_splits(split)`.

    Returns:
        One round for a split; under cross-validation one per fold that has images, fitted on
        the other folds.
    """
    development = [row for name in DEVELOPMENT_SPLITS for row in rows.get(name, ())]
    if split != CV:
        return [
            FitRound(
                fold=None,
                fit=frozenset(int(row["image_id"]) for name in fit_splits(split) for row in rows[name]),
                predict=frozenset(int(row["image_id"]) for row in rows[split]),
            )
        ]
    rounds = []
    for fold in range(recipe.FOLDS):
        predict = frozenset(int(row["image_id"]) for row in development if row[FOLD_COLUMN] == fold)
        if predict:
            fit = frozenset(int(row["image_id"]) for row in development if row[FOLD_COLUMN] != fold)
            rounds.append(FitRound(fold=fold, fit=fit, predict=predict))
    return rounds

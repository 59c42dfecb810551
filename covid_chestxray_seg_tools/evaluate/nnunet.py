"""Reading nnU-Net v2's predictions of an nnU-Net export (`export.nnunet`) back.

Two folders, each with the export's `dataset.json` (nnU-Net copies it along):

    DIR/<case>.npz                         what `nnUNetv2_predict ... --save_probabilities` writes
                                           (test, or any one split)
    DIR/fold_K/validation/<case>.npz       a trained model folder (`.../nnUNetTrainer__nnUNetPlans__2d`,
                                           trained with `--npz`): fold K's out-of-fold predictions,
                                           read for cross-validation (`--split cv`, `--fold K`)

As of nnunetv2 2.8.1 (checked against its source, 2026-12): a `<case>.npz` holds one array,
`probabilities`, float32 shaped (regions, 1, H, W), the sigmoid of each region at the exported
image's size, channels in the order of `labels` in dataset.json; nnU-Net cuts each at 0.5
(`LabelManager.convert_probabilities_to_segmentation`: `> 0.5`), and so does this reader. Its
`<case>.png` holds one label per pixel, a later region overwriting an earlier one: the
overlap is lost, so a folder of label maps alone is refused. For an export of `size-256`
(recorded in its dataset.json), the 256-px probabilities go back to each image's full size by
`resize.to_full_size` (bilinear, set from 0.5), the rule the card states.

Everything is checked when the folder is opened, before any array is decompressed: the
dataset.json's regions are the export's, every case is `<prefix>_<image_id>` of an image of the
scored splits, every scored image has its file, and each `.npz` has `probabilities` of the
right shape (read from its header). Under cross-validation each image must come from its own
fold's `validation/` folder.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import nnunet_format
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError
from covid_chestxray_seg_tools.evaluate.predictions import Targets
from covid_chestxray_seg_tools.hub_folder import resize

__all__ = [
    "PROBABILITIES",
    "THRESHOLD",
    "VALIDATION_FOLDER",
    "NnUNetDataset",
    "NnUNetPredictions",
    "fold_folder",
    "is_nnunet_folder",
]

PROBABILITIES = "probabilities"
# nnU-Net's cut: a pixel belongs to a region where its probability is above this.
THRESHOLD = 0.5
VALIDATION_FOLDER = "validation"
# nnU-Net's own command-line options, which a message tells the user to run nnU-Net with
# (they are nnU-Net's, not settings of this package).
_SAVE_PROBABILITIES = "nnUNetv2_predict ... --save_probabilities"
_NPZ = "nnUNetv2_train ... --npz (or nnUNetv2_train ... --val --npz after training)"


def fold_folder(fold: int | str) -> str:
    """nnU-Net's folder of fold K (or of fold "all") in a trained model folder."""
    return f"fold_{fold}"


def is_nnunet_folder(root: Path) -> bool:
    """`root` looks like an nnU-Net prediction or model folder (dataset.json, .npz files or fold folders)."""
    root = Path(root)
    return (
        (root / nnunet_format.DATASET_JSON).is_file()
        or any(root.glob("*.npz"))
        or any(path.is_dir() for path in root.glob("fold_*"))
    )


@dataclass(frozen=True)
class NnUNetDataset:
    """What an export's dataset.json (or nnU-Net's copy of it) says about the predictions.

    Attributes:
        path: the dataset.json read.
        columns: the mask column of each output channel, in nnU-Net's order.
        config: the config exported ("default" or "size-256").
        size: the side of a size-256 export's images (predictions go back to full size); None
            for a full-size export.
        prefix: the case names' prefix.
        folds: fold K -> the image ids of its validation cases.
    """

    path: Path
    columns: tuple[str, ...]
    config: str
    size: int | None
    prefix: str
    folds: tuple[frozenset[int], ...]

    @classmethod
    def read(cls, path: Path) -> NnUNetDataset:
        """Read and check a dataset.json against the export's own record in it.

        Raises:
            EvaluateError: unreadable, not written by the export, or regions that are not the export's.
        """
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EvaluateError(
                "no such file: an nnU-Net prediction folder holds a copy of the dataset's dataset.json", file=path
            ) from None
        except (OSError, ValueError) as error:
            raise EvaluateError(f"not a readable JSON file ({type(error).__name__}: {error})", file=path) from None
        record = document.get(nnunet_format.RECORD_KEY) if isinstance(document, dict) else None
        if not isinstance(record, dict):
            raise EvaluateError(
                f"has no {nnunet_format.RECORD_KEY!r} record: not the dataset.json of covid-seg's nnU-Net export, "
                "so its regions cannot be mapped to this dataset's classes",
                file=path,
                fix="export the dataset in nnU-Net's format with covid-seg and train on that export",
            )
        try:
            encoding = nnunet_format.LabelEncoding.from_labels(record["label_classes"])
            labels = dict(document["labels"])
            size = record["size"]
            config = str(record["config"])
            prefix = str(record["case_prefix"])
            folds = tuple(
                frozenset(_case_id(case, prefix=prefix, where=path) for case in fold) for fold in record["folds"]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise EvaluateError(
                f"its {nnunet_format.RECORD_KEY!r} record is damaged ({type(error).__name__}: {error})", file=path
            ) from None
        if labels.pop("background", None) != 0:
            raise EvaluateError("its labels have no background 0: not an export of this dataset", file=path)
        expected = encoding.regions()
        found = {name: _region_ids(ids) for name, ids in labels.items()}
        if found != expected:
            differ = sorted(name for name in set(found) | set(expected) if found.get(name) != expected.get(name))
            raise EvaluateError(
                f"its regions do not match the export's label combinations (regions {', '.join(differ)} differ): "
                "the predictions cannot be mapped back to the classes",
                file=path,
            )
        columns = tuple(recipe.mask_column(name) for name in labels)
        return cls(
            path=Path(path),
            columns=columns,
            config=config,
            size=None if size is None else int(size),
            prefix=prefix,
            folds=folds,
        )

    def fold_of(self, image_id: int) -> int | None:
        return next((fold for fold, ids in enumerate(self.folds) if image_id in ids), None)


def _region_ids(ids: object) -> list[int] | None:
    """A region's label ids, sorted; None for anything else (a plain label, a damaged value)."""
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return None
    return sorted(ids)


def _case_id(case: str, *, prefix: str, where: object) -> int:
    image_id = nnunet_format.image_id_of_case(case, prefix=prefix)
    if image_id is None:
        raise EvaluateError(
            f"{case!r} is not a case of this export (expected {prefix}_<image_id>)",
            file=where,
        )
    return image_id


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the `probabilities` array of an .npz file, read from its header
    (nothing decompressed beyond it).

    Raises:
        EvaluateError: not a readable .npz, or no `probabilities` array.
    """
    member = f"{PROBABILITIES}.npy"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if member not in names:
                arrays = ", ".join(name.removesuffix(".npy") for name in names) or "nothing"
                raise EvaluateError(
                    f"holds {arrays}, no {PROBABILITIES!r} array: not the region probabilities nnU-Net saves",
                    file=path,
                    fix=f"predict with {_SAVE_PROBABILITIES}",
                )
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in reader:
                    raise EvaluateError(f"an .npy header of version {version} (expected 1.0 or 2.0)", file=path)
                shape, _, dtype = reader[version](handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise EvaluateError(f"not a readable .npz file ({type(error).__name__}: {error})", file=path) from None
    return tuple(shape), np.dtype(dtype)


class _CaseMasks(Mapping[str, np.ndarray]):
    """Mask column -> bool (H, W) for one image, every region decoded at the first ask (one
    .npz holds them all)."""

    def __init__(self, columns: tuple[str, ...], load: Callable[[], dict[str, np.ndarray]]):
        self._columns, self._load = columns, load
        self._masks: dict[str, np.ndarray] | None = None

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._columns:
            raise KeyError(column)
        if self._masks is None:
            self._masks = self._load()
        return self._masks[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


class NnUNetPredictions:
    """nnU-Net's region probabilities for every scored image; see the module's doc.

    Called with (image_id, width, height), it gives mask column -> bool mask at the image's full
    size, decoded from the image's .npz when first asked for.

    Args:
        root: a prediction folder (test, or any one split) or a trained model folder (cross-validation).
        targets: the images scored, by split, and every image id of those splits.
        threshold: must be None: nnU-Net's own cut (above 0.5) applies.

    Raises:
        EvaluateError: a threshold; a model folder for a split, or a prediction folder for
            cross-validation; a dataset.json that is not the export's; a missing, foreign or
            misplaced case; an .npz that is unreadable, has no `probabilities` or the wrong shape.

    Attributes:
        dataset: the dataset.json's regions and the export's record.
        files: image id -> its .npz.
        predicted_columns: the mask columns with a region (a class without a training pixel has none).
    """

    def __init__(self, *, root: Path, targets: Targets, threshold: float | None = None):
        self.root = Path(root)
        if threshold is not None:
            raise EvaluateError(
                f"nnU-Net's region probabilities are cut at {THRESHOLD} as nnU-Net cuts them; a threshold applies "
                "to probability maps saved as images",
                setting="threshold",
                value=threshold,
            )
        folds = sorted(path for path in self.root.glob("fold_*") if path.is_dir())
        self.dataset = NnUNetDataset.read(self.root / nnunet_format.DATASET_JSON)
        # Cross-validation's targets know both development splits, even when one fold has images in one only.
        cross_validation = set(targets.known) == set(recipe.FOLD_SPLITS)
        if folds and not cross_validation:
            raise EvaluateError(
                f"{self.root}: a trained model folder ({', '.join(path.name for path in folds)}): its "
                f"fold_K/{VALIDATION_FOLDER}/ hold the out-of-fold predictions of cross-validation, not "
                f"{targets.describe()}",
                fix=f"score the folder nnUNetv2_predict wrote for it, or score {recipe.setting('split', 'cv')}",
            )
        if not folds and cross_validation:
            raise EvaluateError(
                f"{self.root}: an nnU-Net prediction folder is not out of fold: cross-validation reads the trained "
                f"model folder (.../nnUNetTrainer__nnUNetPlans__2d), whose fold_K/{VALIDATION_FOLDER}/ hold the "
                "out-of-fold .npz files"
            )
        self.files = self._model_files(targets) if folds else self._prediction_files(targets)
        self.predicted_columns = frozenset(self.dataset.columns)

    def _case_file(self, path: Path, *, targets: Targets) -> int:
        image_id = _case_id(path.stem, prefix=self.dataset.prefix, where=path)
        if not targets.is_known(image_id):
            raise EvaluateError(f"{path}: image {image_id} is not an image of {targets.describe()}")
        return image_id

    def _checked(self, folder: Path, *, hint: str) -> dict[str, Path]:
        """The .npz files of `folder` by case; a folder of label maps only is refused."""
        files = {path.stem: path for path in sorted(folder.glob("*.npz"))}
        if not files and any(folder.glob(f"*{nnunet_format.FILE_ENDING}")):
            raise EvaluateError(
                f"{folder}: holds nnU-Net's label maps only (one label per pixel), no .npz region probabilities: "
                "the classes overlap, and a label map keeps one region per pixel",
                fix=f"run {hint}, which saves each case's region probabilities as <case>.npz",
            )
        return files

    def _prediction_files(self, targets: Targets) -> dict[int, Path]:
        found = self._checked(self.root, hint=_SAVE_PROBABILITIES).values()
        files = {self._case_file(path, targets=targets): path for path in found}
        checked = {}
        for split, sizes in targets.images.items():
            for image_id, size in sizes.items():
                if image_id not in files:
                    case = nnunet_format.case_name(image_id, prefix=self.dataset.prefix)
                    raise EvaluateError(
                        f"{self.root / (case + '.npz')}: no such file: image {image_id} of split {split} has no "
                        "prediction"
                    )
                checked[image_id] = self._shape_checked(files[image_id], size=size)
        return checked

    def _model_files(self, targets: Targets) -> dict[int, Path]:
        by_fold: dict[int, list[tuple[str, int, tuple[int, int]]]] = {}
        for split, sizes in targets.images.items():
            for image_id, size in sizes.items():
                fold = self.dataset.fold_of(image_id)
                if fold is None:
                    raise EvaluateError(
                        f"{self.dataset.path}: image {image_id} of split {split} is in none of the export's folds: "
                        "the model was trained on an export of another build"
                    )
                by_fold.setdefault(fold, []).append((split, image_id, size))
        files: dict[int, Path] = {}
        for fold, images in sorted(by_fold.items()):
            folder = self.root / fold_folder(fold) / VALIDATION_FOLDER
            if not folder.is_dir():
                raise EvaluateError(
                    f"{folder}: no such folder: fold {fold} has no out-of-fold predictions",
                    fix=f"train fold {fold} with {_NPZ}",
                )
            found = self._checked(folder, hint=_NPZ)
            for path in found.values():
                other = self._case_file(path, targets=targets)
                if self.dataset.fold_of(other) != fold:
                    raise EvaluateError(
                        f"{path}: image {other} belongs to fold {self.dataset.fold_of(other)}, not {fold}: not an "
                        "out-of-fold prediction (was the model trained with the export's splits_final.json?)"
                    )
            for split, image_id, size in images:
                case = nnunet_format.case_name(image_id, prefix=self.dataset.prefix)
                if case not in found:
                    raise EvaluateError(
                        f"{folder / (case + '.npz')}: no such file: image {image_id} of split {split} (fold {fold}) "
                        "has no out-of-fold prediction"
                    )
                files[image_id] = self._shape_checked(found[case], size=size)
        return files

    def _shape_checked(self, path: Path, *, size: tuple[int, int]) -> Path:
        """`path`, its `probabilities` checked to be float (regions, 1, H, W) at the exported size.

        Raises:
            EvaluateError: not an .npz with such an array.
        """
        shape, dtype = _npz_header(path)
        height, width = (self.dataset.size, self.dataset.size) if self.dataset.size else (size[1], size[0])
        expected = (len(self.dataset.columns), 1, height, width)
        if dtype.kind != "f" or shape != expected:
            what = (
                f"{self.dataset.size} x {self.dataset.size} (a size-256 export)"
                if self.dataset.size
                else (f"the image's {width} x {height}")
            )
            raise EvaluateError(
                f"{path}: {PROBABILITIES!r} is {dtype} {shape}; expected float {expected}: one probability map per "
                f"region of {self.dataset.path.name} at {what}"
            )
        return path

    def _load(self, path: Path, *, width: int, height: int) -> dict[str, np.ndarray]:
        try:
            with np.load(path) as archive:
                probabilities = np.asarray(archive[PROBABILITIES])[:, 0]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise EvaluateError(f"{path}: not a readable .npz file ({type(error).__name__}: {error})") from None
        if probabilities.size and not (np.nanmin(probabilities) >= 0 and np.nanmax(probabilities) <= 1):
            raise EvaluateError(
                f"{path}: {PROBABILITIES!r} runs from {np.nanmin(probabilities):g} to {np.nanmax(probabilities):g}: "
                "not probabilities in [0, 1]"
            )
        if self.dataset.size:
            masks = resize.to_full_size(probabilities, width=width, height=height)
        else:
            masks = probabilities > THRESHOLD
        return dict(zip(self.dataset.columns, masks))

    def __call__(self, image_id: int, width: int, height: int) -> Mapping[str, np.ndarray]:
        path = self.files[image_id]
        return _CaseMasks(self.dataset.columns, lambda: self._load(path, width=width, height=height))

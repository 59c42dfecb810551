"""The learned baseline: a small U-Net (MONAI's `UNet`, random initialisation, nothing
downloaded) trained on the CPU from the `size-256` config, all 14 classes at once, seeded.

- Cross-validation: one model per fold, trained on the other four folds of train + validation;
  each predicts its own fold (out-of-fold predictions for every development image).
- Test: one model trained on train + validation, predicting test.

Each model sees the `size-256` image and masks, shrunk by the same rules to `size` when that
is smaller (`resize`); it outputs one sigmoid probability map per class, which
`resize.to_full_size` brings back to the image's full size (bilinear, set from 0.5).
Predictions are written as `OUT/<split>/<image_id>/<mask column>.png` (1-bit, full size),
the layout `covid-seg evaluate` reads. A class whose mask is null on a training image
(annotated without a mask upstream) is left out of that image's loss.

torch and monai come with the optional extra `[train]`; this module imports them when it runs.
"""

from __future__ import annotations

import io
import math
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout, resize
from covid_chestxray_seg_tools.source import Source, load_splits

__all__ = [
    "COLUMNS",
    "DEVELOPMENT_SPLITS",
    "NAME",
    "TEST_SPLIT",
    "Round",
    "Samples",
    "Settings",
    "TrainingResult",
    "UNetError",
    "concatenate",
    "load_samples",
    "predict",
    "train",
    "train_and_predict",
    "versions",
    "write_predictions",
]

NAME = "unet"
DEVELOPMENT_SPLITS = tuple(recipe.FOLD_SPLITS)
TEST_SPLIT = "test"
COLUMNS = ("image", "image_id", "width", "height", "fold", *recipe.MASK_COLUMNS)


class UNetError(CovidSegError, ValueError):
    """The U-Net cannot be trained here: torch or monai missing, or data it cannot learn from."""


@dataclass(frozen=True)
class Settings:
    """How the U-Net is trained.

    Attributes:
        size: the side the model sees (256, or smaller: the size-256 rows shrunk by the same rules).
        epochs: passes over the training images, per model.
        channels: feature maps at each level of the U-Net (each level halves the resolution).
        batch_size: images per step.
        learning_rate: Adam's, decayed to zero on a cosine over all steps.
        seed: torch's seed, for the initial weights and the order of the images (model k is
            seeded with seed + k).
        limit: keep only the first `limit` images of each split (a tiny run for tests).
        threads: torch's intra-op threads (None: torch's default, one per core).
    """

    size: int = 128
    epochs: int = 10
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    batch_size: int = 2
    learning_rate: float = 2e-3
    seed: int = 0
    limit: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 8 <= self.size <= resize.SIZE:
            raise UNetError(f"must be 8 to {resize.SIZE} (the size-256 config's side)", setting="size", value=self.size)
        if self.size % 2 ** (len(self.channels) - 1):
            raise UNetError(
                f"must be a multiple of {2 ** (len(self.channels) - 1)} "
                f"(a U-Net of {len(self.channels)} levels halves it {len(self.channels) - 1} times)",
                setting="size",
                value=self.size,
            )


@dataclass
class Samples:
    """One split's images and masks as arrays at the training size.

    Attributes:
        split: the split they come from.
        image_ids, folds, widths, heights: per image (fold None on test).
        images: float32 (N, 1, S, S) in [0, 1].
        masks: float32 (N, 14, S, S), 0 or 1.
        known: bool (N, 14): False where the stored mask is null (no loss on that class there).
    """

    split: str
    image_ids: list[int]
    folds: list[int | None]
    widths: list[int]
    heights: list[int]
    images: np.ndarray
    masks: np.ndarray
    known: np.ndarray

    def take(self, chosen: Sequence[int]) -> Samples:
        """The images at positions `chosen`."""
        index = list(chosen)
        return Samples(
            split=self.split,
            image_ids=[self.image_ids[i] for i in index],
            folds=[self.folds[i] for i in index],
            widths=[self.widths[i] for i in index],
            heights=[self.heights[i] for i in index],
            images=self.images[index],
            masks=self.masks[index],
            known=self.known[index],
        )


def concatenate(parts: Sequence[Samples], *, split: str) -> Samples:
    """Samples of several splits as one, in order (train + validation: what the test model and,
    fold by fold, the cross-validation models learn from), named `split`."""
    return Samples(
        split=split,
        image_ids=[i for part in parts for i in part.image_ids],
        folds=[f for part in parts for f in part.folds],
        widths=[w for part in parts for w in part.widths],
        heights=[h for part in parts for h in part.heights],
        images=np.concatenate([part.images for part in parts]),
        masks=np.concatenate([part.masks for part in parts]),
        known=np.concatenate([part.known for part in parts]),
    )


def _image_array(cell: dict, *, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(cell["bytes"])) as image:
        grey = image.convert("L")
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0


def load_samples(
    *, source: str | Source, splits: Sequence[str], size: int, limit: int | None = None
) -> dict[str, Samples]:
    """The `size-256` rows of `splits` as arrays at `size` (the rules of `resize` again when smaller).

    Args:
        source: a built folder or a Hub dataset repo id.
        splits: the splits to read.
        size: the side of the arrays.
        limit: keep the first `limit` rows of each split.

    Returns:
        Split -> its samples.

    Raises:
        source.SourceError: the source cannot be read, or has no size-256 config or split.
    """
    loaded = load_splits(source=source, splits=splits, config=layout.SIZE_256_CONFIG)
    result = {}
    for split, rows in loaded.items():
        rows = rows.select_columns(list(COLUMNS))
        for column in ("image", *recipe.MASK_COLUMNS):
            rows = rows.cast_column(column, datasets.Image(decode=False))
        if limit is not None:
            rows = rows.select(range(min(limit, len(rows))))
        rows = rows.to_list()
        images = np.zeros((len(rows), 1, size, size), dtype=np.float32)
        masks = np.zeros((len(rows), len(recipe.MASK_COLUMNS), size, size), dtype=np.float32)
        known = np.ones((len(rows), len(recipe.MASK_COLUMNS)), dtype=bool)
        for index, row in enumerate(rows):
            images[index, 0] = _image_array(row["image"], size=size)
            for channel, column in enumerate(recipe.MASK_COLUMNS):
                mask = recipe.decode_mask(row[column])
                if mask is None:
                    known[index, channel] = False
                    continue
                masks[index, channel] = mask if mask.shape == (size, size) else resize.resize_mask(mask, size=size)
        result[split] = Samples(
            split=split,
            image_ids=[int(row["image_id"]) for row in rows],
            folds=[row["fold"] for row in rows],
            widths=[int(row["width"]) for row in rows],
            heights=[int(row["height"]) for row in rows],
            images=images,
            masks=masks,
            known=known,
        )
    return result


# --- training ------------------------------------------------------------------------------


def _torch() -> Any:
    try:
        import monai  # noqa: F401 - checked here so that a missing monai is one message
        import torch
    except ImportError as error:
        raise UNetError(
            f"the U-Net needs torch and monai ({error}); install the extra: "
            "pip install -c constraints.txt torch==2.13.0 'covid-chestxray-seg[train]'"
        ) from None
    return torch


def _model(settings: Settings) -> Any:
    from monai.networks.nets.unet import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=len(recipe.MASK_COLUMNS),
        channels=settings.channels,
        strides=(2,) * (len(settings.channels) - 1),
        num_res_units=1,
    )


def _loss(torch: Any, logits: Any, masks: Any, known: Any) -> Any:
    """Binary cross-entropy plus soft Dice per class, both over the (image, class) pairs whose
    mask is known."""
    weight = known[:, :, None, None].to(logits.dtype)
    cross_entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits, masks, weight=weight.expand_as(logits))
    probabilities = torch.sigmoid(logits) * weight
    targets = masks * weight
    overlap = (probabilities * targets).sum(dim=(0, 2, 3))
    total = probabilities.sum(dim=(0, 2, 3)) + targets.sum(dim=(0, 2, 3))
    dice = 1 - (2 * overlap + 1) / (total + 1)
    return cross_entropy + dice.mean()


def train(samples: Samples, *, settings: Settings, seed: int, say: Callable[[str], None]) -> tuple[object, list[float]]:
    """A U-Net trained on `samples`.

    Args:
        samples: the images and masks to learn from.
        settings: how to train.
        seed: torch's seed for the initial weights and the order of the images.
        say: where each epoch's loss line goes.

    Returns:
        The model (in training mode) and the mean loss of each epoch.

    Raises:
        UNetError: torch or monai is missing.
    """
    torch = _torch()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = _model(settings)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    steps = settings.epochs * math.ceil(len(samples.image_ids) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))
    images, masks = torch.from_numpy(samples.images), torch.from_numpy(samples.masks)
    known = torch.from_numpy(samples.known)
    losses = []
    model.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(samples.image_ids), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            optimiser.zero_grad()
            loss = _loss(torch, model(images[batch]), masks[batch], known[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(order))
        say(f"    epoch {epoch + 1}/{settings.epochs}: loss {losses[-1]:.4f}")
    return model, losses


def predict(model: Any, samples: Samples, *, batch_size: int) -> np.ndarray:
    """The model's sigmoid probabilities for `samples`, float32 (N, 14, S, S).

    Raises:
        UNetError: torch or monai is missing.
    """
    torch = _torch()
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(samples.image_ids), batch_size):
            batch = torch.from_numpy(samples.images[start : start + batch_size])
            outputs.append(torch.sigmoid(model(batch)).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, len(recipe.MASK_COLUMNS), 1, 1), np.float32)


def write_predictions(probabilities: np.ndarray, samples: Samples, *, folder: Path) -> int:
    """Write FOLDER/<split>/<image_id>/<mask column>.png (1-bit) at each image's full size.

    Args:
        probabilities: (N, 14, S, S) values in [0, 1], one row per image of `samples`.
        samples: the images predicted (their split, ids and full sizes).
        folder: the predictions' root.

    Returns:
        How many files were written.
    """
    written = 0
    for index, image_id in enumerate(samples.image_ids):
        target = folder / samples.split / str(image_id)
        target.mkdir(parents=True)
        full = resize.to_full_size(probabilities[index], width=samples.widths[index], height=samples.heights[index])
        for channel, column in enumerate(recipe.MASK_COLUMNS):
            (target / f"{column}.png").write_bytes(recipe.encode_mask_png(full[channel]))
            written += 1
    return written


# --- the whole run -------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """One model: what it learnt from and predicted, and what it cost."""

    fold: int | None
    fit_images: int
    predicted_images: int
    epochs: int
    final_loss: float
    seconds: float


@dataclass(frozen=True)
class TrainingResult:
    """What `train_and_predict` did."""

    out: Path
    settings: Settings
    rounds: list[Round]
    files: int
    wall_seconds: float
    cpu_seconds: float
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON values."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["settings"]["channels"] = list(self.settings.channels)
        return data


def versions() -> dict[str, str]:
    """The versions a training run depends on."""
    import monai
    import torch

    from covid_chestxray_seg_tools import __version__

    return {
        "covid-chestxray-seg": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_and_predict(
    *, source: str | Source, out: Path, settings: Settings, say: Callable[[str], None] = lambda _: None
) -> TrainingResult:
    """Train the cross-validation models and the test model, and write their predictions.

    Args:
        source: a built folder or a Hub dataset repo id (its `size-256` config is read).
        out: the folder to create: OUT/train, OUT/validation (out-of-fold) and OUT/test.
        settings: how to train.
        say: where progress lines go.

    Returns:
        What was trained and written, with its wall and CPU time.

    Raises:
        UNetError: torch or monai is missing; a development image without a fold.
        source.SourceError: the source cannot be read.
        staging.ExistsError: `out` exists.
    """
    torch = _torch()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    samples = load_samples(
        source=source, splits=(*DEVELOPMENT_SPLITS, TEST_SPLIT), size=settings.size, limit=settings.limit
    )
    development = concatenate([samples[split] for split in DEVELOPMENT_SPLITS], split="development")
    if any(fold is None for fold in development.folds):
        missing = development.image_ids[development.folds.index(None)]
        raise UNetError(f"{source}: development image {missing} has no fold; cross-validation needs every fold")
    rounds, files = [], 0
    with staging.staged(Path(out), replace=False) as folder:
        plans: list[tuple[int | None, list[int]]] = [
            (fold, [i for i, f in enumerate(development.folds) if f != fold]) for fold in range(recipe.FOLDS)
        ]
        plans.append((None, list(range(len(development.image_ids)))))
        for number, (fold, fit) in enumerate(plans):
            if fold is None:
                held_out = [samples[TEST_SPLIT]]
            else:
                chosen = [i for i, f in enumerate(development.folds) if f == fold]
                if not chosen:
                    continue
                held_out = [
                    samples[split].take([i for i, f in enumerate(samples[split].folds) if f == fold])
                    for split in DEVELOPMENT_SPLITS
                ]
            if not fit:
                raise UNetError(f"{source}: fold {fold}: no images to train on")
            began = time.perf_counter()
            say(f"model {number + 1}/{len(plans)}: " + (f"fold {fold}" if fold is not None else "test"))
            model, losses = train(development.take(fit), settings=settings, seed=settings.seed + number, say=say)
            for part in held_out:
                if part.image_ids:
                    files += write_predictions(
                        predict(model, part, batch_size=settings.batch_size), part, folder=folder
                    )
            rounds.append(
                Round(
                    fold=fold,
                    fit_images=len(fit),
                    predicted_images=sum(len(part.image_ids) for part in held_out),
                    epochs=settings.epochs,
                    final_loss=losses[-1] if losses else float("nan"),
                    seconds=time.perf_counter() - began,
                )
            )
    return TrainingResult(
        out=Path(out),
        settings=settings,
        rounds=rounds,
        files=files,
        wall_seconds=time.perf_counter() - start,
        cpu_seconds=_cpu_seconds() - cpu_start,
        versions=versions(),
    )

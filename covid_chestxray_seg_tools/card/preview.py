"""The card's preview picture: openly licensed X-rays with their masks overlaid, and a legend."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout

# Only images whose own licence allows showing them on a public card.
PREVIEW_LICENCES = ("CC BY", "CC BY-SA")
PREVIEW_HEIGHT = 320
PREVIEW_ALPHA = 0.45
# One colour per class, in class order (Okabe-Ito and Tableau hues, distinct on grey X-rays).
PALETTE = (
    (0, 114, 178), (86, 180, 233), (230, 159, 0), (240, 228, 66), (213, 94, 0), (204, 121, 167), (0, 158, 115),
    (255, 255, 255), (148, 103, 189), (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 127, 14), (214, 39, 40),
)


def render_preview(folder: Path) -> list[dict]:
    """Write the preview picture into `folder`: openly licensed images with their masks overlaid,
    and a legend. Returns the shown images (file name, licence, url) for the caption; [] when
    none may be shown."""
    columns = ["image_id", "file_name", "license", "url", "image", *recipe.MASK_COLUMNS]
    candidates = []  # (image_id, file, row index): the first three openly licensed images
    for path in layout.shard_paths(folder):
        table = pq.read_table(path, columns=["image_id", "license"]).to_pylist()
        candidates += [(row["image_id"], path, i) for i, row in enumerate(table) if row["license"] in PREVIEW_LICENCES]
    rows = [pq.read_table(path, columns=columns).slice(index, 1).to_pylist()[0] for _, path, index in sorted(candidates)[:3]]
    if not rows:
        return []
    tiles = []
    for row in rows:
        image = Image.open(io.BytesIO(row["image"]["bytes"]))
        image.draft("RGB", (image.width // 4, image.height // 4))  # JPEG: decode at reduced scale
        image = image.convert("RGB")
        size = (max(1, round(image.width * PREVIEW_HEIGHT / image.height)), PREVIEW_HEIGHT)
        # reducing_gap shrinks by whole factors first: a thumbnail needs no full-size Lanczos pass.
        pixels = np.asarray(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.float32)
        for colour, column in zip(PALETTE, recipe.MASK_COLUMNS):
            if row[column] is None:
                continue
            mask = Image.open(io.BytesIO(row[column]["bytes"])).resize(size, Image.Resampling.NEAREST)
            where = np.asarray(mask) > 0
            pixels[where] = (1 - PREVIEW_ALPHA) * pixels[where] + PREVIEW_ALPHA * np.asarray(colour, dtype=np.float32)
        tiles.append(Image.fromarray(pixels.round().astype(np.uint8)))
    font = ImageFont.load_default()
    legend = Image.new("RGB", (190, PREVIEW_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    step = PREVIEW_HEIGHT // (len(recipe.CLASSES) + 1)
    for index, (colour, name) in enumerate(zip(PALETTE, recipe.CLASSES)):
        top = 8 + index * step
        draw.rectangle((8, top, 22, top + 12), fill=colour, outline=(0, 0, 0))
        draw.text((30, top), name, fill=(0, 0, 0), font=font)
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 4 * len(tiles) + legend.width, PREVIEW_HEIGHT), (255, 255, 255))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    canvas.paste(legend, (x, 0))
    target = folder / layout.PREVIEW_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG")
    return [{"file_name": row["file_name"], "license": row["license"], "url": row["url"]} for row in rows]

"""The card's preview picture: the overlays of openly licensed X-rays side by side, and a colour legend."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout

# Only images whose own licence allows showing them on a public card.
PREVIEW_LICENCES = ("CC BY", "CC BY-SA")
PREVIEW_HEIGHT = 320


def render_preview(folder: Path) -> list[dict]:
    """Write the preview picture into `folder`: openly licensed images with their masks overlaid,
    and a legend. Returns the shown images (file name, licence, url) for the caption; [] when
    none may be shown."""
    columns = ["image_id", "file_name", "license", "url", "overlay"]
    candidates = []  # (image_id, file, row index): the first three openly licensed images
    for path in layout.shard_paths(folder):
        table = pq.read_table(path, columns=["image_id", "license"]).to_pylist()
        candidates += [(row["image_id"], path, i) for i, row in enumerate(table) if row["license"] in PREVIEW_LICENCES]
    rows = [
        pq.read_table(path, columns=columns).slice(index, 1).to_pylist()[0] for _, path, index in sorted(candidates)[:3]
    ]
    if not rows:
        return []
    tiles = []
    for row in rows:
        # The stored overlay: the same drawing the viewer shows, not a second one.
        overlay = Image.open(io.BytesIO(row["overlay"]["bytes"]))
        size = (max(1, round(overlay.width * PREVIEW_HEIGHT / overlay.height)), PREVIEW_HEIGHT)
        tiles.append(overlay.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    font = ImageFont.load_default()
    legend = Image.new("RGB", (190, PREVIEW_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    step = PREVIEW_HEIGHT // (len(recipe.CLASSES) + 1)
    for index, (colour, name) in enumerate(zip(recipe.CLASS_COLOURS, recipe.CLASSES)):
        top = 8 + index * step
        draw.rectangle((8, top, 22, top + 12), fill=colour, outline=(0, 0, 0))
        draw.text((30, top), name, fill=(0, 0, 0), font=font)
    canvas = Image.new(
        "RGB", (sum(t.width for t in tiles) + 4 * len(tiles) + legend.width, PREVIEW_HEIGHT), (255, 255, 255)
    )
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    canvas.paste(legend, (x, 0))
    target = folder / layout.PREVIEW_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG")
    return [{"file_name": row["file_name"], "license": row["license"], "url": row["url"]} for row in rows]

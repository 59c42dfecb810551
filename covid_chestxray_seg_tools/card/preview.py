"""The card's preview picture: the overlays of openly licensed X-rays side by side (the legend
is a picture of its own, card.legend)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from covid_chestxray_seg_tools.hub_folder import layout

__all__ = ["PREVIEW_HEIGHT", "PREVIEW_LICENSES", "render_preview"]

# Only images whose own licence allows showing them on a public card.
PREVIEW_LICENSES = ("CC BY", "CC BY-SA")
PREVIEW_HEIGHT = 320


def render_preview(folder: Path) -> list[dict[str, Any]]:
    """Write the preview picture into `folder`: openly licensed images with their masks overlaid.
    Returns the shown images (file name, licence, url) for the caption; [] when
    none may be shown."""
    columns = ["image_id", "file_name", "license", "url", "overlay"]
    candidates = []  # (image_id, file, row index): the first three openly licensed images
    for path in layout.shard_paths(folder):
        table = pq.read_table(path, columns=["image_id", "license"]).to_pylist()
        candidates += [(row["image_id"], path, i) for i, row in enumerate(table) if row["license"] in PREVIEW_LICENSES]
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
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), PREVIEW_HEIGHT), (255, 255, 255))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    target = folder / layout.PREVIEW_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG")
    return [{"file_name": row["file_name"], "license": row["license"], "url": row["url"]} for row in rows]

"""The overlay's legend: a picture with a swatch per class, drawn the way the overlay draws it,
and the card's table of each class's style and hex colour."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.colours import hex_colour

__all__ = ["LEGEND_PATH", "STYLE_GROUPS", "legend_table", "render_legend"]

LEGEND_PATH = "assets/legend.png"
# Style -> the legend column's heading.
STYLE_GROUPS = {"outline": "Anatomy: outline", "fill": "Opacities: translucent fill", "line": "Devices: line"}
_COLUMN_WIDTH, _ROW_HEIGHT, _SWATCH = 300, 26, (44, 18)


def legend_table() -> str:
    """Each class with how the overlay draws it and its colour as hex."""
    lines = ["| class | drawn as | colour |", "|---|---|---|"]
    lines += [
        f"| {name} | {recipe.CLASS_STYLES[index]} | `{hex_colour(recipe.CLASS_COLOURS[index])}` |"
        for index, name in enumerate(recipe.CLASSES)
    ]
    return "\n".join(lines)


def render_legend(folder: Path) -> str:
    """Write the legend picture into `folder`: one column per style, a swatch per class drawn
    on a grey ramp (the X-ray's range) as the overlay draws it, its name and hex colour.
    Returns the picture's repo path."""
    font = ImageFont.load_default(size=13)
    heading = ImageFont.load_default(size=14)
    rows = max(recipe.CLASS_STYLES.count(style) for style in STYLE_GROUPS)
    canvas = Image.new("RGB", (_COLUMN_WIDTH * len(STYLE_GROUPS), 34 + rows * _ROW_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for column, (style, title) in enumerate(STYLE_GROUPS.items()):
        left = 10 + column * _COLUMN_WIDTH
        draw.text((left, 8), title, fill=(0, 0, 0), font=heading)
        members = [index for index, each in enumerate(recipe.CLASS_STYLES) if each == style]
        for row, index in enumerate(members):
            top = 34 + row * _ROW_HEIGHT
            canvas.paste(_swatch(index), (left, top))
            label = f"{recipe.CLASSES[index]}  {hex_colour(recipe.CLASS_COLOURS[index])}"
            draw.text((left + _SWATCH[0] + 8, top + 2), label, fill=(0, 0, 0), font=font)
    target = folder / LEGEND_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG")
    return LEGEND_PATH


def _swatch(index: int) -> Image.Image:
    width, height = _SWATCH
    # A grey ramp from dark to light, as the X-ray under a class ranges.
    ramp = Image.linear_gradient("L").rotate(90).resize((width, height)).convert("RGB")
    ramp = ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    colour = recipe.CLASS_COLOURS[index]
    style = recipe.CLASS_STYLES[index]
    draw = ImageDraw.Draw(ramp)
    if style == "fill":
        tinted = Image.blend(ramp, Image.new("RGB", (width, height), colour), recipe.OVERLAY_ALPHA)
        ramp.paste(tinted, (0, 0))
    elif style == "outline":
        draw.rectangle((4, 3, width - 5, height - 4), outline=colour, width=recipe.OVERLAY_OUTLINE_WIDTH)
    else:
        draw.line((2, height // 2, width - 3, height // 2), fill=colour, width=2)
    return ramp

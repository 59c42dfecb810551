"""How far apart the overlay's class colours look: CIEDE2000 between the colours the overlay draws.

A class is drawn in one of three styles (the builder's CLASS_STYLES): an opaque outline
(anatomy), a translucent fill (opacities) or an opaque line (devices). What a viewer sees
of a fill is its colour blended over the X-ray, so a fill is measured as blended over mid
grey, and where two fills overlap, as one blended over the other. CIEDE2000 (Sharma, Wu and
Dalal 2005) is the CIE's colour difference: about 1 is a just-noticeable difference, and
differences above about 10 read as different colours at a glance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import covid_chestxray_seg as recipe

__all__ = [
    "ColourContrast",
    "ciede2000",
    "class_contrast",
    "drawn_colour",
    "hex_colour",
    "overlap_colour",
    "srgb_to_lab",
]

# The X-ray under a translucent fill, for measuring: mid grey.
BACKGROUND_GREY = 128
# Greys a solid colour must stand out from: the whole range an X-ray shows.
GREYS = tuple(range(0, 256, 5))

RGB = tuple[float, float, float]
Lab = tuple[float, float, float]


def hex_colour(colour: Sequence[float]) -> str:
    """`(r, g, b)` as `#rrggbb`."""
    return "#" + "".join(f"{round(value):02x}" for value in colour)


def srgb_to_lab(colour: Sequence[float]) -> Lab:
    """An sRGB colour (0-255 per channel) as CIELAB (D65 white), the space CIEDE2000 works in.

    Args:
        colour: red, green, blue, each 0-255 (floats allowed: blends are not whole levels).

    Returns:
        (L*, a*, b*).
    """

    def linear(value: float) -> float:
        value /= 255.0
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(value) for value in colour)
    # sRGB (IEC 61966-2-1) to XYZ, relative to the D65 white point.
    x = (0.4124564 * red + 0.3575761 * green + 0.1804375 * blue) / 0.95047
    y = 0.2126729 * red + 0.7151522 * green + 0.0721750 * blue
    z = (0.0193339 * red + 0.1191920 * green + 0.9503041 * blue) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def ciede2000(first: Lab, second: Lab) -> float:
    """The CIEDE2000 colour difference of two CIELAB colours (kL = kC = kH = 1).

    Args:
        first, second: (L*, a*, b*).

    Returns:
        Delta E 00, 0 for equal colours.
    """
    l1, a1, b1 = first
    l2, a2, b2 = second
    chroma_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(chroma_mean**7 / (chroma_mean**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    delta_l = l2 - l1
    delta_c = c2p - c1p
    if c1p * c2p == 0:
        delta_h_angle = 0.0
    elif abs(h2p - h1p) <= 180:
        delta_h_angle = h2p - h1p
    elif h2p - h1p > 180:
        delta_h_angle = h2p - h1p - 360
    else:
        delta_h_angle = h2p - h1p + 360
    delta_h = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(delta_h_angle) / 2)
    l_mean = (l1 + l2) / 2
    c_mean = (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_mean = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_mean = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        h_mean = (h1p + h2p + 360) / 2
    else:
        h_mean = (h1p + h2p - 360) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(h_mean - 30))
        + 0.24 * math.cos(math.radians(2 * h_mean))
        + 0.32 * math.cos(math.radians(3 * h_mean + 6))
        - 0.20 * math.cos(math.radians(4 * h_mean - 63))
    )
    delta_theta = 30 * math.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(c_mean**7 / (c_mean**7 + 25**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * c_mean
    s_h = 1 + 0.015 * c_mean * t
    r_t = -math.sin(math.radians(2 * delta_theta)) * r_c
    return math.sqrt(
        (delta_l / s_l) ** 2 + (delta_c / s_c) ** 2 + (delta_h / s_h) ** 2 + r_t * (delta_c / s_c) * (delta_h / s_h)
    )


def _blend(under: Sequence[float], colour: Sequence[float]) -> RGB:
    alpha = recipe.OVERLAY_ALPHA
    return tuple((1 - alpha) * low + alpha * high for low, high in zip(under, colour))


def drawn_colour(index: int) -> RGB:
    """What the overlay shows of class `index` where no other class is: its colour for an
    outline or a line, its colour blended over mid grey for a fill."""
    colour = recipe.CLASS_COLOURS[index]
    if recipe.CLASS_STYLES[index] == "fill":
        return _blend((BACKGROUND_GREY,) * 3, colour)
    return tuple(float(value) for value in colour)


def overlap_colour(first: int, second: int) -> RGB:
    """What the overlay shows where classes `first` and `second` both are: an opaque style
    (outline, line) drawn later covers a fill; two fills blend, the later over the earlier;
    of two opaque styles the later one shows."""
    order = sorted((first, second), key=_draw_position)
    below, above = order
    if recipe.CLASS_STYLES[above] != "fill":
        return tuple(float(value) for value in recipe.CLASS_COLOURS[above])
    if recipe.CLASS_STYLES[below] == "fill":
        return _blend(drawn_colour(below), recipe.CLASS_COLOURS[above])
    return drawn_colour(above)


def _on_grey(index: int, level: int) -> RGB:
    colour = recipe.CLASS_COLOURS[index]
    if recipe.CLASS_STYLES[index] == "fill":
        return _blend((level,) * 3, colour)
    return tuple(float(value) for value in colour)


def _draw_position(index: int) -> tuple[int, int]:
    return recipe.OVERLAY_STYLE_ORDER.index(recipe.CLASS_STYLES[index]), index


@dataclass(frozen=True)
class ColourContrast:
    """The smallest CIEDE2000 differences between what the overlay draws.

    Attributes:
        between_classes: the smallest difference between two classes' drawn colours.
        between_classes_pair: the two class names that give it.
        where_overlapping: over the pairs of classes that overlap, the smallest difference
            between the colour where both are and either class alone, or any other class.
        where_overlapping_pair: the overlapping pair that gives it, and the class it is confused with.
        from_grey: the smallest difference between a class as drawn on a grey and that grey
            (any grey an X-ray shows; a fill blended over it).
        from_grey_class: the class that gives it.
    """

    between_classes: float
    between_classes_pair: tuple[str, str]
    where_overlapping: float | None
    where_overlapping_pair: tuple[str, str, str] | None
    from_grey: float
    from_grey_class: str


def class_contrast(overlapping: Iterable[tuple[int, int]] = ()) -> ColourContrast:
    """Measure the overlay's colours.

    Args:
        overlapping: pairs of class indices that overlap on some image (see card.stats),
            for the colours where two classes meet.

    Returns:
        The smallest differences, with the classes that give them.
    """
    names = recipe.CLASSES
    labs = [srgb_to_lab(drawn_colour(index)) for index in range(len(names))]
    between, pair = min(
        (ciede2000(labs[a], labs[b]), (names[a], names[b])) for a, b in itertools.combinations(range(len(names)), 2)
    )
    where, where_pair = None, None
    for first, second in sorted({tuple(sorted(pair)) for pair in overlapping if pair[0] != pair[1]}):
        both = srgb_to_lab(overlap_colour(first, second))
        # Where both meet, the colour must differ from each class alone (else the one
        # below is not seen there) and from every third class (no look-alikes); an opaque
        # class on top is meant to show as itself.
        shown = max((first, second), key=_draw_position)
        for other in range(len(names)):
            if other == shown and recipe.CLASS_STYLES[shown] != "fill":
                continue
            distance = ciede2000(both, labs[other])
            if where is None or distance < where:
                where, where_pair = distance, (names[first], names[second], names[other])
    # A solid colour must stand out from every grey an X-ray shows; a fill from the grey under it.
    grey, grey_class = min(
        (ciede2000(srgb_to_lab(_on_grey(index, level)), srgb_to_lab((level,) * 3)), names[index])
        for index in range(len(names))
        for level in GREYS
    )
    return ColourContrast(
        between_classes=between,
        between_classes_pair=pair,
        where_overlapping=where,
        where_overlapping_pair=where_pair,
        from_grey=grey,
        from_grey_class=grey_class,
    )

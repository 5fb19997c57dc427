"""Draw the Teams app icons: color.png (192x192) and outline.png (32x32, white on transparent).

The logo: two overlapping circles, marketing (amber) and sales (teal), meeting in the
middle, with an "L" for Liaison. Drawn from geometry only (no fonts), at 4x and scaled
down, so it comes out the same on every machine.

Needs Pillow, which is not a dependency of Liaison; only this script uses it:

    pip install Pillow && python manifests/teams/make_icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from PIL import Image, ImageChops, ImageDraw
except ImportError:  # pragma: no cover - only when someone regenerates the icons
    sys.exit("make_icons.py needs Pillow: pip install Pillow")

HERE = Path(__file__).resolve().parent
SCALE = 4  # supersampling factor, for smooth edges

NAVY = (43, 58, 103)  # accentColor #2B3A67
AMBER = (245, 165, 36)  # marketing
TEAL = (46, 196, 182)  # sales
MEET = (255, 236, 179)  # where the two meet
WHITE = (255, 255, 255)

Box = tuple[float, float, float, float]


def disc(size: int, box: Box) -> Image.Image:
    """A filled circle as an 8-bit mask, `box` in final-size pixels."""
    mask = Image.new("L", (size * SCALE, size * SCALE), 0)
    ImageDraw.Draw(mask).ellipse([v * SCALE for v in box], fill=255)
    return mask


def ring(size: int, box: Box, width: float) -> Image.Image:
    """A circle outline as an 8-bit mask, `width` in final-size pixels."""
    mask = Image.new("L", (size * SCALE, size * SCALE), 0)
    ImageDraw.Draw(mask).ellipse([v * SCALE for v in box], outline=255,
                                 width=round(width * SCALE))
    return mask


def letter_l(size: int, left: float, top: float, height: float, stroke: float) -> Image.Image:
    """A sans-serif capital L as an 8-bit mask, built from two rectangles."""
    mask = Image.new("L", (size * SCALE, size * SCALE), 0)
    draw = ImageDraw.Draw(mask)
    width = height * 0.62
    bottom = top + height
    draw.rectangle([left * SCALE, top * SCALE, (left + stroke) * SCALE, bottom * SCALE],
                   fill=255)
    draw.rectangle([left * SCALE, (bottom - stroke) * SCALE, (left + width) * SCALE,
                    bottom * SCALE], fill=255)
    return mask


def down(mask: Image.Image, size: int) -> Image.Image:
    return mask.resize((size, size), Image.Resampling.LANCZOS)


def color_icon() -> Image.Image:
    """192x192, full colour on a full-bleed background (Teams rounds the corners itself)."""
    size = 192
    left = disc(size, (30, 46, 130, 146))
    right = disc(size, (62, 46, 162, 146))
    both = ImageChops.multiply(left, right)
    image = Image.new("RGB", (size * SCALE, size * SCALE), NAVY)
    image.paste(AMBER, mask=left)
    image.paste(TEAL, mask=right)
    image.paste(MEET, mask=both)
    image.paste(NAVY, mask=letter_l(size, 83, 74, 44, 9))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def outline_icon() -> Image.Image:
    """32x32, white on transparent: the two rings, the lens where they meet filled in."""
    size = 32
    left = ring(size, (2, 7, 20, 25), 2)
    right = ring(size, (12, 7, 30, 25), 2)
    lens = ImageChops.multiply(disc(size, (2, 7, 20, 25)), disc(size, (12, 7, 30, 25)))
    alpha = down(ImageChops.lighter(ImageChops.lighter(left, right), lens), size)
    white = Image.new("L", (size, size), 255)
    return Image.merge("RGBA", (white, white, white, alpha))


def main() -> None:
    color_icon().save(HERE / "color.png", optimize=True)
    outline_icon().save(HERE / "outline.png", optimize=True)
    print(f"wrote {HERE / 'color.png'} and {HERE / 'outline.png'}")


if __name__ == "__main__":
    main()

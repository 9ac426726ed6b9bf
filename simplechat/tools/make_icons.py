"""Draw the app's icons (favicon, home-screen and install icons) into simplechat/static/icons.

    .venv/bin/python -m simplechat.tools.make_icons

Run once after changing the design; the PNG and ICO files are committed. Pillow is a
development dependency only (requirements-dev.txt).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "static" / "icons"
BLUE = (10, 88, 202, 255)  # the navigation bar's blue, also the manifest's theme_color
WHITE = (255, 255, 255, 255)
SCALE = 4  # drawn this much larger, then scaled down: smooth edges without an SVG renderer


def bubble(draw: ImageDraw.ImageDraw, size: int, extent: float) -> None:
    """A white speech bubble with three blue dots, centred, ``extent`` of ``size`` wide."""
    width = size * extent
    left = (size - width) / 2
    top = size / 2 - width * 0.42
    right, bottom = left + width, top + width * 0.68
    draw.rounded_rectangle((left, top, right, bottom), radius=width * 0.2, fill=WHITE)
    tail_x = left + width * 0.24
    draw.polygon([(tail_x, bottom - 1), (tail_x + width * 0.22, bottom - 1),
                  (tail_x - width * 0.04, bottom + width * 0.2)], fill=WHITE)
    dot = width * 0.075
    middle_y = (top + bottom) / 2
    for i in (-1, 0, 1):
        x = size / 2 + i * width * 0.22
        draw.ellipse((x - dot, middle_y - dot, x + dot, middle_y + dot), fill=BLUE)


def icon(size: int, *, maskable: bool = False, opaque: bool = False) -> Image.Image:
    """The icon at ``size`` pixels. A maskable one fills the square and keeps the bubble inside
    the central safe zone (a circle of 80 %); the others are a rounded square."""
    big = size * SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if maskable or opaque:
        draw.rectangle((0, 0, big, big), fill=BLUE)
    else:
        draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 0.22, fill=BLUE)
    bubble(draw, big, 0.5 if maskable else 0.64)
    image = image.resize((size, size), Image.LANCZOS)
    return image.convert("RGB") if opaque else image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    icon(192).save(OUT / "icon-192.png", optimize=True)
    icon(512).save(OUT / "icon-512.png", optimize=True)
    icon(512, maskable=True).save(OUT / "icon-maskable-512.png", optimize=True)
    # iOS rounds the corners itself and shows transparency as black.
    icon(180, opaque=True).save(OUT / "apple-touch-icon.png", optimize=True)
    icon(256).save(OUT / "favicon.ico", sizes=[(16, 16), (32, 32), (48, 48)])
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(OUT.parents[2])}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

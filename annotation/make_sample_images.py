"""Draws the sample images in ``annotation/sample_images/`` (simple scenes with countable
objects, some text and distinct colours) so that a new user can try the app at once:

    python -m curate.annotation.make_sample_images [OUT_DIR]

Everything is drawn here with Pillow and its bundled font (nothing copied from anywhere); the
output is the same on every run. Each PNG stays well under 60 KB.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable

W, H = 480, 360
Draw = Any  # PIL.ImageDraw.ImageDraw (Pillow is the annotation extra: imported when drawing)


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text(d: Draw, xy: tuple[int, int], text: str, size: int, fill: str) -> None:
    d.text(xy, text, font=_font(size), fill=fill, anchor="mm")


def fruit_stall(d: Draw) -> None:
    d.rectangle((0, 0, W, H), fill="#f3e9d2")
    d.rectangle((0, 230, W, H), fill="#8b5a2b")  # table
    for i in range(3):  # three red apples
        x = 90 + i * 80
        d.ellipse((x - 30, 170, x + 30, 230), fill="#c62828")
        d.line((x, 170, x + 6, 155), fill="#4e342e", width=4)
    for i in range(2):  # two green pears
        x = 340 + i * 70
        d.ellipse((x - 22, 150, x + 22, 195), fill="#7cb342")
        d.ellipse((x - 30, 180, x + 30, 230), fill="#7cb342")
    d.rectangle((130, 40, 350, 100), fill="white", outline="#333", width=3)
    _text(d, (240, 70), "FRESH FRUIT", 30, "#c62828")


def street(d: Draw) -> None:
    d.rectangle((0, 0, W, 250), fill="#90caf9")
    d.ellipse((390, 20, 450, 80), fill="#fdd835")  # the sun
    d.rectangle((0, 250, W, H), fill="#616161")  # road
    for x in range(10, W, 80):
        d.rectangle((x, 300, x + 40, 308), fill="white")
    for x0, colour in ((40, "#ef6c00"), (200, "#5e35b1")):  # two houses
        d.rectangle((x0, 130, x0 + 120, 250), fill=colour)
        d.polygon([(x0 - 10, 130), (x0 + 60, 80), (x0 + 130, 130)], fill="#3e2723")
        d.rectangle((x0 + 15, 150, x0 + 45, 180), fill="#fff9c4")
        d.rectangle((x0 + 75, 150, x0 + 105, 180), fill="#fff9c4")
        d.rectangle((x0 + 45, 200, x0 + 75, 250), fill="#4e342e")
    cx, cy, r = 400, 170, 32  # a stop sign on a pole
    d.rectangle((397, 200, 403, 250), fill="#9e9e9e")
    d.regular_polygon((cx, cy, r), 8, rotation=22.5, fill="#d32f2f", outline="white")
    _text(d, (cx, cy), "STOP", 16, "white")
    d.rounded_rectangle((250, 270, 370, 310), radius=10, fill="#1e88e5")  # a blue car
    d.ellipse((265, 298, 290, 323), fill="black")
    d.ellipse((330, 298, 355, 323), fill="black")


def shapes(d: Draw) -> None:
    d.rectangle((0, 0, W, H), fill="#eceff1")
    for i in range(4):
        x = 70 + i * 60
        d.ellipse((x - 22, 60, x + 22, 104), fill="#1565c0")
    for i in range(3):
        x = 90 + i * 80
        d.polygon([(x, 140), (x - 28, 190), (x + 28, 190)], fill="#fbc02d")
    for i in range(2):
        x = 120 + i * 100
        d.rectangle((x - 25, 220, x + 25, 270), fill="#8e24aa")
    _text(d, (380, 170), "4 + 3 + 2", 34, "#212121")
    _text(d, (380, 215), "= 9", 34, "#212121")


def clock_and_books(d: Draw) -> None:
    d.rectangle((0, 0, W, H), fill="#fff3e0")
    cx, cy, r = 150, 140, 90
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill="white", outline="#263238", width=6)
    for n, ang in ((12, -90), (3, 0), (6, 90), (9, 180)):
        a = math.radians(ang)
        _text(d, (int(cx + 68 * math.cos(a)), int(cy + 68 * math.sin(a))), str(n), 22, "#263238")
    d.line((cx, cy, cx, cy - 60), fill="#263238", width=5)  # minute hand at 12
    d.line((cx, cy, cx + 42, cy), fill="#263238", width=7)  # hour hand at 3
    d.rectangle((280, 250, 460, 262), fill="#5d4037")  # shelf
    for i, colour in enumerate(("#e53935", "#43a047", "#1e88e5", "#fdd835", "#6d4c41")):  # five books
        x = 290 + i * 34
        d.rectangle((x, 250 - (70 + 12 * (i % 3)), x + 26, 250), fill=colour, outline="#212121")
    _text(d, (240, 320), "OPEN 9 TO 5", 28, "#bf360c")


def beach(d: Draw) -> None:
    d.rectangle((0, 0, W, 150), fill="#81d4fa")
    d.rectangle((0, 150, W, 240), fill="#0277bd")  # sea
    d.rectangle((0, 240, W, H), fill="#ffe082")  # sand
    for x0, colour in ((90, "#e91e63"), (300, "#00897b")):  # two umbrellas
        d.pieslice((x0 - 60, 200, x0 + 60, 300), 180, 360, fill=colour)
        d.line((x0, 250, x0, 330), fill="#5d4037", width=5)
    for x in (120, 170, 230):  # three birds
        d.line((x - 15, 60, x, 72), fill="#212121", width=3)
        d.line((x, 72, x + 15, 60), fill="#212121", width=3)
    d.polygon([(330, 185), (420, 185), (405, 205), (345, 205)], fill="#6d4c41")  # a boat
    d.polygon([(375, 120), (375, 182), (415, 182)], fill="white")
    d.rectangle((150, 300, 410, 345), fill="white", outline="#b71c1c", width=3)
    _text(d, (280, 322), "BEACH CLOSES AT 6", 20, "#b71c1c")


def lighthouse(d: Draw) -> None:
    d.rectangle((0, 0, W, H), fill="#1a237e")
    d.ellipse((380, 30, 440, 90), fill="#fff9c4")  # the moon
    d.ellipse((395, 25, 455, 85), fill="#1a237e")  # (a crescent)
    for x, y in ((40, 40), (110, 90), (180, 30), (250, 70), (320, 120), (60, 150), (450, 150)):  # seven stars
        d.regular_polygon((x, y, 7), 4, rotation=45, fill="#ffee58")
    d.rectangle((0, 300, W, H), fill="#37474f")  # rocks
    d.polygon([(200, 300), (280, 300), (265, 140), (215, 140)], fill="white")
    for y in (170, 230):  # red stripes
        d.polygon([(211 - (y - 140) // 8, y), (269 + (y - 140) // 8, y), (272 + (y - 140) // 8, y + 25), (208 - (y - 140) // 8, y + 25)], fill="#c62828")
    d.rectangle((220, 115, 260, 140), fill="#ffeb3b")  # the lamp
    d.polygon([(215, 115), (265, 115), (240, 95)], fill="#c62828")
    _text(d, (240, 330), "NORTH POINT", 26, "#eceff1")


SCENES: dict[str, Callable[[Draw], None]] = {
    "01_fruit_stall.png": fruit_stall,
    "02_street.png": street,
    "03_shapes.png": shapes,
    "04_clock_and_books.png": clock_and_books,
    "05_beach.png": beach,
    "06_lighthouse.png": lighthouse,
}


def make(out_dir: str) -> list[str]:
    from PIL import Image, ImageDraw

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, draw in SCENES.items():
        img = Image.new("RGB", (W, H), "white")
        draw(ImageDraw.Draw(img))
        img = img.quantize(colors=64)  # flat colours: a palette PNG stays small
        path = os.path.join(out_dir, name)
        img.save(path, optimize=True)
        paths.append(path)
    return paths


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_images")
    for p in make(out):
        print(f"{p}\t{os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()

"""Regenerate the demo's small fictional "scans" (deterministic; the PNGs are committed).

    python examples/demo/make_images.py

Each image is a 56x56 grayscale picture: a soft dark background and one bright ellipse whose
place and size are set below. They only have to be real images of the size the tiny model takes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 56
# file name -> (centre x, centre y, radius x, radius y, brightness)
SCANS = {
    "MM-101-a.png": (38, 40, 9, 7, 235), "MM-102-a.png": (20, 18, 5, 5, 250),
    "MM-103-a.png": (28, 30, 12, 8, 220), "MM-104-a.png": (16, 36, 7, 10, 240),
    "MM-105-a.png": (40, 16, 6, 6, 255), "MM-106-a.png": (28, 28, 14, 14, 200),
    "MM-107-a.png": (14, 14, 6, 9, 230), "MM-108-a.png": (42, 42, 8, 5, 245),
    "MM-109-a.png": (30, 20, 10, 6, 225), "MM-110-a.png": (28, 22, 6, 14, 240),
    "MM-111-a.png": (40, 28, 8, 16, 210), "MM-112-a.png": (18, 42, 9, 6, 250),
    "MM-113-a.png": (34, 34, 10, 8, 235), "MM-114-a.png": (42, 20, 7, 7, 245),
    "MM-115-a.png": (20, 26, 12, 10, 230), "MM-201-a.png": (28, 30, 12, 8, 215),
    "MM-202-a.png": (18, 40, 9, 9, 240), "MM-203-a.png": (38, 18, 7, 11, 250),
    "MM-204-a.png": (26, 26, 5, 12, 230), "MM-205-a.png": (44, 30, 6, 6, 255),
    "MM-206-a.png": (16, 20, 11, 7, 220), "MM-207-a.png": (38, 30, 9, 15, 215),
    "MM-208-a.png": (22, 14, 12, 4, 250),
}


def draw(cx: int, cy: int, rx: int, ry: int, level: int) -> Image.Image:
    image = Image.new("L", (SIZE, SIZE), 0)
    pen = ImageDraw.Draw(image)
    for ring in range(SIZE // 2, 0, -4):  # a soft vignette, brighter towards the middle
        shade = 40 - ring
        pen.ellipse([SIZE // 2 - ring, SIZE // 2 - ring, SIZE // 2 + ring, SIZE // 2 + ring], fill=max(shade, 8))
    pen.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=level)
    return image.filter(ImageFilter.GaussianBlur(1.2)).convert("RGB")


OUT = Path(__file__).resolve().parent / "data" / "MedXpertQA" / "images"


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in SCANS.items():
        draw(*spec).save(out / name, optimize=True)


if __name__ == "__main__":
    main()

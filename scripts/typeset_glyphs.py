#!/usr/bin/env python3
"""Renders typeset characters of 20 scripts into two image folders in oneshot-bench's layout
(ROOT/<script>/<character>/<n>.png, 105x105, dark ink on white), for the README's "Your own
images" demonstration: a network trained on some scripts, scored on scripts it never saw.

    apt-get install fonts-noto-core fonts-dejavu-core fonts-liberation   # Debian's font packages
    python3 -m pip install pillow
    python3 scripts/typeset_glyphs.py dataset/glyphs        # writes dataset/glyphs/{train,test}

Scripts are groups, characters are classes, and the 20 "drawers" of a character are 4 fonts
(sans and serif, regular and bold, of the distribution's Noto, DejaVu or Liberation families) x 5
small distortions each (rotation up to 8 degrees, scale, shift, and for some a thicker or thinner
pen), drawn from a fixed seed: the same folder on every machine with the same fonts. A character
is kept only if all 4 fonts have a glyph for it (none draws the missing-glyph box). At most 40
characters per script. The five scripts of TEST go to `test/`, the rest to `train/`.
"""
import hashlib
import os
import random
import sys

from PIL import Image, ImageDraw, ImageFilter, ImageFont

NOTO = "/usr/share/fonts/truetype/noto"
SIDE = 105


def noto(script):
    return [f"{NOTO}/Noto{family}{script}-{weight}.ttf" for family in ("Sans", "Serif") for weight in ("Regular", "Bold")]


LATIN_FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
]

# script: (fonts, code points). Letters only (no combining marks); unassigned or missing ones
# are dropped below.
SCRIPTS = {
    "Armenian": (noto("Armenian"), range(0x0531, 0x0557)),
    "Bengali": (noto("Bengali"), range(0x0985, 0x09BA)),
    "Cyrillic": (LATIN_FONTS, range(0x0410, 0x0430)),
    "Devanagari": (noto("Devanagari"), range(0x0905, 0x093A)),
    "Ethiopic": (noto("Ethiopic"), range(0x1200, 0x1358, 8)),
    "Georgian": (noto("Georgian"), range(0x10D0, 0x10F1)),
    "Greek": (LATIN_FONTS, range(0x0391, 0x03AA)),
    "Gujarati": (noto("Gujarati"), range(0x0A85, 0x0ABA)),
    "Gurmukhi": (noto("Gurmukhi"), range(0x0A05, 0x0A3A)),
    "Hebrew": (noto("Hebrew"), range(0x05D0, 0x05EB)),
    "Kannada": (noto("Kannada"), range(0x0C85, 0x0CBA)),
    "Khmer": (noto("Khmer"), range(0x1780, 0x17A3)),
    "Lao": (noto("Lao"), range(0x0E81, 0x0EAF)),
    "Latin": (LATIN_FONTS, range(0x0041, 0x005B)),
    "Malayalam": (noto("Malayalam"), range(0x0D05, 0x0D3A)),
    "Myanmar": (noto("Myanmar"), range(0x1000, 0x1022)),
    "Sinhala": (noto("Sinhala"), range(0x0D85, 0x0DC7)),
    "Tamil": (noto("Tamil"), range(0x0B85, 0x0BBA)),
    "Telugu": (noto("Telugu"), range(0x0C05, 0x0C3A)),
    "Thai": (noto("Thai"), range(0x0E01, 0x0E2F)),
}
TEST = ["Ethiopic", "Georgian", "Kannada", "Khmer", "Thai"]
PER_SCRIPT = 40
DISTORTIONS = 5


def render(font_path, char, rng):
    """One drawing: the glyph scaled to fit 70% of the square, then distorted."""
    big = 512
    font = ImageFont.truetype(font_path, 300)
    canvas = Image.new("L", (big, big), 0)
    ImageDraw.Draw(canvas).text((big // 2, big // 2), char, fill=255, font=font, anchor="mm")
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    scale = 0.70 * SIDE / max(glyph.size) * rng.uniform(0.85, 1.05)
    size = (max(1, round(glyph.size[0] * scale)), max(1, round(glyph.size[1] * scale)))
    glyph = glyph.resize(size, Image.LANCZOS).rotate(rng.uniform(-8, 8), resample=Image.BILINEAR, expand=True)
    out = Image.new("L", (SIDE, SIDE), 0)
    dx, dy = rng.uniform(-0.06, 0.06) * SIDE, rng.uniform(-0.06, 0.06) * SIDE
    out.paste(glyph, (round((SIDE - glyph.size[0]) / 2 + dx), round((SIDE - glyph.size[1]) / 2 + dy)))
    pen = rng.choice([None, None, "thick", "thin"])
    if pen == "thick":
        out = out.filter(ImageFilter.MaxFilter(3))
    elif pen == "thin":
        out = out.filter(ImageFilter.MinFilter(3))
    return Image.eval(out, lambda v: 255 - v)  # dark ink on white paper


def has_glyph(font_path, char):
    """False when the font draws its missing-glyph box for `char` (or nothing)."""
    font = ImageFont.truetype(font_path, 64)

    def mask(c):
        image = Image.new("L", (128, 128), 0)
        ImageDraw.Draw(image).text((64, 64), c, fill=255, font=font, anchor="mm")
        return image.tobytes()

    drawn = mask(char)
    return any(drawn) and drawn != mask("\U000F0000")  # a private-use code point no font here has


def main(root):
    for script, (fonts, points) in sorted(SCRIPTS.items()):
        missing = [f for f in fonts if not os.path.exists(f)]
        if missing:
            sys.exit(f"{missing[0]} not found: install fonts-noto-core fonts-dejavu-core fonts-liberation (see this script's header)")
        chars = [chr(p) for p in points if all(has_glyph(f, chr(p)) for f in fonts)][:PER_SCRIPT]
        part = "test" if script in TEST else "train"
        for char in chars:
            folder = os.path.join(root, part, script, f"U+{ord(char):04X}")
            os.makedirs(folder, exist_ok=True)
            n = 0
            for font in fonts:
                for d in range(DISTORTIONS):
                    seed = int.from_bytes(hashlib.sha256(f"{script}|{ord(char)}|{os.path.basename(font)}|{d}".encode()).digest()[:8], "little")
                    image = render(font, char, random.Random(seed))
                    n += 1
                    image.save(os.path.join(folder, f"{n:02d}.png"), optimize=True)
        print(f"{part}/{script}: {len(chars)} characters x {len(fonts) * DISTORTIONS} drawings")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 scripts/typeset_glyphs.py OUT_DIR   (writes OUT_DIR/train and OUT_DIR/test)")
    main(sys.argv[1])

#!/usr/bin/python3
"""Regenerates the sample images in examples/ from scikit-image's bundled data (Debian's
python3-skimage). Sources and licences: examples/LICENSE.md.

  /usr/bin/python3 examples/make_samples.py [--out examples]

brick.png, gravel.png: 256x256 centre crops of the 512x512 grey CC0 textures, stored as RGB.
astronaut.jpg: the public-domain 512x512 photograph scaled to 256x256 (area averaging), JPEG q90.
Every file is kept under 150 KB; the script fails otherwise.
"""
import argparse
import io
import os

import numpy as np
from PIL import Image

SKIMAGE_DATA = "/usr/lib/python3/dist-packages/skimage/data"
MAX_BYTES = 150 * 1024


def centre_crop(img, size):
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def to_rgb(img):
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]


def save(img, path, **options):
    buf = io.BytesIO()
    fmt = "JPEG" if path.endswith(".jpg") else "PNG"
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format=fmt, **options)
    data = buf.getvalue()
    if len(data) > MAX_BYTES:
        raise SystemExit(f"{path}: {len(data)} bytes, over the {MAX_BYTES} byte budget")
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    print(f"wrote {path}: {img.shape[1]}x{img.shape[0]}, {len(data)} bytes")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in ("brick", "gravel"):
        grey = np.asarray(Image.open(os.path.join(SKIMAGE_DATA, f"{name}.png")).convert("L"))
        save(to_rgb(centre_crop(grey, 256)), os.path.join(a.out, f"{name}.png"), optimize=True)
    astronaut = Image.open(os.path.join(SKIMAGE_DATA, "astronaut.png")).convert("RGB")
    small = np.asarray(astronaut.resize((256, 256), Image.BOX))
    save(small, os.path.join(a.out, "astronaut.jpg"), quality=90, optimize=True)


if __name__ == "__main__":
    main()

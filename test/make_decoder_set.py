#!/usr/bin/python3
"""Procedural image set for decoder training and tests (docs/decoders.md).

    make_decoder_set.py OUTDIR --count N [--size 64] [--seed S]

Writes OUTDIR/img_00000.png ... : each image is a random smooth colour gradient background, 2-4
soft coloured discs and one set of oriented sinusoidal stripes, all with random parameters, so
that the set has large per-pixel variance (predicting the mean image is a poor baseline) while
each image is cheap to reconstruct. Deterministic for a given seed; needs only numpy and Pillow
(Debian's /usr/bin/python3).
"""
import argparse
import os

import numpy as np
from PIL import Image


def make(rng, size):
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    img = np.zeros((size, size, 3))
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (np.cos(ang) * (x - 0.5) + np.sin(ang) * (y - 0.5)), 0, 1)[..., None]
    img += (1 - t) * c0 + t * c1
    for _ in range(rng.integers(2, 5)):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.3)
        col = rng.uniform(0, 1, 3)
        a = 1 / (1 + np.exp(((x - cx) ** 2 + (y - cy) ** 2) ** 0.5 / r * 12 - 12))
        img = img * (1 - a[..., None]) + a[..., None] * col
    ang = rng.uniform(0, np.pi)
    freq = rng.uniform(2, 6)
    s = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(ang) * x + np.sin(ang) * y) +
                           rng.uniform(0, 2 * np.pi))
    img = img * (1 - 0.25 * s[..., None]) + 0.25 * s[..., None] * rng.uniform(0, 1, 3)
    return np.clip(img, 0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for i in range(a.count):
        img = (make(rng, a.size) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(img, "RGB").save(os.path.join(a.outdir, "img_%05d.png" % i))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes a set of textures from known families as small PNGs (numpy only; a minimal PNG encoder).

usage: make_texture_families.py OUTDIR [--families 5] [--variants 20] [--size 64] [--seed 0]
       [--prefix NAME] [--real]

Files are OUTDIR/<family>_<variant>.png, family in stripes, checker, dots, noise, rings (cycled
with a suffix when more than five are asked for). Each variant draws its own frequency,
orientation, phase, colour jitter and pixel noise, so variants of a family differ in every pixel
but share their statistics (what a Gram-matrix search should group).

--real: families from real photographs instead (scikit-image's sample data, CC0 / public domain):
brick, grass, gravel (512² texture photographs), moon (its surface), chelsea (the cat's fur) and
the Hubble deep field (galaxies on black); each variant a random crop of its
family's source region at a random scale (0.8-1.25× the crop size), random flips and a
quarter-turn, resized to --size with antialiasing, grey sources repeated over RGB.
"""
import argparse
import os
import struct
import zlib

import numpy as np

FAMILIES = ["stripes", "checker", "dots", "noise", "rings"]


def write_png(path, rgb):
    """rgb: (H, W, 3) float in [0, 1] -> 8-bit PNG, written under a temporary name then renamed."""
    img = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(png)
    os.replace(tmp, path)


def texture(family, size, rng):
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if family == "stripes":
        f = rng.uniform(0.08, 0.12)
        t = rng.uniform(-0.2, 0.2)
        v = 0.5 + 0.5 * np.sin(2 * np.pi * f * (x * np.cos(t) + y * np.sin(t)) + rng.uniform(0, 6.3))
        lo, hi = np.array([0.1, 0.2, 0.7]), np.array([0.95, 0.95, 1.0])
    elif family == "checker":
        f = rng.uniform(0.06, 0.09)
        p = rng.uniform(0, 6.3, 2)
        v = (np.sin(2 * np.pi * f * x + p[0]) * np.sin(2 * np.pi * f * y + p[1]) > 0).astype(float)
        lo, hi = np.array([0.05, 0.05, 0.05]), np.array([0.85, 0.15, 0.1])
    elif family == "dots":
        v = np.zeros((size, size))
        for _ in range(int(rng.integers(25, 35))):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(2.0, 3.0)
            v += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        v = np.clip(v, 0, 1)
        lo, hi = np.array([0.05, 0.15, 0.05]), np.array([0.3, 0.95, 0.3])
    elif family == "noise":
        n = rng.uniform(0, 1, (size + 4, size + 4))
        k = np.ones(5) / 5
        n = np.apply_along_axis(lambda r: np.convolve(r, k, "valid"), 1, n)
        n = np.apply_along_axis(lambda c: np.convolve(c, k, "valid"), 0, n)
        v = np.clip((n - 0.5) * 3 + 0.5, 0, 1)
        lo, hi = np.array([0.35, 0.2, 0.05]), np.array([0.8, 0.6, 0.35])
    else:  # rings
        cy, cx = rng.uniform(0, size, 2)
        f = rng.uniform(0.1, 0.14)
        v = 0.5 + 0.5 * np.sin(2 * np.pi * f * np.hypot(y - cy, x - cx) + rng.uniform(0, 6.3))
        lo, hi = np.array([0.45, 0.1, 0.55]), np.array([1.0, 0.9, 0.2])
    jitter = rng.uniform(-0.05, 0.05, 3)
    rgb = lo + (hi - lo) * v[..., None] + jitter
    return np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1)


SKIMAGE_DATA = "/usr/lib/python3/dist-packages/skimage/data"
# name, file, region (y0, y1, x0, x1) as fractions of the image: a texture-like part of it.
REAL = [("brick", "brick.png", (0, 1, 0, 1)),
        ("grass", "grass.png", (0, 1, 0, 1)),
        ("gravel", "gravel.png", (0, 1, 0, 1)),
        ("moon", "moon.png", (0.05, 0.95, 0.05, 0.95)),
        ("fur", "chelsea.png", (0.45, 0.95, 0.05, 0.4)),
        ("galaxies", "hubble_deep_field.jpg", (0, 1, 0, 1))]


def real_texture(fi, size, rng):
    from skimage import io, transform
    _, name, (y0, y1, x0, x1) = REAL[fi % len(REAL)]
    img = io.imread(os.path.join(SKIMAGE_DATA, name)).astype(np.float64) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    h, w = img.shape[:2]
    img = img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]
    h, w = img.shape[:2]
    side = int(min(h, w, 2 * size) * rng.uniform(0.5, 0.8))
    cy, cx = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = img[cy:cy + side, cx:cx + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    crop = np.rot90(crop, int(rng.integers(0, 4)))
    return np.clip(transform.resize(crop, (size, size), anti_aliasing=True), 0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--families", type=int, default=5)
    ap.add_argument("--variants", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--real", action="store_true", help="crops of real photographs (skimage)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    if a.real:
        for fi in range(a.families):
            name = REAL[fi % len(REAL)][0] + ("" if fi < len(REAL) else str(fi // len(REAL)))
            for v in range(a.variants):
                write_png(os.path.join(a.out, f"{a.prefix}{name}_{v:03d}.png"),
                          real_texture(fi, a.size, rng))
        return
    for fi in range(a.families):
        name = FAMILIES[fi % len(FAMILIES)] + ("" if fi < len(FAMILIES) else str(fi // len(FAMILIES)))
        for v in range(a.variants):
            write_png(os.path.join(a.out, f"{a.prefix}{name}_{v:03d}.png"),
                      texture(FAMILIES[fi % len(FAMILIES)], a.size, rng))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes a labelled, procedurally generated texture set for `preimage attributes train`.

usage: make_attribute_set.py OUTDIR [--per-class 40] [--size 64] [--seed 0]
       [--classes stripes,dots,checks,noise] [--colour tint|random|fixed]

Layout as DTD / FMD: OUTDIR/<class>/<class>_NNN.png, one subfolder per class. Every image draws
its own scale, orientation, phase, colour and a little pixel noise, so a class is defined by its
structure alone:
  stripes  oriented sinusoidal bands (any orientation, period 4-10 px)
  dots     a lattice of round dots (radius 1.5-4 px, spacing 6-12 px, any rotation and phase)
  checks   a rotated checkerboard (cell 4-9 px, any phase)
  noise    band-limited random noise (blurred white noise, blur 0.6-1.5 px)
Colour (--colour): "tint" (default) draws a random foreground colour in [0.4, 1]^3 per image on a
background that is a dark shade of it (x 0.05-0.3): hue and brightness vary, the polarity stays.
"random" draws foreground and background uniformly (much harder for random-feature B-CNNs,
whose statistics are dominated by colour: ~40% held-out accuracy, see docs/attributes.md);
"fixed" is white on black.
Numpy only (the PNG writer of make_texture_families.py); files are written under a temporary name and renamed.
"""
import argparse
import os

import numpy as np

from make_texture_families import write_png  # same folder: the atomic 8-bit PNG writer

CLASSES = ["stripes", "dots", "checks", "noise"]


def blur(a, sigma):
    """Separable Gaussian blur with wrap-around (keeps the texture stationary)."""
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = sum(k[i + r] * np.roll(a, i, axis=0) for i in range(-r, r + 1))
    return sum(k[i + r] * np.roll(out, i, axis=1) for i in range(-r, r + 1))


def pattern(cls, size, rng):
    """A scalar map in [0, 1] of the class's structure."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    t = rng.uniform(0, np.pi)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    if cls == "stripes":
        period = rng.uniform(4, 10)
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    if cls == "checks":
        cell = rng.uniform(4, 9)
        p = rng.uniform(0, cell, 2)
        return ((np.floor((u + p[0]) / cell) + np.floor((v + p[1]) / cell)) % 2).astype(float)
    if cls == "dots":
        spacing = rng.uniform(6, 12)
        radius = rng.uniform(1.5, min(4.0, spacing / 3))
        p = rng.uniform(0, spacing, 2)
        du = (u + p[0]) % spacing - spacing / 2
        dv = (v + p[1]) % spacing - spacing / 2
        d = np.sqrt(du * du + dv * dv)
        return np.clip(radius + 0.5 - d, 0, 1)
    if cls == "noise":
        n = blur(rng.standard_normal((size, size)), rng.uniform(0.6, 1.5))
        return np.clip(0.5 + 0.5 * n / (2 * n.std() + 1e-12), 0, 1)
    raise ValueError("unknown class " + cls)


def image(cls, size, rng, colour):
    m = pattern(cls, size, rng)[..., None]
    if colour == "fixed":
        fg, bg = np.array([0.9, 0.9, 0.9]), np.array([0.1, 0.1, 0.1])
    elif colour == "tint":
        fg = rng.uniform(0.4, 1.0, 3)
        bg = fg * rng.uniform(0.05, 0.3)
    else:
        fg = rng.uniform(0, 1, 3)
        bg = rng.uniform(0, 1, 3)
        # Keep some contrast whatever the colours drawn.
        if np.abs(fg - bg).sum() < 0.6:
            bg = 1 - fg
    rgb = bg + (fg - bg) * m
    return rgb + rng.normal(0, 0.02, rgb.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--colour", choices=["tint", "random", "fixed"], default="tint")
    a = ap.parse_args()
    classes = [c for c in a.classes.split(",") if c]
    for ci, cls in enumerate(classes):
        d = os.path.join(a.outdir, cls)
        os.makedirs(d, exist_ok=True)
        rng = np.random.default_rng([a.seed, ci])
        for i in range(a.per_class):
            write_png(os.path.join(d, "%s_%03d.png" % (cls, i)), image(cls, a.size, rng, a.colour))
    print(a.outdir)


if __name__ == "__main__":
    main()

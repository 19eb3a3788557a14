#!/usr/bin/env python3
"""Regenerates docs/gallery/*.png and docs/gallery.md: every preimage subcommand on the sample
images (examples/), at 128 px (textures at their sources' 256 px: statistics are taken at the
source's resolution) and at most 80 iterations, with random-feature weights (random:0).

usage: python3 docs/gallery.py BUILD_DIR      (the binary is BUILD_DIR/apps/preimage)

The commands run from the repository root with paths relative to it, so the command lines shown
in gallery.md are exactly what was run (with `preimage` standing for the binary). Results are
deterministic on the CPU: re-running reproduces the same PNG bytes.
"""
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = "docs/gallery"

# (name, title, note, arguments). --out docs/gallery/NAME.png is appended.
RUNS = [
    ("texture_brick", "Texture synthesis (Gram), brick",
     "Gatys et al. Gram-matrix statistics at relu1_1 … relu5_1, L-BFGS from seeded noise.",
     ["texture", "--input", "examples/brick.png", "--size", "256", "--iters", "80"]),
    ("texture_gravel", "Texture synthesis (Gram), gravel",
     "Same objective on the gravel sample.",
     ["texture", "--input", "examples/gravel.png", "--size", "256", "--iters", "80"]),
    ("texture_brick_bcnn", "Texture synthesis (B-CNN), brick",
     "Lin & Maji bilinear (signed-sqrt, L2-normalized) statistics at relu2_1 … relu4_1.",
     ["texture", "--input", "examples/brick.png", "--size", "256", "--iters", "80",
      "--stats", "bcnn", "--layers", "relu2_1,relu3_1,relu4_1"]),
    ("invert_astronaut_relu3_1", "Inversion at relu3_1",
     "Mahendran & Vedaldi: match the relu3_1 representation of the photo from noise, with the "
     "default TV² prior (`--tv 5`, weight of the per-pixel mean).",
     ["invert", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "80",
      "--layers", "relu3_1"]),
    ("invert_astronaut_relu4_1", "Inversion at relu4_1",
     "The same from relu4_1: with random features and 80 iterations little of the photo is "
     "recovered (compare the normalized reconstruction errors).",
     ["invert", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "80",
      "--layers", "relu4_1"]),
    ("invert_astronaut_hog", "HOG inversion (Dalal–Triggs)",
     "Mahendran & Vedaldi with a HOG representation instead of VGG (docs/descriptors.md): 8 px "
     "cells, 9 unsigned soft bins, 2×2 L2-Hys blocks, on the luma; default TV² prior. No network "
     "is involved (the weights line does not apply); colour is left to the prior.",
     ["invert", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "200",
      "--representation", "hog"]),
    ("invert_astronaut_hog_uoctti", "HOG inversion (UoCTTI)",
     "The same with Felzenszwalb et al.'s 31-dimensional UoCTTI HOG (18 signed + 9 unsigned "
     "orientations, 4 texture energies, four normalizations).",
     ["invert", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "200",
      "--representation", "hog", "--hog-variant", "uoctti"]),
    ("invert_astronaut_dsift", "Dense SIFT inversion",
     "Dense SIFT: 4×4 spatial bins of 4 px × 8 orientations every 4 px, L2 / clamp 0.2 / L2.",
     ["invert", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "200",
      "--representation", "dsift"]),
    ("style_astronaut_gravel", "Style transfer",
     "Gatys: content relu4_2 of the photo + Gram style of gravel, started from the photo.",
     ["style", "--input", "examples/astronaut.jpg", "--style", "examples/gravel.png",
      "--size", "128", "--iters", "80", "--style-weight", "100"]),
    ("visualize_relu4_1_c7", "Activation maximization, relu4_1 channel 7",
     "Gradient ascent on the mean of one channel with jitter, blur and L2 decay (Yosinski).",
     ["visualize", "--layers", "relu4_1", "--channel", "7", "--size", "128", "--iters", "80",
      "--jitter", "4", "--blur-every", "4", "--l2-decay", "0.01"]),
    ("dream_astronaut_relu4_1", "DeepDream, relu4_1",
     "Normalized gradient ascent on ½‖Φ‖² at relu4_1, 3 octaves × 20 steps, jitter 8.",
     ["dream", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "20",
      "--layers", "relu4_1"]),
    ("caricature_astronaut_relu3_1", "Caricature, relu3_1",
     "Mahendran & Vedaldi: exaggerate what relu3_1 sees in the photo, starting from it; the "
     "objective is unbounded, so a strong TV prior (`--tv 1000`) keeps it an image. Random "
     "features favour high frequencies, hence the grain.",
     ["caricature", "--input", "examples/astronaut.jpg", "--size", "128", "--iters", "40",
      "--layers", "relu3_1", "--tv", "1000"]),
]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gallery.py BUILD_DIR")
    binary = os.path.abspath(os.path.join(sys.argv[1], "apps", "preimage"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"gallery.py: no preimage binary at {binary} (build the preimage_cli target)")
    os.makedirs(os.path.join(ROOT, OUT_DIR), exist_ok=True)
    rows = []
    t_all = time.time()
    for name, title, note, args in RUNS:
        out = f"{OUT_DIR}/{name}.png"
        cmd = args + ["--out", out]
        t0 = time.time()
        r = subprocess.run([binary] + cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"gallery.py: {name} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        sidecar = os.path.join(ROOT, out + ".json")
        with open(sidecar) as f:
            j = json.load(f)
        os.remove(sidecar)  # the facts that matter go into gallery.md
        hist = j["history"]
        rows.append(dict(name=name, title=title, note=note, out=out,
                         cmd="preimage " + shlex.join(cmd), weights=j["weights"],
                         iterations=j["iterations"], stop=j["stop_reason"],
                         first=hist[0]["loss"], last=hist[-1]["loss"],
                         wall=j["wall_time_s"], size=f'{j["width"]}×{j["height"]}',
                         extra="".join(f" · normalized reconstruction error at {k} {v:.3f}"
                                       for k, v in j["results"].get(
                                           "normalized_reconstruction_error", {}).items())))
        print(f"{name}: {time.time() - t0:.1f} s, loss {hist[0]['loss']:.4g} -> "
              f"{hist[-1]['loss']:.4g}", flush=True)

    md = ["# Gallery",
          "",
          "Every subcommand of `preimage` on the sample images in `examples/` "
          "([brick](../examples/brick.png), [gravel](../examples/gravel.png), "
          "[astronaut](../examples/astronaut.jpg); see `examples/LICENSE.md`).",
          "",
          "> **Random-feature weights (`random:0`).** These images were made with the built-in "
          "seeded, He-initialized VGG-19 (`--weights random:0`, the default), **not** a trained "
          "network. Random convolutional features carry texture statistics surprisingly well, "
          "but inversions, visualizations and dreams look very different (and far less "
          "semantic) than with ImageNet weights; pass `--weights FILE.h5` (weights/README.md) "
          "for those.",
          "",
          f"Regenerate with `python3 docs/gallery.py BUILD_DIR` (about "
          f"{(time.time() - t_all) / 60:.0f} min on 2 CPU cores); the commands run from the "
          "repository root, `preimage` standing for `BUILD_DIR/apps/preimage`. On the CPU the "
          "same command gives the same bytes. Loss is the minimized objective: for `visualize` "
          "and `dream` the negated activation, for `caricature` the negated projection, "
          "hence negative.",
          ""]
    for r in rows:
        md += [f"## {r['title']}",
               "",
               f"![{r['name']}](gallery/{r['name']}.png)",
               "",
               r["note"],
               "",
               "```sh",
               r["cmd"],
               "```",
               "",
               f"weights `{r['weights']}` (random features) · {r['size']} · "
               f"{r['iterations']} iterations ({r['stop']}) · loss {r['first']:.4g} → "
               f"{r['last']:.4g}{r['extra']} · {r['wall']:.0f} s wall on the CPU",
               ""]
    with open(os.path.join(ROOT, "docs", "gallery.md"), "w") as f:
        f.write("\n".join(md))
    print(f"wrote docs/gallery.md and {len(rows)} images in {OUT_DIR}/ "
          f"({time.time() - t_all:.0f} s)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""HOG forward of the preimage engine against scikit-image's skimage.feature.hog, and the soft
(default) mode against a float64 NumPy transcription of docs/descriptors.md.

usage: hog_vs_skimage.py PATH/TO/preimage SCRATCH_DIR      (run with Debian's /usr/bin/python3)

Where the definitions coincide: a grey image (written as an 8-bit PNG; the engine reads it as RGB
with equal channels, whose luma is the grey value), Dalal-Triggs HOG with `--binning hard
--pooling box` (skimage votes each pixel's magnitude into the one bin holding its unsigned
orientation and the one cell holding it, and averages over the cell), unsigned bins, blocks
sliding by one cell, L2-Hys with eps 1e-5 and clip 0.2. skimage's output (rows, cols, by, bx, o)
is compared with the engine's (1, (by*block + bx)*B + o, rows, cols) after a transpose.
Tolerance: max |difference| <= 1e-5 (float32 engine vs float64 skimage; values are <= 1).

The soft-binning / bilinear-cell default (which skimage does not implement) and dense SIFT are
compared with a direct NumPy float64 implementation of the definitions at the same tolerance.
Plain asserts; one line per case; exits non-zero on failure.
"""
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from skimage.feature import hog

if len(sys.argv) != 3:
    sys.exit("usage: hog_vs_skimage.py PATH/TO/preimage SCRATCH_DIR")
BIN = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
TOL = 1e-5


def write_grey_png(path, img8):
    h, w = img8.shape
    raw = b"".join(b"\x00" + bytes(int(v) for v in row for _ in range(3)) for row in img8)

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def test_image(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    v = 0.5 + 0.2 * np.sin(0.31 * x + 0.5 * np.sin(0.17 * y)) + 0.15 * np.cos(0.23 * y - 0.11 * x)
    v += 0.08 * rng.standard_normal((h, w))
    return np.clip(np.round(v * 255), 0, 255).astype(np.uint8)


def engine(png, *flags):
    out = os.path.join(WORK, "desc.txt")
    r = subprocess.run([BIN, "descriptor", "--input", png, "--device", "cpu", "--dump", out,
                        "--quiet"] + list(flags), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        n, c, h, w = (int(t) for t in f.readline().split())
        vals = np.array([float(t) for t in f.read().split()])
    return vals.reshape(n, c, h, w)


# ---- float64 NumPy transcription of the definitions (docs/descriptors.md) -------------------
def cells_np(g, cell, bins, signed, soft, bilinear):
    h, w = g.shape
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, 1:-1] = g[:, 2:] - g[:, :-2]
    gy[1:-1, :] = g[2:, :] - g[:-2, :]
    m = np.hypot(gx, gy)
    period = 2 * np.pi if signed else np.pi
    th = np.mod(np.arctan2(gy, gx), period)
    bw = period / bins
    hc, wc = h // cell, w // cell
    hist = np.zeros((bins, hc, wc))
    for yy in range(h):
        for xx in range(w):
            if m[yy, xx] <= 0:
                continue
            if soft:
                t = th[yy, xx] / bw - 0.5
                k0 = int(np.floor(t))
                a1 = t - k0
                votes = [(k0 % bins, 1 - a1), ((k0 + 1) % bins, a1)]
            else:
                votes = [(min(int(th[yy, xx] / bw), bins - 1), 1.0)]

            def axis(p, n):
                if not bilinear:
                    return [(p // cell, 1.0)] if p // cell < n else []
                f = (p + 0.5) / cell - 0.5
                c0 = int(np.floor(f))
                t = f - c0
                return [(c, wt) for c, wt in ((c0, 1 - t), (c0 + 1, t)) if 0 <= c < n]

            for cy, wy in axis(yy, hc):
                for cx, wx in axis(xx, wc):
                    for k, a in votes:
                        hist[k, cy, cx] += m[yy, xx] * wy * wx * a / cell ** 2
    return hist


def blocks_np(hist, block, stride, clip=0.2, eps=1e-5):
    bins, hc, wc = hist.shape
    hb, wb = (hc - block) // stride + 1, (wc - block) // stride + 1
    out = np.zeros((block * block * bins, hb, wb))
    for i in range(hb):
        for j in range(wb):
            v = hist[:, i * stride:i * stride + block, j * stride:j * stride + block]
            v = v.transpose(1, 2, 0).reshape(-1)  # (by, bx, o)
            u = np.minimum(v / np.sqrt(np.sum(v ** 2) + eps ** 2), clip)
            out[:, i, j] = u / np.sqrt(np.sum(u ** 2) + eps ** 2)
    return out


failed = 0


def check(name, got, want):
    global failed
    ok = got.shape == want.shape and np.max(np.abs(got - want)) <= TOL
    err = np.max(np.abs(got - want)) if got.shape == want.shape else float("inf")
    print(f"{'PASS' if ok else 'FAIL'} {name}: shape {want.shape}, max |diff| {err:.3g}")
    failed += 0 if ok else 1


for (h, w, seed, cell, bins, block) in [(61, 75, 1, 8, 9, 2), (47, 53, 2, 6, 6, 3),
                                        (40, 33, 3, 5, 9, 2)]:
    img8 = test_image(h, w, seed)
    png = os.path.join(WORK, f"img_{h}x{w}.png")
    write_grey_png(png, img8)
    g = img8.astype(np.float64) / 255.0
    ref = hog(g, orientations=bins, pixels_per_cell=(cell, cell), cells_per_block=(block, block),
              block_norm="L2-Hys", feature_vector=False, channel_axis=None)
    got = engine(png, "--representation", "hog", "--binning", "hard", "--pooling", "box",
                 "--cell", str(cell), "--bins", str(bins), "--block", str(block))
    # engine (1, (by*block+bx)*B + o, rows, cols) → skimage (rows, cols, by, bx, o)
    got = got[0].reshape(block, block, bins, got.shape[2], got.shape[3]).transpose(3, 4, 0, 1, 2)
    check(f"hog hard/box vs skimage {h}x{w} cell {cell} bins {bins} block {block}", got, ref)

    soft = engine(png, "--representation", "hog", "--cell", str(cell), "--bins", str(bins),
                  "--block", str(block))[0]
    check(f"hog soft/bilinear vs numpy {h}x{w}", soft,
          blocks_np(cells_np(g, cell, bins, False, True, True), block, 1))

img8 = test_image(37, 43, 4)
png = os.path.join(WORK, "dsift.png")
write_grey_png(png, img8)
g = img8.astype(np.float64) / 255.0
got = engine(png, "--representation", "dsift", "--cell", "4", "--step", "2")[0]
check("dsift (4x4 bins of 4 px, 8 signed orientations, step 2 bins) vs numpy", got,
      blocks_np(cells_np(g, 4, 8, True, True, True), 4, 2))

print(f"{'FAILED' if failed else 'OK'}: {failed} failed")
sys.exit(1 if failed else 0)

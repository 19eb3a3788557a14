#!/usr/bin/python3
"""Seed corpora for the fuzz targets (fuzz/*.cpp): valid files first, then mutated variants.

usage: /usr/bin/python3 fuzz/make_corpus.py OUT_DIR [--cli PATH/TO/preimage]
                                                    [--checkpoint-seed PATH/TO/fuzz_checkpoint_seed]

Writes OUT_DIR/{weights,image,checkpoint,index,cli}/. Valid seeds are kept small (exec/s):
  weights     canonical "preimage-vgg-1" files holding conv1_1 (and variants: compressed/chunked,
              fc groups, wrong shape/type/attributes) and Keras files holding block1_conv1 (root
              layer_names, /model_weights, split layer_names0.., Theano kernel order). A complete
              VGG file is ~60 MB, too slow to fuzz: the per-layer code is the same for every layer.
  image       PNG (grey, grey+alpha, RGB, RGBA, 16-bit, interlaced), JPEG (baseline, progressive,
              grey), BMP, PPM/GIF (rejected formats), 1x1 to 13x9.
  checkpoint  real L-BFGS checkpoints (n = 12, history 3) from fuzz_checkpoint_seed.
  index       real indexes from `preimage index build/add` (--layers pool1 --size 16, float32 and
              float16).
  cli         argv lists (first byte: subcommand number, then NUL-separated arguments).
Mutations (seeded, reproducible): byte flips, truncations, duplicated chunks of each valid seed.
Needs Debian's python3-h5py, python3-numpy and python3-pil.
"""
import io
import os
import random
import subprocess
import sys
import tempfile

import h5py
import numpy as np
from PIL import Image

if len(sys.argv) < 2:
    sys.exit(__doc__)
OUT = os.path.abspath(sys.argv[1])
CLI = sys.argv[sys.argv.index("--cli") + 1] if "--cli" in sys.argv else None
CKPT = sys.argv[sys.argv.index("--checkpoint-seed") + 1] if "--checkpoint-seed" in sys.argv else None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rng = random.Random(11)
nrng = np.random.default_rng(11)


def outdir(name):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    return d


def mutate(data, count):
    out = []
    for k in range(count):
        b = bytearray(data)
        kind = k % 3
        if kind == 0 and b:  # flip a few bytes
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(b))
                b[i] = rng.randrange(256)
        elif kind == 1 and len(b) > 1:  # truncate
            b = b[: rng.randrange(1, len(b))]
        elif b:  # duplicate a chunk
            i = rng.randrange(len(b))
            j = min(len(b), i + rng.randint(1, 64))
            b[i:i] = b[i:j]
        out.append(bytes(b))
    return out


def save(dirname, name, data, mutations):
    d = outdir(dirname)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    for k, m in enumerate(mutate(data, mutations)):
        with open(os.path.join(d, "%s.mut%d" % (name, k)), "wb") as f:
            f.write(m)


def h5_bytes(build):
    with tempfile.TemporaryDirectory() as t:
        p = os.path.join(t, "f.h5")
        with h5py.File(p, "w") as f:
            build(f)
        with open(p, "rb") as f:
            return f.read()


# ---- weights ---------------------------------------------------------------------------------
def canonical(f, arch="vgg16", conv=True, compress=False, extra=None):
    f.attrs["format"] = "preimage-vgg-1"
    f.attrs["arch"] = arch
    f.attrs["color_order"] = "RGB"
    f.attrs["value_range"] = np.float32(1)
    f.attrs["mean"] = np.array([0.485, 0.456, 0.406], np.float32)
    f.attrs["std"] = np.array([0.229, 0.224, 0.225], np.float32)
    f.attrs["random_init"] = np.int64(0)
    if conv:
        kw = dict(compression="gzip", chunks=(16, 3, 3, 3)) if compress else {}
        f.create_dataset("conv1_1/weight", data=nrng.standard_normal((64, 3, 3, 3)).astype(np.float32), **kw)
        f.create_dataset("conv1_1/bias", data=np.zeros(64, np.float32))
    if extra:
        extra(f)


def keras(f, root="/", split=False, theano=False, bias_len=64):
    g0 = f if root == "/" else f.create_group(root)
    names = [b"block1_conv1", b"block1_conv2", b"block5_conv4"]
    if split:
        g0.attrs["layer_names0"] = names[:1]
        g0.attrs["layer_names1"] = names[1:]
    else:
        g0.attrs["layer_names"] = names
    g = g0.create_group("block1_conv1")
    g.attrs["weight_names"] = [b"block1_conv1/kernel:0", b"block1_conv1/bias:0"]
    shape = (64, 3, 3, 3) if theano else (3, 3, 3, 64)
    g.create_dataset("block1_conv1/kernel:0", data=nrng.standard_normal(shape).astype(np.float32))
    g.create_dataset("block1_conv1/bias:0", data=np.zeros(bias_len, np.float32))


weights = {
    "canonical_conv1_1": lambda f: canonical(f),
    "canonical_vgg19": lambda f: canonical(f, "vgg19"),
    "canonical_gzip": lambda f: canonical(f, compress=True),
    "canonical_attrs_only": lambda f: canonical(f, conv=False),
    "canonical_wrong_shape": lambda f: canonical(
        f, conv=False, extra=lambda f: f.create_dataset("conv1_1/weight", data=np.zeros((3, 3), np.float32))),
    "canonical_int_weight": lambda f: canonical(
        f, conv=False, extra=lambda f: f.create_dataset("conv1_1/weight", data=np.zeros((64, 3, 3, 3), np.int32))),
    "canonical_fc8": lambda f: canonical(
        f, extra=lambda f: f.create_dataset("fc8/weight", data=np.zeros((5, 4096), np.float32))),
    "canonical_bgr255": lambda f: canonical(
        f, extra=lambda f: (f.attrs.__setitem__("color_order", "BGR"),
                            f.attrs.__setitem__("value_range", np.float64(255)))),
    "keras_root": lambda f: keras(f),
    "keras_model_weights": lambda f: keras(f, root="model_weights"),
    "keras_split_names": lambda f: keras(f, split=True),
    "keras_theano": lambda f: keras(f, theano=True),
    "keras_bad_bias": lambda f: keras(f, bias_len=7),
}
for name, build in weights.items():
    save("weights", name + ".h5", h5_bytes(build), 6)

# ---- images ----------------------------------------------------------------------------------
def img_bytes(mode, size, fmt, **kw):
    a = nrng.integers(0, 256, (size[1], size[0], len(mode) if mode in ("RGB", "RGBA", "LA") else 1),
                      dtype=np.uint8)
    im = Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a, mode)
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


images = {
    "rgb.png": img_bytes("RGB", (13, 9), "PNG"),
    "grey.png": img_bytes("L", (7, 5), "PNG"),
    "la.png": img_bytes("LA", (5, 3), "PNG"),
    "rgba.png": img_bytes("RGBA", (9, 7), "PNG"),
    "interlaced.png": img_bytes("RGB", (11, 6), "PNG", optimize=False),
    "one.png": img_bytes("RGB", (1, 1), "PNG"),
    "rgb.jpg": img_bytes("RGB", (13, 9), "JPEG", quality=80),
    "progressive.jpg": img_bytes("RGB", (16, 11), "JPEG", progressive=True),
    "grey.jpg": img_bytes("L", (8, 8), "JPEG"),
    "rgb.bmp": img_bytes("RGB", (6, 5), "BMP"),
    "rgb.ppm": img_bytes("RGB", (4, 3), "PPM"),
    "rgb.gif": img_bytes("L", (4, 3), "GIF"),
}
im16 = Image.fromarray(nrng.integers(0, 65535, (4, 6), dtype=np.uint16).astype(np.int32), "I")
b = io.BytesIO()
im16.save(b, "PNG")
images["grey16.png"] = b.getvalue()
with open(os.path.join(ROOT, "examples", "brick.png"), "rb") as f:
    brick = f.read()
if len(brick) < 64 << 10:
    images["brick.png"] = brick
for name, data in images.items():
    save("image", name, data, 6)

# ---- checkpoints (real solver) ---------------------------------------------------------------
if CKPT:
    with tempfile.TemporaryDirectory() as t:
        subprocess.run([CKPT, t], check=True)
        for name in sorted(os.listdir(t)):
            with open(os.path.join(t, name), "rb") as f:
                save("checkpoint", name, f.read(), 6)
else:
    print("make_corpus: no --checkpoint-seed: checkpoint corpus left empty", file=sys.stderr)
    outdir("checkpoint")

# ---- texture indexes (real CLI) --------------------------------------------------------------
if CLI:
    with tempfile.TemporaryDirectory() as t:
        imgs = os.path.join(t, "imgs")
        os.makedirs(imgs)
        for k in range(3):
            with open(os.path.join(imgs, "t%d.png" % k), "wb") as f:
                f.write(img_bytes("RGB", (12 + k, 10), "PNG"))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        common = ["--layers", "pool1", "--size", "16", "--device", "cpu", "--quiet"]
        for half in (False, True):
            idx = os.path.join(t, "idx%d.h5" % half)
            subprocess.run([CLI, "index", "build", os.path.join(imgs, "t0.png"), "--out", idx] + common
                           + (["--half"] if half else []), check=True, env=env)
            with open(idx, "rb") as f:
                save("index", "one_entry_%s.h5" % ("f16" if half else "f32"), f.read(), 6)
            subprocess.run([CLI, "index", "add", idx, os.path.join(imgs, "t1.png"),
                            os.path.join(imgs, "t2.png"), "--device", "cpu", "--quiet"], check=True, env=env)
            with open(idx, "rb") as f:
                save("index", "three_entries_%s.h5" % ("f16" if half else "f32"), f.read(), 6)
else:
    print("make_corpus: no --cli: index corpus left empty", file=sys.stderr)
    outdir("index")

# ---- command lines ---------------------------------------------------------------------------
argvs = [
    (0, ["--input", "a.png", "--size", "256", "--layers", "relu1_1:0.5,relu2_1", "--iters", "10"]),
    (0, ["--size=640x480", "--tv", "0.1", "--tv-beta", "2", "--quiet", "--out", "o.png"]),
    (1, ["--weights", "random:3", "--arch", "vgg16", "--device", "cpu", "--seed", "7"]),
    (1, ["--octaves", "3", "--octave-scale", "1.5", "--init", "input", "--jitter", "4", "--resume"]),
    (2, ["--style", "s.png", "--content-weight", "1e3", "--original-colors", "--save-every", "5"]),
    (3, ["--channel", "3", "--neuron", "4,5", "--class", "7", "--blur-every", "2", "--blur-sigma", "0.5"]),
    (4, ["--alpha", "6", "--alpha-weight", "1e-5", "--history", "20", "--step", "1.5", "--strength", "2"]),
    (5, ["--layer", "conv5_1", "--stats", "bcnn", "--clip-small", "0.1", "-k", "3", "x", "--", "y"]),
    (255, ["--weights", "w.h5", "--layers", "pool1,pool2", "--size", "12x12"]),
    (254, ["--quiet=true", "--arch", "VGG19", "--device", "auto", "--input", "i.png"]),
]
for k, (cmd, args) in enumerate(argvs):
    save("cli", "argv%d" % k, bytes([cmd]) + b"\0".join(a.encode() for a in args), 4)

for d in sorted(os.listdir(OUT)):
    print("make_corpus: %-10s %4d files" % (d, len(os.listdir(os.path.join(OUT, d)))))

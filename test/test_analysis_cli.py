#!/usr/bin/env python3
"""End-to-end tests of the analysis subcommands of the preimage command line.

usage: test_analysis_cli.py PATH/TO/preimage SCRATCH_DIR

saliency (gradient, guided, occlusion), adversarial (iterative, FGSM, --from-noise, with a
linear head written here with h5py when available), features, neighbors, embed (PCA, t-SNE),
patches and filters on small synthetic images (48x48, shallow taps, random:0 weights): outputs
exist with the expected sizes and contents, and every bad input (empty directory, unknown
layer/channel, mismatched feature or head file, bad flags) gives one line on stderr naming the
culprit, a non-zero exit, no output file and no stray temporary file.

Plain asserts; one line per case; ends with "N passed, M failed" and exits non-zero on failure.
"""
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib

if len(sys.argv) != 3:
    sys.exit("usage: test_analysis_cli.py PATH/TO/preimage SCRATCH_DIR")

BIN = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
try:
    import h5py  # noqa: F401
    import numpy as np
    HAVE_H5PY = True
except ImportError:  # the head cases need h5py; the rest only the standard library
    HAVE_H5PY = False

_cases = []


def case(fn):
    _cases.append(fn)
    return fn


def fresh_dir(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run(args, cwd, timeout=300):
    return subprocess.run([BIN] + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def write_png(path, w, h, pixel):
    """8-bit RGB PNG; pixel(x, y) -> (r, g, b) in [0, 255]."""
    raw = b"".join(b"\x00" + bytes(v for x in range(w) for v in pixel(x, y)) for y in range(h))

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def lcg(seed):
    state = seed * 2654435761 % 2**32

    def nxt():
        nonlocal state
        state = (1103515245 * state + 12345) % 2**31
        return state % 256
    return nxt


def planted(path, seed, patch=True, tint=(0, 0, 0)):
    """48x48 grey noise (±8) with an optional colourful 8x8 square at (28, 10)."""
    r = lcg(seed)
    noise = [[tuple(max(0, min(255, 128 + t + r() // 16 - 8)) for t in tint) for _ in range(48)]
             for _ in range(48)]
    if patch:
        for y in range(28, 36):
            for x in range(10, 18):
                noise[y][x] = (r(), r(), r())
    write_png(path, 48, 48, lambda x, y: noise[y][x])


def image_dir(d, n=8, junk=True):
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        planted(os.path.join(d, f"img{i}.png"), 10 + i, patch=(i == 3),
                tint=((30, 0, 0) if i % 2 else (0, 0, 30)))
    if junk:
        with open(os.path.join(d, "notes.txt"), "w") as f:
            f.write("not an image")
    return d


def check_ok(r, d, outputs):
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()[-400:]}"
    lines = r.stdout.strip().splitlines()
    assert lines[-len(outputs):] == outputs, f"stdout ends {lines[-len(outputs):]}"
    for o in outputs:
        assert os.path.isfile(os.path.join(d, o)), f"no {o}"
    extra = [e for e in os.listdir(d) if ".tmp." in e]
    assert not extra, f"stray temporary files {extra}"


def write_head(path, layer, classes, dim, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.create_dataset("weight", data=rng.normal(0, 0.05, (classes, dim)).astype(np.float32))
        f.create_dataset("bias", data=np.zeros(classes, np.float32))
        f.attrs["layer"] = layer


# ---- runs -------------------------------------------------------------------------------------
@case
def filters_grid():
    d = fresh_dir("filters")
    r = run(["filters", "--out", "f.png", "--tile", "12", "--quiet"], d)
    check_ok(r, d, ["f.png"])
    assert png_size(os.path.join(d, "f.png")) == (8 * 14 + 2, 8 * 14 + 2)


@case
def saliency_methods():
    d = fresh_dir("saliency")
    planted(os.path.join(d, "in.png"), 3)
    notes = []
    for method in ["gradient", "guided", "occlusion"]:
        args = ["saliency", "--input", "in.png", "--layer", "relu2_1", "--channel", "5",
                "--method", method, "--out", f"{method}.png"]
        if method == "occlusion":
            args += ["--patch", "8", "--stride", "4"]
        r = run(args, d)
        check_ok(r, d, [f"{method}.png", f"{method}_overlay.png"])
        assert png_size(os.path.join(d, f"{method}.png")) == (48, 48)
        assert png_size(os.path.join(d, f"{method}_overlay.png")) == (48, 48)
        notes.append(r.stderr.strip().splitlines()[-1][:60])
    # --size resizes the input first.
    r = run(["saliency", "--input", "in.png", "--size", "40", "--layer", "relu1_2", "--channel",
             "0", "--neuron", "3,4", "--out", "n.png"], d)
    check_ok(r, d, ["n.png", "n_overlay.png"])
    assert png_size(os.path.join(d, "n.png")) == (40, 40)
    return notes[0]


@case
def adversarial_with_head():
    if not HAVE_H5PY:
        return "skipped: no h5py"
    d = fresh_dir("adversarial")
    planted(os.path.join(d, "in.png"), 4)
    write_head(os.path.join(d, "head.h5"), "relu2_1", 2, 128)
    r = run(["adversarial", "--input", "in.png", "--head", "head.h5", "--class", "1",
             "--epsilon", "8/255", "--steps", "10", "--out", "adv.png"], d)
    check_ok(r, d, ["adv.png", "adv_diff.png", "adv.png.json"])
    with open(os.path.join(d, "adv.png.json")) as f:
        j = json.load(f)
    assert j["linf"] <= 8 / 255 + 1e-6, j
    assert j["probability_after"] > j["probability_before"], j
    assert png_size(os.path.join(d, "adv_diff.png")) == (48, 48)
    # FGSM and a fooling image from noise.
    r = run(["adversarial", "--input", "in.png", "--head", "head.h5", "--class", "0",
             "--method", "fgsm", "--out", "fgsm.png"], d)
    check_ok(r, d, ["fgsm.png", "fgsm_diff.png", "fgsm.png.json"])
    r = run(["adversarial", "--from-noise", "--size", "32", "--head", "head.h5", "--class", "0",
             "--steps", "15", "--target-prob", "0.99", "--out", "fool.png"], d)
    check_ok(r, d, ["fool.png", "fool_diff.png", "fool.png.json"])
    with open(os.path.join(d, "fool.png.json")) as f:
        jf = json.load(f)
    assert jf["probability_after"] > 0.9, jf
    return f"p {j['probability_before']:.3f} -> {j['probability_after']:.3f}"


@case
def head_then_attack():
    """A head trained by `preimage head` on red vs blue images, then attacked toward blue."""
    d = fresh_dir("head")
    for cls, tint in [("blue", (0, 0, 40)), ("red", (40, 0, 0))]:
        os.makedirs(os.path.join(d, "train", cls))
        for i in range(4):
            planted(os.path.join(d, "train", cls, f"{i}.png"), 50 + i, patch=False, tint=tint)
    planted(os.path.join(d, "red.png"), 99, patch=False, tint=(40, 0, 0))
    r = run(["head", "train", "--layer", "relu2_1", "--size", "32", "--out", "head.h5"], d)
    check_ok(r, d, ["head.h5"])
    assert "training accuracy 100.0%" in r.stderr, r.stderr
    if HAVE_H5PY:
        with h5py.File(os.path.join(d, "head.h5")) as f:
            assert [c.decode() if isinstance(c, bytes) else c for c in f["classes"][()]] == \
                ["blue", "red"]
            assert f["weight"].shape == (2, 128)
    r = run(["adversarial", "--input", "red.png", "--head", "head.h5", "--class", "0",
             "--epsilon", "16/255", "--steps", "30", "--target-prob", "0.95", "--out", "a.png"], d)
    check_ok(r, d, ["a.png", "a_diff.png", "a.png.json"])
    with open(os.path.join(d, "a.png.json")) as f:
        j = json.load(f)
    assert j["probability_before"] < 0.5 and j["probability_after"] > 0.9, j
    assert j["linf"] <= 16 / 255 + 1e-6, j
    assert "(blue)" in j["target"], j["target"]
    r = run(["saliency", "--input", "red.png", "--head", "head.h5", "--class", "1",
             "--out", "s.png"], d)
    check_ok(r, d, ["s.png", "s_overlay.png"])
    return f"p(blue) {j['probability_before']:.3f} -> {j['probability_after']:.3f}"


@case
def adversarial_channel():
    d = fresh_dir("adversarial_channel")
    planted(os.path.join(d, "in.png"), 5)
    r = run(["adversarial", "--input", "in.png", "--layer", "relu2_1", "--channel", "7",
             "--steps", "5", "--out", "a.png"], d)
    check_ok(r, d, ["a.png", "a_diff.png", "a.png.json"])
    with open(os.path.join(d, "a.png.json")) as f:
        j = json.load(f)
    assert j["score_after"] > j["score_before"], j
    assert "probability_after" not in j


@case
def features_neighbors_embed():
    d = fresh_dir("features")
    image_dir(os.path.join(d, "imgs"))
    r = run(["features", "imgs", "--layer", "relu2_1", "--size", "32", "--batch", "3",
             "--out", "feats.h5"], d)
    check_ok(r, d, ["feats.h5"])
    assert "notes.txt" in r.stderr, r.stderr  # listed as skipped
    if HAVE_H5PY:
        with h5py.File(os.path.join(d, "feats.h5")) as f:
            assert f["features"].shape == (8, 128), f["features"].shape
            assert len(f["paths"]) == 8
    r = run(["neighbors", "feats.h5", "--query", "imgs/img5.png", "-k", "3", "--out", "nn.png"], d)
    check_ok(r, d, ["nn.png"])
    rows = r.stdout.strip().splitlines()
    assert rows[1].split()[2].endswith("img5.png"), rows  # the query is its own nearest
    assert float(rows[1].split()[1]) < 1e-4, rows
    assert png_size(os.path.join(d, "nn.png")) == (4 * 98 + 2, 98 + 2)
    r = run(["neighbors", "feats.h5", "--query", "imgs/img5.png", "-k", "2", "--metric", "l2",
             "--thumb", "16", "--out", "nn2.png"], d)
    check_ok(r, d, ["nn2.png"])
    for method in ["pca", "tsne"]:
        args = ["embed", "feats.h5", "--method", method, "--canvas", "128", "--thumb", "16",
                "--out", f"{method}.png"]
        if method == "tsne":
            args += ["--perplexity", "2", "--iters", "200"]
        r = run(args, d)
        check_ok(r, d, [f"{method}.png", f"{method}.csv"])
        with open(os.path.join(d, f"{method}.csv")) as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["index", "path", "x", "y"], rows[0]
        assert len(rows) == 9, len(rows)
        assert png_size(os.path.join(d, f"{method}.png")) == (128, 128)
        if method == "pca" and HAVE_H5PY:  # NumPy's SVD gives the same layout up to signs
            with h5py.File(os.path.join(d, "feats.h5")) as f:
                x = f["features"][()].astype(np.float64)
            x -= x.mean(axis=0)
            _, _, vt = np.linalg.svd(x, full_matrices=False)
            ref = x @ vt[:2].T
            ours = np.array([[float(r[2]), float(r[3])] for r in rows[1:]])
            for c in range(2):
                sign = 1.0 if ours[:, c] @ ref[:, c] >= 0 else -1.0
                err = np.abs(ours[:, c] - sign * ref[:, c]).max() / np.abs(ref[:, c]).max()
                assert err < 1e-5, f"PCA component {c} differs from NumPy by {err}"


@case
def patches_planted_first():
    d = fresh_dir("patches")
    image_dir(os.path.join(d, "imgs"))
    r = run(["patches", "imgs", "--layer", "relu1_2", "--channel", "3", "-k", "4", "--size", "48",
             "--tile", "20", "--out", "p.png"], d)
    check_ok(r, d, ["p.png"])
    rows = r.stdout.strip().splitlines()
    assert rows[0].startswith("rank"), rows
    assert len(rows) == 1 + 4 + 1, rows
    assert png_size(os.path.join(d, "p.png")) == (4 * 22 + 2, 22 + 2)


# ---- bad input --------------------------------------------------------------------------------
def make_bad(label, args, expect, setup=None, outputs=("out.png",)):
    def fn():
        d = fresh_dir("bad_" + label)
        if setup:
            setup(d)
        before = set(os.listdir(d))
        r = run(args, d, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode > 0, f"exit {r.returncode}"
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {r.stderr[:400]!r}"
        assert lines[0].startswith("preimage: error: "), lines[0]
        for s in expect:
            assert s in lines[0], f"'{s}' not in message: {lines[0]}"
        assert r.stdout == "", f"stdout: {r.stdout!r}"
        extra = sorted(set(os.listdir(d)) - before)
        assert not extra, f"output or stray files {extra}"
        return lines[0][:110]
    fn.__name__ = "bad_" + label
    return fn


def _with_image(d):
    planted(os.path.join(d, "in.png"), 1)


def _with_dir(d):
    image_dir(os.path.join(d, "imgs"), n=4)


def _with_empty_dir(d):
    os.makedirs(os.path.join(d, "empty"))


def _with_features(d):
    _with_dir(d)
    r = run(["features", "imgs", "--layer", "relu1_2", "--size", "24", "--out", "f.h5",
             "--quiet"], d)
    assert r.returncode == 0, r.stderr
    planted(os.path.join(d, "q.png"), 2)


def _with_bad_head(d):
    _with_image(d)
    if HAVE_H5PY:
        write_head(os.path.join(d, "head.h5"), "relu2_1", 2, 64)


def _with_truncated_features(d):
    _with_features(d)
    with open(os.path.join(d, "f.h5"), "r+b") as f:
        f.truncate(200)


_o = ["--out", "out.png"]
_sal = ["saliency", "--input", "in.png"] + _o
BAD = [
    ("saliency_unknown_layer", _sal + ["--layer", "relu9_9", "--channel", "0"],
     ["unknown layer 'relu9_9'"], _with_image),
    ("saliency_channel_range", _sal + ["--layer", "relu2_1", "--channel", "999"],
     ["--channel 999 out of range", "128 channels"], _with_image),
    ("saliency_no_target", _sal + ["--layer", "relu2_1"], ["--channel C or --class K"],
     _with_image),
    ("saliency_class_without_head", _sal + ["--layer", "relu2_1", "--class", "3"],
     ["--head"], _with_image),
    ("saliency_bad_method", _sal + ["--layer", "relu2_1", "--channel", "1", "--method", "magic"],
     ["--method", "magic"], _with_image),
    ("saliency_missing_input", ["saliency", "--input", "nope.png", "--layer", "relu2_1",
                                "--channel", "1"] + _o, ["--input", "nope.png"], _with_image),
    ("saliency_unknown_flag", _sal + ["--bogus", "1"], ["--bogus"], _with_image),
    ("saliency_out_not_png", ["saliency", "--input", "in.png", "--layer", "relu2_1",
                              "--channel", "1", "--out", "out.jpg"], ["--out", ".png"],
     _with_image),
    ("adversarial_head_mismatch", ["adversarial", "--input", "in.png", "--head", "head.h5",
                                   "--class", "0"] + _o, ["expects 64 features", "128"],
     _with_bad_head),
    ("adversarial_bad_epsilon", ["adversarial", "--input", "in.png", "--layer", "relu2_1",
                                 "--channel", "1", "--epsilon", "2"] + _o, ["--epsilon"],
     _with_image),
    ("features_empty_dir", ["features", "empty", "--layer", "relu1_1", "--out", "f.h5"],
     ["empty", "no image files"], _with_empty_dir),
    ("features_unknown_layer", ["features", "imgs", "--layer", "conv9_1", "--out", "f.h5"],
     ["conv9_1"], _with_dir),
    ("features_only_junk", ["features", "junk", "--layer", "relu1_1", "--out", "f.h5"],
     ["no readable image"],
     lambda d: (os.makedirs(os.path.join(d, "junk")),
                open(os.path.join(d, "junk", "a.png"), "w").write("junk"))),
    ("features_no_dir", ["features", "--layer", "relu1_1", "--out", "f.h5"], ["DIR"]),
    ("neighbors_other_weights", ["neighbors", "f.h5", "--query", "q.png", "--weights",
                                 "random:1"] + _o, ["mismatched feature file", "random:0"],
     _with_features),
    ("neighbors_other_layer", ["neighbors", "f.h5", "--query", "q.png", "--layer",
                               "relu2_1"] + _o, ["relu1_2"], _with_features),
    ("neighbors_truncated_file", ["neighbors", "f.h5", "--query", "q.png"] + _o, ["f.h5"],
     _with_truncated_features),
    ("neighbors_not_features", ["neighbors", "q.png", "--query", "q.png"] + _o, ["q.png"],
     _with_features),
    ("embed_bad_method", ["embed", "f.h5", "--method", "umap"] + _o, ["--method", "umap"],
     _with_features),
    ("patches_channel_range", ["patches", "imgs", "--layer", "relu1_1", "--channel", "64"] + _o,
     ["--channel 64 out of range"], _with_dir),
    ("patches_empty_dir", ["patches", "empty", "--layer", "relu1_1", "--channel", "0"] + _o,
     ["no image files"], _with_empty_dir),
    ("filters_other_layer", ["filters", "--layer", "conv2_1"] + _o, ["conv1_1"]),
    ("head_one_class", ["head", "imgs", "--layer", "relu1_1", "--out", "h.h5"],
     ["at least 2", "found 0"], _with_dir),
    ("head_empty_class", ["head", "train", "--layer", "relu1_1", "--out", "h.h5"],
     ["train/b", "no image files"],
     lambda d: (image_dir(os.path.join(d, "train", "a"), n=2, junk=False),
                os.makedirs(os.path.join(d, "train", "b")))),
]
for _label, _args, _expect, *_setup in BAD:
    case(make_bad(_label, _args, _expect, *_setup))


def main():
    os.makedirs(WORK, exist_ok=True)
    assert os.access(BIN, os.X_OK), f"{BIN} is not executable"
    passed = failed = 0
    t_all = time.time()
    only = os.environ.get("CLI_TEST_ONLY", "")
    for fn in _cases:
        if only not in fn.__name__:
            continue
        t0 = time.time()
        try:
            note = fn()
            passed += 1
            print(f"PASS {fn.__name__} ({time.time() - t0:.1f} s){'  ' + note if note else ''}",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            kind = "" if isinstance(e, AssertionError) else type(e).__name__ + ": "
            print(f"FAIL {fn.__name__} ({time.time() - t0:.1f} s): {kind}{e}", flush=True)
    print(f"# total {time.time() - t_all:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

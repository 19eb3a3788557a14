#!/usr/bin/python3
"""End-to-end tests of `preimage attributes train|show|apply` (B-CNN attribute manipulation).

usage: test_attributes_cli.py PATH/TO/preimage SCRATCH_DIR

A labelled texture set is generated procedurally (test/make_attribute_set.py: stripes, dots,
checks, noise; 40 images of 64x64 each, varied scale, orientation and colour) and a classifier is
trained on it with random-feature VGG-19 (random:0) at relu1_2,relu2_1. Checked:
  - held-out mean accuracy >= 90%, the classifier file's contents (classes, layers, weights
    identity, fingerprint), an unreadable image skipped and counted;
  - `show` renders a pre-image the classifier assigns to the attribute with p >= 0.9;
  - `apply` raises the target class above p = 0.9 while the B-CNN texture distance to the source
    (sum over relu1_1, relu2_1 of ||z(x) - z(src)||^2) stays <= 0.25 (docs/attributes.md says why);
  - `apply --keep-content` raises the target class above p = 0.9;
  - `--attribute all` writes one output per class;
  - `--list` training from a train/test list file;
  - bad input (empty class folder, a single class, a class whose images are all unreadable, a
    malformed list, a classifier whose weights, architecture or layers differ from the run, an
    unknown attribute, a file that is no classifier): one line naming the culprit, non-zero exit,
    no output and no temporary file left behind.
Plain asserts; one line per case; ends with "N passed, M failed"; exits non-zero on failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

if len(sys.argv) != 3:
    sys.exit("usage: test_attributes_cli.py PATH/TO/preimage SCRATCH_DIR")

BIN = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))
import h5py  # noqa: E402  (Debian's python3 has it; the ctest entry runs /usr/bin/python3)
import numpy as np  # noqa: E402

LAYERS = "relu1_2,relu2_1"
TEX_LAYERS = "relu1_1,relu2_1"
DIST_BOUND = 0.25


def run(args, cwd=None, timeout=600):
    return subprocess.run([BIN] + list(args), cwd=cwd or WORK, capture_output=True, text=True,
                          timeout=timeout)


def no_leftovers(d, allowed=()):
    """No partial outputs or temporary files in d beyond `allowed` names."""
    extra = [f for f in os.listdir(d) if f not in allowed and not os.path.isdir(os.path.join(d, f))]
    assert not extra, "unexpected files left behind: %s" % extra


def fails(r, *needles):
    assert r.returncode != 0, "expected failure, got rc 0:\n" + r.stderr
    err = r.stderr.strip()
    assert err.startswith("preimage: error:"), "stderr: " + err
    assert len(err.splitlines()) == 1, "expected one line, got:\n" + err
    for n in needles:
        assert n in err, "expected %r in: %s" % (n, err)


results = []


def case(name, fn):
    t0 = time.time()
    try:
        fn()
        results.append(True)
        print("PASS %-46s %.1fs" % (name, time.time() - t0), flush=True)
    except Exception as e:  # noqa: BLE001
        results.append(False)
        print("FAIL %-46s %s" % (name, e), flush=True)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
DATA = os.path.join(WORK, "set")
subprocess.run(["/usr/bin/python3", os.path.join(HERE, "make_attribute_set.py"), DATA,
                "--per-class", "40", "--size", "64", "--seed", "1"], check=True,
               capture_output=True)
# One unreadable image: skipped and counted, not fatal.
with open(os.path.join(DATA, "noise", "noise_999.png"), "wb") as f:
    f.write(b"not a png")
CLS = os.path.join(WORK, "c.h5")
state = {}


def t_train():
    r = run(["attributes", "train", "--data", DATA, "--size", "64", "--layers", LAYERS,
             "--l2", "1e-2", "--iters", "150", "--out", CLS, "--device", "cpu"])
    assert r.returncode == 0, r.stderr
    m = re.search(r"mean held-out accuracy ([0-9.]+)%.*\b(\d+) skipped", r.stdout)
    assert m, r.stdout
    acc = float(m.group(1))
    assert acc >= 90.0, "held-out accuracy %.1f%% < 90%%\n%s" % (acc, r.stdout)
    assert int(m.group(2)) == 1, "expected 1 skipped file:\n" + r.stdout
    assert "noise_999.png" in r.stderr, r.stderr
    for c in ["stripes", "dots", "checks", "noise"]:
        assert re.search(r"^%s\s+\d+\s+\d+\s+[0-9.]+%%" % c, r.stdout, re.M), r.stdout
    with h5py.File(CLS, "r") as f:
        classes = [c.decode() if isinstance(c, bytes) else c for c in f["classes"][()]]
        assert classes == ["checks", "dots", "noise", "stripes"], classes
        layers = [c.decode() if isinstance(c, bytes) else c for c in f["layers"][()]]
        assert layers == LAYERS.split(","), layers
        assert f["weight"].shape == (4, 64 * 64 + 128 * 128), f["weight"].shape
        assert list(f["channels"][()]) == [64, 128]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        assert attrs["weights"] == "random:0", attrs
        assert attrs["arch"] == "vgg19" and len(attrs["weights_fingerprint"]) == 16, attrs
        assert int(np.ravel(attrs["size"])[0]) == 64 and attrs["pool"] == "max", attrs
        assert int(np.ravel(attrs["signed_sqrt"])[0]) == 1, attrs
        assert abs(float(np.ravel(attrs["test_accuracy"])[0]) * 100 - acc) < 0.1, attrs
    no_leftovers(WORK, {"c.h5"})
    state["trained"] = True


def sidecar(path):
    with open(path + ".json") as f:
        return json.load(f)


def t_show():
    d = os.path.join(WORK, "show")
    os.makedirs(d)
    out = os.path.join(d, "stripes.png")
    r = run(["attributes", "show", "--classifier", CLS, "--attribute", "stripes", "--iters", "10",
             "--out", out, "--device", "cpu"])
    assert r.returncode == 0, r.stderr
    j = sidecar(out)
    res = j["results"]
    assert res["attribute"] == "stripes" and res["probability"] >= 0.9, res
    assert j["weights"] == "random:0" and j["random_weights"] is True, j["weights"]
    assert j["width"] == 64 and j["height"] == 64, (j["width"], j["height"])


def t_apply():
    d = os.path.join(WORK, "apply")
    os.makedirs(d)
    out = os.path.join(d, "dots_to_stripes.png")
    src = os.path.join(DATA, "dots", "dots_005.png")
    r = run(["attributes", "apply", "--input", src, "--classifier", CLS, "--attribute", "stripes",
             "--strength", "1", "--layers", TEX_LAYERS, "--iters", "60", "--out", out,
             "--device", "cpu"])
    assert r.returncode == 0, r.stderr
    res = sidecar(out)["results"]
    assert res["mode"] == "texture+attribute", res
    assert res["probability_source"] < 0.5, res
    assert res["probability"] > 0.9, res
    assert res["bcnn_distance"] <= DIST_BOUND, res
    assert set(res["bcnn_distance_per_layer"]) == set(TEX_LAYERS.split(",")), res


def t_apply_keep_content():
    d = os.path.join(WORK, "keep")
    os.makedirs(d)
    out = os.path.join(d, "dots_stripier.png")
    src = os.path.join(DATA, "dots", "dots_005.png")
    r = run(["attributes", "apply", "--input", src, "--classifier", CLS, "--attribute", "stripes",
             "--strength", "1", "--keep-content", "--layers", TEX_LAYERS, "--iters", "12",
             "--size", "48",
             "--out", out, "--device", "cpu"])
    assert r.returncode == 0, r.stderr
    j = sidecar(out)
    res = j["results"]
    assert res["mode"] == "content+attribute", res
    assert res["probability"] > 0.9, res
    assert any(t.startswith("content:relu4_2") for t in j["terms"]), j["terms"]


def t_all():
    d = os.path.join(WORK, "all")
    os.makedirs(d)
    src = os.path.join(DATA, "checks", "checks_002.png")
    r = run(["attributes", "apply", "--input", src, "--classifier", CLS, "--attribute", "all",
             "--layers", TEX_LAYERS, "--iters", "2", "--out", os.path.join(d, "x.png"),
             "--device", "cpu", "--quiet"])
    assert r.returncode == 0, r.stderr
    names = sorted(f for f in os.listdir(d) if f.endswith(".png"))
    assert names == ["x_checks.png", "x_dots.png", "x_noise.png", "x_stripes.png"], names
    for n in names:
        assert sidecar(os.path.join(d, n))["results"]["attribute"] == n[2:-4]
    no_leftovers(d, set(names) | {n + ".json" for n in names})


def t_list():
    d = os.path.join(WORK, "list")
    os.makedirs(d)
    lines = ["# split class path"]
    for c in ["dots", "stripes"]:
        for i in range(6):
            lines.append("%s %s %s" % ("test" if i < 2 else "train", c,
                                        os.path.relpath(os.path.join(DATA, c, "%s_%03d.png" % (c, i)), d)))
    lst = os.path.join(d, "split.txt")
    with open(lst, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = os.path.join(d, "l.h5")
    r = run(["attributes", "train", "--list", lst, "--size", "48", "--layers", "relu1_2",
             "--iters", "30", "--out", out, "--device", "cpu", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert re.search(r"^dots\s+4\s+2\s", r.stdout, re.M), r.stdout
    with open(lst, "a") as f:
        f.write("validation dots x.png\n")
    os.remove(out)
    r = run(["attributes", "train", "--list", lst, "--out", out, "--device", "cpu"])
    fails(r, "split.txt' line 14", "train|test CLASS PATH")
    assert not os.path.exists(out)


def t_bad_data():
    d = os.path.join(WORK, "bad")
    os.makedirs(os.path.join(d, "one", "a"))
    shutil.copy(os.path.join(DATA, "dots", "dots_000.png"), os.path.join(d, "one", "a"))
    shutil.copy(os.path.join(DATA, "dots", "dots_001.png"), os.path.join(d, "one", "a"))
    out = os.path.join(d, "c.h5")
    fails(run(["attributes", "train", "--data", os.path.join(d, "one"), "--out", out]),
          "at least 2 classes", "('a')")
    os.makedirs(os.path.join(d, "one", "b"))
    fails(run(["attributes", "train", "--data", os.path.join(d, "one"), "--out", out]),
          "class folder", "is empty")
    for i in range(2):
        with open(os.path.join(d, "one", "b", "broken%d.png" % i), "wb") as f:
            f.write(b"\x89PNG garbage")
    fails(run(["attributes", "train", "--data", os.path.join(d, "one"), "--out", out,
               "--layers", "relu1_1", "--size", "32", "--device", "cpu", "--quiet"]),
          "class 'b'", "could be read")
    fails(run(["attributes", "train", "--data", os.path.join(d, "missing"), "--out", out]),
          "does not exist")
    fails(run(["attributes", "train", "--data", DATA, "--out", out, "--layers", "fc7"]), "fc7")
    no_leftovers(d)


def t_bad_classifier():
    d = os.path.join(WORK, "badc")
    os.makedirs(d)
    out = os.path.join(d, "x.png")
    base = ["attributes", "show", "--classifier", CLS, "--attribute", "dots", "--iters", "2",
            "--out", out, "--device", "cpu"]
    fails(run(base + ["--weights", "random:1"]), "random:0", "random:1", "fingerprint")
    fails(run(base + ["--arch", "vgg16"]), "trained on vgg19", "vgg16")
    fails(run(["attributes", "show", "--classifier", CLS, "--attribute", "zigzag", "--out", out]),
          "unknown attribute 'zigzag'", "checks, dots, noise, stripes")
    png = os.path.join(DATA, "dots", "dots_000.png")
    fails(run(["attributes", "show", "--classifier", png, "--attribute", "dots", "--out", out]),
          "--classifier", "dots_000.png")
    # Layers that differ from the run's network: a channel count, and a layer it does not have.
    wrong = os.path.join(d, "wrong_layers.h5")
    shutil.copy(CLS, wrong)
    with h5py.File(wrong, "r+") as f:
        del f["layers"]
        f["layers"] = np.array([b"relu1_2", b"relu3_1"], dtype=h5py.string_dtype())
    fails(run(["attributes", "show", "--classifier", wrong, "--attribute", "dots", "--out", out]),
          "relu3_1", "256 channels", "expects 128")
    with h5py.File(wrong, "r+") as f:
        del f["layers"]
        f["layers"] = np.array([b"relu1_2", b"relu9_9"], dtype=h5py.string_dtype())
    fails(run(["attributes", "show", "--classifier", wrong, "--attribute", "dots", "--out", out]),
          "relu9_9")
    # Weights that differ from the run: the fingerprint recorded no longer matches.
    with h5py.File(wrong, "r+") as f:
        del f["layers"]
        f["layers"] = np.array([b"relu1_2", b"relu2_1"], dtype=h5py.string_dtype())
        f.attrs["weights_fingerprint"] = "0123456789abcdef"
    fails(run(["attributes", "apply", "--input", png, "--classifier", wrong, "--attribute", "dots",
               "--out", out]), "fingerprint 0123456789abcdef")
    no_leftovers(d, {"wrong_layers.h5"})


case("attributes train: held-out accuracy >= 90%", t_train)
if state.get("trained"):
    case("attributes show: pre-image p >= 0.9", t_show)
    case("attributes apply: texture + attribute", t_apply)
    case("attributes apply --keep-content", t_apply_keep_content)
    case("attributes apply --attribute all", t_all)
    case("attributes bad classifier: weights/arch/layers", t_bad_classifier)
case("attributes train --list", t_list)
case("attributes bad data: empty/single class", t_bad_data)
failed = results.count(False)
print("%d passed, %d failed" % (results.count(True), failed))
sys.exit(1 if failed else 0)

#!/usr/bin/python3
"""End to end: preimage decoder train | invert | eval (docs/decoders.md).

    test_decoder_cli.py PATH/TO/preimage WORKDIR

On a procedurally generated 64x64 set (test/make_decoder_set.py) a decoder for relu2_2 of random
VGG-19 is trained on the CPU for a bounded time (--max-seconds) and must reach a held-out MSE of at
most half the MSE of predicting the mean training image; invert writes a PNG; eval reports the
decoder next to the L-BFGS inversion (--json); a UoCTTI-HOG decoder trains and inverts; a run killed with SIGKILL after a checkpoint resumes
from it; bad input (decoder used for another layer, other weights, not a decoder, a resume with
other settings, an image size that is not the feature size times a power of two) fails with a
clear one-line error, a non-zero exit and no output file.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_SECONDS = 80  # a cap for loaded machines: 120 steps take ~15-45 s


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def expect_error(exe, args, needle, outputs=()):
    r = run([exe] + args)
    msg = r.stderr.strip()
    assert r.returncode != 0, "expected failure: %s\n%s" % (args, r.stdout)
    assert needle in msg, "expected %r in error of %s, got: %s" % (needle, args, msg)
    assert len(msg.splitlines()) == 1 or msg.splitlines()[-1].startswith("preimage: error"), msg
    for o in outputs:
        assert not os.path.exists(o), "partial output left: " + o
    print("ok (error): %s" % msg.splitlines()[-1])


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.join(work, "set")
    subprocess.check_call(["/usr/bin/python3", os.path.join(HERE, "make_decoder_set.py"), data,
                           "--count", "160", "--size", "64", "--seed", "3"])
    dec = os.path.join(work, "dec.h5")
    common = ["--device", "cpu"]

    # ---- train (bounded time) ---------------------------------------------------------------
    t0 = time.time()
    r = run([exe, "decoder", "train", "--layer", "relu2_2", "--data", data, "--out", dec,
             "--holdout", "32", "--width", "16", "--batch", "4", "--lr", "3e-3", "--steps", "120",
             "--max-seconds", str(TRAIN_SECONDS), "--checkpoint-every", "25"] + common)
    print(r.stderr[-600:])
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    m = re.search(r"held-out MSE ([0-9.e+-]+) vs mean image ([0-9.e+-]+)", r.stdout)
    assert m, r.stdout
    dmse, mmse = float(m.group(1)), float(m.group(2))
    assert dmse <= 0.5 * mmse, "decoder MSE %g not below half the mean-image MSE %g" % (dmse, mmse)
    assert os.path.exists(dec) and not os.path.exists(dec + ".ckpt")
    print("train: %.1f s, held-out MSE %.5f vs mean image %.5f" % (time.time() - t0, dmse, mmse))

    # ---- invert -----------------------------------------------------------------------------
    img = sorted(glob.glob(os.path.join(data, "*.png")))[-1]
    rec = os.path.join(work, "rec.png")
    r = run([exe, "decoder", "invert", "--decoder", dec, "--input", img, "--out", rec] + common)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(rec) > 0
    print(r.stdout.strip())

    # ---- eval (decoder vs mean image vs L-BFGS) -----------------------------------------------
    r = run([exe, "decoder", "eval", "--decoder", dec, "--data", data, "--lbfgs-images", "1",
             "--lbfgs-iters", "10", "--json"] + common)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["images"] == 32 and j["layer"] == "relu2_2", j
    assert j["decoder_mse"] <= 0.5 * j["mean_image_mse"], j
    assert abs(j["decoder_mse"] - dmse) <= 1e-6 + 1e-4 * dmse, (j, dmse)
    assert j["lbfgs_images"] == 1 and j["lbfgs_mse"] > 0 and j["lbfgs_seconds_per_image"] > 0, j
    r = run([exe, "decoder", "eval", "--decoder", dec, "--data", data, "--lbfgs-images", "1",
             "--lbfgs-iters", "3"] + common)
    assert r.returncode == 0 and "L-BFGS inversion" in r.stdout and "mean training image" in \
        r.stdout, r.stdout + r.stderr
    print(r.stdout)

    # ---- checkpoint + resume after SIGKILL ----------------------------------------------------
    dec2 = os.path.join(work, "dec2.h5")
    args2 = [exe, "decoder", "train", "--layer", "relu2_2", "--data", data, "--out", dec2,
             "--holdout", "32", "--width", "8", "--batch", "2", "--steps", "40",
             "--checkpoint-every", "3", "--quiet"] + common
    p = subprocess.Popen(args2, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not os.path.exists(dec2 + ".ckpt") and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "training finished before its first checkpoint"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert os.path.exists(dec2 + ".ckpt") and not os.path.exists(dec2)
    expect_error(exe, args2[1:4] + ["relu3_1"] + args2[5:] + ["--resume"],
                 "trained on features of layer relu2_2, not relu3_1")
    r = run([a for a in args2 if a != "--quiet"] + ["--resume"])
    assert r.returncode == 0, r.stderr
    m = re.search(r"resuming from step (\d+) of 40", r.stderr)
    assert m and int(m.group(1)) >= 3, r.stderr
    assert os.path.exists(dec2) and not os.path.exists(dec2 + ".ckpt")
    assert re.search(r": 40 steps", r.stdout), r.stdout
    print("resume: from step %s" % m.group(1))
    expect_error(exe, args2[1:] + ["--resume"], "already done 40 of 40 steps")

    # ---- decoder from a hand-crafted descriptor (UoCTTI HOG; its 6x6 interior cells at 64 px are
    # zero-padded to 8x8 and upsampled 8x) --------------------------------------------------------
    dec_hog = os.path.join(work, "hog.h5")
    r = run([exe, "decoder", "train", "--representation", "hog-uoctti", "--data", data, "--out",
             dec_hog, "--holdout", "32", "--width", "8", "--batch", "4", "--steps", "5"] + common)
    assert r.returncode == 0 and "layer hog-uoctti" in r.stderr, r.stderr
    rec_hog = os.path.join(work, "rec_hog.png")
    r = run([exe, "decoder", "invert", "--decoder", dec_hog, "--input", img, "--out", rec_hog]
            + common)
    assert r.returncode == 0 and os.path.getsize(rec_hog) > 0, r.stderr
    expect_error(exe, ["decoder", "invert", "--decoder", dec_hog, "--input", img, "--out",
                       os.path.join(work, "bad_hog.png"), "--layer", "relu2_2"] + common,
                 "trained on the descriptor hog-uoctti", [os.path.join(work, "bad_hog.png")])
    expect_error(exe, ["decoder", "train", "--representation", "hog", "--data", data, "--out",
                       os.path.join(work, "bad_hog.h5"), "--steps", "1"] + common,
                 "power of two", [os.path.join(work, "bad_hog.h5")])
    expect_error(exe, ["decoder", "train", "--representation", "hog-uoctti", "--layer", "relu2_2",
                       "--data", data, "--out", os.path.join(work, "bad_hog.h5")] + common,
                 "--layer applies to --representation vgg only")

    # ---- bad input ------------------------------------------------------------------------------
    out_bad = os.path.join(work, "bad.png")
    expect_error(exe, ["decoder", "invert", "--decoder", dec, "--input", img, "--out", out_bad,
                       "--layer", "relu3_1"] + common,
                 "trained on features of layer relu2_2, not relu3_1", [out_bad])
    expect_error(exe, ["decoder", "invert", "--decoder", dec, "--input", img, "--out", out_bad,
                       "--weights", "random:1"] + common,
                 "trained on the features of weights random:0", [out_bad])
    expect_error(exe, ["decoder", "eval", "--decoder", dec, "--data", data, "--weights",
                       "random:7"] + common, "trained on the features of weights random:0")
    junk = os.path.join(work, "junk.h5")
    with open(junk, "w") as f:
        f.write("not a decoder")
    expect_error(exe, ["decoder", "invert", "--decoder", junk, "--input", img, "--out", out_bad]
                 + common, "decoder file '%s'" % junk, [out_bad])
    expect_error(exe, ["decoder", "invert", "--decoder", os.path.join(work, "missing.h5"),
                       "--input", img, "--out", out_bad] + common, "no such file", [out_bad])
    bad_dec = os.path.join(work, "bad.h5")
    expect_error(exe, ["decoder", "train", "--layer", "relu2_2", "--data", data, "--out", bad_dec,
                       "--size", "51", "--steps", "1"] + common, "power of two", [bad_dec])
    expect_error(exe, ["decoder", "train", "--layer", "relu9_9", "--data", data, "--out", bad_dec,
                       "--steps", "1"] + common, "relu9_9", [bad_dec])
    expect_error(exe, ["decoder", "train", "--layer", "relu2_2", "--data", data, "--out",
                       os.path.join(work, "x.png"), "--steps", "1"] + common, "expected a .h5")
    expect_error(exe, ["decoder", "train", "--layer", "relu2_2", "--data",
                       os.path.join(work, "nodir"), "--out", bad_dec] + common, "does not exist",
                 [bad_dec])
    expect_error(exe, ["decoder", "frobnicate"], "expected a subcommand train|invert|eval")
    print("all decoder CLI checks passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""End-to-end tests of the preimage command line.

usage: test_cli.py PATH/TO/preimage SCRATCH_DIR

Runs every subcommand at 64x64 (other cases at 48x48) for a few iterations with random-feature weights (random:0) and
checks the outputs (PNG + JSON sidecar, loss decreasing), determinism (same command twice ->
identical PNG bytes), resume equivalence (interrupted at iteration k by the hidden test hook
PREIMAGE_TEST_INTERRUPT_AT=k, then --resume -> the same bytes as an uninterrupted run; likewise
after a crash, PREIMAGE_TEST_KILL_AT=k, from a --save-every checkpoint), a real
SIGINT / SIGTERM sent to a running process, progress output (plain lines when not a terminal, a bar
on a pseudo-terminal, nothing with --quiet) and every bad-input case (one-line message naming the
flag / file / layer, non-zero exit, no output file and no stray temporary files).

Plain asserts; one line per case; ends with "N passed, M failed" and exits non-zero on failure.
CLI_TEST_ONLY=SUBSTRING runs only the cases whose name contains it.
Needs only the Python standard library (h5py, when present, adds the weights-file case).
"""
import hashlib
import json
import re
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import time

if len(sys.argv) != 3:
    sys.exit("usage: test_cli.py PATH/TO/preimage SCRATCH_DIR")

BIN = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRICK = os.path.join(ROOT, "examples", "brick.png")
GRAVEL = os.path.join(ROOT, "examples", "gravel.png")
# Files on which HDF5 1.10.8 itself segfaults (test/data/fuzz/hdf5_crash/, docs/reliability.md).
HDF5_CRASH = os.path.join(ROOT, "test", "data", "fuzz", "hdf5_crash")
ASTRONAUT = os.path.join(ROOT, "examples", "astronaut.jpg")

ENV = dict(os.environ)
ENV.pop("PREIMAGE_TEST_INTERRUPT_AT", None)
ENV.pop("PREIMAGE_TEST_KILL_AT", None)

# One short run per subcommand (64x64, shallow taps, few iterations).
COMMANDS = {
    "texture": ["texture", "--input", BRICK, "--size", "64", "--iters", "6",
                "--layers", "relu1_1,relu2_1,relu3_1"],
    "invert": ["invert", "--input", ASTRONAUT, "--size", "64", "--iters", "6",
               "--layers", "relu2_1"],
    "style": ["style", "--input", ASTRONAUT, "--style", GRAVEL, "--size", "64", "--iters", "6",
              "--layers", "relu1_1,relu2_1"],
    "visualize": ["visualize", "--layers", "relu2_1", "--channel", "5", "--size", "64",
                  "--iters", "8"],
    "dream": ["dream", "--input", ASTRONAUT, "--size", "64", "--iters", "3",
              "--layers", "relu2_1", "--octaves", "2"],
    "caricature": ["caricature", "--input", ASTRONAUT, "--size", "64", "--iters", "6",
                   "--layers", "relu2_1"],
}

SIDECAR_KEYS = ["command", "version", "commit", "argv", "inputs", "output", "settings", "effective_settings", "seed", "weights",
                "weights_file", "weights_sha256", "random_weights", "arch", "device",
                "width", "height", "stop_reason", "interrupted", "iterations", "evaluations",
                "wall_time_s",
                "predicted_peak_memory_bytes", "measured_peak_memory_bytes", "terms", "history",
                "results"]

_cases = []


def case(fn):
    _cases.append(fn)
    return fn


def fresh_dir(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run(args, cwd, env=None, timeout=180):
    return subprocess.run([BIN] + list(args), cwd=cwd, env=env or ENV, capture_output=True,
                          text=True, timeout=timeout)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def load_sidecar(png):
    path = png + ".json"
    assert os.path.isfile(path), f"no sidecar {path}"
    with open(path) as f:
        j = json.load(f)  # valid JSON
    for k in SIDECAR_KEYS:
        assert k in j, f"sidecar lacks '{k}'"
    assert j["weights"] == "random:0" and j["random_weights"] is True, j["weights"]
    assert j["weights_sha256"] is None
    assert j["device"] == "cpu", j["device"]
    assert isinstance(j["wall_time_s"], (int, float)) and j["wall_time_s"] > 0
    assert j["predicted_peak_memory_bytes"] > 0 and j["measured_peak_memory_bytes"] > 0
    assert j["iterations"] == len(j["history"])
    assert j["evaluations"] >= j["iterations"], (j["evaluations"], j["iterations"])
    for h in j["history"]:
        assert len(h["terms"]) == len(j["terms"]), h
        assert isinstance(h["loss"], float), h
    return j


def leftovers(d, expected):
    """Files in d other than `expected` (temporary files, checkpoints, stray outputs)."""
    return sorted(set(os.listdir(d)) - set(expected))


def check_ok(r, d, out="out.png", ckpt=False):
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()[-400:]}"
    assert os.path.isfile(os.path.join(d, out)), "no PNG written"
    assert r.stdout.strip().splitlines()[-1] == out, f"stdout {r.stdout!r}"
    extra = leftovers(d, [out, out + ".json"])
    assert not extra, f"stray files {extra}"


def losses(j):
    return [h["loss"] for h in j["history"]]


# ---- end to end, one per subcommand ------------------------------------------------------------

def make_e2e(name):
    def fn():
        d = fresh_dir("e2e_" + name)
        r = run(COMMANDS[name] + ["--out", "out.png"], d)
        check_ok(r, d)
        out = os.path.join(d, "out.png")
        assert png_size(out) == (64, 64), png_size(out)
        j = load_sidecar(out)
        assert j["command"] == name and j["interrupted"] is False
        assert j["stop_reason"] in ("max iterations", "gradient tolerance", "function tolerance"), \
            j["stop_reason"]
        L = losses(j)
        assert len(L) >= 2, f"{len(L)} iterations recorded"
        assert L[-1] < L[0], f"loss did not decrease: {L[0]} -> {L[-1]}"
        if name in ("visualize", "dream"):  # ascent: the minimized objective is the negation
            assert L[-1] < 0, L[-1]
            for st in sorted(set(h["stage"] for h in j["history"])):
                Ls = [h["loss"] for h in j["history"] if h["stage"] == st]
                assert Ls[-1] < Ls[0], f"stage {st}: {Ls[0]} -> {Ls[-1]}"
        if name == "visualize":
            assert j["results"]["final_activation"] > 0, j["results"]
        if name == "invert":
            err = j["results"]["normalized_reconstruction_error"]["relu2_1"]
            assert 0 <= err < 1, err
    fn.__name__ = "e2e_" + name
    return fn


for _n in COMMANDS:
    case(make_e2e(_n))


# ---- determinism ------------------------------------------------------------------------------

def make_determinism(name):
    def fn():
        d = fresh_dir("det_" + name)
        r1 = run(COMMANDS[name] + ["--out", "a.png", "--quiet"], d)
        r2 = run(COMMANDS[name] + ["--out", "b.png", "--quiet"], d)
        assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
        a, b = os.path.join(d, "a.png"), os.path.join(d, "b.png")
        assert read_bytes(a) == read_bytes(b), "two runs gave different PNG bytes"
        assert losses(load_sidecar(a)) == losses(load_sidecar(b)), "loss histories differ"
    fn.__name__ = "determinism_" + name
    return fn


case(make_determinism("texture"))
case(make_determinism("dream"))  # jitter: seeded RNG


# ---- resume equivalence -----------------------------------------------------------------------

def make_resume(label, cmd, k):
    def fn():
        d = fresh_dir("resume_" + label)
        ra = run(cmd + ["--out", "a.png", "--quiet"], d)
        assert ra.returncode == 0, ra.stderr
        env = dict(ENV, PREIMAGE_TEST_INTERRUPT_AT=str(k))
        rb = run(cmd + ["--out", "b.png", "--quiet"], d, env=env)
        assert rb.returncode == 130, f"interrupted run exit {rb.returncode}: {rb.stderr}"
        assert "--resume" in rb.stderr, rb.stderr
        b = os.path.join(d, "b.png")
        assert os.path.isfile(b), "no PNG saved on interruption"
        jb = load_sidecar(b)
        assert jb["interrupted"] is True and jb["stop_reason"] == "interrupted", jb["stop_reason"]
        assert len(jb["history"]) == k, len(jb["history"])
        ckpts = [f for f in os.listdir(d) if f.startswith("b.png.stage") and f.endswith(".ckpt.h5")]
        assert len(ckpts) == 1, f"checkpoints {ckpts}"
        assert os.path.basename(jb["checkpoint"]) == ckpts[0]
        rc = run(cmd + ["--out", "b.png", "--quiet", "--resume"], d)
        assert rc.returncode == 0, f"resume exit {rc.returncode}: {rc.stderr}"
        assert read_bytes(os.path.join(d, "a.png")) == read_bytes(b), \
            "resumed result differs from the uninterrupted run"
        ja, jb = load_sidecar(os.path.join(d, "a.png")), load_sidecar(b)
        assert losses(ja) == losses(jb), "resumed loss history differs"
        assert ja["evaluations"] == jb["evaluations"], (ja["evaluations"], jb["evaluations"])
        extra = leftovers(d, ["a.png", "a.png.json", "b.png", "b.png.json"])
        assert not extra, f"left behind {extra}"
    fn.__name__ = "resume_" + label
    return fn


_tex = ["texture", "--input", BRICK, "--size", "48", "--layers", "relu1_1,relu2_1,relu3_1"]
case(make_resume("texture", _tex + ["--iters", "8"], 3))
case(make_resume("texture_octaves", _tex + ["--iters", "4", "--octaves", "2"], 6))
case(make_resume("visualize", ["visualize", "--layers", "relu2_1", "--channel", "5", "--size",
                               "48", "--iters", "10", "--jitter", "3"], 4))


@case
def save_every_survives_a_crash():
    # --save-every k keeps a checkpoint (and the PNG) current; after a hard kill, --resume
    # continues from the last one and ends with the bytes of an uninterrupted run.
    d = fresh_dir("save_every_crash")
    cmd = _tex + ["--iters", "8", "--quiet"]
    ra = run(cmd + ["--out", "a.png"], d)
    assert ra.returncode == 0, ra.stderr
    rs = run(cmd + ["--out", "s.png", "--save-every", "3"], d)  # saving must not change results
    assert rs.returncode == 0, rs.stderr
    assert read_bytes(os.path.join(d, "a.png")) == read_bytes(os.path.join(d, "s.png"))
    assert not leftovers(d, ["a.png", "a.png.json", "s.png", "s.png.json"])
    rb = run(cmd + ["--out", "b.png", "--save-every", "3"], d,
             env=dict(ENV, PREIMAGE_TEST_KILL_AT="7"))
    assert rb.returncode == -signal.SIGKILL, f"exit {rb.returncode}"
    assert os.path.isfile(os.path.join(d, "b.png")), "no PNG from --save-every"
    assert os.path.isfile(os.path.join(d, "b.png.stage0.ckpt.h5")), "no checkpoint"
    rc = run(cmd + ["--out", "b.png", "--resume"], d)
    assert rc.returncode == 0, rc.stderr
    assert read_bytes(os.path.join(d, "a.png")) == read_bytes(os.path.join(d, "b.png")), \
        "resumed after a crash differs from the uninterrupted run"
    ja, jb = load_sidecar(os.path.join(d, "a.png")), load_sidecar(os.path.join(d, "b.png"))
    assert losses(ja) == losses(jb)
    assert not leftovers(d, ["a.png", "a.png.json", "s.png", "s.png.json", "b.png",
                             "b.png.json"])


def make_signal(sig, code):
    def fn():
        d = fresh_dir("signal_" + sig.name)
        base = ["texture", "--input", BRICK, "--size", "48", "--layers", "relu1_1,relu2_1",
                "--out", "out.png"]
        cmd = base + ["--iters", "1000000"]
        errpath = os.path.join(d, "stderr.txt")
        with open(errpath, "w") as err:
            p = subprocess.Popen([BIN] + cmd, cwd=d, env=ENV, stdout=subprocess.DEVNULL,
                                 stderr=err)
            try:
                deadline = time.time() + 90
                while time.time() < deadline:  # wait until it is optimizing
                    with open(errpath) as f:
                        if "iteration 1/" in f.read():
                            break
                    assert p.poll() is None, f"exited early with {p.returncode}"
                    time.sleep(0.1)
                else:
                    raise AssertionError("no progress line within 90 s")
                time.sleep(0.3)
                p.send_signal(sig)
                rc = p.wait(timeout=90)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        with open(errpath) as f:
            text = f.read()
        assert rc == code, f"exit {rc} (expected {code}): {text[-300:]}"
        assert "--resume" in text, text[-300:]
        out = os.path.join(d, "out.png")
        assert png_size(out) == (48, 48)
        j = load_sidecar(out)
        assert j["interrupted"] is True and j["stop_reason"] == "interrupted"
        n = j["iterations"]
        assert os.path.isfile(os.path.join(d, "out.png.stage0.ckpt.h5")), "no checkpoint"
        if sig == signal.SIGINT:  # resume; --iters may change, so stop right away
            r = run(base + ["--iters", "1", "--resume"], d)
            assert r.returncode == 0, r.stderr
            assert "resuming from out.png.stage0.ckpt.h5" in r.stderr, r.stderr
            j2 = load_sidecar(out)
            assert j2["iterations"] == n and losses(j2) == losses(j)
            assert not leftovers(d, ["out.png", "out.png.json", "stderr.txt"])
    fn.__name__ = "signal_" + sig.name
    return fn


case(make_signal(signal.SIGINT, 130))
case(make_signal(signal.SIGTERM, 143))


# ---- progress output --------------------------------------------------------------------------

_quick = ["texture", "--input", BRICK, "--size", "48", "--iters", "4", "--layers", "relu1_1",
          "--out", "out.png"]


@case
def progress_plain_lines():
    d = fresh_dir("progress_plain")
    r = run(_quick, d)
    check_ok(r, d)
    lines = [l for l in r.stderr.splitlines() if "iteration" in l]
    assert lines, r.stderr
    assert "iteration 1/4" in lines[0] and "it/s" in lines[0] and "ETA" in lines[0], lines[0]
    assert "iteration 4/4" in lines[-1], lines[-1]
    assert "\r" not in r.stderr, "carriage returns when not a terminal"
    assert "random:0" in r.stderr and "RANDOM" in r.stderr, "random weights not announced"


@case
def progress_bar_on_terminal():
    d = fresh_dir("progress_tty")
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN] + _quick, cwd=d, env=ENV, stdout=subprocess.DEVNULL,
                         stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 4096)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    rc = p.wait(timeout=120)
    text = b"".join(chunks).decode(errors="replace")
    assert rc == 0, text
    assert "\r" in text and "it/s" in text and "ETA" in text and "4/4" in text, text


@case
def quiet_is_silent():
    d = fresh_dir("quiet")
    r = run(_quick + ["--quiet"], d)
    check_ok(r, d)
    assert r.stderr == "", f"stderr with --quiet: {r.stderr!r}"


# ---- weights file: identity and SHA-256 in the sidecar -----------------------------------------

@case
def weights_file_sha256():
    try:
        import h5py
        import numpy as np
    except ImportError:
        return "skipped (no h5py/numpy)"
    d = fresh_dir("weights_file")
    wpath = os.path.join(d, "vgg16_random.h5")
    rng = np.random.default_rng(0)
    widths = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    with h5py.File(wpath, "w") as f:
        for k, v in {"format": "preimage-vgg-1", "arch": "vgg16", "color_order": "RGB"}.items():
            f.attrs[k] = v
        f.attrs["value_range"] = np.float32(1)
        f.attrs["mean"] = np.array([0.485, 0.456, 0.406], np.float32)
        f.attrs["std"] = np.array([0.229, 0.224, 0.225], np.float32)
        f.attrs["random_init"] = np.int32(1)
        c = 3
        for b, (o, n) in enumerate(widths, 1):
            for i in range(1, n + 1):
                g = f.create_group(f"conv{b}_{i}")
                w = rng.standard_normal((o, c, 3, 3), dtype=np.float32) * np.float32(
                    (2.0 / (9 * c)) ** 0.5)
                g["weight"] = w
                g["bias"] = np.zeros(o, np.float32)
                c = o
    sha = hashlib.sha256(read_bytes(wpath)).hexdigest()
    r = run(_quick + ["--weights", wpath], d)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(d, "out.png.json")) as f:
        j = json.load(f)
    os.remove(wpath)
    assert j["weights_sha256"] == sha, (j["weights_sha256"], sha)
    assert j["weights_file"] == wpath, j["weights_file"]
    assert j["arch"] == "vgg16", j["arch"]
    assert sha in j["weights"]


# ---- bad input --------------------------------------------------------------------------------

def make_bad(label, args, expect, setup=None):
    def fn():
        d = fresh_dir("bad_" + label)
        if setup:
            setup(d)
        before = set(os.listdir(d))
        r = run(args, d, timeout=120)
        err = r.stderr.strip()
        lines = err.splitlines()
        assert r.returncode not in (0, 130), f"exit {r.returncode}"
        assert r.returncode > 0, f"exit {r.returncode} (crash?)"
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err[:500]!r}"
        assert lines[0].startswith("preimage: error: "), lines[0]
        for s in expect:
            assert s in lines[0], f"'{s}' not in message: {lines[0]}"
        assert r.stdout == "", f"stdout: {r.stdout!r}"
        assert not os.path.exists(os.path.join(d, "out.png")), "output file written"
        extra = sorted(set(os.listdir(d)) - before)
        assert not extra, f"stray files {extra}"
        return lines[0][:110]
    fn.__name__ = "bad_" + label
    return fn


def _write(name, data):
    def setup(d):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return setup


def _unreadable(d):
    p = os.path.join(d, "secret.png")
    shutil.copy(BRICK, p)
    os.chmod(p, 0)


_o = ["--out", "out.png"]
_t = ["texture", "--input", BRICK, "--iters", "2", "--size", "48"] + _o
_all_layers = ["relu1_1", "pool1", "relu3_4", "relu5_4"]
BAD = [
    ("unknown_layer", _t + ["--layers", "relu1_1,relu9_9"], ["relu9_9"] + _all_layers),
    ("unknown_layer_visualize", ["visualize", "--layers", "conv6_1", "--channel", "0"] + _o,
     ["conv6_1"] + _all_layers),
    ("missing_image", ["texture", "--input", "nope.png"] + _o, ["--input", "nope.png"]),
    ("missing_style_image", ["style", "--input", BRICK, "--style", "nope.jpg"] + _o,
     ["--style", "nope.jpg"]),
    ("non_image_file", ["invert", "--input", "fake.png"] + _o, ["--input", "fake.png"],
     _write("fake.png", b"this is not an image\n")),
    ("truncated_image", ["caricature", "--input", "cut.png"] + _o, ["--input", "cut.png"],
     _write("cut.png", open(BRICK, "rb").read()[:3000])),
    ("directory_as_image", ["dream", "--input", "."] + _o, ["--input", "'.'"]),
    ("bad_init_image", _t + ["--init", "nope.png"], ["--init", "nope.png"]),
    ("size_zero", ["texture", "--input", BRICK, "--size", "0"] + _o, ["--size", "'0'"]),
    ("size_negative", ["invert", "--input", BRICK, "--size", "-3"] + _o, ["--size", "'-3'"]),
    ("size_text", ["style", "--input", BRICK, "--style", GRAVEL, "--size", "abc"] + _o,
     ["--size", "'abc'"]),
    ("missing_weights", _t + ["--weights", "missing.h5"], ["--weights", "missing.h5"]),
    ("bad_weights_file", _t + ["--weights", "w.h5"], ["--weights", "w.h5"],
     _write("w.h5", b"not hdf5")),
    # The CLI rehearses every HDF5 read in a child process (preimage/hdf5_probe.h): a file that
    # crashes HDF5 gives one error naming it instead of a segfault.
    ("weights_crash_in_hdf5", _t + ["--weights", "w.h5"],
     ["--weights", "w.h5", "the HDF5 library crashed reading it"],
     _write("w.h5", read_bytes(os.path.join(HDF5_CRASH, "weights_h5hg_read_0fce5fac.h5")))),
    ("checkpoint_crash_in_hdf5", _t + ["--resume"],
     ["out.png.stage0.ckpt.h5", "the HDF5 library crashed reading it"],
     _write("out.png.stage0.ckpt.h5",
            read_bytes(os.path.join(HDF5_CRASH, "checkpoint_h5hg_read_047f594c.h5")))),
    ("index_crash_in_hdf5", ["index", "verify", "idx.h5"],
     ["idx.h5", "the HDF5 library crashed reading it"],
     _write("idx.h5", read_bytes(os.path.join(HDF5_CRASH, "index_h5hg_read_06719824.h5")))),
    ("channel_and_class", ["visualize", "--layers", "relu2_1", "--channel", "1", "--class", "2"]
     + _o, ["--channel", "--class"]),
    ("class_on_conv_layer", ["visualize", "--layers", "relu2_1", "--class", "2"] + _o,
     ["--class", "relu2_1"]),
    ("channel_out_of_range", ["visualize", "--layers", "relu1_1", "--channel", "64"] + _o,
     ["--channel 64", "relu1_1", "64 channels"]),
    ("neuron_without_channel", ["visualize", "--layers", "relu1_1", "--neuron", "1,1"] + _o,
     ["--neuron", "--channel"]),
    ("unknown_flag", _t + ["--bogus", "1"], ["--bogus"]),
    ("flag_of_other_command", _t + ["--style", GRAVEL], ["--style"]),
    ("missing_flag_value", _t + ["--iters"], ["--iters"]),
    ("bad_number", _t[:2] + [BRICK, "--iters", "ten"] + _o, ["--iters", "ten"]),
    ("stray_argument", _t + ["extra"], ["extra"]),
    ("out_not_png", ["texture", "--input", BRICK, "--out", "out.jpg"], ["--out", "out.jpg"]),
    ("out_dir_missing", ["texture", "--input", BRICK, "--out", "no/such/dir/out.png"],
     ["--out", "no/such/dir"]),
    ("missing_out", ["texture", "--input", BRICK], ["--out"]),
    ("resume_without_checkpoint", _t + ["--resume"], ["--resume", "out.png.stage0.ckpt.h5"]),
    ("unknown_command", ["synthesize", "--input", BRICK] + _o, ["synthesize"]),
    ("memory_refusal", _t[:-4] + ["--size", "60000"] + _o,
     ["estimated peak memory", "GiB", "60000x60000", "smaller --size", "--layers", "--history"]),
    ("memory_refusal_invert", ["invert", "--input", BRICK, "--size", "60000"] + _o,
     ["estimated peak memory", "smaller --size"]),
    ("memory_refusal_visualize", ["visualize", "--layers", "relu1_1", "--channel", "0",
                                  "--size", "60000"] + _o, ["estimated peak memory"]),
]
if os.geteuid() != 0:  # root reads anything
    BAD.append(("unreadable_image", ["texture", "--input", "secret.png"] + _o,
                ["--input", "secret.png"], _unreadable))
for _b in BAD:
    case(make_bad(*_b))


@case
def bad_resume_with_other_settings():
    d = fresh_dir("bad_resume_settings")
    cmd = ["texture", "--input", BRICK, "--size", "48", "--iters", "5", "--layers", "relu1_1",
           "--out", "out.png", "--quiet"]
    r = run(cmd, d, env=dict(ENV, PREIMAGE_TEST_INTERRUPT_AT="2"))
    assert r.returncode == 130, r.stderr
    before = {f: read_bytes(os.path.join(d, f)) for f in os.listdir(d)}
    for extra, expect in ((["--tv", "1"], "--tv"), (["--seed", "3"], "--seed")):
        r = run(cmd + ["--resume"] + extra, d)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert expect in lines[0] and "--resume" in lines[0], lines[0]
    r = run(["invert"] + cmd[1:] + ["--resume"], d)
    assert r.returncode == 1 and "texture" in r.stderr, r.stderr
    after = {f: read_bytes(os.path.join(d, f)) for f in os.listdir(d)}
    assert before == after, "a refused resume changed the files"


# ---- self-description (issue 19): --help, --version, --json, sidecar provenance ---------------

def sha256(path):
    return hashlib.sha256(read_bytes(path)).hexdigest()


@case
def help_for_every_command():
    # The list comes from the binary's own registry, so a new subcommand cannot be missed.
    d = fresh_dir("help")
    r = run(["commands"], d)
    assert r.returncode == 0, r.stderr
    names = r.stdout.split("\n")[:-1]
    assert len(names) >= 20 and "texture" in names and "forward" in names and "search" in names
    top = run(["--help"], d)
    assert top.returncode == 0 and "usage" in top.stdout and not top.stderr, top.stderr
    for name in names:
        for flag in ("--help", "-h"):
            h = run(name.split() + [flag], d)
            assert h.returncode == 0, f"{name} {flag}: exit {h.returncode}: {h.stderr}"
            assert "usage" in h.stdout.lower() and not h.stderr, f"{name} {flag}: {h.stderr!r}"
        # Every flag of every command: a line with its help text and its default (or
        # "required"), and every flag the line names is one the command accepts.
        flags = [x.strip() for x in h.stdout.split("options:\n", 1)[-1].splitlines()]
        assert flags and all(f.startswith("--") for f in flags), f"{name}: {h.stdout!r}"
        for line in flags:
            m = re.match(r"--[\w-]+( \S+)?\s{2,}\S.*\((default: .+|required)\)$", line) or \
                re.match(r"--[\w-]+ \S+ \S.*\((default: .+|required)\)$", line)
            assert m, f"{name} --help: a flag lacks a help text or a default: {line!r}"
        # The parser takes flags in order: past all the listed ones, only the bogus one fails.
        given = [line.split()[0] + "=1" for line in flags]
        probe = run(name.split() + given + ["--bogus-flag"], d)
        assert "unknown flag --bogus-flag" in probe.stderr, \
            f"{name}: --help names a flag the command refuses: {probe.stderr!r}"
    # Defaults shown are the recipes' own (preimage/recipes.h), per command.
    for name, flag, default in (("texture", "--iters", "100"), ("invert", "--iters", "200"),
                                ("invert", "--tv", "5"), ("style", "--init", "input"),
                                ("style", "--content-layers", "relu4_2"),
                                ("dream", "--octaves", "3"), ("dream", "--jitter", "8"),
                                ("visualize", "--size", "128"), ("search", "--k", "10"),
                                ("descriptor", "--representation", "hog")):
        t = run([name, "--help"], d).stdout
        line = next((x for x in t.splitlines() if x.strip().startswith(flag + " ")), "")
        assert line.endswith(f"(default: {default})"), f"{name} --help: {flag}: {line!r}"
    return f"{len(names)} commands"


@case
def version_prints_the_commit():
    d = fresh_dir("version")
    r = run(["--version"], d)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0] == "preimage" and words[2] == "(commit", r.stdout
    commit = words[3].rstrip(")")
    if commit == "unknown":
        return "not a git checkout"
    g = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", commit + "^{commit}"],
                       capture_output=True)
    assert g.returncode != 0 or len(commit) >= 7, commit
    return commit


@case
def json_result_for_every_recipe_command():
    d = fresh_dir("json")
    for name, cmd in COMMANDS.items():
        r = run(cmd + ["--out", name + ".png", "--quiet", "--json"], d)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        j = json.loads(r.stdout)
        assert j["command"] == name and j["output"] == name + ".png", name
        with open(os.path.join(d, name + ".png.json")) as f:
            assert json.load(f) == j, f"{name}: --json differs from the sidecar"
    r = run(["forward", "--layers", "relu1_1,relu2_1", "--json"], d)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert [x["layer"] for x in j["layers"]] == ["relu1_1", "relu2_1"] and j["commit"]
    r = run(["descriptor", "--input", BRICK, "--size", "48", "--dump", "d.txt", "--quiet",
             "--json"], d)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["input_sha256"] == sha256(BRICK)
    # Commands whose result is the files they write: --json lists them.
    r = run(["filters", "--layer", "conv1_1", "--out", "f.png", "--json"], d)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["command"] == "filters" and j["outputs"] == ["f.png"] and j["exit_code"] == 0, j
    assert os.path.isfile(os.path.join(d, "f.png"))


@case
def sidecar_records_provenance():
    d = fresh_dir("provenance")
    cmd = COMMANDS["style"] + ["--out", "out.png", "--quiet"]
    r = run(cmd, d)
    assert r.returncode == 0, r.stderr
    j = load_sidecar(os.path.join(d, "out.png"))
    v = run(["--version"], d).stdout.split()
    assert j["version"] == v[1] and j["commit"] == v[3].rstrip(")"), (j["version"], j["commit"])
    assert j["argv"][1:] == cmd, j["argv"]
    assert [(i["flag"], i["sha256"]) for i in j["inputs"]] == \
        [("--style", sha256(GRAVEL)), ("--input", sha256(ASTRONAUT))], j["inputs"]


# ---- neural-style parity (issue 19) -----------------------------------------------------------

_sty = ["style", "--input", ASTRONAUT, "--size", "48", "--iters", "4", "--layers",
        "relu1_1,relu2_1", "--quiet"]


@case
def style_content_layers():
    d = fresh_dir("style_content_layers")
    r = run(_sty + ["--style", GRAVEL, "--content-layers", "relu2_1,relu3_1:0.5",
                    "--out", "out.png"], d)
    assert r.returncode == 0, r.stderr
    j = load_sidecar(os.path.join(d, "out.png"))
    assert j["terms"][:2] == ["content:relu2_1", "content:relu3_1"], j["terms"]


@case
def style_several_images_and_blend_weights():
    d = fresh_dir("style_blend")
    a = run(_sty + ["--style", GRAVEL, "--out", "a.png"], d)
    # A second style image at blend weight 0 changes nothing: the same bytes.
    b = run(_sty + ["--style", GRAVEL + "," + BRICK, "--style-blend-weights", "1,0",
                    "--out", "b.png"], d)
    c = run(_sty + ["--style", GRAVEL + "," + BRICK, "--out", "c.png"], d)
    for r in (a, b, c):
        assert r.returncode == 0, r.stderr
    assert read_bytes(os.path.join(d, "a.png")) == read_bytes(os.path.join(d, "b.png"))
    assert read_bytes(os.path.join(d, "a.png")) != read_bytes(os.path.join(d, "c.png"))
    jc = load_sidecar(os.path.join(d, "c.png"))
    assert "style1:relu1_1" in jc["terms"] and "style2:relu2_1" in jc["terms"], jc["terms"]
    r = run(_sty + ["--style", GRAVEL + "," + BRICK, "--style-blend-weights", "1,2,3",
                    "--out", "e.png"], d)
    assert r.returncode == 1 and "--style-blend-weights" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(d, "e.png"))


@case
def style_scale_resizes_the_style_image():
    d = fresh_dir("style_scale")
    runs = {}
    for scale in ("1", "0.5"):
        r = run(_sty + ["--style", GRAVEL, "--style-scale", scale, "--out", scale + ".png"], d)
        assert r.returncode == 0, r.stderr
        runs[scale] = read_bytes(os.path.join(d, scale + ".png"))
    # Default is 1: the style image's long side is the output's.
    r = run(_sty + ["--style", GRAVEL, "--out", "default.png"], d)
    assert read_bytes(os.path.join(d, "default.png")) == runs["1"]
    assert runs["0.5"] != runs["1"], "--style-scale had no effect"
    r = run(_sty + ["--style", GRAVEL, "--style-scale", "0", "--out", "z.png"], d)
    assert r.returncode == 1 and "--style-scale" in r.stderr, r.stderr


@case
def style_save_every_writes_numbered_files():
    d = fresh_dir("style_save_every")
    r = run(_sty + ["--style", GRAVEL, "--save-every", "2", "--out", "out.png"], d)
    assert r.returncode == 0, r.stderr
    for k in (2, 4):
        assert png_size(os.path.join(d, f"out_{k}.png")) == (48, 48), os.listdir(d)
    assert not leftovers(d, ["out.png", "out.png.json", "out_2.png", "out_4.png"])


@case
def init_random_is_noise():
    d = fresh_dir("init_random")
    cmd = COMMANDS["texture"] + ["--quiet"]
    a = run(cmd + ["--init", "random", "--out", "a.png"], d)
    b = run(cmd + ["--init", "noise", "--out", "b.png"], d)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert read_bytes(os.path.join(d, "a.png")) == read_bytes(os.path.join(d, "b.png"))


# ---- driver -----------------------------------------------------------------------------------

def main():
    os.makedirs(WORK, exist_ok=True)
    assert os.access(BIN, os.X_OK), f"{BIN} is not executable"
    passed = failed = 0
    t_all = time.time()
    only = os.environ.get("CLI_TEST_ONLY", "")  # run only the cases whose name contains this
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

#!/usr/bin/env python3
"""`preimage invert --representation hog|dsift` and `preimage descriptor` end to end.

usage: test_hog_cli.py PATH/TO/preimage SCRATCH_DIR

- HOG (Dalal-Triggs) inversion of examples/astronaut.jpg at 80 px (200 L-BFGS iterations, the
  default TV prior): the HOG-space error ||HOG(x) - HOG(x0)|| / ||HOG(x0)|| of the result is below
  10% of the initial (noise) image's, as recorded in the sidecar, and recomputed independently
  from the written 8-bit PNG with `preimage descriptor` (below 15% there: the PNG is quantized).
- UoCTTI and dense-SIFT inversions run and reduce their errors (below 25% of the start).
- Bad input (--cell 0, an image smaller than one block, unknown --representation /
  --hog-variant / --binning, UoCTTI with --bins 9, --layers with hog, --block with dsift, a
  descriptor flag without --representation, descriptor without --dump): one line on stderr naming
  the flag or file, a non-zero exit, no output file and no stray temporary file.
Plain asserts; one line per case; exits non-zero on failure.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

if len(sys.argv) != 3:
    sys.exit("usage: test_hog_cli.py PATH/TO/preimage SCRATCH_DIR")
BIN = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "astronaut.jpg")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)

_cases = []


def case(fn):
    _cases.append(fn)
    return fn


def run(args, timeout=300):
    return subprocess.run([BIN] + list(args), cwd=WORK, capture_output=True, text=True,
                          timeout=timeout)


def write_png(path, w, h):
    raw = b"".join(b"\x00" + bytes((x * 37 + y * 11) % 256 for x in range(w) for _ in range(3))
                   for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def read_dump(path):
    with open(path) as f:
        f.readline()
        return [float(t) for t in f.read().split()]


def rel_error(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return (num / den) ** 0.5


def invert(name, *flags):
    out = os.path.join(WORK, name + ".png")
    r = run(["invert", "--input", SRC, "--size", "80", "--device", "cpu", "--out", out] +
            list(flags))
    assert r.returncode == 0, r.stderr
    with open(out + ".json") as f:
        side = json.load(f)
    res = side["results"]
    return out, res


@case
def hog_inversion_reduces_error_below_10_percent():
    out, res = invert("hog", "--representation", "hog")
    e0 = res["initial_descriptor_error"]
    e1 = res["normalized_reconstruction_error"]["hog"]
    assert res["representation"] == "hog" and res["descriptor_shape"] == "1x36x9x9", res
    assert e1 < 0.1 * e0, f"HOG error {e1} not below 10% of the initial {e0}"
    # Independently, from the written PNG against the input at the same size.
    a, b = os.path.join(WORK, "out.txt"), os.path.join(WORK, "ref.txt")
    r = run(["descriptor", "--input", out, "--dump", a, "--quiet"])
    assert r.returncode == 0, r.stderr
    r = run(["descriptor", "--input", SRC, "--size", "80", "--dump", b, "--quiet"])
    assert r.returncode == 0, r.stderr
    e_png = rel_error(read_dump(a), read_dump(b))
    assert e_png < 0.15 * e0, f"HOG error of the PNG {e_png} vs initial {e0}"
    return f"initial {e0:.4f} -> final {e1:.4f} ({100 * e1 / e0:.1f}%), PNG {e_png:.4f}"


@case
def uoctti_inversion_runs():
    _, res = invert("uoctti", "--representation", "hog", "--hog-variant", "uoctti", "--iters", "80")
    e0, e1 = res["initial_descriptor_error"], res["normalized_reconstruction_error"]["hog-uoctti"]
    assert e1 < 0.25 * e0, (e0, e1)
    return f"initial {e0:.4f} -> final {e1:.4f}"


@case
def dsift_inversion_runs():
    _, res = invert("dsift", "--representation", "dsift", "--step", "2", "--iters", "80")
    e0, e1 = res["initial_descriptor_error"], res["normalized_reconstruction_error"]["dsift"]
    assert res["descriptor_shape"] == "1x128x9x9", res
    assert e1 < 0.25 * e0, (e0, e1)
    return f"initial {e0:.4f} -> final {e1:.4f}"


def expect_error(args, needle, out="bad.png"):
    path = os.path.join(WORK, out)
    before = set(os.listdir(WORK))
    r = run(args)
    assert r.returncode != 0, f"exit 0 for {args}"
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], r.stderr
    assert not os.path.exists(path), f"{path} written"
    after = set(os.listdir(WORK))
    assert after <= before, f"left behind: {after - before}"
    return lines[0]


def bad_invert(needle, *flags, src=SRC):
    return expect_error(["invert", "--input", src, "--size", "80", "--device", "cpu", "--out",
                         os.path.join(WORK, "bad.png")] + list(flags), needle)


@case
def bad_cell_zero():
    return bad_invert("--cell", "--representation", "hog", "--cell", "0")


@case
def image_smaller_than_one_block():
    tiny = os.path.join(WORK, "tiny.png")
    write_png(tiny, 12, 40)
    return expect_error(["invert", "--input", tiny, "--representation", "hog", "--out",
                         os.path.join(WORK, "bad.png")], "smaller than one block")


@case
def unknown_representation():
    return bad_invert("--representation", "--representation", "sift")


@case
def unknown_variant():
    return bad_invert("--hog-variant", "--representation", "hog", "--hog-variant", "fhog")


@case
def unknown_binning():
    return bad_invert("--binning", "--representation", "hog", "--binning", "fuzzy")


@case
def uoctti_bins():
    return bad_invert("18 signed", "--representation", "hog", "--hog-variant", "uoctti", "--bins",
                      "9")


@case
def layers_with_hog():
    return bad_invert("--layers", "--representation", "hog", "--layers", "relu3_1")


@case
def block_with_dsift():
    return bad_invert("--block", "--representation", "dsift", "--block", "2")


@case
def descriptor_flag_without_representation():
    return bad_invert("--cell", "--cell", "8")


@case
def descriptor_without_dump():
    return expect_error(["descriptor", "--input", SRC], "--dump")


failed = 0
for fn in _cases:
    try:
        msg = fn()
        print(f"PASS {fn.__name__}: {msg}")
    except Exception as e:  # noqa: BLE001 - report every case
        failed += 1
        print(f"FAIL {fn.__name__}: {e}")
print(f"{len(_cases) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

#!/usr/bin/python3
"""Fault injection with real processes: SIGKILL loops, a file-size limit, a full directory.

usage: test_fault_injection.py PATH/TO/preimage SCRATCH_DIR [--kills N]

1. kill loops (N kills each, default 50): `preimage texture ... --save-every 1` rewrites its PNG and its
   HDF5 checkpoint after every iteration; each run is SIGKILLed after a random delay (seeded, so a
   failure replays). After every kill the PNG at --out must be absent or a complete PNG that
   decodes, and the checkpoint absent or an HDF5 file whose datasets all read back; every 10th kill
   the run is resumed (--resume) and must finish. Half the runs start fresh, half resume, so kills
   land in first writes and in overwrites of an existing file alike. Then `preimage index add`
   (6 new images onto 4) SIGKILLed N times: each time the index must hold exactly the old or the
   new entry count and pass `index verify`.
2. file-size limit: RLIMIT_FSIZE set below the PNG's size -> exit code 1, one error line naming
   the output, no file at --out and no temporary file left behind.
3. full directory: a 64 KiB tmpfs (needs root and mount permission; reported as skipped where the
   mount is refused) -> exit code 1, an error naming the output, no partial file.

Needs /usr/bin/python3 with h5py and PIL (Debian python3-h5py, python3-pil).
"""
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import h5py
from PIL import Image

if len(sys.argv) < 3:
    sys.exit(__doc__)
BIN = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
KILLS = int(sys.argv[sys.argv.index("--kills") + 1]) if "--kills" in sys.argv else 50
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRICK = os.path.join(ROOT, "examples", "brick.png")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("PREIMAGE_TEST_")}
ENV["OMP_NUM_THREADS"] = "1"
BASE = ["texture", "--input", BRICK, "--size", "40", "--layers", "relu1_1,relu2_1", "--quiet"]

failures = []


def fresh(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def check_png(path):
    with Image.open(path) as im:
        im.load()  # decodes every row: a truncated file raises
        assert im.size == (40, 40), im.size


def check_h5(path):
    with h5py.File(path, "r") as f:
        def visit(_, obj):
            if isinstance(obj, h5py.Dataset):
                obj[()]
        f.visititems(visit)
        assert len(f.keys()) > 0, "empty checkpoint"


def strays(d):
    return [n for n in os.listdir(d) if ".tmp." in n]


def kill_loop():
    d = fresh("kill_loop")
    out = os.path.join(d, "out.png")
    ckpt = out + ".stage0.ckpt.h5"
    rng = random.Random(20261127)
    pngs = ckpts = resumed = 0
    t0 = time.time()
    for k in range(KILLS):
        args = BASE + ["--iters", "400", "--save-every", "1", "--out", out]
        if k % 2 == 1 and os.path.exists(ckpt):
            args.append("--resume")
        p = subprocess.Popen([BIN] + args, cwd=d, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            if os.path.exists(out):
                check_png(out)
                pngs += 1
            if os.path.exists(ckpt):
                check_h5(ckpt)
                ckpts += 1
        except Exception as e:  # noqa: BLE001 - any failure to open is the finding
            failures.append("kill %d: %s" % (k, e))
            return
        if k % 10 == 9 and os.path.exists(ckpt):
            r = subprocess.run([BIN] + BASE + ["--iters", "3", "--out", out, "--resume"], cwd=d,
                               env=ENV, capture_output=True, text=True, timeout=300)
            # A checkpoint past iteration 3 is already done: both finish cleanly.
            if r.returncode != 0:
                failures.append("kill %d: --resume after the kill failed: %s" %
                                (k, r.stderr.strip()))
                return
            check_png(out)
            resumed += 1
    left = len(strays(d))
    # The next write to the same outputs removes the temporaries of the killed writers.
    r = subprocess.run([BIN] + BASE + ["--iters", "2", "--save-every", "1", "--out", out], cwd=d,
                       env=ENV, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or strays(d):
        failures.append("kill loop: after a clean run: exit %d, temporaries %s" %
                        (r.returncode, strays(d)))
        return
    print("PASS kill_loop: %d SIGKILLs during PNG + checkpoint writes; %d times a PNG, %d times a "
          "checkpoint was present and complete; %d resumes finished; %d temporaries of killed "
          "writers, all removed by the next run (%.0f s)" %
          (KILLS, pngs, ckpts, resumed, left, time.time() - t0))


def index_entries(idx, d):
    r = subprocess.run([BIN, "index", "info", idx, "--json"], cwd=d, env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, "index info: " + r.stderr.strip()
    import json
    return json.loads(r.stdout)["entries"]


def index_kill_loop():
    """SIGKILL during `index add`: the index must hold exactly the old or the new entries."""
    d = fresh("index_kill_loop")
    old_dir, new_dir = os.path.join(d, "old"), os.path.join(d, "new")
    os.makedirs(old_dir)
    os.makedirs(new_dir)
    src = Image.open(BRICK).convert("RGB")
    rng = random.Random(11)
    for i in range(10):
        x, y = rng.randrange(0, 200), rng.randrange(0, 200)
        src.crop((x, y, x + 56, y + 56)).save(os.path.join(old_dir if i < 4 else new_dir,
                                                           "crop%02d.png" % i))
    idx = os.path.join(d, "idx.h5")
    base = ["--layers", "pool1", "--size", "48", "--quiet"]
    r = subprocess.run([BIN, "index", "build", old_dir, "--out", idx] + base, cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        failures.append("index_kill_loop: build failed: " + r.stderr.strip())
        return
    pristine = open(idx, "rb").read()
    n_old, n_new = 4, 10
    # Control: an add that is not killed succeeds; its duration sets the range of kill times.
    t_add = time.time()
    r = subprocess.run([BIN, "index", "add", idx, new_dir, "--quiet"], cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=300)
    t_add = time.time() - t_add
    if r.returncode != 0 or index_entries(idx, d) != n_new:
        failures.append("index_kill_loop: an uninterrupted add failed: " + r.stderr.strip())
        return
    counts = {n_old: 0, n_new: 0}
    t0 = time.time()
    for k in range(KILLS):
        with open(idx + ".restore", "wb") as f:
            f.write(pristine)
        os.replace(idx + ".restore", idx)
        p = subprocess.Popen([BIN, "index", "add", idx, new_dir, "--quiet"], cwd=d, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.2) * t_add)
        p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            n = index_entries(idx, d)
            assert n in (n_old, n_new), "index holds %d entries (old %d, new %d)" % (n, n_old,
                                                                                     n_new)
            v = subprocess.run([BIN, "index", "verify", idx], cwd=d, env=ENV,
                               capture_output=True, text=True, timeout=120)
            assert v.returncode == 0, "index verify: " + v.stderr.strip()
        except AssertionError as e:
            failures.append("index_kill_loop, kill %d: %s" % (k, e))
            return
        counts[n] += 1
    print("PASS index_kill_loop: %d SIGKILLs during `index add`; the index held the old entries "
          "%d times and the new ones %d times, verify passed every time (an uninterrupted add: "
          "%.2f s; %.0f s)" % (KILLS, counts[n_old], counts[n_new], t_add, time.time() - t0))


def limit_fsize(limit):
    def fn():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return fn


def file_size_limit():
    d = fresh("fsize")
    out = os.path.join(d, "out.png")
    r = subprocess.run([BIN] + BASE + ["--iters", "2", "--out", out], cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=300, preexec_fn=limit_fsize(1024))
    err = r.stderr.strip().splitlines()
    try:
        assert r.returncode == 1, "exit %d (%s)" % (r.returncode, r.stderr[-300:])
        assert err and "out.png" in err[-1], err
        assert not os.path.exists(out), "partial output left at --out"
        assert not strays(d), "temporary files left: %s" % strays(d)
    except AssertionError as e:
        failures.append("file_size_limit: %s" % e)
        return
    print("PASS file_size_limit: %s" % err[-1])


def full_directory():
    d = fresh("full")
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                       capture_output=True, text=True)
    if m.returncode != 0:
        print("SKIPPED full_directory: cannot mount a tmpfs here (%s)" % m.stderr.strip())
        return
    try:
        # Fill it so that even a small PNG does not fit.
        fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        out = os.path.join(mnt, "out.png")
        r = subprocess.run([BIN] + BASE + ["--iters", "2", "--out", out], cwd=d, env=ENV,
                           capture_output=True, text=True, timeout=300)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 1, "exit %d (%s)" % (r.returncode, r.stderr[-300:])
        assert err and "out.png" in err[-1], err
        assert not os.path.exists(out), "partial output left at --out"
        assert not strays(mnt), "temporary files left: %s" % strays(mnt)
        print("PASS full_directory: %s" % err[-1])
    except AssertionError as e:
        failures.append("full_directory: %s" % e)
    finally:
        subprocess.run(["umount", mnt])


os.makedirs(WORK, exist_ok=True)
kill_loop()
index_kill_loop()
file_size_limit()
full_directory()
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("all fault-injection checks passed")

#!/usr/bin/python3
"""Fault injection with real processes: SIGKILL loops, a file-size limit, a full directory.

usage: test_fault_injection.py PATH/TO/preimage SCRATCH_DIR [--kills N] [--approx-kills M]

1. kill loops (N kills each, default 50; under PREIMAGE_SANITIZER_RUN=1 at most 20, and 6 for
   M): `preimage texture ... --save-every 1` rewrites its PNG and its
   HDF5 checkpoint after every iteration; each run is SIGKILLed after a random delay (seeded, so a
   failure replays). After every kill the PNG at --out must be absent or a complete PNG that
   decodes, and the checkpoint absent or an HDF5 file whose datasets all read back; every 10th kill
   the run is resumed (--resume) and must finish. Half the runs start fresh, half resume, so kills
   land in first writes and in overwrites of an existing file alike. Then `preimage index add`
   (6 new images onto 4) SIGKILLed N times for the exact index and M times (default 15) each for
   `--index-type hnsw` and `ivfpq` (manifest idx.h5 + segment files in idx.h5.d): each time the
   index must hold exactly the old or the new entry count, pass `index verify` and answer a
   `search` with the query first (every kill for hnsw/ivfpq, every 10th for exact). For hnsw and
   ivfpq one kill in three lands at a random moment of a plain add and two in the write phase,
   stretched by the test hook PREIMAGE_TEST_INDEX_WRITE_DELAY_MS: while the segment temporary is
   written or after its rename, and while the manifest is written; the loop counts what each kill
   left (nothing, a segment temporary, an orphan segment, a manifest temporary) and fails if no
   kill hit the write phase. A committed add is undone by restoring the index file and its
   segment directory; the leftovers of killed adds stay for the next add, and after the loop an
   uninterrupted add must succeed (the stale lock file does not block it), verify, and leave no
   temporary and no orphan (hnsw/ivfpq: exactly the base and two segment files).
2. file-size limit: RLIMIT_FSIZE set below the PNG's size -> exit code 1, one error line naming
   the output, no file at --out and no temporary file left behind.
3. full directory: a 64 KiB tmpfs (needs root and mount permission; reported as skipped where the
   mount is refused) -> exit code 1, an error naming the output, no partial file.

Needs /usr/bin/python3 with h5py and PIL (Debian python3-h5py, python3-pil).
"""
import glob
import json
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
APPROX_KILLS = (int(sys.argv[sys.argv.index("--approx-kills") + 1])
                if "--approx-kills" in sys.argv else 15)
# Under a sanitizer (.ci/asan.sh sets PREIMAGE_SANITIZER_RUN=1) every loop still runs, instrumented,
# with fewer kills: the Release run's counts give the statistics, this one the memory checks.
if os.environ.get("PREIMAGE_SANITIZER_RUN") == "1":
    KILLS, APPROX_KILLS = min(KILLS, 20), min(APPROX_KILLS, 6)
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
    return json.loads(r.stdout)["entries"]


def copy_index(src, dst):
    """An index file and, for the approximate types, its directory of segment files (the
    manifest idx.h5 names the files of idx.h5.d; one without the other is not an index)."""
    shutil.rmtree(dst + ".d", ignore_errors=True)
    if os.path.isdir(src + ".d"):
        shutil.copytree(src + ".d", dst + ".d")
    shutil.copyfile(src, dst + ".restore")
    os.replace(dst + ".restore", dst)


def index_leftovers(idx):
    """Files a killed writer can leave: temporaries of the index file and of the segment files,
    and segment files that the committed manifest does not name (orphans)."""
    tmps = glob.glob(idx + ".tmp.*") + glob.glob(idx + ".d/*.tmp.*")
    orphans = []
    if os.path.isdir(idx + ".d"):
        with h5py.File(idx, "r") as f:
            named = {f.attrs["base_file"]} | set(f["segment_files"][:])
        named = {n.decode() if isinstance(n, bytes) else n for n in named}
        orphans = [os.path.join(idx + ".d", n) for n in os.listdir(idx + ".d")
                   if n not in named and ".tmp." not in n]
    return tmps, orphans


def index_kill_loop(index_type, kills, search_every):
    """SIGKILL during `index add`: the index must hold exactly the old or the new entries, pass
    `index verify` and answer a search (every search_every-th kill); a later add must clean up."""
    name = "index_kill_loop" + ("" if index_type == "exact" else "_" + index_type)
    d = fresh(name)
    old_dir, new_dir = os.path.join(d, "old"), os.path.join(d, "new")
    os.makedirs(old_dir)
    os.makedirs(new_dir)
    src = Image.open(BRICK).convert("RGB")
    rng = random.Random(11)
    for i in range(10):
        x, y = rng.randrange(0, 200), rng.randrange(0, 200)
        src.crop((x, y, x + 56, y + 56)).save(os.path.join(old_dir if i < 4 else new_dir,
                                                           "crop%02d.png" % i))
    query = os.path.join(old_dir, "crop00.png")
    idx = os.path.join(d, "idx.h5")
    pristine = os.path.join(d, "pristine.h5")
    base = ["--layers", "pool1", "--size", "48", "--quiet", "--index-type", index_type]
    r = subprocess.run([BIN, "index", "build", old_dir, "--out", idx] + base, cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        failures.append("%s: build failed: %s" % (name, r.stderr.strip()))
        return
    copy_index(idx, pristine)
    approx = index_type != "exact"
    n_old, n_new = 4, 10
    # The approximate types' write phase (segment temporary, segment renamed but not yet named by
    # the manifest, manifest temporary) lasts milliseconds. So of every three kills one lands at a
    # random moment of a plain add, and two in adds whose write phase the test hook
    # PREIMAGE_TEST_INDEX_WRITE_DELAY_MS stretches (DELAY ms asleep while the segment temporary is
    # open, DELAY ms more after its rename, before the manifest is written): one 0..2*DELAY after
    # the segment temporary appears, one DELAY + 0..10 ms after the renamed segment appears, i.e.
    # while the manifest is written.
    delay = 0.25
    slow = dict(ENV, PREIMAGE_TEST_INDEX_WRITE_DELAY_MS=str(int(delay * 1000)))

    def add(env):
        return subprocess.Popen([BIN, "index", "add", idx, new_dir, "--quiet"], cwd=d, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_for_new_file(p, before, temporary):
        t = time.time()
        while p.poll() is None and time.time() - t < 60:
            if any((".tmp." in f) == temporary for f in set(os.listdir(idx + ".d")) - before):
                return
            time.sleep(0.001)

    # Control: an add that is not killed succeeds; its duration sets the range of kill times.
    t_add = time.time()
    p = add(ENV)
    _, err = p.communicate(timeout=300)
    t_add = time.time() - t_add
    if p.returncode != 0 or index_entries(idx, d) != n_new:
        failures.append("%s: an uninterrupted add failed: %s" % (name, err.strip()))
        return
    copy_index(pristine, idx)
    counts = {n_old: 0, n_new: 0}
    # What each kill left behind (approximate types): only the index's own files are compared.
    seen = {"nothing": 0, "a segment temporary": 0, "an orphan segment": 0,
            "a manifest temporary": 0}
    searches = 0
    t0 = time.time()
    for k in range(kills):
        mode = k % 3 if approx else 0
        before = set(os.listdir(idx + ".d")) if approx else set()
        left_before = sum(index_leftovers(idx), [])
        p = add(slow if mode else ENV)
        if mode == 0:
            time.sleep(rng.uniform(0.05, 1.2) * t_add)
        elif mode == 1:
            wait_for_new_file(p, before, temporary=True)
            time.sleep(rng.uniform(0.0, 2 * delay))
        else:
            wait_for_new_file(p, before, temporary=False)
            time.sleep(delay + rng.uniform(0.0, 0.01))
        p.send_signal(signal.SIGKILL)
        p.communicate()
        try:
            n = index_entries(idx, d)
            assert n in (n_old, n_new), "index holds %d entries (old %d, new %d)" % (n, n_old,
                                                                                     n_new)
            v = subprocess.run([BIN, "index", "verify", idx], cwd=d, env=ENV,
                               capture_output=True, text=True, timeout=120)
            assert v.returncode == 0, "index verify: " + v.stderr.strip()
            if k % search_every == 0:
                s = subprocess.run([BIN, "search", idx, query, "-k", "3", "--json", "--quiet"],
                                   cwd=d, env=ENV, capture_output=True, text=True, timeout=120)
                assert s.returncode == 0, "search: " + s.stderr.strip()
                res = json.loads(s.stdout)["queries"][0]["results"]
                assert len(res) == 3 and res[0]["path"] == query, "search: %s" % res
                searches += 1
            if approx and n == n_old:
                tmps, orphans = index_leftovers(idx)
                tmps = set(tmps) - set(left_before)
                orphans = set(orphans) - set(left_before)
                # The latest phase reached (a manifest temporary comes with an orphan segment).
                seen["a manifest temporary" if any(not t.startswith(idx + ".d/") for t in tmps)
                     else "an orphan segment" if orphans
                     else "a segment temporary" if tmps else "nothing"] += 1
        except (AssertionError, ValueError, KeyError, OSError) as ex:
            failures.append("%s, kill %d: %s" % (name, k, ex))
            return
        counts[n] += 1
        # Leftovers of killed adds stay for the next add to clean up; a committed add is undone.
        if n == n_new:
            copy_index(pristine, idx)
    t_loop = time.time() - t0
    # Nothing a killed writer left (temporaries, orphan segments, the lock file) blocks the next
    # add, and that add removes it: exactly the base and two segments remain.
    left = len(sum(index_leftovers(idx), []))
    r = subprocess.run([BIN, "index", "add", idx, new_dir, "--quiet"], cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=300)
    v = subprocess.run([BIN, "index", "verify", idx], cwd=d, env=ENV, capture_output=True,
                       text=True, timeout=120)
    tmps, orphans = index_leftovers(idx)
    files = sorted(os.listdir(idx + ".d")) if approx else []
    if (r.returncode != 0 or index_entries(idx, d) != n_new or v.returncode != 0 or tmps or
            orphans or (approx and len(files) != 3)):
        failures.append("%s: the add after the loop: exit %d (%s), verify exit %d (%s), "
                        "temporaries %s, orphans %s, segment directory %s" %
                        (name, r.returncode, r.stderr.strip(), v.returncode, v.stderr.strip(),
                         tmps, orphans, files))
        return
    phases = ""
    if approx:
        if kills >= 3 and seen["nothing"] == counts[n_old]:
            failures.append("%s: no kill landed in the write phase (%s)" % (name, seen))
            return
        phases = " (kills that kept the old entries left: %s)" % ", ".join(
            "%s %d times" % (w, c) for w, c in seen.items())
    print("PASS %s: %d SIGKILLs during `index add`; the index held the old entries %d times%s and "
          "the new ones %d times, verify passed every time and %d searches found the query "
          "first; %d leftovers of killed adds at the end, removed by the next add, which "
          "succeeded (an uninterrupted add: %.2f s; %.0f s)" %
          (name, kills, counts[n_old], phases, counts[n_new], searches, left, t_add, t_loop))


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
index_kill_loop("exact", KILLS, 10)
index_kill_loop("hnsw", APPROX_KILLS, 1)
index_kill_loop("ivfpq", APPROX_KILLS, 1)
file_size_limit()
full_directory()
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("all fault-injection checks passed")

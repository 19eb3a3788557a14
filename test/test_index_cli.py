#!/usr/bin/python3
"""preimage index / search end to end, and crash safety of `index add` under SIGKILL.

usage: test_index_cli.py PREIMAGE_BINARY WORKDIR

1. Generates textures of five families (test/make_texture_families.py, 64x64 PNGs).
2. index build / info / verify / search (table, --json, --sheet, --crop, a directory of
   queries): each query finds its own image first and mostly its own family.
3. Errors: mismatched --layers, a corrupt index, an unknown flag, missing --out; each exits
   non-zero with one line naming the culprit.
4. Crash safety: `index add` of more images is SIGKILLed several times — at random moments of
   the extraction and, with PREIMAGE_TEST_INDEX_WRITE_DELAY_MS slowing the writer, while the new
   file is being written (detected by its temporary name appearing). After each kill the index
   opens, holds exactly the old or the new entries, and `index verify` passes; concurrent readers
   polling `index info` during the add only ever see one of the two. A final add completes.
5. Two concurrent `index add` runs: the index lock serializes them and both sets of entries land.
"""
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(args, ok=True, env=None):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if ok and p.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}\nexit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def fail(msg):
    sys.exit("FAILED: " + msg)


def entries(exe, idx):
    p = run([exe, "index", "info", idx, "--json"], ok=False)
    if p.returncode != 0:
        return None, p.stderr.strip()
    return json.loads(p.stdout)["entries"], ""


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base, more = os.path.join(work, "base"), os.path.join(work, "more")
    gen = [sys.executable, os.path.join(HERE, "make_texture_families.py")]
    run(gen + [base, "--variants", "4", "--seed", "1"])
    run(gen + [more, "--variants", "4", "--seed", "2", "--prefix", "more_"])
    idx = os.path.join(work, "idx.h5")
    common = ["--device", "cpu", "--quiet"]

    # ---- build, info, verify, search -------------------------------------------------------
    t0 = time.time()
    run([exe, "index", "build", base, "--out", idx, "--size", "64"] + common)
    build_s = time.time() - t0
    info = json.loads(run([exe, "index", "info", idx, "--json"]).stdout)
    assert info["entries"] == 20, info
    assert info["layers"] == ["pool1", "pool2"], info
    assert info["weights_identity"] == "random:0" and info["dtype"] == "float32", info
    assert "pool1 (64 channels)" in run([exe, "index", "info", idx]).stdout
    assert "ok" in run([exe, "index", "verify", idx]).stdout

    q = os.path.join(base, "dots_002.png")
    table = run([exe, "search", idx, q, "-k", "5"] + common).stdout
    first = [l for l in table.splitlines() if l.strip().startswith("1 ")][0]
    assert first.split()[-1].endswith("dots_002.png"), table
    res = json.loads(run([exe, "search", idx, base, "-k", "5", "--json"] + common).stdout)
    assert len(res["queries"]) == 20, res
    own = 0
    for qr in res["queries"]:
        fam = os.path.basename(qr["query"]).split("_")[0]
        top = qr["results"]
        if os.path.basename(top[0]["path"]) != os.path.basename(qr["query"]):
            fail(f"query {qr['query']} did not find itself first: {top[0]}")
        own += sum(os.path.basename(r["path"]).split("_")[0] == fam for r in top[1:4])
        assert all(top[i]["distance"] <= top[i + 1]["distance"] for i in range(4)), top
    if own < 0.9 * 60:
        fail(f"only {own}/60 of the top-3 neighbours (besides self) came from the query's family")
    # Independent reference: numpy brute force over the stored vectors (h5py), full-matrix
    # Frobenius distances rebuilt from the upper triangles.
    import h5py
    import numpy as np
    with h5py.File(idx, "r") as f:
        vec = f["vectors"][:].astype(np.float64)
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["paths"][:]]
        chans = list(f.attrs["channels"])

    def full(v, c):
        g = np.zeros((c, c))
        iu = np.triu_indices(c)
        g[iu] = v
        g = g + g.T - np.diag(np.diag(g))
        off = ~np.eye(c, dtype=bool)
        g[off] /= np.sqrt(2)
        return g

    for qr in res["queries"][:3]:
        qi = paths.index(os.path.abspath(qr["query"]))
        d = np.zeros(len(paths))
        o = 0
        for c in chans:
            n = c * (c + 1) // 2
            gq = full(vec[qi, o:o + n], c)
            for j in range(len(paths)):
                d[j] += np.linalg.norm(gq - full(vec[j, o:o + n], c))
            o += n
        order = np.argsort(d, kind="stable")[:5]
        for r, j in zip(qr["results"], order):
            if abs(r["distance"] - d[j]) > 2e-3:
                fail(f"search distance {r} differs from brute force {paths[j]} {d[j]}")

    sheet = os.path.join(work, "sheet.png")
    run([exe, "search", idx, q, os.path.join(base, "rings_001.png"), "-k", "3", "--sheet", sheet]
        + common)
    with open(sheet, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    cropped = json.loads(run([exe, "search", idx, q, "-k", "3", "--crop", "0.8", "--json"]
                             + common).stdout)
    assert cropped["query_crop"] == 0.8, cropped["query_crop"]
    assert os.path.basename(cropped["queries"][0]["results"][0]["path"]).startswith("dots_")

    # ---- errors -----------------------------------------------------------------------------
    def expect_error(args, *needles):
        p = run(args, ok=False)
        err = p.stderr.strip().splitlines()
        if p.returncode == 0 or not err:
            fail(f"expected an error from {' '.join(args)}")
        for n in needles:
            if n not in p.stderr:
                fail(f"error of {' '.join(args)} lacks '{n}': {p.stderr}")

    expect_error([exe, "search", idx, q, "--layers", "pool1,relu3_1"] + common,
                 "relu3_1", "pool1,pool2")
    junk = os.path.join(work, "junk.h5")
    with open(junk, "wb") as f:
        f.write(b"garbage" * 100)
    expect_error([exe, "search", junk, q] + common, "junk.h5", "not an HDF5 file")
    cut = os.path.join(work, "cut.h5")
    with open(idx, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 3])
    expect_error([exe, "index", "verify", cut], "cut.h5")
    expect_error([exe, "search", idx, q, "--bogus", "1"], "--bogus")
    expect_error([exe, "index", "build", base], "--out")
    expect_error([exe, "index", "build", base, "--out", os.path.join(work, "x.h5"), "--layers",
                  "pool1,pool9"] + common, "pool9")
    assert not os.path.exists(os.path.join(work, "x.h5"))

    # ---- crash safety -----------------------------------------------------------------------
    old_n, new_n = 20, 40
    seed = int(os.environ.get("PREIMAGE_TEST_SEED", "12345"))
    rng = random.Random(seed)
    pristine = os.path.join(work, "pristine.h5")
    shutil.copy(idx, pristine)
    # Duration of a full add (to spread the kills over it).
    timing = os.path.join(work, "timing.h5")
    shutil.copy(idx, timing)
    t0 = time.time()
    run([exe, "index", "add", timing, more] + common)
    add_s = time.time() - t0
    assert entries(exe, timing)[0] == new_n
    env = dict(os.environ, PREIMAGE_TEST_INDEX_WRITE_DELAY_MS="150")
    outcomes = []
    for trial in range(6):
        during_write = trial % 2 == 1
        proc = subprocess.Popen([exe, "index", "add", idx, more] + common, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = set()
        deadline = time.time() + (60 if during_write else rng.uniform(0.05, add_s * 0.9))
        tmp_seen_at = None
        while time.time() < deadline and proc.poll() is None:
            n, _ = entries(exe, idx)  # a concurrent reader
            if n not in (old_n, new_n):
                fail(f"a concurrent reader saw {n} entries (expected {old_n} or {new_n})")
            seen.add(n)
            time.sleep(0.03)
            if during_write and tmp_seen_at is None and glob.glob(idx + ".tmp.*"):
                tmp_seen_at = time.time()
                deadline = tmp_seen_at + rng.uniform(0.0, 0.7)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        n, why = entries(exe, idx)
        if n not in (old_n, new_n):
            fail(f"trial {trial}: after SIGKILL the index holds {n} entries ({why})")
        v = run([exe, "index", "verify", idx], ok=False)
        if v.returncode != 0:
            fail(f"trial {trial}: index verify after SIGKILL: {v.stderr}")
        outcomes.append((during_write, proc.returncode, n))
        if n == new_n:  # the add finished before the kill: start again from the old index
            shutil.copy(pristine, idx)
    print("kill trials (during write phase, exit code, entries):", outcomes)
    if not any(w and rc == -signal.SIGKILL for w, rc, _ in outcomes):
        fail("no kill landed during the write phase")
    run([exe, "index", "add", idx, more] + common)
    assert entries(exe, idx)[0] == new_n
    assert not glob.glob(idx + ".tmp.*"), "stale temporary files were not cleaned up"
    run([exe, "index", "verify", idx])

    # Two concurrent writers: the lock serializes them, neither loses the other's entries.
    ex1, ex2 = os.path.join(work, "extra1"), os.path.join(work, "extra2")
    run(gen + [ex1, "--variants", "1", "--seed", "3", "--prefix", "x1_"])
    run(gen + [ex2, "--variants", "1", "--seed", "4", "--prefix", "x2_"])
    procs = [subprocess.Popen([exe, "index", "add", idx, d] + common, stderr=subprocess.PIPE,
                              text=True) for d in (ex1, ex2)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            fail(f"concurrent index add failed: {err}")
    n, _ = entries(exe, idx)
    if n != new_n + 10:
        fail(f"after two concurrent adds of 5 images each the index holds {n}, expected {new_n + 10}")
    run([exe, "index", "verify", idx])
    print(f"index_cli: ok (build of 20 images {build_s:.1f} s, add of 20 {add_s:.1f} s)")


if __name__ == "__main__":
    main()

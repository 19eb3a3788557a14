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
5. A second writer while one holds the index: refused at once with an error naming the lock (no
   queueing); after the first finishes the second's add succeeds and both sets of entries land.
6. The approximate types (--index-type hnsw, ivfpq: FAISS over compact descriptors, append-only
   segment files behind a manifest): build / info / verify / search (self first, family purity),
   then 4 and 5 again for each (the kill loop watches the segment's and the manifest's temporary
   files), and an add that leaves the committed segment files untouched (append-only).
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


def copy_index(src, dst):
    """An index file and, for the approximate types, its directory of segment files."""
    shutil.rmtree(dst + ".d", ignore_errors=True)
    shutil.copy(src, dst)
    if os.path.isdir(src + ".d"):
        shutil.copytree(src + ".d", dst + ".d")


def temporaries(idx):
    return glob.glob(idx + ".tmp.*") + glob.glob(idx + ".d/*.tmp.*")


def crash_and_writers(exe, work, idx, more, gen, common, old_n, new_n, tag):
    """SIGKILL loop during `index add` (old or new entries, never a mixture, verify passes),
    then a second writer refused while a first holds the lock. Returns the duration of an add."""
    seed = int(os.environ.get("PREIMAGE_TEST_SEED", "12345"))
    rng = random.Random(seed)
    pristine = os.path.join(work, f"pristine_{tag}.h5")
    copy_index(idx, pristine)
    # Duration of a full add (to spread the kills over it).
    timing = os.path.join(work, f"timing_{tag}.h5")
    copy_index(idx, timing)
    before = {p: os.path.getmtime(p) for p in glob.glob(timing + ".d/*")}
    t0 = time.time()
    run([exe, "index", "add", timing, more] + common)
    add_s = time.time() - t0
    assert entries(exe, timing)[0] == new_n
    if before:  # append-only: the committed segment files are not rewritten
        after = {p: os.path.getmtime(p) for p in glob.glob(timing + ".d/*")}
        for p, m in before.items():
            if after.get(p) != m:
                fail(f"{tag}: index add rewrote or removed the committed file {p}")
        if len(after) != len(before) + 1:
            fail(f"{tag}: index add wrote {len(after) - len(before)} files, expected one segment")
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
                fail(f"{tag}: a concurrent reader saw {n} entries (expected {old_n} or {new_n})")
            seen.add(n)
            time.sleep(0.03)
            if during_write and tmp_seen_at is None and temporaries(idx):
                tmp_seen_at = time.time()
                deadline = tmp_seen_at + rng.uniform(0.0, 0.4)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        n, why = entries(exe, idx)
        if n not in (old_n, new_n):
            fail(f"{tag} trial {trial}: after SIGKILL the index holds {n} entries ({why})")
        v = run([exe, "index", "verify", idx], ok=False)
        if v.returncode != 0:
            fail(f"{tag} trial {trial}: index verify after SIGKILL: {v.stderr}")
        outcomes.append((during_write, proc.returncode, n))
        if n == new_n:  # the add finished before the kill: start again from the old index
            copy_index(pristine, idx)
    print(f"{tag}: kill trials (during write phase, exit code, entries):", outcomes)
    if not any(w and rc == -signal.SIGKILL for w, rc, _ in outcomes):
        fail(f"{tag}: no kill landed during the write phase")
    run([exe, "index", "add", idx, more] + common)
    assert entries(exe, idx)[0] == new_n
    if temporaries(idx):
        fail(f"{tag}: stale temporary files were not cleaned up: {temporaries(idx)}")
    run([exe, "index", "verify", idx])
    if os.path.isdir(idx + ".d"):  # orphans of the killed adds are gone too
        n_files = len(os.listdir(idx + ".d"))
        if n_files != 3:
            fail(f"{tag}: {idx}.d holds {n_files} files, expected base + 2 segments")

    # A second writer while the first holds the lock: refused at once, clearly; afterwards its
    # add goes through and both sets of entries land.
    ex1, ex2 = os.path.join(work, f"extra1_{tag}"), os.path.join(work, f"extra2_{tag}")
    run(gen + [ex1, "--variants", "1", "--seed", "3", "--prefix", "x1_"])
    run(gen + [ex2, "--variants", "1", "--seed", "4", "--prefix", "x2_"])
    slow = dict(os.environ, PREIMAGE_TEST_INDEX_WRITE_DELAY_MS="1500")
    first = subprocess.Popen([exe, "index", "add", idx, ex1] + common, env=slow,
                             stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not temporaries(idx) and first.poll() is None and time.time() - t0 < 60:
        time.sleep(0.02)
    t1 = time.time()
    second = run([exe, "index", "add", idx, ex2] + common, ok=False)
    waited = time.time() - t1
    _, err = first.communicate()
    if first.returncode != 0:
        fail(f"{tag}: the first writer failed: {err}")
    if second.returncode == 0:
        fail(f"{tag}: a second writer was not refused while the first held the lock")
    for needle in ("being written by another process", ".lock"):
        if needle not in second.stderr:
            fail(f"{tag}: the refused writer's error lacks '{needle}': {second.stderr}")
    if waited > 10:
        fail(f"{tag}: the refused writer waited {waited:.1f} s instead of failing at once")
    if entries(exe, idx)[0] != new_n + 5:
        fail(f"{tag}: after the first writer the index holds {entries(exe, idx)[0]}")
    run([exe, "index", "add", idx, ex2] + common)
    n, _ = entries(exe, idx)
    if n != new_n + 10:
        fail(f"{tag}: after both adds of 5 images each the index holds {n}, expected {new_n + 10}")
    run([exe, "index", "verify", idx])
    return add_s


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

    add_s = crash_and_writers(exe, work, idx, more, gen, common, old_n=20, new_n=40, tag="exact")

    # ---- approximate index types -------------------------------------------------------------
    for kind in ("hnsw", "ivfpq"):
        aidx = os.path.join(work, f"{kind}.h5")
        run([exe, "index", "build", base, "--out", aidx, "--size", "64", "--index-type", kind]
            + common)
        info = json.loads(run([exe, "index", "info", aidx, "--json"]).stdout)
        assert info["entries"] == 20 and info["index_type"] == kind, info
        assert info["compact_dim"] == 128 and info["segment_files"] == 1, info
        assert "ok" in run([exe, "index", "verify", aidx]).stdout
        res = json.loads(run([exe, "search", aidx, base, "-k", "5", "--json"] + common).stdout)
        own = 0
        for qr in res["queries"]:
            fam = os.path.basename(qr["query"]).split("_")[0]
            top = qr["results"]
            if os.path.basename(top[0]["path"]) != os.path.basename(qr["query"]):
                fail(f"{kind}: query {qr['query']} did not find itself first: {top[0]}")
            own += sum(os.path.basename(r["path"]).split("_")[0] == fam for r in top[1:4])
            assert all(top[i]["distance"] <= top[i + 1]["distance"] for i in range(4)), top
        if own < 0.9 * 60:
            fail(f"{kind}: only {own}/60 of the top-3 neighbours came from the query's family")
        expect_error([exe, "index", "build", base, "--out", os.path.join(work, "y.h5"),
                      "--index-type", "lsh"] + common, "--index-type", "lsh")
        expect_error([exe, "index", "build", base, "--out", os.path.join(work, "y.h5"),
                      "--index-type", kind, "--half"] + common, "--half")
        assert not os.path.exists(os.path.join(work, "y.h5"))
        # A corrupt segment file: the error names it (FAISS never parses the damaged bytes).
        bad = os.path.join(work, f"{kind}_bad.h5")
        copy_index(aidx, bad)
        seg = sorted(glob.glob(bad + ".d/seg-*"))[0]
        with open(seg, "r+b") as f:
            f.seek(os.path.getsize(seg) - 200)
            b = f.read(1)
            f.seek(os.path.getsize(seg) - 200)
            f.write(bytes([b[0] ^ 0xFF]))
        expect_error([exe, "search", bad, q] + common, os.path.basename(seg))
        crash_and_writers(exe, work, aidx, more, gen, common, old_n=20, new_n=40, tag=kind)
    print(f"index_cli: ok (build of 20 images {build_s:.1f} s, add of 20 {add_s:.1f} s)")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Top-5 family purity of texture search on crops of real photographs, exact vs approximate.

usage: test_texture_purity.py PREIMAGE_BINARY WORKDIR

Families: random crops of scikit-image's brick, grass, gravel, moon, the cat's fur (chelsea) and
the Hubble deep field (test/make_texture_families.py --real): 10 crops per family indexed, 3 more
per family held out as queries. Each index type (exact, hnsw, ivfpq) is built from the same
images and searched with every indexed image (its own entry left out) and every held-out crop;
purity = the fraction of the 5 nearest results from the query's family, over all queries.
Bars: exact purity >= 0.6 (else the families say nothing) and each approximate type within 2
points of exact (purity >= exact - 0.02).
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}\nexit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def family(path):
    return os.path.basename(path).split("_")[0]


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    gen = ["/usr/bin/python3", os.path.join(HERE, "make_texture_families.py")]
    indexed, held = os.path.join(work, "indexed"), os.path.join(work, "held")
    run(gen + [indexed, "--real", "--families", "6", "--variants", "10", "--size", "96",
               "--seed", "1"])
    run(gen + [held, "--real", "--families", "6", "--variants", "3", "--size", "96", "--seed",
               "2", "--prefix", "q"])
    common = ["--device", "cpu", "--quiet"]
    purity = {}
    t0 = time.time()
    for kind in ("exact", "hnsw", "ivfpq"):
        idx = os.path.join(work, f"{kind}.h5")
        run([exe, "index", "build", indexed, "--out", idx, "--size", "96", "--index-type", kind]
            + common)
        res = json.loads(run([exe, "search", idx, indexed, held, "-k", "6", "--json"]
                             + common).stdout)
        good = total = 0
        for qr in res["queries"]:
            q = os.path.abspath(qr["query"])
            fam = family(q).lstrip("q") if os.path.dirname(q) == os.path.abspath(held) \
                else family(q)
            top = [r["path"] for r in qr["results"] if os.path.abspath(r["path"]) != q][:5]
            if len(top) != 5:
                sys.exit(f"FAILED: {kind}: {q} got {len(top)} results besides itself")
            good += sum(family(p) == fam for p in top)
            total += 5
        if len(res["queries"]) != 78:
            sys.exit(f"FAILED: {kind}: {len(res['queries'])} queries answered, expected 78")
        purity[kind] = good / total
        print(f"{kind:5s}: top-5 purity {purity[kind]:.3f} ({good}/{total})", flush=True)
    if purity["exact"] < 0.6:
        sys.exit(f"FAILED: exact top-5 purity {purity['exact']:.3f} < 0.6: the families do not "
                 "separate, the comparison would say nothing")
    for kind in ("hnsw", "ivfpq"):
        if purity[kind] < purity["exact"] - 0.02:
            sys.exit(f"FAILED: {kind} top-5 purity {purity[kind]:.3f} is more than 2 points "
                     f"below exact ({purity['exact']:.3f})")
    print(f"texture_purity: ok ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()

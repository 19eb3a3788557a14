#!/usr/bin/python3
"""Our L-BFGS vs SciPy's L-BFGS-B on several instances of the Gatys objective (docs/lbfgs.md).

Usage: /usr/bin/python3 test/gatys_seeds.py DRIVER [--instances NAME,...] [--iters K]
                                            [--cache FILE] [--json FILE]

DRIVER is test/lbfgs_scipy_driver; an instance is gatys<S>[s<SEED>][p<0|1>] (x0 noise seed,
target pattern). Both sides run K iterations (default 50) with every tolerance off and m = 10,
as the Gatys check of test/scipy_compare.py does. Prints per instance f after iterations
1, 5, 10, K on both sides, the ratio f_ours / f_SciPy after K iterations, how many variables
sit at a bound (at x0, after iteration 1, at the end, and the maximum over the run), and the
first iteration where the two f histories differ by more than 1e-6 relative; then the win count
(ours ≤ SciPy) and the geometric mean of the ratios. SciPy's runs do not depend on our solver:
--cache FILE keeps them between invocations. --json FILE writes every history.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scipy_compare import M, Served, run_ours  # noqa: E402

DEFAULT = ["gatys64", "gatys64s3", "gatys64s4", "gatys64s5", "gatys64s6", "gatys64p1",
           "gatys64s3p1", "gatys64s4p1"]


def at_bound(x, lo, hi):
    return int(np.count_nonzero((x <= lo) | (x >= hi)))


def run_scipy_traced(driver, name, iters):
    s = Served(driver, name)
    lo, hi = s.bounds[0]
    x0 = s.x0.astype(np.float32).astype(np.float64)
    f0, _ = s(x0)
    history, bound = [f0], [at_bound(x0, lo, hi)]

    def cb(xk):
        history.append(s.last[0])
        bound.append(at_bound(xk, lo, hi))

    t0 = time.time()
    res = minimize(s, x0, jac=True, method="L-BFGS-B", bounds=s.bounds, callback=cb,
                   options={"maxcor": M, "gtol": 0.0, "ftol": 0.0, "maxiter": iters,
                            "maxfun": 100 * iters + 1000, "maxls": 20})
    secs = time.time() - t0
    s.close()
    return {"history": history, "at_bound": bound, "evaluations": int(res.nfev),
            "iterations": int(res.nit), "message": str(res.message), "seconds": secs}


def first_divergence(a, b, rel=1e-6):
    for k in range(min(len(a), len(b))):
        if abs(a[k] - b[k]) > rel * abs(b[k]):
            return k
    return -1


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].replace("Usage: ", "", 1))
    ap.add_argument("driver")
    ap.add_argument("--instances", type=lambda v: v.split(","), default=DEFAULT)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--cache", dest="cache_path")
    ap.add_argument("--json", dest="json_path")
    a = ap.parse_args()
    driver, instances, iters, cache_path, json_path = (a.driver, a.instances, a.iters,
                                                       a.cache_path, a.json_path)
    cache = {}
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as fh:
            cache = json.load(fh)
    out = {}
    ratios = []
    print("| instance | f0 | it1 ours | it1 SciPy | it10 ours | it10 SciPy | f%d ours | f%d SciPy "
          "| ratio | evals ours/SciPy | at bound x0 / it1 / end / max (ours; SciPy) | diverge |"
          % (iters, iters))
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in instances:
        key = "%s/%d" % (name, iters)
        if key not in cache:
            cache[key] = run_scipy_traced(driver, name, iters)
            if cache_path:
                with open(cache_path, "w") as fh:
                    json.dump(cache, fh)
        sp = cache[key]
        ours = run_ours(driver, name, 0.0, 0.0, iters)
        ho, hs = ours["f_history"], sp["history"]
        k = min(iters, len(ho) - 1, len(hs) - 1)
        ratio = ho[k] / hs[k]
        ratios.append(ratio)
        bo, bs = ours["at_bound"], sp["at_bound"]
        print("| %s | %.4g | %.4g | %.4g | %.4g | %.4g | %.4g | %.4g | %.4f | %d/%d "
              "| %d/%d/%d/%d; %d/%d/%d/%d | %d |" %
              (name, ho[0], ho[1], hs[1], ho[min(10, k)], hs[min(10, k)], ho[k], hs[k], ratio,
               ours["evaluations"], sp["evaluations"], bo[0], bo[1], bo[-1], max(bo), bs[0],
               bs[1], bs[-1], max(bs), first_divergence(ho, hs)))
        sys.stdout.flush()
        out[name] = {"ours": ours, "scipy": sp}
    wins = sum(r <= 1.0 for r in ratios)
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print("\nours <= SciPy after %d iterations on %d of %d instances; geometric mean ratio %.4f; "
          "worst %.4f" % (iters, wins, len(ratios), gm, max(ratios)))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Side-by-side CPU benchmark: this project's CPU backend vs PyTorch (oneDNN), same thread count.

Cases (VGG-19, random weights on both sides, batch 1):
  fwd     forward to relu5_1                       (256², 512²)
  fwdbwd  forward + input-backward from relu5_1    (256², 512²)
  gatys   one Gatys loss + gradient evaluation, Gram matrices at relu1_1 … relu5_1 (256²)
Each case starts a fresh worker per side (PyTorch: this script with --worker; ours: bench_vgg
--serve, see bench/bench_vgg.cpp), warms both up, then interleaves them (torch, ours, torch,
ours, ...) and prints the medians, one line per case with `ratio torch/ours = X.XX`, and each
worker's peak resident set (VmHWM, so per case). Without --quick a third worker with the CPU
convolution forced to im2col (PREIMAGE_CPU_CONV=direct) is interleaved too.
--rss additionally runs a 1024×1024 inversion to relu4_1 (the CLI vs an equivalent torch L-BFGS
script, a few iterations) and compares the peak RSS of the two processes (wait4 ru_maxrss).

  /usr/bin/python3 bench/compare_torch.py [--quick] [--build-dir DIR] [--threads 2] [--reps 5]
                                          [--rss] [--rss-iters 3] [--rss-size 1024]

Needs Debian's python3-torch (/usr/bin/python3) and a build with -DPREIMAGE_BUILD_BENCH=ON.
--quick runs the 256² cases only (within a minute on the 2-core development machine).
The environment (OMP_WAIT_POLICY, OPENBLAS_CORETYPE, ...) is passed to both sides unchanged and
printed in the header. On a machine shared with other jobs, OMP_WAIT_POLICY=passive keeps
libgomp's spinning threads (both sides use libgomp) from stealing the cores the work needs.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

GRAM_TAPS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
# torchvision vgg19().features indices of those ReLUs; relu5_1 is the last layer used.
TORCH_TAP_INDEX = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    return 0.0


def vgg19_features(last):
    """torchvision's VGG-19 conv/ReLU/pool stack up to layer index `last`, random weights, no
    classifier (vgg19() would allocate ~0.5 GB of fully connected weights)."""
    import torchvision

    feats = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])[: last + 1]
    feats.eval()
    for p in feats.parameters():
        p.requires_grad_(False)
    return feats


# ---------------------------------------------------------------------------------------------
# PyTorch worker: same line protocol as bench_vgg --serve.
def torch_worker(threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    feats = vgg19_features(TORCH_TAP_INDEX["relu5_1"])
    state = {}

    def image(size, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.rand(1, 3, size, size, generator=g)

    def taps_of(x):
        out = {}
        for i, layer in enumerate(feats):
            x = layer(x)
            for name, idx in TORCH_TAP_INDEX.items():
                if idx == i:
                    out[name] = x
        return out

    def gram(f):
        c = f.shape[1]
        m = f.shape[2] * f.shape[3]
        f = f.reshape(c, m)
        return f @ f.t(), c, m

    def run(op, size):
        st = state.setdefault(size, {"img": image(size, 1)})
        img = st["img"]
        if op == "gatys" and "targets" not in st:
            with torch.no_grad():
                t = taps_of(image(size, 99))
                st["targets"] = {k: gram(t[k].clone())[0] for k in GRAM_TAPS}
        t0 = time.perf_counter()
        if op == "fwd":
            with torch.no_grad():
                feats(img)
        elif op == "fwdbwd":
            x = img.clone().requires_grad_(True)
            y = feats(x)
            y.backward(y.detach())
        else:
            x = img.clone().requires_grad_(True)
            t = taps_of(x)
            loss = 0
            for k in GRAM_TAPS:
                g, c, m = gram(t[k])
                loss = loss + ((g - st["targets"][k]) ** 2).sum() / (4.0 * c * c * m * m)
            loss.backward()
        return (time.perf_counter() - t0) * 1e3

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "quit":
            break
        if parts[0] == "rss":
            print("%.1f" % peak_rss_mib(), flush=True)
        else:
            print("%.3f" % run(parts[0], int(parts[1])), flush=True)


# ---------------------------------------------------------------------------------------------
# torch side of the --rss job: L-BFGS inversion of an image's relu4_1 features (+ TV), like
# `preimage invert --layers relu4_1`.
def torch_invert(size, iters, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    feats = vgg19_features(TORCH_TAP_INDEX["relu4_1"])
    img = torch.rand(1, 3, size, size)
    with torch.no_grad():
        target = feats(img).clone()
    norm = (target**2).sum()
    x = torch.rand(1, 3, size, size).requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=iters, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        f = feats(x)
        dx = x[:, :, :, 1:] - x[:, :, :, :-1]
        dy = x[:, :, 1:, :] - x[:, :, :-1, :]
        loss = ((f - target) ** 2).sum() / norm + 5.0 * ((dx**2).sum() + (dy**2).sum()) / x.numel()
        loss.backward()
        return loss

    opt.step(closure)


# ---------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, name, argv, env):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            raise SystemExit("compare_torch: worker %s died (exit %s) on '%s'"
                             % (self.name, self.proc.wait(), line))
        try:
            return float(out)
        except ValueError:
            raise SystemExit("compare_torch: worker %s answered '%s' to '%s'"
                             % (self.name, out.strip(), line))

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()


def machine_line():
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "%s, %d CPUs online, %s" % (model or platform.processor(), os.cpu_count(),
                                       platform.platform())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="256² cases only, no direct rows")
    ap.add_argument("--build-dir", default=os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="timed runs per side (median)")
    ap.add_argument("--rss", action="store_true", help="also the 1024² relu4_1 inversion RSS job")
    ap.add_argument("--rss-iters", type=int, default=3)
    ap.add_argument("--rss-size", type=int, default=1024)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-invert", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return torch_worker(a.threads)
    if a.torch_invert:
        return torch_invert(a.torch_invert, a.rss_iters, a.threads)
    if a.reps < 5:
        raise SystemExit("compare_torch: --reps must be at least 5 (median of >= 5), got %d"
                         % a.reps)

    bench = os.path.join(a.build_dir, "bench", "bench_vgg")
    if not os.access(bench, os.X_OK):
        raise SystemExit("compare_torch: %s not found; build with -DPREIMAGE_BUILD_BENCH=ON and "
                         "pass --build-dir" % bench)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    env.pop("PREIMAGE_CPU_CONV", None)
    env_direct = dict(env, PREIMAGE_CPU_CONV="direct")
    import torch  # noqa: F401  (version line; the workers import it themselves)

    print("# compare_torch: %s" % machine_line())
    print("# %s, torch %s (threads %d), OMP_NUM_THREADS=%d, OMP_WAIT_POLICY=%s, "
          "OPENBLAS_CORETYPE=%s, median of %d after 1 warm-up, interleaved, load average %s"
          % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), torch.__version__, a.threads,
             a.threads, os.environ.get("OMP_WAIT_POLICY", "(unset)"),
             os.environ.get("OPENBLAS_CORETYPE", "(unset)"), a.reps,
             " ".join("%.1f" % x for x in os.getloadavg())), flush=True)
    cases = [("fwd", 256), ("fwdbwd", 256), ("gatys", 256)]
    if not a.quick:
        cases += [("fwd", 512), ("fwdbwd", 512)]
    label = {"fwd": "forward relu5_1", "fwdbwd": "fwd+bwd relu5_1", "gatys": "gatys 5 grams"}
    worst = None
    for op, size in cases:
        workers = [Worker("torch", [sys.executable, os.path.abspath(__file__), "--worker",
                                    "--threads", str(a.threads)], env),
                   Worker("ours", [bench, "--serve"], env)]
        if not a.quick:
            workers.append(Worker("ours-direct", [bench, "--serve"], env_direct))
        req = "%s %d" % (op, size)
        times = {w.name: [] for w in workers}
        for w in workers:  # warm-up (weights, buffers, transformed filters)
            w.ask(req)
        for _ in range(a.reps):
            for w in workers:
                times[w.name].append(w.ask(req))
        rss = {w.name: w.ask("rss") for w in workers}
        for w in workers:
            w.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["torch"] / med["ours"]
        worst = ratio if worst is None else min(worst, ratio)
        line = ("%-16s %4d²: torch %8.1f ms (peak RSS %6.0f MiB) | ours %8.1f ms (peak RSS %6.0f "
                "MiB) | ratio torch/ours = %.2f" % (label[op], size, med["torch"], rss["torch"],
                                                     med["ours"], rss["ours"], ratio))
        if "ours-direct" in med:
            line += " | ours im2col %.1f ms (torch/im2col %.2f)" % (
                med["ours-direct"], med["torch"] / med["ours-direct"])
        print(line, flush=True)
    print("# lowest ratio torch/ours = %.2f (bar: >= 1.5)" % worst, flush=True)

    if a.rss:
        cli = os.path.join(a.build_dir, "apps", "preimage")
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        out = "/tmp/compare_torch_invert_%d.png" % os.getpid()
        image = os.path.join(root, "examples", "astronaut.jpg")
        jobs = [("ours", [cli, "invert", "--input", image, "--size", str(a.rss_size), "--layers",
                          "relu4_1", "--iters", str(a.rss_iters), "--device", "cpu", "--quiet",
                          "--out", out]),
                ("torch", [sys.executable, os.path.abspath(__file__), "--torch-invert",
                           str(a.rss_size), "--rss-iters", str(a.rss_iters), "--threads",
                           str(a.threads)])]
        peak = {}
        for name, argv in jobs:
            t0 = time.time()
            p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            if status != 0:
                raise SystemExit("compare_torch: %s inversion failed (status %d): %s"
                                 % (name, status, " ".join(argv)))
            peak[name] = ru.ru_maxrss / 1024.0
            print("# %d² invert relu4_1, %d L-BFGS iterations: %s %.0f s, peak RSS %.0f MiB"
                  % (a.rss_size, a.rss_iters, name, time.time() - t0, peak[name]), flush=True)
        for suffix in ("", ".json"):
            try:
                os.remove(out + suffix)
            except OSError:
                pass
        print("invert %d² relu4_1 peak RSS: torch %.0f MiB | ours %.0f MiB | ratio torch/ours = "
              "%.2f (bar: ours <= torch)" % (a.rss_size, peak["torch"], peak["ours"],
                                             peak["torch"] / peak["ours"]), flush=True)


if __name__ == "__main__":
    main()

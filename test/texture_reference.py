#!/usr/bin/python3
"""PyTorch (float64 autograd) reference for the texture terms of preimage's objectives.

Usage: texture_reference.py DIR
Every subdirectory of DIR is one case, written by test/test_gram.cpp or test/test_bilinear.cpp:
  meta.txt   one line: "gram C M" or "bcnn CA CB M SAME EPS" (SAME = 1: one layer, a = b)
  *.bin      raw little-endian float32 inputs:
               gram: f.bin (C, M) activations, t.bin (C, M) target activations
               bcnn: fa.bin, ta.bin (CA, M) and, when SAME = 0, fb.bin, tb.bin (CB, M)
The script writes raw float64 outputs next to them:
  gram: loss.bin  E = sum((F F^T - T T^T)^2) / (4 C^2 M^2)       grad.bin  dE/dF
  bcnn: loss.bin  ||z - z_t||^2, z = y / ||y||, y = sign(B) sqrt(|B| + eps), B = Fa Fb^T / M
        grad_a.bin dL/dFa   (and grad_b.bin dL/dFb when SAME = 0)
For the gradients it also writes the float32 autograd result (grad32.bin, grad_a32.bin,
grad_b32.bin): the error of PyTorch's own float32 evaluation, which bounds what any float32
implementation can reach where the loss cancels (z close to z_t, G close to G_t).
Run with Debian's /usr/bin/python3 (python3-torch). Exit code 0 on success, 77 when numpy or
torch cannot be imported (the C++ test then warns and skips).
"""
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(f"texture_reference.py: {exc}", file=sys.stderr)
    sys.exit(77)


def load(path, rows, cols, dtype=torch.float64):
    a = np.fromfile(path, dtype="<f4")
    if a.size != rows * cols:
        raise SystemExit(f"{path}: {a.size} floats, expected {rows}x{cols}")
    return torch.from_numpy(a.reshape(rows, cols).copy()).to(dtype)


def save(path, t):
    t.detach().cpu().numpy().astype("<f8").tofile(path)


def gram_case(d, c, m):
    for dtype, suffix in ((torch.float64, ""), (torch.float32, "32")):
        f = load(os.path.join(d, "f.bin"), c, m, dtype).requires_grad_(True)
        t = load(os.path.join(d, "t.bin"), c, m, dtype)
        g = f @ f.T
        gt = t @ t.T
        loss = ((g - gt) ** 2).sum() / (4.0 * c * c * m * m)
        loss.backward()
        if not suffix:
            save(os.path.join(d, "loss.bin"), loss.reshape(1))
        save(os.path.join(d, f"grad{suffix}.bin"), f.grad)


def descriptor(a, b, m, eps):
    bil = a @ b.T / m
    y = torch.sign(bil) * torch.sqrt(bil.abs() + eps)
    return y / y.norm()


def bcnn_case(d, ca, cb, m, same, eps):
    for dtype, suffix in ((torch.float64, ""), (torch.float32, "32")):
        fa = load(os.path.join(d, "fa.bin"), ca, m, dtype).requires_grad_(True)
        ta = load(os.path.join(d, "ta.bin"), ca, m, dtype)
        if same:
            fb, tb = fa, ta
        else:
            fb = load(os.path.join(d, "fb.bin"), cb, m, dtype).requires_grad_(True)
            tb = load(os.path.join(d, "tb.bin"), cb, m, dtype)
        z = descriptor(fa, fb, m, eps)
        zt = descriptor(ta, tb, m, eps)
        loss = ((z - zt) ** 2).sum()
        loss.backward()
        if not suffix:
            save(os.path.join(d, "loss.bin"), loss.reshape(1))
        save(os.path.join(d, f"grad_a{suffix}.bin"), fa.grad)
        if not same:
            save(os.path.join(d, f"grad_b{suffix}.bin"), fb.grad)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    root = sys.argv[1]
    cases = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    if not cases:
        raise SystemExit(f"{root}: no case directories")
    for case in cases:
        d = os.path.join(root, case)
        with open(os.path.join(d, "meta.txt")) as fh:
            words = fh.read().split()
        if words[0] == "gram":
            gram_case(d, int(words[1]), int(words[2]))
        elif words[0] == "bcnn":
            bcnn_case(d, int(words[1]), int(words[2]), int(words[3]), words[4] == "1",
                      float(words[5]))
        else:
            raise SystemExit(f"{d}: unknown case kind {words[0]!r}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch reference data for the transposed convolution and the Adam step.

    conv_transpose_torch.py --out DIR

Writes, in float32 little-endian raw files, for each case i of CASES:
  ct<i>_shape.txt   "n c h w o k stride pad out_pad"
  ct<i>_{x,w,b,dy}.bin       inputs (w: (C,O,K,K) as torch.nn.ConvTranspose2d)
  ct<i>_{y,dx,dw,db}.bin     torch's forward and the gradients of sum(y * dy), in float64
and for torch.optim.Adam (lr 1e-2, betas (0.9, 0.999), eps 1e-8, 5 steps on 257 parameters):
  adam_p0.bin, adam_g<t>.bin (t = 1..5), adam_p.bin (the parameters after the 5 steps).
Read by the [torch] case "conv_transpose and adam vs torch" in test/test_kernels_conv_transpose.cpp
(ctest conv_transpose_vs_torch runs both).
"""
import argparse
import os

import numpy as np
import torch

CASES = [
    (2, 3, 5, 7, 4, 3, 1, 1, 0),
    (1, 5, 6, 5, 3, 4, 2, 1, 0),
    (3, 4, 7, 9, 5, 4, 2, 1, 1),
    (2, 3, 4, 5, 2, 3, 3, 0, 2),
    (1, 17, 9, 11, 13, 4, 2, 1, 0),
]


def save(path, t):
    np.asarray(t, dtype=np.float32).tofile(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    for i, (n, c, h, w, o, k, s, p, op) in enumerate(CASES):
        x = torch.rand(n, c, h, w, generator=g) * 2 - 1
        wt = torch.rand(c, o, k, k, generator=g) * 2 - 1
        b = torch.rand(o, generator=g) * 2 - 1
        ho = (h - 1) * s - 2 * p + k + op
        wo = (w - 1) * s - 2 * p + k + op
        dy = torch.rand(n, o, ho, wo, generator=g) * 2 - 1
        xd, wd, bd = (t.double().requires_grad_() for t in (x, wt, b))
        y = torch.nn.functional.conv_transpose2d(xd, wd, bd, stride=s, padding=p,
                                                 output_padding=op)
        (y * dy.double()).sum().backward()
        with open(os.path.join(a.out, "ct%d_shape.txt" % i), "w") as f:
            f.write(" ".join(str(v) for v in (n, c, h, w, o, k, s, p, op)) + "\n")
        for name, t in (("x", x), ("w", wt), ("b", b), ("dy", dy), ("y", y.detach()),
                        ("dx", xd.grad), ("dw", wd.grad), ("db", bd.grad)):
            save(os.path.join(a.out, "ct%d_%s.bin" % (i, name)), t.detach().numpy())
    p = torch.nn.Parameter(torch.rand(257, generator=g) * 2 - 1)
    save(os.path.join(a.out, "adam_p0.bin"), p.detach().numpy())
    opt = torch.optim.Adam([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    for t in range(1, 6):
        grad = torch.rand(257, generator=g) * 4 - 2
        save(os.path.join(a.out, "adam_g%d.bin" % t), grad.numpy())
        p.grad = grad.clone()
        opt.step()
    save(os.path.join(a.out, "adam_p.bin"), p.detach().numpy())


if __name__ == "__main__":
    main()

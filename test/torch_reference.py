#!/usr/bin/python3
"""PyTorch reference data for the engine's VGG-19 (test_torch_compare.cpp, test_weights.cpp).

Writes into --out DIR:
  vgg19.h5              seeded random torchvision VGG-19 convolutions, canonical layout (written
                        by weights/convert_torchvision.py)
  reference.h5          /img64, /img67x93: image (1,3,H,W) float32 uniform [0,1]; relu1_1 ...
                        relu5_1 (float64 activations for network input (image - mean) / std);
                        grad (float64 d loss / d image, loss = sum over taps of
                        0.5 * |A|^2 / numel(A)); loss (scalar).
                        /keras/img64, /keras/img67x93: relu1_1 ... relu5_1 of keras_vgg19.h5
                        under its own (Caffe) preprocessing.
  keras_vgg19.h5        the same weights in Keras' layout (see write_keras_vgg19 for conv1_1)
  keras_vgg16_fc.h5     Keras VGG16 with fc1/fc2/predictions (sparse, old-style weight names)
  canonical_vgg16_fc.h5 the same weights in the canonical layout (fc6 input permuted to (C,H,W))
Everything is computed in float64 from the float32 weights actually stored in the files.
"""
import argparse
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights"))
import convert_torchvision as conv  # noqa: E402

TAPS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
IMAGES = {"img64": (64, 64), "img67x93": (67, 93)}
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def forward(layers, x, arch="vgg19", taps=TAPS, pool=F.max_pool2d):
    """Plain VGG features in float64: {tap: activation} up to the deepest tap."""
    out, deepest = {}, max(int(t[4]) * 10 + int(t[6]) for t in taps)
    for block, convs in enumerate(conv.BLOCKS[arch], start=1):
        for k in range(1, convs + 1):
            if block * 10 + k > deepest:
                return out
            w, b = layers[f"conv{block}_{k}"]
            x = F.relu(F.conv2d(x, torch.from_numpy(w).double(), torch.from_numpy(b).double(),
                                padding=1))
            if f"relu{block}_{k}" in taps:
                out[f"relu{block}_{k}"] = x
        x = pool(x, 2, 2)
    return out


def gram_loss(acts, targets):
    """Gatys: sum over taps of sum (G - G_t)^2 / (4 N^2 M^2), G = F F^T, G_t rescaled by M / M_t."""
    loss = 0
    for tap, a in acts.items():
        n, m = a.shape[1], a.shape[2] * a.shape[3]
        f = a.reshape(n, m)
        t = targets[tap]
        mt = t.shape[2] * t.shape[3]
        ft = t.reshape(n, mt)
        g, gt = f @ f.T, (ft @ ft.T) * (m / mt)
        loss = loss + ((g - gt) ** 2).sum() / (4.0 * n * n * m * m)
    return loss


def write_keras_vgg19(path, layers):
    """The canonical weights in Keras' layout: HWIO kernels, BGR input, Caffe preprocessing.

    A Keras VGG file implies x_keras[c'] = 255 * x_rgb[2 - c'] - M[c'] (M = Caffe BGR mean, no
    std), while the canonical file implies x[c] = (x_rgb[c] - m[c]) / s[c]. So conv1_1's input
    channels are swapped (RGB -> BGR) and divided by 255 * s[c]: W'[o, 2 - c] = W[o, c] / (255 s[c]),
    which makes the two convolutions agree up to the constant sum_c W[o, c] (M[2-c]/255 - m[c]) /
    s[c] over the kernel; that constant is folded into the bias. Zero padding happens after
    preprocessing, so the fold is exact only where the 3x3 window lies inside the image: at the
    border the two differ by up to ~1% (M/255 differs from m by up to 0.002). reference.h5 therefore
    also holds /keras/... activations computed in torch with exactly this file and Caffe
    preprocessing; the interior of relu1_1 must match the canonical activations.
    """
    w, b = layers["conv1_1"]
    m = np.asarray(conv.IMAGENET_MEAN, np.float64)
    s = np.asarray(conv.IMAGENET_STD, np.float64)
    mean_rgb01 = CAFFE_MEAN_BGR.astype(np.float64)[::-1] / 255.0  # Caffe mean as RGB in [0,1]
    w64 = w.astype(np.float64)
    w_bgr = (w64 / (255.0 * s)[None, :, None, None])[:, ::-1]
    b_fold = b.astype(np.float64) + np.einsum("ochw,c->o", w64, (mean_rgb01 - m) / s)
    folded = dict(layers)
    folded["conv1_1"] = (np.ascontiguousarray(w_bgr, np.float32), b_fold.astype(np.float32))

    names = ["input_1"]
    for block, convs in enumerate(conv.BLOCKS["vgg19"], start=1):
        names += [f"block{block}_conv{k}" for k in range(1, convs + 1)] + [f"block{block}_pool"]
    with h5py.File(path, "w") as f:
        # As Keras 2 writes them: fixed-length byte-string arrays.
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name in names:
            g = f.create_group(name)
            if "_conv" not in name:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            block, k = name[5], name[-1]
            kw, kb = folded[f"conv{block}_{k}"]
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(),
                                                f"{name}/bias:0".encode()])
            g.create_dataset(f"{name}/kernel:0", data=np.ascontiguousarray(kw.transpose(2, 3, 1, 0)))
            g.create_dataset(f"{name}/bias:0", data=kb)
    return folded


def write_vgg16_fc_pair(keras_path, canonical_path, rng, classes=10, nonzeros=300):
    """VGG16 with fc layers, in both layouts. The conv kernels are left unwritten (HDF5 reads
    them as zeros, so the files stay small); fc1/fc2/predictions hold `nonzeros` random entries
    each, in chunked datasets (only touched chunks are stored). Keras fc1 rows are indexed by the
    (H,W,C) flatten of pool5, canonical fc6 columns by (C,H,W). Keras names use the old style
    'block1_conv1_W_1:0' directly in the layer group."""
    convs = conv.expected_conv_shapes("vgg16")
    dense = {"fc6": (25088, 4096), "fc7": (4096, 4096), "fc8": (4096, classes)}
    kname = {"fc6": "fc1", "fc7": "fc2", "fc8": "predictions"}
    names = ["input_1"]
    for block, n in enumerate(conv.BLOCKS["vgg16"], start=1):
        names += [f"block{block}_conv{k}" for k in range(1, n + 1)] + [f"block{block}_pool"]
    names += ["flatten", "fc1", "fc2", "predictions"]

    with h5py.File(keras_path, "w") as fk, h5py.File(canonical_path, "w") as fc:
        fk.attrs["layer_names"] = np.array([n.encode() for n in names])
        fk.attrs["backend"] = b"tensorflow"
        fk.attrs["keras_version"] = b"2.0.8"
        for key, value in (("format", conv.FORMAT), ("arch", "vgg16"), ("color_order", "BGR")):
            fc.attrs[key] = value
        fc.attrs["value_range"] = np.float32(255)
        fc.attrs["mean"] = CAFFE_MEAN_BGR
        fc.attrs["std"] = np.ones(3, np.float32)
        for name in names:
            g = fk.create_group(name)
            if not (name.startswith("block") and "_conv" in name) and name not in kname.values():
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            g.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
        for cname, (o, c, kh, kw) in convs.items():
            kn = f"block{cname[4]}_conv{cname[6]}"
            fk[kn].create_dataset(f"{kn}_W_1:0", shape=(kh, kw, c, o), dtype=np.float32,
                                  chunks=(kh, kw, c, min(o, 64)), fillvalue=0)
            bias = rng.standard_normal(o).astype(np.float32)
            fk[kn].create_dataset(f"{kn}_b_1:0", data=bias)
            fc.create_dataset(f"{cname}/weight", shape=(o, c, kh, kw), dtype=np.float32,
                              chunks=(min(o, 64), c, kh, kw), fillvalue=0)
            fc.create_dataset(f"{cname}/bias", data=bias)
        for cname, (n_in, n_out) in dense.items():
            kn = kname[cname]
            kd = fk[kn].create_dataset(f"{kn}_W_1:0", shape=(n_in, n_out), dtype=np.float32,
                                       chunks=(min(n_in, 256), min(n_out, 256)), fillvalue=0,
                                       compression="gzip", compression_opts=1)
            cd = fc.create_dataset(f"{cname}/weight", shape=(n_out, n_in), dtype=np.float32,
                                   chunks=(min(n_out, 256), min(n_in, 256)), fillvalue=0,
                                   compression="gzip", compression_opts=1)
            rows = rng.integers(0, n_in, nonzeros)
            cols = rng.integers(0, n_out, nonzeros)
            vals = rng.standard_normal(nonzeros).astype(np.float32)
            for r, o, v in zip(rows, cols, vals):
                kd[r, o] = v
                if cname == "fc6":  # r = (h*7 + w)*512 + c  ->  c*49 + h*7 + w
                    c, hw = r % 512, r // 512
                    cd[o, c * 49 + hw] = v
                else:
                    cd[o, r] = v
            bias = rng.standard_normal(n_out).astype(np.float32)
            fk[kn].create_dataset(f"{kn}_b_1:0", data=bias)
            fc.create_dataset(f"{cname}/bias", data=bias)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)

    # torchvision's default init leaves conv biases at 0; random biases exercise the bias path.
    model = conv.random_model("vgg19", a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    with torch.no_grad():
        for m in model.features:
            if isinstance(m, torch.nn.Conv2d):
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
    layers = conv.canonical_layers(model.state_dict(), "vgg19", include_fc=False)
    del model
    conv.write_canonical(os.path.join(a.out, "vgg19.h5"), layers, "vgg19", random_init=True,
                         source=f"test/torch_reference.py seed {a.seed}")
    keras_layers = write_keras_vgg19(os.path.join(a.out, "keras_vgg19.h5"), layers)

    rng = np.random.default_rng(a.seed)
    mean = torch.tensor(np.float32(conv.IMAGENET_MEAN), dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(np.float32(conv.IMAGENET_STD), dtype=torch.float64).view(1, 3, 1, 1)
    caffe = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)
    with h5py.File(os.path.join(a.out, "reference.h5"), "w") as f:
        f.attrs["taps"] = np.array([t.encode() for t in TAPS])
        f.attrs["seed"] = a.seed
        for name, (h, w) in IMAGES.items():
            img = rng.random((1, 3, h, w), dtype=np.float32)
            f.create_dataset(f"{name}/image", data=img)
            x = torch.from_numpy(img).double().requires_grad_(True)
            acts = forward(layers, (x - mean) / std)
            loss = sum(0.5 * (v * v).sum() / v.numel() for v in acts.values())
            loss.backward()
            for tap, v in acts.items():
                f.create_dataset(f"{name}/{tap}", data=v.detach().numpy())
            f.create_dataset(f"{name}/grad", data=x.grad.numpy())
            f.create_dataset(f"{name}/loss", data=loss.item())
            with torch.no_grad():
                xk = 255.0 * torch.from_numpy(img).double()[:, [2, 1, 0]] - caffe
                for tap, v in forward(keras_layers, xk).items():
                    f.create_dataset(f"keras/{name}/{tap}", data=v.numpy())

        # Gatys texture loss through the average-pooled network (as the texture command runs
        # it): the loss and its image gradient for x (67x93) against a 64x64 source.
        src = rng.random((1, 3, 64, 64), dtype=np.float32)
        img = rng.random((1, 3, 67, 93), dtype=np.float32)
        f.create_dataset("gatys/source", data=src)
        f.create_dataset("gatys/image", data=img)
        with torch.no_grad():
            targets = forward(layers, (torch.from_numpy(src).double() - mean) / std,
                              pool=F.avg_pool2d)
        x = torch.from_numpy(img).double().requires_grad_(True)
        loss = gram_loss(forward(layers, (x - mean) / std, pool=F.avg_pool2d), targets)
        loss.backward()
        f.create_dataset("gatys/loss", data=loss.item())
        f.create_dataset("gatys/grad", data=x.grad.numpy())

    write_vgg16_fc_pair(os.path.join(a.out, "keras_vgg16_fc.h5"),
                        os.path.join(a.out, "canonical_vgg16_fc.h5"), np.random.default_rng(a.seed))
    print(f"torch_reference: wrote {a.out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Converts a torchvision VGG16/VGG19 into preimage's canonical HDF5 weights layout.

  /usr/bin/python3 weights/convert_torchvision.py --arch vgg19 --state-dict vgg19-dcbb9e9d.pth \
      --out vgg19.h5
  /usr/bin/python3 weights/convert_torchvision.py --arch vgg19 --random-init --seed 0 --out r.h5

The canonical layout is documented in weights/README.md. torchvision models take RGB images in
[0, 1] normalized by the ImageNet mean/std, so the file says so (color_order RGB, value_range 1).
fc6-fc8 (torchvision's classifier.0/3/6) are written when present; torchvision flattens pool5 in
(C,H,W) order, which is the canonical order, so their weights are copied as they are.
"""
import argparse
import os
import sys

import h5py
import numpy as np

FORMAT = "preimage-vgg-1"
BLOCKS = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}
WIDTHS = [64, 128, 256, 512, 512]
CLASSIFIER = {0: "fc6", 3: "fc7", 6: "fc8"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def feature_names(arch):
    """torchvision `features` index of each convolution -> canonical name (conv1_1 ...).

    features is, per block, (Conv2d, ReLU) x convs followed by one MaxPool2d.
    """
    names, index = {}, 0
    for block, convs in enumerate(BLOCKS[arch], start=1):
        for k in range(1, convs + 1):
            names[index] = f"conv{block}_{k}"
            index += 2
        index += 1
    return names


def expected_conv_shapes(arch):
    shapes, channels = {}, 3
    for block, convs in enumerate(BLOCKS[arch], start=1):
        for k in range(1, convs + 1):
            shapes[f"conv{block}_{k}"] = (WIDTHS[block - 1], channels, 3, 3)
            channels = WIDTHS[block - 1]
    return shapes


def canonical_layers(state_dict, arch, include_fc=True):
    """state_dict (torch tensors) -> {name: (weight float32, bias float32)} in canonical order.

    Raises ValueError naming the key when the state_dict is not a plain torchvision VGG of arch.
    """
    names = feature_names(arch)
    expected = expected_conv_shapes(arch)
    layers = {}
    for index, name in names.items():
        for part in ("weight", "bias"):
            if f"features.{index}.{part}" not in state_dict:
                raise ValueError(f"state_dict has no 'features.{index}.{part}' ({name} of {arch}; "
                                 "is --arch right?)")
        w = state_dict[f"features.{index}.weight"].detach().cpu().numpy().astype(np.float32)
        b = state_dict[f"features.{index}.bias"].detach().cpu().numpy().astype(np.float32)
        if w.shape != expected[name] or b.shape != (expected[name][0],):
            raise ValueError(f"'features.{index}.weight' has shape {tuple(w.shape)}, expected "
                             f"{expected[name]} ({name} of {arch})")
        layers[name] = (w, b)
    known = {f"features.{i}.{p}" for i in names for p in ("weight", "bias")}
    extra = [k for k in state_dict if k.startswith("features.") and k not in known]
    if extra:
        raise ValueError(f"state_dict has unexpected key '{extra[0]}': not a plain {arch} "
                         "(batch-norm variants are not supported)")
    if include_fc:
        features = 512 * 7 * 7
        for index, name in CLASSIFIER.items():
            key = f"classifier.{index}.weight"
            if key not in state_dict:
                break
            w = state_dict[key].detach().cpu().numpy().astype(np.float32)
            b = state_dict[f"classifier.{index}.bias"].detach().cpu().numpy().astype(np.float32)
            if w.ndim != 2 or w.shape[1] != features or (name != "fc8" and w.shape[0] != 4096):
                raise ValueError(f"'{key}' has shape {tuple(w.shape)}, expected "
                                 f"({'N' if name == 'fc8' else 4096}, {features})")
            layers[name] = (w, b)
            features = w.shape[0]
    return layers


def write_canonical(path, layers, arch, *, color_order="RGB", value_range=1.0,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, random_init=False, source=""):
    """Writes layers ({name: (weight, bias)}) in the canonical layout, atomically."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["arch"] = arch
            f.attrs["color_order"] = color_order
            f.attrs["value_range"] = np.float32(value_range)
            f.attrs["mean"] = np.asarray(mean, dtype=np.float32)
            f.attrs["std"] = np.asarray(std, dtype=np.float32)
            f.attrs["random_init"] = np.int64(1 if random_init else 0)
            if source:
                f.attrs["source"] = source
            for name, (w, b) in layers.items():
                g = f.create_group(name)
                g.create_dataset("weight", data=np.ascontiguousarray(w, dtype=np.float32))
                g.create_dataset("bias", data=np.ascontiguousarray(b, dtype=np.float32))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def random_model(arch, seed):
    """torchvision's VGG with its default random initialization, seeded."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    return getattr(torchvision.models, arch)()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(BLOCKS), default="vgg19")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dict", metavar="FILE.pth", help="torchvision state_dict (.pth)")
    src.add_argument("--random-init", action="store_true",
                     help="torchvision's default random initialization (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    p.add_argument("--no-fc", action="store_true", help="write the convolutions only")
    p.add_argument("--out", required=True, metavar="FILE.h5")
    a = p.parse_args()
    if a.seed < 0:
        p.error("--seed must be a non-negative integer")

    import torch
    if a.random_init:
        state = random_model(a.arch, a.seed).state_dict()
        source = f"torchvision {a.arch}() random init, seed {a.seed}"
    else:
        if not os.path.isfile(a.state_dict):
            sys.exit(f"error: --state-dict '{a.state_dict}': no such file")
        state = torch.load(a.state_dict, map_location="cpu")
        if hasattr(state, "state_dict"):
            state = state.state_dict()
        source = os.path.basename(a.state_dict)
    try:
        layers = canonical_layers(state, a.arch, include_fc=not a.no_fc)
    except ValueError as e:
        sys.exit(f"error: {a.state_dict or 'random init'}: {e}")
    write_canonical(a.out, layers, a.arch, random_init=a.random_init, source=source)
    fc = [n for n in ("fc6", "fc7", "fc8") if n in layers]
    print(f"wrote {a.out}: {a.arch}, {len(layers) - len(fc)} conv layers"
          + (f" + {', '.join(fc)}" if fc else "") + ", RGB [0,1] ImageNet mean/std")


if __name__ == "__main__":
    main()

"""The Python package against torchvision and on its own: forward / backward vs torchvision's VGG-19
on the same converted weights at an odd size, a 10-iteration texture, progress / cancellation,
the GIL released during recipes, the array conversion rules, and errors."""
import os
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convert_torchvision as conv  # weights/, put on sys.path by conftest.py
import preimage

H, W = 97, 131
TAPS = ["relu1_1", "relu2_2", "pool2", "relu3_1", "relu4_1", "pool4", "relu5_4"]


def torchvision_taps(model, x, avg_pool=False):
    """{tap: float64 activation} of torchvision's model.features, canonical names."""
    names, index = {}, 0
    for block, convs in enumerate(conv.BLOCKS["vgg19"], start=1):
        for k in range(1, convs + 1):
            names[index], names[index + 1] = f"conv{block}_{k}", f"relu{block}_{k}"
            index += 2
        names[index] = f"pool{block}"
        index += 1
    out = {}
    for i, layer in enumerate(model.features):
        if avg_pool and isinstance(layer, torch.nn.MaxPool2d):
            x = F.avg_pool2d(x, 2, 2)
        else:
            x = layer(x)
        out[names[i]] = x
    return out


@pytest.fixture(scope="module")
def torch_vgg19(tmp_path_factory):
    """torchvision's VGG-19 (seeded init, random biases) in float64 and the same weights as a
    canonical .h5 written by weights/convert_torchvision.py."""
    model = conv.random_model("vgg19", 3)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in model.features:
            if isinstance(m, torch.nn.Conv2d):
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
    path = str(tmp_path_factory.mktemp("weights") / "vgg19.h5")
    conv.write_canonical(path, conv.canonical_layers(model.state_dict(), "vgg19", include_fc=False),
                         "vgg19", random_init=True, source="test/python seed 3")
    model.classifier = torch.nn.Identity()
    return model.double().eval(), path


def normalized(image):
    mean = torch.tensor(conv.IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(conv.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    return (torch.from_numpy(image.astype(np.float64)) - mean) / std


def test_forward_matches_torchvision_at_odd_size(torch_vgg19):
    model, path = torch_vgg19
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, H, W), dtype=np.float32)
    net = preimage.Network.load(path)
    assert net.arch == "vgg19" and net.identity.startswith(path)
    ours = net.forward(image, taps=TAPS)
    assert sorted(ours) == sorted(TAPS)
    with torch.no_grad():
        ref = torchvision_taps(model, normalized(image))
    for tap in TAPS:
        r = ref[tap].numpy()
        assert ours[tap].shape == r.shape, tap
        assert ours[tap].dtype == np.float32
        err = np.abs(ours[tap] - r).max() / np.abs(r).max()
        assert err < 1e-4, f"{tap}: max error {err:.2e} relative to the largest activation"
    # The shapes at 97x131 follow floor pooling: 97 -> 48 -> 24 -> 12 -> 6.
    assert ours["pool4"].shape == (2, 512, 6, 8)


def test_backward_matches_torchvision(torch_vgg19):
    model, path = torch_vgg19
    rng = np.random.default_rng(1)
    image = rng.random((1, 3, H, W), dtype=np.float32)
    # Average pooling: max-pool near-ties flip under float32 rounding (test/CMakeLists.txt).
    net = preimage.Network.load(path, avg_pool=True)
    taps = ["relu2_1", "relu4_1"]
    acts = net.forward(image, taps=taps)
    seeds = {t: rng.standard_normal(a.shape).astype(np.float32) for t, a in acts.items()}
    grad = net.backward(seeds)
    x = normalized(image).requires_grad_(True)
    ref = torchvision_taps(model, x, avg_pool=True)
    loss = sum((ref[t] * torch.from_numpy(seeds[t].astype(np.float64))).sum() for t in taps)
    loss.backward()
    # d/d image = d/dx_normalized / std.
    std = torch.tensor(conv.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    r = (x.grad / std).numpy()
    assert grad.shape == (1, 3, H, W)
    err = np.abs(grad - r).max() / np.abs(r).max()
    assert err < 1e-4, f"image gradient: max error {err:.2e}"


def test_conversion_rules_agree():
    """(N,3,H,W) float32, (H,W,3), float64, uint8 and non-contiguous views give the same taps."""
    net = preimage.Network.load("random:0")
    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    nchw = np.ascontiguousarray((u8.astype(np.float32) / 255).transpose(2, 0, 1)[None])
    want = net.forward(nchw, taps=["relu2_1"])["relu2_1"]
    for variant in (u8, u8.astype(np.float32) / 255, nchw.astype(np.float64),
                    np.asfortranarray(nchw), (u8.astype(np.float32) / 255).transpose(2, 0, 1)[None]):
        got = net.forward(variant, taps=["relu2_1"])["relu2_1"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_outputs_own_their_memory():
    """Taps are copies (the next forward does not change them); results view engine memory."""
    net = preimage.Network.load("random:0")
    a = net.forward(np.full((1, 3, 16, 16), 0.2, np.float32), taps=["relu1_1"])["relu1_1"]
    before = a.copy()
    net.forward(np.full((1, 3, 16, 16), 0.9, np.float32), taps=["relu1_1"])
    np.testing.assert_array_equal(a, before)
    assert a.flags.owndata is False and a.base is not None  # a capsule holding the Tensor


def test_texture_10_iterations(brick):
    net = preimage.Network.load("random:0", avg_pool=True)
    seen = []
    r = preimage.synthesize_texture(net, brick, size="40", iterations=10,
                                    layers="relu1_1,relu2_1,relu3_1", progress=seen.append)
    assert r.image.shape == (1, 3, 40, 40) and r.image.dtype == np.float32
    assert 0.0 <= r.image.min() and r.image.max() <= 1.0
    assert r.term_labels == ["gram:relu1_1", "gram:relu2_1", "gram:relu3_1"]
    assert r.loss.shape == (10,) and r.terms.shape == (10, 3)
    assert r.loss[-1] < 0.5 * r.loss[0], r.loss
    np.testing.assert_allclose(r.terms.sum(axis=1), r.loss, rtol=1e-6)
    assert [p["iteration"] for p in seen] == list(range(1, 11))
    assert set(seen[0]["terms"]) == set(r.term_labels)
    assert r.image_hwc.shape == (40, 40, 3)
    # The result's arrays view it: the image stays valid after the result object is dropped.
    img = r.image
    del r
    assert np.isfinite(img).all()


def test_progress_false_cancels(brick):
    net = preimage.Network.load("random:0", avg_pool=True)
    r = preimage.synthesize_texture(net, brick, size="24", iterations=50, layers="relu1_1",
                                    progress=lambda p: p["iteration"] < 3)
    assert r.cancelled and len(r.loss) == 3


def test_exception_in_progress_propagates(brick):
    net = preimage.Network.load("random:0", avg_pool=True)

    def boom(p):
        raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        preimage.synthesize_texture(net, brick, size="24", iterations=5, layers="relu1_1",
                                    progress=boom)


def test_gil_released_during_recipe(brick):
    net = preimage.Network.load("random:0", avg_pool=True)
    done, ticks = threading.Event(), [0]

    def run():
        preimage.synthesize_texture(net, brick, size="32", iterations=5, layers="relu1_1,relu2_1")
        done.set()

    t = threading.Thread(target=run)
    t.start()
    while not done.is_set():
        ticks[0] += 1
    t.join()
    # With the GIL held for the whole call this thread would barely run (a switch interval).
    assert ticks[0] > 10000


def test_options_objects_and_keywords():
    o = preimage.TextureOptions()
    assert o.iterations == 100 and o.layers[0] == ("relu1_1", 1.0)
    o.layers = {"relu2_1": 0.5}
    assert o.layers == [("relu2_1", 0.5)]
    o.layers = ["relu1_1", ("relu3_1", 2)]
    assert o.layers == [("relu1_1", 1.0), ("relu3_1", 2.0)]
    s = preimage.StyleOptions()
    assert s.init == "input" and s.content_layers == [("relu4_2", 1.0)]
    assert preimage.InvertOptions().descriptor is None
    inv = preimage.InvertOptions()
    inv.descriptor = "hog"
    assert inv.descriptor == "hog"
    with pytest.raises(preimage.Error, match="hog, hog-uoctti, dsift"):
        inv.descriptor = "sift"
    assert inv.init_image is None
    inv.init_image = np.full((9, 11, 3), 0.25, np.float32)
    assert inv.init_image.shape == (1, 3, 9, 11) and float(inv.init_image.max()) == 0.25


def test_init_image_is_used(brick):
    net = preimage.Network.load("random:0")
    start = np.zeros((1, 3, 32, 32), np.float32)
    r = preimage.invert(net, preimage.resize(brick, 32, 32), init="image", init_image=start,
                        iterations=1, layers="relu1_1", tv=0)
    # One L-BFGS iteration from black moves towards the target but not all the way to it.
    assert r.image.shape == (1, 3, 32, 32) and 0 < float(r.image.mean()) < float(brick.mean())


def test_every_recipe_runs(brick):
    """Two iterations of each recipe at a small size: shapes and history lengths."""
    small = preimage.resize(brick, 32, 32)
    avg = preimage.Network.load("random:0", avg_pool=True)
    mx = preimage.Network.load("random:0")
    common = dict(iterations=2, layers="relu2_1")
    results = {
        "invert": preimage.invert(mx, small, **common),
        "invert_hog": preimage.invert(None, small, iterations=2, descriptor="hog"),
        "style": preimage.style_transfer(avg, small, [small, brick], content_layers="relu3_1",
                                         style_blend_weights=[1, 3], init="noise", **common),
        "caricature": preimage.caricature(mx, small, **common),
        "visualize": preimage.visualize(mx, None, size="32", channel=5, **common),
        "dream": preimage.dream(mx, small, octaves=1, **common),
    }
    for name, r in results.items():
        assert r.image.shape == (1, 3, 32, 32), name
        assert len(r.loss) >= 1 and np.isfinite(r.loss).all(), name
    assert any(k.startswith("normalized_reconstruction_error") for k in results["invert"].metrics)


def test_analysis_calls(brick):
    net = preimage.Network.load("random:0")
    small = preimage.resize(brick, 32, 32)
    for method in ("gradient", "guided", "occlusion"):
        m = preimage.saliency(net, small, "relu3_1", 7, method=method, patch=8, stride=8)
        assert m.shape == (32, 32) and np.isfinite(m).all(), method
    a = preimage.attack(net, small, "relu3_1", 7, steps=3)
    assert a["image"].shape == (1, 3, 32, 32) and a["score_after"] > a["score_before"]
    assert a["linf"] <= 8 / 255 + 1e-6
    f = preimage.features(net, small, "relu3_1", size=32)
    assert f.shape == (256,)
    with pytest.raises(preimage.Error, match="channel"):
        preimage.saliency(net, small, "relu3_1", 300)


def test_image_round_trip(tmp_path, brick):
    path = str(tmp_path / "out.png")
    preimage.save_png(preimage.to_hwc(brick), path)
    back = preimage.load_image(path)
    assert back.shape == brick.shape
    assert np.abs(back - brick).max() <= 0.5 / 255 + 1e-6
    assert [p for p in os.listdir(tmp_path) if p != "out.png"] == []  # no temporary left


# ---- errors ----------------------------------------------------------------------------

def test_error_is_a_runtime_error():
    assert issubclass(preimage.Error, RuntimeError)


def test_bad_weights_path(tmp_path):
    with pytest.raises(preimage.Error, match="no_such.h5"):
        preimage.Network.load(str(tmp_path / "no_such.h5"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(preimage.Error, match="bad.h5"):
        preimage.Network.load(str(bad))
    with pytest.raises(preimage.Error, match="vgg16"):
        preimage.Network.load("random:0", arch="resnet50")


def test_bad_layer_name(brick):
    net = preimage.Network.load("random:0")
    with pytest.raises(preimage.Error, match="relu9_9"):
        net.forward(brick, taps=["relu9_9"])
    with pytest.raises(preimage.Error, match="relu9_9"):
        preimage.invert(net, brick, layers="relu9_9", iterations=1)
    net.forward(brick, taps=["relu1_1"])
    with pytest.raises(preimage.Error, match="relu2_1"):
        net.backward({"relu2_1": np.zeros((1, 128, 128, 128), np.float32)})


def test_bad_arrays():
    net = preimage.Network.load("random:0")
    with pytest.raises(TypeError, match="int64"):
        net.forward(np.zeros((1, 3, 8, 8), np.int64), taps=["relu1_1"])
    with pytest.raises(TypeError, match="ndarray"):
        net.forward([[0.5]], taps=["relu1_1"])
    with pytest.raises(preimage.Error, match=r"\(N,3,H,W\) or \(H,W,3\), got \(8, 8\)"):
        net.forward(np.zeros((8, 8), np.float32), taps=["relu1_1"])
    with pytest.raises(preimage.Error, match=r"got \(1, 4, 8, 8\)"):
        net.forward(np.zeros((1, 4, 8, 8), np.float32), taps=["relu1_1"])
    a = net.forward(np.zeros((1, 3, 8, 8), np.float32), taps=["relu1_1"])["relu1_1"]
    with pytest.raises(preimage.Error, match="relu1_1"):
        net.backward({"relu1_1": a[:, :10]})


def test_bad_keyword_and_values(brick):
    net = preimage.Network.load("random:0", avg_pool=True)
    with pytest.raises(TypeError, match="'iteratons'"):
        preimage.synthesize_texture(net, brick, iteratons=3)
    with pytest.raises(TypeError, match="either options= or keyword"):
        preimage.synthesize_texture(net, brick, options=preimage.TextureOptions(), size="8")
    with pytest.raises(preimage.Error, match="options.size"):
        preimage.synthesize_texture(net, brick, size="-3", iterations=1)

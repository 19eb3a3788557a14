"""preimage: pre-images of convolutional networks -- inversion, texture synthesis, style
transfer, activation maximization, DeepDream, caricatures and saliency -- on VGG-16/19.

    import preimage
    net = preimage.Network.load("random:0", arch="vgg19", avg_pool=True)
    r = preimage.synthesize_texture(net, preimage.load_image("brick.png"), size="64", iterations=10)
    preimage.save_png(r.image, "texture.png")

Images are NumPy arrays: (N,3,H,W) or one (H,W,3) image, RGB in [0,1] (float32 is used as is,
other floats are cast, uint8 is scaled by 1/255). Errors of the engine raise preimage.Error.
The guide with a worked example is docs/python.md.
"""
from ._core import *  # noqa: F401,F403
from ._core import Error, __git_commit__, __version__  # noqa: F401


def to_hwc(image):
    """(1,3,H,W) or (3,H,W) array -> (H,W,3) view (what matplotlib's imshow takes)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise Error(f"to_hwc: expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    return image.transpose(1, 2, 0)

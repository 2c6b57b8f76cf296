"""What the reference scripts share: the photos they run on, their output folder, and the steps
that give seeded random weights the behaviour of a trained model's (normalisation statistics
taken from a photo, class scores that are neither all equal nor saturated).

Each script is run as `SCRIPT --out DIR [--stamp FILE]`; Python finds this module beside it.
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image

# Real photos shipped by Debian's python3-skimage.
PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"


def load_rgb(name):
    """A photo as an HxWx3 uint8 array."""
    return np.asarray(Image.open(os.path.join(PHOTOS, name)).convert("RGB"))


def photo_tensor(name):
    """A photo as the [3, H, W] float image in [0, 1] torchvision's detectors take."""
    return torch.from_numpy(load_rgb(name).copy()).permute(2, 0, 1).float() / 255


def output_args(parser=None):
    """Parses --out DIR (made if missing) and --stamp FILE, and any options `parser` adds."""
    parser = parser or argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stamp")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


def write_expected(args, expected):
    """Writes OUT/expected.json, then the stamp that tells the build the references are made."""
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f)
    if args.stamp:
        open(args.stamp, "w").write("ok\n")


def set_size(model, min_size, max_size):
    """Sets a Faster R-CNN's input size, and makes its RoI pooling forget the scales it cached."""
    model.transform.min_size = (min_size,)
    model.transform.max_size = max_size
    model.roi_heads.box_roi_pool.scales = None
    model.roi_heads.box_roi_pool.map_levels = None


def calibrate_norms(model, norm_types, gen, run):
    """Gives every normalisation layer of `model` (of `norm_types`) the statistics of its input while
    run() runs, perturbed, and a random affine part, all drawn from `gen` in the order the layers
    run: random weights alone make a ResNet without normalisation blow up, and all the buffers of
    a layer are then exercised. Returns the layers."""

    def stats(module, inputs):
        x = inputs[0]
        n = x.shape[1]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) * (0.8 + 0.4 * torch.rand(n, generator=gen)))
        module.weight.copy_(0.5 + torch.rand(n, generator=gen))
        module.bias.copy_(0.1 * torch.randn(n, generator=gen))
        if getattr(module, "num_batches_tracked", None) is not None:
            module.num_batches_tracked.fill_(int(torch.randint(1, 10 ** 6, (1,), generator=gen)))

    norms = [m for m in model.modules() if isinstance(m, norm_types)]
    hooks = [m.register_forward_pre_hook(stats) for m in norms]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return norms


def spread_class_scores(model, photo, min_size, max_size, spread=2.0):
    """Scales the class logits of a Faster R-CNN so that, on `photo`, they spread by `spread` (their
    standard deviation): softmax scores neither all equal nor saturated at 1, so that their order
    is well defined."""
    captured = {}
    cls_score = model.roi_heads.box_predictor.cls_score
    hook = cls_score.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o))
    try:
        with torch.no_grad():
            set_size(model, min_size, max_size)
            model([photo_tensor(photo)])
    finally:
        hook.remove()
    factor = spread / captured["logits"].std().item()
    with torch.no_grad():
        cls_score.weight.mul_(factor)
        cls_score.bias.mul_(factor)


def random_targets(gen, sizes, num_classes, boxes_per_image=4):
    """Training targets: for each (height, width), boxes in the image and labels in 1..num_classes-1."""
    targets = []
    for h, w in sizes:
        n = boxes_per_image
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = 20 + torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.35, h * 0.35])
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(1, num_classes, (n,), generator=gen)})
    return targets

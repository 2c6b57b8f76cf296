#!/usr/bin/python3
"""Reference outputs of torchvision's fasterrcnn_resnet50_fpn for the C++ parity tests.

Builds the model with seeded random weights (no pretrained weights), makes its
FrozenBatchNorm statistics non-trivial so they are exercised too, saves the state dict, and records
proposals and detections on real photos at two input sizes, with box_score_thresh=0 so that there are
100 detections to compare.

Usage: resnet50_reference.py --out DIR [--stamp FILE]
"""
import argparse
import json
import os

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"

# (name, min_size, max_size, photos run as one batch)
CASES = [
    ("batch_320", 320, 512, ["astronaut.png", "coffee.png"]),
    ("single_416", 416, 640, ["chelsea.png"]),
]


def build_model(seed, min_size, max_size):
    # What fasterrcnn_resnet50_fpn builds whenever it is given weights (FrozenBatchNorm2d, 3 trainable
    # layers), here with random ones: with weights=None it would switch to BatchNorm2d.
    torch.manual_seed(seed)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    model = FasterRCNN(backbone, num_classes=91, min_size=min_size, max_size=max_size, box_score_thresh=0.0)
    # Random weights alone make a ResNet-50 without normalisation blow up; give every
    # FrozenBatchNorm2d the statistics of its input on a real photo (so the features stay in a
    # sane range), then a random affine part, so that all four buffers are exercised.
    gen = torch.Generator().manual_seed(seed + 1)

    def calibrate(module, inputs):
        x = inputs[0]
        n = x.shape[1]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) * (0.8 + 0.4 * torch.rand(n, generator=gen)))
        module.weight.copy_(0.5 + torch.rand(n, generator=gen))
        module.bias.copy_(0.1 * torch.randn(n, generator=gen))

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    with torch.no_grad():
        model.eval()
        model.backbone(torch.from_numpy(load_rgb("astronaut.png").copy()).permute(2, 0, 1)[None].float() / 255)
    for h in hooks:
        h.remove()
    # Scale the class scores so that their logits spread by about 2: softmax scores neither all
    # equal nor saturated at 1, so that their order is well defined.
    logits = {}
    hook = model.roi_heads.box_predictor.cls_score.register_forward_hook(lambda m, i, o: logits.setdefault("x", o))
    with torch.no_grad():
        model.transform.min_size = (min_size,)
        model([torch.from_numpy(load_rgb("coffee.png").copy()).permute(2, 0, 1).float() / 255])
        hook.remove()
        factor = 2.0 / logits["x"].std().item()
        model.roi_heads.box_predictor.cls_score.weight.mul_(factor)
        model.roi_heads.box_predictor.cls_score.bias.mul_(factor)
    return model.eval()


def load_rgb(name):
    return np.asarray(Image.open(os.path.join(PHOTOS, name)).convert("RGB"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stamp")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)

    model = build_model(0, CASES[0][1], CASES[0][2])
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))

    manifest = {"torchvision": torchvision.__version__, "cases": []}
    captured = {}
    model.rpn.register_forward_hook(lambda m, i, o: captured.__setitem__("proposals", o[0]))
    for name, min_size, max_size, photos in CASES:
        model.transform.min_size = (min_size,)
        model.transform.max_size = max_size
        # MultiScaleRoIAlign caches its scales on the first call; reset them per case.
        model.roi_heads.box_roi_pool.scales = None
        model.roi_heads.box_roi_pool.map_levels = None
        images = []
        for photo in photos:
            rgb = load_rgb(photo)
            raw = os.path.join(args.out, photo + ".rgb")
            rgb.tofile(raw)
            images.append({"file": raw, "photo": os.path.join(PHOTOS, photo),
                           "height": rgb.shape[0], "width": rgb.shape[1]})
        tensors = [torch.from_numpy(load_rgb(p).copy()).permute(2, 0, 1).float() / 255 for p in photos]
        with torch.no_grad():
            detections = model(tensors)
        for image, det, props in zip(images, detections, captured["proposals"]):
            image["boxes"] = det["boxes"].tolist()
            image["labels"] = det["labels"].tolist()
            image["scores"] = det["scores"].tolist()
            image["proposals"] = props.tolist()
        manifest["cases"].append({"name": name, "min_size": min_size, "max_size": max_size, "images": images})

    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(manifest, f)
    if args.stamp:
        open(args.stamp, "w").write("ok\n")


if __name__ == "__main__":
    main()

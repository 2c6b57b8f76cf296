#!/usr/bin/python3
"""Reference outputs of torchvision's fasterrcnn_resnet50_fpn for the C++ parity tests.

Builds the model with seeded random weights (no pretrained weights), makes its
FrozenBatchNorm statistics non-trivial so they are exercised too, saves the state dict, and records
proposals and detections on real photos at two input sizes, with box_score_thresh=0 so that there are
100 detections to compare.

Usage: resnet50_reference.py --out DIR [--stamp FILE]
"""
import os

import torch
import torchvision
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from reference_common import (PHOTOS, calibrate_norms, load_rgb, output_args, photo_tensor, set_size,
                              spread_class_scores, write_expected)

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
    model.eval()
    # The statistics of the backbone's input on a real photo, so the features stay in a sane range.
    gen = torch.Generator().manual_seed(seed + 1)
    calibrate_norms(model, FrozenBatchNorm2d, gen, lambda: model.backbone(photo_tensor("astronaut.png")[None]))
    spread_class_scores(model, "coffee.png", min_size, max_size)
    return model.eval()


def main():
    args = output_args()
    torch.set_num_threads(2)

    model = build_model(0, CASES[0][1], CASES[0][2])
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))

    manifest = {"torchvision": torchvision.__version__, "cases": []}
    captured = {}
    model.rpn.register_forward_hook(lambda m, i, o: captured.__setitem__("proposals", o[0]))
    for name, min_size, max_size, photos in CASES:
        set_size(model, min_size, max_size)
        images = []
        for photo in photos:
            rgb = load_rgb(photo)
            raw = os.path.join(args.out, photo + ".rgb")
            rgb.tofile(raw)
            images.append({"file": raw, "photo": os.path.join(PHOTOS, photo),
                           "height": rgb.shape[0], "width": rgb.shape[1]})
        tensors = [photo_tensor(p) for p in photos]
        with torch.no_grad():
            detections = model(tensors)
        for image, det, props in zip(images, detections, captured["proposals"]):
            image["boxes"] = det["boxes"].tolist()
            image["labels"] = det["labels"].tolist()
            image["scores"] = det["scores"].tolist()
            image["proposals"] = props.tolist()
        manifest["cases"].append({"name": name, "min_size": min_size, "max_size": max_size, "images": images})

    write_expected(args, manifest)


if __name__ == "__main__":
    main()

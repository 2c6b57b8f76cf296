#!/usr/bin/python3
"""Reference losses and gradients of torchvision's Faster R-CNN in training mode.

A ResNet-18-FPN Faster R-CNN (torchvision's _resnet_fpn_extractor with FrozenBatchNorm2d, as
fasterrcnn_resnet50_fpn builds its backbone) with seeded random weights, two real photos and fixed
targets. The samplers are made deterministic by a batch_size_per_image so large that every candidate
is kept. Records the four losses and the gradients of a few parameters.

Usage: training_reference.py --out DIR [--stamp FILE]
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from torchvision.models import resnet18
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

PHOTOS = "/usr/lib/python3/dist-packages/skimage/data"
KEEP_ALL = 10 ** 7
GRADIENTS = [
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_head.fc6.weight",
    "rpn.head.cls_logits.weight",
    "rpn.head.bbox_pred.weight",
    "backbone.fpn.layer_blocks.0.0.weight",
    "backbone.body.layer4.0.conv1.weight",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stamp")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    torch.manual_seed(0)

    backbone = _resnet_fpn_extractor(resnet18(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    model = FasterRCNN(backbone, num_classes=7, min_size=256, max_size=400,
                       rpn_batch_size_per_image=KEEP_ALL, box_batch_size_per_image=KEEP_ALL)
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))

    images, targets, records = [], [], []
    gen = torch.Generator().manual_seed(1)
    for photo in ("astronaut.png", "coffee.png"):
        rgb = np.asarray(Image.open(os.path.join(PHOTOS, photo)).convert("RGB")).copy()
        raw = os.path.join(args.out, photo + ".rgb")
        rgb.tofile(raw)
        h, w = rgb.shape[:2]
        n = 4
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = 20 + torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.35, h * 0.35])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, 7, (n,), generator=gen)
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": boxes, "labels": labels})
        records.append({"file": raw, "height": h, "width": w, "boxes": boxes.tolist(), "labels": labels.tolist()})

    model.train()
    losses = model(images, targets)
    sum(losses.values()).backward()
    params = dict(model.named_parameters())
    grads = {}
    for name in GRADIENTS:
        g = params[name].grad
        path = os.path.join(args.out, name + ".grad")
        g.detach().numpy().astype("<f4").tofile(path)
        grads[name] = {"file": path, "shape": list(g.shape)}
    ref = {"num_classes": 7, "min_size": 256, "max_size": 400, "keep_all": KEEP_ALL, "images": records,
           "losses": {k: v.item() for k, v in losses.items()}, "gradients": grads}
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(ref, f)
    if args.stamp:
        open(args.stamp, "w").write("ok\n")


if __name__ == "__main__":
    main()

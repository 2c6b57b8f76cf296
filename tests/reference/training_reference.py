#!/usr/bin/python3
"""Reference losses and gradients of torchvision's Faster R-CNN in training mode.

A ResNet-18-FPN Faster R-CNN (torchvision's _resnet_fpn_extractor with FrozenBatchNorm2d, as
fasterrcnn_resnet50_fpn builds its backbone) with seeded random weights, two real photos and fixed
targets. The samplers are made deterministic by a batch_size_per_image so large that every candidate
is kept. Records the four losses and the gradients of a few parameters; and the losses of the
same batch with the second photo's target empty (an image without objects, whose proposals are
all background).

Usage: training_reference.py --out DIR [--stamp FILE]
"""
import os

import torch
from torchvision.models import resnet18
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from reference_common import load_rgb, output_args, random_targets, write_expected

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
    args = output_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    backbone = _resnet_fpn_extractor(resnet18(weights=None, norm_layer=FrozenBatchNorm2d), 3)
    model = FasterRCNN(backbone, num_classes=7, min_size=256, max_size=400,
                       rpn_batch_size_per_image=KEEP_ALL, box_batch_size_per_image=KEEP_ALL)
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))

    images, records = [], []
    for photo in ("astronaut.png", "coffee.png"):
        rgb = load_rgb(photo).copy()
        raw = os.path.join(args.out, photo + ".rgb")
        rgb.tofile(raw)
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
        records.append({"file": raw, "height": rgb.shape[0], "width": rgb.shape[1]})
    targets = random_targets(torch.Generator().manual_seed(1), [(r["height"], r["width"]) for r in records], 7)
    for record, target in zip(records, targets):
        record.update(boxes=target["boxes"].tolist(), labels=target["labels"].tolist())

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
    model.zero_grad()
    without_objects = [targets[0], {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}]
    negative_losses = model(images, without_objects)
    sum(negative_losses.values()).backward()
    ref = {"num_classes": 7, "min_size": 256, "max_size": 400, "keep_all": KEEP_ALL, "images": records,
           "losses": {k: v.item() for k, v in losses.items()}, "gradients": grads,
           "losses_second_without_objects": {k: v.item() for k, v in negative_losses.items()}}
    write_expected(args, ref)


if __name__ == "__main__":
    main()

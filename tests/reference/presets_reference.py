#!/usr/bin/python3
"""Reference outputs of torchvision's fasterrcnn_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn
and fasterrcnn_mobilenet_v3_large_320_fpn for the C++ preset tests.

Each model is built as its torchvision builder builds it when given weights (BatchNorm2d for v2,
FrozenBatchNorm2d for MobileNetV3, 3 trainable backbone layers), with seeded random weights whose
normalisation statistics come from a real photo (so that they are exercised and the features stay
in a sane range). For each model the script saves the state dict and records:
- its keys and shapes, and which parameters train;
- proposals and detections (box_score_thresh=0; 300 proposals after NMS for v2) on real photos
  at two input sizes;
- the four training losses and a few gradients on two photos with fixed targets, with samplers
  that keep every candidate so that they are deterministic (and 300 proposals per image).
One model's weights are also saved in torch.save's legacy (pre-zip) format.

Usage: presets_reference.py --out DIR [--stamp FILE]
"""
import math
import os

import torch
import torchvision
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNConvFCHead, _default_anchorgen
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops.misc import FrozenBatchNorm2d

from reference_common import (calibrate_norms, load_rgb, output_args, photo_tensor, random_targets, set_size,
                              spread_class_scores, write_expected)

KEEP_ALL = 10 ** 7

# name, seed, (case name, min_size, max_size, photos run as one batch) x 2, gradients compared
PRESETS = [
    ("fasterrcnn_resnet50_fpn_v2", 10,
     [("batch_256", 256, 416, ["astronaut.png", "coffee.png"]), ("single_320", 320, 512, ["chelsea.png"])],
     ["roi_heads.box_head.0.0.weight", "roi_heads.box_head.3.1.weight", "roi_heads.box_head.5.bias",
      "rpn.head.conv.1.0.weight", "backbone.fpn.inner_blocks.0.1.weight", "backbone.body.layer4.0.conv1.weight",
      "backbone.body.layer2.0.bn1.bias"]),
    ("fasterrcnn_mobilenet_v3_large_fpn", 20,
     [("batch_512", 512, 800, ["astronaut.png", "coffee.png"]), ("single_800", 800, 1333, ["chelsea.png"])],
     ["roi_heads.box_head.fc6.bias", "rpn.head.cls_logits.weight", "backbone.fpn.layer_blocks.1.0.weight",
      "backbone.body.16.0.weight", "backbone.body.13.block.2.fc1.weight", "backbone.body.7.block.1.0.weight"]),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", 30,
     [("batch_320", 320, 640, ["astronaut.png", "coffee.png"]), ("single_256", 256, 512, ["chelsea.png"])],
     ["roi_heads.box_predictor.bbox_pred.weight", "rpn.head.conv.0.0.weight",
      "backbone.fpn.inner_blocks.0.0.weight", "backbone.body.14.block.3.0.weight"]),
]
LEGACY = "fasterrcnn_mobilenet_v3_large_320_fpn"
TRAIN_SIZE = (256, 400)
# Proposals per image after NMS in training (torchvision: 2000): fewer keep the check quick, as
# every one goes through the box head.
TRAIN_POST_NMS = 300


def build(name, min_size, max_size):
    """The model torchvision's builder makes when given weights, before loading them."""
    kwargs = dict(min_size=min_size, max_size=max_size, box_score_thresh=0.0)
    if name == "fasterrcnn_resnet50_fpn_v2":
        # 300 proposals instead of 1000 keep the check quick: each goes through four 3x3
        # convolutions in the box head.
        kwargs["rpn_post_nms_top_n_test"] = 300
        backbone = _resnet_fpn_extractor(resnet50(weights=None), 3, norm_layer=nn.BatchNorm2d)
        anchors = _default_anchorgen()
        return FasterRCNN(
            backbone, num_classes=91, rpn_anchor_generator=anchors,
            rpn_head=RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2),
            box_head=FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024],
                                        norm_layer=nn.BatchNorm2d),
            **kwargs)
    backbone = _mobilenet_extractor(mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d), True, 3)
    anchor_sizes = ((32, 64, 128, 256, 512,),) * 3
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    kwargs["rpn_score_thresh"] = 0.05
    if name == "fasterrcnn_mobilenet_v3_large_320_fpn":
        kwargs.update(rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150)
    return FasterRCNN(backbone, 91, rpn_anchor_generator=anchors, **kwargs)


def calibrate(model, name, seed, min_size, max_size):
    set_size(model, min_size, max_size)
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    norms = calibrate_norms(model, (FrozenBatchNorm2d, nn.BatchNorm2d), gen,
                            lambda: model([photo_tensor("astronaut.png")]))
    called = sum(1 for m in norms if m.running_var.sum() != m.running_var.numel())
    assert called == len(norms), f"{name}: {len(norms) - called} normalisation layers not calibrated"

    captured = {}
    if name != "fasterrcnn_resnet50_fpn_v2":
        # Move the objectness logits so that rpn_score_thresh (0.05) removes part of the top
        # proposals: only the top 3% of the anchors score above it.
        hook = model.rpn.head.register_forward_hook(lambda m, i, o: captured.__setitem__("rpn", o[0]))
        with torch.no_grad():
            set_size(model, min_size, max_size)
            model([photo_tensor("astronaut.png")])
            hook.remove()
            logits = torch.cat([x.flatten() for x in captured["rpn"]])
            model.rpn.head.cls_logits.bias.add_(math.log(0.05 / 0.95) - torch.quantile(logits, 0.97).item())

    spread_class_scores(model, "coffee.png", min_size, max_size)


def main():
    args = output_args()
    torch.set_num_threads(2)

    photos = {}
    for photo in ("astronaut.png", "coffee.png", "chelsea.png"):
        rgb = load_rgb(photo)
        raw = os.path.join(args.out, photo + ".rgb")
        rgb.tofile(raw)
        photos[photo] = {"file": raw, "height": rgb.shape[0], "width": rgb.shape[1]}

    gen = torch.Generator().manual_seed(1)
    train_images = ["astronaut.png", "coffee.png"]
    targets = random_targets(gen, [(photos[p]["height"], photos[p]["width"]) for p in train_images], 91)

    manifest = {"torchvision": torchvision.__version__, "photos": photos, "presets": []}
    for name, seed, cases, gradients in PRESETS:
        torch.manual_seed(seed)
        model = build(name, cases[0][1], cases[0][2])
        calibrate(model, name, seed, cases[0][1], cases[0][2])
        entry = {"name": name, "weights": os.path.join(args.out, name + ".pth"), "cases": []}
        state = model.state_dict()
        torch.save(state, entry["weights"])
        if name == LEGACY:
            entry["legacy_weights"] = os.path.join(args.out, name + "_legacy.pth")
            torch.save(state, entry["legacy_weights"], _use_new_zipfile_serialization=False)
        entry["keys"] = [[k, list(v.shape)] for k, v in state.items()]
        entry["trainable"] = [k for k, p in model.named_parameters() if p.requires_grad]
        entry["rpn_post_nms_top_n_test"] = model.rpn._post_nms_top_n["testing"]

        captured = {}
        model.rpn.register_forward_hook(lambda m, i, o: captured.__setitem__("proposals", o[0]))
        for case, min_size, max_size, names in cases:
            set_size(model, min_size, max_size)
            with torch.no_grad():
                detections = model([photo_tensor(p) for p in names])
            images = []
            for photo, det, props in zip(names, detections, captured["proposals"]):
                images.append({"photo": photo, "boxes": det["boxes"].tolist(), "labels": det["labels"].tolist(),
                               "scores": det["scores"].tolist(), "proposals": props.tolist()})
            entry["cases"].append({"name": case, "min_size": min_size, "max_size": max_size, "images": images})

        # Training mode (last: BatchNorm2d updates its running statistics here).
        set_size(model, *TRAIN_SIZE)
        model.rpn.fg_bg_sampler.batch_size_per_image = KEEP_ALL
        model.roi_heads.fg_bg_sampler.batch_size_per_image = KEEP_ALL
        model.rpn._post_nms_top_n["training"] = TRAIN_POST_NMS
        model.train()
        losses = model([photo_tensor(p) for p in train_images], [dict(t) for t in targets])
        sum(losses.values()).backward()
        params = dict(model.named_parameters())
        grads = {}
        for g in gradients:
            path = os.path.join(args.out, name + "." + g + ".grad")
            params[g].grad.detach().numpy().astype("<f4").tofile(path)
            grads[g] = {"file": path, "shape": list(params[g].shape)}
        entry["training"] = {
            "min_size": TRAIN_SIZE[0], "max_size": TRAIN_SIZE[1], "keep_all": KEEP_ALL,
            "post_nms_top_n": TRAIN_POST_NMS,
            "images": [{"photo": p, "boxes": t["boxes"].tolist(), "labels": t["labels"].tolist()}
                       for p, t in zip(train_images, targets)],
            "losses": {k: v.item() for k, v in losses.items()}, "gradients": grads}
        manifest["presets"].append(entry)

    write_expected(args, manifest)


if __name__ == "__main__":
    main()

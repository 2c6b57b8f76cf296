#!/usr/bin/python3
"""Reference values of the pieces of torchvision's Faster R-CNN that are easy to get subtly wrong:
resize sizes, anchors (cell anchors and the grid, including the 'pool' level's non-square stride),
box decoding with its clamp, the FPN level mapper and resize_boxes.

Usage: model_units_reference.py --out DIR [--stamp FILE]
"""
import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops.poolers import LevelMapper

from reference_common import output_args, write_expected


def main():
    args = output_args()
    torch.manual_seed(0)
    ref = {}

    # Resize: (height, width, min_size, max_size) -> resized (height, width), measured by running
    # torchvision's transform on a blank image of that size.
    sizes = [(480, 640, 800, 1333), (375, 500, 800, 1333), (427, 640, 800, 1333), (1080, 1920, 800, 1333),
             (479, 641, 800, 1333), (300, 451, 416, 640), (512, 512, 320, 512), (400, 600, 320, 512),
             (720, 528, 480, 800), (1, 1, 800, 1333), (33, 999, 600, 1000), (528, 720, 480, 640)]
    ref["resize"] = []
    for h, w, mn, mx in sizes:
        t = GeneralizedRCNNTransform(mn, mx, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).eval()
        images, _ = t([torch.zeros(3, h, w)])
        rh, rw = images.image_sizes[0]
        ref["resize"].append({"in": [h, w], "min_size": mn, "max_size": mx, "out": [rh, rw],
                              "batch": list(images.tensors.shape[-2:])})

    # Anchors for an 800x1088 batch (P2..P6 of a stride-32-padded image): 'pool' is 13x17.
    gen = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    batch_h, batch_w = 800, 1088
    feats = [torch.zeros(1, 1, (batch_h + s - 1) // s, (batch_w + s - 1) // s) for s in (4, 8, 16, 32)]
    feats.append(torch.zeros(1, 1, 13, 17))
    anchors = gen(ImageList(torch.zeros(1, 3, batch_h, batch_w), [(800, 1066)]), feats)[0]
    ref["anchors"] = {
        "batch": [batch_h, batch_w],
        "feature_sizes": [list(f.shape[-2:]) for f in feats],
        "cell_anchors": [c.tolist() for c in gen.cell_anchors],
        "count": anchors.shape[0],
        # every 997th anchor plus the last few ones ('pool' level)
        "samples": {str(i): anchors[i].tolist() for i in list(range(0, anchors.shape[0], 997)) + list(range(anchors.shape[0] - 7, anchors.shape[0]))},
    }

    # Box decoding with both coders, including deltas large enough to hit the clamp.
    boxes = torch.rand(20, 4) * 300
    boxes[:, 2:] += boxes[:, :2] + 1
    codes = torch.randn(20, 8) * 3
    codes[0, 2] = 50.0
    codes[1, 3] = 50.0
    ref["decode"] = {"boxes": boxes.tolist(), "codes": codes.tolist()}
    for name, weights in (("rpn", (1.0, 1.0, 1.0, 1.0)), ("roi", (10.0, 10.0, 5.0, 5.0))):
        coder = det_utils.BoxCoder(weights)
        ref["decode"][name] = coder.decode(codes, [boxes]).tolist()
        gt = boxes + torch.rand(20, 4) * 10
        ref["decode"][name + "_encode_gt"] = gt.tolist()
        ref["decode"][name + "_encode"] = coder.encode_single(gt, boxes).tolist()

    # Level mapper (k_min 2, k_max 5) on boxes from tiny to huge.
    sides = torch.tensor([1.0, 16, 50, 111.9, 112.0, 112.1, 224, 447.9, 448, 448.1, 800, 1333, 5000])
    lvl_boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides * 1.3], 1)
    ref["levels"] = {"boxes": lvl_boxes.tolist(), "levels": LevelMapper(2, 5)([lvl_boxes]).tolist()}

    # resize_boxes back to the original size.
    rb = torch.rand(10, 4) * 700
    ref["resize_boxes"] = {"boxes": rb.tolist(), "from": [799, 1066], "to": [375, 500],
                           "out": resize_boxes(rb, [799, 1066], [375, 500]).tolist()}

    write_expected(args, ref)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Reference outputs of torchvision.ops for the ops tests.

Writes one file per case, CASE.pt (torch.save of a flat dict of tensors; scalar arguments
are 0-d tensors), and manifest.txt with one "OP CASE" line per case. Inputs come from fixed
seeds, so the files are the same on every run.

Usage: ops_reference.py --out DIR --stamp FILE
"""

import argparse
import os

import torch
import torchvision
from torchvision import ops


class Writer:
    def __init__(self, out):
        self.out = out
        self.lines = []
        os.makedirs(out, exist_ok=True)

    def add(self, op, name, **tensors):
        case = {}
        for key, value in tensors.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            case[key] = value.detach().contiguous().clone()
        torch.save(case, os.path.join(self.out, name + ".pt"))
        self.lines.append(f"{op} {name}\n")

    def finish(self):
        with open(os.path.join(self.out, "manifest.txt"), "w") as f:
            f.writelines(self.lines)


def random_boxes(gen, n, size=100.0, max_wh=40.0, dtype=torch.float32):
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * max_wh
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def clustered_boxes(gen, n, clusters, dtype=torch.float32):
    """Boxes jittered around a few centres, so that many pairs overlap near any threshold."""
    centres = random_boxes(gen, clusters, size=200.0, max_wh=60.0, dtype=torch.float64)
    pick = torch.randint(0, clusters, (n,), generator=gen)
    jitter = (torch.rand(n, 4, generator=gen, dtype=torch.float64) - 0.5) * 12.0
    boxes = centres[pick] + jitter
    return boxes.to(dtype)


def nms_cases(w):
    gen = torch.Generator().manual_seed(1)

    w.add("nms", "nms_empty", boxes=torch.zeros(0, 4), scores=torch.zeros(0), iou_threshold=0.5,
          keep=ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5))

    def add(name, boxes, scores, thr):
        w.add("nms", name, boxes=boxes, scores=scores, iou_threshold=thr,
              keep=ops.nms(boxes, scores, thr))

    boxes = random_boxes(gen, 300)
    scores = torch.rand(300, generator=gen)
    for thr in (0.0, 0.3, 0.5, 0.7, 1.0):
        add(f"nms_random_{int(thr * 10)}", boxes, scores, thr)

    # Equal scores: the kept set depends on the tie order (stable, by index).
    boxes = clustered_boxes(gen, 400, 12)
    scores = torch.randint(0, 4, (400,), generator=gen).float() / 4
    add("nms_ties", boxes, scores, 0.5)
    add("nms_all_equal", boxes, torch.full((400,), 0.25), 0.3)

    # Boxes partly or entirely outside the image, negative coordinates, degenerate and
    # inverted boxes (zero or negative width or height).
    boxes = random_boxes(gen, 200, size=300.0) - 100.0
    boxes[:20, 2] = boxes[:20, 0]
    boxes[20:40, 3] = boxes[20:40, 1] - 5.0
    boxes[40:50] = boxes[40:41]
    add("nms_outside_degenerate", boxes, torch.rand(200, generator=gen), 0.5)

    # IoU exactly at the threshold is kept (strict '>'): [0,0,2,1] vs [0,0,1,1] is 0.5.
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 3.0, 1.0],
                          [10.0, 10.0, 12.0, 12.0], [10.0, 10.0, 12.0, 11.0]])
    add("nms_threshold_equal", boxes, torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]), 0.5)

    boxes = clustered_boxes(gen, 3000, 40)
    add("nms_large", boxes, torch.rand(3000, generator=gen), 0.7)

    boxes = clustered_boxes(gen, 500, 10, dtype=torch.float64)
    add("nms_double", boxes, torch.rand(500, generator=gen, dtype=torch.float64), 0.6)

    add("nms_single", torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.1]), 0.5)


def batched_nms_cases(w):
    gen = torch.Generator().manual_seed(2)

    def add(name, boxes, scores, idxs, thr):
        w.add("batched_nms", name, boxes=boxes, scores=scores, idxs=idxs, iou_threshold=thr,
              keep=ops.batched_nms(boxes, scores, idxs, thr))

    add("batched_empty", torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
        0.5)

    # numel <= 4000: coordinate offset trick.
    boxes = clustered_boxes(gen, 600, 15)
    add("batched_trick", boxes, torch.rand(600, generator=gen),
        torch.randint(0, 5, (600,), generator=gen), 0.5)
    # Exactly at the switch: 1000 boxes (numel 4000) still use the trick, 1001 the loop.
    for n in (1000, 1001):
        boxes = clustered_boxes(gen, n, 30)
        add(f"batched_switch_{n}", boxes, torch.rand(n, generator=gen),
            torch.randint(0, 7, (n,), generator=gen), 0.6)

    # numel > 4000: one NMS per category; with tied scores the final (unstable) sort matters.
    boxes = clustered_boxes(gen, 2500, 60)
    scores = torch.randint(0, 20, (2500,), generator=gen).float() / 20
    add("batched_loop_ties", boxes, scores, torch.randint(0, 12, (2500,), generator=gen), 0.5)
    boxes = clustered_boxes(gen, 5000, 80)
    add("batched_loop", boxes, torch.rand(5000, generator=gen),
        torch.randint(0, 91, (5000,), generator=gen), 0.7)
    # Sparse, non-contiguous category ids and one category only.
    boxes = clustered_boxes(gen, 300, 8)
    add("batched_sparse_ids", boxes, torch.rand(300, generator=gen),
        torch.tensor([3, 90, 17])[torch.randint(0, 3, (300,), generator=gen)], 0.5)
    add("batched_one_category", boxes, torch.rand(300, generator=gen),
        torch.full((300,), 4, dtype=torch.int64), 0.5)

    boxes = clustered_boxes(gen, 1200, 20, dtype=torch.float64)
    add("batched_loop_double", boxes, torch.rand(1200, generator=gen, dtype=torch.float64),
        torch.randint(0, 4, (1200,), generator=gen), 0.5)


def make_rois(gen, k, batch, image_h, image_w, dtype):
    """RoIs in image coordinates: inside, partly outside, fully outside, tiny and degenerate."""
    boxes = random_boxes(gen, k, size=1.0, max_wh=0.6, dtype=torch.float64)
    boxes[:, 0::2] *= image_w
    boxes[:, 1::2] *= image_h
    q = max(k // 8, 1)
    boxes[q:2 * q] -= 0.3 * image_w                       # partly outside (top left)
    boxes[2 * q:3 * q, 0::2] += 0.8 * image_w             # partly outside (right)
    boxes[3 * q:3 * q + 2] += 2.0 * image_w               # fully outside
    boxes[3 * q + 2:3 * q + 4, 2:] = boxes[3 * q + 2:3 * q + 4, :2]  # zero size
    boxes[3 * q + 4:3 * q + 6, 2:] = boxes[3 * q + 4:3 * q + 6, :2] - 3.0  # inverted
    boxes[3 * q + 6:3 * q + 8, 2:] = boxes[3 * q + 6:3 * q + 8, :2] + 0.3  # smaller than a pixel
    index = torch.randint(0, batch, (k, 1), generator=gen).double()
    return torch.cat([index, boxes], dim=1).to(dtype)


def roi_align_cases(w):
    gen = torch.Generator().manual_seed(3)

    def add(name, x, rois, scale, out_h, out_w, ratio, aligned):
        x = x.clone().requires_grad_(True)
        y = ops.roi_align(x, rois, (out_h, out_w), scale, ratio, aligned)
        grad_output = torch.randn(y.shape, generator=gen, dtype=x.dtype)
        (grad_input,) = torch.autograd.grad(y, x, grad_output) if y.numel() else (
            torch.zeros_like(x),)
        w.add("roi_align", name, input=x, rois=rois, spatial_scale=float(scale),
              pooled_height=out_h, pooled_width=out_w, sampling_ratio=ratio, aligned=aligned,
              output=y, grad_output=grad_output, grad_input=grad_input)

    batch, channels, height, width = 2, 6, 19, 26
    for scale in (1.0, 0.5, 0.25, 0.0625):
        x = torch.randn(batch, channels, height, width, generator=gen)
        rois = make_rois(gen, 48, batch, height / scale, width / scale, torch.float32)
        tag = str(scale).replace(".", "p")
        for aligned in (False, True):
            for ratio in (2, -1):
                add(f"roi_s{tag}_{'al' if aligned else 'leg'}_r{ratio if ratio > 0 else 'ad'}",
                    x, rois, scale, 7, 7, ratio, aligned)

    x = torch.randn(1, 3, 11, 9, generator=gen)
    rois = make_rois(gen, 20, 1, 11, 9, torch.float32)
    add("roi_rect_output", x, rois, 1.0, 3, 5, 3, False)
    add("roi_ratio_zero", x, rois, 1.0, 4, 2, 0, True)
    add("roi_empty", x, torch.zeros(0, 5), 1.0, 7, 7, 2, False)

    # A few RoIs on a large map: little work per pixel, the planar (NCHW) kernel's case.
    x = torch.randn(1, 5, 64, 80, generator=gen)
    rois = make_rois(gen, 3, 1, 128, 160, torch.float32)
    add("roi_few_leg_r2", x, rois, 0.5, 7, 7, 2, False)
    add("roi_few_al_rad", x, rois, 0.5, 7, 7, -1, True)
    x = torch.randn(1, 1, 20, 20, generator=gen)
    add("roi_one_channel", x, make_rois(gen, 30, 1, 20, 20, torch.float32), 1.0, 7, 7, 2, False)

    x = torch.randn(2, 4, 13, 17, generator=gen, dtype=torch.float64)
    rois = make_rois(gen, 24, 2, 26, 34, torch.float64)
    add("roi_double_leg", x, rois, 0.5, 7, 7, 2, False)
    add("roi_double_al", x, rois, 0.5, 5, 6, -1, True)


def box_helper_cases(w):
    gen = torch.Generator().manual_seed(4)
    boxes = random_boxes(gen, 60, size=120.0) - 20.0
    boxes[:5, 2] = boxes[:5, 0] + 0.0005   # thinner than the RPN's min_size
    boxes[5:10, 3] = boxes[5:10, 1] - 1.0  # inverted
    other = random_boxes(gen, 35, size=120.0)
    w.add("box_helpers", "box_helpers_float", boxes=boxes, other=other, height=67, width=91,
          min_size=1e-3, area=ops.box_area(boxes), iou=ops.box_iou(boxes, other),
          clipped=ops.clip_boxes_to_image(boxes, (67, 91)),
          small_kept=ops.remove_small_boxes(boxes, 1e-3))
    boxes = boxes.double()
    other = other.double()
    w.add("box_helpers", "box_helpers_double", boxes=boxes, other=other, height=40, width=30,
          min_size=5.0, area=ops.box_area(boxes), iou=ops.box_iou(boxes, other),
          clipped=ops.clip_boxes_to_image(boxes, (40, 30)),
          small_kept=ops.remove_small_boxes(boxes, 5.0))
    empty = torch.zeros(0, 4)
    w.add("box_helpers", "box_helpers_empty", boxes=empty, other=other.float(), height=10,
          width=10, min_size=1.0, area=ops.box_area(empty), iou=ops.box_iou(empty, other.float()),
          clipped=ops.clip_boxes_to_image(empty, (10, 10)),
          small_kept=ops.remove_small_boxes(empty, 1.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stamp", required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    w = Writer(args.out)
    nms_cases(w)
    batched_nms_cases(w)
    roi_align_cases(w)
    box_helper_cases(w)
    w.finish()
    with open(args.stamp, "w") as f:
        f.write(f"torch {torch.__version__} torchvision {torchvision.__version__}\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""torchvision's Faster R-CNN timed the way frcnn-bench times libfrcnn, for side-by-side figures.

Runs on the frames `frcnn-bench --dump-frames DIR` wrote (raw RGB + DIR/frames.json, in the order
frcnn-bench uses them), or on the image files frcnn-bench is given (binary PPM read here, other
formats with Pillow; taken in order, starting over at the end, as frcnn-bench does), with the
weights `frcnn-bench --save-weights FILE` wrote (or any torchvision state dict), the same input
size, batch, warm-up, frame count and thread count, and prints the same fields as
`frcnn-bench --json`. Each batch is timed from the uint8 frames to the detections in frame
pixels on the CPU, stage by stage as GeneralizedRCNN.forward runs them.

On CUDA (--device cuda) the uint8 frames are copied to the GPU and converted there, the clocks
are read after torch.cuda.synchronize(), and fp32 is real fp32 (TF32 off, as libfrcnn);
--autocast runs each batch under torch.autocast('cuda', dtype=torch.float16).

Usage: bench_torchvision.py (--frames-dir DIR | IMAGE...) --weights FILE [--arch NAME]
       [--min-size N] [--max-size N] [--batch N] [--threads N] [--warmup N] [--frames N]
       [--device D] [--autocast] [--cudnn-benchmark] [--channels-last] [--profile] [--json]
"""
import contextlib
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
from torchvision.models import mobilenet_v3_large, resnet50
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

STAGES = ["transform", "backbone_fpn", "rpn", "roi_heads", "postprocess"]


ARCHS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn")


def build(arch, min_size, max_size, score_threshold):
    # What torchvision's builders make whenever they are given weights: FrozenBatchNorm2d, as
    # libfrcnn (with weights=None torchvision would switch to BatchNorm2d).
    if arch == "fasterrcnn_resnet50_fpn":
        backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
        return FasterRCNN(backbone, num_classes=91, min_size=min_size, max_size=max_size,
                          box_score_thresh=score_threshold)
    if arch not in ARCHS:
        sys.exit(f"bench_torchvision.py: unsupported arch {arch!r} (known: {', '.join(ARCHS)})")
    # _fasterrcnn_mobilenet_v3_large_fpn: the last two stages, three anchor levels, proposals
    # scoring at least 0.05; the 320 model keeps 150 of them before and after NMS.
    backbone = _mobilenet_extractor(mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d), True, 3)
    anchor_sizes = ((32, 64, 128, 256, 512,),) * 3
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    kwargs = dict(rpn_score_thresh=0.05)
    if arch == "fasterrcnn_mobilenet_v3_large_320_fpn":
        kwargs.update(rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150)
    return FasterRCNN(backbone, 91, rpn_anchor_generator=anchors, min_size=min_size, max_size=max_size,
                      box_score_thresh=score_threshold, **kwargs)


def read_ppm(path):
    """A binary PPM (P6, maxval 255) as an [H, W, 3] uint8 array."""
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 2
    while len(fields) < 3:
        while pos < len(data) and (data[pos:pos + 1].isspace() or data[pos:pos + 1] == b"#"):
            if data[pos:pos + 1] == b"#":
                pos = data.find(b"\n", pos)
                if pos < 0:
                    break
            pos += 1
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if pos == start or pos >= len(data):
            sys.exit(f"bench_torchvision.py: {path}: bad PPM header")
        fields.append(int(data[start:pos]))
    width, height, maxval = fields
    if maxval != 255:
        sys.exit(f"bench_torchvision.py: {path}: PPM maxval {maxval}, only 255 is read")
    pixels = np.frombuffer(data, dtype=np.uint8, count=width * height * 3, offset=pos + 1)
    # A copy: torch.from_numpy wants a writable array.
    return pixels.reshape(height, width, 3).copy()


def read_image(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"P6":
        return read_ppm(path)
    try:
        from PIL import Image
    except ImportError:
        sys.exit(f"bench_torchvision.py: {path} is not a binary PPM image, and Pillow is not installed")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_frames(directory):
    with open(os.path.join(directory, "frames.json")) as f:
        manifest = json.load(f)
    frames = []
    for entry in manifest["frames"]:
        data = np.fromfile(os.path.join(directory, entry["file"]), dtype=np.uint8)
        frames.append(data.reshape(entry["height"], entry["width"], 3))
    if not frames:
        sys.exit("bench_torchvision.py: no frames in " + directory)
    return frames


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def current_rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class StagedModel:
    """GeneralizedRCNN.forward in eval mode, with a clock between the stages."""

    def __init__(self, model, device, channels_last=False, autocast=False):
        self.model = model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.channels_last = channels_last
        self.autocast = autocast
        self.input_shape = None

    def precision(self):
        # torch.autocast('cuda', ...): what a torchvision user runs for fp16 inference.
        return torch.autocast("cuda", dtype=torch.float16) if self.autocast else contextlib.nullcontext()

    def clock(self):
        # CUDA kernels run asynchronously: a stage ends when its kernels are done.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def images(self, frames):
        # The uint8 frames go to the device as they are, and are converted there, into
        # contiguous (3, H, W) tensors as torchvision's to_tensor gives them: a permuted view of
        # the (H, W, 3) bytes would keep their channels-last strides, and resize with LibTorch's
        # channels-last kernel, whose rounding differs (by about 2e-7).
        return [torch.from_numpy(f).to(self.device).permute(2, 0, 1).contiguous().float().div(255) for f in frames]

    def run(self, frames, stage_ms=None):
        m = self.model
        laps = [self.clock()]
        with self.precision():
            images = self.images(frames)
            original_sizes = [tuple(img.shape[-2:]) for img in images]
            image_list, _ = m.transform(images)
            if self.channels_last:
                image_list.tensors = image_list.tensors.contiguous(memory_format=torch.channels_last)
            laps.append(self.clock())
            features = m.backbone(image_list.tensors)
            laps.append(self.clock())
            proposals, _ = m.rpn(image_list, features)
            laps.append(self.clock())
            heads = m.roi_heads
            box_features = heads.box_roi_pool(features, proposals, image_list.image_sizes)
            box_features = heads.box_head(box_features)
            class_logits, box_regression = heads.box_predictor(box_features)
            laps.append(self.clock())
            boxes, scores, labels = heads.postprocess_detections(class_logits, box_regression, proposals,
                                                                 image_list.image_sizes)
            detections = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, labels)]
            detections = m.transform.postprocess(detections, image_list.image_sizes, original_sizes)
            detections = [{k: v.cpu() for k, v in d.items()} for d in detections]
        laps.append(self.clock())
        if stage_ms is not None:
            for i in range(len(STAGES)):
                stage_ms.append((laps[i + 1] - laps[i]) * 1000)
        self.input_shape = list(image_list.tensors.shape)
        return detections

    def forward(self, frames):
        with self.precision():
            out = self.model(self.images(frames))
        return [{k: v.cpu() for k, v in d.items()} for d in out]


def compare_detections(a, b):
    """As frcnn-bench: identical, else same labels and the largest box difference in pixels."""
    identical = labels = len(a) == len(b)
    max_diff = 0.0
    for x, y in zip(a, b):
        if not torch.equal(x["labels"], y["labels"]):
            identical = labels = False
            break
        identical = identical and torch.equal(x["scores"], y["scores"]) and torch.equal(x["boxes"], y["boxes"])
        if x["boxes"].numel():
            max_diff = max(max_diff, float((x["boxes"] - y["boxes"]).abs().max()))
    return {"identical": identical, "labels_equal": labels, "max_box_diff_px": max_diff}


def count_flops(fn):
    """FLOPs of the convolutions and matrix products fn runs (2 per multiply-add), from their shapes,
    as frcnn-bench counts them; None where this torch has no dispatch mode."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:
        return None
    aten = torch.ops.aten
    total = [0.0]

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            packet = func.overloadpacket
            # In inference mode the composite conv2d and linear reach this mode undecomposed.
            if packet is aten.convolution or packet is aten.conv2d:
                x, w = args[0].shape, args[1].shape
                total[0] += 2.0 * x[0] * w[0] * out.shape[2] * out.shape[3] * w[1] * w[2] * w[3]
            elif packet is aten.linear:
                x, w = args[0].shape, args[1].shape
                total[0] += 2.0 * math.prod(x[:-1]) * w[0] * w[1]
            elif packet is aten.addmm:
                total[0] += 2.0 * args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
            elif packet is aten.mm:
                total[0] += 2.0 * args[0].shape[0] * args[0].shape[1] * args[1].shape[1]
            elif packet is aten.bmm:
                a, b = args[0].shape, args[1].shape
                total[0] += 2.0 * a[0] * a[1] * a[2] * b[2]
            return out

    try:
        with Counter():
            fn()
    except Exception as e:  # an untimed extra: a torch whose dispatch mode differs costs the count only
        print(f"bench_torchvision.py: no FLOP count: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return total[0]


def profile_ops(fn):
    """Self CPU time per operator of one call, top 15, in milliseconds."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    return {e.key: round(e.self_cpu_time_total / 1000, 2) for e in rows}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="IMAGE",
                   help="image files, as given to frcnn-bench (instead of --frames-dir)")
    p.add_argument("--frames-dir", help="frames written by frcnn-bench --dump-frames")
    p.add_argument("--weights", required=True)
    p.add_argument("--arch", default="fasterrcnn_resnet50_fpn")
    p.add_argument("--min-size", type=int, default=800)
    p.add_argument("--max-size", type=int, default=1333)
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--autocast", action="store_true",
                   help="run under torch.autocast('cuda', dtype=torch.float16) (CUDA only)")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark = True (cuDNN picks its algorithms per shape)")
    p.add_argument("--channels-last", action="store_true",
                   help="weights and input batch in channels-last memory format (as frcnn-bench's)")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing the stage-by-stage run with model() in the first warm-up batch")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--detections", help="write the detections of the first timed batch as JSON, as frcnn-bench")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    if bool(args.frames_dir) == bool(args.inputs):
        p.error("give either --frames-dir DIR or image files")
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"bench_torchvision.py: device {args.device} asked for, but CUDA is not available")
        # fp32 means fp32, as in libfrcnn: no TF32 convolutions or matrix products.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    elif args.autocast:
        sys.exit("bench_torchvision.py: --autocast needs a CUDA device (--device cuda)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    frames = load_frames(args.frames_dir) if args.frames_dir else [read_image(path) for path in args.inputs]
    # From the file to a model ready to run, as frcnn-bench's load_ms: built, the weights read and
    # taken, moved to the device.
    load_start = time.perf_counter()
    model = build(args.arch, args.min_size, args.max_size, args.score_threshold)
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model.eval()
    staged = StagedModel(model, device, args.channels_last, args.autocast)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    load_ms = (time.perf_counter() - load_start) * 1e3

    timed_batches = (args.frames + args.batch - 1) // args.batch
    needed = (args.warmup + timed_batches) * args.batch
    if args.frames_dir and needed > len(frames):
        # frcnn-bench would go on with the video's next frames: the runs would not compare.
        sys.exit(f"bench_torchvision.py: {needed} frames needed, {len(frames)} dumped in {args.frames_dir}")
    position = 0
    latency, stages = [], [[] for _ in STAGES]
    first_counts, staged_check = None, None
    batch = None
    with torch.inference_mode():
        for b in range(args.warmup + timed_batches):
            batch = [frames[(position + i) % len(frames)] for i in range(args.batch)]
            position += args.batch
            if b == 0 and args.warmup > 0 and not args.no_check:
                staged_check = compare_detections(staged.run(batch), staged.forward(batch))
                continue
            stage_ms = []
            start = time.perf_counter()
            out = staged.run(batch, stage_ms)
            ms = (time.perf_counter() - start) * 1000
            if b < args.warmup:
                continue
            if first_counts is None:
                first_counts = [int(d["boxes"].shape[0]) for d in out]
                first_detections = [[{"box": b.tolist(), "label": int(l), "score": float(s)}
                                     for b, l, s in zip(d["boxes"], d["labels"], d["scores"])] for d in out]
            latency.append(ms)
            for s, v in enumerate(stage_ms):
                stages[s].append(v)
        flops = count_flops(lambda: staged.run(batch))
        op_profile = profile_ops(lambda: staged.run(batch)) if args.profile else None

    timed_frames = timed_batches * args.batch
    fps = timed_frames / (sum(latency) / 1000)
    gflops_per_frame = flops / args.batch / 1e9 if flops is not None else None
    out = {
        "program": "bench_torchvision.py",
        "implementation": f"torchvision {__import__('torchvision').__version__}, torch {torch.__version__}",
        "mode": "staged, channels-last" if args.channels_last else "staged",
        "arch": args.arch,
        "weights": args.weights,
        "device": args.device,
        "precision": "autocast-fp16" if args.autocast else "fp32",
        "channels_last": args.channels_last,
        "load_ms": round(load_ms, 1),
        **({"cpu_convolutions": "libtorch"} if args.device == "cpu" else {}),  # LibTorch's operators
        "cudnn_benchmark": args.cudnn_benchmark,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "pixel_format": "RGB",  # frames as uint8 RGB tensors, SDR BT.709, as frcnn-bench's default
        "transfer": "sdr",
        "primaries": "bt709",
        "min_size": args.min_size,
        "max_size": args.max_size,
        "inputs": [args.frames_dir] if args.frames_dir else args.inputs,
        "frame_size": [int(batch[0].shape[1]), int(batch[0].shape[0])],
        "model_input": staged.input_shape,
        "warmup_batches": args.warmup,
        "frames": timed_frames,
        "fps": round(fps, 3),
        "latency_ms": {"p50": round(percentile(latency, 50), 2), "p95": round(percentile(latency, 95), 2),
                       "mean": round(sum(latency) / len(latency), 2), "min": round(min(latency), 2)},
        "stages_ms_p50": {name: round(percentile(stages[i], 50), 2) for i, name in enumerate(STAGES)},
        # The frames are tensors already: no gathering of frame bytes into pinned memory to time.
        "transform_host_gather_ms_p50": None,
        # Frames are not copied ahead of the batch (frcnn-bench --frame-copies has no counterpart).
        "frame_copies": False,
        "frame_copy_ms_p50": None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb": round(current_rss_mb(), 1),
        "rss_mb_after_frames": {},
        "rss_mb_max_up_to_frames": {},
        "gflops_per_frame": round(gflops_per_frame, 3) if gflops_per_frame is not None else None,
        "gflops_per_s": round(gflops_per_frame * fps, 2) if gflops_per_frame is not None else None,
        "flops_method": "convolutions and matrix products counted from their shapes on the last batch, "
                        "2 FLOPs per multiply-add",
        "detections_first_batch": first_counts,
        "staged_vs_forward": staged_check,
    }
    if op_profile is not None:
        out["op_profile_ms"] = {"top_operators": op_profile}
    if args.detections:
        with open(args.detections, "w") as f:
            json.dump(first_detections, f)
    if args.json:
        print(json.dumps(out))
        return
    print(f"{args.arch} (torchvision) on {args.device}, {out['precision']}, {out['threads']} thread(s), "
          f"batch {args.batch}, "
          f"min_size {args.min_size} max_size {args.max_size}")
    print(f"  {fps:.2f} frames/s over {timed_frames} frames; latency per batch p50 "
          f"{out['latency_ms']['p50']:.1f} ms, p95 {out['latency_ms']['p95']:.1f} ms")
    print(f"  model loaded in {load_ms:.0f} ms (model built, weights read and taken, moved to the device)")
    print("  stages (p50 ms): " + " ".join(f"{k} {v:.1f}" for k, v in out["stages_ms_p50"].items()))
    if gflops_per_frame is not None:
        print(f"  {gflops_per_frame:.2f} GFLOP per frame, {out['gflops_per_s']:.1f} GFLOP/s achieved")
    print(f"  peak RSS {out['peak_rss_mb']:.1f} MiB")
    if op_profile:
        for name, ms in op_profile.items():
            print(f"    {ms:8.2f}  {name}")


if __name__ == "__main__":
    main()

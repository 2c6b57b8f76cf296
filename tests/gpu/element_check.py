#!/usr/bin/env python3
"""The frcnndetect element on a GPU, through gst-launch-1.0, against the same element on the CPU
(and frcnn-detect on the GPU against the CPU).

On the frames of --frames (every *.ppm in name order, read into one raw RGB file) and the weights
of --weights, each run a pipeline
    filesrc ! rawvideoparse ! [videoconvert ! NV12, v210 or P010_10LE !] frcnndetect ... ! frcnnjson ! fakesink
whose JSON lines are compared:
  - RGB frames, --device at batch 4 against the CPU at batch 1: the same labels in the same order
    on every frame, boxes within 0.05 px, scores within 2e-4 (frcnnjson rounds boxes to 0.01 and
    scores to 0.0001);
  - NV12 frames (pre-processing from NV12 on the device), --device at batch 5 against the CPU at
    batch 1, with a frame count that is not a multiple of 5 (EOS in the middle of a batch): a line
    for every frame, the same detections;
  - a region (region=...) of v210 frames (10-bit 4:2:2, three samples to a 32-bit word)
    starting at odd coordinates (x moved to a multiple of 6), --device at batch 4 against the
    CPU at batch 1: the same detections;
  - PQ video of pixels 4/3 as wide as high (P010_10LE, colorimetry bt2100-pq: the mapping to
    SDR by the table on the device, each axis resized by its own factor), --device at batch 4
    against the CPU at batch 1: the same detections;
  - inference-region=roi-list on NV12 frames, inside the regions a first frcnndetect (on the
    CPU) found: --device at batch 4 against the CPU at batch 4, without a batch timeout (a batch
    pads its regions to the largest, so both must run the same batches): the same detections;
  - precision=fp16 on device cuda:0 against fp32: >= 95% of the fp32 detections with score >= 0.5
    found in fp16 (same label, IoU >= 0.9); on a CPU device, the element's error instead;
  - a device that does not exist (cuda:99): the pipeline fails, with the element's message, and
    does not hang;
  - two elements on the branches of a tee sharing one model on --device (model-instance-id),
    at batch 4 and 3, each against the --device batch 4 run: the same detections;
  - four such elements at batch-size=4 batch-timeout=0, whose batches that wait for the model
    together run as one (reported: how many of the elements' batches ran with others'), each
    against the --device batch 4 run: the same detections;
and, with --throughput-weights and --throughput-frames, the element's frames per second at
--throughput-batch in fp32 and in fp16 with channels-last, from two runs of different lengths
(so that start-up, model loading and cuDNN's algorithm search cancel out), next to frcnn-bench's
figures of the same configurations when --bench-json (throughput.json) is given.

With --detect-tool (frcnn-detect), the same frames go through that program too: --device against
the CPU (same labels, boxes within 0.05 px) and fp16 against fp32 (as above).

With --device cpu it runs on the CPU only (a dry run of the script and the element: the fp16 and
CUDA device runs must then fail with the CPU-only build's messages).
Writes OUT/element_check.json and OUT/element_check.md; exits 1 if a check failed.
Standard library only.
"""
import argparse
import atexit
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BOX_TOLERANCE = 0.05
SCORE_TOLERANCE = 2e-4
FP16_MIN_SCORE = 0.5
FP16_MIN_IOU = 0.9
FP16_MIN_MATCHED = 0.95


def log(message):
    print(message, flush=True)


def read_ppm(path):
    """(width, height, RGB bytes) of a binary PPM (P6, maxval 255)."""
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise ValueError(f"{path}: not a binary 8-bit PPM")
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos + 1:pos + 1 + width * height * 3]
    if len(pixels) != width * height * 3:
        raise ValueError(f"{path}: truncated")
    return width, height, pixels


def write_raw(frames_dir, path, count=None):
    """Writes the PPMs of frames_dir, in name order, repeated up to count frames, as one raw RGB
    file. Returns (width, height, frames written)."""
    files = sorted(glob.glob(os.path.join(frames_dir, "*.ppm")))
    if not files:
        raise SystemExit(f"no *.ppm in {frames_dir}")
    frames = [read_ppm(f) for f in files]
    width, height = frames[0][0], frames[0][1]
    if any((w, h) != (width, height) for w, h, _ in frames):
        raise SystemExit(f"the frames of {frames_dir} differ in size")
    count = count or len(frames)
    with open(path, "wb") as f:
        for i in range(count):
            f.write(frames[i % len(frames)][2])
    return width, height, count


def run_program(cmd, timeout, env=None):
    """Runs cmd. Returns (exit status or "timeout", stdout, stderr, seconds)."""
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        status, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        status, stdout, stderr = "timeout", "", f"did not end within {timeout} s\n" + stderr
    return status, stdout, stderr, time.monotonic() - start


def log_run(name, status, seconds, count, unit, output):
    log(f"  {name}: exit {status}, {seconds:.1f} s, {count} {unit}")
    if status != 0:
        log("    " + "\n    ".join(output.strip().splitlines()[-6:]))


class Runner:
    def __init__(self, args):
        self.args = args
        self.env = dict(os.environ)
        self.env["GST_PLUGIN_PATH"] = args.plugin_path or ""
        self.env["GST_REGISTRY"] = os.path.join(args.out, "gst-registry.bin")
        # The raw frames (hundreds of MB at 1333x800) and the throughput runs' lines.
        self.work = tempfile.mkdtemp(prefix="element-check-")
        atexit.register(shutil.rmtree, self.work, ignore_errors=True)

    def source(self, raw, width, height, frames, pixel_aspect_ratio="1/1"):
        return ["filesrc", f"location={raw}", f"blocksize={width * height * 3}", f"num-buffers={frames}", "!",
                "rawvideoparse", f"width={width}", f"height={height}", "format=rgb", "framerate=30/1",
                f"pixel-aspect-ratio={pixel_aspect_ratio}", "!"]

    def read_lines(self, jsonl):
        if not os.path.exists(jsonl):
            return []
        with open(jsonl) as f:
            return [json.loads(line) for line in f if line.strip()]

    def launch_shared(self, name, raw, width, height, frames, device, batches, extra=()):
        """Runs one pipeline whose tee feeds an frcnndetect per batch size, all with one
        model-instance-id, with the element's debug log at level 5 (it says which batches ran
        together). Returns (exit status, output, seconds, JSON lines of each branch)."""
        pipeline = self.source(raw, width, height, frames) + ["tee", "name=t"]
        outputs = []
        for i, batch in enumerate(batches):
            jsonl = os.path.join(self.args.out, f"{name}-{i}.jsonl")
            if os.path.exists(jsonl):
                os.remove(jsonl)
            outputs.append(jsonl)
            pipeline += ["t.", "!", "queue", "!", "frcnndetect", f"weights={self.args.weights}", f"device={device}",
                         f"batch-size={batch}", "model-instance-id=element-check", *extra, "!",
                         "frcnnjson", f"location={jsonl}", "!", "fakesink"]
        env = dict(self.env, GST_DEBUG="frcnndetect:5", GST_DEBUG_NO_COLOR="1")
        status, stdout, stderr, seconds = run_program([self.args.gst_launch, "-q", *pipeline],
                                                      self.args.timeout, env)
        lines = [self.read_lines(jsonl) for jsonl in outputs]
        log_run(name, status, seconds, sum(len(l) for l in lines), "lines", stdout + stderr)
        return status, stdout + stderr, seconds, lines

    def launch(self, name, raw, width, height, frames, device, batch, precision="fp32", convert=None,
               weights=None, extra=(), keep=True, before=(), pixel_aspect_ratio="1/1"):
        """Runs one pipeline, with the elements of `before` (gst-launch-1.0 words) in front of
        the frcnndetect; `convert`: the format (and further caps fields) videoconvert gives it.
        Returns (exit status, output, seconds, JSON lines); the lines stay in OUT when keep, else
        in the work folder."""
        jsonl = os.path.join(self.args.out if keep else self.work, f"{name}.jsonl")
        if os.path.exists(jsonl):
            os.remove(jsonl)
        pipeline = self.source(raw, width, height, frames, pixel_aspect_ratio)
        if convert:
            pipeline += ["videoconvert", "!", f"video/x-raw,format={convert}", "!"]
        pipeline += list(before)
        pipeline += [
            "frcnndetect", f"weights={weights or self.args.weights}", f"device={device}",
            f"batch-size={batch}", f"precision={precision}", *extra, "!",
            "frcnnjson", f"location={jsonl}", "!", "fakesink",
        ]
        status, stdout, stderr, seconds = run_program([self.args.gst_launch, "-q", *pipeline],
                                                      self.args.timeout, self.env)
        output = stdout + stderr
        lines = self.read_lines(jsonl)
        log_run(name, status, seconds, len(lines), "lines", output)
        return status, output, seconds, lines


def detect_tool(args, name, device, precision="fp32"):
    """Runs frcnn-detect on the frames. Returns (exit status, output, JSON lines in frcnnjson's
    form: frame, detections with box, label_id, score)."""
    frames = sorted(glob.glob(os.path.join(args.frames, "*.ppm")))
    cmd = [args.detect_tool, "--weights", args.weights, "--device", device, "--precision", precision,
           "--score-threshold", "0.5", "--cpu-convolutions", "libtorch", *frames]
    status, stdout, output, seconds = run_program(cmd, args.timeout)
    lines = []
    for index, text in enumerate(line for line in stdout.splitlines() if line.startswith("{")):
        image = json.loads(text)
        lines.append({"frame": index, "detections": [
            {"box": d["box"], "label_id": d["label"], "score": d["score"]} for d in image["detections"]]})
    with open(os.path.join(args.out, f"{name}.jsonl"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    log_run(name, status, seconds, len(lines), "images", output)
    return status, output, lines


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_same(reference, got, frames):
    """The same detections frame by frame: (problems, detections, largest box and score gaps)."""
    problems, detections, box_gap, score_gap = [], 0, 0.0, 0.0
    if len(reference) != frames or len(got) != frames:
        problems.append(f"{len(reference)} and {len(got)} lines for {frames} frames")
    for ref, line in zip(reference, got):
        a, b = ref["detections"], line["detections"]
        if [d["label_id"] for d in a] != [d["label_id"] for d in b]:
            problems.append(f"frame {ref['frame']}: labels {[d['label_id'] for d in a]} against "
                            f"{[d['label_id'] for d in b]}")
            continue
        for da, db in zip(a, b):
            box_gap = max(box_gap, max(abs(x - y) for x, y in zip(da["box"], db["box"])))
            score_gap = max(score_gap, abs(da["score"] - db["score"]))
        detections += len(a)
    if box_gap > BOX_TOLERANCE:
        problems.append(f"boxes differ by up to {box_gap:.4f} px (tolerance {BOX_TOLERANCE})")
    if score_gap > SCORE_TOLERANCE:
        problems.append(f"scores differ by up to {score_gap:.5f} (tolerance {SCORE_TOLERANCE})")
    if detections == 0 and not problems:
        problems.append("no detections to compare")
    return problems, {"detections": detections, "box_gap_px": box_gap, "score_gap": score_gap}


def compare_fp16(fp32, fp16):
    """Share of the fp32 detections with score >= 0.5 that fp16 has too (same label, IoU >= 0.9)."""
    wanted = matched = 0
    for a, b in zip(fp32, fp16):
        unused = list(b["detections"])
        for d in a["detections"]:
            if d["score"] < FP16_MIN_SCORE:
                continue
            wanted += 1
            best = max((c for c in unused if c["label_id"] == d["label_id"]),
                       key=lambda c: iou(c["box"], d["box"]), default=None)
            if best is not None and iou(best["box"], d["box"]) >= FP16_MIN_IOU:
                matched += 1
                unused.remove(best)
    problems = []
    if len(fp16) != len(fp32):
        problems.append(f"{len(fp16)} fp16 lines against {len(fp32)} fp32 lines")
    if wanted == 0:
        problems.append(f"no fp32 detection with score >= {FP16_MIN_SCORE}")
    elif matched < FP16_MIN_MATCHED * wanted:
        problems.append(f"{matched} of {wanted} matched (< {FP16_MIN_MATCHED:.0%})")
    return problems, {"fp32_detections": wanted, "matched": matched}


def expect_failure(result, needle):
    status, output, _, _ = result
    if status == "timeout":
        return ["the pipeline hung"]
    if status == 0:
        return ["the pipeline ran; an error was expected"]
    if needle not in output:
        return [f"the error does not say '{needle}'"]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gst-launch", default="gst-launch-1.0")
    parser.add_argument("--plugin-path", help="folder of libgstfrcnn.so")
    parser.add_argument("--no-element", action="store_true",
                        help="no GStreamer here: check frcnn-detect only (with --detect-tool)")
    parser.add_argument("--frames", required=True, help="folder of *.ppm frames (the shapes frames)")
    parser.add_argument("--weights", required=True, help="checkpoint for those frames")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run")
    parser.add_argument("--throughput-frames", help="folder of *.ppm frames for the throughput runs")
    parser.add_argument("--throughput-weights", help="checkpoint for the throughput runs")
    parser.add_argument("--throughput-batch", type=int, default=8)
    parser.add_argument("--throughput-counts", default="16,208",
                        help="frames of the short and the long run (default 16,208)")
    parser.add_argument("--bench-json", help="throughput.json of tests/gpu/throughput.py, for comparison")
    parser.add_argument("--detect-tool", help="frcnn-detect, to check it on the same frames")
    parser.add_argument("--timeout", type=int, default=300, help="seconds a pipeline may take")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not args.no_element and not args.plugin_path:
        parser.error("--plugin-path is needed, or --no-element")
    os.makedirs(args.out, exist_ok=True)
    on_cuda = args.device != "cpu"
    runner = Runner(args)
    checks = []

    def check(name, problems, figures=None):
        checks.append({"check": name, "passed": not problems, "problems": problems, "figures": figures or {}})
        log(f"{'ok  ' if not problems else 'FAIL'} {name}" + (": " + "; ".join(problems) if problems else ""))

    raw = os.path.join(runner.work, "frames.rgb")
    width, height, frames = write_raw(args.frames, raw)
    log(f"{frames} frames of {width}x{height} from {args.frames}; device {args.device}")

    if not args.no_element:
        rgb_cpu = runner.launch("rgb-cpu-b1", raw, width, height, frames, "cpu", 1,
                                extra=["cpu-convolutions=libtorch"])
        rgb_dev = runner.launch("rgb-dev-b4", raw, width, height, frames, args.device, 4)
        problems, figures = compare_same(rgb_cpu[3], rgb_dev[3], frames)
        check(f"RGB: {args.device} batch 4 against CPU batch 1", [f"exit {r[0]}" for r in (rgb_cpu, rgb_dev) if r[0] != 0] + problems, figures)

        # A frame count that batches of 5 do not divide: the last batch ends at EOS.
        odd = frames - 1 if frames % 5 == 0 else frames
        nv12_cpu = runner.launch("nv12-cpu-b1", raw, width, height, odd, "cpu", 1, convert="NV12",
                                 extra=["cpu-convolutions=libtorch"])
        nv12_dev = runner.launch("nv12-dev-b5", raw, width, height, odd, args.device, 5, convert="NV12")
        problems, figures = compare_same(nv12_cpu[3], nv12_dev[3], odd)
        check(f"NV12, {odd} frames: {args.device} batch 5 against CPU batch 1",
              [f"exit {r[0]}" for r in (nv12_cpu, nv12_dev) if r[0] != 0] + problems, figures)

        # Most of the frame, from odd coordinates (x moved to a multiple of 6 on v210, a capture
        # card's packed 10-bit 4:2:2): the device reads a cropped view with the frame's strides.
        region = f"region={width // 8 + 1},{height // 8 + 1},{width * 3 // 4},{height * 3 // 4}"
        region_cpu = runner.launch("region-cpu-b1", raw, width, height, frames, "cpu", 1, convert="v210",
                                   extra=["cpu-convolutions=libtorch", region])
        region_dev = runner.launch("region-dev-b4", raw, width, height, frames, args.device, 4, convert="v210",
                                   extra=[region])
        problems, figures = compare_same(region_cpu[3], region_dev[3], frames)
        check(f"v210 {region}: {args.device} batch 4 against CPU batch 1",
              [f"exit {r[0]}" for r in (region_cpu, region_dev) if r[0] != 0] + problems, figures)

        # HDR video of pixels that are not square: the device maps PQ to SDR by its copy of the
        # table, and resizes each axis by its own factor.
        hdr = dict(convert="P010_10LE,colorimetry=bt2100-pq", pixel_aspect_ratio="4/3")
        hdr_cpu = runner.launch("pq-4x3-cpu-b1", raw, width, height, frames, "cpu", 1,
                                extra=["cpu-convolutions=libtorch"], **hdr)
        hdr_dev = runner.launch("pq-4x3-dev-b4", raw, width, height, frames, args.device, 4, **hdr)
        problems, figures = compare_same(hdr_cpu[3], hdr_dev[3], frames)
        check(f"PQ P010 with 4/3 pixels: {args.device} batch 4 against CPU batch 1",
              [f"exit {r[0]}" for r in (hdr_cpu, hdr_dev) if r[0] != 0] + problems, figures)

        # A second detector inside the first one's detections: each region an image of its own,
        # read on the device out of one copy of the NV12 frame (the rectangle around its regions).
        # The first runs on the CPU in both, so that
        # both second detectors get the same regions; with no timeout that could end a batch
        # early, both batch them alike (a batch pads its regions to the largest).
        first = ["frcnndetect", f"weights={args.weights}", "device=cpu", "cpu-convolutions=libtorch",
                 "max-detections=6", "!"]
        second = ["inference-region=roi-list", "batch-timeout=600000"]
        rois_cpu = runner.launch("roi-list-cpu-b4", raw, width, height, frames, "cpu", 4, convert="NV12",
                                 extra=["cpu-convolutions=libtorch", *second], before=first)
        rois_dev = runner.launch("roi-list-dev-b4", raw, width, height, frames, args.device, 4, convert="NV12",
                                 extra=second, before=first)
        problems, figures = compare_same(rois_cpu[3], rois_dev[3], frames)
        # frcnnjson lists the first detector's detections too: those found in a region name it.
        figures["detections in regions"] = sum(1 for line in rois_dev[3] for d in line["detections"]
                                               if d.get("parent_id", -1) >= 0)
        if figures["detections in regions"] == 0:
            problems.append("no detection inside a region")
        check(f"NV12 inference-region=roi-list: {args.device} batch 4 against CPU batch 4",
              [f"exit {r[0]}" for r in (rois_cpu, rois_dev) if r[0] != 0] + problems, figures)

        fp16_device = "cuda:0" if on_cuda else "cpu"
        fp16 = runner.launch("rgb-fp16-b4", raw, width, height, frames, fp16_device, 4, precision="fp16")
        if on_cuda:
            problems, figures = compare_fp16(rgb_dev[3], fp16[3])
            check("fp16 on cuda:0 against fp32", ([f"exit {fp16[0]}"] if fp16[0] != 0 else []) + problems, figures)
        else:
            check("fp16 on the CPU fails with the element's message",
                  expect_failure(fp16, "precision=fp16 needs a CUDA device"))

        shared = runner.launch_shared("shared-model", raw, width, height, frames, args.device, (4, 3))
        problems, figures = [], {}
        for i, lines in enumerate(shared[3]):
            branch_problems, figures[f"branch {i} detections"] = compare_same(rgb_dev[3], lines, frames)
            problems += [f"branch {i}: {p}" for p in branch_problems]
        check(f"two elements sharing one model on {args.device} (batch 4 and 3) against one",
              ([f"exit {shared[0]}"] if shared[0] != 0 else []) + problems,
              {k: v["detections"] for k, v in figures.items()})

        together = runner.launch_shared("shared-together", raw, width, height, frames, args.device,
                                        (4, 4, 4, 4), extra=["batch-timeout=0"])
        problems, figures = [], {}
        for i, lines in enumerate(together[3]):
            branch_problems, branch = compare_same(rgb_dev[3], lines, frames)
            figures[f"branch {i} detections"] = branch["detections"]
            problems += [f"branch {i}: {p}" for p in branch_problems]
        # Timing decides how many batches meet at the model: a figure, not a condition.
        figures["batches that ran with others'"] = together[1].count("ran together with other elements'")
        check(f"four elements sharing one model on {args.device} (batch 4, no timeout) against one",
              ([f"exit {together[0]}"] if together[0] != 0 else []) + problems, figures)

        missing = runner.launch("missing-device", raw, width, height, frames, "cuda:99", 1)
        check("device cuda:99 fails with the element's message",
              expect_failure(missing, "is not available" if on_cuda else "built with a CUDA LibTorch"))

    if args.detect_tool:
        detect_cpu = detect_tool(args, "detect-cpu", "cpu")
        detect_dev = detect_tool(args, "detect-dev", args.device)
        problems, figures = compare_same(detect_cpu[2], detect_dev[2], frames)
        check(f"frcnn-detect: {args.device} against CPU",
              [f"exit {r[0]}" for r in (detect_cpu, detect_dev) if r[0] != 0] + problems, figures)
        detect_fp16 = detect_tool(args, "detect-fp16", args.device, "fp16")
        if on_cuda:
            problems, figures = compare_fp16(detect_dev[2], detect_fp16[2])
            check("frcnn-detect: fp16 against fp32",
                  ([f"exit {detect_fp16[0]}"] if detect_fp16[0] != 0 else []) + problems, figures)
        else:
            check("frcnn-detect: fp16 on the CPU fails with the program's message",
                  expect_failure((detect_fp16[0], detect_fp16[1], 0, []), "fp16 needs a CUDA device"))

    throughput = []
    if args.throughput_frames and args.throughput_weights and not args.no_element:
        short, long = (int(n) for n in args.throughput_counts.split(","))
        traw = os.path.join(runner.work, "throughput.rgb")
        tw, th, _ = write_raw(args.throughput_frames, traw, long)
        bench = {}
        if args.bench_json and os.path.exists(args.bench_json):
            with open(args.bench_json) as f:
                report = json.load(f)
            bench = {c["name"]: c.get("median_fps") for c in report.get("configs", [])}
            # The facade with its frames copied before each batch, as the element copies them.
            copies = report.get("facade_copies") or {}
            if copies.get("ok"):
                bench[copies["config"]] = copies["result"]["fps"]
        batch = args.throughput_batch
        for precision, channels_last in (("fp32", False), ("fp16", True)):
            if precision == "fp16" and not on_cuda:
                continue
            name = f"{precision}{' channels-last' if channels_last else ''} b{batch}"
            # frcnn-bench's score threshold (torchvision's 0.05), so that post-processing has as
            # many detections to keep in both.
            extra = ["threshold=0.05"] + (["channels-last=true"] if channels_last else [])
            runs = [runner.launch(f"throughput-{precision}-{n}", traw, tw, th, n, args.device, batch,
                                  precision=precision, weights=args.throughput_weights, extra=extra,
                                  keep=False)
                    for n in (short, long)]
            problems = [f"exit {r[0]}" for r in runs if r[0] != 0]
            problems += [f"{len(r[3])} lines for {n} frames" for r, n in zip(runs, (short, long)) if len(r[3]) != n]
            fps = (long - short) / (runs[1][2] - runs[0][2]) if not problems and runs[1][2] > runs[0][2] else None
            bench_median = bench.get(f"libfrcnn {name}")
            entry = {"config": name, "frames": [short, long], "seconds": [runs[0][2], runs[1][2]],
                     "element_fps": fps, "bench_facade_fps": bench_median,
                     "bench_facade_frame_copies_fps": bench.get(f"libfrcnn {name}, frames copied before the batch"),
                     "element_vs_bench": fps / bench_median if fps and bench_median else None}
            throughput.append(entry)
            if not problems and not fps:
                # Both runs pay the same start-up; the frames between the two counts must take
                # longer than the machine's noise in it.
                problems.append(f"no figure: {long} frames took {runs[1][2]:.2f} s, no longer than {short} "
                                f"frames' {runs[0][2]:.2f} s; raise --throughput-counts")
            check(f"element throughput {name} ({tw}x{th})", problems, entry)

    with open(os.path.join(args.out, "element_check.json"), "w") as f:
        json.dump({"device": args.device, "frames": frames, "size": [width, height], "checks": checks,
                   "throughput": throughput}, f, indent=1)
    with open(os.path.join(args.out, "element_check.md"), "w") as f:
        f.write(f"frcnndetect through gst-launch-1.0{' (not run: no GStreamer)' if args.no_element else ''}"
                f"{' and frcnn-detect' if args.detect_tool else ''}, device {args.device}, "
                f"{frames} frames of {width}x{height}\n\n")
        f.write("| check | result | figures |\n|---|---|---|\n")
        for c in checks:
            figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in c["figures"].items() if not isinstance(v, list))
            f.write(f"| {c['check']} | {'passed' if c['passed'] else 'FAILED: ' + '; '.join(c['problems'])} | {figures} |\n")
    failed = [c["check"] for c in checks if not c["passed"]]
    log(f"{len(checks) - len(failed)} of {len(checks)} element checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

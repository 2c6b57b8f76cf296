#!/usr/bin/env python3
"""Throughput of libfrcnn on a GPU next to torchvision's, in one run on the same machine.

Runs, side by side and alternating program by program, on the same frames (every *.ppm of
--frames, in name order) and the same weights file:
  - frcnn-bench --facade (Detector::detect, the product path: pre-processing on the GPU, the
    model, post-processing), batch 1/4/8, fp32, fp16, and fp16 with channels-last;
  - bench_torchvision.py (torchvision eager), batch 1/4/8, fp32 and under autocast (fp16);
then the fastest fp16 batch-8 configuration once more with its frames copied before each batch
(--frame-copies, what frcnndetect does with each frame as it arrives), and two frcnn-bench
stage-by-stage runs at batch 8 in fp16, for the share of pre-processing and
post-processing in a batch: one with the frames gathered into pinned memory inside the batch,
one with the frames copied into pinned memory before it (--frame-copies), as frcnndetect copies
each frame on its sink pad's thread when it arrives, while the batch before runs. fp32 is real fp32 on both sides (no TF32); cuDNN picks its
algorithms per input shape on both sides (libfrcnn always does; --no-cudnn-benchmark turns it
off for torchvision).

Writes OUT/throughput.json (every run, its JSON or its error) and OUT/throughput.md (median
frames/s per configuration, the ratios the targets name, the stage shares, failed runs with the
end of their stderr). Standard library only.

Usage: throughput.py --bench FRCNN_BENCH --torchvision-script BENCH_TORCHVISION_PY
       --frames DIR --weights FILE [--python PY] [--rounds N] [--frames-per-run N] [--out DIR]
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

BATCHES = (1, 4, 8)
# Targets: libfrcnn fp16 batch 8 against torchvision eager fp32 batch 1 and against torchvision
# autocast batch 8; pre-processing + post-processing adding under 10% to the model's forward.
TARGET_VS_EAGER = 3.0
TARGET_VS_AUTOCAST = 1.5
TARGET_PRE_POST = 0.10


def log(message):
    print(message, flush=True)


def configs():
    """Every configuration of the matrix, in the order one round runs them: for each batch size,
    the programs alternate."""
    out = []
    for batch in BATCHES:
        out += [
            {"name": f"libfrcnn fp32 b{batch}", "program": "libfrcnn", "precision": "fp32", "batch": batch,
             "channels_last": False},
            {"name": f"torchvision fp32 b{batch}", "program": "torchvision", "precision": "fp32", "batch": batch,
             "channels_last": False},
            {"name": f"libfrcnn fp16 b{batch}", "program": "libfrcnn", "precision": "fp16", "batch": batch,
             "channels_last": False},
            {"name": f"torchvision autocast b{batch}", "program": "torchvision", "precision": "autocast-fp16",
             "batch": batch, "channels_last": False},
            {"name": f"libfrcnn fp16 channels-last b{batch}", "program": "libfrcnn", "precision": "fp16",
             "batch": batch, "channels_last": True},
        ]
    return out


def frames_for(batch, args):
    """Timed frames of one run: --frames-per-run rounded up to whole batches."""
    return (args.frames_per_run + batch - 1) // batch * batch


def command(config, args, images, staged=False, frame_copies=False):
    size = []
    if args.min_size:
        size += ["--min-size", str(args.min_size)]
    if args.max_size:
        size += ["--max-size", str(args.max_size)]
    common = ["--batch", str(config["batch"]), "--warmup", str(args.warmup),
              "--frames", str(frames_for(config["batch"], args)), "--json"]
    if config["program"] == "libfrcnn":
        cmd = [args.bench, "--arch", args.arch, "--weights", args.weights, "--device", args.device,
               "--precision", config["precision"]] + size + common
        if not staged:
            cmd.append("--facade")
        if frame_copies:
            cmd.append("--frame-copies")
        if config["channels_last"]:
            cmd.append("--channels-last")
        return cmd + images
    cmd = [args.python, args.torchvision_script, "--arch", args.arch, "--weights", args.weights,
           "--device", args.device, "--no-check"] + size + common
    if config["precision"] == "autocast-fp16":
        cmd.append("--autocast")
    if args.cudnn_benchmark:
        cmd.append("--cudnn-benchmark")
    if config["channels_last"]:
        cmd.append("--channels-last")
    return cmd + images


def tail(text, lines=8, chars=800):
    text = "\n".join(text.strip().splitlines()[-lines:])
    return text[-chars:]


def run_one(config, args, images, staged=False, frame_copies=False):
    """Runs one configuration once: its JSON, or why it failed."""
    cmd = command(config, args, images, staged, frame_copies)
    start = time.monotonic()
    record = {"config": config["name"], "command": cmd}
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        record.update(ok=False, error=f"timed out after {args.timeout} s", stderr_tail=tail(stderr))
        return record
    except OSError as e:
        record.update(ok=False, error=str(e), stderr_tail="")
        return record
    record["wall_s"] = round(time.monotonic() - start, 1)
    result = None
    if p.returncode == 0:
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:
            result = None
    if p.returncode != 0 or result is None or not result.get("fps"):
        record.update(ok=False, error=f"exit status {p.returncode}" if p.returncode else "no JSON with fps",
                      stderr_tail=tail(p.stderr or p.stdout))
        return record
    record.update(ok=True, result=result)
    return record


def median_fps(records):
    fps = [r["result"]["fps"] for r in records if r["ok"]]
    return statistics.median(fps) if fps else None


def fmt(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio_row(label, num_name, num, den_name, den, target):
    if num is None or den is None or den <= 0:
        return {"ratio": label, "numerator": num_name, "denominator": den_name, "value": None,
                "target": target, "met": None}
    value = num / den
    return {"ratio": label, "numerator": num_name, "denominator": den_name, "value": round(value, 3),
            "target": target, "met": value >= target}


def gpu_name():
    if not shutil.which("nvidia-smi"):
        return None
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30)
        return p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def markdown(report):
    s = report["settings"]
    lines = ["# Throughput: libfrcnn against torchvision", ""]
    size = "x".join(str(v) for v in s["frame_size"]) if s["frame_size"] else "?"
    lines.append(f"{s['arch']} on {s['device']}" + (f" ({s['gpu']})" if s.get("gpu") else "") +
                 f", {len(s['images'])} frames of {size} from {s['frames_dir']}, "
                 f"weights {os.path.basename(s['weights'])}; {s['rounds']} round(s), "
                 f"{s['frames_per_run']} timed frames per run after {s['warmup']} warm-up batches; "
                 f"programs alternating run by run. torchvision: {s['torchvision'] or '?'}; "
                 f"cuDNN benchmark for torchvision: {'on' if s['cudnn_benchmark'] else 'off'}.")
    lines.append("libfrcnn runs are `frcnn-bench --facade` (Detector::detect: GPU pre-processing, model, "
                 "post-processing, detections back on the CPU); torchvision runs are eager, timed from the "
                 "uint8 frames to the detections on the CPU. fp32 is without TF32 on both sides.")
    lines += ["", "| configuration | batch | median frames/s | runs (frames/s) | median latency p50 (ms) |",
              "| --- | ---: | ---: | --- | ---: |"]
    for c in report["configs"]:
        runs = ", ".join(fmt(r["result"]["fps"]) if r["ok"] else "failed" for r in c["runs"])
        lat = [r["result"]["latency_ms"]["p50"] for r in c["runs"] if r["ok"]]
        lines.append(f"| {c['name']} | {c['batch']} | {fmt(c['median_fps'])} | {runs} | "
                     f"{fmt(statistics.median(lat)) if lat else 'n/a'} |")
    lines += ["", "| ratio | value | target | met |", "| --- | ---: | ---: | --- |"]
    for r in report["ratios"]:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        if r.get("share") and not r.get("decides_target"):
            met = "(for comparison)"
        target = f"< {r['target']:.0%}" if r.get("share") else f">= {r['target']}x"
        value = fmt(r["value"] * 100) + "%" if r.get("share") and r["value"] is not None else (
            fmt(r["value"], 2) + "x" if r["value"] is not None else "n/a")
        lines.append(f"| {r['ratio']} | {value} | {target} | {met} |")
    fc = report.get("facade_copies")
    if fc and fc["ok"]:
        res = fc["result"]
        lines += ["", f"{fc['config']} (`--frame-copies`, as frcnndetect runs): {res['fps']:.1f} frames/s, "
                      f"latency p50 {res['latency_ms']['p50']:.1f} ms; copying a batch's frames, on the "
                      f"caller's thread before the batch: {res['frame_copy_ms_p50']:.2f} ms (p50)."]
    staged_runs = [r for r in (report["staged"], report.get("staged_copies")) if r]
    done = [r for r in staged_runs if r["ok"] and r["result"].get("stages_ms_p50")]
    if done:
        names = list(done[0]["result"]["stages_ms_p50"])
        lines += ["", "Stages of one batch (stage-by-stage runs, medians in ms, with a synchronisation "
                      "between stages):", "",
                  "| run | frames/s | " + " | ".join(names) + " | sum | frames copied before the batch (ms) |",
                  "| --- |" + " ---: |" * (len(names) + 3)]
        for st in done:
            res = st["result"]
            stages = res["stages_ms_p50"]
            copy_ms = res.get("frame_copy_ms_p50")
            lines.append(f"| {st['config']} | {res['fps']:.1f} | " + " | ".join(f"{v:.2f}" for v in stages.values()) +
                         f" | {sum(stages.values()):.2f} | {fmt(copy_ms, 2) if copy_ms is not None else 'n/a'} |")
        for r in report["ratios"]:
            if r.get("share") and r.get("share_of_batch") is not None:
                lines += ["", f"{r['ratio']}: {r['value']:.1%} of the model's forward, "
                              f"{r['share_of_batch']:.1%} of the batch."]
        for st in done:
            res = st["result"]
            if res.get("transform_host_gather_ms_p50") is not None:
                lines += ["", f"{st['config']}: of the transform, gathering frame bytes into pinned memory on "
                              f"the host took {res['transform_host_gather_ms_p50']:.2f} ms (the rest: copies to "
                              f"the device, kernels)."]
            if res.get("staged_vs_forward") is not None:
                lines += ["", f"{st['config']}, stage-by-stage run against the model's forward: "
                              f"`{json.dumps(res['staged_vs_forward'])}`"]
    failed = [r for c in report["configs"] for r in c["runs"] if not r["ok"]]
    failed += [r for r in staged_runs if not r["ok"]]
    if fc and not fc["ok"]:
        failed.append(fc)
    if failed:
        lines += ["", "## Failed runs", ""]
        for r in failed:
            lines += [f"- {r['config']}: {r['error']}", "", "```", r.get("stderr_tail", ""), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, help="the frcnn-bench program")
    p.add_argument("--torchvision-script", required=True, help="tests/reference/bench_torchvision.py")
    p.add_argument("--python", default=sys.executable, help="the Python with torch and torchvision "
                   "that runs the torchvision script (default: this one)")
    p.add_argument("--frames", required=True, help="a folder of binary PPM frames (*.ppm)")
    p.add_argument("--weights", required=True, help="a checkpoint both programs read "
                   "(frcnn-bench --save-weights writes one)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each configuration (default 2)")
    p.add_argument("--frames-per-run", type=int, default=24,
                   help="timed frames per run, rounded up to whole batches (default 24)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per run (default 2)")
    p.add_argument("--out", default=".", help="folder for throughput.json and throughput.md (default .)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run of this script "
                   "(fp16 and autocast runs then fail, and are reported so)")
    p.add_argument("--arch", default="fasterrcnn_resnet50_fpn")
    p.add_argument("--min-size", type=int, default=0, help="the model's min_size (default: the preset's, 800)")
    p.add_argument("--max-size", type=int, default=0, help="the model's max_size (default: the preset's, 1333)")
    p.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
                   help="leave torch.backends.cudnn.benchmark off in the torchvision runs")
    p.add_argument("--timeout", type=int, default=300, help="seconds one run may take (default 300)")
    args = p.parse_args()
    if args.rounds < 1 or args.frames_per_run < 1 or args.warmup < 0:
        p.error("--rounds and --frames-per-run must be >= 1, --warmup >= 0")

    images = sorted(glob.glob(os.path.join(args.frames, "*.ppm")))
    if not images:
        sys.exit(f"throughput.py: no *.ppm frames in {args.frames}")
    for path in (args.bench, args.torchvision_script, args.weights):
        if not os.path.isfile(path):
            sys.exit(f"throughput.py: {path}: no such file")
    os.makedirs(args.out, exist_ok=True)

    matrix = configs()
    runs = {c["name"]: [] for c in matrix}
    total = args.rounds * len(matrix) + 3
    done = 0
    started = time.monotonic()
    log(f"throughput: {len(matrix)} configurations x {args.rounds} round(s) + 1 run with frame copies "
        f"+ 2 stage-by-stage runs, "
        f"{len(images)} frames from {args.frames}")
    for round_index in range(args.rounds):
        # Every other round in reverse, so that a drift of the machine's speed over the run
        # weighs on both programs alike.
        order = matrix if round_index % 2 == 0 else matrix[::-1]
        for config in order:
            record = run_one(config, args, images)
            record["round"] = round_index + 1
            runs[config["name"]].append(record)
            done += 1
            status = f"{record['result']['fps']:.2f} frames/s" if record["ok"] else f"FAILED ({record['error']})"
            log(f"[{done}/{total}] {time.monotonic() - started:6.1f}s round {round_index + 1} "
                f"{config['name']}: {status}")

    report_configs = []
    for config in matrix:
        report_configs.append(dict(config, runs=runs[config["name"]], median_fps=median_fps(runs[config["name"]])))
    by_name = {c["name"]: c for c in report_configs}

    # fp16 batch 8: the faster of NCHW and channels-last; the stage run uses the same layout.
    fp16_b8 = [by_name["libfrcnn fp16 b8"], by_name["libfrcnn fp16 channels-last b8"]]
    best_fp16 = max(fp16_b8, key=lambda c: c["median_fps"] if c["median_fps"] is not None else -1)
    staged_config = dict(best_fp16, name="libfrcnn fp16 b8 stage by stage" +
                         (", channels-last" if best_fp16["channels_last"] else ""))
    facade_copies_config = dict(best_fp16, name=best_fp16["name"] + ", frames copied before the batch")
    facade_copies = run_one(facade_copies_config, args, images, frame_copies=True)
    done += 1
    log(f"[{done}/{total}] {time.monotonic() - started:6.1f}s {facade_copies_config['name']}: " +
        (f"{facade_copies['result']['fps']:.2f} frames/s" if facade_copies["ok"]
         else f"FAILED ({facade_copies['error']})"))
    copies_config = dict(staged_config, name=staged_config["name"] + ", frames copied before the batch")
    staged_runs = []
    for config, copies in ((staged_config, False), (copies_config, True)):
        record = run_one(config, args, images, staged=True, frame_copies=copies)
        staged_runs.append(record)
        done += 1
        log(f"[{done}/{total}] {time.monotonic() - started:6.1f}s {config['name']}: " +
            ("ok" if record["ok"] else f"FAILED ({record['error']})"))
    staged, staged_copies = staged_runs

    eager = by_name["torchvision fp32 b1"]
    autocast = by_name["torchvision autocast b8"]
    ratios = [
        ratio_row(f"{best_fp16['name']} / torchvision eager fp32 b1", best_fp16["name"], best_fp16["median_fps"],
                  eager["name"], eager["median_fps"], TARGET_VS_EAGER),
        ratio_row(f"{best_fp16['name']} / torchvision autocast b8", best_fp16["name"], best_fp16["median_fps"],
                  autocast["name"], autocast["median_fps"], TARGET_VS_AUTOCAST),
    ]
    # The target: what pre- and post-processing add to the model's forward (backbone and FPN,
    # RPN, RoI heads), not their share of the whole batch (a smaller figure). Measured twice: with
    # the frames gathered inside the batch, and with them copied before it as the element does
    # (the copying then runs on the sink pad's thread, beside the batch before, and is reported
    # apart). The element's figure decides the target.
    def pre_post_share(record, label, decides):
        row = {"ratio": label, "share": True, "target": TARGET_PRE_POST, "value": None,
               "met": None, "share_of_batch": None, "decides_target": decides}
        if record["ok"] and record["result"].get("stages_ms_p50"):
            stages = record["result"]["stages_ms_p50"]
            pre_post_ms = stages["transform"] + stages["postprocess"]
            forward_ms = stages["backbone_fpn"] + stages["rpn"] + stages["roi_heads"]
            if forward_ms > 0:
                row["value"] = round(pre_post_ms / forward_ms, 4)
                row["share_of_batch"] = round(pre_post_ms / (pre_post_ms + forward_ms), 4)
                row["met"] = row["value"] < TARGET_PRE_POST if decides else None
        return row
    ratios.append(pre_post_share(staged, "pre-processing + post-processing added to the model's forward "
                                 "(stage-by-stage, fp16 b8, frames gathered in the batch)", False))
    ratios.append(pre_post_share(staged_copies, "pre-processing + post-processing added to the model's forward "
                                 "(stage-by-stage, fp16 b8, frames copied before the batch, as frcnndetect "
                                 "does)", True))

    first_ok = next((r["result"] for c in report_configs for r in c["runs"] if r["ok"]), None)
    tv_ok = next((r["result"] for c in report_configs if c["program"] == "torchvision"
                  for r in c["runs"] if r["ok"]), None)
    report = {
        "settings": {
            "arch": args.arch, "device": args.device, "gpu": gpu_name() if args.device != "cpu" else None,
            "frames_dir": args.frames, "images": [os.path.basename(i) for i in images],
            "frame_size": first_ok["frame_size"] if first_ok else None,
            "weights": args.weights, "rounds": args.rounds, "frames_per_run": args.frames_per_run,
            "warmup": args.warmup, "cudnn_benchmark": args.cudnn_benchmark,
            "torchvision": tv_ok["implementation"] if tv_ok else None,
            "wall_s": round(time.monotonic() - started, 1),
        },
        "configs": report_configs,
        "facade_copies": facade_copies,
        "staged": staged,
        "staged_copies": staged_copies,
        "ratios": ratios,
    }
    with open(os.path.join(args.out, "throughput.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "throughput.md"), "w") as f:
        f.write(markdown(report))
    log(f"throughput: done in {report['settings']['wall_s']} s; wrote {args.out}/throughput.json and throughput.md")
    for r in ratios:
        log(f"  {r['ratio']}: {r['value']} (target {r['target']}, met {r['met']})")
    failed = sum(1 for c in report_configs for r in c["runs"] if not r["ok"]) + sum(
        0 if r["ok"] else 1 for r in staged_runs + [facade_copies])
    if failed:
        log(f"throughput: {failed} run(s) failed (see throughput.md)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

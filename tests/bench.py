#!/usr/bin/python3
"""CPU benchmark of libfrcnn against torchvision, side by side (`make bench`).

Both programs run the same model (fasterrcnn_resnet50_fpn with the same seeded random weights,
their frozen batch-norm statistics taken from the first frame), on the same frames of a real video,
at the same input size, batch size and thread count: frcnn-bench (C++) and
tests/reference/bench_torchvision.py (torchvision in Python). They alternate run by run, the
order swapped every round, so that both see the same machine load; each figure is the median over
the rounds, and the ratio of the medians is what to read on a shared, noisy machine.

Then the tiny preset's frames per second on 640x480 frames, and its resident memory after 200 and
after 2000 frames. --sweep adds batch 2 and input sizes 320 and 640 (for the plot); --experiments
adds an operator profile, the channels-last memory format in both programs, libfrcnn with
LibTorch's convolutions (--cpu-convolutions libtorch) instead of the default oneDNN ones, and for
the tiny preset: OpenMP's wait policy, glibc keeping freed memory, oneDNN against LibTorch.
--pipeline adds frcnndetect in `filesrc ! decodebin ! frcnndetect ! fakesink` against frcnn-bench
on the same frames, and that pipeline with glibc keeping freed memory and with the element's
`threads` against LibTorch's own thread count. --mobilenet adds the two MobileNetV3 models (their
own seeded weights, batch 1 at their own input sizes) against torchvision, with libfrcnn on its
default (oneDNN) convolutions and on LibTorch's.

Usage: bench.py --build DIR [--rounds N] [--threads N] [--sweep | --cases A,B] [--experiments]
                [--pipeline] [--mobilenet] [--no-compare] [--no-tiny] [--quick] [--results FILE]
                [--plot PNG]
       bench.py --plot-from RESULTS... --plot PNG
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VIDEO = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi"
# glibc keeps freed memory for the next frame instead of giving it back and faulting it in again
# (docs/performance.md, "Memory: keep freed pages").
KEEP_FREED_MEMORY = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
ARCH = "fasterrcnn_resnet50_fpn"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run_json(cmd, env):
    log("  $ " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "nproc": os.cpu_count(), "loadavg_start": os.getloadavg(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)")}


def median_of(runs, *path):
    values = []
    for r in runs:
        v = r
        for p in path:
            v = v[p]
        values.append(v)
    return statistics.median(values)


def summarize(runs):
    s = {"fps": median_of(runs, "fps"), "latency_p50_ms": median_of(runs, "latency_ms", "p50"),
         "latency_p95_ms": median_of(runs, "latency_ms", "p95"), "peak_rss_mb": median_of(runs, "peak_rss_mb")}
    if runs[0].get("gflops_per_s") is not None:
        s["gflops_per_s"] = median_of(runs, "gflops_per_s")
        s["gflops_per_frame"] = runs[0]["gflops_per_frame"]
    if runs[0].get("stages_ms_p50"):
        s["stages_ms_p50"] = {k: median_of(runs, "stages_ms_p50", k) for k in runs[0]["stages_ms_p50"]}
    if all(r.get("load_ms") is not None for r in runs):
        s["load_ms"] = median_of(runs, "load_ms")
    s["fps_runs"] = [r["fps"] for r in runs]
    s["detections_first_batch"] = runs[0]["detections_first_batch"]
    s["staged_vs_forward"] = runs[0]["staged_vs_forward"] if runs[0]["staged_vs_forward"] is not None else next(
        (r["staged_vs_forward"] for r in runs if r["staged_vs_forward"] is not None), None)
    return s


def compare_detections(path_a, path_b):
    """Detections of the same frames by both programs: counts, whether the labels come in the
    same order, and the share of A's detections that B has too (same label, every box coordinate
    within 0.5 px), the way the parity tests compare them."""
    with open(path_a) as f:
        a = json.load(f)
    with open(path_b) as f:
        b = json.load(f)
    counts = [len(x) for x in a]
    same_order = counts == [len(y) for y in b] and all(
        [d["label"] for d in x] == [d["label"] for d in y] for x, y in zip(a, b))
    matched = total = 0
    for x, y in zip(a, b):
        for d in x:
            total += 1
            matched += any(e["label"] == d["label"] and all(abs(u - v) <= 0.5 for u, v in zip(d["box"], e["box"]))
                           for e in y)
    return {"counts": counts, "other_counts": [len(y) for y in b], "labels_in_same_order": same_order,
            "matched_within_0.5px": matched / total if total else 1.0}


def compare(case, bench, weights, frames_dir, args, env, extra_cpp=(), extra_tv=()):
    """Alternates frcnn-bench and bench_torchvision.py for case['rounds'] rounds; the first round
    also compares their detections."""
    arch = case.get("arch", ARCH)
    common = ["--min-size", str(case["min_size"]), "--batch", str(case["batch"]), "--threads",
              str(args.threads), "--warmup", str(case["warmup"]), "--frames", str(case["frames"])]
    if "max_size" in case:
        common += ["--max-size", str(case["max_size"])]
    cpp = [bench, "--arch", arch, "--weights", weights, "--json", *common, *extra_cpp, VIDEO]
    tv = ["/usr/bin/python3", os.path.join(HERE, "reference", "bench_torchvision.py"), "--arch", arch,
          "--weights", weights, "--frames-dir", frames_dir, "--json", *common, *extra_tv]
    runs = {"libfrcnn": [], "torchvision": []}
    det = {"libfrcnn": os.path.join(frames_dir, "..", "cpp.json"), "torchvision": os.path.join(frames_dir, "..", "tv.json")}
    for r in range(case["rounds"]):
        order = [("libfrcnn", cpp), ("torchvision", tv)]
        if r % 2:
            order.reverse()
        for name, cmd in order:
            # The first round checks (stage by stage against forward(), and the detections);
            # the others only time.
            extra = ["--detections", det[name]] if r == 0 else ["--no-check"]
            runs[name].append(run_json(cmd + extra, env))
    result = {"case": case, "libfrcnn": summarize(runs["libfrcnn"]), "torchvision": summarize(runs["torchvision"]),
              "loadavg_end": os.getloadavg(), "runs": runs}
    result["ratio_fps"] = result["libfrcnn"]["fps"] / result["torchvision"]["fps"]
    result["detections"] = compare_detections(det["libfrcnn"], det["torchvision"])
    log(f"  {case['name']}: libfrcnn {result['libfrcnn']['fps']:.3f} fps, torchvision "
        f"{result['torchvision']['fps']:.3f} fps, ratio {result['ratio_fps']:.3f}; detections {result['detections']}")
    return result


# Runs in a child process (so that GStreamer sees this build's plugin only): plays the pipeline to
# the end and prints the frames per second at fakesink, from the arrival of frame `warmup` on.
PIPELINE_SCRIPT = r"""
import sys, time, json
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
description, warmup = sys.argv[1], int(sys.argv[2])
pipeline = Gst.parse_launch(description)
arrivals = []
def probe(pad, info):
    arrivals.append(time.perf_counter())
    return Gst.PadProbeReturn.OK
pipeline.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
pipeline.set_state(Gst.State.PLAYING)
msg = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipeline.set_state(Gst.State.NULL)
if msg.type == Gst.MessageType.ERROR:
    sys.exit("pipeline error: %s" % msg.parse_error()[0].message)
n = len(arrivals) - 1 - warmup
print(json.dumps({"frames": len(arrivals), "timed_frames": n,
                  "fps": n / (arrivals[-1] - arrivals[warmup])}))
"""


def pipeline_vs_bench(bench, build, args, env, tmp):
    """frcnndetect in filesrc ! decodebin ! frcnndetect ! fakesink against frcnn-bench --facade on
    the same frames, tiny preset, alternating."""
    weights = os.path.join(tmp, "tiny.pth")
    subprocess.run([bench, "--arch", "tiny", "--seed", "1", "--save-weights", weights, VIDEO], check=True, env=env)
    gst_env = dict(env, GST_PLUGIN_PATH=os.path.join(build, "gst"),
                   GST_REGISTRY=os.path.join(tmp, "gst-registry.bin"))
    warmup = 5
    # threshold: frcnn-bench's (the model's 0.05), not the element's default 0.5.
    def describe(properties=""):
        return (f"filesrc location={VIDEO} ! decodebin ! frcnndetect model=tiny weights={weights} "
                f"threshold=0.05{properties} ! fakesink name=sink sync=false")
    description = describe()
    def run_pipeline(e, properties=""):
        d = describe(properties)
        log("  $ gst: " + d)
        out = subprocess.run(["/usr/bin/python3", "-c", PIPELINE_SCRIPT, d, str(warmup)], check=True,
                             stdout=subprocess.PIPE, env=e, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    runs = {"pipeline": [], "frcnn-bench": []}
    frames = None
    for r in range(max(2, args.rounds // 2 + 1)):
        p = run_pipeline(gst_env)
        runs["pipeline"].append(p)
        frames = p["timed_frames"]
        runs["frcnn-bench"].append(run_json(
            [bench, "--arch", "tiny", "--weights", weights, "--threads", str(args.threads), "--facade",
             "--warmup", str(warmup + 1), "--frames", str(frames), "--json", VIDEO], env))
    result = {"pipeline_fps": statistics.median(r["fps"] for r in runs["pipeline"]),
              "bench_fps": statistics.median(r["fps"] for r in runs["frcnn-bench"]),
              "frames": frames, "description": description.replace(tmp + "/", ""), "runs": runs}
    result["ratio"] = result["pipeline_fps"] / result["bench_fps"]
    log(f"  pipeline {result['pipeline_fps']:.2f} fps, frcnn-bench {result['bench_fps']:.2f} fps, "
        f"ratio {result['ratio']:.3f}")

    # The same pipeline with glibc's default against glibc keeping freed memory: the element runs
    # the model on a thread of its own, whose arena gives memory back more readily.
    default_env = {k: v for k, v in gst_env.items() if k != "GLIBC_TUNABLES"}
    memory = alternate({"default": default_env, "keep_freed": dict(gst_env, GLIBC_TUNABLES=KEEP_FREED_MEMORY)}, 4,
                       lambda e, r: run_pipeline(e)["fps"])
    result["memory_settings"] = fps_ab_result(memory, "default", "keep_freed",
                                              "pipeline, keep freed memory / glibc's default")

    # The element's `threads` against LibTorch's own count, in a program that sets no
    # OMP_NUM_THREADS (LibTorch counts physical cores, which some machines under-report).
    no_count_env = {k: v for k, v in gst_env.items() if k != "OMP_NUM_THREADS"}
    threads = alternate({"libtorch_default": "", "property": f" threads={args.threads}"}, 4,
                        lambda properties, r: run_pipeline(no_count_env, properties)["fps"])
    result["threads_property"] = fps_ab_result(threads, "libtorch_default", "property",
                                               f"pipeline, threads={args.threads} / LibTorch's default count")
    return result


def alternate(variants, rounds, run):
    """Runs each of `variants` (name -> what `run(variant, round)` takes) once a round, `rounds`
    rounds, the order turned every round so that all see the same load; name -> their results."""
    runs = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants.items())
        if r % 2:
            order.reverse()
        for name, variant in order:
            runs[name].append(run(variant, r))
    return runs


def fps_ab_result(runs, base, other, label):
    """ab_result for runs that are frames per second alone (pipelines)."""
    result = {name: {"fps": statistics.median(v), "fps_runs": v} for name, v in runs.items()}
    result["ratio_fps"] = result[other]["fps"] / result[base]["fps"]
    log(f"  {label}: {result['ratio_fps']:.3f}")
    return result


def ab_result(runs, base, other, label):
    """The summaries of alternating runs, with the ratio of `other`'s frames per second to `base`'s."""
    result = {k: summarize(v) for k, v in runs.items()}
    result["ratio_fps"] = result[other]["fps"] / result[base]["fps"]
    log(f"  {label}: {result['ratio_fps']:.3f}")
    return result


def ab_channels_last(bench, weights, args, env):
    """frcnn-bench as it is against frcnn-bench --channels-last, alternating, batch 1 at 480."""
    cmd = [bench, "--arch", ARCH, "--weights", weights, "--min-size", "480", "--threads", str(args.threads),
           "--warmup", "1", "--frames", "5", "--json", VIDEO]
    runs = alternate({"nchw": cmd, "channels_last": cmd + ["--channels-last"]}, max(2, args.rounds // 2 + 1),
                     lambda c, r: run_json(c + (["--no-check"] if r else []), env))
    return ab_result(runs, "nchw", "channels_last", "channels-last / NCHW")


def tiny_command(bench, args, *extra):
    """frcnn-bench on the tiny preset with seeded weights, 640x480 frames."""
    return [bench, "--arch", "tiny", "--seed", "1", "--resize", "640x480", "--threads", str(args.threads),
            *extra, "--json", VIDEO]


def ab_wait_policy(bench, args, env):
    """The tiny preset with OpenMP's default wait policy against OMP_WAIT_POLICY=PASSIVE, alternating."""
    cmd = tiny_command(bench, args, "--warmup", "3", "--frames", "20")
    default_env = {k: v for k, v in env.items() if k != "OMP_WAIT_POLICY"}
    runs = alternate({"default": default_env, "PASSIVE": dict(env, OMP_WAIT_POLICY="PASSIVE")}, 3,
                     lambda e, r: run_json(cmd, e))
    return ab_result(runs, "default", "PASSIVE", "PASSIVE / default")


def ab_tiny(bench, args, variants):
    """The tiny preset, 640x480 frames, Detector facade, under each of `variants` (name -> (extra
    arguments, environment)), alternating, 5 rounds."""
    cmd = tiny_command(bench, args, "--facade", "--warmup", "3", "--frames", "40")
    return alternate(variants, 5, lambda v, r: run_json(cmd + v[0], v[1]))


def ab_memory_settings(bench, args, env):
    """glibc's default against KEEP_FREED_MEMORY, tiny preset."""
    default_env = {k: v for k, v in env.items() if k != "GLIBC_TUNABLES"}
    runs = ab_tiny(bench, args, {"default": ([], default_env),
                                 "keep_freed": ([], dict(env, GLIBC_TUNABLES=KEEP_FREED_MEMORY))})
    return ab_result(runs, "default", "keep_freed", "keep freed memory / glibc's default")


def ab_tiny_convolutions(bench, args, env):
    """The tiny preset on oneDNN's convolutions against LibTorch's."""
    runs = ab_tiny(bench, args, {"libtorch": (["--cpu-convolutions", "libtorch"], env),
                                 "onednn": (["--cpu-convolutions", "onednn"], env)})
    return ab_result(runs, "libtorch", "onednn", "tiny, oneDNN / LibTorch convolutions")


def ab_precision(bench, weights, args, env, precision):
    """fasterrcnn_resnet50_fpn in fp32 against `precision` (bf16 or int8; libfrcnn's defaults
    otherwise), batch 1 at 480, alternating; and the tiny preset the same way."""
    cmd = [bench, "--arch", ARCH, "--weights", weights, "--min-size", "480", "--threads", str(args.threads),
           "--warmup", "1", "--frames", "5", "--json", VIDEO]
    runs = alternate({"fp32": cmd, precision: cmd + ["--precision", precision]}, args.rounds,
                     lambda c, r: run_json(c + (["--no-check"] if r else []), env))
    result = {"resnet50": ab_result(runs, "fp32", precision, f"fasterrcnn_resnet50_fpn, {precision} / fp32")}
    runs = ab_tiny(bench, args, {"fp32": ([], env), precision: (["--precision", precision], env)})
    result["tiny"] = ab_result(runs, "fp32", precision, f"tiny, {precision} / fp32")
    return result


def compare_mobilenet(bench, frames_dir, args, env, tmp):
    """The MobileNetV3 models at batch 1 and their own input sizes against torchvision, each with
    its own seeded weights: libfrcnn on its default convolutions (oneDNN), then on LibTorch's."""
    comparisons = []
    for arch, min_size, max_size, frames in (("fasterrcnn_mobilenet_v3_large_fpn", 800, 1333, 8),
                                             ("fasterrcnn_mobilenet_v3_large_320_fpn", 320, 640, 16)):
        weights = os.path.join(tmp, arch + ".pth")
        subprocess.run([bench, "--arch", arch, "--seed", "1", "--save-weights", weights, VIDEO], check=True, env=env)
        for experiment, extra in ((None, []), ("LibTorch convolutions", ["--cpu-convolutions", "libtorch"])):
            case = dict(name=arch.replace("fasterrcnn_", "") + ("-libtorch" if experiment else ""), arch=arch,
                        batch=1, min_size=min_size, max_size=max_size, warmup=2,
                        frames=1 if args.quick else frames, rounds=args.rounds)
            log(f"{case['name']}:")
            c = compare(case, bench, weights, frames_dir, args, env, extra)
            if experiment:
                c["experiment"] = experiment
            comparisons.append(c)
    return comparisons


def print_table(results):
    m = results["machine"]
    print(f"\nMachine: {m['cpu']}, {m['nproc']} CPUs; load average at start "
          f"{' '.join(f'{x:.2f}' for x in m['loadavg_start'])}, at end "
          f"{' '.join(f'{x:.2f}' for x in m['loadavg_end'])}; OMP_WAIT_POLICY {m['OMP_WAIT_POLICY']}")
    print(f"{'case':<36}{'libfrcnn fps':>13}{'torchvision fps':>16}{'ratio':>7}"
          f"{'p50 ms C++/tv':>18}{'GFLOP/s C++/tv':>17}")
    for c in results["comparisons"]:
        a, b = c["libfrcnn"], c["torchvision"]
        label = f"{c['case']['name']} (b{c['case']['batch']}, {c['case']['min_size']}px)"
        print(f"{label:<36}{a['fps']:>13.3f}{b['fps']:>16.3f}{c['ratio_fps']:>7.2f}"
              f"{a['latency_p50_ms']:>9.0f}/{b['latency_p50_ms']:<8.0f}"
              f"{a.get('gflops_per_s', 0):>8.1f}/{b.get('gflops_per_s') or 0:<8.1f}")
    for c in results["comparisons"]:
        a, b = c["libfrcnn"], c["torchvision"]
        if "load_ms" in a and "load_ms" in b:
            print(f"{c['case']['name']}: model loaded in {a['load_ms']:.0f} ms (libfrcnn) against "
                  f"{b['load_ms']:.0f} ms (torchvision), medians")
    for c in results["comparisons"]:
        d = c["detections"]
        print(f"{c['case']['name']}: detections per frame {d['counts']} vs {d['other_counts']}; labels in the same "
              f"order: {d['labels_in_same_order']}; found by torchvision within 0.5 px: "
              f"{100 * d['matched_within_0.5px']:.1f}%")
    for name, t in results.get("tiny", {}).items():
        print(f"tiny 640x480 ({name}): {t['fps']:.2f} fps (runs {t['fps_runs']}), latency p50 {t['latency_p50_ms']:.1f} ms")
    ab = results.get("channels_last_ab")
    if ab:
        print(f"libfrcnn batch 1, 480px: NCHW {ab['nchw']['fps']:.3f} fps, channels-last {ab['channels_last']['fps']:.3f} "
              f"fps; ratio {ab['ratio_fps']:.3f}")
    prof = results.get("profile")
    if prof:
        ops = prof["libfrcnn"]["op_profile_ms"]
        print(f"libfrcnn operator profile, one batch of {ops['batch_ms']:.0f} ms: " +
              ", ".join(f"{k} {v:.0f}" for k, v in list(ops["top_operators"].items())[:6]))
    for key, what in (("wait_policy_ab", "OpenMP wait policy"),
                      ("memory_settings_ab", f"glibc keeping freed memory ({KEEP_FREED_MEMORY})"),
                      ("tiny_convolutions_ab", "oneDNN's convolutions against LibTorch's")):
        ab = results.get(key)
        if ab:
            print(f"tiny 640x480, {what}: " +
                  ", ".join(f"{name} {ab[name]['fps']:.2f} fps" for name in ab if name != "ratio_fps") +
                  f"; ratio {ab['ratio_fps']:.3f}")
    pipe = results.get("pipeline")
    if pipe:
        print(f"tiny, filesrc ! decodebin ! frcnndetect ! fakesink: {pipe['pipeline_fps']:.2f} fps; frcnn-bench "
              f"--facade on the same frames {pipe['bench_fps']:.2f} fps; ratio {pipe['ratio']:.3f}")
        ms = pipe.get("memory_settings")
        if ms:
            print(f"the same pipeline, glibc's default {ms['default']['fps']:.2f} fps, keeping freed memory "
                  f"{ms['keep_freed']['fps']:.2f} fps; ratio {ms['ratio_fps']:.3f}")
        tp = pipe.get("threads_property")
        if tp:
            print(f"the same pipeline without OMP_NUM_THREADS, LibTorch's count {tp['libtorch_default']['fps']:.2f} "
                  f"fps, threads={results['threads']} {tp['property']['fps']:.2f} fps; ratio {tp['ratio_fps']:.3f}")
    for precision, models in results.get("precision_ab", {}).items():
        for model, ab in models.items():
            print(f"{model}, libfrcnn fp32 {ab['fp32']['fps']:.3f} fps against {precision} "
                  f"{ab[precision]['fps']:.3f} fps (runs {ab['fp32']['fps_runs']} and {ab[precision]['fps_runs']}); "
                  f"ratio {ab['ratio_fps']:.3f}; stages (p50 ms) fp32 {ab['fp32'].get('stages_ms_p50')}, "
                  f"{precision} {ab[precision].get('stages_ms_p50')}")
    mem = results.get("memory")
    if mem:
        print(f"tiny RSS after {mem['frames_first']} frames {mem['rss_first']:.1f} MiB, after "
              f"{mem['frames_last']} frames {mem['rss_last']:.1f} MiB ({100 * (mem['rss_last'] / mem['rss_first'] - 1):+.2f}%); "
              f"largest up to then {mem['rss_max_first']:.1f} and {mem['rss_max_last']:.1f} MiB "
              f"({100 * (mem['rss_max_last'] / mem['rss_max_first'] - 1):+.2f}%)")


def markdown(results):
    """The tables of docs/performance.md, from merged results."""
    lines = ["| case | libfrcnn fps | torchvision fps | ratio | latency p50 / p95, ms (libfrcnn) | "
             "latency p50 / p95, ms (torchvision) | GFLOP/frame | GFLOP/s libfrcnn / torchvision | "
             "peak RSS MiB libfrcnn / torchvision | rounds | detections found by both |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in results["comparisons"]:
        a, b, case = c["libfrcnn"], c["torchvision"], c["case"]
        label = (case.get("arch", "") + ", " if case.get("arch") else "") + \
            f"batch {case['batch']}, min_size {case['min_size']}" + (f", {c['experiment']}" if c.get("experiment") else "")
        d = c.get("detections", {})
        lines.append(f"| {label} | {a['fps']:.3f} | {b['fps']:.3f} | **{c['ratio_fps']:.2f}** | "
                     f"{a['latency_p50_ms']:.0f} / {a['latency_p95_ms']:.0f} | {b['latency_p50_ms']:.0f} / "
                     f"{b['latency_p95_ms']:.0f} | {a.get('gflops_per_frame', 0):.1f} | {a.get('gflops_per_s', 0):.1f} / "
                     f"{b.get('gflops_per_s') or 0:.1f} | {a['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} | "
                     f"{case['rounds']} | {100 * d.get('matched_within_0.5px', float('nan')):.1f}% |")
    lines += ["", "| case | implementation | " + " | ".join(STAGE_NAMES) + " |",
              "|---|---|" + "---|" * len(STAGE_NAMES)]
    for c in results["comparisons"]:
        for impl in ("libfrcnn", "torchvision"):
            st = c[impl].get("stages_ms_p50") or {}
            lines.append(f"| {c['case']['arch'] + ', ' if c['case'].get('arch') else ''}"
                         f"batch {c['case']['batch']}, {c['case']['min_size']}"
                         f"{', ' + c['experiment'] if c.get('experiment') else ''} | {impl} | " +
                         " | ".join(f"{st.get(k, 0):.0f}" for k in STAGE_NAMES) + " |")
    return "\n".join(lines)


STAGE_NAMES = ["transform", "backbone_fpn", "rpn", "roi_heads", "postprocess"]


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_batch, by_size = {}, {}
    for c in results["comparisons"]:
        if c.get("experiment") or c["case"].get("arch"):
            continue
        if c["case"]["min_size"] == 480:
            by_batch[c["case"]["batch"]] = c
        if c["case"]["batch"] == 1:
            by_size[c["case"]["min_size"]] = c
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, data, xlabel in ((axes[0], by_batch, "batch size (min_size 480)"),
                             (axes[1], by_size, "min_size, pixels (batch 1)")):
        xs = sorted(data)
        for impl, style in (("libfrcnn", "o-"), ("torchvision", "s--")):
            ax.plot(xs, [data[x][impl]["fps"] for x in xs], style, label=impl)
        ax.set_xticks(xs)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("frames per second (median)")
        top = max(data[x][impl]["fps"] for x in xs for impl in ("libfrcnn", "torchvision"))
        ax.set_ylim(0, top * 1.2)
        for x in xs:
            ax.annotate(f"x{data[x]['ratio_fps']:.2f}", (x, data[x]["libfrcnn"]["fps"]), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8)
        ax.grid(alpha=0.3)
        # Room for the ratios over the outer points; the legend below the curves.
        ax.margins(x=0.1)
        ax.legend(loc="lower left")
    m = results["machine"]
    fig.suptitle(f"{ARCH}, {results['threads']} threads, {m['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    log("wrote " + path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", help="meson build directory holding frcnn-bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sweep", action="store_true", help="also batch 2 and min_size 320 and 640")
    p.add_argument("--cases", help="comma-separated cases to compare (batch1, batch4, batch2, size320, size640)")
    p.add_argument("--plot-from", nargs="+", metavar="RESULTS",
                   help="draw --plot from these results files (of earlier runs), print their tables in "
                        "markdown, and exit")
    p.add_argument("--experiments", action="store_true",
                   help="also operator profile, channels-last and libfrcnn on LibTorch's convolutions")
    p.add_argument("--bf16", action="store_true",
                   help="also libfrcnn in bf16 (CPUs with AVX-512 BF16 or AMX) against torchvision fp32 at batch "
                        "1 and 4, and libfrcnn bf16 against fp32 (fasterrcnn_resnet50_fpn and tiny)")
    p.add_argument("--int8", action="store_true",
                   help="also libfrcnn in int8 (calibrated on the first 16 frames, before the timed ones) against "
                        "torchvision fp32 at batch 1 and 4, and libfrcnn int8 against fp32 (fasterrcnn_resnet50_fpn "
                        "and tiny)")
    p.add_argument("--mobilenet", action="store_true",
                   help="also the MobileNetV3 models against torchvision (oneDNN and LibTorch convolutions)")
    p.add_argument("--quick", action="store_true", help="few frames per run (checks that the driver works)")
    p.add_argument("--no-tiny", action="store_true")
    p.add_argument("--no-compare", action="store_true", help="skip the comparisons with torchvision")
    p.add_argument("--pipeline", action="store_true",
                   help="also the GStreamer pipeline against frcnn-bench (needs the plugin in BUILD/gst)")
    p.add_argument("--results", help="write every run and the medians to this JSON file")
    p.add_argument("--plot", help="draw throughput vs batch size and input size into this PNG")
    args = p.parse_args()
    if args.plot_from:
        merged = None
        for path in args.plot_from:
            with open(path) as f:
                r = json.load(f)
            if merged is None:
                merged = r
            else:
                merged["comparisons"] += r["comparisons"]
        print(markdown(merged))
        if args.plot:
            plot(merged, args.plot)
        return

    if not args.build:
        sys.exit("bench.py: --build DIR is needed")
    bench = os.path.join(args.build, "detector", "tools", "frcnn-bench")
    if not os.access(bench, os.X_OK):
        sys.exit(f"bench.py: {bench} not found: build it first (ninja -C {args.build} detector/tools/frcnn-bench)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results = {"machine": machine(), "threads": args.threads, "comparisons": []}
    started = time.time()

    known = {"batch1": dict(batch=1, min_size=480, frames=5), "batch4": dict(batch=4, min_size=480, frames=8),
             "batch2": dict(batch=2, min_size=480, frames=6), "size320": dict(batch=1, min_size=320, frames=6),
             "size640": dict(batch=1, min_size=640, frames=4)}
    names = args.cases.split(",") if args.cases else ["batch1", "batch4"] + (
        ["batch2", "size320", "size640"] if args.sweep else [])
    for n in names:
        if n not in known:
            sys.exit(f"bench.py: unknown case {n!r} (known: {', '.join(known)})")
    cases = [dict(name=n, warmup=1, rounds=args.rounds, **known[n]) for n in names]

    reduced = [p for p in ("bf16", "int8") if getattr(args, p)]
    reduced_cases = [dict(name=f"batch{batch}-{precision}", precision=precision, batch=batch, min_size=480,
                          warmup=1, frames=frames, rounds=args.rounds)
                     for precision in reduced for batch, frames in ((1, 5), (4, 8))]
    if args.quick:
        for c in cases + reduced_cases:
            c["frames"] = c["batch"]
    with tempfile.TemporaryDirectory(prefix="frcnn-bench-") as tmp:
        weights = os.path.join(tmp, "weights.pth")
        frames_dir = os.path.join(tmp, "frames")
        log("weights (seed 1, batch-norm statistics from the first frame) and frames:")
        subprocess.run([bench, "--arch", ARCH, "--seed", "1", "--min-size", "480", "--save-weights", weights,
                        VIDEO], check=True, env=env)
        # Enough frames for every case (the experiments run 1 + 6 frames at batch 1).
        needed = max([(c["warmup"] + -(-c["frames"] // c["batch"])) * c["batch"] for c in cases + reduced_cases] +
                     [8, 18 if args.mobilenet else 0])
        subprocess.run([bench, "--dump-frames", frames_dir, "--batch", "1", "--warmup", "0", "--frames",
                        str(needed), VIDEO], check=True, env=env)

        for case in ([] if args.no_compare else cases):
            log(f"{case['name']}:")
            results["comparisons"].append(compare(case, bench, weights, frames_dir, args, env))

        for case in reduced_cases:
            precision = case.pop("precision")
            log(f"{case['name']} (libfrcnn {precision}, torchvision fp32):")
            c = compare(case, bench, weights, frames_dir, args, env, ["--precision", precision])
            c["experiment"] = precision
            results["comparisons"].append(c)
        for precision in reduced:
            log(f"libfrcnn fp32 against {precision}:")
            results.setdefault("precision_ab", {})[precision] = ab_precision(bench, weights, args, env, precision)

        if args.mobilenet:
            results["comparisons"] += compare_mobilenet(bench, frames_dir, args, env, tmp)

        if args.pipeline:
            log("pipeline against frcnn-bench:")
            results["pipeline"] = pipeline_vs_bench(bench, args.build, args, env, tmp)

        if args.experiments:
            case = dict(name="batch1-channels-last", batch=1, min_size=480, warmup=1, frames=6,
                        rounds=max(2, args.rounds // 2 + 1))
            log(f"{case['name']}:")
            c = compare(case, bench, weights, frames_dir, args, env, ["--channels-last"], ["--channels-last"])
            c["experiment"] = "channels-last"
            results["comparisons"].append(c)
            # libfrcnn on LibTorch's convolutions (torchvision's arithmetic), against torchvision:
            # what the oneDNN convolutions add is the difference to the batch 1 row.
            case = dict(name="batch1-libtorch-convolutions", batch=1, min_size=480, warmup=1, frames=5,
                        rounds=max(2, args.rounds // 2 + 1))
            log(f"{case['name']}:")
            c = compare(case, bench, weights, frames_dir, args, env, ["--cpu-convolutions", "libtorch"])
            c["experiment"] = "LibTorch convolutions"
            results["comparisons"].append(c)
            log("libfrcnn NCHW against libfrcnn channels-last:")
            results["channels_last_ab"] = ab_channels_last(bench, weights, args, env)
            log("operator profiles:")
            common = ["--min-size", "480", "--threads", str(args.threads), "--warmup", "1", "--frames", "2",
                      "--profile", "--json"]
            results["profile"] = {
                "libfrcnn": run_json([bench, "--arch", ARCH, "--weights", weights, *common, VIDEO], env),
                "torchvision": run_json(["/usr/bin/python3", os.path.join(HERE, "reference", "bench_torchvision.py"),
                                         "--weights", weights, "--frames-dir", frames_dir, *common], env)}

    if args.experiments:
        log("tiny preset, OpenMP wait policy:")
        results["wait_policy_ab"] = ab_wait_policy(bench, args, env)
        log("tiny preset, glibc keeping freed memory:")
        results["memory_settings_ab"] = ab_memory_settings(bench, args, env)
        log("tiny preset, oneDNN against LibTorch convolutions:")
        results["tiny_convolutions_ab"] = ab_tiny_convolutions(bench, args, env)

    if not args.no_tiny:
        log("tiny preset, 640x480 frames:")
        tiny = ["--arch", "tiny", "--seed", "1", "--resize", "640x480", "--threads", str(args.threads), "--json"]
        results["tiny"] = {}
        for mode, extra in (("stages", []), ("facade", ["--facade"])):
            runs = [run_json([bench, *tiny, *extra, "--warmup", "3", "--frames", "10" if args.quick else "100",
                              VIDEO], env) for _ in range(3)]
            results["tiny"][mode] = summarize(runs)
        log("tiny preset, memory after 200 and 2000 frames (Detector facade):")
        first, last = (20, 200) if args.quick else (200, 2000)
        m = run_json([bench, *tiny, "--facade", "--warmup", "2", "--frames", str(last), "--rss-at",
                      f"{first},{last}", VIDEO], env)
        results["memory"] = {"frames_first": first, "frames_last": last,
                             "rss_first": m["rss_mb_after_frames"][str(first)],
                             "rss_last": m["rss_mb_after_frames"][str(last)],
                             "rss_max_first": m["rss_mb_max_up_to_frames"][str(first)],
                             "rss_max_last": m["rss_mb_max_up_to_frames"][str(last)], "run": m}

    results["machine"]["loadavg_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - started)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(results, f, indent=1)
    print_table(results)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()

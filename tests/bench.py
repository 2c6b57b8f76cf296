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
adds an operator profile and the channels-last memory format in both programs.

Usage: bench.py --build DIR [--rounds N] [--threads N] [--sweep] [--experiments]
                [--results FILE] [--plot PNG]
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
    return {"cpu": model, "nproc": os.cpu_count(), "loadavg_start": os.getloadavg()}


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
    s["fps_runs"] = [r["fps"] for r in runs]
    s["detections_first_batch"] = runs[0]["detections_first_batch"]
    s["staged_vs_forward"] = runs[0]["staged_vs_forward"]
    return s


def compare(case, bench, weights, frames_dir, args, env, extra_cpp=(), extra_tv=()):
    """Alternates frcnn-bench and bench_torchvision.py for case['rounds'] rounds."""
    common = ["--min-size", str(case["min_size"]), "--batch", str(case["batch"]), "--threads",
              str(args.threads), "--warmup", str(case["warmup"]), "--frames", str(case["frames"])]
    cpp = [bench, "--arch", ARCH, "--weights", weights, "--json", *common, *extra_cpp, VIDEO]
    tv = ["/usr/bin/python3", os.path.join(HERE, "reference", "bench_torchvision.py"), "--arch", ARCH,
          "--weights", weights, "--frames-dir", frames_dir, "--json", *common, *extra_tv]
    runs = {"libfrcnn": [], "torchvision": []}
    for r in range(case["rounds"]):
        order = [("libfrcnn", cpp), ("torchvision", tv)]
        if r % 2:
            order.reverse()
        for name, cmd in order:
            runs[name].append(run_json(cmd, env))
    result = {"case": case, "libfrcnn": summarize(runs["libfrcnn"]), "torchvision": summarize(runs["torchvision"]),
              "loadavg_end": os.getloadavg(), "runs": runs}
    result["ratio_fps"] = result["libfrcnn"]["fps"] / result["torchvision"]["fps"]
    log(f"  {case['name']}: libfrcnn {result['libfrcnn']['fps']:.3f} fps, torchvision "
        f"{result['torchvision']['fps']:.3f} fps, ratio {result['ratio_fps']:.3f}")
    return result


def print_table(results):
    m = results["machine"]
    print(f"\nMachine: {m['cpu']}, {m['nproc']} CPUs; load average at start "
          f"{' '.join(f'{x:.2f}' for x in m['loadavg_start'])}")
    print(f"{'case':<26}{'libfrcnn fps':>13}{'torchvision fps':>16}{'ratio':>7}"
          f"{'p50 ms C++/tv':>18}{'GFLOP/s C++/tv':>17}")
    for c in results["comparisons"]:
        a, b = c["libfrcnn"], c["torchvision"]
        label = f"{c['case']['name']} (b{c['case']['batch']}, {c['case']['min_size']}px)"
        print(f"{label:<26}{a['fps']:>13.3f}{b['fps']:>16.3f}{c['ratio_fps']:>7.2f}"
              f"{a['latency_p50_ms']:>9.0f}/{b['latency_p50_ms']:<8.0f}"
              f"{a.get('gflops_per_s', 0):>8.1f}/{b.get('gflops_per_s') or 0:<8.1f}")
    for name, t in results.get("tiny", {}).items():
        print(f"tiny 640x480 ({name}): {t['fps']:.2f} fps (runs {t['fps_runs']}), latency p50 {t['latency_p50_ms']:.1f} ms")
    mem = results.get("memory")
    if mem:
        print(f"tiny RSS after 200 frames {mem['rss_200']:.1f} MiB, after 2000 frames {mem['rss_2000']:.1f} MiB "
              f"({100 * (mem['rss_2000'] / mem['rss_200'] - 1):+.2f}%)")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_batch, by_size = {}, {}
    for c in results["comparisons"]:
        if c.get("experiment"):
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
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    m = results["machine"]
    fig.suptitle(f"{ARCH}, {results['threads']} threads, {m['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    log("wrote " + path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, help="meson build directory holding frcnn-bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sweep", action="store_true", help="also batch 2 and min_size 320 and 640")
    p.add_argument("--experiments", action="store_true", help="also operator profile and channels-last")
    p.add_argument("--no-tiny", action="store_true")
    p.add_argument("--results", help="write every run and the medians to this JSON file")
    p.add_argument("--plot", help="draw throughput vs batch size and input size into this PNG")
    args = p.parse_args()

    bench = os.path.join(args.build, "detector", "tools", "frcnn-bench")
    if not os.access(bench, os.X_OK):
        sys.exit(f"bench.py: {bench} not found: build it first (ninja -C {args.build} detector/tools/frcnn-bench)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results = {"machine": machine(), "threads": args.threads, "comparisons": []}
    started = time.time()

    cases = [dict(name="batch1", batch=1, min_size=480, warmup=1, frames=6, rounds=args.rounds),
             dict(name="batch4", batch=4, min_size=480, warmup=1, frames=8, rounds=args.rounds)]
    if args.sweep:
        r = max(2, args.rounds // 2 + 1)
        cases += [dict(name="batch2", batch=2, min_size=480, warmup=1, frames=6, rounds=r),
                  dict(name="size320", batch=1, min_size=320, warmup=1, frames=6, rounds=r),
                  dict(name="size640", batch=1, min_size=640, warmup=1, frames=4, rounds=r)]

    with tempfile.TemporaryDirectory(prefix="frcnn-bench-") as tmp:
        weights = os.path.join(tmp, "weights.pth")
        frames_dir = os.path.join(tmp, "frames")
        log("weights (seed 1, batch-norm statistics from the first frame) and frames:")
        subprocess.run([bench, "--arch", ARCH, "--seed", "1", "--min-size", "480", "--save-weights", weights,
                        VIDEO], check=True, env=env)
        needed = max((c["warmup"] + -(-c["frames"] // c["batch"])) * c["batch"] for c in cases)
        subprocess.run([bench, "--dump-frames", frames_dir, "--batch", "1", "--warmup", "0", "--frames",
                        str(needed), VIDEO], check=True, env=env)

        for case in cases:
            log(f"{case['name']}:")
            results["comparisons"].append(compare(case, bench, weights, frames_dir, args, env))

        if args.experiments:
            case = dict(name="batch1-channels-last", batch=1, min_size=480, warmup=1, frames=6,
                        rounds=max(2, args.rounds // 2 + 1))
            log(f"{case['name']}:")
            c = compare(case, bench, weights, frames_dir, args, env, ["--channels-last"], ["--channels-last"])
            c["experiment"] = True
            results["comparisons"].append(c)
            log("operator profiles:")
            common = ["--min-size", "480", "--threads", str(args.threads), "--warmup", "1", "--frames", "2",
                      "--profile", "--json"]
            results["profile"] = {
                "libfrcnn": run_json([bench, "--arch", ARCH, "--weights", weights, *common, VIDEO], env),
                "torchvision": run_json(["/usr/bin/python3", os.path.join(HERE, "reference", "bench_torchvision.py"),
                                         "--weights", weights, "--frames-dir", frames_dir, *common], env)}

    if not args.no_tiny:
        log("tiny preset, 640x480 frames:")
        tiny = ["--arch", "tiny", "--seed", "1", "--resize", "640x480", "--threads", str(args.threads), "--json"]
        results["tiny"] = {}
        for mode, extra in (("stages", []), ("facade", ["--facade"])):
            runs = [run_json([bench, *tiny, *extra, "--warmup", "3", "--frames", "100", VIDEO], env)
                    for _ in range(3)]
            results["tiny"][mode] = summarize(runs)
        log("tiny preset, memory after 200 and 2000 frames (Detector facade):")
        m = run_json([bench, *tiny, "--facade", "--warmup", "2", "--frames", "2000", "--rss-at", "200,2000", VIDEO],
                     env)
        results["memory"] = {"rss_200": m["rss_mb_after_frames"]["200"],
                             "rss_2000": m["rss_mb_after_frames"]["2000"], "run": m}

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

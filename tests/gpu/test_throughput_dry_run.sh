#!/usr/bin/env bash
# The GPU check's throughput script (tests/gpu/throughput.py, run by tests/gpu/run.sh) as a dry
# run on the CPU: every configuration of its matrix runs, frcnn-bench and bench_torchvision.py in
# fp32 give frames per second, the fp16 and autocast runs fail with the message that they need a
# CUDA device, and the report (throughput.json, throughput.md) is written with the failures in
# it. This keeps the script working where there is no GPU; the GPU figures come from run.sh.
set -euo pipefail
bench=$1
reference=$2
throughput=$3
python=${FRCNN_REF_PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Four frames, as binary PPM (what run.sh makes of the photos): gradients and a disc.
mkdir -p "$out/frames"
"$python" - "$out/frames" <<'PY'
import sys
import numpy as np
h, w = 120, 160
y, x = np.mgrid[0:h, 0:w]
for i in range(4):
    disc = ((x - 40 - 20 * i) ** 2 + (y - 60) ** 2 < 400) * 200
    rgb = np.stack([x * 255 // w, y * 255 // h, disc], axis=2).astype(np.uint8)
    with open(f"{sys.argv[1]}/frame-{i}.ppm", "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h) + rgb.tobytes())
PY
"$bench" --arch fasterrcnn_resnet50_fpn --seed 0 --min-size 128 --max-size 160 \
	--save-weights "$out/weights.pth" "$out"/frames/*.ppm > /dev/null

status=0
"$python" "$throughput" --bench "$bench" --torchvision-script "$reference" --python "$python" \
	--frames "$out/frames" --weights "$out/weights.pth" --out "$out/report" --device cpu \
	--rounds 1 --frames-per-run 2 --warmup 1 --min-size 128 --max-size 160 > "$out/log" 2>&1 || status=$?
cat "$out/log"

"$python" - "$out/report" "$status" <<'PY'
import json, os, sys
report_dir, status = sys.argv[1], int(sys.argv[2])
failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

check(status == 1, f"throughput.py should exit with 1 (runs failed) on the CPU, got {status}")
report = json.load(open(os.path.join(report_dir, "throughput.json")))
md = open(os.path.join(report_dir, "throughput.md")).read()
configs = report["configs"]
check(len(configs) == 15, f"15 configurations (3 batch sizes x 5), got {len(configs)}")
for c in configs:
    runs = c["runs"]
    check(len(runs) == 1, f"{c['name']}: one run")
    if c["precision"] == "fp32":
        ok = all(r["ok"] and r["result"]["fps"] > 0 for r in runs)
        check(ok, f"{c['name']}: fp32 runs on the CPU should give frames per second")
        if ok:
            check(c["median_fps"] and c["median_fps"] > 0, f"{c['name']}: median fps")
            check(all(r["result"]["batch"] == c["batch"] for r in runs), f"{c['name']}: batch size")
    else:
        check(all(not r["ok"] for r in runs), f"{c['name']}: fp16 on the CPU should fail")
        check(all("CUDA" in r.get("stderr_tail", "") or "cuda" in r.get("stderr_tail", "") for r in runs),
              f"{c['name']}: the failure should say that it needs CUDA: {[r.get('stderr_tail') for r in runs]}")
fc = report.get("facade_copies")
check(fc is not None and not fc["ok"] and "--frame-copies" in fc["command"] and "--facade" in fc["command"],
      "the fp16 run with frames copied before each batch runs the facade with --frame-copies, and fails on the CPU")
for key in ("staged", "staged_copies"):
    check(report.get(key) is not None and not report[key]["ok"], f"the fp16 stage-by-stage run ({key}) fails on the CPU")
check("--frame-copies" in report["staged_copies"]["command"] and "--frame-copies" not in report["staged"]["command"],
      "only the second stage-by-stage run copies the frames before the batch")
check(len(report["ratios"]) == 4 and all(r["value"] is None for r in report["ratios"]),
      "no ratio without fp16 runs")
check([r.get("decides_target") for r in report["ratios"] if r.get("share")] == [False, True],
      "the pre- and post-processing target is decided by the run that copies frames as the element does")
for needle in ("libfrcnn fp32 b8", "torchvision fp32 b1", "## Failed runs", "needs a CUDA device"):
    check(needle in md, f"throughput.md mentions {needle!r}")
for f in failures:
    print("FAIL:", f)
print(f"throughput.py dry run: {len(failures)} checks failed")
sys.exit(1 if failures else 0)
PY

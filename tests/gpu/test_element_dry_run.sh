#!/usr/bin/env bash
# The GPU check's element script (tests/gpu/element_check.py, run by tests/gpu/run.sh) as a dry
# run on the CPU: frcnndetect through gst-launch-1.0 at batch 4 and 5 (EOS in the middle of a
# batch) against batch 1, from RGB and from NV12 (and a region of it, PQ video of 4/3 pixels, and
# the regions of interest a first detector found, at batch 4), the same detections; two elements sharing one
# model against one, and four whose waiting batches run together; precision=fp16 and
# device=cuda:99 failing with the CPU-only build's messages; the throughput runs giving a figure
# (4 and 100 frames: the 96 between them take seconds, well above the noise in the start-up).
# This keeps the script and the pipelines it runs working where there is no GPU.
set -euo pipefail
plugin_dir=$1
element_check=$2
weights=$3
detect_tool=$4
python=${FRCNN_REF_PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export GST_PLUGIN_PATH=$plugin_dir GST_REGISTRY=$out/registry.bin

# Twelve shapes frames as binary PPM, as run.sh gets them (there from build-gpu-inputs/shapes).
mkdir -p "$out/frames"
gst-launch-1.0 -q frcnnshapesrc seed=90210 scene-frames=1 num-buffers=12 ! \
	video/x-raw,format=RGB,width=320,height=240 ! pnmenc ! \
	multifilesink location="$out/frames/shapes-%02d.ppm"

status=0
"$python" "$element_check" --plugin-path "$plugin_dir" --frames "$out/frames" --weights "$weights" \
	--device cpu --detect-tool "$detect_tool" --throughput-frames "$out/frames" --throughput-weights "$weights" \
	--throughput-batch 4 --throughput-counts 4,100 --out "$out/report" > "$out/log" 2>&1 || status=$?
cat "$out/log"

"$python" - "$out/report" "$status" <<'PY'
import json, sys
report_dir, status = sys.argv[1], int(sys.argv[2])
with open(f"{report_dir}/element_check.json") as f:
    report = json.load(f)
names = [c["check"] for c in report["checks"]]
problems = []
if status != 0:
    problems.append(f"element_check.py exited {status}")
if len(names) != 12:
    problems.append(f"{len(names)} checks, expected 12: {names}")
problems += [f"{c['check']}: {c['problems']}" for c in report["checks"] if not c["passed"]]
same = [c for c in report["checks"] if "against CPU" in c["check"]]
if len(same) != 6 or any(c["figures"].get("detections", 0) < 12 for c in same):
    problems.append(f"the comparisons saw too few detections: {[c['figures'] for c in same]}")
fps = report["throughput"][0]["element_fps"] if report["throughput"] else None
if not fps or fps <= 0:
    problems.append(f"no throughput figure: {report['throughput']}")
with open(f"{report_dir}/element_check.md") as f:
    table = f.read()
if table.count("| passed |") != 12:
    problems.append("element_check.md does not list 12 passed checks")
shared = [c for c in report["checks"] if "sharing one model" in c["check"]]
if len(shared) != 2 or any(min(v for k, v in c["figures"].items() if k.endswith("detections")) < 12
                           for c in shared):
    problems.append(f"the shared model's branches saw too few detections: {shared}")
for p in problems:
    print("FAIL:", p)
print(f"{len(names)} checks, {sum(c['passed'] for c in report['checks'])} passed; throughput {fps}")
sys.exit(1 if problems else 0)
PY

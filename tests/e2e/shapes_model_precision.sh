#!/usr/bin/env bash
# A reduced precision end to end (usage: ROOT BUILD PRECISION, PRECISION bf16 or int8): the
# shipped shapes model on 200 frames of frcnnshapesrc (a seed not used in training, 10 scenes),
# through frcnndetect in fp32 and in PRECISION, each scored by frcnn-eval against the source's
# ground truth. Passes when PRECISION's AP50 and AP@[.5:.95] are within 0.01 of fp32's (and
# AP50 >= 0.95). int8 calibrates on the first 16 frames (detected in fp32 meanwhile). Where
# PRECISION cannot run (bf16 on a CPU without bfloat16 instructions, int8 in a build without
# oneDNN), passes when the pipeline fails with the element's message instead, and says so.
set -euo pipefail
root=$1
build=$2
precision=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
frames=200
export GST_PLUGIN_PATH="$build/gst"
export GST_REGISTRY="$out/registry.bin"

run() { # PRECISION
	gst-launch-1.0 -q frcnnshapesrc seed=90210 scene-frames=20 num-buffers=$frames \
		ground-truth="$out/ground-truth-$1.jsonl" \
		! video/x-raw,format=RGB,width=320,height=240,framerate=25/1 \
		! frcnndetect model=tiny weights="$root/tests/data/shapes-tiny.pth" min-size=240 max-size=320 \
			threshold=0.05 precision="$1" \
		! frcnnjson location="$out/detections-$1.jsonl" ! fakesink
}

case "$precision" in
bf16)
	available=$(grep -c -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo || true)
	refusal="precision=bf16 needs a CPU with bfloat16 instructions"
	why="this CPU has no bfloat16 instructions" ;;
int8)
	available=$(grep -c -E '^#define FRCNN_HAVE_ONEDNN 1' "$build/frcnn-build-config.h" || true)
	refusal="precision=int8 cannot run model 'tiny': this build of libfrcnn has no oneDNN"
	why="this build has no oneDNN" ;;
*)
	echo "usage: $0 ROOT BUILD bf16|int8"; exit 2 ;;
esac
if [ "$available" -eq 0 ]; then
	if message=$(run "$precision" 2>&1); then
		echo "FAIL: precision=$precision ran where it cannot ($why)"; exit 1
	fi
	echo "$message"
	grep -qF "$refusal" <<<"$message" || { echo "FAIL: not the element's message ($refusal)"; exit 1; }
	echo "$why: checked that precision=$precision fails with the message (AP not compared)"
	exit 0
fi

for p in fp32 "$precision"; do
	run "$p"
	lines=$(wc -l < "$out/detections-$p.jsonl")
	[ "$lines" -eq "$frames" ] || { echo "FAIL: $lines JSON lines for $frames frames ($p)"; exit 1; }
	"$build/detector/tools/frcnn-eval" --ground-truth "$out/ground-truth-$p.jsonl" \
		--detections "$out/detections-$p.jsonl" --json > "$out/ap-$p.json"
done
/usr/bin/python3 - "$precision" "$out/ap-fp32.json" "$out/ap-$precision.json" <<'PY'
import json, sys
name = sys.argv[1]
fp32, reduced = (json.load(open(p)) for p in sys.argv[2:4])
print("fp32: AP50 %.4f AP %.4f, %d detections" % (fp32["AP50"], fp32["AP"], fp32["detections"]))
print("%s: AP50 %.4f AP %.4f, %d detections" % (name, reduced["AP50"], reduced["AP"], reduced["detections"]))
ok = (abs(reduced["AP50"] - fp32["AP50"]) <= 0.01 and abs(reduced["AP"] - fp32["AP"]) <= 0.01
      and reduced["AP50"] >= 0.95)
print("%s within 0.01 of fp32 in AP50 and AP, AP50 >= 0.95: %s" % (name, "PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY

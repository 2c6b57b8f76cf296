#!/usr/bin/env bash
# precision=bf16 end to end: the shipped shapes model on 200 frames of frcnnshapesrc (a seed not
# used in training, 10 scenes), through frcnndetect in fp32 and in bf16, each scored by frcnn-eval
# against the source's ground truth. Passes when bf16's AP50 and AP@[.5:.95] are within 0.01 of
# fp32's (and AP50 >= 0.95). On a CPU without bfloat16 instructions, passes when the pipeline
# fails with the element's message instead, and says so.
set -euo pipefail
root=$1
build=$2
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

bf16_cpu=$(grep -c -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo || true)
if [ "$bf16_cpu" -eq 0 ]; then
	if message=$(run bf16 2>&1); then
		echo "FAIL: precision=bf16 ran on a CPU without bfloat16 instructions"; exit 1
	fi
	echo "$message"
	grep -qF "precision=bf16 needs a CPU with bfloat16 instructions" <<<"$message" ||
		{ echo "FAIL: not the element's message about bfloat16"; exit 1; }
	echo "this CPU has no bfloat16 instructions: checked that precision=bf16 fails with the message (AP not compared)"
	exit 0
fi

for precision in fp32 bf16; do
	run "$precision"
	lines=$(wc -l < "$out/detections-$precision.jsonl")
	[ "$lines" -eq "$frames" ] || { echo "FAIL: $lines JSON lines for $frames frames ($precision)"; exit 1; }
	"$build/detector/tools/frcnn-eval" --ground-truth "$out/ground-truth-$precision.jsonl" \
		--detections "$out/detections-$precision.jsonl" --json > "$out/ap-$precision.json"
done
/usr/bin/python3 - "$out/ap-fp32.json" "$out/ap-bf16.json" <<'PY'
import json, sys
fp32, bf16 = (json.load(open(p)) for p in sys.argv[1:3])
print("fp32: AP50 %.4f AP %.4f, %d detections" % (fp32["AP50"], fp32["AP"], fp32["detections"]))
print("bf16: AP50 %.4f AP %.4f, %d detections" % (bf16["AP50"], bf16["AP"], bf16["detections"]))
ok = abs(bf16["AP50"] - fp32["AP50"]) <= 0.01 and abs(bf16["AP"] - fp32["AP"]) <= 0.01 and bf16["AP50"] >= 0.95
print("bf16 within 0.01 of fp32 in AP50 and AP, AP50 >= 0.95: %s" % ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY

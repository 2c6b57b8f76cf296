#!/usr/bin/env bash
# End to end through GStreamer with the shipped shapes model: 200 frames of frcnnshapesrc with a
# seed not used in training, through frcnndetect ! frcnnoverlay ! frcnnjson ! x264enc ! mp4mux
# (tests/demo.sh), scored by frcnn-eval against the source's ground truth.
# The source cuts to a new scene every 20 frames, so the 200 frames hold 10 scenes.
# Passes when AP50 >= 0.95 and AP@[.5:.95] >= 0.70, the JSON has one line per frame and the MP4
# decodes to 200 frames.
set -euo pipefail
root=$1
build=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
frames=200

DEMO_THRESHOLD=0.05 "$root/tests/demo.sh" "$build" "$out" "$frames" 90210 | tee "$out/summary.txt"

lines=$(wc -l < "$out/detections.jsonl")
[ "$lines" -eq "$frames" ] || { echo "FAIL: $lines JSON lines for $frames frames"; exit 1; }

gst-launch-1.0 -q filesrc location="$out/demo.mp4" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert \
	! video/x-raw,format=RGB ! filesink location="$out/decoded.rgb"
decoded=$(( $(stat -c %s "$out/decoded.rgb") / (320 * 240 * 3) ))
[ "$decoded" -eq "$frames" ] || { echo "FAIL: the MP4 decodes to $decoded frames, not $frames"; exit 1; }

result=$("$build/detector/tools/frcnn-eval" --ground-truth "$out/ground-truth.jsonl" \
	--detections "$out/detections.jsonl" --json)
echo "$result"
/usr/bin/python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
ok = r["AP50"] >= 0.95 and r["AP"] >= 0.70
print("AP50 %.4f (needs >= 0.95), AP %.4f (needs >= 0.70): %s" % (r["AP50"], r["AP"], "PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY

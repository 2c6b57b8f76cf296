#!/usr/bin/env bash
# The README's main command: synthetic shapes -> frcnndetect (the shipped shapes model) ->
# frcnnoverlay -> frcnnjson -> x264enc -> mp4mux, then a summary: frames, frames per second,
# detections and AP50 against the source's own ground truth.
#
# Usage: tests/demo.sh [BUILD_DIR] [OUT_DIR] [FRAMES] [SEED]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
out=${2:-$root/demo-output}
frames=${3:-200}
seed=${4:-90210}
mkdir -p "$out"

export GST_PLUGIN_PATH="$build/gst"
export GST_REGISTRY="$build/demo-registry.bin"

model="$root/tests/data/shapes-tiny.pth"
labels="$root/tests/data/shapes.labels"
start=$(date +%s.%N)
gst-launch-1.0 -q \
	frcnnshapesrc seed="$seed" scene-frames=20 num-buffers="$frames" ground-truth="$out/ground-truth.jsonl" \
	! video/x-raw,format=RGB,width=320,height=240,framerate=25/1 \
	! frcnndetect model=tiny weights="$model" labels="$labels" min-size=240 max-size=320 threshold="${DEMO_THRESHOLD:-0.5}" \
	! frcnnoverlay \
	! frcnnjson location="$out/detections.jsonl" \
	! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$out/demo.mp4"
end=$(date +%s.%N)

count=$(wc -l < "$out/detections.jsonl")
detections=$(grep -o '"score"' "$out/detections.jsonl" | wc -l)
ap=$("$build/detector/tools/frcnn-eval" --ground-truth "$out/ground-truth.jsonl" \
	--detections "$out/detections.jsonl" --json)
fps=$(echo "$count $start $end" | awk '{printf "%.1f", $1 / ($3 - $2)}')
ap50=$(echo "$ap" | sed -n 's/.*"AP50": *\([0-9.e+-]*\).*/\1/p')
ap_all=$(echo "$ap" | sed -n 's/.*"AP": *\([0-9.e+-]*\).*/\1/p')
echo "frames: $count"
echo "frames per second: $fps (whole pipeline, including encoding)"
echo "detections: $detections"
echo "AP50: $ap50   AP@[.5:.95]: $ap_all   (against frcnnshapesrc's ground truth)"
echo "video: $out/demo.mp4   detections: $out/detections.jsonl"

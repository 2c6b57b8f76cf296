#!/usr/bin/env bash
# Headless throughput: frames per second of decode + frcnndetect, nothing drawn or shown.
#
#   filesrc ! decodebin ! frcnndetect ! fpsdisplaysink video-sink=fakesink text-overlay=false
#
# Without a video, videotestsrc makes frames of --size and --format, so that only the detector is
# measured.
set -euo pipefail
. "$(dirname "$0")/common.sh"

FRAMES=100
SIZE=1280x720
FORMAT=NV12

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] [VIDEO]

Runs the detector as fast as it goes and prints the average frame rate.

Benchmark options:
  --frames N      frames of the synthetic source [$FRAMES] (a VIDEO runs to its end)
  --size WxH      size of the synthetic frames [$SIZE]
  --format F      pixel format of the synthetic frames, any that frcnndetect takes (NV12, I420,
                  YUY2, BGRx, RGB, P010_10LE, ...: see gst-inspect-1.0 frcnndetect) [$FORMAT]

$COMMON_OPTIONS

Examples:
  $(basename "$0") --weights coco --device cuda --batch-size 8 --precision fp16
  $(basename "$0") --weights coco --frames 20 --size 640x480
  $(basename "$0") --weights coco --format P010_10LE --size 3840x2160
USAGE
}

OPTIONS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--frames) FRAMES=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--format) FORMAT=$2; shift 2 ;;
	*) OPTIONS+=("$1"); shift ;;
	esac
done
frcnn_parse "${OPTIONS[@]+"${OPTIONS[@]}"}"
[ "${#ARGS[@]}" -le 1 ] || { usage >&2; exit 2; }
frcnn_detect

if [ "${#ARGS[@]}" -eq 1 ]; then
	SOURCE=(filesrc location="${ARGS[0]}" ! decodebin)
else
	SOURCE=(videotestsrc num-buffers="$FRAMES" pattern=smpte !
		video/x-raw,format="$FORMAT",width="${SIZE%x*}",height="${SIZE#*x}")
fi
PIPELINE=("${SOURCE[@]}" ! "${DETECT[@]}" "${SECOND[@]}" !
	fpsdisplaysink video-sink=fakesink text-overlay=false sync=false signal-fps-measurements=true)

# -v: fpsdisplaysink's measurements; -m: frcnndetect's statistics at EOS.
if [ "$DRY_RUN" = 1 ]; then
	frcnn_run -v -m "${PIPELINE[@]}"
	exit 0
fi
frcnn_check_plugin

# fpsdisplaysink reports "rendered: N, dropped: 0, current: X, average: Y" in its last-message;
# the last report holds the average over the whole run.
start=$(date +%s.%N)
log=$(gst-launch-1.0 -v -m "${PIPELINE[@]}" 2>&1) || { echo "$log" >&2; exit 1; }
end=$(date +%s.%N)
report=$(printf '%s\n' "$log" | grep -o 'rendered: [0-9]*, dropped: [0-9]*, current: [0-9.]*, average: [0-9.]*' | tail -n 1 || true)
echo "fpsdisplaysink: ${report:-no measurement (fewer frames than one measuring interval)}"
# One statistics message per frcnndetect, the first detector's first (each posts its own as the
# end of the stream reaches it).
all_stats=$(printf '%s\n' "$log" | grep -o 'frcnndetect-stats, .*' || true)
stats=$(printf '%s\n' "$all_stats" | sed -n 1p)
field() { printf '%s\n' "$stats" | grep -o "$1=([a-z0-9]*)[0-9.e+-]*" | sed 's/.*)//'; }
if [ -n "$stats" ]; then
	awk -v n="$(field frames-detected)" -v b="$(field batches)" -v m="$(field mean-batch-size)" \
		-v f="$(field model-frames-per-second)" \
		'BEGIN { printf "frcnndetect: %d frames run in %d batches (%.2f a batch), %.2f frames/s of the batches\x27 own time\n", n, b, m, f }'
fi
stats=$(printf '%s\n' "$all_stats" | sed -n 2p)
if [ -n "$stats" ]; then
	awk -v i="$(field images-detected)" -v n="$(field frames-detected)" -v b="$(field batches)" \
		-v m="$(field mean-batch-size)" -v t="$(field mean-batch-time)" \
		'BEGIN { printf "second frcnndetect: %d regions of %d frames run in %d batches (%.2f a batch), %.2f regions/s of the batches\x27 own time\n", i, n, b, m, (t > 0 ? m * 1e9 / t : 0) }'
fi
awk -v s="$start" -v e="$end" 'BEGIN { printf "wall time: %.2f s (model loading included)\n", e - s }'

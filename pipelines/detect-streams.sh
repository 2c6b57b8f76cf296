#!/usr/bin/env bash
# Several sources (files, RTSP streams, cameras), each detected, shown side by side in a grid or
# recorded to MP4. Their detectors share one loaded model (model-instance-id).
#
#   uridecodebin ! videoconvert ! frcnndetect ! frcnnoverlay ! videoconvert ! videoscale ! compositor
#     ! autovideosink  (per source; the first videoconvert passes the formats frcnndetect takes through)
set -euo pipefail
. "$(dirname "$0")/common.sh"

TILE=640x360
OUTPUT=""

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] SOURCE...

Detects on every SOURCE (a file, or a URI: rtsp://..., file:///..., v4l2:///dev/video0) with one
model shared by all, and shows them in a grid, or writes the grid to a file with --output. Each
source's frames are detected on their own streaming thread; the batches take turns on the model.
With --batch-size N, frames of several sources that wait for the model together run as one batch
of up to N (no batch waits for more frames: batch-timeout=0).

Grid options:
  --tile WxH       size of each source in the grid [$TILE]
  --output FILE    write H.264 MP4 to FILE instead of showing it (Ctrl-C finishes the file)

$COMMON_OPTIONS

Example:
  $(basename "$0") --weights coco --threads 4 rtsp://10.0.0.5/stream1 rtsp://10.0.0.6/stream1
USAGE
}

OPTIONS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--tile) TILE=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	*) OPTIONS+=("$1"); shift ;;
	esac
done
frcnn_parse "${OPTIONS[@]+"${OPTIONS[@]}"}"
if [ "${#ARGS[@]}" -lt 1 ]; then
	usage >&2
	exit 2
fi
if ! [[ "$TILE" =~ ^([0-9]+)x([0-9]+)$ ]]; then
	echo "$(basename "$0"): --tile takes WxH, e.g. 640x360" >&2
	exit 2
fi
TILE_W=${BASH_REMATCH[1]} TILE_H=${BASH_REMATCH[2]}
frcnn_detect
# The second detectors (--second) share a model of their own.
[ "${#SECOND[@]}" -gt 0 ] && SECOND+=(model-instance-id=detect-streams-second batch-timeout=0)

# As close to a square grid as the count allows: columns = ceil(sqrt(N)).
COUNT=${#ARGS[@]}
COLUMNS=1
while [ $((COLUMNS * COLUMNS)) -lt "$COUNT" ]; do COLUMNS=$((COLUMNS + 1)); done

MIXER=(compositor name=grid)
BRANCHES=()
for i in "${!ARGS[@]}"; do
	source=${ARGS[$i]}
	case "$source" in
	*://*) uri=$source ;;
	*) uri=$(frcnn_file_uri "$source") ;;
	esac
	MIXER+=("sink_$i::xpos=$(((i % COLUMNS) * TILE_W))" "sink_$i::ypos=$(((i / COLUMNS) * TILE_H))")
	BRANCHES+=(uridecodebin "uri=$uri" ! videoconvert ! "${DETECT[@]}" model-instance-id=detect-streams batch-timeout=0 "${SECOND[@]}" !
		frcnnoverlay ! videoconvert ! videoscale ! "video/x-raw,width=$TILE_W,height=$TILE_H,pixel-aspect-ratio=1/1" !
		queue ! "grid.sink_$i")
done

if [ -n "$OUTPUT" ]; then
	# The compositor mixes in AYUV; the encoder takes 4:2:0.
	frcnn_launch "${MIXER[@]}" ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=fast ! mp4mux ! \
		filesink location="$OUTPUT" "${BRANCHES[@]}"
else
	frcnn_launch "${MIXER[@]}" ! videoconvert ! autovideosink "${BRANCHES[@]}"
fi

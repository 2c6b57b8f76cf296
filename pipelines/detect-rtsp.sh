#!/usr/bin/env bash
# An RTSP stream (an IP camera, a media server), detected and shown, or recorded to MP4.
#
#   rtspsrc ! decodebin ! frcnndetect ! frcnnoverlay ! videoconvert ! autovideosink
set -euo pipefail
. "$(dirname "$0")/common.sh"

LATENCY=200
OUTPUT=""

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] rtsp://HOST[:PORT]/PATH

Shows the stream with the detections drawn on it, or writes it to a file with --output.

Stream options:
  --latency MS     jitter buffer of rtspsrc [$LATENCY]
  --output FILE    write H.264 MP4 to FILE instead of showing it (Ctrl-C finishes the file)

$COMMON_OPTIONS

Example:
  $(basename "$0") --weights coco --interval 3 rtsp://192.168.1.20:554/stream1
USAGE
}

OPTIONS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--latency) LATENCY=$2; shift 2 ;;
	--output) OUTPUT=$2; shift 2 ;;
	*) OPTIONS+=("$1"); shift ;;
	esac
done
frcnn_parse "${OPTIONS[@]+"${OPTIONS[@]}"}"
frcnn_need_args 1
frcnn_detect

SOURCE=(rtspsrc location="${ARGS[0]}" latency="$LATENCY" ! decodebin ! "${DETECT[@]}" "${SECOND[@]}" !
	frcnnoverlay ! videoconvert)
if [ -n "$OUTPUT" ]; then
	# 8-bit 4:2:0 H.264, which every player takes, whatever the stream's depth.
	frcnn_launch "${SOURCE[@]}" ! video/x-raw,format=I420 ! x264enc tune=zerolatency ! mp4mux ! \
		filesink location="$OUTPUT"
else
	frcnn_launch "${SOURCE[@]}" ! autovideosink
fi

#!/usr/bin/env bash
# A video file, decoded, detected, drawn and encoded again as H.264 in MP4.
#
#   filesrc ! decodebin ! frcnndetect ! frcnnoverlay ! videoconvert ! x264enc ! mp4mux ! filesink
set -euo pipefail
. "$(dirname "$0")/common.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] VIDEO OUTPUT.mp4

Writes VIDEO with the detections drawn on it to OUTPUT.mp4 (H.264).

$COMMON_OPTIONS

Example:
  $(basename "$0") --weights coco --batch-size 4 street.mp4 street-detections.mp4
USAGE
}

frcnn_parse "$@"
frcnn_need_args 2
frcnn_detect

# The decoder's frames go into frcnndetect as they come (10- and 12-bit ones too); the output is
# 8-bit 4:2:0 H.264, which every player takes.
frcnn_launch filesrc location="${ARGS[0]}" ! decodebin ! "${DETECT[@]}" "${SECOND[@]}" ! \
	frcnnoverlay ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=fast ! mp4mux ! \
	filesink location="${ARGS[1]}"

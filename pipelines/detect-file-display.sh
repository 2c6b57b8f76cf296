#!/usr/bin/env bash
# A video file, decoded, detected, drawn and shown in a window.
#
#   filesrc ! decodebin ! frcnndetect ! frcnnoverlay ! videoconvert ! autovideosink
#
# frcnndetect takes the decoder's NV12/I420 frames as they are; videoconvert is only there for
# the display.
set -euo pipefail
. "$(dirname "$0")/common.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] VIDEO

Shows VIDEO with the detections drawn on it.

$COMMON_OPTIONS

Example:
  $(basename "$0") --weights coco street.mp4
USAGE
}

frcnn_parse "$@"
frcnn_need_args 1
frcnn_detect

# The window plays in real time: with qos=true, frames the detector could only finish after
# their time on screen pass through without detection, so that it keeps up.
frcnn_launch filesrc location="${ARGS[0]}" ! decodebin ! "${DETECT[@]}" qos=true "${SECOND[@]}" ! \
	frcnnoverlay ! videoconvert ! autovideosink

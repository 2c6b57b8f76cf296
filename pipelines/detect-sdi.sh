#!/usr/bin/env bash
# An SDI (or HDMI) input of a Blackmagic DeckLink card, detected live and shown in a window.
#
#   decklinkvideosrc ! frcnndetect ! frcnnoverlay ! videoconvert ! autovideosink
#
# The card gives 8-bit UYVY or 10-bit v210 frames, which frcnndetect reads and frcnnoverlay draws
# on as they are: no videoconvert in front. SD modes (ntsc, pal) have pixels that are not square
# and fields: the caps say so, and the detector resizes the frames as a display shows them.
set -euo pipefail
. "$(dirname "$0")/common.sh"

BATCH_TIMEOUT=20
MODE=auto
VIDEO_FORMAT=auto
CONNECTION=auto

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] [DEVICE_NUMBER]

Shows the input of DeckLink device DEVICE_NUMBER [0] with the detections drawn on it.

Capture options:
  --mode M            the card's video mode, e.g. 1080p25, 1080i50, 720p60, pal, ntsc
                      (gst-inspect-1.0 decklinkvideosrc lists them) [$MODE: the signal's]
  --10bit             10-bit frames (v210) instead of 8-bit ones (UYVY); needs --mode
  --connection C      sdi, hdmi, optical-sdi, component, composite or svideo [$CONNECTION]
  --batch-timeout MS  longest wait for a batch to fill [$BATCH_TIMEOUT]

$COMMON_OPTIONS

Example:
  $(basename "$0") --mode 1080i50 --10bit --weights coco-mobilenet 0
USAGE
}

OPTIONS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--mode) MODE=$2; shift 2 ;;
	--10bit) VIDEO_FORMAT=10bit-yuv; shift ;;
	--connection) CONNECTION=$2; shift 2 ;;
	--batch-timeout) BATCH_TIMEOUT=$2; shift 2 ;;
	*) OPTIONS+=("$1"); shift ;;
	esac
done
frcnn_parse "${OPTIONS[@]+"${OPTIONS[@]}"}"
[ "${#ARGS[@]}" -le 1 ] || { usage >&2; exit 2; }
# The card takes a pixel format only with a mode it is told (decklinkvideosrc: "Only use auto for
# mode=auto").
if [ "$VIDEO_FORMAT" != auto ] && [ "$MODE" = auto ]; then
	echo "$(basename "$0"): --10bit needs --mode (the card takes a pixel format only for a given mode)" >&2
	exit 2
fi
frcnn_detect

frcnn_launch decklinkvideosrc device-number="${ARGS[0]:-0}" mode="$MODE" video-format="$VIDEO_FORMAT" \
	connection="$CONNECTION" ! "${DETECT[@]}" batch-timeout="$BATCH_TIMEOUT" "${SECOND[@]}" ! \
	frcnnoverlay ! videoconvert ! autovideosink sync=false

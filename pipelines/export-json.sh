#!/usr/bin/env bash
# Detections of a video file as JSON lines, one object per frame, no video output.
#
#   filesrc ! decodebin ! frcnndetect ! frcnnjson location=OUT ! fakesink
#
# Each line: {"frame": n, "pts": ns, "width": W, "height": H,
#             "detections": [{"box": [x1, y1, x2, y2], "label": "...", "label_id": L, "score": S,
#                             "id": I, "parent_id": P}]}
# FRCNN_JSON_FORMAT=dlstreamer writes Intel DL Streamer's gvametaconvert layout instead.
set -euo pipefail
. "$(dirname "$0")/common.sh"

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] VIDEO [OUTPUT.jsonl]

Writes the detections of every frame of VIDEO to OUTPUT.jsonl, or to standard output.
FRCNN_JSON_FORMAT=dlstreamer in the environment writes the lines in Intel DL Streamer's
gvametaconvert layout (frcnnjson format=dlstreamer).

$COMMON_OPTIONS

Example:
  $(basename "$0") --weights coco --batch-size 8 --classes person,car street.mp4 street.jsonl
USAGE
}

frcnn_parse "$@"
[ "${#ARGS[@]}" -ge 1 ] && [ "${#ARGS[@]}" -le 2 ] || { usage >&2; exit 2; }
frcnn_detect

# -q keeps gst-launch-1.0's own messages out of standard output (where the lines may go).
frcnn_run -q filesrc location="${ARGS[0]}" ! decodebin ! "${DETECT[@]}" "${SECOND[@]}" ! \
	frcnnjson location="${ARGS[1]:--}" format="${FRCNN_JSON_FORMAT:-frcnn}" ! fakesink

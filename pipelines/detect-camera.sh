#!/usr/bin/env bash
# A V4L2 camera, detected live and shown in a window.
#
#   v4l2src ! videoconvert ! frcnndetect ! frcnnoverlay ! videoconvert ! autovideosink
#   v4l2src ! image/jpeg ! jpegdec ! videoconvert ! frcnndetect ! ...       (--mjpeg)
#
# A live source: keep batch-size 1 (or a small batch with a short --batch-timeout) so that frames
# are not held waiting for a batch; --interval skips frames when the detector is slower than the
# camera.
set -euo pipefail
. "$(dirname "$0")/common.sh"

BATCH_TIMEOUT=20
MJPEG=0
WIDTH=640
HEIGHT=480

usage() {
	cat <<USAGE
Usage: $(basename "$0") [OPTIONS] [DEVICE]

Shows the camera DEVICE [/dev/video0] with the detections drawn on it.

Camera options:
  --size WxH          capture size [${WIDTH}x${HEIGHT}]
  --mjpeg             take the camera's MJPEG stream (what most USB cameras give at HD
                      sizes and full frame rate) and decode it; raw frames otherwise
  --batch-timeout MS  longest wait for a batch to fill [$BATCH_TIMEOUT]

$COMMON_OPTIONS

Example:
  $(basename "$0") --weights coco-mobilenet-320 --interval 2 /dev/video0
USAGE
}

OPTIONS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--size) WIDTH=${2%x*}; HEIGHT=${2#*x}; shift 2 ;;
	--mjpeg) MJPEG=1; shift ;;
	--batch-timeout) BATCH_TIMEOUT=$2; shift 2 ;;
	*) OPTIONS+=("$1"); shift ;;
	esac
done
frcnn_parse "${OPTIONS[@]+"${OPTIONS[@]}"}"
[ "${#ARGS[@]}" -le 1 ] || { usage >&2; exit 2; }
frcnn_detect

# frcnndetect and frcnnoverlay take what cameras give (YUY2, UYVY, NV12, I420, GRAY8, RGB...):
# videoconvert passes those through untouched and converts only a format they do not take.
# jpegdec's frames are full range, which their caps say and frcnndetect reads.
if [ "$MJPEG" = 1 ]; then
	CAMERA=(image/jpeg,width="$WIDTH",height="$HEIGHT" ! jpegdec)
else
	CAMERA=(video/x-raw,width="$WIDTH",height="$HEIGHT")
fi
frcnn_launch v4l2src device="${ARGS[0]:-/dev/video0}" ! "${CAMERA[@]}" ! videoconvert ! \
	"${DETECT[@]}" batch-timeout="$BATCH_TIMEOUT" "${SECOND[@]}" ! frcnnoverlay ! videoconvert ! \
	autovideosink sync=false

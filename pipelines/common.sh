# Shared by the pipeline scripts (sourced, not run): the options every script takes, the
# frcnndetect element they build from them, and running or printing the pipeline.
#
# Every frcnndetect option can also come from the environment (FRCNN_WEIGHTS=coco ...), so that a
# user sets a default once.

FRCNN_WEIGHTS=${FRCNN_WEIGHTS:-coco}
FRCNN_MODEL=${FRCNN_MODEL:-}
FRCNN_DEVICE=${FRCNN_DEVICE:-cpu}
FRCNN_PRECISION=${FRCNN_PRECISION:-fp32}
FRCNN_CPU_CONVOLUTIONS=${FRCNN_CPU_CONVOLUTIONS:-auto}
FRCNN_BATCH_SIZE=${FRCNN_BATCH_SIZE:-1}
FRCNN_THRESHOLD=${FRCNN_THRESHOLD:-0.5}
FRCNN_MIN_SIZE=${FRCNN_MIN_SIZE:-0}
FRCNN_INTERVAL=${FRCNN_INTERVAL:-1}
FRCNN_LABELS=${FRCNN_LABELS:-}
FRCNN_CLASSES=${FRCNN_CLASSES:-}
FRCNN_THREADS=${FRCNN_THREADS:-0}
FRCNN_REGION=${FRCNN_REGION:-}
FRCNN_CLASS_THRESHOLDS=${FRCNN_CLASS_THRESHOLDS:-}
FRCNN_SECOND=${FRCNN_SECOND:-}
FRCNN_INT8_CALIBRATION=${FRCNN_INT8_CALIBRATION:-}
DRY_RUN=0
ARGS=()

COMMON_OPTIONS="Detector options (defaults in brackets; FRCNN_WEIGHTS=... etc. in the environment
also work):
  --weights W      checkpoint file, preset name (coco, coco-v2, coco-mobilenet,
                   coco-mobilenet-320) or URL [$FRCNN_WEIGHTS]
  --model M        model preset of a weights file, e.g. tiny [the weights preset's model,
                   else told from the checkpoint's keys]
  --device D       cpu, cuda or cuda:N [$FRCNN_DEVICE]
  --precision P    fp32, fp16 (CUDA), bf16 (CPUs with AVX-512 BF16 or AMX) or int8 (CPU)
                   [$FRCNN_PRECISION]
  --int8-calibration FILE
                   with --precision int8: the calibration file, read when it exists, else
                   written after calibrating on the first frames [calibrate at every start]
  --cpu-convolutions K
                   auto, libtorch (torchvision's arithmetic) or onednn (faster) on the CPU
                   [$FRCNN_CPU_CONVOLUTIONS]
  --batch-size N   frames per inference batch [$FRCNN_BATCH_SIZE]
  --threshold S    minimum score [$FRCNN_THRESHOLD]
  --min-size N     short side the frames are scaled to, 0 = the model's [$FRCNN_MIN_SIZE]
  --interval N     detect on 1 frame in N [$FRCNN_INTERVAL]
  --labels FILE    class names, one per line, e.g. the CHECKPOINT.labels frcnn-train
                   writes [COCO names for 91-class models]
  --classes LIST   only these classes, e.g. person,car
  --class-thresholds LIST
                   minimum scores of single classes, e.g. person=0.7,car=0.3
  --region X,Y,W,H detect only in this rectangle of the frame (pixels) [the whole frame]
  --threads N      CPU threads of the detector, 0 = OMP_NUM_THREADS or LibTorch's count of
                   physical cores [$FRCNN_THREADS]
  --second PROPS   a second frcnndetect after the first, run inside the regions the first
                   found (inference-region=roi-list), on --device with --precision and these
                   properties (separated by spaces), e.g.
                   \"weights=plates.pth labels=plates.txt object-class=car\" [none]
  --dry-run        print the gst-launch-1.0 command instead of running it
  -h, --help       this help"

# Parses the common options; what remains is left in ARGS. Calls usage() on --help.
frcnn_parse() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--weights) FRCNN_WEIGHTS=$2; shift 2 ;;
		--model) FRCNN_MODEL=$2; shift 2 ;;
		--device) FRCNN_DEVICE=$2; shift 2 ;;
		--precision) FRCNN_PRECISION=$2; shift 2 ;;
		--int8-calibration) FRCNN_INT8_CALIBRATION=$2; shift 2 ;;
		--cpu-convolutions) FRCNN_CPU_CONVOLUTIONS=$2; shift 2 ;;
		--batch-size) FRCNN_BATCH_SIZE=$2; shift 2 ;;
		--threshold) FRCNN_THRESHOLD=$2; shift 2 ;;
		--min-size) FRCNN_MIN_SIZE=$2; shift 2 ;;
		--interval) FRCNN_INTERVAL=$2; shift 2 ;;
		--labels) FRCNN_LABELS=$2; shift 2 ;;
		--classes) FRCNN_CLASSES=$2; shift 2 ;;
		--region) FRCNN_REGION=$2; shift 2 ;;
		--class-thresholds) FRCNN_CLASS_THRESHOLDS=$2; shift 2 ;;
		--threads) FRCNN_THREADS=$2; shift 2 ;;
		--second) FRCNN_SECOND=$2; shift 2 ;;
		--dry-run) DRY_RUN=1; shift ;;
		-h | --help) usage; exit 0 ;;
		--) shift; ARGS+=("$@"); break ;;
		-*) echo "$(basename "$0"): unknown option $1 (see --help)" >&2; exit 2 ;;
		*) ARGS+=("$1"); shift ;;
		esac
	done
}

# The frcnndetect element, as gst-launch-1.0 arguments (one word per property), in DETECT; the
# second one of --second in SECOND: empty, or "!" and the element, to go after the first's own
# properties.
frcnn_detect() {
	DETECT=(frcnndetect "weights=$FRCNN_WEIGHTS" "device=$FRCNN_DEVICE"
		"precision=$FRCNN_PRECISION" "batch-size=$FRCNN_BATCH_SIZE"
		"threshold=$FRCNN_THRESHOLD" "min-size=$FRCNN_MIN_SIZE" "interval=$FRCNN_INTERVAL")
	[ -n "$FRCNN_MODEL" ] && DETECT+=("model=$FRCNN_MODEL")
	[ -n "$FRCNN_INT8_CALIBRATION" ] && DETECT+=("int8-calibration=$FRCNN_INT8_CALIBRATION")
	[ "$FRCNN_CPU_CONVOLUTIONS" != auto ] && DETECT+=("cpu-convolutions=$FRCNN_CPU_CONVOLUTIONS")
	[ -n "$FRCNN_LABELS" ] && DETECT+=("labels=$FRCNN_LABELS")
	[ -n "$FRCNN_CLASSES" ] && DETECT+=("classes=$FRCNN_CLASSES")
	[ -n "$FRCNN_REGION" ] && DETECT+=("region=$FRCNN_REGION")
	[ -n "$FRCNN_CLASS_THRESHOLDS" ] && DETECT+=("class-thresholds=$FRCNN_CLASS_THRESHOLDS")
	[ "$FRCNN_THREADS" != 0 ] && DETECT+=("threads=$FRCNN_THREADS")
	SECOND=()
	if [ -n "$FRCNN_SECOND" ]; then
		local properties
		read -r -a properties <<<"$FRCNN_SECOND"
		SECOND=(! frcnndetect inference-region=roi-list "device=$FRCNN_DEVICE"
			"precision=$FRCNN_PRECISION" "${properties[@]}")
	fi
	return 0
}

# Fails early, with a hint, when GStreamer cannot find the plugin.
frcnn_check_plugin() {
	if ! gst-inspect-1.0 frcnndetect >/dev/null 2>&1; then
		echo "$(basename "$0"): GStreamer does not find the frcnn plugin." >&2
		echo "  Install it, or point GST_PLUGIN_PATH at the build: GST_PLUGIN_PATH=build/gst" >&2
		exit 1
	fi
}

# Runs gst-launch-1.0 with the given options and pipeline (one argument per word), or prints
# that command with --dry-run.
frcnn_run() {
	if [ "$DRY_RUN" = 1 ]; then
		printf '%q ' gst-launch-1.0 "$@"
		echo
		return 0
	fi
	frcnn_check_plugin
	gst-launch-1.0 "$@"
}

# frcnn_run with -e, which turns Ctrl-C into an end of stream, so that files are finished
# properly.
frcnn_launch() {
	frcnn_run -e "$@"
}

# The one positional argument a script needs, or usage and exit.
frcnn_need_args() {
	if [ "${#ARGS[@]}" -ne "$1" ]; then
		usage >&2
		exit 2
	fi
}

# The file:// URI of a local file (its absolute path, every byte outside RFC 3986's unreserved
# characters and '/' percent-encoded), as uridecodebin reads it: a name with '#', '%' or
# '?' would otherwise be cut at, or decoded from, those.
frcnn_file_uri() {
	local path uri="" byte i
	path=$(realpath -- "$1") || return 1
	local LC_ALL=C
	for ((i = 0; i < ${#path}; i++)); do
		byte=${path:i:1}
		case "$byte" in
		[A-Za-z0-9/._~-]) uri+=$byte ;;
		*) printf -v byte '%%%02X' "'$byte"; uri+=$byte ;;
		esac
	done
	printf 'file://%s\n' "$uri"
}

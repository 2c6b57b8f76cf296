#!/usr/bin/env bash
# The scripts of pipelines/: each prints its usage, rejects a wrong call, and the file-based ones
# run for real on a real video with the seeded test model.
#   pipeline_scripts.sh SOURCE_ROOT WEIGHTS VIDEO OUT_DIR
set -euo pipefail
root=$1 weights=$2 video=$3 out=$4
mkdir -p "$out"
cd "$root/pipelines"
fail() { echo "FAIL: $*" >&2; exit 1; }

for script in detect-file-display.sh detect-file-mp4.sh detect-camera.sh detect-sdi.sh detect-rtsp.sh \
	detect-streams.sh export-json.sh benchmark.sh; do
	[ -x "$script" ] || fail "$script is not executable"
	bash -n "$script" || fail "$script: syntax"
	"./$script" --help | grep -q "^Usage: $script" || fail "$script --help prints no usage"
	grep -q "$script" README.md || fail "$script is not in README.md"
	if "./$script" --no-such-option >/dev/null 2>&1; then
		fail "$script accepted an unknown option"
	fi
done
./detect-file-mp4.sh one-argument.avi >/dev/null 2>&1 && fail "detect-file-mp4.sh ran without OUTPUT"
./detect-file-display.sh --dry-run --classes person,car a.mp4 | grep -q "classes=person" ||
	fail "--dry-run does not show the pipeline"
./detect-file-display.sh --dry-run --region 10,20,300,200 a.mp4 | grep -qF 'region=10\,20\,300\,200' ||
	fail "detect-file-display.sh does not pass --region"
./detect-file-mp4.sh --dry-run --class-thresholds person=0.7 a.mp4 b.mp4 | grep -qF 'class-thresholds=person=0.7' ||
	fail "detect-file-mp4.sh does not pass --class-thresholds"
FRCNN_REGION=0,0,64,64 ./export-json.sh --dry-run a.mp4 | grep -qF 'region=0\,0\,64\,64' ||
	fail "export-json.sh does not take FRCNN_REGION"
# The display plays in real time: the detector skips frames that would be late (QoS).
./detect-file-display.sh --dry-run a.mp4 | grep -q "frcnndetect .*qos=true" ||
	fail "detect-file-display.sh does not turn QoS on"
FRCNN_THREADS=3 ./export-json.sh --dry-run a.mp4 | grep -q "frcnndetect .*threads=3" ||
	fail "export-json.sh does not pass FRCNN_THREADS"
FRCNN_JSON_FORMAT=dlstreamer ./export-json.sh --dry-run a.mp4 | grep -q "frcnnjson .*format=dlstreamer" ||
	fail "export-json.sh does not pass FRCNN_JSON_FORMAT"
./detect-file-mp4.sh --dry-run --threads 2 a.mp4 b.mp4 | grep -q "frcnndetect .*threads=2" ||
	fail "detect-file-mp4.sh does not pass --threads"
# The decoder's frames go straight into the detector; the MP4 files are 8-bit 4:2:0 H.264 (a 10-bit
# video would otherwise be encoded as High 10, which few players take).
./detect-file-mp4.sh --dry-run a.mp4 b.mp4 |
	grep -qF 'decodebin \! frcnndetect' ||
	fail "detect-file-mp4.sh converts the decoder's frames before the detector"
./detect-file-mp4.sh --dry-run a.mp4 b.mp4 | grep -qF 'video/x-raw\,format=I420 \! x264enc' ||
	fail "detect-file-mp4.sh does not encode 8-bit 4:2:0"
./detect-rtsp.sh --dry-run --output b.mp4 rtsp://camera/stream | grep -qF 'video/x-raw\,format=I420 \! x264enc' ||
	fail "detect-rtsp.sh --output does not encode 8-bit 4:2:0"
# A dry run shows the options the real run passes to gst-launch-1.0.
./detect-file-mp4.sh --dry-run a.mp4 b.mp4 | grep -q "^gst-launch-1.0 -e filesrc" ||
	fail "detect-file-mp4.sh --dry-run does not show -e"
./export-json.sh --dry-run a.mp4 | grep -q "^gst-launch-1.0 -q filesrc" ||
	fail "export-json.sh --dry-run does not show -q"
./benchmark.sh --dry-run | grep -q "^gst-launch-1.0 -v -m videotestsrc" ||
	fail "benchmark.sh --dry-run does not show -v -m"
./benchmark.sh --dry-run --format P010_10LE --size 640x360 |
	grep -qF 'video/x-raw\,format=P010_10LE\,width=640\,height=360 \! frcnndetect' ||
	fail "benchmark.sh --format does not set the synthetic frames' format"
# A capture card's frames (UYVY, v210) go straight into the detector; a pixel format needs a mode.
./detect-sdi.sh --dry-run --mode 1080i50 --10bit --connection sdi 1 |
	grep -qF 'decklinkvideosrc device-number=1 mode=1080i50 video-format=10bit-yuv connection=sdi \! frcnndetect' ||
	fail "detect-sdi.sh does not pass the card's mode, format and connection to frcnndetect's input"
./detect-sdi.sh --dry-run --10bit >/dev/null 2>&1 && fail "detect-sdi.sh took --10bit without --mode"
./detect-camera.sh --dry-run --mjpeg --size 1280x720 /dev/video2 |
	grep -qF 'device=/dev/video2 \! image/jpeg\,width=1280\,height=720 \! jpegdec \! videoconvert \! frcnndetect' ||
	fail "detect-camera.sh --mjpeg does not decode the camera's JPEG"
./detect-camera.sh --dry-run | grep -qF 'v4l2src device=/dev/video0 \! video/x-raw\,width=640\,height=480 \! videoconvert' ||
	fail "detect-camera.sh does not take raw frames by default"
# Several sources: one detector each, all on one shared model, in a grid of 2 columns for 3.
streams=$(./detect-streams.sh --dry-run --tile 100x50 a.mp4 rtsp://camera/stream c.mp4)
[ "$(grep -o "model-instance-id=detect-streams" <<<"$streams" | wc -l)" = 3 ] ||
	fail "detect-streams.sh does not share one model between its 3 detectors: $streams"
[ "$(grep -o "batch-timeout=0" <<<"$streams" | wc -l)" = 3 ] ||
	fail "detect-streams.sh lets its detectors wait for batches to fill: $streams"
grep -q "sink_2::xpos=0 sink_2::ypos=50" <<<"$streams" && grep -q "uri=rtsp://camera/stream" <<<"$streams" ||
	fail "detect-streams.sh: unexpected grid or sources: $streams"
./detect-streams.sh --tile big a.mp4 >/dev/null 2>&1 && fail "detect-streams.sh accepted --tile big"
# --second: a detector inside the first one's regions, after the first's own properties.
./detect-file-display.sh --dry-run --second "weights=x.pth object-class=car" a.mp4 |
	grep -qF 'qos=true \! frcnndetect inference-region=roi-list device=cpu precision=fp32 weights=x.pth object-class=car \! frcnnoverlay' ||
	fail "detect-file-display.sh does not add the --second detector"
FRCNN_SECOND=weights=x.pth ./export-json.sh --dry-run a.mp4 | grep -qF '\! frcnndetect inference-region=roi-list device=cpu precision=fp32 weights=x.pth \! frcnnjson' ||
	fail "export-json.sh does not take FRCNN_SECOND"
[ "$(./detect-streams.sh --dry-run --second weights=x.pth a.mp4 b.mp4 | grep -o "model-instance-id=detect-streams-second" | wc -l)" = 2 ] ||
	fail "detect-streams.sh does not share one model between its second detectors"
grep -q "inference-region" <<<"$streams" && fail "detect-streams.sh adds a second detector unasked"
./detect-streams.sh >/dev/null 2>&1 && fail "detect-streams.sh ran without a source"

common=(--model tiny --weights "$weights" --threshold 0.3 --min-size 160)

# JSON export: one line per decoded frame.
./export-json.sh "${common[@]}" --threads 2 --interval 4 "$video" "$out/export.jsonl"
frames=$(wc -l < "$out/export.jsonl")
[ "$frames" -gt 200 ] || fail "export-json.sh wrote $frames lines"
./export-json.sh "${common[@]}" --interval 50 "$video" > "$out/stdout.jsonl"
[ "$(wc -l < "$out/stdout.jsonl")" = "$frames" ] || fail "export-json.sh to stdout"
head -n 1 "$out/stdout.jsonl" | grep -q '^{"frame":0,"pts":0,"width":720,"height":528,"detections":\[' ||
	fail "export-json.sh: unexpected line $(head -n 1 "$out/stdout.jsonl")"

# MP4: a file that decodes to as many frames.
./detect-file-mp4.sh "${common[@]}" --interval 4 --batch-size 2 "$video" "$out/boxes.mp4" >/dev/null
decoded=$(gst-launch-1.0 -q filesrc location="$out/boxes.mp4" ! qtdemux ! h264parse ! avdec_h264 ! \
	frcnnjson location=- ! fakesink | wc -l)
[ "$decoded" = "$frames" ] || fail "the MP4 has $decoded frames, the video $frames"

# Two sources side by side: the grid decodes to as many frames as the video, twice as wide. The
# second is a copy whose name has what a file's URI must encode ('#', '%', a space, UTF-8).
odd_name="$out/clip #1 %20 é.${video##*.}"
cp "$video" "$odd_name"
./detect-streams.sh --dry-run "$odd_name" | grep -qF "/clip%20%231%20%2520%20%C3%A9.${video##*.} " ||
	fail "detect-streams.sh does not encode a file's name in its URI: $(./detect-streams.sh --dry-run "$odd_name")"
./detect-streams.sh "${common[@]}" --interval 8 --tile 320x240 --output "$out/grid.mp4" "$video" "$odd_name" >/dev/null
gst-launch-1.0 -q filesrc location="$out/grid.mp4" ! qtdemux ! h264parse ! avdec_h264 ! \
	frcnnjson location="$out/grid.jsonl" ! fakesink
grid_frames=$(wc -l < "$out/grid.jsonl")
[ "$grid_frames" -ge $((frames - 2)) ] || fail "the grid has $grid_frames frames, the video $frames"
head -n 1 "$out/grid.jsonl" | grep -q '"width":640,"height":240' ||
	fail "detect-streams.sh: unexpected grid size $(head -n 1 "$out/grid.jsonl")"

# Benchmark on synthetic frames: prints a wall time, and a rate when it ran long enough.
./benchmark.sh "${common[@]}" --frames 12 --size 320x240 > "$out/bench.txt"
grep -q "^wall time: " "$out/bench.txt" || fail "benchmark.sh: $(cat "$out/bench.txt")"
grep -q "^frcnndetect: 12 frames run in 12 batches (1.00 a batch), [0-9.]* frames/s" "$out/bench.txt" ||
	fail "benchmark.sh does not report frcnndetect's statistics: $(cat "$out/bench.txt")"
grep -q "^second" "$out/bench.txt" && fail "benchmark.sh reports a second detector unasked"
# With a second detector inside the first one's detections (the larger ones, 4 at a time).
./benchmark.sh "${common[@]}" --frames 12 --size 320x240 \
	--second "model=tiny weights=$weights threshold=0.3 min-size=160 object-min-size=100 batch-size=4" > "$out/bench2.txt"
grep -q "^frcnndetect: 12 frames run in 12 batches" "$out/bench2.txt" &&
	grep -q "^second frcnndetect: [1-9][0-9]* regions of [1-9][0-9]* frames run in [1-9][0-9]* batches ([0-9.]* a batch), [0-9.]* regions/s" "$out/bench2.txt" ||
	fail "benchmark.sh --second: $(cat "$out/bench2.txt")"
echo "pipeline scripts: ok ($frames frames)"

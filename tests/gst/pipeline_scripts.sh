#!/usr/bin/env bash
# The scripts of pipelines/: each prints its usage, rejects a wrong call, and the file-based ones
# run for real on a real video with the seeded test model.
#   pipeline_scripts.sh SOURCE_ROOT WEIGHTS VIDEO OUT_DIR
set -euo pipefail
root=$1 weights=$2 video=$3 out=$4
mkdir -p "$out"
cd "$root/pipelines"
fail() { echo "FAIL: $*" >&2; exit 1; }

for script in detect-file-display.sh detect-file-mp4.sh detect-camera.sh detect-rtsp.sh \
	export-json.sh benchmark.sh; do
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
# The display plays in real time: the detector skips frames that would be late (QoS).
./detect-file-display.sh --dry-run a.mp4 | grep -q "frcnndetect .*qos=true" ||
	fail "detect-file-display.sh does not turn QoS on"
FRCNN_THREADS=3 ./export-json.sh --dry-run a.mp4 | grep -q "frcnndetect .*threads=3" ||
	fail "export-json.sh does not pass FRCNN_THREADS"
./detect-file-mp4.sh --dry-run --threads 2 a.mp4 b.mp4 | grep -q "frcnndetect .*threads=2" ||
	fail "detect-file-mp4.sh does not pass --threads"
# A dry run shows the options the real run passes to gst-launch-1.0.
./detect-file-mp4.sh --dry-run a.mp4 b.mp4 | grep -q "^gst-launch-1.0 -e filesrc" ||
	fail "detect-file-mp4.sh --dry-run does not show -e"
./export-json.sh --dry-run a.mp4 | grep -q "^gst-launch-1.0 -q filesrc" ||
	fail "export-json.sh --dry-run does not show -q"
./benchmark.sh --dry-run | grep -q "^gst-launch-1.0 -v videotestsrc" ||
	fail "benchmark.sh --dry-run does not show -v"

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

# Benchmark on synthetic frames: prints a wall time, and a rate when it ran long enough.
./benchmark.sh "${common[@]}" --frames 12 --size 320x240 > "$out/bench.txt"
grep -q "^wall time: " "$out/bench.txt" || fail "benchmark.sh: $(cat "$out/bench.txt")"
echo "pipeline scripts: ok ($frames frames)"

#!/usr/bin/env bash
# frcnn-bench and bench_torchvision.py run and report their fields; no speed is checked.
# 1. tiny, seeded weights, a few frames of a real video, stage by stage: every field present and
#    consistent (p95 >= p50 > 0, stages within the batch latency, the stage-by-stage run equal to
#    the model's forward(), RSS after N frames reported), and the same in --facade mode; with
#    --frame-copies, in both modes, the same detections and the copying timed apart; with
#    --pixel-format P010_10LE and --transfer pq, the fields say so and the PQ reading of the same
#    bytes gives other detections than their SDR one, and --primaries bt2020 others again;
#    --pixel-format v210 runs and says so.
# 2. fasterrcnn_resnet50_fpn and fasterrcnn_mobilenet_v3_large_320_fpn at a small input:
#    frcnn-bench saves their weights and dumps its frames,
#    bench_torchvision.py runs on them, and both count the same FLOPs per frame (within 0.5%) and
#    the same input shape, and report the time their model took to load (a staged run of seeded
#    weights reports none).
# 3. Bad options exit with status 2 and a message that names them (--dump-frames without an
#    input too); a missing or empty input, or one that holds no frame, is named, without
#    warnings of OpenCV's backends;
#    results that cannot be written (a full disk) exit with status 1.
set -euo pipefail
bench=$1
reference=$2
python=${FRCNN_REF_PYTHON:-/usr/bin/python3}
video=/usr/share/doc/opencv-doc/examples/data/Megamind.avi
if [ ! -f "$video" ]; then
	echo "SKIP: $video missing (Debian package opencv-doc)"
	exit 77
fi
# Threads that sleep at barriers rather than spin: on a machine busy with other work, spinning
# OpenMP threads slow LibTorch down many times over (see docs/performance.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$bench" --arch tiny --seed 3 --threads 2 --batch 2 --warmup 1 --frames 4 --rss-at 2,4 --json \
	--detections "$out/detections.json" "$video" > "$out/staged.json"
"$bench" --arch tiny --seed 3 --threads 2 --batch 1 --warmup 1 --frames 2 --resize 320x240 --facade --json \
	--detections "$out/facade-detections.json" "$video" > "$out/facade.json"
"$bench" --arch tiny --seed 3 --threads 2 --batch 2 --warmup 1 --frames 4 --frame-copies --json \
	--detections "$out/copies-detections.json" "$video" > "$out/staged-copies.json"
"$bench" --arch tiny --seed 3 --threads 2 --batch 1 --warmup 1 --frames 2 --resize 320x240 --facade --frame-copies \
	--json --detections "$out/facade-copies-detections.json" "$video" > "$out/facade-copies.json"
for transfer in sdr pq; do
	"$bench" --arch tiny --seed 3 --threads 2 --batch 1 --warmup 1 --frames 2 --resize 320x240 --facade --json \
		--pixel-format P010_10LE --transfer $transfer --detections "$out/p010-$transfer-detections.json" \
		"$video" > "$out/p010-$transfer.json"
done
"$bench" --arch tiny --seed 3 --threads 2 --batch 1 --warmup 1 --frames 2 --resize 320x240 --facade --json \
	--pixel-format P010_10LE --transfer pq --primaries bt2020 --detections "$out/p010-pq-bt2020-detections.json" \
	"$video" > "$out/p010-pq-bt2020.json"
"$bench" --arch tiny --seed 3 --threads 2 --batch 1 --warmup 1 --frames 2 --resize 320x240 --facade --json \
	--pixel-format v210 --detections "$out/v210-detections.json" "$video" > "$out/v210.json"
"$python" - "$out" <<'PY'
import json, sys
out = sys.argv[1]
staged = json.load(open(out + "/staged.json"))
facade = json.load(open(out + "/facade.json"))
detections = json.load(open(out + "/detections.json"))
failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

for name, r in (("staged", staged), ("facade", facade)):
    for key in ("arch", "device", "threads", "batch", "min_size", "max_size", "frame_size", "frames", "fps",
                "latency_ms", "stages_ms_p50", "peak_rss_mb", "rss_mb", "gflops_per_frame", "gflops_per_s",
                "flops_method", "detections_first_batch", "staged_vs_forward"):
        check(key in r, f"{name}: field {key} missing")
    check(r["arch"] == "tiny", f"{name}: arch {r['arch']}")
    check(r["threads"] == 2, f"{name}: threads {r['threads']}")
    check(r["fps"] > 0, f"{name}: fps {r['fps']}")
    lat = r["latency_ms"]
    check(0 < lat["min"] <= lat["p50"] <= lat["p95"], f"{name}: latency {lat}")
    check(r["peak_rss_mb"] > 50 and r["rss_mb"] > 0, f"{name}: RSS {r['peak_rss_mb']} {r['rss_mb']}")
    check(r["gflops_per_frame"] > 0 and r["gflops_per_s"] > 0, f"{name}: GFLOP {r['gflops_per_frame']}")
    check(abs(r["gflops_per_s"] - r["gflops_per_frame"] * r["fps"]) <= 0.01 * r["gflops_per_s"] + 0.01,
          f"{name}: GFLOP/s is not GFLOP per frame x fps")
    check(len(r["detections_first_batch"]) == r["batch"], f"{name}: detections {r['detections_first_batch']}")
    # Seeded weights: the facade loads them from a file, the staged model calibrates them on the
    # frames meanwhile (no load time to report).
    check(r.get("load_ms", 0) > 0 if name == "facade" else r.get("load_ms", 0) is None,
          f"{name}: load time {r.get('load_ms')} of seeded weights")

check(staged["batch"] == 2 and staged["frames"] == 4, "staged: batch/frames")
check(staged["frame_size"] == [720, 528], f"staged: frame size {staged['frame_size']}")
# 720x528 at min_size 480 (tiny's) is 654x480, padded to multiples of 32.
check(staged["model_input"] == [2, 3, 480, 672], f"staged: model input {staged.get('model_input')}")
stages = staged["stages_ms_p50"]
check(list(stages) == ["transform", "backbone_fpn", "rpn", "roi_heads", "postprocess"], f"stage names {list(stages)}")
check(all(v > 0 for v in stages.values()), f"stage times {stages}")
check(sum(stages.values()) <= staged["latency_ms"]["p95"] * 1.05 + 1, f"stages {stages} exceed the latency")
check(staged["staged_vs_forward"] == {"identical": True, "labels_equal": True, "max_box_diff_px": 0.0},
      f"stage-by-stage run differs from forward(): {staged['staged_vs_forward']}")
check(set(staged["rss_mb_after_frames"]) == {"2", "4"}, f"rss after frames {staged['rss_mb_after_frames']}")
check([len(d) for d in detections] == staged["detections_first_batch"], "--detections vs detections_first_batch")
check(all(set(d) == {"box", "label", "score"} and len(d["box"]) == 4 for f in detections for d in f),
      "--detections entries")
check(facade["mode"] == "facade" and facade["stages_ms_p50"] is None, "facade: mode or stages")
check(facade["frame_size"] == [320, 240], f"facade: frame size {facade['frame_size']}")
# Fewer pixels, fewer FLOPs.
check(facade["gflops_per_frame"] < staged["gflops_per_frame"], "facade at 320x240 counts more FLOPs")
# Frames copied ahead (Detector::copy_frame) give the same detections, bit for bit.
runs = {"staged": (staged, "detections.json", "copies-detections.json"),
        "facade": (facade, "facade-detections.json", "facade-copies-detections.json")}
for name, (plain, plain_detections, copies_detections) in runs.items():
    copies = json.load(open(f"{out}/{name}-copies.json"))
    check(plain["frame_copies"] is False and plain["frame_copy_ms_p50"] is None, f"{name}: frame copies reported")
    check(copies["frame_copies"] is True and copies["frame_copy_ms_p50"] > 0,
          f"{name} --frame-copies: copy time {copies.get('frame_copy_ms_p50')}")
    check(json.load(open(f"{out}/{plain_detections}")) == json.load(open(f"{out}/{copies_detections}")),
          f"{name} --frame-copies: other detections")
check(json.load(open(out + "/staged-copies.json"))["staged_vs_forward"]["identical"] is True,
      "staged --frame-copies: the stage-by-stage check")
# Frames handed over as P010, read as SDR and as PQ.
check(staged["pixel_format"] == "RGB" and staged["transfer"] == "sdr" and staged["primaries"] == "bt709",
      "the default frames: not RGB SDR BT.709")
p010 = {t: json.load(open(f"{out}/p010-{t}.json")) for t in ("sdr", "pq")}
for t, r in p010.items():
    check(r["pixel_format"] == "P010_10LE" and r["transfer"] == t, f"P010 {t}: fields {r['pixel_format']} {r['transfer']}")
    check(r["fps"] > 0 and r["frame_size"] == [320, 240], f"P010 {t}: fps or frame size")
p010_detections = {t: json.load(open(f"{out}/p010-{t}-detections.json")) for t in ("sdr", "pq")}
check(all(p010_detections.values()) and p010_detections["sdr"] != p010_detections["pq"],
      "P010: the PQ reading gives the SDR reading's detections")
wide = json.load(open(out + "/p010-pq-bt2020.json"))
check(wide["transfer"] == "pq" and wide["primaries"] == "bt2020" and wide["fps"] > 0,
      f"P010 PQ BT.2020: fields {wide['transfer']} {wide['primaries']} {wide['fps']}")
wide_detections = json.load(open(out + "/p010-pq-bt2020-detections.json"))
check(wide_detections and wide_detections != p010_detections["pq"],
      "P010 PQ: the BT.2020 reading gives the BT.709 reading's detections")
v210 = json.load(open(out + "/v210.json"))
check(v210["pixel_format"] == "v210" and v210["fps"] > 0 and v210["frame_size"] == [320, 240],
      f"v210: fields {v210['pixel_format']} {v210['fps']} {v210['frame_size']}")
check(any(json.load(open(out + "/v210-detections.json"))), "v210: no detections")
for f in failures:
    print("FAIL:", f)
print("frcnn-bench tiny: %d checks failed" % len(failures))
sys.exit(1 if failures else 0)
PY

# torchvision on the same frames and weights, at a small size to stay quick: a ResNet-50 and a
# MobileNetV3 model (both on libfrcnn's default, the oneDNN convolutions where built).
"$bench" --dump-frames "$out/frames" --batch 1 --warmup 1 --frames 1 "$video"
for arch in fasterrcnn_resnet50_fpn fasterrcnn_mobilenet_v3_large_320_fpn; do
"$bench" --arch $arch --seed 5 --min-size 160 --max-size 240 --save-weights "$out/w.pth" "$video"
"$bench" --arch $arch --weights "$out/w.pth" --min-size 160 --max-size 240 --threads 2 \
	--warmup 1 --frames 1 --json "$video" > "$out/cpp.json"
"$python" "$reference" --arch $arch --frames-dir "$out/frames" --weights "$out/w.pth" --min-size 160 \
	--max-size 240 --threads 2 --warmup 1 --frames 1 --json > "$out/tv.json"
"$python" - "$out/frames/frames.json" "$out/cpp.json" "$out/tv.json" $arch <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
cpp = json.load(open(sys.argv[2]))
tv = json.load(open(sys.argv[3]))
arch = sys.argv[4]
failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

check(len(manifest["frames"]) == 2 and manifest["frames"][0]["width"] == 720, f"manifest {manifest}")
check(cpp["arch"] == arch and tv["arch"] == arch, f"arch {cpp['arch']} and {tv['arch']}, not {arch}")
for key in cpp:
    if key != "op_profile_ms":
        check(key in tv, f"torchvision: field {key} missing")
check(tv["fps"] > 0 and tv["latency_ms"]["p50"] > 0, "torchvision: fps/latency")
check(cpp["load_ms"] > 0 and tv["load_ms"] > 0, f"load times {cpp['load_ms']} and {tv['load_ms']}")
check(cpp["model_input"] == tv["model_input"], f"input {cpp['model_input']} vs {tv['model_input']}")
check(tv["staged_vs_forward"]["identical"], f"torchvision staged vs forward {tv['staged_vs_forward']}")
check(cpp["staged_vs_forward"]["identical"], f"libfrcnn staged vs forward {cpp['staged_vs_forward']}")
if tv["gflops_per_frame"] is None:
    failures.append("torchvision: no FLOP count")
else:
    rel = abs(cpp["gflops_per_frame"] - tv["gflops_per_frame"]) / tv["gflops_per_frame"]
    check(rel < 0.005, f"FLOPs per frame: libfrcnn {cpp['gflops_per_frame']} vs torchvision {tv['gflops_per_frame']}")
for f in failures:
    print("FAIL:", f)
print("%s, frcnn-bench vs bench_torchvision.py: GFLOP per frame %s vs %s; %d checks failed"
      % (arch, cpp["gflops_per_frame"], tv["gflops_per_frame"], len(failures)))
sys.exit(1 if failures else 0)
PY
done

status=0
if "$bench" --arch tiny --seed 1 --batch 0 "$video" 2> "$out/err"; then
	echo "FAIL: --batch 0 accepted"; status=1
else
	rc=$?
	[ $rc -eq 2 ] && grep -q -- "--batch" "$out/err" || { echo "FAIL: --batch 0: status $rc, $(cat "$out/err")"; status=1; }
fi
rc=0
"$bench" --arch tiny --seed 1 --frames 3 --batch 2 --rss-at 2,5 "$video" 2> "$out/err" || rc=$?
[ $rc -eq 2 ] && grep -q -- "--rss-at 5 is after the last of the 4 timed frames" "$out/err" ||
	{ echo "FAIL: --rss-at past the timed frames: status $rc, $(cat "$out/err")"; status=1; }
for bad in "--pixel-format YUY2" "--transfer hdr10" "--primaries srgb"; do
	if "$bench" --arch tiny --seed 1 $bad "$video" 2> "$out/err"; then
		echo "FAIL: $bad accepted"; status=1
	else
		rc=$?
		[ $rc -eq 2 ] && grep -q -- "${bad% *}" "$out/err" || { echo "FAIL: $bad: status $rc, $(cat "$out/err")"; status=1; }
	fi
done
if "$bench" --arch tiny --seed 1 "$out/missing.avi" 2> "$out/err"; then
	echo "FAIL: a missing input accepted"; status=1
else
	grep -q "missing.avi" "$out/err" || { echo "FAIL: missing input: $(cat "$out/err")"; status=1; }
fi
# --dump-frames writes the frames of the inputs: without one it is an option error (it crashed
# when --save-weights, which needs no input, came with it).
rc=0
"$bench" --arch tiny --seed 1 --save-weights "$out/w.pth" --dump-frames "$out/frames" 2> "$out/err" || rc=$?
[ $rc -eq 2 ] && grep -q "no input given" "$out/err" ||
	{ echo "FAIL: --dump-frames without input: status $rc, $(cat "$out/err")"; status=1; }
# After "--", an input whose name starts with "--" is an input, not an option.
ln -s "$video" "$out/--video.avi"
(cd "$out" && "$bench" --arch tiny --seed 1 --threads 2 --frames 1 --warmup 0 --resize 160x120 --json -- --video.avi) \
	> "$out/dashes.json" 2> "$out/err" || { echo "FAIL: -- --video.avi: $(cat "$out/err")"; status=1; }
grep -q '"frame_size":\[160,120\]' "$out/dashes.json" || { echo "FAIL: -- --video.avi: $(cat "$out/dashes.json")"; status=1; }
# An empty file is named as one, without OpenCV's backends warning about it first.
: > "$out/empty.avi"
if "$bench" --arch tiny --seed 1 "$out/empty.avi" 2> "$out/err"; then
	echo "FAIL: an empty input accepted"; status=1
else
	grep -q "empty.avi': the file is empty" "$out/err" && ! grep -q "CRITICAL" "$out/err" ||
		{ echo "FAIL: empty input: $(cat "$out/err")"; status=1; }
fi
# A file that is no image nor video is named, even beside a video and under an image's name (a
# web page saved as .jpg opens as MJPEG, without a frame), without OpenCV's backends' warnings.
printf '<html>not found</html>\n' > "$out/page.jpg"
echo notes > "$out/notes.txt"
for input in page.jpg notes.txt; do
	if "$bench" --arch tiny --seed 1 --threads 2 --frames 2 --warmup 0 --resize 160x120 "$video" "$out/$input" \
		> /dev/null 2> "$out/err"; then
		echo "FAIL: $input, which holds no frame, accepted"; status=1
	else
		grep -q "cannot open '$out/$input': not an image OpenCV reads, nor a video it can decode" "$out/err" &&
			! grep -q "CRITICAL" "$out/err" || { echo "FAIL: $input: $(cat "$out/err")"; status=1; }
	fi
done
# Results that cannot be written (a full disk) are a failure, not a run that went well.
for output in "--json" ""; do
	rc=0
	# shellcheck disable=SC2086 # an option and its value are two words
	"$bench" --arch tiny --seed 1 --threads 2 --frames 1 --warmup 0 --resize 160x120 $output "$video" \
		> /dev/full 2> "$out/err" || rc=$?
	[ $rc -eq 1 ] && grep -q "^frcnn-bench: cannot write the results to standard output" "$out/err" ||
		{ echo "FAIL: results to a full disk ($output): status $rc, $(cat "$out/err")"; status=1; }
done
rc=0
"$bench" --arch tiny --seed 1 --threads 2 --frames 1 --warmup 0 --resize 160x120 --detections /dev/full "$video" \
	> /dev/null 2> "$out/err" || rc=$?
[ $rc -eq 1 ] && grep -q "^frcnn-bench: cannot write '/dev/full'" "$out/err" ||
	{ echo "FAIL: detections to a full disk: status $rc, $(cat "$out/err")"; status=1; }
exit $status

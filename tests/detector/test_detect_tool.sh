#!/usr/bin/env bash
# frcnn-detect as a user runs it (tiny model, seeded weights: no checkpoint needed).
# 1. A JPEG whose EXIF says to rotate it is read as stored, as torchvision's read_image and PIL
#    read it (and as COCO's boxes are given): the same size and detections as without the tag.
# 2. An image that cannot be read is named on stderr, the others are still printed, and the exit
#    status is 1.
# 3. Bad options (an unknown model or device, too many threads) exit with status 2 before
#    anything loads, with a message that names the option.
# 4. The image libraries' own messages become part of one line each: a JPEG cut short is run as
#    far as it goes, with a warning; a damaged PNG is an error naming it.
# 5. Detections that cannot be written (standard output on a full disk) exit with status 1, as
#    do --help (of every program) and an int8 calibration file that cannot be (before any image
#    runs on it).
# 6. Images the decoder would misread are refused, naming the image and why.
# 7. Stopped by a signal while a reader is slow, it stops between lines, never inside one; a
#    second signal stops it at once.
# 8. Each detection's class is named: COCO's names (torchvision's list) for a model of 91
#    classes, "class N" for other models, a labels file's with --labels (with or without the
#    background's line); a labels file that does not fit the model is an error naming it, and
#    no image is run.
# 9. --classes and --class-thresholds keep the detections the model gives at the lowest threshold
#    of the classes kept above their own threshold, up to 100 of them (the cap comes after the
#    filter); a class the labels do not name is an option error, found before the weights load
#    where no labels the model can have name it; a missing labels file is found before them too.
set -euo pipefail
detect=$1
python=${FRCNN_REF_PYTHON:-/usr/bin/python3}
if "$detect" --help | grep -q "no OpenCV"; then
	echo "SKIP: this frcnn-detect reads PPM images only (built without OpenCV)"
	exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$python" - "$out" <<'PY'
import sys
import numpy as np
from PIL import Image
import torchvision.io

out = sys.argv[1]
pixels = (np.random.default_rng(1).random((240, 320, 3)) * 255).astype("uint8")
image = Image.fromarray(pixels)
image.save(out + "/plain.jpg", quality=90)
exif = Image.Exif()
exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
image.save(out + "/rotated.jpg", quality=90, exif=exif.tobytes())
shape = tuple(torchvision.io.read_image(out + "/rotated.jpg").shape)
assert shape == (3, 240, 320), "torchvision reads the tagged JPEG as %s" % (shape,)
PY

status=0
"$detect" --arch tiny --seed 1 --score-threshold 0 --threads 2 "$out/plain.jpg" "$out/missing.jpg" \
	"$out/rotated.jpg" > "$out/detections.jsonl" 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] || { echo "FAIL: exit status $status with an unreadable image, not 1"; exit 1; }
grep -q "cannot read image '$out/missing.jpg': No such file or directory" "$out/stderr.txt" ||
	{ echo "FAIL: the unreadable image is not named:"; cat "$out/stderr.txt"; exit 1; }
"$python" - "$out/detections.jsonl" <<'PY'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
assert [line["image"].rsplit("/", 1)[1] for line in lines] == ["plain.jpg", "rotated.jpg"], lines
plain, rotated = lines
assert (rotated["width"], rotated["height"]) == (320, 240), \
    "the EXIF-tagged JPEG was read as %dx%d" % (rotated["width"], rotated["height"])
assert plain["detections"], "no detections to compare at threshold 0"
assert rotated["detections"] == plain["detections"], "the tagged JPEG gave other detections"
print("EXIF orientation: read as stored, %d detections equal" % len(plain["detections"]))
PY

# Damaged images (4).
"$python" - "$out" <<'PY'
import sys
out = sys.argv[1]
data = open(out + "/plain.jpg", "rb").read()
open(out + "/cut.jpg", "wb").write(data[: len(data) // 2])
open(out + "/damaged.png", "wb").write(b"\x89PNG\r\n\x1a\n" + b"x" * 40)
PY
status=0
"$detect" --arch tiny --seed 1 --threads 2 "$out/cut.jpg" "$out/damaged.png" > "$out/cut.jsonl" 2> "$out/stderr.txt" ||
	status=$?
[ "$status" -eq 1 ] || { echo "FAIL: exit status $status with a damaged image, not 1"; exit 1; }
[ "$(wc -l < "$out/cut.jsonl")" -eq 1 ] || { echo "FAIL: the cut JPEG gave no line:"; cat "$out/cut.jsonl"; exit 1; }
# At most one line of this program's per image, and none of the libraries' own.
if [ "$(grep -c "cut.jpg" "$out/stderr.txt")" -gt 1 ] ||
	! grep -q "^frcnn-detect: cannot read image '$out/damaged.png': it is damaged or not a whole image" "$out/stderr.txt" ||
	grep -v "^frcnn-detect: " "$out/stderr.txt" | grep -q -i -E "jpeg|png"; then
	echo "FAIL: not one line per damaged image:"; cat "$out/stderr.txt"; exit 1
fi
# A format the decoder lacks and a folder are told apart from damaged files.
printf 'GIF89a\001\000\001\000\200\000\000\377\377\377\000\000\000,\000\000\000\000\001\000\001\000\000\002\002D\001\000;' > "$out/dot.gif"
mkdir -p "$out/folder.png"
: > "$out/empty.jpg"
for case in "dot.gif:its contents are in no format OpenCV reads here" "folder.png:it is a folder" "empty.jpg:it is empty"; do
	status=0
	"$detect" --arch tiny --seed 1 --threads 2 "$out/${case%%:*}" > /dev/null 2> "$out/stderr.txt" || status=$?
	if [ "$status" -ne 1 ] || ! grep -q "^frcnn-detect: cannot read image '$out/${case%%:*}': ${case#*:}" "$out/stderr.txt"; then
		echo "FAIL: ${case%%:*} (exit status $status) not told as '${case#*:}':"; cat "$out/stderr.txt"; exit 1
	fi
done
# "-" is no file (standard input is not read), said so.
status=0
(cd "$out" && "$detect" --arch tiny --seed 1 --threads 2 - > /dev/null 2> "$out/stderr.txt") || status=$?
[ "$status" -eq 1 ] && grep -q "^frcnn-detect: cannot read image '-': no such file (standard input is not read" "$out/stderr.txt" ||
	{ echo "FAIL: '-' (exit status $status):"; cat "$out/stderr.txt"; exit 1; }
# With int8, which reads the first images for its calibration before running them, too.
"$detect" --arch tiny --seed 1 --threads 2 --precision int8 "$out/cut.jpg" > /dev/null 2> "$out/stderr.txt" || true
[ "$(grep -c "cut.jpg" "$out/stderr.txt")" -le 1 ] || { echo "FAIL: int8: the cut JPEG said twice:"; cat "$out/stderr.txt"; exit 1; }

expect_option_error() {
	local message=$1
	shift
	local status=0
	"$detect" "$@" "$out/plain.jpg" > /dev/null 2> "$out/stderr.txt" || status=$?
	[ "$status" -eq 2 ] || { echo "FAIL: '$*' exited with $status, not 2"; exit 1; }
	grep -qF "$message" "$out/stderr.txt" ||
		{ echo "FAIL: '$*' did not say '$message':"; cat "$out/stderr.txt"; exit 1; }
}
expect_option_error "unknown model 'foo'" --arch foo --seed 1
expect_option_error "option --device needs cpu, cuda or cuda:N, got 'gpu'" --arch tiny --seed 1 --device gpu
expect_option_error "option --threads needs an integer from 0 to 1024, got '5000'" --arch tiny --seed 1 --threads 5000
expect_option_error "option --num-classes needs an integer from 0 to 100000, got '99999999'" --arch tiny --seed 1 --num-classes 99999999
expect_option_error "option --pixel-aspect-ratio needs a ratio from 1:16 to 16:1, got '1000000:1'" --arch tiny --seed 1 \
	--pixel-aspect-ratio 1000000:1

# Weights whose model cannot be told: the file and the option to give are named.
"$python" -c 'import sys, torch; torch.save({"head.weight": torch.zeros(2, 2)}, sys.argv[1])' "$out/unknown.pth"
status=0
"$detect" --weights "$out/unknown.pth" "$out/plain.jpg" > /dev/null 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] && grep -q "^frcnn-detect: weights '$out/unknown.pth': cannot tell which model .*name the model explicitly with --arch$" \
	"$out/stderr.txt" || { echo "FAIL: weights of no known model: status $status:"; cat "$out/stderr.txt"; exit 1; }
# Weights of a known model with a tensor gone: the model they nearly are, and what differs.
"$python" -c 'import sys, torch; d = torch.load(sys.argv[1]); del d["backbone.body.layer1.0.conv1.weight"]; torch.save(d, sys.argv[2])' \
	"$(dirname "$0")/../data/shapes-tiny.pth" "$out/tiny.pth"
status=0
"$detect" --weights "$out/tiny.pth" "$out/plain.jpg" > /dev/null 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] && grep -q "with --arch; they come nearest to model 'tiny' with num_classes 4 (missing: backbone.body.layer1.0.conv1.weight): a damaged or edited checkpoint of it?$" \
	"$out/stderr.txt" || { echo "FAIL: weights nearly of a known model: status $status:"; cat "$out/stderr.txt"; exit 1; }

# 8. Class names.
shapes_weights="$(dirname "$0")/../data/shapes-tiny.pth"
printf 'square\ncircle\ntriangle\n' > "$out/no-background.labels"
printf 'bg\nbox\nring\nwedge\n' > "$out/with-background.labels"
"$detect" --arch tiny --seed 1 --score-threshold 0 --threads 2 "$out/plain.jpg" > "$out/coco-names.jsonl"
"$detect" --arch tiny --seed 1 --num-classes 5 --score-threshold 0 --threads 2 "$out/plain.jpg" > "$out/numbered.jsonl"
"$detect" --weights "$shapes_weights" --labels "$out/no-background.labels" --score-threshold 0 --threads 2 \
	"$out/plain.jpg" > "$out/no-background.jsonl"
"$detect" --weights "$shapes_weights" --labels "$out/with-background.labels" --score-threshold 0 --threads 2 \
	"$out/plain.jpg" > "$out/with-background.jsonl"
"$python" - "$out" <<'PY'
import json, sys
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
out = sys.argv[1]
coco = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
def detections(name):
    (line,) = [json.loads(text) for text in open(out + "/" + name)]
    found = line["detections"]
    assert found, "%s: no detections to name at threshold 0" % name
    assert all(list(d) == ["box", "label", "name", "score"] for d in found), found[0]
    return found
for d in detections("coco-names.jsonl"):
    assert d["name"] == coco[d["label"]], d
for d in detections("numbered.jsonl"):
    assert 1 <= d["label"] <= 4 and d["name"] == "class %d" % d["label"], d
for name, names in (("no-background.jsonl", ["__background__", "square", "circle", "triangle"]),
                    ("with-background.jsonl", ["bg", "box", "ring", "wedge"])):
    for d in detections(name):
        assert d["name"] == names[d["label"]], (name, d)
print("class names: COCO's, numbered, and from labels files with and without the background")
PY
printf 'square\ncircle\n' > "$out/short.labels"
status=0
"$detect" --weights "$shapes_weights" --labels "$out/short.labels" "$out/plain.jpg" > "$out/short.jsonl" 2> "$out/stderr.txt" ||
	status=$?
[ "$status" -eq 1 ] && [ ! -s "$out/short.jsonl" ] &&
	grep -q "^frcnn-detect: labels file '$out/short.labels' has 2 names but the model has 4 classes: give 4 names (background first) or 3 (without background)$" \
		"$out/stderr.txt" || { echo "FAIL: a labels file short of a name: status $status:"; cat "$out/stderr.txt" "$out/short.jsonl"; exit 1; }
status=0
"$detect" --weights "$shapes_weights" --labels "$out/missing.labels" "$out/plain.jpg" > /dev/null 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] && grep -q "^frcnn-detect: cannot open labels file '$out/missing.labels': No such file or directory$" \
	"$out/stderr.txt" || { echo "FAIL: a missing labels file: status $status:"; cat "$out/stderr.txt"; exit 1; }

# 9. Class filters, checked against the unfiltered detections at threshold 0 (the best 100 of
# them): a threshold above the lowest of those keeps only detections among them.
# Seed 4: untrained weights whose detections on the image are of several classes.
seeded=(--arch tiny --seed 4 --threads 2 "$out/plain.jpg")
"$detect" --score-threshold 0 "${seeded[@]}" > "$out/unfiltered.jsonl"
read -r kept_name kept_id global_threshold class_threshold < <("$python" - "$out/unfiltered.jsonl" <<'PY'
import json, sys
import collections
(line,) = [json.loads(text) for text in open(sys.argv[1])]
found = line["detections"]
assert len(found) == 100, "the seeded model gave %d detections at threshold 0, not its cap of 100" % len(found)
# The two classes of most detections, the first given by name (not N/A, COCO's name of several
# ids), the second by id.
counts = collections.Counter(d["label"] for d in found if d["name"] != "N/A")
assert len(counts) >= 2, "the seeded model's detections are of one class: %s" % counts
(first_label, _), (second_label, _) = counts.most_common(2)
first = next(d for d in found if d["label"] == first_label)
# Midpoints between neighbouring scores: a quarter of the detections, and three quarters.
scores = [d["score"] for d in found]
print(first["name"].replace(" ", "_"), second_label, (scores[24] + scores[25]) / 2, (scores[74] + scores[75]) / 2)
PY
)
kept_name=${kept_name//_/ }
"$detect" --score-threshold 0 --classes "$kept_name, $kept_id" "${seeded[@]}" > "$out/classes.jsonl"
"$detect" --score-threshold "$global_threshold" --class-thresholds "$kept_name=$class_threshold" "${seeded[@]}" \
	> "$out/class-thresholds.jsonl"
"$detect" --score-threshold "$global_threshold" --classes "$kept_id" --class-thresholds "$kept_id=$class_threshold" \
	"${seeded[@]}" > "$out/both.jsonl"
"$python" - "$out" "$kept_name" "$kept_id" "$global_threshold" "$class_threshold" <<'PY'
import json, sys
import numpy as np
out, name, other, high, low = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
def detections(file):
    (line,) = [json.loads(text) for text in open(out + "/" + file)]
    return line["detections"]
unfiltered = detections("unfiltered.jsonl")
(label,) = {d["label"] for d in unfiltered if d["name"] == name}
above = lambda d, threshold: np.float32(d["score"]) > np.float32(threshold)  # the model's comparison
# --classes at threshold 0: the two classes' detections, best first; those among the unfiltered
# first, then more of them that the cap of 100 had left out.
classes = detections("classes.jsonl")
ours = [d for d in unfiltered if d["label"] in (label, other)]
assert {d["label"] for d in classes} <= {label, other}, "--classes kept other classes"
assert classes[:len(ours)] == ours, "--classes: not the unfiltered detections of the classes"
assert len(ours) < len(classes) <= 100, \
    "--classes: %d detections, %d of them unfiltered: the cap came before the filter" % (len(classes), len(ours))
# --class-thresholds: the class above its own (lower) threshold, the others above --score-threshold.
expected = [d for d in unfiltered if above(d, low if d["label"] == label else high)]
assert detections("class-thresholds.jsonl") == expected, "--class-thresholds: not the expected detections"
assert any(d["label"] == label and not above(d, high) for d in expected), "no detection below --score-threshold kept"
# Both: one class, above its own threshold.
expected = [d for d in unfiltered if d["label"] == other and above(d, low)]
assert detections("both.jsonl") == expected, "--classes with --class-thresholds: not the expected detections"
print("class filters: %d of classes '%s' and %d (%d unfiltered), %d with a class threshold" %
      (len(classes), name, other, len(ours), len(detections("class-thresholds.jsonl"))))
PY
expect_filter_error() {
	local message=$1
	shift
	local status=0
	"$detect" "$@" "${seeded[@]}" > "$out/filter-error.jsonl" 2> "$out/stderr.txt" || status=$?
	[ "$status" -eq 2 ] && [ ! -s "$out/filter-error.jsonl" ] && grep -qxF "frcnn-detect: $message" "$out/stderr.txt" ||
		{ echo "FAIL: '$*': status $status, not 2 and '$message':"; cat "$out/stderr.txt"; exit 1; }
}
expect_filter_error "option --classes: unknown class 'unicorn': use a name from the labels or a class id" --classes "person, unicorn"
expect_filter_error "option --classes: class id 91 is out of range: the model has 91 classes (0..90)" --classes 91
expect_filter_error "option --class-thresholds: the score of 'person=1.5' is not a number from 0 to 1" --class-thresholds person=1.5
# The scores are checked before the weights are read: an option error where the weights are missing.
expect_filter_error "option --class-thresholds: 'person' is not class=score" \
	--class-thresholds person --weights "$out/no-such-weights.pth"
expect_filter_error "option --classes: unknown class 'person': use a name from the labels or a class id" \
	--num-classes 4 --labels "$out/with-background.labels" --classes person
# The class names too, against the names the model can have (COCO's or "class N" without a labels
# file, the labels file's with one), and the labels file itself.
expect_filter_error "option --classes: unknown class 'unicorn': use a name from the labels or a class id" \
	--classes "person, class 7, unicorn" --weights "$out/no-such-weights.pth"
expect_filter_error "option --class-thresholds: unknown class 'person': use a name from the labels or a class id" \
	--labels "$out/with-background.labels" --class-thresholds "box=0.5, person=0.5" --weights "$out/no-such-weights.pth"
status=0
"$detect" --labels "$out/missing.labels" --weights "$out/no-such-weights.pth" "$out/plain.jpg" > /dev/null 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] && grep -qxF "frcnn-detect: cannot open labels file '$out/missing.labels': No such file or directory" \
	"$out/stderr.txt" || { echo "FAIL: a missing labels file, before the weights: status $status:"; cat "$out/stderr.txt"; exit 1; }
# A preset's weights to download tell their class count (91) before the download: the labels
# file's count and the class ids are checked first too. The URL (of the preset's published file
# name, on a port nothing listens on) would fail to download, with an empty cache.
preset_url=http://127.0.0.1:1/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth
mkdir -p "$out/empty-cache"
expect_before_download() {
	local expected_status=$1 message=$2
	shift 2
	local status=0
	TORCH_HOME="$out/empty-cache" "$detect" --weights "$preset_url" "$@" --threads 2 "$out/plain.jpg" \
		> /dev/null 2> "$out/stderr.txt" || status=$?
	[ "$status" -eq "$expected_status" ] && grep -qxF "frcnn-detect: $message" "$out/stderr.txt" ||
		{ echo "FAIL: '$*' before the download: status $status, not $expected_status and '$message':"; cat "$out/stderr.txt"; exit 1; }
}
expect_before_download 1 "labels file '$out/with-background.labels' has 4 names but the model has 91 classes: give 91 names (background first) or 90 (without background)" \
	--labels "$out/with-background.labels"
expect_before_download 2 "option --classes: class id 91 is out of range: the model has 91 classes (0..90)" --classes "person, 91"
expect_before_download 2 "option --class-thresholds: class id 95 is out of range: the model has 91 classes (0..90)" \
	--class-thresholds "95=0.5"
# Without them it is the download that fails (so the checks above came before it).
status=0
TORCH_HOME="$out/empty-cache" "$detect" --weights "$preset_url" --classes "person, 90" --threads 2 "$out/plain.jpg" \
	> /dev/null 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] && grep -qF "$preset_url" "$out/stderr.txt" ||
	{ echo "FAIL: the download of $preset_url: status $status:"; cat "$out/stderr.txt"; exit 1; }

# 6. Images the decoder would not read as stored are refused, each in one line naming it: a PPM
# of maxval 1023 (read near black), a TIFF with an orientation tag (read turned), a TIFF with
# unassociated alpha (colours multiplied by it); and an image over OpenCV's pixel limit (its own
# exception, which named no file, on two lines). The plain image still runs.
"$python" - "$out" <<'PY'
import sys
import numpy as np
from PIL import Image
out = sys.argv[1]
words = np.full((24, 32, 3), 818, ">u2")
open(out + "/ten-bits.ppm", "wb").write(b"P6\n# a comment\n32 24\n1023\n" + words.tobytes())
pixels = (np.random.default_rng(2).random((24, 32, 3)) * 255).astype("uint8")
exif = Image.Exif()
exif[0x0112] = 6
Image.fromarray(pixels).save(out + "/turned.tif", exif=exif)
Image.fromarray(np.dstack([pixels, pixels[:, :, :1]])).save(out + "/alpha.tif")
Image.fromarray(pixels).save(out + "/plain.tif")
PY
status=0
OPENCV_IO_MAX_IMAGE_PIXELS=100 "$detect" --arch tiny --seed 1 --threads 2 "$out/ten-bits.ppm" "$out/turned.tif" \
	"$out/alpha.tif" "$out/plain.jpg" > "$out/refused.jsonl" 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] || { echo "FAIL: exit status $status with refused images, not 1"; exit 1; }
for expected in "cannot read image '$out/ten-bits.ppm' as it is stored: a PPM/PGM of maxval 1023 is not read as it is" \
	"cannot read image '$out/turned.tif' as it is stored: a TIFF with an orientation tag (6) would be read turned" \
	"cannot read image '$out/alpha.tif' as it is stored: a TIFF with an alpha channel would be read with its colours multiplied" \
	"cannot read image '$out/plain.jpg': it has more pixels than OpenCV reads (raise its limit with OPENCV_IO_MAX_IMAGE_PIXELS)"; do
	grep -qF "frcnn-detect: $expected" "$out/stderr.txt" || { echo "FAIL: not said: $expected"; cat "$out/stderr.txt"; exit 1; }
done
[ "$(wc -l < "$out/stderr.txt")" -eq 4 ] || { echo "FAIL: not one line per image:"; cat "$out/stderr.txt"; exit 1; }
"$detect" --arch tiny --seed 1 --threads 2 "$out/plain.tif" > /dev/null ||
	{ echo "FAIL: a TIFF without orientation or alpha was refused"; exit 1; }

# 5. Output that cannot be written (a full disk) is a failure, said once.
status=0
"$detect" --arch tiny --seed 1 --threads 2 "$out/plain.jpg" "$out/plain.jpg" > /dev/full 2> "$out/stderr.txt" || status=$?
[ "$status" -eq 1 ] && [ "$(wc -l < "$out/stderr.txt")" -eq 1 ] &&
	grep -q "^frcnn-detect: cannot write the detections to standard output" "$out/stderr.txt" ||
	{ echo "FAIL: output to a full disk: status $status:"; cat "$out/stderr.txt"; exit 1; }
# --help too, in every program beside this one.
for program in "$detect" "$(dirname "$detect")"/frcnn-{bench,eval,train}; do
	[ -x "$program" ] || continue
	status=0
	"$program" --help > /dev/full 2> "$out/stderr.txt" || status=$?
	[ "$status" -eq 1 ] && grep -q "cannot write the help to standard output" "$out/stderr.txt" ||
		{ echo "FAIL: $program --help to a full disk: status $status:"; cat "$out/stderr.txt"; exit 1; }
done

# An int8 calibration file that cannot be written where asked (its folder is missing) is a
# failure too, found before any image runs (no detections printed). A build without oneDNN
# refuses int8 itself, as status 1.
status=0
"$detect" --arch tiny --seed 1 --threads 2 --precision int8 --int8-calibration "$out/no-such-dir/tiny.int8.json" \
	"$out/plain.jpg" "$out/rotated.jpg" > "$out/int8.jsonl" 2> "$out/stderr.txt" || status=$?
if grep -q "has no oneDNN" "$out/stderr.txt"; then
	[ "$status" -eq 1 ] || { echo "FAIL: int8 refused with status $status, not 1"; exit 1; }
	echo "note: this build has no oneDNN: int8 refused, its calibration file not checked"
else
	[ "$status" -eq 1 ] && [ ! -s "$out/int8.jsonl" ] &&
		grep -q "^frcnn-detect: cannot write the 8-bit calibration '$out/no-such-dir/tiny.int8.json': folder '$out/no-such-dir' does not exist" "$out/stderr.txt" ||
		{ echo "FAIL: an int8 calibration that cannot be written: status $status, $(wc -l < "$out/int8.jsonl") lines:"; cat "$out/stderr.txt"; exit 1; }
fi

# 7. Stopped (SIGTERM, SIGINT) while a reader is slow, it stops between lines: every line it
#    wrote is whole JSON, and its status is the signal's; a second signal stops it at once.
"$python" - "$detect" "$out/plain.jpg" <<'PY'
import fcntl, json, os, signal, subprocess, sys, time
detect, image = sys.argv[1], sys.argv[2]
F_SETPIPE_SZ = 1031


def waiting_for_the_reader(pid):
    """Whether the program waits inside a write to the pipe (its reader reads nothing)."""
    try:
        with open("/proc/%d/wchan" % pid) as wchan:
            return "pipe" in wchan.read()
    except OSError:
        return False


def start():
    # 100 detections a line (threshold 0), a pipe of one page: the first line fills it, and
    # the program waits inside it for the reader, which reads nothing until told. The signals
    # as a shell's foreground job has them (not ignored).
    run = subprocess.Popen([detect, "--arch", "tiny", "--seed", "1", "--score-threshold", "0",
                            "--threads", "1"] + [image] * 200,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    fcntl.fcntl(run.stdout.fileno(), F_SETPIPE_SZ, 4096)
    deadline = time.time() + 120
    while not waiting_for_the_reader(run.pid):
        assert time.time() < deadline and run.poll() is None, "it never waited for the reader"
        time.sleep(0.05)
    return run


for stop in (signal.SIGTERM, signal.SIGINT):
    run = start()
    run.send_signal(stop)
    time.sleep(0.5)
    assert run.poll() is None, "%s: stopped inside a line" % stop.name
    output = run.stdout.read()
    status = run.wait(60)
    lines = output.split(b"\n")
    assert lines[-1] == b"", "%s: the output ends inside a line: ...%r" % (stop.name, output[-80:])
    for line in lines[:-1]:
        json.loads(line)
    assert 0 < len(lines) - 1 < 200, "%s: %d lines" % (stop.name, len(lines) - 1)
    assert status == -stop, "%s: status %d" % (stop.name, status)
    print("%s while a line waits for the reader: %d whole lines" % (stop.name, len(lines) - 1))
# A second signal while the line still waits stops it at once.
run = start()
run.send_signal(signal.SIGTERM)
time.sleep(0.5)
run.send_signal(signal.SIGTERM)
try:
    status = run.wait(30)
except subprocess.TimeoutExpired:
    run.kill()
    raise AssertionError("a second SIGTERM did not stop it")
assert status == -signal.SIGTERM, "second SIGTERM: status %d" % status
print("a second SIGTERM stops it at once")
PY
echo "PASS"

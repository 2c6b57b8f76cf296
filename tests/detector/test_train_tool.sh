#!/usr/bin/env bash
# frcnn-train runs end to end at a tiny size; no accuracy is checked.
# 1. Synthetic shapes, tiny preset, 3 iterations: the checkpoint loads in torch with
#    torchvision's key names (a ResNet-18 FPN Faster R-CNN) and 4 classes, the files --resume
#    needs are written, and the loss log has one line per iteration with finite losses.
# 2. --resume for a second epoch: the log goes on at iteration 3 and the weights change.
# 3. A two-image COCO file: the class count comes from the category ids (crowd boxes left out).
# 4. A missing COCO file, unknown or malformed options, a category id above --num-classes and an
#    annotation's bbox that is not four numbers exit non-zero with a one-line message naming the
#    problem; so do category id 0, an image whose id is not a number or is repeated, --coco-json
#    without --images, values that cannot train (a rate that is not a positive number, a
#    momentum or flip probability outside 0..1), conflicting options, an --output that is a
#    folder or cannot be created (before any training), fine-tuning from another model's
#    weights with an explicit --arch, and a last step whose weights overflow (nothing written).
#    Bad options exit with status 2, failures with 1.
# 5. Fine-tuning from torchvision's MobileNetV3 weights without --arch trains that model (not tiny);
#    --resume without --arch goes on with it; resuming a run whose epochs are done writes nothing.
# 6. A run resumed after its first epoch writes what the run that went on wrote, byte for byte
#    (shapes and COCO); a resume keeps the run's --trainable-layers or takes new ones; more layers
#    than the model has, too few classes, --lr-steps without the step schedule, a log that cannot
#    be written, COCO files without boxes, with a fractional category id or a missing image are
#    refused with one line naming the problem.
# 7. FILE.labels holds the class names, background first: the shapes', a COCO file's by category
#    id ("N/A" for ids it does not use, "class N" for an id with boxes but no name, line breaks
#    and tabs made spaces); frcnn-detect --labels and frcnndetect (where the plugin directory is
#    given) take it and name their detections by it.
set -euo pipefail
train=$1
detect=$2
plugin_dir=${3:-}
python=${FRCNN_REF_PYTHON:-/usr/bin/python3}
# Threads that sleep at barriers rather than spin (see docs/performance.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Small frames, few proposals and RoIs: each iteration takes a fraction of a second.
small=(--arch tiny --threads 1 --seed 1 --min-size 128 --max-size 160 --rpn-pre-nms 200 --rpn-post-nms 100
	--box-batch-size 64 --warmup 2)

"$train" "${small[@]}" --synthetic shapes --width 160 --height 120 --iterations 3 --epochs 1 --batch-size 2 \
	--output "$out/shapes.pth" --log "$out/shapes.jsonl"
cp "$out/shapes.pth" "$out/epoch1.pth"
cp "$out/shapes.jsonl" "$out/epoch1.jsonl"
"$train" "${small[@]}" --synthetic shapes --width 160 --height 120 --iterations 3 --epochs 2 --batch-size 2 \
	--resume "$out/shapes.pth" --output "$out/shapes.pth" --log "$out/shapes.jsonl"

# A COCO file: two images with a couple of boxes each, categories 1 and 5 (so 6 classes with the
# background), a crowd box of category 7 that training leaves out, and a degenerate box.
mkdir "$out/coco"
"$python" - "$out/coco" <<'PY'
import json, os, sys
import numpy as np
from PIL import Image
root = sys.argv[1]
rng = np.random.default_rng(0)
images, annotations = [], []
for i, (w, h) in enumerate(((160, 120), (144, 128))):
    pixels = np.full((h, w, 3), (40 + 60 * i, 90, 140), np.uint8)
    pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    boxes = [(10 + 5 * i, 12, 50, 40, 1), (80, 50 + 4 * i, 40, 60, 5)]
    for x, y, bw, bh, category in boxes:
        pixels[y:y + bh, x:x + bw] = (230, 40, 40) if category == 1 else (40, 230, 60)
        annotations.append({"id": len(annotations) + 1, "image_id": 10 + i, "bbox": [x, y, bw, bh],
                            "category_id": category, "area": bw * bh, "iscrowd": 0})
    name = "image%d.png" % i
    Image.fromarray(pixels).save(os.path.join(root, name))
    images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
annotations.append({"id": 90, "image_id": 10, "bbox": [0, 0, 30, 30], "category_id": 7, "area": 900, "iscrowd": 1})
annotations.append({"id": 91, "image_id": 11, "bbox": [5, 5, 0, 9], "category_id": 1, "area": 0, "iscrowd": 0})
json.dump({"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "c1"}, {"id": 5, "name": "green\tbox\n"}, {"id": 7, "name": "c7"}]},
          open(os.path.join(root, "instances.json"), "w"))
PY
"$train" "${small[@]}" --coco-json "$out/coco/instances.json" --images "$out/coco" --epochs 1 --batch-size 1 \
	--output "$out/coco.pth" --log "$out/coco.jsonl"

"$python" - "$out" <<'PY'
import json, math, os, sys
import torch
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d
out = sys.argv[1]
failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

# The tiny preset is a ResNet-18 FPN Faster R-CNN at a quarter of the width: torchvision's names.
reference = list(FasterRCNN(_resnet_fpn_extractor(resnet18(weights=None, norm_layer=FrozenBatchNorm2d), 5),
                            num_classes=4).state_dict())
losses = ("loss_box_reg", "loss_classifier", "loss_objectness", "loss_rpn_box_reg")

def load(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        failures.append(f"{name} was not written")
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:
        failures.append(f"{name} does not load: {e}")
        return None

def check_weights(name, classes):
    sd = load(name)
    if sd is None:
        return None
    check(list(sd) == reference, f"{name}: {len(sd)} keys, not torchvision's {len(reference)} "
          f"(differing: {sorted(set(sd) ^ set(reference))[:5]})")
    for key, shape in (("roi_heads.box_predictor.cls_score.weight", (classes, 256)),
                       ("roi_heads.box_predictor.bbox_pred.weight", (4 * classes, 256)),
                       ("backbone.body.conv1.weight", (16, 3, 7, 7))):
        check(key in sd and tuple(sd[key].shape) == shape,
              f"{name}: {key} {tuple(sd[key].shape) if key in sd else 'missing'}, expected {shape}")
    check(all(bool(torch.isfinite(v).all()) for v in sd.values() if v.is_floating_point()),
          f"{name}: non-finite weights")
    return sd

def check_log(name, epochs):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        failures.append(f"{name} was not written")
        return []
    lines = [json.loads(l) for l in open(path) if l.strip()]
    check([l.get("iteration") for l in lines] == list(range(len(epochs))),
          f"{name}: iterations {[l.get('iteration') for l in lines]}, expected 0..{len(epochs) - 1}")
    check([l.get("epoch") for l in lines] == epochs, f"{name}: epochs {[l.get('epoch') for l in lines]}")
    for l in lines:
        for key in losses:
            v = l.get(key)
            check(isinstance(v, float) and math.isfinite(v) and v >= 0, f"{name}: {key} {v} at {l.get('iteration')}")
        check(isinstance(l.get("lr"), float) and 0 < l["lr"] <= 0.01, f"{name}: lr {l.get('lr')}")
    return lines

def check_state(name, epoch, classes):
    path = os.path.join(out, name + ".json")
    state = json.load(open(path)) if os.path.exists(path) else None
    # tiny trains all 5 backbone layers; the random state is LibTorch's generator's, in hex.
    check(state is not None and {k: state.get(k) for k in ("arch", "epoch", "num_classes", "trainable_layers")} ==
          {"arch": "tiny", "epoch": epoch, "num_classes": classes, "trainable_layers": 5},
          f"{name}.json: {state}")
    random_state = state.get("random_state", "") if state else ""
    check(len(random_state) > 1000 and all(c in "0123456789abcdef" for c in random_state),
          f"{name}.json: random_state {random_state[:40]}")
    momentum = load(name + ".optimizer")
    # One buffer per trained parameter, named after it.
    check(momentum is not None and len(momentum) > 0 and
          all(k.startswith("momentum.") and k[len("momentum."):] in reference for k in momentum),
          f"{name}.optimizer: {None if momentum is None else list(momentum)[:3]}")

# 1. One epoch of 3 iterations; warm-up starts at a thousandth of --lr.
first = check_weights("epoch1.pth", 4)
lines = check_log("epoch1.jsonl", [0, 0, 0])
check(bool(lines) and abs(lines[0]["lr"] - 1e-5) < 1e-12, f"warm-up: lr {lines[0]['lr'] if lines else None} at 0")
# 2. Resumed for a second epoch: the log is appended to, the weights moved on.
resumed = check_weights("shapes.pth", 4)
check_log("shapes.jsonl", [0, 0, 0, 1, 1, 1])
check_state("shapes.pth", 2, 4)
if first is not None and resumed is not None:
    changed = [k for k in reference if k in first and k in resumed and not torch.equal(first[k], resumed[k])]
    check("roi_heads.box_predictor.cls_score.weight" in changed and "rpn.head.cls_logits.weight" in changed,
          f"resuming left the heads unchanged ({len(changed)} tensors changed)")
# 3. COCO: categories 1 and 5 make 6 classes (the crowd box of category 7 is left out); 2 images
#    at batch 1 are 2 iterations an epoch.
check_weights("coco.pth", 6)
check_log("coco.jsonl", [0, 0])
check_state("coco.pth", 1, 6)
# 7. The class names, one a line, background first.
def labels(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        failures.append(f"{name} was not written")
        return None
    return open(path, encoding="utf-8").read().split("\n")
shapes_names = open(os.path.join(os.environ["FRCNN_TEST_DATA"], "shapes.labels"), encoding="utf-8").read().split()
got = labels("shapes.pth.labels")
check(got == ["background"] + shapes_names + [""], f"shapes.pth.labels: {got}")
got = labels("coco.pth.labels")
check(got == ["__background__", "c1", "N/A", "N/A", "N/A", "green box", ""], f"coco.pth.labels: {got}")
for f in failures:
    print("FAIL:", f)
print("frcnn-train runs: %d checks failed" % len(failures))
sys.exit(1 if failures else 0)
PY

# Each error: its status (2 for a bad option, 1 for a failure), one line of message with the
# expected text, no checkpoint.
status=0
expect_error() {
	local expected_rc=$1 text=$2
	shift 2
	local rc=0
	"$train" "$@" --output "$out/error.pth" > /dev/null 2> "$out/err" || rc=$?
	local lines
	lines=$(wc -l < "$out/err")
	if [ $rc -eq 0 ]; then
		echo "FAIL: accepted: $*"; status=1
	elif [ $rc -ne "$expected_rc" ]; then
		echo "FAIL: $*: status $rc, not $expected_rc: $(cat "$out/err")"; status=1
	elif [ "$lines" -ne 1 ] || ! grep -qF -- "$text" "$out/err"; then
		echo "FAIL: $*: status $rc, expected one line with \"$text\", got: $(cat "$out/err")"; status=1
	elif [ -e "$out/error.pth" ]; then
		echo "FAIL: $*: wrote a checkpoint"; status=1
	fi
}
expect_error 1 "cannot open the COCO file '$out/coco/missing.json'" \
	--coco-json "$out/coco/missing.json" --images "$out/coco" --threads 1
expect_error 2 "unknown option --no-such-option" --synthetic shapes --no-such-option 3
expect_error 2 "option --batch-size needs an integer >= 1, got 'two'" --synthetic shapes --batch-size two
expect_error 1 "the dataset has category id 5 but --num-classes is 3" \
	--coco-json "$out/coco/instances.json" --images "$out/coco" --num-classes 3 --threads 1
# An annotation whose bbox is not four numbers.
for bbox in '[]' '[10, 10]' '[1, 2, "3", 4]'; do
	"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["annotations"][0]["bbox"] = json.loads(sys.argv[2]); json.dump(d, open(sys.argv[3], "w"))' \
		"$out/coco/instances.json" "$bbox" "$out/coco/bad-bbox.json"
	expect_error 1 "'$out/coco/bad-bbox.json': annotations[0] (id 1): its bbox is not [x, y, width, height]" \
		--coco-json "$out/coco/bad-bbox.json" --images "$out/coco" --threads 1
done
# COCO files with a background category, an image id that is not a number; no --images.
"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["annotations"][0]["category_id"] = 0; json.dump(d, open(sys.argv[2], "w"))' \
	"$out/coco/instances.json" "$out/coco/category0.json"
expect_error 1 "'$out/coco/category0.json': annotations[0] (id 1): category id 0 is not from 1 to 99999 (0 is the background)" \
	--coco-json "$out/coco/category0.json" --images "$out/coco" --threads 1
"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["images"][1]["id"] = "11"; json.dump(d, open(sys.argv[2], "w"))' \
	"$out/coco/instances.json" "$out/coco/string-id.json"
expect_error 1 "'$out/coco/string-id.json': images[1]: its id is not a whole number of 64 bits: \"11\"" \
	--coco-json "$out/coco/string-id.json" --images "$out/coco" --threads 1
# Numbers that a conversion would change: a fractional or huge id (cut to another image's), an
# iscrowd beyond an int, a box beyond a float (infinite: a loss that is not a number); and a
# value nested deeper than a message could show.
for case in 'd["images"][1]["id"] = 1.5:images[1]: its id is not a whole number of 64 bits: 1.5' \
	'd["images"][1]["id"] = 1e30:images[1]: its id is not a whole number of 64 bits: 1e+30' \
	'd["annotations"][0]["image_id"] = 18446744073709551615:annotations[0] (id 1): its image_id is not a whole number of 64 bits' \
	'd["annotations"][0]["iscrowd"] = 9.2e19:annotations[0] (id 1): its iscrowd is not a whole number of 64 bits: 9.2e+19' \
	'd["annotations"][0]["bbox"] = [0, 0, 1e39, 10]:annotations[0] (id 1): its bbox is not [x, y, width, height] (numbers a float holds)' \
	'd["annotations"][0]["bbox"] = [3e38, 0, 3e38, 10]:annotations[0] (id 1): its bbox ends beyond the numbers a float holds' \
	'd["annotations"][0]["id"] = "DEEP":is not valid JSON: nested deeper than 1000 levels'; do
	# "DEEP" becomes an array in 5000 arrays (Python's own json would not write it).
	"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); exec(sys.argv[2]); open(sys.argv[3], "w").write(json.dumps(d).replace("\"DEEP\"", "[" * 5000 + "]" * 5000))' \
		"$out/coco/instances.json" "${case%%:*}" "$out/coco/bad-number.json"
	expect_error 1 "${case#*:}" --coco-json "$out/coco/bad-number.json" --images "$out/coco" --threads 1
done
expect_error 2 "--coco-json needs --images DIR" --coco-json "$out/coco/instances.json" --threads 1
# A repeated image id would train one image's objects as background.
"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); d["images"].append(dict(d["images"][0])); json.dump(d, open(sys.argv[2], "w"))' \
	"$out/coco/instances.json" "$out/coco/repeated-id.json"
expect_error 1 "'$out/coco/repeated-id.json': images[2]: image id " \
	--coco-json "$out/coco/repeated-id.json" --images "$out/coco" --threads 1
# Values that cannot train: refused before anything loads.
for bad in "--lr nan:option --lr needs a number above 0 to 3.40282e+38, got 'nan'" \
	"--lr 1e39:option --lr needs a number above 0 to 3.40282e+38, got '1e39'" \
	"--lr -1:option --lr needs a number above 0 to 3.40282e+38, got '-1'" \
	"--momentum 1.5:option --momentum needs a number from 0 to 1, got '1.5'" \
	"--weight-decay -1:option --weight-decay needs a number >= 0, got '-1'" \
	"--hflip 5:option --hflip needs a number from 0 to 1, got '5'" \
	"--trainable-layers -1:option --trainable-layers needs an integer from 0 to 6, got '-1'" \
	"--min-size 9000:option --min-size needs an integer from 0 to 8192, got '9000'" \
	"--arch resnet:unknown model 'resnet'" \
	"extra:unexpected argument 'extra'"; do
	# shellcheck disable=SC2086 # the option and its value are two words
	expect_error 2 "${bad#*:}" --synthetic shapes ${bad%%:*}
done
expect_error 2 "--synthetic and --coco-json both given" --synthetic shapes --coco-json "$out/coco/instances.json" \
	--images "$out/coco"
expect_error 2 "--resume continues from the weights it wrote: leave --weights out" --synthetic shapes \
	--resume "$out/shapes.pth" --weights "$out/shapes.pth"
# A last step that makes the weights overflow (a rate near the largest float: a gradient above 1
# overflows): nothing is written (the epoch's progress line comes before the message).
rc=0
"$train" "${small[@]}" --synthetic shapes --width 160 --height 120 --iterations 1 --epochs 1 --batch-size 1 \
	--warmup 0 --schedule constant --lr 3.4e38 --output "$out/diverged.pth" > /dev/null 2> "$out/err" || rc=$?
if [ $rc -ne 1 ] || ! grep -q "^frcnn-train: training diverged in epoch 1: '.*' is no longer finite; lower --lr" "$out/err" ||
	compgen -G "$out/diverged.pth*" > /dev/null; then
	echo "FAIL: overflowing weights: status $rc, $(ls "$out"/diverged.pth* 2>/dev/null) $(cat "$out/err")"; status=1
fi

# A torchvision MobileNetV3 FPN model's weights (random, 5 classes).
"$python" -c 'import sys, torch, torchvision
m = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=5)
torch.save(m.state_dict(), sys.argv[1])' "$out/mobilenet.pth"
expect_error 1 "only 0 of the 330 tensors of the weights '$out/mobilenet.pth' fit model 'tiny': they are for 'fasterrcnn_mobilenet_v3_large_fpn'" \
	"${small[@]}" --synthetic shapes --weights "$out/mobilenet.pth"

# --output is checked before training: these would fail after an epoch otherwise.
mkdir "$out/folder"
for output in "$out/folder" "$out/no-such-folder/model.pth"; do
	rc=0
	"$train" "${small[@]}" --synthetic shapes --width 160 --height 120 --iterations 1 --epochs 1 --batch-size 1 \
		--output "$output" > /dev/null 2> "$out/err" || rc=$?
	if [ $rc -eq 0 ] || grep -q "^epoch" "$out/err" || ! grep -qF -- "--output" "$out/err"; then
		echo "FAIL: --output $output: status $rc, trained or no word of --output: $(cat "$out/err")"; status=1
	fi
done

# 5. Without --arch, the weights' model; resumed without --arch; nothing to do once done.
plain=(--threads 1 --seed 1 --min-size 128 --max-size 160 --rpn-pre-nms 200 --rpn-post-nms 100 --box-batch-size 64
	--warmup 2 --synthetic shapes --width 160 --height 120 --iterations 1 --batch-size 1)
state_of() { "$python" -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["arch"], s["epoch"], s["num_classes"])' "$1"; }
if ! "$train" "${plain[@]}" --epochs 1 --weights "$out/mobilenet.pth" --output "$out/tuned.pth" 2> "$out/err"; then
	echo "FAIL: fine-tuning without --arch: $(cat "$out/err")"; status=1
elif [ "$(state_of "$out/tuned.pth.json")" != "fasterrcnn_mobilenet_v3_large_fpn 1 4" ]; then
	echo "FAIL: fine-tuning without --arch trained $(state_of "$out/tuned.pth.json")"; status=1
elif ! "$train" "${plain[@]}" --epochs 2 --resume "$out/tuned.pth" --output "$out/tuned.pth" 2> "$out/err"; then
	echo "FAIL: resuming without --arch: $(cat "$out/err")"; status=1
elif [ "$(state_of "$out/tuned.pth.json")" != "fasterrcnn_mobilenet_v3_large_fpn 2 4" ]; then
	echo "FAIL: resuming without --arch gave $(state_of "$out/tuned.pth.json")"; status=1
else
	cp "$out/tuned.pth" "$out/tuned-before.pth"
	rc=0
	"$train" "${plain[@]}" --epochs 2 --resume "$out/tuned.pth" --output "$out/tuned.pth" 2> "$out/err" || rc=$?
	if [ $rc -ne 0 ] || ! grep -q "nothing to do" "$out/err" || grep -q "^wrote" "$out/err" ||
		! cmp -s "$out/tuned.pth" "$out/tuned-before.pth"; then
		echo "FAIL: resuming a finished run: status $rc, $(cat "$out/err")"; status=1
	fi
fi
# 6. Resuming is going on: 3 epochs in one run, and 1 epoch resumed for 2 more, write the same
#    bytes (weights, momentum, log: the lines a run stopped within an epoch logged of it are
#    written again), on shapes and on COCO (whose image order is shuffled every epoch). The
#    schedule is constant: a cosine or step schedule spans --epochs.
for data in shapes coco; do
	if [ $data = shapes ]; then
		set -- --synthetic shapes --width 160 --height 120 --iterations 3 --batch-size 2
	else
		set -- --coco-json "$out/coco/instances.json" --images "$out/coco" --batch-size 1
	fi
	"$train" "${small[@]}" "$@" --schedule constant --epochs 3 --output "$out/whole-$data.pth" \
		--log "$out/whole-$data.jsonl" 2> /dev/null
	"$train" "${small[@]}" "$@" --schedule constant --epochs 1 --output "$out/parts-$data.pth" \
		--log "$out/parts-$data.jsonl" 2> /dev/null
	# As if the run had been stopped within its second epoch: the lines it logged of it go.
	echo '{"epoch":1,"iteration":99,"lr":0.01}' >> "$out/parts-$data.jsonl"
	"$train" "${small[@]}" "$@" --schedule constant --epochs 3 --resume "$out/parts-$data.pth" \
		--output "$out/parts-$data.pth" --log "$out/parts-$data.jsonl" 2> /dev/null
	for file in .pth .pth.optimizer .jsonl; do
		cmp -s "$out/whole-$data$file" "$out/parts-$data$file" ||
			{ echo "FAIL: $data: 3 epochs in one run and 1 + 2 resumed differ in $file"; status=1; }
	done
done
# A run stopped while it wrote an epoch's files: after FILE.json said epoch 2 was done, before
# its checkpoint and momentum took their places (--resume puts them there), or before FILE.json
# said so (the files of epoch 2 are not taken). Either way the resumed run writes what the run
# that went on wrote.
set -- --synthetic shapes --width 160 --height 120 --iterations 3 --batch-size 2 --schedule constant
"$train" "${small[@]}" "$@" --epochs 2 --output "$out/two.pth" --log "$out/two.jsonl" 2> /dev/null
for stop in after-json before-json; do
	stopped=$out/stopped-$stop.pth
	"$train" "${small[@]}" "$@" --epochs 1 --output "$stopped" --log "$out/stopped-$stop.jsonl" 2> /dev/null
	cp "$out/two.pth" "$stopped.epoch2"
	cp "$out/two.pth.optimizer" "$stopped.optimizer.epoch2"
	if [ $stop = after-json ]; then
		cp "$out/two.pth.json" "$stopped.json"
		cp "$out/two.jsonl" "$out/stopped-$stop.jsonl"
	fi
	"$train" "${small[@]}" "$@" --epochs 3 --resume "$stopped" --output "$stopped" \
		--log "$out/stopped-$stop.jsonl" 2> "$out/err" || { echo "FAIL: $stop: resume failed: $(cat "$out/err")"; status=1; }
	for file in .pth .pth.optimizer .jsonl; do
		cmp -s "$out/whole-shapes$file" "$out/stopped-$stop$file" ||
			{ echo "FAIL: stopped $stop: 3 epochs in one run and the resumed run differ in $file"; status=1; }
	done
	leftover=$(ls "$stopped".*epoch* 2> /dev/null || true)
	[ -z "$leftover" ] || { echo "FAIL: stopped $stop: files of an epoch left: $leftover"; status=1; }
done
set --
# Resumed without --trainable-layers: the run's own (it took the preset's and failed); with
# more of them, the new layers start without momentum.
layers=("${small[@]}" --synthetic shapes --width 160 --height 120 --iterations 1 --batch-size 1)
"$train" "${layers[@]}" --epochs 1 --trainable-layers 0 --output "$out/frozen.pth" 2> /dev/null
rc=0
"$train" "${layers[@]}" --epochs 2 --resume "$out/frozen.pth" --output "$out/frozen.pth" 2> "$out/err" || rc=$?
[ $rc -eq 0 ] && grep -q '"trainable_layers": *0' "$out/frozen.pth.json" ||
	{ echo "FAIL: resuming a run of --trainable-layers 0: status $rc, $(tail -c 300 "$out/err")"; status=1; }
rc=0
"$train" "${layers[@]}" --epochs 3 --resume "$out/frozen.pth" --trainable-layers 3 --output "$out/frozen.pth" 2> "$out/err" ||
	rc=$?
[ $rc -eq 0 ] && grep -q '"trainable_layers": *3' "$out/frozen.pth.json" ||
	{ echo "FAIL: resuming with more --trainable-layers: status $rc, $(tail -c 300 "$out/err")"; status=1; }
# A momentum file of numbered buffers (earlier versions) of another count is refused, saying why.
"$python" -c 'import sys, torch
torch.save({"momentum.0": torch.zeros(4), "momentum.1": torch.zeros(4)}, sys.argv[1])' "$out/frozen.pth.optimizer"
expect_error 1 "holds the momentum of 2 parameters and the model trains" \
	"${layers[@]}" --epochs 4 --resume "$out/frozen.pth"
# Found before any training, naming the option: more layers than the model has, too few classes
# for the shapes, steps of another schedule, a log that cannot be written.
# (At the small sizes: a program that took them would not train for long.)
expect_error 2 "--trainable-layers 6: model 'tiny' has 0 to 5 trainable backbone layers" \
	"${layers[@]}" --epochs 1 --trainable-layers 6
expect_error 1 "--num-classes 2 is too few for the shapes" "${layers[@]}" --epochs 1 --num-classes 2
expect_error 2 "option --lr-steps needs an integer >= 1, got '-1'" "${layers[@]}" --epochs 1 --schedule step --lr-steps -1
expect_error 2 "--lr-steps is for --schedule step" "${layers[@]}" --epochs 1 --lr-steps 3
rc=0
"$train" "${layers[@]}" --epochs 1 --log /dev/full --output "$out/full-log.pth" > /dev/null 2> "$out/err" || rc=$?
[ $rc -eq 1 ] && grep -q "^frcnn-train: cannot write the log '/dev/full'" "$out/err" ||
	{ echo "FAIL: a log on a full disk: status $rc, $(cat "$out/err")"; status=1; }
# COCO files: no boxes at all (no class count to tell), a category id that is no whole number,
# an image missing from the folder (found before training, not when its turn comes).
coco_variant() {
	"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); exec(sys.argv[2]); json.dump(d, open(sys.argv[3], "w"))' \
		"$out/coco/instances.json" "$1" "$out/coco/$2.json"
}
coco_variant 'd["annotations"] = []' no-boxes
expect_error 1 "'$out/coco/no-boxes.json' has no boxes to train on" --coco-json "$out/coco/no-boxes.json" --images "$out/coco" --threads 1
coco_variant 'd["annotations"][0]["category_id"] = 1.0; d["annotations"][1]["category_id"] = 5.0' float-ids
rc=0
"$train" "${small[@]}" --coco-json "$out/coco/float-ids.json" --images "$out/coco" --epochs 1 --batch-size 1 \
	--output "$out/float-ids.pth" 2> "$out/err" || rc=$?
[ $rc -eq 0 ] && grep -q '"num_classes":6' "$out/float-ids.pth.json" ||
	{ echo "FAIL: category ids written as floats (1.0, 5.0): status $rc, $(tail -c 300 "$out/err")"; status=1; }
! grep -q "warning" "$out/err" || { echo "FAIL: a warning for a COCO file without mistakes: $(grep warning "$out/err")"; status=1; }
# Boxes of a category "categories" does not list, an annotation of an image "images" does not
# list: trained on as they are (the box; the annotation left out), each said once on stderr.
coco_variant 'd["categories"] = [c for c in d["categories"] if c["id"] != 5]; d["annotations"][0]["image_id"] = 999' unlisted
rc=0
"$train" "${small[@]}" --coco-json "$out/coco/unlisted.json" --images "$out/coco" --epochs 1 --batch-size 1 \
	--output "$out/unlisted.pth" 2> "$out/err" || rc=$?
[ $rc -eq 0 ] && grep -qF "frcnn-train: warning: '$out/coco/unlisted.json': boxes of category id 5, which \"categories\" does not list" "$out/err" &&
	grep -qF "frcnn-train: warning: '$out/coco/unlisted.json': 1 annotations of image ids that \"images\" does not list: left out" "$out/err" ||
	{ echo "FAIL: no warning of an unlisted category or image: status $rc, $(tail -c 400 "$out/err")"; status=1; }
# Category 5 has boxes and no name: the element's own name for it.
[ "$(sed -n 6p "$out/unlisted.pth.labels" 2>/dev/null)" = "class 5" ] ||
	{ echo "FAIL: unlisted.pth.labels does not name category 5 'class 5': $(cat "$out/unlisted.pth.labels" 2>&1)"; status=1; }
coco_variant 'd["annotations"][0]["category_id"] = 1.5' fraction
expect_error 1 "'$out/coco/fraction.json': annotations[0] (id 1): category id is not a whole number of 64 bits: 1.5" --coco-json "$out/coco/fraction.json" --images "$out/coco" --threads 1
coco_variant 'd["images"][1]["file_name"] = "missing.png"' missing-image
expect_error 1 "images[1]: cannot read '$out/coco/missing.png'" --coco-json "$out/coco/missing-image.json" --images "$out/coco" --threads 1
echo "frcnn-train errors: $([ $status -eq 0 ] && echo ok || echo failed)"

# frcnn-detect runs the COCO model with its labels file and names each detection by the file's
# line of its class (untrained, its scores are low: threshold 0 keeps some).
rc=0
"$detect" --weights "$out/coco.pth" --labels "$out/coco.pth.labels" --score-threshold 0 --threads 1 --min-size 128 \
	--max-size 160 "$out/coco/image0.png" > "$out/coco-detect.jsonl" 2> "$out/err" || rc=$?
named=$("$python" - "$out/coco-detect.jsonl" "$out/coco.pth.labels" <<'PY' 2>&1
import json, sys
names = open(sys.argv[2]).read().split("\n")
(line,) = [json.loads(text) for text in open(sys.argv[1])]
found = line["detections"]
assert found, "no detections"
wrong = [d for d in found if d["name"] != names[d["label"]]]
assert not wrong, "named otherwise than the labels file: %s" % wrong[:3]
print(" ".join(sorted({d["name"] for d in found})))
PY
) || rc=1
[ $rc -eq 0 ] && echo "frcnn-detect with FILE.labels: $named" ||
	{ echo "FAIL: frcnn-detect with coco.pth.labels: status $rc, $named, $(tail -c 400 "$out/err")"; status=1; }

# frcnndetect runs the COCO model with its labels file (the wrong number of names would be an
# error) and names its detections by it. Untrained, the model's scores are spread over the
# classes: threshold 0 keeps some.
if [ -n "$plugin_dir" ]; then
	rc=0
	GST_PLUGIN_PATH=$plugin_dir GST_REGISTRY=$out/registry.bin gst-launch-1.0 -q frcnnshapesrc num-buffers=2 ! \
		frcnndetect weights="$out/coco.pth" labels="$out/coco.pth.labels" threshold=0 ! \
		frcnnjson location="$out/coco-detections.jsonl" ! fakesink > "$out/err" 2>&1 || rc=$?
	names=$("$python" -c 'import json, sys; print(" ".join(sorted({d["label"] for line in open(sys.argv[1]) for d in json.loads(line)["detections"]})))' \
		"$out/coco-detections.jsonl" 2>&1) || rc=1
	case "$rc $names" in
	"0 "*c1* | "0 "*green\ box*) echo "frcnndetect with FILE.labels: $names" ;;
	*) echo "FAIL: frcnndetect with coco.pth.labels: status $rc, names '$names', $(tail -c 400 "$out/err")"; status=1 ;;
	esac
fi
exit $status

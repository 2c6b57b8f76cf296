#!/usr/bin/env bash
# Reproduces tests/data/shapes-tiny.pth, the shapes model the demo and the end-to-end test use:
# the `tiny` preset trained from scratch on 11,200 synthetic 320x240 scenes (seed 1; the tests use
# other seeds): 7 epochs of 400 iterations of batch 4, about 30 minutes on an idle core. (The
# shipped file's first epoch ran under a 12-epoch cosine schedule, then training was resumed
# with --epochs 7, so its learning rate in that epoch was slightly higher than this script's.)
#
# Usage: tests/data/make_shapes_model.sh [BUILD_DIR] [OUTPUT]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
output=${2:-$root/tests/data/shapes-tiny.pth}
"$build/detector/tools/frcnn-train" --synthetic shapes --arch tiny \
	--width 320 --height 240 --min-size 240 --max-size 320 \
	--epochs 7 --iterations 400 --batch-size 4 \
	--lr 0.01 --schedule cosine --warmup 200 \
	--rpn-pre-nms 600 --rpn-post-nms 300 --box-batch-size 128 \
	--seed 1 --threads 1 \
	--output "$output" --log "${output%.pth}-loss.jsonl"

#!/usr/bin/env bash
# The README's main command: runs the detector on a real photo and prints what it found.
# With torchvision's COCO weights in the torch hub cache (or downloadable) it uses them; otherwise
# it runs the small `tiny` model with seeded random weights, which shows the whole path working
# but detects nothing meaningful (the trained synthetic-shapes demo replaces this).
set -euo pipefail
build=${1:-build}
photo=/usr/lib/python3/dist-packages/skimage/data/astronaut.png
tool="$build/detector/tools/frcnn-detect"
cache="${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub/checkpoints"
if [ -f "$cache/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" ]; then
	echo "Detecting objects in $photo with torchvision's COCO weights:"
	"$tool" --weights coco "$photo"
else
	echo "COCO weights not in $cache: running the tiny model with random weights on $photo"
	"$tool" --arch tiny --seed 0 --score-threshold 0.0 "$photo"
fi

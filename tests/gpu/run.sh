#!/bin/bash
# The GPU check, in one go on a machine with an NVIDIA GPU, a CUDA toolkit (nvcc) and a Python
# whose torch has CUDA (GStreamer and OpenCV not needed):
#   1. builds libfrcnn, frcnn-bench and the GPU tests against that torch's LibTorch;
#   2. runs the GPU tests (tests/gpu/test_gpu.cpp): CUDA ops against CPU ops, the model's batched
#      steps against the CPU's and the waits for the device in a batch, pre-processing of every
#      pixel format, GPU fp32 against CPU fp32 detections, fp16 against fp32;
#   3. measures throughput at 800x1333 (batch 1/4/8, fp32/fp16) next to torchvision eager and
#      autocast on the same GPU, in the same run (tests/gpu/throughput.py);
#   4. where GStreamer is installed, or copied next to it by `make gpu-inputs`
#      (build-gpu-inputs/gstreamer, or GST_BUNDLE=DIR), builds the plugin and runs frcnndetect on
#      the GPU through gst-launch-1.0 against the CPU, and frcnn-detect on the GPU against the CPU
#      (tests/gpu/element_check.py; without GStreamer, frcnn-detect only).
# Everything it prints goes to OUTDIR/gpu-check.log; the test report, the throughput table and
# the element check's report land beside it (a few MB; the frames and weights it makes go to
# BUILD/inputs). Usage: tests/gpu/run.sh [--no-throughput] [OUTDIR]   (PYTHON=... to pick one)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
THROUGHPUT=1
if [ "${1:-}" = "--no-throughput" ]; then
	THROUGHPUT=0
	shift
fi
OUTDIR=${1:-$ROOT/build-gpu/check}
BUILD=${BUILD:-$ROOT/build-gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu-check.log
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1
START=$(date +%s)
failures=()

step() { echo; echo "== $1 ($(( $(date +%s) - START )) s)"; }
fail() { echo "FAILED: $1"; failures+=("$1"); }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || fail "nvidia-smi"
command -v nvcc >/dev/null || export PATH=$PATH:/usr/local/cuda/bin
nvcc --version | tail -1
g++ --version | head -1
TORCH_DIR=$($PY -c 'import os, torch; print(os.path.dirname(torch.__file__))') || { fail "no torch in $PY"; exit 1; }
$PY -c 'import torch, torchvision; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), "torchvision", torchvision.__version__, "GPU", torch.cuda.get_device_name(0))'
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')
echo "LibTorch: $TORCH_DIR, kernels for sm_$ARCH"

step "build"
# GStreamer for the plugin: the system's, else a copy made by tests/gpu/bundle-gstreamer.sh.
GST_BUNDLE=${GST_BUNDLE:-$ROOT/build-gpu-inputs/gstreamer}
if ! pkg-config --exists gstreamer-video-1.0 2>/dev/null && [ -f "$GST_BUNDLE/env.sh" ]; then
	. "$GST_BUNDLE/env.sh"
	echo "GStreamer from $GST_BUNDLE"
fi
# The C++ ABI the torch package was built with (its libraries' std::string symbols depend on it).
ABI=$($PY -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" -Dlibtorch="$TORCH_DIR" -Dcuda=enabled -Dgpu_arch="$ARCH" \
		-Dgstreamer=auto -Dtests=disabled -Dbuildtype=release \
		-Dcpp_args="-D_GLIBCXX_USE_CXX11_ABI=$ABI" || { fail "meson setup"; exit 1; }
fi
# -k 0: every compile error in one go; whatever did build still runs below.
TARGETS=(tests/gpu/test_gpu detector/tools/frcnn-bench detector/tools/frcnn-detect)
grep -q 'gst/libgstfrcnn.so:' "$BUILD/build.ninja" && TARGETS+=(gst/libgstfrcnn.so)
ninja -C "$BUILD" -j "$(nproc)" -k 0 "${TARGETS[@]}" || fail "build"
[ -x "$BUILD/tests/gpu/test_gpu" ] || [ -x "$BUILD/detector/tools/frcnn-bench" ] || exit 1

step "inputs"
PHOTOS=$BUILD/inputs/photos
FRAMES=$BUILD/inputs/frames-1333x800
mkdir -p "$PHOTOS" "$FRAMES"
# Photos bundled with scikit-image (no download), as binary PPM; and the same photos resized to
# 1333x800 for the throughput table (no resize in the model then: 800x1333 inputs).
$PY - "$PHOTOS" "$FRAMES" <<'PYEOF' || fail "inputs"
import sys
import numpy as np
from PIL import Image
import skimage.data as data
photos, frames = sys.argv[1], sys.argv[2]
written = 0
for name in ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"]:
    try:
        img = getattr(data, name)()
    except Exception as e:
        print(f"skipped {name}: {e}")
        continue
    if img.ndim != 3 or img.shape[2] != 3:
        continue
    img = np.ascontiguousarray(img.astype(np.uint8))
    Image.fromarray(img).save(f"{photos}/{name}.ppm")
    Image.fromarray(img).resize((1333, 800), Image.BILINEAR).save(f"{frames}/{name}.ppm")
    print(f"{name}: {img.shape[1]}x{img.shape[0]}")
    written += 1
sys.exit(0 if written >= 3 else 1)
PYEOF

step "GPU tests"
# Without OpenCV the build has no shapes generator: the test reads the frames from here instead
# (frcnnshapesrc seed=90210 scene-frames=1 num-buffers=32, 320x240 RGB, through pnmenc: what
# `make gpu-inputs` writes on a machine with the whole build).
SHAPES_FRAMES=${FRCNN_SHAPES_FRAMES:-$ROOT/build-gpu-inputs/shapes}
# torchvision's COCO weights, if this machine has them, for the fp16 check on photos.
COCO=${FRCNN_COCO_WEIGHTS:-${TORCH_HOME:-$HOME/.cache/torch}/hub/checkpoints/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth}
[ -f "$COCO" ] && export FRCNN_COCO_WEIGHTS=$COCO || echo "no COCO weights at $COCO: the fp16 check on photos is skipped"
if [ -x "$BUILD/tests/gpu/test_gpu" ]; then
	FRCNN_PHOTOS=$PHOTOS FRCNN_TEST_DATA=$ROOT/tests/data FRCNN_SHAPES_FRAMES=$SHAPES_FRAMES \
		"$BUILD/tests/gpu/test_gpu" --gtest_output="xml:$OUTDIR/test_gpu.xml" || fail "GPU tests"
fi

if [ "$THROUGHPUT" = 1 ] && [ -x "$BUILD/detector/tools/frcnn-bench" ]; then
	step "throughput"
	WEIGHTS=$BUILD/inputs/resnet50-seeded.pth
	# Seeded weights with frozen statistics calibrated on the frames: proposals and detections
	# like a trained model's; the same file for frcnn-bench and torchvision.
	"$BUILD/detector/tools/frcnn-bench" --arch fasterrcnn_resnet50_fpn --seed 0 \
		--save-weights "$WEIGHTS" "$FRAMES"/*.ppm || fail "weights"
	$PY "$ROOT/tests/gpu/throughput.py" --bench "$BUILD/detector/tools/frcnn-bench" \
		--torchvision-script "$ROOT/tests/reference/bench_torchvision.py" --python "$PY" \
		--frames "$FRAMES" --weights "$WEIGHTS" --out "$OUTDIR" --rounds 1 || fail "throughput"
	[ -f "$OUTDIR/throughput.md" ] && cat "$OUTDIR/throughput.md"

	step "where the time goes (fp16, batch 8, channels-last)"
	# Wall time of each top-level operator as the host sees it: on the GPU, the operators that
	# wait for it (copies to the host, nonzero) carry the time of the work queued before them.
	"$BUILD/detector/tools/frcnn-bench" --arch fasterrcnn_resnet50_fpn --weights "$WEIGHTS" \
		--device cuda --precision fp16 --channels-last --batch 8 --frames 16 --warmup 2 \
		--profile "$FRAMES"/*.ppm || fail "profile"
fi

step "element and frcnn-detect (through gst-launch-1.0 and the program)"
ELEMENT_RAN=0
ELEMENT_ARGS=()
[ -x "$BUILD/detector/tools/frcnn-detect" ] && ELEMENT_ARGS+=(--detect-tool "$BUILD/detector/tools/frcnn-detect")
if [ -f "$BUILD/gst/libgstfrcnn.so" ] && command -v gst-launch-1.0 >/dev/null; then
	ELEMENT_ARGS+=(--plugin-path "$BUILD/gst")
	if [ "$THROUGHPUT" = 1 ] && [ -f "${WEIGHTS:-}" ]; then
		ELEMENT_ARGS+=(--throughput-frames "$FRAMES" --throughput-weights "$WEIGHTS"
			       --bench-json "$OUTDIR/throughput.json")
	fi
	ELEMENT_RAN=1
else
	echo "NOT RUN: the element (no GStreamer here: install it, or copy build-gpu-inputs/ from a" \
	     "machine where 'make gpu-inputs' ran, so the plugin was not built)"
	ELEMENT_ARGS+=(--no-element)
fi
if [ "$ELEMENT_RAN" = 1 ] || [ -x "$BUILD/detector/tools/frcnn-detect" ]; then
	$PY "$ROOT/tests/gpu/element_check.py" --frames "$SHAPES_FRAMES" \
		--weights "$ROOT/tests/data/shapes-tiny.pth" --device cuda --out "$OUTDIR/element" \
		"${ELEMENT_ARGS[@]}" || fail "element"
	[ -f "$OUTDIR/element/element_check.md" ] && cat "$OUTDIR/element/element_check.md"
fi

step "summary"
if [ -f "$OUTDIR/test_gpu.xml" ]; then
	grep -o '<testsuites [^>]*>' "$OUTDIR/test_gpu.xml" | head -1
	grep -B1 '<failure' "$OUTDIR/test_gpu.xml" | grep -o 'name="[^"]*"' || true
fi
echo "wall time $(( $(date +%s) - START )) s"
if [ ${#failures[@]} -gt 0 ]; then
	echo "GPU check FAILED: ${failures[*]}"
	exit 1
fi
[ "$ELEMENT_RAN" = 1 ] && echo "GPU check passed" || echo "GPU check passed, without the element check"

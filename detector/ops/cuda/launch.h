// SPDX-License-Identifier: BSD-3-Clause
// Launchers of the plain CUDA kernels. They take raw device pointers and a cudaStream_t passed
// as void *, and include neither LibTorch nor the CUDA headers, so that the .cu files compile
// with nvcc alone (also in a CPU-only build, where nothing calls them) and the C++ glue that
// calls them compiles with the host compiler. Each returns 0 (cudaSuccess) or the cudaError_t
// of the launch; error_string() names it.
#pragma once

#include <cstdint>

#include "../transfer.h"
#include "../yuv_layout.h"

namespace frcnn::cuda {

using Stream = void *; // cudaStream_t

enum class Scalar : int { Float = 0, Double = 1, Half = 2 };

const char *error_string(int error);

// --- nms --------------------------------------------------------------------------------------
// Greedy NMS over boxes [n,4] (x1,y1,x2,y2, Float or Double). categories [n] (int64)
// restricts suppression to boxes of the same category: the boxes of a category are then
// contiguous, sorted by decreasing score, and the categories are settled in parallel. nullptr
// puts all boxes in one category, sorted by decreasing score. max_per_category, with categories:
// 0, or a bound on the boxes of any one category, which the caller guarantees (a smaller bound
// than the truth gives wrong results); the mask then holds only the words a category can reach.
// mask is scratch of n * nms_steps::mask_span(n, max_per_category) words (nms_steps.h); keep [n]
// receives 1 for each kept box, 0 for the others. The IoU arithmetic is the CPU kernel's,
// operation by operation, so both keep the same boxes.
int nms(const void *boxes, Scalar scalar, const int64_t *categories, int64_t n, int64_t max_per_category,
	double threshold, uint64_t *mask, uint8_t *keep, Stream stream);

// --- roi_align --------------------------------------------------------------------------------
struct RoIAlignShape {
	int64_t batch_size, channels, height, width; // of the input
	int64_t num_rois;
	int64_t pooled_height, pooled_width;
	double spatial_scale;
	int64_t sampling_ratio;
	bool aligned;
	bool channels_last = false; // input stored NHWC (forward only); the output is NCHW either way
};

// input [N,C,H,W] contiguous in `scalar`; rois [K,5] in `roi_scalar` (Float or Double; a Half
// input takes Float rois so that coordinates keep their precision); output [K,C,PH,PW] in
// `scalar`. RoIs whose batch index is outside 0..N-1 give zeros.
int roi_align_forward(const void *input, Scalar scalar, const void *rois, Scalar roi_scalar,
		      const RoIAlignShape &shape, void *output, Stream stream);

// grad [K,C,PH,PW] contiguous, Float or Double; grad_input [N,C,H,W] of the same type, zeroed by
// the caller, receives the sums (atomic adds).
int roi_align_backward(const void *grad, Scalar scalar, const void *rois, const RoIAlignShape &shape,
		       void *grad_input, Stream stream);

// --- frame pre-processing ---------------------------------------------------------------------
enum class FrameLayout : int { Packed = 0, Yuv = 1 };

// One frame in device memory.
struct FrameDesc {
	FrameLayout layout;
	int width, height;
	const uint8_t *planes[3];
	int64_t strides[3];	// bytes per row of each plane
	int bytes_per_pixel;	// Packed: 1, 3 or 4
	int rgb_offsets[3];	// Packed: byte offsets of R, G and B in a pixel
	YuvLayout yuv;		// Yuv: where the samples lie
	YuvToRgb colours;	// Yuv: their colours
	// HDR video: the table of its transfer function (transfer.h), in device memory; null: SDR.
	const float *transfer_table;
	// Wide-gamut video: the conversion of its colours to BT.709's (transfer.h), in device
	// memory, and its table of the light of the frame's transfer (in it); null: BT.709's
	// primaries (the transfer's table then maps HDR video).
	const PrimariesConversion *primaries;
	const float *primaries_light;
};

// Writes one image of the model's batch: out is [3, padded_height, padded_width] (Float or
// Half) and receives the frame converted to RGB in 0..1, normalised with mean/std, resized to
// resized_height x resized_width with bilinear interpolation (align_corners = false, the
// scale in/out, as torch's interpolate with a size) and zero padded. The arithmetic is the CPU
// path's (frame_to_tensor, then normalise, then interpolate). One launch per frame.
int preprocess_frame(const FrameDesc &frame, const float mean[3], const float std[3],
		     int64_t resized_height, int64_t resized_width, void *out, Scalar out_scalar,
		     int64_t padded_height, int64_t padded_width, Stream stream);

} // namespace frcnn::cuda

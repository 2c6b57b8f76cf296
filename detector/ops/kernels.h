// SPDX-License-Identifier: BSD-3-Clause
// Device kernels behind frcnn::ops. The public functions in boxes.cpp validate their arguments
// and pick a kernel by device; the kernels assume validated, contiguous inputs.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "frcnn/detector.h"

namespace frcnn::ops::detail {

// The pixels of a frame that are read: the rows flagged in `rows` (one flag per row), and in
// them the columns `columns` (ascending).
struct PixelsRead {
	std::vector<uint8_t> rows;
	std::vector<int64_t> columns;
};

// A frame's bytes (a valid view) as its normalised image: `out` (contiguous float [3, height,
// width]) receives the frame as RGB in 0..1 less mean, over std. The same bits as frame_to_tensor
// and transform_images' normalisation, in one pass over the frame; rows in parallel. With
// `read`, only those pixels are converted (what a resize that reads no others needs); the rest
// of `out` is left as it is.
void normalised_frame_cpu(const FrameView &frame, const float mean[3], const float std[3], torch::Tensor &out,
			  const PixelsRead *read = nullptr);

// Suppression on boxes [N,4] (x1,y1,x2,y2) with scores [N], same dtype. Returns kept indices
// (int64) in order of decreasing score, ties broken by index.
torch::Tensor nms_cpu(const torch::Tensor &boxes, const torch::Tensor &scores,
		      double iou_threshold);

// Suppression done independently within each category: idxs [N] int64. Returns a bool mask [N]
// of the kept boxes; the caller orders them.
torch::Tensor nms_per_category_cpu(const torch::Tensor &boxes, const torch::Tensor &scores,
				   const torch::Tensor &idxs, double iou_threshold);

// ops::nms_mask_by_category for a caller that knows how many boxes one category has at most
// (max_per_category > 0; 0: unknown): on CUDA the suppression mask then holds, for each box,
// only the words that its category can reach, which cuts the memory and work of a large
// batch of small categories (the proposals of a batch, one category per image and level; the
// detections of a batch, one per image and class). The caller guarantees the bound: with a
// category larger than it, CUDA keeps the wrong boxes. The CPU kernel ignores it.
torch::Tensor nms_mask_by_category_within(const torch::Tensor &boxes, const torch::Tensor &scores,
					  const torch::Tensor &idxs, double iou_threshold, int64_t max_per_category);

// The offsets ops::batched_nms gives the boxes of one call, computed for the boxes of a batch of
// images at once, one call per image: `image` (int64 [N]) the image of each box, `counted` (bool
// [N]; undefined: all) the boxes that image's call would have had, and for each image the
// largest coordinate of its counted boxes (`largest`, the boxes' dtype) and their count
// (`counts`), which the caller computes in its own layout. Where that call takes torchvision's
// offset strategy on the CPU (4 x its boxes at most 4000), a counted box's offset is
// idxs * (largest + 1); elsewhere 0. Added to the boxes before a
// per-category NMS whose categories keep each image's idxs apart, they make it round its IoUs as
// the per-image calls on the CPU do, so that both keep the same boxes. The CPU's rule on every
// device: the batched forms run on CUDA and are to keep what the CPU keeps (torchvision on CUDA
// offsets up to 20000, so that its own GPU and CPU results can differ by such a rounding). No
// wait for the device.
torch::Tensor batched_nms_offsets(const torch::Tensor &idxs, const torch::Tensor &image, const torch::Tensor &counted,
				  const torch::Tensor &largest, const torch::Tensor &counts);

torch::Tensor roi_align_forward_cpu(const torch::Tensor &input, const torch::Tensor &rois,
				    double spatial_scale, int64_t pooled_height,
				    int64_t pooled_width, int64_t sampling_ratio, bool aligned);

// The same pooling written into rows `rows` (int64 [K], contiguous, on the CPU) of `output`
// (contiguous, input's dtype); the other rows are left as they are.
void roi_align_forward_cpu_into(torch::Tensor &output, const torch::Tensor &rows,
				const torch::Tensor &input, const torch::Tensor &rois,
				double spatial_scale, int64_t pooled_height, int64_t pooled_width,
				int64_t sampling_ratio, bool aligned);

// Gradient with respect to the input of roi_align_forward_cpu, shaped
// [batch_size, channels, height, width].
torch::Tensor roi_align_backward_cpu(const torch::Tensor &grad, const torch::Tensor &rois,
				     double spatial_scale, int64_t pooled_height,
				     int64_t pooled_width, int64_t batch_size, int64_t channels,
				     int64_t height, int64_t width, int64_t sampling_ratio,
				     bool aligned);

} // namespace frcnn::ops::detail

// The same operations on CUDA tensors (ops/cuda/ops_cuda.cpp), built only against a CUDA-enabled
// LibTorch (FRCNN_HAVE_CUDA). They run on the current CUDA stream of the tensors' device.
namespace frcnn::ops::detail {

torch::Tensor nms_cuda(const torch::Tensor &boxes, const torch::Tensor &scores,
		       double iou_threshold);
// max_per_category: as nms_mask_by_category_within takes it.
torch::Tensor nms_per_category_cuda(const torch::Tensor &boxes, const torch::Tensor &scores,
				    const torch::Tensor &idxs, double iou_threshold, int64_t max_per_category = 0);
// input may be half with float rois (pooled features of an fp16 model, coordinates in float).
torch::Tensor roi_align_forward_cuda(const torch::Tensor &input, const torch::Tensor &rois,
				     double spatial_scale, int64_t pooled_height,
				     int64_t pooled_width, int64_t sampling_ratio, bool aligned);
torch::Tensor roi_align_backward_cuda(const torch::Tensor &grad, const torch::Tensor &rois,
				      double spatial_scale, int64_t pooled_height,
				      int64_t pooled_width, int64_t batch_size, int64_t channels,
				      int64_t height, int64_t width, int64_t sampling_ratio,
				      bool aligned);

} // namespace frcnn::ops::detail

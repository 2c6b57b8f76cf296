// SPDX-License-Identifier: BSD-3-Clause
// Box operators with the semantics of torchvision.ops (0.14). Like LibTorch's operators they report
// bad inputs (shapes, types, devices) as c10::Error, not frcnn::Error.
#pragma once

#include <torch/types.h>

namespace frcnn::ops {

// Indices of the boxes kept by non-maximum suppression, sorted by decreasing score. A box is
// suppressed when its IoU with a kept, higher-scoring box is strictly greater than iou_threshold.
// boxes: float [N,4] (x1,y1,x2,y2), scores: [N].
torch::Tensor nms(const torch::Tensor &boxes, const torch::Tensor &scores, double iou_threshold);

// NMS done independently per category idxs[i] (int64 [N]); same result order as torchvision.
torch::Tensor batched_nms(const torch::Tensor &boxes, const torch::Tensor &scores,
			  const torch::Tensor &idxs, double iou_threshold);

// NMS done independently per category idxs[i] on the boxes' own coordinates (batched_nms switches
// to a coordinate-offset trick for small inputs, as torchvision does, which rounds IoUs
// differently). Kept indices by decreasing score, equal scores by index. On CUDA one launch
// handles every category.
torch::Tensor nms_by_category(const torch::Tensor &boxes, const torch::Tensor &scores,
			      const torch::Tensor &idxs, double iou_threshold);

// The boxes nms_by_category keeps, as a mask (bool [N]) in the boxes' order. Nothing waits for
// the device: on CUDA the mask is computed on the current stream and the host goes on, where
// the list of indices needs the kept count on the host first.
torch::Tensor nms_mask_by_category(const torch::Tensor &boxes, const torch::Tensor &scores,
				   const torch::Tensor &idxs, double iou_threshold);

// RoIAlign (Mask R-CNN). input [N,C,H,W]; rois [K,5] (batch index, x1, y1, x2, y2) in input
// coordinates before spatial_scale. Differentiable with respect to input. A batch index that is
// not one of input's images (or not a number) is refused on the CPU; on CUDA, where checking
// would wait for the device, its RoI pools zeros.
torch::Tensor roi_align(const torch::Tensor &input, const torch::Tensor &rois, double spatial_scale,
			int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
			bool aligned);

// roi_align of `rois` written into rows `rows` (int64 [K]) of `output` ([M, C, pooled_height,
// pooled_width], contiguous, input's dtype and device); the other rows are left as they are. For
// pooling several feature maps (an FPN's levels) into one tensor without a copy per map. Not
// differentiable: input must not require a gradient while grad mode is on.
void roi_align_into(torch::Tensor &output, const torch::Tensor &rows, const torch::Tensor &input,
		    const torch::Tensor &rois, double spatial_scale, int64_t pooled_height,
		    int64_t pooled_width, int64_t sampling_ratio, bool aligned);

// Helpers of torchvision.ops.boxes.
torch::Tensor box_area(const torch::Tensor &boxes);
torch::Tensor box_iou(const torch::Tensor &boxes1, const torch::Tensor &boxes2);
torch::Tensor clip_boxes_to_image(const torch::Tensor &boxes, int64_t height, int64_t width);
torch::Tensor remove_small_boxes(const torch::Tensor &boxes, double min_size);

} // namespace frcnn::ops

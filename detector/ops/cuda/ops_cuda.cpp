// SPDX-License-Identifier: BSD-3-Clause
// LibTorch glue of the CUDA kernels: device guard, current stream, outputs, launch errors.
// Built only against a CUDA-enabled LibTorch.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../kernels.h"
#include "launch.h"
#include "nms_steps.h"

namespace frcnn::ops::detail {

namespace {

cuda::Scalar scalar_of(const torch::Tensor &t)
{
	switch (t.scalar_type()) {
	case torch::kFloat: return cuda::Scalar::Float;
	case torch::kDouble: return cuda::Scalar::Double;
	case torch::kHalf: return cuda::Scalar::Half;
	default: TORCH_CHECK(false, "no CUDA kernel for dtype ", t.scalar_type());
	}
}

cuda::Stream current_stream()
{
	return at::cuda::getCurrentCUDAStream().stream();
}

void check_launch(const char *op, int error)
{
	TORCH_CHECK(error == 0, op, ": CUDA kernel launch failed: ", cuda::error_string(error));
}

// The most boxes one NMS settles as one category: its reduction keeps a bit per box of a
// category in shared memory (nms_steps::kMaxSpan words, less a word it may straddle). The mask
// kernel's grid has a row of blocks for each 64 boxes, at most 65535.
constexpr int64_t kMaxMaskSpan = cuda::nms_steps::kMaxSpan;
constexpr int64_t kMaxNmsBoxes = 65535 * 64;

// keep flags [n] (uint8) of boxes already in score order, or, with categories, in category
// order and then in score order; max_per_category as cuda::nms takes it.
torch::Tensor suppress(const torch::Tensor &sorted_boxes, const torch::Tensor &sorted_categories,
		       double iou_threshold, int64_t max_per_category = 0)
{
	const int64_t n = sorted_boxes.size(0);
	TORCH_CHECK(n <= kMaxNmsBoxes, "nms: at most ", kMaxNmsBoxes, " boxes on CUDA, got ", n);
	const bool categories = sorted_categories.defined();
	const int64_t span = cuda::nms_steps::mask_span(n, categories ? max_per_category : 0);
	TORCH_CHECK(span <= kMaxMaskSpan, "nms: at most ", (kMaxMaskSpan - 1) * 64, " boxes in one category on CUDA, got ",
		    categories && max_per_category > 0 ? max_per_category : n);
	auto mask = torch::empty({n * span}, sorted_boxes.options().dtype(torch::kLong));
	auto keep = torch::empty({n}, sorted_boxes.options().dtype(torch::kByte));
	check_launch("nms", cuda::nms(sorted_boxes.data_ptr(), scalar_of(sorted_boxes),
				      categories ? sorted_categories.data_ptr<int64_t>() : nullptr, n,
				      max_per_category, iou_threshold,
				      reinterpret_cast<uint64_t *>(mask.data_ptr<int64_t>()),
				      keep.data_ptr<uint8_t>(), current_stream()));
	return keep;
}

torch::Tensor score_order(const torch::Tensor &scores)
{
	return std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
}

cuda::RoIAlignShape roi_shape(int64_t batch_size, int64_t channels, int64_t height, int64_t width,
			      int64_t num_rois, int64_t pooled_height, int64_t pooled_width,
			      double spatial_scale, int64_t sampling_ratio, bool aligned)
{
	return {batch_size, channels,	  height,	 width,		 num_rois,
		pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned};
}

} // namespace

torch::Tensor nms_cuda(const torch::Tensor &boxes, const torch::Tensor &scores, double iou_threshold)
{
	const c10::cuda::CUDAGuard guard(boxes.device());
	if (boxes.size(0) == 0)
		return torch::empty({0}, boxes.options().dtype(torch::kLong));
	const torch::Tensor order = score_order(scores);
	const torch::Tensor keep = suppress(boxes.index_select(0, order).contiguous(), {}, iou_threshold);
	return order.index_select(0, torch::nonzero(keep).squeeze(1));
}

torch::Tensor nms_per_category_cuda(const torch::Tensor &boxes, const torch::Tensor &scores,
				    const torch::Tensor &idxs, double iou_threshold, int64_t max_per_category)
{
	const c10::cuda::CUDAGuard guard(boxes.device());
	torch::Tensor mask = torch::zeros({boxes.size(0)}, boxes.options().dtype(torch::kBool));
	if (boxes.size(0) == 0)
		return mask;
	// Score order, then (stably) category order: within a category the boxes keep the order a
	// separate NMS of that category would use, as on the CPU.
	torch::Tensor order = score_order(scores);
	const torch::Tensor by_category =
		std::get<1>(idxs.index_select(0, order).sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
	order = order.index_select(0, by_category);
	const torch::Tensor keep = suppress(boxes.index_select(0, order).contiguous(),
					    idxs.index_select(0, order).contiguous(), iou_threshold, max_per_category);
	mask.index_put_({order}, keep.to(torch::kBool));
	return mask;
}

torch::Tensor roi_align_forward_cuda(const torch::Tensor &input, const torch::Tensor &rois,
				     double spatial_scale, int64_t pooled_height, int64_t pooled_width,
				     int64_t sampling_ratio, bool aligned)
{
	const c10::cuda::CUDAGuard guard(input.device());
	// Channels-last feature maps (a channels-last model's) are read in place, not copied.
	const bool channels_last = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
	const torch::Tensor in = channels_last ? input : input.contiguous();
	// Half RoIs (which torchvision takes) pool at their values in float: the kernel reads
	// coordinates in float or double.
	const torch::Tensor r = (rois.scalar_type() == torch::kHalf ? rois.to(torch::kFloat) : rois).contiguous();
	auto output = torch::empty({rois.size(0), input.size(1), pooled_height, pooled_width},
				   input.options().memory_format(at::MemoryFormat::Contiguous));
	auto shape = roi_shape(input.size(0), input.size(1), input.size(2), input.size(3),
			       rois.size(0), pooled_height, pooled_width, spatial_scale,
			       sampling_ratio, aligned);
	shape.channels_last = channels_last;
	check_launch("roi_align", cuda::roi_align_forward(in.data_ptr(), scalar_of(in), r.data_ptr(),
							  scalar_of(r), shape, output.data_ptr(),
							  current_stream()));
	return output;
}

torch::Tensor roi_align_backward_cuda(const torch::Tensor &grad, const torch::Tensor &rois,
				      double spatial_scale, int64_t pooled_height, int64_t pooled_width,
				      int64_t batch_size, int64_t channels, int64_t height, int64_t width,
				      int64_t sampling_ratio, bool aligned)
{
	const c10::cuda::CUDAGuard guard(grad.device());
	// Atomic adds exist for float and double; a half gradient is summed in float.
	const auto type = grad.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
	const torch::Tensor g = grad.to(type).contiguous();
	const torch::Tensor r = rois.to(type).contiguous();
	auto grad_input = torch::zeros({batch_size, channels, height, width}, g.options());
	const auto shape = roi_shape(batch_size, channels, height, width, rois.size(0), pooled_height,
				     pooled_width, spatial_scale, sampling_ratio, aligned);
	check_launch("roi_align backward",
		     cuda::roi_align_backward(g.data_ptr(), scalar_of(g), r.data_ptr(), shape,
					      grad_input.data_ptr(), current_stream()));
	return grad_input.to(grad.scalar_type());
}

} // namespace frcnn::ops::detail

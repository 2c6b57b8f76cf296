// SPDX-License-Identifier: BSD-3-Clause
// Public box operators: argument checks, device dispatch and autograd glue around the kernels.
#include "frcnn/ops.h"

#include <limits>

#include <torch/autograd.h>

#include "frcnn-build-config.h"
#include "kernels.h"

namespace frcnn::ops {

namespace {

// Kernels exist for the CPU and, in a build against a CUDA-enabled LibTorch, for CUDA; a tensor
// elsewhere gets an error that says so instead of a crash in a kernel that reads its memory.
void check_device(const char *op, const char *name, const torch::Tensor &t)
{
	if (t.device().is_cpu())
		return;
	TORCH_CHECK(FRCNN_HAVE_CUDA && t.device().is_cuda(), op, ": ", name, " is on ", t.device(),
		    ", but only ", FRCNN_HAVE_CUDA ? "CPU and CUDA" : "CPU", " kernels are built");
}

bool on_cuda(const torch::Tensor &t)
{
	return FRCNN_HAVE_CUDA && t.device().is_cuda();
}

torch::Tensor nms_kernel(const torch::Tensor &boxes, const torch::Tensor &scores, double iou_threshold)
{
#if FRCNN_HAVE_CUDA
	if (boxes.device().is_cuda())
		return detail::nms_cuda(boxes, scores, iou_threshold);
#endif
	return detail::nms_cpu(boxes, scores, iou_threshold);
}

torch::Tensor nms_per_category_kernel(const torch::Tensor &boxes, const torch::Tensor &scores,
				      const torch::Tensor &idxs, double iou_threshold, int64_t max_per_category)
{
#if FRCNN_HAVE_CUDA
	if (boxes.device().is_cuda())
		return detail::nms_per_category_cuda(boxes, scores, idxs, iou_threshold, max_per_category);
#else
	(void)max_per_category; // the CPU kernel visits each category's boxes only
#endif
	return detail::nms_per_category_cpu(boxes, scores, idxs, iou_threshold);
}

torch::Tensor roi_align_forward_kernel(const torch::Tensor &input, const torch::Tensor &rois,
				       double spatial_scale, int64_t pooled_height, int64_t pooled_width,
				       int64_t sampling_ratio, bool aligned)
{
#if FRCNN_HAVE_CUDA
	if (input.device().is_cuda())
		return detail::roi_align_forward_cuda(input, rois, spatial_scale, pooled_height,
						      pooled_width, sampling_ratio, aligned);
#endif
	return detail::roi_align_forward_cpu(input, rois, spatial_scale, pooled_height, pooled_width,
					     sampling_ratio, aligned);
}

torch::Tensor roi_align_backward_kernel(const torch::Tensor &grad, const torch::Tensor &rois,
					double spatial_scale, int64_t pooled_height,
					int64_t pooled_width, int64_t batch_size, int64_t channels,
					int64_t height, int64_t width, int64_t sampling_ratio,
					bool aligned)
{
#if FRCNN_HAVE_CUDA
	if (grad.device().is_cuda())
		return detail::roi_align_backward_cuda(grad, rois, spatial_scale, pooled_height,
						       pooled_width, batch_size, channels, height,
						       width, sampling_ratio, aligned);
#endif
	return detail::roi_align_backward_cpu(grad, rois, spatial_scale, pooled_height, pooled_width,
					      batch_size, channels, height, width, sampling_ratio,
					      aligned);
}

void check_boxes(const char *op, const char *name, const torch::Tensor &boxes)
{
	TORCH_CHECK(boxes.defined(), op, ": ", name, " is an undefined tensor");
	TORCH_CHECK(boxes.dim() == 2, op, ": ", name, " should be a 2D tensor [N, 4], got ",
		    boxes.dim(), "D with shape ", boxes.sizes());
	TORCH_CHECK(boxes.size(1) == 4, op, ": ", name,
		    " should have 4 elements (x1, y1, x2, y2) in dimension 1, got shape ",
		    boxes.sizes());
}

void check_nms_args(const char *op, const torch::Tensor &boxes, const torch::Tensor &scores)
{
	check_boxes(op, "boxes", boxes);
	TORCH_CHECK(scores.defined(), op, ": scores is an undefined tensor");
	TORCH_CHECK(scores.dim() == 1, op, ": scores should be a 1D tensor [N], got ", scores.dim(),
		    "D with shape ", scores.sizes());
	TORCH_CHECK(
		boxes.size(0) == scores.size(0), op,
		": boxes and scores should have the same number of elements in dimension 0, got ",
		boxes.size(0), " and ", scores.size(0));
	TORCH_CHECK(boxes.is_floating_point(), op,
		    ": boxes should be a floating point tensor, got ", boxes.scalar_type());
	TORCH_CHECK(scores.scalar_type() == boxes.scalar_type(), op,
		    ": scores should have the same dtype as boxes (", boxes.scalar_type(),
		    "), got ", scores.scalar_type());
	TORCH_CHECK(scores.device() == boxes.device(), op,
		    ": boxes and scores should be on the same device, got ", boxes.device(),
		    " and ", scores.device());
	check_device(op, "boxes", boxes);
}

// The kernels work in float or double; half boxes are compared in float.
torch::Tensor kernel_dtype(const torch::Tensor &t)
{
	if (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble)
		return t.contiguous();
	return t.to(torch::kFloat).contiguous();
}

// Upcast of torchvision.ops._utils._upcast: protects products from overflow.
torch::Tensor upcast(const torch::Tensor &t)
{
	if (t.is_floating_point())
		return (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble)
			       ? t
			       : t.to(torch::kFloat);
	return (t.scalar_type() == torch::kInt || t.scalar_type() == torch::kLong)
		       ? t
		       : t.to(torch::kInt);
}

void check_roi_align_args(const torch::Tensor &input, const torch::Tensor &rois,
			  int64_t pooled_height, int64_t pooled_width)
{
	TORCH_CHECK(input.defined(), "roi_align: input is an undefined tensor");
	TORCH_CHECK(rois.defined(), "roi_align: rois is an undefined tensor");
	TORCH_CHECK(input.dim() == 4, "roi_align: input should be a 4D tensor [N, C, H, W], got ",
		    input.dim(), "D with shape ", input.sizes());
	TORCH_CHECK(rois.dim() == 2, "roi_align: rois should be a 2D tensor [K, 5], got ",
		    rois.dim(), "D with shape ", rois.sizes());
	TORCH_CHECK(rois.size(1) == 5,
		    "roi_align: rois should have 5 elements (batch index, x1, y1, x2, y2) in "
		    "dimension 1, got shape ",
		    rois.sizes());
	TORCH_CHECK(input.is_floating_point(),
		    "roi_align: input should be a floating point tensor, got ",
		    input.scalar_type());
	// The one exception to equal dtypes: features of reduced precision take float rois, so that
	// an fp16 model (on CUDA) or a bf16 model (on the CPU) pools at coordinates of full
	// precision.
	const auto features = input.scalar_type();
	const bool reduced_features =
		((features == torch::kHalf && on_cuda(input)) || (features == torch::kBFloat16 && !on_cuda(input))) &&
		rois.scalar_type() == torch::kFloat;
	TORCH_CHECK(rois.scalar_type() == input.scalar_type() || reduced_features,
		    "roi_align: rois should have the same dtype as input (", input.scalar_type(),
		    "), got ", rois.scalar_type());
	TORCH_CHECK(rois.device() == input.device(),
		    "roi_align: input and rois should be on the same device, got ", input.device(),
		    " and ", rois.device());
	TORCH_CHECK(pooled_height > 0 && pooled_width > 0,
		    "roi_align: the output size should be positive, got ", pooled_height, "x",
		    pooled_width);
	check_device("roi_align", "input", input);
}

class RoIAlignFunction : public torch::autograd::Function<RoIAlignFunction> {
public:
	static torch::Tensor forward(torch::autograd::AutogradContext *ctx,
				     const torch::Tensor &input, const torch::Tensor &rois,
				     double spatial_scale, int64_t pooled_height,
				     int64_t pooled_width, int64_t sampling_ratio, bool aligned)
	{
		ctx->saved_data["spatial_scale"] = spatial_scale;
		ctx->saved_data["pooled_height"] = pooled_height;
		ctx->saved_data["pooled_width"] = pooled_width;
		ctx->saved_data["sampling_ratio"] = sampling_ratio;
		ctx->saved_data["aligned"] = aligned;
		ctx->saved_data["input_shape"] = input.sizes().vec();
		ctx->save_for_backward({rois});
		return roi_align_forward_kernel(input, rois, spatial_scale, pooled_height,
						pooled_width, sampling_ratio, aligned);
	}

	static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
						       torch::autograd::variable_list grad_output)
	{
		const torch::Tensor rois = ctx->get_saved_variables()[0];
		const std::vector<int64_t> shape = ctx->saved_data["input_shape"].toIntVector();
		const torch::Tensor grad_input = roi_align_backward_kernel(
			grad_output[0], rois, ctx->saved_data["spatial_scale"].toDouble(),
			ctx->saved_data["pooled_height"].toInt(),
			ctx->saved_data["pooled_width"].toInt(), shape[0], shape[1], shape[2],
			shape[3], ctx->saved_data["sampling_ratio"].toInt(),
			ctx->saved_data["aligned"].toBool());
		// No gradient for rois (as in torchvision) nor for the non-tensor arguments.
		const torch::Tensor none;
		return {grad_input, none, none, none, none, none, none};
	}
};

} // namespace

torch::Tensor nms(const torch::Tensor &boxes, const torch::Tensor &scores, double iou_threshold)
{
	check_nms_args("nms", boxes, scores);
	return nms_kernel(kernel_dtype(boxes), kernel_dtype(scores), iou_threshold);
}

namespace {

void check_categories(const char *op, const torch::Tensor &boxes, const torch::Tensor &idxs)
{
	TORCH_CHECK(idxs.defined(), op, ": idxs is an undefined tensor");
	TORCH_CHECK(idxs.dim() == 1, op, ": idxs should be a 1D tensor [N], got ", idxs.dim(),
		    "D with shape ", idxs.sizes());
	TORCH_CHECK(idxs.size(0) == boxes.size(0), op,
		    ": boxes and idxs should have the same number of elements in dimension 0, got ",
		    boxes.size(0), " and ", idxs.size(0));
	TORCH_CHECK(!idxs.is_floating_point() && !idxs.is_complex() &&
			    idxs.scalar_type() != torch::kBool,
		    op, ": idxs should be an integer tensor, got ", idxs.scalar_type());
	TORCH_CHECK(idxs.device() == boxes.device(), op,
		    ": boxes and idxs should be on the same device, got ", boxes.device(), " and ",
		    idxs.device());
}

// The per-category NMS kernel on checked arguments: the kept boxes as a mask.
torch::Tensor per_category_mask(const torch::Tensor &boxes, const torch::Tensor &scores,
				const torch::Tensor &idxs, double iou_threshold, int64_t max_per_category = 0)
{
	if (boxes.size(0) == 0)
		return torch::zeros({0}, boxes.options().dtype(torch::kBool));
	return nms_per_category_kernel(kernel_dtype(boxes), kernel_dtype(scores),
				       idxs.to(torch::kLong).contiguous(), iou_threshold, max_per_category);
}

// The shift torchvision's batched_nms gives each category's boxes so that no two categories
// overlap: idxs * (largest coordinate + 1), in the boxes' dtype (`largest`: one per box, or one).
torch::Tensor category_offsets(const torch::Tensor &idxs, const torch::Tensor &largest)
{
	const auto options = largest.options();
	return idxs.to(options) * (largest + torch::ones({}, options));
}

// torchvision's choice of batched_nms strategy: the offset trick for at most this many numbers
// of boxes (4 a box), a loop over the categories above. Kept so that results match it bit for
// bit: the offsets change the coordinates, hence the rounding of the IoUs.
int64_t offset_trick_limit(const torch::Device &device)
{
	return device.is_cpu() ? 4000 : 20000;
}

} // namespace

torch::Tensor nms_mask_by_category(const torch::Tensor &boxes, const torch::Tensor &scores,
				   const torch::Tensor &idxs, double iou_threshold)
{
	return detail::nms_mask_by_category_within(boxes, scores, idxs, iou_threshold, 0);
}

namespace detail {

torch::Tensor batched_nms_offsets(const torch::Tensor &idxs, const torch::Tensor &image, const torch::Tensor &counted,
				  const torch::Tensor &largest, const torch::Tensor &counts)
{
	auto offset = counts.mul(4).le(offset_trick_limit(torch::kCPU)).index_select(0, image);
	if (counted.defined())
		offset = offset.logical_and(counted);
	return category_offsets(idxs, largest.index_select(0, image)).masked_fill(offset.logical_not(), 0);
}

torch::Tensor nms_mask_by_category_within(const torch::Tensor &boxes, const torch::Tensor &scores,
					  const torch::Tensor &idxs, double iou_threshold, int64_t max_per_category)
{
	check_nms_args("nms_mask_by_category", boxes, scores);
	check_categories("nms_mask_by_category", boxes, idxs);
	TORCH_CHECK(max_per_category >= 0, "nms_mask_by_category: max_per_category must not be negative, got ",
		    max_per_category);
	return per_category_mask(boxes, scores, idxs, iou_threshold, max_per_category);
}

} // namespace detail

torch::Tensor nms_by_category(const torch::Tensor &boxes, const torch::Tensor &scores,
			      const torch::Tensor &idxs, double iou_threshold)
{
	check_nms_args("nms_by_category", boxes, scores);
	check_categories("nms_by_category", boxes, idxs);
	const torch::Tensor keep =
		torch::nonzero(per_category_mask(boxes, scores, idxs, iou_threshold)).squeeze(1);
	const torch::Tensor order = std::get<1>(
		scores.index_select(0, keep).sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
	return keep.index_select(0, order);
}

torch::Tensor batched_nms(const torch::Tensor &boxes, const torch::Tensor &scores,
			  const torch::Tensor &idxs, double iou_threshold)
{
	check_nms_args("batched_nms", boxes, scores);
	check_categories("batched_nms", boxes, idxs);

	if (boxes.numel() > offset_trick_limit(boxes.device())) {
		const torch::Tensor keep =
			torch::nonzero(per_category_mask(boxes, scores, idxs, iou_threshold)).squeeze(1);
		// Same (unstable) sort as torchvision, so that equal scores come out in its order.
		const torch::Tensor order = std::get<1>(
			scores.index_select(0, keep).sort(/*dim=*/-1, /*descending=*/true));
		return keep.index_select(0, order);
	}

	if (boxes.numel() == 0)
		return torch::empty({0}, boxes.options().dtype(torch::kLong));
	// One NMS over all the boxes, each category shifted away from the others.
	return nms(boxes + category_offsets(idxs, boxes.max()).unsqueeze(1), scores, iou_threshold);
}

torch::Tensor roi_align(const torch::Tensor &input, const torch::Tensor &rois, double spatial_scale,
			int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
			bool aligned)
{
	check_roi_align_args(input, rois, pooled_height, pooled_width);
	if (torch::GradMode::is_enabled() && input.requires_grad())
		return RoIAlignFunction::apply(input, rois, spatial_scale, pooled_height,
					       pooled_width, sampling_ratio, aligned);
	return roi_align_forward_kernel(input, rois, spatial_scale, pooled_height, pooled_width,
					sampling_ratio, aligned);
}

void roi_align_into(torch::Tensor &output, const torch::Tensor &rows, const torch::Tensor &input,
		    const torch::Tensor &rois, double spatial_scale, int64_t pooled_height,
		    int64_t pooled_width, int64_t sampling_ratio, bool aligned)
{
	check_roi_align_args(input, rois, pooled_height, pooled_width);
	TORCH_CHECK(!(torch::GradMode::is_enabled() && input.requires_grad()),
		    "roi_align_into: input requires a gradient; use roi_align, which is differentiable");
	TORCH_CHECK(output.defined() && output.dim() == 4 && output.size(1) == input.size(1) &&
			    output.size(2) == pooled_height && output.size(3) == pooled_width,
		    "roi_align_into: output should be [M, ", input.size(1), ", ", pooled_height, ", ",
		    pooled_width, "], got ", output.sizes());
	TORCH_CHECK(output.is_contiguous() && output.scalar_type() == input.scalar_type() &&
			    output.device() == input.device(),
		    "roi_align_into: output should be contiguous, of the input's dtype (",
		    input.scalar_type(), ") and device (", input.device(), "), got ",
		    output.scalar_type(), " on ", output.device());
	TORCH_CHECK(rows.dim() == 1 && rows.size(0) == rois.size(0) &&
			    rows.scalar_type() == torch::kLong && rows.device() == input.device(),
		    "roi_align_into: rows should be int64 [", rois.size(0), "] on ", input.device(),
		    ", got ", rows.scalar_type(), " ", rows.sizes(), " on ", rows.device());
#if FRCNN_HAVE_CUDA
	if (input.device().is_cuda()) {
		output.index_copy_(0, rows, detail::roi_align_forward_cuda(input, rois, spatial_scale,
									   pooled_height, pooled_width,
									   sampling_ratio, aligned));
		return;
	}
#endif
	detail::roi_align_forward_cpu_into(output, rows, input, rois, spatial_scale, pooled_height,
					   pooled_width, sampling_ratio, aligned);
}

torch::Tensor box_area(const torch::Tensor &boxes)
{
	check_boxes("box_area", "boxes", boxes);
	const torch::Tensor b = upcast(boxes);
	return (b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1));
}

torch::Tensor box_iou(const torch::Tensor &boxes1, const torch::Tensor &boxes2)
{
	check_boxes("box_iou", "boxes1", boxes1);
	check_boxes("box_iou", "boxes2", boxes2);
	TORCH_CHECK(boxes1.device() == boxes2.device(),
		    "box_iou: boxes1 and boxes2 should be on the same device, got ",
		    boxes1.device(), " and ", boxes2.device());
	using torch::indexing::None;
	using torch::indexing::Slice;
	const torch::Tensor area1 = box_area(boxes1);
	const torch::Tensor area2 = box_area(boxes2);
	const torch::Tensor lt = torch::max(boxes1.index({Slice(), None, Slice(None, 2)}),
					    boxes2.index({Slice(), Slice(None, 2)}));
	const torch::Tensor rb = torch::min(boxes1.index({Slice(), None, Slice(2, None)}),
					    boxes2.index({Slice(), Slice(2, None)}));
	const torch::Tensor wh = upcast(rb - lt).clamp_min(0);
	const torch::Tensor inter = wh.select(2, 0) * wh.select(2, 1);
	const torch::Tensor uni = area1.unsqueeze(1) + area2 - inter;
	return inter / uni;
}

torch::Tensor clip_boxes_to_image(const torch::Tensor &boxes, int64_t height, int64_t width)
{
	TORCH_CHECK(boxes.defined(), "clip_boxes_to_image: boxes is an undefined tensor");
	TORCH_CHECK(
		boxes.dim() >= 1 && boxes.size(-1) == 4,
		"clip_boxes_to_image: boxes should have 4 elements (x1, y1, x2, y2) in the last "
		"dimension, got shape ",
		boxes.sizes());
	TORCH_CHECK(height >= 0 && width >= 0,
		    "clip_boxes_to_image: the image size should not be negative, got ", height, "x",
		    width);
	using torch::indexing::Ellipsis;
	using torch::indexing::None;
	using torch::indexing::Slice;
	const torch::Tensor x = boxes.index({Ellipsis, Slice(0, None, 2)}).clamp(0, width);
	const torch::Tensor y = boxes.index({Ellipsis, Slice(1, None, 2)}).clamp(0, height);
	return torch::stack({x, y}, boxes.dim()).reshape(boxes.sizes());
}

torch::Tensor remove_small_boxes(const torch::Tensor &boxes, double min_size)
{
	check_boxes("remove_small_boxes", "boxes", boxes);
	const torch::Tensor ws = boxes.select(1, 2) - boxes.select(1, 0);
	const torch::Tensor hs = boxes.select(1, 3) - boxes.select(1, 1);
	const torch::Tensor keep = ws.ge(min_size).logical_and(hs.ge(min_size));
	return torch::nonzero(keep).squeeze(1);
}

} // namespace frcnn::ops

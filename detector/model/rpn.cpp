// SPDX-License-Identifier: BSD-3-Clause
// Anchors, box coding and the region proposal network (torchvision's rpn.py, anchor_utils.py and
// _utils.BoxCoder), eval mode.
#include <cmath>
#include <limits>

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include "frcnn/error.h"
#include "frcnn/ops.h"
#include "../ops/kernels.h"
#include "onednn_convolutions.h"
#include "parts.h"
#include "training.h"

namespace frcnn::detail {

namespace {

// remove_small_boxes' min_size in filter_proposals.
constexpr double kMinProposalSize = 1e-3;

} // namespace

torch::Tensor to_device_without_waiting(const torch::Tensor &host, torch::Device device)
{
	if (!device.is_cuda())
		return host.to(device);
	return host.pin_memory().to(device, /*non_blocking=*/true);
}

torch::Tensor host_integers_to(const std::vector<int64_t> &values, torch::Device device)
{
	return to_device_without_waiting(torch::tensor(values, torch::kInt64), device);
}

torch::Tensor image_of_each_row(const std::vector<int64_t> &rows_per_image, torch::Device device)
{
	std::vector<int64_t> images;
	for (size_t i = 0; i < rows_per_image.size(); i++)
		images.insert(images.end(), rows_per_image[i], (int64_t)i);
	return host_integers_to(images, device);
}

std::pair<torch::Tensor, torch::Tensor> image_size_tensors(const std::vector<ImageSize> &sizes,
							  torch::Device device, torch::ScalarType dtype)
{
	std::vector<int64_t> heights, widths;
	for (const auto &size : sizes) {
		heights.push_back(size.first);
		widths.push_back(size.second);
	}
	return {host_integers_to(heights, device).to(dtype), host_integers_to(widths, device).to(dtype)};
}

torch::Tensor count_values(const torch::Tensor &values, int64_t n)
{
	return torch::zeros({n}, values.options()).scatter_add_(0, values, torch::ones_like(values));
}

torch::Tensor clip_boxes_to_sizes(const torch::Tensor &boxes, const torch::Tensor &heights,
				  const torch::Tensor &widths)
{
	using torch::indexing::Ellipsis;
	using torch::indexing::None;
	using torch::indexing::Slice;
	const auto zero = torch::zeros({}, boxes.options());
	const auto x = torch::minimum(torch::maximum(boxes.index({Ellipsis, Slice(0, None, 2)}), zero),
				      widths.unsqueeze(-1));
	const auto y = torch::minimum(torch::maximum(boxes.index({Ellipsis, Slice(1, None, 2)}), zero),
				      heights.unsqueeze(-1));
	return torch::stack({x, y}, -1).reshape(boxes.sizes());
}

BoxCoder::BoxCoder(std::array<double, 4> w)
	: weights(w), clip(std::log(1000.0 / 16))
{
}

torch::Tensor BoxCoder::decode(const torch::Tensor &rel_codes, const torch::Tensor &boxes_in) const
{
	using torch::indexing::Slice;
	const int64_t n = boxes_in.size(0);
	auto boxes = boxes_in.to(rel_codes.dtype());
	auto widths = boxes.select(1, 2) - boxes.select(1, 0);
	auto heights = boxes.select(1, 3) - boxes.select(1, 1);
	auto ctr_x = boxes.select(1, 0) + 0.5 * widths;
	auto ctr_y = boxes.select(1, 1) + 0.5 * heights;

	if (n == 0) {
		// No boxes (an RPN whose score threshold left no proposal): none decoded, in the
		// shape of their codes, as torchvision decodes them.
		const int64_t per_box = rel_codes.dim() == 2 ? rel_codes.size(1) / 4 : 1;
		return torch::empty({0, per_box, 4}, rel_codes.options());
	}
	auto codes = rel_codes.reshape({n, -1});
	auto dx = codes.index({Slice(), Slice(0, torch::indexing::None, 4)}) / weights[0];
	auto dy = codes.index({Slice(), Slice(1, torch::indexing::None, 4)}) / weights[1];
	auto dw = codes.index({Slice(), Slice(2, torch::indexing::None, 4)}) / weights[2];
	auto dh = codes.index({Slice(), Slice(3, torch::indexing::None, 4)}) / weights[3];
	dw = torch::clamp_max(dw, clip);
	dh = torch::clamp_max(dh, clip);

	auto pred_ctr_x = dx * widths.unsqueeze(1) + ctr_x.unsqueeze(1);
	auto pred_ctr_y = dy * heights.unsqueeze(1) + ctr_y.unsqueeze(1);
	auto pred_w = torch::exp(dw) * widths.unsqueeze(1);
	auto pred_h = torch::exp(dh) * heights.unsqueeze(1);
	// torchvision multiplies by a 0.5 tensor of the boxes' dtype; a scalar gives the same result.
	auto half_w = pred_w * 0.5;
	auto half_h = pred_h * 0.5;
	auto out = torch::stack({pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h},
				2);
	return out.reshape({n, -1, 4});
}

torch::Tensor BoxCoder::encode(const torch::Tensor &reference_boxes, const torch::Tensor &proposals) const
{
	auto wx = weights[0], wy = weights[1], ww = weights[2], wh = weights[3];
	auto px1 = proposals.select(1, 0).unsqueeze(1), py1 = proposals.select(1, 1).unsqueeze(1);
	auto px2 = proposals.select(1, 2).unsqueeze(1), py2 = proposals.select(1, 3).unsqueeze(1);
	auto gx1 = reference_boxes.select(1, 0).unsqueeze(1), gy1 = reference_boxes.select(1, 1).unsqueeze(1);
	auto gx2 = reference_boxes.select(1, 2).unsqueeze(1), gy2 = reference_boxes.select(1, 3).unsqueeze(1);
	auto ex_w = px2 - px1, ex_h = py2 - py1;
	auto ex_cx = px1 + 0.5 * ex_w, ex_cy = py1 + 0.5 * ex_h;
	auto gt_w = gx2 - gx1, gt_h = gy2 - gy1;
	auto gt_cx = gx1 + 0.5 * gt_w, gt_cy = gy1 + 0.5 * gt_h;
	auto tdx = wx * (gt_cx - ex_cx) / ex_w;
	auto tdy = wy * (gt_cy - ex_cy) / ex_h;
	auto tdw = ww * torch::log(gt_w / ex_w);
	auto tdh = wh * torch::log(gt_h / ex_h);
	return torch::cat({tdx, tdy, tdw, tdh}, 1);
}

AnchorGenerator::AnchorGenerator(const std::vector<std::vector<double>> &sizes, const std::vector<double> &ratios)
{
	for (const auto &level_sizes : sizes) {
		// float32 throughout, as torchvision: h = sqrt(r), w = 1/h, anchors rounded half to even.
		auto scales = torch::tensor(level_sizes, torch::kFloat32);
		auto aspect = torch::tensor(ratios, torch::kFloat32);
		auto h_ratios = torch::sqrt(aspect);
		auto w_ratios = 1 / h_ratios;
		auto ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
		auto hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
		auto base = torch::stack({-ws, -hs, ws, hs}, 1) / 2;
		cell_anchors_.push_back(base.round());
	}
}

int64_t AnchorGenerator::anchors_per_location(size_t level) const
{
	return cell_anchors_.at(level).size(0);
}

torch::Tensor AnchorGenerator::grid_anchors(const std::vector<torch::Tensor> &features, int64_t batch_height,
					    int64_t batch_width) const
{
	if (features.size() != cell_anchors_.size())
		throw Error("the anchor generator has " + std::to_string(cell_anchors_.size()) +
			    " levels of anchor sizes but the backbone gives " +
			    std::to_string(features.size()) + " feature maps");
	std::vector<torch::Tensor> all;
	for (size_t i = 0; i < features.size(); i++) {
		const auto &f = features[i];
		const int64_t gh = f.size(-2), gw = f.size(-1);
		// Integer strides of the padded batch, separately for each axis (so 'pool' can have a
		// non-square stride), and no half-stride offset: torchvision's grid.
		const int64_t stride_h = batch_height / gh;
		const int64_t stride_w = batch_width / gw;
		auto opts = torch::TensorOptions().dtype(torch::kInt32).device(f.device());
		auto shifts_x = torch::arange(0, gw, opts) * stride_w;
		auto shifts_y = torch::arange(0, gh, opts) * stride_h;
		auto grid = torch::meshgrid({shifts_y, shifts_x}, "ij");
		auto sx = grid[1].reshape(-1), sy = grid[0].reshape(-1);
		auto shifts = torch::stack({sx, sy, sx, sy}, 1);
		// Anchors of an fp16 model stay in float: box geometry is not done in half.
		auto base = to_device_without_waiting(cell_anchors_[i].to(geometry_dtype(f)), f.device());
		all.push_back((shifts.view({-1, 1, 4}) + base.view({1, -1, 4})).reshape({-1, 4}));
	}
	return torch::cat(all, 0);
}

RPNHeadImpl::RPNHeadImpl(int64_t channels, int64_t num_anchors, int conv_depth)
{
	conv = register_module("conv", torch::nn::ModuleList());
	torch::NoGradGuard no_grad;
	for (int i = 0; i < conv_depth; i++) {
		// Conv2dNormActivation(norm_layer=None): Sequential(conv, ReLU), hence "conv.i.0.".
		auto c = torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).padding(1));
		torch::nn::init::normal_(c->weight, 0.0, 0.01);
		torch::nn::init::constant_(c->bias, 0.0);
		conv->push_back(torch::nn::Sequential(c, torch::nn::ReLU()));
	}
	cls_logits = register_module("cls_logits",
				     torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, num_anchors, 1)));
	bbox_pred = register_module("bbox_pred",
				    torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, num_anchors * 4, 1)));
	for (auto *c : {&cls_logits, &bbox_pred}) {
		torch::nn::init::normal_((*c)->weight, 0.0, 0.01);
		torch::nn::init::constant_((*c)->bias, 0.0);
	}
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
RPNHeadImpl::forward(const std::vector<torch::Tensor> &features)
{
	if (onednn && !is_training() && !torch::GradMode::is_enabled() && !features.empty() &&
	    onednn->accepts(features.front()) && onednn->current())
		return onednn->rpn_head(features);
	std::vector<torch::Tensor> logits, deltas;
	for (const auto &f : features) {
		auto t = f;
		for (const auto &block : *conv)
			t = block->as<torch::nn::Sequential>()->forward(t);
		logits.push_back(cls_logits(t));
		deltas.push_back(bbox_pred(t));
	}
	return {logits, deltas};
}

namespace {

// (N, A*C, H, W) -> (N, H*W*A, C)
torch::Tensor permute_and_flatten(const torch::Tensor &layer, int64_t n, int64_t c, int64_t h, int64_t w)
{
	return layer.view({n, -1, c, h, w}).permute({0, 3, 4, 1, 2}).reshape({n, -1, c});
}

} // namespace

RegionProposalNetworkImpl::RegionProposalNetworkImpl(const ModelConfig &config_)
	: config(config_),
	  anchor_generator(config_.anchor_sizes, config_.aspect_ratios),
	  box_coder({1.0, 1.0, 1.0, 1.0}),
	  num_levels(config_.anchor_sizes.size())
{
	const int64_t a = anchor_generator.anchors_per_location(0);
	for (size_t i = 1; i < num_levels; i++)
		if (anchor_generator.anchors_per_location(i) != a)
			throw Error("every anchor level must have the same number of anchors per location");
	head = register_module("head", RPNHead(config.fpn_channels, a, config.rpn_conv_depth));
}

RPNOutput RegionProposalNetworkImpl::forward(const torch::Tensor &batch, const std::vector<ImageSize> &image_sizes,
					     const std::vector<torch::Tensor> &features_in,
					     const std::vector<Target> *targets)
{
	// The RPN uses as many feature maps as there are anchor levels, starting from the finest.
	if (features_in.size() < num_levels)
		throw Error("the RPN needs " + std::to_string(num_levels) + " feature maps, the backbone gives " +
			    std::to_string(features_in.size()));
	std::vector<torch::Tensor> features(features_in.begin(), features_in.begin() + num_levels);

	auto [logits, deltas] = head(features);
	const int64_t num_images = batch.size(0);
	auto anchors = anchor_generator.grid_anchors(features, batch.size(-2), batch.size(-1));

	std::vector<int64_t> anchors_per_level;
	std::vector<torch::Tensor> flat_logits, flat_deltas;
	for (size_t i = 0; i < logits.size(); i++) {
		const int64_t n = logits[i].size(0), ac = logits[i].size(1);
		const int64_t h = logits[i].size(2), w = logits[i].size(3);
		const int64_t a = deltas[i].size(1) / 4;
		anchors_per_level.push_back(h * w * a);
		flat_logits.push_back(permute_and_flatten(logits[i], n, ac / a, h, w));
		flat_deltas.push_back(permute_and_flatten(deltas[i], n, 4, h, w));
	}
	// An fp16 head's outputs are decoded and ranked in float.
	auto objectness = torch::cat(flat_logits, 1).flatten(0, -2).to(geometry_dtype(logits[0]));
	auto box_deltas = torch::cat(flat_deltas, 1).reshape({-1, 4}).to(geometry_dtype(deltas[0]));

	auto all_anchors = anchors.repeat({num_images, 1});
	auto proposals = box_coder.decode(box_deltas.detach(), all_anchors).view({num_images, -1, 4});

	// filter_proposals
	RPNOutput out;
	{
		torch::NoGradGuard no_grad;
		auto obj = objectness.detach().reshape({num_images, -1});
		const bool training = is_training();
		const int64_t pre_nms = training ? config.rpn_pre_nms_top_n_train : config.rpn_pre_nms_top_n_test;
		const int64_t post_nms = training ? config.rpn_post_nms_top_n_train : config.rpn_post_nms_top_n_test;

		std::vector<torch::Tensor> level_ids, top_idx;
		int64_t offset = 0;
		int64_t most_per_level = 0;
		auto per_level = obj.split_with_sizes(anchors_per_level, 1);
		for (size_t i = 0; i < per_level.size(); i++) {
			const int64_t n = per_level[i].size(1);
			most_per_level = std::max(most_per_level, std::min(pre_nms, n));
			auto idx = std::get<1>(per_level[i].topk(std::min(pre_nms, n), 1));
			top_idx.push_back(idx + offset);
			level_ids.push_back(torch::full({idx.size(1)}, (int64_t)i,
							torch::TensorOptions().dtype(torch::kInt64).device(obj.device())));
			offset += n;
		}
		auto top = torch::cat(top_idx, 1);
		auto levels = torch::cat(level_ids, 0);
		auto batch_idx = torch::arange(num_images, top.options()).unsqueeze(1);
		auto top_obj = obj.index({batch_idx, top});
		auto top_boxes = proposals.detach().index({batch_idx, top});
		auto probs = torch::sigmoid(top_obj);

		auto kept = obj.is_cuda() ? filter_proposals_batched(top_boxes, probs, levels, image_sizes, post_nms,
									    most_per_level)
					  : filter_proposals(top_boxes, probs, levels, image_sizes, post_nms);
		out.boxes = std::move(kept.boxes);
		out.scores = std::move(kept.scores);
	}

	if (targets != nullptr) {
		// assign_targets_to_anchors, then compute_loss (rpn.py).
		const Matcher matcher{config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh, true};
		std::vector<torch::Tensor> labels, regression_targets;
		for (int64_t i = 0; i < num_images; i++) {
			const auto &gt = (*targets)[i].boxes.to(anchors.scalar_type());
			torch::Tensor image_labels, matched_gt;
			if (gt.numel() == 0) {
				matched_gt = torch::zeros_like(anchors);
				image_labels = torch::zeros({anchors.size(0)}, anchors.options());
			} else {
				auto matches = matcher(ops::box_iou(gt, anchors));
				matched_gt = gt.index({matches.clamp_min(0)});
				image_labels = (matches >= 0).to(anchors.scalar_type());
				image_labels.masked_fill_(matches == Matcher::kBelowLow, 0.0);
				image_labels.masked_fill_(matches == Matcher::kBetween, -1.0);
			}
			labels.push_back(image_labels);
			regression_targets.push_back(box_coder.encode(matched_gt, anchors));
		}
		const Sampler sampler{config.rpn_batch_size_per_image, config.rpn_positive_fraction};
		auto [pos_masks, neg_masks] = sampler(labels);
		auto pos = torch::where(torch::cat(pos_masks, 0))[0];
		auto neg = torch::where(torch::cat(neg_masks, 0))[0];
		auto sampled = torch::cat({pos, neg}, 0);
		auto all_labels = torch::cat(labels, 0);
		auto all_targets = torch::cat(regression_targets, 0);
		out.losses["loss_rpn_box_reg"] =
			smooth_l1_sum(box_deltas.index({pos}), all_targets.index({pos}), 1.0 / 9) / sampled.numel();
		out.losses["loss_objectness"] = torch::binary_cross_entropy_with_logits(
			objectness.flatten().index({sampled}), all_labels.index({sampled}));
	}
	return out;
}

RegionProposalNetworkImpl::Proposals
RegionProposalNetworkImpl::filter_proposals(const torch::Tensor &top_boxes, const torch::Tensor &probs,
					    const torch::Tensor &levels, const std::vector<ImageSize> &image_sizes,
					    int64_t post_nms) const
{
	Proposals out;
	for (int64_t i = 0; i < top_boxes.size(0); i++) {
		auto boxes = ops::clip_boxes_to_image(top_boxes[i], image_sizes[i].first, image_sizes[i].second);
		auto scores = probs[i];
		auto lvl = levels;
		auto keep = ops::remove_small_boxes(boxes, kMinProposalSize);
		boxes = boxes.index({keep});
		scores = scores.index({keep});
		lvl = lvl.index({keep});
		keep = torch::where(scores >= config.rpn_score_thresh)[0];
		boxes = boxes.index({keep});
		scores = scores.index({keep});
		lvl = lvl.index({keep});
		keep = ops::batched_nms(boxes, scores, lvl, config.rpn_nms_thresh);
		keep = keep.slice(0, 0, post_nms);
		out.boxes.push_back(boxes.index({keep}));
		out.scores.push_back(scores.index({keep}));
	}
	return out;
}

RegionProposalNetworkImpl::Proposals
RegionProposalNetworkImpl::filter_proposals_batched(const torch::Tensor &top_boxes, const torch::Tensor &probs,
						    const torch::Tensor &levels,
						    const std::vector<ImageSize> &image_sizes, int64_t post_nms,
						    int64_t most_per_level) const
{
	const int64_t num_images = top_boxes.size(0);
	const auto [heights, widths] = image_size_tensors(image_sizes, top_boxes.device(), top_boxes.scalar_type());
	const auto boxes = clip_boxes_to_sizes(top_boxes, heights.view({-1, 1}), widths.view({-1, 1}));

	// remove_small_boxes and the score threshold as one mask instead of two selections.
	const auto ws = boxes.select(2, 2) - boxes.select(2, 0);
	const auto hs = boxes.select(2, 3) - boxes.select(2, 1);
	const auto valid = ws.ge(kMinProposalSize).logical_and(hs.ge(kMinProposalSize)).logical_and(
		probs.ge(config.rpn_score_thresh));

	// NMS on every candidate, those that failed the filters given a score of -inf: they come
	// after every candidate that passed, in the order of its level's suppression, so they can
	// only suppress one another, and what the candidates that passed keep is what an NMS of
	// those alone keeps. One NMS for the batch, a category per image and level (level ids are
	// below the candidates of an image): no category has more boxes than a level has, nor than
	// an image has.
	const double no_score = -std::numeric_limits<double>::infinity();
	const auto ranked = probs.masked_fill(valid.logical_not(), no_score);
	const int64_t per_image = boxes.size(1);
	const auto categories =
		(torch::arange(num_images, levels.options()).mul(per_image).view({-1, 1}) + levels.view({1, -1})).reshape(-1);
	// Each image's valid boxes offset by level as the per-image batched_nms offsets them (when it
	// does): the same rounding of the IoUs, the same boxes kept.
	const auto flat_boxes = boxes.reshape({-1, 4});
	const double none = -std::numeric_limits<double>::infinity();
	const auto largest = per_image > 0 ? boxes.amax(2).masked_fill(valid.logical_not(), none).amax(1)
					   : torch::full({num_images}, none, boxes.options());
	const auto offsets = ops::detail::batched_nms_offsets(
		levels.view({1, -1}).expand({num_images, per_image}).reshape(-1),
		torch::arange(num_images, levels.options()).view({-1, 1}).expand({num_images, per_image}).reshape(-1),
		valid.reshape(-1), largest, valid.sum(1));
	const auto keep = ops::detail::nms_mask_by_category_within(flat_boxes + offsets.unsqueeze(1), ranked.reshape(-1),
								   categories, config.rpn_nms_thresh,
								   most_per_level > 0 ? std::min(most_per_level, per_image) : per_image)
				  .view({num_images, per_image})
				  .logical_and(valid);

	// Each image's kept boxes by decreasing score (equal scores by index), then its first post_nms.
	const auto order = std::get<1>(
		probs.masked_fill(keep.logical_not(), no_score).sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
	const auto counts = keep.sum(1).clamp_max(post_nms).to(torch::kCPU); // the one wait
	const int64_t *count = counts.data_ptr<int64_t>();
	Proposals out;
	for (int64_t i = 0; i < num_images; i++) {
		const auto mine = order[i].narrow(0, 0, count[i]);
		out.boxes.push_back(boxes[i].index_select(0, mine));
		out.scores.push_back(probs[i].index_select(0, mine));
	}
	return out;
}

} // namespace frcnn::detail

// SPDX-License-Identifier: BSD-3-Clause
// Multi-scale RoIAlign, the box head, the predictor and postprocess_detections (torchvision's
// poolers.py and roi_heads.py), eval mode.
#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>

#include "frcnn/error.h"
#include "frcnn/ops.h"
#include "../ops/kernels.h"
#include "onednn_convolutions.h"
#include "parts.h"
#include "training.h"

namespace frcnn::detail {

namespace {

// remove_small_boxes' min_size in postprocess_detections.
constexpr double kMinDetectionSize = 1e-2;

} // namespace

MultiScaleRoIAlign::MultiScaleRoIAlign(size_t num_levels, int64_t output_size, int64_t sampling_ratio,
				       int size_divisible)
	: num_levels_(num_levels), output_size_(output_size), sampling_ratio_(sampling_ratio),
	  size_divisible_(size_divisible)
{
}

double MultiScaleRoIAlign::infer_scale(int64_t feature_size, int64_t image_size)
{
	// 2 ** round(log2(feature / image)), the log computed in float32 as torchvision does.
	const double approx = (double)feature_size / (double)image_size;
	const float lg = std::log2((float)approx);
	return std::pow(2.0, (double)std::nearbyint(lg));
}

torch::Tensor MultiScaleRoIAlign::map_levels(const torch::Tensor &boxes, int64_t k_min, int64_t k_max)
{
	// LevelMapper (FPN paper eq. 1) with canonical scale 224 at level 4.
	auto s = torch::sqrt(ops::box_area(boxes));
	// torchvision adds eps as a tensor of s's dtype; a scalar is rounded to that dtype too (and
	// needs no copy to the device).
	auto lvl = torch::floor((torch::log2(s / 224) + 4) + 1e-6);
	lvl = torch::clamp(lvl, (double)k_min, (double)k_max);
	return lvl.to(torch::kInt64) - k_min;
}

torch::Tensor MultiScaleRoIAlign::operator()(const std::vector<torch::Tensor> &features,
					     const std::vector<torch::Tensor> &proposals,
					     const std::vector<ImageSize> &image_sizes) const
{
	if (features.size() < num_levels_)
		throw Error("RoI pooling needs " + std::to_string(num_levels_) + " feature maps, got " +
			    std::to_string(features.size()));
	// torchvision's _setup_scales infers each level's scale from its height and the largest
	// unpadded image height of its first batch, and keeps them: 1/stride for any first batch of
	// images of ordinary shapes. Inferred from the padded height, they are 1/stride for every
	// batch, also one of images so flat (a resized height of 67 pixels or less) that padding
	// grows their height by sqrt(2) or more, where the unpadded height gives scales a power of
	// two off (torchvision's own, were such a batch its first).
	const int64_t batch_height = padded_batch_size(size_divisible_, image_sizes).first;
	std::vector<double> scales;
	for (size_t i = 0; i < num_levels_; i++)
		scales.push_back(infer_scale(features[i].size(-2), batch_height));

	// Rows of (image index, box) for the whole batch: a few operations rather than two per image.
	const auto boxes = torch::cat(proposals, 0);
	std::vector<int64_t> per_image;
	for (const auto &p : proposals)
		per_image.push_back(p.size(0));
	const auto rois = torch::cat(
		{image_of_each_row(per_image, boxes.device()).to(boxes.scalar_type()).unsqueeze(1), boxes}, 1);

	if (num_levels_ == 1)
		return ops::roi_align(features[0], rois, scales[0], output_size_, output_size_, sampling_ratio_,
				      false);

	const int64_t k_min = (int64_t)(-std::log2((float)scales.front()));
	const int64_t k_max = (int64_t)(-std::log2((float)scales.back()));
	auto levels = map_levels(boxes, k_min, k_max);

	// The RoIs sorted by level (stable: by index within a level) and each level's count: one
	// wait for the device, where selecting each level's RoIs waits once per level. Every RoI
	// belongs to one level, so every row of the result is written.
	const auto order = std::get<1>(levels.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
	const auto counts = count_values(levels, (int64_t)num_levels_).to(torch::kCPU);
	const int64_t *count = counts.data_ptr<int64_t>();
	const int64_t channels = features[0].size(1);
	auto result = torch::empty({rois.size(0), channels, output_size_, output_size_}, features[0].options());
	// Without a gradient to carry, each level pools straight into its rows of the result.
	bool differentiable = false;
	for (size_t level = 0; level < num_levels_; level++)
		differentiable |= torch::GradMode::is_enabled() && features[level].requires_grad();
	int64_t start = 0;
	for (size_t level = 0; level < num_levels_; level++) {
		if (count[level] == 0)
			continue;
		const auto idx = order.narrow(0, start, count[level]);
		start += count[level];
		const auto level_rois = rois.index_select(0, idx);
		if (differentiable) {
			auto pooled = ops::roi_align(features[level], level_rois, scales[level], output_size_,
						     output_size_, sampling_ratio_, false);
			result.index_copy_(0, idx, pooled.to(result.scalar_type()));
		} else {
			ops::roi_align_into(result, idx, features[level], level_rois, scales[level], output_size_,
					    output_size_, sampling_ratio_, false);
		}
	}
	return result;
}

TwoMLPHeadImpl::TwoMLPHeadImpl(int64_t in_features, int64_t representation)
{
	fc6 = register_module("fc6", torch::nn::Linear(in_features, representation));
	fc7 = register_module("fc7", torch::nn::Linear(representation, representation));
}

torch::Tensor TwoMLPHeadImpl::forward(const torch::Tensor &x)
{
	if (onednn && !is_training() && !torch::GradMode::is_enabled() && x.device().is_cpu() &&
	    x.scalar_type() == torch::kFloat && onednn->box_head_linears() == 2 && onednn->current())
		return onednn->box_head_linear(1, onednn->box_head_linear(0, x.flatten(1)));
	return torch::relu(fc7(torch::relu(fc6(x.flatten(1)))));
}

ConvFCHeadImpl::ConvFCHeadImpl(const ModelConfig &config, int64_t in_channels, int64_t resolution)
{
	int64_t channels = in_channels;
	for (int out : config.box_head_convs) {
		if (out < 1)
			throw Error("box_head_convs must hold positive channel counts, got " + std::to_string(out));
		convs.push_back(register_module(std::to_string(convs.size()),
						ConvNormAct(config, channels, out, 3, 1, 1, norm_after_convs(config),
							    Activation::ReLU)));
		channels = out;
	}
	// Index convs.size() is the Flatten, which has no parameters.
	fc = register_module(std::to_string(convs.size() + 1),
			     torch::nn::Linear(channels * resolution * resolution, config.box_head_size));
}

torch::Tensor ConvFCHeadImpl::forward(const torch::Tensor &x)
{
	torch::Tensor y;
	if (onednn && !is_training() && !torch::GradMode::is_enabled() && onednn->accepts(x) && x.size(0) > 0 &&
	    onednn->has_box_head() && onednn->current()) {
		y = onednn->box_head(x);
	} else {
		y = x;
		for (auto &c : convs)
			y = c(y);
	}
	// flatten copies a channels-last y into the (C, H, W) order the linear layer's weights expect.
	if (onednn && !is_training() && !torch::GradMode::is_enabled() && y.device().is_cpu() &&
	    y.scalar_type() == torch::kFloat && onednn->box_head_linears() == 1 && onednn->current())
		return onednn->box_head_linear(0, y.flatten(1));
	return torch::relu(fc(y.flatten(1)));
}

FastRCNNPredictorImpl::FastRCNNPredictorImpl(int64_t in_features, int64_t num_classes)
{
	cls_score = register_module("cls_score", torch::nn::Linear(in_features, num_classes));
	bbox_pred = register_module("bbox_pred", torch::nn::Linear(in_features, num_classes * 4));
}

std::pair<torch::Tensor, torch::Tensor> FastRCNNPredictorImpl::forward(const torch::Tensor &x)
{
	auto flat = x.flatten(1);
	return {cls_score(flat), bbox_pred(flat)};
}

RoIHeadsImpl::RoIHeadsImpl(const ModelConfig &config_)
	: config(config_),
	  box_coder({10.0, 10.0, 5.0, 5.0}),
	  // torchvision pools from the feature maps named '0'..'3' that the backbone has.
	  box_roi_pool(backbone_levels(config_), config_.box_roi_output_size, config_.box_roi_sampling_ratio,
		       config_.size_divisible)
{
	if (config.num_classes < 2)
		throw Error("num_classes must be at least 2 (background + one class), got " +
			    std::to_string(config.num_classes));
	const int64_t pooled = config.fpn_channels * config.box_roi_output_size * config.box_roi_output_size;
	if (config.box_head == "two_mlp")
		box_head = torch::nn::AnyModule(TwoMLPHead(pooled, config.box_head_size));
	else if (config.box_head == "conv_fc")
		box_head = torch::nn::AnyModule(ConvFCHead(config, config.fpn_channels, config.box_roi_output_size));
	else
		throw Error("box_head must be 'two_mlp' or 'conv_fc', got '" + config.box_head + "'");
	register_module("box_head", box_head.ptr());
	box_predictor = register_module("box_predictor", FastRCNNPredictor(config.box_head_size, config.num_classes));
}

RoIHeadsOutput RoIHeadsImpl::forward(const std::vector<torch::Tensor> &features,
				     const std::vector<torch::Tensor> &proposals,
				     const std::vector<ImageSize> &image_sizes, const std::vector<Target> *targets)
{
	if (targets == nullptr) {
		auto pooled = box_roi_pool(features, proposals, image_sizes);
		auto [class_logits, box_regression] = box_predictor(box_head.forward(pooled));
		RoIHeadsOutput out;
		// An fp16 model's scores and boxes are computed in float.
		out.detections = postprocess(class_logits.to(geometry_dtype(class_logits)),
					     box_regression.to(geometry_dtype(box_regression)), proposals,
					     image_sizes);
		return out;
	}

	// select_training_samples: ground truth appended to the proposals, matched, subsampled.
	const Matcher matcher{config.box_fg_iou_thresh, config.box_bg_iou_thresh, false};
	std::vector<torch::Tensor> sampled_proposals, labels, matched_gt_boxes, image_labels_list;
	std::vector<torch::Tensor> all_proposals;
	for (size_t i = 0; i < proposals.size(); i++) {
		const auto gt = (*targets)[i].boxes.to(proposals[i].scalar_type());
		const auto &gt_labels = (*targets)[i].labels;
		auto props = torch::cat({proposals[i], gt}, 0);
		torch::Tensor matched, image_labels;
		if (gt.numel() == 0) {
			matched = torch::zeros({props.size(0)}, torch::TensorOptions().dtype(torch::kInt64).device(props.device()));
			image_labels = torch::zeros({props.size(0)}, matched.options());
		} else {
			auto matches = matcher(ops::box_iou(gt, props));
			matched = matches.clamp_min(0);
			image_labels = gt_labels.index({matched}).to(torch::kInt64);
			image_labels.masked_fill_(matches == Matcher::kBelowLow, 0);
			image_labels.masked_fill_(matches == Matcher::kBetween, -1);
		}
		all_proposals.push_back(props);
		labels.push_back(matched);
		image_labels_list.push_back(image_labels);
	}
	const Sampler sampler{config.box_batch_size_per_image, config.box_positive_fraction};
	auto [pos_masks, neg_masks] = sampler(image_labels_list);
	std::vector<torch::Tensor> regression_targets, sampled_labels;
	for (size_t i = 0; i < all_proposals.size(); i++) {
		auto inds = torch::where(pos_masks[i].to(torch::kBool) | neg_masks[i].to(torch::kBool))[0];
		auto props = all_proposals[i].index({inds});
		auto gt = (*targets)[i].boxes.to(props.scalar_type());
		if (gt.numel() == 0)
			gt = torch::zeros({1, 4}, props.options());
		auto matched_gt = gt.index({labels[i].index({inds})});
		sampled_proposals.push_back(props);
		sampled_labels.push_back(image_labels_list[i].index({inds}));
		regression_targets.push_back(box_coder.encode(matched_gt, props));
	}

	auto pooled = box_roi_pool(features, sampled_proposals, image_sizes);
	auto [class_logits, box_regression] = box_predictor(box_head.forward(pooled));

	// fastrcnn_loss
	auto all_labels = torch::cat(sampled_labels, 0);
	auto all_targets = torch::cat(regression_targets, 0);
	RoIHeadsOutput out;
	out.losses["loss_classifier"] = torch::nn::functional::cross_entropy(class_logits, all_labels);
	auto pos = torch::where(all_labels > 0)[0];
	auto labels_pos = all_labels.index({pos});
	const int64_t n = class_logits.size(0);
	auto per_class = box_regression.reshape({n, box_regression.size(-1) / 4, 4});
	out.losses["loss_box_reg"] =
		smooth_l1_sum(per_class.index({pos, labels_pos}), all_targets.index({pos}), 1.0 / 9) /
		all_labels.numel();
	return out;
}

std::vector<Detections> RoIHeadsImpl::postprocess(const torch::Tensor &class_logits,
						  const torch::Tensor &box_regression,
						  const std::vector<torch::Tensor> &proposals,
						  const std::vector<ImageSize> &image_sizes) const
{
	if (class_logits.is_cuda())
		return postprocess_batched(class_logits, box_regression, proposals, image_sizes);
	using torch::indexing::Slice;
	const int64_t num_classes = class_logits.size(-1);
	std::vector<int64_t> per_image;
	for (const auto &p : proposals)
		per_image.push_back(p.size(0));
	auto pred_boxes = box_coder.decode(box_regression, torch::cat(proposals, 0));
	auto pred_scores = torch::softmax(class_logits, -1);
	auto boxes_list = pred_boxes.split_with_sizes(per_image, 0);
	auto scores_list = pred_scores.split_with_sizes(per_image, 0);

	std::vector<Detections> result;
	for (size_t i = 0; i < proposals.size(); i++) {
		auto boxes = ops::clip_boxes_to_image(boxes_list[i], image_sizes[i].first, image_sizes[i].second);
		auto scores = scores_list[i];
		auto labels = torch::arange(num_classes, torch::TensorOptions().dtype(torch::kInt64).device(scores.device()))
				      .view({1, -1})
				      .expand_as(scores);
		// Drop the background class, then one candidate per (proposal, class).
		boxes = boxes.index({Slice(), Slice(1)}).reshape({-1, 4});
		scores = scores.index({Slice(), Slice(1)}).reshape(-1);
		labels = labels.index({Slice(), Slice(1)}).reshape(-1);

		auto inds = torch::where(scores > config.box_score_thresh)[0];
		boxes = boxes.index({inds});
		scores = scores.index({inds});
		labels = labels.index({inds});
		auto keep = ops::remove_small_boxes(boxes, kMinDetectionSize);
		boxes = boxes.index({keep});
		scores = scores.index({keep});
		labels = labels.index({keep});
		keep = ops::batched_nms(boxes, scores, labels, config.box_nms_thresh);
		keep = keep.slice(0, 0, config.box_detections_per_img);
		result.push_back({boxes.index({keep}), labels.index({keep}), scores.index({keep})});
	}
	return result;
}

std::vector<Detections> RoIHeadsImpl::postprocess_batched(const torch::Tensor &class_logits,
							  const torch::Tensor &box_regression,
							  const std::vector<torch::Tensor> &proposals,
							  const std::vector<ImageSize> &image_sizes) const
{
	using torch::indexing::None;
	using torch::indexing::Slice;
	const int64_t num_classes = class_logits.size(-1);
	const int64_t num_images = (int64_t)proposals.size();
	const auto device = class_logits.device();
	const auto long_options = torch::TensorOptions().dtype(torch::kInt64).device(device);
	std::vector<int64_t> per_image;
	for (const auto &p : proposals)
		per_image.push_back(p.size(0));
	auto boxes = box_coder.decode(box_regression, torch::cat(proposals, 0)); // [R, C, 4]
	auto scores = torch::softmax(class_logits, -1);				  // [R, C]
	const int64_t rows = boxes.size(0);
	const auto image_of_row = image_of_each_row(per_image, device);

	// clip_boxes_to_image with each row's own image size.
	const auto [heights, widths] = image_size_tensors(image_sizes, device, boxes.scalar_type());
	boxes = clip_boxes_to_sizes(boxes, heights.index({image_of_row}).view({-1, 1}),
				    widths.index({image_of_row}).view({-1, 1}));

	// Drop the background class, then one candidate per (proposal, class).
	auto labels = torch::arange(num_classes, long_options).view({1, -1}).expand({rows, num_classes});
	auto images = image_of_row.view({-1, 1}).expand({rows, num_classes});
	boxes = boxes.index({Slice(), Slice(1)}).reshape({-1, 4});
	scores = scores.index({Slice(), Slice(1)}).reshape(-1);
	labels = labels.index({Slice(), Slice(1)}).reshape(-1);
	images = images.index({Slice(), Slice(1)}).reshape(-1);

	// The score threshold and remove_small_boxes as one selection.
	const auto ws = boxes.select(1, 2) - boxes.select(1, 0);
	const auto hs = boxes.select(1, 3) - boxes.select(1, 1);
	const auto is_candidate = scores.gt(config.box_score_thresh)
					  .logical_and(ws.ge(kMinDetectionSize))
					  .logical_and(hs.ge(kMinDetectionSize));
	// Each image's largest coordinate of its candidates, for the offsets of its NMS (below): a
	// row's, then the image's from its rows (a small [images, rows] table).
	const double none = -std::numeric_limits<double>::infinity();
	const int64_t classes = num_classes - 1;
	const auto row_candidates = is_candidate.view({rows, classes});
	const auto of_image = image_of_row.view({1, -1}).eq(torch::arange(num_images, long_options).view({-1, 1}));
	const auto largest = rows > 0 ? boxes.view({rows, classes, 4})
						.amax(2)
						.masked_fill(row_candidates.logical_not(), none)
						.amax(1)
						.view({1, -1})
						.masked_fill(of_image.logical_not(), none)
						.amax(1)
				      : torch::full({num_images}, none, boxes.options());
	const auto candidates = torch::nonzero(is_candidate).squeeze(1);
	boxes = boxes.index({candidates});
	scores = scores.index({candidates});
	labels = labels.index({candidates});
	images = images.index({candidates});
	// NMS per (image, class) pair, then the kept candidates grouped by image, by decreasing score
	// within (equal scores by index), the suppressed ones after them all: one wait for the device
	// (the counts) instead of one for the kept list and one for the counts.
	// An (image, class) pair has at most one candidate per proposal of its image.
	const int64_t most_proposals = *std::max_element(per_image.begin(), per_image.end());
	// Each image's boxes offset by class as the per-image batched_nms offsets them (when it
	// does): the same rounding of the IoUs, the same boxes kept.
	const auto offsets = ops::detail::batched_nms_offsets(labels, images, torch::Tensor(), largest,
							      count_values(images, num_images));
	const auto kept = ops::detail::nms_mask_by_category_within(boxes + offsets.unsqueeze(1), scores,
								   images * num_classes + labels, config.box_nms_thresh,
								   most_proposals);
	const auto dropped = kept.logical_not();
	auto keep = std::get<1>(scores.masked_fill(dropped, -std::numeric_limits<double>::infinity())
					.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
	const auto group = images.masked_fill(dropped, num_images);
	keep = keep.index_select(0, std::get<1>(group.index_select(0, keep).sort(/*stable=*/true, 0, false)));
	const auto counts = count_values(group, num_images + 1).to(torch::kCPU);
	const int64_t *count = counts.data_ptr<int64_t>();

	// Each image's best box_detections_per_img, gathered for the whole batch at once: one
	// selection per tensor rather than one per tensor and image; an image's detections are
	// then rows of the result.
	std::vector<torch::Tensor> chosen;
	std::vector<int64_t> chosen_counts;
	int64_t start = 0;
	for (int64_t i = 0; i < num_images; i++) {
		const int64_t n = std::min<int64_t>(count[i], config.box_detections_per_img);
		chosen.push_back(keep.slice(0, start, start + n));
		chosen_counts.push_back(n);
		start += count[i];
	}
	const auto selected = torch::cat(chosen, 0);
	const auto image_boxes = boxes.index_select(0, selected).split_with_sizes(chosen_counts, 0);
	const auto image_labels = labels.index_select(0, selected).split_with_sizes(chosen_counts, 0);
	const auto image_scores = scores.index_select(0, selected).split_with_sizes(chosen_counts, 0);
	std::vector<Detections> result;
	for (int64_t i = 0; i < num_images; i++)
		result.push_back({image_boxes[i], image_labels[i], image_scores[i]});
	return result;
}

} // namespace frcnn::detail

// SPDX-License-Identifier: BSD-3-Clause
#include "training.h"

#include <sstream>

#include <ATen/core/Reduction.h>
#include <torch/torch.h>

#include "frcnn/error.h"

namespace frcnn::detail {

torch::Tensor Matcher::operator()(const torch::Tensor &quality) const
{
	if (quality.numel() == 0) {
		if (quality.size(0) == 0)
			throw Error("No ground-truth boxes available for one of the images during training");
		throw Error("No proposal boxes available for one of the images during training");
	}
	auto [matched_vals, matches] = quality.max(0);
	torch::Tensor all_matches;
	if (allow_low_quality_matches)
		all_matches = matches.clone();
	auto below = matched_vals < low;
	auto between = (matched_vals >= low) & (matched_vals < high);
	matches.masked_fill_(below, kBelowLow);
	matches.masked_fill_(between, kBetween);
	if (allow_low_quality_matches) {
		// Each ground truth keeps the predictions that tie for its best IoU, even below `low`.
		auto highest = std::get<0>(quality.max(1));
		auto pairs = torch::where(quality == highest.unsqueeze(1));
		auto to_update = pairs[1];
		matches.index_put_({to_update}, all_matches.index({to_update}));
	}
	return matches;
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
Sampler::operator()(const std::vector<torch::Tensor> &labels) const
{
	std::vector<torch::Tensor> pos_masks, neg_masks;
	for (const auto &l : labels) {
		auto positive = torch::where(l >= 1)[0];
		auto negative = torch::where(l == 0)[0];
		int64_t num_pos = (int64_t)(batch_size_per_image * positive_fraction);
		num_pos = std::min(positive.numel(), num_pos);
		int64_t num_neg = std::min(negative.numel(), batch_size_per_image - num_pos);
		auto perm1 = torch::randperm(positive.numel(), positive.options()).slice(0, 0, num_pos);
		auto perm2 = torch::randperm(negative.numel(), negative.options()).slice(0, 0, num_neg);
		auto pos_mask = torch::zeros_like(l, torch::kUInt8);
		auto neg_mask = torch::zeros_like(l, torch::kUInt8);
		pos_mask.index_put_({positive.index({perm1})}, 1);
		neg_mask.index_put_({negative.index({perm2})}, 1);
		pos_masks.push_back(pos_mask);
		neg_masks.push_back(neg_mask);
	}
	return {pos_masks, neg_masks};
}

void check_targets(const std::vector<Target> &targets, int64_t num_classes)
{
	for (size_t i = 0; i < targets.size(); i++) {
		const auto &boxes = targets[i].boxes;
		const auto &labels = targets[i].labels;
		if (!boxes.defined() || boxes.dim() != 2 || boxes.size(-1) != 4)
			throw Error("Expected target boxes to be a tensor of shape [N, 4], got " +
				    (boxes.defined() ? c10::str(boxes.sizes()) : std::string("nothing")) + ".");
		if (!boxes.is_floating_point())
			throw Error("Expected target boxes to be of type float, got " +
				    std::string(c10::toString(boxes.scalar_type())) + ".");
		if (!labels.defined() || labels.dim() != 1 || labels.size(0) != boxes.size(0))
			throw Error("Expected target labels to be a tensor of shape [" + std::to_string(boxes.size(0)) +
				    "] (one per box), got " +
				    (labels.defined() ? c10::str(labels.sizes()) : std::string("nothing")) + ".");
		if (labels.is_floating_point())
			throw Error("Expected target labels to be of type int64, got " +
				    std::string(c10::toString(labels.scalar_type())) + ".");
		auto degenerate = (boxes.slice(1, 2) <= boxes.slice(1, 0, 2)).any(1);
		if (degenerate.any().item<bool>()) {
			auto idx = torch::where(degenerate)[0][0].item<int64_t>();
			auto b = boxes[idx].to(torch::kDouble);
			std::ostringstream s;
			s << "All bounding boxes should have positive height and width. Found invalid box ["
			  << b[0].item<double>() << ", " << b[1].item<double>() << ", " << b[2].item<double>() << ", "
			  << b[3].item<double>() << "] for target at index " << i << ".";
			throw Error(s.str());
		}
		if (labels.numel() > 0) {
			auto lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
			if (lo < 1 || hi >= num_classes)
				throw Error("Target labels must be in 1.." + std::to_string(num_classes - 1) +
					    " (0 is the background), got " + std::to_string(lo < 1 ? lo : hi) +
					    " for target at index " + std::to_string(i) + ".");
		}
	}
}

torch::Tensor smooth_l1_sum(const torch::Tensor &input, const torch::Tensor &target, double beta)
{
	// The ATen function: its signature is the same in LibTorch 1.x and 2.x, unlike the functional's.
	return torch::smooth_l1_loss(input, target, at::Reduction::Sum, beta);
}

} // namespace frcnn::detail

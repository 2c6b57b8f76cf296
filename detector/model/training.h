// SPDX-License-Identifier: BSD-3-Clause
// The training-time pieces of torchvision's detection models: Matcher,
// BalancedPositiveNegativeSampler, target checks and the two losses.
#pragma once

#include <utility>
#include <vector>

#include <torch/types.h>

#include "frcnn/model.h"

namespace frcnn::detail {

// _utils.Matcher: for each prediction (column of the [G, P] IoU matrix) the index of its ground
// truth, or kBelowLow (-1) / kBetween (-2).
struct Matcher {
	static constexpr int64_t kBelowLow = -1;
	static constexpr int64_t kBetween = -2;
	double high, low;
	bool allow_low_quality_matches;
	torch::Tensor operator()(const torch::Tensor &match_quality) const;
};

// _utils.BalancedPositiveNegativeSampler: masks of the sampled positives and negatives per image.
struct Sampler {
	int64_t batch_size_per_image;
	double positive_fraction;
	std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
	operator()(const std::vector<torch::Tensor> &labels) const;
};

// GeneralizedRCNN's target checks, with torchvision's messages. Throws frcnn::Error.
void check_targets(const std::vector<Target> &targets, int64_t num_classes);

// smooth_l1_loss(beta, reduction sum)
torch::Tensor smooth_l1_sum(const torch::Tensor &input, const torch::Tensor &target, double beta);

} // namespace frcnn::detail

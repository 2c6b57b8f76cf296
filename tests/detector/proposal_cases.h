// SPDX-License-Identifier: BSD-3-Clause
// Proposal candidates as the RPN hands them to its filtering (top-k boxes per level, their
// objectness), made to exercise every part of it, and the kept proposals as a set; and box head
// outputs for the post-processing.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "parts.h"

namespace frcnn::test {

struct ProposalCase {
	std::vector<detail::ImageSize> sizes;
	torch::Tensor top_boxes; // [N, K, 4]
	torch::Tensor probs;	 // [N, K]
	torch::Tensor levels;	 // [K]
	double score_thresh;	 // rpn_score_thresh the case is made for
};

// Four images of different sizes, 5 levels of 600 candidates each (more than the 1000 boxes
// below which torchvision's batched_nms offsets the boxes on the CPU, so both filterings run
// NMS on the boxes' own coordinates): corners beyond the image (clipping), boxes just under and
// on the size limit, near copies of other boxes of their level (NMS), and a last image whose
// scores are all under the threshold.
inline ProposalCase random_proposal_case(uint64_t seed)
{
	using torch::indexing::Slice;
	torch::manual_seed(seed);
	ProposalCase c;
	c.sizes = {{240, 320}, {480, 640}, {300, 200}, {200, 260}};
	c.score_thresh = 0.2;
	const int64_t num_levels = 5, per_level = 600, k = num_levels * per_level;
	c.levels = torch::arange(num_levels, torch::kInt64).repeat_interleave(per_level);
	std::vector<torch::Tensor> image_boxes;
	for (const auto &s : c.sizes) {
		auto xy = torch::rand({k, 2}) * torch::tensor({(float)s.second + 100, (float)s.first + 100}) - 50;
		auto wh = torch::rand({k, 2}) * 200;
		auto boxes = torch::cat({xy, xy + wh}, 1);
		boxes.index_put_({Slice(0, 20), 2}, boxes.index({Slice(0, 20), 0}) + 5e-4);
		boxes.index_put_({Slice(20, 40), 3}, boxes.index({Slice(20, 40), 1}) + 1e-3);
		auto copies = torch::arange(100, 400);
		boxes.index_put_({copies + 1000}, boxes.index({copies}) + torch::randn({300, 4}) * 4);
		image_boxes.push_back(boxes);
	}
	c.top_boxes = torch::stack(image_boxes);
	const int64_t num_images = (int64_t)c.sizes.size();
	c.probs = torch::sigmoid(torch::randn({num_images, k}) * 2);
	c.probs[num_images - 1] = c.probs[num_images - 1] * (c.score_thresh * 0.95);
	return c;
}

// Box head outputs for post-processing: a tiny model's RoI heads with 6 classes (score threshold
// 0.05), three images of different sizes with 400 proposals each, class logits and box deltas
// spread enough that every image fills its 100 detections.
struct DetectionCase {
	ModelConfig config;
	detail::RoIHeads heads{nullptr};
	std::vector<detail::ImageSize> sizes;
	std::vector<torch::Tensor> proposals;
	torch::Tensor logits, regression;
};

// A DetectionCase's model after torch::manual_seed(seed): the tiny preset's RoI heads, with the
// config `configure` sets (classes, thresholds).
template <typename Configure> DetectionCase tiny_heads_case(uint64_t seed, Configure configure)
{
	torch::manual_seed(seed);
	DetectionCase c;
	c.config = model_preset("tiny");
	configure(c.config);
	c.heads = detail::RoIHeads(c.config);
	return c;
}

inline DetectionCase random_detection_case(uint64_t seed)
{
	DetectionCase c = tiny_heads_case(seed, [](ModelConfig &config) {
		config.num_classes = 6;
		config.box_score_thresh = 0.05;
	});
	c.sizes = {{240, 320}, {480, 640}, {300, 200}};
	for (const auto &s : c.sizes) {
		auto xy = torch::rand({400, 2}) * torch::tensor({(float)s.second, (float)s.first});
		auto wh = torch::rand({400, 2}) * 80 + 1;
		c.proposals.push_back(torch::cat({xy, xy + wh}, 1));
	}
	const int64_t rows = 3 * 400;
	c.logits = torch::randn({rows, c.config.num_classes}) * 3;
	c.regression = torch::randn({rows, c.config.num_classes * 4}) * 0.5;
	return c;
}

// Box head outputs of 91 classes on 40 frames of 1333x800, 300 proposals each crowded round 6
// centres, the scores on classes 88..90: a few hundred candidates an image, so that the per-image
// NMS offsets the boxes by class (torchvision's trick) and rounds IoUs on coordinates up to
// 120000, where a pair near the threshold is decided otherwise than on the boxes' own
// coordinates (seed 13: one image of the 40). Every kept box is compared (1000 detections).
inline DetectionCase crowded_detection_case(uint64_t seed)
{
	DetectionCase c = tiny_heads_case(seed, [](ModelConfig &config) {
		config.num_classes = 91;
		config.box_detections_per_img = 1000;
	});
	const int64_t num_images = 40, per_image = 300;
	c.sizes.assign(num_images, {800, 1333});
	for (int64_t i = 0; i < num_images; i++) {
		const auto centres = torch::rand({6, 2}) * torch::tensor({1150.0f, 650.0f}) + 50;
		const auto xy = centres.index_select(0, torch::randint(6, {per_image})) + torch::randn({per_image, 2}) * 5;
		c.proposals.push_back(torch::cat({xy, xy + torch::rand({per_image, 2}) * 30 + 70}, 1));
	}
	const int64_t rows = num_images * per_image;
	c.logits = torch::randn({rows, 91}) - 4;
	c.logits.narrow(1, 88, 3).add_(torch::randn({rows, 3}) * 0.3 + 5);
	c.regression = torch::randn({rows, 91 * 4}) * 0.05;
	return c;
}

// Each image's candidates of a DetectionCase (score above the threshold; its boxes all pass the
// size filter).
inline torch::Tensor candidates_per_image(const DetectionCase &c)
{
	return torch::softmax(c.logits, 1)
		.narrow(1, 1, c.config.num_classes - 1)
		.gt(c.config.box_score_thresh)
		.view({(int64_t)c.sizes.size(), -1})
		.sum(1);
}

// (score, x1, y1, x2, y2) of each proposal, sorted: the proposals as a set, whatever order equal
// scores came out in.
inline std::vector<std::array<float, 5>> proposal_rows(const torch::Tensor &boxes, const torch::Tensor &scores)
{
	std::vector<std::array<float, 5>> rows;
	const auto b = boxes.to(torch::kCPU, torch::kFloat).contiguous();
	const auto s = scores.to(torch::kCPU, torch::kFloat).contiguous();
	const float *bp = b.data_ptr<float>(), *sp = s.data_ptr<float>();
	for (int64_t i = 0; i < b.size(0); i++)
		rows.push_back({sp[i], bp[4 * i], bp[4 * i + 1], bp[4 * i + 2], bp[4 * i + 3]});
	std::sort(rows.begin(), rows.end());
	return rows;
}

} // namespace frcnn::test

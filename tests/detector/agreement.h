// SPDX-License-Identifier: BSD-3-Clause
// How far two sets of detections agree when the arithmetic was reordered: each expected detection
// looked up among the others by label and box, since two of nearly equal score may trade places.
#pragma once

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "frcnn/model.h"

namespace frcnn::test {

struct Agreement {
	int64_t found = 0;   // expected detections with a detection of their label within the tolerance
	double worst = 0;    // largest distance (max over coordinates, px) to the nearest of their label
};

inline Agreement agreement(const torch::Tensor &expected_boxes, const torch::Tensor &expected_labels,
			   const Detections &got, double tolerance_px)
{
	Agreement a;
	if (expected_boxes.size(0) == 0)
		return a;
	const auto distance = (expected_boxes.unsqueeze(1) - got.boxes.unsqueeze(0)).abs().amax(2); // [expected, got]
	const auto same_label = expected_labels.unsqueeze(1) == got.labels.unsqueeze(0);
	const auto nearest = distance.masked_fill(~same_label, INFINITY).amin(1);
	a.found = (nearest <= tolerance_px).sum().item<int64_t>();
	a.worst = nearest.max().item<double>();
	return a;
}

// What the tests hold the oneDNN convolutions' detections on seeded weights to, against
// torchvision's: the same labels (two of nearly equal score may come in the other order), 90% of
// the boxes within 0.5 px of one of the same label, all within 2 px. Detections whose expected
// score is within 1e-3 of the lowest kept (the cut of detections per image or of the score
// threshold) may give way to one of nearly equal score from the other side of the cut: they are
// held to neither. Prints the figures.
inline void expect_reordered_detections_agree(const Detections &d, const torch::Tensor &expected_boxes,
					      const std::vector<int64_t> &expected_labels,
					      const std::vector<double> &expected_scores, const std::string &what)
{
	ASSERT_EQ(d.labels.size(0), (int64_t)expected_labels.size());
	ASSERT_EQ(expected_scores.size(), expected_labels.size());
	if (expected_labels.empty())
		return;
	const double cut = *std::min_element(expected_scores.begin(), expected_scores.end()) + 1e-3;
	const torch::Tensor above = torch::tensor(expected_scores) >= cut;
	std::vector<int64_t> labels(d.labels.data_ptr<int64_t>(), d.labels.data_ptr<int64_t>() + d.labels.numel());
	std::vector<int64_t> held_labels;
	for (size_t i = 0; i < expected_labels.size(); i++)
		if (expected_scores[i] >= cut)
			held_labels.push_back(expected_labels[i]);
	std::sort(labels.begin(), labels.end());
	std::sort(held_labels.begin(), held_labels.end());
	EXPECT_TRUE(std::includes(labels.begin(), labels.end(), held_labels.begin(), held_labels.end()))
		<< what << ": labels above the cut are missing";
	const auto a = agreement(expected_boxes, torch::tensor(expected_labels), d, 0.5);
	const auto held = agreement(expected_boxes.index({ above }), torch::tensor(expected_labels).index({ above }), d, 0.5);
	std::printf("%s: %ld of %zu within 0.5 px, worst %.3f px (%.3f px of the %zu above the cut)\n", what.c_str(),
		    (long)a.found, expected_labels.size(), a.worst, held.worst, held_labels.size());
	EXPECT_GE(a.found, (int64_t)expected_labels.size() * 90 / 100);
	EXPECT_LE(held.worst, 2.0);
}

} // namespace frcnn::test

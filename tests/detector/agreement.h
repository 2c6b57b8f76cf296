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
// the boxes within 0.5 px of one of the same label, all within 2 px. Prints the figures.
inline void expect_reordered_detections_agree(const Detections &d, const torch::Tensor &expected_boxes,
					      const std::vector<int64_t> &expected_labels, const std::string &what)
{
	ASSERT_EQ(d.labels.size(0), (int64_t)expected_labels.size());
	std::vector<int64_t> labels(d.labels.data_ptr<int64_t>(), d.labels.data_ptr<int64_t>() + d.labels.numel());
	std::vector<int64_t> sorted_expected = expected_labels;
	std::sort(labels.begin(), labels.end());
	std::sort(sorted_expected.begin(), sorted_expected.end());
	EXPECT_EQ(labels, sorted_expected);
	const auto a = agreement(expected_boxes, torch::tensor(expected_labels), d, 0.5);
	std::printf("%s: %ld of %zu within 0.5 px, worst %.3f px\n", what.c_str(), (long)a.found,
		    expected_labels.size(), a.worst);
	EXPECT_GE(a.found, (int64_t)expected_labels.size() * 90 / 100);
	EXPECT_LE(a.worst, 2.0);
}

} // namespace frcnn::test

// SPDX-License-Identifier: BSD-3-Clause
// How far two sets of detections agree when the arithmetic was reordered: each expected detection
// looked up among the others by label and box, since two of nearly equal score may trade places.
#pragma once

#include <cmath>
#include <cstdint>

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

} // namespace frcnn::test

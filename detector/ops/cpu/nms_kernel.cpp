// SPDX-License-Identifier: BSD-3-Clause
#include "../kernels.h"

#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>

namespace frcnn::ops::detail {

namespace {

// Greedy suppression over order[begin, end), which holds box indices by decreasing score.
// The arithmetic is torchvision's (area and IoU in scalar_t, compared with '>' against the
// threshold as a double), so that the same boxes are kept when an IoU lands next to it.
template<typename scalar_t>
void suppress(const scalar_t *boxes, const scalar_t *areas, const int64_t *order, int64_t count,
	      double threshold, uint8_t *suppressed, uint8_t *kept_mask, int64_t *kept,
	      int64_t &num_kept)
{
	for (int64_t a = 0; a < count; a++) {
		const int64_t i = order[a];
		if (suppressed[i])
			continue;
		if (kept)
			kept[num_kept++] = i;
		if (kept_mask)
			kept_mask[i] = 1;

		const scalar_t ix1 = boxes[i * 4 + 0];
		const scalar_t iy1 = boxes[i * 4 + 1];
		const scalar_t ix2 = boxes[i * 4 + 2];
		const scalar_t iy2 = boxes[i * 4 + 3];
		const scalar_t iarea = areas[i];

		for (int64_t b = a + 1; b < count; b++) {
			const int64_t j = order[b];
			if (suppressed[j])
				continue;
			const scalar_t xx1 = std::max(ix1, boxes[j * 4 + 0]);
			const scalar_t yy1 = std::max(iy1, boxes[j * 4 + 1]);
			const scalar_t xx2 = std::min(ix2, boxes[j * 4 + 2]);
			const scalar_t yy2 = std::min(iy2, boxes[j * 4 + 3]);
			const scalar_t w = std::max(static_cast<scalar_t>(0), xx2 - xx1);
			const scalar_t h = std::max(static_cast<scalar_t>(0), yy2 - yy1);
			const scalar_t inter = w * h;
			const scalar_t iou = inter / (iarea + areas[j] - inter);
			if (iou > threshold)
				suppressed[j] = 1;
		}
	}
}

template<typename scalar_t>
std::vector<scalar_t> box_areas(const scalar_t *boxes, int64_t n)
{
	std::vector<scalar_t> areas(n);
	for (int64_t i = 0; i < n; i++)
		areas[i] = (boxes[i * 4 + 2] - boxes[i * 4 + 0]) *
			   (boxes[i * 4 + 3] - boxes[i * 4 + 1]);
	return areas;
}

// Indices by decreasing score; equal scores keep their input order. torch's own stable sort is
// used (not std::stable_sort) so that NaN scores are ordered exactly as torchvision orders them.
torch::Tensor score_order(const torch::Tensor &scores)
{
	return std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true))
		.contiguous();
}

} // namespace

torch::Tensor nms_cpu(const torch::Tensor &boxes, const torch::Tensor &scores, double iou_threshold)
{
	const int64_t n = boxes.size(0);
	if (n == 0)
		return torch::empty({0}, boxes.options().dtype(torch::kLong));

	const torch::Tensor order = score_order(scores);
	torch::Tensor keep = torch::empty({n}, boxes.options().dtype(torch::kLong));
	int64_t num_kept = 0;

	AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_cpu", [&] {
		const scalar_t *b = boxes.data_ptr<scalar_t>();
		const std::vector<scalar_t> areas = box_areas(b, n);
		std::vector<uint8_t> suppressed(n, 0);
		suppress<scalar_t>(b, areas.data(), order.data_ptr<int64_t>(), n, iou_threshold,
				   suppressed.data(), nullptr, keep.data_ptr<int64_t>(), num_kept);
	});

	return keep.narrow(0, 0, num_kept);
}

torch::Tensor nms_per_category_cpu(const torch::Tensor &boxes, const torch::Tensor &scores,
				   const torch::Tensor &idxs, double iou_threshold)
{
	const int64_t n = boxes.size(0);
	torch::Tensor mask = torch::zeros({n}, boxes.options().dtype(torch::kBool));
	if (n == 0)
		return mask;

	// Restricting the global score order to one category gives the order a separate NMS of
	// that category would use (stable sort, ties by index), so one sort serves all categories.
	const torch::Tensor order_t = score_order(scores);
	std::vector<int64_t> order(order_t.data_ptr<int64_t>(), order_t.data_ptr<int64_t>() + n);
	const int64_t *category = idxs.data_ptr<int64_t>();
	std::stable_sort(order.begin(), order.end(),
			 [category](int64_t a, int64_t b) { return category[a] < category[b]; });

	AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_per_category_cpu", [&] {
		const scalar_t *b = boxes.data_ptr<scalar_t>();
		const std::vector<scalar_t> areas = box_areas(b, n);
		std::vector<uint8_t> suppressed(n, 0);
		uint8_t *kept_mask = reinterpret_cast<uint8_t *>(mask.data_ptr<bool>());
		int64_t unused = 0;
		for (int64_t start = 0; start < n;) {
			int64_t end = start + 1;
			while (end < n && category[order[end]] == category[order[start]])
				end++;
			suppress<scalar_t>(b, areas.data(), order.data() + start, end - start,
					   iou_threshold, suppressed.data(), kept_mask, nullptr,
					   unused);
			start = end;
		}
	});

	return mask;
}

} // namespace frcnn::ops::detail

// SPDX-License-Identifier: BSD-3-Clause
// The arithmetic follows pycocotools' COCOeval (evaluateImg, accumulate, summarize) step by step,
// including its float details, so that the numbers agree with what Python users compare against.
#include "frcnn/evaluation.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <map>
#include <numeric>
#include <string>

#include "frcnn/error.h"

namespace frcnn {

namespace {

constexpr int kIouCount = 10;
constexpr int kRecallCount = 101;
constexpr int kIou50 = 0;
constexpr int kIou75 = 5;

// np.linspace(.5, 0.95, 10) and np.linspace(.0, 1.00, 101), computed as numpy does.
std::array<double, kIouCount> iou_thresholds()
{
	std::array<double, kIouCount> t{};
	const double step = (0.95 - 0.5) / (kIouCount - 1);
	for (int i = 0; i < kIouCount; i++)
		t[i] = i * step + 0.5;
	t[kIouCount - 1] = 0.95;
	return t;
}

std::array<double, kRecallCount> recall_thresholds()
{
	std::array<double, kRecallCount> r{};
	const double step = (1.0 - 0.0) / (kRecallCount - 1);
	for (int i = 0; i < kRecallCount; i++)
		r[i] = i * step + 0.0;
	r[kRecallCount - 1] = 1.0;
	return r;
}

struct AreaRange {
	double lo, hi;
};
constexpr std::array<AreaRange, 4> kAreaRanges{ {
	{ 0.0, 1e10 }, { 0.0, 32.0 * 32.0 }, { 32.0 * 32.0, 96.0 * 96.0 }, { 96.0 * 96.0, 1e10 } } };

struct Box {
	double x, y, w, h;
};

template <typename Boxed> Box xywh(const Boxed &b)
{
	return { b.x1, b.y1, b.coco_size.width >= 0 ? b.coco_size.width : b.x2 - b.x1,
		 b.coco_size.height >= 0 ? b.coco_size.height : b.y2 - b.y1 };
}

// maskApi.c bbIou: for a crowd region the union is the detection's own area.
double box_iou(const Box &d, const Box &g, bool crowd)
{
	const double w = std::min(d.w + d.x, g.w + g.x) - std::max(d.x, g.x);
	if (w <= 0)
		return 0;
	const double h = std::min(d.h + d.y, g.h + g.y) - std::max(d.y, g.y);
	if (h <= 0)
		return 0;
	const double i = w * h;
	const double da = d.w * d.h, ga = g.w * g.h;
	const double u = crowd ? da : ga + da - i;
	return i / u;
}

// evaluateImg's result for one image, category and area range.
struct ImageEval {
	std::vector<double> scores;			  // detections, by decreasing score
	std::array<std::vector<char>, kIouCount> matched; // per threshold, per detection
	std::array<std::vector<char>, kIouCount> ignored;
	int ground_truth = 0; // not ignored
};

struct Candidate {
	Box box;
	double area;
	bool crowd;
	double score;
};

ImageEval evaluate_image(const std::vector<Candidate> &gts_in, const std::vector<Candidate> &dts,
			 const AreaRange &range, const std::array<double, kIouCount> &thresholds)
{
	// Ignored ground truth (crowd, or outside the area range) goes last, order kept otherwise.
	std::vector<Candidate> gts;
	std::vector<char> gt_ignore;
	for (int pass = 0; pass < 2; pass++)
		for (const Candidate &g : gts_in) {
			const bool ignore = g.crowd || g.area < range.lo || g.area > range.hi;
			if (ignore == (pass == 1)) {
				gts.push_back(g);
				gt_ignore.push_back(ignore);
			}
		}

	const std::size_t G = gts.size(), D = dts.size();
	std::vector<double> ious(D * G);
	for (std::size_t d = 0; d < D; d++)
		for (std::size_t g = 0; g < G; g++)
			ious[d * G + g] = box_iou(dts[d].box, gts[g].box, gts[g].crowd);

	ImageEval e;
	for (const Candidate &d : dts)
		e.scores.push_back(d.score);
	for (std::size_t g = 0; g < G; g++)
		e.ground_truth += gt_ignore[g] ? 0 : 1;

	for (int t = 0; t < kIouCount; t++) {
		std::vector<char> gt_matched(G, 0);
		std::vector<char> &dt_matched = e.matched[t];
		std::vector<char> &dt_ignored = e.ignored[t];
		dt_matched.assign(D, 0);
		dt_ignored.assign(D, 0);
		for (std::size_t d = 0; d < D; d++) {
			double best = std::min(thresholds[t], 1 - 1e-10);
			std::ptrdiff_t m = -1;
			for (std::size_t g = 0; g < G; g++) {
				if (gt_matched[g] && !gts[g].crowd)
					continue;
				// Matched to a regular box already: the ignored ones that follow can't win.
				if (m > -1 && !gt_ignore[m] && gt_ignore[g])
					break;
				if (ious[d * G + g] < best)
					continue;
				best = ious[d * G + g];
				m = static_cast<std::ptrdiff_t>(g);
			}
			if (m == -1)
				continue;
			dt_ignored[d] = gt_ignore[m];
			dt_matched[d] = 1;
			gt_matched[m] = 1;
		}
		// Unmatched detections outside the area range don't count against it.
		for (std::size_t d = 0; d < D; d++)
			if (!dt_matched[d] && (dts[d].area < range.lo || dts[d].area > range.hi))
				dt_ignored[d] = 1;
	}
	return e;
}

// accumulate() for one category and area range: precision[t][r], or empty when the category has
// no ground truth that counts (pycocotools leaves -1 there).
std::vector<std::array<double, kRecallCount>>
accumulate(const std::vector<ImageEval> &evals, const std::array<double, kRecallCount> &recalls)
{
	std::vector<double> scores;
	int ground_truth = 0;
	for (const ImageEval &e : evals) {
		scores.insert(scores.end(), e.scores.begin(), e.scores.end());
		ground_truth += e.ground_truth;
	}
	if (ground_truth == 0)
		return {};

	std::vector<std::size_t> order(scores.size());
	std::iota(order.begin(), order.end(), 0);
	std::stable_sort(order.begin(), order.end(),
			 [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });

	std::vector<std::array<double, kRecallCount>> precision(kIouCount);
	const double eps = std::numeric_limits<double>::epsilon(); // np.spacing(1)
	for (int t = 0; t < kIouCount; t++) {
		std::vector<char> matched, ignored;
		for (const ImageEval &e : evals) {
			matched.insert(matched.end(), e.matched[t].begin(), e.matched[t].end());
			ignored.insert(ignored.end(), e.ignored[t].begin(), e.ignored[t].end());
		}
		const std::size_t n = order.size();
		std::vector<double> rc(n), pr(n);
		double tp = 0, fp = 0;
		for (std::size_t i = 0; i < n; i++) {
			const std::size_t k = order[i];
			if (!ignored[k]) {
				if (matched[k])
					tp += 1;
				else
					fp += 1;
			}
			rc[i] = tp / ground_truth;
			pr[i] = tp / (fp + tp + eps);
		}
		// Precision envelope: the best precision at this recall or any higher one.
		for (std::size_t i = n; i-- > 1;)
			if (pr[i] > pr[i - 1])
				pr[i - 1] = pr[i];

		std::array<double, kRecallCount> &q = precision[t];
		for (int r = 0; r < kRecallCount; r++) {
			const auto it = std::lower_bound(rc.begin(), rc.end(), recalls[r]);
			const std::size_t i = static_cast<std::size_t>(it - rc.begin());
			q[r] = i < n ? pr[i] : 0.0;
		}
	}
	return precision;
}

// The sum NumPy's add.reduce gives for a contiguous float64 array of `n` values, to the last
// bit: pairwise within a block (8 running sums up to 128 values, halves above), blocks of 8192
// (its buffer) added one after the other.
double numpy_pairwise_sum(const double *values, std::size_t n)
{
	if (n < 8) {
		double sum = 0.;
		for (std::size_t i = 0; i < n; i++)
			sum += values[i];
		return sum;
	}
	if (n <= 128) {
		double r[8];
		std::copy(values, values + 8, r);
		std::size_t i = 8;
		for (; i < n - n % 8; i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += values[i + j];
		double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			sum += values[i];
		return sum;
	}
	std::size_t half = n / 2;
	half -= half % 8;
	return numpy_pairwise_sum(values, half) + numpy_pairwise_sum(values + half, n - half);
}

double numpy_mean(const std::vector<double> &values)
{
	constexpr std::size_t kBuffer = 8192;
	double sum = 0.;
	for (std::size_t start = 0; start < values.size(); start += kBuffer)
		sum += numpy_pairwise_sum(values.data() + start, std::min(kBuffer, values.size() - start));
	return sum / static_cast<double>(values.size());
}

using PrecisionTable = std::vector<std::array<double, kRecallCount>>; // [threshold][recall point]

// summarize's np.mean(s[s > -1]) of precision[t, r, k] for the thresholds first_t..last_t, every
// recall point and the classes given (those with ground truth, by id), k varying fastest.
double mean_over(const std::vector<const PrecisionTable *> &classes, int first_t, int last_t)
{
	std::vector<double> values;
	values.reserve(static_cast<std::size_t>(last_t - first_t + 1) * kRecallCount * classes.size());
	for (int t = first_t; t <= last_t; t++)
		for (int r = 0; r < kRecallCount; r++)
			for (const PrecisionTable *precision : classes)
				values.push_back((*precision)[t][r]);
	return numpy_mean(values);
}

} // namespace

EvalResult evaluate_coco(const EvalDataset &dataset, const EvalParams &params)
{
	if (params.max_detections < 1)
		throw Error("max_detections must be at least 1, got " +
			    std::to_string(params.max_detections));
	const auto thresholds = iou_thresholds();
	const auto recalls = recall_thresholds();

	EvalResult result;
	std::vector<const EvalImage *> images;
	for (const EvalImage &image : dataset.images) {
		if (image.not_run)
			result.images_not_run++;
		else
			images.push_back(&image);
	}
	std::stable_sort(images.begin(), images.end(),
			 [](const EvalImage *a, const EvalImage *b) { return a->id < b->id; });

	result.images = static_cast<int>(images.size());
	result.max_detections = params.max_detections;

	// Per area range, the precision of each class with ground truth there, by class id (the
	// order of pycocotools' catIds) for the means over classes.
	std::array<std::map<int64_t, PrecisionTable>, kAreaRanges.size()> precision_by_class;
	for (const EvalCategory &category : dataset.categories) {
		CategoryResult cr;
		cr.id = category.id;
		cr.name = category.name;

		// Per image: this category's boxes, detections sorted by score and cut to the limit.
		std::vector<std::vector<Candidate>> gts(images.size()), dts(images.size());
		for (std::size_t i = 0; i < images.size(); i++) {
			for (const EvalGroundTruth &g : images[i]->ground_truth) {
				if (g.category != category.id)
					continue;
				const Box box = xywh(g);
				gts[i].push_back({ box, g.area >= 0 ? g.area : box.w * box.h, g.crowd, 0 });
				cr.ground_truth += g.crowd ? 0 : 1;
			}
			for (const EvalDetection &d : images[i]->detections) {
				if (d.category != category.id)
					continue;
				const Box box = xywh(d);
				dts[i].push_back({ box, box.w * box.h, false, d.score });
			}
			std::stable_sort(dts[i].begin(), dts[i].end(),
					 [](const Candidate &a, const Candidate &b) {
						 return a.score > b.score;
					 });
			if (dts[i].size() > static_cast<std::size_t>(params.max_detections))
				dts[i].resize(static_cast<std::size_t>(params.max_detections));
			cr.detections += static_cast<int>(dts[i].size());
		}

		for (std::size_t a = 0; a < kAreaRanges.size(); a++) {
			std::vector<ImageEval> evals;
			for (std::size_t i = 0; i < images.size(); i++)
				if (!gts[i].empty() || !dts[i].empty())
					evals.push_back(evaluate_image(gts[i], dts[i], kAreaRanges[a],
								       thresholds));
			PrecisionTable precision = accumulate(evals, recalls);
			if (precision.empty())
				continue;
			if (a == 0) {
				cr.ap = mean_over({ &precision }, 0, kIouCount - 1);
				cr.ap50 = mean_over({ &precision }, kIou50, kIou50);
				cr.ap75 = mean_over({ &precision }, kIou75, kIou75);
			}
			precision_by_class[a][category.id] = std::move(precision);
		}
		result.ground_truth += cr.ground_truth;
		result.detections += cr.detections;
		result.per_class.push_back(std::move(cr));
	}

	auto mean_over_classes = [&](std::size_t area, int first_t, int last_t) {
		std::vector<const PrecisionTable *> classes;
		for (const auto &entry : precision_by_class[area])
			classes.push_back(&entry.second);
		return classes.empty() ? -1.0 : mean_over(classes, first_t, last_t);
	};
	result.ap = mean_over_classes(0, 0, kIouCount - 1);
	result.ap50 = mean_over_classes(0, kIou50, kIou50);
	result.ap75 = mean_over_classes(0, kIou75, kIou75);
	result.ap_small = mean_over_classes(1, 0, kIouCount - 1);
	result.ap_medium = mean_over_classes(2, 0, kIouCount - 1);
	result.ap_large = mean_over_classes(3, 0, kIouCount - 1);
	return result;
}

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
// frcnn::ops against torchvision.ops: the reference script (tests/reference/ops_reference.py)
// writes inputs and torchvision's outputs; every case is rerun here and compared.
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "frcnn/ops.h"

#include "../../detector/ops/cuda/nms_steps.h"
#include "../../detector/ops/kernels.h"

namespace {

struct Case {
	std::string name;
	std::map<std::string, torch::Tensor> tensors;

	const torch::Tensor &at(const std::string &key) const
	{
		const auto it = tensors.find(key);
		if (it == tensors.end())
			throw std::runtime_error("fixture " + name + " has no entry '" + key + "'");
		return it->second;
	}
	double real(const std::string &key) const { return at(key).item<double>(); }
	int64_t integer(const std::string &key) const { return at(key).item<int64_t>(); }
	bool flag(const std::string &key) const { return at(key).item<bool>(); }
};

std::string fixtures_dir()
{
	const char *dir = std::getenv("FRCNN_FIXTURES");
	return dir ? dir : "";
}

Case load_case(const std::string &name)
{
	const std::string path = fixtures_dir() + "/" + name + ".pt";
	std::ifstream file(path, std::ios::binary);
	if (!file)
		throw std::runtime_error("cannot open fixture " + path);
	const std::vector<char> data((std::istreambuf_iterator<char>(file)),
				     std::istreambuf_iterator<char>());
	Case c;
	c.name = name;
	for (const auto &entry : torch::pickle_load(data).toGenericDict())
		c.tensors[entry.key().toStringRef()] = entry.value().toTensor();
	return c;
}

// All cases of one operator listed in the manifest. An empty result is a failure of the test
// that asked, never a silent pass.
std::vector<Case> load_cases(const std::string &op)
{
	std::vector<Case> cases;
	const std::string dir = fixtures_dir();
	if (dir.empty()) {
		ADD_FAILURE() << "FRCNN_FIXTURES is not set: run the test with `meson test`";
		return cases;
	}
	std::ifstream manifest(dir + "/manifest.txt");
	if (!manifest) {
		ADD_FAILURE() << "no manifest.txt in " << dir;
		return cases;
	}
	std::string line;
	while (std::getline(manifest, line)) {
		std::istringstream fields(line);
		std::string case_op, name;
		if (fields >> case_op >> name && case_op == op)
			cases.push_back(load_case(name));
	}
	EXPECT_FALSE(cases.empty()) << "no fixtures for " << op;
	return cases;
}

std::string describe_difference(const torch::Tensor &actual, const torch::Tensor &expected)
{
	std::ostringstream out;
	out << "actual " << actual.sizes() << " " << actual.scalar_type() << ", expected "
	    << expected.sizes() << " " << expected.scalar_type();
	if (actual.sizes() == expected.sizes() && actual.numel() > 0) {
		const torch::Tensor diff =
			(actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs();
		out << ", max |difference| " << diff.max().item<double>() << " at flat index "
		    << diff.flatten().argmax().item<int64_t>();
	}
	return out.str();
}

void expect_equal(const torch::Tensor &actual, const torch::Tensor &expected)
{
	EXPECT_EQ(actual.scalar_type(), expected.scalar_type());
	EXPECT_TRUE(actual.sizes() == expected.sizes() && torch::equal(actual, expected))
		<< describe_difference(actual, expected)
		<< "\nactual:   " << actual.flatten().slice(0, 0, 40)
		<< "\nexpected: " << expected.flatten().slice(0, 0, 40);
}

void expect_close(const torch::Tensor &actual, const torch::Tensor &expected,
		  double tolerance = 1e-5)
{
	EXPECT_EQ(actual.scalar_type(), expected.scalar_type());
	EXPECT_TRUE(actual.sizes() == expected.sizes() &&
		    torch::allclose(actual, expected, tolerance, tolerance, /*equal_nan=*/true))
		<< describe_difference(actual, expected);
}

// Runs fn and checks that it throws c10::Error whose message contains every fragment.
void expect_error(const std::function<void()> &fn, const std::vector<std::string> &fragments)
{
	try {
		fn();
		ADD_FAILURE() << "no exception; expected one mentioning '" << fragments.front()
			      << "'";
	} catch (const c10::Error &e) {
		const std::string message = e.what_without_backtrace();
		for (const std::string &fragment : fragments)
			EXPECT_NE(message.find(fragment), std::string::npos)
				<< "message '" << message << "' lacks '" << fragment << "'";
	}
}

torch::Tensor run_roi_align(const Case &c, const torch::Tensor &input)
{
	return frcnn::ops::roi_align(input, c.at("rois"), c.real("spatial_scale"),
				     c.integer("pooled_height"), c.integer("pooled_width"),
				     c.integer("sampling_ratio"), c.flag("aligned"));
}

} // namespace

TEST(Nms, MatchesTorchvision)
{
	for (const Case &c : load_cases("nms")) {
		SCOPED_TRACE(c.name);
		expect_equal(
			frcnn::ops::nms(c.at("boxes"), c.at("scores"), c.real("iou_threshold")),
			c.at("keep"));
	}
}

TEST(Nms, NonContiguousInputs)
{
	for (const Case &c : load_cases("nms")) {
		SCOPED_TRACE(c.name);
		// Same values through strided views: transposed boxes, every other score.
		const torch::Tensor boxes = c.at("boxes").t().contiguous().t();
		const torch::Tensor scores = c.at("scores").repeat_interleave(2).slice(
			0, 0, c.at("scores").numel() * 2, 2);
		ASSERT_FALSE(boxes.numel() > 4 && boxes.is_contiguous());
		expect_equal(frcnn::ops::nms(boxes, scores, c.real("iou_threshold")), c.at("keep"));
	}
}

TEST(Nms, HalfMatchesFloatOfSameValues)
{
	// Half boxes are compared in float: the result is that of the float NMS on the rounded
	// values.
	for (const Case &c : load_cases("nms")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor boxes = c.at("boxes").to(torch::kHalf);
		const torch::Tensor scores = c.at("scores").to(torch::kHalf);
		expect_equal(frcnn::ops::nms(boxes, scores, c.real("iou_threshold")),
			     frcnn::ops::nms(boxes.to(torch::kFloat), scores.to(torch::kFloat),
					     c.real("iou_threshold")));
	}
}

TEST(BatchedNms, MatchesTorchvision)
{
	bool saw_loop = false, saw_trick = false;
	for (const Case &c : load_cases("batched_nms")) {
		SCOPED_TRACE(c.name);
		(c.at("boxes").numel() > 4000 ? saw_loop : saw_trick) = true;
		expect_equal(frcnn::ops::batched_nms(c.at("boxes"), c.at("scores"), c.at("idxs"),
						     c.real("iou_threshold")),
			     c.at("keep"));
	}
	EXPECT_TRUE(saw_loop) << "no fixture exercises the per-category path";
	EXPECT_TRUE(saw_trick) << "no fixture exercises the coordinate offset path";
}

TEST(BatchedNms, Int32CategoriesGiveTheSameResult)
{
	for (const Case &c : load_cases("batched_nms")) {
		SCOPED_TRACE(c.name);
		expect_equal(frcnn::ops::batched_nms(c.at("boxes"), c.at("scores"),
						     c.at("idxs").to(torch::kInt),
						     c.real("iou_threshold")),
			     c.at("keep"));
	}
}

// The batched forms of the RPN's filtering and of the post-processing (what CUDA runs) suppress
// the boxes of a whole batch in one per-category NMS. ops::batched_nms, which the per-image forms
// call, offsets each image's boxes by category when it has few of them (torchvision's trick),
// which rounds the IoUs on larger coordinates: with 90 classes of a 1333-pixel frame a float
// step there is 1/128 pixel, and a pair near the threshold is decided otherwise. The batched
// forms add the same offsets (batched_nms_offsets) and keep what the per-image calls keep.
TEST(BatchedNmsOffsets, KeepWhatThePerImageCallsKeep)
{
	torch::manual_seed(5);
	const int64_t num_images = 40;
	std::vector<torch::Tensor> boxes, scores, labels, images;
	for (int64_t i = 0; i < num_images; i++) {
		// 600 boxes (the offset trick on the CPU) crowded round a few centres of a 1333x800
		// frame, of the last 11 of 91 classes; the last image 1100 (the loop over categories: no
		// offsets).
		const int64_t n = i == num_images - 1 ? 1100 : 600;
		const auto centres = torch::rand({8, 2}) * torch::tensor({1200.0f, 700.0f}) + 50;
		const auto xy = centres.index_select(0, torch::randint(8, {n})) + torch::randn({n, 2}) * 6;
		const auto wh = torch::rand({n, 2}) * 30 + 60;
		boxes.push_back(torch::cat({xy, xy + wh}, 1));
		scores.push_back(torch::rand({n}));
		labels.push_back(torch::randint(80, 91, {n})); // high class ids: large offsets
		images.push_back(torch::full({n}, i, torch::kInt64));
	}
	const auto all_boxes = torch::cat(boxes), all_scores = torch::cat(scores);
	const auto all_labels = torch::cat(labels), all_images = torch::cat(images);
	std::vector<torch::Tensor> largest, counts;
	for (int64_t i = 0; i < num_images; i++) {
		largest.push_back(boxes[i].max());
		counts.push_back(torch::tensor(boxes[i].size(0)));
	}
	const auto offsets = frcnn::ops::detail::batched_nms_offsets(all_labels, all_images, torch::Tensor(),
								     torch::stack(largest), torch::stack(counts));
	const auto kept = frcnn::ops::detail::nms_mask_by_category_within(
		all_boxes + offsets.unsqueeze(1), all_scores, all_images * 91 + all_labels, 0.5, 1100);
	const auto own_coordinates = frcnn::ops::nms_mask_by_category(all_boxes, all_scores, all_images * 91 + all_labels, 0.5);
	int64_t first = 0, rounded_otherwise = 0;
	for (int64_t i = 0; i < num_images; i++) {
		const int64_t n = boxes[i].size(0);
		auto per_image = torch::zeros({n}, torch::kBool);
		per_image.index_fill_(0, frcnn::ops::batched_nms(boxes[i], scores[i], labels[i], 0.5), true);
		EXPECT_TRUE(torch::equal(kept.narrow(0, first, n), per_image)) << "image " << i;
		if (!torch::equal(own_coordinates.narrow(0, first, n), per_image))
			rounded_otherwise++;
		first += n;
	}
	EXPECT_GT(rounded_otherwise, 0) << "no image where the offsets change what is kept: the case proves nothing";
	// Boxes not counted (the RPN's filters dropped them) get no offsets.
	const auto none = frcnn::ops::detail::batched_nms_offsets(labels[0], images[0], torch::zeros_like(images[0], torch::kBool),
								 largest[0].view({1}), torch::zeros({1}, torch::kLong));
	EXPECT_TRUE(torch::equal(none, torch::zeros({boxes[0].size(0)})));
}

// The CUDA NMS settles each category's boxes on its own, the categories in parallel. Its steps
// (nms_steps.h), run here on the host in the kernels' order, must keep exactly the boxes the CPU kernel keeps: many categories, some
// spanning several 64-box words and sharing words with their neighbours, and one category alone.
TEST(NmsSteps, CategoriesSettledApartKeepWhatTheCpuKernelKeeps)
{
	using namespace frcnn::cuda::nms_steps;
	torch::manual_seed(3);
	struct Setup {
		int64_t n;
		int64_t categories; // 0: none (one segment)
	};
	for (const Setup setup : {Setup{700, 9}, Setup{1000, 3}, Setup{300, 120}, Setup{200, 0}, Setup{1, 4}, Setup{129, 1}}) {
		SCOPED_TRACE("n " + std::to_string(setup.n) + ", categories " + std::to_string(setup.categories));
		// Crowded boxes, so that many overlap above the threshold.
		const auto centre = torch::rand({setup.n, 2}) * (setup.categories > 50 ? 4 : 60);
		const auto size = torch::rand({setup.n, 2}) * 30 + 5;
		const auto boxes = torch::cat({centre - size / 2, centre + size / 2}, 1);
		const auto scores = torch::rand({setup.n});
		const auto idxs = setup.categories > 0 ? torch::randint(setup.categories, {setup.n}, torch::kLong)
						       : torch::zeros({setup.n}, torch::kLong);
		const double threshold = 0.5;

		// The order the CUDA glue sorts into: by score, then (stably) by category.
		auto order = std::get<1>(scores.sort(/*stable=*/true, 0, /*descending=*/true));
		if (setup.categories > 0)
			order = order.index_select(
				0, std::get<1>(idxs.index_select(0, order).sort(/*stable=*/true, 0, false)));
		const auto sorted_boxes = boxes.index_select(0, order).contiguous();
		const auto sorted_categories = idxs.index_select(0, order).contiguous();
		const int64_t *categories = setup.categories > 0 ? sorted_categories.data_ptr<int64_t>() : nullptr;

		const auto expected = frcnn::ops::nms_mask_by_category(boxes, scores, idxs, threshold);
		// The whole mask, and only the words that the largest category can reach (as the
		// batched proposals and detections run it).
		const int64_t words = mask_words(setup.n);
		const int64_t largest = setup.categories > 0 ? idxs.bincount().max().item<int64_t>() : setup.n;
		for (const int64_t bound : {int64_t(0), largest}) {
			const int64_t span = mask_span(setup.n, setup.categories > 0 ? bound : 0);
			SCOPED_TRACE("mask words per box " + std::to_string(span) + " of " + std::to_string(words));
			std::vector<uint64_t> mask(setup.n * span, ~0ULL), removed(span, ~0ULL);
			std::vector<uint8_t> keep(setup.n, 2);
			fill_mask_on_host(sorted_boxes.data_ptr<float>(), categories, setup.n, span, threshold, mask.data());
			suppress_on_host(mask.data(), setup.n, span, categories, removed.data(), keep.data());

			auto kept = torch::zeros({setup.n}, torch::kBool);
			for (int64_t i = 0; i < setup.n; i++) {
				ASSERT_LE(keep[i], 1) << "box " << i << " was never settled";
				if (keep[i])
					kept[order[i].item<int64_t>()] = true;
			}
			EXPECT_TRUE(torch::equal(kept, expected))
				<< kept.sum().item<int64_t>() << " kept against " << expected.sum().item<int64_t>();
		}
		if (setup.categories >= 9) {
			EXPECT_LT(mask_span(setup.n, largest), words) << "the bound should leave words out";
		}
		if (setup.n > 1) {
			EXPECT_LT(expected.sum().item<int64_t>(), setup.n - setup.n / 10) << "too few boxes overlap to tell";
		}
	}
}

TEST(NmsSteps, SegmentEndsAtTheNextCategory)
{
	using frcnn::cuda::nms_steps::segment_end;
	const std::vector<int64_t> categories{2, 2, 2, 5, 7, 7, 9};
	const int64_t n = (int64_t)categories.size();
	// From each category's first box: one past its last.
	EXPECT_EQ(segment_end(categories.data(), 0, n), 3);
	EXPECT_EQ(segment_end(categories.data(), 3, n), 4);
	EXPECT_EQ(segment_end(categories.data(), 4, n), 6);
	EXPECT_EQ(segment_end(categories.data(), 6, n), 7);
	// Exactly one box ends each segment but the last.
	for (int64_t begin : {0, 3, 4, 6}) {
		int64_t boundaries = 0;
		for (int64_t j = begin + 1; j < n; j++)
			boundaries += frcnn::cuda::nms_steps::ends_segment_at(categories.data(), begin, j);
		EXPECT_EQ(boundaries, begin == 6 ? 0 : 1) << "segment at " << begin;
	}
	const std::vector<int64_t> one(5, 0);
	EXPECT_EQ(segment_end(one.data(), 0, 5), 5);
	EXPECT_EQ(segment_end(nullptr, 0, 5), 5);
}

TEST(RoiAlign, ForwardMatchesTorchvision)
{
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		expect_close(run_roi_align(c, c.at("input")), c.at("output"));
	}
}

TEST(RoiAlign, ForwardInInferenceMode)
{
	c10::InferenceMode guard;
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor input = c.at("input").clone();
		expect_close(run_roi_align(c, input), c.at("output"));
	}
}

TEST(RoiAlign, GradientMatchesTorchvision)
{
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor input = c.at("input").clone().requires_grad_(true);
		const torch::Tensor output = run_roi_align(c, input);
		ASSERT_TRUE(output.requires_grad());
		output.backward(c.at("grad_output"));
		ASSERT_TRUE(input.grad().defined());
		expect_close(input.grad(), c.at("grad_input"));
	}
}

TEST(RoiAlign, ChannelsLastInput)
{
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor input = c.at("input")
						    .contiguous(at::MemoryFormat::ChannelsLast)
						    .requires_grad_(true);
		const torch::Tensor output = run_roi_align(c, input);
		expect_close(output, c.at("output"));
		output.backward(c.at("grad_output"));
		expect_close(input.grad(), c.at("grad_input"));
	}
}

TEST(RoiAlign, NonContiguousRoisAndGradient)
{
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor rois = c.at("rois").t().contiguous().t();
		const torch::Tensor input = c.at("input").clone().requires_grad_(true);
		const torch::Tensor output = frcnn::ops::roi_align(
			input, rois, c.real("spatial_scale"), c.integer("pooled_height"),
			c.integer("pooled_width"), c.integer("sampling_ratio"), c.flag("aligned"));
		expect_close(output, c.at("output"));
		// An upstream gradient with unusual strides (a transposed copy, transposed back).
		const torch::Tensor grad =
			c.at("grad_output").transpose(0, 1).contiguous().transpose(0, 1);
		output.backward(grad);
		expect_close(input.grad(), c.at("grad_input"));
	}
}

TEST(RoiAlign, GradientThroughAutogradGraph)
{
	// roi_align inside a larger graph: d/dx sum(2 * roi_align(x * 3)) = 6 * roi_align'(x)^T 1.
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor x = c.at("input").clone().requires_grad_(true);
		const torch::Tensor y = run_roi_align(c, x * 3);
		(y * 2).sum().backward();

		const torch::Tensor x1 = c.at("input").clone().requires_grad_(true);
		run_roi_align(c, x1).sum().backward();
		expect_close(x.grad(), x1.grad() * 6);
	}
}

TEST(RoiAlign, NoGradientForRoisOrFrozenInput)
{
	for (const Case &c : load_cases("roi_align")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor rois = c.at("rois").clone().requires_grad_(true);
		const torch::Tensor out = frcnn::ops::roi_align(
			c.at("input"), rois, c.real("spatial_scale"), c.integer("pooled_height"),
			c.integer("pooled_width"), c.integer("sampling_ratio"), c.flag("aligned"));
		EXPECT_FALSE(out.requires_grad());
	}
}

TEST(RoiAlign, HalfFollowsFloat)
{
	for (const Case &c : load_cases("roi_align")) {
		if (c.at("input").scalar_type() != torch::kFloat)
			continue;
		SCOPED_TRACE(c.name);
		const torch::Tensor input = c.at("input").to(torch::kHalf);
		const torch::Tensor rois = c.at("rois").to(torch::kHalf);
		const torch::Tensor out = frcnn::ops::roi_align(
			input, rois, c.real("spatial_scale"), c.integer("pooled_height"),
			c.integer("pooled_width"), c.integer("sampling_ratio"), c.flag("aligned"));
		ASSERT_EQ(out.scalar_type(), torch::kHalf);
		// Same computation on the half-rounded values in float; only the output rounding
		// differs.
		const torch::Tensor expected = frcnn::ops::roi_align(
			input.to(torch::kFloat), rois.to(torch::kFloat), c.real("spatial_scale"),
			c.integer("pooled_height"), c.integer("pooled_width"),
			c.integer("sampling_ratio"), c.flag("aligned"));
		EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), expected, 1e-3, 1e-3))
			<< describe_difference(out.to(torch::kFloat), expected);
	}
}

// A bf16 model on the CPU pools its bfloat16 features at float coordinates: the same arithmetic,
// in float, as on the bfloat16 values converted to float, rounded once at the end; planar and
// channels-last, into rows too.
TEST(RoiAlign, BFloat16FeaturesWithFloatRois)
{
	for (const Case &c : load_cases("roi_align")) {
		if (c.at("input").scalar_type() != torch::kFloat)
			continue;
		for (const bool channels_last : {false, true}) {
			SCOPED_TRACE(c.name + (channels_last ? " channels-last" : ""));
			torch::Tensor input = c.at("input").to(torch::kBFloat16);
			if (channels_last)
				input = input.contiguous(at::MemoryFormat::ChannelsLast);
			const torch::Tensor rois = c.at("rois"); // float
			const torch::Tensor out = frcnn::ops::roi_align(
				input, rois, c.real("spatial_scale"), c.integer("pooled_height"),
				c.integer("pooled_width"), c.integer("sampling_ratio"), c.flag("aligned"));
			ASSERT_EQ(out.scalar_type(), torch::kBFloat16);
			const torch::Tensor expected =
				frcnn::ops::roi_align(input.to(torch::kFloat), rois, c.real("spatial_scale"),
						      c.integer("pooled_height"), c.integer("pooled_width"),
						      c.integer("sampling_ratio"), c.flag("aligned"))
					.to(torch::kBFloat16);
			EXPECT_TRUE(torch::equal(out, expected)) << describe_difference(out.to(torch::kFloat),
											 expected.to(torch::kFloat));
			torch::Tensor into = torch::zeros_like(out);
			frcnn::ops::roi_align_into(into, torch::arange(out.size(0), torch::kLong), input, rois,
						   c.real("spatial_scale"), c.integer("pooled_height"),
						   c.integer("pooled_width"), c.integer("sampling_ratio"), c.flag("aligned"));
			EXPECT_TRUE(torch::equal(into, expected));
		}
	}
	// Only float coordinates go with bfloat16 features; half features take half rois on the CPU.
	expect_error(
		[] {
			frcnn::ops::roi_align(torch::rand({1, 2, 8, 8}).to(torch::kBFloat16),
					      torch::tensor({0.0, 1.0, 1.0, 4.0, 4.0}, torch::kDouble).reshape({1, 5}), 1.0, 2, 2, 2, false);
		},
		{"roi_align", "dtype", "BFloat16", "Double"});
	expect_error(
		[] {
			frcnn::ops::roi_align(torch::rand({1, 2, 8, 8}).to(torch::kHalf),
					      torch::tensor({0.0f, 1.0f, 1.0f, 4.0f, 4.0f}).reshape({1, 5}), 1.0, 2, 2, 2, false);
		},
		{"roi_align", "dtype", "Half", "Float"});
}

TEST(RoiAlign, IntoRowsGivesTheSameBitsAndLeavesTheOtherRows)
{
	// Every fixture case (planar and channels-last, float and double, aligned or not, adaptive
	// and fixed sampling) pooled into every other row of a larger output, in reverse order.
	for (const Case &c : load_cases("roi_align")) {
		for (const bool channels_last : {false, true}) {
			SCOPED_TRACE(c.name + (channels_last ? " channels-last" : ""));
			const torch::Tensor input =
				channels_last ? c.at("input").contiguous(at::MemoryFormat::ChannelsLast)
					      : c.at("input");
			const torch::Tensor expected = run_roi_align(c, input);
			const int64_t k = expected.size(0);
			const torch::Tensor rows = (2 * k - 2) - 2 * torch::arange(k, torch::kLong);
			auto sizes = expected.sizes().vec();
			sizes[0] = 2 * k + 1;
			torch::Tensor output = torch::full(sizes, -7.0, expected.options());
			frcnn::ops::roi_align_into(output, rows, input, c.at("rois"), c.real("spatial_scale"),
						   c.integer("pooled_height"), c.integer("pooled_width"),
						   c.integer("sampling_ratio"), c.flag("aligned"));
			EXPECT_TRUE(torch::equal(output.index_select(0, rows), expected));
			const torch::Tensor untouched = torch::arange(1, 2 * k + 1, 2, torch::kLong);
			EXPECT_TRUE((output.index_select(0, untouched) == -7.0).all().item<bool>());
		}
	}
	// An empty map pools zeros into its rows.
	torch::Tensor output = torch::full({3, 2, 2, 2}, -7.0f);
	frcnn::ops::roi_align_into(output, torch::tensor({2L}), torch::rand({1, 2, 0, 5}),
				   torch::tensor({0.0f, 0.0f, 0.0f, 1.0f, 1.0f}).reshape({1, 5}), 1.0, 2, 2, 2,
				   false);
	EXPECT_TRUE((output[2] == 0).all().item<bool>());
	EXPECT_TRUE((output.narrow(0, 0, 2) == -7.0f).all().item<bool>());
}

TEST(BoxHelpers, MatchTorchvision)
{
	for (const Case &c : load_cases("box_helpers")) {
		SCOPED_TRACE(c.name);
		const torch::Tensor &boxes = c.at("boxes");
		expect_close(frcnn::ops::box_area(boxes), c.at("area"), 0);
		expect_close(frcnn::ops::box_iou(boxes, c.at("other")), c.at("iou"), 0);
		expect_equal(frcnn::ops::clip_boxes_to_image(boxes, c.integer("height"),
							     c.integer("width")),
			     c.at("clipped"));
		expect_equal(frcnn::ops::remove_small_boxes(boxes, c.real("min_size")),
			     c.at("small_kept"));
	}
}

TEST(BoxHelpers, ClipKeepsLeadingDimensions)
{
	const torch::Tensor boxes =
		torch::tensor({-5.0f, 2.0f, 50.0f, 70.0f, 1.0f, -1.0f, 3.0f, 4.0f})
			.reshape({1, 2, 4});
	const torch::Tensor clipped = frcnn::ops::clip_boxes_to_image(boxes, 60, 40);
	expect_equal(clipped, torch::tensor({0.0f, 2.0f, 40.0f, 60.0f, 1.0f, 0.0f, 3.0f, 4.0f})
				      .reshape({1, 2, 4}));
}

TEST(Errors, NmsArguments)
{
	using frcnn::ops::nms;
	const torch::Tensor scores = torch::rand({3});
	expect_error(
		[&] {
			nms(torch::rand({3, 4, 1}), scores, 0.5);
		},
		{"nms", "boxes", "2D", "got 3D", "[3, 4, 1]"});
	expect_error(
		[&] {
			nms(torch::rand({3, 5}), scores, 0.5);
		},
		{"nms", "4 elements", "[3, 5]"});
	expect_error(
		[&] {
			nms(torch::rand({3, 4}), torch::rand({3, 1}), 0.5);
		},
		{"scores", "1D", "got 2D", "[3, 1]"});
	expect_error(
		[&] {
			nms(torch::rand({3, 4}), torch::rand({2}), 0.5);
		},
		{"same number", "3 and 2"});
	expect_error(
		[&] {
			nms(torch::rand({3, 4}).to(torch::kDouble), scores, 0.5);
		},
		{"dtype", "Double", "Float"});
	expect_error(
		[&] {
			nms(torch::ones({3, 4}, torch::kLong), scores.to(torch::kLong), 0.5);
		},
		{"floating point", "Long"});
	expect_error([&] { nms(torch::Tensor(), scores, 0.5); }, {"nms", "boxes", "undefined"});
}

TEST(Errors, BatchedNmsArguments)
{
	using frcnn::ops::batched_nms;
	const torch::Tensor boxes = torch::rand({4, 4});
	const torch::Tensor scores = torch::rand({4});
	expect_error(
		[&] {
			batched_nms(boxes, scores, torch::zeros({4, 1}, torch::kLong), 0.5);
		},
		{"batched_nms", "idxs", "1D", "got 2D"});
	expect_error([&] { batched_nms(boxes, scores, torch::zeros({5}, torch::kLong), 0.5); },
		     {"batched_nms", "idxs", "4 and 5"});
	expect_error([&] { batched_nms(boxes, scores, torch::zeros({4}), 0.5); },
		     {"batched_nms", "integer", "Float"});
	expect_error(
		[&] {
			batched_nms(torch::rand({4, 3}), scores, torch::zeros({4}, torch::kLong),
				    0.5);
		},
		{"batched_nms", "4 elements", "[4, 3]"});
}

TEST(Errors, RoiAlignArguments)
{
	using frcnn::ops::roi_align;
	const torch::Tensor input = torch::rand({2, 3, 8, 8});
	const torch::Tensor rois = torch::tensor({0.0f, 1.0f, 1.0f, 4.0f, 4.0f}).reshape({1, 5});
	expect_error(
		[&] {
			roi_align(torch::rand({3, 8, 8}), rois, 1.0, 7, 7, 2, false);
		},
		{"roi_align", "input", "4D", "got 3D", "[3, 8, 8]"});
	expect_error([&] { roi_align(input, rois.flatten(), 1.0, 7, 7, 2, false); },
		     {"roi_align", "rois", "2D", "got 1D", "[5]"});
	expect_error(
		[&] {
			roi_align(input, torch::rand({1, 4}), 1.0, 7, 7, 2, false);
		},
		{"roi_align", "5 elements", "[1, 4]"});
	expect_error([&] { roi_align(input, rois.to(torch::kDouble), 1.0, 7, 7, 2, false); },
		     {"roi_align", "dtype", "Double", "Float"});
	expect_error(
		[&] {
			roi_align(input.to(torch::kLong), rois.to(torch::kLong), 1.0, 7, 7, 2,
				  false);
		},
		{"roi_align", "floating point", "Long"});
	expect_error([&] { roi_align(input, rois, 1.0, 0, 7, 2, false); },
		     {"roi_align", "output size", "0x7"});
	// A batch index past the input's batch would read out of bounds: it is refused.
	const torch::Tensor bad_index =
		torch::tensor({2.0f, 1.0f, 1.0f, 4.0f, 4.0f}).reshape({1, 5});
	expect_error([&] { roi_align(input, bad_index, 1.0, 7, 7, 2, false); },
		     {"roi_align", "rois[0, 0]", "batch index 2", "2 image(s)"});
	const torch::Tensor negative =
		torch::tensor({-1.0f, 1.0f, 1.0f, 4.0f, 4.0f}).reshape({1, 5});
	expect_error([&] { roi_align(input, negative, 1.0, 7, 7, 2, false); }, {"batch index -1"});
}

TEST(Errors, RoiAlignIntoArguments)
{
	using frcnn::ops::roi_align_into;
	const torch::Tensor input = torch::rand({2, 3, 8, 8});
	const torch::Tensor rois = torch::tensor({0.0f, 1.0f, 1.0f, 4.0f, 4.0f}).reshape({1, 5});
	const torch::Tensor row = torch::tensor({1L});
	torch::Tensor output = torch::zeros({2, 3, 7, 7});
	expect_error([&] { roi_align_into(output, torch::tensor({2L}), input, rois, 1.0, 7, 7, 2, false); },
		     {"roi_align_into", "rows[0] is 2", "2 row(s)"});
	expect_error([&] { roi_align_into(output, torch::tensor({1, 0}), input, rois, 1.0, 7, 7, 2, false); },
		     {"roi_align_into", "rows should be int64 [1]"});
	torch::Tensor narrow = torch::zeros({2, 3, 5, 5});
	expect_error([&] { roi_align_into(narrow, row, input, rois, 1.0, 7, 7, 2, false); },
		     {"roi_align_into", "output should be [M, 3, 7, 7]", "[2, 3, 5, 5]"});
	torch::Tensor doubles = torch::zeros({2, 3, 7, 7}, torch::kDouble);
	expect_error([&] { roi_align_into(doubles, row, input, rois, 1.0, 7, 7, 2, false); },
		     {"roi_align_into", "dtype (Float)", "Double"});
	const torch::Tensor trainable = input.clone().requires_grad_(true);
	expect_error([&] { roi_align_into(output, row, trainable, rois, 1.0, 7, 7, 2, false); },
		     {"roi_align_into", "requires a gradient", "roi_align"});
	// The arguments roi_align checks are checked here too.
	expect_error([&] { roi_align_into(output, row, input, rois.to(torch::kDouble), 1.0, 7, 7, 2, false); },
		     {"roi_align", "dtype", "Double", "Float"});
	EXPECT_TRUE((output == 0).all().item<bool>());
}

TEST(Errors, BoxHelperArguments)
{
	expect_error([] { frcnn::ops::box_area(torch::rand({4})); }, {"box_area", "2D", "got 1D"});
	expect_error(
		[] {
			frcnn::ops::box_iou(torch::rand({2, 4}), torch::rand({2, 3}));
		},
		{"box_iou", "boxes2", "4 elements", "[2, 3]"});
	expect_error(
		[] {
			frcnn::ops::clip_boxes_to_image(torch::rand({2, 5}), 10, 10);
		},
		{"clip_boxes_to_image", "4 elements", "[2, 5]"});
	expect_error(
		[] {
			frcnn::ops::clip_boxes_to_image(torch::rand({2, 4}), -1, 10);
		},
		{"clip_boxes_to_image", "-1x10"});
	expect_error(
		[] {
			frcnn::ops::remove_small_boxes(torch::rand({2, 4, 1}), 1.0);
		},
		{"remove_small_boxes", "got 3D"});
}

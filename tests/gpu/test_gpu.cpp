// SPDX-License-Identifier: BSD-3-Clause
// The CUDA path against the CPU path, on a machine with a GPU (tests/gpu/run.sh):
// - nms, nms by category, batched_nms and roi_align (forward, backward, half) on random inputs;
// - frame pre-processing of every pixel format, odd sizes and padded strides;
// - the model's batched steps (proposal filtering, post-processing, multi-scale RoIAlign) against
//   the CPU's, and how often a batch waits for the device;
// - the detector on GPU fp32 against CPU fp32 (same labels in order, boxes within 0.05 px) with
//   the trained shapes model on shapes frames and fasterrcnn_resnet50_fpn (seeded weights,
//   calibrated statistics) on real photos;
// - GPU fp16 against GPU fp32: matched detections of score >= 0.5 have IoU >= 0.9 for >= 95%,
//   with the trained shapes model, and with torchvision's COCO weights on the photos when the
//   machine has them (FRCNN_COCO_WEIGHTS; skipped otherwise).
// Every measured difference is printed, so the log holds the figures behind each verdict.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include <c10/cuda/CUDAFunctions.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "common.h"
#include "random_frames.h"
#include "frcnn-build-config.h"
#include "frcnn/checkpoint.h"
#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "frcnn/model.h"
#include "frcnn/ops.h"
#include "frcnn/shapes.h"
#include "detector/model_parts.h"
#include "detector/proposal_cases.h"
#include "parts.h"
#include "../../detector/ops/kernels.h"

using namespace frcnn;
using frcnn::test::random_frame;

namespace {

constexpr double kBoxTolerance = 0.05; // pixels, GPU fp32 against CPU fp32
constexpr double kFp16Iou = 0.9;
constexpr double kFp16Share = 0.95;
constexpr double kFp16MinScore = 0.5;

const torch::Device kCuda(torch::kCUDA, 0);

torch::Tensor random_boxes(int64_t n, double extent, std::mt19937 &rng, torch::ScalarType dtype)
{
	std::uniform_real_distribution<double> pos(0, extent), size(1, extent / 4);
	std::vector<double> v;
	for (int64_t i = 0; i < n; i++) {
		const double x = pos(rng), y = pos(rng);
		v.insert(v.end(), {x, y, x + size(rng), y + size(rng)});
	}
	return torch::tensor(v, torch::kFloat64).reshape({n, 4}).to(dtype);
}

double max_abs_diff(const torch::Tensor &a, const torch::Tensor &b)
{
	if (a.numel() == 0)
		return 0;
	return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).abs().max().item<double>();
}

// --- ops --------------------------------------------------------------------------------------

TEST(CudaOps, NmsKeepsTheSameBoxesAsTheCpu)
{
	std::mt19937 rng(1);
	for (auto dtype : {torch::kFloat, torch::kDouble}) {
		for (int64_t n : {0, 1, 63, 64, 65, 1000, 4000}) {
			for (double threshold : {0.3, 0.5, 0.7}) {
				auto boxes = random_boxes(n, 400, rng, dtype);
				auto scores = torch::rand({n}, torch::TensorOptions().dtype(dtype));
				// Ties in score: the order must still agree (stable, by index).
				if (n > 10)
					scores.slice(0, 0, n / 10).fill_(0.5);
				auto cpu = ops::nms(boxes, scores, threshold);
				auto gpu = ops::nms(boxes.to(kCuda), scores.to(kCuda), threshold);
				ASSERT_TRUE(gpu.device().is_cuda());
				ASSERT_TRUE(torch::equal(cpu, gpu.cpu()))
					<< "n=" << n << " threshold=" << threshold << " dtype=" << dtype
					<< ": CPU keeps " << cpu.size(0) << ", CUDA " << gpu.size(0);
			}
		}
	}
}

// The categories are settled in parallel on CUDA, one segment of boxes per block: few and many
// categories, segments within one 64-box word, spanning several and sharing words; the whole
// suppression mask, and only the words the largest category can reach.
TEST(CudaOps, NmsByCategoryKeepsTheSameBoxesAsTheCpu)
{
	std::mt19937 rng(4);
	for (auto dtype : {torch::kFloat, torch::kDouble}) {
		for (int64_t n : {1, 65, 700, 5000, 20000}) {
			for (int64_t categories : {1, 3, 9, 728}) {
				auto boxes = random_boxes(n, 300, rng, dtype);
				auto scores = torch::rand({n}, torch::TensorOptions().dtype(dtype));
				if (n > 10)
					scores.slice(0, 0, n / 10).fill_(0.5);
				auto idxs = torch::randint(0, categories, {n}, torch::kLong);
				auto cpu = ops::nms_mask_by_category(boxes, scores, idxs, 0.5);
				auto gpu = ops::nms_mask_by_category(boxes.to(kCuda), scores.to(kCuda), idxs.to(kCuda), 0.5);
				ASSERT_TRUE(gpu.device().is_cuda());
				ASSERT_TRUE(torch::equal(cpu, gpu.cpu()))
					<< "n=" << n << " categories=" << categories << " dtype=" << dtype
					<< ": CPU keeps " << cpu.sum().item<int64_t>() << ", CUDA "
					<< gpu.sum().item<int64_t>();
				// With the mask cut to what the largest category reaches.
				const int64_t largest = idxs.bincount().max().item<int64_t>();
				auto within = ops::detail::nms_mask_by_category_within(
					boxes.to(kCuda), scores.to(kCuda), idxs.to(kCuda), 0.5, largest);
				ASSERT_TRUE(torch::equal(cpu, within.cpu()))
					<< "n=" << n << " categories=" << categories << " dtype=" << dtype
					<< ", at most " << largest << " boxes a category: CPU keeps "
					<< cpu.sum().item<int64_t>() << ", CUDA " << within.sum().item<int64_t>();
			}
		}
	}
}

TEST(CudaOps, BatchedNmsAgreesOnBothStrategies)
{
	std::mt19937 rng(2);
	// 2000 boxes: the coordinate-offset strategy; 8000: one suppression per category.
	for (int64_t n : {2000, 8000}) {
		auto boxes = random_boxes(n, 800, rng, torch::kFloat);
		auto scores = torch::rand({n});
		auto idxs = torch::randint(0, 20, {n}, torch::kLong);
		auto cpu = ops::batched_nms(boxes, scores, idxs, 0.5);
		auto gpu = ops::batched_nms(boxes.to(kCuda), scores.to(kCuda), idxs.to(kCuda), 0.5).cpu();
		// The same boxes kept; in the same order but for boxes of equal score, which the final
		// sort by score (unstable, as torchvision's) may order differently on each device.
		ASSERT_EQ(cpu.size(0), gpu.size(0)) << "n=" << n;
		EXPECT_TRUE(torch::equal(std::get<0>(cpu.sort()), std::get<0>(gpu.sort()))) << "n=" << n;
		EXPECT_TRUE(torch::equal(scores.index_select(0, cpu), scores.index_select(0, gpu))) << "n=" << n;
		const int64_t same_place = cpu.eq(gpu).sum().item<int64_t>();
		std::printf("batched_nms n=%lld: %lld kept on both devices, %lld at the same place (the rest "
			    "are ties in score)\n", (long long)n, (long long)cpu.size(0), (long long)same_place);
	}
}

torch::Tensor random_rois(int64_t k, int64_t batch, double extent, std::mt19937 &rng, torch::ScalarType dtype)
{
	auto boxes = random_boxes(k, extent, rng, torch::kFloat64);
	// Some RoIs hang over the border, one is degenerate.
	boxes.slice(0, 0, 3) -= 20;
	boxes[k - 1] = torch::tensor({5.0, 5.0, 5.0, 5.0}, torch::kFloat64);
	auto index = torch::randint(0, batch, {k, 1}, torch::kFloat64);
	return torch::cat({index, boxes}, 1).to(dtype);
}

TEST(CudaOps, RoIAlignForwardMatchesTheCpu)
{
	std::mt19937 rng(3);
	torch::manual_seed(3);
	for (auto dtype : {torch::kFloat, torch::kDouble}) {
		for (bool aligned : {false, true}) {
			for (int64_t sampling : {0, 2}) {
				auto input = torch::randn({2, 16, 50, 60}, torch::TensorOptions().dtype(dtype));
				auto rois = random_rois(200, 2, 200, rng, dtype);
				auto cpu = ops::roi_align(input, rois, 0.25, 7, 7, sampling, aligned);
				auto gpu = ops::roi_align(input.to(kCuda), rois.to(kCuda), 0.25, 7, 7, sampling, aligned);
				const double diff = max_abs_diff(cpu, gpu);
				// Relative to the largest input value.
				const double range = input.abs().max().item<double>();
				const double tolerance = (dtype == torch::kFloat ? 1e-5 : 1e-12) * range;
				EXPECT_LE(diff, tolerance) << "dtype=" << dtype << " aligned=" << aligned
							   << " sampling=" << sampling;
				std::printf("roi_align forward %s aligned=%d sampling=%lld: max |CPU - CUDA| = %.3g\n",
					    c10::toString(dtype), aligned, (long long)sampling, diff);
				// Channels-last features are read in place: the same values, bit for bit.
				auto nhwc = ops::roi_align(input.to(kCuda).contiguous(torch::MemoryFormat::ChannelsLast),
							   rois.to(kCuda), 0.25, 7, 7, sampling, aligned);
				EXPECT_TRUE(torch::equal(nhwc.cpu(), gpu.cpu())) << "channels-last input";
			}
		}
	}
}

// A RoI whose batch index is no image of the input (out of range, or not a number) pools zeros
// on CUDA (the CPU refuses it); the RoIs beside it pool as ever.
TEST(CudaOps, RoIAlignOfNoImagePoolsZeros)
{
	torch::manual_seed(5);
	auto input = torch::randn({2, 8, 20, 20}).to(kCuda);
	auto rois = torch::tensor({{1.0f, 2.0f, 2.0f, 40.0f, 40.0f},
				   {std::nanf(""), 2.0f, 2.0f, 40.0f, 40.0f},
				   {2.0f, 2.0f, 2.0f, 40.0f, 40.0f},
				   {-1.0f, 2.0f, 2.0f, 40.0f, 40.0f}})
			    .to(kCuda);
	auto out = ops::roi_align(input, rois, 0.5, 7, 7, 2, false).cpu();
	EXPECT_GT(out[0].abs().max().item<float>(), 0.0f);
	for (int64_t i = 1; i < 4; i++)
		EXPECT_EQ(out[i].abs().max().item<float>(), 0.0f) << "RoI " << i;
}

TEST(CudaOps, RoIAlignHalfFeaturesWithFloatRois)
{
	std::mt19937 rng(4);
	torch::manual_seed(4);
	auto input = torch::randn({2, 32, 40, 40}).to(kCuda);
	auto rois = random_rois(100, 2, 160, rng, torch::kFloat).to(kCuda);
	auto full = ops::roi_align(input, rois, 0.25, 7, 7, 2, false);
	auto half = ops::roi_align(input.to(torch::kHalf), rois, 0.25, 7, 7, 2, false);
	ASSERT_EQ(half.scalar_type(), torch::kHalf);
	const double diff = max_abs_diff(full, half);
	EXPECT_LE(diff, 1e-2);
	std::printf("roi_align half features: max |float - half| = %.3g\n", diff);
	// Half RoIs too (torchvision's roi_align takes them): pooled at their float values.
	const auto half_rois = rois.to(torch::kHalf);
	auto all_half = ops::roi_align(input.to(torch::kHalf), half_rois, 0.25, 7, 7, 2, false);
	ASSERT_EQ(all_half.scalar_type(), torch::kHalf);
	EXPECT_TRUE(torch::equal(all_half, ops::roi_align(input.to(torch::kHalf), half_rois.to(torch::kFloat), 0.25, 7,
							  7, 2, false)));
}

TEST(CudaOps, RoIAlignBackwardMatchesTheCpu)
{
	std::mt19937 rng(5);
	torch::manual_seed(5);
	auto input = torch::randn({2, 8, 30, 30});
	auto rois = random_rois(50, 2, 120, rng, torch::kFloat);
	auto grad = torch::randn({50, 8, 7, 7});
	auto run = [&](torch::Device device) {
		auto x = input.to(device).requires_grad_(true);
		auto y = ops::roi_align(x, rois.to(device), 0.25, 7, 7, 0, true);
		y.backward(grad.to(device));
		return x.grad().cpu();
	};
	const double diff = max_abs_diff(run(torch::kCPU), run(kCuda));
	EXPECT_LE(diff, 1e-5);
	std::printf("roi_align backward: max |CPU - CUDA| = %.3g\n", diff);
}

TEST(CudaOps, InvalidBatchIndexGivesZeros)
{
	auto input = torch::ones({1, 2, 8, 8}).to(kCuda);
	auto rois = torch::tensor({{3.0f, 0.0f, 0.0f, 4.0f, 4.0f}}).to(kCuda);
	auto out = ops::roi_align(input, rois, 1.0, 2, 2, 2, false);
	EXPECT_EQ(out.abs().sum().item<float>(), 0.0f);
}

// --- the model's batched steps ----------------------------------------------------------------

// The RPN's proposal filtering on CUDA (the batched form, one wait for the device) keeps the
// proposals the CPU's per-image filtering keeps, in the same score order: with its NMS's
// categories bounded by an image's candidates, and by a level's (as the RPN's forward bounds them).
TEST(CudaModel, ProposalFilteringMatchesTheCpu)
{
	const auto c = test::random_proposal_case(11);
	ModelConfig config = model_preset("tiny");
	config.rpn_score_thresh = c.score_thresh;
	frcnn::detail::RegionProposalNetwork rpn(config);
	torch::NoGradGuard no_grad;
	const int64_t per_level = c.levels.bincount().max().item<int64_t>();
	for (const int64_t post_nms : {1000, 5000})
	for (const int64_t most_per_level : {int64_t{0}, per_level}) {
		auto cpu = rpn->filter_proposals(c.top_boxes, c.probs, c.levels, c.sizes, post_nms);
		auto gpu_batched = rpn->filter_proposals_batched(c.top_boxes.to(kCuda), c.probs.to(kCuda),
								 c.levels.to(kCuda), c.sizes, post_nms, most_per_level);
		ASSERT_EQ(gpu_batched.boxes.size(), cpu.boxes.size());
		for (size_t i = 0; i < cpu.boxes.size(); i++) {
			SCOPED_TRACE("post_nms " + std::to_string(post_nms) + ", most per level " +
				     std::to_string(most_per_level) + ", image " + std::to_string(i));
			ASSERT_TRUE(gpu_batched.boxes[i].is_cuda());
			ASSERT_EQ(cpu.boxes[i].size(0), gpu_batched.boxes[i].size(0));
			EXPECT_TRUE(torch::equal(cpu.scores[i], gpu_batched.scores[i].cpu()));
			EXPECT_EQ(test::proposal_rows(cpu.boxes[i], cpu.scores[i]),
				  test::proposal_rows(gpu_batched.boxes[i], gpu_batched.scores[i]));
		}
	}
}

// postprocess_detections of a case on CUDA (batched) against the CPU's per-image form: the same
// labels in the same order; scores and boxes up to the last bits of CUDA's softmax and exp. Each
// image's detection count, or none where `count` is negative.
void expect_postprocess_as_on_the_cpu(const test::DetectionCase &c, int64_t count)
{
	std::vector<torch::Tensor> proposals_gpu;
	for (const auto &p : c.proposals)
		proposals_gpu.push_back(p.to(kCuda));
	torch::NoGradGuard no_grad;
	auto cpu = c.heads->postprocess(c.logits, c.regression, c.proposals, c.sizes);
	auto gpu = c.heads->postprocess(c.logits.to(kCuda), c.regression.to(kCuda), proposals_gpu, c.sizes);
	ASSERT_EQ(cpu.size(), gpu.size());
	for (size_t i = 0; i < cpu.size(); i++) {
		ASSERT_TRUE(gpu[i].boxes.is_cuda());
		ASSERT_EQ(cpu[i].labels.size(0), gpu[i].labels.size(0)) << "image " << i;
		EXPECT_TRUE(torch::equal(cpu[i].labels, gpu[i].labels.cpu())) << "image " << i;
		EXPECT_LE(max_abs_diff(cpu[i].scores, gpu[i].scores), 1e-5) << "image " << i;
		EXPECT_LE(max_abs_diff(cpu[i].boxes, gpu[i].boxes), 1e-3) << "image " << i;
		if (count >= 0) {
			EXPECT_EQ(cpu[i].boxes.size(0), count) << "image " << i;
		}
	}
}

TEST(CudaModel, PostprocessMatchesTheCpu)
{
	const auto c = test::random_detection_case(7);
	expect_postprocess_as_on_the_cpu(c, c.config.box_detections_per_img);
}

// The same where the CPU's per-image NMS offsets the boxes by class (a few hundred candidates an
// image of 91 classes on 1333x800 frames): the batched CUDA form offsets them alike, so that a
// pair near the threshold is decided as on the CPU.
TEST(CudaModel, PostprocessRoundsAsTheCpu)
{
	const auto c = test::crowded_detection_case(13);
	ASSERT_LE(test::candidates_per_image(c).max().item<int64_t>(), 1000) << "the case needs the offsets on the CPU";
	expect_postprocess_as_on_the_cpu(c, -1);
}

// Multi-scale RoIAlign on CUDA pools what the CPU pools, each RoI from its own level (a RoI
// pooled from another level would differ by the size of the features, not by rounding).
TEST(CudaModel, MultiScaleRoIAlignMatchesTheCpu)
{
	torch::manual_seed(3);
	const std::vector<frcnn::detail::ImageSize> sizes{{512, 768}, {480, 640}};
	std::vector<torch::Tensor> features, features_gpu;
	for (int64_t stride : {4, 8, 16, 32}) {
		features.push_back(torch::randn({2, 8, 512 / stride, 768 / stride}));
		features_gpu.push_back(features.back().to(kCuda));
	}
	std::vector<torch::Tensor> proposals, proposals_gpu;
	for (const auto &s : sizes) {
		// Sizes from 4 to 600 px, the first 20 over 448 px: every level gets RoIs.
		auto xy = torch::rand({300, 2}) * torch::tensor({(float)s.second / 2, (float)s.first / 2});
		auto wh = torch::exp(torch::rand({300, 2}) * std::log(150.0)) * 4;
		wh.slice(0, 0, 20).copy_(torch::rand({20, 2}) * 100 + 460);
		proposals.push_back(torch::cat({xy, xy + wh}, 1));
		proposals_gpu.push_back(proposals.back().to(kCuda));
	}
	const frcnn::detail::MultiScaleRoIAlign pool(4, 7, 2, 32);
	const auto cpu = pool(features, proposals, sizes);
	const auto gpu = pool(features_gpu, proposals_gpu, sizes);
	ASSERT_TRUE(gpu.is_cuda());
	const double diff = max_abs_diff(cpu, gpu);
	std::printf("multi-scale RoIAlign, CUDA against CPU: max difference %.3g\n", diff);
	EXPECT_LE(diff, 1e-5);
	const auto levels = frcnn::detail::MultiScaleRoIAlign::map_levels(torch::cat(proposals, 0), 2, 5);
	for (int64_t level = 0; level < 4; level++)
		EXPECT_GT((levels == level).sum().item<int64_t>(), 0) << "no RoI on level " << level;
}

// --- pre-processing ---------------------------------------------------------------------------

TEST(CudaPreprocessing, EveryFormatMatchesTheCpuPath)
{
	const ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	std::mt19937 rng(6);
	for (auto format : test::all_pixel_formats()) {
		// Upscaled (641x479 -> 800 short side), downscaled (1920x1080) and unchanged sizes.
		for (auto size : {std::pair<int, int>{641, 479}, {1920, 1080}, {1333, 800}}) {
			std::vector<std::vector<uint8_t>> a, b;
			// With the 1080-line frames, the second frame interlaced (4:2:0 chroma by field),
			// 242 lines high: its chroma has the extra row of GStreamer's interlaced layout,
			// which the copy to the device must take.
			std::vector<FrameView> frames{random_frame(format, size.first, size.second, rng, a),
						      random_frame(format, 320, size.second == 1080 ? 242 : 240,
								   rng, b, size.second == 1080)};
			// Every matrix and range, for the YUV formats.
			frames[1].matrix = static_cast<YuvMatrix>(size.first % 3);
			frames[1].full_range = size.second % 2 == 0;
			// With the 479-line frames, the second frame's pixels not square (each axis
			// scaled by a factor of its own).
			if (size.second == 479)
				frames[1].pixel_aspect_ratio = {64, 45};
			// SDR, PQ and HLG (the HDR ones mapped to SDR by the table on the device); every
			// set of primaries (the wide ones converted by the device's copy of the tables).
			frames[1].transfer = static_cast<TransferFunction>(size.first % 3);
			frames[1].primaries = size.second == 1080 ? ColourPrimaries::DisplayP3 : ColourPrimaries::BT2020;
			auto cpu = frcnn::detail::transform_frames(config, frames, torch::kCPU, torch::kFloat, false);
			auto gpu = frcnn::detail::transform_frames(config, frames, kCuda, torch::kFloat, false);
			ASSERT_EQ(cpu.batch.sizes(), gpu.batch.sizes());
			ASSERT_EQ(cpu.image_sizes, gpu.image_sizes);
			const double diff = max_abs_diff(cpu.batch, gpu.batch);
			EXPECT_LE(diff, 1e-4) << "format " << (int)format << " size " << size.first << "x" << size.second;
			auto half = frcnn::detail::transform_frames(config, frames, kCuda, torch::kHalf, false);
			const double half_diff = max_abs_diff(gpu.batch, half.batch);
			EXPECT_LE(half_diff, 2e-2);
			std::printf("pre-processing format %2d %4dx%-4d: max |CPU - CUDA| = %.3g, |fp32 - fp16| = %.3g\n",
				    (int)format, size.first, size.second, diff, half_diff);
		}
	}
}

// Frames copied ahead of the batch (Detector::copy_frame, as frcnndetect copies each frame on
// arrival) are read on the device where the copy put them; frames only in pinned memory go to
// the device as they are; the others are gathered first. Every way, and mixed in one batch, the
// batch must be the same bits.
TEST(CudaPreprocessing, CopiedFramesGiveTheSameBatchAsGatheredOnes)
{
	const ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	std::mt19937 rng(11);
	std::vector<std::vector<std::vector<uint8_t>>> storage(4);
	const std::vector<FrameView> frames{random_frame(PixelFormat::NV12, 641, 479, rng, storage[0]),
					    random_frame(PixelFormat::BGRx, 1333, 800, rng, storage[1]),
					    random_frame(PixelFormat::I420, 320, 240, rng, storage[2]),
					    random_frame(PixelFormat::RGB, 1920, 1080, rng, storage[3])};
	std::vector<FrameView> copied_views(frames.size());
	std::vector<frcnn::detail::FrameMemory> on_device, pinned_only;
	for (size_t i = 0; i < frames.size(); i++) {
		on_device.push_back(frcnn::detail::copy_frame_memory(frames[i], kCuda, &copied_views[i]));
		ASSERT_TRUE(on_device.back().host.is_pinned());
		ASSERT_TRUE(on_device.back().device.is_cuda());
		pinned_only.push_back({on_device.back().host, torch::Tensor(), nullptr});
	}
	// Frame 0 gathered, 1 and 2 on the device, 3 from pinned memory.
	std::vector<FrameView> mixed_views = copied_views;
	mixed_views[0] = frames[0];
	std::vector<frcnn::detail::FrameMemory> mixed{{}, on_device[1], on_device[2], pinned_only[3]};
	for (auto dtype : {torch::kFloat, torch::kHalf}) {
		const auto gathered = frcnn::detail::transform_frames(config, frames, kCuda, dtype, false);
		const auto resident = frcnn::detail::transform_frames(config, copied_views, kCuda, dtype, false, on_device);
		const auto pinned = frcnn::detail::transform_frames(config, copied_views, kCuda, dtype, false, pinned_only);
		const auto both = frcnn::detail::transform_frames(config, mixed_views, kCuda, dtype, false, mixed);
		EXPECT_TRUE(torch::equal(gathered.batch, resident.batch)) << "frames on the device, " << dtype;
		EXPECT_TRUE(torch::equal(gathered.batch, pinned.batch)) << "frames in pinned memory, " << dtype;
		EXPECT_TRUE(torch::equal(gathered.batch, both.batch)) << "gathered, on the device and pinned, " << dtype;
		EXPECT_EQ(gathered.image_sizes, resident.image_sizes);
	}
}

// --- the detector -----------------------------------------------------------------------------

struct Photo {
	std::string name;
	int width = 0, height = 0;
	std::vector<uint8_t> rgb;
	FrameView view() const
	{
		FrameView f;
		f.format = PixelFormat::RGB;
		f.width = width;
		f.height = height;
		f.planes[0] = rgb.data();
		f.strides[0] = width * 3;
		return f;
	}
};

// Binary PPM (P6, maxval 255), as run.sh writes the photos.
Photo read_ppm(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::string magic;
	int maxval = 0;
	Photo p;
	in >> magic >> p.width >> p.height >> maxval;
	in.get();
	if (!in || magic != "P6" || maxval != 255)
		throw std::runtime_error(path + " is not a binary PPM with 8-bit samples");
	p.rgb.resize((size_t)p.width * p.height * 3);
	in.read(reinterpret_cast<char *>(p.rgb.data()), (std::streamsize)p.rgb.size());
	if (!in)
		throw std::runtime_error(path + " is truncated");
	p.name = path.substr(path.rfind('/') + 1);
	return p;
}

std::vector<Photo> photos()
{
	const std::string dir = test::env("FRCNN_PHOTOS");
	std::vector<std::string> names;
	if (DIR *d = opendir(dir.c_str())) {
		while (dirent *e = readdir(d))
			if (std::string(e->d_name).size() > 4 && std::string(e->d_name).substr(std::string(e->d_name).size() - 4) == ".ppm")
				names.push_back(e->d_name);
		closedir(d);
	}
	std::sort(names.begin(), names.end());
	std::vector<Photo> out;
	for (const auto &n : names)
		out.push_back(read_ppm(dir + "/" + n));
	if (out.size() < 3)
		throw std::runtime_error("expected at least 3 photos in " + dir);
	return out;
}

// Shapes frames 0..count-1 of seed 90210, 320x240, a scene each (frcnnshapesrc seed=90210
// scene-frames=1): drawn here when the build has the generator (it needs OpenCV), else read from
// FRCNN_SHAPES_FRAMES, binary PPMs of those frames in order.
std::vector<Photo> shapes_frames(int count)
{
#if !FRCNN_HAVE_SHAPES
	const std::string dir = test::env("FRCNN_SHAPES_FRAMES");
	std::vector<Photo> out;
	for (int i = 0; i < count; i++) {
		char name[32];
		std::snprintf(name, sizeof(name), "/shapes-%02d.ppm", i);
		out.push_back(read_ppm(dir + name));
	}
	return out;
#else
	ShapesOptions options;
	options.width = 320;
	options.height = 240;
	options.seed = 90210;
	options.scene_frames = 1;
	ShapesGenerator generator(options);
	std::vector<Photo> out;
	for (int i = 0; i < count; i++) {
		Scene s = generator.scene((uint64_t)i);
		Photo p;
		p.name = "shapes-" + std::to_string(i);
		p.width = s.width;
		p.height = s.height;
		p.rgb = std::move(s.rgb);
		out.push_back(std::move(p));
	}
	return out;
#endif
}

// fasterrcnn_resnet50_fpn with seeded weights whose frozen statistics are calibrated on the
// photos (so that activations and proposals look like a trained model's), saved for Detector.
std::string resnet50_weights(const std::vector<Photo> &images)
{
	static std::string path;
	if (!path.empty())
		return path;
	torch::manual_seed(0);
	FasterRCNN model(model_preset("fasterrcnn_resnet50_fpn"));
	std::vector<torch::Tensor> tensors;
	for (const auto &p : images)
		tensors.push_back(frame_to_tensor(p.view()));
	model->calibrate_frozen_batch_norm(tensors);
	path = "/tmp/frcnn-gpu-test-r50.pth";
	write_checkpoint(path, model->state_dict());
	return path;
}

// The detector the GPU-against-CPU checks compare: score threshold 0.05 (torchvision's).
DetectorOptions detector_options(const std::string &arch, const std::string &weights, const std::string &device,
				 bool fp16, int num_classes = 0, int min_size = 0, int max_size = 0)
{
	DetectorOptions o;
	o.model = model_preset(arch);
	if (num_classes > 0)
		o.model.num_classes = num_classes;
	if (min_size > 0) {
		o.model.min_size = min_size;
		o.model.max_size = max_size;
	}
	o.model.box_score_thresh = 0.05;
	o.weights = weights;
	o.device = device;
	o.precision = fp16 ? Precision::Fp16 : Precision::Fp32;
	// The CPU side computes as torchvision does (a oneDNN build's own convolutions round
	// differently by more than the tolerance with these weights).
	o.cpu_convolutions = CpuConvolutions::LibTorch;
	return o;
}

std::vector<std::vector<Detection>> detect(const std::string &arch, const std::string &weights,
					   const std::string &device, bool fp16, const std::vector<Photo> &images,
					   int batch, int num_classes = 0, int min_size = 0, int max_size = 0)
{
	Detector detector(detector_options(arch, weights, device, fp16, num_classes, min_size, max_size));
	std::vector<std::vector<Detection>> out;
	for (size_t i = 0; i < images.size(); i += batch) {
		std::vector<FrameView> views;
		for (size_t j = i; j < std::min(images.size(), i + batch); j++)
			views.push_back(images[j].view());
		for (auto &d : detector.detect(views))
			out.push_back(std::move(d));
	}
	return out;
}

void expect_same_detections(const std::vector<std::vector<Detection>> &cpu,
			    const std::vector<std::vector<Detection>> &gpu, const char *what)
{
	ASSERT_EQ(cpu.size(), gpu.size());
	double worst_box = 0, worst_score = 0;
	size_t total = 0;
	for (size_t i = 0; i < cpu.size(); i++) {
		ASSERT_EQ(cpu[i].size(), gpu[i].size()) << what << " image " << i;
		for (size_t k = 0; k < cpu[i].size(); k++) {
			const Detection &a = cpu[i][k], &b = gpu[i][k];
			ASSERT_EQ(a.label, b.label) << what << " image " << i << " detection " << k;
			const double box = std::max({std::abs(a.x1 - b.x1), std::abs(a.y1 - b.y1),
						     std::abs(a.x2 - b.x2), std::abs(a.y2 - b.y2)});
			worst_box = std::max(worst_box, box);
			worst_score = std::max(worst_score, (double)std::abs(a.score - b.score));
			total++;
		}
	}
	EXPECT_LE(worst_box, kBoxTolerance) << what;
	EXPECT_GT(total, 0u) << what << ": nothing detected, nothing compared";
	std::printf("%s: %zu detections, same labels in the same order; max box difference %.4f px, "
		    "max score difference %.2g\n", what, total, worst_box, worst_score);
}

double iou(const Detection &a, const Detection &b)
{
	const double w = std::max(0.0, (double)std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
	const double h = std::max(0.0, (double)std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
	const double inter = w * h;
	const double uni = (double)(a.x2 - a.x1) * (a.y2 - a.y1) + (double)(b.x2 - b.x1) * (b.y2 - b.y1) - inter;
	return uni > 0 ? inter / uni : 0;
}

// Share of the fp32 detections with score >= kFp16MinScore that an fp16 detection of the same
// label overlaps with IoU >= kFp16Iou.
void expect_fp16_matches(const std::vector<std::vector<Detection>> &fp32,
			 const std::vector<std::vector<Detection>> &fp16, const char *what, size_t min_count)
{
	ASSERT_EQ(fp32.size(), fp16.size());
	size_t considered = 0, matched = 0;
	for (size_t i = 0; i < fp32.size(); i++) {
		for (const auto &a : fp32[i]) {
			if (a.score < kFp16MinScore)
				continue;
			considered++;
			double best = 0;
			for (const auto &b : fp16[i])
				if (b.label == a.label)
					best = std::max(best, iou(a, b));
			if (best >= kFp16Iou)
				matched++;
		}
	}
	ASSERT_GE(considered, min_count) << what << ": too few detections of score >= 0.5 to judge";
	const double share = (double)matched / considered;
	EXPECT_GE(share, kFp16Share) << what;
	std::printf("%s: fp16 matches %zu of %zu fp32 detections with score >= %.1f at IoU >= %.1f (%.1f%%)\n",
		    what, matched, considered, kFp16MinScore, kFp16Iou, 100 * share);
}

TEST(CudaDetector, ShapesModelGpuMatchesCpu)
{
	const auto frames = shapes_frames(16);
	const std::string weights = test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth";
	const auto cpu = detect("tiny", weights, "cpu", false, frames, 4, 4, 240, 320);
	const auto gpu = detect("tiny", weights, "cuda", false, frames, 4, 4, 240, 320);
	expect_same_detections(cpu, gpu, "shapes model, GPU fp32 vs CPU fp32");
}

// Frames the RPN finds nothing in (every proposal below its score threshold) have no
// detections on the GPU, in fp32 and fp16, as on the CPU (Detector.FramesWithoutProposalsHave-
// NoDetections): no kernel is launched on nothing.
TEST(CudaDetector, FramesWithoutProposalsHaveNoDetections)
{
	const auto frames = shapes_frames(3);
	std::vector<FrameView> views;
	for (const auto &f : frames)
		views.push_back(f.view());
	for (bool fp16 : {false, true}) {
		DetectorOptions options =
			detector_options("tiny", test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth", "cuda", fp16, 4, 240, 320);
		options.model.rpn_score_thresh = 2.0; // above every objectness probability
		Detector detector(options);
		const auto detections = detector.detect(views);
		ASSERT_EQ(detections.size(), views.size());
		for (const auto &list : detections)
			EXPECT_TRUE(list.empty()) << (fp16 ? "fp16" : "fp32");
	}
}

// Detector::detect on frames copied with copy_frame (page-locked, then on the device), and on
// frames held with hold_frame, as the element runs it (which on CUDA copies the same way and lets
// the frame's owner go at once), gives the same detections as on the frames themselves.
TEST(CudaDetector, FrameCopiesGiveTheSameDetections)
{
	const auto frames = shapes_frames(8);
	Detector detector(
		detector_options("tiny", test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth", "cuda", false, 4, 240, 320));
	std::vector<FrameView> views;
	std::vector<HeldFrame> copies, held;
	for (const auto &f : frames) {
		views.push_back(f.view());
		copies.push_back(detector.copy_frame(f.view()));
		auto owner = std::make_shared<int>(0);
		const std::weak_ptr<int> watch = owner;
		held.push_back(detector.hold_frame(f.view(), std::move(owner)));
		EXPECT_TRUE(watch.expired()) << "hold_frame on CUDA must copy the frame and let its owner go";
		EXPECT_NE(held.back().view().planes[0], f.view().planes[0]);
	}
	const auto from_views = detector.detect(views);
	size_t total = 0;
	auto expect_identical = [&](const std::vector<std::vector<Detection>> &other, const char *what) {
		ASSERT_EQ(from_views.size(), other.size()) << what;
		total = 0;
		for (size_t i = 0; i < from_views.size(); i++) {
			ASSERT_EQ(from_views[i].size(), other[i].size()) << what << ", frame " << i;
			for (size_t k = 0; k < from_views[i].size(); k++, total++) {
				const Detection &a = from_views[i][k], &b = other[i][k];
				EXPECT_TRUE(a.label == b.label && a.score == b.score && a.x1 == b.x1 &&
					    a.y1 == b.y1 && a.x2 == b.x2 && a.y2 == b.y2)
					<< what << ", frame " << i << " detection " << k;
			}
		}
	};
	expect_identical(detector.detect(copies), "copy_frame");
	expect_identical(detector.detect(held), "hold_frame");
	EXPECT_GT(total, 0u);
	std::printf("shapes model on CUDA, frame copies and held frames vs frames: %zu detections, identical\n",
		    total);
}

// Rectangles cut from a frame held once (crop_frame of a HeldFrame, as frcnndetect's
// inference-region=roi-list runs the regions of a frame): one copy of the frame on the device, each
// rectangle read out of it, and the detections of the same rectangles cut from the frame itself.
TEST(CudaDetector, RectanglesOfAHeldFrameGiveTheirDetections)
{
	const auto frames = shapes_frames(4);
	Detector detector(
		detector_options("tiny", test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth", "cuda", false, 4, 240, 320));
	const int rects[3][4] = {{0, 0, 320, 240}, {40, 20, 200, 160}, {160, 100, 160, 140}};
	std::vector<FrameView> cut;
	std::vector<HeldFrame> crops;
	for (const auto &f : frames) {
		const HeldFrame held = detector.hold_frame(f.view(), nullptr);
		for (const auto &r : rects) {
			cut.push_back(frcnn::crop_frame(f.view(), r[0], r[1], r[2], r[3]));
			crops.push_back(frcnn::crop_frame(held, r[0], r[1], r[2], r[3]));
			EXPECT_EQ(crops.back().view().planes[0],
				  held.view().planes[0] + r[1] * held.view().strides[0] + r[0] * 3)
				<< "a rectangle of a held frame must point into the frame's copy";
		}
	}
	const auto expected = detector.detect(cut);
	const auto from_crops = detector.detect(crops);
	ASSERT_EQ(expected.size(), from_crops.size());
	size_t total = 0;
	for (size_t i = 0; i < expected.size(); i++) {
		ASSERT_EQ(expected[i].size(), from_crops[i].size()) << "rectangle " << i;
		for (size_t k = 0; k < expected[i].size(); k++, total++) {
			const Detection &a = expected[i][k], &b = from_crops[i][k];
			EXPECT_TRUE(a.label == b.label && a.score == b.score && a.x1 == b.x1 && a.y1 == b.y1 &&
				    a.x2 == b.x2 && a.y2 == b.y2)
				<< "rectangle " << i << " detection " << k;
		}
	}
	EXPECT_GT(total, 0u);
	std::printf("shapes model on CUDA, rectangles of held frames vs rectangles of frames: %zu detections, "
		    "identical\n",
		    total);
}

TEST(CudaDetector, ResNet50GpuMatchesCpuOnPhotos)
{
	const auto images = photos();
	const std::string weights = resnet50_weights(images);
	const auto cpu = detect("fasterrcnn_resnet50_fpn", weights, "cpu", false, images, 2);
	const auto gpu = detect("fasterrcnn_resnet50_fpn", weights, "cuda", false, images, 2);
	expect_same_detections(cpu, gpu, "fasterrcnn_resnet50_fpn on photos, GPU fp32 vs CPU fp32");
}

// How many times the host waits for the device while `run` runs: LibTorch's synchronisation
// debug mode warns at each wait (a blocking copy, nonzero, item(), a stream synchronisation),
// and the warnings, which go to stderr, are counted there.
int count_device_waits(const std::function<void()> &run)
{
	char path[] = "/tmp/frcnn-waits-XXXXXX";
	const int file = mkstemp(path);
	if (file < 0)
		throw std::runtime_error("cannot create a temporary file");
	std::fflush(stderr);
	const int saved_stderr = dup(2);
	dup2(file, 2);
	struct Restore {
		int saved, file;
		~Restore()
		{
			c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
			std::cerr.flush();
			std::fflush(stderr);
			dup2(saved, 2);
			close(saved);
			close(file);
		}
	};
	{
		const Restore restore{saved_stderr, file};
		c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
		run();
	}
	std::ifstream in(path);
	const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
	unlink(path);
	int count = 0;
	const std::string needle = "called a synchronizing CUDA operation";
	for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
		count++;
	return count;
}

// A batch of 8 through Detector::detect (what the element calls) waits for the device a handful
// of times, not per image: the RPN's filtering once, RoI pooling once, the post-processing
// twice, the copy of the detections to the host once.
TEST(CudaDetector, ABatchWaitsForTheDeviceAFewTimes)
{
	const auto frames = shapes_frames(8);
	DetectorOptions o;
	o.model = model_preset("fasterrcnn_resnet50_fpn");
	o.model.min_size = 240;
	o.model.max_size = 320;
	o.device = "cuda";
	Detector detector(o);
	std::vector<FrameView> views;
	for (const auto &f : frames)
		views.push_back(f.view());
	detector.detect(views); // cuDNN's algorithm search and the caching allocators warm up
	size_t detections = 0;
	const int waits = count_device_waits([&] {
		for (const auto &d : detector.detect(views))
			detections += d.size();
	});
	std::printf("a batch of 8 through Detector::detect: %d waits for the device, %zu detections\n", waits,
		    detections);
	EXPECT_GE(waits, 1) << "copying the detections to the host waits: a count of 0 means the counting failed";
	EXPECT_LE(waits, 5);
}

TEST(CudaDetector, ShapesModelFp16MatchesFp32)
{
	const auto frames = shapes_frames(32);
	const std::string weights = test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth";
	const auto fp32 = detect("tiny", weights, "cuda", false, frames, 8, 4, 240, 320);
	const auto fp16 = detect("tiny", weights, "cuda", true, frames, 8, 4, 240, 320);
	expect_fp16_matches(fp32, fp16, "shapes model, fp16 vs fp32", 50);
}

// Every architecture in fp16 on the GPU (the frozen batch norms of the ResNet and MobileNetV3
// trunks folded into their convolutions, the v2 model's BatchNorm2d, its convolutional box head):
// its features point where fp32's do on the same device, its detections are float and inside the
// image. Seeded weights amplify rounding (test_precision's bf16 test says how much), so the
// features are held to a cosine similarity, as there; the trained shapes model's test above holds
// the detections to the fp16 target.
TEST(CudaModel, EveryArchitectureRunsInFp16)
{
	const auto image = frcnn::test::test_image(240, 320);
	for (const std::string arch : {"fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
				       "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "tiny"}) {
		SCOPED_TRACE(arch);
		FasterRCNN model = frcnn::test::seeded_model(arch, image);
		c10::InferenceMode inference;
		model->to_device(kCuda, Precision::Fp32, false);
		const auto batch = frcnn::detail::transform_images(model->config(), {image}, nullptr).batch.to(kCuda);
		const auto expected = frcnn::test::backbone_of(model)->forward(batch);
		model->to_device(kCuda, Precision::Fp16, false);
		const auto got = frcnn::test::backbone_of(model)->forward(batch.to(torch::kHalf));
		ASSERT_EQ(got.size(), expected.size());
		double least = 1;
		for (size_t i = 0; i < got.size(); i++) {
			EXPECT_EQ(got[i].scalar_type(), torch::kHalf);
			least = std::min(least, frcnn::test::cosine(got[i], expected[i]));
		}
		std::printf("%s: cosine similarity of fp16 and fp32 features on CUDA >= %.4f\n", arch.c_str(), least);
		EXPECT_GT(least, 0.75);

		frcnn::test::expect_detections_in_image(model->forward({image.to(kCuda)})[0], 320, 240);
	}
}

// The fp16 criterion needs a trained model: seeded weights spread their scores over 91 classes
// (none reaches 0.5) and their near-equal scores let fp16 rounding pick other boxes. With
// torchvision's COCO weights (FRCNN_COCO_WEIGHTS: fasterrcnn_resnet50_fpn_coco-258fb6c6.pth,
// which run.sh takes from the torch hub cache when it is there) the photos are checked;
// without them the test is skipped, and says so.
TEST(CudaDetector, ResNet50Fp16MatchesFp32OnPhotos)
{
	const char *weights = std::getenv("FRCNN_COCO_WEIGHTS");
	if (weights == nullptr || *weights == '\0')
		GTEST_SKIP() << "FRCNN_COCO_WEIGHTS is not set: no trained fasterrcnn_resnet50_fpn weights to "
				"compare fp16 with fp32 on";
	const auto images = photos();
	auto run = [&](bool fp16) {
		DetectorOptions options;
		options.model = model_preset("fasterrcnn_resnet50_fpn");
		options.model.frozen_bn_eps = 0.0; // the v1 COCO weights' (torchvision's overwrite_eps)
		options.weights = weights;
		options.device = "cuda";
		options.precision = fp16 ? Precision::Fp16 : Precision::Fp32;
		Detector detector(options);
		std::vector<std::vector<Detection>> out;
		for (const auto &p : images)
			out.push_back(detector.detect({p.view()})[0]);
		return out;
	};
	expect_fp16_matches(run(false), run(true), "fasterrcnn_resnet50_fpn (COCO weights) on photos, fp16 vs fp32",
			    5);
}

TEST(CudaDetector, BadDeviceIndexIsAClearError)
{
	DetectorOptions o;
	o.model = model_preset("tiny");
	o.device = "cuda:" + std::to_string(torch::cuda::device_count());
	try {
		Detector d(o);
		FAIL() << "expected an error";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find("not available"), std::string::npos) << e.what();
	}
}

} // namespace

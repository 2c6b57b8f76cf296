// SPDX-License-Identifier: BSD-3-Clause
// The oneDNN CPU convolutions (cpu-convolutions=onednn) against LibTorch's operators on the same
// model: feature maps and RPN head outputs within float rounding, the trained shapes model's
// detections unchanged (same labels, boxes within 0.5 px), the plan following the weights when
// they change, running in threads other than the one that made it, and the models it does not
// cover. The comparison with torchvision itself is in test_parity.cpp.
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common.h"
#include "frcnn-build-config.h"
#include "frcnn/checkpoint.h"
#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/model.h"
#include "frcnn/shapes.h"
#include "onednn_convolutions.h"
#include "model_parts.h"
#include "parts.h"

using namespace frcnn;
using frcnn::test::backbone_of;
using frcnn::test::rpn_head_of;
using frcnn::test::test_image;

namespace {

// The largest difference between two lists of tensors, relative to the largest magnitude of
// the reference.
double relative_difference(const std::vector<torch::Tensor> &a, const std::vector<torch::Tensor> &b)
{
	EXPECT_EQ(a.size(), b.size());
	double worst = 0;
	for (size_t i = 0; i < std::min(a.size(), b.size()); i++) {
		EXPECT_EQ(a[i].sizes(), b[i].sizes()) << "tensor " << i;
		if (a[i].sizes() != b[i].sizes())
			return INFINITY;
		const double scale = std::max(a[i].abs().max().item<double>(), 1e-12);
		worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
	}
	return worst;
}

// How many convolutions (per input size planned) run a kernel whose name holds `part` (all of
// them for an empty part).
int planned_kernels(const frcnn::detail::OneDnnPlan &plan, const std::string &part = {})
{
	int count = 0;
	for (const auto &[name, n] : plan.implementations())
		count += name.find(part) != std::string::npos ? n : 0;
	return count;
}

struct Outputs {
	std::vector<torch::Tensor> features, logits, deltas;
};

Outputs run_backbone_and_head(FasterRCNN &model, const torch::Tensor &batch)
{
	c10::InferenceMode inference;
	Outputs out;
	out.features = backbone_of(model)->forward(batch);
	auto head = rpn_head_of(model)->forward(std::vector<torch::Tensor>(out.features.begin(), out.features.end()));
	out.logits = head.first;
	out.deltas = head.second;
	return out;
}

// A model with seeded weights whose frozen statistics come from the test image.
FasterRCNN calibrated_model(const std::string &arch, uint64_t seed, const torch::Tensor &image)
{
	torch::manual_seed(seed);
	FasterRCNN model(model_preset(arch));
	model->calibrate_frozen_batch_norm({image});
	model->eval();
	return model;
}

class OneDnn : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (!frcnn::detail::onednn_built())
			GTEST_SKIP() << "this build has no oneDNN";
		torch::set_num_threads(2);
	}
};

} // namespace

// Every convolution of the backbone, FPN and RPN head, with the batch norms folded, ReLU or
// hardswish and the additions fused, Winograd, MobileNetV3's depthwise convolutions: the same
// outputs within float rounding.
TEST_F(OneDnn, BackboneAndRpnHeadMatchLibTorch)
{
	for (const std::string arch : {"fasterrcnn_resnet50_fpn", "tiny", "fasterrcnn_mobilenet_v3_large_fpn"}) {
		SCOPED_TRACE(arch);
		const auto image = test_image(300, 420);
		FasterRCNN model = calibrated_model(arch, 3, image);
		// A padded batch of two, as the transform makes it (multiple of 32).
		const auto batch = torch::stack({image, image.flip({2})}).sub(0.45).div(0.226);
		const auto padded = torch::constant_pad_nd(batch, {0, 28, 0, 20});

		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		const Outputs reference = run_backbone_and_head(model, padded);
		model->set_cpu_convolutions(CpuConvolutions::OneDnn);
		ASSERT_EQ(model->cpu_convolutions(), CpuConvolutions::OneDnn);
		const Outputs fast = run_backbone_and_head(model, padded);

		// Float has 24 bits (6e-8); 60 layers of reordered sums and Winograd's transforms
		// leave about 1e-5 of the largest value.
		const double features = relative_difference(reference.features, fast.features);
		const double logits = relative_difference(reference.logits, fast.logits);
		const double deltas = relative_difference(reference.deltas, fast.deltas);
		std::printf("%s: relative differences: features %.2g, logits %.2g, deltas %.2g\n", arch.c_str(),
			    features, logits, deltas);
		EXPECT_LT(features, 2e-4);
		EXPECT_LT(logits, 2e-4);
		EXPECT_LT(deltas, 2e-4);
		for (const auto &f : fast.features)
			EXPECT_TRUE(f.is_contiguous(at::MemoryFormat::ChannelsLast));

		// The kernels oneDNN chose: Winograd for the FPN's output convolutions and the RPN
		// head (256 channels, tiny's 64) on the maps of 1024 positions and more (P2 and P3
		// here) on a CPU with AVX-512, and never its slow reference code.
		const auto kernels = backbone_of(model)->onednn->implementations();
		int winograd = 0, total = 0;
		std::string names;
		for (const auto &[name, count] : kernels) {
			EXPECT_NE(name.rfind("ref", 0), 0u) << "reference kernel: " << name;
			winograd += name.find("wino") != std::string::npos ? count : 0;
			total += count;
			names += name + " x" + std::to_string(count) + " ";
		}
		std::printf("%s: %s\n", arch.c_str(), names.c_str());
		// MobileNetV3: 17 layers, 47 convolutions, the FPN's 4 and the RPN head's 3.
		EXPECT_GE(total, arch == "tiny" ? 30 : arch == "fasterrcnn_resnet50_fpn" ? 70 : 54) << "convolutions planned";
		// MobileNetV3's FPN is at stride 32 only: maps too small for Winograd.
		if (__builtin_cpu_supports("avx512f") && arch != "fasterrcnn_mobilenet_v3_large_fpn") {
			EXPECT_GE(winograd, 4) << names;
		}
	}
}

// fasterrcnn_resnet50_fpn_v2's box head (four 3x3 convolutions with batch norm and ReLU on the
// pooled 7x7 regions, then a linear layer): the same representation with the oneDNN
// convolutions, Winograd among them (over a batch of regions, though each map is 7x7), in
// chunks of 512 regions (the last one padded), and with no regions at all.
TEST_F(OneDnn, ConvolutionalBoxHeadMatchesLibTorch)
{
	torch::manual_seed(5);
	FasterRCNN model(model_preset("fasterrcnn_resnet50_fpn_v2"));
	model->eval();
	std::shared_ptr<frcnn::detail::ConvFCHeadImpl> head;
	for (const auto &child : model->named_modules())
		if (auto h = std::dynamic_pointer_cast<frcnn::detail::ConvFCHeadImpl>(child.value()))
			head = h;
	ASSERT_TRUE(head) << "the v2 model has a convolutional box head";
	{
		// Batch norm statistics other than 0 and 1, as a trained model has.
		torch::NoGradGuard no_grad;
		for (const auto &buffer : head->named_buffers()) {
			if (buffer.key().find("running_mean") != std::string::npos)
				buffer.value().uniform_(-0.2, 0.2);
			if (buffer.key().find("running_var") != std::string::npos)
				buffer.value().uniform_(0.5, 2.0);
		}
	}
	// Pooled regions, planar as RoIAlign gives them: two full chunks and one of 76, padded to 128.
	const auto pooled = torch::randn({1100, 256, 7, 7});
	c10::InferenceMode inference;
	model->set_cpu_convolutions(CpuConvolutions::LibTorch);
	ASSERT_FALSE(head->onednn);
	const auto reference = head->forward(pooled);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	ASSERT_TRUE(head->onednn && head->onednn->has_box_head());
	const auto fast = head->forward(pooled);
	ASSERT_EQ(reference.sizes(), fast.sizes());
	const double scale = reference.abs().max().item<double>();
	EXPECT_GT(scale, 0.0);
	EXPECT_LT((reference - fast).abs().max().item<double>() / scale, 2e-4);

	// Only the box head has run: its four convolutions at two sizes (512 and 128 regions) are
	// all the plan has planned.
	if (__builtin_cpu_supports("avx512f")) {
		EXPECT_EQ(planned_kernels(*head->onednn, "wino"), 4 * 2);
	}

	const auto none = head->forward(torch::zeros({0, 256, 7, 7}));
	EXPECT_EQ(none.sizes(), (std::vector<int64_t>{0, reference.size(1)}));
}

// TwoMLPHead's two linear layers with their ReLUs (fc6: 12544 by 1024, fc7: 1024 by 1024) on
// oneDNN's float matmul, one primitive for every region count: within float rounding of
// LibTorch's (the sums in another order, so not its bits), for no regions, one, an odd count and
// a thousand (fasterrcnn_resnet50_fpn's proposals).
TEST_F(OneDnn, LinearBoxHeadMatchesLibTorch)
{
	torch::manual_seed(6);
	FasterRCNN model(model_preset("fasterrcnn_mobilenet_v3_large_320_fpn"));
	model->eval();
	std::shared_ptr<frcnn::detail::TwoMLPHeadImpl> head;
	for (const auto &child : model->named_modules())
		if (auto h = std::dynamic_pointer_cast<frcnn::detail::TwoMLPHeadImpl>(child.value()))
			head = h;
	ASSERT_TRUE(head) << "the model has TwoMLPHead";
	c10::InferenceMode inference;
	for (int64_t regions : {0, 1, 37, 1000}) {
		SCOPED_TRACE(std::to_string(regions) + " regions");
		// Pooled regions as RoIAlign gives them: mostly small positive values.
		const auto pooled = torch::rand({regions, 256, 7, 7});
		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		ASSERT_FALSE(head->onednn);
		const auto reference = head->forward(pooled);
		model->set_cpu_convolutions(CpuConvolutions::OneDnn);
		ASSERT_TRUE(head->onednn && head->onednn->box_head_linears() == 2);
		const auto fast = head->forward(pooled);
		ASSERT_EQ(reference.sizes(), fast.sizes());
		if (regions == 0)
			continue;
		const double scale = reference.abs().max().item<double>();
		EXPECT_GT(scale, 0.0);
		EXPECT_LT((reference - fast).abs().max().item<double>() / scale, 1e-5);
		if (regions == 1000) {
			EXPECT_FALSE(torch::equal(reference, fast)) << "LibTorch's bits: the oneDNN product did not run";
		}
	}
}

// Consecutive convolutions that both use Winograd's blocked layout (the v2 model's box head and
// its two-convolution RPN head) hand their outputs on in it: the same bits as reordering each
// output to channels-last and back.
TEST_F(OneDnn, ChainedConvolutionsGiveTheSameBits)
{
	if (!__builtin_cpu_supports("avx512f"))
		GTEST_SKIP() << "Winograd (the blocked layouts chained) needs AVX-512";
	const auto image = test_image(300, 420);
	FasterRCNN model = calibrated_model("fasterrcnn_resnet50_fpn_v2", 4, image);
	std::shared_ptr<frcnn::detail::ConvFCHeadImpl> head;
	for (const auto &child : model->named_modules())
		if (auto h = std::dynamic_pointer_cast<frcnn::detail::ConvFCHeadImpl>(child.value()))
			head = h;
	ASSERT_TRUE(head);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	ASSERT_TRUE(head->onednn);
	auto &plan = *head->onednn;
	const auto batch = torch::constant_pad_nd(image.sub(0.45).div(0.226).unsqueeze(0), {0, 28, 0, 20});
	const auto pooled = torch::randn({600, 256, 7, 7}); // a full chunk and a padded one

	plan.set_chaining(false);
	const Outputs separate = run_backbone_and_head(model, batch);
	torch::Tensor separate_head;
	{
		c10::InferenceMode inference;
		separate_head = head->forward(pooled);
	}
	EXPECT_EQ(plan.chained_handoffs(), 0u);

	plan.set_chaining(true);
	const Outputs chained = run_backbone_and_head(model, batch);
	const size_t rpn_handoffs = plan.chained_handoffs();
	// The RPN head's two convolutions on the maps large enough for Winograd (P2, P3).
	EXPECT_GE(rpn_handoffs, 2u);
	torch::Tensor chained_head;
	{
		c10::InferenceMode inference;
		chained_head = head->forward(pooled);
	}
	// Three hand-offs between the box head's four convolutions, for each of the two chunks.
	EXPECT_EQ(plan.chained_handoffs() - rpn_handoffs, 6u);

	for (size_t i = 0; i < separate.logits.size(); i++) {
		EXPECT_TRUE(torch::equal(separate.logits[i], chained.logits[i])) << "level " << i;
		EXPECT_TRUE(torch::equal(separate.deltas[i], chained.deltas[i])) << "level " << i;
	}
	EXPECT_TRUE(torch::equal(separate_head, chained_head));
}

// The trained shapes model (tests/data/shapes-tiny.pth) on generated frames: the detections
// that LibTorch's operators give, with the oneDNN convolutions.
TEST_F(OneDnn, TrainedModelKeepsItsDetections)
{
#if !FRCNN_HAVE_SHAPES
	GTEST_SKIP() << "this build has no shapes generator (OpenCV)";
#else
	auto checkpoint = read_checkpoint(test::env("FRCNN_SOURCE_ROOT") + "/tests/data/shapes-tiny.pth");
	ModelConfig config = model_preset("tiny");
	config.num_classes = 4;
	config.box_score_thresh = 0.3;
	FasterRCNN model(config);
	model->load_state_dict(checkpoint);
	model->eval();

	ShapesOptions options;
	options.seed = 1234;
	options.scene_frames = 1;
	ShapesGenerator generator(options);
	int compared = 0;
	double worst = 0;
	for (uint64_t index = 0; index < 12; index++) {
		Scene scene = generator.scene(index);
		auto image = torch::from_blob(scene.rgb.data(), {scene.height, scene.width, 3}, torch::kUInt8)
				     .permute({2, 0, 1})
				     .to(torch::kFloat) /
			     255;
		c10::InferenceMode inference;
		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		const auto expected = model->forward({image})[0];
		model->set_cpu_convolutions(CpuConvolutions::OneDnn);
		const auto got = model->forward({image})[0];
		SCOPED_TRACE("frame " + std::to_string(index));
		ASSERT_EQ(got.labels.size(0), expected.labels.size(0)) << "number of detections";
		EXPECT_TRUE(torch::equal(got.labels, expected.labels)) << "labels, in order";
		if (got.boxes.numel() > 0) {
			const double difference = (got.boxes - expected.boxes).abs().max().item<double>();
			EXPECT_LE(difference, 0.5) << "box coordinates, pixels";
			EXPECT_LE((got.scores - expected.scores).abs().max().item<double>(), 1e-3) << "scores";
			worst = std::max(worst, difference);
		}
		compared += (int)got.labels.size(0);
	}
	std::printf("%d detections compared, boxes within %.5f px\n", compared, worst);
	EXPECT_GE(compared, 20) << "too few detections to compare";
	RecordProperty("detections_compared", compared);
	RecordProperty("largest_box_difference_px", std::to_string(worst));
#endif
}

// The plan copies the weights as they are: when they change (an optimiser step, a checkpoint
// loaded into the model), the next forward uses the new ones.
TEST_F(OneDnn, FollowsTheWeightsWhenTheyChange)
{
	const auto image = test_image(200, 260);
	FasterRCNN model = calibrated_model("tiny", 5, image);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	const auto batch = torch::constant_pad_nd(image.unsqueeze(0), {0, 28, 0, 24});
	const Outputs before = run_backbone_and_head(model, batch);

	{
		torch::NoGradGuard no_grad;
		for (auto &p : model->named_parameters())
			if (p.key().find("fpn.layer_blocks.0.0.weight") != std::string::npos)
				p.value().mul_(-1.5);
	}
	model->run({image}); // the model's forward builds the plan anew
	const Outputs after = run_backbone_and_head(model, batch);
	model->set_cpu_convolutions(CpuConvolutions::LibTorch);
	const Outputs reference = run_backbone_and_head(model, batch);
	EXPECT_GT(relative_difference(before.features, after.features), 0.1) << "the change had no effect";
	EXPECT_LT(relative_difference(reference.features, after.features), 2e-4) << "not the new weights";

	// Without the model's forward in between, a stale plan is not used either.
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	{
		torch::NoGradGuard no_grad;
		for (auto &p : model->named_parameters())
			if (p.key().find("rpn.head.conv.0.0.bias") != std::string::npos)
				p.value().add_(0.25);
	}
	const Outputs stale = run_backbone_and_head(model, batch);
	model->set_cpu_convolutions(CpuConvolutions::LibTorch);
	const Outputs fresh = run_backbone_and_head(model, batch);
	EXPECT_LT(relative_difference(fresh.logits, stale.logits), 2e-4);
}

// Photos of many sizes, or a stream whose caps change: each size makes primitives of its own,
// of which a convolution keeps the last 8 sizes' (the weights are shared between them).
// MobileNetV3 on small and odd sizes (maps of 1x1 at stride 32 under its 5x5 depthwise
// convolutions, sizes that are no multiple of the strides) and batches, of noise: LibTorch's
// numbers within float rounding.
TEST_F(OneDnn, MobileNetOnSmallAndOddSizes)
{
	const auto image = test_image(240, 320);
	FasterRCNN model = calibrated_model("fasterrcnn_mobilenet_v3_large_320_fpn", 13, image);
	for (const auto &[batch, height, width] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
		     {1, 32, 32}, {1, 33, 47}, {2, 96, 1000}, {3, 65, 64}}) {
		SCOPED_TRACE(std::to_string(batch) + "x" + std::to_string(height) + "x" + std::to_string(width));
		torch::manual_seed(height * width);
		const auto input = torch::rand({batch, 3, height, width}).sub(0.45).div(0.226);
		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		const Outputs reference = run_backbone_and_head(model, input);
		model->set_cpu_convolutions(CpuConvolutions::OneDnn);
		const Outputs fast = run_backbone_and_head(model, input);
		const double features = relative_difference(reference.features, fast.features);
		const double logits = relative_difference(reference.logits, fast.logits);
		const double deltas = relative_difference(reference.deltas, fast.deltas);
		std::printf("MobileNetV3 %ldx%ldx%ld: relative differences: features %.2g, logits %.2g, deltas %.2g\n",
			    (long)batch, (long)height, (long)width, features, logits, deltas);
		// Noise, not a picture: its features sit nearer the rounding (2.3e-4 at most here); a
		// wrong layout, padding or fusion gives 1e-1 and more.
		EXPECT_LT(features, 5e-4);
		EXPECT_LT(logits, 5e-4);
		EXPECT_LT(deltas, 5e-4);
	}
}

TEST_F(OneDnn, ManyFrameSizesKeepFewPlans)
{
	const auto image = test_image(200, 260);
	FasterRCNN model = calibrated_model("tiny", 11, image);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	auto plans = [&] { return planned_kernels(*backbone_of(model)->onednn); };
	torch::Tensor batch;
	int first = 0;
	for (int i = 0; i < 12; i++) {
		batch = torch::rand({1, 3, 96 + 32 * i, 128});
		run_backbone_and_head(model, batch);
		if (i == 0)
			first = plans();
	}
	ASSERT_GT(first, 0);
	// Without the bound: 12 plans per convolution (60 for those of the RPN head, which run on 5
	// maps of their own sizes), more than 8 times those of the first size.
	EXPECT_LE(plans(), 8 * first) << "plans of 12 sizes, at most 8 kept per convolution";
	EXPECT_GT(plans(), first);
	const Outputs fast = run_backbone_and_head(model, batch);
	model->set_cpu_convolutions(CpuConvolutions::LibTorch);
	const Outputs reference = run_backbone_and_head(model, batch);
	EXPECT_LT(relative_difference(reference.features, fast.features), 2e-4);
}

// The convolutions' outputs come from blocks kept from batch to batch: after the first batch of a
// size, batches of that size allocate none; outputs still held are never handed out again; the
// blocks of a size no longer run are freed after two batches.
TEST_F(OneDnn, OutputsReuseTheirMemoryBatchAfterBatch)
{
	const auto image = test_image(200, 260);
	FasterRCNN model = calibrated_model("tiny", 11, image);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	const auto batch = torch::stack({image}).sub(0.45).div(0.226);
	const auto other = batch.flip({3});

	const Outputs expected = run_backbone_and_head(model, batch);
	ASSERT_TRUE(backbone_of(model)->onednn);
	const auto &plan = *backbone_of(model)->onednn;
	const size_t made = plan.output_memory().blocks_made;
	ASSERT_GT(made, 0u) << "the outputs come from the pool";
	const Outputs held = run_backbone_and_head(model, other);
	std::vector<torch::Tensor> held_copies;
	for (const auto &f : held.features)
		held_copies.push_back(f.clone());
	EXPECT_GT(plan.output_memory().blocks_made, made) << "held outputs are not handed out again";
	size_t made_after_first = 0;
	for (int i = 0; i < 4; i++) {
		const Outputs again = run_backbone_and_head(model, batch);
		EXPECT_EQ(relative_difference(expected.features, again.features), 0.0);
		EXPECT_EQ(relative_difference(expected.logits, again.logits), 0.0);
		if (i == 0)
			made_after_first = plan.output_memory().blocks_made;
	}
	EXPECT_EQ(plan.output_memory().blocks_made, made_after_first)
		<< "with the same outputs held, batches of one size allocate nothing";
	EXPECT_EQ(relative_difference(held_copies, held.features), 0.0) << "outputs still held are left alone";
	const size_t kept_for_the_size = plan.output_memory().bytes_kept;
	EXPECT_GT(kept_for_the_size, 0u);

	const auto smaller = torch::rand({1, 3, 128, 160});
	for (int i = 0; i < 4; i++)
		run_backbone_and_head(model, smaller);
	EXPECT_LT(plan.output_memory().bytes_kept, kept_for_the_size) << "the larger size's blocks are freed";
}

// A pipeline runs the model in its streaming thread, a new one after each stop: the primitives
// made in one thread must run in others (oneDNN's own per-thread scratch memory would not).
TEST_F(OneDnn, RunsInThreadsOtherThanTheOneThatMadeIt)
{
	const auto image = test_image(240, 320);
	FasterRCNN model = calibrated_model("tiny", 7, image);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	std::vector<Detections> first;
	{
		c10::InferenceMode inference;
		first = model->forward({image});
	}
	for (int round = 0; round < 3; round++) {
		std::vector<Detections> again;
		std::thread worker([&] {
			c10::InferenceMode inference;
			again = model->forward({image});
		});
		worker.join();
		ASSERT_EQ(again.size(), 1u);
		EXPECT_TRUE(torch::equal(again[0].boxes, first[0].boxes)) << "round " << round;
		EXPECT_TRUE(torch::equal(again[0].labels, first[0].labels)) << "round " << round;
	}
}

// Training and autograd take LibTorch's path: gradients reach the weights.
TEST_F(OneDnn, TrainingModeUsesLibTorch)
{
	const auto image = test_image(160, 200);
	FasterRCNN model = calibrated_model("tiny", 9, image);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	model->train();
	const auto batch = torch::constant_pad_nd(image.unsqueeze(0), {0, 24, 0, 0});
	auto features = backbone_of(model)->forward(batch);
	ASSERT_TRUE(features[0].requires_grad());
	features[0].sum().backward();
	bool some_gradient = false;
	for (const auto &p : model->parameters())
		some_gradient = some_gradient || (p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
	EXPECT_TRUE(some_gradient);
}

// Which models it covers and where auto picks it: every preset (MobileNetV3 on any CPU),
// nothing else; a model computes as torchvision until told otherwise.
TEST_F(OneDnn, ModelsItCoversAndWhereAutoPicksIt)
{
	for (const std::string arch : {"fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn"}) {
		SCOPED_TRACE(arch);
		FasterRCNN model(model_preset(arch));
		EXPECT_EQ(model->cpu_convolutions(), CpuConvolutions::LibTorch);
		model->set_cpu_convolutions(CpuConvolutions::Auto);
		EXPECT_EQ(model->cpu_convolutions(), CpuConvolutions::OneDnn);
		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		EXPECT_EQ(model->cpu_convolutions(), CpuConvolutions::LibTorch);
	}
	ModelConfig other = model_preset("tiny");
	other.backbone = "vgg16";
	EXPECT_EQ(frcnn::detail::onednn_unsupported_reason(other),
		  "the oneDNN convolutions cover ResNet and MobileNetV3-Large backbones, not vgg16");
	EXPECT_FALSE(frcnn::detail::onednn_pays(other));
	for (const std::string arch : {"fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"}) {
		FasterRCNN resnet50(model_preset(arch));
		EXPECT_EQ(resnet50->cpu_convolutions(), CpuConvolutions::LibTorch) << "a new model computes as torchvision";
		resnet50->set_cpu_convolutions(CpuConvolutions::Auto);
		EXPECT_EQ(resnet50->cpu_convolutions(), CpuConvolutions::OneDnn) << arch;
	}
	// tiny (a 64-channel FPN) gains where its FPN and RPN head take Winograd (AVX-512) and
	// only there: auto picks oneDNN on such a CPU, LibTorch elsewhere.
	FasterRCNN tiny(model_preset("tiny"));
	tiny->set_cpu_convolutions(CpuConvolutions::Auto);
	EXPECT_EQ(tiny->cpu_convolutions(),
		  frcnn::detail::onednn_has_winograd() ? CpuConvolutions::OneDnn : CpuConvolutions::LibTorch);
	EXPECT_EQ(frcnn::detail::onednn_has_winograd(), __builtin_cpu_supports("avx512f") != 0)
		<< "oneDNN and the compiler disagree about AVX-512";
	tiny->set_cpu_convolutions(CpuConvolutions::LibTorch);
	EXPECT_EQ(tiny->cpu_convolutions(), CpuConvolutions::LibTorch);
	tiny->set_cpu_convolutions(CpuConvolutions::OneDnn);
	EXPECT_EQ(tiny->cpu_convolutions(), CpuConvolutions::OneDnn);
}

// A thread count given to the Detector is applied once, not at every batch. Applying it again
// (LibTorch's at::init_num_threads sets the count anew, and LibTorch then rebuilds its thread
// pool) started fresh threads at every batch, which spun on the cores the convolutions needed:
// the tiny model ran 1.5 times slower with threads = 2 than with the same 2 threads taken from
// OMP_NUM_THREADS.
TEST_F(OneDnn, BatchesStartNoThreads)
{
	DetectorOptions options;
	options.model = model_preset("tiny");
	options.random_seed = 1;
	options.threads = 2;
	options.cpu_convolutions = CpuConvolutions::OneDnn;
	Detector detector(options);
	const int width = 160, height = 120;
	std::vector<uint8_t> rgb((size_t)width * height * 3);
	for (size_t i = 0; i < rgb.size(); i++)
		rgb[i] = (uint8_t)(i * 7 % 251);
	FrameView view;
	view.width = width;
	view.height = height;
	view.planes[0] = rgb.data();
	view.strides[0] = width * 3;
	// The first batches may start the threads they need.
	detector.detect({view});
	detector.detect({view});
	const auto before = test::process_threads();
	for (int i = 0; i < 4; i++)
		detector.detect({view});
	std::vector<std::string> started;
	for (const auto &id : test::process_threads())
		if (!before.count(id))
			started.push_back(id);
	EXPECT_TRUE(started.empty()) << started.size() << " threads started while batches ran";
}

// The Detector facade: auto picks oneDNN on the CPU for fasterrcnn_resnet50_fpn, and for tiny
// where Winograd runs; names parse both ways.
TEST_F(OneDnn, DetectorChoosesItByDefault)
{
	DetectorOptions options;
	options.model = model_preset("fasterrcnn_resnet50_fpn");
	options.random_seed = 1;
	EXPECT_EQ(Detector(options).cpu_convolutions(), CpuConvolutions::OneDnn);
	options.cpu_convolutions = CpuConvolutions::LibTorch;
	EXPECT_EQ(Detector(options).cpu_convolutions(), CpuConvolutions::LibTorch);
	options.model = model_preset("tiny");
	options.cpu_convolutions = CpuConvolutions::Auto;
	EXPECT_EQ(Detector(options).cpu_convolutions(),
		  frcnn::detail::onednn_has_winograd() ? CpuConvolutions::OneDnn : CpuConvolutions::LibTorch);
	for (auto value : {CpuConvolutions::Auto, CpuConvolutions::LibTorch, CpuConvolutions::OneDnn})
		EXPECT_EQ(parse_cpu_convolutions(cpu_convolutions_name(value)), value);
	EXPECT_THROW(parse_cpu_convolutions("mkl"), Error);
}

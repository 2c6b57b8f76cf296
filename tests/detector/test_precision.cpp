// SPDX-License-Identifier: BSD-3-Clause
// Precision::Bf16 on the CPU: the model's convolutions and linear layers in bfloat16 (LibTorch's
// and the oneDNN convolutions), its box geometry in float; and the errors of a precision a device
// cannot run.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
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
#include "frcnn/ops.h"
#include "model_parts.h"
#include "parts.h"

using namespace frcnn;
using frcnn::test::backbone_of;
using frcnn::test::error_of;
using frcnn::test::test_image;

namespace {

// The reduced-precision target of the GPU path, here for bf16: of the fp32 detections scoring
// 0.5 or more, the share that a detection of the same label matches at IoU >= 0.9.
struct Matched {
	int64_t matched = 0, compared = 0;
};

Matched match(const Detections &fp32, const Detections &reduced)
{
	Matched m;
	const auto confident = fp32.scores >= 0.5;
	m.compared = confident.sum().item<int64_t>();
	if (m.compared == 0 || reduced.boxes.size(0) == 0)
		return m;
	const auto same_label = fp32.labels.unsqueeze(1) == reduced.labels.unsqueeze(0);
	const auto overlapping = ops::box_iou(fp32.boxes, reduced.boxes) >= 0.9;
	m.matched = ((same_label & overlapping).any(1) & confident).sum().item<int64_t>();
	return m;
}

struct Kernels {
	int all = 0, bf16 = 0, winograd = 0;
	std::string names;
};

// oneDNN's kernels of a plan, by kind.
Kernels count_kernels(const frcnn::detail::OneDnnPlan &plan)
{
	Kernels k;
	for (const auto &[name, count] : plan.implementations()) {
		k.bf16 += name.find("bf16") != std::string::npos ? count : 0;
		k.winograd += name.find("wino") != std::string::npos ? count : 0;
		k.all += count;
		k.names += name + " x" + std::to_string(count) + " ";
	}
	return k;
}

} // namespace

TEST(Precision, NamesRoundTrip)
{
	for (auto value : {Precision::Fp32, Precision::Fp16, Precision::Bf16})
		EXPECT_EQ(parse_precision(precision_name(value)), value);
	EXPECT_EQ(parse_precision("bf16"), Precision::Bf16);
	const auto message = error_of([] { parse_precision("fp8"); });
	EXPECT_NE(message.find("unknown precision 'fp8'"), std::string::npos) << message;
	EXPECT_NE(message.find("bf16 or int8 (CPU)"), std::string::npos) << message;
}

// Each reduced precision where it cannot run fails before any weights are read, saying what to
// use instead.
TEST(Precision, WrongDeviceFailsWithWhatToUse)
{
	auto fp16_on_cpu = error_of([] { frcnn::detail::check_precision(torch::Device("cpu"), Precision::Fp16); });
	EXPECT_NE(fp16_on_cpu.find("fp16 needs a CUDA device; use fp32 or bf16 on the CPU"), std::string::npos)
		<< fp16_on_cpu;
	auto bf16_on_cuda = error_of([] { frcnn::detail::check_precision(torch::Device("cuda:0"), Precision::Bf16); });
	EXPECT_NE(bf16_on_cuda.find("bf16 is for the CPU; use fp16 or fp32 on CUDA"), std::string::npos)
		<< bf16_on_cuda;

	DetectorOptions options;
	options.model = model_preset("tiny");
	options.weights = "/nonexistent/weights.pth"; // never read: the precision fails first
	options.precision = Precision::Fp16;
	auto message = error_of([&] { Detector detector(options); });
	EXPECT_NE(message.find("fp16 needs a CUDA device"), std::string::npos) << message;

	options.precision = Precision::Bf16;
	message = error_of([&] { Detector detector(options); });
	if (cpu_has_bf16()) {
		// Gets past the precision: the missing weights are what fails.
		EXPECT_EQ(message.find("bf16"), std::string::npos) << message;
		EXPECT_NE(message.find("/nonexistent/weights.pth"), std::string::npos) << message;
	} else {
		EXPECT_NE(message.find("needs a CPU with bfloat16 instructions"), std::string::npos) << message;
		EXPECT_NE(message.find("use fp32"), std::string::npos) << message;
	}
}

// oneDNN told to stay below bfloat16's instructions (ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA)
// cannot make bf16 kernels whatever the CPU has: bf16 is refused at construction, naming the
// variable, rather than failing at every image.
TEST(Precision, Bf16IsRefusedWhereOneDnnIsHeldBelowIt)
{
	struct Restore {
		std::string onednn, dnnl;
		bool had_onednn, had_dnnl;
		Restore()
		{
			const char *a = std::getenv("ONEDNN_MAX_CPU_ISA"), *b = std::getenv("DNNL_MAX_CPU_ISA");
			had_onednn = a != nullptr, had_dnnl = b != nullptr;
			onednn = a ? a : "", dnnl = b ? b : "";
		}
		~Restore()
		{
			had_onednn ? setenv("ONEDNN_MAX_CPU_ISA", onednn.c_str(), 1) : unsetenv("ONEDNN_MAX_CPU_ISA");
			had_dnnl ? setenv("DNNL_MAX_CPU_ISA", dnnl.c_str(), 1) : unsetenv("DNNL_MAX_CPU_ISA");
		}
	} restore;
	unsetenv("DNNL_MAX_CPU_ISA");
	setenv("ONEDNN_MAX_CPU_ISA", "avx2", 1);
	EXPECT_FALSE(cpu_has_bf16());
	const std::string lacking = cpu_bf16_unavailable_reason();
	DetectorOptions options;
	options.model = model_preset("tiny");
	options.weights = "/nonexistent/weights.pth"; // never read: the precision fails first
	options.precision = Precision::Bf16;
	const auto message = error_of([&] { Detector detector(options); });
	EXPECT_NE(message.find("needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX), " + lacking +
			       "; use fp32"),
		  std::string::npos)
		<< message;
	unsetenv("ONEDNN_MAX_CPU_ISA");
	setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI", 1);
	EXPECT_FALSE(cpu_has_bf16());
	if (cpu_bf16_unavailable_reason() == "which this one lacks")
		return; // the CPU lacks them anyway: the variables cannot change that
	EXPECT_EQ(lacking, "which ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN from using");
	EXPECT_EQ(cpu_bf16_unavailable_reason(), "which DNNL_MAX_CPU_ISA=AVX512_CORE_VNNI keeps oneDNN from using");
	// A set that has bfloat16, or ONEDNN_'s variable beside DNNL_'s (oneDNN reads it first).
	setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_BF16", 1);
	EXPECT_TRUE(cpu_has_bf16());
	setenv("ONEDNN_MAX_CPU_ISA", "ALL", 1);
	setenv("DNNL_MAX_CPU_ISA", "AVX2", 1);
	EXPECT_TRUE(cpu_has_bf16());
}

class Bf16 : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (!cpu_has_bf16())
			GTEST_SKIP() << "this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX): bf16 is refused "
					"here (Precision.WrongDeviceFailsWithWhatToUse checks how)";
		torch::set_num_threads(2);
	}
};

// The trained shapes model (tests/data/shapes-tiny.pth), in bf16 with LibTorch's convolutions
// and with the oneDNN ones: of its fp32 detections scoring >= 0.5, at least 95% are found again
// by a bf16 detection of the same label at IoU >= 0.9 (the fp16 target of the GPU path).
TEST_F(Bf16, TrainedModelKeepsItsDetections)
{
#if !FRCNN_HAVE_SHAPES
	GTEST_SKIP() << "this build has no shapes generator (OpenCV)";
#else
	const auto checkpoint = read_checkpoint(test::env("FRCNN_SOURCE_ROOT") + "/tests/data/shapes-tiny.pth");
	ModelConfig config = model_preset("tiny");
	config.num_classes = 4;
	config.box_score_thresh = 0.3;
	auto load = [&](Precision precision, CpuConvolutions convolutions) {
		FasterRCNN model(config);
		model->load_state_dict(checkpoint);
		model->eval();
		model->to_device(torch::kCPU, precision, false);
		model->set_cpu_convolutions(convolutions);
		return model;
	};

	ShapesOptions options;
	options.seed = 4321;
	options.scene_frames = 1;
	ShapesGenerator generator(options);
	std::vector<torch::Tensor> images;
	for (uint64_t index = 0; index < 16; index++) {
		Scene scene = generator.scene(index);
		images.push_back(torch::from_blob(scene.rgb.data(), {scene.height, scene.width, 3}, torch::kUInt8)
					 .permute({2, 0, 1})
					 .to(torch::kFloat) /
				 255);
	}

	for (auto convolutions : {CpuConvolutions::LibTorch, CpuConvolutions::OneDnn}) {
		if (convolutions == CpuConvolutions::OneDnn && !frcnn::detail::onednn_built())
			continue;
		SCOPED_TRACE(cpu_convolutions_name(convolutions));
		FasterRCNN fp32 = load(Precision::Fp32, convolutions);
		FasterRCNN bf16 = load(Precision::Bf16, convolutions);
		Matched total;
		double worst_score = 0;
		for (const auto &image : images) {
			c10::InferenceMode inference;
			const auto expected = fp32->forward({image})[0];
			const auto got = bf16->forward({image})[0];
			// Boxes and scores come back in float: the geometry is not done in bfloat16.
			EXPECT_EQ(got.boxes.scalar_type(), torch::kFloat);
			EXPECT_EQ(got.scores.scalar_type(), torch::kFloat);
			const auto m = match(expected, got);
			total.matched += m.matched;
			total.compared += m.compared;
			if (expected.scores.numel() > 0 && got.scores.numel() > 0)
				worst_score = std::max(worst_score,
						       std::abs(expected.scores[0].item<double>() - got.scores[0].item<double>()));
		}
		std::printf("%s convolutions: bf16 matches %ld of %ld fp32 detections with score >= 0.5 at IoU >= 0.9; "
			    "best scores within %.4f\n",
			    cpu_convolutions_name(convolutions), (long)total.matched, (long)total.compared, worst_score);
		EXPECT_GE(total.compared, 30) << "too few detections to compare";
		EXPECT_GE(total.matched * 100, total.compared * 95);
		if (convolutions == CpuConvolutions::OneDnn) {
			// The plan runs oneDNN's bfloat16 kernels, not float ones on rounded data (tiny has
			// no chain of Winograd convolutions, which would run in float).
			ASSERT_EQ(bf16->cpu_convolutions(), CpuConvolutions::OneDnn);
			const auto plan = backbone_of(bf16)->onednn;
			ASSERT_TRUE(plan);
			const auto kernels = count_kernels(*plan);
			std::printf("oneDNN kernels of the bf16 model: %s\n", kernels.names.c_str());
			EXPECT_GT(kernels.all, 30) << kernels.names;
			EXPECT_EQ(kernels.bf16, kernels.all) << kernels.names;
		}
	}
#endif
}

// Every architecture runs in bf16 (the MobileNetV3 ops, v2's BatchNorm2d and convolutional box
// head, the oneDNN plan of the ResNet-FPN models), its features those of fp32 up to rounding,
// its detections in float, inside the image. With seeded weights a network amplifies rounding
// chaotically (rounding only the input to bfloat16 moves fasterrcnn_resnet50_fpn's features by
// a fifth of their mean magnitude), so the features are held to the direction of fp32's (cosine
// similarity), not to a difference; the trained model's test above holds the detections to the
// reduced-precision target.
TEST_F(Bf16, EveryArchitectureRuns)
{
	const auto image = test_image(240, 320);
	for (const std::string arch : {"fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
				       "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "tiny"}) {
		SCOPED_TRACE(arch);
		FasterRCNN model = frcnn::test::seeded_model(arch, image);
		c10::InferenceMode inference;
		const auto batch = frcnn::detail::transform_images(model->config(), {image}, nullptr).batch;
		const auto expected = backbone_of(model)->forward(batch);
		model->to_device(torch::kCPU, Precision::Bf16, false);
		model->set_cpu_convolutions(CpuConvolutions::Auto);
		const auto got = backbone_of(model)->forward(batch.to(torch::kBFloat16));
		ASSERT_EQ(got.size(), expected.size());
		double least = 1;
		for (size_t i = 0; i < got.size(); i++) {
			EXPECT_EQ(got[i].scalar_type(), torch::kBFloat16);
			least = std::min(least, frcnn::test::cosine(got[i], expected[i]));
		}
		std::printf("%s: cosine similarity of bf16 and fp32 features >= %.4f (%s convolutions)\n", arch.c_str(),
			    least, cpu_convolutions_name(model->cpu_convolutions()));
		// 0.85 and 0.96 for the seeded ResNet-50 and MobileNetV3 models here, 0.998 and more for
		// the others; wrong weights or a wrong layout give about 0.
		EXPECT_GT(least, 0.75);

		frcnn::test::expect_detections_in_image(model->forward({image})[0], 320, 240);
	}
}

// Through the Detector facade, frame bytes in: the batch is converted in float and rounded once.
TEST_F(Bf16, DetectorTakesFrames)
{
#if !FRCNN_HAVE_SHAPES
	GTEST_SKIP() << "this build has no shapes generator (OpenCV)";
#else
	DetectorOptions options;
	options.model = model_preset("tiny");
	options.model.num_classes = 4;
	options.model.box_score_thresh = 0.3;
	options.weights = test::env("FRCNN_SOURCE_ROOT") + "/tests/data/shapes-tiny.pth";
	Detector fp32(options);
	options.precision = Precision::Bf16;
	Detector bf16(options);

	ShapesOptions shapes;
	shapes.seed = 99;
	shapes.scene_frames = 1;
	ShapesGenerator generator(shapes);
	int compared = 0;
	for (uint64_t index = 0; index < 4; index++) {
		Scene scene = generator.scene(index);
		const FrameView frame = frcnn::test::frame_of(scene);
		const auto expected = fp32.detect({frame, frame});
		const auto got = bf16.detect({frame, frame});
		ASSERT_EQ(got.size(), 2u);
		ASSERT_EQ(expected.size(), 2u);
		// The two frames of a batch give the same detections.
		ASSERT_EQ(got[0].size(), got[1].size());
		for (size_t i = 0; i < got[0].size(); i++) {
			EXPECT_EQ(got[0][i].label, got[1][i].label);
			EXPECT_EQ(got[0][i].x1, got[1][i].x1);
		}
		// Each fp32 detection scoring >= 0.5 has a bf16 one of its label at IoU >= 0.9.
		for (const auto &e : expected[0]) {
			if (e.score < 0.5)
				continue;
			compared++;
			const auto found = std::any_of(got[0].begin(), got[0].end(), [&](const Detection &g) {
				const auto iou = ops::box_iou(torch::tensor({{e.x1, e.y1, e.x2, e.y2}}),
							      torch::tensor({{g.x1, g.y1, g.x2, g.y2}}));
				return g.label == e.label && iou.item<double>() >= 0.9;
			});
			EXPECT_TRUE(found) << "frame " << index << ": label " << e.label << " at " << e.x1 << "," << e.y1;
		}
	}
	EXPECT_GE(compared, 5) << "too few detections to compare";
#endif
}

// fasterrcnn_resnet50_fpn_v2's box head, four 3x3 convolutions over the pooled regions, is a chain
// of Winograd convolutions: in a bf16 model it runs Winograd in float, bfloat16 converted at its
// ends. Its output against fp32's on LibTorch, over 600 regions (a chunk of 512 and a padded one).
TEST_F(Bf16, ChainedWinogradRunsInFloat)
{
	if (!frcnn::detail::onednn_built())
		GTEST_SKIP() << "this build has no oneDNN";
	torch::manual_seed(11);
	FasterRCNN model(model_preset("fasterrcnn_resnet50_fpn_v2"));
	model->eval();
	const auto heads = frcnn::test::roi_heads_of(model);
	ASSERT_TRUE(heads);
	c10::InferenceMode inference;
	const auto pooled = torch::rand({600, 256, 7, 7});
	model->set_cpu_convolutions(CpuConvolutions::LibTorch);
	const auto expected = heads->box_head.forward(pooled);
	model->to_device(torch::kCPU, Precision::Bf16, false);
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	const auto got = heads->box_head.forward(pooled.to(torch::kBFloat16));
	ASSERT_EQ(got.sizes(), expected.sizes());
	EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
	const auto a = got.to(torch::kFloat).flatten(), b = expected.flatten();
	const double cosine = (a.dot(b) / (a.norm() * b.norm())).item<double>();
	const double scale = b.abs().max().item<double>();
	const double worst = (a - b).abs().max().item<double>() / scale;
	const auto kernels = count_kernels(*backbone_of(model)->onednn);
	std::printf("v2 box head in bf16: cosine similarity %.5f, within %.4f of the largest fp32 value; kernels %s\n",
		    cosine, worst, kernels.names.c_str());
	EXPECT_GT(cosine, 0.999);
	EXPECT_LT(worst, 0.05);
	// The box head's four and the RPN head's two (a chain as well) in float Winograd, F(4x4, 3x3)
	// or F(2x2, 3x3) by map size; everything else in bfloat16.
	EXPECT_GE(kernels.winograd, 4) << kernels.names;
	EXPECT_EQ(kernels.bf16 + kernels.winograd, kernels.all) << kernels.names;
}

// The oneDNN plan is made from the weights as they are: a model that chose it in fp32 and is then
// moved to bf16 runs the bfloat16 plan, not LibTorch's convolutions beside a stale float one.
TEST_F(Bf16, PlanFollowsTheModelToBf16)
{
	if (!frcnn::detail::onednn_built())
		GTEST_SKIP() << "this build has no oneDNN";
	const auto image = test_image(240, 320);
	torch::manual_seed(5);
	// The v2 model: its batch norms are not folded on the way (only frozen ones are), so no
	// weight the plan read is written in place.
	FasterRCNN model(model_preset("fasterrcnn_resnet50_fpn_v2"));
	model->eval();
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	c10::InferenceMode inference;
	model->forward({image});
	EXPECT_EQ(count_kernels(*backbone_of(model)->onednn).bf16, 0);
	model->to_device(torch::kCPU, Precision::Bf16, false);
	model->forward({image});
	EXPECT_EQ(model->cpu_convolutions(), CpuConvolutions::OneDnn);
	const auto plan = backbone_of(model)->onednn;
	ASSERT_TRUE(plan);
	const auto kernels = count_kernels(*plan);
	EXPECT_GT(kernels.all, 30) << kernels.names;
	// bfloat16 kernels, and float Winograd for its RPN head's chain of two.
	EXPECT_EQ(kernels.bf16 + kernels.winograd, kernels.all) << kernels.names;
	EXPECT_GT(kernels.bf16, kernels.all / 2) << kernels.names;
}

// to_device in a reduced precision a second time (an application that sets it again) folds the
// frozen batch norms once: the features stay those of the first time, for a ResNet trunk and a
// MobileNetV3 one, on LibTorch's convolutions (which read the folded weights themselves).
TEST_F(Bf16, ToDeviceAgainFoldsTheBatchNormsOnce)
{
	const auto image = test_image(240, 320);
	for (const std::string arch : {"tiny", "fasterrcnn_mobilenet_v3_large_320_fpn"}) {
		SCOPED_TRACE(arch);
		FasterRCNN model = frcnn::test::seeded_model(arch, image);
		c10::InferenceMode inference;
		const auto batch = frcnn::detail::transform_images(model->config(), {image}, nullptr).batch;
		model->to_device(torch::kCPU, Precision::Bf16, false);
		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		const auto once = backbone_of(model)->forward(batch.to(torch::kBFloat16));
		model->to_device(torch::kCPU, Precision::Bf16, false);
		model->set_cpu_convolutions(CpuConvolutions::LibTorch);
		const auto twice = backbone_of(model)->forward(batch.to(torch::kBFloat16));
		ASSERT_EQ(once.size(), twice.size());
		for (size_t i = 0; i < once.size(); i++)
			EXPECT_TRUE(once[i].equal(twice[i])) << "level " << i;
	}
}

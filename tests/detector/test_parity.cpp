// SPDX-License-Identifier: BSD-3-Clause
// The C++ fasterrcnn_resnet50_fpn against torchvision's, with the same seeded random weights, on
// real photos at two input sizes (tests/reference/resnet50_reference.py): same proposals, same
// labels in the same order, boxes within 0.01 px, scores within 1e-4.
#include <algorithm>
#include <cstdio>
#include <memory>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "agreement.h"
#include "common.h"
#include "reference_json.h"
#include "frcnn/checkpoint.h"
#include "frcnn/model.h"
#include "onednn_convolutions.h"

using nlohmann::json;
using namespace frcnn;

namespace {

class ResNet50Parity : public ::testing::TestWithParam<int> {
protected:
	static void SetUpTestSuite()
	{
		torch::set_num_threads(2);
		ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
		config.box_score_thresh = 0.0;
		model_ = std::make_unique<FasterRCNN>(config);
		(*model_)->load_state_dict(read_checkpoint(test::fixtures("weights.pth")));
	}
	static void TearDownTestSuite() { model_.reset(); }

	static std::unique_ptr<FasterRCNN> model_;
};

std::unique_ptr<FasterRCNN> ResNet50Parity::model_;

} // namespace

TEST_P(ResNet50Parity, ProposalsAndDetectionsMatchTorchvision)
{
	const json &c = test::expected_json()["cases"][GetParam()];
	SCOPED_TRACE(c["name"].get<std::string>());
	const ForwardResult result = test::run_case(*model_, c, test::load_raw_rgb);
	ASSERT_EQ(result.detections.size(), c["images"].size());
	for (size_t i = 0; i < result.detections.size(); i++) {
		const json &image = c["images"][i];
		SCOPED_TRACE(image["photo"].get<std::string>());
		auto expected_proposals = test::json_rows(image["proposals"], 4);
		ASSERT_EQ(result.proposals[i].size(0), expected_proposals.size(0)) << "number of proposals";
		EXPECT_LE((result.proposals[i] - expected_proposals).abs().max().item<double>(), test::kBoxTolerance);
		test::expect_detections_match(result.detections[i], image);
	}
}

// The same model with the oneDNN CPU convolutions (folded batch norms, fused epilogues,
// Winograd): the arithmetic is reordered, so boxes are held to 0.5 px, not 0.01. These seeded
// random weights magnify rounding more than trained ones do (LibTorch's own channels-last
// convolutions leave 2 of astronaut's 100 boxes beyond 0.5 px, at 0.58), so a few boxes may
// move further: the test asks for the same labels, 90% of torchvision's detections within
// 0.5 px and all within 2 px. The trained shapes model, whose detections
// must not move, is checked in test_onednn.cpp.
TEST_P(ResNet50Parity, OneDnnConvolutionsKeepTorchvisionsDetections)
{
	if (!frcnn::detail::onednn_built())
		GTEST_SKIP() << "this build has no oneDNN";
	const json &c = test::expected_json()["cases"][GetParam()];
	SCOPED_TRACE(c["name"].get<std::string>());
	FasterRCNN &model = *model_;
	model->set_cpu_convolutions(CpuConvolutions::OneDnn);
	const ForwardResult result = test::run_case(model, c, test::load_raw_rgb);
	model->set_cpu_convolutions(CpuConvolutions::LibTorch);
	ASSERT_EQ(result.detections.size(), c["images"].size());
	for (size_t i = 0; i < result.detections.size(); i++) {
		const json &image = c["images"][i];
		SCOPED_TRACE(image["photo"].get<std::string>());
		const auto &d = result.detections[i];
		test::expect_reordered_detections_agree(d, test::json_rows(image["boxes"], 4), image["labels"], image["scores"],
							"onednn " + image["photo"].get<std::string>());
		if (HasFatalFailure())
			return;
		std::vector<float> expected_scores = image["scores"];
		const double score_error = (d.scores - torch::tensor(expected_scores)).abs().max().item<double>();
		std::printf("  score error %.2e\n", score_error);
		EXPECT_LE(score_error, 1e-3);
	}
}

INSTANTIATE_TEST_SUITE_P(Photos, ResNet50Parity, ::testing::Values(0, 1));

// The same through the command-line program: image file in, JSON lines out.
TEST(FrcnnDetect, PrintsTorchvisionsDetections)
{
	const json &c = test::expected_json()["cases"][1];
	const json &image = c["images"][0];
	// LibTorch's convolutions: torchvision's arithmetic (the default, onednn, is compared above).
	const std::string cmd = test::env("FRCNN_BUILD_ROOT") + "/detector/tools/frcnn-detect --cpu-convolutions libtorch --weights " +
				test::fixtures("weights.pth") + " --min-size " + std::to_string(c["min_size"].get<int>()) +
				" --max-size " + std::to_string(c["max_size"].get<int>()) + " --score-threshold 0 " +
				image["photo"].get<std::string>();
	std::unique_ptr<FILE, int (*)(FILE *)> pipe(popen(cmd.c_str(), "r"), pclose);
	ASSERT_TRUE(pipe);
	std::string out;
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, pipe.get())) > 0)
		out.append(buf, n);
	ASSERT_EQ(pclose(pipe.release()), 0) << cmd;
	ASSERT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line per image";
	json line = json::parse(out);
	EXPECT_EQ(line["image"], image["photo"]);
	EXPECT_EQ(line["width"], image["width"]);
	EXPECT_EQ(line["height"], image["height"]);
	Detections d;
	std::vector<float> boxes, scores;
	std::vector<int64_t> labels;
	for (const auto &det : line["detections"]) {
		for (const auto &v : det["box"])
			boxes.push_back(v.get<float>());
		labels.push_back(det["label"]);
		scores.push_back(det["score"]);
	}
	d.boxes = torch::tensor(boxes).reshape({-1, 4});
	d.labels = torch::tensor(labels);
	d.scores = torch::tensor(scores);
	test::expect_detections_match(d, image, test::kFreshProcessBoxTolerance);
}

TEST(FrcnnDetect, BadInputsGiveOneLineErrors)
{
	const std::string tool = test::env("FRCNN_BUILD_ROOT") + "/detector/tools/frcnn-detect";
	const std::string photo = test::expected_json()["cases"][1]["images"][0]["photo"];
	struct Case {
		std::string args, expect;
	} cases[] = {
		{"--weights " + test::fixtures("weights.pth") + " /nonexistent.png", "cannot read image"},
		{"--weights /nonexistent.pth " + photo, "/nonexistent.pth"},
		{"--arch tiny --weights " + test::fixtures("weights.pth") + " " + photo, "do not fit"},
		{"--weights " + test::fixtures("expected.json") + " " + photo, "expected.json"},
		{"--weights " + test::fixtures("weights.pth") + " --device cuda " + photo, "cuda"},
		{"--bogus 1 " + photo, "unknown option"},
	};
	for (const auto &c : cases) {
		const std::string cmd = tool + " " + c.args + " 2>&1 >/dev/null";
		std::unique_ptr<FILE, int (*)(FILE *)> pipe(popen(cmd.c_str(), "r"), pclose);
		ASSERT_TRUE(pipe);
		std::string err;
		char buf[4096];
		size_t n;
		while ((n = fread(buf, 1, sizeof buf, pipe.get())) > 0)
			err.append(buf, n);
		int status = pclose(pipe.release());
		EXPECT_NE(status, 0) << c.args;
		EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << c.args << ": " << err;
		EXPECT_NE(err.find(c.expect), std::string::npos) << c.args << ": " << err;
		EXPECT_EQ(err.rfind("frcnn-detect: ", 0), 0u) << err;
	}
}

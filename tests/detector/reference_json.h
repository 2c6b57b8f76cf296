// SPDX-License-Identifier: BSD-3-Clause
// What the model tests read from a reference script's expected.json (torchvision's detections
// of photos the script wrote as raw RGB bytes), and the check that a model's detections are
// torchvision's.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common.h"
#include "frcnn/model.h"

namespace frcnn::test {

constexpr double kBoxTolerance = 0.01; // pixels
constexpr double kScoreTolerance = 1e-4;
// LibTorch's own CPU kernels give results that differ in the last float bits with the memory
// layout of their inputs (torchvision on the same image differs from itself by up to ~0.3 px on
// random weights between a fresh process and one that ran other images first). The in-process
// cases repeat the reference script's sequence exactly; a command-line program runs in a fresh
// process on an OpenCV-decoded frame, so its boxes are compared with this tolerance, its labels
// and scores as strictly as the others.
constexpr double kFreshProcessBoxTolerance = 0.5;

// The reference script's expected.json, read once.
inline const nlohmann::json &expected_json()
{
	static const nlohmann::json expected = nlohmann::json::parse(read_file(fixtures("expected.json")));
	return expected;
}

// A JSON array of rows of numbers as a float tensor [rows, columns].
inline torch::Tensor json_rows(const nlohmann::json &j, int64_t columns)
{
	std::vector<float> flat;
	for (const auto &r : j)
		for (const auto &v : r)
			flat.push_back(v.get<float>());
	return torch::tensor(flat).reshape({-1, columns});
}

// A photo the reference script wrote as raw RGB bytes ({"file", "height", "width"}), as the
// float [3,H,W] image in 0..1 that torchvision was given.
inline torch::Tensor load_raw_rgb(const nlohmann::json &photo)
{
	const int64_t h = photo["height"], w = photo["width"];
	std::string bytes = read_file(photo["file"].get<std::string>());
	if ((int64_t)bytes.size() != h * w * 3)
		throw std::runtime_error("unexpected size of " + photo["file"].get<std::string>());
	auto hwc = torch::from_blob(bytes.data(), {h, w, 3}, torch::kUInt8).clone();
	return hwc.permute({2, 0, 1}).to(torch::kFloat32) / 255;
}

// The model on one case's images as one batch, at the case's input size.
inline ForwardResult run_case(FasterRCNN &model, const nlohmann::json &c,
			      const std::function<torch::Tensor(const nlohmann::json &)> &load_image)
{
	model->set_image_size(c["min_size"], c["max_size"]);
	std::vector<torch::Tensor> images;
	for (const auto &image : c["images"])
		images.push_back(load_image(image));
	torch::NoGradGuard no_grad;
	return model->run(images);
}

// The detections of one image are the reference's 100: the same labels in the same order, boxes
// within box_tolerance and scores within kScoreTolerance.
inline void expect_detections_match(const Detections &d, const nlohmann::json &image,
				    double box_tolerance = kBoxTolerance)
{
	const auto expected_boxes = json_rows(image["boxes"], 4);
	std::vector<int64_t> expected_labels = image["labels"];
	std::vector<float> expected_scores = image["scores"];
	ASSERT_EQ(expected_labels.size(), 100u) << "the reference should give 100 detections to compare";
	ASSERT_EQ(d.boxes.size(0), (int64_t)expected_labels.size());
	auto labels = d.labels.contiguous();
	for (size_t i = 0; i < expected_labels.size(); i++)
		ASSERT_EQ(labels[i].item<int64_t>(), expected_labels[i]) << "label of detection " << i;
	EXPECT_LE((d.boxes - expected_boxes).abs().max().item<double>(), box_tolerance);
	EXPECT_LE((d.scores - torch::tensor(expected_scores)).abs().max().item<double>(), kScoreTolerance);
}

} // namespace frcnn::test

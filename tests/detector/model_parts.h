// SPDX-License-Identifier: BSD-3-Clause
// What the tests of the model's kernels share: a test picture, and the model's parts by name.
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "frcnn/frame.h"
#include "frcnn/model.h"
#include "frcnn/shapes.h"
#include "parts.h"

namespace frcnn::test {

// A picture with edges and smooth regions at every scale (the features of noise would be
// unlike a photo's): rings and a ramp, per channel.
inline torch::Tensor test_image(int64_t height, int64_t width)
{
	auto y = torch::arange(height, torch::kFloat).reshape({-1, 1}).expand({height, width});
	auto x = torch::arange(width, torch::kFloat).reshape({1, -1}).expand({height, width});
	auto r = ((x - width / 3.0).pow(2) + (y - height / 2.0).pow(2)).sqrt();
	return torch::stack({(torch::sin(r / 9.0) + 1) / 2, x / width, (torch::cos(y / 17.0 + x / 23.0) + 1) / 2});
}

// A model of preset `arch` for picture-sized inputs (240 x 320, every detection kept), its
// seeded weights' frozen batch norms calibrated on `image`, in eval mode.
inline FasterRCNN seeded_model(const std::string &arch, const torch::Tensor &image)
{
	ModelConfig config = model_preset(arch);
	config.min_size = 240;
	config.max_size = 320;
	config.box_score_thresh = 0.0;
	torch::manual_seed(7);
	FasterRCNN model(config);
	model->calibrate_frozen_batch_norm({image});
	model->eval();
	return model;
}

// Detections of a model in reduced precision: some, their boxes and scores float, finite and
// inside a `width` x `height` image.
inline void expect_detections_in_image(const Detections &detections, double width, double height)
{
	EXPECT_GT(detections.labels.size(0), 0);
	EXPECT_EQ(detections.boxes.scalar_type(), torch::kFloat);
	if (detections.boxes.numel() == 0)
		return;
	const auto boxes = detections.boxes.cpu(), scores = detections.scores.cpu();
	EXPECT_TRUE(torch::isfinite(boxes).all().item<bool>());
	EXPECT_GE(boxes.min().item<double>(), 0.0);
	EXPECT_LE(boxes.select(1, 2).max().item<double>(), width);
	EXPECT_LE(boxes.select(1, 3).max().item<double>(), height);
	EXPECT_GE(scores.min().item<double>(), 0.0);
	EXPECT_LE(scores.max().item<double>(), 1.0);
}

// A shapes scene's RGB bytes as a frame (no copy: the scene must outlive it).
inline FrameView frame_of(Scene &scene)
{
	FrameView frame;
	frame.format = PixelFormat::RGB;
	frame.width = scene.width;
	frame.height = scene.height;
	frame.planes[0] = scene.rgb.data();
	frame.strides[0] = scene.width * 3;
	return frame;
}

// Cosine similarity of two tensors' values.
inline double cosine(const torch::Tensor &a, const torch::Tensor &b)
{
	const auto x = a.to(torch::kDouble).flatten(), y = b.to(torch::kDouble).flatten();
	return (x.dot(y) / (x.norm() * y.norm())).item<double>();
}

inline std::shared_ptr<frcnn::detail::BackboneImpl> backbone_of(FasterRCNN &model)
{
	for (const auto &child : model->named_children())
		if (child.key() == "backbone")
			return std::dynamic_pointer_cast<frcnn::detail::BackboneImpl>(child.value());
	return nullptr;
}

inline std::shared_ptr<frcnn::detail::RPNHeadImpl> rpn_head_of(FasterRCNN &model)
{
	for (const auto &child : model->named_children())
		if (child.key() == "rpn")
			return std::dynamic_pointer_cast<frcnn::detail::RegionProposalNetworkImpl>(child.value())->head.ptr();
	return nullptr;
}

inline std::shared_ptr<frcnn::detail::RoIHeadsImpl> roi_heads_of(FasterRCNN &model)
{
	for (const auto &child : model->named_children())
		if (child.key() == "roi_heads")
			return std::dynamic_pointer_cast<frcnn::detail::RoIHeadsImpl>(child.value());
	return nullptr;
}

} // namespace frcnn::test

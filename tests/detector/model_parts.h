// SPDX-License-Identifier: BSD-3-Clause
// What the tests of the model's kernels share: a test picture, and the model's parts by name.
#pragma once

#include <memory>

#include <torch/torch.h>

#include "frcnn/model.h"
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

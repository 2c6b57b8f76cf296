// SPDX-License-Identifier: BSD-3-Clause
// MobileNetV3-Large `features` as torchvision's _mobilenet_extractor uses them for detection, and
// the Conv2dNormActivation block it (and the conv_fc box head) are made of.
#include <algorithm>

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>

#include "frcnn/error.h"
#include "parts.h"

namespace F = torch::nn::functional;

namespace frcnn::detail {

ConvNormActImpl::ConvNormActImpl(const ModelConfig &config, int64_t in, int64_t out, int64_t kernel, int64_t stride,
				 int64_t groups, bool with_norm, Activation activation_)
	: activation(activation_)
{
	// torchvision: padding (kernel - 1) / 2, and a bias only without normalisation.
	conv = register_module("0", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
								.stride(stride)
								.padding((kernel - 1) / 2)
								.groups(groups)
								.bias(!with_norm)));
	{
		// MobileNetV3 and FastRCNNConvFCHead both use kaiming_normal_(fan_out) with zero bias.
		torch::NoGradGuard no_grad;
		torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
		if (conv->bias.defined())
			torch::nn::init::zeros_(conv->bias);
	}
	if (with_norm) {
		norm = make_norm(config, out);
		register_module("1", norm.ptr());
	}
}

torch::Tensor ConvNormActImpl::forward(const torch::Tensor &x)
{
	auto y = conv(x);
	if (!norm.is_empty())
		y = norm.forward(y);
	// In place, as torchvision's Conv2dNormActivation (inplace=True): y is this layer's own, and
	// a pass that writes a new map costs as much as the activation itself.
	switch (activation) {
	case Activation::ReLU: return torch::relu_(y);
	case Activation::Hardswish: return torch::hardswish_(y);
	case Activation::None: break;
	}
	return y;
}

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels)
{
	fc1 = register_module("fc1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, squeeze_channels, 1)));
	fc2 = register_module("fc2", torch::nn::Conv2d(torch::nn::Conv2dOptions(squeeze_channels, channels, 1)));
	torch::NoGradGuard no_grad;
	for (auto *c : {&fc1, &fc2}) {
		torch::nn::init::kaiming_normal_((*c)->weight, 0.0, torch::kFanOut, torch::kReLU);
		torch::nn::init::zeros_((*c)->bias);
	}
}

torch::Tensor SqueezeExcitationImpl::forward(const torch::Tensor &x)
{
	auto scale = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({1, 1}));
	scale = fc2(torch::relu(fc1(scale)));
	return torch::hardsigmoid(scale) * x;
}

namespace {

// torchvision's _make_divisible (from the TF reference): nearest multiple of `divisor`, at least
// `divisor`, and never below 90% of v.
int64_t make_divisible(double v, int64_t divisor)
{
	int64_t out = std::max(divisor, (int64_t)(v + divisor / 2.0) / divisor * divisor);
	if ((double)out < 0.9 * v)
		out += divisor;
	return out;
}

} // namespace

InvertedResidualImpl::InvertedResidualImpl(const ModelConfig &config, const Setting &s)
	: residual(s.stride == 1 && s.in == s.out)
{
	const Activation act = s.hardswish ? Activation::Hardswish : Activation::ReLU;
	block = register_module("block", torch::nn::Sequential());
	if (s.expanded != s.in)
		block->push_back(ConvNormAct(config, s.in, s.expanded, 1, 1, 1, true, act));
	block->push_back(ConvNormAct(config, s.expanded, s.expanded, s.kernel, s.stride, s.expanded, true, act));
	if (s.se)
		block->push_back(SqueezeExcitation(s.expanded, make_divisible((double)(s.expanded / 4), 8)));
	block->push_back(ConvNormAct(config, s.expanded, s.out, 1, 1, 1, true, Activation::None));
}

torch::Tensor InvertedResidualImpl::forward(const torch::Tensor &x)
{
	auto y = block->forward(x);
	if (residual)
		y.add_(x); // in place, as torchvision's (result += input)
	return y;
}

MobileNetV3BodyImpl::MobileNetV3BodyImpl(const ModelConfig &config)
{
	// _mobilenet_v3_conf("mobilenet_v3_large"), width 1.0, no reduced tail, no dilation:
	// input, kernel, expanded, output channels, SE, hardswish (else ReLU), stride.
	static const InvertedResidualImpl::Setting settings[] = {
		{16, 3, 16, 16, false, false, 1},   {16, 3, 64, 24, false, false, 2},
		{24, 3, 72, 24, false, false, 1},   {24, 5, 72, 40, true, false, 2},
		{40, 5, 120, 40, true, false, 1},   {40, 5, 120, 40, true, false, 1},
		{40, 3, 240, 80, false, true, 2},   {80, 3, 200, 80, false, true, 1},
		{80, 3, 184, 80, false, true, 1},   {80, 3, 184, 80, false, true, 1},
		{80, 3, 480, 112, true, true, 1},   {112, 3, 672, 112, true, true, 1},
		{112, 5, 672, 160, true, true, 2},  {160, 5, 960, 160, true, true, 1},
		{160, 5, 960, 160, true, true, 1},
	};
	auto add = [&](torch::nn::AnyModule m) {
		register_module(std::to_string(features.size()), m.ptr());
		features.push_back(std::move(m));
	};
	add(torch::nn::AnyModule(ConvNormAct(config, 3, 16, 3, 2, 1, true, Activation::Hardswish)));
	stage_indices_.push_back(0);
	for (const auto &s : settings) {
		if (s.stride > 1)
			stage_indices_.push_back(features.size());
		add(torch::nn::AnyModule(InvertedResidual(config, s)));
	}
	stage_indices_.push_back(features.size());
	add(torch::nn::AnyModule(ConvNormAct(config, 160, 960, 1, 1, 1, true, Activation::Hardswish)));
}

std::vector<torch::Tensor> MobileNetV3BodyImpl::forward(const torch::Tensor &x)
{
	// _mobilenet_extractor returns the last two stages: the outputs of blocks 13 and 16.
	const auto returned = returned_indices();
	std::vector<torch::Tensor> outputs;
	auto y = x;
	for (size_t i = 0; i < features.size(); i++) {
		y = features[i].forward(y);
		if (std::find(returned.begin(), returned.end(), i) != returned.end())
			outputs.push_back(y);
	}
	return outputs;
}

} // namespace frcnn::detail

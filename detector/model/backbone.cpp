// SPDX-License-Identifier: BSD-3-Clause
// ResNet trunk, normalisation layers and the feature pyramid, as torchvision's
// _resnet_fpn_extractor builds them.
#include <torch/nn/functional/pooling.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>

#include "frcnn/error.h"
#include "onednn_convolutions.h"
#include "parts.h"

namespace F = torch::nn::functional;

namespace frcnn::detail {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(int64_t channels, double eps_)
	: eps(eps_)
{
	weight = register_buffer("weight", torch::ones({channels}));
	bias = register_buffer("bias", torch::zeros({channels}));
	running_mean = register_buffer("running_mean", torch::zeros({channels}));
	running_var = register_buffer("running_var", torch::ones({channels}));
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor &x)
{
	if (calibrate) {
		torch::NoGradGuard no_grad;
		running_mean.copy_(x.mean({0, 2, 3}));
		running_var.copy_(x.var({0, 2, 3}).clamp_min(1e-5));
		unprepare();
	}
	if (folded_)
		return x + shift_;
	const auto [scale, shift] = scale_and_shift();
	return x * scale + shift;
}

void FrozenBatchNorm2dImpl::prepare()
{
	if (folded_)
		return;
	scale_ = torch::Tensor(); // computed anew from the buffers as they are now
	std::tie(scale_, shift_) = scale_and_shift();
}

std::pair<torch::Tensor, torch::Tensor> FrozenBatchNorm2dImpl::scale_and_shift() const
{
	torch::NoGradGuard no_grad;
	if (folded_)
		return {torch::ones_like(shift_), shift_};
	if (scale_.defined())
		return {scale_, shift_};
	// The operations of torchvision.ops.FrozenBatchNorm2d in its order, so that results are
	// bit-identical.
	auto scale = weight.reshape({1, -1, 1, 1}) * (running_var.reshape({1, -1, 1, 1}) + eps).rsqrt();
	auto shift = bias.reshape({1, -1, 1, 1}) - running_mean.reshape({1, -1, 1, 1}) * scale;
	return {scale, shift};
}

void FrozenBatchNorm2dImpl::fold_into(torch::Tensor &conv_weight)
{
	torch::NoGradGuard no_grad;
	// In float at least, whatever the model's dtype, before it goes to half.
	const auto type = weight.scalar_type() == torch::kHalf ? torch::kFloat : weight.scalar_type();
	auto scale = weight.to(type) * (running_var.to(type) + eps).rsqrt();
	shift_ = (bias.to(type) - running_mean.to(type) * scale).reshape({1, -1, 1, 1}).to(weight.scalar_type());
	conv_weight.copy_(conv_weight.to(type) * scale.reshape({-1, 1, 1, 1}));
	scale_ = torch::Tensor();
	folded_ = true;
}

void FrozenBatchNorm2dImpl::unprepare()
{
	scale_ = torch::Tensor();
	shift_ = torch::Tensor();
	folded_ = false;
}

void FrozenBatchNorm2dImpl::cast_prepared(torch::ScalarType dtype)
{
	if (scale_.defined())
		scale_ = scale_.to(dtype);
	if (shift_.defined())
		shift_ = shift_.to(dtype);
}

namespace {

void fold_pair(const std::shared_ptr<torch::nn::Module> &conv, const std::shared_ptr<torch::nn::Module> &norm)
{
	auto *c = conv->as<torch::nn::Conv2dImpl>();
	auto *bn = norm->as<FrozenBatchNorm2dImpl>();
	// Once: a second to_device in a reduced precision would scale the weights again.
	if (c != nullptr && bn != nullptr && !c->bias.defined() && !bn->folded())
		bn->fold_into(c->weight);
}

} // namespace

void fold_frozen_batch_norm(torch::nn::Module &trunk)
{
	if (auto *mobilenet = trunk.as<MobileNetV3BodyImpl>()) {
		// Every convolution of MobileNetV3 has its batch norm: the plain layers and each part
		// of a block but the squeeze-and-excitation.
		auto fold = [](torch::nn::Module &module) {
			if (auto *c = module.as<ConvNormActImpl>(); c != nullptr && !c->norm.is_empty())
				fold_pair(c->conv.ptr(), c->norm.ptr());
		};
		for (auto &feature : mobilenet->features) {
			fold(*feature.ptr());
			if (auto *block = feature.ptr()->as<InvertedResidualImpl>())
				for (const auto &part : block->block->children())
					fold(*part);
		}
		return;
	}
	auto *body = trunk.as<ResNetBodyImpl>();
	if (body == nullptr)
		return;
	fold_pair(body->conv1.ptr(), body->bn1.ptr());
	for (auto &layer : body->layers) {
		for (size_t i = 0; i < layer->size(); i++) {
			auto *block = layer->ptr(i)->as<ResNetBlockImpl>();
			if (block == nullptr)
				continue;
			fold_pair(block->conv1.ptr(), block->bn1.ptr());
			fold_pair(block->conv2.ptr(), block->bn2.ptr());
			if (block->bottleneck)
				fold_pair(block->conv3.ptr(), block->bn3.ptr());
			if (block->downsample)
				fold_pair(block->downsample->ptr(0), block->downsample->ptr(1));
		}
	}
}

torch::nn::AnyModule make_norm(const ModelConfig &config, int64_t channels)
{
	if (config.norm == "frozen_bn")
		return torch::nn::AnyModule(FrozenBatchNorm2d(channels, config.frozen_bn_eps));
	if (config.norm == "batch_norm")
		return torch::nn::AnyModule(torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(1e-5)));
	throw Error("norm must be 'frozen_bn' or 'batch_norm', got '" + config.norm + "'");
}

bool norm_after_convs(const ModelConfig &config)
{
	return config.norm == "batch_norm";
}

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool bias)
{
	return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
					 .stride(stride)
					 .padding(padding)
					 .bias(bias));
}

// torchvision's ResNet init: kaiming_normal_(fan_out, relu) for convolutions.
void init_resnet_conv(torch::nn::Conv2d &c)
{
	torch::NoGradGuard no_grad;
	torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
}

} // namespace

ResNetBlockImpl::ResNetBlockImpl(const ModelConfig &config, bool bottleneck_, int64_t in_channels, int64_t planes,
				 int64_t stride)
	: bottleneck(bottleneck_)
{
	const int64_t expansion = bottleneck ? 4 : 1;
	if (bottleneck) {
		conv1 = register_module("conv1", conv(in_channels, planes, 1, 1, 0, false));
		bn1 = make_norm(config, planes);
		register_module("bn1", bn1.ptr());
		conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1, false));
		bn2 = make_norm(config, planes);
		register_module("bn2", bn2.ptr());
		conv3 = register_module("conv3", conv(planes, planes * expansion, 1, 1, 0, false));
		bn3 = make_norm(config, planes * expansion);
		register_module("bn3", bn3.ptr());
		init_resnet_conv(conv3);
	} else {
		conv1 = register_module("conv1", conv(in_channels, planes, 3, stride, 1, false));
		bn1 = make_norm(config, planes);
		register_module("bn1", bn1.ptr());
		conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1, false));
		bn2 = make_norm(config, planes);
		register_module("bn2", bn2.ptr());
	}
	init_resnet_conv(conv1);
	init_resnet_conv(conv2);
	if (stride != 1 || in_channels != planes * expansion) {
		auto down = conv(in_channels, planes * expansion, 1, stride, 0, false);
		init_resnet_conv(down);
		torch::nn::Sequential seq;
		seq->push_back(down);
		seq->push_back(make_norm(config, planes * expansion));
		downsample = register_module("downsample", seq);
	}
}

torch::Tensor ResNetBlockImpl::forward(const torch::Tensor &x)
{
	// Out of place, unlike MobileNetV3's blocks: in place (torchvision's ReLU(inplace=True),
	// out += identity) ran fasterrcnn_resnet50_fpn 2 to 5% slower on LibTorch's convolutions;
	// its maps are small enough for glibc to serve from its heap without faulting them in.
	auto out = torch::relu(bn1.forward(conv1(x)));
	if (bottleneck) {
		out = torch::relu(bn2.forward(conv2(out)));
		out = bn3.forward(conv3(out));
	} else {
		out = bn2.forward(conv2(out));
	}
	auto identity = downsample ? downsample->forward(x) : x;
	return torch::relu(out + identity);
}

ResNetBodyImpl::ResNetBodyImpl(const ModelConfig &config)
{
	bool bottleneck;
	std::vector<int> blocks;
	switch (config.resnet_depth) {
	case 18: bottleneck = false; blocks = {2, 2, 2, 2}; break;
	case 34: bottleneck = false; blocks = {3, 4, 6, 3}; break;
	case 50: bottleneck = true; blocks = {3, 4, 6, 3}; break;
	case 101: bottleneck = true; blocks = {3, 4, 23, 3}; break;
	default:
		throw Error("resnet_depth must be 18, 34, 50 or 101, got " +
			    std::to_string(config.resnet_depth));
	}
	if (config.layer_widths.size() != 4)
		throw Error("layer_widths must hold 4 widths (layer1..layer4), got " +
			    std::to_string(config.layer_widths.size()));

	conv1 = register_module("conv1", conv(3, config.stem_width, 7, 2, 3, false));
	init_resnet_conv(conv1);
	bn1 = make_norm(config, config.stem_width);
	register_module("bn1", bn1.ptr());

	const int64_t expansion = bottleneck ? 4 : 1;
	int64_t in_channels = config.stem_width;
	for (int i = 0; i < 4; i++) {
		const int64_t planes = config.layer_widths[i];
		torch::nn::Sequential layer;
		for (int b = 0; b < blocks[i]; b++) {
			const int64_t stride = (b == 0 && i > 0) ? 2 : 1;
			layer->push_back(ResNetBlock(config, bottleneck, in_channels, planes, stride));
			in_channels = planes * expansion;
		}
		layers.push_back(register_module("layer" + std::to_string(i + 1), layer));
		out_channels_.push_back(in_channels);
	}
}

std::vector<torch::Tensor> ResNetBodyImpl::forward(const torch::Tensor &x)
{
	auto y = torch::relu(bn1.forward(conv1(x)));
	y = F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
	std::vector<torch::Tensor> outputs;
	for (auto &layer : layers) {
		y = layer->forward(y);
		outputs.push_back(y);
	}
	return outputs;
}

FeaturePyramidImpl::FeaturePyramidImpl(const ModelConfig &config, const std::vector<int64_t> &in_channels,
				       int64_t out_channels)
{
	inner_blocks = register_module("inner_blocks", torch::nn::ModuleList());
	layer_blocks = register_module("layer_blocks", torch::nn::ModuleList());
	// Conv2dNormActivation without activation: Sequential(conv[, norm]), hence the ".0." in the
	// keys; with a norm the convolutions have no bias.
	const bool norm = norm_after_convs(config);
	for (int64_t in : in_channels) {
		auto inner = conv(in, out_channels, 1, 1, 0, !norm);
		auto layer = conv(out_channels, out_channels, 3, 1, 1, !norm);
		{
			torch::NoGradGuard no_grad;
			for (auto *c : {&inner, &layer}) {
				torch::nn::init::kaiming_uniform_((*c)->weight, 1.0);
				if ((*c)->bias.defined())
					torch::nn::init::constant_((*c)->bias, 0.0);
			}
		}
		torch::nn::Sequential inner_seq, layer_seq;
		inner_seq->push_back(inner);
		layer_seq->push_back(layer);
		if (norm) {
			inner_seq->push_back(make_norm(config, out_channels));
			layer_seq->push_back(make_norm(config, out_channels));
		}
		inner_blocks->push_back(inner_seq);
		layer_blocks->push_back(layer_seq);
	}
}

std::vector<torch::Tensor> FeaturePyramidImpl::forward(const std::vector<torch::Tensor> &x)
{
	const size_t n = x.size();
	std::vector<torch::Tensor> results(n);
	auto last_inner = inner_blocks[n - 1]->as<torch::nn::Sequential>()->forward(x[n - 1]);
	results[n - 1] = layer_blocks[n - 1]->as<torch::nn::Sequential>()->forward(last_inner);
	for (size_t i = n - 1; i-- > 0;) {
		auto lateral = inner_blocks[i]->as<torch::nn::Sequential>()->forward(x[i]);
		auto top_down = F::interpolate(last_inner,
					       F::InterpolateFuncOptions()
						       .size(std::vector<int64_t>{lateral.size(-2), lateral.size(-1)})
						       .mode(torch::kNearest));
		last_inner = lateral + top_down;
		results[i] = layer_blocks[i]->as<torch::nn::Sequential>()->forward(last_inner);
	}
	// LastLevelMaxPool: the 'pool' level.
	results.push_back(F::max_pool2d(results.back(), F::MaxPool2dFuncOptions(1).stride(2).padding(0)));
	return results;
}

size_t backbone_levels(const ModelConfig &config)
{
	if (config.backbone == "resnet")
		return 4;
	if (config.backbone == "mobilenet_v3_large")
		return 2;
	throw Error("unknown backbone '" + config.backbone + "' (known: resnet, mobilenet_v3_large)");
}

BackboneImpl::BackboneImpl(const ModelConfig &config)
{
	std::vector<int64_t> channels;
	if (config.backbone == "resnet") {
		resnet = register_module("body", ResNetBody(config));
		channels = resnet->out_channels();
	} else if (config.backbone == "mobilenet_v3_large") {
		mobilenet = register_module("body", MobileNetV3Body(config));
		channels = mobilenet->out_channels();
	} else {
		backbone_levels(config); // throws, naming the known backbones
	}
	fpn = register_module("fpn", FeaturePyramid(config, channels, config.fpn_channels));
}

std::vector<torch::Tensor> BackboneImpl::forward(const torch::Tensor &x)
{
	if (onednn && !is_training() && !torch::GradMode::is_enabled() && onednn->accepts(x) && onednn->current())
		return onednn->backbone(x);
	return fpn(resnet ? resnet(x) : mobilenet(x));
}

} // namespace frcnn::detail

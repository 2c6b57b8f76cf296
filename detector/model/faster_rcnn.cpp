// SPDX-License-Identifier: BSD-3-Clause
// Model presets, the assembled Faster R-CNN, and loading torchvision state dicts.
#include <algorithm>
#include <cmath>
#include <regex>
#include <set>
#include <sstream>

#include <ATen/Context.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include <zlib.h>

#include "frcnn/error.h"
#include "frcnn/model.h"
#include "onednn_convolutions.h"
#include "parts.h"
#include "training.h"

namespace frcnn {

// --- presets ----------------------------------------------------------------------------------

std::vector<std::string> model_preset_names()
{
	return {"fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
		"fasterrcnn_mobilenet_v3_large_320_fpn", "tiny"};
}

ModelConfig model_preset(const std::string &name_in)
{
	// torchvision's names, or the same without the "fasterrcnn_" prefix.
	const std::string name = name_in.rfind("fasterrcnn_", 0) == 0 ? name_in : "fasterrcnn_" + name_in;
	ModelConfig c;
	if (name == "fasterrcnn_resnet50_fpn") {
		c.arch = name;
		return c; // the defaults are torchvision's
	}
	if (name == "fasterrcnn_resnet50_fpn_v2") {
		// BatchNorm2d in the backbone, the FPN and a 4-conv box head; a 2-conv RPN head.
		c.arch = name;
		c.norm = "batch_norm";
		c.rpn_conv_depth = 2;
		c.box_head = "conv_fc";
		c.box_head_convs = {256, 256, 256, 256};
		return c;
	}
	if (name == "fasterrcnn_mobilenet_v3_large_fpn" || name == "fasterrcnn_mobilenet_v3_large_320_fpn") {
		// Two stride-32 maps ('0': block 13, '1': block 16) plus 'pool', 5 sizes x 3 ratios of
		// anchors on each.
		c.arch = name;
		c.backbone = "mobilenet_v3_large";
		c.anchor_sizes = std::vector<std::vector<double>>(3, {32, 64, 128, 256, 512});
		c.rpn_score_thresh = 0.05;
		if (name == "fasterrcnn_mobilenet_v3_large_320_fpn") {
			c.min_size = 320;
			c.max_size = 640;
			c.rpn_pre_nms_top_n_test = 150;
			c.rpn_post_nms_top_n_test = 150;
		}
		return c;
	}
	if (name_in == "tiny") {
		// Our own small model: ResNet-18 layout at a quarter of the width, a 64-channel FPN and a
		// 256-wide box head (about 2.3 M parameters), sized for 480-pixel frames.
		c.arch = "tiny";
		c.resnet_depth = 18;
		c.stem_width = 16;
		c.layer_widths = {16, 32, 64, 128};
		c.fpn_channels = 64;
		c.box_head_size = 256;
		c.min_size = 480;
		c.max_size = 800;
		c.rpn_pre_nms_top_n_test = 500;
		c.rpn_post_nms_top_n_test = 300;
		c.trainable_backbone_layers = 5;
		return c;
	}
	std::string known;
	for (const auto &n : model_preset_names())
		known += (known.empty() ? "" : ", ") + n;
	throw Error("unknown model '" + name_in + "' (known models: " + known + ")");
}

const char *cpu_convolutions_name(CpuConvolutions value)
{
	switch (value) {
	case CpuConvolutions::Auto:
		return "auto";
	case CpuConvolutions::LibTorch:
		return "libtorch";
	case CpuConvolutions::OneDnn:
		return "onednn";
	}
	return "?";
}

CpuConvolutions parse_cpu_convolutions(const std::string &name)
{
	for (auto value : {CpuConvolutions::Auto, CpuConvolutions::LibTorch, CpuConvolutions::OneDnn})
		if (name == cpu_convolutions_name(value))
			return value;
	throw Error("unknown CPU convolutions '" + name + "': use auto, libtorch or onednn");
}

const char *precision_name(Precision value)
{
	switch (value) {
	case Precision::Fp32:
		return "fp32";
	case Precision::Fp16:
		return "fp16";
	case Precision::Bf16:
		return "bf16";
	case Precision::Int8:
		return "int8";
	}
	return "?";
}

Precision parse_precision(const std::string &name)
{
	for (auto value : {Precision::Fp32, Precision::Fp16, Precision::Bf16, Precision::Int8})
		if (name == precision_name(value))
			return value;
	throw Error("unknown precision '" + name + "': use fp32, fp16 (CUDA), bf16 or int8 (CPU)");
}

namespace {

// The instruction set oneDNN is held to, as its own variables name it (ONEDNN_ first, as oneDNN
// reads them), upper case; empty when none is set.
std::string onednn_max_cpu_isa()
{
	for (const char *variable : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"}) {
		const char *value = std::getenv(variable);
		if (value == nullptr || *value == '\0')
			continue;
		std::string isa(value);
		std::transform(isa.begin(), isa.end(), isa.begin(), [](unsigned char c) { return std::toupper(c); });
		return std::string(variable) + "=" + isa;
	}
	return {};
}

bool cpu_instructions_have_bf16()
{
#if defined(__x86_64__) && defined(__GNUC__)
	// Read from CPUID rather than __builtin_cpu_supports, whose names for these features vary
	// with the compiler's version. AVX-512 BF16 (leaf 7, subleaf 1, EAX bit 5), with AVX-512
	// (leaf 7, EBX bit 16) and its registers enabled by the system (XCR0: XMM, YMM, opmask,
	// ZMM). The CPUs with AMX-BF16 have AVX-512 BF16 too.
	unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) // OSXSAVE
		return false;
	unsigned xcr0 = 0, xcr0_high = 0;
	__asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
	constexpr unsigned kAvx512State = 0xe6;
	if ((xcr0 & kAvx512State) != kAvx512State)
		return false;
	if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(ebx & (1u << 16)))
		return false;
	if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx))
		return false;
	return (eax & (1u << 5)) != 0;
#else
	// Only x86's bfloat16 instructions are known here: elsewhere bf16 is refused rather than
	// run on a path nobody measured.
	return false;
#endif
}

} // namespace

std::string cpu_bf16_unavailable_reason()
{
	if (!cpu_instructions_have_bf16())
		return "which this one lacks";
	// The sets below AVX512_CORE_BF16 (those oneDNN knows; a name it does not know it ignores).
	static const std::set<std::string> below_bf16 = {"SSE41",     "AVX",	     "AVX2",
							 "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
							 "AVX512_CORE_VNNI"};
	const std::string limit = onednn_max_cpu_isa();
	if (!limit.empty() && below_bf16.count(limit.substr(limit.find('=') + 1)) != 0)
		return "which " + limit + " keeps oneDNN from using";
	return {};
}

bool cpu_has_bf16()
{
	return cpu_bf16_unavailable_reason().empty();
}

// --- model ------------------------------------------------------------------------------------

struct FasterRCNNImpl::Parts {
	detail::Backbone backbone{nullptr};
	detail::RegionProposalNetwork rpn{nullptr};
	detail::RoIHeads roi_heads{nullptr};
	detail::TransformBuffers transform_buffers;
};

namespace {

// The settings that may change after construction, checked alike there and in the setters.
void check_score_threshold(double value)
{
	if (!(value >= 0.0 && value <= 1.0))
		throw Error("the score threshold must be a number from 0 to 1, not " + std::to_string(value));
}

void check_nms_threshold(double value)
{
	if (!(value >= 0.0 && value <= 1.0))
		throw Error("the NMS threshold must be a number from 0 to 1, not " + std::to_string(value));
}

void check_max_detections(int value)
{
	if (value < 0)
		throw Error("the most detections per image must not be negative, not " + std::to_string(value));
}

// The shape and training settings of a ModelConfig that the modules would otherwise take as
// they come: a zero width builds empty weights whose first use fails with LibTorch's words, a
// negative count or a NaN threshold runs without a word. Each message names the field.
void check_model_shape(const ModelConfig &config)
{
	const auto at_least = [](const char *name, int value, int least) {
		if (value < least)
			throw Error(std::string(name) + " must be at least " + std::to_string(least) + ", got " +
				    std::to_string(value));
	};
	const auto fraction = [](const char *name, double value) {
		if (!(value >= 0.0 && value <= 1.0))
			throw Error(std::string(name) + " must be a number from 0 to 1, got " + std::to_string(value));
	};
	at_least("stem_width", config.stem_width, 1);
	for (int width : config.layer_widths)
		at_least("each of layer_widths", width, 1);
	at_least("fpn_channels", config.fpn_channels, 1);
	at_least("rpn_conv_depth", config.rpn_conv_depth, 0);
	at_least("rpn_pre_nms_top_n_train", config.rpn_pre_nms_top_n_train, 1);
	at_least("rpn_pre_nms_top_n_test", config.rpn_pre_nms_top_n_test, 1);
	at_least("rpn_post_nms_top_n_train", config.rpn_post_nms_top_n_train, 1);
	at_least("rpn_post_nms_top_n_test", config.rpn_post_nms_top_n_test, 1);
	at_least("rpn_batch_size_per_image", config.rpn_batch_size_per_image, 1);
	at_least("box_roi_output_size", config.box_roi_output_size, 1);
	at_least("box_head_size", config.box_head_size, 1);
	at_least("box_batch_size_per_image", config.box_batch_size_per_image, 1);
	if (config.num_classes > kMostClasses)
		throw Error("num_classes must be at most " + std::to_string(kMostClasses) + ", got " +
			    std::to_string(config.num_classes));
	fraction("rpn_nms_thresh", config.rpn_nms_thresh);
	// Above 1 keeps no proposal, as in torchvision (a test's way to get none): only NaN is refused.
	if (std::isnan(config.rpn_score_thresh))
		throw Error("rpn_score_thresh must be a number, got nan");
	fraction("rpn_fg_iou_thresh", config.rpn_fg_iou_thresh);
	fraction("rpn_bg_iou_thresh", config.rpn_bg_iou_thresh);
	fraction("rpn_positive_fraction", config.rpn_positive_fraction);
	fraction("box_fg_iou_thresh", config.box_fg_iou_thresh);
	fraction("box_bg_iou_thresh", config.box_bg_iou_thresh);
	fraction("box_positive_fraction", config.box_positive_fraction);
	// torchvision's Matcher asserts the same order.
	const auto ordered = [](const char *low, double low_value, const char *high, double high_value) {
		if (low_value > high_value)
			throw Error(std::string(low) + " (" + std::to_string(low_value) + ") must not be above " + high +
				    " (" + std::to_string(high_value) + ")");
	};
	ordered("rpn_bg_iou_thresh", config.rpn_bg_iou_thresh, "rpn_fg_iou_thresh", config.rpn_fg_iou_thresh);
	ordered("box_bg_iou_thresh", config.box_bg_iou_thresh, "box_fg_iou_thresh", config.box_fg_iou_thresh);
	if (!(config.frozen_bn_eps >= 0.0) || !std::isfinite(config.frozen_bn_eps))
		throw Error("frozen_bn_eps must be a number of at least 0, got " + std::to_string(config.frozen_bn_eps));
	for (const std::vector<double> &level : config.anchor_sizes)
		for (double size : level)
			if (!(size > 0.0) || !std::isfinite(size))
				throw Error("anchor_sizes must hold positive numbers, got " + std::to_string(size));
	for (double ratio : config.aspect_ratios)
		if (!(ratio > 0.0) || !std::isfinite(ratio))
			throw Error("aspect_ratios must hold positive numbers, got " + std::to_string(ratio));
}

} // namespace

FasterRCNNImpl::FasterRCNNImpl(const ModelConfig &config)
	: parts_(std::make_unique<Parts>()), config_(config)
{
	if (config.min_size < 1 || config.max_size < 1)
		throw Error("min_size and max_size must be positive");
	if (config.image_mean.size() != 3 || config.image_std.size() != 3)
		throw Error("image_mean and image_std must have 3 values (R, G, B)");
	for (double value : config.image_std)
		if (!(value > 0.0) || !std::isfinite(value))
			throw Error("image_std must hold positive numbers, not " + std::to_string(value));
	for (double value : config.image_mean)
		if (!std::isfinite(value))
			throw Error("image_mean must hold numbers, not " + std::to_string(value));
	if (config.size_divisible < 1)
		throw Error("size_divisible must be at least 1, not " + std::to_string(config.size_divisible));
	if (config.anchor_sizes.empty() || config.aspect_ratios.empty())
		throw Error("anchor_sizes and aspect_ratios must hold at least one level and one ratio");
	for (const std::vector<double> &level : config.anchor_sizes)
		if (level.empty())
			throw Error("each level of anchor_sizes must hold at least one size");
	check_score_threshold(config.box_score_thresh);
	check_nms_threshold(config.box_nms_thresh);
	check_max_detections(config.box_detections_per_img);
	check_model_shape(config);
	parts_->backbone = register_module("backbone", detail::Backbone(config));
	parts_->rpn = register_module("rpn", detail::RegionProposalNetwork(config));
	parts_->roi_heads = register_module("roi_heads", detail::RoIHeads(config));
	freeze_backbone_layers(config.trainable_backbone_layers);
	eval();
}

FasterRCNNImpl::~FasterRCNNImpl() = default;

const ModelConfig &FasterRCNNImpl::config() const
{
	return config_;
}

void FasterRCNNImpl::set_box_score_thresh(double value)
{
	check_score_threshold(value);
	config_.box_score_thresh = value;
	parts_->roi_heads->config.box_score_thresh = value;
}

void FasterRCNNImpl::set_box_nms_thresh(double value)
{
	check_nms_threshold(value);
	config_.box_nms_thresh = value;
	parts_->roi_heads->config.box_nms_thresh = value;
}

void FasterRCNNImpl::set_box_detections_per_img(int value)
{
	check_max_detections(value);
	config_.box_detections_per_img = value;
	parts_->roi_heads->config.box_detections_per_img = value;
}

void FasterRCNNImpl::set_image_size(int min_size, int max_size)
{
	if (min_size < 1 || max_size < 1)
		throw Error("min_size and max_size must be positive");
	config_.min_size = min_size;
	config_.max_size = max_size;
}

void FasterRCNNImpl::freeze_backbone_layers(int trainable_layers)
{
	auto &backbone = parts_->backbone;
	if (backbone->mobilenet) {
		// _mobilenet_extractor: the blocks before the first of the last `trainable_layers` stages
		// are frozen (stages start at the strided blocks; 0 freezes everything).
		const auto stages = backbone->mobilenet->stage_indices();
		const int max_layers = (int)stages.size();
		if (trainable_layers < 0 || trainable_layers > max_layers)
			throw Error("trainable_backbone_layers must be in 0.." + std::to_string(max_layers) +
				    " for MobileNetV3, got " + std::to_string(trainable_layers));
		const size_t freeze_before = trainable_layers == 0 ? backbone->mobilenet->features.size()
								   : stages[stages.size() - trainable_layers];
		for (auto &p : backbone->mobilenet->named_parameters(true)) {
			const size_t block = std::stoul(p.key().substr(0, p.key().find('.')));
			p.value().set_requires_grad(block >= freeze_before);
		}
		config_.trainable_backbone_layers = trainable_layers;
		return;
	}
	if (trainable_layers < 0 || trainable_layers > 5)
		throw Error("trainable_backbone_layers must be in 0..5, got " + std::to_string(trainable_layers));
	// torchvision: the last `trainable_layers` of [layer4, layer3, layer2, layer1, conv1] train,
	// and bn1 with all 5 (it has parameters only when it is a BatchNorm2d).
	static const std::vector<std::string> order{"layer4", "layer3", "layer2", "layer1", "conv1"};
	std::vector<std::string> trainable(order.begin(), order.begin() + trainable_layers);
	if (trainable_layers == 5)
		trainable.push_back("bn1");
	for (auto &p : backbone->resnet->named_parameters(true)) {
		bool train = std::any_of(trainable.begin(), trainable.end(), [&](const std::string &prefix) {
			return p.key().rfind(prefix, 0) == 0;
		});
		p.value().set_requires_grad(train);
	}
	config_.trainable_backbone_layers = trainable_layers;
}

namespace {

// Every FrozenBatchNorm2d of the model (the trunk's; the FPN and heads have none).
std::vector<detail::FrozenBatchNorm2dImpl *> frozen_norms(torch::nn::Module &model)
{
	std::vector<detail::FrozenBatchNorm2dImpl *> norms;
	for (auto &m : model.modules(/*include_self=*/false))
		if (auto *bn = dynamic_cast<detail::FrozenBatchNorm2dImpl *>(m.get()))
			norms.push_back(bn);
	return norms;
}

} // namespace

void FasterRCNNImpl::calibrate_frozen_batch_norm(const std::vector<torch::Tensor> &images)
{
	const auto norms = frozen_norms(*this);
	auto reset = [&] {
		for (auto *bn : norms)
			bn->calibrate = false;
	};
	for (auto *bn : norms)
		bn->calibrate = true;
	try {
		torch::NoGradGuard no_grad;
		auto batch = detail::transform_images(config_, images, nullptr);
		parts_->backbone->forward(batch.batch);
	} catch (...) {
		reset();
		throw;
	}
	reset();
}

ForwardResult FasterRCNNImpl::run(const std::vector<torch::Tensor> &images, const std::vector<Target> *targets)
{
	if (targets != nullptr && targets->size() != images.size())
		throw Error("got " + std::to_string(images.size()) + " images but " +
			    std::to_string(targets->size()) + " targets");
	if (is_training() && targets == nullptr)
		throw Error("in training mode, targets should be passed");
	if (targets != nullptr)
		detail::check_targets(*targets, config_.num_classes);
	auto batch = detail::transform_images(config_, images, targets);
	// Float images into a model of reduced precision (to_device): normalised and resized in
	// float, as forward_frames() does, then rounded once.
	const auto dtype = parts_->backbone->parameters().front().scalar_type();
	if (batch.batch.scalar_type() == torch::kFloat && (dtype == torch::kHalf || dtype == torch::kBFloat16))
		batch.batch = batch.batch.to(dtype);
	return run_transformed(batch, targets);
}

ForwardResult FasterRCNNImpl::run_transformed(const detail::TransformedBatch &batch,
					      const std::vector<Target> *targets)
{
	if (onednn_ && !is_training())
		refresh_onednn();
	const auto *resized_targets = targets != nullptr ? &batch.targets : nullptr;
	if (int8_ && !int8_calibration_ && !is_training())
		int8_frames_observed_ += (int64_t)batch.image_sizes.size();
	auto features = parts_->backbone->forward(batch.batch);
	auto proposals = parts_->rpn->forward(batch.batch, batch.image_sizes, features, resized_targets);
	// RoI pooling uses the FPN levels, not 'pool'.
	std::vector<torch::Tensor> pooled_levels(features.begin(), features.end() - 1);
	auto heads = parts_->roi_heads->forward(pooled_levels, proposals.boxes, batch.image_sizes, resized_targets);

	ForwardResult result;
	result.proposals = proposals.boxes;
	result.image_sizes = batch.image_sizes;
	for (auto &l : proposals.losses)
		result.losses.insert(l);
	for (auto &l : heads.losses)
		result.losses.insert(l);
	result.detections =
		detail::boxes_to_original_sizes(std::move(heads.detections), batch.image_sizes, batch.original_sizes);
	return result;
}

std::vector<Detections> FasterRCNNImpl::forward(const std::vector<torch::Tensor> &images)
{
	return run(images).detections;
}

std::vector<Detections> FasterRCNNImpl::forward_frames(const std::vector<FrameView> &frames)
{
	return forward_frames(frames, {});
}

std::vector<Detections> FasterRCNNImpl::forward_frames(const std::vector<FrameView> &frames,
						       const std::vector<detail::FrameMemory> &frame_memory)
{
	if (frames.empty())
		throw Error("no frames given to the model");
	const torch::Tensor reference = parts_->backbone->parameters().front();
	const auto batch = detail::transform_frames(config_, frames, reference.device(),
						    reference.scalar_type(), channels_last_, frame_memory,
						    &parts_->transform_buffers);
	return run_transformed(batch).detections;
}

void detail::check_precision(torch::Device device, Precision precision)
{
	if (precision == Precision::Fp16 && !device.is_cuda())
		throw Error("precision fp16 needs a CUDA device; use fp32 or bf16 on the CPU");
	if (precision == Precision::Bf16 && !device.is_cpu())
		throw Error("precision bf16 is for the CPU; use fp16 or fp32 on CUDA");
	if (precision == Precision::Bf16 && !cpu_has_bf16())
		throw Error("precision bf16 needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX), " +
			    cpu_bf16_unavailable_reason() + "; use fp32");
	if (precision == Precision::Int8 && !device.is_cpu())
		throw Error("precision int8 is for the CPU; use fp16 or fp32 on CUDA");
	if (precision == Precision::Int8 && !detail::onednn_built())
		throw Error("precision int8 runs on oneDNN, which this build of libfrcnn lacks (install "
			    "libdnnl-dev and rebuild); use fp32");
}

std::string int8_unsupported_reason(const ModelConfig &config)
{
	return detail::onednn_unsupported_reason(config);
}

void FasterRCNNImpl::to_device(torch::Device device, Precision precision, bool channels_last)
{
	detail::check_precision(device, precision);
	if (precision == Precision::Int8) {
		const std::string unsupported = int8_unsupported_reason(config_);
		if (!unsupported.empty())
			throw Error("precision int8 runs on the oneDNN convolutions: " + unsupported + "; use fp32");
	}
	// Reduced precision: half on CUDA, bfloat16 on the CPU. 8 bits keep the float weights: the
	// oneDNN plan quantizes its copies.
	const bool reduced = precision == Precision::Fp16 || precision == Precision::Bf16;
	const auto dtype = precision == Precision::Fp16 ? torch::kHalf : torch::kBFloat16;
	torch::NoGradGuard no_grad;
	if (device.is_cuda()) {
		// fp32 means fp32: TF32 convolutions and matmuls (LibTorch's default for cuDNN) would
		// move boxes by tenths of a pixel. A video stream keeps its frame size: cuDNN times its
		// algorithms once per input shape and keeps the fastest. Process-wide settings.
		at::globalContext().setAllowTF32CuDNN(false);
		at::globalContext().setAllowTF32CuBLAS(false);
		at::globalContext().setBenchmarkCuDNN(true);
	}
	to(device);
	// fp16 and bf16: the frozen batch norms of the trunk go into its convolutions, computed in
	// float before the weights are rounded (fp32 keeps the separate scale, so that it computes
	// what torchvision computes).
	if (reduced && parts_->backbone->resnet)
		detail::fold_frozen_batch_norm(*parts_->backbone->resnet);
	if (reduced && parts_->backbone->mobilenet)
		detail::fold_frozen_batch_norm(*parts_->backbone->mobilenet);
	for (auto &t : parameters()) {
		if (reduced)
			t.set_data(t.to(dtype));
		if (channels_last && t.dim() == 4)
			t.set_data(t.contiguous(torch::MemoryFormat::ChannelsLast));
	}
	// Only the floating-point buffers, as torch.nn.Module.half(): BatchNorm2d's
	// num_batches_tracked stays an integer.
	for (auto &t : buffers())
		if (reduced && t.is_floating_point())
			t.set_data(t.to(dtype));
	for (auto *bn : frozen_norms(*this)) {
		if (reduced)
			bn->cast_prepared(dtype);
		bn->prepare();
	}
	channels_last_ = channels_last;
	int8_ = precision == Precision::Int8;
	int8_calibration_.reset();
	// A oneDNN plan holds the weights as they were, in their dtype: made anew from these (cast
	// in place, they keep their version counters, so the plan would not know it is stale).
	// 8 bits run on it only.
	if (onednn_ || int8_)
		set_cpu_convolutions(CpuConvolutions::OneDnn);
}

void FasterRCNNImpl::set_int8_calibration(const Int8Calibration &calibration)
{
	if (!int8_)
		throw Error("an 8-bit calibration is for a model in precision int8 (to_device)");
	if (calibration.arch != config_.arch)
		throw Error("the 8-bit calibration was made for " + calibration.arch + ", not " + config_.arch);
	refresh_onednn(); // the checksum of the weights as they are now
	if (calibration.weights_crc32 != int8_weights_crc32_)
		throw Error("the 8-bit calibration was made for other weights (CRC-32 " +
			    std::to_string(calibration.weights_crc32) + ", these " + std::to_string(int8_weights_crc32_) + ")");
	auto previous = int8_calibration_;
	int8_calibration_ = std::make_shared<const Int8Calibration>(calibration);
	drop_onednn();
	try {
		refresh_onednn();
	} catch (...) {
		// As it was: still observing, or on the calibration before.
		int8_calibration_ = previous;
		drop_onednn();
		refresh_onednn();
		throw;
	}
}

Int8Calibration FasterRCNNImpl::int8_observed() const
{
	Int8Calibration observed;
	observed.arch = config_.arch;
	observed.weights_crc32 = int8_weights_crc32_;
	observed.frames = int8_frames_observed_;
	const auto &plan = parts_->backbone->onednn;
	if (int8_ && plan && !plan->int8())
		observed.ranges = plan->observed_ranges();
	return observed;
}

uint32_t FasterRCNNImpl::weights_checksum() const
{
	uLong crc = crc32(0L, Z_NULL, 0);
	for (const auto &[name, tensor] : state_dict()) {
		if (!tensor.is_floating_point())
			continue;
		const auto values = tensor.detach().to(torch::kCPU, torch::kFloat).contiguous();
		crc = crc32_z(crc, static_cast<const Bytef *>(values.data_ptr()), (z_size_t)values.nbytes());
	}
	return (uint32_t)crc;
}

bool FasterRCNNImpl::int8_calibrated() const
{
	const auto &plan = parts_->backbone->onednn;
	return int8_ && plan && plan->int8();
}

namespace {

// The box head when it is convolutional (fasterrcnn_resnet50_fpn_v2's), else null.
detail::ConvFCHeadImpl *conv_fc_head(detail::RoIHeadsImpl &heads)
{
	return dynamic_cast<detail::ConvFCHeadImpl *>(heads.box_head.ptr().get());
}

// The box head when it is torchvision's TwoMLPHead, else null.
detail::TwoMLPHeadImpl *mlp_head(detail::RoIHeadsImpl &heads)
{
	return dynamic_cast<detail::TwoMLPHeadImpl *>(heads.box_head.ptr().get());
}

} // namespace

void FasterRCNNImpl::set_cpu_convolutions(CpuConvolutions kind)
{
	const std::string unsupported = detail::onednn_unsupported_reason(config_);
	if (kind == CpuConvolutions::OneDnn && !unsupported.empty())
		throw SettingsError("cpu-convolutions=onednn: " + unsupported + "; use libtorch or auto");
	if (int8_ && kind == CpuConvolutions::LibTorch)
		throw SettingsError("precision int8 runs on the oneDNN convolutions: set cpu-convolutions to onednn or auto");
	// Auto: where it pays (docs/performance.md); always for 8 bits.
	onednn_ = int8_ || kind == CpuConvolutions::OneDnn ||
		  (kind == CpuConvolutions::Auto && detail::onednn_pays(config_));
	drop_onednn();
	refresh_onednn();
}

void FasterRCNNImpl::drop_onednn()
{
	// Every holder lets go: the plan's memory (its copies of the weights, hundreds of MB) is
	// freed before a new one is made.
	parts_->backbone->onednn.reset();
	parts_->rpn->head->onednn.reset();
	if (auto *box_head = conv_fc_head(*parts_->roi_heads))
		box_head->onednn.reset();
	if (auto *head = mlp_head(*parts_->roi_heads))
		head->onednn.reset();
}

CpuConvolutions FasterRCNNImpl::cpu_convolutions() const
{
	return onednn_ ? CpuConvolutions::OneDnn : CpuConvolutions::LibTorch;
}

void FasterRCNNImpl::refresh_onednn()
{
	auto &plan = parts_->backbone->onednn;
	if (!onednn_ || (plan && plan->current()))
		return;
	drop_onednn();
	// The plan holds copies of the weights on the CPU, in float or bfloat16 (a bf16 model); a
	// model elsewhere or in another dtype does not use it (OneDnnPlan::accepts), and it is made
	// when the model comes back.
	const torch::Tensor reference = parts_->backbone->parameters().front();
	auto *box_head = conv_fc_head(*parts_->roi_heads);
	const auto dtype = reference.scalar_type();
	// TwoMLPHead's linear layers go through the plan in int8 and in float (oneDNN's matmul,
	// about twice LibTorch's speed on OpenBLAS); a bfloat16 model's stay LibTorch's.
	auto *linear_head = int8_ || dtype == torch::kFloat ? mlp_head(*parts_->roi_heads) : nullptr;
	if (!reference.device().is_cpu() || (dtype != torch::kFloat && dtype != torch::kBFloat16)) {
		plan.reset();
		parts_->rpn->head->onednn.reset();
		if (box_head)
			box_head->onednn.reset();
		if (auto *head = mlp_head(*parts_->roi_heads))
			head->onednn.reset();
		return;
	}
	// 8 bits: on the calibration, else a float plan that observes the ranges for one (anew
	// with every new plan: new weights make new ranges, and a calibration of the weights
	// before is dropped).
	if (int8_) {
		int8_weights_crc32_ = weights_checksum();
		if (int8_calibration_ && int8_calibration_->weights_crc32 != int8_weights_crc32_)
			int8_calibration_.reset();
	}
	const bool int8 = int8_ && int8_calibration_;
	try {
		plan = std::make_shared<detail::OneDnnPlan>(*parts_->backbone, *parts_->rpn->head, box_head,
							    int8 ? &int8_calibration_->ranges : nullptr, linear_head);
	} catch (const c10::Error &e) {
		throw Error(std::string("could not prepare the oneDNN convolutions: ") + e.what_without_backtrace());
	}
	if (int8_ && !int8) {
		plan->set_observing(true);
		int8_frames_observed_ = 0;
	}
	parts_->rpn->head->onednn = plan;
	if (box_head)
		box_head->onednn = plan;
	if (linear_head)
		linear_head->onednn = plan;
}

// --- state dict -------------------------------------------------------------------------------

StateDict FasterRCNNImpl::state_dict() const
{
	// Module by module, parameters then buffers: the order of torch.nn.Module.state_dict().
	StateDict out;
	for (const auto &m : named_modules("", /*include_self=*/true)) {
		const std::string prefix = m.key().empty() ? "" : m.key() + ".";
		for (const auto &p : m.value()->named_parameters(false))
			out.emplace_back(prefix + p.key(), p.value());
		for (const auto &b : m.value()->named_buffers(false))
			out.emplace_back(prefix + b.key(), b.value());
	}
	return out;
}

namespace {

// torchvision >= 0.13 renames the keys of checkpoints saved by older versions (module version
// missing or < 2) in FeaturePyramidNetwork and RPNHead's _load_from_state_dict.
std::string upgrade_key(const std::string &key, const std::map<std::string, int64_t> &versions)
{
	auto old_version = [&](const std::string &module) {
		auto it = versions.find(module);
		return it == versions.end() || it->second < 2;
	};
	static const std::regex fpn_old(R"(^(.*fpn\.(?:inner_blocks|layer_blocks)\.\d+)\.(weight|bias)$)");
	static const std::regex rpn_old(R"(^(.*rpn\.head\.conv)\.(weight|bias)$)");
	std::smatch m;
	if (std::regex_match(key, m, fpn_old)) {
		const std::string module = m[1].str().substr(0, m[1].str().rfind(".fpn.") + 4);
		if (old_version(module))
			return m[1].str() + ".0." + m[2].str();
	}
	if (std::regex_match(key, m, rpn_old)) {
		const std::string module = m[1].str().substr(0, m[1].str().size() - 5);
		if (old_version(module))
			return m[1].str() + ".0.0." + m[2].str();
	}
	return key;
}

std::string join_some(const std::vector<std::string> &names, size_t limit = 8)
{
	std::string s;
	for (size_t i = 0; i < names.size() && i < limit; i++)
		s += (i ? ", " : "") + names[i];
	if (names.size() > limit)
		s += ", ... (" + std::to_string(names.size() - limit) + " more)";
	return s;
}

// How a checkpoint's tensors fit a model's state dict: those that fit (by the model's names), and
// the keys that are not the model's, of another shape, or missing from the checkpoint.
struct KeyFit {
	std::map<std::string, torch::Tensor> fitting;
	std::vector<std::string> unexpected, mismatched, missing;

	std::size_t differences() const { return unexpected.size() + mismatched.size() + missing.size(); }
	// "wrong shapes: ...; missing: ...; unexpected: ..." (those there are), a few of each.
	std::string describe() const
	{
		std::vector<std::string> parts;
		if (!mismatched.empty())
			parts.push_back("wrong shapes: " + join_some(mismatched, 4));
		if (!missing.empty())
			parts.push_back("missing: " + join_some(missing));
		if (!unexpected.empty())
			parts.push_back("unexpected: " + join_some(unexpected));
		std::string text;
		for (const std::string &part : parts)
			text += (text.empty() ? "" : "; ") + part;
		return text;
	}
};

KeyFit fit_keys(FasterRCNNImpl &model, const Checkpoint &checkpoint)
{
	std::map<std::string, torch::Tensor> own;
	for (auto &entry : model.state_dict())
		own.emplace(entry.first, entry.second);
	KeyFit fit;
	std::set<std::string> mismatched_keys;
	for (const auto &entry : checkpoint.tensors) {
		const std::string key = upgrade_key(entry.first, checkpoint.module_versions);
		auto it = own.find(key);
		if (it == own.end()) {
			// FrozenBatchNorm2d drops num_batches_tracked, as torchvision's does.
			if (key.size() > 20 && key.compare(key.size() - 20, 20, ".num_batches_tracked") == 0 &&
			    own.count(key.substr(0, key.size() - 20) + ".running_mean"))
				continue;
			fit.unexpected.push_back(entry.first);
			continue;
		}
		if (it->second.sizes() != entry.second.sizes()) {
			fit.mismatched.push_back(key + " (checkpoint " + c10::str(entry.second.sizes()) + ", model " +
						 c10::str(it->second.sizes()) + ")");
			mismatched_keys.insert(key);
			continue;
		}
		fit.fitting[key] = entry.second;
	}
	for (const auto &entry : own)
		if (!fit.fitting.count(entry.first) && !mismatched_keys.count(entry.first))
			fit.missing.push_back(entry.first);
	return fit;
}

// The model a checkpoint holds, in words ("model 'tiny' with num_classes 4"), or empty when it is
// none the library knows: what a user should choose when the weights do not fit.
std::string checkpoint_model(const StateDict &tensors)
{
	std::string arch;
	try {
		arch = detect_arch(tensors);
	} catch (const Error &) {
		return "";
	}
	std::string words = "model '" + arch + "'";
	if (arch == "fasterrcnn_mobilenet_v3_large_fpn")
		words += " (or 'fasterrcnn_mobilenet_v3_large_320_fpn': the weights are the same)";
	const int classes = detect_num_classes(tensors);
	if (classes > 0)
		words += " with num_classes " + std::to_string(classes);
	return words;
}

} // namespace

namespace {

// Refuses weights that would run without a word to no detections or made-up ones: values that
// are not finite, batch-norm variances below 0 (whose square root is not a number). Names the
// first tensor and counts the others.
void check_runnable(const std::map<std::string, torch::Tensor> &tensors)
{
	torch::NoGradGuard no_grad;
	std::string first;
	int64_t first_bad = 0, first_size = 0;
	int others = 0;
	const char *what = "";
	for (const auto &[name, tensor] : tensors) {
		if (!tensor.is_floating_point() || tensor.numel() == 0)
			continue;
		const bool variance = name.size() >= 12 && name.compare(name.size() - 12, 12, ".running_var") == 0;
		// The smallest and largest values tell a sound tensor in one pass that allocates
		// nothing (NaN comes out as either): counting the elements of a boolean mask took most of
		// a 160 MB checkpoint's load. Only a damaged tensor is counted, for the message.
		const auto [lowest, highest] = torch::aminmax(tensor);
		const double low = lowest.item<double>(), high = highest.item<double>();
		if (std::isfinite(low) && std::isfinite(high) && (!variance || low >= 0))
			continue;
		const int64_t not_finite = tensor.numel() - torch::isfinite(tensor).sum().item<int64_t>();
		const int64_t negative = variance ? (tensor < 0).sum().item<int64_t>() : 0;
		if (not_finite == 0 && negative == 0)
			continue;
		if (!first.empty()) {
			others++;
			continue;
		}
		first = name;
		first_bad = not_finite ? not_finite : negative;
		first_size = tensor.numel();
		what = not_finite ? "values that are not finite (NaN or infinity)" : "batch-norm variances below 0";
	}
	if (first.empty())
		return;
	throw DamagedWeightsError("the weights hold " + std::string(what) + ": '" + first + "' has " +
				  std::to_string(first_bad) + " of " + std::to_string(first_size) +
				  (others ? " (" + std::to_string(others) + " other tensor" + (others > 1 ? "s are" : " is") +
						    " damaged too)"
					  : std::string()) +
				  "; the checkpoint is damaged or comes from a training that diverged");
}

} // namespace

void FasterRCNNImpl::load_state_dict(const Checkpoint &checkpoint)
{
	// New statistics (and unfolded weights): scales cached by to_device() no longer hold.
	for (auto *bn : frozen_norms(*this))
		bn->unprepare();
	const KeyFit fit = fit_keys(*this, checkpoint);
	if (fit.differences() > 0) {
		std::string msg = "the weights do not fit model '" + config_.arch + "' with num_classes " +
				  std::to_string(config_.num_classes) + ": " + fit.describe() + ";";
		const std::string held = checkpoint_model(checkpoint.tensors);
		if (!held.empty())
			msg += " the checkpoint holds " + held + ";";
		msg += " choose the model and number of classes the checkpoint was trained with";
		throw WeightsMismatchError(msg);
	}

	std::map<std::string, torch::Tensor> own;
	for (auto &entry : state_dict())
		own.emplace(entry.first, entry.second);
	torch::NoGradGuard no_grad;
	/* Checked as the model takes them: a float64 value beyond float's range is not finite there. */
	std::map<std::string, torch::Tensor> taken;
	for (auto &entry : fit.fitting) {
		const auto &dst = own.at(entry.first);
		taken.emplace(entry.first, entry.second.to(dst.device(), dst.scalar_type()));
	}
	check_runnable(taken);
	for (auto &entry : taken)
		own.at(entry.first).copy_(entry.second);
}

// --- architecture of a checkpoint -------------------------------------------------------------

int detect_num_classes(const StateDict &state_dict)
{
	// A classifier of [classes, features], both > 0 (a tensor of no features would have any
	// number of rows in a few bytes), and no more classes than a model is built for: a checkpoint
	// that says otherwise is not trusted to size the model before its weights are checked.
	for (const auto &[name, tensor] : state_dict)
		if (name == "roi_heads.box_predictor.cls_score.weight" && tensor.dim() == 2 && tensor.size(1) > 0 &&
		    tensor.size(0) > 0 && tensor.size(0) <= kMostClasses)
			return (int)tensor.size(0);
	return -1;
}

std::string detect_arch(const StateDict &state_dict)
{
	std::map<std::string, std::vector<int64_t>> shapes;
	for (const auto &entry : state_dict)
		shapes.emplace(entry.first, entry.second.sizes().vec());
	auto has = [&](const std::string &key) { return shapes.count(key) != 0; };
	// The output channels of a convolution's weight [O, I, kh, kw] (-1 for a tensor of another
	// shape: then no known model).
	auto out_channels = [&](const std::string &key) -> int64_t {
		const std::vector<int64_t> &shape = shapes.at(key);
		return shape.size() == 4 ? shape[0] : -1;
	};
	auto blocks = [&](const std::string &layer) {
		int n = 0;
		while (has("backbone.body." + layer + "." + std::to_string(n) + ".conv1.weight"))
			n++;
		return n;
	};

	std::string reason;
	if (has("backbone.body.layer1.0.conv1.weight") && has("backbone.body.conv1.weight")) {
		const bool bottleneck = has("backbone.body.layer1.0.conv3.weight");
		const std::vector<int> counts{blocks("layer1"), blocks("layer2"), blocks("layer3"), blocks("layer4")};
		const int64_t stem = out_channels("backbone.body.conv1.weight");
		// v2 is told by its conv box head and normalised FPN, not by num_batches_tracked: a v1
		// model trained with BatchNorm2d has those too, and they load into FrozenBatchNorm2d.
		const bool v2 = has("roi_heads.box_head.0.0.weight") || has("backbone.fpn.inner_blocks.0.1.weight");
		if (bottleneck && counts == std::vector<int>{3, 4, 6, 3} && stem == 64)
			return v2 ? "fasterrcnn_resnet50_fpn_v2" : "fasterrcnn_resnet50_fpn";
		if (!bottleneck && !v2 && counts == std::vector<int>{2, 2, 2, 2} && stem == model_preset("tiny").stem_width)
			return "tiny";
		std::ostringstream r;
		r << "a ResNet with " << (bottleneck ? "Bottleneck" : "BasicBlock") << " blocks [" << counts[0] << ", "
		  << counts[1] << ", " << counts[2] << ", " << counts[3] << "], stem width " << stem
		  << (v2 ? ", normalised FPN/box head" : "");
		reason = r.str();
	} else if (has("backbone.body.0.0.weight") && has("backbone.body.1.block.0.0.weight")) {
		if (has("backbone.body.16.0.weight") && !has("backbone.body.17.0.weight") &&
		    out_channels("backbone.body.16.0.weight") == 960)
			return "fasterrcnn_mobilenet_v3_large_fpn";
		reason = "a MobileNet-like backbone that is not MobileNetV3-Large";
	} else {
		std::set<std::string> prefixes;
		for (const auto &entry : state_dict) {
			// The first two components of each key ("backbone.body", "rpn.head", ...).
			const auto &k = entry.first;
			const size_t dot = k.find('.');
			const size_t second = dot == std::string::npos ? dot : k.find('.', dot + 1);
			prefixes.insert(k.substr(0, second));
		}
		std::vector<std::string> list(prefixes.begin(), prefixes.end());
		reason = "keys under " + (list.empty() ? std::string("(none)") : join_some(list));
	}
	std::string first;
	for (size_t i = 0; i < state_dict.size() && i < 3; i++)
		first += (i ? ", " : "") + state_dict[i].first;
	throw Error("cannot tell which model the checkpoint is for: its " + std::to_string(state_dict.size()) +
		    " tensors (" + (first.empty() ? "none" : first + ", ...") + ") are " + reason +
		    ", which fits none of the models (" +
		    "fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn, tiny); "
		    "name the model explicitly");
}

std::string nearest_model(const Checkpoint &checkpoint)
{
	// A predictor of more classes than a dataset has is not built four times for a message (a
	// ResNet-50's of 100000 classes takes 2 GB): the default one's shapes then differ.
	int classes = detect_num_classes(checkpoint.tensors);
	if (classes > 1000)
		classes = -1;
	std::string nearest;
	KeyFit nearest_fit;
	std::size_t nearest_keys = 0;
	try {
		for (const std::string &name : model_preset_names()) {
			if (name == "fasterrcnn_mobilenet_v3_large_320_fpn")
				continue; // the parameters of fasterrcnn_mobilenet_v3_large_fpn
			ModelConfig config = model_preset(name);
			if (classes > 0)
				config.num_classes = classes;
			FasterRCNN model(config);
			KeyFit fit = fit_keys(*model, checkpoint);
			if (nearest.empty() || fit.differences() < nearest_fit.differences()) {
				nearest = name;
				nearest_keys = model->state_dict().size();
				nearest_fit = std::move(fit);
			}
		}
	} catch (const std::exception &) {
		return ""; // for a message: the error it adds to stays as it is (memory short, say)
	}
	// Near: most of the model's tensors are there, of their shapes.
	if (nearest.empty() || nearest_fit.differences() * 4 > nearest_keys)
		return "";
	return "model '" + nearest + "'" + (classes > 0 ? " with num_classes " + std::to_string(classes) : "") +
	       " (" + nearest_fit.describe() + ")";
}

} // namespace frcnn

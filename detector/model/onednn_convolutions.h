// SPDX-License-Identifier: BSD-3-Clause
// The convolutions of a ResNet-FPN model on the CPU as oneDNN primitives (the `onednn` CPU
// convolutions of DetectorOptions): each batch norm (frozen, or BatchNorm2d as it computes in eval
// mode) folded into the convolution before
// it, ReLU and the residual and top-down additions fused into the convolution that precedes
// them, 3x3 stride-1 convolutions by Winograd's F(4x4, 3x3), activations channels-last. The
// same model as LibTorch's operators compute, in another order of arithmetic: outputs differ in
// the last bits of single precision (tests/detector/test_onednn.cpp measures by how much).
//
// A plan is built from the model's weights as they are and copies them (folded and reordered
// for oneDNN). An 8-bit plan (Precision::Int8) quantizes them per output channel and the input
// of each convolution it quantizes by a scale fixed from a calibrated range (the largest
// absolute value its input took on calibration frames, which a float plan observes). It keeps the identity and version of every tensor it read, so that the model can
// tell when the weights changed underneath it (training, load_state_dict) and build it anew.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "frcnn/config.h"

namespace frcnn::detail {

struct BackboneImpl;
struct ConvFCHeadImpl;
struct MobileNetV3BodyImpl;
struct ResNetBodyImpl;
struct RPNHeadImpl;
struct TwoMLPHeadImpl;

// Whether this build has oneDNN (libdnnl).
bool onednn_built();

// Why the oneDNN convolutions cannot run this model (empty when they can): they cover the
// ResNet-FPN models (fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, tiny) and the
// MobileNetV3-Large ones (fasterrcnn_mobilenet_v3_large_fpn, _320_fpn).
std::string onednn_unsupported_reason(const ModelConfig &config);

// The fewest channels with which the FPN's output convolutions and the RPN head's take
// Winograd (the trunk's need 128): Winograd's rounding passes through no more than a layer or
// two after them.
constexpr int64_t kWinogradMinChannelsAfterTrunk = 64;

// Whether this CPU has oneDNN's Winograd convolutions (AVX-512).
bool onednn_has_winograd();

// Whether the oneDNN convolutions run a model they cover faster than LibTorch's (what `auto`
// picks): MobileNetV3 on any CPU; the ResNet models where their FPN and RPN head take
// Winograd. With 256 FPN channels (fasterrcnn_resnet50_fpn, v2) they gain on any CPU (the
// folded batch norms and fused epilogues in the trunk too); the tiny model's 64 gain only with
// Winograd.
bool onednn_pays(const ModelConfig &config);

class OneDnnConvolution;
class OneDnnLinear;
class OneDnnWorkspace;

// The memory the convolutions' outputs take from (OneDnnPlan::output_memory).
struct OneDnnOutputMemory {
	size_t blocks_made = 0;	 // allocated so far
	size_t blocks_kept = 0;	 // free, kept for the next batches
	size_t bytes_kept = 0;
};

// The calibrated input ranges of an 8-bit plan's convolutions, by the name of the convolution
// in the state dict (e.g. "backbone.body.layer1.0.conv2").
using Int8Ranges = std::map<std::string, float>;

// The backbone (trunk and FPN), the RPN head and, where the model has one, the convolutional box
// head (fasterrcnn_resnet50_fpn_v2's FastRCNNConvFCHead) of one model. The trunk is a ResNet or
// MobileNetV3-Large (its squeeze-and-excitation layers stay LibTorch's: a few hundred values
// per image).
class OneDnnPlan {
public:
	// Reads the current weights of `backbone`, `rpn_head` and `box_head` (when given) (on the
	// CPU, float or bfloat16: the convolutions then run in that type). With `int8_ranges`
	// (float weights only), the convolutions that quantized_names() lists run in 8 bits, each
	// input scaled by its range. The linear layers of the box head (`box_head`'s, or
	// `mlp_head`'s when given) are in the plan too (box_head_linear). Throws frcnn::Error when
	// the build has no oneDNN, the model is not covered or a range is missing.
	OneDnnPlan(BackboneImpl &backbone, RPNHeadImpl &rpn_head, ConvFCHeadImpl *box_head = nullptr,
		   const Int8Ranges *int8_ranges = nullptr, TwoMLPHeadImpl *mlp_head = nullptr);
	~OneDnnPlan();
	OneDnnPlan(const OneDnnPlan &) = delete;
	OneDnnPlan &operator=(const OneDnnPlan &) = delete;

	// Whether a batch can take this path: on the CPU, four dimensions, of the type of the
	// weights the plan was built from.
	bool accepts(const torch::Tensor &batch) const;
	// Whether the weights it was built from are still the model's (same tensors, unmodified).
	bool current() const;
	// oneDNN's names of the kernels its convolutions run (e.g. "jit_wino_4x3:avx512_core"),
	// with how many convolutions run each, for the input sizes seen so far.
	std::map<std::string, int> implementations() const;

	// BackboneImpl::forward: the feature maps, then 'pool' (channels-last tensors).
	std::vector<torch::Tensor> backbone(const torch::Tensor &batch);
	// RPNHeadImpl::forward: objectness logits and box deltas per feature map.
	std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
	rpn_head(const std::vector<torch::Tensor> &features);
	// The outputs of the convolutions (all but the smallest) take blocks of memory that are
	// kept for the next batches when they are let go, and freed when no batch took them for
	// two batches: after the first batch of a size, batches of that size allocate nothing.
	OneDnnOutputMemory output_memory() const;
	// The layers an 8-bit plan quantizes: the convolutions of a ResNet trunk's blocks, the
	// FPN, the RPN head's shared convolution(s) and the v2 box head, and the box head's linear
	// layers before the predictor; the stem (3 input channels, little of the work), the RPN's
	// objectness and box outputs and the predictor (the precision of scores and box deltas)
	// stay float, and so does MobileNetV3's trunk (its depthwise convolutions read and write
	// more than they compute: 8 bits would save little but the memory of its weights, and its
	// squeeze-and-excitation scales sit between convolutions).
	std::vector<std::string> quantized_names() const;

	// How many of the box head's linear layers the plan has (2 for TwoMLPHead, 1 for the v2
	// head, 0 without a head), and layer `index` (0-based) with its ReLU on rows [R, K] of
	// float: in 8 bits in an 8-bit plan, else oneDNN's float matmul (LibTorch's linear layer for
	// no rows, or weights it cannot read in place) (observed while observing).
	size_t box_head_linears() const { return linears_.size(); }
	torch::Tensor box_head_linear(size_t index, const torch::Tensor &rows);
	// Whether its convolutions run in 8 bits.
	bool int8() const { return int8_; }
	// While observing (a float plan only), each convolution of quantized_names() keeps the
	// largest absolute value its input has taken since observing began; observed_ranges()
	// gives them (the ranges of an 8-bit plan). Handing on blocked outputs pauses meanwhile.
	void set_observing(bool observing);
	Int8Ranges observed_ranges() const;

	// Whether the plan has the box head's convolutions.
	bool has_box_head() const { return !box_head_.empty(); }
	// The convolutions of ConvFCHeadImpl::forward (each with its batch norm and ReLU) on the
	// pooled regions [R, C, 7, 7], R > 0; the flatten and the linear layer stay LibTorch's.
	torch::Tensor box_head(const torch::Tensor &pooled);

	// Whether consecutive convolutions hand their output on in Winograd's blocked layout where
	// both use it (the default), instead of reordering it to channels-last and back: the same
	// numbers either way (tests compare the two).
	void set_chaining(bool chaining) { chaining_ = chaining; }
	// How many outputs were handed on in the blocked layout so far.
	size_t chained_handoffs() const { return handoffs_; }

private:
	struct Block;	     // one ResNet block
	struct MobileLayer; // one layer of MobileNetV3's features
	void build(BackboneImpl &backbone, RPNHeadImpl &rpn_head, ConvFCHeadImpl *box_head,
		   const Int8Ranges *int8_ranges, TwoMLPHeadImpl *mlp_head);
	// The trunk's convolutions (build's parts): a ResNet's (in 8 bits with `int8_ranges`), or
	// MobileNetV3's (float only).
	void build_resnet(ResNetBodyImpl &body, const Int8Ranges *int8_ranges);
	void build_mobilenet(MobileNetV3BodyImpl &body);
	// The convolutions of quantized_names(), in that order.
	std::vector<OneDnnConvolution *> quantized() const;
	bool int8_ = false;
	bool observing_ = false;
	std::vector<torch::Tensor> run_backbone(const torch::Tensor &batch);
	// The trunk's stages the FPN reads.
	std::vector<torch::Tensor> run_resnet(const torch::Tensor &batch);
	std::vector<torch::Tensor> run_mobilenet(const torch::Tensor &batch);
	std::vector<torch::Tensor> run_fpn(const std::vector<torch::Tensor> &stages);
	// The convolutions of the trunk, the FPN and the heads.
	std::vector<OneDnnConvolution *> convolutions() const;
	std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
	run_rpn_head(const std::vector<torch::Tensor> &features);
	// Runs consecutive convolutions without addends on x.
	torch::Tensor chain(std::vector<std::unique_ptr<OneDnnConvolution>> &convs, torch::Tensor x);
	// Memory for a blocked output handed to the next convolution (two, used in turn).
	void *chain_buffer(int index, size_t bytes);
	std::shared_ptr<OneDnnWorkspace> workspace_;
	torch::ScalarType dtype_ = torch::kFloat; // of the weights, activations and input
	std::unique_ptr<OneDnnConvolution> stem_; // ResNet's
	std::vector<std::vector<Block>> layers_;
	std::vector<MobileLayer> mobile_; // MobileNetV3's features
	std::vector<std::unique_ptr<OneDnnConvolution>> fpn_inner_, fpn_layer_, rpn_conv_;
	std::unique_ptr<OneDnnConvolution> rpn_cls_, rpn_bbox_;
	std::vector<std::unique_ptr<OneDnnConvolution>> box_head_;
	std::vector<std::unique_ptr<OneDnnLinear>> linears_;
	bool chaining_ = true;
	size_t handoffs_ = 0;
	std::mutex chain_mutex_;
	torch::Tensor chain_buffers_[2];
	// The tensors the weights came from, with their version counters at that time.
	std::vector<std::pair<torch::Tensor, int64_t>> sources_;
};

} // namespace frcnn::detail

// SPDX-License-Identifier: BSD-3-Clause
// The modules a Faster R-CNN is made of. Each registers its children under torchvision's names, so
// that the state-dict keys of the assembled model are torchvision's.
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "../ops/cuda/launch.h"
#include "frcnn/config.h"
#include "frcnn/detector.h"
#include "frcnn/model.h"

namespace frcnn::detail {

class OneDnnPlan; // onednn_convolutions.h

// (height, width) of an image.
using ImageSize = std::pair<int64_t, int64_t>;

// The dtype in which boxes, anchors and scores derived from a tensor are computed: its own, but
// float for half and bfloat16 (an fp16 or bf16 model runs its convolutions and linear layers in
// that precision, its box geometry in float, where half would round coordinates above 1024 to
// whole pixels, and bfloat16 those above 256).
inline torch::ScalarType geometry_dtype(const torch::Tensor &t)
{
	const auto type = t.scalar_type();
	return type == torch::kHalf || type == torch::kBFloat16 ? torch::kFloat : type;
}

// Throws frcnn::Error when `precision` cannot run on `device`: fp16 off CUDA, bf16 off the CPU
// or on a CPU without bfloat16 instructions.
void check_precision(torch::Device device, Precision precision);

// A small host tensor on `device` without waiting for it: to a CUDA device through pinned memory
// and a non-blocking copy (LibTorch's host allocator keeps the pinned block until the copy has
// run), where a blocking copy first waits for every kernel queued before it.
torch::Tensor to_device_without_waiting(const torch::Tensor &host, torch::Device device);
// A few integers from the host as an int64 tensor on `device`, the same way.
torch::Tensor host_integers_to(const std::vector<int64_t> &values, torch::Device device);
// For rows that hold rows_per_image[0] rows of image 0, then those of image 1, and so on: the
// image of each row (int64 on `device`), made on the host and sent the same way.
torch::Tensor image_of_each_row(const std::vector<int64_t> &rows_per_image, torch::Device device);
// The heights and the widths of `sizes` as two tensors [N] of `dtype` on `device`, the same way.
std::pair<torch::Tensor, torch::Tensor> image_size_tensors(const std::vector<ImageSize> &sizes,
							  torch::Device device, torch::ScalarType dtype);

// How many times each of 0..n-1 occurs in `values` (int64, within that range): bincount with
// minlength n, which on CUDA first reads the largest and smallest value back (two waits for the
// device); this counts on the device without reading anything back.
torch::Tensor count_values(const torch::Tensor &values, int64_t n);

// clip_boxes_to_image with a size per box: heights and widths (in the boxes' dtype) broadcast
// against boxes[..., 0]. The same values as clamp(0, size).
torch::Tensor clip_boxes_to_sizes(const torch::Tensor &boxes, const torch::Tensor &heights,
				  const torch::Tensor &widths);

// torchvision.ops.FrozenBatchNorm2d: batch norm with fixed statistics, all four tensors buffers.
struct FrozenBatchNorm2dImpl : torch::nn::Module {
	FrozenBatchNorm2dImpl(int64_t channels, double eps);
	torch::Tensor forward(const torch::Tensor &x);

	torch::Tensor weight, bias, running_mean, running_var;
	double eps;
	// When set, forward() first takes running_mean and running_var from its input (a
	// data-dependent initialisation for training from scratch, where frozen statistics of 0
	// and 1 would leave the activations unnormalised).
	bool calibrate = false;

	// Inference on a device (FasterRCNNImpl::to_device). prepare() computes the scale and shift
	// once instead of at every forward (the same operations, so the same numbers).
	// fold_into() multiplies the scale into the preceding convolution's weights, after which
	// forward() only adds the shift: one pass over the activations instead of two, at the price
	// of a different rounding (used for fp16). unprepare() forgets both (new statistics).
	void prepare();
	void fold_into(torch::Tensor &conv_weight);
	void unprepare();
	bool folded() const { return folded_; }
	// (scale, shift) of forward() as [1, C, 1, 1] tensors, computed as forward() computes them
	// (scale is 1 when folded).
	std::pair<torch::Tensor, torch::Tensor> scale_and_shift() const;
	// The cached shift follows the model to another dtype (fp16).
	void cast_prepared(torch::ScalarType dtype);

private:
	torch::Tensor scale_, shift_;
	bool folded_ = false;
};
TORCH_MODULE(FrozenBatchNorm2d);

// Folds every FrozenBatchNorm2d of a ResNet or MobileNetV3 trunk that follows a convolution into
// it (see FrozenBatchNorm2dImpl::fold_into). Models with BatchNorm2d (v2) are left as they are.
void fold_frozen_batch_norm(torch::nn::Module &trunk);

// The normalisation layer config.norm asks for: FrozenBatchNorm2d (eps config.frozen_bn_eps) or
// torch::nn::BatchNorm2d (eps 1e-5, torchvision's default); its keys are those of torchvision's.
torch::nn::AnyModule make_norm(const ModelConfig &config, int64_t channels);
// Whether the FPN and a conv_fc box head have normalisation layers (the v2 model).
bool norm_after_convs(const ModelConfig &config);

// One ResNet block, BasicBlock (ResNet-18/34) or Bottleneck (ResNet-50/101), stride on the 3x3
// convolution (ResNet v1.5) as torchvision.
struct ResNetBlockImpl : torch::nn::Module {
	ResNetBlockImpl(const ModelConfig &config, bool bottleneck, int64_t in_channels, int64_t planes,
			int64_t stride);
	torch::Tensor forward(const torch::Tensor &x);

	bool bottleneck;
	torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
	torch::nn::AnyModule bn1, bn2, bn3;
	torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(ResNetBlock);

// torchvision ResNet trunk without avgpool/fc, returning the outputs of layer1..layer4.
struct ResNetBodyImpl : torch::nn::Module {
	explicit ResNetBodyImpl(const ModelConfig &config);
	std::vector<torch::Tensor> forward(const torch::Tensor &x);
	std::vector<int64_t> out_channels() const { return out_channels_; }

	torch::nn::Conv2d conv1{nullptr};
	torch::nn::AnyModule bn1;
	std::vector<torch::nn::Sequential> layers;

private:
	std::vector<int64_t> out_channels_;
};
TORCH_MODULE(ResNetBody);

// Conv2dNormActivation: children "0" (convolution) and "1" (normalisation, if any), then the
// activation (no parameters, so no child).
enum class Activation { None, ReLU, Hardswish };

struct ConvNormActImpl : torch::nn::Module {
	ConvNormActImpl(const ModelConfig &config, int64_t in, int64_t out, int64_t kernel, int64_t stride,
			int64_t groups, bool norm, Activation activation);
	torch::Tensor forward(const torch::Tensor &x);

	torch::nn::Conv2d conv{nullptr};
	torch::nn::AnyModule norm;
	Activation activation;
};
TORCH_MODULE(ConvNormAct);

// torchvision.ops.SqueezeExcitation as MobileNetV3 uses it: fc1, ReLU, fc2, hardsigmoid.
struct SqueezeExcitationImpl : torch::nn::Module {
	SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels);
	torch::Tensor forward(const torch::Tensor &x);

	torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// MobileNetV3's InvertedResidual: `block` = [expand], depthwise, [SE], project.
struct InvertedResidualImpl : torch::nn::Module {
	struct Setting {
		int64_t in, kernel, expanded, out;
		bool se, hardswish;
		int64_t stride;
	};
	InvertedResidualImpl(const ModelConfig &config, const Setting &s);
	torch::Tensor forward(const torch::Tensor &x);

	torch::nn::Sequential block{nullptr};
	bool residual;
};
TORCH_MODULE(InvertedResidual);

// mobilenet_v3_large(...).features as _mobilenet_extractor uses it: children "0".."16", the
// outputs of 13 (160 channels) and 16 (960 channels) returned, both at stride 32.
struct MobileNetV3BodyImpl : torch::nn::Module {
	explicit MobileNetV3BodyImpl(const ModelConfig &config);
	std::vector<torch::Tensor> forward(const torch::Tensor &x);
	std::vector<int64_t> out_channels() const { return {160, 960}; }
	// The features whose outputs forward() returns.
	static std::vector<size_t> returned_indices() { return {13, 16}; }
	// Indices of the strided blocks with the first and last layer ([0, 2, 4, 7, 13, 16]): the
	// stages trainable_backbone_layers counts.
	std::vector<size_t> stage_indices() const { return stage_indices_; }

	std::vector<torch::nn::AnyModule> features;

private:
	std::vector<size_t> stage_indices_;
};
TORCH_MODULE(MobileNetV3Body);

// torchvision.ops.FeaturePyramidNetwork with LastLevelMaxPool ('pool' level); with `norm`, every
// convolution is bias-free and followed by the normalisation layer.
struct FeaturePyramidImpl : torch::nn::Module {
	FeaturePyramidImpl(const ModelConfig &config, const std::vector<int64_t> &in_channels, int64_t out_channels);
	// Returns one level per input, then 'pool'.
	std::vector<torch::Tensor> forward(const std::vector<torch::Tensor> &x);

	torch::nn::ModuleList inner_blocks{nullptr}, layer_blocks{nullptr};
};
TORCH_MODULE(FeaturePyramid);

// Feature maps the backbone returns before 'pool' (the ones RoI pooling uses): 4 for ResNet
// ('0'..'3'), 2 for MobileNetV3 ('0', '1').
size_t backbone_levels(const ModelConfig &config);

// BackboneWithFPN: `body` + `fpn`.
struct BackboneImpl : torch::nn::Module {
	explicit BackboneImpl(const ModelConfig &config);
	std::vector<torch::Tensor> forward(const torch::Tensor &x);

	ResNetBody resnet{nullptr};	    // registered as "body" when config.backbone is "resnet"
	MobileNetV3Body mobilenet{nullptr}; // ... or "mobilenet_v3_large"
	FeaturePyramid fpn{nullptr};
	// When set (FasterRCNNImpl::set_cpu_convolutions), eval-mode CPU float batches without
	// autograd run through oneDNN, as long as the plan's weights are still the model's.
	std::shared_ptr<OneDnnPlan> onednn;
};
TORCH_MODULE(Backbone);

// ---------------------------------------------------------------------------------------------
// Box coding (torchvision.models.detection._utils.BoxCoder).
struct BoxCoder {
	std::array<double, 4> weights;
	double clip;

	explicit BoxCoder(std::array<double, 4> w);
	// rel_codes [N, 4*K] against boxes [N,4] -> [N, K, 4]
	torch::Tensor decode(const torch::Tensor &rel_codes, const torch::Tensor &boxes) const;
	torch::Tensor encode(const torch::Tensor &reference_boxes, const torch::Tensor &proposals) const;
};

// anchor_utils.AnchorGenerator.
class AnchorGenerator {
public:
	AnchorGenerator(const std::vector<std::vector<double>> &sizes, const std::vector<double> &ratios);
	int64_t anchors_per_location(size_t level) const;
	// Anchors for one image of the padded batch, all levels concatenated.
	torch::Tensor grid_anchors(const std::vector<torch::Tensor> &features, int64_t batch_height,
				   int64_t batch_width) const;
	// Cell anchors of one level (float32, CPU), for tests.
	const torch::Tensor &cell_anchors(size_t level) const { return cell_anchors_[level]; }

private:
	std::vector<torch::Tensor> cell_anchors_;
};

struct RPNHeadImpl : torch::nn::Module {
	RPNHeadImpl(int64_t channels, int64_t num_anchors, int conv_depth);
	std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
	forward(const std::vector<torch::Tensor> &features);

	torch::nn::ModuleList conv{nullptr}; // of Sequential(conv3x3, ReLU)
	torch::nn::Conv2d cls_logits{nullptr}, bbox_pred{nullptr};
	std::shared_ptr<OneDnnPlan> onednn; // as BackboneImpl::onednn
};
TORCH_MODULE(RPNHead);

struct RPNOutput {
	std::vector<torch::Tensor> boxes;  // per image [K,4]
	std::vector<torch::Tensor> scores; // per image [K]
	std::map<std::string, torch::Tensor> losses;
};

struct RegionProposalNetworkImpl : torch::nn::Module {
	explicit RegionProposalNetworkImpl(const ModelConfig &config);
	RPNOutput forward(const torch::Tensor &batch, const std::vector<ImageSize> &image_sizes,
			  const std::vector<torch::Tensor> &features, const std::vector<Target> *targets);

	// filter_proposals after the top-k: per level candidates of each image (top_boxes [N,K,4]
	// decoded, probs [N,K] objectness after the sigmoid, levels [K]) to at most post_nms
	// proposals per image, by decreasing score.
	struct Proposals {
		std::vector<torch::Tensor> boxes, scores;
	};
	// torchvision's own sequence, image by image (the CPU path).
	Proposals filter_proposals(const torch::Tensor &top_boxes, const torch::Tensor &probs,
				   const torch::Tensor &levels, const std::vector<ImageSize> &image_sizes,
				   int64_t post_nms) const;
	// The same proposals for the whole batch with a single wait for the device (the CUDA path),
	// where the per-image sequence waits three times per image. Differences: equal scores are
	// ranked by index, and NMS always works per level on the boxes' own coordinates where
	// torchvision's batched_nms offsets sets of up to 1000 boxes on the CPU (5000 on CUDA).
	// `most_per_level`: the most candidates one level has (0: unknown, up to all of an
	// image's), which bounds the NMS's categories (see ops::detail::nms_mask_by_category_within).
	Proposals filter_proposals_batched(const torch::Tensor &top_boxes, const torch::Tensor &probs,
					   const torch::Tensor &levels, const std::vector<ImageSize> &image_sizes,
					   int64_t post_nms, int64_t most_per_level = 0) const;

	ModelConfig config;
	AnchorGenerator anchor_generator;
	BoxCoder box_coder;
	RPNHead head{nullptr};
	size_t num_levels; // feature maps the RPN runs on
};
TORCH_MODULE(RegionProposalNetwork);

// ---------------------------------------------------------------------------------------------
// poolers.MultiScaleRoIAlign over the first `num_levels` feature maps of batches padded to a
// multiple of `size_divisible`.
class MultiScaleRoIAlign {
public:
	MultiScaleRoIAlign(size_t num_levels, int64_t output_size, int64_t sampling_ratio, int size_divisible);
	torch::Tensor operator()(const std::vector<torch::Tensor> &features,
				 const std::vector<torch::Tensor> &proposals,
				 const std::vector<ImageSize> &image_sizes) const;
	// LevelMapper: level index (0-based from k_min) of each box.
	static torch::Tensor map_levels(const torch::Tensor &boxes, int64_t k_min, int64_t k_max);
	static double infer_scale(int64_t feature_size, int64_t image_size);

private:
	size_t num_levels_;
	int64_t output_size_;
	int64_t sampling_ratio_;
	int size_divisible_;
};

struct TwoMLPHeadImpl : torch::nn::Module {
	TwoMLPHeadImpl(int64_t in_features, int64_t representation);
	torch::Tensor forward(const torch::Tensor &x);
	torch::nn::Linear fc6{nullptr}, fc7{nullptr};
	// Set in precision int8 (FasterRCNNImpl::refresh_onednn): fc6 and fc7 run through the plan
	// (OneDnnPlan::box_head_linear) in eval mode, as BackboneImpl::onednn.
	std::shared_ptr<OneDnnPlan> onednn;
};
TORCH_MODULE(TwoMLPHead);

// FastRCNNConvFCHead: children "0".."n-1" ConvNormAct(3x3, ReLU), then (after the parameter-free
// Flatten at "n") the linear at "n+1", followed by ReLU.
struct ConvFCHeadImpl : torch::nn::Module {
	ConvFCHeadImpl(const ModelConfig &config, int64_t in_channels, int64_t resolution);
	torch::Tensor forward(const torch::Tensor &x);
	std::vector<ConvNormAct> convs;
	torch::nn::Linear fc{nullptr};
	std::shared_ptr<OneDnnPlan> onednn; // as BackboneImpl::onednn
};
TORCH_MODULE(ConvFCHead);

struct FastRCNNPredictorImpl : torch::nn::Module {
	FastRCNNPredictorImpl(int64_t in_features, int64_t num_classes);
	std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor &x);
	torch::nn::Linear cls_score{nullptr}, bbox_pred{nullptr};
};
TORCH_MODULE(FastRCNNPredictor);

struct RoIHeadsOutput {
	std::vector<Detections> detections; // in resized image coordinates
	std::map<std::string, torch::Tensor> losses;
};

struct RoIHeadsImpl : torch::nn::Module {
	explicit RoIHeadsImpl(const ModelConfig &config);
	RoIHeadsOutput forward(const std::vector<torch::Tensor> &features,
			       const std::vector<torch::Tensor> &proposals,
			       const std::vector<ImageSize> &image_sizes,
			       const std::vector<Target> *targets);
	// torchvision's postprocess_detections. On CUDA it runs as postprocess_batched.
	std::vector<Detections> postprocess(const torch::Tensor &class_logits,
					    const torch::Tensor &box_regression,
					    const std::vector<torch::Tensor> &proposals,
					    const std::vector<ImageSize> &image_sizes) const;
	// The same for all images at once: one score filter, one size filter and one NMS whose
	// categories are (image, class) pairs, instead of a round of each per image (each waits for
	// the GPU). The same detections, except that NMS always works on the boxes' own coordinates
	// where torchvision's batched_nms offsets small sets (IoUs may round differently).
	std::vector<Detections> postprocess_batched(const torch::Tensor &class_logits,
						    const torch::Tensor &box_regression,
						    const std::vector<torch::Tensor> &proposals,
						    const std::vector<ImageSize> &image_sizes) const;

	ModelConfig config;
	BoxCoder box_coder;
	MultiScaleRoIAlign box_roi_pool;
	torch::nn::AnyModule box_head; // TwoMLPHead or ConvFCHead, per config.box_head
	FastRCNNPredictor box_predictor{nullptr};
};
TORCH_MODULE(RoIHeads);

// ---------------------------------------------------------------------------------------------
// GeneralizedRCNNTransform.
// The memory of a held frame (Detector::copy_frame, hold_frame). A copy has `host` and, for a
// CUDA device, `device`; a frame held without a copy has only `owner`, the caller's object that
// keeps the view's bytes alive.
struct FrameMemory {
	torch::Tensor host;   // uint8, the frame's planes as copy_frame_bytes lays them out
	torch::Tensor device; // the same bytes on the model's CUDA device, or undefined
	std::shared_ptr<const void> owner;
};

// Where a batch's frames are on their way to a CUDA device (transform_frames_cuda), worked out
// on the host so that it can be checked anywhere. Frames to gather come first in the device
// buffer, so that the pinned staging buffer maps onto its start; a frame copied ahead into
// pinned memory keeps its own layout and goes to the device as one block; a frame copied ahead
// onto the device is read where it is. A plane is read at its offset from its frame's base.
struct FrameUploadPlan {
	enum class Source { Gathered, PinnedBlock, OnDevice };
	struct Plane {
		const uint8_t *source; // the plane in the frame's view
		int64_t bytes;	       // its rows at its stride, less the padding after the last row
		int64_t offset;	       // from the frame's base
		int64_t stride;
	};
	struct Frame {
		Source source = Source::Gathered;
		int64_t block_offset = 0; // the frame's base in the device buffer (not OnDevice)
		std::vector<Plane> planes;
	};
	int64_t gathered = 0; // bytes of the staging buffer: the start of the device buffer
	int64_t total = 0;    // bytes of the device buffer
	std::vector<Frame> frames;
};
// Throws frcnn::Error on a bad view, or a plane outside the memory given for its frame.
FrameUploadPlan plan_frame_upload(const std::vector<FrameView> &frames, const std::vector<FrameMemory> &frame_memory);

struct TransformedBatch {
	torch::Tensor batch;		   // [N,3,Hp,Wp], zero padded to a multiple of size_divisible
	std::vector<ImageSize> image_sizes; // resized sizes before padding
	std::vector<ImageSize> original_sizes;
	std::vector<Target> targets;	   // resized targets (training)
	double host_gather_ms = 0;	   // CUDA: host time spent gathering frame bytes into pinned memory
};

// (height, width) of the padded batch holding images of these resized sizes: the largest of
// each, rounded up to a multiple of config.size_divisible.
ImageSize padded_batch_size(const ModelConfig &config, const std::vector<ImageSize> &image_sizes);
ImageSize padded_batch_size(int size_divisible, const std::vector<ImageSize> &image_sizes);

// The resized (height, width) torchvision computes for an image of the given size; each side at
// least 1 (where torchvision's would be 0 and its resize fails).
ImageSize resized_size(int64_t height, int64_t width, double min_size, double max_size);
// The same for a frame of pixels of this shape: the size of the frame of square pixels a display
// shows (width * numerator / denominator wide), resized as torchvision resizes an image of that
// size (each side at least 1). Square pixels: the size above.
ImageSize resized_size(int64_t height, int64_t width, PixelAspectRatio pixel_aspect_ratio, double min_size,
		       double max_size);

// Which of `in` samples along one axis torch's bilinear resize (align_corners=false, to a size)
// reads to make `out`: a flag per sample. For each output index its two taps: floor of scale *
// (index + 0.5) - 0.5 (scale = in / out; clamped at 0) and the next one (the same at the end).
// The index is taken in double (LibTorch's CPU operator), in double from a float scale, rounded
// to float, and in float, each with the product and difference rounded apart and fused into one
// multiply-add (as a build may contract them), so that the flags cover what the operator reads
// whichever way it computes. Shrinking to less than half skips samples (to less than a third
// always).
std::vector<uint8_t> samples_read_by_resize(int64_t in, int64_t out);

// Memory the CPU pre-processing of one model reuses from batch to batch: the normalised frames,
// the resized images and the batch (a few MB each, which freshly allocated cost a page fault per
// 4 KiB at every frame). A buffer is reused only when nothing but this holds it (a batch kept by
// its caller is never written again); one batch at a time takes them (another one waiting for
// the lock allocates its own).
struct TransformBuffers {
	std::mutex mutex;
	std::vector<torch::Tensor> normalised, resized;
	torch::Tensor batch;
};

// Images [3,H,W] in 0..1 to the model's batch. `pixel_aspect_ratios`, when given, holds one per
// image (see resized_size); without, the pixels are square.
TransformedBatch transform_images(const ModelConfig &config, const std::vector<torch::Tensor> &images,
				  const std::vector<Target> *targets,
				  const std::vector<PixelAspectRatio> *pixel_aspect_ratios = nullptr);
// Raw frames to the model's batch on `device` in `dtype` (channels-last when asked): what
// frame_to_tensor, a cast to dtype and transform_images give. On a CUDA device the frame bytes
// go from pinned memory to the device on the current stream and one kernel per frame converts,
// normalises, resizes and pads (transform_frames_cuda); elsewhere the CPU path runs
// (transform_frames_cpu for float, in `buffers` when given).
// frame_memory, when given, holds for each frame nothing or the memory of its copy
// (copy_frame_memory; the view points into its host bytes): on CUDA a copy already on the device
// is read there, and one in pinned memory goes to the device as it is, without being gathered.
TransformedBatch transform_frames(const ModelConfig &config, const std::vector<FrameView> &frames,
				  torch::Device device, torch::ScalarType dtype, bool channels_last,
				  const std::vector<FrameMemory> &frame_memory = {},
				  TransformBuffers *buffers = nullptr);
// The CPU path of transform_frames for float: each frame converted and normalised in one pass
// (ops::detail::normalised_frame_cpu), then resized and padded as transform_images does: the
// same bits as frame_to_tensor and transform_images give. With `buffers`, in their memory.
TransformedBatch transform_frames_cpu(const ModelConfig &config, const std::vector<FrameView> &frames,
				      TransformBuffers *buffers = nullptr);
TransformedBatch transform_frames_cuda(const ModelConfig &config, const std::vector<FrameView> &frames,
				       torch::Device device, torch::ScalarType dtype,
				       const std::vector<FrameMemory> &frame_memory);
// How the CUDA pre-processing kernel is told of a frame (a valid view): its layout, colours and
// size, with the view's planes and strides (transform_frames_cuda puts the device's there).
cuda::FrameDesc describe_frame(const FrameView &frame);

// A frame's planes copied into one new byte tensor (page-locked when `pinned`), each plane at a
// multiple of 64 bytes with the frame's strides; *view is set to the frame in the copy.
// Throws frcnn::Error on a bad view or when the memory cannot be had.
torch::Tensor copy_frame_bytes(const FrameView &frame, bool pinned, FrameView *view);
// The same bytes, on a CUDA device, copied there on a stream of their own; returns when they
// are there (CUDA builds only).
torch::Tensor upload_frame_bytes_cuda(const torch::Tensor &host, torch::Device device);

// A frame copied ahead of its batch for `device` (Detector::copy_frame): its bytes on the host,
// where *view points (page-locked for a CUDA device), and for a CUDA device the same bytes
// already on it.
FrameMemory copy_frame_memory(const FrameView &frame, torch::Device device, FrameView *view);

// A batch's detections on the host, in one copy (one wait for the device): rows of box, score
// and label in float (a class index below 2^24 is exact), split back into frames.
std::vector<std::vector<Detection>> detections_to_host(const std::vector<Detections> &detections);

// Boxes from resized to original image coordinates.
torch::Tensor resize_boxes(const torch::Tensor &boxes, ImageSize from, ImageSize to);
// The same for the boxes of each image of a batch (float or double), in one product: rows of
// one tensor, split by image.
std::vector<torch::Tensor> resize_boxes(const std::vector<torch::Tensor> &boxes, const std::vector<ImageSize> &from,
					const std::vector<ImageSize> &to);
// A batch's detections (none in training) with their boxes from resized to original image
// coordinates, by the batch form above.
std::vector<Detections> boxes_to_original_sizes(std::vector<Detections> detections, const std::vector<ImageSize> &from,
						const std::vector<ImageSize> &to);

} // namespace frcnn::detail

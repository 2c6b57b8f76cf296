// SPDX-License-Identifier: BSD-3-Clause
// The Faster R-CNN model as a LibTorch module whose parameter names are torchvision's.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "frcnn/checkpoint.h"
#include "frcnn/config.h"

namespace frcnn {

// Detections of one image, in the pixels of the image given to forward().
struct Detections {
	torch::Tensor boxes;  // float [N,4] x1,y1,x2,y2
	torch::Tensor labels; // int64 [N]
	torch::Tensor scores; // float [N]
};

// Target of one image for training: boxes float [N,4] x1,y1,x2,y2 in input pixels, labels int64 [N].
struct Target {
	torch::Tensor boxes;
	torch::Tensor labels;
};

struct ForwardResult {
	std::vector<Detections> detections; // eval mode
	// Training mode: loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg.
	std::map<std::string, torch::Tensor> losses;
	// RPN output per image, in the resized (model input) coordinates.
	std::vector<torch::Tensor> proposals;
	// (height, width) of each resized image before padding.
	std::vector<std::pair<int64_t, int64_t>> image_sizes;
};

// The calibration of a model in 8 bits (Precision::Int8): for each convolution it quantizes
// (named as in the state dict, e.g. "backbone.body.layer1.0.conv2"), the largest absolute
// value its input took on the calibration frames; its input is then scaled so that this
// value is the largest 8-bit one.
struct Int8Calibration {
	std::string arch;	// the model's preset (ModelConfig::arch)
	// CRC-32 of the model's weights (FasterRCNNImpl::weights_checksum): ranges fit the
	// weights they were observed with only.
	uint32_t weights_crc32 = 0;
	int64_t frames = 0;	// how many frames (images) the ranges were taken from
	std::map<std::string, float> ranges;
};

// Writes a calibration as a JSON file (written to a temporary file first, then renamed over
// `path`), reads one back. Throw frcnn::Error saying what is wrong (unreadable, not JSON, not
// a calibration, a range not a finite number >= 0).
void save_int8_calibration(const Int8Calibration &calibration, const std::string &path);
Int8Calibration load_int8_calibration(const std::string &path);

struct FrameView;
namespace detail {
struct TransformedBatch;
struct FrameMemory;
}

class FasterRCNNImpl;

class FasterRCNNImpl : public torch::nn::Module {
public:
	explicit FasterRCNNImpl(const ModelConfig &config);
	~FasterRCNNImpl() override;

	// Eval mode: images are float [3,H,W] RGB in 0..1, of any sizes.
	std::vector<Detections> forward(const std::vector<torch::Tensor> &images);

	// Eval mode on raw frames: converted, normalised, resized and batched on the model's
	// device, in its dtype (on CUDA by one kernel per frame, from the frame bytes).
	std::vector<Detections> forward_frames(const std::vector<FrameView> &frames);
	// The same for frames copied ahead, with their memory (see detail::transform_frames; what
	// Detector runs for its frame copies).
	std::vector<Detections> forward_frames(const std::vector<FrameView> &frames,
					       const std::vector<detail::FrameMemory> &frame_memory);

	// The whole forward pass with its intermediate results. Training mode needs targets.
	ForwardResult run(const std::vector<torch::Tensor> &images,
			  const std::vector<Target> *targets = nullptr);
	// The same from a batch already transformed (detail::transform_images/transform_frames).
	ForwardResult run_transformed(const detail::TransformedBatch &batch,
				      const std::vector<Target> *targets = nullptr);

	// Moves the model to `device` for inference. Fp16 (CUDA only) stores the floating-point
	// parameters and buffers in half, as torch.nn.Module.half(), Bf16 (CPUs with bfloat16
	// instructions only) in bfloat16; the model then computes its convolutions and linear
	// layers in that precision and its box geometry in float. Throws frcnn::Error for a
	// precision the device cannot run (see Precision). channels_last
	// stores the 4-D weights channels-last, so that convolutions run in NHWC (faster with
	// tensor cores). The device and dtype of the parameters tell forward_frames() where to run.
	void to_device(torch::Device device, Precision precision, bool channels_last);

	// Int8 (to_device on the CPU; on the oneDNN convolutions, which
	// to_device chooses): until it has a calibration, the model runs in float and observes the
	// ranges of the inputs of the layers it will quantize (int8_observed()); with one, those
	// run in 8 bits. New weights (load_state_dict, training) drop the calibration: the model
	// observes again. Throws frcnn::Error when the model is not in Int8 or the calibration is
	// for another model or other weights (a name missing, a range not finite).
	void set_int8_calibration(const Int8Calibration &calibration);
	// The ranges observed since to_device(Int8) (or the weights last changed), with the
	// number of images they come from.
	Int8Calibration int8_observed() const;
	// Its number of images alone (int8_observed() copies the ranges).
	int64_t int8_frames_observed() const { return int8_frames_observed_; }
	// Whether the model runs in 8 bits now (Int8 and calibrated).
	bool int8_calibrated() const;
	// CRC-32 of the bytes of the state dict's floating-point tensors, as float, in its order.
	uint32_t weights_checksum() const;

	// On the CPU (fp32 or bf16), what runs the convolutions of the backbone, FPN, RPN head and a
	// convolutional box head in eval mode (see CpuConvolutions; the default of a new model is LibTorch). oneDNN takes the
	// weights as they are when this is called, and again at the next forward when they have
	// changed since (training, load_state_dict), or at to_device(). Throws frcnn::Error when OneDnn is asked for
	// a model or build it does not cover.
	void set_cpu_convolutions(CpuConvolutions kind);
	// What runs them now: CpuConvolutions::LibTorch or CpuConvolutions::OneDnn.
	CpuConvolutions cpu_convolutions() const;

	// Strict load: every parameter and buffer must be present with its shape; old torchvision
	// key names (FPN and RPN head before version 2) are renamed as torchvision does. Throws
	// frcnn::Error naming the missing, unexpected or mis-shaped keys.
	void load_state_dict(const Checkpoint &checkpoint);
	// Parameters and buffers under torchvision's names, in the model's order.
	StateDict state_dict() const;

	const ModelConfig &config() const;
	// Thresholds that may change after construction (the element's properties).
	void set_box_score_thresh(double value);
	void set_box_nms_thresh(double value);
	void set_box_detections_per_img(int value);
	void set_image_size(int min_size, int max_size);

	// Sets the frozen batch-norm statistics of the backbone from these images, layer by layer
	// (for training from scratch; pretrained weights bring their own statistics).
	void calibrate_frozen_batch_norm(const std::vector<torch::Tensor> &images);

	// Applies trainable_backbone_layers (requires_grad off for frozen layers).
	void freeze_backbone_layers(int trainable_layers);

private:
	struct Parts;
	std::unique_ptr<Parts> parts_;
	ModelConfig config_;
	bool channels_last_ = false; // the batch goes channels-last too (to_device)
	bool onednn_ = false;	     // set_cpu_convolutions chose oneDNN
	bool int8_ = false;	     // to_device(Int8)
	// The calibration set (else the model observes), and the images observed so far.
	std::shared_ptr<const Int8Calibration> int8_calibration_;
	int64_t int8_frames_observed_ = 0;
	uint32_t int8_weights_crc32_ = 0; // weights_checksum() when the plan was made
	void refresh_onednn();
	void drop_onednn();
};

TORCH_MODULE(FasterRCNN);

// The model preset whose parameters a state dict holds, told from its key names and a few shapes:
// "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn" or
// "tiny". The two MobileNetV3 models have the same parameters (they differ in input size and
// proposal counts only), so their weights give "fasterrcnn_mobilenet_v3_large_fpn". Throws
// frcnn::Error describing the keys when they fit none of the presets.
std::string detect_arch(const StateDict &state_dict);

// For weights that fit none of the presets: the one they come nearest to, with what differs
// ("model 'tiny' with num_classes 4 (missing: backbone.body.layer1.0.conv1.weight)"), or empty
// when more than a quarter of its tensors differ. Builds each model to compare: for messages.
std::string nearest_model(const Checkpoint &checkpoint);

// The number of classes (background included) of a state dict's box predictor: the rows of
// roi_heads.box_predictor.cls_score.weight, or -1 when it has no such tensor.
int detect_num_classes(const StateDict &state_dict);

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
// Everything that defines a Faster R-CNN model, with torchvision's names and defaults.
#pragma once

#include <string>
#include <vector>

namespace frcnn {

// The most classes (background included) a model is built for: more would take gigabytes for its
// class scores; the element's and the programs' num-classes stop here, and a checkpoint claiming
// more is not trusted to size a model.
inline constexpr int kMostClasses = 100000;

struct ModelConfig {
	std::string arch = "fasterrcnn_resnet50_fpn"; // preset this config came from

	// --- backbone ---------------------------------------------------------------------------
	// "resnet" (torchvision's ResNet, returning layer1..layer4) or "mobilenet_v3_large"
	// (torchvision's MobileNetV3-Large `features`, returning blocks 13 and 16, both at stride 32).
	std::string backbone = "resnet";
	int resnet_depth = 50;		  // 18, 34 (BasicBlock) or 50, 101 (Bottleneck)
	int stem_width = 64;		  // width of conv1 and layer1 (torchvision: 64)
	std::vector<int> layer_widths{64, 128, 256, 512}; // planes of layer1..4 (x4 for Bottleneck)
	int trainable_backbone_layers = 3; // 0..5 (ResNet) or 0..6 (MobileNetV3), as torchvision
	double frozen_bn_eps = 1e-5;	   // FrozenBatchNorm2d eps (0.0 for the v1 COCO weights)
	// Normalisation layers, as torchvision's pretrained builders choose them:
	// "frozen_bn": FrozenBatchNorm2d in the backbone; FPN and box head without normalisation
	//              (fasterrcnn_resnet50_fpn, the MobileNetV3 models);
	// "batch_norm": BatchNorm2d (eps 1e-5) in the backbone, after every FPN convolution and in
	//              a conv_fc box head (fasterrcnn_resnet50_fpn_v2). In eval mode it uses its
	//              running statistics; in training mode, those of the batch.
	std::string norm = "frozen_bn";

	// --- FPN, anchors, RPN -------------------------------------------------------------------
	int fpn_channels = 256;
	std::vector<std::vector<double>> anchor_sizes{{32}, {64}, {128}, {256}, {512}};
	std::vector<double> aspect_ratios{0.5, 1.0, 2.0};
	int rpn_conv_depth = 1;
	int rpn_pre_nms_top_n_train = 2000;
	int rpn_pre_nms_top_n_test = 1000;
	int rpn_post_nms_top_n_train = 2000;
	int rpn_post_nms_top_n_test = 1000;
	double rpn_nms_thresh = 0.7;
	double rpn_fg_iou_thresh = 0.7;
	double rpn_bg_iou_thresh = 0.3;
	int rpn_batch_size_per_image = 256;
	double rpn_positive_fraction = 0.5;
	double rpn_score_thresh = 0.0;

	// --- RoI heads ---------------------------------------------------------------------------
	int box_roi_output_size = 7;
	int box_roi_sampling_ratio = 2;
	// "two_mlp": TwoMLPHead (fc6, fc7 of box_head_size); "conv_fc": FastRCNNConvFCHead, one 3x3
	// convolution (+ norm) + ReLU per entry of box_head_convs, then one box_head_size linear + ReLU.
	std::string box_head = "two_mlp";
	std::vector<int> box_head_convs{256, 256, 256, 256}; // conv_fc only: output channels
	int box_head_size = 1024; // representation size of fc6/fc7 (two_mlp) or of the linear (conv_fc)
	double box_score_thresh = 0.05;
	double box_nms_thresh = 0.5;
	int box_detections_per_img = 100;
	double box_fg_iou_thresh = 0.5;
	double box_bg_iou_thresh = 0.5;
	int box_batch_size_per_image = 512;
	double box_positive_fraction = 0.25;
	int num_classes = 91;

	// --- GeneralizedRCNNTransform ------------------------------------------------------------
	int min_size = 800;
	int max_size = 1333;
	std::vector<double> image_mean{0.485, 0.456, 0.406};
	std::vector<double> image_std{0.229, 0.224, 0.225};
	int size_divisible = 32;
};

// What runs the convolutions of the backbone, the FPN, the RPN head and a convolutional box head
// (fasterrcnn_resnet50_fpn_v2's) on the CPU, in fp32 or bf16.
enum class CpuConvolutions {
	// oneDNN where this build has it and it is faster: the MobileNetV3 models (their
	// depthwise convolutions fused with their batch norms and activations, several times
	// LibTorch's speed on any CPU), fasterrcnn_resnet50_fpn and its v2, whose 256-channel FPN
	// takes Winograd, and tiny on CPUs with AVX-512 (Winograd for its 64 channels; every CPU
	// with bf16 has it, and tiny in bf16 gains there too); LibTorch otherwise (tiny elsewhere).
	Auto,
	// LibTorch's operators, in torchvision's order: the same numbers as torchvision.
	LibTorch,
	// oneDNN primitives with the batch norms folded in, ReLU, hardswish and additions fused, and
	// (fp32) Winograd 3x3 convolutions where the CPU has AVX-512 (every preset: the ResNet-FPN
	// models and the MobileNetV3 ones): the arithmetic is reordered, so boxes differ from
	// torchvision's by a small fraction of a pixel.
	OneDnn,
};

// "auto", "libtorch", "onednn"; parse_cpu_convolutions throws frcnn::Error for other names.
const char *cpu_convolutions_name(CpuConvolutions value);
CpuConvolutions parse_cpu_convolutions(const std::string &name);

// The arithmetic of the model's convolutions and linear layers. Box geometry (anchors, box
// decoding, scores, NMS) stays in float whatever the precision: reduced precision would round
// the coordinates of large frames to whole pixels.
enum class Precision {
	// torchvision's arithmetic: the same numbers (on LibTorch's convolutions).
	Fp32,
	// IEEE half, on CUDA devices (tensor cores).
	Fp16,
	// bfloat16, on CPUs with bfloat16 instructions (AVX-512 BF16 or AMX): faster than fp32
	// there (docs/performance.md); the same detections up to rounding, as with fp16.
	Bf16,
	// 8-bit integer convolutions on the CPU (oneDNN; MobileNetV3's trunk stays fp32): the
	// weights of each output channel and the input of each convolution scaled to 8 bits, the
	// inputs' scales calibrated on frames (FasterRCNNImpl::set_int8_calibration), accumulated
	// in 32 bits; the stem, the RPN's output convolutions and the box predictor stay fp32. Fastest
	// on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI, AMX); detections close to fp32's, not equal.
	Int8,
};

// "fp32", "fp16", "bf16", "int8"; parse_precision throws frcnn::Error for other names.
const char *precision_name(Precision value);
Precision parse_precision(const std::string &name);

// Why Precision::Int8 cannot run this model in this build (empty when it can): it runs on
// the oneDNN convolutions, which a build without oneDNN lacks.
std::string int8_unsupported_reason(const ModelConfig &config);

// Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX-BF16), which
// Precision::Bf16 on the CPU needs, and oneDNN may use it: false also when ONEDNN_MAX_CPU_ISA
// (or DNNL_MAX_CPU_ISA) holds oneDNN below AVX512_CORE_BF16, since its bf16 kernels then cannot
// be made (cpu_bf16_unavailable_reason says which).
bool cpu_has_bf16();
// Why Precision::Bf16 cannot run on this CPU, as the end of a sentence ("which this one
// lacks", "which ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN from using"); empty when it can.
std::string cpu_bf16_unavailable_reason();

// Names accepted by model_preset(): torchvision's names and our own.
std::vector<std::string> model_preset_names();

// torchvision's four models, as its builders make them when given weights (so that the published
// checkpoints load unchanged): "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
// "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn" (aliases without
// the "fasterrcnn_" prefix); and "tiny": a small ResNet-18-style model (narrow widths, 64-channel
// FPN, 256-wide box head) for tests, the synthetic-shapes model and small CPUs. Throws
// frcnn::Error for an unknown name, listing the known ones.
ModelConfig model_preset(const std::string &name);

} // namespace frcnn

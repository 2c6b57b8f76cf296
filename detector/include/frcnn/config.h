// SPDX-License-Identifier: BSD-3-Clause
// Everything that defines a Faster R-CNN model, with torchvision's names and defaults.
#pragma once

#include <string>
#include <vector>

namespace frcnn {

struct ModelConfig {
	std::string arch = "fasterrcnn_resnet50_fpn"; // preset this config came from

	// --- backbone ---------------------------------------------------------------------------
	std::string backbone = "resnet";  // "resnet"
	int resnet_depth = 50;		  // 18, 34 (BasicBlock) or 50, 101 (Bottleneck)
	int stem_width = 64;		  // width of conv1 and layer1 (torchvision: 64)
	std::vector<int> layer_widths{64, 128, 256, 512}; // planes of layer1..4 (x4 for Bottleneck)
	int trainable_backbone_layers = 3; // 0..5, as torchvision (only matters for training)
	double frozen_bn_eps = 1e-5;	   // FrozenBatchNorm2d eps (0.0 for the v1 COCO weights)

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
	int box_head_size = 1024; // representation size of fc6/fc7
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

// Names accepted by model_preset(): torchvision's names and our own.
std::vector<std::string> model_preset_names();

// "fasterrcnn_resnet50_fpn" (alias "resnet50_fpn") exactly as torchvision builds it with
// weights=None; "tiny": a small ResNet-18-style model (narrow widths, 64-channel FPN, 256-wide
// box head) for tests, the synthetic-shapes model and small CPUs. Throws frcnn::Error for an
// unknown name, listing the known ones.
ModelConfig model_preset(const std::string &name);

} // namespace frcnn

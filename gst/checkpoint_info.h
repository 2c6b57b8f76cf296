// SPDX-License-Identifier: BSD-3-Clause
// What the element needs to know about a checkpoint before building the model. Kept apart so
// that only this file sees LibTorch headers.
#pragma once

#include <memory>
#include <string>

namespace frcnn {
struct Checkpoint;
}

namespace frcnn::gst {

struct CheckpointInfo {
	// The checkpoint itself, for frcnn::DetectorOptions::checkpoint (read once, not twice).
	std::shared_ptr<const Checkpoint> checkpoint;
	// Rows of roi_heads.box_predictor.cls_score.weight, or -1 when there is no such tensor.
	int num_classes = -1;
	// The model preset whose keys and shapes the checkpoint has (frcnn::detect_arch), or empty
	// when it fits none.
	std::string arch;
	// When it fits none: why (frcnn::detect_arch's words).
	std::string arch_problem;
};

// For weights that fit no model: the model they come nearest to, with what differs
// (frcnn::nearest_model), or empty. Builds the models to compare: for messages.
std::string nearest_model(const CheckpointInfo &info);

// Reads the whole file, so a file that is not a readable checkpoint is reported here: throws
// frcnn::Error.
CheckpointInfo checkpoint_info(const std::string &path);

} // namespace frcnn::gst

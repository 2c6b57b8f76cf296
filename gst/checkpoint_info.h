// SPDX-License-Identifier: BSD-3-Clause
// What the element needs to know about a checkpoint before building the model. Kept apart so
// that only this file sees LibTorch headers.
#pragma once

#include <string>

namespace frcnn::gst {

// Number of classes of the box predictor in the checkpoint (rows of
// roi_heads.box_predictor.cls_score.weight), or -1 when the checkpoint has no such tensor.
// Reads the whole file, so a file that is not a readable checkpoint is reported here: throws
// frcnn::Error.
int checkpoint_num_classes(const std::string &path);

} // namespace frcnn::gst

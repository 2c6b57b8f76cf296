// SPDX-License-Identifier: BSD-3-Clause
// What the command-line programs share: model options and building a Detector from them.
#pragma once

#include <memory>
#include <string>

#include "frcnn/detector.h"

namespace frcnn::cli {

struct ModelOptions {
	std::string arch;	 // empty: the weights preset's, else detect_arch() of the checkpoint
	std::string weights;	 // path, preset name or URL
	int num_classes = 0;	 // 0: the preset's
	int min_size = 0;	 // 0: the preset's
	int max_size = 0;
	double score_threshold = -1; // < 0: the preset's
	std::string device = "cpu";
	bool fp16 = false;
	int threads = 0;
	long long seed = -1;	 // random weights (benchmarks) when no weights are given
};

// Handles one model option (`--arch X` etc.). Returns true when `name` was one; throws
// frcnn::Error for a bad value.
bool parse_model_option(ModelOptions &options, const std::string &name, const std::string &value);

// Usage lines for the model options.
const char *model_options_help();

// The DetectorOptions make_detector builds from `options`: the preset's model config with the
// options applied, and the weights resolved (downloading a preset with a progress bar on a
// terminal). Throws frcnn::Error.
DetectorOptions detector_options(const ModelOptions &options);

// Resolves the weights (downloading a preset with a progress bar on a terminal) and builds
// the detector. Throws frcnn::Error.
std::unique_ptr<Detector> make_detector(const ModelOptions &options);

} // namespace frcnn::cli

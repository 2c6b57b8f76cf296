// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <stdexcept>
#include <string>

namespace frcnn {

// Every error libfrcnn reports to its callers (bad weights, bad config, bad input). Messages are
// written for the end user: they say what was wrong and, where possible, what to do about it.
class Error : public std::runtime_error {
public:
	explicit Error(const std::string &message) : std::runtime_error(message) {}
};

// An 8-bit calibration file that cannot be used: unreadable, malformed, of another model or
// other weights, or a place it cannot be written to (DetectorOptions::int8_calibration).
class CalibrationError : public Error {
public:
	explicit CalibrationError(const std::string &message) : Error(message) {}
};

// Options that cannot go together, or that this build or model cannot run: which CPU
// convolutions with which precision (DetectorOptions::cpu_convolutions). The message says which
// option to change.
class SettingsError : public Error {
public:
	explicit SettingsError(const std::string &message) : Error(message) {}
};

// Weights that do not fit the model they are loaded into: tensors of other shapes, missing or
// unexpected ones (a checkpoint of another model or number of classes).
class WeightsMismatchError : public Error {
public:
	explicit WeightsMismatchError(const std::string &message) : Error(message) {}
};

// Weights that fit the model but cannot be run: values that are not finite (NaN or infinity, of
// a training that diverged or a damaged file) or batch-norm variances below 0. Run, they would
// give no detections, or made-up ones, without a word.
class DamagedWeightsError : public Error {
public:
	explicit DamagedWeightsError(const std::string &message) : Error(message) {}
};

} // namespace frcnn

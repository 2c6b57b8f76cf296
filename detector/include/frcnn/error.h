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

} // namespace frcnn

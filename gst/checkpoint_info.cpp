// SPDX-License-Identifier: BSD-3-Clause
#include "checkpoint_info.h"

#include "frcnn/checkpoint.h"
#include "frcnn/error.h"
#include "frcnn/model.h"

namespace frcnn::gst {

CheckpointInfo checkpoint_info(const std::string &path)
{
	auto read = std::make_shared<const Checkpoint>(read_checkpoint(path));
	const Checkpoint &checkpoint = *read;
	CheckpointInfo info;
	info.checkpoint = read;
	info.num_classes = detect_num_classes(checkpoint.tensors);
	try {
		info.arch = detect_arch(checkpoint.tensors);
	} catch (const Error &e) {
		// Fits no preset: the model property decides, and loading says what does not fit.
		info.arch_problem = e.what();
	}
	return info;
}

std::string nearest_model(const CheckpointInfo &info)
{
	return info.checkpoint ? frcnn::nearest_model(*info.checkpoint) : std::string();
}

} // namespace frcnn::gst

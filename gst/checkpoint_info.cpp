// SPDX-License-Identifier: BSD-3-Clause
#include "checkpoint_info.h"

#include "frcnn/checkpoint.h"

namespace frcnn::gst {

int checkpoint_num_classes(const std::string &path)
{
	const Checkpoint checkpoint = read_checkpoint(path);
	for (const auto &[name, tensor] : checkpoint.tensors) {
		if (name == "roi_heads.box_predictor.cls_score.weight" && tensor.dim() == 2)
			return static_cast<int>(tensor.size(0));
	}
	return -1;
}

} // namespace frcnn::gst

// SPDX-License-Identifier: BSD-3-Clause
// Reading and writing PyTorch checkpoints without Python and without running any code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace frcnn {

// Named tensors in file order, as in a Python state_dict().
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

struct Checkpoint {
	StateDict tensors;
	// From an OrderedDict's `_metadata`: module prefix without trailing dot ("" for the root,
	// "backbone.fpn", "rpn.head", ...) -> that module's `version`. Modules without a version
	// are absent. Empty for plain dicts.
	std::map<std::string, int64_t> module_versions;
};

// Reads a checkpoint written by torch.save: the zip format (torch >= 1.6), the legacy pickle
// format (older torch, or _use_new_zipfile_serialization=False) and the first, tar format. The
// container may be an OrderedDict state dict, a plain dict, or a training checkpoint dict
// holding the state dict under "model" (or "state_dict"). Only the globals a state dict needs
// are accepted; anything else throws frcnn::Error naming it. The tensors are contiguous and
// own their memory.
Checkpoint read_checkpoint(const std::string &path);
Checkpoint read_checkpoint_bytes(const void *data, std::size_t size, const std::string &name);

// Writes `tensors` as a zip checkpoint holding an OrderedDict, readable by
// torch.load(..., weights_only=True) and torchvision's load_state_dict.
void write_checkpoint(const std::string &path, const StateDict &tensors);
// The same, also writing `module_versions` as the OrderedDict's `_metadata`, so that
// torchvision's load_state_dict knows the keys already have the current layout.
void write_checkpoint(const std::string &path, const Checkpoint &checkpoint);

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
// Published weights by name, the torch hub cache, and downloads.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace frcnn {

struct WeightsPreset {
	std::string name;	 // "coco", "coco-v2", "coco-mobilenet", "coco-mobilenet-320"
	std::string arch;	 // model preset the file belongs to
	std::string url;	 // torchvision's published file
	int num_classes;	 // 91
	double frozen_bn_eps;	 // 0.0 for the v1 COCO file (torchvision's overwrite_eps), else 1e-5
};

const std::vector<WeightsPreset> &weights_presets();
std::optional<WeightsPreset> find_weights_preset(const std::string &name);
// The preset a weights value stands for: its name, or a file or URL by the file name torchvision
// publishes it under (a file fetched by hand still needs the preset's architecture, class count
// and batch-norm eps, which its tensors do not all tell).
std::optional<WeightsPreset> weights_preset_of(const std::string &weights);

// The folder torchvision caches into: $TORCH_HOME/hub/checkpoints, where TORCH_HOME defaults to
// $XDG_CACHE_HOME/torch, and XDG_CACHE_HOME to ~/.cache.
std::string hub_checkpoint_dir();

// Called during a download with (bytes so far, total bytes or -1 when unknown).
using DownloadProgress = std::function<void(long long done, long long total)>;

// Resolves a weights value: a preset name or an http(s) URL is looked up in the cache and
// downloaded into it if absent (checked against the sha256 prefix in the file name, written to a
// temporary name and moved into place); anything else is taken as a file path and must exist.
// Throws frcnn::Error with what to do (e.g. which URL to fetch and where to put the file).
std::string resolve_weights(const std::string &weights, const DownloadProgress &progress = {});

// Where resolve_weights() keeps the file of a preset name or an http(s) URL (whether it is there
// yet or not): the cache folder and the URL's file name. Nullopt for anything else (a file
// path). Throws frcnn::Error as resolve_weights does for a URL without a file name or a cache
// folder that cannot be told.
std::optional<std::string> weights_cache_path(const std::string &weights);

// Whether resolve_weights() would download `weights`: a preset name or an http(s) URL whose file
// is not in the cache yet. False for a file path, and where the cache folder cannot be told
// (resolve_weights says why).
bool weights_need_download(const std::string &weights);

// The class count of the model that `weights` give, where it is known before they load (so that
// the labels and class filters can be checked before a download): the weights of a preset that
// resolve_weights() would download are its published file (checked against its hash), of the
// preset's class count. 0 otherwise: for a file, a URL of other weights, a preset already in the
// cache (put there by hand, maybe), and where `num_classes` (0: unset) asks for another count,
// which their load refuses.
int class_count_before_download(const std::string &weights, int num_classes);

// For weights that resolve_weights() takes from the download cache (a preset name or a URL): a
// sentence saying so, and to delete the file to download it anew, for a message about a file
// there that cannot be read (one copied in by hand, or damaged since). Empty for a file path.
std::string cached_download_advice(const std::string &weights);

// A DownloadProgress for command-line tools: draws a one-line bar on stderr when stderr is a
// terminal, and does nothing otherwise. The line is ended when the download completes
// (resolve_weights reports done == total once at the end) or, after a failure, when the returned
// function is destroyed.
DownloadProgress terminal_progress_bar();

} // namespace frcnn

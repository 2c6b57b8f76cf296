// SPDX-License-Identifier: BSD-3-Clause
// frcnn-train: trains or fine-tunes a Faster R-CNN on a COCO-format dataset or on synthetic shapes,
// and writes checkpoints that torchvision can load.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <chrono>
#include <climits>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "cli.h"
#include "image_read.h"
#include "frcnn/checkpoint.h"
#include "frcnn/detail/json.h"
#include "frcnn/error.h"
#include "frcnn/labels.h"
#include "frcnn/model.h"
#include "frcnn/shapes.h"
#include "frcnn/weights.h"

namespace {

using frcnn::Error;

struct Options {
	std::string arch; // empty: the --weights' or --resume's, else tiny
	int num_classes = 0;
	int trainable_layers = -1; // -1: the preset's
	std::string init_weights;  // fine-tune from these
	std::string synthetic;	   // "shapes"
	std::string coco_json, images_dir;
	int epochs = 10;
	int iterations = 200; // per epoch, synthetic data
	int batch_size = 4;
	double lr = 0.01, momentum = 0.9, weight_decay = 1e-4;
	std::string schedule = "cosine"; // cosine | step | constant
	std::vector<int> lr_steps;	 // epochs at which step multiplies the rate by 0.1
	int warmup = 100;		 // iterations of linear warm-up
	double hflip = 0.5;
	std::string resume;
	std::string output;
	std::string log;
	uint64_t seed = 0;
	int threads = 0;
	int min_size = 0, max_size = 0;
	int width = 320, height = 240; // synthetic frames
	int rpn_pre_nms = 0, rpn_post_nms = 0, box_batch = 0; // 0: the preset's
};

void usage(FILE *out)
{
	std::fprintf(out,
		"Usage: frcnn-train (--synthetic shapes | --coco-json FILE --images DIR) --output FILE [OPTIONS]\n"
		"Trains a Faster R-CNN and writes its state dict (torchvision-readable zip checkpoint).\n\n"
		"Model:\n"
		"  --arch NAME              model preset (default: the one --weights or --resume holds,\n"
		"                           else tiny)\n"
		"  --num-classes N          classes including background (default: 4 for shapes, the largest\n"
		"                           category id of the COCO file's boxes + 1)\n"
		"  --weights FILE|PRESET    start from these weights (fine-tuning); the box predictor is\n"
		"                           re-initialised when its number of classes differs\n"
		"  --trainable-layers N     trainable backbone layers, 0..5 (ResNet) or 0..6 (MobileNetV3)\n"
		"                           (default: the preset's)\n"
		"  --min-size N, --max-size N   input resize (default: the preset's)\n"
		"  --rpn-pre-nms N, --rpn-post-nms N   RPN proposals kept per image in training before\n"
		"                           and after NMS (default, and 0: the preset's, torchvision:\n"
		"                           2000, 2000)\n"
		"  --box-batch-size N       RoIs sampled per image for the box head (default, and 0:\n"
		"                           the preset's, torchvision: 512)\n"
		"Data:\n"
		"  --synthetic shapes       endless synthetic shapes (see frcnnshapesrc), --width/--height\n"
		"                           (default 320x240), --iterations per epoch (default 200)\n"
		"  --coco-json FILE --images DIR   a COCO instances file; category ids are the labels\n"
		"  --hflip P                horizontal flip probability (default 0.5)\n"
		"Optimisation (SGD):\n"
		"  --epochs N (10)  --batch-size N (4)  --lr F (0.01)  --momentum F (0.9)\n"
		"  --weight-decay F (1e-4)  --schedule cosine|step|constant  --lr-steps E1,E2  --warmup N (100)\n"
		"Output:\n"
		"  --output FILE            checkpoint written after every epoch; FILE.optimizer and\n"
		"                           FILE.json hold what --resume needs, FILE.labels the class\n"
		"                           names (for frcnndetect's labels, frcnn-detect's --labels)\n"
		"  --resume FILE            continue from a checkpoint written by --output\n"
		"  --log FILE               losses as JSON lines, one per iteration\n"
		"  --seed N, --threads N\n"
		"Exit status: 0 when trained (or nothing was left to train), 2 for a bad option, 1 when\n"
		"training failed (unreadable data, weights or output, a loss that is no longer finite).\n");
}

struct Sample {
	torch::Tensor image; // float [3,H,W] 0..1
	frcnn::Target target;
};

torch::Tensor rgb_to_tensor(const uint8_t *rgb, int width, int height)
{
	return torch::from_blob(const_cast<uint8_t *>(rgb), {height, width, 3}, torch::kUInt8)
		.permute({2, 0, 1})
		.to(torch::kFloat32)
		.div(255.0f);
}

// A dataset gives sample i; training draws indices from it.
class Dataset {
public:
	virtual ~Dataset() = default;
	virtual size_t size() const = 0;
	virtual Sample get(size_t index) const = 0;
	// The name of each of `num_classes` classes, the background's first: FILE.labels.
	virtual std::vector<std::string> class_names(int num_classes) const = 0;
};

class ShapesDataset : public Dataset {
public:
	ShapesDataset(int width, int height, uint64_t seed, size_t size)
		: size_(size)
	{
		frcnn::ShapesOptions o;
		o.width = width;
		o.height = height;
		o.seed = seed;
		o.scene_frames = 1; // independent scenes
		generator_ = std::make_unique<frcnn::ShapesGenerator>(o);
	}
	size_t size() const override { return size_; }
	Sample get(size_t index) const override
	{
		auto scene = generator_->scene(index);
		Sample s;
		s.image = rgb_to_tensor(scene.rgb.data(), scene.width, scene.height).clone();
		std::vector<float> boxes;
		std::vector<int64_t> labels;
		for (const auto &o : scene.objects) {
			boxes.insert(boxes.end(), {o.x1, o.y1, o.x2, o.y2});
			labels.push_back(o.label);
		}
		s.target.boxes = torch::tensor(boxes).reshape({-1, 4});
		s.target.labels = torch::tensor(labels, torch::kInt64);
		return s;
	}
	std::vector<std::string> class_names(int num_classes) const override
	{
		std::vector<std::string> names = frcnn::shapes_class_names();
		names.resize(num_classes, frcnn::unused_class_name()); // a --num-classes above the shapes': classes no box has
		return names;
	}

private:
	size_t size_;
	std::unique_ptr<frcnn::ShapesGenerator> generator_;
};

class CocoDataset : public Dataset {
public:
	CocoDataset(const std::string &json_path, const std::string &images_dir)
	{
		std::ifstream in(json_path);
		if (!in)
			throw Error("cannot open the COCO file '" + json_path + "'");
		nlohmann::json j;
		try {
			j = frcnn::detail::parse_json(in);
		} catch (const std::exception &e) {
			throw Error("'" + json_path + "' is not valid JSON: " + e.what());
		}
		if (!j.is_object() || !j.contains("images") || !j.contains("annotations") || !j["images"].is_array() ||
		    !j["annotations"].is_array())
			throw Error("'" + json_path + "' has no \"images\" or \"annotations\" list: not a COCO instances file");
		std::map<int64_t, size_t> by_id;
		std::size_t index = 0;
		// nlohmann's type errors name no place: say which entry of which file holds the value.
		const auto where = [&](const char *list, const nlohmann::json::exception &e) {
			return Error("'" + json_path + "': " + list + "[" + std::to_string(index) + "]: " + e.what());
		};
		for (const auto &image : j["images"]) {
			try {
				const int64_t id = whole_number(image.at("id"), "'" + json_path + "': images[" +
										std::to_string(index) + "]: its id");
				/* A repeated id would leave one of its images without boxes: its objects
				 * would be trained as background. */
				if (!by_id.emplace(id, entries_.size()).second)
					throw Error("'" + json_path + "': images[" + std::to_string(index) + "]: image id " +
						    std::to_string(id) + " is listed twice");
				entries_.push_back({images_dir + "/" + image.at("file_name").get<std::string>(), {}, {}});
			} catch (const nlohmann::json::exception &e) {
				throw where("images", e);
			}
			index++;
		}
		index = 0;
		for (const auto &a : j["annotations"]) {
			try {
				add_annotation(a, by_id,
					       "'" + json_path + "': annotations[" + std::to_string(index) + "] (id " +
						       a.value("id", nlohmann::json(nullptr)).dump() + ")");
			} catch (const nlohmann::json::exception &e) {
				throw where("annotations", e);
			}
			index++;
		}
		if (entries_.empty())
			throw Error("'" + json_path + "' lists no images");
		// Data a COCO file may hold by mistake, trained on as it is but said: frcnn-eval scores
		// only the classes of "categories", and an annotation of an image not listed is lost.
		if (j.contains("categories") && j["categories"].is_array()) {
			std::set<int64_t> listed, unlisted;
			for (const auto &category : j["categories"])
				if (category.is_object() && category.contains("id") && category["id"].is_number_integer()) {
					const int64_t id = category["id"].get<int64_t>();
					listed.insert(id);
					/* Listed twice: named as listed last, as frcnn-eval names it. */
					if (category.contains("name") && category["name"].is_string())
						category_names_[id] = frcnn::labels_file_line(category["name"].get<std::string>());
				}
			for (int64_t label : labels_seen_)
				if (!listed.count(label))
					unlisted.insert(label);
			if (!unlisted.empty()) {
				std::string ids;
				for (int64_t id : unlisted)
					ids += (ids.empty() ? "" : ", ") + std::to_string(id);
				std::fprintf(stderr,
					     "frcnn-train: warning: '%s': boxes of category id %s, which \"categories\" "
					     "does not list: trained as those classes, but frcnn-eval scores only the "
					     "listed ones\n",
					     json_path.c_str(), ids.c_str());
			}
		}
		if (unknown_images_ > 0)
			std::fprintf(stderr,
				     "frcnn-train: warning: '%s': %zu annotations of image ids that \"images\" does "
				     "not list: left out\n",
				     json_path.c_str(), unknown_images_);
		// An image missing from the folder would stop the training when its turn came, hours in.
		for (std::size_t i = 0; i < entries_.size(); i++) {
			if (::access(entries_[i].path.c_str(), R_OK) != 0)
				throw Error("'" + json_path + "': images[" + std::to_string(i) + "]: cannot read '" +
					    entries_[i].path + "': " + std::strerror(errno) +
					    " (file names are taken in the --images folder)");
			if (const std::string refusal = frcnn::cli::image_refusal(entries_[i].path); !refusal.empty())
				throw Error("'" + json_path + "': images[" + std::to_string(i) + "]: cannot read '" +
					    entries_[i].path + "' as it is stored (its boxes are in the stored pixels): " +
					    refusal);
		}
	}
	size_t size() const override { return entries_.size(); }
	int64_t max_label() const { return labels_seen_.empty() ? 0 : *labels_seen_.rbegin(); }
	// The background as torchvision names it, each category id by its name in "categories";
	// an id with boxes but no name "class N" (the element's name for it), an id without
	// either "N/A" (torchvision's name for the ids COCO left unused).
	std::vector<std::string> class_names(int num_classes) const override
	{
		std::vector<std::string> names(num_classes, frcnn::unused_class_name());
		names[0] = frcnn::coco_category_names()[0];
		for (int64_t id = 1; id < num_classes; id++) {
			const auto named = category_names_.find(id);
			if (named != category_names_.end() && !named->second.empty())
				names[id] = named->second;
			else if (labels_seen_.count(id))
				names[id] = frcnn::unnamed_class_name(id);
		}
		return names;
	}
	Sample get(size_t index) const override
	{
		const auto &e = entries_[index];
		cv::Mat bgr = frcnn::cli::read_image_bgr(e.path);
		if (bgr.empty())
			throw Error("cannot read training image '" + e.path + "': " +
				    frcnn::cli::unreadable_image_reason(e.path));
		cv::Mat rgb;
		cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
		Sample s;
		s.image = rgb_to_tensor(rgb.data, rgb.cols, rgb.rows).clone();
		s.target.boxes = torch::tensor(e.boxes).reshape({-1, 4});
		s.target.labels = torch::tensor(e.labels, torch::kInt64);
		return s;
	}

private:
	// The class count grows with the largest id; beyond this it would not fit in memory, and
	// a model of more than 100000 classes (background included) loads nowhere: the element's
	// num-classes and the checkpoint reader stop there.
	static constexpr int64_t kMaxCategory = 99999;

	// An id or a flag: a whole number of 64 bits, also written as a float (2.0: Python's json of
	// a float column); a fraction or a number beyond that range would be cut to another.
	// `what` names it for the message.
	static int64_t whole_number(const nlohmann::json &v, const std::string &what)
	{
		if (v.is_number_integer() &&
		    !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)))
			return v.get<int64_t>();
		if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
		    std::fabs(v.get<double>()) < 9.2e18) // within int64_t, which ends at 9.22e18
			return static_cast<int64_t>(v.get<double>());
		throw frcnn::Error(what + " is not a whole number of 64 bits: " + v.dump());
	}

	// `name`: where the annotation is, for the messages (the file, its place in the list, its id).
	void add_annotation(const nlohmann::json &a, const std::map<int64_t, size_t> &by_id, const std::string &name)
	{
		// A crowd region: any true or nonzero iscrowd, as frcnn-eval and pycocotools read it.
		const auto crowd = a.find("iscrowd");
		if (crowd != a.end() && !crowd->is_null() &&
		    (crowd->is_boolean() ? crowd->get<bool>() : whole_number(*crowd, name + ": its iscrowd") != 0))
			return;
		auto it = by_id.find(whole_number(a.at("image_id"), name + ": its image_id"));
		if (it == by_id.end()) {
			unknown_images_++;
			return;
		}
		const auto &b = a.at("bbox");
		// Numbers a float holds (a larger one would be an infinite box, its loss not a number).
		if (!b.is_array() || b.size() != 4 || !std::all_of(b.begin(), b.end(), [](const auto &v) {
			    return v.is_number() && std::fabs(v.template get<double>()) <= FLT_MAX;
		    }))
			throw frcnn::Error(name + ": its bbox is not [x, y, width, height] (numbers a float holds)");
		const float x = b[0], y = b[1], w = b[2], h = b[3];
		if (!std::isfinite(x + w) || !std::isfinite(y + h))
			throw frcnn::Error(name + ": its bbox ends beyond the numbers a float holds");
		if (w < 1 || h < 1)
			return; // torchvision's references drop degenerate boxes too
		const int64_t category = whole_number(a.at("category_id"), name + ": category id");
		// Label 0 is the background in torchvision's detection models.
		if (category < 1 || category > kMaxCategory)
			throw frcnn::Error(name + ": category id " + std::to_string(category) + " is not from 1 to " +
					   std::to_string(kMaxCategory) + " (0 is the background)");
		auto &e = entries_[it->second];
		e.boxes.insert(e.boxes.end(), {x, y, x + w, y + h});
		e.labels.push_back(category);
		labels_seen_.insert(category);
	}

	struct Entry {
		std::string path;
		std::vector<float> boxes;
		std::vector<int64_t> labels;
	};
	std::vector<Entry> entries_;
	std::set<int64_t> labels_seen_;	 // the category ids of the boxes kept
	std::map<int64_t, std::string> category_names_; // "categories", as lines of a labels file
	std::size_t unknown_images_ = 0; // annotations of image ids "images" does not list
};

Sample hflip(Sample s)
{
	const float w = (float)s.image.size(2);
	s.image = s.image.flip({2});
	if (s.target.boxes.numel() > 0) {
		auto b = s.target.boxes;
		s.target.boxes = torch::stack({w - b.select(1, 2), b.select(1, 1), w - b.select(1, 0), b.select(1, 3)}, 1);
	}
	return s;
}

double learning_rate(const Options &o, int epoch, long long iteration, long long total_iterations)
{
	double lr = o.lr;
	if (o.schedule == "cosine")
		lr *= 0.5 * (1 + std::cos(M_PI * (double)iteration / (double)std::max(1LL, total_iterations)));
	else if (o.schedule == "step")
		for (int s : o.lr_steps)
			if (epoch >= s)
				lr *= 0.1;
	if (iteration < o.warmup) // linear warm-up from a thousandth, as torchvision's references
		lr *= 0.001 + (1 - 0.001) * (double)iteration / o.warmup;
	return lr;
}

std::vector<int> parse_int_list(const std::string &s)
{
	std::vector<int> out;
	size_t start = 0;
	while (start <= s.size()) {
		size_t end = s.find(',', start);
		if (end == std::string::npos)
			end = s.size();
		if (end > start)
			out.push_back(frcnn::cli::to_int("--lr-steps", s.substr(start, end - start), 1));
		start = end + 1;
	}
	return out;
}

void progress(int epoch, int epochs, int it, int iterations, const std::map<std::string, double> &avg,
	      double seconds)
{
	const bool tty = isatty(STDERR_FILENO);
	const int width = 24;
	const int filled = iterations > 0 ? width * it / iterations : width;
	std::string bar(filled, '=');
	bar += std::string(width - filled, ' ');
	double total = 0;
	for (auto &[k, v] : avg)
		total += v;
	char line[512];
	std::snprintf(line, sizeof line,
		      "epoch %d/%d [%s] %d/%d loss %.4f (cls %.4f box %.4f obj %.4f rpn %.4f) %.1fs", epoch + 1,
		      epochs, bar.c_str(), it, iterations, total, avg.count("loss_classifier") ? avg.at("loss_classifier") : 0,
		      avg.count("loss_box_reg") ? avg.at("loss_box_reg") : 0,
		      avg.count("loss_objectness") ? avg.at("loss_objectness") : 0,
		      avg.count("loss_rpn_box_reg") ? avg.at("loss_rpn_box_reg") : 0, seconds);
	if (tty)
		std::fprintf(stderr, "\r%s%s", line, it == iterations ? "\n" : "");
	else if (it == iterations || it % 20 == 0)
		std::fprintf(stderr, "%s\n", line);
}

// Refuses an --output that cannot be written before any training: an epoch can take hours.
void check_output(const std::string &output)
{
	struct stat st;
	if (::stat(output.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
		throw Error("--output '" + output + "' is a folder; give the checkpoint's file name");
	const std::string temporary = output + ".tmp";
	const bool existed = ::access(temporary.c_str(), F_OK) == 0;
	if (!std::ofstream(temporary, std::ios::app))
		throw Error("cannot write --output: '" + temporary + "' cannot be created (" +
			    std::strerror(errno) + ")");
	if (!existed)
		std::remove(temporary.c_str());
}

// An epoch's files. The checkpoint and the momentum are written whole under names of their epoch
// (FILE.epochN, FILE.optimizer.epochN); then FILE.json, written under another name and moved,
// says that the epoch is done, and the two take their places. A stop at any point leaves
// FILE.json of the epoch before, with its files in place, or of this epoch, whose files --resume
// moves into place where the stop came before they were: never a checkpoint of one epoch beside
// FILE.json of another (which would train an epoch twice).
std::string epoch_file(const std::string &path, int epoch)
{
	return path + ".epoch" + std::to_string(epoch);
}

void move_file(const std::string &from, const std::string &to)
{
	if (std::rename(from.c_str(), to.c_str()) != 0)
		throw Error("cannot move '" + from + "' to '" + to + "': " + std::strerror(errno));
}

// Puts the files of `epoch`, which FILE.json says is done, in place where they are still under
// their epoch's names; files of the epoch after it were never done and go.
void install_epoch_files(const std::string &checkpoint, int epoch)
{
	for (const std::string &path : { checkpoint, checkpoint + ".optimizer" }) {
		const std::string staged = epoch_file(path, epoch);
		if (::access(staged.c_str(), F_OK) == 0)
			move_file(staged, path);
		std::remove(epoch_file(path, epoch + 1).c_str());
		std::remove((epoch_file(path, epoch + 1) + ".partial").c_str()); /* write_checkpoint's */
	}
}

// What --resume needs besides the weights and the momentum: FILE.json, written after every epoch.
struct ResumeState {
	int epoch = 0;
	std::string arch;
	int num_classes = 0;
	int trainable_layers = -1; // -1: not written (files of earlier versions): the preset's
	// LibTorch's random state at the end of the epoch (its sampling of anchors and proposals),
	// in hexadecimal; empty in files of earlier versions.
	std::string random_state;
};

std::string to_hex(const torch::Tensor &bytes)
{
	static const char digits[] = "0123456789abcdef";
	const torch::Tensor contiguous = bytes.contiguous();
	const uint8_t *data = contiguous.data_ptr<uint8_t>();
	std::string text;
	text.reserve(contiguous.numel() * 2);
	for (int64_t i = 0; i < contiguous.numel(); i++)
		text += {digits[data[i] >> 4], digits[data[i] & 15]};
	return text;
}

torch::Tensor from_hex(const std::string &text, const std::string &path)
{
	const auto digit = [&](char c) {
		if (c >= '0' && c <= '9')
			return c - '0';
		if (c >= 'a' && c <= 'f')
			return c - 'a' + 10;
		throw Error("cannot resume: '" + path + "' has a damaged random_state");
	};
	if (text.size() % 2 != 0)
		throw Error("cannot resume: '" + path + "' has a damaged random_state");
	torch::Tensor bytes = torch::empty({(int64_t)text.size() / 2}, torch::kUInt8);
	uint8_t *data = bytes.data_ptr<uint8_t>();
	for (size_t i = 0; i < text.size(); i += 2)
		data[i / 2] = (uint8_t)(digit(text[i]) * 16 + digit(text[i + 1]));
	return bytes;
}

// LibTorch's CPU generator: what the anchor and proposal samplers draw from.
torch::Tensor random_state()
{
	auto generator = at::detail::getDefaultCPUGenerator();
	std::lock_guard<std::mutex> lock(generator.mutex());
	return generator.get_state();
}

void set_random_state(const torch::Tensor &state, const std::string &path)
{
	auto generator = at::detail::getDefaultCPUGenerator();
	std::lock_guard<std::mutex> lock(generator.mutex());
	try {
		generator.set_state(state);
	} catch (const c10::Error &e) {
		throw Error("cannot resume: '" + path + "' has a random_state of another LibTorch (" +
			    e.what_without_backtrace() + ")");
	}
}

ResumeState read_resume_state(const std::string &checkpoint)
{
	const std::string path = checkpoint + ".json";
	std::ifstream in(path);
	if (!in)
		throw Error("cannot resume: '" + path + "' (written next to the checkpoint) is missing");
	try {
		nlohmann::json j;
		in >> j;
		ResumeState state;
		state.epoch = j.at("epoch").get<int>();
		state.arch = j.at("arch").get<std::string>();
		state.num_classes = j.at("num_classes").get<int>();
		state.trainable_layers = j.value("trainable_layers", -1);
		state.random_state = j.value("random_state", std::string());
		return state;
	} catch (const nlohmann::json::exception &e) {
		throw Error("cannot resume: '" + path + "' is not what --output writes: " + e.what());
	}
}

// The model preset a checkpoint's tensors are for, or an empty string when they fit none.
std::string arch_of(const frcnn::Checkpoint &checkpoint)
{
	try {
		return frcnn::detect_arch(checkpoint.tensors);
	} catch (const Error &) {
		return {};
	}
}

// A resumed run's log keeps the lines of the epochs before `epoch` only: a run stopped within
// an epoch wrote some of its lines, which the resumed run writes again from the epoch's start.
void keep_log_before(const std::string &path, int epoch)
{
	std::ifstream in(path);
	if (!in)
		return; /* nothing logged yet: the log starts here */
	std::string kept, line;
	bool dropped = false;
	while (std::getline(in, line)) {
		const nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
		if (entry.is_object() && entry.value("epoch", epoch) < epoch)
			kept += line + "\n";
		else
			dropped = true;
	}
	if (!dropped)
		return;
	const std::string temporary = path + ".tmp";
	std::ofstream out(temporary, std::ios::trunc);
	out << kept;
	out.close();
	if (!out || std::rename(temporary.c_str(), path.c_str()) != 0)
		throw Error("cannot write the log '" + path + "': " + std::strerror(errno));
}

// Refuses more trainable backbone layers than the model has: before the data is read (with
// --arch, before anything), not when the model is built.
void check_trainable_layers(const std::string &arch, int trainable_layers)
{
	const int most = frcnn::model_preset(arch).backbone == "resnet" ? 5 : 6;
	if (trainable_layers > most)
		throw Error("--trainable-layers " + std::to_string(trainable_layers) + ": model '" + arch + "' has 0 to " +
			    std::to_string(most) + " trainable backbone layers");
}

// Gives the parameters that train their momentum from the run that wrote `path`. Buffers are
// named after their parameters (files of earlier versions number them: then the parameters must
// be the same, in the same order). A parameter the run did not train starts without momentum,
// as a new one in torch.optim.SGD does.
void restore_momentum(torch::optim::SGD &sgd, const std::vector<torch::Tensor> &params,
		      const std::vector<std::string> &names, const std::string &path)
{
	const frcnn::Checkpoint saved = frcnn::read_checkpoint(path);
	const std::string prefix = "momentum.";
	const bool numbered = !saved.tensors.empty() &&
			      std::all_of(saved.tensors.begin(), saved.tensors.end(), [&](const auto &entry) {
				      return entry.first.size() > prefix.size() &&
					     entry.first.find_first_not_of("0123456789", prefix.size()) == std::string::npos;
			      });
	std::map<std::string, torch::Tensor> by_name;
	for (const auto &[key, tensor] : saved.tensors)
		by_name.emplace(key.rfind(prefix, 0) == 0 ? key.substr(prefix.size()) : key, tensor);
	if (numbered && saved.tensors.size() != params.size())
		throw Error("cannot resume: '" + path + "' holds the momentum of " + std::to_string(saved.tensors.size()) +
			    " parameters and the model trains " + std::to_string(params.size()) +
			    ": give the --trainable-layers of the run that wrote it");
	auto &state = sgd.state();
	for (size_t i = 0; i < params.size(); i++) {
		const auto found = by_name.find(numbered ? std::to_string(i) : names[i]);
		if (found == by_name.end())
			continue;
		if (found->second.sizes() != params[i].sizes())
			throw Error("cannot resume: the momentum of '" + names[i] + "' in '" + path + "' is of shape " +
				    c10::str(found->second.sizes()) + ", the parameter of shape " +
				    c10::str(params[i].sizes()) +
				    (numbered ? ": give the --trainable-layers of the run that wrote it" : ""));
		auto buffer = std::make_unique<torch::optim::SGDParamState>();
		buffer->momentum_buffer(found->second.to(params[i].dtype()).clone());
		state[c10::guts::to_string(params[i].unsafeGetTensorImpl())] = std::move(buffer);
	}
}

int train(const Options &o)
{
	check_output(o.output);
	if (o.threads > 0)
		torch::set_num_threads(o.threads);
	torch::manual_seed(o.seed);

	// The model: --arch, else the one the weights to resume or fine-tune from are for, else tiny.
	// Its frozen batch norms' eps is the model's own (1e-5), also from the coco preset (0 there):
	// the eps a checkpoint file is run with, by the tools, the element and torchvision.
	std::optional<ResumeState> resumed;
	std::optional<frcnn::Checkpoint> initial; // --weights
	std::string held_arch;			  // the model --weights are for ("" when unknown)
	std::string arch = o.arch;
	if (!o.resume.empty()) {
		resumed = read_resume_state(o.resume);
		install_epoch_files(o.resume, resumed->epoch);
		if (resumed->epoch >= o.epochs) {
			std::fprintf(stderr, "frcnn-train: '%s' has been trained for all of --epochs %d already: nothing to do\n",
				     o.resume.c_str(), o.epochs);
			return 0;
		}
		if (arch.empty())
			arch = resumed->arch;
	} else if (!o.init_weights.empty()) {
		const auto preset = frcnn::weights_preset_of(o.init_weights);
		const std::string path = frcnn::resolve_weights(o.init_weights, frcnn::terminal_progress_bar());
		initial = frcnn::cli::reading_weights(o.init_weights, path, [&] { return frcnn::read_checkpoint(path); });
		held_arch = preset ? preset->arch : arch_of(*initial);
		if (arch.empty() && held_arch.empty())
			throw Error("the weights '" + o.init_weights + "' fit none of the models: give --arch");
		if (arch.empty())
			arch = held_arch;
	}
	if (arch.empty())
		arch = "tiny";
	check_trainable_layers(arch, o.trainable_layers);

	std::unique_ptr<Dataset> data;
	int num_classes = o.num_classes > 0 ? o.num_classes : resumed ? resumed->num_classes : 0;
	if (o.synthetic == "shapes") {
		data = std::make_unique<ShapesDataset>(o.width, o.height, o.seed,
						       (size_t)o.iterations * o.batch_size * o.epochs);
		const int shapes_classes = (int)frcnn::shapes_class_names().size();
		if (num_classes == 0)
			num_classes = shapes_classes;
		if (num_classes < shapes_classes)
			throw Error("--num-classes " + std::to_string(num_classes) + " is too few for the shapes, whose labels go up to " +
				    std::to_string(shapes_classes - 1) + ": give at least " + std::to_string(shapes_classes) +
				    " (the background and the shapes), or leave it out");
	} else {
		auto coco = std::make_unique<CocoDataset>(o.coco_json, o.images_dir);
		if (num_classes == 0 && coco->max_label() == 0)
			throw Error("'" + o.coco_json + "' has no boxes to train on (crowd boxes and boxes under a pixel " +
				    "wide or high are left out), so the number of classes cannot be told: give --num-classes " +
				    "to train on images without objects");
		if (num_classes == 0)
			num_classes = (int)coco->max_label() + 1;
		if (coco->max_label() >= num_classes)
			throw Error("the dataset has category id " + std::to_string(coco->max_label()) +
				    " but --num-classes is " + std::to_string(num_classes));
		data = std::move(coco);
	}

	const std::vector<std::string> class_names = data->class_names(num_classes);
	frcnn::ModelConfig config = frcnn::model_preset(arch);
	config.num_classes = num_classes;
	if (o.min_size > 0)
		config.min_size = o.min_size;
	if (o.max_size > 0)
		config.max_size = o.max_size;
	// Resumed: the layers the run trained, unless told otherwise (layers that start training
	// then start without momentum).
	if (o.trainable_layers >= 0)
		config.trainable_backbone_layers = o.trainable_layers;
	else if (resumed && resumed->trainable_layers >= 0)
		config.trainable_backbone_layers = resumed->trainable_layers;
	if (o.rpn_pre_nms > 0)
		config.rpn_pre_nms_top_n_train = o.rpn_pre_nms;
	if (o.rpn_post_nms > 0)
		config.rpn_post_nms_top_n_train = o.rpn_post_nms;
	if (o.box_batch > 0)
		config.box_batch_size_per_image = o.box_batch;
	frcnn::FasterRCNN model(config);

	const bool synthetic = !o.synthetic.empty();
	const int iterations = synthetic ? o.iterations : (int)((data->size() + o.batch_size - 1) / o.batch_size);
	int start_epoch = 0;
	if (resumed) {
		model->load_state_dict(frcnn::read_checkpoint(o.resume));
		start_epoch = resumed->epoch;
	} else if (initial) {
		// Fine-tuning: take every tensor whose shape fits; a different number of classes leaves
		// the box predictor freshly initialised, as torchvision's fine-tuning recipe does.
		const frcnn::Checkpoint &source = *initial;
		auto own = model->state_dict();
		std::map<std::string, torch::Tensor> by_name(own.begin(), own.end());
		frcnn::Checkpoint fitted;
		for (auto &[k, v] : source.tensors) {
			auto it = by_name.find(k);
			if (it != by_name.end() && it->second.sizes() == v.sizes())
				by_name.erase(it), fitted.tensors.emplace_back(k, v);
		}
		// Weights of another model fit in a few places at most (a box predictor, a first
		// convolution): training on would start from random weights without saying so.
		if (fitted.tensors.size() * 2 < source.tensors.size())
			throw Error("only " + std::to_string(fitted.tensors.size()) + " of the " +
				    std::to_string(source.tensors.size()) + " tensors of the weights '" + o.init_weights +
				    "' fit model '" + arch + "'" +
				    (held_arch.empty() || held_arch == arch
					     ? std::string()
					     : ": they are for '" + held_arch + "'; leave --arch out or give --arch " + held_arch));
		for (auto &[k, v] : by_name)
			fitted.tensors.emplace_back(k, v); // keep our initialisation for the rest
		fitted.module_versions = source.module_versions;
		model->load_state_dict(fitted);
	} else {
		// From scratch: frozen batch norm gets the statistics of 16 training images, the same
		// whatever --epochs (so that a run resumed after its first epochs is the run that went
		// on): the last scenes of the first epoch (scene i is a function of i alone, so an
		// epoch of fewer takes scenes of the next), or the last images of a COCO file.
		const size_t last = synthetic ? std::max<size_t>((size_t)iterations * o.batch_size, 16) : data->size();
		std::vector<torch::Tensor> images;
		for (size_t i = 0; i < std::min<size_t>(16, last); i++)
			images.push_back(data->get(last - 1 - i).image);
		model->calibrate_frozen_batch_norm(images);
	}
	model->freeze_backbone_layers(config.trainable_backbone_layers);
	model->train();

	std::vector<torch::Tensor> params;
	std::vector<std::string> param_names;
	for (auto &p : model->named_parameters())
		if (p.value().requires_grad()) {
			params.push_back(p.value());
			param_names.push_back(p.key());
		}
	torch::optim::SGD sgd(params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
	if (resumed)
		restore_momentum(sgd, params, param_names, o.resume + ".optimizer");

	std::ofstream log;
	if (!o.log.empty() && start_epoch > 0)
		keep_log_before(o.log, start_epoch);
	if (!o.log.empty()) {
		log.open(o.log, start_epoch > 0 ? std::ios::app : std::ios::trunc);
		if (!log)
			throw Error("cannot write the log '" + o.log + "'");
	}
	std::mt19937_64 rng(o.seed + 1);
	std::uniform_real_distribution<double> coin(0, 1);
	const long long total_iterations = (long long)iterations * o.epochs;
	std::vector<size_t> order(data->size());
	for (size_t i = 0; i < order.size(); i++)
		order[i] = i;
	// Resumed: the order and the flips go on from where the epochs before left them, and so
	// does LibTorch's sampling, as in a run that had not stopped.
	for (int epoch = 0; epoch < start_epoch; epoch++) {
		if (!synthetic)
			std::shuffle(order.begin(), order.end(), rng);
		for (long long draw = 0; draw < (long long)iterations * o.batch_size; draw++)
			coin(rng);
	}
	if (resumed && !resumed->random_state.empty())
		set_random_state(from_hex(resumed->random_state, o.resume + ".json"), o.resume + ".json");

	for (int epoch = start_epoch; epoch < o.epochs; epoch++) {
		if (!synthetic)
			std::shuffle(order.begin(), order.end(), rng);
		std::map<std::string, double> average;
		const auto start = std::chrono::steady_clock::now();
		for (int it = 0; it < iterations; it++) {
			const long long global = (long long)epoch * iterations + it;
			std::vector<torch::Tensor> images;
			std::vector<frcnn::Target> targets;
			for (int b = 0; b < o.batch_size; b++) {
				size_t index = synthetic ? (size_t)global * o.batch_size + b
							 : order[((size_t)it * o.batch_size + b) % order.size()];
				Sample s = data->get(index % data->size());
				if (coin(rng) < o.hflip)
					s = hflip(std::move(s));
				images.push_back(s.image);
				targets.push_back(s.target);
			}
			const double lr = learning_rate(o, epoch, global, total_iterations);
			for (auto &group : sgd.param_groups())
				static_cast<torch::optim::SGDOptions &>(group.options()).lr(lr);
			auto result = model->run(images, &targets);
			torch::Tensor total = torch::zeros({});
			nlohmann::ordered_json entry{{"epoch", epoch}, {"iteration", global}, {"lr", lr}};
			for (auto &[name, value] : result.losses) {
				total = total + value;
				const double v = value.item<double>();
				average[name] += (v - average[name]) / (it + 1);
				entry[name] = v;
			}
			if (!std::isfinite(total.item<double>()))
				throw Error("the loss became " + std::to_string(total.item<double>()) + " at iteration " +
					    std::to_string(global) + ": lower --lr");
			sgd.zero_grad();
			total.backward();
			sgd.step();
			if (log.is_open()) {
				errno = 0;
				log << entry.dump() << "\n" << std::flush;
				if (!log)
					throw Error("cannot write the log '" + o.log + "'" +
						    (errno ? std::string(": ") + std::strerror(errno) : ""));
			}
			const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
			progress(epoch, o.epochs, it + 1, iterations, average, seconds);
		}

		// A last step can still make weights that are not finite (the loss before it was):
		// such a checkpoint would detect nothing, without a word.
		for (const auto &parameter : model->named_parameters()) {
			if (!torch::isfinite(parameter.value()).all().item<bool>())
				throw Error("training diverged in epoch " + std::to_string(epoch + 1) + ": '" +
					    parameter.key() + "' is no longer finite; lower --lr (nothing written for this epoch)");
		}
		// The checkpoint and the momentum under the epoch's names, then FILE.json, which says
		// the epoch is done, then the two in place (see epoch_file).
		const int done = epoch + 1;
		model->eval();
		frcnn::write_checkpoint(epoch_file(o.output, done), model->state_dict());
		model->train();
		frcnn::StateDict momentum;
		auto &state = sgd.state();
		for (size_t i = 0; i < params.size(); i++) {
			auto it = state.find(c10::guts::to_string(params[i].unsafeGetTensorImpl()));
			auto buffer = it != state.end()
					      ? static_cast<torch::optim::SGDParamState &>(*it->second).momentum_buffer()
					      : torch::zeros_like(params[i]);
			momentum.emplace_back("momentum." + param_names[i], buffer.defined() ? buffer : torch::zeros_like(params[i]));
		}
		frcnn::write_checkpoint(epoch_file(o.output + ".optimizer", done), momentum);
		const std::string state_path = o.output + ".json", state_temporary = state_path + ".tmp";
		std::ofstream state_file(state_temporary);
		state_file << nlohmann::json{{"epoch", done},
					     {"arch", arch},
					     {"num_classes", num_classes},
					     {"trainable_layers", config.trainable_backbone_layers},
					     {"random_state", to_hex(random_state())}}
				      .dump()
			   << "\n";
		state_file.close();
		if (!state_file)
			throw Error("cannot write '" + state_temporary + "', which --resume needs as '" + state_path + "'");
		move_file(state_temporary, state_path);
		install_epoch_files(o.output, done);
		// The class names, for frcnndetect's labels (the same each epoch; written whole under
		// another name and moved, as FILE.json).
		const std::string labels_path = o.output + ".labels", labels_temporary = labels_path + ".tmp";
		std::ofstream labels_file(labels_temporary);
		for (const std::string &name : class_names)
			labels_file << name << "\n";
		labels_file.close();
		if (!labels_file)
			throw Error("cannot write '" + labels_temporary + "', the class names (FILE.labels)");
		move_file(labels_temporary, labels_path);
	}
	std::fprintf(stderr, "wrote %s\n", o.output.c_str());
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
	Options o;
	try {
		for (int i = 1; i < argc; i++) {
			const auto next = frcnn::cli::next_arg(argc, argv, i);
			const std::string &arg = next.name, &value = next.value;
			if (arg == "--help" || arg == "-h") {
				usage(stdout);
				return frcnn::cli::help_status("frcnn-train");
			}
			if (!next.option())
				throw Error("unexpected argument '" + arg + "': the data and the output are given by options (see --help)");
			const auto to_int = [&](int min = 0, int max = INT_MAX) {
				return frcnn::cli::to_int(arg, value, min, max);
			};
			// A number in [min, max] (or above min when `above`): NaN and infinities are refused.
			const auto to_double = [&](double min, double max, bool above = false) {
				const double v = frcnn::cli::to_double(arg, value);
				if (!std::isfinite(v) || v < min || (above && v == min) || v > max) {
					const auto text = [](double number) {
						char buffer[32];
						std::snprintf(buffer, sizeof buffer, "%g", number);
						return std::string(buffer);
					};
					const std::string up_to = std::isfinite(max) ? " to " + text(max) : std::string();
					throw Error("option " + arg + " needs a number " +
						    (above ? "above " + text(min) + up_to
							   : std::isfinite(max) ? "from " + text(min) + up_to : ">= " + text(min)) +
						    ", got '" + value + "'");
				}
				return v;
			};
			constexpr double kUnbounded = std::numeric_limits<double>::infinity();
			if (arg == "--arch") {
				frcnn::model_preset(value); // an unknown name is an option error
				o.arch = value;
			}
			else if (arg == "--num-classes") o.num_classes = to_int(0, frcnn::kMostClasses);
			else if (arg == "--trainable-layers") o.trainable_layers = to_int(0, 6);
			else if (arg == "--weights") o.init_weights = value;
			else if (arg == "--synthetic") o.synthetic = value;
			else if (arg == "--coco-json") o.coco_json = value;
			else if (arg == "--images") o.images_dir = value;
			else if (arg == "--epochs") o.epochs = to_int(1);
			else if (arg == "--iterations") o.iterations = to_int(1);
			else if (arg == "--batch-size") o.batch_size = to_int(1);
			// The rate becomes a float in LibTorch's optimizer.
			else if (arg == "--lr") o.lr = to_double(0, std::numeric_limits<float>::max(), true);
			else if (arg == "--momentum") o.momentum = to_double(0, 1);
			else if (arg == "--weight-decay") o.weight_decay = to_double(0, kUnbounded);
			else if (arg == "--schedule") o.schedule = value;
			else if (arg == "--lr-steps") o.lr_steps = parse_int_list(value);
			else if (arg == "--warmup") o.warmup = to_int(0);
			else if (arg == "--hflip") o.hflip = to_double(0, 1);
			else if (arg == "--resume") o.resume = value;
			else if (arg == "--output") o.output = value;
			else if (arg == "--log") o.log = value;
			else if (arg == "--seed") o.seed = (uint64_t)frcnn::cli::to_int(arg, value, 0);
			else if (arg == "--threads") o.threads = to_int(0, 1024);
			else if (arg == "--min-size") o.min_size = to_int(0, 8192);
			else if (arg == "--max-size") o.max_size = to_int(0, 8192);
			else if (arg == "--width") o.width = to_int(8, 16384);
			else if (arg == "--height") o.height = to_int(8, 16384);
			else if (arg == "--rpn-pre-nms") o.rpn_pre_nms = to_int(0);
			else if (arg == "--rpn-post-nms") o.rpn_post_nms = to_int(0);
			else if (arg == "--box-batch-size") o.box_batch = to_int(0);
			else throw Error("unknown option " + arg + " (see --help)");
		}
		if (o.schedule != "cosine" && o.schedule != "step" && o.schedule != "constant")
			throw Error("--schedule must be cosine, step or constant, got '" + o.schedule + "'");
		if (!o.synthetic.empty() && !o.coco_json.empty())
			throw Error("--synthetic and --coco-json both given: train on one of them");
		if (!o.synthetic.empty() && o.synthetic != "shapes")
			throw Error("unknown --synthetic '" + o.synthetic + "' (known: shapes)");
		if (o.synthetic.empty() && o.coco_json.empty())
			throw Error("no data: use --synthetic shapes or --coco-json FILE --images DIR");
		if (!o.coco_json.empty() && o.images_dir.empty())
			throw Error("--coco-json needs --images DIR, the folder its file names are in");
		if (o.output.empty())
			throw Error("no --output given: where should the checkpoint go?");
		if (!o.resume.empty() && !o.init_weights.empty())
			throw Error("--resume continues from the weights it wrote: leave --weights out");
		if (!o.arch.empty())
			check_trainable_layers(o.arch, o.trainable_layers);
		if (o.schedule != "step" && !o.lr_steps.empty())
			throw Error("--lr-steps is for --schedule step: give both, or leave --lr-steps out");
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-train: %s\n", e.what());
		return 2;
	}
	try {
		return train(o);
	} catch (const std::exception &e) {
		// On a terminal the progress bar may hold the line: end it first.
		std::fprintf(stderr, "%sfrcnn-train: %s\n", isatty(STDERR_FILENO) ? "\n" : "",
			     frcnn::cli::error_text(e).c_str());
		return 1;
	}
}

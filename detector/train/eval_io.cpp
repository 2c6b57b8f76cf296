// SPDX-License-Identifier: BSD-3-Clause
// Reading ground truth and detections for evaluate_coco() (frcnnjson's JSON lines, COCO files),
// and writing its results.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "frcnn/detail/json.h"
#include "frcnn/error.h"
#include "frcnn/evaluation.h"

namespace frcnn {

namespace {

using json = nlohmann::json;

std::string read_text(const std::string &path)
{
	// An ifstream opens a folder and reads nothing from it, without an error.
	std::error_code ec;
	if (std::filesystem::is_directory(path, ec))
		throw Error("'" + path + "' is a folder, not a file");
	std::ifstream in(path, std::ios::binary);
	if (!in)
		throw Error("cannot open '" + path + "' for reading");
	std::ostringstream s;
	s << in.rdbuf();
	if (in.bad())
		throw Error("cannot read '" + path + "'");
	return s.str();
}

// Where a message about the input points to.
struct Where {
	const std::string &path;
	std::size_t line; // 0: the whole file
	std::string entry = {}; // in a JSON array: which of its entries ("result 3")

	[[noreturn]] void fail(const std::string &what) const
	{
		throw Error(path + (line ? ":" + std::to_string(line) : std::string()) +
			    (entry.empty() ? std::string() : ": " + entry) + ": " + what);
	}
};

struct Line {
	std::size_t number; // 1-based line number in the file
	json value;
};

// A file parsed as one JSON value (a COCO file), discarded when it is not one (JSON lines are
// read line by line); nesting too deep for that is an error.
json parse_whole_file(const std::string &path, const std::string &text)
{
	try {
		return detail::parse_json(text, true);
	} catch (const detail::JsonTooDeep &e) {
		throw Error(path + ": not valid JSON here: " + e.what());
	} catch (const json::exception &) {
		return json(json::value_t::discarded);
	}
}

// Non-empty lines of a JSON-lines file, each parsed.
std::vector<Line> parse_lines(const std::string &path, const std::string &text)
{
	std::vector<Line> lines;
	std::istringstream in(text);
	std::string s;
	std::size_t number = 0;
	while (std::getline(in, s)) {
		number++;
		if (s.find_first_not_of(" \t\r") == std::string::npos)
			continue;
		json value;
		try {
			value = detail::parse_json(s);
		} catch (const detail::JsonTooDeep &e) {
			Where{ path, number }.fail(std::string("not valid JSON here: ") + e.what());
		} catch (const json::exception &) {
			Where{ path, number }.fail("not valid JSON");
		}
		if (!value.is_object())
			Where{ path, number }.fail("expected a JSON object per line, got " +
						   std::string(value.type_name()));
		lines.push_back({ number, std::move(value) });
	}
	return lines;
}

double number(const json &v, const Where &where, const std::string &what)
{
	if (!v.is_number())
		where.fail(what + " must be a number, got " + v.dump());
	const double x = v.get<double>();
	if (!std::isfinite(x))
		where.fail(what + " must be finite, got " + v.dump());
	return x;
}

// An annotation's area: a number from 0 (a negative one would stand for none given, the box's).
double read_area(const json &v, const Where &where, const std::string &what)
{
	const double area = number(v, where, what);
	if (area < 0)
		where.fail(what + " must not be negative, got " + v.dump());
	return area;
}

int64_t integer(const json &v, const Where &where, const std::string &what)
{
	if (!v.is_number_integer())
		where.fail(what + " must be an integer, got " + v.dump());
	// nlohmann keeps integers above INT64_MAX unsigned: get<int64_t> would wrap them.
	if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
		where.fail(what + " must be at most " + std::to_string(INT64_MAX) + ", got " + v.dump());
	return v.get<int64_t>();
}

// A string value of an entry, or `fallback` where it has none.
std::string text_of(const json &entry, const char *key, const std::string &fallback, const Where &where)
{
	auto it = entry.find(key);
	if (it == entry.end() || it->is_null())
		return fallback;
	if (!it->is_string())
		where.fail(std::string("\"") + key + "\" must be a string, got a " + it->type_name());
	return it->get<std::string>();
}

// [x1, y1, x2, y2] from "box", or [x, y, w, h] from a COCO "bbox".
// A box as read: its corners, and for a COCO [x, y, width, height] box its size as given.
struct ReadBox {
	double x1, y1, x2, y2;
	CocoSize coco_size;

	template <typename Boxed> void into(Boxed &boxed) const
	{
		boxed.x1 = x1, boxed.y1 = y1, boxed.x2 = x2, boxed.y2 = y2;
		boxed.coco_size = coco_size;
	}
};

ReadBox read_box(const json &entry, const Where &where)
{
	const bool coco = !entry.contains("box") && entry.contains("bbox");
	const json &v = coco ? entry["bbox"] : entry.value("box", json());
	if (!v.is_array() || v.size() != 4)
		where.fail(std::string(coco ? "\"bbox\"" : "\"box\"") +
			   " must be an array of 4 numbers, got " + v.dump());
	std::array<double, 4> b;
	for (int k = 0; k < 4; k++)
		b[k] = number(v[k], where, coco ? "\"bbox\"" : "\"box\"");
	ReadBox box{ b[0], b[1], b[2], b[3], {} };
	if (coco) {
		if (b[2] < 0 || b[3] < 0)
			where.fail("box " + v.dump() + " has a negative width or height");
		box.x2 = b[0] + b[2];
		box.y2 = b[1] + b[3];
		box.coco_size = { b[2], b[3] };
	}
	if (box.x2 < box.x1 || box.y2 < box.y1)
		where.fail("box " + v.dump() + " has a negative width or height");
	return box;
}

// A box's category as the file gives it: an id, a name, or both.
struct LabelRef {
	bool has_id = false;
	int64_t id = 0;
	std::string name;
};

LabelRef read_label(const json &entry, const Where &where)
{
	LabelRef ref;
	for (const char *key : { "label_id", "category_id" }) {
		auto it = entry.find(key);
		if (it != entry.end() && !it->is_null()) {
			ref.has_id = true;
			ref.id = integer(*it, where, std::string("\"") + key + "\"");
			break;
		}
	}
	auto label = entry.find("label");
	if (label != entry.end()) {
		if (label->is_string())
			ref.name = label->get<std::string>();
		else if (label->is_number_integer() && !ref.has_id) {
			ref.has_id = true;
			ref.id = integer(*label, where, "\"label\"");
		} else if (!label->is_null() && !label->is_number_integer())
			where.fail("\"label\" must be a name or an id, got " + label->dump());
	}
	return ref;
}

bool read_crowd(const json &entry, const Where &where)
{
	for (const char *key : { "iscrowd", "crowd" }) {
		auto it = entry.find(key);
		if (it == entry.end() || it->is_null())
			continue;
		if (it->is_boolean())
			return it->get<bool>();
		return integer(*it, where, std::string("\"") + key + "\"") != 0;
	}
	return false;
}

int read_size(const json &line, const char *key, const Where &where)
{
	auto it = line.find(key);
	if (it == line.end() || it->is_null())
		return 0;
	const int64_t size = integer(*it, where, std::string("\"") + key + "\"");
	if (size < 0 || size > INT32_MAX)
		where.fail(std::string("\"") + key + "\" must be from 0 to " + std::to_string(INT32_MAX) + ", got " +
			   std::to_string(size));
	return static_cast<int>(size);
}

// A JSON line's "pts" in nanoseconds; -1 when it has none (missing, null, or GStreamer's
// GST_CLOCK_TIME_NONE, 2^64 - 1).
int64_t read_pts(const json &line, const Where &where)
{
	auto it = line.find("pts");
	if (it == line.end() || it->is_null())
		return -1;
	if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
		return -1;
	const int64_t pts = integer(*it, where, "\"pts\"");
	if (pts < 0)
		where.fail("\"pts\" must not be negative, got " + std::to_string(pts));
	return pts;
}

std::string basename(const std::string &path)
{
	const auto slash = path.find_last_of('/');
	return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Categories of the ground truth, by id and by name.
class Categories {
public:
	explicit Categories(EvalDataset &dataset) : dataset_(dataset)
	{
		for (const EvalCategory &c : dataset.categories) {
			by_id_.emplace(c.id, c.id);
			by_name_.emplace(c.name, c.id);
		}
	}

	// Ground truth: registers the category when new.
	int64_t add(const LabelRef &ref, const Where &where)
	{
		if (ref.has_id) {
			if (ref.id < 0)
				where.fail("a category id must not be negative, got " +
					   std::to_string(ref.id));
			if (by_id_.count(ref.id) == 0) {
				const std::string name =
					ref.name.empty() ? "class " + std::to_string(ref.id) : ref.name;
				dataset_.categories.push_back({ ref.id, name });
				by_id_.emplace(ref.id, ref.id);
				by_name_.emplace(name, ref.id);
			}
			return ref.id;
		}
		if (ref.name.empty())
			where.fail("a box has neither \"label_id\" nor \"label\"");
		auto it = by_name_.find(ref.name);
		if (it != by_name_.end())
			return it->second;
		// Named without an id: a negative id of its own, that no detection id can take.
		const int64_t id = -static_cast<int64_t>(dataset_.categories.size()) - 1;
		dataset_.categories.push_back({ id, ref.name });
		by_id_.emplace(id, id);
		by_name_.emplace(ref.name, id);
		return id;
	}

	// Detections: the ground-truth category, or false for one the ground truth lacks.
	bool find(const LabelRef &ref, int64_t &id) const
	{
		if (ref.has_id && ref.id >= 0 && by_id_.count(ref.id)) {
			id = ref.id;
			return true;
		}
		if (ref.name.empty())
			return false;
		auto it = by_name_.find(ref.name);
		if (it == by_name_.end() || (ref.has_id && it->second >= 0))
			return false;
		id = it->second;
		return true;
	}

private:
	EvalDataset &dataset_;
	std::map<int64_t, int64_t> by_id_;
	std::multimap<std::string, int64_t> by_name_;
};

EvalDataset load_coco_ground_truth(const std::string &path, const json &root)
{
	const Where where{ path, 0 };
	EvalDataset dataset;
	dataset.coco = true;

	const json &categories = root.value("categories", json::array());
	if (!categories.is_array())
		where.fail("\"categories\" must be an array");
	/* By id, as pycocotools keeps them (a dict): an id listed twice is one category, with the
	 * name listed last, and categories are evaluated in id order. */
	std::map<int64_t, std::string> known_categories;
	for (std::size_t i = 0; i < categories.size(); i++) {
		const json &c = categories[i];
		const Where where{ path, 0, "categories[" + std::to_string(i) + "]" };
		if (!c.is_object() || !c.contains("id"))
			where.fail("each category needs an \"id\", got " + c.dump());
		const int64_t id = integer(c["id"], where, "a category's \"id\"");
		// As the JSON-lines ground truth's label ids (Categories::add): detections name
		// categories by ids from 0.
		if (id < 0)
			where.fail("a category id must not be negative, got " + std::to_string(id));
		known_categories[id] = text_of(c, "name", "class " + std::to_string(id), where);
	}
	for (const auto &[id, name] : known_categories)
		dataset.categories.push_back({ id, name });

	const json &images = root["images"];
	if (!images.is_array())
		where.fail("\"images\" must be an array");
	std::map<int64_t, std::size_t> image_index;
	for (std::size_t i = 0; i < images.size(); i++) {
		const json &im = images[i];
		const Where where{ path, 0, "images[" + std::to_string(i) + "]" };
		if (!im.is_object() || !im.contains("id"))
			where.fail("each image needs an \"id\", got " + im.dump());
		EvalImage image;
		image.id = integer(im["id"], where, "an image's \"id\"");
		if (!image_index.emplace(image.id, dataset.images.size()).second)
			where.fail("image id " + std::to_string(image.id) + " appears twice");
		image.name = text_of(im, "file_name", std::string(), where);
		image.width = read_size(im, "width", where);
		image.height = read_size(im, "height", where);
		dataset.images.push_back(std::move(image));
	}

	const json &annotations = root.value("annotations", json::array());
	if (!annotations.is_array())
		where.fail("\"annotations\" must be an array");
	for (std::size_t i = 0; i < annotations.size(); i++) {
		const json &a = annotations[i];
		const Where where{ path, 0, "annotations[" + std::to_string(i) + "]" };
		if (!a.is_object())
			where.fail("each annotation must be an object, got " + a.dump());
		const int64_t image_id = integer(a.value("image_id", json()), where,
						 "an annotation's \"image_id\"");
		auto im = image_index.find(image_id);
		if (im == image_index.end())
			where.fail("an annotation names image " + std::to_string(image_id) +
				   ", which \"images\" does not list");
		const int64_t category = integer(a.value("category_id", json()), where,
						 "an annotation's \"category_id\"");
		// COCOeval only evaluates the listed categories.
		if (known_categories.count(category) == 0)
			continue;
		EvalGroundTruth g;
		read_box(a, where).into(g);
		g.category = category;
		g.crowd = read_crowd(a, where);
		if (a.contains("area") && !a["area"].is_null())
			g.area = read_area(a["area"], where, "an annotation's \"area\"");
		dataset.images[im->second].ground_truth.push_back(g);
	}
	return dataset;
}

/* A category the ground truth named without an id on some lines and with one id on others is
 * that id's: its boxes of the lines before the id came are moved to it, so that the order of
 * the lines does not split a class in two. A name given with several ids stays apart. */
void merge_named_categories(EvalDataset &dataset)
{
	std::map<int64_t, int64_t> merged; // name-only id -> the id of that name
	for (const EvalCategory &named : dataset.categories) {
		if (named.id >= 0)
			continue;
		int64_t id = -1;
		int ids = 0;
		for (const EvalCategory &other : dataset.categories) {
			if (other.id >= 0 && other.name == named.name) {
				id = other.id;
				ids++;
			}
		}
		if (ids == 1)
			merged[named.id] = id;
	}
	if (merged.empty())
		return;
	for (EvalImage &image : dataset.images) {
		for (EvalGroundTruth &g : image.ground_truth) {
			const auto it = merged.find(g.category);
			if (it != merged.end())
				g.category = it->second;
		}
	}
	dataset.categories.erase(std::remove_if(dataset.categories.begin(), dataset.categories.end(),
						[&](const EvalCategory &c) { return merged.count(c.id) != 0; }),
				 dataset.categories.end());
}

EvalDataset load_lines_ground_truth(const std::string &path, const std::string &text)
{
	EvalDataset dataset;
	Categories categories(dataset);
	std::map<int64_t, std::size_t> seen;
	std::size_t position = 0;
	for (const Line &line : parse_lines(path, text)) {
		const Where where{ path, line.number };
		const json &v = line.value;
		EvalImage image;
		auto frame = v.find("frame");
		image.id = frame != v.end() && !frame->is_null() ? integer(*frame, where, "\"frame\"")
								  : static_cast<int64_t>(position);
		position++;
		if (!seen.emplace(image.id, line.number).second)
			where.fail("frame " + std::to_string(image.id) + " appears twice (first on line " +
				   std::to_string(seen[image.id]) + ")");
		if (v.contains("image") && v["image"].is_string())
			image.name = v["image"].get<std::string>();
		image.width = read_size(v, "width", where);
		image.height = read_size(v, "height", where);
		image.pts = read_pts(v, where);
		const json &boxes = v.value("detections", json());
		if (!boxes.is_array())
			where.fail("\"detections\" must be an array of boxes");
		for (const json &entry : boxes) {
			if (!entry.is_object())
				where.fail("each box must be an object, got " + entry.dump());
			EvalGroundTruth g;
			read_box(entry, where).into(g);
			g.category = categories.add(read_label(entry, where), where);
			g.crowd = read_crowd(entry, where);
			if (entry.contains("area") && !entry["area"].is_null())
				g.area = read_area(entry["area"], where, "\"area\"");
			image.ground_truth.push_back(g);
		}
		dataset.images.push_back(std::move(image));
	}
	merge_named_categories(dataset);
	// Categories with ids in id order (as COCOeval sorts them), name-only ones after them.
	std::stable_sort(dataset.categories.begin(), dataset.categories.end(),
			 [](const EvalCategory &a, const EvalCategory &b) {
				 if ((a.id < 0) != (b.id < 0))
					 return a.id >= 0;
				 return a.id >= 0 ? a.id < b.id : a.id > b.id;
			 });
	return dataset;
}

// Which image of the ground truth a detection line or result belongs to.
class ImageLookup {
public:
	explicit ImageLookup(EvalDataset &dataset) : dataset_(dataset)
	{
		for (std::size_t i = 0; i < dataset.images.size(); i++) {
			const EvalImage &im = dataset.images[i];
			by_id_.emplace(im.id, i);
			if (!im.name.empty()) {
				by_name_.emplace(im.name, i);
				by_basename_.emplace(basename(im.name), i);
			}
		}
	}

	EvalImage &find(const json &v, std::size_t position, const Where &where) const
	{
		auto id = v.find("image_id");
		if (id != v.end() && !id->is_null()) {
			const int64_t n = integer(*id, where, "\"image_id\"");
			auto it = by_id_.find(n);
			if (it == by_id_.end())
				where.fail("image_id " + std::to_string(n) + " is not in the ground truth");
			return dataset_.images[it->second];
		}
		auto frame = v.find("frame");
		if (frame != v.end() && !frame->is_null())
			return by_frame(integer(*frame, where, "\"frame\""), where);
		auto name = v.find("image");
		if (name != v.end() && name->is_string())
			return by_name(name->get<std::string>(), where);
		return by_frame(static_cast<int64_t>(position), where);
	}

private:
	// The image of that file name, else the one whose name ends in the most of the same path
	// components (at least the file's own); two that end alike leave it open, which is said.
	EvalImage &by_name(const std::string &name, const Where &where) const
	{
		const auto [same, end_of_same] = by_name_.equal_range(name);
		if (same != end_of_same && std::next(same) == end_of_same)
			return dataset_.images[same->second];
		if (same != end_of_same)
			where.fail("image '" + name + "' is the name of several ground-truth images");
		const std::vector<std::string> wanted = path_components(name);
		std::size_t longest = 0;
		std::vector<std::size_t> found;
		const auto [first, last] = by_basename_.equal_range(basename(name));
		for (auto candidate = first; candidate != last; ++candidate) {
			const std::vector<std::string> has = path_components(dataset_.images[candidate->second].name);
			std::size_t common = 0;
			while (common < has.size() && common < wanted.size() &&
			       has[has.size() - 1 - common] == wanted[wanted.size() - 1 - common])
				common++;
			if (common == 0)
				continue; // a name ending in '/' (an empty file name) is no file's
			if (common > longest)
				longest = common, found.clear();
			if (common == longest)
				found.push_back(candidate->second);
		}
		if (found.empty())
			where.fail("image '" + name + "' is not in the ground truth");
		if (found.size() > 1)
			where.fail("image '" + name + "' ends as several ground-truth images do ('" +
				   dataset_.images[found[0]].name + "', '" + dataset_.images[found[1]].name +
				   "'...): name it by as much of its path as tells them apart");
		return dataset_.images[found[0]];
	}

	static std::vector<std::string> path_components(const std::string &path)
	{
		std::vector<std::string> components;
		std::istringstream in(path);
		for (std::string part; std::getline(in, part, '/');)
			if (!part.empty())
				components.push_back(part);
		return components;
	}

	EvalImage &by_frame(int64_t frame, const Where &where) const
	{
		if (dataset_.coco) {
			if (frame < 0 || static_cast<std::size_t>(frame) >= dataset_.images.size())
				where.fail("frame " + std::to_string(frame) +
					   " is past the ground truth's " +
					   std::to_string(dataset_.images.size()) + " images");
			return dataset_.images[static_cast<std::size_t>(frame)];
		}
		auto it = by_id_.find(frame);
		if (it == by_id_.end())
			where.fail("frame " + std::to_string(frame) +
				   " is not in the ground truth; were both files written from the same "
				   "frames?");
		return dataset_.images[it->second];
	}

	EvalDataset &dataset_;
	std::map<int64_t, std::size_t> by_id_;
	std::multimap<std::string, std::size_t> by_name_;
	std::multimap<std::string, std::size_t> by_basename_; // the images of each file name
};

void add_detection(EvalImage &image, const Categories &categories, const json &entry,
		   const Where &where)
{
	if (!entry.is_object())
		where.fail("each detection must be an object, got " + entry.dump());
	const ReadBox box = read_box(entry, where);
	const LabelRef label = read_label(entry, where);
	if (!entry.contains("score") || entry["score"].is_null())
		where.fail("a detection has no \"score\"");
	EvalDetection d;
	box.into(d);
	d.score = number(entry["score"], where, "\"score\"");
	if (!label.has_id && label.name.empty())
		where.fail("a detection has neither \"label_id\" nor \"label\"");
	// A category the ground truth does not have is not evaluated (COCOeval's rule).
	if (!categories.find(label, d.category))
		return;
	image.detections.push_back(d);
}

} // namespace

EvalDataset load_ground_truth(const std::string &path)
{
	const std::string text = read_text(path);
	const json root = parse_whole_file(path, text);
	EvalDataset dataset = !root.is_discarded() && root.is_object() && root.contains("images")
				      ? load_coco_ground_truth(path, root)
				      : load_lines_ground_truth(path, text);
	// Nothing to evaluate against: a wrong or empty file, not a score of "n/a".
	if (dataset.images.empty())
		throw Error(path + ": no frames or images in the ground truth");
	return dataset;
}

void load_detections(const std::string &path, EvalDataset &dataset)
{
	const std::string text = read_text(path);
	const Categories categories(dataset);
	const ImageLookup images(dataset);

	const json root = parse_whole_file(path, text);
	if (!root.is_discarded() && root.is_array()) {
		// COCO results: [{"image_id", "category_id", "bbox", "score"}, ...]
		for (std::size_t i = 0; i < root.size(); i++) {
			const Where where{ path, 0, "result " + std::to_string(i) };
			const json &r = root[i];
			if (!r.is_object() || !r.contains("image_id"))
				where.fail("no \"image_id\"");
			add_detection(images.find(r, i, where), categories, r, where);
		}
		return;
	}

	// A frame and its detections may be timed apart by a constant (an encoder's delay, a
	// container's edit list) and by a container's rounding, less than half a frame; anything
	// else pairs other frames.
	std::vector<int64_t> truth_times;
	for (const EvalImage &image : dataset.images)
		if (image.pts >= 0)
			truth_times.push_back(image.pts);
	std::sort(truth_times.begin(), truth_times.end());
	int64_t rounding = -1; // half the shortest frame of the ground truth; -1: unknown
	for (std::size_t i = 1; i < truth_times.size(); i++)
		if (truth_times[i] > truth_times[i - 1] &&
		    (rounding < 0 || (truth_times[i] - truth_times[i - 1]) / 2 < rounding))
			rounding = (truth_times[i] - truth_times[i - 1]) / 2;
	std::optional<int64_t> offset; // detections' pts minus the ground truth's, at the first pair
	int64_t offset_frame = 0;

	std::map<int64_t, std::size_t> seen;
	std::size_t position = 0;
	const std::vector<Line> lines = parse_lines(path, text);
	// frcnnjson writes a line for every frame, with or without detections: none is no run.
	if (lines.empty())
		throw Error(path + ": no lines of detections (frcnnjson writes one for every frame)");
	for (const Line &line : lines) {
		const Where where{ path, line.number };
		const json &v = line.value;
		EvalImage &image = images.find(v, position++, where);
		if (!seen.emplace(image.id, line.number).second)
			where.fail("a second line for the frame or image of line " +
				   std::to_string(seen[image.id]));
		const int64_t pts = read_pts(v, where);
		if (pts >= 0 && image.pts >= 0) {
			/* The drift from the first pair in 128 bits: timestamps up to INT64_MAX apart do not
			 * overflow it. */
			if (!offset) {
				offset = pts - image.pts;
				offset_frame = image.id;
			} else if (const __int128 drift = static_cast<__int128>(pts) - image.pts - *offset;
				   (drift < 0 ? -drift : drift) > std::max<int64_t>(rounding, 0)) {
				where.fail("frame " + std::to_string(image.id) + " has pts " + std::to_string(pts) +
					   " but the ground truth's frame " + std::to_string(image.id) +
					   " has pts " + std::to_string(image.pts) + ", " +
					   std::to_string(pts - image.pts) + " ns apart where frame " +
					   std::to_string(offset_frame) + " was " + std::to_string(*offset) +
					   "; the files do not describe the same frames (a seek, or frames "
					   "dropped or added between them?)");
			}
		}
		const int width = read_size(v, "width", where), height = read_size(v, "height", where);
		if (width > 0 && height > 0 && image.width > 0 && image.height > 0 &&
		    (width != image.width || height != image.height))
			where.fail("the frame is " + std::to_string(width) + "x" + std::to_string(height) +
				   " but the ground truth's is " + std::to_string(image.width) + "x" +
				   std::to_string(image.height) + "; boxes would not be comparable");
		const json &boxes = v.value("detections", json());
		if (!boxes.is_array())
			where.fail("\"detections\" must be an array of boxes");
		for (const json &entry : boxes)
			add_detection(image, categories, entry, where);
		// frcnnjson's "skipped": the detectors that passed the frame on without a run.
		const json &skipped = v.value("skipped", json());
		if (!skipped.is_null() && !skipped.is_array())
			where.fail("\"skipped\" must be an array");
		if (skipped.is_array() && !skipped.empty())
			image.not_run = true;
	}
}

namespace {

// Class names as keys: unique, the id added where a name repeats.
std::vector<std::string> class_keys(const EvalResult &result)
{
	std::map<std::string, int> uses;
	for (const CategoryResult &c : result.per_class)
		uses[c.name]++;
	std::vector<std::string> keys;
	for (const CategoryResult &c : result.per_class)
		keys.push_back(uses[c.name] > 1 ? c.name + " (id " + std::to_string(c.id) + ")"
						: c.name);
	return keys;
}

json ap_value(double ap)
{
	return ap < 0 ? json(nullptr) : json(ap);
}

std::string ap_text(double ap)
{
	if (ap < 0)
		return "  n/a";
	char buffer[32];
	std::snprintf(buffer, sizeof(buffer), "%.3f", ap);
	return buffer;
}

} // namespace

std::string eval_result_json(const EvalResult &result)
{
	nlohmann::ordered_json out;
	out["AP"] = ap_value(result.ap);
	out["AP50"] = ap_value(result.ap50);
	out["AP75"] = ap_value(result.ap75);
	out["APs"] = ap_value(result.ap_small);
	out["APm"] = ap_value(result.ap_medium);
	out["APl"] = ap_value(result.ap_large);
	nlohmann::ordered_json per_class = nlohmann::ordered_json::object();
	const std::vector<std::string> keys = class_keys(result);
	for (std::size_t i = 0; i < keys.size(); i++)
		per_class[keys[i]] = ap_value(result.per_class[i].ap);
	out["per_class"] = std::move(per_class);
	out["images"] = result.images;
	out["images_not_run"] = result.images_not_run;
	out["ground_truth"] = result.ground_truth;
	out["detections"] = result.detections;
	return out.dump();
}

std::string eval_result_table(const EvalResult &result)
{
	std::ostringstream s;
	s << result.images << " images, " << result.ground_truth << " ground-truth boxes, "
	  << result.detections << " detections";
	if (result.images_not_run > 0)
		s << " (" << result.images_not_run << " frames left out: the detector did not run on them)";
	s << "\n\n";
	s << "AP   " << ap_text(result.ap) << "   IoU 0.50:0.95, all areas, detections: at most " << result.max_detections
	  << " per image and class\n";
	s << "AP50 " << ap_text(result.ap50) << "   IoU 0.50\n";
	s << "AP75 " << ap_text(result.ap75) << "   IoU 0.75\n";
	s << "APs  " << ap_text(result.ap_small) << "   small (area up to 32^2)\n";
	s << "APm  " << ap_text(result.ap_medium) << "   medium\n";
	s << "APl  " << ap_text(result.ap_large) << "   large (area from 96^2)\n\n";

	const std::vector<std::string> keys = class_keys(result);
	std::size_t width = 5;
	for (const std::string &k : keys)
		width = std::max(width, k.size());
	/* The class column as wide as its longest name (names may be long: not through a buffer of
	 * fixed size), the numbers after it. */
	char numbers[128];
	std::snprintf(numbers, sizeof(numbers), "  %5s  %5s  %5s  %8s  %10s\n", "AP", "AP50", "AP75", "boxes",
		      "detections");
	s << "class" << std::string(width - 5, ' ') << numbers;
	for (std::size_t i = 0; i < keys.size(); i++) {
		const CategoryResult &c = result.per_class[i];
		s << keys[i] << std::string(width - keys[i].size(), ' ');
		std::snprintf(numbers, sizeof(numbers), "  %5s  %5s  %5s  %8d  %10d\n", ap_text(c.ap).c_str(),
			      ap_text(c.ap50).c_str(), ap_text(c.ap75).c_str(), c.ground_truth, c.detections);
		s << numbers;
	}
	return s.str();
}

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
#include "labels.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <glib.h>

#include "frcnn/detail/regular_file.h"
#include "frcnn/error.h"

namespace frcnn::gst {

namespace {

std::string trim(const std::string &text)
{
	const char *space = " \t\r\n";
	std::size_t begin = text.find_first_not_of(space);
	if (begin == std::string::npos)
		return {};
	std::size_t end = text.find_last_not_of(space);
	return text.substr(begin, end - begin + 1);
}

bool equal_nocase(const std::string &a, const std::string &b)
{
	return a.size() == b.size() &&
	       std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
		       return std::tolower(static_cast<unsigned char>(x)) ==
			      std::tolower(static_cast<unsigned char>(y));
	       });
}

// The entries of a comma-separated value, trimmed, empty ones left out.
std::vector<std::string> comma_entries(const std::string &spec)
{
	std::vector<std::string> entries;
	std::istringstream stream(spec);
	std::string entry;
	while (std::getline(stream, entry, ',')) {
		entry = trim(entry);
		if (!entry.empty())
			entries.push_back(entry);
	}
	return entries;
}

} // namespace

const std::vector<std::string> &coco_category_names()
{
	static const std::vector<std::string> names{
		"__background__", "person", "bicycle", "car", "motorcycle", "airplane",
		"bus", "train", "truck", "boat", "traffic light", "fire hydrant",
		"N/A", "stop sign", "parking meter", "bench", "bird", "cat",
		"dog", "horse", "sheep", "cow", "elephant", "bear",
		"zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A",
		"N/A", "handbag", "tie", "suitcase", "frisbee", "skis",
		"snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
		"surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup",
		"fork", "knife", "spoon", "bowl", "banana", "apple",
		"sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
		"donut", "cake", "chair", "couch", "potted plant", "bed",
		"N/A", "dining table", "N/A", "N/A", "toilet", "N/A",
		"tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
		"microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
		"book", "clock", "vase", "scissors", "teddy bear", "hair drier",
		"toothbrush",
	};
	return names;
}

bool NoCaseLess::operator()(const std::string &a, const std::string &b) const
{
	return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
		return std::tolower(static_cast<unsigned char>(x)) < std::tolower(static_cast<unsigned char>(y));
	});
}

ObjectClasses parse_object_classes(const std::string &spec)
{
	const std::vector<std::string> entries = comma_entries(spec);
	return ObjectClasses(entries.begin(), entries.end());
}

std::string label_name(const std::vector<std::string> &labels, int64_t id)
{
	if (id >= 0 && static_cast<std::size_t>(id) < labels.size())
		return labels[id];
	return "class " + std::to_string(id);
}

std::vector<std::string> default_labels(int num_classes)
{
	if (num_classes == static_cast<int>(coco_category_names().size()))
		return coco_category_names();

	std::vector<std::string> labels;
	for (int id = 0; id < num_classes; id++)
		labels.push_back(id == 0 ? "__background__" : "class " + std::to_string(id));
	return labels;
}

std::vector<std::string> read_labels_file(const std::string &path, int num_classes)
{
	/* The element's message says what to give instead. */
	frcnn::detail::require_regular_file(path, "labels file");
	std::ifstream file(path);
	if (!file)
		throw Error("cannot open labels file '" + path + "': " + std::strerror(errno));

	std::vector<std::string> lines;
	std::string line;
	while (std::getline(file, line)) {
		/* A byte order mark (Windows editors write one to UTF-8 files) is no part of the
		 * first name. */
		static const std::string byte_order_mark = "\xef\xbb\xbf";
		if (lines.empty() && line.compare(0, byte_order_mark.size(), byte_order_mark) == 0)
			line.erase(0, byte_order_mark.size());
		/* Names go into metadata, JSON and the overlay's text, all UTF-8 (and C strings). */
		if (line.find('\0') != std::string::npos)
			throw Error("labels file '" + path + "' holds a NUL byte (line " + std::to_string(lines.size() + 1) +
				    "): it is no text file; give one name a line, in UTF-8");
		if (!g_utf8_validate(line.data(), static_cast<gssize>(line.size()), nullptr))
			throw Error("labels file '" + path + "' is not UTF-8 text (line " +
				    std::to_string(lines.size() + 1) + "): save it as UTF-8");
		lines.push_back(trim(line));
	}
	if (file.bad())
		throw Error("cannot read labels file '" + path + "'");
	while (!lines.empty() && lines.back().empty())
		lines.pop_back();

	const int count = static_cast<int>(lines.size());
	if (count == num_classes || count == num_classes - 1) {
		/* An empty line amid the names would shift every name after it by one class, or
		 * make the count fit with a name missing: refused, naming the line (the background's
		 * line may be empty: its name is never shown). */
		const int first_class_line = count == num_classes ? 1 : 0;
		for (int i = first_class_line; i < count; i++)
			if (lines[i].empty())
				throw Error("line " + std::to_string(i + 1) + " of labels file '" + path +
					    "' is empty: every class needs a name (e.g. N/A for a class the "
					    "model does not use)");
		if (count == num_classes - 1)
			lines.insert(lines.begin(), "__background__");
		return lines;
	}

	std::ostringstream msg;
	msg << "labels file '" << path << "' has " << count << " names but the model has "
	    << num_classes << " classes: give " << num_classes
	    << " names (background first) or " << num_classes - 1 << " (without background)";
	throw Error(msg.str());
}

/* Class 0 is the background, which the model never detects: a filter of it would keep nothing
 * (ids counted from 0, as other detectors count them, are one off here). */
static Error background_error(const std::string &token, const std::vector<std::string> &labels)
{
	return Error("class '" + token + "' is the background (id 0), which the model does not detect: its classes " +
		     "are ids 1.." + std::to_string(labels.size() - 1) +
		     (labels.size() > 1 ? " (1 is '" + labels[1] + "')" : std::string()));
}

std::set<int64_t> parse_classes(const std::string &spec, const std::vector<std::string> &labels)
{
	std::set<int64_t> ids;
	for (const std::string &token : comma_entries(spec)) {

		if (std::all_of(token.begin(), token.end(),
				[](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
			int64_t id = -1;
			try {
				id = std::stoll(token);
			} catch (const std::out_of_range &) {
			}
			if (id < 0 || id >= static_cast<int64_t>(labels.size()))
				throw Error("class id " + token + " is out of range: the model has " +
					    std::to_string(labels.size()) + " classes (0.." +
					    std::to_string(labels.size() - 1) + ")");
			if (id == 0)
				throw background_error(token, labels);
			ids.insert(id);
			continue;
		}

		bool found = false, background = false;
		for (std::size_t id = 0; id < labels.size(); id++) {
			if (equal_nocase(labels[id], token)) {
				if (id == 0) {
					background = true;
					continue;
				}
				ids.insert(static_cast<int64_t>(id));
				found = true;
			}
		}
		if (!found && background)
			throw background_error(token, labels);
		if (!found)
			throw Error("unknown class '" + token +
				    "': use a name from the labels or a class id");
	}
	return ids;
}

std::map<int64_t, double> parse_class_thresholds(const std::string &spec,
						 const std::vector<std::string> &labels)
{
	std::map<int64_t, double> thresholds;
	for (const std::string &entry : comma_entries(spec)) {
		const std::size_t equals = entry.rfind('=');
		if (equals == std::string::npos)
			throw Error("'" + entry + "' is not class=score");
		const std::string name = trim(entry.substr(0, equals));
		const std::string number = trim(entry.substr(equals + 1));
		if (name.empty())
			throw Error("'" + entry + "' names no class");
		/* A dot whatever the locale (a comma separates the entries). */
		char *end = nullptr;
		const double score = number.empty() ? -1 : g_ascii_strtod(number.c_str(), &end);
		if (number.empty() || *end != '\0' || !(score >= 0 && score <= 1))
			throw Error("the score of '" + entry + "' is not a number from 0 to 1");
		for (int64_t id : parse_classes(name, labels))
			thresholds[id] = score;
	}
	return thresholds;
}

} // namespace frcnn::gst

// SPDX-License-Identifier: BSD-3-Clause
#include "frcnn/labels.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <locale>
#include <sstream>

#include <nlohmann/json.hpp>

#include "frcnn/detail/regular_file.h"
#include "frcnn/error.h"

namespace frcnn {

namespace {

// What a name or a list entry may have at either end: left out.
constexpr const char *kSpaces = " \t\r\n";

std::string trim(const std::string &text, const char *space)
{
	const std::size_t begin = text.find_first_not_of(space);
	if (begin == std::string::npos)
		return {};
	const std::size_t end = text.find_last_not_of(space);
	return text.substr(begin, end - begin + 1);
}

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): nlohmann-json's strict serialisation checks exactly that.
bool is_utf8(const std::string &text)
{
	try {
		(void)nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
		return true;
	} catch (const nlohmann::json::type_error &) {
		return false;
	}
}

bool equal_nocase(const std::string &a, const std::string &b)
{
	return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
		       return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
	       });
}

// Class 0 is the background, which the model never detects: a filter of it would keep nothing
// (ids counted from 0, as other detectors count them, are one off here).
Error background_error(const std::string &entry, const std::vector<std::string> &labels)
{
	return Error("class '" + entry + "' is the background (id 0), which the model does not detect: its classes " +
		     "are ids 1.." + std::to_string(labels.size() - 1) +
		     (labels.size() > 1 ? " (1 is '" + labels[1] + "')" : std::string()));
}

Error unknown_class_error(const std::string &entry)
{
	return Error("unknown class '" + entry + "': use a name from the labels or a class id");
}

bool is_class_id(const std::string &entry)
{
	return !entry.empty() &&
	       std::all_of(entry.begin(), entry.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// A score from 0 to 1 as written in a list, a dot its decimal point whatever the locale (a comma
// separates the entries); -1 for anything else.
double score_of(const std::string &number)
{
	std::istringstream stream(number);
	stream.imbue(std::locale::classic());
	double score = -1;
	if (!(stream >> score) || stream.peek() != std::char_traits<char>::eof() || !(score >= 0 && score <= 1))
		return -1;
	return score;
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

std::string unnamed_class_name(int64_t id)
{
	return "class " + std::to_string(id);
}

const std::string &unused_class_name()
{
	static const std::string name = "N/A";
	return name;
}

std::string label_name(const std::vector<std::string> &labels, int64_t id)
{
	if (id >= 0 && static_cast<std::size_t>(id) < labels.size())
		return labels[id];
	return unnamed_class_name(id);
}

std::vector<std::string> default_labels(int num_classes)
{
	if (num_classes == static_cast<int>(coco_category_names().size()))
		return coco_category_names();

	std::vector<std::string> labels;
	for (int id = 0; id < num_classes; id++)
		labels.push_back(id == 0 ? coco_category_names()[0] : unnamed_class_name(id));
	return labels;
}

std::vector<std::string> read_labels_file_names(const std::string &path)
{
	/* The caller's message says what to give instead. */
	detail::require_regular_file(path, "labels file");
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
		if (!is_utf8(line))
			throw Error("labels file '" + path + "' is not UTF-8 text (line " +
				    std::to_string(lines.size() + 1) + "): save it as UTF-8");
		lines.push_back(trim(line, kSpaces));
	}
	if (file.bad())
		throw Error("cannot read labels file '" + path + "'");
	while (!lines.empty() && lines.back().empty())
		lines.pop_back();
	return lines;
}

std::vector<std::string> labels_of_file_names(std::vector<std::string> lines, const std::string &path, int num_classes)
{
	const int count = static_cast<int>(lines.size());
	if (count == num_classes || count == num_classes - 1) {
		/* An empty line amid the names would shift every name after it by one class, or
		 * make the count fit with a name missing: refused, naming the line (the background's
		 * line may be empty: its name is never shown). */
		const int first_class_line = count == num_classes ? 1 : 0;
		for (int i = first_class_line; i < count; i++)
			if (lines[i].empty())
				throw Error("line " + std::to_string(i + 1) + " of labels file '" + path +
					    "' is empty: every class needs a name (e.g. " + unused_class_name() +
					    " for a class the model does not use)");
		if (count == num_classes - 1)
			lines.insert(lines.begin(), coco_category_names()[0]);
		return lines;
	}

	std::ostringstream msg;
	msg << "labels file '" << path << "' has " << count << " names but the model has "
	    << num_classes << " classes: give " << num_classes
	    << " names (background first) or " << num_classes - 1 << " (without background)";
	throw Error(msg.str());
}

std::vector<std::string> read_labels_file(const std::string &path, int num_classes)
{
	return labels_of_file_names(read_labels_file_names(path), path, num_classes);
}

std::string labels_file_line(const std::string &name)
{
	std::string line;
	for (const char c : name)
		line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
	return trim(line, " ");
}

std::vector<std::string> comma_separated(const std::string &list)
{
	std::vector<std::string> entries;
	std::istringstream stream(list);
	std::string entry;
	while (std::getline(stream, entry, ',')) {
		entry = trim(entry, kSpaces);
		if (!entry.empty())
			entries.push_back(entry);
	}
	return entries;
}

std::set<int64_t> parse_classes(const std::string &list, const std::vector<std::string> &labels)
{
	std::set<int64_t> ids;
	for (const std::string &entry : comma_separated(list)) {
		if (is_class_id(entry)) {
			int64_t id = -1;
			try {
				id = std::stoll(entry);
			} catch (const std::out_of_range &) {
			}
			if (id < 0 || id >= static_cast<int64_t>(labels.size()))
				throw Error("class id " + entry + " is out of range: the model has " +
					    std::to_string(labels.size()) + " classes (0.." +
					    std::to_string(labels.size() - 1) + ")");
			if (id == 0)
				throw background_error(entry, labels);
			ids.insert(id);
			continue;
		}

		bool found = false, background = false;
		for (std::size_t id = 0; id < labels.size(); id++) {
			if (!equal_nocase(labels[id], entry))
				continue;
			if (id == 0) {
				background = true;
				continue;
			}
			ids.insert(static_cast<int64_t>(id));
			found = true;
		}
		if (!found && background)
			throw background_error(entry, labels);
		if (!found)
			throw unknown_class_error(entry);
	}
	return ids;
}

std::vector<std::pair<std::string, double>> split_class_thresholds(const std::string &list)
{
	std::vector<std::pair<std::string, double>> entries;
	for (const std::string &entry : comma_separated(list)) {
		const std::size_t equals = entry.rfind('=');
		if (equals == std::string::npos)
			throw Error("'" + entry + "' is not class=score");
		std::string name = trim(entry.substr(0, equals), kSpaces);
		const std::string number = trim(entry.substr(equals + 1), kSpaces);
		if (name.empty())
			throw Error("'" + entry + "' names no class");
		const double score = score_of(number);
		if (score < 0)
			throw Error("the score of '" + entry + "' is not a number from 0 to 1");
		entries.emplace_back(std::move(name), score);
	}
	return entries;
}

std::map<int64_t, double> class_thresholds_by_id(const std::vector<std::pair<std::string, double>> &entries,
						 const std::vector<std::string> &labels)
{
	std::map<int64_t, double> thresholds;
	for (const auto &[name, score] : entries)
		for (int64_t id : parse_classes(name, labels))
			thresholds[id] = score;
	return thresholds;
}

std::map<int64_t, double> parse_class_thresholds(const std::string &list, const std::vector<std::string> &labels)
{
	return class_thresholds_by_id(split_class_thresholds(list), labels);
}

void check_class_names(const std::vector<std::string> &entries, const std::vector<std::string> *file_names)
{
	const std::vector<std::string> &names = file_names ? *file_names : coco_category_names();
	for (const std::string &entry : entries) {
		if (is_class_id(entry))
			continue;
		/* The background's name is parse_classes()' to refuse, with its own message. */
		if (equal_nocase(entry, coco_category_names()[0]))
			continue;
		if (std::any_of(names.begin(), names.end(), [&](const std::string &name) { return equal_nocase(name, entry); }))
			continue;
		/* Without a labels file, a model of other than COCO's 91 classes names them "class N". */
		const std::size_t space = entry.rfind(' ');
		const std::string number = space == std::string::npos ? std::string() : entry.substr(space + 1);
		/* (Up to 18 digits: within std::stoll's range.) */
		if (!file_names && is_class_id(number) && number.size() < 19 &&
		    equal_nocase(entry, unnamed_class_name(std::stoll(number))))
			continue;
		throw unknown_class_error(entry);
	}
}

void check_class_names(const std::vector<std::pair<std::string, double>> &class_thresholds,
		       const std::vector<std::string> *file_names)
{
	std::vector<std::string> names;
	for (const auto &entry : class_thresholds)
		names.push_back(entry.first);
	check_class_names(names, file_names);
}

double lowest_score_threshold(double score_threshold, const std::map<int64_t, double> &class_thresholds)
{
	for (const auto &[label, threshold] : class_thresholds)
		score_threshold = std::min(score_threshold, threshold);
	return score_threshold;
}

bool kept_by_class(int64_t label, float score, const std::set<int64_t> &classes,
		   const std::map<int64_t, double> &class_thresholds, double score_threshold)
{
	if (!classes.empty() && !classes.count(label))
		return false;
	const auto own = class_thresholds.find(label);
	return score > static_cast<float>(own == class_thresholds.end() ? score_threshold : own->second);
}

} // namespace frcnn

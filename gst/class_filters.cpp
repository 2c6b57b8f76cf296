// SPDX-License-Identifier: BSD-3-Clause
#include "class_filters.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include <glib.h>

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

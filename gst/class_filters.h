// SPDX-License-Identifier: BSD-3-Clause
// The element's class filters: `classes`, `class-thresholds` and `object-class`, over the names
// of frcnn/labels.h. No GStreamer in here, so the rules can be tested on their own.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "frcnn/labels.h"

namespace frcnn::gst {

// Parses a `classes` value: names or ids separated by commas ("person, car, 3"). Names match
// labels case-insensitively; a name shared by several ids selects them all. Throws frcnn::Error
// naming the first unknown entry. An empty value gives an empty set (no filter).
std::set<int64_t> parse_classes(const std::string &spec, const std::vector<std::string> &labels);

// Parses a `class-thresholds` value: entries "class=score" separated by commas, the class a
// name or an id as in parse_classes() (a name shared by several ids sets them all), the score in
// 0..1 ("person=0.7, car=0.3, 3=0.4"). Throws frcnn::Error naming the first bad entry. An empty
// value gives an empty map.
std::map<int64_t, double> parse_class_thresholds(const std::string &spec,
						 const std::vector<std::string> &labels);

// Orders names regardless of ASCII case, so that a set of them finds "Car" for "car".
struct NoCaseLess {
	bool operator()(const std::string &a, const std::string &b) const;
};
using ObjectClasses = std::set<std::string, NoCaseLess>;

// Parses an `object-class` value: region-of-interest types (label names, compared regardless of
// ASCII case, as `classes`) separated by commas ("car, traffic light"). An empty value gives an
// empty set (every type).
ObjectClasses parse_object_classes(const std::string &spec);

} // namespace frcnn::gst

// SPDX-License-Identifier: BSD-3-Clause
// The element's `object-class` filter: the types of regions of interest to detect inside. (The
// `classes` and `class-thresholds` lists are libfrcnn's, frcnn/labels.h.) No GStreamer in here,
// so the rules can be tested on their own.
#pragma once

#include <set>
#include <string>

namespace frcnn::gst {

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

// SPDX-License-Identifier: BSD-3-Clause
#include "class_filters.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "frcnn/labels.h"

namespace frcnn::gst {

bool NoCaseLess::operator()(const std::string &a, const std::string &b) const
{
	return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
		return std::tolower(static_cast<unsigned char>(x)) < std::tolower(static_cast<unsigned char>(y));
	});
}

ObjectClasses parse_object_classes(const std::string &spec)
{
	const std::vector<std::string> entries = frcnn::comma_separated(spec);
	return ObjectClasses(entries.begin(), entries.end());
}

} // namespace frcnn::gst

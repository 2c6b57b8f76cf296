// SPDX-License-Identifier: BSD-3-Clause
// JSON read from files and properties with a limit on its nesting. nlohmann's parser takes any
// depth, but its dump() and comparisons recurse: a value nested a hundred thousand levels (a few
// hundred kilobytes of brackets) overflows the stack where a message shows it. For the library,
// its tools and the elements; not installed (it needs nlohmann-json's headers).
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace frcnn::detail {

constexpr int kMostJsonDepth = 1000;

// What parse_json throws for more than kMostJsonDepth arrays and objects one in another.
struct JsonTooDeep : std::runtime_error {
	JsonTooDeep() : std::runtime_error("nested deeper than " + std::to_string(kMostJsonDepth) + " levels") {}
};

// Json::parse(input), and JsonTooDeep for deeper nesting. With allow_exceptions false, as
// nlohmann's: a discarded value for text that is not JSON, or nested too deep.
template <typename Json = nlohmann::json, typename Input>
Json parse_json(Input &&input, bool allow_exceptions = true)
{
	// `depth` is that of an array or object about to open: the containers around it.
	const auto limit = [](int depth, typename Json::parse_event_t event, Json &) {
		if ((event == Json::parse_event_t::array_start || event == Json::parse_event_t::object_start) &&
		    depth >= kMostJsonDepth)
			throw JsonTooDeep();
		return true;
	};
	try {
		return Json::parse(std::forward<Input>(input), limit, allow_exceptions);
	} catch (const JsonTooDeep &) {
		if (allow_exceptions)
			throw;
		return Json(Json::value_t::discarded);
	}
}

} // namespace frcnn::detail

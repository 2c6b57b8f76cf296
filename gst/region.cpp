// SPDX-License-Identifier: BSD-3-Clause
#include "region.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "frcnn/error.h"

namespace frcnn::gst {

std::string Region::text() const
{
	return std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(width) + "," +
	       std::to_string(height);
}

std::optional<Region> parse_region(const std::string &text)
{
	if (text.find_first_not_of(" \t") == std::string::npos)
		return std::nullopt;
	std::vector<long> numbers;
	std::size_t start = 0;
	while (true) {
		const std::size_t comma = text.find(',', start);
		const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos
											 : comma - start);
		const std::size_t first = part.find_first_not_of(" \t");
		const std::size_t last = part.find_last_not_of(" \t");
		const std::string number = first == std::string::npos ? "" : part.substr(first, last - first + 1);
		char *end = nullptr;
		errno = 0;
		const long value = number.empty() ? 0 : std::strtol(number.c_str(), &end, 10);
		if (number.empty() || *end != '\0' || errno == ERANGE || value < 0 || value > 1 << 20)
			throw Error("'" + number + "' is not a pixel count");
		numbers.push_back(value);
		if (comma == std::string::npos)
			break;
		start = comma + 1;
	}
	if (numbers.size() != 4)
		throw Error(std::to_string(numbers.size()) + " numbers instead of 4");
	if (numbers[2] == 0 || numbers[3] == 0)
		throw Error("the width and height must be positive");
	return Region{ static_cast<int>(numbers[0]), static_cast<int>(numbers[1]),
		       static_cast<int>(numbers[2]), static_cast<int>(numbers[3]) };
}

Region fit_region(const Region &region, int frame_width, int frame_height, bool even_start)
{
	int x1 = std::min(region.x, frame_width), y1 = std::min(region.y, frame_height);
	const int x2 = std::min(region.x + region.width, frame_width);
	const int y2 = std::min(region.y + region.height, frame_height);
	if (x1 >= x2 || y1 >= y2)
		throw Error("the region " + region.text() + " lies outside the " +
			    std::to_string(frame_width) + "x" + std::to_string(frame_height) + " frames");
	if (even_start) {
		x1 -= x1 % 2;
		y1 -= y1 % 2;
	}
	return Region{ x1, y1, x2 - x1, y2 - y1 };
}

} // namespace frcnn::gst

// SPDX-License-Identifier: BSD-3-Clause
#include "region.h"

#include <algorithm>
#include <cerrno>
#include <climits>
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
		if (number.empty() || *end != '\0' || value < 0)
			throw Error("'" + number + "' is not a pixel count");
		/* Any count up to an int's: the region is cut to the frame (in 64 bits). */
		if (errno == ERANGE || value > INT_MAX)
			throw Error("'" + number + "' is beyond " + std::to_string(INT_MAX) + " pixels");
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

std::optional<Region> fit_rectangle(unsigned int x, unsigned int y, unsigned int width,
				    unsigned int height, int frame_width, int frame_height,
				    StartGrid grid)
{
	/* In 64 bits: metadata may hold any unsigned values. */
	const long long right = std::min<long long>(static_cast<long long>(x) + width, frame_width);
	const long long bottom = std::min<long long>(static_cast<long long>(y) + height, frame_height);
	long long left = std::min<long long>(x, frame_width), top = std::min<long long>(y, frame_height);
	if (left >= right || top >= bottom)
		return std::nullopt;
	if (grid.column_step > 1)
		left -= left % grid.column_step;
	if (grid.row_step > 1)
		top -= top % grid.row_step;
	return Region{ static_cast<int>(left), static_cast<int>(top), static_cast<int>(right - left),
		       static_cast<int>(bottom - top) };
}

Region fit_region(const Region &region, int frame_width, int frame_height, StartGrid grid)
{
	const std::optional<Region> inside =
		fit_rectangle(region.x, region.y, region.width, region.height, frame_width,
			      frame_height, grid);
	if (!inside)
		throw Error("the region " + region.text() + " lies outside the " +
			    std::to_string(frame_width) + "x" + std::to_string(frame_height) + " frames");
	return *inside;
}

} // namespace frcnn::gst

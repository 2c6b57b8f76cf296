// SPDX-License-Identifier: BSD-3-Clause
// The rectangles of a frame the element's detector looks at: its `region`, or the regions of
// interest of inference-region=roi-list cut to the frame. No GStreamer in here, so the rules can
// be tested on their own.
#pragma once

#include <optional>
#include <string>

namespace frcnn::gst {

// A rectangle in frame pixels.
struct Region {
	int x = 0, y = 0, width = 0, height = 0;

	bool operator==(const Region &other) const
	{
		return x == other.x && y == other.y && width == other.width && height == other.height;
	}
	std::string text() const; // "x,y,width,height"
};

// Parses "x,y,width,height" (pixels; spaces around the numbers allowed; width and height
// positive). An empty value gives no region (the whole frame). Throws frcnn::Error saying what
// is wrong otherwise.
std::optional<Region> parse_region(const std::string &text);

// Where a rectangle of a frame may start: where a chroma sample starts. Columns are even in 4:2:2
// and 4:2:0 frames (a chroma sample covers two pixels of a row), multiples of 6 in v210 ones (6
// pixels' samples share 4 words); rows are even in 4:2:0 frames, and multiples of 4 in
// interlaced ones (a chroma row of the top field).
struct StartGrid {
	int column_step = 1;
	int row_step = 1;
};

// The part of `region` inside a frame of frame_width x frame_height, its left and top edges moved
// left and up onto the frame's start grid, its right and bottom edges staying. Throws
// frcnn::Error when no part of it lies inside the frame.
Region fit_region(const Region &region, int frame_width, int frame_height, StartGrid grid);

// The same for a rectangle as region-of-interest metadata gives it (unsigned, unchecked):
// nothing when it is empty or no part of it lies inside the frame.
std::optional<Region> fit_rectangle(unsigned int x, unsigned int y, unsigned int width,
				    unsigned int height, int frame_width, int frame_height,
				    StartGrid grid);

} // namespace frcnn::gst

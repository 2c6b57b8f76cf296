// SPDX-License-Identifier: BSD-3-Clause
// Frames of random bytes in any pixel format, for the tests of the pre-processing paths.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "frcnn/detector.h"
#include "frcnn/frame.h"

namespace frcnn::test {

// A frame of random bytes in `format` with padded strides; the views point into `storage`.
inline FrameView random_frame(PixelFormat format, int width, int height, std::mt19937 &rng,
			      std::vector<std::vector<uint8_t>> &storage)
{
	FrameView f;
	f.format = format;
	f.width = width;
	f.height = height;
	const int bpp = packed_bytes_per_pixel(format);
	const int cw = (width + 1) / 2, ch = (height + 1) / 2;
	std::vector<std::pair<int, int>> planes; // rows, row bytes
	if (bpp > 0)
		planes = {{height, width * bpp}};
	else if (format == PixelFormat::NV12)
		planes = {{height, width}, {ch, cw * 2}};
	else
		planes = {{height, width}, {ch, cw}, {ch, cw}};
	std::uniform_int_distribution<int> byte(0, 255);
	storage.resize(planes.size());
	for (size_t p = 0; p < planes.size(); p++) {
		const int stride = planes[p].second + 13; // padded rows
		storage[p].resize((size_t)stride * planes[p].first);
		for (auto &b : storage[p])
			b = (uint8_t)byte(rng);
		f.planes[p] = storage[p].data();
		f.strides[p] = stride;
	}
	return f;
}

// Every pixel format frames come in.
inline const std::vector<PixelFormat> &all_pixel_formats()
{
	static const std::vector<PixelFormat> formats{
		PixelFormat::RGB,  PixelFormat::BGR,  PixelFormat::RGBx, PixelFormat::BGRx,
		PixelFormat::xRGB, PixelFormat::xBGR, PixelFormat::RGBA, PixelFormat::BGRA,
		PixelFormat::ARGB, PixelFormat::ABGR, PixelFormat::NV12, PixelFormat::I420};
	return formats;
}

} // namespace frcnn::test

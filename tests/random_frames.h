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

// A frame of random bytes in `format` with padded strides (odd: rows of 16-bit samples start at
// odd addresses too); the views point into `storage`. In 10- and 12-bit formats the bits of a
// word outside its sample are random as well. `interlaced`: an interlaced frame, whose 4:2:0
// chroma has (height + 3) / 4 * 2 rows.
inline FrameView random_frame(PixelFormat format, int width, int height, std::mt19937 &rng,
			      std::vector<std::vector<uint8_t>> &storage, bool interlaced = false)
{
	FrameView f;
	f.format = format;
	f.width = width;
	f.height = height;
	f.interlaced = interlaced;
	const int bpp = packed_bytes_per_pixel(format);
	const int cw = (width + 1) / 2, ch = interlaced ? (height + 3) / 4 * 2 : (height + 1) / 2;
	std::vector<std::pair<int, int>> planes; // rows, row bytes
	switch (format) {
	case PixelFormat::NV12:
	case PixelFormat::NV21: planes = {{height, width}, {ch, cw * 2}}; break;
	case PixelFormat::I420:
	case PixelFormat::YV12: planes = {{height, width}, {ch, cw}, {ch, cw}}; break;
	case PixelFormat::Y42B: planes = {{height, width}, {height, cw}, {height, cw}}; break;
	case PixelFormat::NV16:
	case PixelFormat::NV61: planes = {{height, width}, {height, cw * 2}}; break;
	case PixelFormat::NV24: planes = {{height, width}, {height, width * 2}}; break;
	case PixelFormat::Y444: planes = {{height, width}, {height, width}, {height, width}}; break;
	case PixelFormat::YUY2:
	case PixelFormat::UYVY:
	case PixelFormat::YVYU:
	case PixelFormat::VYUY: planes = {{height, cw * 4}}; break;
	// Two bytes per sample.
	case PixelFormat::P010_10LE:
	case PixelFormat::P012_LE:
	case PixelFormat::P016_LE: planes = {{height, width * 2}, {ch, cw * 4}}; break;
	case PixelFormat::I420_10LE:
	case PixelFormat::I420_12LE: planes = {{height, width * 2}, {ch, cw * 2}, {ch, cw * 2}}; break;
	case PixelFormat::I422_10LE:
	case PixelFormat::I422_12LE: planes = {{height, width * 2}, {height, cw * 2}, {height, cw * 2}}; break;
	case PixelFormat::Y444_10LE:
	case PixelFormat::Y444_12LE:
	case PixelFormat::Y444_16LE: planes = {{height, width * 2}, {height, width * 2}, {height, width * 2}}; break;
	case PixelFormat::Y210:
	case PixelFormat::Y212_LE: planes = {{height, cw * 8}}; break;
	case PixelFormat::v210: planes = {{height, (width + 5) / 6 * 16}}; break; // 6 pixels in 4 words
	case PixelFormat::AYUV:
	case PixelFormat::VUYA:
	case PixelFormat::Y410: planes = {{height, width * 4}}; break;
	case PixelFormat::Y412_LE: planes = {{height, width * 8}}; break;
	default: planes = {{height, width * bpp}}; break;
	}
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
		PixelFormat::ARGB, PixelFormat::ABGR, PixelFormat::NV12, PixelFormat::I420,
		PixelFormat::GRAY8, PixelFormat::NV21, PixelFormat::YV12, PixelFormat::Y42B,
		PixelFormat::Y444, PixelFormat::YUY2, PixelFormat::UYVY, PixelFormat::YVYU,
		PixelFormat::VYUY, PixelFormat::NV16, PixelFormat::NV61, PixelFormat::NV24,
		PixelFormat::P010_10LE, PixelFormat::I420_10LE, PixelFormat::I422_10LE, PixelFormat::Y444_10LE,
		PixelFormat::P012_LE, PixelFormat::I420_12LE, PixelFormat::I422_12LE, PixelFormat::Y444_12LE,
		PixelFormat::Y210, PixelFormat::Y212_LE, PixelFormat::v210, PixelFormat::AYUV, PixelFormat::VUYA,
		PixelFormat::P016_LE, PixelFormat::Y444_16LE, PixelFormat::Y410, PixelFormat::Y412_LE};
	return formats;
}

} // namespace frcnn::test

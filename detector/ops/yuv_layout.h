// SPDX-License-Identifier: BSD-3-Clause
// Where the Y, U and V samples of a YUV frame lie in its planes: one description for every YUV
// pixel format (planar, semi-planar, packed 4:2:2 and 4:4:4; 8 to 16 bits; v210's and Y410's
// samples three to a 32-bit word), read the same way by
// frame_to_tensor, the CPU pre-processing kernel and the CUDA one. Plain C++ (no LibTorch, no
// CUDA headers), so that nvcc reads it too.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace frcnn {

enum class PixelFormat; // frcnn/detector.h
struct FrameView;	 // frcnn/detector.h
enum class YuvMatrix;	 // frcnn/detector.h

// Positions in a row (steps, offsets) count bytes, or in a layout of word_triplets samples.
struct YuvLayout {
	int luma_step;	       // from one luma sample to the next in a row (1 byte; 2 in YUY2, 4 in AYUV)
	int luma_offset;       // position of a row's first luma sample
	int u_plane, v_plane;  // planes holding the U and the V samples (0 in packed formats)
	int u_offset, v_offset; // position of a row's first U and first V sample in its plane
	int chroma_step;       // from one U (or V) sample to the next in a row
	int x_shift, y_shift;  // a chroma sample covers (1 << x_shift) x (1 << y_shift) pixels
	// A sample is one byte, or a little-endian 16-bit word whose bits from sample_shift up
	// hold its `bits` bits (P010: the top 10, shift 6; I420_10LE: the low 10, shift 0; P016:
	// all 16). The word's other bits are not read. (v210, Y410: 4, their 32-bit words; see
	// word_triplets.)
	int sample_bytes = 1;
	int sample_shift = 0;
	int bits = 8;
	// 4:2:0 chroma of an interlaced frame (FrameView::interlaced): chroma row 2k stands for rows
	// 4k and 4k + 2 (top field), row 2k + 1 for rows 4k + 1 and 4k + 3 (bottom field).
	bool field_chroma = false;
	// v210 and Y410: a row's samples are packed three to a little-endian 32-bit word, 10 bits
	// each from bit 0 (bits 30 and 31 not read); positions count samples. v210's are in the
	// order of UYVY's bytes (U Y V Y ...), each group of 6 pixels in 4 words (16 bytes), so that
	// a rectangle of such a frame starts at a column that is a multiple of 6; Y410's are U Y V,
	// a pixel's in its word.
	bool word_triplets = false;
};

// The layout of a YUV pixel format (frame.cpp); throws frcnn::Error for a packed RGB or grey one.
YuvLayout yuv_layout(PixelFormat format);
// The same for a frame: its format's, with field_chroma where it is an interlaced 4:2:0 frame.
YuvLayout yuv_layout(const FrameView &frame);

// The arithmetic of a YUV sample's colour, R, G and B in 0..255 before they are clamped to it:
//   luma = (Y - luma_offset) * luma_scale
//   R = luma + red_v * (V - chroma_offset)
//   G = luma - green_u * (U - chroma_offset) - green_v * (V - chroma_offset)
//   B = luma + blue_u * (U - chroma_offset)
// in float, one rounding per operation, in that order wherever it is computed. Y, U and V are
// the samples' values (0..255 in 8 bits, 0..1023 in 10, 0..4095 in 12).
struct YuvToRgb {
	float luma_offset, luma_scale;
	float red_v, green_u, green_v, blue_u;
	float chroma_offset;
};

// The coefficients of a matrix and range for samples of `bits` bits (frame.cpp), from the
// standard's luma weights.
YuvToRgb yuv_to_rgb(YuvMatrix matrix, bool full_range, int bits = 8);

// Position of pixel x's luma sample in its row.
FRCNN_HOST_DEVICE inline int64_t luma_position(const YuvLayout &layout, int64_t x)
{
	return x * layout.luma_step + layout.luma_offset;
}

// The chroma row that covers row y: y's field's row in a frame of field chroma.
FRCNN_HOST_DEVICE inline int64_t chroma_row(const YuvLayout &layout, int64_t y)
{
	return layout.field_chroma ? ((y >> 2) << 1) | (y & 1) : y >> layout.y_shift;
}

// Position in its row of the chroma sample covering pixel x; `offset` is the layout's u_offset or
// v_offset. Chroma is taken from the sample that covers the pixel (nearest neighbour), as
// frame_to_tensor upsamples it.
FRCNN_HOST_DEVICE inline int64_t chroma_position(const YuvLayout &layout, int64_t x, int offset)
{
	return (x >> layout.x_shift) * layout.chroma_step + offset;
}

// The byte at which the sample at `position` (of a row of triplets: its word) starts.
FRCNN_HOST_DEVICE inline int64_t position_byte(const YuvLayout &layout, int64_t position)
{
	return layout.word_triplets ? position / 3 * 4 : position;
}

// The value of the sample at `position` of a row that starts at `row`.
FRCNN_HOST_DEVICE inline int sample_value(const YuvLayout &layout, const uint8_t *row, int64_t position)
{
	// Byte by byte: the format's byte order whatever the host's, and no alignment assumed.
	if (layout.word_triplets) {
		const uint8_t *p = row + position_byte(layout, position);
		const uint32_t word = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
		return static_cast<int>((word >> (10 * (position % 3))) & 0x3ff);
	}
	const uint8_t *p = row + position;
	if (layout.sample_bytes == 1)
		return p[0];
	const int word = p[0] | (p[1] << 8);
	return (word >> layout.sample_shift) & ((1 << layout.bits) - 1);
}

// The bytes of a row up to and including the sample at `position`.
FRCNN_HOST_DEVICE inline int64_t row_bytes_through(const YuvLayout &layout, int64_t position)
{
	return layout.word_triplets ? position_byte(layout, position) + 4 : position + layout.sample_bytes;
}

// The value of pixel (y, x)'s luma sample in plane 0 of `stride` bytes per row.
FRCNN_HOST_DEVICE inline int luma_value(const YuvLayout &layout, const uint8_t *plane, int64_t stride, int64_t y,
					int64_t x)
{
	return sample_value(layout, plane + y * stride, luma_position(layout, x));
}

// The value of the chroma sample covering pixel (y, x) in its plane of `stride` bytes per row.
FRCNN_HOST_DEVICE inline int chroma_value(const YuvLayout &layout, const uint8_t *plane, int64_t stride,
					  int64_t y, int64_t x, int offset)
{
	return sample_value(layout, plane + chroma_row(layout, y) * stride, chroma_position(layout, x, offset));
}

} // namespace frcnn

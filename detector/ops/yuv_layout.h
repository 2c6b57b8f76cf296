// SPDX-License-Identifier: BSD-3-Clause
// Where the Y, U and V samples of a YUV frame lie in its planes: one description for every YUV
// pixel format (planar, semi-planar and packed 4:2:2; 8, 10 and 12 bits), read the same way by
// frame_to_tensor, the CPU pre-processing kernel and the CUDA one. Plain C++ (no LibTorch, no
// CUDA headers), so that nvcc reads it too.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace frcnn {

enum class PixelFormat; // frcnn/detector.h
struct FrameView;	 // frcnn/detector.h
enum class YuvMatrix;	 // frcnn/detector.h

struct YuvLayout {
	int luma_step;	       // bytes from one luma sample to the next in a row: 1, or 2 in packed 4:2:2
	int luma_offset;       // byte of a row's first luma sample
	int u_plane, v_plane;  // planes holding the U and the V samples (0 in packed 4:2:2)
	int u_offset, v_offset; // byte of a row's first U and first V sample in its plane
	int chroma_step;       // bytes from one U (or V) sample to the next in a row
	int x_shift, y_shift;  // a chroma sample covers (1 << x_shift) x (1 << y_shift) pixels
	// A sample is one byte, or a little-endian 16-bit word whose bits from sample_shift up
	// hold its `bits` bits (P010: the top 10, shift 6; I420_10LE: the low 10, shift 0; 12 at
	// most). The word's other bits are not read.
	int sample_bytes = 1;
	int sample_shift = 0;
	int bits = 8;
	// 4:2:0 chroma of an interlaced frame (FrameView::interlaced): chroma row 2k stands for rows
	// 4k and 4k + 2 (top field), row 2k + 1 for rows 4k + 1 and 4k + 3 (bottom field).
	bool field_chroma = false;
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

// Byte of pixel (y, x)'s luma sample in plane 0 of `stride` bytes per row.
FRCNN_HOST_DEVICE inline int64_t luma_byte(const YuvLayout &layout, int64_t stride, int64_t y, int64_t x)
{
	return y * stride + x * layout.luma_step + layout.luma_offset;
}

// The chroma row that covers row y: y's field's row in a frame of field chroma.
FRCNN_HOST_DEVICE inline int64_t chroma_row(const YuvLayout &layout, int64_t y)
{
	return layout.field_chroma ? ((y >> 2) << 1) | (y & 1) : y >> layout.y_shift;
}

// Byte of the chroma sample covering pixel (y, x) in its plane of `stride` bytes per row;
// `offset` is the layout's u_offset or v_offset. Chroma is taken from the sample that covers the
// pixel (nearest neighbour), as frame_to_tensor upsamples it.
FRCNN_HOST_DEVICE inline int64_t chroma_byte(const YuvLayout &layout, int64_t stride, int64_t y, int64_t x,
					     int offset)
{
	return chroma_row(layout, y) * stride + (x >> layout.x_shift) * layout.chroma_step + offset;
}

// The value of the sample whose first byte is `p`.
FRCNN_HOST_DEVICE inline int sample_value(const YuvLayout &layout, const uint8_t *p)
{
	if (layout.sample_bytes == 1)
		return p[0];
	// Byte by byte: the format's byte order whatever the host's, and no alignment assumed.
	const int word = p[0] | (p[1] << 8);
	return (word >> layout.sample_shift) & ((1 << layout.bits) - 1);
}

} // namespace frcnn

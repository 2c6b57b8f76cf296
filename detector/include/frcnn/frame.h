// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <array>
#include <vector>

#include <torch/types.h>

#include "frcnn/detector.h"

namespace frcnn {

// Converts a frame to a float [3,H,W] RGB tensor in 0..1 on the CPU (YUV formats: in the view's
// matrix and range, chroma upsampled by nearest neighbour; GRAY8: the byte in all three channels).
// Throws frcnn::Error on a bad view.
torch::Tensor frame_to_tensor(const FrameView &frame);

// One plane of a frame: its rows and the bytes of pixels in a row (the stride may be larger).
struct PlaneExtent {
	int64_t rows;
	int64_t row_bytes;
};

// The planes a frame of its format has, checked against the view: a positive size, every plane
// present, no stride shorter than its row. Throws frcnn::Error naming what is wrong.
std::vector<PlaneExtent> frame_planes(const FrameView &frame);

// The bytes a plane spans in memory: its rows at the plane's stride, without the padding after
// the last row (which the buffer need not hold).
inline int64_t plane_span(const PlaneExtent &plane, int64_t stride)
{
	return (plane.rows - 1) * stride + plane.row_bytes;
}

// Bytes per pixel of a packed RGB or grey format (1, 3 or 4); 0 for YUV formats.
int packed_bytes_per_pixel(PixelFormat format);

// Byte offsets of R, G and B inside a pixel of a packed RGB format (all 0 for GRAY8); throws
// frcnn::Error for a YUV one.
std::array<int64_t, 3> packed_rgb_offsets(PixelFormat format);

} // namespace frcnn

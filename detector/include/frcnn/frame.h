// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <array>

#include <torch/types.h>

#include "frcnn/detector.h"

namespace frcnn {

// Converts a frame to a float [3,H,W] RGB tensor in 0..1 on the CPU (NV12/I420: BT.601
// limited range, chroma upsampled by nearest neighbour). Throws frcnn::Error on a bad view.
torch::Tensor frame_to_tensor(const FrameView &frame);

// Bytes per pixel of a packed format (3 or 4); 0 for planar formats.
int packed_bytes_per_pixel(PixelFormat format);

// Byte offsets of R, G and B inside a pixel of a packed format; throws frcnn::Error for a
// planar one.
std::array<int64_t, 3> packed_rgb_offsets(PixelFormat format);

} // namespace frcnn

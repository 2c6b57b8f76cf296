// SPDX-License-Identifier: BSD-3-Clause
// How much of a mapped video frame its memory really holds. A frame's planes are laid out by
// GStreamer's rules for its caps, or by the producer's GstVideoMeta; either may give a plane
// fewer rows than the elements read: GStreamer 1.22 gives interlaced P010_10LE, P012_LE and
// P016_LE frames (height + 1) / 2 chroma rows where their fields need (height + 3) / 4 * 2, one
// more when the height is 4k + 1 or 4k + 2 (it rounds NV12's and I420's up), and a producer's
// meta may do the same for any format.
#pragma once

#include <string>

#include <gst/video/video.h>

#include "frcnn/detector.h"

namespace frcnn::gst {

// The library's pixel format of a GStreamer one; false for one it does not read.
bool to_pixel_format(GstVideoFormat format, frcnn::PixelFormat *out);

// The bytes of a row of `plane`'s samples, as the library reads and the overlay draws them
// (packed 4:2:2 in whole pixel pairs, v210 in whole groups of 6 pixels).
gsize frame_plane_row_bytes(const GstVideoFrame *frame, guint plane);

// The rows of `plane` that the elements read: an interlaced 4:2:0 frame's chroma planes each
// field's rows rounded up to whole chroma samples ((height + 3) / 4 * 2), else the plane's height.
int frame_plane_rows_read(const GstVideoFrame *frame, guint plane);

// The rows of `plane` of a mapped frame that its memory holds (the last row needs only
// frame_plane_row_bytes, the others the plane's stride): from the plane's start to the next
// plane's in the same memory, or to the memory's end.
int frame_plane_rows_held(const GstVideoFrame *frame, guint plane);

// What a mapped frame's memory lacks for the elements to read or draw on it: a plane whose stride
// is shorter than its row, a plane that holds
// fewer rows than are read, beyond the one chroma row of a vertically subsampled plane that the
// layouts above may leave out (read from a copy, see frcnndetect). Empty when it lacks nothing.
// A buffer smaller than its GstVideoMeta says maps without complaint; read, it would crash.
// (A layout whose chroma planes lie side by side within one row's stride counts as holding one
// row of the first: such a frame is refused too, where its rows would otherwise be guessed.)
std::string frame_memory_shortfall(const GstVideoFrame *frame);

} // namespace frcnn::gst

// SPDX-License-Identifier: BSD-3-Clause
#include "frame_memory.h"

#include <algorithm>
#include <limits>

namespace frcnn::gst {

namespace {

// The first component that lies in `plane`.
guint plane_component(const GstVideoFrame *frame, guint plane)
{
	for (guint c = 0; c < GST_VIDEO_FRAME_N_COMPONENTS(frame); c++)
		if (GST_VIDEO_FORMAT_INFO_PLANE(frame->info.finfo, c) == plane)
			return c;
	return 0;
}

} // namespace

gsize frame_plane_row_bytes(const GstVideoFrame *frame, guint plane)
{
	const guint component = plane_component(frame, plane);
	return static_cast<gsize>(GST_VIDEO_FRAME_COMP_WIDTH(frame, component)) *
	       static_cast<gsize>(std::max(GST_VIDEO_FRAME_COMP_PSTRIDE(frame, component), 1));
}

int frame_plane_rows_read(const GstVideoFrame *frame, guint plane)
{
	const guint component = plane_component(frame, plane);
	if (plane > 0 && GST_VIDEO_FRAME_IS_INTERLACED(frame) &&
	    GST_VIDEO_FORMAT_INFO_H_SUB(frame->info.finfo, component) == 1)
		return (GST_VIDEO_FRAME_HEIGHT(frame) + 3) / 4 * 2;
	return GST_VIDEO_FRAME_COMP_HEIGHT(frame, component);
}

int frame_plane_rows_held(const GstVideoFrame *frame, guint plane)
{
	const auto *start = static_cast<const guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(frame, plane));
	const gint stride = GST_VIDEO_FRAME_PLANE_STRIDE(frame, plane);
	const gsize row_bytes = frame_plane_row_bytes(frame, plane);
	/* Mapped plane by plane where the buffer has a video meta, else as a whole. */
	const GstMapInfo &map = frame->meta ? frame->map[plane] : frame->map[0];
	const guint8 *end = map.data + map.size;
	if (start < map.data || start >= end || stride <= 0)
		return 0;
	for (guint other = 0; other < GST_VIDEO_FRAME_N_PLANES(frame); other++) {
		const auto *data = static_cast<const guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(frame, other));
		if (data > start && data < end)
			end = data;
	}
	const gsize bytes = static_cast<gsize>(end - start);
	if (bytes < row_bytes)
		return 0;
	const gsize rows = (bytes - row_bytes) / static_cast<gsize>(stride) + 1;
	return static_cast<int>(std::min<gsize>(rows, std::numeric_limits<int>::max()));
}

std::string frame_memory_shortfall(const GstVideoFrame *frame)
{
	for (guint plane = 0; plane < GST_VIDEO_FRAME_N_PLANES(frame); plane++) {
		const guint component = plane_component(frame, plane);
		const bool subsampled_chroma = plane > 0 && GST_VIDEO_FORMAT_INFO_H_SUB(frame->info.finfo, component) > 0;
		const int read = frame_plane_rows_read(frame, plane);
		const int held = frame_plane_rows_held(frame, plane);
		if (held + (subsampled_chroma ? 1 : 0) < read)
			return "its plane " + std::to_string(plane) + " needs " + std::to_string(read) + " rows of " +
			       std::to_string(GST_VIDEO_FRAME_PLANE_STRIDE(frame, plane)) + " bytes, and the buffer (" +
			       std::to_string(gst_buffer_get_size(frame->buffer)) + " bytes) holds " +
			       std::to_string(held);
	}
	return {};
}

} // namespace frcnn::gst

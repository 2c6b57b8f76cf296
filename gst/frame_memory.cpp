// SPDX-License-Identifier: BSD-3-Clause
#include "frame_memory.h"

#include <algorithm>
#include <limits>

#include "frcnn/frame.h"

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

bool to_pixel_format(GstVideoFormat format, frcnn::PixelFormat *out)
{
	switch (format) {
	case GST_VIDEO_FORMAT_RGB: *out = frcnn::PixelFormat::RGB; return true;
	case GST_VIDEO_FORMAT_BGR: *out = frcnn::PixelFormat::BGR; return true;
	case GST_VIDEO_FORMAT_RGBx: *out = frcnn::PixelFormat::RGBx; return true;
	case GST_VIDEO_FORMAT_BGRx: *out = frcnn::PixelFormat::BGRx; return true;
	case GST_VIDEO_FORMAT_xRGB: *out = frcnn::PixelFormat::xRGB; return true;
	case GST_VIDEO_FORMAT_xBGR: *out = frcnn::PixelFormat::xBGR; return true;
	case GST_VIDEO_FORMAT_RGBA: *out = frcnn::PixelFormat::RGBA; return true;
	case GST_VIDEO_FORMAT_BGRA: *out = frcnn::PixelFormat::BGRA; return true;
	case GST_VIDEO_FORMAT_ARGB: *out = frcnn::PixelFormat::ARGB; return true;
	case GST_VIDEO_FORMAT_ABGR: *out = frcnn::PixelFormat::ABGR; return true;
	case GST_VIDEO_FORMAT_NV12: *out = frcnn::PixelFormat::NV12; return true;
	case GST_VIDEO_FORMAT_I420: *out = frcnn::PixelFormat::I420; return true;
	case GST_VIDEO_FORMAT_GRAY8: *out = frcnn::PixelFormat::GRAY8; return true;
	case GST_VIDEO_FORMAT_NV21: *out = frcnn::PixelFormat::NV21; return true;
	case GST_VIDEO_FORMAT_YV12: *out = frcnn::PixelFormat::YV12; return true;
	case GST_VIDEO_FORMAT_Y42B: *out = frcnn::PixelFormat::Y42B; return true;
	case GST_VIDEO_FORMAT_Y444: *out = frcnn::PixelFormat::Y444; return true;
	case GST_VIDEO_FORMAT_YUY2: *out = frcnn::PixelFormat::YUY2; return true;
	case GST_VIDEO_FORMAT_UYVY: *out = frcnn::PixelFormat::UYVY; return true;
	case GST_VIDEO_FORMAT_YVYU: *out = frcnn::PixelFormat::YVYU; return true;
	case GST_VIDEO_FORMAT_VYUY: *out = frcnn::PixelFormat::VYUY; return true;
	case GST_VIDEO_FORMAT_NV16: *out = frcnn::PixelFormat::NV16; return true;
	case GST_VIDEO_FORMAT_NV61: *out = frcnn::PixelFormat::NV61; return true;
	case GST_VIDEO_FORMAT_NV24: *out = frcnn::PixelFormat::NV24; return true;
	case GST_VIDEO_FORMAT_P010_10LE: *out = frcnn::PixelFormat::P010_10LE; return true;
	case GST_VIDEO_FORMAT_I420_10LE: *out = frcnn::PixelFormat::I420_10LE; return true;
	case GST_VIDEO_FORMAT_I422_10LE: *out = frcnn::PixelFormat::I422_10LE; return true;
	case GST_VIDEO_FORMAT_Y444_10LE: *out = frcnn::PixelFormat::Y444_10LE; return true;
	case GST_VIDEO_FORMAT_P012_LE: *out = frcnn::PixelFormat::P012_LE; return true;
	case GST_VIDEO_FORMAT_I420_12LE: *out = frcnn::PixelFormat::I420_12LE; return true;
	case GST_VIDEO_FORMAT_I422_12LE: *out = frcnn::PixelFormat::I422_12LE; return true;
	case GST_VIDEO_FORMAT_Y444_12LE: *out = frcnn::PixelFormat::Y444_12LE; return true;
	case GST_VIDEO_FORMAT_Y210: *out = frcnn::PixelFormat::Y210; return true;
	case GST_VIDEO_FORMAT_Y212_LE: *out = frcnn::PixelFormat::Y212_LE; return true;
	case GST_VIDEO_FORMAT_v210: *out = frcnn::PixelFormat::v210; return true;
	case GST_VIDEO_FORMAT_AYUV: *out = frcnn::PixelFormat::AYUV; return true;
	case GST_VIDEO_FORMAT_VUYA: *out = frcnn::PixelFormat::VUYA; return true;
	case GST_VIDEO_FORMAT_P016_LE: *out = frcnn::PixelFormat::P016_LE; return true;
	case GST_VIDEO_FORMAT_Y444_16LE: *out = frcnn::PixelFormat::Y444_16LE; return true;
	case GST_VIDEO_FORMAT_Y410: *out = frcnn::PixelFormat::Y410; return true;
	case GST_VIDEO_FORMAT_Y412_LE: *out = frcnn::PixelFormat::Y412_LE; return true;
	default: return false;
	}
}

gsize frame_plane_row_bytes(const GstVideoFrame *frame, guint plane)
{
	/* As the library reads the plane: packed 4:2:2 in whole pixel pairs, v210 in whole groups
	 * of 6 pixels, which GStreamer's component width and pixel stride do not tell. */
	frcnn::FrameView view;
	if (to_pixel_format(GST_VIDEO_FRAME_FORMAT(frame), &view.format)) {
		view.width = GST_VIDEO_FRAME_WIDTH(frame);
		view.height = GST_VIDEO_FRAME_HEIGHT(frame);
		view.interlaced = GST_VIDEO_FRAME_IS_INTERLACED(frame);
		static const uint8_t somewhere = 0; /* only the layout is asked for */
		for (int p = 0; p < 3; p++) {
			view.planes[p] = &somewhere;
			view.strides[p] = std::numeric_limits<int>::max();
		}
		try {
			const std::vector<frcnn::PlaneExtent> planes = frcnn::frame_planes(view);
			if (plane < planes.size())
				return static_cast<gsize>(planes[plane].row_bytes);
		} catch (const std::exception &) {
			/* A size the library refuses: it refuses the frame too. */
		}
	}
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
		const gint stride = GST_VIDEO_FRAME_PLANE_STRIDE(frame, plane);
		const gsize row_bytes = frame_plane_row_bytes(frame, plane);
		if (stride > 0 && static_cast<gsize>(stride) < row_bytes)
			return "its plane " + std::to_string(plane) + " has a stride of " + std::to_string(stride) +
			       " bytes, less than its row of " + std::to_string(row_bytes) + " bytes";
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

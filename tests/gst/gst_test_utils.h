// SPDX-License-Identifier: BSD-3-Clause
// Helpers shared by the plugin tests: frames of a real photo in every sink format, with the
// exact bytes and layout the element receives, and the detections read back from the meta
// without going through the plugin's own meta code.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace gst_test {

inline void init()
{
	if (!gst_is_initialized())
		gst_init(nullptr, nullptr);
}

inline std::string env(const char *name)
{
	const char *value = std::getenv(name);
	if (!value)
		ADD_FAILURE() << "environment variable " << name << " is not set (run the tests with meson test)";
	return value ? value : "";
}

// The 4-class and 91-class seeded tiny checkpoints.
inline std::string weights4() { return env("FRCNN_GST_WEIGHTS_4"); }
inline std::string weights91() { return env("FRCNN_GST_WEIGHTS_91"); }
// The shipped model of frcnnshapesrc's shapes (the demo's), which finds them with scores near 1.
inline std::string shapes_weights() { return env("FRCNN_TEST_DATA") + "/shapes-tiny.pth"; }

// A folder for the files a test writes.
inline std::string out_dir()
{
	std::string dir = env("FRCNN_GST_OUT");
	g_mkdir_with_parents(dir.c_str(), 0755);
	return dir;
}

constexpr const char *kPhoto = "/usr/lib/python3/dist-packages/skimage/data/astronaut.png";
constexpr const char *kVideo = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";

// The photo, BGR, resized; `shift` crops a different window first, so that frames differ.
inline cv::Mat photo(int width, int height, int shift = 0)
{
	static const cv::Mat image = cv::imread(kPhoto, cv::IMREAD_COLOR);
	if (image.empty()) {
		ADD_FAILURE() << "cannot read " << kPhoto;
		return cv::Mat(height, width, CV_8UC3, cv::Scalar(90, 120, 150));
	}
	const int s = shift % 128;
	cv::Mat crop = image(cv::Rect(s, s / 2, image.cols - 128, image.rows - 128));
	cv::Mat out;
	cv::resize(crop, out, cv::Size(width, height), 0, 0, cv::INTER_AREA);
	return out;
}

// Byte order of the packed formats: B, G, R taken from the photo, 'A'/'x' a constant that the
// detector must ignore.
inline const char *packed_order(GstVideoFormat format)
{
	switch (format) {
	case GST_VIDEO_FORMAT_RGB: return "RGB";
	case GST_VIDEO_FORMAT_BGR: return "BGR";
	case GST_VIDEO_FORMAT_RGBx: return "RGBx";
	case GST_VIDEO_FORMAT_BGRx: return "BGRx";
	case GST_VIDEO_FORMAT_xRGB: return "xRGB";
	case GST_VIDEO_FORMAT_xBGR: return "xBGR";
	case GST_VIDEO_FORMAT_RGBA: return "RGBA";
	case GST_VIDEO_FORMAT_BGRA: return "BGRA";
	case GST_VIDEO_FORMAT_ARGB: return "ARGB";
	case GST_VIDEO_FORMAT_ABGR: return "ABGR";
	default: return nullptr;
	}
}

// Every raw format frcnndetect and frcnnoverlay take (their sink template's list), for the tests
// that run each.
inline const std::vector<GstVideoFormat> &all_formats()
{
	static const std::vector<GstVideoFormat> formats{
		GST_VIDEO_FORMAT_RGB,	    GST_VIDEO_FORMAT_BGR,	GST_VIDEO_FORMAT_RGBx,	    GST_VIDEO_FORMAT_BGRx,
		GST_VIDEO_FORMAT_xRGB,	    GST_VIDEO_FORMAT_xBGR,	GST_VIDEO_FORMAT_RGBA,	    GST_VIDEO_FORMAT_BGRA,
		GST_VIDEO_FORMAT_ARGB,	    GST_VIDEO_FORMAT_ABGR,	GST_VIDEO_FORMAT_NV12,	    GST_VIDEO_FORMAT_I420,
		GST_VIDEO_FORMAT_NV21,	    GST_VIDEO_FORMAT_YV12,	GST_VIDEO_FORMAT_Y42B,	    GST_VIDEO_FORMAT_Y444,
		GST_VIDEO_FORMAT_YUY2,	    GST_VIDEO_FORMAT_UYVY,	GST_VIDEO_FORMAT_YVYU,	    GST_VIDEO_FORMAT_VYUY,
		GST_VIDEO_FORMAT_NV16,	    GST_VIDEO_FORMAT_NV61,	GST_VIDEO_FORMAT_NV24,	    GST_VIDEO_FORMAT_GRAY8,
		GST_VIDEO_FORMAT_P010_10LE, GST_VIDEO_FORMAT_I420_10LE, GST_VIDEO_FORMAT_I422_10LE, GST_VIDEO_FORMAT_Y444_10LE,
		GST_VIDEO_FORMAT_P012_LE,   GST_VIDEO_FORMAT_I420_12LE, GST_VIDEO_FORMAT_I422_12LE, GST_VIDEO_FORMAT_Y444_12LE,
		GST_VIDEO_FORMAT_Y210,	    GST_VIDEO_FORMAT_Y212_LE,	GST_VIDEO_FORMAT_v210,	    GST_VIDEO_FORMAT_AYUV,
		GST_VIDEO_FORMAT_VUYA,	    GST_VIDEO_FORMAT_P016_LE,	GST_VIDEO_FORMAT_Y444_16LE, GST_VIDEO_FORMAT_Y410,
		GST_VIDEO_FORMAT_Y412_LE,
	};
	return formats;
}

// A parameterised test's name for its format (INSTANTIATE_TEST_SUITE_P over all_formats()).
inline std::string format_name(const ::testing::TestParamInfo<GstVideoFormat> &info)
{
	return gst_video_format_to_string(info.param);
}

// The byte offset of component `c` (0 Y, 1 U, 2 V) in a pixel of `finfo`'s format, as the
// format's packing writes it. GStreamer 1.22's table gives VYUY the offsets of UYVY (U first),
// while its packing (videoconvert's output) and the FOURCC put V first; it puts P010's, P012's
// and P016's V one byte after U, inside U's 16-bit word, while its packing puts V in the next
// word (byte 2); it puts all three samples of Y210 and Y212 at byte 0, packed as YUY2 of 16-bit
// words, and all of Y412_LE's at byte 0, packed as U Y V A. The packings' offsets are taken here.
// (Y410's samples share a 32-bit word: no byte offsets; see make_frame.)
inline int component_offset(const GstVideoFormatInfo *finfo, guint c)
{
	if (GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_VYUY &&
	    GST_VIDEO_FORMAT_INFO_POFFSET(finfo, 1) == 0) {
		const int vyuy[3] = { 1, 2, 0 };
		return vyuy[c];
	}
	if ((GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_Y210 ||
	     GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_Y212_LE) &&
	    GST_VIDEO_FORMAT_INFO_POFFSET(finfo, 2) == 0) {
		const int y210[3] = { 0, 2, 6 };
		return y210[c];
	}
	if (GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_Y412_LE &&
	    GST_VIDEO_FORMAT_INFO_POFFSET(finfo, 1) == GST_VIDEO_FORMAT_INFO_POFFSET(finfo, 0)) {
		const int y412[3] = { 2, 0, 4 };
		return y412[c];
	}
	if ((GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_P010_10LE ||
	     GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_P012_LE ||
	     GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_P016_LE) &&
	    c == 2 && GST_VIDEO_FORMAT_INFO_POFFSET(finfo, 2) == 1)
		return 2;
	return GST_VIDEO_FORMAT_INFO_POFFSET(finfo, c);
}

// The shift of component `c`'s sample in its 16-bit word, as the format's packing writes it.
// GStreamer 1.22's table gives Y210 none, while its packing puts the 10 bits at the top.
inline int component_shift(const GstVideoFormatInfo *finfo, guint c)
{
	if (GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_Y210 && GST_VIDEO_FORMAT_INFO_SHIFT(finfo, c) == 0)
		return 16 - GST_VIDEO_FORMAT_INFO_DEPTH(finfo, c);
	return GST_VIDEO_FORMAT_INFO_SHIFT(finfo, c);
}

// v210's samples: UYVY's, 10 bits each, three to a little-endian 32-bit word from bit 0 (6
// pixels' 12 samples in 4 words). The sample at `position` of a row (position 4k: pixel 2k's U,
// 4k + 1: its Y, 4k + 2: its V, 4k + 3: pixel 2k + 1's Y).
inline int v210_sample(const uint8_t *row, int position)
{
	const uint8_t *word = row + position / 3 * 4;
	const uint32_t value = word[0] | word[1] << 8 | word[2] << 16 | static_cast<uint32_t>(word[3]) << 24;
	return static_cast<int>(value >> (10 * (position % 3)) & 0x3ff);
}

inline void set_v210_sample(uint8_t *row, int position, int sample)
{
	uint8_t *word = row + position / 3 * 4;
	uint32_t value = word[0] | word[1] << 8 | word[2] << 16 | static_cast<uint32_t>(word[3]) << 24;
	const int shift = 10 * (position % 3);
	value = (value & ~(0x3ffu << shift)) | static_cast<uint32_t>(sample & 0x3ff) << shift;
	for (int b = 0; b < 4; b++)
		word[b] = static_cast<uint8_t>(value >> (8 * b));
}

// One frame as the element receives it. `bytes` holds exactly the buffer's memory, and
// offsets/strides its layout, so a test can build the library's FrameView on its own.
struct Frame {
	GstVideoInfo info;
	std::vector<uint8_t> bytes;
	gsize offsets[GST_VIDEO_MAX_PLANES] = {};
	gint strides[GST_VIDEO_MAX_PLANES] = {};
	bool video_meta = false; // the layout differs from the default for the caps

	int width() const { return GST_VIDEO_INFO_WIDTH(&info); }
	int height() const { return GST_VIDEO_INFO_HEIGHT(&info); }
	guint n_planes() const { return GST_VIDEO_INFO_N_PLANES(&info); }

	GstCaps *caps() const { return gst_video_info_to_caps(&info); }

	GstBuffer *buffer(GstClockTime pts = GST_CLOCK_TIME_NONE,
			  GstClockTime duration = GST_CLOCK_TIME_NONE) const
	{
		GstBuffer *buf = gst_buffer_new_memdup(bytes.data(), bytes.size());
		if (video_meta)
			gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE,
						       GST_VIDEO_INFO_FORMAT(&info), width(), height(),
						       n_planes(), const_cast<gsize *>(offsets),
						       const_cast<gint *>(strides));
		GST_BUFFER_PTS(buf) = pts;
		GST_BUFFER_DURATION(buf) = duration;
		return buf;
	}

	const uint8_t *plane(guint index) const { return bytes.data() + offsets[index]; }
};

// Converts a BGR image into `format`. stride_padding > 0 gives every plane rows that many
// bytes longer than the default layout (filled with junk), described by a GstVideoMeta.
inline Frame make_frame(const cv::Mat &bgr, GstVideoFormat format, int stride_padding = 0)
{
	Frame frame;
	const int width = bgr.cols, height = bgr.rows;
	gst_video_info_set_format(&frame.info, format, width, height);
	GST_VIDEO_INFO_FPS_N(&frame.info) = 30;
	GST_VIDEO_INFO_FPS_D(&frame.info) = 1;

	gsize size = 0;
	for (guint p = 0; p < frame.n_planes(); p++) {
		if (stride_padding > 0) {
			frame.strides[p] = GST_VIDEO_INFO_PLANE_STRIDE(&frame.info, p) + stride_padding;
			frame.offsets[p] = size;
			size += static_cast<gsize>(frame.strides[p]) *
				GST_VIDEO_INFO_COMP_HEIGHT(&frame.info, p);
		} else {
			frame.strides[p] = GST_VIDEO_INFO_PLANE_STRIDE(&frame.info, p);
			frame.offsets[p] = GST_VIDEO_INFO_PLANE_OFFSET(&frame.info, p);
		}
	}
	if (stride_padding > 0) {
		frame.video_meta = true;
	} else {
		size = GST_VIDEO_INFO_SIZE(&frame.info);
	}
	frame.bytes.assign(size, 0xA5);

	if (const char *order = packed_order(format)) {
		const int bpp = static_cast<int>(std::strlen(order));
		for (int y = 0; y < height; y++) {
			uint8_t *row = frame.bytes.data() + frame.offsets[0] + y * frame.strides[0];
			const uint8_t *src = bgr.ptr<uint8_t>(y);
			for (int x = 0; x < width; x++) {
				for (int c = 0; c < bpp; c++) {
					uint8_t value = 200;
					switch (order[c]) {
					case 'B': value = src[3 * x]; break;
					case 'G': value = src[3 * x + 1]; break;
					case 'R': value = src[3 * x + 2]; break;
					default: break;
					}
					row[x * bpp + c] = value;
				}
			}
		}
		return frame;
	}

	if (format == GST_VIDEO_FORMAT_GRAY8) {
		cv::Mat grey;
		cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
		for (int y = 0; y < height; y++)
			std::memcpy(frame.bytes.data() + frame.offsets[0] + y * frame.strides[0], grey.ptr<uint8_t>(y),
				    width);
		return frame;
	}

	if (format == GST_VIDEO_FORMAT_v210 || format == GST_VIDEO_FORMAT_Y410) {
		/* 10-bit samples in little-endian 32-bit words, the 8-bit samples times 4. v210: three
		 * to a word in UYVY's order, each chroma sample from the left pixel of its pair, the
		 * words' top 2 bits as the fill left them (not read). Y410: a word a pixel, its U, Y and
		 * V in bits 0-9, 10-19 and 20-29, alpha (bits 30-31) opaque, as videoconvert packs it. */
		cv::Mat yuv;
		cv::cvtColor(bgr, yuv, cv::COLOR_BGR2YUV);
		for (int y = 0; y < height; y++) {
			uint8_t *row = frame.bytes.data() + frame.offsets[0] + y * frame.strides[0];
			for (int x = 0; x < width; x++) {
				const cv::Vec3b &pixel = yuv.at<cv::Vec3b>(y, x);
				if (format == GST_VIDEO_FORMAT_Y410) {
					const uint32_t word = 4u * pixel[1] | 4u * pixel[0] << 10 | 4u * pixel[2] << 20 |
							      0xc0000000u;
					for (int b = 0; b < 4; b++)
						row[4 * x + b] = static_cast<uint8_t>(word >> (8 * b));
					continue;
				}
				set_v210_sample(row, 2 * x + 1, 4 * pixel[0]);
				if (x % 2 == 0) {
					set_v210_sample(row, 2 * x, 4 * pixel[1]);
					set_v210_sample(row, 2 * x + 2, 4 * pixel[2]);
				}
			}
		}
		return frame;
	}

	/* YUV: each chroma sample from the pixel at its top left, placed where GStreamer's
	 * description of the format puts it (plane, offset in a pixel, bytes between samples). In
	 * more bits (10, 12) the same levels: the 8-bit sample times 2^(depth - 8), shifted in its
	 * little-endian word as the format says. */
	cv::Mat yuv;
	cv::cvtColor(bgr, yuv, cv::COLOR_BGR2YUV);
	const GstVideoFormatInfo *finfo = frame.info.finfo;
	for (guint c = 0; c < 3; c++) {
		const guint plane = GST_VIDEO_FORMAT_INFO_PLANE(finfo, c);
		const int offset = component_offset(finfo, c);
		const int step = GST_VIDEO_FORMAT_INFO_PSTRIDE(finfo, c);
		const int x_shift = GST_VIDEO_FORMAT_INFO_W_SUB(finfo, c);
		const int y_shift = GST_VIDEO_FORMAT_INFO_H_SUB(finfo, c);
		const int depth = GST_VIDEO_FORMAT_INFO_DEPTH(finfo, c);
		const int shift = component_shift(finfo, c);
		for (int y = 0; y < GST_VIDEO_INFO_COMP_HEIGHT(&frame.info, c); y++)
			for (int x = 0; x < GST_VIDEO_INFO_COMP_WIDTH(&frame.info, c); x++) {
				uint8_t *at = &frame.bytes[frame.offsets[plane] + y * frame.strides[plane] + offset + x * step];
				const int value = yuv.at<cv::Vec3b>(std::min(y << y_shift, height - 1),
								    std::min(x << x_shift, width - 1))[c];
				if (depth == 8) {
					*at = static_cast<uint8_t>(value);
				} else {
					const int word = (value << (depth - 8)) << shift;
					at[0] = static_cast<uint8_t>(word & 0xff);
					at[1] = static_cast<uint8_t>(word >> 8);
				}
			}
	}
	return frame;
}

// A detection as read back from a GstVideoRegionOfInterestMeta and its "detection" param.
struct RoiDetection {
	std::string roi_type;
	guint x, y, w, h;
	gint id = 0, parent_id = 0;
	bool has_param = false;
	gint label_id = 0;
	std::string label;
	double confidence = 0;
	double x_min = 0, y_min = 0, x_max = 0, y_max = 0;
};

inline std::vector<RoiDetection> read_rois(GstBuffer *buffer)
{
	std::vector<RoiDetection> rois;
	gpointer state = nullptr;
	while (GstMeta *meta = gst_buffer_iterate_meta_filtered(
		       buffer, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) {
		auto *roi = reinterpret_cast<GstVideoRegionOfInterestMeta *>(meta);
		RoiDetection det;
		det.roi_type = g_quark_to_string(roi->roi_type);
		det.x = roi->x;
		det.y = roi->y;
		det.w = roi->w;
		det.h = roi->h;
		det.id = roi->id;
		det.parent_id = roi->parent_id;
		GstStructure *s = gst_video_region_of_interest_meta_get_param(roi, "detection");
		if (s) {
			det.has_param = true;
			const gchar *label = gst_structure_get_string(s, "label");
			det.label = label ? label : "";
			EXPECT_TRUE(gst_structure_get(s, "label_id", G_TYPE_INT, &det.label_id,
						      "confidence", G_TYPE_DOUBLE, &det.confidence,
						      "x_min", G_TYPE_DOUBLE, &det.x_min,
						      "y_min", G_TYPE_DOUBLE, &det.y_min,
						      "x_max", G_TYPE_DOUBLE, &det.x_max,
						      "y_max", G_TYPE_DOUBLE, &det.y_max, nullptr))
				<< "the detection param lacks a field or has a wrong type: "
				<< gst_structure_to_string(s);
		}
		rois.push_back(det);
	}
	return rois;
}

// Unrefs a GstBuffer / GstHarness at the end of a scope.
struct BufferDeleter {
	void operator()(GstBuffer *buffer) const { gst_buffer_unref(buffer); }
};
using BufferPtr = std::unique_ptr<GstBuffer, BufferDeleter>;

// Waits (up to a minute) until the task of `element`'s source pad no longer runs: an element that
// stopped streaming (paused on an error or EOS) has handled everything it pushed.
inline void wait_until_not_streaming(GstElement *element)
{
	GstPad *pad = gst_element_get_static_pad(element, "src");
	ASSERT_NE(pad, nullptr);
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	for (;;) {
		GST_OBJECT_LOCK(pad);
		const bool streaming = GST_PAD_TASK(pad) && gst_task_get_state(GST_PAD_TASK(pad)) == GST_TASK_STARTED;
		GST_OBJECT_UNLOCK(pad);
		if (!streaming || std::chrono::steady_clock::now() > deadline)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	gst_object_unref(pad);
}

// The metas of the allocation query for `caps` that upstream gets from the harness's element,
// where the elements behind it (the harness's sink) take GstVideoMeta and GstVideoCropMeta.
struct ProposedMetas {
	bool video_meta = false, crop_meta = false;
};

inline ProposedMetas metas_passed_upstream(GstHarness *h, GstCaps *caps)
{
	gst_harness_add_propose_allocation_meta(h, GST_VIDEO_CROP_META_API_TYPE, nullptr);
	gst_harness_add_propose_allocation_meta(h, GST_VIDEO_META_API_TYPE, nullptr);
	GstQuery *query = gst_query_new_allocation(caps, TRUE);
	ProposedMetas metas;
	EXPECT_TRUE(gst_pad_peer_query(h->srcpad, query));
	metas.video_meta = gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr);
	metas.crop_meta = gst_query_find_allocation_meta(query, GST_VIDEO_CROP_META_API_TYPE, nullptr);
	gst_query_unref(query);
	return metas;
}

// A buffer of GStreamer's layout for `info`, with a video meta of that layout, short of `missing`
// bytes at its end, or with plane 0's stride set to `stride` (0: the layout's).
inline GstBuffer *described_frame(const GstVideoInfo &info, gsize missing, gint stride = 0)
{
	init();
	const gsize size = GST_VIDEO_INFO_SIZE(&info) - missing;
	GstBuffer *buffer = gst_buffer_new_allocate(nullptr, size, nullptr);
	gst_buffer_memset(buffer, 0, 0x80, size);
	gint strides[GST_VIDEO_MAX_PLANES];
	gsize offsets[GST_VIDEO_MAX_PLANES];
	std::copy(info.stride, info.stride + GST_VIDEO_MAX_PLANES, strides);
	std::copy(info.offset, info.offset + GST_VIDEO_MAX_PLANES, offsets);
	if (stride)
		strides[0] = stride;
	gst_buffer_add_video_meta_full(buffer, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(&info),
				       GST_VIDEO_INFO_WIDTH(&info), GST_VIDEO_INFO_HEIGHT(&info),
				       GST_VIDEO_INFO_N_PLANES(&info), offsets, strides);
	GST_BUFFER_PTS(buffer) = 0;
	return buffer;
}

// Packed 4:2:2 frames 32 rows high that fall short in their last row, as both elements read
// them: an odd width's last row holds a whole pixel pair, and a v210 row whole groups of 6
// pixels; or whose row stride is shorter than a row. Each with the words of the error it gives
// (described_frame(info_of(c), c.missing, c.stride) makes its buffer).
struct ShortPackedRow {
	GstVideoFormat format;
	int width;
	gsize missing;
	gint stride;
	const char *said;
};

inline const std::vector<ShortPackedRow> &short_packed_rows()
{
	static const std::vector<ShortPackedRow> rows{
		{ GST_VIDEO_FORMAT_YUY2, 33, 1, 0, "its plane 0 needs 32 rows of 68 bytes" },
		{ GST_VIDEO_FORMAT_Y210, 33, 4, 0, "its plane 0 needs 32 rows of 136 bytes" },
		{ GST_VIDEO_FORMAT_v210, 48, 80, 0, "its plane 0 needs 32 rows of 128 bytes" },
		{ GST_VIDEO_FORMAT_v210, 48, 0, 48, "its plane 0 has a stride of 48 bytes, less than its row of 128 bytes" },
	};
	return rows;
}

inline GstVideoInfo info_of(const ShortPackedRow &row)
{
	GstVideoInfo info;
	gst_video_info_set_format(&info, row.format, row.width, 32);
	return info;
}

} // namespace gst_test

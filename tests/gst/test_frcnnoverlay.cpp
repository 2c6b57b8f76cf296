// SPDX-License-Identifier: BSD-3-Clause
// frcnnoverlay: draws ROI metas from any producer, in place, in every format, with a colour that
// is stable per class.

#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include "frcnn/frame.h"
#include "gst_test_utils.h"

namespace {

using gst_test::Frame;
using gst_test::make_frame;

constexpr int kWidth = 200, kHeight = 150;
const cv::Scalar kGrey(128, 128, 128);

struct HarnessDeleter {
	void operator()(GstHarness *h) const { gst_harness_teardown(h); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

HarnessPtr overlay(const char *properties = "")
{
	gst_test::init();
	const std::string description = std::string("frcnnoverlay ") + properties;
	GError *error = nullptr;
	GstElement *element = gst_parse_launch(description.c_str(), &error);
	EXPECT_EQ(error, nullptr) << (error ? error->message : "");
	g_clear_error(&error);
	gst_object_ref_sink(element);
	GstHarness *h = gst_harness_new_with_element(element, "sink", "src");
	gst_object_unref(element);
	return HarnessPtr(h);
}

// label_id a gint, as frcnndetect and DL Streamer write it, unless id_type says otherwise.
// A detection param's box is normalised by the frame's size: `frame_width` x `frame_height`.
void add_detection(GstBuffer *buffer, guint x, guint y, guint w, guint h, guint label_id,
		   const char *label, double score, GType id_type = G_TYPE_INT, int frame_width = kWidth,
		   int frame_height = kHeight)
{
	GstVideoRegionOfInterestMeta *roi =
		gst_buffer_add_video_region_of_interest_meta(buffer, label, x, y, w, h);
	gst_video_region_of_interest_meta_add_param(
		roi, gst_structure_new("detection", "label_id", id_type, label_id, "label",
				       G_TYPE_STRING, label, "confidence", G_TYPE_DOUBLE, score,
				       "x_min", G_TYPE_DOUBLE, double(x) / frame_width, "y_min",
				       G_TYPE_DOUBLE, double(y) / frame_height, "x_max", G_TYPE_DOUBLE,
				       double(x + w) / frame_width, "y_max", G_TYPE_DOUBLE,
				       double(y + h) / frame_height, nullptr));
}

// A mapped output frame, read back as R,G,B (packed formats) or Y,U,V (planar; 10- and 12-bit
// samples as 8-bit levels, rounded).
class Pixels {
public:
	Pixels(GstBuffer *buffer, const Frame &layout)
		: buffer_(buffer), layout_(layout)
	{
		mapped_ = gst_buffer_map(buffer, &map_, GST_MAP_READ);
		EXPECT_TRUE(mapped_);
		EXPECT_EQ(map_.size, layout.bytes.size());
	}
	~Pixels()
	{
		if (mapped_)
			gst_buffer_unmap(buffer_, &map_);
	}
	Pixels(const Pixels &) = delete;
	Pixels &operator=(const Pixels &) = delete;

	std::array<int, 3> at(int x, int y) const
	{
		const GstVideoFormat format = GST_VIDEO_INFO_FORMAT(&layout_.info);
		if (const char *order = gst_test::packed_order(format)) {
			const int bpp = static_cast<int>(std::strlen(order));
			const uint8_t *px = map_.data + layout_.offsets[0] + y * layout_.strides[0] +
					    x * bpp;
			std::array<int, 3> rgb{};
			for (int c = 0; c < bpp; c++) {
				switch (order[c]) {
				case 'R': rgb[0] = px[c]; break;
				case 'G': rgb[1] = px[c]; break;
				case 'B': rgb[2] = px[c]; break;
				default: break;
				}
			}
			return rgb;
		}
		if (format == GST_VIDEO_FORMAT_v210) {
			const uint8_t *row = map_.data + layout_.offsets[0] + y * layout_.strides[0];
			const int pair = 4 * (x / 2);
			std::array<int, 3> values{ gst_test::v210_sample(row, 2 * x + 1), gst_test::v210_sample(row, pair),
						   gst_test::v210_sample(row, pair + 2) };
			for (int &value : values)
				value = static_cast<int>(std::lround(value / 4.0));
			return values;
		}
		if (format == GST_VIDEO_FORMAT_Y410) {
			// A little-endian 32-bit word a pixel: U, Y and V from bit 0, 10 and 20.
			const uint8_t *word = map_.data + layout_.offsets[0] + y * layout_.strides[0] + 4 * x;
			const uint32_t value =
				word[0] | word[1] << 8 | word[2] << 16 | static_cast<uint32_t>(word[3]) << 24;
			std::array<int, 3> values{};
			for (int c = 0; c < 3; c++)
				values[c] = static_cast<int>(std::lround((value >> (c == 0 ? 10 : c == 1 ? 0 : 20) & 0x3ff) / 4.0));
			return values;
		}
		/* Grey: the level thrice. YUV: Y, U and V of the pixel, where GStreamer's description
		 * of the format puts them. */
		const GstVideoFormatInfo *finfo = layout_.info.finfo;
		std::array<int, 3> values{};
		for (guint c = 0; c < 3; c++) {
			const guint component = format == GST_VIDEO_FORMAT_GRAY8 ? 0 : c;
			const guint plane = GST_VIDEO_FORMAT_INFO_PLANE(finfo, component);
			const uint8_t *at = map_.data + layout_.offsets[plane] +
					    (y >> GST_VIDEO_FORMAT_INFO_H_SUB(finfo, component)) * layout_.strides[plane] +
					    gst_test::component_offset(finfo, component) +
					    (x >> GST_VIDEO_FORMAT_INFO_W_SUB(finfo, component)) *
						    GST_VIDEO_FORMAT_INFO_PSTRIDE(finfo, component);
			const int depth = GST_VIDEO_FORMAT_INFO_DEPTH(finfo, component);
			if (depth == 8) {
				values[c] = at[0];
				continue;
			}
			// A little-endian word: the sample in its bits from `shift` up, the others 0.
			const int word = at[0] | at[1] << 8, shift = gst_test::component_shift(finfo, component);
			const int sample = word >> shift;
			EXPECT_EQ(word & ~(((1 << depth) - 1) << shift), 0)
				<< "bits outside the sample at " << x << "," << y;
			values[c] = static_cast<int>(std::lround(sample / double(1 << (depth - 8))));
		}
		return values;
	}

private:
	GstBuffer *buffer_;
	const Frame &layout_;
	GstMapInfo map_ = GST_MAP_INFO_INIT;
	bool mapped_ = false;
};

bool packed(GstVideoFormat format)
{
	return gst_test::packed_order(format) != nullptr;
}

// BT.601 limited range (the default colorimetry of the tests' frames).
std::array<int, 3> yuv_of(const std::array<int, 3> &rgb)
{
	const double r = rgb[0], g = rgb[1], b = rgb[2];
	return { static_cast<int>(std::lround(16 + 0.257 * r + 0.504 * g + 0.098 * b)),
		 static_cast<int>(std::lround(128 - 0.148 * r - 0.291 * g + 0.439 * b)),
		 static_cast<int>(std::lround(128 + 0.439 * r - 0.368 * g - 0.071 * b)) };
}

// Another matrix (the luma weights kr, kb of red and blue) and range, of R, G, B in 0..255.
std::array<int, 3> yuv_of(const std::array<double, 3> &rgb, double kr, double kb, bool full_range)
{
	const double luma = (kr * rgb[0] + (1 - kr - kb) * rgb[1] + kb * rgb[2]) / 255;
	const double cb = (rgb[2] / 255.0 - luma) / (2 * (1 - kb)), cr = (rgb[0] / 255.0 - luma) / (2 * (1 - kr));
	const double luma_steps = full_range ? 255 : 219, chroma_steps = full_range ? 255 : 224;
	return { static_cast<int>(std::lround((full_range ? 0 : 16) + luma_steps * luma)),
		 static_cast<int>(std::lround(128 + chroma_steps * cb)),
		 static_cast<int>(std::lround(128 + chroma_steps * cr)) };
}

void expect_near(const std::array<int, 3> &a, const std::array<int, 3> &b, int tolerance,
		 const char *what)
{
	for (int c = 0; c < 3; c++)
		EXPECT_LE(std::abs(a[c] - b[c]), tolerance) << what << " component " << c << ": "
							    << a[c] << " vs " << b[c];
}

// `frame` with a "car" (label id 3, 40,60 80x50) drawn by an overlay of `properties`.
gst_test::BufferPtr draw_car(const Frame &frame, const char *properties = "")
{
	HarnessPtr h = overlay(properties);
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstBuffer *in = frame.buffer(0);
	add_detection(in, 40, 60, 80, 50, 3, "car", 0.9);
	return gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), in));
}

// The box colour of label id 3 as drawn on RGB, the reference for the other formats.
std::array<int, 3> rgb_box_colour()
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	gst_test::BufferPtr out = draw_car(frame);
	if (!out) {
		ADD_FAILURE() << "no output";
		return {};
	}
	Pixels pixels(out.get(), frame);
	return pixels.at(40, 80);
}

class OverlayFormatTest : public ::testing::TestWithParam<GstVideoFormat> {
};

TEST_P(OverlayFormatTest, DrawsBoxAndLabelInPlace)
{
	const GstVideoFormat format = GetParam();
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), format);

	gst_test::BufferPtr out = draw_car(frame, "line-thickness=2 show=label-score");
	ASSERT_TRUE(out);

	/* The same frame without metadata gives the untouched values. */
	HarnessPtr h = overlay("line-thickness=2 show=label-score");
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr plain(gst_harness_push_and_pull(h.get(), frame.buffer(GST_SECOND)));
	ASSERT_TRUE(plain);
	Pixels before(plain.get(), frame);
	Pixels after(out.get(), frame);

	const std::array<int, 3> background = before.at(100, 140);
	EXPECT_EQ(after.at(100, 140), background) << "far from the box";
	EXPECT_EQ(after.at(80, 90), background) << "inside the box: outlines only";
	EXPECT_EQ(after.at(180, 10), background) << "right of the label";

	const std::array<int, 3> reference = rgb_box_colour();
	EXPECT_NE(reference, background);
	for (auto [x, y] : { std::pair{ 40, 80 }, std::pair{ 119, 80 }, std::pair{ 80, 109 } }) {
		SCOPED_TRACE("edge pixel " + std::to_string(x) + "," + std::to_string(y));
		if (packed(format)) {
			EXPECT_EQ(after.at(x, y), reference);
		} else if (format == GST_VIDEO_FORMAT_GRAY8) {
			const int grey = static_cast<int>(std::lround(0.299 * reference[0] + 0.587 * reference[1] +
								      0.114 * reference[2]));
			expect_near(after.at(x, y), { grey, grey, grey }, 1, "grey");
		} else {
			/* BT.601 limited range, chroma drawn at the format's resolution. */
			expect_near(after.at(x, y), yuv_of(reference), 2, "Y,U,V");
		}
	}
	/* The label sits above the box: something there changed. */
	int changed = 0;
	for (int y = 44; y < 60; y++)
		for (int x = 40; x < 100; x++)
			changed += after.at(x, y) != background;
	EXPECT_GT(changed, 100);

	if (!packed(format) && format != GST_VIDEO_FORMAT_GRAY8) {
		/* The letters' chroma turns neutral with them (the label's colour is far from it). */
		auto saturation = [](const std::array<int, 3> &yuv) {
			return std::abs(yuv[1] - 128) + std::abs(yuv[2] - 128);
		};
		int least = saturation(yuv_of(reference));
		for (int y = 44; y < 60; y++)
			for (int x = 40; x < 100; x++)
				least = std::min(least, saturation(after.at(x, y)));
		EXPECT_LT(least, saturation(yuv_of(reference)) / 2)
			<< "the label's chroma is " << saturation(yuv_of(reference)) << " from neutral";
	}
}

INSTANTIATE_TEST_SUITE_P(AllFormats, OverlayFormatTest,
	::testing::ValuesIn(gst_test::all_formats()), gst_test::format_name);

TEST(FrcnnOverlay, DrawsInTheColorimetryOfTheCaps)
{
	/* A box on HD video (BT.709) and on a decoded JPEG (full range) has the colour it has on
	 * RGB, in the frame's own encoding; in 8, 10 and 12 bits. On UHD video (BT.2020) the same
	 * colour in BT.2020's primaries. */
	const std::array<int, 3> reference = rgb_box_colour();
	const std::array<double, 3> in_bt2020 = frcnn::signals_in_primaries(
		frcnn::ColourPrimaries::BT2020, { reference[0] / 255.0, reference[1] / 255.0, reference[2] / 255.0 });
	struct Case {
		const char *colorimetry;
		double kr, kb;
		bool full_range;
		GstVideoFormat format;
	};
	for (const Case &c : { Case{ "bt709", 0.2126, 0.0722, false, GST_VIDEO_FORMAT_I420 },
			       Case{ "1:4:0:0", 0.299, 0.114, true, GST_VIDEO_FORMAT_I420 },
			       Case{ "bt2020", 0.2627, 0.0593, false, GST_VIDEO_FORMAT_I420 },
			       Case{ "bt2020", 0.2627, 0.0593, false, GST_VIDEO_FORMAT_P010_10LE },
			       Case{ "1:4:0:0", 0.299, 0.114, true, GST_VIDEO_FORMAT_I420_10LE },
			       Case{ "bt2020", 0.2627, 0.0593, false, GST_VIDEO_FORMAT_P012_LE },
			       Case{ "1:4:0:0", 0.299, 0.114, true, GST_VIDEO_FORMAT_Y444_12LE },
			       Case{ "bt709", 0.2126, 0.0722, false, GST_VIDEO_FORMAT_Y210 },
			       /* a range the caps leave unknown: full, as videoconvert reads it */
			       Case{ "0:3:5:1", 0.2126, 0.0722, true, GST_VIDEO_FORMAT_I420 } }) {
		SCOPED_TRACE(std::string(c.colorimetry) + " " + gst_video_format_to_string(c.format));
		Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), c.format);
		ASSERT_TRUE(gst_video_colorimetry_from_string(&frame.info.colorimetry, c.colorimetry));
		gst_test::BufferPtr out = draw_car(frame, "line-thickness=2");
		ASSERT_TRUE(out);
		Pixels pixels(out.get(), frame);
		const bool bt2020 = frame.info.colorimetry.primaries == GST_VIDEO_COLOR_PRIMARIES_BT2020;
		const std::array<double, 3> colour =
			bt2020 ? std::array<double, 3>{ 255 * in_bt2020[0], 255 * in_bt2020[1], 255 * in_bt2020[2] }
			       : std::array<double, 3>{ double(reference[0]), double(reference[1]), double(reference[2]) };
		const std::array<int, 3> expected = yuv_of(colour, c.kr, c.kb, c.full_range);
		EXPECT_NE(expected, yuv_of(reference)) << "the encodings must differ for the test to tell";
		expect_near(pixels.at(40, 80), expected, 1, "Y,U,V");
	}
}

TEST(FrcnnOverlay, DrawsIntoHdrVideoAsItsSdrPictureShows)
{
	/* A box on PQ and HLG video: the colour it has on RGB where HDR video is shown on SDR, as
	 * frcnndetect reads it (BT.2408's SDR white at 203 cd/m2; the detector's highlight
	 * compression makes the brightest channel, 240, about 0.93 instead of 0.94; BT.2020's
	 * primaries converted to BT.709's), not the code values of SDR, which in PQ stand for light
	 * near its peak. */
	const std::array<int, 3> reference = rgb_box_colour();
	for (const char *colorimetry : { "bt2100-pq", "bt2100-hlg" }) {
		SCOPED_TRACE(colorimetry);
		Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_P010_10LE);
		ASSERT_TRUE(gst_video_colorimetry_from_string(&frame.info.colorimetry, colorimetry));
		gst_test::BufferPtr out = draw_car(frame, "line-thickness=2");
		ASSERT_TRUE(out);
		GstMapInfo map;
		ASSERT_TRUE(gst_buffer_map(out.get(), &map, GST_MAP_READ));
		frcnn::FrameView view;
		view.format = frcnn::PixelFormat::P010_10LE;
		view.width = frame.width();
		view.height = frame.height();
		for (int p = 0; p < 2; p++) {
			view.planes[p] = map.data + frame.offsets[p];
			view.strides[p] = frame.strides[p];
		}
		view.matrix = frcnn::YuvMatrix::BT2020;
		const bool pq = frame.info.colorimetry.transfer == GST_VIDEO_TRANSFER_SMPTE2084;
		view.transfer = pq ? frcnn::TransferFunction::PQ : frcnn::TransferFunction::HLG;
		view.primaries = frcnn::ColourPrimaries::BT2020;
		const torch::Tensor shown = frcnn::frame_to_tensor(view);
		view.transfer = frcnn::TransferFunction::SDR;
		view.primaries = frcnn::ColourPrimaries::BT709;
		const torch::Tensor signal = frcnn::frame_to_tensor(view);
		gst_buffer_unmap(out.get(), &map);
		double largest_signal_difference = 0;
		for (int c = 0; c < 3; c++) {
			EXPECT_NEAR(shown[c][80][40].item<float>(), reference[c] / 255.0, 0.02) << "channel " << c;
			largest_signal_difference = std::max(
				largest_signal_difference, std::abs(signal[c][80][40].item<double>() - reference[c] / 255.0));
		}
		EXPECT_GT(largest_signal_difference, 0.1) << "the signal is HDR's, not the SDR colour's";
	}
	/* RGB frames of HDR video alike (caps of RGBA with the PQ transfer and BT.2020's primaries):
	 * the box's bytes are the PQ signals of its colour in BT.2020's primaries, which the
	 * detector's mapping reads as that colour. */
	Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGBA);
	ASSERT_TRUE(gst_video_colorimetry_from_string(&frame.info.colorimetry, "1:1:14:7"));
	ASSERT_EQ(frame.info.colorimetry.transfer, GST_VIDEO_TRANSFER_SMPTE2084);
	ASSERT_EQ(frame.info.colorimetry.primaries, GST_VIDEO_COLOR_PRIMARIES_BT2020);
	gst_test::BufferPtr out = draw_car(frame, "line-thickness=2");
	ASSERT_TRUE(out);
	Pixels pixels(out.get(), frame);
	const std::array<int, 3> drawn = pixels.at(40, 80);
	const std::array<double, 3> in_bt2020 = frcnn::signals_in_primaries(
		frcnn::ColourPrimaries::BT2020, { reference[0] / 255.0, reference[1] / 255.0, reference[2] / 255.0 });
	for (int c = 0; c < 3; c++)
		EXPECT_NEAR(drawn[c], std::lround(255 * frcnn::hdr_signal(frcnn::TransferFunction::PQ, in_bt2020[c])), 1)
			<< "channel " << c;
}

TEST(FrcnnOverlay, ColourIsStablePerClass)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_BGRx);
	HarnessPtr h = overlay("show=none");
	gst_harness_set_src_caps(h.get(), frame.caps());

	GstBuffer *first = frame.buffer(0);
	add_detection(first, 10, 10, 50, 50, 1, "person", 0.8);
	add_detection(first, 100, 10, 50, 50, 2, "bicycle", 0.7);
	gst_test::BufferPtr a(gst_harness_push_and_pull(h.get(), first));
	GstBuffer *second = frame.buffer(GST_SECOND);
	// An unsigned label_id of another producer names the same class.
	add_detection(second, 100, 80, 40, 40, 1, "person", 0.3, G_TYPE_UINT);
	gst_test::BufferPtr b(gst_harness_push_and_pull(h.get(), second));
	ASSERT_TRUE(a && b);

	Pixels pa(a.get(), frame), pb(b.get(), frame);
	EXPECT_EQ(pa.at(10, 30), pb.at(100, 100)) << "same class, same colour";
	EXPECT_NE(pa.at(10, 30), pa.at(100, 30)) << "another class, another colour";
}

TEST(FrcnnOverlay, AnyProducerWithoutDetectionParam)
{
	/* A face detector that only sets roi_type: drawn with the type as the label. */
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = overlay();
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr plain(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	GstBuffer *in = frame.buffer(GST_SECOND);
	gst_buffer_add_video_region_of_interest_meta(in, "face", 60, 40, 30, 30);
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
	ASSERT_TRUE(plain && out);
	Pixels before(plain.get(), frame), after(out.get(), frame);
	EXPECT_NE(after.at(60, 55), before.at(60, 55));
	EXPECT_EQ(after.at(75, 55), before.at(75, 55));
	int changed = 0;
	for (int y = 24; y < 40; y++)
		for (int x = 60; x < 90; x++)
			changed += after.at(x, y) != before.at(x, y);
	EXPECT_GT(changed, 30) << "the roi_type is written above the box";
}

// Interlaced 4:2:0 frames: a row's chroma is its own field's (chroma row 2k belongs to the top
// field's rows 4k and 4k + 2, row 2k + 1 to the bottom field's 4k + 1 and 4k + 3), so a line
// drawn on one row of the bottom field paints a chroma row of the bottom field. 46 rows, 4k + 2:
// GStreamer's layout has the bottom field's last chroma row too, which a box down to the last
// row paints. Text is drawn as well.
TEST(FrcnnOverlay, DrawsInterlacedFramesByField)
{
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420 }) {
		SCOPED_TRACE(gst_video_format_to_string(format));
		GstVideoInfo info;
		gst_video_info_set_interlaced_format(&info, format, GST_VIDEO_INTERLACE_MODE_INTERLEAVED, 64, 46);
		HarnessPtr h = overlay("line-thickness=1 show=none");
		gst_harness_set_src_caps(h.get(), gst_video_info_to_caps(&info));
		GstBuffer *in = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
		gst_buffer_memset(in, 0, 128, GST_VIDEO_INFO_SIZE(&info));
		GstVideoRegionOfInterestMeta *box = gst_buffer_add_video_region_of_interest_meta(in, "car", 8, 9, 40, 37);
		box->id = 0;
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
		ASSERT_TRUE(out);
		GstVideoFrame frame;
		ASSERT_TRUE(gst_video_frame_map(&frame, &info, out.get(), GST_MAP_READ));
		/* U of chroma row `row`, column 14 (pixels 28 and 29: inside the box, off its sides). */
		auto u = [&](int row) {
			const uint8_t *plane = static_cast<const uint8_t *>(GST_VIDEO_FRAME_COMP_DATA(&frame, 1));
			const int step = GST_VIDEO_FRAME_COMP_PSTRIDE(&frame, 1);
			return plane[row * GST_VIDEO_FRAME_COMP_STRIDE(&frame, 1) + 14 * step];
		};
		/* The top edge, row 9: the bottom field's row 4, its chroma row 2, the plane's row 5. */
		EXPECT_NE(u(5), 128);
		EXPECT_EQ(u(4), 128) << "row 9 painted the top field's chroma";
		EXPECT_EQ(u(6), 128);
		/* The bottom edge, row 45: the bottom field's row 22, its chroma row 11, the plane's
		 * row 23 (the 24th: (46 + 3) / 4 * 2 rows). */
		EXPECT_NE(u(23), 128);
		EXPECT_EQ(u(22), 128);
		gst_video_frame_unmap(&frame);

		/* Text: drawn, in both fields. */
		g_object_set(h->element, "show", 1 /* label */, nullptr);
		GstBuffer *text_in = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
		gst_buffer_memset(text_in, 0, 128, GST_VIDEO_INFO_SIZE(&info));
		gst_buffer_add_video_region_of_interest_meta(text_in, "car", 4, 24, 50, 20);
		gst_test::BufferPtr text_out(gst_harness_push_and_pull(h.get(), text_in));
		ASSERT_TRUE(text_out);
		ASSERT_TRUE(gst_video_frame_map(&frame, &info, text_out.get(), GST_MAP_READ));
		int changed[2] = { 0, 0 };
		for (int y = 0; y < 22; y++)
			for (int x = 4; x < 54; x++)
				changed[y % 2] += static_cast<const uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0))
							  [y * GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0) + x] != 128;
		EXPECT_GT(changed[0], 10);
		EXPECT_GT(changed[1], 10);
		gst_video_frame_unmap(&frame);
	}
}

// The overlay draws on the frame of the caps: it takes no GstVideoCropMeta (whole frames with
// the rectangle to show), though the elements behind it do, so that an element in front that
// crops crops the frames itself. The other metas they take are passed on.
TEST(FrcnnOverlay, TakesNoCropMeta)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = overlay();
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstCaps *caps = frame.caps();
	const gst_test::ProposedMetas metas = gst_test::metas_passed_upstream(h.get(), caps);
	gst_caps_unref(caps);
	EXPECT_TRUE(metas.video_meta);
	EXPECT_FALSE(metas.crop_meta);
}

TEST(FrcnnOverlay, ShowAndThickness)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	gst_test::BufferPtr none = draw_car(frame, "show=none line-thickness=1");
	gst_test::BufferPtr label = draw_car(frame, "show=label line-thickness=1");
	gst_test::BufferPtr thick = draw_car(frame, "show=none line-thickness=6");
	Pixels pn(none.get(), frame), pl(label.get(), frame), pt(thick.get(), frame);

	const std::array<int, 3> grey = pn.at(100, 140);
	int above_none = 0, above_label = 0;
	for (int y = 40; y < 59; y++)
		for (int x = 40; x < 120; x++) {
			above_none += pn.at(x, y) != grey;
			above_label += pl.at(x, y) != grey;
		}
	EXPECT_EQ(above_none, 0) << "show=none draws no text";
	EXPECT_GT(above_label, 100);

	EXPECT_EQ(pn.at(43, 80), grey) << "1 pixel line";
	EXPECT_NE(pt.at(42, 80), grey) << "6 pixel line";
}

// The box drawn is the detection param's unrounded box to the nearest pixel (a scaler rounds the
// rectangle down); the label goes below a box that touches the top of the frame (inside it, it
// would hide a small object) and left of the frame's right edge (so that the score shows).
TEST(FrcnnOverlay, DrawsTheUnroundedBoxAndKeepsLabelsClearOfTheEdges)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	auto draw = [&frame](const char *properties, const std::function<void(GstBuffer *)> &add) {
		HarnessPtr h = overlay(properties);
		gst_harness_set_src_caps(h.get(), frame.caps());
		GstBuffer *in = frame.buffer(0);
		add(in);
		return gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), in));
	};

	/* The rectangle as a scaler leaves it (40..100), the box as found (41.6..100.4). */
	gst_test::BufferPtr box = draw("show=none line-thickness=1", [](GstBuffer *in) {
		GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta(in, "car", 40, 40, 60, 40);
		gst_video_region_of_interest_meta_add_param(
			roi, gst_structure_new("detection", "label_id", G_TYPE_INT, 3, "label", G_TYPE_STRING, "car",
					       "confidence", G_TYPE_DOUBLE, 0.9, "x_min", G_TYPE_DOUBLE, 41.6 / kWidth,
					       "y_min", G_TYPE_DOUBLE, 40.0 / kHeight, "x_max", G_TYPE_DOUBLE,
					       100.4 / kWidth, "y_max", G_TYPE_DOUBLE, 80.0 / kHeight, nullptr));
	});
	ASSERT_TRUE(box);
	{
		Pixels p(box.get(), frame);
		const std::array<int, 3> grey = p.at(10, 10);
		EXPECT_NE(p.at(42, 60), grey) << "the left edge at 41.6 is drawn at 42";
		EXPECT_EQ(p.at(40, 60), grey) << "not at the rectangle's 40";
		EXPECT_NE(p.at(99, 60), grey) << "the right edge at 100.4: the last column inside is 99";
	}

	/* A small box at the top: its inside stays clear, the label is under it. */
	gst_test::BufferPtr top = draw("show=label line-thickness=1",
				       [](GstBuffer *in) { add_detection(in, 60, 0, 40, 30, 3, "car", 0.9); });
	ASSERT_TRUE(top);
	{
		Pixels p(top.get(), frame);
		const std::array<int, 3> grey = p.at(10, 10);
		int inside = 0, below = 0;
		for (int y = 2; y < 28; y++)
			for (int x = 62; x < 98; x++)
				inside += p.at(x, y) != grey;
		for (int y = 31; y < 45; y++)
			for (int x = 60; x < 100; x++)
				below += p.at(x, y) != grey;
		EXPECT_EQ(inside, 0) << "the label covers the box";
		EXPECT_GT(below, 100) << "no label under the box";
	}

	/* A box at the right edge: its label ends at the edge instead of being cut off. */
	gst_test::BufferPtr right = draw("show=label-score line-thickness=1",
					 [](GstBuffer *in) { add_detection(in, 185, 80, 14, 30, 3, "car", 0.9); });
	ASSERT_TRUE(right);
	{
		Pixels p(right.get(), frame);
		const std::array<int, 3> grey = p.at(10, 10);
		int left_of_box = 0;
		for (int y = 60; y < 79; y++)
			for (int x = 120; x < 184; x++)
				left_of_box += p.at(x, y) != grey;
		EXPECT_GT(left_of_box, 100) << "the label starts at the box and runs off the frame";
		EXPECT_NE(p.at(kWidth - 1, 70), grey) << "the label reaches the frame's right edge";
	}
}

// A name too long for the frame is cut (to "...") so that the score still shows: drawn with and
// without the score, such labels differ (uncut, both would show the name's beginning only). In
// the built-in font, and in a FreeType font with a name of two-byte characters (cut between them).
TEST(FrcnnOverlay, ANameTooLongForTheFrameIsCutSoThatTheScoreShows)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	std::string accented;
	for (int i = 0; i < 60; i++)
		accented += "\xc3\xa9"; // é
	const std::string font = "font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ";
	for (const auto &[name, font_setting] : { std::pair{ std::string(60, 'W'), std::string() },
						  std::pair{ accented, font } }) {
		SCOPED_TRACE(font_setting + name.substr(0, 4));
		std::vector<gst_test::BufferPtr> drawn;
		for (const char *show : { "show=label-score line-thickness=1", "show=label line-thickness=1" }) {
			HarnessPtr h = overlay((font_setting + show).c_str());
			gst_harness_set_src_caps(h.get(), frame.caps());
			GstBuffer *in = frame.buffer(0);
			add_detection(in, 20, 60, 100, 50, 3, name.c_str(), 0.9);
			drawn.emplace_back(gst_harness_push_and_pull(h.get(), in));
			ASSERT_TRUE(drawn.back());
		}
		Pixels with_score(drawn[0].get(), frame), without(drawn[1].get(), frame);
		const std::array<int, 3> grey = with_score.at(10, 10);
		int differing = 0, band = 0;
		for (int y = 40; y < 59; y++)
			for (int x = 0; x < kWidth; x++) {
				differing += with_score.at(x, y) != without.at(x, y);
				band += with_score.at(x, y) != grey;
			}
		EXPECT_GT(differing, 20) << "the score does not show";
		EXPECT_GT(band, 19 * 100) << "no label band";
	}
}

// The caps take any pixel-aspect-ratio; beyond 16 (or 1/16) the overlay draws as at 16: a label
// of a few kilobytes and lines of the frame's width at most, not gigabytes.
TEST(FrcnnOverlay, AbsurdPixelAspectRatiosDrawAsTheWidestReal)
{
	for (const auto &[par_n, par_d] : { std::pair{ G_MAXINT, 1 }, std::pair{ 1, G_MAXINT } }) {
		SCOPED_TRACE(std::to_string(par_n) + "/" + std::to_string(par_d));
		Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
		GST_VIDEO_INFO_PAR_N(&frame.info) = par_n;
		GST_VIDEO_INFO_PAR_D(&frame.info) = par_d;
		gst_test::BufferPtr out = draw_car(frame, "line-thickness=2 show=label-score");
		ASSERT_TRUE(out) << "the frame was not drawn";
		Pixels pixels(out.get(), frame);
		const std::array<int, 3> grey = pixels.at(150, 140);
		EXPECT_NE(pixels.at(40, 80), grey) << "no left line";
		EXPECT_EQ(pixels.at(5, 80), grey) << "a line across the frame";
	}
}

// On frames whose pixels are not square (the caps' pixel-aspect-ratio) the label is drawn as a
// display shows the frame: its letters and background as wide as on square pixels once the frame
// is stretched (half as many columns with pixels twice as wide as high, twice as many with pixels
// half as wide), its rows unchanged; the box's vertical lines alike. The label's columns and
// its letters' span are counted on the label's rows; luma only on YUV frames.
TEST(FrcnnOverlay, LabelsOfFramesOfPixelsThatAreNotSquareShowAsOnSquarePixels)
{
	struct Extents {
		int label = 0, letters = 0, line = 0, rows = 0;
	};
	auto extents = [](GstVideoFormat format, int par_n, int par_d) {
		Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), format);
		GST_VIDEO_INFO_PAR_N(&frame.info) = par_n;
		GST_VIDEO_INFO_PAR_D(&frame.info) = par_d;
		gst_test::BufferPtr out = draw_car(frame, "line-thickness=8 show=label-score");
		Extents e;
		if (!out) {
			ADD_FAILURE() << "no output";
			return e;
		}
		Pixels pixels(out.get(), frame);
		const bool yuv = !gst_test::packed_order(format);
		const std::array<int, 3> grey = pixels.at(150, 140);
		auto differs = [&](const std::array<int, 3> &a, const std::array<int, 3> &b) {
			return yuv ? std::abs(a[0] - b[0]) > 2 : a != b;
		};
		// The label's background: its top row, above the letters.
		const int top_row = [&] {
			for (int y = 0; y < 60; y++)
				if (differs(pixels.at(45, y), grey))
					return y;
			return 60;
		}();
		const std::array<int, 3> fill = pixels.at(41, top_row);
		for (int x = 40; x < kWidth && differs(pixels.at(x, top_row), grey); x++)
			e.label++;
		// The letters: the columns between the first and the last one with a pixel of neither
		// the label's colour nor the frame's; the rows of the label down to the box's line.
		int first = kWidth, last = -1;
		for (int y = top_row; y < 56; y++)
			for (int x = 40; x < 40 + e.label; x++)
				if (differs(pixels.at(x, y), fill) && differs(pixels.at(x, y), grey)) {
					first = std::min(first, x);
					last = std::max(last, x);
				}
		e.letters = last - first + 1;
		e.rows = 60 - top_row;
		// The box's left line, on a row of the box below the label.
		for (int x = 25; x < 55; x++)
			e.line += differs(pixels.at(x, 90), grey);
		return e;
	};
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_BGRx, GST_VIDEO_FORMAT_NV12,
				       GST_VIDEO_FORMAT_YUY2, GST_VIDEO_FORMAT_v210 }) {
		SCOPED_TRACE(gst_video_format_to_string(format));
		const Extents square = extents(format, 1, 1), wide = extents(format, 2, 1), narrow = extents(format, 1, 2);
		ASSERT_GT(square.letters, 20);
		EXPECT_EQ(square.line, 8);
		// Packed 4:2:2 paints whole pairs of pixels: the label's width rounded up to one.
		const int pad = 2 * 2;
		EXPECT_NEAR(wide.label - pad, (square.label - pad) / 2.0, 2);
		EXPECT_NEAR(narrow.label - pad, (square.label - pad) * 2.0, 2);
		EXPECT_NEAR(wide.letters, square.letters / 2.0, 2);
		EXPECT_NEAR(narrow.letters, square.letters * 2.0, 3);
		EXPECT_EQ(wide.rows, square.rows);
		EXPECT_EQ(narrow.rows, square.rows);
		EXPECT_EQ(wide.line, 4);
		EXPECT_EQ(narrow.line, 16);
	}
}

TEST(FrcnnOverlay, BoxesAtAndBeyondTheEdges)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_I420);
	HarnessPtr h = overlay();
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstBuffer *in = frame.buffer(0);
	add_detection(in, 0, 0, kWidth, kHeight, 1, "everything", 1.0);
	add_detection(in, 180, 140, 500, 500, 2, "outside", 0.5);
	add_detection(in, 10, 10, 0, 0, 2, "empty", 0.5);
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
	ASSERT_TRUE(out);
	EXPECT_EQ(gst_test::read_rois(out.get()).size(), 3u) << "metadata passes on";

	/* A box wholly outside the frame (right of it, below it): nothing drawn, its label neither. */
	const Frame rgb = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr outside = overlay("show=label-score");
	gst_harness_set_src_caps(outside.get(), rgb.caps());
	in = rgb.buffer(0);
	add_detection(in, kWidth + 40, 20, 30, 30, 2, "right", 0.5);
	add_detection(in, 20, kHeight + 40, 30, 30, 2, "below", 0.5);
	out.reset(gst_harness_push_and_pull(outside.get(), in));
	ASSERT_TRUE(out);
	Pixels pixels(out.get(), rgb);
	const std::array<int, 3> grey = pixels.at(0, 0);
	int drawn = 0;
	for (int y = 0; y < kHeight; y++)
		for (int x = 0; x < kWidth; x++)
			drawn += pixels.at(x, y) != grey;
	EXPECT_EQ(drawn, 0);
}

// Whatever it draws (boxes partly or wholly outside the frame, long labels, any text size and
// line width, pixels of any shape, odd sizes, every format), the overlay writes only inside the
// frame: the padding at the end of each row and the memory after the buffer keep their bytes.
// Sanitizer builds check each access as well.
TEST(FrcnnOverlay, DrawsOnlyInsideTheFrame)
{
	std::mt19937 rng(5);
	auto below = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
	const std::pair<int, int> ratios[] = { { 1, 1 }, { 2, 1 }, { 1, 2 }, { 64, 45 }, { 10, 11 }, { 4, 3 } };
	const char *shows[] = { "none", "label", "score", "label-score" };
	const std::vector<GstVideoFormat> &formats = gst_test::all_formats();
	int drawn = 0;
	for (int round = 0; round < 1000; round++) {
		const GstVideoFormat format = formats[below(static_cast<int>(formats.size()))];
		const int width = 1 + below(90), height = 1 + below(60);
		// Rows padded by whole 32-bit words, as GStreamer's buffers' are (OpenCV's images of
		// 16-bit samples need rows of whole samples).
		const int padding = below(2) ? 0 : 4 * (1 + below(6));
		const auto [par_n, par_d] = ratios[below(6)];
		const std::string properties = "line-thickness=" + std::to_string(1 + below(12)) +
					       " text-scale=" + std::to_string(0.1 + below(25) / 10.0) +
					       " show=" + shows[below(4)];
		SCOPED_TRACE("round " + std::to_string(round) + ": " + gst_video_format_to_string(format) + " " +
			     std::to_string(width) + "x" + std::to_string(height) + ", padding " +
			     std::to_string(padding) + ", pixels " + std::to_string(par_n) + ":" +
			     std::to_string(par_d) + ", " + properties);
		cv::Mat image(height, width, CV_8UC3);
		cv::randu(image, 0, 256);
		Frame frame = make_frame(image, format, padding);
		GST_VIDEO_INFO_PAR_N(&frame.info) = par_n;
		GST_VIDEO_INFO_PAR_D(&frame.info) = par_d;
		// Interlaced: the caps say so, the bytes keep their layout where the caps' would be
		// no larger (a video meta's, or GStreamer's own where it is the same).
		if (below(4) == 0) {
			GstVideoInfo interlaced;
			gst_video_info_set_interlaced_format(&interlaced, format, GST_VIDEO_INTERLACE_MODE_INTERLEAVED,
							     width, height);
			if (frame.video_meta || GST_VIDEO_INFO_SIZE(&interlaced) == frame.bytes.size())
				frame.info.interlace_mode = GST_VIDEO_INTERLACE_MODE_INTERLEAVED;
		}
		HarnessPtr h = overlay(properties.c_str());
		gst_harness_set_src_caps(h.get(), frame.caps());

		// The frame's bytes and a guard after them, in memory the buffer wraps.
		constexpr std::size_t kGuard = 256;
		std::vector<uint8_t> memory(frame.bytes);
		memory.resize(frame.bytes.size() + kGuard, 0x3c);
		const std::vector<uint8_t> original = memory;
		GstBuffer *in = gst_buffer_new_wrapped_full(static_cast<GstMemoryFlags>(0), memory.data(), memory.size(),
							    0, frame.bytes.size(), nullptr, nullptr);
		if (frame.video_meta)
			gst_buffer_add_video_meta_full(in, GST_VIDEO_FRAME_FLAG_NONE, format, width, height,
						       frame.n_planes(), frame.offsets, frame.strides);
		for (int k = 1 + below(5); k > 0; k--) {
			const std::string label(below(30), static_cast<char>('a' + below(26)));
			// Now and then a corner far outside, as another producer's meta may have it
			// (coordinates are unsigned 32-bit numbers).
			auto far = [&](guint near) {
				const guint corners[] = { 0x7fffffffu - static_cast<guint>(below(3)), 0xffffffffu, 0x80000000u };
				return below(12) == 0 ? corners[below(3)] : near;
			};
			add_detection(in, far(below(width + 20)), far(below(height + 20)), far(below(3 * width)),
				      far(below(3 * height)), below(90), label.c_str(), below(101) / 100.0);
		}
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
		ASSERT_TRUE(out);
		GstMapInfo map;
		ASSERT_TRUE(gst_buffer_map(out.get(), &map, GST_MAP_READ));
		const bool in_place = map.data == memory.data();
		gst_buffer_unmap(out.get(), &map);
		ASSERT_TRUE(in_place) << "the overlay drew on a copy";
		drawn += memory != original;

		for (std::size_t i = frame.bytes.size(); i < memory.size(); i++)
			ASSERT_EQ(memory[i], original[i]) << "byte " << i - frame.bytes.size() << " after the buffer";
		for (guint p = 0; padding > 0 && p < frame.n_planes(); p++)
			for (int y = 0; y < GST_VIDEO_INFO_COMP_HEIGHT(&frame.info, p); y++) {
				const std::size_t row_end = frame.offsets[p] + static_cast<std::size_t>(y) * frame.strides[p] +
							    frame.strides[p] - padding;
				for (int i = 0; i < padding; i++)
					ASSERT_EQ(memory[row_end + i], original[row_end + i])
						<< "plane " << p << ", row " << y << ": padding byte " << i;
			}
	}
	EXPECT_GT(drawn, 600) << "rounds that drew something";
}

// Interlaced 4:2:0 frames laid out with fewer chroma rows than their fields need ((height + 1) / 2
// rows where each field's are rounded up: GStreamer 1.22's own layout of P010_10LE, P012_LE and
// P016_LE frames of 4k + 1 or 4k + 2 rows, or a producer's video meta for any format): the
// overlay draws on the rows there are and nothing after them.
TEST(FrcnnOverlay, InterlacedFramesOfFewerChromaRowsThanTheirFieldsNeed)
{
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_P010_10LE,
				       GST_VIDEO_FORMAT_P012_LE, GST_VIDEO_FORMAT_P016_LE }) {
		for (const int height : { 6, 37, 38 }) {
			SCOPED_TRACE(std::string(gst_video_format_to_string(format)) + " of " + std::to_string(height) + " rows");
			// A video meta's layout: rows padded by 4 bytes, (height + 1) / 2 chroma rows.
			Frame frame = make_frame(cv::Mat(height, 64, CV_8UC3, cv::Scalar(40, 90, 160)), format, 4);
			ASSERT_TRUE(frame.video_meta);
			frame.info.interlace_mode = GST_VIDEO_INTERLACE_MODE_INTERLEAVED;
			HarnessPtr h = overlay("line-thickness=3 show=label");
			gst_harness_set_src_caps(h.get(), frame.caps());
			constexpr std::size_t kGuard = 4096;
			std::vector<uint8_t> memory(frame.bytes);
			memory.resize(frame.bytes.size() + kGuard, 0x3c);
			const std::vector<uint8_t> original = memory;
			GstBuffer *in = gst_buffer_new_wrapped_full(static_cast<GstMemoryFlags>(0), memory.data(),
								    memory.size(), 0, frame.bytes.size(), nullptr, nullptr);
			gst_buffer_add_video_meta_full(in, GST_VIDEO_FRAME_FLAG_NONE, format, frame.width(), height,
						       frame.n_planes(), frame.offsets, frame.strides);
			add_detection(in, 0, 0, 64, height, 3, "car", 0.9, G_TYPE_INT, 64, height);
			gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
			ASSERT_TRUE(out);
			for (std::size_t i = frame.bytes.size(); i < memory.size(); i++)
				ASSERT_EQ(memory[i], original[i]) << "byte " << i - frame.bytes.size() << " after the buffer";
			// The box's bottom line reaches the last chroma row there is.
			const guint last = frame.n_planes() - 1;
			const int rows = (height + 1) / 2;
			const std::size_t row = frame.offsets[last] + static_cast<std::size_t>(rows - 1) * frame.strides[last];
			EXPECT_FALSE(std::equal(memory.begin() + row, memory.begin() + row + 8, original.begin() + row))
				<< "the last chroma row was not drawn on";
		}
	}
}

// Rows of 16-bit samples an odd number of bytes apart (a producer's GstVideoMeta may say so;
// GStreamer's own layouts never do) cannot be drawn on: a stream error that says what to do, no
// crash, the frame not passed on.
constexpr const char *kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"; // fonts-dejavu-core

// The pixels of the label a "car" detection labelled `label` gets (the rows above the box, as
// far right as the widest label), and the rows in it holding the letters' ink (neither the
// label's colour nor the frame's grey).
struct DrawnLabel {
	std::vector<std::array<int, 3>> pixels;
	int ink_rows = 0;
};

DrawnLabel draw_label(const std::string &properties, const char *label)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = overlay(("show=label " + properties).c_str());
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstBuffer *in = frame.buffer(0);
	add_detection(in, 20, 90, 150, 50, 3, label, 0.9);
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
	DrawnLabel drawn;
	if (!out) {
		ADD_FAILURE() << "no output";
		return drawn;
	}
	Pixels pixels(out.get(), frame);
	const std::array<int, 3> grey = pixels.at(190, 5), fill = pixels.at(21, 88);
	for (int y = 0; y < 88; y++) {
		bool ink = false;
		for (int x = 20; x < kWidth; x++) {
			drawn.pixels.push_back(pixels.at(x, y));
			ink = ink || (pixels.at(x, y) != grey && pixels.at(x, y) != fill);
		}
		drawn.ink_rows += ink;
	}
	return drawn;
}

// With `font` (a TrueType or OpenType file) the labels are drawn through FreeType, in any script
// the font covers: a Cyrillic label is not the row of '?' that the built-in font (ASCII only)
// makes of it. At text-scale 1.0 capitals are about 22 pixels high in both.
TEST(FrcnnOverlay, AFontDrawsLabelsInAnyScript)
{
	ASSERT_TRUE(g_file_test(kFont, G_FILE_TEST_IS_REGULAR)) << kFont << " is missing (Debian package fonts-dejavu-core)";
	const std::string font = std::string("font=") + kFont;
	const char *cyrillic = "\u043c\u0430\u0448\u0438\u043d\u0430"; // "car" in Russian
	// A '?' for each byte of the UTF-8 text.
	const std::string question_marks(std::strlen(cyrillic), '?');
	EXPECT_EQ(draw_label("", cyrillic).pixels, draw_label("", question_marks.c_str()).pixels)
		<< "the built-in font draws other characters than ASCII as '?'";
	const DrawnLabel drawn = draw_label(font, cyrillic);
	EXPECT_NE(drawn.pixels, draw_label(font, question_marks.c_str()).pixels);
	EXPECT_NE(drawn.pixels, draw_label("", cyrillic).pixels) << "the font is not used";
	EXPECT_GT(drawn.ink_rows, 5);
	for (const char *properties : { "text-scale=1.0", "text-scale=1.0 font=" }) {
		SCOPED_TRACE(properties);
		const std::string with_font = std::string(properties) + (std::string(properties).back() == '=' ? kFont : "");
		EXPECT_NEAR(draw_label(with_font, "HH").ink_rows, 22, 4);
	}
}

// A font file that cannot be read fails the start with a message that says what to do; set while
// playing, it is warned about and the labels keep the font they have.
TEST(FrcnnOverlay, AFontThatCannotBeReadIsAClearError)
{
	gst_test::init();
	GError *error = nullptr;
	GstElement *pipeline = gst_parse_launch(
		"videotestsrc num-buffers=1 ! frcnnoverlay name=overlay font=/no/such/font.ttf ! fakesink", &error);
	ASSERT_EQ(error, nullptr) << error->message;
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error on the bus";
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_STREQ(error->message, "Could not load the font '/no/such/font.ttf': no such file. Set 'font' to a "
				     "TrueType or OpenType file, e.g. /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "
				     "(Debian package fonts-dejavu-core), or leave it empty for the built-in font.");
	g_clear_error(&error);
	gst_message_unref(message);
	gst_object_unref(bus);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(pipeline);

	/* A device is no font file, and not missing either. */
	pipeline = gst_parse_launch("videotestsrc num-buffers=1 ! frcnnoverlay font=/dev/zero ! fakesink", &error);
	ASSERT_EQ(error, nullptr) << error->message;
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
	bus = gst_element_get_bus(pipeline);
	message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error on the bus";
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_EQ(std::string(error->message).rfind("Could not load the font '/dev/zero': not a regular file (a device "
						    "or a pipe). Set 'font' to",
						    0),
		  0u)
		<< error->message;
	g_clear_error(&error);
	gst_message_unref(message);
	gst_object_unref(bus);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(pipeline);

	/* While playing: a warning, and the labels as before. */
	const std::string font = std::string("font=") + kFont;
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = overlay(("show=label " + font).c_str());
	GstBus *playing_bus = gst_bus_new();
	gst_element_set_bus(h->element, playing_bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	auto labelled = [&](GstClockTime pts) {
		GstBuffer *in = frame.buffer(pts);
		add_detection(in, 20, 90, 150, 50, 3, "car", 0.9);
		return gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), in));
	};
	gst_test::BufferPtr before = labelled(0);
	g_object_set(h->element, "font", "/etc/hostname", nullptr);
	message = gst_bus_pop_filtered(playing_bus, GST_MESSAGE_WARNING);
	ASSERT_NE(message, nullptr) << "no warning on the bus";
	gst_message_parse_warning(message, &error, nullptr);
	EXPECT_STREQ(error->message, "Could not load the font '/etc/hostname': FreeType cannot read it (not a TrueType "
				     "or OpenType font?). Set 'font' to a TrueType or OpenType file, e.g. "
				     "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf (Debian package fonts-dejavu-core), "
				     "or leave it empty for the built-in font. The text keeps its font until the element "
				     "stops; the next start fails unless 'font' is set to a file that loads.");
	g_clear_error(&error);
	gst_message_unref(message);
	gst_test::BufferPtr after = labelled(GST_SECOND);
	ASSERT_TRUE(before && after);
	Pixels a(before.get(), frame), b(after.get(), frame);
	for (int y = 60; y < 90; y++)
		for (int x = 20; x < 120; x++)
			ASSERT_EQ(a.at(x, y), b.at(x, y)) << x << "," << y;
	gchar *value = nullptr;
	g_object_get(h->element, "font", &value, nullptr);
	EXPECT_STREQ(value, "/etc/hostname") << "the property reads back as set";
	g_free(value);
	/* The font the property names did not load: the next start fails, as from the start. */
	gst_element_set_state(h->element, GST_STATE_NULL);
	EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	message = gst_bus_pop_filtered(playing_bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "the next start gave no error";
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_NE(std::string(error->message).find("Could not load the font '/etc/hostname'"), std::string::npos)
		<< error->message;
	g_clear_error(&error);
	gst_message_unref(message);
	/* A font that loads: the start succeeds again. */
	g_object_set(h->element, "font", kFont, nullptr);
	EXPECT_NE(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	/* Fonts that load while playing, a file or the built-in one, warn of nothing. */
	for (const char *loads : { kFont, "" }) {
		g_object_set(h->element, "font", loads, nullptr);
		message = gst_bus_pop_filtered(playing_bus, GST_MESSAGE_WARNING);
		EXPECT_EQ(message, nullptr) << "font '" << loads << "' warned";
		if (message)
			gst_message_unref(message);
	}
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(playing_bus);
}

TEST(FrcnnOverlay, OddStridesOf16BitSamplesAreAClearError)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_P010_10LE, 3);
	HarnessPtr h = overlay();
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstBuffer *in = frame.buffer(0);
	add_detection(in, 40, 60, 80, 50, 3, "car", 0.9);
	EXPECT_EQ(gst_harness_push(h.get(), in), GST_FLOW_ERROR);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error on the bus";
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	ASSERT_EQ(frame.strides[0] % 2, 1);
	EXPECT_EQ(std::string(error->message),
		  "Cannot draw on P010_10LE frames whose rows are an odd number of bytes apart (plane 0: " +
			  std::to_string(frame.strides[0]) +
			  " bytes): their 16-bit samples must start on even bytes. Put videoconvert in front of "
			  "frcnnoverlay.");
	g_error_free(error);
	gst_message_unref(message);
	/* The same frame without detections passes: nothing to draw. */
	EXPECT_EQ(gst_harness_push(h.get(), frame.buffer(GST_SECOND)), GST_FLOW_OK);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// A buffer smaller than its video meta says (which GStreamer maps without complaint) is an
// error, not a write past its end.
TEST(FrcnnOverlay, ABufferSmallerThanItsVideoMetaSaysIsAnError)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = overlay();
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	const gsize size = kWidth * 3 * 10;
	GstBuffer *in = gst_buffer_new_allocate(nullptr, size, nullptr);
	gst_buffer_memset(in, 0, 0x80, size);
	gst_buffer_add_video_meta(in, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_FORMAT_RGB, kWidth, kHeight);
	add_detection(in, 0, 0, kWidth, kHeight, 3, "car", 0.9);
	EXPECT_EQ(gst_harness_push(h.get(), in), GST_FLOW_ERROR);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error on the bus";
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_NE(std::string(error->message).find("Cannot draw on a " + std::to_string(kWidth) + "x" +
						   std::to_string(kHeight) + " RGB frame: its plane 0 needs " +
						   std::to_string(kHeight) + " rows"),
		  std::string::npos)
		<< error->message;
	g_error_free(error);
	gst_message_unref(message);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// A buffer too small for the frame of its caps (without a video meta) that has regions to draw is
// an error that says so (it went on undrawn, with GStreamer's warning asking to file a bug); one
// without regions passes untouched.
TEST(FrcnnOverlay, ABufferTooSmallForItsCapsIsAnError)
{
	const Frame frame = make_frame(cv::Mat(kHeight, kWidth, CV_8UC3, kGrey), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = overlay();
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	const gsize size = 100;
	GstBuffer *empty = gst_buffer_new_allocate(nullptr, size, nullptr);
	gst_buffer_memset(empty, 0, 0x80, size);
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), empty));
	ASSERT_TRUE(out) << "a buffer without regions passes";
	EXPECT_EQ(gst_buffer_get_size(out.get()), size);
	GstMessage *message = gst_bus_pop_filtered(bus, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_WARNING));
	EXPECT_EQ(message, nullptr) << "a buffer without regions was complained of";
	if (message)
		gst_message_unref(message);

	GstBuffer *in = gst_buffer_new_allocate(nullptr, size, nullptr);
	gst_buffer_memset(in, 0, 0x80, size);
	add_detection(in, 0, 0, 20, 20, 3, "car", 0.9);
	EXPECT_EQ(gst_harness_push(h.get(), in), GST_FLOW_ERROR);
	message = gst_bus_pop_filtered(bus, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_WARNING));
	ASSERT_NE(message, nullptr) << "no error on the bus";
	ASSERT_EQ(GST_MESSAGE_TYPE(message), GST_MESSAGE_ERROR);
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_EQ(std::string(error->message),
		  "Cannot draw on a " + std::to_string(kWidth) + "x" + std::to_string(kHeight) +
			  " RGB frame from a buffer of 100 bytes (the frame takes " +
			  std::to_string(GST_ROUND_UP_4(kWidth * 3) * kHeight) +
			  " bytes): the element in front must send buffers that hold frames of its caps.");
	g_error_free(error);
	gst_message_unref(message);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// The last row of a packed 4:2:2 frame of odd width holds a whole pixel pair, and a v210 row whole
// groups of 6 pixels, which the overlay draws on: a buffer short of them, or a row stride
// shorter than the row, is an error, not a write past its end.
TEST(FrcnnOverlay, AShortRowOfPackedYuvIsAnError)
{
	for (const gst_test::ShortPackedRow &c : gst_test::short_packed_rows()) {
		SCOPED_TRACE(std::string(gst_video_format_to_string(c.format)) + " missing " + std::to_string(c.missing));
		const GstVideoInfo info = gst_test::info_of(c);
		GstBuffer *in = gst_test::described_frame(info, c.missing, c.stride);
		gst_buffer_add_video_region_of_interest_meta(in, "car", 0, 0, c.width, 32);

		HarnessPtr h = overlay();
		GstBus *bus = gst_bus_new();
		gst_element_set_bus(h->element, bus);
		GstCaps *caps = gst_video_info_to_caps(&info);
		gst_harness_set_src_caps(h.get(), caps);
		EXPECT_EQ(gst_harness_push(h.get(), in), GST_FLOW_ERROR);
		GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
		ASSERT_NE(message, nullptr) << "no error on the bus";
		GError *error = nullptr;
		gst_message_parse_error(message, &error, nullptr);
		EXPECT_NE(std::string(error->message).find(c.said), std::string::npos) << error->message;
		g_error_free(error);
		gst_message_unref(message);
		gst_element_set_bus(h->element, nullptr);
		gst_object_unref(bus);
	}
}

TEST(FrcnnOverlay, RejectsOtherFormats)
{
	HarnessPtr h = overlay();
	GstPad *sinkpad = gst_element_get_static_pad(h->element, "sink");
	for (const char *caps : { "video/x-raw,format=GRAY16_LE,width=64,height=64,framerate=30/1",
				  "video/x-raw,format=GBR,width=64,height=64,framerate=30/1" }) {
		GstCaps *c = gst_caps_from_string(caps);
		EXPECT_FALSE(gst_pad_query_accept_caps(sinkpad, c)) << caps;
		gst_caps_unref(c);
	}
	gst_object_unref(sinkpad);
}

} // namespace

// SPDX-License-Identifier: BSD-3-Clause
// frcnndetect with GstHarness: the meta equals what the library returns for the same frame, in
// every sink format and layout; batching, EOS, flushes, caps changes, interval, the class
// filter, latency, and every configuration error.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include "frcnn-build-config.h"
#include "frcnn/checkpoint.h"
#include "frcnn/config.h"
#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/labels.h"
#include "frcnn/model.h"
#include "frcnn/weights.h"

#include "common.h"
#include "gst_test_utils.h"
#include "class_filters.h"
#include "meta.h"

/*
 * Failing batches, as a batch fails that the device has no memory for (none fails on the CPU
 * otherwise): this binary exports a Detector::detect for held frames of its own (meson's
 * export_dynamic), which the plugin's calls reach before the library's. While `fail_detect` is
 * set it throws; else it runs the library's.
 */
std::atomic<bool> fail_detect{ false };

namespace frcnn {
std::vector<std::vector<Detection>> Detector::detect(const std::vector<HeldFrame> &frames)
{
	if (fail_detect)
		throw Error("inference failed: [enforce fail at alloc_cpu.cpp:75] data. DefaultCPUAllocator: can't "
			    "allocate memory: you tried to allocate 8589934592 bytes. Error code 12 (Cannot "
			    "allocate memory) (a failure the test makes)");
	/* The library's, called as the member function it is: `this` first. */
	using LibraryDetect = std::vector<std::vector<Detection>> (*)(Detector *, const std::vector<HeldFrame> &);
	static const auto library = reinterpret_cast<LibraryDetect>(
		dlsym(RTLD_NEXT, "_ZN5frcnn8Detector6detectERKSt6vectorINS_9HeldFrameESaIS2_EE"));
	if (library == nullptr)
		throw Error("the library's Detector::detect was not found");
	return library(this, frames);
}
} // namespace frcnn

namespace {

using gst_test::Frame;
using gst_test::make_frame;
using gst_test::photo;
using Clock = std::chrono::steady_clock;

constexpr double kThreshold = 0.05;
constexpr int kMinSize = 256;

frcnn::PixelFormat pixel_format(GstVideoFormat format)
{
	switch (format) {
	case GST_VIDEO_FORMAT_RGB: return frcnn::PixelFormat::RGB;
	case GST_VIDEO_FORMAT_BGR: return frcnn::PixelFormat::BGR;
	case GST_VIDEO_FORMAT_RGBx: return frcnn::PixelFormat::RGBx;
	case GST_VIDEO_FORMAT_BGRx: return frcnn::PixelFormat::BGRx;
	case GST_VIDEO_FORMAT_xRGB: return frcnn::PixelFormat::xRGB;
	case GST_VIDEO_FORMAT_xBGR: return frcnn::PixelFormat::xBGR;
	case GST_VIDEO_FORMAT_RGBA: return frcnn::PixelFormat::RGBA;
	case GST_VIDEO_FORMAT_BGRA: return frcnn::PixelFormat::BGRA;
	case GST_VIDEO_FORMAT_ARGB: return frcnn::PixelFormat::ARGB;
	case GST_VIDEO_FORMAT_ABGR: return frcnn::PixelFormat::ABGR;
	case GST_VIDEO_FORMAT_NV12: return frcnn::PixelFormat::NV12;
	case GST_VIDEO_FORMAT_I420: return frcnn::PixelFormat::I420;
	case GST_VIDEO_FORMAT_GRAY8: return frcnn::PixelFormat::GRAY8;
	case GST_VIDEO_FORMAT_NV21: return frcnn::PixelFormat::NV21;
	case GST_VIDEO_FORMAT_YV12: return frcnn::PixelFormat::YV12;
	case GST_VIDEO_FORMAT_Y42B: return frcnn::PixelFormat::Y42B;
	case GST_VIDEO_FORMAT_Y444: return frcnn::PixelFormat::Y444;
	case GST_VIDEO_FORMAT_YUY2: return frcnn::PixelFormat::YUY2;
	case GST_VIDEO_FORMAT_UYVY: return frcnn::PixelFormat::UYVY;
	case GST_VIDEO_FORMAT_YVYU: return frcnn::PixelFormat::YVYU;
	case GST_VIDEO_FORMAT_VYUY: return frcnn::PixelFormat::VYUY;
	case GST_VIDEO_FORMAT_NV16: return frcnn::PixelFormat::NV16;
	case GST_VIDEO_FORMAT_NV61: return frcnn::PixelFormat::NV61;
	case GST_VIDEO_FORMAT_NV24: return frcnn::PixelFormat::NV24;
	case GST_VIDEO_FORMAT_P010_10LE: return frcnn::PixelFormat::P010_10LE;
	case GST_VIDEO_FORMAT_I420_10LE: return frcnn::PixelFormat::I420_10LE;
	case GST_VIDEO_FORMAT_I422_10LE: return frcnn::PixelFormat::I422_10LE;
	case GST_VIDEO_FORMAT_Y444_10LE: return frcnn::PixelFormat::Y444_10LE;
	case GST_VIDEO_FORMAT_P012_LE: return frcnn::PixelFormat::P012_LE;
	case GST_VIDEO_FORMAT_I420_12LE: return frcnn::PixelFormat::I420_12LE;
	case GST_VIDEO_FORMAT_I422_12LE: return frcnn::PixelFormat::I422_12LE;
	case GST_VIDEO_FORMAT_Y444_12LE: return frcnn::PixelFormat::Y444_12LE;
	case GST_VIDEO_FORMAT_Y210: return frcnn::PixelFormat::Y210;
	case GST_VIDEO_FORMAT_Y212_LE: return frcnn::PixelFormat::Y212_LE;
	case GST_VIDEO_FORMAT_v210: return frcnn::PixelFormat::v210;
	case GST_VIDEO_FORMAT_AYUV: return frcnn::PixelFormat::AYUV;
	case GST_VIDEO_FORMAT_VUYA: return frcnn::PixelFormat::VUYA;
	case GST_VIDEO_FORMAT_P016_LE: return frcnn::PixelFormat::P016_LE;
	case GST_VIDEO_FORMAT_Y444_16LE: return frcnn::PixelFormat::Y444_16LE;
	case GST_VIDEO_FORMAT_Y410: return frcnn::PixelFormat::Y410;
	case GST_VIDEO_FORMAT_Y412_LE: return frcnn::PixelFormat::Y412_LE;
	default:
		ADD_FAILURE() << "no library format for " << gst_video_format_to_string(format);
		return frcnn::PixelFormat::RGB;
	}
}

// The library's view of a test frame, built from the test's own layout, not the element's.
frcnn::FrameView view_of(const Frame &frame)
{
	frcnn::FrameView view;
	view.format = pixel_format(GST_VIDEO_INFO_FORMAT(&frame.info));
	view.width = frame.width();
	view.height = frame.height();
	for (guint p = 0; p < frame.n_planes(); p++) {
		view.planes[p] = frame.plane(p);
		view.strides[p] = frame.strides[p];
	}
	/* The colorimetry of the caps (the element's; the tests use these matrices and primaries),
	 * but the transfer: the tests of HDR video set it. */
	const GstVideoColorimetry &colours = frame.info.colorimetry;
	view.matrix = colours.matrix == GST_VIDEO_COLOR_MATRIX_BT709	 ? frcnn::YuvMatrix::BT709
		      : colours.matrix == GST_VIDEO_COLOR_MATRIX_BT2020 ? frcnn::YuvMatrix::BT2020
									 : frcnn::YuvMatrix::BT601;
	view.full_range = colours.range == GST_VIDEO_COLOR_RANGE_0_255;
	view.primaries = colours.primaries == GST_VIDEO_COLOR_PRIMARIES_BT2020	   ? frcnn::ColourPrimaries::BT2020
			 : colours.primaries == GST_VIDEO_COLOR_PRIMARIES_SMPTEEG432 ? frcnn::ColourPrimaries::DisplayP3
										      : frcnn::ColourPrimaries::BT709;
	return view;
}

// The library with the settings the tests give the element.
frcnn::Detector &reference(double threshold = kThreshold, int min_size = kMinSize,
			   frcnn::CpuConvolutions convolutions = frcnn::CpuConvolutions::Auto,
			   int max_detections = 100, frcnn::Precision precision = frcnn::Precision::Fp32)
{
	static std::map<std::tuple<double, int, frcnn::CpuConvolutions, int, frcnn::Precision>,
			std::unique_ptr<frcnn::Detector>>
		cache;
	auto &detector = cache[{ threshold, min_size, convolutions, max_detections, precision }];
	if (!detector) {
		frcnn::DetectorOptions options;
		options.cpu_convolutions = convolutions;
		options.precision = precision;
		options.model = frcnn::model_preset("tiny");
		options.model.num_classes = 4;
		options.model.box_score_thresh = threshold;
		options.model.box_nms_thresh = 0.5;
		options.model.box_detections_per_img = max_detections;
		options.model.min_size = min_size;
		options.weights = gst_test::weights4();
		detector = std::make_unique<frcnn::Detector>(options);
	}
	return *detector;
}

// The library with the 91-class test weights (COCO's class count), at the tests' settings.
frcnn::Detector &coco_reference()
{
	static const std::unique_ptr<frcnn::Detector> detector = [] {
		frcnn::DetectorOptions options;
		options.model = frcnn::model_preset("tiny");
		options.model.num_classes = 91;
		options.model.box_score_thresh = kThreshold;
		options.model.min_size = kMinSize;
		options.weights = gst_test::weights91();
		return std::make_unique<frcnn::Detector>(options);
	}();
	return *detector;
}

std::vector<frcnn::Detection> expected_for(const Frame &frame)
{
	return reference().detect({ view_of(frame) }).at(0);
}

std::string class_name(int64_t id)
{
	return "class " + std::to_string(id);
}

// The buffer's ROI metas equal the library's detections, in order (best first); from the
// `first` meta on when the frame came with others. Each has the next id, and no parent.
void expect_meta_equals(GstBuffer *buffer, int width, int height,
			const std::vector<frcnn::Detection> &expected,
			const std::vector<std::string> &labels = {}, std::size_t first = 0)
{
	std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(buffer);
	ASSERT_GE(rois.size(), first);
	rois.erase(rois.begin(), rois.begin() + first);
	ASSERT_EQ(rois.size(), expected.size());
	for (std::size_t i = 0; i < rois.size(); i++) {
		const gst_test::RoiDetection &roi = rois[i];
		const frcnn::Detection &det = expected[i];
		SCOPED_TRACE("detection " + std::to_string(i));
		const std::string name = det.label < static_cast<int64_t>(labels.size())
						 ? labels[det.label]
						 : class_name(det.label);
		ASSERT_TRUE(roi.has_param);
		EXPECT_EQ(roi.label_id, det.label);
		EXPECT_EQ(roi.label, name);
		EXPECT_EQ(roi.roi_type, name);
		EXPECT_NEAR(roi.confidence, det.score, 1e-6);
		EXPECT_NEAR(roi.x_min * width, det.x1, 1e-3);
		EXPECT_NEAR(roi.y_min * height, det.y1, 1e-3);
		EXPECT_NEAR(roi.x_max * width, det.x2, 1e-3);
		EXPECT_NEAR(roi.y_max * height, det.y2, 1e-3);
		EXPECT_GE(roi.x_min, 0.0);
		EXPECT_LE(roi.x_max, 1.0);
		EXPECT_GE(roi.y_min, 0.0);
		EXPECT_LE(roi.y_max, 1.0);
		EXPECT_EQ(roi.x, std::lround(det.x1));
		EXPECT_EQ(roi.y, std::lround(det.y1));
		EXPECT_EQ(roi.x + roi.w, std::lround(det.x2));
		EXPECT_EQ(roi.y + roi.h, std::lround(det.y2));
		if (first == 0) {
			EXPECT_EQ(roi.id, static_cast<gint>(i));
			EXPECT_EQ(roi.parent_id, -1);
		}
	}
}

// A frcnndetect with the tiny test model; `properties` as in gst-launch ("batch-size=4 ...").
GstElement *make_detect(const std::string &properties = "")
{
	gst_test::init();
	const std::string description = "frcnndetect model=tiny weights=\"" + gst_test::weights4() +
					"\" threshold=" + std::to_string(kThreshold) +
					" min-size=" + std::to_string(kMinSize) + " " + properties;
	GError *error = nullptr;
	GstElement *element = gst_parse_launch(description.c_str(), &error);
	EXPECT_EQ(error, nullptr) << (error ? error->message : "");
	g_clear_error(&error);
	return element;
}

struct HarnessDeleter {
	void operator()(GstHarness *h) const { gst_harness_teardown(h); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

HarnessPtr harness(const std::string &properties = "")
{
	GstElement *element = make_detect(properties);
	gst_object_ref_sink(element);
	GstHarness *h = gst_harness_new_with_element(element, "sink", "src");
	gst_object_unref(element);
	return HarnessPtr(h);
}

// The detections an element (default, or of `properties`) attaches to `frame`, pushed alone, are
// `expected`.
void expect_element_detects(const Frame &frame, const std::vector<frcnn::Detection> &expected,
			    const std::string &properties = "")
{
	HarnessPtr h = harness(properties);
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected);
}

// What reached the harness's sink pad, in order: "B<pts in ms>", the event's name, or
// "Q:<name>" of a serialized query.
class FlowRecorder {
public:
	explicit FlowRecorder(GstHarness *h)
	{
		gst_pad_add_probe(h->sinkpad,
				  static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BUFFER |
							       GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM |
							       GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM),
				  probe, this, nullptr);
	}

	std::vector<std::string> items()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return items_;
	}

private:
	static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data)
	{
		auto *self = static_cast<FlowRecorder *>(data);
		std::string item;
		if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
			item = "B" + std::to_string(GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info)) /
						    GST_MSECOND);
		} else if (info->type & GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM) {
			/* As it comes (the probe sees it again with its answer). */
			GstQuery *query = GST_PAD_PROBE_INFO_QUERY(info);
			if (!(info->type & GST_PAD_PROBE_TYPE_PUSH) || !GST_QUERY_IS_SERIALIZED(query))
				return GST_PAD_PROBE_OK;
			item = std::string("Q:") + GST_QUERY_TYPE_NAME(query);
		} else {
			item = GST_EVENT_TYPE_NAME(GST_PAD_PROBE_INFO_EVENT(info));
		}
		std::lock_guard<std::mutex> lock(self->mutex_);
		self->items_.push_back(item);
		return GST_PAD_PROBE_OK;
	}

	std::mutex mutex_;
	std::vector<std::string> items_;
};

// Takes the events that reached the harness until EOS; false when none comes within a minute.
bool pull_until_eos(GstHarness *h)
{
	while (GstEvent *event = gst_harness_pull_event(h)) {
		const bool eos = GST_EVENT_TYPE(event) == GST_EVENT_EOS;
		gst_event_unref(event);
		if (eos)
			return true;
	}
	return false;
}

std::vector<std::string> buffers_and(const std::vector<std::string> &items, const char *event)
{
	std::vector<std::string> out;
	for (const std::string &item : items)
		if (item[0] == 'B' || item == event)
			out.push_back(item);
	return out;
}

// --- formats, sizes, layouts ------------------------------------------------------------------

class FormatTest : public ::testing::TestWithParam<GstVideoFormat> {
};

TEST_P(FormatTest, MetaEqualsLibraryDetections)
{
	const GstVideoFormat format = GetParam();
	const Frame frame = make_frame(photo(320, 240), format);
	const std::vector<frcnn::Detection> expected = expected_for(frame);
	/* An empty list would prove nothing. */
	ASSERT_FALSE(expected.empty());

	HarnessPtr h = harness();
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0, GST_SECOND / 30)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected);

	/* The frame itself is untouched. */
	GstMapInfo map;
	ASSERT_TRUE(gst_buffer_map(out.get(), &map, GST_MAP_READ));
	ASSERT_EQ(map.size, frame.bytes.size());
	EXPECT_EQ(std::memcmp(map.data, frame.bytes.data(), map.size), 0);
	gst_buffer_unmap(out.get(), &map);
}

// Settings that run the same model with other kernels: the same detections as LibTorch's
// convolutions give, up to rounding. channels-last=true runs them on NHWC data;
// cpu-convolutions=onednn on oneDNN primitives (folded batch norms, fused epilogues, Winograd),
// made when the element starts and run in its streaming thread.
void expect_same_detections_with(const char *settings)
{
	SCOPED_TRACE(settings);
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const std::vector<frcnn::Detection> expected =
		reference(kThreshold, kMinSize, frcnn::CpuConvolutions::LibTorch).detect({ view_of(frame) }).at(0);
	ASSERT_FALSE(expected.empty());
	HarnessPtr h = harness(settings);
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0, GST_SECOND / 30)));
	ASSERT_TRUE(out);
	const std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(out.get());
	ASSERT_EQ(rois.size(), expected.size());
	for (std::size_t i = 0; i < rois.size(); i++) {
		SCOPED_TRACE("detection " + std::to_string(i));
		EXPECT_EQ(rois[i].label_id, expected[i].label);
		EXPECT_NEAR(rois[i].confidence, expected[i].score, 1e-3);
		EXPECT_NEAR(rois[i].x_min * frame.width(), expected[i].x1, 0.5);
		EXPECT_NEAR(rois[i].y_min * frame.height(), expected[i].y1, 0.5);
		EXPECT_NEAR(rois[i].x_max * frame.width(), expected[i].x2, 0.5);
		EXPECT_NEAR(rois[i].y_max * frame.height(), expected[i].y2, 0.5);
	}
}

TEST(FrcnnDetect, ChannelsLastGivesTheSameDetections)
{
	expect_same_detections_with("channels-last=true cpu-convolutions=libtorch");
}

TEST(FrcnnDetect, OneDnnConvolutionsGiveTheSameDetections)
{
#if FRCNN_HAVE_ONEDNN
	expect_same_detections_with("cpu-convolutions=onednn");
#else
	GTEST_SKIP() << "this build has no oneDNN";
#endif
}

// precision=bf16 runs the model in bfloat16 (on a CPU with the instructions for it): the
// detections of the library's bf16 detector, which are not fp32's.
TEST(FrcnnDetect, Bf16RunsTheModelInBfloat16)
{
	if (!frcnn::cpu_has_bf16())
		GTEST_SKIP() << "this CPU has no bfloat16 instructions: precision=bf16 fails the start here, "
				"which Errors/ErrorTest.*/Bf16WithoutTheInstructions checks";
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const std::vector<frcnn::Detection> bf16 =
		reference(kThreshold, kMinSize, frcnn::CpuConvolutions::Auto, 100, frcnn::Precision::Bf16)
			.detect({ view_of(frame) })
			.at(0);
	const std::vector<frcnn::Detection> fp32 = expected_for(frame);
	ASSERT_FALSE(bf16.empty());
	// Otherwise the test could not tell bf16 from fp32.
	bool differs = bf16.size() != fp32.size();
	for (std::size_t i = 0; !differs && i < bf16.size(); i++)
		differs = bf16[i].score != fp32[i].score || bf16[i].x1 != fp32[i].x1;
	ASSERT_TRUE(differs) << "bf16 and fp32 give the same bits on this frame";

	HarnessPtr h = harness("precision=bf16");
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0, GST_SECOND / 30)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), bf16);
}

// precision=int8: the first int8-calibration-frames frames are detected in fp32 while the
// ranges are measured, the next ones in 8 bits, as the library's Detector does; the calibration
// file is written when the calibration ends.
TEST(FrcnnDetect, Int8CalibratesOnTheFirstFramesThenRunsIn8Bits)
{
	if (!frcnn::int8_unsupported_reason(frcnn::model_preset("tiny")).empty())
		GTEST_SKIP() << "int8 needs oneDNN, which this build lacks";
	const Frame first = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const Frame second = make_frame(photo(320, 240, 1), GST_VIDEO_FORMAT_RGB);
	frcnn::DetectorOptions options;
	options.model = frcnn::model_preset("tiny");
	options.model.num_classes = 4;
	options.model.box_score_thresh = kThreshold;
	options.model.box_nms_thresh = 0.5;
	options.model.min_size = kMinSize;
	options.weights = gst_test::weights4();
	options.precision = frcnn::Precision::Int8;
	options.int8_calibration_frames = 1;
	frcnn::Detector int8(options);
	const auto calibrating = int8.detect({ view_of(first) }).at(0);
	ASSERT_TRUE(int8.int8_calibrated());
	const auto quantized = int8.detect({ view_of(second) }).at(0);
	const auto fp32 = expected_for(second);
	ASSERT_FALSE(quantized.empty());
	bool differs = quantized.size() != fp32.size();
	for (std::size_t i = 0; !differs && i < quantized.size(); i++)
		differs = quantized[i].score != fp32[i].score || quantized[i].x1 != fp32[i].x1;
	ASSERT_TRUE(differs) << "int8 and fp32 give the same bits on this frame";

	const std::string file = gst_test::out_dir() + "/tiny4.int8.json";
	std::remove(file.c_str());
	HarnessPtr h = harness("precision=int8 int8-calibration-frames=1 int8-calibration=\"" + file + "\"");
	gst_harness_set_src_caps(h.get(), first.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), first.buffer(0, GST_SECOND / 30)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), first.width(), first.height(), expected_for(first));
	EXPECT_EQ(calibrating.size(), expected_for(first).size()) << "the calibration frame is fp32's";
	out.reset(gst_harness_push_and_pull(h.get(), second.buffer(GST_SECOND / 30, GST_SECOND / 30)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), second.width(), second.height(), quantized);
	EXPECT_EQ(frcnn::load_int8_calibration(file).frames, 1);
}

TEST_P(FormatTest, OddSizeAndPaddedStrides)
{
	const GstVideoFormat format = GetParam();
	for (int padding : { 0, 52 }) {
		SCOPED_TRACE("stride padding " + std::to_string(padding));
		const Frame frame = make_frame(photo(641, 479), format, padding);
		const std::vector<frcnn::Detection> expected = expected_for(frame);
		ASSERT_FALSE(expected.empty());

		expect_element_detects(frame, expected);
	}
}

INSTANTIATE_TEST_SUITE_P(AllSinkFormats, FormatTest,
	::testing::ValuesIn(gst_test::all_formats()), gst_test::format_name);

TEST(FrcnnDetect, LayoutsOfOnePictureAllSeeTheSameImage)
{
	/* The formats of a family hold the same samples of a photo in other places (packed RGB in
	 * every byte order; YUV of one chroma subsampling, in 8 bits or the same levels in more): the
	 * same detections. Each family is checked against the library on its first format. */
	const cv::Mat image = photo(321, 241);
	for (const std::vector<GstVideoFormat> &family :
	     { std::vector<GstVideoFormat>{ GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_xBGR,
					    GST_VIDEO_FORMAT_ARGB },
	       std::vector<GstVideoFormat>{ GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_YV12, GST_VIDEO_FORMAT_NV12,
					    GST_VIDEO_FORMAT_NV21, GST_VIDEO_FORMAT_I420_10LE, GST_VIDEO_FORMAT_P010_10LE,
					    GST_VIDEO_FORMAT_I420_12LE, GST_VIDEO_FORMAT_P012_LE, GST_VIDEO_FORMAT_P016_LE },
	       std::vector<GstVideoFormat>{ GST_VIDEO_FORMAT_Y42B, GST_VIDEO_FORMAT_NV16, GST_VIDEO_FORMAT_NV61,
					    GST_VIDEO_FORMAT_YUY2, GST_VIDEO_FORMAT_UYVY, GST_VIDEO_FORMAT_YVYU,
					    GST_VIDEO_FORMAT_VYUY, GST_VIDEO_FORMAT_I422_10LE, GST_VIDEO_FORMAT_I422_12LE,
					    GST_VIDEO_FORMAT_Y210, GST_VIDEO_FORMAT_Y212_LE, GST_VIDEO_FORMAT_v210 },
	       std::vector<GstVideoFormat>{ GST_VIDEO_FORMAT_Y444, GST_VIDEO_FORMAT_NV24, GST_VIDEO_FORMAT_Y444_10LE,
					    GST_VIDEO_FORMAT_Y444_12LE, GST_VIDEO_FORMAT_AYUV, GST_VIDEO_FORMAT_VUYA,
					    GST_VIDEO_FORMAT_Y444_16LE, GST_VIDEO_FORMAT_Y410, GST_VIDEO_FORMAT_Y412_LE } }) {
		const std::vector<frcnn::Detection> expected = expected_for(make_frame(image, family.front()));
		ASSERT_FALSE(expected.empty());
		for (GstVideoFormat format : family) {
			SCOPED_TRACE(gst_video_format_to_string(format));
			const Frame frame = make_frame(image, format);
			expect_element_detects(frame, expected);
		}
	}
}

TEST(FrcnnDetect, ReadsYuvInTheColorimetryOfTheCaps)
{
	/* The same bytes under caps of other colorimetries are other colours: each as the library
	 * reads them in that matrix and range. Caps without one get GStreamer's default for the
	 * size (BT.601 here). */
	const cv::Mat image = photo(320, 240);
	std::vector<std::vector<frcnn::Detection>> seen;
	for (const char *colorimetry : { "bt601", "bt709", "bt2020", "1:4:0:0" /* JPEG: full range */ }) {
		SCOPED_TRACE(colorimetry);
		Frame frame = make_frame(image, GST_VIDEO_FORMAT_NV12);
		ASSERT_TRUE(gst_video_colorimetry_from_string(&frame.info.colorimetry, colorimetry));
		const std::vector<frcnn::Detection> expected = expected_for(frame);
		ASSERT_FALSE(expected.empty());
		for (const auto &other : seen)
			ASSERT_FALSE(other.size() == expected.size() &&
				     std::equal(other.begin(), other.end(), expected.begin(),
						[](const frcnn::Detection &a, const frcnn::Detection &b) {
							return a.label == b.label && a.score == b.score;
						}))
				<< "the colorimetries must give other detections for the test to tell them apart";
		seen.push_back(expected);

		expect_element_detects(frame, expected);
	}

	/* A range the caps leave unknown ("0:..."), read as videoconvert reads it: as full. */
	Frame full = make_frame(image, GST_VIDEO_FORMAT_NV12);
	ASSERT_TRUE(gst_video_colorimetry_from_string(&full.info.colorimetry, "1:3:5:1"));
	const std::vector<frcnn::Detection> expected = expected_for(full);
	ASSERT_FALSE(expected.size() == seen[1].size() &&
		     std::equal(expected.begin(), expected.end(), seen[1].begin(),
				[](const frcnn::Detection &a, const frcnn::Detection &b) {
					return a.label == b.label && a.score == b.score;
				}))
		<< "BT.709 in full range and in limited range must differ for the test to tell them apart";
	Frame unknown = make_frame(image, GST_VIDEO_FORMAT_NV12);
	ASSERT_TRUE(gst_video_colorimetry_from_string(&unknown.info.colorimetry, "0:3:5:1"));
	ASSERT_EQ(unknown.info.colorimetry.range, GST_VIDEO_COLOR_RANGE_UNKNOWN);
	expect_element_detects(unknown, expected);
}

TEST(FrcnnDetect, RejectsOtherFormats)
{
	HarnessPtr h = harness();
	GstPad *sinkpad = gst_element_get_static_pad(h->element, "sink");
	for (const char *caps : { "video/x-raw,format=GRAY16_LE,width=64,height=64,framerate=30/1",
				  "video/x-raw,format=GBR,width=64,height=64,framerate=30/1",
				  "video/x-raw,format=NV12_10LE40,width=64,height=64,framerate=30/1",
				  "video/x-raw(memory:GLMemory),format=RGBA,width=64,height=64,framerate=30/1",
				  "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved" }) {
		GstCaps *c = gst_caps_from_string(caps);
		EXPECT_FALSE(gst_pad_query_accept_caps(sinkpad, c)) << caps;
		gst_caps_unref(c);
	}
	GstCaps *ok = gst_caps_from_string("video/x-raw,format=NV12,width=64,height=64,framerate=30/1");
	EXPECT_TRUE(gst_pad_query_accept_caps(sinkpad, ok));
	gst_caps_unref(ok);
	gst_object_unref(sinkpad);
}

// --- batching -----------------------------------------------------------------------------------

std::vector<Frame> distinct_frames(int count, int width = 256, int height = 192)
{
	std::vector<Frame> frames;
	for (int i = 0; i < count; i++)
		frames.push_back(make_frame(photo(width, height, 13 * i), GST_VIDEO_FORMAT_BGRx));
	return frames;
}

TEST(FrcnnDetect, BatchesKeepOrderTimestampsAndResults)
{
	const int kFrames = 10, kBatch = 4;
	const std::vector<Frame> frames = distinct_frames(kFrames);

	/* Full batches of 4, then the last 2 when EOS comes: the same calls on the library. */
	std::vector<std::vector<frcnn::Detection>> expected;
	for (int start = 0; start < kFrames; start += kBatch) {
		std::vector<frcnn::FrameView> views;
		for (int i = start; i < std::min(kFrames, start + kBatch); i++)
			views.push_back(view_of(frames[i]));
		for (auto &result : reference().detect(views))
			expected.push_back(std::move(result));
	}

	HarnessPtr h = harness("batch-size=4 batch-timeout=60000");
	FlowRecorder recorder(h.get());
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	const GstClockTime duration = GST_SECOND / 30;
	for (int i = 0; i < kFrames; i++) {
		GstBuffer *buffer = frames[i].buffer(i * duration, duration);
		GST_BUFFER_OFFSET(buffer) = i;
		GST_BUFFER_FLAG_SET(buffer, i % 2 ? GST_BUFFER_FLAG_DELTA_UNIT : 0);
		ASSERT_EQ(gst_harness_push(h.get(), buffer), GST_FLOW_OK);
	}
	const Clock::time_point eos_time = Clock::now();
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));

	for (int i = 0; i < kFrames; i++) {
		SCOPED_TRACE("frame " + std::to_string(i));
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * duration);
		EXPECT_EQ(GST_BUFFER_DURATION(out.get()), duration);
		EXPECT_EQ(GST_BUFFER_OFFSET(out.get()), static_cast<guint64>(i));
		EXPECT_EQ(GST_BUFFER_FLAG_IS_SET(out.get(), GST_BUFFER_FLAG_DELTA_UNIT), i % 2 == 1);
		expect_meta_equals(out.get(), frames[i].width(), frames[i].height(), expected[i]);
	}
	/* The partial batch ran at EOS, long before its 60 s timeout. */
	EXPECT_LT(Clock::now() - eos_time, std::chrono::seconds(50));
	EXPECT_EQ(gst_harness_buffers_received(h.get()), static_cast<guint>(kFrames));

	ASSERT_TRUE(pull_until_eos(h.get()));
	const std::vector<std::string> flow = buffers_and(recorder.items(), "eos");
	ASSERT_EQ(flow.size(), static_cast<std::size_t>(kFrames + 1));
	EXPECT_EQ(flow.back(), "eos");
}

TEST(FrcnnDetect, PartialBatchLeavesAfterTimeout)
{
	/* A live-like source: one frame, then nothing. The batch of 4 is never full. */
	const Frame frame = make_frame(photo(256, 192), GST_VIDEO_FORMAT_RGB);

	/* How long one frame takes here, to allow for a slow or busy machine. */
	Clock::time_point start = Clock::now();
	const std::vector<frcnn::Detection> expected = expected_for(frame);
	const auto inference = Clock::now() - start;

	const auto timeout = std::chrono::milliseconds(400);
	HarnessPtr h = harness("batch-size=4 batch-timeout=400");
	gst_harness_set_src_caps(h.get(), frame.caps());

	start = Clock::now();
	ASSERT_EQ(gst_harness_push(h.get(), frame.buffer(0, GST_SECOND / 30)), GST_FLOW_OK);
	gst_test::BufferPtr out;
	while (!out && Clock::now() - start < std::chrono::seconds(60)) {
		out.reset(gst_harness_try_pull(h.get()));
		if (!out)
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	const auto elapsed = Clock::now() - start;
	ASSERT_TRUE(out) << "the partial batch never left";
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected);

	/* It waited for the batch to fill... */
	EXPECT_GE(elapsed, timeout - std::chrono::milliseconds(20));
	/* ...but not much longer than the timeout plus its own run (generous for busy machines). */
	EXPECT_LT(elapsed, timeout + 5 * inference + std::chrono::seconds(5));
}

// A batch-timeout or batch-size set while frames wait for a partial batch applies to that batch:
// lowered, the waiting frames leave (before, they waited out the old timeout, here ten minutes).
TEST(FrcnnDetect, BatchingChangedWhileABatchWaitsAppliesToIt)
{
	const Frame frame = make_frame(photo(128, 96), GST_VIDEO_FORMAT_RGB);
	for (const char *change : { "batch-timeout", "batch-size" }) {
		SCOPED_TRACE(change);
		HarnessPtr h = harness("batch-size=8 batch-timeout=600000");
		gst_harness_set_src_caps(h.get(), frame.caps());
		for (int i = 0; i < 3; i++)
			ASSERT_EQ(gst_harness_push(h.get(), frame.buffer(i, GST_SECOND / 30)), GST_FLOW_OK);
		/* The worker has taken them and waits for more (a frame it has not taken would leave
		 * by the new value anyway). */
		std::this_thread::sleep_for(std::chrono::milliseconds(300));
		EXPECT_EQ(gst_harness_buffers_received(h.get()), 0u) << "the batch of 8 ran before it was full";
		if (std::string(change) == "batch-timeout")
			g_object_set(h->element, "batch-timeout", 0u, nullptr);
		else
			g_object_set(h->element, "batch-size", 3u, nullptr);
		const Clock::time_point start = Clock::now();
		while (gst_harness_buffers_received(h.get()) < 3 && Clock::now() - start < std::chrono::seconds(60))
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
		EXPECT_EQ(gst_harness_buffers_received(h.get()), 3u) << "the waiting frames did not leave";
	}
}

std::map<std::string, double> stats_of(GstElement *element);

// Frames the worker took under a larger batch-size run as one run when the size shrinks below
// their count while they wait: split by the new size, a frame's regions could run apart.
TEST(FrcnnDetect, FramesTakenBeforeBatchSizeShrinksRunAsOne)
{
	const Frame frame = make_frame(photo(128, 96), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = harness("batch-size=8 batch-timeout=600000");
	gst_harness_set_src_caps(h.get(), frame.caps());
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frame.buffer(i, GST_SECOND / 30)), GST_FLOW_OK);
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	ASSERT_EQ(gst_harness_buffers_received(h.get()), 0u) << "the batch of 8 ran before it was full";
	g_object_set(h->element, "batch-size", 2u, nullptr);
	const Clock::time_point start = Clock::now();
	while (gst_harness_buffers_received(h.get()) < 3 && Clock::now() - start < std::chrono::seconds(60))
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	ASSERT_EQ(gst_harness_buffers_received(h.get()), 3u) << "the waiting frames did not leave";
	std::map<std::string, double> stats = stats_of(h->element);
	EXPECT_EQ(stats["batches"], 1) << "the 3 frames taken ran in more than one run";
	EXPECT_EQ(stats["images-detected"], 3);
}

// On the CPU the element reads each frame where it lies: the buffer stays mapped from its arrival
// until its batch has run, and the map is gone before the detections are attached. Shown by changing the
// bytes of a frame that waits for its batch (which no upstream element may do): the detections
// are those of the new bytes; a copy made on arrival would give those of the old ones.
TEST(FrcnnDetect, ReadsFramesInPlaceOnTheCpu)
{
	const Frame before = make_frame(photo(256, 192, 0), GST_VIDEO_FORMAT_BGRx);
	const Frame after = make_frame(photo(256, 192, 100), GST_VIDEO_FORMAT_BGRx);
	ASSERT_EQ(before.bytes.size(), after.bytes.size());
	const std::vector<frcnn::Detection> expected = expected_for(after);
	const std::vector<frcnn::Detection> of_before = expected_for(before);
	ASSERT_FALSE(expected.empty());
	auto same = [](const std::vector<frcnn::Detection> &a, const std::vector<frcnn::Detection> &b) {
		if (a.size() != b.size())
			return false;
		for (std::size_t i = 0; i < a.size(); i++)
			if (a[i].label != b[i].label || a[i].score != b[i].score || a[i].x1 != b[i].x1)
				return false;
		return true;
	};
	ASSERT_FALSE(same(expected, of_before)) << "the two photos must give different detections";

	std::vector<uint8_t> memory = before.bytes; // the first buffer's memory, not copied
	HarnessPtr h = harness("batch-size=2 batch-timeout=60000");
	gst_harness_set_src_caps(h.get(), before.caps());
	GstBuffer *buffer = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, memory.data(), memory.size(), 0,
							memory.size(), nullptr, nullptr);
	GST_BUFFER_PTS(buffer) = 0;
	GST_BUFFER_DURATION(buffer) = GST_SECOND / 30;
	ASSERT_EQ(gst_harness_push(h.get(), buffer), GST_FLOW_OK);
	/* The batch of 2 waits for a second frame: the first one's bytes change meanwhile. */
	std::copy(after.bytes.begin(), after.bytes.end(), memory.begin());
	ASSERT_EQ(gst_harness_push(h.get(), after.buffer(GST_SECOND / 30, GST_SECOND / 30)), GST_FLOW_OK);

	for (int i = 0; i < 2; i++) {
		SCOPED_TRACE("frame " + std::to_string(i));
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), after.width(), after.height(), expected);
		/* The buffer pushed in comes out: were the frame still mapped when the detections
		   were attached, the element would have had to attach them to a copy of it. */
		if (i == 0) {
			EXPECT_EQ(out.get(), buffer) << "the frame was still mapped";
		}
	}
}

// The `stats` property's counters, by name (its doubles as they are, its integers converted).
std::map<std::string, double> stats_of(GstElement *element)
{
	GstStructure *stats = nullptr;
	g_object_get(element, "stats", &stats, nullptr);
	std::map<std::string, double> values;
	EXPECT_NE(stats, nullptr);
	if (!stats)
		return values;
	EXPECT_TRUE(gst_structure_has_name(stats, "frcnndetect-stats"));
	for (gint i = 0; i < gst_structure_n_fields(stats); i++) {
		const gchar *name = gst_structure_nth_field_name(stats, i);
		const GValue *value = gst_structure_get_value(stats, name);
		if (G_VALUE_HOLDS_UINT64(value))
			values[name] = double(g_value_get_uint64(value));
		else if (G_VALUE_HOLDS_DOUBLE(value))
			values[name] = g_value_get_double(value);
		else
			ADD_FAILURE() << name << " is a " << G_VALUE_TYPE_NAME(value);
	}
	gst_structure_free(stats);
	return values;
}

TEST(FrcnnDetect, LatencyQueryAddsBatchTimeout)
{
	HarnessPtr h = harness("batch-size=4 batch-timeout=250");
	gst_harness_set_upstream_latency(h.get(), 10 * GST_MSECOND);
	/* Before any batch ran, the element adds only the time a frame waits for its batch. */
	EXPECT_EQ(gst_harness_query_latency(h.get()), 260 * GST_MSECOND);

	/* A new batch size or timeout while playing changes the latency: the element says so, so
	   that a live pipeline asks again. The same value changes nothing. */
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	const auto latency_messages = [bus] {
		int count = 0;
		while (GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_LATENCY)) {
			gst_message_unref(message);
			count++;
		}
		return count;
	};
	g_object_set(h->element, "batch-timeout", 500u, nullptr);
	EXPECT_EQ(latency_messages(), 1);
	EXPECT_EQ(gst_harness_query_latency(h.get()), 510 * GST_MSECOND);
	g_object_set(h->element, "batch-size", 8u, nullptr);
	EXPECT_EQ(latency_messages(), 1);
	g_object_set(h->element, "batch-size", 8u, "batch-timeout", 500u, nullptr);
	EXPECT_EQ(latency_messages(), 0);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

TEST(FrcnnDetect, LatencyQueryAddsInferenceTimeOnceKnown)
{
	HarnessPtr h = harness("batch-size=1");
	gst_harness_set_upstream_latency(h.get(), 10 * GST_MSECOND);
	EXPECT_EQ(gst_harness_query_latency(h.get()), 10 * GST_MSECOND);

	const Frame frame = make_frame(photo(256, 192), GST_VIDEO_FORMAT_RGB);
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	/* The model's first run warms it up: kept, it would hold a live pipeline's latency up for
	   good. */
	EXPECT_EQ(gst_harness_query_latency(h.get()), 10 * GST_MSECOND);

	/* The element adds twice the longest run since (a frame waits for the batch before its
	   own, then for its own). */
	out.reset(gst_harness_push_and_pull(h.get(), frame.buffer(GST_SECOND)));
	ASSERT_TRUE(out);
	const double run = stats_of(h->element)["last-batch-time"];
	ASSERT_GT(run, 0);
	EXPECT_EQ(gst_harness_query_latency(h.get()), 10 * GST_MSECOND + 2 * static_cast<GstClockTime>(run));
}

// Holds the element's buffers at its source pad (as a synchronised sink holds each until its
// time) until open(); then passes them on, or, with `refuse`, answers each with EOS (a sink that
// takes no more buffers). Opens when it goes (a failed assertion must not leave the element's
// pusher held); the probe keeps its own reference to the gate's state.
class DownstreamGate {
public:
	DownstreamGate(GstElement *element, bool refuse)
		: state_(std::make_shared<State>()), pad_(gst_element_get_static_pad(element, "src"))
	{
		state_->refuse = refuse;
		probe_ = gst_pad_add_probe(pad_, GST_PAD_PROBE_TYPE_BUFFER, hold, new std::shared_ptr<State>(state_),
					   [](gpointer data) { delete static_cast<std::shared_ptr<State> *>(data); });
	}
	~DownstreamGate()
	{
		open();
		gst_pad_remove_probe(pad_, probe_);
		gst_object_unref(pad_);
	}
	DownstreamGate(const DownstreamGate &) = delete;
	DownstreamGate &operator=(const DownstreamGate &) = delete;

	// Waits (up to a minute) until a buffer is held.
	bool wait_until_holding()
	{
		std::unique_lock<std::mutex> lock(state_->mutex);
		return state_->changed.wait_for(lock, std::chrono::seconds(60), [this] { return state_->holding; });
	}
	void open()
	{
		std::lock_guard<std::mutex> lock(state_->mutex);
		state_->open = true;
		state_->changed.notify_all();
	}

private:
	struct State {
		bool refuse = false;
		std::mutex mutex;
		std::condition_variable changed;
		bool holding = false, open = false;
	};

	static GstPadProbeReturn hold(GstPad *, GstPadProbeInfo *info, gpointer data)
	{
		State &state = **static_cast<std::shared_ptr<State> *>(data);
		std::unique_lock<std::mutex> lock(state.mutex);
		state.holding = true;
		state.changed.notify_all();
		state.changed.wait(lock, [&state] { return state.open; });
		if (!state.refuse)
			return GST_PAD_PROBE_OK;
		gst_buffer_unref(GST_PAD_PROBE_INFO_BUFFER(info));
		GST_PAD_PROBE_INFO_FLOW_RETURN(info) = GST_FLOW_EOS;
		return GST_PAD_PROBE_HANDLED;
	}

	std::shared_ptr<State> state_;
	GstPad *pad_;
	gulong probe_ = 0;
};

// Waits (up to a minute) until the element has run `count` batches; returns how many it ran.
double wait_for_batches(GstElement *element, double count)
{
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	while (stats_of(element)["batches"] < count && std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	return stats_of(element)["batches"];
}

// A batch's frames waiting downstream (a synchronised sink holds each until its time) do not
// hold the next batch up: it runs meanwhile, and the frames leave in order once downstream takes
// them.
TEST(FrcnnDetect, TheNextBatchRunsWhileDownstreamHoldsAFrame)
{
	const std::vector<Frame> frames = distinct_frames(4);
	HarnessPtr h = harness("batch-size=2 batch-timeout=60000");
	DownstreamGate gate(h->element, false);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	ASSERT_TRUE(gate.wait_until_holding()) << "the first batch never left";
	for (int i = 2; i < 4; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	EXPECT_EQ(wait_for_batches(h->element, 2), 2) << "the second batch waited for the first frame to leave";

	gate.open();
	for (int i = 0; i < 4; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
		EXPECT_FALSE(gst_test::read_rois(out.get()).empty()) << "frame " << i;
	}
}

// Downstream takes no more buffers while two batches' frames wait to be pushed, so that the
// worker waits for room before its next batch, and upstream's EOS waits behind frames: the frames
// are dropped, and the EOS goes on (the worker, woken, hands it over).
TEST(FrcnnDetect, DownstreamEosWhileTheWorkerWaitsForRoomStillEnds)
{
	const std::vector<Frame> frames = distinct_frames(8);
	HarnessPtr h = harness("batch-size=2 batch-timeout=60000");
	DownstreamGate gate(h->element, true);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 6; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	/* Frame 0 held downstream; 1 to 5 run and wait to be pushed: more than two batches. */
	ASSERT_EQ(wait_for_batches(h->element, 3), 3);
	for (int i = 6; i < 8; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
	std::this_thread::sleep_for(std::chrono::milliseconds(100));
	EXPECT_EQ(stats_of(h->element)["batches"], 3) << "the worker did not wait for room";

	gate.open();
	EXPECT_TRUE(pull_until_eos(h.get())) << "upstream's EOS did not go on";
}

// Caps that came behind a frame downstream answered EOS to are dropped with the frames of that
// stream, but not forgotten: the stream goes on after a flush (a seek), and its frames leave
// under those caps, not the ones before.
TEST(FrcnnDetect, CapsDroppedAfterDownstreamEosStillGoFirstAfterAFlush)
{
	const Frame small = make_frame(photo(160, 120, 1), GST_VIDEO_FORMAT_RGB);
	const Frame large = make_frame(photo(200, 150, 2), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = harness("batch-size=1");
	DownstreamGate gate(h->element, true);
	gst_harness_set_src_caps(h.get(), small.caps());
	ASSERT_EQ(gst_harness_push(h.get(), small.buffer(0)), GST_FLOW_OK);
	ASSERT_TRUE(gate.wait_until_holding());
	gst_harness_set_src_caps(h.get(), large.caps());
	ASSERT_EQ(gst_harness_push(h.get(), large.buffer(GST_SECOND)), GST_FLOW_OK);
	gate.open(); /* downstream answers EOS: the large frame and its caps are dropped */
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	while (gst_harness_push(h.get(), large.buffer(2 * GST_SECOND)) == GST_FLOW_OK &&
	       std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));

	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_start()));
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_stop(TRUE)));
	GstSegment segment;
	gst_segment_init(&segment, GST_FORMAT_TIME);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
	gst_harness_push(h.get(), large.buffer(3 * GST_SECOND));
	GstCaps *expected = large.caps();
	GstCaps *caps = nullptr;
	while (std::chrono::steady_clock::now() < deadline) {
		caps = gst_pad_get_current_caps(h->sinkpad);
		if (caps && gst_caps_is_equal(caps, expected))
			break;
		if (caps)
			gst_caps_unref(caps);
		caps = nullptr;
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	EXPECT_NE(caps, nullptr) << "the large frames left under the small frames' caps";
	if (caps)
		gst_caps_unref(caps);
	gst_caps_unref(expected);
}

// Once downstream took no more buffers, upstream hears EOS also from the events it sends: a tag
// event pushed before its next buffer (as a decoder does) answers EOS at that buffer, as queue's
// does, not an error that stops the pipeline.
TEST(FrcnnDetect, EventsAfterDownstreamEosAnswerEos)
{
	const std::vector<Frame> frames = distinct_frames(1);
	HarnessPtr h = harness("batch-size=1");
	DownstreamGate gate(h->element, true);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	ASSERT_EQ(gst_harness_push(h.get(), frames[0].buffer(0)), GST_FLOW_OK);
	ASSERT_TRUE(gate.wait_until_holding());
	gate.open();
	GstFlowReturn flow = GST_FLOW_OK;
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	for (GstClockTime pts = GST_SECOND; flow == GST_FLOW_OK && std::chrono::steady_clock::now() < deadline;
	     pts += GST_SECOND) {
		GstTagList *tags = gst_tag_list_new(GST_TAG_TITLE, std::to_string(pts).c_str(), nullptr);
		gst_harness_push_event(h.get(), gst_event_new_tag(tags));
		flow = gst_harness_push(h.get(), frames[0].buffer(pts));
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	EXPECT_EQ(flow, GST_FLOW_EOS) << gst_flow_get_name(flow);
}

// A flushing seek from a handler of one of the element's messages, on the thread that runs its
// batches (here: its latency message, posted as its first timed batch ends): the frame of that
// batch, taken before the flush, never comes out after it; the frames after the flush do.
TEST(FrcnnDetect, AFlushFromTheWorkersOwnThreadDropsItsBatch)
{
	const std::vector<Frame> frames = distinct_frames(3);
	HarnessPtr h = harness("batch-size=1");
	GstBus *bus = gst_bus_new();
	struct Flusher {
		GstElement *element;
		std::atomic<bool> flushing{ false }; // the handler has begun the flush
		std::atomic<bool> flushed{ false };  // and ended it: the test's frames may come again
	} flusher{ h->element };
	gst_bus_set_sync_handler(
		bus,
		[](GstBus *, GstMessage *message, gpointer data) {
			Flusher &flusher = *static_cast<Flusher *>(data);
			if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_LATENCY && !flusher.flushing.exchange(true)) {
				GstPad *sink = gst_element_get_static_pad(flusher.element, "sink");
				gst_pad_send_event(sink, gst_event_new_flush_start());
				gst_pad_send_event(sink, gst_event_new_flush_stop(TRUE));
				gst_object_unref(sink);
				flusher.flushed = true;
			}
			gst_message_unref(message);
			return GST_BUS_DROP;
		},
		&flusher, nullptr);
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frames[0].caps());

	/* The model's first run warms it up (no latency message); the second posts one. */
	gst_test::BufferPtr first(gst_harness_push_and_pull(h.get(), frames[0].buffer(0)));
	ASSERT_TRUE(first);
	ASSERT_EQ(gst_harness_push(h.get(), frames[1].buffer(GST_SECOND)), GST_FLOW_OK);
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	while (!flusher.flushed && std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	ASSERT_TRUE(flusher.flushed) << "no latency message from the second batch";
	/* A new segment after the flush, then a frame of it. */
	GstSegment segment;
	gst_segment_init(&segment, GST_FORMAT_TIME);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
	ASSERT_EQ(gst_harness_push(h.get(), frames[2].buffer(2 * GST_SECOND)), GST_FLOW_OK);
	gst_test::BufferPtr out(gst_harness_pull(h.get()));
	ASSERT_TRUE(out);
	EXPECT_EQ(GST_BUFFER_PTS(out.get()), 2 * GST_SECOND) << "the frame of the batch before the flush came out";
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// An application's synchronous bus handler that sets the element to NULL at its first message of
// `type` (after `before`, if any), on the thread that posted it.
class StopAtFirstMessage {
public:
	explicit StopAtFirstMessage(GstElement *element, GstMessageType type = GST_MESSAGE_WARNING,
				    std::function<void()> before = {})
		: element_(element), type_(type), before_(std::move(before)), bus_(gst_bus_new())
	{
		gst_bus_set_sync_handler(bus_, handle, this, nullptr);
		gst_element_set_bus(element_, bus_);
	}
	~StopAtFirstMessage()
	{
		gst_element_set_bus(element_, nullptr);
		gst_object_unref(bus_);
	}
	StopAtFirstMessage(const StopAtFirstMessage &) = delete;
	StopAtFirstMessage &operator=(const StopAtFirstMessage &) = delete;

	// Whether the handler stopped the element (and the stop returned) within a minute; `meanwhile`
	// is called every 10 ms until then.
	bool wait(const std::function<void()> &meanwhile = {})
	{
		const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
		while (!stopped_ && std::chrono::steady_clock::now() < deadline) {
			if (meanwhile)
				meanwhile();
			std::this_thread::sleep_for(std::chrono::milliseconds(10));
		}
		return stopped_;
	}

private:
	static GstBusSyncReply handle(GstBus *, GstMessage *message, gpointer data)
	{
		auto *self = static_cast<StopAtFirstMessage *>(data);
		if (GST_MESSAGE_TYPE(message) == self->type_ && !self->stopping_.exchange(true)) {
			if (self->before_)
				self->before_();
			EXPECT_EQ(gst_element_set_state(self->element_, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
			self->stopped_ = true;
		}
		gst_message_unref(message);
		return GST_BUS_DROP;
	}

	GstElement *element_;
	GstMessageType type_;
	std::function<void()> before_;
	GstBus *bus_;
	std::atomic<bool> stopping_{ false }, stopped_{ false };
};

// An element (batch-size=1) that has run `frame` and let it go: its model is loaded and warm.
HarnessPtr harness_that_ran(const Frame &frame)
{
	HarnessPtr h = harness("batch-size=1");
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr first(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	EXPECT_TRUE(first) << "the first frame did not come out";
	return h;
}

GstState current_state(GstElement *element)
{
	GstState state = GST_STATE_VOID_PENDING;
	gst_element_get_state(element, &state, nullptr, 0);
	return state;
}

// An application that stops the element from a synchronous handler of the worker's own warning
// (inside the post, on the worker's thread): the stop cannot wait for the worker, and the model
// goes at READY -> NULL; the worker leaves when the handler returns instead of running on.
TEST(FrcnnDetect, AStopFromAHandlerOfTheWorkersWarningLeavesTheWorkerNothingToRun)
{
	const std::vector<Frame> frames = distinct_frames(2);
	HarnessPtr h = harness_that_ran(frames[0]);
	StopAtFirstMessage stopper(h->element);
	/* The worker warns of it before the next batch, and goes on to the model. */
	g_object_set(h->element, "classes", "no-such-class", nullptr);
	gst_harness_push(h.get(), frames[1].buffer(GST_SECOND));
	ASSERT_TRUE(stopper.wait()) << "no warning";
	/* Time for a worker that ran on to reach the model that is gone. */
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	EXPECT_EQ(current_state(h->element), GST_STATE_NULL);
}

// The same from a handler of the warning that weights set while playing cannot be read, posted by
// the thread that sets them up: the stop does not wait for that thread (itself).
TEST(FrcnnDetect, AStopFromAHandlerOfAReloadsWarningReturns)
{
	const std::vector<Frame> frames = distinct_frames(1);
	HarnessPtr h = harness_that_ran(frames[0]);
	StopAtFirstMessage stopper(h->element);
	const std::string missing = gst_test::out_dir() + "/no-such-weights.pth";
	g_object_set(h->element, "weights", missing.c_str(), nullptr);
	/* The next batch starts setting them up. */
	gst_harness_push(h.get(), frames[0].buffer(GST_SECOND));
	ASSERT_TRUE(stopper.wait()) << "the stop did not return (or no warning came)";
	EXPECT_EQ(current_state(h->element), GST_STATE_NULL);
}

// The same from a handler of the message that new weights are loaded, which first sets the weights
// again and takes its time: the worker, meanwhile, does not start the next set-up before the
// message is out (a new set-up replaces the old one's task, which waits for its thread, in the
// handler that waits for the worker).
TEST(FrcnnDetect, AStopFromAHandlerOfALoadedWeightsMessageReturns)
{
	const std::vector<Frame> frames = distinct_frames(1);
	HarnessPtr h = harness_that_ran(frames[0]);
	GstElement *element = h->element;
	const std::string weights = gst_test::weights4();
	StopAtFirstMessage stopper(element, GST_MESSAGE_INFO, [element, weights] {
		g_object_set(element, "weights", weights.c_str(), nullptr);
		std::this_thread::sleep_for(std::chrono::milliseconds(300));
	});
	g_object_set(element, "weights", weights.c_str(), nullptr);
	/* Batches keep coming: each looks for the set-up's result. */
	GstClockTime pts = GST_SECOND;
	ASSERT_TRUE(stopper.wait([&] {
		gst_harness_push(h.get(), frames[0].buffer(pts));
		pts += GST_SECOND;
		while (GstBuffer *out = gst_harness_try_pull(h.get()))
			gst_buffer_unref(out);
	})) << "the stop did not return (or no message came)";
	EXPECT_EQ(current_state(element), GST_STATE_NULL);
}

// A batch the model fails on (out of memory on the device, say) stops the stream with the
// element's error, after the frames of the batches run before it, which waited to be pushed:
// none of them is lost. Upstream then hears of it.
TEST(FrcnnDetect, FramesRunBeforeAFailedBatchStillLeave)
{
	const std::vector<Frame> frames = distinct_frames(4);
	HarnessPtr h = harness("batch-size=1");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	DownstreamGate gate(h->element, false);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	/* Frame 0 held downstream; 1 runs and waits; 2 fails. */
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	ASSERT_EQ(wait_for_batches(h->element, 2), 2) << "frame 1 did not run";
	fail_detect = true;
	ASSERT_EQ(gst_harness_push(h.get(), frames[2].buffer(2 * GST_SECOND)), GST_FLOW_OK);
	GstMessage *error = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_ERROR);
	fail_detect = false;
	ASSERT_NE(error, nullptr) << "the failing batch posted no error";
	GError *gerror = nullptr;
	gst_message_parse_error(error, &gerror, nullptr);
	EXPECT_NE(std::string(gerror->message).find("Detection failed: inference failed: [enforce fail at alloc_cpu.cpp:75]"),
		  std::string::npos)
		<< gerror->message;
	/* What to change, for memory the batch did not find. */
	EXPECT_NE(std::string(gerror->message).find("(a failure the test makes) The batch did not fit in memory: a "
						    "smaller batch-size, or smaller images (min-size, max-size), needs less."),
		  std::string::npos)
		<< gerror->message;
	g_clear_error(&gerror);
	gst_message_unref(error);

	gate.open();
	for (int i = 0; i < 2; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out) << "frame " << i << " was lost";
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
	}
	/* Upstream hears of the failure at its next buffer. */
	GstFlowReturn flow = GST_FLOW_OK;
	for (int attempt = 0; attempt < 600 && flow == GST_FLOW_OK; attempt++) {
		flow = gst_harness_push(h.get(), frames[3].buffer((3 + attempt) * GST_SECOND));
		if (flow == GST_FLOW_OK)
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	EXPECT_EQ(flow, GST_FLOW_ERROR);
	EXPECT_EQ(gst_harness_buffers_in_queue(h.get()), 0u) << "the failed batch's frame went on";
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

TEST(FrcnnDetect, EosRunsThePartialBatchAndComesLast)
{
	const std::vector<Frame> frames = distinct_frames(3);
	HarnessPtr h = harness("batch-size=4 batch-timeout=60000");
	FlowRecorder recorder(h.get());
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_MSECOND * 40)), GST_FLOW_OK);

	/* The batch is not full and its timeout is far: nothing leaves yet. */
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	EXPECT_EQ(gst_harness_buffers_received(h.get()), 0u);

	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
	for (int i = 0; i < 3; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_MSECOND * 40);
		EXPECT_FALSE(gst_test::read_rois(out.get()).empty());
	}
	ASSERT_TRUE(pull_until_eos(h.get()));

	EXPECT_EQ(buffers_and(recorder.items(), "eos"),
		  (std::vector<std::string>{ "B0", "B40", "B80", "eos" }));
}

// A serialized query (drain, allocation) reaches downstream after the frames that came before
// it, also those that wait for their batch to fill: the query runs the partial batch at once.
TEST(FrcnnDetect, ASerializedQueryLeavesAfterTheFramesBeforeIt)
{
	const std::vector<Frame> frames = distinct_frames(2);
	HarnessPtr h = harness("batch-size=4 batch-timeout=60000");
	FlowRecorder recorder(h.get());
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_MSECOND * 40)), GST_FLOW_OK);
	/* Long enough for the worker to take both frames into its batch and wait for more. */
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	ASSERT_EQ(gst_harness_buffers_received(h.get()), 0u);

	GstQuery *drain = gst_query_new_drain();
	EXPECT_TRUE(gst_pad_peer_query(h->srcpad, drain));
	gst_query_unref(drain);
	EXPECT_EQ(gst_harness_buffers_received(h.get()), 2u);
	EXPECT_EQ(buffers_and(recorder.items(), "Q:drain"), (std::vector<std::string>{ "B0", "B40", "Q:drain" }));
	for (int i = 0; i < 2; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_FALSE(gst_test::read_rois(out.get()).empty()) << "frame " << i << " did not run";
	}
}

// A new stream after EOS without a flush (streams played one after the other): its events and
// frames follow, whether they come while the last batch of the stream before still runs or after
// its EOS has left.
TEST(FrcnnDetect, ANewStreamAfterEosWithoutAFlush)
{
	const std::vector<Frame> frames = distinct_frames(2);
	const Frame second = make_frame(photo(200, 150, 30), GST_VIDEO_FORMAT_NV12);
	HarnessPtr h = harness("batch-size=4 batch-timeout=60000");
	FlowRecorder recorder(h.get());
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_MSECOND * 40)), GST_FLOW_OK);
	std::vector<std::string> expected{ "B0", "B40", "eos" };
	/* The harness's events come in order: the EOS of each stream, counted. */
	int eos_pulled = 0;
	auto pull_eos_of_streams = [&](int streams) {
		for (; eos_pulled < streams; eos_pulled++)
			ASSERT_TRUE(pull_until_eos(h.get())) << "no EOS of stream " << eos_pulled + 1;
	};
	for (const bool after_eos_left : { false, true }) {
		SCOPED_TRACE(after_eos_left ? "after the EOS left" : "while the batch before the EOS runs");
		/* The EOS runs the partial batch; the next stream comes at once, or after it. */
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
		if (after_eos_left)
			pull_eos_of_streams(2);
		const std::string id = after_eos_left ? "third" : "second";
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_stream_start(id.c_str())));
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_caps(second.caps())));
		GstSegment segment;
		gst_segment_init(&segment, GST_FORMAT_TIME);
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
		const GstClockTime start = (after_eos_left ? 2000 : 1000) * GST_MSECOND;
		for (int i = 0; i < 2; i++)
			ASSERT_EQ(gst_harness_push(h.get(), second.buffer(start + i * GST_MSECOND * 40)), GST_FLOW_OK);
		for (int i = 0; i < 2; i++)
			expected.push_back("B" + std::to_string((start + i * GST_MSECOND * 40) / GST_MSECOND));
		expected.push_back("eos");
	}
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
	/* Every frame leaves, with its detections. */
	for (int i = 0; i < 6; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out) << "frame " << i << " never left";
		EXPECT_FALSE(gst_test::read_rois(out.get()).empty()) << "frame " << i << " did not run";
	}
	pull_eos_of_streams(3);
	EXPECT_EQ(buffers_and(recorder.items(), "eos"), expected);
}

TEST(FrcnnDetect, FlushDropsQueuedFramesAndRestarts)
{
	const std::vector<Frame> frames = distinct_frames(6);
	HarnessPtr h = harness("batch-size=4 batch-timeout=60000");
	gst_harness_set_src_caps(h.get(), frames[0].caps());

	/* Two frames wait for a batch that never fills. */
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_start()));
	EXPECT_EQ(gst_harness_push(h.get(), frames[2].buffer(2 * GST_SECOND)), GST_FLOW_FLUSHING);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_stop(TRUE)));

	GstSegment segment;
	gst_segment_init(&segment, GST_FORMAT_TIME);
	segment.start = 100 * GST_SECOND;
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[2 + i].buffer((100 + i) * GST_SECOND)),
			  GST_FLOW_OK);
	for (int i = 0; i < 4; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), (100 + i) * GST_SECOND);
	}
	EXPECT_EQ(gst_harness_buffers_received(h.get()), 4u);
	/* The stream-start and caps that waited with the dropped frames still went first. */
	GstEvent *stream_start = gst_pad_get_sticky_event(h->sinkpad, GST_EVENT_STREAM_START, 0);
	EXPECT_NE(stream_start, nullptr) << "downstream got frames without a stream-start";
	if (stream_start)
		gst_event_unref(stream_start);
	GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
	ASSERT_NE(caps, nullptr) << "downstream got frames without caps";
	GstCaps *expected = frames[0].caps();
	EXPECT_TRUE(gst_caps_is_equal(caps, expected));
	gst_caps_unref(expected);
	gst_caps_unref(caps);
}

// A flush (a seek from another thread) while the element stops: the flush stop must not start
// the worker again on a source pad that the stop is deactivating, where it would wait for frames
// and the stop for it, for ever. Raced in 200 rounds, the flush a little later each round.
TEST(FrcnnDetect, AFlushWhileTheElementStopsNeverHangsTheStop)
{
	GstElement *element = make_detect("min-size=128 max-size=160");
	ASSERT_TRUE(element);
	gst_object_ref_sink(element);
	GstPad *sink = gst_element_get_static_pad(element, "sink");
	GstPad *src = gst_element_get_static_pad(element, "src");
	GstPad *upstream = gst_pad_new("upstream", GST_PAD_SRC);
	GstPad *downstream = gst_pad_new("downstream", GST_PAD_SINK);
	gst_pad_set_event_function(downstream, [](GstPad *, GstObject *, GstEvent *event) -> gboolean {
		gst_event_unref(event);
		return TRUE;
	});
	ASSERT_EQ(gst_pad_link(upstream, sink), GST_PAD_LINK_OK);
	ASSERT_EQ(gst_pad_link(src, downstream), GST_PAD_LINK_OK);
	gst_pad_set_active(upstream, TRUE);
	gst_pad_set_active(downstream, TRUE);
	for (int round = 0; round < 200; round++) {
		ASSERT_NE(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
		std::atomic<bool> go{ false };
		std::thread flusher([&] {
			while (!go)
				std::this_thread::yield();
			gst_pad_push_event(upstream, gst_event_new_flush_start());
			gst_pad_push_event(upstream, gst_event_new_flush_stop(TRUE));
		});
		go = true;
		for (volatile int spin = 0; spin < (round % 20) * 500; spin = spin + 1) {
		}
		auto stopped = std::async(std::launch::async, [element] {
			return gst_element_set_state(element, GST_STATE_READY);
		});
		if (stopped.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
			/* Nothing can end the hung stop: say so and end the program. */
			std::fprintf(stderr, "round %d: the stop hangs\n", round);
			std::_Exit(1);
		}
		flusher.join();
		EXPECT_EQ(stopped.get(), GST_STATE_CHANGE_SUCCESS);
	}
	gst_element_set_state(element, GST_STATE_NULL);
	gst_pad_unlink(upstream, sink);
	gst_pad_unlink(src, downstream);
	gst_object_unref(upstream);
	gst_object_unref(downstream);
	gst_object_unref(sink);
	gst_object_unref(src);
	gst_object_unref(element);
}

TEST(FrcnnDetect, FlushWhileABatchRuns)
{
	const std::vector<Frame> frames = distinct_frames(8);
	HarnessPtr h = harness("batch-size=4 batch-timeout=0");
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 8; i++)
			ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_start()));
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_stop(TRUE)));
		GstSegment segment;
		gst_segment_init(&segment, GST_FORMAT_TIME);
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
	}
	/* Still working after the flushes. */
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frames[0].buffer(42 * GST_SECOND)));
	ASSERT_TRUE(out);
	while (GST_BUFFER_PTS(out.get()) != 42 * GST_SECOND) {
		out.reset(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
	}
	EXPECT_FALSE(gst_test::read_rois(out.get()).empty());
}

TEST(FrcnnDetect, CapsChangeMidStream)
{
	const Frame a0 = make_frame(photo(320, 240, 0), GST_VIDEO_FORMAT_RGB);
	const Frame a1 = make_frame(photo(320, 240, 20), GST_VIDEO_FORMAT_RGB);
	const Frame b0 = make_frame(photo(201, 151, 40), GST_VIDEO_FORMAT_NV12);
	const Frame b1 = make_frame(photo(201, 151, 60), GST_VIDEO_FORMAT_NV12);
	// A stream that turns to 10 bits (a broadcast's HEVC programme after an 8-bit one).
	const Frame c0 = make_frame(photo(256, 144, 80), GST_VIDEO_FORMAT_P010_10LE);

	HarnessPtr h = harness("batch-size=4 batch-timeout=60000");
	FlowRecorder recorder(h.get());
	gst_harness_set_src_caps(h.get(), a0.caps());
	ASSERT_EQ(gst_harness_push(h.get(), a0.buffer(0)), GST_FLOW_OK);
	ASSERT_EQ(gst_harness_push(h.get(), a1.buffer(1 * GST_MSECOND)), GST_FLOW_OK);
	gst_harness_set_src_caps(h.get(), b0.caps());
	ASSERT_EQ(gst_harness_push(h.get(), b0.buffer(2 * GST_MSECOND)), GST_FLOW_OK);
	ASSERT_EQ(gst_harness_push(h.get(), b1.buffer(3 * GST_MSECOND)), GST_FLOW_OK);
	gst_harness_set_src_caps(h.get(), c0.caps());
	ASSERT_EQ(gst_harness_push(h.get(), c0.buffer(4 * GST_MSECOND)), GST_FLOW_OK);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));

	for (const Frame *frame : { &a0, &a1, &b0, &b1, &c0 }) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame->width(), frame->height(), expected_for(*frame));
	}

	/* Each caps event stays in front of its own buffers. */
	EXPECT_EQ(buffers_and(recorder.items(), "caps"),
		  (std::vector<std::string>{ "caps", "B0", "B1", "caps", "B2", "B3", "caps", "B4" }));
	GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
	ASSERT_NE(caps, nullptr);
	GstVideoInfo info;
	ASSERT_TRUE(gst_video_info_from_caps(&info, caps));
	EXPECT_EQ(GST_VIDEO_INFO_FORMAT(&info), GST_VIDEO_FORMAT_P010_10LE);
	EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&info), 256);
	gst_caps_unref(caps);
}

// Caps without a framerate (frames from an application's appsrc often have none) are taken, as
// videoconvert and the other elements take them: the element does not use the rate.
TEST(FrcnnDetect, CapsWithoutAFramerateAreTaken)
{
	const Frame frame = make_frame(photo(160, 120), GST_VIDEO_FORMAT_I420);
	GstCaps *caps = frame.caps();
	gst_structure_remove_field(gst_caps_get_structure(caps, 0), "framerate");
	HarnessPtr h = harness();
	gst_harness_set_src_caps(h.get(), caps);
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out) << "the frame did not come out";
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
}

TEST(FrcnnDetect, IntervalRunsOneFrameInThree)
{
	const std::vector<Frame> frames = distinct_frames(7);
	HarnessPtr h = harness("interval=3");
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 7; i++) {
		SCOPED_TRACE("frame " + std::to_string(i));
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frames[i].buffer(i * GST_SECOND)));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
		const std::vector<frcnn::gst::SkippedBy> skipped = frcnn::gst::read_skipped_metas(out.get());
		if (i % 3 == 0) {
			expect_meta_equals(out.get(), frames[i].width(), frames[i].height(),
					   expected_for(frames[i]));
			EXPECT_TRUE(skipped.empty());
		} else {
			EXPECT_TRUE(gst_test::read_rois(out.get()).empty());
			/* A frame passed on without a run says so, and by whom. */
			ASSERT_EQ(skipped.size(), 1u);
			EXPECT_EQ(skipped[0].element, GST_OBJECT_NAME(h->element));
			EXPECT_EQ(skipped[0].reason, "interval");
		}
	}
}

// QoS messages the element posted on its bus, as (running time in ms, processed, skipped).
std::vector<std::array<guint64, 3>> qos_messages(GstBus *bus)
{
	std::vector<std::array<guint64, 3>> out;
	while (GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_QOS)) {
		gboolean live;
		guint64 running_time, stream_time, timestamp, duration, processed, dropped;
		GstFormat format;
		gst_message_parse_qos(message, &live, &running_time, &stream_time, &timestamp, &duration);
		gst_message_parse_qos_stats(message, &format, &processed, &dropped);
		EXPECT_EQ(format, GST_FORMAT_BUFFERS);
		out.push_back({ running_time / GST_MSECOND, processed, dropped });
		gst_message_unref(message);
	}
	return out;
}

// With qos=true, frames that downstream reports as too late to matter pass through without
// detections, and a QoS message says so; without it, and after a flush, every frame is run.
TEST(FrcnnDetect, QosSkipsFramesDownstreamReportsLate)
{
	const std::vector<Frame> frames = distinct_frames(2);
	for (const bool qos : { true, false }) {
		SCOPED_TRACE(qos ? "qos=true" : "qos=false");
		HarnessPtr h = harness(qos ? "qos=true" : "");
		GstBus *bus = gst_bus_new();
		gst_element_set_bus(h->element, bus);
		gst_harness_set_src_caps(h.get(), frames[0].caps());
		auto run = [&](GstClockTime pts) {
			gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frames[pts / GST_MSECOND % 2].buffer(pts)));
			EXPECT_TRUE(out);
			return out && !gst_test::read_rois(out.get()).empty();
		};
		EXPECT_TRUE(run(0));

		/* A sink saw the frame at 0 ms 200 ms late: frames up to twice that, plus a frame (1/30 s),
		 * are not worth running. */
		ASSERT_TRUE(gst_harness_push_upstream_event(
			h.get(), gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 0.5, 200 * GST_MSECOND, 0)));
		bool forwarded = false;
		while (GstEvent *event = gst_harness_try_pull_upstream_event(h.get())) {
			forwarded |= GST_EVENT_TYPE(event) == GST_EVENT_QOS;
			gst_event_unref(event);
		}
		EXPECT_TRUE(forwarded) << "the QoS event goes on upstream";

		const GstClockTime earliest = 400 * GST_MSECOND + gst_util_uint64_scale(GST_SECOND, 1, 30);
		EXPECT_EQ(run(40 * GST_MSECOND), !qos);
		EXPECT_EQ(run(earliest), !qos);
		EXPECT_TRUE(run(earliest + 1));
		const auto messages = qos_messages(bus);
		if (qos) {
			using Message = std::array<guint64, 3>;
			EXPECT_EQ(messages, (std::vector<Message>{ { 40, 1, 1 }, { earliest / GST_MSECOND, 1, 2 } }));
			EXPECT_EQ(stats_of(h->element)["frames-skipped-late"], 2);
		} else {
			EXPECT_TRUE(messages.empty());
		}

		/* A flush forgets the lateness. */
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_start()));
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_stop(TRUE)));
		GstSegment segment;
		gst_segment_init(&segment, GST_FORMAT_TIME);
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
		EXPECT_TRUE(run(40 * GST_MSECOND));
		gst_element_set_bus(h->element, nullptr);
		gst_object_unref(bus);
	}
}

// A frame that is late when it arrives is skipped there and then (its QoS message is on the bus
// before the push returns, while the batch it joins still waits for frames): it is neither mapped
// nor copied to the device. It keeps its place among the frames run around it.
TEST(FrcnnDetect, QosSkipsALateFrameAsItArrives)
{
	const std::vector<Frame> frames = distinct_frames(3);
	HarnessPtr h = harness("qos=true batch-size=2 batch-timeout=60000");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	/* The first frame is in time whenever the worker takes it, before or after the QoS event. */
	const GstClockTime pts[3] = { GST_SECOND, 40 * GST_MSECOND, 2 * GST_SECOND };
	ASSERT_EQ(gst_harness_push(h.get(), frames[0].buffer(pts[0])), GST_FLOW_OK);
	/* Frames up to 400 ms and a frame are late now. */
	ASSERT_TRUE(gst_harness_push_upstream_event(
		h.get(), gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 0.5, 200 * GST_MSECOND, 0)));
	ASSERT_EQ(gst_harness_push(h.get(), frames[1].buffer(pts[1])), GST_FLOW_OK);

	const auto messages = qos_messages(bus);
	ASSERT_EQ(messages.size(), 1u) << "the late frame's QoS message, posted as it arrived";
	EXPECT_EQ(messages[0][0], 40u);
	EXPECT_EQ(messages[0][2], 1u) << "one frame skipped";
	EXPECT_EQ(gst_harness_buffers_received(h.get()), 0u) << "the batch still waits for its second frame";

	ASSERT_EQ(gst_harness_push(h.get(), frames[2].buffer(pts[2])), GST_FLOW_OK);
	for (int i = 0; i < 3; i++) {
		SCOPED_TRACE("frame " + std::to_string(i));
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), pts[i]);
		if (i == 1) {
			EXPECT_TRUE(gst_test::read_rois(out.get()).empty());
		} else {
			expect_meta_equals(out.get(), frames[i].width(), frames[i].height(), expected_for(frames[i]));
		}
	}
	EXPECT_TRUE(qos_messages(bus).empty()) << "no frame judged twice";
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// `threads` gives the element's worker its own number of CPU threads (the tests' environment
// sets OMP_NUM_THREADS=2 for the rest of the process), from the next batch when it changes while
// playing; another element's worker keeps its own.
TEST(FrcnnDetect, ThreadsSetsTheWorkersCpuThreads)
{
	const std::vector<Frame> frames = distinct_frames(3);
	HarnessPtr one = harness("name=one threads=1");
	HarnessPtr three = harness("name=three threads=3");
	for (GstHarness *h : { one.get(), three.get() }) {
		gst_harness_set_src_caps(h, frames[0].caps());
		ASSERT_EQ(gst_harness_push(h, frames[0].buffer(0)), GST_FLOW_OK);
		gst_test::BufferPtr out(gst_harness_pull(h));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frames[0].width(), frames[0].height(), expected_for(frames[0]));
	}
	EXPECT_EQ(stats_of(one->element)["cpu-threads"], 1);
	EXPECT_EQ(stats_of(three->element)["cpu-threads"], 3);
	EXPECT_NE(frcnn::cpu_threads(), 1) << "the test's own thread keeps the process's count";

	g_object_set(one->element, "threads", 4u, nullptr);
	for (GstHarness *h : { one.get(), three.get() }) {
		ASSERT_EQ(gst_harness_push(h, frames[1].buffer(GST_SECOND)), GST_FLOW_OK);
		gst_test::BufferPtr out(gst_harness_pull(h));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frames[1].width(), frames[1].height(), expected_for(frames[1]));
	}
	EXPECT_EQ(stats_of(one->element)["cpu-threads"], 4) << "the new count applies from the next batch";
	EXPECT_EQ(stats_of(three->element)["cpu-threads"], 3) << "the other element keeps its own";
}

// A gap buffer (a repeated or filler frame, no picture of its own) goes by without detections
// and does not count towards `interval`.
TEST(FrcnnDetect, GapBuffersPassWithoutDetections)
{
	const std::vector<Frame> frames = distinct_frames(5);
	HarnessPtr h = harness("interval=2");
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 5; i++) {
		GstBuffer *buffer = frames[i].buffer(i * GST_SECOND);
		if (i == 1)
			GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_GAP);
		ASSERT_EQ(gst_harness_push(h.get(), buffer), GST_FLOW_OK);
	}
	/* Run: 0 and 3 (frames 0 and 2 of those that count, 1 being the gap). */
	for (int i = 0; i < 5; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
		EXPECT_EQ(gst_test::read_rois(out.get()).empty(), i != 0 && i != 3) << "frame " << i;
	}
	std::map<std::string, double> stats = stats_of(h->element);
	EXPECT_EQ(stats["frames"], 5);
	EXPECT_EQ(stats["frames-detected"], 2);
	EXPECT_EQ(stats["frames-skipped-gap"], 1);
	EXPECT_EQ(stats["frames-skipped-interval"], 2);
}

// Also the `stats` of such a stream, and their message at EOS.
TEST(FrcnnDetect, IntervalWithBatches)
{
	/* Skipped frames travel with the batch and keep their place. */
	const std::vector<Frame> frames = distinct_frames(9);
	HarnessPtr h = harness("interval=2 batch-size=3 batch-timeout=60000");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 9; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
	std::size_t detections = 0;
	for (int i = 0; i < 9; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
		EXPECT_EQ(gst_test::read_rois(out.get()).empty(), i % 2 == 1) << "frame " << i;
		detections += gst_test::read_rois(out.get()).size();
	}

	std::map<std::string, double> stats = stats_of(h->element);
	EXPECT_EQ(stats.size(), 14u);
	EXPECT_EQ(stats["frames"], 9);
	EXPECT_EQ(stats["frames-detected"], 5) << "frames 0, 2, 4, 6, 8";
	EXPECT_EQ(stats["images-detected"], 5) << "a frame is an image of its own";
	EXPECT_EQ(stats["frames-skipped-interval"], 4);
	EXPECT_EQ(stats["frames-skipped-late"], 0);
	EXPECT_EQ(stats["frames-skipped-gap"], 0);
	EXPECT_EQ(stats["batches"], 2) << "3 frames, then the 2 left at EOS";
	EXPECT_EQ(stats["batches-with-others"], 0);
	EXPECT_EQ(stats["mean-batch-size"], 2.5);
	EXPECT_EQ(stats["detections"], double(detections));
	EXPECT_GT(stats["last-batch-time"], 0);
	EXPECT_GE(stats["mean-batch-time"], stats["last-batch-time"] / 2) << "the mean of two batches";
	EXPECT_NEAR(stats["model-frames-per-second"], 5 * 1e9 / (2 * stats["mean-batch-time"]),
		    1e-6 * stats["model-frames-per-second"]);

	/* At EOS the same went on the bus, before the EOS went downstream. */
	ASSERT_TRUE(pull_until_eos(h.get()));
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT);
	ASSERT_NE(message, nullptr) << "no statistics on the bus at EOS";
	const GstStructure *posted = gst_message_get_structure(message);
	EXPECT_TRUE(gst_structure_has_name(posted, "frcnndetect-stats"));
	guint64 posted_frames = 0, posted_detections = 0;
	EXPECT_TRUE(gst_structure_get(posted, "frames", G_TYPE_UINT64, &posted_frames, "detections",
				      G_TYPE_UINT64, &posted_detections, nullptr));
	EXPECT_EQ(posted_frames, 9u);
	EXPECT_EQ(posted_detections, detections);
	gst_message_unref(message);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);

	/* A new start counts from zero. */
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
	stats = stats_of(h->element);
	for (const auto &[name, value] : stats)
		EXPECT_EQ(value, 0) << name;
}

std::vector<frcnn::Detection> only(const std::vector<frcnn::Detection> &all,
				   const std::set<int64_t> &labels)
{
	std::vector<frcnn::Detection> kept;
	for (const frcnn::Detection &det : all)
		if (labels.count(det.label))
			kept.push_back(det);
	return kept;
}

bool differ(const std::vector<frcnn::Detection> &a, const std::vector<frcnn::Detection> &b);

// What `classes` keeps of a frame: the best max-detections (100) of the labels' detections, of
// all that the model finds.
std::vector<frcnn::Detection> of_classes(const Frame &frame, const std::set<int64_t> &labels)
{
	std::vector<frcnn::Detection> kept =
		only(reference(kThreshold, kMinSize, frcnn::CpuConvolutions::Auto, 100000).detect({ view_of(frame) }).at(0),
		     labels);
	kept.resize(std::min<std::size_t>(kept.size(), 100));
	return kept;
}

// Labels whose detections on `frame` are a strict, non-empty part of all of them.
std::set<int64_t> some_labels(const std::vector<frcnn::Detection> &all)
{
	std::map<int64_t, int> counts;
	for (const frcnn::Detection &det : all)
		counts[det.label]++;
	EXPECT_GE(counts.size(), 2u) << "the test frame should show at least two classes";
	return { counts.begin()->first };
}

TEST(FrcnnDetect, ClassesFilterByNameAndId)
{
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const std::vector<frcnn::Detection> all = expected_for(frame);
	const std::set<int64_t> keep = some_labels(all);
	const int64_t id = *keep.begin();

	for (const std::string &spec : { class_name(id), std::to_string(id),
					 "CLASS " + std::to_string(id) }) {
		SCOPED_TRACE("classes=" + spec);
		HarnessPtr h = harness("classes=\"" + spec + "\"");
		gst_harness_set_src_caps(h.get(), frame.caps());
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
		ASSERT_TRUE(out);
		const std::vector<frcnn::Detection> kept = of_classes(frame, keep);
		ASSERT_FALSE(kept.empty());
		const std::vector<frcnn::Detection> unfiltered = of_classes(frame, { 1, 2, 3 });
		ASSERT_FALSE(std::all_of(unfiltered.begin(), unfiltered.end(),
					 [id](const frcnn::Detection &d) { return d.label == id; }))
			<< "other classes must be among the best for the test to see them go";
		expect_meta_equals(out.get(), frame.width(), frame.height(), kept);
	}
}

// `classes` and `class-thresholds` set at the start, then cleared before the first frame: the
// frames keep every class.
TEST(FrcnnDetect, ClassFiltersClearedBeforeTheFirstFrame)
{
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const std::vector<frcnn::Detection> all = expected_for(frame);
	const int64_t id = *some_labels(all).begin();
	ASSERT_FALSE(std::all_of(all.begin(), all.end(), [id](const frcnn::Detection &d) { return d.label == id; }))
		<< "the frame must show other classes too";
	for (const std::string property : { "classes", "class-thresholds" }) {
		SCOPED_TRACE(property);
		const std::string value = property == "classes" ? std::to_string(id) : std::to_string(id) + "=0.99";
		HarnessPtr h = harness(property + "=" + value);
		gst_harness_set_src_caps(h.get(), frame.caps());
		g_object_set(h->element, property.c_str(), nullptr, nullptr);
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), all);
	}
}

// `classes`, `min-box-size` and `max-box-size` drop single detections before `max-detections`
// counts them: the best N of those they keep, not those they keep of the best N.
TEST(FrcnnDetect, FiltersOfDetectionsComeBeforeMaxDetections)
{
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const std::vector<frcnn::Detection> all =
		reference(kThreshold, kMinSize, frcnn::CpuConvolutions::Auto, 100000).detect({ view_of(frame) }).at(0);
	ASSERT_GT(all.size(), 20u);
	auto best = [](std::vector<frcnn::Detection> detections, std::size_t count) {
		detections.resize(std::min(count, detections.size()));
		return detections;
	};

	/* The classes: the best 3 of a class that has fewer among the best 3 of all. */
	int64_t id = -1;
	for (const frcnn::Detection &d : all)
		if (only(all, { d.label }).size() > 3 && only(best(all, 3), { d.label }).size() < 3)
			id = d.label;
	ASSERT_GE(id, 0) << "no class for the test";
	const std::vector<frcnn::Detection> of_class = only(all, { id });
	expect_element_detects(frame, best(of_class, 3), "classes=" + std::to_string(id) + " max-detections=3");

	/* Box sizes: between the smallest third's and the largest third's (in whole pixels). */
	std::vector<float> shorter, longer;
	for (const frcnn::Detection &d : all) {
		shorter.push_back(std::min(d.x2 - d.x1, d.y2 - d.y1));
		longer.push_back(std::max(d.x2 - d.x1, d.y2 - d.y1));
	}
	std::sort(shorter.begin(), shorter.end());
	std::sort(longer.begin(), longer.end());
	const int min_size = static_cast<int>(std::ceil(shorter[shorter.size() / 3]));
	const int max_size = static_cast<int>(std::floor(longer[longer.size() * 2 / 3]));
	std::vector<frcnn::Detection> sized, larger, smaller;
	for (const frcnn::Detection &d : all) {
		const float w = d.x2 - d.x1, h = d.y2 - d.y1;
		const bool big_enough = w >= min_size && h >= min_size, small_enough = w <= max_size && h <= max_size;
		if (big_enough && small_enough)
			sized.push_back(d);
		if (big_enough)
			larger.push_back(d);
		if (small_enough)
			smaller.push_back(d);
	}
	ASSERT_GT(sized.size(), 5u);
	ASSERT_LT(sized.size(), all.size());
	ASSERT_TRUE(differ(best(sized, 5), best(all, 5)));
	const std::string sizes = " min-box-size=" + std::to_string(min_size) + " max-box-size=" + std::to_string(max_size);
	expect_element_detects(frame, best(sized, 5), "max-detections=5" + sizes);
	expect_element_detects(frame, best(larger, 5), "max-detections=5 min-box-size=" + std::to_string(min_size));
	expect_element_detects(frame, best(smaller, 5), "max-detections=5 max-box-size=" + std::to_string(max_size));
}

TEST(FrcnnDetect, LabelsFileNamesTheClasses)
{
	const std::string path = gst_test::out_dir() + "/animals.txt";
	{
		std::ofstream file(path);
		file << "cat\ndog\nbird\n\n"; /* no background line; trailing empty line ignored */
	}
	const std::vector<std::string> labels{ "__background__", "cat", "dog", "bird" };
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_I420);
	const std::vector<frcnn::Detection> all = expected_for(frame);
	const int64_t id = *some_labels(all).begin();

	HarnessPtr h = harness("labels=\"" + path + "\" classes=\"" + labels[id] + ", " + std::to_string(id) + "\"");
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), of_classes(frame, { id }), labels);
}

// Unset, empty and the property's own default are the same: the model is told from the weights
// (an application that copies properties from one element to another copies "unset"); it
// reads back as set.
TEST(FrcnnDetect, ModelIsToldFromTheWeightsWhenUnset)
{
	gst_test::init();
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	const std::vector<frcnn::Detection> expected = expected_for(frame);
	ASSERT_FALSE(expected.empty());
	for (const char *how : { "unset", "empty", "default" }) {
		SCOPED_TRACE(how);
		const std::string description = "frcnndetect weights=\"" + gst_test::weights4() +
						"\" threshold=" + std::to_string(kThreshold) +
						" min-size=" + std::to_string(kMinSize);
		GError *error = nullptr;
		GstElement *element = gst_parse_launch(description.c_str(), &error);
		ASSERT_EQ(error, nullptr) << (error ? error->message : "");
		gst_object_ref_sink(element);
		if (std::string(how) == "empty") {
			g_object_set(element, "model", "", nullptr);
		} else if (std::string(how) == "default") {
			GParamSpec *spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "model");
			ASSERT_NE(spec, nullptr);
			GValue value = G_VALUE_INIT;
			g_value_init(&value, G_TYPE_STRING);
			g_param_value_set_default(spec, &value);
			g_object_set_property(G_OBJECT(element), "model", &value);
			g_value_unset(&value);
		}
		gchar *model = nullptr;
		g_object_get(element, "model", &model, nullptr);
		EXPECT_EQ(model, nullptr) << "model reads back " << model;
		g_free(model);
		HarnessPtr h(gst_harness_new_with_element(element, "sink", "src"));
		gst_object_unref(element);

		gst_harness_set_src_caps(h.get(), frame.caps());
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
		ASSERT_TRUE(out) << "a tiny checkpoint with model unset should run as the tiny model";
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected);
	}
	GstElement *named = gst_element_factory_make("frcnndetect", nullptr);
	ASSERT_NE(named, nullptr);
	g_object_set(named, "model", "tiny", nullptr);
	gchar *model = nullptr;
	g_object_get(named, "model", &model, nullptr);
	EXPECT_STREQ(model, "tiny");
	g_free(model);
	/* device unset or empty is its default, as model's is. */
	for (const char *device : { static_cast<const char *>(nullptr), "" }) {
		g_object_set(named, "device", "cuda", nullptr);
		g_object_set(named, "device", device, nullptr);
		gchar *now = nullptr;
		g_object_get(named, "device", &now, nullptr);
		EXPECT_STREQ(now, "cpu") << (device ? "empty" : "unset");
		g_free(now);
	}
	gst_object_unref(named);
}

TEST(FrcnnDetect, DefaultLabelsOfA91ClassModelAreCoco)
{
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	GstElement *element = make_detect("weights=\"" + gst_test::weights91() + "\" threshold=0.0");
	gst_object_ref_sink(element);
	HarnessPtr h(gst_harness_new_with_element(element, "sink", "src"));
	gst_object_unref(element);
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	const auto rois = gst_test::read_rois(out.get());
	ASSERT_FALSE(rois.empty());
	/* torchvision's names, written by the reference script. */
	std::ifstream file(gst_test::env("FRCNN_FIXTURES") + "/coco_names.txt");
	std::vector<std::string> coco;
	for (std::string line; std::getline(file, line);)
		coco.push_back(line);
	ASSERT_EQ(coco.size(), 91u);
	std::set<guint> ids;
	for (const auto &roi : rois) {
		ASSERT_GE(roi.label_id, 0);
		ASSERT_LT(roi.label_id, 91);
		EXPECT_EQ(roi.label, coco[roi.label_id]);
		ids.insert(roi.label_id);
	}
	EXPECT_GT(ids.size(), 1u);
}

TEST(FrcnnDetect, PropertiesChangeWhilePlaying)
{
	/* Other threads set the properties that may change while playing; frames keep flowing. */
	const std::vector<Frame> frames = distinct_frames(4);
	HarnessPtr h = harness("batch-size=2 batch-timeout=5");
	gst_harness_set_src_caps(h.get(), frames[0].caps());

	std::atomic<bool> stop{ false };
	std::thread setter([&] {
		int n = 0;
		while (!stop) {
			g_object_set(h->element, "threshold", n % 2 ? 0.05 : 0.3, "classes",
				     n % 3 ? "" : "class 1, 2", "interval", 1 + n % 2, "min-size",
				     n % 2 ? 256 : 224, "batch-size", 1 + n % 3, nullptr);
			gchar *classes = nullptr;
			g_object_get(h->element, "classes", &classes, nullptr);
			g_free(classes);
			n++;
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
		}
	});
	for (int i = 0; i < 12; i++)
		ASSERT_EQ(gst_harness_push(h.get(), frames[i % 4].buffer(i * GST_SECOND)), GST_FLOW_OK);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
	for (int i = 0; i < 12; i++) {
		gst_test::BufferPtr out(gst_harness_pull(h.get()));
		ASSERT_TRUE(out);
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
	}
	stop = true;
	setter.join();

	/* Settled values apply to the next frame exactly. */
	g_object_set(h->element, "threshold", kThreshold, "classes", "", "interval", 1, "min-size",
		     kMinSize, nullptr);
	GstSegment segment;
	gst_segment_init(&segment, GST_FORMAT_TIME);
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_start()));
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_stop(TRUE)));
	ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frames[1].buffer(0)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frames[1].width(), frames[1].height(), expected_for(frames[1]));
}

TEST(FrcnnDetect, ThresholdAndMaxDetections)
{
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = harness("max-detections=3");
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	std::vector<frcnn::Detection> all = expected_for(frame);
	ASSERT_GT(all.size(), 3u);
	all.resize(3);
	expect_meta_equals(out.get(), frame.width(), frame.height(), all);

	g_object_set(h->element, "threshold", 0.99, nullptr);
	out.reset(gst_harness_push_and_pull(h.get(), frame.buffer(GST_SECOND)));
	ASSERT_TRUE(out);
	EXPECT_TRUE(gst_test::read_rois(out.get()).empty());
}

// --- errors -------------------------------------------------------------------------------------

struct ErrorCase {
	const char *name;
	std::string properties;
	const char *message_part; // what the message must tell the user
	GQuark domain;
};

// Sets up a pipeline with the element, tries PAUSED and returns the error posted on the bus.
std::string state_change_error(const std::string &properties, GError **error_out)
{
	gst_test::init();
	const std::string description = "fakesrc num-buffers=0 ! frcnndetect name=detect " +
					properties + " ! fakesink";
	GError *error = nullptr;
	GstElement *pipeline = gst_parse_launch(description.c_str(), &error);
	EXPECT_EQ(error, nullptr) << (error ? error->message : "");
	g_clear_error(&error);
	if (!pipeline)
		return {};

	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);

	std::string text;
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	EXPECT_NE(message, nullptr) << "no error on the bus";
	if (message) {
		gchar *debug = nullptr;
		gst_message_parse_error(message, &error, &debug);
		text = error->message;
		const std::string where = debug ? debug : "";
		EXPECT_TRUE(where.find("gst_frcnn_detect_open") != std::string::npos ||
			    where.find("gst_frcnn_detect_check_model_settings") != std::string::npos ||
			    where.find("gst_frcnn_detect_setup_model") != std::string::npos ||
			    where.find("gst_frcnn_detect_check_filters_before_load") != std::string::npos ||
			    where.find("gst_frcnn_detect_setup_classes") != std::string::npos ||
			    where.find("gst_frcnn_detect_load_model") != std::string::npos)
			<< "the debug message tells the developer where: " << (debug ? debug : "(none)");
		EXPECT_STREQ(GST_OBJECT_NAME(GST_MESSAGE_SRC(message)), "detect");
		g_free(debug);
		*error_out = error;
		gst_message_unref(message);
	}
	gst_object_unref(bus);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(pipeline);
	return text;
}

class ErrorTest : public ::testing::TestWithParam<ErrorCase> {
};

TEST_P(ErrorTest, StateChangeFailsWithAMessageThatSaysWhatToSet)
{
	const ErrorCase &c = GetParam();
	GError *error = nullptr;
	const std::string message = state_change_error(c.properties, &error);
	ASSERT_NE(error, nullptr);
	EXPECT_EQ(error->domain, c.domain) << g_quark_to_string(error->domain);
	EXPECT_NE(message.find(c.message_part), std::string::npos) << message;
	g_error_free(error);
}

std::string corrupt_weights()
{
	const std::string path = gst_test::out_dir() + "/corrupt.pth";
	std::ofstream file(path, std::ios::binary);
	file << "PK\x03\x04 this is not a checkpoint at all";
	for (int i = 0; i < 1000; i++)
		file.put(static_cast<char>(i * 7));
	return path;
}

// The tiny model's weights with a bias that is not a number (a training that diverged).
std::string weights_with_nan()
{
	const std::string path = gst_test::out_dir() + "/nan.pth";
	frcnn::Checkpoint checkpoint = frcnn::read_checkpoint(gst_test::weights4());
	for (auto &[name, tensor] : checkpoint.tensors)
		if (name == "roi_heads.box_head.fc6.bias")
			tensor = torch::full_like(tensor, std::nan(""));
	frcnn::write_checkpoint(path, checkpoint);
	return path;
}

std::string bad_labels()
{
	const std::string path = gst_test::out_dir() + "/two-names.txt";
	std::ofstream(path) << "one\ntwo\n";
	return path;
}

std::vector<ErrorCase> error_cases()
{
	gst_test::init();
	const std::string w = "weights=\"" + gst_test::weights4() + "\" ";
	std::vector<ErrorCase> cases{
		{ "NoWeights", "model=tiny", "set 'weights'", GST_RESOURCE_ERROR },
		{ "MissingWeights", "model=tiny weights=/nonexistent/tiny.pth", "Set 'weights'",
		  GST_RESOURCE_ERROR },
		{ "WeightsAreAFolder", "model=tiny weights=/tmp", "Set 'weights'", GST_RESOURCE_ERROR },
		{ "CorruptWeights", "model=tiny weights=\"" + corrupt_weights() + "\"", "Set 'weights'",
		  GST_RESOURCE_ERROR },
		{ "WeightsThatAreNotNumbers", "model=tiny weights=\"" + weights_with_nan() + "\"",
		  "the weights hold values that are not finite (NaN or infinity): "
		  "'roi_heads.box_head.fc6.bias' has 256 of 256; the checkpoint is damaged or comes from a "
		  "training that diverged. Set 'weights' to another copy",
		  GST_RESOURCE_ERROR },
		{ "WeightsDoNotFitTheClasses", "model=tiny num-classes=7 " + w,
		  "the checkpoint holds model 'tiny' with num_classes 4;", GST_LIBRARY_ERROR },
		{ "WeightsDoNotFitTheModel", "model=fasterrcnn_resnet50_fpn " + w,
		  "the checkpoint holds model 'tiny' with num_classes 4; choose the model and number of "
		  "classes the checkpoint was trained with. Set 'model' and 'num-classes'",
		  GST_LIBRARY_ERROR },
		{ "UnknownModel", "model=nope " + w, "Set 'model'", GST_RESOURCE_ERROR },
		{ "UnknownDevice", "model=tiny device=tpu " + w, "set 'device'", GST_RESOURCE_ERROR },
		{ "Fp16OnCpu", "model=tiny precision=fp16 " + w, "set precision=fp32",
		  GST_RESOURCE_ERROR },
		{ "MissingLabels", "model=tiny labels=/nonexistent/labels.txt " + w, "Set 'labels'",
		  GST_RESOURCE_ERROR },
		{ "LabelsOfTheWrongLength", "model=tiny labels=\"" + bad_labels() + "\" " + w,
		  "Set 'labels'", GST_RESOURCE_ERROR },
		{ "UnknownClass", "model=tiny classes=\"class 1, giraffe\" " + w, "giraffe",
		  GST_RESOURCE_ERROR },
		{ "ClassIdOutOfRange", "model=tiny classes=9 " + w, "out of range",
		  GST_RESOURCE_ERROR },
		/* Found before the weights are read: a damaged file is not the error told. (giraffe,
		 * unknown to tiny's "class N" names, may be a COCO model's, whose file tells.) */
		{ "UnknownClassBeforeTheWeights",
		  "model=tiny classes=\"person, giraffe, unicorn\" weights=\"" + corrupt_weights() + "\"",
		  "Invalid 'classes': unknown class 'unicorn': use a name from the labels or a class id.",
		  GST_RESOURCE_ERROR },
		{ "ClassThresholdNotOfTheLabelsFile",
		  "model=tiny labels=\"" + bad_labels() + "\" class-thresholds=\"two=0.5, person=0.5\" "
		  "weights=\"" + corrupt_weights() + "\"",
		  "Invalid 'class-thresholds': unknown class 'person': use a name from the labels or a class id. "
		  "Set it",
		  GST_RESOURCE_ERROR },
		{ "MissingLabelsBeforeTheWeights",
		  "model=tiny labels=/nonexistent/labels.txt weights=\"" + corrupt_weights() + "\"",
		  "Could not use the labels: cannot open labels file '/nonexistent/labels.txt': No such file or "
		  "directory. Set 'labels'",
		  GST_RESOURCE_ERROR },
		{ "BadClassThreshold", "model=tiny class-thresholds=1=2 " + w,
		  "Invalid 'class-thresholds': the score of '1=2' is not a number from 0 to 1. Set it",
		  GST_RESOURCE_ERROR },
		{ "MalformedRegion", "model=tiny region=10,10,0,5 " + w,
		  "Invalid 'region' '10,10,0,5': the width and height must be positive. Set 'region'",
		  GST_RESOURCE_ERROR },
		{ "PresetForAnotherModel", "model=tiny weights=coco", "set model=fasterrcnn_resnet50_fpn",
		  GST_RESOURCE_ERROR },
		{ "RegionWithRoiList", "model=tiny region=0,0,10,10 inference-region=roi-list " + w,
		  "'region' and inference-region=roi-list exclude each other: the detector runs on the "
		  "regions of interest attached upstream. Leave 'region' empty, or set "
		  "inference-region=full-frame.", GST_RESOURCE_ERROR },
	};
	if (!frcnn::Detector::cuda_built())
		cases.push_back({ "CudaInACpuBuild", "model=tiny device=cuda:0 " + w, "set device=cpu",
				  GST_RESOURCE_ERROR });
	else
		cases.push_back({ "Bf16OnCuda", "model=tiny device=cuda precision=bf16 " + w,
				  "precision=bf16 is for the CPU: set precision=fp16 (or fp32) with device=cuda, or device=cpu.",
				  GST_RESOURCE_ERROR });
	if (frcnn::int8_unsupported_reason(frcnn::model_preset("tiny")).empty()) {
		cases.push_back({ "Int8CalibrationInAMissingFolder",
				  "model=tiny precision=int8 int8-calibration=/nonexistent/folder/c.json " + w,
				  "Could not use the int8 calibration '/nonexistent/folder/c.json': cannot write the "
				  "8-bit calibration '/nonexistent/folder/c.json': folder '/nonexistent/folder' does not "
				  "exist. Set 'int8-calibration'",
				  GST_RESOURCE_ERROR });
		cases.push_back({ "Int8WithLibTorchConvolutions", "model=tiny precision=int8 cpu-convolutions=libtorch " + w,
				  "Could not set up model 'tiny' with these settings: precision int8 runs on the oneDNN "
				  "convolutions: set cpu-convolutions to onednn or auto.",
				  GST_RESOURCE_ERROR });
		cases.push_back({ "Int8CalibrationNotJson",
				  "model=tiny precision=int8 int8-calibration=\"" + bad_labels() + "\" " + w,
				  "is not an 8-bit calibration: not JSON", GST_RESOURCE_ERROR });
	}
	if (frcnn::Detector::cuda_built())
		cases.push_back({ "Int8OnCuda", "model=tiny device=cuda precision=int8 " + w,
				  "precision=int8 is for the CPU: set precision=fp16 (or fp32) with device=cuda, or device=cpu.",
				  GST_RESOURCE_ERROR });
	if (!frcnn::cpu_has_bf16())
		cases.push_back({ "Bf16WithoutTheInstructions", "model=tiny precision=bf16 " + w,
				  "precision=bf16 needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX), which this "
				  "one lacks: set precision=fp32.",
				  GST_RESOURCE_ERROR });
	return cases;
}

INSTANTIATE_TEST_SUITE_P(Errors, ErrorTest, ::testing::ValuesIn(error_cases()),
	[](const ::testing::TestParamInfo<ErrorCase> &info) { return std::string(info.param.name); });

TEST(FrcnnDetect, RecoversAfterAFixedSetting)
{
	gst_test::init();
	GstElement *pipeline = gst_parse_launch("videotestsrc num-buffers=2 ! "
						"video/x-raw,format=RGB,width=160,height=120 ! "
						"frcnndetect name=d model=tiny ! fakesink",
						nullptr);
	ASSERT_NE(pipeline, nullptr);
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
	gst_element_set_state(pipeline, GST_STATE_NULL);

	GstElement *detect = gst_bin_get_by_name(GST_BIN(pipeline), "d");
	g_object_set(detect, "weights", gst_test::weights4().c_str(), "min-size", 128, nullptr);
	gst_object_unref(detect);
	EXPECT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_timed_pop_filtered(
		bus, 60 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
	ASSERT_NE(message, nullptr);
	EXPECT_EQ(GST_MESSAGE_TYPE(message), GST_MESSAGE_EOS);
	gst_message_unref(message);
	gst_object_unref(bus);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(pipeline);
}

// The names of the elements that posted the errors of a run of `description` (to its first error,
// else its EOS, and then until its element `source` has stopped streaming: what it pushes last,
// its EOS, has then been handled).
std::vector<std::string> error_sources(const std::string &description)
{
	gst_test::init();
	GstElement *pipeline = gst_parse_launch(description.c_str(), nullptr);
	EXPECT_NE(pipeline, nullptr);
	if (!pipeline)
		return {};
	/* Else going to NULL empties the bus of the errors posted after the first. */
	gst_pipeline_set_auto_flush_bus(GST_PIPELINE(pipeline), FALSE);
	EXPECT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *end = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
						     static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
	EXPECT_NE(end, nullptr) << "neither an error nor EOS: the stream hangs";
	std::vector<std::string> sources;
	if (end && GST_MESSAGE_TYPE(end) == GST_MESSAGE_ERROR)
		sources.push_back(GST_OBJECT_NAME(GST_MESSAGE_SRC(end)));
	if (end)
		gst_message_unref(end);
	GstElement *source = gst_bin_get_by_name(GST_BIN(pipeline), "source");
	EXPECT_NE(source, nullptr);
	if (source) {
		gst_test::wait_until_not_streaming(source);
		gst_object_unref(source);
	}
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
	while (GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
		sources.push_back(GST_OBJECT_NAME(GST_MESSAGE_SRC(error)));
		gst_message_unref(error);
	}
	gst_object_unref(bus);
	gst_object_unref(pipeline);
	return sources;
}

// Nothing linked after the detector: the error is reported once, by whoever hears of the failure
// last: the source at its next buffer (as with queue), or the element when upstream's EOS has
// come before it (the source then hears nothing).
TEST(FrcnnDetect, AnUnlinkedSourcePadIsReportedOnce)
{
	const std::string detect = " ! video/x-raw,format=RGB,width=160,height=120 ! "
				   "frcnndetect name=detect model=tiny min-size=128 weights=" + gst_test::weights4();
	EXPECT_EQ(error_sources("videotestsrc name=source num-buffers=50" + detect),
		  std::vector<std::string>{ "source" });
	EXPECT_EQ(error_sources("videotestsrc name=source num-buffers=1" + detect),
		  std::vector<std::string>{ "detect" });
}

TEST(FrcnnDetect, DownstreamFailureEndsTheStream)
{
	/* Nothing linked after the detector: the push fails, and the pipeline hears of it. */
	gst_test::init();
	const std::string description = "videotestsrc num-buffers=50 ! "
					"video/x-raw,format=RGB,width=160,height=120 ! "
					"frcnndetect name=detect model=tiny min-size=128 weights=" +
					gst_test::weights4();
	GstElement *pipeline = gst_parse_launch(description.c_str(), nullptr);
	ASSERT_NE(pipeline, nullptr);
	ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error: the stream hangs";
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_TRUE(g_error_matches(error, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED))
		<< error->message;
	g_error_free(error);
	gst_message_unref(message);
	gst_object_unref(bus);
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
	gst_object_unref(pipeline);
}

// Downstream that takes no more buffers (a sink of num-buffers, identity eos-after) returns EOS
// for the next one: upstream is told so, and the EOS it then sends reaches the sink, which ends
// the pipeline (the frames queued meanwhile are dropped); so does an EOS queued already (a
// stream of 6 frames all queued while the first batch runs).
TEST(FrcnnDetect, DownstreamThatTakesNoMoreBuffersStillGetsTheEos)
{
	gst_test::init();
	for (const std::string ending : { "fakesink num-buffers=3", "identity eos-after=3 ! fakesink" }) {
		for (const std::string source : { "num-buffers=40 is-live=false", "num-buffers=40 is-live=true",
						  "num-buffers=6 is-live=false" }) {
			SCOPED_TRACE(ending + ", " + source);
			const std::string description = "videotestsrc " + source +
							" ! video/x-raw,format=RGB,width=160,height=120 ! "
							"frcnndetect model=tiny min-size=128 batch-size=4 weights=" +
							gst_test::weights4() + " ! " + ending;
			GstElement *pipeline = gst_parse_launch(description.c_str(), nullptr);
			ASSERT_NE(pipeline, nullptr);
			ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
			GstBus *bus = gst_element_get_bus(pipeline);
			GstMessage *message = gst_bus_timed_pop_filtered(
				bus, 60 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
			ASSERT_NE(message, nullptr) << "no EOS: the pipeline hangs";
			EXPECT_EQ(GST_MESSAGE_TYPE(message), GST_MESSAGE_EOS);
			gst_message_unref(message);
			gst_object_unref(bus);
			EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
			gst_object_unref(pipeline);
		}
	}
}

TEST(FrcnnDetect, PropertyDefaultsAndRanges)
{
	GstElement *element = gst_element_factory_make("frcnndetect", nullptr);
	ASSERT_NE(element, nullptr);
	gchar *model = nullptr, *weights = nullptr, *device = nullptr;
	guint batch_size = 0, interval = 0, max_detections = 0, num_classes = 99;
	gdouble threshold = 0, nms = 0;
	g_object_get(element, "model", &model, "weights", &weights, "device", &device, "batch-size",
		     &batch_size, "interval", &interval, "max-detections", &max_detections,
		     "num-classes", &num_classes, "threshold", &threshold, "nms-threshold", &nms,
		     nullptr);
	EXPECT_EQ(model, nullptr) << "unset: the model is told from the weights";
	EXPECT_EQ(weights, nullptr);
	EXPECT_STREQ(device, "cpu");
	EXPECT_EQ(batch_size, 1u);
	EXPECT_EQ(interval, 1u);
	EXPECT_EQ(max_detections, 100u);
	EXPECT_EQ(num_classes, 0u);
	EXPECT_DOUBLE_EQ(threshold, 0.5);
	EXPECT_DOUBLE_EQ(nms, 0.5);
	g_free(model);
	g_free(weights);
	g_free(device);

	GParamSpec *spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "batch-size");
	ASSERT_NE(spec, nullptr);
	EXPECT_EQ(G_PARAM_SPEC_UINT(spec)->minimum, 1u);
	EXPECT_EQ(G_PARAM_SPEC_UINT(spec)->maximum, 64u);
	guint threads = 99;
	g_object_get(element, "threads", &threads, nullptr);
	EXPECT_EQ(threads, 0u) << "the process's count unless asked";
	spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "threads");
	ASSERT_NE(spec, nullptr);
	EXPECT_TRUE(spec->flags & GST_PARAM_MUTABLE_PLAYING);
	gboolean channels_last = TRUE;
	g_object_get(element, "channels-last", &channels_last, nullptr);
	EXPECT_FALSE(channels_last);
	gint cpu_convolutions = -1;
	g_object_get(element, "cpu-convolutions", &cpu_convolutions, nullptr);
	EXPECT_EQ(cpu_convolutions, (gint)frcnn::CpuConvolutions::Auto);
	gst_util_set_object_arg(G_OBJECT(element), "cpu-convolutions", "onednn");
	g_object_get(element, "cpu-convolutions", &cpu_convolutions, nullptr);
	EXPECT_EQ(cpu_convolutions, (gint)frcnn::CpuConvolutions::OneDnn);
	gst_util_set_object_arg(G_OBJECT(element), "precision", "fp16");
	gint precision = 0;
	g_object_get(element, "precision", &precision, nullptr);
	EXPECT_EQ(precision, (gint)frcnn::Precision::Fp16);
	gst_util_set_object_arg(G_OBJECT(element), "precision", "bf16");
	g_object_get(element, "precision", &precision, nullptr);
	EXPECT_EQ(precision, (gint)frcnn::Precision::Bf16);
	gchar unset[] = "unset";
	gchar *instance_id = unset; // g_object_get() must overwrite it with NULL
	g_object_get(element, "model-instance-id", &instance_id, nullptr);
	EXPECT_EQ(instance_id, nullptr) << "a model of its own unless asked";
	if (instance_id != unset)
		g_free(instance_id);
	spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "model-instance-id");
	ASSERT_NE(spec, nullptr);
	EXPECT_FALSE(spec->flags & GST_PARAM_MUTABLE_PLAYING);
	gchar *region = unset; // g_object_get() must overwrite it with NULL
	g_object_get(element, "region", &region, nullptr);
	EXPECT_EQ(region, nullptr) << "the whole frame unless asked";
	if (region != unset)
		g_free(region);
	g_object_set(element, "region", "1,2,3,4", nullptr);
	g_object_get(element, "region", &region, nullptr);
	EXPECT_STREQ(region, "1,2,3,4");
	g_free(region);
	spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "region");
	ASSERT_NE(spec, nullptr);
	EXPECT_TRUE(spec->flags & GST_PARAM_MUTABLE_PLAYING);

	/* The whole frame unless asked; then the regions of interest of every type and size. */
	gint inference_region = -1;
	gchar *object_class = unset;
	guint object_min_size = 99;
	g_object_get(element, "inference-region", &inference_region, "object-class", &object_class,
		     "object-min-size", &object_min_size, nullptr);
	EXPECT_EQ(inference_region, 0);
	EXPECT_EQ(object_class, nullptr);
	if (object_class != unset)
		g_free(object_class);
	EXPECT_EQ(object_min_size, 0u);
	gst_util_set_object_arg(G_OBJECT(element), "inference-region", "roi-list");
	g_object_get(element, "inference-region", &inference_region, nullptr);
	EXPECT_EQ(inference_region, 1);
	spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "inference-region");
	ASSERT_NE(spec, nullptr);
	EXPECT_FALSE(spec->flags & GST_PARAM_MUTABLE_PLAYING);
	for (const char *name :
	     { "object-class", "object-min-size", "square-pixels", "tone-mapping", "min-box-size", "max-box-size" }) {
		spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), name);
		ASSERT_NE(spec, nullptr) << name;
		EXPECT_TRUE(spec->flags & GST_PARAM_MUTABLE_PLAYING) << name;
	}
	gboolean square_pixels = FALSE;
	g_object_get(element, "square-pixels", &square_pixels, nullptr);
	EXPECT_TRUE(square_pixels) << "frames are seen as a display shows them unless asked";
	gboolean tone_mapping = FALSE;
	g_object_get(element, "tone-mapping", &tone_mapping, nullptr);
	EXPECT_TRUE(tone_mapping) << "HDR video is seen as SDR shows it unless asked";
	gst_object_unref(element);
}

// Pushes the frames into the harness and checks each output against the library's detections.
void expect_detections_of(GstHarness *h, const std::vector<Frame> &frames,
			  const std::vector<std::vector<frcnn::Detection>> &expected)
{
	gst_harness_set_src_caps(h, frames[0].caps());
	const GstClockTime duration = GST_SECOND / 30;
	for (std::size_t i = 0; i < frames.size(); i++)
		ASSERT_EQ(gst_harness_push(h, frames[i].buffer(i * duration, duration)), GST_FLOW_OK);
	ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
	for (std::size_t i = 0; i < frames.size(); i++) {
		SCOPED_TRACE("frame " + std::to_string(i));
		gst_test::BufferPtr out(gst_harness_pull(h));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frames[i].width(), frames[i].height(), expected[i]);
	}
}

// Weights nearly of a model (a tensor gone), the model unset: the start fails naming the model they
// come nearest to and what differs (the default model's differences were listed, 121 shapes and
// 158 keys of a ResNet-50 for a tiny checkpoint short of one tensor).
TEST(FrcnnDetect, WeightsNearlyOfAModelNameIt)
{
	frcnn::Checkpoint checkpoint = frcnn::read_checkpoint(gst_test::weights4());
	const std::string gone = "backbone.body.layer1.0.conv1.weight";
	const auto before = checkpoint.tensors.size();
	checkpoint.tensors.erase(std::remove_if(checkpoint.tensors.begin(), checkpoint.tensors.end(),
						[&](const auto &entry) { return entry.first == gone; }),
				 checkpoint.tensors.end());
	ASSERT_EQ(checkpoint.tensors.size(), before - 1);
	const std::string path = gst_test::out_dir() + "/nearly-tiny.pth";
	frcnn::write_checkpoint(path, checkpoint);

	GError *error = nullptr;
	const std::string message = state_change_error("weights=\"" + path + "\"", &error);
	EXPECT_TRUE(error && error->domain == GST_RESOURCE_ERROR);
	g_clear_error(&error);
	EXPECT_EQ(message.rfind("Could not tell the model of the weights '" + path + "': cannot tell which model", 0), 0u)
		<< message;
	EXPECT_NE(message.find("with the 'model' property; they come nearest to model 'tiny' with num_classes 4 "
			       "(missing: " + gone + "): a damaged or edited checkpoint of it?"),
		  std::string::npos)
		<< message;
	/* With the model given, loading names what does not fit, as before. */
	const std::string given = state_change_error("model=tiny weights=\"" + path + "\"", &error);
	g_clear_error(&error);
	EXPECT_NE(given.find("missing: " + gone), std::string::npos) << given;
}

// Elements with the same model-instance-id load the model once: the second one starts after
// the weights file is gone, which an element loading its own cannot. Their batches run on the
// shared model at the same time from two threads, each with its own threshold and batch size.
TEST(FrcnnDetect, ModelInstanceIdSharesOneModel)
{
	const std::string copy = gst_test::out_dir() + "/shared-model.pth";
	{
		std::ifstream in(gst_test::weights4(), std::ios::binary);
		std::ofstream out(copy, std::ios::binary);
		out << in.rdbuf();
		ASSERT_TRUE(out.good());
	}
	const std::string weights = "weights=\"" + copy + "\" ";
	HarnessPtr first = harness(weights + "model-instance-id=cameras");
	ASSERT_EQ(std::remove(copy.c_str()), 0);
	HarnessPtr second = harness(weights + "model-instance-id=cameras threshold=0.3 batch-size=2");
	/* The same file by another path: the same model (the file is gone, so it could not load).
	 * So are the model and the class count the weights tell, given or not. */
	const std::string out_dir = gst_test::out_dir();
	const std::string folder = out_dir.substr(out_dir.find_last_of('/') + 1);
	for (const std::string &properties : { "model=tiny weights=\"" + out_dir + "/./../" + folder + "/shared-model.pth\"",
					      weights + "num-classes=4", weights }) {
		SCOPED_TRACE(properties);
		const std::string description = "fakesrc num-buffers=0 ! frcnndetect " + properties +
						" model-instance-id=cameras ! fakesink";
		GstElement *pipeline = gst_parse_launch(description.c_str(), nullptr);
		ASSERT_NE(pipeline, nullptr);
		EXPECT_NE(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE)
			<< "the same model settings load a model of their own";
		gst_element_set_state(pipeline, GST_STATE_NULL);
		gst_object_unref(pipeline);
	}

	GError *error = nullptr;
	std::string message = state_change_error("model=tiny " + weights + "model-instance-id=other", &error);
	EXPECT_NE(message.find("Could not get the weights"), std::string::npos)
		<< "another id loads its own model: " << message;
	g_clear_error(&error);
	const std::string file = std::filesystem::weakly_canonical(copy).string();
	for (const std::string &other : { "model=tiny weights=\"" + gst_test::weights4() + "\"",
					 "model=tiny " + weights + "num-classes=5" }) {
		message = state_change_error(other + " model-instance-id=cameras", &error);
		EXPECT_NE(message.find("model-instance-id 'cameras' is in use by a model loaded with other settings"),
			  std::string::npos) << message;
		EXPECT_TRUE(error && error->domain == GST_RESOURCE_ERROR);
		g_clear_error(&error);
		/* Other weights, the class count left to them: unread, so not named as the shared
		 * file's (nor as a count of 0). */
		if (other.find("num-classes") == std::string::npos) {
			EXPECT_NE(message.find("this element has model=tiny weights=" +
					       std::filesystem::weakly_canonical(gst_test::weights4()).string() +
					       " num-classes=(unset) "),
				  std::string::npos)
				<< message;
			EXPECT_NE(message.find(", (unset) to be told by its weights)"), std::string::npos) << message;
		}
	}
	/* Weights of another class count, the model and count left to them: the message names
	 * this element's as unset, not as the 91 classes and model of the shared model's file. */
	{
		HarnessPtr ninety_one = harness("weights=\"" + gst_test::weights91() + "\" model-instance-id=counts");
		const std::string refusal =
			state_change_error("weights=\"" + gst_test::weights4() + "\" model-instance-id=counts", &error);
		g_clear_error(&error);
		EXPECT_NE(refusal.find("this element has model=(unset) weights=" +
				       std::filesystem::weakly_canonical(gst_test::weights4()).string() +
				       " num-classes=(unset) "),
			  std::string::npos)
			<< refusal;
	}
	EXPECT_NE(message.find("(model=tiny weights=" + file + " num-classes=4 "), std::string::npos)
		<< "the shared model's settings are named with the class count it took: " << message;
	EXPECT_NE(message.find("this element has model=tiny weights=" + file + " num-classes=5 "), std::string::npos)
		<< message;

	const std::vector<Frame> frames = distinct_frames(6);
	std::vector<std::vector<frcnn::Detection>> low, high;
	for (const Frame &frame : frames) {
		low.push_back(reference(kThreshold).detect({ view_of(frame) }).at(0));
		high.push_back(reference(0.3).detect({ view_of(frame) }).at(0));
	}
	std::size_t low_count = 0, high_count = 0;
	for (std::size_t i = 0; i < frames.size(); i++) {
		low_count += low[i].size();
		high_count += high[i].size();
	}
	ASSERT_GT(low_count, high_count) << "the two thresholds must give different detections";
	std::thread other([&] { expect_detections_of(second.get(), frames, high); });
	expect_detections_of(first.get(), frames, low);
	other.join();

	/* The model stays while one element holds it; once none does, the id is free again. */
	first.reset();
	HarnessPtr again = harness(weights + "model-instance-id=cameras threshold=0.3");
	expect_detections_of(again.get(), frames, high);
	second.reset();
	again.reset();
	HarnessPtr fresh = harness("model-instance-id=cameras");
	expect_detections_of(fresh.get(), frames, low);
}

// The library's detections on a rectangle of the frame, moved into the frame's pixels.
std::vector<frcnn::Detection> expected_in(const Frame &frame, int x, int y, int width, int height)
{
	std::vector<frcnn::Detection> detections =
		reference().detect({ frcnn::crop_frame(view_of(frame), x, y, width, height) }).at(0);
	for (frcnn::Detection &det : detections) {
		det.x1 += x;
		det.x2 += x;
		det.y1 += y;
		det.y2 += y;
	}
	return detections;
}

// The first detections differ (else a test of the region could pass on the whole frame).
bool differ(const std::vector<frcnn::Detection> &a, const std::vector<frcnn::Detection> &b)
{
	return a.size() != b.size() || (!a.empty() && (a[0].x1 != b[0].x1 || a[0].y1 != b[0].y1 ||
						       a[0].label != b[0].label));
}

// The text of the next message of `type` on the bus, waiting up to a minute; empty if none.
std::string next_message_text(GstBus *bus, GstMessageType type)
{
	GstMessage *message = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, type);
	if (!message)
		return {};
	GError *error = nullptr;
	if (type == GST_MESSAGE_INFO)
		gst_message_parse_info(message, &error, nullptr);
	else if (type == GST_MESSAGE_WARNING)
		gst_message_parse_warning(message, &error, nullptr);
	else
		gst_message_parse_error(message, &error, nullptr);
	std::string text = error ? error->message : "(no text)";
	g_clear_error(&error);
	gst_message_unref(message);
	return text;
}

// The detector sees only the region; its detections come in the frame's pixels. On 4:2:0 frames
// the region starts at even coordinates, on 4:2:2 frames at an even x, its right and bottom edges
// staying; a region partly
// outside the frame is cut to it.
TEST(FrcnnDetect, RegionDetectsInsideItInFramePixels)
{
	struct Case {
		GstVideoFormat format;
		std::string region;
		int x, y, width, height; // what the detector must see
	};
	for (const Case &c : { Case{ GST_VIDEO_FORMAT_BGRx, "41,31,150,101", 41, 31, 150, 101 },
			       Case{ GST_VIDEO_FORMAT_I420, "41,31,150,101", 40, 30, 151, 102 },
			       Case{ GST_VIDEO_FORMAT_NV12, "41,31,150,101", 40, 30, 151, 102 },
			       Case{ GST_VIDEO_FORMAT_YUY2, "41,31,150,101", 40, 31, 151, 101 },
			       Case{ GST_VIDEO_FORMAT_Y42B, "41,31,150,101", 40, 31, 151, 101 },
			       Case{ GST_VIDEO_FORMAT_Y444, "41,31,150,101", 41, 31, 150, 101 },
			       Case{ GST_VIDEO_FORMAT_P010_10LE, "41,31,150,101", 40, 30, 151, 102 },
			       Case{ GST_VIDEO_FORMAT_I422_10LE, "41,31,150,101", 40, 31, 151, 101 },
			       Case{ GST_VIDEO_FORMAT_P012_LE, "41,31,150,101", 40, 30, 151, 102 },
			       Case{ GST_VIDEO_FORMAT_Y210, "41,31,150,101", 40, 31, 151, 101 },
			       Case{ GST_VIDEO_FORMAT_RGB, "100,64,500,500", 100, 64, 156, 128 } }) {
		SCOPED_TRACE(std::string(gst_video_format_to_string(c.format)) + " region " + c.region);
		const Frame frame = make_frame(photo(256, 192, 5), c.format);
		const std::vector<frcnn::Detection> expected = expected_in(frame, c.x, c.y, c.width, c.height);
		ASSERT_FALSE(expected.empty());
		ASSERT_TRUE(differ(expected, expected_for(frame)));
		HarnessPtr h = harness("region=" + c.region);
		gst_harness_set_src_caps(h.get(), frame.caps());
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected);
	}
}

// The answer to an ALLOCATION query, asked from upstream: (min, max) of its first pool,
// (0, 0) if it has none.
std::pair<guint, guint> allocation_pool(GstHarness *h, GstCaps *caps)
{
	GstQuery *query = gst_query_new_allocation(caps, TRUE);
	EXPECT_TRUE(gst_pad_peer_query(h->srcpad, query));
	std::pair<guint, guint> result{ 0, 0 };
	if (gst_query_get_n_allocation_pools(query) > 0) {
		GstBufferPool *pool = nullptr;
		guint size;
		gst_query_parse_nth_allocation_pool(query, 0, &pool, &size, &result.first, &result.second);
		EXPECT_GT(size, 0u);
		if (pool)
			gst_object_unref(pool);
	}
	gst_query_unref(query);
	return result;
}

// The element keeps a batch's buffers while it runs and the next batch's as it fills: it asks
// the elements in front (cameras and hardware decoders have pools of their own) for 2 x
// batch-size buffers more than the elements behind it want, and asks again (a reconfigure
// event) when batch-size changes.
TEST(FrcnnDetect, AsksUpstreamForTheBuffersItKeeps)
{
	const Frame frame = make_frame(photo(64, 48), GST_VIDEO_FORMAT_NV12);
	HarnessPtr h = harness("batch-size=4 batch-timeout=0");
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstCaps *caps = frame.caps();
	/* Three batches: the one that runs, the next as it fills, the one before as its frames wait
	   for their time downstream. */
	EXPECT_EQ(allocation_pool(h.get(), caps), std::make_pair(12u, 0u)) << "no pool behind";

	/* A pool behind (min 3, max 5): its minimum and maximum grow by 12. */
	gulong probe = gst_pad_add_probe(
		h->sinkpad, static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM | GST_PAD_PROBE_TYPE_PULL),
		[](GstPad *, GstPadProbeInfo *info, gpointer) {
			GstQuery *query = GST_PAD_PROBE_INFO_QUERY(info);
			if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION)
				gst_query_add_allocation_pool(query, nullptr, 4608, 3, 5);
			return GST_PAD_PROBE_OK;
		},
		nullptr, nullptr);
	EXPECT_EQ(allocation_pool(h.get(), caps), std::make_pair(15u, 17u));
	gst_pad_remove_probe(h->sinkpad, probe);

	/* Nothing behind answers (fakesink does not): the element still asks for its own. */
	probe = gst_pad_add_probe(
		h->sinkpad, GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM,
		[](GstPad *, GstPadProbeInfo *info, gpointer) {
			return GST_QUERY_TYPE(GST_PAD_PROBE_INFO_QUERY(info)) == GST_QUERY_ALLOCATION
				       ? GST_PAD_PROBE_DROP
				       : GST_PAD_PROBE_OK;
		},
		nullptr, nullptr);
	EXPECT_EQ(allocation_pool(h.get(), caps), std::make_pair(12u, 0u));
	gst_pad_remove_probe(h->sinkpad, probe);

	/* A new batch size or interval: upstream is told to reconfigure, and the answer follows. */
	while (GstEvent *event = gst_harness_try_pull_upstream_event(h.get()))
		gst_event_unref(event);
	GstClockTime pts = 0;
	auto reconfigures_after = [&](const char *property, guint value) {
		g_object_set(h->element, property, value, nullptr);
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(pts++ * GST_MSECOND)));
		EXPECT_TRUE(out);
		bool reconfigure = false;
		while (GstEvent *event = gst_harness_try_pull_upstream_event(h.get())) {
			reconfigure |= GST_EVENT_TYPE(event) == GST_EVENT_RECONFIGURE;
			gst_event_unref(event);
		}
		return reconfigure;
	};
	EXPECT_TRUE(reconfigures_after("batch-size", 6));
	EXPECT_EQ(allocation_pool(h.get(), caps), std::make_pair(18u, 0u));
	/* A batch of 6 frames to run one in 3 holds 16 frames: the 6 and the 10 between them. */
	EXPECT_TRUE(reconfigures_after("interval", 3));
	EXPECT_EQ(allocation_pool(h.get(), caps), std::make_pair(48u, 0u));
	EXPECT_FALSE(reconfigures_after("interval", 3)) << "nothing changed";
	/* At most 128. */
	EXPECT_TRUE(reconfigures_after("interval", 1000));
	EXPECT_EQ(allocation_pool(h.get(), caps), std::make_pair(128u, 0u));
	gst_caps_unref(caps);
}

// An element in front that crops (videocrop) hands over whole frames with a GstVideoCropMeta
// naming the rectangle to show where the elements behind take that meta (display sinks do; here
// the harness's sink). frcnndetect does not take it (it would read the whole frame as the
// frame of the caps), so the element in front crops the frames itself: the detections are the
// cropped frame's, in its pixels.
TEST(FrcnnDetect, AnElementInFrontThatCropsCropsTheFrames)
{
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_YUY2 }) {
		SCOPED_TRACE(gst_video_format_to_string(format));
		const Frame frame = make_frame(photo(256, 192, 5), format);
		const int left = 40, top = 30, right = 26, bottom = 60;
		const int width = frame.width() - left - right, height = frame.height() - top - bottom;
		/* The best 20 of the seeded model's faint detections: those further down have nearly
		 * equal scores, whose order the threads' arithmetic may swap. */
		const std::vector<frcnn::Detection> expected =
			reference(kThreshold, kMinSize, frcnn::CpuConvolutions::Auto, 20)
				.detect({ frcnn::crop_frame(view_of(frame), left, top, width, height) })
				.at(0);
		ASSERT_FALSE(expected.empty());

		GstElement *detect = make_detect("max-detections=20");
		GstElement *crop = gst_element_factory_make("videocrop", nullptr);
		ASSERT_NE(crop, nullptr);
		g_object_set(crop, "left", left, "top", top, "right", right, "bottom", bottom, nullptr);
		GstElement *bin = gst_bin_new(nullptr);
		gst_bin_add_many(GST_BIN(bin), crop, detect, nullptr);
		ASSERT_TRUE(gst_element_link(crop, detect));
		GstPad *sink = gst_element_get_static_pad(crop, "sink");
		GstPad *src = gst_element_get_static_pad(detect, "src");
		gst_element_add_pad(bin, gst_ghost_pad_new("sink", sink));
		gst_element_add_pad(bin, gst_ghost_pad_new("src", src));
		gst_object_unref(sink);
		gst_object_unref(src);
		gst_object_ref_sink(bin);
		HarnessPtr h(gst_harness_new_with_element(bin, "sink", "src"));
		gst_object_unref(bin);
		gst_harness_add_propose_allocation_meta(h.get(), GST_VIDEO_CROP_META_API_TYPE, nullptr);
		gst_harness_add_propose_allocation_meta(h.get(), GST_VIDEO_META_API_TYPE, nullptr);
		gst_harness_set_src_caps(h.get(), frame.caps());
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
		ASSERT_TRUE(out);
		EXPECT_EQ(gst_buffer_get_video_crop_meta(out.get()), nullptr);
		expect_meta_equals(out.get(), width, height, expected);
	}
}

// A buffer too small for the frame of its caps is refused with an error that says so.
TEST(FrcnnDetect, ABufferTooSmallForItsCapsIsAnError)
{
	const Frame frame = make_frame(photo(64, 48), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = harness();
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	GstBuffer *small = gst_buffer_new_allocate(nullptr, 64 * 48, nullptr);
	gst_buffer_memset(small, 0, 0x80, 64 * 48);
	EXPECT_EQ(gst_harness_push(h.get(), small), GST_FLOW_ERROR);
	const std::string text = next_message_text(bus, GST_MESSAGE_ERROR);
	EXPECT_NE(text.find("Could not read a 64x48 RGB frame from a buffer of 3072 bytes (the frame "
			    "takes 9216 bytes"),
		  std::string::npos)
		<< text;

	/* The same with a video meta that describes the whole frame: gst_video_frame_map() takes
	 * it, and reading its rows would run past the buffer's end. */
	GstBuffer *described = gst_buffer_new_allocate(nullptr, 64 * 48, nullptr);
	gst_buffer_memset(described, 0, 0x80, 64 * 48);
	gst_buffer_add_video_meta(described, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_FORMAT_RGB, 64, 48);
	EXPECT_EQ(gst_harness_push(h.get(), described), GST_FLOW_ERROR);
	const std::string short_text = next_message_text(bus, GST_MESSAGE_ERROR);
	EXPECT_NE(short_text.find("Could not read a 64x48 RGB frame: its plane 0 needs 48 rows of 192 bytes, and the "
				  "buffer (3072 bytes) holds 16."),
		  std::string::npos)
		<< short_text;
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// The last row of a packed 4:2:2 frame of odd width holds a whole pixel pair, and a v210 row whole
// groups of 6 pixels, which the library reads: a buffer short of them is an error, not a read
// past its end; so is a row stride shorter than the row.
TEST(FrcnnDetect, AShortRowOfPackedYuvIsAnError)
{
	for (const gst_test::ShortPackedRow &c : gst_test::short_packed_rows()) {
		SCOPED_TRACE(std::string(gst_video_format_to_string(c.format)) + " missing " + std::to_string(c.missing));
		const GstVideoInfo info = gst_test::info_of(c);
		HarnessPtr h = harness();
		GstBus *bus = gst_bus_new();
		gst_element_set_bus(h->element, bus);
		gst_harness_set_src_caps(h.get(), gst_video_info_to_caps(&info));
		EXPECT_EQ(gst_harness_push(h.get(), gst_test::described_frame(info, c.missing, c.stride)), GST_FLOW_ERROR);
		const std::string text = next_message_text(bus, GST_MESSAGE_ERROR);
		EXPECT_NE(text.find(c.said), std::string::npos) << text;
		gst_element_set_bus(h->element, nullptr);
		gst_object_unref(bus);
		/* The whole frame reads. */
		HarnessPtr whole = harness();
		gst_harness_set_src_caps(whole.get(), gst_video_info_to_caps(&info));
		EXPECT_EQ(gst_harness_push(whole.get(), gst_test::described_frame(info, 0)), GST_FLOW_OK);
	}
}

// Interlaced video (interlace-mode=interleaved; or mixed, where the buffer's flag says so): the
// element reads a 4:2:0 frame's chroma rows by field, as the library reads an interlaced
// FrameView, and a region starts on a chroma row of the top field (a row that is a multiple of 4).
// A progressive frame of a mixed stream is read as such.
TEST(FrcnnDetect, ReadsInterlacedFramesByField)
{
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_P010_10LE }) {
		SCOPED_TRACE(gst_video_format_to_string(format));
		/* 192 rows: the interlaced layout of the planes is the progressive one. */
		Frame frame = make_frame(photo(256, 192, 5), format);
		frcnn::FrameView view = view_of(frame);
		view.interlaced = true;
		const std::vector<frcnn::Detection> by_field = reference().detect({ view }).at(0);
		const std::vector<frcnn::Detection> progressive = expected_for(frame);
		ASSERT_FALSE(by_field.empty());
		ASSERT_TRUE(differ(by_field, progressive));

		frame.info.interlace_mode = GST_VIDEO_INTERLACE_MODE_INTERLEAVED;
		{
			HarnessPtr h = harness();
			gst_harness_set_src_caps(h.get(), frame.caps());
			gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
			ASSERT_TRUE(out);
			expect_meta_equals(out.get(), frame.width(), frame.height(), by_field);
		}
		{
			HarnessPtr h = harness("region=41,31,150,101");
			gst_harness_set_src_caps(h.get(), frame.caps());
			gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
			ASSERT_TRUE(out);
			std::vector<frcnn::Detection> inside =
				reference().detect({ frcnn::crop_frame(view, 40, 28, 151, 104) }).at(0);
			for (frcnn::Detection &det : inside) {
				det.x1 += 40;
				det.x2 += 40;
				det.y1 += 28;
				det.y2 += 28;
			}
			expect_meta_equals(out.get(), frame.width(), frame.height(), inside);
		}

		frame.info.interlace_mode = GST_VIDEO_INTERLACE_MODE_MIXED;
		HarnessPtr h = harness();
		gst_harness_set_src_caps(h.get(), frame.caps());
		GstBuffer *interlaced = frame.buffer(0);
		GST_BUFFER_FLAG_SET(interlaced, GST_VIDEO_BUFFER_FLAG_INTERLACED);
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), interlaced));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), by_field);
		out.reset(gst_harness_push_and_pull(h.get(), frame.buffer(GST_MSECOND)));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), progressive);
	}
}

// Interlaced 4:2:0 frames laid out with fewer chroma rows than their fields need ((height + 1) / 2
// where each field's are rounded up: a producer's video meta, or GStreamer 1.22's own layout of
// P010_10LE, P012_LE and P016_LE frames of 4k + 1 or 4k + 2 rows): the bottom field's last chroma
// row, which the frame does not hold, is read as that field's row above it, never from the
// memory after the buffer (here a row of extreme chroma).
TEST(FrcnnDetect, InterlacedFramesOfFewerChromaRowsThanTheirFieldsNeed)
{
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_P010_10LE }) {
		SCOPED_TRACE(gst_video_format_to_string(format));
		/* A video meta's layout (rows padded by 4 bytes), 95 chroma rows where the fields need 96. */
		Frame frame = make_frame(photo(256, 190, 5), format, 4);
		ASSERT_TRUE(frame.video_meta);
		frame.info.interlace_mode = GST_VIDEO_INTERLACE_MODE_INTERLEAVED;
		const std::size_t stride = frame.strides[1];
		ASSERT_EQ(frame.offsets[1] + 95 * stride, frame.bytes.size()) << "the chroma plane comes last";

		/* The frame as the library reads it: row 95 (the bottom field's last) repeats row 93. */
		std::vector<uint8_t> complete(frame.bytes);
		complete.insert(complete.end(), frame.bytes.begin() + frame.offsets[1] + 93 * stride,
				frame.bytes.begin() + frame.offsets[1] + 94 * stride);
		frcnn::FrameView view = view_of(frame);
		view.planes[0] = complete.data() + frame.offsets[0];
		view.planes[1] = complete.data() + frame.offsets[1];
		view.interlaced = true;
		const std::vector<frcnn::Detection> expected = reference().detect({ view }).at(0);
		ASSERT_FALSE(expected.empty());

		std::vector<uint8_t> memory(frame.bytes);
		memory.resize(frame.bytes.size() + stride, 0);
		GstBuffer *in = gst_buffer_new_wrapped_full(static_cast<GstMemoryFlags>(0), memory.data(), memory.size(),
							    0, frame.bytes.size(), nullptr, nullptr);
		gst_buffer_add_video_meta_full(in, GST_VIDEO_FRAME_FLAG_NONE, format, frame.width(), frame.height(),
					       frame.n_planes(), frame.offsets, frame.strides);
		HarnessPtr h = harness();
		gst_harness_set_src_caps(h.get(), frame.caps());
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected);
	}
}

// v210's 6 pixels share 4 words: a region's left edge moves onto a multiple of 6 columns (41 to
// 36), its right edge staying, and the detections are those of that rectangle.
TEST(FrcnnDetect, RegionsOfV210FramesStartOnAGroupOfWords)
{
	const Frame frame = make_frame(photo(321, 241), GST_VIDEO_FORMAT_v210);
	HarnessPtr h = harness("region=41,31,150,101");
	gst_harness_set_src_caps(h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	const std::vector<frcnn::Detection> inside = expected_in(frame, 36, 31, 155, 101);
	ASSERT_FALSE(inside.empty());
	expect_meta_equals(out.get(), frame.width(), frame.height(), inside);
}

// A new region applies from the next frame; an invalid one is warned about and the previous
// region kept; a region outside the frames stops the stream with an error that says so.
TEST(FrcnnDetect, FramesOfPixelsThatAreNotSquareAreSeenAsADisplayShowsThem)
{
	/* Caps whose pixels are 9/5 as wide as high (a 180x240 frame that shows as 324x240): the
	 * library's detections of the frame read so, in the frame's pixels; with square-pixels=false
	 * those of the stored pixels. Caps of 1/1 pixels and caps without the field are read alike. */
	Frame frame = make_frame(photo(180, 240, 5), GST_VIDEO_FORMAT_NV12);
	const std::vector<frcnn::Detection> stored = expected_for(frame);
	frcnn::FrameView wide_view = view_of(frame);
	wide_view.pixel_aspect_ratio = { 9, 5 };
	const std::vector<frcnn::Detection> wide = reference().detect({ wide_view }).at(0);
	ASSERT_FALSE(wide.empty());
	ASSERT_TRUE(differ(wide, stored)) << "the pixels' shape must change the detections for the test to see it";
	for (const frcnn::Detection &d : wide)
		EXPECT_LE(d.x2, 180.0f) << "boxes in the frame's pixels";

	frame.info.par_n = 9;
	frame.info.par_d = 5;
	expect_element_detects(frame, wide);
	expect_element_detects(frame, stored, "square-pixels=false");
	/* Changed while playing: from the next frame. */
	{
		HarnessPtr h = harness();
		gst_harness_set_src_caps(h.get(), frame.caps());
		gst_test::BufferPtr first(gst_harness_push_and_pull(h.get(), frame.buffer(0)));
		ASSERT_TRUE(first);
		expect_meta_equals(first.get(), frame.width(), frame.height(), wide);
		g_object_set(h->element, "square-pixels", FALSE, nullptr);
		gst_test::BufferPtr second(gst_harness_push_and_pull(h.get(), frame.buffer(1)));
		ASSERT_TRUE(second);
		expect_meta_equals(second.get(), frame.width(), frame.height(), stored);
	}
	frame.info.par_n = 1;
	frame.info.par_d = 1;
	expect_element_detects(frame, stored);
}

TEST(FrcnnDetect, HdrVideoIsMappedToSdr)
{
	/* The same 10-bit bytes under PQ and HLG caps are other pictures: each as the library maps
	 * that transfer to SDR, in BT.2020's primaries converted to BT.709's; with
	 * tone-mapping=false as the code values of BT.709 SDR. */
	const Frame sdr_frame = make_frame(photo(320, 240, 7), GST_VIDEO_FORMAT_P010_10LE);
	std::vector<std::vector<frcnn::Detection>> seen;
	for (const char *colorimetry : { "bt2020", "bt2100-pq", "bt2100-hlg" }) {
		SCOPED_TRACE(colorimetry);
		Frame frame = sdr_frame;
		ASSERT_TRUE(gst_video_colorimetry_from_string(&frame.info.colorimetry, colorimetry));
		frcnn::FrameView view = view_of(frame);
		ASSERT_EQ(view.primaries, frcnn::ColourPrimaries::BT2020);
		view.primaries = frcnn::ColourPrimaries::BT709;
		const std::vector<frcnn::Detection> as_sdr = reference().detect({ view }).at(0);
		view.transfer = frame.info.colorimetry.transfer == GST_VIDEO_TRANSFER_SMPTE2084 ? frcnn::TransferFunction::PQ
				: frame.info.colorimetry.transfer == GST_VIDEO_TRANSFER_ARIB_STD_B67
					? frcnn::TransferFunction::HLG
					: frcnn::TransferFunction::SDR;
		view.primaries = frcnn::ColourPrimaries::BT2020;
		const std::vector<frcnn::Detection> expected = reference().detect({ view }).at(0);
		ASSERT_FALSE(expected.empty());
		for (const auto &other : seen)
			ASSERT_TRUE(differ(other, expected)) << "the transfers must give other detections for the test to tell them apart";
		seen.push_back(expected);
		expect_element_detects(frame, expected);
		expect_element_detects(frame, as_sdr, "tone-mapping=false");
	}
}

TEST(FrcnnDetect, WideGamutColoursAreReadAsBt709s)
{
	/* The same RGB bytes under caps of BT.709, BT.2020 and Display P3 primaries (SDR) are other
	 * pictures: each as the library converts those primaries to BT.709's; with
	 * tone-mapping=false all read as BT.709's. A photo's colours move little between gamuts,
	 * so the frame is made of saturated bands (the model's detections then differ). */
	cv::Mat bands = photo(320, 240, 7);
	for (int y = 0; y < bands.rows; y++)
		for (int x = 0; x < bands.cols; x++) {
			cv::Vec3b &pixel = bands.at<cv::Vec3b>(y, x);
			const int band = (x / 40 + y / 60) % 3;
			for (int c = 0; c < 3; c++)
				pixel[c] = c == band ? std::max<uint8_t>(pixel[c], 200) : pixel[c] / 4;
		}
	const Frame bt709_frame = make_frame(bands, GST_VIDEO_FORMAT_RGB);
	struct Case {
		GstVideoColorPrimaries caps;
		frcnn::ColourPrimaries library;
	};
	std::vector<std::vector<frcnn::Detection>> seen;
	for (const Case &c : { Case{ GST_VIDEO_COLOR_PRIMARIES_BT709, frcnn::ColourPrimaries::BT709 },
			       Case{ GST_VIDEO_COLOR_PRIMARIES_BT2020, frcnn::ColourPrimaries::BT2020 },
			       Case{ GST_VIDEO_COLOR_PRIMARIES_SMPTEEG432, frcnn::ColourPrimaries::DisplayP3 } }) {
		SCOPED_TRACE(gst_video_color_primaries_to_iso(c.caps));
		Frame frame = bt709_frame;
		frame.info.colorimetry.primaries = c.caps;
		frcnn::FrameView view = view_of(frame);
		ASSERT_EQ(view.primaries, c.library);
		const std::vector<frcnn::Detection> expected = reference().detect({ view }).at(0);
		view.primaries = frcnn::ColourPrimaries::BT709;
		const std::vector<frcnn::Detection> as_bt709 = reference().detect({ view }).at(0);
		ASSERT_FALSE(expected.empty());
		for (const auto &other : seen)
			ASSERT_TRUE(differ(other, expected)) << "the primaries must give other detections for the test to tell them apart";
		seen.push_back(expected);
		expect_element_detects(frame, expected);
		expect_element_detects(frame, as_bt709, "tone-mapping=false");
	}
}

TEST(FrcnnDetect, RegionChangesWhilePlaying)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = harness("region=0,0,128,96");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	auto run = [&](GstClockTime pts, const std::vector<frcnn::Detection> &expected) {
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame.buffer(pts)));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected);
	};
	const std::vector<frcnn::Detection> corner = expected_in(frame, 0, 0, 128, 96);
	const std::vector<frcnn::Detection> middle = expected_in(frame, 64, 48, 128, 96);
	ASSERT_TRUE(differ(corner, middle));
	run(0, corner);

	g_object_set(h->element, "region", "64,48,128,96", nullptr);
	run(GST_MSECOND, middle);

	g_object_set(h->element, "region", "64,48,128", nullptr);
	run(2 * GST_MSECOND, middle);
	const std::string warning = next_message_text(bus, GST_MESSAGE_WARNING);
	EXPECT_NE(warning.find("Invalid 'region' '64,48,128', keeping the previous region: 3 numbers instead of 4"),
		  std::string::npos) << warning;

	g_object_set(h->element, "region", nullptr, nullptr);
	run(3 * GST_MSECOND, expected_for(frame));

	g_object_set(h->element, "region", "256,0,10,10", nullptr);
	EXPECT_EQ(gst_harness_push(h.get(), frame.buffer(4 * GST_MSECOND)), GST_FLOW_ERROR);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error for a region outside the frame";
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_TRUE(g_error_matches(error, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED));
	EXPECT_NE(std::string(error->message).find("No part of the region is in the frame: the region 256,0,10,10 lies outside the 256x192 frames. Set 'region'"),
		  std::string::npos) << error->message;
	g_clear_error(&error);
	gst_message_unref(message);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// --- inference-region=roi-list --------------------------------------------------------------

// Attaches a region of interest as another element would: a type, a rectangle and an id.
void add_roi(GstBuffer *buffer, const char *type, guint x, guint y, guint w, guint h, gint id)
{
	GstVideoRegionOfInterestMeta *roi =
		gst_buffer_add_video_region_of_interest_meta(buffer, type, x, y, w, h);
	roi->id = id;
}

// An element with inference-region=roi-list. Its batches run on as many CPU threads as the
// library's here: a batch of several images split among another count of threads rounds its
// sums differently, which reorders the test model's close scores.
HarnessPtr roi_harness(const std::string &properties = "")
{
	return harness("inference-region=roi-list threads=" + std::to_string(frcnn::cpu_threads()) +
		       " " + properties);
}

// A region of interest as the element must run it: where the detector looks, and whose it is.
struct ExpectedRegion {
	int x, y, width, height;
	gint parent_id;
};

// The library's detections in each region of the frame, in the frame's pixels, run as the
// element runs them: the regions in batches of `batch_size` images (a batch pads its images to
// the largest, which changes the numbers a little). One list per region.
std::vector<std::vector<frcnn::Detection>> expected_in_regions(const Frame &frame,
							       const std::vector<ExpectedRegion> &regions,
							       std::size_t batch_size)
{
	std::vector<std::vector<frcnn::Detection>> lists;
	for (std::size_t first = 0; first < regions.size(); first += batch_size) {
		std::vector<frcnn::FrameView> views;
		for (std::size_t i = first; i < std::min(regions.size(), first + batch_size); i++) {
			const ExpectedRegion &r = regions[i];
			views.push_back(frcnn::crop_frame(view_of(frame), r.x, r.y, r.width, r.height));
		}
		for (std::vector<frcnn::Detection> &list : reference().detect(views)) {
			const ExpectedRegion &r = regions[lists.size()];
			for (frcnn::Detection &det : list) {
				det.x1 += r.x;
				det.x2 += r.x;
				det.y1 += r.y;
				det.y2 += r.y;
			}
			lists.push_back(std::move(list));
		}
	}
	return lists;
}

// The metas from the `first` on are the `expected` detections of each region, best first across
// the regions (those of equal scores region by region), with the region's id as their parent and
// ids after those on the buffer before.
void expect_detections_in_regions(GstBuffer *buffer, const Frame &frame, std::size_t first,
				  const std::vector<ExpectedRegion> &regions,
				  const std::vector<std::vector<frcnn::Detection>> &lists)
{
	ASSERT_EQ(regions.size(), lists.size());
	std::vector<std::pair<frcnn::Detection, gint>> found;
	for (std::size_t i = 0; i < regions.size(); i++) {
		EXPECT_FALSE(lists[i].empty()) << "a region without detections proves little";
		for (const frcnn::Detection &det : lists[i])
			found.emplace_back(det, regions[i].parent_id);
	}
	std::stable_sort(found.begin(), found.end(),
			 [](const auto &a, const auto &b) { return a.first.score > b.first.score; });
	std::vector<frcnn::Detection> expected;
	std::vector<gint> parents;
	for (const auto &[det, parent] : found) {
		expected.push_back(det);
		parents.push_back(parent);
	}
	expect_meta_equals(buffer, frame.width(), frame.height(), expected, {}, first);
	const std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(buffer);
	ASSERT_EQ(rois.size(), first + parents.size());
	std::set<gint> ids;
	for (std::size_t i = 0; i < rois.size(); i++)
		EXPECT_TRUE(ids.insert(rois[i].id).second) << "id " << rois[i].id << " twice";
	for (std::size_t i = 0; i < parents.size(); i++)
		EXPECT_EQ(rois[first + i].parent_id, parents[i]) << "detection " << i;
}

// The same for the regions of one frame run in batches of `batch_size`.
void expect_detections_in_regions(GstBuffer *buffer, const Frame &frame, std::size_t first,
				  const std::vector<ExpectedRegion> &regions, std::size_t batch_size = 1)
{
	expect_detections_in_regions(buffer, frame, first, regions,
				     expected_in_regions(frame, regions, batch_size));
}

// Each region of interest on the frame is an image of its own; the detections come in the
// frame's pixels and name their region as the parent. A region partly outside the frame is cut
// to it, one outside it or empty is left out; on 4:2:0 frames regions start at even
// coordinates. The regions that came with the frame stay as they were.
TEST(FrcnnDetect, RoiListDetectsInsideEachRegion)
{
	for (GstVideoFormat format : { GST_VIDEO_FORMAT_BGRx, GST_VIDEO_FORMAT_NV12 }) {
		const bool chroma_420 = format == GST_VIDEO_FORMAT_NV12;
		SCOPED_TRACE(gst_video_format_to_string(format));
		const Frame frame = make_frame(photo(256, 192, 5), format);
		HarnessPtr h = roi_harness("batch-size=4");
		gst_harness_set_src_caps(h.get(), frame.caps());
		GstBuffer *in = frame.buffer(0);
		add_roi(in, "person", 41, 31, 150, 101, 3);
		add_roi(in, "car", 100, 64, 500, 500, 8);
		add_roi(in, "person", 300, 10, 20, 20, 9); // outside the frame
		add_roi(in, "person", 10, 10, 0, 20, 10);  // empty
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
		ASSERT_TRUE(out);

		const std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(out.get());
		ASSERT_GE(rois.size(), 4u);
		EXPECT_EQ(rois[0].roi_type, "person");
		EXPECT_EQ(rois[0].x, 41u);
		EXPECT_EQ(rois[0].id, 3);
		EXPECT_FALSE(rois[0].has_param);
		EXPECT_EQ(rois[1].w, 500u);
		const std::vector<ExpectedRegion> regions{
			chroma_420 ? ExpectedRegion{ 40, 30, 151, 102, 3 } : ExpectedRegion{ 41, 31, 150, 101, 3 },
			ExpectedRegion{ 100, 64, 156, 128, 8 },
		};
		expect_detections_in_regions(out.get(), frame, 4, regions, 4);

		const std::map<std::string, double> stats = stats_of(h->element);
		EXPECT_EQ(stats.at("frames-detected"), 1);
		EXPECT_EQ(stats.at("images-detected"), 2);
		EXPECT_EQ(stats.at("batches"), 1);
		EXPECT_EQ(stats.at("mean-batch-size"), 2);
	}
}

// Pushes the frame with two regions of interest, a person (id 0) and a car (id 1) of
// `car_width` x `car_height` from 100,64, and takes what comes out.
gst_test::BufferPtr push_person_and_car(GstHarness *h, const Frame &frame, GstClockTime pts,
					guint car_width, guint car_height)
{
	GstBuffer *in = frame.buffer(pts);
	add_roi(in, "person", 41, 31, 150, 101, 0);
	add_roi(in, "car", 100, 64, car_width, car_height, 1);
	return gst_test::BufferPtr(gst_harness_push_and_pull(h, in));
}

// `object-class` picks the regions by type, also while playing; a frame without regions (of
// those types) passes at once, with no detections, and is not counted as detected.
TEST(FrcnnDetect, RoiListObjectClassPicksTheRegions)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = roi_harness("object-class=\" car , bus\"");
	gst_harness_set_src_caps(h.get(), frame.caps());
	auto push = [&](GstClockTime pts) { return push_person_and_car(h.get(), frame, pts, 156, 128); };
	const ExpectedRegion person{ 41, 31, 150, 101, 0 }, car{ 100, 64, 156, 128, 1 };

	gst_test::BufferPtr out = push(0);
	ASSERT_TRUE(out);
	expect_detections_in_regions(out.get(), frame, 2, { car });

	g_object_set(h->element, "object-class", "Person", nullptr); /* as `classes`, in any case */
	out = push(GST_MSECOND);
	ASSERT_TRUE(out);
	expect_detections_in_regions(out.get(), frame, 2, { person });

	g_object_set(h->element, "object-class", nullptr, nullptr);
	out = push(2 * GST_MSECOND);
	ASSERT_TRUE(out);
	expect_detections_in_regions(out.get(), frame, 2, { person, car });

	g_object_set(h->element, "object-class", "bus", nullptr);
	out = push(3 * GST_MSECOND);
	ASSERT_TRUE(out);
	EXPECT_EQ(gst_test::read_rois(out.get()).size(), 2u);
	out.reset(gst_harness_push_and_pull(h.get(), frame.buffer(4 * GST_MSECOND)));
	ASSERT_TRUE(out);
	EXPECT_TRUE(gst_test::read_rois(out.get()).empty());

	const std::map<std::string, double> stats = stats_of(h->element);
	EXPECT_EQ(stats.at("frames"), 5);
	EXPECT_EQ(stats.at("frames-detected"), 3);
	EXPECT_EQ(stats.at("images-detected"), 4);
}

// `object-min-size` leaves out the regions narrower or lower than it in the frame (measured
// after cutting them to the frame), also while playing.
TEST(FrcnnDetect, RoiListObjectMinSizeLeavesSmallRegionsOut)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = roi_harness("object-min-size=110");
	gst_harness_set_src_caps(h.get(), frame.caps());
	/* A car of 500x500 is 156x128 in the frame. */
	auto push = [&](GstClockTime pts) { return push_person_and_car(h.get(), frame, pts, 500, 500); };
	const ExpectedRegion person{ 41, 31, 150, 101, 0 }, car{ 100, 64, 156, 128, 1 };

	gst_test::BufferPtr out = push(0);
	ASSERT_TRUE(out);
	expect_detections_in_regions(out.get(), frame, 2, { car });

	g_object_set(h->element, "object-min-size", 129u, nullptr);
	out = push(GST_MSECOND);
	ASSERT_TRUE(out);
	EXPECT_EQ(gst_test::read_rois(out.get()).size(), 2u);

	g_object_set(h->element, "object-min-size", 0u, nullptr);
	out = push(2 * GST_MSECOND);
	ASSERT_TRUE(out);
	expect_detections_in_regions(out.get(), frame, 2, { person, car });
}

// batch-size counts images: the regions of a frame run in batches of at most that many, and a
// batch holds the regions of several frames.
TEST(FrcnnDetect, RoiListBatchSizeCountsRegions)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	const std::vector<ExpectedRegion> regions{ { 41, 31, 150, 101, 0 }, { 100, 64, 156, 128, 1 },
						   { 0, 0, 128, 96, 2 } };
	struct Case {
		guint batch_size;
		int frames;
		int frames_per_batch; // whole frames whose regions fit in batch-size (at least one)
		double runs;	      // the model's forwards
	};
	/* Frames of 3 regions: at batch-size 2 each frame alone, in runs of 2 and 1; at 6 two
	 * frames in one run; at 4 and 8 the frames that fit whole (one; two), the next frame
	 * starting the next batch, so that no run holds the remnant of a frame (at 8, three frames
	 * ran as 8 and 1, the fourth waiting for the timeout: three runs). */
	for (const Case &c : { Case{ 2, 1, 1, 2 }, Case{ 6, 2, 2, 1 }, Case{ 4, 2, 1, 2 }, Case{ 8, 4, 2, 2 } }) {
		SCOPED_TRACE("batch-size " + std::to_string(c.batch_size));
		HarnessPtr h = roi_harness("batch-timeout=10000 batch-size=" +
				       std::to_string(c.batch_size));
		gst_harness_set_src_caps(h.get(), frame.caps());
		for (int f = 0; f < c.frames; f++) {
			GstBuffer *in = frame.buffer(f * GST_MSECOND);
			for (const ExpectedRegion &r : regions)
				add_roi(in, "thing", r.x, r.y, r.width, r.height, r.parent_id);
			ASSERT_EQ(gst_harness_push(h.get(), in), GST_FLOW_OK);
		}
		/* A full batch runs without waiting for the timeout, the last one at the EOS; a
		 * batch's images are those of its frames, padded together. */
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
		std::vector<ExpectedRegion> batch;
		for (int f = 0; f < c.frames_per_batch; f++)
			batch.insert(batch.end(), regions.begin(), regions.end());
		const std::vector<std::vector<frcnn::Detection>> lists =
			expected_in_regions(frame, batch, c.batch_size);
		for (int f = 0; f < c.frames; f++) {
			gst_test::BufferPtr out(gst_harness_pull(h.get()));
			ASSERT_TRUE(out);
			const int in_batch = f % c.frames_per_batch;
			expect_detections_in_regions(
				out.get(), frame, regions.size(), regions,
				{ lists.begin() + 3 * in_batch, lists.begin() + 3 * in_batch + 3 });
		}
		const std::map<std::string, double> stats = stats_of(h->element);
		EXPECT_EQ(stats.at("images-detected"), 3.0 * c.frames);
		EXPECT_EQ(stats.at("batches"), c.runs);
	}
}

// The detections of one frcnndetect are the regions of the next: each detection of the second
// lies in a detection of the first, which it names as its parent.
TEST(FrcnnDetect, RoiListRunsInTheDetectionsOfAnotherDetector)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_I420);
	HarnessPtr first = harness("max-detections=3");
	HarnessPtr second = roi_harness();
	gst_harness_set_src_caps(first.get(), frame.caps());
	gst_harness_set_src_caps(second.get(), frame.caps());
	gst_test::BufferPtr found(gst_harness_push_and_pull(first.get(), frame.buffer(0)));
	ASSERT_TRUE(found);
	const std::vector<gst_test::RoiDetection> parents = gst_test::read_rois(found.get());
	ASSERT_EQ(parents.size(), 3u);

	std::vector<ExpectedRegion> regions;
	for (const gst_test::RoiDetection &p : parents) {
		/* Cut to the frame, starting at even coordinates (I420). */
		const int x = p.x - p.x % 2, y = p.y - p.y % 2;
		const int right = std::min<int>(p.x + p.w, frame.width());
		const int bottom = std::min<int>(p.y + p.h, frame.height());
		regions.push_back({ x, y, right - x, bottom - y, p.id });
	}
	gst_test::BufferPtr out(gst_harness_push_and_pull(second.get(), found.release()));
	ASSERT_TRUE(out);
	expect_detections_in_regions(out.get(), frame, parents.size(), regions);
	const std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(out.get());
	for (std::size_t i = parents.size(); i < rois.size(); i++) {
		const gst_test::RoiDetection &parent = parents.at(rois[i].parent_id);
		EXPECT_GE(rois[i].x + 1, parent.x);
		EXPECT_LE(rois[i].x + rois[i].w, parent.x + parent.w);
	}
}

// Regions of interest of a producer that sets no ids all have GStreamer's first, 0: those that
// repeat an id get ids of their own, so that the detections in each name their own parent.
TEST(FrcnnDetect, RoiListGivesRegionsThatRepeatAnIdIdsOfTheirOwn)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = roi_harness("interval=2");
	gst_harness_set_src_caps(h.get(), frame.caps());
	auto push = [&](GstClockTime pts) {
		GstBuffer *in = frame.buffer(pts);
		add_roi(in, "car", 100, 64, 156, 128, 0);
		add_roi(in, "person", 0, 0, 128, 160, 0);
		return gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), in));
	};
	gst_test::BufferPtr out = push(0);
	ASSERT_TRUE(out);
	std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(out.get());
	ASSERT_GE(rois.size(), 2u);
	EXPECT_EQ(rois[0].id, 0);
	EXPECT_EQ(rois[1].id, 1) << "the second region of id 0";
	expect_detections_in_regions(out.get(), frame, 2, { { 100, 64, 156, 128, 0 }, { 0, 0, 128, 160, 1 } });
	/* A frame passed on without a run (interval) gives its regions the same ids. */
	out = push(GST_SECOND);
	ASSERT_TRUE(out);
	rois = gst_test::read_rois(out.get());
	ASSERT_EQ(rois.size(), 2u);
	EXPECT_EQ(rois[0].id, 0);
	EXPECT_EQ(rois[1].id, 1);
}

// A region set while playing is not used with roi-list, and a warning says so once.
TEST(FrcnnDetect, RoiListWarnsAboutARegionSetWhilePlaying)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = roi_harness();
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	g_object_set(h->element, "region", "0,0,64,64", nullptr);
	for (GstClockTime pts : { GstClockTime(0), GstClockTime(GST_MSECOND) }) {
		GstBuffer *in = frame.buffer(pts);
		add_roi(in, "car", 100, 64, 156, 128, 0);
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
		ASSERT_TRUE(out);
		expect_detections_in_regions(out.get(), frame, 1, { { 100, 64, 156, 128, 0 } });
	}
	const std::string warning = next_message_text(bus, GST_MESSAGE_WARNING);
	EXPECT_NE(warning.find("'region' is not used with inference-region=roi-list"), std::string::npos)
		<< warning;
	EXPECT_EQ(gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING), nullptr) << "warned twice";
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// inference-region is set in NULL and READY: changed while playing, it is warned about and the
// frames go on as the element started (here: the regions of interest, not the whole frame).
TEST(FrcnnDetect, InferenceRegionChangedWhilePlayingWaitsForTheNextStart)
{
	const Frame frame = make_frame(photo(256, 192, 5), GST_VIDEO_FORMAT_RGB);
	HarnessPtr h = roi_harness();
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_harness_set_src_caps(h.get(), frame.caps());
	for (GstClockTime pts : { GstClockTime(0), GstClockTime(GST_MSECOND) }) {
		GstBuffer *in = frame.buffer(pts);
		add_roi(in, "car", 100, 64, 156, 128, 0);
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), in));
		ASSERT_TRUE(out);
		expect_detections_in_regions(out.get(), frame, 1, { { 100, 64, 156, 128, 0 } });
		gst_util_set_object_arg(G_OBJECT(h->element), "inference-region", "full-frame");
	}
	const std::string warning = next_message_text(bus, GST_MESSAGE_WARNING);
	EXPECT_NE(warning.find("'inference-region' changed while playing takes effect at the next start"),
		  std::string::npos) << warning;
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// What class-thresholds "1=0.32,2=0.26" with threshold 0.3 must give: each class's detections
// at its own threshold, as the library gives them, best first, then the best `max_detections`.
// (The test model's scores lie between 0.25 and 0.55.)
std::vector<frcnn::Detection> expected_with_class_thresholds(const Frame &frame, std::size_t max_detections)
{
	std::vector<frcnn::Detection> kept;
	for (const auto &[label, threshold] : std::map<int64_t, double>{ { 1, 0.32 }, { 2, 0.26 }, { 3, 0.3 } }) {
		/* Every detection of the class: no other class's may take its place among the best. */
		const std::vector<frcnn::Detection> all =
			reference(threshold, kMinSize, frcnn::CpuConvolutions::Auto, 100000).detect({ view_of(frame) }).at(0);
		for (const frcnn::Detection &det : all)
			if (det.label == label)
				kept.push_back(det);
	}
	std::stable_sort(kept.begin(), kept.end(),
			 [](const frcnn::Detection &a, const frcnn::Detection &b) { return a.score > b.score; });
	if (kept.size() > max_detections)
		kept.resize(max_detections);
	return kept;
}

TEST(FrcnnDetect, ClassThresholdsKeepEachClassAboveItsOwn)
{
	const std::vector<Frame> frames = distinct_frames(3);
	std::vector<std::vector<frcnn::Detection>> expected, best_three;
	for (const Frame &frame : frames) {
		expected.push_back(expected_with_class_thresholds(frame, 100));
		best_three.push_back(expected_with_class_thresholds(frame, 3));
		ASSERT_GT(expected.back().size(), 3u);
	}
	/* The thresholds change the result both ways: class 1 loses detections, class 2 gains. */
	std::size_t class1_plain = 0, class1 = 0, class2_plain = 0, class2 = 0;
	for (std::size_t i = 0; i < frames.size(); i++) {
		const std::vector<frcnn::Detection> plain = reference(0.3).detect({ view_of(frames[i]) }).at(0);
		for (const frcnn::Detection &det : plain) {
			class1_plain += det.label == 1;
			class2_plain += det.label == 2;
		}
		for (const frcnn::Detection &det : expected[i]) {
			class1 += det.label == 1;
			class2 += det.label == 2;
		}
	}
	ASSERT_LT(class1, class1_plain);
	ASSERT_GT(class2, class2_plain);

	HarnessPtr h = harness("threshold=0.3 class-thresholds=\"1=0.32, 2=0.26\"");
	expect_detections_of(h.get(), frames, expected);
	HarnessPtr three = harness("threshold=0.3 class-thresholds=1=0.32,2=0.26 max-detections=3 batch-size=3");
	expect_detections_of(three.get(), frames, best_three);
}

// A playing element (of the default properties) whose messages go to a bus of the test's own,
// fed one frame at a time.
struct WatchedElement {
	HarnessPtr h = harness();
	GstBus *bus = gst_bus_new();
	GstClockTime pts = 0;

	explicit WatchedElement(const Frame &first)
	{
		gst_element_set_bus(h->element, bus);
		gst_harness_set_src_caps(h.get(), first.caps());
	}
	~WatchedElement()
	{
		gst_element_set_bus(h->element, nullptr);
		gst_object_unref(bus);
	}

	gst_test::BufferPtr push(const Frame &frame)
	{
		return gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), frame.buffer(pts++ * GST_MSECOND)));
	}

	// The frame comes out with the detections of the element's first weights (tiny4).
	void expect_first_model(const Frame &frame)
	{
		gst_test::BufferPtr out = push(frame);
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
	}
};

// New weights set while playing are loaded beside the running model, which goes on until they
// are ready; weights that cannot be loaded leave it running, with a warning; model settings that
// cannot change while playing wait for the next start, with a warning.
TEST(FrcnnDetect, WeightsChangeWhilePlaying)
{
	const std::vector<Frame> frames = distinct_frames(3);
	const std::vector<std::string> coco = frcnn::coco_category_names();

	WatchedElement element(frames[0]);
	GstHarness *h = element.h.get();
	GstBus *bus = element.bus;
	auto expect_old_model = [&](const Frame &frame) { element.expect_first_model(frame); };
	auto expect_new_model = [&](const Frame &frame) {
		gst_test::BufferPtr out = element.push(frame);
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(),
				   coco_reference().detect({ view_of(frame) }).at(0), coco);
	};
	expect_old_model(frames[0]);

	g_object_set(h->element, "weights", gst_test::weights91().c_str(), nullptr);
	/* This batch starts the loading and runs on the old model. */
	expect_old_model(frames[1]);
	EXPECT_NE(next_message_text(bus, GST_MESSAGE_INFO).find("Loaded the weights"), std::string::npos);
	expect_new_model(frames[2]);
	expect_new_model(frames[0]);

	g_object_set(h->element, "weights", "/nonexistent/weights.pth", nullptr);
	expect_new_model(frames[1]);
	EXPECT_NE(next_message_text(bus, GST_MESSAGE_WARNING).find("Could not get the weights '/nonexistent/weights.pth'"),
		  std::string::npos);
	expect_new_model(frames[2]);

	g_object_set(h->element, "cpu-convolutions", frcnn::CpuConvolutions::LibTorch, nullptr);
	expect_new_model(frames[0]);
	EXPECT_NE(next_message_text(bus, GST_MESSAGE_WARNING)
			  .find("The model settings wait for the next start: 'cpu-convolutions' changed while "
				"playing, which take effect at the next start; 'weights', 'model', 'num-classes' "
				"and 'labels' changed since wait for it too."),
		  std::string::npos);
	EXPECT_EQ(gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR), nullptr);

	/* A model shared under a model-instance-id keeps its weights while playing. */
	{
		HarnessPtr shared = harness("model-instance-id=reload");
		GstBus *shared_bus = gst_bus_new();
		gst_element_set_bus(shared->element, shared_bus);
		gst_harness_set_src_caps(shared.get(), frames[0].caps());
		g_object_set(shared->element, "weights", gst_test::weights91().c_str(), nullptr);
		gst_test::BufferPtr out(gst_harness_push_and_pull(shared.get(), frames[0].buffer(0)));
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frames[0].width(), frames[0].height(), expected_for(frames[0]));
		EXPECT_NE(next_message_text(shared_bus, GST_MESSAGE_WARNING)
				  .find("The model settings wait for the next start: the model is shared under "
					"model-instance-id 'reload', whose model settings change only when its "
					"elements start again."),
			  std::string::npos);
		gst_element_set_bus(shared->element, nullptr);
		gst_object_unref(shared_bus);
	}

	/* Stopping while weights load waits for them, and they are the model of the next start. */
	g_object_set(h->element, "cpu-convolutions", frcnn::CpuConvolutions::Auto, "weights",
		     gst_test::weights4().c_str(), nullptr);
	expect_new_model(frames[1]);
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
	gst_harness_set_src_caps(h, frames[0].caps());
	expect_old_model(frames[2]);
}

// `labels` set while playing swaps the class names in as new weights would (the model is set up
// again in the background, and a message tells when).
TEST(FrcnnDetect, LabelsChangeWhilePlaying)
{
	const std::string path = gst_test::out_dir() + "/animals-while-playing.txt";
	std::ofstream(path) << "cat\ndog\nbird\n";
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_I420);
	const std::vector<frcnn::Detection> all = expected_for(frame);
	ASSERT_FALSE(all.empty());

	WatchedElement element(frame);
	/* The message is posted from the thread that set the model up: this handler runs there,
	 * tells the test at once and then holds that thread up until the frame pushed at the
	 * message has come out, which so finds the new model only if it was handed over before
	 * the message. */
	struct Loaded {
		std::mutex mutex;
		std::condition_variable changed;
		bool seen = false, released = false;
	} loaded;
	gst_bus_set_sync_handler(
		element.bus,
		[](GstBus *, GstMessage *message, gpointer data) {
			if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_INFO)
				return GST_BUS_PASS;
			auto *loaded = static_cast<Loaded *>(data);
			std::unique_lock<std::mutex> lock(loaded->mutex);
			loaded->seen = true;
			loaded->changed.notify_all();
			loaded->changed.wait_for(lock, std::chrono::seconds(60), [loaded] { return loaded->released; });
			return GST_BUS_PASS;
		},
		&loaded, nullptr);
	element.expect_first_model(frame);
	g_object_set(element.h->element, "labels", path.c_str(), nullptr);
	element.expect_first_model(frame); // starts the set-up
	{
		std::unique_lock<std::mutex> lock(loaded.mutex);
		ASSERT_TRUE(loaded.changed.wait_for(lock, std::chrono::seconds(60), [&] { return loaded.seen; }));
	}
	gst_test::BufferPtr out = element.push(frame);
	{
		std::lock_guard<std::mutex> lock(loaded.mutex);
		loaded.released = true;
	}
	loaded.changed.notify_all();
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), all,
			   { "__background__", "cat", "dog", "bird" });
}

// Pushes frames to an element until its new weights or labels are loaded (the info message),
// then one more: that frame's output. Other messages posted meanwhile go to `warnings`.
gst_test::BufferPtr push_until_loaded(WatchedElement &element, const Frame &frame, std::vector<std::string> &warnings)
{
	for (int attempt = 0; attempt < 600; attempt++) {
		element.push(frame);
		for (GstMessage *message; (message = gst_bus_pop_filtered(element.bus, static_cast<GstMessageType>(
								 GST_MESSAGE_INFO | GST_MESSAGE_WARNING)));) {
			GError *error = nullptr;
			const bool info = GST_MESSAGE_TYPE(message) == GST_MESSAGE_INFO;
			if (info)
				gst_message_parse_info(message, &error, nullptr);
			else
				gst_message_parse_warning(message, &error, nullptr);
			const std::string text = error ? error->message : "";
			g_clear_error(&error);
			gst_message_unref(message);
			if (!info)
				warnings.push_back(text);
			else if (text.find("Loaded the weights") != std::string::npos)
				return element.push(frame);
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	ADD_FAILURE() << "the new weights or labels were never loaded";
	return {};
}

// `classes` of the names of labels set with it while playing wait for those labels, without a
// warning; a `classes` that fits no labels (warned about when set) does not keep new weights of
// the labels in use out: they load, with the previous filter. Weights of other labels do not load
// then (the previous filter's class ids would name other classes).
TEST(FrcnnDetect, ClassesWithLabelsOrWeightsChangedWhilePlaying)
{
	const std::string path = gst_test::out_dir() + "/animals-with-classes.txt";
	std::ofstream(path) << "cat\ndog\nbird\n";
	const Frame frame = make_frame(photo(320, 240), GST_VIDEO_FORMAT_I420);
	/* Filtered to dogs: regions of label 2, "dog", only (and some). */
	auto expect_dogs_only = [](GstBuffer *out) {
		const std::vector<gst_test::RoiDetection> rois = gst_test::read_rois(out);
		EXPECT_FALSE(rois.empty());
		for (const gst_test::RoiDetection &roi : rois) {
			EXPECT_EQ(roi.label_id, 2);
			EXPECT_EQ(roi.label, "dog");
		}
	};

	WatchedElement element(frame);
	element.expect_first_model(frame);
	g_object_set(element.h->element, "labels", path.c_str(), "classes", "dog", nullptr);
	std::vector<std::string> warnings;
	gst_test::BufferPtr out = push_until_loaded(element, frame, warnings);
	ASSERT_TRUE(out);
	EXPECT_EQ(warnings, std::vector<std::string>{}) << "a class of the labels coming was refused";
	expect_dogs_only(out.get());

	g_object_set(element.h->element, "classes", "unicorn", nullptr);
	out = element.push(frame);
	EXPECT_NE(next_message_text(element.bus, GST_MESSAGE_WARNING)
			  .find("Invalid 'classes', keeping the previous filter: unknown class 'unicorn'"),
		  std::string::npos);
	g_object_set(element.h->element, "weights", gst_test::weights4().c_str(), nullptr);
	warnings.clear();
	out = push_until_loaded(element, frame, warnings);
	ASSERT_TRUE(out);
	ASSERT_EQ(warnings.size(), 1u);
	EXPECT_NE(warnings[0].find("Invalid 'classes' for the weights '" + gst_test::weights4() +
				   "', keeping the previous filter: unknown class 'unicorn'"),
		  std::string::npos)
		<< warnings[0];
	expect_dogs_only(out.get());

	/* Weights of other labels: the filter's class ids would name other classes; they do not
	 * load, the element goes on as it was. */
	g_object_set(element.h->element, "labels", "", "weights", gst_test::weights91().c_str(), nullptr);
	element.push(frame); /* starts the set-up */
	const std::string refused = next_message_text(element.bus, GST_MESSAGE_WARNING);
	EXPECT_NE(refused.find("Invalid 'classes': unknown class 'unicorn'"), std::string::npos) << refused;
	EXPECT_NE(refused.find("the weights '" + gst_test::weights91() + "' are not loaded: their labels are not "
			       "those in use"),
		  std::string::npos)
		<< refused;
	out = element.push(frame);
	ASSERT_TRUE(out);
	expect_dogs_only(out.get());
}

// An HTTP server on 127.0.0.1. By default it answers every request with the start of a large file
// and then sends nothing more until it is released: a download that is in progress for as long as
// a test needs. Released (or destroyed), it closes every connection, which ends their downloads
// in an error at once. Given a file's bytes, it answers every request with the whole file.
class LoopbackHttpServer {
public:
	explicit LoopbackHttpServer(std::optional<std::string> file = std::nullopt)
		: file_(std::move(file)), listener_(frcnn::test::bind_loopback(&port_))
	{
		if (listen(listener_, 8) != 0 || pipe2(wake_, O_CLOEXEC) != 0)
			throw std::runtime_error(std::string("cannot start the HTTP server: ") + strerror(errno));
		thread_ = std::thread([this] { serve(); });
	}

	~LoopbackHttpServer()
	{
		release();
		thread_.join();
		close(listener_);
		close(wake_[0]);
		close(wake_[1]);
	}

	std::string url(const std::string &name) const
	{
		return "http://127.0.0.1:" + std::to_string(port_) + "/" + name;
	}

	// Whether `count` requests have had their first bytes within `timeout`.
	bool wait_for_requests(int count, std::chrono::seconds timeout)
	{
		std::unique_lock<std::mutex> lock(mutex_);
		return answered_.wait_for(lock, timeout, [&] { return requests_ >= count; });
	}

	void release()
	{
		const char byte = 0;
		if (!released_.exchange(true)) {
			EXPECT_EQ(write(wake_[1], &byte, 1), 1);
		}
	}

private:
	void serve()
	{
		std::vector<int> connections;
		for (;;) {
			struct pollfd fds[2] = { { listener_, POLLIN, 0 }, { wake_[0], POLLIN, 0 } };
			if (poll(fds, 2, -1) < 0 && errno != EINTR)
				break;
			if (fds[1].revents)
				break;
			if (!(fds[0].revents & POLLIN))
				continue;
			const int connection = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
			if (connection < 0)
				continue;
			connections.push_back(connection);
			/* The request's headers, then the answer's headers and first bytes. */
			std::string request;
			char buffer[1024];
			struct pollfd readable = { connection, POLLIN, 0 };
			while (request.find("\r\n\r\n") == std::string::npos && poll(&readable, 1, 10000) > 0) {
				const ssize_t n = read(connection, buffer, sizeof(buffer));
				if (n <= 0)
					break;
				request.append(buffer, n);
			}
			const std::string body = file_ ? *file_ : std::string(4096, 'x');
			const std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
						   "Content-Length: " +
						   std::to_string(file_ ? file_->size() : 1000000000) +
						   "\r\nConnection: close\r\n\r\n" + body;
			for (size_t written = 0; written < answer.size();) {
				const ssize_t n = write(connection, answer.data() + written, answer.size() - written);
				if (n <= 0) {
					ADD_FAILURE() << "the HTTP server could not answer: " << strerror(errno);
					break;
				}
				written += static_cast<size_t>(n);
			}
			std::lock_guard<std::mutex> lock(mutex_);
			requests_++;
			answered_.notify_all();
		}
		for (int connection : connections)
			close(connection);
	}

	std::optional<std::string> file_;
	int port_ = 0;
	int listener_ = -1;
	int wake_[2] = { -1, -1 };
	std::atomic<bool> released_{ false };
	std::mutex mutex_;
	std::condition_variable answered_;
	int requests_ = 0;
	std::thread thread_;
};

// Sets an environment variable for the life of the object, then gives it its value back.
class ScopedEnv {
public:
	ScopedEnv(const char *name, const std::string &value) : name_(name)
	{
		const char *old = g_getenv(name);
		if (old)
			old_ = old;
		g_setenv(name, value.c_str(), TRUE);
	}
	~ScopedEnv()
	{
		if (old_)
			g_setenv(name_, old_->c_str(), TRUE);
		else
			g_unsetenv(name_);
	}

private:
	const char *name_;
	std::optional<std::string> old_;
};

// The names in a folder (none if it does not exist).
std::vector<std::string> folder_entries(const std::string &path)
{
	std::vector<std::string> names;
	if (GDir *dir = g_dir_open(path.c_str(), 0, nullptr)) {
		while (const char *name = g_dir_read_name(dir))
			names.push_back(name);
		g_dir_close(dir);
	}
	return names;
}

// A stop while new weights download gives the download up at once (it could take minutes), keeps
// nothing of it in the cache and posts no warning; the next start runs on what `weights` says.
TEST(FrcnnDetect, AStopGivesUpAWeightsDownloadWhilePlaying)
{
	LoopbackHttpServer server;
	const std::string cache = gst_test::out_dir() + "/stalled-download-cache";
	ScopedEnv torch_home("TORCH_HOME", cache);
	const std::vector<Frame> frames = distinct_frames(3);

	WatchedElement element(frames[0]);
	GstHarness *h = element.h.get();
	element.expect_first_model(frames[0]);
	g_object_set(h->element, "weights", server.url("stalled.pth").c_str(), nullptr);
	element.expect_first_model(frames[1]); // starts the download
	ASSERT_TRUE(server.wait_for_requests(1, std::chrono::seconds(60)));
	ASSERT_FALSE(folder_entries(cache + "/hub/checkpoints").empty()) << "the download is under way";

	auto stopped = std::async(std::launch::async, [&] {
		return gst_element_set_state(h->element, GST_STATE_READY);
	});
	/* Without the cancellation the stop waits until libcurl gives up on the stalled server (a
	 * minute without data); with it, the download's next progress call (within a second) ends it. */
	const bool in_time = stopped.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
	server.release();
	EXPECT_TRUE(in_time) << "the stop waited for the download";
	EXPECT_EQ(stopped.get(), GST_STATE_CHANGE_SUCCESS);
	EXPECT_TRUE(folder_entries(cache + "/hub/checkpoints").empty()) << "nothing of the download is kept";
	GstMessage *problem =
		gst_bus_pop_filtered(element.bus, static_cast<GstMessageType>(GST_MESSAGE_WARNING | GST_MESSAGE_ERROR));
	EXPECT_EQ(problem, nullptr);
	if (problem)
		gst_message_unref(problem);

	g_object_set(h->element, "weights", gst_test::weights4().c_str(), nullptr);
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
	gst_harness_set_src_caps(h, frames[0].caps());
	element.expect_first_model(frames[2]);
}

// The messages on a bus that tell of weights: the steps of their downloads (progress messages of
// code "download", as "<type> <text>") and the errors and warnings ("error: <text>"), in order.
struct WeightsMessages {
	std::vector<std::string> download;
	std::vector<std::string> problems;
	std::vector<std::string> infos; // the info messages' texts
};

// A progress message of code "download" as "<type> <text>"; empty for any other message.
std::string download_step(GstMessage *message)
{
	if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_PROGRESS)
		return "";
	GstProgressType type;
	gchar *code = nullptr, *text = nullptr;
	gst_message_parse_progress(message, &type, &code, &text);
	std::string step;
	if (g_strcmp0(code, "download") == 0)
		step = std::string(type == GST_PROGRESS_TYPE_START	  ? "start"
				   : type == GST_PROGRESS_TYPE_CONTINUE ? "continue"
				   : type == GST_PROGRESS_TYPE_COMPLETE ? "complete"
				   : type == GST_PROGRESS_TYPE_CANCELED ? "canceled"
									 : "error") +
		       " " + (text ? text : "");
	g_free(code);
	g_free(text);
	return step;
}

WeightsMessages take_weights_messages(GstBus *bus)
{
	WeightsMessages taken;
	while (GstMessage *message = gst_bus_pop(bus)) {
		if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS) {
			const std::string step = download_step(message);
			if (!step.empty())
				taken.download.push_back(step);
		} else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_INFO) {
			GError *error = nullptr;
			gst_message_parse_info(message, &error, nullptr);
			taken.infos.push_back(error->message);
			g_error_free(error);
		} else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR ||
			   GST_MESSAGE_TYPE(message) == GST_MESSAGE_WARNING) {
			GError *error = nullptr;
			if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR)
				gst_message_parse_error(message, &error, nullptr);
			else
				gst_message_parse_warning(message, &error, nullptr);
			taken.problems.push_back(std::string(GST_MESSAGE_TYPE_NAME(message)) + ": " + error->message);
			g_error_free(error);
		}
		gst_message_unref(message);
	}
	return taken;
}

// Whether `condition` holds within `timeout`, checked every 10 ms.
bool eventually(const std::function<bool()> &condition, std::chrono::seconds timeout)
{
	const auto deadline = Clock::now() + timeout;
	while (!condition()) {
		if (Clock::now() > deadline)
			return false;
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	return true;
}

// A frcnndetect of `properties` in a harness, its messages on a bus of the test's own, started on
// a thread of its own. A start that does not return within 20 seconds releases `server` (which
// ends its downloads) and is not `in_time`; one that fails leaves no harness.
struct StartedElement {
	GstBus *bus = gst_bus_new();
	HarnessPtr h;
	bool in_time = true;

	explicit StartedElement(const std::string &properties, LoopbackHttpServer *server = nullptr)
	{
		GstElement *element = make_detect(properties);
		gst_object_ref_sink(element);
		gst_element_set_bus(element, bus);
		/* Started before the harness, which would abort the test on a failed start. */
		auto created = std::async(std::launch::async, [element]() -> GstHarness * {
			if (gst_element_set_state(element, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
				gst_element_set_state(element, GST_STATE_NULL);
				return nullptr;
			}
			return gst_harness_new_with_element(element, "sink", "src");
		});
		in_time = created.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
		if (!in_time && server)
			server->release();
		h.reset(created.get());
		gst_object_unref(element);
	}

	// Whether the element started in time; says why not.
	::testing::AssertionResult started() const
	{
		if (!in_time)
			return ::testing::AssertionFailure() << "the start took more than 20 seconds";
		if (!h)
			return ::testing::AssertionFailure() << "the start failed: " << describe_problems();
		return ::testing::AssertionSuccess();
	}

	std::string describe_problems() const;
	~StartedElement()
	{
		h.reset();
		gst_object_unref(bus);
	}
};

std::string StartedElement::describe_problems() const
{
	std::string text;
	for (const std::string &problem : take_weights_messages(bus).problems)
		text += problem + "\n";
	return text;
}

// Weights that download do not hold the start up (it could wait for minutes, and nothing could
// stop it): the element starts at once, says on the bus that the weights download, and its first
// frame waits for them. A stop meanwhile gives the download up at once, keeps nothing of it and
// posts no error.
TEST(FrcnnDetect, AStartDoesNotWaitForItsWeightsDownload)
{
	LoopbackHttpServer server;
	const std::string cache = gst_test::out_dir() + "/start-download-cache";
	std::filesystem::remove_all(cache);
	ScopedEnv torch_home("TORCH_HOME", cache);
	const Frame frame = distinct_frames(1)[0];

	const std::string url = server.url("start.pth");
	StartedElement element("weights=" + url, &server);
	GstHarness *h = element.h.get();
	ASSERT_TRUE(element.started()) << "the start waited for the download";
	ASSERT_TRUE(server.wait_for_requests(1, std::chrono::seconds(60)));
	GstState state = GST_STATE_NULL;
	EXPECT_EQ(gst_element_get_state(h->element, &state, nullptr, 0), GST_STATE_CHANGE_SUCCESS);
	EXPECT_EQ(state, GST_STATE_PLAYING) << "the element started while its weights download";
	const std::vector<std::string> steps = take_weights_messages(element.bus).download;
	ASSERT_FALSE(steps.empty());
	EXPECT_EQ(steps[0].rfind("start Downloading the weights '" + url + "' into " + cache, 0), 0u) << steps[0];

	gst_harness_set_src_caps(h, frame.caps());
	auto pushed = std::async(std::launch::async, [&] { return gst_harness_push(h, frame.buffer(0)); });
	EXPECT_EQ(pushed.wait_for(std::chrono::seconds(1)), std::future_status::timeout)
		<< "the frame waits for the weights";

	auto stopped = std::async(std::launch::async, [&] { return gst_element_set_state(h->element, GST_STATE_NULL); });
	/* The download's next progress call (within a second) ends it; without the cancellation the
	 * stop waits until libcurl gives up on the stalled server (a minute without data). */
	const bool in_time = stopped.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
	server.release();
	EXPECT_TRUE(in_time) << "the stop waited for the download";
	EXPECT_EQ(stopped.get(), GST_STATE_CHANGE_SUCCESS);
	EXPECT_EQ(pushed.get(), GST_FLOW_FLUSHING);
	EXPECT_TRUE(folder_entries(cache + "/hub/checkpoints").empty()) << "nothing of the download is kept";
	const WeightsMessages after = take_weights_messages(element.bus);
	EXPECT_EQ(after.problems, std::vector<std::string>{});
	ASSERT_FALSE(after.download.empty());
	EXPECT_EQ(after.download.back().rfind("canceled ", 0), 0u) << after.download.back();
}

// A start whose weights would download checks its labels and class names first: a name no model
// could have fails the state change itself, and nothing is downloaded.
TEST(FrcnnDetect, AStartFailsOnAnUnknownClassBeforeItsWeightsDownload)
{
	LoopbackHttpServer server;
	const std::string cache = gst_test::out_dir() + "/unknown-class-cache";
	std::filesystem::remove_all(cache);
	ScopedEnv torch_home("TORCH_HOME", cache);

	for (const std::string &filter : { std::string("classes=\"person, unicorn\""),
					   std::string("class-thresholds=\"person=0.5, unicorn=0.5\"") }) {
		GError *error = nullptr;
		const std::string message =
			state_change_error("model=tiny " + filter + " weights=" + server.url("unknown-class.pth"), &error);
		ASSERT_NE(error, nullptr) << filter;
		EXPECT_NE(message.find("unknown class 'unicorn': use a name from the labels or a class id"), std::string::npos)
			<< message;
		g_error_free(error);
	}
	EXPECT_FALSE(server.wait_for_requests(1, std::chrono::seconds(2))) << "the weights were downloaded";
}

// The `coco` preset's weights as a loopback server would serve them (by their published file
// name, which tells the preset; nothing is served), an empty download cache, and a labels file of
// three names. `name` names the test's files.
struct PresetDownload {
	explicit PresetDownload(const std::string &name)
		: torch_home("TORCH_HOME", emptied(gst_test::out_dir() + "/" + name + "-cache")),
		  weights(server.url(file_name_of(frcnn::find_weights_preset("coco").value().url))),
		  labels(gst_test::out_dir() + "/" + name + ".labels")
	{
		std::ofstream(labels) << "one\ntwo\nthree\n";
	}
	static std::string emptied(const std::string &folder)
	{
		std::filesystem::remove_all(folder);
		return folder;
	}
	static std::string file_name_of(const std::string &url) { return url.substr(url.rfind('/') + 1); }

	LoopbackHttpServer server;
	ScopedEnv torch_home;
	const std::string weights;
	const std::string labels;
};

// A start whose weights are a preset's to download knows their class count (the published
// file's) before the download: the labels file's count and the class ids are checked first too.
TEST(FrcnnDetect, AStartChecksAPresetsClassCountBeforeItsWeightsDownload)
{
	PresetDownload download("preset-class-count");
	const std::string &weights = download.weights, &labels = download.labels;
	const std::pair<std::string, std::string> cases[] = {
		{ "labels=\"" + labels + "\"",
		  "Could not use the labels: labels file '" + labels + "' has 3 names but the model has 91 classes" },
		{ "classes=\"person, 91\"",
		  "Invalid 'classes': class id 91 is out of range: the model has 91 classes (0..90)." },
		{ "class-thresholds=\"95=0.5\"",
		  "Invalid 'class-thresholds': class id 95 is out of range: the model has 91 classes (0..90)." },
	};
	for (const auto &[property, expected] : cases) {
		GError *error = nullptr;
		const std::string message = state_change_error(property + " weights=" + weights, &error);
		ASSERT_NE(error, nullptr) << property;
		EXPECT_NE(message.find(expected), std::string::npos) << message;
		g_error_free(error);
	}
	EXPECT_FALSE(download.server.wait_for_requests(1, std::chrono::seconds(2))) << "the weights were downloaded";
}

// New weights set while playing that are a preset's to download, with labels that fit the
// running model but not the preset's class count: they are refused before the download (the
// labels would refuse them after it), and the batches go on with the model they have.
TEST(FrcnnDetect, WeightsWhilePlayingOfLabelsThatCannotFitAreRefusedBeforeTheirDownload)
{
	PresetDownload download("preset-labels-while-playing"); // three names: tiny4's classes but the background
	const std::string &labels = download.labels;
	const std::vector<Frame> frames = distinct_frames(2);

	WatchedElement element(frames[0]);
	GstHarness *h = element.h.get();
	element.expect_first_model(frames[0]);
	g_object_set(h->element, "model", frcnn::find_weights_preset("coco")->arch.c_str(), "weights",
		     download.weights.c_str(), "labels", labels.c_str(), nullptr);
	element.expect_first_model(frames[1]); // sets the weights up
	const std::string warning = next_message_text(element.bus, GST_MESSAGE_WARNING);
	EXPECT_NE(warning.find("Could not use the labels: labels file '" + labels +
			       "' has 3 names but the model has 91 classes"),
		  std::string::npos)
		<< warning;
	EXPECT_FALSE(download.server.wait_for_requests(1, std::chrono::seconds(2))) << "the weights were downloaded";
	element.expect_first_model(frames[0]);
	EXPECT_EQ(gst_bus_pop_filtered(element.bus, GST_MESSAGE_ERROR), nullptr);
}

// New weights set while playing with a labels file that cannot be read are refused before they
// load: the warning is the labels' (the damaged weights would have been the load's), and the
// batches go on with the model they have.
TEST(FrcnnDetect, WeightsWhilePlayingWithLabelsThatCannotBeReadAreRefusedBeforeTheyLoad)
{
	const std::vector<Frame> frames = distinct_frames(2);
	WatchedElement element(frames[0]);
	GstHarness *h = element.h.get();
	element.expect_first_model(frames[0]);
	g_object_set(h->element, "weights", corrupt_weights().c_str(), "labels", "/nonexistent/labels.txt", nullptr);
	element.expect_first_model(frames[1]); // sets the weights up
	const std::string warning = next_message_text(element.bus, GST_MESSAGE_WARNING);
	EXPECT_EQ(warning.rfind("Could not use the labels: cannot open labels file '/nonexistent/labels.txt'", 0), 0u)
		<< warning;
	element.expect_first_model(frames[0]);
	EXPECT_EQ(gst_bus_pop_filtered(element.bus, GST_MESSAGE_WARNING), nullptr);
	EXPECT_EQ(gst_bus_pop_filtered(element.bus, GST_MESSAGE_ERROR), nullptr);
}

// The first frame of a start whose weights download runs on them once they have come, and the
// download's steps go on the bus.
TEST(FrcnnDetect, AStartsDownloadedWeightsRunTheFirstFrame)
{
	LoopbackHttpServer server(frcnn::test::read_file(gst_test::weights4()));
	const std::string cache = gst_test::out_dir() + "/start-downloaded-cache";
	std::filesystem::remove_all(cache);
	ScopedEnv torch_home("TORCH_HOME", cache);
	const Frame frame = distinct_frames(1)[0];

	const std::string url = server.url("tiny4-served.pth");
	StartedElement element("weights=" + url, &server);
	GstHarness *h = element.h.get();
	ASSERT_TRUE(element.started());
	gst_harness_set_src_caps(h, frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(h, frame.buffer(0)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
	EXPECT_EQ(folder_entries(cache + "/hub/checkpoints"), std::vector<std::string>{ "tiny4-served.pth" });
	const WeightsMessages messages = take_weights_messages(element.bus);
	EXPECT_EQ(messages.problems, std::vector<std::string>{});
	const std::vector<std::string> &steps = messages.download;
	ASSERT_GE(steps.size(), 2u);
	EXPECT_EQ(steps.front().rfind("start ", 0), 0u) << steps.front();
	EXPECT_EQ(steps.back(), "complete Downloaded the weights '" + url + "'");
	for (size_t i = 1; i + 1 < steps.size(); ++i)
		EXPECT_EQ(steps[i].rfind("continue Downloading the weights '" + url + "': ", 0), 0u) << steps[i];

	/* The next start takes the file from the cache, in the state change. */
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
	server.release();
	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
	gst_harness_set_src_caps(h, frame.caps());
	out.reset(gst_harness_push_and_pull(h, frame.buffer(0)));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
	EXPECT_TRUE(take_weights_messages(element.bus).download.empty());
}

// A preset's file in the download cache that is another model's (copied in by hand): the start
// fails saying the file is the preset's download, to delete; with a model of the user's choosing
// the misfit is that choice's.
TEST(FrcnnDetect, AnotherModelsFileUnderAPresetsNameSaysToDeleteIt)
{
	const std::string cache = gst_test::out_dir() + "/wrong-preset-file-cache";
	std::filesystem::remove_all(cache);
	ScopedEnv torch_home("TORCH_HOME", cache);
	const frcnn::WeightsPreset preset = *frcnn::find_weights_preset("coco-mobilenet-320");
	std::filesystem::create_directories(cache + "/hub/checkpoints");
	std::filesystem::copy_file(gst_test::weights4(),
				   cache + "/hub/checkpoints/" + preset.url.substr(preset.url.rfind('/') + 1));

	/* The test's elements name their model: these are made plain. */
	const auto start_problems = [](const char *num_classes) {
		GstElement *element = gst_element_factory_make("frcnndetect", nullptr);
		gst_object_ref_sink(element);
		GstBus *bus = gst_bus_new();
		gst_element_set_bus(element, bus);
		g_object_set(element, "weights", "coco-mobilenet-320", nullptr);
		if (num_classes)
			gst_util_set_object_arg(G_OBJECT(element), "num-classes", num_classes);
		EXPECT_EQ(gst_element_set_state(element, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE)
			<< "another model's file was run as the preset";
		gst_element_set_state(element, GST_STATE_NULL);
		std::vector<std::string> problems = take_weights_messages(bus).problems;
		gst_element_set_bus(element, nullptr);
		gst_object_unref(bus);
		gst_object_unref(element);
		return problems;
	};
	std::vector<std::string> problems = start_problems(nullptr);
	ASSERT_EQ(problems.size(), 1u);
	EXPECT_NE(problems[0].find("The file is the download of 'coco-mobilenet-320' kept in the cache (" + cache +
				   "/hub/checkpoints): delete it to download it again."),
		  std::string::npos)
		<< problems[0];

	problems = start_problems("7");
	ASSERT_EQ(problems.size(), 1u);
	EXPECT_EQ(problems[0].find("download"), std::string::npos) << problems[0];
	EXPECT_NE(problems[0].find("Set 'model' and 'num-classes' to match the weights"), std::string::npos)
		<< problems[0];
}

// A download at start that fails posts an error that says what to do, and the first frame fails;
// after a flush the next frame fails too, with an error that says the element has no model.
TEST(FrcnnDetect, AStartsFailedDownloadFailsTheFirstFrame)
{
	int port = 0;
	const int refusing = frcnn::test::bind_loopback(&port); /* bound, not listening */
	ASSERT_GE(refusing, 0);
	const std::string cache = gst_test::out_dir() + "/start-failed-download-cache";
	ScopedEnv torch_home("TORCH_HOME", cache);
	const Frame frame = distinct_frames(1)[0];

	const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/refused.pth";
	StartedElement element("weights=" + url);
	GstHarness *h = element.h.get();
	ASSERT_TRUE(element.started());
	gst_harness_set_src_caps(h, frame.caps());
	EXPECT_EQ(gst_harness_push(h, frame.buffer(0)), GST_FLOW_ERROR);
	const std::vector<std::string> problems = take_weights_messages(element.bus).problems;
	ASSERT_EQ(problems.size(), 1u);
	const std::string &error = problems[0];
	EXPECT_EQ(error.rfind("error: Could not get the weights '" + url + "'", 0), 0u) << error;
	EXPECT_NE(error.find("Set 'weights' to a readable checkpoint file or a preset name"), std::string::npos) << error;

	EXPECT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
	EXPECT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
	GstSegment segment;
	gst_segment_init(&segment, GST_FORMAT_TIME);
	EXPECT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&segment)));
	EXPECT_EQ(gst_harness_push(h, frame.buffer(GST_MSECOND)), GST_FLOW_ERROR);
	const std::vector<std::string> later = take_weights_messages(element.bus).problems;
	ASSERT_EQ(later.size(), 1u);
	const std::string &again = later[0];
	EXPECT_EQ(again.rfind("error: No model to run: the weights '" + url + "' could not be set up", 0), 0u)
		<< again;
	close(refusing);
}

// Model settings changed while the first frame waits for the start's weights give that set-up up
// for one of theirs: the frame runs on the new weights without waiting for the old download.
TEST(FrcnnDetect, WeightsSetWhileTheFirstFrameWaitsAreTheOnesItRunsOn)
{
	LoopbackHttpServer server;
	ScopedEnv torch_home("TORCH_HOME", gst_test::out_dir() + "/changed-while-waiting-cache");
	const Frame frame = distinct_frames(1)[0];

	StartedElement element("weights=" + server.url("stalled-first.pth"), &server);
	ASSERT_TRUE(element.started());
	GstHarness *h = element.h.get();
	ASSERT_TRUE(server.wait_for_requests(1, std::chrono::seconds(60)));
	gst_harness_set_src_caps(h, frame.caps());
	auto pushed = std::async(std::launch::async, [&] { return gst_harness_push(h, frame.buffer(0)); });
	EXPECT_EQ(pushed.wait_for(std::chrono::seconds(1)), std::future_status::timeout)
		<< "the frame waits for the weights";

	g_object_set(h->element, "weights", gst_test::weights4().c_str(), nullptr);
	const bool in_time = pushed.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
	server.release();
	ASSERT_TRUE(in_time) << "the frame waited for the weights set before";
	ASSERT_EQ(pushed.get(), GST_FLOW_OK);
	gst_test::BufferPtr out(gst_harness_pull(h));
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
	EXPECT_EQ(take_weights_messages(element.bus).problems, std::vector<std::string>{});
}

// Writing the model settings that are being set up again (the same weights, say) while the first
// frame waits does not start their download anew; other values that the element refuses are the
// ones a later frame's error names.
TEST(FrcnnDetect, TheSameWeightsSetWhileTheFirstFrameWaitsKeepTheirDownload)
{
	LoopbackHttpServer server;
	ScopedEnv torch_home("TORCH_HOME", gst_test::out_dir() + "/same-while-waiting-cache");
	const Frame frame = distinct_frames(1)[0];
	const std::string url = server.url("stalled-same.pth");

	StartedElement element("weights=" + url, &server);
	ASSERT_TRUE(element.started());
	GstHarness *h = element.h.get();
	ASSERT_TRUE(server.wait_for_requests(1, std::chrono::seconds(60)));
	gst_harness_set_src_caps(h, frame.caps());
	auto pushed = std::async(std::launch::async, [&] { return gst_harness_push(h, frame.buffer(0)); });
	for (int i = 0; i < 3; i++) {
		g_object_set(h->element, "weights", url.c_str(), nullptr);
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	EXPECT_FALSE(server.wait_for_requests(2, std::chrono::seconds(2))) << "the download started again";

	/* Weights of another model: refused, and the frame fails. */
	g_object_set(h->element, "weights", "coco-mobilenet", nullptr);
	const bool in_time = pushed.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
	server.release();
	ASSERT_TRUE(in_time);
	EXPECT_EQ(pushed.get(), GST_FLOW_ERROR);
	std::vector<std::string> problems = take_weights_messages(element.bus).problems;
	ASSERT_EQ(problems.size(), 1u);
	EXPECT_EQ(problems[0].rfind("error: The weights 'coco-mobilenet' are for model", 0), 0u) << problems[0];
	EXPECT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
	EXPECT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
	GstSegment segment;
	gst_segment_init(&segment, GST_FORMAT_TIME);
	EXPECT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&segment)));
	EXPECT_EQ(gst_harness_push(h, frame.buffer(GST_MSECOND)), GST_FLOW_ERROR);
	problems = take_weights_messages(element.bus).problems;
	ASSERT_EQ(problems.size(), 1u);
	EXPECT_EQ(problems[0].rfind("error: No model to run: the weights 'coco-mobilenet' could not be set up", 0), 0u)
		<< problems[0];
}

// Settings set while the first frame waits replace the set-up of the earlier ones, which then
// leaves nothing behind: it posts no error of its own and does not take the model-instance-id
// for its weights (the frame runs on the new ones), and a stop waits for it, so that nothing of
// its download stays in the cache and the element goes when dropped.
TEST(FrcnnDetect, ASetUpThatNewerSettingsReplacedLeavesNothingBehind)
{
	const Frame frame = distinct_frames(1)[0];
	{
		const std::string cache = gst_test::out_dir() + "/replaced-setup-cache";
		std::filesystem::remove_all(cache);
		ScopedEnv torch_home("TORCH_HOME", cache);
		/* The replaced set-up has its weights (of 91 classes) when the replacing one (4 classes)
		 * starts: it holds the id's lock, and would go on to load them under it. */
		LoopbackHttpServer server(frcnn::test::read_file(gst_test::weights91()));
		GstElement *element = make_detect("weights=" + server.url("replaced91.pth") + " model-instance-id=replaced");
		gst_object_ref_sink(element);
		GstBus *bus = gst_bus_new();
		struct Replacing {
			GstElement *element;
			std::atomic<bool> done{ false };
		} replacing{ element };
		gst_bus_set_sync_handler(
			bus,
			[](GstBus *, GstMessage *message, gpointer data) {
				auto *replacing = static_cast<Replacing *>(data);
				GstProgressType type;
				if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS && !replacing->done) {
					gst_message_parse_progress(message, &type, nullptr, nullptr);
					if (type == GST_PROGRESS_TYPE_COMPLETE) {
						replacing->done = true;
						g_object_set(replacing->element, "weights", gst_test::weights4().c_str(), nullptr);
						/* The waiting frame replaces this set-up meanwhile. */
						std::this_thread::sleep_for(std::chrono::seconds(1));
					}
				}
				return GST_BUS_PASS;
			},
			&replacing, nullptr);
		gst_element_set_bus(element, bus);
		ASSERT_EQ(gst_element_set_state(element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
		GstHarness *h = gst_harness_new_with_element(element, "sink", "src");
		gst_harness_set_src_caps(h, frame.caps());
		gst_test::BufferPtr out(gst_harness_push_and_pull(h, frame.buffer(0)));
		EXPECT_TRUE(replacing.done);
		ASSERT_TRUE(out);
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
		EXPECT_EQ(take_weights_messages(bus).problems, std::vector<std::string>{});
		gst_harness_teardown(h);
		gst_element_set_bus(element, nullptr);
		gst_object_unref(bus);
		gst_object_unref(element);
	}
	{
		const std::string cache = gst_test::out_dir() + "/replaced-downloads-cache";
		std::filesystem::remove_all(cache);
		ScopedEnv torch_home("TORCH_HOME", cache);
		LoopbackHttpServer server;
		StartedElement element("weights=" + server.url("replaced-0.pth"), &server);
		ASSERT_TRUE(element.started());
		GstHarness *h = element.h.get();
		std::atomic<bool> finalized{ false };
		g_object_weak_ref(
			G_OBJECT(h->element),
			[](gpointer data, GObject *) { static_cast<std::atomic<bool> *>(data)->store(true); }, &finalized);
		gst_harness_set_src_caps(h, frame.caps());
		auto pushed = std::async(std::launch::async, [&] { return gst_harness_push(h, frame.buffer(0)); });
		/* Each download stalls (libcurl then checks whether to go on once a second) when newer
		 * weights replace it: more downloads, then a file at hand, which loads at once; the stop
		 * comes right after. */
		for (int i = 1; i <= 3; i++) {
			ASSERT_TRUE(server.wait_for_requests(i, std::chrono::seconds(60)));
			std::this_thread::sleep_for(std::chrono::milliseconds(1500));
			const std::string weights =
				i < 3 ? server.url("replaced-" + std::to_string(i) + ".pth") : gst_test::weights4();
			g_object_set(h->element, "weights", weights.c_str(), nullptr);
		}
		EXPECT_EQ(gst_element_set_state(h->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
		const GstFlowReturn ran = pushed.get();
		EXPECT_TRUE(ran == GST_FLOW_OK || ran == GST_FLOW_FLUSHING) << gst_flow_get_name(ran);
		EXPECT_TRUE(folder_entries(cache + "/hub/checkpoints").empty()) << "the stop left downloads behind";
		EXPECT_EQ(take_weights_messages(element.bus).problems, std::vector<std::string>{});
		element.h.reset();
		/* The messages on the bus hold references to their source. */
		take_weights_messages(element.bus);
		EXPECT_TRUE(eventually([&] { return finalized.load(); }, std::chrono::seconds(20)))
			<< "a set-up kept the element";
		server.release();
	}
}

// New weights set while playing, while a download for earlier ones is still going on, replace
// them: the batches go on with the model they have until the new weights are loaded, then run
// on those.
TEST(FrcnnDetect, NewerWeightsWhilePlayingDoNotWaitForADownloadInProgress)
{
	LoopbackHttpServer server;
	ScopedEnv torch_home("TORCH_HOME", gst_test::out_dir() + "/replaced-while-playing-cache");
	const std::vector<Frame> frames = distinct_frames(2);

	WatchedElement element(frames[0]);
	GstHarness *h = element.h.get();
	element.expect_first_model(frames[0]);
	g_object_set(h->element, "weights", server.url("stalled-reload.pth").c_str(), nullptr);
	element.expect_first_model(frames[1]); // starts the download
	ASSERT_TRUE(server.wait_for_requests(1, std::chrono::seconds(60)));
	g_object_set(h->element, "weights", gst_test::weights91().c_str(), nullptr);

	/* The batches run on the first model meanwhile. */
	bool loaded = false;
	for (const auto deadline = Clock::now() + std::chrono::seconds(20); !loaded && Clock::now() < deadline;) {
		ASSERT_TRUE(element.push(frames[0]));
		const WeightsMessages messages = take_weights_messages(element.bus);
		EXPECT_EQ(messages.problems, std::vector<std::string>{});
		for (const std::string &info : messages.infos)
			loaded |= info == "Loaded the weights '" + gst_test::weights91() + "': the next batch runs on them.";
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	server.release();
	ASSERT_TRUE(loaded) << "the new weights waited for the download in progress";
	gst_test::BufferPtr out = element.push(frames[1]);
	ASSERT_TRUE(out);
	expect_meta_equals(out.get(), frames[1].width(), frames[1].height(),
			   coco_reference().detect({ view_of(frames[1]) }).at(0), frcnn::coco_category_names());
}

// What an application's synchronous bus handler does with the element when the download's first
// progress message comes, on the thread that sets the model up.
class ProgressHandler {
public:
	enum class Action { Stop, StopAndDrop, Restart };

	// `also` runs in the handler after the action.
	ProgressHandler(GstElement *element, Action action, std::function<void()> also = {})
		: element_(element), action_(action), also_(std::move(also))
	{
		bus_ = gst_bus_new();
		gst_bus_set_sync_handler(bus_, handle, this, nullptr);
		gst_element_set_bus(element, bus_);
	}
	~ProgressHandler() { gst_object_unref(bus_); }

	// Whether the handler has acted within `timeout`.
	bool wait_for_action(std::chrono::seconds timeout)
	{
		std::unique_lock<std::mutex> lock(mutex_);
		return acted_.wait_for(lock, timeout, [this] { return actions_ > 0; });
	}

	// The download steps and problems posted after the handler acted.
	std::vector<std::string> steps_after()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return after_;
	}

private:
	static GstBusSyncReply handle(GstBus *, GstMessage *message, gpointer data)
	{
		auto *self = static_cast<ProgressHandler *>(data);
		std::string step = download_step(message);
		if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR || GST_MESSAGE_TYPE(message) == GST_MESSAGE_WARNING)
			step = GST_MESSAGE_TYPE_NAME(message);
		bool act = false;
		{
			std::lock_guard<std::mutex> lock(self->mutex_);
			if (self->actions_ > 0 && !step.empty())
				self->after_.push_back(step);
			/* Once: a set-up the action begins posts its own start, maybe while it acts. */
			act = !self->acting_ && step.rfind("start ", 0) == 0;
			self->acting_ |= act;
		}
		if (act) {
			GstElement *element = self->element_;
			gst_element_set_state(element, GST_STATE_NULL);
			if (self->action_ == Action::Restart)
				gst_element_set_state(element, GST_STATE_PAUSED);
			if (self->action_ == Action::StopAndDrop) {
				gst_element_set_bus(element, nullptr);
				gst_object_unref(element);
			}
			if (self->also_)
				self->also_();
			std::lock_guard<std::mutex> lock(self->mutex_);
			self->actions_++;
			self->acted_.notify_all();
		}
		gst_message_unref(message);
		return GST_BUS_DROP;
	}

	GstElement *element_;
	Action action_;
	std::function<void()> also_;
	GstBus *bus_ = nullptr;
	std::mutex mutex_;
	std::condition_variable acted_;
	bool acting_ = false;
	int actions_ = 0;
	std::vector<std::string> after_;
};

// A stop from an application's synchronous handler of the download's message, on the set-up's
// own thread, gives the download up as any stop does (it cannot wait for it there).
TEST(FrcnnDetect, AStopFromAHandlerOfTheDownloadsMessageGivesItUp)
{
	LoopbackHttpServer server;
	const std::string cache = gst_test::out_dir() + "/handler-stop-cache";
	std::filesystem::remove_all(cache);
	ScopedEnv torch_home("TORCH_HOME", cache);

	GstElement *element = make_detect("weights=" + server.url("handler-stop.pth"));
	gst_object_ref_sink(element);
	ProgressHandler handler(element, ProgressHandler::Action::Stop);
	ASSERT_EQ(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_SUCCESS);
	ASSERT_TRUE(handler.wait_for_action(std::chrono::seconds(60)));
	const bool given_up = eventually(
		[&] {
			const std::vector<std::string> steps = handler.steps_after();
			return !steps.empty() && steps.back().rfind("canceled ", 0) == 0;
		},
		std::chrono::seconds(20));
	server.release();
	EXPECT_TRUE(given_up) << "the download went on after the stop";
	EXPECT_TRUE(eventually([&] { return folder_entries(cache + "/hub/checkpoints").empty(); },
			       std::chrono::seconds(20)))
		<< "nothing of the download is kept";
	gst_element_set_state(element, GST_STATE_NULL);
	gst_element_set_bus(element, nullptr);
	gst_object_unref(element);
}

// An application's synchronous handler of the download's message that stops the element and
// drops it, on the set-up's own thread: the element goes once its set-up has given up.
TEST(FrcnnDetect, AnElementDroppedByAHandlerOfItsDownloadsMessageGoes)
{
	LoopbackHttpServer server;
	ScopedEnv torch_home("TORCH_HOME", gst_test::out_dir() + "/handler-drop-cache");

	GstElement *element = make_detect("weights=" + server.url("handler-drop.pth"));
	gst_object_ref_sink(element);
	std::atomic<bool> finalized{ false };
	g_object_weak_ref(
		G_OBJECT(element), [](gpointer data, GObject *) { static_cast<std::atomic<bool> *>(data)->store(true); },
		&finalized);
	ProgressHandler handler(element, ProgressHandler::Action::StopAndDrop);
	ASSERT_EQ(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_SUCCESS);
	/* The handler holds the last reference from here on. */
	ASSERT_TRUE(handler.wait_for_action(std::chrono::seconds(60)));
	const bool gone = eventually([&] { return finalized.load(); }, std::chrono::seconds(20));
	server.release();
	EXPECT_TRUE(gone) << "the element stayed";
}

// An application's synchronous handler of the download's message that starts the element again, on
// the set-up's own thread, under a model-instance-id whose lock that set-up holds: the start does
// not wait for it (it would wait for itself), the interrupted download is given up and a new one
// begins.
TEST(FrcnnDetect, ARestartFromAHandlerOfTheDownloadsMessageDownloadsAgain)
{
	LoopbackHttpServer server;
	ScopedEnv torch_home("TORCH_HOME", gst_test::out_dir() + "/handler-restart-cache");

	GstElement *element = make_detect("weights=" + server.url("handler-restart.pth") + " model-instance-id=restarted");
	gst_object_ref_sink(element);
	ProgressHandler handler(element, ProgressHandler::Action::Restart);
	ASSERT_EQ(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_SUCCESS);
	const bool acted = handler.wait_for_action(std::chrono::seconds(60));
	const bool downloads_again = acted && server.wait_for_requests(2, std::chrono::seconds(20));
	EXPECT_TRUE(acted) << "the restart in the handler did not return";
	EXPECT_TRUE(downloads_again) << "no new download after the restart";
	auto stopped = std::async(std::launch::async, [&] { return gst_element_set_state(element, GST_STATE_NULL); });
	const bool stopped_in_time = stopped.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
	server.release();
	EXPECT_TRUE(stopped_in_time);
	if (acted) {
		const std::vector<std::string> steps = handler.steps_after();
		EXPECT_NE(std::find(steps.begin(), steps.end(), "canceled Gave the download of the weights '" +
									 server.url("handler-restart.pth") +
									 "' up: the element stopped"),
			  steps.end());
		EXPECT_EQ(std::count(steps.begin(), steps.end(), "error"), 0);
		gst_element_set_bus(element, nullptr);
		gst_object_unref(element);
	}
}

// What an application's synchronous handler of a set-up's message does on the set-up's thread
// is its own: after it started the element again (which replaces that set-up, whose messages are
// held back from then on), another element it starts there still says why it cannot.
TEST(FrcnnDetect, AHandlerOfADownloadsMessageStillHearsOfOtherElementsProblems)
{
	LoopbackHttpServer server;
	ScopedEnv torch_home("TORCH_HOME", gst_test::out_dir() + "/handler-other-cache");

	GstElement *other = make_detect("weights=/nonexistent/weights.pth");
	gst_object_ref_sink(other);
	GstBus *other_bus = gst_bus_new();
	gst_element_set_bus(other, other_bus);
	std::atomic<int> other_started{ -1 };

	GstElement *element = make_detect("weights=" + server.url("handler-other.pth"));
	gst_object_ref_sink(element);
	ProgressHandler handler(element, ProgressHandler::Action::Restart, [&] {
		other_started = gst_element_set_state(other, GST_STATE_PAUSED);
	});
	ASSERT_EQ(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_SUCCESS);
	ASSERT_TRUE(handler.wait_for_action(std::chrono::seconds(60)));
	EXPECT_EQ(other_started, GST_STATE_CHANGE_FAILURE);
	const std::vector<std::string> problems = take_weights_messages(other_bus).problems;
	ASSERT_EQ(problems.size(), 1u) << "the other element's error was held back";
	EXPECT_EQ(problems[0].rfind("error: Could not get the weights '/nonexistent/weights.pth'", 0), 0u)
		<< problems[0];

	EXPECT_EQ(gst_element_set_state(element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
	server.release();
	gst_element_set_state(other, GST_STATE_NULL);
	gst_element_set_bus(other, nullptr);
	gst_object_unref(other_bus);
	gst_object_unref(other);
	gst_element_set_bus(element, nullptr);
	gst_object_unref(element);
}

// Under a model-instance-id, weights named by a URL and by the file the download cache keeps of
// it (or by another URL of the same file name, which resolves to that file) are one model, as a
// preset is with its URL: the elements share the model, which the file's being gone shows.
TEST(FrcnnDetect, AUrlAndItsCachedFileShareOneModel)
{
	LoopbackHttpServer server(frcnn::test::read_file(gst_test::weights4()));
	const std::string cache = gst_test::out_dir() + "/shared-url-cache";
	std::filesystem::remove_all(cache);
	ScopedEnv torch_home("TORCH_HOME", cache);
	const Frame frame = distinct_frames(1)[0];
	const std::string url = server.url("tiny4-hub.pth");

	StartedElement first("weights=" + url + " model-instance-id=hub", &server);
	ASSERT_TRUE(first.started());
	gst_harness_set_src_caps(first.h.get(), frame.caps());
	gst_test::BufferPtr out(gst_harness_push_and_pull(first.h.get(), frame.buffer(0)));
	ASSERT_TRUE(out);
	const std::string cached = cache + "/hub/checkpoints/tiny4-hub.pth";
	std::filesystem::rename(cached, cached + ".away");
	server.release();

	for (const std::string &weights :
	     { cached, cache + "/hub/../hub/checkpoints/tiny4-hub.pth", url + "?version=1",
	       std::string("http://127.0.0.1:9/models/tiny4-hub.pth") }) {
		SCOPED_TRACE(weights);
		StartedElement other("weights=\"" + weights + "\" model-instance-id=hub");
		ASSERT_TRUE(other.started());
		gst_harness_set_src_caps(other.h.get(), frame.caps());
		out.reset(gst_harness_push_and_pull(other.h.get(), frame.buffer(0)));
		ASSERT_TRUE(out) << "the element shares the model";
		expect_meta_equals(out.get(), frame.width(), frame.height(), expected_for(frame));
		EXPECT_EQ(take_weights_messages(other.bus).problems, std::vector<std::string>{});
	}
}

// An element loading the model of one model-instance-id (a long download, here) holds up the
// elements that wait for the same id, but not those of another id; one that waits for it starts
// at once and stops at once, whatever its weights: the same URL, the file the download will be
// (the same weights), or another file.
TEST(FrcnnDetect, LoadingTheModelOfOneInstanceIdHoldsUpNoOtherId)
{
	LoopbackHttpServer server;
	const std::string cache = gst_test::out_dir() + "/instance-id-download-cache";
	ScopedEnv torch_home("TORCH_HOME", cache);
	const std::vector<Frame> frames = distinct_frames(1);
	const Frame &frame = frames[0];
	const std::string slow = "weights=" + server.url("slow.pth") + " model-instance-id=slow";

	StartedElement downloading(slow, &server);
	ASSERT_TRUE(downloading.started());
	ASSERT_TRUE(server.wait_for_requests(1, std::chrono::seconds(60)));
	gst_harness_set_src_caps(downloading.h.get(), frame.caps());
	auto first = std::async(std::launch::async, [&] {
		return gst_harness_push(downloading.h.get(), frame.buffer(0));
	});

	/* Another id starts and detects while the first still downloads. */
	auto other = std::async(std::launch::async, [&] {
		expect_element_detects(frame, expected_for(frame), "model-instance-id=fast");
	});
	const bool in_time = other.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
	EXPECT_TRUE(in_time) << "an element of another model-instance-id waited for the download";

	/* One of the same id waits for the first's download, and stops without waiting for it. */
	for (const std::string &properties :
	     { slow, "weights=" + cache + "/hub/checkpoints/slow.pth model-instance-id=slow",
	       "weights=" + gst_test::weights4() + " model-instance-id=slow" }) {
		SCOPED_TRACE(properties);
		StartedElement waiting(properties, &server);
		ASSERT_TRUE(waiting.started());
		gst_harness_set_src_caps(waiting.h.get(), frame.caps());
		auto pushed = std::async(std::launch::async, [&] {
			return gst_harness_push(waiting.h.get(), frame.buffer(0));
		});
		EXPECT_EQ(pushed.wait_for(std::chrono::seconds(1)), std::future_status::timeout);
		auto stopped = std::async(std::launch::async, [&] {
			return gst_element_set_state(waiting.h->element, GST_STATE_NULL);
		});
		const bool stopped_in_time = stopped.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
		if (!stopped_in_time)
			server.release();
		EXPECT_TRUE(stopped_in_time) << "the stop waited for the other element's download";
		EXPECT_EQ(pushed.get(), GST_FLOW_FLUSHING);
		EXPECT_EQ(take_weights_messages(waiting.bus).problems, std::vector<std::string>{});
	}
	EXPECT_EQ(first.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
		<< "the first element is still downloading";

	server.release();
	EXPECT_EQ(first.get(), GST_FLOW_ERROR) << "the download failed";
	const std::vector<std::string> problems = take_weights_messages(downloading.bus).problems;
	ASSERT_FALSE(problems.empty());
	EXPECT_EQ(problems[0].rfind("error: Could not get the weights", 0), 0u) << problems[0];
	other.get();
}

// Counts the element's debug lines that say a batch ran together with other elements' batches,
// and tells when an element's batch starts to wait for the model.
class RunLog {
public:
	RunLog()
	{
		gst_debug_set_threshold_for_name("frcnndetect", GST_LEVEL_LOG);
		gst_debug_remove_log_function(gst_debug_log_default);
		gst_debug_add_log_function(log, this, nullptr);
	}
	~RunLog()
	{
		gst_debug_remove_log_function(log);
		gst_debug_add_log_function(gst_debug_log_default, nullptr, nullptr);
		gst_debug_set_threshold_for_name("frcnndetect", GST_LEVEL_NONE);
	}

	// Lines of element `name` that start with `text`.
	int count(const std::string &name, const std::string &text)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		const std::string start = name + ": " + text;
		return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string &line) {
			return line.compare(0, start.size(), start) == 0;
		}));
	}
	bool wait_for(const std::string &name, const std::string &text)
	{
		const auto give_up = Clock::now() + std::chrono::seconds(60);
		while (count(name, text) == 0 && Clock::now() < give_up)
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
		return count(name, text) > 0;
	}
	void clear()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		lines_.clear();
	}

private:
	static void log(GstDebugCategory *category, GstDebugLevel, const gchar *, const gchar *, gint,
			GObject *object, GstDebugMessage *message, gpointer data)
	{
		if (std::string(gst_debug_category_get_name(category)) != "frcnndetect" ||
		    !object || !GST_IS_OBJECT(object))
			return;
		auto *self = static_cast<RunLog *>(data);
		std::lock_guard<std::mutex> lock(self->mutex_);
		self->lines_.push_back(std::string(GST_OBJECT_NAME(object)) + ": " +
				       gst_debug_message_get(message));
	}

	std::mutex mutex_;
	std::vector<std::string> lines_;
};

// Batches of elements that share a model, with the same settings and frame size, that wait
// while the model runs another batch, run as one batch, and each frame gets its own detections:
// the library's for that frame alone. A long batch of a third element (another threshold, so it
// never runs with theirs) keeps the model busy while they come.
TEST(FrcnnDetect, ModelInstanceIdRunsWaitingBatchesOfSeveralElementsTogether)
{
	const std::string shared = "model-instance-id=together ";
	HarnessPtr busy = harness(shared + "name=busy threshold=0.3 batch-size=8 batch-timeout=60000");
	HarnessPtr first = harness(shared + "name=first batch-size=2 batch-timeout=0");
	HarnessPtr second = harness(shared + "name=second batch-size=2 batch-timeout=0");
	const std::vector<Frame> long_batch = distinct_frames(8, 640, 480);
	const std::vector<Frame> frames = distinct_frames(2);
	gst_harness_set_src_caps(busy.get(), long_batch[0].caps());
	gst_harness_set_src_caps(first.get(), frames[0].caps());
	gst_harness_set_src_caps(second.get(), frames[0].caps());
	const std::string together = "batch of 1 frames ran together with other elements': 2 frames of 2 batches";

	RunLog log;
	const GstClockTime duration = GST_SECOND / 30;
	/* The two batches must come while the long one runs: a machine busy elsewhere may delay
	 * them past its end, so a few tries are allowed for them to meet. */
	int attempts = 0, met = 0;
	for (; attempts < 3 && met == 0; attempts++) {
		SCOPED_TRACE("attempt " + std::to_string(attempts));
		log.clear();
		const GstClockTime pts = attempts * 8 * duration;
		for (std::size_t i = 0; i < long_batch.size(); i++)
			ASSERT_EQ(gst_harness_push(busy.get(), long_batch[i].buffer(pts + i * duration, duration)),
				  GST_FLOW_OK);
		ASSERT_TRUE(log.wait_for("busy", "batch of 8 frames waits for the model"));
		ASSERT_EQ(gst_harness_push(first.get(), frames[0].buffer(pts, duration)), GST_FLOW_OK);
		ASSERT_EQ(gst_harness_push(second.get(), frames[1].buffer(pts, duration)), GST_FLOW_OK);

		for (std::size_t i = 0; i < long_batch.size(); i++)
			gst_test::BufferPtr(gst_harness_pull(busy.get()));
		gst_test::BufferPtr out_first(gst_harness_pull(first.get()));
		gst_test::BufferPtr out_second(gst_harness_pull(second.get()));
		ASSERT_TRUE(out_first && out_second);
		expect_meta_equals(out_first.get(), frames[0].width(), frames[0].height(), expected_for(frames[0]));
		expect_meta_equals(out_second.get(), frames[1].width(), frames[1].height(), expected_for(frames[1]));
		const int first_met = log.count("first", together), second_met = log.count("second", together);
		EXPECT_EQ(first_met, second_met) << "a run of two batches is reported by both";
		met = first_met;
	}
	EXPECT_EQ(met, 1) << "the two batches never ran together in " << attempts << " attempts";
	EXPECT_EQ(log.count("busy", "batch of 8 frames ran together with other elements': 10 frames of 2 batches"), 0);
	/* The statistics tell the same: each of the two ran one batch with the other's. */
	EXPECT_EQ(stats_of(first->element)["batches-with-others"], 1);
	EXPECT_EQ(stats_of(second->element)["batches-with-others"], 1);
	EXPECT_EQ(stats_of(busy->element)["batches-with-others"], 0);
	EXPECT_EQ(stats_of(first->element)["batches"], attempts);
}

// Two elements on one model: `busy` runs a long batch (another threshold, so it runs alone) while
// one frame of `behind` waits for the model.
class BehindALongBatch {
public:
	explicit BehindALongBatch(const std::string &id)
		: busy(harness("model-instance-id=" + id + " name=busy threshold=0.3 batch-size=8 batch-timeout=60000")),
		  behind(harness("model-instance-id=" + id + " name=behind batch-size=1 batch-timeout=0")),
		  frames(distinct_frames(2)), long_batch_(distinct_frames(8, 640, 480))
	{
		gst_harness_set_src_caps(busy.get(), long_batch_[0].caps());
		gst_harness_set_src_caps(behind.get(), frames[0].caps());
	}

	// Queues the long batch and then `behind`'s frame, and does `action` while the long batch
	// runs. Returns whether the action was done before the long batch ended (a machine busy
	// elsewhere may hold the test up past its end); its frames are pulled then.
	bool act_while_it_waits(const std::function<void()> &action)
	{
		log.clear();
		const GstClockTime pts = pushes_++ * 8 * kDuration;
		for (std::size_t i = 0; i < long_batch_.size(); i++)
			EXPECT_EQ(gst_harness_push(busy.get(), long_batch_[i].buffer(pts + i * kDuration, kDuration)),
				  GST_FLOW_OK);
		EXPECT_TRUE(log.wait_for("busy", "batch of 8 frames waits for the model"));
		EXPECT_EQ(gst_harness_push(behind.get(), frames[0].buffer(pts, kDuration)), GST_FLOW_OK);
		EXPECT_TRUE(log.wait_for("behind", "batch of 1 frames waits for the model"));
		action();
		const bool in_time = log.count("busy", kBusyRan) == 0;
		for (std::size_t i = 0; i < long_batch_.size(); i++)
			EXPECT_TRUE(gst_test::BufferPtr(gst_harness_pull(busy.get())));
		/* The other element's batch ran as it would have. */
		EXPECT_EQ(log.count("busy", kBusyRan), 1);
		if (in_time) {
			EXPECT_EQ(log.count("behind", "batch of 1 frames dropped: a flush or a stop came while "
					    "it waited for the model"), 1);
		}
		return in_time;
	}

	static constexpr GstClockTime kDuration = GST_SECOND / 30;
	static constexpr int kAttempts = 3;
	static constexpr const char *kBusyRan = "batch of 8 frames took";
	RunLog log;
	HarnessPtr busy, behind;
	std::vector<Frame> frames; // frames[0] waits behind the long batch

private:
	std::vector<Frame> long_batch_;
	int pushes_ = 0;
};

// A flush of an element whose batch waits for a model it shares takes that batch back at once:
// a seek on one stream does not wait for the runs of other streams' batches ahead of it. The
// stream goes on after the flush.
TEST(FrcnnDetect, ModelInstanceIdAFlushDoesNotWaitForOtherElementsRuns)
{
	BehindALongBatch shared("flushing");
	int attempts = 0, in_time = 0;
	for (; attempts < BehindALongBatch::kAttempts && in_time == 0; attempts++) {
		SCOPED_TRACE("attempt " + std::to_string(attempts));
		const double batches_before = stats_of(shared.behind->element)["batches"];
		const bool flushed_in_time = shared.act_while_it_waits(
			[&] { ASSERT_TRUE(gst_harness_push_event(shared.behind.get(), gst_event_new_flush_start())); });
		ASSERT_TRUE(gst_harness_push_event(shared.behind.get(), gst_event_new_flush_stop(TRUE)));
		in_time += flushed_in_time;

		/* The flushed stream goes on: its next frame runs. */
		const Frame &next = shared.frames[1];
		gst_harness_set_src_caps(shared.behind.get(), next.caps());
		ASSERT_EQ(gst_harness_push(shared.behind.get(), next.buffer(0, BehindALongBatch::kDuration)), GST_FLOW_OK);
		gst_test::BufferPtr after(gst_harness_pull(shared.behind.get()));
		ASSERT_TRUE(after);
		expect_meta_equals(after.get(), next.width(), next.height(), expected_for(next));
		if (flushed_in_time) {
			EXPECT_EQ(stats_of(shared.behind->element)["batches"], batches_before + 1)
				<< "the batch taken back ran";
		}
	}
	EXPECT_EQ(in_time, 1) << "the flush waited for the other element's run in " << attempts << " attempts";
}

// A stop of such an element does not wait for the other element's run either, and the element
// starts again on the shared model.
TEST(FrcnnDetect, ModelInstanceIdAStopDoesNotWaitForOtherElementsRuns)
{
	BehindALongBatch shared("stopping");
	int attempts = 0, in_time = 0;
	for (; attempts < BehindALongBatch::kAttempts && in_time == 0; attempts++) {
		SCOPED_TRACE("attempt " + std::to_string(attempts));
		in_time += shared.act_while_it_waits([&] {
			EXPECT_EQ(gst_element_set_state(shared.behind->element, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
		});
		ASSERT_EQ(gst_element_set_state(shared.behind->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
		gst_harness_set_src_caps(shared.behind.get(), shared.frames[0].caps());
	}
	EXPECT_EQ(in_time, 1) << "the stop waited for the other element's run in " << attempts << " attempts";
	const Frame &next = shared.frames[1];
	ASSERT_EQ(gst_harness_push(shared.behind.get(), next.buffer(0, BehindALongBatch::kDuration)), GST_FLOW_OK);
	gst_test::BufferPtr after(gst_harness_pull(shared.behind.get()));
	ASSERT_TRUE(after);
	expect_meta_equals(after.get(), next.width(), next.height(), expected_for(next));
}

// precision=int8 with a calibration file that cannot be written once the calibration is made
// (its folder removed since the start, a full disk): a warning says so, and the stream goes on
// in 8 bits, every frame with its detections.
TEST(FrcnnDetect, Int8CalibrationFileThatCannotBeWrittenIsWarnedAbout)
{
	if (!frcnn::int8_unsupported_reason(frcnn::model_preset("tiny")).empty())
		GTEST_SKIP() << "int8 needs oneDNN, which this build lacks";
	const std::vector<Frame> frames = distinct_frames(4);
	const std::string folder = gst_test::out_dir() + "/vanished-calibration";
	std::filesystem::remove_all(folder);
	std::filesystem::create_directories(folder);
	HarnessPtr h = harness("batch-size=1 precision=int8 int8-calibration-frames=2 int8-calibration=\"" + folder +
			       "/c.json\"");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	std::filesystem::remove_all(folder);
	gst_harness_set_src_caps(h.get(), frames[0].caps());
	for (int i = 0; i < 4; i++) {
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frames[i].buffer(i * GST_SECOND)));
		ASSERT_TRUE(out) << "frame " << i << " was lost";
		EXPECT_EQ(GST_BUFFER_PTS(out.get()), i * GST_SECOND);
		if (i < 2) /* the calibration's frames, in fp32 */
			expect_meta_equals(out.get(), frames[i].width(), frames[i].height(), expected_for(frames[i]));
	}
	const std::string warning = next_message_text(bus, GST_MESSAGE_WARNING);
	EXPECT_NE(warning.find("The int8 calibration was made, but its file could not be written: cannot write the "
			       "8-bit calibration '" + folder + "/c.json'"),
		  std::string::npos)
		<< warning;
	EXPECT_NE(warning.find("No such file or directory"), std::string::npos) << warning;
	EXPECT_NE(warning.find("The stream goes on in 8 bits"), std::string::npos) << warning;
	EXPECT_EQ(gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING), nullptr) << "warned twice";
	EXPECT_EQ(gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR), nullptr);
	EXPECT_EQ(stats_of(h->element)["images-detected"], 4);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// A stream that ends before precision=int8's calibration frames are through ran in fp32
// throughout and leaves no calibration file: a warning at its end says so, with the counts. A
// stream whose calibration was made says nothing.
TEST(FrcnnDetect, Int8StreamShorterThanTheCalibrationIsWarnedAbout)
{
	if (!frcnn::int8_unsupported_reason(frcnn::model_preset("tiny")).empty())
		GTEST_SKIP() << "int8 needs oneDNN, which this build lacks";
	const std::vector<Frame> frames = distinct_frames(3);
	const std::string file = gst_test::out_dir() + "/short-stream.int8.json";
	for (int needed : { 5, 3 }) {
		SCOPED_TRACE("int8-calibration-frames=" + std::to_string(needed));
		std::remove(file.c_str());
		HarnessPtr h = harness("precision=int8 int8-calibration-frames=" + std::to_string(needed) +
				       " int8-calibration=\"" + file + "\"");
		GstBus *bus = gst_bus_new();
		gst_element_set_bus(h->element, bus);
		gst_harness_set_src_caps(h.get(), frames[0].caps());
		for (int i = 0; i < 3; i++)
			ASSERT_EQ(gst_harness_push(h.get(), frames[i].buffer(i * GST_SECOND)), GST_FLOW_OK);
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
		for (int i = 0; i < 3; i++) {
			gst_test::BufferPtr out(gst_harness_pull(h.get()));
			ASSERT_TRUE(out);
			expect_meta_equals(out.get(), frames[i].width(), frames[i].height(), expected_for(frames[i]));
		}
		ASSERT_TRUE(pull_until_eos(h.get()));
		if (needed == 5) {
			const std::string warning = next_message_text(bus, GST_MESSAGE_WARNING);
			EXPECT_NE(warning.find("The stream ended before precision=int8's calibration was made (3 of "
					       "its 5 images measured so far): no calibration was made, nothing was "
					       "written to '" + file + "', and the images ran in fp32."),
				  std::string::npos)
				<< warning;
			EXPECT_FALSE(std::filesystem::exists(file));
		} else {
			EXPECT_TRUE(std::filesystem::exists(file));
			EXPECT_EQ(gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING), nullptr);
		}
		gst_element_set_bus(h->element, nullptr);
		gst_object_unref(bus);
	}
}
} // namespace

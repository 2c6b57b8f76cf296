// SPDX-License-Identifier: BSD-3-Clause
// frcnnshapesrc: deterministic frames and ground truth, caps negotiation, boxes that match the
// pixels, seeking, live mode and errors.

#include <array>
#include <chrono>
#include <cmath>
#include <atomic>
#include <fstream>
#include <thread>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include <gst/base/gstbasesrc.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "frcnn/shapes.h"
#include "gst_test_utils.h"

namespace {

using nlohmann::json;

struct HarnessDeleter {
	void operator()(GstHarness *h) const { gst_harness_teardown(h); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

struct ElementDeleter {
	void operator()(GstElement *e) const
	{
		gst_element_set_state(e, GST_STATE_NULL);
		gst_object_unref(e);
	}
};
using PipelinePtr = std::unique_ptr<GstElement, ElementDeleter>;

// What a run of the source gave: each frame's bytes (rows packed, no padding), its timestamps,
// the negotiated caps and the ground-truth lines.
struct SourceRun {
	int width = 0, height = 0, fps_n = 0, fps_d = 0;
	std::vector<std::vector<uint8_t>> frames;
	std::vector<GstClockTime> pts, durations;
	std::vector<guint64> offsets;
	std::vector<json> truth;
};

std::vector<json> read_lines(const std::string &path)
{
	std::ifstream file(path);
	std::vector<json> lines;
	for (std::string line; std::getline(file, line);)
		lines.push_back(json::parse(line));
	return lines;
}

// Pulls `frames` buffers from a harness around "frcnnshapesrc <properties>" whose sink accepts
// `sink_caps` (empty: anything).
SourceRun run_source(const std::string &properties, const std::string &sink_caps, int frames,
	       const std::string &truth = "")
{
	gst_test::init();
	SourceRun run;
	std::string launch = "frcnnshapesrc num-buffers=" + std::to_string(frames) + " " + properties;
	if (!truth.empty())
		launch += " ground-truth=" + truth;
	HarnessPtr h(gst_harness_new_parse(launch.c_str()));
	if (!h) {
		ADD_FAILURE() << "cannot create " << launch;
		return run;
	}
	if (!sink_caps.empty())
		gst_harness_set_sink_caps_str(h.get(), sink_caps.c_str());
	gst_harness_play(h.get());

	for (int i = 0; i < frames; i++) {
		gst_test::BufferPtr buffer(gst_harness_pull(h.get()));
		if (!buffer) {
			ADD_FAILURE() << "no buffer " << i;
			break;
		}
		if (i == 0) {
			GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
			GstVideoInfo info;
			EXPECT_TRUE(gst_video_info_from_caps(&info, caps));
			EXPECT_EQ(GST_VIDEO_INFO_FORMAT(&info), GST_VIDEO_FORMAT_RGB);
			run.width = GST_VIDEO_INFO_WIDTH(&info);
			run.height = GST_VIDEO_INFO_HEIGHT(&info);
			run.fps_n = GST_VIDEO_INFO_FPS_N(&info);
			run.fps_d = GST_VIDEO_INFO_FPS_D(&info);
			gst_caps_unref(caps);
		}
		GstVideoInfo info;
		gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, run.width, run.height);
		GstVideoFrame frame;
		if (!gst_video_frame_map(&frame, &info, buffer.get(), GST_MAP_READ)) {
			ADD_FAILURE() << "cannot map buffer " << i;
			break;
		}
		std::vector<uint8_t> bytes;
		const auto *data = static_cast<const uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
		const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
		for (int y = 0; y < run.height; y++)
			bytes.insert(bytes.end(), data + y * stride, data + y * stride + run.width * 3);
		gst_video_frame_unmap(&frame);
		run.frames.push_back(std::move(bytes));
		run.pts.push_back(GST_BUFFER_PTS(buffer.get()));
		run.durations.push_back(GST_BUFFER_DURATION(buffer.get()));
		run.offsets.push_back(GST_BUFFER_OFFSET(buffer.get()));
	}
	h.reset(); // stops the source: the ground-truth file is complete
	if (!truth.empty())
		run.truth = read_lines(truth);
	return run;
}

std::string out_file(const std::string &name)
{
	return gst_test::out_dir() + "/shapessrc_" + name;
}

TEST(FrcnnShapeSrc, DefaultCaps)
{
	const SourceRun run = run_source("", "", 2);
	EXPECT_EQ(run.width, 640);
	EXPECT_EQ(run.height, 480);
	EXPECT_EQ(run.fps_n, 25);
	EXPECT_EQ(run.fps_d, 1);
	ASSERT_EQ(run.pts.size(), 2u);
	EXPECT_EQ(run.pts[0], 0u);
	EXPECT_EQ(run.pts[1], 40 * GST_MSECOND);
	EXPECT_EQ(run.durations[0], 40 * GST_MSECOND);
}

TEST(FrcnnShapeSrc, NegotiatesAnotherSizeAndRate)
{
	// An odd width gives RGB rows padded to 4 bytes.
	const SourceRun run = run_source("seed=3", "video/x-raw,width=101,height=75,framerate=30000/1001",
				   4);
	EXPECT_EQ(run.width, 101);
	EXPECT_EQ(run.height, 75);
	EXPECT_EQ(run.fps_n, 30000);
	EXPECT_EQ(run.fps_d, 1001);
	ASSERT_EQ(run.frames.size(), 4u);
	for (int i = 0; i < 4; i++) {
		EXPECT_EQ(run.offsets[i], static_cast<guint64>(i));
		EXPECT_EQ(run.pts[i], gst_util_uint64_scale(i, 1001 * GST_SECOND, 30000));
		EXPECT_EQ(run.pts[i] + run.durations[i],
			  gst_util_uint64_scale(i + 1, 1001 * GST_SECOND, 30000));
	}

	// The frames are the library's scenes for the same seed and size.
	frcnn::ShapesOptions options;
	options.width = 101;
	options.height = 75;
	options.seed = 3;
	frcnn::ShapesGenerator generator(options);
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(run.frames[i], generator.scene(static_cast<uint64_t>(i)).rgb) << "frame " << i;
}

TEST(FrcnnShapeSrc, SameSeedSameFramesAndGroundTruth)
{
	const std::string caps = "video/x-raw,width=160,height=120";
	const SourceRun a = run_source("seed=77", caps, 12, out_file("a.jsonl"));
	const SourceRun b = run_source("seed=77", caps, 12, out_file("b.jsonl"));
	const SourceRun c = run_source("seed=78", caps, 12, out_file("c.jsonl"));
	ASSERT_EQ(a.frames.size(), 12u);
	ASSERT_EQ(b.frames.size(), 12u);
	ASSERT_EQ(c.frames.size(), 12u);
	EXPECT_EQ(a.frames, b.frames);
	EXPECT_EQ(a.truth, b.truth);
	int differing = 0;
	for (int i = 0; i < 12; i++)
		differing += a.frames[i] != c.frames[i] ? 1 : 0;
	EXPECT_EQ(differing, 12);
	EXPECT_NE(a.truth, c.truth);
	EXPECT_NE(a.frames[0], a.frames[1]) << "the video moves";
}

TEST(FrcnnShapeSrc, GroundTruthLines)
{
	const SourceRun run = run_source("seed=5 max-objects=8", "video/x-raw,width=320,height=240,framerate=10/1",
				   30, out_file("truth.jsonl"));
	ASSERT_EQ(run.truth.size(), 30u) << "one line per frame";
	int boxes = 0;
	for (std::size_t i = 0; i < run.truth.size(); i++) {
		const json &line = run.truth[i];
		EXPECT_EQ(line.at("frame").get<int>(), static_cast<int>(i));
		EXPECT_EQ(line.at("pts").get<GstClockTime>(), run.pts[i]);
		EXPECT_EQ(line.at("pts").get<GstClockTime>(), i * 100 * GST_MSECOND);
		EXPECT_EQ(line.at("width").get<int>(), 320);
		EXPECT_EQ(line.at("height").get<int>(), 240);
		for (const json &d : line.at("detections")) {
			boxes++;
			const std::vector<double> box = d.at("box");
			ASSERT_EQ(box.size(), 4u);
			EXPECT_GE(box[0], 0);
			EXPECT_GE(box[1], 0);
			EXPECT_LE(box[2], 320);
			EXPECT_LE(box[3], 240);
			EXPECT_GE(box[2] - box[0], 1.99);
			EXPECT_GE(box[3] - box[1], 1.99);
			const int id = d.at("label_id");
			ASSERT_GE(id, 1);
			ASSERT_LE(id, 3);
			EXPECT_EQ(d.at("label"), frcnn::shapes_class_names()[id]);
			EXPECT_EQ(d.at("score").get<double>(), 1.0);
		}
	}
	EXPECT_GT(boxes, 30);

	// The same boxes as the library gives (to the 0.01 px the file keeps).
	frcnn::ShapesOptions options;
	options.width = 320;
	options.height = 240;
	options.seed = 5;
	options.max_objects = 8;
	frcnn::ShapesGenerator generator(options);
	for (int i : { 0, 17, 29 }) {
		const auto objects = generator.scene(static_cast<uint64_t>(i)).objects;
		const json &detections = run.truth[i].at("detections");
		ASSERT_EQ(detections.size(), objects.size()) << "frame " << i;
		for (std::size_t k = 0; k < objects.size(); k++) {
			const std::vector<double> box = detections[k].at("box");
			EXPECT_NEAR(box[0], objects[k].x1, 0.006);
			EXPECT_NEAR(box[1], objects[k].y1, 0.006);
			EXPECT_NEAR(box[2], objects[k].x2, 0.006);
			EXPECT_NEAR(box[3], objects[k].y2, 0.006);
			EXPECT_EQ(detections[k].at("label_id").get<int>(), objects[k].label);
		}
	}
}

// The boxes sit on the drawn shapes: for a square or circle whose box overlaps no other box, the
// pixel at the box centre (the shape) differs from the pixels just outside the middle of each
// side (the background).
TEST(FrcnnShapeSrc, BoxesCoverDrawnPixels)
{
	const SourceRun run = run_source("seed=21 scene-frames=1", "video/x-raw,width=320,height=240",
					 100, out_file("cover.jsonl"));
	ASSERT_EQ(run.truth.size(), 100u);
	int checked = 0, good = 0;
	for (std::size_t i = 0; i < run.truth.size(); i++) {
		const std::vector<uint8_t> &rgb = run.frames[i];
		auto at = [&](int x, int y) {
			const uint8_t *p = rgb.data() + (static_cast<std::size_t>(y) * 320 + x) * 3;
			return std::array<int, 3>{ p[0], p[1], p[2] };
		};
		auto distance = [](const std::array<int, 3> &a, const std::array<int, 3> &b) {
			return std::sqrt(double((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
						(a[2] - b[2]) * (a[2] - b[2])));
		};
		const json &detections = run.truth[i].at("detections");
		for (std::size_t k = 0; k < detections.size(); k++) {
			const int id = detections[k].at("label_id");
			const std::vector<double> b = detections[k].at("box");
			if (id == frcnn::kShapeTriangle || b[0] < 4 || b[1] < 4 || b[2] > 316 || b[3] > 236)
				continue;
			bool alone = true;
			for (std::size_t j = 0; j < detections.size(); j++) {
				const std::vector<double> o = detections[j].at("box");
				if (j != k && o[0] < b[2] + 4 && b[0] < o[2] + 4 && o[1] < b[3] + 4 &&
				    b[1] < o[3] + 4)
					alone = false;
			}
			if (!alone)
				continue;
			checked++;
			const int cx = static_cast<int>((b[0] + b[2]) / 2), cy = static_cast<int>((b[1] + b[3]) / 2);
			const auto centre = at(cx, cy);
			const bool differs = distance(centre, at(static_cast<int>(b[0]) - 3, cy)) > 40 &&
					     distance(centre, at(static_cast<int>(b[2]) + 2, cy)) > 40 &&
					     distance(centre, at(cx, static_cast<int>(b[1]) - 3)) > 40 &&
					     distance(centre, at(cx, static_cast<int>(b[3]) + 2)) > 40;
			good += differs ? 1 : 0;
		}
	}
	EXPECT_GE(checked, 40);
	EXPECT_GE(good, checked * 95 / 100) << good << " of " << checked;
}

// Runs a pipeline to EOS or error; returns the error message, empty when none.
std::string play_to_end(GstElement *pipeline, GstClockTime timeout = 20 * GST_SECOND)
{
	gst_element_set_state(pipeline, GST_STATE_PLAYING);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *msg = gst_bus_timed_pop_filtered(bus, timeout,
		static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
	std::string error;
	if (!msg) {
		error = "timeout";
	} else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
		GError *err = nullptr;
		gst_message_parse_error(msg, &err, nullptr);
		error = err->message;
		g_error_free(err);
	}
	if (msg)
		gst_message_unref(msg);
	gst_object_unref(bus);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	return error;
}

PipelinePtr launch(const std::string &description)
{
	gst_test::init();
	GError *error = nullptr;
	GstElement *pipeline = gst_parse_launch(description.c_str(), &error);
	EXPECT_EQ(error, nullptr) << (error ? error->message : "");
	g_clear_error(&error);
	return PipelinePtr(pipeline);
}

void record_pts(GstElement *, GstBuffer *buffer, GstPad *, gpointer data)
{
	static_cast<std::vector<GstClockTime> *>(data)->push_back(GST_BUFFER_PTS(buffer));
}

// Records in `pts` the pts of each buffer the pipeline's fakesink "sink" hands over by `signal`
// ("handoff", or "preroll-handoff" for the buffers it prerolls with).
void record_sink_pts(GstElement *pipeline, const char *signal, std::vector<GstClockTime> *pts)
{
	GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
	ASSERT_NE(sink, nullptr);
	g_signal_connect(sink, signal, G_CALLBACK(record_pts), pts);
	gst_object_unref(sink);
}

TEST(FrcnnShapeSrc, SeeksToAnyFrame)
{
	PipelinePtr pipeline = launch(
		"frcnnshapesrc seed=4 ground-truth=" + out_file("seek.jsonl") +
		" ! video/x-raw,width=64,height=48,framerate=25/1 ! fakesink name=sink sync=false "
		"signal-handoffs=true");
	ASSERT_TRUE(pipeline);
	std::vector<GstClockTime> pts;
	record_sink_pts(pipeline.get(), "handoff", &pts);

	gst_element_set_state(pipeline.get(), GST_STATE_PAUSED);
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
		  GST_STATE_CHANGE_SUCCESS);
	ASSERT_TRUE(gst_element_seek(pipeline.get(), 1.0, GST_FORMAT_TIME,
				     static_cast<GstSeekFlags>(GST_SEEK_FLAG_FLUSH |
							       GST_SEEK_FLAG_ACCURATE),
				     GST_SEEK_TYPE_SET, GST_SECOND, GST_SEEK_TYPE_SET,
				     1200 * GST_MSECOND));
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
		  GST_STATE_CHANGE_SUCCESS);
	pts.clear(); // whatever prerolled before the seek
	EXPECT_EQ(play_to_end(pipeline.get()), "");
	pipeline.reset();

	// Frames 25..29 (1.00 s to 1.16 s), then EOS at the segment's stop.
	const std::vector<GstClockTime> expected{ 1000 * GST_MSECOND, 1040 * GST_MSECOND,
						  1080 * GST_MSECOND, 1120 * GST_MSECOND,
						  1160 * GST_MSECOND };
	EXPECT_EQ(pts, expected);
	// The ground truth names the frames drawn: the last one written is frame 29, as drawn by
	// the library.
	const std::vector<json> truth = read_lines(out_file("seek.jsonl"));
	ASSERT_FALSE(truth.empty());
	EXPECT_EQ(truth.back().at("frame").get<int>(), 29);
	EXPECT_EQ(truth.back().at("pts").get<GstClockTime>(), 1160 * GST_MSECOND);
	frcnn::ShapesOptions options;
	options.width = 64;
	options.height = 48;
	options.seed = 4;
	EXPECT_EQ(truth.back().at("detections").size(),
		  frcnn::ShapesGenerator(options).scene(29).objects.size());
}

// A seek to a frame's own pts starts drawing at that frame, also at rates whose pts are rounded
// down (frame 1 of 30000/1001 is at 33366666 ns), not at the frame before it (which a sink would
// clip, but which was drawn and written to the ground truth).
struct LeavingFrames {
	std::mutex mutex;
	std::vector<GstClockTime> pts; // since the last flush
};

GstPadProbeReturn record_leaving(GstPad *, GstPadProbeInfo *info, gpointer data)
{
	auto *frames = static_cast<LeavingFrames *>(data);
	std::lock_guard<std::mutex> lock(frames->mutex);
	if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER)
		frames->pts.push_back(GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info)));
	else if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_FLUSH_STOP)
		frames->pts.clear();
	return GST_PAD_PROBE_OK;
}

TEST(FrcnnShapeSrc, ASeekToAFramesPtsStartsAtThatFrame)
{
	PipelinePtr pipeline = launch("frcnnshapesrc name=src ! video/x-raw,width=64,height=48,framerate=30000/1001 ! "
				      "fakesink sync=false");
	ASSERT_TRUE(pipeline);
	LeavingFrames frames;
	GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline.get()), "src");
	GstPad *pad = gst_element_get_static_pad(src, "src");
	gst_pad_add_probe(pad, static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_FLUSH),
			  record_leaving, &frames, nullptr);
	gst_object_unref(pad);
	gst_object_unref(src);
	gst_element_set_state(pipeline.get(), GST_STATE_PAUSED);
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
		  GST_STATE_CHANGE_SUCCESS);
	for (const GstClockTime position : { GstClockTime(33366666), GstClockTime(100100000) }) {
		ASSERT_TRUE(gst_element_seek(pipeline.get(), 1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
					     GST_SEEK_TYPE_SET, position, GST_SEEK_TYPE_NONE, 0));
		ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
			  GST_STATE_CHANGE_SUCCESS);
		std::lock_guard<std::mutex> lock(frames.mutex);
		ASSERT_FALSE(frames.pts.empty());
		EXPECT_EQ(frames.pts.front(), position) << "the first frame after the seek is the one at the position";
	}
}

GstPadProbeReturn count_flushes(GstPad *, GstPadProbeInfo *info, gpointer data)
{
	if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_FLUSH_START)
		++*static_cast<std::atomic<int> *>(data);
	return GST_PAD_PROBE_OK;
}

// Reverse playback is refused before anything is flushed: the stream goes on as it was.
TEST(FrcnnShapeSrc, AReverseSeekIsRefusedWithoutAFlush)
{
	PipelinePtr pipeline = launch("frcnnshapesrc name=src num-buffers=5 ! video/x-raw,width=64,height=48 ! "
				      "fakesink name=sink sync=false signal-handoffs=true");
	ASSERT_TRUE(pipeline);
	std::atomic<int> flushes{ 0 };
	std::vector<GstClockTime> pts;
	GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline.get()), "src");
	GstPad *pad = gst_element_get_static_pad(src, "src");
	gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_FLUSH, count_flushes, &flushes, nullptr);
	gst_object_unref(pad);
	gst_object_unref(src);
	record_sink_pts(pipeline.get(), "handoff", &pts);
	gst_element_set_state(pipeline.get(), GST_STATE_PAUSED);
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
		  GST_STATE_CHANGE_SUCCESS);
	EXPECT_FALSE(gst_element_seek(pipeline.get(), -1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
				      GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_SET, GST_SECOND));
	/* Sent to the source itself, the seek takes another way into GstBaseSrc. */
	src = gst_bin_get_by_name(GST_BIN(pipeline.get()), "src");
	EXPECT_FALSE(gst_element_seek(src, -1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0,
				      GST_SEEK_TYPE_SET, GST_SECOND));
	gst_object_unref(src);
	EXPECT_EQ(flushes.load(), 0);
	EXPECT_EQ(play_to_end(pipeline.get()), "");
	EXPECT_EQ(pts.size(), 5u) << "every frame of the stream, once";
}

// A ground-truth line that cannot be written (a full disk) posts one error and stops the stream.
TEST(FrcnnShapeSrc, AGroundTruthThatCannotBeWrittenStopsTheStream)
{
	PipelinePtr pipeline = launch("frcnnshapesrc name=src num-buffers=20 ground-truth=/dev/full ! "
				      "video/x-raw,width=64,height=48 ! fakesink name=sink sync=false async=false "
				      "signal-handoffs=true");
	ASSERT_TRUE(pipeline);
	/* async=false: the error fails the pipeline's state change, and a prerolling sink would
	 * hold the source up for good; this one takes every frame. */
	gst_pipeline_set_auto_flush_bus(GST_PIPELINE(pipeline.get()), FALSE);
	std::vector<GstClockTime> pts;
	record_sink_pts(pipeline.get(), "handoff", &pts);
	gst_element_set_state(pipeline.get(), GST_STATE_PLAYING);
	GstBus *bus = gst_element_get_bus(pipeline.get());
	GstMessage *first = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_ERROR);
	ASSERT_NE(first, nullptr);
	GError *first_error = nullptr;
	gst_message_parse_error(first, &first_error, nullptr);
	EXPECT_NE(std::string(first_error->message).find("Could not write the ground truth to '/dev/full'"),
		  std::string::npos) << first_error->message;
	EXPECT_NE(std::string(first_error->message).find("set 'ground-truth' to another file"), std::string::npos)
		<< first_error->message;
	g_error_free(first_error);
	gst_message_unref(first);
	/* Until the source has stopped streaming (or sent its 20 frames). */
	GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline.get()), "src");
	gst_test::wait_until_not_streaming(src);
	gst_object_unref(src);
	gst_element_set_state(pipeline.get(), GST_STATE_NULL);
	EXPECT_LE(pts.size(), 1u) << "the stream stops at the frame after the failed line";
	int more = 0;
	while (GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
		GError *err = nullptr;
		gst_message_parse_error(message, &err, nullptr);
		more += std::string(err->message).find("ground truth") != std::string::npos;
		g_error_free(err);
		gst_message_unref(message);
	}
	gst_object_unref(bus);
	EXPECT_EQ(more, 0) << "the failure is posted once";
}

void change_rate_after_five(GstElement *, GstBuffer *buffer, GstPad *, gpointer data)
{
	if (GST_BUFFER_OFFSET(buffer) != 4)
		return;
	GstCaps *caps = gst_caps_from_string("video/x-raw,width=64,height=48,framerate=50/1");
	g_object_set(data, "caps", caps, nullptr);
	gst_caps_unref(caps);
}

// A new frame rate mid-stream: the frames after the change follow the last one at the new rate,
// their timestamps going on from it (not jumping back to frame n at the new rate), and the
// ground truth says the same.
TEST(FrcnnShapeSrc, ANewFrameRateGoesOnFromTheLastFrame)
{
	PipelinePtr pipeline = launch("frcnnshapesrc num-buffers=8 ground-truth=" + out_file("rate.jsonl") +
				      " ! capsfilter name=filter caps=video/x-raw,width=64,height=48,framerate=25/1 ! "
				      "fakesink name=sink sync=false signal-handoffs=true");
	ASSERT_TRUE(pipeline);
	std::vector<GstClockTime> pts;
	GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline.get()), "sink");
	GstElement *filter = gst_bin_get_by_name(GST_BIN(pipeline.get()), "filter");
	g_signal_connect(sink, "handoff", G_CALLBACK(record_pts), &pts);
	g_signal_connect(sink, "handoff", G_CALLBACK(change_rate_after_five), filter);
	gst_object_unref(sink);
	EXPECT_EQ(play_to_end(pipeline.get()), "");
	pipeline.reset();
	gst_object_unref(filter);

	/* 5 frames at 25/s (40 ms apart), then 20 ms apart from the 200 ms the fifth ends at. The
	 * change may take effect a frame late (a frame already drawn at the old rate). */
	ASSERT_EQ(pts.size(), 8u);
	for (std::size_t i = 0; i < 5; i++)
		EXPECT_EQ(pts[i], i * 40 * GST_MSECOND);
	for (std::size_t i = 5; i < pts.size(); i++) {
		EXPECT_GT(pts[i], pts[i - 1]) << "frame " << i;
		EXPECT_LE(pts[i] - pts[i - 1], 40 * GST_MSECOND) << "frame " << i;
	}
	EXPECT_EQ(pts.back() - pts[pts.size() - 2], 20 * GST_MSECOND);
	const std::vector<json> truth = read_lines(out_file("rate.jsonl"));
	ASSERT_EQ(truth.size(), pts.size());
	for (std::size_t i = 0; i < truth.size(); i++)
		EXPECT_EQ(truth[i].at("pts").get<GstClockTime>(), pts[i]) << "frame " << i;
}

// Live: the source is not seekable, and the ground truth has each frame's pts as it leaves the
// source (timed by the clock from the first frame on), as an element behind sees it.
TEST(FrcnnShapeSrc, LiveGroundTruthHasThePtsTheFramesLeaveWith)
{
	PipelinePtr pipeline = launch("frcnnshapesrc is-live=true num-buffers=4 ground-truth=" +
				      out_file("live.jsonl") +
				      " ! video/x-raw,width=64,height=48,framerate=50/1 ! "
				      "fakesink name=sink sync=true signal-handoffs=true");
	ASSERT_TRUE(pipeline);
	std::vector<GstClockTime> pts;
	record_sink_pts(pipeline.get(), "handoff", &pts);
	gst_element_set_state(pipeline.get(), GST_STATE_PLAYING);
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
		  GST_STATE_CHANGE_SUCCESS);
	GstQuery *seeking = gst_query_new_seeking(GST_FORMAT_TIME);
	ASSERT_TRUE(gst_element_query(pipeline.get(), seeking));
	gboolean seekable = TRUE;
	gst_query_parse_seeking(seeking, nullptr, &seekable, nullptr, nullptr);
	gst_query_unref(seeking);
	EXPECT_FALSE(seekable);
	EXPECT_EQ(play_to_end(pipeline.get()), "");
	pipeline.reset();

	const std::vector<json> truth = read_lines(out_file("live.jsonl"));
	ASSERT_EQ(truth.size(), 4u);
	ASSERT_EQ(pts.size(), 4u);
	for (std::size_t i = 0; i < truth.size(); i++)
		EXPECT_EQ(truth[i].at("pts").get<GstClockTime>(), pts[i]) << "frame " << i;
}

TEST(FrcnnShapeSrc, LiveModeKeepsTheFrameRate)
{
	PipelinePtr pipeline = launch(
		"frcnnshapesrc name=src is-live=true num-buffers=11 ! "
		"video/x-raw,width=64,height=48,framerate=50/1 ! fakesink sync=true");
	ASSERT_TRUE(pipeline);
	GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline.get()), "src");
	ASSERT_TRUE(src);
	EXPECT_TRUE(gst_base_src_is_live(GST_BASE_SRC(src)));

	const auto start = std::chrono::steady_clock::now();
	gst_element_set_state(pipeline.get(), GST_STATE_PLAYING);
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND),
		  GST_STATE_CHANGE_SUCCESS);
	// A frame is ready one frame duration after its timestamp: 20 ms of latency; no upper bound
	// (frames are drawn when asked for), so that latency added downstream needs no queue.
	GstQuery *query = gst_query_new_latency();
	ASSERT_TRUE(gst_element_query(src, query));
	gst_object_unref(src);
	gboolean live = FALSE;
	GstClockTime min_latency = 0, max_latency = 0;
	gst_query_parse_latency(query, &live, &min_latency, &max_latency);
	gst_query_unref(query);
	EXPECT_TRUE(live);
	EXPECT_EQ(min_latency, 20 * GST_MSECOND);
	EXPECT_EQ(max_latency, GST_CLOCK_TIME_NONE);
	EXPECT_EQ(play_to_end(pipeline.get()), "");
	const double seconds =
		std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
	// 11 frames at 50/s: the last is due 200 ms after the first.
	EXPECT_GE(seconds, 0.19);

	// Not live: as fast as it can draw (the same frames in far less time is not guaranteed on
	// a loaded machine, so only the flag is checked).
	PipelinePtr offline = launch("frcnnshapesrc name=src ! fakesink");
	GstElement *src2 = gst_bin_get_by_name(GST_BIN(offline.get()), "src");
	ASSERT_TRUE(src2);
	EXPECT_FALSE(gst_base_src_is_live(GST_BASE_SRC(src2)));
	gst_object_unref(src2);
}

TEST(FrcnnShapeSrc, Properties)
{
	gst_test::init();
	GstElement *src = gst_element_factory_make("frcnnshapesrc", nullptr);
	ASSERT_TRUE(src);
	guint64 seed = 1;
	guint min_objects = 0, max_objects = 0, scene_frames = 0;
	gchar *truth = nullptr;
	g_object_get(src, "seed", &seed, "min-objects", &min_objects, "max-objects", &max_objects,
		     "scene-frames", &scene_frames, "ground-truth", &truth, nullptr);
	EXPECT_EQ(seed, 0u);
	EXPECT_EQ(min_objects, 1u);
	EXPECT_EQ(max_objects, 6u);
	EXPECT_EQ(scene_frames, 100u);
	EXPECT_STREQ(truth, "");
	g_free(truth);

	g_object_set(src, "seed", G_GUINT64_CONSTANT(18446744073709551615), "min-objects", 2,
		     "max-objects", 3, "scene-frames", 1, "ground-truth", "/tmp/x.jsonl", nullptr);
	g_object_get(src, "seed", &seed, "min-objects", &min_objects, "max-objects", &max_objects,
		     "scene-frames", &scene_frames, "ground-truth", &truth, nullptr);
	EXPECT_EQ(seed, G_GUINT64_CONSTANT(18446744073709551615));
	EXPECT_EQ(min_objects, 2u);
	EXPECT_EQ(max_objects, 3u);
	EXPECT_EQ(scene_frames, 1u);
	EXPECT_STREQ(truth, "/tmp/x.jsonl");
	g_free(truth);
	gst_object_unref(src);

	// Object counts within the bounds, every frame a new scene.
	const SourceRun run = run_source("seed=9 min-objects=2 max-objects=3 scene-frames=1",
				   "video/x-raw,width=160,height=120", 20, out_file("counts.jsonl"));
	ASSERT_EQ(run.truth.size(), 20u);
	for (const json &line : run.truth)
		EXPECT_LE(line.at("detections").size(), 3u);
}

// The settings of the video are read as it starts: set while it runs, they are not taken (the
// value in use reads back) and a warning says so; in READY they are.
TEST(FrcnnShapeSrc, SettingsChangedWhileRunningAreRefusedAndSaySo)
{
	PipelinePtr pipeline = launch("frcnnshapesrc name=src seed=4 ! video/x-raw,width=64,height=48 ! fakesink");
	GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline.get()), "src");
	ASSERT_NE(src, nullptr);
	ASSERT_NE(gst_element_set_state(pipeline.get(), GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
	ASSERT_EQ(gst_element_get_state(pipeline.get(), nullptr, nullptr, 20 * GST_SECOND), GST_STATE_CHANGE_SUCCESS);
	GstBus *bus = gst_element_get_bus(pipeline.get());
	/* A refused value is no change: nothing is notified. */
	int notified = 0;
	g_signal_connect(src, "notify", G_CALLBACK(+[](GObject *, GParamSpec *, gpointer count) {
				 ++*static_cast<int *>(count);
			 }),
			 &notified);
	g_object_set(src, "seed", G_GUINT64_CONSTANT(5), "min-objects", 0u, nullptr);
	guint64 seed = 0;
	guint min_objects = 9;
	g_object_get(src, "seed", &seed, "min-objects", &min_objects, nullptr);
	EXPECT_EQ(seed, 4u) << "the seed read back is not the video's";
	EXPECT_EQ(min_objects, 1u);
	std::vector<std::string> warnings;
	while (GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING)) {
		GError *error = nullptr;
		gst_message_parse_warning(message, &error, nullptr);
		warnings.push_back(error->message);
		g_error_free(error);
		gst_message_unref(message);
	}
	ASSERT_EQ(warnings.size(), 2u);
	EXPECT_EQ(warnings[0].rfind("'seed' cannot change while the element runs", 0), 0u) << warnings[0];
	EXPECT_EQ(warnings[1].rfind("'min-objects' cannot change while the element runs", 0), 0u) << warnings[1];
	g_object_set(src, "seed", G_GUINT64_CONSTANT(4), "ground-truth", nullptr, nullptr);
	EXPECT_EQ(gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING), nullptr)
		<< "the seed in use, set again, and no ground truth as unset (\"\") and as NULL";
	g_object_set(src, "is-live", TRUE, nullptr);
	gboolean live = TRUE;
	g_object_get(src, "is-live", &live, nullptr);
	EXPECT_FALSE(live) << "is-live was taken while the source runs";
	GstMessage *live_warning = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING);
	EXPECT_NE(live_warning, nullptr) << "no warning for is-live";
	if (live_warning)
		gst_message_unref(live_warning);
	EXPECT_EQ(notified, 0) << "refused settings were notified";

	ASSERT_EQ(gst_element_set_state(pipeline.get(), GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
	g_object_set(src, "seed", G_GUINT64_CONSTANT(5), nullptr);
	g_object_get(src, "seed", &seed, nullptr);
	EXPECT_EQ(seed, 5u) << "in READY the seed is taken";
	EXPECT_EQ(notified, 1) << "the seed taken was not notified once";
	gst_element_set_state(pipeline.get(), GST_STATE_NULL);
	gst_object_unref(bus);
	gst_object_unref(src);
}

TEST(FrcnnShapeSrc, Errors)
{
	PipelinePtr bad_counts = launch("frcnnshapesrc min-objects=5 max-objects=2 num-buffers=2 ! fakesink");
	ASSERT_TRUE(bad_counts);
	const std::string counts_error = play_to_end(bad_counts.get());
	EXPECT_NE(counts_error.find("'min-objects' (5) is larger than 'max-objects' (2)"),
		  std::string::npos)
		<< counts_error;
	// Refused by the state change itself, not later by the streaming thread.
	PipelinePtr bad_counts_again = launch("frcnnshapesrc min-objects=5 max-objects=2 num-buffers=2 ! fakesink");
	ASSERT_TRUE(bad_counts_again);
	EXPECT_EQ(gst_element_set_state(bad_counts_again.get(), GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
	gst_element_set_state(bad_counts_again.get(), GST_STATE_NULL);

	PipelinePtr bad_file = launch(
		"frcnnshapesrc num-buffers=2 ground-truth=/nonexistent-folder/truth.jsonl ! fakesink");
	ASSERT_TRUE(bad_file);
	const std::string file_error = play_to_end(bad_file.get());
	EXPECT_NE(file_error.find("Could not open '/nonexistent-folder/truth.jsonl'"),
		  std::string::npos)
		<< file_error;
	EXPECT_NE(file_error.find("Set 'ground-truth' to a file in a writable folder"), std::string::npos) << file_error;

	// Caps it cannot produce (linked without checks, so that negotiation itself fails).
	PipelinePtr bad_caps(gst_pipeline_new(nullptr));
	GstElement *src = gst_element_factory_make("frcnnshapesrc", nullptr);
	GstElement *filter = gst_element_factory_make("capsfilter", nullptr);
	GstElement *sink = gst_element_factory_make("fakesink", nullptr);
	ASSERT_TRUE(src && filter && sink);
	GstCaps *nv12 = gst_caps_from_string("video/x-raw,format=NV12,width=64,height=48");
	g_object_set(filter, "caps", nv12, nullptr);
	gst_caps_unref(nv12);
	gst_bin_add_many(GST_BIN(bad_caps.get()), src, filter, sink, nullptr);
	ASSERT_TRUE(gst_element_link_pads_full(src, "src", filter, "sink", GST_PAD_LINK_CHECK_NOTHING));
	ASSERT_TRUE(gst_element_link_pads_full(filter, "src", sink, "sink", GST_PAD_LINK_CHECK_NOTHING));
	EXPECT_NE(play_to_end(bad_caps.get()), "");
}

} // namespace

// SPDX-License-Identifier: BSD-3-Clause
// frcnnjson: one JSON object per frame, to a file, to standard output and as bus messages.

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gst_test_utils.h"
#include "meta.h"

namespace {

using nlohmann::json;

constexpr int kWidth = 320, kHeight = 240;

struct HarnessDeleter {
	void operator()(GstHarness *h) const { gst_harness_teardown(h); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

HarnessPtr json_harness(const std::string &properties)
{
	gst_test::init();
	GError *error = nullptr;
	GstElement *element = gst_parse_launch(("frcnnjson " + properties).c_str(), &error);
	EXPECT_EQ(error, nullptr) << (error ? error->message : "");
	g_clear_error(&error);
	gst_object_ref_sink(element);
	GstHarness *h = gst_harness_new_with_element(element, "sink", "src");
	gst_object_unref(element);
	gst_harness_set_src_caps_str(h, "video/x-raw,format=NV12,width=320,height=240,framerate=30/1");
	return HarnessPtr(h);
}

GstBuffer *frame_buffer(GstClockTime pts)
{
	GstBuffer *buffer = gst_buffer_new_allocate(nullptr, kWidth * kHeight * 3 / 2, nullptr);
	gst_buffer_memset(buffer, 0, 0x42, kWidth * kHeight * 3 / 2);
	GST_BUFFER_PTS(buffer) = pts;
	return buffer;
}

// As frcnndetect writes it: the normalised box in the "detection" param, label_id a gint (other
// producers may write a guint).
GstVideoRegionOfInterestMeta *add_detection(GstBuffer *buffer, double x1, double y1, double x2,
					    double y2, guint id, const char *label, double score,
					    GType id_type = G_TYPE_INT)
{
	GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta(
		buffer, label, guint(x1), guint(y1), guint(x2 - x1), guint(y2 - y1));
	gst_video_region_of_interest_meta_add_param(
		roi, gst_structure_new("detection", "label_id", id_type, id, "label", G_TYPE_STRING,
				       label, "confidence", G_TYPE_DOUBLE, score, "x_min",
				       G_TYPE_DOUBLE, x1 / kWidth, "y_min", G_TYPE_DOUBLE, y1 / kHeight,
				       "x_max", G_TYPE_DOUBLE, x2 / kWidth, "y_max", G_TYPE_DOUBLE,
				       y2 / kHeight, nullptr));
	return roi;
}

std::vector<std::string> read_lines(const std::string &path)
{
	std::ifstream file(path);
	std::vector<std::string> lines;
	for (std::string line; std::getline(file, line);)
		lines.push_back(line);
	return lines;
}

// Three frames: two detections (one from another producer, found inside the first), none
// (without a timestamp), one (with an unsigned label_id).
void push_three_frames(GstHarness *h)
{
	GstBuffer *a = frame_buffer(0);
	add_detection(a, 10.25, 20.5, 110.75, 200, 1, "person", 0.912345)->parent_id = -1;
	GstVideoRegionOfInterestMeta *face =
		gst_buffer_add_video_region_of_interest_meta(a, "face", 30, 40, 20, 25);
	face->id = 7;
	face->parent_id = 0;
	GstBuffer *b = frame_buffer(GST_CLOCK_TIME_NONE);
	GstBuffer *c = frame_buffer(66666666);
	add_detection(c, 0, 0, 320, 240, 3, "car", 0.5, G_TYPE_UINT);

	for (GstBuffer *buffer : { a, b, c }) {
		GstBuffer *in = buffer;
		gst_test::BufferPtr out(gst_harness_push_and_pull(h, buffer));
		ASSERT_TRUE(out);
		EXPECT_EQ(out.get(), in) << "passed through, not copied";
	}
}

void expect_three_frames(const std::vector<std::string> &lines)
{
	ASSERT_EQ(lines.size(), 3u);
	/* The keys in the documented order. */
	EXPECT_EQ(lines[1], R"({"frame":1,"pts":null,"width":320,"height":240,"detections":[]})");

	const json first = json::parse(lines[0]);
	EXPECT_EQ(first["frame"], 0);
	EXPECT_EQ(first["pts"], 0);
	EXPECT_EQ(first["width"], kWidth);
	EXPECT_EQ(first["height"], kHeight);
	ASSERT_EQ(first["detections"].size(), 2u);
	const json &person = first["detections"][0];
	EXPECT_EQ(person["label"], "person");
	EXPECT_EQ(person["label_id"], 1);
	EXPECT_NEAR(person["score"].get<double>(), 0.912345, 1e-4);
	const std::vector<double> box = person["box"];
	ASSERT_EQ(box.size(), 4u);
	EXPECT_NEAR(box[0], 10.25, 0.006);
	EXPECT_NEAR(box[1], 20.5, 0.006);
	EXPECT_NEAR(box[2], 110.75, 0.006);
	EXPECT_NEAR(box[3], 200, 0.006);
	EXPECT_EQ(person["id"], 0);
	EXPECT_EQ(person["parent_id"], -1);
	const json &face = first["detections"][1];
	EXPECT_EQ(face["id"], 7);
	EXPECT_EQ(face["parent_id"], 0);
	EXPECT_EQ(face["label"], "face");
	EXPECT_TRUE(face["label_id"].is_null());
	EXPECT_TRUE(face["score"].is_null());
	EXPECT_EQ(face["box"], json({ 30.0, 40.0, 50.0, 65.0 }));

	const json third = json::parse(lines[2]);
	EXPECT_EQ(third["frame"], 2);
	EXPECT_EQ(third["pts"], 66666666);
	ASSERT_EQ(third["detections"].size(), 1u);
	EXPECT_EQ(third["detections"][0]["box"], json({ 0.0, 0.0, 320.0, 240.0 }));
	EXPECT_EQ(third["detections"][0]["label_id"], 3);
	/* The keys in the documented order. */
	EXPECT_NE(lines[2].find(R"({"box":[0.0,0.0,320.0,240.0],"label":"car","label_id":3,"score":0.5,"id":0,"parent_id":0})"),
		  std::string::npos) << lines[2];
}

TEST(FrcnnJson, WritesOneLinePerFrame)
{
	const std::string path = gst_test::out_dir() + "/frames.jsonl";
	{
		HarnessPtr h = json_harness("location=\"" + path + "\"");
		push_three_frames(h.get());
		/* Each line is on disk as soon as its frame has passed. */
		EXPECT_EQ(read_lines(path).size(), 3u);
	}
	expect_three_frames(read_lines(path));
}

TEST(FrcnnJson, PostsMessages)
{
	const std::string path = gst_test::out_dir() + "/messages.jsonl";
	HarnessPtr h = json_harness("post-messages=true location=\"" + path + "\"");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	push_three_frames(h.get());

	std::vector<std::string> posted;
	while (GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
		const GstStructure *s = gst_message_get_structure(message);
		EXPECT_TRUE(gst_structure_has_name(s, "frcnnjson"));
		guint64 frame = 0;
		guint count = 0;
		gint width = 0;
		EXPECT_TRUE(gst_structure_get(s, "frame", G_TYPE_UINT64, &frame, "detections",
					      G_TYPE_UINT, &count, "width", G_TYPE_INT, &width,
					      nullptr));
		EXPECT_EQ(frame, posted.size());
		EXPECT_EQ(width, kWidth);
		posted.push_back(gst_structure_get_string(s, "json"));
		EXPECT_EQ(json::parse(posted.back())["detections"].size(), count);
		gst_message_unref(message);
	}
	expect_three_frames(posted);
	EXPECT_EQ(posted, read_lines(path)) << "the messages carry the lines of the file";
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// format=dlstreamer: the object DL Streamer's gvametaconvert writes, keys sorted; the box and
// score as the metadata holds them, each region's id, the timestamp in stream time (none for a
// frame before the segment's start, the pts in a segment of bytes).
TEST(FrcnnJson, DlStreamerFormat)
{
	const std::string path = gst_test::out_dir() + "/dlstreamer.jsonl";
	{
		HarnessPtr h = json_harness("format=dlstreamer location=\"" + path + "\"");
		push_three_frames(h.get());

		/* A new segment: its stream time starts 2 s into the position of the buffers. */
		GstSegment segment;
		gst_segment_init(&segment, GST_FORMAT_TIME);
		segment.start = segment.position = 2 * GST_SECOND;
		segment.time = 5 * GST_SECOND;
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame_buffer(2500 * GST_MSECOND)));
		ASSERT_TRUE(out);
		/* A frame that starts before the segment (the one a seek lands in) has no stream
		 * time. */
		out.reset(gst_harness_push_and_pull(h.get(), frame_buffer(1900 * GST_MSECOND)));
		ASSERT_TRUE(out);

		/* A segment in bytes (an appsrc's default): the pts is the time, without GStreamer's
		 * complaint of a segment of another format. */
		guint criticals = 0;
		const guint handler = g_log_set_handler(
			"GStreamer", G_LOG_LEVEL_CRITICAL,
			[](const gchar *, GLogLevelFlags, const gchar *, gpointer count) { ++*static_cast<guint *>(count); },
			&criticals);
		gst_segment_init(&segment, GST_FORMAT_BYTES);
		ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
		out.reset(gst_harness_push_and_pull(h.get(), frame_buffer(3 * GST_SECOND)));
		g_log_remove_handler("GStreamer", handler);
		ASSERT_TRUE(out);
		EXPECT_EQ(criticals, 0u);
	}
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 6u);

	const json first = json::parse(lines[0]);
	EXPECT_EQ(lines[0].rfind(R"({"objects":[{"detection":{"bounding_box":{"x_max":)", 0), 0u)
		<< "keys sorted: " << lines[0];
	EXPECT_EQ(first["resolution"], json({ { "width", kWidth }, { "height", kHeight } }));
	EXPECT_EQ(first["timestamp"], 0);
	ASSERT_EQ(first["objects"].size(), 2u);
	const json &person = first["objects"][0];
	EXPECT_EQ(person["x"], 10);
	EXPECT_EQ(person["y"], 20);
	EXPECT_EQ(person["w"], 100);
	EXPECT_EQ(person["h"], 179);
	EXPECT_EQ(person["roi_type"], "person");
	const json &detection = person["detection"];
	EXPECT_EQ(detection["label"], "person");
	EXPECT_EQ(detection["label_id"], 1);
	EXPECT_EQ(detection["confidence"].get<double>(), 0.912345) << "the score unrounded";
	EXPECT_EQ(detection["bounding_box"], json({ { "x_min", 10.25 / kWidth },
						    { "y_min", 20.5 / kHeight },
						    { "x_max", 110.75 / kWidth },
						    { "y_max", 200.0 / kHeight } }));
	const json &face = first["objects"][1];
	EXPECT_EQ(person["region_id"], 0);
	EXPECT_EQ(face, json({ { "x", 30 }, { "y", 40 }, { "w", 20 }, { "h", 25 }, { "region_id", 7 }, { "roi_type", "face" } }))
		<< "another producer's region: its rectangle, id and type only";

	EXPECT_EQ(lines[1], R"({"resolution":{"height":240,"width":320}})")
		<< "no timestamp without a pts, no objects without regions";

	const json third = json::parse(lines[2]);
	EXPECT_EQ(third["timestamp"], 66666666);
	ASSERT_EQ(third["objects"].size(), 1u);
	EXPECT_EQ(third["objects"][0]["detection"]["label_id"], 3) << "an unsigned label_id too";

	const json fourth = json::parse(lines[3]);
	EXPECT_EQ(fourth["timestamp"], 5500 * GST_MSECOND) << "the stream time: 0.5 s into a segment at 5 s";
	EXPECT_FALSE(fourth.contains("objects"));
	EXPECT_FALSE(json::parse(lines[4]).contains("timestamp")) << "a frame before the segment's start";
	EXPECT_EQ(json::parse(lines[5])["timestamp"], 3 * GST_SECOND) << "a segment in bytes";
}

// A region whose "detection" param has no box is given the rectangle's as DL Streamer's
// bounding_box, added in double: a rectangle at the end of guint's range does not wrap around.
TEST(FrcnnJson, DlStreamerBoxOfARectangleAtTheEndOfTheRange)
{
	const std::string path = gst_test::out_dir() + "/dlstreamer-range.jsonl";
	{
		HarnessPtr h = json_harness("format=dlstreamer location=\"" + path + "\"");
		GstBuffer *buffer = frame_buffer(0);
		GstVideoRegionOfInterestMeta *roi =
			gst_buffer_add_video_region_of_interest_meta(buffer, "car", 4294967000u, 4294967200u, 1000, 500);
		gst_video_region_of_interest_meta_add_param(
			roi, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, 0.5, nullptr));
		ASSERT_TRUE(gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), buffer)));
	}
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 1u);
	const json box = json::parse(lines[0])["objects"][0]["detection"]["bounding_box"];
	EXPECT_DOUBLE_EQ(box["x_min"].get<double>(), 4294967000.0 / kWidth) << box;
	EXPECT_DOUBLE_EQ(box["x_max"].get<double>(), 4294968000.0 / kWidth) << box;
	EXPECT_DOUBLE_EQ(box["y_max"].get<double>(), 4294967700.0 / kHeight) << box;
}

// Another producer's score too large to round (1e306, which times 1e4 is infinity) is written as
// it is, not as null (null is for a score that is not finite).
TEST(FrcnnJson, NumbersTooLargeToRoundAreWrittenAsTheyAre)
{
	const std::string path = gst_test::out_dir() + "/large-numbers.jsonl";
	{
		HarnessPtr h = json_harness("location=\"" + path + "\"");
		GstBuffer *buffer = frame_buffer(0);
		GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta(buffer, "car", 1, 2, 3, 4);
		gst_video_region_of_interest_meta_add_param(
			roi, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, 1e306, nullptr));
		ASSERT_TRUE(gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), buffer)));
	}
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 1u);
	const json detection = json::parse(lines[0])["detections"][0];
	ASSERT_TRUE(detection["score"].is_number()) << detection;
	EXPECT_EQ(detection["score"].get<double>(), 1e306);
}

// A tracker's id of the object (DL Streamer's gvatrack: an "object_id" param with an int "id")
// is the object's "id" as gvametaconvert writes it; a region without one has none.
TEST(FrcnnJson, DlStreamerTrackedObjectsKeepTheirId)
{
	const std::string path = gst_test::out_dir() + "/dlstreamer-tracked.jsonl";
	{
		HarnessPtr h = json_harness("format=dlstreamer location=\"" + path + "\"");
		GstBuffer *buffer = frame_buffer(0);
		GstVideoRegionOfInterestMeta *tracked = add_detection(buffer, 10, 20, 50, 80, 1, "person", 0.8);
		tracked->id = 4;
		gst_video_region_of_interest_meta_add_param(
			tracked, gst_structure_new("object_id", "id", G_TYPE_INT, 12, nullptr));
		add_detection(buffer, 60, 20, 90, 80, 3, "car", 0.7)->id = 5;
		ASSERT_TRUE(gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), buffer)));
	}
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 1u);
	const json objects = json::parse(lines[0])["objects"];
	ASSERT_EQ(objects.size(), 2u);
	EXPECT_EQ(objects[0]["id"], 12);
	EXPECT_EQ(objects[0]["region_id"], 4);
	EXPECT_FALSE(objects[1].contains("id")) << objects[1];
	EXPECT_EQ(objects[1]["region_id"], 5);
}

// Frames downstream reports as late (a QOS event) still get their line and go on, with the
// element's qos on too; the QOS event goes on upstream, to a detector that skips late frames.
TEST(FrcnnJson, FramesReportedLateStillGetALineAndGoOn)
{
	const std::string path = gst_test::out_dir() + "/late.jsonl";
	{
		HarnessPtr h = json_harness("qos=true location=\"" + path + "\"");
		ASSERT_TRUE(gst_test::BufferPtr(gst_harness_push_and_pull(h.get(), frame_buffer(0))));
		ASSERT_TRUE(gst_harness_push_upstream_event(
			h.get(), gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 0.5, GST_SECOND, 10 * GST_SECOND)));
		GstEvent *upstream = gst_harness_try_pull_upstream_event(h.get());
		while (upstream && GST_EVENT_TYPE(upstream) != GST_EVENT_QOS) {
			gst_event_unref(upstream);
			upstream = gst_harness_try_pull_upstream_event(h.get());
		}
		EXPECT_NE(upstream, nullptr) << "the QOS event did not go on upstream";
		if (upstream)
			gst_event_unref(upstream);
		for (GstClockTime pts : { GST_SECOND, 2 * GST_SECOND }) {
			ASSERT_EQ(gst_harness_push(h.get(), frame_buffer(pts)), GST_FLOW_OK);
			EXPECT_TRUE(gst_test::BufferPtr(gst_harness_try_pull(h.get())))
				<< "the frame at " << pts << " ns, late downstream, was dropped";
		}
	}
	EXPECT_EQ(read_lines(path).size(), 3u);
}

TEST(FrcnnJson, StandardOutput)
{
	gst_test::init();
	gchar *out = nullptr, *err = nullptr;
	gint status = 0;
	const gchar *argv[] = { "gst-launch-1.0", "-q", "videotestsrc", "num-buffers=4", "!",
				"video/x-raw,width=64,height=48", "!", "frcnnjson", "location=-",
				"!", "fakesink", nullptr };
	GError *error = nullptr;
	ASSERT_TRUE(g_spawn_sync(nullptr, const_cast<gchar **>(argv), nullptr, G_SPAWN_SEARCH_PATH,
				 nullptr, nullptr, &out, &err, &status, &error))
		<< (error ? error->message : "");
	EXPECT_TRUE(g_spawn_check_wait_status(status, nullptr)) << err;
	std::vector<std::string> lines;
	std::string text(out);
	for (std::size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos;
	     start = end + 1)
		lines.push_back(text.substr(start, end - start));
	g_free(out);
	g_free(err);
	ASSERT_EQ(lines.size(), 4u) << text;
	for (std::size_t i = 0; i < lines.size(); i++) {
		const json line = json::parse(lines[i]);
		EXPECT_EQ(line["frame"], i);
		EXPECT_EQ(line["width"], 64);
		EXPECT_EQ(line["height"], 48);
		EXPECT_TRUE(line["detections"].empty());
	}
}

TEST(FrcnnJson, UnwritableLocationFailsTheStateChange)
{
	gst_test::init();
	GstElement *pipeline = gst_parse_launch(
		"videotestsrc num-buffers=1 ! frcnnjson name=json "
		"location=/nonexistent/folder/out.jsonl ! fakesink", nullptr);
	ASSERT_NE(pipeline, nullptr);
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr);
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_NE(std::string(error->message).find("Set 'location'"), std::string::npos)
		<< error->message;
	EXPECT_TRUE(g_error_matches(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE));
	g_error_free(error);
	gst_message_unref(message);
	gst_object_unref(bus);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(pipeline);
}

// A line that cannot be written (a full disk) stops the stream with a message that names the
// file and says what to do.
TEST(FrcnnJson, ALineThatCannotBeWrittenNamesTheFile)
{
	HarnessPtr h = json_harness("location=/dev/full");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	EXPECT_EQ(gst_harness_push(h.get(), frame_buffer(0)), GST_FLOW_ERROR);
	GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
	ASSERT_NE(message, nullptr) << "no error on the bus";
	GError *error = nullptr;
	gst_message_parse_error(message, &error, nullptr);
	EXPECT_STREQ(error->message, "Could not write the JSON line to '/dev/full': No space left on device. Free "
				     "space where it is, or set 'location' to another file.");
	EXPECT_TRUE(g_error_matches(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_WRITE));
	g_error_free(error);
	gst_message_unref(message);
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

TEST(FrcnnJson, FrameCountRestartsWithTheElement)
{
	const std::string path = gst_test::out_dir() + "/restart.jsonl";
	for (int run = 0; run < 2; run++) {
		HarnessPtr h = json_harness("location=\"" + path + "\"");
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame_buffer(0)));
		ASSERT_TRUE(out);
	}
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 1u) << "the file is rewritten, not appended to";
	EXPECT_EQ(json::parse(lines[0])["frame"], 0);
}

// A frame a detector passed on without running on it says so, after its detections.
TEST(FrcnnJson, FramesADetectorDidNotRunSaySo)
{
	const std::string path = gst_test::out_dir() + "/skipped.jsonl";
	{
		HarnessPtr h = json_harness("location=\"" + path + "\"");
		GstBuffer *skipped = frame_buffer(0);
		frcnn::gst::add_skipped_meta(skipped, "detect0", "interval");
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), skipped));
		ASSERT_TRUE(out);
		out.reset(gst_harness_push_and_pull(h.get(), frame_buffer(1)));
		ASSERT_TRUE(out);
	}
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 2u);
	EXPECT_EQ(lines[0], R"({"frame":0,"pts":0,"width":320,"height":240,"detections":[],)"
			    R"("skipped":[{"element":"detect0","reason":"interval"}]})");
	EXPECT_EQ(lines[1], R"({"frame":1,"pts":1,"width":320,"height":240,"detections":[]})");
}

// Elements of one process writing to one file (several streams' lines in one place): each line
// is kept whole, and an element that starts later does not empty the file.
TEST(FrcnnJson, ElementsWritingToOneFileKeepEachOthersLines)
{
	const std::string path = gst_test::out_dir() + "/shared.jsonl";
	HarnessPtr north = json_harness("source=north location=\"" + path + "\"");
	/* Lines longer than a stdio buffer: 150 detections. */
	GstBuffer *first = frame_buffer(0);
	for (int i = 0; i < 150; i++)
		add_detection(first, i, i, i + 10.5, i + 20.25, 1, "person", 0.5);
	gst_test::BufferPtr out(gst_harness_push_and_pull(north.get(), first));
	ASSERT_TRUE(out);
	{
		HarnessPtr south = json_harness("source=south location=\"" + path + "\"");
		for (int frame = 1; frame < 4; frame++) {
			out.reset(gst_harness_push_and_pull(north.get(), frame_buffer(frame)));
			ASSERT_TRUE(out);
			GstBuffer *buffer = frame_buffer(frame);
			for (int i = 0; i < 150; i++)
				add_detection(buffer, i, i, i + 10.5, i + 20.25, 2, "car", 0.5);
			out.reset(gst_harness_push_and_pull(south.get(), buffer));
			ASSERT_TRUE(out);
		}
	}
	out.reset(gst_harness_push_and_pull(north.get(), frame_buffer(4)));
	ASSERT_TRUE(out);
	north.reset();

	std::map<std::string, std::vector<int>> frames;
	for (const std::string &line : read_lines(path)) {
		const json object = json::parse(line, nullptr, false);
		ASSERT_FALSE(object.is_discarded()) << "a line that is no JSON: " << line.substr(0, 200);
		frames[object["source"]].push_back(object["frame"]);
	}
	EXPECT_EQ(frames["north"], (std::vector<int>{ 0, 1, 2, 3, 4 }));
	EXPECT_EQ(frames["south"], (std::vector<int>{ 0, 1, 2 }));
}

} // namespace

namespace {

// The first error or warning message on `element`'s bus, as text ("" for none).
std::string bus_text(GstBus *bus, GstMessageType type)
{
	GstMessage *message = gst_bus_pop_filtered(bus, type);
	if (!message)
		return "";
	GError *error = nullptr;
	if (type == GST_MESSAGE_ERROR)
		gst_message_parse_error(message, &error, nullptr);
	else
		gst_message_parse_warning(message, &error, nullptr);
	const bool settings = g_error_matches(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
	std::string text = std::string(settings ? "" : "(not a settings error) ") + error->message;
	g_error_free(error);
	gst_message_unref(message);
	return text;
}

} // namespace

// source and tags go into every line, after height in frcnn's order (the tags' keys as given),
// keys sorted in DL Streamer's, as gvametaconvert writes them.
TEST(FrcnnJson, SourceAndTagsInEveryLine)
{
	const std::string props = R"(source="rtsp://cam/1" tags="{\"zone\":\"north\",\"camera\":{\"floor\":2},\"ids\":[1,2]}")";
	const std::string path = gst_test::out_dir() + "/tags.jsonl";
	const std::string dl_path = gst_test::out_dir() + "/tags-dlstreamer.jsonl";
	{
		HarnessPtr h = json_harness(props + " location=\"" + path + "\"");
		push_three_frames(h.get());
	}
	{
		HarnessPtr h = json_harness(props + " format=dlstreamer location=\"" + dl_path + "\"");
		push_three_frames(h.get());
	}
	const json tags = { { "zone", "north" }, { "camera", { { "floor", 2 } } }, { "ids", { 1, 2 } } };
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 3u);
	EXPECT_EQ(lines[1], R"({"frame":1,"pts":null,"width":320,"height":240,"source":"rtsp://cam/1",)"
			    R"("tags":{"zone":"north","camera":{"floor":2},"ids":[1,2]},"detections":[]})");
	for (const std::string &line : lines) {
		const json frame = json::parse(line);
		EXPECT_EQ(frame["source"], "rtsp://cam/1");
		EXPECT_EQ(frame["tags"], tags);
	}
	EXPECT_EQ(json::parse(lines[0])["detections"].size(), 2u) << "the detections as without tags";

	const std::vector<std::string> dl_lines = read_lines(dl_path);
	ASSERT_EQ(dl_lines.size(), 3u);
	EXPECT_EQ(dl_lines[1], R"({"resolution":{"height":240,"width":320},"source":"rtsp://cam/1",)"
			       R"("tags":{"camera":{"floor":2},"ids":[1,2],"zone":"north"}})");
	for (const std::string &line : dl_lines) {
		const json frame = json::parse(line);
		EXPECT_EQ(frame["source"], "rtsp://cam/1");
		EXPECT_EQ(frame["tags"], tags);
	}
	EXPECT_EQ(json::parse(dl_lines[0])["objects"].size(), 2u);
}

// A label that is not UTF-8 (a labels file in Latin-1, another producer's roi_type) is written
// with U+FFFD for its stray byte: the line stays JSON, in either format.
TEST(FrcnnJson, ALabelThatIsNotUtf8StaysJson)
{
	for (const std::string format : { "frcnn", "dlstreamer" }) {
		SCOPED_TRACE(format);
		const std::string path = gst_test::out_dir() + "/latin1-" + format + ".jsonl";
		{
			HarnessPtr h = json_harness("format=" + format + " location=\"" + path + "\"");
			GstBuffer *buffer = frame_buffer(0);
			add_detection(buffer, 10, 20, 110, 200, 1, "carr\xe9", 0.9);
			gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), buffer));
			ASSERT_TRUE(out);
		}
		const std::vector<std::string> lines = read_lines(path);
		ASSERT_EQ(lines.size(), 1u);
		EXPECT_TRUE(json::accept(lines[0])) << lines[0];
		EXPECT_NE(lines[0].find("\"carr\xef\xbf\xbd\""), std::string::npos) << lines[0];
	}
}

// tags that are not a JSON object fail the start with a message that says what they must be.
TEST(FrcnnJson, TagsThatAreNoObjectFailTheStart)
{
	gst_test::init();
	const std::vector<std::pair<std::string, std::string>> cases = {
		{ "[1,2]", "it is a JSON array, not an object" },
		{ "\"north\"", "it is a JSON string, not an object" },
		{ "{camera:1}", "it is not JSON (parse error at line 1, column 2" },
		{ "{\"camera\":1", "it is not JSON (parse error" },
		{ "{\"camera\":1e400}", "it is not JSON (number overflow parsing '1e400')" },
		/* Deeper than a message could show: the text of the value overflowed the stack. */
		{ "{\"camera\":" + std::string(100000, '[') + std::string(100000, ']') + "}",
		  "it is not JSON this element takes (nested deeper than 1000 levels)" },
	};
	for (const auto &[tags, problem] : cases) {
		GstElement *pipeline = gst_pipeline_new(nullptr);
		GstElement *source = gst_element_factory_make("videotestsrc", nullptr);
		GstElement *element = gst_element_factory_make("frcnnjson", nullptr);
		GstElement *sink = gst_element_factory_make("fakesink", nullptr);
		ASSERT_TRUE(pipeline && source && element && sink);
		g_object_set(source, "num-buffers", 1, nullptr);
		g_object_set(element, "tags", tags.c_str(), "location", "", nullptr);
		gst_bin_add_many(GST_BIN(pipeline), source, element, sink, nullptr);
		ASSERT_TRUE(gst_element_link_many(source, element, sink, nullptr));
		EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE) << tags;
		GstBus *bus = gst_element_get_bus(pipeline);
		const std::string error = bus_text(bus, GST_MESSAGE_ERROR);
		EXPECT_EQ(error.rfind("'tags' must be a JSON object, e.g. tags='{\"camera\":\"north\"}', but " + problem, 0), 0u)
			<< tags << ": " << error;
		gst_object_unref(bus);
		gst_element_set_state(pipeline, GST_STATE_NULL);
		gst_object_unref(pipeline);
	}
}

// source and tags may change while playing: the next line has the new ones. tags that are not an
// object then are warned about once, and the lines keep the tags they had; empty tags remove them.
TEST(FrcnnJson, SourceAndTagsChangeWhilePlaying)
{
	const std::string path = gst_test::out_dir() + "/tags-playing.jsonl";
	HarnessPtr h = json_harness("location=\"" + path + "\"");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	auto push = [&] {
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame_buffer(0)));
		ASSERT_TRUE(out);
	};
	push();
	g_object_set(h->element, "source", "cam-2", "tags", "{\"shift\":\"night\"}", nullptr);
	push();
	g_object_set(h->element, "tags", "{\"shift\":", nullptr);
	push();
	push();
	g_object_set(h->element, "source", "", "tags", "", nullptr);
	push();

	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 5u);
	std::vector<json> frames;
	for (const std::string &line : lines)
		frames.push_back(json::parse(line));
	EXPECT_FALSE(frames[0].contains("source"));
	EXPECT_FALSE(frames[0].contains("tags"));
	for (int i : { 1, 2, 3 }) {
		EXPECT_EQ(frames[i]["source"], "cam-2") << "line " << i;
		EXPECT_EQ(frames[i]["tags"], json({ { "shift", "night" } })) << "line " << i;
	}
	EXPECT_FALSE(frames[4].contains("source"));
	EXPECT_FALSE(frames[4].contains("tags"));

	const std::string warning = bus_text(bus, GST_MESSAGE_WARNING);
	EXPECT_EQ(warning.rfind("'tags' must be a JSON object", 0), 0u) << warning;
	EXPECT_NE(warning.find("the lines keep the tags they had"), std::string::npos) << warning;
	EXPECT_EQ(bus_text(bus, GST_MESSAGE_WARNING), "") << "one warning for one value";
	EXPECT_EQ(bus_text(bus, GST_MESSAGE_ERROR), "");
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// The file is opened at the start: a location set while the element runs is refused with a
// warning, and the one in use still reads back (as filesink's); in READY it is taken.
TEST(FrcnnJson, LocationSetWhileRunningIsRefusedAndSaysSo)
{
	const std::string path = gst_test::out_dir() + "/location-playing.jsonl";
	const std::string other = gst_test::out_dir() + "/location-other.jsonl";
	std::remove(other.c_str());
	HarnessPtr h = json_harness("location=\"" + path + "\"");
	GstBus *bus = gst_bus_new();
	gst_element_set_bus(h->element, bus);
	gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame_buffer(0)));
	ASSERT_TRUE(out);
	/* A refused value is no change: nothing is notified. */
	int notified = 0;
	g_signal_connect(h->element, "notify::location", G_CALLBACK(+[](GObject *, GParamSpec *, gpointer count) {
				 ++*static_cast<int *>(count);
			 }),
			 &notified);
	g_object_set(h->element, "location", other.c_str(), nullptr);
	EXPECT_EQ(notified, 0) << "a refused location was notified";
	out.reset(gst_harness_push_and_pull(h.get(), frame_buffer(GST_SECOND)));
	ASSERT_TRUE(out);

	gchar *location = nullptr;
	g_object_get(h->element, "location", &location, nullptr);
	EXPECT_STREQ(location, path.c_str()) << "the location read back is not the one written to";
	g_free(location);
	EXPECT_EQ(read_lines(path).size(), 2u);
	const std::string warning = bus_text(bus, GST_MESSAGE_WARNING);
	EXPECT_EQ(warning.rfind("'location' cannot change while the element runs", 0), 0u) << warning;
	g_object_set(h->element, "location", path.c_str(), nullptr);
	EXPECT_EQ(bus_text(bus, GST_MESSAGE_WARNING), "") << "the location in use, set again, is no change";

	ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
	g_object_set(h->element, "location", other.c_str(), nullptr);
	g_object_get(h->element, "location", &location, nullptr);
	EXPECT_STREQ(location, other.c_str()) << "in READY the location is taken";
	g_free(location);
	EXPECT_EQ(notified, 1) << "the location taken was not notified once";
	EXPECT_EQ(bus_text(bus, GST_MESSAGE_WARNING), "");
	gst_element_set_bus(h->element, nullptr);
	gst_object_unref(bus);
}

// add-empty-results=false (DL Streamer's default) leaves frames without regions of interest out of
// the file and the messages; the frame numbers of the others stay as they were.
TEST(FrcnnJson, AddEmptyResultsFalseLeavesEmptyFramesOut)
{
	for (const char *format : { "frcnn", "dlstreamer" }) {
		const std::string path = gst_test::out_dir() + "/no-empty-" + format + ".jsonl";
		HarnessPtr h = json_harness(std::string("add-empty-results=false post-messages=true format=") +
					    format + " location=\"" + path + "\"");
		GstBus *bus = gst_bus_new();
		gst_element_set_bus(h->element, bus);
		push_three_frames(h.get());
		const std::vector<std::string> lines = read_lines(path);
		ASSERT_EQ(lines.size(), 2u) << format << ": the frame without regions is left out";
		std::vector<guint64> posted;
		while (GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
			guint64 frame = 0;
			EXPECT_TRUE(gst_structure_get_uint64(gst_message_get_structure(message), "frame", &frame));
			posted.push_back(frame);
			gst_message_unref(message);
		}
		EXPECT_EQ(posted, std::vector<guint64>({ 0, 2 })) << format;
		if (std::string(format) == "frcnn") {
			EXPECT_EQ(json::parse(lines[0])["frame"], 0);
			EXPECT_EQ(json::parse(lines[1])["frame"], 2);
		} else {
			EXPECT_EQ(json::parse(lines[0])["objects"].size(), 2u);
			EXPECT_EQ(json::parse(lines[1])["timestamp"], 66666666);
		}
		/* Back to every frame while playing. */
		g_object_set(h->element, "add-empty-results", TRUE, nullptr);
		gst_test::BufferPtr out(gst_harness_push_and_pull(h.get(), frame_buffer(0)));
		ASSERT_TRUE(out);
		EXPECT_EQ(read_lines(path).size(), 3u) << format;
		gst_element_set_bus(h->element, nullptr);
		gst_object_unref(bus);
	}
}

namespace {

// Anamorphic video: its lines say the pixels' shape after the height (in the documented order);
// square pixels' lines leave it out, as before (caps may change in the middle of a stream).
// frcnnjson writes boxes in the pixels of the caps' frame: it takes no GstVideoCropMeta (whole
// frames with the rectangle to show) though the elements behind it do, so that an element in
// front that crops crops the frames itself. The other metas they take are passed on.
TEST(FrcnnJson, TakesNoCropMeta)
{
	HarnessPtr h = json_harness("location=" + gst_test::out_dir() + "/crop-meta.jsonl");
	GstCaps *caps = gst_caps_from_string("video/x-raw,format=NV12,width=320,height=240,framerate=30/1");
	const gst_test::ProposedMetas metas = gst_test::metas_passed_upstream(h.get(), caps);
	gst_caps_unref(caps);
	EXPECT_TRUE(metas.video_meta);
	EXPECT_FALSE(metas.crop_meta);
}

TEST(FrcnnJson, PixelAspectRatioOfAnamorphicVideo)
{
	const std::string path = gst_test::out_dir() + "/anamorphic.jsonl";
	HarnessPtr h = json_harness("location=\"" + path + "\"");
	gst_harness_set_src_caps_str(h.get(), "video/x-raw,format=NV12,width=320,height=240,framerate=30/1,"
					      "pixel-aspect-ratio=64/45");
	gst_test::BufferPtr first(gst_harness_push_and_pull(h.get(), frame_buffer(0)));
	ASSERT_TRUE(first);
	gst_harness_set_src_caps_str(h.get(), "video/x-raw,format=NV12,width=320,height=240,framerate=30/1,"
					      "pixel-aspect-ratio=1/1");
	gst_test::BufferPtr second(gst_harness_push_and_pull(h.get(), frame_buffer(33333333)));
	ASSERT_TRUE(second);
	const std::vector<std::string> lines = read_lines(path);
	ASSERT_EQ(lines.size(), 2u);
	EXPECT_EQ(lines[0], R"({"frame":0,"pts":0,"width":320,"height":240,"pixel_aspect_ratio":[64,45],"detections":[]})");
	EXPECT_EQ(lines[1], R"({"frame":1,"pts":33333333,"width":320,"height":240,"detections":[]})");
}

} // namespace

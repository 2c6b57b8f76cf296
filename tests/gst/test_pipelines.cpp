// SPDX-License-Identifier: BSD-3-Clause
// Real pipelines on a real video: decode -> frcnndetect -> frcnnoverlay -> frcnnjson -> H.264 in
// MP4, then decode the MP4 again; and a flushing seek while playing.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <gst/gst.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gst_test_utils.h"

namespace {

using nlohmann::json;

// Buffers through a pad: their timestamps, and the flushes seen.
class PadRecorder {
public:
	PadRecorder(GstElement *element, const char *pad_name)
	{
		GstPad *pad = gst_element_get_static_pad(element, pad_name);
		gst_pad_add_probe(pad,
				  static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BUFFER |
							       GST_PAD_PROBE_TYPE_EVENT_FLUSH),
				  probe, this, nullptr);
		gst_object_unref(pad);
	}

	std::vector<GstClockTime> pts()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return pts_;
	}
	std::size_t flush_index()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return flush_index_;
	}
	bool wait_for(std::size_t count)
	{
		std::unique_lock<std::mutex> lock(mutex_);
		return cond_.wait_for(lock, std::chrono::seconds(120),
				      [&] { return pts_.size() >= count; });
	}

private:
	static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data)
	{
		auto *self = static_cast<PadRecorder *>(data);
		std::lock_guard<std::mutex> lock(self->mutex_);
		if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
			self->pts_.push_back(GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info)));
		} else if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_FLUSH_STOP) {
			self->flush_index_ = self->pts_.size();
		}
		self->cond_.notify_all();
		return GST_PAD_PROBE_OK;
	}

	std::mutex mutex_;
	std::condition_variable cond_;
	std::vector<GstClockTime> pts_;
	std::size_t flush_index_ = 0;
};

GstElement *launch(const std::string &description)
{
	gst_test::init();
	GError *error = nullptr;
	GstElement *pipeline = gst_parse_launch(description.c_str(), &error);
	EXPECT_EQ(error, nullptr) << description << ": " << (error ? error->message : "");
	g_clear_error(&error);
	return pipeline;
}

// Plays to EOS; fails on an error message.
void run_to_eos(GstElement *pipeline, GstClockTime timeout = 300 * GST_SECOND)
{
	ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_timed_pop_filtered(
		bus, timeout, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
	gst_object_unref(bus);
	ASSERT_NE(message, nullptr) << "no EOS in time";
	if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
		GError *error = nullptr;
		gchar *debug = nullptr;
		gst_message_parse_error(message, &error, &debug);
		ADD_FAILURE() << "error from " << GST_OBJECT_NAME(GST_MESSAGE_SRC(message)) << ": "
			      << error->message << "\n" << (debug ? debug : "");
		g_error_free(error);
		g_free(debug);
	}
	gst_message_unref(message);
	EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
}

std::string quoted(const std::string &path)
{
	return "\"" + path + "\"";
}

TEST(Pipelines, DecodeDetectOverlayJsonEncodeMp4)
{
	const std::string dir = gst_test::out_dir();
	const std::string mp4 = dir + "/megamind.mp4";
	const std::string jsonl = dir + "/megamind.jsonl";
	std::remove(mp4.c_str());
	std::remove(jsonl.c_str());

	GstElement *pipeline = launch(
		"filesrc location=" + quoted(gst_test::kVideo) + " ! decodebin ! "
		"frcnndetect name=detect model=tiny weights=" + quoted(gst_test::weights4()) +
		" threshold=0.3 min-size=256 batch-size=4 ! frcnnoverlay ! "
		"frcnnjson location=" + quoted(jsonl) + " ! videoconvert ! "
		"x264enc speed-preset=veryfast ! mp4mux ! filesink location=" + quoted(mp4));
	ASSERT_NE(pipeline, nullptr);
	GstElement *detect = gst_bin_get_by_name(GST_BIN(pipeline), "detect");
	PadRecorder decoded(detect, "sink");
	PadRecorder detected(detect, "src");
	gst_object_unref(detect);
	run_to_eos(pipeline);
	gst_object_unref(pipeline);

	const std::vector<GstClockTime> frames = decoded.pts();
	ASSERT_GT(frames.size(), 200u) << "Megamind.avi has a few hundred frames";
	EXPECT_EQ(detected.pts(), frames) << "every frame leaves, in order, timestamps unchanged";

	/* One JSON line per decoded frame. */
	std::ifstream file(jsonl);
	std::vector<json> lines;
	for (std::string line; std::getline(file, line);)
		lines.push_back(json::parse(line));
	ASSERT_EQ(lines.size(), frames.size());
	std::size_t with_detections = 0;
	for (std::size_t i = 0; i < lines.size(); i++) {
		EXPECT_EQ(lines[i]["frame"], i);
		EXPECT_EQ(lines[i]["pts"], frames[i]);
		EXPECT_EQ(lines[i]["width"], 720);
		EXPECT_EQ(lines[i]["height"], 528);
		with_detections += !lines[i]["detections"].empty();
		for (const json &det : lines[i]["detections"]) {
			EXPECT_GE(det["score"].get<double>(), 0.3);
			EXPECT_EQ(det["label"], "class " + std::to_string(det["label_id"].get<int>()));
		}
	}
	EXPECT_GT(with_detections, 0u);

	/* The MP4 plays: decode it again and count. */
	GstElement *check = launch("filesrc location=" + quoted(mp4) +
				   " ! qtdemux ! h264parse ! avdec_h264 name=dec ! fakesink");
	ASSERT_NE(check, nullptr);
	GstElement *dec = gst_bin_get_by_name(GST_BIN(check), "dec");
	PadRecorder replayed(dec, "src");
	gst_object_unref(dec);
	run_to_eos(check);
	gst_object_unref(check);
	EXPECT_EQ(replayed.pts().size(), frames.size());
}

TEST(Pipelines, FlushingSeekWhilePlaying)
{
	GstElement *pipeline = launch(
		"filesrc location=" + quoted(gst_test::kVideo) + " ! decodebin ! "
		"frcnndetect name=detect model=tiny weights=" + quoted(gst_test::weights4()) +
		" min-size=128 batch-size=4 batch-timeout=50 ! fakesink name=sink sync=false");
	ASSERT_NE(pipeline, nullptr);
	GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
	GstElement *detect = gst_bin_get_by_name(GST_BIN(pipeline), "detect");
	PadRecorder out(sink, "sink");
	PadRecorder in(detect, "sink");
	gst_object_unref(sink);
	gst_object_unref(detect);

	ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
	ASSERT_TRUE(out.wait_for(8)) << "no frames before the seek";

	const GstClockTime target = 9 * GST_SECOND;
	ASSERT_TRUE(gst_element_seek_simple(
		pipeline, GST_FORMAT_TIME,
		static_cast<GstSeekFlags>(GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE), target));
	GstBus *bus = gst_element_get_bus(pipeline);
	GstMessage *message = gst_bus_timed_pop_filtered(
		bus, 300 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
	gst_object_unref(bus);
	ASSERT_NE(message, nullptr);
	EXPECT_EQ(GST_MESSAGE_TYPE(message), GST_MESSAGE_EOS);
	gst_message_unref(message);
	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(pipeline);

	/*
	 * The decoder gives some frames of this video the same timestamp, so the checks compare the
	 * element's output with its input rather than expecting increasing timestamps.
	 */
	const std::vector<GstClockTime> input = in.pts(), output = out.pts();
	const std::size_t in_flush = in.flush_index(), out_flush = out.flush_index();
	ASSERT_GT(out_flush, 0u) << "the flush reached the sink after some frames";
	ASSERT_LT(out_flush, output.size()) << "frames came after the seek";

	/* Before the flush: what left is the start of what came in (queued frames were dropped). */
	ASSERT_LE(out_flush, in_flush);
	EXPECT_TRUE(std::equal(output.begin(), output.begin() + out_flush, input.begin()));
	/* After it: exactly the frames from the seek target on, in order, up to the end. */
	const std::vector<GstClockTime> in_after(input.begin() + in_flush, input.end());
	const std::vector<GstClockTime> out_after(output.begin() + out_flush, output.end());
	EXPECT_EQ(out_after, in_after);
	for (GstClockTime pts : out_after)
		EXPECT_GE(pts, target);
	EXPECT_GT(output.back(), 11 * GST_SECOND) << "played to the end of the 11.3 s video";
}

// GStreamer's scaling of a region of interest keeps its rectangle but drops its params:
// frcnndetect's detections keep theirs (label id, score, unrounded box) through videoscale and
// frcnnoverlay behind it. The same detections, read by frcnnjson before and after the scaling.
TEST(Pipelines, DetectionsKeepLabelsAndScoresThroughScaling)
{
	const std::string full = gst_test::out_dir() + "/scaling-full.jsonl";
	const std::string half = gst_test::out_dir() + "/scaling-half.jsonl";
	GstElement *pipeline = launch(
		"frcnnshapesrc seed=3 num-buffers=4 ! video/x-raw,format=RGB,width=640,height=480 ! "
		"frcnndetect model=tiny weights=" + quoted(gst_test::shapes_weights()) +
		" ! tee name=t t. ! queue ! frcnnjson location=" + quoted(full) + " ! fakesink "
		"t. ! queue ! videoscale ! video/x-raw,width=320,height=240 ! frcnnoverlay ! "
		"frcnnjson location=" + quoted(half) + " ! fakesink");
	ASSERT_NE(pipeline, nullptr);
	run_to_eos(pipeline);
	gst_object_unref(pipeline);

	std::ifstream full_file(full), half_file(half);
	std::string full_line, half_line;
	int frames = 0, detections = 0;
	while (std::getline(full_file, full_line)) {
		ASSERT_TRUE(std::getline(half_file, half_line)) << "frame " << frames;
		const json a = json::parse(full_line)["detections"], b = json::parse(half_line)["detections"];
		ASSERT_EQ(b.size(), a.size()) << "frame " << frames;
		for (std::size_t i = 0; i < a.size(); i++) {
			SCOPED_TRACE("frame " + std::to_string(frames) + ": " + a[i].dump() + " and " + b[i].dump());
			EXPECT_EQ(b[i]["label"], a[i]["label"]);
			EXPECT_EQ(b[i]["label_id"], a[i]["label_id"]);
			EXPECT_FALSE(b[i]["score"].is_null());
			EXPECT_EQ(b[i]["score"], a[i]["score"]);
			EXPECT_EQ(b[i]["id"], a[i]["id"]);
			for (int k = 0; k < 4; k++) /* frcnnjson writes 2 decimals */
				EXPECT_NEAR(b[i]["box"][k].get<double>(), a[i]["box"][k].get<double>() / 2, 0.011);
			detections++;
		}
		frames++;
	}
	EXPECT_EQ(frames, 4);
	EXPECT_GT(detections, 4);
}

constexpr std::size_t kLayoutFrames = 3; // the first frames of a video, the same in every run

// Intersection over union of two [x1, y1, x2, y2] boxes of frcnnjson's lines.
double box_iou(const json &a, const json &b)
{
	const double ix = std::max(0.0, std::min(a[2].get<double>(), b[2].get<double>()) -
						std::max(a[0].get<double>(), b[0].get<double>()));
	const double iy = std::max(0.0, std::min(a[3].get<double>(), b[3].get<double>()) -
						std::max(a[1].get<double>(), b[1].get<double>()));
	auto area = [](const json &box) {
		return (box[2].get<double>() - box[0].get<double>()) * (box[3].get<double>() - box[1].get<double>());
	};
	return ix * iy / (area(a) + area(b) - ix * iy);
}

// The video's frames, and frcnndetect's properties for the 4-class test weights.
std::string video_frames()
{
	return "filesrc location=" + quoted(gst_test::kVideo) + " ! decodebin ! identity eos-after=" +
	       std::to_string(kLayoutFrames);
}

std::string video_detector()
{
	return "model=tiny weights=" + quoted(gst_test::weights4()) + " min-size=256";
}

// frcnndetect's detections (frcnnjson's "detections") in the frames of `source`, converted by
// videoconvert to `first`, then without resampling (chroma-mode=none dither=none) to `format`.
std::vector<json> converted_detections(const std::string &first, const std::string &format,
				       const std::string &source = video_frames(),
				       const std::string &detector = video_detector())
{
	const std::string jsonl = gst_test::out_dir() + "/layout-" + first + "-" + format + ".jsonl";
	std::remove(jsonl.c_str());
	GstElement *pipeline =
		launch(source + " ! videoconvert ! video/x-raw,format=" + first +
		       " ! videoconvert chroma-mode=none dither=none ! video/x-raw,format=" + format +
		       " ! frcnndetect " + detector + " threshold=0.05 ! frcnnjson location=" + quoted(jsonl) +
		       " ! fakesink");
	std::vector<json> frames;
	if (pipeline == nullptr)
		return frames;
	run_to_eos(pipeline);
	gst_object_unref(pipeline);
	std::ifstream file(jsonl);
	for (std::string line; std::getline(file, line) && frames.size() < kLayoutFrames;)
		frames.push_back(json::parse(line)["detections"]);
	return frames;
}

// The video's frames converted by videoconvert (GStreamer's own packing of each format) into the
// formats of a family, which hold the same samples in other places: frcnndetect finds the same in
// each. This checks the element's reading of every format against GStreamer's writing of it,
// apart from the tests' own frame writers. Each family's frames are converted once to its first
// format, then without resampling to the others (converted straight from the decoder's I420,
// videoconvert's paths to the formats of one family resample chroma differently).
TEST(Pipelines, EveryLayoutOfTheSameSamplesGivesTheSameDetections)
{
	for (const std::vector<std::string> &family :
	     { std::vector<std::string>{ "RGB", "BGR", "RGBx", "xBGR", "ARGB", "BGRA" },
	       std::vector<std::string>{ "I420", "YV12", "NV12", "NV21" },
	       std::vector<std::string>{ "Y42B", "NV16", "NV61", "YUY2", "UYVY", "YVYU", "VYUY" },
	       std::vector<std::string>{ "Y444", "NV24", "AYUV", "VUYA" },
	       std::vector<std::string>{ "I420_10LE", "P010_10LE" },
	       std::vector<std::string>{ "I420_12LE", "P012_LE" },
	       std::vector<std::string>{ "I422_10LE", "Y210", "v210" },
	       std::vector<std::string>{ "I422_12LE", "Y212_LE" },
	       std::vector<std::string>{ "Y444_10LE", "Y410" },
	       std::vector<std::string>{ "Y444_12LE", "Y412_LE" } }) {
		const std::vector<json> expected = converted_detections(family.front(), family.front());
		ASSERT_EQ(expected.size(), kLayoutFrames) << family.front();
		ASSERT_FALSE(expected.front().empty()) << family.front();
		for (std::size_t i = 1; i < family.size(); i++)
			EXPECT_TRUE(converted_detections(family.front(), family[i]) == expected)
				<< family[i] << " gives other detections than " << family.front();
	}
}

// videoconvert's 10- and 12-bit frames (its 8-bit samples widened: the same levels to within an
// 8-bit step) are the same picture as its 8-bit ones: each detection of the 8-bit frames with a
// score of 0.2 or more is found in the wider ones, of the same class, at the same place and with
// nearly the same score. This checks the element's reading of each such format's samples and
// levels against GStreamer's writing of them. On the shapes and their model, whose detections
// such a change does not move (the 4-class weights' on the video are too faint).
TEST(Pipelines, WiderFramesSeeWhatTheirEightBitSamplesShow)
{
	const std::string shapes = "frcnnshapesrc seed=7 num-buffers=" + std::to_string(kLayoutFrames) +
				   " ! video/x-raw,format=RGB,width=320,height=240";
	const std::string shapes_detector =
		"model=tiny weights=" + quoted(gst_test::shapes_weights()) + " min-size=240 max-size=320";
	for (auto [eight, wider] : { std::pair<std::string, std::string>{ "I420", "I420_10LE" },
				   std::pair<std::string, std::string>{ "I420", "P010_10LE" },
				   std::pair<std::string, std::string>{ "Y42B", "I422_10LE" },
				   std::pair<std::string, std::string>{ "Y444", "Y444_10LE" },
				   std::pair<std::string, std::string>{ "I420", "P012_LE" },
				   std::pair<std::string, std::string>{ "Y42B", "I422_12LE" },
				   std::pair<std::string, std::string>{ "YUY2", "Y210" },
				   std::pair<std::string, std::string>{ "UYVY", "v210" },
				   std::pair<std::string, std::string>{ "I420", "P016_LE" },
				   std::pair<std::string, std::string>{ "Y444", "Y444_16LE" },
				   std::pair<std::string, std::string>{ "Y444", "Y410" },
				   std::pair<std::string, std::string>{ "Y444", "Y412_LE" } }) {
		SCOPED_TRACE(eight + " and " + wider);
		const std::vector<json> reference = converted_detections(eight, eight, shapes, shapes_detector);
		const std::vector<json> wide = converted_detections(eight, wider, shapes, shapes_detector);
		ASSERT_EQ(reference.size(), kLayoutFrames);
		ASSERT_EQ(wide.size(), kLayoutFrames);
		int compared = 0;
		for (std::size_t frame = 0; frame < kLayoutFrames; frame++)
			for (const json &det : reference[frame]) {
				if (det["score"].get<double>() < 0.2)
					continue;
				compared++;
				double best = 0, score = -1;
				for (const json &other : wide[frame])
					if (other["label_id"] == det["label_id"] && box_iou(det["box"], other["box"]) > best) {
						best = box_iou(det["box"], other["box"]);
						score = other["score"].get<double>();
					}
				EXPECT_GE(best, 0.95) << "frame " << frame << ": " << det.dump();
				EXPECT_NEAR(score, det["score"].get<double>(), 0.02) << "frame " << frame << ": " << det.dump();
			}
		EXPECT_GT(compared, 0) << "no detection to compare";
	}
}

// 10-bit (and 12-bit) HEVC files, as cameras and phones record them, go from the decoder into
// frcnndetect and frcnnoverlay as it gives them (the software decoder's I420_10LE, I422_10LE,
// Y444_10LE, I420_12LE; a caps filter checks that nothing converted them), and the shapes in them
// are found: of the true boxes the source wrote, 90% or more have a detection of their class at
// IoU 0.5 or more.
TEST(Pipelines, HighBitDepthHevcFilesDecodeStraightIntoTheElements)
{
	constexpr int kFrames = 20;
	for (const std::string format : { "I420_10LE", "I422_10LE", "Y444_10LE", "I420_12LE" }) {
		SCOPED_TRACE(format);
		const std::string video = gst_test::out_dir() + "/shapes-" + format + ".mkv";
		const std::string truth = gst_test::out_dir() + "/shapes-" + format + "-truth.jsonl";
		const std::string jsonl = gst_test::out_dir() + "/shapes-" + format + ".jsonl";
		GstElement *encode = launch("frcnnshapesrc seed=11 scene-frames=5 num-buffers=" + std::to_string(kFrames) +
					    " ground-truth=" + quoted(truth) +
					    " ! video/x-raw,format=RGB,width=320,height=240,framerate=25/1 ! videoconvert"
					    " ! video/x-raw,format=" + format +
					    " ! x265enc speed-preset=ultrafast ! h265parse ! matroskamux ! filesink location=" +
					    quoted(video));
		ASSERT_NE(encode, nullptr);
		run_to_eos(encode);
		gst_object_unref(encode);

		GstElement *detect = launch("filesrc location=" + quoted(video) + " ! decodebin ! video/x-raw,format=" +
					    format + " ! frcnndetect model=tiny weights=" +
					    quoted(gst_test::shapes_weights()) +
					    " min-size=240 max-size=320 threshold=0.5 ! frcnnoverlay ! frcnnjson location=" +
					    quoted(jsonl) + " ! fakesink");
		ASSERT_NE(detect, nullptr);
		run_to_eos(detect);
		gst_object_unref(detect);

		std::vector<json> truths, found;
		std::ifstream truth_file(truth), found_file(jsonl);
		for (std::string line; std::getline(truth_file, line);)
			truths.push_back(json::parse(line)["detections"]);
		for (std::string line; std::getline(found_file, line);)
			found.push_back(json::parse(line)["detections"]);
		ASSERT_EQ(truths.size(), static_cast<std::size_t>(kFrames));
		ASSERT_EQ(found.size(), truths.size());
		int boxes = 0, matched = 0;
		for (std::size_t frame = 0; frame < truths.size(); frame++)
			for (const json &box : truths[frame]) {
				boxes++;
				matched += std::any_of(found[frame].begin(), found[frame].end(), [&](const json &det) {
					return det["label_id"] == box["label_id"] && box_iou(det["box"], box["box"]) >= 0.5;
				});
			}
		EXPECT_GT(boxes, kFrames);
		EXPECT_GE(matched, 0.9 * boxes) << matched << " of " << boxes << " true boxes found";
	}
}

} // namespace

// SPDX-License-Identifier: BSD-3-Clause
// The detection metadata through GStreamer's own elements: a scaling element (videoscale,
// videoconvertscale) keeps each detection's "detection" param (label id, score, normalised box),
// which GStreamer's transform of GstVideoRegionOfInterestMeta alone drops.

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include "gst_test_utils.h"
#include "meta.h"

namespace {

constexpr int kWidth = 640, kHeight = 480;

using gst_test::BufferPtr;

BufferPtr frame()
{
	gst_test::init();
	const gsize size = kWidth * kHeight * 3 / 2;
	GstBuffer *buffer = gst_buffer_new_allocate(nullptr, size, nullptr);
	gst_buffer_memset(buffer, 0, 0x60, size);
	GST_BUFFER_PTS(buffer) = 0;
	return BufferPtr(buffer);
}

using Region = gst_test::RoiDetection;
using gst_test::read_rois;

// Pushes `buffer` (NV12 frames of width x height) through `elements` and returns what comes out.
BufferPtr through(const std::string &elements, GstBuffer *buffer, int width = kWidth, int height = kHeight)
{
	gst_test::init();
	GstHarness *h = gst_harness_new_parse(elements.c_str());
	if (!h) {
		ADD_FAILURE() << "cannot make " << elements;
		return nullptr;
	}
	gst_harness_set_src_caps_str(h, ("video/x-raw,format=NV12,width=" + std::to_string(width) +
					 ",height=" + std::to_string(height) + ",framerate=25/1")
						.c_str());
	BufferPtr result(gst_harness_push_and_pull(h, gst_buffer_ref(buffer)));
	EXPECT_TRUE(result) << "no buffer out of " << elements;
	gst_harness_teardown(h);
	return result;
}

// Three detections, as frcnndetect attaches them.
BufferPtr frame_with_detections()
{
	BufferPtr buffer = frame();
	frcnn::gst::add_detection_metas(buffer.get(), kWidth, kHeight,
					{ { 10.4, 20.6, 110.2, 220.8, 1, "person", 0.91 },
					  { 300.5, 100.25, 420.75, 161.5, 3, "car", 0.625 },
					  { 500, 400, 639.9, 479.9, 3, "car", 0.5 } });
	return buffer;
}

// `after` holds the regions of `before` (on a frame of from_width x from_height) with their
// params, the rectangles scaled to to_width x to_height as GStreamer scales them.
void expect_same_detections(const std::vector<Region> &before, const std::vector<Region> &after,
			    int to_width, int to_height, int from_width = kWidth, int from_height = kHeight)
{
	ASSERT_EQ(after.size(), before.size());
	for (std::size_t i = 0; i < before.size(); i++) {
		SCOPED_TRACE("region " + std::to_string(i));
		const Region &b = before[i], &a = after[i];
		ASSERT_TRUE(b.has_param);
		EXPECT_TRUE(a.has_param);
		EXPECT_EQ(a.roi_type, b.roi_type);
		EXPECT_EQ(a.id, b.id);
		EXPECT_EQ(a.parent_id, b.parent_id);
		EXPECT_EQ(a.label_id, b.label_id);
		EXPECT_EQ(a.label, b.label);
		EXPECT_EQ(a.confidence, b.confidence);
		EXPECT_EQ(a.x_min, b.x_min);
		EXPECT_EQ(a.y_min, b.y_min);
		EXPECT_EQ(a.x_max, b.x_max);
		EXPECT_EQ(a.y_max, b.y_max);
		EXPECT_EQ(a.x, b.x * to_width / from_width);
		EXPECT_EQ(a.y, b.y * to_height / from_height);
		EXPECT_EQ(a.w, b.w * to_width / from_width);
		EXPECT_EQ(a.h, b.h * to_height / from_height);
	}
}

TEST(DetectionMeta, ParamsGoThroughScalingElements)
{
	BufferPtr input = frame_with_detections();
	const std::vector<Region> before = read_rois(input.get());
	ASSERT_EQ(before.size(), 3u);

	for (const std::string scaler : { "videoscale", "videoconvertscale" }) {
		SCOPED_TRACE(scaler);
		BufferPtr half = through(scaler + " ! capsfilter caps=video/x-raw,width=320,height=240", input.get());
		ASSERT_TRUE(half);
		expect_same_detections(before, read_rois(half.get()), 320, 240);
	}

	// Twice, the second time from a buffer that has been scaled once.
	BufferPtr twice = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240 ! videoscale ! "
				  "capsfilter caps=video/x-raw,width=1280,height=720",
				  input.get());
	ASSERT_TRUE(twice);
	const std::vector<Region> after = read_rois(twice.get());
	ASSERT_EQ(after.size(), before.size());
	for (std::size_t i = 0; i < after.size(); i++) {
		EXPECT_TRUE(after[i].has_param) << i;
		EXPECT_EQ(after[i].confidence, before[i].confidence) << i;
		EXPECT_EQ(after[i].x_min, before[i].x_min) << i;
		EXPECT_EQ(after[i].y_max, before[i].y_max) << i;
	}

	// A copy (gst_buffer_copy, as gst_buffer_make_writable makes) keeps them, and can be scaled.
	BufferPtr copy(gst_buffer_copy(input.get()));
	expect_same_detections(before, read_rois(copy.get()), kWidth, kHeight);
	BufferPtr scaled_copy = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", copy.get());
	ASSERT_TRUE(scaled_copy);
	expect_same_detections(before, read_rois(scaled_copy.get()), 320, 240);
}

// The readers of the elements (frcnnoverlay, frcnnjson) read the scaled frame's detections in its
// pixels, unrounded, with their labels and scores.
TEST(DetectionMeta, ReadersSeeTheScaledBoxes)
{
	BufferPtr input = frame_with_detections();
	BufferPtr half = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", input.get());
	ASSERT_TRUE(half);
	const std::vector<frcnn::gst::DetectionMeta> full = frcnn::gst::read_detection_metas(input.get(), kWidth, kHeight);
	const std::vector<frcnn::gst::DetectionMeta> scaled = frcnn::gst::read_detection_metas(half.get(), 320, 240);
	ASSERT_EQ(scaled.size(), full.size());
	for (std::size_t i = 0; i < full.size(); i++) {
		EXPECT_EQ(scaled[i].label, full[i].label);
		EXPECT_EQ(scaled[i].label_id, full[i].label_id);
		EXPECT_EQ(scaled[i].score, full[i].score);
		EXPECT_TRUE(scaled[i].has_box);
		EXPECT_NEAR(scaled[i].x1, full[i].x1 / 2, 1e-9);
		EXPECT_NEAR(scaled[i].y1, full[i].y1 / 2, 1e-9);
		EXPECT_NEAR(scaled[i].x2, full[i].x2 / 2, 1e-9);
		EXPECT_NEAR(scaled[i].y2, full[i].y2 / 2, 1e-9);
	}
	EXPECT_NEAR(full[0].x1, 10.4, 1e-9);
}

// A second detector (inference-region=roi-list) adds its detections to a frame that has been
// scaled after the first: the params of both go through the next scaling.
TEST(DetectionMeta, DetectionsAddedAfterAScalingKeepTheirsToo)
{
	BufferPtr input = frame_with_detections();
	BufferPtr scaled = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", input.get());
	ASSERT_TRUE(scaled);
	BufferPtr writable(gst_buffer_copy(scaled.get()));
	frcnn::gst::add_detection_meta(writable.get(), 320, 240, 10, 15, 30, 45, 5, "wheel", 0.75, 1);
	frcnn::gst::add_detection_meta(writable.get(), 320, 240, 165, 55, 175, 65, 6, "mirror",
				       0.375, 1);
	const std::vector<Region> before = read_rois(writable.get());
	ASSERT_EQ(before.size(), 5u);
	EXPECT_EQ(before[3].id, 3);
	EXPECT_EQ(before[3].parent_id, 1);

	BufferPtr smaller = through("videoscale ! capsfilter caps=video/x-raw,width=160,height=120", writable.get(), 320, 240);
	ASSERT_TRUE(smaller);
	expect_same_detections(before, read_rois(smaller.get()), 160, 120, 320, 240);
}

// The detections of one call take the ids after the highest on the buffer, in their order, with
// their boxes clamped to the frame (the param's unrounded, the rectangle's rounded).
TEST(DetectionMeta, IdsFollowTheBuffersAndBoxesStayInTheFrame)
{
	BufferPtr buffer = frame();
	GstVideoRegionOfInterestMeta *face =
		gst_buffer_add_video_region_of_interest_meta(buffer.get(), "face", 40, 40, 80, 80);
	face->id = 7;
	frcnn::gst::add_detection_metas(buffer.get(), kWidth, kHeight,
					{ { -20.0, 10.4, 100.0, 50.0, 2, "bicycle", 0.8, 7 },
					  { 600.0, 470.0, 700.0, 500.0, 1, "person", 0.7 } });
	const std::vector<Region> rois = read_rois(buffer.get());
	ASSERT_EQ(rois.size(), 3u);
	EXPECT_EQ(rois[1].id, 8);
	EXPECT_EQ(rois[1].parent_id, 7);
	EXPECT_EQ(rois[1].label, "bicycle");
	EXPECT_EQ(rois[1].x, 0u);
	EXPECT_EQ(rois[1].y, 10u);
	EXPECT_EQ(rois[1].w, 100u);
	EXPECT_DOUBLE_EQ(rois[1].x_min, 0.0);
	EXPECT_DOUBLE_EQ(rois[1].y_min, 10.4 / kHeight);
	EXPECT_EQ(rois[2].id, 9);
	EXPECT_EQ(rois[2].parent_id, -1);
	EXPECT_EQ(rois[2].x + rois[2].w, guint(kWidth));
	EXPECT_EQ(rois[2].y + rois[2].h, guint(kHeight));
	EXPECT_DOUBLE_EQ(rois[2].x_max, 1.0);
	EXPECT_DOUBLE_EQ(rois[2].y_max, 1.0);
}

// Another producer's ids may reach G_MAXINT: new ids and renumbered ones are then the lowest
// free ones, never an id taken or a wrapped-around negative one (the next id was G_MAXINT + 1).
TEST(DetectionMeta, IdsAfterTheHighestIntAreTheLowestFree)
{
	BufferPtr buffer = frame();
	for (gint id : { G_MAXINT - 1, G_MAXINT, 0 }) {
		GstVideoRegionOfInterestMeta *roi =
			gst_buffer_add_video_region_of_interest_meta(buffer.get(), "face", 40, 40, 80, 80);
		roi->id = id;
	}
	frcnn::gst::add_detection_metas(buffer.get(), kWidth, kHeight,
					{ { 10, 10, 50, 50, 1, "person", 0.9, G_MAXINT },
					  { 60, 10, 90, 50, 1, "person", 0.8, G_MAXINT } });
	std::vector<Region> rois = read_rois(buffer.get());
	ASSERT_EQ(rois.size(), 5u);
	EXPECT_EQ(rois[3].id, 1);
	EXPECT_EQ(rois[3].parent_id, G_MAXINT);
	EXPECT_EQ(rois[4].id, 2);
	// Two regions of one id (G_MAXINT) among those: the second takes the lowest free id.
	GstVideoRegionOfInterestMeta *twin =
		gst_buffer_add_video_region_of_interest_meta(buffer.get(), "face", 40, 40, 80, 80);
	twin->id = G_MAXINT;
	EXPECT_EQ(frcnn::gst::make_region_ids_unique(buffer.get()), 1);
	rois = read_rois(buffer.get());
	ASSERT_EQ(rois.size(), 6u);
	EXPECT_EQ(rois[5].id, 3);
	std::set<gint> ids;
	for (const Region &roi : rois)
		EXPECT_TRUE(ids.insert(roi.id).second) << "id " << roi.id << " twice";
}

// A region of id -1 (another producer's) would give the detections found in it the parent_id of
// the whole frame's: it gets an id of its own, as a repeated one does.
TEST(DetectionMeta, ARegionOfIdMinusOneGetsAnIdOfItsOwn)
{
	BufferPtr buffer = frame();
	for (gint id : { -1, 4 }) {
		GstVideoRegionOfInterestMeta *roi =
			gst_buffer_add_video_region_of_interest_meta(buffer.get(), "face", 40, 40, 80, 80);
		roi->id = id;
	}
	EXPECT_EQ(frcnn::gst::make_region_ids_unique(buffer.get()), 1);
	const std::vector<Region> rois = read_rois(buffer.get());
	ASSERT_EQ(rois.size(), 2u);
	EXPECT_EQ(rois[0].id, 5);
	EXPECT_EQ(rois[1].id, 4);
}

// An application that removes detections (a filter, a tracker) frees their ids: detections added
// later may take an id and type again, and keep their own params through a scaling, not those of
// the detection removed.
TEST(DetectionMeta, ARemovedDetectionsParamsDoNotComeBackOnAnother)
{
	BufferPtr buffer = frame_with_detections();
	for (;;) { /* removes the two cars (ids 1 and 2) */
		gpointer state = nullptr;
		GstMeta *car = nullptr;
		while (GstMeta *item = gst_buffer_iterate_meta_filtered(
			       buffer.get(), &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))
			if (reinterpret_cast<GstVideoRegionOfInterestMeta *>(item)->id > 0)
				car = item;
		if (!car)
			break;
		ASSERT_TRUE(gst_buffer_remove_meta(buffer.get(), car));
	}
	frcnn::gst::add_detection_meta(buffer.get(), kWidth, kHeight, 200, 40, 260, 90, 3, "car", 0.3);
	const std::vector<Region> before = read_rois(buffer.get());
	ASSERT_EQ(before.size(), 2u);
	ASSERT_EQ(before[1].id, 1) << "the new car takes the id of the first car removed";

	BufferPtr half = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", buffer.get());
	ASSERT_TRUE(half);
	expect_same_detections(before, read_rois(half.get()), 320, 240);
}

// Another producer's region of the same id and type as a detection (GStreamer's default id is 0)
// gets no param of the detection's after a scaling, though the params meta comes after it (a
// second detector re-adds it): the kept param goes only where its box is.
TEST(DetectionMeta, AnotherRegionOfTheSameIdAndTypeGetsNoParam)
{
	BufferPtr buffer = frame();
	frcnn::gst::add_detection_meta(buffer.get(), kWidth, kHeight, 10, 20, 110, 220, 1, "person", 0.9);
	GstVideoRegionOfInterestMeta *other =
		gst_buffer_add_video_region_of_interest_meta(buffer.get(), "person", 400, 300, 60, 100);
	other->id = 0;
	frcnn::gst::add_detection_meta(buffer.get(), kWidth, kHeight, 500, 20, 600, 120, 3, "car", 0.8);
	const std::vector<Region> before = read_rois(buffer.get());
	ASSERT_EQ(before.size(), 3u);
	ASSERT_EQ(before[1].id, 0);
	ASSERT_FALSE(before[1].has_param);

	BufferPtr half = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", buffer.get());
	ASSERT_TRUE(half);
	const std::vector<Region> after = read_rois(half.get());
	ASSERT_EQ(after.size(), 3u);
	EXPECT_TRUE(after[0].has_param);
	EXPECT_EQ(after[0].confidence, 0.9);
	EXPECT_FALSE(after[1].has_param) << "the other producer's region";
	EXPECT_TRUE(after[2].has_param);
	EXPECT_EQ(after[2].label, "car");
}

// A tracker moves regions (the rectangle only, or the rectangle and its param's box): each keeps
// its param through a scaling, the one it has when scaled, and the readers take the rectangle of
// the region moved without its box. The position check of the kept params lost both.
TEST(DetectionMeta, AMovedRegionKeepsItsParamThroughAScaling)
{
	BufferPtr buffer = frame_with_detections();
	auto *moved = gst_buffer_get_video_region_of_interest_meta_id(buffer.get(), 0);
	ASSERT_NE(moved, nullptr);
	moved->x += 100;
	moved->y += 60;
	auto *tracked = gst_buffer_get_video_region_of_interest_meta_id(buffer.get(), 1);
	ASSERT_NE(tracked, nullptr);
	tracked->x -= 80;
	GstStructure *param = gst_video_region_of_interest_meta_get_param(tracked, "detection");
	ASSERT_NE(param, nullptr);
	double x_min = 0, x_max = 0;
	ASSERT_TRUE(gst_structure_get_double(param, "x_min", &x_min) && gst_structure_get_double(param, "x_max", &x_max));
	gst_structure_set(param, "x_min", G_TYPE_DOUBLE, x_min - 80.0 / kWidth, "x_max", G_TYPE_DOUBLE,
			  x_max - 80.0 / kWidth, "confidence", G_TYPE_DOUBLE, 0.75, nullptr);
	const std::vector<Region> before = read_rois(buffer.get());
	ASSERT_EQ(before.size(), 3u);

	BufferPtr half = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", buffer.get());
	ASSERT_TRUE(half);
	expect_same_detections(before, read_rois(half.get()), 320, 240);
	const auto read = frcnn::gst::read_detection_metas(half.get(), 320, 240);
	ASSERT_EQ(read.size(), 3u);
	EXPECT_EQ(read[0].label_id, 1);
	EXPECT_EQ(read[0].score, 0.91);
	EXPECT_FALSE(read[0].has_box) << "the box the region was moved away from";
	EXPECT_EQ(read[0].x1, static_cast<double>(moved->x * 320 / kWidth));
	EXPECT_EQ(read[1].score, 0.75) << "the param the tracker changed";
	EXPECT_EQ(read[1].label_id, 3);
	// A second scaling, from the scaled buffer.
	BufferPtr quarter = through("videoscale ! capsfilter caps=video/x-raw,width=160,height=120", half.get(), 320, 240);
	ASSERT_TRUE(quarter);
	expect_same_detections(read_rois(half.get()), read_rois(quarter.get()), 160, 120, 320, 240);
}

// Large upscalings one after another (each rounding of the rectangles grows with the frame):
// every detection keeps its param.
TEST(DetectionMeta, ParamsGoThroughUpscalingsOneAfterAnother)
{
	gst_test::init();
	const gsize size = 64 * 48 * 3 / 2;
	BufferPtr small(gst_buffer_new_allocate(nullptr, size, nullptr));
	gst_buffer_memset(small.get(), 0, 0x60, size);
	frcnn::gst::add_detection_metas(small.get(), 64, 48,
					{ { 1.4, 2.6, 11.2, 22.8, 1, "person", 0.91 },
					  { 30.5, 10.25, 42.75, 16.5, 3, "car", 0.625 },
					  { 50.3, 40.7, 63.9, 47.9, 3, "car", 0.5 } });
	const std::vector<Region> before = read_rois(small.get());
	BufferPtr large = through("videoscale ! capsfilter caps=video/x-raw,width=637,height=479", small.get(), 64, 48);
	ASSERT_TRUE(large);
	BufferPtr larger = through("videoscale ! capsfilter caps=video/x-raw,width=1913,height=1439", large.get(), 637, 479);
	ASSERT_TRUE(larger);
	const std::vector<Region> after = read_rois(larger.get());
	ASSERT_EQ(after.size(), before.size());
	for (std::size_t i = 0; i < after.size(); i++) {
		EXPECT_TRUE(after[i].has_param) << "region " << i;
		EXPECT_EQ(after[i].confidence, before[i].confidence) << "region " << i;
		EXPECT_EQ(after[i].x_min, before[i].x_min) << "region " << i;
	}
}

// Params of other producers that are not numbers: a box with NaN or infinity leaves the region's
// rectangle as the box, a score that is not finite is no score, a float score is read, a negative
// score or id is one.
TEST(DetectionMeta, ReadersTakeOnlyNumbersFromOtherProducers)
{
	BufferPtr buffer = frame();
	auto add = [&](const char *type, guint x, GstStructure *param) {
		GstVideoRegionOfInterestMeta *roi =
			gst_buffer_add_video_region_of_interest_meta(buffer.get(), type, x, 10, 40, 30);
		gst_video_region_of_interest_meta_add_param(roi, param);
	};
	add("nan-box", 10, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, 0.7, "x_min", G_TYPE_DOUBLE, NAN,
					     "y_min", G_TYPE_DOUBLE, 0.1, "x_max", G_TYPE_DOUBLE, 0.2, "y_max",
					     G_TYPE_DOUBLE, 0.3, nullptr));
	add("inf-score", 100, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, INFINITY, nullptr));
	add("float-score", 200, gst_structure_new("detection", "confidence", G_TYPE_FLOAT, 0.5f, nullptr));
	/* A finite number is a score, whatever its sign; so is a negative id an id. */
	add("negative", 300, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, -0.5, "label_id", G_TYPE_INT, -3,
					       nullptr));
	const std::vector<frcnn::gst::DetectionMeta> read = frcnn::gst::read_detection_metas(buffer.get(), kWidth, kHeight);
	ASSERT_EQ(read.size(), 4u);
	EXPECT_FALSE(read[0].has_box);
	EXPECT_EQ(read[0].x1, 10.0);
	EXPECT_EQ(read[0].x2, 50.0);
	EXPECT_EQ(read[0].y2, 40.0);
	EXPECT_EQ(read[0].score, 0.7);
	EXPECT_FALSE(read[1].score) << "no score";
	EXPECT_FALSE(read[1].label_id) << "no id";
	EXPECT_EQ(read[2].score, 0.5);
	EXPECT_EQ(read[3].score, -0.5);
	EXPECT_EQ(read[3].label_id, -3);
}

// A param box is read only while it is the region's: a region another element moved (a tracker, an
// application) is read at its rectangle, with its param's class and score; so is one of another
// producer whose box lies outside the frame. Another producer's box within the rectangle's
// rounding is read as it is.
TEST(DetectionMeta, ReadersTakeTheRectangleOfAMovedRegion)
{
	BufferPtr buffer = frame();
	frcnn::gst::add_detection_metas(buffer.get(), kWidth, kHeight,
					{ { 100.4, 50.6, 200.2, 150.8, 1, "person", 0.9 },
					  { 300.25, 60.5, 340.75, 90.5, 3, "car", 0.8 } });
	auto *moved = gst_buffer_get_video_region_of_interest_meta_id(buffer.get(), 0);
	ASSERT_NE(moved, nullptr);
	moved->x = 10;
	moved->y = 20;
	auto add = [&](guint x, guint y, guint w, guint h, double x_min, double y_min, double x_max, double y_max) {
		GstVideoRegionOfInterestMeta *roi =
			gst_buffer_add_video_region_of_interest_meta(buffer.get(), "face", x, y, w, h);
		gst_video_region_of_interest_meta_add_param(
			roi, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, 0.7, "x_min", G_TYPE_DOUBLE,
					       x_min, "y_min", G_TYPE_DOUBLE, y_min, "x_max", G_TYPE_DOUBLE, x_max,
					       "y_max", G_TYPE_DOUBLE, y_max, nullptr));
	};
	add(400, 300, 64, 48, 400.3 / kWidth, 299.6 / kHeight, 464.4 / kWidth, 348.2 / kHeight);
	add(500, 100, 20, 20, 1e300, 0.1, 0.2, 0.3);

	const std::vector<frcnn::gst::DetectionMeta> read =
		frcnn::gst::read_detection_metas(buffer.get(), kWidth, kHeight);
	ASSERT_EQ(read.size(), 4u);
	EXPECT_TRUE(read[0].has_param);
	EXPECT_FALSE(read[0].has_box) << "the box the region was moved away from";
	EXPECT_EQ(read[0].x1, 10.0);
	EXPECT_EQ(read[0].y1, 20.0);
	EXPECT_EQ(read[0].x2, 10.0 + moved->w);
	EXPECT_EQ(read[0].label_id, 1);
	EXPECT_EQ(read[0].score, 0.9);
	EXPECT_TRUE(read[1].has_box) << "the region in place keeps its unrounded box";
	EXPECT_NEAR(read[1].x1, 300.25, 1e-9);
	EXPECT_TRUE(read[2].has_box);
	EXPECT_NEAR(read[2].x1, 400.3, 1e-9);
	EXPECT_NEAR(read[2].y2, 348.2, 1e-9);
	EXPECT_TRUE(read[3].has_param);
	EXPECT_FALSE(read[3].has_box) << "a box outside the frame";
	EXPECT_EQ(read[3].x1, 500.0);
	EXPECT_EQ(read[3].x2, 520.0);
	EXPECT_EQ(read[3].score, 0.7);
}

// Regions of interest of another producer keep what they came with: no param is given to one
// that had none, one whose param another element replaced keeps the new one.
TEST(DetectionMeta, OtherRegionsKeepWhatTheyHave)
{
	BufferPtr input = frame();
	GstVideoRegionOfInterestMeta *face =
		gst_buffer_add_video_region_of_interest_meta(input.get(), "face", 40, 40, 80, 80);
	face->id = 0;
	frcnn::gst::add_detection_meta(input.get(), kWidth, kHeight, 10, 20, 110, 220, 1, "person", 0.9);
	std::vector<Region> before = read_rois(input.get());
	ASSERT_EQ(before.size(), 2u);
	EXPECT_EQ(before[1].id, 1);

	BufferPtr half = through("videoscale ! capsfilter caps=video/x-raw,width=320,height=240", input.get());
	ASSERT_TRUE(half);
	const std::vector<Region> after = read_rois(half.get());
	ASSERT_EQ(after.size(), 2u);
	EXPECT_EQ(after[0].roi_type, "face");
	EXPECT_FALSE(after[0].has_param);
	EXPECT_TRUE(after[1].has_param);
	EXPECT_EQ(after[1].confidence, 0.9);
}

// Where GStreamer's elements drop or keep the regions of interest, they drop or keep the kept
// params alike: both have the same tags.
TEST(DetectionMeta, KeptParamsHaveTheTagsOfTheRegions)
{
	gst_test::init();
	const GType params = frcnn::gst::detection_params_meta_api_get_type();
	ASSERT_NE(params, G_TYPE_INVALID);
	for (const char *tag : { GST_META_TAG_VIDEO_STR, GST_META_TAG_VIDEO_ORIENTATION_STR,
				 GST_META_TAG_VIDEO_SIZE_STR, GST_META_TAG_VIDEO_COLORSPACE_STR,
				 GST_META_TAG_MEMORY_STR })
		EXPECT_EQ(gst_meta_api_type_has_tag(params, g_quark_from_string(tag)),
			  gst_meta_api_type_has_tag(GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE,
						    g_quark_from_string(tag)))
			<< tag;

	BufferPtr input = frame_with_detections();
	BufferPtr cropped = through("videocrop left=8", input.get());
	ASSERT_TRUE(cropped);
	EXPECT_TRUE(read_rois(cropped.get()).empty());
	EXPECT_EQ(gst_buffer_get_meta(cropped.get(), params), nullptr);
}

} // namespace

// A frame a detector passed on without running on it says so through copies and scaling
// (videoscale, videoconvert to another format), as GStreamer's custom meta an application reads.
TEST(SkippedMeta, GoesThroughCopiesAndScalingElements)
{
	BufferPtr input = frame();
	{
		GstBuffer *writable = input.get();
		ASSERT_TRUE(gst_buffer_is_writable(writable));
		frcnn::gst::add_skipped_meta(writable, "detect0", "interval");
	}
	const auto expect_skipped = [](GstBuffer *buffer) {
		const std::vector<frcnn::gst::SkippedBy> skipped = frcnn::gst::read_skipped_metas(buffer);
		ASSERT_EQ(skipped.size(), 1u);
		EXPECT_EQ(skipped[0].element, "detect0");
		EXPECT_EQ(skipped[0].reason, "interval");
		GstCustomMeta *meta = gst_buffer_get_custom_meta(buffer, "GstFrcnnSkippedMeta");
		ASSERT_NE(meta, nullptr);
		EXPECT_STREQ(gst_structure_get_string(gst_custom_meta_get_structure(meta), "reason"), "interval");
	};
	expect_skipped(input.get());
	BufferPtr copy(gst_buffer_copy(input.get()));
	expect_skipped(copy.get());
	for (const std::string elements : { "videoscale ! capsfilter caps=video/x-raw,width=320,height=240",
					    "videoconvert ! capsfilter caps=video/x-raw,format=I420" }) {
		SCOPED_TRACE(elements);
		BufferPtr out = through(elements, input.get());
		ASSERT_TRUE(out);
		expect_skipped(out.get());
	}
	EXPECT_EQ(g_type_from_name("GstFrcnnSkippedMeta-api"), frcnn::gst::skipped_meta_api_get_type());
}

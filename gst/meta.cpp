// SPDX-License-Identifier: BSD-3-Clause
#include "meta.h"

#include <algorithm>
#include <cmath>

#include <gst/video/video.h>

namespace frcnn::gst {

namespace {

constexpr const char *kDetectionParam = "detection";

double clamp(double value, double low, double high)
{
	if (std::isnan(value))
		return low;
	return std::min(std::max(value, low), high);
}

} // namespace

void add_detection_meta(GstBuffer *buffer, int width, int height, double x1, double y1,
			double x2, double y2, int64_t label_id, const std::string &label, double score,
			int parent_id)
{
	x1 = clamp(x1, 0, width);
	x2 = clamp(x2, x1, width);
	y1 = clamp(y1, 0, height);
	y2 = clamp(y2, y1, height);

	const long left = std::lround(x1);
	const long top = std::lround(y1);
	const long right = std::max(left, std::lround(x2));
	const long bottom = std::max(top, std::lround(y2));

	// Ids unique within the buffer, so that readers can fetch metas with
	// gst_buffer_get_video_region_of_interest_meta_id().
	gint next_id = 0;
	gpointer state = nullptr;
	while (GstMeta *meta = gst_buffer_iterate_meta_filtered(
		       buffer, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))
		next_id = std::max(next_id,
				   reinterpret_cast<GstVideoRegionOfInterestMeta *>(meta)->id + 1);

	GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta(
		buffer, label.c_str(), left, top, right - left, bottom - top);
	roi->id = next_id;
	/* GStreamer starts it at 0, a valid id: -1 says that the detection has no parent. */
	roi->parent_id = parent_id;

	GstStructure *param = gst_structure_new(
		kDetectionParam,
		/* A gint, as Intel DL Streamer writes and reads it (its converters ask for G_TYPE_INT). */
		"label_id", G_TYPE_INT, static_cast<gint>(std::clamp<int64_t>(label_id, 0, G_MAXINT)),
		"label", G_TYPE_STRING, label.c_str(),
		"confidence", G_TYPE_DOUBLE, score,
		"x_min", G_TYPE_DOUBLE, width > 0 ? x1 / width : 0.0,
		"y_min", G_TYPE_DOUBLE, height > 0 ? y1 / height : 0.0,
		"x_max", G_TYPE_DOUBLE, width > 0 ? x2 / width : 0.0,
		"y_max", G_TYPE_DOUBLE, height > 0 ? y2 / height : 0.0,
		nullptr);
	/* The meta takes ownership of the structure. */
	gst_video_region_of_interest_meta_add_param(roi, param);
}

std::vector<DetectionMeta> read_detection_metas(GstBuffer *buffer, int width, int height)
{
	std::vector<DetectionMeta> result;
	gpointer state = nullptr;
	while (GstMeta *meta = gst_buffer_iterate_meta_filtered(
		       buffer, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) {
		auto *roi = reinterpret_cast<GstVideoRegionOfInterestMeta *>(meta);

		DetectionMeta det;
		det.x = roi->x;
		det.y = roi->y;
		det.w = roi->w;
		det.h = roi->h;
		det.id = roi->id;
		det.parent_id = roi->parent_id;
		det.x1 = roi->x;
		det.y1 = roi->y;
		det.x2 = static_cast<double>(roi->x) + roi->w;
		det.y2 = static_cast<double>(roi->y) + roi->h;
		det.label_id = -1;
		det.score = -1;
		const gchar *type = g_quark_to_string(roi->roi_type);
		det.roi_type = type ? type : "";
		det.label = det.roi_type;

		const GstStructure *param =
			gst_video_region_of_interest_meta_get_param(roi, kDetectionParam);
		if (param) {
			/* A gint as frcnndetect and DL Streamer write it; a guint from other producers. */
			gint id;
			guint unsigned_id;
			if (gst_structure_get_int(param, "label_id", &id))
				det.label_id = id;
			else if (gst_structure_get_uint(param, "label_id", &unsigned_id))
				det.label_id = unsigned_id;
			const gchar *label = gst_structure_get_string(param, "label");
			if (label)
				det.label = label;
			double value;
			if (gst_structure_get_double(param, "confidence", &value))
				det.score = value;

			if (gst_structure_get(param, "x_min", G_TYPE_DOUBLE, &det.x_min,
					      "y_min", G_TYPE_DOUBLE, &det.y_min,
					      "x_max", G_TYPE_DOUBLE, &det.x_max,
					      "y_max", G_TYPE_DOUBLE, &det.y_max, nullptr)) {
				det.has_box = true;
				det.x1 = det.x_min * width;
				det.y1 = det.y_min * height;
				det.x2 = det.x_max * width;
				det.y2 = det.y_max * height;
			}
		}
		result.push_back(std::move(det));
	}
	return result;
}

} // namespace frcnn::gst

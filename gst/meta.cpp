// SPDX-License-Identifier: BSD-3-Clause
#include "meta.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>

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

// --- GstFrcnnDetectionParamsMeta (see meta.h) ---

struct StructureFree {
	void operator()(GstStructure *structure) const { gst_structure_free(structure); }
};

// The normalised box of a "detection" param, when it has one of finite numbers.
bool param_box(const GstStructure *param, double &x_min, double &y_min, double &x_max, double &y_max)
{
	return gst_structure_get(param, "x_min", G_TYPE_DOUBLE, &x_min, "y_min", G_TYPE_DOUBLE, &y_min,
				 "x_max", G_TYPE_DOUBLE, &x_max, "y_max", G_TYPE_DOUBLE, &y_max, nullptr) &&
	       std::isfinite(x_min) && std::isfinite(y_min) && std::isfinite(x_max) && std::isfinite(y_max);
}

// The param of one region of interest: which region (id and type), a copy of its param, and
// the frame its normalised box is of, with how far (pixels) the region's rectangle may lie from
// that box: rounded once when attached, then rounded down at every scaling, each earlier
// rounding scaled with the frame.
struct KeptParam {
	gint roi_id;
	GQuark roi_type;
	std::unique_ptr<GstStructure, StructureFree> param;
	int frame_width = 0, frame_height = 0;
	double slack_x = 1.0, slack_y = 1.0;

	// The param as kept on a copy of the buffer, or on a scaled copy (`scale` not null).
	KeptParam scaled(const GstVideoMetaTransform *scale) const
	{
		KeptParam copy{ roi_id, roi_type,
				std::unique_ptr<GstStructure, StructureFree>(gst_structure_copy(param.get())),
				frame_width, frame_height, slack_x, slack_y };
		const int in_width = scale ? GST_VIDEO_INFO_WIDTH(scale->in_info) : 0;
		const int in_height = scale ? GST_VIDEO_INFO_HEIGHT(scale->in_info) : 0;
		if (in_width > 0 && in_height > 0) {
			const double fx = static_cast<double>(GST_VIDEO_INFO_WIDTH(scale->out_info)) / in_width;
			const double fy = static_cast<double>(GST_VIDEO_INFO_HEIGHT(scale->out_info)) / in_height;
			copy.frame_width = static_cast<int>(std::lround(frame_width * fx));
			copy.frame_height = static_cast<int>(std::lround(frame_height * fy));
			copy.slack_x = slack_x * fx + 1.0;
			copy.slack_y = slack_y * fy + 1.0;
		}
		return copy;
	}

	// Whether this param was kept for a region of `id` and `type`.
	bool names(gint id, GQuark type) const { return id == roi_id && type == roi_type; }

	// Whether `roi` is the region this param was kept for: of its id and type, and where its
	// box is (another producer's region may have the same id and type).
	bool fits(const GstVideoRegionOfInterestMeta &roi) const
	{
		if (!names(roi.id, roi.roi_type))
			return false;
		double x_min, y_min, x_max, y_max;
		if (frame_width <= 0 || frame_height <= 0 || !param_box(param.get(), x_min, y_min, x_max, y_max))
			return true;
		const double left = x_min * frame_width, right = x_max * frame_width;
		const double top = y_min * frame_height, bottom = y_max * frame_height;
		/* Each edge (and so the width and height) may be off by the slack. */
		return std::abs(left - roi.x) <= slack_x + 1e-6 && std::abs(top - roi.y) <= slack_y + 1e-6 &&
		       std::abs(right - left - roi.w) <= 2 * slack_x + 1e-6 &&
		       std::abs(bottom - top - roi.h) <= 2 * slack_y + 1e-6;
	}
};

struct DetectionParamsMeta {
	GstMeta meta;
	std::vector<KeptParam> *kept;
};

const GstMetaInfo *detection_params_meta_get_info();

const KeptParam *kept_param_of(const DetectionParamsMeta &meta, const GstVideoRegionOfInterestMeta &roi)
{
	for (const KeptParam &kept : *meta.kept)
		if (kept.fits(roi))
			return &kept;
	return nullptr;
}

// The regions of interest of `buffer`, in their order on the buffer.
std::vector<GstVideoRegionOfInterestMeta *> region_metas(GstBuffer *buffer)
{
	std::vector<GstVideoRegionOfInterestMeta *> regions;
	gpointer state = nullptr;
	while (GstMeta *item = gst_buffer_iterate_meta_filtered(
		       buffer, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))
		regions.push_back(reinterpret_cast<GstVideoRegionOfInterestMeta *>(item));
	return regions;
}

// The regions of interest of `buffer`, by id and type, in their order on the buffer.
std::map<std::pair<gint, GQuark>, std::vector<GstVideoRegionOfInterestMeta *>> regions_by_name(GstBuffer *buffer)
{
	std::map<std::pair<gint, GQuark>, std::vector<GstVideoRegionOfInterestMeta *>> regions;
	for (GstVideoRegionOfInterestMeta *roi : region_metas(buffer))
		regions[{ roi->id, roi->roi_type }].push_back(roi);
	return regions;
}

// Puts the params back on the regions of interest of `buffer`, a scaled copy of `source`, that
// lost theirs. A buffer's metas are transformed in the order they were added, each added after
// those before it on the new buffer: the regions of interest older than this meta are there when
// its transform runs, in their order on `source`. Each takes the param its region has on
// `source` now, which an element may have changed (a tracker moving the rectangle and its box);
// where `source` has another count of regions of that id and type (one added after this meta),
// the kept param of a region found where its box is.
void restore_params(GstBuffer *buffer, GstBuffer *source, const DetectionParamsMeta &meta)
{
	const auto lost = [](GstVideoRegionOfInterestMeta *roi) {
		return !gst_video_region_of_interest_meta_get_param(roi, kDetectionParam);
	};
	const auto on_buffer = regions_by_name(buffer);
	/* A copy keeps the params: the source's regions are read only where one was lost. */
	if (std::none_of(on_buffer.begin(), on_buffer.end(), [&lost](const auto &named) {
		    return std::any_of(named.second.begin(), named.second.end(), lost);
	    }))
		return;
	const auto before = source ? regions_by_name(source) : decltype(regions_by_name(source)){};
	for (const auto &[name, regions] : on_buffer) {
		const auto original = before.find(name);
		const bool paired = original != before.end() && original->second.size() == regions.size();
		for (std::size_t i = 0; i < regions.size(); i++) {
			GstVideoRegionOfInterestMeta *roi = regions[i];
			if (!lost(roi))
				continue;
			if (paired) {
				/* The region's own param, or none where it had none (an application took it
				 * off). */
				if (const GstStructure *param = gst_video_region_of_interest_meta_get_param(
					    original->second[i], kDetectionParam))
					gst_video_region_of_interest_meta_add_param(roi, gst_structure_copy(param));
			} else if (const KeptParam *kept = kept_param_of(meta, *roi)) {
				gst_video_region_of_interest_meta_add_param(roi, gst_structure_copy(kept->param.get()));
			}
		}
	}
}

gboolean params_meta_init(GstMeta *meta, gpointer, GstBuffer *)
{
	reinterpret_cast<DetectionParamsMeta *>(meta)->kept = new std::vector<KeptParam>();
	return TRUE;
}

void params_meta_free(GstMeta *meta, GstBuffer *)
{
	auto *params = reinterpret_cast<DetectionParamsMeta *>(meta);
	delete params->kept;
	params->kept = nullptr;
}

gboolean params_meta_transform(GstBuffer *dest, GstMeta *meta, GstBuffer *source_buffer, GQuark type, gpointer data)
{
	/* The params hold boxes normalised to the frame, true of a copy and of a scaled frame
	 * alike. The region-of-interest metas take no other transform, nor does this one. */
	if (!GST_META_TRANSFORM_IS_COPY(type) && !GST_VIDEO_META_TRANSFORM_IS_SCALE(type))
		return FALSE;
	const auto *source = reinterpret_cast<DetectionParamsMeta *>(meta);
	auto *target = reinterpret_cast<DetectionParamsMeta *>(
		gst_buffer_add_meta(dest, detection_params_meta_get_info(), nullptr));
	if (!target)
		return FALSE;
	const auto *scale = GST_VIDEO_META_TRANSFORM_IS_SCALE(type)
				    ? static_cast<const GstVideoMetaTransform *>(data)
				    : nullptr;
	for (const KeptParam &kept : *source->kept)
		target->kept->push_back(kept.scaled(scale));
	restore_params(dest, source_buffer, *target);
	return TRUE;
}

const GstMetaInfo *detection_params_meta_get_info()
{
	static const GstMetaInfo *const info = [] {
		/* Registered once per process, even where this code is in it twice. */
		const GstMetaInfo *registered = gst_meta_get_info("GstFrcnnDetectionParamsMeta");
		if (!registered)
			registered = gst_meta_register(detection_params_meta_api_get_type(),
						       "GstFrcnnDetectionParamsMeta",
						       sizeof(DetectionParamsMeta), params_meta_init,
						       params_meta_free, params_meta_transform);
		return registered;
	}();
	return info;
}

// Leaves out of `kept` the params of regions no longer on `buffer` (an application removed them)
// and of the regions in `added` (which may have taken a removed region's id and type): they
// would be put on a new region of that id and type after a scaling.
void drop_stale_params(GstBuffer *buffer, const std::vector<KeptParam> &added, std::vector<KeptParam> &kept)
{
	/* The buffer's regions are looked up once, not walked again for each param. */
	const auto regions = regions_by_name(buffer);
	auto on_buffer = [&regions](const KeptParam &param) {
		return regions.count({ param.roi_id, param.roi_type }) > 0;
	};
	auto replaced = [&added](const KeptParam &param) {
		return std::any_of(added.begin(), added.end(), [&param](const KeptParam &other) {
			return other.names(param.roi_id, param.roi_type);
		});
	};
	kept.erase(std::remove_if(kept.begin(), kept.end(),
				  [&](const KeptParam &param) { return replaced(param) || !on_buffer(param); }),
		   kept.end());
}

// Keeps the params of regions of interest just added (`added`) in the buffer's
// GstFrcnnDetectionParamsMeta, which it (re)adds after them: the meta must be newer than the
// regions it serves (restore_params).
void keep_params(GstBuffer *buffer, std::vector<KeptParam> &&added)
{
	std::unique_ptr<std::vector<KeptParam>> kept(new std::vector<KeptParam>());
	if (auto *older = reinterpret_cast<DetectionParamsMeta *>(
		    gst_buffer_get_meta(buffer, detection_params_meta_api_get_type()))) {
		drop_stale_params(buffer, added, *older->kept);
		std::swap(*kept, *older->kept);
		if (!gst_buffer_remove_meta(buffer, &older->meta)) {
			/* A locked meta stays where it is, and keeps the params. */
			std::swap(*kept, *older->kept);
			for (KeptParam &param : added)
				older->kept->push_back(std::move(param));
			return;
		}
	}
	for (KeptParam &param : added)
		kept->push_back(std::move(param));
	auto *meta = reinterpret_cast<DetectionParamsMeta *>(
		gst_buffer_add_meta(buffer, detection_params_meta_get_info(), nullptr));
	if (meta)
		std::swap(*meta->kept, *kept);
}

// Ids no region of interest of a buffer has: those above the highest, and once that reaches
// G_MAXINT (another producer's ids may be anything), the lowest free ones from 0.
class FreeRegionIds {
public:
	// `regions`: all those of the buffer (region_metas).
	explicit FreeRegionIds(const std::vector<GstVideoRegionOfInterestMeta *> &regions)
	{
		for (const GstVideoRegionOfInterestMeta *roi : regions) {
			used_.insert(roi->id);
			highest_ = std::max(highest_, roi->id);
		}
	}

	gint take()
	{
		if (highest_ < G_MAXINT) {
			used_.insert(++highest_);
			return highest_;
		}
		while (used_.count(lowest_))
			lowest_++;
		used_.insert(lowest_);
		return lowest_;
	}

private:
	std::set<gint> used_;
	gint highest_ = -1;
	gint lowest_ = 0;
};

} // namespace

GType detection_params_meta_api_get_type()
{
	static const GType type = [] {
		/* The tags of GstVideoRegionOfInterestMeta: elements keep, scale or drop both alike. */
		static const gchar *tags[] = { GST_META_TAG_VIDEO_STR, GST_META_TAG_VIDEO_ORIENTATION_STR,
					       GST_META_TAG_VIDEO_SIZE_STR, nullptr };
		GType registered = g_type_from_name("GstFrcnnDetectionParamsMetaAPI");
		if (!registered)
			registered = gst_meta_api_type_register("GstFrcnnDetectionParamsMetaAPI", tags);
		return registered;
	}();
	return type;
}

void add_detection_metas(GstBuffer *buffer, int width, int height,
			 const std::vector<NewDetection> &detections)
{
	if (detections.empty())
		return;

	// Ids unique within the buffer, so that readers can fetch metas with
	// gst_buffer_get_video_region_of_interest_meta_id().
	FreeRegionIds ids(region_metas(buffer));

	std::vector<KeptParam> kept;
	kept.reserve(detections.size());
	for (const NewDetection &det : detections) {
		const double x1 = clamp(det.x1, 0, width);
		const double x2 = clamp(det.x2, x1, width);
		const double y1 = clamp(det.y1, 0, height);
		const double y2 = clamp(det.y2, y1, height);

		const long left = std::lround(x1);
		const long top = std::lround(y1);
		const long right = std::max(left, std::lround(x2));
		const long bottom = std::max(top, std::lround(y2));

		GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta(
			buffer, det.label.c_str(), left, top, right - left, bottom - top);
		roi->id = ids.take();
		/* GStreamer starts it at 0, a valid id: -1 says that the detection has no parent. */
		roi->parent_id = det.parent_id;

		GstStructure *param = gst_structure_new(
			kDetectionParam,
			/* A gint, as Intel DL Streamer writes and reads it (its converters ask for
			 * G_TYPE_INT). */
			"label_id", G_TYPE_INT,
			static_cast<gint>(std::clamp<int64_t>(det.label_id, 0, G_MAXINT)),
			"label", G_TYPE_STRING, det.label.c_str(),
			"confidence", G_TYPE_DOUBLE, det.score,
			"x_min", G_TYPE_DOUBLE, width > 0 ? x1 / width : 0.0,
			"y_min", G_TYPE_DOUBLE, height > 0 ? y1 / height : 0.0,
			"x_max", G_TYPE_DOUBLE, width > 0 ? x2 / width : 0.0,
			"y_max", G_TYPE_DOUBLE, height > 0 ? y2 / height : 0.0,
			nullptr);
		kept.push_back({ roi->id, roi->roi_type,
				 std::unique_ptr<GstStructure, StructureFree>(gst_structure_copy(param)), width,
				 height });
		/* The meta takes ownership of the structure. */
		gst_video_region_of_interest_meta_add_param(roi, param);
	}
	keep_params(buffer, std::move(kept));
}

void add_detection_meta(GstBuffer *buffer, int width, int height, double x1, double y1,
			double x2, double y2, int64_t label_id, const std::string &label, double score,
			int parent_id)
{
	add_detection_metas(buffer, width, height,
			    { NewDetection{ x1, y1, x2, y2, label_id, label, score, parent_id } });
}

namespace {

constexpr const char *kSkippedMetaName = "GstFrcnnSkippedMeta";

/* Says nothing of the pixels: the same on any copy, scaled, cut or turned. */
gboolean skipped_meta_transform(GstBuffer *dest, GstCustomMeta *meta, GstBuffer *, GQuark, gpointer, gpointer)
{
	GstCustomMeta *target = gst_buffer_add_custom_meta(dest, kSkippedMetaName);
	if (!target)
		return FALSE;
	const GstStructure *source = gst_custom_meta_get_structure(meta);
	gst_structure_set(gst_custom_meta_get_structure(target), "element", G_TYPE_STRING,
			  gst_structure_get_string(source, "element"), "reason", G_TYPE_STRING,
			  gst_structure_get_string(source, "reason"), nullptr);
	return TRUE;
}

} // namespace

/* A custom meta (a GstStructure), so that applications read it with GStreamer's own calls. The
 * plugin and a program linking these functions too each hold a copy of them: the first to come
 * registers it. */
GType skipped_meta_api_get_type()
{
	static const GType api = [] {
		const GstMetaInfo *info = gst_meta_get_info(kSkippedMetaName);
		if (!info) {
			static const gchar *tags[] = { nullptr };
			info = gst_meta_register_custom(kSkippedMetaName, tags, skipped_meta_transform, nullptr,
							nullptr);
		}
		return info->api;
	}();
	return api;
}

void add_skipped_meta(GstBuffer *buffer, const std::string &element, const std::string &reason)
{
	skipped_meta_api_get_type();
	GstCustomMeta *meta = gst_buffer_add_custom_meta(buffer, kSkippedMetaName);
	if (!meta)
		return;
	gst_structure_set(gst_custom_meta_get_structure(meta), "element", G_TYPE_STRING, element.c_str(),
			  "reason", G_TYPE_STRING, reason.c_str(), nullptr);
}

std::vector<SkippedBy> read_skipped_metas(GstBuffer *buffer)
{
	std::vector<SkippedBy> skipped;
	gpointer state = nullptr;
	while (GstMeta *meta = gst_buffer_iterate_meta_filtered(buffer, &state, skipped_meta_api_get_type())) {
		const GstStructure *by = gst_custom_meta_get_structure(reinterpret_cast<GstCustomMeta *>(meta));
		const gchar *element = gst_structure_get_string(by, "element");
		const gchar *reason = gst_structure_get_string(by, "reason");
		skipped.push_back({ element ? element : "", reason ? reason : "" });
	}
	return skipped;
}

int make_region_ids_unique(GstBuffer *buffer)
{
	const std::vector<GstVideoRegionOfInterestMeta *> regions = region_metas(buffer);
	FreeRegionIds ids(regions);
	std::set<gint> seen;
	int renumbered = 0;
	for (GstVideoRegionOfInterestMeta *roi : regions) {
		/* -1 is no region's: a parent_id of -1 stands for the whole frame. */
		if (roi->id != -1 && seen.insert(roi->id).second)
			continue;
		roi->id = ids.take();
		seen.insert(roi->id);
		renumbered++;
	}
	return renumbered;
}

void refuse_crop_meta(GstQuery *allocation)
{
	guint index;
	while (gst_query_find_allocation_meta(allocation, GST_VIDEO_CROP_META_API_TYPE, &index))
		gst_query_remove_nth_allocation_meta(allocation, index);
}

namespace {

// Whether a "detection" param's box (normalised) describes `roi` of a `width` x `height` frame: a
// box inside the frame, where the region's rectangle is up to the rounding the rectangle has had.
// For the regions add_detection_metas added, that is the slack their kept params count through
// the scalings since; for another producer's, a pixel and a half per edge, plus 1% of the frame
// for the scalings the frame may have had since (the rectangle rounded at each). An element that
// moved the rectangle (a tracker, an application) without the param leaves the box stale: then
// the rectangle is the region's place.
bool box_is_the_regions(const GstVideoRegionOfInterestMeta &roi, const DetectionParamsMeta *params,
			int width, int height, double x_min, double y_min, double x_max, double y_max)
{
	constexpr double kEpsilon = 1e-6;
	if (!(x_min >= -kEpsilon && y_min >= -kEpsilon && x_max <= 1 + kEpsilon && y_max <= 1 + kEpsilon &&
	      x_min <= x_max && y_min <= y_max))
		return false;
	if (params) {
		bool named = false;
		for (const KeptParam &kept : *params->kept) {
			if (!kept.names(roi.id, roi.roi_type))
				continue;
			if (kept.fits(roi))
				return true;
			named = true;
		}
		if (named)
			return false;
	}
	const double slack_x = 1.5 + 0.01 * width, slack_y = 1.5 + 0.01 * height;
	const double left = x_min * width, right = x_max * width;
	const double top = y_min * height, bottom = y_max * height;
	return std::abs(left - roi.x) <= slack_x && std::abs(right - (static_cast<double>(roi.x) + roi.w)) <= slack_x &&
	       std::abs(top - roi.y) <= slack_y && std::abs(bottom - (static_cast<double>(roi.y) + roi.h)) <= slack_y;
}

} // namespace

std::vector<DetectionMeta> read_detection_metas(GstBuffer *buffer, int width, int height)
{
	std::vector<DetectionMeta> result;
	const auto *params = reinterpret_cast<const DetectionParamsMeta *>(
		gst_buffer_get_meta(buffer, detection_params_meta_api_get_type()));
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
		if (const GstStructure *tracked = gst_video_region_of_interest_meta_get_param(roi, "object_id"))
			gst_structure_get_int(tracked, "id", &det.object_id);
		det.x1 = roi->x;
		det.y1 = roi->y;
		det.x2 = static_cast<double>(roi->x) + roi->w;
		det.y2 = static_cast<double>(roi->y) + roi->h;
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
			/* A double as frcnndetect and DL Streamer write it; a float from other
			 * producers. A score that is not a number is no score. */
			const GValue *confidence = gst_structure_get_value(param, "confidence");
			double score = NAN;
			if (confidence && G_VALUE_HOLDS_DOUBLE(confidence))
				score = g_value_get_double(confidence);
			else if (confidence && G_VALUE_HOLDS_FLOAT(confidence))
				score = g_value_get_float(confidence);
			if (std::isfinite(score))
				det.score = score;

			/* A box of numbers, inside the frame and where the rectangle is; else the
			 * rectangle stays what the region says. */
			det.has_param = true;
			if (param_box(param, det.x_min, det.y_min, det.x_max, det.y_max) &&
			    box_is_the_regions(*roi, params, width, height, det.x_min, det.y_min, det.x_max,
					       det.y_max)) {
				det.has_box = true;
				det.x1 = det.x_min * width;
				det.y1 = det.y_min * height;
				det.x2 = det.x_max * width;
				det.y2 = det.y_max * height;
			} else {
				det.x_min = det.y_min = det.x_max = det.y_max = 0;
			}
		}
		result.push_back(std::move(det));
	}
	return result;
}

} // namespace frcnn::gst

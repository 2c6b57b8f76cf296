// SPDX-License-Identifier: BSD-3-Clause
// The one place that writes and reads detection metadata on buffers.
//
// Each detection is a GstVideoRegionOfInterestMeta (roi_type = label name, x/y/w/h in frame
// pixels) carrying a "detection" GstStructure param with label_id (int), label (string),
// confidence (double) and x_min, y_min, x_max, y_max (double, normalised to 0..1), the layout
// Intel DL Streamer uses. Other representations (GstAnalytics on GStreamer >= 1.24) belong here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <gst/gst.h>

// The raw video formats of the frames frcnndetect reads and frcnnoverlay draws on: packed RGB in
// every byte order, grey, and YUV (4:2:0, 4:2:2 and 4:4:4; planar, semi-planar and packed; 8, 10,
// 12 and 16 bits; v210, SDI capture cards' 10-bit 4:2:2; AYUV, VUYA, Y410 and Y412_LE, packed
// 4:4:4 with alpha), in the colorimetry of their caps.
#define FRCNN_VIDEO_FORMATS                                                                 \
	"{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, NV12, NV21, I420, YV12, " \
	"NV16, NV61, Y42B, NV24, Y444, YUY2, UYVY, YVYU, VYUY, GRAY8, " \
	"P010_10LE, I420_10LE, I422_10LE, Y444_10LE, P012_LE, I420_12LE, I422_12LE, Y444_12LE, " \
	"Y210, Y212_LE, v210, AYUV, VUYA, P016_LE, Y444_16LE, Y410, Y412_LE }"

namespace frcnn::gst {

struct DetectionMeta {
	double x1, y1, x2, y2; // frame pixels
	std::optional<int64_t> label_id; // none when the producer gave none
	std::string label;
	std::optional<double> score;	 // none when the producer gave none (or no finite number)
	// The ROI rectangle as stored in the meta (integer pixels), its type, its id and the id of
	// the region it was found in.
	unsigned int x, y, w, h;
	std::string roi_type;
	int id = 0, parent_id = 0;
	// A tracker's id of the object: the "object_id" param's int "id", as DL Streamer's gvatrack
	// writes it; 0 when there is none.
	int object_id = 0;
	// Whether the region has a "detection" param, and the param's box as written (normalised to
	// 0..1) when it has one that is the region's (numbers inside the frame, where the rectangle
	// is up to its rounding: an element that moved the rectangle left the box behind).
	bool has_param = false;
	bool has_box = false;
	double x_min = 0, y_min = 0, x_max = 0, y_max = 0;
};

// GStreamer's own transform of a GstVideoRegionOfInterestMeta drops its params when an element
// scales the frames (videoscale, videoconvertscale): the rectangle is scaled, the "detection"
// param with the label id, the score and the unrounded box is lost. So that detections keep
// them downstream of such elements, add_detection_metas also keeps a copy of each param in one
// GstFrcnnDetectionParamsMeta per buffer, which goes wherever the region-of-interest metas go
// (the same tags, copied and scaled with them) and puts back on each region of interest the param
// that region had before the scaling dropped it (from the source buffer, by id, type and order;
// the kept copy where the source cannot tell). The meta sits after the
// regions it serves in the buffer's list of metas (it moves behind the regions each call adds),
// so that its transform runs after theirs.
GType detection_params_meta_api_get_type();

// A detection to add: its box in frame pixels, class, name and score, and the id of the region of
// interest it was found in (-1: none).
struct NewDetection {
	double x1, y1, x2, y2;
	int64_t label_id;
	std::string label;
	double score;
	int parent_id = -1;
};

// Adds detections to a writable buffer, in their order. Each box is clamped to the frame. Their
// ids follow the highest on the buffer (once that is G_MAXINT, the lowest free ones).
void add_detection_metas(GstBuffer *buffer, int width, int height,
			 const std::vector<NewDetection> &detections);

// The same for one detection.
void add_detection_meta(GstBuffer *buffer, int width, int height, double x1, double y1,
			double x2, double y2, int64_t label_id, const std::string &label, double score,
			int parent_id = -1);

// Every region of interest on the buffer, from any producer: the "detection" param gives label,
// id, score and the unrounded box where present; otherwise the roi_type and the ROI rectangle.
std::vector<DetectionMeta> read_detection_metas(GstBuffer *buffer, int width, int height);

// A detector that passed a frame on without running on it (frcnndetect's `interval`, a frame late
// downstream with `qos`, a gap buffer), and why: "interval", "late" or "gap". The frame's regions
// of interest are not that detector's findings, and a frame without any is not one where it found
// nothing. frcnndetect adds one GstFrcnnSkippedMeta per frame it passes so: a GstCustomMeta whose
// structure has the strings "element" and "reason"; it has no tags, so elements keep it through
// any transform. frcnnjson writes it.
struct SkippedBy {
	std::string element;
	std::string reason;
};
// Its API type, registered on the first call (the plugin makes it when it loads).
GType skipped_meta_api_get_type();
// Adds one to a writable buffer.
void add_skipped_meta(GstBuffer *buffer, const std::string &element, const std::string &reason);
// Those on the buffer, in the order they were added.
std::vector<SkippedBy> read_skipped_metas(GstBuffer *buffer);

// Gives the regions of interest of a writable `buffer` whose id an earlier region of the buffer
// has (GStreamer starts every region at id 0; producers that set none leave them all 0), or
// whose id is -1 (the parent_id of the whole frame's detections), ids of their own, after the
// largest (once that is G_MAXINT, the lowest free ones), so that detections found in them
// (inference-region=roi-list) name their parent alone. Returns how many it renumbered.
int make_region_ids_unique(GstBuffer *buffer);

// Takes GstVideoCropMeta out of the answer to an ALLOCATION query that an element passes
// upstream. With it, an element in front that crops (videocrop, a decoder) may hand over whole
// frames with the rectangle to show in a meta, which frcnndetect and frcnnoverlay would read
// and draw on as the frame of the caps: without it, it crops them itself.
void refuse_crop_meta(GstQuery *allocation);

} // namespace frcnn::gst

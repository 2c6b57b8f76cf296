// SPDX-License-Identifier: BSD-3-Clause
/**
 * SECTION:element-frcnnoverlay
 * @title: frcnnoverlay
 *
 * Draws every #GstVideoRegionOfInterestMeta of a frame onto the frame, in place: the box, and
 * "label score" above it, in a colour that stays the same for a class. Works for region of
 * interest metadata from any element; the label and score come from the "detection" parameter
 * structure when there is one, else the label is the ROI type. On frames whose pixels are not
 * square the labels are drawn as the display shows them. "font" names a TrueType or OpenType file
 * for labels in any script (the built-in font is ASCII only).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=street.mp4 ! decodebin ! frcnndetect weights=coco ! \
 *     frcnnoverlay line-thickness=3 ! videoconvert ! autovideosink
 * ]|
 */

#include "gstfrcnnoverlay.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gst/video/video.h>
#include <opencv2/core.hpp>
#include <opencv2/freetype.hpp>
#include <opencv2/imgproc.hpp>

#include "colorimetry.h"
#include "frame_memory.h"
#include "frcnn/detector.h"
#include "meta.h"

GST_DEBUG_CATEGORY_STATIC(gst_frcnn_overlay_debug);
#define GST_CAT_DEFAULT gst_frcnn_overlay_debug

enum {
	PROP_0,
	PROP_LINE_THICKNESS,
	PROP_TEXT_SCALE,
	PROP_SHOW,
	PROP_FONT,
};

typedef enum {
	GST_FRCNN_OVERLAY_SHOW_NONE,
	GST_FRCNN_OVERLAY_SHOW_LABEL,
	GST_FRCNN_OVERLAY_SHOW_SCORE,
	GST_FRCNN_OVERLAY_SHOW_LABEL_SCORE,
} GstFrcnnOverlayShow;

#define DEFAULT_PROP_LINE_THICKNESS 2
#define DEFAULT_PROP_TEXT_SCALE 0.5
#define DEFAULT_PROP_SHOW GST_FRCNN_OVERLAY_SHOW_LABEL_SCORE

#define GST_TYPE_FRCNN_OVERLAY_SHOW (gst_frcnn_overlay_show_get_type())
static GType gst_frcnn_overlay_show_get_type(void)
{
	static const GEnumValue values[] = {
		{ GST_FRCNN_OVERLAY_SHOW_NONE, "Boxes only", "none" },
		{ GST_FRCNN_OVERLAY_SHOW_LABEL, "The label", "label" },
		{ GST_FRCNN_OVERLAY_SHOW_SCORE, "The score", "score" },
		{ GST_FRCNN_OVERLAY_SHOW_LABEL_SCORE, "The label and the score", "label-score" },
		{ 0, nullptr, nullptr },
	};
	static gsize type = 0;
	if (g_once_init_enter(&type))
		g_once_init_leave(&type, g_enum_register_static("GstFrcnnOverlayShow", values));
	return type;
}

#define FRCNN_OVERLAY_CAPS \
	GST_VIDEO_CAPS_MAKE(FRCNN_VIDEO_FORMATS)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
	"sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRCNN_OVERLAY_CAPS));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
	"src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRCNN_OVERLAY_CAPS));

namespace {

// The font of the labels: OpenCV's built-in Hershey simplex (ASCII only: other characters come
// out as '?'), or a TrueType or OpenType file drawn through FreeType (every script its glyphs
// cover). A text scale of 1.0 makes capitals about 22 pixels high in either.
class LabelFont {
public:
	LabelFont() = default;
	// Throws cv::Exception when FreeType cannot read the file.
	explicit LabelFont(const std::string &file) : face_(cv::freetype::createFreeType2())
	{
		face_->loadFontData(file, 0);
	}

	// The text's size above its baseline, and below it in *baseline.
	cv::Size size(const std::string &text, double scale, int *baseline) const
	{
		if (face_)
			return face_->getTextSize(text, pixel_height(scale), -1, baseline);
		return cv::getTextSize(text, kHershey, scale, stroke(scale), baseline);
	}

	// The text's coverage (255: full, antialiased) added to an 8-bit image, its baseline starting
	// at `origin`.
	void draw(cv::Mat &coverage, const std::string &text, cv::Point origin, double scale) const
	{
		if (!face_) {
			cv::putText(coverage, text, origin, kHershey, scale, cv::Scalar(255), stroke(scale), cv::LINE_AA);
			return;
		}
		// OpenCV's FreeType drawing takes 3-channel images only.
		cv::Mat drawn = cv::Mat::zeros(coverage.size(), CV_8UC3), channel;
		face_->putText(drawn, text, origin, pixel_height(scale), cv::Scalar(255, 255, 255), -1, cv::LINE_AA, true);
		cv::extractChannel(drawn, channel, 0);
		cv::max(coverage, channel, coverage);
	}

	// The width of Hershey's strokes, also the margin a text may reach past its size.
	static int stroke(double scale) { return std::max(1, static_cast<int>(std::lround(scale * 2))); }

private:
	static constexpr int kHershey = cv::FONT_HERSHEY_SIMPLEX;
	// An em of 30 pixels gives capitals of about 22 in common fonts, as Hershey's at 1.0.
	static int pixel_height(double scale) { return std::max(4, static_cast<int>(std::lround(30 * scale))); }

	cv::Ptr<cv::freetype::FreeType2> face_;
};

} // namespace

struct _GstFrcnnOverlay {
	GstVideoFilter parent;

	/* Protected by the object lock. */
	gint line_thickness;
	gdouble text_scale;
	GstFrcnnOverlayShow show;
	gchar *font;
	/* The font drawn with: the last one that loaded (owned; the drawing takes a reference). */
	std::shared_ptr<const LabelFont> *label_font;
	/* Why the font of `font` did not load (owned), or nullptr. */
	gchar *font_error;
};

G_DEFINE_TYPE(GstFrcnnOverlay, gst_frcnn_overlay, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE(frcnnoverlay, "frcnnoverlay", GST_RANK_NONE, GST_TYPE_FRCNN_OVERLAY);

static void gst_frcnn_overlay_set_property(GObject *object, guint prop_id, const GValue *value,
					   GParamSpec *pspec);
static void gst_frcnn_overlay_get_property(GObject *object, guint prop_id, GValue *value,
					   GParamSpec *pspec);
static void gst_frcnn_overlay_finalize(GObject *object);
static gboolean gst_frcnn_overlay_start(GstBaseTransform *transform);
static GstFlowReturn gst_frcnn_overlay_transform_frame_ip(GstVideoFilter *filter,
							  GstVideoFrame *frame);

/* The metas downstream takes, passed upstream (GstBaseTransform's way), but for the crop meta:
 * the overlay draws on the frame of the caps. */
static gboolean gst_frcnn_overlay_propose_allocation(GstBaseTransform *transform,
						     GstQuery *decide_query, GstQuery *query)
{
	if (!GST_BASE_TRANSFORM_CLASS(gst_frcnn_overlay_parent_class)
		     ->propose_allocation(transform, decide_query, query))
		return FALSE;
	frcnn::gst::refuse_crop_meta(query);
	return TRUE;
}

/* Frames without regions pass untouched, unmapped. A buffer too small for the frame of its caps
 * that has regions to draw is an error that says so (GstVideoFilter would pass it on undrawn,
 * with a warning that asks to file a bug). */
static GstFlowReturn gst_frcnn_overlay_transform_ip(GstBaseTransform *transform, GstBuffer *buffer)
{
	GstVideoFilter *filter = GST_VIDEO_FILTER(transform);
	if (filter->negotiated) {
		const GstVideoInfo *info = &filter->in_info;
		/* Whether there is a region at all; the drawing reads them. */
		if (!gst_buffer_get_video_region_of_interest_meta(buffer))
			return GST_FLOW_OK;
		/* What gst_video_frame_map() refuses of a buffer without a video meta. */
		if (!gst_buffer_get_video_meta(buffer) && gst_buffer_get_size(buffer) < GST_VIDEO_INFO_SIZE(info)) {
			GST_ELEMENT_ERROR(transform, STREAM, FORMAT,
					  ("Cannot draw on a %dx%d %s frame from a buffer of %" G_GSIZE_FORMAT
					   " bytes (the frame takes %" G_GSIZE_FORMAT " bytes): the element in "
					   "front must send buffers that hold frames of its caps.",
					   GST_VIDEO_INFO_WIDTH(info), GST_VIDEO_INFO_HEIGHT(info),
					   GST_VIDEO_INFO_NAME(info), gst_buffer_get_size(buffer),
					   GST_VIDEO_INFO_SIZE(info)),
					  (nullptr));
			return GST_FLOW_ERROR;
		}
	}
	return GST_BASE_TRANSFORM_CLASS(gst_frcnn_overlay_parent_class)->transform_ip(transform, buffer);
}

static void gst_frcnn_overlay_class_init(GstFrcnnOverlayClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS(klass);
	GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
	GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS(klass);

	object_class->set_property = gst_frcnn_overlay_set_property;
	object_class->get_property = gst_frcnn_overlay_get_property;
	object_class->finalize = gst_frcnn_overlay_finalize;

	const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
						    GST_PARAM_MUTABLE_PLAYING);
	g_object_class_install_property(object_class, PROP_LINE_THICKNESS,
		g_param_spec_int("line-thickness", "Line thickness", "Box outline width in pixels",
				 1, 100, DEFAULT_PROP_LINE_THICKNESS, flags));
	g_object_class_install_property(object_class, PROP_TEXT_SCALE,
		g_param_spec_double("text-scale", "Text scale",
				    "Size of the text (1.0 is about 22 pixels high)", 0.1, 10.0,
				    DEFAULT_PROP_TEXT_SCALE, flags));
	g_object_class_install_property(object_class, PROP_SHOW,
		g_param_spec_enum("show", "Show", "Text written above each box",
				  GST_TYPE_FRCNN_OVERLAY_SHOW, DEFAULT_PROP_SHOW, flags));
	g_object_class_install_property(object_class, PROP_FONT,
		g_param_spec_string("font", "Font",
				    "TrueType or OpenType font file of the text, drawn through FreeType: labels "
				    "in any script the font covers (e.g. "
				    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf). Empty: OpenCV's built-in "
				    "Hershey font, ASCII only (other characters come out as '?'). A file that "
				    "cannot be read fails the start; set while playing, it is warned about, the "
				    "text keeps its font and the next start fails",
				    nullptr, flags));

	filter_class->transform_frame_ip = GST_DEBUG_FUNCPTR(gst_frcnn_overlay_transform_frame_ip);
	GST_BASE_TRANSFORM_CLASS(klass)->transform_ip = GST_DEBUG_FUNCPTR(gst_frcnn_overlay_transform_ip);
	GST_BASE_TRANSFORM_CLASS(klass)->propose_allocation =
		GST_DEBUG_FUNCPTR(gst_frcnn_overlay_propose_allocation);
	GST_BASE_TRANSFORM_CLASS(klass)->start = GST_DEBUG_FUNCPTR(gst_frcnn_overlay_start);

	gst_element_class_add_static_pad_template(element_class, &sink_template);
	gst_element_class_add_static_pad_template(element_class, &src_template);
	gst_element_class_set_static_metadata(element_class, "Detection overlay",
		"Filter/Effect/Video",
		"Draws region of interest metadata (boxes, labels, scores) onto the frames",
		"gst-frcnn authors");

	gst_type_mark_as_plugin_api(GST_TYPE_FRCNN_OVERLAY_SHOW, static_cast<GstPluginAPIFlags>(0));

	GST_DEBUG_CATEGORY_INIT(gst_frcnn_overlay_debug, "frcnnoverlay", 0, "Detection overlay");
}

static void gst_frcnn_overlay_init(GstFrcnnOverlay *self)
{
	self->line_thickness = DEFAULT_PROP_LINE_THICKNESS;
	self->text_scale = DEFAULT_PROP_TEXT_SCALE;
	self->show = DEFAULT_PROP_SHOW;
	self->label_font = new std::shared_ptr<const LabelFont>(std::make_shared<LabelFont>());
}

static void gst_frcnn_overlay_finalize(GObject *object)
{
	GstFrcnnOverlay *self = GST_FRCNN_OVERLAY(object);
	delete self->label_font;
	g_free(self->font);
	g_free(self->font_error);
	G_OBJECT_CLASS(gst_frcnn_overlay_parent_class)->finalize(object);
}

/* A font file that did not load fails the start. */
static gboolean gst_frcnn_overlay_start(GstBaseTransform *transform)
{
	GstFrcnnOverlay *self = GST_FRCNN_OVERLAY(transform);
	g_autofree gchar *error = nullptr;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		error = g_strdup(self->font_error);
	}
	if (error != nullptr) {
		GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("%s", error), (nullptr));
		return FALSE;
	}
	return TRUE;
}

/* The font of `file` (empty: the built-in one); on failure nullptr and *error a message that says
 * what to do. Reads the file: not under the object lock. */
static std::shared_ptr<const LabelFont> load_label_font(const gchar *file, std::string *error)
{
	if (file == nullptr || *file == '\0')
		return std::make_shared<LabelFont>();
	const std::string advice = " Set 'font' to a TrueType or OpenType file, e.g. "
				   "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf (Debian package "
				   "fonts-dejavu-core), or leave it empty for the built-in font.";
	if (!g_file_test(file, G_FILE_TEST_IS_REGULAR)) {
		*error = std::string("Could not load the font '") + file + "': " +
			 (g_file_test(file, G_FILE_TEST_IS_DIR)	 ? "a folder, not a font file."
			  : g_file_test(file, G_FILE_TEST_EXISTS) ? "not a regular file (a device or a pipe)."
								   : "no such file.") +
			 advice;
		return nullptr;
	}
	try {
		return std::make_shared<LabelFont>(file);
	} catch (const cv::Exception &e) {
		*error = std::string("Could not load the font '") + file +
			 "': FreeType cannot read it (not a TrueType or OpenType font?)." + advice;
		return nullptr;
	}
}

static void gst_frcnn_overlay_set_property(GObject *object, guint prop_id, const GValue *value,
					   GParamSpec *pspec)
{
	GstFrcnnOverlay *self = GST_FRCNN_OVERLAY(object);
	if (prop_id == PROP_FONT) {
		const gchar *file = g_value_get_string(value);
		std::string error;
		std::shared_ptr<const LabelFont> font = load_label_font(file, &error);
		const bool loaded = font != nullptr;
		bool warn = false;
		{
			g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
			g_free(self->font);
			self->font = g_strdup(file);
			g_clear_pointer(&self->font_error, g_free);
			/* A file that did not load fails the next start, as the property names it;
			 * while playing, the text keeps the font it has. */
			if (loaded)
				*self->label_font = std::move(font);
			else
				self->font_error = g_strdup(error.c_str());
			warn = !loaded && GST_STATE(self) >= GST_STATE_PAUSED;
		}
		if (warn)
			GST_ELEMENT_WARNING(self, RESOURCE, OPEN_READ,
					    ("%s The text keeps its font until the element stops; the next start "
					     "fails unless 'font' is set to a file that loads.", error.c_str()),
					    (nullptr));
		return;
	}
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));

	switch (prop_id) {
	case PROP_LINE_THICKNESS:
		self->line_thickness = g_value_get_int(value);
		break;
	case PROP_TEXT_SCALE:
		self->text_scale = g_value_get_double(value);
		break;
	case PROP_SHOW:
		self->show = static_cast<GstFrcnnOverlayShow>(g_value_get_enum(value));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		break;
	}
}

static void gst_frcnn_overlay_get_property(GObject *object, guint prop_id, GValue *value,
					   GParamSpec *pspec)
{
	GstFrcnnOverlay *self = GST_FRCNN_OVERLAY(object);
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));

	switch (prop_id) {
	case PROP_LINE_THICKNESS:
		g_value_set_int(value, self->line_thickness);
		break;
	case PROP_TEXT_SCALE:
		g_value_set_double(value, self->text_scale);
		break;
	case PROP_SHOW:
		g_value_set_enum(value, self->show);
		break;
	case PROP_FONT:
		g_value_set_string(value, self->font);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		break;
	}
}

namespace {

struct Rgb {
	double r, g, b;
};

// A colour that depends only on the class: hues spread by the golden ratio, so that
// neighbouring ids look different.
Rgb class_colour(const frcnn::gst::DetectionMeta &det)
{
	const std::size_t key = det.label_id ? static_cast<std::size_t>(*det.label_id)
					     : std::hash<std::string>{}(det.label) % 1000;
	const double hue = std::fmod(0.1 + key * 0.618033988749895, 1.0) * 6.0;
	const double s = 0.85, v = 240.0;
	const int sector = static_cast<int>(hue) % 6;
	const double f = hue - std::floor(hue);
	const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
	switch (sector) {
	case 0: return { v, t, p };
	case 1: return { q, v, p };
	case 2: return { p, v, t };
	case 3: return { p, q, v };
	case 4: return { t, p, v };
	default: return { v, p, q };
	}
}

// How a frame's YUV values stand for colours: its colorimetry's matrix and range (BT.601 when it
// names no matrix), as frcnndetect reads them, in samples of `depth` bits; and for every format,
// YUV or RGB, its primaries and transfer (wide-gamut and HDR video's signals for a colour).
struct YuvEncoding {
	double kr = 0.299, kb = 0.114; // luma weights of red and blue
	bool full_range = false;
	int depth = 8;
	/* HDR video: the colours as its SDR picture shows them (frcnndetect's mapping), not as
	 * signals near the transfer's peak (a white box at 10000 cd/m2 in PQ). */
	frcnn::TransferFunction transfer;
	/* Wide-gamut video: the colours as frcnndetect reads them back in BT.709's primaries, not
	 * the more saturated ones the same signals stand for in BT.2020's. */
	frcnn::ColourPrimaries primaries;

	YuvEncoding(const GstVideoColorimetry &colorimetry, int depth)
		: full_range(frcnn::gst::full_range(colorimetry)), depth(depth),
		  transfer(frcnn::gst::transfer_function(colorimetry.transfer)),
		  primaries(frcnn::gst::colour_primaries(colorimetry.primaries))
	{
		gdouble r, b;
		if (gst_video_color_matrix_get_Kr_Kb(colorimetry.matrix, &r, &b)) {
			kr = r;
			kb = b;
		}
	}

	// The signals (0..255) of an SDR BT.709 colour in the frame's primaries and transfer: the
	// colour itself in SDR BT.709 video, RGB frames included.
	Rgb signal(const Rgb &colour) const
	{
		const std::array<double, 3> sdr =
			frcnn::signals_in_primaries(primaries, { colour.r / 255, colour.g / 255, colour.b / 255 });
		return { 255 * frcnn::hdr_signal(transfer, sdr[0]), 255 * frcnn::hdr_signal(transfer, sdr[1]),
			 255 * frcnn::hdr_signal(transfer, sdr[2]) };
	}

	void encode(const Rgb &colour, double *y, double *u, double *v) const
	{
		const Rgb c = signal(colour);
		const double luma = (kr * c.r + (1 - kr - kb) * c.g + kb * c.b) / 255;
		const double cb = (c.b / 255 - luma) / (2 * (1 - kb)), cr = (c.r / 255 - luma) / (2 * (1 - kr));
		// Full range: all 2^depth - 1 steps; limited: 8 bits' levels times 2^(depth - 8).
		const double steps = (1 << depth) - 1, more_bits = 1 << (depth - 8), centre = 1 << (depth - 1);
		*y = full_range ? steps * luma : (16 + 219 * luma) * more_bits;
		*u = centre + (full_range ? steps : 224 * more_bits) * cb;
		*v = centre + (full_range ? steps : 224 * more_bits) * cr;
	}
};

// The colour in the byte order of a packed format; alpha and padding bytes set to 255.
cv::Scalar packed_colour(GstVideoFormat format, const Rgb &c)
{
	switch (format) {
	case GST_VIDEO_FORMAT_RGB: return cv::Scalar(c.r, c.g, c.b);
	case GST_VIDEO_FORMAT_BGR: return cv::Scalar(c.b, c.g, c.r);
	case GST_VIDEO_FORMAT_RGBx:
	case GST_VIDEO_FORMAT_RGBA: return cv::Scalar(c.r, c.g, c.b, 255);
	case GST_VIDEO_FORMAT_BGRx:
	case GST_VIDEO_FORMAT_BGRA: return cv::Scalar(c.b, c.g, c.r, 255);
	case GST_VIDEO_FORMAT_xRGB:
	case GST_VIDEO_FORMAT_ARGB: return cv::Scalar(255, c.r, c.g, c.b);
	case GST_VIDEO_FORMAT_xBGR:
	case GST_VIDEO_FORMAT_ABGR: return cv::Scalar(255, c.b, c.g, c.r);
	case GST_VIDEO_FORMAT_GRAY8: return cv::Scalar(0.299 * c.r + 0.587 * c.g + 0.114 * c.b);
	default: return cv::Scalar();
	}
}

// The outline of `rect` as four filled bands, the lines centred on its edges as cv::rectangle()
// draws them: the top and bottom ones `rows` pixels high, the left and right ones `columns` wide.
std::array<cv::Rect, 4> outline_bands(const cv::Rect &rect, int rows, int columns)
{
	const int left = rect.x - columns / 2, top = rect.y - rows / 2;
	const int right = rect.x + rect.width - 1 - columns / 2, bottom = rect.y + rect.height - 1 - rows / 2;
	const int across = right - left + columns, down = bottom - top + rows;
	return { cv::Rect(left, top, across, rows), cv::Rect(left, bottom, across, rows),
		 cv::Rect(left, top, columns, down), cv::Rect(right, top, columns, down) };
}

// The box of a region of interest as drawn: the box as found, to the nearest pixel edges (the
// detection param's unrounded box where there is one, which a scaler's rounding of the rectangle
// does not move; else the meta's rectangle), cut to the frame with a margin wider than any line or
// label, so that the drawing's arithmetic stays in int (another producer may write anything up to
// 2^32 - 1); what lies outside the frame is not drawn either way.
cv::Rect drawn_box(const frcnn::gst::DetectionMeta &det, int width, int height)
{
	constexpr double kMargin = 1 << 16;
	const bool exact = std::isfinite(det.x1) && std::isfinite(det.y1) && std::isfinite(det.x2) && std::isfinite(det.y2);
	const auto edge = [](double position, double size) {
		return static_cast<int>(std::lround(std::clamp(position, -kMargin, size + kMargin)));
	};
	const int left = edge(exact ? det.x1 : det.x, width), top = edge(exact ? det.y1 : det.y, height);
	const int right = edge(exact ? det.x2 : static_cast<double>(det.x) + det.w, width);
	const int bottom = edge(exact ? det.y2 : static_cast<double>(det.y) + det.h, height);
	return cv::Rect(left, top, std::max(right - left, 0), std::max(bottom - top, 0));
}

// The widest (and, inverted, the narrowest) pixel shape the overlay draws for.
constexpr double kMostPixelAspectRatio = 16.0;

// x / 2^shift rounded down, also for negative x.
int floor_shift(int x, int shift)
{
	return x >= 0 ? x >> shift : -((-x + (1 << shift) - 1) >> shift);
}

// Formats of 10-bit samples three to a 32-bit word, drawn on through WordRows.
bool word_rows(GstVideoFormat format)
{
	return format == GST_VIDEO_FORMAT_v210 || format == GST_VIDEO_FORMAT_Y410;
}

// The shift of a YUV sample in its 16-bit word. GStreamer 1.22's table gives Y210 none, while its
// packing (videoconvert's) and the format's definition put the 10 bits at the top of the word.
int sample_shift(const GstVideoFormatInfo *finfo)
{
	if (GST_VIDEO_FORMAT_INFO_FORMAT(finfo) == GST_VIDEO_FORMAT_Y210 && GST_VIDEO_FORMAT_INFO_SHIFT(finfo, 0) == 0)
		return 16 - GST_VIDEO_FORMAT_INFO_DEPTH(finfo, 0);
	return GST_VIDEO_FORMAT_INFO_SHIFT(finfo, 0);
}

// The rows of a frame whose 10-bit samples lie three to a little-endian 32-bit word, as an image
// of 16-bit words, a sample in each (its low bits), for OpenCV to draw on: v210's UYVY samples in
// order as packed 4:2:2 (U, Y, V, Y for each pair of pixels), or Y410's pixels as packed 4:4:4
// (U, Y, V and the word's 2-bit alpha for each pixel). Each row is unpacked the first time a
// drawing reaches it and packed back when this goes, so that only the rows drawn on are touched,
// and in them only the bits of the frame's samples.
class WordRows {
public:
	// Rows of `columns` image pixels of 4 samples each (v210: a pair of pixels, Y410: one);
	// `per_word` samples to a word: v210's 3, or Y410's 4 (the fourth the 2 bits from bit 30).
	WordRows(uint8_t *data, int stride, int height, int columns, int per_word)
		: data_(data), stride_(stride), per_word_(per_word), samples_(4 * columns),
		  image_(height, columns, CV_16UC4), unpacked_(static_cast<size_t>(height), false)
	{
	}
	WordRows(const WordRows &) = delete;
	WordRows &operator=(const WordRows &) = delete;
	~WordRows()
	{
		for (int y = 0; y < image_.rows; y++) {
			if (!unpacked_[y])
				continue;
			uint8_t *row = data_ + static_cast<std::ptrdiff_t>(y) * stride_;
			const uint16_t *samples = image_.ptr<uint16_t>(y);
			for (int i = 0; i < samples_; i++) {
				uint8_t *word = row + i / per_word_ * 4;
				const int shift = 10 * (i % per_word_);
				const uint32_t mask = field_mask(i);
				const uint32_t value = (read_word(word) & ~(mask << shift)) |
						       (static_cast<uint32_t>(samples[i]) & mask) << shift;
				for (int b = 0; b < 4; b++)
					word[b] = static_cast<uint8_t>(value >> (8 * b));
			}
		}
	}

	// The samples as an image of 4 channels.
	cv::Mat &image() { return image_; }

	// Rows first to last (cut to the frame) unpacked, ready to be drawn on.
	void reach(int first, int last)
	{
		for (int y = std::max(first, 0); y <= std::min(last, image_.rows - 1); y++) {
			if (unpacked_[y])
				continue;
			const uint8_t *row = data_ + static_cast<std::ptrdiff_t>(y) * stride_;
			uint16_t *samples = image_.ptr<uint16_t>(y);
			for (int i = 0; i < samples_; i++)
				samples[i] = static_cast<uint16_t>(read_word(row + i / per_word_ * 4) >>
									   (10 * (i % per_word_)) &
								   field_mask(i));
			unpacked_[y] = true;
		}
	}

private:
	static uint32_t read_word(const uint8_t *p)
	{
		return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
	}
	// The bits of sample i: 10, or Y410's alpha's 2.
	uint32_t field_mask(int i) const { return i % per_word_ == 3 ? 0x3u : 0x3ffu; }

	uint8_t *data_;
	int stride_;
	int per_word_;
	int samples_; // of a row: 4 for each column (v210: the last pair's second Y included)
	cv::Mat image_;
	std::vector<bool> unpacked_;
};

// The planes of a frame as OpenCV images over the mapped memory, and how to paint on them. YUV
// samples of more than 8 bits are 16-bit words in the host's byte order (the formats' LE), the
// sample in their bits from shift_ up.
class Canvas {
public:
	explicit Canvas(GstVideoFrame *frame)
		: format_(GST_VIDEO_FRAME_FORMAT(frame)),
		  yuv_(frame->info.colorimetry, GST_VIDEO_FORMAT_INFO_DEPTH(frame->info.finfo, 0)),
		  shift_(word_rows(format_) ? 0 : sample_shift(frame->info.finfo)),
		  depth_(yuv_.depth > 8 ? CV_16U : CV_8U), width_(GST_VIDEO_FRAME_WIDTH(frame)),
		  height_(GST_VIDEO_FRAME_HEIGHT(frame))
	{
		const int width = width_, height = height_;
		// Caps without a pixel-aspect-ratio (or a ratio that is not positive): square pixels.
		// Real video's pixels are at most a few times as wide as high or the other way round;
		// the caps take any ratio, and one beyond 16 would ask for labels of gigabytes or
		// lines wider than the frame: drawn as at 16 (or 1/16).
		if (GST_VIDEO_INFO_PAR_N(&frame->info) > 0 && GST_VIDEO_INFO_PAR_D(&frame->info) > 0)
			pixel_aspect_ratio_ = std::clamp(static_cast<double>(GST_VIDEO_INFO_PAR_N(&frame->info)) /
								 GST_VIDEO_INFO_PAR_D(&frame->info),
							 1.0 / kMostPixelAspectRatio, kMostPixelAspectRatio);
		auto plane = [frame](int index, int rows, int cols, int type) {
			return cv::Mat(rows, cols, type, GST_VIDEO_FRAME_PLANE_DATA(frame, index),
				       GST_VIDEO_FRAME_PLANE_STRIDE(frame, index));
		};
		x_shift_ = GST_VIDEO_FORMAT_INFO_W_SUB(frame->info.finfo, 1);
		y_shift_ = GST_VIDEO_FORMAT_INFO_H_SUB(frame->info.finfo, 1);
		// An interlaced 4:2:0 frame's chroma rows alternate between its fields, as its rows
		// do (each field's rows rounded up to whole chroma samples: GStreamer's layout).
		field_chroma_ = GST_VIDEO_FRAME_IS_INTERLACED(frame) && y_shift_ == 1;
		const int chroma_width = GST_VIDEO_FRAME_COMP_WIDTH(frame, 1);
		int chroma_height = field_chroma_ ? (height + 3) / 4 * 2 : GST_VIDEO_FRAME_COMP_HEIGHT(frame, 1);
		// Chroma planes: no row beyond those the memory holds (see frame_memory.h); a
		// bottom field's last chroma row that the layout left out is not drawn on.
		for (guint p = 1; p < GST_VIDEO_FRAME_N_PLANES(frame); p++)
			chroma_height = std::min(chroma_height, frcnn::gst::frame_plane_rows_held(frame, p));
		chroma_rows_ = chroma_height;
		auto component = [frame, this, chroma_width, chroma_height](int index) {
			return cv::Mat(chroma_height, chroma_width, CV_MAKETYPE(depth_, 1),
				       GST_VIDEO_FRAME_COMP_DATA(frame, index),
				       GST_VIDEO_FRAME_COMP_STRIDE(frame, index));
		};

		switch (format_) {
		case GST_VIDEO_FORMAT_NV12:
		case GST_VIDEO_FORMAT_NV21:
		case GST_VIDEO_FORMAT_NV16:
		case GST_VIDEO_FORMAT_NV61:
		case GST_VIDEO_FORMAT_NV24:
		case GST_VIDEO_FORMAT_P010_10LE:
		case GST_VIDEO_FORMAT_P012_LE:
		case GST_VIDEO_FORMAT_P016_LE:
			luma_ = plane(0, height, width, CV_MAKETYPE(depth_, 1));
			chroma_pairs_ = plane(1, chroma_height, chroma_width, CV_MAKETYPE(depth_, 2));
			break;
		case GST_VIDEO_FORMAT_I420:
		case GST_VIDEO_FORMAT_YV12:
		case GST_VIDEO_FORMAT_Y42B:
		case GST_VIDEO_FORMAT_Y444:
		case GST_VIDEO_FORMAT_I420_10LE:
		case GST_VIDEO_FORMAT_I422_10LE:
		case GST_VIDEO_FORMAT_Y444_10LE:
		case GST_VIDEO_FORMAT_I420_12LE:
		case GST_VIDEO_FORMAT_I422_12LE:
		case GST_VIDEO_FORMAT_Y444_12LE:
		case GST_VIDEO_FORMAT_Y444_16LE:
			luma_ = plane(0, height, width, CV_MAKETYPE(depth_, 1));
			chroma_[0] = component(1);
			chroma_[1] = component(2);
			break;
		case GST_VIDEO_FORMAT_YUY2:
		case GST_VIDEO_FORMAT_UYVY:
		case GST_VIDEO_FORMAT_YVYU:
		case GST_VIDEO_FORMAT_VYUY:
		case GST_VIDEO_FORMAT_Y210:
		case GST_VIDEO_FORMAT_Y212_LE:
			// Four samples for each two pixels of a row; and each pixel's luma sample with
			// a chroma sample (U or V, by the pixel's column), for the text.
			pixel_pairs_ = plane(0, height, chroma_width, CV_MAKETYPE(depth_, 4));
			pixels_ = plane(0, height, width, CV_MAKETYPE(depth_, 2));
			break;
		case GST_VIDEO_FORMAT_v210:
			// Drawn as UYVY of 16-bit words, on the rows each drawing reaches.
			word_rows_ = std::make_unique<WordRows>(static_cast<uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(frame, 0)),
								GST_VIDEO_FRAME_PLANE_STRIDE(frame, 0), height, chroma_width, 3);
			pixel_pairs_ = word_rows_->image();
			pixels_ = cv::Mat(height, width, CV_16UC2, pixel_pairs_.data, pixel_pairs_.step);
			break;
		case GST_VIDEO_FORMAT_RGB:
		case GST_VIDEO_FORMAT_BGR:
			packed_ = plane(0, height, width, CV_8UC3);
			break;
		case GST_VIDEO_FORMAT_GRAY8:
			packed_ = plane(0, height, width, CV_8UC1);
			break;
		case GST_VIDEO_FORMAT_Y410:
			// Drawn as packed 4:4:4 of 16-bit words (U, Y, V, A), on the rows each drawing reaches.
			word_rows_ = std::make_unique<WordRows>(static_cast<uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(frame, 0)),
								GST_VIDEO_FRAME_PLANE_STRIDE(frame, 0), height, width, 4);
			packed_ = word_rows_->image();
			break;
		case GST_VIDEO_FORMAT_Y412_LE:
			packed_ = plane(0, height, width, CV_16UC4);
			break;
		default:
			packed_ = plane(0, height, width, CV_8UC4);
			break;
		}
	}

	// thickness < 0 fills the rectangle.
	void rectangle(const cv::Rect &rect, const Rgb &colour, int thickness)
	{
		if (!packed_.empty()) {
			const cv::Scalar ink = packed_ink(colour);
			auto fill = [&](const cv::Rect &band) {
				if (word_rows_)
					word_rows_->reach(band.y, band.y + band.height - 1);
				cv::rectangle(packed_, band, ink, cv::FILLED);
			};
			if (thickness < 0) {
				fill(rect);
				return;
			}
			for (const cv::Rect &band : outline_bands(rect, thickness, line_columns(thickness)))
				fill(band);
			return;
		}

		double y, u, v;
		yuv_.encode(colour, &y, &u, &v);
		y = word(y);
		u = word(u);
		v = word(v);
		// Each band paints its pixels' luma and every chroma sample that covers one of them,
		// so that a line has its colour however thin, at the price of a tint beside it.
		auto fill = [&](const cv::Rect &band) {
			if (band.width <= 0 || band.height <= 0)
				return;
			const int x0 = floor_shift(band.x, x_shift_);
			const int y0 = floor_shift(band.y, y_shift_);
			const cv::Rect chroma(x0, y0, floor_shift(band.x + band.width - 1, x_shift_) - x0 + 1,
					      floor_shift(band.y + band.height - 1, y_shift_) - y0 + 1);
			if (!pixel_pairs_.empty()) {
				// A pair of pixels shares its chroma: whole pairs, luma included.
				if (word_rows_)
					word_rows_->reach(chroma.y, chroma.y + chroma.height - 1);
				cv::rectangle(pixel_pairs_, chroma, pair_colour(y, u, v), cv::FILLED);
				return;
			}
			cv::rectangle(luma_, band, cv::Scalar(y), cv::FILLED);
			const bool v_first = format_ == GST_VIDEO_FORMAT_NV21 || format_ == GST_VIDEO_FORMAT_NV61;
			auto paint = [&](const cv::Mat &pairs, const cv::Mat &cb, const cv::Mat &cr,
					 const cv::Rect &rect) {
				if (!pairs.empty())
					cv::rectangle(pairs, rect, v_first ? cv::Scalar(v, u) : cv::Scalar(u, v),
						      cv::FILLED);
				else {
					cv::rectangle(cb, rect, cv::Scalar(u), cv::FILLED);
					cv::rectangle(cr, rect, cv::Scalar(v), cv::FILLED);
				}
			};
			if (!field_chroma_) {
				paint(chroma_pairs_, chroma_[0], chroma_[1], chroma);
				return;
			}
			// Each field's rows of the band paint that field's chroma rows: row y is the
			// field's row y / 2, in its chroma row y / 4.
			for (int field = 0; field < 2; field++) {
				const int first = band.y + ((band.y % 2) != field);
				const int last = band.y + band.height - 1 - (((band.y + band.height - 1) % 2) != field);
				if (first > last)
					continue;
				const cv::Rect rows(chroma.x, first / 4, chroma.width, last / 4 - first / 4 + 1);
				paint(field_rows(chroma_pairs_, field), field_rows(chroma_[0], field),
				      field_rows(chroma_[1], field), rows);
			}
		};
		if (thickness < 0) {
			fill(rect);
			return;
		}
		for (const cv::Rect &band : outline_bands(rect, thickness, line_columns(thickness)))
			fill(band);
	}

	// Text in black or white, drawn as a display shows the frame: on frames whose pixels are not
	// square the letters are drawn at the shape they show in, then brought to the stored pixels,
	// so that they look as on any other frame. On YUV frames the chroma under the letters turns
	// neutral with them: where a chroma sample stands for several pixels, by the share of them
	// the letters cover, so that the letters are grey, not tinted by the label's colour.
	void text(const LabelFont &font, const std::string &text, cv::Point origin, double scale, bool white)
	{
		int baseline = 0;
		const cv::Size size = font.size(text, scale, &baseline);
		const int margin = LabelFont::stroke(scale) + 2;
		// The rectangle the letters may cover, on the chroma grid, so that each sample's pixels
		// are in it or outside (field chroma: each pair of rows of a field, 4 rows of the frame).
		const int row_group = field_chroma_ ? 2 : y_shift_;
		const int left = floor_shift(origin.x - margin, x_shift_) * (1 << x_shift_);
		const int top = floor_shift(origin.y - size.height - margin, row_group) * (1 << row_group);
		const int right = origin.x + stored_width(size.width) + margin;
		const cv::Rect area = cv::Rect(left, top, right - left, origin.y + baseline + margin - top) &
				      cv::Rect(0, 0, width_, height_);
		if (area.empty())
			return;
		if (word_rows_)
			word_rows_->reach(area.y, area.y + area.height - 1);
		const cv::Mat coverage = text_coverage(font, text, origin, scale, area);

		const double level = white ? 255 : 0;
		if (!packed_.empty()) {
			if (packed_.depth() == CV_16U)
				blend_packed<uint16_t>(coverage, area, packed_ink({ level, level, level }));
			else
				blend_packed<uint8_t>(coverage, area, packed_ink({ level, level, level }));
			return;
		}
		double luma, u, v;
		yuv_.encode({ level, level, level }, &luma, &u, &v);
		if (depth_ == CV_16U)
			blend_yuv<uint16_t>(coverage, area, luma, u);
		else
			blend_yuv<uint8_t>(coverage, area, luma, u);
	}

	// The width in stored pixels of `display_width` pixels as shown.
	int stored_width(int display_width) const
	{
		return static_cast<int>(std::ceil(display_width / pixel_aspect_ratio_));
	}

	// The columns of a vertical line as wide as a horizontal one of `thickness` rows shows.
	int line_columns(int thickness) const
	{
		if (pixel_aspect_ratio_ == 1.0)
			return thickness;
		return std::max(1, static_cast<int>(std::lround(thickness / pixel_aspect_ratio_)));
	}

private:
	// A colour in the samples of a packed pixel: RGB (or grey) in the format's order, or for
	// packed 4:4:4 YUV its Y, U and V in the caps' colorimetry (as the words that hold them);
	// alpha and padding opaque (all their bits set).
	cv::Scalar packed_ink(const Rgb &colour) const
	{
		if (format_ != GST_VIDEO_FORMAT_AYUV && format_ != GST_VIDEO_FORMAT_VUYA &&
		    format_ != GST_VIDEO_FORMAT_Y410 && format_ != GST_VIDEO_FORMAT_Y412_LE)
			return packed_colour(format_, yuv_.signal(colour));
		double y, u, v;
		yuv_.encode(colour, &y, &u, &v);
		switch (format_) {
		case GST_VIDEO_FORMAT_AYUV: return cv::Scalar(255, y, u, v);
		case GST_VIDEO_FORMAT_VUYA: return cv::Scalar(v, u, y, 255);
		case GST_VIDEO_FORMAT_Y410: return cv::Scalar(u, y, v, 3); // the unpacked words' order
		default: return cv::Scalar(word(u), word(y), word(v), 0xfff0); // Y412_LE
		}
	}

	// A sample's value as the word that holds it (rounded by OpenCV's drawing where the sample
	// is the word's low bits).
	double word(double sample) const { return shift_ == 0 ? sample : cvRound(sample) * (1 << shift_); }

	// How much the letters cover each pixel of `area` (0 to 255, antialiased). On pixels that
	// are not square, drawn at the width a display shows `area` in, then resampled to its
	// stored width.
	cv::Mat text_coverage(const LabelFont &font, const std::string &text, cv::Point origin, double scale,
			      const cv::Rect &area) const
	{
		cv::Mat coverage = cv::Mat::zeros(area.size(), CV_8UC1);
		if (pixel_aspect_ratio_ == 1.0) {
			font.draw(coverage, text, origin - area.tl(), scale);
			return coverage;
		}
		const int shown_width = std::max(1, static_cast<int>(std::lround(area.width * pixel_aspect_ratio_)));
		cv::Mat shown = cv::Mat::zeros(area.height, shown_width, CV_8UC1);
		const cv::Point shown_origin(static_cast<int>(std::lround((origin.x - area.x) * pixel_aspect_ratio_)),
					     origin.y - area.y);
		font.draw(shown, text, shown_origin, scale);
		cv::resize(shown, coverage, area.size(), 0, 0,
			   pixel_aspect_ratio_ > 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
		return coverage;
	}

	// Packed RGB, grey and packed 4:4:4 YUV: each sample of a covered pixel towards the ink's,
	// by the coverage (alpha and padding too: the ink is opaque there). T: the sample's word, the
	// sample in its bits from shift_ up (Y412_LE's), the others 0.
	template<typename T>
	void blend_packed(const cv::Mat &coverage, const cv::Rect &area, const cv::Scalar &ink)
	{
		const int channels = packed_.channels(), shift = shift_;
		for (int y = 0; y < area.height; y++) {
			T *row = packed_.ptr<T>(area.y + y) + static_cast<std::ptrdiff_t>(area.x) * channels;
			const uint8_t *cover = coverage.ptr<uint8_t>(y);
			for (int x = 0; x < area.width; x++) {
				if (cover[x] == 0)
					continue;
				const double alpha = cover[x] / 255.0;
				for (int c = 0; c < channels; c++) {
					T &word = row[x * channels + c];
					const double sample = word >> shift, target = ink[c] / (1 << shift);
					word = cv::saturate_cast<T>(cvRound(sample + (target - sample) * alpha) * (1 << shift));
				}
			}
		}
	}

	// YUV: the coverage blended into each luma sample pixel by pixel and into each chroma
	// sample by the mean coverage of the pixels it stands for, towards the ink's luma and
	// neutral chroma. Planar, semi-planar and packed 4:2:2 (pixels_: a pixel's luma and a
	// chroma sample, U or V by its column; a pair's two chroma samples). T: the sample's word.
	template<typename T>
	void blend_yuv(const cv::Mat &coverage, const cv::Rect &area, double luma, double neutral)
	{
		// On the samples' values: the bits of a word outside its sample stay 0.
		const int shift = shift_, most = (1 << yuv_.depth) - 1;
		auto blend = [shift, most](T value, double target, double alpha) {
			const double sample = value >> shift;
			const int blended = cvRound(sample + (target - sample) * alpha);
			return static_cast<T>(std::clamp(blended, 0, most) << shift);
		};
		const bool packed_pairs = !pixels_.empty();
		// In packed 4:2:2, which of a pixel's two samples is its luma: chroma comes first in
		// UYVY, VYUY and v210, luma in YUY2, YVYU, Y210 and Y212.
		const int luma_index = format_ == GST_VIDEO_FORMAT_UYVY || format_ == GST_VIDEO_FORMAT_VYUY ||
					       format_ == GST_VIDEO_FORMAT_v210
				       ? 1
				       : 0;
		for (int y = 0; y < area.height; y++) {
			const uint8_t *cover = coverage.ptr<uint8_t>(y);
			for (int x = 0; x < area.width; x++) {
				if (cover[x] == 0)
					continue;
				T &sample = packed_pairs ? pixels_.at<cv::Vec<T, 2>>(area.y + y, area.x + x)[luma_index]
							 : luma_.at<T>(area.y + y, area.x + x);
				sample = blend(sample, luma, cover[x] / 255.0);
			}
		}
		// area.x and area.y are on the grid (the frame's edges are). The rows a chroma row
		// stands for: y_step of them from cy * y_step, or in field chroma its field's two
		// rows of a group of 4 (row 2k: rows 4k and 4k + 2; row 2k + 1: 4k + 1 and 4k + 3).
		const int x_step = 1 << x_shift_, y_step = 1 << y_shift_;
		auto first_row = [this, y_step](int cy) {
			return field_chroma_ ? (cy >> 1) * 4 + (cy & 1) : cy * y_step;
		};
		const int row_stride = field_chroma_ ? 2 : 1;
		int cy_end = field_chroma_ ? (area.y + area.height + 3) / 4 * 2 : (area.y + area.height + y_step - 1) / y_step;
		if (!packed_pairs)
			cy_end = std::min(cy_end, chroma_rows_);
		for (int cy = field_chroma_ ? area.y / 2 : area.y >> y_shift_; cy < cy_end; cy++)
			for (int cx = area.x >> x_shift_; cx << x_shift_ < area.x + area.width; cx++) {
				int sum = 0, pixels = 0;
				for (int k = 0, y = first_row(cy); k < y_step && y < area.y + area.height;
				     k++, y += row_stride)
					for (int x = cx * x_step; x < std::min((cx + 1) * x_step, area.x + area.width); x++) {
						sum += coverage.at<uint8_t>(y - area.y, x - area.x);
						pixels++;
					}
				if (sum == 0)
					continue;
				const double alpha = sum / (255.0 * pixels);
				if (packed_pairs) {
					cv::Vec<T, 4> &pair = pixel_pairs_.at<cv::Vec<T, 4>>(cy, cx);
					pair[1 - luma_index] = blend(pair[1 - luma_index], neutral, alpha);
					pair[3 - luma_index] = blend(pair[3 - luma_index], neutral, alpha);
				} else if (!chroma_pairs_.empty()) {
					cv::Vec<T, 2> &pair = chroma_pairs_.at<cv::Vec<T, 2>>(cy, cx);
					pair[0] = blend(pair[0], neutral, alpha);
					pair[1] = blend(pair[1], neutral, alpha);
				} else {
					T &cb = chroma_[0].at<T>(cy, cx), &cr = chroma_[1].at<T>(cy, cx);
					cb = blend(cb, neutral, alpha);
					cr = blend(cr, neutral, alpha);
				}
			}
	}

	// The rows of a chroma plane that belong to a field (0: top, 1: bottom), as an image.
	static cv::Mat field_rows(const cv::Mat &plane, int field)
	{
		if (plane.empty() || plane.rows <= field)
			return cv::Mat();
		return cv::Mat((plane.rows - field + 1) / 2, plane.cols, plane.type(),
			       plane.data + field * plane.step[0], plane.step[0] * 2);
	}

	// The four bytes of a pair of pixels of one colour, in the format's order.
	cv::Scalar pair_colour(double y, double u, double v) const
	{
		switch (format_) {
		case GST_VIDEO_FORMAT_UYVY:
		case GST_VIDEO_FORMAT_v210: return cv::Scalar(u, y, v, y);
		case GST_VIDEO_FORMAT_YVYU: return cv::Scalar(y, v, y, u);
		case GST_VIDEO_FORMAT_VYUY: return cv::Scalar(v, y, u, y);
		default: return cv::Scalar(y, u, y, v); // YUY2, Y210, Y212_LE
		}
	}

	GstVideoFormat format_;
	YuvEncoding yuv_;
	int shift_;			// of a YUV sample in its word
	int depth_;			// of the YUV planes' elements: CV_8U, or CV_16U for more than 8 bits
	int x_shift_ = 0, y_shift_ = 0; // log2 of the chroma subsampling
	bool field_chroma_ = false;	// interlaced 4:2:0: chroma rows by field
	int chroma_rows_ = 0;		// of the chroma planes (planar and semi-planar YUV)
	cv::Mat packed_;		// packed RGB, grey and packed 4:4:4 YUV (AYUV, VUYA, Y410, Y412_LE)
	cv::Mat luma_;			// planar and semi-planar YUV
	cv::Mat chroma_pairs_;		// semi-planar: U and V (NV12, NV16, NV24) or V and U (NV21, NV61)
	cv::Mat chroma_[2];		// planar: U, V
	cv::Mat pixel_pairs_, pixels_;	// packed 4:2:2
	// v210 and Y410: the rows drawn on, as packed 4:2:2 (pixel_pairs_) or 4:4:4 (packed_)
	std::unique_ptr<WordRows> word_rows_;
	int width_, height_;
	double pixel_aspect_ratio_ = 1.0; // width : height of a pixel
};

std::string caption(const frcnn::gst::DetectionMeta &det, GstFrcnnOverlayShow show)
{
	char score[32] = "";
	if (det.score)
		std::snprintf(score, sizeof(score), "%.2f", *det.score);

	switch (show) {
	case GST_FRCNN_OVERLAY_SHOW_NONE:
		return {};
	case GST_FRCNN_OVERLAY_SHOW_LABEL:
		return det.label;
	case GST_FRCNN_OVERLAY_SHOW_SCORE:
		return score;
	case GST_FRCNN_OVERLAY_SHOW_LABEL_SCORE:
	default:
		return score[0] ? det.label + " " + score : det.label;
	}
}

/*
 * The caption of a detection as it fits `max_width` of the frame's pixels (`width_of` a text):
 * whole where it fits; else a name too long for the frame loses its end to "..." (whole
 * characters of UTF-8), so that the score still shows; the score alone where even "..." and it do
 * not fit.
 */
std::string fitted_caption(const frcnn::gst::DetectionMeta &det, GstFrcnnOverlayShow show, int max_width,
			   const std::function<int(const std::string &)> &width_of)
{
	const std::string whole = caption(det, show);
	const bool has_label = show == GST_FRCNN_OVERLAY_SHOW_LABEL || show == GST_FRCNN_OVERLAY_SHOW_LABEL_SCORE;
	if (whole.empty() || !has_label || det.label.empty() || width_of(whole) <= max_width)
		return whole;
	const std::string after = whole.substr(det.label.size()); // " 0.87", or nothing
	const auto cut_to = [&](size_t bytes) { return det.label.substr(0, bytes) + "..." + after; };
	/* Where each character of the name starts: a cut keeps whole characters. */
	std::vector<size_t> starts;
	for (size_t i = 0; i < det.label.size(); i++)
		if ((static_cast<unsigned char>(det.label[i]) & 0xC0) != 0x80)
			starts.push_back(i);
	if (width_of(cut_to(0)) > max_width)
		return after.empty() ? std::string("...") : after.substr(1);
	/* The most characters that fit before "...": the widths grow with them. */
	size_t fits = 0, too_many = starts.size();
	while (too_many - fits > 1) {
		const size_t middle = fits + (too_many - fits) / 2;
		if (width_of(cut_to(starts[middle])) <= max_width)
			fits = middle;
		else
			too_many = middle;
	}
	return cut_to(starts[fits]);
}

} // namespace

static GstFlowReturn gst_frcnn_overlay_transform_frame_ip(GstVideoFilter *filter,
							  GstVideoFrame *frame)
{
	GstFrcnnOverlay *self = GST_FRCNN_OVERLAY(filter);

	gint line_thickness;
	gdouble text_scale;
	GstFrcnnOverlayShow show;
	std::shared_ptr<const LabelFont> font;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		line_thickness = self->line_thickness;
		text_scale = self->text_scale;
		show = self->show;
		font = *self->label_font;
	}

	const int width = GST_VIDEO_FRAME_WIDTH(frame);
	const int height = GST_VIDEO_FRAME_HEIGHT(frame);
	const std::vector<frcnn::gst::DetectionMeta> detections =
		frcnn::gst::read_detection_metas(frame->buffer, width, height);
	if (detections.empty())
		return GST_FLOW_OK;

	/* OpenCV's images of 16-bit samples need rows of whole samples (GStreamer's own layouts
	 * have them; a producer's GstVideoMeta could say otherwise). */
	if (GST_VIDEO_FORMAT_INFO_DEPTH(frame->info.finfo, 0) > 8 && !word_rows(GST_VIDEO_FRAME_FORMAT(frame))) {
		for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(frame); p++)
			if (GST_VIDEO_FRAME_PLANE_STRIDE(frame, p) % 2 != 0) {
				GST_ELEMENT_ERROR(self, STREAM, FORMAT,
						  ("Cannot draw on %s frames whose rows are an odd number of bytes "
						   "apart (plane %u: %d bytes): their 16-bit samples must start on "
						   "even bytes. Put videoconvert in front of frcnnoverlay.",
						   GST_VIDEO_INFO_NAME(&frame->info), p,
						   GST_VIDEO_FRAME_PLANE_STRIDE(frame, p)),
						  (nullptr));
				return GST_FLOW_ERROR;
			}
	}

	if (const std::string shortfall = frcnn::gst::frame_memory_shortfall(frame); !shortfall.empty()) {
		/* A buffer smaller than its video meta says: drawing on it would write past its end. */
		GST_ELEMENT_ERROR(self, STREAM, FORMAT,
				  ("Cannot draw on a %dx%d %s frame: %s. The element in front must send buffers "
				   "that hold the frames their caps and video meta describe.",
				   width, height, GST_VIDEO_INFO_NAME(&frame->info), shortfall.c_str()),
				  (nullptr));
		return GST_FLOW_ERROR;
	}

	try {
		Canvas canvas(frame);
		for (const frcnn::gst::DetectionMeta &det : detections) {
			const Rgb colour = class_colour(det);
			const cv::Rect box = drawn_box(det, width, height);
			canvas.rectangle(box, colour, line_thickness);

			/* A box wholly outside the frame has no label on it either. */
			if (show == GST_FRCNN_OVERLAY_SHOW_NONE || (box & cv::Rect(0, 0, width, height)).empty())
				continue;
			const int pad = 2;
			const std::string text = fitted_caption(det, show, width - 2 * pad, [&](const std::string &t) {
				int below = 0;
				return canvas.stored_width(font->size(t, text_scale, &below).width);
			});
			if (text.empty())
				continue;

			int baseline = 0;
			const cv::Size size = font->size(text, text_scale, &baseline);
			const int label_height = size.height + baseline + 2 * pad;
			/* Above the box; below it when the box touches the top of the frame (inside, a
			 * label would hide a small object); inside it when neither fits. */
			int top = box.y - label_height;
			if (top < 0)
				top = box.y + box.height + label_height <= height ? box.y + box.height : std::max(box.y, 0);
			/* The text's width as shown, in the frame's pixels (fewer where they are wider than
			 * high); moved left as far as the frame's right edge asks, so that the score shows (the
			 * caption was cut to the frame's width). */
			const int label_width = canvas.stored_width(size.width) + 2 * pad;
			const int left = std::max(0, std::min(box.x, width - label_width));
			const cv::Rect background(left, top, label_width, label_height);
			canvas.rectangle(background, colour, cv::FILLED);

			const double luminance = 0.299 * colour.r + 0.587 * colour.g + 0.114 * colour.b;
			canvas.text(*font, text, cv::Point(left + pad, top + pad + size.height), text_scale,
				    luminance < 128);
		}
	} catch (const cv::Exception &e) {
		GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not draw the detections: %s",
							   e.what()),
				  ("OpenCV drawing on a %dx%d %s frame failed", width, height,
				   GST_VIDEO_INFO_NAME(&frame->info)));
		return GST_FLOW_ERROR;
	}

	return GST_FLOW_OK;
}

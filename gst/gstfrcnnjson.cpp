// SPDX-License-Identifier: BSD-3-Clause
/**
 * SECTION:element-frcnnjson
 * @title: frcnnjson
 *
 * Passes video through unchanged and writes the region of interest metadata of each frame as
 * one JSON object per line:
 *
 * |[
 * {"frame": 0, "pts": 0, "width": 720, "height": 528,
 *  "detections": [{"box": [x1, y1, x2, y2], "label": "person", "label_id": 1, "score": 0.93,
 *                  "id": 0, "parent_id": -1}]}
 * ]|
 *
 * The box is in frame pixels; frames whose pixels are not square (anamorphic video) also have
 * "pixel_aspect_ratio": [n, d] after "height" (a pixel is n/d as wide as high). pts is in nanoseconds, or null for a buffer without one; label_id
 * and score are null for a region of interest that came without a "detection" parameter. id and
 * parent_id are the region of interest's (frcnndetect: parent_id -1, or with
 * inference-region=roi-list the id of the region the detection was found in).
 * With post-messages=true the same object is also posted on the bus as an element message named
 * "frcnnjson" (fields: frame, pts, width, height, detections (count), json (the line)).
 *
 * source (a name or URI for the stream) and tags (a JSON object) are written into every line as
 * "source" and "tags", as gvametaconvert does, so that the lines of several streams say which
 * stream they come from: the frcnnjson elements of a process given the same location write into
 * that file together (the first to start empties it; each line is written whole).
 *
 * With add-empty-results=false frames without regions of interest get no line (nor message).
 *
 * With format=dlstreamer each line is instead the object Intel DL Streamer's gvametaconvert
 * writes (with add-empty-results=true, unless set false here too), for tools that read that
 * format:
 *
 * |[
 * {"objects": [{"detection": {"bounding_box": {"x_max": .., "x_min": .., "y_max": .., "y_min": ..},
 *   "confidence": 0.93, "label": "person", "label_id": 1}, "h": .., "region_id": 0,
 *   "roi_type": "person", "w": .., "x": .., "y": ..}], "resolution": {"height": 528, "width": 720},
 *   "timestamp": 0}
 * ]|
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=street.mp4 ! decodebin ! frcnndetect weights=coco ! \
 *     frcnnjson location=detections.jsonl ! fakesink
 * ]|
 */

#include "gstfrcnnjson.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <glib/gstdio.h>
#include <gst/video/video.h>
#include <nlohmann/json.hpp>

#include "frcnn/detail/json.h"
#include "meta.h"
#include "element_messages.h"

GST_DEBUG_CATEGORY_STATIC(gst_frcnn_json_debug);
#define GST_CAT_DEFAULT gst_frcnn_json_debug

enum {
	PROP_0,
	PROP_LOCATION,
	PROP_POST_MESSAGES,
	PROP_FORMAT,
	PROP_SOURCE,
	PROP_TAGS,
	PROP_ADD_EMPTY_RESULTS,
};

typedef enum {
	GST_FRCNN_JSON_FORMAT_FRCNN,
	GST_FRCNN_JSON_FORMAT_DLSTREAMER,
} GstFrcnnJsonFormat;

#define DEFAULT_PROP_LOCATION "-"
#define DEFAULT_PROP_POST_MESSAGES FALSE
#define DEFAULT_PROP_FORMAT GST_FRCNN_JSON_FORMAT_FRCNN
#define DEFAULT_PROP_ADD_EMPTY_RESULTS TRUE
#define TAGS_EXAMPLE "tags='{\"camera\":\"north\"}'"

#define GST_TYPE_FRCNN_JSON_FORMAT (gst_frcnn_json_format_get_type())
static GType gst_frcnn_json_format_get_type(void)
{
	static const GEnumValue values[] = {
		{ GST_FRCNN_JSON_FORMAT_FRCNN,
		  "frame, pts, width, height and detections with boxes in pixels", "frcnn" },
		{ GST_FRCNN_JSON_FORMAT_DLSTREAMER,
		  "Intel DL Streamer gvametaconvert's objects, resolution and timestamp", "dlstreamer" },
		{ 0, nullptr, nullptr },
	};
	static gsize type = 0;
	if (g_once_init_enter(&type))
		g_once_init_leave(&type, g_enum_register_static("GstFrcnnJsonFormat", values));
	return type;
}

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
	"sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/x-raw(ANY)"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
	"src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/x-raw(ANY)"));

/* The tags the lines carry: the last value of 'tags' that was a JSON object, read in both key
 * orders the two formats write. */
struct LineTags {
	std::string text;		  /* the value they were read from */
	nlohmann::ordered_json in_order; /* null for none */
	nlohmann::json sorted;
	std::string refused;		  /* the last value that was not an object (warned about) */
};

/*
 * A file the lines are written to. The elements of a process given the same file (the same
 * device and inode, or standard output) share one: a line is written whole under its lock, and
 * only the first element to open the file empties it, so that several streams' lines go into one
 * file without overwriting or cutting each other's.
 */
class JsonLinesFile {
public:
	/* The file at `location` ("-": standard output), opened or shared. Null with errno's value
	 * in `error` when it cannot be opened. */
	static std::shared_ptr<JsonLinesFile> open(const char *location, int *error)
	{
		std::lock_guard<std::mutex> registry_locked(registry_lock());
		const bool standard_output = g_str_equal(location, "-");
		GStatBuf existing;
		const bool exists = !standard_output && g_stat(location, &existing) == 0;
		for (const std::weak_ptr<JsonLinesFile> &entry : registry()) {
			std::shared_ptr<JsonLinesFile> open = entry.lock();
			if (open && (standard_output ? open->standard_output_
				     : exists && !open->standard_output_ && open->device_ == existing.st_dev &&
					       open->inode_ == existing.st_ino))
				return open;
		}

		std::shared_ptr<JsonLinesFile> file(new JsonLinesFile());
		if (standard_output) {
			file->file_ = stdout;
			file->standard_output_ = true;
		} else {
			file->file_ = g_fopen(location, "w");
			struct stat opened;
			if (!file->file_ || fstat(fileno(file->file_), &opened) != 0) {
				*error = errno;
				return nullptr;
			}
			file->device_ = opened.st_dev;
			file->inode_ = opened.st_ino;
		}
		registry().push_back(file);
		return file;
	}

	/* Writes `text` and a newline, and flushes them. Returns false with errno's value in
	 * `error` when it could not. */
	bool write_line(const std::string &text, int *error)
	{
		std::lock_guard<std::mutex> locked(lock_);
		if (fprintf(file_, "%s\n", text.c_str()) < 0 || fflush(file_) != 0) {
			*error = errno;
			return false;
		}
		return true;
	}

	/* Lets go of `file`: the last element that writes to it closes it (flushes standard
	 * output). Returns false with errno's value in `error` when closing failed. */
	static bool release(std::shared_ptr<JsonLinesFile> &file, int *error)
	{
		std::lock_guard<std::mutex> registry_locked(registry_lock());
		bool closed = true;
		/* The last holder: nobody can take the file meanwhile (open() holds the lock too). */
		if (file.use_count() == 1) {
			if (file->standard_output_) {
				fflush(file->file_);
			} else if (fclose(file->file_) != 0) {
				*error = errno;
				closed = false;
			}
			file->file_ = nullptr;
		}
		file.reset();
		std::vector<std::weak_ptr<JsonLinesFile>> &entries = registry();
		entries.erase(std::remove_if(entries.begin(), entries.end(),
					     [](const std::weak_ptr<JsonLinesFile> &entry) { return entry.expired(); }),
			      entries.end());
		return closed;
	}

	JsonLinesFile(const JsonLinesFile &) = delete;
	JsonLinesFile &operator=(const JsonLinesFile &) = delete;

	~JsonLinesFile()
	{
		if (file_ && !standard_output_)
			fclose(file_);
	}

private:
	JsonLinesFile() = default;

	/* The files open in this process; entries are shared, so looked through under this lock. */
	static std::mutex &registry_lock()
	{
		static std::mutex lock;
		return lock;
	}
	static std::vector<std::weak_ptr<JsonLinesFile>> &registry()
	{
		static std::vector<std::weak_ptr<JsonLinesFile>> entries;
		return entries;
	}

	FILE *file_ = nullptr;
	bool standard_output_ = false;
	dev_t device_ = 0;
	ino_t inode_ = 0;
	std::mutex lock_; /* one line at a time */
};

struct _GstFrcnnJson {
	GstBaseTransform parent;

	/* Protected by the object lock. */
	gchar *location;
	gboolean post_messages;
	GstFrcnnJsonFormat format;
	gchar *source;
	gchar *tags;
	gboolean add_empty_results;

	/* Streaming thread only (opened in start(), closed in stop()). */
	LineTags *line_tags; /* allocated with the element, read in start() */
	std::shared_ptr<JsonLinesFile> *file; /* allocated with the element; null inside: no file */
	guint64 frame;
	gint width;
	gint height;
	gint par_n, par_d; /* the frames' pixel aspect ratio */
};

G_DEFINE_TYPE(GstFrcnnJson, gst_frcnn_json, GST_TYPE_BASE_TRANSFORM);

/* The metas downstream takes, passed upstream (GstBaseTransform's way), but for the crop meta:
 * the boxes are written in the pixels of the caps' frame, and an element in front that crops
 * (videocrop) would otherwise hand over whole frames with their whole-frame regions of interest. */
static gboolean gst_frcnn_json_propose_allocation(GstBaseTransform *transform, GstQuery *decide_query,
						  GstQuery *query)
{
	if (!GST_BASE_TRANSFORM_CLASS(gst_frcnn_json_parent_class)
		     ->propose_allocation(transform, decide_query, query))
		return FALSE;
	frcnn::gst::refuse_crop_meta(query);
	return TRUE;
}
GST_ELEMENT_REGISTER_DEFINE(frcnnjson, "frcnnjson", GST_RANK_NONE, GST_TYPE_FRCNN_JSON);

/* QOS events go upstream (to a detector that skips late frames, say) without GstBaseTransform
 * reading them: with its `qos` on, it would drop the frames downstream reports as late, and
 * they would get no line and never reach downstream. A writer of every frame drops none. */
static gboolean gst_frcnn_json_src_event(GstBaseTransform *transform, GstEvent *event)
{
	if (GST_EVENT_TYPE(event) == GST_EVENT_QOS)
		return gst_pad_push_event(GST_BASE_TRANSFORM_SINK_PAD(transform), event);
	return GST_BASE_TRANSFORM_CLASS(gst_frcnn_json_parent_class)->src_event(transform, event);
}

static void gst_frcnn_json_finalize(GObject *object);
static void gst_frcnn_json_set_property(GObject *object, guint prop_id, const GValue *value,
					GParamSpec *pspec);
static void gst_frcnn_json_get_property(GObject *object, guint prop_id, GValue *value,
					GParamSpec *pspec);
static gboolean gst_frcnn_json_start(GstBaseTransform *trans);
static gboolean gst_frcnn_json_stop(GstBaseTransform *trans);
static gboolean gst_frcnn_json_set_caps(GstBaseTransform *trans, GstCaps *incaps,
					GstCaps *outcaps);
static GstFlowReturn gst_frcnn_json_transform_ip(GstBaseTransform *trans, GstBuffer *buffer);

static void gst_frcnn_json_class_init(GstFrcnnJsonClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS(klass);
	GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
	GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS(klass);

	object_class->finalize = gst_frcnn_json_finalize;
	object_class->set_property = gst_frcnn_json_set_property;
	object_class->get_property = gst_frcnn_json_get_property;

	g_object_class_install_property(object_class, PROP_LOCATION,
		g_param_spec_string("location", "Location",
				    "File the JSON lines are written to ('-' = standard output, "
				    "empty = none). Elements given the same file write into it together: the "
				    "first to start empties it, each line is written whole",
				    DEFAULT_PROP_LOCATION,
				    static_cast<GParamFlags>(G_PARAM_READWRITE |
							     G_PARAM_STATIC_STRINGS |
							     G_PARAM_EXPLICIT_NOTIFY |
							     GST_PARAM_MUTABLE_READY)));
	g_object_class_install_property(object_class, PROP_POST_MESSAGES,
		g_param_spec_boolean("post-messages", "Post messages",
				     "Also post each frame's detections as an element message",
				     DEFAULT_PROP_POST_MESSAGES,
				     static_cast<GParamFlags>(G_PARAM_READWRITE |
							      G_PARAM_STATIC_STRINGS |
							      GST_PARAM_MUTABLE_PLAYING)));
	g_object_class_install_property(object_class, PROP_SOURCE,
		g_param_spec_string("source", "Source",
				    "A name or URI of the stream, written as \"source\" in every line "
				    "(DL Streamer's gvametaconvert source); empty: none",
				    nullptr,
				    static_cast<GParamFlags>(G_PARAM_READWRITE |
							     G_PARAM_STATIC_STRINGS |
							     GST_PARAM_MUTABLE_PLAYING)));
	g_object_class_install_property(object_class, PROP_TAGS,
		g_param_spec_string("tags", "Tags",
				    "A JSON object written as \"tags\" in every line, e.g. "
				    TAGS_EXAMPLE " (DL Streamer's gvametaconvert tags); empty: none. "
				    "Anything else fails the start; set while playing, it is warned "
				    "about and the lines keep the tags they had",
				    nullptr,
				    static_cast<GParamFlags>(G_PARAM_READWRITE |
							     G_PARAM_STATIC_STRINGS |
							     GST_PARAM_MUTABLE_PLAYING)));
	g_object_class_install_property(object_class, PROP_ADD_EMPTY_RESULTS,
		g_param_spec_boolean("add-empty-results", "Add empty results",
				     "Also write a line (and post a message) for a frame without regions "
				     "of interest; false leaves those frames out (DL Streamer's "
				     "gvametaconvert default), their frame numbers then missing",
				     DEFAULT_PROP_ADD_EMPTY_RESULTS,
				     static_cast<GParamFlags>(G_PARAM_READWRITE |
							      G_PARAM_STATIC_STRINGS |
							      GST_PARAM_MUTABLE_PLAYING)));
	g_object_class_install_property(object_class, PROP_FORMAT,
		g_param_spec_enum("format", "Format",
				  "Layout of each line: frcnn's own, or the JSON Intel DL Streamer's "
				  "gvametaconvert writes",
				  GST_TYPE_FRCNN_JSON_FORMAT, DEFAULT_PROP_FORMAT,
				  static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
							   GST_PARAM_MUTABLE_PLAYING)));

	trans_class->propose_allocation = GST_DEBUG_FUNCPTR(gst_frcnn_json_propose_allocation);
	trans_class->src_event = GST_DEBUG_FUNCPTR(gst_frcnn_json_src_event);
	trans_class->start = GST_DEBUG_FUNCPTR(gst_frcnn_json_start);
	trans_class->stop = GST_DEBUG_FUNCPTR(gst_frcnn_json_stop);
	trans_class->set_caps = GST_DEBUG_FUNCPTR(gst_frcnn_json_set_caps);
	trans_class->transform_ip = GST_DEBUG_FUNCPTR(gst_frcnn_json_transform_ip);
	trans_class->transform_ip_on_passthrough = TRUE;
	trans_class->passthrough_on_same_caps = TRUE;

	gst_element_class_add_static_pad_template(element_class, &sink_template);
	gst_element_class_add_static_pad_template(element_class, &src_template);
	gst_element_class_set_static_metadata(element_class, "Detections to JSON",
		"Filter/Analyzer/Video",
		"Writes the region of interest metadata of each frame as a line of JSON",
		"gst-frcnn authors");

	gst_type_mark_as_plugin_api(GST_TYPE_FRCNN_JSON_FORMAT, static_cast<GstPluginAPIFlags>(0));

	GST_DEBUG_CATEGORY_INIT(gst_frcnn_json_debug, "frcnnjson", 0, "Detections to JSON");
}

static void gst_frcnn_json_init(GstFrcnnJson *self)
{
	self->location = g_strdup(DEFAULT_PROP_LOCATION);
	self->post_messages = DEFAULT_PROP_POST_MESSAGES;
	self->format = DEFAULT_PROP_FORMAT;
	self->source = nullptr;
	self->tags = nullptr;
	self->add_empty_results = DEFAULT_PROP_ADD_EMPTY_RESULTS;
	self->line_tags = new LineTags();
	self->file = new std::shared_ptr<JsonLinesFile>();

	gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), TRUE);
}

static void gst_frcnn_json_finalize(GObject *object)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(object);

	g_free(self->location);
	g_free(self->source);
	g_free(self->tags);
	delete self->line_tags;
	delete self->file;

	G_OBJECT_CLASS(gst_frcnn_json_parent_class)->finalize(object);
}

static void gst_frcnn_json_set_property(GObject *object, guint prop_id, const GValue *value,
					GParamSpec *pspec)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(object);
	if (prop_id == PROP_LOCATION) {
		/* The file is opened at the start: one set later would not be written to. */
		const gchar *location = g_value_get_string(value);
		GST_OBJECT_LOCK(self);
		const bool running = frcnn::gst::element_running_locked(GST_ELEMENT(self));
		const bool changed = !frcnn::gst::same_text(self->location, location);
		if (!running) {
			g_free(self->location);
			self->location = g_strdup(location);
		}
		GST_OBJECT_UNLOCK(self);
		if (running && changed)
			frcnn::gst::warn_ready_only(GST_ELEMENT(self), "location",
						    "the lines go on to the file it opened", location ? location : "");
		else if (!running)
			g_object_notify_by_pspec(object, pspec); /* explicit: a refused value is not news */
		return;
	}
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));

	switch (prop_id) {
	case PROP_POST_MESSAGES:
		self->post_messages = g_value_get_boolean(value);
		break;
	case PROP_FORMAT:
		self->format = static_cast<GstFrcnnJsonFormat>(g_value_get_enum(value));
		break;
	case PROP_SOURCE:
		g_free(self->source);
		self->source = g_value_dup_string(value);
		break;
	case PROP_TAGS:
		g_free(self->tags);
		self->tags = g_value_dup_string(value);
		break;
	case PROP_ADD_EMPTY_RESULTS:
		self->add_empty_results = g_value_get_boolean(value);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		break;
	}
}

static void gst_frcnn_json_get_property(GObject *object, guint prop_id, GValue *value,
					GParamSpec *pspec)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(object);
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));

	switch (prop_id) {
	case PROP_LOCATION:
		g_value_set_string(value, self->location);
		break;
	case PROP_POST_MESSAGES:
		g_value_set_boolean(value, self->post_messages);
		break;
	case PROP_FORMAT:
		g_value_set_enum(value, self->format);
		break;
	case PROP_SOURCE:
		g_value_set_string(value, self->source);
		break;
	case PROP_TAGS:
		g_value_set_string(value, self->tags);
		break;
	case PROP_ADD_EMPTY_RESULTS:
		g_value_set_boolean(value, self->add_empty_results);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		break;
	}
}

/* A line's text. Names that are not UTF-8 (a labels file in another encoding, a producer's
 * roi_type or source) get U+FFFD for their stray bytes: JSON text is UTF-8. */
static std::string dump_line(const nlohmann::ordered_json &line)
{
	return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

/*
 * Reads `text` into `tags` (an empty text: no tags). Returns false, saying why in `problem`,
 * when the text is not a JSON object.
 */
static bool read_tags(const std::string &text, LineTags *tags, std::string *problem)
{
	nlohmann::ordered_json value;
	if (!text.empty()) {
		try {
			value = frcnn::detail::parse_json<nlohmann::ordered_json>(text);
		} catch (const frcnn::detail::JsonTooDeep &e) {
			*problem = std::string("it is not JSON this element takes (") + e.what() + ")";
			return false;
		} catch (const nlohmann::json::exception &e) {
			/* "[json.exception.parse_error.101] parse error at ...": the part after the id
			 * (also of a number too large for a double, out_of_range.406). */
			const std::string what = e.what();
			const std::size_t end = what.find("] ");
			*problem = "it is not JSON (" +
				   (end == std::string::npos ? what : what.substr(end + 2)) + ")";
			return false;
		}
		if (!value.is_object()) {
			*problem = std::string("it is a JSON ") + value.type_name() + ", not an object";
			return false;
		}
	}
	tags->text = text;
	tags->sorted = value.is_null() ? nlohmann::json() : nlohmann::json::parse(value.dump());
	tags->in_order = std::move(value);
	tags->refused.clear();
	return true;
}

static gboolean gst_frcnn_json_start(GstBaseTransform *trans)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(trans);

	g_autofree gchar *location = nullptr;
	std::string tags;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		location = g_strdup(self->location);
		tags = self->tags ? self->tags : "";
	}

	*self->line_tags = LineTags();
	std::string problem;
	if (!read_tags(tags, self->line_tags, &problem)) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
				  ("'tags' must be a JSON object, e.g. " TAGS_EXAMPLE ", but %s.",
				   problem.c_str()),
				  ("tags '%s'", tags.c_str()));
		return FALSE;
	}

	self->frame = 0;
	self->width = 0;
	self->height = 0;
	self->par_n = self->par_d = 1;
	self->file->reset();

	if (!location || !location[0])
		return TRUE;

	int err = 0;
	*self->file = JsonLinesFile::open(location, &err);
	if (!*self->file) {
		GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE,
				  ("Could not open '%s' for writing: %s. Set 'location' to a file "
				   "in a writable folder, or '-' for standard output.",
				   location, g_strerror(err)),
				  ("fopen() failed: %s", g_strerror(err)));
		return FALSE;
	}
	return TRUE;
}

/* Where the lines go, for a message: the file in quotes, or standard output. */
static std::string written_to(GstFrcnnJson *self)
{
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
	const std::string location = self->location ? self->location : "";
	return location == "-" ? "standard output" : "'" + location + "'";
}

static gboolean gst_frcnn_json_stop(GstBaseTransform *trans)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(trans);

	int err = 0;
	if (*self->file && !JsonLinesFile::release(*self->file, &err)) {
		const std::string where = written_to(self);
		const std::string advice = frcnn::gst::write_failure_advice(err, "location");
		GST_ELEMENT_ERROR(self, RESOURCE, CLOSE,
				  ("Could not finish writing the JSON lines to %s: %s. %s", where.c_str(),
				   g_strerror(err), advice.c_str()),
				  ("fclose() failed: %s", g_strerror(err)));
		return FALSE;
	}
	return TRUE;
}

static gboolean gst_frcnn_json_set_caps(GstBaseTransform *trans, GstCaps *incaps,
					GstCaps *outcaps)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(trans);

	GstVideoInfo info;
	if (!gst_video_info_from_caps(&info, incaps)) {
		GST_WARNING_OBJECT(self, "invalid caps %" GST_PTR_FORMAT, incaps);
		return FALSE;
	}
	self->width = GST_VIDEO_INFO_WIDTH(&info);
	self->height = GST_VIDEO_INFO_HEIGHT(&info);
	self->par_n = GST_VIDEO_INFO_PAR_N(&info);
	self->par_d = GST_VIDEO_INFO_PAR_D(&info);
	return TRUE;
}

/* Rounded to what a reader can use, so that the lines stay short; a number too large to round
 * (another producer's) as it is. */
static double rounded(double value, double scale)
{
	const double scaled = value * scale;
	return std::isfinite(scaled) ? std::round(scaled) / scale : value;
}

/* frcnn's own line: frame, pts, width, height, pixel_aspect_ratio (for pixels that are not
 * square), source and tags (when set), detections (box in pixels, label, label_id, score, id,
 * parent_id), keys in this order. */
static std::string frcnn_line(GstFrcnnJson *self, GstClockTime pts, const std::string &source,
			      const std::vector<frcnn::gst::DetectionMeta> &metas,
			      const std::vector<frcnn::gst::SkippedBy> &skipped)
{
	nlohmann::ordered_json line;
	line["frame"] = self->frame;
	line["pts"] = GST_CLOCK_TIME_IS_VALID(pts) ? nlohmann::ordered_json(pts)
						   : nlohmann::ordered_json(nullptr);
	line["width"] = self->width;
	line["height"] = self->height;
	/* Anamorphic video: what a reader needs to draw the boxes on the frame as it is shown. */
	if (self->par_n != self->par_d && self->par_n > 0 && self->par_d > 0)
		line["pixel_aspect_ratio"] = { self->par_n, self->par_d };
	if (!source.empty())
		line["source"] = source;
	if (!self->line_tags->in_order.is_null())
		line["tags"] = self->line_tags->in_order;
	nlohmann::ordered_json detections = nlohmann::ordered_json::array();
	for (const frcnn::gst::DetectionMeta &det : metas) {
		nlohmann::ordered_json entry;
		entry["box"] = { rounded(det.x1, 100), rounded(det.y1, 100),
				 rounded(det.x2, 100), rounded(det.y2, 100) };
		entry["label"] = det.label;
		entry["label_id"] = det.label_id ? nlohmann::ordered_json(*det.label_id) : nlohmann::ordered_json(nullptr);
		entry["score"] = det.score ? nlohmann::ordered_json(rounded(*det.score, 1e4))
					   : nlohmann::ordered_json(nullptr);
		entry["id"] = det.id;
		entry["parent_id"] = det.parent_id;
		detections.push_back(std::move(entry));
	}
	line["detections"] = std::move(detections);
	/* The detectors that passed the frame on without running on it: its detections (none,
	 * perhaps) are not theirs. */
	for (const frcnn::gst::SkippedBy &by : skipped)
		line["skipped"].push_back({ { "element", by.element }, { "reason", by.reason } });
	return dump_line(line);
}

/* The object DL Streamer's gvametaconvert writes for a frame (json format, add-empty-results):
 * "resolution", "timestamp" (the stream time in nanoseconds, the pts in a segment not in time;
 * left out for a buffer without one and for a frame that starts before the segment),
 * "source" and "tags" when set, and, when the frame has regions of interest, "objects": each the
 * ROI rectangle, its roi_type and, from a "detection" param with a box, "detection" (the
 * normalised bounding_box, confidence, label_id, and the roi_type as label). Keys sorted, as
 * nlohmann::json writes them there too. */
static std::string dlstreamer_line(GstFrcnnJson *self, GstClockTime pts, const std::string &source,
				   const std::vector<frcnn::gst::DetectionMeta> &metas)
{
	nlohmann::json line;
	line["resolution"] = { { "width", self->width }, { "height", self->height } };
	if (!source.empty())
		line["source"] = source;
	if (!self->line_tags->sorted.is_null())
		line["tags"] = self->line_tags->sorted;
	/* The stream time, as gvametaconvert writes it (since 2022: not less the segment's time);
	 * none for a frame outside the segment (the one a seek lands in), as there. */
	const GstSegment &segment = GST_BASE_TRANSFORM(self)->segment;
	if (GST_CLOCK_TIME_IS_VALID(pts)) {
		if (segment.format != GST_FORMAT_TIME) {
			/* A segment not in time (an appsrc's default, bytes): the pts is the time. */
			line["timestamp"] = pts;
		} else {
			const guint64 stream_time = gst_segment_to_stream_time(&segment, GST_FORMAT_TIME, pts);
			if (GST_CLOCK_TIME_IS_VALID(stream_time))
				line["timestamp"] = stream_time;
		}
	}
	for (const frcnn::gst::DetectionMeta &det : metas) {
		nlohmann::json object = { { "x", det.x }, { "y", det.y }, { "w", det.w }, { "h", det.h },
					  { "region_id", det.id } };
		if (det.object_id != 0)
			object["id"] = det.object_id;
		if (!det.roi_type.empty())
			object["roi_type"] = det.roi_type;
		if (det.has_param) {
			/* A param whose box is not the region's (moved since) gives the rectangle's. */
			nlohmann::json detection;
			const double width = self->width > 0 ? self->width : 1, height = self->height > 0 ? self->height : 1;
			detection["bounding_box"] =
				det.has_box ? nlohmann::json{ { "x_min", det.x_min }, { "x_max", det.x_max },
							      { "y_min", det.y_min }, { "y_max", det.y_max } }
					    /* Added in double: the rectangle's unsigned ints may wrap. */
					    : nlohmann::json{ { "x_min", det.x / width },
							      { "x_max", (static_cast<double>(det.x) + det.w) / width },
							      { "y_min", det.y / height },
							      { "y_max", (static_cast<double>(det.y) + det.h) / height } };
			if (det.score)
				detection["confidence"] = *det.score;
			if (det.label_id)
				detection["label_id"] = *det.label_id;
			if (!det.roi_type.empty())
				detection["label"] = det.roi_type;
			object["detection"] = std::move(detection);
		}
		line["objects"].push_back(std::move(object));
	}
	return dump_line(line);
}

static GstFlowReturn gst_frcnn_json_transform_ip(GstBaseTransform *trans, GstBuffer *buffer)
{
	GstFrcnnJson *self = GST_FRCNN_JSON(trans);

	gboolean post_messages;
	GstFrcnnJsonFormat format;
	std::string source, tags;
	gboolean add_empty_results;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		post_messages = self->post_messages;
		format = self->format;
		source = self->source ? self->source : "";
		tags = self->tags ? self->tags : "";
		add_empty_results = self->add_empty_results;
	}
	if (!*self->file && !post_messages) {
		self->frame++;
		return GST_FLOW_OK;
	}

	/* 'tags' changed while playing: a value that is not an object is said once and not used. */
	LineTags &line_tags = *self->line_tags;
	if (tags != line_tags.text && tags != line_tags.refused) {
		std::string problem;
		if (!read_tags(tags, &line_tags, &problem)) {
			line_tags.refused = tags;
			GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
					    ("'tags' must be a JSON object, e.g. " TAGS_EXAMPLE ", but %s: "
					     "the lines keep the tags they had.",
					     problem.c_str()),
					    ("tags '%s' set while playing", tags.c_str()));
		}
	}

	const GstClockTime pts = GST_BUFFER_PTS(buffer);
	const std::vector<frcnn::gst::DetectionMeta> metas =
		frcnn::gst::read_detection_metas(buffer, self->width, self->height);
	if (metas.empty() && !add_empty_results) {
		self->frame++;
		return GST_FLOW_OK;
	}
	const std::string text = format == GST_FRCNN_JSON_FORMAT_DLSTREAMER
					 ? dlstreamer_line(self, pts, source, metas)
					 : frcnn_line(self, pts, source, metas, frcnn::gst::read_skipped_metas(buffer));
	const std::size_t count = metas.size();

	int err = 0;
	if (*self->file && !(*self->file)->write_line(text, &err)) {
		const std::string where = written_to(self);
		const std::string advice = frcnn::gst::write_failure_advice(err, "location");
		GST_ELEMENT_ERROR(self, RESOURCE, WRITE,
				  ("Could not write the JSON line to %s: %s. %s", where.c_str(), g_strerror(err),
				   advice.c_str()),
				  ("fprintf() failed: %s", g_strerror(err)));
		return GST_FLOW_ERROR;
	}

	if (post_messages) {
		GstStructure *s = gst_structure_new("frcnnjson",
			"frame", G_TYPE_UINT64, self->frame,
			"pts", G_TYPE_UINT64, pts,
			"width", G_TYPE_INT, self->width,
			"height", G_TYPE_INT, self->height,
			"detections", G_TYPE_UINT, static_cast<guint>(count),
			"json", G_TYPE_STRING, text.c_str(),
			nullptr);
		gst_element_post_message(GST_ELEMENT(self),
					 gst_message_new_element(GST_OBJECT(self), s));
	}

	self->frame++;
	return GST_FLOW_OK;
}

// SPDX-License-Identifier: BSD-3-Clause
/**
 * SECTION:element-frcnnshapesrc
 * @title: frcnnshapesrc
 *
 * A video of moving, spinning, overlapping squares, circles and triangles on solid, gradient
 * and textured backgrounds with pixel noise: the synthetic scenes the shapes model is trained
 * on. The video is a pure function of `seed` and the frame size, so a run can be repeated
 * exactly, and the true boxes of every frame are known: with `ground-truth` set, they are written
 * as JSON lines in frcnnjson's format (score 1), one line per frame:
 *
 * |[
 * {"frame": 0, "pts": 0, "width": 640, "height": 480,
 *  "detections": [{"box": [x1, y1, x2, y2], "label": "square", "label_id": 1, "score": 1.0}]}
 * ]|
 *
 * Labels: 1 square, 2 circle, 3 triangle. Every `scene-frames` frames the video cuts to a new
 * background and set of objects; within a scene, objects come and go.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 frcnnshapesrc seed=7 num-buffers=200 ground-truth=truth.jsonl ! \
 *     video/x-raw,width=640,height=480,framerate=25/1 ! frcnndetect weights=shapes.pth ! \
 *     frcnnoverlay ! videoconvert ! autovideosink
 * ]|
 */

#include "gstfrcnnshapesrc.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <glib/gstdio.h>
#include <gst/video/video.h>
#include <nlohmann/json.hpp>

#include "frcnn/error.h"
#include "frcnn/shapes.h"
#include "element_messages.h"

GST_DEBUG_CATEGORY_STATIC(gst_frcnn_shape_src_debug);
#define GST_CAT_DEFAULT gst_frcnn_shape_src_debug

enum {
	PROP_0,
	PROP_SEED,
	PROP_MIN_OBJECTS,
	PROP_MAX_OBJECTS,
	PROP_SCENE_FRAMES,
	PROP_GROUND_TRUTH,
	PROP_IS_LIVE,
};

#define DEFAULT_PROP_SEED 0
#define DEFAULT_PROP_MIN_OBJECTS 1
#define DEFAULT_PROP_MAX_OBJECTS 6
#define DEFAULT_PROP_SCENE_FRAMES 100
#define DEFAULT_PROP_GROUND_TRUTH ""
#define DEFAULT_PROP_IS_LIVE FALSE

#define DEFAULT_WIDTH 640
#define DEFAULT_HEIGHT 480
#define DEFAULT_FPS_N 25
#define DEFAULT_FPS_D 1

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
	"src", GST_PAD_SRC, GST_PAD_ALWAYS,
	GST_STATIC_CAPS("video/x-raw, format = (string) RGB, "
			"width = (int) [ 8, 16384 ], height = (int) [ 8, 16384 ], "
			"framerate = (fraction) [ 1/3600, 1000/1 ], "
			"pixel-aspect-ratio = (fraction) 1/1"));

namespace {

struct FileCloser {
	void operator()(FILE *f) const { fclose(f); }
};

} // namespace

// C++ members of the element, created in _init and deleted in _finalize.
struct GstFrcnnShapeSrcState {
	/* Properties, protected by the object lock. */
	guint64 seed = DEFAULT_PROP_SEED;
	guint min_objects = DEFAULT_PROP_MIN_OBJECTS;
	guint max_objects = DEFAULT_PROP_MAX_OBJECTS;
	guint scene_frames = DEFAULT_PROP_SCENE_FRAMES;
	std::string ground_truth = DEFAULT_PROP_GROUND_TRUTH;

	/* Written by the streaming thread under the object lock (the latency query reads it). */
	GstVideoInfo info;

	/* Streaming thread only: set up in start() and set_caps(), reset in stop(). */
	std::unique_ptr<frcnn::ShapesGenerator> generator;
	std::string truth_path;
	guint64 frame = 0; // index of the next frame; the scene drawn and its pts follow from it
	/* Frames are timed from the last frame-rate change: `time_base` is the pts of frame
	 * `frame_base`, and the frames after it follow at the rate of the caps. */
	guint64 frame_base = 0;
	GstClockTime time_base = 0;

	/* The true boxes of the frame drawn last, written by the source pad's probe when the frame
	 * goes out (with the pts it goes out with; a frame dropped before, by a flush, is not
	 * written); and the file, opened in start(). Streaming thread, or state changes while it
	 * does not run. */
	std::unique_ptr<FILE, FileCloser> truth_file;
	guint64 truth_frame = 0;
	std::vector<frcnn::ShapeObject> truth_objects;
	bool truth_pending = false;
	bool truth_failed = false; // a line could not be written (posted): the next frame is not drawn
};

struct _GstFrcnnShapeSrc {
	GstPushSrc parent;
	GstFrcnnShapeSrcState *state;
};

/* The time `frames` frames last at the rate of `info`. */
static GstClockTime frame_time(const GstVideoInfo &info, guint64 frames)
{
	return gst_util_uint64_scale(frames, static_cast<guint64>(GST_VIDEO_INFO_FPS_D(&info)) *
						   GST_SECOND,
				     GST_VIDEO_INFO_FPS_N(&info));
}

/* The pts of frame `frame` (not before `frame_base`), at the rate of the caps. */
static GstClockTime frame_pts(const GstFrcnnShapeSrcState &state, guint64 frame)
{
	return state.time_base + frame_time(state.info, frame - state.frame_base);
}

static GstPadProbeReturn gst_frcnn_shape_src_write_ground_truth(GstPad *pad, GstPadProbeInfo *info,
								gpointer user_data);

G_DEFINE_TYPE(GstFrcnnShapeSrc, gst_frcnn_shape_src, GST_TYPE_PUSH_SRC);
GST_ELEMENT_REGISTER_DEFINE(frcnnshapesrc, "frcnnshapesrc", GST_RANK_NONE,
			    GST_TYPE_FRCNN_SHAPE_SRC);

static void gst_frcnn_shape_src_finalize(GObject *object);
static void gst_frcnn_shape_src_set_property(GObject *object, guint prop_id, const GValue *value,
					     GParamSpec *pspec);
static void gst_frcnn_shape_src_get_property(GObject *object, guint prop_id, GValue *value,
					     GParamSpec *pspec);
static GstCaps *gst_frcnn_shape_src_fixate(GstBaseSrc *bsrc, GstCaps *caps);
static gboolean gst_frcnn_shape_src_set_caps(GstBaseSrc *bsrc, GstCaps *caps);
static gboolean gst_frcnn_shape_src_start(GstBaseSrc *bsrc);
static gboolean gst_frcnn_shape_src_stop(GstBaseSrc *bsrc);
static gboolean gst_frcnn_shape_src_is_seekable(GstBaseSrc *bsrc);
static gboolean gst_frcnn_shape_src_do_seek(GstBaseSrc *bsrc, GstSegment *segment);
static gboolean gst_frcnn_shape_src_event(GstBaseSrc *bsrc, GstEvent *event);
static gboolean gst_frcnn_shape_src_send_event(GstElement *element, GstEvent *event);
static gboolean gst_frcnn_shape_src_query(GstBaseSrc *bsrc, GstQuery *query);
static void gst_frcnn_shape_src_get_times(GstBaseSrc *bsrc, GstBuffer *buffer, GstClockTime *start,
					  GstClockTime *end);
static GstFlowReturn gst_frcnn_shape_src_fill(GstPushSrc *psrc, GstBuffer *buffer);

static void gst_frcnn_shape_src_class_init(GstFrcnnShapeSrcClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS(klass);
	GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
	GstBaseSrcClass *bsrc_class = GST_BASE_SRC_CLASS(klass);
	GstPushSrcClass *psrc_class = GST_PUSH_SRC_CLASS(klass);

	object_class->finalize = gst_frcnn_shape_src_finalize;
	object_class->set_property = gst_frcnn_shape_src_set_property;
	object_class->get_property = gst_frcnn_shape_src_get_property;

	/* Notified when taken: one refused while the element runs changes nothing. */
	const GParamFlags ready = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
							   G_PARAM_EXPLICIT_NOTIFY | GST_PARAM_MUTABLE_READY);
	g_object_class_install_property(object_class, PROP_SEED,
		g_param_spec_uint64("seed", "Seed",
				    "Seed of the video: the same seed and size give the same frames",
				    0, G_MAXUINT64, DEFAULT_PROP_SEED, ready));
	g_object_class_install_property(object_class, PROP_MIN_OBJECTS,
		g_param_spec_uint("min-objects", "Minimum objects",
				  "Fewest objects on screen at once", 0, 250,
				  DEFAULT_PROP_MIN_OBJECTS, ready));
	g_object_class_install_property(object_class, PROP_MAX_OBJECTS,
		g_param_spec_uint("max-objects", "Maximum objects",
				  "Most objects on screen at once", 0, 250,
				  DEFAULT_PROP_MAX_OBJECTS, ready));
	g_object_class_install_property(object_class, PROP_SCENE_FRAMES,
		g_param_spec_uint("scene-frames", "Scene frames",
				  "Frames before the video cuts to a new scene (1: every frame "
				  "is a scene of its own)",
				  1, G_MAXINT, DEFAULT_PROP_SCENE_FRAMES, ready));
	g_object_class_install_property(object_class, PROP_GROUND_TRUTH,
		g_param_spec_string("ground-truth", "Ground truth",
				    "File the true boxes of each frame are written to, as JSON "
				    "lines in frcnnjson's format (empty: none)",
				    DEFAULT_PROP_GROUND_TRUTH, ready));
	g_object_class_install_property(object_class, PROP_IS_LIVE,
		g_param_spec_boolean("is-live", "Is live",
				     "Act as a live source: frames come at the frame rate",
				     DEFAULT_PROP_IS_LIVE, ready));

	bsrc_class->fixate = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_fixate);
	bsrc_class->set_caps = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_set_caps);
	bsrc_class->start = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_start);
	bsrc_class->stop = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_stop);
	bsrc_class->is_seekable = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_is_seekable);
	bsrc_class->event = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_event);
	element_class->send_event = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_send_event);
	bsrc_class->do_seek = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_do_seek);
	bsrc_class->query = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_query);
	bsrc_class->get_times = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_get_times);
	psrc_class->fill = GST_DEBUG_FUNCPTR(gst_frcnn_shape_src_fill);

	gst_element_class_add_static_pad_template(element_class, &src_template);
	gst_element_class_set_static_metadata(element_class, "Synthetic shapes source",
		"Source/Video",
		"Moving coloured squares, circles and triangles, with their true boxes",
		"gst-frcnn authors");

	GST_DEBUG_CATEGORY_INIT(gst_frcnn_shape_src_debug, "frcnnshapesrc", 0,
				"Synthetic shapes source");
}

static void gst_frcnn_shape_src_init(GstFrcnnShapeSrc *self)
{
	self->state = new GstFrcnnShapeSrcState();
	gst_video_info_init(&self->state->info);

	gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
	gst_base_src_set_live(GST_BASE_SRC(self), DEFAULT_PROP_IS_LIVE);
	gst_pad_add_probe(GST_BASE_SRC_PAD(self), GST_PAD_PROBE_TYPE_BUFFER,
			  gst_frcnn_shape_src_write_ground_truth, self, nullptr);
}

static void gst_frcnn_shape_src_finalize(GObject *object)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(object);

	delete self->state;

	G_OBJECT_CLASS(gst_frcnn_shape_src_parent_class)->finalize(object);
}

static void gst_frcnn_shape_src_set_property(GObject *object, guint prop_id, const GValue *value,
					     GParamSpec *pspec)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(object);
	GstFrcnnShapeSrcState *state = self->state;

	/* The video is drawn from them as it starts (and at a new size): set while it runs, they
	 * would change it at the next caps only. Checked under the object lock they are stored
	 * under, so that a start cannot come in between. */
	GST_OBJECT_LOCK(self);
	const bool running = frcnn::gst::element_running_locked(GST_ELEMENT(self));
	if (!running) {
		switch (prop_id) {
		case PROP_IS_LIVE:
			/* basesrc's, which takes the lock itself: set below, after the unlock (a
			 * start on another thread in between would see the new value). */
			break;
		case PROP_SEED:
			state->seed = g_value_get_uint64(value);
			break;
		case PROP_MIN_OBJECTS:
			state->min_objects = g_value_get_uint(value);
			break;
		case PROP_MAX_OBJECTS:
			state->max_objects = g_value_get_uint(value);
			break;
		case PROP_SCENE_FRAMES:
			state->scene_frames = g_value_get_uint(value);
			break;
		case PROP_GROUND_TRUTH: {
			const gchar *path = g_value_get_string(value);
			state->ground_truth = path ? path : "";
			break;
		}
		default:
			G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
			break;
		}
	}
	GST_OBJECT_UNLOCK(self);
	if (!running) {
		if (prop_id == PROP_IS_LIVE)
			gst_base_src_set_live(GST_BASE_SRC(self), g_value_get_boolean(value));
		g_object_notify_by_pspec(object, pspec);
		return;
	}

	GValue current = G_VALUE_INIT;
	g_value_init(&current, G_PARAM_SPEC_VALUE_TYPE(pspec));
	gst_frcnn_shape_src_get_property(object, prop_id, &current, pspec);
	const bool changed = G_VALUE_HOLDS_STRING(value)
				     ? !frcnn::gst::same_text(g_value_get_string(value), g_value_get_string(&current))
				     : g_param_values_cmp(pspec, value, &current) != 0;
	g_value_unset(&current);
	if (changed) {
		gchar *text = g_strdup_value_contents(value);
		frcnn::gst::warn_ready_only(GST_ELEMENT(self), g_param_spec_get_name(pspec),
					    "the video goes on as it started", text);
		g_free(text);
	}
}

static void gst_frcnn_shape_src_get_property(GObject *object, guint prop_id, GValue *value,
					     GParamSpec *pspec)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(object);
	GstFrcnnShapeSrcState *state = self->state;

	if (prop_id == PROP_IS_LIVE) {
		g_value_set_boolean(value, gst_base_src_is_live(GST_BASE_SRC(self)));
		return;
	}

	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
	switch (prop_id) {
	case PROP_SEED:
		g_value_set_uint64(value, state->seed);
		break;
	case PROP_MIN_OBJECTS:
		g_value_set_uint(value, state->min_objects);
		break;
	case PROP_MAX_OBJECTS:
		g_value_set_uint(value, state->max_objects);
		break;
	case PROP_SCENE_FRAMES:
		g_value_set_uint(value, state->scene_frames);
		break;
	case PROP_GROUND_TRUTH:
		g_value_set_string(value, state->ground_truth.c_str());
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		break;
	}
}

static GstCaps *gst_frcnn_shape_src_fixate(GstBaseSrc *bsrc, GstCaps *caps)
{
	/* truncate() leaves single-structure caps as they are, writable or not. */
	caps = gst_caps_make_writable(gst_caps_truncate(caps));
	GstStructure *s = gst_caps_get_structure(caps, 0);

	gst_structure_fixate_field_nearest_int(s, "width", DEFAULT_WIDTH);
	gst_structure_fixate_field_nearest_int(s, "height", DEFAULT_HEIGHT);
	gst_structure_fixate_field_nearest_fraction(s, "framerate", DEFAULT_FPS_N, DEFAULT_FPS_D);

	return GST_BASE_SRC_CLASS(gst_frcnn_shape_src_parent_class)->fixate(bsrc, caps);
}

static gboolean gst_frcnn_shape_src_set_caps(GstBaseSrc *bsrc, GstCaps *caps)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(bsrc);
	GstFrcnnShapeSrcState *state = self->state;

	GstVideoInfo info;
	if (!gst_video_info_from_caps(&info, caps) || GST_VIDEO_INFO_FPS_N(&info) <= 0) {
		GST_WARNING_OBJECT(self, "unusable caps %" GST_PTR_FORMAT, caps);
		return FALSE;
	}

	frcnn::ShapesOptions options;
	options.width = GST_VIDEO_INFO_WIDTH(&info);
	options.height = GST_VIDEO_INFO_HEIGHT(&info);
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		options.seed = state->seed;
		options.min_objects = static_cast<int>(state->min_objects);
		options.max_objects = static_cast<int>(state->max_objects);
		options.scene_frames = static_cast<int>(state->scene_frames);
	}
	try {
		state->generator = std::make_unique<frcnn::ShapesGenerator>(options);
	} catch (const frcnn::Error &e) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("%s", e.what()),
				  ("ShapesGenerator() failed for caps %" GST_PTR_FORMAT, caps));
		return FALSE;
	}
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		/* A new frame rate mid-stream: the next frame follows the last one's timing. */
		if (GST_VIDEO_INFO_FPS_N(&state->info) > 0 &&
		    (GST_VIDEO_INFO_FPS_N(&state->info) != GST_VIDEO_INFO_FPS_N(&info) ||
		     GST_VIDEO_INFO_FPS_D(&state->info) != GST_VIDEO_INFO_FPS_D(&info))) {
			state->time_base = frame_pts(*state, state->frame);
			state->frame_base = state->frame;
		}
		state->info = info;
	}
	gst_base_src_set_blocksize(bsrc, static_cast<guint>(GST_VIDEO_INFO_SIZE(&info)));
	GST_DEBUG_OBJECT(self, "drawing %dx%d at %d/%d, seed %" G_GUINT64_FORMAT, options.width,
			 options.height, GST_VIDEO_INFO_FPS_N(&info), GST_VIDEO_INFO_FPS_D(&info),
			 options.seed);
	return TRUE;
}

static gboolean gst_frcnn_shape_src_start(GstBaseSrc *bsrc)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(bsrc);
	GstFrcnnShapeSrcState *state = self->state;

	std::string path;
	guint min_objects, max_objects;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		path = state->ground_truth;
		min_objects = state->min_objects;
		max_objects = state->max_objects;
	}
	/* Both change only in READY: refused here, the state change fails at once (found at the
	 * negotiation, the error came from the streaming thread, and an application could wait for
	 * the preroll that never came). */
	if (min_objects > max_objects) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
				  ("'min-objects' (%u) is larger than 'max-objects' (%u).", min_objects, max_objects),
				  (nullptr));
		return FALSE;
	}

	state->frame = 0;
	state->frame_base = 0;
	state->time_base = 0;
	state->truth_pending = false;
	state->truth_failed = false;
	state->truth_path = path;
	state->truth_file.reset();
	if (path.empty())
		return TRUE;

	state->truth_file.reset(g_fopen(path.c_str(), "w"));
	if (!state->truth_file) {
		const int err = errno;
		GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE,
				  ("Could not open '%s' for writing the ground truth: %s. Set 'ground-truth' "
				   "to a file in a writable folder, or leave it empty for none.",
				   path.c_str(), g_strerror(err)),
				  ("fopen() failed: %s", g_strerror(err)));
		return FALSE;
	}
	return TRUE;
}

static gboolean gst_frcnn_shape_src_stop(GstBaseSrc *bsrc)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(bsrc);
	GstFrcnnShapeSrcState *state = self->state;

	state->generator.reset();
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		gst_video_info_init(&state->info);
	}
	if (state->truth_file) {
		FILE *file = state->truth_file.release();
		if (fclose(file) != 0) {
			const int err = errno;
			GST_ELEMENT_ERROR(self, RESOURCE, CLOSE,
					  ("Could not finish writing the ground truth to '%s': %s.",
					   state->truth_path.c_str(), g_strerror(err)),
					  ("fclose() failed: %s", g_strerror(err)));
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean gst_frcnn_shape_src_is_seekable(GstBaseSrc *bsrc)
{
	/* Any frame can be drawn directly; a live source plays what is now. */
	return !gst_base_src_is_live(bsrc);
}

/* Whether `event` is a seek the source cannot do: refused before GstBaseSrc flushes the pipeline
 * for it, whether it comes through the pad (event) or to the element (send_event). */
static bool refused_seek(GstElement *element, GstEvent *event)
{
	if (GST_EVENT_TYPE(event) != GST_EVENT_SEEK)
		return false;
	gdouble rate;
	gst_event_parse_seek(event, &rate, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
	if (rate >= 0)
		return false;
	GST_WARNING_OBJECT(element, "reverse playback is not supported");
	return true;
}

static gboolean gst_frcnn_shape_src_event(GstBaseSrc *bsrc, GstEvent *event)
{
	if (refused_seek(GST_ELEMENT(bsrc), event))
		return FALSE;
	return GST_BASE_SRC_CLASS(gst_frcnn_shape_src_parent_class)->event(bsrc, event);
}

static gboolean gst_frcnn_shape_src_send_event(GstElement *element, GstEvent *event)
{
	if (refused_seek(element, event)) {
		gst_event_unref(event);
		return FALSE;
	}
	return GST_ELEMENT_CLASS(gst_frcnn_shape_src_parent_class)->send_event(element, event);
}

static gboolean gst_frcnn_shape_src_do_seek(GstBaseSrc *bsrc, GstSegment *segment)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(bsrc);
	GstFrcnnShapeSrcState *state = self->state;

	if (segment->rate < 0) {
		GST_WARNING_OBJECT(self, "reverse playback is not supported");
		return FALSE;
	}
	segment->time = segment->start;
	const gint fps_n = GST_VIDEO_INFO_FPS_N(&state->info);
	const gint fps_d = GST_VIDEO_INFO_FPS_D(&state->info);
	/* Before caps are set (the initial segment) there is no frame rate: start at frame 0.
	 * Else the frame shown at the position: the last whose pts is not after it (pts are
	 * rounded down, so the quotient alone can fall one frame short of an exact pts). */
	state->frame = 0;
	state->frame_base = 0;
	state->time_base = 0;
	if (fps_n > 0) {
		state->frame = gst_util_uint64_scale(segment->position, fps_n,
						      static_cast<guint64>(fps_d) * GST_SECOND);
		while (frame_pts(*state, state->frame + 1) <= segment->position)
			state->frame++;
	}
	return TRUE;
}


static gboolean gst_frcnn_shape_src_query(GstBaseSrc *bsrc, GstQuery *query)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(bsrc);
	GstFrcnnShapeSrcState *state = self->state;

	if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
		/* Live: a frame is ready one frame duration after its timestamp. Frames are drawn
		 * when asked for, none waits in the element: no upper bound (as videotestsrc), so
		 * that elements downstream may add latency without queues in between. */
		if (!gst_base_src_is_live(bsrc))
			return GST_BASE_SRC_CLASS(gst_frcnn_shape_src_parent_class)->query(bsrc, query);
		GST_OBJECT_LOCK(self);
		const bool negotiated = GST_VIDEO_INFO_FPS_N(&state->info) > 0;
		const GstClockTime latency = negotiated ? frame_time(state->info, 1) : 0;
		GST_OBJECT_UNLOCK(self);
		if (!negotiated)
			return FALSE;
		gst_query_set_latency(query, TRUE, latency, GST_CLOCK_TIME_NONE);
		return TRUE;
	}
	return GST_BASE_SRC_CLASS(gst_frcnn_shape_src_parent_class)->query(bsrc, query);
}

static void gst_frcnn_shape_src_get_times(GstBaseSrc *bsrc, GstBuffer *buffer, GstClockTime *start,
					  GstClockTime *end)
{
	*start = GST_CLOCK_TIME_NONE;
	*end = GST_CLOCK_TIME_NONE;
	/* Only a live source waits for the clock: it then plays at the frame rate. */
	if (!gst_base_src_is_live(bsrc))
		return;
	const GstClockTime pts = GST_BUFFER_PTS(buffer);
	if (!GST_CLOCK_TIME_IS_VALID(pts))
		return;
	*start = pts;
	if (GST_BUFFER_DURATION_IS_VALID(buffer))
		*end = pts + GST_BUFFER_DURATION(buffer);
}

/* Rounded as frcnnjson rounds its boxes, so that both files read alike. */
static double rounded(double value)
{
	return std::round(value * 100.0) / 100.0;
}

static bool write_ground_truth(FILE *file, guint64 frame, GstClockTime pts, int width, int height,
			       const std::vector<frcnn::ShapeObject> &objects)
{
	nlohmann::ordered_json line;
	line["frame"] = frame;
	if (GST_CLOCK_TIME_IS_VALID(pts))
		line["pts"] = pts;
	else
		line["pts"] = nullptr;
	line["width"] = width;
	line["height"] = height;
	nlohmann::ordered_json detections = nlohmann::ordered_json::array();
	for (const frcnn::ShapeObject &o : objects) {
		nlohmann::ordered_json entry;
		entry["box"] = { rounded(o.x1), rounded(o.y1), rounded(o.x2), rounded(o.y2) };
		entry["label"] = o.name;
		entry["label_id"] = o.label;
		entry["score"] = 1.0;
		detections.push_back(std::move(entry));
	}
	line["detections"] = std::move(detections);
	return fprintf(file, "%s\n", line.dump().c_str()) >= 0 && fflush(file) == 0;
}

static GstFlowReturn gst_frcnn_shape_src_fill(GstPushSrc *psrc, GstBuffer *buffer)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(psrc);
	GstFrcnnShapeSrcState *state = self->state;
	GstBaseSrc *bsrc = GST_BASE_SRC(psrc);

	if (!state->generator) {
		GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, (nullptr),
				  ("asked for a frame before caps were negotiated"));
		return GST_FLOW_NOT_NEGOTIATED;
	}
	if (state->truth_failed)
		return GST_FLOW_ERROR;

	const guint64 frame = state->frame;
	const GstClockTime pts = frame_pts(*state, frame);
	const GstClockTime next = frame_pts(*state, frame + 1);
	const GstClockTime stop = bsrc->segment.stop;
	if (GST_CLOCK_TIME_IS_VALID(stop) && pts >= stop)
		return GST_FLOW_EOS;

	GstVideoFrame vframe;
	if (!gst_video_frame_map(&vframe, &state->info, buffer, GST_MAP_WRITE)) {
		GST_ELEMENT_ERROR(self, RESOURCE, WRITE, (nullptr),
				  ("could not map a buffer of %" G_GSIZE_FORMAT " bytes for writing",
				   gst_buffer_get_size(buffer)));
		return GST_FLOW_ERROR;
	}
	std::vector<frcnn::ShapeObject> objects;
	try {
		objects = state->generator->render(
			frame, static_cast<uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 0)),
			static_cast<std::size_t>(GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 0)));
	} catch (const std::exception &e) {
		gst_video_frame_unmap(&vframe);
		GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("Could not draw frame %" G_GUINT64_FORMAT ".", frame),
				  ("render() failed: %s", e.what()));
		return GST_FLOW_ERROR;
	}
	gst_video_frame_unmap(&vframe);

	GST_BUFFER_PTS(buffer) = pts;
	GST_BUFFER_DTS(buffer) = GST_CLOCK_TIME_NONE;
	GST_BUFFER_DURATION(buffer) = next - pts;
	GST_BUFFER_OFFSET(buffer) = frame;
	GST_BUFFER_OFFSET_END(buffer) = frame + 1;

	if (state->truth_file) {
		state->truth_frame = frame;
		state->truth_objects = std::move(objects);
		state->truth_pending = true;
	}

	state->frame = frame + 1;
	return GST_FLOW_OK;
}

/*
 * Writes the true boxes of a frame as it leaves, with the pts it leaves with (a live source's
 * frames are timed by the clock from the first one on), so that each line pairs with the
 * detections of that buffer; a frame a flush drops before it leaves is not written.
 */
static GstPadProbeReturn gst_frcnn_shape_src_write_ground_truth(GstPad *, GstPadProbeInfo *info,
								gpointer user_data)
{
	GstFrcnnShapeSrc *self = GST_FRCNN_SHAPE_SRC(user_data);
	GstFrcnnShapeSrcState *state = self->state;
	GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER(info);
	if (!state->truth_file || !state->truth_pending || GST_BUFFER_OFFSET(buffer) != state->truth_frame)
		return GST_PAD_PROBE_OK;
	state->truth_pending = false;
	if (!write_ground_truth(state->truth_file.get(), state->truth_frame, GST_BUFFER_PTS(buffer),
				GST_VIDEO_INFO_WIDTH(&state->info), GST_VIDEO_INFO_HEIGHT(&state->info),
				state->truth_objects)) {
		const int err = errno;
		const std::string advice = frcnn::gst::write_failure_advice(err, "ground-truth");
		GST_ELEMENT_ERROR(self, RESOURCE, WRITE,
				  ("Could not write the ground truth to '%s': %s. %s", state->truth_path.c_str(),
				   g_strerror(err), advice.c_str()),
				  ("fprintf() failed: %s", g_strerror(err)));
		/* The frame goes on; the stream stops at the next one (fill). */
		state->truth_failed = true;
	}
	return GST_PAD_PROBE_OK;
}

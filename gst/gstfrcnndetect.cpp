// SPDX-License-Identifier: BSD-3-Clause
/**
 * SECTION:element-frcnndetect
 * @title: frcnndetect
 *
 * Runs a torchvision Faster R-CNN detector on video frames and attaches every detection to the
 * frame as a #GstVideoRegionOfInterestMeta (roi_type = label name, x/y/w/h in pixels) with a
 * "detection" parameter structure holding label_id, label, confidence and the box normalised to
 * 0..1.
 *
 * Frames are queued and run in batches on a worker thread of the element's own, and pushed on
 * by the source pad's task, so upstream keeps decoding while a batch runs and a batch's frames
 * can wait for their time at a synchronised sink while the next batch runs. On the CPU the model reads each frame in place; with a CUDA
 * device each frame to run is copied on to the GPU as it arrives, so that its batch starts with
 * the frames there. Buffers leave in the order they came, with their timestamps. With #GstFrcnnDetect:qos, frames that downstream reports as
 * already late pass through without detection.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=street.mp4 ! decodebin ! frcnndetect weights=coco ! \
 *     frcnnoverlay ! videoconvert ! autovideosink
 * ]|
 */

#include "gstfrcnndetect.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <pthread.h>

#include <gst/video/video.h>

#include "frcnn/config.h"
#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/labels.h"
#include "frcnn/weights.h"

#include "checkpoint_info.h"
#include "colorimetry.h"
#include "frame_memory.h"
#include "class_filters.h"
#include "meta.h"
#include "region.h"
#include "run_queue.h"

GST_DEBUG_CATEGORY_STATIC(gst_frcnn_detect_debug);
#define GST_CAT_DEFAULT gst_frcnn_detect_debug

enum {
	PROP_0,
	PROP_MODEL,
	PROP_WEIGHTS,
	PROP_NUM_CLASSES,
	PROP_LABELS,
	PROP_DEVICE,
	PROP_PRECISION,
	PROP_INT8_CALIBRATION,
	PROP_INT8_CALIBRATION_FRAMES,
	PROP_CHANNELS_LAST,
	PROP_CPU_CONVOLUTIONS,
	PROP_BATCH_SIZE,
	PROP_BATCH_TIMEOUT,
	PROP_INTERVAL,
	PROP_THRESHOLD,
	PROP_NMS_THRESHOLD,
	PROP_MIN_SIZE,
	PROP_MAX_SIZE,
	PROP_MAX_DETECTIONS,
	PROP_CLASSES,
	PROP_QOS,
	PROP_THREADS,
	PROP_MODEL_INSTANCE_ID,
	PROP_REGION,
	PROP_CLASS_THRESHOLDS,
	PROP_INFERENCE_REGION,
	PROP_OBJECT_CLASS,
	PROP_OBJECT_MIN_SIZE,
	PROP_SQUARE_PIXELS,
	PROP_TONE_MAPPING,
	PROP_MIN_BOX_SIZE,
	PROP_MAX_BOX_SIZE,
	PROP_STATS,
};

#define DEFAULT_PROP_MODEL "fasterrcnn_resnet50_fpn"
#define DEFAULT_PROP_WEIGHTS nullptr
#define DEFAULT_PROP_NUM_CLASSES 0
#define DEFAULT_PROP_LABELS nullptr
#define DEFAULT_PROP_DEVICE "cpu"
#define DEFAULT_PROP_PRECISION GST_FRCNN_PRECISION_FP32
#define DEFAULT_PROP_INT8_CALIBRATION nullptr
#define DEFAULT_PROP_INT8_CALIBRATION_FRAMES 16
#define DEFAULT_PROP_CHANNELS_LAST FALSE
#define DEFAULT_PROP_CPU_CONVOLUTIONS GST_FRCNN_CPU_CONVOLUTIONS_AUTO
#define DEFAULT_PROP_BATCH_SIZE 1
#define DEFAULT_PROP_BATCH_TIMEOUT 100
#define DEFAULT_PROP_INTERVAL 1
#define DEFAULT_PROP_THRESHOLD 0.5
#define DEFAULT_PROP_NMS_THRESHOLD 0.5
#define DEFAULT_PROP_MIN_SIZE 0
#define DEFAULT_PROP_MAX_SIZE 0
#define DEFAULT_PROP_MAX_DETECTIONS 100
#define DEFAULT_PROP_CLASSES nullptr
#define DEFAULT_PROP_QOS FALSE
#define DEFAULT_PROP_THREADS 0
#define DEFAULT_PROP_MODEL_INSTANCE_ID nullptr
#define DEFAULT_PROP_REGION nullptr
#define DEFAULT_PROP_CLASS_THRESHOLDS nullptr
#define DEFAULT_PROP_INFERENCE_REGION GST_FRCNN_INFERENCE_REGION_FULL_FRAME
#define DEFAULT_PROP_OBJECT_CLASS nullptr
#define DEFAULT_PROP_OBJECT_MIN_SIZE 0
#define DEFAULT_PROP_SQUARE_PIXELS TRUE
#define DEFAULT_PROP_TONE_MAPPING TRUE
#define DEFAULT_PROP_MIN_BOX_SIZE 0
#define DEFAULT_PROP_MAX_BOX_SIZE 0
#define MAX_THREADS 1024

#define MAX_BATCH_SIZE 64

typedef enum {
	GST_FRCNN_PRECISION_FP32,
	GST_FRCNN_PRECISION_FP16,
	GST_FRCNN_PRECISION_BF16,
	GST_FRCNN_PRECISION_INT8,
} GstFrcnnPrecision;

#define GST_TYPE_FRCNN_PRECISION (gst_frcnn_precision_get_type())
static GType gst_frcnn_precision_get_type(void)
{
	static const GEnumValue values[] = {
		{ GST_FRCNN_PRECISION_FP32, "32-bit floating point", "fp32" },
		{ GST_FRCNN_PRECISION_FP16, "16-bit floating point (CUDA devices)", "fp16" },
		{ GST_FRCNN_PRECISION_BF16,
		  "bfloat16 (CPUs with AVX-512 BF16 or AMX: faster than fp32 there, the same detections up to rounding)",
		  "bf16" },
		{ GST_FRCNN_PRECISION_INT8,
		  "8-bit integers (CPU: convolutions and box head in 8 bits on ranges calibrated on the first "
		  "frames; detections close to fp32's)",
		  "int8" },
		{ 0, nullptr, nullptr },
	};
	static gsize type = 0;
	if (g_once_init_enter(&type))
		g_once_init_leave(&type, g_enum_register_static("GstFrcnnPrecision", values));
	return type;
}

// In the order of frcnn::CpuConvolutions, which the settings are cast to.
typedef enum {
	GST_FRCNN_CPU_CONVOLUTIONS_AUTO,
	GST_FRCNN_CPU_CONVOLUTIONS_LIBTORCH,
	GST_FRCNN_CPU_CONVOLUTIONS_ONEDNN,
} GstFrcnnCpuConvolutions;

#define GST_TYPE_FRCNN_CPU_CONVOLUTIONS (gst_frcnn_cpu_convolutions_get_type())
static GType gst_frcnn_cpu_convolutions_get_type(void)
{
	static const GEnumValue values[] = {
		{ GST_FRCNN_CPU_CONVOLUTIONS_AUTO,
		  "oneDNN where the plugin was built with it and it is faster "
		  "(fasterrcnn_resnet50_fpn, its v2 and the MobileNetV3 models; tiny on AVX-512), else LibTorch",
		  "auto" },
		{ GST_FRCNN_CPU_CONVOLUTIONS_LIBTORCH,
		  "LibTorch's operators: torchvision's arithmetic, the same numbers", "libtorch" },
		{ GST_FRCNN_CPU_CONVOLUTIONS_ONEDNN,
		  "oneDNN with batch norms folded, activations and additions fused and Winograd 3x3 "
		  "(AVX-512), for every model: boxes within a fraction of a pixel of torchvision's",
		  "onednn" },
		{ 0, nullptr, nullptr },
	};
	static gsize type = 0;
	if (g_once_init_enter(&type))
		g_once_init_leave(&type, g_enum_register_static("GstFrcnnCpuConvolutions", values));
	return type;
}

// What the detector runs on in each frame; the names are Intel DL Streamer's.
typedef enum {
	GST_FRCNN_INFERENCE_REGION_FULL_FRAME,
	GST_FRCNN_INFERENCE_REGION_ROI_LIST,
} GstFrcnnInferenceRegion;

#define GST_TYPE_FRCNN_INFERENCE_REGION (gst_frcnn_inference_region_get_type())
static GType gst_frcnn_inference_region_get_type(void)
{
	static const GEnumValue values[] = {
		{ GST_FRCNN_INFERENCE_REGION_FULL_FRAME,
		  "the whole frame, or its 'region' where one is set", "full-frame" },
		{ GST_FRCNN_INFERENCE_REGION_ROI_LIST,
		  "each region of interest attached upstream (of an 'object-class'), as an image "
		  "of its own; the detections name it as their parent", "roi-list" },
		{ 0, nullptr, nullptr },
	};
	static gsize type = 0;
	if (g_once_init_enter(&type))
		g_once_init_leave(&type, g_enum_register_static("GstFrcnnInferenceRegion", values));
	return type;
}

#define FRCNN_DETECT_CAPS \
	GST_VIDEO_CAPS_MAKE(FRCNN_VIDEO_FORMATS)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
	"sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRCNN_DETECT_CAPS));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
	"src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRCNN_DETECT_CAPS));

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
	std::string model = DEFAULT_PROP_MODEL;
	bool model_set = false; // the user chose a model (a weights preset must then agree)
	std::string weights;
	guint num_classes = DEFAULT_PROP_NUM_CLASSES;
	std::string labels;
	std::string device = DEFAULT_PROP_DEVICE;
	GstFrcnnPrecision precision = DEFAULT_PROP_PRECISION;
	std::string int8_calibration;
	guint int8_calibration_frames = DEFAULT_PROP_INT8_CALIBRATION_FRAMES;
	gboolean channels_last = DEFAULT_PROP_CHANNELS_LAST;
	GstFrcnnCpuConvolutions cpu_convolutions = DEFAULT_PROP_CPU_CONVOLUTIONS;
	guint batch_size = DEFAULT_PROP_BATCH_SIZE;
	guint batch_timeout = DEFAULT_PROP_BATCH_TIMEOUT;
	guint interval = DEFAULT_PROP_INTERVAL;
	gdouble threshold = DEFAULT_PROP_THRESHOLD;
	gdouble nms_threshold = DEFAULT_PROP_NMS_THRESHOLD;
	guint min_size = DEFAULT_PROP_MIN_SIZE;
	guint max_size = DEFAULT_PROP_MAX_SIZE;
	guint max_detections = DEFAULT_PROP_MAX_DETECTIONS;
	std::string classes;
	gboolean qos = DEFAULT_PROP_QOS;
	guint threads = DEFAULT_PROP_THREADS;
	std::string model_instance_id;
	std::string region;
	std::string class_thresholds;
	GstFrcnnInferenceRegion inference_region = DEFAULT_PROP_INFERENCE_REGION;
	std::string object_class;
	guint object_min_size = DEFAULT_PROP_OBJECT_MIN_SIZE;
	gboolean square_pixels = DEFAULT_PROP_SQUARE_PIXELS;
	gboolean tone_mapping = DEFAULT_PROP_TONE_MAPPING;
	guint min_box_size = DEFAULT_PROP_MIN_BOX_SIZE;
	guint max_box_size = DEFAULT_PROP_MAX_BOX_SIZE;
};

// The settings that may change while playing; the worker applies them between batches.
struct RuntimeSettings {
	gdouble threshold = -1;
	gdouble nms_threshold = -1;
	guint min_size = 0;
	guint max_size = 0;
	guint max_detections = 0;
	std::string classes;
	std::string class_thresholds;
	guint min_box_size = 0;
	guint max_box_size = 0;
};

RuntimeSettings runtime_settings(const Settings &settings)
{
	RuntimeSettings runtime;
	runtime.threshold = settings.threshold;
	runtime.nms_threshold = settings.nms_threshold;
	runtime.min_size = settings.min_size;
	runtime.max_size = settings.max_size;
	runtime.max_detections = settings.max_detections;
	runtime.classes = settings.classes;
	runtime.class_thresholds = settings.class_thresholds;
	runtime.min_box_size = settings.min_box_size;
	runtime.max_box_size = settings.max_box_size;
	return runtime;
}

// A rectangle of a frame that the detector runs on as an image of its own: the whole frame, the
// `region`, or one of the regions of interest attached upstream (inference-region=roi-list).
struct ItemImage {
	frcnn::HeldFrame pixels;
	int x = 0, y = 0;    // where it starts in the frame
	gint parent_id = -1; // the id of the region of interest it is, -1 for none
};

// One entry of the queue between the sink pad and the worker: a buffer with the video info of
// the caps it arrived under, or a serialized event. Owns its reference. A frame to run also
// holds the pixels of its images, taken on the sink pad's thread as it arrived: the frame
// mapped on the CPU, copies on the device with CUDA (so that the worker's batch starts with
// its frames there).
struct Item {
	GstBuffer *buffer = nullptr;
	GstEvent *event = nullptr;
	GstVideoInfo info;
	bool infer = false;
	// Why a frame is not run ("interval", "late", "gap"): said on it as it leaves.
	const char *skipped = nullptr;
	Clock::time_point arrival;
	std::vector<ItemImage> images; // none for a frame without regions of interest (roi-list)
	// Where the buffer falls in its segment, for QoS (GST_CLOCK_TIME_NONE when unknown).
	GstClockTime running_time = GST_CLOCK_TIME_NONE;
	GstClockTime stream_time = GST_CLOCK_TIME_NONE;
	// Neither buffer nor event: where the worker's batch failed, the stream stops with this flow
	// (after the frames run before it have gone).
	GstFlowReturn failure = GST_FLOW_OK;

	Item(GstBuffer *buf, const GstVideoInfo &vinfo, bool run)
		: buffer(buf), info(vinfo), infer(run), arrival(Clock::now())
	{
	}
	explicit Item(GstEvent *ev)
		: event(ev), arrival(Clock::now())
	{
		gst_video_info_init(&info);
	}
	explicit Item(GstFlowReturn flow)
		: arrival(Clock::now()), failure(flow)
	{
		gst_video_info_init(&info);
	}
	Item(Item &&other) noexcept
		: buffer(std::exchange(other.buffer, nullptr)),
		  event(std::exchange(other.event, nullptr)), info(other.info),
		  infer(other.infer), skipped(other.skipped), arrival(other.arrival), images(std::move(other.images)),
		  running_time(other.running_time), stream_time(other.stream_time), failure(other.failure)
	{
	}
	Item &operator=(Item &&other) noexcept
	{
		if (this != &other) {
			release();
			buffer = std::exchange(other.buffer, nullptr);
			event = std::exchange(other.event, nullptr);
			info = other.info;
			infer = other.infer;
			skipped = other.skipped;
			arrival = other.arrival;
			images = std::move(other.images);
			running_time = other.running_time;
			stream_time = other.stream_time;
			failure = other.failure;
		}
		return *this;
	}
	Item(const Item &) = delete;
	Item &operator=(const Item &) = delete;
	~Item() { release(); }

	void release()
	{
		if (buffer)
			gst_buffer_unref(std::exchange(buffer, nullptr));
		if (event)
			gst_event_unref(std::exchange(event, nullptr));
		images.clear();
	}
};

using frcnn::gst::to_pixel_format;

// Where rectangles of the frames may start: on their chroma samples, as crop_frame() requires.
frcnn::gst::StartGrid start_grid(const GstVideoInfo &info)
{
	frcnn::PixelFormat format;
	if (!to_pixel_format(GST_VIDEO_INFO_FORMAT(&info), &format))
		return {};
	/* Interlaced 4:2:0 frames' chroma by field: all of a stream's frames as such, those of a
	 * mixed one too (its progressive frames take the coarser grid as well). */
	return { frcnn::rectangle_column_step(format),
		 frcnn::rectangle_row_step(format, GST_VIDEO_INFO_IS_INTERLACED(&info)) };
}

// The library's matrix for a colorimetry's: SMPTE 240M's is nearly BT.709's and FCC's nearly
// BT.601's; an unknown one is taken as BT.601.
frcnn::YuvMatrix yuv_matrix(GstVideoColorMatrix matrix)
{
	switch (matrix) {
	case GST_VIDEO_COLOR_MATRIX_BT709:
	case GST_VIDEO_COLOR_MATRIX_SMPTE240M: return frcnn::YuvMatrix::BT709;
	case GST_VIDEO_COLOR_MATRIX_BT2020: return frcnn::YuvMatrix::BT2020;
	default: return frcnn::YuvMatrix::BT601;
	}
}

// The pixel shape of a stream's frames (GStreamer's 1/1 for caps without one; a ratio that is
// not positive is taken as square).
frcnn::PixelAspectRatio pixel_aspect_ratio(const GstVideoInfo &info)
{
	if (GST_VIDEO_INFO_PAR_N(&info) < 1 || GST_VIDEO_INFO_PAR_D(&info) < 1)
		return {};
	return { GST_VIDEO_INFO_PAR_N(&info), GST_VIDEO_INFO_PAR_D(&info) };
}

/* The frame as the library reads it; with `square_pixels`, its pixels' shape as the caps say
 * (else square: the stored pixels as they are); with `tone_mapping`, HDR video as HDR and
 * wide-gamut video in its primaries (else as if it were SDR in BT.709's). */
frcnn::FrameView frame_view(const GstVideoFrame *frame, bool square_pixels, bool tone_mapping)
{
	frcnn::FrameView view;
	to_pixel_format(GST_VIDEO_FRAME_FORMAT(frame), &view.format);
	/* The colours as the caps' colorimetry says (GStreamer gives caps without one its default
	 * for the size: BT.709 for HD), as videoconvert reads them. */
	view.matrix = yuv_matrix(frame->info.colorimetry.matrix);
	view.full_range = frcnn::gst::full_range(frame->info.colorimetry);
	view.width = GST_VIDEO_FRAME_WIDTH(frame);
	view.height = GST_VIDEO_FRAME_HEIGHT(frame);
	/* Fields woven into the frame: every frame of interlace-mode=interleaved, those of a mixed
	 * stream that carry the interlaced flag. */
	view.interlaced = GST_VIDEO_FRAME_IS_INTERLACED(frame);
	if (square_pixels)
		view.pixel_aspect_ratio = pixel_aspect_ratio(frame->info);
	if (tone_mapping) {
		view.transfer = frcnn::gst::transfer_function(frame->info.colorimetry.transfer);
		view.primaries = frcnn::gst::colour_primaries(frame->info.colorimetry.primaries);
	}
	for (guint plane = 0; plane < GST_VIDEO_FRAME_N_PLANES(frame) && plane < 3; plane++) {
		view.planes[plane] = static_cast<const uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(frame, plane));
		view.strides[plane] = GST_VIDEO_FRAME_PLANE_STRIDE(frame, plane);
	}
	return view;
}

std::string preset_names()
{
	std::string names;
	for (const frcnn::WeightsPreset &preset : frcnn::weights_presets())
		names += (names.empty() ? "" : ", ") + preset.name;
	return names;
}

} // namespace

// A loaded model, the element's own or shared by the elements that give the same
// model-instance-id. Batches of the elements that share it wait for it in one queue: they run
// one at a time, each with its own element's thresholds and sizes, and batches of several
// elements with the same settings and frame size run together (see RunQueue).
struct LoadedModel {
	std::string settings;		// what it was loaded from (model_settings_text, with the model
					// and class count it took)
	// What its weights file told: the model its keys are of (empty when they do not tell) and
	// its class count (0 when it does not tell); an element sharing the model tells its own
	// model and class count from these, as it would from the file.
	std::string file_arch;
	int file_classes = 0;
	std::string weights; // its weights file (same_weights_text)
	std::unique_ptr<frcnn::Detector> detector;
	std::unique_ptr<frcnn::gst::RunQueue> runs; // runs batches on `detector`
	int num_classes = 0;
	int min_size = 0, max_size = 0; // the model's own image sizes

	// precision=int8 without a calibration yet: written by the runs, read by the elements'
	// threads. The images observed towards it, and why its file could not be written, until
	// an element posts that.
	std::atomic<bool> int8_calibrating{false};
	std::atomic<int> int8_frames_observed{0};
	int int8_frames_needed = 0;
	std::string int8_calibration_file;
	std::mutex int8_write_error_mutex;
	std::string int8_write_error;

	std::string take_int8_write_error()
	{
		std::lock_guard<std::mutex> lock(int8_write_error_mutex);
		return std::exchange(int8_write_error, std::string());
	}
};

// The model loaded under one model-instance-id, while an element holds it. `loading` is held
// while the id's model is looked up and loaded, so that elements starting together load it once.
struct SharedModel {
	std::timed_mutex loading;
	std::weak_ptr<LoadedModel> model;
};

// The model-instance-ids in use. `mutex` is held only to look an id up: loading one id's model
// (a download, say) never holds up an element under another id.
struct SharedModels {
	std::mutex mutex;
	std::map<std::string, std::shared_ptr<SharedModel>> by_id;

	// The entry of `id`, made if there is none. Entries that no element holds or waits for go.
	std::shared_ptr<SharedModel> entry(const std::string &id)
	{
		std::lock_guard<std::mutex> lock(mutex);
		for (auto it = by_id.begin(); it != by_id.end();) {
			/* Nobody else holds the entry, so nobody can take its lock meanwhile; taking it
			 * orders this read of `model` after the last load's write. */
			bool unused = false;
			if (it->first != id && it->second.use_count() == 1) {
				std::unique_lock<std::timed_mutex> idle(it->second->loading, std::try_to_lock);
				unused = idle.owns_lock() && it->second->model.expired();
			}
			if (unused)
				it = by_id.erase(it);
			else
				++it;
		}
		std::shared_ptr<SharedModel> &found = by_id[id];
		if (!found)
			found = std::make_shared<SharedModel>();
		return found;
	}
};

SharedModels &shared_models()
{
	// Never destroyed: elements may be finalized after static destructors have run.
	static SharedModels *models = new SharedModels;
	return *models;
}

// The class names of a model and the class filters of the settings by their ids.
struct ClassSetup {
	int num_classes = 0;
	std::vector<std::string> labels;
	std::set<int64_t> class_filter;
	std::map<int64_t, double> class_thresholds;
	// Set up while playing with a `classes` (or `class-thresholds`) that does not parse: the
	// element keeps the filter it has, as for such a value set while playing (warned about).
	bool keep_class_filter = false;
	bool keep_class_thresholds = false;
};

// What setting up a model gives the element: the model, and the class names and filters that
// depend on its classes.
struct ModelSetup : ClassSetup {
	std::shared_ptr<LoadedModel> model;
};

// Controls a model's set-up on a thread of its own (see gst_frcnn_detect_begin_setup).
struct SetupControl {
	// A stop: its download (or its wait for a shared model) gives up; a model it is loading
	// from a file is still kept for the next start.
	std::atomic<bool> stopped{ false };
	// Newer settings replaced it: it gives everything up, and registers and posts nothing.
	std::atomic<bool> superseded{ false };
	// A set-up either hands its result over or is superseded, not both: each decides under
	// `publishing`, and `published` tells that the result is (about to be) handed over.
	std::mutex publishing;
	bool published = false;

	bool gives_up() const { return stopped || superseded; }
};

// A set-up that newer settings replaced, until its thread ends.
struct SupersededSetup {
	std::shared_ptr<SetupControl> control;
	std::future<void> done;
};

// C++ members of the element, created in _init and deleted in _finalize.
/* Whether a queued event that is dropped (a flush, a stream downstream took no more of) must still
 * reach downstream before the next buffer: a sticky one upstream sent once (stream-start, caps,
 * tags), but the segment and EOS the drop ends. */
static bool outlives_its_frames(const GstEvent *event)
{
	return GST_EVENT_IS_STICKY(event) && GST_EVENT_TYPE(event) != GST_EVENT_SEGMENT &&
	       GST_EVENT_TYPE(event) != GST_EVENT_EOS;
}

struct GstFrcnnDetectState {
	// Protected by the object lock.
	Settings settings;
	// Bumped by every change that needs a new model (under the object lock, with the settings);
	// atomic, so that a frame that waits for the start's model sees it change without that lock.
	std::atomic<guint64> settings_generation{ 1 };
	// batch-size or interval changed: the chain function asks upstream to reconfigure, so that
	// it asks again how many buffers to keep (gst_frcnn_detect_ask_for_buffers).
	std::atomic<bool> held_buffers_changed{ false };

	// Owned by whoever runs: the state change thread while the pads are inactive, the worker
	// while they are active.
	// The chain function takes its own reference to `model` under `mutex`, and the worker
	// replaces it under `mutex` when weights changed while playing.
	std::shared_ptr<LoadedModel> model;
	guint64 detector_generation = 0;
	Settings loaded_settings; // what `model` was set up from
	// A model being set up on a thread of its own (gst_frcnn_detect_begin_setup): for weights
	// changed while playing, or at a start whose weights download. The settings generation it
	// is for (kept after a refusal, so that it is not retried).
	std::future<std::optional<ModelSetup>> reload;
	// Ready once the set-up's thread has posted its last message.
	std::future<void> reload_task;
	guint64 reload_generation = 0;
	Settings reload_settings;
	// The set-up's own control (a stop gives its download up). Each set-up has its own: one a
	// stop gave up stays given up, also when the element starts again before it has noticed.
	std::shared_ptr<SetupControl> setup_control;
	// Set-ups that newer settings replaced, until their threads end: a stop waits for them.
	std::vector<SupersededSetup> superseded_setups;
	std::vector<std::string> labels;
	std::set<int64_t> class_filter;
	std::map<int64_t, double> class_thresholds; // `class-thresholds`, by class id
	RuntimeSettings applied;
	// The `region` in use, and the text it was parsed from: set at start, then taken up by the
	// sink pad's thread as frames arrive.
	std::optional<frcnn::gst::Region> region;
	std::string region_text;
	// `inference-region` as it was at start: a change while playing waits for the next start
	// (set_property warns of it), as start checked it against `region`. Under the object lock
	// (set_property and the chain function read it on their threads).
	GstFrcnnInferenceRegion inference_region = DEFAULT_PROP_INFERENCE_REGION;
	bool threads_set = false;	// the worker set its CPU thread count from `threads`
	gint64 threads_failed = -1;	// a `threads` that could not be set (warned about once)
	int logged_threads = 0;		// the count last logged

	// The worker runs the batches on a thread of its own, and the source pad's task (the pusher)
	// pushes them: a batch's frames may wait for their time at a synchronised sink while the
	// next batch runs. Started and stopped with the source pad.
	std::thread worker;
	// The worker's id, which its thread stores as it begins: another thread compares with it
	// (on_worker_thread) while the stop joins `worker`, which std::thread::get_id would race.
	std::atomic<std::thread::id> worker_id{};

	// Protected by mutex: the queue between the sink pad and the worker (items), and the one
	// between the worker and the pusher (outgoing: frames run, and the events between them).
	std::mutex mutex;
	std::condition_variable item_added;     // the worker waits on it
	std::condition_variable item_removed;   // chain() and drains wait on it
	std::condition_variable outgoing_added; // the pusher waits on it
	std::deque<Item> items;
	guint queued_buffers = 0;
	std::deque<Item> outgoing;
	guint outgoing_buffers = 0;
	// The sticky events (stream-start, caps, tags) of the items a flush dropped: the flush's end
	// stores them on the source pad, which sends them before its next buffer (as queue does);
	// else a flush before the first frames left would leave downstream without caps.
	std::vector<GstEvent *> flushed_sticky;
	// batch-size and batch-timeout as set_property last stored them, and a count of their
	// changes: the worker reads them here, under `mutex`, so that a change while it waits for a
	// partial batch wakes it and applies to that batch (a shorter timeout runs it sooner).
	guint batching_size = DEFAULT_PROP_BATCH_SIZE;
	guint batching_timeout = DEFAULT_PROP_BATCH_TIMEOUT;
	guint64 batching_changes = 0;
	// Each setter's copy of the two is taken and stamped (batching_copies) in the object-lock
	// section that stores its value; the mirror takes only a copy newer than the one it holds,
	// so that two setters on two threads cannot leave the older copy there.
	guint64 batching_copies = 0;   // under the object lock
	guint64 batching_copy_held = 0; // under `mutex`
	bool busy = false;			     // the worker holds a batch
	bool worker_failed = false;		     // a batch failed: the worker takes no more
	bool pushing = false;			     // the pusher pushes an item it took
	// Bumped by each start and stop of a worker: a worker whose own is no longer current stops
	// (and one stopped from its own thread, which cannot be joined, hands over nothing more).
	guint64 worker_generation = 0;
	// Bumped by each flush start: a batch taken before it is dropped, also where the flush did not
	// wait for it (a flushing seek from a handler of the worker's own messages).
	guint64 flush_generation = 0;
	// The worker's batch while it is handed to the model's queue (and the queue): a flush or a
	// stop takes it back, so that it does not wait for the runs ahead of it (other elements'
	// batches on a model they share).
	frcnn::gst::RunRequest *queued_request = nullptr;
	frcnn::gst::RunQueue *queued_in = nullptr;
	guint draining = 0;			     // serialized queries waiting: run partial batches now
	GstFlowReturn srcresult = GST_FLOW_FLUSHING; // why the element stopped streaming
	// srcresult is EOS because downstream returned it for a buffer (a sink of num-buffers, an
	// identity eos-after), not because the stream's EOS went out: upstream's EOS must follow.
	bool downstream_eos = false;
	// Upstream's EOS has come (queued or gone out) since the last flush or new stream: upstream
	// sees no flow return after it, so a failure downstream is this element's to report.
	bool eos_received = false;
	// The failure in srcresult has been reported: by an error message of this element, or to
	// upstream as the flow of a buffer (upstream reports it then, a source with an error).
	bool failure_reported = false;
	bool have_info = false;
	GstVideoInfo sink_info;
	GstSegment segment;		     // the sink pad's, for the running time of each buffer
	guint64 frame_count = 0;

	// QoS: frames whose running time is not after this are late downstream; set from the QOS
	// events on the source pad (any thread), read by the worker.
	std::atomic<GstClockTime> qos_earliest_time{ GST_CLOCK_TIME_NONE };
	std::atomic<double> qos_proportion{ 1.0 };
	std::atomic<GstClockTime> frame_duration{ 0 }; // from the caps' frame rate, 0 when unknown
	// Frames detected, and frames skipped as late (under the queue's lock).
	guint64 qos_processed = 0;
	guint64 qos_skipped = 0;

	void reset_qos()
	{
		qos_earliest_time = GST_CLOCK_TIME_NONE;
		qos_proportion = 1.0;
	}

	// A stop: the set-ups on threads of their own give their downloads up.
	void cancel_setup()
	{
		if (setup_control)
			setup_control->stopped = true;
		for (const SupersededSetup &superseded : superseded_setups)
			superseded.control->stopped = true;
	}

	// Newer settings replace the set-up in progress: it gives everything up, and its thread is
	// kept until it ends (a stop waits for it). False, leaving it, when it has handed its result
	// over meanwhile: `reload` has it (at once). Called by the thread that owns the state.
	bool supersede_setup()
	{
		if (setup_control) {
			std::lock_guard<std::mutex> lock(setup_control->publishing);
			if (setup_control->published)
				return false;
			setup_control->superseded = true;
		}
		superseded_setups.erase(std::remove_if(superseded_setups.begin(), superseded_setups.end(),
						       [](const SupersededSetup &superseded) {
							       return superseded.done.wait_for(std::chrono::seconds(0)) ==
								      std::future_status::ready;
						       }),
					superseded_setups.end());
		if (setup_control)
			superseded_setups.push_back({ setup_control, std::move(reload_task) });
		setup_control.reset();
		reload = {};
		reload_task = {};
		return true;
	}

	// Whether a batch the worker took at these generations is still wanted: no flush, stop or
	// failure came since. Called with `mutex` held.
	bool batch_is_current(guint64 flushes, guint64 generation) const
	{
		return srcresult == GST_FLOW_OK && flush_generation == flushes && worker_generation == generation;
	}

	// Takes the worker's batch back from the model's queue (a flush or a stop: it is dropped).
	// Called with `mutex` held.
	void withdraw_queued_request()
	{
		if (queued_in && queued_in->withdraw(*queued_request))
			GST_DEBUG("a batch waiting for a shared model was taken back");
	}

	// Longest batch run so far, and the part of it the last latency answer included.
	std::atomic<GstClockTime> batch_time{ 0 };
	std::atomic<GstClockTime> reported_batch_time{ 0 };
	// The model whose runs batch_time counts (the worker's): a model's first run warms it up
	// (allocations, oneDNN's plans, CUDA's kernels and autotuning) and is left out, else a
	// live pipeline would keep that run's latency for good.
	const LoadedModel *timed_model = nullptr;

	// What the element did since it last started (the `stats` property): counted by the sink
	// pad's thread and the worker, read by any thread.
	struct Stats {
		std::atomic<guint64> frames{ 0 };		// buffers that came in
		std::atomic<guint64> detected{ 0 };		// frames run through the model
		std::atomic<guint64> images{ 0 };		// images of these (roi-list: regions)
		std::atomic<guint64> skipped_interval{ 0 };	// not run because of `interval`
		std::atomic<guint64> skipped_late{ 0 };		// not run: late downstream (`qos`)
		std::atomic<guint64> skipped_gap{ 0 };		// not run: gap buffers
		std::atomic<guint64> batches{ 0 };
		std::atomic<guint64> batches_with_others{ 0 }; // ran with other elements' frames
		std::atomic<guint64> detections{ 0 };		// regions of interest attached
		std::atomic<GstClockTime> batch_time{ 0 };	// the batches' times added up
		std::atomic<GstClockTime> last_batch_time{ 0 };
		std::atomic<guint64> cpu_threads{ 0 };		// the worker's, at its last batch

		void reset()
		{
			for (std::atomic<guint64> *counter :
			     { &frames, &detected, &images, &skipped_interval, &skipped_late, &skipped_gap, &batches,
			       &batches_with_others, &detections, &batch_time, &last_batch_time, &cpu_threads })
				counter->store(0);
		}
	} stats;

	// Whether the element is to report the failure in srcresult now that upstream will hear of it
	// at no buffer (its EOS has come), marking it reported: a failure downstream of the kind
	// queue reports (not linked, or an error), which neither the element nor upstream (told at a
	// buffer) has reported. Called with mutex held.
	bool take_failure_to_report()
	{
		const bool report = !failure_reported &&
				    (srcresult == GST_FLOW_NOT_LINKED || srcresult < GST_FLOW_EOS);
		failure_reported |= report;
		return report;
	}

	// Drops everything queued. Called with mutex held.
	// Keeps the queued events that outlive their frames in flushed_sticky. Called with mutex
	// held, before clear_queue().
	void keep_sticky_events()
	{
		for (const std::deque<Item> *queue : { &items, &outgoing })
			for (const Item &item : *queue)
				if (item.event && outlives_its_frames(item.event))
					flushed_sticky.push_back(gst_event_ref(item.event));
	}

	void drop_flushed_sticky()
	{
		for (GstEvent *event : flushed_sticky)
			gst_event_unref(event);
		flushed_sticky.clear();
	}

	~GstFrcnnDetectState() { drop_flushed_sticky(); }

	void clear_queue()
	{
		items.clear();
		queued_buffers = 0;
		outgoing.clear();
		outgoing_buffers = 0;
	}

	// Wakes every thread that waits on the queues (srcresult changed). Called with mutex held.
	void wake_all()
	{
		item_added.notify_all();
		item_removed.notify_all();
		outgoing_added.notify_all();
	}
};

struct _GstFrcnnDetect {
	GstElement parent;

	GstPad *sinkpad;
	GstPad *srcpad;

	GstFrcnnDetectState *state;
};

G_DEFINE_TYPE(GstFrcnnDetect, gst_frcnn_detect, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(frcnndetect, "frcnndetect", GST_RANK_NONE, GST_TYPE_FRCNN_DETECT);

static void gst_frcnn_detect_finalize(GObject *object);
static void gst_frcnn_detect_set_property(GObject *object, guint prop_id, const GValue *value,
					  GParamSpec *pspec);
/* What storing a property changed that set_property acts on after the object lock. */
struct StoredProperty {
	bool latency_changed = false; // a new batch-size or batch-timeout
	// For batch-size and batch-timeout: both as stored, and the stamp of this copy of them.
	guint64 batching_copy = 0;    // 0: neither was set
	guint batch_size = 0;
	guint batch_timeout = 0;
};
static StoredProperty gst_frcnn_detect_store_property(GstFrcnnDetect *self, guint prop_id,
						      const GValue *value, GParamSpec *pspec);
static void gst_frcnn_detect_get_property(GObject *object, guint prop_id, GValue *value,
					  GParamSpec *pspec);
static GstStateChangeReturn gst_frcnn_detect_change_state(GstElement *element,
							  GstStateChange transition);
static GstFlowReturn gst_frcnn_detect_chain(GstPad *pad, GstObject *parent, GstBuffer *buffer);
static GstFlowReturn gst_frcnn_detect_sink_event_full(GstPad *pad, GstObject *parent, GstEvent *event);
static gboolean gst_frcnn_detect_sink_query(GstPad *pad, GstObject *parent, GstQuery *query);
static gboolean gst_frcnn_detect_src_query(GstPad *pad, GstObject *parent, GstQuery *query);
static gboolean gst_frcnn_detect_src_event(GstPad *pad, GstObject *parent, GstEvent *event);
static gboolean gst_frcnn_detect_sink_activate_mode(GstPad *pad, GstObject *parent,
						    GstPadMode mode, gboolean active);
static gboolean gst_frcnn_detect_src_activate_mode(GstPad *pad, GstObject *parent,
						   GstPadMode mode, gboolean active);
static void gst_frcnn_detect_loop(gpointer user_data);
static guint outgoing_capacity(guint batch_size, guint interval);

static void gst_frcnn_detect_class_init(GstFrcnnDetectClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS(klass);
	GstElementClass *element_class = GST_ELEMENT_CLASS(klass);

	object_class->finalize = gst_frcnn_detect_finalize;
	object_class->set_property = gst_frcnn_detect_set_property;
	object_class->get_property = gst_frcnn_detect_get_property;

	const auto ready = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
						    GST_PARAM_MUTABLE_READY);
	const auto playing = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
						      GST_PARAM_MUTABLE_PLAYING);

	g_object_class_install_property(object_class, PROP_MODEL,
		g_param_spec_string("model", "Model",
				    "Architecture preset, e.g. fasterrcnn_resnet50_fpn or tiny (an "
				    "unknown name fails and lists the known ones). A weights preset "
				    "selects its own model; left unset (or empty), the model is told "
				    "from the weights file's keys. Changed while playing, as weights",
				    nullptr, playing));
	g_object_class_install_property(object_class, PROP_WEIGHTS,
		g_param_spec_string("weights", "Weights",
				    "Checkpoint to load: a file path, a preset name (coco, coco-v2, "
				    "coco-mobilenet, coco-mobilenet-320: downloaded into the torch hub "
				    "cache when missing) or an http(s) URL. A download happens after the "
				    "start, while the first frame waits, its steps posted as progress "
				    "messages. Changed while playing, the "
				    "new weights are loaded in the background and the batches go on with "
				    "the old ones until they are ready (a message tells when)",
				    DEFAULT_PROP_WEIGHTS, playing));
	g_object_class_install_property(object_class, PROP_NUM_CLASSES,
		g_param_spec_uint("num-classes", "Number of classes",
				  "Classes of the model, background included (0 = from the weights). "
				  "Changed while playing, as weights",
				  0, frcnn::kMostClasses, DEFAULT_PROP_NUM_CLASSES, playing));
	g_object_class_install_property(object_class, PROP_LABELS,
		g_param_spec_string("labels", "Labels",
				    "File of class names, one per line, background first or left out, as "
				    "frcnn-train writes next to its checkpoint (CHECKPOINT.labels) "
				    "(default: the COCO names for 91-class models, else \"class N\"). "
				    "Changed while playing, as weights",
				    DEFAULT_PROP_LABELS, playing));
	g_object_class_install_property(object_class, PROP_DEVICE,
		g_param_spec_string("device", "Device",
				    "Where the model runs: cpu, cuda or cuda:N",
				    DEFAULT_PROP_DEVICE, ready));
	g_object_class_install_property(object_class, PROP_PRECISION,
		g_param_spec_enum("precision", "Precision",
				  "Arithmetic of the model's convolutions and linear layers (box geometry stays in float): "
				  "fp16 on CUDA devices, bf16 on CPUs with bfloat16 instructions, int8 on the CPU",
				  GST_TYPE_FRCNN_PRECISION, DEFAULT_PROP_PRECISION, ready));
	g_object_class_install_property(object_class, PROP_INT8_CALIBRATION,
		g_param_spec_string("int8-calibration", "Int8 calibration",
				    "With precision=int8: a file of the ranges of the layers' inputs. When it "
				    "exists (written for the same model and weights) it is used from the first "
				    "frame; else the element calibrates on the first int8-calibration-frames "
				    "frames (detected in fp32) and writes it. Empty: calibrate, keep the calibration "
				    "in memory only. The calibration stays with the model, which the element keeps "
				    "across stops to READY",
				    DEFAULT_PROP_INT8_CALIBRATION, ready));
	g_object_class_install_property(object_class, PROP_INT8_CALIBRATION_FRAMES,
		g_param_spec_uint("int8-calibration-frames", "Int8 calibration frames",
				  "With precision=int8 and no calibration file yet: the frames (images with "
				  "inference-region=roi-list) detected in fp32 while the ranges are measured",
				  1, 100000, DEFAULT_PROP_INT8_CALIBRATION_FRAMES, ready));
	g_object_class_install_property(object_class, PROP_CHANNELS_LAST,
		g_param_spec_boolean("channels-last", "Channels last",
				     "Run the convolutions on channels-last (NHWC) data: faster with "
				     "precision=fp16 on CUDA; same detections up to rounding",
				     DEFAULT_PROP_CHANNELS_LAST, ready));
	g_object_class_install_property(object_class, PROP_CPU_CONVOLUTIONS,
		g_param_spec_enum("cpu-convolutions", "CPU convolutions",
				  "What runs the backbone, FPN, RPN head and convolutional box head "
				  "convolutions on the CPU (fp32 and bf16), and in fp32 the box head's linear "
				  "layers: libtorch gives torchvision's numbers exactly, onednn runs "
				  "fasterrcnn_resnet50_fpn (and its v2) at least 1.85 (1.9) times as fast, the "
				  "MobileNetV3 models 2.5 to 4.3 times (measured with LibTorch's linear layers; "
				  "oneDNN's are faster still: docs/performance.md); precision=int8 needs "
				  "onednn or auto",
				  GST_TYPE_FRCNN_CPU_CONVOLUTIONS, DEFAULT_PROP_CPU_CONVOLUTIONS, ready));
	g_object_class_install_property(object_class, PROP_BATCH_SIZE,
		g_param_spec_uint("batch-size", "Batch size", "Frames run together",
				  1, MAX_BATCH_SIZE, DEFAULT_PROP_BATCH_SIZE, playing));
	g_object_class_install_property(object_class, PROP_BATCH_TIMEOUT,
		g_param_spec_uint("batch-timeout", "Batch timeout",
				  "Milliseconds a frame waits for the batch to fill before a partial "
				  "batch runs (0 = run what is queued at once)",
				  0, G_MAXINT, DEFAULT_PROP_BATCH_TIMEOUT, playing));
	g_object_class_install_property(object_class, PROP_INTERVAL,
		g_param_spec_uint("interval", "Interval",
				  "Run the detector on 1 frame in N; the others pass through without "
				  "new detections",
				  1, G_MAXINT, DEFAULT_PROP_INTERVAL, playing));
	g_object_class_install_property(object_class, PROP_THRESHOLD,
		g_param_spec_double("threshold", "Score threshold",
				    "Detections scoring below are dropped",
				    0.0, 1.0, DEFAULT_PROP_THRESHOLD, playing));
	g_object_class_install_property(object_class, PROP_NMS_THRESHOLD,
		g_param_spec_double("nms-threshold", "NMS threshold",
				    "IoU above which the lower scoring of two boxes of a class is "
				    "dropped",
				    0.0, 1.0, DEFAULT_PROP_NMS_THRESHOLD, playing));
	g_object_class_install_property(object_class, PROP_MIN_SIZE,
		g_param_spec_uint("min-size", "Minimum size",
				  "Frames are scaled so that their short side is this long, unless "
				  "the long side would exceed max-size (0 = the model's own)",
				  0, 8192, DEFAULT_PROP_MIN_SIZE, playing));
	g_object_class_install_property(object_class, PROP_MAX_SIZE,
		g_param_spec_uint("max-size", "Maximum size",
				  "Longest side of a scaled frame (0 = the model's own)",
				  0, 8192, DEFAULT_PROP_MAX_SIZE, playing));
	g_object_class_install_property(object_class, PROP_MAX_DETECTIONS,
		g_param_spec_uint("max-detections", "Maximum detections",
				  "Most detections kept per frame (per region with inference-region=roi-list), best first, "
				  "of those that classes, class-thresholds and the box sizes keep", 1, 10000,
				  DEFAULT_PROP_MAX_DETECTIONS, playing));
	g_object_class_install_property(object_class, PROP_CLASSES,
		g_param_spec_string("classes", "Classes",
				    "Only keep these classes: names or ids (from 1, as torchvision's: "
				    "COCO's person is 1) separated by commas (empty = all)",
				    DEFAULT_PROP_CLASSES, playing));
	g_object_class_install_property(object_class, PROP_QOS,
		g_param_spec_boolean("qos", "QoS",
				     "Handle Quality-of-Service events: frames that downstream reports "
				     "as already late pass through without detection, so that the "
				     "detector catches up (a QoS message counts them)",
				     DEFAULT_PROP_QOS, playing));
	g_object_class_install_property(object_class, PROP_THREADS,
		g_param_spec_uint("threads", "CPU threads",
				  "Threads the detector's CPU work runs on, from the next batch (0 = "
				  "the process's count: OMP_NUM_THREADS, else the cores LibTorch "
				  "finds). Each element has its own; LibTorch also takes the last one "
				  "set for threads of the process that have not used it yet",
				  0, MAX_THREADS, DEFAULT_PROP_THREADS, playing));
	g_object_class_install_property(object_class, PROP_MODEL_INSTANCE_ID,
		g_param_spec_string("model-instance-id", "Model instance id",
				    "Elements with the same id share one loaded model (their model, "
				    "weights, num-classes, device, precision, int8-calibration(-frames), "
				    "channels-last and cpu-convolutions must be equal); their batches take turns, each "
				    "with its own thresholds and sizes, and batches that wait together "
				    "with equal thresholds, sizes and frame sizes run as one, up to the "
				    "largest batch-size among them. Empty: a model of its own",
				    DEFAULT_PROP_MODEL_INSTANCE_ID, ready));
	g_object_class_install_property(object_class, PROP_REGION,
		g_param_spec_string("region", "Region",
				    "The rectangle of each frame the detector looks at, "
				    "\"x,y,width,height\" in frame pixels (cut to the frame; its left edge "
				    "moves to an even x on 4:2:0 and 4:2:2 frames, to a multiple of 6 on v210 "
				    "frames, its top edge to an even y "
				    "on 4:2:0 frames, to a multiple of 4 on interlaced 4:2:0 frames); "
				    "detections are still given in the whole frame's coordinates. Empty: "
				    "the whole frame",
				    DEFAULT_PROP_REGION, playing));
	g_object_class_install_property(object_class, PROP_CLASS_THRESHOLDS,
		g_param_spec_string("class-thresholds", "Class thresholds",
				    "Score thresholds of single classes, \"class=score\" separated by "
				    "commas, the class a name or an id (e.g. \"person=0.7,car=0.3\"); "
				    "the other classes keep 'threshold'. max-detections then counts the "
				    "detections each class's threshold keeps",
				    DEFAULT_PROP_CLASS_THRESHOLDS, playing));
	g_object_class_install_property(object_class, PROP_INFERENCE_REGION,
		g_param_spec_enum("inference-region", "Inference region",
				  "What the detector runs on: the whole frame (or its 'region'), or "
				  "each region of interest attached upstream as an image of its own "
				  "(roi-list), e.g. the detections of another frcnndetect; these "
				  "detections are given in frame pixels with the region's id as their "
				  "parent_id, and batch-size counts images",
				  GST_TYPE_FRCNN_INFERENCE_REGION, DEFAULT_PROP_INFERENCE_REGION, ready));
	g_object_class_install_property(object_class, PROP_OBJECT_CLASS,
		g_param_spec_string("object-class", "Object class",
				    "With inference-region=roi-list: the types (labels) of the regions "
				    "of interest to detect in, in any case, separated by commas (empty = all)",
				    DEFAULT_PROP_OBJECT_CLASS, playing));
	g_object_class_install_property(object_class, PROP_OBJECT_MIN_SIZE,
		g_param_spec_uint("object-min-size", "Object minimum size",
				  "With inference-region=roi-list: regions of interest narrower or "
				  "lower than this many pixels (in the frame) are left out, since "
				  "each region is scaled up to min-size and costs about as much as a "
				  "frame (0 = none)",
				  0, 8192, DEFAULT_PROP_OBJECT_MIN_SIZE, playing));
	g_object_class_install_property(object_class, PROP_SQUARE_PIXELS,
		g_param_spec_boolean("square-pixels", "Square pixels",
				     "Frames whose pixels are not square (the caps' pixel-aspect-ratio "
				     "is not 1/1: anamorphic SD video, HDV) are resized for the model to "
				     "square pixels, as a display shows them, so that objects keep their "
				     "shapes; detections stay in the frame's pixels. false: the model "
				     "sees the stored pixels, as torchvision run on the decoded frames",
				     DEFAULT_PROP_SQUARE_PIXELS, playing));
	g_object_class_install_property(object_class, PROP_TONE_MAPPING,
		g_param_spec_boolean("tone-mapping", "Tone mapping",
				     "HDR video (the caps' colorimetry has the PQ or HLG transfer: HDR10, "
				     "HLG broadcasts and phones) is mapped to the picture an SDR display "
				     "shows (BT.2408's reference white as SDR white, highlights compressed), "
				     "and wide-gamut colours (BT.2020 or Display P3 primaries) to BT.709's, "
				     "which is what the model was trained on. false: the signal as it is, "
				     "as if it were SDR in BT.709's primaries",
				     DEFAULT_PROP_TONE_MAPPING, playing));
	g_object_class_install_property(object_class, PROP_MIN_BOX_SIZE,
		g_param_spec_uint("min-box-size", "Minimum box size",
				  "Detections whose box is narrower or lower than this many frame "
				  "pixels are dropped (before max-detections counts them), e.g. far-away "
				  "false alarms of a fixed camera (0 = none)",
				  0, G_MAXINT, DEFAULT_PROP_MIN_BOX_SIZE, playing));
	g_object_class_install_property(object_class, PROP_MAX_BOX_SIZE,
		g_param_spec_uint("max-box-size", "Maximum box size",
				  "Detections whose box is wider or higher than this many frame pixels "
				  "are dropped (before max-detections counts them) (0 = none)",
				  0, G_MAXINT, DEFAULT_PROP_MAX_BOX_SIZE, playing));
	g_object_class_install_property(object_class, PROP_STATS,
		g_param_spec_boxed("stats", "Statistics",
				   "What the element did since it last started, as a GstStructure: "
				   "frames, frames-detected, images-detected, frames-skipped-interval, "
				   "frames-skipped-late, frames-skipped-gap, batches, batches-with-others, detections "
				   "(guint64), mean-batch-size, model-frames-per-second (gdouble), "
				   "mean-batch-time, last-batch-time (guint64, ns), cpu-threads (guint64)",
				   GST_TYPE_STRUCTURE,
				   static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

	element_class->change_state = GST_DEBUG_FUNCPTR(gst_frcnn_detect_change_state);

	gst_element_class_add_static_pad_template(element_class, &sink_template);
	gst_element_class_add_static_pad_template(element_class, &src_template);
	gst_element_class_set_static_metadata(element_class, "Faster R-CNN object detector",
		"Filter/Analyzer/Video",
		"Detects objects with a Faster R-CNN model and attaches them as region of "
		"interest metadata",
		"gst-frcnn authors");

	gst_type_mark_as_plugin_api(GST_TYPE_FRCNN_PRECISION, static_cast<GstPluginAPIFlags>(0));
	gst_type_mark_as_plugin_api(GST_TYPE_FRCNN_INFERENCE_REGION, static_cast<GstPluginAPIFlags>(0));
	gst_type_mark_as_plugin_api(GST_TYPE_FRCNN_CPU_CONVOLUTIONS, static_cast<GstPluginAPIFlags>(0));

	GST_DEBUG_CATEGORY_INIT(gst_frcnn_detect_debug, "frcnndetect", 0,
				"Faster R-CNN object detector");
}

static void gst_frcnn_detect_init(GstFrcnnDetect *self)
{
	self->state = new GstFrcnnDetectState();
	gst_video_info_init(&self->state->sink_info);
	gst_segment_init(&self->state->segment, GST_FORMAT_TIME);

	self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
	gst_pad_set_chain_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_frcnn_detect_chain));
	gst_pad_set_event_full_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_frcnn_detect_sink_event_full));
	gst_pad_set_query_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_frcnn_detect_sink_query));
	gst_pad_set_activatemode_function(self->sinkpad,
					  GST_DEBUG_FUNCPTR(gst_frcnn_detect_sink_activate_mode));
	GST_PAD_SET_PROXY_CAPS(self->sinkpad);
	/* Caps are accepted where they meet the template, as a base transform accepts them: caps
	 * without a framerate (an application's appsrc) are not a subset of the template's. */
	GST_PAD_SET_ACCEPT_INTERSECT(self->sinkpad);
	GST_PAD_SET_PROXY_ALLOCATION(self->sinkpad);
	gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

	self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
	gst_pad_set_query_function(self->srcpad, GST_DEBUG_FUNCPTR(gst_frcnn_detect_src_query));
	gst_pad_set_event_function(self->srcpad, GST_DEBUG_FUNCPTR(gst_frcnn_detect_src_event));
	gst_pad_set_activatemode_function(self->srcpad,
					  GST_DEBUG_FUNCPTR(gst_frcnn_detect_src_activate_mode));
	GST_PAD_SET_PROXY_CAPS(self->srcpad);
	gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}

/* The element whose model this thread sets up (begin_setup's task); null on any other thread. */
static thread_local const GstFrcnnDetect *reload_task_of = nullptr;

static void gst_frcnn_detect_finalize(GObject *object)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(object);

	/* A model's set-up holds a reference to the element until its thread ends. */
	delete self->state;

	G_OBJECT_CLASS(gst_frcnn_detect_parent_class)->finalize(object);
}

static void set_string(std::string &target, const GValue *value)
{
	const gchar *text = g_value_get_string(value);
	target = text ? text : "";
}

static void gst_frcnn_detect_set_property(GObject *object, guint prop_id, const GValue *value,
					  GParamSpec *pspec)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(object);
	/* The latency the element adds changed: a live pipeline re-computes it. Posted without the
	 * object lock. */
	const guint64 generation = self->state->settings_generation;
	const StoredProperty stored = gst_frcnn_detect_store_property(self, prop_id, value, pspec);
	if (stored.latency_changed)
		gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
	if (self->state->settings_generation != generation) {
		/* A frame that waits for the start's model sets it up anew (under the queue's lock,
		 * so that it cannot miss the change between its check and its wait). */
		std::lock_guard<std::mutex> lock(self->state->mutex);
		self->state->item_removed.notify_all();
	}
	if (stored.batching_copy) {
		GstFrcnnDetectState *state = self->state;
		std::lock_guard<std::mutex> lock(state->mutex);
		if (stored.batching_copy > state->batching_copy_held) {
			state->batching_copy_held = stored.batching_copy;
			state->batching_size = stored.batch_size;
			state->batching_timeout = stored.batch_timeout;
			state->batching_changes++;
			state->item_added.notify_all();
		}
	}

	if (prop_id == PROP_INFERENCE_REGION) {
		GST_OBJECT_LOCK(self);
		const bool started = GST_STATE(self) > GST_STATE_READY || GST_STATE_PENDING(self) > GST_STATE_READY;
		const GstFrcnnInferenceRegion in_use = self->state->inference_region;
		GST_OBJECT_UNLOCK(self);
		if (started && g_value_get_enum(value) != in_use)
			GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
					    ("'inference-region' changed while playing takes effect at the "
					     "next start."),
					    ("inference-region set to %d", g_value_get_enum(value)));
	}
}

/* Stores a property's value under the object lock. */
static StoredProperty gst_frcnn_detect_store_property(GstFrcnnDetect *self, guint prop_id,
						      const GValue *value, GParamSpec *pspec)
{
	GObject *object = G_OBJECT(self);
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
	Settings &settings = self->state->settings;
	StoredProperty stored;
	bool &latency_changed = stored.latency_changed;

	switch (prop_id) {
	case PROP_MODEL:
		/* Unset (NULL, its default) and empty are the same: the model is told from the
		 * weights (`model` keeps the default model's name for the code that needs one). */
		set_string(settings.model, value);
		settings.model_set = !settings.model.empty();
		if (!settings.model_set)
			settings.model = DEFAULT_PROP_MODEL;
		break;
	case PROP_WEIGHTS:
		set_string(settings.weights, value);
		break;
	case PROP_NUM_CLASSES:
		settings.num_classes = g_value_get_uint(value);
		break;
	case PROP_LABELS:
		set_string(settings.labels, value);
		break;
	case PROP_DEVICE:
		set_string(settings.device, value);
		if (settings.device.empty()) /* unset (NULL) or empty: the default */
			settings.device = DEFAULT_PROP_DEVICE;
		break;
	case PROP_PRECISION:
		settings.precision = static_cast<GstFrcnnPrecision>(g_value_get_enum(value));
		break;
	case PROP_INT8_CALIBRATION:
		set_string(settings.int8_calibration, value);
		break;
	case PROP_INT8_CALIBRATION_FRAMES:
		settings.int8_calibration_frames = g_value_get_uint(value);
		break;
	case PROP_CHANNELS_LAST:
		settings.channels_last = g_value_get_boolean(value);
		break;
	case PROP_CPU_CONVOLUTIONS:
		settings.cpu_convolutions = static_cast<GstFrcnnCpuConvolutions>(g_value_get_enum(value));
		break;
	case PROP_BATCH_SIZE:
		if (settings.batch_size != g_value_get_uint(value))
			self->state->held_buffers_changed = latency_changed = true;
		settings.batch_size = g_value_get_uint(value);
		break;
	case PROP_BATCH_TIMEOUT:
		latency_changed = settings.batch_timeout != g_value_get_uint(value);
		settings.batch_timeout = g_value_get_uint(value);
		break;
	case PROP_INTERVAL:
		if (settings.interval != g_value_get_uint(value))
			self->state->held_buffers_changed = true;
		settings.interval = g_value_get_uint(value);
		break;
	case PROP_QOS:
		settings.qos = g_value_get_boolean(value);
		break;
	case PROP_THREADS:
		settings.threads = g_value_get_uint(value);
		break;
	case PROP_THRESHOLD:
		settings.threshold = g_value_get_double(value);
		break;
	case PROP_NMS_THRESHOLD:
		settings.nms_threshold = g_value_get_double(value);
		break;
	case PROP_MIN_SIZE:
		settings.min_size = g_value_get_uint(value);
		break;
	case PROP_MAX_SIZE:
		settings.max_size = g_value_get_uint(value);
		break;
	case PROP_MAX_DETECTIONS:
		settings.max_detections = g_value_get_uint(value);
		break;
	case PROP_CLASSES:
		set_string(settings.classes, value);
		break;
	case PROP_MODEL_INSTANCE_ID:
		set_string(settings.model_instance_id, value);
		break;
	case PROP_REGION:
		set_string(settings.region, value);
		break;
	case PROP_CLASS_THRESHOLDS:
		set_string(settings.class_thresholds, value);
		break;
	case PROP_INFERENCE_REGION:
		settings.inference_region = static_cast<GstFrcnnInferenceRegion>(g_value_get_enum(value));
		break;
	case PROP_OBJECT_CLASS:
		set_string(settings.object_class, value);
		break;
	case PROP_OBJECT_MIN_SIZE:
		settings.object_min_size = g_value_get_uint(value);
		break;
	case PROP_SQUARE_PIXELS:
		settings.square_pixels = g_value_get_boolean(value);
		break;
	case PROP_TONE_MAPPING:
		settings.tone_mapping = g_value_get_boolean(value);
		break;
	case PROP_MIN_BOX_SIZE:
		settings.min_box_size = g_value_get_uint(value);
		break;
	case PROP_MAX_BOX_SIZE:
		settings.max_box_size = g_value_get_uint(value);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		return stored;
	}

	switch (prop_id) {
	case PROP_MODEL:
	case PROP_WEIGHTS:
	case PROP_NUM_CLASSES:
	case PROP_LABELS:
	case PROP_DEVICE:
	case PROP_PRECISION:
	case PROP_INT8_CALIBRATION:
	case PROP_INT8_CALIBRATION_FRAMES:
	case PROP_CHANNELS_LAST:
	case PROP_CPU_CONVOLUTIONS:
	case PROP_MODEL_INSTANCE_ID:
		self->state->settings_generation++;
		break;
	case PROP_BATCH_SIZE:
	case PROP_BATCH_TIMEOUT:
		stored.batching_copy = ++self->state->batching_copies;
		stored.batch_size = settings.batch_size;
		stored.batch_timeout = settings.batch_timeout;
		break;
	default:
		break;
	}
	return stored;
}

/* The `stats` property's structure. The counters are read one by one while the element may run:
 * together they are a moment's picture up to the frames in flight. */
static GstStructure *gst_frcnn_detect_stats(const GstFrcnnDetectState::Stats &stats)
{
	const guint64 detected = stats.detected.load(), batches = stats.batches.load();
	const guint64 images = stats.images.load();
	const GstClockTime batch_time = stats.batch_time.load();
	return gst_structure_new("frcnndetect-stats",
		"frames", G_TYPE_UINT64, stats.frames.load(),
		"frames-detected", G_TYPE_UINT64, detected,
		"images-detected", G_TYPE_UINT64, images,
		"frames-skipped-interval", G_TYPE_UINT64, stats.skipped_interval.load(),
		"frames-skipped-late", G_TYPE_UINT64, stats.skipped_late.load(),
		"frames-skipped-gap", G_TYPE_UINT64, stats.skipped_gap.load(),
		"batches", G_TYPE_UINT64, batches,
		"batches-with-others", G_TYPE_UINT64, stats.batches_with_others.load(),
		"detections", G_TYPE_UINT64, stats.detections.load(),
		"mean-batch-size", G_TYPE_DOUBLE, batches ? double(images) / double(batches) : 0.0,
		"model-frames-per-second", G_TYPE_DOUBLE,
		batch_time ? double(detected) * GST_SECOND / double(batch_time) : 0.0,
		"mean-batch-time", G_TYPE_UINT64, batches ? batch_time / batches : guint64(0),
		"last-batch-time", G_TYPE_UINT64, stats.last_batch_time.load(),
		"cpu-threads", G_TYPE_UINT64, stats.cpu_threads.load(),
		nullptr);
}

static void gst_frcnn_detect_get_property(GObject *object, guint prop_id, GValue *value,
					  GParamSpec *pspec)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(object);
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
	const Settings &settings = self->state->settings;

	switch (prop_id) {
	case PROP_MODEL:
		g_value_set_string(value, settings.model_set ? settings.model.c_str() : nullptr);
		break;
	case PROP_WEIGHTS:
		g_value_set_string(value, settings.weights.empty() ? nullptr : settings.weights.c_str());
		break;
	case PROP_NUM_CLASSES:
		g_value_set_uint(value, settings.num_classes);
		break;
	case PROP_LABELS:
		g_value_set_string(value, settings.labels.empty() ? nullptr : settings.labels.c_str());
		break;
	case PROP_DEVICE:
		g_value_set_string(value, settings.device.c_str());
		break;
	case PROP_PRECISION:
		g_value_set_enum(value, settings.precision);
		break;
	case PROP_INT8_CALIBRATION:
		g_value_set_string(value, settings.int8_calibration.empty() ? nullptr : settings.int8_calibration.c_str());
		break;
	case PROP_INT8_CALIBRATION_FRAMES:
		g_value_set_uint(value, settings.int8_calibration_frames);
		break;
	case PROP_CHANNELS_LAST:
		g_value_set_boolean(value, settings.channels_last);
		break;
	case PROP_CPU_CONVOLUTIONS:
		g_value_set_enum(value, settings.cpu_convolutions);
		break;
	case PROP_BATCH_SIZE:
		g_value_set_uint(value, settings.batch_size);
		break;
	case PROP_BATCH_TIMEOUT:
		g_value_set_uint(value, settings.batch_timeout);
		break;
	case PROP_INTERVAL:
		g_value_set_uint(value, settings.interval);
		break;
	case PROP_QOS:
		g_value_set_boolean(value, settings.qos);
		break;
	case PROP_THREADS:
		g_value_set_uint(value, settings.threads);
		break;
	case PROP_THRESHOLD:
		g_value_set_double(value, settings.threshold);
		break;
	case PROP_NMS_THRESHOLD:
		g_value_set_double(value, settings.nms_threshold);
		break;
	case PROP_MIN_SIZE:
		g_value_set_uint(value, settings.min_size);
		break;
	case PROP_MAX_SIZE:
		g_value_set_uint(value, settings.max_size);
		break;
	case PROP_MAX_DETECTIONS:
		g_value_set_uint(value, settings.max_detections);
		break;
	case PROP_CLASSES:
		g_value_set_string(value, settings.classes.empty() ? nullptr : settings.classes.c_str());
		break;
	case PROP_MODEL_INSTANCE_ID:
		g_value_set_string(value, settings.model_instance_id.empty() ? nullptr
									  : settings.model_instance_id.c_str());
		break;
	case PROP_REGION:
		g_value_set_string(value, settings.region.empty() ? nullptr : settings.region.c_str());
		break;
	case PROP_CLASS_THRESHOLDS:
		g_value_set_string(value, settings.class_thresholds.empty() ? nullptr
									 : settings.class_thresholds.c_str());
		break;
	case PROP_INFERENCE_REGION:
		g_value_set_enum(value, settings.inference_region);
		break;
	case PROP_OBJECT_CLASS:
		g_value_set_string(value, settings.object_class.empty() ? nullptr
								     : settings.object_class.c_str());
		break;
	case PROP_OBJECT_MIN_SIZE:
		g_value_set_uint(value, settings.object_min_size);
		break;
	case PROP_SQUARE_PIXELS:
		g_value_set_boolean(value, settings.square_pixels);
		break;
	case PROP_TONE_MAPPING:
		g_value_set_boolean(value, settings.tone_mapping);
		break;
	case PROP_MIN_BOX_SIZE:
		g_value_set_uint(value, settings.min_box_size);
		break;
	case PROP_MAX_BOX_SIZE:
		g_value_set_uint(value, settings.max_box_size);
		break;
	case PROP_STATS:
		g_value_take_boxed(value, gst_frcnn_detect_stats(self->state->stats));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
		break;
	}
}

/* A file path in one spelling for all (absolute, without "." and ".." steps, links resolved where
 * the file exists), so that elements that name one file differently share its model. */
static std::string same_file_text(const std::string &path)
{
	if (path.empty())
		return path;
	std::error_code error;
	const std::filesystem::path canonical = std::filesystem::weakly_canonical(path, error);
	return error ? path : canonical.string();
}

/* The weights' file in the spelling of same_file_text: a preset name or a URL by the file in the
 * download cache it stands for, so that a preset, its URL and its cached file are one. */
static std::string same_weights_text(const std::string &weights)
{
	std::optional<std::string> cached;
	try {
		cached = frcnn::weights_cache_path(weights);
	} catch (const std::exception &) {
		return weights; /* resolve_weights says what is wrong */
	}
	return same_file_text(cached ? *cached : weights);
}

/* The model and class count a model is built with: the settings', else what the weights preset
 * or the weights file (`file_arch`, `file_classes`) tell, else the model's defaults. `arch` is
 * the settings' model or the weights preset's. */
struct ModelChoice {
	std::string arch;
	int num_classes = 0;
};

static ModelChoice choose_model(const Settings &settings, const std::optional<frcnn::WeightsPreset> &preset,
				const std::string &arch, const std::string &file_arch, int file_classes)
{
	ModelChoice choice{ arch, static_cast<int>(settings.num_classes) };
	/* Without a model property or weights preset, the checkpoint's keys tell the model. */
	if (!settings.model_set && !preset && !file_arch.empty())
		choice.arch = file_arch;
	if (choice.num_classes == 0)
		choice.num_classes = file_classes > 0 ? file_classes
				   : preset ? preset->num_classes
					    : frcnn::model_preset(choice.arch).num_classes;
	return choice;
}

/* Whether two settings set up the same model: those whose change needs a new one (they bump
 * settings_generation) are equal. */
static bool same_model_settings(const Settings &a, const Settings &b)
{
	return a.model == b.model && a.model_set == b.model_set && a.weights == b.weights &&
	       a.num_classes == b.num_classes && a.labels == b.labels && a.device == b.device &&
	       a.precision == b.precision && a.int8_calibration == b.int8_calibration &&
	       a.int8_calibration_frames == b.int8_calibration_frames && a.channels_last == b.channels_last &&
	       a.cpu_convolutions == b.cpu_convolutions && a.model_instance_id == b.model_instance_id;
}

/* The settings a model is loaded from, as gst-launch would set them; with `choice`, the model
 * and class count they come to (so that "num-classes=0" and the weights' own count are one). */
static std::string model_settings_text(const Settings &settings, const std::optional<ModelChoice> &choice = std::nullopt)
{
	const char *precision = frcnn::precision_name(static_cast<frcnn::Precision>(settings.precision));
	const char *convolutions = "auto";
	if (settings.cpu_convolutions == GST_FRCNN_CPU_CONVOLUTIONS_ONEDNN)
		convolutions = "onednn";
	else if (settings.cpu_convolutions == GST_FRCNN_CPU_CONVOLUTIONS_LIBTORCH)
		convolutions = "libtorch";
	const std::string model = choice ? choice->arch : settings.model_set ? settings.model : "(unset)";
	const int num_classes = choice ? choice->num_classes : static_cast<int>(settings.num_classes);
	return "model=" + model + " weights=" + same_weights_text(settings.weights) +
	       " num-classes=" + (num_classes < 0 ? std::string("(unset)") : std::to_string(num_classes)) +
	       " device=" + settings.device + " precision=" + precision +
	       (settings.precision == GST_FRCNN_PRECISION_INT8
			? " int8-calibration=" + same_file_text(settings.int8_calibration) +
				  " int8-calibration-frames=" + std::to_string(settings.int8_calibration_frames)
			: std::string()) +
	       " channels-last=" + (settings.channels_last ? "true" : "false") +
	       " cpu-convolutions=" + convolutions;
}

/*
 * Posts a problem of setting up a model: an error when the element starts (the state change then
 * fails), a warning when the weights change while it plays (it keeps the model it has).
 */
/* The control of the set-up this thread runs (begin_setup's thread); null on any other thread. */
static thread_local const SetupControl *setup_control_of_thread = nullptr;

/* Whether this thread runs a set-up that newer settings replaced: it posts nothing more. */
static bool setup_superseded()
{
	return setup_control_of_thread && setup_control_of_thread->superseded;
}

/* While a set-up's thread posts a message, an application's synchronous handler of it may run
 * code of its own there (start this element again, set another one up): not the set-up's, so
 * its messages are not the set-up's to hold back. */
class SetupPosting {
public:
	SetupPosting() : saved_(setup_control_of_thread) { setup_control_of_thread = nullptr; }
	~SetupPosting() { setup_control_of_thread = saved_; }
	SetupPosting(const SetupPosting &) = delete;
	SetupPosting &operator=(const SetupPosting &) = delete;

private:
	const SetupControl *saved_;
};

#define GST_FRCNN_DETECT_PROBLEM(self, while_playing, domain, code, text, debug)   \
	G_STMT_START {                                                                \
		if (setup_superseded())                                               \
			break;                                                        \
		SetupPosting posting;                                                 \
		if (while_playing)                                                    \
			GST_ELEMENT_WARNING(self, domain, code, text, debug);         \
		else                                                                  \
			GST_ELEMENT_ERROR(self, domain, code, text, debug);           \
	} G_STMT_END

/* Thrown by the download's progress callback when a stop cancels a set-up. */
struct SetupCancelled {};

/* Posts a step of a weights download as a progress message of code "download"; whether it did.
 * A replaced set-up starts no download's report and goes on with none, but ends one it started
 * (gst-launch-1.0 waits for the reports it saw start before it plays). */
static bool post_download_progress(GstFrcnnDetect *self, GstProgressType type, const std::string &text)
{
	if (setup_superseded() && (type == GST_PROGRESS_TYPE_START || type == GST_PROGRESS_TYPE_CONTINUE))
		return false;
	SetupPosting posting;
	return gst_element_post_message(GST_ELEMENT(self),
					gst_message_new_progress(GST_OBJECT(self), type, "download", text.c_str()));
}

/*
 * Loads the model the settings name into `model`: gets and reads the weights, tells the model and
 * its classes from them where the settings leave it open, and builds the detector. Every failure
 * posts an error that says which property to change.
 */
static gboolean gst_frcnn_detect_load_model(GstFrcnnDetect *self, const Settings &settings,
					    const std::optional<frcnn::WeightsPreset> &preset,
					    frcnn::ModelConfig config, LoadedModel &model,
					    bool while_playing, const SetupControl *control)
{
	std::string path;
	/* A download goes on the bus as progress messages (gst-launch-1.0 prints them): a report
	 * that starts with its first call, and ends. */
	bool asked = false, reported = false;
	const std::string &weights = settings.weights;
	try {
		auto progress = [self, &asked, &reported, &weights, control, last = -1LL](long long done,
											  long long total) mutable {
			/* libcurl calls this at least once a second, also while no data comes. */
			if (control && control->gives_up())
				throw SetupCancelled();
			if (!asked) {
				asked = true;
				reported = post_download_progress(self, GST_PROGRESS_TYPE_START,
								  "Downloading the weights '" + weights + "' into " +
									  frcnn::hub_checkpoint_dir());
			}
			long long percent = total > 0 ? done * 100 / total : done >> 20;
			if (reported && percent / 10 != last / 10)
				post_download_progress(self, GST_PROGRESS_TYPE_CONTINUE,
						       "Downloading the weights '" + weights + "': " +
							       std::to_string(percent) + (total > 0 ? "%" : " MiB"));
			last = percent;
		};
		path = frcnn::resolve_weights(settings.weights, progress);
		if (reported)
			post_download_progress(self, GST_PROGRESS_TYPE_COMPLETE,
					       "Downloaded the weights '" + weights + "'");
	} catch (const SetupCancelled &) {
		GST_INFO_OBJECT(self, "stopped while downloading the weights '%s': not loaded",
				settings.weights.c_str());
		if (reported)
			post_download_progress(self, GST_PROGRESS_TYPE_CANCELED,
					       "Gave the download of the weights '" + weights + "' up: " +
						       (control && !control->stopped ? "other model settings replaced them"
										     : "the element stopped"));
		return FALSE;
	} catch (const std::exception &e) {
		if (reported)
			post_download_progress(self, GST_PROGRESS_TYPE_ERROR,
					       "Could not download the weights '" + weights + "'");
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, NOT_FOUND,
				  ("Could not get the weights '%s': %s. Set 'weights' to a readable "
				   "checkpoint file or a preset name (%s).",
				   settings.weights.c_str(), e.what(), preset_names().c_str()),
				  ("frcnn::resolve_weights() failed"));
		return FALSE;
	}

	int num_classes = 0;
	/* Read once: what the file holds decides the model, then the model loads from it. */
	std::shared_ptr<const frcnn::Checkpoint> checkpoint;
	try {
		/* Reading the file first tells an unreadable file from one that does not fit. */
		const auto info = frcnn::gst::checkpoint_info(path);
		checkpoint = info.checkpoint;
		model.file_arch = info.arch;
		model.file_classes = info.num_classes;
		/* Nothing tells the model: the default one would list the differences of another
		 * model, not of the one the weights are nearly of. */
		if (!settings.model_set && !preset && info.arch.empty()) {
			const std::string nearest = frcnn::gst::nearest_model(info);
			const std::string ending = nearest.empty() ? "." : "; they come nearest to " + nearest +
										   ": a damaged or edited checkpoint of it?";
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
					  ("Could not tell the model of the weights '%s': %s with the 'model' "
					   "property%s",
					   path.c_str(), info.arch_problem.c_str(), ending.c_str()),
					  ("frcnn::detect_arch() failed"));
			return FALSE;
		}
		const ModelChoice choice = choose_model(settings, preset, config.arch, info.arch, info.num_classes);
		if (choice.arch != config.arch) {
			GST_INFO_OBJECT(self, "weights '%s' are a %s checkpoint", path.c_str(),
					info.arch.c_str());
			config = frcnn::model_preset(choice.arch);
		}
		num_classes = choice.num_classes;
		model.settings = model_settings_text(settings, choice);
		model.weights = same_weights_text(settings.weights);
	} catch (const std::exception &e) {
		const std::string cached = frcnn::cached_download_advice(settings.weights);
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, OPEN_READ,
				  ("Could not read the weights file '%s': %s. %s", path.c_str(), e.what(),
				   cached.empty() ? "Set 'weights' to a checkpoint written by torch.save or gst-frcnn."
						  : cached.c_str()),
				  ("frcnn::read_checkpoint() failed"));
		return FALSE;
	}
	config.num_classes = num_classes;
	model.num_classes = num_classes;
	model.min_size = config.min_size;
	model.max_size = config.max_size;

	/* The element's own thresholds and sizes are set before each batch. */
	frcnn::DetectorOptions options;
	options.model = config;
	options.weights = path;
	options.checkpoint = std::move(checkpoint);
	options.device = settings.device;
	static_assert((int)GST_FRCNN_PRECISION_FP16 == (int)frcnn::Precision::Fp16 &&
			      (int)GST_FRCNN_PRECISION_BF16 == (int)frcnn::Precision::Bf16 &&
			      (int)GST_FRCNN_PRECISION_INT8 == (int)frcnn::Precision::Int8,
		      "GstFrcnnPrecision follows frcnn::Precision");
	options.precision = static_cast<frcnn::Precision>(settings.precision);
	options.int8_calibration = settings.int8_calibration;
	options.int8_calibration_frames = static_cast<int>(settings.int8_calibration_frames);
	if (settings.precision == GST_FRCNN_PRECISION_INT8) {
		const std::string unsupported = frcnn::int8_unsupported_reason(config);
		if (!unsupported.empty()) {
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
					  ("precision=int8 cannot run model '%s': %s. Set precision=fp32 (or bf16).",
					   config.arch.c_str(), unsupported.c_str()),
					  ("frcnn::int8_unsupported_reason()"));
			return FALSE;
		}
	}
	options.channels_last = settings.channels_last;
	static_assert((int)GST_FRCNN_CPU_CONVOLUTIONS_ONEDNN == (int)frcnn::CpuConvolutions::OneDnn &&
			      (int)GST_FRCNN_CPU_CONVOLUTIONS_LIBTORCH == (int)frcnn::CpuConvolutions::LibTorch,
		      "GstFrcnnCpuConvolutions follows frcnn::CpuConvolutions");
	options.cpu_convolutions = static_cast<frcnn::CpuConvolutions>(settings.cpu_convolutions);

	try {
		model.detector = std::make_unique<frcnn::Detector>(options);
	} catch (const frcnn::CalibrationError &e) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("Could not use the int8 calibration '%s': %s. Set 'int8-calibration' to a "
				   "file of this model and weights, or to a new file in a writable folder "
				   "(the element calibrates and writes it), or leave it empty.",
				   settings.int8_calibration.c_str(), e.what()),
				  ("frcnn::Detector() failed on the int8 calibration"));
		return FALSE;
	} catch (const frcnn::SettingsError &e) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("Could not set up model '%s' with these settings: %s.",
				   config.arch.c_str(), e.what()),
				  ("frcnn::Detector() refused the settings"));
		return FALSE;
	} catch (const frcnn::DamagedWeightsError &e) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, OPEN_READ,
				  ("Could not use the weights '%s': %s. Set 'weights' to another copy of the "
				   "checkpoint (of a training, an epoch before it diverged).",
				   path.c_str(), e.what()),
				  ("frcnn::Detector() refused the weights' values"));
		return FALSE;
	} catch (const std::exception &e) {
		/* A preset run as published (its own model and classes) that does not fit: the file
		 * the download cache holds under its name is another. */
		const bool as_published = preset && !settings.model_set && settings.num_classes == 0 &&
					  dynamic_cast<const frcnn::WeightsMismatchError *>(&e) != nullptr;
		const std::string cached = as_published ? frcnn::cached_download_advice(settings.weights) : "";
		if (!cached.empty())
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, OPEN_READ,
					  ("Could not set up model '%s' from '%s', the weights of preset '%s': %s. %s",
					   config.arch.c_str(), path.c_str(), settings.weights.c_str(), e.what(),
					   cached.c_str()),
					  ("frcnn::Detector() failed on a preset's cached file"));
		else
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, LIBRARY, INIT,
					  ("Could not set up model '%s' with %d classes on '%s' from '%s': %s. "
					   "Set 'model' and 'num-classes' to match the weights, and 'device' "
					   "to a device that exists.",
					   config.arch.c_str(), num_classes, settings.device.c_str(),
					   path.c_str(), e.what()),
					  ("frcnn::Detector() failed"));
		return FALSE;
	}
	/* Every run sets the thresholds and sizes of its batches: batches of elements sharing the
	 * model may want others than the run before. */
	const bool int8 = settings.precision == GST_FRCNN_PRECISION_INT8;
	model.int8_calibrating = int8 && !model.detector->int8_calibrated();
	model.int8_frames_needed = settings.int8_calibration_frames;
	model.int8_calibration_file = settings.int8_calibration;
	/* The run queue belongs to the model: it never outlives `model`. */
	model.runs = std::make_unique<frcnn::gst::RunQueue>(
		[detector = model.detector.get(), loaded = &model](
			const std::vector<frcnn::HeldFrame> &frames, const frcnn::gst::RunSettings &run) {
			detector->set_score_threshold(run.score_threshold);
			detector->set_nms_threshold(run.nms_threshold);
			detector->set_max_detections(run.max_detections);
			detector->set_image_size(run.min_size, run.max_size);
			auto detections = detector->detect(frames);
			if (loaded->int8_calibrating) {
				loaded->int8_frames_observed = detector->int8_frames_observed();
				if (detector->int8_calibrated()) {
					GST_INFO("int8: calibrated, the next batches run in 8 bits");
					loaded->int8_calibrating = false;
				}
				std::string unwritten = detector->take_int8_calibration_write_error();
				if (!unwritten.empty()) {
					std::lock_guard<std::mutex> lock(loaded->int8_write_error_mutex);
					loaded->int8_write_error = std::move(unwritten);
				}
			}
			return detections;
		});

	GST_INFO_OBJECT(self, "model %s, %d classes, weights %s, device %s", config.arch.c_str(),
			num_classes, path.c_str(), settings.device.c_str());
	return TRUE;
}

/*
 * Checks the settings that need no file (device, precision, weights given, the model a preset is
 * of) and gives the weights' preset and the model's configuration. Posts what is wrong.
 */
static bool gst_frcnn_detect_check_model_settings(GstFrcnnDetect *self, const Settings &settings,
						  bool while_playing,
						  std::optional<frcnn::WeightsPreset> &preset,
						  frcnn::ModelConfig &config)
{
	static const std::regex device_pattern("cpu|cuda(:[0-9]+)?");
	if (!std::regex_match(settings.device, device_pattern)) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("Unknown device '%s': set 'device' to cpu, cuda or cuda:N.",
				   settings.device.c_str()),
				  ("device property does not match cpu|cuda|cuda:N"));
		return false;
	}
	if (settings.device != "cpu" && !frcnn::Detector::cuda_built()) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("device=%s needs gst-frcnn built with a CUDA LibTorch, and this "
				   "build is CPU only: set device=cpu.", settings.device.c_str()),
				  ("frcnn::Detector::cuda_built() returned false"));
		return false;
	}

	if (settings.precision == GST_FRCNN_PRECISION_FP16 && settings.device == "cpu") {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("precision=fp16 needs a CUDA device: set precision=fp32 (or bf16) "
				   "or device=cuda."),
				  ("fp16 check failed: device is cpu"));
		return false;
	}
	if ((settings.precision == GST_FRCNN_PRECISION_BF16 || settings.precision == GST_FRCNN_PRECISION_INT8) &&
	    settings.device != "cpu") {
		const char *precision = frcnn::precision_name(static_cast<frcnn::Precision>(settings.precision));
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("precision=%s is for the CPU: set precision=fp16 (or fp32) "
				   "with device=%s, or device=cpu.", precision, settings.device.c_str()),
				  ("%s check failed: device is %s", precision, settings.device.c_str()));
		return false;
	}
	if (settings.precision == GST_FRCNN_PRECISION_BF16 && !frcnn::cpu_has_bf16()) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("precision=bf16 needs a CPU with bfloat16 instructions (AVX-512 BF16 "
				   "or AMX), %s: set precision=fp32.",
				   frcnn::cpu_bf16_unavailable_reason().c_str()),
				  ("frcnn::cpu_has_bf16() returned false"));
		return false;
	}

	if (settings.weights.empty()) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, NOT_FOUND,
				  ("No weights: set 'weights' to a checkpoint file, a preset name "
				   "(%s) or a URL.", preset_names().c_str()),
				  ("weights property is empty"));
		return false;
	}

	/* A weights preset brings its architecture, class count and batch-norm eps. */
	std::string arch = settings.model;
	try {
		preset = frcnn::weights_preset_of(settings.weights);
		if (preset) {
			if (settings.model_set && frcnn::model_preset(settings.model).arch !=
						  frcnn::model_preset(preset->arch).arch) {
				GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
						  ("The weights '%s' are for model '%s' but model is "
						   "'%s': set model=%s or leave it unset.",
						   settings.weights.c_str(), preset->arch.c_str(),
						   settings.model.c_str(), preset->arch.c_str()),
						  ("weights preset %s does not match the model property",
						   preset->name.c_str()));
				return false;
			}
			arch = preset->arch;
		}
		config = frcnn::model_preset(arch);
		if (preset)
			config.frozen_bn_eps = preset->frozen_bn_eps;
	} catch (const std::exception &e) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
				  ("Unknown model '%s': %s. Set 'model' to one of these.",
				   arch.c_str(), e.what()),
				  ("frcnn::model_preset() failed"));
		return false;
	}
	return true;
}

/* The texts of the errors of the labels and of the class filters, which the checks before the
 * weights load and those after share (GST_ELEMENT_ERROR's text and debug arguments). */
#define LABELS_ERROR_TEXT(what)                                                                    \
	("Could not use the labels: %s. Set 'labels' to a file with one class name per line, or unset it.", what)
#define LABELS_ERROR_DEBUG(settings) ("reading labels file '%s' failed", (settings).labels.c_str())
#define CLASSES_ERROR_TEXT(what, consequence) ("Invalid 'classes': %s%s.", what, consequence)
#define CLASSES_ERROR_DEBUG(settings) ("parsing classes '%s' failed", (settings).classes.c_str())
#define CLASS_THRESHOLDS_ERROR_TEXT(what)                                                          \
	("Invalid 'class-thresholds': %s. Set it to class=score entries separated by commas "       \
	 "(e.g. person=0.7,car=0.3), or leave it empty.", what)
#define CLASS_THRESHOLDS_ERROR_DEBUG(settings)                                                     \
	("parsing class-thresholds '%s' failed", (settings).class_thresholds.c_str())

/*
 * The class names of a model of `num_classes` classes (the labels file's, `labels_file_names`
 * where it was read already, else the defaults) and the class filters of the settings by their
 * ids. Every failure posts a message that says which property to change and returns nothing.
 */
static std::optional<ClassSetup> gst_frcnn_detect_setup_classes(GstFrcnnDetect *self, const Settings &settings,
								bool while_playing, int num_classes,
								std::optional<std::vector<std::string>> labels_file_names,
								const std::vector<std::string> &playing_labels)
{
	std::vector<std::string> labels;
	try {
		if (settings.labels.empty())
			labels = frcnn::default_labels(num_classes);
		else
			labels = frcnn::labels_of_file_names(labels_file_names ? std::move(*labels_file_names)
									       : frcnn::read_labels_file_names(settings.labels),
							     settings.labels, num_classes);
	} catch (const std::exception &e) {
		GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, OPEN_READ, LABELS_ERROR_TEXT(e.what()),
					 LABELS_ERROR_DEBUG(settings));
		return std::nullopt;
	}

	/* At start an invalid filter fails the start. While playing, new weights of the labels in
	 * use load with the filter the element has (its class ids mean the same classes), as for
	 * such a value set while playing; with other labels they do not load. */
	const bool same_labels = while_playing && labels == playing_labels;
	ClassSetup setup;
	setup.num_classes = num_classes;
	setup.labels = std::move(labels);
	const std::string not_loaded = "the weights '" + settings.weights +
				       "' are not loaded: their labels are not those in use, which the "
				       "element's filter is of; set it to names of theirs (or empty) and "
				       "'weights' again";
	try {
		setup.class_filter = frcnn::parse_classes(settings.classes, setup.labels);
	} catch (const std::exception &e) {
		if (same_labels) {
			GST_FRCNN_DETECT_PROBLEM(self, true, RESOURCE, SETTINGS,
					    ("Invalid 'classes' for the weights '%s', keeping the previous filter: %s.",
					     settings.weights.c_str(), e.what()),
					    ("parsing classes '%s' failed", settings.classes.c_str()));
			setup.keep_class_filter = true;
		} else {
			const std::string consequence = while_playing ? "; " + not_loaded : std::string();
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
						 CLASSES_ERROR_TEXT(e.what(), consequence.c_str()), CLASSES_ERROR_DEBUG(settings));
			return std::nullopt;
		}
	}
	try {
		setup.class_thresholds = frcnn::parse_class_thresholds(settings.class_thresholds, setup.labels);
	} catch (const std::exception &e) {
		if (same_labels) {
			GST_FRCNN_DETECT_PROBLEM(self, true, RESOURCE, SETTINGS,
					    ("Invalid 'class-thresholds' for the weights '%s', keeping the previous "
					     "ones: %s.", settings.weights.c_str(), e.what()),
					    ("parsing class-thresholds '%s' failed", settings.class_thresholds.c_str()));
			setup.keep_class_thresholds = true;
		} else if (while_playing) {
			GST_FRCNN_DETECT_PROBLEM(self, true, RESOURCE, SETTINGS,
					    ("Invalid 'class-thresholds': %s; %s.", e.what(), not_loaded.c_str()),
					    ("parsing class-thresholds '%s' failed", settings.class_thresholds.c_str()));
			return std::nullopt;
		} else {
			GST_FRCNN_DETECT_PROBLEM(self, false, RESOURCE, SETTINGS, CLASS_THRESHOLDS_ERROR_TEXT(e.what()),
						 CLASS_THRESHOLDS_ERROR_DEBUG(settings));
			return std::nullopt;
		}
	}
	return setup;
}

/*
 * Before the weights load (or download). At start: the labels file is read and the class filters
 * are checked against the names any model could have with it (its names; without one, COCO's or
 * "class N"), so that a typing error fails the start at once. While playing, where a filter that
 * does not parse may be kept for the new weights (see gst_frcnn_detect_setup_classes), the file
 * is read only: weights whose labels cannot be read do not load. Where the weights download and
 * tell their class count (a preset's), the labels and filters are set up for it into `classes`,
 * rather than after the download; otherwise what needs the model's class count (the file's
 * number of names, ids in range) is checked once it is loaded. Fills `labels_file_names` with the
 * file's names.
 */
static bool gst_frcnn_detect_check_filters_before_load(GstFrcnnDetect *self, const Settings &settings,
						       bool while_playing,
						       const std::vector<std::string> &playing_labels,
						       std::optional<std::vector<std::string>> &labels_file_names,
						       std::optional<ClassSetup> &classes)
{
	if (!settings.labels.empty()) {
		try {
			labels_file_names = frcnn::read_labels_file_names(settings.labels);
		} catch (const std::exception &e) {
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, OPEN_READ, LABELS_ERROR_TEXT(e.what()),
						 LABELS_ERROR_DEBUG(settings));
			return false;
		}
	}
	if (!while_playing) {
		const std::vector<std::string> *names = labels_file_names ? &*labels_file_names : nullptr;
		try {
			frcnn::check_class_names(frcnn::comma_separated(settings.classes), names);
		} catch (const std::exception &e) {
			GST_FRCNN_DETECT_PROBLEM(self, false, RESOURCE, SETTINGS, CLASSES_ERROR_TEXT(e.what(), ""),
						 CLASSES_ERROR_DEBUG(settings));
			return false;
		}
		try {
			frcnn::check_class_names(frcnn::split_class_thresholds(settings.class_thresholds), names);
		} catch (const std::exception &e) {
			GST_FRCNN_DETECT_PROBLEM(self, false, RESOURCE, SETTINGS,
						 CLASS_THRESHOLDS_ERROR_TEXT(e.what()),
						 CLASS_THRESHOLDS_ERROR_DEBUG(settings));
			return false;
		}
	}
	const int num_classes =
		frcnn::class_count_before_download(settings.weights, static_cast<int>(settings.num_classes));
	if (num_classes == 0)
		return true;
	classes = gst_frcnn_detect_setup_classes(self, settings, while_playing, num_classes, labels_file_names,
						 playing_labels);
	return classes.has_value();
}

/*
 * Builds the model the settings name, or takes the one loaded under the same model-instance-id,
 * with the class names and filters that depend on its classes. Every failure posts a message that
 * says which property to change (see GST_FRCNN_DETECT_PROBLEM) and returns nothing; so does a
 * set-up that `control` gave up (null where nothing can), without a message.
 */
static std::optional<ModelSetup> gst_frcnn_detect_setup_model(GstFrcnnDetect *self,
							      const Settings &settings,
							      bool while_playing,
							      SetupControl *control = nullptr,
							      const std::vector<std::string> &playing_labels = {})
{
	std::optional<frcnn::WeightsPreset> preset;
	frcnn::ModelConfig config;
	if (!gst_frcnn_detect_check_model_settings(self, settings, while_playing, preset, config))
		return std::nullopt;
	std::optional<std::vector<std::string>> labels_file_names;
	std::optional<ClassSetup> classes;
	if (!gst_frcnn_detect_check_filters_before_load(self, settings, while_playing, playing_labels,
							labels_file_names, classes))
		return std::nullopt;

	/*
	 * Under a model-instance-id, the model that another element loaded with the same settings,
	 * else one loaded here and registered for the others. The id stays locked meanwhile, so
	 * that elements starting together load it once.
	 */
	std::shared_ptr<LoadedModel> model;
	std::shared_ptr<SharedModel> shared;
	std::unique_lock<std::timed_mutex> loading;
	const std::string &id = settings.model_instance_id;
	if (!id.empty()) {
		shared = shared_models().entry(id);
		/* Another element may be loading it (a download): a stop does not wait for that. */
		loading = std::unique_lock<std::timed_mutex>(shared->loading, std::defer_lock);
		while (!loading.try_lock_for(std::chrono::milliseconds(100))) {
			if (control && control->gives_up()) {
				GST_INFO_OBJECT(self, "stopped while waiting for the model of model-instance-id "
						"'%s': not loaded", id.c_str());
				return std::nullopt;
			}
		}
		model = shared->model.lock(); // empty once its last element let it go
		/* The model and class count this element would take from the same weights file
		 * (another file differs in its name anyway, and is not read). */
		const std::string wanted =
			model ? model_settings_text(settings, choose_model(settings, preset, config.arch,
									   model->file_arch, model->file_classes))
			      : std::string();
		if (model && model->settings != wanted) {
			/* Of another file, its own model and class count are unknown unless set (the
			 * file is not read to tell them): shown unset, not as the shared file's. */
			const bool same_file = same_weights_text(settings.weights) == model->weights;
			const ModelChoice unread{ settings.model_set || preset ? config.arch : "(unset)",
						  settings.num_classes ? static_cast<int>(settings.num_classes)
						  : preset		 ? preset->num_classes
									 : -1 };
			const std::string mine = same_file ? wanted : model_settings_text(settings, unread);
			const bool told_by_file = !same_file && (unread.arch == "(unset)" || unread.num_classes < 0);
			GST_FRCNN_DETECT_PROBLEM(self, while_playing, RESOURCE, SETTINGS,
					  ("model-instance-id '%s' is in use by a model loaded with other "
					   "settings (%s; this element has %s%s): give this element the same "
					   "model settings or another model-instance-id.",
					   id.c_str(), model->settings.c_str(), mine.c_str(),
					   told_by_file ? ", (unset) to be told by its weights" : ""),
					  ("the settings differ from those of the shared model"));
			return std::nullopt;
		}
		if (model)
			GST_INFO_OBJECT(self, "shares the model loaded under model-instance-id '%s'",
					id.c_str());
	}
	if (!model) {
		model = std::make_shared<LoadedModel>();
		if (!gst_frcnn_detect_load_model(self, settings, preset, config, *model, while_playing, control))
			return std::nullopt;
		/* Replaced while it loaded: the id's model is the replacing settings' to load. */
		if (control) {
			std::lock_guard<std::mutex> lock(control->publishing);
			if (control->superseded)
				return std::nullopt;
			if (shared)
				shared->model = model;
		} else if (shared) {
			shared->model = model;
		}
	}
	if (loading.owns_lock())
		loading.unlock();

	/* Unless set up before a download, for the class count the weights were to have (which
	 * the model, loaded, is checked to have). */
	if (!classes || classes->num_classes != model->num_classes) {
		classes = gst_frcnn_detect_setup_classes(self, settings, while_playing, model->num_classes,
							  std::move(labels_file_names), playing_labels);
		if (!classes)
			return std::nullopt;
	}
	ModelSetup setup;
	static_cast<ClassSetup &>(setup) = std::move(*classes);
	setup.model = std::move(model);
	return setup;
}

/* Makes a set-up model the element's, with the class filters parsed from `settings` (a batch
 * parses them again when the properties say otherwise by then). */
static void gst_frcnn_detect_install_model(GstFrcnnDetect *self, ModelSetup setup,
					   const Settings &settings, guint64 generation)
{
	GstFrcnnDetectState *state = self->state;
	state->model = std::move(setup.model);
	state->detector_generation = generation;
	state->loaded_settings = settings;
	state->labels = std::move(setup.labels);
	if (!setup.keep_class_filter)
		state->class_filter = std::move(setup.class_filter);
	if (!setup.keep_class_thresholds)
		state->class_thresholds = std::move(setup.class_thresholds);
	state->applied = runtime_settings(settings);
}


/*
 * A worker whose message's handler stopped it: an application's synchronous bus handler that set
 * the element to READY or NULL (and maybe started it again) on the worker's thread, inside
 * gst_element_post_message(). The stop could not wait for the worker, which runs on: the model
 * it was about to use may be gone and a new worker may use the state. So after each message it
 * posts, the worker checks whether it was stopped and, if so, leaves at once by this exception,
 * caught at the top of its thread, touching nothing of the element's state on the way.
 */
struct WorkerStopped {};

/* The worker_generation of the worker running on this thread; 0 on any other thread. */
static thread_local guint64 worker_generation_of_thread = 0;

/* Throws WorkerStopped on a worker's thread whose worker was stopped. Called after each message
 * the worker posts (the posting function may have run the handler). */
static void gst_frcnn_detect_leave_if_stopped(GstFrcnnDetect *self)
{
	if (worker_generation_of_thread == 0)
		return;
	GstFrcnnDetectState *state = self->state;
	std::lock_guard<std::mutex> lock(state->mutex);
	if (state->worker_generation != worker_generation_of_thread)
		throw WorkerStopped();
}

/*
 * Gives the worker's thread `threads` CPU threads, and LibTorch's default count again when it goes
 * back to 0. The count belongs to the thread, and each start has a new worker thread, so it is
 * checked before every batch (which costs nothing when it is already right).
 */
static void gst_frcnn_detect_apply_threads(GstFrcnnDetect *self, guint threads)
{
	GstFrcnnDetectState *state = self->state;
	if (threads > 0 || state->threads_set) {
		const int count = threads > 0 ? static_cast<int>(threads) : frcnn::default_cpu_threads();
		try {
			frcnn::set_cpu_threads(count);
			state->threads_set = threads > 0;
			state->threads_failed = -1;
		} catch (const std::exception &e) {
			if (state->threads_failed != static_cast<gint64>(threads)) {
				GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
						    ("Could not set 'threads' to %u, keeping %d CPU "
						     "threads: %s.", threads, frcnn::cpu_threads(), e.what()),
						    ("frcnn::set_cpu_threads(%d) failed", count));
				gst_frcnn_detect_leave_if_stopped(self);
				state->threads_failed = threads;
			}
		}
	}
	const int now = frcnn::cpu_threads();
	state->stats.cpu_threads = static_cast<guint64>(now);
	if (now != state->logged_threads) {
		GST_INFO_OBJECT(self, "batches run on %d CPU threads", now);
		state->logged_threads = now;
	}
}

/*
 * Weights changed while playing: on the worker, between batches. The first batch after the change
 * starts setting up a model for the new weights on a thread of its own (with the element's
 * model, num-classes and labels as they are then), while the batches go on with the model they
 * have; the first batch after that has finished runs on the new model, or, if it failed (a
 * warning says why), on the old one still. The frames already held for the old model run on the
 * new one: both are on the same device. A change of device, precision, channels-last,
 * cpu-convolutions or model-instance-id, and any change on a shared model, waits for the next
 * start (a warning says so).
 */
static void gst_frcnn_detect_take_reload(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	std::optional<ModelSetup> setup = state->reload.get();
	if (!setup)
		return;
	/* The model replaced goes once the lock is released: chain() takes the lock meanwhile. */
	std::shared_ptr<LoadedModel> replaced = state->model;
	{
		std::lock_guard<std::mutex> lock(state->mutex);
		gst_frcnn_detect_install_model(self, std::move(*setup), state->reload_settings,
					       state->reload_generation);
	}
	replaced.reset();
	GST_INFO_OBJECT(self, "now running on the weights '%s'", state->reload_settings.weights.c_str());
}

/* The settings as they are now, and their generation (read under the object lock). */
static Settings gst_frcnn_detect_current_settings(GstFrcnnDetect *self, guint64 *generation)
{
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
	*generation = self->state->settings_generation;
	return self->state->settings;
}

/* When a model is set up on a thread of its own: at the start, whose weights download (the frames
 * wait for it), or while playing, for new weights (the batches go on meanwhile). */
enum class SetupTime { AtStart, WhilePlaying };

/* What a model's set-up on a thread of its own gives, and its thread's end. */
struct SetupResult {
	std::promise<std::optional<ModelSetup>> setup;
	std::promise<void> done; // its last message is out
};

/* The body of a set-up's thread (see begin_setup). */
static void gst_frcnn_detect_run_setup(GstFrcnnDetect *self, const Settings &settings, SetupTime when,
				       const std::vector<std::string> &labels, SetupControl &control,
				       const std::shared_ptr<SetupResult> &result)
{
	const bool at_start = when == SetupTime::AtStart;
	std::optional<ModelSetup> setup;
	std::string failure;
	try {
		setup = gst_frcnn_detect_setup_model(self, settings, !at_start, &control, labels);
	} catch (const std::exception &e) {
		failure = e.what();
	}
	/* Replaced meanwhile: nothing of it is wanted, nor heard of. Else it is handed over, and
	 * nothing replaces it any more. */
	bool superseded;
	{
		std::lock_guard<std::mutex> lock(control.publishing);
		superseded = control.superseded;
		control.published = !superseded;
	}
	if (superseded) {
		setup.reset();
		failure.clear();
	}
	/* Its messages are its own (a handler may run code of its own during them). */
	SetupPosting posting;
	const bool loaded = setup.has_value();
	if (at_start) {
		/* Every failure it knows of it posts itself; this is the rest (out of memory), posted
		 * before the waiting frame hears of it. */
		if (!failure.empty())
			GST_ELEMENT_ERROR(self, RESOURCE, FAILED,
					  ("Could not set up the weights '%s': %s.", settings.weights.c_str(),
					   failure.c_str()),
					  ("set up at start"));
		result->setup.set_value(std::move(setup));
		std::lock_guard<std::mutex> lock(self->state->mutex);
		self->state->item_removed.notify_all();
		return;
	}
	/* The result is handed over before the message goes out, so that the batch after the
	 * message finds it. */
	result->setup.set_value(std::move(setup));
	/* Every failure it knows of it posts itself; this is the rest (out of memory). */
	if (!failure.empty())
		GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
				    ("Could not set up the weights '%s': %s.", settings.weights.c_str(),
				     failure.c_str()),
				    ("set up while playing"));
	if (loaded)
		GST_ELEMENT_INFO(self, RESOURCE, SETTINGS,
				 ("Loaded the weights '%s': the next batch runs on them.", settings.weights.c_str()),
				 ("set up while playing"));
}

/*
 * Sets up a model for `settings` on a thread of its own, whose result `reload` gives: the start's
 * model, which the first frame waits for (gst_frcnn_detect_wait_for_model), or new weights',
 * which a batch takes once they are ready (check_reload). A stop gives its download up
 * (cancel_setup) and keeps a model it set up for the next start; newer settings replace it
 * (supersede_setup).
 *
 * The thread holds a reference to the element and is not joined: an application's handler of
 * one of its messages may stop the element, start it again (a new set-up) or drop it, on that
 * thread; the element then goes when the thread ends. `reload_task` tells when it has posted its
 * last message.
 */
static void gst_frcnn_detect_begin_setup(GstFrcnnDetect *self, const Settings &settings, guint64 generation,
					 SetupTime when)
{
	GstFrcnnDetectState *state = self->state;
	state->reload_settings = settings;
	state->reload_generation = generation;
	auto result = std::make_shared<SetupResult>();
	auto control = std::make_shared<SetupControl>();
	state->reload = result->setup.get_future();
	state->reload_task = result->done.get_future();
	state->setup_control = control;
	gst_object_ref(self);
	try {
		std::thread([self, settings, when, labels = state->labels, control, result]() {
			reload_task_of = self;
			setup_control_of_thread = control.get();
			try {
				gst_frcnn_detect_run_setup(self, settings, when, labels, *control, result);
			} catch (...) {
				/* Out of memory posting a message: no model, unless it was handed over. */
				try {
					result->setup.set_value(std::nullopt);
				} catch (...) {
				}
			}
			result->done.set_value();
			gst_object_unref(self);
		}).detach();
	} catch (const std::system_error &e) {
		gst_object_unref(self);
		result->setup.set_value(std::nullopt);
		result->done.set_value();
		GST_FRCNN_DETECT_PROBLEM(self, when == SetupTime::WhilePlaying, RESOURCE, FAILED,
					 ("Could not start a thread to set up the weights '%s': %s.",
					  settings.weights.c_str(), e.what()),
					 ("std::thread failed"));
	}
}

/* What newer settings do to the set-up in progress. */
enum class NewerSettings {
	Same,	  // the same model settings: it goes on, for their generation
	Replaced, // it is given up (supersede_setup): a set-up of theirs is to begin
	Ready,	  // it has handed its result over meanwhile: take it (they replace it later)
};

static NewerSettings gst_frcnn_detect_take_newer_settings(GstFrcnnDetect *self, const Settings &settings,
							   guint64 generation)
{
	GstFrcnnDetectState *state = self->state;
	if (same_model_settings(settings, state->reload_settings)) {
		state->reload_generation = generation;
		return NewerSettings::Same;
	}
	if (!state->supersede_setup())
		return NewerSettings::Ready;
	GST_INFO_OBJECT(self, "the weights '%s' replace '%s', which were being set up", settings.weights.c_str(),
			state->reload_settings.weights.c_str());
	return NewerSettings::Replaced;
}

static void gst_frcnn_detect_check_reload(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	if (state->reload.valid()) {
		if (state->reload.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
			gst_frcnn_detect_take_reload(self);
		} else {
			/* Newer settings replace the set-up in progress (a long download, say): the
			 * batches would otherwise wait for it to take them up. Every batch comes here:
			 * the settings are copied only when they changed. */
			if (state->settings_generation == state->reload_generation)
				return;
			guint64 generation;
			const Settings settings = gst_frcnn_detect_current_settings(self, &generation);
			switch (gst_frcnn_detect_take_newer_settings(self, settings, generation)) {
			case NewerSettings::Same:
				return;
			case NewerSettings::Ready:
				gst_frcnn_detect_take_reload(self); /* runs, then is replaced */
				break;
			case NewerSettings::Replaced:
				break;
			}
		}
	}
	/* The set-up's result is handed over before its message goes out (the batch after the
	 * message runs on it); a next set-up waits until the message is out too: it replaces the
	 * task, which waits for its thread (for ever, were an application's handler of that message
	 * stopping the element meanwhile, which waits for this worker). */
	if (state->reload_task.valid() &&
	    state->reload_task.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
		return;

	/* Every batch comes here: the settings are copied only when they changed. */
	Settings settings;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		const guint64 generation = state->settings_generation;
		if (generation == state->detector_generation || generation == state->reload_generation)
			return;
		state->reload_generation = generation;
		settings = state->settings;
	}

	const Settings &loaded = state->loaded_settings;
	/* The settings that wait for the next start, by name: a change of `weights` waits with them
	 * (the model would be built from all of them). */
	std::string waiting;
	const auto changed = [&waiting](bool differs, const char *name) {
		if (differs)
			waiting += (waiting.empty() ? "'" : ", '") + std::string(name) + "'";
	};
	changed(settings.model_instance_id != loaded.model_instance_id, "model-instance-id");
	changed(settings.device != loaded.device, "device");
	changed(settings.precision != loaded.precision, "precision");
	changed(settings.int8_calibration != loaded.int8_calibration, "int8-calibration");
	changed(settings.int8_calibration_frames != loaded.int8_calibration_frames, "int8-calibration-frames");
	changed(settings.channels_last != loaded.channels_last, "channels-last");
	changed(settings.cpu_convolutions != loaded.cpu_convolutions, "cpu-convolutions");
	if (!loaded.model_instance_id.empty() || !waiting.empty()) {
		const std::string why =
			!loaded.model_instance_id.empty()
				? "the model is shared under model-instance-id '" + loaded.model_instance_id +
					  "', whose model settings change only when its elements start again"
				: waiting + " changed while playing, which take effect at the next start; "
					    "'weights', 'model', 'num-classes' and 'labels' changed since wait for it too";
		GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
				    ("The model settings wait for the next start: %s.", why.c_str()),
				    ("now %s; loaded %s", model_settings_text(settings).c_str(),
				     model_settings_text(loaded).c_str()));
		return;
	}
	GST_INFO_OBJECT(self, "setting up the weights '%s' while playing", settings.weights.c_str());
	gst_frcnn_detect_begin_setup(self, settings, state->reload_generation, SetupTime::WhilePlaying);
}

/* Waits for a model being set up on its own thread (begin_setup), and makes it the element's if it
 * was. Not on the set-up's own thread (an application's synchronous handler of its message
 * stopping the element): it could not wait for itself, and the next batch (or the next start)
 * takes the model it sets up, if any. */
static void gst_frcnn_detect_finish_reload(GstFrcnnDetect *self)
{
	if (reload_task_of == self)
		return;
	GstFrcnnDetectState *state = self->state;
	if (state->reload.valid())
		gst_frcnn_detect_take_reload(self);
	if (state->reload_task.valid())
		state->reload_task.wait();
	/* Those that newer settings replaced, which a stop gave up too. */
	for (const SupersededSetup &superseded : state->superseded_setups)
		superseded.done.wait();
	state->superseded_setups.clear();
}

/*
 * Builds the detector from the settings, or takes the one loaded under the same
 * model-instance-id. Every failure posts an error that says which property to change; the state
 * change then fails. Weights that have to be downloaded (or a model-instance-id's model that
 * another element is loading) are set up after the state change, on a thread of their own: a
 * failure there posts its error then, and the first frame fails.
 */
static gboolean gst_frcnn_detect_open(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	guint64 generation;
	const Settings settings = gst_frcnn_detect_current_settings(self, &generation);

	try {
		state->region = frcnn::gst::parse_region(settings.region);
		state->region_text = settings.region;
	} catch (const std::exception &e) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
				  ("Invalid 'region' '%s': %s. Set 'region' to x,y,width,height in "
				   "frame pixels (e.g. 100,50,640,360), or leave it empty.",
				   settings.region.c_str(), e.what()),
				  ("parsing region '%s' failed", settings.region.c_str()));
		return FALSE;
	}
	if (state->region && settings.inference_region == GST_FRCNN_INFERENCE_REGION_ROI_LIST) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
				  ("'region' and inference-region=roi-list exclude each other: the "
				   "detector runs on the regions of interest attached upstream. Leave "
				   "'region' empty, or set inference-region=full-frame."),
				  ("region '%s' with inference-region=roi-list", settings.region.c_str()));
		return FALSE;
	}
	GST_OBJECT_LOCK(self);
	state->inference_region = settings.inference_region;
	GST_OBJECT_UNLOCK(self);

	/* A set-up left from before (a start that failed after this, a stop from a handler of the
	 * set-up's own message) is finished first: its model may be the one wanted. Not on its own
	 * thread, which cannot wait for itself: the stop gave it up, and a new one begins. */
	const bool on_setup_thread = reload_task_of == self;
	if (!on_setup_thread) {
		state->cancel_setup();
		gst_frcnn_detect_finish_reload(self);
	}
	if (state->model && state->detector_generation == generation)
		return TRUE;

	/* Two large models may not fit side by side on a device. */
	state->model.reset();
	state->detector_generation = 0;

	/* A download could hold the state change up for minutes, which nothing could interrupt: the
	 * model is set up on a thread of its own, and the first frame waits for it. The settings
	 * that need no file are checked first, so that they fail the start as before. So is the
	 * model of a start from a handler of a set-up's message, on the set-up's thread: the
	 * set-up it interrupts may hold the lock of the model-instance-id's model. */
	bool on_a_thread = on_setup_thread;
	try {
		on_a_thread = on_a_thread || frcnn::weights_need_download(settings.weights);
	} catch (const std::exception &e) {
		GST_DEBUG_OBJECT(self, "cannot tell whether the weights download: %s", e.what());
	}
	/* So is one whose model-instance-id's model another element is loading (its download,
	 * say): waiting for that here would hold the state change up alike. A look at the lock, not
	 * a hold of it: an element that takes it just after (or only looks the model up meanwhile)
	 * makes this start wait, or go to a thread, for nothing worse than that. */
	if (!on_a_thread && !settings.model_instance_id.empty()) {
		const std::shared_ptr<SharedModel> shared = shared_models().entry(settings.model_instance_id);
		std::unique_lock<std::timed_mutex> idle(shared->loading, std::try_to_lock);
		on_a_thread = !idle.owns_lock();
	}
	if (on_a_thread) {
		std::optional<frcnn::WeightsPreset> preset;
		frcnn::ModelConfig config;
		if (!gst_frcnn_detect_check_model_settings(self, settings, false, preset, config))
			return FALSE;
		/* The labels and class names too, before a download (the set-up checks them again). */
		std::optional<std::vector<std::string>> labels_file_names;
		std::optional<ClassSetup> classes;
		if (!gst_frcnn_detect_check_filters_before_load(self, settings, false, {}, labels_file_names, classes))
			return FALSE;
		GST_INFO_OBJECT(self, "the weights '%s' are set up after the start (a download, or another "
				"element's load of the model-instance-id's model); frames wait for them",
				settings.weights.c_str());
		/* The set-up this start interrupts (its thread's) is not wanted any more. */
		if (on_setup_thread)
			state->supersede_setup();
		gst_frcnn_detect_begin_setup(self, settings, generation, SetupTime::AtStart);
		return TRUE;
	}

	std::optional<ModelSetup> setup = gst_frcnn_detect_setup_model(self, settings, false);
	if (!setup)
		return FALSE;
	gst_frcnn_detect_install_model(self, std::move(*setup), settings, generation);
	return TRUE;
}

/* Whether the element filters single detections after the model (classes, class-thresholds,
 * box sizes), as they are applied. */
static bool filters_detections(const GstFrcnnDetectState &state)
{
	return !state.class_filter.empty() || !state.class_thresholds.empty() || state.applied.min_box_size > 0 ||
	       state.applied.max_box_size > 0;
}

/*
 * Takes up a class filter property (`classes`, `class-thresholds`) changed while playing: parses
 * `wanted` against the labels in use into `filter`, and returns the value now applied. One that
 * does not parse keeps the previous filter, with a warning; while new labels are being set up it
 * waits for them (the applied value stays, so that it is parsed again after them).
 */
template <typename Filter, typename Parse>
static std::string gst_frcnn_detect_take_filter(GstFrcnnDetect *self, const std::string &wanted,
						const std::string &applied, bool labels_coming, Filter &filter,
						Parse parse, const char *property, const char *kept)
{
	if (wanted == applied)
		return applied;
	try {
		filter = parse(wanted, self->state->labels);
		return wanted;
	} catch (const std::exception &e) {
		if (labels_coming)
			return applied;
		GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
				    ("Invalid '%s', keeping the previous %s: %s.", property, kept, e.what()),
				    ("parsing %s '%s' failed", property, wanted.c_str()));
		gst_frcnn_detect_leave_if_stopped(self);
		return wanted;
	}
}

/*
 * Takes up the properties that may change while playing, on the worker between batches: the
 * thread count and the class filter here, the detector settings the batch runs with returned
 * (the run sets them on the model, which other elements may share).
 */
static frcnn::gst::RunSettings gst_frcnn_detect_update_settings(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	RuntimeSettings wanted;
	guint threads;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		wanted = runtime_settings(state->settings);
		threads = state->settings.threads;
	}
	gst_frcnn_detect_apply_threads(self, threads);

	/* Names the labels being set up (new weights or labels while playing) may know wait for
	 * them: the set-up parses the filter against its own labels. */
	const bool labels_coming = state->reload.valid();
	wanted.classes = gst_frcnn_detect_take_filter(self, wanted.classes, state->applied.classes, labels_coming,
						      state->class_filter, frcnn::parse_classes, "classes",
						      "filter");
	wanted.class_thresholds = gst_frcnn_detect_take_filter(self, wanted.class_thresholds,
							       state->applied.class_thresholds, labels_coming,
							       state->class_thresholds,
							       frcnn::parse_class_thresholds,
							       "class-thresholds", "ones");
	state->applied = wanted;
	/* The warnings above (and apply_threads') went to the bus. */
	gst_frcnn_detect_leave_if_stopped(self);

	const LoadedModel &model = *state->model;
	frcnn::gst::RunSettings run;
	run.score_threshold = wanted.threshold;
	run.nms_threshold = wanted.nms_threshold;
	run.max_detections = static_cast<int>(wanted.max_detections);
	/* With thresholds of single classes, the model keeps every detection above the lowest
	 * threshold, and the batch keeps those above their class's threshold (NMS is by class, so
	 * a class's detections are those its threshold alone would give). With any filter of single
	 * detections (classes, class thresholds, box sizes), the model keeps them all and the batch
	 * the best max-detections of those the filters keep (keep_wanted_detections). */
	run.score_threshold = frcnn::lowest_score_threshold(run.score_threshold, state->class_thresholds);
	if (filters_detections(*state))
		run.max_detections = std::numeric_limits<int>::max();
	run.min_size = wanted.min_size ? static_cast<int>(wanted.min_size) : model.min_size;
	run.max_size = wanted.max_size ? static_cast<int>(wanted.max_size) : model.max_size;
	return run;
}

/*
 * Keeps the detections (best first) of the `classes`, whose score is above their class's
 * threshold (`threshold` for a class without one of its own) and whose box is within the box
 * sizes, then the best `max-detections`. The model compares its float scores with a threshold
 * in float, and so does this.
 */
static void keep_wanted_detections(std::vector<frcnn::Detection> &detections, const GstFrcnnDetectState &state)
{
	const RuntimeSettings &applied = state.applied;
	auto dropped = [&](const frcnn::Detection &det) {
		if (!frcnn::kept_by_class(det.label, det.score, state.class_filter, state.class_thresholds, applied.threshold))
			return true;
		const float width = det.x2 - det.x1, height = det.y2 - det.y1;
		if (applied.min_box_size > 0 &&
		    (width < static_cast<float>(applied.min_box_size) || height < static_cast<float>(applied.min_box_size)))
			return true;
		return applied.max_box_size > 0 && (width > static_cast<float>(applied.max_box_size) ||
						    height > static_cast<float>(applied.max_box_size));
	};
	detections.erase(std::remove_if(detections.begin(), detections.end(), dropped), detections.end());
	if (detections.size() > applied.max_detections)
		detections.resize(applied.max_detections);
}

/* Whether a batch's error is an allocation that failed, in LibTorch's words: the CPU allocator's
 * ("can't allocate memory", "not enough memory") or CUDA's ("out of memory"). */
static bool ran_out_of_memory(const std::string &error)
{
	for (const char *words : { "can't allocate memory", "not enough memory", "out of memory" })
		if (error.find(words) != std::string::npos)
			return true;
	return false;
}

/*
 * Runs the model on `images` (the pixels are let go as they run) in runs of at most batch_size,
 * with the current detector settings: one list of detections per image. Posts an error message
 * and returns GST_FLOW_ERROR when a run fails; returns GST_FLOW_FLUSHING, with no message, when
 * the batch (taken at the generations `flushes` and `generation`) is no longer wanted.
 */
static GstFlowReturn gst_frcnn_detect_run_images(GstFrcnnDetect *self, std::vector<ItemImage *> &images,
						 guint batch_size, guint64 flushes, guint64 generation,
						 std::vector<std::vector<frcnn::Detection>> &results)
{
	GstFrcnnDetectState *state = self->state;
	const frcnn::gst::RunSettings settings = gst_frcnn_detect_update_settings(self);
	results.clear();
	results.reserve(images.size());
	for (std::size_t first = 0; first < images.size(); first += batch_size) {
		frcnn::gst::RunRequest request;
		const std::size_t end = std::min<std::size_t>(images.size(), first + batch_size);
		for (std::size_t i = first; i < end; i++)
			request.frames.push_back(std::exchange(images[i]->pixels, frcnn::HeldFrame()));
		request.batch_size = batch_size;
		request.settings = settings;

		/* Elements sharing the model take turns; waiting is part of the batch's time. */
		const Clock::time_point start = Clock::now();
		{
			/* A flush or a stop from now on takes the request back from the queue. */
			std::lock_guard<std::mutex> lock(state->mutex);
			if (!state->batch_is_current(flushes, generation))
				return GST_FLOW_FLUSHING;
			state->queued_request = &request;
			state->queued_in = state->model->runs.get();
		}
		GST_LOG_OBJECT(self, "batch of %zu frames waits for the model", request.frames.size());
		state->model->runs->run(request);
		{
			std::lock_guard<std::mutex> lock(state->mutex);
			state->queued_request = nullptr;
			state->queued_in = nullptr;
		}
		const GstClockTime elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(
						     Clock::now() - start).count();
		/* The frames' maps go with the request's pixels. */
		const std::size_t count = request.frames.size();
		request.frames.clear();
		if (request.withdrawn) {
			GST_DEBUG_OBJECT(self, "batch of %zu frames dropped: a flush or a stop came while "
					 "it waited for the model", count);
			return GST_FLOW_FLUSHING;
		}
		if (!request.error.empty()) {
			/* A run of several elements' batches fails all of them: say so, since the run
			 * may be larger than this element's batch-size (out of memory, say). */
			const std::string together =
				request.run_requests > 1
					? " (in one run with " + std::to_string(request.run_requests - 1) +
						  " other elements' batches on the model they share, " +
						  std::to_string(request.run_frames) +
						  " images in all: a smaller batch-size on those elements makes "
						  "such runs smaller)"
					: std::string();
			const std::string memory =
				ran_out_of_memory(request.error)
					? " The batch did not fit in memory: a smaller batch-size, or smaller "
					  "images (min-size, max-size), needs less."
					: std::string();
			GST_ELEMENT_ERROR(self, STREAM, FAILED,
					  ("Detection failed: %s%s%s", request.error.c_str(), together.c_str(),
					   memory.c_str()),
					  ("frcnn::Detector::detect() failed on a batch of %zu images "
					   "(%zu images of %zu elements' batches in all)",
					   count, request.run_frames, request.run_requests));
			gst_frcnn_detect_leave_if_stopped(self);
			return GST_FLOW_ERROR;
		}
		/* The calibration this run made is the stream's from now on; only its file is missing. */
		if (std::string unwritten = state->model->take_int8_write_error(); !unwritten.empty())
			GST_ELEMENT_WARNING(self, RESOURCE, WRITE,
					    ("The int8 calibration was made, but its file could not be written: %s. "
					     "The stream goes on in 8 bits on it, and so does a restart that keeps "
					     "the model; a new load of the model (from NULL, or with other "
					     "settings) calibrates again. Check the folder's free space and "
					     "permissions.",
					     unwritten.c_str()),
					    ("frcnn::Detector::take_int8_calibration_write_error()"));
		if (request.run_requests > 1)
			GST_DEBUG_OBJECT(self, "batch of %zu frames ran together with other elements': "
					 "%zu frames of %zu batches", count, request.run_frames,
					 request.run_requests);
		GST_LOG_OBJECT(self, "batch of %zu frames took %" GST_TIME_FORMAT, count,
			       GST_TIME_ARGS(elapsed));
		for (std::vector<frcnn::Detection> &detections : request.results)
			results.push_back(std::move(detections));

		state->stats.batches++;
		state->stats.images += count;
		if (request.run_requests > 1)
			state->stats.batches_with_others++;
		state->stats.batch_time += elapsed;
		state->stats.last_batch_time = elapsed;

		const bool warm_up = state->timed_model != state->model.get();
		state->timed_model = state->model.get();
		if (warm_up)
			continue;
		GstClockTime longest = state->batch_time.load();
		while (elapsed > longest && !state->batch_time.compare_exchange_weak(longest, elapsed))
			;
	}
	return GST_FLOW_OK;
}

/* Runs the detector on the images of the frames of the batch that want it and attaches the
 * detections. */
static GstFlowReturn gst_frcnn_detect_run_batch(GstFrcnnDetect *self, std::vector<Item> &batch,
					      guint batch_size, guint64 flushes, guint64 generation)
{
	GstFrcnnDetectState *state = self->state;

	std::vector<Item *> frames;
	std::vector<ItemImage *> images;
	for (Item &item : batch) {
		if (item.buffer && item.infer && !item.images.empty()) {
			frames.push_back(&item);
			for (ItemImage &image : item.images)
				images.push_back(&image);
		}
	}
	if (frames.empty())
		return GST_FLOW_OK;

	gst_frcnn_detect_check_reload(self);
	gst_frcnn_detect_leave_if_stopped(self);
	std::vector<std::vector<frcnn::Detection>> results;
	const GstFlowReturn ran = gst_frcnn_detect_run_images(self, images, batch_size, flushes, generation, results);
	if (ran != GST_FLOW_OK)
		return ran;
	if (results.size() != images.size()) {
		GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Detection failed: the model gave %zu results "
				  "for %zu images.", results.size(), images.size()), (nullptr));
		gst_frcnn_detect_leave_if_stopped(self);
		return GST_FLOW_ERROR;
	}
	state->stats.detected += frames.size();

	/* The frames' maps went with the pixels, so our reference is the only one. */
	auto result = results.begin();
	for (Item *item : frames) {
		item->buffer = gst_buffer_make_writable(item->buffer);
		const int width = GST_VIDEO_INFO_WIDTH(&item->info);
		const int height = GST_VIDEO_INFO_HEIGHT(&item->info);
		std::vector<frcnn::gst::NewDetection> attach;
		for (const ItemImage &image : item->images) {
			std::vector<frcnn::Detection> &detections = *result++;
			if (filters_detections(*state))
				keep_wanted_detections(detections, *state);
			/* Detections in the image's pixels go on the frame in the frame's pixels. */
			const float dx = static_cast<float>(image.x), dy = static_cast<float>(image.y);
			for (const frcnn::Detection &det : detections) {
				attach.push_back({ det.x1 + dx, det.y1 + dy, det.x2 + dx, det.y2 + dy,
						   det.label, frcnn::label_name(state->labels, det.label),
						   det.score, image.parent_id });
			}
		}
		/* Ids go best detection first, also across the regions of interest of a frame
		 * (each region's detections come best first). */
		if (item->images.size() > 1)
			std::stable_sort(attach.begin(), attach.end(),
					 [](const frcnn::gst::NewDetection &a, const frcnn::gst::NewDetection &b) {
						 return a.score > b.score;
					 });
		frcnn::gst::add_detection_metas(item->buffer, width, height, attach);
		state->stats.detections += attach.size();
	}

	/* Tell the pipeline when a frame may now wait noticeably longer than it said. */
	const GstClockTime reported = state->reported_batch_time.load();
	const GstClockTime longest = state->batch_time.load();
	if (longest > reported + reported / 4 + GST_MSECOND) {
		state->reported_batch_time.store(longest);
		gst_element_post_message(GST_ELEMENT(self),
					 gst_message_new_latency(GST_OBJECT(self)));
		gst_frcnn_detect_leave_if_stopped(self);
	}

	return GST_FLOW_OK;
}

/* Pushes the stream's EOS, the stream's statistics on the bus before it (before the pipeline's
 * EOS message: `gst-launch-1.0 -m` prints them). */
static gboolean gst_frcnn_detect_push_eos(GstFrcnnDetect *self, GstEvent *eos)
{
	/* A stream shorter than the int8 calibration ran in fp32 throughout and leaves no file:
	 * nothing else would tell. */
	std::shared_ptr<LoadedModel> model;
	{
		std::lock_guard<std::mutex> lock(self->state->mutex);
		model = self->state->model;
	}
	const int observed = model && model->int8_calibrating ? model->int8_frames_observed.load() : 0;
	if (observed > 0) {
		const std::string file = model->int8_calibration_file.empty()
						 ? std::string()
						 : " nothing was written to '" + model->int8_calibration_file + "', and";
		GST_ELEMENT_WARNING(self, STREAM, FAILED,
				    ("The stream ended before precision=int8's calibration was made (%d of "
				     "its %d images measured so far): no calibration was made,%s the images "
				     "ran in fp32. Lower 'int8-calibration-frames', or make the calibration "
				     "file once on longer footage.",
				     observed, model->int8_frames_needed, file.c_str()),
				    ("int8 calibration incomplete at EOS"));
	}
	gst_element_post_message(GST_ELEMENT(self),
				 gst_message_new_element(GST_OBJECT(self), gst_frcnn_detect_stats(self->state->stats)));
	return gst_pad_push_event(self->srcpad, eos);
}

/*
 * QoS: a frame whose running time is not after the earliest time downstream can still use is
 * not run (it passes through without detections). Returns the QoS message to post for it, or
 * nullptr when the frame is run. Called with the queue's lock held: on the sink pad's thread as
 * the frame arrives (a late frame is then not even mapped or copied to the device; a frame in
 * time is judged again later), and by the worker as it takes the frame into a batch (`final`:
 * a frame in time then counts as processed).
 */
static GstMessage *gst_frcnn_detect_skip_if_late(GstFrcnnDetect *self, Item &item, bool final)
{
	GstFrcnnDetectState *state = self->state;
	const GstClockTime earliest = state->qos_earliest_time.load();
	if (!GST_CLOCK_TIME_IS_VALID(item.running_time) || !GST_CLOCK_TIME_IS_VALID(earliest) ||
	    item.running_time > earliest) {
		if (final)
			state->qos_processed++;
		return nullptr;
	}
	item.infer = false;
	item.skipped = "late";
	item.images.clear();
	state->qos_skipped++;
	state->stats.skipped_late++;
	GST_LOG_OBJECT(self, "skipping a late frame: running time %" GST_TIME_FORMAT ", earliest %" GST_TIME_FORMAT,
		       GST_TIME_ARGS(item.running_time), GST_TIME_ARGS(earliest));
	GstMessage *message = gst_message_new_qos(GST_OBJECT(self), FALSE, item.running_time, item.stream_time,
						  GST_BUFFER_PTS(item.buffer), GST_BUFFER_DURATION(item.buffer));
	gst_message_set_qos_values(message, GST_CLOCK_DIFF(item.running_time, earliest),
				   state->qos_proportion.load(), 1000000);
	gst_message_set_qos_stats(message, GST_FORMAT_BUFFERS, state->qos_processed, state->qos_skipped);
	return message;
}

/* Whether an event can be a new stream's first one, as after an EOS. */
static bool starts_stream(GstEventType type)
{
	return type == GST_EVENT_STREAM_START || type == GST_EVENT_SEGMENT;
}

/* Whether an item is the stream's EOS or a new stream's first event. */
static bool ends_or_starts_stream(const Item &item)
{
	return item.event && (GST_EVENT_TYPE(item.event) == GST_EVENT_EOS || starts_stream(GST_EVENT_TYPE(item.event)));
}

/* Drops the items of a queue up to the stream's EOS or a new stream's first event, counting the
 * buffers off `buffers`. The sticky events among them (caps, tags; upstream sent them once) are
 * stored on `srcpad`, which sends them before its next buffer, as queue does: the stream may go
 * on after a flush. Returns whether the queue is empty then (no such event was in it). */
static bool drop_to_stream_edge(std::deque<Item> &queue, guint &buffers, GstPad *srcpad)
{
	while (!queue.empty() && !ends_or_starts_stream(queue.front())) {
		const Item &front = queue.front();
		if (front.buffer)
			buffers--;
		if (front.event && outlives_its_frames(front.event))
			gst_pad_store_sticky_event(srcpad, front.event);
		queue.pop_front();
	}
	return queue.empty();
}

/*
 * The worker: takes the next batch off the queue (up to batch-size frames to run; a serialized
 * event ends a batch so that it stays between the right buffers, and goes on by itself), runs it
 * and hands it to the pusher. Returns false when the worker is to stop: `generation` is no longer
 * the state's worker_generation.
 */
static bool gst_frcnn_detect_run_next(GstFrcnnDetect *self, guint64 generation)
{
	GstFrcnnDetectState *state = self->state;

	guint capacity;
	bool qos;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		capacity = outgoing_capacity(state->settings.batch_size, state->settings.interval);
		qos = state->settings.qos;
	}

	std::vector<Item> batch;
	std::vector<GstMessage *> qos_messages; // posted once the queue's lock is released
	guint64 flushes;
	guint batch_size;
	{
		std::unique_lock<std::mutex> lock(state->mutex);
		const auto stopped = [state, generation] { return state->worker_generation != generation; };
		/* Downstream slower than the model holds the next batch back, as a full queue after
		 * the element would. */
		state->item_added.wait(lock, [state, capacity, &stopped] {
			return stopped() ||
			       (state->srcresult == GST_FLOW_OK && !state->worker_failed && !state->items.empty() &&
				(state->outgoing_buffers < capacity || state->items.front().event));
		});
		if (stopped())
			return false;
		flushes = state->flush_generation;
		batch_size = state->batching_size;
		std::chrono::milliseconds timeout(state->batching_timeout);
		guint64 batching_seen = state->batching_changes;

		guint to_run = 0;
		Clock::time_point first_arrival, deadline;
		bool complete = false;
		while (state->srcresult == GST_FLOW_OK) {
			while (!state->items.empty() && to_run < batch_size) {
				Item &front = state->items.front();
				if (front.event) {
					/* An event goes on by itself, after the frames before it. */
					if (!batch.empty()) {
						complete = true;
						break;
					}
					state->outgoing.push_back(std::move(front));
					state->items.pop_front();
					state->outgoing_added.notify_one();
					continue;
				}
				/* A frame whose regions (inference-region=roi-list) would not fit beside
				 * those taken starts the next batch: a frame's regions run together where
				 * they fit, and a run never holds a remnant of a frame the batch could not
				 * take whole (runs of 8 and 1 for three frames of 3 regions at batch-size
				 * 8: each is a model's forward, which on a GPU costs about as much for one
				 * image as for several). */
				if (front.infer && to_run > 0 && to_run + front.images.size() > batch_size) {
					/* Unless it is late: then it passes without its regions, in this batch. */
					GstMessage *late = qos ? gst_frcnn_detect_skip_if_late(self, front, false) : nullptr;
					if (!late) {
						complete = true;
						break;
					}
					qos_messages.push_back(late);
				}
				if (qos && front.infer) {
					GstMessage *late = gst_frcnn_detect_skip_if_late(self, front, true);
					if (late)
						qos_messages.push_back(late);
				}
				/* Frames count by the images they bring (regions of interest with
				 * inference-region=roi-list); one without any passes on at once. */
				if (front.infer && !front.images.empty()) {
					if (to_run == 0) {
						first_arrival = front.arrival;
						deadline = first_arrival + timeout;
					}
					to_run += static_cast<guint>(front.images.size());
				}
				batch.push_back(std::move(front));
				state->items.pop_front();
				state->queued_buffers--;
			}
			/* Frames held for a partial batch have not left: a serialized query waits for
			 * them (and wakes the worker to run the batch now). */
			state->busy = !batch.empty();
			state->item_removed.notify_all();

			if (complete || to_run >= batch_size || (to_run == 0 && !batch.empty()) ||
			    (batch.empty() && state->items.empty()))
				break;

			/* A partial batch: wait for more frames until its first frame is due, by the
			 * batch-size and batch-timeout of now. */
			bool more = state->item_added.wait_until(lock, deadline, [state, &stopped, batching_seen] {
				return state->srcresult != GST_FLOW_OK || !state->items.empty() ||
				       state->draining || stopped() || state->batching_changes != batching_seen;
			});
			if (!more || (state->draining && state->items.empty()) || stopped())
				break;
			if (state->batching_changes != batching_seen) {
				batching_seen = state->batching_changes;
				batch_size = state->batching_size;
				timeout = std::chrono::milliseconds(state->batching_timeout);
				deadline = first_arrival + timeout;
				/* Frames taken under a larger batch-size run as taken, in one run: split
				 * by the new size, a frame's regions would run apart. */
				if (to_run >= batch_size) {
					batch_size = to_run;
					break;
				}
				if (Clock::now() >= deadline)
					break;
			}
		}

		if (state->srcresult != GST_FLOW_OK || stopped()) {
			batch.clear();
			state->busy = false;
			state->item_removed.notify_all();
		}
	}
	for (GstMessage *message : qos_messages)
		gst_element_post_message(GST_ELEMENT(self), message);
	if (!qos_messages.empty())
		gst_frcnn_detect_leave_if_stopped(self);
	if (batch.empty())
		return true;

	const GstFlowReturn ran = gst_frcnn_detect_run_batch(self, batch, batch_size, flushes, generation);
	{
		std::lock_guard<std::mutex> lock(state->mutex);
		state->busy = false;
		const bool current = state->batch_is_current(flushes, generation);
		if (ran != GST_FLOW_OK && current) {
			/* The element posted the error. The frames run before this batch go on first;
			 * the pusher stops the stream where it was, and upstream hears of it then. */
			state->worker_failed = true;
			state->outgoing.emplace_back(ran);
			state->outgoing_added.notify_one();
		}
		/* A batch that ran through a flush, a stop or a failure is dropped. */
		if (ran == GST_FLOW_OK && current) {
			for (Item &item : batch) {
				state->outgoing_buffers++;
				state->outgoing.push_back(std::move(item));
			}
			state->outgoing_added.notify_one();
		}
		state->item_removed.notify_all();
	}
	batch.clear();
	return true;
}

/* The worker's thread. It holds a reference to the element: a worker that an application's
 * handler of one of its messages stopped (a state change on this thread) cannot be joined and
 * runs to its end on its own. */
static void gst_frcnn_detect_worker(GstFrcnnDetect *self, guint64 generation)
{
	/* The element's name, as the pad tasks' threads have theirs (at most 15 characters). */
	gchar *name = gst_object_get_name(GST_OBJECT(self));
	pthread_setname_np(pthread_self(), std::string(name ? name : "frcnndetect").substr(0, 15).c_str());
	g_free(name);
	self->state->worker_id = std::this_thread::get_id();
	self->state->threads_set = false; /* a new thread has the process's count */
	worker_generation_of_thread = generation;
	try {
		while (gst_frcnn_detect_run_next(self, generation)) {
		}
	} catch (const WorkerStopped &) {
		GST_DEBUG_OBJECT(self, "worker stopped by a handler of its message");
	}
	worker_generation_of_thread = 0;
	gst_object_unref(self);
}

static bool on_worker_thread(const GstFrcnnDetectState *state)
{
	return state->worker_id.load() == std::this_thread::get_id();
}

/* Starts the worker (when it is not running). Called with the queue's lock not held. */
static gboolean gst_frcnn_detect_start_worker(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	if (state->worker.joinable())
		return TRUE;
	guint64 generation;
	{
		std::lock_guard<std::mutex> lock(state->mutex);
		generation = ++state->worker_generation;
	}
	gst_object_ref(self);
	try {
		state->worker = std::thread(gst_frcnn_detect_worker, self, generation);
	} catch (const std::system_error &e) {
		gst_object_unref(self);
		GST_ELEMENT_ERROR(self, RESOURCE, FAILED, ("Could not start the element's worker thread: %s.", e.what()),
				  (nullptr));
		return FALSE;
	}
	return TRUE;
}

/* Stops the worker once its batch has run (the batch is dropped). */
static void gst_frcnn_detect_stop_worker(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	if (!state->worker.joinable())
		return;
	{
		std::lock_guard<std::mutex> lock(state->mutex);
		state->worker_generation++;
		state->withdraw_queued_request();
		state->item_added.notify_all();
	}
	if (on_worker_thread(state))
		state->worker.detach();
	else
		state->worker.join();
	state->worker_id = std::thread::id();
}

/* Waits until the worker holds no batch. Not on the worker's own thread (a flushing seek from a
 * handler of its messages): its batch, taken before the flush, is dropped when the handler
 * returns (flush_generation). */
static void gst_frcnn_detect_wait_for_worker(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	if (on_worker_thread(state))
		return;
	std::unique_lock<std::mutex> lock(state->mutex);
	state->item_removed.wait(lock, [state] { return !state->busy; });
}

/*
 * The pusher (the source pad's task): pushes the run frames and the events between them in
 * order. A batch's frames may wait at a synchronised sink for their time while the worker runs
 * the next batch.
 */
static void gst_frcnn_detect_loop(gpointer user_data)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(user_data);
	GstFrcnnDetectState *state = self->state;

	std::optional<Item> item;
	GstFlowReturn ret;
	{
		std::unique_lock<std::mutex> lock(state->mutex);
		state->outgoing_added.wait(lock, [state] {
			return state->srcresult != GST_FLOW_OK || !state->outgoing.empty();
		});
		if (state->srcresult == GST_FLOW_OK && state->outgoing.front().failure != GST_FLOW_OK) {
			/* Where the worker's batch failed (it posted the error): the stream stops here,
			 * and upstream hears of it at its next buffer. */
			state->srcresult = state->outgoing.front().failure;
			state->downstream_eos = false;
			state->failure_reported = true;
			state->outgoing.pop_front();
			state->wake_all();
		}
		ret = state->srcresult;
		if (ret == GST_FLOW_OK) {
			item.emplace(std::move(state->outgoing.front()));
			state->outgoing.pop_front();
			if (item->buffer)
				state->outgoing_buffers--;
			state->pushing = true;
			state->item_added.notify_all(); /* room for the worker's next batch */
		}
	}

	if (ret == GST_FLOW_OK) {
		const bool stream_ends = item->event && GST_EVENT_TYPE(item->event) == GST_EVENT_EOS;
		if (item->buffer) {
			/* A frame passed on without a run says so (frcnnjson writes it). */
			if (item->skipped) {
				item->buffer = gst_buffer_make_writable(item->buffer);
				frcnn::gst::add_skipped_meta(item->buffer, GST_OBJECT_NAME(self), item->skipped);
			}
			ret = gst_pad_push(self->srcpad, std::exchange(item->buffer, nullptr));
		} else if (stream_ends) {
			gst_frcnn_detect_push_eos(self, std::exchange(item->event, nullptr));
			ret = GST_FLOW_EOS;
		} else {
			gst_pad_push_event(self->srcpad, std::exchange(item->event, nullptr));
		}
		item.reset();

		{
			std::lock_guard<std::mutex> lock(state->mutex);
			state->pushing = false;
			/* Whatever upstream queued behind the EOS (a new stream's events and frames,
			 * gst_frcnn_detect_sink_event restarts the pusher for one that comes later):
			 * go on with it. The worker moves events under the lock, so nothing is in
			 * between when both queues are empty and it holds no batch. */
			if (stream_ends && ret == GST_FLOW_EOS && state->srcresult == GST_FLOW_OK &&
			    (!state->outgoing.empty() || !state->items.empty() || state->busy))
				ret = GST_FLOW_OK;
			/* Downstream takes no more buffers of this stream: the frames queued behind
			 * this one are dropped up to upstream's EOS or a new stream, which go on (as
			 * queue does); without either yet, upstream's EOS goes on when it comes
			 * (gst_frcnn_detect_sink_event). */
			if (!stream_ends && ret == GST_FLOW_EOS && state->srcresult == GST_FLOW_OK) {
				if (drop_to_stream_edge(state->outgoing, state->outgoing_buffers, self->srcpad))
					drop_to_stream_edge(state->items, state->queued_buffers, self->srcpad);
				if (!state->outgoing.empty() || !state->items.empty())
					ret = GST_FLOW_OK;
				/* Room in the outgoing queue, or an event at the front of the items: the
				 * worker may go on. */
				state->item_added.notify_all();
			}
			if (ret != GST_FLOW_OK && state->srcresult == GST_FLOW_OK) {
				state->srcresult = ret;
				state->downstream_eos = ret == GST_FLOW_EOS && !stream_ends;
				state->failure_reported = false;
				state->withdraw_queued_request(); /* its frames would be dropped */
				state->item_added.notify_all();
			}
			ret = state->srcresult;
			state->item_removed.notify_all();
		}

		if (ret == GST_FLOW_OK)
			return;

		bool report;
		{
			std::lock_guard<std::mutex> lock(state->mutex);
			/* Before upstream's EOS, upstream hears the flow at its next buffer and reports
			 * it (a source posts the error); after it, nobody else will (as queue does). */
			report = state->eos_received && state->take_failure_to_report();
		}
		if (report) {
			GST_ELEMENT_FLOW_ERROR(self, ret);
			gst_pad_push_event(self->srcpad, gst_event_new_eos());
		}
	}

	/* Paused under the queue's lock: a new stream's first event after an EOS, which restarts
	 * the pusher (gst_frcnn_detect_sink_event), then comes either before the pause, and the
	 * pusher goes on, or after it, and restarts it; never in between, where the pause would
	 * undo the restart. */
	std::lock_guard<std::mutex> lock(state->mutex);
	if (state->srcresult == GST_FLOW_OK)
		return;
	GST_DEBUG_OBJECT(self, "pausing: %s", gst_flow_get_name(ret));
	gst_pad_pause_task(self->srcpad);
}

/*
 * A frame whose chroma planes hold fewer rows than the library reads (see frame_memory.h:
 * GStreamer's own layout of interlaced P010_10LE, P012_LE and P016_LE frames of 4k + 1 or 4k + 2
 * rows, or a producer's meta): the chroma planes copied whole, each missing row repeating the row
 * of the same field above it, and `view` pointed at the copy. Null when the frame holds every
 * row. Throws frcnn::Error when a chroma plane holds no row at all.
 */
struct CompletedFrame {
	std::shared_ptr<const GstVideoFrame> frame; /* the luma plane, read where it lies */
	std::vector<uint8_t> chroma;
};

static std::shared_ptr<const CompletedFrame>
complete_chroma_planes(const std::shared_ptr<const GstVideoFrame> &frame, frcnn::FrameView &view)
{
	const GstVideoFrame *f = frame.get();
	const guint planes = std::min<guint>(GST_VIDEO_FRAME_N_PLANES(f), 3);
	const bool field_chroma = view.interlaced && GST_VIDEO_FORMAT_INFO_H_SUB(f->info.finfo, 1) == 1;
	std::array<int, 3> needed{}, held{};
	std::array<gsize, 3> row_bytes{}, offsets{};
	gsize size = 0;
	bool short_plane = false;
	for (guint p = 1; p < planes; p++) {
		needed[p] = frcnn::gst::frame_plane_rows_read(f, p);
		row_bytes[p] = frcnn::gst::frame_plane_row_bytes(f, p);
		held[p] = frcnn::gst::frame_plane_rows_held(f, p);
		short_plane |= held[p] < needed[p];
		offsets[p] = size;
		size += static_cast<gsize>(GST_VIDEO_FRAME_PLANE_STRIDE(f, p)) * needed[p];
	}
	if (!short_plane)
		return nullptr;
	auto completed = std::make_shared<CompletedFrame>();
	completed->frame = frame;
	completed->chroma.resize(size);
	for (guint p = 1; p < planes; p++) {
		if (held[p] == 0)
			throw frcnn::Error("the frame's memory holds no row of its plane " + std::to_string(p));
		const gsize stride = GST_VIDEO_FRAME_PLANE_STRIDE(f, p);
		uint8_t *out = completed->chroma.data() + offsets[p];
		const auto *in = static_cast<const uint8_t *>(GST_VIDEO_FRAME_PLANE_DATA(f, p));
		for (int row = 0; row < needed[p]; row++) {
			const uint8_t *from = row < held[p] ? in + row * stride
					      : out + (field_chroma && row >= 2 ? row - 2 : row - 1) * stride;
			std::memcpy(out + row * stride, from, row_bytes[p]);
		}
		view.planes[p] = out;
	}
	return completed;
}

/*
 * Maps a frame for reading. The frame holds a reference to the buffer and is unmapped when the
 * last holder lets it go, on whichever thread that is. nullptr when the buffer cannot be mapped.
 */
static std::shared_ptr<const GstVideoFrame> map_frame(const GstVideoInfo *info, GstBuffer *buffer)
{
	auto frame = std::make_unique<GstVideoFrame>();
	if (!gst_video_frame_map(frame.get(), const_cast<GstVideoInfo *>(info), buffer, GST_MAP_READ))
		return nullptr;
	return std::shared_ptr<const GstVideoFrame>(frame.release(), [](const GstVideoFrame *mapped) {
		auto *f = const_cast<GstVideoFrame *>(mapped);
		gst_video_frame_unmap(f);
		delete f;
	});
}

/*
 * The region frames are cut to, as the `region` property now says: a new value is taken up by
 * the first frame after it (an invalid one is warned about and the previous region kept). On the
 * sink pad's thread.
 */
static const std::optional<frcnn::gst::Region> &gst_frcnn_detect_region(GstFrcnnDetect *self)
{
	GstFrcnnDetectState *state = self->state;
	std::string text;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		if (state->settings.region == state->region_text)
			return state->region;
		text = state->settings.region;
	}
	try {
		state->region = frcnn::gst::parse_region(text);
		GST_INFO_OBJECT(self, "region now %s",
				state->region ? state->region->text().c_str() : "the whole frame");
	} catch (const std::exception &e) {
		GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
				    ("Invalid 'region' '%s', keeping the previous region: %s.",
				     text.c_str(), e.what()),
				    ("parsing region '%s' failed", text.c_str()));
	}
	state->region_text = text;
	return state->region;
}

// A rectangle of a frame to run as an image, and the region of interest it is (-1: none).
struct ImageRectangle {
	frcnn::gst::Region rect;
	gint parent_id = -1;
};

/*
 * The rectangle of a frame that inference-region=full-frame runs on: the frame, or its `region`.
 * Posts an error message and returns false when the region has no part in the frame.
 */
static bool gst_frcnn_detect_frame_rectangle(GstFrcnnDetect *self, const GstVideoInfo &info,
					     ImageRectangle *rectangle)
{
	const int width = GST_VIDEO_INFO_WIDTH(&info), height = GST_VIDEO_INFO_HEIGHT(&info);
	const std::optional<frcnn::gst::Region> &wanted = gst_frcnn_detect_region(self);
	if (!wanted) {
		rectangle->rect = frcnn::gst::Region{ 0, 0, width, height };
		return true;
	}
	try {
		rectangle->rect = frcnn::gst::fit_region(*wanted, width, height, start_grid(info));
	} catch (const std::exception &e) {
		GST_ELEMENT_ERROR(self, STREAM, FAILED,
				  ("No part of the region is in the frame: %s. Set 'region' to a "
				   "rectangle inside the frame, or leave it empty.", e.what()),
				  ("fitting region %s to a %dx%d frame failed", wanted->text().c_str(),
				   width, height));
		return false;
	}
	return true;
}

/*
 * The regions of interest on a frame that inference-region=roi-list runs on: those of the
 * `object-class` types, cut to the frame (starting on a chroma sample, as `region`), in the
 * order of the metadata. Those with no part in the frame, or narrower or lower than `min_size`
 * in it, are left out. On the sink pad's thread, before this element adds any.
 */
static std::vector<ImageRectangle> gst_frcnn_detect_regions_of_interest(
	GstFrcnnDetect *self, GstBuffer *buffer, const GstVideoInfo &info,
	const frcnn::gst::ObjectClasses &classes, guint min_size)
{
	const frcnn::gst::StartGrid grid = start_grid(info);
	std::vector<ImageRectangle> rectangles;
	gpointer state = nullptr;
	while (GstMeta *meta = gst_buffer_iterate_meta_filtered(
		       buffer, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) {
		const auto *roi = reinterpret_cast<const GstVideoRegionOfInterestMeta *>(meta);
		const gchar *type = g_quark_to_string(roi->roi_type);
		if (!classes.empty() && !classes.count(type ? type : ""))
			continue;
		const std::optional<frcnn::gst::Region> inside = frcnn::gst::fit_rectangle(
			roi->x, roi->y, roi->w, roi->h, GST_VIDEO_INFO_WIDTH(&info),
			GST_VIDEO_INFO_HEIGHT(&info), grid);
		if (!inside) {
			GST_LOG_OBJECT(self, "region of interest %d (%u,%u %ux%u) has no pixels in the frame",
				       roi->id, roi->x, roi->y, roi->w, roi->h);
			continue;
		}
		if (inside->width < static_cast<int>(min_size) || inside->height < static_cast<int>(min_size)) {
			GST_LOG_OBJECT(self, "region of interest %d (%s) is smaller than object-min-size %u",
				       roi->id, inside->text().c_str(), min_size);
			continue;
		}
		rectangles.push_back(ImageRectangle{ *inside, roi->id });
	}
	return rectangles;
}

/*
 * The rectangles of a frame to run as images, as gst_frcnn_detect_frame_rectangle() or
 * gst_frcnn_detect_regions_of_interest() give them. Returns false after posting an error.
 * On the sink pad's thread.
 */
static bool gst_frcnn_detect_rectangles(GstFrcnnDetect *self, const Item &item,
					GstFrcnnInferenceRegion inference_region,
					const std::string &object_class, guint object_min_size,
					std::vector<ImageRectangle> *rectangles)
{
	if (inference_region == GST_FRCNN_INFERENCE_REGION_FULL_FRAME) {
		ImageRectangle rectangle;
		if (!gst_frcnn_detect_frame_rectangle(self, item.info, &rectangle))
			return false;
		rectangles->push_back(rectangle);
		return true;
	}
	GstFrcnnDetectState *state = self->state;
	std::string region;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		region = state->settings.region;
	}
	/* The start refused both; a region set since is not used (said once for each value). */
	if (region != state->region_text) {
		state->region_text = region;
		if (!region.empty())
			GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
					    ("'region' is not used with inference-region=roi-list: the "
					     "detector runs on the regions of interest attached upstream."),
					    ("region '%s' set while playing", region.c_str()));
	}
	*rectangles = gst_frcnn_detect_regions_of_interest(self, item.buffer, item.info,
							   frcnn::gst::parse_object_classes(object_class),
							   object_min_size);
	return true;
}

/*
 * Holds the pixels of the frame's `rectangles` as the item's images. The frame is held once
 * (Detector::hold_frame), only the rectangle around all of them, and each image is a rectangle of
 * that (frcnn::crop_frame of a HeldFrame). On the CPU the frame stays mapped until its batch has
 * run, which reads it in place; on CUDA the bytes are copied to the device now, in one copy
 * however many regions the frame has, and the frame is unmapped again.
 */
static gboolean gst_frcnn_detect_hold_pixels(GstFrcnnDetect *self, Item &item,
					     const LoadedModel &model,
					     const std::vector<ImageRectangle> &rectangles)
{
	if (rectangles.empty())
		return TRUE;
	std::shared_ptr<const GstVideoFrame> frame = map_frame(&item.info, item.buffer);
	if (!frame) {
		/* Mostly a buffer too small for its caps (a source or an application that sends
		 * buffers of another size than the caps it set). */
		GST_ELEMENT_ERROR(self, STREAM, FAILED,
				  ("Could not read a %dx%d %s frame from a buffer of %" G_GSIZE_FORMAT
				   " bytes (the frame takes %" G_GSIZE_FORMAT " bytes, or as its video "
				   "meta says): the element in front must send buffers that hold frames "
				   "of its caps.",
				   GST_VIDEO_INFO_WIDTH(&item.info), GST_VIDEO_INFO_HEIGHT(&item.info),
				   GST_VIDEO_INFO_NAME(&item.info), gst_buffer_get_size(item.buffer),
				   GST_VIDEO_INFO_SIZE(&item.info)),
				  ("gst_video_frame_map() failed%s",
				   gst_buffer_get_video_meta(item.buffer) ? " (the buffer has a GstVideoMeta)" : ""));
		return FALSE;
	}
	if (const std::string shortfall = frcnn::gst::frame_memory_shortfall(frame.get()); !shortfall.empty()) {
		/* A buffer smaller than its video meta says (gst_video_frame_map() takes it). */
		GST_ELEMENT_ERROR(self, STREAM, FAILED,
				  ("Could not read a %dx%d %s frame: %s. The element in front must send buffers "
				   "that hold the frames their caps and video meta describe.",
				   GST_VIDEO_INFO_WIDTH(&item.info), GST_VIDEO_INFO_HEIGHT(&item.info),
				   GST_VIDEO_INFO_NAME(&item.info), shortfall.c_str()),
				  ("%s", gst_buffer_get_video_meta(item.buffer) ? "the buffer has a GstVideoMeta" : "no GstVideoMeta"));
		return FALSE;
	}
	gboolean square_pixels, tone_mapping;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		square_pixels = self->state->settings.square_pixels;
		tone_mapping = self->state->settings.tone_mapping;
	}
	frcnn::FrameView view = frame_view(frame.get(), square_pixels, tone_mapping);
	std::shared_ptr<const void> owner = frame;
	try {
		if (std::shared_ptr<const CompletedFrame> completed = complete_chroma_planes(frame, view)) {
			GST_LOG_OBJECT(self, "a %s frame of %d rows holds fewer chroma rows than its fields "
					     "need: read from a copy", GST_VIDEO_INFO_NAME(&item.info), view.height);
			owner = completed;
		}
	} catch (const std::exception &e) {
		GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not read a %dx%d %s frame: %s.",
				  view.width, view.height, GST_VIDEO_INFO_NAME(&item.info), e.what()),
				  ("its planes' layout leaves out rows the frame needs"));
		return FALSE;
	}
	/* The rectangles start on chroma samples (fit_rectangle), so does the one around them. */
	int left = view.width, top = view.height, right = 0, bottom = 0;
	for (const ImageRectangle &rectangle : rectangles) {
		const frcnn::gst::Region &r = rectangle.rect;
		left = std::min(left, r.x);
		top = std::min(top, r.y);
		right = std::max(right, r.x + r.width);
		bottom = std::max(bottom, r.y + r.height);
	}
	try {
		/* A crop is a view of the same bytes: cutting the whole frame, or a rectangle that is
		 * all of `held`, costs nothing. */
		frame.reset(); /* `owner` keeps it as long as the held frame's images need it */
		const frcnn::HeldFrame held = model.detector->hold_frame(
			frcnn::crop_frame(view, left, top, right - left, bottom - top), std::move(owner));
		for (const ImageRectangle &rectangle : rectangles) {
			const frcnn::gst::Region &r = rectangle.rect;
			ItemImage image;
			image.pixels = frcnn::crop_frame(held, r.x - left, r.y - top, r.width, r.height);
			image.x = r.x;
			image.y = r.y;
			image.parent_id = rectangle.parent_id;
			item.images.push_back(std::move(image));
		}
	} catch (const std::exception &e) {
		GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not prepare a video frame for detection: %s", e.what()),
				  ("frcnn::Detector::hold_frame() failed for a %dx%d %s frame",
				   GST_VIDEO_INFO_WIDTH(&item.info), GST_VIDEO_INFO_HEIGHT(&item.info),
				   GST_VIDEO_INFO_NAME(&item.info)));
		return FALSE;
	}
	return TRUE;
}

/*
 * The first frame of a start whose model is set up on a thread of its own (its weights download)
 * waits here, holding up the stream, until the model is set up: a flush or a stop ends the wait.
 * Model settings changed meanwhile give that set-up up for one of theirs: there is no model yet
 * to run until they are ready. Called with the queue's lock held, by the sink pad's thread while
 * the element has no model; GST_FLOW_OK once it has one.
 */
static GstFlowReturn gst_frcnn_detect_wait_for_model(GstFrcnnDetect *self, std::unique_lock<std::mutex> &lock)
{
	GstFrcnnDetectState *state = self->state;
	const bool setting_up = state->reload.valid();
	while (state->reload.valid()) {
		const auto ready = [state] {
			return state->reload.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
		};
		const auto changed = [state] { return state->settings_generation != state->reload_generation; };
		if (!ready())
			GST_INFO_OBJECT(self, "frames wait for the weights '%s'", state->reload_settings.weights.c_str());
		state->item_removed.wait(
			lock, [state, &ready, &changed] { return state->srcresult != GST_FLOW_OK || ready() || changed(); });
		if (state->srcresult != GST_FLOW_OK) {
			state->failure_reported = true; /* upstream hears of it, and reports it */
			return state->srcresult;
		}
		/* Nothing else runs meanwhile: the worker has no frame before this one. */
		lock.unlock();
		if (ready()) {
			/* Settings changed since are taken up as while playing (check_reload). */
			gst_frcnn_detect_take_reload(self);
		} else {
			guint64 generation;
			const Settings settings = gst_frcnn_detect_current_settings(self, &generation);
			/* The same settings: it goes on. Ready meanwhile: taken at the next turn (and
			 * replaced as while playing). */
			if (gst_frcnn_detect_take_newer_settings(self, settings, generation) == NewerSettings::Replaced) {
				std::optional<frcnn::WeightsPreset> preset;
				frcnn::ModelConfig config;
				if (gst_frcnn_detect_check_model_settings(self, settings, false, preset, config)) {
					gst_frcnn_detect_begin_setup(self, settings, generation, SetupTime::AtStart);
				} else {
					/* Its error is posted; a later frame's names these weights. */
					state->reload_settings = settings;
					state->reload_generation = generation;
				}
			}
		}
		lock.lock();
		if (state->model)
			return GST_FLOW_OK;
	}
	/* The set-up failed, and posted why; or it failed before a flush that started the stream
	 * again. */
	state->srcresult = GST_FLOW_ERROR;
	state->failure_reported = true;
	state->wake_all();
	if (!setting_up) {
		lock.unlock();
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
				  ("No model to run: the weights '%s' could not be set up when the element "
				   "started (an earlier error says why). Correct the settings and start the "
				   "element again.", state->reload_settings.weights.c_str()),
				  ("no model after the start's set-up"));
		lock.lock();
	}
	return GST_FLOW_ERROR;
}

static GstFlowReturn gst_frcnn_detect_chain(GstPad *pad, GstObject *parent, GstBuffer *buffer)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;

	if (state->held_buffers_changed.exchange(false))
		gst_pad_push_event(self->sinkpad, gst_event_new_reconfigure());

	guint capacity, interval;
	bool qos;
	GstFrcnnInferenceRegion inference_region;
	std::string object_class;
	guint object_min_size;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		capacity = 2 * state->settings.batch_size;
		interval = state->settings.interval;
		qos = state->settings.qos;
		inference_region = state->inference_region;
		object_class = state->settings.object_class;
		object_min_size = state->settings.object_min_size;
	}

	/* Copies the buffer's header at most, not its memory: the detections go on the copy. */
	buffer = gst_buffer_make_writable(buffer);
	/* The detections name the region they were found in by its id; every frame's regions get
	 * the same ids, run or not. */
	if (inference_region == GST_FRCNN_INFERENCE_REGION_ROI_LIST) {
		if (const int renumbered = frcnn::gst::make_region_ids_unique(buffer))
			GST_LOG_OBJECT(self, "gave %d regions of interest that repeated an id ids of their own",
				       renumbered);
	}

	std::unique_lock<std::mutex> lock(state->mutex);
	if (state->srcresult != GST_FLOW_OK) {
		GstFlowReturn ret = state->srcresult;
		state->failure_reported = true; /* upstream hears of it, and reports it */
		lock.unlock();
		gst_buffer_unref(buffer);
		return ret;
	}
	if (!state->have_info) {
		lock.unlock();
		gst_buffer_unref(buffer);
		GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("No caps before the first buffer."),
				  ("chain() called before a caps event"));
		return GST_FLOW_NOT_NEGOTIATED;
	}
	if (!state->model) {
		const GstFlowReturn waited = gst_frcnn_detect_wait_for_model(self, lock);
		if (waited != GST_FLOW_OK) {
			lock.unlock();
			gst_buffer_unref(buffer);
			return waited;
		}
	}

	/* A gap buffer holds no picture of its own (a repeated or filler frame): it goes by. */
	const bool gap = GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_GAP);
	Item item(buffer, state->sink_info, !gap && state->frame_count++ % interval == 0);
	state->stats.frames++;
	if (gap) {
		item.skipped = "gap";
		state->stats.skipped_gap++;
	} else if (!item.infer) {
		item.skipped = "interval";
		state->stats.skipped_interval++;
	}
	const GstClockTime timestamp =
		GST_BUFFER_PTS_IS_VALID(buffer) ? GST_BUFFER_PTS(buffer) : GST_BUFFER_DTS(buffer);
	if (state->segment.format == GST_FORMAT_TIME && GST_CLOCK_TIME_IS_VALID(timestamp)) {
		item.running_time = gst_segment_to_running_time(&state->segment, GST_FORMAT_TIME, timestamp);
		item.stream_time = gst_segment_to_stream_time(&state->segment, GST_FORMAT_TIME, timestamp);
	}
	/* A frame already late downstream goes by without its pixels. */
	GstMessage *late = qos && item.infer ? gst_frcnn_detect_skip_if_late(self, item, false) : nullptr;
	/* Outside the lock: the worker runs on while the frame is copied (CUDA). Our own reference
	 * to the model: the worker may replace the element's meanwhile. */
	const std::shared_ptr<LoadedModel> model = state->model;
	if (late || item.infer) {
		lock.unlock();
		if (late)
			gst_element_post_message(GST_ELEMENT(self), late);
		if (item.infer) {
			std::vector<ImageRectangle> rectangles;
			if (!gst_frcnn_detect_rectangles(self, item, inference_region, object_class,
							 object_min_size, &rectangles))
				return GST_FLOW_ERROR;
			if (!rectangles.empty() &&
			    !gst_frcnn_detect_hold_pixels(self, item, *model, rectangles))
				return GST_FLOW_ERROR;
		}
		lock.lock();
	}

	state->item_removed.wait(lock, [state, capacity] {
		return state->srcresult != GST_FLOW_OK || state->queued_buffers < capacity;
	});
	if (state->srcresult != GST_FLOW_OK) {
		state->failure_reported = true; /* upstream hears of it, and reports it */
		return state->srcresult;
	}

	state->items.push_back(std::move(item));
	state->queued_buffers++;
	state->item_added.notify_one();
	return GST_FLOW_OK;
}

/* Handles an event on the sink pad. A serialized event refused because the stream stopped
 * (downstream's EOS or failure, a flush) sets `stopped` to that flow. */
static gboolean gst_frcnn_detect_sink_event(GstPad *pad, GstObject *parent, GstEvent *event,
					    GstFlowReturn *stopped)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;

	switch (GST_EVENT_TYPE(event)) {
	case GST_EVENT_FLUSH_START: {
		gboolean ret = gst_pad_push_event(self->srcpad, event);
		{
			std::lock_guard<std::mutex> lock(state->mutex);
			state->srcresult = GST_FLOW_FLUSHING;
			state->flush_generation++;
			state->withdraw_queued_request();
			state->keep_sticky_events();
			state->clear_queue();
			state->wake_all();
		}
		/* Waits until the pusher has left its push and the worker its batch. */
		gst_pad_pause_task(self->srcpad);
		gst_frcnn_detect_wait_for_worker(self);
		return ret;
	}
	case GST_EVENT_FLUSH_STOP: {
		gboolean ret = gst_pad_push_event(self->srcpad, event);
		state->reset_qos();
		std::lock_guard<std::mutex> lock(state->mutex);
		for (GstEvent *sticky : state->flushed_sticky)
			gst_pad_store_sticky_event(self->srcpad, sticky);
		state->drop_flushed_sticky();
		state->clear_queue();
		state->downstream_eos = false;
		state->eos_received = false;
		state->frame_count = 0;
		gst_segment_init(&state->segment, GST_FORMAT_TIME);
		/* Not on a source pad that a stop is deactivating (it is marked inactive before its
		 * deactivation takes the lock, then sets FLUSHING and waits for the pusher): the
		 * pusher would wait for frames and the stop for the pusher. */
		if (gst_pad_is_active(self->srcpad)) {
			state->srcresult = GST_FLOW_OK;
			state->worker_failed = false;
			state->item_added.notify_all();
			gst_pad_start_task(self->srcpad, gst_frcnn_detect_loop, self, nullptr);
		}
		return ret;
	}
	default:
		break;
	}

	if (!GST_EVENT_IS_SERIALIZED(event))
		return gst_pad_event_default(pad, parent, event);

	GstVideoInfo info;
	if (GST_EVENT_TYPE(event) == GST_EVENT_CAPS) {
		GstCaps *caps;
		gst_event_parse_caps(event, &caps);
		if (!gst_video_info_from_caps(&info, caps)) {
			GST_WARNING_OBJECT(self, "invalid caps %" GST_PTR_FORMAT, caps);
			gst_event_unref(event);
			return FALSE;
		}
		if (GST_VIDEO_INFO_IS_YUV(&info)) {
			/* What the colours will be read as, for a user who wonders. */
			gchar *colorimetry = gst_video_colorimetry_to_string(&info.colorimetry);
			GST_INFO_OBJECT(self, "%s frames of %dx%d, read in colorimetry %s (%s matrix, %s range)",
					GST_VIDEO_INFO_NAME(&info), GST_VIDEO_INFO_WIDTH(&info),
					GST_VIDEO_INFO_HEIGHT(&info), colorimetry ? colorimetry : "unknown",
					yuv_matrix(info.colorimetry.matrix) == frcnn::YuvMatrix::BT709	   ? "BT.709"
					: yuv_matrix(info.colorimetry.matrix) == frcnn::YuvMatrix::BT2020 ? "BT.2020"
													   : "BT.601",
					frcnn::gst::full_range(info.colorimetry) ? "full" : "limited");
			g_free(colorimetry);
		}
		if (frcnn::gst::transfer_function(info.colorimetry.transfer) != frcnn::TransferFunction::SDR)
			GST_INFO_OBJECT(self, "HDR video (%s transfer): mapped to SDR for the model unless "
					      "tone-mapping=false",
					info.colorimetry.transfer == GST_VIDEO_TRANSFER_SMPTE2084 ? "PQ" : "HLG");
		if (frcnn::gst::colour_primaries(info.colorimetry.primaries) != frcnn::ColourPrimaries::BT709)
			GST_INFO_OBJECT(self, "wide-gamut video (%s primaries): its colours converted to BT.709's "
					      "for the model unless tone-mapping=false",
					info.colorimetry.primaries == GST_VIDEO_COLOR_PRIMARIES_BT2020 ? "BT.2020"
													: "Display P3");
		const frcnn::PixelAspectRatio pixels = pixel_aspect_ratio(info);
		if (!pixels.square())
			GST_INFO_OBJECT(self, "pixels %d/%d as wide as high: the model sees the frames as "
					      "%.0fx%d unless square-pixels=false",
					pixels.numerator, pixels.denominator,
					(double)GST_VIDEO_INFO_WIDTH(&info) * pixels.numerator / pixels.denominator,
					GST_VIDEO_INFO_HEIGHT(&info));
	}

	bool restart = false;
	{
		std::unique_lock<std::mutex> lock(state->mutex);
		const GstEventType type = GST_EVENT_TYPE(event);
		if (state->srcresult == GST_FLOW_EOS && state->downstream_eos && type == GST_EVENT_EOS) {
			/* Downstream took no more buffers; upstream, told so, ends the stream: the frames
			 * still queued are dropped and the EOS goes on (as queue does). */
			state->downstream_eos = false;
			state->clear_queue();
			lock.unlock();
			return gst_frcnn_detect_push_eos(self, event);
		}
		if (state->srcresult == GST_FLOW_EOS && starts_stream(type)) {
			/* A new stream after EOS without a flush; what downstream refused of the stream
			 * before goes. */
			if (state->downstream_eos)
				state->clear_queue();
			state->downstream_eos = false;
			state->srcresult = GST_FLOW_OK;
			state->worker_failed = false;
			restart = true;
		}
		if (starts_stream(type))
			state->eos_received = false;
		if (state->srcresult != GST_FLOW_OK) {
			GST_DEBUG_OBJECT(self, "dropping %" GST_PTR_FORMAT ": %s", event,
					 gst_flow_get_name(state->srcresult));
			const GstFlowReturn failed = state->srcresult;
			/* An EOS after a failure downstream that upstream saw at no buffer: nobody else
			 * reports it (as queue does). */
			const bool report = type == GST_EVENT_EOS && state->take_failure_to_report();
			*stopped = failed;
			lock.unlock();
			if (report)
				GST_ELEMENT_FLOW_ERROR(self, failed);
			gst_event_unref(event);
			return FALSE;
		}
		if (type == GST_EVENT_EOS)
			state->eos_received = true;
		if (type == GST_EVENT_CAPS) {
			state->sink_info = info;
			state->have_info = true;
			state->frame_duration = GST_VIDEO_INFO_FPS_N(&info) > 0
				? gst_util_uint64_scale(GST_SECOND, GST_VIDEO_INFO_FPS_D(&info),
							GST_VIDEO_INFO_FPS_N(&info))
				: 0;
		} else if (type == GST_EVENT_SEGMENT) {
			gst_event_copy_segment(event, &state->segment);
		} else if (type == GST_EVENT_STREAM_START) {
			state->frame_count = 0;
		}
		state->items.emplace_back(event);
		state->item_added.notify_one();
		/* Under the lock, as after a flush: not on a source pad being deactivated. */
		if (restart && gst_pad_is_active(self->srcpad))
			gst_pad_start_task(self->srcpad, gst_frcnn_detect_loop, self, nullptr);
	}
	return TRUE;
}

/*
 * QOS events from downstream: a frame that reaches a sink later than it should (diff > 0) makes
 * the frames up to twice as late again, plus a frame, not worth running (as video decoders
 * reckon it); early ones (diff <= 0) move the earliest time forward by as much. Forwarded
 * upstream as every event.
 */
static gboolean gst_frcnn_detect_src_event(GstPad *pad, GstObject *parent, GstEvent *event)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;
	if (GST_EVENT_TYPE(event) == GST_EVENT_QOS) {
		GstQOSType type;
		gdouble proportion;
		GstClockTimeDiff diff;
		GstClockTime timestamp;
		gst_event_parse_qos(event, &type, &proportion, &diff, &timestamp);
		if (GST_CLOCK_TIME_IS_VALID(timestamp)) {
			GstClockTime earliest;
			if (diff > 0)
				earliest = timestamp + 2 * diff + state->frame_duration.load();
			else
				earliest = (GstClockTime)-diff > timestamp ? 0 : timestamp + diff;
			state->qos_earliest_time = earliest;
			state->qos_proportion = proportion;
			GST_LOG_OBJECT(self, "QoS: proportion %g, diff %" G_GINT64_FORMAT ", timestamp %" GST_TIME_FORMAT
				       ": earliest time %" GST_TIME_FORMAT,
				       proportion, diff, GST_TIME_ARGS(timestamp), GST_TIME_ARGS(earliest));
		}
	}
	return gst_pad_event_default(pad, parent, event);
}

/*
 * The sink pad's events. One refused because the stream stopped answers with the stream's flow
 * (EOS after downstream took no more, a failure's, FLUSHING), as queue's do, so that upstream
 * stops as at a buffer: a plain refusal reaches an element in front as GST_FLOW_ERROR at its next
 * buffer (a tag event it pushes first, say), and stops the pipeline with an internal data stream
 * error.
 */
static GstFlowReturn gst_frcnn_detect_sink_event_full(GstPad *pad, GstObject *parent, GstEvent *event)
{
	const bool caps = GST_EVENT_TYPE(event) == GST_EVENT_CAPS;
	GstFlowReturn stopped = GST_FLOW_OK;
	if (gst_frcnn_detect_sink_event(pad, parent, event, &stopped))
		return GST_FLOW_OK;
	if (stopped != GST_FLOW_OK)
		return stopped;
	return caps ? GST_FLOW_NOT_NEGOTIATED : GST_FLOW_ERROR;
}

/* The most buffers the element asks for. More would ask a camera for frames it cannot give (v4l2
 * drivers hold 32 at most) or for gigabytes. */
constexpr guint64 kMostBuffersAsked = 128;

/* The frames of a batch: `batch_size` frames to run and, with `interval`, the frames skipped
 * between them, which travel with the batch. */
static guint64 batch_frames(guint batch_size, guint interval)
{
	return static_cast<guint64>(batch_size - 1) * interval + 1;
}

/* The buffers the element keeps: those of the batch that runs, of the next one as it fills, and
 * of the one before, whose frames wait for their time at a synchronised sink. */
static guint buffers_held(guint batch_size, guint interval)
{
	return static_cast<guint>(std::min<guint64>(3 * batch_frames(batch_size, interval), kMostBuffersAsked));
}

/* The most run frames waiting to be pushed before the worker runs another batch: a batch's
 * frames wait for their time at a synchronised sink while the next batch runs. Two batches. */
static guint outgoing_capacity(guint batch_size, guint interval)
{
	return static_cast<guint>(std::min<guint64>(2 * batch_frames(batch_size, interval), kMostBuffersAsked));
}

/* The element keeps the buffers of a batch while it runs, of the next one as it fills and of the
 * one before as it leaves: a source or decoder whose frames come from a pool of its own (a
 * camera, a hardware decoder) must have that many more than the elements behind ask for, or each
 * batch waits out its timeout for frames the pool cannot give. Asked for in the ALLOCATION query's answer, where such elements
 * read it (the minimum of its first pool; a pool entry without a pool where downstream named
 * none). */
static void gst_frcnn_detect_ask_for_buffers(GstQuery *query, guint held)
{
	if (gst_query_get_n_allocation_pools(query) == 0) {
		GstCaps *caps = nullptr;
		gboolean need_pool;
		gst_query_parse_allocation(query, &caps, &need_pool);
		GstVideoInfo info;
		if (caps && gst_video_info_from_caps(&info, caps))
			gst_query_add_allocation_pool(query, nullptr, GST_VIDEO_INFO_SIZE(&info), held, 0);
		return;
	}
	GstBufferPool *pool = nullptr;
	guint size, min, max;
	gst_query_parse_nth_allocation_pool(query, 0, &pool, &size, &min, &max);
	/* Both bounds: what the elements behind keep, and the element's own. */
	min += held;
	if (max != 0)
		max += held;
	gst_query_set_nth_allocation_pool(query, 0, pool, size, min, max);
	if (pool)
		gst_object_unref(pool);
}

static gboolean gst_frcnn_detect_sink_query(GstPad *pad, GstObject *parent, GstQuery *query)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;

	if (GST_QUERY_IS_SERIALIZED(query)) {
		/* Everything queued before the query must have left, or downstream sees it early. */
		std::unique_lock<std::mutex> lock(state->mutex);
		state->draining++;
		state->item_added.notify_all();
		state->item_removed.wait(lock, [state] {
			return state->srcresult != GST_FLOW_OK ||
			       (state->items.empty() && !state->busy && state->outgoing.empty() && !state->pushing);
		});
		state->draining--;
		if (state->srcresult != GST_FLOW_OK)
			return FALSE;
	}

	const gboolean answered = gst_pad_query_default(pad, parent, query);
	if (GST_QUERY_TYPE(query) != GST_QUERY_ALLOCATION)
		return answered;
	/* Answered even where the elements behind did not (fakesink): the buffers the element
	 * keeps are its own need. */
	frcnn::gst::refuse_crop_meta(query);
	guint held;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		held = buffers_held(state->settings.batch_size, state->settings.interval);
		state->held_buffers_changed = false; /* answered for the settings in use */
	}
	gst_frcnn_detect_ask_for_buffers(query, held);
	return TRUE;
}

static gboolean gst_frcnn_detect_src_query(GstPad *pad, GstObject *parent, GstQuery *query)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;

	if (GST_QUERY_TYPE(query) != GST_QUERY_LATENCY)
		return gst_pad_query_default(pad, parent, query);

	if (!gst_pad_peer_query(self->sinkpad, query))
		return FALSE;

	gboolean live;
	GstClockTime min, max;
	gst_query_parse_latency(query, &live, &min, &max);

	guint batch_size, batch_timeout;
	{
		g_autoptr(GMutexLocker) locker = g_mutex_locker_new(GST_OBJECT_GET_LOCK(self));
		batch_size = state->settings.batch_size;
		batch_timeout = state->settings.batch_timeout;
	}

	/*
	 * A frame waits for its batch to fill, then for the batch before it to finish, then for
	 * its own: the timeout plus two batch runs at the longest seen so far.
	 */
	const GstClockTime batch_time = state->batch_time.load();
	state->reported_batch_time.store(batch_time);
	GstClockTime added = 2 * batch_time;
	if (batch_size > 1)
		added += batch_timeout * GST_MSECOND;

	min += added;
	if (GST_CLOCK_TIME_IS_VALID(max))
		max += added;
	GST_DEBUG_OBJECT(self, "adding %" GST_TIME_FORMAT " latency", GST_TIME_ARGS(added));
	gst_query_set_latency(query, live, min, max);
	return TRUE;
}

static gboolean gst_frcnn_detect_sink_activate_mode(GstPad *pad, GstObject *parent,
						    GstPadMode mode, gboolean active)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;

	if (mode != GST_PAD_MODE_PUSH)
		return FALSE;

	std::unique_lock<std::mutex> lock(state->mutex);
	if (active) {
		state->have_info = false;
		return TRUE;
	}

	state->srcresult = GST_FLOW_FLUSHING;
	state->clear_queue();
	state->drop_flushed_sticky();
	state->wake_all();
	lock.unlock();

	/* chain() may still be running: it returns once it sees the flushing state. */
	GST_PAD_STREAM_LOCK(pad);
	GST_PAD_STREAM_UNLOCK(pad);
	return TRUE;
}

static gboolean gst_frcnn_detect_src_activate_mode(GstPad *pad, GstObject *parent,
						   GstPadMode mode, gboolean active)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(parent);
	GstFrcnnDetectState *state = self->state;

	if (mode != GST_PAD_MODE_PUSH)
		return FALSE;

	if (active) {
		{
			std::lock_guard<std::mutex> lock(state->mutex);
			state->clear_queue();
			state->srcresult = GST_FLOW_OK;
			state->worker_failed = false;
			state->downstream_eos = false;
			state->eos_received = false;
			state->frame_count = 0;
			state->busy = false;
			state->pushing = false;
		}
		if (!gst_frcnn_detect_start_worker(self))
			return FALSE;
		if (!gst_pad_start_task(pad, gst_frcnn_detect_loop, self, nullptr)) {
			gst_frcnn_detect_stop_worker(self);
			return FALSE;
		}
		return TRUE;
	}

	{
		std::lock_guard<std::mutex> lock(state->mutex);
		state->srcresult = GST_FLOW_FLUSHING;
		state->clear_queue();
		state->wake_all();
	}
	const gboolean stopped = gst_pad_stop_task(pad);
	gst_frcnn_detect_stop_worker(self);
	return stopped;
}

static GstStateChangeReturn gst_frcnn_detect_change_state(GstElement *element,
							  GstStateChange transition)
{
	GstFrcnnDetect *self = GST_FRCNN_DETECT(element);
	GstFrcnnDetectState *state = self->state;

	switch (transition) {
	case GST_STATE_CHANGE_READY_TO_PAUSED:
		if (!gst_frcnn_detect_open(self))
			return GST_STATE_CHANGE_FAILURE;
		state->batch_time = 0;
		state->reported_batch_time = 0;
		state->timed_model = nullptr;
		gst_segment_init(&state->segment, GST_FORMAT_TIME);
		state->reset_qos();
		state->qos_processed = 0;
		state->qos_skipped = 0;
		state->stats.reset();
		break;
	default:
		break;
	}

	GstStateChangeReturn ret =
		GST_ELEMENT_CLASS(gst_frcnn_detect_parent_class)->change_state(element, transition);
	if (ret == GST_STATE_CHANGE_FAILURE)
		return ret;

	switch (transition) {
	case GST_STATE_CHANGE_PAUSED_TO_READY:
		/*
		 * The worker has stopped; a model being set up is kept for the next start, but a
		 * download for it is given up: it could hold the stop up for minutes. The next start
		 * then downloads the weights again.
		 */
		state->cancel_setup();
		gst_frcnn_detect_finish_reload(self);
		break;
	case GST_STATE_CHANGE_READY_TO_NULL:
		/* A start that failed after its set-up began (another element's state change). */
		state->cancel_setup();
		gst_frcnn_detect_finish_reload(self);
		state->model.reset();
		state->detector_generation = 0;
		state->reload_generation = 0;
		break;
	default:
		break;
	}

	return ret;
}

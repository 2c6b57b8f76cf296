/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Runs frcnndetect on the first frames of a video and prints the detections of each frame, read
 * from the GstVideoRegionOfInterestMeta on the buffers in a pad probe.
 *
 *   cc read_detections.c -o read_detections $(pkg-config --cflags --libs gstreamer-video-1.0)
 *   ./read_detections street.mp4 coco 5
 *   ./read_detections clip.avi my-model.pth 10 tiny
 */
#include <stdio.h>
#include <stdlib.h>

#include <gst/gst.h>
#include <gst/video/video.h>

typedef struct {
	guint frames;
	guint max_frames;
	guint detections;
	GMainLoop *loop;
} State;

static void print_detections(GstBuffer *buffer, gint width, gint height)
{
	gpointer iter = NULL;
	GstMeta *meta;

	while ((meta = gst_buffer_iterate_meta_filtered(buffer, &iter,
							GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
		GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *)meta;
		GstStructure *s = gst_video_region_of_interest_meta_get_param(roi, "detection");
		gint label_id = 0;
		gdouble confidence = 0, x_min = 0, y_min = 0, x_max = 0, y_max = 0;

		if (!s || !gst_structure_get(s, "label_id", G_TYPE_INT, &label_id,
					     "confidence", G_TYPE_DOUBLE, &confidence,
					     "x_min", G_TYPE_DOUBLE, &x_min, "y_min", G_TYPE_DOUBLE, &y_min,
					     "x_max", G_TYPE_DOUBLE, &x_max, "y_max", G_TYPE_DOUBLE, &y_max,
					     NULL)) {
			/* Another producer: only the type and the rectangle. */
			g_print("  %-16s rect %u,%u %ux%u\n", g_quark_to_string(roi->roi_type), roi->x,
				roi->y, roi->w, roi->h);
			continue;
		}
		g_print("  %-16s id %-3d score %.3f box (%.1f, %.1f, %.1f, %.1f)\n",
			gst_structure_get_string(s, "label"), label_id, confidence, x_min * width,
			y_min * height, x_max * width, y_max * height);
	}
}

static gboolean quit_loop(gpointer loop)
{
	g_main_loop_quit(loop);
	return G_SOURCE_REMOVE;
}

static GstPadProbeReturn on_buffer(GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
	State *state = user_data;
	GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER(info);
	GstCaps *caps = gst_pad_get_current_caps(pad);
	GstVideoInfo video;

	if (!caps || !gst_video_info_from_caps(&video, caps)) {
		g_printerr("no video caps\n");
		if (caps)
			gst_caps_unref(caps);
		return GST_PAD_PROBE_OK;
	}
	gst_caps_unref(caps);

	g_print("frame %u pts %" GST_TIME_FORMAT ": %u detections\n", state->frames,
		GST_TIME_ARGS(GST_BUFFER_PTS(buffer)),
		gst_buffer_get_n_meta(buffer, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE));
	print_detections(buffer, GST_VIDEO_INFO_WIDTH(&video), GST_VIDEO_INFO_HEIGHT(&video));
	state->detections += gst_buffer_get_n_meta(buffer, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE);

	if (++state->frames == state->max_frames) {
		/* Stop from the main loop, not from the streaming thread. */
		g_idle_add(quit_loop, state->loop);
		return GST_PAD_PROBE_REMOVE;
	}
	return GST_PAD_PROBE_OK;
}

static gboolean on_message(GstBus *bus, GstMessage *message, gpointer user_data)
{
	State *state = user_data;

	(void)bus;
	if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
		GError *error = NULL;
		gst_message_parse_error(message, &error, NULL);
		g_printerr("error: %s\n", error->message);
		g_error_free(error);
		g_main_loop_quit(state->loop);
	} else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_EOS) {
		g_main_loop_quit(state->loop);
	}
	return TRUE;
}

int main(int argc, char **argv)
{
	State state = { 0 };
	GstElement *pipeline, *detect;
	GstPad *pad;
	GstBus *bus;
	GError *error = NULL;
	int ret = 0;

	gst_init(&argc, &argv);
	if (argc < 3 || argc > 5) {
		g_printerr("usage: %s VIDEO WEIGHTS [FRAMES] [MODEL]\n", argv[0]);
		return 2;
	}
	state.max_frames = argc > 3 ? (guint)atoi(argv[3]) : 5;
	state.loop = g_main_loop_new(NULL, FALSE);

	pipeline = gst_parse_launch("filesrc name=src ! decodebin ! frcnndetect name=detect ! "
				    "fakesink", &error);
	if (!pipeline) {
		g_printerr("error: %s\n", error->message);
		return 1;
	}
	detect = gst_bin_get_by_name(GST_BIN(pipeline), "detect");
	{
		GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
		g_object_set(src, "location", argv[1], NULL);
		gst_object_unref(src);
	}
	g_object_set(detect, "weights", argv[2], "threshold", 0.3, NULL);
	if (argc > 4)
		g_object_set(detect, "model", argv[4], NULL);

	pad = gst_element_get_static_pad(detect, "src");
	gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, &state, NULL);
	gst_object_unref(pad);
	gst_object_unref(detect);

	bus = gst_element_get_bus(pipeline);
	gst_bus_add_watch(bus, on_message, &state);

	if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
		GstMessage *message = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
		if (message) {
			gst_message_parse_error(message, &error, NULL);
			g_printerr("error: %s\n", error->message);
			g_error_free(error);
			gst_message_unref(message);
		}
		ret = 1;
	} else {
		g_main_loop_run(state.loop);
		g_print("%u frames, %u detections\n", state.frames, state.detections);
		ret = state.frames > 0 ? 0 : 1;
	}

	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_bus_remove_watch(bus);
	gst_object_unref(bus);
	gst_object_unref(pipeline);
	g_main_loop_unref(state.loop);
	return ret;
}

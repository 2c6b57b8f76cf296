// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_FRCNN_OVERLAY (gst_frcnn_overlay_get_type())
G_DECLARE_FINAL_TYPE(GstFrcnnOverlay, gst_frcnn_overlay, GST, FRCNN_OVERLAY, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE(frcnnoverlay);

G_END_DECLS

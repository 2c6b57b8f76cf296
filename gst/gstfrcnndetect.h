// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_FRCNN_DETECT (gst_frcnn_detect_get_type())
G_DECLARE_FINAL_TYPE(GstFrcnnDetect, gst_frcnn_detect, GST, FRCNN_DETECT, GstElement)

GST_ELEMENT_REGISTER_DECLARE(frcnndetect);

G_END_DECLS

// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

#define GST_TYPE_FRCNN_JSON (gst_frcnn_json_get_type())
G_DECLARE_FINAL_TYPE(GstFrcnnJson, gst_frcnn_json, GST, FRCNN_JSON, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE(frcnnjson);

G_END_DECLS

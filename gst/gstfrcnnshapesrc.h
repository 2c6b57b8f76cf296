// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <gst/base/gstpushsrc.h>

G_BEGIN_DECLS

#define GST_TYPE_FRCNN_SHAPE_SRC (gst_frcnn_shape_src_get_type())
G_DECLARE_FINAL_TYPE(GstFrcnnShapeSrc, gst_frcnn_shape_src, GST, FRCNN_SHAPE_SRC, GstPushSrc)

GST_ELEMENT_REGISTER_DECLARE(frcnnshapesrc);

G_END_DECLS

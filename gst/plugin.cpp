// SPDX-License-Identifier: BSD-3-Clause
// Registers the elements of the frcnn plugin.

#include <gst/gst.h>

#include "gstfrcnndetect.h"
#include "gstfrcnnjson.h"
#include "gstfrcnnoverlay.h"
#include "gstfrcnnshapesrc.h"

static gboolean plugin_init(GstPlugin *plugin)
{
	gboolean ret = FALSE;

	ret |= GST_ELEMENT_REGISTER(frcnndetect, plugin);
	ret |= GST_ELEMENT_REGISTER(frcnnoverlay, plugin);
	ret |= GST_ELEMENT_REGISTER(frcnnjson, plugin);
	ret |= GST_ELEMENT_REGISTER(frcnnshapesrc, plugin);

	return ret;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, frcnn,
		  "Faster R-CNN object detection", plugin_init, VERSION, GST_LICENSE,
		  GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)

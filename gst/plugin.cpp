// SPDX-License-Identifier: BSD-3-Clause
// Registers the elements of the frcnn plugin.

#include <gst/gst.h>

#include "gstfrcnndetect.h"
#include "gstfrcnnjson.h"
#include "meta.h"
#if GST_FRCNN_HAVE_DRAWING
#include "gstfrcnnoverlay.h"
#include "gstfrcnnshapesrc.h"
#endif

static gboolean plugin_init(GstPlugin *plugin)
{
	gboolean ret = FALSE;

	/* An application looks the metadata up before the first frame that carries it. */
	frcnn::gst::skipped_meta_api_get_type();

	ret |= GST_ELEMENT_REGISTER(frcnndetect, plugin);
	ret |= GST_ELEMENT_REGISTER(frcnnjson, plugin);
#if GST_FRCNN_HAVE_DRAWING
	// Both draw with OpenCV: a build without it has the detector and the JSON writer only.
	ret |= GST_ELEMENT_REGISTER(frcnnoverlay, plugin);
	ret |= GST_ELEMENT_REGISTER(frcnnshapesrc, plugin);
#endif

	return ret;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, frcnn,
		  "Faster R-CNN object detection", plugin_init, VERSION, GST_LICENSE,
		  GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)

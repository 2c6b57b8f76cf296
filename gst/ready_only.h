// SPDX-License-Identifier: BSD-3-Clause
// Properties that take effect at the start only (GST_PARAM_MUTABLE_READY): set while the element
// runs, they are not taken, and a warning says so, as filesink does with its location; the
// value in use stays, so that it reads back as what the element does.
#pragma once

#include <string>

#include <gst/gst.h>

namespace frcnn::gst {

// Whether the element has started or is starting (beyond READY). Takes the object lock.
inline bool element_running(GstElement *element)
{
	GST_OBJECT_LOCK(element);
	const bool running = GST_STATE(element) > GST_STATE_READY || GST_STATE_PENDING(element) > GST_STATE_READY;
	GST_OBJECT_UNLOCK(element);
	return running;
}

// Posts the warning for `property`, whose new value `value` (as text) was not taken. Called
// without the object lock (posting takes it).
inline void warn_ready_only(GstElement *element, const char *property, const char *meaning,
			    const std::string &value)
{
	GST_ELEMENT_WARNING(element, RESOURCE, SETTINGS,
			    ("'%s' cannot change while the element runs: %s. Set it in the NULL or READY "
			     "state.",
			     property, meaning),
			    ("%s '%s' not taken", property, value.c_str()));
}

} // namespace frcnn::gst

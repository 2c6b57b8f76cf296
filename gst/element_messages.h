// SPDX-License-Identifier: BSD-3-Clause
// What the elements' messages about their settings and files say.
#pragma once

#include <cerrno>
#include <string>

#include <gst/gst.h>

namespace frcnn::gst {

// Properties that take effect at the start only (GST_PARAM_MUTABLE_READY): set while the element
// runs, they are not taken, and a warning says so, as filesink does with its location; the
// value in use stays, so that it reads back as what the element does.

// Whether the element has started or is starting (beyond READY). The caller holds the object
// lock, under which it stores the value when this is false: a start cannot come in between,
// as GStreamer sets the pending state under that lock before it starts the element.
inline bool element_running_locked(GstElement *element)
{
	return GST_STATE(element) > GST_STATE_READY || GST_STATE_PENDING(element) > GST_STATE_READY;
}

// Whether two string values of a property mean the same: unset (NULL) is the empty string.
inline bool same_text(const gchar *a, const gchar *b)
{
	return g_strcmp0(a ? a : "", b ? b : "") == 0;
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

// What to do about a file an element could not write to, for errno `err` of a failed write to
// the file the property `property` names: free space for a full disk or quota, else another
// file (a file-size limit, EFBIG, is not helped by space).
inline std::string write_failure_advice(int err, const char *property)
{
	const bool full = err == ENOSPC || err == EDQUOT;
	return std::string(full ? "Free space where it is, or set '" : "Set '") + property + "' to another file.";
}

} // namespace frcnn::gst

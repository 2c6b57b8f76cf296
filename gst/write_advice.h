// SPDX-License-Identifier: BSD-3-Clause
// What an element's message says to do about a file it could not write to.
#pragma once

#include <cerrno>
#include <string>

namespace frcnn::gst {

// For errno `err` of a failed write to the file the property `property` names: free space for
// a full disk or quota, else another file (a file-size limit, EFBIG, is not helped by space).
inline std::string write_failure_advice(int err, const char *property)
{
	const bool full = err == ENOSPC || err == EDQUOT;
	return std::string(full ? "Free space where it is, or set '" : "Set '") + property + "' to another file.";
}

} // namespace frcnn::gst

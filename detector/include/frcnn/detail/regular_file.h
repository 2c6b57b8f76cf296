// SPDX-License-Identifier: BSD-3-Clause
// Files a setting names that are read whole when a model or an element starts (an 8-bit
// calibration, a labels file): a device or a pipe there would be read without end (/dev/zero)
// or wait for a writer that never comes (a FIFO), so they are refused before being opened.
// For the library and the elements; not installed.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include <sys/stat.h>

#include "frcnn/error.h"

namespace frcnn::detail {

// What is wrong with `path` as a file to read: empty when it is a regular file (or one that does
// not exist, which the caller reports as it opens it); else "a folder" or "not a regular file
// (a device or a pipe)".
inline std::string not_a_regular_file(const std::string &path)
{
	struct stat status;
	if (::stat(path.c_str(), &status) != 0 || S_ISREG(status.st_mode))
		return {};
	return S_ISDIR(status.st_mode) ? "a folder" : "not a regular file (a device or a pipe)";
}

// Throws frcnn::Error "<what> '<path>' is <why>" (and ": give the path of <wanted>" when
// `wanted` is given) where not_a_regular_file says something.
inline void require_regular_file(const std::string &path, const std::string &what, const std::string &wanted = {})
{
	const std::string why = not_a_regular_file(path);
	if (!why.empty())
		throw Error(what + " '" + path + "' is " + why + (wanted.empty() ? "" : ": give the path of " + wanted));
}

} // namespace frcnn::detail

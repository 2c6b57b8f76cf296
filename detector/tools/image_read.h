// SPDX-License-Identifier: BSD-3-Clause
// Image files as the programs built with OpenCV read them (frcnn-detect, frcnn-bench,
// frcnn-train).
#pragma once

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <opencv2/imgcodecs.hpp>

#include "frcnn/error.h"

namespace frcnn::cli {

// An image file decoded into 8-bit BGR as it is stored (a JPEG's orientation not applied; see
// image_refusal for what the decoder would misread), empty when it cannot be decoded. OpenCV's
// own exceptions (an image of more pixels than it reads) become one line naming the file.
inline cv::Mat read_image_bgr(const std::string &path)
{
	try {
		return cv::imread(path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
	} catch (const cv::Exception &e) {
		const bool too_large = e.err.find("CV_IO_MAX_IMAGE_PIXELS") != std::string::npos;
		throw Error("cannot read image '" + path + "': " +
			    (too_large ? std::string("it has more pixels than OpenCV reads (raise its limit with "
						     "OPENCV_IO_MAX_IMAGE_PIXELS)")
				       : "OpenCV: " + e.err));
	}
}

// Why read_image_bgr gave no image, for the line that says so: the file cannot be opened, its
// format is none OpenCV decodes (a GIF for OpenCV before 4.7), or its bytes are no whole image.
inline std::string unreadable_image_reason(const std::string &path)
{
	std::error_code error;
	if (std::filesystem::is_directory(path, error))
		return "it is a folder";
	if (!std::ifstream(path, std::ios::binary)) {
		const int err = errno;
		if (path == "-" && err == ENOENT)
			return "no such file (standard input is not read: give the image's file name)";
		return std::strerror(err);
	}
	if (std::filesystem::file_size(path, error) == 0 && !error)
		return "it is empty";
	if (!cv::haveImageReader(path))
		return "its contents are in no format OpenCV reads here (PNG, JPEG, BMP, PPM/PGM, TIFF, WebP "
		       "among others; told by its first bytes, not its name): convert it, e.g. to PNG";
	return "it is damaged or not a whole image";
}

} // namespace frcnn::cli

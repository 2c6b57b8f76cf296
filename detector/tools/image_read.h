// SPDX-License-Identifier: BSD-3-Clause
// Image files as the programs built with OpenCV read them (frcnn-detect, frcnn-bench,
// frcnn-train).
#pragma once

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

} // namespace frcnn::cli

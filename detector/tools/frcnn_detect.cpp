// SPDX-License-Identifier: BSD-3-Clause
// frcnn-detect: runs a Faster R-CNN on image files and prints one JSON object per image.
// Built without OpenCV (meson option opencv), it reads binary PPM (P6) images only.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#ifndef FRCNN_DETECT_OPENCV
#define FRCNN_DETECT_OPENCV 1
#endif
#if FRCNN_DETECT_OPENCV
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include "cli.h"
#include "frcnn/error.h"

namespace {

void usage(FILE *out)
{
	std::fprintf(out,
		     "Usage: frcnn-detect [OPTIONS] --weights W IMAGE...\n"
		     "Runs a Faster R-CNN on each image and prints one JSON line per image:\n"
		     "  {\"image\": PATH, \"width\": W, \"height\": H, \"detections\": [{\"box\": [x1,y1,x2,y2],\n"
		     "   \"label\": L, \"score\": S}, ...]}\n"
		     "boxes in the image's pixels, detections in the model's order (by decreasing score).\n"
#if !FRCNN_DETECT_OPENCV
		     "This build has no OpenCV: it reads binary PPM (P6) images only.\n"
#endif
		     "\n"
		     "Options:\n%s"
		     "  --seed N               random weights from seed N instead of --weights (to try the\n"
		     "                         program without a checkpoint: the detections mean nothing)\n"
		     "  --help                 show this help\n",
		     frcnn::cli::model_options_help());
}

} // namespace

int main(int argc, char **argv)
{
#if FRCNN_DETECT_OPENCV
	// Errors are reported by this program, one line each; OpenCV's own warnings would add more.
	cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
#endif
	frcnn::cli::ModelOptions options;
	std::vector<std::string> images;
	try {
		for (int i = 1; i < argc; i++) {
			const auto arg = frcnn::cli::next_arg(argc, argv, i);
			if (arg.name == "--help" || arg.name == "-h") {
				usage(stdout);
				return 0;
			}
			if (!arg.option())
				images.push_back(arg.name);
			else if (!frcnn::cli::parse_model_option(options, arg.name, arg.value))
				throw frcnn::Error("unknown option " + arg.name + " (see --help)");
		}
		if (images.empty())
			throw frcnn::Error("no images given (see --help)");
		if (options.weights.empty() && options.seed < 0)
			throw frcnn::Error("no weights given: use --weights FILE|PRESET|URL");
	} catch (const frcnn::Error &e) {
		std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
		return 2;
	}

	std::unique_ptr<frcnn::Detector> detector;
	try {
		detector = frcnn::cli::make_detector(options);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
		return 1;
	}

	int status = 0;
	for (const auto &path : images) {
		try {
			frcnn::FrameView frame;
#if FRCNN_DETECT_OPENCV
			cv::Mat image = cv::imread(path, cv::IMREAD_COLOR);
			if (image.empty())
				throw frcnn::Error("cannot read image '" + path + "' (missing, unreadable or not an image)");
			frame.format = frcnn::PixelFormat::BGR;
			frame.width = image.cols;
			frame.height = image.rows;
			frame.planes[0] = image.data;
			frame.strides[0] = (int)image.step[0];
#else
			const auto image = frcnn::cli::read_ppm(
				path, "this frcnn-detect was built without OpenCV: give binary PPM (P6) images");
			frame.format = frcnn::PixelFormat::RGB;
			frame.width = image.width;
			frame.height = image.height;
			frame.planes[0] = image.rgb.data();
			frame.strides[0] = image.width * 3;
#endif
			auto detections = detector->detect({frame})[0];

			nlohmann::ordered_json out;
			out["image"] = path;
			out["width"] = frame.width;
			out["height"] = frame.height;
			out["detections"] = nlohmann::ordered_json::array();
			for (const auto &d : detections)
				out["detections"].push_back(
					{{"box", {d.x1, d.y1, d.x2, d.y2}}, {"label", d.label}, {"score", d.score}});
			std::cout << out.dump() << std::endl;
		} catch (const std::exception &e) {
			std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
			status = 1;
		}
	}
	return status;
}

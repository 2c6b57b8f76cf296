// SPDX-License-Identifier: BSD-3-Clause
// frcnn-detect: runs a Faster R-CNN on image files and prints one JSON object per image.
// Built without OpenCV (meson option opencv), it reads binary PPM (P6) images only.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <set>
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
#include "frcnn/labels.h"
#include "frcnn/weights.h"
#if FRCNN_DETECT_OPENCV
#include "image_read.h"
#endif

namespace {

void usage(FILE *out)
{
	std::fprintf(out,
		     "Usage: frcnn-detect [OPTIONS] --weights W [--] IMAGE...\n"
		     "Runs a Faster R-CNN on each image and prints one JSON line per image:\n"
		     "  {\"image\": PATH, \"width\": W, \"height\": H, \"detections\": [{\"box\": [x1,y1,x2,y2],\n"
		     "   \"label\": L, \"name\": NAME, \"score\": S}, ...]}\n"
		     "boxes in the image's pixels, detections in the model's order (by decreasing score),\n"
		     "L the class id and NAME its name (--labels; by default COCO's for a model of 91\n"
		     "classes, else \"class L\").\n"
		     "With --precision int8 and no calibration file to read, the first\n"
		     "--int8-calibration-frames images (all, when there are fewer) calibrate the model\n"
		     "first: every image's detections are then 8-bit ones.\n"
#if !FRCNN_DETECT_OPENCV
		     "This build has no OpenCV: it reads binary PPM (P6) images only.\n"
#endif
		     "\n"
		     "Options:\n%s"
		     "  --labels FILE          the class names, one a line, background first or left out\n"
		     "                         (frcnn-train writes CHECKPOINT.labels; frcnndetect's labels)\n"
		     "  --classes LIST         keep only these classes: names or ids separated by commas\n"
		     "                         (\"person, car, 3\"; names regardless of case)\n"
		     "  --class-thresholds LIST  score thresholds of single classes, class=score separated\n"
		     "                         by commas (\"person=0.7, car=0.3\"); the other classes keep\n"
		     "                         --score-threshold\n"
		     "  --pixel-aspect-ratio N:D  the shape of the images' pixels, width:height (default\n"
		     "                         1:1): images of pixels that are not square, such as frames\n"
		     "                         of anamorphic video (720x576 at 64:45 shows as 1024x576), are\n"
		     "                         resized for the model as a display shows them; boxes stay in\n"
		     "                         the image's pixels; from 1:16 to 16:1\n"
		     "  --seed N               random weights from seed N instead of --weights (to try the\n"
		     "                         program without a checkpoint: the detections mean nothing)\n"
		     "  --help                 show this help\n",
		     frcnn::cli::model_options_help());
}

// "N:D" (or "N/D") with both positive, the pixels at most 16 times as wide as high or the other
// way round: real video's are within a few times (an absurd ratio squeezes the image to nothing).
frcnn::PixelAspectRatio parse_pixel_aspect_ratio(const std::string &name, const std::string &value)
{
	const auto separator = value.find_first_of(":/");
	if (separator != std::string::npos) {
		int numerator = 0, denominator = 0;
		try {
			numerator = frcnn::cli::to_int(name, value.substr(0, separator), 1);
			denominator = frcnn::cli::to_int(name, value.substr(separator + 1), 1);
		} catch (const frcnn::Error &) {
			/* said below */
		}
		if (numerator > 0 && denominator > 0) {
			if ((double)numerator / denominator > 16 || (double)denominator / numerator > 16)
				throw frcnn::Error("option " + name + " needs a ratio from 1:16 to 16:1, got '" + value + "'");
			return {numerator, denominator};
		}
	}
	throw frcnn::Error("option " + name + " needs two positive integers N:D, got '" + value + "'");
}

// Runs `parse` on an option's value: its frcnn::Error becomes the option's, naming it.
template <typename Parse>
auto of_option(const char *option, Parse parse)
{
	try {
		return parse();
	} catch (const frcnn::Error &e) {
		throw frcnn::Error(std::string("option ") + option + ": " + e.what());
	}
}

} // namespace

int main(int argc, char **argv)
{
#if FRCNN_DETECT_OPENCV
	// Errors are reported by this program, one line each; OpenCV's own warnings would add more.
	cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
#endif
	frcnn::cli::ModelOptions options;
	frcnn::PixelAspectRatio pixel_aspect_ratio;
	std::string labels_path, classes_list, class_thresholds_list;
	std::vector<std::pair<std::string, double>> class_threshold_entries;
	std::vector<std::string> images;
	try {
		for (int i = 1; i < argc; i++) {
			const auto arg = frcnn::cli::next_arg(argc, argv, i);
			if (arg.name == "--help" || arg.name == "-h") {
				usage(stdout);
				return frcnn::cli::help_status("frcnn-detect");
			}
			if (arg.end_of_options()) {
				images.insert(images.end(), argv + i + 1, argv + argc);
				break;
			}
			if (!arg.option())
				images.push_back(arg.name);
			else if (arg.name == "--labels")
				labels_path = arg.value;
			else if (arg.name == "--classes")
				classes_list = arg.value;
			else if (arg.name == "--class-thresholds")
				class_thresholds_list = arg.value;
			else if (arg.name == "--pixel-aspect-ratio")
				pixel_aspect_ratio = parse_pixel_aspect_ratio(arg.name, arg.value);
			else if (!frcnn::cli::parse_model_option(options, arg.name, arg.value))
				throw frcnn::Error("unknown option " + arg.name + " (see --help)");
		}
		class_threshold_entries = of_option("--class-thresholds", [&] {
			return frcnn::split_class_thresholds(class_thresholds_list);
		});
		if (images.empty())
			throw frcnn::Error("no images given (see --help)");
		if (options.weights.empty() && options.seed < 0)
			throw frcnn::Error("no weights given: use --weights FILE|PRESET|URL (or --seed N: random weights, to try it)");
	} catch (const frcnn::Error &e) {
		std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
		return 2;
	}

	/* The labels file and the class names are checked before the weights load (or download):
	 * what needs the model's class count (the number of names, ids in range) once it is known,
	 * which for a preset's weights to download is before them (below). */
	std::vector<std::string> labels_file_names;
	if (!labels_path.empty()) {
		try {
			labels_file_names = frcnn::read_labels_file_names(labels_path);
		} catch (const frcnn::Error &e) {
			std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
			return 1;
		}
	}
	try {
		const std::vector<std::string> *file_names = labels_path.empty() ? nullptr : &labels_file_names;
		of_option("--classes", [&] { frcnn::check_class_names(frcnn::comma_separated(classes_list), file_names); });
		of_option("--class-thresholds", [&] { frcnn::check_class_names(class_threshold_entries, file_names); });
	} catch (const frcnn::Error &e) {
		std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
		return 2;
	}

	// The labels of a model of `num_classes` classes, and the class filters by id of them.
	std::vector<std::string> labels;
	std::set<int64_t> classes;
	std::map<int64_t, double> class_thresholds;
	auto take_labels = [&](int num_classes) {
		labels = labels_path.empty() ? frcnn::default_labels(num_classes)
					     : frcnn::labels_of_file_names(labels_file_names, labels_path, num_classes);
	};
	auto take_class_filters = [&]() {
		try {
			classes = of_option("--classes", [&] { return frcnn::parse_classes(classes_list, labels); });
			class_thresholds = of_option("--class-thresholds", [&] {
				return frcnn::class_thresholds_by_id(class_threshold_entries, labels);
			});
		} catch (const frcnn::Error &e) {
			std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
			return false;
		}
		return true;
	};
	// Weights to download whose class count is known (a preset's) get the checks of that count
	// now too, rather than after the download.
	if (const int num_classes = frcnn::class_count_before_download(options.weights, options.num_classes)) {
		try {
			take_labels(num_classes);
		} catch (const frcnn::Error &e) {
			std::fprintf(stderr, "frcnn-detect: %s\n", e.what());
			return 1;
		}
		if (!take_class_filters())
			return 2;
	}

	// One image: its pixels, and a view of them.
	struct Image {
#if FRCNN_DETECT_OPENCV
		cv::Mat pixels;
#else
		frcnn::cli::PpmImage pixels;
#endif
		frcnn::FrameView frame;
		std::string said; // what the image library wrote reading it (a warning)
	};
	auto read_image = [&pixel_aspect_ratio](const std::string &path) {
		Image image;
#if FRCNN_DETECT_OPENCV
		/* The image libraries write their own lines to stderr (libjpeg's "Premature end of
		 * JPEG file", libpng's errors): they become part of this program's one line. */
		if (const std::string refusal = frcnn::cli::image_refusal(path); !refusal.empty())
			throw frcnn::Error("cannot read image '" + path + "' as it is stored: " + refusal);
		image.pixels = frcnn::cli::capturing_stderr([&] { return frcnn::cli::read_image_bgr(path); }, image.said);
		if (image.pixels.empty())
			throw frcnn::Error("cannot read image '" + path + "': " + frcnn::cli::unreadable_image_reason(path) +
					   (image.said.empty() ? std::string() : " (" + image.said + ")"));
		image.frame.format = frcnn::PixelFormat::BGR;
		image.frame.width = image.pixels.cols;
		image.frame.height = image.pixels.rows;
		image.frame.planes[0] = image.pixels.data;
		image.frame.strides[0] = (int)image.pixels.step[0];
#else
		image.pixels = frcnn::cli::read_ppm(
			path, "this frcnn-detect was built without OpenCV: give binary PPM (P6) images");
		image.frame.format = frcnn::PixelFormat::RGB;
		image.frame.width = image.pixels.width;
		image.frame.height = image.pixels.height;
		image.frame.planes[0] = image.pixels.rgb.data();
		image.frame.strides[0] = image.pixels.width * 3;
#endif
		image.frame.pixel_aspect_ratio = pixel_aspect_ratio;
		return image;
	};

	// int8 without a calibration file to read: calibrate on the first images that can be read
	// (all of them when there are fewer), before any is printed, so that every image's
	// detections are 8-bit ones. The others are reported below, as without int8.
	const bool calibrate = options.precision == frcnn::Precision::Int8 &&
			       (options.int8_calibration.empty() || access(options.int8_calibration.c_str(), F_OK) != 0);
	// Read once: kept for the calibration (reserved, so that their frames keep pointing at them).
	std::vector<Image> calibration_images;
	if (calibrate) {
		const size_t wanted = std::min<size_t>(images.size(), options.int8_calibration_frames);
		calibration_images.reserve(wanted);
		for (size_t i = 0; i < images.size() && calibration_images.size() < wanted; i++) {
			try {
				calibration_images.push_back(read_image(images[i]));
			} catch (const frcnn::Error &) {
			}
		}
		options.int8_calibration_frames = std::max<int>(calibration_images.size(), 1);
	}

	std::unique_ptr<frcnn::Detector> detector;
	try {
		detector = frcnn::cli::make_detector(options);
		take_labels(detector->config().num_classes);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-detect: %s\n", frcnn::cli::error_text(e).c_str());
		return 1;
	}
	// The class filters by id, now that the labels are known.
	if (!take_class_filters())
		return 2;
	// With a filter, the model keeps every detection above the lowest threshold, and each image
	// those of the classes above their own threshold, then the best box_detections_per_img.
	const double score_threshold = detector->config().box_score_thresh;
	const size_t max_detections = detector->config().box_detections_per_img;
	const bool filtering = !classes.empty() || !class_thresholds.empty();
	if (filtering) {
		detector->set_score_threshold(frcnn::lowest_score_threshold(score_threshold, class_thresholds));
		detector->set_max_detections(std::numeric_limits<int>::max());
	}
	const auto dropped = [&](const frcnn::Detection &d) {
		return !frcnn::kept_by_class(d.label, d.score, classes, class_thresholds, score_threshold);
	};

	int status = 0;
	try {
		for (const Image &image : calibration_images)
			detector->detect({image.frame});
		// Asked for and not written: say so before any image is detected on it.
		const std::string unwritten = detector->take_int8_calibration_write_error();
		if (!unwritten.empty())
			throw frcnn::Error(unwritten);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-detect: int8 calibration: %s\n", frcnn::cli::error_text(e).c_str());
		return 1;
	}
	calibration_images.clear();
	frcnn::cli::stop_between_lines(); /* a reader of the lines never gets half of one */
	for (const auto &path : images) {
		try {
			const auto image = read_image(path);
			if (!image.said.empty()) /* said once, also of an image read for the calibration */
				std::fprintf(stderr, "frcnn-detect: warning: image '%s': %s\n", path.c_str(), image.said.c_str());
			const auto &frame = image.frame;
			auto detections = detector->detect({frame})[0];
			if (filtering) {
				detections.erase(std::remove_if(detections.begin(), detections.end(), dropped),
						 detections.end());
				if (detections.size() > max_detections)
					detections.resize(max_detections);
			}

			nlohmann::ordered_json out;
			out["image"] = path;
			out["width"] = frame.width;
			out["height"] = frame.height;
			out["detections"] = nlohmann::ordered_json::array();
			for (const auto &d : detections)
				out["detections"].push_back(
					{{"box", {d.x1, d.y1, d.x2, d.y2}},
					 {"label", d.label},
					 {"name", frcnn::label_name(labels, d.label)},
					 {"score", d.score}});
			// File names need not be UTF-8; their stray bytes come out as U+FFFD.
			frcnn::cli::print_line(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
		} catch (const std::exception &e) {
			std::fprintf(stderr, "frcnn-detect: %s\n", frcnn::cli::error_text(e).c_str());
			status = 1;
		}
		// Output that does not arrive (a full disk) is a failure,
		// and the images after it would be detected for nothing.
		if (!std::cout) {
			std::fprintf(stderr, "frcnn-detect: cannot write the detections to standard output\n");
			return 1;
		}
	}
	frcnn::cli::stop_if_asked();
	return status;
}

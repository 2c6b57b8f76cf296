// SPDX-License-Identifier: BSD-3-Clause
// frcnn-bench: throughput, latency, time per stage, memory and achieved GFLOP/s of a Faster R-CNN
// on frames decoded from a video or read from image files.
//
// Built without OpenCV (meson option opencv), it reads binary PPM (P6) images only.
#ifndef FRCNN_BENCH_OPENCV
#define FRCNN_BENCH_OPENCV 1
#endif

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

/* LibTorch is built with NDEBUG. Without it (a debug build of this program), the inline
 * RecordFunction::inputs() would check a flag that only exists in debug builds of LibTorch: it
 * reads a padding byte of the library's object and may stop the program at random. The header is
 * read here as the library was built; its include guard keeps it so for the headers below. */
#ifdef NDEBUG
#include <ATen/record_function.h>
#else
#define NDEBUG
#include <ATen/record_function.h>
#undef NDEBUG
#endif
#include <nlohmann/json.hpp>
#if FRCNN_BENCH_OPENCV
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>
#endif
#include <torch/cuda.h>
#include <torch/torch.h>

#include "cli.h"
#include "frcnn/checkpoint.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "frcnn/model.h"
#if FRCNN_BENCH_OPENCV
#include "image_read.h"
#endif
#include "parts.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

double ms_since(Clock::time_point start)
{
	return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

const char *const kStages[] = {"transform", "backbone_fpn", "rpn", "roi_heads", "postprocess"};
constexpr size_t kNumStages = 5;

void usage(FILE *out)
{
	std::fprintf(out,
		     "Usage: frcnn-bench [OPTIONS] [--] INPUT...\n"
		     "Runs a Faster R-CNN on frames and reports frames per second, latency per batch (p50,\n"
		     "p95), time per stage, peak RSS, achieved GFLOP/s and the time the model took to load\n"
		     "from a weights file. An INPUT is an image file or a video (decoded with OpenCV; a\n"
		     "build without OpenCV reads binary PPM images only); frames are taken in order,\n"
		     "starting over at the end. Decoding is not timed.\n\n"
		     "Options:\n%s"
		     "  --seed N               random weights from seed N when no --weights are given; the\n"
		     "                         frozen batch-norm statistics are then set from the first batch\n"
		     "                         so that activations stay in the range of a trained model\n"
		     "  --batch N              frames per batch (default 1)\n"
		     "  --warmup N             untimed batches first (default 2)\n"
		     "  --frames N             timed frames, rounded up to whole batches (default 20)\n"
		     "  --facade               time Detector::detect (what the element runs) instead of the\n"
		     "                         model's stages one by one; no per-stage times\n"
		     "  --frame-copies         before each timed batch, copy its frames as frcnndetect does on\n"
		     "                         CUDA when they arrive (Detector::copy_frame: on CUDA through\n"
		     "                         page-locked memory to the device, so that the batch starts\n"
		     "                         with them there); the copying is timed apart\n"
		     "  --fp16                 the same as --precision fp16 (CUDA only)\n"
		     "  --pixel-format F       hand the frames to the detector as RGB (default), NV12, I420,\n"
		     "                         P010_10LE or v210 (converted first, not timed: BT.709,\n"
		     "                         limited range), to time the pre-processing of a decoder's\n"
		     "                         or a capture card's frames\n"
		     "  --transfer T           sdr (default), pq or hlg: the frames' transfer function (HDR\n"
		     "                         video is mapped to SDR in the pre-processing; the bytes are\n"
		     "                         the same, only the reading differs)\n"
		     "  --primaries P          bt709 (default), bt2020 or p3: the frames' colour primaries\n"
		     "                         (wide-gamut colours are converted to BT.709's in the\n"
		     "                         pre-processing; the bytes are the same)\n"
		     "  --resize WxH           resize the decoded frames to W x H first (not timed; needs\n"
		     "                         OpenCV)\n"
		     "  --channels-last        convolution weights and the input batch in channels-last\n"
		     "                         memory format (NHWC convolutions: fastest with fp16 on CUDA)\n"
		     "  --no-check             skip the check, in the first warm-up batch, that the stages run\n"
		     "                         one by one give what the model's forward() gives\n"
		     "  --rss-at N,N,...       also report the resident set size after N timed frames, and the\n"
		     "                         largest seen up to then\n"
		     "  --profile              one extra pass timing each top-level ATen operator\n"
		     "  --save-weights FILE    write the model's weights as a checkpoint (torch.load and\n"
		     "                         torchvision read it) and exit\n"
		     "  --dump-frames DIR      write the frames a run with these options uses as raw RGB\n"
		     "                         (DIR/NNNNN.rgb) and DIR/frames.json, and exit\n"
		     "  --detections FILE      write the detections of the first timed batch as JSON:\n"
		     "                         per frame, [{\"box\": [x1,y1,x2,y2], \"label\": L, \"score\": S}]\n"
		     "  --json                 print one JSON object instead of text\n"
		     "  --help                 show this help\n",
		     frcnn::cli::model_options_help());
}

struct BenchOptions {
	frcnn::cli::ModelOptions model;
	std::vector<std::string> inputs;
	int batch = 1;
	int warmup = 2;
	int frames = 20;
	bool facade = false;
	bool frame_copies = false;
	bool check = true;
	bool channels_last = false;
	bool profile = false;
	int resize_width = 0, resize_height = 0;
	frcnn::PixelFormat pixel_format = frcnn::PixelFormat::RGB;
	frcnn::TransferFunction transfer = frcnn::TransferFunction::SDR;
	frcnn::ColourPrimaries primaries = frcnn::ColourPrimaries::BT709;
	bool json = false;
	std::vector<long long> rss_at;
	std::string save_weights;
	std::string dump_frames;
	std::string detections;
};

// --- frames -----------------------------------------------------------------------------------

// One decoded frame: RGB, 3 bytes per pixel, rows packed; with --pixel-format, also its bytes in
// that format, which the detector is given. The pixels are shared, so that a batch holds frames
// without copying them.
struct Image {
	int width = 0;
	int height = 0;
	std::shared_ptr<const std::vector<uint8_t>> rgb;
	frcnn::PixelFormat format = frcnn::PixelFormat::RGB;
	std::shared_ptr<const std::vector<uint8_t>> converted; // planes of `format`, one after the other
	size_t offsets[3] = {0, 0, 0};
	int strides[3] = {0, 0, 0};
	frcnn::TransferFunction transfer = frcnn::TransferFunction::SDR;
	frcnn::ColourPrimaries primaries = frcnn::ColourPrimaries::BT709;

	const uint8_t *row(int y) const { return rgb->data() + (size_t)y * (size_t)width * 3; }
};

frcnn::FrameView view_of(const Image &image)
{
	frcnn::FrameView v;
	v.format = image.format;
	v.width = image.width;
	v.height = image.height;
	v.transfer = image.transfer;
	v.primaries = image.primaries;
	if (image.format == frcnn::PixelFormat::RGB) {
		v.planes[0] = image.rgb->data();
		v.strides[0] = image.width * 3;
		return v;
	}
	for (int p = 0; p < 3; p++) {
		v.planes[p] = image.strides[p] > 0 ? image.converted->data() + image.offsets[p] : nullptr;
		v.strides[p] = image.strides[p];
	}
	v.matrix = frcnn::YuvMatrix::BT709;
	return v;
}

// BT.709's limited-range Y, U and V (8-bit levels) of an RGB colour of 0..1.
std::array<double, 3> bt709_levels(double r, double g, double b)
{
	const double kr = 0.2126, kb = 0.0722, kg = 1 - kr - kb;
	const double luma = kr * r + kg * g + kb * b;
	return {16 + 219 * luma, 128 + 224 * (b - luma) / (2 * (1 - kb)), 128 + 224 * (r - luma) / (2 * (1 - kr))};
}

// The frame's RGB pixels as v210 (each chroma sample the mean of the 2 pixels it covers; rows of
// GStreamer's stride, a multiple of 128 bytes).
void convert_to_v210(Image &image)
{
	const int w = image.width, h = image.height;
	image.strides[0] = (w + 47) / 48 * 128;
	auto out = std::make_shared<std::vector<uint8_t>>((size_t)image.strides[0] * h, 0);
	auto put = [](uint8_t *row, int position, double level) {
		const uint32_t v = (uint32_t)std::clamp((int)std::lround(level * 4), 0, 1023);
		uint8_t *word = row + position / 3 * 4;
		const int shift = 10 * (position % 3);
		const uint32_t value = (word[0] | word[1] << 8 | word[2] << 16 | (uint32_t)word[3] << 24) | v << shift;
		for (int b = 0; b < 4; b++)
			word[b] = (uint8_t)(value >> (8 * b));
	};
	for (int y = 0; y < h; y++) {
		uint8_t *row = out->data() + (size_t)y * image.strides[0];
		for (int x = 0; x < w; x += 2) {
			const uint8_t *p = image.row(y) + x * 3, *q = x + 1 < w ? p + 3 : p;
			put(row, 2 * x + 1, bt709_levels(p[0] / 255.0, p[1] / 255.0, p[2] / 255.0)[0]);
			put(row, 2 * x + 3, bt709_levels(q[0] / 255.0, q[1] / 255.0, q[2] / 255.0)[0]);
			const auto pair = bt709_levels((p[0] + q[0]) / 510.0, (p[1] + q[1]) / 510.0, (p[2] + q[2]) / 510.0);
			put(row, 2 * x, pair[1]);
			put(row, 2 * x + 2, pair[2]);
		}
	}
	image.converted = std::move(out);
}

// The frame's RGB pixels as NV12, I420 or P010_10LE (BT.709, limited range; each chroma sample the
// mean of the 2x2 pixels it covers), or v210, for --pixel-format.
void convert_image(Image &image, frcnn::PixelFormat format)
{
	image.format = format;
	if (format == frcnn::PixelFormat::RGB)
		return;
	if (format == frcnn::PixelFormat::v210)
		return convert_to_v210(image);
	const int w = image.width, h = image.height, cw = (w + 1) / 2, ch = (h + 1) / 2;
	const bool words = format == frcnn::PixelFormat::P010_10LE;
	const int bytes = words ? 2 : 1;
	const double levels = words ? 4.0 : 1.0; // 10-bit levels are 8-bit ones times 4
	auto out = std::make_shared<std::vector<uint8_t>>();
	if (format == frcnn::PixelFormat::I420) {
		image.strides[0] = w, image.strides[1] = image.strides[2] = cw;
		image.offsets[1] = (size_t)w * h;
		image.offsets[2] = image.offsets[1] + (size_t)cw * ch;
		out->resize(image.offsets[2] + (size_t)cw * ch);
	} else { // NV12, P010_10LE: luma, then U and V interleaved
		image.strides[0] = w * bytes, image.strides[1] = 2 * cw * bytes, image.strides[2] = 0;
		image.offsets[1] = (size_t)image.strides[0] * h;
		out->resize(image.offsets[1] + (size_t)image.strides[1] * ch);
	}
	auto put = [&](size_t at, double level) {
		const int v = std::clamp((int)std::lround(level * levels), 0, words ? 1023 : 255);
		if (words) {
			(*out)[at] = (uint8_t)((v << 6) & 0xff);
			(*out)[at + 1] = (uint8_t)((v << 6) >> 8);
		} else {
			(*out)[at] = (uint8_t)v;
		}
	};
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			const uint8_t *p = image.row(y) + x * 3;
			put((size_t)y * image.strides[0] + (size_t)x * bytes, bt709_levels(p[0] / 255.0, p[1] / 255.0, p[2] / 255.0)[0]);
		}
	for (int cy = 0; cy < ch; cy++)
		for (int cx = 0; cx < cw; cx++) {
			double r = 0, g = 0, b = 0;
			int n = 0;
			for (int y = 2 * cy; y < std::min(h, 2 * cy + 2); y++)
				for (int x = 2 * cx; x < std::min(w, 2 * cx + 2); x++, n++) {
					const uint8_t *p = image.row(y) + x * 3;
					r += p[0], g += p[1], b += p[2];
				}
			const auto levels = bt709_levels(r / (n * 255.0), g / (n * 255.0), b / (n * 255.0));
			const double u = levels[1], v = levels[2];
			if (format == frcnn::PixelFormat::I420) {
				put(image.offsets[1] + (size_t)cy * cw + cx, u);
				put(image.offsets[2] + (size_t)cy * cw + cx, v);
			} else {
				const size_t at = image.offsets[1] + (size_t)cy * image.strides[1] + (size_t)cx * 2 * bytes;
				put(at, u);
				put(at + bytes, v);
			}
		}
	image.converted = std::move(out);
}

std::vector<frcnn::FrameView> views_of(const std::vector<Image> &frames)
{
	std::vector<frcnn::FrameView> views;
	for (const auto &f : frames)
		views.push_back(view_of(f));
	return views;
}

#if !FRCNN_BENCH_OPENCV
const char kPpmOnly[] = "this frcnn-bench was built without OpenCV: give binary PPM (P6) images";

Image read_ppm(const std::string &path)
{
	auto ppm = frcnn::cli::read_ppm(path, kPpmOnly);
	Image image;
	image.width = ppm.width;
	image.height = ppm.height;
	image.rgb = std::make_shared<std::vector<uint8_t>>(std::move(ppm.rgb));
	return image;
}
#endif

// The frames of the inputs in order, over and over.
class FrameSource {
public:
	FrameSource(std::vector<std::string> inputs, int width, int height,
		    frcnn::PixelFormat format = frcnn::PixelFormat::RGB,
		    frcnn::TransferFunction transfer = frcnn::TransferFunction::SDR,
		    frcnn::ColourPrimaries primaries = frcnn::ColourPrimaries::BT709)
		: inputs_(std::move(inputs)), format_(format), transfer_(transfer), primaries_(primaries)
#if FRCNN_BENCH_OPENCV
		  , size_(width, height)
#endif
	{
#if FRCNN_BENCH_OPENCV
		for (const auto &path : inputs_) {
			// Told apart before OpenCV tries its backends on them: its GStreamer backend
			// leaves a half-built pipeline behind on an empty file (GStreamer-CRITICAL
			// warnings before the error).
			struct stat file {};
			if (stat(path.c_str(), &file) != 0)
				throw frcnn::Error("cannot open '" + path + "': " + std::strerror(errno));
			if (S_ISREG(file.st_mode) && file.st_size == 0)
				throw frcnn::Error("cannot open '" + path + "': the file is empty");
			if (!cv::haveImageReader(path)) {
				/* A video gives a frame: a file that opens as one (a web page saved
				 * under a .jpg name opens as MJPEG) but gives none is no input. */
				cv::VideoCapture probe;
				std::string said; /* the decoder's complaint, part of the message */
				const bool video = frcnn::cli::capturing_stderr(
					[&] {
						cv::Mat first;
						return open_video(probe, path) && probe.read(first) && !first.empty();
					},
					said);
				if (!video)
					throw frcnn::Error("cannot open '" + path +
							   "': not an image OpenCV reads, nor a video it can decode" +
							   (said.empty() ? std::string() : " (" + said + ")"));
			}
		}
#else
		// No resizing without OpenCV: the option is refused before.
		(void)width;
		(void)height;
		for (const auto &path : inputs_)
			read_ppm(path);
#endif
	}

	Image next()
	{
		Image image = next_rgb();
		convert_image(image, format_);
		image.transfer = transfer_;
		image.primaries = primaries_;
		return image;
	}

private:
	Image next_rgb()
	{
#if FRCNN_BENCH_OPENCV
		for (size_t tries = 0; tries <= 2 * inputs_.size(); tries++) {
			const std::string &path = inputs_[index_];
			cv::Mat bgr;
			if (cv::haveImageReader(path)) {
				if (const std::string refusal = frcnn::cli::image_refusal(path); !refusal.empty())
					throw frcnn::Error("cannot read image '" + path + "' as it is stored: " + refusal);
				bgr = frcnn::cli::read_image_bgr(path);
				if (bgr.empty())
					throw frcnn::Error("cannot read image '" + path +
							   "': " + frcnn::cli::unreadable_image_reason(path));
				advance();
			} else {
				if (!video_.isOpened() && !open_video(video_, path))
					throw frcnn::Error("cannot open video '" + path + "'");
				if (!video_.read(bgr) || bgr.empty()) {
					video_.release();
					advance();
					continue;
				}
			}
			if (size_.width > 0 && bgr.size() != size_)
				cv::resize(bgr, bgr, size_, 0, 0, cv::INTER_AREA);
			cv::Mat rgb;
			cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
			Image image;
			image.width = rgb.cols;
			image.height = rgb.rows;
			auto pixels = std::make_shared<std::vector<uint8_t>>((size_t)rgb.cols * rgb.rows * 3);
			for (int y = 0; y < rgb.rows; y++)
				std::memcpy(pixels->data() + (size_t)y * rgb.cols * 3, rgb.ptr(y), (size_t)rgb.cols * 3);
			image.rgb = std::move(pixels);
			return image;
		}
		throw frcnn::Error("the inputs hold no frames");
#else
		Image image = read_ppm(inputs_[index_]);
		advance();
		return image;
#endif
	}

	void advance() { index_ = (index_ + 1) % inputs_.size(); }

	std::vector<std::string> inputs_;
	frcnn::PixelFormat format_;
	frcnn::TransferFunction transfer_;
	frcnn::ColourPrimaries primaries_;
	size_t index_ = 0;
#if FRCNN_BENCH_OPENCV
	cv::Size size_;
	cv::VideoCapture video_;

	// With FFmpeg where OpenCV has it: its GStreamer backend, tried first otherwise, leaves a
	// half-built pipeline behind on a file that is no video (GStreamer-CRITICAL warnings).
	static bool open_video(cv::VideoCapture &video, const std::string &path)
	{
		const bool ffmpeg = cv::videoio_registry::hasBackend(cv::CAP_FFMPEG);
		return video.open(path, ffmpeg ? cv::CAP_FFMPEG : cv::CAP_ANY);
	}
#endif
};

// --- memory -----------------------------------------------------------------------------------

double peak_rss_mb()
{
	struct rusage usage {};
	getrusage(RUSAGE_SELF, &usage);
	return usage.ru_maxrss / 1024.0; // KiB on Linux
}

double current_rss_mb()
{
	std::ifstream statm("/proc/self/statm");
	long long pages_total = 0, pages_resident = 0;
	statm >> pages_total >> pages_resident;
	return pages_resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

// --- operator observer: FLOPs and time per operator -------------------------------------------

// Counts the FLOPs of convolutions and matrix products from their input shapes (a multiply-add
// is two FLOPs), and, when asked, times each top-level operator. It observes the operators the
// dispatcher runs on this thread only: LibTorch's worker threads run inside those operators.
struct OpObserver {
	double flops = 0;
	bool timing = false;
	std::map<std::string, double> ms; // top-level operator (or group) -> milliseconds
	int depth = 0;

	static OpObserver *active;
};
OpObserver *OpObserver::active = nullptr;

struct OpContext : at::ObserverContext {
	Clock::time_point start;
	std::string name;
};

std::vector<int64_t> shape_of(const c10::IValue &v)
{
	if (v.isTensor() && v.toTensor().defined())
		return v.toTensor().sizes().vec();
	return {};
}

std::vector<int64_t> int_list(const c10::IValue &v)
{
	if (v.isIntList())
		return v.toIntVector();
	return {};
}

double op_flops(const std::string &name, c10::ArrayRef<const c10::IValue> in)
{
	if (name == "aten::convolution" && in.size() >= 9) {
		// (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
		const auto x = shape_of(in[0]), w = shape_of(in[1]);
		if (x.size() != 4 || w.size() != 4)
			return 0;
		const auto stride = int_list(in[3]), padding = int_list(in[4]), dilation = int_list(in[5]);
		if (stride.size() != 2 || padding.size() != 2 || dilation.size() != 2)
			return 0;
		double out = 1;
		for (int d = 0; d < 2; d++)
			out *= (double)((x[2 + d] + 2 * padding[d] - dilation[d] * (w[2 + d] - 1) - 1) / stride[d] + 1);
		// weight is [Cout, Cin/groups, kh, kw]
		return 2.0 * x[0] * w[0] * out * w[1] * w[2] * w[3];
	}
	if (name == "frcnn::onednn_convolution" && in.size() >= 4 && in[2].isInt() && in[3].isInt()) {
		// (input, weight, stride, padding): the oneDNN CPU convolutions. The model's
		// arithmetic is counted, as for LibTorch's, whatever algorithm computes it.
		const auto x = shape_of(in[0]), w = shape_of(in[1]);
		const int64_t stride = in[2].toInt(), padding = in[3].toInt();
		if (x.size() != 4 || w.size() != 4 || stride < 1)
			return 0;
		const double out = (double)((x[2] + 2 * padding - w[2]) / stride + 1) *
				   (double)((x[3] + 2 * padding - w[3]) / stride + 1);
		return 2.0 * x[0] * w[0] * out * w[1] * w[2] * w[3];
	}
	if (name == "frcnn::onednn_linear" && in.size() >= 2) {
		// (rows [M, K], weight [N, K]): the box head's linear layers in 8 bits.
		const auto x = shape_of(in[0]), w = shape_of(in[1]);
		if (x.size() == 2 && w.size() == 2)
			return 2.0 * x[0] * x[1] * w[0];
	}
	if ((name == "aten::addmm" && in.size() >= 3) || (name == "aten::mm" && in.size() >= 2)) {
		const size_t first = name == "aten::addmm" ? 1 : 0; // addmm(bias, a, b)
		const auto a = shape_of(in[first]), b = shape_of(in[first + 1]);
		if (a.size() == 2 && b.size() == 2)
			return 2.0 * a[0] * a[1] * b[1];
	}
	if (name == "aten::bmm" && in.size() >= 2) {
		const auto a = shape_of(in[0]), b = shape_of(in[1]);
		if (a.size() == 3 && b.size() == 3)
			return 2.0 * a[0] * a[1] * a[2] * b[2];
	}
	return 0;
}

// An element-wise multiply or add of a 4-D activation by a per-channel [1,C,1,1] tensor: what
// FrozenBatchNorm2d's `x * scale + shift` runs (nothing else in the model has that pattern).
bool is_frozen_bn(const std::string &name, c10::ArrayRef<const c10::IValue> in)
{
	if ((name != "aten::mul" && name != "aten::add") || in.size() < 2)
		return false;
	const auto x = shape_of(in[0]), s = shape_of(in[1]);
	return x.size() == 4 && s.size() == 4 && s[0] == 1 && s[2] == 1 && s[3] == 1 && s[1] == x[1] &&
	       x[2] * x[3] > 1;
}

std::unique_ptr<at::ObserverContext> op_start(const at::RecordFunction &fn)
{
	OpObserver *o = OpObserver::active;
	if (o == nullptr)
		return nullptr;
	const std::string name = fn.name();
	o->flops += op_flops(name, fn.inputs());
	if (!o->timing || o->depth++ != 0)
		return nullptr;
	auto ctx = std::make_unique<OpContext>();
	ctx->name = is_frozen_bn(name, fn.inputs()) ? "FrozenBatchNorm2d (aten::mul/add by [1,C,1,1])" : name;
	ctx->start = Clock::now();
	return ctx;
}

void op_end(const at::RecordFunction &, at::ObserverContext *ctx_base)
{
	OpObserver *o = OpObserver::active;
	if (o == nullptr || !o->timing)
		return;
	o->depth--;
	if (auto *ctx = dynamic_cast<OpContext *>(ctx_base))
		o->ms[ctx->name] += ms_since(ctx->start);
}

// Observes the operators run on this thread while it lives.
class ObserverScope {
public:
	explicit ObserverScope(OpObserver &observer)
	{
		OpObserver::active = &observer;
		handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(op_start, op_end)
							     .needsInputs(true)
							     .scopes({at::RecordScope::FUNCTION}));
	}
	~ObserverScope()
	{
		at::removeCallback(handle_);
		OpObserver::active = nullptr;
	}
	ObserverScope(const ObserverScope &) = delete;
	ObserverScope &operator=(const ObserverScope &) = delete;

private:
	at::CallbackHandle handle_;
};

// --- the model, stage by stage ----------------------------------------------------------------

// The model's parts, run in the order FasterRCNNImpl::run_transformed runs them, from the frames
// as forward_frames() takes them, with a clock between stages. Checked against the model's own
// forward_frames() during warm-up. The model is already on its device, in its precision and
// memory format (FasterRCNNImpl::to_device).
class StagedModel {
public:
	StagedModel(frcnn::FasterRCNN model, torch::Device device, bool channels_last)
		: model_(std::move(model)), device_(device),
		  dtype_(model_->parameters().front().scalar_type()), channels_last_(channels_last)
	{
		for (const auto &child : model_->named_children()) {
			if (child.key() == "backbone")
				backbone_ = std::dynamic_pointer_cast<frcnn::detail::BackboneImpl>(child.value());
			else if (child.key() == "rpn")
				rpn_ = std::dynamic_pointer_cast<frcnn::detail::RegionProposalNetworkImpl>(
					child.value());
			else if (child.key() == "roi_heads")
				roi_heads_ = std::dynamic_pointer_cast<frcnn::detail::RoIHeadsImpl>(child.value());
		}
		if (!backbone_ || !rpn_ || !roi_heads_)
			throw frcnn::Error("the model has no backbone, rpn and roi_heads parts to time one by one; "
					   "use --facade");
	}

	// Plain detections per frame, as the facade returns them. frame_memory: see
	// frcnn::detail::transform_frames (with --frame-copies).
	std::vector<std::vector<frcnn::Detection>> run(const std::vector<frcnn::FrameView> &frames,
					   const std::vector<frcnn::detail::FrameMemory> &frame_memory, double *stage_ms)
	{
		auto clock = Clock::now();
		auto lap = [&](size_t stage) {
			// Kernels run asynchronously on CUDA: wait for the stage's before reading the clock.
			if (device_.is_cuda())
				torch::cuda::synchronize();
			const auto now = Clock::now();
			if (stage_ms)
				stage_ms[stage] = std::chrono::duration<double, std::milli>(now - clock).count();
			clock = now;
		};
		c10::InferenceMode inference;
		// What forward_frames() runs: on CUDA the frame bytes go to the device and are
		// converted there, so this stage times the GPU pre-processing; on the CPU in memory
		// kept from batch to batch, as the model keeps its own.
		auto batch = frcnn::detail::transform_frames(model_->config(), frames, device_, dtype_,
							     channels_last_, frame_memory, &transform_buffers_);
		host_gather_ms_ = batch.host_gather_ms;
		lap(0);
		auto features = backbone_->forward(batch.batch);
		lap(1);
		auto proposals = rpn_->forward(batch.batch, batch.image_sizes, features, nullptr);
		lap(2);
		std::vector<torch::Tensor> levels(features.begin(), features.end() - 1);
		auto pooled = roi_heads_->box_roi_pool(levels, proposals.boxes, batch.image_sizes);
		auto [class_logits, box_regression] =
			roi_heads_->box_predictor(roi_heads_->box_head.forward(pooled));
		lap(3);
		// As RoIHeadsImpl::forward: an fp16 or bf16 model's scores and boxes are computed in float.
		auto detections = roi_heads_->postprocess(
			class_logits.to(frcnn::detail::geometry_dtype(class_logits)),
			box_regression.to(frcnn::detail::geometry_dtype(box_regression)), proposals.boxes,
			batch.image_sizes);
		// As FasterRCNNImpl::run_transformed and Detector::detect: the boxes back to frame
		// pixels for the whole batch, then the detections to the host in one copy.
		auto on_host = frcnn::detail::detections_to_host(
			frcnn::detail::boxes_to_original_sizes(std::move(detections), batch.image_sizes, batch.original_sizes));
		lap(4);
		input_shape_ = batch.batch.sizes().vec();
		return on_host;
	}

	// The model's own forward pass, for the check.
	std::vector<std::vector<frcnn::Detection>> forward(const std::vector<Image> &frames)
	{
		c10::InferenceMode inference;
		return frcnn::detail::detections_to_host(model_->forward_frames(views_of(frames)));
	}

	const std::vector<int64_t> &input_shape() const { return input_shape_; }
	// CUDA: of the last run's transform stage, the host time spent gathering frame bytes into
	// pinned memory (the rest is the copies to the device and the kernels).
	double host_gather_ms() const { return host_gather_ms_; }

private:
	frcnn::FasterRCNN model_;
	torch::Device device_;
	torch::ScalarType dtype_;
	bool channels_last_;
	double host_gather_ms_ = 0;
	std::shared_ptr<frcnn::detail::BackboneImpl> backbone_;
	std::shared_ptr<frcnn::detail::RegionProposalNetworkImpl> rpn_;
	std::shared_ptr<frcnn::detail::RoIHeadsImpl> roi_heads_;
	frcnn::detail::TransformBuffers transform_buffers_;
	std::vector<int64_t> input_shape_;
};

// How two runs' detections compare: whether they are identical, else whether the labels are
// and by how many pixels the boxes differ at most.
json compare_detections(const std::vector<std::vector<frcnn::Detection>> &a,
			const std::vector<std::vector<frcnn::Detection>> &b)
{
	bool identical = a.size() == b.size(), labels = a.size() == b.size();
	double max_box_diff = 0;
	for (size_t i = 0; i < a.size() && labels; i++) {
		labels = a[i].size() == b[i].size();
		for (size_t k = 0; k < a[i].size() && labels; k++) {
			const frcnn::Detection &x = a[i][k], &y = b[i][k];
			labels = x.label == y.label;
			const double box = std::max({std::abs(x.x1 - y.x1), std::abs(x.y1 - y.y1), std::abs(x.x2 - y.x2),
						     std::abs(x.y2 - y.y2)});
			max_box_diff = std::max(max_box_diff, box);
			identical = identical && labels && box == 0 && x.score == y.score;
		}
		identical = identical && labels;
	}
	return {{"identical", identical}, {"labels_equal", labels}, {"max_box_diff_px", max_box_diff}};
}

// numpy.percentile's default (linear interpolation between closest ranks).
double percentile(std::vector<double> v, double q)
{
	if (v.empty())
		return 0;
	std::sort(v.begin(), v.end());
	const double pos = q / 100.0 * (double)(v.size() - 1);
	const size_t lo = (size_t)std::floor(pos), hi = std::min(lo + 1, v.size() - 1);
	return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

double round_to(double v, int digits)
{
	const double f = std::pow(10.0, digits);
	return std::round(v * f) / f;
}

torch::Device device_of(const std::string &name)
{
	return name == "cpu" ? torch::Device(torch::kCPU) : torch::Device(name);
}

BenchOptions parse(int argc, char **argv, bool &help)
{
	BenchOptions o;
	using frcnn::cli::to_int;
	for (int i = 1; i < argc; i++) {
		const auto a = frcnn::cli::next_arg(
			argc, argv, i, {"--json", "--facade", "--frame-copies", "--profile", "--channels-last", "--fp16",
					     "--no-check"});
		const std::string &arg = a.name, &value = a.value;
		if (arg == "--help" || arg == "-h") {
			help = true;
			return o;
		}
		if (a.end_of_options()) {
			o.inputs.insert(o.inputs.end(), argv + i + 1, argv + argc);
			break;
		}
		if (!a.option())
			o.inputs.push_back(arg);
		else if (arg == "--json")
			o.json = true;
		else if (arg == "--facade")
			o.facade = true;
		else if (arg == "--frame-copies")
			o.frame_copies = true;
		else if (arg == "--profile")
			o.profile = true;
		else if (arg == "--channels-last")
			o.channels_last = true;
		else if (arg == "--fp16")
			o.model.precision = frcnn::Precision::Fp16;
		else if (arg == "--no-check")
			o.check = false;
		else if (arg == "--batch")
			o.batch = to_int(arg, value, 1);
		else if (arg == "--warmup")
			o.warmup = to_int(arg, value, 0);
		else if (arg == "--frames")
			o.frames = to_int(arg, value, 1);
		else if (arg == "--pixel-format") {
			const std::map<std::string, frcnn::PixelFormat> formats{{"RGB", frcnn::PixelFormat::RGB},
										{"NV12", frcnn::PixelFormat::NV12},
										{"I420", frcnn::PixelFormat::I420},
										{"P010_10LE", frcnn::PixelFormat::P010_10LE},
										{"v210", frcnn::PixelFormat::v210}};
			const auto it = formats.find(value);
			if (it == formats.end())
				throw frcnn::Error("--pixel-format needs RGB, NV12, I420, P010_10LE or v210, got '" + value + "'");
			o.pixel_format = it->second;
		} else if (arg == "--transfer") {
			if (value == "sdr")
				o.transfer = frcnn::TransferFunction::SDR;
			else if (value == "pq")
				o.transfer = frcnn::TransferFunction::PQ;
			else if (value == "hlg")
				o.transfer = frcnn::TransferFunction::HLG;
			else
				throw frcnn::Error("--transfer needs sdr, pq or hlg, got '" + value + "'");
		} else if (arg == "--primaries") {
			if (value == "bt709")
				o.primaries = frcnn::ColourPrimaries::BT709;
			else if (value == "bt2020")
				o.primaries = frcnn::ColourPrimaries::BT2020;
			else if (value == "p3")
				o.primaries = frcnn::ColourPrimaries::DisplayP3;
			else
				throw frcnn::Error("--primaries needs bt709, bt2020 or p3, got '" + value + "'");
		} else if (arg == "--resize") {
			const size_t x = value.find('x');
			if (x == std::string::npos)
				throw frcnn::Error("--resize needs WIDTHxHEIGHT, got '" + value + "'");
			o.resize_width = to_int(arg, value.substr(0, x), 1);
			o.resize_height = to_int(arg, value.substr(x + 1), 1);
		} else if (arg == "--save-weights")
			o.save_weights = value;
		else if (arg == "--dump-frames")
			o.dump_frames = value;
		else if (arg == "--detections")
			o.detections = value;
		else if (arg == "--rss-at") {
			size_t start = 0;
			while (start <= value.size()) {
				size_t comma = value.find(',', start);
				if (comma == std::string::npos)
					comma = value.size();
				o.rss_at.push_back(to_int(arg, value.substr(start, comma - start), 1));
				start = comma + 1;
			}
		} else if (!frcnn::cli::parse_model_option(o.model, arg, value))
			throw frcnn::Error("unknown option " + arg + " (see --help)");
	}
	/* --save-weights alone needs no frames (seeded weights are then not calibrated on any);
	 * --dump-frames writes the frames of the inputs. */
	if (o.inputs.empty() && (o.save_weights.empty() || !o.dump_frames.empty()))
		throw frcnn::Error("no input given: a video or image files (see --help)");
	if (o.model.weights.empty() && o.model.seed < 0 && o.dump_frames.empty())
		throw frcnn::Error("no weights given: use --weights FILE|PRESET|URL or --seed N");
	/* The timed frames are whole batches. */
	const long long timed_frames = (static_cast<long long>(o.frames) + o.batch - 1) / o.batch * o.batch;
	for (long long n : o.rss_at)
		if (n > timed_frames)
			throw frcnn::Error("--rss-at " + std::to_string(n) + " is after the last of the " +
					   std::to_string(timed_frames) + " timed frames: raise --frames, or give a smaller N");
#if !FRCNN_BENCH_OPENCV
	if (o.resize_width > 0)
		throw frcnn::Error("--resize needs OpenCV, and this frcnn-bench was built without it: give "
				   "images of the size wanted");
#endif
	return o;
}

// Closes `file`, throwing when what was written to it did not all reach `path` (a full disk shows
// only when the buffer is flushed).
void write_through(std::ofstream &file, const std::string &path)
{
	errno = 0;
	file.close();
	if (!file)
		throw frcnn::Error("cannot write '" + path + "'" + (errno ? std::string(": ") + std::strerror(errno) : ""));
}

void dump_frames(const BenchOptions &o, FrameSource &source)
{
	const long long batches = o.warmup + (o.frames + o.batch - 1) / o.batch;
	if (mkdir(o.dump_frames.c_str(), 0755) != 0 && errno != EEXIST)
		throw frcnn::Error("cannot create directory '" + o.dump_frames + "': " + std::strerror(errno));
	json manifest;
	manifest["format"] = "rgb24";
	manifest["frames"] = json::array();
	for (long long i = 0; i < batches * o.batch; i++) {
		const Image rgb = source.next();
		char name[32];
		std::snprintf(name, sizeof(name), "%05lld.rgb", i);
		std::ofstream file(o.dump_frames + "/" + name, std::ios::binary);
		file.write((const char *)rgb.rgb->data(), (std::streamsize)rgb.rgb->size());
		write_through(file, o.dump_frames + "/" + name);
		manifest["frames"].push_back({{"file", name}, {"width", rgb.width}, {"height", rgb.height}});
	}
	std::ofstream file(o.dump_frames + "/frames.json");
	file << manifest.dump(1) << "\n";
	write_through(file, o.dump_frames + "/frames.json");
}

} // namespace

int main(int argc, char **argv)
{
#if FRCNN_BENCH_OPENCV
	cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
#endif
	BenchOptions o;
	try {
		bool help = false;
		o = parse(argc, argv, help);
		if (help) {
			usage(stdout);
			return frcnn::cli::help_status("frcnn-bench");
		}
	} catch (const frcnn::Error &e) {
		std::fprintf(stderr, "frcnn-bench: %s\n", e.what());
		return 2;
	}

	try {
		std::unique_ptr<FrameSource> source;
		if (!o.inputs.empty())
			source = std::make_unique<FrameSource>(o.inputs, o.resize_width, o.resize_height, o.pixel_format, o.transfer,
							       o.primaries);
		if (!o.dump_frames.empty()) {
			dump_frames(o, *source);
			return 0;
		}

		// From a file to a model ready to run: the weights read (by detector_options, which
		// tells the model from them), the model built, the weights taken and the model prepared
		// for its device (what a start of the element waits for). Reported where the model
		// loads from a file: given weights, or the facade's file of seeded ones (a staged model
		// of seeded weights is calibrated meanwhile).
		auto load_start = Clock::now();
		double load_ms = -1;
		// The model: built here rather than through the Detector facade, so that its parts can
		// be timed one by one and seeded weights can be calibrated and saved.
		frcnn::DetectorOptions d = frcnn::cli::detector_options(o.model);
		if (d.threads > 0)
			frcnn::set_cpu_threads(d.threads);
		d.channels_last = o.channels_last;
		const torch::Device device = device_of(d.device);
		if (device.is_cuda() && !frcnn::Detector::cuda_built())
			throw frcnn::Error("device '" + d.device + "' asked for, but this build has no CUDA support");
		frcnn::detail::check_precision(device, d.precision);
		if (d.weights.empty())
			torch::manual_seed(d.random_seed);
		// The facade loads given weights itself: a model of them here would only be thrown away.
		const bool facade_loads_weights = o.facade && !d.weights.empty() && o.save_weights.empty();
		frcnn::FasterRCNN model = facade_loads_weights ? frcnn::FasterRCNN(nullptr) : frcnn::FasterRCNN(d.model);
		std::vector<Image> first;
		if (!d.weights.empty()) {
			if (model)
				model->load_state_dict(d.checkpoint ? *d.checkpoint : frcnn::read_checkpoint(d.weights));
		} else if (source) {
			// Statistics from the frames the benchmark runs on: a calibration of the first
			// batch, so that random weights give activations (and proposals) like a trained
			// model's rather than growing layer by layer.
			for (int i = 0; i < o.batch; i++)
				first.push_back(source->next());
			std::vector<torch::Tensor> images;
			for (const auto &f : first)
				images.push_back(frcnn::frame_to_tensor(view_of(f)));
			model->calibrate_frozen_batch_norm(images);
			// Start over, so that the timed run sees the frames from the first.
			source = std::make_unique<FrameSource>(o.inputs, o.resize_width, o.resize_height, o.pixel_format, o.transfer,
							       o.primaries);
		}
		if (model)
			model->eval();
		if (!o.save_weights.empty()) {
			frcnn::Checkpoint checkpoint;
			checkpoint.tensors = model->state_dict();
			// The layout of current torchvision: no key renaming on load.
			checkpoint.module_versions = {{"backbone.fpn", 2}, {"rpn.head", 2}};
			frcnn::write_checkpoint(o.save_weights, checkpoint);
			return 0;
		}

		std::unique_ptr<frcnn::Detector> facade;
		std::unique_ptr<StagedModel> staged;
		std::string tmp_weights;
		if (o.facade) {
			if (d.weights.empty()) {
				// The facade loads weights from a file: hand it the calibrated ones.
				char path[] = "/tmp/frcnn-bench-XXXXXX";
				int fd = mkstemp(path);
				if (fd < 0)
					throw frcnn::Error(std::string("cannot create a temporary file: ") +
							   std::strerror(errno));
				close(fd);
				tmp_weights = path;
				frcnn::write_checkpoint(tmp_weights, model->state_dict());
				d.weights = tmp_weights;
				load_start = Clock::now();
			}
			facade = std::make_unique<frcnn::Detector>(d);
			load_ms = ms_since(load_start);
			if (!tmp_weights.empty())
				std::remove(tmp_weights.c_str());
			model = frcnn::FasterRCNN(nullptr);
		} else {
			model->to_device(device, d.precision, d.channels_last);
			if (device.is_cpu())
				model->set_cpu_convolutions(d.cpu_convolutions);
			if (!d.weights.empty())
				load_ms = ms_since(load_start);
			staged = std::make_unique<StagedModel>(model, device, d.channels_last);
		}
		// The model holds the weights: the checkpoint read for it would stay in memory (and in
		// the RSS reported) for the whole run.
		d.checkpoint.reset();
		// int8: calibrated before the warm-up, on the first frames (as the Detector does in a
		// stream), or from the calibration file; the timed batches all run in 8 bits.
		double int8_calibration_ms = 0;
		if (d.precision == frcnn::Precision::Int8) {
			const auto start = Clock::now();
			FrameSource calibration_source(o.inputs, o.resize_width, o.resize_height, o.pixel_format,
						       o.transfer, o.primaries);
			if (!facade && !d.int8_calibration.empty() && access(d.int8_calibration.c_str(), F_OK) == 0)
				model->set_int8_calibration(frcnn::load_int8_calibration(d.int8_calibration));
			while (facade ? !facade->int8_calibrated() : !model->int8_calibrated()) {
				std::vector<Image> images;
				for (int i = 0; i < o.batch; i++)
					images.push_back(calibration_source.next());
				if (facade) {
					facade->detect(views_of(images));
					const std::string unwritten = facade->take_int8_calibration_write_error();
					if (!unwritten.empty())
						throw frcnn::Error(unwritten);
					continue;
				}
				c10::InferenceMode inference;
				model->forward_frames(views_of(images));
				const auto observed = model->int8_observed();
				if (observed.frames >= d.int8_calibration_frames) {
					model->set_int8_calibration(observed);
					if (!d.int8_calibration.empty())
						frcnn::save_int8_calibration(observed, d.int8_calibration);
				}
			}
			int8_calibration_ms = ms_since(start);
		}

		// A batch as run_batch takes it: the frames, or with --frame-copies their copies.
		struct BatchInput {
			std::vector<frcnn::FrameView> views;
			std::vector<frcnn::HeldFrame> copies;	// the facade's
			std::vector<frcnn::detail::FrameMemory> memory; // the stage-by-stage run's
		};
		auto batch_input = [&](const std::vector<Image> &frames) {
			BatchInput in;
			for (const auto &f : frames) {
				if (!o.frame_copies) {
					in.views.push_back(view_of(f));
				} else if (facade) {
					in.copies.push_back(facade->copy_frame(view_of(f)));
					in.views.push_back(in.copies.back().view());
				} else {
					frcnn::FrameView v;
					in.memory.push_back(frcnn::detail::copy_frame_memory(view_of(f), device, &v));
					in.views.push_back(v);
				}
			}
			return in;
		};
		// Plain detections per frame.
		auto run_batch = [&](const BatchInput &in, double *stage_ms) {
			if (facade)
				return o.frame_copies ? facade->detect(in.copies) : facade->detect(in.views);
			return staged->run(in.views, in.memory, stage_ms);
		};

		const int timed_batches = static_cast<int>((static_cast<long long>(o.frames) + o.batch - 1) / o.batch);
		std::vector<double> latency_ms;
		std::vector<std::vector<double>> stage_ms(kNumStages);
		std::vector<double> gather_ms, copy_ms;
		std::vector<int> first_counts;
		json first_detections = json::array();
		json staged_check = nullptr;
		std::map<long long, double> rss_at, rss_max_at;
		double rss_max = 0;
		std::vector<Image> frames;
		double timed_ms = 0;
		for (int b = 0; b < o.warmup + timed_batches; b++) {
			frames.clear();
			for (int i = 0; i < o.batch; i++)
				frames.push_back(source->next());
			if (b == 0 && staged && o.warmup > 0 && o.check) {
				// The parts run one by one must give what the model's forward() gives.
				auto a = staged->run(views_of(frames), {}, nullptr);
				staged_check = compare_detections(a, staged->forward(frames));
				continue;
			}
			double stages[kNumStages] = {0, 0, 0, 0, 0};
			const auto copy_start = Clock::now();
			const BatchInput input = batch_input(frames);
			const double copy_batch_ms = ms_since(copy_start);
			const auto start = Clock::now();
			auto detections = run_batch(input, stages);
			const double ms = ms_since(start);
			if (b < o.warmup)
				continue;
			if (first_counts.empty()) {
				for (const auto &frame : detections) {
					first_counts.push_back((int)frame.size());
					json list = json::array();
					for (const auto &det : frame)
						list.push_back({{"box", {det.x1, det.y1, det.x2, det.y2}},
								{"label", det.label},
								{"score", det.score}});
					first_detections.push_back(list);
				}
			}
			latency_ms.push_back(ms);
			timed_ms += ms;
			for (size_t s = 0; s < kNumStages; s++)
				stage_ms[s].push_back(stages[s]);
			if (staged)
				gather_ms.push_back(staged->host_gather_ms());
			copy_ms.push_back(copy_batch_ms);
			// RSS moves up and down by a few MiB as the allocator takes and returns memory:
			// the largest value so far shows growth better than one sample.
			const long long done = (long long)(b - o.warmup + 1) * o.batch;
			if (!o.rss_at.empty()) {
				const double rss = current_rss_mb();
				rss_max = std::max(rss_max, rss);
				for (long long n : o.rss_at)
					if (done >= n && !rss_at.count(n)) {
						rss_at[n] = rss;
						rss_max_at[n] = rss_max;
					}
			}
		}

		// An untimed pass over the last batch counting FLOPs (and timing operators).
		OpObserver observer;
		observer.timing = o.profile;
		double observed_ms = 0;
		{
			ObserverScope scope(observer);
			const auto start = Clock::now();
			run_batch(batch_input(frames), nullptr);
			observed_ms = ms_since(start);
		}

		const int timed_frames = timed_batches * o.batch;
		const double fps = timed_frames / (timed_ms / 1000.0);
		const double gflops_per_frame = observer.flops / o.batch / 1e9;
		const auto &config = facade ? facade->config() : model->config();

		json out;
		out["program"] = "frcnn-bench";
		out["implementation"] = "libfrcnn";
		out["mode"] = std::string(facade ? "facade" : "staged") + (d.channels_last ? ", channels-last" : "");
		out["arch"] = config.arch;
		out["weights"] = d.weights.empty() || !tmp_weights.empty() ? "seed:" + std::to_string(d.random_seed)
									   : d.weights;
		out["device"] = d.device;
		out["precision"] = frcnn::precision_name(d.precision);
		if (d.precision == frcnn::Precision::Int8) {
			out["int8_calibration_frames"] = d.int8_calibration_frames;
			out["int8_calibration_ms"] = int8_calibration_ms;
		}
		out["channels_last"] = d.channels_last;
		out["load_ms"] = load_ms < 0 ? json(nullptr) : json(round_to(load_ms, 1));
		if (device.is_cpu())
			out["cpu_convolutions"] = frcnn::cpu_convolutions_name(
				facade ? facade->cpu_convolutions() : model->cpu_convolutions());
		out["threads"] = torch::get_num_threads();
		out["batch"] = o.batch;
		out["pixel_format"] = o.pixel_format == frcnn::PixelFormat::RGB	    ? "RGB"
				      : o.pixel_format == frcnn::PixelFormat::NV12 ? "NV12"
				      : o.pixel_format == frcnn::PixelFormat::I420 ? "I420"
				      : o.pixel_format == frcnn::PixelFormat::v210 ? "v210"
										   : "P010_10LE";
		out["transfer"] = o.transfer == frcnn::TransferFunction::PQ    ? "pq"
				  : o.transfer == frcnn::TransferFunction::HLG ? "hlg"
									       : "sdr";
		out["primaries"] = o.primaries == frcnn::ColourPrimaries::BT2020	 ? "bt2020"
				   : o.primaries == frcnn::ColourPrimaries::DisplayP3 ? "p3"
										      : "bt709";
		out["min_size"] = config.min_size;
		out["max_size"] = config.max_size;
		out["inputs"] = o.inputs;
		out["frame_size"] = {frames[0].width, frames[0].height};
		if (staged)
			out["model_input"] = staged->input_shape();
		out["warmup_batches"] = o.warmup;
		out["frames"] = timed_frames;
		out["fps"] = round_to(fps, 3);
		out["latency_ms"] = {{"p50", round_to(percentile(latency_ms, 50), 2)},
				     {"p95", round_to(percentile(latency_ms, 95), 2)},
				     {"mean", round_to(timed_ms / (double)latency_ms.size(), 2)},
				     {"min", round_to(*std::min_element(latency_ms.begin(), latency_ms.end()), 2)}};
		if (staged) {
			json stages;
			for (size_t s = 0; s < kNumStages; s++)
				stages[kStages[s]] = round_to(percentile(stage_ms[s], 50), 2);
			out["stages_ms_p50"] = stages;
		} else {
			out["stages_ms_p50"] = nullptr;
		}
		const bool gathered = staged && device.is_cuda();
		out["transform_host_gather_ms_p50"] = gathered ? json(round_to(percentile(gather_ms, 50), 2)) : json(nullptr);
		out["frame_copies"] = o.frame_copies;
		// Not part of the latency: frcnndetect copies each frame on its sink pad's thread as it
		// arrives, while the batch before runs.
		out["frame_copy_ms_p50"] = o.frame_copies ? json(round_to(percentile(copy_ms, 50), 2)) : json(nullptr);
		out["peak_rss_mb"] = round_to(peak_rss_mb(), 1);
		out["rss_mb"] = round_to(current_rss_mb(), 1);
		json rss = json::object();
		for (auto &[n, mb] : rss_at)
			rss[std::to_string(n)] = round_to(mb, 1);
		out["rss_mb_after_frames"] = rss;
		json rss_max_json = json::object();
		for (auto &[n, mb] : rss_max_at)
			rss_max_json[std::to_string(n)] = round_to(mb, 1);
		out["rss_mb_max_up_to_frames"] = rss_max_json;
		out["gflops_per_frame"] = round_to(gflops_per_frame, 3);
		out["gflops_per_s"] = round_to(gflops_per_frame * fps, 2);
		out["flops_method"] = "convolutions and matrix products counted from their shapes on the last batch, "
				      "2 FLOPs per multiply-add";
		out["detections_first_batch"] = first_counts;
		out["staged_vs_forward"] = staged_check;
		if (o.profile) {
			std::vector<std::pair<std::string, double>> ops(observer.ms.begin(), observer.ms.end());
			std::sort(ops.begin(), ops.end(), [](auto &a, auto &b) { return a.second > b.second; });
			json profile = json::object();
			for (size_t i = 0; i < ops.size() && i < 15; i++)
				profile[ops[i].first] = round_to(ops[i].second, 2);
			out["op_profile_ms"] = {{"batch_ms", round_to(observed_ms, 2)}, {"top_operators", profile}};
		}

		if (!o.detections.empty()) {
			std::ofstream file(o.detections);
			file << first_detections.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
			write_through(file, o.detections);
		}
		if (o.json) {
			std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
			if (!std::cout)
				throw frcnn::Error("cannot write the results to standard output");
			return 0;
		}
		const std::string convolutions =
			out.contains("cpu_convolutions") ? ", " + out["cpu_convolutions"].get<std::string>() + " convolutions" : "";
		std::printf("%s (%s) on %s, %s%s%s, %d thread(s), batch %d, min_size %d max_size %d, frames %dx%d\n",
			    config.arch.c_str(), out["weights"].get<std::string>().c_str(), d.device.c_str(),
			    frcnn::precision_name(d.precision), d.channels_last ? " channels-last" : "", convolutions.c_str(),
			    torch::get_num_threads(), o.batch, config.min_size, config.max_size, frames[0].width,
			    frames[0].height);
		std::printf("  %.2f frames/s over %d frames; latency per batch p50 %.1f ms, p95 %.1f ms\n", fps,
			    timed_frames, percentile(latency_ms, 50), percentile(latency_ms, 95));
		if (load_ms >= 0)
			std::printf("  model loaded in %.0f ms (weights read, model built, weights taken, prepared "
				    "for the device)\n", load_ms);
		if (staged) {
			std::printf("  stages (p50 ms):");
			for (size_t s = 0; s < kNumStages; s++)
				std::printf(" %s %.1f", kStages[s], percentile(stage_ms[s], 50));
			if (gathered)
				std::printf(" (of the transform: gathering frames into pinned memory %.2f)",
					    percentile(gather_ms, 50));
			std::printf("\n");
			if (!staged_check.is_null())
				std::printf("  stage-by-stage run vs forward(): %s\n", staged_check.dump().c_str());
		}
		if (o.frame_copies)
			std::printf("  frames copied ahead of each batch (Detector::copy_frame), not timed in the "
				    "latency: %.2f ms per batch (p50)\n",
				    percentile(copy_ms, 50));
		std::printf("  %.2f GFLOP per frame, %.1f GFLOP/s achieved\n", gflops_per_frame,
			    gflops_per_frame * fps);
		std::printf("  peak RSS %.1f MiB, RSS now %.1f MiB\n", peak_rss_mb(), current_rss_mb());
		for (auto &[n, mb] : rss_at)
			std::printf("  RSS after %lld frames: %.1f MiB (largest so far %.1f MiB)\n", n, mb, rss_max_at[n]);
		if (o.profile) {
			std::printf("  operators (ms in one batch of %.1f ms):\n", observed_ms);
			for (auto &[name, ms] : out["op_profile_ms"]["top_operators"].items())
				std::printf("    %8.2f  %s\n", ms.get<double>(), name.c_str());
		}
		errno = 0;
		if (std::fflush(stdout) != 0 || std::ferror(stdout))
			throw frcnn::Error(std::string("cannot write the results to standard output") +
					   (errno ? std::string(": ") + std::strerror(errno) : ""));
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-bench: %s\n", frcnn::cli::error_text(e).c_str());
		return 1;
	}
	return 0;
}

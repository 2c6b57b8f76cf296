// SPDX-License-Identifier: BSD-3-Clause
#include "cli.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include <unistd.h>

#include <c10/util/Exception.h>

#include "frcnn/checkpoint.h"
#include "frcnn/config.h"
#include "frcnn/error.h"
#include "frcnn/model.h"
#include "frcnn/weights.h"

namespace frcnn::cli {

Arg next_arg(int argc, char **argv, int &i, std::initializer_list<const char *> flags)
{
	const auto is_flag = [&](const std::string &name) {
		return name == "--help" || std::find(flags.begin(), flags.end(), name) != flags.end();
	};
	Arg a{argv[i], ""};
	if (!a.option() || is_flag(a.name))
		return a;
	const auto eq = a.name.find('=');
	if (eq != std::string::npos) {
		a.value = a.name.substr(eq + 1);
		a.name.resize(eq);
		if (is_flag(a.name))
			throw Error("option " + a.name + " takes no value, got '" + a.name + "=" + a.value + "'");
	} else if (i + 1 < argc) {
		a.value = argv[++i];
	} else {
		// Whether the program knows the option is its own to tell: an unknown one given last
		// gets here too.
		throw Error("option " + a.name + " needs a value, or is none of this program's (see --help)");
	}
	return a;
}

int to_int(const std::string &name, const std::string &value, int min, int max)
{
	bool beyond_int = false;
	try {
		size_t used = 0;
		int v = std::stoi(value, &used);
		if (used == value.size() && v >= min && v <= max)
			return v;
	} catch (const std::out_of_range &) {
		beyond_int = true;
	} catch (const std::invalid_argument &) {
		/* not a number: said below */
	}
	// A range with no upper end reads "an integer >= 1", unless the value went past an int's.
	std::string range;
	if (max != INT_MAX || (beyond_int && min != INT_MIN))
		range = " from " + std::to_string(min) + " to " + std::to_string(max);
	else if (min != INT_MIN)
		range = " >= " + std::to_string(min);
	throw Error("option " + name + " needs an integer" + range + ", got '" + value + "'");
}

std::string error_text(const std::exception &e)
{
	if (const auto *torch_error = dynamic_cast<const c10::Error *>(&e))
		return torch_error->what_without_backtrace();
	return e.what();
}

double to_double(const std::string &name, const std::string &value)
{
	try {
		size_t used = 0;
		double v = std::stod(value, &used);
		if (used == value.size())
			return v;
	} catch (const std::exception &) {
	}
	throw Error("option " + name + " needs a number, got '" + value + "'");
}

bool parse_model_option(ModelOptions &o, const std::string &name, const std::string &value)
{
	if (name == "--arch") {
		model_preset(value); // an unknown name is an option error, told before anything loads
		o.arch = value;
	}
	else if (name == "--weights")
		o.weights = value;
	else if (name == "--num-classes")
		o.num_classes = to_int(name, value, 0, kMostClasses);
	else if (name == "--min-size" || name == "--max-size") {
		// As frcnndetect's min-size and max-size (0: the model's own): larger images would not
		// fit in memory.
		const int size = to_int(name, value, 0, 8192);
		(name == "--min-size" ? o.min_size : o.max_size) = size;
	}
	else if (name == "--score-threshold") {
		o.score_threshold = to_double(name, value);
		if (!(o.score_threshold >= 0 && o.score_threshold <= 1))
			throw Error("option " + name + " needs a number from 0 to 1, got '" + value + "'");
	}
	else if (name == "--device") {
		const bool cuda_index = value.rfind("cuda:", 0) == 0 && value.size() > 5 &&
					value.find_first_not_of("0123456789", 5) == std::string::npos && value.size() <= 8;
		if (value != "cpu" && value != "cuda" && !cuda_index)
			throw Error("option " + name + " needs cpu, cuda or cuda:N, got '" + value + "'");
		o.device = value;
	}
	else if (name == "--precision")
		o.precision = parse_precision(value);
	else if (name == "--cpu-convolutions")
		o.cpu_convolutions = parse_cpu_convolutions(value);
	else if (name == "--int8-calibration")
		o.int8_calibration = value;
	else if (name == "--int8-calibration-frames")
		o.int8_calibration_frames = to_int(name, value, 1);
	else if (name == "--threads") {
		// As frcnndetect's threads: more than the machine has only slows LibTorch down.
		o.threads = to_int(name, value, 0, 1024);
	}
	else if (name == "--seed")
		o.seed = to_int(name, value, 0);
	else
		return false;
	return true;
}

const char *model_options_help()
{
	return "  --arch NAME            model (fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2,\n"
	       "                         fasterrcnn_mobilenet_v3_large_fpn,\n"
	       "                         fasterrcnn_mobilenet_v3_large_320_fpn, tiny); default: the\n"
	       "                         weights preset's, else told from the checkpoint's keys\n"
	       "  --weights W            checkpoint file, preset name (coco, coco-v2, coco-mobilenet,\n"
	       "                         coco-mobilenet-320) or http(s) URL\n"
	       "  --num-classes N        number of classes including background (default: the weights'\n"
	       "                         preset's, else the checkpoint's)\n"
	       "  --min-size N           resize so the short side is N, up to 8192 (default or 0: the\n"
	       "                         preset's)\n"
	       "  --max-size N           ... and the long side at most N\n"
	       "  --score-threshold F    keep detections scoring above F (default 0.05)\n"
	       "  --device D             cpu, cuda or cuda:N (default cpu)\n"
	       "  --precision P          fp32, fp16 (CUDA only), bf16 (CPUs with AVX-512 BF16 or\n"
	       "                         AMX: faster than fp32 there, the same detections up to\n"
	       "                         rounding) or int8 (CPU: 8-bit convolutions and box head\n"
	       "                         calibrated on the first frames; close to fp32)\n"
	       "  --int8-calibration F   int8: read the calibration from F, or, when F does not\n"
	       "                         exist, calibrate and write it there\n"
	       "  --int8-calibration-frames N  int8: frames to calibrate on (default 16)\n"
	       "  --cpu-convolutions K   auto, libtorch or onednn: what runs the backbone, FPN, RPN head\n"
	       "                         and convolutional box head convolutions on the CPU (default\n"
	       "                         auto: onednn where built and faster, i.e. for\n"
	       "                         fasterrcnn_resnet50_fpn, its v2, the MobileNetV3 models\n"
	       "                         and, on AVX-512 CPUs, tiny; libtorch gives torchvision's\n"
	       "                         numbers exactly)\n"
	       "  --threads N            CPU threads, up to 1024 (default: LibTorch's)\n";
}

StderrCapture::StderrCapture()
{
	std::fflush(stderr);
	file_ = std::tmpfile();
	saved_ = file_ ? ::dup(STDERR_FILENO) : -1;
	if (saved_ < 0 || ::dup2(::fileno(file_), STDERR_FILENO) < 0) {
		/* Nothing caught: the messages go where they went. */
		if (saved_ >= 0)
			::close(saved_);
		saved_ = -1;
	}
}

StderrCapture::~StderrCapture()
{
	finish();
	if (file_)
		std::fclose(file_);
}

std::string StderrCapture::finish()
{
	if (saved_ < 0)
		return {};
	std::fflush(stderr);
	::dup2(saved_, STDERR_FILENO);
	::close(saved_);
	saved_ = -1;
	std::string said, line;
	std::rewind(file_);
	for (int c; (c = std::fgetc(file_)) != EOF;) {
		if (c != '\n') {
			line += static_cast<char>(c);
			continue;
		}
		if (!line.empty())
			said += (said.empty() ? "" : "; ") + line;
		line.clear();
	}
	if (!line.empty())
		said += (said.empty() ? "" : "; ") + line;
	return said;
}

DetectorOptions detector_options(const ModelOptions &o)
{
	DetectorOptions d;
	auto preset = weights_preset_of(o.weights);
	if (!o.weights.empty())
		d.weights = resolve_weights(o.weights, terminal_progress_bar());
	// A checkpoint file (not a preset) tells its model by its keys and its number of classes by
	// the rows of the class scores, where the options do not say: read it once, here.
	if (!preset && !d.weights.empty() && (o.arch.empty() || o.num_classes <= 0))
		d.checkpoint = reading_weights(o.weights, d.weights, [&] {
			return std::make_shared<const Checkpoint>(read_checkpoint(d.weights));
		});
	std::string arch = o.arch;
	if (arch.empty() && preset)
		arch = preset->arch;
	else if (arch.empty() && d.checkpoint) {
		try {
			arch = detect_arch(d.checkpoint->tensors);
		} catch (const Error &e) {
			const std::string nearest = nearest_model(*d.checkpoint);
			throw Error("weights '" + o.weights + "': " + e.what() + " with --arch" +
				    (nearest.empty() ? "" : "; they come nearest to " + nearest + ": a damaged or edited checkpoint of it?"));
		}
	}
	else if (arch.empty())
		arch = "fasterrcnn_resnet50_fpn";
	d.model = model_preset(arch);
	if (preset) {
		d.model.frozen_bn_eps = preset->frozen_bn_eps;
		d.model.num_classes = preset->num_classes;
	}
	if (o.num_classes > 0)
		d.model.num_classes = o.num_classes;
	else if (const int from_checkpoint = d.checkpoint ? detect_num_classes(d.checkpoint->tensors) : -1;
		 from_checkpoint > 0)
		d.model.num_classes = from_checkpoint;
	if (o.min_size > 0)
		d.model.min_size = o.min_size;
	if (o.max_size > 0)
		d.model.max_size = o.max_size;
	if (o.score_threshold >= 0)
		d.model.box_score_thresh = o.score_threshold;
	if (o.weights.empty()) {
		if (o.seed < 0)
			throw Error("no weights given: use --weights FILE|PRESET|URL");
		d.random_seed = (uint64_t)o.seed;
	}
	d.device = o.device;
	d.precision = o.precision;
	d.cpu_convolutions = o.cpu_convolutions;
	d.int8_calibration = o.int8_calibration;
	d.int8_calibration_frames = o.int8_calibration_frames;
	d.threads = o.threads;
	return d;
}

std::unique_ptr<Detector> make_detector(const ModelOptions &options)
{
	const DetectorOptions d = detector_options(options);
	return reading_weights(
		options.weights, d.weights, [&] { return std::make_unique<Detector>(d); },
		options.arch.empty() && options.num_classes <= 0);
}

namespace {

// The next number of a PNM header, after whitespace and '#' comments (each to its line's end),
// of at most max_digits digits (digits 0: none there); consumes the character that ends it, which
// is `end` (after maxval, the one whitespace byte before the pixels).
struct PnmNumber {
	long value = 0;
	int digits = 0;
	int end = EOF;
};

PnmNumber pnm_number(std::istream &in, int max_digits)
{
	int c = in.get();
	while (c != EOF && (std::isspace(c) || c == '#')) {
		if (c == '#')
			while (c != EOF && c != '\n')
				c = in.get();
		c = in.get();
	}
	PnmNumber number;
	for (; c != EOF && std::isdigit(c) && number.digits < max_digits; c = in.get(), number.digits++)
		number.value = number.value * 10 + (c - '0');
	number.end = c;
	return number;
}

// One number of a binary PPM's header, which must end in whitespace.
long ppm_number(std::istream &in, const std::string &path)
{
	const PnmNumber number = pnm_number(in, 7);
	if (number.digits == 0 || number.end == EOF || !std::isspace(number.end))
		throw frcnn::Error("'" + path + "' is not a valid binary PPM (P6) image: bad header");
	return number.value;
}

// A PPM/PGM/PBM header's maxval ("P6 320 240 1023"), or -1 when the file is not one or has none
// (P1/P4 have none).
long pnm_maxval(std::istream &in)
{
	char magic[2] = {0, 0};
	in.read(magic, 2);
	if (magic[0] != 'P' || (magic[1] != '2' && magic[1] != '3' && magic[1] != '5' && magic[1] != '6'))
		return -1;
	long maxval = -1;
	for (int i = 0; i < 3; i++) { // width, height, maxval
		const PnmNumber number = pnm_number(in, 9);
		if (number.digits == 0)
			return -1;
		maxval = number.value;
	}
	return maxval;
}

// The value of a tag of a TIFF's first image (a SHORT or LONG held in the entry), or -1.
long tiff_tag(std::istream &in, unsigned tag)
{
	unsigned char header[8];
	if (!in.read(reinterpret_cast<char *>(header), 8))
		return -1;
	const bool little = header[0] == 'I' && header[1] == 'I' && header[2] == 42 && header[3] == 0;
	const bool big = header[0] == 'M' && header[1] == 'M' && header[2] == 0 && header[3] == 42;
	if (!little && !big)
		return -1;
	auto number = [little](const unsigned char *bytes, int size) {
		unsigned long value = 0;
		for (int i = 0; i < size; i++)
			value |= static_cast<unsigned long>(bytes[i]) << (8 * (little ? i : size - 1 - i));
		return value;
	};
	in.seekg(static_cast<std::streamoff>(number(header + 4, 4)));
	unsigned char count_bytes[2];
	if (!in.read(reinterpret_cast<char *>(count_bytes), 2))
		return -1;
	for (unsigned long i = 0, count = number(count_bytes, 2); i < count && i < 4096; i++) {
		unsigned char entry[12];
		if (!in.read(reinterpret_cast<char *>(entry), 12))
			return -1;
		if (number(entry, 2) != tag)
			continue;
		const unsigned long type = number(entry + 2, 2); // 3: SHORT, 4: LONG
		return type == 3 ? static_cast<long>(number(entry + 8, 2))
				 : type == 4 ? static_cast<long>(number(entry + 8, 4)) : -1;
	}
	return -1;
}

} // namespace

std::string image_refusal(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return {}; // the decoder says why
	const long maxval = pnm_maxval(in);
	if (maxval >= 0 && maxval != 255 && maxval != 65535)
		return "a PPM/PGM of maxval " + std::to_string(maxval) +
		       " is not read as it is (only 255 and 65535 are): convert it to 8 bits, e.g. with pnmdepth 255";
	in.clear();
	in.seekg(0);
	const long orientation = tiff_tag(in, 274);
	if (orientation > 1)
		return "a TIFF with an orientation tag (" + std::to_string(orientation) +
		       ") would be read turned, unlike a JPEG's, which is read as stored: save it without the tag";
	in.clear();
	in.seekg(0);
	if (tiff_tag(in, 338) == 2) // ExtraSamples: unassociated alpha
		return "a TIFF with an alpha channel would be read with its colours multiplied by the alpha: "
		       "save it without alpha (or as PNG)";
	return {};
}

PpmImage read_ppm(const std::string &path, const std::string &not_ppm)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		throw frcnn::Error("cannot open '" + path + "': " + std::strerror(errno));
	char magic[2] = {0, 0};
	in.read(magic, 2);
	if (!in || magic[0] != 'P' || magic[1] != '6')
		throw frcnn::Error("cannot read '" + path + "': " + not_ppm);
	PpmImage image;
	image.width = (int)ppm_number(in, path);
	image.height = (int)ppm_number(in, path);
	const long maxval = ppm_number(in, path);
	if (image.width < 1 || image.height < 1 || image.width > 65535 || image.height > 65535)
		throw frcnn::Error("'" + path + "': bad PPM size " + std::to_string(image.width) + "x" +
				   std::to_string(image.height));
	if (maxval != 255)
		throw frcnn::Error("'" + path + "': PPM maxval " + std::to_string(maxval) +
				   ", only 255 (8 bits per channel) is read");
	// The header's size against the bytes the file has, before the memory is taken: a few
	// bytes of header may claim gigabytes.
	// (A pipe has no size to tell: read as it comes.)
	const size_t bytes = (size_t)image.width * image.height * 3;
	const std::streampos pixels_start = in.tellg();
	if (pixels_start != std::streampos(-1)) {
		in.seekg(0, std::ios::end);
		const std::streampos end = in.tellg();
		if (end != std::streampos(-1) && (end < pixels_start || (size_t)(end - pixels_start) < bytes))
			throw frcnn::Error("'" + path + "': truncated PPM image");
		in.clear();
		in.seekg(pixels_start);
	}
	image.rgb.resize(bytes);
	in.read((char *)image.rgb.data(), (std::streamsize)image.rgb.size());
	if ((size_t)in.gcount() != image.rgb.size())
		throw frcnn::Error("'" + path + "': truncated PPM image");
	return image;
}

namespace {

// Lock-free atomics: the handler may run on any thread (LibTorch's workers too).
std::atomic<bool> printing_line{ false };
std::atomic<int> stop_signal{ 0 };

void stop_now(int signal)
{
	std::signal(signal, SIG_DFL);
	std::raise(signal);
}

// The first stop while a line is written waits for the line; a second one (the reader does not
// take the line) stops the program at once.
void on_stop_signal(int signal)
{
	if (printing_line.load() && stop_signal.exchange(signal) == 0)
		return;
	stop_now(signal);
}

} // namespace

void stop_if_asked()
{
	if (const int signal = stop_signal.load())
		stop_now(signal);
}

void stop_between_lines()
{
	struct sigaction action = {};
	action.sa_handler = on_stop_signal;
	sigemptyset(&action.sa_mask);
	action.sa_flags = SA_RESTART; /* a write it comes in goes on */
	for (int signal : { SIGINT, SIGTERM, SIGHUP }) {
		struct sigaction before = {};
		if (sigaction(signal, nullptr, &before) == 0 && before.sa_handler != SIG_IGN)
			sigaction(signal, &action, nullptr);
	}
}

int help_status(const char *program)
{
	if (std::fflush(stdout) == 0 && !std::ferror(stdout))
		return 0;
	std::fprintf(stderr, "%s: cannot write the help to standard output\n", program);
	return 1;
}

bool print_line(const std::string &line)
{
	stop_if_asked();
	printing_line.store(true);
	std::cout << line << '\n' << std::flush;
	const bool written = static_cast<bool>(std::cout);
	printing_line.store(false);
	stop_if_asked();
	return written;
}

} // namespace frcnn::cli

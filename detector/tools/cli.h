// SPDX-License-Identifier: BSD-3-Clause
// What the command-line programs share: model options and building a Detector from them.
#pragma once

#include <climits>
#include <cstdio>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/weights.h"

namespace frcnn::cli {

// While it lives, stderr goes to a temporary file; finish() (or the destructor) puts stderr back
// and gives what was written there. For the command-line programs, whose other threads do not
// write to stderr meanwhile.
class StderrCapture {
public:
	StderrCapture();
	~StderrCapture();
	StderrCapture(const StderrCapture &) = delete;
	StderrCapture &operator=(const StderrCapture &) = delete;
	// The lines written since, joined by "; "; stderr is stderr again.
	std::string finish();

private:
	int saved_ = -1;	    // the stderr to put back
	std::FILE *file_ = nullptr; // where stderr goes meanwhile
};

struct ModelOptions {
	std::string arch;	 // empty: the weights preset's, else detect_arch() of the checkpoint
	std::string weights;	 // path, preset name or URL
	int num_classes = 0;	 // 0: the preset's
	int min_size = 0;	 // 0: the preset's
	int max_size = 0;
	double score_threshold = -1; // < 0: the preset's
	std::string device = "cpu";
	Precision precision = Precision::Fp32;
	CpuConvolutions cpu_convolutions = CpuConvolutions::Auto;
	std::string int8_calibration; // DetectorOptions::int8_calibration
	int int8_calibration_frames = 16;
	int threads = 0;
	long long seed = -1;	 // random weights (benchmarks) when no weights are given
};

// One command-line argument: an option ("--name=value", "--name value" or a flag, which takes no
// value), or a plain argument, whose text is in `name`. "--" ends the options: the arguments after
// it are plain ones, even those starting with "--" (a file named so).
struct Arg {
	std::string name, value;
	bool end_of_options() const { return name == "--"; }
	bool option() const { return name.rfind("--", 0) == 0 && !end_of_options(); }
};

// Reads argv[i], moving i past an option's value when it is the next argument. The options named
// in `flags`, and --help, take no value. Throws frcnn::Error for an option without its value
// (the last argument: one that takes a value, or an unknown one).
Arg next_arg(int argc, char **argv, int &i, std::initializer_list<const char *> flags = {});

// The value of option `name` as an integer from `min` to `max`, or as a number. Throws frcnn::Error
// ("option --x needs an integer from 0 to 8, got 'y'") when it is not one.
int to_int(const std::string &name, const std::string &value, int min = INT_MIN, int max = INT_MAX);
double to_double(const std::string &name, const std::string &value);

// The message of an exception, without the C++ backtrace LibTorch's errors carry: the programs
// print one line.
std::string error_text(const std::exception &e);

// Handles one model option (`--arch X` etc.). Returns true when `name` was one; throws
// frcnn::Error for a bad value.
bool parse_model_option(ModelOptions &options, const std::string &name, const std::string &value);

// Usage lines for the model options.
const char *model_options_help();

// The DetectorOptions make_detector builds from `options`: the preset's model config with the
// options applied, and the weights resolved (downloading a preset with a progress bar on a
// terminal). Throws frcnn::Error.
DetectorOptions detector_options(const ModelOptions &options);

// Resolves the weights (downloading a preset with a progress bar on a terminal) and builds
// the detector. Throws frcnn::Error.
std::unique_ptr<Detector> make_detector(const ModelOptions &options);

// A binary PPM (P6) image with maxval 255: the one image format the programs read without
// OpenCV. RGB, 3 bytes per pixel, rows packed.
struct PpmImage {
	int width = 0;
	int height = 0;
	std::vector<uint8_t> rgb;
};

// Reads one. Throws frcnn::Error saying what is wrong; `not_ppm` says what to do with a file
// that is no binary PPM at all.
PpmImage read_ppm(const std::string &path, const std::string &not_ppm);

// Output of one result a line, for readers that parse it line by line (JSON lines): a stop by
// SIGINT, SIGTERM or SIGHUP that comes while print_line writes waits until the line is out, so
// that the program stops between lines, never inside one; a second one while the line still
// waits for its reader stops the program at once, and at other times the signal stops the
// program as before (a signal ignored, as under nohup, stays ignored). The program's exit
// status tells the signal, as without this.
void stop_between_lines();
// Writes `line` and a newline to standard output and flushes it; false when it was not written.
bool print_line(const std::string &line);
// Stops the program by a signal that came while the last line was written and has not stopped
// it yet (the handler ran on another thread as the line ended): called before it exits.
void stop_if_asked();

// The exit status of --help once its text is printed to standard output: 0, or 1 with a line on
// stderr when it could not be written (a closed or full standard output).
int help_status(const char *program);

// Why an image file would not be read as it is stored (as torchvision's read_image reads it),
// told from its header before a decoder misreads it without a word; empty when nothing is known
// against it. OpenCV 4.6 reads a PPM/PGM of a maxval other than 255 or 65535 unscaled or shifted
// (near black), applies a TIFF's orientation tag (a JPEG's it leaves, as documented) and
// multiplies a TIFF's unassociated alpha into its colours.
std::string image_refusal(const std::string &path);

// Runs `run` with what it writes to stderr (a library's own messages) caught: returns its result,
// and the lines it wrote in `said`, joined by "; " (empty when it wrote nothing).
template <typename Run> auto capturing_stderr(Run run, std::string &said)
{
	StderrCapture capture;
	auto result = run();
	said = capture.finish();
	return result;
}

// Runs `read`, which reads the weights file `path` that the weights value `weights` resolved to.
// A file of the download cache that cannot be read (copied in by hand, damaged since) is said
// to be one, and how to download it anew; so is a preset's file that does not fit the preset's
// own model and classes (WeightsMismatchError) when `as_published` (neither was set otherwise).
template <typename Read>
auto reading_weights(const std::string &weights, const std::string &path, Read read, bool as_published = false)
{
	try {
		return read();
	} catch (const Error &e) {
		const std::string cached = cached_download_advice(weights);
		const bool names_the_file = std::string(e.what()).find(path) != std::string::npos;
		const bool misfit = dynamic_cast<const WeightsMismatchError *>(&e) != nullptr;
		if (cached.empty() || path.empty() ||
		    !(names_the_file || (as_published && misfit && weights_preset_of(weights))))
			throw;
		throw Error(std::string(e.what()) + ". " + cached);
	}
}

} // namespace frcnn::cli

// SPDX-License-Identifier: BSD-3-Clause
// What the command-line programs share: the PPM reader that frcnn-detect and frcnn-bench use
// when built without OpenCV (a GPU machine's build), checked here in every build.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include "cli.h"
#include "common.h"
#include "frcnn/error.h"
#include "frcnn/model.h"
#include "frcnn/weights.h"

namespace {

std::string write_file(const std::string &name, const std::string &bytes)
{
	const std::string path = frcnn::test::program_temp_dir() + name;
	std::ofstream(path, std::ios::binary) << bytes;
	return path;
}

void expect_error(const std::function<void()> &read, const std::string &fragment)
{
	try {
		read();
		ADD_FAILURE() << "no error; expected one saying '" << fragment << "'";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
	}
}

} // namespace

TEST(ReadPpm, ReadsPixelsAfterAHeaderWithComments)
{
	std::string pixels;
	for (int i = 0; i < 3 * 2 * 3; i++)
		pixels += (char)(i * 13);
	const auto path = write_file("good.ppm", "P6\n# made by hand\n3 2 # width height\n255\n" + pixels);
	const auto image = frcnn::cli::read_ppm(path, "give a PPM");
	EXPECT_EQ(image.width, 3);
	EXPECT_EQ(image.height, 2);
	ASSERT_EQ(image.rgb.size(), pixels.size());
	EXPECT_EQ(std::string(image.rgb.begin(), image.rgb.end()), pixels);
}

TEST(ReadPpm, SaysWhatIsWrong)
{
	using frcnn::cli::read_ppm;
	const std::string hint = "this build reads binary PPM (P6) images only";
	expect_error([&] { read_ppm(frcnn::test::program_temp_dir() + "missing.ppm", hint); }, "cannot open");
	expect_error([&] { read_ppm(write_file("png.ppm", "\x89PNG\r\n\x1a\n"), hint); }, hint);
	expect_error([&] { read_ppm(write_file("ascii.ppm", "P3\n1 1\n255\n0 0 0\n"), hint); }, hint);
	expect_error([&] { read_ppm(write_file("header.ppm", "P6\n3 x\n255\n"), hint); }, "bad header");
	expect_error([&] { read_ppm(write_file("empty.ppm", "P6\n0 2\n255\n"), hint); }, "bad PPM size 0x2");
	expect_error([&] { read_ppm(write_file("deep.ppm", "P6\n1 1\n65535\n" + std::string(6, 'a')), hint); },
		     "only 255");
	expect_error([&] { read_ppm(write_file("short.ppm", "P6\n2 2\n255\n" + std::string(11, 'a')), hint); },
		     "truncated PPM image");
	// A header of a few bytes that claims 12 GB: refused before the memory is taken.
	expect_error([&] { read_ppm(write_file("huge.ppm", "P6\n65535 65535\n255\n"), hint); },
		     "truncated PPM image");
}

// "--" ends the options: it takes no value, and an option's value may be "--" itself.
TEST(NextArg, DoubleDashEndsTheOptions)
{
	const char *args[] = { "frcnn-detect", "--weights", "--", "--", "--image.ppm", "--json" };
	char **argv = const_cast<char **>(args);
	const int argc = 6;
	int i = 1;
	auto arg = frcnn::cli::next_arg(argc, argv, i, { "--json" });
	EXPECT_TRUE(arg.option());
	EXPECT_EQ(arg.name, "--weights");
	EXPECT_EQ(arg.value, "--");
	ASSERT_EQ(i, 2);
	arg = frcnn::cli::next_arg(argc, argv, ++i, { "--json" });
	EXPECT_TRUE(arg.end_of_options());
	EXPECT_FALSE(arg.option());
	EXPECT_EQ(i, 3); // the argument after it is left for the caller, as a plain one
	EXPECT_TRUE((frcnn::cli::Arg{ "--image.ppm", "" }.option()));
	// A flag given a value is told so, not called unknown.
	const char *flag_args[] = { "frcnn-eval", "--json=1" };
	int j = 1;
	expect_error([&] { frcnn::cli::next_arg(2, const_cast<char **>(flag_args), j, { "--json" }); },
		     "option --json takes no value, got '--json=1'");
	EXPECT_FALSE((frcnn::cli::Arg{ "image.ppm", "" }.end_of_options()));
	// Last, with no value: it may be an option of a value or none of the program's.
	const char *last_args[] = { "prog", "image.ppm", "--verbose" };
	int k = 2;
	expect_error([&] { frcnn::cli::next_arg(3, const_cast<char **>(last_args), k, { "--json" }); },
		     "option --verbose needs a value, or is none of this program's (see --help)");
}

// LibTorch's errors carry a C++ backtrace of many lines; the programs print one line.
TEST(ErrorText, LeavesLibTorchsBacktraceOut)
{
	try {
		TORCH_CHECK(false, "the size of tensor a (16) must match");
		FAIL() << "TORCH_CHECK(false) did not throw";
	} catch (const std::exception &e) {
		ASSERT_NE(std::string(e.what()).find('\n'), std::string::npos) << "no backtrace to leave out: " << e.what();
		const std::string text = frcnn::cli::error_text(e);
		EXPECT_EQ(text.find('\n'), std::string::npos) << text;
		EXPECT_NE(text.find("the size of tensor a (16) must match"), std::string::npos) << text;
	}
	EXPECT_EQ(frcnn::cli::error_text(frcnn::Error("plain")), "plain");
}

// Values that mean nothing are refused, not taken as "the default".
TEST(ModelOptions, RefusesValuesOutOfRange)
{
	frcnn::cli::ModelOptions options;
	for (const auto &[name, value] : std::vector<std::pair<std::string, std::string>>{
		     { "--num-classes", "-3" }, { "--min-size", "-5" }, { "--max-size", "-1" }, { "--threads", "-1" } })
		expect_error([&] { frcnn::cli::parse_model_option(options, name, value); },
			     "option " + name + " needs an integer from 0 to ");
	expect_error([&] { frcnn::cli::parse_model_option(options, "--min-size", "2000000000"); },
		     "option --min-size needs an integer from 0 to 8192, got '2000000000'");
	// More classes than a model is built for would take gigabytes before anything could fail.
	expect_error([&] { frcnn::cli::parse_model_option(options, "--num-classes", "100001"); },
		     "option --num-classes needs an integer from 0 to 100000, got '100001'");
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--num-classes", "100000"));
	// Beyond an int, the range says where the numbers end.
	expect_error([&] { frcnn::cli::parse_model_option(options, "--int8-calibration-frames", "99999999999"); },
		     "option --int8-calibration-frames needs an integer from 1 to 2147483647, got '99999999999'");
	for (const std::string value : { "nan", "1.5", "-0.1" })
		expect_error([&] { frcnn::cli::parse_model_option(options, "--score-threshold", value); },
			     "option --score-threshold needs a number from 0 to 1, got '" + value + "'");
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--threads", "0"));
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--score-threshold", "1"));
	EXPECT_EQ(options.score_threshold, 1.0);
}

// A preset's file named by its path is run as the preset is (its model, class count and
// batch-norm eps, which its tensors do not all tell): the 320 MobileNet's tensors are the 800
// one's, and the v1 COCO file runs with an eps of 0. The file is not read for these.
TEST(ModelOptions, APresetsFileByPathRunsAsThePreset)
{
	for (const std::string name : { "coco", "coco-mobilenet-320" }) {
		SCOPED_TRACE(name);
		const frcnn::WeightsPreset preset = *frcnn::find_weights_preset(name);
		const std::string path = frcnn::test::program_temp_dir() + preset.url.substr(preset.url.rfind('/') + 1);
		std::ofstream(path, std::ios::binary) << "not read";
		frcnn::cli::ModelOptions options;
		options.weights = path;
		const frcnn::DetectorOptions d = frcnn::cli::detector_options(options);
		EXPECT_EQ(d.weights, path);
		const frcnn::ModelConfig model = frcnn::model_preset(preset.arch);
		EXPECT_EQ(d.model.arch, model.arch);
		EXPECT_EQ(d.model.min_size, model.min_size);
		EXPECT_EQ(d.model.num_classes, preset.num_classes);
		EXPECT_EQ(d.model.frozen_bn_eps, preset.frozen_bn_eps);
		std::remove(path.c_str());
	}
}

// A file in the download cache that cannot be read (copied in by hand, damaged since) is said to
// be the download of its preset or URL, to delete to download it anew; a file named by its path
// is not.
TEST(ModelOptions, ADamagedFileOfTheDownloadCacheSaysSo)
{
	const std::string home = frcnn::test::program_temp_dir() + "torch-home";
	const frcnn::WeightsPreset preset = *frcnn::find_weights_preset("coco-mobilenet-320");
	const std::string file = preset.url.substr(preset.url.rfind('/') + 1);
	std::filesystem::create_directories(home + "/hub/checkpoints");
	std::ofstream(home + "/hub/checkpoints/" + file, std::ios::binary) << "PK\x03\x04 cut short";
	const char *saved = std::getenv("TORCH_HOME");
	const std::string saved_home = saved ? saved : "";
	setenv("TORCH_HOME", home.c_str(), 1);
	frcnn::cli::ModelOptions options;
	options.weights = preset.name;
	expect_error([&] { frcnn::cli::make_detector(options); },
		     "The file is the download of 'coco-mobilenet-320' kept in the cache (" + home +
			     "/hub/checkpoints): delete it to download it again.");
	options.weights = home + "/hub/checkpoints/" + file;
	try {
		frcnn::cli::make_detector(options);
		ADD_FAILURE() << "a damaged file was read";
	} catch (const frcnn::Error &e) {
		EXPECT_EQ(std::string(e.what()).find("download"), std::string::npos) << e.what();
	}
	// A readable checkpoint of another model under the preset's name: the preset's own model
	// and classes do not fit it, so it is not the preset's file. With classes of the user's
	// choosing, a misfit is the choice's.
	std::filesystem::copy_file(frcnn::test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth",
				   home + "/hub/checkpoints/" + file,
				   std::filesystem::copy_options::overwrite_existing);
	options.weights = preset.name;
	expect_error([&] { frcnn::cli::make_detector(options); },
		     "The file is the download of 'coco-mobilenet-320' kept in the cache (" + home +
			     "/hub/checkpoints): delete it to download it again.");
	// Errors of other settings are not the file's.
	options.precision = frcnn::Precision::Int8;
	options.int8_calibration = home;
	try {
		frcnn::cli::make_detector(options);
		ADD_FAILURE() << "a folder was taken for a calibration file";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find("is a folder"), std::string::npos) << e.what();
		EXPECT_EQ(std::string(e.what()).find("download"), std::string::npos) << e.what();
	}
	options.precision = frcnn::Precision::Fp32;
	options.int8_calibration.clear();
	options.num_classes = 4;
	try {
		frcnn::cli::make_detector(options);
		ADD_FAILURE() << "the shapes model was taken for MobileNetV3";
	} catch (const frcnn::Error &e) {
		EXPECT_EQ(std::string(e.what()).find("download"), std::string::npos) << e.what();
	}
	if (saved)
		setenv("TORCH_HOME", saved_home.c_str(), 1);
	else
		unsetenv("TORCH_HOME");
	std::filesystem::remove_all(home);
}

// --precision of frcnn-detect, frcnn-bench and frcnn-eval reaches the detector's options.
TEST(ModelOptions, PrecisionByName)
{
	frcnn::cli::ModelOptions options;
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--precision", "bf16"));
	EXPECT_EQ(options.precision, frcnn::Precision::Bf16);
	options.arch = "tiny";
	options.seed = 1; // seeded weights: nothing to read
	EXPECT_EQ(frcnn::cli::detector_options(options).precision, frcnn::Precision::Bf16);
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--precision", "fp16"));
	EXPECT_EQ(options.precision, frcnn::Precision::Fp16);
	expect_error([&] { frcnn::cli::parse_model_option(options, "--precision", "half"); },
		     "unknown precision 'half': use fp32, fp16 (CUDA), bf16 or int8 (CPU)");
	EXPECT_NE(std::string(frcnn::cli::model_options_help()).find("bf16"), std::string::npos);
}

// --precision int8 and its calibration options reach the detector's options.
TEST(ModelOptions, Int8Calibration)
{
	frcnn::cli::ModelOptions options;
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--precision", "int8"));
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--int8-calibration", "model.int8.json"));
	EXPECT_TRUE(frcnn::cli::parse_model_option(options, "--int8-calibration-frames", "40"));
	options.arch = "tiny";
	options.seed = 1;
	const auto d = frcnn::cli::detector_options(options);
	EXPECT_EQ(d.precision, frcnn::Precision::Int8);
	EXPECT_EQ(d.int8_calibration, "model.int8.json");
	EXPECT_EQ(d.int8_calibration_frames, 40);
	expect_error([&] { frcnn::cli::parse_model_option(options, "--int8-calibration-frames", "0"); },
		     "option --int8-calibration-frames needs an integer >= 1, got '0'");
	EXPECT_NE(std::string(frcnn::cli::model_options_help()).find("--int8-calibration F"), std::string::npos);
}

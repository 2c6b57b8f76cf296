// SPDX-License-Identifier: BSD-3-Clause
// The Detector facade: device and precision, frames in, plain detections out.
#include <unistd.h>

#include <filesystem>
#include <utility>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "frcnn-build-config.h"
#include "frcnn/checkpoint.h"
#include "frcnn/detail/regular_file.h"
#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "frcnn/model.h"
#include "parts.h"

namespace frcnn {

struct Detector::Impl {
	DetectorOptions options;
	torch::Device device{torch::kCPU};
	FasterRCNN model{nullptr};

	// Why the calibration file could not be written, until a caller takes it.
	std::string calibration_write_error;

	// Int8: once enough frames have been observed, quantizes on their ranges and keeps them.
	void finish_calibration();
};

namespace {

torch::Device parse_device(const std::string &name)
{
	if (name == "cpu")
		return torch::Device(torch::kCPU);
	if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
		if (!Detector::cuda_built())
			throw Error("device '" + name + "' asked for, but this build has no CUDA support (its "
				    "LibTorch is CPU-only): run on the CPU (device cpu), or rebuild against a "
				    "CUDA-enabled LibTorch (meson option -Dlibtorch=PATH)");
		int index = 0;
		if (name.size() > 5) {
			try {
				size_t used = 0;
				index = std::stoi(name.substr(5), &used);
				if (used != name.size() - 5 || index < 0)
					throw std::invalid_argument(name);
			} catch (const std::exception &) {
				throw Error("bad device '" + name + "': use cpu, cuda or cuda:N");
			}
		}
		if (!torch::cuda::is_available() || index >= (int)torch::cuda::device_count())
			throw Error("device '" + name + "' is not available: " +
				    std::to_string(torch::cuda::device_count()) + " CUDA device(s) found");
		return torch::Device(torch::kCUDA, (c10::DeviceIndex)index);
	}
	throw Error("unknown device '" + name + "': use cpu, cuda or cuda:N");
}

// Called in a catch-all: the exception in flight as frcnn::Error, the only kind the API throws
// (frcnn::Error and its kinds as they are, LibTorch's and the standard library's with `what`
// before their message).
[[noreturn]] void rethrow_as_error(const char *what)
{
	try {
		throw;
	} catch (const Error &) {
		throw;
	} catch (const c10::Error &e) {
		throw Error(std::string(what) + ": " + e.what_without_backtrace());
	} catch (const std::bad_alloc &) {
		throw Error(std::string(what) + ": out of memory");
	} catch (const std::exception &e) {
		throw Error(std::string(what) + ": " + e.what());
	}
}

} // namespace

bool Detector::cuda_built()
{
	return FRCNN_HAVE_CUDA;
}

void set_cpu_threads(int threads)
{
	if (threads < 1)
		throw Error("the number of CPU threads must be at least 1, not " + std::to_string(threads));
	// LibTorch's once-per-thread set-up first: it would otherwise set the process's count on
	// this thread at its first operator, over the one set here.
	at::internal::lazy_init_num_threads();
	if (at::get_num_threads() == threads)
		return;
	try {
		at::set_num_threads(threads);
	} catch (const c10::Error &e) {
		// LibTorch's own thread pool (a build without OpenMP) takes a count only before its
		// first parallel work.
		throw Error("could not set " + std::to_string(threads) + " CPU threads: " +
			    e.what_without_backtrace());
	}
}

int cpu_threads()
{
	return at::get_num_threads();
}

int default_cpu_threads()
{
	return at::intraop_default_num_threads();
}

Detector::Detector(const DetectorOptions &options)
	: impl_(std::make_unique<Impl>())
{
	impl_->options = options;
	// Read from the caller's options below; a copy kept here would double the memory of a large
	// checkpoint (160 MB for fasterrcnn_resnet50_fpn) for as long as the detector lives.
	impl_->options.checkpoint.reset();
	impl_->device = parse_device(options.device);
	if (options.precision == Precision::Int8 && options.int8_calibration_frames < 1)
		throw Error("int8 calibration needs at least 1 frame, not " + std::to_string(options.int8_calibration_frames));
	// A folder, a device or a pipe is no file to read or write (nor to remove and calibrate anew).
	if (options.precision == Precision::Int8 && !options.int8_calibration.empty()) {
		const std::string not_a_file = detail::not_a_regular_file(options.int8_calibration);
		if (!not_a_file.empty())
			throw CalibrationError("the 8-bit calibration '" + options.int8_calibration + "' is " + not_a_file +
					       ": give a file (written there when it does not exist)");
	}
	if (options.precision == Precision::Int8 && !options.int8_calibration.empty() &&
	    access(options.int8_calibration.c_str(), F_OK) != 0) {
		// Written after the calibration frames: a folder it cannot go to fails now, not then.
		auto folder = std::filesystem::path(options.int8_calibration).parent_path();
		if (folder.empty())
			folder = ".";
		if (access(folder.c_str(), W_OK) != 0)
			throw CalibrationError("cannot write the 8-bit calibration '" + options.int8_calibration + "': folder '" +
				    folder.string() + "' " + (access(folder.c_str(), F_OK) == 0 ? "is not writable" : "does not exist"));
	}
	// Before the weights are read: a precision the device cannot run fails at once.
	detail::check_precision(impl_->device, options.precision);
	if (options.threads < 0)
		throw Error("threads must be at least 0 (0 keeps the thread count as it is), got " +
			    std::to_string(options.threads));
	if (options.threads > 0)
		set_cpu_threads(options.threads);
	try {
		if (options.weights.empty() && !options.checkpoint)
			torch::manual_seed(options.random_seed);
		impl_->model = FasterRCNN(options.model);
		if (options.checkpoint)
			impl_->model->load_state_dict(*options.checkpoint);
		else if (!options.weights.empty())
			impl_->model->load_state_dict(read_checkpoint(options.weights));
		impl_->model->eval();
		impl_->model->to_device(impl_->device, options.precision, options.channels_last);
		// The choice of CPU kernels means nothing elsewhere.
		if (impl_->device.is_cpu())
			impl_->model->set_cpu_convolutions(options.cpu_convolutions);
		if (options.precision == Precision::Int8 && !options.int8_calibration.empty() &&
		    access(options.int8_calibration.c_str(), F_OK) == 0) {
			try {
				impl_->model->set_int8_calibration(load_int8_calibration(options.int8_calibration));
			} catch (const Error &e) {
				throw CalibrationError(std::string(e.what()) + "; remove the file to calibrate anew on this model");
			}
		}
	} catch (...) {
		rethrow_as_error("could not build the model");
	}
}

Detector::~Detector() = default;

const ModelConfig &Detector::config() const
{
	return impl_->model->config();
}

void Detector::set_score_threshold(double value)
{
	impl_->model->set_box_score_thresh(value);
}

void Detector::set_nms_threshold(double value)
{
	impl_->model->set_box_nms_thresh(value);
}

void Detector::set_max_detections(int value)
{
	impl_->model->set_box_detections_per_img(value);
}

void Detector::set_image_size(int min_size, int max_size)
{
	impl_->model->set_image_size(min_size, max_size);
}

CpuConvolutions Detector::cpu_convolutions() const
{
	return impl_->device.is_cpu() ? impl_->model->cpu_convolutions() : CpuConvolutions::LibTorch;
}

bool Detector::int8_calibrated() const
{
	return impl_->model->int8_calibrated();
}

int Detector::int8_frames_observed() const
{
	if (impl_->options.precision != Precision::Int8 || impl_->model->int8_calibrated())
		return 0;
	return (int)impl_->model->int8_frames_observed();
}

std::string Detector::take_int8_calibration_write_error()
{
	return std::exchange(impl_->calibration_write_error, std::string());
}

void Detector::Impl::finish_calibration()
{
	if (options.precision != Precision::Int8 || model->int8_calibrated())
		return;
	const auto observed = model->int8_observed();
	if (observed.frames < options.int8_calibration_frames)
		return;
	model->set_int8_calibration(observed);
	if (!options.int8_calibration.empty()) {
		// The batch has run and the model is calibrated: a file that cannot be written
		// costs the next start its calibration, not this batch its detections.
		try {
			save_int8_calibration(observed, options.int8_calibration);
		} catch (const Error &e) {
			calibration_write_error = e.what();
		}
	}
}

namespace {

// One batch through the model, its detections on the host.
std::vector<std::vector<Detection>> run_batch(FasterRCNN &model, const std::vector<FrameView> &frames,
					      const std::vector<detail::FrameMemory> &frame_memory)
{
	if (frames.empty())
		return {};
	try {
		// Inference mode is thread-local: set it here, in whichever thread runs the batch.
		c10::InferenceMode inference;
		return detail::detections_to_host(model->forward_frames(frames, frame_memory));
	} catch (...) {
		rethrow_as_error("inference failed");
	}
}

} // namespace

std::vector<std::vector<Detection>> Detector::detect(const std::vector<FrameView> &frames)
{
	auto detections = run_batch(impl_->model, frames, {});
	impl_->finish_calibration();
	return detections;
}

std::vector<std::vector<Detection>> Detector::detect(const std::vector<HeldFrame> &frames)
{
	std::vector<FrameView> views;
	std::vector<detail::FrameMemory> memory;
	for (const auto &frame : frames) {
		if (frame.empty())
			throw Error("detect() was given an empty HeldFrame: make them with copy_frame() or hold_frame()");
		views.push_back(frame.view());
		memory.push_back(*std::static_pointer_cast<const detail::FrameMemory>(frame.bytes_));
	}
	auto detections = run_batch(impl_->model, views, memory);
	impl_->finish_calibration();
	return detections;
}

HeldFrame Detector::copy_frame(const FrameView &frame) const
{
	HeldFrame held;
	// On CUDA the bytes go on to the device now, so that the batch finds them there.
	auto memory = detail::copy_frame_memory(frame, impl_->device, &held.view_);
	held.bytes_ = std::make_shared<const detail::FrameMemory>(std::move(memory));
	return held;
}

HeldFrame Detector::hold_frame(const FrameView &frame, std::shared_ptr<const void> owner) const
{
	if (!impl_->device.is_cpu())
		return copy_frame(frame); // `owner` goes when this returns
	// The CPU reads the bytes where they lie: check the view now, not in the batch.
	frame_planes(frame);
	detail::FrameMemory memory;
	memory.owner = std::move(owner);
	HeldFrame held;
	held.view_ = frame;
	held.bytes_ = std::make_shared<const detail::FrameMemory>(std::move(memory));
	return held;
}

HeldFrame crop_frame(const HeldFrame &frame, int x, int y, int width, int height)
{
	if (frame.empty())
		throw Error("crop_frame() was given an empty HeldFrame");
	HeldFrame crop;
	// The planes move within the same memory: the upload plan of a batch finds a rectangle's
	// planes at their offsets from the memory's start, on the host and on the device alike.
	crop.view_ = crop_frame(frame.view_, x, y, width, height);
	crop.bytes_ = frame.bytes_;
	return crop;
}

} // namespace frcnn

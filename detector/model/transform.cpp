// SPDX-License-Identifier: BSD-3-Clause
// GeneralizedRCNNTransform: normalise, resize, batch with padding, and boxes back to the original
// image size. The resize arithmetic reproduces torchvision's float32 rounding exactly.
#include <algorithm>
#include <cmath>
#include <cstring>


#include "frcnn-build-config.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "parts.h"
#include "../ops/kernels.h"

namespace frcnn::detail {

namespace {

// torchvision: scale = min(min_size / float32(min_side), max_size / float32(max_side)) where a
// Python float divided by a tensor runs as tensor.reciprocal() * float, in float32. The scale
// goes through .item() (exact in double) and interpolate() floors in * scale in double. Each
// side at least 1 (where torchvision's would be 0, its interpolate() fails).
ImageSize scaled_size(double height, double width, double min_size, double max_size)
{
	const float min_side = (float)std::min(height, width);
	const float max_side = (float)std::max(height, width);
	const float by_min = (1.0f / min_side) * (float)min_size;
	const float by_max = (1.0f / max_side) * (float)max_size;
	const double scale = (double)std::min(by_min, by_max);
	return {std::max<int64_t>(1, (int64_t)std::floor(height * scale)),
		std::max<int64_t>(1, (int64_t)std::floor(width * scale))};
}

} // namespace

ImageSize resized_size(int64_t height, int64_t width, double min_size, double max_size)
{
	return scaled_size((double)height, (double)width, min_size, max_size);
}

ImageSize resized_size(int64_t height, int64_t width, PixelAspectRatio pixel_aspect_ratio, double min_size,
		       double max_size)
{
	// The displayed size, whose width need not be whole (for one that is: the size of a frame
	// of that width).
	const double displayed_width =
		(double)width * pixel_aspect_ratio.numerator / pixel_aspect_ratio.denominator;
	return scaled_size((double)height, pixel_aspect_ratio.square() ? (double)width : displayed_width, min_size,
			   max_size);
}

std::vector<uint8_t> samples_read_by_resize(int64_t in, int64_t out)
{
	std::vector<uint8_t> read(static_cast<size_t>(in), 0);
	const float scale = static_cast<float>(in) / static_cast<float>(out);
	auto mark = [&](double source) {
		const int64_t first = source < 0.0 ? 0 : std::min(static_cast<int64_t>(source), in - 1);
		for (int64_t i = first; i <= std::min(first + 1, in - 1); i++)
			read[static_cast<size_t>(i)] = 1;
	};
	// LibTorch's CPU operator computes the index in double (its accumulation type for float),
	// the scale too; others may compute it in float, or in double from a float scale, and
	// round it to float. Each way, with the product rounded apart (through a volatile, which no
	// contraction crosses) and fused.
	const double double_scale = static_cast<double>(in) / static_cast<double>(out);
	for (int64_t i = 0; i < out; i++) {
		const double position = static_cast<double>(i) + 0.5;
		for (const double s : {double_scale, static_cast<double>(scale)}) {
			volatile double product = s * position;
			const double plain = product - 0.5, fused = std::fma(s, position, -0.5);
			for (const double source : {plain, fused}) {
				mark(source);
				mark(static_cast<float>(source));
			}
		}
		const float float_position = static_cast<float>(i) + 0.5f;
		volatile float float_product = scale * float_position;
		mark(float_product - 0.5f);
		mark(std::fma(scale, float_position, -0.5f));
	}
	return read;
}

torch::Tensor resize_boxes(const torch::Tensor &boxes, ImageSize from, ImageSize to)
{
	// torchvision divides two float32 tensors; the same float division here, on the host (no
	// copies to the device), and the product with a scalar is computed in the boxes' dtype.
	const double ratio_h = (float)to.first / (float)from.first;
	const double ratio_w = (float)to.second / (float)from.second;
	auto b = boxes.unbind(1);
	return torch::stack({b[0] * ratio_w, b[1] * ratio_h, b[2] * ratio_w, b[3] * ratio_h}, 1);
}

std::vector<torch::Tensor> resize_boxes(const std::vector<torch::Tensor> &boxes, const std::vector<ImageSize> &from,
					const std::vector<ImageSize> &to)
{
	if (boxes.size() != from.size() || boxes.size() != to.size())
		throw Error("resize_boxes: " + std::to_string(boxes.size()) + " box sets for " +
			    std::to_string(from.size()) + " and " + std::to_string(to.size()) + " sizes");
	if (boxes.empty())
		return {};
	// Each row times its image's ratios (w, h, w, h), computed on the host as the single
	// image's form computes them, and multiplied in the boxes' dtype: the same products, in one
	// operation for the batch instead of five per image.
	std::vector<float> ratios;
	std::vector<int64_t> counts;
	for (size_t i = 0; i < boxes.size(); i++) {
		const float ratio_h = (float)to[i].first / (float)from[i].first;
		const float ratio_w = (float)to[i].second / (float)from[i].second;
		counts.push_back(boxes[i].size(0));
		for (int64_t row = 0; row < counts.back(); row++)
			ratios.insert(ratios.end(), {ratio_w, ratio_h, ratio_w, ratio_h});
	}
	const auto all = torch::cat(boxes, 0);
	const auto factors = to_device_without_waiting(torch::tensor(ratios).view({-1, 4}), all.device())
				     .to(all.scalar_type());
	return (all * factors).split_with_sizes(counts, 0);
}

std::vector<Detections> boxes_to_original_sizes(std::vector<Detections> detections, const std::vector<ImageSize> &from,
						const std::vector<ImageSize> &to)
{
	if (detections.empty()) // training gives none
		return detections;
	std::vector<torch::Tensor> boxes;
	for (const auto &d : detections)
		boxes.push_back(d.boxes);
	boxes = resize_boxes(boxes, from, to);
	for (size_t i = 0; i < detections.size(); i++)
		detections[i].boxes = boxes[i];
	return detections;
}

std::vector<std::vector<Detection>> detections_to_host(const std::vector<Detections> &detections)
{
	std::vector<std::vector<Detection>> result;
	if (detections.empty())
		return result;
	std::vector<torch::Tensor> boxes, scores, labels;
	for (const auto &d : detections) {
		boxes.push_back(d.boxes);
		scores.push_back(d.scores);
		labels.push_back(d.labels);
	}
	// Whole-batch operations, not per image: on CUDA each is a kernel launch.
	const auto rows = torch::cat({torch::cat(boxes, 0).to(torch::kFloat32),
				      torch::cat(scores, 0).to(torch::kFloat32).unsqueeze(1),
				      torch::cat(labels, 0).to(torch::kFloat32).unsqueeze(1)},
				     1)
				  .to(torch::kCPU)
				  .contiguous();
	const float *r = rows.data_ptr<float>();
	for (const auto &d : detections) {
		std::vector<Detection> out;
		for (int64_t i = 0; i < d.boxes.size(0); i++, r += 6)
			out.push_back({r[0], r[1], r[2], r[3], (int64_t)r[5], r[4]});
		result.push_back(std::move(out));
	}
	return result;
}

ImageSize padded_batch_size(const ModelConfig &config, const std::vector<ImageSize> &image_sizes)
{
	return padded_batch_size(config.size_divisible, image_sizes);
}

ImageSize padded_batch_size(int size_divisible, const std::vector<ImageSize> &image_sizes)
{
	int64_t max_h = 0, max_w = 0;
	for (const auto &s : image_sizes) {
		max_h = std::max(max_h, s.first);
		max_w = std::max(max_w, s.second);
	}
	const double stride = size_divisible;
	return {(int64_t)(std::ceil((double)max_h / stride) * stride),
		(int64_t)(std::ceil((double)max_w / stride) * stride)};
}

namespace {

// A tensor of `shape`: the one in `slot` when only the slot holds it (and it fits), else a new
// one, put in the slot when there is one.
torch::Tensor reusable(torch::Tensor *slot, at::IntArrayRef shape, const torch::TensorOptions &options)
{
	if (slot == nullptr)
		return torch::empty(shape, options);
	if (!slot->defined() || slot->sizes() != shape || slot->dtype() != options.dtype() ||
	    slot->device() != options.device() || slot->use_count() != 1 || slot->storage().use_count() != 1)
		*slot = torch::empty(shape, options);
	return *slot;
}

// Normalised images [3, H, W] resized as torchvision resizes them (bilinear, the model's min and
// max size) and zero padded into one batch; the targets' boxes follow the resize. With `buffers`
// (float images, the lock held) the resized images and the batch are written into their memory.
TransformedBatch resize_into_batch(const ModelConfig &config, const std::vector<torch::Tensor> &normalised,
				   const std::vector<Target> *targets, const std::vector<PixelAspectRatio> *pixel_aspect_ratios,
				   TransformBuffers *buffers = nullptr)
{
	if (pixel_aspect_ratios != nullptr && pixel_aspect_ratios->size() != normalised.size())
		throw Error(std::to_string(pixel_aspect_ratios->size()) + " pixel aspect ratios given for " +
			    std::to_string(normalised.size()) + " images");
	TransformedBatch out;
	std::vector<torch::Tensor> resized;
	if (buffers != nullptr && buffers->resized.size() < normalised.size())
		buffers->resized.resize(normalised.size());
	for (size_t i = 0; i < normalised.size(); i++) {
		const ImageSize original{normalised[i].size(1), normalised[i].size(2)};
		const ImageSize size = resized_size(original.first, original.second,
						    pixel_aspect_ratios != nullptr ? (*pixel_aspect_ratios)[i]
										   : PixelAspectRatio{},
						    config.min_size, config.max_size);
		// What interpolate (bilinear, align_corners=false, to a size) runs.
		auto r = reusable(buffers != nullptr ? &buffers->resized[i] : nullptr, {1, 3, size.first, size.second},
				  normalised[i].options());
		at::upsample_bilinear2d_out(r, normalised[i].unsqueeze(0), {size.first, size.second}, false);
		resized.push_back(r[0]);
		out.original_sizes.push_back(original);
		out.image_sizes.push_back(size);
		if (targets != nullptr) {
			Target t = (*targets)[i];
			t.boxes = resize_boxes(t.boxes, original, size);
			out.targets.push_back(t);
		}
	}

	const ImageSize padded = padded_batch_size(config, out.image_sizes);
	const std::vector<int64_t> shape{(int64_t)resized.size(), 3, padded.first, padded.second};
	out.batch = reusable(buffers != nullptr ? &buffers->batch : nullptr, shape, resized[0].options());
	out.batch.zero_();
	for (size_t i = 0; i < resized.size(); i++) {
		using torch::indexing::Slice;
		out.batch[i]
			.index({Slice(), Slice(0, resized[i].size(1)), Slice(0, resized[i].size(2))})
			.copy_(resized[i]);
	}
	return out;
}

} // namespace

TransformedBatch transform_images(const ModelConfig &config, const std::vector<torch::Tensor> &images,
				  const std::vector<Target> *targets,
				  const std::vector<PixelAspectRatio> *pixel_aspect_ratios)
{
	if (images.empty())
		throw Error("no images given to the model");
	std::vector<torch::Tensor> normalised;
	for (size_t i = 0; i < images.size(); i++) {
		const auto &image = images[i];
		if (image.dim() != 3 || image.size(0) != 3)
			throw Error("images must be float tensors of shape [3,H,W], got " +
				    std::string(image.sizes().vec().empty() ? "a scalar" : "") +
				    c10::str(image.sizes()));
		if (!image.is_floating_point())
			throw Error("images must be floating point in 0..1, got " +
				    std::string(c10::toString(image.scalar_type())));
		if (image.size(1) < 1 || image.size(2) < 1)
			throw Error("image " + std::to_string(i) + " is empty: " + c10::str(image.sizes()));

		auto opts = torch::TensorOptions().dtype(image.scalar_type()).device(image.device());
		auto mean = torch::tensor(config.image_mean, torch::kFloat64).to(opts);
		auto std_ = torch::tensor(config.image_std, torch::kFloat64).to(opts);
		normalised.push_back((image - mean.view({-1, 1, 1})) / std_.view({-1, 1, 1}));
	}
	return resize_into_batch(config, normalised, targets, pixel_aspect_ratios);
}

namespace {

std::vector<PixelAspectRatio> pixel_aspect_ratios_of(const std::vector<FrameView> &frames)
{
	std::vector<PixelAspectRatio> ratios;
	for (const auto &f : frames)
		ratios.push_back(f.pixel_aspect_ratio);
	return ratios;
}

} // namespace

TransformedBatch transform_frames_cpu(const ModelConfig &config, const std::vector<FrameView> &frames,
				      TransformBuffers *buffers)
{
	if (frames.empty())
		throw Error("no images given to the model");
	std::unique_lock<std::mutex> lock;
	if (buffers != nullptr) {
		lock = std::unique_lock<std::mutex>(buffers->mutex, std::try_to_lock);
		if (!lock.owns_lock())
			buffers = nullptr;
		else if (buffers->normalised.size() < frames.size())
			buffers->normalised.resize(frames.size());
	}
	// The mean and std of transform_images: the config's doubles as float tensors.
	float mean[3], std_[3];
	for (int c = 0; c < 3; c++) {
		mean[c] = static_cast<float>(config.image_mean[c]);
		std_[c] = static_cast<float>(config.image_std[c]);
	}
	const auto ratios = pixel_aspect_ratios_of(frames);
	std::vector<torch::Tensor> normalised;
	for (size_t i = 0; i < frames.size(); i++) {
		const FrameView &f = frames[i];
		frame_planes(f); // a clear error for a bad view
		const std::vector<int64_t> shape{3, f.height, f.width};
		normalised.push_back(reusable(buffers != nullptr ? &buffers->normalised[i] : nullptr, shape,
					      torch::kFloat));
		// Only the pixels the resize below reads: a frame shrunk to less than half (1080p
		// frames for the 320 models) has rows and columns it never reads.
		const ImageSize size = resized_size(f.height, f.width, ratios[i], config.min_size, config.max_size);
		ops::detail::PixelsRead read;
		read.rows = samples_read_by_resize(f.height, size.first);
		const std::vector<uint8_t> columns = samples_read_by_resize(f.width, size.second);
		for (int64_t x = 0; x < f.width; x++)
			if (columns[static_cast<size_t>(x)])
				read.columns.push_back(x);
		const bool every_pixel = static_cast<int64_t>(read.columns.size()) == f.width &&
					 std::find(read.rows.begin(), read.rows.end(), 0) == read.rows.end();
		ops::detail::normalised_frame_cpu(f, mean, std_, normalised.back(), every_pixel ? nullptr : &read);
	}
	return resize_into_batch(config, normalised, nullptr, &ratios, buffers);
}

torch::Tensor copy_frame_bytes(const FrameView &frame, bool pinned, FrameView *view)
{
	const auto planes = frame_planes(frame);
	int64_t offsets[3] = {0, 0, 0};
	int64_t total = 0;
	for (size_t p = 0; p < planes.size(); p++) {
		offsets[p] = total;
		total += (plane_span(planes[p], frame.strides[p]) + 63) / 64 * 64;
	}
	torch::Tensor bytes;
	try {
		bytes = torch::empty({total}, torch::TensorOptions().dtype(torch::kByte).pinned_memory(pinned));
	} catch (const c10::Error &e) {
		throw Error("could not allocate " + std::to_string(total) + " bytes for a copy of a frame: " +
			    e.what_without_backtrace());
	}
	*view = frame;
	uint8_t *base = bytes.data_ptr<uint8_t>();
	for (size_t p = 0; p < 3; p++) {
		if (p < planes.size()) {
			std::memcpy(base + offsets[p], frame.planes[p], plane_span(planes[p], frame.strides[p]));
			view->planes[p] = base + offsets[p];
		} else {
			view->planes[p] = nullptr;
			view->strides[p] = 0;
		}
	}
	return bytes;
}

FrameUploadPlan plan_frame_upload(const std::vector<FrameView> &frames, const std::vector<FrameMemory> &frame_memory)
{
	if (!frame_memory.empty() && frame_memory.size() != frames.size())
		throw Error("frame memory given for " + std::to_string(frame_memory.size()) + " of " +
			    std::to_string(frames.size()) + " frames");
	using Source = FrameUploadPlan::Source;
	auto aligned = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
	FrameUploadPlan plan;
	plan.frames.resize(frames.size());
	for (size_t i = 0; i < frames.size(); i++) {
		auto &frame = plan.frames[i];
		const FrameMemory *memory = frame_memory.empty() || !frame_memory[i].host.defined() ? nullptr : &frame_memory[i];
		frame.source = memory == nullptr	  ? Source::Gathered
			       : memory->device.defined() ? Source::OnDevice
							  : Source::PinnedBlock;
		if (frame.source == Source::Gathered)
			frame.block_offset = plan.gathered;
		const auto planes = frame_planes(frames[i]);
		for (size_t p = 0; p < planes.size(); p++) {
			const int64_t stride = frames[i].strides[p];
			const int64_t bytes = plane_span(planes[p], stride);
			int64_t offset = 0;
			if (memory != nullptr) {
				offset = frames[i].planes[p] - static_cast<const uint8_t *>(memory->host.data_ptr());
				const int64_t size = memory->device.defined()
							     ? std::min(memory->host.numel(), memory->device.numel())
							     : memory->host.numel();
				if (offset < 0 || offset + bytes > size)
					throw Error("frame plane " + std::to_string(p) + " lies outside the frame's memory");
			} else {
				offset = plan.gathered - frame.block_offset;
				plan.gathered += aligned(bytes);
			}
			frame.planes.push_back({frames[i].planes[p], bytes, offset, stride});
		}
	}
	plan.total = plan.gathered;
	for (size_t i = 0; i < frames.size(); i++) {
		if (plan.frames[i].source != Source::PinnedBlock)
			continue;
		plan.frames[i].block_offset = plan.total;
		plan.total += aligned(frame_memory[i].host.numel());
	}
	return plan;
}

FrameMemory copy_frame_memory(const FrameView &frame, torch::Device device, FrameView *view)
{
	FrameMemory memory;
	memory.host = copy_frame_bytes(frame, device.is_cuda(), view);
#if FRCNN_HAVE_CUDA
	if (device.is_cuda()) {
		try {
			memory.device = upload_frame_bytes_cuda(memory.host, device);
		} catch (const c10::Error &e) {
			throw Error(std::string("could not copy a frame to ") + device.str() + ": " +
				    e.what_without_backtrace());
		}
	}
#endif
	return memory;
}

TransformedBatch transform_frames(const ModelConfig &config, const std::vector<FrameView> &frames,
				  torch::Device device, torch::ScalarType dtype, bool channels_last,
				  const std::vector<FrameMemory> &frame_memory, TransformBuffers *buffers)
{
	TransformedBatch out;
#if FRCNN_HAVE_CUDA
	if (device.is_cuda())
		out = transform_frames_cuda(config, frames, device, dtype, frame_memory);
#else
	(void)frame_memory; // the CPU path reads the views, wherever their bytes are
#endif
	if (!out.batch.defined() && device.is_cpu() && (dtype == torch::kFloat || dtype == torch::kBFloat16)) {
		out = transform_frames_cpu(config, frames, buffers);
		// A bf16 model's batch: normalised and resized in float, then rounded once.
		if (dtype != torch::kFloat)
			out.batch = out.batch.to(dtype);
	}
	if (!out.batch.defined()) {
		std::vector<torch::Tensor> images;
		for (const auto &f : frames)
			images.push_back(frame_to_tensor(f).to(device, dtype));
		const auto ratios = pixel_aspect_ratios_of(frames);
		out = transform_images(config, images, nullptr, &ratios);
	}
	if (channels_last)
		out.batch = out.batch.contiguous(torch::MemoryFormat::ChannelsLast);
	return out;
}

} // namespace frcnn::detail

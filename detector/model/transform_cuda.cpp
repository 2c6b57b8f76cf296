// SPDX-License-Identifier: BSD-3-Clause
// Frames to the model's batch on a CUDA device: each frame's bytes are gathered into a pinned
// host buffer and copied to the device asynchronously on the current stream, and one kernel per
// frame writes its normalised, resized, zero-padded image into the batch; the gathering of a
// frame overlaps the copy of the one before. Frames whose bytes are already in pinned memory
// (Detector::copy_frame) skip the gathering. Built only against a CUDA-enabled LibTorch.
#include <chrono>
#include <cstddef>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include <ATen/Parallel.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/version.h>

#include "../ops/cuda/launch.h"
#include "../ops/transfer.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "parts.h"

namespace frcnn::detail {

namespace {

// A frame's planes into their places in the pinned buffer. A plain copy of a few MB: done in
// pieces of 256 KB on LibTorch's intra-op threads (a dozen pieces for a 1333x800 RGB frame), it
// takes a fraction of the time one thread needs.
void gather(const std::vector<FrameUploadPlan::Plane> &planes, uint8_t *host)
{
	struct Piece {
		const uint8_t *from;
		uint8_t *to;
		int64_t bytes;
	};
	constexpr int64_t kPiece = 256 << 10;
	std::vector<Piece> pieces;
	for (const auto &c : planes)
		for (int64_t at = 0; at < c.bytes; at += kPiece)
			pieces.push_back({c.source + at, host + c.offset + at, std::min(kPiece, c.bytes - at)});
	at::parallel_for(0, (int64_t)pieces.size(), 1, [&](int64_t begin, int64_t end) {
		for (int64_t i = begin; i < end; i++)
			std::memcpy(pieces[i].to, pieces[i].from, pieces[i].bytes);
	});
}

} // namespace

namespace {

// The stream frame copies go to a device on: one per device for the process, taken once from
// LibTorch's pool (non-blocking: it does not wait for the batches that run meanwhile on the
// detectors' streams). One stream, so that the caching allocator hands the memory of a used copy
// to the next one instead of keeping blocks for each of the pool's streams.
c10::cuda::CUDAStream upload_stream(c10::DeviceIndex device)
{
	static std::mutex mutex;
	static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
	const std::lock_guard<std::mutex> lock(mutex);
	auto it = streams.find(device);
	if (it == streams.end())
		it = streams.emplace(device, c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device)).first;
	return it->second;
}

// A table of the library's (static floats: an HDR transfer function's, a primaries
// conversion's) in the memory of a device, copied there the first time a frame needs it. The
// copy is a blocking one (it waits for the stream), so that kernels on any stream, other
// detectors' included, find the table complete. Kept for the process (never freed: no device
// memory is given back while the process ends).
const float *device_table(const float *host, int64_t count, c10::DeviceIndex device)
{
	static std::mutex mutex;
	static auto *tables = new std::map<std::pair<const float *, c10::DeviceIndex>, torch::Tensor>();
	const std::lock_guard<std::mutex> lock(mutex);
	torch::Tensor &table = (*tables)[{host, device}];
	if (!table.defined())
		table = torch::from_blob(const_cast<float *>(host), {count}, torch::kFloat32)
				.to(torch::Device(torch::kCUDA, device));
	return table.data_ptr<float>();
}

// The table of an HDR transfer function (sdr_table) on a device; null for SDR.
const float *device_transfer_table(TransferFunction transfer, c10::DeviceIndex device)
{
	const float *host = sdr_table(transfer);
	return host == nullptr ? nullptr : device_table(host, kTransferIntervals + 1, device);
}

// The conversion of wide-gamut colours (primaries_conversion) on a device; null for BT.709.
const PrimariesConversion *device_primaries_conversion(ColourPrimaries primaries, c10::DeviceIndex device)
{
	const PrimariesConversion *host = primaries_conversion(primaries);
	if (host == nullptr)
		return nullptr;
	static_assert(sizeof(PrimariesConversion) % sizeof(float) == 0, "a conversion is floats only");
	const float *table = device_table(reinterpret_cast<const float *>(host),
					  static_cast<int64_t>(sizeof(PrimariesConversion) / sizeof(float)), device);
	return reinterpret_cast<const PrimariesConversion *>(table);
}

} // namespace

torch::Tensor upload_frame_bytes_cuda(const torch::Tensor &host, torch::Device device)
{
	const c10::cuda::CUDAGuard guard(device);
	// The copy engine moves the bytes while the GPU computes. Waiting for the copy here, on the
	// caller's thread, leaves nothing for the batch to wait for.
	const c10::cuda::CUDAStream stream = upload_stream(guard.current_device().index());
	const c10::cuda::CUDAStreamGuard on_stream(stream);
	auto on_device = torch::empty({host.numel()}, torch::TensorOptions().dtype(torch::kByte).device(device));
	on_device.copy_(host, /*non_blocking=*/true);
	// Other threads queue their frames' copies on the same stream: an event after this copy
	// waits for it (and those queued before it), not for the copies queued since.
	at::cuda::CUDAEvent copied;
	copied.record(stream);
	copied.synchronize();
	return on_device;
}

TransformedBatch transform_frames_cuda(const ModelConfig &config, const std::vector<FrameView> &frames,
				       torch::Device device, torch::ScalarType dtype,
				       const std::vector<FrameMemory> &frame_memory)
{
	if (dtype != torch::kFloat && dtype != torch::kHalf)
		throw Error(std::string("frames are pre-processed on CUDA in float or half, not ") +
			    c10::toString(dtype));
	const c10::cuda::CUDAGuard guard(device);
	const auto current = at::cuda::getCurrentCUDAStream();
	using Source = FrameUploadPlan::Source;
	const FrameUploadPlan plan = plan_frame_upload(frames, frame_memory);
	TransformedBatch out;
	for (const auto &f : frames) {
		const ImageSize original{f.height, f.width};
		out.original_sizes.push_back(original);
		out.image_sizes.push_back(resized_size(original.first, original.second, f.pixel_aspect_ratio,
						       config.min_size, config.max_size));
	}
	std::vector<torch::Tensor> on_device_frames(frames.size());
	for (size_t i = 0; i < frames.size(); i++) {
		if (plan.frames[i].source != Source::OnDevice)
			continue;
		auto bytes = frame_memory[i].device;
		if (bytes.device() != guard.current_device()) // "cuda" names the current device
			bytes = bytes.to(guard.current_device());
		// Copied on another stream: its memory must not go back to that stream's pool before
		// this stream's kernels have read it.
		c10::cuda::CUDACachingAllocator::recordStream(bytes.storage().data_ptr(), current);
		on_device_frames[i] = bytes;
	}

	// LibTorch's caching host allocator keeps the pinned block until the copy that reads it
	// has run, then reuses it for a later batch.
	torch::Tensor staging;
	uint8_t *host = nullptr;
	if (plan.gathered > 0) {
		staging = torch::empty({plan.gathered}, torch::TensorOptions().dtype(torch::kByte).pinned_memory(true));
		host = staging.data_ptr<uint8_t>();
	}
	auto on_device = torch::empty({plan.total}, torch::TensorOptions().dtype(torch::kByte).device(device));
	const uint8_t *dev = on_device.data_ptr<uint8_t>();
	auto device_base = [&](size_t i) {
		return plan.frames[i].source == Source::OnDevice
			       ? static_cast<const uint8_t *>(on_device_frames[i].data_ptr())
			       : dev + plan.frames[i].block_offset;
	};
	const auto [max_h, max_w] = padded_batch_size(config, out.image_sizes);
	out.batch = torch::empty({(int64_t)frames.size(), 3, max_h, max_w},
				 torch::TensorOptions().dtype(dtype).device(device));

	// The CPU path normalises with the mean and std as tensors of the image's dtype (float).
	const float mean[3] = {(float)config.image_mean[0], (float)config.image_mean[1], (float)config.image_mean[2]};
	const float std_[3] = {(float)config.image_std[0], (float)config.image_std[1], (float)config.image_std[2]};
	const auto stream = current.stream();
	const int64_t image_elements = 3 * max_h * max_w;
	const size_t element = dtype == torch::kHalf ? 2 : 4;
	// Frame by frame: gather its bytes into the pinned buffer, queue their copy to the device and
	// the frame's kernel, then gather the next frame while the copy engine moves this one. The
	// caching host allocator must see that each copy reads its block: LibTorch before 2.1 finds
	// the block by the copy's address only, so that a copy of a slice goes unrecorded (and the
	// block could be handed out again while the copy still runs); there everything is gathered
	// first and copied in one piece.
	constexpr bool kCopyPerFrame = TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1);
	double gather_ms = 0;
	auto timed_gather = [&](size_t i) {
		const auto start = std::chrono::steady_clock::now();
		gather(plan.frames[i].planes, host + plan.frames[i].block_offset);
		gather_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
	};
	if (!kCopyPerFrame && plan.gathered > 0) {
		for (size_t i = 0; i < frames.size(); i++)
			if (plan.frames[i].source == Source::Gathered)
				timed_gather(i);
		on_device.narrow(0, 0, plan.gathered).copy_(staging, /*non_blocking=*/true);
	}
	for (size_t i = 0; i < frames.size(); i++) {
		const FrameView &f = frames[i];
		const auto &placed = plan.frames[i];
		if (placed.source == Source::PinnedBlock) {
			// The whole block from its start, so that the caching host allocator of any
			// LibTorch version sees which block the copy reads.
			on_device.narrow(0, placed.block_offset, frame_memory[i].host.numel())
				.copy_(frame_memory[i].host, /*non_blocking=*/true);
		} else if (placed.source == Source::Gathered && kCopyPerFrame) {
			timed_gather(i);
			const int64_t begin = placed.block_offset + placed.planes.front().offset;
			const int64_t end = placed.block_offset + placed.planes.back().offset + placed.planes.back().bytes;
			on_device.narrow(0, begin, end - begin)
				.copy_(staging.narrow(0, begin, end - begin), /*non_blocking=*/true);
		} // else on the device already

		cuda::FrameDesc desc = describe_frame(f);
		for (size_t p = 0; p < placed.planes.size(); p++) {
			desc.planes[p] = device_base(i) + placed.planes[p].offset;
			desc.strides[p] = placed.planes[p].stride;
		}
		desc.transfer_table = device_transfer_table(f.transfer, guard.current_device().index());
		if (desc.primaries != nullptr) {
			// The transfer's light table in the device's copy: at its offset in the host's
			// (describe_frame's pointers), without dereferencing a device address here.
			const std::ptrdiff_t light_offset =
				desc.primaries_light - reinterpret_cast<const float *>(desc.primaries);
			desc.primaries = device_primaries_conversion(f.primaries, guard.current_device().index());
			desc.primaries_light = reinterpret_cast<const float *>(desc.primaries) + light_offset;
		}
		void *image = static_cast<uint8_t *>(out.batch.data_ptr()) + i * image_elements * element;
		const int error = cuda::preprocess_frame(
			desc, mean, std_, out.image_sizes[i].first, out.image_sizes[i].second, image,
			dtype == torch::kHalf ? cuda::Scalar::Half : cuda::Scalar::Float, max_h, max_w, stream);
		if (error != 0)
			throw Error(std::string("frame pre-processing on CUDA failed: ") + cuda::error_string(error));
	}
	out.host_gather_ms = gather_ms;
	return out;
}

} // namespace frcnn::detail

// SPDX-License-Identifier: BSD-3-Clause
// Raw frame bytes to one normalised, resized, padded image of the model's batch, in one launch:
// each output pixel converts its four source taps to RGB, normalises them and blends them
// (preprocess_steps.h, shared with a host emulation that the CPU tests run).
#include "common.cuh"
#include "preprocess_steps.h"

namespace frcnn::cuda {

namespace {

using detail::store;

template<typename S>
__global__ void preprocess_kernel(FrameDesc frame, float3 mean, float3 std_, int64_t resized_height,
				  int64_t resized_width, S *out, int64_t padded_height, int64_t padded_width)
{
	const int64_t plane = padded_height * padded_width;
	for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < plane;
	     index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
		const int64_t x = index % padded_width;
		const int64_t y = index / padded_width;
		if (y >= resized_height || x >= resized_width) {
			store(out + index, 0.0f);
			store(out + plane + index, 0.0f);
			store(out + 2 * plane + index, 0.0f);
			continue;
		}
		const float m[3] = {mean.x, mean.y, mean.z}, d[3] = {std_.x, std_.y, std_.z};
		const steps::Rgb value = steps::resized_pixel(frame, m, d, resized_height, resized_width, y, x);
		store(out + index, value.r);
		store(out + plane + index, value.g);
		store(out + 2 * plane + index, value.b);
	}
}

} // namespace

int preprocess_frame(const FrameDesc &frame, const float mean[3], const float std[3],
		     int64_t resized_height, int64_t resized_width, void *out, Scalar out_scalar,
		     int64_t padded_height, int64_t padded_width, Stream stream)
{
	const int64_t plane = padded_height * padded_width;
	if (plane == 0)
		return 0;
	constexpr int threads = 256;
	const unsigned int blocks = detail::blocks_for(plane, threads);
	auto s = static_cast<cudaStream_t>(stream);
	const float3 m = make_float3(mean[0], mean[1], mean[2]);
	const float3 d = make_float3(std[0], std[1], std[2]);
	if (out_scalar == Scalar::Float)
		preprocess_kernel<float><<<blocks, threads, 0, s>>>(frame, m, d, resized_height, resized_width,
								    static_cast<float *>(out), padded_height,
								    padded_width);
	else if (out_scalar == Scalar::Half)
		preprocess_kernel<__half><<<blocks, threads, 0, s>>>(frame, m, d, resized_height, resized_width,
								     static_cast<__half *>(out), padded_height,
								     padded_width);
	else
		return static_cast<int>(cudaErrorInvalidValue);
	return detail::launch_result();
}

} // namespace frcnn::cuda

// SPDX-License-Identifier: BSD-3-Clause
// RoIAlign forward (one thread per output element) and backward (one thread per gradient
// element, atomic adds into the input gradient). The geometry and the bilinear weights are the
// CPU kernel's (roi_align_steps.h), in float for float and half data, in double for double; the
// file is compiled without fused multiply-adds, as the CPU kernel is.
#include "common.cuh"
#include "../roi_align_steps.h"

namespace frcnn::cuda {

namespace {

using detail::acc_t;
using detail::load;
using detail::store;

using ops::roi_align_steps::bilinear_sample;
using ops::roi_align_steps::RoiGeometry;
using ops::roi_align_steps::Sample;
using ops::roi_align_steps::sample_x;
using ops::roi_align_steps::sample_y;

template<typename T, typename R>
__device__ RoiGeometry<T> geometry(const R *roi, const RoIAlignShape &s)
{
	return ops::roi_align_steps::roi_geometry<T>(roi, static_cast<T>(s.spatial_scale), s.pooled_height,
						     s.pooled_width, s.sampling_ratio, s.aligned);
}

template<typename S, typename R>
__global__ void forward_kernel(const S *input, const R *rois, RoIAlignShape shape, S *output)
{
	using T = acc_t<S>;
	const int64_t total = shape.num_rois * shape.channels * shape.pooled_height * shape.pooled_width;
	const int64_t plane = shape.height * shape.width;
	for (int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; item < total;
	     item += static_cast<int64_t>(blockDim.x) * gridDim.x) {
		// Planar input: consecutive threads take consecutive bins of one channel. Channels-last
		// input: consecutive channels of one bin, so that neighbouring threads read neighbouring
		// values.
		int64_t pw, ph, c, n;
		if (shape.channels_last) {
			c = item % shape.channels;
			pw = (item / shape.channels) % shape.pooled_width;
			ph = (item / shape.channels / shape.pooled_width) % shape.pooled_height;
			n = item / shape.channels / shape.pooled_width / shape.pooled_height;
		} else {
			pw = item % shape.pooled_width;
			ph = (item / shape.pooled_width) % shape.pooled_height;
			c = (item / shape.pooled_width / shape.pooled_height) % shape.channels;
			n = item / shape.pooled_width / shape.pooled_height / shape.channels;
		}
		const int64_t index = ((n * shape.channels + c) * shape.pooled_height + ph) * shape.pooled_width + pw;
		const RoiGeometry<T> g = geometry<T>(rois + n * 5, shape);
		if (g.batch_index < 0 || g.batch_index >= shape.batch_size) {
			store(output + index, T(0));
			continue;
		}
		// Element (y, x) of this channel is at in[(y * width + x) * step].
		const int64_t step = shape.channels_last ? shape.channels : 1;
		const S *in = shape.channels_last ? input + g.batch_index * plane * shape.channels + c
						  : input + (g.batch_index * shape.channels + c) * plane;
		const int64_t per_bin = g.grid_h * g.grid_w;
		const T count = static_cast<T>(per_bin > 1 ? per_bin : 1);
		T value = 0;
		for (int64_t iy = 0; iy < g.grid_h; iy++) {
			const T y = sample_y(g, ph, iy);
			for (int64_t ix = 0; ix < g.grid_w; ix++) {
				const Sample<T> s = bilinear_sample(shape.height, shape.width, y, sample_x(g, pw, ix));
				if (!s.valid)
					continue;
				value += s.w1 * load(in + s.pos1 * step) + s.w2 * load(in + s.pos2 * step) +
					 s.w3 * load(in + s.pos3 * step) + s.w4 * load(in + s.pos4 * step);
			}
		}
		store(output + index, value / count);
	}
}

template<typename T>
__global__ void backward_kernel(const T *grad, const T *rois, RoIAlignShape shape, T *grad_input)
{
	const int64_t total = shape.num_rois * shape.channels * shape.pooled_height * shape.pooled_width;
	const int64_t plane = shape.height * shape.width;
	for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
	     index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
		const int64_t pw = index % shape.pooled_width;
		const int64_t ph = (index / shape.pooled_width) % shape.pooled_height;
		const int64_t c = (index / shape.pooled_width / shape.pooled_height) % shape.channels;
		const int64_t n = index / shape.pooled_width / shape.pooled_height / shape.channels;
		const RoiGeometry<T> g = geometry<T>(rois + n * 5, shape);
		if (g.batch_index < 0 || g.batch_index >= shape.batch_size)
			continue;
		T *gin = grad_input + (g.batch_index * shape.channels + c) * plane;
		const T g_bin = grad[index];
		const T count = static_cast<T>(g.grid_h * g.grid_w);
		for (int64_t iy = 0; iy < g.grid_h; iy++) {
			const T y = sample_y(g, ph, iy);
			for (int64_t ix = 0; ix < g.grid_w; ix++) {
				const Sample<T> s = bilinear_sample(shape.height, shape.width, y, sample_x(g, pw, ix));
				if (!s.valid)
					continue;
				atomicAdd(gin + s.pos1, g_bin * s.w1 / count);
				atomicAdd(gin + s.pos2, g_bin * s.w2 / count);
				atomicAdd(gin + s.pos3, g_bin * s.w3 / count);
				atomicAdd(gin + s.pos4, g_bin * s.w4 / count);
			}
		}
	}
}

constexpr int kThreads = 256;

} // namespace

int roi_align_forward(const void *input, Scalar scalar, const void *rois, Scalar roi_scalar,
		      const RoIAlignShape &shape, void *output, Stream stream)
{
	const int64_t total = shape.num_rois * shape.channels * shape.pooled_height * shape.pooled_width;
	if (total == 0)
		return 0;
	auto s = static_cast<cudaStream_t>(stream);
	const unsigned int blocks = detail::blocks_for(total, kThreads);
	if (scalar == Scalar::Float && roi_scalar == Scalar::Float)
		forward_kernel<float, float><<<blocks, kThreads, 0, s>>>(
			static_cast<const float *>(input), static_cast<const float *>(rois), shape,
			static_cast<float *>(output));
	else if (scalar == Scalar::Double && roi_scalar == Scalar::Double)
		forward_kernel<double, double><<<blocks, kThreads, 0, s>>>(
			static_cast<const double *>(input), static_cast<const double *>(rois), shape,
			static_cast<double *>(output));
	else if (scalar == Scalar::Half && roi_scalar == Scalar::Float)
		forward_kernel<__half, float><<<blocks, kThreads, 0, s>>>(
			static_cast<const __half *>(input), static_cast<const float *>(rois), shape,
			static_cast<__half *>(output));
	else
		return static_cast<int>(cudaErrorInvalidValue);
	return detail::launch_result();
}

int roi_align_backward(const void *grad, Scalar scalar, const void *rois, const RoIAlignShape &shape,
		       void *grad_input, Stream stream)
{
	const int64_t total = shape.num_rois * shape.channels * shape.pooled_height * shape.pooled_width;
	if (total == 0)
		return 0;
	auto s = static_cast<cudaStream_t>(stream);
	const unsigned int blocks = detail::blocks_for(total, kThreads);
	if (scalar == Scalar::Float)
		backward_kernel<float><<<blocks, kThreads, 0, s>>>(
			static_cast<const float *>(grad), static_cast<const float *>(rois), shape,
			static_cast<float *>(grad_input));
	else if (scalar == Scalar::Double)
		backward_kernel<double><<<blocks, kThreads, 0, s>>>(
			static_cast<const double *>(grad), static_cast<const double *>(rois), shape,
			static_cast<double *>(grad_input));
	else
		return static_cast<int>(cudaErrorInvalidValue);
	return detail::launch_result();
}

} // namespace frcnn::cuda

// SPDX-License-Identifier: BSD-3-Clause
// RoIAlign forward (one thread per output element) and backward (one thread per gradient
// element, atomic adds into the input gradient). The geometry follows the CPU kernel operation
// by operation (hence torchvision's), in float for float and half data, in double for double;
// the file is compiled without fused multiply-adds, as the CPU kernel is.
#include "common.cuh"

namespace frcnn::cuda {

namespace {

using detail::acc_t;
using detail::load;
using detail::store;

template<typename T>
struct Geometry {
	int64_t batch_index;
	T start_h, start_w, bin_h, bin_w;
	int64_t grid_h, grid_w;
};

template<typename T, typename R>
__device__ Geometry<T> geometry(const R *roi, const RoIAlignShape &s)
{
	Geometry<T> g;
	g.batch_index = static_cast<int64_t>(static_cast<T>(roi[0]));
	const T scale = static_cast<T>(s.spatial_scale);
	const T offset = s.aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
	g.start_w = static_cast<T>(roi[1]) * scale - offset;
	g.start_h = static_cast<T>(roi[2]) * scale - offset;
	const T end_w = static_cast<T>(roi[3]) * scale - offset;
	const T end_h = static_cast<T>(roi[4]) * scale - offset;
	T roi_width = end_w - g.start_w;
	T roi_height = end_h - g.start_h;
	if (!s.aligned) {
		roi_width = roi_width > T(1) ? roi_width : T(1);
		roi_height = roi_height > T(1) ? roi_height : T(1);
	}
	g.bin_h = roi_height / static_cast<T>(s.pooled_height);
	g.bin_w = roi_width / static_cast<T>(s.pooled_width);
	g.grid_h = s.sampling_ratio > 0 ? s.sampling_ratio
					: static_cast<int64_t>(ceil(roi_height / static_cast<T>(s.pooled_height)));
	g.grid_w = s.sampling_ratio > 0 ? s.sampling_ratio
					: static_cast<int64_t>(ceil(roi_width / static_cast<T>(s.pooled_width)));
	return g;
}

template<typename T>
struct Sample {
	int64_t pos1, pos2, pos3, pos4;
	T w1, w2, w3, w4;
};

// False for a sample more than one pixel outside the map.
template<typename T>
__device__ bool bilinear(int64_t height, int64_t width, T y, T x, Sample<T> &s)
{
	if (y < T(-1.0) || y > static_cast<T>(height) || x < T(-1.0) || x > static_cast<T>(width))
		return false;
	if (y <= T(0))
		y = T(0);
	if (x <= T(0))
		x = T(0);
	int64_t y_low = static_cast<int64_t>(y);
	int64_t x_low = static_cast<int64_t>(x);
	int64_t y_high, x_high;
	if (y_low >= height - 1) {
		y_high = y_low = height - 1;
		y = static_cast<T>(y_low);
	} else {
		y_high = y_low + 1;
	}
	if (x_low >= width - 1) {
		x_high = x_low = width - 1;
		x = static_cast<T>(x_low);
	} else {
		x_high = x_low + 1;
	}
	const T ly = y - static_cast<T>(y_low);
	const T lx = x - static_cast<T>(x_low);
	const T hy = T(1) - ly;
	const T hx = T(1) - lx;
	s.w1 = hy * hx;
	s.w2 = hy * lx;
	s.w3 = ly * hx;
	s.w4 = ly * lx;
	s.pos1 = y_low * width + x_low;
	s.pos2 = y_low * width + x_high;
	s.pos3 = y_high * width + x_low;
	s.pos4 = y_high * width + x_high;
	return true;
}

template<typename T>
__device__ __forceinline__ T sample_y(const Geometry<T> &g, int64_t ph, int64_t iy)
{
	return g.start_h + static_cast<T>(ph) * g.bin_h +
	       static_cast<T>(iy + .5f) * g.bin_h / static_cast<T>(g.grid_h);
}

template<typename T>
__device__ __forceinline__ T sample_x(const Geometry<T> &g, int64_t pw, int64_t ix)
{
	return g.start_w + static_cast<T>(pw) * g.bin_w +
	       static_cast<T>(ix + .5f) * g.bin_w / static_cast<T>(g.grid_w);
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
		const Geometry<T> g = geometry<T>(rois + n * 5, shape);
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
				Sample<T> s;
				if (!bilinear(shape.height, shape.width, y, sample_x(g, pw, ix), s))
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
		const Geometry<T> g = geometry<T>(rois + n * 5, shape);
		if (g.batch_index < 0 || g.batch_index >= shape.batch_size)
			continue;
		T *gin = grad_input + (g.batch_index * shape.channels + c) * plane;
		const T g_bin = grad[index];
		const T count = static_cast<T>(g.grid_h * g.grid_w);
		for (int64_t iy = 0; iy < g.grid_h; iy++) {
			const T y = sample_y(g, ph, iy);
			for (int64_t ix = 0; ix < g.grid_w; ix++) {
				Sample<T> s;
				if (!bilinear(shape.height, shape.width, y, sample_x(g, pw, ix), s))
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

// SPDX-License-Identifier: BSD-3-Clause
// Raw frame bytes to one normalised, resized, padded image of the model's batch, in one launch:
// each output pixel converts its four source taps to RGB, normalises them and blends them.
// The operations are the CPU path's (frame_to_tensor, normalise, bilinear interpolate), in float.
#include "common.cuh"

namespace frcnn::cuda {

namespace {

using detail::store;

struct Rgb {
	float r, g, b;
};

// RGB in 0..1 of pixel (y, x). YUV: in the frame's matrix and range, chroma of the sample that
// covers the pixel (nearest).
__device__ __forceinline__ Rgb pixel(const FrameDesc &f, int64_t y, int64_t x)
{
	if (f.layout == FrameLayout::Packed) {
		const uint8_t *p = f.planes[0] + y * f.strides[0] + x * f.bytes_per_pixel;
		return {static_cast<float>(p[f.rgb_offsets[0]]) / 255.0f,
			static_cast<float>(p[f.rgb_offsets[1]]) / 255.0f,
			static_cast<float>(p[f.rgb_offsets[2]]) / 255.0f};
	}
	const YuvLayout &l = f.yuv;
	const float luma = static_cast<float>(f.planes[0][luma_byte(l, f.strides[0], y, x)]);
	const float u = static_cast<float>(f.planes[l.u_plane][chroma_byte(l, f.strides[l.u_plane], y, x, l.u_offset)]);
	const float v = static_cast<float>(f.planes[l.v_plane][chroma_byte(l, f.strides[l.v_plane], y, x, l.v_offset)]);
	// The CPU path's tensor operations, one rounding each.
	const YuvToRgb &c = f.colours;
	const float yy = __fmul_rn(luma - c.luma_offset, c.luma_scale);
	const float uu = u - 128.0f;
	const float vv = v - 128.0f;
	const float r = __fadd_rn(yy, __fmul_rn(c.red_v, vv));
	const float g = __fsub_rn(__fsub_rn(yy, __fmul_rn(c.green_u, uu)), __fmul_rn(c.green_v, vv));
	const float b = __fadd_rn(yy, __fmul_rn(c.blue_u, uu));
	auto unit = [](float c) { return fminf(fmaxf(c, 0.0f), 255.0f) / 255.0f; };
	return {unit(r), unit(g), unit(b)};
}

// Source index and weights of torch's bilinear upsampling (align_corners = false, no scale
// given): src = scale * (dst + 0.5) - 0.5 clamped at 0, scale = in / out in float.
struct Taps {
	int64_t i0, i1;
	float w0, w1;
};

__device__ __forceinline__ Taps taps(int64_t dst, int64_t in_size, int64_t out_size)
{
	const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
	float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
	if (src < 0.0f)
		src = 0.0f;
	Taps t;
	t.i0 = static_cast<int64_t>(src);
	t.i1 = t.i0 < in_size - 1 ? t.i0 + 1 : t.i0;
	const float lambda = fminf(fmaxf(src - static_cast<float>(t.i0), 0.0f), 1.0f);
	t.w1 = lambda;
	t.w0 = 1.0f - lambda;
	return t;
}

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
		const Taps ty = taps(y, frame.height, resized_height);
		const Taps tx = taps(x, frame.width, resized_width);
		const Rgb p00 = pixel(frame, ty.i0, tx.i0), p01 = pixel(frame, ty.i0, tx.i1);
		const Rgb p10 = pixel(frame, ty.i1, tx.i0), p11 = pixel(frame, ty.i1, tx.i1);
		auto blend = [&](float v00, float v01, float v10, float v11, float m, float s) {
			const float n00 = (v00 - m) / s, n01 = (v01 - m) / s;
			const float n10 = (v10 - m) / s, n11 = (v11 - m) / s;
			return ty.w0 * (tx.w0 * n00 + tx.w1 * n01) + ty.w1 * (tx.w0 * n10 + tx.w1 * n11);
		};
		store(out + index, blend(p00.r, p01.r, p10.r, p11.r, mean.x, std_.x));
		store(out + plane + index, blend(p00.g, p01.g, p10.g, p11.g, mean.y, std_.y));
		store(out + 2 * plane + index, blend(p00.b, p01.b, p10.b, p11.b, mean.z, std_.z));
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

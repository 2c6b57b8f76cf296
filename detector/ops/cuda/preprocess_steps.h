// SPDX-License-Identifier: BSD-3-Clause
// The arithmetic of the CUDA pre-processing kernel (preprocess.cu) for one output pixel, written
// once for the kernel and for a host emulation that a CPU test runs against the CPU path
// (CudaPreprocessingSteps.*), so that the kernel's reading of every pixel format, colorimetry
// and size is checked where there is no GPU. The operations are the CPU path's
// (frame_to_tensor, then normalise, then bilinear interpolate), in float; the colour conversion
// rounds once per operation on both sides, the resizing may be fused into multiply-adds by nvcc
// (so the emulation agrees with the device to rounding there, not to the bit).
#pragma once

#include <cstdint>

#include "../host_device.h"
#include "../transfer.h"
#include "launch.h"

namespace frcnn::cuda::steps {

// a * b, a + b and a - b rounded once each: on the device the intrinsics that nvcc never fuses
// into a multiply-add; on the host plain operations (the tests build without contraction on
// the targets they run on).
FRCNN_HOST_DEVICE inline float mul(float a, float b)
{
#if defined(__CUDA_ARCH__)
	return __fmul_rn(a, b);
#else
	return a * b;
#endif
}

FRCNN_HOST_DEVICE inline float add(float a, float b)
{
#if defined(__CUDA_ARCH__)
	return __fadd_rn(a, b);
#else
	return a + b;
#endif
}

FRCNN_HOST_DEVICE inline float sub(float a, float b)
{
#if defined(__CUDA_ARCH__)
	return __fsub_rn(a, b);
#else
	return a - b;
#endif
}

struct Rgb {
	float r, g, b;
};

// The SDR picture of an HDR frame's signals, a wide-gamut frame's colours in BT.709's primaries
// (transfer.h); SDR BT.709 frames' as they are.
FRCNN_HOST_DEVICE inline Rgb shown_on_sdr(const FrameDesc &f, Rgb signal)
{
	if (f.primaries != nullptr) {
		to_bt709(*f.primaries, f.primaries_light, signal.r, signal.g, signal.b);
		return signal;
	}
	if (f.transfer_table == nullptr)
		return signal;
	return {sdr_signal(f.transfer_table, signal.r), sdr_signal(f.transfer_table, signal.g),
		sdr_signal(f.transfer_table, signal.b)};
}

// RGB in 0..1 of pixel (y, x). YUV: in the frame's matrix and range, chroma of the sample that
// covers the pixel (nearest). HDR video: as SDR.
FRCNN_HOST_DEVICE inline Rgb pixel(const FrameDesc &f, int64_t y, int64_t x)
{
	if (f.layout == FrameLayout::Packed) {
		const uint8_t *p = f.planes[0] + y * f.strides[0] + x * f.bytes_per_pixel;
		return shown_on_sdr(f, {static_cast<float>(p[f.rgb_offsets[0]]) / 255.0f,
					static_cast<float>(p[f.rgb_offsets[1]]) / 255.0f,
					static_cast<float>(p[f.rgb_offsets[2]]) / 255.0f});
	}
	const YuvLayout &l = f.yuv;
	const float luma = static_cast<float>(luma_value(l, f.planes[0], f.strides[0], y, x));
	const float u = static_cast<float>(chroma_value(l, f.planes[l.u_plane], f.strides[l.u_plane], y, x, l.u_offset));
	const float v = static_cast<float>(chroma_value(l, f.planes[l.v_plane], f.strides[l.v_plane], y, x, l.v_offset));
	// The CPU path's tensor operations, one rounding each.
	const YuvToRgb &c = f.colours;
	const float yy = mul(sub(luma, c.luma_offset), c.luma_scale);
	const float uu = sub(u, c.chroma_offset);
	const float vv = sub(v, c.chroma_offset);
	const float r = add(yy, mul(c.red_v, vv));
	const float g = sub(sub(yy, mul(c.green_u, uu)), mul(c.green_v, vv));
	const float b = add(yy, mul(c.blue_u, uu));
	auto unit = [](float value) { return (value < 0.0f ? 0.0f : value > 255.0f ? 255.0f : value) / 255.0f; };
	return shown_on_sdr(f, {unit(r), unit(g), unit(b)});
}

// Source index and weights of torch's bilinear upsampling (align_corners = false, no scale
// given): src = scale * (dst + 0.5) - 0.5 clamped at 0, scale = in / out in float.
struct Taps {
	int64_t i0, i1;
	float w0, w1;
};

FRCNN_HOST_DEVICE inline Taps taps(int64_t dst, int64_t in_size, int64_t out_size)
{
	const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
	float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
	if (src < 0.0f)
		src = 0.0f;
	Taps t;
	t.i0 = static_cast<int64_t>(src);
	t.i1 = t.i0 < in_size - 1 ? t.i0 + 1 : t.i0;
	float lambda = src - static_cast<float>(t.i0);
	lambda = lambda < 0.0f ? 0.0f : lambda > 1.0f ? 1.0f : lambda;
	t.w1 = lambda;
	t.w0 = 1.0f - lambda;
	return t;
}

// The normalised, resized value of output pixel (y, x) of the image (inside its resized_height
// x resized_width part; the rest is padding, 0): R, G and B.
FRCNN_HOST_DEVICE inline Rgb resized_pixel(const FrameDesc &frame, const float mean[3], const float std[3],
					   int64_t resized_height, int64_t resized_width, int64_t y, int64_t x)
{
	const Taps ty = taps(y, frame.height, resized_height);
	const Taps tx = taps(x, frame.width, resized_width);
	const Rgb p00 = pixel(frame, ty.i0, tx.i0), p01 = pixel(frame, ty.i0, tx.i1);
	const Rgb p10 = pixel(frame, ty.i1, tx.i0), p11 = pixel(frame, ty.i1, tx.i1);
	auto blend = [&](float v00, float v01, float v10, float v11, float m, float s) {
		const float n00 = (v00 - m) / s, n01 = (v01 - m) / s;
		const float n10 = (v10 - m) / s, n11 = (v11 - m) / s;
		return ty.w0 * (tx.w0 * n00 + tx.w1 * n01) + ty.w1 * (tx.w0 * n10 + tx.w1 * n11);
	};
	return {blend(p00.r, p01.r, p10.r, p11.r, mean[0], std[0]), blend(p00.g, p01.g, p10.g, p11.g, mean[1], std[1]),
		blend(p00.b, p01.b, p10.b, p11.b, mean[2], std[2])};
}

} // namespace frcnn::cuda::steps

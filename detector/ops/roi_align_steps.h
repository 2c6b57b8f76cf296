// SPDX-License-Identifier: BSD-3-Clause
// The arithmetic of RoIAlign that the CPU kernel (cpu/roi_align_kernel.cpp) and the CUDA kernels
// (cuda/roi_align.cu) share: where a RoI's bins and samples lie, and the bilinear weights of a
// sample. It follows torchvision's CPU kernel operation by operation, so that float and double
// results agree with it to the last bit; both kernels are built without fused multiply-adds.
// T is the arithmetic type: float for float and half data, double for double.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace frcnn::ops::roi_align_steps {

// One RoI in feature-map coordinates.
template<typename T>
struct RoiGeometry {
	int64_t batch_index;
	T start_h, start_w;
	T bin_h, bin_w;
	int64_t grid_h, grid_w; // samples per bin along each axis
};

// Rounds up to an integer: ceil is exact, so the float and double forms agree.
template<typename T>
FRCNN_HOST_DEVICE inline int64_t ceil_to_int(T value)
{
#if defined(__CUDA_ARCH__)
	return static_cast<int64_t>(ceil(value));
#else
	return static_cast<int64_t>(std::ceil(value));
#endif
}

// roi: (batch index, x1, y1, x2, y2) in image coordinates.
template<typename T, typename R>
FRCNN_HOST_DEVICE inline RoiGeometry<T> roi_geometry(const R *roi, T spatial_scale, int64_t pooled_height,
						     int64_t pooled_width, int64_t sampling_ratio, bool aligned)
{
	RoiGeometry<T> g;
	// A batch index that is no number (NaN, infinite) is no image's: -1, which the CUDA kernels
	// pool as zeros, as an index out of range (converted, NaN would be image 0 there). The CPU
	// refuses both before.
	const T batch = static_cast<T>(roi[0]);
	g.batch_index = batch - batch == static_cast<T>(0) ? static_cast<int64_t>(batch) : -1;

	// aligned=true shifts by half a pixel so that box corners fall on pixel borders.
	const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
	g.start_w = static_cast<T>(roi[1]) * spatial_scale - offset;
	g.start_h = static_cast<T>(roi[2]) * spatial_scale - offset;
	const T end_w = static_cast<T>(roi[3]) * spatial_scale - offset;
	const T end_h = static_cast<T>(roi[4]) * spatial_scale - offset;

	T roi_width = end_w - g.start_w;
	T roi_height = end_h - g.start_h;
	if (!aligned) {
		// The legacy version forces malformed RoIs to be at least 1x1.
		roi_width = roi_width < static_cast<T>(1.) ? static_cast<T>(1.) : roi_width;
		roi_height = roi_height < static_cast<T>(1.) ? static_cast<T>(1.) : roi_height;
	}

	g.bin_h = roi_height / static_cast<T>(pooled_height);
	g.bin_w = roi_width / static_cast<T>(pooled_width);
	// sampling_ratio <= 0 is adaptive: about one sample per input pixel along each axis.
	g.grid_h = sampling_ratio > 0 ? sampling_ratio : ceil_to_int(roi_height / static_cast<T>(pooled_height));
	g.grid_w = sampling_ratio > 0 ? sampling_ratio : ceil_to_int(roi_width / static_cast<T>(pooled_width));
	return g;
}

// Where sample (iy, ix) of bin (ph, pw) lies.
template<typename T>
FRCNN_HOST_DEVICE inline T sample_y(const RoiGeometry<T> &g, int64_t ph, int64_t iy)
{
	return g.start_h + static_cast<T>(ph) * g.bin_h + static_cast<T>(iy + .5f) * g.bin_h / static_cast<T>(g.grid_h);
}

template<typename T>
FRCNN_HOST_DEVICE inline T sample_x(const RoiGeometry<T> &g, int64_t pw, int64_t ix)
{
	return g.start_w + static_cast<T>(pw) * g.bin_w + static_cast<T>(ix + .5f) * g.bin_w / static_cast<T>(g.grid_w);
}

// One bilinear sample: four input offsets within a (height x width) plane and their weights.
// A sample outside the map (beyond one pixel of the border) has valid == false.
template<typename T>
struct Sample {
	int64_t pos1, pos2, pos3, pos4;
	T w1, w2, w3, w4;
	bool valid;
};

template<typename T>
FRCNN_HOST_DEVICE inline Sample<T> bilinear_sample(int64_t height, int64_t width, T y, T x)
{
	Sample<T> s{};
	if (y < static_cast<T>(-1.0) || y > static_cast<T>(height) || x < static_cast<T>(-1.0) ||
	    x > static_cast<T>(width)) {
		s.valid = false;
		return s;
	}
	s.valid = true;

	if (y <= static_cast<T>(0))
		y = static_cast<T>(0);
	if (x <= static_cast<T>(0))
		x = static_cast<T>(0);

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
	const T hy = static_cast<T>(1.) - ly;
	const T hx = static_cast<T>(1.) - lx;
	s.w1 = hy * hx;
	s.w2 = hy * lx;
	s.w3 = ly * hx;
	s.w4 = ly * lx;
	s.pos1 = y_low * width + x_low;
	s.pos2 = y_low * width + x_high;
	s.pos3 = y_high * width + x_low;
	s.pos4 = y_high * width + x_high;
	return s;
}

} // namespace frcnn::ops::roi_align_steps

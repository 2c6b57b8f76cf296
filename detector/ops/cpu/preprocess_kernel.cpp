// SPDX-License-Identifier: BSD-3-Clause
// Raw frame bytes to the frame's normalised float image on the CPU, in one pass over the frame:
// the operations of frame_to_tensor and of the normalisation, one rounding each and in the same
// order, so that the image has the same bits, without the dozen frame-sized float tensors those
// operators make and free at every frame (chroma upsampled, each step of the colour conversion).
// Built without fused multiply-adds (see ../meson.build), like the operators it follows.
#include <algorithm>
#include <array>

#include <ATen/Parallel.h>

#include "../kernels.h"
#include "frcnn/frame.h"

namespace frcnn::ops::detail {

namespace {

// Rows of one frame as three planes of normalised R, G and B.
class RowConverter {
public:
	RowConverter(const FrameView &frame, const float mean[3], const float std[3])
		: frame_(frame), bytes_per_pixel_(packed_bytes_per_pixel(frame.format)),
		  mean_{mean[0], mean[1], mean[2]}, std_{std[0], std[1], std[2]}
	{
		if (bytes_per_pixel_ > 0)
			offsets_ = packed_rgb_offsets(frame.format);
	}

	void convert(int64_t y, float *r, float *g, float *b) const
	{
		const int64_t width = frame_.width;
		if (bytes_per_pixel_ > 0) {
			const uint8_t *p = frame_.planes[0] + y * frame_.strides[0];
			for (int64_t x = 0; x < width; x++, p += bytes_per_pixel_) {
				// frame_to_tensor's to(float) and div_(255), then (image - mean) / std.
				r[x] = (static_cast<float>(p[offsets_[0]]) / 255.0f - mean_[0]) / std_[0];
				g[x] = (static_cast<float>(p[offsets_[1]]) / 255.0f - mean_[1]) / std_[1];
				b[x] = (static_cast<float>(p[offsets_[2]]) / 255.0f - mean_[2]) / std_[2];
			}
			return;
		}
		// BT.601 limited range, chroma of the 2x2 block (nearest), as frame_to_tensor computes it.
		const uint8_t *luma = frame_.planes[0] + y * frame_.strides[0];
		const uint8_t *u_row = frame_.planes[1] + (y / 2) * frame_.strides[1];
		const uint8_t *v_row;
		int64_t chroma_step;
		if (frame_.format == PixelFormat::NV12) {
			v_row = u_row + 1;
			chroma_step = 2;
		} else {
			v_row = frame_.planes[2] + (y / 2) * frame_.strides[2];
			chroma_step = 1;
		}
		auto unit = [](float c) { return std::min(std::max(c, 0.0f), 255.0f) / 255.0f; };
		for (int64_t x = 0; x < width; x++) {
			const float yy = (static_cast<float>(luma[x]) - 16.0f) * 1.164f;
			const float uu = static_cast<float>(u_row[(x / 2) * chroma_step]) - 128.0f;
			const float vv = static_cast<float>(v_row[(x / 2) * chroma_step]) - 128.0f;
			const float red = yy + 1.596f * vv;
			const float green = yy - 0.392f * uu - 0.813f * vv;
			const float blue = yy + 2.017f * uu;
			r[x] = (unit(red) - mean_[0]) / std_[0];
			g[x] = (unit(green) - mean_[1]) / std_[1];
			b[x] = (unit(blue) - mean_[2]) / std_[2];
		}
	}

private:
	const FrameView &frame_;
	int bytes_per_pixel_;
	std::array<int64_t, 3> offsets_{};
	float mean_[3], std_[3];
};

} // namespace

void normalised_frame_cpu(const FrameView &frame, const float mean[3], const float std[3], torch::Tensor &out)
{
	TORCH_CHECK(out.scalar_type() == torch::kFloat && out.is_contiguous() &&
			    out.sizes() == torch::IntArrayRef({3, frame.height, frame.width}),
		    "normalised_frame_cpu: out must be a contiguous float [3, height, width]");
	const int64_t plane = static_cast<int64_t>(frame.height) * frame.width;
	float *data = out.data_ptr<float>();
	const RowConverter converter(frame, mean, std);
	at::parallel_for(0, frame.height, 8, [&](int64_t begin, int64_t end) {
		for (int64_t y = begin; y < end; y++) {
			float *r = data + y * frame.width;
			converter.convert(y, r, r + plane, r + 2 * plane);
		}
	});
}

} // namespace frcnn::ops::detail

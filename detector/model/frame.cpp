// SPDX-License-Identifier: BSD-3-Clause
// Raw video frames (packed RGB variants, NV12, I420) to the float RGB tensors the model takes.
#include <array>
#include <string>

#include "frcnn/error.h"
#include "frcnn/frame.h"

namespace frcnn {

int packed_bytes_per_pixel(PixelFormat format)
{
	switch (format) {
	case PixelFormat::RGB:
	case PixelFormat::BGR:
		return 3;
	case PixelFormat::NV12:
	case PixelFormat::I420:
		return 0;
	default:
		return 4;
	}
}

std::array<int64_t, 3> packed_rgb_offsets(PixelFormat format)
{
	switch (format) {
	case PixelFormat::RGB: return {0, 1, 2};
	case PixelFormat::BGR: return {2, 1, 0};
	case PixelFormat::RGBx: case PixelFormat::RGBA: return {0, 1, 2};
	case PixelFormat::BGRx: case PixelFormat::BGRA: return {2, 1, 0};
	case PixelFormat::xRGB: case PixelFormat::ARGB: return {1, 2, 3};
	case PixelFormat::xBGR: case PixelFormat::ABGR: return {3, 2, 1};
	default: throw Error("not a packed RGB format");
	}
}

std::vector<PlaneExtent> frame_planes(const FrameView &f)
{
	if (f.width < 1 || f.height < 1)
		throw Error("frame size must be positive, got " + std::to_string(f.width) + "x" +
			    std::to_string(f.height));
	const int bpp = packed_bytes_per_pixel(f.format);
	const int64_t cw = (f.width + 1) / 2, ch = (f.height + 1) / 2;
	std::vector<PlaneExtent> planes;
	if (bpp > 0)
		planes = {{f.height, (int64_t)f.width * bpp}};
	else if (f.format == PixelFormat::NV12)
		planes = {{f.height, f.width}, {ch, cw * 2}};
	else
		planes = {{f.height, f.width}, {ch, cw}, {ch, cw}};
	for (size_t i = 0; i < planes.size(); i++) {
		if (f.planes[i] == nullptr)
			throw Error("frame plane " + std::to_string(i) + " is missing");
		if (f.strides[i] < planes[i].row_bytes)
			throw Error("frame plane " + std::to_string(i) + " has a stride of " +
				    std::to_string(f.strides[i]) + " bytes, less than its row of " +
				    std::to_string(planes[i].row_bytes) + " bytes");
	}
	return planes;
}

FrameView crop_frame(const FrameView &frame, int x, int y, int width, int height)
{
	const std::string rectangle = std::to_string(width) + "x" + std::to_string(height) + " at " +
				      std::to_string(x) + "," + std::to_string(y);
	if (width < 1 || height < 1 || x < 0 || y < 0 || x > frame.width - width ||
	    y > frame.height - height)
		throw Error("the rectangle " + rectangle + " does not lie inside the " +
			    std::to_string(frame.width) + "x" + std::to_string(frame.height) + " frame");
	const int bpp = packed_bytes_per_pixel(frame.format);
	if (bpp == 0 && (x % 2 || y % 2))
		throw Error("the rectangle " + rectangle + " of a 4:2:0 frame must start at even " +
			    "coordinates");
	frame_planes(frame);

	FrameView crop = frame;
	crop.width = width;
	crop.height = height;
	if (bpp > 0) {
		crop.planes[0] += (int64_t)y * frame.strides[0] + (int64_t)x * bpp;
		return crop;
	}
	crop.planes[0] += (int64_t)y * frame.strides[0] + x;
	if (frame.format == PixelFormat::NV12) {
		crop.planes[1] += (int64_t)(y / 2) * frame.strides[1] + x; // x / 2 pairs of U and V
	} else {
		crop.planes[1] += (int64_t)(y / 2) * frame.strides[1] + x / 2;
		crop.planes[2] += (int64_t)(y / 2) * frame.strides[2] + x / 2;
	}
	return crop;
}

namespace {

// A plane of a frame that frame_planes() has checked.
torch::Tensor plane(const FrameView &f, int index, int64_t height, int64_t width, int64_t pixel_bytes)
{
	// The data is only borrowed: from_blob does not copy, the caller's conversion below does.
	return torch::from_blob(const_cast<uint8_t *>(f.planes[index]), {height, width, pixel_bytes},
				{f.strides[index], pixel_bytes, 1}, torch::kUInt8);
}

} // namespace

torch::Tensor frame_to_tensor(const FrameView &f)
{
	frame_planes(f);
	const int bpp = packed_bytes_per_pixel(f.format);
	if (bpp > 0) {
		auto px = plane(f, 0, f.height, f.width, bpp);
		auto off = packed_rgb_offsets(f.format);
		auto rgb = torch::stack({px.select(2, off[0]), px.select(2, off[1]), px.select(2, off[2])}, 0);
		return rgb.to(torch::kFloat32).div_(255.0f);
	}

	// YUV, BT.601 limited range (what SD video and most cameras use), chroma by nearest neighbour.
	const int64_t cw = (f.width + 1) / 2, ch = (f.height + 1) / 2;
	auto y = plane(f, 0, f.height, f.width, 1).select(2, 0).to(torch::kFloat32);
	torch::Tensor u, v;
	if (f.format == PixelFormat::NV12) {
		auto uv = plane(f, 1, ch, cw, 2);
		u = uv.select(2, 0);
		v = uv.select(2, 1);
	} else {
		u = plane(f, 1, ch, cw, 1).select(2, 0);
		v = plane(f, 2, ch, cw, 1).select(2, 0);
	}
	using torch::indexing::Slice;
	auto up = [&](const torch::Tensor &c) {
		return c.to(torch::kFloat32)
			.repeat_interleave(2, 0)
			.repeat_interleave(2, 1)
			.index({Slice(0, f.height), Slice(0, f.width)});
	};
	auto yy = (y - 16.0f) * 1.164f;
	auto uu = up(u) - 128.0f;
	auto vv = up(v) - 128.0f;
	auto r = yy + 1.596f * vv;
	auto g = yy - 0.392f * uu - 0.813f * vv;
	auto b = yy + 2.017f * uu;
	return torch::stack({r, g, b}, 0).clamp_(0.0f, 255.0f).div_(255.0f);
}

} // namespace frcnn

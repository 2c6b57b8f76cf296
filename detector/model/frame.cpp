// SPDX-License-Identifier: BSD-3-Clause
// Raw video frames (packed RGB variants, grey, YUV) to the float RGB tensors the model takes.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "../ops/transfer.h"
#include "../ops/yuv_layout.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "parts.h"

namespace frcnn {

int packed_bytes_per_pixel(PixelFormat format)
{
	switch (format) {
	case PixelFormat::RGB:
	case PixelFormat::BGR:
		return 3;
	case PixelFormat::RGBx: case PixelFormat::BGRx: case PixelFormat::xRGB: case PixelFormat::xBGR:
	case PixelFormat::RGBA: case PixelFormat::BGRA: case PixelFormat::ARGB: case PixelFormat::ABGR:
		return 4;
	case PixelFormat::GRAY8:
		return 1;
	default:
		return 0;
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
	case PixelFormat::GRAY8: return {0, 0, 0};
	default: throw Error("not a packed RGB format");
	}
}

YuvLayout yuv_layout(PixelFormat format)
{
	// luma step and offset, U and V planes, U and V offsets, chroma step, x and y shifts
	switch (format) {
	case PixelFormat::NV12: return {1, 0, 1, 1, 0, 1, 2, 1, 1};
	case PixelFormat::NV21: return {1, 0, 1, 1, 1, 0, 2, 1, 1};
	case PixelFormat::I420: return {1, 0, 1, 2, 0, 0, 1, 1, 1};
	case PixelFormat::YV12: return {1, 0, 2, 1, 0, 0, 1, 1, 1};
	case PixelFormat::Y42B: return {1, 0, 1, 2, 0, 0, 1, 1, 0};
	case PixelFormat::Y444: return {1, 0, 1, 2, 0, 0, 1, 0, 0};
	case PixelFormat::YUY2: return {2, 0, 0, 0, 1, 3, 4, 1, 0};
	case PixelFormat::UYVY: return {2, 1, 0, 0, 0, 2, 4, 1, 0};
	case PixelFormat::YVYU: return {2, 0, 0, 0, 3, 1, 4, 1, 0};
	case PixelFormat::VYUY: return {2, 1, 0, 0, 2, 0, 4, 1, 0};
	case PixelFormat::NV16: return {1, 0, 1, 1, 0, 1, 2, 1, 0};
	case PixelFormat::NV61: return {1, 0, 1, 1, 1, 0, 2, 1, 0};
	case PixelFormat::NV24: return {1, 0, 1, 1, 0, 1, 2, 0, 0};
	// then bytes per sample, the sample's shift in its word, bits per sample
	case PixelFormat::P010_10LE: return {2, 0, 1, 1, 0, 2, 4, 1, 1, 2, 6, 10};
	case PixelFormat::I420_10LE: return {2, 0, 1, 2, 0, 0, 2, 1, 1, 2, 0, 10};
	case PixelFormat::I422_10LE: return {2, 0, 1, 2, 0, 0, 2, 1, 0, 2, 0, 10};
	case PixelFormat::Y444_10LE: return {2, 0, 1, 2, 0, 0, 2, 0, 0, 2, 0, 10};
	case PixelFormat::P012_LE: return {2, 0, 1, 1, 0, 2, 4, 1, 1, 2, 4, 12};
	case PixelFormat::I420_12LE: return {2, 0, 1, 2, 0, 0, 2, 1, 1, 2, 0, 12};
	case PixelFormat::I422_12LE: return {2, 0, 1, 2, 0, 0, 2, 1, 0, 2, 0, 12};
	case PixelFormat::Y444_12LE: return {2, 0, 1, 2, 0, 0, 2, 0, 0, 2, 0, 12};
	case PixelFormat::Y210: return {4, 0, 0, 0, 2, 6, 8, 1, 0, 2, 6, 10};
	case PixelFormat::Y212_LE: return {4, 0, 0, 0, 2, 6, 8, 1, 0, 2, 4, 12};
	// UYVY's order, positions in samples, three to a 32-bit word
	case PixelFormat::v210: return {2, 1, 0, 0, 0, 2, 4, 1, 0, 4, 0, 10, false, true};
	// packed 4:4:4 with an alpha byte
	case PixelFormat::AYUV: return {4, 1, 0, 0, 2, 3, 4, 0, 0};
	case PixelFormat::VUYA: return {4, 2, 0, 0, 1, 0, 4, 0, 0};
	// samples of 16 bits
	case PixelFormat::P016_LE: return {2, 0, 1, 1, 0, 2, 4, 1, 1, 2, 0, 16};
	case PixelFormat::Y444_16LE: return {2, 0, 1, 2, 0, 0, 2, 0, 0, 2, 0, 16};
	// packed 4:4:4 with alpha: a pixel's U, Y and V are the three samples of its word (Y410),
	// or its first three 16-bit words (Y412_LE)
	case PixelFormat::Y410: return {3, 1, 0, 0, 0, 2, 3, 0, 0, 4, 0, 10, false, true};
	case PixelFormat::Y412_LE: return {8, 2, 0, 0, 0, 4, 8, 0, 0, 2, 4, 12};
	default: throw Error("not a YUV format");
	}
}

YuvLayout yuv_layout(const FrameView &frame)
{
	YuvLayout layout = yuv_layout(frame.format);
	layout.field_chroma = frame.interlaced && layout.y_shift == 1;
	return layout;
}

// The chroma rows of a frame of `height` rows.
static int64_t chroma_rows(const YuvLayout &layout, int64_t height)
{
	// Interlaced 4:2:0: each field's rows rounded up to whole chroma samples (GStreamer's
	// layout; (height + 1) / 2 would miss the bottom field's last row where height is 4k + 2).
	if (layout.field_chroma)
		return (height + 3) / 4 * 2;
	return (height + (1 << layout.y_shift) - 1) >> layout.y_shift;
}

YuvToRgb yuv_to_rgb(YuvMatrix matrix, bool full_range, int bits)
{
	// The luma weights of red and blue (Kr, Kb) of each standard.
	double kr = 0.299, kb = 0.114;
	if (matrix == YuvMatrix::BT709) {
		kr = 0.2126;
		kb = 0.0722;
	} else if (matrix == YuvMatrix::BT2020) {
		kr = 0.2627;
		kb = 0.0593;
	}
	const double kg = 1.0 - kr - kb;
	// Full range spans all 2^bits - 1 steps; limited range's luma 219 steps of 8 bits and
	// chroma 224, times 2^(bits - 8) in more bits (BT.2100), from an offset scaled alike.
	// Chroma is centred on 2^(bits - 1) either way.
	const double steps = (1 << bits) - 1, more_bits = 1 << (bits - 8);
	const double luma_scale = 255.0 / (full_range ? steps : 219.0 * more_bits);
	const double chroma_scale = 255.0 / (full_range ? steps : 224.0 * more_bits);
	YuvToRgb c;
	c.luma_offset = full_range ? 0.0f : static_cast<float>(16.0 * more_bits);
	c.chroma_offset = static_cast<float>(1 << (bits - 1));
	c.luma_scale = static_cast<float>(luma_scale);
	c.red_v = static_cast<float>(2.0 * (1.0 - kr) * chroma_scale);
	c.green_u = static_cast<float>(2.0 * (1.0 - kb) * kb / kg * chroma_scale);
	c.green_v = static_cast<float>(2.0 * (1.0 - kr) * kr / kg * chroma_scale);
	c.blue_u = static_cast<float>(2.0 * (1.0 - kb) * chroma_scale);
	return c;
}

namespace {

// SMPTE ST 2084 (PQ)'s constants.
constexpr double kPqM1 = 2610.0 / 16384, kPqM2 = 2523.0 / 4096 * 128;
constexpr double kPqC1 = 3424.0 / 4096, kPqC2 = 2413.0 / 4096 * 32, kPqC3 = 2392.0 / 4096 * 32;
// ARIB STD-B67 (HLG)'s, and the display HLG is shown on: 1000 cd/m2, system gamma 1.2.
constexpr double kHlgA = 0.17883277, kHlgB = 1.0 - 4.0 * kHlgA;
const double kHlgC = 0.5 - kHlgA * std::log(4.0 * kHlgA);
constexpr double kHlgPeak = 1000.0, kHlgGamma = 1.2;
// BT.2408's reference white (SDR white in HDR video), the share of it above which highlights are
// compressed, and the SDR display's gamma (BT.1886).
constexpr double kReferenceWhite = 203.0, kKnee = 0.75, kSdrGamma = 2.4;

// Light in cd/m2 of a PQ signal (SMPTE ST 2084's EOTF).
double pq_light(double signal)
{
	const double power = std::pow(signal, 1.0 / kPqM2);
	return 10000.0 * std::pow(std::max(power - kPqC1, 0.0) / (kPqC2 - kPqC3 * power), 1.0 / kPqM1);
}

double pq_signal(double light)
{
	const double y = std::pow(std::clamp(light / 10000.0, 0.0, 1.0), kPqM1);
	return std::pow((kPqC1 + kPqC2 * y) / (1.0 + kPqC3 * y), kPqM2);
}

// Light in cd/m2 of an HLG signal on its display: the inverse of ARIB STD-B67's OETF, then
// BT.2100's system gamma, on the channel alone.
double hlg_light(double signal)
{
	const double scene = signal <= 0.5 ? signal * signal / 3.0 : (std::exp((signal - kHlgC) / kHlgA) + kHlgB) / 12.0;
	return kHlgPeak * std::pow(scene, kHlgGamma);
}

double hlg_signal(double light)
{
	const double scene = std::pow(std::clamp(light / kHlgPeak, 0.0, 1.0), 1.0 / kHlgGamma);
	return scene <= 1.0 / 12.0 ? std::sqrt(3.0 * scene) : kHlgA * std::log(12.0 * scene - kHlgB) + kHlgC;
}

// The light an SDR display shows for `light` (cd/m2), relative to its white: relative to
// BT.2408's reference white, as it is up to kKnee of it and compressed above (slope 1 at the
// knee, towards 1).
double sdr_light_of_light(double light)
{
	double relative = light / kReferenceWhite;
	if (relative > kKnee)
		relative = kKnee + (1.0 - kKnee) * (1.0 - std::exp(-(relative - kKnee) / (1.0 - kKnee)));
	return relative;
}

// The SDR signal that shows `light` (cd/m2): sdr_light_of_light, then BT.1886's inverse.
double sdr_signal_of_light(double light)
{
	return std::pow(sdr_light_of_light(light), 1.0 / kSdrGamma);
}

// The light of an SDR signal put into HDR video as BT.2408 puts SDR content (and graphics):
// BT.1886's display light, its white at the reference white.
double light_of_sdr_signal(double signal)
{
	return std::pow(std::clamp(signal, 0.0, 1.0), kSdrGamma) * kReferenceWhite;
}

using TransferTable = std::array<float, kTransferIntervals + 1>;

TransferTable make_transfer_table(double (*light)(double))
{
	TransferTable table;
	for (int i = 0; i <= kTransferIntervals; i++)
		table[i] = static_cast<float>(sdr_signal_of_light(light(static_cast<double>(i) / kTransferIntervals)));
	return table;
}

// Colour primaries: the chromaticities (x, y) of red, green, blue and the white point.
struct Chromaticities {
	double red[2], green[2], blue[2], white[2];
};

constexpr Chromaticities kBt709{{0.640, 0.330}, {0.300, 0.600}, {0.150, 0.060}, {0.3127, 0.3290}};
constexpr Chromaticities kBt2020{{0.708, 0.292}, {0.170, 0.797}, {0.131, 0.046}, {0.3127, 0.3290}};
constexpr Chromaticities kDisplayP3{{0.680, 0.320}, {0.265, 0.690}, {0.150, 0.060}, {0.3127, 0.3290}};

using Matrix3 = std::array<std::array<double, 3>, 3>;

Matrix3 product(const Matrix3 &a, const Matrix3 &b)
{
	Matrix3 p{};
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			for (int k = 0; k < 3; k++)
				p[i][j] += a[i][k] * b[k][j];
	return p;
}

Matrix3 inverse(const Matrix3 &m)
{
	Matrix3 inv{};
	const double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
			   m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
			   m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			// The cofactor of (j, i), by the cyclic order of the other rows and columns.
			const int r0 = (j + 1) % 3, r1 = (j + 2) % 3, c0 = (i + 1) % 3, c1 = (i + 2) % 3;
			inv[i][j] = (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / det;
		}
	return inv;
}

// XYZ of linear RGB in these primaries (SMPTE RP 177's normalised primary matrix): the primaries'
// XYZ (Y = 1) as columns, each scaled so that R = G = B = 1 is the white point at Y = 1.
Matrix3 rgb_to_xyz(const Chromaticities &c)
{
	auto xyz = [](const double xy[2]) {
		return std::array<double, 3>{xy[0] / xy[1], 1.0, (1.0 - xy[0] - xy[1]) / xy[1]};
	};
	const std::array<double, 3> r = xyz(c.red), g = xyz(c.green), b = xyz(c.blue), w = xyz(c.white);
	const Matrix3 primaries{{{r[0], g[0], b[0]}, {r[1], g[1], b[1]}, {r[2], g[2], b[2]}}};
	const Matrix3 inv = inverse(primaries);
	Matrix3 npm{};
	for (int j = 0; j < 3; j++) {
		const double scale = inv[j][0] * w[0] + inv[j][1] * w[1] + inv[j][2] * w[2];
		for (int i = 0; i < 3; i++)
			npm[i][j] = primaries[i][j] * scale;
	}
	return npm;
}

const Chromaticities *chromaticities(ColourPrimaries primaries)
{
	switch (primaries) {
	case ColourPrimaries::BT2020: return &kBt2020;
	case ColourPrimaries::DisplayP3: return &kDisplayP3;
	default: return nullptr;
	}
}

// Linear BT.709 light of linear light in `primaries` (the same white).
Matrix3 to_bt709_matrix(const Chromaticities &primaries)
{
	return product(inverse(rgb_to_xyz(kBt709)), rgb_to_xyz(primaries));
}

PrimariesConversion make_primaries_conversion(const Chromaticities &primaries)
{
	PrimariesConversion conversion;
	const Matrix3 matrix = to_bt709_matrix(primaries);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			conversion.matrix[i][j] = static_cast<float>(matrix[i][j]);
	for (int i = 0; i <= kTransferIntervals; i++) {
		const double x = static_cast<double>(i) / kTransferIntervals;
		conversion.light[static_cast<int>(TransferFunction::SDR)][i] = static_cast<float>(std::pow(x, kSdrGamma));
		conversion.light[static_cast<int>(TransferFunction::PQ)][i] = static_cast<float>(sdr_light_of_light(pq_light(x)));
		conversion.light[static_cast<int>(TransferFunction::HLG)][i] = static_cast<float>(sdr_light_of_light(hlg_light(x)));
		conversion.signal[i] = static_cast<float>(std::pow(x * x, 1.0 / kSdrGamma));
	}
	return conversion;
}

} // namespace

const PrimariesConversion *primaries_conversion(ColourPrimaries primaries)
{
	static const PrimariesConversion bt2020 = make_primaries_conversion(kBt2020);
	static const PrimariesConversion display_p3 = make_primaries_conversion(kDisplayP3);
	switch (primaries) {
	case ColourPrimaries::BT2020: return &bt2020;
	case ColourPrimaries::DisplayP3: return &display_p3;
	default: return nullptr;
	}
}

std::array<double, 3> signals_in_primaries(ColourPrimaries primaries, const std::array<double, 3> &bt709_signals)
{
	const Chromaticities *target = chromaticities(primaries);
	if (target == nullptr)
		return bt709_signals;
	const Matrix3 from_bt709 = inverse(to_bt709_matrix(*target));
	std::array<double, 3> light, signals;
	for (int c = 0; c < 3; c++)
		light[c] = std::pow(std::clamp(bt709_signals[c], 0.0, 1.0), kSdrGamma);
	for (int c = 0; c < 3; c++) {
		const double mixed = from_bt709[c][0] * light[0] + from_bt709[c][1] * light[1] + from_bt709[c][2] * light[2];
		signals[c] = std::pow(std::clamp(mixed, 0.0, 1.0), 1.0 / kSdrGamma);
	}
	return signals;
}

const float *sdr_table(TransferFunction transfer)
{
	static const TransferTable pq = make_transfer_table(pq_light);
	static const TransferTable hlg = make_transfer_table(hlg_light);
	switch (transfer) {
	case TransferFunction::PQ: return pq.data();
	case TransferFunction::HLG: return hlg.data();
	default: return nullptr;
	}
}

double hdr_signal(TransferFunction transfer, double sdr_signal)
{
	switch (transfer) {
	case TransferFunction::PQ: return pq_signal(light_of_sdr_signal(sdr_signal));
	case TransferFunction::HLG: return hlg_signal(light_of_sdr_signal(sdr_signal));
	default: return std::clamp(sdr_signal, 0.0, 1.0);
	}
}

int rectangle_column_step(PixelFormat format)
{
	if (packed_bytes_per_pixel(format) > 0)
		return 1;
	const YuvLayout layout = yuv_layout(format);
	// A rectangle starts on a chroma sample's first pixel and, where samples lie three to a word,
	// on a word's first sample: v210's 6 pixels fill 4 words, Y410's one pixel one word.
	int step = 1 << layout.x_shift;
	if (layout.word_triplets)
		while ((step * layout.luma_step) % 3 != 0)
			step += 1 << layout.x_shift;
	return step;
}

bool chroma_needs_even_y(PixelFormat format)
{
	return packed_bytes_per_pixel(format) == 0 && yuv_layout(format).y_shift > 0;
}

int rectangle_row_step(PixelFormat format, bool interlaced)
{
	if (!chroma_needs_even_y(format))
		return 1;
	return interlaced ? 4 : 2;
}

std::vector<PlaneExtent> frame_planes(const FrameView &f)
{
	if (f.width < 1 || f.height < 1)
		throw Error("frame size must be positive, got " + std::to_string(f.width) + "x" +
			    std::to_string(f.height));
	if (f.pixel_aspect_ratio.numerator < 1 || f.pixel_aspect_ratio.denominator < 1)
		throw Error("the pixel aspect ratio must be positive, got " +
			    std::to_string(f.pixel_aspect_ratio.numerator) + ":" +
			    std::to_string(f.pixel_aspect_ratio.denominator));
	const int bpp = packed_bytes_per_pixel(f.format);
	std::vector<PlaneExtent> planes;
	if (bpp > 0) {
		planes = {{f.height, (int64_t)f.width * bpp}};
	} else {
		// Each plane spans the rows and the bytes of the samples it holds.
		const YuvLayout layout = yuv_layout(f);
		auto holds = [&planes, &layout](int plane, int64_t rows, int64_t samples, int64_t step, int64_t offset) {
			if (planes.size() <= static_cast<size_t>(plane))
				planes.resize(plane + 1, PlaneExtent{0, 0});
			planes[plane].rows = std::max(planes[plane].rows, rows);
			planes[plane].row_bytes =
				std::max(planes[plane].row_bytes, row_bytes_through(layout, (samples - 1) * step + offset));
		};
		const int64_t chroma_width = ((int64_t)f.width + (1 << layout.x_shift) - 1) >> layout.x_shift;
		const int64_t chroma_height = chroma_rows(layout, f.height);
		holds(0, f.height, f.width, layout.luma_step, layout.luma_offset);
		holds(layout.u_plane, chroma_height, chroma_width, layout.chroma_step, layout.u_offset);
		holds(layout.v_plane, chroma_height, chroma_width, layout.chroma_step, layout.v_offset);
	}
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
	const bool even_y = chroma_needs_even_y(frame.format);
	const int column_step = rectangle_column_step(frame.format);
	const int row_step = rectangle_row_step(frame.format, frame.interlaced);
	if (x % column_step || y % row_step)
		throw Error("the rectangle " + rectangle + " of a " +
			    (column_step == 6    ? "v210"
			     : row_step == 4 ? "4:2:0 interlaced"
			     : even_y	     ? "4:2:0"
					     : "4:2:2") +
			    " frame must start at " +
			    (column_step == 6    ? "an x that is a multiple of 6"
			     : row_step == 4 ? "an even x and a y that is a multiple of 4"
			     : even_y	     ? "even coordinates"
					     : "an even x"));
	frame_planes(frame);

	FrameView crop = frame;
	crop.width = width;
	crop.height = height;
	const int bpp = packed_bytes_per_pixel(frame.format);
	if (bpp > 0) {
		crop.planes[0] += (int64_t)y * frame.strides[0] + (int64_t)x * bpp;
		return crop;
	}
	// The rectangle's first pixel is the first of a chroma sample: each plane's first byte moves
	// to the bytes of that pixel (in packed 4:2:2, luma and chroma agree on it).
	const YuvLayout layout = yuv_layout(frame);
	crop.planes[0] += y * static_cast<int64_t>(frame.strides[0]) +
			  position_byte(layout, luma_position(layout, x) - layout.luma_offset);
	for (int p = 1; p < 3; p++)
		if (p == layout.u_plane || p == layout.v_plane)
			crop.planes[p] += chroma_row(layout, y) * static_cast<int64_t>(frame.strides[p]) +
					  position_byte(layout, chroma_position(layout, x, 0));
	return crop;
}

namespace detail {

cuda::FrameDesc describe_frame(const FrameView &f)
{
	cuda::FrameDesc desc{};
	desc.width = f.width;
	desc.height = f.height;
	for (int p = 0; p < 3; p++) {
		desc.planes[p] = f.planes[p];
		desc.strides[p] = f.strides[p];
	}
	const int bpp = packed_bytes_per_pixel(f.format);
	if (bpp > 0) {
		desc.layout = cuda::FrameLayout::Packed;
		desc.bytes_per_pixel = bpp;
		const auto offsets = packed_rgb_offsets(f.format);
		for (int c = 0; c < 3; c++)
			desc.rgb_offsets[c] = static_cast<int>(offsets[c]);
	} else {
		desc.layout = cuda::FrameLayout::Yuv;
		desc.yuv = yuv_layout(f);
		desc.colours = yuv_to_rgb(f.matrix, f.full_range, desc.yuv.bits);
	}
	// The host's tables; transform_frames_cuda puts the device's.
	desc.transfer_table = sdr_table(f.transfer);
	desc.primaries = primaries_conversion(f.primaries);
	desc.primaries_light = desc.primaries == nullptr ? nullptr : desc.primaries->light[static_cast<int>(f.transfer)];
	return desc;
}

} // namespace detail

namespace {

// interpolated() of a table (kTransferIntervals + 1 points) on each value, in tensor operations.
torch::Tensor interpolated(const float *table, const torch::Tensor &x)
{
	const auto values = torch::from_blob(const_cast<float *>(table), {kTransferIntervals + 1}, torch::kFloat32);
	const auto position = x * static_cast<float>(kTransferIntervals);
	const auto index = position.to(torch::kInt64).clamp_max_(kTransferIntervals - 1);
	const auto fraction = position - index.to(torch::kFloat32);
	const auto low = values.index({index}), high = values.index({index + 1});
	return low + fraction * (high - low);
}

// The signals (0..1, [3, H, W]) of a frame as an SDR display shows them in BT.709: a wide-gamut
// frame's by to_bt709(), an HDR frame's by sdr_signal() on each, in tensor operations.
torch::Tensor to_sdr(const torch::Tensor &signal, const FrameView &f)
{
	const PrimariesConversion *conversion = primaries_conversion(f.primaries);
	if (conversion == nullptr) {
		const float *table = sdr_table(f.transfer);
		return table == nullptr ? signal : interpolated(table, signal);
	}
	const auto light = interpolated(conversion->light[static_cast<int>(f.transfer)], signal);
	std::vector<torch::Tensor> channels;
	for (int c = 0; c < 3; c++) {
		const float *row = conversion->matrix[c];
		const auto mixed = (light[0] * row[0] + light[1] * row[1]) + light[2] * row[2];
		channels.push_back(interpolated(conversion->signal, mixed.clamp(0.0f, 1.0f).sqrt()));
	}
	return torch::stack(channels, 0);
}

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
		return to_sdr(rgb.to(torch::kFloat32).div_(255.0f), f);
	}

	// YUV in the frame's matrix and range, chroma by nearest neighbour.
	const YuvLayout layout = yuv_layout(f);
	const YuvToRgb c = yuv_to_rgb(f.matrix, f.full_range, layout.bits);
	const int64_t cw = ((int64_t)f.width + (1 << layout.x_shift) - 1) >> layout.x_shift;
	const int64_t ch = chroma_rows(layout, f.height);
	auto bytes = [&](int index, int64_t offset, int64_t height, int64_t width, int64_t step) {
		// Borrowed, as plane() above.
		return torch::from_blob(const_cast<uint8_t *>(f.planes[index]) + offset, {height, width},
					{f.strides[index], step}, torch::kUInt8);
	};
	// The samples' values as floats: bytes, or little-endian words' bits.
	auto samples = [&](int index, int64_t offset, int64_t height, int64_t width, int64_t step) {
		if (layout.word_triplets) {
			// The row's words, each split into its three samples, in order.
			const int64_t words = row_bytes_through(layout, (width - 1) * step + offset) / 4;
			auto word = torch::zeros({height, words}, torch::kInt64);
			for (int byte = 0; byte < 4; byte++)
				word.add_(bytes(index, byte, height, words, 4).to(torch::kInt64).mul(int64_t{1} << (8 * byte)));
			const auto row = torch::stack({word.bitwise_and(0x3ff), word.bitwise_right_shift(10).bitwise_and_(0x3ff),
						       word.bitwise_right_shift(20).bitwise_and_(0x3ff)},
						      2)
						 .reshape({height, words * 3});
			using torch::indexing::Slice;
			return row.index({Slice(), Slice(offset, offset + (width - 1) * step + 1, step)}).to(torch::kFloat32);
		}
		if (layout.sample_bytes == 1)
			return bytes(index, offset, height, width, step).to(torch::kFloat32);
		const auto low = bytes(index, offset, height, width, step).to(torch::kInt32);
		const auto high = bytes(index, offset + 1, height, width, step).to(torch::kInt32);
		return high.mul(256)
			.add_(low)
			.bitwise_right_shift(layout.sample_shift)
			.bitwise_and_((1 << layout.bits) - 1)
			.to(torch::kFloat32);
	};
	auto y = samples(0, layout.luma_offset, f.height, f.width, layout.luma_step);
	const auto u = samples(layout.u_plane, layout.u_offset, ch, cw, layout.chroma_step);
	const auto v = samples(layout.v_plane, layout.v_offset, ch, cw, layout.chroma_step);
	using torch::indexing::Slice;
	// Each row's chroma row (chroma_row(): the row's own field's in field chroma).
	std::vector<int64_t> rows(f.height);
	for (int64_t y = 0; y < f.height; y++)
		rows[y] = chroma_row(layout, y);
	const auto row_index = torch::tensor(rows, torch::kInt64);
	auto up = [&](const torch::Tensor &c) {
		return c.index_select(0, row_index)
			.repeat_interleave(1 << layout.x_shift, 1)
			.index({Slice(), Slice(0, f.width)});
	};
	auto yy = (y - c.luma_offset) * c.luma_scale;
	auto uu = up(u) - c.chroma_offset;
	auto vv = up(v) - c.chroma_offset;
	auto r = yy + c.red_v * vv;
	auto g = yy - c.green_u * uu - c.green_v * vv;
	auto b = yy + c.blue_u * uu;
	return to_sdr(torch::stack({r, g, b}, 0).clamp_(0.0f, 255.0f).div_(255.0f), f);
}

} // namespace frcnn

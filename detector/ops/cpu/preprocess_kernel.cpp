// SPDX-License-Identifier: BSD-3-Clause
// Raw frame bytes to the frame's normalised float image on the CPU, in one pass over the frame:
// the operations of frame_to_tensor and of the normalisation, one rounding each and in the same
// order, so that the image has the same bits, without the dozen frame-sized float tensors those
// operators make and free at every frame (chroma upsampled, each step of the colour conversion).
// Built without fused multiply-adds (see ../meson.build), like the operators it follows.
#include <endian.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include <ATen/Parallel.h>

#include "../kernels.h"
#include "../transfer.h"
#include "../yuv_layout.h"
#include "frcnn/frame.h"

namespace frcnn::ops::detail {

namespace {

// The products of a YUV sample's value in a matrix and range: luma's (value - offset) * scale,
// and each chroma coefficient times (value - offset). One table of them for every value of a
// sample's bits, so that a pixel's lookups need a single base address (the row loop then keeps
// its positions in registers).
struct SampleProducts {
	float luma, red_v, green_u, green_v, blue_u;
};
using YuvProducts = std::vector<SampleProducts>;

// The products of a matrix, range and bit depth, computed at their first frame and kept for the
// process (at most 3 matrices, 2 ranges and 4 depths; 16-bit samples' tables take 0.3 ms to fill,
// a share of a frame's conversion worth saving).
const YuvProducts &yuv_products(YuvMatrix matrix, bool full_range, int bits)
{
	// Never destroyed: a frame converted on another thread while the process exits still
	// reads them.
	static std::mutex &mutex = *new std::mutex;
	static auto &known = *new std::map<std::tuple<YuvMatrix, bool, int>, std::unique_ptr<const YuvProducts>>;
	std::lock_guard<std::mutex> lock(mutex);
	std::unique_ptr<const YuvProducts> &entry = known[{matrix, full_range, bits}];
	if (entry)
		return *entry;
	// The frame's matrix and range, as frame_to_tensor computes them.
	const YuvToRgb c = yuv_to_rgb(matrix, full_range, bits);
	const size_t values = size_t{1} << bits;
	auto products = std::make_unique<YuvProducts>(values);
	for (int v = 0; v < static_cast<int>(values); v++) {
		const float centred = static_cast<float>(v) - c.chroma_offset;
		SampleProducts &p = (*products)[v];
		p.luma = (static_cast<float>(v) - c.luma_offset) * c.luma_scale;
		p.red_v = c.red_v * centred;
		p.green_u = c.green_u * centred;
		p.green_v = c.green_v * centred;
		p.blue_u = c.blue_u * centred;
	}
	entry = std::move(products);
	return *entry;
}

// A frame's rows as three planes of normalised R, G and B. The arithmetic on each sample value
// is done once, into tables of 256 entries (1 << bits for YUV samples of more bits; the same
// operations on the same value give the same bits): a packed format's channel is then one
// lookup (its table made per frame), a YUV sample's products one entry of yuv_products(), so
// that what remains per pixel are the sums and the normalisation, in loops over whole rows that
// the compiler vectorises.
class RowConverter {
public:
	RowConverter(const FrameView &frame, const float mean[3], const float std[3])
		: frame_(frame), bytes_per_pixel_(packed_bytes_per_pixel(frame.format)),
		  mean_{mean[0], mean[1], mean[2]}, std_{std[0], std[1], std[2]}, transfer_table_(sdr_table(frame.transfer)),
		  conversion_(primaries_conversion(frame.primaries)),
		  light_table_(conversion_ == nullptr ? nullptr : conversion_->light[static_cast<int>(frame.transfer)])
	{
		if (bytes_per_pixel_ > 0) {
			offsets_ = packed_rgb_offsets(frame.format);
			for (int v = 0; v < 256; v++)
				// frame_to_tensor's to(float) and div_(255) (an HDR signal then as SDR; a
				// wide-gamut frame's signal as its light).
				byte_values_[v] = by_table(static_cast<float>(v) / 255.0f);
			for (int c = 0; c < 3; c++)
				for (int v = 0; v < 256; v++)
					// Then (image - mean) / std, where the primaries are BT.709's.
					normalised_[c][v] = (byte_values_[v] - mean_[c]) / std_[c];
			return;
		}
		layout_ = yuv_layout(frame);
		products_ = &yuv_products(frame.matrix, frame.full_range, layout_.bits);
	}

	// The memory convert() works in, for one thread's rows.
	struct Scratch {
		// YUV's colours of a row before their clamp; then, for a wide-gamut frame, the square
		// roots of the row's BT.709 light (bt709_root)
		std::vector<float> colours;
		std::vector<uint16_t> samples; // v210: a row's samples, unpacked
		std::vector<float> listed;     // convert_listed(): R, G and B of the listed columns
	};

	Scratch make_scratch(size_t listed_columns) const
	{
		Scratch scratch;
		if (bytes_per_pixel_ == 0 || conversion_ != nullptr)
			scratch.colours.resize(3 * static_cast<size_t>(frame_.width));
		scratch.listed.resize(3 * listed_columns);
		// The words of a row up to the one of its last sample, and no further (the row may end
		// there), three samples each.
		if (layout_.word_triplets)
			scratch.samples.resize(static_cast<size_t>(frame_planes(frame_)[0].row_bytes / 4 * 3));
		return scratch;
	}

	// Row y into the planes' rows r, g and b.
	void convert(int64_t y, float *r, float *g, float *b, Scratch &scratch) const
	{
		convert_columns(y, [](int64_t x) { return x; }, frame_.width, r, g, b, scratch);
	}

	// Only the columns `columns` (ascending) of row y, into those of the planes' rows r, g and
	// b; the others are left as they are.
	void convert_listed(int64_t y, const std::vector<int64_t> &columns, float *r, float *g, float *b,
			    Scratch &scratch) const
	{
		const int64_t count = static_cast<int64_t>(columns.size());
		const int64_t *x = columns.data();
		if (bytes_per_pixel_ > 0 && conversion_ == nullptr) {
			// A lookup per channel: straight into the planes' rows.
			const uint8_t *row = frame_.planes[0] + y * frame_.strides[0];
			for (int64_t i = 0; i < count; i++) {
				const uint8_t *p = row + x[i] * bytes_per_pixel_;
				r[x[i]] = normalised_[0][p[offsets_[0]]];
				g[x[i]] = normalised_[1][p[offsets_[1]]];
				b[x[i]] = normalised_[2][p[offsets_[2]]];
			}
			return;
		}
		float *listed_r = scratch.listed.data(), *listed_g = listed_r + count, *listed_b = listed_r + 2 * count;
		convert_columns(y, [x](int64_t i) { return x[i]; }, count, listed_r, listed_g, listed_b, scratch);
		for (int64_t i = 0; i < count; i++) {
			r[x[i]] = listed_r[i];
			g[x[i]] = listed_g[i];
			b[x[i]] = listed_b[i];
		}
	}

private:
	// The pixels column(0) .. column(count - 1) of row y into r, g and b [count].
	template<typename Column>
	void convert_columns(int64_t y, Column column, int64_t count, float *r, float *g, float *b,
			     Scratch &scratch) const
	{
		if (bytes_per_pixel_ > 0) {
			const uint8_t *row = frame_.planes[0] + y * frame_.strides[0];
			if (conversion_ == nullptr) {
				for (int64_t i = 0; i < count; i++) {
					const uint8_t *p = row + column(i) * bytes_per_pixel_;
					r[i] = normalised_[0][p[offsets_[0]]];
					g[i] = normalised_[1][p[offsets_[1]]];
					b[i] = normalised_[2][p[offsets_[2]]];
				}
				return;
			}
			for (int64_t i = 0; i < count; i++) {
				const uint8_t *p = row + column(i) * bytes_per_pixel_;
				r[i] = byte_values_[p[offsets_[0]]];
				g[i] = byte_values_[p[offsets_[1]]];
				b[i] = byte_values_[p[offsets_[2]]];
			}
			to_bt709_and_normalise(count, r, g, b, scratch);
			return;
		}
		float *red = scratch.colours.data(), *green = red + count, *blue = red + 2 * count;
		if (layout_.word_triplets) {
			// The row's words split into their samples first, in a loop of its own that
			// vectorises, then read as an array (plane 0 holds luma and chroma, one row each).
			const uint8_t *row = frame_.planes[0] + y * frame_.strides[0];
			uint16_t *samples = scratch.samples.data();
			const int64_t words = static_cast<int64_t>(scratch.samples.size()) / 3;
			for (int64_t i = 0; i < words; i++) {
				uint32_t word;
				std::memcpy(&word, row + 4 * i, 4);
				word = le32toh(word);
				samples[3 * i] = static_cast<uint16_t>(word & 0x3ff);
				samples[3 * i + 1] = static_cast<uint16_t>((word >> 10) & 0x3ff);
				samples[3 * i + 2] = static_cast<uint16_t>((word >> 20) & 0x3ff);
			}
			colours(y, column, count,
				[samples](const uint8_t *, int64_t position) { return static_cast<int>(samples[position]); },
				red, green, blue);
		} else if (layout_.sample_bytes == 1)
			colours(y, column, count,
				[](const uint8_t *row, int64_t position) { return static_cast<int>(row[position]); }, red,
				green, blue);
		else
			colours(y, column, count,
				[this](const uint8_t *row, int64_t position) { return sample_value(layout_, row, position); },
				red, green, blue);
		if (conversion_ == nullptr) {
			normalise(red, count, 0, r);
			normalise(green, count, 1, g);
			normalise(blue, count, 2, b);
			return;
		}
		unit_values(red, count, r);
		unit_values(green, count, g);
		unit_values(blue, count, b);
		to_bt709_and_normalise(count, r, g, b, scratch);
	}

	// The YUV colours before their clamp of pixels column(0) .. column(count - 1) of row y;
	// `value` reads the sample at a position of a row. Chroma of the sample covering the pixel
	// (nearest).
	template<typename Column, typename SampleValue>
	void colours(int64_t y, Column column, int64_t count, SampleValue value, float *red, float *green,
		     float *blue) const
	{
		const YuvLayout &l = layout_;
		const SampleProducts *products = products_->data();
		const uint8_t *luma = frame_.planes[0] + y * frame_.strides[0];
		const int64_t row = chroma_row(l, y);
		const uint8_t *u_row = frame_.planes[l.u_plane] + row * frame_.strides[l.u_plane];
		const uint8_t *v_row = frame_.planes[l.v_plane] + row * frame_.strides[l.v_plane];
		for (int64_t i = 0; i < count; i++) {
			const int64_t x = column(i);
			const float yy = products[value(luma, luma_position(l, x))].luma;
			const SampleProducts &u = products[value(u_row, chroma_position(l, x, l.u_offset))];
			const SampleProducts &v = products[value(v_row, chroma_position(l, x, l.v_offset))];
			red[i] = yy + v.red_v;
			green[i] = yy - u.green_u - v.green_v;
			blue[i] = yy + u.blue_u;
		}
	}

	// The table a frame's signals (0..1) are read by: a wide-gamut frame's light of its transfer
	// (to_bt709), else an HDR frame's SDR signals (sdr_signal); null: an SDR BT.709 frame's,
	// read as they are.
	const float *signal_table() const { return light_table_ != nullptr ? light_table_ : transfer_table_; }

	// A signal (0..1) by signal_table().
	float by_table(float signal) const
	{
		const float *table = signal_table();
		return table == nullptr ? signal : interpolated(table, signal);
	}

	// Colour values clamped to 0..255 as unit values, then by signal_table().
	void unit_values(const float *colour, int64_t width, float *out) const
	{
		// In two loops, so that the one without the table's lookups vectorises.
		for (int64_t x = 0; x < width; x++) {
			const float c = colour[x];
			const float clamped = c < 0.0f ? 0.0f : (c > 255.0f ? 255.0f : c);
			out[x] = clamped / 255.0f;
		}
		if (const float *table = signal_table())
			for (int64_t x = 0; x < width; x++)
				out[x] = interpolated(table, out[x]);
	}

	// A wide-gamut frame's row of light in BT.709's primaries as SDR signals, then (value -
	// mean) / std: to_bt709()'s operations after the light, each over the row in a loop of its
	// own, so that those without table lookups (the matrix, the clip, the square root, the
	// normalisation) vectorise.
	void to_bt709_and_normalise(int64_t width, float *r, float *g, float *b, Scratch &scratch) const
	{
		const PrimariesConversion &conversion = *conversion_;
		float *const channels[3] = {r, g, b};
		for (int c = 0; c < 3; c++) {
			const float *row = conversion.matrix[c];
			float *root = scratch.colours.data() + c * width;
			for (int64_t x = 0; x < width; x++)
				root[x] = bt709_root(row, r[x], g[x], b[x]);
		}
		for (int c = 0; c < 3; c++) {
			const float *root = scratch.colours.data() + c * width;
			float *out = channels[c];
			const float mean = mean_[c], std = std_[c];
			for (int64_t x = 0; x < width; x++)
				out[x] = interpolated(conversion.signal, root[x]);
			for (int64_t x = 0; x < width; x++)
				out[x] = (out[x] - mean) / std;
		}
	}

	// A colour value clamped to 0..255 as a unit value (an HDR signal then as SDR), then
	// (value - mean) / std.
	void normalise(const float *colour, int64_t width, int channel, float *out) const
	{
		const float mean = mean_[channel], std = std_[channel];
		if (transfer_table_ != nullptr) {
			unit_values(colour, width, out);
			for (int64_t x = 0; x < width; x++)
				out[x] = (out[x] - mean) / std;
			return;
		}
		for (int64_t x = 0; x < width; x++) {
			const float c = colour[x];
			const float clamped = c < 0.0f ? 0.0f : (c > 255.0f ? 255.0f : c);
			out[x] = (clamped / 255.0f - mean) / std;
		}
	}

	const FrameView &frame_;
	int bytes_per_pixel_;
	std::array<int64_t, 3> offsets_{};
	YuvLayout layout_{};
	float mean_[3], std_[3];
	const float *transfer_table_; // HDR video's (sdr_table), or null
	const PrimariesConversion *conversion_; // wide-gamut video's (primaries_conversion), or null
	const float *light_table_;		// its table of the light of the frame's transfer
	float byte_values_[256];		// packed formats: a byte's value by signal_table()
	float normalised_[3][256];		// and normalised, where the primaries are BT.709's
	const YuvProducts *products_ = nullptr; // YUV's, indexed by a sample's value
};

} // namespace

void normalised_frame_cpu(const FrameView &frame, const float mean[3], const float std[3], torch::Tensor &out,
			  const PixelsRead *read)
{
	TORCH_CHECK(out.scalar_type() == torch::kFloat && out.is_contiguous() &&
			    out.sizes() == torch::IntArrayRef({3, frame.height, frame.width}),
		    "normalised_frame_cpu: out must be a contiguous float [3, height, width]");
	TORCH_CHECK(read == nullptr || (static_cast<int64_t>(read->rows.size()) == frame.height &&
					(read->columns.empty() || read->columns.back() < frame.width)),
		    "normalised_frame_cpu: rows or columns outside the frame");
	const int64_t plane = static_cast<int64_t>(frame.height) * frame.width;
	float *data = out.data_ptr<float>();
	const RowConverter converter(frame, mean, std);
	// Every column, or the listed ones where that is fewer.
	const bool listed = read != nullptr && static_cast<int64_t>(read->columns.size()) < frame.width;
	at::parallel_for(0, frame.height, 8, [&](int64_t begin, int64_t end) {
		RowConverter::Scratch scratch = converter.make_scratch(listed ? read->columns.size() : 0);
		for (int64_t y = begin; y < end; y++) {
			if (read != nullptr && !read->rows[y])
				continue;
			float *r = data + y * frame.width;
			if (listed)
				converter.convert_listed(y, read->columns, r, r + plane, r + 2 * plane, scratch);
			else
				converter.convert(y, r, r + plane, r + 2 * plane, scratch);
		}
	});
}

} // namespace frcnn::ops::detail

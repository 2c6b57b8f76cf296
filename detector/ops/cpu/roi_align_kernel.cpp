// SPDX-License-Identifier: BSD-3-Clause
#include "../kernels.h"
#include "../roi_align_steps.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace frcnn::ops::detail {

namespace {

// Half and bfloat16 tensors are read and written as such but all arithmetic is done in float.
template<typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>,
				 float, scalar_t>;

using roi_align_steps::bilinear_sample;
using roi_align_steps::roi_geometry;
using roi_align_steps::RoiGeometry;
using roi_align_steps::Sample;
using roi_align_steps::sample_x;
using roi_align_steps::sample_y;

// All samples of one RoI, bin by bin (row-major), grid_h x grid_w samples per bin. They do not
// depend on the channel, so they are computed once per RoI and reused for every channel.
template<typename T>
void precompute_samples(const RoiGeometry<T> &g, int64_t height, int64_t width,
			int64_t pooled_height, int64_t pooled_width,
			std::vector<Sample<T>> &samples)
{
	samples.clear();
	samples.reserve(pooled_height * pooled_width * g.grid_h * g.grid_w);
	for (int64_t ph = 0; ph < pooled_height; ph++) {
		for (int64_t pw = 0; pw < pooled_width; pw++) {
			for (int64_t iy = 0; iy < g.grid_h; iy++) {
				const T y = sample_y(g, ph, iy);
				for (int64_t ix = 0; ix < g.grid_w; ix++)
					samples.push_back(bilinear_sample<T>(height, width, y, sample_x(g, pw, ix)));
			}
		}
	}
}

// Channels-last access is cache friendly but needs a transposed copy of a planar tensor: worth
// it once the samples (estimated at 2x2 per bin when adaptive) outnumber the pixels of the map
// by a margin, as with the hundreds of RoIs a detector pools per image.
bool prefer_channels_last(int64_t batch_size, int64_t channels, int64_t height, int64_t width,
			  int64_t num_rois, int64_t pooled_height, int64_t pooled_width,
			  int64_t sampling_ratio)
{
	if (channels <= 1)
		return false;
	const int64_t grid = sampling_ratio > 0 ? sampling_ratio * sampling_ratio : 4;
	return num_rois * pooled_height * pooled_width * grid * 4 >= batch_size * height * width;
}

template<typename scalar_t>
void check_batch_indices(const scalar_t *rois, int64_t num_rois, int64_t batch_size)
{
	for (int64_t n = 0; n < num_rois; n++) {
		const auto value = static_cast<acc_t<scalar_t>>(rois[n * 5]);
		const auto index = static_cast<int64_t>(value);
		TORCH_CHECK(std::isfinite(static_cast<double>(value)) && index >= 0 &&
				    index < batch_size,
			    "roi_align: rois[", n, ", 0] is the batch index ",
			    static_cast<double>(value), ", but the input holds ", batch_size,
			    " image(s)");
	}
}

// RoI n goes to output row rows[n], or row n without rows. The rois are of the input's type, or
// float for features of reduced precision.
template<typename scalar_t, typename roi_t>
void forward_kernel(const scalar_t *input, const roi_t *rois, scalar_t *output, const int64_t *rows,
		    int64_t num_rois, int64_t channels, int64_t height, int64_t width,
		    int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned,
		    double spatial_scale)
{
	using T = acc_t<scalar_t>;
	const int64_t plane = height * width;
	const int64_t bins = pooled_height * pooled_width;

	at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
		std::vector<Sample<T>> samples;
		for (int64_t n = begin; n < end; n++) {
			const RoiGeometry<T> g = roi_geometry<T>(
				rois + n * 5, static_cast<T>(spatial_scale), pooled_height,
				pooled_width, sampling_ratio, aligned);
			precompute_samples(g, height, width, pooled_height, pooled_width, samples);
			const int64_t per_bin = g.grid_h * g.grid_w;
			const T count = static_cast<T>(std::max<int64_t>(per_bin, 1));

			const int64_t row = rows ? rows[n] : n;
			for (int64_t c = 0; c < channels; c++) {
				const scalar_t *in = input + (g.batch_index * channels + c) * plane;
				scalar_t *out = output + (row * channels + c) * bins;
				const Sample<T> *s = samples.data();
				for (int64_t bin = 0; bin < bins; bin++) {
					T value = 0;
					for (int64_t k = 0; k < per_bin; k++, s++) {
						if (!s->valid)
							continue;
						value += s->w1 * static_cast<T>(in[s->pos1]) +
							 s->w2 * static_cast<T>(in[s->pos2]) +
							 s->w3 * static_cast<T>(in[s->pos3]) +
							 s->w4 * static_cast<T>(in[s->pos4]);
					}
					value /= count;
					out[bin] = static_cast<scalar_t>(value);
				}
			}
		}
	});
}

// The same computation on a channels-last (NHWC) input. A sample's four neighbours then hold
// all channels side by side, so the inner loop runs over contiguous memory instead of jumping
// between channel planes (which misses the cache on large maps). Each output element still
// adds the same terms in the same order as the planar kernel, so results are identical.
template<typename scalar_t, typename roi_t>
void forward_kernel_channels_last(const scalar_t *input, const roi_t *rois, scalar_t *output,
				  const int64_t *rows, int64_t num_rois, int64_t channels,
				  int64_t height, int64_t width,
				  int64_t pooled_height, int64_t pooled_width,
				  int64_t sampling_ratio, bool aligned, double spatial_scale)
{
	using T = acc_t<scalar_t>;
	const int64_t plane = height * width;
	const int64_t bins = pooled_height * pooled_width;

	at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
		std::vector<Sample<T>> samples;
		std::vector<T> acc(channels);
		for (int64_t n = begin; n < end; n++) {
			const RoiGeometry<T> g = roi_geometry<T>(
				rois + n * 5, static_cast<T>(spatial_scale), pooled_height,
				pooled_width, sampling_ratio, aligned);
			precompute_samples(g, height, width, pooled_height, pooled_width, samples);
			const int64_t per_bin = g.grid_h * g.grid_w;
			const T count = static_cast<T>(std::max<int64_t>(per_bin, 1));
			const scalar_t *in = input + g.batch_index * plane * channels;
			scalar_t *out = output + (rows ? rows[n] : n) * channels * bins;
			const Sample<T> *s = samples.data();

			for (int64_t bin = 0; bin < bins; bin++) {
				std::fill(acc.begin(), acc.end(), static_cast<T>(0));
				T *a = acc.data();
				for (int64_t k = 0; k < per_bin; k++, s++) {
					if (!s->valid)
						continue;
					const scalar_t *p1 = in + s->pos1 * channels;
					const scalar_t *p2 = in + s->pos2 * channels;
					const scalar_t *p3 = in + s->pos3 * channels;
					const scalar_t *p4 = in + s->pos4 * channels;
					const T w1 = s->w1, w2 = s->w2, w3 = s->w3, w4 = s->w4;
					for (int64_t c = 0; c < channels; c++)
						a[c] += w1 * static_cast<T>(p1[c]) +
							w2 * static_cast<T>(p2[c]) +
							w3 * static_cast<T>(p3[c]) +
							w4 * static_cast<T>(p4[c]);
				}
				for (int64_t c = 0; c < channels; c++)
					out[c * bins + bin] = static_cast<scalar_t>(a[c] / count);
			}
		}
	});
}

template<typename scalar_t>
void backward_kernel(const scalar_t *grad, const scalar_t *rois, scalar_t *grad_input,
		     int64_t num_rois, int64_t channels, int64_t height, int64_t width,
		     int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
		     bool aligned, double spatial_scale)
{
	using T = acc_t<scalar_t>;
	const int64_t plane = height * width;
	const int64_t bins = pooled_height * pooled_width;

	// Every (image, channel) plane of grad_input only receives from the same channel, so the
	// work is split by channel: no two threads write the same element, and within a plane the
	// contributions are added in the same order (RoI, bin, sample) as a serial loop would.
	at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
		std::vector<Sample<T>> samples;
		for (int64_t n = 0; n < num_rois; n++) {
			const RoiGeometry<T> g = roi_geometry<T>(
				rois + n * 5, static_cast<T>(spatial_scale), pooled_height,
				pooled_width, sampling_ratio, aligned);
			precompute_samples(g, height, width, pooled_height, pooled_width, samples);
			const int64_t per_bin = g.grid_h * g.grid_w;
			const T count = static_cast<T>(per_bin);

			for (int64_t c = c_begin; c < c_end; c++) {
				scalar_t *gin = grad_input + (g.batch_index * channels + c) * plane;
				const scalar_t *gout = grad + (n * channels + c) * bins;
				const Sample<T> *s = samples.data();
				for (int64_t bin = 0; bin < bins; bin++) {
					const T g_bin = static_cast<T>(gout[bin]);
					for (int64_t k = 0; k < per_bin; k++, s++) {
						if (!s->valid)
							continue;
						gin[s->pos1] = static_cast<T>(gin[s->pos1]) +
							       g_bin * s->w1 / count;
						gin[s->pos2] = static_cast<T>(gin[s->pos2]) +
							       g_bin * s->w2 / count;
						gin[s->pos3] = static_cast<T>(gin[s->pos3]) +
							       g_bin * s->w3 / count;
						gin[s->pos4] = static_cast<T>(gin[s->pos4]) +
							       g_bin * s->w4 / count;
					}
				}
			}
		}
	});
}

// Backward on a channels-last gradient buffer: each thread owns a range of channels, which are
// contiguous at every pixel. Per element the terms are added in the same order as in
// backward_kernel, so both give the same values.
template<typename scalar_t>
void backward_kernel_channels_last(const scalar_t *grad, const scalar_t *rois, scalar_t *grad_input,
				   int64_t num_rois, int64_t channels, int64_t height,
				   int64_t width, int64_t pooled_height, int64_t pooled_width,
				   int64_t sampling_ratio, bool aligned, double spatial_scale)
{
	using T = acc_t<scalar_t>;
	const int64_t plane = height * width;
	const int64_t bins = pooled_height * pooled_width;
	const int64_t grain = std::max<int64_t>(1, std::min<int64_t>(channels, 16));

	at::parallel_for(0, channels, grain, [&](int64_t c_begin, int64_t c_end) {
		std::vector<Sample<T>> samples;
		std::vector<T> g_bin(c_end - c_begin);
		for (int64_t n = 0; n < num_rois; n++) {
			const RoiGeometry<T> g = roi_geometry<T>(
				rois + n * 5, static_cast<T>(spatial_scale), pooled_height,
				pooled_width, sampling_ratio, aligned);
			precompute_samples(g, height, width, pooled_height, pooled_width, samples);
			const int64_t per_bin = g.grid_h * g.grid_w;
			const T count = static_cast<T>(per_bin);
			scalar_t *gin = grad_input + g.batch_index * plane * channels;
			const scalar_t *gout = grad + n * channels * bins;
			const Sample<T> *s = samples.data();

			for (int64_t bin = 0; bin < bins; bin++) {
				for (int64_t c = c_begin; c < c_end; c++)
					g_bin[c - c_begin] = static_cast<T>(gout[c * bins + bin]);
				const T *gb = g_bin.data() - c_begin;
				for (int64_t k = 0; k < per_bin; k++, s++) {
					if (!s->valid)
						continue;
					scalar_t *p1 = gin + s->pos1 * channels;
					scalar_t *p2 = gin + s->pos2 * channels;
					scalar_t *p3 = gin + s->pos3 * channels;
					scalar_t *p4 = gin + s->pos4 * channels;
					const T w1 = s->w1, w2 = s->w2, w3 = s->w3, w4 = s->w4;
					// Sequential per pointer: two of p1..p4 alias when the
					// sample sits on the border and its neighbours were clamped
					// together.
					for (int64_t c = c_begin; c < c_end; c++)
						p1[c] = static_cast<T>(p1[c]) + gb[c] * w1 / count;
					for (int64_t c = c_begin; c < c_end; c++)
						p2[c] = static_cast<T>(p2[c]) + gb[c] * w2 / count;
					for (int64_t c = c_begin; c < c_end; c++)
						p3[c] = static_cast<T>(p3[c]) + gb[c] * w3 / count;
					for (int64_t c = c_begin; c < c_end; c++)
						p4[c] = static_cast<T>(p4[c]) + gb[c] * w4 / count;
				}
			}
		}
	});
}

// Pools every RoI into output (row n, or rows[n]); output is contiguous, of input's dtype.
void forward_cpu(const torch::Tensor &input, const torch::Tensor &rois, torch::Tensor &output,
		 const int64_t *rows, double spatial_scale, int64_t pooled_height, int64_t pooled_width,
		 int64_t sampling_ratio, bool aligned)
{
	const int64_t num_rois = rois.size(0);
	const int64_t channels = input.size(1);
	const int64_t height = input.size(2);
	const int64_t width = input.size(3);
	if (num_rois == 0 || channels == 0)
		return;

	// An input already stored channels-last is read as it is.
	const bool channels_last =
		(channels > 1 && !input.is_contiguous() &&
		 input.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
		prefer_channels_last(input.size(0), channels, height, width, num_rois,
				     pooled_height, pooled_width, sampling_ratio);

	const torch::Tensor in = channels_last ? input.contiguous(at::MemoryFormat::ChannelsLast)
					       : input.contiguous();
	const torch::Tensor r = rois.contiguous();
	AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cpu", [&] {
		// Every sample of an empty map reads nothing: the pooled values are zero.
		const bool empty_map = height == 0 || width == 0;
		const auto pool = [&](const auto *roi_rows) {
			check_batch_indices(roi_rows, num_rois, input.size(0));
			if (empty_map) {
				for (int64_t n = 0; n < num_rois; n++)
					output[rows ? rows[n] : n].zero_();
			} else if (channels_last) {
				forward_kernel_channels_last(in.data_ptr<scalar_t>(), roi_rows, output.data_ptr<scalar_t>(),
							     rows, num_rois, channels, height, width, pooled_height,
							     pooled_width, sampling_ratio, aligned, spatial_scale);
			} else {
				forward_kernel(in.data_ptr<scalar_t>(), roi_rows, output.data_ptr<scalar_t>(), rows,
					       num_rois, channels, height, width, pooled_height, pooled_width,
					       sampling_ratio, aligned, spatial_scale);
			}
		};
		if (r.scalar_type() == input.scalar_type())
			pool(r.data_ptr<scalar_t>());
		else
			pool(r.data_ptr<float>()); // reduced-precision features (check_roi_align_args)
	});
}

} // namespace

torch::Tensor roi_align_forward_cpu(const torch::Tensor &input, const torch::Tensor &rois,
				    double spatial_scale, int64_t pooled_height,
				    int64_t pooled_width, int64_t sampling_ratio, bool aligned)
{
	// The kernels write every element: no zeroing first.
	torch::Tensor output =
		torch::empty({rois.size(0), input.size(1), pooled_height, pooled_width}, input.options());
	forward_cpu(input, rois, output, nullptr, spatial_scale, pooled_height, pooled_width,
		    sampling_ratio, aligned);
	return output;
}

void roi_align_forward_cpu_into(torch::Tensor &output, const torch::Tensor &rows,
				const torch::Tensor &input, const torch::Tensor &rois,
				double spatial_scale, int64_t pooled_height, int64_t pooled_width,
				int64_t sampling_ratio, bool aligned)
{
	const torch::Tensor r = rows.contiguous();
	const int64_t *row = r.data_ptr<int64_t>();
	for (int64_t n = 0; n < r.numel(); n++)
		TORCH_CHECK(row[n] >= 0 && row[n] < output.size(0), "roi_align_into: rows[", n, "] is ",
			    row[n], ", but the output holds ", output.size(0), " row(s)");
	forward_cpu(input, rois, output, row, spatial_scale, pooled_height, pooled_width,
		    sampling_ratio, aligned);
}

torch::Tensor roi_align_backward_cpu(const torch::Tensor &grad, const torch::Tensor &rois,
				     double spatial_scale, int64_t pooled_height,
				     int64_t pooled_width, int64_t batch_size, int64_t channels,
				     int64_t height, int64_t width, int64_t sampling_ratio,
				     bool aligned)
{
	const int64_t num_rois = rois.size(0);
	const bool channels_last =
		prefer_channels_last(batch_size, channels, height, width, num_rois, pooled_height,
				     pooled_width, sampling_ratio);
	torch::Tensor grad_input =
		torch::empty({batch_size, channels, height, width},
			     grad.options().memory_format(channels_last
								  ? at::MemoryFormat::ChannelsLast
								  : at::MemoryFormat::Contiguous))
			.zero_();
	TORCH_INTERNAL_ASSERT(!channels_last ||
			      grad_input.is_contiguous(at::MemoryFormat::ChannelsLast));
	if (grad.numel() == 0)
		return grad_input.contiguous();

	const torch::Tensor g = grad.contiguous();
	const torch::Tensor r = rois.contiguous();
	AT_DISPATCH_FLOATING_TYPES_AND_HALF(grad.scalar_type(), "roi_align_backward_cpu", [&] {
		check_batch_indices(r.data_ptr<scalar_t>(), num_rois, batch_size);
		if (height == 0 || width == 0)
			return;
		if (channels_last)
			backward_kernel_channels_last<scalar_t>(
				g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
				grad_input.data_ptr<scalar_t>(), num_rois, channels, height, width,
				pooled_height, pooled_width, sampling_ratio, aligned,
				spatial_scale);
		else
			backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
						  grad_input.data_ptr<scalar_t>(), num_rois,
						  channels, height, width, pooled_height,
						  pooled_width, sampling_ratio, aligned,
						  spatial_scale);
	});
	// Callers get the usual planar layout whichever way the kernel worked.
	return grad_input.contiguous();
}

} // namespace frcnn::ops::detail

// SPDX-License-Identifier: BSD-3-Clause
// HDR video's colours mapped to SDR for the model: for a transfer function, a table of the SDR
// value of each signal value, on a grid of kTransferIntervals steps from 0 to 1, read by linear
// interpolation; wide-gamut colours converted to BT.709's by tables alike and a matrix. The same
// operations in frame_to_tensor, the CPU pre-processing kernel and the CUDA one (and its host
// emulation). Plain C++ (no LibTorch, no CUDA headers), so that nvcc reads it too.
#pragma once

#include <cmath>

#include "host_device.h"

namespace frcnn {

enum class TransferFunction; // frcnn/detector.h

// Steps of the tables' grid: a power of two, so that a signal times it is exact. 1024 steps keep
// the interpolation within 2e-4 of the curves (2e-5 above signal 0.05).
constexpr int kTransferIntervals = 1024;

// The table of a transfer function, kTransferIntervals + 1 floats (frame.cpp): the SDR signal
// (0..1) that shows signal i / kTransferIntervals as an SDR display shows the HDR picture; null
// for TransferFunction::SDR, whose signal is read as it is.
const float *sdr_table(TransferFunction transfer);

// The value of a table of kTransferIntervals + 1 points at `x` (0..1, clamped before): the value
// at the grid point at or below it, plus the fraction of the step to the next one; the position
// and the fraction are exact, the three other operations round once each (never fused into a
// multiply-add).
FRCNN_HOST_DEVICE inline float interpolated(const float *table, float x)
{
	const float position = x * static_cast<float>(kTransferIntervals);
	int index = static_cast<int>(position);
	index = index < kTransferIntervals ? index : kTransferIntervals - 1;
	const float fraction = position - static_cast<float>(index);
#if defined(__CUDA_ARCH__)
	return __fadd_rn(table[index], __fmul_rn(fraction, __fsub_rn(table[index + 1], table[index])));
#else
	return table[index] + fraction * (table[index + 1] - table[index]);
#endif
}

// The SDR value of `signal` (0..1, clamped before) by a transfer function's table.
FRCNN_HOST_DEVICE inline float sdr_signal(const float *table, float signal)
{
	return interpolated(table, signal);
}

enum class ColourPrimaries; // frcnn/detector.h

// Wide-gamut colours as BT.709's (see ColourPrimaries): what converts a frame's signals.
struct PrimariesConversion {
	// Linear BT.709 light (rows R, G, B) of linear light in the frame's primaries.
	float matrix[3][3];
	// The light, relative to SDR white, that signal i / kTransferIntervals shows on an SDR
	// display, by TransferFunction: SDR's (BT.1886: signal^2.4), and PQ's and HLG's after
	// their mapping to SDR (sdr_table's curve and BT.1886's as one table).
	float light[3][kTransferIntervals + 1];
	// The SDR signal of light (i / kTransferIntervals)^2: the grid is one of the square root of
	// the light, on which the signal (light^(1/2.4), steep at black) is nearly straight, so that
	// the interpolation stays within 2e-4 of it (1e-5 above light 0.01).
	float signal[kTransferIntervals + 1];
};

// The conversion of `primaries`' colours to BT.709's (frame.cpp); null for BT.709.
const PrimariesConversion *primaries_conversion(ColourPrimaries primaries);

// The light of a wide-gamut frame's signals mixed by a row of the matrix (the first two products
// added, then the third), clipped to 0..1: the square root of that BT.709 light, whose SDR
// signal the conversion's `signal` table gives. One rounding per operation, as in
// frame_to_tensor's tensor operations.
FRCNN_HOST_DEVICE inline float bt709_root(const float row[3], float red_light, float green_light, float blue_light)
{
#if defined(__CUDA_ARCH__)
	float mixed = __fadd_rn(__fadd_rn(__fmul_rn(row[0], red_light), __fmul_rn(row[1], green_light)),
				__fmul_rn(row[2], blue_light));
	mixed = mixed < 0.0f ? 0.0f : (mixed > 1.0f ? 1.0f : mixed);
	return __fsqrt_rn(mixed);
#else
	float mixed = row[0] * red_light + row[1] * green_light + row[2] * blue_light;
	mixed = mixed < 0.0f ? 0.0f : (mixed > 1.0f ? 1.0f : mixed);
	return std::sqrt(mixed);
#endif
}

// Signals (0..1) in a frame's primaries and transfer to the SDR signals of BT.709's, in place:
// each signal's light by `light_table` (the conversion's table of the frame's transfer), the
// matrix (bt709_root), the SDR signal of each root.
FRCNN_HOST_DEVICE inline void to_bt709(const PrimariesConversion &conversion, const float *light_table, float &red,
				       float &green, float &blue)
{
	const float light[3] = {interpolated(light_table, red), interpolated(light_table, green),
				interpolated(light_table, blue)};
	float signal[3];
	for (int c = 0; c < 3; c++)
		signal[c] = interpolated(conversion.signal, bt709_root(conversion.matrix[c], light[0], light[1], light[2]));
	red = signal[0];
	green = signal[1];
	blue = signal[2];
}

} // namespace frcnn

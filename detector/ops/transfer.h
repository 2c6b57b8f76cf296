// SPDX-License-Identifier: BSD-3-Clause
// HDR video's colours mapped to SDR for the model: for a transfer function, a table of the SDR
// value of each signal value, on a grid of kTransferIntervals steps from 0 to 1, read by linear
// interpolation, with the same operations in frame_to_tensor, the CPU pre-processing kernel and
// the CUDA one (and its host emulation). Plain C++ (no LibTorch, no CUDA headers), so that nvcc
// reads it too.
#pragma once

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

// The SDR value of `signal` (0..1, clamped before) by the table: the value at the grid point at
// or below it, plus the fraction of the step to the next one; the position and the fraction are
// exact, the three other operations round once each (never fused into a multiply-add).
FRCNN_HOST_DEVICE inline float sdr_signal(const float *table, float signal)
{
	const float position = signal * static_cast<float>(kTransferIntervals);
	int index = static_cast<int>(position);
	index = index < kTransferIntervals ? index : kTransferIntervals - 1;
	const float fraction = position - static_cast<float>(index);
#if defined(__CUDA_ARCH__)
	return __fadd_rn(table[index], __fmul_rn(fraction, __fsub_rn(table[index + 1], table[index])));
#else
	return table[index] + fraction * (table[index + 1] - table[index]);
#endif
}

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
// Small helpers shared by the .cu files.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "launch.h"

namespace frcnn::cuda::detail {

// Arithmetic type of a stored type: half is read and written as half, computed in float.
template<typename T> struct Acc { using type = T; };
template<> struct Acc<__half> { using type = float; };
template<typename T> using acc_t = typename Acc<T>::type;

template<typename T> __device__ __forceinline__ acc_t<T> load(const T *p) { return *p; }
template<> __device__ __forceinline__ float load<__half>(const __half *p) { return __half2float(*p); }

template<typename T> __device__ __forceinline__ void store(T *p, acc_t<T> v) { *p = v; }
template<> __device__ __forceinline__ void store<__half>(__half *p, float v) { *p = __float2half_rn(v); }

inline int launch_result()
{
	return static_cast<int>(cudaGetLastError());
}

inline unsigned int blocks_for(int64_t items, int threads)
{
	const int64_t blocks = (items + threads - 1) / threads;
	// Grid-stride loops cover the rest.
	return static_cast<unsigned int>(blocks < 65535 * 32 ? blocks : 65535 * 32);
}

} // namespace frcnn::cuda::detail

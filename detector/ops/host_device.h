// SPDX-License-Identifier: BSD-3-Clause
// Functions written once for the CPU kernels or tests and the CUDA kernels: marked for both
// compilers when nvcc reads them, plain C++ when the host compiler does.
#pragma once

#if defined(__CUDACC__)
#define FRCNN_HOST_DEVICE __host__ __device__
#else
#define FRCNN_HOST_DEVICE
#endif

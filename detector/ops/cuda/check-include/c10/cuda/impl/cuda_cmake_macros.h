// SPDX-License-Identifier: BSD-3-Clause
// Stands in for the header that a CUDA build of LibTorch generates at its configuration and that
// a CPU-only LibTorch's c10/cuda headers include without shipping (Debian's libtorch-dev). Used
// only to compile, not link, the CUDA glue against such a LibTorch (meson.build, the glue check);
// a CUDA-enabled LibTorch brings its own.
#pragma once

#define C10_CUDA_BUILD_SHARED_LIBS

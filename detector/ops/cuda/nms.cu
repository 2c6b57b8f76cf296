// SPDX-License-Identifier: BSD-3-Clause
// Bitmask NMS: one kernel fills, for every box, a mask of the later boxes it overlaps above the
// threshold (64 boxes per word); a second kernel, one block, walks the boxes in score order and
// keeps each box that no kept box suppressed. Nothing is copied to the host.
//
// Compiled with --fmad=false: the IoUs must round as the CPU kernel's (and torchvision's CPU
// kernel's) do, or a box whose IoU lands next to the threshold could be kept on one device and
// not on the other.
#include "common.cuh"

namespace frcnn::cuda {

namespace {

constexpr int kBoxesPerWord = 64;

template<typename T>
__device__ __forceinline__ bool overlaps(const T *a, T area_a, const T *b, T area_b, double threshold)
{
	const T xx1 = a[0] > b[0] ? a[0] : b[0];
	const T yy1 = a[1] > b[1] ? a[1] : b[1];
	const T xx2 = a[2] < b[2] ? a[2] : b[2];
	const T yy2 = a[3] < b[3] ? a[3] : b[3];
	const T w = xx2 - xx1 > T(0) ? xx2 - xx1 : T(0);
	const T h = yy2 - yy1 > T(0) ? yy2 - yy1 : T(0);
	const T inter = w * h;
	const T iou = inter / (area_a + area_b - inter);
	return static_cast<double>(iou) > threshold;
}

// Block (column block, row block) of 64 x 64 box pairs; thread t handles the row box.
template<typename T>
__global__ void nms_mask_kernel(const T *boxes, const int64_t *categories, int64_t n, int64_t words,
				double threshold, uint64_t *mask)
{
	const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
	if (col_block < row_block)
		return;
	__shared__ T col_boxes[kBoxesPerWord * 4];
	__shared__ T col_areas[kBoxesPerWord];
	__shared__ int64_t col_categories[kBoxesPerWord];
	const int64_t col_start = col_block * kBoxesPerWord;
	const int col_count = static_cast<int>((n - col_start < kBoxesPerWord ? n - col_start : kBoxesPerWord));
	const int t = threadIdx.x;
	if (t < col_count) {
		const T *b = boxes + (col_start + t) * 4;
		for (int k = 0; k < 4; k++)
			col_boxes[t * 4 + k] = b[k];
		col_areas[t] = (b[2] - b[0]) * (b[3] - b[1]);
		col_categories[t] = categories != nullptr ? categories[col_start + t] : 0;
	}
	__syncthreads();

	const int64_t row = row_block * kBoxesPerWord + t;
	if (row >= n)
		return;
	const T *a = boxes + row * 4;
	const T area_a = (a[2] - a[0]) * (a[3] - a[1]);
	const int64_t category = categories != nullptr ? categories[row] : 0;
	uint64_t bits = 0;
	// Only later boxes can be suppressed by this one.
	const int first = row_block == col_block ? t + 1 : 0;
	for (int j = first; j < col_count; j++) {
		if (col_categories[j] == category &&
		    overlaps(a, area_a, col_boxes + j * 4, col_areas[j], threshold))
			bits |= 1ULL << j;
	}
	mask[row * words + col_block] = bits;
}

// One block. removed[] (shared) holds the boxes suppressed so far; the boxes are visited 64 at a
// time: one thread settles the 64 in order, using the masks among them, then all threads fold
// the masks of the kept ones into the later words.
__global__ void nms_reduce_kernel(const uint64_t *mask, int64_t n, int64_t words, uint8_t *keep)
{
	extern __shared__ uint64_t removed[];
	__shared__ uint64_t diagonal[kBoxesPerWord];
	__shared__ uint64_t kept_bits;
	for (int64_t w = threadIdx.x; w < words; w += blockDim.x)
		removed[w] = 0;
	__syncthreads();
	for (int64_t block = 0; block < words; block++) {
		const int64_t base = block * kBoxesPerWord;
		const int count = static_cast<int>((n - base < kBoxesPerWord ? n - base : kBoxesPerWord));
		if (threadIdx.x < count)
			diagonal[threadIdx.x] = mask[(base + threadIdx.x) * words + block];
		__syncthreads();
		if (threadIdx.x == 0) {
			uint64_t gone = removed[block];
			uint64_t kept = 0;
			for (int k = 0; k < count; k++) {
				if (!((gone >> k) & 1ULL)) {
					kept |= 1ULL << k;
					gone |= diagonal[k];
				}
			}
			kept_bits = kept;
		}
		__syncthreads();
		const uint64_t kept = kept_bits;
		if (threadIdx.x < count)
			keep[base + threadIdx.x] = static_cast<uint8_t>((kept >> threadIdx.x) & 1ULL);
		for (int64_t w = block + 1 + threadIdx.x; w < words; w += blockDim.x) {
			uint64_t acc = removed[w];
			for (uint64_t bits = kept; bits != 0; bits &= bits - 1) {
				const int k = __ffsll(static_cast<long long>(bits)) - 1;
				acc |= mask[(base + k) * words + w];
			}
			removed[w] = acc;
		}
		__syncthreads();
	}
}

} // namespace

const char *error_string(int error)
{
	return cudaGetErrorString(static_cast<cudaError_t>(error));
}

int nms(const void *boxes, Scalar scalar, const int64_t *categories, int64_t n, double threshold,
	uint64_t *mask, uint8_t *keep, Stream stream)
{
	if (n == 0)
		return 0;
	const int64_t words = nms_words(n);
	auto s = static_cast<cudaStream_t>(stream);
	const dim3 grid(static_cast<unsigned int>(words), static_cast<unsigned int>(words));
	if (scalar == Scalar::Double)
		nms_mask_kernel<double><<<grid, kBoxesPerWord, 0, s>>>(
			static_cast<const double *>(boxes), categories, n, words, threshold, mask);
	else if (scalar == Scalar::Float)
		nms_mask_kernel<float><<<grid, kBoxesPerWord, 0, s>>>(
			static_cast<const float *>(boxes), categories, n, words, threshold, mask);
	else
		return static_cast<int>(cudaErrorInvalidValue);
	if (int e = detail::launch_result())
		return e;
	const size_t shared = static_cast<size_t>(words) * sizeof(uint64_t);
	if (shared > 48 * 1024)
		return static_cast<int>(cudaErrorInvalidValue);
	nms_reduce_kernel<<<1, 256, shared, s>>>(mask, n, words, keep);
	return detail::launch_result();
}

} // namespace frcnn::cuda

// SPDX-License-Identifier: BSD-3-Clause
// Bitmask NMS: one kernel fills, for every box, a mask of the later boxes it overlaps above the
// threshold (64 boxes per word); a second kernel settles each segment of boxes of one category
// in one block, walking its boxes in score order and keeping each box that no kept box
// suppressed, the segments in parallel. Nothing is copied to the host. The steps are in
// nms_steps.h, shared with a host emulation that the CPU tests run.
//
// Compiled with --fmad=false: the IoUs must round as the CPU kernel's (and torchvision's CPU
// kernel's) do, or a box whose IoU lands next to the threshold could be kept on one device and
// not on the other.
#include "common.cuh"
#include "nms_steps.h"

namespace frcnn::cuda {

namespace {

using nms_steps::kBoxesPerWord;

// Block (x, row block) takes the 64 x 64 box pairs of column block row block + x, the x-th
// word of the row boxes' masks; thread t handles the row box.
template<typename T>
__global__ void nms_mask_kernel(const T *boxes, const int64_t *categories, int64_t n, int64_t words,
				int64_t span, double threshold, uint64_t *mask)
{
	const int64_t row_block = blockIdx.y, col_block = row_block + blockIdx.x;
	if (col_block >= words)
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
		col_areas[t] = nms_steps::area(b);
		col_categories[t] = categories != nullptr ? categories[col_start + t] : 0;
	}
	__syncthreads();

	const int64_t row = row_block * kBoxesPerWord + t;
	if (row >= n)
		return;
	const T *a = boxes + row * 4;
	const T area_a = nms_steps::area(a);
	const int64_t category = categories != nullptr ? categories[row] : 0;
	uint64_t bits = 0;
	// Only later boxes can be suppressed by this one.
	const int first = row_block == col_block ? t + 1 : 0;
	for (int j = first; j < col_count; j++) {
		if (col_categories[j] == category &&
		    nms_steps::overlaps(a, area_a, col_boxes + j * 4, col_areas[j], threshold))
			bits |= 1ULL << j;
	}
	mask[nms_steps::mask_index(span, row, col_block)] = bits;
}

// One past the last box of the segment that starts at `begin`, searched by all the threads of the
// block, blockDim.x boxes at a time (nms_steps::segment_end on the host).
__device__ int64_t find_segment_end(const int64_t *categories, int64_t begin, int64_t n)
{
	__shared__ int64_t found;
	if (categories == nullptr)
		return n;
	if (threadIdx.x == 0)
		found = n;
	__syncthreads();
	for (int64_t base = begin + 1; base < n; base += blockDim.x) {
		const int64_t j = base + threadIdx.x;
		if (j < n && nms_steps::ends_segment_at(categories, begin, j))
			found = j; // one thread at most
		__syncthreads();
		const int64_t end = found;
		// Everyone has read `found` before anyone can look further on.
		__syncthreads();
		if (end < n)
			return end;
	}
	return n;
}

// Each block takes the segments that start at its positions (a grid-stride loop over the boxes).
// A segment is settled a word (64 boxes) at a time: one thread settles the word's boxes in
// order, using their masks among themselves, then all threads fold the masks of the kept ones
// into the segment's later words. removed[] (shared, `span` words: as many as a segment can
// straddle) holds the segment's boxes removed so far, from its first word on; a word shared with
// a neighbouring segment only ever gets bits of this one's boxes, since masks never cross
// categories.
__global__ void nms_reduce_kernel(const uint64_t *mask, int64_t n, int64_t span, const int64_t *categories,
				  uint8_t *keep)
{
	// nms_steps::kReduceStaticSharedWords counts these and find_segment_end's word.
	extern __shared__ uint64_t removed[];
	__shared__ uint64_t diagonal[kBoxesPerWord];
	__shared__ uint64_t kept_bits;
	for (int64_t begin = blockIdx.x; begin < n; begin += gridDim.x) {
		if (!nms_steps::starts_segment(categories, begin))
			continue; // the same for every thread of the block
		const int64_t end = find_segment_end(categories, begin, n);
		const int64_t first_word = begin / kBoxesPerWord, last_word = (end - 1) / kBoxesPerWord;
		for (int64_t w = first_word + threadIdx.x; w <= last_word; w += blockDim.x)
			removed[w - first_word] = 0;
		__syncthreads();
		for (int64_t w = first_word; w <= last_word; w++) {
			const nms_steps::WordBoxes boxes = nms_steps::word_boxes(w, begin, end);
			const int64_t i = boxes.lo + threadIdx.x;
			if (i < boxes.hi)
				diagonal[i - w * kBoxesPerWord] = mask[nms_steps::mask_index(span, i, w)];
			__syncthreads();
			if (threadIdx.x == 0)
				kept_bits = nms_steps::settle_word(diagonal, w, boxes, removed[w - first_word]);
			__syncthreads();
			const uint64_t kept = kept_bits;
			if (i < boxes.hi)
				keep[i] = static_cast<uint8_t>((kept >> (i - w * kBoxesPerWord)) & 1ULL);
			for (int64_t column = w + 1 + threadIdx.x; column <= last_word; column += blockDim.x)
				removed[column - first_word] =
					nms_steps::fold_word(mask, span, w, kept, column, removed[column - first_word]);
			__syncthreads();
		}
	}
}

// Blocks of the reduction when there are categories: enough to settle many segments at once;
// the grid-stride loop gives each block the segments starting at its positions.
constexpr int64_t kMaxReduceBlocks = 1024;

} // namespace

const char *error_string(int error)
{
	return cudaGetErrorString(static_cast<cudaError_t>(error));
}

int nms(const void *boxes, Scalar scalar, const int64_t *categories, int64_t n, int64_t max_per_category,
	double threshold, uint64_t *mask, uint8_t *keep, Stream stream)
{
	if (n == 0)
		return 0;
	const int64_t words = nms_steps::mask_words(n);
	const int64_t span = nms_steps::mask_span(n, categories != nullptr ? max_per_category : 0);
	// The reduction keeps one bit per box of a segment in shared memory; a grid has at most
	// 65535 rows of blocks.
	const size_t shared = static_cast<size_t>(span) * sizeof(uint64_t);
	if (span > nms_steps::kMaxSpan || words > 65535)
		return static_cast<int>(cudaErrorInvalidValue);
	auto s = static_cast<cudaStream_t>(stream);
	const dim3 grid(static_cast<unsigned int>(span), static_cast<unsigned int>(words));
	if (scalar == Scalar::Double)
		nms_mask_kernel<double><<<grid, kBoxesPerWord, 0, s>>>(
			static_cast<const double *>(boxes), categories, n, words, span, threshold, mask);
	else if (scalar == Scalar::Float)
		nms_mask_kernel<float><<<grid, kBoxesPerWord, 0, s>>>(
			static_cast<const float *>(boxes), categories, n, words, span, threshold, mask);
	else
		return static_cast<int>(cudaErrorInvalidValue);
	if (int e = detail::launch_result())
		return e;
	const int64_t blocks = categories == nullptr ? 1 : (n < kMaxReduceBlocks ? n : kMaxReduceBlocks);
	nms_reduce_kernel<<<static_cast<unsigned int>(blocks), 256, shared, s>>>(mask, n, span, categories, keep);
	return detail::launch_result();
}

} // namespace frcnn::cuda

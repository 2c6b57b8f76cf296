// SPDX-License-Identifier: BSD-3-Clause
// The steps of the bitmask NMS (nms.cu), written once for the device and the host: the kernels
// call them, and a CPU test runs them in the kernels' order (suppress_on_host) against the CPU
// kernel. Plain C++ with no CUDA headers, so that the host compiler takes this file as it is.
//
// The boxes are sorted by category, then by decreasing score within a category. Bit j of mask
// word w of box i is set when box w*64+j comes after i, has its category and overlaps it above
// the threshold. A box's mask holds `span` words, from its own word on (mask_index): the words a
// category's boxes can reach, when no category has more than (span - 1) * 64 boxes, or all the
// words from the box's own. A segment is the run of boxes of one category: suppression never
// crosses it, so that each segment is settled on its own, in parallel with the others.
#pragma once

#include <cstdint>

#include "../host_device.h"

namespace frcnn::cuda::nms_steps {

constexpr int kBoxesPerWord = 64;

// Whether b overlaps a above the threshold. The IoU is computed as the CPU kernel computes it,
// operation by operation (the kernels are built without fused multiply-adds).
template<typename T>
FRCNN_HOST_DEVICE inline bool overlaps(const T *a, T area_a, const T *b, T area_b, double threshold)
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

template<typename T>
FRCNN_HOST_DEVICE inline T area(const T *box)
{
	return (box[2] - box[0]) * (box[3] - box[1]);
}

// The most mask words a box can keep (mask_span): the reduction holds that many words of removed
// bits in shared memory, beside its own (a word per box of the word being settled, the kept bits
// and the segment's end), within the 48 KB every CUDA device gives a block without opting in.
constexpr int64_t kSharedBytesPerBlock = 48 * 1024;
constexpr int64_t kReduceStaticSharedWords = kBoxesPerWord + 2;
constexpr int64_t kMaxSpan = kSharedBytesPerBlock / 8 - kReduceStaticSharedWords;

// Words of 64 bits that hold a bit for each of n boxes.
FRCNN_HOST_DEVICE inline int64_t mask_words(int64_t n)
{
	return (n + kBoxesPerWord - 1) / kBoxesPerWord;
}

// Words of mask a box keeps: enough for a category of up to max_per_category boxes (0: no
// bound), which may straddle one more word than its size needs, and no more than there are.
FRCNN_HOST_DEVICE inline int64_t mask_span(int64_t n, int64_t max_per_category)
{
	const int64_t words = mask_words(n);
	if (max_per_category <= 0)
		return words;
	const int64_t reach = mask_words(max_per_category) + 1;
	return reach < words ? reach : words;
}

// Where mask word w (from box i's own word to span - 1 words after it) of box i is.
FRCNN_HOST_DEVICE inline int64_t mask_index(int64_t span, int64_t i, int64_t w)
{
	return i * span + (w - i / kBoxesPerWord);
}

// Whether a segment starts at box i. Without categories all boxes are one segment.
FRCNN_HOST_DEVICE inline bool starts_segment(const int64_t *categories, int64_t i)
{
	if (i == 0)
		return true;
	return categories != nullptr && categories[i] != categories[i - 1];
}

// Whether box j (> 0) is the first of a segment that follows the one starting at `begin`: the
// boxes of a category are contiguous, so exactly one box is, unless that segment is the last.
FRCNN_HOST_DEVICE inline bool ends_segment_at(const int64_t *categories, int64_t begin, int64_t j)
{
	return categories[j] != categories[begin] && categories[j - 1] == categories[begin];
}

// One past the last box of the segment that starts at `begin` (the kernel searches for it with
// all the threads of a block).
inline int64_t segment_end(const int64_t *categories, int64_t begin, int64_t n)
{
	if (categories == nullptr)
		return n;
	for (int64_t j = begin + 1; j < n; j++)
		if (ends_segment_at(categories, begin, j))
			return j;
	return n;
}

// Boxes [lo, hi) of word w that belong to the segment [begin, end).
struct WordBoxes {
	int64_t lo, hi;
};
FRCNN_HOST_DEVICE inline WordBoxes word_boxes(int64_t w, int64_t begin, int64_t end)
{
	const int64_t first = w * kBoxesPerWord, last = first + kBoxesPerWord;
	return {begin > first ? begin : first, end < last ? end : last};
}

// Settles boxes [lo, hi) of word w in order: a box is kept unless a kept box before it removed
// it. diagonal[k] is the mask word w of box w*64+k; `removed` has the bits removed by the kept
// boxes of earlier words. Returns the bits of the kept boxes.
FRCNN_HOST_DEVICE inline uint64_t settle_word(const uint64_t *diagonal, int64_t w, WordBoxes boxes,
					      uint64_t removed)
{
	uint64_t kept = 0;
	for (int64_t i = boxes.lo; i < boxes.hi; i++) {
		const int k = static_cast<int>(i - w * kBoxesPerWord);
		if (!((removed >> k) & 1ULL)) {
			kept |= 1ULL << k;
			removed |= diagonal[k];
		}
	}
	return kept;
}

// Index of the lowest set bit of a non-zero word.
FRCNN_HOST_DEVICE inline int lowest_bit(uint64_t bits)
{
#if defined(__CUDA_ARCH__)
	return __ffsll(static_cast<long long>(bits)) - 1;
#else
	return __builtin_ctzll(bits);
#endif
}

// `removed` (word `column` of the segment) with the boxes that the kept boxes of word w remove.
FRCNN_HOST_DEVICE inline uint64_t fold_word(const uint64_t *mask, int64_t span, int64_t w, uint64_t kept,
					    int64_t column, uint64_t removed)
{
	for (uint64_t bits = kept; bits != 0; bits &= bits - 1)
		removed |= mask[mask_index(span, w * kBoxesPerWord + lowest_bit(bits), column)];
	return removed;
}

// What nms_mask_kernel writes, on the host: for each box, `span` words from its own word on
// (fewer at the end). For tests.
template<typename T>
inline void fill_mask_on_host(const T *boxes, const int64_t *categories, int64_t n, int64_t span,
			      double threshold, uint64_t *mask)
{
	const int64_t words = mask_words(n);
	for (int64_t row = 0; row < n; row++) {
		const T *a = boxes + row * 4;
		const int64_t row_word = row / kBoxesPerWord;
		for (int64_t column = row_word; column < words && column < row_word + span; column++) {
			uint64_t bits = 0;
			for (int k = 0; k < kBoxesPerWord; k++) {
				const int64_t j = column * kBoxesPerWord + k;
				if (j <= row || j >= n)
					continue;
				const bool same = categories == nullptr || categories[j] == categories[row];
				if (same && overlaps(a, area(a), boxes + j * 4, area(boxes + j * 4), threshold))
					bits |= 1ULL << k;
			}
			mask[mask_index(span, row, column)] = bits;
		}
	}
}

// What nms_reduce_kernel does, one step after the other on the host: each segment settled word
// by word, the kept boxes' masks folded into the segment's later words. removed_scratch holds
// `span` words, from the segment's first word on. For tests.
inline void suppress_on_host(const uint64_t *mask, int64_t n, int64_t span, const int64_t *categories,
			     uint64_t *removed_scratch, uint8_t *keep)
{
	uint64_t diagonal[kBoxesPerWord];
	for (int64_t begin = 0; begin < n; begin++) {
		if (!starts_segment(categories, begin))
			continue;
		const int64_t end = segment_end(categories, begin, n);
		const int64_t first_word = begin / kBoxesPerWord, last_word = (end - 1) / kBoxesPerWord;
		for (int64_t w = first_word; w <= last_word; w++)
			removed_scratch[w - first_word] = 0;
		for (int64_t w = first_word; w <= last_word; w++) {
			const WordBoxes boxes = word_boxes(w, begin, end);
			for (int64_t i = boxes.lo; i < boxes.hi; i++)
				diagonal[i - w * kBoxesPerWord] = mask[mask_index(span, i, w)];
			const uint64_t kept = settle_word(diagonal, w, boxes, removed_scratch[w - first_word]);
			for (int64_t i = boxes.lo; i < boxes.hi; i++)
				keep[i] = static_cast<uint8_t>((kept >> (i - w * kBoxesPerWord)) & 1ULL);
			for (int64_t column = w + 1; column <= last_word; column++)
				removed_scratch[column - first_word] =
					fold_word(mask, span, w, kept, column, removed_scratch[column - first_word]);
		}
	}
}

} // namespace frcnn::cuda::nms_steps

"""The means pycocotools' COCOeval.summarize takes of the precision arrays of the cases in
tests/detector/test_eval.cpp's Eval.MeansAreNumpysToTheLastBit: np.mean over the values of the
classes with ground truth, shaped [threshold, recall point, class], as numpy adds them (pairwise).
The precision values are those COCOeval.accumulate computes for each case, worked out in the
comments (eps = np.spacing(1), which accumulate adds to tp + fp).
"""
import numpy as np

from reference_common import output_args, write_expected

EPS = np.spacing(1)
THRESHOLDS, RECALL_POINTS = 10, 101


def means(precision):
    """AP, AP50, AP75 and each class's AP of precision[t, r, k], as summarize computes them."""
    def mean(s):
        return float(np.mean(s[s > -1]))
    return {
        "AP": mean(precision),
        "AP50": mean(precision[0]),
        "AP75": mean(precision[5]),
        "per_class": [mean(precision[:, :, k]) for k in range(precision.shape[2])],
    }


def docs_case():
    """docs/training.md's example. The square: a false positive ranked above its one true
    positive at every threshold, tp = [0, 1], fp = [1, 1]: 1 / (2 + eps) at every recall point.
    The circle: found at IoU 0.826, so a true positive (1 / (1 + eps)) at the 7 thresholds up to
    0.80, none above (0)."""
    precision = np.zeros((THRESHOLDS, RECALL_POINTS, 2))
    precision[:, :, 0] = 1 / (2 + EPS)
    precision[:7, :, 1] = 1 / (1 + EPS)
    return means(precision)


def many_classes_case():
    """12 classes (10 x 101 x 12 = 12120 values: more than numpy's buffer of 8192). Class k
    (k = 0..11) has one box, found exactly, and k false positives ranked above it:
    tp = [0, ..., 0, 1], fp = [1, ..., k, k]: 1 / (k + 1 + eps) at every point and threshold."""
    precision = np.zeros((THRESHOLDS, RECALL_POINTS, 12))
    for k in range(12):
        precision[:, :, k] = 1 / (k + 1 + EPS)
    return means(precision)


if __name__ == "__main__":
    write_expected(output_args(), {"docs": docs_case(), "many_classes": many_classes_case()})

// SPDX-License-Identifier: BSD-3-Clause
// COCO-style box AP against hand-computed values. Notation in the comments: T = the 10 IoU
// thresholds .50:.05:.95, R = the 101 recall points 0:.01:1. For one threshold, detections are
// ranked by score; tp/fp are running counts, recall rc = tp / #gt, precision pr = tp / (tp + fp),
// pr is made non-increasing from the right, and the value at recall point r is pr at the first
// rank whose rc >= r (0 past the last rank). AP(t) is the mean over R; AP the mean over T.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common.h"
#include "frcnn/error.h"
#include "frcnn/evaluation.h"

namespace {

using frcnn::EvalDataset;
using frcnn::EvalDetection;
using frcnn::EvalGroundTruth;
using frcnn::EvalImage;
using frcnn::EvalResult;

constexpr double kTol = 1e-12;

EvalGroundTruth gt(double x1, double y1, double x2, double y2, int64_t category = 1,
		   bool crowd = false)
{
	EvalGroundTruth g;
	g.x1 = x1, g.y1 = y1, g.x2 = x2, g.y2 = y2;
	g.category = category;
	g.crowd = crowd;
	return g;
}

EvalDetection det(double x1, double y1, double x2, double y2, double score, int64_t category = 1)
{
	EvalDetection d;
	d.x1 = x1, d.y1 = y1, d.x2 = x2, d.y2 = y2;
	d.score = score;
	d.category = category;
	return d;
}

EvalDataset one_class(std::vector<EvalImage> images)
{
	EvalDataset ds;
	ds.categories = { { 1, "square" } };
	ds.images = std::move(images);
	return ds;
}

EvalImage image(int64_t id, std::vector<EvalGroundTruth> g, std::vector<EvalDetection> d)
{
	EvalImage im;
	im.id = id;
	im.ground_truth = std::move(g);
	im.detections = std::move(d);
	return im;
}

TEST(Eval, PerfectDetectionsGiveOne)
{
	// Every detection is its ground-truth box: at every t, tp = 1, 2, 3 with fp = 0, so pr = 1
	// at every recall point.
	const EvalResult r = frcnn::evaluate_coco(one_class({
		image(0, { gt(10, 10, 50, 50), gt(60, 10, 90, 70) },
		      { det(10, 10, 50, 50, 0.9), det(60, 10, 90, 70, 0.4) }),
		image(1, { gt(0, 0, 20, 30) }, { det(0, 0, 20, 30, 0.7) }),
	}));
	EXPECT_NEAR(r.ap, 1.0, kTol);
	EXPECT_NEAR(r.ap50, 1.0, kTol);
	EXPECT_NEAR(r.ap75, 1.0, kTol);
	ASSERT_EQ(r.per_class.size(), 1u);
	EXPECT_NEAR(r.per_class[0].ap, 1.0, kTol);
	EXPECT_EQ(r.per_class[0].ground_truth, 3);
	EXPECT_EQ(r.per_class[0].detections, 3);
	EXPECT_EQ(r.images, 2);
}

// The means are pycocotools' to the last bit: summarize takes np.mean of the precision values,
// which numpy adds pairwise, not one after the other (docs/training.md's example: AP 0.6, where
// the plain sum gives 0.5999999999999999). The reference script computes them with numpy from
// the precision values each case gives (tests/reference/eval_reference.py).
TEST(Eval, MeansAreNumpysToTheLastBit)
{
	const nlohmann::json expected =
		nlohmann::json::parse(frcnn::test::read_file(frcnn::test::fixtures("expected.json")));
	auto expect_means = [](const EvalResult &r, const nlohmann::json &want) {
		EXPECT_EQ(r.ap, want["AP"].get<double>());
		EXPECT_EQ(r.ap50, want["AP50"].get<double>());
		EXPECT_EQ(r.ap75, want["AP75"].get<double>());
		ASSERT_EQ(r.per_class.size(), want["per_class"].size());
		for (std::size_t k = 0; k < r.per_class.size(); k++)
			EXPECT_EQ(r.per_class[k].ap, want["per_class"][k].get<double>()) << "class " << k;
	};

	// docs/training.md: a square and a circle on image 0, the square found and a square
	// detected on the empty image 1 above it, the circle a pixel off (IoU 90 / 109).
	EvalDataset docs;
	docs.categories = { { 1, "square" }, { 2, "circle" } };
	docs.images = {
		image(0, { gt(0, 0, 10, 10, 1), gt(20, 20, 30, 30, 2) },
		      { det(0, 0, 10, 10, 0.9, 1), det(21, 20, 30, 31, 0.8, 2) }),
		image(1, {}, { det(5, 5, 15, 15, 0.95, 1) }),
	};
	{
		SCOPED_TRACE("docs");
		const EvalResult r = frcnn::evaluate_coco(docs);
		expect_means(r, expected["docs"]);
		EXPECT_EQ(r.ap_small, expected["docs"]["AP"].get<double>()) << "every box is small";
	}

	// Class k of 12: one box on image 0, found, and k false positives on image 1 above it.
	EvalDataset many;
	many.images = { image(0, {}, {}), image(1, {}, {}) };
	for (int k = 0; k < 12; k++) {
		const double x = 20.0 * k;
		many.categories.push_back({ k + 1, "class " + std::to_string(k + 1) });
		many.images[0].ground_truth.push_back(gt(x, 0, x + 10, 10, k + 1));
		many.images[0].detections.push_back(det(x, 0, x + 10, 10, 0.5, k + 1));
		for (int f = 0; f < k; f++)
			many.images[1].detections.push_back(det(x, 0, x + 10, 10, 0.9, k + 1));
	}
	{
		SCOPED_TRACE("many classes");
		expect_means(frcnn::evaluate_coco(many), expected["many_classes"]);
	}
}

TEST(Eval, FalsePositiveRankedAboveTruePositive)
{
	// One gt. Ranked: FP (0.9), TP (0.8): tp = [0, 1], fp = [1, 1], rc = [0, 1],
	// pr = [0, 0.5] -> envelope [0.5, 0.5]. r = 0 takes rank 0, r > 0 rank 1: 0.5 everywhere,
	// at every t. AP = AP50 = AP75 = 0.5.
	const EvalResult fp_first = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10) }, { det(50, 50, 60, 60, 0.9), det(0, 0, 10, 10, 0.8) }),
	}));
	EXPECT_NEAR(fp_first.ap, 0.5, kTol);
	EXPECT_NEAR(fp_first.ap50, 0.5, kTol);
	EXPECT_NEAR(fp_first.ap75, 0.5, kTol);

	// The TP first: rc = [1, 1], pr = [1, 0.5]; every r takes rank 0: AP = 1.
	const EvalResult tp_first = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10) }, { det(50, 50, 60, 60, 0.7), det(0, 0, 10, 10, 0.8) }),
	}));
	EXPECT_NEAR(tp_first.ap, 1.0, kTol);
}

TEST(Eval, FalsePositiveBetweenTwoTruePositives)
{
	// Two gts. Ranked TP (0.9), FP (0.8), TP (0.7): tp = [1, 1, 2], fp = [0, 1, 1],
	// rc = [0.5, 0.5, 1], pr = [1, 1/2, 2/3] -> envelope [1, 2/3, 2/3].
	// r = 0.00..0.50 (51 points) take rank 0 -> 1; r = 0.51..1.00 (50 points) rank 2 -> 2/3.
	// AP(t) = (51 * 1 + 50 * 2/3) / 101 at every t.
	const EvalResult r = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10), gt(20, 0, 30, 10) },
		      { det(0, 0, 10, 10, 0.9), det(50, 50, 60, 60, 0.8), det(20, 0, 30, 10, 0.7) }),
	}));
	const double expected = (51 * 1.0 + 50 * 2.0 / 3.0) / 101;
	EXPECT_NEAR(r.ap, expected, kTol);
	EXPECT_NEAR(r.ap50, expected, kTol);
}

TEST(Eval, TiedScoresKeepFileOrderThenImageOrder)
{
	// Equal scores: detections keep their order within an image (a stable sort), so the FP
	// listed first ranks first -> the 0.5 case above; listed second -> the 1.0 case.
	const EvalResult fp_listed_first = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10) }, { det(50, 50, 60, 60, 0.5), det(0, 0, 10, 10, 0.5) }),
	}));
	EXPECT_NEAR(fp_listed_first.ap, 0.5, kTol);
	const EvalResult tp_listed_first = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10) }, { det(0, 0, 10, 10, 0.5), det(50, 50, 60, 60, 0.5) }),
	}));
	EXPECT_NEAR(tp_listed_first.ap, 1.0, kTol);

	// Across images, ties rank in image id order (COCOeval sorts the image ids), whatever the
	// order of the images in the dataset. FP on image 3, TP on image 7 -> FP first -> 0.5.
	const EvalResult by_id = frcnn::evaluate_coco(one_class({
		image(7, { gt(0, 0, 10, 10) }, { det(0, 0, 10, 10, 0.5) }),
		image(3, {}, { det(0, 0, 10, 10, 0.5) }),
	}));
	EXPECT_NEAR(by_id.ap, 0.5, kTol);
	// TP on image 3, FP on image 7 -> TP first -> 1.
	const EvalResult by_id_swapped = frcnn::evaluate_coco(one_class({
		image(7, {}, { det(0, 0, 10, 10, 0.5) }),
		image(3, { gt(0, 0, 10, 10) }, { det(0, 0, 10, 10, 0.5) }),
	}));
	EXPECT_NEAR(by_id_swapped.ap, 1.0, kTol);
}

TEST(Eval, EqualIouTieGoesToTheLaterGroundTruth)
{
	// gts A = [0,0,10,10] and B = [2,0,12,10]. D1 = [1,0,11,10] (0.9) overlaps both by
	// 9*10 / (100 + 100 - 90) = 9/11 = 0.818; COCOeval keeps the later of equal IoUs: B.
	// D2 = B (0.8): IoU with A = 80/120 = 0.667, with B = 1.
	//  t = .50 .55 .60 .65: D1 -> B, D2 -> A: both TP, AP(t) = 1.
	//  t = .70 .75 .80: D1 -> B, D2: B taken, A below t: FP. rc = [.5, .5], pr = [1, .5]
	//    -> 51 points at 1, 50 past the end at 0: AP(t) = 51/101.
	//  t = .85 .90 .95: D1 matches nothing (FP), D2 -> B: rc = [0, .5], pr = [0, .5]
	//    -> envelope [.5, .5]: 51 points at .5: AP(t) = 25.5/101.
	// AP = (4 + 3 * 51/101 + 3 * 25.5/101) / 10. (Had D1 taken A, AP would be
	// (7 + 3 * 25.5/101) / 10 = 0.776.)
	const EvalResult r = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10), gt(2, 0, 12, 10) },
		      { det(1, 0, 11, 10, 0.9), det(2, 0, 12, 10, 0.8) }),
	}));
	EXPECT_NEAR(r.ap, (4 + 3 * 51.0 / 101 + 3 * 25.5 / 101) / 10, kTol);
	EXPECT_NEAR(r.ap50, 1.0, kTol);
	EXPECT_NEAR(r.ap75, 51.0 / 101, kTol);
}

TEST(Eval, EmptyImageWithDetections)
{
	// Image 0: one gt, found (0.6). Image 1: no gt, one detection (0.9), an FP ranked first:
	// as FalsePositiveRankedAboveTruePositive, AP = 0.5.
	const EvalResult r = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10) }, { det(0, 0, 10, 10, 0.6) }),
		image(1, {}, { det(5, 5, 15, 15, 0.9) }),
		image(2, {}, {}), // nothing at all: no effect
	}));
	EXPECT_NEAR(r.ap, 0.5, kTol);
	EXPECT_EQ(r.images, 3);
	EXPECT_EQ(r.detections, 2);
}

TEST(Eval, ClassWithoutDetectionsScoresZero)
{
	// Class 1 perfect (AP 1). Class 2 has a gt and no detection: rc and pr are empty, every
	// recall point is past the end: AP 0. The mean over the two classes: 0.5.
	EvalDataset ds;
	ds.categories = { { 1, "square" }, { 2, "circle" } };
	ds.images = { image(0, { gt(0, 0, 10, 10, 1), gt(20, 20, 40, 40, 2) },
			    { det(0, 0, 10, 10, 0.9, 1) }) };
	const EvalResult r = frcnn::evaluate_coco(ds);
	ASSERT_EQ(r.per_class.size(), 2u);
	EXPECT_EQ(r.per_class[0].name, "square");
	EXPECT_NEAR(r.per_class[0].ap, 1.0, kTol);
	EXPECT_EQ(r.per_class[1].name, "circle");
	EXPECT_NEAR(r.per_class[1].ap, 0.0, kTol);
	EXPECT_EQ(r.per_class[1].detections, 0);
	EXPECT_NEAR(r.ap, 0.5, kTol);
}

TEST(Eval, ClassesWithoutGroundTruthAreLeftOut)
{
	// Class 3 is a known category with no gt: pycocotools reports -1 for it and leaves it out of
	// the mean, even though it has (false) detections. Detections of category 9, which the
	// ground truth does not know, are not evaluated at all. AP = class 1's = 1.
	EvalDataset ds;
	ds.categories = { { 1, "square" }, { 3, "triangle" } };
	ds.images = { image(0, { gt(0, 0, 10, 10, 1) },
			    { det(0, 0, 10, 10, 0.5, 1), det(30, 30, 40, 40, 0.9, 3),
			      det(0, 0, 10, 10, 0.99, 9) }) };
	const EvalResult r = frcnn::evaluate_coco(ds);
	ASSERT_EQ(r.per_class.size(), 2u);
	EXPECT_NEAR(r.per_class[0].ap, 1.0, kTol);
	EXPECT_EQ(r.per_class[1].ap, -1.0);
	EXPECT_EQ(r.per_class[1].detections, 1);
	EXPECT_NEAR(r.ap, 1.0, kTol);
	EXPECT_NEAR(r.ap50, 1.0, kTol);
	EXPECT_EQ(r.detections, 2);

	// No class with ground truth at all: -1 everywhere.
	EvalDataset none;
	none.categories = { { 1, "square" } };
	none.images = { image(0, {}, { det(0, 0, 10, 10, 0.5) }) };
	const EvalResult empty = frcnn::evaluate_coco(none);
	EXPECT_EQ(empty.ap, -1.0);
	EXPECT_EQ(empty.ap50, -1.0);
}

// One gt [0,0,100,100] and one detection [0,0,100,h] inside it: IoU = h / 100. The detection is
// a TP at the thresholds t <= IoU (AP(t) = 1) and an FP above them (AP(t) = 0).
EvalResult single_overlap(double h)
{
	return frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 100, 100) }, { det(0, 0, 100, h, 0.9) }),
	}));
}

TEST(Eval, IouAroundTheThresholds)
{
	// IoU 0.51: TP only at .50 -> AP = 1/10, AP50 = 1, AP75 = 0.
	EvalResult r = single_overlap(51);
	EXPECT_NEAR(r.ap, 0.1, kTol);
	EXPECT_NEAR(r.ap50, 1.0, kTol);
	EXPECT_NEAR(r.ap75, 0.0, kTol);
	// IoU exactly 0.50 still matches (IoU >= t).
	r = single_overlap(50);
	EXPECT_NEAR(r.ap50, 1.0, kTol);
	EXPECT_NEAR(r.ap, 0.1, kTol);
	// IoU 0.49: an FP everywhere.
	r = single_overlap(49);
	EXPECT_NEAR(r.ap50, 0.0, kTol);
	EXPECT_NEAR(r.ap, 0.0, kTol);
	// IoU 0.76: TP at .50 .55 .60 .65 .70 .75 -> AP = 6/10, AP75 = 1.
	r = single_overlap(76);
	EXPECT_NEAR(r.ap, 0.6, kTol);
	EXPECT_NEAR(r.ap75, 1.0, kTol);
	// IoU 0.74: TP at .50 .. .70 -> AP = 5/10, AP75 = 0.
	r = single_overlap(74);
	EXPECT_NEAR(r.ap, 0.5, kTol);
	EXPECT_NEAR(r.ap75, 0.0, kTol);
	EXPECT_NEAR(r.ap50, 1.0, kTol);
}

TEST(Eval, CrowdRegions)
{
	// gts: A = [0,0,10,10] and a crowd region C = [50,50,100,100]. D2 = [60,60,70,70] (0.95)
	// and D3 = [80,80,90,90] (0.5) lie inside C: IoU with a crowd region is
	// intersection / detection area = 1, so both match C (a crowd region can be matched many
	// times) and are ignored. D1 = A (0.9) is the only ranked detection: AP = 1.
	std::vector<EvalDetection> dets{ det(60, 60, 70, 70, 0.95), det(0, 0, 10, 10, 0.9),
					 det(80, 80, 90, 90, 0.5) };
	const EvalResult crowd = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10), gt(50, 50, 100, 100, 1, true) }, dets),
	}));
	EXPECT_NEAR(crowd.ap, 1.0, kTol);
	EXPECT_EQ(crowd.per_class[0].ground_truth, 1);

	// The same with C a regular box: D2 and D3 have IoU 100/2500 with C: FPs. Two gts.
	// Ranked FP (.95), TP (.9), FP (.5): rc = [0, .5, .5], pr = [0, .5, 1/3] -> envelope
	// [.5, .5, 1/3]; r = 0..0.5 (51 points) -> .5, the rest past the end -> 0.
	// AP = 51 * 0.5 / 101 at every t.
	const EvalResult regular = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10), gt(50, 50, 100, 100) }, dets),
	}));
	EXPECT_NEAR(regular.ap, 25.5 / 101, kTol);

	// A detection that overlaps a regular gt and a crowd region prefers the regular one.
	// A = [0,0,10,10], crowd C = [0,0,100,100], D = [0,0,10,8] (IoU .8 with A, 1 with C).
	// t <= .80 (7 thresholds): D -> A, TP, AP(t) = 1. t >= .85: A is out of reach, D -> C and
	// is ignored: no ranked detection, AP(t) = 0. AP = 7/10.
	const EvalResult prefer = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10), gt(0, 0, 100, 100, 1, true) }, { det(0, 0, 10, 8, 0.9) }),
	}));
	EXPECT_NEAR(prefer.ap, 0.7, kTol);

	// Only crowd regions: no gt that counts -> -1 (left out), as pycocotools.
	const EvalResult only_crowd = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 100, 100, 1, true) }, { det(0, 0, 10, 10, 0.9) }),
	}));
	EXPECT_EQ(only_crowd.ap, -1.0);
}

TEST(Eval, AtMostMaxDetectionsPerImage)
{
	// 100 FPs at 0.9 and the TP at 0.1 on one image: the default limit (100 per image) drops
	// the TP: AP = 0. With a limit of 101, the TP is rank 101: rc = 1 only there, with
	// pr = 1/101, so all 101 recall points take 1/101.
	std::vector<EvalDetection> dets;
	for (int i = 0; i < 100; i++)
		dets.push_back(det(200 + i, 200, 210 + i, 210, 0.9));
	dets.push_back(det(0, 0, 10, 10, 0.1));
	const EvalDataset ds = one_class({ image(0, { gt(0, 0, 10, 10) }, dets) });
	EXPECT_NEAR(frcnn::evaluate_coco(ds).ap, 0.0, kTol);
	EXPECT_EQ(frcnn::evaluate_coco(ds).detections, 100);
	frcnn::EvalParams params;
	params.max_detections = 101;
	EXPECT_NEAR(frcnn::evaluate_coco(ds, params).ap, 1.0 / 101, 1e-9);
}

TEST(Eval, AreaRanges)
{
	// A small gt (10x10 = 100 <= 32^2), found; a large one (100x100 >= 96^2), missed.
	//  all: two gts, one TP: rc = [.5], pr = [1] -> 51 points at 1: 51/101.
	//  small: the large gt is ignored: 1 gt, 1 TP -> 1.
	//  large: the small gt is ignored, the detection matches it and is ignored too; the large
	//    gt is never found -> 0.
	//  medium: no gt in range -> -1.
	const EvalResult r = frcnn::evaluate_coco(one_class({
		image(0, { gt(0, 0, 10, 10), gt(100, 100, 200, 200) }, { det(0, 0, 10, 10, 0.8) }),
	}));
	EXPECT_NEAR(r.ap, 51.0 / 101, kTol);
	EXPECT_NEAR(r.ap_small, 1.0, kTol);
	EXPECT_NEAR(r.ap_large, 0.0, kTol);
	EXPECT_EQ(r.ap_medium, -1.0);
}

// --- Files ----------------------------------------------------------------------------------

std::string temp_file(const std::string &name, const std::string &text)
{
	const std::string path = frcnn::test::program_temp_dir() + name;
	std::ofstream(path) << text;
	return path;
}

TEST(EvalFiles, JsonLinesMatchedByFrameAndLabel)
{
	// Two frames. Frame 0: a square and a circle; frame 1: empty.
	const std::string truth = temp_file("gt.jsonl",
		R"({"frame": 0, "pts": 0, "width": 64, "height": 48, "detections": [)"
		R"({"box": [0, 0, 10, 10], "label": "square", "label_id": 1, "score": 1.0},)"
		R"({"box": [20, 20, 30, 30], "label": "circle", "label_id": 2, "score": 1.0}]})" "\n"
		"\n"
		R"({"frame": 1, "pts": 40000000, "width": 64, "height": 48, "detections": []})" "\n");
	// The square by label_id; the circle by name only (no label_id); a triangle (id 3) the
	// ground truth lacks (ignored); on frame 1 an FP square ranked above the TP (0.95).
	const std::string dets = temp_file("det.jsonl",
		R"({"frame": 1, "width": 64, "height": 48, "detections": [)"
		R"({"box": [5, 5, 15, 15], "label": "square", "label_id": 1, "score": 0.95}]})" "\n"
		R"({"frame": 0, "width": 64, "height": 48, "detections": [)"
		R"({"box": [0, 0, 10, 10], "label": "square", "label_id": 1, "score": 0.9},)"
		R"({"box": [20, 20, 30, 30], "label": "circle", "score": 0.8},)"
		R"({"box": [40, 0, 50, 10], "label": "triangle", "label_id": 3, "score": 0.99}]})" "\n");

	EvalDataset ds = frcnn::load_ground_truth(truth);
	ASSERT_EQ(ds.images.size(), 2u);
	ASSERT_EQ(ds.categories.size(), 2u);
	EXPECT_EQ(ds.categories[0].id, 1);
	EXPECT_EQ(ds.categories[0].name, "square");
	EXPECT_EQ(ds.categories[1].name, "circle");
	frcnn::load_detections(dets, ds);
	const EvalResult r = frcnn::evaluate_coco(ds);
	// square: FP (.95) then TP (.9) -> 0.5; circle: 1; mean 0.75.
	ASSERT_EQ(r.per_class.size(), 2u);
	EXPECT_NEAR(r.per_class[0].ap, 0.5, kTol);
	EXPECT_NEAR(r.per_class[1].ap, 1.0, kTol);
	EXPECT_NEAR(r.ap, 0.75, kTol);
	EXPECT_EQ(r.detections, 3);

	const nlohmann::json out = nlohmann::json::parse(frcnn::eval_result_json(r));
	EXPECT_NEAR(out.at("AP").get<double>(), 0.75, kTol);
	EXPECT_NEAR(out.at("AP50").get<double>(), 0.75, kTol);
	EXPECT_NEAR(out.at("AP75").get<double>(), 0.75, kTol);
	EXPECT_NEAR(out.at("per_class").at("square").get<double>(), 0.5, kTol);
	EXPECT_NEAR(out.at("per_class").at("circle").get<double>(), 1.0, kTol);
	EXPECT_TRUE(out.at("APm").is_null()); // no medium boxes
	EXPECT_EQ(out.at("images").get<int>(), 2);

	const std::string table = frcnn::eval_result_table(r);
	EXPECT_NE(table.find("AP   0.750"), std::string::npos) << table;
	EXPECT_NE(table.find("square"), std::string::npos) << table;
	EXPECT_NE(table.find("detections: at most 100 per image and class"), std::string::npos) << table;
	frcnn::EvalParams one;
	one.max_detections = 1;
	const std::string table_of_one = frcnn::eval_result_table(frcnn::evaluate_coco(ds, one));
	EXPECT_NE(table_of_one.find("detections: at most 1 per image and class"), std::string::npos) << table_of_one;
}

// A frame the detector passed on without running on it ("skipped" in its line: frcnndetect's
// interval) is left out: its ground truth is not missed.
TEST(EvalFiles, FramesTheDetectorDidNotRunAreLeftOut)
{
	const std::string truth = temp_file("gt-interval.jsonl",
		R"({"frame": 0, "width": 64, "height": 48, "detections": [)"
		R"({"box": [0, 0, 10, 10], "label": "square", "label_id": 1}]})" "\n"
		R"({"frame": 1, "width": 64, "height": 48, "detections": [)"
		R"({"box": [5, 0, 15, 10], "label": "square", "label_id": 1}]})" "\n");
	const std::string found = R"({"frame": 0, "width": 64, "height": 48, "detections": [)"
				  R"({"box": [0, 0, 10, 10], "label": "square", "label_id": 1, "score": 0.9}]})" "\n";
	const std::string skipped = temp_file("det-interval.jsonl",
		found + R"({"frame": 1, "width": 64, "height": 48, "detections": [],)"
			R"( "skipped": [{"element": "frcnndetect0", "reason": "interval"}]})" "\n");
	const std::string missed = temp_file("det-missed.jsonl",
		found + R"({"frame": 1, "width": 64, "height": 48, "detections": []})" "\n");

	EvalDataset ds = frcnn::load_ground_truth(truth);
	frcnn::load_detections(skipped, ds);
	const EvalResult r = frcnn::evaluate_coco(ds);
	EXPECT_NEAR(r.ap, 1.0, kTol);
	EXPECT_EQ(r.images, 1);
	EXPECT_EQ(r.images_not_run, 1);
	EXPECT_EQ(r.ground_truth, 1);
	EXPECT_EQ(nlohmann::json::parse(frcnn::eval_result_json(r)).at("images_not_run").get<int>(), 1);
	const std::string table = frcnn::eval_result_table(r);
	EXPECT_NE(table.find("1 frames left out: the detector did not run on them"), std::string::npos) << table;

	EvalDataset run_on_both = frcnn::load_ground_truth(truth);
	frcnn::load_detections(missed, run_on_both);
	const EvalResult with_a_miss = frcnn::evaluate_coco(run_on_both);
	EXPECT_EQ(with_a_miss.images, 2);
	// Recall 1/2 at precision 1: 51 of the 101 recall points.
	EXPECT_NEAR(with_a_miss.ap50, 51.0 / 101, kTol) << "a frame run without finding the square misses it";
}

TEST(EvalFiles, NameOnlyGroundTruth)
{
	// Ground truth without label_id: categories come from the names, and detections match by
	// name whatever id they carry.
	const std::string truth = temp_file("names_gt.jsonl",
		R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label": "circle"}]})" "\n");
	const std::string dets = temp_file("names_det.jsonl",
		R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label": "circle", "label_id": 2, "score": 0.3}]})" "\n");
	EvalDataset ds = frcnn::load_ground_truth(truth);
	frcnn::load_detections(dets, ds);
	const EvalResult r = frcnn::evaluate_coco(ds);
	ASSERT_EQ(r.per_class.size(), 1u);
	EXPECT_EQ(r.per_class[0].name, "circle");
	EXPECT_NEAR(r.ap, 1.0, kTol);
}

// A class named without an id on some ground-truth lines and with one on others is one class,
// whichever line comes first; a name given with two ids stays two classes.
TEST(EvalFiles, AClassNamedWithAndWithoutItsIdIsOneClass)
{
	const std::string name_only = R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label": "square"}]})";
	const std::string with_id =
		R"({"frame": 1, "detections": [{"box": [0, 0, 10, 10], "label": "square", "label_id": 1}]})";
	const std::string dets = temp_file("merge_det.jsonl",
		R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label_id": 1, "score": 0.9}]})" "\n"
		R"({"frame": 1, "detections": [{"box": [0, 0, 10, 10], "label_id": 1, "score": 0.8}]})" "\n");
	for (const bool name_first : { true, false }) {
		SCOPED_TRACE(name_first ? "name-only line first" : "line with the id first");
		const std::string truth = temp_file("merge_gt.jsonl", name_first ? name_only + "\n" + with_id + "\n"
										: with_id + "\n" + name_only + "\n");
		EvalDataset ds = frcnn::load_ground_truth(truth);
		ASSERT_EQ(ds.categories.size(), 1u);
		EXPECT_EQ(ds.categories[0].id, 1);
		frcnn::load_detections(dets, ds);
		const EvalResult r = frcnn::evaluate_coco(ds);
		ASSERT_EQ(r.per_class.size(), 1u);
		EXPECT_EQ(r.per_class[0].ground_truth, 2);
		EXPECT_NEAR(r.ap, 1.0, kTol);
	}
	const std::string two_ids = temp_file("two_ids_gt.jsonl",
		R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label": "car", "label_id": 3},)"
		R"({"box": [20, 0, 30, 10], "label": "car", "label_id": 7}, {"box": [40, 0, 50, 10], "label": "car"}]})" "\n");
	EXPECT_EQ(frcnn::load_ground_truth(two_ids).categories.size(), 2u)
		<< "a name-only box of a name with two ids joined one of them";
}

// A COCO box's width and height are taken as given, as pycocotools does: x + w - x may differ
// from w in the last bits, and an IoU of exactly 0.5 then falls on the other side.
TEST(EvalFiles, CocoBoxSizesAreTakenAsGiven)
{
	const std::string truth = temp_file("size_gt.json", R"({
		"images": [{"id": 1, "width": 200, "height": 200}],
		"categories": [{"id": 1, "name": "a"}],
		"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [49.5, 44.9, 32.9, 39.6]}]})");
	const std::string results = temp_file("size_results.json",
		R"([{"image_id": 1, "category_id": 1, "bbox": [49.5, 44.9, 16.45, 39.6], "score": 0.9}])");
	EvalDataset ds = frcnn::load_ground_truth(truth);
	frcnn::load_detections(results, ds);
	/* pycocotools: IoU = (16.45 * 39.6) / (32.9 * 39.6) = 0.5000000000000002 >= 0.5. */
	EXPECT_NEAR(frcnn::evaluate_coco(ds).ap50, 1.0, kTol);
}

// A category id listed twice in a COCO file is one category (pycocotools keeps them by id, with
// the name listed last): its boxes are scored once.
TEST(EvalFiles, ACocoCategoryListedTwiceIsOne)
{
	const std::string truth = temp_file("dup_gt.json", R"({
		"images": [{"id": 1, "width": 100, "height": 100}],
		"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "a2"}, {"id": 2, "name": "b"}],
		"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
				{"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10]}]})");
	const std::string results = temp_file("dup_results.json",
		R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}])");
	EvalDataset ds = frcnn::load_ground_truth(truth);
	ASSERT_EQ(ds.categories.size(), 2u);
	EXPECT_EQ(ds.categories[0].name, "a2");
	frcnn::load_detections(results, ds);
	const EvalResult r = frcnn::evaluate_coco(ds);
	EXPECT_EQ(r.ground_truth, 2);
	EXPECT_NEAR(r.ap, 0.5, kTol);
}

// The table's class column is as wide as the longest name, however long.
TEST(EvalFiles, TableOfLongClassNames)
{
	EvalDataset ds;
	const std::string name(300, 'x');
	ds.categories = { { 1, name }, { 2, "b" } };
	ds.images = { image(0, { gt(0, 0, 10, 10, 1), gt(20, 0, 30, 10, 2) }, { det(0, 0, 10, 10, 0.9, 1) }) };
	const std::string table = frcnn::eval_result_table(frcnn::evaluate_coco(ds));
	std::vector<std::string> lines;
	std::size_t start = 0;
	for (std::size_t end; (end = table.find('\n', start)) != std::string::npos; start = end + 1)
		lines.push_back(table.substr(start, end - start));
	std::size_t header = 0, first_class = 0;
	for (std::size_t i = 0; i < lines.size(); i++) {
		if (lines[i].rfind("class ", 0) == 0)
			header = i;
		if (lines[i].rfind(name, 0) == 0)
			first_class = i;
	}
	ASSERT_GT(first_class, header) << table;
	EXPECT_EQ(lines[header].size(), lines[first_class].size()) << table;
	EXPECT_EQ(lines[header].find("   AP  "), name.size() + 2) << table; // after the column, right-aligned
	EXPECT_EQ(lines[header + 2].rfind("b ", 0), 0u) << table;
}

TEST(EvalFiles, CocoGroundTruth)
{
	// Images 397 and 12 (listed in that order), category 5 with no annotation (left out), a
	// crowd annotation, bbox as [x, y, w, h].
	const std::string truth = temp_file("coco.json", R"({
		"images": [{"id": 397, "file_name": "a/000397.jpg", "width": 64, "height": 48},
			   {"id": 12, "file_name": "000012.jpg", "width": 64, "height": 48}],
		"categories": [{"id": 5, "name": "dog"}, {"id": 1, "name": "person"}],
		"annotations": [
			{"id": 1, "image_id": 397, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
			{"id": 2, "image_id": 12, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
			{"id": 3, "image_id": 12, "category_id": 1, "bbox": [30, 0, 30, 40], "area": 900, "iscrowd": 1}
		]})");
	EvalDataset ds = frcnn::load_ground_truth(truth);
	EXPECT_TRUE(ds.coco);
	ASSERT_EQ(ds.categories.size(), 2u);
	EXPECT_EQ(ds.categories[0].id, 1); // sorted by id
	EXPECT_EQ(ds.images[1].ground_truth[0].x2, 30);

	// JSON lines: frame 0 is the first listed image (397); frame 1 names image 12 by file
	// name instead. On 12: a TP [10,10,30,30] and a detection inside the crowd region (ignored).
	const std::string dets = temp_file("coco_det.jsonl",
		R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label_id": 1, "score": 0.5}]})" "\n"
		R"({"image": "/data/000012.jpg", "detections": [{"box": [10, 10, 30, 30], "label": 1, "score": 0.6},)"
		R"({"box": [35, 5, 45, 15], "label_id": 1, "score": 0.99}]})" "\n");
	frcnn::load_detections(dets, ds);
	EvalResult r = frcnn::evaluate_coco(ds);
	ASSERT_EQ(r.per_class.size(), 2u);
	EXPECT_NEAR(r.per_class[0].ap, 1.0, kTol);
	EXPECT_EQ(r.per_class[1].ap, -1.0);
	EXPECT_NEAR(r.ap, 1.0, kTol);
	EXPECT_TRUE(nlohmann::json::parse(frcnn::eval_result_json(r)).at("per_class").at("dog").is_null());

	// COCO results instead: an FP on image 397 ranked first -> 2 gts, FP, TP, TP:
	// rc = [0, .5, 1], pr = [0, .5, 2/3] -> envelope [2/3, 2/3, 2/3]: AP = 2/3.
	EvalDataset ds2 = frcnn::load_ground_truth(truth);
	const std::string results = temp_file("coco_results.json", R"([
		{"image_id": 397, "category_id": 1, "bbox": [40, 30, 10, 10], "score": 0.9},
		{"image_id": 397, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
		{"image_id": 12, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.7},
		{"image_id": 12, "category_id": 7, "bbox": [10, 10, 20, 20], "score": 0.7}])");
	frcnn::load_detections(results, ds2);
	r = frcnn::evaluate_coco(ds2);
	EXPECT_NEAR(r.ap, 2.0 / 3.0, kTol);
}

void expect_error(const std::string &gt_text, const std::string &det_text, const std::string &part)
{
	const std::string truth = temp_file("err_gt.jsonl", gt_text);
	const std::string dets = temp_file("err_det.jsonl", det_text);
	try {
		EvalDataset ds = frcnn::load_ground_truth(truth);
		frcnn::load_detections(dets, ds);
		ADD_FAILURE() << "no error; expected one mentioning '" << part << "'";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
	}
}

TEST(EvalFiles, ClearErrors)
{
	const std::string one = R"({"frame": 0, "width": 64, "height": 48, "detections": []})" "\n";
	expect_error(one, R"({"frame": 5, "detections": []})", "frame 5 is not in the ground truth");
	expect_error(one, R"({"frame": 0, "width": 32, "height": 24, "detections": []})",
		     "32x24 but the ground truth's is 64x48");
	expect_error(one, "{\"frame\": 0, \"detections\": [}\n", "err_det.jsonl:1: not valid JSON");
	expect_error(one,
		     R"({"frame": 0, "detections": [{"box": [0, 0, 10], "label": "a", "score": 1}]})",
		     "\"box\" must be an array of 4 numbers");
	expect_error(one, R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label": "a"}]})",
		     "no \"score\"");
	expect_error(one + one, "", "err_gt.jsonl:2: frame 0 appears twice");
	expect_error(R"({"frame": 0, "detections": [{"box": [10, 0, 0, 10], "label": "a"}]})", "",
		     "negative width or height");
	EXPECT_THROW(frcnn::load_ground_truth("/nonexistent/gt.jsonl"), frcnn::Error);
	/* Files that hold nothing to evaluate, and folders (which a stream opens and reads nothing
	 * from), are errors, not an AP of 0 or "n/a". */
	expect_error(one, "", "err_det.jsonl: no lines of detections");
	expect_error("\n", one, "err_gt.jsonl: no frames or images in the ground truth");
	const std::string folder = frcnn::test::program_temp_dir();
	try {
		frcnn::load_ground_truth(folder);
		ADD_FAILURE() << "a folder was read as ground truth";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find("is a folder"), std::string::npos) << e.what();
	}
	EvalDataset timed_truth = frcnn::load_ground_truth(temp_file("err_gt.jsonl", one));
	EXPECT_THROW(frcnn::load_detections(folder, timed_truth), frcnn::Error);
	/* A frame number of both files, but not the same frame (frcnnjson counts the frames it saw,
	 * so after a seek its frame 1 is another than the source's). */
	const std::string timed = R"({"frame": 0, "pts": 0, "width": 64, "height": 48, "detections": []})" "\n"
				  R"({"frame": 1, "pts": 40000000, "width": 64, "height": 48, "detections": []})" "\n";
	expect_error(timed,
		     R"({"frame": 0, "pts": 0, "width": 64, "height": 48, "detections": []})" "\n"
		     R"({"frame": 1, "pts": 1000000000, "width": 64, "height": 48, "detections": []})" "\n",
		     "err_det.jsonl:2: frame 1 has pts 1000000000 but the ground truth's frame 1 has pts 40000000, "
		     "960000000 ns apart where frame 0 was 0;");
	expect_error(timed, R"({"frame": 1, "pts": -5, "detections": []})", "\"pts\" must not be negative");
	/* An entry of a COCO file is named by its place in its list. */
	const std::string coco_truth = R"({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []})";
	expect_error(coco_truth, R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},)"
				 R"({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "0.5"}])",
		     "err_det.jsonl: result 1: \"score\" must be a number");
	expect_error(R"({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [)"
		     R"({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, {"image_id": 2, "category_id": 1}]})",
		     "[]", "err_gt.jsonl: annotations[1]: an annotation names image 2");
	/* Values a conversion would change: an integer beyond 64 bits (wrapped to -1), a size
	 * beyond an int (cut: 4294967360 read as 64), a name that is not a string (nlohmann's type
	 * error, which is no frcnn::Error and named no entry). */
	expect_error(R"({"frame": 18446744073709551615, "detections": []})", "",
		     "\"frame\" must be at most 9223372036854775807, got 18446744073709551615");
	expect_error(R"({"frame": 0, "width": 4294967360, "height": 48, "detections": []})", "",
		     "\"width\" must be from 0 to 2147483647, got 4294967360");
	expect_error(R"({"images": [{"id": 1, "file_name": 5}], "categories": [{"id": 1}], "annotations": []})", "[]",
		     "err_gt.jsonl: images[0]: \"file_name\" must be a string, got a number");
	expect_error(R"({"images": [{"id": 1}], "categories": [{"id": 1, "name": 7}], "annotations": []})", "[]",
		     "err_gt.jsonl: categories[0]: \"name\" must be a string, got a number");
	/* Nesting deeper than a message can show (the text of the value overflowed the stack). */
	expect_error(one,
		     "{\"frame\": 0, \"detections\": [{\"box\": " + std::string(100000, '[') +
			     std::string(100000, ']') + "}]}",
		     "err_det.jsonl: not valid JSON here: nested deeper than 1000 levels");
	expect_error(one,
		     "{\"frame\": 0, \"detections\": []}\n{\"frame\": 1, \"detections\": [{\"box\": " +
			     std::string(100000, '[') + std::string(100000, ']') + "}]}",
		     "err_det.jsonl:2: not valid JSON here: nested deeper than 1000 levels");
	/* Timestamps as far apart as 64 bits allow: the drift between them did overflow. */
	expect_error(R"({"frame": 0, "pts": 9223372036854775807, "detections": []})" "\n"
		     R"({"frame": 1, "pts": 0, "detections": []})" "\n",
		     R"({"frame": 0, "pts": 0, "detections": []})" "\n"
		     R"({"frame": 1, "pts": 9223372036854775807, "detections": []})" "\n",
		     "err_det.jsonl:2: frame 1 has pts 9223372036854775807");
	/* Category ids from 0, in COCO files as in JSON lines (a negative one matched no detection:
	 * AP 0), and areas from 0 (a negative one was taken for none given: the box's area). */
	expect_error(R"({"images": [{"id": 1}], "categories": [{"id": -1, "name": "a"}], "annotations": []})", "[]",
		     "err_gt.jsonl: categories[0]: a category id must not be negative, got -1");
	expect_error(R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label_id": -2}]})", "",
		     "a category id must not be negative, got -2");
	expect_error(R"({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [)"
		     R"({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "area": -5}]})",
		     "[]", "err_gt.jsonl: annotations[0]: an annotation's \"area\" must not be negative, got -5");
	expect_error(R"({"frame": 0, "detections": [{"box": [0, 0, 10, 10], "label": "a", "area": -1.5}]})", "",
		     "\"area\" must not be negative, got -1.5");
}

// A detection line naming its image by a path pairs with the ground-truth image of that name,
// else with the one whose name ends in most of the same path components; two that end alike
// are refused (the first of them was taken, another camera's image of the same file name).
TEST(EvalFiles, ImageNamesPairByTheLongestMatchingEnd)
{
	const std::string truth = temp_file("cams_gt.json",
		R"({"images": [{"id": 1, "file_name": "cam1/0001.jpg"}, {"id": 2, "file_name": "cam2/0001.jpg"}],)"
		R"("categories": [{"id": 1, "name": "a"}], "annotations": [)"
		R"({"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},)"
		R"({"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0}]})");
	const std::string dets = temp_file("cams_det.jsonl",
		R"({"image": "/data/cam2/0001.jpg", "detections": [{"box": [50, 50, 60, 60], "label_id": 1, "score": 0.9}]})" "\n"
		R"({"image": "/data/cam1/0001.jpg", "detections": [{"box": [0, 0, 10, 10], "label_id": 1, "score": 0.8}]})" "\n");
	EvalDataset ds = frcnn::load_ground_truth(truth);
	frcnn::load_detections(dets, ds);
	const EvalResult r = frcnn::evaluate_coco(ds);
	EXPECT_NEAR(r.ap, 1.0, kTol) << "each camera's detection on its own image";

	expect_error(R"({"images": [{"id": 1, "file_name": "cam1/0001.jpg"}, {"id": 2, "file_name": "cam2/0001.jpg"}],)"
		     R"("categories": [{"id": 1}], "annotations": []})",
		     R"({"image": "0001.jpg", "detections": []})",
		     "err_det.jsonl:1: image '0001.jpg' ends as several ground-truth images do ('cam1/0001.jpg', "
		     "'cam2/0001.jpg'...)");
}

// The same pts, or a pts on one side only (or GStreamer's "none"), pair as before; so do pts
// that are all later by the same time (an encoder's delay) give or take a container's rounding.
TEST(EvalFiles, PtsOfBothFilesMustAgreeWhereBothHaveOne)
{
	{
		const std::string truth = temp_file("shift_gt.jsonl",
			R"({"frame": 0, "pts": 0, "detections": []})" "\n"
			R"({"frame": 1, "pts": 33366666, "detections": []})" "\n"
			R"({"frame": 2, "pts": 66733333, "detections": []})" "\n");
		const std::string dets = temp_file("shift_det.jsonl",
			R"({"frame": 0, "pts": 80000000, "detections": []})" "\n"
			R"({"frame": 1, "pts": 113000000, "detections": []})" "\n"
			R"({"frame": 2, "pts": 147000000, "detections": []})" "\n");
		EvalDataset ds = frcnn::load_ground_truth(truth);
		EXPECT_NO_THROW(frcnn::load_detections(dets, ds));
	}
	const std::string truth = temp_file("pts_gt.jsonl",
		R"({"frame": 0, "pts": 0, "detections": [{"box": [0, 0, 10, 10], "label": "a"}]})" "\n"
		R"({"frame": 1, "pts": 40000000, "detections": []})" "\n"
		R"({"frame": 2, "pts": 18446744073709551615, "detections": []})" "\n");
	const std::string dets = temp_file("pts_det.jsonl",
		R"({"frame": 0, "pts": 0, "detections": [{"box": [0, 0, 10, 10], "label": "a", "score": 0.9}]})" "\n"
		R"({"frame": 1, "pts": null, "detections": []})" "\n"
		R"({"frame": 2, "pts": 80000000, "detections": []})" "\n");
	EvalDataset ds = frcnn::load_ground_truth(truth);
	frcnn::load_detections(dets, ds);
	EXPECT_NEAR(frcnn::evaluate_coco(ds).ap, 1.0, kTol);
}

} // namespace

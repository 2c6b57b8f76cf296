// SPDX-License-Identifier: BSD-3-Clause
// COCO-style box evaluation (AP@[.5:.95], AP50, AP75, per-class AP), computed the way
// pycocotools' COCOeval does for iouType "bbox".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace frcnn {

// Boxes are (x1, y1, x2, y2) in pixels; IoU uses w = x2 - x1 and h = y2 - y1, as COCO does.
// A box's width and height as a COCO file gives them ([x, y, width, height]): x2 - x1 may differ
// from them in the last bits, and pycocotools takes them as they are. < 0: x2 - x1, y2 - y1.
struct CocoSize {
	double width = -1, height = -1;
};

struct EvalGroundTruth {
	double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
	CocoSize coco_size;
	int64_t category = 0;
	bool crowd = false;  // COCO's iscrowd: may match many detections, which are then ignored
	double area = -1;    // area used for the small/medium/large ranges; < 0: the box's area
};

struct EvalDetection {
	double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
	CocoSize coco_size;
	int64_t category = 0;
	double score = 0;
};

struct EvalImage {
	int64_t id = 0;		// frame number or COCO image id; images are evaluated in id order
	std::string name;	// file name, when known
	int width = 0, height = 0; // 0 when unknown
	int64_t pts = -1;	   // the frame's timestamp (JSON lines' "pts"); -1 when unknown
	// A detector passed the frame on without running on it (its detections' line has
	// "skipped": frcnndetect's interval, qos, a gap buffer): left out of the evaluation, its
	// ground truth not missed.
	bool not_run = false;
	std::vector<EvalGroundTruth> ground_truth;
	std::vector<EvalDetection> detections;
};

struct EvalCategory {
	int64_t id = 0; // < 0: the ground truth named this category without giving an id
	std::string name;
};

// The categories are those of the ground truth: detections of any other category are not
// evaluated, as in COCOeval.
struct EvalDataset {
	std::vector<EvalCategory> categories;
	std::vector<EvalImage> images;
	// Ground truth read from a COCO file: a detection line's "frame" n is images[n].
	bool coco = false;
};

struct EvalParams {
	int max_detections = 100; // per image and category, highest scores first
};

struct CategoryResult {
	int64_t id = 0;
	std::string name;
	// -1 when the category has no (non-crowd) ground truth, as pycocotools reports it.
	double ap = -1, ap50 = -1, ap75 = -1;
	int ground_truth = 0; // non-crowd ground-truth boxes
	int detections = 0;   // detections evaluated (after the per-image limit)
};

struct EvalResult {
	// Means over the categories that have ground truth; -1 when none has.
	double ap = -1;	  // IoU .50:.05:.95, all areas
	double ap50 = -1;
	double ap75 = -1;
	// COCO's area ranges (each bound belongs to both neighbouring ranges):
	double ap_small = -1;  // area in [0, 32^2]
	double ap_medium = -1; // area in [32^2, 96^2]
	double ap_large = -1;  // area >= 96^2
	std::vector<CategoryResult> per_class; // in the dataset's category order
	int images = 0;		  // evaluated
	int images_not_run = 0;	  // left out: EvalImage::not_run
	int ground_truth = 0;
	int detections = 0;
	int max_detections = 100; // the EvalParams' limit per image and class
};

// Runs the evaluation: greedy matching per image and category (detections by decreasing score,
// stable for ties; each one takes the unmatched ground truth of highest IoU >= the threshold,
// preferring non-crowd boxes), then precision interpolated at 101 recall points.
EvalResult evaluate_coco(const EvalDataset &dataset, const EvalParams &params = {});

// Reads ground truth: JSON lines in frcnnjson's format ({"frame": n, "width": W, "height": H,
// "detections": [{"box": [x1,y1,x2,y2], "label": "name", "label_id": id}]}, optional "iscrowd"
// per box) or a COCO instances file (images, annotations with bbox [x,y,w,h], categories).
// Throws frcnn::Error naming the file, the line and the problem.
EvalDataset load_ground_truth(const std::string &path);

// Adds detections to a dataset: JSON lines in frcnnjson's format or a COCO results file (an
// array of {image_id, category_id, bbox, score}). A line is matched to its image by "image_id",
// else "frame" (the frame number of JSON-lines ground truth, or the position in the images list
// of a COCO file), else "image" (file name). A box's category is its "label_id" (or a numeric
// "label"), else the ground-truth category of the same name. Throws frcnn::Error for a line that
// names no image of the ground truth or whose frame size differs from it.
void load_detections(const std::string &path, EvalDataset &dataset);

// One JSON object: {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class": {name: AP},
// "images", "ground_truth", "detections"}; a value pycocotools gives as -1 (no ground truth)
// is null. Class names that repeat get " (id N)" appended.
std::string eval_result_json(const EvalResult &result);

// The same as a table for people, one line per class.
std::string eval_result_table(const EvalResult &result);

} // namespace frcnn

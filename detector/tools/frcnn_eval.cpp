// SPDX-License-Identifier: BSD-3-Clause
// frcnn-eval: COCO-style box AP of a detections file against a ground-truth file.
#include <cstdio>
#include <exception>
#include <string>

#include "frcnn/error.h"
#include "frcnn/evaluation.h"

namespace {

void usage(FILE *out)
{
	std::fprintf(out,
		     "Usage: frcnn-eval --ground-truth GT --detections DET [--json]\n"
		     "Computes COCO box AP (AP@[.50:.95], AP50, AP75, small/medium/large, per class) as\n"
		     "pycocotools does.\n\n"
		     "  GT   JSON lines as frcnnjson and frcnnshapesrc write them, or a COCO instances\n"
		     "       file (images, annotations, categories)\n"
		     "  DET  JSON lines as frcnnjson writes them, or a COCO results file\n"
		     "Lines are paired by \"frame\" (for a COCO ground truth: the position in its image\n"
		     "list), \"image_id\" or \"image\" (file name); boxes by \"label_id\", else \"label\".\n\n"
		     "Options:\n"
		     "  --ground-truth FILE   the true boxes\n"
		     "  --detections FILE     the detections to score\n"
		     "  --max-detections N    detections kept per image and class (default 100)\n"
		     "  --json                print one JSON object: {\"AP\", \"AP50\", \"AP75\", \"APs\",\n"
		     "                        \"APm\", \"APl\", \"per_class\": {name: AP}, ...}; null where\n"
		     "                        a class has no ground truth\n"
		     "  --help                show this help\n");
}

} // namespace

int main(int argc, char **argv)
{
	std::string truth_path, detections_path;
	bool as_json = false;
	frcnn::EvalParams params;
	try {
		for (int i = 1; i < argc; i++) {
			std::string arg = argv[i];
			if (arg == "--help" || arg == "-h") {
				usage(stdout);
				return 0;
			}
			if (arg == "--json") {
				as_json = true;
				continue;
			}
			if (arg.rfind("--", 0) != 0)
				throw frcnn::Error("unexpected argument '" + arg + "' (see --help)");
			std::string value;
			const auto eq = arg.find('=');
			if (eq != std::string::npos) {
				value = arg.substr(eq + 1);
				arg = arg.substr(0, eq);
			} else if (i + 1 < argc) {
				value = argv[++i];
			} else {
				throw frcnn::Error("option " + arg + " needs a value");
			}
			if (arg == "--ground-truth") {
				truth_path = value;
			} else if (arg == "--detections") {
				detections_path = value;
			} else if (arg == "--max-detections") {
				std::size_t used = 0;
				int n = 0;
				try {
					n = std::stoi(value, &used);
				} catch (const std::exception &) {
					used = 0;
				}
				if (used != value.size() || n < 1)
					throw frcnn::Error("--max-detections needs a whole number >= 1, got '" +
							   value + "'");
				params.max_detections = n;
			} else {
				throw frcnn::Error("unknown option " + arg + " (see --help)");
			}
		}
		if (truth_path.empty() || detections_path.empty())
			throw frcnn::Error("both --ground-truth and --detections are needed (see --help)");
	} catch (const frcnn::Error &e) {
		std::fprintf(stderr, "frcnn-eval: %s\n", e.what());
		return 2;
	}

	try {
		frcnn::EvalDataset dataset = frcnn::load_ground_truth(truth_path);
		frcnn::load_detections(detections_path, dataset);
		const frcnn::EvalResult result = frcnn::evaluate_coco(dataset, params);
		if (as_json)
			std::printf("%s\n", frcnn::eval_result_json(result).c_str());
		else
			std::printf("%s", frcnn::eval_result_table(result).c_str());
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-eval: %s\n", e.what());
		return 1;
	}
	return 0;
}

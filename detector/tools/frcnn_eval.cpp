// SPDX-License-Identifier: BSD-3-Clause
// frcnn-eval: COCO-style box AP of a detections file against a ground-truth file.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli.h"
#include "frcnn/error.h"
#include "frcnn/evaluation.h"

namespace {

void usage(FILE *out)
{
	std::fprintf(out,
		     "Usage: frcnn-eval --ground-truth GT --detections DET [--json] [--max-detections N]\n"
		     "Computes COCO box AP (AP@[.50:.95], AP50, AP75, small/medium/large, per class) as\n"
		     "pycocotools does.\n\n"
		     "  GT   JSON lines as frcnnjson and frcnnshapesrc write them, or a COCO instances\n"
		     "       file (images, annotations, categories)\n"
		     "  DET  JSON lines as frcnnjson writes them, or a COCO results file\n"
		     "Lines are paired by \"image_id\", else \"frame\" (for a COCO ground truth: the\n"
		     "position in its image list), else \"image\" (file name); boxes by \"label_id\", else\n"
		     "\"label\". Frames whose detections' line has \"skipped\" (frcnnjson's mark of a frame\n"
		     "the detector did not run on: interval, qos) are left out.\n"
		     "Exit status: 0 scored, 1 a file cannot be read or makes no sense, 2 bad options.\n\n"
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
			const auto arg = frcnn::cli::next_arg(argc, argv, i, {"--json"});
			if (arg.name == "--help" || arg.name == "-h") {
				usage(stdout);
				return frcnn::cli::help_status("frcnn-eval");
			}
			if (!arg.option())
				throw frcnn::Error("unexpected argument '" + arg.name + "' (see --help)");
			if (arg.name == "--json")
				as_json = true;
			else if (arg.name == "--ground-truth")
				truth_path = arg.value;
			else if (arg.name == "--detections")
				detections_path = arg.value;
			else if (arg.name == "--max-detections")
				params.max_detections = frcnn::cli::to_int(arg.name, arg.value, 1);
			else
				throw frcnn::Error("unknown option " + arg.name + " (see --help)");
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
		/* Written whole: a class name may hold a NUL character. */
		const std::string text = as_json ? frcnn::eval_result_json(result) + "\n" : frcnn::eval_result_table(result);
		errno = 0;
		if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
			throw frcnn::Error(std::string("cannot write the results to standard output") +
					   (errno ? std::string(": ") + std::strerror(errno) : ""));
	} catch (const std::exception &e) {
		std::fprintf(stderr, "frcnn-eval: %s\n", frcnn::cli::error_text(e).c_str());
		return 1;
	}
	return 0;
}

// SPDX-License-Identifier: BSD-3-Clause
// Writes an untrained, seeded checkpoint for the element tests:
//   make_weights OUT.pth PRESET NUM_CLASSES SEED
// The same seed gives the same file, so the tests' expectations are computed from it, not stored.

#include <cstdlib>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include "frcnn/checkpoint.h"
#include "frcnn/config.h"
#include "frcnn/model.h"

int main(int argc, char **argv)
{
	if (argc != 5) {
		std::cerr << "usage: " << argv[0] << " OUT.pth PRESET NUM_CLASSES SEED\n";
		return 2;
	}
	try {
		frcnn::ModelConfig config = frcnn::model_preset(argv[2]);
		config.num_classes = std::atoi(argv[3]);
		torch::manual_seed(std::strtoull(argv[4], nullptr, 10));
		frcnn::FasterRCNN model(config);
		frcnn::write_checkpoint(argv[1], model->state_dict());
	} catch (const std::exception &e) {
		std::cerr << argv[0] << ": " << e.what() << "\n";
		return 1;
	}
	return 0;
}

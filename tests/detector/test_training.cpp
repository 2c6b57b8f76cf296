// SPDX-License-Identifier: BSD-3-Clause
// Training mode against torchvision's (tests/reference/training_reference.py): the four losses
// within 1e-4 relative and parameter gradients within 1e-3 relative, with samplers that keep
// every candidate; the losses go down when training on a fixed batch; invalid targets are refused
// with torchvision's messages.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common.h"
#include "frcnn/checkpoint.h"
#include "frcnn/error.h"
#include "frcnn/model.h"

using nlohmann::json;
using namespace frcnn;

namespace {

const json &reference()
{
	static json ref = json::parse(test::read_file(test::fixtures("expected.json")));
	return ref;
}

ModelConfig reference_config()
{
	const json &r = reference();
	ModelConfig c = model_preset("fasterrcnn_resnet50_fpn");
	c.arch = "resnet18_fpn";
	c.resnet_depth = 18;
	c.num_classes = r["num_classes"];
	c.min_size = r["min_size"];
	c.max_size = r["max_size"];
	c.rpn_batch_size_per_image = r["keep_all"];
	c.box_batch_size_per_image = r["keep_all"];
	return c;
}

struct Batch {
	std::vector<torch::Tensor> images;
	std::vector<Target> targets;
};

Batch reference_batch()
{
	Batch b;
	for (const auto &image : reference()["images"]) {
		const int64_t h = image["height"], w = image["width"];
		std::string bytes = test::read_file(image["file"]);
		b.images.push_back(torch::from_blob(bytes.data(), {h, w, 3}, torch::kUInt8)
					   .clone()
					   .permute({2, 0, 1})
					   .to(torch::kFloat32) /
				   255);
		std::vector<float> boxes;
		for (const auto &box : image["boxes"])
			for (const auto &v : box)
				boxes.push_back(v.get<float>());
		std::vector<int64_t> labels = image["labels"];
		b.targets.push_back({torch::tensor(boxes).reshape({-1, 4}), torch::tensor(labels)});
	}
	return b;
}

double relative_error(const torch::Tensor &a, const torch::Tensor &b)
{
	return ((a - b).norm() / b.norm().clamp_min(1e-12)).item<double>();
}

} // namespace

TEST(Training, LossesAndGradientsMatchTorchvision)
{
	torch::set_num_threads(2);
	FasterRCNN model(reference_config());
	model->load_state_dict(read_checkpoint(test::fixtures("weights.pth")));
	model->train();
	auto batch = reference_batch();
	auto result = model->run(batch.images, &batch.targets);
	ASSERT_EQ(result.losses.size(), 4u);
	torch::Tensor total = torch::zeros({});
	for (const auto &[name, expected] : reference()["losses"].items()) {
		ASSERT_TRUE(result.losses.count(name)) << name;
		const double got = result.losses[name].item<double>();
		EXPECT_NEAR(got, expected.get<double>(), 1e-4 * std::abs(expected.get<double>())) << name;
		total = total + result.losses[name];
	}
	total.backward();

	std::map<std::string, torch::Tensor> params;
	for (auto &p : model->named_parameters())
		params[p.key()] = p.value();
	for (const auto &[name, g] : reference()["gradients"].items()) {
		std::vector<int64_t> shape = g["shape"];
		std::string bytes = test::read_file(g["file"]);
		auto expected = torch::from_blob(bytes.data(), shape, torch::kFloat32).clone();
		ASSERT_TRUE(params.count(name)) << name;
		ASSERT_TRUE(params[name].grad().defined()) << name << " got no gradient";
		EXPECT_LE(relative_error(params[name].grad(), expected), 1e-3) << name;
	}
}

// An image without objects (an empty target: COCO's images without annotations) trains as in
// torchvision: all its proposals are background, it adds to the classification losses only.
TEST(Training, ImagesWithoutObjectsTrainAsInTorchvision)
{
	torch::set_num_threads(2);
	FasterRCNN model(reference_config());
	model->load_state_dict(read_checkpoint(test::fixtures("weights.pth")));
	model->train();
	auto batch = reference_batch();
	batch.targets[1] = {torch::zeros({0, 4}), torch::zeros({0}, torch::kInt64)};
	auto result = model->run(batch.images, &batch.targets);
	ASSERT_EQ(result.losses.size(), 4u);
	torch::Tensor total = torch::zeros({});
	for (const auto &[name, expected] : reference()["losses_second_without_objects"].items()) {
		ASSERT_TRUE(result.losses.count(name)) << name;
		const double got = result.losses[name].item<double>();
		EXPECT_NEAR(got, expected.get<double>(), 1e-4 * std::abs(expected.get<double>())) << name;
		// Not the losses of the batch with both images' objects.
		EXPECT_NE(expected.get<double>(), reference()["losses"][name].get<double>()) << name;
		total = total + result.losses[name];
	}
	total.backward();
	for (auto &p : model->named_parameters()) {
		if (!p.value().requires_grad())
			continue;
		ASSERT_TRUE(p.value().grad().defined() && torch::isfinite(p.value().grad()).all().item<bool>())
			<< p.key();
	}
}

TEST(Training, FrozenLayersGetNoGradient)
{
	FasterRCNN model(reference_config()); // trainable_backbone_layers 3: conv1 and layer1 frozen
	for (auto &p : model->named_parameters()) {
		const bool frozen = p.key().rfind("backbone.body.conv1", 0) == 0 ||
				    p.key().rfind("backbone.body.layer1", 0) == 0;
		EXPECT_EQ(p.value().requires_grad(), !frozen) << p.key();
	}
	model->freeze_backbone_layers(0);
	for (auto &p : model->named_parameters()) {
		if (p.key().rfind("backbone.body.", 0) == 0) {
			EXPECT_FALSE(p.value().requires_grad()) << p.key();
		}
	}
	EXPECT_THROW(model->freeze_backbone_layers(6), Error);
}

TEST(Training, LossesGoDownOnAFixedBatch)
{
	torch::manual_seed(3);
	ModelConfig config = model_preset("tiny");
	config.num_classes = 7;
	config.min_size = 160;
	config.max_size = 224;
	config.rpn_pre_nms_top_n_train = 300;
	config.rpn_post_nms_top_n_train = 150;
	config.box_batch_size_per_image = 128;
	FasterRCNN model(config);
	model->train();
	auto batch = reference_batch();
	torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
	double first = 0, last = 0;
	for (int step = 0; step < 20; step++) {
		auto result = model->run(batch.images, &batch.targets);
		torch::Tensor total = torch::zeros({});
		for (auto &l : result.losses)
			total = total + l.second;
		sgd.zero_grad();
		total.backward();
		sgd.step();
		if (step == 0)
			first = total.item<double>();
		last = total.item<double>();
	}
	EXPECT_LT(last, 0.7 * first) << "first " << first << ", last " << last;
}

TEST(Training, InvalidTargetsAreRefusedWithTorchvisionsMessages)
{
	FasterRCNN model(reference_config());
	model->train();
	auto image = torch::rand({3, 64, 80});
	auto expect_error = [&](Target t, const std::string &message) {
		std::vector<Target> targets{t};
		try {
			model->run({image}, &targets);
			ADD_FAILURE() << "accepted: " << message;
		} catch (const Error &e) {
			EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
		}
	};
	expect_error({torch::tensor({10.f, 10.f, 10.f, 20.f}).reshape({1, 4}), torch::tensor({int64_t(1)})},
		     "All bounding boxes should have positive height and width. Found invalid box [10, 10, 10, 20] "
		     "for target at index 0.");
	expect_error({torch::rand({2, 5}), torch::tensor({int64_t(1), int64_t(2)})},
		     "Expected target boxes to be a tensor of shape [N, 4], got [2, 5].");
	expect_error({torch::tensor({1.f, 1.f, 9.f, 9.f}).reshape({1, 4}), torch::tensor({int64_t(7)})},
		     "Target labels must be in 1..6");
	expect_error({torch::tensor({1.f, 1.f, 9.f, 9.f}).reshape({1, 4}), torch::tensor({int64_t(1), int64_t(2)})},
		     "Expected target labels to be a tensor of shape [1]");
	// Training mode without targets.
	EXPECT_THROW(model->run({image}), Error);
}

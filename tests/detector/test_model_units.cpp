// SPDX-License-Identifier: BSD-3-Clause
// The pieces of the model that are easy to get subtly wrong, against values torchvision computed
// (tests/reference/model_units_reference.py).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common.h"
#include "frcnn/error.h"
#include "frcnn/model.h"
#include "parts.h"
#include "proposal_cases.h"

using nlohmann::json;
using namespace frcnn;
namespace fd = frcnn::detail;

namespace {

const json &reference()
{
	static json ref = json::parse(test::read_file(test::fixtures("expected.json")));
	return ref;
}

torch::Tensor to_tensor(const json &j)
{
	std::vector<float> flat;
	std::vector<int64_t> shape;
	const json *level = &j;
	while (level->is_array()) {
		shape.push_back((int64_t)level->size());
		if (level->empty())
			break;
		level = &(*level)[0];
	}
	std::function<void(const json &)> walk = [&](const json &v) {
		if (v.is_array())
			for (const auto &e : v)
				walk(e);
		else
			flat.push_back(v.get<float>());
	};
	walk(j);
	return torch::tensor(flat).reshape(shape);
}

} // namespace

TEST(Resize, SizesMatchTorchvision)
{
	const json &cases = reference()["resize"];
	ASSERT_GE(cases.size(), 10u);
	for (const auto &c : cases) {
		auto size = fd::resized_size(c["in"][0], c["in"][1], c["min_size"].get<double>(),
						 c["max_size"].get<double>());
		EXPECT_EQ(size.first, c["out"][0].get<int64_t>()) << c.dump();
		EXPECT_EQ(size.second, c["out"][1].get<int64_t>()) << c.dump();
	}
}

TEST(Resize, BatchIsPaddedToMultipleOf32)
{
	for (const auto &c : reference()["resize"]) {
		ModelConfig config;
		config.min_size = c["min_size"];
		config.max_size = c["max_size"];
		const int64_t h = c["in"][0], w = c["in"][1];
		auto batch = fd::transform_images(config, {torch::rand({3, h, w})}, nullptr);
		EXPECT_EQ(batch.batch.size(2), c["batch"][0].get<int64_t>()) << c.dump();
		EXPECT_EQ(batch.batch.size(3), c["batch"][1].get<int64_t>()) << c.dump();
		EXPECT_EQ(batch.image_sizes[0].first, c["out"][0].get<int64_t>());
		// The padding is zero.
		EXPECT_EQ(batch.batch.index({0, torch::indexing::Slice(), torch::indexing::Slice(batch.image_sizes[0].first)})
				  .abs()
				  .sum()
				  .item<float>(),
			  0.0f);
	}
}

TEST(Anchors, CellAnchorsAndGridMatchTorchvision)
{
	const json &a = reference()["anchors"];
	ModelConfig config;
	fd::AnchorGenerator gen(config.anchor_sizes, config.aspect_ratios);
	for (size_t level = 0; level < 5; level++)
		EXPECT_TRUE(torch::equal(gen.cell_anchors(level), to_tensor(a["cell_anchors"][level])))
			<< "level " << level << ": " << gen.cell_anchors(level);
	std::vector<torch::Tensor> features;
	for (const auto &s : a["feature_sizes"])
		features.push_back(torch::zeros({1, 1, s[0].get<int64_t>(), s[1].get<int64_t>()}));
	auto anchors = gen.grid_anchors(features, a["batch"][0], a["batch"][1]);
	ASSERT_EQ(anchors.size(0), a["count"].get<int64_t>());
	for (const auto &[index, expected] : a["samples"].items()) {
		auto row = anchors[std::stoll(index)];
		EXPECT_TRUE(torch::equal(row, to_tensor(expected))) << "anchor " << index << ": " << row;
	}
	// The 'pool' level of an 800x1088 batch is 13x17: its stride is 61 down and 64 across.
	const int64_t n = anchors.size(0);
	auto last = anchors[n - 1];		   // row 12, column 16, third cell anchor
	auto first = anchors[n - 13 * 17 * 3 + 2]; // row 0, column 0, third cell anchor
	EXPECT_EQ((last[0] - first[0]).item<float>(), 16 * 64.0f);
	EXPECT_EQ((last[1] - first[1]).item<float>(), 12 * 61.0f);
}

TEST(BoxCoder, DecodeAndEncodeMatchTorchvisionIncludingTheClamp)
{
	const json &d = reference()["decode"];
	auto boxes = to_tensor(d["boxes"]);
	auto codes = to_tensor(d["codes"]);
	fd::BoxCoder rpn({1, 1, 1, 1}), roi({10, 10, 5, 5});
	auto rpn_out = rpn.decode(codes, boxes);
	auto roi_out = roi.decode(codes, boxes);
	EXPECT_TRUE(torch::allclose(rpn_out, to_tensor(d["rpn"]), 1e-5, 1e-3));
	EXPECT_TRUE(torch::allclose(roi_out, to_tensor(d["roi"]), 1e-5, 1e-3));
	// The clamp: a width delta of 50 decodes to exp(log(1000/16)) times the width, not exp(50).
	const float w0 = (boxes[0][2] - boxes[0][0]).item<float>();
	const float decoded_w = (rpn_out[0][0][2] - rpn_out[0][0][0]).item<float>();
	EXPECT_NEAR(decoded_w, w0 * 1000.0f / 16.0f, 1e-3 * w0 * 1000.0f / 16.0f);
	EXPECT_TRUE(torch::allclose(rpn.encode(to_tensor(d["rpn_encode_gt"]), boxes), to_tensor(d["rpn_encode"]), 1e-4,
				    1e-4));
	EXPECT_TRUE(torch::allclose(roi.encode(to_tensor(d["roi_encode_gt"]), boxes), to_tensor(d["roi_encode"]), 1e-4,
				    1e-4));
}

TEST(LevelMapper, MatchesTorchvision)
{
	const json &l = reference()["levels"];
	auto levels = fd::MultiScaleRoIAlign::map_levels(to_tensor(l["boxes"]), 2, 5);
	auto expected = to_tensor(l["levels"]).to(torch::kInt64);
	EXPECT_TRUE(torch::equal(levels, expected)) << levels << "\nexpected\n" << expected;
}

TEST(ResizeBoxes, MatchesTorchvision)
{
	const json &r = reference()["resize_boxes"];
	auto out = fd::resize_boxes(to_tensor(r["boxes"]), {r["from"][0], r["from"][1]}, {r["to"][0], r["to"][1]});
	EXPECT_TRUE(torch::allclose(out, to_tensor(r["out"]), 0, 1e-4));
}

// The whole batch's boxes resized in one product (what the model runs) give the bits of the
// single image's form, for images of other sizes, an image without boxes, float and double.
TEST(ResizeBoxes, BatchFormGivesTheSameBitsAsPerImage)
{
	torch::manual_seed(3);
	const std::vector<fd::ImageSize> resized{{800, 1066}, {800, 1333}, {480, 640}, {600, 600}};
	const std::vector<fd::ImageSize> original{{480, 640}, {1080, 1920}, {479, 641}, {333, 777}};
	for (auto dtype : {torch::kFloat, torch::kDouble}) {
		std::vector<torch::Tensor> boxes;
		for (int64_t n : {17, 100, 0, 3})
			boxes.push_back(torch::rand({n, 4}, dtype) * 800);
		const auto batch = fd::resize_boxes(boxes, resized, original);
		ASSERT_EQ(batch.size(), boxes.size());
		for (size_t i = 0; i < boxes.size(); i++) {
			const auto single = fd::resize_boxes(boxes[i], resized[i], original[i]);
			EXPECT_EQ(batch[i].scalar_type(), dtype);
			EXPECT_TRUE(torch::equal(batch[i], single)) << "image " << i << ", " << dtype;
		}
	}
	EXPECT_THROW(fd::resize_boxes(std::vector<torch::Tensor>{torch::zeros({1, 4})}, resized, original), frcnn::Error);
}

TEST(StateDict, KeysAreTorchvisions)
{
	FasterRCNN model(model_preset("fasterrcnn_resnet50_fpn"));
	auto sd = model->state_dict();
	EXPECT_EQ(sd.size(), 295u) << "torchvision's fasterrcnn_resnet50_fpn has 295 tensors";
	std::map<std::string, std::vector<int64_t>> shapes;
	for (auto &[k, v] : sd)
		shapes[k] = v.sizes().vec();
	EXPECT_EQ(shapes["backbone.body.conv1.weight"], (std::vector<int64_t>{64, 3, 7, 7}));
	EXPECT_EQ(shapes["backbone.body.layer4.2.bn3.running_var"], (std::vector<int64_t>{2048}));
	EXPECT_EQ(shapes["backbone.fpn.inner_blocks.3.0.weight"], (std::vector<int64_t>{256, 2048, 1, 1}));
	EXPECT_EQ(shapes["rpn.head.conv.0.0.weight"], (std::vector<int64_t>{256, 256, 3, 3}));
	EXPECT_EQ(shapes["rpn.head.cls_logits.weight"], (std::vector<int64_t>{3, 256, 1, 1}));
	EXPECT_EQ(shapes["roi_heads.box_head.fc6.weight"], (std::vector<int64_t>{1024, 12544}));
	EXPECT_EQ(shapes["roi_heads.box_predictor.bbox_pred.weight"], (std::vector<int64_t>{364, 1024}));
	// FrozenBatchNorm2d holds buffers, not parameters, so this is the published num_params.
	int64_t params = 0;
	for (auto &p : model->parameters())
		params += p.numel();
	EXPECT_EQ(params, 41755286);
}

TEST(StateDict, RejectsMissingUnexpectedAndMisshapedKeysByName)
{
	FasterRCNN model(model_preset("tiny"));
	Checkpoint good;
	good.tensors = model->state_dict();

	Checkpoint missing = good;
	missing.tensors.erase(missing.tensors.begin() + 3);
	const std::string missing_name = good.tensors[3].first;
	try {
		model->load_state_dict(missing);
		FAIL() << "a missing key was accepted";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("missing: " + missing_name), std::string::npos) << e.what();
	}

	Checkpoint extra = good;
	extra.tensors.emplace_back("roi_heads.mask_head.weight", torch::zeros({2}));
	try {
		model->load_state_dict(extra);
		FAIL() << "an unexpected key was accepted";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("unexpected: roi_heads.mask_head.weight"), std::string::npos)
			<< e.what();
	}

	// A checkpoint with a different number of classes: shapes name both sides.
	ModelConfig other = model_preset("tiny");
	other.num_classes = 5;
	Checkpoint wrong;
	wrong.tensors = FasterRCNN(other)->state_dict();
	try {
		model->load_state_dict(wrong);
		FAIL() << "mis-shaped tensors were accepted";
	} catch (const Error &e) {
		const std::string m = e.what();
		EXPECT_NE(m.find("roi_heads.box_predictor.cls_score.weight (checkpoint [5, 256], model [91, 256])"),
			  std::string::npos)
			<< m;
		EXPECT_NE(m.find("num_classes"), std::string::npos) << m;
	}

	EXPECT_NO_THROW(model->load_state_dict(good));
}

// Weights that fit but would run to no detections or made-up ones, without a word, are refused,
// naming the first damaged tensor; the model keeps the weights it had.
TEST(StateDict, RefusesValuesThatAreNotFiniteAndNegativeVariances)
{
	FasterRCNN model(model_preset("tiny"));
	Checkpoint good;
	for (auto &[name, tensor] : model->state_dict())
		good.tensors.emplace_back(name, tensor.clone());
	const auto find = [](Checkpoint &checkpoint, const std::string &name) -> torch::Tensor & {
		for (auto &[key, tensor] : checkpoint.tensors)
			if (key == name)
				return tensor;
		throw std::runtime_error("no tensor " + name);
	};
	struct Case {
		const char *name;
		double value;
		const char *said;
		int64_t at; // the element damaged; -1: the last (amid a large tensor's vectorised reads)
	};
	for (const Case &c : { Case{ "roi_heads.box_head.fc6.bias", std::nan(""), "values that are not finite", 0 },
			       Case{ "roi_heads.box_head.fc6.weight", std::nan(""), "values that are not finite", -1 },
			       Case{ "roi_heads.box_head.fc6.weight", -std::nan(""), "values that are not finite", 1001 },
			       Case{ "rpn.head.conv.0.0.weight", INFINITY, "values that are not finite", 0 },
			       Case{ "rpn.head.conv.0.0.weight", -INFINITY, "values that are not finite", 37 },
			       Case{ "backbone.body.bn1.running_var", -1.0, "batch-norm variances below 0", 0 },
			       Case{ "backbone.body.bn1.running_var", -1e-30, "batch-norm variances below 0", -1 } }) {
		SCOPED_TRACE(std::string(c.name) + " at " + std::to_string(c.at));
		Checkpoint damaged = good;
		torch::Tensor &tensor = find(damaged, c.name);
		tensor = tensor.clone();
		tensor.view(-1)[c.at < 0 ? tensor.numel() - 1 : c.at] = c.value;
		find(damaged, "roi_heads.box_predictor.bbox_pred.bias") =
			torch::full_like(find(good, "roi_heads.box_predictor.bbox_pred.bias"), -INFINITY);
		try {
			model->load_state_dict(damaged);
			FAIL() << "damaged weights were accepted";
		} catch (const DamagedWeightsError &e) {
			const std::string m = e.what();
			const std::string first =
				std::string(c.name) < "roi_heads.box_predictor.bbox_pred.bias" ? c.name : "roi_heads.box_predictor.bbox_pred.bias";
			EXPECT_NE(m.find(c.said), std::string::npos) << m;
			EXPECT_NE(m.find("'" + first + "' has "), std::string::npos) << m;
			EXPECT_NE(m.find("(1 other tensor is damaged too)"), std::string::npos) << m;
		}
		for (auto &[name, tensor] : model->state_dict())
			EXPECT_TRUE(torch::equal(tensor, find(good, name))) << name << " changed";
	}
	/* Checked as the model takes them: float64 values beyond float's range are infinite there. */
	Checkpoint wide = good;
	for (auto &[name, tensor] : wide.tensors)
		if (tensor.is_floating_point())
			tensor = tensor.to(torch::kFloat64);
	find(wide, "roi_heads.box_head.fc6.bias").view(-1)[0] = 1e300;
	EXPECT_THROW(model->load_state_dict(wide), DamagedWeightsError);
	EXPECT_NO_THROW(model->load_state_dict(good));
}

TEST(StateDict, RenamesPreVersion2KeysLikeTorchvision)
{
	FasterRCNN source(model_preset("tiny"));
	FasterRCNN target(model_preset("tiny"));
	Checkpoint old;
	for (auto &[k, v] : source->state_dict()) {
		std::string key = k;
		for (const char *from : {".inner_blocks.", ".layer_blocks."}) {
			auto pos = key.find(from);
			if (pos != std::string::npos)
				key = key.replace(key.find(".0.", pos + 1), 3, ".");
		}
		if (key.rfind("rpn.head.conv.0.0.", 0) == 0)
			key = "rpn.head.conv." + key.substr(18);
		old.tensors.emplace_back(key, v);
	}
	bool renamed = false;
	for (auto &[k, v] : old.tensors)
		renamed |= k == "backbone.fpn.inner_blocks.0.weight" || k == "rpn.head.conv.weight";
	ASSERT_TRUE(renamed);
	// No _metadata versions: the old names are upgraded.
	ASSERT_NO_THROW(target->load_state_dict(old));
	auto a = source->state_dict(), b = target->state_dict();
	for (size_t i = 0; i < a.size(); i++)
		EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
	// With version 2 recorded for the modules, old names are not renamed and so do not fit.
	old.module_versions["backbone.fpn"] = 2;
	old.module_versions["rpn.head"] = 2;
	EXPECT_THROW(target->load_state_dict(old), Error);
}

TEST(Model, RejectsBadImages)
{
	FasterRCNN model(model_preset("tiny"));
	EXPECT_THROW(model->forward({torch::rand({1, 32, 32})}), Error);
	EXPECT_THROW(model->forward({torch::rand({3, 0, 32})}), Error);
	EXPECT_THROW(model->forward({}), Error);
	EXPECT_THROW(model_preset("resnet9000"), Error);
}

namespace {

// A ResNet trunk with random frozen statistics (so that the batch norms do something).
frcnn::detail::ResNetBody random_trunk(uint64_t seed)
{
	torch::manual_seed(seed);
	frcnn::detail::ResNetBody body(model_preset("tiny"));
	torch::NoGradGuard no_grad;
	for (auto &m : body->modules(/*include_self=*/false)) {
		if (auto *bn = dynamic_cast<frcnn::detail::FrozenBatchNorm2dImpl *>(m.get())) {
			bn->weight.uniform_(0.5, 1.5);
			bn->bias.uniform_(-0.5, 0.5);
			bn->running_mean.uniform_(-0.5, 0.5);
			bn->running_var.uniform_(0.5, 2.0);
		}
	}
	return body;
}

} // namespace

TEST(FrozenBatchNorm, PreparedScaleGivesTheSameBits)
{
	auto body = random_trunk(1);
	torch::NoGradGuard no_grad;
	auto x = torch::randn({2, 3, 64, 96});
	auto before = body->forward(x);
	for (auto &m : body->modules(false))
		if (auto *bn = dynamic_cast<frcnn::detail::FrozenBatchNorm2dImpl *>(m.get()))
			bn->prepare();
	auto after = body->forward(x);
	ASSERT_EQ(before.size(), after.size());
	for (size_t i = 0; i < before.size(); i++)
		EXPECT_TRUE(torch::equal(before[i], after[i])) << "level " << i;
}

TEST(FrozenBatchNorm, FoldingIntoConvolutionsKeepsTheOutput)
{
	auto body = random_trunk(2);
	torch::NoGradGuard no_grad;
	auto x = torch::randn({2, 3, 64, 96});
	auto before = body->forward(x);
	frcnn::detail::fold_frozen_batch_norm(*body);
	size_t folded = 0, norms = 0;
	for (auto &m : body->modules(false)) {
		if (auto *bn = dynamic_cast<frcnn::detail::FrozenBatchNorm2dImpl *>(m.get())) {
			norms++;
			folded += bn->folded();
		}
	}
	EXPECT_EQ(folded, norms) << "every batch norm of the trunk follows a convolution";
	auto after = body->forward(x);
	for (size_t i = 0; i < before.size(); i++) {
		const double scale = before[i].abs().max().item<double>();
		const double diff = (before[i] - after[i]).abs().max().item<double>();
		EXPECT_LE(diff, 1e-5 * scale) << "level " << i;
		EXPECT_GT(scale, 0.0);
	}
}

// Multi-scale RoI pooling pools each level straight into its rows of the result when no gradient
// is wanted, and through the differentiable roi_align and a copy when one is: the same bits.
TEST(MultiScaleRoIAlign, WithoutGradientGivesTheSameBits)
{
	torch::manual_seed(5);
	const std::vector<fd::ImageSize> sizes = {{256, 320}, {200, 300}};
	std::vector<torch::Tensor> features;
	for (int64_t stride : {4, 8, 16, 32})
		features.push_back(torch::rand({2, 8, 256 / stride, 320 / stride}));
	// Boxes from 4 to 600 pixels wide (the largest past the image): every level gets some.
	std::vector<torch::Tensor> proposals;
	for (int i = 0; i < 2; i++) {
		const auto xy = torch::rand({300, 2}) * 150;
		auto wh = torch::exp(torch::rand({300, 2}) * std::log(150.0)) * 4;
		wh.narrow(0, 0, 20).uniform_(450, 600);
		proposals.push_back(torch::cat({xy, xy + wh}, 1));
	}
	const auto levels = fd::MultiScaleRoIAlign::map_levels(torch::cat(proposals, 0), 2, 5);
	for (int64_t level = 0; level < 4; level++)
		ASSERT_GT((levels == level).sum().item<int64_t>(), 10) << "level " << level;

	const fd::MultiScaleRoIAlign pool(4, 7, 2, 32);
	torch::Tensor pooled;
	{
		torch::NoGradGuard no_grad;
		pooled = pool(features, proposals, sizes);
	}
	std::vector<torch::Tensor> trainable;
	for (const auto &f : features)
		trainable.push_back(f.clone().requires_grad_(true));
	const auto differentiable = pool(trainable, proposals, sizes);
	ASSERT_TRUE(differentiable.requires_grad());
	EXPECT_TRUE(torch::equal(pooled, differentiable.detach()));
	differentiable.sum().backward();
	for (const auto &f : trainable)
		EXPECT_GT(f.grad().abs().sum().item<double>(), 0.0);
}

// The levels' scales are 1/stride for every batch: also for a batch of images so flat that padding
// grows its height by more than sqrt(2) (20 of 32 rows here), where scales inferred from the
// unpadded height are a power of two off (torchvision's on such a first batch; it keeps the
// scales of its first batch, 1/stride after any ordinary one).
TEST(MultiScaleRoIAlign, ScalesOfAFlatBatchAreOneOverTheStride)
{
	torch::manual_seed(6);
	std::vector<torch::Tensor> features;
	for (int64_t stride : {4, 8, 16, 32})
		features.push_back(torch::rand({1, 8, 32 / stride, 416 / stride}));
	const auto xy = torch::rand({200, 2}) * torch::tensor({400.0f, 20.0f});
	const auto wh = torch::exp(torch::rand({200, 2}) * std::log(100.0)) * 2;
	const std::vector<torch::Tensor> proposals{torch::cat({xy, xy + wh}, 1)};
	const fd::MultiScaleRoIAlign pool(4, 7, 2, 32);
	torch::NoGradGuard no_grad;
	const auto flat = pool(features, proposals, {{20, 400}});
	const auto padded_to_itself = pool(features, proposals, {{32, 416}});
	EXPECT_TRUE(torch::equal(flat, padded_to_itself));
	EXPECT_EQ(fd::MultiScaleRoIAlign::infer_scale(8, 20), 0.5) << "the unpadded height's scale";
}

// The batched post-processing (one filter and one NMS for the whole batch, what CUDA runs) gives
// the per-image post-processing's detections.
TEST(RoIHeads, BatchedPostprocessMatchesPerImage)
{
	const auto c = frcnn::test::random_detection_case(7);
	const auto &config = c.config;
	torch::NoGradGuard no_grad;
	auto per_image = c.heads->postprocess(c.logits, c.regression, c.proposals, c.sizes);
	auto batched = c.heads->postprocess_batched(c.logits, c.regression, c.proposals, c.sizes);
	ASSERT_EQ(per_image.size(), batched.size());
	int64_t total = 0;
	for (size_t i = 0; i < per_image.size(); i++) {
		EXPECT_TRUE(torch::equal(per_image[i].labels, batched[i].labels)) << "image " << i;
		EXPECT_TRUE(torch::equal(per_image[i].scores, batched[i].scores)) << "image " << i;
		EXPECT_TRUE(torch::equal(per_image[i].boxes, batched[i].boxes)) << "image " << i;
		total += per_image[i].boxes.size(0);
	}
	EXPECT_EQ(total, 3 * config.box_detections_per_img) << "every image should fill its 100 detections";
}

// The same where the per-image NMS offsets the boxes by class and so rounds IoUs otherwise than
// on their own coordinates: the batched form offsets them alike.
TEST(RoIHeads, BatchedPostprocessRoundsAsThePerImageOne)
{
	const auto c = frcnn::test::crowded_detection_case(13);
	torch::NoGradGuard no_grad;
	// What makes the case: each image's candidates few enough for the offsets (at most 1000).
	const auto candidates = frcnn::test::candidates_per_image(c);
	for (int64_t i = 0; i < candidates.size(0); i++)
		ASSERT_TRUE(candidates[i].item<int64_t>() > 500 && candidates[i].item<int64_t>() <= 1000)
			<< "image " << i << ": " << candidates[i].item<int64_t>() << " candidates";
	const auto per = c.heads->postprocess(c.logits, c.regression, c.proposals, c.sizes);
	const auto batched = c.heads->postprocess_batched(c.logits, c.regression, c.proposals, c.sizes);
	ASSERT_EQ(per.size(), batched.size());
	for (size_t i = 0; i < per.size(); i++) {
		EXPECT_TRUE(torch::equal(per[i].boxes, batched[i].boxes)) << "image " << i;
		EXPECT_TRUE(torch::equal(per[i].labels, batched[i].labels)) << "image " << i;
		EXPECT_TRUE(torch::equal(per[i].scores, batched[i].scores)) << "image " << i;
	}
}

// Two images with the same proposals and the same scores: the batched post-processing must not
// let one image's detections suppress the other's (its categories are (image, class) pairs).
TEST(RoIHeads, BatchedPostprocessKeepsImagesApart)
{
	auto c = frcnn::test::random_detection_case(9);
	const int64_t rows = c.proposals[0].size(0);
	c.sizes = {c.sizes[0], c.sizes[0]};
	c.proposals = {c.proposals[0], c.proposals[0].clone()};
	c.logits = torch::cat({c.logits.narrow(0, 0, rows), c.logits.narrow(0, 0, rows)});
	c.regression = torch::cat({c.regression.narrow(0, 0, rows), c.regression.narrow(0, 0, rows)});
	torch::NoGradGuard no_grad;
	const auto batched = c.heads->postprocess_batched(c.logits, c.regression, c.proposals, c.sizes);
	const auto alone = c.heads->postprocess(c.logits.narrow(0, 0, rows), c.regression.narrow(0, 0, rows),
					      {c.proposals[0]}, {c.sizes[0]});
	ASSERT_EQ(batched.size(), 2u);
	ASSERT_GT(alone[0].boxes.size(0), 0);
	for (size_t i = 0; i < 2; i++) {
		EXPECT_TRUE(torch::equal(batched[i].boxes, alone[0].boxes)) << "image " << i;
		EXPECT_TRUE(torch::equal(batched[i].labels, alone[0].labels)) << "image " << i;
		EXPECT_TRUE(torch::equal(batched[i].scores, alone[0].scores)) << "image " << i;
	}
}

// The batched proposal filtering (one wait for the device, what CUDA runs) keeps the proposals
// the per-image filtering keeps: clipped, small boxes and low scores dropped, NMS per level, the
// best post_nms per image.
TEST(RPN, BatchedFilteringMatchesPerImage)
{
	const auto c = frcnn::test::random_proposal_case(11);
	ModelConfig config = model_preset("tiny");
	config.rpn_score_thresh = c.score_thresh;
	frcnn::detail::RegionProposalNetwork rpn(config);
	const int64_t num_images = (int64_t)c.sizes.size(), k = c.levels.size(0);
	torch::NoGradGuard no_grad;
	for (const int64_t post_nms : {1000, 5000}) {
		auto per_image = rpn->filter_proposals(c.top_boxes, c.probs, c.levels, c.sizes, post_nms);
		auto batched = rpn->filter_proposals_batched(c.top_boxes, c.probs, c.levels, c.sizes, post_nms);
		ASSERT_EQ(per_image.boxes.size(), (size_t)num_images);
		ASSERT_EQ(batched.boxes.size(), (size_t)num_images);
		for (int64_t i = 0; i < num_images; i++) {
			SCOPED_TRACE("post_nms " + std::to_string(post_nms) + ", image " + std::to_string(i));
			ASSERT_EQ(per_image.boxes[i].size(0), batched.boxes[i].size(0));
			EXPECT_TRUE(torch::equal(per_image.scores[i], batched.scores[i]))
				<< "both rank the kept proposals by decreasing score";
			EXPECT_EQ(frcnn::test::proposal_rows(per_image.boxes[i], per_image.scores[i]),
				  frcnn::test::proposal_rows(batched.boxes[i], batched.scores[i]));
		}
		EXPECT_EQ(batched.boxes[num_images - 1].size(0), 0);
		// The figures that make the comparison mean something: NMS and both filters were at work.
		const int64_t kept = per_image.boxes[1].size(0);
		if (post_nms == 1000)
			EXPECT_EQ(kept, 1000) << "the 640x480 image has more than post_nms proposals";
		else
			EXPECT_LT(kept, k * 8 / 10) << "the score threshold, the size filter and NMS drop proposals";
	}
	// A threshold that leaves each image fewer than 1000 candidates: the per-image NMS then
	// offsets them by level (torchvision's trick), and the batched one alike. Offsets of a few
	// levels round little, so that this checks the path rather than a rounding it changes
	// (BatchedNmsOffsets.KeepWhatThePerImageCallsKeep and the post-processing's test do that).
	config.rpn_score_thresh = 0.9;
	frcnn::detail::RegionProposalNetwork strict(config);
	const auto per_image = strict->filter_proposals(c.top_boxes, c.probs, c.levels, c.sizes, 5000);
	const auto batched = strict->filter_proposals_batched(c.top_boxes, c.probs, c.levels, c.sizes, 5000);
	for (int64_t i = 0; i < num_images; i++) {
		SCOPED_TRACE("rpn_score_thresh 0.9, image " + std::to_string(i));
		const int64_t candidates = c.probs[i].ge(0.9).sum().item<int64_t>();
		if (i < num_images - 1)
			EXPECT_TRUE(candidates > 100 && candidates < 1000) << candidates << " candidates";
		EXPECT_TRUE(torch::equal(per_image.scores[i], batched.scores[i]));
		EXPECT_EQ(frcnn::test::proposal_rows(per_image.boxes[i], per_image.scores[i]),
			  frcnn::test::proposal_rows(batched.boxes[i], batched.scores[i]));
	}
}

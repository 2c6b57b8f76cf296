// SPDX-License-Identifier: BSD-3-Clause
// The checkpoint reader and writer against files torch.save wrote (tests/reference/
// checkpoint_fixtures.py), hostile files, damaged files, and Python reading what we write.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common.h"
#include "frcnn/checkpoint.h"
#include "frcnn/error.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string env(const char *name)
{
	const char *value = std::getenv(name);
	if (value == nullptr)
		throw std::runtime_error(std::string("environment variable ") + name +
					 " is not set");
	return value;
}

std::string fixture(const std::string &file)
{
	return env("FRCNN_FIXTURES") + "/" + file;
}

std::vector<uint8_t> read_file(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		throw std::runtime_error("cannot read " + path);
	return std::vector<uint8_t>(std::istreambuf_iterator<char>(in),
				    std::istreambuf_iterator<char>());
}

const json &manifest()
{
	static const json m = json::parse(read_file(fixture("manifest.json")));
	return m;
}

torch::ScalarType dtype_named(const std::string &name)
{
	static const std::map<std::string, torch::ScalarType> names = {
		{ "float32", torch::kFloat32 },   { "float16", torch::kFloat16 },
		{ "bfloat16", torch::kBFloat16 }, { "float64", torch::kFloat64 },
		{ "int64", torch::kInt64 },       { "int32", torch::kInt32 },
		{ "int16", torch::kInt16 },       { "int8", torch::kInt8 },
		{ "uint8", torch::kUInt8 },       { "bool", torch::kBool },
	};
	return names.at(name);
}

struct Expected {
	std::string name;
	torch::Tensor tensor;
};

std::vector<Expected> expected_set(const std::string &set)
{
	std::vector<uint8_t> blob = read_file(fixture("expected/" + set + ".bin"));
	std::vector<Expected> out;
	for (const json &entry : manifest()["sets"][set]) {
		std::vector<int64_t> shape = entry["shape"].get<std::vector<int64_t>>();
		torch::Tensor t =
		    torch::empty(shape, torch::TensorOptions().dtype(dtype_named(entry["dtype"])));
		std::size_t offset = entry["offset"], nbytes = entry["nbytes"];
		EXPECT_EQ(nbytes, static_cast<std::size_t>(t.numel() * t.element_size()))
		    << entry["name"];
		if (nbytes > 0) // an empty tensor has no data pointer
			std::memcpy(t.data_ptr(), blob.data() + offset, nbytes);
		out.push_back({ entry["name"], t });
	}
	return out;
}

void expect_tensors(const frcnn::StateDict &got, const std::vector<Expected> &want)
{
	ASSERT_EQ(got.size(), want.size());
	for (std::size_t i = 0; i < want.size(); i++) {
		SCOPED_TRACE(want[i].name);
		EXPECT_EQ(got[i].first, want[i].name);
		ASSERT_TRUE(got[i].second.defined());
		EXPECT_EQ(got[i].second.scalar_type(), want[i].tensor.scalar_type());
		EXPECT_EQ(got[i].second.sizes(), want[i].tensor.sizes());
		EXPECT_TRUE(got[i].second.is_contiguous());
		if (got[i].second.sizes() == want[i].tensor.sizes() &&
		    got[i].second.scalar_type() == want[i].tensor.scalar_type()) {
			EXPECT_TRUE(torch::equal(got[i].second, want[i].tensor));
		}
	}
}

std::map<std::string, int64_t> versions_of(const json &fx)
{
	std::map<std::string, int64_t> out;
	for (auto &[key, value] : fx["module_versions"].items())
		out[key] = value.get<int64_t>();
	return out;
}

// Reads a file and expects an frcnn::Error, returning its message ("" if it did not throw).
std::string error_of(const void *data, std::size_t size)
{
	try {
		frcnn::read_checkpoint_bytes(data, size, "test.pth");
	} catch (const frcnn::Error &e) {
		return e.what();
	}
	return "";
}

using frcnn::test::TempDir;

// Runs a command, returning its exit status and what it printed.
std::pair<int, std::string> run(const std::string &command)
{
	return frcnn::test::run_command(command);
}

std::string python_verify(const std::string &written, const std::string &against,
			  const std::string &model)
{
	return "'" + env("FRCNN_REF_PYTHON") + "' '" + env("FRCNN_SOURCE_ROOT") +
	       "/tests/reference/checkpoint_fixtures.py' --verify '" + written + "' --against '" +
	       against + "'" + (model.empty() ? "" : " --model " + model);
}

} // namespace

TEST(Checkpoint, ReadsEveryFormTorchSaveWrites)
{
	int checked = 0;
	for (const json &fx : manifest()["fixtures"]) {
		if (!fx.contains("set"))
			continue;
		SCOPED_TRACE(fx["file"].get<std::string>());
		frcnn::Checkpoint ckpt = frcnn::read_checkpoint(fixture(fx["file"]));
		expect_tensors(ckpt.tensors, expected_set(fx["set"]));
		EXPECT_EQ(ckpt.module_versions, versions_of(fx));
		checked++;
	}
	// zip + legacy x (3 containers of mixed dtypes + 4 torchvision forms), plus the odd ones.
	EXPECT_GE(checked, 20);
}

TEST(Checkpoint, ReportsModuleVersionsOfOldKeyCheckpoints)
{
	for (const char *file : { "tv_old_keys_zip.pth", "tv_old_keys_legacy.pth" }) {
		SCOPED_TRACE(file);
		frcnn::Checkpoint old = frcnn::read_checkpoint(fixture(file));
		EXPECT_EQ(old.module_versions.count("backbone.fpn"), 0u);
		EXPECT_EQ(old.module_versions.count("rpn.head"), 0u);
		EXPECT_EQ(old.module_versions.at(""), 1);
		bool has_old_key = false;
		for (const auto &[key, t] : old.tensors)
			has_old_key = has_old_key || key == "backbone.fpn.inner_blocks.0.weight";
		EXPECT_TRUE(has_old_key);
	}
	frcnn::Checkpoint current = frcnn::read_checkpoint(fixture("tv_zip.pth"));
	EXPECT_EQ(current.module_versions.at("backbone.fpn"), 2);
	EXPECT_EQ(current.module_versions.at("rpn.head"), 2);
}

TEST(Checkpoint, TensorsOwnTheirMemory)
{
	std::vector<uint8_t> bytes = read_file(fixture("mixed_ordered_zip.pth"));
	frcnn::Checkpoint ckpt = frcnn::read_checkpoint_bytes(bytes.data(), bytes.size(), "mixed");
	std::fill(bytes.begin(), bytes.end(), 0xff);
	bytes.clear();
	bytes.shrink_to_fit();
	expect_tensors(ckpt.tensors, expected_set("mixed"));
	// Two views of one storage come back as separate tensors.
	const auto &a = ckpt.tensors[13], &b = ckpt.tensors[14];
	ASSERT_EQ(a.first, "shared.a");
	ASSERT_EQ(b.first, "shared.b");
	EXPECT_NE(a.second.data_ptr(), b.second.data_ptr());
}

TEST(Checkpoint, RefusesHostileAndDamagedFiles)
{
	int checked = 0;
	for (const json &fx : manifest()["fixtures"]) {
		if (!fx.contains("error"))
			continue;
		const std::string file = fx["file"];
		SCOPED_TRACE(file);
		std::string message;
		try {
			frcnn::read_checkpoint(fixture(file));
			ADD_FAILURE() << file << " was accepted";
			continue;
		} catch (const frcnn::Error &e) {
			message = e.what();
		}
		for (const json &part : fx["error"])
			EXPECT_NE(message.find(part.get<std::string>()), std::string::npos)
			    << "message: " << message << "\nexpected to contain: " << part;
		EXPECT_NE(message.find(fixture(file)), std::string::npos)
		    << "names the file: " << message;
		checked++;
	}
	EXPECT_GE(checked, 25);
}

TEST(Checkpoint, RefusesGlobalsByName)
{
	std::string message;
	try {
		frcnn::read_checkpoint(fixture("os_system_zip.pth"));
	} catch (const frcnn::Error &e) {
		message = e.what();
	}
	EXPECT_NE(
	    message.find(
		"refers to 'os.system', which a weights file never needs; refusing to load it"),
	    std::string::npos)
	    << message;
}

TEST(Checkpoint, MissingFileAndEmptyInput)
{
	EXPECT_THROW(frcnn::read_checkpoint(fixture("does-not-exist.pth")), frcnn::Error);
	EXPECT_THROW(frcnn::read_checkpoint(env("FRCNN_FIXTURES")), frcnn::Error);
	EXPECT_NE(error_of("", 0).find("empty"), std::string::npos);
}

TEST(Checkpoint, TruncatedAtEveryOffset)
{
	for (const char *file :
	     { "small_zip.pth", "small_legacy.pth", "small_tar.pth", "tv_legacy.pth" }) {
		SCOPED_TRACE(file);
		std::vector<uint8_t> bytes = read_file(fixture(file));
		ASSERT_GT(bytes.size(), 100u);
		ASSERT_NO_THROW(frcnn::read_checkpoint_bytes(bytes.data(), bytes.size(), file));
		// A tar archive ends in zero padding; losing part of it loses nothing.
		std::size_t data_end = bytes.size();
		while (data_end > 0 && bytes[data_end - 1] == 0)
			data_end--;
		if (std::string(file).find("tar") == std::string::npos)
			data_end = bytes.size();
		else
			ASSERT_LT(data_end, bytes.size() - 512);
		std::size_t refused = 0;
		for (std::size_t size = 0; size < bytes.size(); size++) {
			// A copy of exactly `size` bytes, so that reading past it is caught by
			// sanitizers.
			std::vector<uint8_t> part(bytes.begin(), bytes.begin() + size);
			if (!error_of(part.data(), part.size()).empty())
				refused++;
			else if (size < data_end)
				ADD_FAILURE()
				    << "accepted a copy truncated to " << size << " bytes";
		}
		EXPECT_GE(refused, data_end);
	}
}

// A byte changed in the zip's end record, where a multi-part archive numbers its disks, is told
// as damage first.
TEST(Checkpoint, ADamagedEndRecordIsSaidToBeDamage)
{
	std::vector<uint8_t> bytes = read_file(fixture("small_zip.pth"));
	const uint8_t end_record[] = { 'P', 'K', 5, 6 };
	const auto found = std::find_end(bytes.begin(), bytes.end(), std::begin(end_record), std::end(end_record));
	ASSERT_NE(found, bytes.end());
	found[4] ^= 0x10; // the number of this disk
	const std::string message = error_of(bytes.data(), bytes.size());
	EXPECT_NE(message.find("the zip archive's end record names other disks: the file is damaged"), std::string::npos)
		<< message;
}

TEST(Checkpoint, RandomDamageGivesResultOrError)
{
	std::mt19937 rng(1234);
	for (const char *file : { "small_zip.pth", "small_legacy.pth", "small_tar.pth",
				  "mixed_training_zip.pth", "mixed_training_legacy.pth" }) {
		SCOPED_TRACE(file);
		const std::vector<uint8_t> bytes = read_file(fixture(file));
		int accepted = 0, refused = 0;
		for (int round = 0; round < 1500; round++) {
			std::vector<uint8_t> damaged = bytes;
			int flips = 1 + rng() % 4;
			for (int k = 0; k < flips; k++)
				damaged[rng() % damaged.size()] ^=
				    static_cast<uint8_t>(1 + rng() % 255);
			try {
				frcnn::read_checkpoint_bytes(damaged.data(), damaged.size(), file);
				accepted++;
			} catch (const frcnn::Error &) {
				refused++;
			}
		}
		EXPECT_EQ(accepted + refused, 1500);
		EXPECT_GT(refused, 0);
	}
}

TEST(Checkpoint, ReadsBackWhatItWrites)
{
	TempDir dir;
	frcnn::Checkpoint mixed = frcnn::read_checkpoint(fixture("mixed_ordered_zip.pth"));
	const std::string path = (dir.path / "mixed.pth").string();
	frcnn::write_checkpoint(path, mixed);
	EXPECT_FALSE(fs::exists(path + ".partial"));
	frcnn::Checkpoint back = frcnn::read_checkpoint(path);
	expect_tensors(back.tensors, expected_set("mixed"));
	EXPECT_EQ(back.module_versions, mixed.module_versions);

	// Non-contiguous and shared tensors are written as they read, without _metadata.
	torch::Tensor base = torch::arange(12, torch::kFloat32);
	frcnn::StateDict sd{ { "t", base.view({ 3, 4 }).t() },
			     { "s", base.slice(0, 2, 5) },
			     { "d", torch::tensor(3.5, torch::kFloat64) } };
	frcnn::write_checkpoint(path, sd);
	back = frcnn::read_checkpoint(path);
	ASSERT_EQ(back.tensors.size(), 3u);
	EXPECT_TRUE(back.module_versions.empty());
	for (std::size_t i = 0; i < sd.size(); i++) {
		EXPECT_EQ(back.tensors[i].first, sd[i].first);
		EXPECT_TRUE(torch::equal(back.tensors[i].second, sd[i].second)) << sd[i].first;
	}
}

// A model saved while wrapped in DistributedDataParallel or DataParallel: every key under
// "module.", which the model's own keys are read without (torch's
// consume_prefix_in_state_dict_if_present); a state dict where only some keys have it is read as
// it is.
TEST(Checkpoint, ReadsTheModelOfAWrappedModelsKeys)
{
	TempDir dir;
	const std::string path = (dir.path / "wrapped.pth").string();
	frcnn::Checkpoint wrapped;
	wrapped.tensors = { { "module.backbone.weight", torch::ones({ 2 }) },
			    { "module.rpn.bias", torch::zeros({ 3 }) } };
	wrapped.module_versions = { { "", 1 }, { "module", 1 }, { "module.backbone", 2 } };
	frcnn::write_checkpoint(path, wrapped);
	const frcnn::Checkpoint back = frcnn::read_checkpoint(path);
	ASSERT_EQ(back.tensors.size(), 2u);
	EXPECT_EQ(back.tensors[0].first, "backbone.weight");
	EXPECT_EQ(back.tensors[1].first, "rpn.bias");
	EXPECT_TRUE(torch::equal(back.tensors[1].second, torch::zeros({ 3 })));
	EXPECT_EQ(back.module_versions, (std::map<std::string, int64_t>{ { "", 1 }, { "backbone", 2 } }));

	frcnn::Checkpoint partly = wrapped;
	partly.tensors.emplace_back("head.weight", torch::ones({ 1 }));
	frcnn::write_checkpoint(path, partly);
	const frcnn::Checkpoint as_is = frcnn::read_checkpoint(path);
	ASSERT_EQ(as_is.tensors.size(), 3u);
	EXPECT_EQ(as_is.tensors[0].first, "module.backbone.weight");
	EXPECT_EQ(as_is.module_versions, partly.module_versions);
}

// A training checkpoint as PyTorch's tutorial saves one ({"model_state_dict": ..., "epoch": ...})
// gives its model's state dict, also beside a "model" entry that is no state dict (a
// configuration); one whose state dict is under another name says where it is looked for.
TEST(Checkpoint, ReadsTheStateDictOfATrainingCheckpoint)
{
	TempDir dir;
	const std::string tutorial = (dir.path / "tutorial.pth").string();
	const std::string other = (dir.path / "other.pth").string();
	const auto [status, output] = run(
		"'" + env("FRCNN_REF_PYTHON") + "' -c \"import sys, torch\n"
		"weights = {'backbone.weight': torch.arange(3.0)}\n"
		"torch.save({'epoch': 3, 'model': {'name': 'resnet'}, 'model_state_dict': weights, "
		"'optimizer_state_dict': {'state': {}}}, sys.argv[1])\n"
		"torch.save({'net': weights}, sys.argv[2])\" '" + tutorial + "' '" + other + "' 2>&1");
	ASSERT_EQ(status, 0) << output;
	const frcnn::Checkpoint read = frcnn::read_checkpoint(tutorial);
	ASSERT_EQ(read.tensors.size(), 1u);
	EXPECT_EQ(read.tensors[0].first, "backbone.weight");
	EXPECT_TRUE(torch::equal(read.tensors[0].second, torch::arange(3.0)));
	try {
		frcnn::read_checkpoint(other);
		ADD_FAILURE() << "a dict of a dict was read as a state dict";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find("state dict entry 'net' is a dict, not a tensor (the state dict of a "
						     "training checkpoint is read from its \"model\", \"state_dict\" or "
						     "\"model_state_dict\" entry"),
			  std::string::npos)
			<< e.what();
	}
}

TEST(Checkpoint, WriteRefusesWhatCheckpointsCannotHold)
{
	TempDir dir;
	const std::string path = (dir.path / "bad.pth").string();
	EXPECT_THROW(
	    frcnn::write_checkpoint(
		path, frcnn::StateDict{ { "c", torch::zeros({ 2 }, torch::kComplexFloat) } }),
	    frcnn::Error);
	EXPECT_THROW(frcnn::write_checkpoint(path, frcnn::StateDict{ { "u", torch::Tensor() } }),
		     frcnn::Error);
	EXPECT_FALSE(fs::exists(path));
	EXPECT_FALSE(fs::exists(path + ".partial"));
	EXPECT_THROW(
	    frcnn::write_checkpoint((dir.path / "no/such/dir/x.pth").string(), frcnn::StateDict{}),
	    frcnn::Error);
}

TEST(Checkpoint, PythonLoadsWhatWeWriteWithWeightsOnly)
{
	TempDir dir;
	// The torchvision modules' state dict, with its module versions: torchvision's
	// load_state_dict must accept it strictly and end up with the same values.
	frcnn::Checkpoint tv = frcnn::read_checkpoint(fixture("tv_zip.pth"));
	const std::string tv_path = (dir.path / "tv.pth").string();
	frcnn::write_checkpoint(tv_path, tv);
	auto [status, output] = run(python_verify(tv_path, fixture("tv_zip.pth"), "tv"));
	EXPECT_EQ(status, 0) << output;
	EXPECT_NE(output.find("checked 14 tensors: ok"), std::string::npos) << output;

	// Every dtype, from the StateDict overload (no _metadata).
	frcnn::Checkpoint mixed = frcnn::read_checkpoint(fixture("mixed_plain_zip.pth"));
	const std::string mixed_path = (dir.path / "mixed.pth").string();
	frcnn::write_checkpoint(mixed_path, mixed.tensors);
	std::tie(status, output) =
	    run(python_verify(mixed_path, fixture("mixed_plain_zip.pth"), ""));
	EXPECT_EQ(status, 0) << output;
	EXPECT_NE(output.find("checked 17 tensors: ok"), std::string::npos) << output;
}

TEST(Checkpoint, SeedCorpusReplays)
{
	const fs::path corpus = fs::path(env("FRCNN_TEST_DATA")) / "checkpoint-corpus";
	ASSERT_TRUE(fs::is_directory(corpus)) << corpus;
	int files = 0, accepted = 0;
	for (const auto &entry : fs::directory_iterator(corpus)) {
		if (!entry.is_regular_file())
			continue;
		SCOPED_TRACE(entry.path().string());
		std::vector<uint8_t> bytes = read_file(entry.path().string());
		try {
			frcnn::read_checkpoint_bytes(bytes.data(), bytes.size(),
						     entry.path().filename().string());
			accepted++;
		} catch (const frcnn::Error &) {
		}
		files++;
	}
	EXPECT_GE(files, 10);
	EXPECT_GE(accepted, 6);
}

// SPDX-License-Identifier: BSD-3-Clause
// A restricted unpickler. It reads the pickle opcodes torch.save emits and builds plain values
// out of them. It never imports or calls anything: the few globals a state dict needs are
// recognised by name and interpreted here; every other global is refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <c10/core/ScalarType.h>

namespace frcnn::checkpoint {

// The globals a checkpoint may name. Each is interpreted by the unpickler, never called.
enum class Global {
	OrderedDict, // collections.OrderedDict: every state_dict() and its _metadata
	Counter, // collections.Counter: MultiStepLR's milestones in training checkpoints
	Namespace, // argparse.Namespace: the "args" torchvision's training scripts save
	RebuildTensor, // torch._utils._rebuild_tensor (torch < 0.4)
	RebuildTensorV2, // torch._utils._rebuild_tensor_v2: every tensor since 0.4
	RebuildParameter, // torch._utils._rebuild_parameter: nn.Parameter values
	RebuildParameterWithState, // torch._utils._rebuild_parameter_with_state (torch >= 2.0)
	Parameter, // torch.nn.parameter.Parameter
	Storage, // torch.<Type>Storage, torch.cuda.<Type>Storage: a storage's dtype
	CodecsEncode, // _codecs.encode: how protocol 2 writes a bytes object
	TensorType, // torch.<Type>Tensor: a type tag in the tar format's tensor list
};

enum class Kind {
	None,
	Bool,
	Int,
	BigInt, // an integer wider than 64 bits, kept as its little-endian two's complement bytes
	Float,
	String,
	Bytes,
	Tuple,
	List,
	Set,
	Dict,
	Object, // an argparse.Namespace: only its attributes (state) are kept
	Global,
	Storage,
	Tensor,
};

const char *kind_name(Kind kind);

struct Value;

struct StorageInfo {
	c10::ScalarType dtype = c10::ScalarType::Float;
	std::string key;
	int64_t numel = 0;
	// Where the elements are, once the container knows (legacy files store them after the
	// pickle).
	const uint8_t *data = nullptr;
	bool big_endian = false;
	// A legacy view of another storage: elements [root_offset, root_offset + numel) of root.
	Value *root = nullptr;
	int64_t root_offset = 0;
};

struct TensorInfo {
	Value *storage = nullptr; // Kind::Storage
	int64_t offset = 0;
	std::vector<int64_t> size;
	std::vector<int64_t> stride;
};

struct Value {
	Kind kind = Kind::None;
	int64_t i = 0; // Bool, Int
	double f = 0.0; // Float
	std::string s; // String (UTF-8), Bytes, BigInt; Global: its dotted name
	std::vector<Value *> items; // Tuple, List, Set
	std::vector<std::pair<Value *, Value *>> entries; // Dict, in insertion order
	Value *state = nullptr; // Dict, Object: what BUILD set (an OrderedDict's __dict__)
	bool ordered = false; // Dict: an OrderedDict
	Global global = Global::OrderedDict; // Global
	c10::ScalarType dtype = c10::ScalarType::Float; // Global::Storage
	std::unique_ptr<StorageInfo> storage; // Storage
	std::unique_ptr<TensorInfo> tensor; // Tensor

	bool is_string() const { return kind == Kind::String; }
	// A dict entry by string key (the last one set, as Python's dict keeps it), or nullptr.
	Value *get(std::string_view key) const;
};

// Owns every value of one checkpoint, so that values can refer to each other freely (a pickle
// may even build cycles) and all go away together.
class Arena {
public:
	Value *make(Kind kind);
	std::size_t size() const { return values_.size(); }

private:
	std::vector<std::unique_ptr<Value>> values_;
};

struct Limits {
	std::size_t max_depth = 256; // MARKs open at once
	std::size_t max_objects = std::size_t(1) << 21; // values per checkpoint
	std::size_t max_memo = std::size_t(1) << 21; // memo entries
	std::size_t max_string = std::size_t(1) << 24; // bytes in one string
	std::size_t max_dims = 64; // dimensions of one tensor
	std::size_t max_copied = std::size_t(1)
				 << 22; // entries copied from one container to another
};

class Unpickler {
public:
	// Turns a persistent id (the tuple torch.save writes for each storage) into a Storage
	// value.
	using PersistentLoad = std::function<Value *(Value *pid)>;

	Unpickler(const uint8_t *data, std::size_t size, std::string name, Arena &arena,
		  PersistentLoad persistent_load = {}, Limits limits = {});

	// Reads one pickle from `offset` to its STOP and returns its value.
	Value *load(std::size_t offset = 0);
	// Where the last load() stopped: the first byte after its STOP.
	std::size_t end() const { return pos_; }

	// A view of `storage`, refused unless it lies inside it. Nothing is allocated.
	Value *make_tensor(Value *storage, int64_t offset, std::vector<int64_t> size,
			   std::vector<int64_t> stride);

	// Throws frcnn::Error, naming the checkpoint.
	[[noreturn]] void fail(const std::string &message) const;

	Arena &arena() { return arena_; }
	const Limits &limits() const { return limits_; }

private:
	uint8_t read_u8();
	uint64_t read_uint(std::size_t bytes);
	const uint8_t *read_bytes(std::size_t n);
	std::string read_line();
	Value *pop();
	Value *top();
	std::vector<Value *> pop_mark();
	void push(Value *value);
	Value *make(Kind kind);
	Value *make_global(const std::string &module, const std::string &name);
	Value *reduce(Value *callable, Value *args);
	Value *rebuild_tensor(const std::vector<Value *> &args, std::size_t count);
	void build(Value *target, Value *state);
	void charge(std::size_t copied);
	void memo_put(uint64_t index, Value *value);
	Value *memo_get(uint64_t index);

	const uint8_t *data_;
	std::size_t size_;
	std::size_t pos_ = 0;
	std::string name_;
	Arena &arena_;
	PersistentLoad persistent_load_;
	Limits limits_;
	std::vector<Value *> stack_;
	std::vector<std::size_t> marks_;
	std::size_t copied_ = 0;
	std::unordered_map<uint64_t, Value *> memo_;
};

// Element size of the dtypes a checkpoint may hold.
std::size_t element_size(c10::ScalarType dtype);

} // namespace frcnn::checkpoint

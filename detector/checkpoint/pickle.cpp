// SPDX-License-Identifier: BSD-3-Clause
#include "pickle.h"

#include <cstring>
#include <limits>
#include <sstream>

#include "frcnn/error.h"

namespace frcnn::checkpoint {

namespace {

// The opcodes of pickle protocols 0 to 5 (Python's Lib/pickle.py). Only the binary forms are
// read: torch.save has always pickled with protocol 2.
enum Opcode : uint8_t {
	MARK = '(',
	STOP = '.',
	POP = '0',
	POP_MARK = '1',
	DUP = '2',
	BININT = 'J',
	BININT1 = 'K',
	BININT2 = 'M',
	NONE = 'N',
	BINPERSID = 'Q',
	REDUCE = 'R',
	BINSTRING = 'T',
	SHORT_BINSTRING = 'U',
	BINUNICODE = 'X',
	APPEND = 'a',
	BUILD = 'b',
	GLOBAL = 'c',
	DICT = 'd',
	EMPTY_DICT = '}',
	APPENDS = 'e',
	BINGET = 'h',
	LONG_BINGET = 'j',
	LIST = 'l',
	EMPTY_LIST = ']',
	BINPUT = 'q',
	LONG_BINPUT = 'r',
	SETITEM = 's',
	TUPLE = 't',
	EMPTY_TUPLE = ')',
	SETITEMS = 'u',
	BINFLOAT = 'G',
	PROTO = 0x80,
	NEWOBJ = 0x81,
	TUPLE1 = 0x85,
	TUPLE2 = 0x86,
	TUPLE3 = 0x87,
	NEWTRUE = 0x88,
	NEWFALSE = 0x89,
	LONG1 = 0x8a,
	LONG4 = 0x8b,
	BINBYTES = 'B',
	SHORT_BINBYTES = 'C',
	SHORT_BINUNICODE = 0x8c,
	BINUNICODE8 = 0x8d,
	BINBYTES8 = 0x8e,
	EMPTY_SET = 0x8f,
	ADDITEMS = 0x90,
	FROZENSET = 0x91,
	NEWOBJ_EX = 0x92,
	STACK_GLOBAL = 0x93,
	MEMOIZE = 0x94,
	FRAME = 0x95,
	BYTEARRAY8 = 0x96,
};

struct KnownGlobal {
	const char *module;
	const char *name;
	Global global;
	c10::ScalarType dtype;
};

// Every global a checkpoint may name. Anything else is refused by name.
const KnownGlobal kKnownGlobals[] = {
	{ "collections", "OrderedDict", Global::OrderedDict, c10::ScalarType::Undefined },
	{ "collections", "Counter", Global::Counter, c10::ScalarType::Undefined },
	{ "argparse", "Namespace", Global::Namespace, c10::ScalarType::Undefined },
	{ "torch._utils", "_rebuild_tensor", Global::RebuildTensor, c10::ScalarType::Undefined },
	{ "torch._utils", "_rebuild_tensor_v2", Global::RebuildTensorV2,
	  c10::ScalarType::Undefined },
	{ "torch._utils", "_rebuild_parameter", Global::RebuildParameter,
	  c10::ScalarType::Undefined },
	{ "torch._utils", "_rebuild_parameter_with_state", Global::RebuildParameterWithState,
	  c10::ScalarType::Undefined },
	{ "torch.nn.parameter", "Parameter", Global::Parameter, c10::ScalarType::Undefined },
	{ "_codecs", "encode", Global::CodecsEncode, c10::ScalarType::Undefined },
	{ "torch", "FloatStorage", Global::Storage, c10::ScalarType::Float },
	{ "torch", "HalfStorage", Global::Storage, c10::ScalarType::Half },
	{ "torch", "BFloat16Storage", Global::Storage, c10::ScalarType::BFloat16 },
	{ "torch", "DoubleStorage", Global::Storage, c10::ScalarType::Double },
	{ "torch", "LongStorage", Global::Storage, c10::ScalarType::Long },
	{ "torch", "IntStorage", Global::Storage, c10::ScalarType::Int },
	{ "torch", "ShortStorage", Global::Storage, c10::ScalarType::Short },
	{ "torch", "CharStorage", Global::Storage, c10::ScalarType::Char },
	{ "torch", "ByteStorage", Global::Storage, c10::ScalarType::Byte },
	{ "torch", "BoolStorage", Global::Storage, c10::ScalarType::Bool },
	{ "torch", "UntypedStorage", Global::Storage, c10::ScalarType::Byte },
	// The tar format names each tensor's type; the dtype comes from its storage.
	{ "torch", "FloatTensor", Global::TensorType, c10::ScalarType::Float },
	{ "torch", "HalfTensor", Global::TensorType, c10::ScalarType::Half },
	{ "torch", "DoubleTensor", Global::TensorType, c10::ScalarType::Double },
	{ "torch", "LongTensor", Global::TensorType, c10::ScalarType::Long },
	{ "torch", "IntTensor", Global::TensorType, c10::ScalarType::Int },
	{ "torch", "ShortTensor", Global::TensorType, c10::ScalarType::Short },
	{ "torch", "CharTensor", Global::TensorType, c10::ScalarType::Char },
	{ "torch", "ByteTensor", Global::TensorType, c10::ScalarType::Byte },
	{ "torch.cuda", "FloatTensor", Global::TensorType, c10::ScalarType::Float },
	{ "torch.cuda", "HalfTensor", Global::TensorType, c10::ScalarType::Half },
	{ "torch.cuda", "DoubleTensor", Global::TensorType, c10::ScalarType::Double },
	{ "torch.cuda", "LongTensor", Global::TensorType, c10::ScalarType::Long },
	{ "torch.cuda", "IntTensor", Global::TensorType, c10::ScalarType::Int },
	{ "torch.cuda", "ShortTensor", Global::TensorType, c10::ScalarType::Short },
	{ "torch.cuda", "CharTensor", Global::TensorType, c10::ScalarType::Char },
	{ "torch.cuda", "ByteTensor", Global::TensorType, c10::ScalarType::Byte },
	// Files saved from a GPU name the CUDA storage types; the bytes are the same.
	{ "torch.cuda", "FloatStorage", Global::Storage, c10::ScalarType::Float },
	{ "torch.cuda", "HalfStorage", Global::Storage, c10::ScalarType::Half },
	{ "torch.cuda", "BFloat16Storage", Global::Storage, c10::ScalarType::BFloat16 },
	{ "torch.cuda", "DoubleStorage", Global::Storage, c10::ScalarType::Double },
	{ "torch.cuda", "LongStorage", Global::Storage, c10::ScalarType::Long },
	{ "torch.cuda", "IntStorage", Global::Storage, c10::ScalarType::Int },
	{ "torch.cuda", "ShortStorage", Global::Storage, c10::ScalarType::Short },
	{ "torch.cuda", "CharStorage", Global::Storage, c10::ScalarType::Char },
	{ "torch.cuda", "ByteStorage", Global::Storage, c10::ScalarType::Byte },
	{ "torch.cuda", "BoolStorage", Global::Storage, c10::ScalarType::Bool },
};

// Makes untrusted text safe to put in a message: printable ASCII only, and not too long.
std::string printable(const std::string &text)
{
	std::string out;
	for (unsigned char c : text) {
		if (out.size() >= 200) {
			out += "...";
			break;
		}
		if (c >= 0x20 && c < 0x7f) {
			out += static_cast<char>(c);
		} else {
			static const char hex[] = "0123456789abcdef";
			out += "\\x";
			out += hex[c >> 4];
			out += hex[c & 15];
		}
	}
	return out;
}

bool mul_overflows(int64_t a, int64_t b, int64_t *out)
{
	return __builtin_mul_overflow(a, b, out);
}

bool add_overflows(int64_t a, int64_t b, int64_t *out)
{
	return __builtin_add_overflow(a, b, out);
}

} // namespace

const char *kind_name(Kind kind)
{
	switch (kind) {
	case Kind::None:
		return "None";
	case Kind::Bool:
		return "bool";
	case Kind::Int:
		return "int";
	case Kind::BigInt:
		return "big int";
	case Kind::Float:
		return "float";
	case Kind::String:
		return "string";
	case Kind::Bytes:
		return "bytes";
	case Kind::Tuple:
		return "tuple";
	case Kind::List:
		return "list";
	case Kind::Set:
		return "set";
	case Kind::Dict:
		return "dict";
	case Kind::Object:
		return "object";
	case Kind::Global:
		return "global";
	case Kind::Storage:
		return "storage";
	case Kind::Tensor:
		return "tensor";
	}
	return "value";
}

std::size_t element_size(c10::ScalarType dtype)
{
	switch (dtype) {
	case c10::ScalarType::Double:
	case c10::ScalarType::Long:
		return 8;
	case c10::ScalarType::Float:
	case c10::ScalarType::Int:
		return 4;
	case c10::ScalarType::Half:
	case c10::ScalarType::BFloat16:
	case c10::ScalarType::Short:
		return 2;
	case c10::ScalarType::Char:
	case c10::ScalarType::Byte:
	case c10::ScalarType::Bool:
		return 1;
	default:
		throw Error(std::string("checkpoint tensors of type ") + c10::toString(dtype) +
			    " are not supported");
	}
}

Value *Value::get(std::string_view key) const
{
	for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
		if (it->first->kind == Kind::String && it->first->s == key)
			return it->second;
	}
	return nullptr;
}

Value *Arena::make(Kind kind)
{
	values_.push_back(std::make_unique<Value>());
	values_.back()->kind = kind;
	return values_.back().get();
}

Unpickler::Unpickler(const uint8_t *data, std::size_t size, std::string name, Arena &arena,
		     PersistentLoad persistent_load, Limits limits)
    : data_(data), size_(size), name_(std::move(name)), arena_(arena),
      persistent_load_(std::move(persistent_load)), limits_(limits)
{
}

void Unpickler::fail(const std::string &message) const
{
	throw Error("checkpoint '" + name_ + "': " + message);
}

uint8_t Unpickler::read_u8()
{
	return *read_bytes(1);
}

uint64_t Unpickler::read_uint(std::size_t bytes)
{
	const uint8_t *p = read_bytes(bytes);
	uint64_t value = 0;
	for (std::size_t i = 0; i < bytes; i++)
		value |= uint64_t(p[i]) << (8 * i);
	return value;
}

const uint8_t *Unpickler::read_bytes(std::size_t n)
{
	if (n > size_ - pos_) {
		std::ostringstream msg;
		msg << "the pickle is truncated: " << n << " bytes needed at byte " << pos_
		    << " but only " << size_ - pos_ << " remain (is the file complete?)";
		fail(msg.str());
	}
	const uint8_t *p = data_ + pos_;
	pos_ += n;
	return p;
}

std::string Unpickler::read_line()
{
	const std::size_t max_line = 1024;
	std::size_t start = pos_;
	for (std::size_t i = pos_; i < size_ && i - start <= max_line; i++) {
		if (data_[i] == '\n') {
			pos_ = i + 1;
			return std::string(reinterpret_cast<const char *>(data_ + start),
					   i - start);
		}
	}
	if (size_ - start > max_line)
		fail("a GLOBAL name at byte " + std::to_string(start) + " is longer than " +
		     std::to_string(max_line) + " bytes");
	fail("the pickle is truncated inside a GLOBAL name at byte " + std::to_string(start));
}

void Unpickler::push(Value *value)
{
	stack_.push_back(value);
}

Value *Unpickler::pop()
{
	std::size_t base = marks_.empty() ? 0 : marks_.back();
	if (stack_.size() <= base)
		fail("malformed pickle: an opcode at byte " + std::to_string(pos_ - 1) +
		     " needs a value but the stack is empty");
	Value *value = stack_.back();
	stack_.pop_back();
	return value;
}

Value *Unpickler::top()
{
	std::size_t base = marks_.empty() ? 0 : marks_.back();
	if (stack_.size() <= base)
		fail("malformed pickle: an opcode at byte " + std::to_string(pos_ - 1) +
		     " needs a value but the stack is empty");
	return stack_.back();
}

std::vector<Value *> Unpickler::pop_mark()
{
	if (marks_.empty())
		fail("malformed pickle: an opcode at byte " + std::to_string(pos_ - 1) +
		     " needs a MARK but none is open");
	std::size_t base = marks_.back();
	marks_.pop_back();
	std::vector<Value *> items(stack_.begin() + base, stack_.end());
	stack_.resize(base);
	return items;
}

Value *Unpickler::make(Kind kind)
{
	if (arena_.size() >= limits_.max_objects)
		fail("the pickle builds more than " + std::to_string(limits_.max_objects) +
		     " objects, far more than any state dict");
	return arena_.make(kind);
}

void Unpickler::charge(std::size_t copied)
{
	// Containers copied from others (a dict passed to OrderedDict(), attributes merged by
	// BUILD) could otherwise grow far faster than the pickle that asks for them.
	copied_ += copied;
	if (copied_ > limits_.max_copied)
		fail("the pickle copies more than " + std::to_string(limits_.max_copied) +
		     " container entries, far more than any state dict");
}

void Unpickler::memo_put(uint64_t index, Value *value)
{
	auto it = memo_.find(index);
	if (it != memo_.end()) {
		it->second = value;
		return;
	}
	if (memo_.size() >= limits_.max_memo)
		fail("the pickle memoizes more than " + std::to_string(limits_.max_memo) +
		     " objects");
	memo_.emplace(index, value);
}

Value *Unpickler::memo_get(uint64_t index)
{
	auto it = memo_.find(index);
	if (it == memo_.end())
		fail("malformed pickle: memo entry " + std::to_string(index) +
		     " is used before it is set");
	return it->second;
}

Value *Unpickler::make_global(const std::string &module, const std::string &name)
{
	for (const KnownGlobal &known : kKnownGlobals) {
		if (module == known.module && name == known.name) {
			Value *value = make(Kind::Global);
			value->global = known.global;
			value->dtype = known.dtype;
			value->s = module + "." + name;
			return value;
		}
	}
	throw Error(
	    "checkpoint '" + name_ + "' refers to '" + printable(module + "." + name) +
	    "', which a weights file never needs; refusing to load it (a weights file holds a "
	    "state_dict: save one with torch.save(model.state_dict(), path))");
}

Value *Unpickler::rebuild_tensor(const std::vector<Value *> &args, std::size_t count)
{
	if (args.size() < count)
		fail("a tensor is rebuilt from " + std::to_string(args.size()) +
		     " arguments, expected " + std::to_string(count));
	Value *storage = args[0];
	if (storage->kind != Kind::Storage)
		fail(std::string("a tensor is rebuilt from a ") + kind_name(storage->kind) +
		     " where its storage should be");
	if (args[1]->kind != Kind::Int || args[1]->i < 0)
		fail("a tensor has an invalid storage offset");
	auto int_list = [&](Value *list, const char *what) {
		if (list->kind != Kind::Tuple && list->kind != Kind::List)
			fail(std::string("a tensor's ") + what + " is a " + kind_name(list->kind) +
			     ", not a tuple");
		if (list->items.size() > limits_.max_dims)
			fail(std::string("a tensor's ") + what + " has " +
			     std::to_string(list->items.size()) + " dimensions, more than " +
			     std::to_string(limits_.max_dims));
		std::vector<int64_t> out;
		for (Value *item : list->items) {
			if (item->kind != Kind::Int || item->i < 0)
				fail(std::string("a tensor's ") + what +
				     " holds something other than a "
				     "non-negative integer");
			out.push_back(item->i);
		}
		return out;
	};
	return make_tensor(storage, args[1]->i, int_list(args[2], "size"),
			   int_list(args[3], "stride"));
}

Value *Unpickler::make_tensor(Value *storage, int64_t offset, std::vector<int64_t> size,
			      std::vector<int64_t> stride)
{
	if (storage->kind != Kind::Storage)
		fail(std::string("a tensor is built on a ") + kind_name(storage->kind) +
		     ", not a storage");
	if (offset < 0)
		fail("a tensor has a negative storage offset");
	if (size.size() > limits_.max_dims || size.size() != stride.size())
		fail("a tensor has " + std::to_string(size.size()) + " sizes and " +
		     std::to_string(stride.size()) + " strides");
	for (std::size_t d = 0; d < size.size(); d++) {
		if (size[d] < 0 || stride[d] < 0)
			fail("a tensor has a negative size or stride");
	}
	auto tensor = std::make_unique<TensorInfo>();
	tensor->storage = storage;
	tensor->offset = offset;
	tensor->size = std::move(size);
	tensor->stride = std::move(stride);

	// The last element the view reaches must lie inside its storage; checked now, so that a
	// hostile size is refused before anything is allocated.
	int64_t numel = 1, last = tensor->offset;
	bool empty = false;
	for (std::size_t d = 0; d < tensor->size.size(); d++) {
		int64_t reach;
		if (tensor->size[d] == 0)
			empty = true;
		if (mul_overflows(numel, tensor->size[d], &numel) ||
		    mul_overflows(std::max<int64_t>(tensor->size[d] - 1, 0), tensor->stride[d],
				  &reach) ||
		    add_overflows(last, reach, &last))
			fail("a tensor's size and stride overflow 64 bits");
	}
	const StorageInfo &info = *storage->storage;
	if (!empty && last >= info.numel) {
		std::ostringstream msg;
		msg << "a tensor of size [";
		for (std::size_t d = 0; d < tensor->size.size(); d++)
			msg << (d ? ", " : "") << tensor->size[d];
		msg << "] at offset " << tensor->offset << " reaches element " << last
		    << " of storage '" << printable(info.key) << "', which holds only "
		    << info.numel << " elements";
		fail(msg.str());
	}
	// Views with zero strides repeat elements; materialising one must not blow up memory.
	const int64_t max_repeat = int64_t(1) << 24;
	if (!empty && numel > info.numel && numel > max_repeat)
		fail("a tensor repeats the " + std::to_string(info.numel) +
		     " elements of its storage into " + std::to_string(numel) +
		     " elements; refusing to expand it");

	Value *value = make(Kind::Tensor);
	value->tensor = std::move(tensor);
	return value;
}

Value *Unpickler::reduce(Value *callable, Value *args)
{
	if (callable->kind != Kind::Global)
		fail(std::string("REDUCE calls a ") + kind_name(callable->kind) +
		     "; only the known globals may be called");
	if (args->kind != Kind::Tuple)
		fail("REDUCE on '" + callable->s + "' gets a " + kind_name(args->kind) +
		     " of arguments instead of a tuple");
	const std::vector<Value *> &a = args->items;
	switch (callable->global) {
	case Global::OrderedDict:
	case Global::Counter: {
		Value *dict = make(Kind::Dict);
		dict->ordered = callable->global == Global::OrderedDict;
		if (a.empty())
			return dict;
		if (a.size() == 1 && a[0]->kind == Kind::Dict) {
			charge(a[0]->entries.size());
			dict->entries = a[0]->entries;
			return dict;
		}
		if (a.size() == 1 && a[0]->kind == Kind::List) {
			charge(a[0]->items.size());
			for (Value *pair : a[0]->items) {
				if ((pair->kind != Kind::Tuple && pair->kind != Kind::List) ||
				    pair->items.size() != 2)
					fail("'" + callable->s +
					     "' is built from a list that holds a " +
					     kind_name(pair->kind) +
					     " instead of a (key, value) pair");
				dict->entries.emplace_back(pair->items[0], pair->items[1]);
			}
			return dict;
		}
		fail("'" + callable->s + "' is called with arguments it does not take");
	}
	case Global::RebuildTensor:
		return rebuild_tensor(a, 4);
	case Global::RebuildTensorV2:
		return rebuild_tensor(a, 6);
	case Global::RebuildParameter:
	case Global::RebuildParameterWithState:
	case Global::Parameter:
		if (a.empty() || a[0]->kind != Kind::Tensor)
			fail("'" + callable->s + "' is called without a tensor");
		return a[0];
	case Global::CodecsEncode: {
		if (a.size() != 2 || a[0]->kind != Kind::String || a[1]->kind != Kind::String)
			fail("'_codecs.encode' is called with arguments other than (text, "
			     "encoding)");
		Value *bytes = make(Kind::Bytes);
		if (a[1]->s == "utf-8" || a[1]->s == "utf8") {
			bytes->s = a[0]->s;
			return bytes;
		}
		if (a[1]->s != "latin1" && a[1]->s != "latin-1")
			fail("'_codecs.encode' is called with encoding '" + printable(a[1]->s) +
			     "'");
		// Protocol 2 writes bytes as their latin-1 decoding, i.e. code points below 256.
		const std::string &text = a[0]->s;
		for (std::size_t i = 0; i < text.size(); i++) {
			unsigned char c = text[i];
			if (c < 0x80) {
				bytes->s += static_cast<char>(c);
			} else if ((c == 0xc2 || c == 0xc3) && i + 1 < text.size()) {
				bytes->s += static_cast<char>(
				    ((c & 0x03) << 6) |
				    (static_cast<unsigned char>(text[++i]) & 0x3f));
			} else {
				fail("'_codecs.encode' is given text that latin-1 cannot encode");
			}
		}
		return bytes;
	}
	case Global::Namespace:
	case Global::Storage:
	case Global::TensorType:
		break;
	}
	fail("REDUCE calls '" + callable->s + "', which a checkpoint never calls");
}

void Unpickler::build(Value *target, Value *state)
{
	if (target->kind == Kind::Dict || target->kind == Kind::Object) {
		// An object's state is its __dict__, or (__dict__, slots) from protocol 2's
		// copyreg.
		if (state->kind == Kind::Tuple && state->items.size() == 2)
			state = state->items[0];
		if (state->kind == Kind::None)
			return;
		if (state->kind != Kind::Dict)
			fail(std::string("BUILD sets a ") + kind_name(target->kind) +
			     "'s attributes from a " + kind_name(state->kind));
		if (target->state == nullptr) {
			target->state = state;
		} else if (target->state != state) {
			charge(state->entries.size());
			std::vector<std::pair<Value *, Value *>> added = state->entries;
			target->state->entries.insert(target->state->entries.end(), added.begin(),
						      added.end());
		}
		return;
	}
	if (target->kind == Kind::Tensor) {
		// torch >= 2.0 may set Python attributes of a tensor; they mean nothing to a state
		// dict.
		bool empty = state->kind == Kind::None ||
			     ((state->kind == Kind::Dict) && state->entries.empty()) ||
			     ((state->kind == Kind::Tuple) && state->items.empty());
		if (state->kind == Kind::Dict || state->kind == Kind::Tuple || empty)
			return;
	}
	fail(std::string("BUILD on a ") + kind_name(target->kind) + " with a " +
	     kind_name(state->kind) + " is not something a state dict does");
}

Value *Unpickler::load(std::size_t offset)
{
	pos_ = offset;
	copied_ = 0;
	stack_.clear();
	marks_.clear();
	memo_.clear();

	auto make_int = [&](int64_t v) {
		Value *value = make(Kind::Int);
		value->i = v;
		return value;
	};
	auto make_long = [&](const uint8_t *p, std::size_t n) {
		if (n == 0)
			return make_int(0);
		bool negative = p[n - 1] & 0x80;
		// Wider than 8 bytes is fine as long as the extra bytes only repeat the sign.
		bool fits = true;
		for (std::size_t i = 8; i < n; i++)
			fits = fits && p[i] == (negative ? 0xff : 0x00);
		if (n > 8)
			fits = fits && ((p[7] & 0x80) != 0) == negative;
		if (!fits) {
			Value *value = make(Kind::BigInt);
			value->s.assign(reinterpret_cast<const char *>(p), n);
			return value;
		}
		uint64_t u = negative ? ~uint64_t(0) : 0;
		for (std::size_t i = 0; i < std::min<std::size_t>(n, 8); i++) {
			u &= ~(uint64_t(0xff) << (8 * i));
			u |= uint64_t(p[i]) << (8 * i);
		}
		return make_int(static_cast<int64_t>(u));
	};
	auto make_text = [&](Kind kind, uint64_t length) {
		if (length > limits_.max_string)
			fail("a string at byte " + std::to_string(pos_) + " claims " +
			     std::to_string(length) + " bytes, more than the " +
			     std::to_string(limits_.max_string) + " allowed");
		const uint8_t *p = read_bytes(static_cast<std::size_t>(length));
		Value *value = make(kind);
		value->s.assign(reinterpret_cast<const char *>(p),
				static_cast<std::size_t>(length));
		return value;
	};
	auto tuple_of = [&](std::vector<Value *> items) {
		Value *value = make(Kind::Tuple);
		value->items = std::move(items);
		return value;
	};
	auto expect = [&](Value *value, Kind kind, const char *opcode) {
		if (value->kind != kind)
			fail(std::string(opcode) + " at byte " + std::to_string(pos_ - 1) +
			     " applies to a " + kind_name(value->kind) + ", not a " +
			     kind_name(kind));
		return value;
	};
	auto add_pairs = [&](Value *dict, const std::vector<Value *> &items) {
		if (items.size() % 2)
			fail("malformed pickle: SETITEMS at byte " + std::to_string(pos_ - 1) +
			     " has a key without a value");
		for (std::size_t k = 0; k < items.size(); k += 2)
			dict->entries.emplace_back(items[k], items[k + 1]);
	};

	for (;;) {
		const std::size_t at = pos_;
		const uint8_t op = read_u8();
		switch (op) {
		case PROTO: {
			uint8_t version = read_u8();
			if (version > 5)
				fail("pickle protocol " + std::to_string(version) +
				     " is newer than any known (5)");
			break;
		}
		case FRAME:
			// Frames only help buffered readers; the whole pickle is in memory already.
			read_uint(8);
			break;
		case STOP:
			return pop();
		case MARK:
			if (marks_.size() >= limits_.max_depth)
				fail("the pickle nests deeper than " +
				     std::to_string(limits_.max_depth) + " levels at byte " +
				     std::to_string(at) + "; no state dict does");
			marks_.push_back(stack_.size());
			break;
		case POP:
			if (stack_.size() > (marks_.empty() ? 0 : marks_.back()))
				stack_.pop_back();
			else
				pop_mark();
			break;
		case POP_MARK:
			pop_mark();
			break;
		case DUP:
			push(top());
			break;
		case NONE:
			push(make(Kind::None));
			break;
		case NEWTRUE:
		case NEWFALSE: {
			Value *value = make(Kind::Bool);
			value->i = op == NEWTRUE;
			push(value);
			break;
		}
		case BININT:
			push(make_int(static_cast<int32_t>(read_uint(4))));
			break;
		case BININT1:
			push(make_int(read_uint(1)));
			break;
		case BININT2:
			push(make_int(read_uint(2)));
			break;
		case LONG1: {
			std::size_t n = read_u8();
			push(make_long(read_bytes(n), n));
			break;
		}
		case LONG4: {
			int32_t n = static_cast<int32_t>(read_uint(4));
			if (n < 0 || static_cast<std::size_t>(n) > limits_.max_string)
				fail("an integer at byte " + std::to_string(at) +
				     " has an invalid length");
			push(make_long(read_bytes(n), n));
			break;
		}
		case BINFLOAT: {
			// The only big-endian field in a pickle.
			const uint8_t *p = read_bytes(8);
			uint64_t bits = 0;
			for (int k = 0; k < 8; k++)
				bits = (bits << 8) | p[k];
			double d;
			std::memcpy(&d, &bits, sizeof(d));
			Value *value = make(Kind::Float);
			value->f = d;
			push(value);
			break;
		}
		case SHORT_BINUNICODE:
			push(make_text(Kind::String, read_u8()));
			break;
		case BINUNICODE:
			push(make_text(Kind::String, read_uint(4)));
			break;
		case BINUNICODE8:
			push(make_text(Kind::String, read_uint(8)));
			break;
		case SHORT_BINSTRING:
			// Python 2's str, found in checkpoints written by Python 2: text for our
			// purposes.
			push(make_text(Kind::String, read_u8()));
			break;
		case BINSTRING: {
			int32_t n = static_cast<int32_t>(read_uint(4));
			if (n < 0)
				fail("a string at byte " + std::to_string(at) +
				     " has a negative length");
			push(make_text(Kind::String, static_cast<uint64_t>(n)));
			break;
		}
		case SHORT_BINBYTES:
			push(make_text(Kind::Bytes, read_u8()));
			break;
		case BINBYTES:
			push(make_text(Kind::Bytes, read_uint(4)));
			break;
		case BINBYTES8:
		case BYTEARRAY8:
			push(make_text(Kind::Bytes, read_uint(8)));
			break;
		case EMPTY_TUPLE:
			push(make(Kind::Tuple));
			break;
		case TUPLE:
			push(tuple_of(pop_mark()));
			break;
		case TUPLE1: {
			Value *a = pop();
			push(tuple_of({ a }));
			break;
		}
		case TUPLE2: {
			Value *b = pop();
			Value *a = pop();
			push(tuple_of({ a, b }));
			break;
		}
		case TUPLE3: {
			Value *c = pop();
			Value *b = pop();
			Value *a = pop();
			push(tuple_of({ a, b, c }));
			break;
		}
		case EMPTY_LIST:
			push(make(Kind::List));
			break;
		case LIST: {
			std::vector<Value *> items = pop_mark();
			Value *list = make(Kind::List);
			list->items = std::move(items);
			push(list);
			break;
		}
		case APPEND: {
			Value *item = pop();
			expect(top(), Kind::List, "APPEND")->items.push_back(item);
			break;
		}
		case APPENDS: {
			std::vector<Value *> items = pop_mark();
			Value *list = expect(top(), Kind::List, "APPENDS");
			list->items.insert(list->items.end(), items.begin(), items.end());
			break;
		}
		case EMPTY_SET:
			push(make(Kind::Set));
			break;
		case FROZENSET: {
			std::vector<Value *> items = pop_mark();
			Value *set = make(Kind::Set);
			set->items = std::move(items);
			push(set);
			break;
		}
		case ADDITEMS: {
			std::vector<Value *> items = pop_mark();
			Value *set = expect(top(), Kind::Set, "ADDITEMS");
			set->items.insert(set->items.end(), items.begin(), items.end());
			break;
		}
		case EMPTY_DICT:
			push(make(Kind::Dict));
			break;
		case DICT: {
			std::vector<Value *> items = pop_mark();
			Value *dict = make(Kind::Dict);
			add_pairs(dict, items);
			push(dict);
			break;
		}
		case SETITEM: {
			Value *value = pop();
			Value *key = pop();
			expect(top(), Kind::Dict, "SETITEM")->entries.emplace_back(key, value);
			break;
		}
		case SETITEMS: {
			std::vector<Value *> items = pop_mark();
			add_pairs(expect(top(), Kind::Dict, "SETITEMS"), items);
			break;
		}
		case BINPUT:
			memo_put(read_u8(), top());
			break;
		case LONG_BINPUT:
			memo_put(read_uint(4), top());
			break;
		case MEMOIZE:
			memo_put(memo_.size(), top());
			break;
		case BINGET:
			push(memo_get(read_u8()));
			break;
		case LONG_BINGET:
			push(memo_get(read_uint(4)));
			break;
		case GLOBAL: {
			std::string module = read_line();
			std::string name = read_line();
			push(make_global(module, name));
			break;
		}
		case STACK_GLOBAL: {
			Value *name = pop();
			Value *module = pop();
			if (module->kind != Kind::String || name->kind != Kind::String)
				fail("STACK_GLOBAL at byte " + std::to_string(at) +
				     " names a global with a " + kind_name(module->kind) +
				     " and a " + kind_name(name->kind));
			push(make_global(module->s, name->s));
			break;
		}
		case REDUCE: {
			Value *args = pop();
			Value *callable = pop();
			push(reduce(callable, args));
			break;
		}
		case BUILD: {
			Value *state = pop();
			build(top(), state);
			break;
		}
		case NEWOBJ:
		case NEWOBJ_EX: {
			if (op == NEWOBJ_EX)
				expect(pop(), Kind::Dict, "NEWOBJ_EX");
			Value *args =
			    expect(pop(), Kind::Tuple, op == NEWOBJ ? "NEWOBJ" : "NEWOBJ_EX");
			Value *cls =
			    expect(pop(), Kind::Global, op == NEWOBJ ? "NEWOBJ" : "NEWOBJ_EX");
			if (cls->global == Global::Namespace && args->items.empty()) {
				push(make(Kind::Object));
			} else if (cls->global == Global::OrderedDict ||
				   cls->global == Global::Parameter ||
				   cls->global == Global::Counter) {
				push(reduce(cls, args));
			} else {
				fail("NEWOBJ creates a '" + cls->s +
				     "', which a checkpoint never creates");
			}
			break;
		}
		case BINPERSID: {
			Value *pid = pop();
			if (!persistent_load_)
				fail("a persistent id at byte " + std::to_string(at) +
				     " appears where no storage may be referenced");
			push(persistent_load_(pid));
			break;
		}
		default: {
			std::ostringstream msg;
			msg << "pickle opcode 0x" << std::hex << int(op) << std::dec;
			if (op >= 0x20 && op < 0x7f)
				msg << " ('" << static_cast<char>(op) << "')";
			msg << " at byte " << at
			    << " is not one torch.save writes; refusing to load it";
			fail(msg.str());
		}
		}
	}
}

} // namespace frcnn::checkpoint

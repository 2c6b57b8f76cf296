// SPDX-License-Identifier: BSD-3-Clause
// Checkpoint containers (torch.save's zip and legacy formats), the state dict inside them, and
// the zip writer.
#include "frcnn/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <unordered_map>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/types.h>

#include "frcnn/error.h"
#include "pickle.h"
#include "zip.h"

namespace frcnn {

using checkpoint::Arena;
using checkpoint::element_size;
using checkpoint::Kind;
using checkpoint::StorageInfo;
using checkpoint::Unpickler;
using checkpoint::Value;
using checkpoint::ZipReader;

namespace {

// torch.save's legacy format starts with this number, pickled (serialization.py MAGIC_NUMBER),
// here as the little-endian bytes pickle's LONG1 stores it in.
const char kLegacyMagic[] = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
constexpr int64_t kLegacyProtocolVersion = 1001;

class MappedFile {
public:
	explicit MappedFile(const std::string &path)
	{
		fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
		if (fd_ < 0)
			throw Error("cannot open checkpoint '" + path +
				    "': " + std::strerror(errno));
		struct stat st;
		if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
			::close(fd_);
			throw Error("checkpoint '" + path + "' is not a regular file");
		}
		size_ = static_cast<std::size_t>(st.st_size);
		if (size_ == 0)
			return;
		void *map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
		if (map == MAP_FAILED) {
			int err = errno;
			::close(fd_);
			throw Error("cannot map checkpoint '" + path + "': " + std::strerror(err));
		}
		data_ = static_cast<const uint8_t *>(map);
	}
	~MappedFile()
	{
		if (data_)
			::munmap(const_cast<uint8_t *>(data_), size_);
		::close(fd_);
	}
	MappedFile(const MappedFile &) = delete;
	MappedFile &operator=(const MappedFile &) = delete;

	const uint8_t *data() const { return data_; }
	std::size_t size() const { return size_; }

private:
	int fd_ = -1;
	const uint8_t *data_ = nullptr;
	std::size_t size_ = 0;
};

std::string quote(const std::string &text)
{
	std::string out = "'";
	for (unsigned char c : text.substr(0, 200))
		out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
	return out + (text.size() > 200 ? "...'" : "'");
}

struct TarMember {
	const uint8_t *data;
	std::size_t size;
};

// Regular files of a POSIX tar archive, by name.
std::unordered_map<std::string, TarMember>
tar_members(const uint8_t *data, std::size_t size,
	    const std::function<void(const std::string &)> &fail)
{
	constexpr std::size_t kBlock = 512;
	std::unordered_map<std::string, TarMember> members;
	std::size_t pos = 0;
	while (size - pos >= kBlock) {
		const uint8_t *h = data + pos;
		if (std::all_of(h, h + kBlock, [](uint8_t b) { return b == 0; }))
			return members;
		// The checksum: the header's byte sum with its own field counted as spaces.
		auto octal = [&](std::size_t at, std::size_t len, const char *what) {
			uint64_t value = 0;
			std::size_t i = at;
			while (i < at + len && h[i] == ' ')
				i++;
			for (; i < at + len && h[i] >= '0' && h[i] <= '7'; i++) {
				if (value >> 60)
					fail(std::string("the tar header's ") + what +
					     " field overflows");
				value = value * 8 + (h[i] - '0');
			}
			if (i < at + len && h[i] != 0 && h[i] != ' ')
				fail(std::string("the tar header at byte ") + std::to_string(pos) +
				     " has a malformed " + what);
			return value;
		};
		uint64_t sum = 0;
		for (std::size_t i = 0; i < kBlock; i++)
			sum += (i >= 148 && i < 156) ? ' ' : h[i];
		if (octal(148, 8, "checksum") != sum)
			fail("the tar header at byte " + std::to_string(pos) +
			     " fails its checksum; the file is corrupt");
		uint64_t member_size = octal(124, 12, "size");
		std::string name(reinterpret_cast<const char *>(h),
				 strnlen(reinterpret_cast<const char *>(h), 100));
		const char type = static_cast<char>(h[156]);
		pos += kBlock;
		if (member_size > size - pos)
			fail("tar member '" + name + "' (" + std::to_string(member_size) +
			     " bytes) runs past the end "
			     "of the file; the file is truncated");
		if (type == '0' || type == '\0')
			members.emplace(
			    name, TarMember{ data + pos, static_cast<std::size_t>(member_size) });
		uint64_t padded = (member_size + kBlock - 1) / kBlock * kBlock;
		pos = padded > size - pos ? size : pos + padded;
	}
	fail("the tar archive ends without its end-of-archive blocks; the file is truncated");
	return members;
}

// Reads one checkpoint: owns every value its pickles build until the tensors are copied out.
class Reader {
public:
	Reader(const uint8_t *data, std::size_t size, std::string name)
	    : data_(data), size_(size), name_(std::move(name))
	{
	}

	Checkpoint read();

private:
	[[noreturn]] void fail(const std::string &message) const
	{
		throw Error("checkpoint '" + name_ + "': " + message);
	}

	Value *read_zip();
	Value *read_legacy();
	Value *read_tar();
	// ('storage', <Type>Storage, key, location, numel, ...): the fields both formats share.
	struct StorageId {
		c10::ScalarType dtype;
		std::string key;
		int64_t numel;
	};
	StorageId parse_storage_id(Value *pid, std::size_t fields);
	Value *storage_value(const StorageId &id);
	Checkpoint to_checkpoint(Value *root);
	torch::Tensor materialize(const std::string &key, const Value &tensor);

	const uint8_t *data_;
	std::size_t size_;
	std::string name_;
	Arena arena_;
	std::unordered_map<std::string, Value *> storages_;
	uint64_t output_bytes_ = 0;
};

Reader::StorageId Reader::parse_storage_id(Value *pid, std::size_t fields)
{
	if (pid->kind != Kind::Tuple || pid->items.size() < fields)
		fail(std::string("a persistent id is a ") + checkpoint::kind_name(pid->kind) +
		     " of " + std::to_string(pid->items.size()) +
		     " items, not a storage reference");
	const auto &f = pid->items;
	if ((f[0]->kind != Kind::String && f[0]->kind != Kind::Bytes) || f[0]->s != "storage")
		fail("a persistent id refers to something other than a storage");
	if (f[1]->kind != Kind::Global || f[1]->global != checkpoint::Global::Storage)
		fail(std::string("a storage reference names a ") +
		     checkpoint::kind_name(f[1]->kind) +
		     (f[1]->kind == Kind::Global ? " '" + f[1]->s + "'" : std::string()) +
		     " instead of a storage type");
	if (f[2]->kind != Kind::String)
		fail("a storage key is not a string");
	if (f[4]->kind != Kind::Int || f[4]->i < 0)
		fail("storage " + quote(f[2]->s) + " has an invalid element count");
	return StorageId{ f[1]->dtype, f[2]->s, f[4]->i };
}

Value *Reader::storage_value(const StorageId &id)
{
	auto it = storages_.find(id.key);
	if (it != storages_.end()) {
		const StorageInfo &info = *it->second->storage;
		if (info.dtype != id.dtype || info.numel != id.numel)
			fail("storage " + quote(id.key) +
			     " is referenced with two different types or sizes");
		return it->second;
	}
	Value *value = arena_.make(Kind::Storage);
	value->storage = std::make_unique<StorageInfo>();
	value->storage->dtype = id.dtype;
	value->storage->key = id.key;
	value->storage->numel = id.numel;
	storages_.emplace(id.key, value);
	return value;
}

std::string bytes_text(int64_t numel, std::size_t elem)
{
	std::ostringstream out;
	out << numel << " elements of " << elem << " bytes";
	return out.str();
}

Value *Reader::read_zip()
{
	ZipReader zip(data_, size_, name_);

	// Every record lives under one folder named after the file torch.save wrote
	// ("<archive>/data.pkl"); the folder's name does not matter.
	std::string prefix;
	const ZipReader::Entry *pickle = nullptr;
	for (const auto &entry : zip.entries()) {
		const std::string suffix = "/data.pkl";
		if (entry.name.size() > suffix.size() &&
		    entry.name.compare(entry.name.size() - suffix.size(), suffix.size(), suffix) ==
			0 &&
		    entry.name.find('/') == entry.name.size() - suffix.size()) {
			pickle = &entry;
			prefix = entry.name.substr(0, entry.name.size() - suffix.size() + 1);
			break;
		}
	}
	if (pickle == nullptr)
		fail("the zip archive has no '<archive>/data.pkl' record; it is not a torch.save "
		     "checkpoint");
	if (zip.find(prefix + "constants.pkl") != nullptr)
		fail("this is a TorchScript archive (torch.jit.save), not a checkpoint; save the "
		     "model's "
		     "state_dict() with torch.save instead");

	bool big_endian = false;
	if (const ZipReader::Entry *order = zip.find(prefix + "byteorder")) {
		ZipReader::Span span = zip.read(*order);
		std::string text(reinterpret_cast<const char *>(span.data), span.size);
		if (text == "big")
			big_endian = true;
		else if (text != "little")
			fail("the byteorder record says " + quote(text) +
			     ", not 'little' or 'big'");
	}

	ZipReader::Span pkl = zip.read(*pickle);
	Unpickler unpickler(pkl.data, pkl.size, name_, arena_, [&](Value *pid) {
		StorageId id = parse_storage_id(pid, 5);
		Value *value = storage_value(id);
		StorageInfo &info = *value->storage;
		if (info.data != nullptr || id.numel == 0)
			return value;
		const ZipReader::Entry *record = zip.find(prefix + "data/" + id.key);
		if (record == nullptr)
			fail("storage " + quote(id.key) + " has no record '" + prefix + "data/" +
			     id.key + "' in the zip archive");
		// Checked before the record is read, so that a claimed 1 TB storage fails at once.
		std::size_t elem = element_size(id.dtype);
		int64_t nbytes;
		if (__builtin_mul_overflow(id.numel, static_cast<int64_t>(elem), &nbytes) ||
		    static_cast<uint64_t>(nbytes) > record->size)
			fail("storage " + quote(id.key) + " claims " + bytes_text(id.numel, elem) +
			     " but its record holds only " + std::to_string(record->size) +
			     " bytes");
		info.data = zip.read(*record).data;
		info.big_endian = big_endian;
		return value;
	});
	return unpickler.load();
}

Value *Reader::read_legacy()
{
	Unpickler header(data_, size_, name_, arena_);
	Value *magic = header.load(0);
	if (magic->kind != Kind::BigInt || magic->s != std::string(kLegacyMagic, 10))
		fail("the file starts with a pickle but not with torch.save's magic number; it is "
		     "not a "
		     "PyTorch checkpoint");
	Value *version = header.load(header.end());
	if (version->kind != Kind::Int || version->i != kLegacyProtocolVersion)
		fail("the legacy format's protocol version is not " +
		     std::to_string(kLegacyProtocolVersion));
	Value *sys_info = header.load(header.end());
	if (sys_info->kind != Kind::Dict)
		fail("the legacy format's sys_info is not a dict");
	bool big_endian = false;
	if (Value *little = sys_info->get("little_endian"))
		big_endian = little->kind == Kind::Bool && little->i == 0;

	// The storages' bytes follow the pickles, so references are only recorded here; their sizes
	// are checked against the file size so that a claimed 1 TB storage fails at once.
	std::unordered_map<std::string, Value *> views;
	Unpickler main(data_, size_, name_, arena_, [&](Value *pid) -> Value * {
		StorageId id = parse_storage_id(pid, 6);
		std::size_t elem = element_size(id.dtype);
		int64_t nbytes;
		if (__builtin_mul_overflow(id.numel, static_cast<int64_t>(elem), &nbytes) ||
		    static_cast<uint64_t>(nbytes) > size_)
			fail("storage " + quote(id.key) + " claims " + bytes_text(id.numel, elem) +
			     ", more than the whole " + std::to_string(size_) + "-byte file");
		Value *root = storage_value(id);
		root->storage->big_endian = big_endian;
		Value *view = pid->items[5];
		if (view->kind == Kind::None)
			return root;
		// (view key, offset, size): a slice of the root storage, from torch < 0.4.
		if (view->kind != Kind::Tuple || view->items.size() != 3 ||
		    view->items[0]->kind != Kind::String || view->items[1]->kind != Kind::Int ||
		    view->items[2]->kind != Kind::Int)
			fail("storage " + quote(id.key) + " has malformed view metadata");
		const std::string &key = view->items[0]->s;
		int64_t offset = view->items[1]->i, numel = view->items[2]->i;
		if (offset < 0 || numel < 0 || offset > id.numel || numel > id.numel - offset)
			fail("storage view " + quote(key) + " lies outside storage " +
			     quote(id.key));
		auto it = views.find(key);
		if (it != views.end())
			return it->second;
		Value *value = arena_.make(Kind::Storage);
		value->storage = std::make_unique<StorageInfo>();
		value->storage->dtype = id.dtype;
		value->storage->key = key;
		value->storage->numel = numel;
		value->storage->root = root;
		value->storage->root_offset = offset;
		views.emplace(key, value);
		return value;
	});
	Value *root = main.load(header.end());

	Unpickler keys_reader(data_, size_, name_, arena_);
	Value *keys = keys_reader.load(main.end());
	if (keys->kind != Kind::List && keys->kind != Kind::Tuple)
		fail("the legacy format's storage key list is a " +
		     std::string(checkpoint::kind_name(keys->kind)));
	std::size_t pos = keys_reader.end();
	for (Value *key : keys->items) {
		if (key->kind != Kind::String)
			fail("the legacy format's storage key list holds a " +
			     std::string(checkpoint::kind_name(key->kind)));
		auto it = storages_.find(key->s);
		if (it == storages_.end())
			fail("the file stores storage " + quote(key->s) +
			     ", which nothing refers to");
		StorageInfo &info = *it->second->storage;
		if (size_ - pos < 8)
			fail("the file is truncated in the header of storage " + quote(key->s));
		int64_t numel = 0;
		for (int b = 7; b >= 0; b--)
			numel = static_cast<int64_t>((static_cast<uint64_t>(numel) << 8) |
						     data_[pos + b]);
		pos += 8;
		std::size_t elem = element_size(info.dtype);
		if (numel != info.numel)
			fail("storage " + quote(key->s) + " holds " + std::to_string(numel) +
			     " elements but is referenced with " + std::to_string(info.numel));
		uint64_t nbytes =
		    static_cast<uint64_t>(numel) * elem; // numel * elem <= size_, checked above
		if (nbytes > size_ - pos)
			fail("the file is truncated: storage " + quote(key->s) + " needs " +
			     std::to_string(nbytes) + " bytes at byte " + std::to_string(pos) +
			     " but only " + std::to_string(size_ - pos) + " remain");
		info.data = data_ + pos;
		pos += nbytes;
	}
	return root;
}

// torch.save's first format: a tar archive of a storage list ('storages', each an int64 element
// count and the raw elements after a pickled (key, location, type)), a tensor list ('tensors',
// each a pickled (key, storage key, type) followed by ndim, sizes, strides and offset), and the
// object ('pickle'), whose persistent ids are the keys of those tensors and storages.
Value *Reader::read_tar()
{
	auto members = tar_members(data_, size_, [this](const std::string &m) { fail(m); });
	for (const char *name : { "storages", "tensors", "pickle" }) {
		if (members.count(name) == 0)
			fail(std::string("the tar archive has no '") + name +
			     "' member; it is not a torch.save checkpoint");
	}
	auto read_i64 = [&](const TarMember &m, std::size_t &pos, const char *what) {
		if (m.size - pos < 8)
			fail(std::string("the tar format's ") + what + " list is truncated");
		uint64_t v = 0;
		for (int b = 7; b >= 0; b--)
			v = (v << 8) | m.data[pos + b];
		pos += 8;
		return static_cast<int64_t>(v);
	};
	auto count_of = [&](Value *n, const TarMember &m, const char *what) {
		if (n->kind != Kind::Int || n->i < 0 || static_cast<uint64_t>(n->i) > m.size)
			fail(std::string("the tar format's ") + what + " count is invalid");
		return n->i;
	};

	const TarMember &st = members.at("storages");
	Unpickler storages(st.data, st.size, name_, arena_);
	int64_t n = count_of(storages.load(0), st, "storage");
	std::size_t pos = storages.end();
	for (int64_t i = 0; i < n; i++) {
		Value *args = storages.load(pos);
		if (args->kind != Kind::Tuple || args->items.size() != 3 ||
		    args->items[0]->kind != Kind::Int || args->items[2]->kind != Kind::Global ||
		    args->items[2]->global != checkpoint::Global::Storage)
			fail("the tar format's storage list holds something other than (key, "
			     "location, type)");
		pos = storages.end();
		int64_t numel = read_i64(st, pos, "storage");
		std::size_t elem = element_size(args->items[2]->dtype);
		if (numel < 0 || static_cast<uint64_t>(numel) > (st.size - pos) / elem)
			fail("storage " + std::to_string(args->items[0]->i) + " claims " +
			     bytes_text(numel, elem) + " but only " +
			     std::to_string(st.size - pos) + " bytes remain");
		Value *value = storage_value(
		    { args->items[2]->dtype, std::to_string(args->items[0]->i), numel });
		value->storage->data = st.data + pos;
		pos += numel * elem;
	}
	// (view key, root key, offset, numel): storages that are slices of others.
	Value *views = storages.load(pos);
	if (views->kind != Kind::List)
		fail("the tar format's storage view list is a " +
		     std::string(checkpoint::kind_name(views->kind)));
	for (Value *view : views->items) {
		const auto &f = view->items;
		if ((view->kind != Kind::Tuple && view->kind != Kind::List) || f.size() != 4 ||
		    std::any_of(f.begin(), f.end(), [](Value *v) { return v->kind != Kind::Int; }))
			fail("the tar format's storage view list holds something other than (key, "
			     "root, offset, numel)");
		auto root = storages_.find(std::to_string(f[1]->i));
		if (root == storages_.end() || root->second->storage->root != nullptr)
			fail("storage view " + std::to_string(f[0]->i) +
			     " refers to an unknown storage");
		const StorageInfo &info = *root->second->storage;
		if (f[2]->i < 0 || f[3]->i < 0 || f[2]->i > info.numel ||
		    f[3]->i > info.numel - f[2]->i)
			fail("storage view " + std::to_string(f[0]->i) +
			     " lies outside its storage");
		if (storages_.count(std::to_string(f[0]->i)))
			fail("storage " + std::to_string(f[0]->i) + " is defined twice");
		Value *value = storage_value({ info.dtype, std::to_string(f[0]->i), f[3]->i });
		value->storage->root = root->second;
		value->storage->root_offset = f[2]->i;
	}

	const TarMember &tm = members.at("tensors");
	Unpickler tensor_list(tm.data, tm.size, name_, arena_);
	std::unordered_map<std::string, Value *> tensors;
	n = count_of(tensor_list.load(0), tm, "tensor");
	pos = tensor_list.end();
	for (int64_t i = 0; i < n; i++) {
		Value *args = tensor_list.load(pos);
		if (args->kind != Kind::Tuple || args->items.size() != 3 ||
		    args->items[0]->kind != Kind::Int || args->items[1]->kind != Kind::Int)
			fail("the tar format's tensor list holds something other than (key, "
			     "storage, type)");
		pos = tensor_list.end();
		if (tm.size - pos < 8)
			fail("the tar format's tensor list is truncated");
		int32_t ndim =
		    static_cast<int32_t>(tm.data[pos] | tm.data[pos + 1] << 8 |
					 tm.data[pos + 2] << 16 | uint32_t(tm.data[pos + 3]) << 24);
		pos += 8; // ndim was once written as 8 bytes
		if (ndim < 0 || ndim > 64)
			fail("a tensor in the tar format has " + std::to_string(ndim) +
			     " dimensions");
		std::vector<int64_t> sizes, strides;
		for (int32_t d = 0; d < ndim; d++)
			sizes.push_back(read_i64(tm, pos, "tensor"));
		for (int32_t d = 0; d < ndim; d++)
			strides.push_back(read_i64(tm, pos, "tensor"));
		int64_t offset = read_i64(tm, pos, "tensor");
		auto storage = storages_.find(std::to_string(args->items[1]->i));
		if (storage == storages_.end())
			fail("a tensor in the tar format refers to storage " +
			     std::to_string(args->items[1]->i) + ", which the file does not hold");
		tensors[std::to_string(args->items[0]->i)] = tensor_list.make_tensor(
		    storage->second, offset, std::move(sizes), std::move(strides));
	}

	const TarMember &pm = members.at("pickle");
	Unpickler main(pm.data, pm.size, name_, arena_, [&](Value *pid) -> Value * {
		if (pid->kind != Kind::String)
			fail(std::string("a persistent id is a ") +
			     checkpoint::kind_name(pid->kind) +
			     "; the tar format refers to tensors by key (a pickled module?)");
		auto tensor = tensors.find(pid->s);
		if (tensor != tensors.end())
			return tensor->second;
		auto storage = storages_.find(pid->s);
		if (storage != storages_.end())
			return storage->second;
		fail("persistent id " + quote(pid->s) + " names no tensor or storage of the file");
	});
	return main.load(0);
}

torch::Tensor Reader::materialize(const std::string &key, const Value &value)
{
	const checkpoint::TensorInfo &t = *value.tensor;
	const StorageInfo *info = t.storage->storage.get();
	const std::size_t elem = element_size(info->dtype);
	const uint8_t *base = info->data;
	bool big_endian = info->big_endian;
	if (info->root != nullptr) {
		const StorageInfo &root = *info->root->storage;
		base = root.data ? root.data + info->root_offset * elem : nullptr;
		big_endian = root.big_endian;
	}
	auto options = torch::TensorOptions().dtype(info->dtype);
	int64_t numel = 1, last = t.offset;
	bool contiguous = true;
	int64_t expected_stride = 1;
	for (std::size_t d = t.size.size(); d-- > 0;) {
		numel *= t.size[d];
		last += std::max<int64_t>(t.size[d] - 1, 0) * t.stride[d];
		if (t.size[d] != 1 && t.stride[d] != expected_stride)
			contiguous = false;
		expected_stride *= t.size[d];
	}
	if (numel == 0)
		return torch::empty(t.size, options);
	if (base == nullptr)
		fail("tensor " + quote(key) + " uses storage " + quote(info->key) +
		     ", whose bytes are not in the file");

	// Views may repeat a storage's bytes (several tensors on one storage, stride 0); each
	// result owns its memory, so the total is bounded by the file's size, with room for real
	// sharing.
	const int64_t extent = last - t.offset + 1;
	const uint8_t *first = base + t.offset * elem;
	const bool aligned = reinterpret_cast<uintptr_t>(first) % elem == 0;
	output_bytes_ += static_cast<uint64_t>(numel) * elem;
	if (!contiguous && !aligned)
		output_bytes_ += static_cast<uint64_t>(extent) * elem;
	const uint64_t budget = 4 * static_cast<uint64_t>(size_) + (uint64_t(64) << 20);
	if (output_bytes_ > budget)
		fail("its tensors would take " + std::to_string(output_bytes_) +
		     " bytes or more, over four "
		     "times the file's size; refusing to expand views that repeat its storages");

	torch::Tensor out;
	if (contiguous) {
		out = torch::empty(t.size, options);
		std::memcpy(out.data_ptr(), first, numel * elem);
	} else if (aligned) {
		void *p = const_cast<uint8_t *>(first);
		out = torch::from_blob(p, t.size, t.stride, options)
			  .clone(at::MemoryFormat::Contiguous);
	} else {
		// Legacy files place storages at any byte; copy the span to aligned memory first.
		torch::Tensor span = torch::empty({ extent }, options);
		std::memcpy(span.data_ptr(), first, extent * elem);
		out = span.as_strided(t.size, t.stride).clone(at::MemoryFormat::Contiguous);
	}
	if (big_endian && elem > 1) {
		auto *bytes = static_cast<uint8_t *>(out.data_ptr());
		for (int64_t i = 0; i < numel; i++)
			std::reverse(bytes + i * elem, bytes + (i + 1) * elem);
	}
	return out;
}

Checkpoint Reader::to_checkpoint(Value *root)
{
	if (root->kind != Kind::Dict)
		fail(std::string("the checkpoint holds a ") + checkpoint::kind_name(root->kind) +
		     ", not a state dict");
	// A training checkpoint keeps the model's state dict under "model" (torchvision's reference
	// scripts), "state_dict" or "model_state_dict" (PyTorch's tutorial on saving a general
	// checkpoint); everything else in it (optimizer, epoch, ...) is ignored.
	// The first of these that holds tensors only (a "model" entry may hold a configuration
	// instead), else the first that is a dict (its error then names what is in it).
	Value *state_dict = root;
	Value *first_dict = nullptr;
	for (const char *name : { "model", "state_dict", "model_state_dict" }) {
		Value *inner = root->get(name);
		if (inner == nullptr || inner->kind != Kind::Dict)
			continue;
		if (first_dict == nullptr)
			first_dict = inner;
		const bool tensors_only = std::all_of(inner->entries.begin(), inner->entries.end(), [](const auto &entry) {
			return entry.second->kind == Kind::Tensor;
		});
		if (tensors_only) {
			state_dict = inner;
			break;
		}
	}
	if (state_dict == root && first_dict != nullptr)
		state_dict = first_dict;

	Checkpoint result;
	// Python's dict keeps the first position of a key and its last value.
	std::unordered_map<std::string, std::size_t> position;
	std::vector<const Value *> values;
	for (const auto &[key, value] : state_dict->entries) {
		if (key->kind != Kind::String)
			fail(std::string("the state dict has a ") +
			     checkpoint::kind_name(key->kind) +
			     " key; state dict keys are strings");
		if (value->kind != Kind::Tensor)
			fail("state dict entry " + quote(key->s) + " is a " +
			     checkpoint::kind_name(value->kind) + ", not a tensor" +
			     (value->kind == Kind::Dict && state_dict == root
				      ? " (the state dict of a training checkpoint is read from its \"model\", "
					"\"state_dict\" or \"model_state_dict\" entry: save the model's "
					"state_dict() itself, or under one of these)"
				      : ""));
		auto [it, inserted] = position.emplace(key->s, values.size());
		if (inserted) {
			result.tensors.emplace_back(key->s, torch::Tensor());
			values.push_back(value);
		} else {
			values[it->second] = value;
		}
	}
	for (std::size_t i = 0; i < values.size(); i++)
		result.tensors[i].second = materialize(result.tensors[i].first, *values[i]);

	// OrderedDict's `_metadata` attribute: module prefix -> {"version": N, ...}.
	Value *metadata = state_dict->state ? state_dict->state->get("_metadata") : nullptr;
	if (metadata != nullptr && metadata->kind == Kind::Dict) {
		for (const auto &[prefix, info] : metadata->entries) {
			if (prefix->kind != Kind::String || info->kind != Kind::Dict)
				continue;
			Value *version = info->get("version");
			if (version != nullptr && version->kind == Kind::Int)
				result.module_versions[prefix->s] = version->i;
		}
	}

	// A model saved while wrapped in DistributedDataParallel or DataParallel has all its keys
	// under "module.": the model's own are below it (as torch's
	// consume_prefix_in_state_dict_if_present takes them).
	const std::string wrapper = "module.";
	const auto wrapped = [&wrapper](const std::string &key) { return key.compare(0, wrapper.size(), wrapper) == 0; };
	if (!result.tensors.empty() &&
	    std::all_of(result.tensors.begin(), result.tensors.end(), [&](const auto &t) { return wrapped(t.first); })) {
		for (auto &tensor : result.tensors)
			tensor.first.erase(0, wrapper.size());
		std::map<std::string, int64_t> versions;
		for (const auto &[prefix, version] : result.module_versions) {
			if (prefix == "module")
				versions[""] = version;
			else if (wrapped(prefix))
				versions[prefix.substr(wrapper.size())] = version;
		}
		result.module_versions = std::move(versions);
	}
	return result;
}

Checkpoint Reader::read()
{
	Value *root = nullptr;
	if (ZipReader::looks_like_zip(data_, size_)) {
		root = read_zip();
	} else if (size_ >= 2 && data_[0] == 0x80 && data_[1] <= 5) {
		root = read_legacy();
	} else if (size_ >= 262 && std::memcmp(data_ + 257, "ustar", 5) == 0) {
		root = read_tar();
	} else {
		std::ostringstream msg;
		msg << "not a PyTorch checkpoint (" << size_ << " bytes";
		if (size_ >= 4) {
			msg << ", starting with";
			for (int i = 0; i < 4; i++)
				msg << ' ' << std::hex << int(data_[i]) << std::dec;
		}
		msg << "); expected a zip archive or torch.save's legacy format";
		fail(msg.str());
	}
	return to_checkpoint(root);
}

// --- writing -------------------------------------------------------------------------------

// Pickle protocol 2, and only the opcodes torch.load(weights_only=True) accepts since 1.13.
class PickleWriter {
public:
	void proto() { out_ += "\x80\x02"; }
	void op(char c) { out_ += c; }
	void global(const char *module, const char *name)
	{
		out_ += 'c';
		out_ += module;
		out_ += '\n';
		out_ += name;
		out_ += '\n';
	}
	void string(const std::string &text)
	{
		out_ += 'X';
		put_le(text.size(), 4);
		out_ += text;
	}
	void integer(int64_t v)
	{
		if (v >= 0 && v < 256) {
			out_ += 'K';
			put_le(v, 1);
		} else if (v >= 0 && v < 65536) {
			out_ += 'M';
			put_le(v, 2);
		} else if (v >= INT32_MIN && v <= INT32_MAX) {
			out_ += 'J';
			put_le(static_cast<uint64_t>(v), 4);
		} else {
			out_ += '\x8a';
			out_ += '\x08';
			put_le(static_cast<uint64_t>(v), 8);
		}
	}
	void int_tuple(c10::IntArrayRef values)
	{
		if (values.empty()) {
			op(')');
			return;
		}
		op('(');
		for (int64_t v : values)
			integer(v);
		op('t');
	}
	void empty_ordered_dict()
	{
		global("collections", "OrderedDict");
		op(')');
		op('R');
	}
	const std::string &bytes() const { return out_; }

private:
	void put_le(uint64_t v, int bytes)
	{
		for (int i = 0; i < bytes; i++)
			out_ += static_cast<char>((v >> (8 * i)) & 0xff);
	}
	std::string out_;
};

const char *storage_type_name(c10::ScalarType dtype)
{
	switch (dtype) {
	case c10::ScalarType::Float:
		return "FloatStorage";
	case c10::ScalarType::Half:
		return "HalfStorage";
	case c10::ScalarType::BFloat16:
		return "BFloat16Storage";
	case c10::ScalarType::Double:
		return "DoubleStorage";
	case c10::ScalarType::Long:
		return "LongStorage";
	case c10::ScalarType::Int:
		return "IntStorage";
	case c10::ScalarType::Short:
		return "ShortStorage";
	case c10::ScalarType::Char:
		return "CharStorage";
	case c10::ScalarType::Byte:
		return "ByteStorage";
	case c10::ScalarType::Bool:
		return "BoolStorage";
	default:
		return nullptr;
	}
}

bool host_is_little_endian()
{
	const uint16_t probe = 1;
	uint8_t first;
	std::memcpy(&first, &probe, 1);
	return first == 1;
}

} // namespace

Checkpoint read_checkpoint_bytes(const void *data, std::size_t size, const std::string &name)
{
	if (data == nullptr && size != 0)
		throw Error("checkpoint '" + name + "': no data");
	static const uint8_t empty = 0;
	Reader reader(size ? static_cast<const uint8_t *>(data) : &empty, size, name);
	if (size == 0)
		throw Error("checkpoint '" + name + "' is empty");
	try {
		return reader.read();
	} catch (const Error &) {
		throw;
	} catch (const std::bad_alloc &) {
		throw Error("checkpoint '" + name + "': out of memory while reading it");
	} catch (const std::exception &e) {
		throw Error("checkpoint '" + name + "': " + e.what());
	}
}

Checkpoint read_checkpoint(const std::string &path)
{
	MappedFile file(path);
	return read_checkpoint_bytes(file.data(), file.size(), path);
}

void write_checkpoint(const std::string &path, const StateDict &tensors)
{
	write_checkpoint(path, Checkpoint{ tensors, {} });
}

void write_checkpoint(const std::string &path, const Checkpoint &checkpoint)
{
	// The layout torch.save writes: an OrderedDict of _rebuild_tensor_v2 calls, each naming its
	// storage by a persistent id whose bytes are the record data/<key>.
	PickleWriter pickle;
	std::vector<torch::Tensor> storages;
	pickle.proto();
	pickle.empty_ordered_dict();
	pickle.op('(');
	for (const auto &[name, tensor] : checkpoint.tensors) {
		if (!tensor.defined())
			throw Error("cannot write checkpoint '" + path + "': tensor '" + name +
				    "' is undefined");
		const char *storage_type = storage_type_name(tensor.scalar_type());
		if (storage_type == nullptr)
			throw Error("cannot write checkpoint '" + path + "': tensor '" + name +
				    "' has type " + c10::toString(tensor.scalar_type()) +
				    ", which checkpoints do not hold");
		torch::Tensor data = tensor.detach().to(torch::kCPU).contiguous();
		const std::string key = std::to_string(storages.size());
		storages.push_back(data);

		pickle.string(name);
		pickle.global("torch._utils", "_rebuild_tensor_v2");
		pickle.op('(');
		pickle.op('(');
		pickle.string("storage");
		pickle.global("torch", storage_type);
		pickle.string(key);
		pickle.string("cpu");
		pickle.integer(data.numel());
		pickle.op('t');
		pickle.op('Q');
		pickle.integer(0);
		pickle.int_tuple(data.sizes());
		pickle.int_tuple(data.strides());
		pickle.op('\x89');
		pickle.empty_ordered_dict();
		pickle.op('t');
		pickle.op('R');
	}
	pickle.op('u');
	if (!checkpoint.module_versions.empty()) {
		// state_dict()'s `_metadata` attribute, set the way pickle restores an
		// OrderedDict's
		// __dict__: BUILD with {"_metadata": OrderedDict(prefix -> {"version": N})}.
		pickle.op('}');
		pickle.string("_metadata");
		pickle.empty_ordered_dict();
		pickle.op('(');
		for (const auto &[prefix, version] : checkpoint.module_versions) {
			pickle.string(prefix);
			pickle.op('}');
			pickle.string("version");
			pickle.integer(version);
			pickle.op('s');
		}
		pickle.op('u');
		pickle.op('s');
		pickle.op('b');
	}
	pickle.op('.');

	// Written under a temporary name and renamed, so that a failed write never leaves a
	// half-written checkpoint under the real name.
	const std::string partial = path + ".partial";
	try {
		std::ofstream out(partial, std::ios::binary | std::ios::trunc);
		if (!out)
			throw Error("cannot write checkpoint '" + path + "': cannot create '" +
				    partial + "': " + std::strerror(errno));
		{
			caffe2::serialize::PyTorchStreamWriter writer(
			    [&](const void *buf, std::size_t n) -> std::size_t {
				    out.write(static_cast<const char *>(buf),
					      static_cast<std::streamsize>(n));
				    return out ? n : 0;
			    });
			writer.writeRecord("data.pkl", pickle.bytes().data(),
					   pickle.bytes().size());
			const std::string order = host_is_little_endian() ? "little" : "big";
			writer.writeRecord("byteorder", order.data(), order.size());
			for (std::size_t i = 0; i < storages.size(); i++) {
				const torch::Tensor &data = storages[i];
				writer.writeRecord("data/" + std::to_string(i), data.data_ptr(),
						   data.numel() * data.element_size());
			}
			writer.writeEndOfFile();
		}
		out.close();
		if (!out)
			throw Error("cannot write checkpoint '" + path + "': writing '" + partial +
				    "' failed");
		if (std::rename(partial.c_str(), path.c_str()) != 0)
			throw Error("cannot write checkpoint '" + path + "': cannot rename '" +
				    partial + "' to it: " + std::strerror(errno));
	} catch (const Error &) {
		std::remove(partial.c_str());
		throw;
	} catch (const std::exception &e) {
		std::remove(partial.c_str());
		throw Error("cannot write checkpoint '" + path + "': " + e.what());
	}
}

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
// A read-only view of the zip archives torch.save writes: stored (uncompressed) records, found
// through the central directory, zip64 included. Every offset is checked against the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace frcnn::checkpoint {

class ZipReader {
public:
	struct Entry {
		std::string name;
		uint64_t header_offset = 0; // of the local file header
		uint64_t size = 0;
		uint64_t compressed_size = 0;
		uint16_t method = 0;
		uint16_t flags = 0;
		uint32_t crc32 = 0;
	};

	// Parses the central directory; throws frcnn::Error naming `name` if it is not a zip.
	ZipReader(const uint8_t *data, std::size_t size, std::string name);

	static bool looks_like_zip(const uint8_t *data, std::size_t size);

	const std::vector<Entry> &entries() const { return entries_; }
	const Entry *find(const std::string &name) const;

	// The bytes of a record, checked against its CRC-32 the first time.
	struct Span {
		const uint8_t *data;
		std::size_t size;
	};
	Span read(const Entry &entry);

private:
	[[noreturn]] void fail(const std::string &message) const;
	void parse();

	const uint8_t *data_;
	std::size_t size_;
	std::string name_;
	std::vector<Entry> entries_;
	std::unordered_map<std::string, std::size_t> index_;
	std::vector<bool> verified_;
};

} // namespace frcnn::checkpoint

// SPDX-License-Identifier: BSD-3-Clause
#include "zip.h"

#include <algorithm>
#include <zlib.h>

#include "frcnn/error.h"

namespace frcnn::checkpoint {

namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr std::size_t kEocdSize = 22;
constexpr std::size_t kZip64EocdSize = 56;
constexpr std::size_t kZip64LocatorSize = 20;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kLocalHeaderSize = 30;

uint64_t le(const uint8_t *p, std::size_t bytes)
{
	uint64_t value = 0;
	for (std::size_t i = 0; i < bytes; i++)
		value |= uint64_t(p[i]) << (8 * i);
	return value;
}

} // namespace

ZipReader::ZipReader(const uint8_t *data, std::size_t size, std::string name)
    : data_(data), size_(size), name_(std::move(name))
{
	parse();
	verified_.assign(entries_.size(), false);
}

bool ZipReader::looks_like_zip(const uint8_t *data, std::size_t size)
{
	return size >= 4 && le(data, 4) == kLocalHeader;
}

void ZipReader::fail(const std::string &message) const
{
	throw Error("checkpoint '" + name_ + "': " + message);
}

void ZipReader::parse()
{
	// The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
	if (size_ < kEocdSize)
		fail("the zip archive is truncated (" + std::to_string(size_) + " bytes)");
	std::size_t eocd = size_;
	std::size_t lowest = size_ - kEocdSize > 0xffff ? size_ - kEocdSize - 0xffff : 0;
	for (std::size_t pos = size_ - kEocdSize + 1; pos-- > lowest;) {
		if (le(data_ + pos, 4) == kEndOfCentralDirectory &&
		    pos + kEocdSize + le(data_ + pos + 20, 2) <= size_) {
			eocd = pos;
			break;
		}
	}
	if (eocd == size_)
		fail("the zip archive has no end-of-central-directory record; the file is "
		     "truncated or "
		     "not a torch.save checkpoint");

	const uint8_t *e = data_ + eocd;
	uint64_t count = le(e + 10, 2);
	uint64_t cd_size = le(e + 12, 4);
	uint64_t cd_offset = le(e + 16, 4);
	if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0)
		fail("the zip archive's end record names other disks: the file is damaged (or a multi-part "
		     "archive, which is not read)");

	// Archives over 4 GiB (or with 65535+ records) keep the real numbers in the zip64 record.
	if (eocd >= kZip64LocatorSize && le(data_ + eocd - kZip64LocatorSize, 4) == kZip64Locator) {
		uint64_t z64 = le(data_ + eocd - kZip64LocatorSize + 8, 8);
		if (z64 > size_ || size_ - z64 < kZip64EocdSize ||
		    le(data_ + z64, 4) != kZip64EndOfCentralDirectory)
			fail("the zip64 end-of-central-directory record is missing or out of the "
			     "file");
		count = le(data_ + z64 + 32, 8);
		cd_size = le(data_ + z64 + 40, 8);
		cd_offset = le(data_ + z64 + 48, 8);
	}
	if (cd_offset > size_ || cd_size > size_ - cd_offset)
		fail("the zip central directory (" + std::to_string(cd_size) + " bytes at " +
		     std::to_string(cd_offset) + ") lies outside the " + std::to_string(size_) +
		     "-byte file; the file is truncated or corrupt");
	if (count > cd_size / kCentralHeaderSize)
		fail("the zip central directory claims " + std::to_string(count) +
		     " records, more than fit in its " + std::to_string(cd_size) + " bytes");

	entries_.reserve(count);
	const uint8_t *p = data_ + cd_offset;
	const uint8_t *end = p + cd_size;
	for (uint64_t n = 0; n < count; n++) {
		if (std::size_t(end - p) < kCentralHeaderSize || le(p, 4) != kCentralHeader)
			fail("zip central directory record " + std::to_string(n) + " is corrupt");
		Entry entry;
		entry.flags = le(p + 8, 2);
		entry.method = le(p + 10, 2);
		entry.crc32 = le(p + 16, 4);
		entry.compressed_size = le(p + 20, 4);
		entry.size = le(p + 24, 4);
		std::size_t name_len = le(p + 28, 2), extra_len = le(p + 30, 2),
			    comment_len = le(p + 32, 2);
		entry.header_offset = le(p + 42, 4);
		if (std::size_t(end - p) - kCentralHeaderSize < name_len + extra_len + comment_len)
			fail("zip central directory record " + std::to_string(n) +
			     " runs past the directory");
		const uint8_t *name = p + kCentralHeaderSize;
		entry.name.assign(reinterpret_cast<const char *>(name), name_len);

		// Zip64 extra field: the 64-bit values of whichever fields read 0xffffffff.
		const uint8_t *x = name + name_len, *x_end = x + extra_len;
		while (x_end - x >= 4) {
			uint16_t id = le(x, 2), len = le(x + 2, 2);
			if (x_end - x - 4 < len)
				fail("zip record '" + entry.name + "' has a corrupt extra field");
			if (id == 0x0001) {
				const uint8_t *f = x + 4, *f_end = f + len;
				for (uint64_t *field : { &entry.size, &entry.compressed_size,
							 &entry.header_offset }) {
					if (*field != 0xffffffffu)
						continue;
					if (f_end - f < 8)
						fail("zip record '" + entry.name +
						     "' has a short zip64 field");
					*field = le(f, 8);
					f += 8;
				}
			}
			x += 4 + len;
		}
		p += kCentralHeaderSize + name_len + extra_len + comment_len;
		index_.emplace(entry.name, entries_.size());
		entries_.push_back(std::move(entry));
	}
}

const ZipReader::Entry *ZipReader::find(const std::string &name) const
{
	auto it = index_.find(name);
	return it == index_.end() ? nullptr : &entries_[it->second];
}

ZipReader::Span ZipReader::read(const Entry &entry)
{
	if (entry.flags & 1)
		fail("zip record '" + entry.name + "' is encrypted");
	if (entry.method != 0)
		fail("zip record '" + entry.name + "' is compressed (method " +
		     std::to_string(entry.method) + "); torch.save stores records uncompressed");
	if (entry.compressed_size != entry.size)
		fail("zip record '" + entry.name + "' is stored with two different sizes");
	uint64_t header = entry.header_offset;
	if (header > size_ || size_ - header < kLocalHeaderSize ||
	    le(data_ + header, 4) != kLocalHeader)
		fail("zip record '" + entry.name + "' has no local header at byte " +
		     std::to_string(header) + "; the file is truncated or corrupt");
	uint64_t start =
	    header + kLocalHeaderSize + le(data_ + header + 26, 2) + le(data_ + header + 28, 2);
	if (start > size_ || entry.size > size_ - start)
		fail("zip record '" + entry.name + "' (" + std::to_string(entry.size) +
		     " bytes at " + std::to_string(start) + ") runs past the end of the " +
		     std::to_string(size_) + "-byte file; the file is truncated");
	Span span{ data_ + start, static_cast<std::size_t>(entry.size) };

	std::size_t index = static_cast<std::size_t>(&entry - entries_.data());
	// Writers that skip the CRC (torch's compute_crc32=False) leave it 0.
	if (!verified_[index] && entry.crc32 != 0) {
		uLong crc = crc32(0L, Z_NULL, 0);
		const uint8_t *p = span.data;
		std::size_t left = span.size;
		while (left > 0) {
			uInt chunk = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
			crc = crc32(crc, p, chunk);
			p += chunk;
			left -= chunk;
		}
		if (crc != entry.crc32)
			fail("zip record '" + entry.name +
			     "' fails its CRC-32 check; the file is corrupt");
	}
	verified_[index] = true;
	return span;
}

} // namespace frcnn::checkpoint

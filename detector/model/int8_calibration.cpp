// SPDX-License-Identifier: BSD-3-Clause
// The calibration of an 8-bit model as a JSON file:
//   {"format": "frcnn-int8-calibration", "version": 1, "arch": "fasterrcnn_resnet50_fpn",
//    "weights_crc32": 1234567890, "frames": 16, "ranges": {"backbone.body.layer1.0.conv1": 2.71, ...}}
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "frcnn/detail/json.h"
#include "frcnn/detail/regular_file.h"
#include "frcnn/error.h"
#include "frcnn/model.h"

namespace frcnn {

namespace {

constexpr const char *kFormat = "frcnn-int8-calibration";
constexpr int kVersion = 1;

} // namespace

void save_int8_calibration(const Int8Calibration &calibration, const std::string &path)
{
	nlohmann::json ranges = nlohmann::json::object();
	for (const auto &[name, range] : calibration.ranges)
		ranges[name] = range;
	const nlohmann::json document{{"format", kFormat},
				      {"version", kVersion},
				      {"arch", calibration.arch},
				      {"weights_crc32", calibration.weights_crc32},
				      {"frames", calibration.frames},
				      {"ranges", ranges}};
	// Into a file of its own first: a reader never sees half a calibration, and an old one
	// stays whole when writing fails. Of its own to each call, also of one process: two
	// detectors calibrating into the same file (two streams, one file) each write theirs
	// whole, and the last rename wins.
	static std::atomic<unsigned long> saves{0};
	const std::string temporary =
		path + ".tmp" + std::to_string(::getpid()) + "-" + std::to_string(saves.fetch_add(1));
	{
		errno = 0; // the streams set no error of their own: the system's says why
		std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
		out << document.dump(1, '\t') << '\n';
		out.flush();
		if (!out) {
			const std::string reason = errno != 0 ? std::strerror(errno) : "the write failed";
			std::remove(temporary.c_str());
			throw Error("cannot write the 8-bit calibration '" + path + "' (through '" + temporary +
				    "'): " + reason);
		}
	}
	if (std::rename(temporary.c_str(), path.c_str()) != 0) {
		const std::string reason = std::strerror(errno);
		std::remove(temporary.c_str());
		throw Error("cannot write the 8-bit calibration '" + path + "': " + reason);
	}
}

Int8Calibration load_int8_calibration(const std::string &path)
{
	detail::require_regular_file(path, "the 8-bit calibration", "a calibration file (or of one to write)");
	std::ifstream in(path, std::ios::binary);
	if (!in)
		throw Error("cannot open the 8-bit calibration '" + path + "'");
	std::ostringstream text;
	text << in.rdbuf();
	auto fail = [&](const std::string &what) -> Error {
		return Error("'" + path + "' is not an 8-bit calibration: " + what);
	};
	nlohmann::json document;
	try {
		document = detail::parse_json(text.str());
	} catch (const std::exception &e) { // nlohmann's parse errors, detail::JsonTooDeep
		throw fail(std::string("not JSON (") + e.what() + ")");
	}
	if (!document.is_object() || document.value("format", nlohmann::json()) != kFormat)
		throw fail(std::string("no \"format\": \"") + kFormat + "\"");
	if (document.value("version", nlohmann::json()) != kVersion)
		throw fail("version " + document.value("version", nlohmann::json()).dump() + ", not " +
			   std::to_string(kVersion));
	const auto arch = document.value("arch", nlohmann::json());
	const auto frames = document.value("frames", nlohmann::json());
	const auto ranges = document.value("ranges", nlohmann::json());
	const auto crc = document.value("weights_crc32", nlohmann::json());
	if (!arch.is_string() || !frames.is_number_integer() || !crc.is_number_unsigned() || !ranges.is_object() ||
	    ranges.empty())
		throw fail("\"arch\" (a string), \"weights_crc32\", \"frames\" (integers) or \"ranges\" (an object "
			   "of numbers) missing");
	Int8Calibration calibration;
	calibration.arch = arch.get<std::string>();
	if (crc.get<uint64_t>() > UINT32_MAX)
		throw fail("\"weights_crc32\" " + crc.dump() + " is not a CRC-32 (at most " +
			   std::to_string(UINT32_MAX) + ")");
	calibration.weights_crc32 = crc.get<uint32_t>();
	calibration.frames = frames.get<int64_t>();
	for (const auto &[name, value] : ranges.items()) {
		if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0)
			throw fail("the range of " + name + " is not a finite number >= 0");
		calibration.ranges[name] = value.get<float>();
	}
	return calibration;
}

} // namespace frcnn

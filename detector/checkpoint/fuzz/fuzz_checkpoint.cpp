// SPDX-License-Identifier: BSD-3-Clause
// libFuzzer target: any input must give a checkpoint or an frcnn::Error. Any other exception,
// a crash, a sanitizer report, a hang or a huge allocation is a finding.
#include <cstddef>
#include <cstdint>

#include "frcnn/checkpoint.h"
#include "frcnn/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, std::size_t size)
{
	try {
		frcnn::read_checkpoint_bytes(data, size, "fuzz-input");
	} catch (const frcnn::Error &) {
	}
	return 0;
}

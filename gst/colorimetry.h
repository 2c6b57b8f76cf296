// SPDX-License-Identifier: BSD-3-Clause
// What the library makes of a caps' colorimetry, for the elements that read frames (frcnndetect)
// and draw on them (frcnnoverlay) alike.
#pragma once

#include <gst/video/video.h>

#include "frcnn/detector.h"

namespace frcnn::gst {

// The library's transfer function for a colorimetry's: PQ and HLG; the others are SDR curves.
inline TransferFunction transfer_function(GstVideoTransferFunction transfer)
{
	switch (transfer) {
	case GST_VIDEO_TRANSFER_SMPTE2084: return TransferFunction::PQ;
	case GST_VIDEO_TRANSFER_ARIB_STD_B67: return TransferFunction::HLG;
	default: return TransferFunction::SDR;
	}
}

} // namespace frcnn::gst

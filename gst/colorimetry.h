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

// The library's colour primaries for a colorimetry's: BT.2020 and Display P3 (SMPTE EG 432) are
// converted to BT.709's; the others are read as BT.709 (SD video's, BT.601's, are close to it).
inline ColourPrimaries colour_primaries(GstVideoColorPrimaries primaries)
{
	switch (primaries) {
	case GST_VIDEO_COLOR_PRIMARIES_BT2020: return ColourPrimaries::BT2020;
	case GST_VIDEO_COLOR_PRIMARIES_SMPTEEG432: return ColourPrimaries::DisplayP3;
	default: return ColourPrimaries::BT709;
	}
}

// Whether a colorimetry's YUV values span the full range of their bits: full range, and a range
// the caps leave unknown, which videoconvert reads as full (gst_video_color_range_offsets);
// limited (16-235) only where the caps say so.
inline bool full_range(const GstVideoColorimetry &colorimetry)
{
	return colorimetry.range != GST_VIDEO_COLOR_RANGE_16_235;
}

} // namespace frcnn::gst

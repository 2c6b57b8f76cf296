// SPDX-License-Identifier: BSD-3-Clause
// frcnndetect's `region`: what it accepts and how it is fitted to a frame; the regions of
// interest of inference-region=roi-list: how they are fitted.
#include <gtest/gtest.h>

#include <climits>
#include <string>

#include "frcnn/error.h"
#include "region.h"

namespace {

using frcnn::gst::fit_rectangle;
using frcnn::gst::fit_region;
using frcnn::gst::parse_region;
using frcnn::gst::Region;

std::string error_of(const std::string &text)
{
	try {
		parse_region(text);
	} catch (const frcnn::Error &e) {
		return e.what();
	}
	return "(no error)";
}

TEST(Region, ParsesFourPixelCounts)
{
	EXPECT_EQ(parse_region("1,2,3,4"), (Region{ 1, 2, 3, 4 }));
	EXPECT_EQ(parse_region(" 10 , 20 ,300,\t400 "), (Region{ 10, 20, 300, 400 }));
	EXPECT_EQ(parse_region(""), std::nullopt);
	EXPECT_EQ(parse_region("  "), std::nullopt);
	EXPECT_EQ(parse_region("0,0,1,1")->text(), "0,0,1,1");
	/* Counts beyond any frame: "all of it", cut to the frame. */
	EXPECT_EQ(parse_region("0,0,2000000,2147483647"), (Region{ 0, 0, 2000000, 2147483647 }));
}

TEST(Region, SaysWhatIsWrongWithAValue)
{
	EXPECT_EQ(error_of("1,2,3"), "3 numbers instead of 4");
	EXPECT_EQ(error_of("1,2,3,4,5"), "5 numbers instead of 4");
	EXPECT_EQ(error_of("a,2,3,4"), "'a' is not a pixel count");
	EXPECT_EQ(error_of("1,,3,4"), "'' is not a pixel count");
	EXPECT_EQ(error_of("1.5,2,3,4"), "'1.5' is not a pixel count");
	EXPECT_EQ(error_of("-1,2,3,4"), "'-1' is not a pixel count");
	EXPECT_EQ(error_of("1,2,99999999999999999999,4"), "'99999999999999999999' is beyond 2147483647 pixels");
	EXPECT_EQ(error_of("1,2,2147483648,4"), "'2147483648' is beyond 2147483647 pixels");
	EXPECT_EQ(error_of("1,2,0,4"), "the width and height must be positive");
}

TEST(Region, IsCutToTheFrame)
{
	EXPECT_EQ(fit_region({ 10, 20, 30, 40 }, 100, 80, {}), (Region{ 10, 20, 30, 40 }));
	EXPECT_EQ(fit_region({ 90, 70, 30, 40 }, 100, 80, {}), (Region{ 90, 70, 10, 10 }));
	EXPECT_EQ(fit_region({ 0, 0, 1000, 1000 }, 100, 80, {}), (Region{ 0, 0, 100, 80 }));
	EXPECT_EQ(fit_region({ 50, 40, INT_MAX, INT_MAX }, 100, 80, {}), (Region{ 50, 40, 50, 40 }));
	EXPECT_THROW(fit_region({ 100, 0, 10, 10 }, 100, 80, {}), frcnn::Error);
	EXPECT_THROW(fit_region({ 0, 80, 10, 10 }, 100, 80, {}), frcnn::Error);
	try {
		fit_region({ 200, 10, 5, 5 }, 100, 80, {});
	} catch (const frcnn::Error &e) {
		EXPECT_STREQ(e.what(), "the region 200,10,5,5 lies outside the 100x80 frames");
	}
}

TEST(Region, StartsOnTheChromaGridOf420Frames)
{
	/* The left and top edges move to even coordinates; the right and bottom edges stay. */
	EXPECT_EQ(fit_region({ 11, 21, 30, 40 }, 100, 80, { 2, 2 }), (Region{ 10, 20, 31, 41 }));
	EXPECT_EQ(fit_region({ 11, 21, 30, 40 }, 100, 80, {}), (Region{ 11, 21, 30, 40 }));
	EXPECT_EQ(fit_region({ 99, 79, 5, 5 }, 100, 80, { 2, 2 }), (Region{ 98, 78, 2, 2 }));
	/* Interlaced 4:2:0: the top edge moves onto a multiple of 4 (a chroma row of the top field). */
	EXPECT_EQ(fit_region({ 11, 23, 30, 40 }, 100, 80, { 2, 4 }), (Region{ 10, 20, 31, 43 }));
	EXPECT_EQ(fit_region({ 11, 24, 30, 40 }, 100, 80, { 2, 4 }), (Region{ 10, 24, 31, 40 }));
	/* 4:2:2: only the left edge moves. */
	EXPECT_EQ(fit_region({ 11, 21, 30, 40 }, 100, 80, { 2, 1 }), (Region{ 10, 21, 31, 40 }));
	/* v210: the left edge moves onto a multiple of 6 (the first pixel of a group of words). */
	EXPECT_EQ(fit_region({ 17, 21, 30, 40 }, 100, 80, { 6, 1 }), (Region{ 12, 21, 35, 40 }));
	EXPECT_EQ(fit_region({ 99, 0, 5, 5 }, 100, 80, { 6, 1 }), (Region{ 96, 0, 4, 5 }));
}

TEST(Region, RegionsOfInterestAreCutToTheFrameOrLeftOut)
{
	EXPECT_EQ(fit_rectangle(10, 20, 30, 40, 100, 80, {}), (Region{ 10, 20, 30, 40 }));
	EXPECT_EQ(fit_rectangle(11, 21, 30, 40, 100, 80, { 2, 2 }), (Region{ 10, 20, 31, 41 }));
	EXPECT_EQ(fit_rectangle(90, 70, 30, 40, 100, 80, {}), (Region{ 90, 70, 10, 10 }));
	/* Metadata may hold anything: no overflow past the frame. */
	EXPECT_EQ(fit_rectangle(5, 6, 4294967295u, 4294967295u, 100, 80, {}), (Region{ 5, 6, 95, 74 }));
	EXPECT_EQ(fit_rectangle(4294967295u, 0, 10, 10, 100, 80, {}), std::nullopt);
	EXPECT_EQ(fit_rectangle(100, 0, 10, 10, 100, 80, {}), std::nullopt);
	EXPECT_EQ(fit_rectangle(10, 10, 0, 10, 100, 80, {}), std::nullopt);
	EXPECT_EQ(fit_rectangle(10, 10, 10, 0, 100, 80, { 2, 2 }), std::nullopt);
}

} // namespace

// SPDX-License-Identifier: BSD-3-Clause
// The `object-class` filter (the `classes` and `class-thresholds` lists are libfrcnn's,
// tests/detector/test_labels.cpp).

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "class_filters.h"

namespace {

using frcnn::gst::parse_object_classes;

// `object-class`: the types as written, spaces around them ignored, found regardless of ASCII
// case (as `classes`); empty takes every type.
TEST(ClassFilters, ObjectClasses)
{
	EXPECT_TRUE(parse_object_classes("").empty());
	EXPECT_TRUE(parse_object_classes(" , ").empty());
	const frcnn::gst::ObjectClasses classes = parse_object_classes(" car,person ,, traffic light");
	EXPECT_EQ(std::vector<std::string>(classes.begin(), classes.end()),
		  (std::vector<std::string>{ "car", "person", "traffic light" }));
	EXPECT_EQ(parse_object_classes("Car").count("car"), 1u);
	EXPECT_EQ(parse_object_classes("car").count("TRAFFIC LIGHT"), 0u);
	EXPECT_EQ(parse_object_classes("traffic light").count("Traffic Light"), 1u);
	EXPECT_EQ(parse_object_classes("cars").count("car"), 0u);
	EXPECT_EQ(parse_object_classes("car").count("cars"), 0u);
}

} // namespace

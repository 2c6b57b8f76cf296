// SPDX-License-Identifier: BSD-3-Clause
// The class filters: `classes`, `class-thresholds` and `object-class` (the names and labels files
// are libfrcnn's, tests/detector/test_labels.cpp).

#include <algorithm>
#include <clocale>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <glib.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "frcnn/error.h"
#include "class_filters.h"

#include "gst_test_utils.h"

namespace {

using frcnn::gst::parse_classes;
using frcnn::gst::parse_object_classes;

std::string error_of_classes(const std::string &spec, const std::vector<std::string> &labels)
{
	try {
		parse_classes(spec, labels);
	} catch (const frcnn::Error &e) {
		return e.what();
	}
	return "(no error)";
}

TEST(ClassFilters, ClassesFilter)
{
	const std::vector<std::string> labels = frcnn::coco_category_names();
	EXPECT_TRUE(parse_classes("", labels).empty());
	EXPECT_TRUE(parse_classes(" , ", labels).empty());
	EXPECT_EQ(parse_classes("person, Car,3 ,traffic light", labels),
		  (std::set<int64_t>{ 1, 3, 10 }));
	/* A name given to several ids selects them all. */
	const auto unused = std::count(labels.begin(), labels.end(), "N/A");
	ASSERT_GE(unused, 2);
	EXPECT_EQ(parse_classes("N/A", labels).size(), static_cast<std::size_t>(unused));
	EXPECT_THROW(parse_classes("person, unicorn", labels), frcnn::Error);
	EXPECT_THROW(parse_classes("91", labels), frcnn::Error);
	EXPECT_THROW(parse_classes("99999999999999999999999", labels), frcnn::Error);
	EXPECT_EQ(parse_classes("1,90", labels), (std::set<int64_t>{ 1, 90 }));
	/* The background, by id or name, would keep nothing (0 is the first class elsewhere). */
	for (const char *background : { "0", "__background__", "person,0" })
		EXPECT_EQ(error_of_classes(background, labels),
			  "class '" + std::string(std::string(background) == "person,0" ? "0" : background) +
				  "' is the background (id 0), which the model does not detect: its classes are ids "
				  "1..90 (1 is 'person')");
}

std::string class_thresholds_error(const std::string &spec)
{
	try {
		frcnn::gst::parse_class_thresholds(spec, frcnn::coco_category_names());
	} catch (const frcnn::Error &e) {
		return e.what();
	}
	return "(no error)";
}

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

TEST(ClassFilters, ClassThresholds)
{
	using frcnn::gst::parse_class_thresholds;
	const std::vector<std::string> labels = frcnn::coco_category_names();
	EXPECT_TRUE(parse_class_thresholds("", labels).empty());
	EXPECT_TRUE(parse_class_thresholds(" , ", labels).empty());
	EXPECT_EQ(parse_class_thresholds("person=0.7, Car = 0.3,3=0.4 ,traffic light=1,4=0", labels),
		  (std::map<int64_t, double>{ { 1, 0.7 }, { 3, 0.4 }, { 10, 1.0 }, { 4, 0.0 } }))
		<< "a later entry for the same class wins";
	const auto unused = std::count(labels.begin(), labels.end(), "N/A");
	EXPECT_EQ(parse_class_thresholds("N/A=0.9", labels).size(), static_cast<std::size_t>(unused));
	EXPECT_EQ(class_thresholds_error("person"), "'person' is not class=score");
	EXPECT_EQ(class_thresholds_error("=0.5"), "'=0.5' names no class");
	EXPECT_EQ(class_thresholds_error("person=high"), "the score of 'person=high' is not a number from 0 to 1");
	EXPECT_EQ(class_thresholds_error("person=1.5"), "the score of 'person=1.5' is not a number from 0 to 1");
	EXPECT_EQ(class_thresholds_error("person="), "the score of 'person=' is not a number from 0 to 1");
	EXPECT_EQ(class_thresholds_error("person=nan"), "the score of 'person=nan' is not a number from 0 to 1");
	EXPECT_NE(class_thresholds_error("unicorn=0.5").find("unknown class 'unicorn'"), std::string::npos);
	EXPECT_NE(class_thresholds_error("91=0.5").find("out of range"), std::string::npos);
}

// Scores are read with a dot in every locale (gst-launch-1.0 takes the user's): a decimal comma
// could not be written anyway, a comma separating the entries.
TEST(ClassFilters, ClassThresholdsReadADotInALocaleOfDecimalCommas)
{
	/* German numbers, the locale made for the test from the locales package's sources. */
	const std::string dir = gst_test::out_dir() + "/locale";
	g_mkdir_with_parents(dir.c_str(), 0755);
	const std::string command = "localedef -i de_DE -f UTF-8 '" + dir + "/de_DE.UTF-8' 2>/dev/null";
	const int status = std::system(command.c_str());
	/* 1: made, with warnings. */
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) <= 1) << command;
	g_setenv("LOCPATH", dir.c_str(), TRUE);
	const std::string before = setlocale(LC_NUMERIC, nullptr);
	ASSERT_NE(setlocale(LC_NUMERIC, "de_DE.UTF-8"), nullptr);
	const double comma = std::strtod("0,25", nullptr);
	const auto thresholds = frcnn::gst::parse_class_thresholds("person=0.25", frcnn::coco_category_names());
	setlocale(LC_NUMERIC, before.c_str());
	g_unsetenv("LOCPATH");
	ASSERT_EQ(comma, 0.25) << "not a locale of decimal commas";
	EXPECT_EQ(thresholds, (std::map<int64_t, double>{ { 1, 0.25 } }));
}

} // namespace

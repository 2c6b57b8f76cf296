// SPDX-License-Identifier: BSD-3-Clause
// Class names: the built-in COCO list against torchvision's, the names a model gets without a
// labels file, labels files, the lines frcnn-train writes for them, and the lists of classes
// and of their thresholds that filter detections.

#include <algorithm>
#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <locale>
#include <sstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"
#include "frcnn/error.h"
#include "frcnn/labels.h"

namespace {

using frcnn::read_labels_file;
using frcnn::test::error_of;

class LabelsFile : public ::testing::Test {
protected:
	std::string write_file(const std::string &name, const std::string &text)
	{
		const std::string path = (dir_.path / name).string();
		std::ofstream(path, std::ios::binary) << text;
		return path;
	}
	std::string path_of(const std::string &name) const { return (dir_.path / name).string(); }

private:
	frcnn::test::TempDir dir_{ "frcnn-labels" };
};

TEST(Labels, CocoNamesAreTorchvisions)
{
	const char *fixtures = std::getenv("FRCNN_FIXTURES");
	ASSERT_NE(fixtures, nullptr);
	std::ifstream file(std::string(fixtures) + "/coco_names.txt");
	ASSERT_TRUE(file) << "torchvision's names were not written";
	std::vector<std::string> torchvision;
	for (std::string line; std::getline(file, line);)
		torchvision.push_back(line);
	ASSERT_EQ(torchvision.size(), 91u);
	EXPECT_EQ(frcnn::coco_category_names(), torchvision);
	EXPECT_EQ(torchvision.at(12), frcnn::unused_class_name()) << "torchvision's name for an unused id";
}

TEST(Labels, Defaults)
{
	EXPECT_EQ(frcnn::default_labels(91), frcnn::coco_category_names());
	EXPECT_EQ(frcnn::default_labels(3), (std::vector<std::string>{ "__background__", "class 1", "class 2" }));
	EXPECT_EQ(frcnn::label_name({ "bg", "cat" }, 1), "cat");
	EXPECT_EQ(frcnn::label_name({ "bg", "cat" }, 5), "class 5");
	EXPECT_EQ(frcnn::label_name({ "bg", "cat" }, -1), "class -1");
}

TEST_F(LabelsFile, WithOrWithoutBackground)
{
	const std::string with = write_file("with.txt", "background\r\ncat\n dog \n\n\n");
	EXPECT_EQ(read_labels_file(with, 3), (std::vector<std::string>{ "background", "cat", "dog" }));
	EXPECT_EQ(read_labels_file(with, 4), (std::vector<std::string>{ "__background__", "background", "cat", "dog" }));
	EXPECT_NE(error_of([&] { read_labels_file(with, 9); })
			  .find("has 3 names but the model has 9 classes: give 9 names (background first) or 8 "
				"(without background)"),
		  std::string::npos);
	const std::string missing = path_of("missing.txt");
	EXPECT_EQ(error_of([&] { read_labels_file(missing, 3); }),
		  "cannot open labels file '" + missing + "': No such file or directory");
}

// A program that reads the file before its model's class count is known gets the same labels
// in two steps: the names (and the file's own errors), then the labels of the count.
TEST_F(LabelsFile, NamesFirstThenTheLabelsOfTheClassCount)
{
	const std::string with = write_file("with.txt", "\xef\xbb\xbf background\r\ncat\n dog \n\n\n");
	const std::vector<std::string> names = frcnn::read_labels_file_names(with);
	EXPECT_EQ(names, (std::vector<std::string>{ "background", "cat", "dog" }));
	for (int num_classes : { 3, 4 })
		EXPECT_EQ(frcnn::labels_of_file_names(names, with, num_classes), read_labels_file(with, num_classes))
			<< num_classes;
	EXPECT_EQ(error_of([&] { frcnn::labels_of_file_names(names, with, 9); }),
		  error_of([&] { read_labels_file(with, 9); }));
	const std::string missing = path_of("missing.txt");
	EXPECT_EQ(error_of([&] { frcnn::read_labels_file_names(missing); }),
		  "cannot open labels file '" + missing + "': No such file or directory");
	EXPECT_NE(error_of([&] { frcnn::read_labels_file_names(write_file("latin1.txt", "caf\xe9\n")); })
			  .find("is not UTF-8 text (line 1)"),
		  std::string::npos);
}

// A byte order mark is not part of the first name; an empty line amid the names is refused, as it
// would shift the names after it.
TEST_F(LabelsFile, AByteOrderMarkAndEmptyLines)
{
	EXPECT_EQ(read_labels_file(write_file("bom.labels", "\xef\xbb\xbfsquare\ncircle\ntriangle\n"), 4),
		  (std::vector<std::string>{ "__background__", "square", "circle", "triangle" }));
	EXPECT_EQ(read_labels_file(write_file("empty-background.labels", "\nsquare\ncircle\n"), 3),
		  (std::vector<std::string>{ "", "square", "circle" }));
	const std::string gap = write_file("gap.labels", "square\n\ncircle\ntriangle\n");
	for (int num_classes : { 4, 5 }) {
		const std::string error = error_of([&] { read_labels_file(gap, num_classes); });
		EXPECT_NE(error.find("line 2 of labels file"), std::string::npos) << num_classes << ": " << error;
		EXPECT_NE(error.find("is empty: every class needs a name (e.g. N/A"), std::string::npos) << error;
	}
}

// Names go into metadata, JSON lines and the overlay's text, all UTF-8: a file in another
// encoding (Latin-1) is refused, naming the line, as are UTF-8's malformed forms.
TEST_F(LabelsFile, AFileThatIsNotUtf8IsRefused)
{
	const std::string latin1 = write_file("latin1.labels", "voiture\ncarr\xe9\ncercle\n");
	EXPECT_NE(error_of([&] { read_labels_file(latin1, 4); }).find("is not UTF-8 text (line 2)"), std::string::npos);
	EXPECT_EQ(read_labels_file(write_file("utf8.labels", "voiture\ncarr\xc3\xa9\ncercle\n"), 4).at(2), "carr\xc3\xa9");
	/* Four-byte forms (an emoji) are UTF-8; an overlong '/', a UTF-16 surrogate and a code point
	 * past U+10FFFF are not. */
	EXPECT_EQ(read_labels_file(write_file("emoji.labels", "\xf0\x9f\x9a\x97\ncircle\n"), 3).at(1), "\xf0\x9f\x9a\x97");
	for (const std::string bad : { "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80" }) {
		const std::string path = write_file("malformed.labels", "square\ncircle\n" + bad + "\n");
		EXPECT_NE(error_of([&] { read_labels_file(path, 4); }).find("is not UTF-8 text (line 3)"),
			  std::string::npos);
	}
	/* A NUL byte (UTF-16 text, a binary file) is said to be one. */
	const std::string with_nul = write_file("nul.labels", std::string("voiture\nca\0r\ncercle\n", 20));
	EXPECT_NE(error_of([&] { read_labels_file(with_nul, 4); }).find("holds a NUL byte (line 2)"), std::string::npos);
}

// A folder, a device or a pipe is refused before it is opened: /dev/zero was read without end, a
// FIFO waited for a writer (the element's start hung).
TEST_F(LabelsFile, AFolderADeviceOrAPipeIsRefused)
{
	const std::string fifo = path_of("fifo.labels");
	ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
	for (const std::string &path : { std::string("/dev/zero"), fifo })
		EXPECT_NE(error_of([&] { read_labels_file(path, 4); })
				  .find("labels file '" + path + "' is not a regular file"),
			  std::string::npos)
			<< path;
	const std::string folder = path_of("");
	EXPECT_NE(error_of([&] { read_labels_file(folder, 4); }).find("labels file '" + folder + "' is a folder"),
		  std::string::npos);
}

// A name as frcnn-train writes it is one line, read back as the same name.
TEST_F(LabelsFile, ALineOfANameReadsBackAsTheName)
{
	EXPECT_EQ(frcnn::labels_file_line("traffic light"), "traffic light");
	EXPECT_EQ(frcnn::labels_file_line(" green\tbox\r\n"), "green box");
	EXPECT_EQ(frcnn::labels_file_line("\x7f\x01"), "");
	EXPECT_EQ(frcnn::labels_file_line("carr\xc3\xa9"), "carr\xc3\xa9");
	const std::vector<std::string> names{ "__background__", "two\nlines", "\ttabbed ", "N/A", "x" };
	std::string text;
	for (const std::string &name : names)
		text += frcnn::labels_file_line(name) + "\n";
	EXPECT_EQ(read_labels_file(write_file("written.labels", text), (int)names.size()),
		  (std::vector<std::string>{ "__background__", "two lines", "tabbed", "N/A", "x" }));
}

TEST(ClassLists, Classes)
{
	using frcnn::parse_classes;
	const std::vector<std::string> labels = frcnn::coco_category_names();
	EXPECT_TRUE(parse_classes("", labels).empty());
	EXPECT_TRUE(parse_classes(" , ", labels).empty());
	EXPECT_EQ(parse_classes("person, Car,3 ,traffic light", labels), (std::set<int64_t>{ 1, 3, 10 }));
	/* A name given to several ids selects them all. */
	const auto unused = std::count(labels.begin(), labels.end(), "N/A");
	ASSERT_GE(unused, 2);
	EXPECT_EQ(parse_classes("N/A", labels).size(), static_cast<std::size_t>(unused));
	EXPECT_EQ(error_of([&] { parse_classes("person, unicorn", labels); }),
		  "unknown class 'unicorn': use a name from the labels or a class id");
	for (const char *id : { "91", "99999999999999999999999" })
		EXPECT_EQ(error_of([&] { parse_classes(id, labels); }),
			  "class id " + std::string(id) + " is out of range: the model has 91 classes (0..90)");
	EXPECT_EQ(parse_classes("1,90", labels), (std::set<int64_t>{ 1, 90 }));
	/* The background, by id or name, would keep nothing (0 is the first class elsewhere). */
	for (const char *background : { "0", "__background__", "person,0" })
		EXPECT_EQ(error_of([&] { parse_classes(background, labels); }),
			  "class '" + std::string(std::string(background) == "person,0" ? "0" : background) +
				  "' is the background (id 0), which the model does not detect: its classes are ids "
				  "1..90 (1 is 'person')");
}

std::string class_thresholds_error(const std::string &list)
{
	return error_of([&] { frcnn::parse_class_thresholds(list, frcnn::coco_category_names()); });
}

TEST(ClassLists, ClassThresholds)
{
	using frcnn::parse_class_thresholds;
	const std::vector<std::string> labels = frcnn::coco_category_names();
	EXPECT_TRUE(parse_class_thresholds("", labels).empty());
	EXPECT_TRUE(parse_class_thresholds(" , ", labels).empty());
	EXPECT_EQ(parse_class_thresholds("person=0.7, Car = 0.3,3=0.4 ,traffic light=1,4=0,5=.5", labels),
		  (std::map<int64_t, double>{ { 1, 0.7 }, { 3, 0.4 }, { 10, 1.0 }, { 4, 0.0 }, { 5, 0.5 } }))
		<< "a later entry for the same class wins";
	const auto unused = std::count(labels.begin(), labels.end(), "N/A");
	EXPECT_EQ(parse_class_thresholds("N/A=0.9", labels).size(), static_cast<std::size_t>(unused));
	EXPECT_EQ(class_thresholds_error("person"), "'person' is not class=score");
	EXPECT_EQ(class_thresholds_error("=0.5"), "'=0.5' names no class");
	for (const char *score : { "high", "1.5", "", "nan", "0.5x", "-0.1", "0.5 0.6" })
		EXPECT_EQ(class_thresholds_error("person=" + std::string(score)),
			  "the score of 'person=" + std::string(score) + "' is not a number from 0 to 1");
	EXPECT_NE(class_thresholds_error("unicorn=0.5").find("unknown class 'unicorn'"), std::string::npos);
	EXPECT_NE(class_thresholds_error("91=0.5").find("out of range"), std::string::npos);
}

// Without labels: the entries as written, the classes unresolved; the same errors for the
// syntax and the scores.
TEST(ClassLists, ClassThresholdsSplitWithoutLabels)
{
	using Entries = std::vector<std::pair<std::string, double>>;
	EXPECT_TRUE(frcnn::split_class_thresholds(" , ").empty());
	EXPECT_EQ(frcnn::split_class_thresholds("unicorn=0.7, Car = 0.3,3=0.4 ,a=b=1,unicorn=0"),
		  (Entries{ { "unicorn", 0.7 }, { "Car", 0.3 }, { "3", 0.4 }, { "a=b", 1.0 }, { "unicorn", 0.0 } }));
	const auto split_error = [](const std::string &list) {
		return error_of([&] { frcnn::split_class_thresholds(list); });
	};
	EXPECT_EQ(split_error("unicorn=0.7, person"), "'person' is not class=score");
	EXPECT_EQ(split_error(" = 0.5"), "'= 0.5' names no class");
	EXPECT_EQ(split_error("person=1.5"), "the score of 'person=1.5' is not a number from 0 to 1");
	EXPECT_EQ(split_error("unicorn=0.5"), "(no error)") << "an unknown class is for parse_class_thresholds to tell";
}

// Before the model is known: a name that no labels it can have would match is the error
// parse_classes() gives; ids, the background and the names a model of some class count has pass.
TEST(ClassLists, ClassNamesCheckedBeforeTheModel)
{
	const auto check_error = [](const std::vector<std::string> &entries, const std::vector<std::string> *file_names) {
		return error_of([&] { frcnn::check_class_names(entries, file_names); });
	};
	const std::string unknown = error_of([] { frcnn::parse_classes("unicorn", frcnn::coco_category_names()); });
	ASSERT_EQ(unknown, "unknown class 'unicorn': use a name from the labels or a class id");

	/* Without a labels file: COCO's names (91 classes) or "class N" (any other count). */
	EXPECT_EQ(check_error({ "person", "Traffic Light", "N/A", "3", "900", "__background__", "class 7", "CLASS 12" },
			      nullptr),
		  "(no error)");
	EXPECT_EQ(check_error({ "person", "unicorn" }, nullptr), unknown);
	for (const char *name :
	     { "class", "class ", "class x", "class 07", "class -1", "classes 7", "class 99999999999999999999" })
		EXPECT_EQ(check_error({ name }, nullptr),
			  "unknown class '" + std::string(name) + "': use a name from the labels or a class id")
			<< name;
	/* Each passes where the labels the model gets name it. */
	for (const auto &[name, num_classes] : std::vector<std::pair<std::string, int>>{ { "class 7", 8 }, { "person", 91 } })
		EXPECT_EQ(error_of([&] { frcnn::parse_classes(name, frcnn::default_labels(num_classes)); }), "(no error)");

	/* With a labels file: its names only (the background's is parse_classes()' to refuse). */
	const std::vector<std::string> file_names{ "bg", "Square", "circle" };
	EXPECT_EQ(check_error({ "square", "CIRCLE", "bg", "2", "__background__" }, &file_names), "(no error)");
	EXPECT_EQ(check_error({ "square", "person" }, &file_names),
		  "unknown class 'person': use a name from the labels or a class id");
	EXPECT_EQ(check_error({ "class 1" }, &file_names),
		  "unknown class 'class 1': use a name from the labels or a class id");
	EXPECT_EQ(check_error({}, &file_names), "(no error)");
	/* The classes of class thresholds alike. */
	using Thresholds = std::vector<std::pair<std::string, double>>;
	EXPECT_EQ(error_of([&] { frcnn::check_class_names(Thresholds{ { "square", 0.5 }, { "person", 0.5 } }, &file_names); }),
		  "unknown class 'person': use a name from the labels or a class id");
	EXPECT_EQ(error_of([&] { frcnn::check_class_names(Thresholds{ { "person", 0.5 }, { "class 3", 0.5 } }, nullptr); }),
		  "(no error)");
}

// The thresholds of entries split before the labels are known are those of the list.
TEST(ClassLists, ClassThresholdsOfSplitEntries)
{
	const std::string list = "person=0.7, Car = 0.3,3=0.4, N/A=0.9";
	const auto &labels = frcnn::coco_category_names();
	EXPECT_EQ(frcnn::class_thresholds_by_id(frcnn::split_class_thresholds(list), labels),
		  frcnn::parse_class_thresholds(list, labels));
	EXPECT_EQ(error_of([&] { frcnn::class_thresholds_by_id({ { "unicorn", 0.5 } }, labels); }),
		  "unknown class 'unicorn': use a name from the labels or a class id");
}

// A filter by class keeps the classes listed (every class when none is) above their own
// threshold or the common one, compared in float; the model runs at the lowest of them.
TEST(ClassLists, KeptByClass)
{
	const std::map<int64_t, double> thresholds{ { 1, 0.2 }, { 3, 0.9 } };
	EXPECT_EQ(frcnn::lowest_score_threshold(0.5, thresholds), 0.2);
	EXPECT_EQ(frcnn::lowest_score_threshold(0.1, thresholds), 0.1);
	EXPECT_EQ(frcnn::lowest_score_threshold(0.5, {}), 0.5);
	EXPECT_TRUE(frcnn::kept_by_class(1, 0.3f, {}, thresholds, 0.5));
	EXPECT_FALSE(frcnn::kept_by_class(2, 0.3f, {}, thresholds, 0.5));
	EXPECT_FALSE(frcnn::kept_by_class(3, 0.8f, {}, thresholds, 0.5));
	EXPECT_FALSE(frcnn::kept_by_class(2, 0.3f, { 1, 3 }, {}, 0.1)) << "a class not listed";
	EXPECT_TRUE(frcnn::kept_by_class(3, 0.3f, { 1, 3 }, {}, 0.1));
	/* Above, not at: 0.1 as a float is the score 0.1f. */
	EXPECT_FALSE(frcnn::kept_by_class(2, 0.1f, {}, {}, 0.1));
	EXPECT_TRUE(frcnn::kept_by_class(2, std::nextafter(0.1f, 1.0f), {}, {}, 0.1));
}

// Scores are read with a dot in every locale (gst-launch-1.0 takes the user's, a program may
// make one the C++ global): a decimal comma could not be written anyway, a comma separating the
// entries.
TEST(ClassLists, ClassThresholdsReadADotInALocaleOfDecimalCommas)
{
	/* German numbers, the locale made for the test from the locales package's sources. */
	const frcnn::test::TempDir dir("frcnn-locale");
	const std::string command = "localedef -i de_DE -f UTF-8 '" + dir.path.string() + "/de_DE.UTF-8' 2>/dev/null";
	const int status = std::system(command.c_str());
	/* 1: made, with warnings. */
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) <= 1) << command;
	setenv("LOCPATH", dir.path.c_str(), 1);
	const std::string before = setlocale(LC_NUMERIC, nullptr);
	ASSERT_NE(setlocale(LC_NUMERIC, "de_DE.UTF-8"), nullptr);
	const std::locale global_before = std::locale::global(std::locale("de_DE.UTF-8"));
	const double comma = std::strtod("0,25", nullptr);
	std::istringstream stream("0,25");
	double streamed = 0;
	stream >> streamed;
	const auto thresholds = frcnn::parse_class_thresholds("person=0.25", frcnn::coco_category_names());
	std::locale::global(global_before);
	setlocale(LC_NUMERIC, before.c_str());
	unsetenv("LOCPATH");
	ASSERT_EQ(comma, 0.25) << "not a C locale of decimal commas";
	ASSERT_EQ(streamed, 0.25) << "not a C++ locale of decimal commas";
	EXPECT_EQ(thresholds, (std::map<int64_t, double>{ { 1, 0.25 } }));
}

} // namespace

// SPDX-License-Identifier: BSD-3-Clause
// docs/elements.md against the elements as gst-inspect-1.0 shows them: every property of each
// element has a row in its section's table, and every row names a property the element has.

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gst/gst.h>
#include <gtest/gtest.h>

#include "gst_test_utils.h"

namespace {

// The lines of docs/elements.md from "## <element>" to the next "## " heading.
std::vector<std::string> section_of(const std::string &element)
{
	const std::string path = gst_test::env("FRCNN_SOURCE_ROOT") + "/docs/elements.md";
	std::ifstream in(path);
	EXPECT_TRUE(in) << "cannot read " << path;
	std::vector<std::string> lines;
	bool inside = false;
	for (std::string line; std::getline(in, line);) {
		if (line.rfind("## ", 0) == 0)
			inside = line == "## " + element;
		else if (inside)
			lines.push_back(line);
	}
	return lines;
}

// The names of the property rows of a section: table rows whose first cell is one `name`.
std::set<std::string> documented_properties(const std::vector<std::string> &section)
{
	std::set<std::string> names;
	for (const std::string &line : section) {
		if (line.rfind("| `", 0) != 0)
			continue;
		const std::size_t end = line.find('|', 1);
		std::string cell = line.substr(1, end == std::string::npos ? std::string::npos : end - 1);
		cell.erase(0, cell.find_first_not_of(' '));
		cell.erase(cell.find_last_not_of(' ') + 1);
		if (cell.size() > 2 && cell.front() == '`' && cell.back() == '`' &&
		    cell.find('`', 1) == cell.size() - 1 && cell.find(' ') == std::string::npos)
			names.insert(cell.substr(1, cell.size() - 2));
	}
	return names;
}

class ElementsDoc : public ::testing::TestWithParam<const char *> {};

TEST_P(ElementsDoc, EveryPropertyHasARowAndEveryRowAProperty)
{
	gst_test::init();
	const std::string name = GetParam();
	GstElement *element = gst_element_factory_make(name.c_str(), nullptr);
	ASSERT_NE(element, nullptr) << name << " is not in the plugin";
	const std::vector<std::string> section = section_of(name);
	ASSERT_FALSE(section.empty()) << "docs/elements.md has no section '## " << name << "'";
	const std::set<std::string> documented = documented_properties(section);
	ASSERT_FALSE(documented.empty()) << "the section of " << name << " has no property table";

	guint count = 0;
	GParamSpec **specs = g_object_class_list_properties(G_OBJECT_GET_CLASS(element), &count);
	for (guint i = 0; i < count; i++) {
		// The element's own properties; the inherited ones are GStreamer's to document.
		if (specs[i]->owner_type != G_OBJECT_TYPE(element))
			continue;
		EXPECT_TRUE(documented.count(specs[i]->name))
			<< name << "'s property '" << specs[i]->name << "' has no row in docs/elements.md";
		EXPECT_STRNE(g_param_spec_get_blurb(specs[i]), "")
			<< name << "'s property '" << specs[i]->name << "' has no description";
	}
	g_free(specs);
	for (const std::string &property : documented)
		EXPECT_NE(g_object_class_find_property(G_OBJECT_GET_CLASS(element), property.c_str()), nullptr)
			<< "docs/elements.md documents '" << property << "', which " << name << " does not have";
	gst_object_unref(element);
}

// The caps block of frcnndetect's section names the formats of its sink pad, no more, no fewer
// (frcnnoverlay's section says it takes the same), and the element tests' list is the same.
TEST(ElementsDoc, TheCapsBlockListsTheFormatsTheElementTakes)
{
	gst_test::init();
	std::string listed;
	bool inside = false;
	for (const std::string &line : section_of("frcnndetect")) {
		if (line.find("format: {") != std::string::npos)
			inside = true;
		if (inside)
			listed += line;
		if (inside && line.find('}') != std::string::npos)
			break;
	}
	ASSERT_FALSE(listed.empty()) << "no 'format: { ... }' in frcnndetect's section";
	std::set<std::string> documented;
	std::istringstream words(listed.substr(listed.find('{') + 1, listed.find('}') - listed.find('{') - 1));
	for (std::string word; std::getline(words, word, ',');) {
		word.erase(0, word.find_first_not_of(" \t"));
		word.erase(word.find_last_not_of(" \t") + 1);
		documented.insert(word);
	}

	for (const char *name : { "frcnndetect", "frcnnoverlay" }) {
		SCOPED_TRACE(name);
		GstElement *element = gst_element_factory_make(name, nullptr);
		ASSERT_NE(element, nullptr);
		GstPad *sink = gst_element_get_static_pad(element, "sink");
		GstCaps *caps = gst_pad_get_pad_template_caps(sink);
		std::set<std::string> taken;
		const GValue *formats = gst_structure_get_value(gst_caps_get_structure(caps, 0), "format");
		ASSERT_TRUE(formats && GST_VALUE_HOLDS_LIST(formats));
		for (guint i = 0; i < gst_value_list_get_size(formats); i++)
			taken.insert(g_value_get_string(gst_value_list_get_value(formats, i)));
		EXPECT_EQ(documented, taken);
		// The element tests run every format it takes.
		std::set<std::string> tested;
		for (GstVideoFormat format : gst_test::all_formats())
			tested.insert(gst_video_format_to_string(format));
		EXPECT_EQ(tested, taken);
		gst_caps_unref(caps);
		gst_object_unref(sink);
		gst_object_unref(element);
	}
}

INSTANTIATE_TEST_SUITE_P(Elements, ElementsDoc,
			 ::testing::Values("frcnndetect", "frcnnoverlay", "frcnnjson", "frcnnshapesrc"));

} // namespace

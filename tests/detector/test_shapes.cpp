// SPDX-License-Identifier: BSD-3-Clause
// The synthetic shapes generator: determinism, valid boxes, boxes that fit what is drawn, motion.
#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "frcnn/error.h"
#include "frcnn/shapes.h"

namespace {

using frcnn::Scene;
using frcnn::ShapeObject;
using frcnn::ShapesGenerator;
using frcnn::ShapesOptions;

struct Rgb {
	int r, g, b;
};

Rgb pixel(const Scene &s, int x, int y)
{
	const uint8_t *p = s.rgb.data() + (static_cast<std::size_t>(y) * s.width + x) * 3;
	return { p[0], p[1], p[2] };
}

double distance(const Rgb &a, const Rgb &b)
{
	return std::sqrt(double((a.r - b.r) * (a.r - b.r) + (a.g - b.g) * (a.g - b.g) +
				(a.b - b.b) * (a.b - b.b)));
}

bool same_objects(const std::vector<ShapeObject> &a, const std::vector<ShapeObject> &b)
{
	if (a.size() != b.size())
		return false;
	for (std::size_t i = 0; i < a.size(); i++)
		if (a[i].x1 != b[i].x1 || a[i].y1 != b[i].y1 || a[i].x2 != b[i].x2 ||
		    a[i].y2 != b[i].y2 || a[i].label != b[i].label || a[i].name != b[i].name)
			return false;
	return true;
}

TEST(Shapes, ClassNames)
{
	const std::vector<std::string> expected{ "background", "square", "circle", "triangle" };
	EXPECT_EQ(frcnn::shapes_class_names(), expected);
	EXPECT_EQ(frcnn::shapes_class_names()[frcnn::kShapeSquare], "square");
	EXPECT_EQ(frcnn::shapes_class_names()[frcnn::kShapeCircle], "circle");
	EXPECT_EQ(frcnn::shapes_class_names()[frcnn::kShapeTriangle], "triangle");
}

TEST(Shapes, SameSeedSameScenesInAnyOrder)
{
	ShapesOptions o;
	o.width = 200;
	o.height = 150;
	o.seed = 42;
	ShapesGenerator a(o), b(o);

	// b draws the frames backwards: frame i never depends on the frames before it.
	std::vector<Scene> forward, backward(40);
	for (int i = 0; i < 40; i++)
		forward.push_back(a.next());
	for (int i = 39; i >= 0; i--)
		backward[i] = b.scene(static_cast<uint64_t>(i));
	for (int i = 0; i < 40; i++) {
		ASSERT_EQ(forward[i].index, static_cast<uint64_t>(i));
		ASSERT_EQ(forward[i].rgb.size(), 200u * 150u * 3u);
		EXPECT_EQ(forward[i].rgb, backward[i].rgb) << "frame " << i;
		EXPECT_TRUE(same_objects(forward[i].objects, backward[i].objects)) << "frame " << i;
	}
	EXPECT_EQ(a.position(), 40u);
}

TEST(Shapes, OtherSeedOtherScenes)
{
	ShapesOptions o;
	o.width = 160;
	o.height = 120;
	o.seed = 1;
	ShapesGenerator a(o);
	o.seed = 2;
	ShapesGenerator b(o);
	int differing = 0;
	for (uint64_t i = 0; i < 5; i++)
		differing += a.scene(i).rgb != b.scene(i).rgb ? 1 : 0;
	EXPECT_EQ(differing, 5);
	// Consecutive frames differ too (motion and noise).
	EXPECT_NE(a.scene(0).rgb, a.scene(1).rgb);
}

TEST(Shapes, RenderIntoPaddedRows)
{
	ShapesOptions o;
	o.width = 97; // odd: rows of 291 bytes
	o.height = 61;
	o.seed = 9;
	ShapesGenerator g(o);
	const Scene scene = g.scene(3);
	const std::size_t stride = 97 * 3 + 13;
	std::vector<uint8_t> padded(stride * 61, 0xEE);
	const auto objects = g.render(3, padded.data(), stride);
	EXPECT_TRUE(same_objects(objects, scene.objects));
	for (int y = 0; y < 61; y++) {
		ASSERT_TRUE(std::equal(scene.rgb.begin() + y * 97 * 3, scene.rgb.begin() + (y + 1) * 97 * 3,
				       padded.begin() + y * stride))
			<< "row " << y;
		for (std::size_t k = 97 * 3; k < stride; k++)
			ASSERT_EQ(padded[y * stride + k], 0xEE) << "padding written in row " << y;
	}
	EXPECT_THROW(g.render(0, padded.data(), 97 * 3 - 1), frcnn::Error);
	try {
		g.render(0, nullptr, stride);
		ADD_FAILURE() << "a null buffer was taken";
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find("null pointer"), std::string::npos) << e.what();
	}
}

TEST(Shapes, BoxesAreValid)
{
	ShapesOptions o;
	o.width = 320;
	o.height = 240;
	o.seed = 5;
	o.scene_frames = 1; // independent scenes, as for training
	o.min_objects = 0;
	o.max_objects = 8;
	ShapesGenerator g(o);
	int objects = 0, partly_hidden = 0;
	int per_label[4] = { 0, 0, 0, 0 };
	std::size_t most = 0, fewest = 100;
	for (uint64_t i = 0; i < 300; i++) {
		const Scene s = g.scene(i);
		most = std::max(most, s.objects.size());
		fewest = std::min(fewest, s.objects.size());
		for (const ShapeObject &ob : s.objects) {
			objects++;
			ASSERT_GE(ob.x1, 0.f);
			ASSERT_GE(ob.y1, 0.f);
			ASSERT_LE(ob.x2, 320.f);
			ASSERT_LE(ob.y2, 240.f);
			ASSERT_GE(ob.x2 - ob.x1, 2.f);
			ASSERT_GE(ob.y2 - ob.y1, 2.f);
			ASSERT_GE(ob.label, 1);
			ASSERT_LE(ob.label, 3);
			ASSERT_EQ(ob.name, frcnn::shapes_class_names()[ob.label]);
			ASSERT_GE(ob.visibility, 0.4f);
			ASSERT_LE(ob.visibility, 1.f);
			// Sizes within 5%..35% of the short side (a spinning square's box is up to
			// sqrt(2) times its side, a triangle's about 1.25 times its size).
			const float extent = std::max(ob.x2 - ob.x1, ob.y2 - ob.y1);
			ASSERT_LE(extent, 0.35f * 240 * 1.5f);
			per_label[ob.label]++;
			partly_hidden += ob.visibility < 0.98f ? 1 : 0;
		}
	}
	EXPECT_EQ(fewest, 0u);
	EXPECT_GE(most, 7u);
	// Every class is well represented, and occlusion happens but is not the rule.
	for (int label = 1; label <= 3; label++)
		EXPECT_GT(per_label[label], objects / 5) << "label " << label;
	EXPECT_GT(partly_hidden, objects / 50);
	EXPECT_LT(partly_hidden, objects / 2);
}

// With a single object and no pixel noise, the box must hug what is drawn: just inside each
// side of the box something differs from the background just outside it, and nothing of the
// shape's fill colour lies outside the box. Squares and circles only: their box centre is their
// centre, which gives the fill colour.
TEST(Shapes, BoxesFitTheDrawnShape)
{
	ShapesOptions o;
	o.width = 320;
	o.height = 240;
	o.seed = 11;
	o.scene_frames = 1;
	o.min_objects = 1;
	o.max_objects = 1;
	o.max_noise = 0;
	ShapesGenerator g(o);

	int checked = 0, fits = 0;
	for (uint64_t i = 0; i < 200; i++) {
		const Scene s = g.scene(i);
		if (s.objects.size() != 1)
			continue;
		const ShapeObject &ob = s.objects[0];
		if (ob.label == frcnn::kShapeTriangle || ob.visibility < 0.999f || ob.x1 < 8 ||
		    ob.y1 < 8 || ob.x2 > 312 || ob.y2 > 232)
			continue;
		checked++;
		const Rgb fill = pixel(s, static_cast<int>((ob.x1 + ob.x2) / 2),
				       static_cast<int>((ob.y1 + ob.y2) / 2));

		// Two pixels in from each side vs three pixels out, across the edge.
		const int x1 = static_cast<int>(std::floor(ob.x1)), x2 = static_cast<int>(std::ceil(ob.x2));
		const int y1 = static_cast<int>(std::floor(ob.y1)), y2 = static_cast<int>(std::ceil(ob.y2));
		auto contrast = [&](int xi, int yi, int xo, int yo) {
			return distance(pixel(s, xi, yi), pixel(s, xo, yo)) > 40;
		};
		bool top = false, bottom = false, left = false, right = false;
		for (int x = x1; x < x2; x++) {
			top = top || contrast(x, y1 + 2, x, y1 - 3);
			bottom = bottom || contrast(x, y2 - 3, x, y2 + 2);
		}
		for (int y = y1; y < y2; y++) {
			left = left || contrast(x1 + 2, y, x1 - 3, y);
			right = right || contrast(x2 - 3, y, x2 + 2, y);
		}
		// Outside the box grown by a pixel (anti-aliasing), no fill-coloured pixel.
		int outside = 0;
		for (int y = 0; y < s.height; y++)
			for (int x = 0; x < s.width; x++)
				if ((x < x1 - 1 || x > x2 || y < y1 - 1 || y > y2) &&
				    distance(pixel(s, x, y), fill) < 30)
					outside++;
		const bool ok = top && bottom && left && right && outside == 0;
		fits += ok ? 1 : 0;
		if (!ok)
			ADD_FAILURE() << "scene " << i << " " << ob.name << " box [" << ob.x1 << ", "
				      << ob.y1 << ", " << ob.x2 << ", " << ob.y2 << "]: sides "
				      << top << bottom << left << right << ", " << outside
				      << " fill-coloured pixels outside";
	}
	EXPECT_GT(checked, 60);
	EXPECT_EQ(fits, checked);
}

TEST(Shapes, ObjectsMoveSmoothlyWithinAScene)
{
	ShapesOptions o;
	o.width = 320;
	o.height = 240;
	o.seed = 3;
	o.scene_frames = 50;
	o.min_objects = 3;
	o.max_objects = 3;
	o.min_object_frames = 1000; // nobody leaves within the scene
	o.max_object_frames = 1000;
	o.min_visibility = 0;
	ShapesGenerator g(o);

	// Speed, plus the shift of a spinning triangle's box centre.
	const double max_step = o.max_speed * 240 + o.max_spin * 0.35 * 240 * 0.75 + 1;
	int moved = 0;
	for (uint64_t i = 1; i < 50; i++) {
		const Scene a = g.scene(i - 1), b = g.scene(i);
		ASSERT_EQ(a.objects.size(), b.objects.size()) << "frame " << i;
		for (std::size_t k = 0; k < a.objects.size(); k++) {
			const ShapeObject &p = a.objects[k], &q = b.objects[k];
			ASSERT_EQ(p.label, q.label);
			const double dx = (q.x1 + q.x2 - p.x1 - p.x2) / 2, dy = (q.y1 + q.y2 - p.y1 - p.y2) / 2;
			EXPECT_LT(std::hypot(dx, dy), max_step) << "frame " << i << " object " << k;
			moved += std::hypot(dx, dy) > 0.01 ? 1 : 0;
		}
	}
	EXPECT_GT(moved, 49 * 3 / 2);
	// The cut to the next scene changes the picture completely.
	const Scene last = g.scene(49), next = g.scene(50);
	int differing = 0;
	for (std::size_t k = 0; k < last.rgb.size(); k++)
		differing += std::abs(last.rgb[k] - next.rgb[k]) > 30 ? 1 : 0;
	EXPECT_GT(differing, static_cast<int>(last.rgb.size() / 4));
}

TEST(Shapes, RejectsBadOptions)
{
	auto make = [](auto change) {
		ShapesOptions o;
		change(o);
		return ShapesGenerator(o);
	};
	EXPECT_THROW(make([](ShapesOptions &o) { o.width = 4; }), frcnn::Error);
	EXPECT_THROW(make([](ShapesOptions &o) { o.min_objects = 5, o.max_objects = 2; }),
		     frcnn::Error);
	EXPECT_THROW(make([](ShapesOptions &o) { o.min_size = 0; }), frcnn::Error);
	EXPECT_THROW(make([](ShapesOptions &o) { o.max_size = 1.5; }), frcnn::Error);
	EXPECT_THROW(make([](ShapesOptions &o) { o.scene_frames = 0; }), frcnn::Error);
	EXPECT_THROW(make([](ShapesOptions &o) { o.min_visibility = 2; }), frcnn::Error);
	try {
		make([](ShapesOptions &o) { o.min_objects = 5, o.max_objects = 2; });
	} catch (const frcnn::Error &e) {
		EXPECT_NE(std::string(e.what()).find("5 and 2"), std::string::npos) << e.what();
	}
	EXPECT_NO_THROW(make([](ShapesOptions &o) { o.min_objects = o.max_objects = 0; }));
}

} // namespace

// SPDX-License-Identifier: BSD-3-Clause
#include "frcnn/shapes.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "frcnn/error.h"

namespace frcnn {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Everything random is drawn from counters hashed with the seed (splitmix64), never from a
// library distribution: std:: distributions differ between standard libraries, and the frames of
// a seed must be the same everywhere.
uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t hash(std::initializer_list<uint64_t> parts)
{
	uint64_t h = 0x6a09e667f3bcc909ull;
	for (uint64_t p : parts)
		h = splitmix64(h ^ p);
	return h;
}

// Streams of random numbers, one per purpose, so that adding a draw to one never shifts another.
enum Stream : uint64_t {
	kStreamScene = 1,
	kStreamSlot = 2,
	kStreamObject = 3,
	kStreamNoise = 4,
};

class Random {
public:
	explicit Random(uint64_t state) : state_(state) {}

	uint64_t bits()
	{
		state_ += 0x9e3779b97f4a7c15ull;
		uint64_t z = state_;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		return z ^ (z >> 31);
	}

	// [0, 1)
	double uniform() { return static_cast<double>(bits() >> 11) * 0x1.0p-53; }
	double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
	// [lo, hi], both included
	int integer(int lo, int hi)
	{
		const uint64_t span = static_cast<uint64_t>(static_cast<int64_t>(hi) - lo + 1);
		return lo + static_cast<int>(bits() % span);
	}
	bool chance(double p) { return uniform() < p; }

private:
	uint64_t state_;
};

using Colour = std::array<double, 3>; // R, G, B in 0..255

double distance(const Colour &a, const Colour &b)
{
	const double dr = a[0] - b[0], dg = a[1] - b[1], db = a[2] - b[2];
	return std::sqrt(dr * dr + dg * dg + db * db);
}

// h in turns (any value), s and v in 0..1.
Colour hsv(double h, double s, double v)
{
	h -= std::floor(h);
	const double c = v * s;
	const double hp = h * 6.0;
	const double x = c * (1.0 - std::fabs(std::fmod(hp, 2.0) - 1.0));
	double r = 0, g = 0, b = 0;
	if (hp < 1)
		r = c, g = x;
	else if (hp < 2)
		r = x, g = c;
	else if (hp < 3)
		g = c, b = x;
	else if (hp < 4)
		g = x, b = c;
	else if (hp < 5)
		r = x, b = c;
	else
		r = c, b = x;
	const double m = v - c;
	return { (r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0 };
}

Colour random_colour(Random &rng)
{
	return hsv(rng.uniform(), rng.uniform(0.0, 1.0), rng.uniform(0.1, 1.0));
}

cv::Scalar scalar(const Colour &c)
{
	return cv::Scalar(c[0], c[1], c[2]);
}

enum class BackgroundKind { Solid, Gradient, Texture };

struct Background {
	BackgroundKind kind = BackgroundKind::Solid;
	Colour a{}, b{};	 // solid: a; gradient: a -> b; texture: base a
	double angle = 0;	 // gradient direction
	double amplitude = 0;	 // texture: colour variation around a
	uint64_t texture_seed = 0;
	int cells = 4;		 // texture: coarse grid cells along the short side
	// Colours the objects must stand out from.
	std::vector<Colour> references() const
	{
		if (kind == BackgroundKind::Gradient) {
			Colour mid{ (a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2 };
			return { a, b, mid };
		}
		return { a };
	}
	double margin() const { return kind == BackgroundKind::Texture ? amplitude : 0.0; }
};

// What stays fixed for the frames of one scene.
struct SceneLayout {
	Background background;
	int slots = 0;		// objects on screen at once
	double hue_offset = 0;	// slot j's hue is spread around the colour wheel from here
	double noise = 0;	// standard deviation of the pixel noise
	std::vector<int> period; // per slot: frames an object lives
	std::vector<int> phase;	 // per slot: offset of its first object's life
};

struct ShapeInstance {
	int label = kShapeBackground;
	Colour colour{};
	bool border = false; // a band of another shade along the inside of the edge
	Colour border_colour{};
	double border_width = 1;
	double cx = 0, cy = 0;	 // centre, pixel-edge coordinates
	double radius = 0;	 // circle
	std::vector<cv::Point2d> polygon; // square, triangle
	cv::Point2d incentre;	 // polygon: centre of the inscribed circle, and its radius
	double inradius = 0;
	double area = 0;
};

// The shape moved inwards by `width`: the border is drawn inside the edge, so that the box of
// the shape stays the box of everything drawn for it.
ShapeInstance inset(const ShapeInstance &s, double width)
{
	ShapeInstance in = s;
	if (s.label == kShapeCircle) {
		in.radius = std::max(s.radius - width, 0.5 * s.radius);
		return in;
	}
	// Scaling about the incentre moves every side inwards by the same distance.
	const double f = std::max(1.0 - width / std::max(s.inradius, 1e-9), 0.5);
	for (cv::Point2d &p : in.polygon)
		p = s.incentre + (p - s.incentre) * f;
	return in;
}

// Reflects x into [lo, hi] as a ball bouncing between two walls would: a triangle wave, so that
// the position at any frame is known without stepping through the earlier ones.
double bounce(double x, double lo, double hi)
{
	const double length = hi - lo;
	if (length <= 0)
		return (lo + hi) / 2;
	double m = std::fmod(x - lo, 2 * length);
	if (m < 0)
		m += 2 * length;
	return lo + (m <= length ? m : 2 * length - m);
}

SceneLayout make_layout(const ShapesOptions &o, uint64_t scene)
{
	Random rng(hash({ o.seed, kStreamScene, scene }));
	SceneLayout layout;

	Background &bg = layout.background;
	const double kind = rng.uniform();
	bg.kind = kind < 0.3 ? BackgroundKind::Solid
			     : kind < 0.65 ? BackgroundKind::Gradient : BackgroundKind::Texture;
	bg.a = random_colour(rng);
	bg.b = random_colour(rng);
	bg.angle = rng.uniform(0, 2 * kPi);
	bg.amplitude = rng.uniform(15, 45);
	bg.texture_seed = rng.bits();
	bg.cells = rng.integer(2, 8);

	layout.slots = rng.integer(o.min_objects, o.max_objects);
	layout.hue_offset = rng.uniform();
	layout.noise = rng.uniform(0, o.max_noise);
	for (int j = 0; j < layout.slots; j++) {
		Random slot(hash({ o.seed, kStreamSlot, scene, static_cast<uint64_t>(j) }));
		const int period = slot.integer(o.min_object_frames, o.max_object_frames);
		layout.period.push_back(period);
		layout.phase.push_back(slot.integer(0, period - 1));
	}
	return layout;
}

// The object in slot `j` at frame `t` of scene `scene`: which object lives there now comes from
// the slot's period, its motion from the object's own random draws and its age.
ShapeInstance make_instance(const ShapesOptions &o, const SceneLayout &layout, uint64_t scene,
			    int j, uint64_t t)
{
	const uint64_t u = t + static_cast<uint64_t>(layout.phase[j]);
	const uint64_t life = u / static_cast<uint64_t>(layout.period[j]);
	const double age = static_cast<double>(u % static_cast<uint64_t>(layout.period[j]));
	Random rng(hash({ o.seed, kStreamObject, scene, static_cast<uint64_t>(j), life }));

	const double short_side = std::min(o.width, o.height);
	ShapeInstance s;
	s.label = rng.integer(kShapeSquare, kShapeTriangle);
	const double size = short_side * rng.uniform(o.min_size, o.max_size);

	// Hues spread over the wheel keep objects that meet apart; saturation and value are drawn
	// until the colour stands out from the background.
	const double hue = layout.hue_offset + static_cast<double>(j) / std::max(layout.slots, 1) +
			   rng.uniform(-0.05, 0.05);
	const std::vector<Colour> refs = layout.background.references();
	const double needed = 110.0 + layout.background.margin();
	double best = -1;
	for (int attempt = 0; attempt < 32; attempt++) {
		const Colour c = hsv(hue + rng.uniform(-0.03, 0.03), rng.uniform(0.5, 1.0),
				     rng.uniform(0.25, 1.0));
		double closest = 1e9;
		for (const Colour &r : refs)
			closest = std::min(closest, distance(c, r));
		if (closest > best) {
			best = closest;
			s.colour = c;
		}
		if (closest >= needed)
			break;
	}
	s.border = rng.chance(0.5);
	const double shade = rng.chance(0.5) ? 0.45 : 1.6;
	for (int k = 0; k < 3; k++)
		s.border_colour[k] = std::min(255.0, s.colour[k] * shade + (shade > 1 ? 30 : 0));
	s.border_width = rng.uniform(1.0, std::max(1.0, 0.08 * size));
	// A border lost in the background would leave a shape smaller than its box.
	for (const Colour &r : refs)
		if (distance(s.border_colour, r) < 0.6 * needed)
			s.border = false;

	// Motion: start anywhere that leaves most of the shape inside, then bounce.
	const double margin = 0.2 * size;
	const double x0 = rng.uniform(margin, o.width - margin);
	const double y0 = rng.uniform(margin, o.height - margin);
	const double speed = rng.uniform(0, o.max_speed * short_side);
	const double heading = rng.uniform(0, 2 * kPi);
	const double angle0 = rng.uniform(0, 2 * kPi);
	const double spin = rng.uniform(-o.max_spin, o.max_spin);
	const double squash = rng.uniform(0.8, 1.25); // triangles: not all equilateral

	s.cx = bounce(x0 + speed * std::cos(heading) * age, margin, o.width - margin);
	s.cy = bounce(y0 + speed * std::sin(heading) * age, margin, o.height - margin);
	const double angle = angle0 + spin * age;
	const double ca = std::cos(angle), sa = std::sin(angle);
	auto place = [&](double lx, double ly) {
		return cv::Point2d(s.cx + lx * ca - ly * sa, s.cy + lx * sa + ly * ca);
	};

	switch (s.label) {
	case kShapeSquare: {
		const double h = size / 2;
		s.polygon = { place(-h, -h), place(h, -h), place(h, h), place(-h, h) };
		s.incentre = cv::Point2d(s.cx, s.cy);
		s.inradius = h;
		s.area = size * size;
		break;
	}
	case kShapeCircle:
		s.radius = size / 2;
		s.area = kPi * s.radius * s.radius;
		break;
	default: {
		const double r = size * 0.6;
		for (int k = 0; k < 3; k++) {
			const double a = 2 * kPi * k / 3 - kPi / 2;
			s.polygon.push_back(place(r * std::cos(a), squash * r * std::sin(a)));
		}
		const cv::Point2d &p = s.polygon[0], &q = s.polygon[1], &w = s.polygon[2];
		s.area = std::fabs((q.x - p.x) * (w.y - p.y) - (w.x - p.x) * (q.y - p.y)) / 2;
		// Incentre: the vertices weighted by the lengths of the opposite sides.
		const double a = cv::norm(q - w), b = cv::norm(w - p), c = cv::norm(p - q);
		s.incentre = (p * a + q * b + w * c) / (a + b + c);
		s.inradius = 2 * s.area / (a + b + c);
		break;
	}
	}
	return s;
}

// OpenCV puts pixel centres at integer coordinates; our boxes put pixel i at [i, i+1).
constexpr int kShift = 4; // sub-pixel bits: smooth motion
cv::Point fixed_point(const cv::Point2d &p)
{
	return cv::Point(static_cast<int>(std::lround((p.x - 0.5) * (1 << kShift))),
			 static_cast<int>(std::lround((p.y - 0.5) * (1 << kShift))));
}

void fill_shape(cv::Mat &image, const ShapeInstance &s, const cv::Scalar &colour, int line_type)
{
	if (s.label == kShapeCircle) {
		const int r = static_cast<int>(std::lround(s.radius * (1 << kShift)));
		cv::circle(image, fixed_point({ s.cx, s.cy }), r, colour, cv::FILLED, line_type, kShift);
		return;
	}
	std::vector<cv::Point> points;
	for (const cv::Point2d &p : s.polygon)
		points.push_back(fixed_point(p));
	cv::fillPoly(image, std::vector<std::vector<cv::Point>>{ points }, colour, line_type, kShift);
}

void draw_background(cv::Mat &image, const Background &bg)
{
	const int width = image.cols, height = image.rows;
	switch (bg.kind) {
	case BackgroundKind::Solid:
		image.setTo(scalar(bg.a));
		break;
	case BackgroundKind::Gradient: {
		const double dx = std::cos(bg.angle), dy = std::sin(bg.angle);
		// Projection of the corners on the direction: the gradient spans the whole frame.
		double lo = 1e300, hi = -1e300;
		for (double x : { 0.0, static_cast<double>(width) })
			for (double y : { 0.0, static_cast<double>(height) }) {
				lo = std::min(lo, x * dx + y * dy);
				hi = std::max(hi, x * dx + y * dy);
			}
		const double span = std::max(hi - lo, 1.0);
		for (int y = 0; y < height; y++) {
			uint8_t *row = image.ptr<uint8_t>(y);
			for (int x = 0; x < width; x++) {
				const double f = ((x + 0.5) * dx + (y + 0.5) * dy - lo) / span;
				for (int k = 0; k < 3; k++)
					row[3 * x + k] = cv::saturate_cast<uint8_t>(
						bg.a[k] + (bg.b[k] - bg.a[k]) * f);
			}
		}
		break;
	}
	case BackgroundKind::Texture: {
		// Two octaves of smooth value noise around the base colour.
		Random rng(bg.texture_seed);
		cv::Mat sum(height, width, CV_32FC3, cv::Scalar(bg.a[0], bg.a[1], bg.a[2]));
		const double short_side = std::min(width, height);
		int cells = bg.cells;
		double amplitude = bg.amplitude;
		for (int octave = 0; octave < 2; octave++) {
			const int gw = std::max(2, static_cast<int>(std::lround(cells * width / short_side)));
			const int gh = std::max(2, static_cast<int>(std::lround(cells * height / short_side)));
			cv::Mat grid(gh, gw, CV_32FC3);
			for (int y = 0; y < gh; y++)
				for (int x = 0; x < gw; x++) {
					const double lum = rng.uniform(-1, 1);
					cv::Vec3f &v = grid.at<cv::Vec3f>(y, x);
					for (int k = 0; k < 3; k++)
						v[k] = static_cast<float>(
							amplitude * (0.7 * lum + 0.3 * rng.uniform(-1, 1)));
				}
			cv::Mat layer;
			cv::resize(grid, layer, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);
			sum += layer;
			cells *= 4;
			amplitude /= 2;
		}
		sum.convertTo(image, CV_8UC3);
		break;
	}
	}
}

void add_noise(cv::Mat &image, double sigma, uint64_t seed)
{
	if (sigma <= 0.05)
		return;
	Random rng(seed);
	// The sum of two uniforms (a triangular distribution) is close enough to a Gaussian here and
	// cheap: 64 random bits give two values.
	const float scale = static_cast<float>(sigma / std::sqrt(1.0 / 6.0) / 65536.0);
	for (int y = 0; y < image.rows; y++) {
		uint8_t *row = image.ptr<uint8_t>(y);
		const int n = image.cols * 3;
		for (int i = 0; i < n; i += 2) {
			const uint64_t r = rng.bits();
			for (int k = 0; k < 2 && i + k < n; k++) {
				const uint64_t b = r >> (32 * k);
				const int v = static_cast<int>(b & 0xffff) +
					      static_cast<int>((b >> 16) & 0xffff) - 65535;
				row[i + k] = cv::saturate_cast<uint8_t>(row[i + k] + v * scale);
			}
		}
	}
}

void check(bool ok, const std::string &what)
{
	if (!ok)
		throw Error("invalid shapes option: " + what);
}

template <typename T> std::string str(T v)
{
	std::ostringstream s;
	s << v;
	return s.str();
}

} // namespace

const std::vector<std::string> &shapes_class_names()
{
	static const std::vector<std::string> names{ "background", "square", "circle", "triangle" };
	return names;
}

ShapesGenerator::ShapesGenerator(const ShapesOptions &o) : options_(o)
{
	check(o.width >= 8 && o.width <= 16384 && o.height >= 8 && o.height <= 16384,
	      "the frame must be 8 to 16384 pixels wide and high, got " + str(o.width) + "x" +
		      str(o.height));
	check(o.min_objects >= 0 && o.max_objects >= o.min_objects && o.max_objects <= 250,
	      "min_objects and max_objects must satisfy 0 <= min <= max <= 250, got " +
		      str(o.min_objects) + " and " + str(o.max_objects));
	check(o.min_size > 0 && o.min_size <= o.max_size && o.max_size <= 1,
	      "sizes must satisfy 0 < min_size <= max_size <= 1 (fractions of the short side), got " +
		      str(o.min_size) + " and " + str(o.max_size));
	check(o.scene_frames >= 1, "scene_frames must be at least 1, got " + str(o.scene_frames));
	check(o.min_object_frames >= 1 && o.max_object_frames >= o.min_object_frames,
	      "object frames must satisfy 1 <= min <= max, got " + str(o.min_object_frames) +
		      " and " + str(o.max_object_frames));
	check(o.max_speed >= 0 && o.max_speed <= 1,
	      "max_speed must be in [0, 1], got " + str(o.max_speed));
	check(o.max_spin >= 0 && o.max_spin <= kPi, "max_spin must be in [0, pi], got " + str(o.max_spin));
	check(o.max_noise >= 0 && o.max_noise <= 128,
	      "max_noise must be in [0, 128], got " + str(o.max_noise));
	check(o.min_visibility >= 0 && o.min_visibility <= 1,
	      "min_visibility must be in [0, 1], got " + str(o.min_visibility));
}

std::vector<ShapeObject> ShapesGenerator::render(uint64_t index, uint8_t *rgb,
						 std::size_t stride) const
{
	const ShapesOptions &o = options_;
	if (rgb == nullptr)
		throw Error("ShapesGenerator::render needs a buffer, got a null pointer");
	if (stride < static_cast<std::size_t>(o.width) * 3)
		throw Error("ShapesGenerator::render needs a buffer with rows of at least " +
			    str(o.width * 3) + " bytes, got stride " + str(stride));

	const uint64_t scene = index / static_cast<uint64_t>(o.scene_frames);
	const uint64_t t = index % static_cast<uint64_t>(o.scene_frames);
	const SceneLayout layout = make_layout(o, scene);

	cv::Mat image(o.height, o.width, CV_8UC3, rgb, stride);
	draw_background(image, layout.background);

	std::vector<ShapeInstance> shapes;
	for (int j = 0; j < layout.slots; j++)
		shapes.push_back(make_instance(o, layout, scene, j, t));

	// Later slots are drawn on top; the id map tells how much of each shape is left in view.
	cv::Mat ids(o.height, o.width, CV_8UC1, cv::Scalar(0));
	for (std::size_t k = 0; k < shapes.size(); k++) {
		const ShapeInstance &s = shapes[k];
		if (s.border) {
			fill_shape(image, s, scalar(s.border_colour), cv::LINE_AA);
			fill_shape(image, inset(s, s.border_width), scalar(s.colour), cv::LINE_AA);
		} else {
			fill_shape(image, s, scalar(s.colour), cv::LINE_AA);
		}
		fill_shape(ids, s, cv::Scalar(static_cast<double>(k + 1)), cv::LINE_8);
	}
	add_noise(image, layout.noise, hash({ o.seed, kStreamNoise, index }));

	std::vector<ShapeObject> objects;
	for (std::size_t k = 0; k < shapes.size(); k++) {
		const ShapeInstance &s = shapes[k];
		double x1, y1, x2, y2;
		if (s.label == kShapeCircle) {
			x1 = s.cx - s.radius, x2 = s.cx + s.radius;
			y1 = s.cy - s.radius, y2 = s.cy + s.radius;
		} else {
			x1 = y1 = 1e300, x2 = y2 = -1e300;
			for (const cv::Point2d &p : s.polygon) {
				x1 = std::min(x1, p.x), x2 = std::max(x2, p.x);
				y1 = std::min(y1, p.y), y2 = std::max(y2, p.y);
			}
		}
		x1 = std::clamp(x1, 0.0, static_cast<double>(o.width));
		x2 = std::clamp(x2, 0.0, static_cast<double>(o.width));
		y1 = std::clamp(y1, 0.0, static_cast<double>(o.height));
		y2 = std::clamp(y2, 0.0, static_cast<double>(o.height));
		if (x2 - x1 < 2 || y2 - y1 < 2)
			continue;

		const cv::Rect roi(cv::Point(static_cast<int>(std::floor(x1)), static_cast<int>(std::floor(y1))),
				   cv::Point(static_cast<int>(std::ceil(x2)), static_cast<int>(std::ceil(y2))));
		const int visible = cv::countNonZero(ids(roi) == static_cast<double>(k + 1));
		const double visibility = std::min(1.0, visible / std::max(s.area, 1.0));
		if (visibility < o.min_visibility)
			continue;

		ShapeObject obj;
		obj.x1 = static_cast<float>(x1), obj.y1 = static_cast<float>(y1);
		obj.x2 = static_cast<float>(x2), obj.y2 = static_cast<float>(y2);
		obj.label = s.label;
		obj.name = shapes_class_names()[s.label];
		obj.visibility = static_cast<float>(visibility);
		objects.push_back(std::move(obj));
	}
	return objects;
}

Scene ShapesGenerator::scene(uint64_t index) const
{
	Scene scene;
	scene.index = index;
	scene.width = options_.width;
	scene.height = options_.height;
	scene.rgb.resize(static_cast<std::size_t>(options_.width) * options_.height * 3);
	scene.objects = render(index, scene.rgb.data(), static_cast<std::size_t>(options_.width) * 3);
	return scene;
}

Scene ShapesGenerator::next()
{
	return scene(position_++);
}

} // namespace frcnn

// SPDX-License-Identifier: BSD-3-Clause
// Synthetic scenes of coloured squares, circles and triangles with their true boxes: the data the
// shapes model is trained on and the video that frcnnshapesrc plays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace frcnn {

// Label ids of the shapes model; 0 is the background, as in torchvision.
enum ShapeLabel : int {
	kShapeBackground = 0,
	kShapeSquare = 1,
	kShapeCircle = 2,
	kShapeTriangle = 3,
};

// {"background", "square", "circle", "triangle"}: index = label id.
const std::vector<std::string> &shapes_class_names();

struct ShapesOptions {
	int width = 640;
	int height = 480;
	uint64_t seed = 0;
	int min_objects = 1; // objects on screen at once
	int max_objects = 6;

	double min_size = 0.05; // shape size, as a fraction of the short side of the frame
	double max_size = 0.35;

	// A scene keeps its background and its number of objects for scene_frames frames, then
	// the video cuts to a new one. 1 makes every index an independent scene (training).
	int scene_frames = 100;
	// Each object lives for a number of frames in this range, then another takes its place.
	int min_object_frames = 25;
	int max_object_frames = 100;
	double max_speed = 0.012;     // fraction of the short side per frame
	double max_spin = 0.04;	      // radians per frame
	double max_noise = 8.0;	      // upper bound of the pixel noise's standard deviation (0..255)
	double min_visibility = 0.4;  // objects less visible than this (clipped or hidden by others)
				      // are left out of the ground truth
};

// One object of a scene. The box is the shape's bounding box clipped to the frame, in pixels
// (x2, y2 exclusive edges, as torchvision's boxes); it is at least 2 pixels wide and high.
struct ShapeObject {
	float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
	int label = kShapeBackground;
	std::string name;
	float visibility = 0; // share of the shape's area that is visible in the frame
};

struct Scene {
	uint64_t index = 0;
	int width = 0;
	int height = 0;
	std::vector<uint8_t> rgb; // height rows of width * 3 bytes (R, G, B), no padding
	std::vector<ShapeObject> objects;
};

// Scene `index` is a pure function of (options, index): frames can be drawn in any order, by any
// number of threads, and the same seed always gives the same pixels and boxes. Within a scene,
// objects move smoothly, spin and bounce off the frame's edges; positions are computed in closed
// form, so frame i never needs frames 0..i-1.
class ShapesGenerator {
public:
	// Throws frcnn::Error when an option is out of range, naming it and its value.
	explicit ShapesGenerator(const ShapesOptions &options);

	const ShapesOptions &options() const { return options_; }

	// Scene `index` of the sequence.
	Scene scene(uint64_t index) const;

	// Draws scene `index` into caller memory: height rows of width * 3 RGB bytes, `stride` bytes
	// apart (stride >= width * 3). Returns the objects of the ground truth.
	std::vector<ShapeObject> render(uint64_t index, uint8_t *rgb, std::size_t stride) const;

	// The next scene of the sequence, starting at index 0 (or where seek() put it).
	Scene next();
	void seek(uint64_t index) { position_ = index; }
	uint64_t position() const { return position_; }

private:
	ShapesOptions options_;
	uint64_t position_ = 0;
};

} // namespace frcnn

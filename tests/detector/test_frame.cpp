// SPDX-License-Identifier: BSD-3-Clause
// Held frames: copies (Detector::copy_frame) and frames held in place (Detector::hold_frame, what
// the element makes of each frame as it arrives, so that a batch later runs from them). They must
// give exactly what the frames give.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "random_frames.h"
#include "frcnn/checkpoint.h"
#include "frcnn/detector.h"
#include "frcnn/error.h"
#include "frcnn/frame.h"
#include "frcnn/model.h"
#include "frcnn/shapes.h"
#include "parts.h"
#include "../../detector/ops/kernels.h"
#include "../../detector/ops/cuda/preprocess_steps.h"
#include "../../detector/ops/transfer.h"
#include "../../detector/ops/yuv_layout.h"

using namespace frcnn;

namespace {

// A frame in some layout, with the bytes it points into.
struct TestFrame {
	std::vector<std::vector<uint8_t>> planes;
	FrameView view;
};

// Shapes scene `index` (320x240 RGB) in `format`, each row padded by `pad` bytes.
TestFrame shapes_frame(uint64_t index, PixelFormat format, int pad)
{
	ShapesOptions options;
	options.width = 320;
	options.height = 240;
	options.seed = 7;
	options.scene_frames = 1;
	const Scene scene = ShapesGenerator(options).scene(index);
	const int w = scene.width, h = scene.height;
	auto rgb = [&](int x, int y, int c) { return (int)scene.rgb[((size_t)y * w + x) * 3 + c]; };

	TestFrame f;
	f.view.format = format;
	f.view.width = w;
	f.view.height = h;
	if (format == PixelFormat::RGB || format == PixelFormat::BGRx) {
		const int bpp = packed_bytes_per_pixel(format);
		const auto offsets = packed_rgb_offsets(format);
		const int stride = w * bpp + pad;
		f.planes.assign(1, std::vector<uint8_t>((size_t)stride * h, 0xee));
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				for (int c = 0; c < 3; c++)
					f.planes[0][(size_t)y * stride + x * bpp + offsets[c]] = (uint8_t)rgb(x, y, c);
		f.view.strides[0] = stride;
	} else { // NV12: BT.601 limited range, chroma from the top-left pixel of each 2x2 block
		const int cw = (w + 1) / 2, ch = (h + 1) / 2;
		const int strides[2] = {w + pad, 2 * cw + pad};
		f.planes.push_back(std::vector<uint8_t>((size_t)strides[0] * h, 0xee));
		f.planes.push_back(std::vector<uint8_t>((size_t)strides[1] * ch, 0xee));
		auto clamp = [](double v) { return (uint8_t)std::clamp(v + 0.5, 0.0, 255.0); };
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				const double r = rgb(x, y, 0), g = rgb(x, y, 1), b = rgb(x, y, 2);
				f.planes[0][(size_t)y * strides[0] + x] = clamp(16 + 0.257 * r + 0.504 * g + 0.098 * b);
				if (x % 2 == 0 && y % 2 == 0) {
					uint8_t *uv = &f.planes[1][(size_t)(y / 2) * strides[1] + x];
					uv[0] = clamp(128 - 0.148 * r - 0.291 * g + 0.439 * b);
					uv[1] = clamp(128 + 0.439 * r - 0.368 * g - 0.071 * b);
				}
			}
		f.view.strides[0] = strides[0];
		f.view.strides[1] = strides[1];
	}
	for (size_t p = 0; p < f.planes.size(); p++)
		f.view.planes[p] = f.planes[p].data();
	return f;
}

// A view of `width` x `height` RGB pixels without padding.
FrameView rgb_view(const uint8_t *rgb, int width, int height)
{
	FrameView view;
	view.format = PixelFormat::RGB;
	view.width = width;
	view.height = height;
	view.planes[0] = rgb;
	view.strides[0] = width * 3;
	return view;
}

// The shapes model (tests/data) at the scenes' size, detections scoring 0.3 or more.
DetectorOptions shapes_options()
{
	DetectorOptions options;
	options.model = model_preset("tiny");
	options.model.num_classes = 4;
	options.model.min_size = 240;
	options.model.max_size = 320;
	options.model.box_score_thresh = 0.3;
	options.weights = test::env("FRCNN_TEST_DATA") + "/shapes-tiny.pth";
	return options;
}

Detector &shapes_detector()
{
	static std::unique_ptr<Detector> detector;
	if (!detector)
		detector = std::make_unique<Detector>(shapes_options());
	return *detector;
}

void expect_identical(const std::vector<std::vector<Detection>> &a, const std::vector<std::vector<Detection>> &b)
{
	ASSERT_EQ(a.size(), b.size());
	for (size_t i = 0; i < a.size(); i++) {
		ASSERT_EQ(a[i].size(), b[i].size()) << "frame " << i;
		for (size_t k = 0; k < a[i].size(); k++) {
			EXPECT_EQ(a[i][k].label, b[i][k].label);
			EXPECT_EQ(a[i][k].score, b[i][k].score);
			EXPECT_EQ(a[i][k].x1, b[i][k].x1);
			EXPECT_EQ(a[i][k].y1, b[i][k].y1);
			EXPECT_EQ(a[i][k].x2, b[i][k].x2);
			EXPECT_EQ(a[i][k].y2, b[i][k].y2);
		}
	}
}

size_t count(const std::vector<std::vector<Detection>> &detections)
{
	size_t n = 0;
	for (const auto &d : detections)
		n += d.size();
	return n;
}

} // namespace

// A frame the RPN finds nothing in (every proposal below its score threshold, as happens with
// fasterrcnn_mobilenet_v3_large_320_fpn's threshold of 0.05 on a blank frame) has no detections,
// as in torchvision, alone or in a batch with frames that have some; on every CPU path.
TEST(Detector, FramesWithoutProposalsHaveNoDetections)
{
	std::vector<TestFrame> frames;
	frames.push_back(shapes_frame(0, PixelFormat::RGB, 0));
	frames.push_back(shapes_frame(1, PixelFormat::NV12, 7));
	const std::vector<FrameView> views{frames[0].view, frames[1].view};
	std::vector<std::pair<CpuConvolutions, Precision>> paths{{CpuConvolutions::LibTorch, Precision::Fp32}};
	if (int8_unsupported_reason(model_preset("tiny")).empty()) // a build with oneDNN
		paths.insert(paths.end(), {{CpuConvolutions::OneDnn, Precision::Fp32}, {CpuConvolutions::OneDnn, Precision::Int8}});
	if (cpu_has_bf16())
		paths.push_back({CpuConvolutions::OneDnn, Precision::Bf16});
	for (auto [convolutions, precision] : paths) {
		SCOPED_TRACE("convolutions " + std::string(cpu_convolutions_name(convolutions)) + ", precision " +
			     std::to_string(static_cast<int>(precision)));
		DetectorOptions options = shapes_options();
		options.model.rpn_score_thresh = 2.0; // above every objectness probability
		options.cpu_convolutions = convolutions;
		options.precision = precision;
		options.int8_calibration_frames = 1;
		Detector detector(options);
		for (int round = 0; round < 2; round++) { // int8: calibrating, then in 8 bits
			const auto detections = detector.detect(views);
			ASSERT_EQ(detections.size(), 2u);
			EXPECT_TRUE(detections[0].empty() && detections[1].empty()) << "round " << round;
		}
	}
	// In a batch with a frame that has proposals (a threshold the first frame's objects pass,
	// the second one blank): the first frame's detections, none for the second.
	DetectorOptions options = shapes_options();
	options.model.rpn_score_thresh = 0.5;
	Detector detector(options);
	TestFrame blank = shapes_frame(2, PixelFormat::RGB, 0);
	std::fill(blank.planes[0].begin(), blank.planes[0].end(), 0);
	const auto alone = detector.detect(std::vector<FrameView>{frames[0].view}).at(0);
	ASSERT_FALSE(alone.empty());
	const auto batch = detector.detect(std::vector<FrameView>{frames[0].view, blank.view});
	expect_identical({batch.at(0)}, {alone});
	EXPECT_TRUE(batch.at(1).empty());
}

// Weights handed over already read are the caller's: the detector keeps none of them once its
// model holds them (it kept them for its lifetime, the size of the checkpoint again), and
// detects as it does from the file.
TEST(Detector, KeepsNoCheckpointItWasGiven)
{
	DetectorOptions options = shapes_options();
	options.checkpoint = std::make_shared<const Checkpoint>(read_checkpoint(options.weights));
	const std::weak_ptr<const Checkpoint> given = options.checkpoint;
	Detector detector(options);
	options.checkpoint.reset();
	EXPECT_TRUE(given.expired()) << "the detector still holds the checkpoint";
	const TestFrame frame = shapes_frame(0, PixelFormat::RGB, 0);
	const auto detections = detector.detect(std::vector<FrameView>{frame.view}).at(0);
	ASSERT_FALSE(detections.empty());
	expect_identical({detections}, {shapes_detector().detect(std::vector<FrameView>{frame.view}).at(0)});
}

// A negative thread count is refused, as set_cpu_threads refuses it (it was ignored).
TEST(Detector, NegativeThreadsAreRefused)
{
	DetectorOptions options = shapes_options();
	options.threads = -1;
	try {
		Detector detector(options);
		ADD_FAILURE() << "threads -1 was taken";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("threads must be at least 0"), std::string::npos) << e.what();
	}
}

TEST(HeldFrame, DetectsExactlyWhatTheFramesGive)
{
	Detector &detector = shapes_detector();
	std::vector<TestFrame> frames;
	frames.push_back(shapes_frame(0, PixelFormat::RGB, 0));
	frames.push_back(shapes_frame(1, PixelFormat::BGRx, 12));
	frames.push_back(shapes_frame(2, PixelFormat::NV12, 7));
	frames.push_back(shapes_frame(3, PixelFormat::RGB, 5));
	std::vector<FrameView> views;
	std::vector<HeldFrame> copies, held;
	for (const auto &f : frames) {
		views.push_back(f.view);
		copies.push_back(detector.copy_frame(f.view));
		held.push_back(detector.hold_frame(f.view, nullptr)); // `frames` outlives them
	}
	const auto from_views = detector.detect(views);
	EXPECT_GE(count(from_views), 4u) << "the shapes model should find shapes in 4 scenes";
	expect_identical(from_views, detector.detect(copies));
	expect_identical(from_views, detector.detect(held));
}

TEST(HeldFrame, CopyHoldsItsOwnBytesWithTheFrameStrides)
{
	TestFrame frame = shapes_frame(5, PixelFormat::NV12, 9);
	const HeldFrame copy = shapes_detector().copy_frame(frame.view);
	ASSERT_FALSE(copy.empty());
	const FrameView &v = copy.view();
	EXPECT_EQ(v.format, PixelFormat::NV12);
	EXPECT_EQ(v.width, frame.view.width);
	EXPECT_EQ(v.height, frame.view.height);
	const auto planes = frame_planes(frame.view);
	ASSERT_EQ(planes.size(), 2u);
	for (size_t p = 0; p < planes.size(); p++) {
		EXPECT_EQ(v.strides[p], frame.view.strides[p]);
		EXPECT_NE(v.planes[p], frame.view.planes[p]);
		EXPECT_EQ(reinterpret_cast<uintptr_t>(v.planes[p]) % 64, 0u) << "plane " << p;
		for (int64_t row = 0; row < planes[p].rows; row++)
			ASSERT_EQ(std::memcmp(v.planes[p] + row * v.strides[p], frame.view.planes[p] + row * v.strides[p],
					      planes[p].row_bytes),
				  0)
				<< "plane " << p << " row " << row;
	}
	EXPECT_EQ(v.planes[2], nullptr);

	// The frame's memory may be reused once copied: the copy still gives the frame's detections.
	const auto before = shapes_detector().detect(std::vector<FrameView>{frame.view});
	for (auto &plane : frame.planes)
		std::fill(plane.begin(), plane.end(), 0);
	expect_identical(before, shapes_detector().detect(std::vector<HeldFrame>{copy}));
	EXPECT_GT(count(before), 0u);
}

// hold_frame on the CPU copies nothing: the batch reads the frame where it lies, and the held
// frame keeps the frame's owner for as long as it, or a copy of it, lives.
TEST(HeldFrame, HoldFrameOnTheCpuReadsInPlaceAndKeepsTheOwner)
{
	Detector &detector = shapes_detector();
	auto frame = std::make_shared<TestFrame>(shapes_frame(6, PixelFormat::NV12, 5));
	const std::weak_ptr<TestFrame> watch = frame;
	const FrameView view = frame->view;
	const auto expected = detector.detect(std::vector<FrameView>{view});
	HeldFrame held = detector.hold_frame(view, frame);
	frame.reset();
	ASSERT_FALSE(watch.expired()) << "a held frame must keep its owner";
	ASSERT_FALSE(held.empty());
	EXPECT_EQ(held.view().format, view.format);
	EXPECT_EQ(held.view().width, view.width);
	EXPECT_EQ(held.view().height, view.height);
	for (int p = 0; p < 3; p++) {
		EXPECT_EQ(held.view().planes[p], view.planes[p]) << "plane " << p << " was copied";
		EXPECT_EQ(held.view().strides[p], view.strides[p]);
	}

	HeldFrame copy = held;
	held = HeldFrame();
	EXPECT_FALSE(watch.expired()) << "a copy of a held frame must keep the owner too";
	expect_identical(expected, detector.detect(std::vector<HeldFrame>{copy}));
	EXPECT_GT(count(expected), 0u);
	copy = HeldFrame();
	EXPECT_TRUE(watch.expired()) << "the owner must go with the last held frame";
}

// What the element does: frames are copied on one thread while a batch runs on another.
TEST(HeldFrame, CopiedOnAnotherThreadWhileABatchRuns)
{
	Detector &detector = shapes_detector();
	std::vector<TestFrame> frames;
	std::vector<FrameView> views;
	for (uint64_t i = 0; i < 8; i++) {
		frames.push_back(shapes_frame(10 + i, i % 2 ? PixelFormat::NV12 : PixelFormat::RGB, 3));
		views.push_back(frames.back().view);
	}
	const auto expected = detector.detect(views);
	std::vector<HeldFrame> copies;
	std::thread copier([&] {
		for (const auto &v : views)
			copies.push_back(detector.copy_frame(v));
	});
	std::vector<std::vector<Detection>> during;
	for (int round = 0; round < 2; round++)
		during = detector.detect(views);
	copier.join();
	expect_identical(expected, during);
	expect_identical(expected, detector.detect(copies));
	EXPECT_GT(count(expected), 0u);
}

// crop_frame of a held frame (what frcnndetect does with each region of interest of a frame it
// held once): the same bytes, the rectangle's planes inside them, and the detections of the
// rectangle cut from the frame itself; the bytes stay as long as any crop of them.
TEST(HeldFrame, CropsOfAHeldFrameDetectAsCropsOfTheFrame)
{
	Detector &detector = shapes_detector();
	struct Rect {
		int x, y, width, height;
	};
	const std::vector<Rect> rects{{0, 0, 320, 240}, {0, 0, 160, 120}, {100, 40, 180, 180}, {158, 62, 162, 178}};
	for (PixelFormat format : {PixelFormat::NV12, PixelFormat::BGRx, PixelFormat::RGB}) {
		const TestFrame frame = shapes_frame(3, format, 6);
		std::vector<FrameView> cut;
		std::vector<HeldFrame> from_copy, from_held;
		HeldFrame copy = detector.copy_frame(frame.view);
		const HeldFrame held = detector.hold_frame(frame.view, nullptr); // `frame` outlives it
		for (const Rect &r : rects) {
			cut.push_back(crop_frame(frame.view, r.x, r.y, r.width, r.height));
			from_copy.push_back(crop_frame(copy, r.x, r.y, r.width, r.height));
			from_held.push_back(crop_frame(held, r.x, r.y, r.width, r.height));
			// A view into the same memory, moved as the frame's view moves.
			const FrameView expected = crop_frame(copy.view(), r.x, r.y, r.width, r.height);
			for (int p = 0; p < 3; p++) {
				EXPECT_EQ(from_copy.back().view().planes[p], expected.planes[p]) << "plane " << p;
				EXPECT_EQ(from_copy.back().view().strides[p], expected.strides[p]) << "plane " << p;
				EXPECT_EQ(from_held.back().view().planes[p], cut.back().planes[p]) << "plane " << p;
			}
			EXPECT_EQ(from_copy.back().view().width, r.width);
			EXPECT_EQ(from_copy.back().view().height, r.height);
		}
		// A crop of a crop: (58, 22) inside (100, 40) is the last rectangle.
		const HeldFrame nested = crop_frame(crop_frame(copy, 100, 40, 220, 200), 58, 22, 162, 178);
		EXPECT_EQ(nested.view().planes[0], from_copy.back().view().planes[0]);

		copy = HeldFrame(); // the crops keep the copied bytes
		const auto expected = detector.detect(cut);
		EXPECT_GT(count(expected), 0u);
		expect_identical(expected, detector.detect(from_copy));
		expect_identical(expected, detector.detect(from_held));
	}
}

TEST(HeldFrame, BadFramesAndEmptyHeldFramesAreClearErrors)
{
	Detector &detector = shapes_detector();
	TestFrame frame = shapes_frame(0, PixelFormat::NV12, 0);
	auto expect_error = [](const std::function<void()> &run, const std::string &needle) {
		try {
			run();
			ADD_FAILURE() << "no error; expected one saying '" << needle << "'";
		} catch (const Error &e) {
			EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
		}
	};
	FrameView missing = frame.view;
	missing.planes[1] = nullptr;
	expect_error([&] { detector.copy_frame(missing); }, "frame plane 1 is missing");
	FrameView narrow = frame.view;
	narrow.strides[0] = narrow.width - 1;
	expect_error([&] { detector.copy_frame(narrow); }, "less than its row");
	FrameView empty_size = frame.view;
	empty_size.height = 0;
	expect_error([&] { detector.copy_frame(empty_size); }, "frame size must be positive");
	expect_error([&] { detector.detect(std::vector<HeldFrame>{HeldFrame()}); }, "empty HeldFrame");
	// hold_frame checks the view when it is called, not in the batch, and lets the owner go.
	auto owner = std::make_shared<int>(0);
	const std::weak_ptr<int> watch = owner;
	expect_error([&] { detector.hold_frame(missing, std::move(owner)); }, "frame plane 1 is missing");
	EXPECT_TRUE(watch.expired()) << "a frame that could not be held must not keep its owner";
	expect_error([&] { detector.hold_frame(narrow, nullptr); }, "less than its row");
	EXPECT_TRUE(detector.detect(std::vector<HeldFrame>{}).empty());
	// Crops of held frames: as crop_frame of a view, and not of an empty HeldFrame.
	const HeldFrame copy = detector.copy_frame(frame.view);
	expect_error([&] { crop_frame(HeldFrame(), 0, 0, 2, 2); }, "empty HeldFrame");
	expect_error([&] { crop_frame(copy, 1, 0, 2, 2); }, "must start at even coordinates");
	expect_error([&] { crop_frame(copy, 300, 0, 40, 2); }, "does not lie inside the 320x240 frame");
	expect_error([&] { crop_frame(copy, 0, 0, 0, 2); }, "does not lie inside");
}

// The layout the CUDA path moves a batch's frames to the device by (plan_frame_upload), emulated
// in host memory: frames to gather, frames copied into a pinned block and frames already on the
// device, mixed in one batch, must each be found byte for byte where the kernels will read them.
TEST(FrameUpload, EveryPlaneIsReadWhereItWasPut)
{
	using Source = frcnn::detail::FrameUploadPlan::Source;
	std::vector<TestFrame> frames;
	frames.push_back(shapes_frame(0, PixelFormat::NV12, 7));
	frames.push_back(shapes_frame(1, PixelFormat::BGRx, 12));
	frames.push_back(shapes_frame(2, PixelFormat::RGB, 0));
	frames.push_back(shapes_frame(3, PixelFormat::NV12, 3));
	frames.push_back(shapes_frame(4, PixelFormat::RGB, 5));
	// The other plane layouts: 4:2:2 planar (chroma of full height), packed, V before U, 10 bits.
	std::mt19937 rng(14);
	for (PixelFormat format : {PixelFormat::Y42B, PixelFormat::YUY2, PixelFormat::YV12, PixelFormat::P010_10LE}) {
		TestFrame frame;
		frame.view = test::random_frame(format, 97, 61, rng, frame.planes);
		frames.push_back(std::move(frame));
	}
	const std::vector<Source> sources{Source::Gathered, Source::PinnedBlock, Source::OnDevice, Source::PinnedBlock,
					  Source::Gathered, Source::PinnedBlock, Source::Gathered, Source::OnDevice,
					  Source::Gathered};
	std::vector<FrameView> views;
	std::vector<frcnn::detail::FrameMemory> memory(frames.size());
	for (size_t i = 0; i < frames.size(); i++) {
		FrameView view = frames[i].view;
		if (sources[i] != Source::Gathered) {
			memory[i] = frcnn::detail::copy_frame_memory(frames[i].view, torch::kCPU, &view);
			// Another buffer stands in for the device's copy.
			if (sources[i] == Source::OnDevice)
				memory[i].device = memory[i].host.clone();
		}
		views.push_back(view);
	}
	const auto plan = frcnn::detail::plan_frame_upload(views, memory);
	ASSERT_EQ(plan.frames.size(), frames.size());

	// What the CUDA path does: gather into the staging buffer, copy it to the start of the device
	// buffer, copy each pinned block to its place; frames on the device stay where they are.
	std::vector<uint8_t> staging(plan.gathered, 0xaa), device(plan.total, 0xaa);
	std::vector<std::pair<int64_t, int64_t>> regions; // [begin, end) in the device buffer
	for (size_t i = 0; i < frames.size(); i++) {
		const auto &placed = plan.frames[i];
		ASSERT_EQ(placed.source, sources[i]) << "frame " << i;
		ASSERT_EQ(placed.planes.size(), frame_planes(views[i]).size());
		if (placed.source == Source::Gathered) {
			for (const auto &plane : placed.planes) {
				const int64_t at = placed.block_offset + plane.offset;
				ASSERT_TRUE(at >= 0 && at + plane.bytes <= plan.gathered) << "frame " << i;
				EXPECT_EQ(at % 256, 0) << "frame " << i;
				std::memcpy(staging.data() + at, plane.source, plane.bytes);
				regions.push_back({at, at + plane.bytes});
			}
		} else if (placed.source == Source::PinnedBlock) {
			const int64_t size = memory[i].host.numel();
			ASSERT_TRUE(placed.block_offset >= plan.gathered && placed.block_offset + size <= plan.total);
			EXPECT_EQ(placed.block_offset % 256, 0) << "frame " << i;
			regions.push_back({placed.block_offset, placed.block_offset + size});
		}
	}
	std::sort(regions.begin(), regions.end());
	for (size_t r = 1; r < regions.size(); r++)
		EXPECT_LE(regions[r - 1].second, regions[r].first) << "regions of the device buffer overlap";
	std::memcpy(device.data(), staging.data(), staging.size());
	for (size_t i = 0; i < frames.size(); i++)
		if (plan.frames[i].source == Source::PinnedBlock)
			std::memcpy(device.data() + plan.frames[i].block_offset, memory[i].host.data_ptr(),
				    memory[i].host.numel());

	for (size_t i = 0; i < frames.size(); i++) {
		const auto &placed = plan.frames[i];
		const uint8_t *base = placed.source == Source::OnDevice
					      ? static_cast<const uint8_t *>(memory[i].device.data_ptr())
					      : device.data() + placed.block_offset;
		const auto extents = frame_planes(frames[i].view);
		for (size_t p = 0; p < extents.size(); p++) {
			EXPECT_EQ(placed.planes[p].stride, frames[i].view.strides[p]);
			for (int64_t row = 0; row < extents[p].rows; row++) {
				const uint8_t *read = base + placed.planes[p].offset + row * placed.planes[p].stride;
				const uint8_t *original = frames[i].view.planes[p] + row * frames[i].view.strides[p];
				ASSERT_EQ(std::memcmp(read, original, extents[p].row_bytes), 0)
					<< "frame " << i << " plane " << p << " row " << row;
			}
		}
	}

	// A view that does not point into the memory given for its frame is refused.
	std::vector<FrameView> strays = views;
	strays[1] = frames[1].view;
	try {
		frcnn::detail::plan_frame_upload(strays, memory);
		ADD_FAILURE() << "a plane outside its frame's memory was accepted";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("lies outside the frame's memory"), std::string::npos) << e.what();
	}
}

// Rectangles cut from frames copied ahead (crop_frame of a HeldFrame), in a pinned block or on the
// device: the plan reads each rectangle's planes at their offsets inside the frame's memory, and
// many rectangles of one frame share that memory without another copy.
TEST(FrameUpload, RectanglesOfACopiedFrameAreReadInsideItsMemory)
{
	using Source = frcnn::detail::FrameUploadPlan::Source;
	for (Source source : {Source::PinnedBlock, Source::OnDevice}) {
		for (PixelFormat format : {PixelFormat::NV12, PixelFormat::BGRx, PixelFormat::YUY2, PixelFormat::Y42B}) {
			TestFrame frame;
			if (format == PixelFormat::NV12 || format == PixelFormat::BGRx) {
				frame = shapes_frame(2, format, 10);
			} else {
				std::mt19937 rng(15);
				frame.view = test::random_frame(format, 320, 240, rng, frame.planes);
			}
			FrameView copied;
			auto memory = frcnn::detail::copy_frame_memory(frame.view, torch::kCPU, &copied);
			if (source == Source::OnDevice)
				memory.device = memory.host.clone(); // stands in for the device's copy
			const std::vector<std::array<int, 4>> rects{{0, 0, 320, 240}, {42, 18, 100, 60}, {200, 100, 120, 140}};
			std::vector<FrameView> views, originals;
			for (const auto &r : rects) {
				views.push_back(crop_frame(copied, r[0], r[1], r[2], r[3]));
				originals.push_back(crop_frame(frame.view, r[0], r[1], r[2], r[3]));
			}
			const auto plan = frcnn::detail::plan_frame_upload(
				views, std::vector<frcnn::detail::FrameMemory>(views.size(), memory));
			ASSERT_EQ(plan.gathered, 0) << "nothing of a copied frame is gathered again";
			std::vector<uint8_t> device(plan.total, 0xaa);
			for (const auto &placed : plan.frames) {
				ASSERT_EQ(placed.source, source);
				if (source == Source::PinnedBlock)
					std::memcpy(device.data() + placed.block_offset, memory.host.data_ptr(),
						    memory.host.numel());
			}
			for (size_t i = 0; i < views.size(); i++) {
				const auto &placed = plan.frames[i];
				const uint8_t *base = source == Source::OnDevice
							      ? static_cast<const uint8_t *>(memory.device.data_ptr())
							      : device.data() + placed.block_offset;
				const auto extents = frame_planes(originals[i]);
				ASSERT_EQ(placed.planes.size(), extents.size());
				for (size_t p = 0; p < extents.size(); p++)
					for (int64_t row = 0; row < extents[p].rows; row++)
						ASSERT_EQ(std::memcmp(base + placed.planes[p].offset + row * placed.planes[p].stride,
								      originals[i].planes[p] + row * originals[i].strides[p],
								      extents[p].row_bytes),
							  0)
							<< "rectangle " << i << " plane " << p << " row " << row;
			}
		}
	}
}

// frcnn::set_cpu_threads sets the calling thread's count and leaves another thread's alone (the
// element sets it on its streaming thread, each element its own); setting the count a thread
// already has starts nothing (the element sets it before every batch, and a new count rebuilds
// LibTorch's thread pool); a count below 1 is an error.
TEST(CpuThreads, BelongToTheCallingThread)
{
	EXPECT_THROW(frcnn::set_cpu_threads(0), frcnn::Error);

	std::promise<void> first_set, second_set;
	int first_after = 0, second_after = 0;
	std::vector<std::string> started;
	std::thread first([&] {
		frcnn::set_cpu_threads(3);
		first_set.set_value();
		second_set.get_future().wait();
		first_after = frcnn::cpu_threads();
		const auto before = frcnn::test::process_threads();
		for (int i = 0; i < 3; i++)
			frcnn::set_cpu_threads(3);
		for (const auto &id : frcnn::test::process_threads())
			if (!before.count(id))
				started.push_back(id);
	});
	std::thread second([&] {
		frcnn::cpu_threads(); // this thread has its count before the first sets another
		first_set.get_future().wait();
		frcnn::set_cpu_threads(1);
		second_after = frcnn::cpu_threads();
		second_set.set_value();
	});
	second.join();
	first.join();
	EXPECT_EQ(first_after, 3) << "another thread's count does not change this one's";
	EXPECT_EQ(second_after, 1);
	EXPECT_TRUE(started.empty()) << started.size() << " threads started by setting the same count";
}

// The CPU pre-processing in one pass per frame gives the bits of the LibTorch path it replaces
// (frame_to_tensor, then transform_images: normalise, interpolate, pad), for every pixel format,
// frames scaled up, down and not at all, odd sizes and padded rows, in one batch of two sizes.
TEST(CpuPreprocessing, EveryFormatGivesTheBitsOfTheLibTorchPath)
{
	const ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	std::mt19937 rng(6);
	for (auto format : test::all_pixel_formats()) {
		int size_index = 0;
		for (auto size : {std::pair<int, int>{641, 479}, {1920, 1080}, {1333, 800}, {37, 23}}) {
			SCOPED_TRACE("format " + std::to_string((int)format) + ", " + std::to_string(size.first) +
				     "x" + std::to_string(size.second));
			std::vector<std::vector<uint8_t>> a, b;
			std::vector<FrameView> frames{test::random_frame(format, size.first, size.second, rng, a),
						      test::random_frame(format, 320, 241, rng, b)};
			// Every matrix and range, for the YUV formats; SDR, PQ and HLG, and every set of
			// primaries, for all (HLG and PQ with BT.2020's among them).
			frames[1].matrix = static_cast<YuvMatrix>(size.first % 3);
			frames[1].full_range = size.second % 2 == 0;
			frames[1].transfer = static_cast<TransferFunction>(size.first % 3);
			frames[1].primaries = static_cast<ColourPrimaries>(++size_index % 3);
			const auto fused = frcnn::detail::transform_frames_cpu(config, frames);
			std::vector<torch::Tensor> images;
			for (const auto &f : frames)
				images.push_back(frame_to_tensor(f));
			const auto reference = frcnn::detail::transform_images(config, images, nullptr);
			ASSERT_EQ(fused.batch.sizes(), reference.batch.sizes());
			EXPECT_EQ(fused.image_sizes, reference.image_sizes);
			EXPECT_EQ(fused.original_sizes, reference.original_sizes);
			const auto differ = fused.batch.ne(reference.batch);
			EXPECT_EQ(differ.sum().item<int64_t>(), 0)
				<< "largest difference " << (fused.batch - reference.batch).abs().max().item<float>();
		}
	}
	// What Detector::detect runs on the CPU.
	std::vector<std::vector<uint8_t>> storage;
	const FrameView frame = test::random_frame(PixelFormat::I420, 720, 528, rng, storage);
	const auto batch = frcnn::detail::transform_frames(config, {frame}, torch::kCPU, torch::kFloat, false);
	EXPECT_TRUE(torch::equal(batch.batch, frcnn::detail::transform_frames_cpu(config, {frame}).batch));
	EXPECT_THROW(frcnn::detail::transform_frames_cpu(config, {}), Error);
	FrameView bad = frame;
	bad.planes[2] = nullptr;
	EXPECT_THROW(frcnn::detail::transform_frames_cpu(config, {bad}), Error);
}

// The pixels a shrinking resize reads (samples_read_by_resize) cover what LibTorch's bilinear
// resize reads: with every other sample NaN, no output is NaN, along either axis, for sizes
// shrunk by any factor and enlarged; shrunk to less than a third, samples are skipped.
TEST(CpuPreprocessing, TheResizeReadsOnlyTheSamplesFlagged)
{
	std::mt19937 rng(36);
	std::vector<std::pair<int64_t, int64_t>> sizes{{1080, 320}, {1920, 569}, {1080, 800}, {2160, 800}, {1333, 800},
						       {3, 1},	     {1, 5},	  {7, 3},     {480, 320},  {4000, 1333}};
	for (int i = 0; i < 300; i++) {
		const int64_t in = std::uniform_int_distribution<int64_t>(1, 3000)(rng);
		sizes.emplace_back(in, std::uniform_int_distribution<int64_t>(1, 2 * in)(rng));
	}
	for (auto [in, out] : sizes) {
		SCOPED_TRACE(std::to_string(in) + " to " + std::to_string(out));
		const std::vector<uint8_t> read = frcnn::detail::samples_read_by_resize(in, out);
		ASSERT_EQ(read.size(), static_cast<size_t>(in));
		auto line = torch::ones({in});
		for (int64_t i = 0; i < in; i++)
			if (!read[i])
				line[i] = std::numeric_limits<float>::quiet_NaN();
		const auto rows = line.view({1, 1, in, 1}).expand({1, 1, in, 3}).contiguous();
		const auto columns = line.view({1, 1, 1, in}).expand({1, 1, 3, in}).contiguous();
		EXPECT_FALSE(at::upsample_bilinear2d(rows, {out, 3}, false).isnan().any().item<bool>());
		EXPECT_FALSE(at::upsample_bilinear2d(columns, {3, out}, false).isnan().any().item<bool>());
		if (3 * out < in) {
			EXPECT_LT(std::count(read.begin(), read.end(), 1), in);
		}
	}
}

// Frames shrunk by more than half (a small min_size), whose conversion skips the pixels the
// resize does not read, give the bits of the LibTorch path, of every format, colorimetry and
// pixel shape; their buffers filled with NaN first, so that a pixel read but not converted
// shows.
TEST(CpuPreprocessing, ShrunkFramesGiveTheBitsOfTheLibTorchPath)
{
	ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	config.min_size = 150;
	config.max_size = 400;
	std::mt19937 rng(37);
	int round = 0;
	for (auto format : test::all_pixel_formats()) {
		for (auto size : {std::pair<int, int>{1920, 1080}, {641, 479}, {37, 23}}) {
			SCOPED_TRACE("format " + std::to_string((int)format) + ", " + std::to_string(size.first) + "x" +
				     std::to_string(size.second));
			std::vector<std::vector<uint8_t>> storage;
			FrameView frame = test::random_frame(format, size.first, size.second, rng, storage);
			frame.matrix = static_cast<YuvMatrix>(round % 3);
			frame.transfer = static_cast<TransferFunction>(round / 3 % 3);
			frame.primaries = static_cast<ColourPrimaries>(round / 9 % 3);
			if (round++ % 2 == 1)
				frame.pixel_aspect_ratio = {64, 45};
			frcnn::detail::TransformBuffers buffers;
			buffers.normalised.push_back(
				torch::full({3, size.second, size.first}, std::numeric_limits<float>::quiet_NaN()));
			const auto fused = frcnn::detail::transform_frames_cpu(config, {frame}, &buffers);
			const std::vector<PixelAspectRatio> ratios{frame.pixel_aspect_ratio};
			const auto reference =
				frcnn::detail::transform_images(config, {frame_to_tensor(frame)}, nullptr, &ratios);
			ASSERT_EQ(fused.batch.sizes(), reference.batch.sizes());
			EXPECT_EQ(fused.image_sizes, reference.image_sizes);
			EXPECT_TRUE(torch::equal(fused.batch, reference.batch))
				<< "largest difference " << (fused.batch - reference.batch).abs().max().item<float>();
			if (size.first == 1920) {
				EXPECT_TRUE(buffers.normalised[0].isnan().any().item<bool>()) << "no pixel skipped";
			}
		}
	}
}

// The same for interlaced 4:2:0 frames, whose rows take their own field's chroma.
TEST(CpuPreprocessing, InterlacedFramesGiveTheBitsOfTheLibTorchPath)
{
	const ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	std::mt19937 rng(26);
	for (PixelFormat format : {PixelFormat::NV12, PixelFormat::NV21, PixelFormat::I420, PixelFormat::YV12,
				   PixelFormat::P010_10LE, PixelFormat::I420_10LE, PixelFormat::P012_LE,
				   PixelFormat::I420_12LE})
		for (auto size : {std::pair<int, int>{720, 486}, {1920, 1080}, {37, 22}}) {
			SCOPED_TRACE("format " + std::to_string((int)format) + ", " + std::to_string(size.first) +
				     "x" + std::to_string(size.second));
			std::vector<std::vector<uint8_t>> storage;
			const FrameView frame = test::random_frame(format, size.first, size.second, rng, storage, true);
			const auto fused = frcnn::detail::transform_frames_cpu(config, {frame});
			const auto reference = frcnn::detail::transform_images(config, {frame_to_tensor(frame)}, nullptr);
			ASSERT_EQ(fused.batch.sizes(), reference.batch.sizes());
			EXPECT_TRUE(torch::equal(fused.batch, reference.batch))
				<< "largest difference " << (fused.batch - reference.batch).abs().max().item<float>();
			FrameView progressive = frame;
			progressive.interlaced = false;
			EXPECT_FALSE(torch::equal(fused.batch, frcnn::detail::transform_frames_cpu(config, {progressive}).batch));
		}
}

// The pre-processing's buffers: a batch is written into memory of the model's only when nothing
// else holds it, and gives the same bits as without buffers, whatever the sizes that came before.
TEST(CpuPreprocessing, BuffersAreReusedOnlyWhenFree)
{
	const ModelConfig config = model_preset("tiny");
	std::mt19937 rng(8);
	std::vector<std::vector<uint8_t>> a, b, c;
	const FrameView first = test::random_frame(PixelFormat::I420, 720, 528, rng, a);
	const FrameView second = test::random_frame(PixelFormat::BGRx, 720, 528, rng, b);
	const FrameView other_size = test::random_frame(PixelFormat::NV12, 333, 250, rng, c);
	auto plain = [&](const FrameView &f) { return frcnn::detail::transform_frames_cpu(config, {f}).batch; };
	frcnn::detail::TransformBuffers buffers;
	auto buffered = [&](const FrameView &f) {
		return frcnn::detail::transform_frames_cpu(config, {f}, &buffers).batch;
	};

	torch::Tensor held = buffered(first);
	EXPECT_TRUE(torch::equal(held, plain(first)));
	const torch::Tensor held_copy = held.clone();
	torch::Tensor next = buffered(second);
	EXPECT_NE(next.data_ptr(), held.data_ptr()) << "a batch still held is not written again";
	EXPECT_TRUE(torch::equal(held, held_copy));
	EXPECT_TRUE(torch::equal(next, plain(second)));

	const void *memory = next.data_ptr();
	held = torch::Tensor();
	next = torch::Tensor();
	const torch::Tensor again = buffered(first);
	EXPECT_EQ(again.data_ptr(), memory) << "a batch let go is written again";
	EXPECT_TRUE(torch::equal(again, held_copy));
	EXPECT_TRUE(torch::equal(buffered(other_size), plain(other_size)));
	EXPECT_TRUE(torch::equal(buffered(second), plain(second)));
}

namespace {

// The rectangle of `frame` copied into planes of its own (tightly packed), as a frame of its own.
TestFrame copy_rectangle(const FrameView &frame, int x, int y, int width, int height)
{
	TestFrame copy;
	copy.view.format = frame.format;
	copy.view.width = width;
	copy.view.height = height;
	const int bpp = packed_bytes_per_pixel(frame.format);
	struct Part {
		int x_bytes, rows_from, rows, row_bytes;
	};
	std::vector<Part> parts;
	if (bpp > 0) {
		parts.push_back({x * bpp, y, height, width * bpp});
	} else {
		// The rectangle's samples, where the format's layout puts them.
		const YuvLayout layout = yuv_layout(frame.format);
		const auto planes = frame_planes(crop_frame(frame, x, y, width, height));
		// v210: 16 bytes for each 6 pixels; Y410: a 4-byte word for each.
		const int x_bytes = frame.format == PixelFormat::v210	? x / 6 * 16
				    : frame.format == PixelFormat::Y410 ? x * 4
									: x * layout.luma_step;
		parts.push_back({x_bytes, y, height, static_cast<int>(planes[0].row_bytes)});
		for (size_t p = 1; p < planes.size(); p++)
			parts.push_back({(x >> layout.x_shift) * layout.chroma_step, y >> layout.y_shift,
					 static_cast<int>(planes[p].rows), static_cast<int>(planes[p].row_bytes)});
	}
	for (size_t p = 0; p < parts.size(); p++) {
		const Part &part = parts[p];
		copy.planes.emplace_back((size_t)part.rows * part.row_bytes);
		for (int row = 0; row < part.rows; row++)
			std::memcpy(&copy.planes[p][(size_t)row * part.row_bytes],
				    frame.planes[p] + (size_t)(part.rows_from + row) * frame.strides[p] + part.x_bytes,
				    part.row_bytes);
		copy.view.strides[p] = part.row_bytes;
	}
	for (size_t p = 0; p < copy.planes.size(); p++)
		copy.view.planes[p] = copy.planes[p].data();
	return copy;
}

} // namespace

// A cropped view reads the rectangle's own pixels: in every format, the same tensor as a copy
// of the rectangle, and the detector finds the same in both.
TEST(CropFrame, ViewsTheRectangleWithoutCopying)
{
	std::mt19937 rng(11);
	for (PixelFormat format : test::all_pixel_formats()) {
		SCOPED_TRACE("format " + std::to_string((int)format));
		std::vector<std::vector<uint8_t>> storage;
		const FrameView frame = test::random_frame(format, 99, 71, rng, storage);
		const bool odd_y = !chroma_needs_even_y(format);
		const int column_step = format == PixelFormat::v210 ? 6 : packed_bytes_per_pixel(format) > 0 ? 1
			: yuv_layout(format).x_shift > 0 ? 2 : 1;
		EXPECT_EQ(rectangle_column_step(format), column_step);
		auto on_grid = [column_step](int x) { return x - x % column_step; };
		for (auto [x, y, w, h] : {std::array<int, 4>{0, 0, 99, 71}, {on_grid(10), 4, 33, 21}, {on_grid(64), 40, 35, 31},
					  {column_step == 1 ? 9 : on_grid(8), odd_y ? 5 : 6, 31, 20}}) {
			SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h) + " at " + std::to_string(x) +
				     "," + std::to_string(y));
			const FrameView crop = crop_frame(frame, x, y, w, h);
			EXPECT_EQ(crop.width, w);
			EXPECT_EQ(crop.height, h);
			const TestFrame copy = copy_rectangle(frame, x, y, w, h);
			EXPECT_TRUE(torch::equal(frame_to_tensor(crop), frame_to_tensor(copy.view)));
		}
	}

	const TestFrame scene = shapes_frame(3, PixelFormat::NV12, 5);
	const FrameView crop = crop_frame(scene.view, 100, 60, 180, 150);
	const TestFrame copy = copy_rectangle(scene.view, 100, 60, 180, 150);
	const auto in_place = shapes_detector().detect(std::vector<FrameView>{crop});
	expect_identical(in_place, shapes_detector().detect(std::vector<FrameView>{copy.view}));
	EXPECT_GT(count(in_place), 0u);
}

TEST(CropFrame, RectanglesOutsideTheFrameOrOffTheChromaGridAreErrors)
{
	std::mt19937 rng(12);
	std::vector<std::vector<uint8_t>> storage;
	const FrameView rgb = test::random_frame(PixelFormat::RGB, 64, 48, rng, storage);
	EXPECT_THROW(crop_frame(rgb, 0, 0, 0, 10), Error);
	EXPECT_THROW(crop_frame(rgb, -1, 0, 10, 10), Error);
	EXPECT_THROW(crop_frame(rgb, 60, 0, 5, 10), Error);
	EXPECT_THROW(crop_frame(rgb, 0, 40, 10, 9), Error);
	EXPECT_NO_THROW(crop_frame(rgb, 63, 47, 1, 1));
	EXPECT_NO_THROW(crop_frame(rgb, 1, 1, 10, 10));
	try {
		crop_frame(rgb, 60, 0, 5, 10);
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("5x10 at 60,0 does not lie inside the 64x48 frame"),
			  std::string::npos) << e.what();
	}
	std::vector<std::vector<uint8_t>> yuv_storage;
	const FrameView i420 = test::random_frame(PixelFormat::I420, 64, 48, rng, yuv_storage);
	EXPECT_THROW(crop_frame(i420, 1, 0, 10, 10), Error);
	EXPECT_THROW(crop_frame(i420, 0, 3, 10, 10), Error);
	EXPECT_NO_THROW(crop_frame(i420, 2, 4, 11, 13));
	// 4:2:2: a chroma sample covers two pixels of a row.
	for (PixelFormat format : {PixelFormat::YUY2, PixelFormat::Y42B}) {
		std::vector<std::vector<uint8_t>> storage_422;
		const FrameView frame = test::random_frame(format, 64, 48, rng, storage_422);
		EXPECT_THROW(crop_frame(frame, 1, 0, 10, 10), Error);
		EXPECT_NO_THROW(crop_frame(frame, 2, 3, 11, 13));
		try {
			crop_frame(frame, 3, 2, 10, 10);
			ADD_FAILURE() << "an odd x was taken";
		} catch (const Error &e) {
			EXPECT_NE(std::string(e.what()).find("of a 4:2:2 frame must start at an even x"),
				  std::string::npos) << e.what();
		}
	}
	// v210: 6 pixels' samples share 4 words.
	std::vector<std::vector<uint8_t>> storage_v210;
	const FrameView v210 = test::random_frame(PixelFormat::v210, 64, 48, rng, storage_v210);
	EXPECT_NO_THROW(crop_frame(v210, 12, 3, 11, 13));
	for (int x : {2, 4, 9, 10}) {
		try {
			crop_frame(v210, x, 0, 10, 10);
			ADD_FAILURE() << "x = " << x << " was taken";
		} catch (const Error &e) {
			EXPECT_NE(std::string(e.what()).find("of a v210 frame must start at an x that is a multiple of 6"),
				  std::string::npos) << e.what();
		}
	}
	std::vector<std::vector<uint8_t>> storage_444;
	const FrameView y444 = test::random_frame(PixelFormat::Y444, 64, 48, rng, storage_444);
	EXPECT_NO_THROW(crop_frame(y444, 1, 3, 11, 13));
	// Interlaced 4:2:0: a rectangle starts on a chroma row of the top field, so that its rows
	// keep their fields' chroma.
	std::vector<std::vector<uint8_t>> interlaced_storage;
	const FrameView interlaced = test::random_frame(PixelFormat::NV12, 64, 48, rng, interlaced_storage, true);
	EXPECT_NO_THROW(crop_frame(interlaced, 2, 4, 11, 13));
	try {
		crop_frame(interlaced, 2, 2, 10, 10);
		ADD_FAILURE() << "y = 2 was taken";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("of a 4:2:0 interlaced frame must start at an even x and a y "
						     "that is a multiple of 4"),
			  std::string::npos) << e.what();
	}
	std::vector<std::vector<uint8_t>> interlaced_422_storage;
	const FrameView interlaced_422 =
		test::random_frame(PixelFormat::YUY2, 64, 48, rng, interlaced_422_storage, true);
	EXPECT_NO_THROW(crop_frame(interlaced_422, 2, 3, 11, 13)) << "4:2:2 has chroma in every row";
}

namespace {

// A sample value of component 0 (Y), 1 (U) or 2 (V) for pixel (y, x): 0..255, or 0..1023 in a
// 10-bit format, 0..4095 in a 12-bit one.
using SampleAt = std::function<int(int component, int y, int x)>;

// A frame of `format` whose samples come from `sample`: each chroma sample takes the value of
// the top-left pixel it covers. The bytes are placed as the format's definition says (GStreamer's
// and the FOURCCs'), spelled out here on their own rather than read from the library's layouts,
// so that the test checks those. Rows are padded. The 10-, 12- and 16-bit formats but v210 and
// Y410 are their 8-bit namesakes (Y412_LE: AYUV's samples in the order U Y V A) with a
// little-endian 16-bit word for each byte, the sample in its top bits (P010, P012, Y210, Y212,
// Y412) or its low bits (the others); the word's other bits are set to a pattern that must not be
// read.
TestFrame yuv_frame(PixelFormat format, int width, int height, const SampleAt &sample,
		    int chroma_rows = 0)
{
	TestFrame f;
	f.view.format = format;
	f.view.width = width;
	f.view.height = height;
	struct Wide {
		PixelFormat format, namesake;
		int top_shift; // of the sample in its word, when it holds it in its top bits
		int junk;      // the word's bits outside the sample
	};
	int sample_bytes = 1, top_shift = 0, junk = 0;
	for (const Wide &wide : {Wide{PixelFormat::P010_10LE, PixelFormat::NV12, 6, 0x2b},
				 Wide{PixelFormat::I420_10LE, PixelFormat::I420, 0, 0xa400},
				 Wide{PixelFormat::I422_10LE, PixelFormat::Y42B, 0, 0xa400},
				 Wide{PixelFormat::Y444_10LE, PixelFormat::Y444, 0, 0xa400},
				 Wide{PixelFormat::P012_LE, PixelFormat::NV12, 4, 0xb},
				 Wide{PixelFormat::I420_12LE, PixelFormat::I420, 0, 0xa000},
				 Wide{PixelFormat::I422_12LE, PixelFormat::Y42B, 0, 0xa000},
				 Wide{PixelFormat::Y444_12LE, PixelFormat::Y444, 0, 0xa000},
				 Wide{PixelFormat::Y210, PixelFormat::YUY2, 6, 0x2b},
				 Wide{PixelFormat::Y212_LE, PixelFormat::YUY2, 4, 0xb},
				 Wide{PixelFormat::P016_LE, PixelFormat::NV12, 0, 0},
				 Wide{PixelFormat::Y444_16LE, PixelFormat::Y444, 0, 0},
				 Wide{PixelFormat::Y412_LE, PixelFormat::Y412_LE, 4, 0xb}})
		if (format == wide.format) {
			format = wide.namesake;
			sample_bytes = 2;
			top_shift = wide.top_shift;
			junk = wide.junk;
		}
	const bool full_chroma = format == PixelFormat::Y444 || format == PixelFormat::NV24;
	const bool chroma_420 = format == PixelFormat::NV12 || format == PixelFormat::NV21 ||
				format == PixelFormat::I420 || format == PixelFormat::YV12;
	const int xs = full_chroma ? 0 : 1, ys = chroma_420 ? 1 : 0;
	const int cw = (width + (1 << xs) - 1) >> xs;
	const int ch = chroma_rows > 0 ? chroma_rows : (height + (1 << ys) - 1) >> ys;
	// Sizes and places in samples.
	auto add_plane = [&f, sample_bytes](int rows, int row_samples) {
		const int stride = (row_samples + 7) * sample_bytes;
		f.planes.emplace_back((size_t)stride * rows, 0x5a);
		f.view.strides[f.planes.size() - 1] = stride;
		return f.planes.size() - 1;
	};
	auto put = [&f, sample_bytes, top_shift, junk](size_t plane, int row, int index, int value) {
		uint8_t *at = &f.planes[plane][(size_t)row * f.view.strides[plane] + (size_t)index * sample_bytes];
		if (sample_bytes == 1) {
			*at = (uint8_t)value;
			return;
		}
		const int word = value << top_shift | junk;
		at[0] = (uint8_t)(word & 0xff);
		at[1] = (uint8_t)(word >> 8);
	};

	if (format == PixelFormat::v210) {
		// UYVY's samples, 10 bits each, three to a little-endian 32-bit word from bit 0: each 6
		// pixels' 12 samples in 4 words. Samples past the width in a row's last group and the
		// top 2 bits of every word are patterns that must not be read.
		const int groups = (width + 5) / 6, stride = groups * 16 + 12;
		f.planes.emplace_back((size_t)stride * height, 0x5a);
		f.view.strides[0] = stride;
		for (int y = 0; y < height; y++)
			for (int group = 0; group < groups; group++) {
				uint32_t words[4] = {0x80000000u, 0xc0000000u, 0x40000000u, 0x80000000u};
				for (int k = 0; k < 12; k++) {
					const char c = "UYVY"[k % 4];
					const int x = 6 * group + 2 * (k / 4) + (k % 4 == 3 ? 1 : 0);
					const int component = c == 'Y' ? 0 : c == 'U' ? 1 : 2;
					const int value = x < width ? sample(component, y, x) : 0x3ee;
					words[k / 3] |= static_cast<uint32_t>(value) << (10 * (k % 3));
				}
				uint8_t *at = &f.planes[0][(size_t)y * stride + 16 * group];
				for (int w = 0; w < 4; w++)
					for (int b = 0; b < 4; b++)
						at[4 * w + b] = (uint8_t)(words[w] >> (8 * b));
			}
		f.view.planes[0] = f.planes[0].data();
		return f;
	}
	if (format == PixelFormat::Y410) {
		// One little-endian 32-bit word a pixel: U in bits 0-9, Y in 10-19, V in 20-29; the top
		// 2 bits (alpha) a pattern that must not be read.
		const int stride = width * 4 + 12;
		f.planes.emplace_back((size_t)stride * height, 0x5a);
		f.view.strides[0] = stride;
		for (int y = 0; y < height; y++)
			for (int x = 0; x < width; x++) {
				const uint32_t word = static_cast<uint32_t>(sample(1, y, x)) |
						      static_cast<uint32_t>(sample(0, y, x)) << 10 |
						      static_cast<uint32_t>(sample(2, y, x)) << 20 |
						      (x % 2 ? 0x40000000u : 0xc0000000u);
				for (int b = 0; b < 4; b++)
					f.planes[0][(size_t)y * stride + 4 * x + b] = (uint8_t)(word >> (8 * b));
			}
		f.view.planes[0] = f.planes[0].data();
		return f;
	}
	if (format == PixelFormat::AYUV || format == PixelFormat::VUYA || format == PixelFormat::Y412_LE) {
		// Packed 4:4:4: each pixel's 4 samples (Y412_LE: 16-bit words) in the format's order,
		// alpha a pattern that must not be read.
		const char *order = format == PixelFormat::AYUV ? "AYUV" : format == PixelFormat::VUYA ? "VUYA" : "UYVA";
		const size_t plane = add_plane(height, 4 * width);
		for (int y = 0; y < height; y++)
			for (int x = 0; x < width; x++)
				for (int k = 0; k < 4; k++) {
					const char c = order[k];
					put(plane, y, 4 * x + k,
					    c == 'A' ? 0x3c : sample(c == 'Y' ? 0 : c == 'U' ? 1 : 2, y, x));
				}
		f.view.planes[0] = f.planes[0].data();
		return f;
	}
	const char *packed_order = format == PixelFormat::YUY2	 ? "YUYV"
				   : format == PixelFormat::UYVY ? "UYVY"
				   : format == PixelFormat::YVYU ? "YVYU"
				   : format == PixelFormat::VYUY ? "VYUY"
								 : nullptr;
	if (packed_order != nullptr) {
		const size_t plane = add_plane(height, 4 * cw);
		for (int y = 0; y < height; y++)
			for (int pair = 0; pair < cw; pair++) {
				int luma_seen = 0;
				for (int k = 0; k < 4; k++) {
					const char c = packed_order[k];
					const int x = 2 * pair + (c == 'Y' ? luma_seen++ : 0);
					const int component = c == 'Y' ? 0 : c == 'U' ? 1 : 2;
					// The second pixel of an odd width's last pair is outside the frame.
					put(plane, y, 4 * pair + k, x < width ? sample(component, y, x) : 0xee);
				}
			}
	} else {
		const size_t luma = add_plane(height, width);
		for (int y = 0; y < height; y++)
			for (int x = 0; x < width; x++)
				put(luma, y, x, sample(0, y, x));
		if (format == PixelFormat::NV12 || format == PixelFormat::NV21 || format == PixelFormat::NV16 ||
		    format == PixelFormat::NV61 || format == PixelFormat::NV24) {
			// Semi-planar: U and V interleaved, V first in NV21 and NV61.
			const size_t chroma = add_plane(ch, 2 * cw);
			const int u_byte = format == PixelFormat::NV21 || format == PixelFormat::NV61 ? 1 : 0;
			for (int cy = 0; cy < ch; cy++)
				for (int cx = 0; cx < cw; cx++) {
					put(chroma, cy, 2 * cx + u_byte, sample(1, cy << ys, cx << xs));
					put(chroma, cy, 2 * cx + 1 - u_byte, sample(2, cy << ys, cx << xs));
				}
		} else {
			// YV12 stores its V plane before its U plane.
			const size_t first = add_plane(ch, cw), second = add_plane(ch, cw);
			const size_t u = format == PixelFormat::YV12 ? second : first;
			const size_t v = format == PixelFormat::YV12 ? first : second;
			for (int cy = 0; cy < ch; cy++)
				for (int cx = 0; cx < cw; cx++) {
					put(u, cy, cx, sample(1, cy << ys, cx << xs));
					put(v, cy, cx, sample(2, cy << ys, cx << xs));
				}
		}
	}
	for (size_t p = 0; p < f.planes.size(); p++)
		f.view.planes[p] = f.planes[p].data();
	return f;
}

// Random samples: luma per pixel, chroma per block of (1 << xs) x (1 << ys) pixels.
SampleAt random_samples(uint32_t seed, int xs, int ys, int bits = 8)
{
	return [seed, xs, ys, bits](int component, int y, int x) {
		if (component > 0) {
			y >>= ys;
			x >>= xs;
		}
		std::seed_seq seq{seed, (uint32_t)component, (uint32_t)y, (uint32_t)x};
		std::array<uint32_t, 1> value;
		seq.generate(value.begin(), value.end());
		return (int)(value[0] >> (32 - bits));
	};
}

} // namespace

// Every YUV format reads its samples where its definition puts them: a frame of each format
// gives the same image as Y444 (chroma at every pixel) of the same samples, at odd and even
// sizes. Y444's reading is tied to I420's, whose colours the next test checks.
TEST(FrameToTensor, YuvFormatsReadTheirSamplesWhereTheyLie)
{
	struct Family {
		int xs, ys;
		std::vector<PixelFormat> formats;
	};
	const std::vector<Family> families{
		{1, 1, {PixelFormat::I420, PixelFormat::YV12, PixelFormat::NV12, PixelFormat::NV21}},
		{1, 0,
		 {PixelFormat::Y42B, PixelFormat::NV16, PixelFormat::NV61, PixelFormat::YUY2, PixelFormat::UYVY,
		  PixelFormat::YVYU, PixelFormat::VYUY}},
		{0, 0, {PixelFormat::Y444, PixelFormat::NV24, PixelFormat::AYUV, PixelFormat::VUYA}},
		{1, 1, {PixelFormat::I420_10LE, PixelFormat::P010_10LE}},
		{1, 0, {PixelFormat::I422_10LE, PixelFormat::Y210, PixelFormat::v210}},
		{0, 0, {PixelFormat::Y444_10LE, PixelFormat::Y410}},
		{1, 1, {PixelFormat::I420_12LE, PixelFormat::P012_LE}},
		{1, 0, {PixelFormat::I422_12LE, PixelFormat::Y212_LE}},
		{0, 0, {PixelFormat::Y444_12LE, PixelFormat::Y412_LE}},
		{1, 1, {PixelFormat::P016_LE}},
		{0, 0, {PixelFormat::Y444_16LE}}};
	uint32_t seed = 1;
	for (const Family &family : families)
		for (PixelFormat format : family.formats)
			for (auto [width, height] : {std::pair<int, int>{64, 48}, {37, 23}, {1, 1}, {2, 3}}) {
				SCOPED_TRACE("format " + std::to_string((int)format) + ", " + std::to_string(width) +
					     "x" + std::to_string(height));
				const int bits = yuv_layout(format).bits;
				const SampleAt samples = random_samples(seed++, family.xs, family.ys, bits);
				const TestFrame frame = yuv_frame(format, width, height, samples);
				const TestFrame full = yuv_frame(bits == 8    ? PixelFormat::Y444
								 : bits == 10 ? PixelFormat::Y444_10LE
								 : bits == 12 ? PixelFormat::Y444_12LE
									      : PixelFormat::Y444_16LE,
								 width, height, samples);
				const torch::Tensor image = frame_to_tensor(frame.view);
				EXPECT_TRUE(torch::equal(image, frame_to_tensor(full.view)));
				// The one-pass CPU kernel reads the same samples.
				const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
				torch::Tensor kernel = torch::empty({3, height, width});
				ops::detail::normalised_frame_cpu(frame.view, mean, std, kernel);
				EXPECT_TRUE(torch::equal(image, kernel));
			}
}

// A v210 row is read up to the word that holds its last sample: 4 bytes for each 3 samples, the
// words of a group of 6 pixels in order (U Y V, Y U Y, V Y U, Y V Y), not the whole group.
TEST(FrameToTensor, V210RowsAreReadUpToTheWordOfTheirLastSample)
{
	std::mt19937 rng(40);
	for (auto [width, row_bytes] : {std::pair{1, 4}, {2, 8}, {3, 12}, {5, 16}, {6, 16}, {7, 20}, {48, 128}}) {
		SCOPED_TRACE("width " + std::to_string(width));
		std::vector<std::vector<uint8_t>> storage;
		FrameView frame = test::random_frame(PixelFormat::v210, width, 3, rng, storage);
		// Rows of exactly that many bytes, the last one at the end of its memory (AddressSanitizer
		// builds check that nothing past it is read).
		std::vector<uint8_t> rows(storage[0].begin(), storage[0].begin() + 3 * row_bytes);
		frame.planes[0] = rows.data();
		frame.strides[0] = row_bytes;
		EXPECT_EQ(frame_planes(frame)[0].row_bytes, row_bytes);
		const torch::Tensor image = frame_to_tensor(frame);
		const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
		torch::Tensor kernel = torch::empty({3, 3, width});
		ops::detail::normalised_frame_cpu(frame, mean, std, kernel);
		EXPECT_TRUE(torch::equal(image, kernel));
		frame.strides[0] = row_bytes - 1;
		EXPECT_THROW(frame_to_tensor(frame), Error);
	}
}

// BT.601 limited range: the colours a camera's YUV stands for, against the standard's matrix.
TEST(FrameToTensor, YuvColoursAreBt601LimitedRange)
{
	struct Colour {
		uint8_t y, u, v;
		float r, g, b; // 0..255
	};
	// Black, white, and the 75% red, green and blue of SMPTE colour bars.
	const std::vector<Colour> colours{{16, 128, 128, 0, 0, 0},	 {235, 128, 128, 255, 255, 255},
					  {65, 100, 212, 191, 0, 0},	 {112, 72, 58, 0, 191, 0},
					  {35, 212, 114, 0, 0, 191}};
	for (PixelFormat format : {PixelFormat::I420, PixelFormat::YUY2, PixelFormat::NV21}) {
		for (const Colour &c : colours) {
			const TestFrame frame = yuv_frame(format, 4, 2, [&c](int component, int, int) {
				return component == 0 ? c.y : component == 1 ? c.u : c.v;
			});
			const torch::Tensor image = frame_to_tensor(frame.view) * 255.0f;
			// Within 1.5 of 255: the rounded coefficients of the 8-bit matrix.
			EXPECT_NEAR(image[0][1][2].item<float>(), c.r, 1.5) << (int)c.y << "," << (int)c.u << "," << (int)c.v;
			EXPECT_NEAR(image[1][1][2].item<float>(), c.g, 1.5) << (int)c.y << "," << (int)c.u << "," << (int)c.v;
			EXPECT_NEAR(image[2][1][2].item<float>(), c.b, 1.5) << (int)c.y << "," << (int)c.u << "," << (int)c.v;
		}
	}
}

// An interlaced 4:2:0 frame (FrameView::interlaced) holds two fields, the top one in the even
// rows, and its chroma rows alternate between them as well: each row takes its colour from its own
// field's chroma (field row r from the field's chroma row r / 2), as a Y444 frame of those
// samples shows; read as a progressive frame, the same bytes give other colours. Heights of each
// remainder by 4 (the bottom field's last row of a 4k + 2 high frame has a chroma row of its own,
// GStreamer's (height + 3) / 4 * 2).
TEST(FrameToTensor, InterlacedChromaRowsBelongToTheirFields)
{
	uint32_t seed = 300;
	for (auto [format, y444] : {std::pair{PixelFormat::NV12, PixelFormat::Y444},
				    std::pair{PixelFormat::NV21, PixelFormat::Y444},
				    std::pair{PixelFormat::I420, PixelFormat::Y444},
				    std::pair{PixelFormat::YV12, PixelFormat::Y444},
				    std::pair{PixelFormat::P010_10LE, PixelFormat::Y444_10LE},
				    std::pair{PixelFormat::I420_10LE, PixelFormat::Y444_10LE},
				    std::pair{PixelFormat::P012_LE, PixelFormat::Y444_12LE},
				    std::pair{PixelFormat::I420_12LE, PixelFormat::Y444_12LE}})
		for (int height : {8, 10, 7, 5, 2, 1}) {
			SCOPED_TRACE("format " + std::to_string((int)format) + ", height " + std::to_string(height));
			const int width = 6, bits = yuv_layout(format).bits;
			const SampleAt luma = random_samples(seed++, 0, 0, bits);
			// One value per chroma sample of the plane (row, column), put there by
			// yuv_frame, which reads a 4:2:0 plane's row r at pixel row 2r.
			const SampleAt plane = random_samples(seed++, 0, 0, bits);
			const SampleAt in_plane = [&](int c, int y, int x) {
				return c == 0 ? luma(0, y, x) : plane(c, y / 2, x / 2);
			};
			const SampleAt in_fields = [&](int c, int y, int x) {
				if (c == 0)
					return luma(0, y, x);
				const int field = y % 2, field_row = y / 2, field_chroma_row = field_row / 2;
				return plane(c, 2 * field_chroma_row + field, x / 2);
			};
			TestFrame frame = yuv_frame(format, width, height, in_plane, (height + 3) / 4 * 2);
			frame.view.interlaced = true;
			const TestFrame reference = yuv_frame(y444, width, height, in_fields);
			const torch::Tensor image = frame_to_tensor(frame.view);
			EXPECT_TRUE(torch::equal(image, frame_to_tensor(reference.view)));
			EXPECT_EQ(frame_planes(frame.view)[1].rows, (height + 3) / 4 * 2);
			frame.view.interlaced = false;
			if (height >= 3) {
				EXPECT_FALSE(torch::equal(image, frame_to_tensor(frame.view)));
			}
		}
	// Other formats have chroma in every row: interlaced or not, they read alike.
	std::mt19937 rng(30);
	for (PixelFormat format : {PixelFormat::YUY2, PixelFormat::Y42B, PixelFormat::NV24, PixelFormat::RGB}) {
		std::vector<std::vector<uint8_t>> storage;
		FrameView frame = test::random_frame(format, 9, 7, rng, storage);
		const torch::Tensor progressive = frame_to_tensor(frame);
		frame.interlaced = true;
		EXPECT_TRUE(torch::equal(frame_to_tensor(frame), progressive)) << (int)format;
	}
}

// Limited range in more bits is 8 bits' levels times 2^(bits - 8) (BT.2100): 10-bit samples four
// times the 8-bit ones, and 12-bit ones 16 times, give the 8-bit frame's image, bit for bit, in
// every 10- and 12-bit format.
TEST(FrameToTensor, WiderSamplesOfEightBitLevelsGiveTheEightBitImage)
{
	uint32_t seed = 100;
	for (auto [wide, eight] : {std::pair{PixelFormat::P010_10LE, PixelFormat::NV12},
				   std::pair{PixelFormat::I420_10LE, PixelFormat::I420},
				   std::pair{PixelFormat::I422_10LE, PixelFormat::Y42B},
				   std::pair{PixelFormat::Y444_10LE, PixelFormat::Y444},
				   std::pair{PixelFormat::P012_LE, PixelFormat::NV12},
				   std::pair{PixelFormat::I420_12LE, PixelFormat::I420},
				   std::pair{PixelFormat::I422_12LE, PixelFormat::Y42B},
				   std::pair{PixelFormat::Y444_12LE, PixelFormat::Y444},
				   std::pair{PixelFormat::Y210, PixelFormat::YUY2},
				   std::pair{PixelFormat::Y212_LE, PixelFormat::YUY2},
				   std::pair{PixelFormat::v210, PixelFormat::UYVY},
				   std::pair{PixelFormat::P016_LE, PixelFormat::NV12},
				   std::pair{PixelFormat::Y444_16LE, PixelFormat::Y444},
				   std::pair{PixelFormat::Y410, PixelFormat::AYUV},
				   std::pair{PixelFormat::Y412_LE, PixelFormat::VUYA}}) {
		SCOPED_TRACE("format " + std::to_string((int)wide));
		const YuvLayout layout = yuv_layout(eight);
		const int scale = 1 << (yuv_layout(wide).bits - 8);
		const SampleAt samples = random_samples(seed++, layout.x_shift, layout.y_shift);
		const TestFrame frame =
			yuv_frame(wide, 37, 24, [&](int c, int y, int x) { return scale * samples(c, y, x); });
		const torch::Tensor image = frame_to_tensor(frame.view);
		for (YuvMatrix matrix : {YuvMatrix::BT601, YuvMatrix::BT709, YuvMatrix::BT2020}) {
			TestFrame reference = yuv_frame(eight, 37, 24, samples);
			reference.view.matrix = matrix;
			FrameView view = frame.view;
			view.matrix = matrix;
			EXPECT_TRUE(torch::equal(frame_to_tensor(view), frame_to_tensor(reference.view)));
		}
		EXPECT_GT(image.std().item<float>(), 0.1f) << "the samples vary";
	}
}

// Every matrix in either range: the colours of the standard's own encoding of them.
TEST(FrameToTensor, YuvColoursFollowTheMatrixAndRange)
{
	struct Standard {
		YuvMatrix matrix;
		double kr, kb; // the luma weights of red and blue, as the standards give them
	};
	const std::vector<std::array<double, 3>> colours{{0, 0, 0},	  {255, 255, 255}, {191, 0, 0},
							 {0, 191, 0},	  {0, 0, 191},	   {191, 191, 0},
							 {40, 120, 220}, {250, 10, 130}};
	for (const Standard &s : {Standard{YuvMatrix::BT601, 0.299, 0.114}, Standard{YuvMatrix::BT709, 0.2126, 0.0722},
				  Standard{YuvMatrix::BT2020, 0.2627, 0.0593}})
		for (bool full_range : {false, true})
			for (int bits : {8, 10, 12, 16})
				for (const auto &rgb : colours) {
					SCOPED_TRACE("matrix " + std::to_string((int)s.matrix) +
						     (full_range ? " full" : " limited") + " range, " +
						     std::to_string(bits) + " bits, colour " + std::to_string(rgb[0]) + "," +
						     std::to_string(rgb[1]) + "," + std::to_string(rgb[2]));
					// The encoding: E'y from the weights, then the colour differences scaled
					// to +-0.5, both quantised to `bits` bits in the range (BT.2100's
					// arithmetic, BT.601's and BT.709's in 8 bits).
					const double r = rgb[0] / 255, g = rgb[1] / 255, b = rgb[2] / 255;
					const double luma = s.kr * r + (1 - s.kr - s.kb) * g + s.kb * b;
					const double cb = (b - luma) / (2 * (1 - s.kb)), cr = (r - luma) / (2 * (1 - s.kr));
					const double steps = (1 << bits) - 1, more_bits = 1 << (bits - 8);
					auto sample = [steps](double v) { return (int)std::lround(std::clamp(v, 0.0, steps)); };
					const int y = sample(full_range ? steps * luma : (16 + 219 * luma) * more_bits);
					const double chroma_steps = full_range ? steps : 224 * more_bits;
					const int u = sample((1 << (bits - 1)) + chroma_steps * cb);
					const int v = sample((1 << (bits - 1)) + chroma_steps * cr);
					TestFrame frame = yuv_frame(bits == 8    ? PixelFormat::NV12
								    : bits == 10 ? PixelFormat::P010_10LE
								    : bits == 12 ? PixelFormat::P012_LE
										 : PixelFormat::P016_LE,
								    2, 2,
								    [&](int component, int, int) {
									    return component == 0 ? y : component == 1 ? u : v;
								    });
					frame.view.matrix = s.matrix;
					frame.view.full_range = full_range;
					const torch::Tensor image = frame_to_tensor(frame.view) * 255.0f;
					// Within 2 of 255 in 8 bits (the rounding of the three samples), 0.6 in
					// 10 (four times finer), 0.15 in 12.
					const double tolerance = bits == 8 ? 2.0 : 0.6 / (1 << (bits - 10));
					for (int channel = 0; channel < 3; channel++)
						EXPECT_NEAR(image[channel][1][1].item<float>(), rgb[channel], tolerance)
							<< "channel " << channel;
				}
}

// A grey frame is an RGB frame with equal channels (full range, as GStreamer's GRAY8).
TEST(FrameToTensor, GreyIsRgbWithEqualChannels)
{
	std::mt19937 rng(13);
	std::vector<std::vector<uint8_t>> storage;
	const FrameView grey = test::random_frame(PixelFormat::GRAY8, 37, 23, rng, storage);
	std::vector<uint8_t> rgb(37 * 23 * 3);
	for (int y = 0; y < 23; y++)
		for (int x = 0; x < 37; x++)
			for (int c = 0; c < 3; c++)
				rgb[(y * 37 + x) * 3 + c] = grey.planes[0][y * grey.strides[0] + x];
	EXPECT_TRUE(torch::equal(frame_to_tensor(grey), frame_to_tensor(rgb_view(rgb.data(), 37, 23))));
}

// The CUDA pre-processing kernel's arithmetic (preprocess_steps.h), run here on the host over
// the description the kernel gets (describe_frame): every format, colorimetry and size gives
// the CPU path's image, so the kernel reads what the CPU reads before a GPU runs it. Within a
// bound, not equal: the kernel computes the resize's source coordinates in float, as
// LibTorch's CUDA kernel does (and its CPU kernel in the 2.x LibTorch of the last GPU run, which
// gave the same bits there), LibTorch 1.13's CPU kernel in double; the coordinates then differ
// by up to half a float step (3e-5 pixels at x = 640), a value by that much of the difference
// between two neighbours (up to 4.4 on noise), and nvcc may fuse the resizing's multiply-adds.
// A sample read from the wrong place, or in the wrong colours, is off by 0.05 and more. On the
// GPU, CudaPreprocessing.EveryFormatMatchesTheCpuPath checks the kernel itself.
TEST(CudaPreprocessingSteps, EmulatedOnTheHostGiveTheCpuPath)
{
	const ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	float mean[3], std[3];
	for (int c = 0; c < 3; c++) {
		mean[c] = static_cast<float>(config.image_mean[c]);
		std[c] = static_cast<float>(config.image_std[c]);
	}
	std::mt19937 rng(16);
	int round = 0;
	for (PixelFormat format : test::all_pixel_formats())
		for (auto size : {std::pair<int, int>{641, 479}, {1333, 800}, {37, 23}, {38, 22}}) {
			// The last size as an interlaced frame (4:2:0 chroma by field).
			const bool interlaced = size.second == 22;
			SCOPED_TRACE("format " + std::to_string((int)format) + ", " + std::to_string(size.first) + "x" +
				     std::to_string(size.second) + (interlaced ? " interlaced" : ""));
			std::vector<std::vector<uint8_t>> storage;
			FrameView frame = test::random_frame(format, size.first, size.second, rng, storage, interlaced);
			frame.matrix = static_cast<YuvMatrix>(round % 3);
			frame.transfer = static_cast<TransferFunction>(round / 3 % 3);
			frame.primaries = static_cast<ColourPrimaries>(round / 9 % 3);
			frame.full_range = round++ % 2 == 1;
			const auto cpu = frcnn::detail::transform_frames_cpu(config, {frame});
			const auto [resized_height, resized_width] = cpu.image_sizes[0];
			const torch::Tensor batch = cpu.batch[0].contiguous();
			const int64_t height = batch.size(1), width = batch.size(2);
			const cuda::FrameDesc desc = frcnn::detail::describe_frame(frame);
			const float *expected = batch.data_ptr<float>();
			double largest = 0;
			for (int64_t y = 0; y < height; y++)
				for (int64_t x = 0; x < width; x++) {
					cuda::steps::Rgb value{0, 0, 0};
					if (y < resized_height && x < resized_width)
						value = cuda::steps::resized_pixel(desc, mean, std, resized_height, resized_width, y, x);
					const float got[3] = {value.r, value.g, value.b};
					for (int c = 0; c < 3; c++)
						largest = std::max(largest, (double)std::abs(got[c] - expected[(c * height + y) * width + x]));
				}
			EXPECT_LE(largest, 3e-4);
		}
}

// Any rectangle on a frame's chroma grid, of any format, size and stride: the crop reads exactly
// the frame's pixels inside it (frame_to_tensor of the crop is that part of the frame's), and
// its planes lie inside the frame's memory (AddressSanitizer builds check each byte read).
TEST(CropFrame, AnyRectangleOnTheGridReadsThatPartOfTheFrame)
{
	std::mt19937 rng(17);
	auto below = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
	for (int round = 0; round < 300; round++) {
		const PixelFormat format = test::all_pixel_formats()[below((int)test::all_pixel_formats().size())];
		const int width = 1 + below(40), height = 1 + below(30);
		std::vector<std::vector<uint8_t>> storage;
		const bool interlaced = below(2) == 1;
		SCOPED_TRACE("round " + std::to_string(round) + ": format " + std::to_string((int)format) + ", " +
			     std::to_string(width) + "x" + std::to_string(height) + (interlaced ? " interlaced" : ""));
		FrameView frame = test::random_frame(format, width, height, rng, storage, interlaced);
		frame.matrix = static_cast<YuvMatrix>(below(3));
		frame.full_range = below(2) == 1;
		const int x_step = rectangle_column_step(format);
		const int y_step = rectangle_row_step(format, interlaced);
		EXPECT_EQ(y_step, chroma_needs_even_y(format) ? (interlaced ? 4 : 2) : 1);
		const int x = below((width + x_step - 1) / x_step) * x_step, y = below((height + y_step - 1) / y_step) * y_step;
		const int w = 1 + below(width - x), h = 1 + below(height - y);
		const FrameView crop = crop_frame(frame, x, y, w, h);
		using torch::indexing::Slice;
		const torch::Tensor part = frame_to_tensor(frame).index({Slice(), Slice(y, y + h), Slice(x, x + w)});
		EXPECT_TRUE(torch::equal(frame_to_tensor(crop), part)) << w << "x" << h << " at " << x << "," << y;
		const auto planes = frame_planes(crop);
		for (size_t p = 0; p < planes.size(); p++) {
			const uint8_t *begin = storage[p].data(), *end = begin + storage[p].size();
			EXPECT_TRUE(crop.planes[p] >= begin && crop.planes[p] + plane_span(planes[p], crop.strides[p]) <= end)
				<< "plane " << p << " of the crop leaves the frame's memory";
		}
	}
}

// Frames of pixels that are not square are resized as the frame of square pixels a display shows
// would be: to the size torchvision computes for that frame.
TEST(PixelAspectRatio, FramesTakeTheSizeOfTheirDisplayedShape)
{
	using frcnn::detail::ImageSize;
	using frcnn::detail::resized_size;
	struct Case {
		int64_t height, width;
		PixelAspectRatio pixel_aspect_ratio;
		int64_t displayed_width;
	};
	// PAL 16:9 and 4:3, HDV, NTSC-sized 4:3 from 720, pixels higher than wide, the element test's.
	for (const Case &c : {Case{576, 720, {64, 45}, 1024}, Case{576, 720, {16, 15}, 768},
			      Case{1080, 1440, {4, 3}, 1920}, Case{480, 720, {8, 9}, 640}, Case{200, 100, {1, 2}, 50},
			      Case{240, 180, {9, 5}, 324}})
		for (auto [min_size, max_size] : {std::pair<double, double>{800, 1333}, {240, 320}, {320, 640}}) {
			SCOPED_TRACE(std::to_string(c.width) + "x" + std::to_string(c.height) + " at " +
				     std::to_string(c.pixel_aspect_ratio.numerator) + ":" +
				     std::to_string(c.pixel_aspect_ratio.denominator) + ", sizes " +
				     std::to_string(min_size) + " " + std::to_string(max_size));
			EXPECT_EQ(resized_size(c.height, c.width, c.pixel_aspect_ratio, min_size, max_size),
				  resized_size(c.height, c.displayed_width, min_size, max_size));
		}
	// Square pixels, however written: the frame as it is stored.
	EXPECT_EQ(resized_size(479, 641, {3, 3}, 800, 1333), resized_size(479, 641, 800, 1333));
	// A displayed width that is not whole (DV's 10:11 pixels: 720x480 shows as 654.5x480).
	const ImageSize dv = resized_size(480, 720, {10, 11}, 800, 1333);
	EXPECT_NEAR((double)dv.first, 800, 1);
	EXPECT_NEAR((double)dv.second, 800 * (720.0 * 10 / 11) / 480, 1);
	// However narrow the pixels, or the frame, at least one of them.
	EXPECT_EQ(resized_size(480, 640, {1, 100000}, 800, 1333).second, 1);
	EXPECT_EQ(resized_size(1, 5000, 800, 1333).first, 1);

	// A ratio that is not positive is a clear error.
	std::vector<std::vector<uint8_t>> storage;
	std::mt19937 rng(30);
	FrameView bad = test::random_frame(PixelFormat::RGB, 16, 16, rng, storage);
	bad.pixel_aspect_ratio = {0, 1};
	EXPECT_THROW(frame_planes(bad), Error);
	bad.pixel_aspect_ratio = {4, -3};
	EXPECT_THROW(frame_planes(bad), Error);
}

// The batch of such a frame: its normalised pixels interpolated to that size as torchvision's
// interpolate() to a size interpolates (bilinear, align_corners false), on the CPU path and the
// LibTorch one, and the size it came from is the frame's own (the boxes go back to its pixels).
TEST(PixelAspectRatio, TheBatchHoldsTheFrameInterpolatedToThatSize)
{
	using frcnn::detail::ImageSize;
	const ModelConfig config = model_preset("fasterrcnn_resnet50_fpn");
	std::mt19937 rng(31);
	for (PixelFormat format : {PixelFormat::NV12, PixelFormat::BGRx, PixelFormat::YUY2, PixelFormat::P010_10LE}) {
		SCOPED_TRACE("format " + std::to_string((int)format));
		std::vector<std::vector<uint8_t>> storage;
		FrameView frame = test::random_frame(format, 360, 288, rng, storage);
		frame.pixel_aspect_ratio = {64, 45}; // shows as 512x288
		const ImageSize size = frcnn::detail::resized_size(288, 512, config.min_size, config.max_size);

		FrameView stored = frame;
		stored.pixel_aspect_ratio = {};
		const auto mean = torch::tensor(config.image_mean, torch::kFloat64).to(torch::kFloat).view({-1, 1, 1});
		const auto std_ = torch::tensor(config.image_std, torch::kFloat64).to(torch::kFloat).view({-1, 1, 1});
		const auto normalised = (frame_to_tensor(stored) - mean) / std_;
		const auto expected = at::upsample_bilinear2d(normalised.unsqueeze(0), std::vector<int64_t>{size.first, size.second},
							      false, c10::nullopt, c10::nullopt)[0];

		const auto cpu = frcnn::detail::transform_frames(config, {frame}, torch::kCPU, torch::kFloat, false);
		// The LibTorch path (what other dtypes take): the same size, the same pixels up to rounding.
		const auto wider = frcnn::detail::transform_frames(config, {frame}, torch::kCPU, torch::kDouble, false);
		for (const auto *batch : {&cpu, &wider}) {
			ASSERT_EQ(batch->image_sizes, std::vector<ImageSize>{size});
			EXPECT_EQ(batch->original_sizes, std::vector<ImageSize>({{288, 360}}));
		}
		using torch::indexing::Slice;
		const auto image = cpu.batch[0].index({Slice(), Slice(0, size.first), Slice(0, size.second)});
		EXPECT_TRUE(torch::equal(image, expected))
			<< "largest difference " << (image - expected).abs().max().item<float>();
		auto padding = cpu.batch[0].clone();
		padding.index_put_({Slice(), Slice(0, size.first), Slice(0, size.second)}, 0.0f);
		EXPECT_EQ(padding.abs().max().item<float>(), 0.0f) << "zero padding";
		const auto wider_image = wider.batch[0].index({Slice(), Slice(0, size.first), Slice(0, size.second)});
		EXPECT_LT((wider_image.to(torch::kFloat) - expected).abs().max().item<float>(), 1e-4);
	}
}

// A frame squeezed to half its width and said to have pixels twice as wide as high gives the
// detections of the frame it was squeezed from (in the squeezed frame's pixels): the model sees
// the shapes as they are, not half as wide.
TEST(PixelAspectRatio, ASqueezedFrameGivesTheDetectionsOfTheFrameItShows)
{
	Detector &detector = shapes_detector();
	size_t detections = 0;
	double overlap = 0;
	for (uint64_t index = 0; index < 6; index++) {
		SCOPED_TRACE("scene " + std::to_string(index));
		const TestFrame shown = shapes_frame(index, PixelFormat::RGB, 0); // 320x240
		// Each pixel of the squeezed frame is the mean of the two it stands for.
		std::vector<uint8_t> squeezed(160 * 240 * 3);
		for (int y = 0; y < 240; y++)
			for (int x = 0; x < 160; x++)
				for (int c = 0; c < 3; c++) {
					const uint8_t *row = shown.planes[0].data() + (size_t)y * 320 * 3;
					squeezed[((size_t)y * 160 + x) * 3 + c] =
						(uint8_t)((row[(2 * x) * 3 + c] + row[(2 * x + 1) * 3 + c] + 1) / 2);
				}
		FrameView frame = rgb_view(squeezed.data(), 160, 240);
		frame.pixel_aspect_ratio = {2, 1};

		const auto expected = detector.detect({shown.view})[0];
		const auto found = detector.detect({frame})[0];
		for (const Detection &d : found) {
			EXPECT_GE(d.x1, 0.0f);
			EXPECT_LE(d.x2, 160.0f) << "boxes in the squeezed frame's pixels";
		}
		// Each confident detection of the shown frame is found, half as wide, with its label; on
		// the whole they overlap closely (the squeezed frame's pixels are means of two: its
		// boxes are not quite the same). Read as square pixels, the model sees the shapes half as
		// wide: it finds some of them, misses others (IoU 0) and overlaps them worse on the whole
		// (about 0.7 against 0.95 here).
		for (const Detection &e : expected) {
			if (e.score < 0.5)
				continue;
			detections++;
			float best = 0;
			for (const Detection &d : found) {
				if (d.label != e.label)
					continue;
				const float iw = std::min(e.x2, 2 * d.x2) - std::max(e.x1, 2 * d.x1);
				const float ih = std::min(e.y2, d.y2) - std::max(e.y1, d.y1);
				const float inter = std::max(0.0f, iw) * std::max(0.0f, ih);
				const float uni = (e.x2 - e.x1) * (e.y2 - e.y1) + 2 * (d.x2 - d.x1) * (d.y2 - d.y1) - inter;
				best = std::max(best, inter / uni);
			}
			EXPECT_GE(best, 0.6f) << "label " << e.label << " at " << e.x1 << "," << e.y1;
			overlap += best;
		}
	}
	ASSERT_GE(detections, 10u) << "too few detections for the test to mean anything";
	EXPECT_GE(overlap / detections, 0.9) << "mean IoU";
}

// --- HDR video ---------------------------------------------------------------------------------

namespace {

// BT.2100's curves, written here from the standards, apart from the library's.
double pq_light_of(double signal) // SMPTE ST 2084's EOTF, cd/m2
{
	const double m1 = 0.1593017578125, m2 = 78.84375, c1 = 0.8359375, c2 = 18.8515625, c3 = 18.6875;
	const double p = std::pow(signal, 1 / m2);
	return 10000 * std::pow(std::max(p - c1, 0.0) / (c2 - c3 * p), 1 / m1);
}

double pq_signal_of(double light) // its inverse
{
	const double m1 = 0.1593017578125, m2 = 78.84375, c1 = 0.8359375, c2 = 18.8515625, c3 = 18.6875;
	const double y = std::pow(light / 10000, m1);
	return std::pow((c1 + c2 * y) / (1 + c3 * y), m2);
}

double hlg_signal_of(double light) // on a 1000 cd/m2 display, system gamma 1.2 per channel
{
	const double a = 0.17883277, b = 0.28466892, c = 0.55991073;
	const double scene = std::pow(light / 1000, 1 / 1.2);
	return scene <= 1.0 / 12 ? std::sqrt(3 * scene) : a * std::log(12 * scene - b) + c;
}

double hlg_light_of(double signal)
{
	const double a = 0.17883277, b = 0.28466892, c = 0.55991073;
	const double scene = signal <= 0.5 ? signal * signal / 3 : (std::exp((signal - c) / a) + b) / 12;
	return 1000 * std::pow(scene, 1.2);
}

// The SDR signal of light: reference white 203 cd/m2, BT.1886's gamma 2.4; above 3/4 of white
// compressed (x -> 0.75 + 0.25 (1 - exp(-(x - 0.75) / 0.25))).
double sdr_signal_of(double light)
{
	double x = light / 203;
	if (x > 0.75)
		x = 0.75 + 0.25 * (1 - std::exp(-(x - 0.75) / 0.25));
	return std::pow(x, 1 / 2.4);
}

// A frame of full-range BT.2020 Y444_10LE whose R'G'B' signals are `signal` (3 planes of
// height x width in 0..1), rounded to 10 bits.
FrameView bt2020_frame(const torch::Tensor &signal, std::vector<std::vector<uint8_t>> &storage)
{
	const int64_t height = signal.size(1), width = signal.size(2);
	const double kr = 0.2627, kb = 0.0593, kg = 1 - kr - kb;
	storage.assign(3, std::vector<uint8_t>(static_cast<size_t>(height * width * 2)));
	const auto s = signal.accessor<float, 3>();
	for (int64_t y = 0; y < height; y++)
		for (int64_t x = 0; x < width; x++) {
			const double r = s[0][y][x], g = s[1][y][x], b = s[2][y][x];
			const double luma = kr * r + kg * g + kb * b;
			const double values[3] = {luma * 1023, (b - luma) / (2 * (1 - kb)) * 1023 + 512,
						  (r - luma) / (2 * (1 - kr)) * 1023 + 512};
			for (int p = 0; p < 3; p++) {
				const int v = std::clamp(static_cast<int>(std::lround(values[p])), 0, 1023);
				storage[p][(y * width + x) * 2] = static_cast<uint8_t>(v & 0xff);
				storage[p][(y * width + x) * 2 + 1] = static_cast<uint8_t>(v >> 8);
			}
		}
	FrameView frame;
	frame.format = PixelFormat::Y444_10LE;
	frame.width = static_cast<int>(width);
	frame.height = static_cast<int>(height);
	for (int p = 0; p < 3; p++) {
		frame.planes[p] = storage[p].data();
		frame.strides[p] = static_cast<int>(width * 2);
	}
	frame.matrix = YuvMatrix::BT2020;
	frame.full_range = true;
	return frame;
}

} // namespace

// The tables follow the curves: the SDR signal of the light each HDR signal stands for, to 3e-4
// (2e-5 away from black).
TEST(HdrVideo, TheTablesFollowTheCurves)
{
	EXPECT_EQ(sdr_table(TransferFunction::SDR), nullptr);
	for (TransferFunction transfer : {TransferFunction::PQ, TransferFunction::HLG}) {
		const float *table = sdr_table(transfer);
		ASSERT_NE(table, nullptr);
		double largest = 0, largest_above_black = 0;
		for (int i = 0; i <= 100000; i++) {
			const double signal = i / 100000.0;
			const double light = transfer == TransferFunction::PQ ? pq_light_of(signal) : hlg_light_of(signal);
			const double error = std::abs(sdr_signal(table, static_cast<float>(signal)) - sdr_signal_of(light));
			largest = std::max(largest, error);
			if (signal > 0.05)
				largest_above_black = std::max(largest_above_black, error);
		}
		EXPECT_LE(largest, 3e-4) << "transfer " << (int)transfer;
		EXPECT_LE(largest_above_black, 2e-5) << "transfer " << (int)transfer;
	}
}

// A picture encoded as PQ or HLG video the way BT.2408 puts SDR content into HDR (its white at
// 203 cd/m2) reads as the SDR picture it came from, up to 10-bit rounding; brighter highlights
// are compressed between 3/4 of white and white, in order. Read as if it were SDR, the same
// frame is another picture (PQ: darker, HLG: brighter shadows).
TEST(HdrVideo, FramesShowTheirSdrPicture)
{
	torch::manual_seed(33);
	const int64_t height = 24, width = 40;
	// SDR signals below the knee's (0.75 of white: signal 0.887), a ramp of highlights above.
	auto sdr = torch::rand({3, height, width}) * 0.88f;
	const auto ramp = torch::linspace(0.9, 1.0, width);
	sdr.index_put_({torch::indexing::Slice(), height - 1}, ramp.expand({3, width}));
	for (TransferFunction transfer : {TransferFunction::PQ, TransferFunction::HLG}) {
		SCOPED_TRACE(transfer == TransferFunction::PQ ? "PQ" : "HLG");
		auto hdr = torch::empty_like(sdr);
		for (int64_t i = 0; i < sdr.numel(); i++) {
			const double light = 203 * std::pow(sdr.data_ptr<float>()[i], 2.4);
			hdr.data_ptr<float>()[i] = static_cast<float>(transfer == TransferFunction::PQ ? pq_signal_of(light)
													: hlg_signal_of(light));
		}
		std::vector<std::vector<uint8_t>> storage;
		FrameView frame = bt2020_frame(hdr, storage);
		const auto as_code_values = frame_to_tensor(frame);
		frame.transfer = transfer;
		const auto shown = frame_to_tensor(frame);
		using torch::indexing::Slice;
		const auto below = Slice(0, height - 1);
		const auto error = (shown.index({Slice(), below}) - sdr.index({Slice(), below})).abs();
		EXPECT_LE(error.max().item<float>(), 0.015);
		EXPECT_LE(error.mean().item<float>(), 0.004);
		EXPECT_GE((as_code_values - sdr).abs().mean().item<float>(), 0.05);
		// The highlights: brighter in, brighter out, between the knee's signal and white.
		const auto highlights = shown.index({Slice(), height - 1});
		EXPECT_TRUE(highlights.ge(0.88f).all().item<bool>());
		EXPECT_TRUE(highlights.le(ramp + 0.005f).all().item<bool>());
		EXPECT_TRUE((highlights.index({Slice(), Slice(4, width)}) - highlights.index({Slice(), Slice(0, width - 4)}))
				    .gt(0)
				    .all()
				    .item<bool>());
	}
}

// The shapes model on PQ and HLG video of its scenes finds what it finds in the SDR scenes (the
// same labels at IoU 0.8 or more; 29 of 29 confident detections for PQ, 28 of 29 for HLG). Read
// as if it were SDR, PQ video gives 24 of them: its picture is darker and flatter. HLG, made to
// look right on SDR displays, gives 28 read so.
TEST(HdrVideo, TheModelSeesHdrVideoAsItsSdrPicture)
{
	Detector &detector = shapes_detector();
	for (TransferFunction transfer : {TransferFunction::PQ, TransferFunction::HLG}) {
		SCOPED_TRACE(transfer == TransferFunction::PQ ? "PQ" : "HLG");
		size_t detections = 0, found = 0, found_as_sdr = 0;
		for (uint64_t index = 0; index < 6; index++) {
			const TestFrame shown = shapes_frame(index, PixelFormat::RGB, 0); // 320x240
			// The SDR picture as BT.2020 SDR video, and as HDR video of the same light.
			const auto sdr = torch::from_blob(const_cast<uint8_t *>(shown.planes[0].data()), {240, 320, 3}, torch::kUInt8)
						 .permute({2, 0, 1})
						 .to(torch::kFloat32)
						 .div(255)
						 .contiguous();
			auto hdr = torch::empty_like(sdr);
			for (int64_t i = 0; i < sdr.numel(); i++) {
				const double light = 203 * std::pow(sdr.data_ptr<float>()[i], 2.4);
				hdr.data_ptr<float>()[i] = static_cast<float>(
					transfer == TransferFunction::PQ ? pq_signal_of(light) : hlg_signal_of(light));
			}
			std::vector<std::vector<uint8_t>> sdr_storage, hdr_storage;
			const FrameView sdr_frame = bt2020_frame(sdr, sdr_storage);
			FrameView hdr_frame = bt2020_frame(hdr, hdr_storage);
			const auto expected = detector.detect({sdr_frame})[0];
			const auto code_values = detector.detect({hdr_frame})[0];
			hdr_frame.transfer = transfer;
			const auto mapped = detector.detect({hdr_frame})[0];
			// A detection of the same label overlapping at IoU 0.8 or more.
			auto finds = [](const std::vector<Detection> &all, const Detection &e) {
				for (const Detection &d : all) {
					const float iw = std::min(e.x2, d.x2) - std::max(e.x1, d.x1);
					const float ih = std::min(e.y2, d.y2) - std::max(e.y1, d.y1);
					const float inter = std::max(0.0f, iw) * std::max(0.0f, ih);
					const float uni = (e.x2 - e.x1) * (e.y2 - e.y1) + (d.x2 - d.x1) * (d.y2 - d.y1) - inter;
					if (d.label == e.label && inter >= 0.8f * uni)
						return true;
				}
				return false;
			};
			for (const Detection &e : expected) {
				if (e.score < 0.5)
					continue;
				detections++;
				found += finds(mapped, e);
				found_as_sdr += finds(code_values, e);
			}
		}
		ASSERT_GE(detections, 10u);
		EXPECT_GE(found, 0.95 * detections)
			<< found << " of " << detections << " found (" << found_as_sdr << " in the signal read as SDR)";
	}
}

namespace {

// The published matrices from linear light in wide primaries to BT.709's: ITU-R BT.2087's for
// BT.2020 (to 4 decimals), and Display P3's (SMPTE EG 432's primaries, D65; CSS Color 4's).
using Matrix3 = std::array<std::array<double, 3>, 3>;
constexpr Matrix3 kBt2087{{{1.6605, -0.5876, -0.0728}, {-0.1246, 1.1329, -0.0083}, {-0.0182, -0.1006, 1.1187}}};
constexpr Matrix3 kDisplayP3ToBt709{
	{{1.2249401, -0.2249404, 0.0}, {-0.0420569, 1.0420571, 0.0}, {-0.0196376, -0.0786361, 1.0982735}}};

Matrix3 inverse(const Matrix3 &m)
{
	const double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
			   m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
			   m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
	Matrix3 inv{};
	inv[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det;
	inv[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det;
	inv[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det;
	inv[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det;
	inv[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det;
	inv[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det;
	inv[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det;
	inv[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det;
	inv[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det;
	return inv;
}

std::array<double, 3> times(const Matrix3 &m, const std::array<double, 3> &v)
{
	return {m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2], m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
		m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2]};
}

} // namespace

// The conversions' matrices are the published ones; their tables follow the curves: the light of
// a signal (SDR's, BT.1886's; PQ's and HLG's, that of their SDR picture) to 2e-5, and the SDR
// signal of a light, on the grid of its square root, to 2e-4 (1e-5 away from black). BT.709's
// primaries need none.
TEST(WideGamutVideo, TheConversionsFollowTheStandards)
{
	EXPECT_EQ(primaries_conversion(ColourPrimaries::BT709), nullptr);
	for (auto [primaries, published] : {std::pair{ColourPrimaries::BT2020, kBt2087},
					    std::pair{ColourPrimaries::DisplayP3, kDisplayP3ToBt709}}) {
		SCOPED_TRACE(primaries == ColourPrimaries::BT2020 ? "BT.2020" : "Display P3");
		const PrimariesConversion *conversion = primaries_conversion(primaries);
		ASSERT_NE(conversion, nullptr);
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++)
				EXPECT_NEAR(conversion->matrix[i][j], published[i][j], 1e-4) << i << ", " << j;
		double light_error[3] = {0, 0, 0}, signal_error = 0, signal_error_above_black = 0;
		for (int i = 0; i <= 100000; i++) {
			const double x = i / 100000.0;
			const double light[3] = {std::pow(x, 2.4), std::pow(sdr_signal_of(pq_light_of(x)), 2.4),
						 std::pow(sdr_signal_of(hlg_light_of(x)), 2.4)};
			for (int t = 0; t < 3; t++)
				light_error[t] = std::max(
					light_error[t], std::abs(interpolated(conversion->light[t], static_cast<float>(x)) - light[t]));
			const double error = std::abs(interpolated(conversion->signal, static_cast<float>(std::sqrt(x))) -
						      std::pow(x, 1 / 2.4));
			signal_error = std::max(signal_error, error);
			if (x > 0.01)
				signal_error_above_black = std::max(signal_error_above_black, error);
		}
		for (int t = 0; t < 3; t++)
			EXPECT_LE(light_error[t], 2e-5) << "transfer " << t;
		EXPECT_LE(signal_error, 2e-4);
		EXPECT_LE(signal_error_above_black, 1e-5);
	}
}

// A BT.709 picture put into BT.2020 video (SDR, PQ and HLG, as BT.2408 puts SDR content into HDR)
// or into Display P3 video reads as that picture, up to 10-bit rounding; read in its own
// primaries, the same frame is another, paler picture. Colours of the wide gamut outside
// BT.709's are clipped to it: BT.2020's green reads as BT.709's.
TEST(WideGamutVideo, FramesShowTheirBt709Picture)
{
	torch::manual_seed(34);
	const int64_t height = 24, width = 40;
	// SDR signals below the knee's (0.75 of white: signal 0.887), saturated colours among them;
	// none near black, where BT.1886's steep signal of little light would turn the frame's
	// 10-bit rounding into large errors.
	const auto picture = torch::rand({3, height, width}) * 0.73f + 0.15f;
	struct Case {
		ColourPrimaries primaries;
		TransferFunction transfer;
		const char *name;
	};
	for (const Case &c : {Case{ColourPrimaries::BT2020, TransferFunction::SDR, "BT.2020 SDR"},
			      Case{ColourPrimaries::BT2020, TransferFunction::PQ, "BT.2020 PQ"},
			      Case{ColourPrimaries::BT2020, TransferFunction::HLG, "BT.2020 HLG"},
			      Case{ColourPrimaries::DisplayP3, TransferFunction::SDR, "Display P3"}}) {
		SCOPED_TRACE(c.name);
		const Matrix3 from_bt709 = inverse(c.primaries == ColourPrimaries::BT2020 ? kBt2087 : kDisplayP3ToBt709);
		auto signal = torch::empty_like(picture);
		const auto p = picture.accessor<float, 3>();
		auto s = signal.accessor<float, 3>();
		for (int64_t y = 0; y < height; y++)
			for (int64_t x = 0; x < width; x++) {
				std::array<double, 3> light;
				for (int ch = 0; ch < 3; ch++)
					light[ch] = std::pow(p[ch][y][x], 2.4);
				const auto wide = times(from_bt709, light);
				for (int ch = 0; ch < 3; ch++) {
					const double l = std::max(wide[ch], 0.0);
					s[ch][y][x] = static_cast<float>(c.transfer == TransferFunction::PQ	  ? pq_signal_of(203 * l)
									 : c.transfer == TransferFunction::HLG ? hlg_signal_of(203 * l)
													       : std::pow(l, 1 / 2.4));
				}
			}
		std::vector<std::vector<uint8_t>> storage;
		FrameView frame = bt2020_frame(signal, storage);
		frame.transfer = c.transfer;
		const auto own_primaries = frame_to_tensor(frame);
		frame.primaries = c.primaries;
		const auto shown = frame_to_tensor(frame);
		const auto error = (shown - picture).abs();
		// PQ's 10 bits are the coarsest at SDR's levels: 0.023 at most there.
		EXPECT_LE(error.max().item<float>(), 0.03);
		EXPECT_LE(error.mean().item<float>(), 0.002);
		EXPECT_GE((own_primaries - picture).abs().mean().item<float>(), 0.02);
		// Paler: the channels of a pixel closer together.
		auto spread = [](const torch::Tensor &image) {
			return (std::get<0>(image.max(0)) - std::get<0>(image.min(0))).mean().item<float>();
		};
		EXPECT_LT(spread(own_primaries), spread(shown) - 0.05);
	}
	// The wide gamut's own green: outside BT.709's, clipped to BT.709's green.
	const auto green = torch::tensor({0.0f, 1.0f, 0.0f}).reshape({3, 1, 1}).expand({3, 2, 2}).contiguous();
	std::vector<std::vector<uint8_t>> storage;
	FrameView frame = bt2020_frame(green, storage);
	frame.primaries = ColourPrimaries::BT2020;
	const auto shown = frame_to_tensor(frame);
	EXPECT_TRUE(torch::allclose(shown, green, 0, 2e-3)) << shown;
}

// What frcnnoverlay draws into wide-gamut video: the signals in the frame's primaries of a
// BT.709 colour, which the detector's conversion reads back as that colour (within 5e-4; 2e-3
// near black).
TEST(WideGamutVideo, ColoursDrawnInWidePrimariesReadBackAsDrawn)
{
	std::mt19937 rng(35);
	std::uniform_real_distribution<double> unit(0.0, 1.0);
	for (ColourPrimaries primaries : {ColourPrimaries::BT2020, ColourPrimaries::DisplayP3}) {
		SCOPED_TRACE(primaries == ColourPrimaries::BT2020 ? "BT.2020" : "Display P3");
		const Matrix3 from_bt709 = inverse(primaries == ColourPrimaries::BT2020 ? kBt2087 : kDisplayP3ToBt709);
		for (int round = 0; round < 1000; round++) {
			const std::array<double, 3> colour{unit(rng), unit(rng), unit(rng)};
			const auto drawn = signals_in_primaries(primaries, colour);
			// The signals of the published matrix's light.
			std::array<double, 3> light;
			for (int c = 0; c < 3; c++)
				light[c] = std::pow(colour[c], 2.4);
			const auto expected = times(from_bt709, light);
			float r = static_cast<float>(drawn[0]), g = static_cast<float>(drawn[1]), b = static_cast<float>(drawn[2]);
			const PrimariesConversion &conversion = *primaries_conversion(primaries);
			to_bt709(conversion, conversion.light[static_cast<int>(TransferFunction::SDR)], r, g, b);
			const float read[3] = {r, g, b};
			for (int c = 0; c < 3; c++) {
				EXPECT_NEAR(drawn[c], std::pow(std::max(expected[c], 0.0), 1 / 2.4), 2e-4);
				// Near black, the table of the light of a signal makes the most of its
				// error: within half an 8-bit level.
				EXPECT_NEAR(read[c], colour[c], colour[c] < 0.01 ? 2e-3 : 5e-4);
			}
		}
	}
	const std::array<double, 3> grey{0.25, 0.5, 0.75};
	EXPECT_EQ(signals_in_primaries(ColourPrimaries::BT709, grey), grey);
}

// SPDX-License-Identifier: BSD-3-Clause
// The queue of batches in front of a shared model: which batches run together, in what order,
// and that each gets its own frames' results. The model is a stand-in that records its runs and
// can be held in the middle of one, so that batches pile up behind it as they do behind a busy
// model.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <future>
#include <initializer_list>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "frcnn/config.h"
#include "frcnn/detector.h"
#include "run_queue.h"

namespace {

using frcnn::gst::RunQueue;
using frcnn::gst::RunRequest;
using frcnn::gst::RunSettings;

// Frames whose pixels all have one value, the frame's mark: the stand-in model reports it back
// as the label of the frame's one detection.
class Frames {
public:
	Frames()
	{
		frcnn::DetectorOptions options;
		options.model = frcnn::model_preset("tiny");
		options.model.num_classes = 4;
		options.random_seed = 1;
		detector_ = std::make_unique<frcnn::Detector>(options);
	}

	frcnn::HeldFrame frame(uint8_t mark, int width = 64, int height = 48,
			       frcnn::PixelAspectRatio pixel_aspect_ratio = {})
	{
		auto bytes = std::make_shared<std::vector<uint8_t>>(width * height * 3, mark);
		frcnn::FrameView view;
		view.format = frcnn::PixelFormat::RGB;
		view.width = width;
		view.height = height;
		view.pixel_aspect_ratio = pixel_aspect_ratio;
		view.planes[0] = bytes->data();
		view.strides[0] = width * 3;
		return detector_->hold_frame(view, bytes);
	}

private:
	std::unique_ptr<frcnn::Detector> detector_;
};

// A run the stand-in model made: the marks of its frames and its settings.
struct ModelRun {
	std::vector<int64_t> marks;
	RunSettings settings;
};

// The stand-in model. While held, a run that starts waits until it is let go.
class Model {
public:
	RunQueue::RunFunction function()
	{
		return [this](const std::vector<frcnn::HeldFrame> &frames, const RunSettings &settings) {
			ModelRun run{ {}, settings };
			std::vector<std::vector<frcnn::Detection>> results;
			for (const frcnn::HeldFrame &frame : frames) {
				const int64_t mark = frame.view().planes[0][0];
				run.marks.push_back(mark);
				results.push_back({ frcnn::Detection{ 0, 0, 1, 1, mark, 0.5f } });
			}
			std::unique_lock<std::mutex> lock(mutex_);
			const std::size_t index = runs_.size();
			runs_.push_back(run);
			changed_.notify_all();
			changed_.wait(lock, [this, index] { return !held_ || index < released_; });
			if (fail_size_ && frames.size() == fail_size_)
				throw std::runtime_error("out of memory");
			return results;
		};
	}

	void hold()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		held_ = true;
	}
	void let_go()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		held_ = false;
		changed_.notify_all();
	}
	// While held, lets the first `count` runs (from the first ever) end; the later ones wait.
	void release_runs(std::size_t count)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		released_ = count;
		changed_.notify_all();
	}
	void fail_runs_of(std::size_t frames) { fail_size_ = frames; }

	// Waits until `count` runs have started.
	bool wait_for_runs(std::size_t count)
	{
		std::unique_lock<std::mutex> lock(mutex_);
		return changed_.wait_for(lock, std::chrono::seconds(30),
					 [&] { return runs_.size() >= count; });
	}
	std::vector<ModelRun> runs()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return runs_;
	}

private:
	std::mutex mutex_;
	std::condition_variable changed_;
	bool held_ = false;
	std::size_t released_ = 0;
	std::size_t fail_size_ = 0;
	std::vector<ModelRun> runs_;
};

RunSettings settings(double threshold = 0.5, int min_size = 480)
{
	RunSettings run;
	run.score_threshold = threshold;
	run.min_size = min_size;
	run.max_size = 800;
	return run;
}

RunRequest request(std::vector<frcnn::HeldFrame> frames, std::size_t batch_size,
		   const RunSettings &run = settings())
{
	RunRequest request;
	request.frames = std::move(frames);
	request.batch_size = batch_size;
	request.settings = run;
	return request;
}

// Runs requests on threads of their own, queued in the order given.
class Submitter {
public:
	explicit Submitter(RunQueue &queue) : queue_(queue) {}
	~Submitter() { join(); }

	// Queues the request from a new thread and returns once it waits in the queue; the future
	// is ready once its run() has returned.
	std::shared_future<void> submit(RunRequest &request)
	{
		const std::size_t before = queue_.waiting();
		auto returned = std::make_shared<std::promise<void>>();
		std::shared_future<void> done = returned->get_future().share();
		threads_.emplace_back([this, &request, returned] {
			queue_.run(request);
			returned->set_value();
		});
		const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
		while (queue_.waiting() == before && std::chrono::steady_clock::now() < give_up)
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
		EXPECT_EQ(queue_.waiting(), before + 1);
		return done;
	}
	void join()
	{
		for (std::thread &thread : threads_)
			thread.join();
		threads_.clear();
	}

private:
	RunQueue &queue_;
	std::vector<std::thread> threads_;
};

std::vector<int64_t> marks_of(const RunRequest &request)
{
	std::vector<int64_t> marks;
	for (const auto &detections : request.results) {
		EXPECT_EQ(detections.size(), 1u);
		marks.push_back(detections.empty() ? -1 : detections[0].label);
	}
	return marks;
}

// Runs `busy` on a thread of its own and, while the model holds that run, queues `waiting` in
// their order; then lets the model go and returns once every request has run.
void run_behind(RunQueue &queue, Model &model, RunRequest &busy,
		std::initializer_list<RunRequest *> waiting)
{
	model.hold();
	Submitter submitter(queue);
	std::thread running([&] { queue.run(busy); });
	const bool started = model.wait_for_runs(1);
	EXPECT_TRUE(started) << "the first run never started";
	if (started) {
		for (RunRequest *request : waiting)
			submitter.submit(*request);
	}
	model.let_go();
	running.join();
}

TEST(RunQueue, ABatchAloneRunsAloneOnItsOwnThread)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest only = request({ frames.frame(1), frames.frame(2) }, 4, settings(0.25));
	queue.run(only);
	EXPECT_TRUE(only.done);
	EXPECT_TRUE(only.error.empty());
	EXPECT_EQ(only.run_frames, 2u);
	EXPECT_EQ(only.run_requests, 1u);
	EXPECT_EQ(marks_of(only), (std::vector<int64_t>{ 1, 2 }));
	const std::vector<ModelRun> runs = model.runs();
	ASSERT_EQ(runs.size(), 1u);
	EXPECT_EQ(runs[0].settings, settings(0.25));
	EXPECT_EQ(queue.waiting(), 0u);
}

TEST(RunQueue, BatchesThatWaitedForTheModelRunTogether)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1) }, 2);
	RunRequest second = request({ frames.frame(2) }, 2);
	RunRequest third = request({ frames.frame(3) }, 2);
	run_behind(queue, model, busy, { &second, &third });
	const std::vector<ModelRun> runs = model.runs();
	ASSERT_EQ(runs.size(), 2u);
	EXPECT_EQ(runs[0].marks, (std::vector<int64_t>{ 1 }));
	EXPECT_EQ(runs[1].marks, (std::vector<int64_t>{ 2, 3 }));
	EXPECT_EQ(busy.run_requests, 1u);
	for (const RunRequest *together : { &second, &third }) {
		EXPECT_TRUE(together->error.empty());
		EXPECT_EQ(together->run_frames, 2u);
		EXPECT_EQ(together->run_requests, 2u);
	}
	EXPECT_EQ(marks_of(second), (std::vector<int64_t>{ 2 }));
	EXPECT_EQ(marks_of(third), (std::vector<int64_t>{ 3 }));
}

TEST(RunQueue, OnlyBatchesWithTheSameSettingsFrameSizeAndPixelShapeRunTogether)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1) }, 8);
	RunRequest first = request({ frames.frame(2) }, 8);
	RunRequest other_threshold = request({ frames.frame(3) }, 8, settings(0.3));
	RunRequest other_size = request({ frames.frame(4) }, 8, settings(0.5, 320));
	RunRequest other_frames = request({ frames.frame(5, 32, 24) }, 8);
	/* Frames of one size whose pixels are not square are resized to another size. */
	RunRequest other_pixels = request({ frames.frame(8, 64, 48, { 4, 3 }) }, 8);
	RunRequest same = request({ frames.frame(6), frames.frame(7) }, 8);
	run_behind(queue, model, busy, { &first, &other_threshold, &other_size, &other_frames, &other_pixels, &same });
	/* The first in the queue goes first, taking along what fits; the rest in queue order. */
	const std::vector<ModelRun> runs = model.runs();
	ASSERT_EQ(runs.size(), 6u);
	EXPECT_EQ(runs[1].marks, (std::vector<int64_t>{ 2, 6, 7 }));
	EXPECT_EQ(runs[2].marks, (std::vector<int64_t>{ 3 }));
	EXPECT_EQ(runs[2].settings, settings(0.3));
	EXPECT_EQ(runs[3].marks, (std::vector<int64_t>{ 4 }));
	EXPECT_EQ(runs[3].settings, settings(0.5, 320));
	EXPECT_EQ(runs[4].marks, (std::vector<int64_t>{ 5 }));
	EXPECT_EQ(runs[5].marks, (std::vector<int64_t>{ 8 }));
	EXPECT_EQ(marks_of(same), (std::vector<int64_t>{ 6, 7 }));
	EXPECT_EQ(same.run_requests, 2u);
	for (const RunRequest *alone : { &other_threshold, &other_size, &other_frames, &other_pixels })
		EXPECT_EQ(alone->run_requests, 1u);
}

TEST(RunQueue, ARunHoldsAtMostTheLargestBatchSizeOfItsBatches)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1) }, 1);
	RunRequest full = request({ frames.frame(2), frames.frame(3) }, 2);
	RunRequest small = request({ frames.frame(4) }, 2);     // 3 frames would pass its 2
	RunRequest larger = request({ frames.frame(5) }, 3);    // 3 frames are within its 3
	RunRequest too_many = request({ frames.frame(6) }, 3);  // 4 would pass every batch size
	run_behind(queue, model, busy, { &full, &small, &larger, &too_many });
	const std::vector<ModelRun> runs = model.runs();
	ASSERT_EQ(runs.size(), 3u);
	EXPECT_EQ(runs[1].marks, (std::vector<int64_t>{ 2, 3, 5 }));
	EXPECT_EQ(runs[2].marks, (std::vector<int64_t>{ 4, 6 }));
	EXPECT_EQ(marks_of(full), (std::vector<int64_t>{ 2, 3 }));
	EXPECT_EQ(marks_of(larger), (std::vector<int64_t>{ 5 }));
	EXPECT_EQ(marks_of(small), (std::vector<int64_t>{ 4 }));
	EXPECT_EQ(marks_of(too_many), (std::vector<int64_t>{ 6 }));
}

TEST(RunQueue, AFailedRunFailsEveryBatchOfItAndOnlyThose)
{
	Frames frames;
	Model model;
	model.fail_runs_of(2);
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1) }, 4);
	RunRequest second = request({ frames.frame(2) }, 4);
	RunRequest third = request({ frames.frame(3) }, 4);
	run_behind(queue, model, busy, { &second, &third });
	EXPECT_TRUE(busy.error.empty());
	EXPECT_EQ(marks_of(busy), (std::vector<int64_t>{ 1 }));
	for (const RunRequest *failed : { &second, &third }) {
		EXPECT_EQ(failed->error, "out of memory");
		EXPECT_TRUE(failed->results.empty());
		EXPECT_EQ(failed->run_requests, 2u);
	}
	/* The queue goes on after a failed run. */
	RunRequest after = request({ frames.frame(4) }, 4);
	queue.run(after);
	EXPECT_TRUE(after.error.empty());
	EXPECT_EQ(marks_of(after), (std::vector<int64_t>{ 4 }));
}

// A batch taken back while it waits (its element flushed or stopped) leaves at once, while the
// run ahead of it still holds the model, and never runs; the batches behind it run as before.
TEST(RunQueue, AWithdrawnWaitingBatchLeavesAtOnceAndNeverRuns)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1) }, 4);
	RunRequest withdrawn = request({ frames.frame(2) }, 4);
	RunRequest behind = request({ frames.frame(3) }, 4);
	model.hold();
	std::thread running([&] { queue.run(busy); });
	ASSERT_TRUE(model.wait_for_runs(1));
	Submitter submitter(queue);
	const std::shared_future<void> returned = submitter.submit(withdrawn);
	submitter.submit(behind);
	EXPECT_TRUE(queue.withdraw(withdrawn));
	/* Its run() returns while the model still holds the first run. */
	EXPECT_EQ(returned.wait_for(std::chrono::seconds(30)), std::future_status::ready);
	EXPECT_EQ(queue.waiting(), 1u);
	model.let_go();
	running.join();
	submitter.join();
	EXPECT_TRUE(withdrawn.withdrawn);
	EXPECT_TRUE(withdrawn.results.empty());
	EXPECT_TRUE(withdrawn.error.empty());
	EXPECT_EQ(withdrawn.run_requests, 0u);
	const std::vector<ModelRun> runs = model.runs();
	ASSERT_EQ(runs.size(), 2u);
	EXPECT_EQ(runs[1].marks, (std::vector<int64_t>{ 3 })) << "the withdrawn batch ran";
	EXPECT_EQ(marks_of(behind), (std::vector<int64_t>{ 3 }));
	EXPECT_EQ(behind.run_requests, 1u);
	EXPECT_FALSE(behind.withdrawn);
}

// A batch withdrawn while another element's run holds the model leaves at once: its thread is
// never the one running that run (each thread runs only the runs its own batch heads), whichever
// thread wakes first when the model is free.
TEST(RunQueue, AWithdrawnBatchBehindAnotherElementsRunLeavesAtOnce)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1) }, 4);
	RunRequest next = request({ frames.frame(2) }, 4);
	RunRequest withdrawn = request({ frames.frame(3) }, 4, settings(0.3)); // never runs with `next`
	model.hold();
	std::thread running([&] { queue.run(busy); });
	ASSERT_TRUE(model.wait_for_runs(1));
	Submitter submitter(queue);
	submitter.submit(next);
	const std::shared_future<void> returned = submitter.submit(withdrawn);
	/* The first run ends; the next one (`next`'s) starts and is held. */
	model.release_runs(1);
	ASSERT_TRUE(model.wait_for_runs(2));
	EXPECT_TRUE(queue.withdraw(withdrawn));
	EXPECT_EQ(returned.wait_for(std::chrono::seconds(30)), std::future_status::ready)
		<< "the withdrawn batch's thread was busy with the other element's run";
	model.let_go();
	running.join();
	submitter.join();
	EXPECT_EQ(marks_of(next), (std::vector<int64_t>{ 2 }));
	EXPECT_TRUE(withdrawn.results.empty());
	EXPECT_EQ(model.runs().size(), 2u);
}

// A batch withdrawn before its thread queued it does not run: the flush came between the
// element handing it over and the queue taking it.
TEST(RunQueue, ABatchWithdrawnBeforeItIsQueuedDoesNotRun)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest late = request({ frames.frame(1) }, 1);
	EXPECT_TRUE(queue.withdraw(late)) << "it will not run";
	queue.run(late);
	EXPECT_TRUE(late.done);
	EXPECT_TRUE(late.results.empty());
	EXPECT_TRUE(model.runs().empty());
	EXPECT_EQ(queue.waiting(), 0u);
}

// A batch already in a run is not taken out of it: the run goes on and fills in its results.
TEST(RunQueue, ABatchInARunIsNotTakenBack)
{
	Frames frames;
	Model model;
	RunQueue queue(model.function());
	RunRequest busy = request({ frames.frame(1), frames.frame(2) }, 2);
	model.hold();
	std::thread running([&] { queue.run(busy); });
	ASSERT_TRUE(model.wait_for_runs(1));
	EXPECT_FALSE(queue.withdraw(busy));
	model.let_go();
	running.join();
	EXPECT_TRUE(busy.withdrawn);
	EXPECT_EQ(marks_of(busy), (std::vector<int64_t>{ 1, 2 }));
	EXPECT_FALSE(queue.withdraw(busy)) << "it has run";
	EXPECT_EQ(model.runs().size(), 1u);
}

// Many threads queueing batches of random sizes, settings and frame sizes at once: every batch
// gets the results of its own frames, no run mixes settings or frame sizes or holds more frames
// than the largest batch size among its batches (4; a batch alone may pass its own), and none is
// lost or run twice.
TEST(RunQueue, ManyThreadsGetTheirOwnResults)
{
	Frames frames;
	std::mutex runs_mutex;
	std::vector<std::vector<int64_t>> runs;
	std::atomic<int> bad_runs{ 0 };
	RunQueue queue([&](const std::vector<frcnn::HeldFrame> &held, const RunSettings &settings) {
		std::vector<std::vector<frcnn::Detection>> results;
		std::vector<int64_t> marks;
		for (const frcnn::HeldFrame &frame : held) {
			/* Each frame's mark says which setting and size its batch has (see below). */
			const int64_t mark = frame.view().planes[0][0];
			if ((mark % 2 == 0) != (settings.score_threshold == 0.5) ||
			    frame.view().width != held[0].view().width)
				bad_runs++;
			marks.push_back(mark);
			results.push_back({ frcnn::Detection{ 0, 0, 1, 1, mark, 0.5f } });
		}
		std::lock_guard<std::mutex> lock(runs_mutex);
		runs.push_back(marks);
		return results;
	});

	constexpr int kThreads = 8, kBatches = 40;
	std::vector<std::vector<frcnn::HeldFrame>> pool; // frames by mark, made before the threads run
	for (int mark = 0; mark < 256; mark++) {
		const int width = mark % 4 < 2 ? 64 : 32;
		pool.push_back({ frames.frame(static_cast<uint8_t>(mark), width, 48) });
	}
	std::atomic<int> wrong{ 0 };
	std::atomic<int> frames_run{ 0 };
	std::vector<std::thread> threads;
	for (int t = 0; t < kThreads; t++) {
		threads.emplace_back([&, t] {
			std::mt19937 rng(t);
			for (int b = 0; b < kBatches; b++) {
				const int kind = static_cast<int>(rng() % 4); // setting = kind % 2, size = kind / 2
				const std::size_t count = 1 + rng() % 3;
				RunRequest request;
				std::vector<int64_t> marks;
				for (std::size_t i = 0; i < count; i++) {
					const int mark = static_cast<int>(rng() % 64) * 4 + kind;
					marks.push_back(mark);
					request.frames.push_back(pool[mark][0]);
				}
				request.batch_size = 1 + rng() % 4;
				request.settings = settings(kind % 2 == 0 ? 0.5 : 0.25);
				queue.run(request);
				if (!request.done || !request.error.empty() || marks_of(request) != marks ||
				    request.run_frames > 4)
					wrong++;
				frames_run += static_cast<int>(count);
			}
		});
	}
	for (std::thread &thread : threads)
		thread.join();
	EXPECT_EQ(wrong.load(), 0);
	EXPECT_EQ(bad_runs.load(), 0);
	std::size_t total = 0;
	for (const auto &run : runs)
		total += run.size();
	EXPECT_EQ(total, static_cast<std::size_t>(frames_run.load())) << "every frame runs once";
	EXPECT_EQ(queue.waiting(), 0u);
}

// Threads queueing batches while another takes random ones back, as flushes of their elements
// do (each thread hands its request over and takes it back under a lock of its own, as the
// element does): a batch taken back before its run never runs and gets no results, every other
// batch gets its own frames' results, and the model runs each of those frames once. Each run is
// run by the thread of the batch that heads it.
TEST(RunQueue, WithdrawalsAmidManyThreadsTakeBackOnlyTheirBatches)
{
	Frames frames;
	std::mutex runs_mutex;
	std::vector<int64_t> marks_run;
	constexpr int kThreads = 6, kBatches = 60;
	static thread_local int submitter = -1; // the index of the thread that submits on it
	std::atomic<int> runs_of_others{ 0 };
	RunQueue queue([&](const std::vector<frcnn::HeldFrame> &held, const RunSettings &) {
		std::vector<std::vector<frcnn::Detection>> results;
		/* A run is run by the thread of its first batch, whose marks are of its own. */
		if (held.front().view().planes[0][0] % kThreads != submitter)
			runs_of_others++;
		{
			std::lock_guard<std::mutex> lock(runs_mutex);
			for (const frcnn::HeldFrame &frame : held) {
				const int64_t mark = frame.view().planes[0][0];
				marks_run.push_back(mark);
				results.push_back({ frcnn::Detection{ 0, 0, 1, 1, mark, 0.5f } });
			}
		}
		/* A model that takes a while, so that batches wait for it. */
		std::this_thread::sleep_for(std::chrono::microseconds(500));
		return results;
	});

	std::vector<frcnn::HeldFrame> pool;
	for (int mark = 0; mark < 256; mark++)
		pool.push_back(frames.frame(static_cast<uint8_t>(mark)));
	struct Slot {
		std::mutex mutex; // the element's state lock
		RunRequest *queued = nullptr;
		bool taken_back = false;
	};
	std::vector<Slot> slots(kThreads);
	std::atomic<bool> submitting{ true };
	std::atomic<int> taken_back{ 0 };
	std::thread flusher([&] {
		std::mt19937 rng(99);
		while (submitting) {
			Slot &slot = slots[rng() % kThreads];
			{
				std::lock_guard<std::mutex> lock(slot.mutex);
				if (slot.queued && !slot.taken_back && queue.withdraw(*slot.queued)) {
					slot.taken_back = true;
					taken_back++;
				}
			}
			std::this_thread::yield();
		}
	});

	std::atomic<int> wrong{ 0 };
	std::vector<int64_t> expected_run; // the marks of the batches not taken back
	std::mutex expected_mutex;
	std::vector<std::thread> threads;
	for (int t = 0; t < kThreads; t++) {
		threads.emplace_back([&, t] {
			submitter = t;
			std::mt19937 rng(t);
			Slot &slot = slots[t];
			for (int b = 0; b < kBatches; b++) {
				RunRequest request;
				std::vector<int64_t> marks;
				const std::size_t count = 1 + rng() % 3;
				for (std::size_t i = 0; i < count; i++) {
					/* Marks by thread, so that a frame of one thread's batch is told apart. */
					const int mark = static_cast<int>(rng() % 40) * kThreads + t;
					marks.push_back(mark);
					request.frames.push_back(pool[mark]);
				}
				request.batch_size = 4;
				request.settings = settings();
				{
					std::lock_guard<std::mutex> lock(slot.mutex);
					slot.queued = &request;
					slot.taken_back = false;
				}
				queue.run(request);
				bool was_taken_back;
				{
					std::lock_guard<std::mutex> lock(slot.mutex);
					slot.queued = nullptr;
					was_taken_back = slot.taken_back;
				}
				if (!request.done || !request.error.empty() || was_taken_back != request.results.empty() ||
				    (!was_taken_back && marks_of(request) != marks))
					wrong++;
				if (!was_taken_back) {
					std::lock_guard<std::mutex> lock(expected_mutex);
					expected_run.insert(expected_run.end(), marks.begin(), marks.end());
				}
			}
		});
	}
	for (std::thread &thread : threads)
		thread.join();
	submitting = false;
	flusher.join();
	EXPECT_EQ(wrong.load(), 0);
	EXPECT_EQ(runs_of_others.load(), 0) << "a thread ran a run that another thread's batch headed: a "
						 "flush of its element would have waited for it";
	std::sort(expected_run.begin(), expected_run.end());
	std::sort(marks_run.begin(), marks_run.end());
	EXPECT_EQ(marks_run, expected_run) << "a batch taken back ran, or one not taken back did not";
	EXPECT_EQ(queue.waiting(), 0u);
	/* With six threads on a model that sleeps through each run, batches wait all the time: a
	 * test in which none was taken back would have checked nothing. */
	EXPECT_GT(taken_back.load(), 0);
	std::printf("%d of %d batches taken back\n", taken_back.load(), kThreads * kBatches);
}

} // namespace

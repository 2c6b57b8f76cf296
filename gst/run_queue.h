// SPDX-License-Identifier: BSD-3-Clause
// The batches waiting for one model, and the rule by which batches of the elements that share it
// (model-instance-id) run together. No GStreamer in here, so the rule can be tested on its own.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "frcnn/detector.h"

namespace frcnn::gst {

// The detector settings a batch runs with. Batches run together only when theirs are equal, so
// that each frame gets exactly the detections its own settings give.
struct RunSettings {
	double score_threshold = 0.5;
	double nms_threshold = 0.5;
	int max_detections = 100;
	int min_size = 0; // the sizes the frames are scaled to (the model's own already put in)
	int max_size = 0;

	bool operator==(const RunSettings &other) const
	{
		return score_threshold == other.score_threshold && nms_threshold == other.nms_threshold &&
		       max_detections == other.max_detections && min_size == other.min_size &&
		       max_size == other.max_size;
	}
	bool operator!=(const RunSettings &other) const { return !(*this == other); }
};

// One element's batch, waiting for the model.
struct RunRequest {
	std::vector<HeldFrame> frames;
	RunSettings settings;
	std::size_t batch_size = 1; // the most frames its element runs at once

	// Filled in by RunQueue::run().
	std::vector<std::vector<Detection>> results; // one list per frame
	std::string error;			     // why the run failed; empty when it did not
	std::size_t run_frames = 0;		     // frames of the run it was part of
	std::size_t run_requests = 0;		     // batches of that run (1: it ran alone)
	bool done = false;
	// Set by RunQueue::withdraw(): its element no longer wants the results (a flush, a stop).
	// A request withdrawn before it was taken into a run does not run: run() returns at once.
	bool withdrawn = false;
	bool in_run = false; // taken into a run that has not ended
};

// Batches wait here for their turn on one model. When the model is free, the thread of the
// first batch that waits runs it together with the later ones that can go with it: the same
// RunSettings, frames of one size and shape of pixels (so that no frame is padded differently
// than in a run of its own), and no more frames in all than the largest batch_size among them.
// An element has one batch at a time in the queue, so a run gathers the batches of several
// elements that came while the model was busy: frames of several streams go through the model
// as one batch.
class RunQueue {
public:
	// Runs frames through the model with the given settings: one list of detections per frame.
	// Throws on failure; the message reaches every request of the run.
	using RunFunction = std::function<std::vector<std::vector<Detection>>(
		const std::vector<HeldFrame> &frames, const RunSettings &settings)>;

	explicit RunQueue(RunFunction run) : run_(std::move(run)) {}
	RunQueue(const RunQueue &) = delete;
	RunQueue &operator=(const RunQueue &) = delete;

	// Queues the request and returns once it has run, on this thread or on another's (that of
	// a request it joined): its results (or its error) and the size of its run are then filled
	// in. This thread runs only a run its own request heads. A request is for one call.
	void run(RunRequest &request);

	// Requests queued and not yet taken into a run.
	std::size_t waiting();

	// Takes back a request that run() was given, or is about to be given, on another thread:
	// if it waits, it leaves the queue and its run() returns at once without results (a
	// flushing seek on one stream need not wait for the runs of other streams' batches ahead
	// of it); if it is not queued yet, run() returns at once without results when it comes;
	// if it is in a run, that run goes on and its results are filled in as usual. Returns
	// whether it will not run (false: it is in a run, or has run).
	bool withdraw(RunRequest &request);

	// Whether `later` may run in one batch with `first` (settings and frame sizes only).
	static bool can_run_together(const RunRequest &first, const RunRequest &later);

private:
	// Takes the requests of the next run off the queue. Called with mutex_ held.
	std::vector<RunRequest *> take_next_run();
	// Runs them through the model and fills in their results. Called without mutex_.
	void run_together(const std::vector<RunRequest *> &requests);

	RunFunction run_;
	std::mutex mutex_;
	std::condition_variable finished_; // a run ended: waiting requests may be done, or may run
	std::deque<RunRequest *> waiting_;
	bool running_ = false;
};

} // namespace frcnn::gst

// SPDX-License-Identifier: BSD-3-Clause
#include "run_queue.h"

#include <algorithm>
#include <exception>
#include <new>

namespace frcnn::gst {

namespace {

// Whether every frame of the request has this size and shape of pixels (which sets the size it
// is resized to).
bool all_frames_sized(const RunRequest &request, const FrameView &size)
{
	return std::all_of(request.frames.begin(), request.frames.end(), [&](const HeldFrame &frame) {
		const FrameView &view = frame.view();
		return view.width == size.width && view.height == size.height &&
		       view.pixel_aspect_ratio.numerator == size.pixel_aspect_ratio.numerator &&
		       view.pixel_aspect_ratio.denominator == size.pixel_aspect_ratio.denominator;
	});
}

} // namespace

bool RunQueue::can_run_together(const RunRequest &first, const RunRequest &later)
{
	if (first.settings != later.settings || first.frames.empty() || later.frames.empty())
		return false;
	/* A batch is padded to its largest frame: frames of one size are padded as they would be
	 * in a run of their own. */
	const FrameView &size = first.frames.front().view();
	return all_frames_sized(first, size) && all_frames_sized(later, size);
}

std::vector<RunRequest *> RunQueue::take_next_run()
{
	/* Allocated before the queue changes: out of memory leaves it as it was. */
	std::vector<RunRequest *> run;
	run.reserve(waiting_.size());
	run.push_back(waiting_.front());
	waiting_.pop_front();
	std::size_t frames = run.front()->frames.size();
	std::size_t limit = run.front()->batch_size;
	for (auto it = waiting_.begin(); it != waiting_.end();) {
		RunRequest *later = *it;
		const std::size_t later_limit = std::max(limit, later->batch_size);
		if (can_run_together(*run.front(), *later) && frames + later->frames.size() <= later_limit) {
			run.push_back(later);
			frames += later->frames.size();
			limit = later_limit;
			it = waiting_.erase(it);
		} else {
			++it;
		}
	}
	return run;
}

void RunQueue::run_together(const std::vector<RunRequest *> &requests)
{
	std::size_t frame_count = 0;
	for (const RunRequest *request : requests)
		frame_count += request->frames.size();

	/* Nothing may escape: the waiting threads must hear how the run ended. */
	std::vector<std::vector<Detection>> results;
	std::string error;
	try {
		std::vector<HeldFrame> frames;
		frames.reserve(frame_count);
		for (const RunRequest *request : requests)
			frames.insert(frames.end(), request->frames.begin(), request->frames.end());
		results = run_(frames, requests.front()->settings);
		if (results.size() != frames.size())
			error = "the model returned " + std::to_string(results.size()) + " results for " +
				std::to_string(frames.size()) + " frames";
	} catch (const std::exception &e) {
		error = e.what();
		if (error.empty())
			error = "unknown error";
	} catch (...) {
		error = "unknown error";
	}

	std::size_t next = 0;
	for (RunRequest *request : requests) {
		request->run_frames = frame_count;
		request->run_requests = requests.size();
		request->results.clear();
		try {
			request->error = error;
			if (error.empty()) {
				for (std::size_t i = 0; i < request->frames.size(); i++)
					request->results.push_back(std::move(results[next++]));
			}
		} catch (const std::bad_alloc &) {
			next += request->frames.size() - request->results.size();
			request->results.clear();
			request->error = "out of memory"; /* short: no allocation */
		}
	}
}

std::size_t RunQueue::waiting()
{
	std::lock_guard<std::mutex> lock(mutex_);
	return waiting_.size();
}

bool RunQueue::withdraw(RunRequest &request)
{
	std::lock_guard<std::mutex> lock(mutex_);
	request.withdrawn = true;
	const auto waiting = std::find(waiting_.begin(), waiting_.end(), &request);
	if (waiting == waiting_.end())
		return !request.in_run && !request.done; /* not queued yet, or in or after a run */
	waiting_.erase(waiting);
	request.done = true;
	finished_.notify_all();
	return true;
}

void RunQueue::run(RunRequest &request)
{
	std::unique_lock<std::mutex> lock(mutex_);
	request.results.clear();
	request.error.clear();
	/* Withdrawn before it came (the flag is only read and written under the lock). */
	request.done = request.withdrawn;
	if (!request.done)
		waiting_.push_back(&request);
	while (!request.done) {
		/* Each thread runs only the run its own request heads, so that a request withdrawn
		 * from the queue (a flush, a stop) leaves at once: its thread is never busy with
		 * another element's run. The first request always has its thread waiting here. */
		if (running_ || waiting_.front() != &request) {
			finished_.wait(lock);
			continue;
		}
		/* Our turn: our request runs, with the later ones that can join it. */
		std::vector<RunRequest *> requests;
		try {
			requests = take_next_run();
		} catch (...) {
			/* Out of memory, the queue as it was: ours leaves it, the others go on. */
			waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &request));
			finished_.notify_all();
			throw;
		}
		running_ = true;
		for (RunRequest *taken : requests)
			taken->in_run = true;
		lock.unlock();
		run_together(requests);
		lock.lock();
		for (RunRequest *finished : requests) {
			finished->in_run = false;
			finished->done = true;
		}
		running_ = false;
		finished_.notify_all();
	}
}

} // namespace frcnn::gst

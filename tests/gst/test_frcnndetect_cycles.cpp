// SPDX-License-Identifier: BSD-3-Clause
// frcnndetect through many READY <-> PLAYING cycles with frames flowing: no GStreamer object and
// no memory is left behind. Runs with GStreamer's leaks tracer, which counts every live
// GstObject and GstMiniObject.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>

#include <malloc.h>
#include <unistd.h>

#include <gst/gst.h>
#include <gtest/gtest.h>

#include "gst_test_utils.h"

namespace {

/* The tracer must be chosen before gst_init(). */
const bool tracer_chosen = g_setenv("GST_TRACERS", "leaks", TRUE);

/* Blocks of 1 MB and more (tensors) are mapped and unmapped as they are allocated and freed.
 * glibc otherwise raises its mapping threshold after the first such block is freed and then
 * keeps later ones in the arena of whichever streaming thread freed them: a new thread's arena
 * can hold on to a freed result tensor (14 MB here) that malloc_trim does not give back. That is
 * memory kept for reuse, not a leak; with a fixed threshold, resident memory counts what is
 * still allocated. */
const bool fixed_mmap_threshold = mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1;

GstTracer *leaks_tracer()
{
	GList *tracers = gst_tracing_get_active_tracers();
	GstTracer *found = nullptr;
	for (GList *l = tracers; l; l = l->next) {
		if (!found && g_str_equal(G_OBJECT_TYPE_NAME(l->data), "GstLeaksTracer"))
			found = GST_TRACER(gst_object_ref(l->data));
	}
	g_list_free_full(tracers, gst_object_unref);
	return found;
}

// The objects created since tracking started that are still alive, by type: the checkpoint
// lists every creation and every removal by address. (get-live-objects would steal references
// from the pipeline.)
std::map<std::string, int> alive_since_start(GstTracer *tracer)
{
	GstStructure *info = nullptr;
	g_signal_emit_by_name(tracer, "activity-get-checkpoint", &info);
	if (!info) {
		ADD_FAILURE() << "no checkpoint from the leaks tracer";
		return {};
	}
	std::map<std::string, std::pair<std::string, int>> by_address;
	auto count = [&](const char *field, int sign) {
		const GValue *list = gst_structure_get_value(info, field);
		for (guint i = 0; list && i < gst_value_list_get_size(list); i++) {
			const GstStructure *s = gst_value_get_structure(gst_value_list_get_value(list, i));
			auto &entry = by_address[gst_structure_get_string(s, "address")];
			if (sign > 0)
				entry.first = gst_structure_get_string(s, "type-name");
			entry.second += sign;
		}
	};
	count("objects-created-list", 1);
	count("objects-removed-list", -1);
	gst_structure_free(info);

	std::map<std::string, int> alive;
	for (const auto &[address, entry] : by_address)
		if (entry.second > 0)
			alive[entry.first] += entry.second;
	return alive;
}

// Resident memory after handing freed heap memory back to the system: what stays is memory in
// use, not what the allocator keeps around (which varies from run to run by tens of MB after
// model rebuilds on several threads, and would hide or fake a leak).
long resident_kib()
{
	malloc_trim(0);
	long pages = 0, resident = 0;
	FILE *statm = std::fopen("/proc/self/statm", "r");
	if (statm) {
		if (std::fscanf(statm, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		std::fclose(statm);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// Counts the buffers reaching the sink, and waits for them.
class Counter {
public:
	explicit Counter(GstElement *sink)
	{
		GstPad *pad = gst_element_get_static_pad(sink, "sink");
		gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, probe, this, nullptr);
		gst_object_unref(pad);
	}

	bool wait_for(unsigned int count)
	{
		std::unique_lock<std::mutex> lock(mutex_);
		return cond_.wait_for(lock, std::chrono::seconds(60),
				      [&] { return buffers_ >= count; });
	}

	void reset()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		buffers_ = 0;
	}

private:
	static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *, gpointer data)
	{
		auto *self = static_cast<Counter *>(data);
		std::lock_guard<std::mutex> lock(self->mutex_);
		self->buffers_++;
		self->cond_.notify_all();
		return GST_PAD_PROBE_OK;
	}

	std::mutex mutex_;
	std::condition_variable cond_;
	unsigned int buffers_ = 0;
};

TEST(FrcnnDetectCycles, FiftyReadyPlayingCyclesLeakNothing)
{
	ASSERT_TRUE(tracer_chosen);
	ASSERT_TRUE(fixed_mmap_threshold);
	gst_test::init();
	GstTracer *tracer = leaks_tracer();
	ASSERT_NE(tracer, nullptr) << "the leaks tracer is not active";

	const std::string description =
		"videotestsrc is-live=true pattern=ball ! "
		"video/x-raw,format=RGB,width=160,height=120,framerate=60/1 ! "
		"frcnndetect name=detect model=tiny threshold=0.05 min-size=128 batch-size=2 "
		"batch-timeout=20 weights=\"" + gst_test::weights4() + "\" ! fakesink name=sink sync=false";
	GstElement *pipeline = gst_parse_launch(description.c_str(), nullptr);
	ASSERT_NE(pipeline, nullptr);
	GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
	GstElement *detect = gst_bin_get_by_name(GST_BIN(pipeline), "detect");
	Counter counter(sink);
	GstBus *bus = gst_element_get_bus(pipeline);

	auto cycle = [&](int index) {
		/* Now and then a setting that needs a new model, so models are freed too. */
		if (index % 10 == 9)
			g_object_set(detect, "num-classes", index % 20 == 9 ? 4 : 0, nullptr);
		counter.reset();
		ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
		ASSERT_TRUE(counter.wait_for(3)) << "cycle " << index << ": no frames";
		ASSERT_EQ(gst_element_set_state(pipeline, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
		GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
		ASSERT_EQ(error, nullptr) << "cycle " << index;
		gst_bus_set_flushing(bus, TRUE);
		gst_bus_set_flushing(bus, FALSE);
	};

	/* The first cycles create what lives as long as the process (caches, type data). */
	for (int i = 0; i < 3; i++)
		cycle(-1);
	g_signal_emit_by_name(tracer, "activity-start-tracking");
	const long memory_before = resident_kib();

	for (int i = 0; i < 50 && !HasFatalFailure(); i++)
		cycle(i);

	/* Task threads drop their last reference to the task just after it stopped. */
	gst_task_cleanup_all();
	const std::map<std::string, int> alive = alive_since_start(tracer);
	g_signal_emit_by_name(tracer, "activity-stop-tracking");
	const long memory_after = resident_kib();

	std::string left;
	for (const auto &[type, count] : alive)
		left += type + " x" + std::to_string(count) + " ";
	RecordProperty("objects_left", left);
	RecordProperty("resident_kib_growth", memory_after - memory_before);
	std::printf("objects created and still alive: [%s]; resident memory %ld -> %ld KiB\n",
		    left.c_str(), memory_before, memory_after);
	EXPECT_TRUE(alive.empty()) << "GStreamer objects left behind: " << left;
	/* A tiny model is about 9 MB: five model rebuilds that leaked would show. */
	EXPECT_LT(memory_after - memory_before, 24 * 1024) << "resident memory grew";

	gst_element_set_state(pipeline, GST_STATE_NULL);
	gst_object_unref(bus);
	gst_object_unref(detect);
	gst_object_unref(sink);
	gst_object_unref(pipeline);
	gst_object_unref(tracer);
}

} // namespace

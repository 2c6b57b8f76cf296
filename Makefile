# Set-up, build and test in one place. `make demo` and `make test` work on a fresh Debian 12.
BUILD ?= build
MESON_OPTIONS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Every Debian package the build, the tests and the demo need.
DEB_PACKAGES := \
	build-essential pkg-config meson ninja-build \
	libtorch-dev libopenblas0-openmp libdnnl-dev \
	libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	libopencv-dev nlohmann-json3-dev libcurl4-openssl-dev libssl-dev ca-certificates libgtest-dev \
	zlib1g-dev clang libclang-rt-14-dev \
	python3-torch python3-torchvision python3-skimage python3-matplotlib opencv-doc \
	python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
	fonts-dejavu-core locales

.PHONY: all deps configure build test demo clean fuzz sanitize

# nvcc's usual home, searched after the PATH: where a CUDA toolkit is installed the build
# compiles the CUDA kernels (and links them when LibTorch has CUDA too).
CUDA_HOME ?= /usr/local/cuda
export PATH := $(PATH):$(CUDA_HOME)/bin

all: build

# Installs only what is missing, so a set-up machine does not need the network.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null | grep -qx installed || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTIONS)

configure: deps $(BUILD)/build.ninja

build: configure
	ninja -C $(BUILD)

# Runs every test; the last line printed is "N passed, N failed".
test: build
	@status=0; rm -f $(BUILD)/*.xml; meson test -C $(BUILD) --print-errorlogs --num-processes 1 || status=1; \
	/usr/bin/python3 tests/summary.py $(BUILD)/meson-logs/testlog.json || status=1; \
	exit $$status

demo: build
	./tests/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# Fuzzes the checkpoint reader with libFuzzer for FUZZ_SECONDS, from the committed seed corpus;
# new inputs go to $(FUZZ_BUILD)/corpus, findings to $(FUZZ_BUILD)/crash-* etc.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	[ -f $(FUZZ_BUILD)/build.ninja ] || CXX=clang++ CC=clang meson setup $(FUZZ_BUILD) $(MESON_OPTIONS) \
		-Dfuzz=true -Dgstreamer=disabled -Dtests=disabled -Dbuildtype=debugoptimized
	ninja -C $(FUZZ_BUILD) detector/checkpoint/fuzz/fuzz_checkpoint
	mkdir -p $(FUZZ_BUILD)/corpus
	ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1} $(FUZZ_BUILD)/detector/checkpoint/fuzz/fuzz_checkpoint \
		-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
		-dict=detector/checkpoint/fuzz/checkpoint.dict -artifact_prefix=$(FUZZ_BUILD)/ \
		$(FUZZ_BUILD)/corpus tests/data/checkpoint-corpus

# Builds everything with AddressSanitizer and UndefinedBehaviorSanitizer into $(SANITIZE_BUILD) and
# runs the tests there: memory errors, undefined behaviour and (LeakSanitizer) leaks fail a test.
# Not part of `make test`: the build takes about half an hour on 2 cores, the tests about ten
# minutes. The last line printed is "N passed, N failed".
SANITIZE_BUILD ?= build-asan
# Tests that start programs built elsewhere (gst-launch-1.0, Python, a program built against the
# installed library) which load the sanitized plugin or library: they need the sanitizer runtime
# preloaded, and run without the leak check, which would report the memory those programs keep at
# exit. They run first: GStreamer's plugin scanner (also a program built elsewhere) then fills
# the tests' registry with the sanitized plugin, and loads every other plugin installed, some of
# which keep memory, without the leak check.
SANITIZE_PRELOADED_TESTS := frcnnjson python_example python_example_ids pipeline_scripts state_stress gpu_element_dry_run shapes_model_e2e shapes_model_bf16_e2e shapes_model_int8_e2e train_tool install
# Measures leaks by the resident memory of glibc's allocator, which AddressSanitizer replaces
# (LeakSanitizer checks the same cycles in frcnndetect's tests).
SANITIZE_LEFT_OUT_TESTS := frcnndetect_cycles
SANITIZE_ENV := UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp
sanitize: deps
	[ -f $(SANITIZE_BUILD)/build.ninja ] || meson setup $(SANITIZE_BUILD) $(MESON_OPTIONS) \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
	ninja -C $(SANITIZE_BUILD)
	@echo "Left out under the sanitizers: $(SANITIZE_LEFT_OUT_TESTS)"
	@status=0; rm -f $(SANITIZE_BUILD)/*.xml; \
	in_process=$$(meson test -C $(SANITIZE_BUILD) --list --no-rebuild 2>/dev/null | sed 's|.* / ||' | \
		grep -vxF $(foreach t,$(SANITIZE_PRELOADED_TESTS) $(SANITIZE_LEFT_OUT_TESTS),-e $(t))); \
	$(SANITIZE_ENV) ASAN_OPTIONS=detect_leaks=0 \
		LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so):$$($(CXX) -print-file-name=libubsan.so)" \
		meson test -C $(SANITIZE_BUILD) --print-errorlogs --num-processes 1 -t 10 \
		--logbase preloaded $(SANITIZE_PRELOADED_TESTS) || status=1; \
	$(SANITIZE_ENV) ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
		meson test -C $(SANITIZE_BUILD) --print-errorlogs --num-processes 1 -t 10 \
		--logbase in-process $$in_process || status=1; \
	/usr/bin/python3 tests/summary.py $(SANITIZE_BUILD)/meson-logs/in-process.json \
		$(SANITIZE_BUILD)/meson-logs/preloaded.json || status=1; \
	exit $$status

# CPU benchmark: libfrcnn (frcnn-bench) and torchvision side by side, alternating run by run;
# prints the medians and their ratio (docs/performance.md). Not a test: it takes minutes and its
# figures depend on the machine. E.g. BENCH_ARGS="--rounds 3 --sweep --plot docs/performance.png".
BENCH_ARGS ?=
.PHONY: bench
bench: configure
	ninja -C $(BUILD) detector/tools/frcnn-bench
	/usr/bin/python3 tests/bench.py --build $(BUILD) $(BENCH_ARGS)

# frcnndetect in a pipeline whose state, frame size and format, and batching change at random
# from three threads, for longer than its test (state_stress) does: ends with a summary line,
# fails on a hang or an element's error. E.g. STRESS_ARGS="--cycles 5000 --seed 7".
STRESS_ARGS ?= --cycles 2000
.PHONY: stress
stress: build
	GST_PLUGIN_PATH=$(BUILD)/gst GST_REGISTRY=$(BUILD)/gst-registry.bin \
		/usr/bin/python3 tests/gst/stress_states.py --weights tests/data/shapes-tiny.pth $(STRESS_ARGS)

# What tests/gpu/run.sh needs from this machine on a GPU machine without OpenCV or GStreamer:
# the shapes frames (the GPU tests and the element check read them) and a copy of GStreamer to
# build and run the plugin with (tests/gpu/bundle-gstreamer.sh). Copy build-gpu-inputs along
# with the source tree.
GPU_INPUTS ?= build-gpu-inputs
.PHONY: gpu-inputs
gpu-inputs: build
	rm -rf $(GPU_INPUTS)/shapes && mkdir -p $(GPU_INPUTS)/shapes
	GST_PLUGIN_PATH=$(BUILD)/gst GST_REGISTRY=$(BUILD)/gst-registry.bin gst-launch-1.0 -q \
		frcnnshapesrc seed=90210 scene-frames=1 num-buffers=32 ! \
		video/x-raw,format=RGB,width=320,height=240 ! pnmenc ! \
		multifilesink location=$(GPU_INPUTS)/shapes/shapes-%02d.ppm
	tests/gpu/bundle-gstreamer.sh $(GPU_INPUTS)/gstreamer

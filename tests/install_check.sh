#!/usr/bin/env bash
# What `meson install` puts in place, installed into a scratch folder (DESTDIR): libfrcnn with its
# headers and frcnn.pc, a program built against them only through pkg-config, and the plugin,
# which gst-inspect-1.0 loads from the installed tree (not the build tree) with its elements.
#   install_check.sh BUILD_ROOT OUT_DIR WEIGHTS [PLUGIN]   (PLUGIN: "plugin" when the build has it)
set -euo pipefail
build=$1 out=$2 weights=$3 plugin=${4:-}
fail() { echo "FAIL: $*" >&2; exit 1; }

dest=$out/destdir
rm -rf "$out" && mkdir -p "$out"
# The build is complete when tests run: install what it made without building again.
meson install -C "$build" --destdir "$dest" --no-rebuild >"$out/install.log" 2>&1 ||
	{ cat "$out/install.log" >&2; fail "meson install failed"; }

find_one() {
	local found
	found=$(find "$dest" -name "$1" \( -type f -o -type l \) | head -1)
	[ -n "$found" ] || fail "$1 was not installed"
	echo "$found"
}
lib=$(find_one libfrcnn.so)
pc=$(find_one frcnn.pc)
header=$(find_one detector.h)
[ "$(basename "$(dirname "$header")")" = frcnn ] || fail "the headers are not in a frcnn/ folder: $header"
find_one frcnn-bench >/dev/null # built in every build (frcnn-detect needs OpenCV)
libdir=$(dirname "$lib")
echo "installed: $lib, $pc, $(dirname "$header")"

# A program that knows the library only through pkg-config: every installed header (each must
# build with frcnn.pc's flags; the model's include LibTorch's), the Detector facade on the test
# weights.
for installed in "$(dirname "$header")"/*.h; do
	echo "#include \"frcnn/$(basename "$installed")\""
done >"$out/consumer.cpp"
cat >>"$out/consumer.cpp" <<'CPP'
#include <cstdio>
#include <vector>

int main(int argc, char **argv)
{
	frcnn::DetectorOptions options;
	options.model = frcnn::model_preset("tiny");
	options.model.num_classes = 4;
	options.model.min_size = 96;
	options.model.max_size = 128;
	options.weights = argc > 1 ? argv[1] : "";
	frcnn::Detector detector(options);
	std::vector<uint8_t> pixels(128 * 96 * 3, 90);
	for (int y = 30; y < 70; y++)
		for (int x = 40; x < 90; x++)
			pixels[(y * 128 + x) * 3 + 1] = 220;
	frcnn::FrameView frame;
	frame.format = frcnn::PixelFormat::RGB;
	frame.width = 128;
	frame.height = 96;
	frame.planes[0] = pixels.data();
	frame.strides[0] = 128 * 3;
	const auto detections = detector.detect(std::vector<frcnn::FrameView>{frame});
	std::printf("frames %zu\n", detections.size());
	return detections.size() == 1 ? 0 : 1;
}
CPP
# The .pc names the installed prefix, here inside the scratch folder (LibTorch's folders stay).
prefix=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=prefix frcnn) || fail "pkg-config does not know frcnn"
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$dest$prefix" --cflags --libs frcnn)
echo "pkg-config --cflags --libs frcnn: $flags"
# shellcheck disable=SC2086 # the flags are words
g++ -std=c++17 -o "$out/consumer" "$out/consumer.cpp" $flags || fail "a program does not build with the installed headers and frcnn.pc"
LD_LIBRARY_PATH=$libdir "$out/consumer" "$weights" | grep -x "frames 1" >/dev/null || fail "the program built against the installed library does not run"
LD_LIBRARY_PATH=$libdir ldd "$out/consumer" | grep -F "libfrcnn.so" | grep -F "$dest" >/dev/null ||
	fail "the program does not load the installed libfrcnn"

# The same program against the build tree, through the frcnn-uninstalled.pc meson writes there
# (PKG_CONFIG_PATH=BUILD/meson-uninstalled): the headers come from the source tree.
uninstalled=$build/meson-uninstalled
[ -f "$uninstalled/frcnn-uninstalled.pc" ] || fail "meson wrote no frcnn-uninstalled.pc in $uninstalled"
flags=$(PKG_CONFIG_PATH=$uninstalled pkg-config --cflags --libs frcnn-uninstalled) ||
	fail "pkg-config does not know frcnn-uninstalled"
echo "pkg-config --cflags --libs frcnn-uninstalled: $flags"
# shellcheck disable=SC2086 # the flags are words
g++ -std=c++17 -o "$out/consumer-uninstalled" "$out/consumer.cpp" $flags ||
	fail "a program does not build against the build tree with frcnn-uninstalled.pc"
LD_LIBRARY_PATH=$build/detector "$out/consumer-uninstalled" "$weights" | grep -x "frames 1" >/dev/null ||
	fail "the program built against the build tree does not run"

if [ "$plugin" = plugin ]; then
	so=$(find_one libgstfrcnn.so)
	[ "$(basename "$(dirname "$so")")" = gstreamer-1.0 ] || fail "the plugin is not in a gstreamer-1.0 folder: $so"
	# Only the installed plugin folder, a registry of its own, libfrcnn from the installed tree.
	inspect() {
		GST_PLUGIN_SYSTEM_PATH_1_0= GST_PLUGIN_PATH_1_0=$(dirname "$so") \
			GST_REGISTRY=$out/registry.bin LD_LIBRARY_PATH=$libdir gst-inspect-1.0 "$@"
	}
	elements=$(inspect frcnn) || fail "gst-inspect-1.0 does not load the installed plugin"
	for element in frcnndetect frcnnjson; do
		grep -q "$element" <<<"$elements" || fail "the installed plugin has no $element"
	done
	details=$(inspect frcnndetect) || fail "gst-inspect-1.0 frcnndetect failed"
	grep -q "inference-region" <<<"$details" || fail "gst-inspect-1.0 frcnndetect shows no properties"
	LD_LIBRARY_PATH=$libdir ldd "$so" | grep -F "libfrcnn.so" | grep -F "$dest" >/dev/null ||
		fail "the installed plugin does not load the installed libfrcnn"
	echo "the installed plugin loads: $(grep -c 'frcnn' <<<"$elements") lines of gst-inspect-1.0 frcnn"
fi
echo "PASS"

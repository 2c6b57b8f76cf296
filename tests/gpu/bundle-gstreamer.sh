#!/bin/bash
# Copies this machine's GStreamer (the Debian 12 packages the README installs) into one folder, for
# a GPU machine that has no GStreamer and cannot install it: tests/gpu/run.sh builds the plugin
# against the folder there and runs the element on the GPU (tests/gpu/element_check.py).
#
#   tests/gpu/bundle-gstreamer.sh [DIR]      (default: build-gpu-inputs/gstreamer, which run.sh reads)
#
# What it holds: the libraries the plugin links (GStreamer core, base and video, GLib, ORC) and
# everything they load but the C and C++ runtimes, the plugins the element check uses (filesrc,
# fakesink, queue; rawvideoparse; videoconvert; videotestsrc), gst-launch-1.0, gst-inspect-1.0 and
# the plugin scanner, the headers and pkg-config files (their paths relative to the folder), and
# env.sh, which sets PATH, LD_LIBRARY_PATH, PKG_CONFIG_PATH and GStreamer's plugin variables for it.
# The other machine needs an x86-64 glibc at least as new as this one's (2.36).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-$ROOT/build-gpu-inputs/gstreamer}
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
SYSLIB=/usr/lib/$MULTIARCH
GSTLIB=$SYSLIB/gstreamer-1.0
PACKAGES=(gstreamer-1.0 gstreamer-base-1.0 gstreamer-video-1.0)
PLUGINS=(coreelements rawparse videoconvertscale videotestsrc)
PROGRAMS=(/usr/bin/gst-launch-1.0 /usr/bin/gst-inspect-1.0
	  "$SYSLIB/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner")

for pkg in "${PACKAGES[@]}"; do
	pkg-config --exists "$pkg" || { echo "$pkg not found: install libgstreamer-plugins-base1.0-dev"; exit 1; }
done
for plugin in "${PLUGINS[@]}"; do
	[ -f "$GSTLIB/libgst$plugin.so" ] || { echo "no $GSTLIB/libgst$plugin.so: install gstreamer1.0-plugins-base"; exit 1; }
done

rm -rf "$DEST"
mkdir -p "$DEST/lib" "$DEST/lib/common" "$DEST/lib/pkgconfig" "$DEST/plugins" "$DEST/bin" "$DEST/include"

# Runtime libraries: every library the programs and plugins load, but the C and C++ runtimes
# (the other machine's own, newer ones). Libraries nearly every Linux system has (compression,
# libffi, PCRE2) go to lib/common, used only where the system lacks them (env.sh).
is_runtime() { case "$1" in linux-vdso*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libstdc++*|libgcc_s*) return 0;; esac; return 1; }
is_common() { case "$1" in libz.so*|liblzma.so*|libbz2.so*|libzstd.so*|libffi.so*|libpcre2-8.so*) return 0;; esac; return 1; }
objects=("${PROGRAMS[@]}")
for plugin in "${PLUGINS[@]}"; do objects+=("$GSTLIB/libgst$plugin.so"); done
for pkg in "${PACKAGES[@]}"; do
	for lib in $(pkg-config --libs-only-l "$pkg" | sed 's/-l//g'); do objects+=("$SYSLIB/lib$lib.so"); done
done
ldd "${objects[@]}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
while read -r soname path; do
	is_runtime "$soname" && continue
	if is_common "$soname"; then cp -L "$path" "$DEST/lib/common/$soname"; else cp -L "$path" "$DEST/lib/$soname"; fi
done

# Link names (-lgstreamer-1.0 ...) for the build, next to the libraries they name.
for pkg in "${PACKAGES[@]}"; do
	for lib in $(pkg-config --libs-only-l "$pkg" | sed 's/-l//g'); do
		soname=$(basename "$(readlink -f "$SYSLIB/lib$lib.so")" | sed -E 's/(\.so\.[0-9]+).*/\1/')
		ln -sf "$soname" "$DEST/lib/lib$lib.so"
	done
done

for plugin in "${PLUGINS[@]}"; do cp "$GSTLIB/libgst$plugin.so" "$DEST/plugins/"; done
for program in "${PROGRAMS[@]}"; do cp "$program" "$DEST/bin/"; done

# Headers and pkg-config files: the packages, what they require (publicly and privately: pkg-config
# reads both), with the paths rewritten relative to the folder.
cp -r /usr/include/gstreamer-1.0 /usr/include/glib-2.0 /usr/include/orc-0.4 "$DEST/include/"
cp "$SYSLIB/glib-2.0/include/glibconfig.h" "$DEST/include/glib-2.0/"
declare -A seen=()
queue=("${PACKAGES[@]}")
while [ ${#queue[@]} -gt 0 ]; do
	pkg=${queue[0]}
	queue=("${queue[@]:1}")
	[ -n "${seen[$pkg]:-}" ] && continue
	seen[$pkg]=1
	pc="$(pkg-config --variable=pcfiledir "$pkg")/$pkg.pc"
	sed -e 's|^prefix=.*|prefix=${pcfiledir}/../..|' \
	    -e 's|^exec_prefix=.*|exec_prefix=${prefix}|' \
	    -e 's|^libdir=.*|libdir=${prefix}/lib|' \
	    -e 's|^includedir=.*|includedir=${prefix}/include|' \
	    -e "s|\${libdir}/glib-2.0/include|\${includedir}/glib-2.0|g" \
	    -e "s|-I/usr/include/$MULTIARCH||g" \
	    "$pc" > "$DEST/lib/pkgconfig/$pkg.pc"
	for req in $(pkg-config --print-requires --print-requires-private "$pkg" | awk '{print $1}'); do
		queue+=("$req")
	done
done

cat > "$DEST/env.sh" <<'ENVEOF'
# Source this to use the GStreamer in this folder: `. DIR/env.sh`.
GST_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The common libraries only where the system has none of that name.
rm -rf "$GST_BUNDLE/lib/missing" && mkdir -p "$GST_BUNDLE/lib/missing"
known=$({ command -v ldconfig >/dev/null && ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null)
for lib in "$GST_BUNDLE"/lib/common/*; do
	name=$(basename "$lib")
	if ! grep -q "^[[:space:]]*$name " <<<"$known"; then
		ln -sf "$lib" "$GST_BUNDLE/lib/missing/$name"
	fi
done
export PATH=$GST_BUNDLE/bin:$PATH
export LD_LIBRARY_PATH=$GST_BUNDLE/lib:$GST_BUNDLE/lib/missing${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$GST_BUNDLE/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export GST_PLUGIN_SYSTEM_PATH_1_0=$GST_BUNDLE/plugins
export GST_PLUGIN_SCANNER_1_0=$GST_BUNDLE/bin/gst-plugin-scanner
ENVEOF

echo "GStreamer $(pkg-config --modversion gstreamer-1.0) copied to $DEST ($(du -sh "$DEST" | cut -f1)):"
echo "  $(ls "$DEST/lib" | grep -c '\.so\.') libraries, $(ls "$DEST/lib/common" | wc -l) common ones, plugins: ${PLUGINS[*]}"

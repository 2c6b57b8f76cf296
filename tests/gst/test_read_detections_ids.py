#!/usr/bin/env python3
"""read_detections() of docs/examples/read_detections.py finds every region of interest on a
buffer: ids that start above 0 (regions of another element before frcnndetect's), gaps (regions
an application removed), and it stops on a buffer whose regions share an id; a start that fails
(weights that do not exist) exits with status 1 and leaves the pipeline in NULL (GStreamer
complains of elements disposed in another state); skipped_by() reads frcnndetect's skipped-frame
meta, and with --interval 2 the frames between detections say so.

    test_read_detections_ids.py EXAMPLE WEIGHTS VIDEO   (WEIGHTS: the tiny 4-class model's)"""
import importlib.util
import subprocess
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402


def load_example(path):
    spec = importlib.util.spec_from_file_location("read_detections", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def buffer_with_regions(ids):
    buffer = Gst.Buffer.new_allocate(None, 16, None)
    for roi_id in ids:
        roi = GstVideo.buffer_add_video_region_of_interest_meta(buffer, f"r{roi_id}", roi_id, 0, 10, 10)
        roi.id = roi_id
    return buffer


def main():
    Gst.init(None)
    example = load_example(sys.argv[1])
    failures = 0
    cases = [
        ([], []),
        ([0, 1, 2], [0, 1, 2]),
        ([7, 8, 9], [7, 8, 9]),            # another element's region first, then frcnndetect's
        ([0, 2, 5], [0, 2, 5]),            # regions removed in between
        ([3000], [3000]),                  # far from 0, within the gap allowed
    ]
    for ids, expected in cases:
        found = [d["rect"][0] for d in example.read_detections(buffer_with_regions(ids))]
        if found != expected:
            print(f"FAIL: regions {ids}: read {found}, expected {expected}")
            failures += 1
        else:
            print(f"ok: regions {ids}")
    # Two regions of id 0: one is found, and the scan ends.
    found = example.read_detections(buffer_with_regions([0, 0]))
    if len(found) != 1:
        print(f"FAIL: two regions of id 0: read {len(found)}, expected 1")
        failures += 1
    else:
        print("ok: two regions of id 0 read once")
    run = subprocess.run([sys.executable, sys.argv[1], "--model", "tiny", "--weights", "/nonexistent/weights.pth",
                          "/usr/share/doc/opencv-doc/examples/data/Megamind.avi"],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 1 or "error:" not in run.stderr or "CRITICAL" in run.stderr:
        print(f"FAIL: a start that fails: status {run.returncode}, stderr: {run.stderr}")
        failures += 1
    else:
        print("ok: a start that fails exits with 1, nothing left running")

    # The meta as an application reads it: GStreamer's custom meta, looked up by name.
    buffer = Gst.Buffer.new_allocate(None, 16, None)
    if example.skipped_by(buffer) is not None:
        print("FAIL: a buffer without the meta is said to be skipped")
        failures += 1
    run = subprocess.run([sys.executable, sys.argv[1], "--model", "tiny", "--weights", sys.argv[2],
                          "--threshold", "0.05", "--frames", "4", "--interval", "2", sys.argv[3]],
                         capture_output=True, text=True, timeout=120)
    frames = [line for line in run.stdout.splitlines() if line.startswith("frame ")]
    skipped = [i for i, line in enumerate(frames) if line.endswith("not detected on (detect: interval)")]
    if run.returncode != 0 or len(frames) != 4 or skipped != [1, 3]:
        print(f"FAIL: --interval 2: status {run.returncode}, frames {frames}, stderr: {run.stderr}")
        failures += 1
    else:
        print("ok: --interval 2: frames 1 and 3 read as skipped by the detector, for its interval")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

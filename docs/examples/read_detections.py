#!/usr/bin/env python3
"""Runs frcnndetect on the first frames of a video and prints the detections of each frame.

The detections are read from the GstVideoRegionOfInterestMeta that frcnndetect attaches to every
buffer, in a pad probe, the way an application reads them from any element downstream.

    read_detections.py --weights coco street.mp4
    read_detections.py --model tiny --weights my-shapes.pth --frames 10 clip.avi
    read_detections.py --weights coco --interval 3 street.mp4   # detects on every third frame
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402


# Ids tried past the last region found before giving up: regions of other producers may share
# an id (GStreamer's default is 0), and a region with a shared id is found once.
MAX_ID_GAP = 4096


def read_detections(buffer):
    """The regions of interest on a buffer as dicts, in id order (frcnndetect's: best first).

    GStreamer 1.22's Python bindings cannot walk all metas of one type (Gst.Buffer.foreach_meta
    does not hand its callback the meta), so the metas are counted and then fetched by id:
    frcnndetect numbers its regions after the highest id already on the buffer (0, 1, 2, ...
    on a frame that had none), and an application may have removed some, so ids can start
    above 0 and have gaps.
    """
    api = GstVideo.VideoRegionOfInterestMeta.get_info().api
    remaining = buffer.get_n_meta(api)
    detections = []
    roi_id = last_found = 0
    while remaining > 0 and roi_id - last_found <= MAX_ID_GAP:
        roi = GstVideo.buffer_get_video_region_of_interest_meta_id(buffer, roi_id)
        roi_id += 1
        if roi is None:
            continue
        last_found = roi_id
        remaining -= 1
        detection = {
            "roi_type": GLib.quark_to_string(roi.roi_type),
            "rect": (roi.x, roi.y, roi.w, roi.h),  # frame pixels
            # -1, or the id of the region it was found in (inference-region=roi-list)
            "parent_id": roi.parent_id,
        }
        param = roi.get_param("detection")
        if param is not None:
            ok_id, label_id = param.get_int("label_id")
            ok_score, confidence = param.get_double("confidence")
            box = [param.get_double(name)[1] for name in ("x_min", "y_min", "x_max", "y_max")]
            detection.update(label=param.get_string("label"),
                             label_id=label_id if ok_id else None,
                             confidence=confidence if ok_score else None,
                             box=box)  # normalised to 0..1
        detections.append(detection)
    return detections


def skipped_by(buffer):
    """(element, reason) when a detector passed the buffer on without running on it (its
    `interval`, a frame late downstream, a gap), else None: its regions of interest, none
    perhaps, are not that detector's findings. frcnndetect marks such a frame with a custom
    meta, GstFrcnnSkippedMeta, whose structure has the strings "element" and "reason"."""
    meta = buffer.get_custom_meta("GstFrcnnSkippedMeta")
    if meta is None:
        return None
    structure = meta.get_structure()
    return structure.get_string("element"), structure.get_string("reason")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="a video file GStreamer can decode")
    parser.add_argument("--weights", required=True, help="checkpoint file or preset name (coco)")
    parser.add_argument("--model", help="model preset, when the weights are a file")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold")
    parser.add_argument("--frames", type=int, default=5, help="frames to run (default 5)")
    parser.add_argument("--interval", type=int, default=1, help="detect on one frame in N")
    args = parser.parse_args()

    Gst.init(None)
    pipeline = Gst.parse_launch(
        "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=RGB ! "
        "frcnndetect name=detect ! fakesink name=sink")
    pipeline.get_by_name("src").set_property("location", args.video)
    detect = pipeline.get_by_name("detect")
    detect.set_property("weights", args.weights)
    if args.model:
        detect.set_property("model", args.model)
    detect.set_property("threshold", args.threshold)
    detect.set_property("interval", args.interval)

    loop = GLib.MainLoop()
    state = {"frames": 0, "detections": 0, "error": None}

    def on_buffer(pad, info):
        buffer = info.get_buffer()
        caps = pad.get_current_caps().get_structure(0)
        width, height = caps.get_value("width"), caps.get_value("height")
        detections = read_detections(buffer)
        skipped = skipped_by(buffer)
        if skipped:
            print(f"frame {state['frames']} pts {buffer.pts / Gst.SECOND:.3f}s: "
                  f"not detected on ({skipped[0]}: {skipped[1]})")
        else:
            print(f"frame {state['frames']} pts {buffer.pts / Gst.SECOND:.3f}s: "
                  f"{len(detections)} detections")
        for d in detections:
            if "box" not in d:  # a region from another element, without a "detection" param
                print(f"  {d['roi_type']:<16} rect {d['rect']}")
                continue
            x1, y1, x2, y2 = d["box"]
            print(f"  {d['label']:<16} id {d['label_id']:<3} score {d['confidence']:.3f} "
                  f"box ({x1 * width:.1f}, {y1 * height:.1f}, {x2 * width:.1f}, "
                  f"{y2 * height:.1f})")
        state["frames"] += 1
        state["detections"] += len(detections)
        if state["frames"] == args.frames:
            # Stop from the main loop, not from the streaming thread.
            GLib.idle_add(loop.quit)
            return Gst.PadProbeReturn.REMOVE
        return Gst.PadProbeReturn.OK

    detect.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_buffer)

    def on_message(bus, message):
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            state["error"] = error.message
            loop.quit()
        elif message.type == Gst.MessageType.EOS:
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)

    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        message = bus.pop_filtered(Gst.MessageType.ERROR)
        print("error:", message.parse_error()[0].message if message else "state change failed",
              file=sys.stderr)
        # Elements are released in NULL only.
        pipeline.set_state(Gst.State.NULL)
        bus.remove_signal_watch()
        return 1
    loop.run()
    # What the element did since it started.
    stats = detect.get_property("stats")
    print(f"model: {stats.get_uint64('frames-detected')[1]} frames in "
          f"{stats.get_uint64('batches')[1]} batches, "
          f"{stats.get_double('model-frames-per-second')[1]:.1f} frames/s")
    pipeline.set_state(Gst.State.NULL)
    bus.remove_signal_watch()

    if state["error"]:
        print("error:", state["error"], file=sys.stderr)
        return 1
    print(f"{state['frames']} frames, {state['detections']} detections")
    return 0 if state["frames"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

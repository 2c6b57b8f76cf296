#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""State changes, flushing seeks and EOS racing caps and property changes, as an application
makes them: frcnnshapesrc ! capsfilter ! videoconvert ! capsfilter ! ELEMENT ! queue ! fakesink
sync=true. The main thread changes the pipeline's state (NULL, READY, PAUSED or PLAYING, at
random), seeks, or sends EOS while the pipeline plays; one thread changes the frame size and
format upstream of the element (a resolution or format change mid-stream), another its batching
and threshold properties.

Fails (exit 1) when an action does not return within --timeout seconds (a hang: the threads'
Python stacks are printed; attach gdb to the pid printed for the native ones) or when an element
posts an error, but for the source's not-negotiated errors where the size capsfilter got new caps
while the source's frames of the caps before were on their way (capsfilter's race, counted apart).
The last line is a summary of what ran.

EOS is sent only while the pipeline plays: sent while it is paused, gst_element_send_event() holds
the pipeline's state lock and waits for the source's stream lock, which the source's thread holds
while downstream blocks it (a prerolled sink, or a serialized query waiting behind one), so the send
and any other thread's set_state wait for each other for ever. That is GStreamer's own (run with
--element identity to see it with --eos-when-paused) and not the element's.
"""
import argparse
import contextlib
import faulthandler
import os
import random
import sys
import threading
import time

import gi

gi.require_version('Gst', '1.0')
from gi.repository import Gst  # noqa: E402

SIZES = [(320, 240), (160, 120), (322, 242), (640, 360)]
FORMATS = ['I420', 'NV12', 'RGB', 'BGRx', 'YUY2']
# Properties of frcnndetect that may change while it plays, and values to set them to.
PROPERTY_VALUES = {
    'batch-size': [1, 2, 3, 5],
    'batch-timeout': [0, 5, 20],
    'interval': [1, 2, 3],
    'threshold': [0.05, 0.5],
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', help="frcnndetect's weights (a file, a preset or a URL)")
    parser.add_argument('--element', help='the element under test, a gst-launch description '
                        '(default: frcnndetect with --weights)')
    parser.add_argument('--cycles', type=int, default=200, help='actions of the main thread (200)')
    parser.add_argument('--seed', type=int, default=0, help='seeds the random actions (0)')
    parser.add_argument('--timeout', type=float, default=60,
                        help='seconds an action may take before it counts as a hang (60)')
    parser.add_argument('--eos-when-paused', action='store_true',
                        help='also send EOS while the pipeline is paused (hangs in GStreamer)')
    args = parser.parse_args()
    if not args.element and not args.weights:
        parser.error('give --weights (or --element)')
    if args.cycles < 1 or args.timeout <= 0:
        parser.error('--cycles and --timeout must be positive')
    return args


class Watchdog:
    """Ends the process when the action under way takes longer than `timeout` seconds."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.lock = threading.Lock()
        self.action = None
        self.started = 0.0
        threading.Thread(target=self._watch, daemon=True).start()

    @contextlib.contextmanager
    def watching(self, action):
        with self.lock:
            self.action, self.started = action, time.monotonic()
        yield
        with self.lock:
            self.action = None

    def _watch(self):
        while True:
            time.sleep(0.5)
            with self.lock:
                hung = self.action is not None and time.monotonic() - self.started > self.timeout
                action = self.action
            if hung:
                print(f'hang: {action} did not return in {self.timeout:g} s (pid {os.getpid()}); '
                      'the threads:', flush=True)
                faulthandler.dump_traceback(all_threads=True)
                sys.stdout.flush()
                os._exit(1)


def main():
    args = parse_args()
    Gst.init(None)
    rng = random.Random(args.seed)
    element = args.element or f'frcnndetect weights="{args.weights}" batch-size=3 batch-timeout=20'
    pipeline = Gst.parse_launch(
        'frcnnshapesrc name=source ! capsfilter name=size caps=video/x-raw,width=320,height=240 ! videoconvert ! '
        f'capsfilter name=format caps=video/x-raw,format=I420 ! {element} name=under_test ! '
        'queue max-size-buffers=2 ! fakesink sync=true')
    source = pipeline.get_by_name('source')
    size_filter = pipeline.get_by_name('size')
    format_filter = pipeline.get_by_name('format')
    under_test = pipeline.get_by_name('under_test')
    properties = {name: values for name, values in PROPERTY_VALUES.items()
                  if under_test.find_property(name)}

    counts = dict.fromkeys(['state changes', 'EOS', 'seeks', 'caps changes', 'property changes',
                            'caps races upstream'], 0)
    stopping = threading.Event()

    def change_caps():
        thread_rng = random.Random(args.seed + 1)
        while not stopping.wait(thread_rng.uniform(0, 0.05)):
            width, height = thread_rng.choice(SIZES)
            size_filter.set_property('caps', Gst.Caps.from_string(
                f'video/x-raw,width={width},height={height}'))
            format_filter.set_property('caps', Gst.Caps.from_string(
                f'video/x-raw,format={thread_rng.choice(FORMATS)}'))
            counts['caps changes'] += 1

    def change_properties():
        thread_rng = random.Random(args.seed + 2)
        while properties and not stopping.wait(thread_rng.uniform(0, 0.05)):
            name = thread_rng.choice(sorted(properties))
            under_test.set_property(name, thread_rng.choice(properties[name]))
            counts['property changes'] += 1

    watchdog = Watchdog(args.timeout)
    threads = [threading.Thread(target=change_caps), threading.Thread(target=change_properties)]
    for thread in threads:
        thread.start()

    errors = []
    bus = pipeline.get_bus()
    states = [Gst.State.NULL, Gst.State.READY, Gst.State.PAUSED, Gst.State.PLAYING]
    for cycle in range(args.cycles):
        current = pipeline.get_state(0)[1]
        choice = rng.random()
        if choice < 0.15 and (current == Gst.State.PLAYING or
                              (args.eos_when_paused and current == Gst.State.PAUSED)):
            with watchdog.watching(f'cycle {cycle}: EOS sent in {current.value_nick}'):
                pipeline.send_event(Gst.Event.new_eos())
            counts['EOS'] += 1
        elif choice < 0.3 and current >= Gst.State.PAUSED:
            with watchdog.watching(f'cycle {cycle}: a flushing seek in {current.value_nick}'):
                pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0)
            counts['seeks'] += 1
        else:
            state = rng.choice(states)
            with watchdog.watching(f'cycle {cycle}: {current.value_nick} to {state.value_nick}'):
                pipeline.set_state(state)
            # An asynchronous change that has not completed (a pipeline that ended its
            # stream does not preroll again until a flush) is no hang: only the call is watched.
            pipeline.get_state(2 * Gst.SECOND)
            counts['state changes'] += 1
        while True:
            message = bus.pop_filtered(Gst.MessageType.ERROR)
            if not message:
                break
            error, debug = message.parse_error()
            if message.src == source and 'not-negotiated' in (debug or ''):
                # The size capsfilter was given new caps between the source's choice of caps
                # and their arrival at it: capsfilter's race, not the element's.
                counts['caps races upstream'] += 1
                continue
            errors.append(f'cycle {cycle}: {message.src.get_path_string()}: {error.message} ({debug})')
        time.sleep(rng.uniform(0, 0.03))

    stopping.set()
    # A caps or property change that blocks is a hang too.
    with watchdog.watching('the last caps and property changes'):
        for thread in threads:
            thread.join()
    with watchdog.watching('the final change to NULL'):
        pipeline.set_state(Gst.State.NULL)

    for error in errors[:20]:
        print('error:', error)
    summary = ', '.join(f'{count} {what}' for what, count in counts.items())
    print(f'{args.cycles} cycles ({summary}): no hang, {len(errors)} errors')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())

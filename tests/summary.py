#!/usr/bin/env python3
"""Prints "N passed, N failed" for a meson test run, counting every GoogleTest case.

Reads meson's testlog.json; for a GoogleTest program it counts the cases in the XML report that
program wrote. A program that failed without reporting a failed case (a crash, a timeout) counts
as one more failure. Skipped cases count as neither. Exits non-zero when anything failed.
Several logs (runs of parts of the tests in one build) are added up.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET


def gtest_counts(path):
    passed = failed = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.get("result") == "skipped" or case.get("status") == "notrun" or case.find("skipped") is not None:
            continue
        else:
            passed += 1
    return passed, failed


def log_counts(log):
    """(passed, failed) of one meson test log."""
    build_dir = os.path.dirname(os.path.dirname(os.path.abspath(log)))
    passed = failed = 0
    if not os.path.exists(log):
        print("no test log at %s: the build or the test run failed" % log, file=sys.stderr)
        return 0, 1
    with open(log) as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            ok = entry.get("result") in ("OK", "EXPECTEDFAIL")
            skipped = entry.get("result") == "SKIP"
            # meson names a test "project:suite / name"; GoogleTest wrote "name.xml".
            short = entry["name"].split(" / ")[-1]
            report = os.path.join(build_dir, short + ".xml")
            if entry.get("protocol", "") == "gtest" or os.path.exists(report):
                p = f_ = 0
                if os.path.exists(report) and os.path.getmtime(report) >= os.path.getmtime(log) - 24 * 3600:
                    try:
                        p, f_ = gtest_counts(report)
                    except ET.ParseError:
                        pass
                if not ok and not skipped and f_ == 0:
                    f_ = 1
                passed += p
                failed += f_
            elif ok:
                passed += 1
            elif not skipped:
                failed += 1
    return passed, failed


def main():
    logs = sys.argv[1:] or ["build/meson-logs/testlog.json"]
    passed = failed = 0
    for log in logs:
        p, f_ = log_counts(log)
        passed += p
        failed += f_
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Classifies libFuzzer findings: ours (fails CI) or inside the uninstrumented HDF5 library.

usage: triage.py FUZZ_BINARY ARTIFACT...

Each artifact (crash-, leak-, timeout-, oom-, slow-unit-) is replayed once with -timeout=5. The
first stack frame of the report that is not the sanitizer runtime, libFuzzer or libc decides:
a frame in libhdf5 is a third-party finding (HDF5 1.10.8 trusts corrupt metadata in places:
docs/reliability.md), anything else (the engine, stb_image compiled into it, the harness) is
ours (engine/io/image.cpp pre-checks what stb_image 2.27 does not). A report without any
frame (e.g. an OOM of the whole process) counts as ours. Prints one line per artifact; exit
status 1 when any finding is ours.
"""
import os
import re
import subprocess
import sys

SKIP = re.compile(r"__interceptor_|__asan|__sanitizer|__lsan|__ubsan|fuzzer::|libFuzzer|"
                  r"\bmalloc\b|\bcalloc\b|\brealloc\b|\bstrn?dup\b|__mem(set|cpy|move|cmp)|"
                  r"\bmem(set|cpy|move|cmp)\b|sysdeps/|operator new|__libc_|libc\.so|libstdc\+\+|"
                  r"libgcc_s|AlarmCallback|CrashCallback|StaticAlarmCallback|"
                  r"\(linux-vdso|<unknown module>|\?\?|^main \(")
FRAME = re.compile(r"^\s+#\d+ 0x[0-9a-f]+ (?:in )?(.*)$")


OOM_LIMITS = ["-rss_limit_mb=4096", "-malloc_limit_mb=256"]


def replay(binary, artifact, limits):
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":abort_on_error=0")
    p = subprocess.run([binary, "-timeout=5"] + limits + [artifact],
                       capture_output=True, text=True, errors="replace", timeout=120, env=env)
    return p, p.stdout + p.stderr


def classify(binary, artifact):
    try:
        # An out-of-memory report from the RSS watchdog has no stack of the culprit: replayed
        # with a malloc limit, the large allocation itself is reported with its stack. The same
        # when an artifact saved as something else (a timeout under load) replays as one.
        oom = "oom-" in os.path.basename(artifact)
        p, out = replay(binary, artifact, OOM_LIMITS if oom else ["-rss_limit_mb=2048"])
        if not oom and "libFuzzer: out-of-memory (used:" in out:
            p, out = replay(binary, artifact, OOM_LIMITS)
    except subprocess.TimeoutExpired:
        return "ours", "replay did not finish in 120 s"
    if p.returncode == 0:
        return "gone", "replays cleanly now"
    report = out
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error",
                   "out-of-memory (malloc(",
                   "ERROR: libFuzzer", "==ERROR"):
        at = out.find(marker)
        if at >= 0:
            report = out[at:]
            break
    for line in report.splitlines():
        m = FRAME.match(line)
        if not m:
            continue
        where = m.group(1)
        if SKIP.search(where):
            continue
        summary = next((l for l in report.splitlines() if l.startswith("SUMMARY")), "")
        if "libhdf5" in where:
            return "hdf5", where[:120] + " | " + summary[:120]
        return "ours", where[:160] + " | " + summary[:120]
    return "ours", "no stack frame in the report: " + report[:200].replace("\n", " ")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, ours = sys.argv[1], 0
    for a in sys.argv[2:]:
        kind, why = classify(binary, a)
        ours += kind == "ours"
        print("%-5s %s: %s" % (kind, os.path.basename(a), why))
    sys.exit(1 if ours else 0)


if __name__ == "__main__":
    main()

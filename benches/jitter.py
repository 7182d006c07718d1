#!/usr/bin/env python3
"""The machine's own scheduling noise, for benchmark headers (benches/knee.sh).

    benches/jitter.py [SECONDS]      default 5

Sleeps 0.5 ms again and again and measures how late each wake-up is. On an idle machine
every wake-up late by a millisecond or more is delay no process of ours caused: the
hypervisor running something else on our virtual CPU, for instance. The latency tails of a
benchmark on that machine carry it too, at every hop. Prints one line: wake-ups, how many
were late by more than 1 ms and 2.5 ms, and the worst.
"""
import sys
import time

SLEEP_S = 0.0005


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    late = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = time.monotonic()
        time.sleep(SLEEP_S)
        late.append(time.monotonic() - before - SLEEP_S)
    over_1 = sum(1 for s in late if s > 0.001)
    over_2_5 = sum(1 for s in late if s > 0.0025)
    late.sort()
    p99 = late[int(len(late) * 0.99)]
    print(
        f"wake-up noise over {seconds:g} s: {len(late)} sleeps of 0.5 ms, late by > 1 ms: "
        f"{over_1}, > 2.5 ms: {over_2_5}, p99 {p99 * 1000:.2f} ms, worst {late[-1] * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()

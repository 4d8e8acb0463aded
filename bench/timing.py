"""Step timing on a shared machine: warm-up, repeats, and dropping steps taken under load.

Other processes on this 2-core machine make a step 3-12x slower, so every timed step is
bracketed by two reads of /proc/stat: the CPU time the whole machine spent busy, minus the
CPU time of this process, divided by the step's wall time, is the number of cores that
foreign processes used meanwhile. Steps above `max_foreign` cores are dropped (and counted);
if too few clean steps come within `max_steps`, the loaded ones are kept and flagged.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable

_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU-seconds all cores spent outside idle/iowait since boot (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


def own_cpu_seconds() -> float:
    """CPU-seconds (user + system, all threads) this process used so far."""
    t = os.times()
    return t.user + t.system


class LoadProbe:
    """Measures the foreign CPU load (in cores) over the interval between start() and stop()."""

    def start(self):
        self._wall = time.perf_counter()
        self._busy = machine_busy_seconds()
        self._own = own_cpu_seconds()

    def stop(self) -> tuple[float, float]:
        """(wall seconds, foreign cores) since start()."""
        wall = time.perf_counter() - self._wall
        foreign = (machine_busy_seconds() - self._busy) - (own_cpu_seconds() - self._own)
        return wall, max(foreign, 0.0) / max(wall, 1e-9)


def time_steps(
    step: Callable[[], None], warmup: int, repeats: int, max_steps: int, max_foreign: float
) -> dict:
    """Runs `step` (which must block until its work is done) `warmup` times untimed, then
    until `repeats` clean steps or `max_steps` timed steps.

    Returns dict: times (the clean step seconds, or all of them when fewer than `repeats`
    were clean), loaded (True in that case), dropped (steps removed for load), foreign
    (median foreign cores over the kept steps), page_faults (median minor page faults of this
    process per kept step: fresh memory the step touched), median/min/max of `times`.
    """
    for _ in range(warmup):
        step()
    probe = LoadProbe()
    clean, every = [], []
    while len(clean) < repeats and len(every) < max_steps:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        probe.start()
        step()
        wall, foreign = probe.stop()
        every.append((wall, foreign, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
        if foreign <= max_foreign:
            clean.append(every[-1])
    loaded = len(clean) < repeats
    kept = every if loaded else clean
    times = [w for w, _, _ in kept]
    return {
        "times": times,
        "loaded": loaded,
        "dropped": len(every) - len(clean),
        "foreign": statistics.median(f for _, f, _ in kept),
        "page_faults": statistics.median(n for _, _, n in kept),
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
    }

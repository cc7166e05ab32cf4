"""Cold start: what ``import main`` costs a fresh function instance, by FUNCTION_TARGET.

    ./venv/bin/python -m bench.coldstart                 # the table in docs/benchmarks.md
    ./venv/bin/python -m bench.coldstart --reps 9 --json
    ./venv/bin/python -m bench.coldstart --source DIR    # another checkout (e.g. ``git archive``)

Cloud Functions (2nd gen) and the Firebase emulator start each instance with
``FUNCTION_TARGET`` set to its entry point; ``main.py`` then imports only that function's
area (``main.AREAS``). Without it (``firebase deploy``'s discovery, the local stack) every
function is imported. Each case runs in a fresh interpreter (``python -c 'import main'``
in the source directory), several times, interleaved (every repetition runs each case
once, in rotating order, so load from other work on the machine falls on all cases
alike); the figures are medians. Inside the child: the wall time of ``import main``
(``time.perf_counter``, interpreter start-up excluded) and the peak resident memory of
the whole process (``VmHWM`` in ``/proc/self/status``, interpreter included), and the
count of modules loaded. One warm-up run first, so every case finds bytecode and the page
cache warm. Then ``python -X importtime`` for the checkRateLimit case: the top-level
imports that cost the most (cumulative), and the modules that cost the most themselves.

Target: ``pack391_checkRateLimit`` at most half the time and at most 70 % of
the memory of the import-everything case.

Then the ``pack391`` CLI: the wall time of whole ``pack391 ARGS`` processes
(interpreter start included, as a user waits for it), medians over the same interleaved
repetitions, against ``pack391 --help``, which still imports every command group (what
every command paid before). Target: ``pack391 call --help`` at most 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ALL = "(unset: import everything)"
RATE_LIMIT = "pack391_checkRateLimit"
CASES = [ALL, RATE_LIMIT, "pack391_checkMarketAccess", "pack391_backupFirestore"]
"""FUNCTION_TARGET of each case; the first is the reference the others are compared with."""

HEAVY = [
    "google.cloud.run_v2",
    "google.cloud.monitoring_v3",
    "google.cloud.firestore_admin_v1",
    "google.cloud.firestore_v1",
    "grpc",
    "aiohttp",
    "cryptography",
    "cryptography.hazmat.primitives.ciphers.aead",
    "firebase_admin.functions",
]
"""Modules whose presence each case reports (loaded or not)."""

TIME_TARGET = 0.5
MEMORY_TARGET = 0.7

CLI_CASES: list[list[str]] = [
    ["--help"],
    ["call", "--help"],
    ["token", "--role", "admin"],
    ["trigger", "--help"],
    ["deploy", "validate", "--help"],
    ["loadtest", "--help"],
]
"""``pack391`` argument lists timed; the first (every group imported) is the reference."""
CLI_TARGET_SEC = 0.5
"""``pack391 call --help`` at most this long."""

CHILD = """\
import json, sys, time
t0 = time.perf_counter()
import main
seconds = time.perf_counter() - t0
peak_kb = 0
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
heavy = json.loads(sys.argv[1])
endpoints = [n for n, v in vars(main).items() if hasattr(v, "__firebase_endpoint__")]
print(json.dumps({
    "seconds": seconds,
    "peak_kb": peak_kb,
    "modules": len(sys.modules),
    "functions": len(endpoints),
    "heavy": [m for m in heavy if m in sys.modules],
    "main": main.__file__,
    "package": sys.modules["functions"].__file__,
}))
"""


@dataclass
class Figures:
    target: str
    runs: int
    seconds: float
    """Median wall time of ``import main``."""
    peak_mb: float
    """Median peak resident memory of the process (VmHWM), MiB."""
    modules: int
    functions: int
    heavy: list[str]


def child_env(target: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FUNCTION_TARGET", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    if target != ALL:
        env["FUNCTION_TARGET"] = target
    return env


def run_once(source: Path, target: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(HEAVY)],
        cwd=source,
        env=child_env(target),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"import main with FUNCTION_TARGET={target} failed:\n{proc.stderr}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("main", "package"):  # this source, not the editable install's
        if not Path(str(result[name])).resolve().is_relative_to(source.resolve()):
            raise RuntimeError(f"imported {result[name]}, not from {source}")
    return result


def measure(source: Path, reps: int) -> list[Figures]:
    for target in CASES:  # warm-up: bytecode and page cache
        run_once(source, target)
    samples: dict[str, list[dict[str, object]]] = {t: [] for t in CASES}
    for rep in range(reps):
        order = CASES[rep % len(CASES) :] + CASES[: rep % len(CASES)]
        for target in order:
            samples[target].append(run_once(source, target))
    figures = []
    for target in CASES:
        runs = samples[target]
        figures.append(
            Figures(
                target=target,
                runs=len(runs),
                seconds=statistics.median(float(str(r["seconds"])) for r in runs),
                peak_mb=statistics.median(int(str(r["peak_kb"])) for r in runs) / 1024,
                modules=int(str(runs[-1]["modules"])),
                functions=int(str(runs[-1]["functions"])),
                heavy=[str(m) for m in runs[-1]["heavy"]],  # type: ignore[attr-defined]
            )
        )
    return figures


@dataclass
class ImportCost:
    module: str
    self_ms: float
    cumulative_ms: float


def importtime(source: Path, target: str, top: int) -> tuple[list[ImportCost], list[ImportCost]]:
    """``-X importtime`` of ``import main``: (top-level imports by cumulative time,
    modules by their own time)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import main"],
        cwd=source,
        env=child_env(target),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows: list[tuple[int, ImportCost]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        self_us, cumulative_us, name = parts[0], parts[1], parts[2]
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append(
            (depth, ImportCost(name.strip(), int(self_us) / 1000, int(cumulative_us) / 1000))
        )
    # depth 0 is ``main`` itself; its direct imports are the top-level costs.
    direct = [cost for depth, cost in rows if depth == 1]
    by_cumulative = sorted(direct, key=lambda c: c.cumulative_ms, reverse=True)[:top]
    by_self = sorted((c for _, c in rows), key=lambda c: c.self_ms, reverse=True)[:top]
    return by_cumulative, by_self


@dataclass
class CliFigures:
    args: str
    runs: int
    seconds: float
    """Median wall time of the whole ``pack391 ARGS`` process."""


def cli_once(source: Path, args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(source)
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "stack.cli", *args],
        cwd=source, env=env, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return time.perf_counter() - began


def measure_cli(source: Path, reps: int) -> list[CliFigures]:
    for args in CLI_CASES:  # warm-up
        cli_once(source, args)
    samples: list[list[float]] = [[] for _ in CLI_CASES]
    for rep in range(reps):
        for i in [(rep + k) % len(CLI_CASES) for k in range(len(CLI_CASES))]:
            samples[i].append(cli_once(source, CLI_CASES[i]))
    return [
        CliFigures(" ".join(args), len(runs), statistics.median(runs))
        for args, runs in zip(CLI_CASES, samples, strict=True)
    ]


def report_cli(figures: list[CliFigures]) -> None:
    base = figures[0]
    print(f"{'pack391 ARGS':<30} {'runs':>4} {'wall s':>7} {'time x':>7}")
    for f in figures:
        print(f"{f.args:<30} {f.runs:>4} {f.seconds:>7.3f} {f.seconds / base.seconds:>7.2f}")
    call = next(f for f in figures if f.args == "call --help")
    met = "met" if call.seconds <= CLI_TARGET_SEC else "NOT met"
    print(f"\npack391 call --help: {call.seconds:.3f} s (target <= {CLI_TARGET_SEC} s: {met})")


def report(figures: list[Figures]) -> None:
    base = figures[0]
    print(
        f"{'FUNCTION_TARGET':<30} {'runs':>4} {'import s':>9} {'peak MiB':>9} "
        f"{'time x':>7} {'memory x':>9} {'modules':>8} {'functions':>9}  heavy modules loaded"
    )
    for f in figures:
        print(
            f"{f.target:<30} {f.runs:>4} {f.seconds:>9.3f} {f.peak_mb:>9.1f} "
            f"{f.seconds / base.seconds:>7.2f} {f.peak_mb / base.peak_mb:>9.2f} "
            f"{f.modules:>8} {f.functions:>9}  {', '.join(f.heavy) or '-'}"
        )
    limiter = next(f for f in figures if f.target == RATE_LIMIT)
    time_ratio = limiter.seconds / base.seconds
    memory_ratio = limiter.peak_mb / base.peak_mb
    print()
    print(
        f"{RATE_LIMIT} / import everything: time {time_ratio:.2f}x "
        f"(target <= {TIME_TARGET}: {'met' if time_ratio <= TIME_TARGET else 'NOT met'}), "
        f"memory {memory_ratio:.2f}x "
        f"(target <= {MEMORY_TARGET}: {'met' if memory_ratio <= MEMORY_TARGET else 'NOT met'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="fresh processes per case")
    parser.add_argument("--top", type=int, default=10, help="rows of the -X importtime lists")
    parser.add_argument("--source", type=Path, default=ROOT, help="directory holding main.py")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    figures = measure(args.source, args.reps)
    cli_figures = measure_cli(args.source, args.reps)
    by_cumulative, by_self = importtime(args.source, RATE_LIMIT, args.top)
    if args.json:
        print(
            json.dumps(
                {
                    "figures": [asdict(f) for f in figures],
                    "cli": [asdict(f) for f in cli_figures],
                    "importtime": {
                        "target": RATE_LIMIT,
                        "top_level_by_cumulative": [asdict(c) for c in by_cumulative],
                        "by_self": [asdict(c) for c in by_self],
                    },
                },
                indent=2,
            )
        )
        return
    print(f"source {args.source.resolve()}, Python {sys.version.split()[0]}, {args.reps} runs")
    print()
    report(figures)
    print()
    print(f"python -X importtime, FUNCTION_TARGET={RATE_LIMIT}: imports of main.py, cumulative")
    for c in by_cumulative:
        print(f"  {c.cumulative_ms:8.1f} ms  {c.module}")
    print("modules by their own import time")
    for c in by_self:
        print(f"  {c.self_ms:8.1f} ms  {c.module}")
    print()
    report_cli(cli_figures)


if __name__ == "__main__":
    main()

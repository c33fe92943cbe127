"""PyTorch CPU threads against problem size, on the machine as it is and with a busy neighbour.

Measures Adam steps per second of the Burgers PINN of ``cases/burgers.yaml`` (tanh MLP 5 x 32,
hard conditions, fixed Sobol points) for each collocation size in ``--points`` and each
setting in ``SETTINGS``: 1 thread, 2 threads with OpenMP's default wait policy (threads spin
before they sleep) and 2 threads with ``OMP_WAIT_POLICY=passive`` (they sleep at once). The
wait policy is read when PyTorch loads its OpenMP runtime, so each block is a fresh worker
process started with its setting's environment (building the trainer and two warm-up steps
are not timed). Rounds alternate the
load (no extra process, then a busy-loop process this script starts and stops), and for each
size the settings run back to back in alternating order, so that the machine's own drift
reaches every side alike. Each
block trains for at least ``--seconds`` (and at least two steps); reported per setting, size
and load: the median steps/s over ``--rounds`` rounds with its min and max, the ratio of each
setting to 1 thread, and the load average before and after. JSON goes to ``--out``::

    python benchmarks/threads.py [--points 1000 4000 16000] [--rounds 3] [--seconds 1.5]

Timings on a shared machine: other users' processes count as load on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import at_least, load_average, provenance, summary, usable_cores

CASE = Path(__file__).parents[1] / "cases" / "burgers.yaml"
SETTINGS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2"},
    "2 threads, passive": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "passive"},
}
BUSY = "while True: pass"


def worker() -> None:
    """Reads ``points seconds`` lines; trains that size for ``seconds`` and answers steps/s
    (one JSON line on stdout; anything else printed goes to stderr)."""
    answer, sys.stdout = sys.stdout, sys.stderr
    import torch

    from physml.cases.pinn import build_trainer
    from physml.cases.registry import load_case

    trainers = {}
    for line in sys.stdin:
        points, seconds = int(line.split()[0]), float(line.split()[1])
        if points not in trainers:
            case = load_case(CASE, [f"training.collocation.points={points}",
                                    "training.collocation.resample_every=0",
                                    "training.adam.steps=1000000", "training.lbfgs.steps=0",
                                    "evaluation.every=1000000", "evaluation.nx=32",
                                    "evaluation.nt=11"])
            trainers[points] = build_trainer(case)
            trainers[points].fit(until=2)  # warm-up: allocations, autograd graph caches
        trainer = trainers[points]
        steps, started = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - started < seconds:
            trainer.fit(until=trainer.step + 1)
            steps += 1
        rate = steps / (time.perf_counter() - started)
        print(json.dumps({"steps_per_s": rate, "threads": torch.get_num_threads()}), file=answer,
              flush=True)


def measure(environment: dict[str, str], points: int, seconds: float) -> dict:
    """One block in a fresh worker process with ``environment`` (the wait policy is read at
    start-up): long-lived workers of all settings, even stopped between their blocks, biased
    the comparison by a factor of 3 either way against these sequential fresh processes."""
    process = subprocess.Popen([sys.executable, __file__, "--worker"],
                               env={**os.environ, **environment}, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    answer, _ = process.communicate(f"{points} {seconds}\n")
    return json.loads(answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=at_least(1), nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--seconds", type=at_least(0.0, float, strictly=True), default=1.5)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/threads.json"))
    args = parser.parse_args()
    # the ratios are over one thread: it is always measured
    settings = {name: SETTINGS[name] for name in dict.fromkeys(["1 thread", *args.settings])}
    rates = {load: {name: {n: [] for n in args.points} for name in settings}
             for load in ("as is", "busy")}
    threads, load_before = {}, load_average()
    for round_ in range(args.rounds):
        loads = ("as is", "busy") if round_ % 2 == 0 else ("busy", "as is")
        for load in loads:
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "busy" else None
            try:
                for i, points in enumerate(args.points):
                    order = list(settings) if (round_ + i) % 2 == 0 else list(settings)[::-1]
                    for name in order:
                        result = measure(settings[name], points, args.seconds)
                        rates[load][name][points].append(result["steps_per_s"])
                        threads[name] = result["threads"]
                        print(f"round {round_} {load:>5} {name:>18} {points:>6} points: "
                              f"{result['steps_per_s']:6.2f} steps/s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    table = {load: {name: {str(n): summary(r, "rounds") for n, r in by_size.items()}
                    for name, by_size in by_setting.items()}
             for load, by_setting in rates.items()}
    ratios = {load: {name: {str(n): statistics.median(rates[load][name][n])
                            / statistics.median(rates[load]["1 thread"][n]) for n in args.points}
                     for name in settings} for load in rates}
    result = {
        "case": "cases/burgers.yaml, Adam steps (tanh MLP 5 x 32, hard conditions)",
        "cores": os.cpu_count(), "affinity": usable_cores(),
        "load_average_before": load_before, "load_average_after": load_average(),
        "note": "shared machine: other users' processes ran on both sides; 'busy' adds one "
                "busy-loop process started by this script",
        "threads_reported": threads, "seconds_per_block": args.seconds, "rounds": args.rounds,
        "steps_per_s": table, "over_1_thread": ratios, "provenance": provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for load in rates:
        for name in settings:
            cells = "  ".join(f"{n}: {table[load][name][str(n)]['median']:6.2f}"
                              f" ({ratios[load][name][str(n)]:.2f}x)" for n in args.points)
            print(f"{load:>5} {name:>18}  {cells}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()

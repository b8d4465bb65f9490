"""Data-pipeline throughput: random batches of 256 from stores of 100k and 1M conformations.

The stores are made by replicating the real ANI-1 samples (../shared/data/ani1) through the
store writer, each replica a new molecule. Every measurement runs in a fresh process so that
its peak RSS is its own; peak RSS is sampled every 20 ms over the loader process and each of
its DataLoader workers. Throughput is given per wall-clock second and per CPU-second of the
reading process (the loader without workers, else the workers together), which is what one
dedicated core per worker would reach. Targets (issue 2): at least 20,000 conformations/s per
worker, peak RSS under 1.5 GB and the same for 100k and 1M conformations.

    .venv/bin/python benchmarks/data_throughput.py [--sizes 100000 1000000] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "data" / "ani1"
TARGET_PER_WORKER = 20_000
TARGET_RSS_BYTES = 1.5e9
BATCH_SIZE = 256


class PeakRss:
    """Samples the RSS of this process and of its children (DataLoader workers)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self.main_bytes = 0
        self.worker_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        """Record the current RSS of this process and of each child."""
        import psutil

        self.main_bytes = max(self.main_bytes, self._process.memory_info().rss)
        for child in self._process.children(recursive=True):
            try:
                self.worker_bytes = max(self.worker_bytes, child.memory_info().rss)
            except psutil.Error:
                continue

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def build(size: int, path: Path) -> dict[str, float]:
    """Write a store of ``size`` conformations replicating the ANI-1 samples; time and RSS."""
    from molgraph_data.formats import get_reader
    from molgraph_data.records import validate_record
    from molgraph_data.store import StoreWriter

    reader = get_reader("ani1")
    records = [
        validate_record(record)[0]
        for name in ("ani_gdb_s01.h5", "gdb_HC_s02.h5")
        for record in reader.read(SAMPLES / name)
    ]
    start = time.perf_counter()
    with PeakRss() as rss:
        tmp = path.with_name(path.name + ".partial")
        writer = StoreWriter(tmp)
        writer.begin_source("none")
        replica = 0
        while writer.n_conformations < size:
            for record in records:
                left = size - writer.n_conformations
                if left <= 0:
                    break
                record.name = f"{record.location}#{replica}"
                if record.n_conformations > left:
                    record = validate_record(record)[0]
                    record.pos, record.energy = record.pos[:left], record.energy[:left]
                writer.add(record)
            replica += 1
        writer.finish({"sources": [], "notes": ["benchmark replica of the ANI-1 samples"]})
        tmp.rename(path)
    return {"seconds": time.perf_counter() - start, "peak_rss": rss.main_bytes}


def measure(path: Path, workers: int, batches: int) -> dict[str, float]:
    """Conformations/s over ``batches`` shuffled batches (after one warm-up batch) and peak RSS."""
    from molgraph_data import make_dataloader

    with PeakRss() as rss:
        loader = make_dataloader(
            path, None, BATCH_SIZE, shuffle=True, seed=0, num_workers=workers, drop_last=True
        )
        iterator = iter(loader)
        next(iterator)
        cpu_before = _cpu_seconds()
        start = time.perf_counter()
        n = 0
        for _ in range(batches):
            n += next(iterator).num_graphs
        elapsed = time.perf_counter() - start
        cpu_after = _cpu_seconds()
        del iterator, loader
    # the process that reads: the loader itself without workers, else the workers together
    reader_cpu = cpu_after[1] - cpu_before[1] if workers else cpu_after[0] - cpu_before[0]
    return {
        "conformations_per_s": n / elapsed,
        "conformations_per_cpu_s": n / reader_cpu,
        "main_rss": rss.main_bytes,
        "worker_rss": rss.worker_bytes,
    }


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its live children."""
    import psutil

    me = psutil.Process()
    own = sum(me.cpu_times()[:2])
    children = 0.0
    for child in me.children(recursive=True):
        try:
            children += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return own, children


def _child(argv: list[str]) -> dict[str, float]:
    """Run this script's sub-command in a fresh interpreter and return its JSON answer."""
    result = subprocess.run(
        [sys.executable, __file__, *argv], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the stores, measure every (size, workers) pair, print figures beside targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=300, help="timed batches per setting")
    parser.add_argument("--workdir", type=Path, default=None, help="where the stores go")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "build":
            print(json.dumps(build(int(rest[0]), Path(rest[1]))))
        else:
            print(json.dumps(measure(Path(rest[0]), int(rest[1]), int(rest[2]))))
        return
    if not SAMPLES.is_dir():
        sys.exit(f"error: {SAMPLES}: the ANI-1 samples are needed to build the benchmark stores")
    from rich.console import Console
    from rich.table import Table

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="denoisepot-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    console = Console(width=max(Console().width, 130))
    builds = {}
    for size in args.sizes:
        path = workdir / f"replica_{size}.h5"
        if not path.exists():
            builds[size] = _child(["--child", "build", str(size), str(path)])
    table = Table(title=f"random batches of {BATCH_SIZE}, {args.batches} timed batches each")
    for column in (
        "store",
        "workers",
        "conf/s (wall)",
        "per worker (wall)",
        "per worker CPU-s",
        "target per worker",
        "peak RSS main",
        "peak RSS worker",
        "target RSS",
    ):
        table.add_column(column, justify="right")
    rss_by_size: dict[int, list[float]] = {}
    for size in args.sizes:
        for workers in args.workers:
            path = workdir / f"replica_{size}.h5"
            result = _child(["--child", "measure", str(path), str(workers), str(args.batches)])
            rate = result["conformations_per_s"]
            per_worker = rate / max(workers, 1)
            rss_by_size.setdefault(workers, []).append(result["main_rss"])
            # judged per CPU-second of a worker: on a shared machine wall-clock rates measure
            # the other jobs as much as this code
            ok_rate = "✓" if result["conformations_per_cpu_s"] >= TARGET_PER_WORKER else "✗"
            ok_rss = (
                "✓" if max(result["main_rss"], result["worker_rss"]) < TARGET_RSS_BYTES else "✗"
            )
            table.add_row(
                f"{size:,}",
                str(workers),
                f"{rate:,.0f}",
                f"{per_worker:,.0f}",
                f"{result['conformations_per_cpu_s']:,.0f} {ok_rate}",
                f"≥{TARGET_PER_WORKER:,}",
                f"{result['main_rss'] / 2**20:,.0f} MiB {ok_rss}",
                f"{result['worker_rss'] / 2**20:,.0f} MiB" if workers else "–",
                "<1.5 GB, flat",
            )
    console.print(table)
    for size, info in builds.items():
        console.print(
            f"built {size:,} conformations in {info['seconds']:.1f} s, "
            f"peak RSS {info['peak_rss'] / 2**20:,.0f} MiB"
        )
    for workers, values in rss_by_size.items():
        if len(values) > 1:
            growth = (max(values) - min(values)) / 2**20
            console.print(
                f"workers={workers}: main-process peak RSS differs by {growth:.0f} MiB "
                f"between {min(args.sizes):,} and {max(args.sizes):,} conformations"
            )
    console.print(f"stores in {workdir} (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()

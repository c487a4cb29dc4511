"""`encode` throughput from Python vs the CLI vs sentence-transformers, same inputs, same run.

    bash crates/modernbert-py/test.sh        # once: makes .venv-py, installs the wheel, builds the CLI, tests
    .venv-py/bin/python bench/python_encode.py [--model DIR] [--texts 1000] [--threads 2] [--repeat 3] [--save]

* python: `Model.load(model, threads=T).encode(texts)` (batch_size 32, and one call with every text),
  timed around `encode` only.
* cli: `modernbert embed --input texts.jsonl --no-normalize --dimensions 1` (1 float per text, so the
  JSON writing is negligible) minus the same command on one text (process start + model load).
* sentence-transformers: `SentenceTransformer(model, device="cpu").encode(texts, batch_size=32)`
  in float32 with `torch.set_num_threads(T)`, run by the repository's `.venv` (scripts/setup-python-formats.sh;
  skipped when it is missing). Its vectors are compared with ours.

All engines get RAYON_NUM_THREADS=T / T torch threads. Times are medians of `--repeat` runs taken in
turns (python, cli, st, python, ...), so that a noisy machine hits each engine alike. Besides wall
time, each run's CPU time (user + system, all threads) is reported: on a shared machine it varies much
less than wall time, so it is the better measure of the Python layer's overhead over the CLI. (torch's
OpenMP threads may spin while they wait, which counts as CPU time for sentence-transformers.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an which not have has "
    "model token attention layer vector search query document rust python function return value string "
    "list index memory thread batch kernel matrix embedding sentence language compiler type trait struct "
    "enum impl async await error result option iterator closure borrow lifetime crate module package "
    "über café naïve 東京 données São Paulo — 42 3.14 fn main() { println!(\"hi\"); } def f(x): return x"
).split()

ST_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from sentence_transformers import SentenceTransformer
model, path, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
m = SentenceTransformer(model, device="cpu", model_kwargs={"dtype": torch.float32})  # f32, as ours
texts = [json.loads(l)["text"] for l in open(path)]
m.encode(texts[:64], batch_size=32)
import sentence_transformers, transformers
print(f"sentence-transformers {sentence_transformers.__version__}, transformers {transformers.__version__}, "
      f"torch {torch.__version__}, {torch.get_num_threads()} torch threads", flush=True)
print("ready", flush=True)
for line in sys.stdin:                      # one timed run per line
    t, c = time.perf_counter(), time.process_time()
    e = m.encode(texts, batch_size=32, convert_to_numpy=True)
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c}), flush=True)
    np.save(out, e.astype(np.float32))
"""


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 160))) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "modernbert-mini"))
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli", default=str(ROOT / "target" / "release" / "modernbert"))
    ap.add_argument("--st-python", default=str(ROOT / ".venv" / "bin" / "python"))
    ap.add_argument("--no-st", action="store_true", help="skip sentence-transformers")
    ap.add_argument("--save", action="store_true", help="also write the report to bench/results/python-encode-<time>.txt")
    args = ap.parse_args()

    threads = args.threads
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # the same GEMM split for every engine
    import numpy as np

    import modernbert

    texts = make_texts(args.texts)
    tmp = Path(tempfile.mkdtemp(prefix="python-encode-bench-"))
    big, one = tmp / "texts.jsonl", tmp / "one.jsonl"
    big.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    one.write_text(json.dumps({"text": texts[0]}) + "\n")

    m = modernbert.Model.load(args.model, threads=threads)
    tokens = sum(len(e["ids"]) for e in m.tokenize(texts))
    m.encode(texts[:64])  # warm up
    ours = m.encode(texts)

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def cli(path: Path) -> tuple[float, float]:
        """Wall and CPU seconds of one CLI run (CPU: of the finished child only; the
        sentence-transformers child is still running, so it is not counted)."""
        cmd = [args.cli, "embed", "--model", args.model, "--no-normalize", "--dimensions", "1", "--input", str(path)]
        t, c = time.perf_counter(), children_cpu()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        return time.perf_counter() - t, children_cpu() - c

    def timed(f) -> tuple[float, float]:
        """Wall and CPU seconds (every thread of this process) of f()."""
        t, c = time.perf_counter(), time.process_time()
        f()
        return time.perf_counter() - t, time.process_time() - c

    st = None
    if not args.no_st and Path(args.st_python).is_file():
        st = subprocess.Popen(
            [args.st_python, "-c", ST_SCRIPT, args.model, str(big), str(threads), str(tmp / "st.npy")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        st_versions = st.stdout.readline().strip()
        if st.stdout.readline().strip() != "ready":
            sys.exit("sentence-transformers side failed to start")
    elif not args.no_st:
        print(f"# no sentence-transformers: {args.st_python} missing (bash scripts/setup-python-formats.sh)")

    # (wall, cpu) seconds of every run
    times: dict[str, list[tuple[float, float]]] = {"python (batch_size=32)": [], "python (one call)": [], "cli": []}
    if st:
        times["sentence-transformers (batch_size=32)"] = []
    for _ in range(args.repeat):
        times["python (batch_size=32)"].append(timed(lambda: m.encode(texts)))
        times["python (one call)"].append(timed(lambda: m.encode(texts, batch_size=len(texts))))
        (wall, cpu), (wall1, cpu1) = cli(big), cli(one)
        times["cli"].append((wall - wall1, cpu - cpu1))
        if st:
            st.stdin.write("run\n")
            st.stdin.flush()
            r = json.loads(st.stdout.readline())
            times["sentence-transformers (batch_size=32)"].append((r["seconds"], r["cpu"]))
    if st:
        st.stdin.close()
        st.wait()

    report: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        report.append(line)

    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    say(f"# {time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()} ({cpu}), load {' '.join(load)} after the runs")
    say(f"# model {args.model}, modernbert {modernbert.__version__} (f32), CLI {args.cli}")
    say(f"# {len(texts)} texts, {tokens} tokens (specials included), {threads} threads, median of {args.repeat}")
    ref = statistics.median(w for w, _ in times["cli"])
    ref_cpu = statistics.median(c for _, c in times["cli"])
    say(f"{'engine':40s} {'seconds':>8s} {'texts/s':>9s} {'tokens/s':>9s} {'time vs cli':>12s} {'cpu s':>8s} {'cpu vs cli':>11s}")
    rows, cpu_rows = {}, {}
    for name, ts in times.items():
        s = statistics.median(w for w, _ in ts)
        c = statistics.median(c for _, c in ts)
        rows[name], cpu_rows[name] = s, c
        say(
            f"{name:40s} {s:8.3f} {len(texts) / s:9.1f} {tokens / s:9.0f} {s / ref:11.3f}x {c:8.3f} {c / ref_cpu:10.3f}x"
        )
    say("# every run (wall, cpu seconds): " + json.dumps({k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in times.items()}))
    if st:
        e = np.load(tmp / "st.npy")
        say(f"# {st_versions}")
        say(f"# max |ours - sentence-transformers| = {float(np.max(np.abs(e - ours))):.2e}")
        s = rows["sentence-transformers (batch_size=32)"]
        say(f"# python (batch_size=32) is {s / rows['python (batch_size=32)']:.2f}x sentence-transformers' speed")
    say(json.dumps({"texts": len(texts), "tokens": tokens, "threads": threads, "median_seconds": rows, "median_cpu_seconds": cpu_rows}))
    if args.save:
        out = ROOT / "bench" / "results" / f"python-encode-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        out.write_text("\n".join(report) + "\n")
        print(f"# wrote {out}")


if __name__ == "__main__":
    main()

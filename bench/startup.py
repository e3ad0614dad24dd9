"""Start-up and memory: `python main.py --no-browser` to its first HTTP 200, and its RSS once the
models are loaded, against the two things it waits for, each in a fresh process: a bare
`import llama_cpp` + `Llama(...)` of the same files, and `import gradio`. The app's workers load
the models while its own process imports gradio, so the target is 1.2x the slower of the two.

The first start on a fresh data dir also creates the database and checks the CPU's extra buffer
types in the worker; it is reported apart, and the figure is the median of the starts after it."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from .app import AppProcess, app_environment
from .common import ROOT, Options, now

N_CTX = 4096  # the tiers' default


def _raw_load(options: Options, paths: list[str]) -> dict:
    began = now()
    result = subprocess.run(
        [sys.executable, "-m", "bench._raw_load", str(N_CTX), *paths],
        cwd=ROOT, capture_output=True, text=True, timeout=300,  # cwd: `-m bench…` finds the bench package
    )
    elapsed = now() - began
    if result.returncode != 0:
        raise RuntimeError(f"raw model load failed: {result.stderr[-2000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_s"] = elapsed
    return figures


_IMPORT_GRADIO = "import time; t = time.perf_counter(); import gradio; print(time.perf_counter() - t)"


def _import_gradio() -> dict:
    """`import gradio` in a fresh python: the process's wall time, and the import alone."""
    began = now()
    result = subprocess.run([sys.executable, "-c", _IMPORT_GRADIO], cwd=ROOT, capture_output=True, text=True, timeout=300)
    elapsed = now() - began
    if result.returncode != 0:
        raise RuntimeError(f"import gradio failed: {result.stderr[-2000:]}")
    return {"import_s": float(result.stdout.strip().splitlines()[-1]), "process_s": elapsed}


def _start_app(options: Options, data_dir, tiers, name: str) -> dict:
    app = AppProcess(data_dir, app_environment(data_dir, tiers), options.work_dir / f"{name}.log")
    try:
        up = app.wait_until_up()
        memory = app.memory()
        workers = _workers_memory(app.process.pid)
        return {
            "first_http_200_s": round(up, 3),
            "mini_loaded_s": app.line_time("mini: "),
            "pro_loaded_s": app.line_time("pro: "),
            **memory,
            **workers,
        }
    finally:
        app.stop()


def _workers_memory(pid: int) -> dict:
    """The model workers' RSS (children of the app process): where the weights and KV caches live now."""
    import psutil

    rss = anon = 0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            rss += child.memory_info().rss
            with open(f"/proc/{child.pid}/status") as file:
                for line in file:
                    if line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) * 1024
        except (psutil.Error, OSError):
            pass
    return {"workers_rss_bytes": rss, "workers_rss_anon_bytes": anon}


def measure_startup(options: Options) -> dict:
    count = 1 if options.quick else 3
    tiers = {
        "mini": {"model_file": str(options.model)},
        "pro": {"model_file": str(options.pro_model), "required_quantization": ""},
    }
    paths = [str(options.model), str(options.pro_model)]
    data_dir = options.work_dir / "startup-data"
    first = _start_app(options, data_dir, tiers, "startup-first")
    # Each pass starts the app on the now-known data dir, then times its two references: drift in
    # the machine's load hits all three alike.
    runs, raw, gradio = [], [], []
    for index in range(count):
        runs.append(_start_app(options, data_dir, tiers, f"startup-{index}"))
        raw.append(_raw_load(options, paths))
        gradio.append(_import_gradio())
    files = {str(p): os.path.getsize(p) for p in {options.model, options.pro_model}}

    def median(rows, key):
        values = [row[key] for row in rows if row.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    app_summary = {key: median(runs, key) for key in runs[0]}
    raw_summary = {key: median(raw, key) for key in ("import_s", "total_s", "process_s", "rss_bytes", "rss_anon_bytes", "rss_file_bytes")}
    raw_summary["load_s"] = [round(statistics.median(r["load_s"][i] for r in raw), 3) for i in range(len(paths))]
    gradio_summary = {key: median(gradio, key) for key in ("import_s", "process_s")}
    limit = max(raw_summary["process_s"], gradio_summary["process_s"])
    return {
        "runs": runs,
        "first_start": first,
        "app": app_summary,
        "raw_llama_cpp": raw_summary,
        "import_gradio": gradio_summary,
        "import_gradio_runs": gradio,
        # The slower of the two things start-up waits for, each alone in a fresh process.
        "limit_s": limit,
        "limit_is": "import gradio" if gradio_summary["process_s"] >= raw_summary["process_s"] else "loading both models",
        "first_http_200_vs_limit": round(app_summary["first_http_200_s"] / limit, 3),
        "model_files": files,
        "model_files_bytes": sum(files.values()),
        "tiers_loaded": paths,
        "n_ctx": N_CTX,
    }

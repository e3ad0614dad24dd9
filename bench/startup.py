"""Start-up and memory: `python main.py --no-browser` to its first HTTP 200, and its RSS once the
models are loaded, against a bare `import llama_cpp` + `Llama(...)` of the same files and their sizes."""

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
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    elapsed = now() - began
    if result.returncode != 0:
        raise RuntimeError(f"raw model load failed: {result.stderr[-2000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_s"] = elapsed
    return figures


def measure_startup(options: Options) -> dict:
    count = 1 if options.quick else 3
    tiers = {
        "mini": {"model_file": str(options.model)},
        "pro": {"model_file": str(options.pro_model), "required_quantization": ""},
    }
    runs = []
    for index in range(count):
        data_dir = options.work_dir / f"startup-{index}"
        env = app_environment(data_dir, tiers)
        app = AppProcess(data_dir, env, options.work_dir / f"startup-{index}.log")
        try:
            up = app.wait_until_up()
            memory = app.memory()
            runs.append(
                {
                    "first_http_200_s": round(up, 3),
                    "mini_loaded_s": app.line_time("mini: "),
                    "pro_loaded_s": app.line_time("pro: "),
                    **memory,
                }
            )
        finally:
            app.stop()
    paths = [str(options.model), str(options.pro_model)]
    raw = [_raw_load(options, paths) for _ in range(count)]
    files = {str(p): os.path.getsize(p) for p in {options.model, options.pro_model}}

    def median(rows, key):
        values = [row[key] for row in rows if row.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    app_summary = {key: median(runs, key) for key in runs[0]}
    raw_summary = {key: median(raw, key) for key in ("import_s", "total_s", "process_s", "rss_bytes", "rss_anon_bytes", "rss_file_bytes")}
    raw_summary["load_s"] = [round(statistics.median(r["load_s"][i] for r in raw), 3) for i in range(len(paths))]
    return {
        "runs": runs,
        "app": app_summary,
        "raw_llama_cpp": raw_summary,
        "model_files": files,
        "model_files_bytes": sum(files.values()),
        "tiers_loaded": paths,
        "n_ctx": N_CTX,
    }

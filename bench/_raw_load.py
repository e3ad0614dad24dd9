"""Run as a script by bench/startup.py: import llama_cpp and load the given models, as the app does,
then print the timings and this process's memory as JSON. The reference for the app's start-up."""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()


def main(argv: list[str]) -> None:
    n_ctx, paths = int(argv[0]), argv[1:]
    import llama_cpp  # noqa: E402

    from gemma_chat.config import physical_cores

    imported = time.perf_counter()
    threads = physical_cores()
    loads, models = [], []
    for path in paths:
        began = time.perf_counter()
        models.append(
            llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        )
        loads.append(time.perf_counter() - began)
    status = {}
    with open("/proc/self/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                status[key] = int(value.split()[0]) * 1024
    print(json.dumps({
        "import_s": imported - started,
        "load_s": loads,
        "total_s": time.perf_counter() - started,
        "rss_bytes": status.get("VmRSS"),
        "rss_anon_bytes": status.get("RssAnon"),
        "rss_file_bytes": status.get("RssFile"),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])

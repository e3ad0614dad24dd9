"""llama.cpp's extra CPU buffer types on vs off: raw llama-cpp-python's prefill and decode speed.

The app turns them off on CPUs where they crash (backends/cpu_features.py); this section shows what
that costs where both work. `set_extra_buffers` affects the loads after it, so every measurement is
a fresh process (bench/_extra_buffers.py) with one setting; the settings alternate, on first in
odd passes and off first in even ones, so drift in the machine's load hits both alike.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from gemma_chat.config import physical_cores

from .common import ROOT, Options, ratio


def _one_process(setting: str, model: Path, n_threads: int, max_tokens: int, reps: int) -> dict:
    """One fresh process's figures, or {"crashed": why} when llama.cpp killed it (the AMX Xeon's fault)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench._extra_buffers", setting, str(model), str(n_threads), str(max_tokens), str(reps)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,  # cwd: `-m bench…` finds the bench package
    )
    if result.returncode < 0:  # killed by a signal: what this CPU does with that setting, not a broken bench
        return {"crashed": f"crashed on this CPU ({signal.Signals(-result.returncode).name})"}
    if result.returncode != 0:
        raise RuntimeError(f"extra buffers {setting} on {model.name} failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _models(options: Options) -> list[Path]:
    """The bundled 270M, and --model when it is another file."""
    from .__main__ import default_model

    bundled = default_model().resolve()
    return [bundled] + ([options.model] if options.model != bundled else [])


def measure_extra_buffers(options: Options) -> dict:
    n_threads = options.n_threads or physical_cores()
    passes = 1 if options.quick else 3
    reps = 1 if options.quick else 3
    max_tokens = options.max_tokens
    models = {}
    for model in _models(options):
        options.say(f"  {model.name}: {passes} fresh processes per setting, {reps} prefill + decode runs each…")
        samples = {"on": [], "off": []}
        for index in range(passes):
            order = ("on", "off") if index % 2 == 0 else ("off", "on")
            for setting in order:
                if not (samples[setting] and "crashed" in samples[setting][0]):  # a crash is the answer once
                    samples[setting].append(_one_process(setting, model, n_threads, max_tokens, reps))
        crashed = {setting: runs[0]["crashed"] for setting, runs in samples.items() if "crashed" in runs[0]}
        if "off" in crashed:  # off is what the app falls back to: that must work
            raise RuntimeError(f"raw llama-cpp-python with extra buffers off {crashed['off']}")
        if not all(s["switch_available"] for runs in samples.values() for s in runs if "crashed" not in s):
            raise RuntimeError("this llama-cpp-python has no use_extra_bufts switch")

        def side(runs):
            if "crashed" in runs[0]:
                return {"crashed": runs[0]["crashed"]}
            return {
                "prefill_tokens_per_s": round(statistics.median(s["prefill_tokens_per_s"] for s in runs), 2),
                "decode_tokens_per_s": round(statistics.median(s["decode_tokens_per_s"] for s in runs), 2),
                "load_s": round(statistics.median(s["load_s"] for s in runs), 3),
                "processes": runs,
            }

        on, off = side(samples["on"]), side(samples["off"])
        if "crashed" in on:
            options.say(f"  {model.name}: extra buffers on {on['crashed']}; off measured alone")

        def off_on_ratio(kind):  # what turning them off costs (1.0 = nothing); none where "on" crashes
            return None if "crashed" in on else ratio(off[f"{kind}_tokens_per_s"], on[f"{kind}_tokens_per_s"])

        models[model.name] = {
            "path": str(model),
            "prefill_prompt_tokens": samples["off"][0]["prefill_prompt_tokens"],
            "decode_tokens": max_tokens,
            "on": on,
            "off": off,
            "prefill_off_on_ratio": off_on_ratio("prefill"),
            "decode_off_on_ratio": off_on_ratio("decode"),
        }
    return {"n_threads": n_threads, "n_ctx": 2048, "passes": passes, "reps_per_process": reps, "models": models}

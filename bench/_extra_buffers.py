"""Run as a script by bench/extra_buffers.py: `python -m bench._extra_buffers on|off MODEL N_THREADS MAX_TOKENS REPS`.

Sets llama.cpp's extra CPU buffer types on or off (as the app's worker does) before the one load in
this process — the setting applies to loads after it, hence a fresh process per setting — then
times prefill and decode of raw llama-cpp-python and prints them as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

# About 400 tokens of plain prose: long enough that prefill runs in full batches.
PREFILL_TEXT = " ".join(
    [
        "The water cycle describes how water moves between the oceans, the air and the land.",
        "Sunlight warms the surface of the sea, and water evaporates into the atmosphere as vapour.",
        "As the moist air rises it cools, and the vapour condenses into the droplets that form clouds.",
        "When the droplets grow heavy enough they fall as rain, snow or hail, depending on the temperature.",
        "Some of that water runs off into streams and rivers, which carry it back to the sea.",
        "Some soaks into the ground, where it feeds springs and wells and moves slowly through the rock.",
        "Plants draw water up through their roots and release it from their leaves, a process called transpiration.",
    ]
    * 3
)
DECODE_PROMPT = "Continue counting: one, two, three, four, five, six, seven,"


def main(argv: list[str]) -> None:
    setting, model, n_threads, max_tokens, reps = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    import llama_cpp

    from gemma_chat.backends.llama_runner import set_extra_buffers

    switched = set_extra_buffers(setting == "on")
    began = time.perf_counter()
    llama = llama_cpp.Llama(
        model_path=model, n_ctx=2048, n_threads=n_threads, n_threads_batch=n_threads, n_gpu_layers=0, verbose=False
    )
    load_s = time.perf_counter() - began
    prefill_tokens = llama.tokenize(PREFILL_TEXT.encode(), add_bos=True)
    decode_tokens = llama.tokenize(DECODE_PROMPT.encode(), add_bos=True)

    prefill, decode, produced = [], [], []
    llama.eval(decode_tokens)  # warm-up: first-touch of the weights and buffers
    for _ in range(reps):
        llama.reset()
        started = time.perf_counter()
        llama.eval(prefill_tokens)
        prefill.append(len(prefill_tokens) / (time.perf_counter() - started))

        llama.reset()
        first = last = None
        count = 0
        stream = llama.generate(decode_tokens, temp=0.0, top_k=1, repeat_penalty=1.0)
        try:
            for _token in stream:
                last = time.perf_counter()
                first = first or last
                count += 1
                if count >= max_tokens:
                    break
        finally:
            stream.close()
        decode.append((count - 1) / (last - first))
        produced.append(count)
    llama.close()
    print(json.dumps({
        "setting": setting,
        "switch_available": switched,
        "load_s": load_s,
        "prefill_prompt_tokens": len(prefill_tokens),
        "decode_tokens": produced,
        "prefill_tokens_per_s": statistics.median(prefill),
        "decode_tokens_per_s": statistics.median(decode),
        "prefill_samples": prefill,
        "decode_samples": decode,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])

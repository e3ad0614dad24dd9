"""`python -m bench [--quick] [--model PATH] [--pro-model PATH] [--out FILE]`: every benchmark, one run.

Prints progress, then the table of figures against their targets; writes the machine, the versions
and every figure as JSON (bench/results/latest.json by default; quick.json for --quick).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .chat_screen import TARGETS as CHAT_SCREEN_TARGETS
from .common import RESULTS_DIR, ROOT, ForeignCpu, Options, as_plain, load_average, machine_info

NOISY_CORES = 0.15  # other processes' CPU during a section above which its figures are suspect

SECTIONS = ("generation", "http", "batching", "remote", "extra_buffers", "isolation", "startup", "ledger", "queries",
            "chat_screen", "edge", "postgres", "soak")
ON_REQUEST = ("soak",)  # long: run only when named with --only


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, about a minute")
    parser.add_argument("--model", type=Path, help="GGUF for mini and the generation benchmarks (default: the bundled 270M)")
    parser.add_argument("--pro-model", type=Path, help="GGUF for pro in the start-up and isolation runs (default: --model)")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default bench/results/latest.json)")
    parser.add_argument("--only", help=f"comma-separated sections to run: {', '.join(SECTIONS)} "
                                       f"({', '.join(ON_REQUEST)} only when named)")
    parser.add_argument("--minutes", type=float, default=30, help="how long the soak runs (default 30)")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the sections run in the existing --out file (rerun a noisy section), keep the rest")
    parser.add_argument("--max-tokens", type=int, help="longest answer per generation (default 128; 32 with --quick)")
    parser.add_argument("--rounds", type=int, help="passes over the prompt set per side (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp n_threads on every side (default: physical cores)")
    parser.add_argument("--work-dir", type=Path, help="where temporary databases go (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    parser.add_argument("--from", dest="from_file", type=Path, help="run nothing: print the table of a results file")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs/BENCHMARKS.md)")
    return parser.parse_args(argv)


def default_model() -> Path:
    from gemma_chat.config import load_settings
    from gemma_chat.inference.model_files import ensure_bundled_model

    return ensure_bundled_model(load_settings(env={}))


def run_sections(options: Options, sections: list[str]) -> dict:
    from . import (
        batching, chat_screen, edge, extra_buffers, generation, http, isolation, ledger, postgres, queries, remote, soak, startup,
    )

    functions = {
        "generation": generation.measure_in_process,
        "http": http.measure_http,
        "batching": batching.measure_batching,
        "remote": remote.measure_remote,
        "extra_buffers": extra_buffers.measure_extra_buffers,
        "isolation": isolation.measure_isolation,
        "startup": startup.measure_startup,
        "ledger": ledger.measure_ledger,
        "queries": queries.measure_queries,
        "chat_screen": chat_screen.measure_chat_screen,
        "edge": edge.measure_edge,
        "postgres": postgres.measure_postgres,
        "soak": soak.measure_soak,
    }
    results = {}
    for name in sections:
        options.say(f"[{name}]")
        began = time.monotonic()
        started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        load = load_average()
        foreign = ForeignCpu()
        try:
            results[name] = functions[name](options)
        except Exception as exc:  # noqa: BLE001 — one broken section must not lose the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["section_s"] = round(time.monotonic() - began, 1)
        results[name]["started_at"], results[name]["load_average_at_start"] = started_at, load
        results[name]["other_processes_cores"] = foreign.cores(results[name].get("server_cpu_s", 0.0))
        noisy = results[name]["other_processes_cores"] > NOISY_CORES
        options.say(f"  done in {results[name]['section_s']} s; other processes used "
                    f"{results[name]['other_processes_cores']:.2f} cores{' — NOISY, rerun on an idle machine' if noisy else ''}")
    return results


# --- targets and the table --------------------------------------------------------------------


def _get(results: dict, *path):
    value = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def evaluate_targets(results: dict) -> list[dict]:
    """Each of the issue's targets with the measured value and whether it was met."""
    targets = []

    def add(name, value, target, met):
        targets.append({"target": name, "value": value, "goal": target, "met": None if value is None else bool(met)})

    ratio_c = _get(results, "generation", "sides", "c_turn", "tokens_per_s_ratio")
    add("(c) chat turn tokens/s vs raw", ratio_c, ">= 0.97", ratio_c is not None and ratio_c >= 0.97)
    added_c = _get(results, "generation", "sides", "c_turn", "ttft_added_ms_median")
    add("(c) chat turn added time to first token, ms", added_c, "<= 15", added_c is not None and added_c <= 15)
    ratio_d = _get(results, "http", "sides", "d_sse", "tokens_per_s_ratio")
    add("(d') chat over HTTP (the page's queue events, model in its worker) tokens/s vs raw", ratio_d, ">= 0.90",
        ratio_d is not None and ratio_d >= 0.90)
    ratio_e = _get(results, "http", "sides", "e_v1", "tokens_per_s_ratio")
    add("(e) /v1 streamed tokens/s vs raw", ratio_e, ">= 0.95", ratio_e is not None and ratio_e >= 0.95)
    added_e = _get(results, "http", "sides", "e_v1", "ttft_added_ms_median")
    add("(e) /v1 added time to first token, ms", added_e, "<= 20", added_e is not None and added_e <= 20)
    for count, figures in (_get(results, "batching", "streams") or {}).items():
        if str(count) != "1":
            value = figures.get("vs_s_tg")
            add(f"batching: {count} streams through /v1, aggregate tokens/s / llama-batched-bench S_TG", value, ">= 0.85",
                value is not None and value >= 0.85)
            if "llama_server_tokens_per_s" in figures:
                versus = figures.get("vs_llama_server")
                add(f"batching: {count} streams through /v1, aggregate tokens/s / llama-server -np {count}", versus, ">= 1",
                    versus is not None and versus >= 1)
    one = _get(results, "batching", "one_stream_vs_raw")
    add("batching: one stream through /v1 / raw llama-cpp-python, tokens/s", one, ">= 0.97", one is not None and one >= 0.97)
    busy_ttft, limit = _get(results, "batching", "ttft_with_3_streaming_ms"), _get(results, "batching", "ttft_limit_ms")
    if limit is not None:
        add("batching: a new request's TTFT while 3 stream, ms", busy_ttft, f"<= idle + 2 decode steps = {limit:,.1f}",
            busy_ttft is not None and busy_ttft <= limit)
    gap = _get(results, "batching", "prefill_gap", "ratio")
    add("batching: p95 token gap while a 3,000-token prompt prefills / idle", gap, "<= 3", gap is not None and gap <= 3)
    chats = _get(results, "batching", "two_long_chats", "ratio")
    add("batching: two long chats taking turns, 2nd turn TTFT / 1st", chats, "<= 0.25", chats is not None and chats <= 0.25)
    if _get(results, "batching", "prompt_cache") is not None:
        eight = _get(results, "batching", "prompt_cache", "eight_chats_four_slots", "ratio")
        add("batching: 8 long chats over 4 slots (restored from RAM), 2nd turn TTFT / 1st", eight, "<= 0.4",
            eight is not None and eight <= 0.4)
        past = _get(results, "batching", "prompt_cache", "past_context", "ratio")
        add("batching: a chat past its context, mean TTFT of the next 10 turns / a full re-prefill", past, "<= 0.3",
            past is not None and past <= 0.3)
    ratio_r = _get(results, "remote", "sides", "b_engine", "tokens_per_s_ratio")
    add("remote tier over loopback tokens/s vs the server called directly", ratio_r, ">= 0.95",
        ratio_r is not None and ratio_r >= 0.95)
    start = _get(results, "startup", "first_http_200_vs_limit")
    add("start-up to first HTTP 200 / slower of (import gradio, load both models)", start, "<= 1.2",
        start is not None and start <= 1.2)
    for row in _get(results, "ledger", "table") or []:
        add(f"ledger {row['config']}: ours/raw cycles/s", row["ratio"], ">= 0.5", row["ratio"] is not None and row["ratio"] >= 0.5)
        clean = row["verify_ok"] and row["lost_credits"] == 0 and row["doubled_credits"] == 0
        add(f"ledger {row['config']}: lost + doubled credits", row["lost_credits"] + row["doubled_credits"], "0, verify passes", clean)
    p95 = _get(results, "queries", "history", "all", "p95_ms")
    add("history page p95, ms", p95, "<= 5", p95 is not None and p95 <= 5)
    for span in ("all_time", "one_week"):
        total = _get(results, "queries", "report", span, "total_ms")
        add(f"admin report ({span.replace('_', ' ')}), ms", total, "<= 500", total is not None and total <= 500)
    statement_p95 = _get(results, "queries", "statement", "p95_ms")
    add("statement page p95 (a page and the totals), ms", statement_p95, "<= 5", statement_p95 is not None and statement_p95 <= 5)
    chats_p95 = _get(results, "queries", "chats", "list", "all", "p95_ms")
    add("chat list p95 (users with 1,000 chats), ms", chats_p95, "<= 5", chats_p95 is not None and chats_p95 <= 5)
    open_p95 = _get(results, "queries", "chats", "open_long_chat", "p95_ms")
    add("open a chat of 200 turns, server side, p95 ms", open_p95, "<= 100", open_p95 is not None and open_p95 <= 100)
    ledger_ms = _get(results, "queries", "verify", "ledger_invariant_ms")
    add("verify: ledger invariant, ms", ledger_ms, "<= 3000", ledger_ms is not None and ledger_ms <= 3000)
    verify_ms = _get(results, "queries", "verify", "total_ms")
    passed = _get(results, "queries", "verify", "passed")
    add("verify: whole command (with PRAGMA integrity_check), ms", verify_ms, "<= 3000, passes",
        verify_ms is not None and verify_ms <= 3000 and passed)
    for key, goal, what in CHAT_SCREEN_TARGETS:
        p95 = _get(results, "chat_screen", key, "p95_ms")
        add(f"chat screen: {what}, p95 ms", p95, f"<= {goal}", p95 is not None and p95 <= goal)
    added = _get(results, "edge", "session_check", "added_p95_ms")
    add("edge: cookie session check added to an event, p95 ms", added, "<= 1", added is not None and added <= 1)
    for rate, run in (_get(results, "edge", "flood") or {}).items():
        if isinstance(run, dict) and "p95_ratio" in run:  # older results hold one run, not one per rate
            flood = run["p95_ratio"]
            what = f"a sign-in flood of {rate}/s" if run.get("route", "auth") == "auth" else f"a {rate} flood"
            add(f"edge: signed-in event p95 during {what} / idle", flood, "<= 2",
                flood is not None and flood <= 2)
    for row in _get(results, "postgres", "ledger", "table") or []:
        add(f"PostgreSQL ledger {row['config']}: ours/raw cycles/s", row["ratio"], ">= 0.5",
            row["ratio"] is not None and row["ratio"] >= 0.5)
        clean = row["verify_ok"] and row["lost_credits"] == 0 and row["doubled_credits"] == 0
        add(f"PostgreSQL ledger {row['config']}: lost + doubled credits", row["lost_credits"] + row["doubled_credits"],
            "0, verify passes", clean)
    pg_history = _get(results, "postgres", "history") or {}
    for key, label in (("one_client", "1 client"), ("eight_clients", "8 clients")):
        speed = _get(pg_history, key, "ratio")
        add(f"PostgreSQL history page, {label}: ours/raw speed", speed, ">= 0.5", speed is not None and speed >= 0.5)
    pg_p95 = _get(pg_history, "one_client", "ours", "p95_ms")
    add("PostgreSQL history page p95 (1 client), ms", pg_p95, "<= 5", pg_p95 is not None and pg_p95 <= 5)
    for span in ("all_time", "one_week"):
        total = _get(results, "postgres", "report", span, "total_ms")
        add(f"PostgreSQL admin report ({span.replace('_', ' ')}), ms", total, "<= 500", total is not None and total <= 500)
    soak = results.get("soak") or {}
    for side in ("app", "workers"):
        ratio = _get(soak, "rss", side, "ratio")
        add(f"soak: RSS of the {side}, second half / first half", ratio, "within 10 %",
            ratio is not None and abs(ratio - 1) <= 0.10)
    if "holds_left" in soak:
        clean = soak["holds_left"] + soak["lost_credits"] + soak["doubled_credits"]
        add("soak: holds left + lost + doubled credits", clean, "0, verify passes", clean == 0 and soak["verify_ok"])
    return targets


def _fmt(value, digits=1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _signed(value) -> str:
    return "-" if value is None else f"{value:+,.1f}"


def _speed_row(side: dict, raw: dict) -> tuple[str, str, str, str]:
    """One generation side against its raw reference: tokens/s and time to first token."""
    return (
        side["label"].split(":")[0] + " tokens/s | TTFT ms",
        f"{_fmt(side['tokens_per_s'])} | {_fmt(side['ttft_ms_median'])}",
        f"{_fmt(raw.get('tokens_per_s'))} | {_fmt(raw.get('ttft_ms_median'))}",
        f"x{_fmt(side['tokens_per_s_ratio'], 3)} | {_signed(side['ttft_added_ms_median'])} ms",
    )


def table_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(measure, ours, reference, ratio or note) for the printed table and docs/BENCHMARKS.md."""
    rows = []
    gen = results.get("generation", {})
    raw = _get(gen, "sides", "a_raw") or {}
    for key in ("a_raw", "a_completion", "b_engine", "c_turn"):
        side = _get(gen, "sides", key)
        if side:
            rows.append(_speed_row(side, raw))
    http = results.get("http", {})
    raw_h = _get(http, "sides", "a_raw") or {}
    for key in ("d_sse", "e_v1"):
        side = _get(http, "sides", key)
        if side:
            rows.append(_speed_row(side, raw_h))
    cpu = http.get("cpu_s_per_answer")
    if cpu:
        rows.append(("(d) CPU per answer: web process | model workers, s", f"{_fmt(cpu['web_process'], 3)} | {_fmt(cpu['workers'], 3)}",
                     "-", "decode runs in the worker, outside the web process's GIL"))
    if http.get("app_engine_tokens_per_s"):
        rows.append(("(d) the model inside the app, tokens/s (its interaction log)", _fmt(http["app_engine_tokens_per_s"]),
                     _fmt(raw_h.get("tokens_per_s")), f"x{_fmt(http['app_engine_tokens_per_s_ratio'], 3)}"))
    noop = _get(http, "gradio_noop_event_ms")
    if noop:
        rows.append(("gradio round trip of an empty event, ms", _fmt(noop["sse_median"]), "-", "queue/join + queue/data"))
    rows += _batching_rows(results.get("batching", {}))
    remote = results.get("remote", {})
    raw_r = _get(remote, "sides", "a_direct") or {}
    for key in ("a_direct", "b_engine", "c_turn"):
        side = _get(remote, "sides", key)
        if side:
            rows.append(_speed_row(side, raw_r))
    for name, figures in (_get(results, "extra_buffers", "models") or {}).items():
        for kind in ("prefill", "decode"):
            on_crashed = figures["on"].get("crashed")
            rows.append((f"{name}: {kind} tokens/s, CPU extra buffers off (ours) vs on",
                         _fmt(figures["off"][f"{kind}_tokens_per_s"]),
                         on_crashed or _fmt(figures["on"][f"{kind}_tokens_per_s"]),
                         "on is not an option here" if on_crashed else f"x{_fmt(figures[f'{kind}_off_on_ratio'], 3)}"))
    for row in _get(results, "ledger", "table") or []:
        rows.append((f"ledger cycles/s, {row['config']}", _fmt(row["ours_cycles_per_s"]), _fmt(row["raw_cycles_per_s"]),
                     f"x{_fmt(row['ratio'], 3)}; lost {row['lost_credits']}, doubled {row['doubled_credits']}, "
                     f"verify {'ok' if row['verify_ok'] else 'FAILED'}"))
    q = results.get("queries", {})
    if "history" in q:
        data = q["dataset"]
        rows.append((f"history page p50 | p95 ms ({data['users']:,} users, {data['interactions']:,} turns)",
                     f"{_fmt(q['history']['all']['p50_ms'], 2)} | {_fmt(q['history']['all']['p95_ms'], 2)}", "-", "target p95 <= 5"))
        if q.get("statement"):
            rows.append((f"statement page p50 | p95 ms ({q['statement']['ledger_entries']:,} ledger entries)",
                         f"{_fmt(q['statement']['p50_ms'], 2)} | {_fmt(q['statement']['p95_ms'], 2)}", "-", "target p95 <= 5"))
        chats = q.get("chats")
        if chats:
            listing, opened = chats["list"], chats["open_long_chat"]
            rows.append((f"chat list p50 | p95 ms ({chats['dataset']['conversations']:,} chats; "
                         f"{listing['users']} users with {listing['chats_of_those_users_min']:,}+ each)",
                         f"{_fmt(listing['all']['p50_ms'], 2)} | {_fmt(listing['all']['p95_ms'], 2)}", "-",
                         f"target p95 <= 5; with a search p95 {_fmt(listing['search'].get('p95_ms'), 2)} ms"))
            rows.append((f"open a chat of {opened['turns']} turns, server side, p50 | p95 ms",
                         f"{_fmt(opened['p50_ms'], 1)} | {_fmt(opened['p95_ms'], 1)}", "-", "target <= 100"))
        for span in ("all_time", "one_week"):
            report = q["report"][span]
            parts = ", ".join(f"{name} {_fmt(value)}" for name, value in report["parts_ms"].items())
            rows.append((f"admin report, {span.replace('_', ' ')}, ms", _fmt(report["total_ms"]), "-",
                         f"target <= 500; parts: {parts}"))
        if "rollup_first_fill_ms" in q["report"]:
            rows.append(("admin report: the roll-up's first fill (once per database), ms",
                         _fmt(q["report"]["rollup_first_fill_ms"]), "-", "then about one day's turns a day"))
        v = q["verify"]
        rows.append(("verify: ledger invariant | integrity_check, ms", f"{_fmt(v['ledger_invariant_ms'])} | {_fmt(v['integrity_check_ms'])}",
                     f"quick_check {_fmt(v.get('raw_quick_check_ms'))}",
                     f"whole verify {_fmt(v['total_ms'])} ms, {'passed' if v['passed'] else 'FAILED'}; "
                     f"file {_fmt(v.get('file_bytes', 0) / 1e9, 2)} GB"))
        rows.append(("query plans: tables read without an index", ", ".join(q["table_scans"]) or "none", "-", "see plans in the JSON"))
    screen = results.get("chat_screen", {})
    for key, goal, what in CHAT_SCREEN_TARGETS:
        if key in screen:
            figures = screen[key]
            rows.append((f"chat screen: {what} ({screen['chats']:,} chats), p50 | p95 ms",
                         f"{_fmt(figures['p50_ms'], 1)} | {_fmt(figures['p95_ms'], 1)}", "-",
                         f"target p95 <= {goal}; max {_fmt(figures['max_ms'], 1)} ms, n {figures['n']}"))
    s = results.get("startup", {})
    if "app" in s:
        app, raw_s = s["app"], s["raw_llama_cpp"]
        gradio = s.get("import_gradio")
        if gradio:
            rows.append(("start-up to first HTTP 200, s", _fmt(app["first_http_200_s"], 2), _fmt(s["limit_s"], 2),
                         f"x{_fmt(s['first_http_200_vs_limit'], 3)} of the slower reference ({s['limit_is']}); "
                         f"load both models {_fmt(raw_s['process_s'], 2)} s, import gradio {_fmt(gradio['process_s'], 2)} s"))
            rows.append(("first start on a fresh data dir (database + CPU check), s",
                         _fmt(s["first_start"]["first_http_200_s"], 2), "-", "once per data dir"))
        else:
            rows.append(("start-up to first HTTP 200, s", _fmt(app["first_http_200_s"], 2), _fmt(raw_s["process_s"], 2),
                         "reference: python + import llama_cpp + load both models"))
        workers = app.get("workers_rss_bytes")
        rows.append(("RSS after models loaded, MB" + (": web process + workers" if workers else ""),
                     _fmt(app["rss_bytes"] / 1e6, 0) + (f" + {_fmt(workers / 1e6, 0)}" if workers else ""),
                     _fmt(raw_s["rss_bytes"] / 1e6, 0),
                     f"model files {_fmt(s['model_files_bytes'] / 1e6, 0)} MB; anon: app {_fmt(app['rss_anon_bytes'] / 1e6, 0)} MB"
                     + (f", workers {_fmt(app['workers_rss_anon_bytes'] / 1e6, 0)} MB" if workers else "")
                     + f", raw {_fmt(raw_s['rss_anon_bytes'] / 1e6, 0)} MB"))
    iso = results.get("isolation", {})
    if "engine" in iso:
        rows.append(("mini TTFT idle -> while pro generates, ms",
                     f"{_fmt(iso['engine']['idle_ttft_ms'])} -> {_fmt(iso['engine']['busy_ttft_ms'])}",
                     f"{_fmt(iso['raw']['idle_ttft_ms'])} -> {_fmt(iso['raw']['busy_ttft_ms'])}",
                     f"x{_fmt(iso['engine']['slowdown'], 2)} (raw x{_fmt(iso['raw']['slowdown'], 2)})"))
    edge = results.get("edge", {})
    if "session_check" in edge:
        check = edge["session_check"]
        rows.append(("edge: signed-in queue/join through the edge (session looked up) | inner app alone, p50 | p95 ms",
                     f"{_fmt(check['through_edge_cold']['p50_ms'], 3)} | {_fmt(check['through_edge_cold']['p95_ms'], 3)}",
                     f"{_fmt(check['inner_app_alone']['p50_ms'], 3)} | {_fmt(check['inner_app_alone']['p95_ms'], 3)}",
                     f"added p95 {_fmt(check['added_p95_ms'], 3)} ms (memoised: {_fmt(check['added_warm_p95_ms'], 3)} ms); "
                     f"lookup alone p95 {_fmt(check['has_live_session']['p95_ms'], 3)} ms, binding p95 {_fmt(check['binding_check']['p95_ms'], 4)} ms"))
    for rate, flood in edge.get("flood", {}).items():
        if not isinstance(flood, dict) or "idle" not in flood:
            continue
        what = f"a sign-in flood of {rate}/s" if flood.get("route", "auth") == "auth" else f"an anonymous {rate} flood (max rate)"
        rows.append((f"edge: signed-in event (new_chat) during {what} | idle, p50 | p95 ms",
                     f"{_fmt(flood['during_flood']['p50_ms'])} | {_fmt(flood['during_flood']['p95_ms'])}",
                     f"{_fmt(flood['idle']['p50_ms'])} | {_fmt(flood['idle']['p95_ms'])}",
                     f"x{_fmt(flood['p50_ratio'], 2)} | x{_fmt(flood['p95_ratio'], 2)}; flood {_fmt(flood['flood']['requests_per_s'])} req/s, "
                     f"statuses {flood['flood']['statuses']}; web process {_fmt(flood['web_process_cores']['during_flood'], 2)} "
                     f"cores (idle {_fmt(flood['web_process_cores']['idle'], 2)})"))
    rows += _postgres_rows(results.get("postgres", {}))
    rows += _soak_rows(results.get("soak", {}))
    for name, section in results.items():
        if isinstance(section, dict) and "error" in section:
            rows.append((f"{name}: FAILED", section["error"][:60], "-", "-"))
    busy = {name: s.get("other_processes_cores") for name, s in results.items() if isinstance(s, dict)}
    if busy:
        noisy = [name for name, cores in busy.items() if cores is not None and cores > NOISY_CORES]
        rows.append(("other processes' CPU during each section, cores",
                     ", ".join(f"{name} {_fmt(cores, 2)}" for name, cores in busy.items()), "-",
                     f"NOISY: {', '.join(noisy)}; rerun on an idle machine" if noisy else f"all below {NOISY_CORES}: quiet"))
    return rows


def _batching_rows(batching: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for count, figures in (batching.get("streams") or {}).items():
        server = ""
        if "llama_server_tokens_per_s" in figures:
            server = (f"; llama-server -np {count} {_fmt(figures['llama_server_tokens_per_s'])} tok/s, ours "
                      f"x{_fmt(figures.get('vs_llama_server'), 3)}")
        rows.append((f"batching: {count} stream(s) through /v1, aggregate decode tokens/s",
                     _fmt(figures["aggregate_tokens_per_s"]), _fmt(figures.get("llama_batched_bench_s_tg")),
                     f"x{_fmt(figures.get('vs_s_tg'), 3)} of llama-batched-bench S_TG; speed-up over 1 stream: ours "
                     f"x{_fmt(figures.get('speedup_vs_1'), 2)}, llama.cpp x{_fmt(figures.get('llama_speedup_vs_1'), 2)}"
                     + server))
    if "raw_single_stream_tokens_per_s" in batching:
        rows.append(("batching: one stream through /v1 vs raw llama-cpp-python, tokens/s",
                     _fmt(batching["streams"]["1"]["aggregate_tokens_per_s"] if "1" in batching["streams"]
                          else batching["streams"][1]["aggregate_tokens_per_s"]),
                     _fmt(batching["raw_single_stream_tokens_per_s"]), f"x{_fmt(batching.get('one_stream_vs_raw'), 3)}"))
    if "ttft_with_3_streaming_ms" in batching:
        limit = (f"; limit idle + 2 decode steps of {_fmt(batching['decode_step_with_3_streaming_ms'])} ms = "
                 f"{_fmt(batching['ttft_limit_ms'])} ms" if batching.get("ttft_limit_ms") is not None else "")
        rows.append(("batching: a new request's TTFT while 3 stream | idle, ms", _fmt(batching["ttft_with_3_streaming_ms"]),
                     _fmt(batching["ttft_idle_ms"]), "median of 3" + limit))
    gap = batching.get("prefill_gap")
    if gap and "error" in gap:
        rows.append(("batching: p95 token gap while a long prompt prefills: FAILED", gap["error"][:80], "-", "-"))
    elif gap:
        rows.append(("batching: p95 token gap while a long prompt prefills | idle, ms", _fmt(gap["gap_p95_during_prefill_ms"]),
                     _fmt(gap["idle_gap_p95_ms"]), f"x{_fmt(gap['ratio'], 2)}; the {gap['long_prompt_tokens']}-token prompt's "
                     f"TTFT {_fmt(gap['long_prompt_ttft_ms'])} ms"))
    chats = batching.get("two_long_chats")
    if chats:
        rows.append(("batching: two long chats taking turns, 2nd turn TTFT | 1st, ms",
                     " / ".join(_fmt(t) for t in chats["second_turn_ttft_ms"]),
                     " / ".join(_fmt(t) for t in chats["first_turn_ttft_ms"]),
                     f"x{_fmt(chats['ratio'], 3)}; prompts {chats['prompt_tokens']} tokens"))
    cache = batching.get("prompt_cache") or {}
    eight = cache.get("eight_chats_four_slots")
    if eight:
        second, first = eight["second_turns"], eight["first_turns"]
        rows.append(("batching: 8 long chats over 4 slots, 2nd turn TTFT | 1st, mean ms",
                     _fmt(sum(t["ttft_ms"] for t in second) / len(second)), _fmt(sum(t["ttft_ms"] for t in first) / len(first)),
                     f"x{_fmt(eight['ratio'], 3)}; 2nd turns' cache {'/'.join(t['cache'] or 'miss' for t in second)}, "
                     f"prompt tokens reused {sum(t['prompt_tokens_reused'] for t in second):,}, prefilled "
                     f"{sum(t['prompt_tokens_prefilled'] for t in second):,} (1st turns prefilled "
                     f"{sum(t['prompt_tokens_prefilled'] for t in first):,})"))
    past = cache.get("past_context")
    if past and past.get("after_cut"):
        after = past["after_cut"]
        rows.append((f"batching: a chat past its context ({past['n_ctx']:,}), mean TTFT of the next 10 turns | full prefill, ms",
                     _fmt(past["mean_ttft_after_cut_ms"]), _fmt(past["full_prefill_ttft_ms"]),
                     f"x{_fmt(past['ratio'], 3)}; cut at turn {past['turns_until_cut'] + 1}, whose TTFT "
                     f"{_fmt(past['turns'][past['turns_until_cut']]['ttft_ms'])} ms; the 10 turns: cache hits "
                     f"{sum(1 for t in after if t['cache'])}/10, prompt tokens {after[0]['prompt_tokens']:,}–"
                     f"{after[-1]['prompt_tokens']:,}, reused {sum(t['prompt_tokens_reused'] for t in after):,}, prefilled "
                     f"{sum(t['prompt_tokens_prefilled'] for t in after):,}; full prefill of "
                     f"{past['full_prefill'][0]['prompt_tokens']:,} tokens"))
    if cache.get("error"):
        rows.append(("batching: prompt cache runs FAILED", cache["error"][:80], "-", "-"))
    if batching.get("reference_note"):
        rows.append(("batching: llama.cpp reference", batching["reference_note"][:80], "-", "-"))
    if batching.get("llama_server_note") or _get(batching, "llama_server", "error"):
        why = _get(batching, "llama_server", "error") or batching["llama_server_note"]
        rows.append(("batching: llama-server reference", why[:80], "-", "-"))
    return rows


def _soak_rows(soak: dict) -> list[tuple[str, str, str, str]]:
    if "rss" not in soak:
        return []
    rows = [(f"soak: {soak['users']} users, {_fmt(soak['duration_s'] / 60, 1)} min, requests | worker SIGKILLs",
             f"{_fmt(soak['requests'])} | {_fmt(soak['worker_kills'])}", "-",
             f"unexpected answers {soak['unexpected_count']}; app alive at the end: {_fmt(soak['app_alive_at_end'])}")]
    for side in ("app", "workers"):
        figures = soak["rss"].get(side, {})
        if "ratio" in figures:
            rows.append((f"soak: RSS of the {side}, second half / first half after {_fmt(soak['rss']['warm_up_s'], 0)} s, MB",
                         f"{_fmt(figures['second_half_mean_mb'])}", f"{_fmt(figures['first_half_mean_mb'])}",
                         f"x{_fmt(figures['ratio'], 3)} (max {_fmt(figures['max_mb'])} MB, {figures['samples']} samples)"))
    rows.append(("soak: holds left | lost | doubled credits", f"{soak['holds_left']} | {soak['lost_credits']} | {soak['doubled_credits']}",
                 "0 | 0 | 0", f"verify {'ok' if soak['verify_ok'] else 'FAILED'}; charges = turns' log: {_fmt(soak['charges_match_turns'])}"))
    return rows


def _postgres_rows(pg: dict) -> list[tuple[str, str, str, str]]:
    if "skipped" in pg:
        return [("PostgreSQL section skipped", pg["skipped"], "-", "-")]
    if "ledger" not in pg:
        return []
    server = pg["server"]
    rows = [("PostgreSQL server", server["server_version"], "-",
             f"fsync {server['fsync']} at start (each ledger row says its own), shared_buffers {server['shared_buffers']}, "
             f"work_mem {server['work_mem']}, jit {server['jit']}")]
    trips = pg["ledger"]["statements"]
    for row in pg["ledger"]["table"]:
        rows.append((f"PostgreSQL ledger cycles/s, {row['config']}", _fmt(row["ours_cycles_per_s"]),
                     _fmt(row["raw_cycles_per_s"]),
                     f"x{_fmt(row['ratio'], 3)}; client CPU {_fmt(row['ours_client_cpu_ms_per_cycle'], 2)} vs "
                     f"{_fmt(row['raw_client_cpu_ms_per_cycle'], 2)} ms/cycle; lost {row['lost_credits']}, "
                     f"doubled {row['doubled_credits']}, verify {'ok' if row['verify_ok'] else 'FAILED'}, errors {row['errors']}"
                     + (f"; raw with ours' savepoints {_fmt(row['raw_savepoints_cycles_per_s'])}/s, "
                        f"{_fmt(row['raw_savepoints_client_cpu_ms_per_cycle'], 2)} ms CPU" if "raw_savepoints_cycles_per_s" in row else "")))
    rows.append(("PostgreSQL ledger round trips per cycle", _fmt(trips["round_trips_ours"]), _fmt(trips["round_trips_raw"]),
                 f"ours' {trips['savepoint_statements_ours']} are savepoints; same statements otherwise: "
                 f"{_fmt(trips['same_statements'])}"))
    history, data = pg["history"], pg["dataset"]
    for key in ("one_client", "eight_clients"):
        figures = history[key]
        ours, raw = figures["ours"], figures["raw"]
        rate = f"; {_fmt(ours['pages_per_s'])} vs {_fmt(raw['pages_per_s'])} pages/s" if "pages_per_s" in ours else ""
        rows.append((f"PostgreSQL history page, {key.replace('_', ' ')}, p50 | p95 ms "
                     f"({data['users']:,} users, {data['interactions']:,} turns)",
                     f"{_fmt(ours['p50_ms'], 2)} | {_fmt(ours['p95_ms'], 2)}", f"{_fmt(raw['p50_ms'], 2)} | {_fmt(raw['p95_ms'], 2)}",
                     f"x{_fmt(figures['ratio'], 3)} speed{rate}"
                     + (f"; the same SQL through the app's connection x{_fmt(figures['app_connection_ratio'], 3)} "
                        f"(p50 {_fmt(figures['app_connection']['p50_ms'], 2)} ms)" if "app_connection" in figures else "")))
    for span, report in pg["report"].items():
        if span == "rollup_first_fill_ms":
            rows.append(("PostgreSQL admin report, the roll-up's first fill, ms", _fmt(report), "-",
                         "once, the first report after an upgrade"))
            continue
        slow = ", ".join(f"{part} {_fmt(report['parts'][part]['ours_ms'])}" for part in report["slowest_parts"])
        rows.append((f"PostgreSQL admin report, {span.replace('_', ' ')}, ms", _fmt(report["total_ms"]),
                     f"raw fetch {_fmt(report['raw_fetch_total_ms'])}",
                     f"server {_fmt(report['server_execution_total_ms'])} ms (EXPLAIN ANALYZE); slowest: {slow}"))
    return rows


def format_markdown(rows, targets) -> str:
    lines = ["| measure | ours | reference | ratio / note |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [
        f"| {t['target']} | {_fmt(t['value'], 3)} | {t['goal']} | {({True: 'yes', False: '**no**', None: 'n/a'})[t['met']]} |"
        for t in targets
    ]
    return "\n".join(lines)


def format_table(rows, targets) -> str:
    header = ("measure", "ours", "reference", "ratio / note")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("targets:")
    for t in targets:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        lines.append(f"  {mark} {t['target']}: {_fmt(t['value'], 3)} (goal {t['goal']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_file:
        document = json.loads(args.from_file.read_text())
        rows = table_rows(document["results"])
        targets = evaluate_targets(document["results"])
        print(format_markdown(rows, targets) if args.markdown else format_table(rows, targets))
        return 0
    sections = [s.strip() for s in args.only.split(",")] if args.only else [s for s in SECTIONS if s not in ON_REQUEST]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    model = (args.model or default_model()).resolve()
    pro_model = (args.pro_model or model).resolve()
    for path in (model, pro_model):
        if not path.is_file():
            print(f"model file not found: {path}", file=sys.stderr)
            return 2
    out = args.out or RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    work_dir = Path(tempfile.mkdtemp(prefix="gemma-chat-bench-", dir=args.work_dir))
    options = Options(
        quick=args.quick,
        model=model,
        pro_model=pro_model,
        max_tokens=args.max_tokens or (32 if args.quick else 128),
        rounds=args.rounds or (1 if args.quick else 3),
        work_dir=work_dir,
        n_threads=args.threads,
        soak_minutes=args.minutes,
        log=lambda text: print(text, flush=True),
    )
    began = time.monotonic()
    machine = machine_info()
    options.say(f"gemma-chat benchmarks{' (quick)' if args.quick else ''}: {machine['cpu']}, "
                f"{machine['physical_cores']} cores, load average {machine['load_average_at_start']}; model {model.name}")
    try:
        results = run_sections(options, sections)
    finally:
        if args.keep:
            options.say(f"temporary files kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    machine["load_average_at_end"] = load_average()
    merged_from = None
    if args.merge and out.is_file():
        earlier = json.loads(out.read_text())
        merged_from = {"machine": earlier["machine"], "options": earlier["options"], "duration_s": earlier["duration_s"],
                       "merged_from": earlier.get("merged_from")}
        results = {**{k: v for k, v in earlier["results"].items() if k not in results}, **results}
        results = {name: results[name] for name in SECTIONS if name in results}
    targets = evaluate_targets(results)
    rows = table_rows(results)
    document = {
        "machine": machine,
        "options": {
            "quick": options.quick, "model": str(model), "pro_model": str(pro_model), "max_tokens": options.max_tokens,
            "rounds": options.rounds, "sections": sections, "n_threads": options.n_threads or None, "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        },
        "duration_s": round(time.monotonic() - began, 1),
        # --merge: the run whose other sections this file keeps (each section has its own started_at).
        "merged_from": merged_from,
        "targets": targets,
        "table": [dict(zip(("measure", "ours", "reference", "ratio_or_note"), row)) for row in rows],
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(as_plain(document), indent=1, ensure_ascii=False) + "\n")
    partial.replace(out)
    print()
    print(format_markdown(rows, targets) if args.markdown else format_table(rows, targets))
    print(f"\n{document['duration_s']} s in all; results in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if any("error" in section for section in results.values() if isinstance(section, dict)) else 0


if __name__ == "__main__":
    sys.exit(main())

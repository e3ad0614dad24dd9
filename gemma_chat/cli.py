"""Command line: parse, call one service function, print. `gemma-chat --help` lists the commands.

The same CLI answers as `gemma-chat`, `python -m gemma_chat` and `python main.py` (in a checkout).

Domain errors become one line on stderr and a non-zero exit code; nothing here prints a traceback
for an expected failure.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import getpass
import io
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .accounts import admin, auth
from .billing import ledger
from .config import Settings, default_paths, load_settings, package_version
from .errors import ConfigError, GemmaChatError, ValidationError
from .ops.reports import Reports

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DOWNLOAD_TIERS = ("mini", "pro")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage + exits 2; keep it to one line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the subcommand's default.
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory (`gemma-chat paths` shows it; env GEMMA_CHAT_DATA_DIR)")
    common.add_argument("--models-dir", default=argparse.SUPPRESS, help="where the GGUF files are (env GEMMA_CHAT_MODELS_DIR)")
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file (env GEMMA_CHAT_CONFIG)")
    common.add_argument(
        "--database-url", default=argparse.SUPPRESS,
        help="postgresql://user@host/db for a shared PostgreSQL (default: SQLite in the data dir; env GEMMA_CHAT_DATABASE_URL)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(prog="gemma-chat", description="gemma-chat: a local chat app with exact credit billing.", parents=[common])
    parser.add_argument("--version", action="version", version=f"gemma-chat {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    serve = commands.add_parser("serve", parents=[common], help="start the app (the default with no command)")
    add_serve_options(serve)

    models = commands.add_parser("models", parents=[common], help="what each model tier will run, and why")
    models.add_argument("--format", choices=["table", "json"], default="table")
    models.add_argument("--strict-models", action="store_true", help="no bundled demo model for a missing file")

    download = commands.add_parser("download", parents=[common], help="fetch the tiers' GGUF files from the Hugging Face Hub")
    download.add_argument("--tier", choices=(*DOWNLOAD_TIERS, "all"), default="all", help="which tier's model (default: all)")
    download.add_argument("--dry-run", action="store_true", help="show what would be downloaded; fetch nothing")
    download.add_argument("--token", help="Hugging Face token for gated repos (default: HF_TOKEN or a stored login)")
    download.add_argument("--repo", help="download from this repo instead (single tier only)")
    download.add_argument("--file", help="download this file instead, e.g. another quantization (single tier only)")

    commands.add_parser("paths", parents=[common], help="where the data, database, log, models and caches are")

    report = commands.add_parser("report", parents=[common], help="requests per model, credits per user, errors")
    report.add_argument("--since", metavar="YYYY-MM-DD")
    report.add_argument("--until", metavar="YYYY-MM-DD")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")

    users = commands.add_parser("users", parents=[common], help="list, create and manage accounts")
    users_commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True, parser_class=_Parser)
    users_commands.add_parser("list", parents=[common], help="every account")
    create = users_commands.add_parser("create", parents=[common], help="create an account")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make it an administrator")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd = users_commands.add_parser("passwd", parents=[common], help="set a new password (every session of the account ends)")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for action, text in [
        ("promote", "make an administrator"),
        ("demote", "remove administrator rights"),
        ("disable", "block logging in"),
        ("enable", "allow logging in again"),
        ("unlock", "end a lock-out after failed logins"),
    ]:
        users_commands.add_parser(action, parents=[common], help=text).add_argument("username")

    credits = commands.add_parser("credits", parents=[common], help="grant credits or show an account's ledger")
    credits_commands = credits.add_subparsers(dest="credits_command", metavar="ACTION", required=True, parser_class=_Parser)
    grant = credits_commands.add_parser("grant", parents=[common], help="add (or, negative, remove) credits")
    grant.add_argument("username")
    grant.add_argument("amount", help="a non-zero whole number; negative to correct")
    grant.add_argument("--note", help="why (kept in the ledger)")
    grant.add_argument("--by", metavar="ADMIN", help="the acting administrator's username (recorded; default: the command line)")
    show = credits_commands.add_parser("show", parents=[common], help="balance, holds and last entries")
    show.add_argument("username")
    show.add_argument("--limit", type=int, default=10)

    keys = commands.add_parser("keys", parents=[common], help="API keys for /v1: create, list, revoke")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True, parser_class=_Parser)
    create_key = keys_commands.add_parser("create", parents=[common], help="make a key for USER and print it (shown once)")
    create_key.add_argument("username")
    create_key.add_argument("--label", default="", help="a name to tell the key apart")
    keys_commands.add_parser("list", parents=[common], help="USER's keys").add_argument("username")
    revoke_key = keys_commands.add_parser("revoke", parents=[common], help="stop a key at once")
    revoke_key.add_argument("key_id", type=int)

    commands.add_parser("verify", parents=[common], help="check the database and the ledger invariant")

    db_parser = commands.add_parser("db", parents=[common], help="the database: migrate, back up, copy to PostgreSQL")
    db_commands = db_parser.add_subparsers(dest="db_command", metavar="ACTION", required=True, parser_class=_Parser)
    db_commands.add_parser("migrate", parents=[common], help="bring the schema up to date and say what changed")
    backup = db_commands.add_parser("backup", parents=[common], help="a consistent copy, safe while the app runs")
    backup.add_argument("file", type=Path, help="the new file to write (never overwritten)")
    copy = db_commands.add_parser(
        "copy", parents=[common], help="copy the data dir's SQLite database into an empty PostgreSQL database"
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user[:password]@host[:port]/database (empty)")
    return parser


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument("--strict-models", action="store_true", help="no bundled demo model for a missing file")
    parser.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object per log line (env GEMMA_CHAT_LOG_FORMAT)")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "strict_models", False):
        overrides["strict_models"] = True
    if getattr(args, "database_url", None) is not None:
        overrides["database_url"] = args.database_url
    if getattr(args, "log_format", None) is not None:
        overrides["log_format"] = args.log_format
    if getattr(args, "models_dir", None) is not None:
        overrides["models_dir"] = Path(args.models_dir)
    return load_settings(data_dir=getattr(args, "data_dir", None), config_file=getattr(args, "config", None), **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    starts_with_option = not argv or argv[0].startswith("-")
    if starts_with_option and not any(word in COMMANDS or word in ("-h", "--help", "--version") for word in argv):
        argv = ["serve"] + argv  # `main.py [--port N] ...` with no command starts the app
    args = parser.parse_args(argv)
    command = args.command
    try:
        settings = settings_from(args)
    except ConfigError as exc:  # a bad settings file or variable: a usage error, like a bad flag
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[command](settings, args)
    except GemmaChatError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _open(settings: Settings) -> None:
    from .ops.startup import open_data_dir

    open_data_dir(settings)


# --- commands -------------------------------------------------------------------


def cmd_serve(settings: Settings, args) -> int:
    from .serve import serve_app

    return serve_app(settings, host=args.host, port=args.port, open_browser=not args.no_browser)


def cmd_download(settings: Settings, args) -> int:
    """Each tier's file from the Hub into models_dir; one line per outcome, the bar for progress."""
    if (args.repo or args.file) and args.tier == "all":
        print("error: --repo and --file need a single --tier (mini or pro)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _download(settings, args)
    except KeyboardInterrupt:
        print("error: interrupted; run again to resume the download.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback for a command-line user
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _download(settings: Settings, args) -> int:
    # huggingface_hub 2.x otherwise fetches {HF_ENDPOINT}/api/agent-harnesses for its user-agent
    # telemetry before the first request (3 s lost on a dead network); read at import, so set first.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from huggingface_hub.utils import logging as hf_logging
    from huggingface_hub.utils import tqdm

    from .inference.download import describe_plan, download_model, plan_download, source_for

    # Retry chatter from huggingface_hub would break the one-line-per-outcome output.
    hf_logging.set_verbosity_error()
    failed = 0
    for tier in DOWNLOAD_TIERS if args.tier == "all" else (args.tier,):
        try:
            source = source_for(tier, args.repo, args.file)
            plan = plan_download(settings, tier, source=source, token=args.token, allow_offline=args.dry_run)
            if args.dry_run:
                print(describe_plan(plan))
                continue
            if plan.state in ("download", "resume"):
                start = f"resuming at byte {plan.partial_bytes:,}:" if plan.state == "resume" else "downloading"
                print(f"{tier}: {start} {source.repo_id} / {source.filename} -> {plan.destination}", flush=True)
            print(download_model(plan, token=args.token, tqdm_class=tqdm).message)
        except GemmaChatError as exc:
            # Go on with the other tier: a gated pro repo should not stop mini from downloading.
            print(f"error: {exc.message}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def cmd_paths(settings: Settings, args) -> int:
    from .backends.cpu_features import machine_cache_dir

    where = default_paths()
    rows = [
        ("installation", where.installation),
        ("data", settings.data_dir.resolve()),
        ("database", settings.database_label),
        ("log", settings.log_path.resolve()),
        ("models", settings.models_dir.resolve()),
        ("machine cache", machine_cache_dir()),
    ]
    print(format_table(["what", "where"], rows))
    return EXIT_OK


def cmd_models(settings: Settings, args) -> int:
    from .backends.cpu_features import decide_extra_buffers
    from .inference.model_files import describe_models, format_models_table, statuses_as_json

    statuses = [_with_server_check(settings, status) for status in describe_models(settings)]
    extra_buffers = decide_extra_buffers(settings)
    if args.format == "json":
        rows = statuses_as_json(statuses)
        for row in rows:
            if settings.tier(row["tier"]).backend == "local":
                row["cpu_extra_buffers"] = extra_buffers.reason
        print(json.dumps(rows, indent=2))
    else:
        print(format_models_table(statuses))
        if any(settings.tier(s.tier).backend == "local" for s in statuses):
            print(f"\n{extra_buffers.summary}")
    return EXIT_OK


def _with_server_check(settings: Settings, status):
    """A remote tier's status says whether its server answers now (a 2 s check)."""
    if not status.base_url:
        return status
    from .backends.openai import check_server

    answers, reason = check_server(settings.tier(status.tier), timeout=2.0)
    return dataclasses.replace(status, status="remote" if answers else "remote, down", reason=reason)


def cmd_report(settings: Settings, args) -> int:
    reports = Reports.for_range(args.since, args.until)
    _open(settings)
    report = reports.full()
    if args.format == "json":
        print(json.dumps(report, indent=2, default=str))
    elif args.format == "csv":
        print(_report_csv(report), end="")
    else:
        print(_report_table(report))
    return EXIT_OK


def _report_sections(report: dict) -> list[tuple[str, list[str], list[list]]]:
    by_model = ["model", "requests", "ok", "stopped", "failed", "refused", "credits"]
    by_user = ["username", "credits_spent", "credits_topped_up", "credits_granted", "balance", "requests"]
    errors = ["created_at", "error_id", "location", "exception_type", "message", "username"]
    performance = ["model", "requests", "error_rate", "ttft_median_ms", "ttft_p95_ms", "tokens_per_s", "answer_median_ms", "answer_p95_ms"]
    by_source = ["source", "model", "requests", "credits"]
    return [
        ("Model performance", performance, [[r[k] for k in performance] for r in report["model_performance"]]),
        ("Active users per day", ["day", "active_users"], [[r["day"], r["active_users"]] for r in report["active_users_by_day"]]),
        ("Requests per model", by_model, [[r[k] for k in by_model] for r in report["requests_by_model"]]),
        ("Requests per source (ui: the chat window, api: /v1)", by_source,
         [[r[k] for k in by_source] for r in report["requests_by_source"]]),
        ("Credits per user", by_user, [[r[k] for k in by_user] for r in report["credits_by_user"]]),
        ("Recent errors", errors, [[r[k] for k in errors] for r in report["errors"]]),
    ]


def _report_table(report: dict) -> str:
    span = f"{report['since'] or 'the beginning'} to {report['until'] or 'now'}"
    parts = [f"Report from {span} (UTC)"]
    for title, headers, rows in _report_sections(report):
        parts.append(f"\n{title}\n" + (format_table(headers, rows) if rows else "(none)"))
    return "\n".join(parts)


def _report_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for title, headers, rows in _report_sections(report):
        writer.writerow(["section"] + headers)
        writer.writerows([[title] + row for row in rows])
    return out.getvalue()


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValidationError("No terminal to ask for a password: pass --password-stdin and pipe it in.")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ValidationError("The two passwords differ.")
    return first


def cmd_users(settings: Settings, args) -> int:
    _open(settings)
    action = args.users_command
    if action == "list":
        rows = [
            [u.username, "admin" if u.is_admin else "user", _account_state(u), u.balance, u.held, f"{u.created_at:%Y-%m-%d %H:%M}"]
            for u in auth.list_users()
        ]
        print(format_table(["username", "role", "state", "balance", "held", "created (UTC)"], rows) if rows else "No accounts yet.")
        return EXIT_OK
    if action == "create":
        auth.validate_username(args.username)  # fail before asking for a password
        user = admin.create_user(settings, None, args.username, _read_new_password(args.password_stdin), admin=args.admin)
        role = "administrator" if user.is_admin else "user"
        print(f"Created {role} {user.username} with {user.balance} credits.")
        return EXIT_OK
    if action == "passwd":
        user = auth.require_user(args.username)  # fail before asking for a password
        admin.reset_password(settings, None, user.username, _read_new_password(args.password_stdin))
        print(f"New password set for {user.username}; their sessions have ended.")
        return EXIT_OK
    # Recorded in admin_actions with the command line as the actor, like the Admin tab's actions.
    changes: dict[str, Callable] = {
        "promote": lambda name: admin.set_admin(None, name, True),
        "demote": lambda name: admin.set_admin(None, name, False),
        "disable": lambda name: admin.set_disabled(None, name, True),
        "enable": lambda name: admin.set_disabled(None, name, False),
        "unlock": lambda name: admin.unlock(None, name),
    }
    user = changes[action](args.username)
    print(f"{user.username}: {'admin' if user.is_admin else 'user'}, {_account_state(user)}.")
    return EXIT_OK


def _account_state(user) -> str:
    from .store.db import utcnow

    if user.is_disabled:
        return "disabled"
    locked = auth.locked_clients(user.username, now=utcnow())
    if locked:
        until = max(end for _, end in locked)
        return f"locked for {', '.join(client for client, _ in locked)} until {until:%H:%M} UTC"
    return "active"


def cmd_credits(settings: Settings, args) -> int:
    _open(settings)
    user = auth.require_user(args.username)
    if args.credits_command == "grant":
        try:
            amount = int(args.amount.strip())
        except ValueError:
            raise ValidationError(f"AMOUNT must be a whole number; got {args.amount!r}.") from None
        actor_id = None  # the command line, recorded as such in the ledger and in admin_actions
        if args.by is not None:
            actor = auth.require_user(args.by)
            if not actor.is_admin:
                raise ValidationError(f"{actor.username} is not an administrator.")
            actor_id = actor.id
        entry = admin.grant_credits(actor_id, user.username, amount, args.note)
        print(f"Granted {amount:+d} credits to {user.username}; balance now {entry.balance_after}.")
        return EXIT_OK
    balance = ledger.get_balance(user.id)
    print(f"{user.username}: balance {balance.balance}, held {balance.held}, available {balance.available}")
    entries = ledger.recent_entries(user.id, limit=max(1, args.limit))
    rows = [[f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.kind, f"{e.amount:+d}", e.balance_after, e.note or e.request_id or ""] for e in entries]
    if rows:
        print(format_table(["time (UTC)", "kind", "amount", "balance after", "note / request"], rows))
    return EXIT_OK


def cmd_keys(settings: Settings, args) -> int:
    from .accounts import keys

    _open(settings)
    if args.keys_command == "create":
        user = auth.require_user(args.username)
        row, plaintext = keys.create_key(user.id, args.label)
        print(plaintext)
        print(f"API key {row.id} for {user.username}: shown only now, so keep it somewhere safe.", file=sys.stderr)
        return EXIT_OK
    if args.keys_command == "list":
        user = auth.require_user(args.username)
        rows = [
            [k.id, k.label, k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M}",
             f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
             f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"]
            for k in keys.list_keys(user.id, include_revoked=True)
        ]
        headers = ["id", "name", "key", "created (UTC)", "last used (UTC)", "state"]
        print(format_table(headers, rows) if rows else f"{user.username} has no API keys.")
        return EXIT_OK
    row = keys.revoke_key(args.key_id)
    print(f"Revoked API key {row.id} ({row.label or row.prefix + '…'}).")
    return EXIT_OK


def cmd_verify(settings: Settings, args) -> int:
    from .ops.verify import verify_database

    _open(settings)
    problems = verify_database(settings)
    if not problems:
        print(f"healthy: {settings.database_label} passes the integrity, foreign-key and ledger checks")
        return EXIT_OK
    print(f"{len(problems)} problem(s) in {settings.database_label}:")
    for problem in problems:
        print(f"- {problem}")
    return EXIT_FAILED


def cmd_db(settings: Settings, args) -> int:
    from .store.db import applied_migrations, close_database, open_database

    if args.db_command == "migrate":
        open_database(settings.database_target)  # applies what is missing, each migration once
        try:
            applied = applied_migrations()
        finally:
            close_database()
        print(f"{settings.database_label}: schema up to date ({len(applied)} migrations, the last {applied[-1]}).")
        return EXIT_OK
    if args.db_command == "copy":
        from .ops.transfer import copy_to_postgresql

        print(copy_to_postgresql(settings, args.to).summary)
        return EXIT_OK
    from .ops.backup import backup_database
    from .ops.verify import verify_database

    if settings.database_url:
        raise GemmaChatError("db backup copies the SQLite file; back up PostgreSQL with pg_dump (docs/DEPLOY.md).")
    if not settings.db_path.is_file():
        raise GemmaChatError(f"There is no database at {settings.db_path} to back up.")
    copy = backup_database(settings.db_path, args.file)
    # The copy is checked as `verify` checks the live database: integrity and the ledger invariant.
    open_database(copy.path)
    try:
        problems = verify_database(settings)
    finally:
        close_database()
    print(f"Backed up {settings.db_path} to {copy.path}: {copy.size_bytes / 1e6:,.1f} MB, "
          f"{copy.users} accounts, {copy.ledger_entries} ledger entries.")
    if problems:
        print(f"The copy fails verification ({len(problems)} problem(s)); the live database may too — run verify:")
        for problem in problems:
            print(f"- {problem}")
        return EXIT_FAILED
    print("The copy passes the integrity, foreign-key and ledger checks.")
    return EXIT_OK


COMMANDS = {
    "serve": cmd_serve,
    "download": cmd_download,
    "paths": cmd_paths,
    "models": cmd_models,
    "report": cmd_report,
    "users": cmd_users,
    "credits": cmd_credits,
    "keys": cmd_keys,
    "verify": cmd_verify,
    "db": cmd_db,
}

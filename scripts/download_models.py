"""Download the tiers' GGUF models from the Hugging Face Hub into models_dir (thin CLI over gemma_chat.download).

    python scripts/download_models.py                    # both tiers
    python scripts/download_models.py --tier mini --dry-run
    python scripts/download_models.py --tier mini --file gemma-3-1b-it-Q4_K_M.gguf

Exit codes: 0 done, 1 a download failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Run as `python scripts/download_models.py` from anywhere: the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# huggingface_hub 2.x otherwise fetches {HF_ENDPOINT}/api/agent-harnesses for its user-agent telemetry
# before the first request: one more call, and up to 3 s lost on a dead network. Read at import, so set first.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

TIERS = ("mini", "pro")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Download the Gemma GGUF model files the app needs.")
    parser.add_argument("--tier", choices=(*TIERS, "all"), default="all", help="which tier's model (default: all)")
    parser.add_argument("--models-dir", type=Path, help="where to save models (default: settings.models_dir)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be downloaded; fetch nothing")
    parser.add_argument("--token", help="Hugging Face token for gated repos (default: HF_TOKEN or a stored login)")
    parser.add_argument("--repo", help="download from this repo instead (single tier only)")
    parser.add_argument("--file", help="download this file instead, e.g. another quantization (single tier only)")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    args = parser.parse_args(argv)
    if (args.repo or args.file) and args.tier == "all":
        parser.error("--repo and --file need a single --tier (mini or pro)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted; run again to resume the download.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback for a command-line user
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import logging as hf_logging
    from huggingface_hub.utils import tqdm

    from gemma_chat.config import load_settings
    from gemma_chat.download import describe_plan, download_model, plan_download, source_for
    from gemma_chat.errors import ConfigError, GemmaChatError

    # Retry chatter from huggingface_hub would break the one-line-per-outcome output; the bar shows progress.
    hf_logging.set_verbosity_error()
    try:
        settings = load_settings(config_file=args.config, models_dir=args.models_dir)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2

    failed = 0
    for tier in TIERS if args.tier == "all" else (args.tier,):
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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

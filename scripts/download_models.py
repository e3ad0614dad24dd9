"""Download the tiers' GGUF models from the Hugging Face Hub into models_dir: `gemma-chat download`.

    python scripts/download_models.py                    # both tiers
    python scripts/download_models.py --tier mini --dry-run
    python scripts/download_models.py --tier mini --file gemma-3-1b-it-Q4_K_M.gguf

The same code as `gemma-chat download` (gemma_chat/cli.py), kept for the README and muscle memory;
it needs the package installed (`make run` and `make test` install the checkout in editable mode).
Exit codes: 0 done, 1 a download failed, 2 usage or configuration error, 130 interrupted.
"""

import sys

from gemma_chat.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))

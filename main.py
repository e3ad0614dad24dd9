"""gemma-chat: `python main.py` starts the app; `python main.py --help` lists the other commands."""

import sys

from gemma_chat.cli import main

if __name__ == "__main__":
    sys.exit(main())

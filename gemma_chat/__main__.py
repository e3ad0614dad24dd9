"""`python -m gemma_chat`: the same command line as `gemma-chat` and `python main.py`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

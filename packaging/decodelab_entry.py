"""Entry point of the frozen app (PyInstaller): the same program as ``python -m app``."""

import multiprocessing
import sys

from app.cli import main

if __name__ == "__main__":
    # llama_cpp imports multiprocessing; a frozen child process must not rerun the app.
    multiprocessing.freeze_support()
    sys.exit(main())

"""`python -m tuneoff ...`: the CLI, also as accelerate launches it (`accelerate launch -m tuneoff finetune ...`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

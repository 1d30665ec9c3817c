"""Ray job entry point: `ray job submit --working-dir . -- python jobs/evaluate.py --output ... [--manifest ...]`
takes the arguments of `python -m pipeline evaluate`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the uploaded working dir, where no install is

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="jobs/evaluate.py", command="evaluate"))

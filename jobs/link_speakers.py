"""Ray job entry point: `ray job submit --working-dir . -- python jobs/link_speakers.py --output ... [--threshold T]`
takes the arguments of `python -m pipeline link-speakers`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the uploaded working dir, where no install is

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="jobs/link_speakers.py", command="link-speakers"))

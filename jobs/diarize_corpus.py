"""Ray job entry point: `ray job submit --working-dir . -- python jobs/diarize_corpus.py --manifest ... --output ...`
takes the arguments of `python -m pipeline diarize`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the uploaded working dir, where no install is

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="jobs/diarize_corpus.py", command="diarize"))

#!/usr/bin/env bash
# Reproduces most figures of docs/RESULTS.md (each figure's own command is there), in one run on one machine (2 threads per process).
# Usage: bash benchmarks/run.sh [WORKDIR]   (needs `make install`; takes about an hour on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-outputs/benchmarks}
PY=.venv/bin/python
AMI=../shared/data/ami-excerpts/manifest.jsonl
mkdir -p "$W"
sim() { [ -f "$1/manifest.jsonl" ] || $PY -m benchmarks.simulate --out "$1" "${@:2}" > /dev/null; }

# Core model (issue 2): accuracy and real-time factor.
sim "$W/sim20" --num 20 --min-speakers 2 --max-speakers 5 --min-duration 60 --max-duration 180 --overlap 0.1 --seed 0
# (then the default model was ge2e: --model ge2e keeps these figures comparable)
$PY -m benchmarks.benchmark rtf --model ge2e --manifest "$W/sim20/manifest.jsonl" > "$W/rtf_sim20.json"
$PY -m benchmarks.benchmark accuracy --model ge2e --manifest "$AMI" --postprocessing-yaml pipeline/conf/far_field.yaml --estimate-speakers > "$W/accuracy_ami.jsonl"
$PY -m benchmarks.benchmark accuracy --model ge2e --manifest "$W/sim20/manifest.jsonl" --estimate-speakers > "$W/accuracy_sim20.jsonl"

# Default model against ge2e (issue 8): dev grid (dev only), dev and test accuracy, per-stage RTF.
# (the split corpora are generated into outputs/benchmarks/splits whatever WORKDIR is)
$PY -m benchmarks.tuning --split dev --json "$W/tuning_dev.json" \
    --option step_seconds=5 --option piece_seconds=2.5 > "$W/tuning_dev.txt"
for split in dev test; do
  for model in default ge2e; do
    $PY -m benchmarks.benchmark accuracy --split $split --model $model > "$W/accuracy_${split}_$model.txt"
  done
done
for model in default ge2e; do
  $PY -m benchmarks.benchmark rtf --manifest outputs/benchmarks/splits/sim-test-20-seed2002/manifest.jsonl --model $model > "$W/rtf_sim_test_$model.json"
done

# Corpus runs scored by the evaluate command (issue 4).
rm -rf "$W/run_ami" "$W/run_sim20"
$PY -m pipeline diarize --manifest "$AMI" --output "$W/run_ami" --postprocessing-yaml pipeline/conf/far_field.yaml > /dev/null
$PY -m pipeline evaluate --output "$W/run_ami" > "$W/evaluate_ami.txt"
$PY -m pipeline diarize --manifest "$W/sim20/manifest.jsonl" --output "$W/run_sim20" > /dev/null
$PY -m pipeline evaluate --output "$W/run_sim20" > "$W/evaluate_sim20.txt"

# Ray pipeline (issue 3): throughput against an in-process loop; driver and worker memory vs rows.
sim "$W/sim1h" --num 30 --min-speakers 2 --max-speakers 5 --min-duration 120 --max-duration 180 --overlap 0.1 --seed 7
$PY -m benchmarks.benchmark corpus --manifest "$W/sim1h/manifest.jsonl" --compare-in-process --output "$W/run_sim1h" > "$W/throughput_sim1h.json"
for rows in 100 2000; do
  $PY -m benchmarks.benchmark corpus --manifest "$W/sim20/manifest.jsonl" --rows $rows --slice-seconds 5 --output "$W/run_rows$rows" > "$W/memory_rows$rows.json"
done

# The fixed cost of a one-file corpus run, per step of run_corpus.
$PY benchmarks/small_run_overhead.py --model ge2e --repeats 3 > "$W/small_run_overhead.json"

# Long recordings (issue 5): RTF, peak memory and DER against length.
for seconds in 600 3600 10800; do
  sim "$W/long$seconds" --num 1 --min-speakers 4 --max-speakers 4 --min-duration $seconds --max-duration $seconds --overlap 0.1 --seed 1
  $PY -m benchmarks.benchmark accuracy --manifest "$W/long$seconds/manifest.jsonl" --estimate-speakers > "$W/long$seconds.jsonl"
done

# Ten hours of digital silence (issue 5): no segments, time and peak memory.
if [ ! -f "$W/silence10h/manifest.jsonl" ]; then
  mkdir -p "$W/silence10h"
  $PY -c "import numpy as np, soundfile as sf; sf.write('$W/silence10h/silence10h.flac', np.zeros(10 * 3600 * 16000, dtype=np.int16), 16000)"
  echo '{"audio_filepath": "silence10h.flac", "offset": 0.0, "duration": null}' > "$W/silence10h/manifest.jsonl"
fi
$PY -m benchmarks.benchmark rtf --manifest "$W/silence10h/manifest.jsonl" > "$W/silence10h.json"
echo "results in $W"

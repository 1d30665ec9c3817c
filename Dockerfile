# The cluster image: Ray 2.60 on Python 3.11 with CUDA, plus the project, its pinned dependencies
# (torch 2.9.1, ...) and the model weights (they ship inside the silero-vad and resemblyzer wheels),
# so a new GPU node starts in the time it takes to pull the image, without installing torch.
#
#   docker build -t ghcr.io/your-org/corpus-diarization:0.1.0 . && docker push ghcr.io/your-org/corpus-diarization:0.1.0
#
# Used by cluster.yaml (docker.image) and deploy/kuberay-rayjob.yaml (every container's image).
# The Ray version must be the one pyproject.toml pins (tests/test_cluster_config.py checks it).
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /home/ray/corpus-diarization
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users pipeline ./pipeline
COPY --chown=ray:users jobs ./jobs
# Editable, so `pip install --no-deps -e` of a synced checkout (cluster.yaml) replaces only the code.
RUN pip install --no-cache-dir -e . \
 && python -c "from pipeline import load_model; load_model('default', device='cpu')"  # the weights are in the image

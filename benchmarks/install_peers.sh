#!/usr/bin/env bash
# Environments for the peers, whose pins clash with ours and with each other: steering-vectors needs
# transformers < 5 and repeng numpy < 2 (.venv-peers); nnsight 0.8 needs transformers 5 and
# generates wrong text under 4.57 (garbled greedy continuations of left-padded batches, seen here),
# so it gets .venv-nnsight with our transformers. benchmarks/run.py --peers uses them when present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
transformers_version="$("$root/.venv/bin/python" -c 'import transformers; print(transformers.__version__)')"
python3 -m venv "$root/.venv-peers"
"$root/.venv-peers/bin/pip" install -q torch==2.13.0 "transformers>=4.45,<5" "numpy<2" safetensors tqdm accelerate
"$root/.venv-peers/bin/pip" install -q steering-vectors==0.12.2 repeng==0.4.0
"$root/.venv-peers/bin/python" -c "import steering_vectors, repeng; print('steering-vectors, repeng installed')"
python3 -m venv "$root/.venv-nnsight"
"$root/.venv-nnsight/bin/pip" install -q torch==2.13.0 "transformers==$transformers_version" nnsight==0.8.1
"$root/.venv-nnsight/bin/python" -c "import nnsight; print('nnsight installed')"

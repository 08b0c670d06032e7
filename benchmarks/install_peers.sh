#!/usr/bin/env bash
# A separate virtual environment for the peers (their pins clash with ours: steering-vectors needs
# transformers < 5, repeng numpy < 2). benchmarks/run.py --peers uses it when it exists.
set -euo pipefail
venv="${1:-.venv-peers}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0 "transformers>=4.45,<5" "numpy<2" safetensors tqdm accelerate
"$venv/bin/pip" install -q steering-vectors==0.12.2 repeng==0.4.0 nnsight==0.8.1
"$venv/bin/python" -c "import steering_vectors, repeng, nnsight; print('peers installed')"

#!/usr/bin/env bash
# Publish the four real-data runs (see configs/*-aria.yaml and docs/training.md) as
# pretrained checkpoints + model cards. Usage: scripts/publish_aria.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/all-aria-dev}"
PUBLISH=(.venv/bin/python scripts/publish_pretrained.py --data "$DATA" --split-name aria-dev)
ABLATION="No-SE ablation: the same recipe with 20 instead of 40 epochs; card only, no checkpoint shipped."
"${PUBLISH[@]}" --run runs/neurallnet-aria --name neurallnet-aria --recipe configs/neurallnet-aria.yaml
"${PUBLISH[@]}" --run runs/se-cnn-aria --name se-cnn-aria --recipe configs/se-cnn-aria.yaml
"${PUBLISH[@]}" --run runs/neurallnet-nose-aria --name neurallnet-nose-aria --no-checkpoint \
    --recipe "configs/neurallnet-aria.yaml --model neurallnet-nose --epochs 20" --note "$ABLATION"
"${PUBLISH[@]}" --run runs/se-cnn-nose-aria --name se-cnn-nose-aria --no-checkpoint \
    --recipe "configs/se-cnn-aria.yaml --model se-cnn-nose --epochs 20" --note "$ABLATION"

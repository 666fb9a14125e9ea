# make bench — every benchmark, one after another (never two at once: they share 2 cores).
# Needs: bash scripts/setup.sh (TRL baseline included) and, for bench-decode, make bench-setup
# (llama-cpp-python compiles llama.cpp: several minutes on 2 cores).
PY ?= .venv/bin/python

.PHONY: bench bench-setup bench-eval bench-train bench-decode bench-demo bench-serve bench-processes test

bench: bench-eval bench-train bench-decode bench-demo bench-serve bench-processes

bench-setup:
	$(PY) -m pip install -c constraints.txt -e ".[bench,llamacpp,serve]" "llama-cpp-python[server]"

bench-eval:
	$(PY) bench/eval_throughput.py

bench-train:
	$(PY) bench/train_throughput.py

bench-decode:
	$(PY) bench/decode.py

bench-demo:
	$(PY) bench/demo_phases.py

bench-serve:
	$(PY) bench/serve_throughput.py

bench-processes:
	$(PY) bench/processes.py --dtype float32
	$(PY) bench/processes.py --dtype auto

test:
	$(PY) -m pytest -q

# make bench — every benchmark, one after another (never two at once: they share 2 cores).
# Needs: bash scripts/setup.sh (TRL baseline included) and, for bench-decode, make bench-setup
# (llama-cpp-python compiles llama.cpp: several minutes on 2 cores).
# The cases follow the CPU's kind (tuneoff.models.cpu, the reading `dtype: auto` uses): bf16 where bf16
# is native; fp32 and int8 on a CPU with VNNI but no bf16 (int8); fp32 elsewhere.
# `make bench CPU_KIND=int8` runs the no-bf16 cases on any CPU (fp32 forced as the baseline).
PY ?= .venv/bin/python
CPU_KIND ?= $(shell $(PY) -c "from tuneoff.models.cpu import cpu_features; print(cpu_features().kind)" 2>/dev/null || echo fp32)
ifeq ($(filter $(CPU_KIND),bf16 int8 fp32),)
$(error CPU_KIND=$(CPU_KIND): expected bf16, int8 or fp32)
endif
export CPU_KIND
EVAL_DTYPES_bf16 = bfloat16
EVAL_DTYPES_int8 = float32 int8
EVAL_DTYPES_fp32 = float32
TRAIN_DTYPE_bf16 = bfloat16
TRAIN_DTYPE_int8 = float32
TRAIN_DTYPE_fp32 = float32
KIND_BENCH_int8 = bench-int8 bench-train-fp32
DEMO_ARGS_bf16 =
DEMO_ARGS_int8 = --dtype float32 --train-dtype float32
DEMO_ARGS_fp32 = --dtype float32 --train-dtype float32
SERVE_DTYPE_bf16 = auto
SERVE_DTYPE_int8 = float32
SERVE_DTYPE_fp32 = float32

.PHONY: bench bench-setup bench-eval bench-int8 bench-train bench-train-fp32 bench-decode bench-long bench-demo bench-serve bench-processes test

bench: bench-eval $(KIND_BENCH_$(CPU_KIND)) bench-train bench-decode bench-long bench-demo bench-serve bench-processes

bench-setup:
	$(PY) -m pip install -c constraints.txt -e ".[bench,llamacpp,serve]" "llama-cpp-python[server]"

bench-eval:
	@echo "CPU kind: $(CPU_KIND) -> evaluation dtypes: $(EVAL_DTYPES_$(CPU_KIND))"
	for dtype in $(EVAL_DTYPES_$(CPU_KIND)); do $(PY) bench/eval_throughput.py --dtype $$dtype || exit 1; done

bench-int8:
	$(PY) bench/int8_candidates.py

bench-train:
	$(PY) bench/train_throughput.py --dtype $(TRAIN_DTYPE_$(CPU_KIND))

bench-train-fp32:
	$(PY) bench/train_fp32_levers.py

bench-decode:
	$(PY) bench/decode.py

bench-long:
	$(PY) bench/long_generate.py

bench-demo:
	$(PY) bench/demo_phases.py $(DEMO_ARGS_$(CPU_KIND))

bench-serve:
	$(PY) bench/serve_throughput.py --dtype $(SERVE_DTYPE_$(CPU_KIND))

bench-processes:
	$(PY) bench/processes.py --dtype float32
	$(PY) bench/processes.py --dtype auto

test:
	$(PY) -m pytest -q

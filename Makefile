# pgbert - BERT text classification inside PostgreSQL.
#
#   make                 build the extension (with CUDA when nvcc is found)
#   make USE_CUDA=0      CPU-only build
#   make install         install into the PostgreSQL that pg_config names
#   make installcheck    pg_regress suites (sql/, expected/) against a running server
#   make engine-check    engine unit and parity tests, no server needed
#   make bench           tokenizer benchmark binary (see test/bench/)

EXTENSION = pgbert
EXTVERSION = 0.7.0
MODULE_big = pgbert

DATA = pgbert--0.7.0.sql pgbert--0.1.0.sql pgbert--0.1.0--0.2.0.sql pgbert--0.2.0--0.3.0.sql pgbert--0.3.0--0.4.0.sql pgbert--0.4.0--0.5.0.sql pgbert--0.5.0--0.6.0.sql pgbert--0.6.0--0.7.0.sql data/pgbert_vocab_uncased.txt
SCRIPTS = bin/pgbert_import bin/pgbert_export bin/pgbert_sync
REGRESS = tokenizer tokenizer_parity encoding models classify batching plan_nodes permissions train drift hardening security labelling worker
# REGRESS_OUT: where results and diffs go (scripts/test.sh keeps its two runs apart)
REGRESS_OUT ?= build/regress
REGRESS_OPTS = --inputdir=. --outputdir=$(REGRESS_OUT)

# OpenBLAS is not linked: it starts a thread pool when loaded, so the engine opens
# it with dlopen the first time a model runs (src/engine/blas.h).
TOKENIZER_SRCS = src/engine/unicode.c src/engine/vocab.c src/engine/tokenizer.c
MODEL_SRCS = src/engine/safetensors.c src/engine/config.c src/engine/blas.c src/engine/cpu.c src/engine/ops.c src/engine/simd.c src/engine/attention512.c \
	src/engine/gemm.c src/engine/gemm_bf16.c src/engine/sgemm_bf16.c src/engine/gemm_q8.c src/engine/team.c \
	src/engine/model.c \
	src/engine/serve.c src/engine/gpu_backend.c src/engine/gpu_train_backend.c \
	src/engine/train.c src/engine/decision.c
ENGINE_SRCS = $(TOKENIZER_SRCS) $(MODEL_SRCS)
PG_SRCS = src/pg/pgbert.c src/pg/session_engine.c src/pg/quote.c src/pg/catalog_door.c src/pg/catalog_calls.c \
	src/pg/tokenize_sql.c src/pg/decision_rule.c src/pg/model_store.c src/pg/classify_sql.c src/pg/batch_scan.c \
	src/pg/decision_sql.c src/pg/dataset.c src/pg/evaluate_sql.c src/pg/train_run.c src/pg/train_sql.c \
	src/pg/progress.c src/pg/training_jobs.c src/pg/drop_guard.c \
	src/pg/encoder_worker.c src/pg/encoder_client.c src/pg/encoder_sql.c
OBJS = $(ENGINE_SRCS:.c=.o) $(PG_SRCS:.c=.o)

PG_CPPFLAGS = -Isrc/engine -Ikernels -DPGBERT_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
SHLIB_LINK = -lutf8proc -ljansson -ldl -lm -lpthread

# CUDA is optional: on when nvcc exists, forced with USE_CUDA=1/0. The kernels
# build into their own library, pgbert_gpu.so (linked with cudart and cuBLAS),
# installed beside pgbert.so but not linked into it: loading cuBLAS costs a
# backend about 80 ms, and only the process that owns the GPU needs it.
NVCC ?= /usr/local/cuda/bin/nvcc
USE_CUDA ?= $(if $(wildcard $(NVCC)),1,0)
ifeq ($(USE_CUDA),1)
include kernels/cuda.mk
PG_CPPFLAGS += -DPGBERT_USE_CUDA
GPU_MODULE = pgbert_gpu$(DLSUFFIX)
endif

EXTRA_CLEAN = build kernels/*.o pgbert_gpu.so

# Header dependencies (.deps/*.Po): without them a changed struct in a header
# leaves objects built against the old layout, and the server crashes on them.
override autodepend = yes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The engine also builds on its own, without any PostgreSQL header on the
# include path: that is what keeps it PostgreSQL-free.
ENGINE_CC ?= gcc
ENGINE_CFLAGS ?= -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare
BUILD = build
ENGINE_OBJS = $(patsubst src/engine/%.c,$(BUILD)/engine/%.o,$(ENGINE_SRCS))
ENGINE_LIB = $(BUILD)/libpgbert_engine.a
ENGINE_LIBS = -lutf8proc -ljansson -ldl -lm -lpthread

$(BUILD)/engine/%.o: src/engine/%.c src/engine/*.h kernels/gpu.h
	@mkdir -p $(dir $@)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -Isrc/engine -Ikernels -c -o $@ $<

$(ENGINE_LIB): $(ENGINE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%: test/engine/%.c test/engine/copy_text.h test/engine/testing.h test/engine/tolerance.h $(ENGINE_LIB)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -Isrc/engine -Ikernels -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)

$(BUILD)/bench_%: test/bench/bench_%.c test/engine/copy_text.h $(ENGINE_LIB)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -O3 -Isrc/engine -Ikernels -Itest/engine -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)

.PHONY: engine engine-check engine-check-sanitized engine-check-portable fuzz-smoke bench print-use-cuda
ENGINE_TESTS = test_tokenizer test_safetensors test_model test_train test_serve test_decision
engine: $(ENGINE_LIB) $(addprefix $(BUILD)/,$(ENGINE_TESTS)) $(BUILD)/unidump

# The real checkpoint scripts/setup.sh unpacks, and transformers' outputs on it.
MINILM_DIR ?= .models/all-minilm-l6-v2
MINILM_ARGS = $(MINILM_DIR) test/fixtures/minilm_reference.safetensors

# $(1): directory of the test binaries
define run_engine_tests
	$(1)/test_tokenizer test/fixtures data/pgbert_vocab_uncased.txt
	$(1)/test_safetensors test/fixtures/safetensors
	OPENBLAS_NUM_THREADS=2 $(1)/test_model test/fixtures/models $(MINILM_ARGS)
	OPENBLAS_NUM_THREADS=2 $(1)/test_train test/fixtures/train test/fixtures/models
	$(1)/test_serve test/fixtures/models/sql_cls
	$(1)/test_decision
endef

engine-check: engine
	$(call run_engine_tests,$(BUILD))

# The same tests built with clang's AddressSanitizer and UndefinedBehaviorSanitizer.
# The engine is compiled once into objects that every sanitized program links:
# the GEMM kernels' many inlined tile shapes take most of a minute under ASan.
SAN_CC ?= clang
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g
SAN_OBJS = $(patsubst src/engine/%.c,$(BUILD)/san/obj/%.o,$(ENGINE_SRCS))
$(BUILD)/san/obj/%.o: src/engine/%.c $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_FLAGS) -Isrc/engine -Ikernels -c -o $@ $<

$(BUILD)/san/%: test/engine/%.c test/engine/copy_text.h test/engine/testing.h test/engine/tolerance.h $(SAN_OBJS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_FLAGS) -Isrc/engine -Ikernels -o $@ $< $(SAN_OBJS) $(ENGINE_LIBS)

engine-check-sanitized: $(addprefix $(BUILD)/san/,$(ENGINE_TESTS))
	$(call run_engine_tests,$(BUILD)/san)

# The same tests with the AVX2 code compiled out (BT_PORTABLE), as on a CPU
# without it or another architecture: the plain loops and OpenBLAS only.
$(BUILD)/portable/%: test/engine/%.c test/engine/copy_text.h test/engine/testing.h test/engine/tolerance.h $(ENGINE_SRCS) $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -DBT_PORTABLE -Isrc/engine -Ikernels -o $@ $< $(ENGINE_SRCS) $(ENGINE_LIBS)

engine-check-portable: $(addprefix $(BUILD)/portable/,$(ENGINE_TESTS))
	$(call run_engine_tests,$(BUILD)/portable)

# libFuzzer smoke runs: tokenizer + vocabulary parser, safetensors parser.
FUZZ_SECONDS ?= 45
FUZZ_FLAGS = -fno-sanitize-recover=all -O1 -g
FUZZ_OBJS = $(patsubst src/engine/%.c,$(BUILD)/fuzzobj/%.o,$(ENGINE_SRCS))
$(BUILD)/fuzzobj/%.o: src/engine/%.c $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(SAN_CC) -fsanitize=fuzzer-no-link,address,undefined $(FUZZ_FLAGS) -Isrc/engine -Ikernels -c -o $@ $<

$(BUILD)/fuzz_%: test/fuzz/fuzz_%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(SAN_CC) -fsanitize=fuzzer,address,undefined $(FUZZ_FLAGS) -Isrc/engine -Ikernels -o $@ $< $(FUZZ_OBJS) $(ENGINE_LIBS)

fuzz-smoke: $(BUILD)/fuzz_tokenizer $(BUILD)/fuzz_safetensors $(BUILD)/fuzz_serve
	@mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz-corpus-safetensors $(BUILD)/fuzz-corpus-serve
	$(BUILD)/fuzz_tokenizer -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 $(BUILD)/fuzz-corpus test/fuzz/seeds
	$(BUILD)/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
		-dict=test/fuzz/safetensors.dict $(BUILD)/fuzz-corpus-safetensors test/fuzz/seeds_safetensors
	$(BUILD)/fuzz_serve -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
		$(BUILD)/fuzz-corpus-serve test/fuzz/seeds_serve

# The engine process under ASan/UBSan, driven through its socket protocol by
# test/fuzz/stress_engine.py: loads, replacements, evictions, idle stretches,
# thread-count changes, trainings failing and abandoned, malformed messages,
# kills. STRESS_SECONDS per seed; STRESS_IDLE is what an idle stretch lasts.
STRESS_SECONDS ?= 30
STRESS_IDLE ?= 1.0
$(BUILD)/san/pgbert_engine: src/engine/engine_main.c $(SAN_OBJS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_FLAGS) -Isrc/engine -Ikernels -o $@ $< $(SAN_OBJS) $(ENGINE_LIBS)

.PHONY: engine-stress
engine-stress: $(BUILD)/san/pgbert_engine
	python3 test/fuzz/stress_engine.py $(BUILD)/san/pgbert_engine $(STRESS_SECONDS) 1 --idle $(STRESS_IDLE) --threads 1,2
	python3 test/fuzz/stress_engine.py $(BUILD)/san/pgbert_engine $(STRESS_SECONDS) 2 --idle $(STRESS_IDLE) --threads 2,4 \
		$(if $(wildcard $(MINILM_DIR)/model.safetensors),--big $(MINILM_DIR))

# The whole encoder worker under load on a throw-away preloaded server
# (test/stress/worker_stress.py): the sanitized engine above is installed into
# pkglibdir for the run and the installed one put back. Needs `make install` and
# pg_config on PATH. WORKER_STRESS_MINUTES long; WORKER_STRESS_IDLE seconds per
# idle stretch.
WORKER_STRESS_MINUTES ?= 3
WORKER_STRESS_IDLE ?= 20
WORKER_STRESS_PYTHON ?= $(if $(wildcard .venv-oracle/bin/python),.venv-oracle/bin/python,python3)
.PHONY: worker-stress
worker-stress: $(BUILD)/san/pgbert_engine
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" $(WORKER_STRESS_PYTHON) test/stress/worker_stress.py \
		--minutes $(WORKER_STRESS_MINUTES) --idle $(WORKER_STRESS_IDLE) --engine $(BUILD)/san/pgbert_engine

bench: $(BUILD)/bench_tokenizer $(BUILD)/bench_encoder $(BUILD)/bench_gemm $(BUILD)/bench_rows $(BUILD)/bench_train $(BUILD)/fma_peak \
	$(BUILD)/mac_peak

# the engine's GEMM kernels against oneDNN's matmul (needs Debian's libdnnl-dev; not part of `bench`)
.PHONY: bench-onednn
bench-onednn: $(BUILD)/bench_gemm_onednn
$(BUILD)/bench_gemm_onednn: test/bench/bench_gemm_onednn.c $(ENGINE_LIB)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -O3 -Isrc/engine -Ikernels -o $@ $< $(ENGINE_LIB) -ldnnl $(ENGINE_LIBS)

# the CPU's FMA ceiling, to read the benchmarks' GFLOP/s against (x86-64 with AVX2 only)
$(BUILD)/fma_peak: test/bench/fma_peak.c
	@mkdir -p $(dir $@)
	$(ENGINE_CC) -O3 -g -Wall -o $@ $< -lpthread

# multiply-adds per second of the float32 and 8-bit GEMM inner loops (x86-64 with AVX2 only)
$(BUILD)/mac_peak: test/bench/mac_peak.c
	@mkdir -p $(dir $@)
	$(ENGINE_CC) -O3 -g -Wall -o $@ $<

print-use-cuda:
	@echo $(USE_CUDA)

ifeq ($(USE_CUDA),1)
all: $(GPU_MODULE)
install: install-gpu-module

$(GPU_MODULE): $(CUDA_OBJS)
	$(CC) -shared -o $@ $(CUDA_OBJS) $(CUDA_LIBS)

.PHONY: install-gpu-module
install-gpu-module: $(GPU_MODULE) installdirs
	$(INSTALL_SHLIB) $(GPU_MODULE) '$(DESTDIR)$(pkglibdir)/$(GPU_MODULE)'

# Fine-tuning on the device against the CPU trainer (and the MiniLM spam fine-tune, --finetune).
$(BUILD)/test_gpu_train: test/gpu/test_gpu_train.c test/engine/testing.h test/engine/tolerance.h test/engine/copy_text.h $(ENGINE_LIB) $(GPU_MODULE)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -O2 -Isrc/engine -Ikernels -Itest/engine -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)
GPU_LAYER_OBJS = $(patsubst %,kernels/gpu_%.o,embeddings layernorm gelu attention head dense optimizer)
kernels/gpu_train.o $(GPU_LAYER_OBJS): kernels/gpu_train_internal.h
kernels/gpu_model.o kernels/gpu_train.o: kernels/gpu_model_internal.h

# Programs that reach the GPU the way the engine does: pgbert_gpu.so by dlopen.
$(BUILD)/test_gpu_model $(BUILD)/bench_gpu: $(BUILD)/%: test/gpu/%.c test/gpu/gpu_testing.h test/engine/tolerance.h $(ENGINE_LIB) $(GPU_MODULE)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -O2 -Isrc/engine -Ikernels -Itest/engine -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)
endif

# The row kernels of the layers' .cu files (gpu_embeddings.cu, gpu_layernorm.cu, gpu_gelu.cu,
# gpu_attention.cu, gpu_head.cu, gpu_dense.cu, gpu_optimizer.cu) under host emulation against
# references in double (test/gpu/emu/run.sh): no GPU, only g++ and the CUDA headers; skipped
# without the headers.
EMU_CUDA_HOME = $(or $(CUDA_HOME),/usr/local/cuda)
.PHONY: gpu-emulation
gpu-emulation:
	@if [ -e $(EMU_CUDA_HOME)/include/cuda_bf16.h ]; then CUDA_HOME=$(EMU_CUDA_HOME) test/gpu/emu/run.sh; \
	else echo "no $(EMU_CUDA_HOME)/include/cuda_bf16.h: skipped"; fi

# pgbert_gpu.so as a whole under the same emulation, over a host CUDA runtime and cuBLAS
# (test/gpu/emu/library.sh: build/pgbert_gpu_emu.so), with test_gpu_model and test_gpu_train
# run against it: the host orchestration, the cuBLAS calls' conventions, graphs and the
# trainer checked against the CPU engine without a GPU (gpu_flash.cu's mma.sync/ldmatrix run as
# emulated warp collectives).
.PHONY: gpu-emulated-library
ifeq ($(USE_CUDA),1)
gpu-emulated-library: $(BUILD)/test_gpu_model $(BUILD)/test_gpu_train
	@if [ -e $(EMU_CUDA_HOME)/include/cuda_bf16.h ] && [ "$$(uname -m)" = x86_64 ]; then \
		CUDA_HOME=$(EMU_CUDA_HOME) test/gpu/emu/library.sh; \
	else echo "needs the CUDA headers on x86-64: skipped"; fi
else
gpu-emulated-library:
	@echo "built without CUDA: skipped"
endif

installcheck: | $(BUILD)/regress
$(BUILD)/regress:
	mkdir -p $@

# PGXS does not track header dependencies without --enable-depend.
$(ENGINE_SRCS:.c=.o) $(PG_SRCS:.c=.o): $(wildcard src/engine/*.h)


# The engine process the encoder worker runs models in (src/engine/serve.h):
# built from the engine library alone and installed beside pgbert.so.
ENGINE_PROGRAM = $(BUILD)/pgbert_engine
$(ENGINE_PROGRAM): src/engine/engine_main.c $(ENGINE_LIB)
	$(ENGINE_CC) $(ENGINE_CFLAGS) -O3 -Isrc/engine -Ikernels -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)
all: $(ENGINE_PROGRAM)
install: install-engine
install-engine: $(ENGINE_PROGRAM) installdirs
	$(INSTALL_PROGRAM) $(ENGINE_PROGRAM) '$(DESTDIR)$(pkglibdir)/pgbert_engine'
uninstall: uninstall-engine
uninstall-engine:
	rm -f '$(DESTDIR)$(pkglibdir)/pgbert_engine'
.PHONY: install-engine uninstall-engine

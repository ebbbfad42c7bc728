# minispeed — one Makefile for everything. `make help` lists the targets.

.DEFAULT_GOAL := all
SHELL := /bin/bash

# Build on every core unless the caller chose (-j N): a serial first build
# takes over twice as long. GNU make >= 4.3 honours -j set here.
# (Only the top-level make: sub-makes share its job slots through the jobserver.)
ifeq ($(MAKELEVEL),0)
  ifeq ($(filter -j%,$(MAKEFLAGS)),)
    MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
  endif
endif

# CUDA=1 builds the CUDA backend into build-cuda/ (see "---- CUDA ----" below).
ifeq ($(CUDA),1)
  CUDA_HOME ?= /usr/local/cuda
  NVCC := $(CUDA_HOME)/bin/nvcc
  ifeq ($(wildcard $(NVCC)),)
    $(error CUDA=1: nvcc not found at $(NVCC); install the CUDA toolkit and NCCL (README, "GPU"), or point CUDA_HOME at the toolkit (make CUDA=1 CUDA_HOME=/opt/cuda). Without CUDA=1 everything builds and runs on the CPU)
  endif
endif

# ---- dependencies: installed (as root) or explained before anything builds ----
NO_DEPS_GOALS := clean help format
ifeq ($(filter $(NO_DEPS_GOALS),$(MAKECMDGOALS)),)
  ifneq ($(shell scripts/install-deps.sh --check >/dev/null 2>&1 && echo ok),ok)
    $(info minispeed: some dependencies are missing; running scripts/install-deps.sh)
    ifneq ($(shell scripts/install-deps.sh >&2 && echo ok),ok)
      $(error dependencies missing: see the message above (scripts/install-deps.sh))
    endif
  endif
endif

# ---- toolchain ----
CXX := g++
BUILD := build
OPT := -O3
ifeq ($(SAN),1)
  BUILD := build-san
  # GCC 12 at -O1 with sanitizers reports a false maybe-uninitialized inside
  # <regex> (pulled in by Catch2's header); the normal -O3 build keeps the check.
  OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
         -Wno-maybe-uninitialized
  export LSAN_OPTIONS := suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0
  # Processes that start MPI: Open MPI's plugins are dlclose'd at exit, so
  # LeakSanitizer sees their one-time allocations in "<unknown module>" and no
  # suppression can name them. Leak checking stays on for the unit tests, which
  # run the library without MPI; ASan's other checks stay on everywhere.
  MPI_ASAN := ASAN_OPTIONS=detect_leaks=0
endif
MPI_CFLAGS := $(shell mpicxx --showme:compile 2>/dev/null)
MPI_LIBS := $(filter-out -lmpi_cxx,$(shell mpicxx --showme:link 2>/dev/null))
CATCH_V3 := $(wildcard /usr/include/catch2/catch_all.hpp /usr/local/include/catch2/catch_all.hpp)
ifneq ($(CATCH_V3),)
  CATCH_FLAGS := -DMS_CATCH2_V3
  CATCH_LIBS := -lCatch2
endif
# -fno-trapping-math: we never test FP exception flags, and without it GCC keeps
# the branches of a clamp (as in fast_expf) and refuses to vectorize the loop.
# -Wno-missing-field-initializers: option structs (ZeroOptions, ...) give every
# member a default, and callers name only what they change ({.stage = 2}); GCC
# warns about the members left to their defaults, which is the point.
CXXFLAGS := -std=c++20 $(OPT) -fno-trapping-math -fopenmp -Wall -Wextra -Wno-missing-field-initializers -I. -DOMPI_SKIP_MPICXX $(MPI_CFLAGS) $(CATCH_FLAGS) -MMD -MP
LDFLAGS := $(OPT) -fopenmp
LIBS := $(MPI_LIBS) -lpthread

# ---- CUDA (make CUDA=1) ----
# A separate build directory, so build/ stays the CPU build. Every translation
# unit sees MS_CUDA (g++ for .cpp, nvcc for .cu); sm_90 SASS for the H100/H200
# plus compute_80 PTX that the driver JIT-compiles for any newer GPU.
ifeq ($(CUDA),1)
  BUILD := build-cuda$(if $(filter 1,$(SAN)),-san)
  CUDA_INC := -I$(CUDA_HOME)/include
  CUDA_LIBDIRS := $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib)
  # NCCL: NCCL_HOME when given (its include/ and lib/ or lib64/); else beside
  # the toolkit or in /usr (apt's libnccl-dev); else PyTorch's wheel (pip's
  # nvidia-nccl-cu*: site-packages/nvidia/nccl/{include,lib}). python3 is asked
  # only when neither of the first two has nccl.h, and only if it exists, so a
  # machine without python3 or torch pays nothing. The wheel ships
  # libnccl.so.2 without the unversioned name, hence -l:libnccl.so.2 there.
  ifeq ($(NCCL_HOME),)
    ifeq ($(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),)
      NCCL_HOME := $(shell command -v python3 >/dev/null 2>&1 && python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null)
    endif
  endif
  ifneq ($(NCCL_HOME),)
    ifeq ($(wildcard $(NCCL_HOME)/include/nccl.h),)
      $(error CUDA=1: no nccl.h in NCCL_HOME=$(NCCL_HOME)/include; point NCCL_HOME at an NCCL install (include/, lib/))
    endif
    NCCL_LIBDIR := $(firstword $(wildcard $(NCCL_HOME)/lib64 $(NCCL_HOME)/lib))
    NCCL_INC := -I$(NCCL_HOME)/include
    NCCL_LINK := -L$(NCCL_LIBDIR) -Wl,-rpath,$(NCCL_LIBDIR)
    NCCL_LIB := $(if $(wildcard $(NCCL_LIBDIR)/libnccl.so),-lnccl,-l:libnccl.so.2)
  else
    ifeq ($(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),)
      $(error CUDA=1: NCCL not found (no nccl.h under $(CUDA_HOME)/include or /usr/include, no NCCL_HOME, no PyTorch nvidia/nccl wheel); install libnccl-dev or set NCCL_HOME=/path/to/nccl)
    endif
    NCCL_LIB := -lnccl
  endif
  CXXFLAGS += -DMS_CUDA=1 $(NCCL_INC) $(CUDA_INC)
  NVCC_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
  NVCCFLAGS := -std=c++20 -O3 $(NVCC_ARCH) -DMS_CUDA=1 -I. $(CUDA_INC) $(MPI_CFLAGS) -DOMPI_SKIP_MPICXX \
    --expt-relaxed-constexpr -Xcompiler -fopenmp,-Wall -MMD -MP
  LIBS += $(NCCL_LINK) $(CUDA_LIBDIRS:%=-L%) $(CUDA_LIBDIRS:%=-Wl,-rpath,%) -lcudart -lcublas -lcublasLt $(NCCL_LIB)
endif

# ---- sources ----
LIB_SRCS := $(wildcard tensor/*.cpp tensor/cpu/*.cpp autograd/*.cpp nn/*.cpp optim/*.cpp parallel/*.cpp parallel/*/*.cpp)
ifeq ($(CUDA),1)
  # parallel/comm/nccl_backend.cpp is already in LIB_SRCS (parallel/*/*.cpp).
  LIB_SRCS += $(wildcard tensor/cuda/*.cpp)
  CU_SRCS := $(wildcard tensor/cuda/*.cu)
  # GPU benchmarks: bench/gpu/NAME.cu -> build-cuda/bench/NAME.
  GPU_BENCH_SRCS := $(wildcard bench/gpu/*.cu)
  GPU_BENCH_BINS := $(GPU_BENCH_SRCS:bench/gpu/%.cu=$(BUILD)/bench/%)
endif
LIB_OBJS := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o) $(CU_SRCS:%.cu=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libminispeed.a
UNIT_SRCS := tests/main.cpp $(wildcard tests/test_*.cpp) $(if $(filter 1,$(CUDA)),$(wildcard tests/cuda/test_*.cpp))
UNIT_OBJS := $(UNIT_SRCS:%.cpp=$(BUILD)/obj/%.o)
UNIT_BIN := $(BUILD)/unit_tests
MPI_TEST_SRCS := $(wildcard tests/mpi/main.cpp tests/mpi/test_*.cpp)
MPI_TEST_BIN := $(if $(MPI_TEST_SRCS),$(BUILD)/mpi_tests)
BENCH_SRCS := $(wildcard bench/bench_*.cpp)
BENCH_BINS := $(BENCH_SRCS:bench/%.cpp=$(BUILD)/bench/%)
CLI_SRCS := $(wildcard cli/*.cpp)
CLI_BIN := $(if $(CLI_SRCS),$(BUILD)/minispeed)
EXAMPLE_SRCS := $(wildcard examples/*.cpp)
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.cpp=$(BUILD)/examples/%)
LESSON_DIRS := $(sort $(wildcard lessons/[0-9][0-9]_*))
LESSON_BINS := $(foreach d,$(LESSON_DIRS),$(BUILD)/lessons/$(notdir $(d))/solution $(BUILD)/lessons/$(notdir $(d))/exercise)
# Deliberately wrong exercises (lessons/NN_topic/wrong/NAME.cpp): each must be
# rejected by its lesson's checker with the diagnosis its `// expect:` lines name.
LESSON_WRONG_SRCS := $(sort $(wildcard lessons/[0-9][0-9]_*/wrong/*.cpp))
LESSON_WRONG_BINS := $(LESSON_WRONG_SRCS:lessons/%.cpp=$(BUILD)/lessons/%)

.PHONY: all test unit-test mpi-test lesson-test lesson run bench format clean help
all: $(LIB) $(UNIT_BIN) $(MPI_TEST_BIN) $(CLI_BIN) $(EXAMPLE_BINS) $(LESSON_BINS) $(LESSON_WRONG_BINS) $(BENCH_BINS)

# Keep every object (lesson objects are otherwise "intermediate" and deleted).
.SECONDARY:

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# AdamW's sqrt vectorizes only without errno (std::sqrt of a negative sets it,
# a scalar branch per element); v >= 0 there, so nothing is lost.
$(BUILD)/obj/tensor/cpu/adamw.o: CXXFLAGS += -fno-math-errno

ifeq ($(CUDA),1)
$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(GPU_BENCH_BINS): $(BUILD)/bench/%: $(BUILD)/obj/bench/gpu/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ $(LIBS) -o $@
all: $(GPU_BENCH_BINS)

# Compile and link everything with CUDA, run nothing (.ci/run: CI has no GPU).
.PHONY: cuda-build
cuda-build: all
endif

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(UNIT_BIN): $(UNIT_OBJS) $(LIB)
	$(CXX) $(LDFLAGS) $(UNIT_OBJS) $(LIB) $(CATCH_LIBS) $(LIBS) -o $@

# Multi-process tests: one binary with an MPI-aware main, run at 2 and 4 ranks.
$(BUILD)/mpi_tests: $(MPI_TEST_SRCS:%.cpp=$(BUILD)/obj/%.o) $(LIB)
	$(CXX) $(LDFLAGS) $^ $(CATCH_LIBS) $(LIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ -lopenblas $(LIBS) -o $@
# bench_parallel_step's tables live in bench/parallel_step/ (not bench_*.cpp:
# no binaries of their own); its main links them.
PARALLEL_STEP_OBJS := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard bench/parallel_step/*.cpp))
$(BUILD)/bench/bench_parallel_step: $(BUILD)/obj/bench/bench_parallel_step.o $(PARALLEL_STEP_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ -lopenblas $(LIBS) -o $@

$(BUILD)/minispeed: $(CLI_SRCS:%.cpp=$(BUILD)/obj/%.o) $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LIBS) -o $@

# Example programs (examples/NAME.cpp -> build/examples/NAME), linked to the library.
$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ $(LIBS) -o $@

# Each lesson links its check.cpp (the grader, with main) against either the
# reference solution or the learner's exercise.
$(BUILD)/lessons/%/solution: $(BUILD)/obj/lessons/%/check.o $(BUILD)/obj/lessons/%/solution.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ $(LIBS) -o $@
$(BUILD)/lessons/%/exercise: $(BUILD)/obj/lessons/%/check.o $(BUILD)/obj/lessons/%/exercise.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ $(LIBS) -o $@
# build/lessons/NN_topic/wrong/NAME from lessons/NN_topic/{check,wrong/NAME}.cpp
.SECONDEXPANSION:
$(LESSON_WRONG_BINS): $(BUILD)/lessons/%: $(BUILD)/obj/lessons/%.o $$(BUILD)/obj/lessons/$$(firstword $$(subst /, ,$$*))/check.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $^ $(LIBS) -o $@

# ---- running ----
# Open MPI refuses root and more ranks than cores unless told; users type plain commands.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
MPIRUN := mpirun --oversubscribe
export MPIRUN

unit-test: $(UNIT_BIN) $(CLI_BIN)
	MS_BUILD_DIR=$(BUILD) $(UNIT_BIN)

lesson-test: $(LESSON_BINS) $(LESSON_WRONG_BINS)
	@$(MPI_ASAN) scripts/check-lessons.sh $(BUILD) $(LESSON_DIRS)
	@scripts/check-docs.sh

# One OpenMP thread per rank: 4 ranks already oversubscribe 2 cores.
mpi-test: export OMP_NUM_THREADS := 1
mpi-test: $(MPI_TEST_BIN) $(CLI_BIN)
	$(if $(MPI_TEST_BIN),$(MPI_ASAN) $(MPIRUN) -np 2 $(MPI_TEST_BIN) && $(MPI_ASAN) $(MPIRUN) -np 4 $(MPI_TEST_BIN) && $(MPI_ASAN) scripts/test-mpi-errors.sh $(BUILD) && \
	  $(MPI_ASAN) scripts/test-train-equivalence.sh $(BUILD) && $(MPI_ASAN) scripts/test-traffic.sh $(BUILD) && \
	  $(MPI_ASAN) scripts/test-bad-input.sh $(BUILD) && $(MPI_ASAN) scripts/test-checkpoints.sh $(BUILD) && \
	  $(MPI_ASAN) scripts/test-mixed-precision.sh $(BUILD) && \
	  $(MPI_ASAN) scripts/test-device.sh $(BUILD) && $(MPI_ASAN) scripts/test-layout-matrix.sh $(BUILD))

test: all
	@scripts/check-deps.sh
	@$(MAKE) --no-print-directory unit-test
	@$(MAKE) --no-print-directory mpi-test
	@OMP_NUM_THREADS=1 $(MPI_ASAN) scripts/test-configs.sh $(BUILD)
	@$(MAKE) --no-print-directory lesson-test

L ?=
lesson:
	@test -n "$(L)" || { echo "usage: make lesson L=NN [TRY=1]   (lessons: $(notdir $(LESSON_DIRS)))"; exit 2; }
	@dir=$$(ls -d lessons/$(L)_* 2>/dev/null | head -n1); \
	  test -n "$$dir" || { echo "make lesson: no lesson $(L) (have: $(notdir $(LESSON_DIRS)))"; exit 2; }; \
	  name=$$(basename $$dir); which=$(if $(TRY),exercise,solution); \
	  $(MAKE) --no-print-directory $(BUILD)/lessons/$$name/$$which && \
	  scripts/run-lesson.sh $$dir $(BUILD)/lessons/$$name/$$which

# The main job: 2 ranks, data parallel with ZeRO stage 2, small GPT on Shakespeare.
RUN_FLAGS := --zero-stage 2 --n-layer 4 --n-head 4 --n-embd 128 --seq-len 64 --batch-size 16 \
  --steps 2000 --lr 2e-3 --warmup 50 --min-lr 2e-4 --eval-every 200 --eval-batches 32 \
  --log-every 25 --save-weights $(BUILD)/run/gpt.safetensors
run: $(LIB) $(CLI_BIN)
	$(MPIRUN) -np 2 $(BUILD)/minispeed train $(RUN_FLAGS)

# Each benchmark prints ours beside its peer; multi-rank ones run under mpirun.
bench: $(BENCH_BINS)
	@scripts/bench.sh $(BUILD)/bench

format:
	@command -v clang-format >/dev/null || { echo "make format: clang-format is not installed (scripts/install-deps.sh --dev installs it)"; exit 1; }
	clang-format -i $$(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf build build-san build-cuda build-cuda-san

help:
	@echo "minispeed — targets (run from the repository root):"
	@echo "  make                      build the library, the minispeed program, tests, lessons, benchmarks into build/"
	@echo "  make run                  the main job: train a small GPT on data/tinyshakespeare.txt on 2 MPI ranks (ZeRO-2)"
	@echo "  make test                 build, then run every test: unit, multi-rank (2 and 4 ranks), error handling,"
	@echo "                            bad input, traffic, train equivalence, lessons"
	@echo "  make unit-test            only the single-process unit tests"
	@echo "  make mpi-test             only the multi-rank tests and scripts"
	@echo "  make lesson-test          only the lesson checks (solutions pass, untouched and wrong exercises"
	@echo "                            fail with the right diagnosis) and the docs check (scripts/check-docs.sh)"
	@echo "  make lesson L=NN [TRY=1]  run lesson NN's solution (TRY=1: your exercise.cpp)"
	@echo "  make bench                our kernels and collectives beside their peers (OpenBLAS, PyTorch, MPI)"
	@echo "  make format               clang-format every source file (needs scripts/install-deps.sh --dev)"
	@echo "  make clean                remove build/, build-san/ and build-cuda/"
	@echo "  make help                 this list"
	@echo "Options: SAN=1 builds with AddressSanitizer + UBSan into build-san/ (e.g. SAN=1 make test)."
	@echo "         CUDA=1 builds the CUDA backend into build-cuda/ (nvcc from CUDA_HOME=/usr/local/cuda;"
	@echo "         make CUDA=1 cuda-build compiles and links only; scripts/gpu-check.sh runs it on a GPU)."
	@echo "Dependencies are installed by scripts/install-deps.sh on first use (as root; otherwise it prints the command)."

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

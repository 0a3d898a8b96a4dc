# ditrt — one build entry. `make` builds libditrt.a, libditrt.so (+ soname links), ditrt.pc and
# ditrt; `make test` runs the CMocka suites and the install check; `make bench` times the
# PixArt-XL-2 step, an Open-Sora-sized STDiT one, the SD1.5 U-Net step and the SD VAE decode;
# `make install PREFIX=... DESTDIR=...` installs.
CC      ?= cc
# x86-64-v3 (AVX2/FMA) keeps the binary portable across CI machines; oneDNN picks
# AVX-512/AMX at run time by itself. -fno-trapping-math lets GCC if-convert and
# vectorize the branch-free exp/tanh in kernels/cpu/vmath.h (no code here relies on FP traps
# or errno).
CFLAGS  ?= -O2 -march=x86-64-v3 -g
# -fvisibility=hidden: libditrt.so exports only what include/ditrt.h marks DITRT_API (the
# static libditrt.a still links every symbol, as the tests need).
CFLAGS_COMMON = -fno-math-errno -fno-trapping-math -ffp-contract=off -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -fPIC -MMD -MP \
           -fvisibility=hidden -Iinclude -I.
CFLAGS  += $(CFLAGS_COMMON)
LDLIBS  = -ldnnl -lcjson -lpng -ljpeg -lsentencepiece -lwebpmux -lwebpdemux -lwebp -lavformat -lavcodec -lswscale -lavutil -lstdc++ -lm -fopenmp
BUILD   = build
# `all` stays the goal of a plain `make` though rules (the CUDA objects) come before it
.DEFAULT_GOAL := all

# The version comes from include/ditrt.h (DITRT_VERSION_MAJOR/MINOR/PATCH); the shared library
# is libditrt.so.MAJOR.MINOR.PATCH with soname libditrt.so.MAJOR, and libditrt.so.MAJOR and
# libditrt.so link to it.
version_part = $(shell awk '$$2 == "DITRT_VERSION_$(1)" { print $$3 }' include/ditrt.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION := $(VERSION_MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SONAME  = libditrt.so.$(VERSION_MAJOR)
SHLIB   = libditrt.so.$(VERSION)
PREFIX ?= /usr/local

CXX     ?= c++
CXXFLAGS ?= -O2 -march=x86-64-v3 -g
CXXFLAGS_COMMON = -std=c++17 -Wall -Wextra -fPIC -MMD -MP -fvisibility=hidden -Iinclude -I.
CXXFLAGS += $(CXXFLAGS_COMMON)
LIB_SRC = $(wildcard runtime/tuning/*.c runtime/core/*.c runtime/io/*.c runtime/models/*.c runtime/text/*.c runtime/pipeline/*.c runtime/plans/*.c runtime/api/*.c kernels/*.c kernels/cpu/*.c schedulers/*.c)
# C++ only where a C++ library is wrapped behind a C shim (the SentencePiece tokenizer).
LIB_CXX = $(wildcard runtime/text/*.cc)
CLI_SRC = $(wildcard runtime/cli/*.c)
TEST_SRC = $(wildcard tests/test_*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_CXX:%.cc=$(BUILD)/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS   = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# ---- CUDA backend (kernels/cuda/): built whenever nvcc is found (PATH, then /usr/local/cuda) ----
# cudart is linked statically (libcudart_static.a loads libcuda.so.1 only on the first CUDA
# call), and cuBLASLt / cuDNN are dlopen-ed when a CUDA backend is first created
# (kernels/cuda/cuda_libs.cu), so ditrt and libditrt.so start and run on the CPU on machines
# with no GPU driver and no CUDA libraries. NVCC= (empty) builds without it.
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]
ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
CUDA_SRC = $(wildcard kernels/cuda/*.cu)
CUDA_OBJ = $(CUDA_SRC:%.cu=$(BUILD)/%.o)
LIB_OBJ += $(CUDA_OBJ)
# --fmad=false: no contraction into FMAs, as the CPU build's -ffp-contract=off (elementwise ops
# then match the CPU bit for bit); warnings are errors on the host and the device side.
NVCCFLAGS ?= -O2 -g -lineinfo
NVCCFLAGS += -std=c++17 $(CUDA_ARCH) --fmad=false -Werror all-warnings -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Wno-unused-parameter,-Werror \
             -MMD -MP -Iinclude -I. -I$(CUDA_HOME)/include
CUDA_LIBDIR = $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib))
NVCCFLAGS += -DDT_CUDA_LIBDIR='"$(CUDA_LIBDIR)"'
LDLIBS += -L$(CUDA_LIBDIR) -lcudart_static -ldl -lrt -lpthread
$(BUILD)/kernels/backend.o: CFLAGS += -DDT_HAVE_CUDA
$(CUDA_OBJ): $(BUILD)/.cuda-mode
$(BUILD)/kernels/cuda/%.o: kernels/cuda/%.cu | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
else
$(info CUDA backend: skipped (nvcc not found))
endif
# backend.o's registry follows the mode (a build with nvcc, then NVCC= , recompiles it)
$(BUILD)/.cuda-mode: FORCE | $(DEPS_STAMP)
	@mkdir -p $(@D); echo '$(if $(NVCC),cuda $(CUDA_ARCH),cpu)' > $@.tmp; if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/kernels/backend.o: $(BUILD)/.cuda-mode
# the libFuzzer harnesses (tests/fuzz/fuzz_<name>.c), replayed without libFuzzer by `make test`
FUZZ_NAMES = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BINS = $(FUZZ_NAMES:%=$(BUILD)/fuzz-replay/fuzz_%)
DEPS_STAMP = $(BUILD)/.deps

.PHONY: test-gpu
.PHONY: all test test-avx2 test-asan check-slow check-install bench clean deps install fuzz fuzz-build FORCE
EXAMPLES = $(patsubst runtime/examples/%.c,$(BUILD)/examples/%,$(wildcard runtime/examples/*.c))

all: libditrt.a libditrt.so ditrt.pc ditrt $(EXAMPLES)

# Installs missing Debian packages when a needed header (or pkg-config, for the install
# check) is absent (fresh machines).
$(DEPS_STAMP):
	@for h in /usr/include/dnnl.h /usr/include/cmocka.h /usr/include/cjson/cJSON.h /usr/include/png.h /usr/include/jpeglib.h /usr/include/stb/stb_image_write.h /usr/include/sentencepiece_processor.h /usr/include/webp/mux.h /usr/include/x86_64-linux-gnu/libavformat/avformat.h /usr/include/x86_64-linux-gnu/libswscale/swscale.h pkg-config; do \
	  if [ $$h = pkg-config ]; then command -v pkg-config >/dev/null 2>&1; else [ -f $$h ]; fi || { sh scripts/install-deps.sh || exit 1; break; }; done
	@mkdir -p $(BUILD) && touch $@
deps: $(DEPS_STAMP)

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

libditrt.a: $(LIB_OBJ)
	ar rcs $@ $^

# Only the ditrt_* functions are exported: hidden visibility by default, and the version
# script as a backstop for what C++ headers mark default (template instantiations).
$(SHLIB): $(LIB_OBJ) runtime/api/libditrt.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=runtime/api/libditrt.map -o $@ $(LIB_OBJ) $(LDLIBS)

libditrt.so: $(SHLIB)
	ln -sf $(SHLIB) $(SONAME)
	ln -sf $(SHLIB) $@

# pkg-config file, rewritten only when its text (PREFIX, version, LDLIBS) changes.
ditrt.pc: FORCE
	@printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$${exec_prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: ditrt' 'Description: diffusion sampler runtime (text-to-image and text-to-video diffusion transformers on the CPU)' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -lditrt' 'Libs.private: $(LDLIBS)' 'Cflags: -I$${includedir}' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; echo "wrote $@ (prefix $(PREFIX))"; fi

ditrt: $(CLI_OBJ) libditrt.a
	$(CC) -o $@ $(CLI_OBJ) libditrt.a $(LDLIBS)

# Examples build like an embedding app would: the public header and the library only.
$(BUILD)/examples/%: runtime/examples/%.c libditrt.a
	@mkdir -p $(dir $@)
	$(CC) -O2 -std=c11 -Wall -Wextra -Iinclude -o $@ $< libditrt.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h libditrt.a ditrt $(EXAMPLES) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< libditrt.a $(LDLIBS) -lcmocka -lpthread

GPU_TEST = $(BUILD)/tests-gpu/test_gpu_ops # defined before the test rule names it

# Passive OpenMP waiting: with anything else running, libgomp's default spin-waiting makes
# the small test models 10-100x slower (measured: 43 s -> 0.4 s for test_oms on a busy machine).
# The architecture check (scripts/check-layers.sh: folder layers, no concrete model outside
# runtime/models, user commands over ditrt.h) and the install check run as two more suites.
test: $(TESTS) $(REPLAY_BINS) $(GPU_TEST)
	@fail=0; for t in $(TESTS); do echo "== $$t"; OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive $$t || fail=1; done; \
	echo "== $(GPU_TEST) (make test-gpu)"; OMP_WAIT_POLICY=passive $(GPU_TEST) || fail=1; \
	echo "== scripts/fuzz-replay.sh"; sh scripts/fuzz-replay.sh || fail=1; \
	echo "== scripts/check-layers.sh"; sh scripts/check-layers.sh || fail=1; \
	echo "== scripts/check-install.sh"; OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive MAKE="$(MAKE)" sh scripts/check-install.sh || fail=1; \
	if [ $$fail -ne 0 ]; then echo "make test: FAILED"; exit 1; fi; echo "make test: all suites passed"

# `make test-gpu`: the CUDA backend op by op against the CPU backend, two contexts in two
# threads, the goldens through --device cuda (tests/gpu/test_gpu_ops.c). Without a CUDA build or
# a GPU it prints why and passes; `make test` builds and runs it too, so CI proves it builds and
# skips. scripts/gpu-check.sh runs it on a GPU machine.
$(GPU_TEST): tests/gpu/test_gpu_ops.c tests/testutil.h libditrt.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< libditrt.a $(LDLIBS) -lcmocka -lpthread

test-gpu: $(GPU_TEST) ditrt
	OMP_WAIT_POLICY=passive $(GPU_TEST)

# The suites as on a CPU without AVX-512 (no native bf16, int8 GEMMs through gemm_s8): oneDNN takes
# no instruction above AVX2, and ditrt's dtype defaults and refusals follow (the .ci/run second pass).
test-avx2: $(TESTS)
	ONEDNN_MAX_CPU_ISA=AVX2 $(MAKE) --no-print-directory test

# The suites under AddressSanitizer + UndefinedBehaviorSanitizer (gcc's; no package needed),
# aborting on the first report, with LeakSanitizer on. Everything is built apart in build-asan/
# (the library, the CLI as build-asan/run/ditrt, the suites), so the normal build is untouched.
# The suites call ./ditrt and read tests/ and assets/ by relative paths: they run from
# build-asan/run/, a folder of links to the tree's top-level entries plus the sanitized ditrt.
# tests/lsan.supp suppresses leaks inside third-party libraries only (oneDNN, libgomp, ...).
ASAN_BUILD = build-asan
# (float-cast-overflow is not part of gcc's -fsanitize=undefined: named too, for float->int casts.)
ASAN_FLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_CFLAGS = $(filter-out -O2,$(CFLAGS)) -O1 $(ASAN_FLAGS)
# stb_image_write.h (a system header, third-party) left-shifts into the sign bit in its JPEG
# bit writer; only that check is off, and only in the file that includes it.
$(ASAN_BUILD)/runtime/io/image.o: ASAN_CFLAGS += -fno-sanitize=shift-base
ASAN_LIB_OBJ = $(LIB_SRC:%.c=$(ASAN_BUILD)/%.o) $(LIB_CXX:%.cc=$(ASAN_BUILD)/%.o)
ASAN_CLI_OBJ = $(CLI_SRC:%.c=$(ASAN_BUILD)/%.o)
ASAN_TESTS = $(TEST_SRC:tests/%.c=$(ASAN_BUILD)/tests/%)
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_odr_violation=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0

$(ASAN_BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@

$(ASAN_BUILD)/%.o: %.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(filter-out -O2,$(CXXFLAGS)) -O1 $(ASAN_FLAGS) -c $< -o $@

$(ASAN_BUILD)/libditrt.a: $(ASAN_LIB_OBJ)
	ar rcs $@ $^

$(ASAN_BUILD)/run/ditrt: $(ASAN_CLI_OBJ) $(ASAN_BUILD)/libditrt.a
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_FLAGS) -o $@ $(ASAN_CLI_OBJ) $(ASAN_BUILD)/libditrt.a $(LDLIBS)

$(ASAN_BUILD)/tests/%: tests/%.c tests/testutil.h $(ASAN_BUILD)/libditrt.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -Itests -o $@ $< $(ASAN_BUILD)/libditrt.a $(LDLIBS) -lcmocka -lpthread

test-asan: $(ASAN_TESTS) $(ASAN_BUILD)/run/ditrt
	@for e in $$(ls -A | grep -v -x -e ditrt -e '$(ASAN_BUILD)' -e .git); do ln -sfn ../../$$e $(ASAN_BUILD)/run/$$e; done
	@fail=0; for t in $(ASAN_TESTS); do echo "== $$t (asan)"; \
	  (cd $(ASAN_BUILD)/run && $(ASAN_ENV) OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive ../../$$t) || fail=1; done; \
	if [ $$fail -ne 0 ]; then echo "make test-asan: FAILED"; exit 1; fi; echo "make test-asan: all suites passed"

# Installs into a temporary DESTDIR, builds runtime/examples/txt2img_example.c against it
# through pkg-config (shared and static), runs both, checks the .so exports only ditrt_*.
check-install: all
	MAKE="$(MAKE)" sh scripts/check-install.sh

check-slow: $(TESTS)
	DITRT_SLOW=1 $(MAKE) test

# Without --dtype the bench takes the CPU's fast dtype: bf16 where native, f32 elsewhere.
bench: ditrt
	./ditrt bench transformer --arch pixart-xl-2 --res 512 --breakdown
	./ditrt bench transformer --arch pixart-xl-2 --res 512 --dtype f32
	./ditrt bench transformer --arch pixart-xl-2 --res 512 --quant w8a8 --breakdown
	@# Open-Sora-sized STDiT step (16 frames at 512², 2 of STDiT-XL/2's 28 blocks): the device's dtype
	@# (bf16 where native, else f32) vs its GEMM floor, then float and W8A8 interleaved (best, median)
	./ditrt bench transformer --arch stdit-xl-2 --frames 16 --res 512 --layers 2 --quant w8a8 --iters 3
	./ditrt bench transformer --arch sd15-unet --res 512 --breakdown
	./ditrt bench vae --res 512 --breakdown
	@# T5-XXL shapes, 4 of 24 layers: the device's dtype, then int8 weights (--text-encoder-dtype int8)
	./ditrt bench text-encoder --layers 4
	./ditrt bench text-encoder --layers 4 --dtype int8
	@# the stacked txt2img headline needs a random pipeline folder (scripts/bench/make_random_folder.py)
	@if [ -f build/xl-pipe/model_index.json ]; then scripts/bench/stacked.sh build/xl-pipe; \
	 else echo "bench: no build/xl-pipe, stacked headline skipped (scripts/bench/stacked.sh says how to make it)"; fi
# ditrt vs diffusers, alternated (needs a PyTorch + diffusers venv; not part of `make bench`):
#   /work/venv-cur/bin/python scripts/bench/unet_diffusers.py [--part vae] --res 512 --threads 2 --rounds 3
# The exact int8 GEMM (kernels/cpu/gemm_s8.h) vs oneDNN's f32 matmul on the PixArt / SD shapes
# (not part of `make bench`; ROUNDS alternated rounds, min and median):
.PHONY: bench-gemm-s8
BENCH_GEMM_S8 = $(BUILD)/tests/bench/bench_gemm_s8
$(BENCH_GEMM_S8): tests/bench/bench_gemm_s8.c libditrt.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libditrt.a $(LDLIBS)
bench-gemm-s8: $(BENCH_GEMM_S8)
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive $(BENCH_GEMM_S8) $(or $(ROUNDS),5)

# The first command on a fresh machine: builds ditrt and draws out/demo.png (32x32) with the
# small PixArt-Σ-architecture model trained on synthetic shapes (assets/demo-pixart, scripts/demo/),
# and out/demo.mp4 (8 frames of 32x32) with the Latte-architecture one (assets/demo-latte); it
# also builds the embedding example build/examples/txt2img_example the README runs next.
.PHONY: demo update-golden
DEMO_PROMPT ?= a red circle on the left on a black background
DEMO_VIDEO_PROMPT ?= a blue triangle moving up on a white background
# The build runs in parallel on all cores so a fresh checkout draws its first image within ~2 minutes;
# one thread draws a 32x32 image fastest (OpenMP barriers cost more than they save at this size).
demo:
	@$(MAKE) --no-print-directory -j$$(nproc) ditrt $(EXAMPLES)
	@mkdir -p out
	./ditrt txt2img -m assets/demo-pixart -p "$(DEMO_PROMPT)" --steps 20 --cfg 4.5 --seed 0 --threads 1 -o out/demo.png
	./ditrt txt2vid -m assets/demo-latte -p "$(DEMO_VIDEO_PROMPT)" --steps 20 --cfg 4.5 --seed 0 --fps 4 --threads 1 -o out/demo.mp4
	./ditrt txt2img -m assets/demo-sd -p "$(DEMO_PROMPT)" --steps 20 --cfg 4.5 --seed 0 --threads 1 -o out/demo-sd.png

# Regenerates assets/golden/ (checked by tests/test_golden.c) after an intended change.
update-golden: ditrt
	sh scripts/update-golden.sh

# `make install PREFIX=/usr DESTDIR=/tmp/stage`: lib/ (libditrt.a, libditrt.so.X.Y.Z and its
# libditrt.so.X, libditrt.so links), lib/pkgconfig/ditrt.pc, include/ditrt.h, bin/ditrt.
LIBDIR = $(DESTDIR)$(PREFIX)/lib
install: all
	install -d $(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 644 libditrt.a $(SHLIB) $(LIBDIR)
	ln -sf $(SHLIB) $(LIBDIR)/$(SONAME)
	ln -sf $(SHLIB) $(LIBDIR)/libditrt.so
	install -m 644 ditrt.pc $(LIBDIR)/pkgconfig
	install -m 644 include/ditrt.h $(DESTDIR)$(PREFIX)/include
	install -m 755 ditrt $(DESTDIR)$(PREFIX)/bin

# ---- fuzzing (tests/fuzz/: one libFuzzer harness per parser of user files) ----
# `make fuzz` builds the library again with clang, ASan and UBSan (build-fuzz/, with the same
# source flags) and each tests/fuzz/fuzz_<target>.c against it with -fsanitize=fuzzer, then
# scripts/fuzz.sh runs each target FUZZ_SECONDS (20; `make fuzz FUZZ_SECONDS=600` for a long
# run) with a 2 GB RSS limit and a per-input timeout. `make test` replays the committed
# regression corpus (tests/fuzz/corpus/) through the same harnesses built with $(CC) and no
# libFuzzer (build/fuzz-replay/).
FUZZ_SECONDS ?= 20
FUZZ_CC  ?= clang
FUZZ_CXX ?= clang++
FUZZ_BUILD = build-fuzz
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Wno-pass-failed
FUZZ_CFLAGS = -O1 -g -march=x86-64-v3 $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(CFLAGS_COMMON)
FUZZ_CXXFLAGS = -O1 -g -march=x86-64-v3 $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(CXXFLAGS_COMMON)
FUZZ_BINS = $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_OBJ = $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o) $(LIB_CXX:%.cc=$(FUZZ_BUILD)/%.o)

# clang with its libFuzzer runtime (Debian clang + libclang-rt-14-dev), installed when missing
$(FUZZ_BUILD)/.deps: | $(DEPS_STAMP)
	@mkdir -p $(FUZZ_BUILD)
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' > $(FUZZ_BUILD)/probe.c
	@$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $(FUZZ_BUILD)/probe.c -o $(FUZZ_BUILD)/probe 2>/dev/null || \
	  { sh scripts/install-deps.sh && $(FUZZ_CC) -fsanitize=fuzzer,address,undefined $(FUZZ_BUILD)/probe.c -o $(FUZZ_BUILD)/probe; }
	@touch $@

$(FUZZ_BUILD)/%.o: %.c | $(FUZZ_BUILD)/.deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/%.o: %.cc | $(FUZZ_BUILD)/.deps
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libditrt.a: $(FUZZ_LIB_OBJ)
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_BUILD)/libditrt.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@.o
	$(FUZZ_CXX) -fsanitize=fuzzer,address,undefined -o $@ $@.o $(FUZZ_BUILD)/libditrt.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

FUZZ_JOBS ?= 1
fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) sh scripts/fuzz.sh

$(BUILD)/fuzz-replay/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz_util.h libditrt.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/fuzz/replay.c libditrt.a $(LDLIBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) libditrt.a libditrt.so libditrt.so.* ditrt.pc ditrt

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(ASAN_LIB_OBJ:.o=.d) $(ASAN_CLI_OBJ:.o=.d) $(FUZZ_LIB_OBJ:.o=.d)

# Runs every ```sh block of README.md in a fresh clone of HEAD (scripts/check-readme.sh; blocks
# marked `<!-- check-readme: skip: reason -->` are skipped). Not part of `make test`: it builds
# the clone from scratch (minutes).
.PHONY: check-readme
check-readme:
	sh scripts/check-readme.sh

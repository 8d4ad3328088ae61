# SPDX-License-Identifier: EUPL-1.2
# The commands users type.  Each one installs missing dependencies first
# (scripts/deps.sh: Debian packages, quick when all are present).
#   make run     build, then run the relay on the built-in defaults
#   make test    build, then run unit and end-to-end tests
#   make asan    the same tests against an AddressSanitizer+UBSan build
#   make bench   benchmarks against Postfix
#   make fuzz    run each libFuzzer harness for FUZZ_SECONDS (clang)
#   make builds  Release (-O3) and clang builds, warnings as errors, unit tests
#   make install install the binary, man pages, systemd unit (PREFIX, DESTDIR)
#   make clean   remove build output

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

FUZZ_BUILD   ?= build-fuzz
RELEASE_BUILD ?= build-release
CLANG_BUILD   ?= build-clang
FUZZ_SECONDS ?= 60
PREFIX       ?= /usr/local
DESTDIR      ?=

.PHONY: all deps build run test asan bench fuzz builds install clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZMTA_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/zone-mta run $(ARGS)

test: build
	@bash scripts/test.sh $(BUILD)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DZMTA_SANITIZE=ON -DZMTA_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@bash scripts/test.sh $(ASAN_BUILD)

bench: build
	@QUICK=$(QUICK) ITEMS="$(ITEMS)" bash bench/run.sh $(BUILD)

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DZMTA_FUZZ=ON -DZMTA_WERROR=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_smtp_parse fuzz_header fuzz_transform fuzz_proxy fuzz_auth fuzz_dsn fuzz_socks5
	@for t in smtp_parse header transform proxy auth dsn socks5; do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t && \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s" && \
	  $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# Other optimisers and compilers see other warnings: both must build clean
# and pass the unit tests.
builds: deps
	@cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=Release -DZMTA_WERROR=ON >/dev/null
	@cmake --build $(RELEASE_BUILD) -j $(JOBS)
	@cd $(RELEASE_BUILD) && ctest --output-on-failure
	@CC=clang cmake -S . -B $(CLANG_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZMTA_WERROR=ON >/dev/null
	@cmake --build $(CLANG_BUILD) -j $(JOBS)
	@cd $(CLANG_BUILD) && ctest --output-on-failure

# The unit names the installed paths: configured for PREFIX (the build's
# other settings stay as they are).
install: deps
	@cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(RELEASE_BUILD) $(CLANG_BUILD)

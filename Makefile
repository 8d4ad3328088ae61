# The commands users type.  Each one installs missing dependencies first
# (scripts/deps.sh: Debian packages, quick when all are present).
#   make run     build, then run the relay on the built-in defaults
#   make test    build, then run unit and end-to-end tests
#   make asan    the same tests against an AddressSanitizer+UBSan build
#   make bench   benchmarks against Postfix
#   make clean   remove build output

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build run test asan bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/zone-mta run $(ARGS)

test: build
	@bash scripts/test.sh $(BUILD)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DZMTA_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@bash scripts/test.sh $(ASAN_BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# ferry build. `make` builds everything under build/; `make SAN=1` builds the
# ASan+UBSan variant under build/asan/. Library code is every src/**/*.c that
# is not a main.c; each program is its directory's main.c linked to it.

CC      ?= gcc
SAN     ?= 0
ifeq ($(SAN),1)
O       ?= build/asan
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1 -g
else
O       ?= build
SANFLAGS =
OPT      = -O2 -g
endif

CFLAGS  += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
           -Wshadow -Wvla -fno-strict-aliasing $(OPT) $(SANFLAGS) -Isrc -Iguest -MMD -MP
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS  += -ljson-c -lzstd -llz4 -lxxhash -lcrypto -lm

# Three libraries so a program links only what it uses (and a half-written
# daemon change cannot stop ferry-vm from building): the core (common, vmm,
# devices, migration), the daemon's modules and the CLI's modules.
srcs_in   = $(filter-out %/main.c,$(shell find $(1) -name '*.c' 2>/dev/null | sort))
CORE_SRC := $(call srcs_in,src/common src/vmm src/devices src/migration)
D_SRC    := $(call srcs_in,src/daemon)
CLI_SRC  := $(call srcs_in,src/cli)
LIB_OBJ  := $(CORE_SRC:%.c=$(O)/obj/%.o)
D_OBJ    := $(D_SRC:%.c=$(O)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(O)/obj/%.o)
LIBS_ALL := $(O)/libferryd.a $(O)/libferrycli.a $(O)/libferry.a
PROGS    := $(O)/bin/ferry-vm $(O)/bin/ferryd $(O)/bin/ferry $(O)/bin/ferry-stream
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(O)/tests/tools/%)

.PHONY: all clean guest tests
all: $(PROGS) tests guest

tests: $(UNIT_BIN) $(TOOL_BIN)

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# XXH3 for AVX2 CPUs, chosen at run time (format.c): only this file.
$(O)/obj/src/migration/sum_avx2.o: CFLAGS += -mavx2

$(O)/libferry.a: $(LIB_OBJ)
$(O)/libferryd.a: $(D_OBJ)
$(O)/libferrycli.a: $(CLI_OBJ)
$(O)/libferry.a $(O)/libferryd.a $(O)/libferrycli.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(O)/bin/ferry-vm: $(O)/obj/src/vmm/main.o $(O)/libferry.a
$(O)/bin/ferryd: $(O)/obj/src/daemon/main.o $(O)/libferryd.a $(O)/libferry.a
$(O)/bin/ferry: $(O)/obj/src/cli/main.o $(O)/libferrycli.a $(O)/libferry.a
$(O)/bin/ferry-stream: $(O)/obj/src/streamtool/main.o $(O)/libferry.a
$(PROGS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(O)/tests/%: $(O)/obj/tests/unit/%.o $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) -lcmocka

$(O)/tests/tools/%: $(O)/obj/tests/tools/%.o $(O)/libferry.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The test guest is freestanding code with its own flags; always built
# without sanitizers, into build/guest.
guest:
	@if [ -f guest/Makefile ]; then $(MAKE) -C guest O=$(abspath build/guest); fi

clean:
	rm -rf build

-include $(shell find $(O)/obj -name '*.d' 2>/dev/null)

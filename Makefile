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
LDLIBS  += -ljson-c -lzstd -llz4 -lm

LIB_SRC  := $(filter-out %/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ  := $(LIB_SRC:%.c=$(O)/obj/%.o)
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

$(O)/libferry.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(O)/bin/ferry-vm: $(O)/obj/src/vmm/main.o $(O)/libferry.a
$(O)/bin/ferryd: $(O)/obj/src/daemon/main.o $(O)/libferry.a
$(O)/bin/ferry: $(O)/obj/src/cli/main.o $(O)/libferry.a
$(O)/bin/ferry-stream: $(O)/obj/src/streamtool/main.o $(O)/libferry.a
$(PROGS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(O)/tests/%: $(O)/obj/tests/unit/%.o $(O)/libferry.a
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

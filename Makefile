# One build for the three daemons, their tools and the tests.
#
# Layout rules (no per-module edits needed here):
#   shared/*.c                 -> $(B)/libshared.a
#   D/*.c (D = a daemon folder) -> $(B)/lib<D>.a, except main.c and cmd_*.c
#   D/main.c                   -> $(B)/D          (the daemon)
#   D/cmd_NAME.c               -> $(B)/NAME       (a command-line tool)
#   tests/unit/test_X.c        -> $(B)/tests/test_X (cmocka)
#   tests/fuzz/fuzz_X.c        -> $(B)/tests/fuzz_X (corpus replay driver);
#                                 build-fuzz/fuzz_X with libFuzzer (make fuzz)

B        ?= build
CC       ?= cc
PKGS      = libevent libevent_openssl libevent_pthreads hiredis libsasl2 libmariadb openssl libcrypt
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
OPT      ?= -O2
CFLAGS   += -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter \
            -D_GNU_SOURCE -Ishared $(PKG_CFLAGS) $(SAN)
LDFLAGS  += $(SAN)
LDLIBS   += $(PKG_LIBS) -lpthread
PREFIX   ?= /usr/local
DESTDIR  ?=
PYTEST    = /usr/bin/python3 -m pytest

DAEMONS   = mx-relay submission mra
SHARED_SRC := $(wildcard shared/*.c)
SHARED_OBJ := $(SHARED_SRC:%.c=$(B)/obj/%.o)

define daemon_rules
$(1)_LIBSRC := $$(filter-out $(1)/main.c $(1)/cmd_%.c,$$(wildcard $(1)/*.c))
$(1)_LIBOBJ := $$($(1)_LIBSRC:%.c=$(B)/obj/%.o)
$(1)_CMDS   := $$(patsubst $(1)/cmd_%.c,$(B)/%,$$(wildcard $(1)/cmd_*.c))
$(B)/lib$(1).a: $$($(1)_LIBOBJ)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
$(B)/$(1): $(B)/obj/$(1)/main.o $(B)/lib$(1).a $(B)/libshared.a
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
$$(foreach t,$$($(1)_CMDS),$$(eval $$(call cmd_rule,$(1),$$(notdir $$(t)))))
endef
# One explicit rule per tool: a pattern rule "$(B)/%" would make every
# target a candidate for long implicit-rule searches.
define cmd_rule
$(B)/$(2): $(B)/obj/$(1)/cmd_$(2).o $(B)/lib$(1).a $(B)/libshared.a
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rules,$(d))))

DAEMON_BINS := $(foreach d,$(DAEMONS),$(if $(wildcard $(d)/main.c),$(B)/$(d)))
CMD_BINS    := $(foreach d,$(DAEMONS),$($(d)_CMDS))
DAEMON_LIBS := $(foreach d,$(DAEMONS),$(B)/lib$(d).a)

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/tests/%)
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRC:tests/bench/%.c=$(B)/bench/%)

.PHONY: all bins test unit fuzz-replay it asan fuzz fuzz-run bench run stop install uninstall clean deps-build deps-test deps-run deps-bench
.PHONY: imaptest imaptest-stress
.SECONDARY:

all: bins $(UNIT_BINS) $(FUZZ_REPLAY) $(BENCH_BINS)

bins: $(DAEMON_BINS) $(CMD_BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# Tests of a daemon's modules see that daemon's headers.
$(foreach t,unit fuzz,$(foreach k,test fuzz,\
  $(eval $(B)/obj/tests/$(t)/$(k)_mx_%.o: CFLAGS += -Imx-relay)\
  $(eval $(B)/obj/tests/$(t)/$(k)_sub_%.o: CFLAGS += -Isubmission)\
  $(eval $(B)/obj/tests/$(t)/$(k)_imap_%.o: CFLAGS += -Imra)\
  $(eval $(B)/obj/tests/$(t)/$(k)_pop3_%.o: CFLAGS += -Imra)\
  $(eval $(B)/obj/tests/$(t)/$(k)_mra_%.o: CFLAGS += -Imra)))
$(B)/obj/tests/bench/%.o: CFLAGS += -Imx-relay -Isubmission -Imra

$(B)/libshared.a: $(SHARED_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# A test or fuzz target links libshared, plus the library of the daemon its
# name points to: *_mx_* -> mx-relay, *_sub_* -> submission,
# *_imap_* *_pop3_* *_mra_* -> mra. So one daemon's broken file never stops
# another module's tests from building.
define test_rules
$(B)/tests/$(1)$(2)%: $(B)/obj/tests/$(3)/$(1)$(2)%.o $(4) $(B)/libshared.a $(5)
	@mkdir -p $$(@D)
	$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o %.a,$$^) $(4) $(B)/libshared.a $$(LDLIBS) $(6)
endef
$(eval $(call test_rules,test_,,unit,,,-lcmocka))
$(eval $(call test_rules,fuzz_,,fuzz,,$(B)/obj/tests/fuzz/replay.o,))
$(foreach k,test_:unit:-lcmocka fuzz_:fuzz:,$(foreach m,mx_:mx-relay sub_:submission imap_:mra pop3_:mra mra_:mra,\
  $(eval $(call test_rules,$(word 1,$(subst :, ,$(k))),$(word 1,$(subst :, ,$(m))),$(word 2,$(subst :, ,$(k))),$(B)/lib$(word 2,$(subst :, ,$(m))).a,$(if $(findstring fuzz,$(k)),$(B)/obj/tests/fuzz/replay.o),$(word 3,$(subst :, ,$(k)))))))

$(B)/bench/%: $(B)/obj/tests/bench/%.o $(DAEMON_LIBS) $(B)/libshared.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(DAEMON_LIBS) $(B)/libshared.a $(LDLIBS)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
# dependency files are made by the compiler, never by a rule
$(B)/obj/%.d: ;

deps-build:
	@sh deploy/deps.sh build
deps-test:
	@sh deploy/deps.sh test
deps-run:
	@sh deploy/deps.sh run
deps-bench:
	@sh deploy/deps.sh bench

# ---- tests ---------------------------------------------------------------

# Unit tests run under the harness, which starts a private redis-server and
# MariaDB and exports their addresses (TEST_REDIS_*, TEST_MYSQL_*).
unit: $(UNIT_BINS)
	@/usr/bin/python3 tests/harness/servers.py run -- sh tests/harness/run_unit.sh $(UNIT_BINS)

fuzz-replay: $(FUZZ_REPLAY)
	@for f in $(FUZZ_REPLAY); do n=$${f##*/fuzz_}; \
	  $$f tests/fuzz/corpus/$$n || exit 1; done

it: all
	BUILD=$(abspath $(B)) $(PYTEST) -q -p no:cacheprovider tests/it tests/twohost

test: deps-test
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz-replay
	$(MAKE) it

asan: deps-test
	$(MAKE) B=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  ASAN_OPTIONS=detect_leaks=1 all unit fuzz-replay it

# Dovecot's imaptest against a private mra (tests/imaptest/run.sh): the
# compliance scripts (fails when any command failed), and its stress mode
# for benchmarks (10 clients on one mailbox, then over 10 users;
# IMAPTEST_SECS per run, default 60). Without ../shared beside the
# checkout both say "skipped" and succeed.
IMAPTEST_TOOL = ../shared/tools/imaptest/build.sh
imaptest:
	@if [ -f $(IMAPTEST_TOOL) ]; then $(MAKE) --no-print-directory bins; fi
	@sh tests/imaptest/run.sh compliance $(abspath $(B))

imaptest-stress:
	@if [ -f $(IMAPTEST_TOOL) ]; then $(MAKE) --no-print-directory bins; fi
	@sh tests/imaptest/run.sh stress $(abspath $(B))

# libFuzzer targets: each runs FUZZ_SECONDS (default 30) from its corpus;
# FUZZ_ONLY="tests/fuzz/fuzz_a.c ..." picks some of them.
FUZZ_SECONDS ?= 30
FUZZ_ONLY ?= $(FUZZ_SRC)
FUZZ_CFLAGS = -std=gnu11 -O1 -g -D_GNU_SOURCE -Ishared -Imx-relay -Isubmission -Imra $(PKG_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined
fuzz: deps-test
	@$(MAKE) fuzz-run
fuzz-run:
	@mkdir -p build-fuzz
	@set -e; for src in $(FUZZ_ONLY); do n=$$(basename $$src .c); \
	  clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o build-fuzz/$$n $$src \
	    $(SHARED_SRC) $(foreach d,$(DAEMONS),$($(d)_LIBSRC)) $(PKG_LIBS) -lpthread; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	    build-fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} 2>build-fuzz/$$n.log \
	    || { tail -40 build-fuzz/$$n.log; exit 1; }; \
	  tail -1 build-fuzz/$$n.log; done

# The package flags are computed when make starts: build in a sub-make
# after the dependency step, so a fresh machine needs no second run.
# Every tests/bench/*.sh, compare.sh included: mailpair side by side with
# Postfix and Dovecot (private instances on loopback; deps.sh bench).
bench: deps-bench
	$(MAKE) all
	@sh tests/bench/run.sh $(abspath $(B))

# ---- quickstart ----------------------------------------------------------

run: deps-run
	$(MAKE) all
	@sh deploy/quickstart.sh start $(abspath $(B))

stop:
	@sh deploy/quickstart.sh stop

# ---- install ----------------------------------------------------------------
# Binaries, man pages, systemd units, the samples under share/, and the
# configuration in /etc/mailpair (deploy/install-etc.sh: never overwriting
# a file that exists, no known password). DESTDIR for packaging and tests.
SYSCONFDIR      ?= /etc/mailpair
SPOOLDIR        ?= /var/spool/mailpair
MANDIR          ?= $(PREFIX)/share/man
SYSTEMD_UNITDIR ?= /etc/systemd/system
# which host's samples go to SYSCONFDIR: mx, internal or both
ROLE            ?= both
UNITS    := $(wildcard deploy/systemd/*.service deploy/systemd/*.timer)
MAN1     := $(wildcard deploy/man/*.1)
MAN8     := $(wildcard deploy/man/*.8)
INSTALL_BINS = $(notdir $(DAEMON_BINS) $(CMD_BINS))

install: bins
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(SYSTEMD_UNITDIR) $(DESTDIR)$(PREFIX)/share/mailpair/examples
	install -m 755 $(DAEMON_BINS) $(CMD_BINS) $(DESTDIR)$(PREFIX)/sbin/
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(UNITS) $(DESTDIR)$(SYSTEMD_UNITDIR)/
	cp -r deploy/etc deploy/sql deploy/systemd deploy/docker deploy/compose.yaml \
	  deploy/compose.env.sample deploy/sendmail.cf $(DESTDIR)$(PREFIX)/share/mailpair/examples/
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/mailpair/
	@sh deploy/install-etc.sh $(DESTDIR)$(SYSCONFDIR) $(ROLE)
	install -d -m 1733 $(DESTDIR)$(SPOOLDIR)
	@echo "installed; next: README.md, \"Deploying on two hosts\" (systemctl daemon-reload, then enable the units)"

# Removes what install put in place but the configuration (/etc/mailpair)
# and a spool that still holds messages.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/sbin/,$(INSTALL_BINS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN1)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8)))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMD_UNITDIR)/,$(notdir $(UNITS)))
	rm -rf $(DESTDIR)$(PREFIX)/share/mailpair
	-rmdir $(DESTDIR)$(SPOOLDIR) 2>/dev/null
	@echo "kept $(DESTDIR)$(SYSCONFDIR) (your configuration) and any spooled mail in $(DESTDIR)$(SPOOLDIR)"

clean:
	rm -rf build build-asan build-fuzz

# llmgw: PGXS build, plus the two commands of the README (demo, test)

EXTENSION = llmgw
MODULE_big = llmgw
OBJS = src/llmgw.o src/queue.o src/worker.o src/http.o src/call.o src/config.o \
       src/provider.o src/jsonutil.o src/jsonread.o src/sse.o src/retry.o src/response.o src/usage.o \
       src/settle.o src/cost.o src/rollup.o src/errors.o src/functions.o src/apikey.o src/policy.o src/budget.o \
       src/ratelimit.o src/journal.o src/health.o src/cache.o src/async.o src/txn.o \
       src/security.o src/redact.o src/share.o src/route.o src/translate.o \
       src/providers/openai.o src/providers/openai_responses.o src/providers/anthropic.o \
       src/providers/gemini.o src/frontdoor.o src/frontdoor_openai.o \
       src/frontdoor_anthropic.o src/frontdoor_responses.o src/metrics.o src/calls_now.o src/batch.o src/batch_ingest.o src/batch_helper.o src/batch_result.o src/batch_wire.o src/direct.o \
       src/batch_openai.o src/batch_anthropic.o src/batch_gemini.o src/reqlog.o src/redaction.o src/redaction_scan.o \
       src/otel.o
DATA = $(wildcard sql/llmgw--*.sql)
PGFILEDESC = "llmgw - LLM gateway inside PostgreSQL"

SHLIB_LINK = -lcurl -ljansson -lmicrohttpd
PG_CPPFLAGS = -Isrc
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
            -Wno-missing-field-initializers

REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
# The workers serve one database (llmgw.database): the tests run there
REGRESS_OPTS = --inputdir=test --use-existing
LLMGW_TEST_DB ?= postgres
TAP_TESTS = 1
PROVE_TESTS = $(wildcard test/t/*.pl)

EXTRA_CLEAN = results/ regression.diffs regression.out tmp_check/ log/

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
# no JIT bitcode: the functions here only wait on workers (an override set
# before the include, so that PGXS's own setting does not win)
override with_llvm = no
override CONTRIB_TESTDB = $(LLMGW_TEST_DB)
ifneq ($(PGXS),)
include $(PGXS)
endif

# bitcode an older build installed would be inlined by JIT in place of this
# build's code: remove it
install: remove-bitcode
.PHONY: remove-bitcode
remove-bitcode:
	rm -rf '$(DESTDIR)$(pkglibdir)/bitcode/llmgw' '$(DESTDIR)$(pkglibdir)/bitcode/llmgw.index.bc'

# every object depends on every header: the tree is small, correctness first
$(OBJS): $(wildcard src/*.h)

.PHONY: demo test mock
demo:
	bash test/scripts/demo.sh

test:
	bash test/scripts/test.sh

mock:
	$(MAKE) -C test/mock

# mmaudit: find kthread_use_mm()/use_mm() callers without an mm_users pin.
#
#   make audit      audit the newest Debian linux-source package (KSRC=tree or tarball)
#   make check      lint and every test (installs what it needs first)
#   make fuzz       a long fuzz run of every command (FUZZ_SECONDS, FUZZ_SEED)
#   make cocci      regenerate cocci/*.cocci from cocci/src/ (scripts/gen-cocci)

PYTHON  ?= /usr/bin/python3
SPATCH  ?= spatch
KSRC    ?=
JOBS    ?= 2
DEBS    := coccinelle linux-source-6.12 linux-source-6.1 python3-pytest python3-pyflakes python3-yaml time patch \
	   gcc-powerpc64le-linux-gnu bc flex bison libelf-dev libssl-dev
RULES   := $(wildcard cocci/*.cocci)
PYFILES := scripts/mmaudit scripts/bench scripts/gen-cocci cocci/src/helpers.py \
	   $(wildcard scripts/mmaudit_lib/*.py) $(wildcard tests/*.py)

.PHONY: all deps check lint test bless cocci audit audit-diff fixes bench fuzz clean

all: check

# Installs the Debian packages that are missing (as root), else says how.
deps:
	@missing=""; for p in $(DEBS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing packages:$$missing; run as root: apt-get update && apt-get install -y$$missing" >&2; \
		exit 1; \
	fi; \
	echo "installing:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

# The rules are generated from cocci/src/ (scripts/gen-cocci): edit there.
cocci:
	@$(PYTHON) scripts/gen-cocci

# Every rule is what cocci/src/ gives, and parses (its modes on, context,
# org and patch one at a time, and its -D values set) with no warning but
# spatch's notes about isomorphisms that do not apply.
lint: deps
	@$(PYTHON) scripts/gen-cocci --check
	@for r in $(RULES); do \
		defs=$$(grep -o 'virtual\.[a-z_]*' $$r | sort -u | sed 's/virtual\.\(.*\)/-D \1=lint_value/'); \
		defs="$$defs $$(sed -n 's/^virtual \([a-z_]*\)$$/-D \1/p' $$r | grep -v -e '-D context' -e '-D org' -e '-D patch')"; \
		for m in "" $$(sed -n 's/^virtual \(context\|org\|patch\)$$/\1/p' $$r); do \
			$(SPATCH) --parse-cocci $$defs $${m:+-D $$m} $$r >/dev/null 2>lint.err \
				|| { cat lint.err; rm -f lint.err; echo "lint: $$r does not parse $$m" >&2; exit 1; }; \
			if grep '^warning:' lint.err | grep -v '^warning: iso .* does not match'; then \
				rm -f lint.err; echo "lint: $$r has warnings $$m" >&2; exit 1; fi; \
		done; \
	done; rm -f lint.err
	@$(PYTHON) -m py_compile $(PYFILES)
	@$(PYTHON) -m pyflakes $(PYFILES)
	@bash -n scripts/sarif-validate
	@sh -n scripts/mmaudit-hook
	@echo "lint: $(words $(RULES)) rules and $(words $(PYFILES)) Python files OK"

test: deps
	$(PYTHON) -m pytest -q tests/

check: lint test

bless: deps
	$(PYTHON) tests/bless.py

# Exit status 1 only means "findings"; the audit itself worked.
audit: deps
	@$(PYTHON) scripts/mmaudit audit $(KSRC) -j $(JOBS) --release-dir reports --summary \
		|| [ $$? -eq 1 ]

# Fix patches for the findings of KSRC (default: newest package), verified
# on a scratch copy; UPSTREAM=tree shows a later tree's change beside them.
fixes: deps
	@$(PYTHON) scripts/mmaudit fix $(KSRC) -j $(JOBS) --verify \
		$(if $(UPSTREAM),--upstream $(UPSTREAM)) $(if $(SIGNOFF),--signoff "$(SIGNOFF)")

# The Debian 6.1 and 6.12 packages, audited and compared.
OLD_SRC ?= /usr/src/linux-source-6.1.tar.xz
NEW_SRC ?= /usr/src/linux-source-6.12.tar.xz
audit-diff: deps
	@$(PYTHON) scripts/mmaudit audit $(OLD_SRC) -q -j $(JOBS) --release-dir reports --summary >build-old.txt || [ $$? -eq 1 ]
	@$(PYTHON) scripts/mmaudit audit $(NEW_SRC) -q -j $(JOBS) --release-dir reports --summary >build-new.txt || [ $$? -eq 1 ]
	@old=$$(sed -n 's|^Reports: \(.*\)/{.*|\1|p' build-old.txt); new=$$(sed -n 's|^Reports: \(.*\)/{.*|\1|p' build-new.txt); \
	rm -f build-old.txt build-new.txt; \
	$(PYTHON) scripts/mmaudit diff $$old/findings.json $$new/findings.json \
		-o reports/diff-$${old##*/linux-}-$${new##*/linux-}.md || [ $$? -eq 1 ]

# A long fuzz run of every command (make check runs 40 s of it);
# FUZZ_SECONDS and FUZZ_SEED replay or extend one.
fuzz: deps
	$(PYTHON) tests/fuzz.py $(or $(FUZZ_SECONDS),600) $(FUZZ_SEED)

bench: deps
	$(PYTHON) scripts/bench $(if $(KSRC),$(KSRC)) -n $(or $(RUNS),5)

clean:
	rm -rf build .pytest_cache tests/__pycache__ scripts/mmaudit_lib/__pycache__ lint.err

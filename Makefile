# secnic — build, test, benchmark and lint targets. Run `make help` for a list.
GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 200ms
FUZZTIME  ?= 10s
BIN       ?= bin/secnic
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   ?= -X main.version=$(VERSION)
# make install: PREFIX and DESTDIR as usual (make install DESTDIR=/tmp/pkg PREFIX=/usr).
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
UNITDIR   ?= $(PREFIX)/lib/systemd/system

.PHONY: all build install test test-short bench bench-micro bench-all bench-esp bench-ratio fuzz lint demo clean help

all: build

help:
	@echo "make build       build bin/secnic"
	@echo "make install     binary, systemd unit, man pages, completions (PREFIX=$(PREFIX), DESTDIR)"
	@echo "make demo        two namespaces, two NICs, real traffic through an AES-GCM tunnel (root)"
	@echo "make test        the whole test suite (root tests run when root; CI=true makes them mandatory)"
	@echo "make bench       micro-benchmarks (esp, ah, datapath, SA table) with datapath/crypto ratios,"
	@echo "                 then secnic bench --quick against host IPsec when root"
	@echo "make bench-all   every Go benchmark (BENCHTIME=$(BENCHTIME))"
	@echo "make bench-ratio ESP encap vs raw AEAD throughput, interleaved in one run"
	@echo "make fuzz        every fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make lint        gofmt check, go vet, staticcheck"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/secnic

# The unit's paths follow BINDIR; man pages and completions are generated
# from the CLI (secnic gendocs, cobra's generators).
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/secnic
	sed 's|/usr/local/bin/secnic|$(BINDIR)/secnic|g' contrib/systemd/secnic.service > $(DESTDIR)$(UNITDIR)/secnic.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/secnic.service
	$(abspath $(BIN)) gendocs --man $(DESTDIR)$(MANDIR)/man8 \
	  --bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/secnic \
	  --zsh $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_secnic \
	  --fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/secnic.fish

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

# The micro-benchmarks behind the datapath ÷ raw crypto ratios, then the
# side-by-side harness (secnic bench --quick, root only: namespaces, TUN).
MICRO := ^(BenchmarkRaw|BenchmarkEncap|BenchmarkDecap|BenchmarkAHEncap|BenchmarkAHDecap|BenchmarkDatapath|BenchmarkTableAdd|BenchmarkLookupIn|BenchmarkMatchOut)$$

bench: build
	@mkdir -p bin
	$(GO) test -run '^$$' -bench '$(MICRO)' -benchmem -benchtime $(BENCHTIME) ./esp ./ah ./nic ./sa | tee bin/micro-bench.txt
	@echo
	./$(BIN) bench ratios bin/micro-bench.txt
	@echo
	@if [ "$$(id -u)" = 0 ]; then ./$(BIN) bench --quick; \
	else echo "secnic bench (side by side with host IPsec) needs root: sudo ./$(BIN) bench --quick"; fi

bench-all:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

bench-esp:
	$(GO) test -run '^$$' -bench 'Benchmark(Encap|Decap|Raw)/' -benchmem -benchtime $(BENCHTIME) ./esp

bench-ratio:
	$(GO) test -run '^$$' -bench 'BenchmarkEncapVsRaw' -benchtime 3s ./esp

# Every fuzz target, each for FUZZTIME. go test -fuzz takes one target at a time.
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

# The demo needs root (network namespaces, veth pairs, TUN devices): it is
# built as the invoking user and run through sudo when that user is not root.
demo: build
	@if [ "$$(id -u)" = 0 ]; then ./$(BIN) demo; \
	elif command -v sudo >/dev/null; then echo "make demo needs root; running: sudo ./$(BIN) demo"; sudo ./$(BIN) demo; \
	else echo "make demo needs root: it creates network namespaces, veth pairs and TUN devices; run it as root"; exit 1; fi

clean:
	rm -rf bin

# ngx_mail_pop3_ext_module: build, run, test.
#
#   make            the module (build/ngx_mail_pop3_ext_module.so) and the
#                   command-line tool (build/pop3ext)
#   make run        install what is missing, build, serve POP3 on
#                   127.0.0.1:1110 with a local Redis (Ctrl-C stops both)
#   make test       install what is missing, build, run the t/ suite
#   make test-asan  the suite against a module built with ASan and UBSan
#   make test-cluster
#                   the suite through a Redis Cluster: each file's Redis is
#                   3 masters + 3 replicas (TEST_P3X_REDIS=cluster, see
#                   t/README.md)
#   make unit       the C unit test of the Redis specification parser
#   make test-nginx NGINX_SRC=/path/to/nginx [NGINX_MODULE_TYPE=dynamic]
#                   build that nginx source tree with the module (static by
#                   default) in build/nginx-VERSION-TYPE, smoke-test it and
#                   run the suite against it (util/test-nginx.sh)
#   make install    module into nginx's modules dir, pop3ext into PREFIX/bin
#   make test-deb-install
#                   install make deb's packages on this machine with
#                   apt-get, serve POP3 through them, remove them
#                   (t/091-deb-install.t; as root; for CI's fresh machine)
#   make deb        Debian packages libnginx-mod-mail-pop3-ext and pop3ext
#                   (debian/) in build/deb, built from a copy of the tree
#                   with dpkg-buildpackage and checked by lintian
#                   (util/deb.sh)

PREFIX      ?= /usr/local
MODULES_DIR ?= /usr/lib/nginx/modules
NGINX       ?= /usr/sbin/nginx
CC          ?= cc
CFLAGS      ?= -g -O2 -Wall -Wextra -Werror
PROVE_JOBS  ?= 2
NGINX_MODULE_TYPE ?= static

MOD  = ngx_mail_pop3_ext_module
SRCS = $(wildcard $(MOD)/*.c) $(wildcard $(MOD)/*.h) config

.PHONY: all deps run test test-asan test-cluster test-nginx install clean \
        test-deb-install \
        fuzz bench unit deb

all: build/$(MOD).so build/pop3ext

build/$(MOD).so: $(SRCS) util/build.sh
	util/build.sh build

CLI_SRCS = $(wildcard cli/*.c)
CLI_DEPS = $(CLI_SRCS) $(wildcard cli/*.h) $(wildcard $(MOD)/*.h)
CLI_LIBS = -lhiredis -lssl -lcrypto -lcrypt -largon2

build/pop3ext: $(CLI_DEPS)
	@mkdir -p build
	$(CC) $(CPPFLAGS) $(CFLAGS) -I$(MOD) -Icli $(LDFLAGS) -o $@.tmp \
	    $(CLI_SRCS) $(CLI_LIBS)
	mv -f $@.tmp $@

build-asan/$(MOD).so: $(SRCS) util/build.sh
	NGX_CC_OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined" \
	NGX_LD_OPT="-fsanitize=address,undefined" util/build.sh build-asan

# the unit test of the Redis specification parser (t/015-spec.t runs it too)
build/spec-test: util/spec_test.c $(MOD)/ngx_mail_pop3_ext_spec.h
	@mkdir -p build
	$(CC) $(CFLAGS) -I$(MOD) -o $@ util/spec_test.c

unit: build/spec-test
	build/spec-test

deps:
	util/deps.sh build run

run:
	util/deps.sh build run
	$(MAKE) all
	util/run.sh

test:
	util/deps.sh build run test
	util/check-includes.sh
	$(MAKE) all
	prove -j$(PROVE_JOBS) -r t/

test-asan:
	util/deps.sh build run test
	$(MAKE) build/pop3ext build-asan/$(MOD).so
	TEST_NGINX_MODULE=$(CURDIR)/build-asan/$(MOD).so \
	TEST_NGINX_ASAN=1 prove -j$(PROVE_JOBS) -r t/

# the files whose Redis is the test's (port(8379)) run with a Redis Cluster
# in its place; those that act on one server skip themselves
# (needs_standalone_redis).  These are left out: their Redis topologies
# are their own (servers, a cluster, sentinels) or they have none, and
# they would run as they do in make test
CLUSTER_OWN   = 001-harness-redis 015-spec 016-cli-redis 043-expunge-cluster \
                051-accounting 060-cluster 061-sentinel 065-redis-tls \
                066-redis-tls-cluster 067-redis-tls-sentinel 076-lmtp-cluster \
                090-deb
CLUSTER_TESTS = $(filter-out $(CLUSTER_OWN:%=t/%.t),$(sort $(wildcard t/*.t)))

test-cluster:
	util/deps.sh build run test
	$(MAKE) all
	TEST_P3X_REDIS=cluster prove -j$(PROVE_JOBS) $(CLUSTER_TESTS)

test-nginx:
	@test -n "$(NGINX_SRC)" || { echo "usage: make test-nginx" \
	    "NGINX_SRC=/path/to/nginx [NGINX_MODULE_TYPE=static|dynamic]" >&2; \
	    exit 64; }
	util/deps.sh build run test nginx-src
	$(MAKE) build/pop3ext
	PROVE_JOBS=$(PROVE_JOBS) util/test-nginx.sh "$(NGINX_SRC)" $(NGINX_MODULE_TYPE)

install: all
	install -d $(DESTDIR)$(MODULES_DIR) $(DESTDIR)$(PREFIX)/bin
	install -m 644 build/$(MOD).so $(DESTDIR)$(MODULES_DIR)/
	install -m 755 build/pop3ext $(DESTDIR)$(PREFIX)/bin/

deb:
	util/deps.sh build deb
	util/deb.sh

test-deb-install:
	util/deps.sh build run test deb
	TEST_DEB_INSTALL=1 prove t/091-deb-install.t

clean:
	rm -rf build build-asan build-fuzz

bench:
	util/deps.sh build run test bench
	$(MAKE) all
	bench/run.sh

fuzz:
	util/deps.sh build fuzz
	$(MAKE) build/$(MOD).so
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} fuzz/run.sh

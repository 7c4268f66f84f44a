#!/usr/bin/perl

# The test harness itself, without the module: ports, placeholders, the
# configuration helpers, nginx start and stop, the test's Redis (stop and
# start on the same port, its client), and the data model read from the
# C header.  Runs with this project's t/lib or nginx-tests' lib/.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis
    ->needs_standalone_redis('checks the one-server helpers: SAVE, stop_redis'
        . ' and start_redis on the same port, redis_port');

# nginx's mail core only (when it is a dynamic module, %%TEST_GLOBALS%%
# loads it): nginx must start with no mail block

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

daemon off;

events {
}
EOF

$x->run_redis();
$t->run();
$t->plan(20);

note("Test::Nginx: $INC{'Test/Nginx.pm'}, nginx: $Test::Nginx::NGINX");

###############################################################################

# ports

my $p1 = port(8110);
my $p2 = port(8111);
is(port(8110), $p1, 'port is stable');
isnt($p1, $p2, 'ports differ');
ok($p1 >= 1024 && $p1 < 32768, 'port below the ephemeral range');

$t->write_file_expand('placeholders',
    "a %%PORT_8110%% b %%TESTDIR%% c 127.0.0.1:8111\n");
is($t->read_file('placeholders'),
    "a $p1 b " . $t->testdir . " c 127.0.0.1:$p2\n", 'placeholders expanded');

like($x->conf(server => 'max_errors 3;'),
    qr/\A%%TEST_GLOBALS%%.*protocol pop3_ext;.*max_errors 3;/s,
    'mail block helper');

# %%TEST_GLOBALS%% loads the mail core when it is dynamic, the include
# after it the module (nothing when TEST_NGINX_MODULE is set and empty)

$t->write_file_expand('conf.test', $x->conf());
my $conf = $t->read_file('conf.test');
my $core = $t->has_module('mail=dynamic')
    ? qr/^load_module \S+ngx_mail_module\.so;\n(?:.*\n)*/m : qr//;
my $module = $x->module;
ok($conf =~ /\Apid \S+;\nerror_log \S+ debug;\n(?:.*\n)*?${core}include pop3ext_modules\.conf;\n/
    && $t->read_file('pop3ext_modules.conf')
        =~ (length $module ? qr/^load_module \Q$module\E;$/m
            : qr/\A(?:#.*\n)*\z/),
    'configuration loads the mail core, then the module');

# nginx

ok($x->nginx_running, 'nginx runs with an events-only configuration');
ok(-s $t->testdir . '/nginx.pid', 'pid file');

# Redis and its client (Redis.pm)

is($x->redis_cmd('PING'), 'PONG', 'redis PING');
is($x->redis_cmd('SET', "k\r\n\0", "v\0\r\n\xff"), 'OK', 'redis SET');
is($x->redis_cmd('GET', "k\r\n\0"), "v\0\r\n\xff", 'binary-safe GET');
is($x->redis_cmd('GET', 'nokey'), undef, 'nil reply');
is($x->redis_cmd('RPUSH', 'l', 'a', 'b'), 2, 'integer reply');
is_deeply($x->redis_cmd('LRANGE', 'l', 0, -1), [ 'a', 'b' ], 'array reply');
my $e = $x->redis_cmd('NOSUCHCOMMAND');
ok(ref $e && !$e && "$e" =~ /^ERR/, 'error reply');

my @r = $x->redis_pipeline(map { [ 'INCR', 'n' ] } 1 .. 5000);
is($r[-1], 5000, 'pipeline of 5000');

# stop and start on the same port; SAVE keeps data across

my $port = $x->redis_port;
$x->redis_cmd('SAVE');
$x->stop_redis();
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1),
    'redis stopped');
$x->start_redis();
is($x->redis_port, $port, 'same port after restart');
is($x->redis_cmd('GET', 'n'), 5000, 'saved data back');

# the model header

my $script = $x->model('P3X_SCRIPT_DELIVER');
ok($script =~ /\Aif KEYS.*redis\.call\('RPUSH'.*\n\z/s
    && $script =~ /'\\r\\n'/ && $script !~ /"\s*"/,
    'deliver script parsed from the header, C escapes undone');

###############################################################################

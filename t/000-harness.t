#!/usr/bin/perl

# The test harness itself, without the module: ports, configuration
# expansion, nginx start and stop, Redis start, stop and restart on the same
# port, the RESP client, and the data model read from the C header.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;

my $t = Test::Nginx->new()->has_redis;

# only the mail core is loaded: nginx must start with no mail block

$t->write_file_expand('nginx.conf', <<'EOF');
load_module %%MAIL_MODULE%%;

daemon off;
pid %%TESTDIR%%/nginx.pid;
error_log %%TESTDIR%%/error.log debug;

events {
}
EOF

$t->run();
$t->plan(20);

# ports

my $p1 = $t->port(8110);
my $p2 = $t->port(8111);
is($t->port(8110), $p1, 'port is stable');
isnt($p1, $p2, 'ports differ');
ok($p1 >= 1024 && $p1 < 32768, 'port below the ephemeral range');

my $text = $t->expand("a %%PORT_8110%% b %%TESTDIR%% c %%MODULE%%\n");
is($text, "a $p1 b " . $t->testdir . " c $Test::Nginx::MODULE\n",
    'placeholders expanded');

like($t->pop3_conf(server => 'max_errors 3;'),
    qr/\A%%TEST_GLOBALS%%.*protocol pop3_ext;.*max_errors 3;/s,
    'mail block helper');
like($t->expand($t->pop3_conf()),
    qr/\Aload_module \S+ngx_mail_module\.so;\nload_module \S+;/,
    'configuration starts with the mail core, then the module');

# nginx

ok($t->nginx_running, 'nginx runs with an events-only configuration');
ok(-s $t->testdir . '/nginx.pid', 'pid file');

# Redis and the RESP client

is($t->redis_cmd('PING'), 'PONG', 'redis PING');
is($t->redis_cmd('SET', "k\r\n\0", "v\0\r\n\xff"), 'OK', 'redis SET');
is($t->redis_cmd('GET', "k\r\n\0"), "v\0\r\n\xff", 'binary-safe GET');
is($t->redis_cmd('GET', 'nokey'), undef, 'nil reply');
is($t->redis_cmd('RPUSH', 'l', 'a', 'b'), 2, 'integer reply');
is_deeply($t->redis_cmd('LRANGE', 'l', 0, -1), [ 'a', 'b' ], 'array reply');
my $e = $t->redis_cmd('NOSUCHCOMMAND');
ok(ref $e && !$e && "$e" =~ /^ERR/, 'error reply');

my @r = $t->redis_pipeline(map { [ 'INCR', 'n' ] } 1 .. 5000);
is($r[-1], 5000, 'pipeline of 5000');

# stop and start on the same port; SAVE keeps data across

my $port = $t->redis_port;
$t->redis_cmd('SAVE');
$t->stop_redis();
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1),
    'redis stopped');
$t->start_redis();
is($t->redis_port, $port, 'same port after restart');
is($t->redis_cmd('GET', 'n'), 5000, 'saved data back');

# the model header

my $script = $t->model('P3X_SCRIPT_DELIVER');
ok($script =~ /\Aif KEYS.*redis\.call\('RPUSH'.*\n\z/s
    && $script =~ /'\\r\\n'/ && $script !~ /"\s*"/,
    'deliver script parsed from the header, C escapes undone');

###############################################################################

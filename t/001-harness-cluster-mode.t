#!/usr/bin/perl

# The harness' cluster mode (TEST_P3X_REDIS=cluster), forced here so that
# it is checked in every run: the test's Redis is a Redis Cluster of 3
# masters and 3 replicas; pop3_ext_redis lines that name port(8379) and
# pop3ext's -r name it in cluster mode (other parameters kept);
# redis_cmd and redis_pipeline send a command with keys to the master of
# their slot and a keyless one to every master, replies combined; what
# only a single server has dies with a message that says so; stop_redis
# and start_redis stop and start every node.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw/ sha1_hex /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t, redis_mode => 'cluster')->has_redis
    ->has_cli;
$t->has_daemon('redis-cli');

my $R = '127.0.0.1:%%PORT_8379%% timeout=3s';
$x->run_pop3(redis => $R, mail => $x->server(8111, '', redis => $R));

$t->plan(40);

my $c = $x->test_cluster;
my @masters = $c->masters;

###############################################################################

# the names

is($x->redis_mode, 'cluster', 'mode: cluster');
like($x->redis_spec, qr/^(?:127\.0\.0\.1:\d+ ){3}cluster\z/,
    'redis_spec: the 3 masters and "cluster"');

my $conf = $t->read_file('nginx.conf');
my $spec = $x->redis_spec;
my @lines = $conf =~ /^\s*pop3_ext_redis\s+(.*);$/mg;
is_deeply(\@lines, [ "$spec timeout=3s", "$spec timeout=3s" ],
    'nginx.conf: both pop3_ext_redis name the cluster, parameters kept');
unlike($conf, qr/127\.0\.0\.1:${\ port(8379) }\b/,
    'nginx.conf: the standalone port is named nowhere');

# slots computed here as Redis computes them

my @keys = ('', 'foo', '123456789', '{user1000}.following',
    '{user1000}.followers', 'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}',
    '{}', '{', '}{x}', "k\r\n\0\xff", $x->user_key('alice'),
    $x->mbox_key('alice', 'INDEX'), map { "key:$_" } 1 .. 40);
my @differ = grep { $c->hash_slot($_) != $c->slot_of($_) } @keys;
is_deeply(\@differ, [], 'hash_slot agrees with CLUSTER KEYSLOT');
is($c->hash_slot('123456789'), 0x31c3 % 16384, 'hash_slot: the CRC16 check'
    . ' value');

###############################################################################

# keys to their masters

is($x->redis_cmd('FLUSHALL'), 'OK', 'FLUSHALL on every master');
is(scalar(grep { $x->redis_cmd('SET', "key:$_", "v$_") eq 'OK' } 1 .. 40),
    40, 'SET 40 keys');
my @misplaced = grep {
    ($c->master_of("key:$_")->cmd('GET', "key:$_") // '') ne "v$_"
} 1 .. 40;
is_deeply(\@misplaced, [], 'each key is on the master of its slot');
my %used = map { $c->master_of("key:$_")->port => 1 } 1 .. 40;
is(scalar keys %used, 3, 'the keys are spread over the 3 masters');

is($x->redis_cmd('GET', 'key:7'), 'v7', 'GET routed');
is($x->redis_cmd('OBJECT', 'ENCODING', 'key:7'), 'embstr',
    'a key after a subcommand (COMMAND GETKEYS)');
is_deeply($x->redis_cmd('MGET', 'key:1', 'key:2', 'key:3', 'nokey'),
    [ 'v1', 'v2', 'v3', undef ], 'MGET across slots, in order');
is($x->redis_cmd('EXISTS', 'key:1', 'key:2', 'nokey', 'key:1'), 3,
    'EXISTS across slots, counted');
like($x->redis_cmd('MSET', 'key:1', 'a', 'key:2', 'b'), qr/^CROSSSLOT/,
    'MSET across slots: Redis says CROSSSLOT');
is($x->redis_cmd('DEL', 'key:1', 'key:2', 'nokey'), 2, 'DEL across slots');
is($x->redis_cmd('MSET', '{t}a', 1, '{t}b', 2), 'OK', 'MSET in one slot');

my $sha = $x->redis_cmd('SCRIPT', 'LOAD',
    "return redis.call('GET', KEYS[1])");
is($sha, sha1_hex("return redis.call('GET', KEYS[1])"),
    'SCRIPT LOAD: one SHA from every master');
is_deeply($x->redis_cmd('SCRIPT', 'EXISTS', $sha, '0' x 40), [ 1, 0 ],
    'SCRIPT EXISTS: on every master');
is($x->redis_cmd('EVALSHA', $sha, 1, 'key:9'), 'v9', 'EVALSHA: its KEYS');

# keyless: every master, replies combined

is($x->redis_cmd('DBSIZE'), 40, 'DBSIZE: the sum');
is_deeply([ sort @{$x->redis_cmd('KEYS', 'key:*')} ],
    [ sort map { "key:$_" } 3 .. 40 ], 'KEYS: every master\'s');
my $scan = $x->redis_cmd('SCAN', 0, 'MATCH', '{t}*');
is_deeply([ $scan->[0], sort @{$scan->[1]} ], [ 0, '{t}a', '{t}b' ],
    'SCAN 0: one whole scan of every master');
is($x->redis_cmd('PING'), 'PONG', 'PING: the same from all');
like($x->redis_cmd('NOSUCHCOMMAND'), qr/unknown command/,
    'an unknown command: Redis\' own error');
ok(!eval { $x->redis_cmd('INFO', 'server'); 1 }
    && $@ =~ /masters answer "INFO server" differently/,
    'replies that differ and cannot be combined: it dies saying so');

# a pipeline: replies in order, a keyless command between keyed ones

my @r = $x->redis_pipeline([ 'SET', 'p', 1 ], [ 'INCR', 'p' ],
    [ 'RPUSH', 'key:5:l', 'a' ], [ 'DBSIZE' ], [ 'INCR', 'p' ],
    [ 'GET', 'key:10' ], [ 'DEL', 'key:3', 'key:4' ]);
is_deeply(\@r, [ 'OK', 2, 1, 42, 3, 'v10', 2 ],
    'pipeline: replies in order, DBSIZE after what came before');

###############################################################################

# what only one server has

for my $m (qw/ redis redis_pid redis_port /) {
    ok(!eval { $x->$m(); 1 } && $@ =~ /^$m: .*needs_standalone_redis/,
        "$m dies, naming needs_standalone_redis");
}

###############################################################################

# the CLI and nginx on it

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: one\n\none\n");
my @uids = $x->deliver_fast('alice',
    map { "Subject: $_\r\n\r\nbody $_\r\n" } 2 .. 500);
is(scalar @uids, 499, 'deliver_fast: 499 UIDs');
is(($x->mailbox_stat('alice'))[0], 500, 'pop3ext stat: 500 messages');

for my $port (port(8110), port(8111)) {
    my $s = $x->session($port, 'alice', 'secret');
    my ($st, $body) = $s ? $s->cmd_multi('RETR 500') : ();
    like($body // '', qr/body 500/, "RETR through nginx on $port");
    $s->cmd('QUIT') if $s;
}

my ($rc) = $x->pop3ext('user', 'del', 'alice');
is($rc, 0, 'pop3ext user del');
is_deeply($x->redis_cmd('KEYS', '*alice*'), [], 'nothing of alice left');

# stop_redis and start_redis: every node

$x->stop_redis();
ok(!grep({ $_->running } $c->nodes), 'stop_redis: every node stopped');
($rc) = $x->pop3ext('stat', 'alice');
is($rc, 75, 'pop3ext with the cluster down: 75');
$x->start_redis();
ok($c->is_ok && $x->redis_running, 'start_redis: the same cluster again');
$x->add_user('bob', 'bobpw');
ok($x->session(port(8110), 'bob', 'bobpw'), 'nginx logs in on it again');

###############################################################################

#!/usr/bin/perl

# The harness' Redis helpers against real processes: independent servers
# with and without AOF and the faults injected into them (kill -9 and
# restart on the same port, SIGSTOP/SIGCONT, DEBUG SLEEP, CLIENT KILL,
# a snapshot restored), a Redis Cluster of 3 masters and 3 replicas (keys
# routed, a master killed and replaced, slots resharded), a master with a
# replica and 3 Sentinels (a forced failover reported), and a TLS-only
# Redis (structured replies through redis-cli: cmd_data).  No nginx runs
# here.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new();
my $x = Test::Nginx::POP3Ext->new($t)->has_redis;
$t->has_daemon('redis-cli')->has_daemon('redis-sentinel');

# the end checks read nginx's error log: an empty one, nginx never runs

$t->write_file('error.log', '');

$t->plan(36);

###############################################################################

# independent servers, one with AOF

my $plain = $x->redis_server(8380);
my $aof = $x->redis_server(8381, aof => 1);

$plain->cmd('SET', 'k', 'plain');
$aof->cmd('SET', 'k', 'aof');
is($plain->cmd('GET', 'k'), 'plain', 'two servers: first');
is($aof->cmd('GET', 'k'), 'aof', 'two servers: second, its own data');
isnt($plain->port, $aof->port, 'two servers: two ports');

# kill -9 and restart on the same port with the same directory: the AOF
# (fsync everysec) brings the data back, no persistence loses it

sleep(1.5);
my $port = $aof->port;
$aof->kill9;
ok(!IO::Socket::INET->new(PeerAddr => $aof->addr, Timeout => 1),
    'kill -9: the port is closed');
$aof->start;
is($aof->port, $port, 'restarted on the same port');
is($aof->cmd('GET', 'k'), 'aof', 'AOF: data back after kill -9');
$plain->restart;
is($plain->cmd('GET', 'k'), undef, 'no persistence: data gone after kill -9');

# SIGSTOP: a command gets no reply; SIGCONT: it is answered

$plain->pause;
my $s = IO::Socket::INET->new(PeerAddr => $plain->addr, Timeout => 2);
print $s "PING\r\n" if $s;
ok($s && !IO::Select->new($s)->can_read(1), 'SIGSTOP: no reply');
$plain->resume;
ok($s && IO::Select->new($s)->can_read(10) && <$s> =~ /^\+PONG/,
    'SIGCONT: the reply comes');

# DEBUG SLEEP, sent without waiting: Redis is busy that long

my $t0 = time();
$plain->debug_sleep(2);
is($plain->cmd('PING'), 'PONG', 'answers after DEBUG SLEEP');
cmp_ok(time() - $t0, '>=', 1, 'DEBUG SLEEP held the next command');

# CLIENT KILL TYPE normal: other clients are cut, ours is not

my $victim = IO::Socket::INET->new(PeerAddr => $plain->addr, Timeout => 2);
print $victim "PING\r\n";
<$victim>;
cmp_ok($plain->client_kill_normal, '>=', 1, 'CLIENT KILL TYPE normal');
ok(IO::Select->new($victim)->can_read(5) && !defined <$victim>,
    'a killed client sees the connection closed');

# a snapshot, later data, the snapshot restored (also with AOF on)

$plain->cmd('SET', 'k', 'old');
$plain->save_snapshot('a');
$plain->cmd('SET', 'k', 'new');
$plain->restore_snapshot('a');
is($plain->cmd('GET', 'k'), 'old', 'restored from an older snapshot');

$aof->save_snapshot('a');
$aof->cmd('SET', 'k', 'newer');
$aof->restore_snapshot('a');
$aof->restart;
is($aof->cmd('GET', 'k'), 'aof',
    'restored from a snapshot, AOF on (and kept across a restart)');

# errors are not values

my $e = $plain->cmd('LPUSH', 'k', 'x');
ok(!$e && "$e" =~ /^WRONGTYPE/, 'an error reply is false and has its text');

###############################################################################

# a cluster: 3 masters, 3 replicas

my $c = $x->redis_cluster();
ok($c->is_ok, 'cluster: state ok on every node');
is(scalar($c->masters), 3, 'cluster: 3 masters');
is(scalar($c->replicas), 3, 'cluster: 3 replicas');

# a key is routed to the master of its slot

my $key = '{alice}:index';
my $m = $c->master_of($key);
is($c->cmd($key, 'RPUSH', $key, 'a', 'b'), 2, 'cluster: key written');
is($m->cmd('LLEN', $key), 2, 'cluster: stored on the master of its slot');
my ($other) = grep { $_ != $m } $c->masters;
like($other->cmd('LLEN', $key), qr/^MOVED \d+ /, 'cluster: MOVED elsewhere');

# the master is killed: its replica takes over, the data with it

$m->cmd('WAIT', 1, 5000);
$c->kill_master($m);
my $new = $c->wait_failover($m);
ok($new && $new != $m, 'cluster: failover to another node')
    or diag($c->state_report(1));
is($new && $new->cmd('LLEN', $key), 2, 'cluster: data on the new master');

# a reshard moves slots between two masters

my ($from, $to) = $c->masters;
my $moved = $c->reshard($from, $to, 100);
is($moved, 100, 'cluster: 100 slots resharded');
is($c->cmd($key, 'LLEN', $key), 2, 'cluster: key still reachable');

###############################################################################

# a master, a replica and 3 sentinels

my $g = $x->redis_sentinel();
my $before = $g->master_addr;
is($before, $g->master && $g->master->addr, 'sentinels agree on the master');
$g->master->cmd('SET', 'k', 'v');

my $after = eval { $g->failover() };
ok($after && $after ne $before, 'sentinel failover: a new master reported')
    or diag($@ || $g->report);
is($g->master && $g->master->role, 'master', 'the new master is one');

###############################################################################

# Redis with TLS only

my $tls = $x->redis_tls(8460);
my ($rc, $out) = $tls->cli('PING');
is($out, "PONG\n", 'TLS Redis answers PING through redis-cli --tls');
$s = IO::Socket::INET->new(PeerAddr => $tls->addr, Timeout => 2);
print $s "PING\r\n" if $s;
ok(!($s && IO::Select->new($s)->can_read(3) && (<$s> // '') =~ /PONG/),
    'no plaintext on the TLS port');

# cmd_data: replies as Perl data from a TLS instance too, as cmd gives
# them from a plaintext one

$tls->cmd('HSET', 'h', 'a', '1', 'b', 'ü');
is_deeply($tls->cmd_data('HGETALL', 'h'), [ 'a', '1', 'b', "\xc3\xbc" ],
    'cmd_data over TLS: a flat array (RESP2), strings as bytes');
is_deeply([ $tls->cmd_data('GET', 'none'), $tls->cmd_data('HLEN', 'h') ],
    [ undef, 2 ], 'cmd_data over TLS: null and integer');
my $werr = $tls->cmd_data('INCR', 'h');
ok(ref $werr && !$werr && "$werr" =~ /^WRONGTYPE/,
    'cmd_data over TLS: an error reply is a RedisError');
is($tls->role, 'master', 'role over TLS');
$plain->cmd('HSET', 'h', 'a', '1', 'b', 'ü');
is_deeply($plain->cmd_data('HGETALL', 'h'), $tls->cmd_data('HGETALL', 'h'),
    'cmd_data: the same reply from a plaintext instance');

###############################################################################

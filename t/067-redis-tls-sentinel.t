#!/usr/bin/perl

# TLS to Redis through Sentinel ("pop3_ext_redis S1 S2 S3 sentinel=p3x tls
# wait=1"): a master, its replica and 3 Sentinels that all speak only TLS
# (port 0) and ask for client certificates; replication and the
# Sentinels' own links to the servers and to each other are TLS too.
#
#   - pop3ext adds users and delivers over TLS through the Sentinels;
#   - nginx asks the Sentinels over TLS, finds the master, serves a
#     session: STAT, RETR, DELE, QUIT, the deletion acknowledged with
#     wait=1 (the replica confirmed it over TLS replication) is in Redis;
#   - SENTINEL FAILOVER: nginx hears of it on its TLS subscription to a
#     Sentinel (+switch-master) and follows the new master over TLS
#     without a reload; once the old master replicates the new one, a
#     deletion there is acknowledged and kept;
#   - kill -9 of that master: once the Sentinels agree on its replica,
#     nginx reaches it over TLS without a reload and every acknowledged
#     deletion is there; the killed server comes back as a replica (over
#     TLS), and wait=1 is met again: a deletion acknowledged, a delivery
#     by pop3ext.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_module
    ->has_prog('openssl')->has_prog('redis-sentinel');

###############################################################################

# one CA; the servers and sentinels share a certificate that serves both
# ends (each is a client of the others); the module and pop3ext present a
# client one

$x->make_ca('ts-ca', 'p3x sentinel CA');
my ($ncrt, $nkey) = $x->make_signed('ts-node', 'localhost', 'ts-ca',
    both => 1);
my ($ccrt, $ckey) = $x->make_signed('ts-client', 'p3x client', 'ts-ca');
my $ca = $x->testdir() . '/ts-ca.crt';

my $sn = $x->redis_sentinel(base => 8490, name => 'p3x',
    tls => { cert => $ncrt, key => $nkey, ca => $ca, client_cert => $ccrt,
        client_key => $ckey, auth_clients => 'yes' });

my @TLS = ('--tls-ca', $ca, '--tls-cert', $ccrt, '--tls-key', $ckey);
my $OPTS = 'sentinel=p3x tls wait=1 timeout=3s';
my $SPEC = join(' ', map { $_->addr } $sn->sentinels) . " $OPTS";

$x->run_pop3(
    redis => join(' ', map { $_->conf_addr } $sn->sentinels) . " $OPTS",
    mail => "    pop3_ext_redis_ssl_trusted_certificate $ca;\n"
        . "    pop3_ext_redis_ssl_certificate $ccrt;\n"
        . "    pop3_ext_redis_ssl_certificate_key $ckey;\n",
    server => "        pop3_ext_lock_ttl 3s;\n",
);

$t->plan(41);

###############################################################################

sub p3x {
    my (@args) = @_;
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    return $x->pop3ext(@TLS, @args, { %$o, redis => $SPEC });
}

sub count {
    my ($user) = @_;
    my ($rc, $out, $err) = p3x('stat', $user);
    return $rc == 0 && $out =~ /^(\d+) / ? $1 : "exit $rc: $err";
}

# the error log from $off on matches $re, waited for up to $secs

sub log_since {
    my ($off, $re, $secs) = @_;
    my $deadline = time() + ($secs // 5);
    while (1) {
        return 1 if substr($x->error_log(), $off) =~ $re;
        return 0 if time() > $deadline;
        sleep(0.1);
    }
}

# the processes that logged the module's lines from $off (to $end): a
# hash of their pids

sub worker_pids {
    my ($off, $end) = @_;
    my $log = $x->error_log();
    $log = substr($log, $off, ($end // length $log) - $off);
    return map { /\[\w+\] (\d+)#\d+: .*pop3_ext/ ? ($1 => 1) : () }
        split /\n/, $log;
}

# the module's last lines of the error log, for diag()

sub log_tail {
    my @l = grep { /pop3_ext/ } $x->log_lines();
    return join("\n", @l > 10 ? @l[-10 .. -1] : @l);
}

# log in, retrying for $secs while the Sentinels' choice settles: the
# client and PASS's reply

sub login {
    my ($u, $secs) = @_;
    my $deadline = time() + ($secs // 0);
    while (1) {
        my $s = $x->client();
        $s->cmd("USER $u");
        my $r = $s->cmd("PASS pw-$u", 20) // '';
        return ($s, $r) if $r =~ /^\+OK/ || time() > $deadline;
        $s->cmd('QUIT');
        sleep(0.5);
    }
}

# a session that deletes message $num: login, STAT ($count messages),
# RETR (body "message $body"), DELE, QUIT; 5 tests

sub delete_one {
    my ($what, $u, $count, $num, $body, $secs) = @_;
    my ($s, $r) = login($u, $secs);
    like($r, qr/^\+OK/, "$what: login")
        or diag(log_tail());
    like($s->cmd('STAT') // '', qr/^\+OK $count \d+/, "$what: STAT");
    my ($rr, $b) = $s->cmd_multi("RETR $num");
    ok(($rr // '') =~ /^\+OK/ && ($b // '') =~ /^message $body\r$/m,
        "$what: RETR");
    like($s->cmd("DELE $num") // '', qr/^\+OK/, "$what: DELE");
    like($s->cmd('QUIT') // '', qr/^\+OK/, "$what: QUIT acknowledged");
}

my @servers = $sn->servers;
my $first = $sn->master_addr;
is($first, $servers[0]->addr, 'the sentinels agree on the master over TLS');

# only TLS: a plaintext PING to a sentinel and to the master gets no PONG

my $plain = 0;
for my $r (($sn->sentinels)[0], $servers[0]) {
    my ($rc, $out) = $x->run_cmd([ $x->find_prog('redis-cli') // 'redis-cli',
        '-h', '127.0.0.1', '-p', $r->port, 'PING' ], { timeout => 10 });
    $plain++ if $out =~ /PONG/;
}
is($plain, 0, 'no plaintext: sentinel and master speak only TLS');

is($servers[1]->info('replication')->{master_link_status}, 'up',
    'the replica replicates over TLS');

# pop3ext through the Sentinels, wait=1

my $ok = 1;
my ($rc, $out, $err) = p3x('user', 'add', 'alice', { stdin => "pw-alice\n" });
$ok &&= $rc == 0 or diag("user add: $rc $err");
for my $m (1 .. 4) {
    ($rc, $out, $err) = p3x('deliver', 'alice',
        { stdin => "Subject: $m\n\nmessage $m\n" });
    $ok &&= $rc == 0 or diag("deliver $m: $rc $err");
}
ok($ok, 'pop3ext: a user and deliveries over Sentinel and TLS, wait=1');
is(count('alice'), 4, 'pop3ext: stat');

ok($x->wait_for_log(qr/master is \Q$first\E/, 10),
    'nginx found the master through the sentinels');

# a session: the deletion acknowledged with wait=1 is in Redis

delete_one('master', 'alice', 4, 1, 1);
is(count('alice'), 3, 'master: the deletion is in Redis');

# a planned failover: nginx follows, over TLS, without a reload

my $off = length $x->error_log();
my %workers = worker_pids(0, $off);

my $second = eval { $sn->failover(60) };
ok($second && $second ne $first, 'SENTINEL FAILOVER: a new master')
    or diag($@ || $sn->report());
$second //= '';

# the old master is converted to a replica of the new one (over TLS)
# only some seconds after the switch: until then wait=1 cannot be met

my ($old) = grep { $_->addr eq $first } @servers;
ok($sn->wait_replica($old, 60),
    'failover: the old master replicates the new one over TLS')
    or diag($sn->report());

delete_one('failover', 'alice', 3, 1, 2, 30);
ok(log_since($off, qr/sentinel: master "p3x" switched to \Q$second\E/),
    'failover: nginx heard of the switch from its TLS subscription');
ok(log_since($off, qr/master is \Q$second\E/),
    'failover: nginx names the new master');
is(count('alice'), 2, 'failover: the deletion is in Redis');

# kill -9 of the master: its replica takes over

my ($victim) = grep { $_->addr eq $second } @servers;
my ($other) = grep { $_->addr ne $second } @servers;
$off = length $x->error_log();
$victim->stop('KILL') if $victim;

my $third = $sn->wait_for(sub {
    my $a = $sn->master_addr;
    defined $a && $a ne $second && $sn->agree($a) ? $a : undef;
}, 60);
ok($third, 'kill -9: the sentinels agree on the replica promoted')
    or diag($sn->report());
$third //= '';
is($third, $other->addr, 'kill -9: the new master is the other server');
is($other->role // '', 'master', 'kill -9: it says so (ROLE over TLS)');

# the acknowledged deletions are there; with no replica left, nothing is
# deleted until it is back (wait=1)

my ($s, $r) = login('alice', 30);
like($r, qr/^\+OK/, 'kill -9: login, no reload')
    or diag(log_tail());
like($s->cmd('STAT') // '', qr/^\+OK 2 \d+/,
    'kill -9: the acknowledged deletions survived');
my ($rr, $body) = $s->cmd_multi('RETR 1');
ok(($rr // '') =~ /^\+OK/ && ($body // '') =~ /^message 3\r$/m,
    'kill -9: RETR of the first one left');
like($s->cmd('QUIT') // '', qr/^\+OK/, 'kill -9: QUIT');
$s->close();
ok(log_since($off, qr/master is \Q$third\E/),
    'kill -9: nginx names the new master');

# the killed server back: the sentinels make it a replica, over TLS

$victim->start() if $victim;
ok($victim && $sn->wait_replica($victim, 60),
    'the killed master is back, as a replica over TLS')
    or diag($sn->report());

delete_one('replica back', 'alice', 2, 1, 3, 30);
is(count('alice'), 1, 'replica back: the deletion is in Redis');

($rc, $out, $err) = p3x('deliver', 'alice',
    { stdin => "Subject: 5\n\nmessage 5\n" });
is($rc, 0, 'pop3ext: a delivery to the new master, wait=1') or diag($err);
is(count('alice'), 2, 'pop3ext: stat after the failovers');

my %later = worker_pids($off);
ok(%workers && !grep({ !$workers{$_} } keys %later),
    'the same worker processes all along')
    or diag('before: ' . join(' ', sort keys %workers)
        . '; after: ' . join(' ', sort keys %later));
ok(!log_since(0, qr/reconfiguring|\[emerg\]/, 0), 'no reload, no emerg');

###############################################################################

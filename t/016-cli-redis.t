#!/usr/bin/perl

# pop3ext over every Redis topology of the specification (docs/redis.md):
#
#   - a Redis Cluster of 3 masters and 3 replicas: users whose mailboxes
#     land on all three masters are added, delivered to (one by one and
#     several at once) and counted; a delivery id stores a message once,
#     also across masters; "user del" leaves no key of the mailbox on any
#     master; a delivery made right after kill -9 of the mailbox's master
#     succeeds once its replica took over, once;
#   - wait=1 on the cluster: exit 0 with replicas; with the replica of the
#     mailbox's master stopped, 75 within seconds and a message about
#     replicas (the write stays on the master); with the replica back and
#     in sync, the same delivery id exits 0 and the mailbox has one copy;
#   - Sentinels: add, deliver, stat; the same specification after a
#     failover reaches the new master; a dead first Sentinel is skipped;
#     an unknown master name is a temporary failure (75);
#   - TLS: the right CA works; a wrong CA, no CA (the system's), or a
#     --tls-name the certificate does not bear is 75 with the reason; a
#     Redis that requires client certificates works with --tls-cert and
#     --tls-key, and is 75 without; the TLS options' usage (64) and
#     unusable files (78).
#
# No nginx runs here.

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

my $t = Test::Nginx->new();
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->has_prog('openssl');
$t->has_daemon('redis-cli')->has_daemon('redis-sentinel');

# the end checks read nginx's error log: an empty one, nginx never runs

$t->write_file('error.log', '');

$t->plan(42 + 14 + 17);

###############################################################################

# pop3ext against a specification: (exit code, stdout, stderr)

sub p3x {
    my ($spec, @args) = @_;
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    return $x->pop3ext(@args, { timeout => 60, %$o, redis => $spec });
}

# "COUNT OCTETS" of pop3ext stat: the count, or "exit N: stderr"

sub count {
    my ($spec, $user, @opts) = @_;
    my ($rc, $out, $err) = p3x($spec, @opts, 'stat', $user);
    return $rc == 0 && $out =~ /^(\d+) \d+\n\z/ ? $1 : "exit $rc: $err";
}

sub message {
    my ($tag) = @_;
    return "From: test\@example.org\nSubject: $tag\n\nbody of $tag\n";
}

# every key matching $pattern on a node (SCAN)

sub scan_keys {
    my ($node, $pattern) = @_;
    my ($cursor, @keys) = (0);
    do {
        my $r = $node->cmd('SCAN', $cursor, 'MATCH', $pattern,
            'COUNT', 1000);
        die $node->name . ": SCAN failed: $r\n" unless ref $r eq 'ARRAY';
        $cursor = $r->[0];
        push @keys, @{$r->[1]};
    } while ($cursor ne '0');
    return @keys;
}

# the replication of a master, from its INFO: (its offset, the offsets of
# its replicas that are online)

sub replication {
    my ($master) = @_;
    my $i = $master->info('replication');
    my @online = map { /state=online/ && /offset=(\d+)/ ? $1 : () }
        map { $i->{$_} } grep { /^slave\d+$/ } keys %$i;
    return ($i->{master_repl_offset} // -1, @online);
}

# wait up to $timeout s until $n replicas of $master are online and have
# everything it wrote

sub wait_synced {
    my ($master, $n, $timeout) = @_;
    my $deadline = time() + ($timeout // 60);
    while (time() < $deadline) {
        my ($off, @online) = eval { replication($master) };
        return 1 if defined $off
            && (grep { $_ == $off } @online) >= ($n // 1);
        sleep(0.1);
    }
    return 0;
}

my ($rc, $out, $err);

###############################################################################

# a cluster: 3 masters, 3 replicas; every node is a seed

my $c = $x->redis_cluster(base => 8400);
my $CL = join(' ', map { $_->addr } $c->nodes) . ' cluster';
my $CLW = "$CL wait=1";

my @masters = $c->masters;

# the cluster is ready once its replicas are attached, not yet once they
# have synchronised (Redis 7 waits repl-diskless-sync-delay, 5 s, before
# the first transfer), and WAIT counts only replicas that have

for my $m (@masters) {
    wait_synced($m, 1) or die $m->name . ": no replica in sync:\n"
        . $c->state_report(1) . "\n";
}

# users whose mailboxes land on each of the three masters

my @users = map { sprintf('cu%02d', $_) } 1 .. 24;
my (%on, %users_of);
for my $u (@users) {
    my $m = $c->master_of($x->mbox_key($u, 'INDEX'));
    $on{$u} = $m;
    push @{$users_of{$m->port}}, $u;
}
is(scalar(grep { @{$users_of{$_->port} || []} >= 4 } @masters), 3,
    'cluster: the mailboxes are spread over all three masters');

my @bad = grep { (p3x($CL, 'user', 'add', $_, { stdin => "pw-$_\n" }))[0]
    != 0 } @users;
is("@bad", '', 'cluster: user add of every user');

@bad = grep { ($on{$_}->cmd('EXISTS', $x->user_key($_)) // 0) != 1 }
    @users;
is("@bad", '', 'cluster: each user record is on its master');

@bad = grep { (p3x($CL, 'deliver', $_, { stdin => message("one $_") }))[0]
    != 0 } @users;
is("@bad", '', 'cluster: deliver to every user');

# one of each master, delivered to at once

my ($ua, $ub, $uc) = map { $users_of{$_->port}[0] } @masters;
($rc, undef, $err) = p3x($CL, 'deliver', $ua, $ub, $uc,
    { stdin => message('to three') });
is($rc, 0, 'cluster: deliver to users on three masters at once')
    or diag($err);

my %want = map { $_ => 1 } @users;
$want{$_} = 2 for $ua, $ub, $uc;
my %got = map { $_ => count($CL, $_) } @users;
is_deeply(\%got, \%want, 'cluster: stat of every user');

@bad = grep { ($on{$_}->cmd('LLEN', $x->mbox_key($_, 'INDEX')) // -1)
    != $want{$_} } @users;
is("@bad", '', 'cluster: each index is on its master');

# a delivery id stores a message once

($rc, undef, $err) = p3x($CL, 'deliver', '--id', 'dup-1', $ua,
    { stdin => message('dup') });
is($rc, 0, 'cluster: deliver --id') or diag($err);
($rc, undef, $err) = p3x($CL, 'deliver', '--id', 'dup-1', $ua,
    { stdin => message('dup') });
is($rc, 0, 'cluster: deliver --id again') or diag($err);
is(count($CL, $ua), 3, 'cluster: the same --id stored once');

# and once in each mailbox of users on three masters

for (1 .. 2) {
    ($rc, undef, $err) = p3x($CL, 'deliver', '--id', 'dup-3', $ua, $ub, $uc,
        { stdin => message('dup three') });
    is($rc, 0, "cluster: deliver --id to three masters, time $_")
        or diag($err);
}
is(join(' ', map { count($CL, $_) } $ua, $ub, $uc), '4 3 3',
    'cluster: the same --id stored once in each mailbox');

# user del: no key of the mailbox is left, wherever it is

for my $u ($ua, $ub, $uc) {
    my $m = $on{$u};
    my @before = scan_keys($m, "*{$u}*");
    cmp_ok(scalar(@before), '>=', 4,
        "cluster: keys of $u on its master before user del");

    ($rc, undef, $err) = p3x($CL, 'user', 'del', $u);
    is($rc, 0, "cluster: user del $u") or diag($err);

    my @left = map { scan_keys($_, "*{$u}*") } @masters;
    is("@left", '', "cluster: no key of $u left on any master");
}

($rc) = p3x($CL, 'stat', $ua);
is($rc, 67, 'cluster: stat of a deleted user: 67');
is(count($CL, $users_of{$on{$ua}->port}[1]), 1,
    'cluster: another user on the same master kept');

###############################################################################

# wait=1: the replica of the mailbox's master confirms every write

my $uw = $users_of{$masters[0]->port}[2];
my $mw = $on{$uw};

($rc, undef, $err) = p3x($CLW, 'deliver', $uw, { stdin => message('w1') });
is($rc, 0, 'wait=1: deliver confirmed by the replica') or diag($err);

($rc, undef, $err) = p3x($CLW, 'user', 'add', $uw, { stdin => "pw2\n" });
is($rc, 0, 'wait=1: user add confirmed by the replica') or diag($err);

# a delivery to users on three masters: a WAIT on each

my @three = map { $users_of{$_->port}[3] } @masters;
($rc, undef, $err) = p3x($CLW, 'deliver', @three,
    { stdin => message('w three') });
is($rc, 0, 'wait=1: deliver to three masters, each confirmed') or diag($err);

# the replica of that master, stopped

my ($rw) = grep {
    my $r = $_->cmd('ROLE');
    ref $r eq 'ARRAY' && $r->[0] eq 'slave' && $r->[2] == $mw->port
} $c->replicas;
die "no replica of " . $mw->name . ":\n" . $c->state_report . "\n"
    unless $rw;

my $before = count($CL, $uw);
$rw->stop('TERM');

my $t0 = time();
($rc, undef, $err) = p3x($CLW, 'deliver', '--id', 'wait-1', $uw,
    { stdin => message('w2') });
my $took = time() - $t0;
ok($rc == 75 && $err =~ /replica/,
    'wait=1, the replica stopped: 75, a message about replicas')
    or diag("$rc $err");
cmp_ok($took, '<', 15, 'wait=1: the failure comes within seconds');
is(count($CL, $uw), $before + 1, 'wait=1: the write stayed on the master');

# WAIT goes only where the command wrote: a mailbox on another master

($rc, undef, $err) = p3x($CLW, 'deliver', $three[1],
    { stdin => message('w other') });
is($rc, 0, 'wait=1: a mailbox on another master, confirmed') or diag($err);
($rc, undef, $err) = p3x($CLW, 'deliver', @three,
    { stdin => message('w three again') });
is($rc, 75, 'wait=1: three masters, one without its replica: 75')
    or diag($err);

# the replica back and in sync: the same delivery id, one copy

$rw->start();
ok(wait_synced($mw, 1), 'wait=1: the replica is back in sync')
    or diag($c->state_report(1));

($rc, undef, $err) = p3x($CLW, 'deliver', '--id', 'wait-1', $uw,
    { stdin => message('w2') });
is($rc, 0, 'wait=1: the same --id, confirmed') or diag($err);
is(count($CL, $uw), $before + 1, 'wait=1: one copy');

###############################################################################

# kill -9 of a mailbox's master: its replica takes over, a delivery made
# meanwhile succeeds, once

my $uk = $users_of{$masters[1]->port}[2];
my $mk = $on{$uk};

# what is there before is on the replica (wait=1)

($rc, undef, $err) = p3x($CLW, 'deliver', $uk, { stdin => message('k1') });
is($rc, 0, 'failover: deliver before, confirmed by the replica')
    or diag($err);
$before = count($CL, $uk);

$c->kill_master($mk);

my $tries = 0;
$t0 = time();
do {
    $tries++;
    ($rc, undef, $err) = p3x($CL, 'deliver', '--id', 'kill-1', $uk,
        { stdin => message('k2') });
    sleep(0.2) if $rc != 0;
} while ($rc != 0 && time() - $t0 < 15);
is($rc, 0, 'failover: the delivery succeeds once the replica took over')
    or diag("$tries tries, last: $rc $err\n" . $c->state_report(1));
is($err, '', 'failover: what was recovered from is not printed');

my $new = $c->wait_failover($mk);
ok($new && $new != $mk, 'failover: a replica is master')
    or diag($c->state_report(1));

($rc, undef, $err) = p3x($CL, 'deliver', '--id', 'kill-1', $uk,
    { stdin => message('k2') });
is($rc, 0, 'failover: the same --id again') or diag($err);
is(count($CL, $uk), $before + 1, 'failover: exactly one copy');
is($new && $new->cmd('LLEN', $x->mbox_key($uk, 'INDEX')), $before + 1,
    'failover: on the new master');

###############################################################################

# Sentinels: a master, a replica, 3 Sentinels watching them

my $g = $x->redis_sentinel(base => 8450, name => 'p3x');
my @sentinels = $g->sentinels;
my $SE = join(' ', map { $_->addr } @sentinels) . ' sentinel=p3x';

($rc, undef, $err) = p3x($SE, 'user', 'add', 'sam', { stdin => "pw\n" });
is($rc, 0, 'sentinel: user add') or diag($err);
($rc, undef, $err) = p3x($SE, 'deliver', 'sam', { stdin => message('s1') });
is($rc, 0, 'sentinel: deliver') or diag($err);
is(count($SE, 'sam'), 1, 'sentinel: stat');
my $old = $g->master;
is($old->cmd('LLEN', $x->mbox_key('sam', 'INDEX')), 1,
    'sentinel: on the master');

# a failover; the same specification reaches the new master

wait_synced($old, 1) or diag('sentinel: the replica is not in sync');
my $addr = eval { $g->failover() };
ok($addr && $addr ne $old->addr, 'sentinel: failover') or diag($@);

is(count($SE, 'sam'), 1, 'sentinel: stat after the failover');
($rc, undef, $err) = p3x($SE, 'deliver', 'sam', { stdin => message('s2') });
is($rc, 0, 'sentinel: deliver after the failover') or diag($err);
($rc, undef, $err) = p3x($SE, 'user', 'add', 'sue', { stdin => "pw\n" });
is($rc, 0, 'sentinel: user add after the failover') or diag($err);
my $gm = $g->master;
ok($gm && $gm != $old
    && $gm->cmd('LLEN', $x->mbox_key('sam', 'INDEX')) == 2
    && $gm->cmd('EXISTS', $x->user_key('sue')) == 1,
    'sentinel: written to the new master');

# the first Sentinel of the list is dead

$sentinels[0]->stop('KILL');
($rc, undef, $err) = p3x($SE, 'deliver', 'sam', { stdin => message('s3') });
is($rc, 0, 'sentinel: deliver with the first Sentinel dead') or diag($err);
is($err, '', 'sentinel: the dead Sentinel is not reported');
is(count($SE, 'sam'), 3, 'sentinel: stat with the first Sentinel dead');

# a master no Sentinel knows

($rc, undef, $err) = p3x(join(' ', map { $_->addr } @sentinels[1, 2])
    . ' sentinel=nosuch', 'stat', 'sam');
ok($rc == 75 && $err =~ /"nosuch"/, 'sentinel: unknown master name: 75')
    or diag("$rc $err");
my %seen;
is(join('', grep { $seen{$_}++ } split /^/, $err), '',
    'sentinel: each reason said once');

###############################################################################

# TLS: one Redis that does not ask for client certificates, one that does;
# each has a CA of its own

my $r1 = $x->redis_tls(8460, auth_clients => 'no');
my $r2 = $x->redis_tls(8461, auth_clients => 'yes');
my ($ca1, $ca2) = ($r1->{tls}{ca}, $r2->{tls}{ca});
my $T1 = '127.0.0.1:' . $r1->port . ' tls';
my $T2 = '127.0.0.1:' . $r2->port . ' tls';

($rc, undef, $err) = p3x($T1, '--tls-ca', $ca1, 'user', 'add', 'tina',
    { stdin => "pw\n" });
is($rc, 0, 'tls: user add') or diag($err);
($rc, undef, $err) = p3x($T1, '--tls-ca', $ca1, 'deliver', 'tina',
    { stdin => message('t1') });
is($rc, 0, 'tls: deliver') or diag($err);
is(count($T1, 'tina', '--tls-ca', $ca1), 1, 'tls: stat');
is($r1->cmd('LLEN', $x->mbox_key('tina', 'INDEX')), 1, 'tls: in Redis');

# the CA from the environment

($rc, $out) = p3x($T1, 'stat', 'tina',
    { env => { POP3EXT_REDIS_CA => $ca1 } });
ok($rc == 0 && $out =~ /^1 /, 'tls: the CA from POP3EXT_REDIS_CA')
    or diag($rc);

# a wrong CA, or none (the system's CAs do not know ours)

($rc, undef, $err) = p3x($T1, '--tls-ca', $ca2, 'stat', 'tina');
ok($rc == 75 && $err =~ /certificate\ not\ verified\ \(
        (?:self-signed\ certificate\ in\ certificate\ chain
        |unable\ to\ get\ local\ issuer\ certificate)/x,
    'tls: a wrong CA: 75, the certificate not verified') or diag("$rc $err");
($rc, undef, $err) = p3x($T1, 'stat', 'tina');
ok($rc == 75 && $err =~ /certificate not verified/,
    'tls: the system CAs: 75') or diag("$rc $err");

# the name the certificate must bear

($rc, undef, $err) = p3x($T1, '--tls-ca', $ca1,
    '--tls-name', 'nosuch.example', 'stat', 'tina');
ok($rc == 75 && $err
    =~ /certificate not verified \(hostname mismatch, name "nosuch\.example"/,
    'tls: --tls-name not in the certificate: 75') or diag("$rc $err");
is(count($T1, 'tina', '--tls-ca', $ca1, '--tls-name', 'localhost'), 1,
    'tls: --tls-name of the certificate');

# client certificates required

my @cc = ('--tls-cert', $r2->{tls}{client_cert},
    '--tls-key', $r2->{tls}{client_key});
($rc, undef, $err) = p3x($T2, '--tls-ca', $ca2, @cc, 'user', 'add', 'tom',
    { stdin => "pw\n" });
is($rc, 0, 'tls: user add with a client certificate') or diag($err);
($rc, undef, $err) = p3x($T2, '--tls-ca', $ca2, @cc, 'deliver', 'tom',
    { stdin => message('t2') });
is($rc, 0, 'tls: deliver with a client certificate') or diag($err);
is(count($T2, 'tom', '--tls-ca', $ca2, @cc), 1,
    'tls: stat with a client certificate');
($rc, undef, $err) = p3x($T2, '--tls-ca', $ca2, 'stat', 'tom');
is($rc, 75, 'tls: no client certificate: 75') or diag("$rc $err");

# usage and files

($rc, undef, $err) = p3x('127.0.0.1:' . $r1->port, '--tls-ca', $ca1, 'stat',
    'tina');
is($rc, 64, 'tls: --tls-ca without "tls": 64') or diag($err);
($rc, undef, $err) = p3x($T2, '--tls-ca', $ca2, '--tls-cert',
    $r2->{tls}{client_cert}, 'stat', 'tom');
is($rc, 64, 'tls: --tls-cert without --tls-key: 64') or diag($err);
($rc, undef, $err) = p3x($T1, '--tls-ca', $x->testdir . '/nonexistent.crt',
    'stat', 'tina');
ok($rc == 78 && $err =~ /nonexistent\.crt/, 'tls: a CA file missing: 78')
    or diag("$rc $err");
($rc, undef, $err) = p3x($T1, '--tls-ca', $r1->{tls}{key}, 'stat', 'tina');
is($rc, 78, 'tls: a CA file that is no certificate: 78') or diag($err);

###############################################################################

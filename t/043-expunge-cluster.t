#!/usr/bin/perl

# pop3ext expunge --all and the quota commands over a Redis Cluster
# (issue 10): users and mailboxes on every master, found by SCAN on each;
# a maildrop a session holds (through nginx, on the same cluster) is left
# and reported (75), the others expunged; after the session's QUIT a
# second run finishes it; the usage stays exact on every master.

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

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_module;

my $cluster = $x->redis_cluster(base => 8400, replicas => 0);
my @masters = $cluster->masters;

my $SPEC = join(' ', map { $_->addr } @masters[0, 1]) . ' cluster';
my $CONF_SPEC = join(' ', map { $_->conf_addr } @masters[0, 1]) . ' cluster';

$x->run_pop3(redis => $CONF_SPEC);

$t->plan(12);

my $DAY = 86400 * 1000;
my @users = map { "user$_" } 1 .. 12;

sub cli {
    return $x->pop3ext(@_, { redis => $SPEC });
}

sub key {
    my ($user, $suffix) = @_;
    return $x->mbox_key($user, $suffix);
}

sub uids {
    my ($user) = @_;
    my $k = key($user, 'INDEX');
    my $e = $cluster->cmd($k, 'LRANGE', $k, 0, -1);
    return map { (split / /)[0] } @{ref $e eq 'ARRAY' ? $e : []};
}

sub usage_ok {
    my ($user) = @_;
    my $k = key($user, 'INDEX');
    my $e = $cluster->cmd($k, 'LRANGE', $k, 0, -1);
    my $octets = 0;
    $octets += (/ (\d+)$/)[0] for @$e;
    my $m = key($user, 'META');
    my $u = $cluster->cmd($m, 'HMGET', $m, 'messages', 'octets');
    return join(' ', map { $_ // 'undef' } @$u) eq scalar(@$e) . " $octets";
}

for my $u (@users) {
    my ($rc, undef, $err) = $x->pop3ext('user', 'add', $u,
        { stdin => "pw\n", redis => $SPEC });
    die "user add $u: $err" if $rc;

    for my $n (1, 2) {
        ($rc, undef, $err) = $x->pop3ext('deliver', $u,
            { stdin => "Subject: $n\n\n$n\n", redis => $SPEC });
        die "deliver $u: $err" if $rc;
    }

    # the first one 40 days old
    my $tk = key($u, 'TIME');
    $cluster->cmd($tk, 'HSET', $tk, (uids($u))[0],
        int(time() * 1000 - 40 * $DAY));
}

my %on = map { $cluster->master_of(key($_, 'INDEX'))->port => 1 } @users;
ok(keys(%on) >= 2, 'the mailboxes are on ' . keys(%on) . ' masters');

# user1 is held by a session

my $s = $x->session(port(8110), 'user1', 'pw');
ok($s, 'a session holds user1 through nginx on the cluster');

my ($rc, $out, $err) = cli('expunge', '--older-than', '30', '--all');
is($rc, 75, 'expunge --all with a maildrop in use: 75');
like($err, qr/mailbox "user1" is in use/, 'that one is named');
is(join(',', map { scalar(uids($_)) } @users), join(',', 2, (1) x 11),
    'every other mailbox, on every master, lost its old message');
is(scalar(grep { usage_ok($_) } @users), 12, 'the usage exact everywhere');

$s->cmd_ok('QUIT');

($rc, $out, $err) = cli('expunge', '--older-than', '30', '--all');
is($rc, 0, 'expunge --all after the QUIT') or diag($err);
like($out, qr/^user1: 1 messages \(\d+ octets\) older than 30 days removed\n\z/,
    'only user1 had something left to do');
is(scalar(uids('user1')), 1, 'user1 expunged');

# the quota commands on the cluster

($rc) = cli('quota', 'set', 'user7', '--messages', '1');
($rc, $out) = cli('quota', 'get', 'user7');
like($out, qr/^messages: 1 \/ 1 \(100%\) \[mailbox\]$/m,
    'quota get on the cluster');
($rc) = $x->pop3ext('deliver', 'user7',
    { stdin => "Subject: x\n\nx\n", redis => $SPEC });
is($rc, 75, 'a full mailbox on the cluster: 75');

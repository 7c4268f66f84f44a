#!/usr/bin/perl

# Redis Cluster redirections in the metrics: a maildrop's slot is moved
# to another master while a session is logged in.  A message body moved
# first, the slot still migrating, makes the session's GETRANGE get ASK;
# the slot moved whole, the next GETRANGE gets MOVED.  Each is counted
# once, at the node that sent it; the session is served throughout, and
# both masters have rows of their own.

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

my $t = Test::Nginx->new()->has(qw/mail http/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->has_prog('redis-cli');

my $cluster = $x->redis_cluster(base => 8400, replicas => 0);
my @masters = $cluster->masters;
my $SPEC = join(' ', map { $_->addr } @masters) . ' cluster';

$x->run_pop3(
    redis => join(' ', map { $_->conf_addr } @masters)
        . ' cluster connections=1',
    main => <<'EOF',
http {
    %%TEST_GLOBALS_HTTP%%
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_8180%%;
        location = /metrics { pop3_ext_metrics cl; }
    }
}
EOF
    mail => "    pop3_ext_metrics_zone cl 64k;\n"
        . "    pop3_ext_lock_refresh 10s;\n",
);

my $msg = "Subject: moved\r\n\r\nacross the cluster\r\n";
my ($rc, $out, $err) = $x->pop3ext('user', 'add', 'alice',
    { stdin => "secret\n", redis => $SPEC });
die "user add: $err$out\n" if $rc;
($rc, $out, $err) = $x->pop3ext('deliver', 'alice',
    { stdin => $msg, redis => $SPEC });
die "deliver: $err$out\n" if $rc;

$t->plan(12);

sub metrics {
    return http_get('/metrics', PeerAddr => '127.0.0.1:' . port(8180)) // '';
}

sub redirections {
    my ($node, $type) = @_;
    my $addr = $node->addr;
    return metrics() =~ /^pop3ext_redis_redirections_total\{node="\Q$addr\E",type="$type"\} (\d+)$/m
        ? $1 : undef;
}

###############################################################################

my $key = $x->mbox_key('alice', 'INDEX');
my $slot = $cluster->slot_of($key);
my $from = $cluster->master_of($key);
my ($to) = grep { $_->port != $from->port } @masters;

my $s = $x->session(port(8110), 'alice', 'secret');
ok($s, 'logged in');
my $uid = ($s->cmd('UIDL 1') // '') =~ /^\+OK 1 (\S+)/ ? $1 : '';
ok(length $uid, 'UID of message 1');

# the slot migrating, the body alone moved: ASK

my ($from_id, $to_id) = map { $cluster->node_id($_) } $from, $to;
is($to->cmd('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $from_id), 'OK',
    'importing');
is($from->cmd('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $to_id), 'OK',
    'migrating');

my $body = $x->mbox_key('alice', 'MSG') . $uid;
is($from->cmd('MIGRATE', '127.0.0.1', $to->port, '', 0, 5000,
    'KEYS', $body), 'OK', 'the body moved');

my (undef, $got) = $s->cmd_multi('RETR 1');
is($got, $msg, 'RETR during the migration');

# the rest moved, the slot given to the other master: MOVED

my $keys = $from->cmd('CLUSTER', 'GETKEYSINSLOT', $slot, 1000);
$from->cmd('MIGRATE', '127.0.0.1', $to->port, '', 0, 5000, 'KEYS', @$keys)
    if ref $keys eq 'ARRAY' && @$keys;
$_->cmd('CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id) for $to, $from,
    grep { $_->port != $from->port && $_->port != $to->port } @masters;
ok($cluster->wait_ok(), 'cluster ok, slot moved');

(undef, $got) = $s->cmd_multi('RETR 1');
is($got, $msg, 'RETR after the move');
like($s->cmd('QUIT') // '', qr/^\+OK bye, 1 messages left/,
    'QUIT commits at the new master');

is(redirections($from, 'ask'), 1, 'one ASK, counted at the old master');
is(redirections($from, 'moved'), 1, 'one MOVED, counted at the old master');
like(metrics(), qr/^pop3ext_redis_requests_total\{node="\Q${\$to->addr}\E",outcome="ok"\} [1-9]/m,
    'the new master has requests of its own');

###############################################################################

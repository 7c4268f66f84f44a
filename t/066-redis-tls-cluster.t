#!/usr/bin/perl

# TLS to a Redis Cluster ("pop3_ext_redis ... cluster tls wait=1"): every
# node speaks only TLS, its cluster bus and replication too, and asks for
# client certificates.
#
#   - pop3ext delivers over TLS to mailboxes on each of the 3 masters;
#   - nginx follows the slot map (the addresses CLUSTER SLOTS gives are
#     TLS ports) and serves each mailbox: STAT, RETR, DELE, QUIT, the
#     deletion acknowledged with wait=1 is in Redis;
#   - a master killed: once its replica is promoted, nginx reaches it over
#     TLS without a reload, and the mailbox holds what was acknowledged.

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
    ->has_prog('openssl');

###############################################################################

# one CA; the nodes' certificate serves both ends (a node is a client on
# the bus and of its master); the module and pop3ext present a client one

$x->make_ca('tc-ca', 'p3x cluster CA');
my ($ncrt, $nkey) = $x->make_signed('tc-node', 'localhost', 'tc-ca',
    both => 1);
my ($ccrt, $ckey) = $x->make_signed('tc-client', 'p3x client', 'tc-ca');
my $ca = $x->testdir() . '/tc-ca.crt';

require Test::Nginx::POP3Ext::RedisCluster;
my $cluster = Test::Nginx::POP3Ext::RedisCluster->new($x, base => 8470,
    tls => { cert => $ncrt, key => $nkey, ca => $ca, client_cert => $ccrt,
        client_key => $ckey, auth_clients => 'yes' })->start();
my @masters = $cluster->masters;

my @TLS = ('--tls-ca', $ca, '--tls-cert', $ccrt, '--tls-key', $ckey);
my $SPEC = join(' ', map { $_->addr } @masters[0, 1])
    . ' cluster tls wait=1 timeout=3s';

$x->run_pop3(
    redis => join(' ', map { $_->conf_addr } @masters[0, 1])
        . ' cluster tls wait=1 timeout=3s',
    mail => "    pop3_ext_redis_ssl_trusted_certificate $ca;\n"
        . "    pop3_ext_redis_ssl_certificate $ccrt;\n"
        . "    pop3_ext_redis_ssl_certificate_key $ckey;\n",
    server => "        pop3_ext_lock_ttl 3s;\n",
);

$t->plan(3 + 6 * 3 + 5);

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

# one user whose mailbox is on each master

my (%user_on, @users);
for my $n (1 .. 200) {
    my $m = $cluster->master_of($x->mbox_key("t$n", 'INDEX')) or next;
    next if $user_on{$m->port};
    $user_on{$m->port} = "t$n";
    push @users, "t$n";
    last if @users == 3;
}
is(scalar @users, 3, 'a mailbox on each master');

my $ok = 1;
for my $u (@users) {
    my ($rc, $out, $err) = p3x('user', 'add', $u, { stdin => "pw-$u\n" });
    $ok &&= $rc == 0 or diag("user add $u: $rc $err");
    for my $m (1, 2) {
        ($rc, $out, $err) = p3x('deliver', $u,
            { stdin => "Subject: $m\n\nmessage $m of $u\n" });
        $ok &&= $rc == 0 or diag("deliver $u: $rc $err");
    }
}
ok($ok, 'pop3ext: users and deliveries over TLS with wait=1');
is(join(' ', map { count($_) } @users), '2 2 2', 'pop3ext: stat');

# log in, retrying while the cluster settles after a failover: the client
# and PASS's reply

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

for my $u (@users) {
    my ($s, $r) = login($u);
    like($r, qr/^\+OK/, "$u: login");
    like($s->cmd('STAT') // '', qr/^\+OK 2 \d+/, "$u: STAT");
    my ($rr, $body) = $s->cmd_multi('RETR 1');
    ok(($rr // '') =~ /^\+OK/ && ($body // '') =~ /^message 1 of \Q$u\E\r$/m,
        "$u: RETR");
    like($s->cmd('DELE 1') // '', qr/^\+OK/, "$u: DELE");
    like($s->cmd('QUIT') // '', qr/^\+OK/, "$u: QUIT");
    is(count($u), 1, "$u: the deletion is in Redis");
}

# a master killed: its replica, promoted, is reached over TLS

my $victim = $cluster->master_of($x->mbox_key($users[0], 'INDEX'));
$cluster->kill_master($victim);
my $new = $cluster->wait_failover($victim, 60);
ok($new, 'failover: a replica promoted')
    or diag($cluster->state_report(1));

my ($s, $r) = login($users[0], 30);
like($r, qr/^\+OK/, 'failover: login, no reload')
    or diag(join "\n", ($x->log_lines())[-10 .. -1]);
like($s->cmd('STAT') // '', qr/^\+OK 1 \d+/,
    'failover: the acknowledged deletion survived');
my ($rr, $body) = $s->cmd_multi('RETR 1');
ok(($rr // '') =~ /^\+OK/
    && ($body // '') =~ /^message 2 of \Q$users[0]\E\r$/m,
    'failover: RETR of the one left');
like($s->cmd('QUIT') // '', qr/^\+OK/, 'failover: QUIT');

###############################################################################

#!/usr/bin/perl

# Scale-out (issue 8): two nginx hosts on one Redis Cluster (3 masters,
# 3 replicas) with wait=1, behind HAProxy sending the PROXY protocol.
#
#   - each host logs, limits and counts the client's own address
#     (set_real_ip_from), not HAProxy's
#   - real clients (Net::POP3, Python's poplib, curl) read mail through
#     the balancer, from mailboxes spread over all three masters
#   - under load from two client addresses, a master is killed (its
#     replica takes over; it comes back as a replica) and 300 slots are
#     resharded between two masters; afterwards every mailbox holds
#     exactly what it should (Test::Nginx::POP3Ext::Load)

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
use Test::Nginx::POP3Ext::Load;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->has_prog('haproxy');

my $cluster = $x->redis_cluster(base => 8400);
my @masters = $cluster->masters;

# wait=1 needs the replicas in sync: redis_cluster() waits for it
my $SPEC = join(' ', map { $_->addr } @masters[0, 1])
    . ' cluster wait=1 timeout=3s';
my $CONF_SPEC = join(' ', map { $_->conf_addr } @masters[0, 1])
    . ' cluster wait=1 timeout=3s';

# two hosts: the same configuration, each behind the balancer only

my $SERVER = "        pop3_ext_lock_ttl 3s;\n"
    . "        pop3_ext_max_conn_per_addr 3;\n"
    . "        set_real_ip_from 127.0.0.9;\n";

my $t2 = $x->peer();

$x->run_pop3(redis => $CONF_SPEC, listen => 'proxy_protocol',
    server => $SERVER);
$x->run_pop3(redis => $CONF_SPEC, listen => 'proxy_protocol',
    server => $SERVER, port => 8111, nginx => $t2);

$t->write_file_expand('haproxy.cfg', <<'EOF');
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend pop3
    bind 127.0.0.1:%%PORT_8112%%
    default_backend hosts

backend hosts
    balance roundrobin
    source 127.0.0.9
    server a 127.0.0.1:%%PORT_8110%% send-proxy-v2
    server b 127.0.0.1:%%PORT_8111%% send-proxy-v2
EOF

$t->run_daemon($x->prog('haproxy'), '-db', '-f',
    $t->testdir() . '/haproxy.cfg');
$t->waitforsocket('127.0.0.1:' . port(8112))
    or die "haproxy did not start\n";

my $LB = port(8112);

my $load = Test::Nginx::POP3Ext::Load->new($x, ports => [ $LB ],
    spec => $SPEC, seconds => 26, local => [ '127.0.0.2', '127.0.0.3' ],
    users => [ map { "u$_" } 1 .. 6 ])->provision(5);

$t->plan(16 + $Test::Nginx::POP3Ext::Load::TESTS + 2);

###############################################################################

# both hosts serve once they have the slot map

for my $port (port(8110), port(8111)) {
    my $deadline = time() + 20;
    my $ok;
    while (!$ok && time() < $deadline) {
        my $c = eval { $x->client(port => $LB) };
        my $r = $c ? $c->login('u6', 'pwu6') // '' : '';
        $ok = $r =~ /^\+OK/;
        $c->cmd('QUIT') if $c;
        sleep(0.2) unless $ok;
    }
    diag("no login through the balancer:\n"
        . join("\n", grep { /\[(error|warn|notice)\]/ }
            $x->log_lines(), $x->log_lines($t2))) unless $ok;
}

# the mailboxes live on all three masters

my %on = map { $cluster->master_of($x->mbox_key($_, 'INDEX'))->port => 1 }
    $load->users;
is(scalar keys %on, 3, 'the mailboxes are spread over the 3 masters');

# the client's own address, on both hosts

for my $local (qw/ 127.0.0.2 127.0.0.3 127.0.0.2 127.0.0.3 /) {
    my $c = $x->session($LB, 'u1', 'pwu1', local => $local);
    diag("no session from $local") unless $c;
    $c->cmd('QUIT') if $c;
}

$x->wait_for_log(qr/session end[^\n]*client: 127\.0\.0\.[23],/);
$x->wait_for_log(qr/session end[^\n]*client: 127\.0\.0\.[23],/, 5, $t2);
my @a = grep { /session end/ } $x->log_lines();
my @b = grep { /session end/ } $x->log_lines($t2);
ok(grep({ /client: 127\.0\.0\.[23],/ } @a)
    && grep({ /client: 127\.0\.0\.[23],/ } @b),
    'both hosts served, each logging the client address');
ok(grep({ /client: 127\.0\.0\.2,/ } @a, @b)
    && grep({ /client: 127\.0\.0\.3,/ } @a, @b),
    'both client addresses logged');
ok(!grep({ /pop3_ext:.*client: 127\.0\.0\.9,/ } $x->log_lines(),
    $x->log_lines($t2)), "HAProxy's address is never the client");

# per-address limits count the client's address: 3 connections from
# 127.0.0.4 across both hosts, the 4th refused; 127.0.0.5 is not

{
    my @c = map { $x->client(port => $LB, local => '127.0.0.4') } 1 .. 3;
    is(scalar(grep { ($_->greeting // '') =~ /^\+OK/ } @c), 3,
        'three connections from one address');
    my $d = $x->client(port => $LB, local => '127.0.0.4');
    like($d->greeting // '', qr/^-ERR \[SYS\/TEMP\] too many connections/,
        'the fourth, on either host, refused');
    my $e = $x->client(port => $LB, local => '127.0.0.5');
    like($e->greeting // '', qr/^\+OK/, 'another client address served');
    my $key = $x->model('P3X_CONN_ADDR_PREFIX') . '127.0.0.4'
        . $x->model('P3X_TAG_CLOSE');
    is($cluster->cmd($key, 'ZCARD', $key), 3,
        'the slots are counted for the client address');
    $_->close() for @c, $d, $e;
}

# real clients through the balancer, on mailboxes on different masters

SKIP: {
    eval { require Net::POP3; 1 } or skip('no Net::POP3', 2);
    my $n = 0;
    for my $u (qw/ u1 u2 /) {
        my $p = Net::POP3->new('127.0.0.1', Port => $LB, Timeout => 10)
            or next;
        my $count = $p->login($u, "pw$u");
        my $msg = defined $count && $count > 0 ? $p->get(1) : undef;
        $n++ if $msg && join('', @$msg) =~ /^X-Id: /m;
        $p->quit();
    }
    is($n, 2, 'Net::POP3: login and RETR on two mailboxes');
    my ($rc, $out) = $x->run_cmd([ $x->prog('curl') // 'curl', '-s',
        "pop3://u3:pwu3\@127.0.0.1:$LB/1" ]);
    like($out // '', qr/^X-Id: /m, 'curl: RETR');
}

SKIP: {
    my $py = -x '/usr/bin/python3' ? '/usr/bin/python3' : undef;
    skip('no python3', 1) unless $py;
    my ($rc, $out) = $x->run_cmd([ $py, '-c', <<"EOF" ]);
import poplib
p = poplib.POP3('127.0.0.1', $LB, timeout=10)
p.user('u4'); p.pass_('pwu4')
n, size = p.stat()
print('count', n, 'uidl', len(p.uidl()[1]), 'retr', len(p.retr(1)[1]) > 0)
p.quit()
EOF
    like($out // '', qr/^count (\d+) uidl \1 retr True/, 'poplib: STAT, UIDL, RETR');
}

# a delivery with wait=1: acknowledged only once a replica has it

{
    my ($rc) = $x->pop3ext('-r', $SPEC, 'deliver', '--id', 'w1', 'u5',
        { stdin => "Subject: w1\nX-Id: w1\n\nwaited\n" });
    is($rc, 0, 'wait=1: a delivery acknowledged with replicas there');
}

###############################################################################

# the load, a master killed under it, and a reshard under it

$load->start();
sleep(5);

my $victim = $cluster->master_of($x->mbox_key('u1', 'INDEX'));
$cluster->kill_master($victim);
my $new = $cluster->wait_failover($victim, 30);
ok($new, 'a replica took over the killed master\'s slots')
    or diag($cluster->state_report());

# the old master comes back as a replica: wait=1 can be met again

$victim->start();
my $deadline = time() + 30;
sleep(0.2) until time() > $deadline
    || ($victim->role // '') eq 'slave'
    && ($victim->info('replication')->{master_link_status} // '') eq 'up';
is($victim->role // '', 'slave', 'the killed master is back, as a replica');

sleep(2);

my @m = $cluster->masters;
my $moved = eval { $cluster->reshard($m[0], $m[1], 300) } // 0;
cmp_ok($moved, '>=', 250, 'resharded 300 slots under load')
    or diag($@ || "moved $moved");

$load->wait();
sleep(3.5);

$load->tests($load->verify(sub { my ($key, @cmd) = @_;
    $cluster->cmd($key, @cmd) }));

ok($x->nginx_running && $x->nginx_running($t2), 'both hosts run');

###############################################################################

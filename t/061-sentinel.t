#!/usr/bin/perl

# Scale-out (issue 8) with Sentinels: a master, a replica and three
# Sentinels; nginx and pop3ext name the Sentinels and the master's name
# (sentinel=p3x) with wait=1.  Under load, a planned failover (SENTINEL
# FAILOVER), then the new master killed with kill -9 (its replica takes
# over, and the killed one comes back as a replica): nginx follows each
# new master without a reload, and afterwards every mailbox holds exactly
# what it should (Test::Nginx::POP3Ext::Load).

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
    ->has_prog('redis-sentinel');

my $sn = $x->redis_sentinel(base => 8450, name => 'p3x');
my $SPEC = join(' ', map { $_->addr } $sn->sentinels)
    . ' sentinel=p3x wait=1 timeout=3s';
my $CONF_SPEC = join(' ', map { $_->conf_addr } $sn->sentinels)
    . ' sentinel=p3x wait=1 timeout=3s';

$x->run_pop3(redis => $CONF_SPEC,
    server => "        pop3_ext_lock_ttl 3s;\n");

my $load = Test::Nginx::POP3Ext::Load->new($x, ports => [ port(8110) ],
    spec => $SPEC, seconds => 28)->provision(5);

$t->plan(6 + $Test::Nginx::POP3Ext::Load::TESTS);

my $first = $sn->master_addr;

ok($x->wait_for_log(qr/master is \Q$first\E/), 'nginx found the master');

$load->start();
sleep(5);

# a planned failover

my $second = eval { $sn->failover(30) };
ok($second && $second ne $first, 'SENTINEL FAILOVER: a new master')
    or diag($@ || $sn->report());
ok($x->wait_for_log(qr/master is \Q$second\E/, 15),
    'nginx follows it, without a reload');

# the new master killed; the old one, its replica now, takes over

sleep(5);

my ($victim) = grep { $_->addr eq ($second // '') } $sn->servers;
$victim->stop('KILL') if $victim;

my $third = $sn->wait_for(sub {
    my $a = $sn->master_addr;
    defined $a && $a ne ($second // '') ? $a : undef;
}, 40);
ok($third, 'kill -9 of the master: the Sentinels promote its replica')
    or diag($sn->report());

# the killed one comes back, as a replica of the new master: wait=1 can be
# met again

$victim->start() if $victim;
my $synced = $sn->wait_for(sub {
    $victim && ($victim->info('replication')->{master_link_status} // '')
        eq 'up';
}, 40);
ok($synced, 'the killed master is back, as a replica');

$load->wait();
sleep(3.5);

my ($m) = grep { $_->addr eq ($sn->master_addr // '') } $sn->servers;
$load->tests($load->verify(sub { my ($key, @cmd) = @_; $m->cmd(@cmd) }));

ok($x->nginx_running, 'nginx runs');

###############################################################################

#!/usr/bin/perl

# Counting mail across faults, under load (Test::Nginx::POP3Ext::Load):
# sessions and deliveries run while these faults are injected for real:
#
#   - kill -9 of Redis (AOF with appendfsync always), restarted
#   - kill -9 of an nginx worker (the master starts another)
#   - Redis paused (SIGSTOP) longer than the lock TTL, then resumed
#
# Afterwards every mailbox holds exactly what it should: nothing
# acknowledged is lost, nothing whose deletion was acknowledged is back,
# nothing is doubled, no UIDL names two messages, no lock is left once the
# lock TTL has passed.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

my $redis = $x->redis_server(8390, aof => 1,
    args => [ '--appendfsync', 'always' ]);
my $SPEC = $redis->addr . ' timeout=2s';

$x->run_pop3(
    redis => $redis->conf_addr . ' timeout=2s',
    main => "worker_processes 2;\n",
    server => "        pop3_ext_lock_ttl 3s;\n",
);

my $load = Test::Nginx::POP3Ext::Load->new($x, ports => [ port(8110) ],
    spec => $SPEC, seconds => 24)->provision(5);

$t->plan($Test::Nginx::POP3Ext::Load::TESTS + 3);

$load->start();
sleep(4);

# 1. Redis killed (AOF always), back on the same port with its data

$redis->kill9();
sleep(0.5);
$redis->start();

sleep(4);

# 2. an nginx worker killed; the master starts another

my $master = $x->nginx_pid;
my ($worker) = grep { parent($_) == $master }
    map { m{/proc/(\d+)$} ? $1 : () } glob('/proc/[0-9]*');
kill 'KILL', $worker if $worker;
my $worker_killed = $worker
    && $x->wait_for_log(qr/worker process \Q$worker\E exited on signal 9/);

sleep(4);

# 3. Redis paused longer than the lock TTL (3 s)

$redis->pause();
sleep(4.5);
$redis->resume();

# the rest of the load, then everything settles: locks run out

$load->wait();
sleep(3.5);

$load->tests($load->verify(sub { my ($key, @cmd) = @_; $redis->cmd(@cmd) }));

ok($x->nginx_running, 'nginx runs');
ok($worker_killed, 'a worker was killed, and the master saw it');

# the one alert expected: the worker this test killed

my @alerts = grep { /\[alert\]/ && !/worker process \Q$worker\E exited/ }
    split /\n/, $x->error_log();
is(join("\n", @alerts), '', "no alert but the killed worker's");
$t->todo_alerts();

###############################################################################

sub parent {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat =~ /^\d+ \(.*\) \S (\d+)/ ? $1 : 0;
}

###############################################################################

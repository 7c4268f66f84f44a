#!/usr/bin/perl

# Redis going away: a logged-in session gets [SYS/TEMP] and is not dropped
# by a crash; new sessions still get a greeting and [SYS/TEMP] at PASS; when
# Redis is back on the same port, logins work again; nothing is deleted
# without a committed QUIT, and a session whose lock was lost cannot
# commit (fencing).

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->needs_standalone_redis('kills, restarts (from a SAVE) and SIGSTOPs the'
        . ' one Redis server');

# a short Redis timeout, for a Redis that hangs instead of going away

$x->run_pop3(redis => '127.0.0.1:%%PORT_8379%% timeout=1s');

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: one\n\none\n");
$x->deliver('alice', "Subject: two\n\ntwo\n");

# Redis runs without persistence; a snapshot taken now (no lock, no
# deletion marks) is what it loads when it starts again

$t->plan(24);

is($x->redis_cmd('SAVE'), 'OK', 'snapshot');

my $port = port(8110);
my $WAIT = 15;

# PASS until it is +OK or the time is up; the session and the last reply

sub login_until {
    my ($limit, $p) = @_;
    $p //= $port;
    my $deadline = time() + $limit;
    my $r;
    while (time() < $deadline) {
        my $c = eval { $x->client(port => $p) } or last;
        $r = $c->login('alice', 'secret');
        return ($c, $r) if defined $r && $r =~ /^\+OK/;
        sleep(0.2);
    }
    return (undef, $r);
}

###############################################################################

my $first = $x->session($port, 'alice', 'secret');
die "cannot log in\n" unless $first;
like($first->cmd('STAT') // '', qr/^\+OK 2 /, 'STAT');
$first->cmd_ok('DELE 1');

$x->stop_redis();

# the session needs Redis for the body: a temporary failure, not a crash

$first->send('RETR 2');
my $r = $first->reply($WAIT);
like($r // '(no reply)', qr/^-ERR \[SYS\/TEMP\]/, 'RETR with Redis down');
like($first->cmd('NOOP', $WAIT) // '(no reply)', qr/^[+-]/,
    'session still answers');

# new connections: a greeting, and [SYS/TEMP] at PASS

my $other = $x->client(port => $port);
like($other->greeting // '', qr/^\+OK/, 'greeting with Redis down');
$other->cmd_ok('USER alice');
like($other->cmd('PASS secret', $WAIT) // '(no reply)',
    qr/^-ERR \[SYS\/TEMP\]/, 'PASS with Redis down');
$other->cmd_ok('QUIT', 'QUIT with Redis down');
ok($x->nginx_running, 'nginx still runs');

# Redis comes back on the same port: logins work again

$x->start_redis();
my ($c, $last) = login_until(10);
ok($c, 'login after Redis came back') or diag("last reply: " . ($last // ''));

like($c ? $c->cmd('STAT') // '' : '', qr/^\+OK 2 /,
    'nothing deleted: DELE without QUIT');

# the first session lost its lock with the Redis restart, and c holds it
# now: its QUIT must not commit the DELE 1 it made

my $q = $first->cmd('QUIT', $WAIT);
like($q // '(no reply)', qr/^-ERR/, 'QUIT of a session that lost its lock');

$c->cmd_ok('QUIT') if $c;
($c) = login_until(5);
like($c ? $c->cmd('STAT') // '' : '', qr/^\+OK 2 /,
    'a lost lock commits nothing');
my $body = $c ? $c->cmd_multi('RETR 1') : undef;
is($body, "Subject: one\r\n\r\none\r\n", 'message 1 intact');
$c->cmd_ok('QUIT') if $c;

# and once more: Redis down while nobody is logged in, back again

$x->stop_redis();
$other = $x->client(port => $port);
$other->cmd('USER alice');
like($other->cmd('PASS secret', $WAIT) // '', qr/^-ERR \[SYS\/TEMP\]/,
    'second outage: [SYS/TEMP]');
$x->start_redis();
($c, $last) = login_until(10);
ok($c, 'second recovery') or diag("last reply: " . ($last // ''));
$c->cmd_ok('QUIT') if $c;

# Redis hangs (SIGSTOP): the Redis timeout answers [SYS/TEMP] instead of
# leaving the client waiting; when it wakes up, logins work again

kill 'STOP', $x->redis_pid;
my $hung = $x->client(port => $port);
$hung->cmd('USER alice');
my $start = time();
$r = $hung->cmd('PASS secret', $WAIT);
my $took = time() - $start;
kill 'CONT', $x->redis_pid;
like($r // '(no reply)', qr/^-ERR \[SYS\/TEMP\]/, 'PASS with Redis hung');
ok($took < 6, 'answered by the Redis timeout') or diag("took $took s");
like($hung->cmd('QUIT') // '', qr/^\+OK/, 'QUIT after it');

($c, $last) = login_until(10, $port);
ok($c, 'login after Redis woke up') or diag("last reply: " . ($last // '')
    . '; lock PTTL ' . $x->redis_cmd('PTTL',
        $x->mbox_key($x->mailbox_of('alice'), 'LOCK')) . ' ms');

###############################################################################

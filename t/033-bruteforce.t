#!/usr/bin/perl

# Brute-force resistance, cluster-wide: a failed login is answered after a
# delay that doubles with the failures of the client address and is
# capped; the counter lives in Redis, so a second nginx (a second host)
# on the same Redis sees it and delays and blocks alike; past
# pop3_ext_auth_block_addr failures logins are refused with [SYS/TEMP]
# even with the right password, and logged; the block runs out after
# pop3_ext_auth_block_time; a successful login clears the counters;
# pop3_ext_auth_block_user blocks a user name; pop3_ext_max_auth_attempts
# ends the session.

use strict;
use warnings;

use Test::More;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

my $delays = "pop3_ext_auth_fail_delay 200ms;\n"
    . "pop3_ext_auth_fail_delay_max 800ms;\n";

# 8110 (and the same on the second nginx's 8210): delays, block after 6,
# for 3 s
# 8111: a user blocked after 3 failures, addresses never
# 8112: the default of 3 attempts per session
# 8113: one attempt per session

my $main = "        $delays"
    . "        pop3_ext_auth_block_addr 6;\n"
    . "        pop3_ext_auth_block_time 3s;\n"
    . "        pop3_ext_max_auth_attempts 0;\n";

my $fast = "pop3_ext_auth_fail_delay 10ms;\n"
    . "pop3_ext_auth_fail_delay_max 20ms;\n"
    . "pop3_ext_auth_block_addr 0;\n";

$x->run_pop3(
    mail => $x->server(8111, "$fast"
            . "pop3_ext_auth_block_user 3;\n"
            . "pop3_ext_auth_block_time 3s;\n"
            . "pop3_ext_max_auth_attempts 0;\n")
        . $x->server(8112, $fast)
        . $x->server(8113, "$fast" . "pop3_ext_max_auth_attempts 1;\n"),
    server => $main,
);

# a second host: its own nginx process, the same Redis

my $t2 = $x->peer();
$x->run_pop3(nginx => $t2, port => 8210, server => $main);

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->add_user('carol', 'carolpw');

$t->plan(57 + 2);    # and the second nginx's end checks

my $host1 = port(8110);
my $host2 = port(8210);

my $ADDR_KEY = $x->model('P3X_FAIL_ADDR_PREFIX') . '127.0.0.1'
    . $x->model('P3X_TAG_CLOSE');

sub user_key {
    return $x->model('P3X_FAIL_USER_PREFIX') . $_[0]
        . $x->model('P3X_TAG_CLOSE');
}

my $BLOCKED = qr/^-ERR \[SYS\/TEMP\] too many failed logins, try again later$/;
my $AUTHFAIL = qr/^-ERR \[AUTH\] invalid user name or password$/;

# one login on a fresh connection: (PASS reply, seconds it took)

sub attempt {
    my ($port, $user, $pass, $local) = @_;
    my $c = $x->client(port => $port, local => $local);
    $c->cmd("USER $user");
    my $t0 = time();
    my $r = $c->cmd("PASS $pass", 15) // '(no reply)';
    my $dt = time() - $t0;
    $c->cmd('QUIT');
    $c->close();
    return ($r, $dt);
}

sub counter {
    my ($key) = @_;
    my $v = $x->redis_cmd('GET', $key);
    return defined $v && !ref $v ? $v : 0;
}

# wait up to $timeout seconds until $key is gone

sub wait_gone {
    my ($key, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (time() < $deadline) {
        return 1 unless $x->redis_cmd('EXISTS', $key);
        sleep(0.05);
    }
    return 0;
}

###############################################################################

# the delay doubles with the address's failures: 200, 400, 800 ms, then
# stays at the 800 ms cap; the third failure is made on the other host and
# is still delayed as the third

my @dt;
my ($r, $dt);

($r, $dt) = attempt($host1, 'alice', 'wrong1');
like($r, $AUTHFAIL, 'failure 1: [AUTH]');
push @dt, $dt;
($r, $dt) = attempt($host1, 'alice', 'wrong2');
like($r, $AUTHFAIL, 'failure 2: [AUTH]');
push @dt, $dt;
($r, $dt) = attempt($host2, 'alice', 'wrong3');
like($r, $AUTHFAIL, 'failure 3, on the second host: [AUTH]');
push @dt, $dt;
($r, $dt) = attempt($host1, 'mallory', 'wrong4');
like($r, $AUTHFAIL, 'failure 4, an unknown user: [AUTH]');
push @dt, $dt;
($r, $dt) = attempt($host2, 'alice', 'wrong5');
like($r, $AUTHFAIL, 'failure 5, on the second host: [AUTH]');
push @dt, $dt;

note(sprintf('failure reply times: %s ms',
    join(' ', map { sprintf('%.0f', $_ * 1000) } @dt)));

cmp_ok($dt[0], '>=', 0.19, 'failure 1 delayed >= 200 ms');
cmp_ok($dt[1], '>=', 0.39, 'failure 2 delayed >= 400 ms');
cmp_ok($dt[1], '>', $dt[0], 'failure 2 slower than failure 1');
cmp_ok($dt[2], '>=', 0.78,
    'failure 3 on the other host delayed >= 800 ms: the count is shared');
cmp_ok($dt[3], '>=', 0.78, 'failure 4 delayed >= 800 ms');
cmp_ok($dt[3], '<', 1.5, 'failure 4 capped at 800 ms (not 1600)');
cmp_ok($dt[4], '<', 1.5, 'failure 5 capped');

is(counter($ADDR_KEY), 5, 'address counter in Redis: 5');
my $pttl = $x->redis_cmd('PTTL', $ADDR_KEY);
ok($pttl > 1000 && $pttl <= 3000, 'address counter expires within block_time')
    or diag("PTTL $pttl");
is(counter(user_key('alice')), 4, 'user counter of alice: 4');
is(counter(user_key('mallory')), 0,
    'unknown names leave no user counter (no key per guessed name)');

# a slow failure does not hold other sessions of the worker

my $c = $x->client(port => $host1);
$c->cmd('USER alice');
$c->send('PASS wrong6');
my $t0 = time();
my $other = $x->client(port => $host1);
like($other->cmd('CAPA') // '', qr/^\+OK/, 'other session served meanwhile');
cmp_ok(time() - $t0, '<', 0.5, 'other session not held by the delay');
like($c->reply(15) // '', $AUTHFAIL, 'failure 6: [AUTH]');
$other->close();
$c->close();

# the sixth failure reached the threshold: refused without a check, even
# with the right password, on both hosts

($r, $dt) = attempt($host1, 'alice', 'secret');
like($r, $BLOCKED, 'blocked: right password refused with [SYS/TEMP]');
cmp_ok($dt, '>=', 0.78, 'blocked reply delayed like a failure');
($r) = attempt($host2, 'bob', 'bobpw');
like($r, $BLOCKED, 'blocked on the second host too, for every user');
($r) = attempt($host1, 'carol', 'carolpw', '127.0.0.2');
like($r, qr/^\+OK/, 'another address is not blocked');

$c = $x->client(port => $host1);
$r = $c->cmd('AUTH PLAIN ' . encode_base64("\0alice\0secret", ''), 15);
like($r // '', $BLOCKED, 'blocked: AUTH PLAIN too');
like($c->cmd('CAPA') // '', qr/^\+OK/, 'blocked session still answers');
$c->read_multi();
$c->close();

ok($x->wait_for_log(qr/\[warn\][^\n]*login of user "alice" blocked after \d+ failures from the address[^\n]*client: 127\.0\.0\.1/),
    'block logged with user and client');
ok($x->wait_for_log(qr/\[warn\][^\n]*login of user "bob" blocked/, 5, $t2),
    'block logged on the second host');

# the block runs out block_time (3 s) after the last failure

($r) = attempt($host1, 'alice', 'secret');
like($r, $BLOCKED, 'still blocked');
my $last = time();
$pttl = $x->redis_cmd('PTTL', $ADDR_KEY);
ok($pttl > 1500 && $pttl <= 3000, 'a blocked attempt renews the block')
    or diag("PTTL $pttl");
ok(wait_gone($ADDR_KEY, 6), 'the address counter expires');
my $blocked_for = time() - $last;
cmp_ok($blocked_for, '>=', 1.5, 'the block lasted');
note(sprintf('block ran out %.1f s after the last attempt', $blocked_for));

($r) = attempt($host2, 'alice', 'secret');
like($r, qr/^\+OK/, 'after the block: login');

# a successful login clears the user's failures but not the address's
# (one valid account buys an attacker no guesses)

attempt($host1, 'alice', 'wrong');
attempt($host1, 'alice', 'wrong');
is(counter($ADDR_KEY), 2, 'two failures counted');
ok($x->redis_cmd('EXISTS', user_key('alice')), 'user counter exists');
($r) = attempt($host1, 'alice', 'secret');
like($r, qr/^\+OK/, 'login after failures');
is(counter($ADDR_KEY), 2,
    'a login leaves the address failures counted');
ok(wait_gone(user_key('alice'), 3), 'login cleared the user counter');
($r, $dt) = attempt($host1, 'alice', 'wrong');
is(counter($ADDR_KEY), 3, 'the next failure counts on');
$x->redis_cmd('DEL', $ADDR_KEY);

# pop3_ext_auth_block_user: a user name blocked after 3 failures from
# three addresses, also from a fourth; other users of the same address not

my $U = port(8111);
for my $i (1 .. 3) {
    ($r) = attempt($U, 'bob', "wrong$i", "127.0.0.$i");
    like($r, $AUTHFAIL, "bob failure $i from 127.0.0.$i: [AUTH]");
}
is(counter(user_key('bob')), 3, 'user counter of bob: 3');
($r) = attempt($U, 'bob', 'bobpw', '127.0.0.4');
like($r, $BLOCKED, 'bob blocked with the right password, from 127.0.0.4');
($r) = attempt($U, 'bob', 'bobpw');
like($r, $BLOCKED, 'bob blocked from 127.0.0.1');
($r) = attempt($U, 'carol', 'carolpw');
like($r, qr/^\+OK/, 'carol from the same address not blocked');
ok($x->wait_for_log(qr/login of user "bob" blocked after \d+ failures from the address, [34] of the user/),
    'user block logged');
ok(wait_gone(user_key('bob'), 6), 'user counter expires');
($r) = attempt($U, 'bob', 'bobpw', '127.0.0.4');
like($r, qr/^\+OK/, 'bob logs in after the block time');
$x->redis_cmd('DEL', $ADDR_KEY);

# pop3_ext_max_auth_attempts: the default 3, then the session ends

$c = $x->client(port => port(8112));
$c->cmd('USER alice');
like($c->cmd('PASS w1', 15) // '', $AUTHFAIL, 'attempt 1');
like($c->cmd('AUTH PLAIN ' . encode_base64("\0alice\0w2", ''), 15) // '',
    $AUTHFAIL, 'attempt 2 (another mechanism)');
$c->cmd('USER alice');
like($c->cmd('PASS w3', 15) // '', $AUTHFAIL, 'attempt 3 answered');
ok($c->closed(5), 'session closed after 3 attempts');

# pipelined guesses do not get past the limit: 10 in one write, 3 are
# answered, then the session ends

$c = $x->client(port => port(8112));
$c->send(map { ('USER alice', "PASS guess$_") } 1 .. 10);
my @replies;
while (defined(my $l = $c->reply(15))) {
    push @replies, $l;
}
is(scalar(grep { /^-ERR \[AUTH\]/ } @replies), 3,
    'pipelined guesses: 3 answered [AUTH]');
ok(!grep({ /^\+OK maildrop/ } @replies), 'pipelined guesses: no login');
is($replies[-1], '-ERR [AUTH] invalid user name or password',
    'pipelined guesses: the session ends after the third')
    or diag(explain(\@replies));

$c = $x->client(port => port(8113));
$c->cmd('USER alice');
like($c->cmd('PASS w1', 15) // '', $AUTHFAIL,
    'max_auth_attempts 1: attempt answered');
ok($c->closed(5), 'max_auth_attempts 1: session closed');

###############################################################################

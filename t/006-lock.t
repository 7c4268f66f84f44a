#!/usr/bin/perl

# The exclusive maildrop lock: a second session gets [IN-USE]; the lock is
# taken at login, not at USER; QUIT and a dropped connection release it at
# once; a stale lock left in Redis (a crashed server) runs out by its TTL;
# a lock never hides a wrong password; other users are not affected.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

# a second server with the shortest lock TTL, to see the lock refreshed
# while a session outlives it

$x->run_pop3(mail => $x->server(8111, 'pop3_ext_lock_ttl 3s;'));

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->deliver('alice', "Subject: a\n\na\n");
$x->deliver('bob', "Subject: b\n\nb\n");

$t->plan(30);

my $port = port(8110);

# a failed PASS may be answered late (a brute-force delay)

my $FAIL_WAIT = 15;

sub try_login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    $c->cmd("USER $user");
    my $r = $c->cmd("PASS $pass", $FAIL_WAIT);
    return wantarray ? ($r, $c) : $r;
}

# log in, retrying while [IN-USE], for up to $limit seconds

sub login_within {
    my ($limit) = @_;
    my $start = time();
    while (1) {
        my ($r, $c) = try_login('alice', 'secret');
        return ($c, time() - $start) if defined $r && $r =~ /^\+OK/;
        return (undef, time() - $start)
            if time() - $start > $limit || !defined $r || $r !~ /IN-USE/;
        sleep(0.1);
    }
}

###############################################################################

my $first = $x->session($port, 'alice', 'secret');
ok($first, 'first session logged in');

my ($r, $second) = try_login('alice', 'secret');
like($r // '', qr/^-ERR \[IN-USE\]/, 'second session: -ERR [IN-USE]');
$second->cmd_ok('QUIT', 'QUIT after [IN-USE]');

like(try_login('alice', 'wrong') // '', qr/^-ERR \[AUTH\]/,
    'wrong password while locked: [AUTH], not [IN-USE]');
like(try_login('bob', 'bobpw') // '', qr/^\+OK/, 'other user not locked');

# the first session is not disturbed

like($first->cmd('STAT') // '', qr/^\+OK 1 /, 'first session goes on');
my $body = $first->cmd_multi('RETR 1');
is($body, "Subject: a\r\n\r\na\r\n", 'first session RETR');

# QUIT releases at once

$first->cmd_ok('QUIT');
($r, $second) = try_login('alice', 'secret');
like($r // '', qr/^\+OK/, 'login right after QUIT');

# USER alone does not lock

my $c = $x->client(port => $port);
$c->cmd_ok('USER alice', 'USER in another connection');
$second->cmd_ok('QUIT');
($r, $second) = try_login('alice', 'secret');
like($r // '', qr/^\+OK/, 'USER alone takes no lock');

# and when the holder drops the connection, its lock goes at once

$second->close();
my ($d, $waited) = login_within(5);
ok($d, 'login after the holder dropped');
ok($waited < 3, 'released at once, not by TTL') or diag("waited $waited s");

# the session that merely said USER can still log in now that d quits

$d->cmd_ok('QUIT');
like($c->cmd('PASS secret', $FAIL_WAIT) // '', qr/^\+OK/,
    'PASS in the waiting connection');
$c->cmd_ok('QUIT');

# a lock left in Redis by a server that died: [IN-USE] until its TTL ends

my $lock = $x->mbox_key($x->mailbox_of('alice'), 'LOCK');
is($x->redis_cmd('SET', $lock, 'stale-token', 'PX', 2000), 'OK',
    'stale lock planted');
like(try_login('alice', 'secret') // '', qr/^-ERR \[IN-USE\]/,
    'stale lock: [IN-USE]');
($d, $waited) = login_within(8);
ok($d, 'login once the stale lock expired');
ok($waited >= 1, 'not before the TTL') or diag("waited $waited s");

# the session owns the lock in Redis while it lives, and gives it back

my $token = $x->redis_cmd('GET', $lock);
ok(defined $token && !ref $token && $token ne 'stale-token',
    'session holds a lock of its own');
my $ttl = $x->redis_cmd('PTTL', $lock);
ok(!ref $ttl && $ttl > 0, 'the lock has a TTL') or diag("PTTL $ttl");
$d->cmd_ok('QUIT');
is($x->redis_cmd('EXISTS', $lock), 0, 'QUIT deleted the lock');

# a session that lives longer than the lock TTL keeps its lock: it is
# refreshed; the session can still commit at the end

my $long = $x->session(port(8111), 'alice', 'secret');
ok($long, 'session with a 3 s lock TTL');
$long->cmd_ok('DELE 1', 'DELE in it');
my $end = time() + 4.5;
while (time() < $end) {
    sleep(0.5);    # time passing is what is tested here
}
like(try_login('alice', 'secret') // '', qr/^-ERR \[IN-USE\]/,
    'still locked after more than the TTL');
like($long->cmd('QUIT') // '', qr/^\+OK/, 'QUIT commits after the TTL');
is(($x->mailbox_stat('alice'))[0], 0, 'the deletion was committed');

###############################################################################

#!/usr/bin/perl

# Correct under failure (issue 7): each fault is injected for real into
# the one Redis server, and what the client is told must be what
# happened (t/052-faults-clients.t has the faults that come from clients
# and data, which run on a Redis Cluster too).
#
#   - a login abandoned by a Redis timeout answers once; its late replies
#     are dropped and the session takes commands again
#   - one slow Redis command fails only the requests that waited too long
#     for it, not every session on the connection
#   - QUIT and RSET during a Redis stall never claim what did not happen;
#     after an unknown outcome the session reads the marks back
#   - a snapshot restored under the mailboxes: new messages never get a
#     UIDL a client has seen
#   - a delivery retried with the same id after a lost reply: one copy
#   - sessions that close while the Redis connection breaks under them
#     (a login reading a big index in parts): no crash, nothing left

use strict;
use warnings;

use Test::More;
use MIME::Base64 qw/ decode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;
use Test::Nginx::POP3Ext::Faults;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->needs_standalone_redis('DEBUG SLEEP, SAVE and a snapshot restored, and'
        . ' CLIENT KILL on the one Redis server');

Test::Nginx::POP3Ext::Faults::run_servers($x);    # 8110 and 8111

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->add_user('carol', 'carolpw', '--scheme', 'CRAM-MD5');

$t->plan(27);

my $P = port(8110);
my $Q = port(8111);
my $redis = $x->redis;

sub mbox_count {
    my ($user) = @_;
    return $x->redis_cmd('LLEN', $x->mbox_key($x->mailbox_of($user),
        'INDEX'));
}

sub fill {
    my ($user, $n) = @_;
    $x->redis_cmd('DEL', $x->mbox_key($x->mailbox_of($user), 'INDEX'));
    $x->deliver($user, "Subject: $user $_\n\nbody $_\n") for 1 .. $n;
}

###############################################################################

# a login whose Redis requests time out answers once; when the late
# replies come, nothing more is said, and the session goes on (on 8110,
# which has no short login timeout)

{
    my $c = $x->client(port => $P);
    $c->cmd('USER bob');
    $redis->debug_sleep(3);
    my $t0 = time();
    my $r = $c->cmd('PASS bobpw', 10) // '(none)';
    like($r, qr/^-ERR \[SYS\/TEMP\]/, 'login during a stall: [SYS/TEMP]');
    cmp_ok(time() - $t0, '<', 2.9, 'answered at the request timeout');
    sleep(1.5);                                       # the replies come
    ok(!$c->can_read(0.5), 'no second reply to the abandoned attempt');
    like($c->cmd('NOOP') // '', qr/^-ERR/, 'the session takes commands');
    like($c->login('bob', 'bobpw') // '', qr/^\+OK/,
        'and logs in at the next attempt');
    $c->cmd('QUIT');
    $c->close();
}

# one slow command: a request that waited less than its timeout is still
# answered; only the ones that waited too long fail

{
    fill('alice', 2);
    my $a = $x->session($Q, 'alice', 'secret');
    my $b = $x->session($Q, 'bob', 'bobpw');
    $redis->debug_sleep(3);
    $a->send('RETR 1');
    sleep(1.4);
    $b->send('UIDL');
    my $ra = $a->read_line() // '(none)';
    like($ra, qr/^-ERR \[SYS\/TEMP\]/, 'slow Redis: the first waited too long');
    my ($st, $body) = $b->read_multi();
    like($st // '(none)', qr/^\+OK/,
        'slow Redis: the second, sent later, is answered')
        or diag("got " . ($st // 'nothing'));
    like($a->cmd('STAT') // '', qr/^\+OK 2 /, 'the first session goes on');
    $a->cmd('QUIT');
    $b->cmd('QUIT');
}

###############################################################################

# QUIT during a stall longer than the timeout: the reply never claims an
# outcome that did not happen, and Redis agrees with what it says

{
    fill('alice', 4);
    my $c = $x->session($Q, 'alice', 'secret');
    $c->cmd('DELE 1');
    $c->cmd('DELE 2');
    $redis->debug_sleep(3);
    my $r = $c->cmd('QUIT', 10) // '(none)';
    sleep(1.5);
    my $n = mbox_count('alice');
    if ($r =~ /^\+OK bye, (\d+) messages left/) {
        is($n, $1, 'QUIT +OK: what it says is left is left');
    } elsif ($r =~ /no message removed/) {
        is($n, 4, 'QUIT: "no message removed" and none was');
    } else {
        like($r, qr/^-ERR \[SYS\/TEMP\] .*may or may not/,
            'QUIT: an unknown outcome is said to be unknown');
    }
    unlike($r, qr/^-ERR \[SYS\/TEMP\] some deleted messages not removed/,
        'QUIT: no claim that nothing was removed');
    ok($n == 2 || $n == 4, 'QUIT: all deletions or none') or diag("n=$n");
}

# RSET during a stall: the session reads the marks back, so STAT and QUIT
# say what Redis has

{
    fill('alice', 4);
    my $c = $x->session($Q, 'alice', 'secret');
    $c->cmd('DELE 1');
    $redis->debug_sleep(3);
    my $r = $c->cmd('RSET', 10) // '(none)';
    like($r, qr/^-ERR \[SYS\/TEMP\].*may or may not/,
        'RSET during a stall: outcome unknown');
    my $s = $c->cmd('STAT', 10) // '(none)';
    like($s, qr/^\+OK 4 /, 'STAT after it: the marks as Redis has them');
    my $q = $c->cmd('QUIT', 10) // '(none)';
    like($q, qr/^\+OK bye, 4 messages left/, 'QUIT: what it removed');
    is(mbox_count('alice'), 4, 'all 4 messages still there');
    ok($x->wait_for_log(qr/deletion marks of "alice" read back/),
        'marks read back, logged');
}

###############################################################################

# a snapshot restored under the mailboxes: the messages stored after it
# are gone, and new ones never get a UIDL a client has seen

{
    fill('bob', 2);
    my $c = $x->session($Q, 'bob', 'bobpw');
    $c->cmd('QUIT');
    $redis->save_snapshot('before');

    $x->deliver('bob', "Subject: late $_\n\nlate $_\n") for 1 .. 3;
    $c = $x->session($Q, 'bob', 'bobpw');
    my (undef, $body) = $c->cmd_multi('UIDL');
    my %seen = map { $_->[1] => 1 } @{ $x->listing($body) || [] };
    $c->cmd('QUIT');
    is(scalar keys %seen, 5, 'a client saw 5 UIDLs');

    $redis->restore_snapshot('before');
    is(mbox_count('bob'), 2, 'restored: the last 3 messages are gone');

    my $deadline = time() + 10;
    my $ok;
    while (!$ok && time() < $deadline) {
        $ok = eval { $x->deliver('bob', "Subject: new $_\n\nnew $_\n")
            for 1 .. 3; 1 };
        sleep(0.2) unless $ok;
    }
    my @again;
    $deadline = time() + 10;
    while (time() < $deadline) {
        $c = $x->session($Q, 'bob', 'bobpw') or (sleep(0.2), next);
        my (undef, $body) = $c->cmd_multi('UIDL');
        @again = @{ $x->listing($body) || [] };
        $c->cmd('QUIT');
        last;
    }
    is(scalar @again, 5, 'after the restore: 2 old and 3 new messages');
    my @reused = grep { $seen{$_->[1]} } @again[2 .. $#again];
    is(scalar @reused, 0, 'no new message has a UIDL seen before');
}

# a delivery whose reply is lost (the client gave up during a stall),
# retried with the same id: one copy

{
    fill('carol', 0);
    $redis->debug_sleep(2);
    my ($rc) = $x->pop3ext('-r', "127.0.0.1:" . $redis->port
        . " timeout=1s", 'deliver', '--id', 'Q123', 'carol',
        { stdin => "Subject: once\n\nonce\n", timeout => 10 });
    isnt($rc, 0, 'delivery during a stall: not acknowledged');
    sleep(1.5);
    ($rc) = $x->pop3ext('deliver', '--id', 'Q123', 'carol',
        { stdin => "Subject: once\n\nonce\n" });
    is($rc, 0, 'the retry is acknowledged');
    ($rc) = $x->pop3ext('deliver', '--id', 'Q123', 'carol',
        { stdin => "Subject: once\n\nonce\n" });
    is($rc, 0, 'and another one');
    is(mbox_count('carol'), 1, 'one copy stored');
}

###############################################################################

# sessions close while the Redis connection breaks under them, some in
# the middle of a login that reads a big index in parts (15000 messages,
# four LRANGE after the LOCK script): no crash, no lock left

{
    $x->redis_cmd('DEL', $x->mbox_key($x->mailbox_of('bob'), 'INDEX'));
    $x->deliver_fast('bob', map { "Subject: $_\r\n\r\n$_\r\n" } 1 .. 15000);

    for my $round (1 .. 10) {
        my @c = map { $x->client(port => $Q) } 1 .. 4;
        $_->send("USER bob\r\nPASS bobpw") for @c;
        sleep(0.005 * $round);
        $redis->client_kill_normal();
        $_->close() for @c;
    }
    sleep(0.5);
    ok($x->nginx_running, 'killed connections: nginx runs');
    my $lock = $x->mbox_key($x->mailbox_of('bob'), 'LOCK');
    my $deadline = time() + 5;
    sleep(0.1) while $x->redis_cmd('EXISTS', $lock) && time() < $deadline;
    ok(!$x->redis_cmd('EXISTS', $lock), 'killed connections: no lock left');
    my $c = $x->session($Q, 'bob', 'bobpw');
    like($c ? $c->cmd('STAT') // '' : '', qr/^\+OK 15000 /,
        'killed connections: the mailbox is whole');
    $c->cmd('QUIT') if $c;
}

###############################################################################

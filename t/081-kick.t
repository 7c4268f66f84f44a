#!/usr/bin/perl

# pop3ext kick, the module's side: the KICK script deletes the lock, the
# marks and the owner record of a maildrop; the session that held it ends
# within pop3_ext_lock_refresh (5 s by default) even when idle, with
# "-ERR [SYS/TEMP] maildrop lock lost, nothing deleted" and no UPDATE; a
# command that finds the lock gone first (DELE) gets that reply and ends
# the session, pipelined commands behind it unanswered; QUIT after a kick
# removes nothing; a session that logged in after the kick keeps the
# maildrop; the endings are counted as lock_lost.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

# 8110: the defaults (lock TTL 30 s, renewed every 5 s)
# 8111: renewed every 10 s, so that a command finds the kick first

$x->run_pop3(
    main => <<'EOF',
http {
    %%TEST_GLOBALS_HTTP%%
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_8180%%;
        location = /metrics { pop3_ext_metrics kick; }
    }
}
EOF
    mail => "    pop3_ext_metrics_zone kick 128k;\n"
        . $x->server(8111, 'pop3_ext_lock_refresh 10s;'),
);

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: one\n\n1\n");
$x->deliver('alice', "Subject: two\n\n2\n");

$t->plan(37);

my $mbox = $x->mailbox_of('alice');
my $LOCK = $x->mbox_key($mbox, 'LOCK');
my $DELE = $x->mbox_key($mbox, 'DELE');
my $OWNER = $x->mbox_key($mbox, 'OWNER');
my $LOST = qr/^-ERR \[SYS\/TEMP\] maildrop lock lost, nothing deleted$/;

# what pop3ext kick runs: the owner's fields, or undef

sub kick {
    return $x->redis_cmd('EVAL', $x->model('P3X_SCRIPT_KICK'), 3,
        $LOCK, $DELE, $OWNER);
}

# the next line from the server within $limit seconds, and when it came

sub line_within {
    my ($c, $limit) = @_;
    my $start = time();
    $c->timeout($limit);
    my $l = $c->reply();
    return ($l, time() - $start);
}

sub metric {
    my ($name) = @_;
    my $r = http_get('/metrics', PeerAddr => '127.0.0.1:' . port(8180))
        // return;
    return $r =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

###############################################################################

# an idle session ends within the refresh interval

my $s = $x->session(port(8110), 'alice', 'secret');
ok($s, 'logged in');
$s->cmd_ok('DELE 1', 'DELE 1 marked');
is($x->redis_cmd('SCARD', $DELE), 1, 'the mark is in Redis');

my $who = kick();
like(ref $who ? '' : $who // '', qr/user=alice/, 'KICK names the owner');
is($x->redis_cmd('EXISTS', $LOCK), 0, 'KICK took the lock');

my ($l, $took) = line_within($s, 10);
like($l // '', $LOST, 'idle session told the lock is lost');
ok($took < 5 + 2.5, 'within the 5 s refresh and some slack')
    or diag("took $took s");
ok($s->closed(3), 'and closed');

is(($x->mailbox_stat('alice'))[0], 2, 'nothing deleted');
is($x->redis_cmd('EXISTS', $LOCK), 0, 'lock free');
is($x->redis_cmd('EXISTS', $OWNER), 0, 'owner record gone');
is($x->redis_cmd('EXISTS', $DELE), 0, 'marks gone');

$s = $x->session(port(8110), 'alice', 'secret');
ok($s, 'the next login gets the maildrop');
$s->cmd_ok('QUIT');

# a command finds the kick before the renewal: it is answered with the
# lock loss, and what was pipelined behind it is not executed

$s = $x->session(port(8111), 'alice', 'secret');
ok($s, 'logged in (renewals every 10 s)');
kick();
my $start = time();
$s->print("DELE 1\r\nSTAT\r\n");
($l, $took) = line_within($s, 5);
like($l // '', $LOST, 'DELE after the kick: lock lost, nothing deleted');
$s->timeout(3);
is($s->reply(), undef, 'STAT not answered');
ok($s->closed(3), 'closed');
ok(time() - $start < 3, 'at once, not at the renewal');
is(($x->mailbox_stat('alice'))[0], 2, 'nothing deleted');

# QUIT after a kick: UPDATE is refused by the fencing check

$s = $x->session(port(8111), 'alice', 'secret');
$s->cmd_ok('DELE 2', 'DELE 2');
kick();
like($s->cmd('QUIT') // '',
    qr/^-ERR \[SYS\/TEMP\] maildrop lock lost, no message removed$/,
    'QUIT after the kick removes nothing');
ok($s->closed(3), 'closed after QUIT');
is(($x->mailbox_stat('alice'))[0], 2, 'both messages still there');

# a session that logged in after the kick is not disturbed when the old
# one learns of it

my $old = $x->session(port(8110), 'alice', 'secret');
ok($old, 'old session');
kick();
my $new = $x->session(port(8110), 'alice', 'secret');
ok($new, 'new session logs in at once after the kick');
my $token = $x->redis_cmd('GET', $LOCK);
($l, $took) = line_within($old, 10);
like($l // '', $LOST, 'the old session is told');
ok($old->closed(3), 'and closed');
is($x->redis_cmd('GET', $LOCK), $token, 'the new session keeps its lock');
$new->cmd_ok('DELE 1', 'new session: DELE 1');
like($new->cmd('QUIT') // '', qr/^\+OK bye, 1 messages left/,
    'new session commits');
is(($x->mailbox_stat('alice'))[0], 1, 'its deletion applied');

# counted as such

my $deadline = time() + 5;
sleep(0.1) while (metric('pop3ext_sessions_total{outcome="lock_lost"}')
    // 0) < 4 && time() < $deadline;
is(metric('pop3ext_sessions_total{outcome="lock_lost"}'), 4,
    'four sessions ended by the lock loss');
is(metric('pop3ext_commits_total{result="lock_lost"}'), 1,
    'one commit refused for it');
is(metric('pop3ext_commits_total{result="ok"}'), 2,
    'two commits done (QUIT of the two good sessions)');
is(metric('pop3ext_deleted_messages_total'), 1, 'one message deleted');
like($x->error_log(), qr/the lock of maildrop "\Q$mbox\E" was lost/,
    'logged');

###############################################################################

#!/usr/bin/perl

# LMTP with a real MTA: a private Postfix (its own configuration and
# queue in the test directory, no listener, "lmtp:inet:127.0.0.1:PORT"
# as docs/delivery.md recommends) delivers one message to several
# recipients (each accepted one stored once, byte for byte as Postfix
# sent it behind a Return-Path line), bounces an unknown one (550 5.1.1)
# and an over-quota one (552 5.2.2) to the sender, and retries a
# delivery whose replicas did not confirm (wait=1 without a replica: 451
# 4.3.0, deferred) until a replica is there: the retry, byte for byte the
# same queue file, is stored once.

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
use Test::Nginx::POP3Ext::LMTP;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

plan(skip_all => 'Postfix (and root) needed')
    unless Test::Nginx::POP3Ext::LMTP::Postfix::available();

# 8024: LMTP; 8025: LMTP on a second Redis (8380, no replica yet), whose
# STOREs wait for one replica (300 ms)

my $r2 = $x->redis_server(8380);
my $R2 = '127.0.0.1:' . $r2->port();

$x->run_pop3(
    server => "        pop3_ext_secure_networks 127.0.0.0/8;\n",
    mail => lmtp_server(8024, '')
        . lmtp_server(8025, '', redis => $r2->conf_addr
            . ' wait=1 wait_timeout=300ms'),
);

$x->add_user($_, 'secret') for qw/ postmaster alice bob carol /;
my ($prc, $pout, $perr) = $x->pop3ext('user', 'add', 'erin',
    { stdin => "secret\n", redis => $R2 });
die "user add erin: $pout$perr" if $prc;
$x->deliver('carol', "Subject: first\r\n\r\nfull\r\n");
$x->redis_cmd('HSET', $x->mbox_key('carol', 'META'), 'quota_messages', 1);

my $pf = postfix($x, 'example.org' => port(8024),
    'acked.example.org' => port(8025));

$t->plan(16);

sub retr {
    my ($user, $n) = @_;
    my $s = $x->session(port(8110), $user, 'secret') or return '';
    my $m = $s->cmd_multi("RETR $n");
    $s->cmd('QUIT');
    return $m // '';
}

sub count { ($x->mailbox_stat($_[0]))[0] // 0 }

###############################################################################

my $body = "Subject: through postfix\n"
    . "Message-ID: <postfix-1\@example.org>\n\n"
    . "line one\n.line with a dot\n\nlast line\n";

my ($rc, $out, $err) = $pf->sendmail('postmaster@example.org',
    [ 'alice@example.org', 'bob@example.org', 'nobody@example.org',
      'carol@example.org' ], $body);
is($rc, 0, 'sendmail') or diag($out, $err);

ok($pf->wait_queue(0, 30), 'postfix delivered everything')
    or diag($pf->log());

is(count('alice'), 1, 'alice got it');
is(count('bob'), 1, 'bob got it');
is(count('carol'), 1, 'carol is over quota: nothing stored');

my $m = retr('alice', 1);
like($m, qr/^Return-Path: <postmaster\@example\.org>\r\n/, 'Return-Path');
like($m, qr/^Received: by mx\.test \(Postfix/m, 'Postfix\'s own header');
like($m, qr/\r\n\r\nline one\r\n\.line with a dot\r\n\r\nlast line\r\n\z/,
    'the body, with CRLF and its dot');
is(retr('bob', 1), $m, 'the same octets for bob');

my $log = $pf->log();
like($log, qr/to=<nobody\@example\.org>.*status=bounced.*550 5\.1\.1/,
    'postfix: unknown user bounced with 550 5.1.1');
like($log, qr/to=<carol\@example\.org>.*status=bounced.*552 5\.2\.2/,
    'postfix: over quota bounced with 552 5.2.2');

# the bounces went to the sender, a user here too

my $n = 0;
for (1 .. 50) {
    $n = count('postmaster');
    last if $n >= 1 && $pf->queued() == 0;
    sleep 0.2;
}
ok($n >= 1, 'bounce delivered to the sender');

# wait=1 and no replica: 451, deferred; the message is on the master

($rc) = $pf->sendmail('postmaster@example.org', [ 'erin@acked.example.org' ],
    "Subject: acked\n\nwait for a replica\n");

my $deferred;
for (1 .. 100) {
    $log = $pf->log();
    $deferred = $log
        =~ /to=<erin\@acked\.example\.org>.*status=deferred.*451 4\.3\.0/;
    last if $deferred;
    sleep 0.1;
}
ok($deferred, 'unacknowledged: deferred with 451 4.3.0') or diag($log);
my (undef, $st) = $x->pop3ext('stat', 'erin', { redis => $R2 });
like($st, qr/^1 \d+$/, 'unacknowledged, but on the master');

# a replica: Postfix's retry of the same queue file finds the delivery
# id, renews it, and this time WAIT confirms it.  The retry is Postfix's
# own (backoff 3 to 4 s); should a scan still find the file locked
# ("skipped, still being delivered"), qmgr tries again after 60 s

my $replica = $x->redis_server(8381);
$replica->cmd('REPLICAOF', '127.0.0.1', $r2->port());
for (1 .. 100) {
    last if ($replica->info('replication')->{master_link_status} // '')
        eq 'up';
    sleep 0.1;
}
ok($pf->wait_queue(0, 90), 'retried after the replica came')
    or diag($pf->log());
(undef, $st) = $x->pop3ext('stat', 'erin', { redis => $R2 });
like($st, qr/^1 \d+$/, 'the retried delivery is stored once');

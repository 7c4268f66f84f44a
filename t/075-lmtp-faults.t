#!/usr/bin/perl

# LMTP when things fail: Redis down at RCPT (451 4.3.0, nothing stored),
# Redis killed in the middle of a message (every recipient 451 4.3.0
# after the message, no index entry, no message), the next transaction
# on the same connection once Redis is back, and a client idle for
# nginx's timeout (421 4.4.2, closed).

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

my $R = '127.0.0.1:%%PORT_8379%% timeout=1s';

$x->run_pop3(
    redis => $R,
    mail => lmtp_server(8024, '', redis => $R)
        . lmtp_server(8025, 'timeout 2s;', redis => $R),
);

sub users { $x->add_user($_, 'secret') for qw/ alice bob /; }

users();

$t->plan(12);

my $L = port(8024);

sub count { ($x->mailbox_stat($_[0]))[0] // 0 }

# Redis down: RCPT cannot be checked

my $c = lmtp_client($L);
$c->lmtp('LHLO x');
$x->stop_redis('KILL');
$c->lmtp('MAIL FROM:<>');
like(($c->lmtp('RCPT TO:<alice@example.org>', 10))[0],
    qr/^451 4\.3\.0 <alice\@example\.org> mail store unavailable/,
    'Redis down at RCPT: 451 4.3.0');
$c->lmtp('RSET');

$x->run_redis();
users();

my $ok;
for (1 .. 50) {
    $c->lmtp('MAIL FROM:<>');
    my @r = $c->lmtp('RCPT TO:<alice@example.org>', 10);
    $ok = lmtp_code(@r) eq '250';
    last if $ok;
    $c->lmtp('RSET');
    sleep 0.2;
}
ok($ok, 'Redis back: RCPT accepted');
$c->lmtp('RCPT TO:<bob@example.org>');
like(($c->lmtp('DATA'))[0], qr/^354/, 'DATA');

# Redis killed in the middle of the message

$c->print(lmtp_message('cut', 200000));
sleep 0.5;
$x->stop_redis('KILL');
$c->print(lmtp_message('cut', 200000) . ".\r\n");
my @a = $c->read_reply(15);
my @b = $c->read_reply(15);
like($a[0] // '', qr/^451 4\.3\.0 <alice\@example\.org> /,
    'Redis killed mid-message: alice 451 4.3.0');
like($b[0] // '', qr/^451 4\.3\.0 <bob\@example\.org> /,
    'Redis killed mid-message: bob 451 4.3.0');
like(($c->lmtp('NOOP'))[0], qr/^250/, 'the session goes on');

$x->run_redis();
users();
is(count('alice'), 0, 'nothing stored');

# the next transaction on the same connection

for (1 .. 50) {
    $c->lmtp('MAIL FROM:<>');
    my @r = $c->lmtp('RCPT TO:<alice@example.org>', 10);
    $ok = lmtp_code(@r) eq '250';
    last if $ok;
    $c->lmtp('RSET');
    sleep 0.2;
}
my (undef, $ra) = $c->data("Subject: again\r\n\r\nagain\r\n", 1);
like($ra, qr/^250 2\.0\.0 <alice\@example\.org> stored/,
    'the next transaction delivers');
is(count('alice'), 1, 'stored once');
is(scalar(@{$x->redis_cmd('KEYS', 'pop3:mbox:*:stage:*')}), 0,
    'no staged body left');

# nginx's timeout

$c = lmtp_client(port(8025), timeout => 10);
$c->lmtp('LHLO x');
my @r = $c->read_reply(6);
like($r[0] // '', qr/^421 4\.4\.2 /, 'idle client: 421 4.4.2');
ok($c->closed(3), 'idle client: closed');

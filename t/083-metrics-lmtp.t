#!/usr/bin/perl

# LMTP deliveries in the metrics: each mailbox's outcome of a message
# counted once in pop3ext_deliveries_total{result=...}, the octets of what
# was stored in pop3ext_delivered_bytes_total:
#
#   - a message to two mailboxes: stored 2, its octets twice;
#   - the same message again (the delivery id): duplicate 1;
#   - a mailbox the message does not fit in (refused by STORE, after the
#     message): rejected 1, nothing added to the octets;
#   - Redis stopped at the end of the message: failed 1;
#   - and before that, a delivery id whose record was damaged (a UID with
#     a line end): the 250 reply does not carry it.

use strict;
use warnings;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;
use Test::Nginx::POP3Ext::LMTP;

my $t = Test::Nginx->new()->has(qw/mail http/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->needs_standalone_redis('stops the one Redis server');

$x->run_pop3(
    main => <<'EOF',
http {
    %%TEST_GLOBALS_HTTP%%
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_8180%%;
        location = /metrics { pop3_ext_metrics pop3; }
    }
}
EOF
    mail => "    pop3_ext_metrics_zone pop3 64k;\n"
        . lmtp_server(8024, ''),
);

$x->add_user($_, 'secret') for qw/ alice bob /;

$t->plan(10);

###############################################################################

# the metrics page, its body

sub scrape {
    my $r = http_get('/metrics', PeerAddr => '127.0.0.1:' . port(8180)) // '';
    $r =~ s/^.*?\r\n\r\n//s;
    return $r;
}

sub deliveries {
    my ($result) = @_;
    my $m = scrape();
    return $m =~ /^pop3ext_deliveries_total\{result="$result"\} (\d+)$/m
        ? $1 : 'absent';
}

sub bytes {
    my $m = scrape();
    return $m =~ /^pop3ext_delivered_bytes_total (\d+)$/m ? $1 : 'absent';
}

# one message to @rcpt: the replies after the message, by code

sub deliver {
    my ($msg, @rcpt) = @_;
    my $c = lmtp_client(port(8024));
    $c->lmtp('LHLO test');
    $c->lmtp('MAIL FROM:<a@example.org>');
    $c->lmtp("RCPT TO:<$_>") for @rcpt;
    my (undef, @r) = $c->data($msg, scalar @rcpt);
    $c->lmtp('QUIT');
    return join ' ', map { /^(\d{3})/ ? $1 : '?' } @r;
}

my $msg = lmtp_message('counted', 500);

is(deliver($msg, 'alice', 'bob'), '250 250', 'stored in two mailboxes');
is(deliveries('stored'), 2, 'stored: 2');

# the stored size: Return-Path line and all, from the index

my ($entry) = @{$x->redis_cmd('LRANGE', $x->mbox_key('alice', 'INDEX'),
    0, 0)};
my ($size) = ($entry // '') =~ / (\d+)\z/;
is(bytes(), 2 * ($size // 0), 'delivered octets: the message, twice');

is(deliver($msg, 'alice'), '250', 'the same message again: 250');
is(deliveries('duplicate'), 1, 'duplicate: 1');

# a damaged delivery record: its "UID" is not echoed (no reply injected)

my $dlv = $x->redis_cmd('KEYS', 'pop3:mbox:{alice}:dlv:*');
$x->redis_cmd('SET', $_, "x\r\n250 2.0.0 injected") for @$dlv;
my $c = lmtp_client(port(8024));
$c->lmtp('LHLO test');
$c->lmtp('MAIL FROM:<a@example.org>');
$c->lmtp('RCPT TO:<alice>');
my (undef, $reply) = $c->data($msg, 1);
my @more = $c->lmtp('QUIT');
ok(($reply // '') =~ /^250 2\.0\.0 <alice> already stored as\s*\z/
    && ($more[0] // '') =~ /^221/, 'a damaged UID is not echoed')
    or diag(($reply // '') . ' / ' . ($more[0] // ''));

# bob's limit lets RCPT pass (one octet fits) but not the message

$x->redis_cmd('HSET', $x->mbox_key('bob', 'META'), 'quota_octets',
    ($size // 0) + 10);
is(deliver(lmtp_message('second', 100), 'bob'), '552',
    'a message too large for the mailbox: 552 after the message');
is(deliveries('rejected'), 1, 'rejected: 1');
is(bytes(), 2 * ($size // 0), 'nothing added for the refused one');

# Redis gone between RCPT and the end of the message

$c = lmtp_client(port(8024));
$c->lmtp('LHLO test');
$c->lmtp('MAIL FROM:<a@example.org>');
$c->lmtp('RCPT TO:<alice>');
$x->redis->stop();
my (undef, $r) = $c->data(lmtp_message('lost', 100), 1);
$c->lmtp('QUIT');
is(deliveries('failed') . ' ' . (($r // '') =~ /^(\d{3})/ ? $1 : '?'),
    '1 451', 'Redis down: failed 1, 451');

###############################################################################

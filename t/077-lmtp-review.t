#!/usr/bin/perl

# LMTP: cases a review of the LMTP files found wrong, one part each,
# each on a connection of its own.  The sanitizer run (make test-asan)
# matters here: a use after free shows there as a sanitizer error.

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

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

$x->run_pop3(
    mail => "    server_name lmtp.test;\n" . lmtp_server(8024, '')
        . lmtp_server(8026, 'pop3_ext_lmtp_allow 127.0.0.1/32;'),
);

$x->add_user($_, 'secret') for qw/ alice bob carol /;

$t->plan(26);

my $L = port(8024);

sub count { ($x->mailbox_stat($_[0]))[0] // 0 }

sub stage_keys {
    my $r = $x->redis_cmd('KEYS', 'pop3:mbox:*:stage:*');
    return ref $r eq 'ARRAY' ? @$r : ();
}

# a BDAT chunk bigger than one staging chunk (64 KB for one mailbox): a
# STAGE goes to Redis while the chunk is read

my $chunk = lmtp_message('chunk', 70000);
my $clen = length $chunk;

###############################################################################

# RSET and LHLO between BDAT chunks, a STAGE still unanswered: Redis is
# paused, so the transaction ends before the STAGE's reply comes; the
# RCPT that follows goes over the same Redis connection, so its reply
# comes after the STAGE's

my $c = lmtp_client($L, timeout => 10);
$c->lmtp('LHLO x');

for my $end ('RSET', 'LHLO y') {
    $c->lmtp('MAIL FROM:<>');
    $c->lmtp('RCPT TO:<alice@example.org>');
    $x->redis_cmd('CLIENT', 'PAUSE', 1000);
    $c->print("BDAT $clen\r\n$chunk$end\r\n");
    my @r = $c->read_replies(2);
    like($r[0][0] // '', qr/^250 2\.0\.0 $clen octets/,
        "$end between chunks: chunk acknowledged");
    is(lmtp_code(@{$r[1]}), '250', "$end between chunks: $end");

    like(($c->lmtp('MAIL FROM:<>'))[0], qr/^250 /,
        "$end between chunks: a new transaction");
    like(($c->lmtp('RCPT TO:<bob@example.org>'))[0], qr/^250 /,
        "$end between chunks: RCPT after the STAGE's reply");
    $c->lmtp('RSET');
}

is(count('alice'), 0, 'ended between chunks: nothing stored');
is(scalar(stage_keys()), 0, 'ended between chunks: no staged body left');

# RCPT after the first BDAT chunk

$c = lmtp_client($L, timeout => 10);
$c->lmtp('LHLO x');
$c->lmtp('MAIL FROM:<>');
$c->lmtp('RCPT TO:<alice@example.org>');
$c->print("BDAT $clen\r\n$chunk");
like(($c->read_reply())[0], qr/^250 2\.0\.0 $clen octets/, 'first chunk');
like(($c->lmtp('RCPT TO:<bob@example.org>'))[0], qr/^503 5\.5\.1 /,
    'RCPT after BDAT refused');
$c->print("BDAT 5 LAST\r\nlast\n");
my @r = $c->read_reply();
like($r[0], qr/^250 2\.0\.0 <alice\@example\.org> stored as /,
    'BDAT LAST: the recipient before the chunks');
ok(!$c->can_read(0.5), 'BDAT LAST: no reply for the refused recipient');
is(count('alice'), 1, 'RCPT after BDAT: alice has the message');
is(count('bob'), 0, 'RCPT after BDAT: bob has nothing');

# usage at the edge of 64 bits against a mailbox's quota: full

$c = lmtp_client($L);
$c->lmtp('LHLO x');
my $meta = $x->mbox_key('carol', 'META');
$x->redis_cmd('HSET', $meta, 'messages', 0, 'octets', '9223372036854775807',
    'quota_octets', 1000, 'quota_messages', 0);
$c->lmtp('MAIL FROM:<> SIZE=10');
like(($c->lmtp('RCPT TO:<carol@example.org>'))[0],
    qr/^552 5\.2\.2 <carol\@example\.org> mailbox full/,
    'octets near the limit: full');
$c->lmtp('RSET');

$x->redis_cmd('HSET', $meta, 'messages', '9223372036854775807', 'octets', 0,
    'quota_octets', 0, 'quota_messages', 10);
$c->lmtp('MAIL FROM:<>');
like(($c->lmtp('RCPT TO:<carol@example.org>'))[0],
    qr/^552 5\.2\.2 <carol\@example\.org> mailbox full/,
    'messages near the limit: full');
$c->lmtp('RSET');
$x->redis_cmd('DEL', $meta);

# a long address: the reply line stays within 512 octets

my $long = ('l' x 1500) . '@example.org';
$c = lmtp_client($L);
$c->lmtp('LHLO x');
$c->lmtp('MAIL FROM:<>');
$c->send("RCPT TO:<$long>");
my $line = $c->read_line();
like($line // '', qr/^550 5\.1\.1 /, 'a long address: unknown');
ok(defined $line && length($line) <= 512,
    'a long address: the reply line has at most 512 octets ('
    . length($line // '') . ')');
$c->lmtp('RSET');

# SIZE= of 20 digits: beyond any limit, and still a number

$c = lmtp_client($L);
$c->lmtp('LHLO x');
like(($c->lmtp('MAIL FROM:<> SIZE=99999999999999999999'))[0],
    qr/^552 5\.3\.4 /, 'SIZE= of 20 digits: 552 5.3.4');
like(($c->lmtp('MAIL FROM:<> SIZE=9x'))[0], qr/^501 5\.5\.4 /,
    'SIZE= not a number: 501 5.5.4');
like(($c->lmtp('NOOP'))[0], qr/^250 /, 'the session goes on');

# a refused client's BDAT: its chunk is read and dropped too, or what it
# holds would be taken for commands (here a QUIT)

$c = lmtp_client(port(8026), local => '127.0.0.2', host => '127.0.0.1');
$c->print("BDAT 10\r\nQUIT\r\nabcdNOOP\r\n");
my @p = $c->read_replies(2);
like($p[0][0] // '', qr/^554 5\.7\.1 /, 'refused client: BDAT refused');
like($p[1][0] // '', qr/^554 5\.7\.1 /,
    'refused client: the chunk dropped, the next command refused');
like(($c->lmtp('QUIT'))[0], qr/^221 /, 'refused client: QUIT');

###############################################################################

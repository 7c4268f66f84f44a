#!/usr/bin/perl

# LMTP (RFC 2033), the module's second protocol: the greeting, LHLO and
# its extensions, one reply per accepted recipient after the message in
# RCPT order (an unknown user refused, the others delivered), bodies as
# the model wants them (dot-unstuffed, bare LF and lone CR made CRLF, a
# Return-Path line) and read back over POP3, pipelining, BDAT, RSET,
# VRFY, HELO, bad sequences and max_errors, SIZE, a retried delivery
# stored once, recipients that share a mailbox, quotas at RCPT and in
# STORE (552 5.2.2, or 452 4.2.2 with pop3_ext_lmtp_quota_tempfail), a
# refused network (554 5.7.1), long lines, and a client that leaves in
# the middle of DATA (nothing stored, the staged body gone).

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

# 8024: LMTP, the defaults with small quotas by default
# 8025: LMTP, quotas refused with 452, a 1 KB size limit, 3 recipients
# 8026: LMTP, only 127.0.0.1 may deliver
# 8027: LMTP, user names are whole addresses
# 8028: LMTP, max_errors 5

$x->run_pop3(
    server => "        pop3_ext_secure_networks 127.0.0.0/8;\n",
    mail => "    server_name lmtp.test;\n"
        . lmtp_server(8024, 'pop3_ext_quota_messages 4;')
        . lmtp_server(8028, 'max_errors 5;')
        . lmtp_server(8025, "pop3_ext_quota_messages 4;\n"
            . "pop3_ext_lmtp_quota_tempfail on;\n"
            . "pop3_ext_lmtp_max_size 1k;\n"
            . "pop3_ext_lmtp_max_recipients 3;")
        . lmtp_server(8026, 'pop3_ext_lmtp_allow 127.0.0.1/32;')
        . lmtp_server(8027, 'pop3_ext_lmtp_recipient address;'),
);

$x->add_user($_, 'secret') for qw/ alice bob carol dave erin /;
$x->add_user('frank', 'secret', '--mailbox', 'alice');
$x->add_user('full@example.org', 'secret');

$t->plan(90);

my $L = port(8024);
my $L2 = port(8025);
my $LA = port(8026);
my $LD = port(8027);

sub stat_of { join ' ', $x->mailbox_stat($_[0]) }

sub retr {
    my ($user, $n) = @_;
    my $s = $x->session(port(8110), $user, 'secret') or return '';
    my $m = $s->cmd_multi("RETR $n");
    $s->cmd('QUIT');
    return $m // '';
}

sub index_of {
    my ($mbox) = @_;
    return $x->redis_cmd('LRANGE', $x->mbox_key($mbox, 'INDEX'), 0, -1);
}

sub stage_keys {
    my $r = $x->redis_cmd('KEYS', 'pop3:mbox:*:stage:*');
    return ref $r eq 'ARRAY' ? @$r : ();
}

###############################################################################

# greeting and LHLO

my $c = lmtp_client($L);
like($c->greeting, qr/^220 lmtp\.test LMTP/, 'greeting');
my @r = $c->lmtp('MAIL FROM:<a@example.org>');
is(lmtp_code(@r), '503', 'MAIL before LHLO');
like($r[0], qr/^503 5\.5\.1 /, 'MAIL before LHLO: enhanced code');
@r = $c->lmtp('HELO client');
like($r[0], qr/^500 5\.5\.1 .*LHLO/, 'HELO refused');
@r = $c->lmtp('LHLO');
like($r[0], qr/^501 5\.5\.4/, 'LHLO without a name');
@r = $c->lmtp('LHLO client.test');
is(lmtp_code(@r), '250', 'LHLO');
my $caps = lmtp_text(@r);
like($caps, qr/^250-lmtp\.test$/m, 'LHLO: server name');
like($caps, qr/^250[- ]PIPELINING$/m, 'LHLO: PIPELINING');
like($caps, qr/^250[- ]ENHANCEDSTATUSCODES$/m, 'LHLO: ENHANCEDSTATUSCODES');
like($caps, qr/^250[- ]8BITMIME$/m, 'LHLO: 8BITMIME');
like($caps, qr/^250[- ]CHUNKING$/m, 'LHLO: CHUNKING');
like($caps, qr/^250[- ]SIZE 52428800$/m, 'LHLO: SIZE, 50m by default');
unlike($caps, qr/STARTTLS/, 'LHLO: no STARTTLS without TLS');

like(($c->lmtp('NOOP'))[0], qr/^250 2\.0\.0/, 'NOOP');
like(($c->lmtp('VRFY alice'))[0], qr/^252 2\.5\.2/, 'VRFY refused politely');
like(($c->lmtp('EXPN staff'))[0], qr/^502 5\.5\.1/, 'EXPN');
like(($c->lmtp('RCPT TO:<alice@x>'))[0], qr/^503 5\.5\.1/,
    'RCPT before MAIL');
like(($c->lmtp('DATA'))[0], qr/^503 5\.5\.1/, 'DATA before MAIL');
like(($c->lmtp('MAIL FROM:alice'))[0], qr/^501 5\.5\.4/, 'MAIL syntax');
like(($c->lmtp('MAIL FROM:<> FOO=1'))[0], qr/^555 5\.5\.4/,
    'unknown MAIL parameter');
like(($c->lmtp('MAIL FROM:<> SIZE=99999999999'))[0], qr/^552 5\.3\.4/,
    'SIZE over the limit');

# several recipients, one unknown: one reply each, in RCPT order

like(($c->lmtp('MAIL FROM:<sender@example.org> BODY=8BITMIME SIZE=100'))[0],
    qr/^250 2\.1\.0/, 'MAIL FROM');
like(($c->lmtp('MAIL FROM:<x@example.org>'))[0], qr/^503 5\.5\.1/,
    'second MAIL');
like(($c->lmtp('RCPT TO:<alice@example.org>'))[0], qr/^250 2\.1\.5/,
    'RCPT alice');
like(($c->lmtp('RCPT TO:<nobody@example.org>'))[0],
    qr/^550 5\.1\.1 <nobody\@example\.org> user unknown/, 'RCPT unknown');
like(($c->lmtp('RCPT TO:<bob@example.org>'))[0], qr/^250 2\.1\.5/,
    'RCPT bob');
like(($c->lmtp('RCPT TO:<a b@example.org>'))[0], qr/^550 5\.1\.1/,
    'RCPT of an impossible name');
like(($c->lmtp('RCPT TO:<alice@example.org> NOTIFY=NEVER'))[0],
    qr/^555 5\.5\.4/, 'RCPT parameter');

my $body = "Subject: one\r\n\r\n.leading dot\r\nbare LF\nlone CR\rend"
    . "\r\n..\r\n";
$c->print("DATA\r\n");
@r = $c->read_reply();
like($r[0], qr/^354 /, 'DATA: 354');
(my $wire = $body) =~ s/^\./../mg;
$c->print($wire . ".\r\n");
my @a = $c->read_reply();
my @b = $c->read_reply();
like($a[0], qr/^250 2\.0\.0 <alice\@example\.org> stored as [0-9a-f]{24}$/,
    'reply for alice first');
like($b[0], qr/^250 2\.0\.0 <bob\@example\.org> stored as [0-9a-f]{24}$/,
    'reply for bob second');
ok(!$c->can_read(0.5), 'no reply for the unknown recipient');

my $stored = "Return-Path: <sender\@example.org>\r\nSubject: one\r\n\r\n"
    . ".leading dot\r\nbare LF\r\nlone CR\r\nend\r\n..\r\n";
is(retr('alice', 1), $stored, 'stored body: unstuffed, CRLF, Return-Path');
is(retr('bob', 1), $stored, 'the same body for bob');
my ($e) = @{index_of('alice')};
like($e, qr/^[0-9a-f]{24} ${\ length $stored}$/, 'index entry and size');
is($x->redis_cmd('HGET', $x->mbox_key('alice', 'META'), 'messages'), 1,
    'usage kept');
is(scalar(stage_keys()), 0, 'no staged body left');

# the same message again: the delivery id finds it, nothing is stored

$c->lmtp('MAIL FROM:<sender@example.org>');
$c->lmtp('RCPT TO:<alice@example.org>');
$c->lmtp('RCPT TO:<carol@example.org>');
my (undef, $ra, $rc) = $c->data($body, 2);
like($ra, qr/^250 2\.0\.0 <alice\@example\.org> already stored as /,
    'retried delivery: already stored');
like($rc, qr/^250 2\.0\.0 <carol\@example\.org> stored as /,
    'retried delivery: a new recipient gets it');
is(stat_of('alice'), '1 ' . length $stored, 'retried delivery stored once');
is(stat_of('carol'), '1 ' . length $stored, 'carol has it');

# two recipients of one mailbox (frank reads alice's): one copy, two 250

$c->lmtp('MAIL FROM:<>');
$c->lmtp('RCPT TO:<frank@example.org>');
$c->lmtp('RCPT TO:<alice@example.org>');
(undef, $ra, $rc) = $c->data("Subject: shared\r\n\r\nx\r\n", 2);
like($ra, qr/^250 2\.0\.0 <frank\@example\.org> stored as (\w+)/,
    'shared mailbox: first recipient');
my ($uid1) = $ra =~ /as (\w+)$/;
like($rc, qr/^250 2\.0\.0 <alice\@example\.org> stored as \Q$uid1\E$/,
    'shared mailbox: second recipient, same copy');
is(($x->mailbox_stat('alice'))[0], 2, 'shared mailbox: one copy');
like(retr('alice', 2), qr/^Return-Path: <>\r\n/, 'null sender');

# RSET, then a DATA with no valid recipient

$c->lmtp('MAIL FROM:<>');
$c->lmtp('RCPT TO:<dave@example.org>');
like(($c->lmtp('RSET'))[0], qr/^250 2\.0\.0/, 'RSET');
like(($c->lmtp('RCPT TO:<dave@example.org>'))[0], qr/^503/,
    'RSET ended the transaction');
$c->lmtp('MAIL FROM:<>');
$c->lmtp('RCPT TO:<nobody@example.org>');
like(($c->lmtp('DATA'))[0], qr/^503 5\.5\.1 no valid recipients/,
    'DATA without a valid recipient');
$c->lmtp('RSET');

# pipelining: the whole transaction in one write, then the next

$c->print("MAIL FROM:<p\@example.org>\r\nRCPT TO:<dave\@example.org>\r\n"
    . "RCPT TO:<nobody\@example.org>\r\nRCPT TO:<erin\@example.org>\r\n"
    . "DATA\r\n");
my @p = $c->read_replies(5);
is(join(' ', map { lmtp_code(@$_) } @p), '250 250 550 250 354',
    'pipelined replies, in order');
$c->print("Subject: piped\r\n\r\nhello\r\n.\r\nRSET\r\nNOOP\r\n");
@p = $c->read_replies(4);
is(join(' ', map { lmtp_code(@$_) } @p), '250 250 250 250',
    'two recipients, then RSET and NOOP, pipelined after the data');
like($p[0][0], qr/<dave\@example\.org>/, 'pipelined: dave first');
like($p[1][0], qr/<erin\@example\.org>/, 'pipelined: erin second');

# BDAT: chunks, no dot-unstuffing, a last line without its end

$c->print("MAIL FROM:<b\@example.org>\r\nRCPT TO:<dave\@example.org>\r\n"
    . "BDAT 20\r\nSubject: bdat\r\n\r\n..\nBDAT 6 LAST\r\nno end");
@p = $c->read_replies(4);
is(join(' ', map { lmtp_code(@$_) } @p), '250 250 250 250', 'BDAT');
like($p[2][0], qr/^250 2\.0\.0 20 octets/, 'BDAT: chunk acknowledged');
like($p[3][0], qr/^250 2\.0\.0 <dave\@example\.org> stored as/,
    'BDAT LAST: the recipient\'s reply');
is(retr('dave', 2), "Return-Path: <b\@example.org>\r\nSubject: bdat\r\n"
    . "\r\n..\r\nno end\r\n", 'BDAT body: no unstuffing, CRLF, ended');
$c->print("BDAT 5\r\nhello");
@r = $c->read_reply();
like($r[0], qr/^503 5\.5\.1/, 'BDAT without MAIL: refused, chunk read');
like(($c->lmtp('NOOP'))[0], qr/^250/, 'the chunk was not taken as commands');

# quota: 4 messages (pop3_ext_quota_messages); alice has 2, dave 2

$x->deliver('dave', "Subject: q\r\n\r\nq\r\n");
$x->deliver('dave', "Subject: q\r\n\r\nq\r\n");
like(($c->lmtp('MAIL FROM:<>'))[0], qr/^250/, 'quota: MAIL');
like(($c->lmtp('RCPT TO:<dave@example.org>'))[0],
    qr/^552 5\.2\.2 <dave\@example\.org> mailbox full/,
    'quota at RCPT: 552 5.2.2');
$c->lmtp('RSET');

my $c2 = lmtp_client($L2);
$c2->lmtp('LHLO x');
$c2->lmtp('MAIL FROM:<>');
like(($c2->lmtp('RCPT TO:<dave@example.org>'))[0],
    qr/^452 4\.2\.2 <dave\@example\.org> mailbox full/,
    'quota at RCPT with quota_tempfail: 452 4.2.2');

# the quota enforced by STORE: a mailbox that fills between RCPT and DATA

$c2->lmtp('RCPT TO:<alice@example.org>');
$x->deliver('alice', "Subject: q\r\n\r\nq\r\n");
$x->deliver('alice', "Subject: q\r\n\r\nq\r\n");
(undef, $ra) = $c2->data("Subject: late\r\n\r\nlate\r\n", 1);
like($ra, qr/^452 4\.2\.2 <alice\@example\.org> mailbox full/,
    'quota enforced again at the end of the message');
is(($x->mailbox_stat('alice'))[0], 4, 'over quota: nothing stored');
is(scalar(stage_keys()), 0, 'over quota: the staged body is gone');

# a mailbox's own limit wins over the server's

$x->redis_cmd('HSET', $x->mbox_key('alice', 'META'), 'quota_messages', 0);
$c2->lmtp('MAIL FROM:<>');
like(($c2->lmtp('RCPT TO:<alice@example.org>'))[0], qr/^250/,
    'quota_messages 0 in meta: no limit');
$c2->lmtp('RSET');

# size limit (1k on 8025), recipients limit (3)

$c2->lmtp('MAIL FROM:<>');
$c2->lmtp("RCPT TO:<$_\@example.org>") for qw/ bob carol erin /;
like(($c2->lmtp('RCPT TO:<alice@example.org>'))[0], qr/^452 4\.5\.3/,
    'too many recipients');
my @big = $c2->data(lmtp_message('big', 4000), 3);
like($big[1], qr/^552 5\.3\.4 <bob\@example\.org> message too big/,
    'message over the size limit');
is(scalar(@big), 4, 'one refusal per recipient');
like(($c2->lmtp('NOOP'))[0], qr/^250/, 'the session goes on');
is(stat_of('erin'), '1 ' . length(retr('erin', 1)), 'nothing stored');

# a long line, then max_errors (5 on 8028)

$c = lmtp_client(port(8028));
$c->print(('A' x 3000) . "\r\n");
like(($c->read_reply())[0], qr/^500 5\.5\.2 line too long/, 'long line');
like(($c->lmtp('NOOP'))[0], qr/^250/, 'after the long line');
$c->lmtp('FOO') for 1 .. 3;

@r = $c->lmtp('BAR');
like($r[0], qr/^500 /, 'the fifth error');
@r = $c->read_reply();
like($r[0], qr/^421 4\.7\.0 /, 'max_errors: 421');
ok($c->closed(3), 'max_errors: closed');

# QUIT

$c = lmtp_client($L);
like(($c->lmtp('QUIT'))[0], qr/^221 2\.0\.0/, 'QUIT');
ok($c->closed(3), 'QUIT closes');

# a refused network: 554 5.7.1, every command but QUIT refused

$c = lmtp_client($LA, local => '127.0.0.2', host => '127.0.0.1');
like($c->greeting, qr/^554 5\.7\.1 /, 'refused network: 554 5.7.1');
like(($c->lmtp('LHLO x'))[0], qr/^554 5\.7\.1 /, 'refused: LHLO');
like(($c->lmtp('QUIT'))[0], qr/^221 /, 'refused: QUIT');
$c = lmtp_client($LA, host => '127.0.0.1');
like($c->greeting, qr/^220 /, 'allowed network: 220');

# user names that are addresses

$c = lmtp_client($LD);
$c->lmtp('LHLO x');
$c->lmtp('MAIL FROM:<>');
like(($c->lmtp('RCPT TO:<full@example.org>'))[0], qr/^250/,
    'pop3_ext_lmtp_recipient address');
like(($c->lmtp('RCPT TO:<alice@example.org>'))[0], qr/^550 5\.1\.1/,
    'pop3_ext_lmtp_recipient address: the local part is not a user');
(undef, $ra) = $c->data("Subject: full\r\n\r\nx\r\n", 1);
like($ra, qr/^250 /, 'delivered to an address-named user');

# line ends: LF only, and a long line of lone CRs; what pop3ext deliver
# would store

$c = lmtp_client($L);
$c->lmtp('LHLO x');
$c->lmtp('MAIL FROM:<>');
$c->lmtp('RCPT TO:<bob@example.org>');
$c->lmtp('DATA');
my $crs = "A\r" x 20000;
$c->print("Subject: lf\nline\n.\n..x\n$crs\nend\r\n.\r\n");
like(($c->read_reply())[0], qr/^250 /, 'LF line ends, lone CRs');
(my $want = "Subject: lf\nline\n.\n..x\n$crs\nend\n")
    =~ s/\r?\n|\r/\r\n/g;
is(retr('bob', 2), "Return-Path: <>\r\n$want",
    'LF and lone CR made CRLF, dots after a bare LF kept');

# a client that leaves in the middle of DATA: nothing stored, and the
# staged body (which had a TTL) is deleted

my $before = stat_of('erin');
$c = lmtp_client($L);
$c->lmtp('LHLO x');
$c->lmtp('MAIL FROM:<>');
$c->lmtp('RCPT TO:<erin@example.org>');
$c->lmtp('DATA');
$c->print(lmtp_message('dropped', 300000));
my @st;
for (1 .. 50) {
    @st = stage_keys();
    last if @st && $x->redis_cmd('STRLEN', $st[0]) >= 65536;
    sleep 0.1;
}
is(scalar(@st), 1, 'mid-DATA: a staged body');
my $ttl = @st ? $x->redis_cmd('PTTL', $st[0]) : -1;
ok($ttl > 0 && $ttl <= 3600000, "mid-DATA: the staged body has a TTL ($ttl)");
$c->close();
my $gone;
for (1 .. 50) {
    $gone = !stage_keys();
    last if $gone;
    sleep 0.1;
}
ok($gone, 'dropped mid-DATA: the staged body is deleted');
is(stat_of('erin'), $before, 'dropped mid-DATA: nothing stored');

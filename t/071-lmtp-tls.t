#!/usr/bin/perl

# LMTP and TLS: STARTTLS (RFC 3207) with nginx's mail TLS settings,
# offered only before TLS, refused inside a transaction; plaintext
# pipelined behind STARTTLS is dropped, never executed inside TLS; the
# client says LHLO again; a delivery inside TLS; "starttls only" refuses
# MAIL before TLS (530 5.7.0); implicit TLS on a "listen ... ssl" port.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_ssl;

my ($crt, $key) = $x->make_self_signed('server', 'localhost');

# 8024: STARTTLS on; 8025: starttls only; 8026: implicit TLS

$x->run_pop3(
    mail => "    ssl_certificate $crt;\n"
        . "    ssl_certificate_key $key;\n"
        . "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        . lmtp_server(8024, 'starttls on;')
        . lmtp_server(8025, 'starttls only;')
        . lmtp_server(8026, '', listen => 'ssl'),
);

$x->add_user($_, 'secret') for qw/ alice bob /;

$t->plan(19);

my $L = port(8024);

my $c = lmtp_client($L);
my @r = $c->lmtp('LHLO x');
like(lmtp_text(@r), qr/^250-STARTTLS$/m, 'STARTTLS offered');
$c->lmtp('MAIL FROM:<>');
like(($c->lmtp('STARTTLS'))[0], qr/^503 5\.5\.1/,
    'STARTTLS within a transaction');
$c->lmtp('RSET');
like(($c->lmtp('STARTTLS x'))[0], qr/^501 5\.5\.4/, 'STARTTLS with args');

# plaintext behind STARTTLS is dropped

$c->print("STARTTLS\r\nMAIL FROM:<injected\@example.org>\r\n");
like(($c->read_reply())[0], qr/^220 2\.0\.0/, 'STARTTLS: 220');
ok($c->start_tls(), 'TLS handshake');
is($c->{plaintext_left}, '', 'nothing sent in plaintext after 220');
@r = $c->lmtp('MAIL FROM:<a@example.org>');
like($r[0], qr/^503 5\.5\.1 LHLO first/,
    'after TLS: LHLO again, the injected MAIL was dropped');
@r = $c->lmtp('LHLO x');
unlike(lmtp_text(@r), qr/STARTTLS/, 'no STARTTLS inside TLS');
like(($c->lmtp('STARTTLS'))[0], qr/^502 5\.5\.1/, 'STARTTLS inside TLS');
$c->lmtp('MAIL FROM:<tls@example.org>');
$c->lmtp('RCPT TO:<alice@example.org>');
$c->lmtp('RCPT TO:<bob@example.org>');
my (undef, $ra, $rb) = $c->data(lmtp_message('tls', 200000), 2);
like($ra, qr/^250 2\.0\.0 <alice\@example\.org> stored/, 'delivered in TLS');
like($rb, qr/^250 2\.0\.0 <bob\@example\.org> stored/, 'both recipients');
is(($x->mailbox_stat('alice'))[0], 1, 'stored');
like(($c->lmtp('QUIT'))[0], qr/^221 /, 'QUIT in TLS');

# starttls only

$c = lmtp_client(port(8025));
$c->lmtp('LHLO x');
like(($c->lmtp('MAIL FROM:<>'))[0], qr/^530 5\.7\.0/,
    'starttls only: MAIL before TLS');
like(($c->lmtp('STARTTLS'))[0], qr/^220 /, 'starttls only: STARTTLS');
ok($c->start_tls(), 'starttls only: handshake');
$c->lmtp('LHLO x');
like(($c->lmtp('MAIL FROM:<>'))[0], qr/^250 /, 'starttls only: MAIL in TLS');

# implicit TLS

$c = lmtp_client(port(8026), ssl => 1);
like($c->greeting, qr/^220 /, 'implicit TLS: greeting');
@r = $c->lmtp('LHLO x');
unlike(lmtp_text(@r), qr/STARTTLS/, 'implicit TLS: no STARTTLS');

#!/usr/bin/perl

# LMTP with a real client, swaks (--protocol LMTP): several recipients
# (one reply each after the data), an unknown one among them (550 5.1.1,
# the others delivered), pipelining, STARTTLS, and what is stored read
# back over POP3.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_ssl
    ->has_prog('swaks');

my ($crt, $key) = $x->make_self_signed('server', 'localhost');

$x->run_pop3(
    server => "        pop3_ext_secure_networks 127.0.0.0/8;\n",
    mail => "    ssl_certificate $crt;\n"
        . "    ssl_certificate_key $key;\n"
        . "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        . lmtp_server(8024, 'starttls on;'),
);

$x->add_user($_, 'secret') for qw/ alice bob carol /;

$t->plan(14);

my $L = port(8024);

sub swaks {
    my (@args) = @_;
    return $x->run_cmd([ $x->prog('swaks'), '--protocol', 'LMTP',
        '--server', '127.0.0.1', '--port', $L, '--helo', 'client.test',
        '--from', 'sender@example.org', '--timeout', 20, @args ],
        { timeout => 60 });
}

# two recipients

my ($rc, $out, $err) = swaks('--to', 'alice@example.org,bob@example.org',
    '--header', 'Subject: swaks two');
is($rc, 0, 'swaks: two recipients') or diag($out, $err);
my $two = qr/<-  250 2\.0\.0 <alice\@example\.org> stored as \w+\r?\n/;
like($out, qr/$two<-  250 2\.0\.0 <bob\@example\.org> stored as/,
    'swaks: one reply per recipient, in order');
is(($x->mailbox_stat('alice'))[0], 1, 'alice has it');
is(($x->mailbox_stat('bob'))[0], 1, 'bob has it');

my $s = $x->session(port(8110), 'bob', 'secret');
my $m = $s ? $s->cmd_multi('RETR 1') // '' : '';
like($m, qr/^Return-Path: <sender\@example\.org>\r\n/, 'Return-Path');
like($m, qr/^Subject: swaks two\r$/m, 'the message over POP3');
$s->cmd('QUIT') if $s;

# an unknown recipient among them: refused at RCPT, the others delivered

($rc, $out, $err) = swaks('--to',
    'alice@example.org,nobody@example.org,carol@example.org');
like($out, qr/<\*\* 550 5\.1\.1 <nobody\@example\.org> user unknown/,
    'swaks: unknown recipient 550 5.1.1');
like($out, qr/<-  250 2\.0\.0 <alice\@example\.org> stored/,
    'swaks: alice delivered');
is(($x->mailbox_stat('carol'))[0], 1, 'carol delivered');
is(($x->mailbox_stat('alice'))[0], 2, 'alice delivered');

# pipelining

($rc, $out, $err) = swaks('--pipeline', '--to',
    'alice@example.org,bob@example.org,carol@example.org');
is($rc, 0, 'swaks --pipeline') or diag($out, $err);
is(($x->mailbox_stat('carol'))[0], 2, 'pipelined delivery');

# STARTTLS

($rc, $out, $err) = swaks('--tls', '--to', 'alice@example.org');
is($rc, 0, 'swaks --tls') or diag($out, $err);
like($out, qr/TLS started/, 'swaks: TLS started');

#!/usr/bin/perl

# A real client written by others: curl's pop3:// support.  RETR of a
# message byte-exact (dot-stuffed lines, 8-bit octets, 1 MB), the LIST of
# the maildrop, a custom UIDL request, DELE, and a wrong password.

use strict;
use warnings;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_prog('curl')
    ->run_pop3();

my $big = "Subject: big\r\n\r\n";
my $i = 0;
while (length($big) < 1024 * 1024) {
    $big .= ($i % 5 == 0 ? '.' : '') . ('q' x ($i % 120)) . "\r\n";
    $i++;
}

my @crlf = (
    "Subject: one\r\n\r\nfirst\r\n.dotted\r\n..two dots\r\n.\r\nend\r\n",
    "Subject: two\r\n\r\nGr\xc3\xbc\xc3\x9fe \xff\x80\r\n",
    $big,
);

$x->add_user('alice', 'secret');
$x->deliver('alice', $_) for @crlf;

$t->plan(11);

my $url = 'pop3://alice:secret@127.0.0.1:' . port(8110);

sub curl {
    my (@args) = @_;
    return $x->run_cmd([ $x->prog('curl'), '-sS', '--max-time', '30',
        @args ], { timeout => 40 });
}

###############################################################################

my ($rc, $out, $err) = curl("$url/1");
is($rc, 0, 'curl RETR 1') or diag($err);
is($out, $crlf[0], 'message 1 byte-exact');

($rc, $out) = curl("$url/2");
is($out, $crlf[1], 'message 2 (8-bit) byte-exact');

($rc, $out) = curl("$url/3");
ok($out eq $crlf[2], '1 MB message byte-exact')
    or diag('got ' . length($out) . ' octets, want ' . length($crlf[2]));

($rc, $out, $err) = curl("$url/");
is($rc, 0, 'curl LIST') or diag($err);
is($out, join('', map { "$_ " . length($crlf[$_ - 1]) . "\r\n" } 1 .. 3),
    'LIST output');

($rc, $out) = curl('-X', 'UIDL', "$url/");
like($out, qr/\A1 \S+\r\n2 \S+\r\n3 \S+\r\n\z/, 'custom request UIDL');

($rc, undef, $err) = curl('-X', 'DELE', '-I', "$url/2");
is($rc, 0, 'curl DELE 2') or diag($err);

($rc, $out) = curl("$url/");
is($out, "1 " . length($crlf[0]) . "\r\n2 " . length($crlf[2]) . "\r\n",
    'message 2 gone after curl QUIT');

($rc, $out, $err) = curl('pop3://alice:wrong@127.0.0.1:' . port(8110)
    . '/1');
isnt($rc, 0, 'wrong password: curl fails');
is($out, '', 'wrong password: no message');

###############################################################################

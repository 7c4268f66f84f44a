#!/usr/bin/perl

# RFC 6856: CAPA offers "UTF8 USER" before login, the UTF8 command is
# accepted in the AUTHORIZATION state only, and a user name and password
# in UTF-8 log in; a message with UTF-8 headers comes back as stored.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();

my $user = "j\xc3\xbcrgen";                     # jürgen
my $pass = "p\xc3\xa4ss w\xc3\xb6rd";           # päss wörd
my $msg = "Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n\xe2\x82\xac 5\r\n";

$x->add_user($user, $pass);
$x->deliver($user, $msg);

$t->plan(7);

my $port = port(8110);

###############################################################################

my $c = $x->client(port => $port);
my $capa = $c->cmd_multi('CAPA') // '';
like($capa, qr/^UTF8 USER\r$/m, 'CAPA before login: UTF8 USER');
like($c->cmd('UTF8') // '', qr/^\+OK/, 'UTF8 in AUTHORIZATION: +OK');
like($c->cmd("USER $user") // '', qr/^\+OK/, 'USER in UTF-8');
like($c->cmd("PASS $pass", 15) // '', qr/^\+OK/, 'PASS in UTF-8');

is($c->cmd_multi('RETR 1'), $msg, 'UTF-8 headers come back as stored');
unlike($c->cmd_multi('CAPA') // '', qr/UTF8/, 'no UTF8 in CAPA after login');
like($c->cmd('UTF8') // '', qr/^-ERR/, 'UTF8 after login: -ERR');
$c->cmd('QUIT');

###############################################################################

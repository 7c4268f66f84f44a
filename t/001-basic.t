#!/usr/bin/perl

# Greeting, CAPA in both states, QUIT, and bad input in the AUTHORIZATION
# state: unknown and misplaced commands, empty, long and NUL-bearing lines,
# max_errors.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%
include pop3ext_modules.conf;    # the module, unless compiled in (POP3Ext)

daemon off;

events {
}

mail {
    auth_http 127.0.0.1:1/unused;

    server {
        listen 127.0.0.1:%%PORT_8110%%;
        protocol pop3_ext;
        pop3_ext_redis 127.0.0.1:%%PORT_8379%%;
        max_errors 1000;    # this file sends many bad commands
    }

    server {
        listen 127.0.0.1:%%PORT_8111%%;
        protocol pop3_ext;
        pop3_ext_redis 127.0.0.1:%%PORT_8379%%;
        max_errors 3;
    }
}
EOF

$x->run();    # the test's Redis, then $t->run()
$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: hello\n\nhello\n");

$t->plan(47);

my $port = port(8110);

###############################################################################

# greeting

my $s = $x->client(port => $port);
like($s->greeting // '', qr/^\+OK /, 'greeting');
like($s->{last_line_raw} // '', qr/\r\n\z/, 'greeting ends with CRLF');
ok(length($s->{last_line_raw} // '') <= 512, 'greeting at most 512 octets');

# CAPA before login

my ($st, $capa) = $s->cmd_multi('CAPA');
like($st // '', qr/^\+OK/, 'CAPA +OK');
my %capa = capa($capa);
ok($capa{TOP}, 'CAPA TOP');
ok($capa{USER}, 'CAPA USER before login');
ok($capa{UIDL}, 'CAPA UIDL');
ok($capa{PIPELINING}, 'CAPA PIPELINING');
ok($capa{'RESP-CODES'}, 'CAPA RESP-CODES');
ok($capa{'AUTH-RESP-CODE'}, 'CAPA AUTH-RESP-CODE');
is($capa{EXPIRE} // '', 'EXPIRE NEVER', 'CAPA EXPIRE NEVER');
ok($capa{IMPLEMENTATION}, 'CAPA IMPLEMENTATION');
ok(!grep({ length > 255 } split /\r\n/, $capa // ''),
    'CAPA lines at most 255 octets');

# commands of the TRANSACTION state are refused before login

$s->cmd_err('STAT');
$s->cmd_err('LIST');
$s->cmd_err('RETR 1');
$s->cmd_err('DELE 1');
$s->cmd_err('UIDL');
$s->cmd_err('TOP 1 0');
$s->cmd_err('RSET');
$s->cmd_err('LAST');

# unknown commands and bad lines

$s->cmd_err('XYZZY', 'unknown command');
$s->cmd_err('', 'empty line');
$s->cmd_err("CAPA\0", 'NUL byte after a command');
$s->cmd_err("US\0ER alice", 'NUL byte inside a command');
$s->cmd_err("\xff\xfe\x80", '8-bit garbage');
$s->cmd_err('PASS secret', 'PASS without USER');

# a line over the limit is refused as one line, and then either the
# session goes on or it is closed cleanly

$s->send('USER ' . ('x' x 3000));
my $r = $s->reply();
like($r // '', qr/^-ERR/, 'over-long line -ERR');
$r = $s->cmd('CAPA');
if (defined $r) {
    like($r, qr/^\+OK/, 'session sane after a long line');
    $s->read_multi();
} else {
    pass('session closed after a long line');
}

# lower-case commands, and QUIT in AUTHORIZATION

$s = $x->client(port => $port);
($st) = $s->cmd_multi('capa');
like($st // '', qr/^\+OK/, 'commands are case-insensitive');
$s->cmd_ok('QUIT');
ok($s->closed(), 'QUIT closes the connection');

# CAPA after login: no USER, the rest still there

$s = $x->session($port, 'alice', 'secret');
($st, $capa) = $s ? $s->cmd_multi('CAPA') : ();
like($st // '', qr/^\+OK/, 'CAPA after login');
%capa = capa($capa);
ok(!$capa{USER}, 'no USER after login');
ok($capa{TOP} && $capa{UIDL} && $capa{PIPELINING} && $capa{'RESP-CODES'},
    'TOP UIDL PIPELINING RESP-CODES after login');
is($capa{EXPIRE} // '', 'EXPIRE NEVER', 'EXPIRE NEVER after login');
$s->cmd_ok('QUIT') if $s;
undef $s;

# max_errors 3: the third invalid command closes the connection

$s = $x->client(port => port(8111));
$s->cmd_err('XYZZY', 'max_errors: first invalid command');
$s->cmd_err('XYZZY', 'max_errors: second invalid command');
$s->send('XYZZY');
$r = $s->reply();
ok(!defined $r || $r =~ /^-ERR/, 'max_errors: third invalid command')
    or diag("got: $r");
ok($s->closed(), 'max_errors: connection closed');

# below the limit, a session goes on

$s = $x->client(port => port(8111));
$s->cmd_err('XYZZY');
$s->cmd_err('XYZZY');
my $l = $s->login('alice', 'secret');
like($l // '', qr/^\+OK/, 'login after two errors');
$s->cmd_ok('STAT');
$s->cmd_ok('QUIT');

# a client that closes at once, or mid-line, does not disturb the server

for (1 .. 3) {
    my $c = $x->client(port => $port, greeting => 0);
    $c->print('US');
    $c->close();
}
$s = $x->client(port => $port);
like($s->greeting // '', qr/^\+OK/, 'server still serves');

###############################################################################

# capability name -> its whole line

sub capa {
    my ($body) = @_;
    my %c;
    for my $l (split /\r\n/, $body // '') {
        my ($name) = split / /, $l;
        $c{uc $name} = $l;
    }
    return %c;
}

###############################################################################

#!/usr/bin/perl

# Pipelining (RFC 2449): commands in one write are answered in order, also
# across the login (where the server waits for Redis and a password hash),
# across multi-line replies and DELE/RSET; a command split over many
# writes; QUIT at the end of a pipeline.

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

$x->add_user('alice', 'secret');
my @m = map { "Subject: $_\r\n\r\nbody $_\r\n" } 1 .. 3;
$x->deliver('alice', $_) for @m;
my $total = 0;
$total += length for @m;

$t->plan(25);

my $port = port(8110);

###############################################################################

# login and the first commands in one write

my $s = $x->client(port => $port);
$s->send('USER alice', 'PASS secret', 'STAT', 'LIST 2', 'NOOP');
like($s->reply() // '', qr/^\+OK/, 'pipelined USER');
like($s->reply(15) // '', qr/^\+OK/, 'pipelined PASS');
is($s->reply(), "+OK 3 $total", 'STAT after a pipelined login');
is($s->reply(), '+OK 2 ' . length($m[1]), 'LIST 2 after it');
like($s->reply() // '', qr/^\+OK/, 'NOOP after it');

# multi-line and single-line replies interleaved

$s->send('RETR 1', 'LIST', 'UIDL 3', 'TOP 2 0', 'RETR 3', 'STAT');
like($s->reply() // '', qr/^\+OK/, 'RETR 1 status');
is($s->read_multi(), $m[0], 'RETR 1 body');
like($s->reply() // '', qr/^\+OK/, 'LIST status');
is($s->read_multi(), join('', map { "$_ " . length($m[$_ - 1]) . "\r\n" }
    1 .. 3), 'LIST body');
like($s->reply() // '', qr/^\+OK 3 \S+\z/, 'UIDL 3');
like($s->reply() // '', qr/^\+OK/, 'TOP status');
is($s->read_multi(), "Subject: 2\r\n\r\n", 'TOP body');
like($s->reply() // '', qr/^\+OK/, 'RETR 3 status');
is($s->read_multi(), $m[2], 'RETR 3 body');
is($s->reply(), "+OK 3 $total", 'STAT last');

# errors in the middle do not disturb the order

$s->send('DELE 1', 'RETR 1', 'RSET', 'LIST 1', 'XYZZY', 'NOOP');
like($s->reply() // '', qr/^\+OK/, 'DELE 1');
like($s->reply() // '', qr/^-ERR/, 'RETR of the deleted one');
like($s->reply() // '', qr/^\+OK/, 'RSET');
is($s->reply(), '+OK 1 ' . length($m[0]), 'LIST 1 back');
like($s->reply() // '', qr/^-ERR/, 'unknown command');
like($s->reply() // '', qr/^\+OK/, 'NOOP');

# many commands at once

$s->send(('NOOP') x 300);
my $n = grep { ($s->reply() // '') =~ /^\+OK/ } 1 .. 300;
is($n, 300, '300 pipelined NOOPs answered');

# a command in one-octet writes, then QUIT behind a command

$s->print($_) for split //, "STAT\r\n";
is($s->reply(), "+OK 3 $total", 'command sent octet by octet');

$s->send('NOOP', 'QUIT');
$s->reply();
like($s->reply() // '', qr/^\+OK/, 'QUIT at the end of a pipeline');
ok($s->closed(), 'closed after QUIT');

###############################################################################

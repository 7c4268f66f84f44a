#!/usr/bin/perl

# Every command of the TRANSACTION state: STAT, LIST, RETR, DELE, NOOP,
# RSET, TOP, UIDL, LAST, QUIT; bad and huge arguments; message numbers
# fixed for the session; the session-end log line.

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

my @m = (
    "From: a\@example.org\nSubject: one\n\nline1\nline2\nline3\n",
    "Subject: two\n\nbody two\n",
    "Subject: three\nX-Header: y\n\nA\nB\n",
);
my @crlf = map { (my $x = $_) =~ s/\n/\r\n/g; $x } @m;
my @size = map { length } @crlf;
my $total = 0;
$total += $_ for @size;

$x->add_user('alice', 'secret');
$x->deliver('alice', $_) for @m;

$t->plan(77);

my $port = port(8110);

###############################################################################

my $s = $x->session($port, 'alice', 'secret');
die "cannot log in\n" unless $s;

# STAT, LIST

is($s->cmd('STAT'), "+OK 3 $total", 'STAT');

my ($st, $body) = $s->cmd_multi('LIST');
like($st // '', qr/^\+OK/, 'LIST');
is($body, "1 $size[0]\r\n2 $size[1]\r\n3 $size[2]\r\n", 'LIST listing');
is($s->cmd('LIST 2'), "+OK 2 $size[1]", 'LIST 2');
is($s->cmd('LIST 3'), "+OK 3 $size[2]", 'LIST 3');

$s->cmd_err('LIST 4', 'LIST past the end');
$s->cmd_err('LIST 0', 'LIST 0');
$s->cmd_err('LIST -1', 'LIST -1');
$s->cmd_err('LIST x', 'LIST non-numeric');
$s->cmd_err('LIST 1x', 'LIST trailing junk');
$s->cmd_err('LIST 99999999999999999999', 'LIST huge');
$s->cmd_err('LIST 4294967297', 'LIST 2^32+1');
$s->cmd_err('LIST 1 2', 'LIST extra argument');

# RETR

($st, $body) = $s->cmd_multi('RETR 1');
like($st // '', qr/^\+OK/, 'RETR 1');
is($body, $crlf[0], 'RETR 1 body');
($st, $body) = $s->cmd_multi('RETR 3');
is($body, $crlf[2], 'RETR 3 body');
$s->cmd_err('RETR', 'RETR without argument');
$s->cmd_err('RETR 4', 'RETR past the end');
$s->cmd_err('RETR 0', 'RETR 0');
$s->cmd_err('RETR 99999999999999999999', 'RETR huge');
$s->cmd_err('RETR 1 1', 'RETR extra argument');

# TOP: the headers, the blank line, and the first lines of the body

($st, $body) = $s->cmd_multi('TOP 1 0');
like($st // '', qr/^\+OK/, 'TOP 1 0');
is($body, "From: a\@example.org\r\nSubject: one\r\n\r\n", 'TOP 1 0 headers');
($st, $body) = $s->cmd_multi('TOP 1 2');
is($body, "From: a\@example.org\r\nSubject: one\r\n\r\nline1\r\nline2\r\n",
    'TOP 1 2');
($st, $body) = $s->cmd_multi('TOP 3 10');
is($body, $crlf[2], 'TOP past the end of the body: whole message');
$s->cmd_err('TOP 1', 'TOP without line count');
$s->cmd_err('TOP', 'TOP without arguments');
$s->cmd_err('TOP 1 x', 'TOP non-numeric line count');
$s->cmd_err('TOP 1 -1', 'TOP negative line count');
$s->cmd_err('TOP 4 0', 'TOP past the end');
$s->cmd_err('TOP 1 0 0', 'TOP extra argument');

# a huge line count is either refused or the whole message

($st, $body) = $s->cmd_multi('TOP 2 99999999999999999999');
ok(defined $st && ($st =~ /^-ERR/ || ($body // '') eq $crlf[1]),
    'TOP with a huge line count');

# UIDL

($st, $body) = $s->cmd_multi('UIDL');
like($st // '', qr/^\+OK/, 'UIDL');
my $uidl = $x->listing($body) || [];
is(scalar @$uidl, 3, 'UIDL lists 3');
is(join(',', map { $_->[0] } @$uidl), '1,2,3', 'UIDL numbers');
my @uid = map { $_->[1] } @$uidl;
is(scalar(grep { /^[\x21-\x7e]{1,70}\z/ } @uid), 3,
    'UIDs of 1..70 printable characters');
my %seen;
is(scalar(grep { !$seen{$_}++ } @uid), 3, 'UIDs unique');
is($s->cmd('UIDL 2'), "+OK 2 " . ($uid[1] // ''), 'UIDL 2');
$s->cmd_err('UIDL 4', 'UIDL past the end');
$s->cmd_err('UIDL x', 'UIDL non-numeric');

# NOOP, LAST, RSET

$s->cmd_ok('NOOP');
$s->cmd_err('NOOP x', 'NOOP with an argument');

# case does not matter

like($s->cmd('stat') // '', qr/^\+OK 3 /, 'lower-case stat');
($st, $body) = $s->cmd_multi('Retr 2');
is($body, $crlf[1], 'mixed-case Retr');

# DELE, and the deleted message is gone for the session

$s->cmd_ok('DELE 3');
$s->cmd_err('DELE 3', 'DELE of a deleted message');
$s->cmd_err('RETR 3', 'RETR of a deleted message');
$s->cmd_err('LIST 3', 'LIST of a deleted message');
$s->cmd_err('DELE 4', 'DELE past the end');
$s->cmd_err('DELE x', 'DELE non-numeric');
$s->cmd_err('DELE', 'DELE without argument');
is($s->cmd('STAT'), "+OK 2 " . ($size[0] + $size[1]),
    'STAT leaves deleted messages out');
$s->cmd_ok('RSET');
is($s->cmd('LIST 3'), "+OK 3 $size[2]", 'RSET undeletes');
$s->cmd_err('RSET x', 'RSET with an argument');

# state errors and unknown commands

$s->cmd_err('USER alice', 'USER in TRANSACTION');
$s->cmd_err('PASS secret', 'PASS in TRANSACTION');
$s->cmd_err('XYZZY', 'unknown command');
$s->cmd_ok('NOOP', 'session goes on after errors');

$s->cmd_ok('QUIT');
ok($s->closed(), 'QUIT closes');

# LAST: the highest message number RETR touched; RSET resets it

$s = $x->session($port, 'alice', 'secret');
is($s->cmd('LAST'), '+OK 0', 'LAST at the start');
$s->cmd_multi('RETR 2');
is($s->cmd('LAST'), '+OK 2', 'LAST after RETR 2');
$s->cmd_multi('RETR 1');
is($s->cmd('LAST'), '+OK 2', 'LAST stays at the highest');
$s->cmd_ok('RSET');
is($s->cmd('LAST'), '+OK 0', 'RSET resets LAST');

# UIDs are stable across sessions

($st, $body) = $s->cmd_multi('UIDL');
is(join(' ', map { $_->[1] } @{$x->listing($body) || []}),
    join(' ', @uid), 'UIDs stable across sessions');

# message numbers are fixed for the session: new mail waits

$x->deliver('alice', "Subject: four\n\nlate\n");
like($s->cmd('STAT') // '', qr/^\+OK 3 $total\z/,
    'mail delivered during the session not in STAT');
$s->cmd_err('LIST 4', 'nor in LIST');
$s->cmd_err('RETR 4', 'nor in RETR');
$s->cmd_ok('QUIT');

$s = $x->session($port, 'alice', 'secret');
like($s->cmd('STAT') // '', qr/^\+OK 4 /, 'but in the next session');
($st, $body) = $s->cmd_multi('RETR 4');
is($body, "Subject: four\r\n\r\nlate\r\n", 'and retrievable');

# the session-end log line counts what was retrieved and deleted

$s->cmd_multi('RETR 1');
$s->cmd_ok('DELE 4');
$s->cmd_ok('QUIT');
ok($x->wait_for_log(qr/pop3_ext: session end[^\n]*retr=\d+[^\n]*dele=\d+/),
    'session end logged');
ok($x->wait_for_log(
    qr/pop3_ext: session end[^\n]*alice[^\n]*retr=2\b[^\n]*dele=1\b/),
    'session end: user, retr=2, dele=1');

###############################################################################

#!/usr/bin/perl

# A maildrop of 20000 messages: login, STAT, LIST, UIDL agree; the last
# message is reachable; a commit of many deletions keeps the right ones.
# The messages are stored with the DELIVER script read from the model
# header, in one RESP pipeline (the CLI is used for a few only).

use strict;
use warnings;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $N = 20000;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: 1\n\nbody 1\n");
my @fast = map { "Subject: $_\r\n\r\nbody $_\r\n" . ('x' x ($_ % 50)) . "\r\n" }
    2 .. $N;
my @uids = $x->deliver_fast('alice', @fast);

my $total = length("Subject: 1\r\n\r\nbody 1\r\n");
$total += length for @fast;
undef @fast;

$t->plan(16);

my $port = port(8110);

###############################################################################

is($x->redis_cmd('LLEN', $x->mbox_key($x->mailbox_of('alice'), 'INDEX')),
    $N, "$N messages stored");

my $start = time();
my $s = $x->session($port, 'alice', 'secret');
ok($s, 'login');
my $login = time() - $start;
ok($login < 5, 'login within 5 s') or diag("login took $login s");
$s->timeout(20);

is($s->cmd('STAT'), "+OK $N $total", 'STAT');

my ($st, $body) = $s->cmd_multi('LIST');
my $list = $x->listing($body) || [];
is(scalar @$list, $N, 'LIST count');
my $sum = 0;
$sum += $_->[1] for @$list;
is($sum, $total, 'LIST sizes add up to STAT');
is($list->[-1][0], $N, 'LIST numbers up to the last');

($st, $body) = $s->cmd_multi('UIDL');
my $uidl = $x->listing($body) || [];
is(scalar @$uidl, $N, 'UIDL count');
my %seen;
is(scalar(grep { !$seen{$_->[1]}++ } @$uidl), $N, 'UIDs unique');
is_deeply([ map { $_->[1] } @$uidl[1 .. $#$uidl] ], \@uids,
    'UIDs are those the deliver script returned');

($st, $body) = $s->cmd_multi("RETR $N");
is($body, "Subject: $N\r\n\r\nbody $N\r\n" . ('x' x ($N % 50)) . "\r\n",
    'RETR of the last message');
is($s->cmd("UIDL $N"), "+OK $N $uids[-1]", 'UIDL of the last message');

# delete every tenth message and commit

my @dele = grep { $_ % 10 == 0 } 1 .. $N;
$s->send(map { "DELE $_" } @dele);
my $ok = grep { ($s->reply() // '') =~ /^\+OK/ } @dele;
is($ok, scalar @dele, scalar(@dele) . ' DELE');
like($s->cmd('QUIT', 30) // '', qr/^\+OK/, 'QUIT commits');

$s = $x->session($port, 'alice', 'secret');
$s->timeout(20);
($st, $body) = $s->cmd_multi('UIDL');
my @left = map { $_->[1] } @{$x->listing($body) || []};
my @want = map { $_->[1] } grep { $_->[0] % 10 } @$uidl;
ok(@left == @want && join(' ', @left) eq join(' ', @want),
    'the right ones left, in order')
    or diag(scalar(@left) . ' left, ' . scalar(@want) . ' expected');
$s->cmd_ok('QUIT');

###############################################################################

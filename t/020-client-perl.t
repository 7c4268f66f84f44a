#!/usr/bin/perl

# A real client written by others: Perl's Net::POP3 (libnet).  Login, STAT,
# LIST, UIDL, TOP, RETR (with dot-stuffed lines and 8-bit octets), LAST,
# DELE, QUIT, and the deletion seen by the next session.

use strict;
use warnings;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

BEGIN {
    eval { require Net::POP3; 1 }
        or plan(skip_all => 'Net::POP3 (libnet-perl) not installed');
}

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();

my @m = (
    "Subject: one\n\nfirst\n.dotted\n..two dots\n.\n",
    "Subject: two\n\nGr\xc3\xbc\xc3\x9fe \xff\x80\n",
    "Subject: three\nX-A: b\n\nl1\nl2\nl3\n",
);

$x->add_user('alice', 'secret');
$x->deliver('alice', $_) for @m;

my @size = map { (my $x = $_) =~ s/\n/\r\n/g; length $x } @m;

$t->plan(16);

my $port = port(8110);

###############################################################################

my $pop = Net::POP3->new('127.0.0.1', Port => $port, Timeout => 10);
ok($pop, 'Net::POP3 connected') or BAIL_OUT("cannot connect: $@");

my $n = $pop->login('alice', 'secret');
is($n, 3, 'login returns the message count');

my ($count, $octets) = $pop->popstat();
is_deeply([ $count, $octets ], [ 3, $size[0] + $size[1] + $size[2] ],
    'popstat');

is_deeply($pop->list(), { 1 => $size[0], 2 => $size[1], 3 => $size[2] },
    'list');

my $uidl = $pop->uidl() || {};
is(scalar keys %$uidl, 3, 'uidl');

my $capa = $pop->capa() || {};
ok(exists $capa->{UIDL} && exists $capa->{TOP}, 'capa');

for my $i (1 .. 3) {
    my $lines = $pop->get($i);
    is(join('', @{$lines || []}), $m[$i - 1], "get $i");
}

my $top = $pop->top(3, 1);
is(join('', @{$top || []}), "Subject: three\nX-A: b\n\nl1\n", 'top 3 1');

is($pop->last(), 3, 'last');

ok($pop->delete(2), 'delete 2');
ok($pop->quit(), 'quit');

$pop = Net::POP3->new('127.0.0.1', Port => $port, Timeout => 10);
is($pop->login('alice', 'secret'), 2, 'the next session has 2');
is_deeply([ sort values %{$pop->uidl() || {}} ],
    [ sort @{$uidl}{1, 3} ], 'the right one deleted, UIDs kept');
$pop->quit();

my $bad = Net::POP3->new('127.0.0.1', Port => $port, Timeout => 20);
ok(!$bad->login('alice', 'wrong'), 'wrong password refused');
$bad->quit();

###############################################################################

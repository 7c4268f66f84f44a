#!/usr/bin/perl

# LMTP on a Redis Cluster with wait=1: recipients whose mailboxes are on
# different masters get one reply each, each copy staged on its own
# mailbox's slot and stored by STORE there (every key of a script in one
# slot), each 250 after a replica confirmed; a retry stores nothing twice.

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

my $cluster = $x->redis_cluster(base => 8400);
my @masters = $cluster->masters;

my $SPEC = join(' ', map { $_->addr } @masters[0, 1])
    . ' cluster wait=1 timeout=3s';
my $CONF_SPEC = join(' ', map { $_->conf_addr } @masters[0, 1])
    . ' cluster wait=1 timeout=3s';

$x->run_pop3(redis => $CONF_SPEC,
    mail => lmtp_server(8024, '', redis => $CONF_SPEC));

# users whose mailboxes are on three different masters

my (%on, @users);
for my $i (0 .. 200) {
    my $u = "c$i";
    my $m = $cluster->master_of($x->mbox_key($u, 'INDEX'))->port;
    next if $on{$m}++;
    push @users, $u;
    last if @users == 3;
}

for my $u (@users) {
    my ($rc, $out, $err) = $x->pop3ext('-r', $SPEC, 'user', 'add', $u,
        { stdin => "secret\n" });
    die "user add $u: $out$err" if $rc;
}

$t->plan(7);

sub count {
    my (undef, $out) = $x->pop3ext('-r', $SPEC, 'stat', $_[0]);
    return $out =~ /^(\d+) / ? $1 : -1;
}

is(scalar(@users), 3, 'three mailboxes on three masters');

my $c = lmtp_client(port(8024), timeout => 15);
$c->lmtp('LHLO x');

for my $try (1, 2) {
    $c->lmtp('MAIL FROM:<s@example.org>');
    $c->lmtp("RCPT TO:<$_\@example.org>") for @users;
    my (undef, @r) = $c->data(lmtp_message('cluster', 300000), 3, 30);
    my $want = $try == 1 ? 'stored as' : 'already stored as';
    is(scalar(grep { /^250 2\.0\.0 <c\d+\@example\.org> \Q$want\E / } @r), 3,
        "try $try: three replies, $want");
}

is(count($_), 1, "$_: one copy") for @users;
is($cluster->cmd($x->mbox_key($users[0], 'INDEX'), 'EXISTS',
    $x->mbox_key($users[0], 'INDEX')), 1, 'the index on its master');

#!/usr/bin/perl

# Deletion semantics (RFC 1939): DELE only marks, RSET unmarks, QUIT in
# TRANSACTION commits, and nothing else does: a dropped connection deletes
# nothing.  After a commit, the remaining messages are renumbered and keep
# their UIDs; UIDs are never reused; many deletions at once; mail that
# arrives during the session survives the commit.

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

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

# a second server with a short autologout timer, for the timeout case
# (below RFC 1939's 10 minutes: the module warns, and that is all)

$x->run_pop3(mail => $x->server(8111, 'pop3_ext_idle_timeout 1s;'));

$t->plan(44);

my $port = port(8110);

# a fresh mailbox of alice with the messages "Subject: N" for 1..$n

sub fresh {
    my ($n) = @_;
    $x->pop3ext('user', 'del', 'alice');
    $x->add_user('alice', 'secret');
    $x->deliver_fast('alice', map { "Subject: $_\r\n\r\nbody $_\r\n" } 1 .. $n);
}

sub subjects {
    my ($s) = @_;
    my @subj;
    my $r = $s->cmd('STAT') // '';
    my ($count) = $r =~ /^\+OK (\d+)/ or return 'STAT: ' . $r;
    for my $i (1 .. $count) {
        my $b = $s->cmd_multi("TOP $i 0") // '';
        push @subj, $b =~ /^Subject: (\S+)/ ? $1 : '?';
    }
    return join(',', @subj);
}

sub uidl {
    my ($s) = @_;
    my (undef, $b) = $s->cmd_multi('UIDL');
    return [ map { $_->[1] } @{$x->listing($b) || []} ];
}

# log in, retrying for a few seconds while the maildrop is still locked
# (the lock of a dropped session is released as soon as nginx sees the
# close); returns the session, and the time waited

sub login_soon {
    my $start = time();
    while (1) {
        my $s = $x->client(port => $port);
        my $r = $s->login('alice', 'secret');
        return ($s, time() - $start) if defined $r && $r =~ /^\+OK/;
        return (undef, time() - $start)
            if time() - $start > 5 || !defined $r || $r !~ /IN-USE/;
        sleep(0.1);
    }
}

###############################################################################

fresh(3);

my $s = $x->session($port, 'alice', 'secret');
$s->cmd_ok('DELE 2');
like($s->cmd('STAT') // '', qr/^\+OK 2 /, 'STAT without the deleted');
my (undef, $l) = $s->cmd_multi('LIST');
like($l // '', qr/^1 \d+\r\n3 \d+\r\n\z/, 'LIST without the deleted');
my $u = uidl($s);
is(scalar @$u, 2, 'UIDL without the deleted');
$s->cmd_err('TOP 2 0', 'TOP of a deleted message');
$s->cmd_err('UIDL 2', 'UIDL of a deleted message');
$s->cmd_ok('RSET');
is(subjects($s), '1,2,3', 'RSET: all back');
$s->cmd_ok('DELE 1');
$s->cmd_ok('DELE 3');

# a dropped connection commits nothing, and gives the maildrop up at once

$s->close();
my $waited;
($s, $waited) = login_soon();
ok($s, 'login after a dropped session');
ok($waited < 3, 'lock of a dropped session released at once')
    or diag("waited $waited s");
is($s && subjects($s), '1,2,3', 'dropped session deleted nothing');

# QUIT commits; the rest are renumbered and keep their UIDs

my $before = uidl($s);
$s->cmd_ok('DELE 1');
$s->cmd_ok('DELE 3');
like($s->cmd('QUIT') // '', qr/^\+OK/, 'QUIT in TRANSACTION');
ok($s->closed(), 'QUIT closes');

$s = $x->session($port, 'alice', 'secret');
is($s && subjects($s), '2', 'QUIT committed the deletions');
is_deeply($s && uidl($s), [ $before->[1] ], 'UID kept after renumbering');

# delete everything

$s->cmd_ok('DELE 1');
$s->cmd_ok('QUIT');
$s = $x->session($port, 'alice', 'secret');
is($s->cmd('STAT'), '+OK 0 0', 'empty maildrop');
my ($st, $b) = $s->cmd_multi('LIST');
is($b, '', 'empty LIST');
($st, $b) = $s->cmd_multi('UIDL');
is($b, '', 'empty UIDL');
$s->cmd_err('RETR 1', 'RETR in an empty maildrop');
$s->cmd_ok('QUIT');

# UIDs are never reused, also after the mailbox was emptied

$x->deliver('alice', "Subject: new\n\nnew\n");
$s = $x->session($port, 'alice', 'secret');
my $new = uidl($s);
is(scalar @$new, 1, 'new message');
ok(!grep({ $_ eq ($new->[0] // '') } @$before), 'new UID never used before');

# DELE then RSET then QUIT deletes nothing

$s->cmd_ok('DELE 1');
$s->cmd_ok('RSET');
$s->cmd_ok('QUIT');
$s = $x->session($port, 'alice', 'secret');
like($s->cmd('STAT') // '', qr/^\+OK 1 /, 'RSET before QUIT keeps all');
$s->cmd_ok('QUIT');

# an idle session is logged out: nothing deleted, the lock released

fresh(2);
$s = $x->session(port(8111), 'alice', 'secret');
$s->cmd_ok('DELE 1', 'DELE before going idle');
my $t0 = time();
ok($s->closed(5), 'idle session closed by the autologout timer');
ok(time() - $t0 >= 0.9, 'not before the timeout');
($s, $waited) = login_soon();
ok($s && $waited < 3, 'lock of a timed-out session released');
is($s && subjects($s), '1,2', 'timeout deleted nothing');
$s->close() if $s;

# many deletions at once (the commit takes another path past 16)

fresh(60);
$s = $x->session($port, 'alice', 'secret');
my $all = uidl($s);
$s->send(map { "DELE $_" } grep { $_ % 2 == 0 } 1 .. 60);
my $okcount = grep { ($s->reply() // '') =~ /^\+OK/ } 1 .. 30;
is($okcount, 30, '30 DELE pipelined');

# mail delivered during the session survives its commit

$x->deliver('alice', "Subject: late\n\nlate\n");
$s->cmd_ok('QUIT');

$s = $x->session($port, 'alice', 'secret');
is(subjects($s), join(',', (grep { $_ % 2 } 1 .. 60), 'late'),
    'bulk commit kept the odd ones and the late one, in order');
my $after = uidl($s);
is_deeply([ @$after[0 .. 29] ], [ map { $all->[$_ - 1] } grep { $_ % 2 } 1 .. 60 ],
    'UIDs of the kept ones unchanged');
$s->cmd_ok('QUIT');

# the stored data agrees: no message bodies left behind

my $mbox = $x->mailbox_of('alice');
my $keys = $x->redis_cmd('KEYS', $x->mbox_key($mbox, 'MSG') . '*');
is(scalar @$keys, 31, 'deleted bodies removed from Redis');

###############################################################################

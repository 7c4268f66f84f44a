#!/usr/bin/perl

# A real client written by others: fetchmail, the way people run it.  With
# keep and UIDL it fetches every message once, then nothing, then only new
# mail (UIDs stable across sessions); without keep it empties the maildrop.
# Messages go to an MDA that writes one file each.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_prog('fetchmail')
    ->run_pop3();

my @m = (
    "Subject: one\n\nfirst\n.dotted\n..two dots\nend\n",
    "Subject: two\n\nGr\xc3\xbc\xc3\x9fe\n",
    "Subject: three\nX-A: b\n\nl1\nl2\nl3\n",
);

$x->add_user('alice', 'secret');
$x->deliver('alice', $_) for @m;

my $d = $x->testdir;
mkdir "$d/out";

sub rcfile {
    my ($keep) = @_;
    my $port = port(8110);
    my $opt = $keep ? 'keep' : 'nokeep';
    $x->write_file('fetchmailrc', <<"EOF");
set no syslog
set invisible
poll 127.0.0.1 with proto POP3 service $port uidl timeout 20
    user "alice" there with password "secret" is "root" here
    options $opt no rewrite fetchall stripcr sslproto ''
    mda "cat > $d/out/msg.\$\$"
EOF
    chmod 0600, "$d/fetchmailrc";
}

sub fetchmail {
    my @extra = @_;
    return $x->run_cmd([ $x->prog('fetchmail'), '-f', "$d/fetchmailrc",
        '-N', '--nosyslog', '--pidfile', "$d/fetchmail.pid",
        '-i', "$d/fetchids", @extra ],
        { timeout => 40, env => { HOME => $d, FETCHMAILHOME => $d } });
}

# the messages written by the MDA since the last call, sorted by subject

sub fetched {
    opendir(my $dh, "$d/out") or return [];
    my @f = grep { /^msg\./ } readdir $dh;
    closedir $dh;
    my @msgs = map { $x->read_file("out/$_") } @f;
    unlink map { "$d/out/$_" } @f;
    return [ sort @msgs ];
}

$t->plan(11);

###############################################################################

rcfile(1);

# uidl mode fetches what it has not seen (fetchall would fetch everything)

$x->write_file('fetchmailrc', $x->read_file('fetchmailrc') =~ s/ fetchall//r);

my ($rc, $out, $err) = fetchmail();
is($rc, 0, 'fetchmail retrieved mail') or diag("$out$err");
is_deeply(fetched(), [ sort @m ], 'all three messages, byte-exact');

($rc, $out, $err) = fetchmail();
is($rc, 1, 'second run: no new mail') or diag("$out$err");
is_deeply(fetched(), [], 'nothing fetched again');

$x->deliver('alice', "Subject: four\n\nnew\n");
($rc, $out, $err) = fetchmail();
is($rc, 0, 'third run after new mail') or diag("$out$err");
is_deeply(fetched(), [ "Subject: four\n\nnew\n" ], 'only the new message');

my ($count) = $x->mailbox_stat('alice');
is($count, 4, 'keep: all still on the server');

# without keep, fetchmail deletes what it fetched

rcfile(0);
($rc, $out, $err) = fetchmail();
is($rc, 0, 'nokeep run') or diag("$out$err");
is(scalar @{fetched()}, 4, 'all four fetched');
($count) = $x->mailbox_stat('alice');
is($count, 0, 'maildrop empty after fetchmail deleted');

# a wrong password is an authentication failure (exit 3)

$x->write_file('fetchmailrc',
    $x->read_file('fetchmailrc') =~ s/"secret"/"wrong"/r);
chmod 0600, "$d/fetchmailrc";
($rc, $out, $err) = fetchmail();
is($rc, 3, 'wrong password: fetchmail reports an authentication failure')
    or diag("$out$err");

###############################################################################

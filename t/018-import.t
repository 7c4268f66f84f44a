#!/usr/bin/perl

# pop3ext import (issue 10): users moved from Dovecot without their POP3
# clients downloading anything again.  A private Dovecot serves Maildirs
# on the POP3 port; fetchmail, mpop and getmail6 download everything from
# it, keeping mail on the server and remembering UIDLs; the mailboxes are
# imported, one from its Maildir, one over POP3; Dovecot stops and nginx
# with the module takes its port; the clients download nothing; a new
# message delivered with pop3ext deliver is downloaded once by each.
#
# Beside that, what import reads is checked against what Dovecot serves:
# UIDLs saved in dovecot-uidlist (pop3_save_uidl), the default format,
# files Dovecot has not numbered yet, POP3 order fields, X-UIDL
# (pop3_reuse_xuidl), %m against Dovecot's own mbox %m; sizes and bodies;
# delivery times; TLS to the source; re-runs, a client's deletion, and the
# messages refused.

use strict;
use warnings;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

use File::Path qw/ make_path /;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_module
    ->has_dovecot->has_prog('openssl');

my $d = $x->testdir;
my $port = port(8110);
my ($crt, $key) = $x->make_self_signed('dovecot', 'localhost');
my $dv = $x->dovecot(port => $port, tls => [ $crt, $key ],
    tls_port => port(8995));

my %client = map { $_ => $x->prog($_) } qw/ fetchmail mpop getmail /;

$t->plan(82);

###############################################################################

# the store first: imports write to Redis before nginx runs

$x->run_redis();

sub import_cmd {
    my ($user, @args) = @_;
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    return $x->pop3ext('import', $user, @args, { timeout => 60, %$o });
}

sub index_of {
    my ($user) = @_;
    my $l = $x->redis_cmd('LRANGE', $x->mbox_key($user, 'INDEX'), 0, -1);
    return [ map { [ split / / ] } @{ref $l ? $l : []} ];
}

sub uidls_of { [ map { $_->[0] } @{index_of($_[0])} ] }

sub body_of {
    my ($user, $uid) = @_;
    return $x->redis_cmd('GET', $x->mbox_key($user, 'MSG') . $uid);
}

sub time_of {
    my ($user, $uid) = @_;
    return $x->redis_cmd('HGET', $x->mbox_key($user, 'TIME'), $uid);
}

my $now = time();

# alice: three messages listed while Dovecot saved UIDLs in another format
# (pop3_save_uidl), then the default format; two files a foreign MDA
# dropped into new/, one without a final line end, one in CRLF with dots
# and 8-bit text

$dv->add_user('alice', 'alice-pw', pop3_uidl_format => 'old-%u',
    pop3_save_uidl => 'yes');
$dv->add_user('bob', 'bob-pw');
$dv->start();

for my $i (1 .. 3) {
    $dv->deliver('alice', "From: x\@example.org\nTo: alice\n"
        . "Subject: alice $i\nMessage-ID: <a$i\@example.org>\n\nbody $i\n");
}

my @l = $dv->listing('alice', 'alice-pw');
is(join(' ', map { $_->[1] } @l), 'old-1 old-2 old-3',
    'Dovecot listed UIDLs in the old format');
like($x->read_file($dv->maildir('alice') . '/dovecot-uidlist'),
    qr/^1 Pold-1 :/m, 'and saved them in dovecot-uidlist as P fields');

$dv->add_user('alice', 'alice-pw');

for my $i (4 .. 5) {
    $dv->deliver('alice', "From: x\@example.org\nTo: alice\n"
        . "Subject: alice $i\n\nbody $i\n");
}

my $a6 = $dv->drop('alice', '1500000000.M1P1.test',
    "Subject: alice 6\n\nno final line end");
utime $now, $now, $a6;
my $a7 = $dv->drop('alice', '1500000001.M2P1.test',
    "Subject: alice 7\r\n\r\n.one dot\r\n..two\r\nGr\xc3\xbc\xc3\x9fe\r\n");
utime 1400000000, 1400000000, $a7;

# imported before Dovecot numbers the two dropped files: import numbers
# them as Dovecot will

$x->add_user('early', 'early-pw');
my ($rc, $out, $err) = import_cmd('early', '--from',
    'maildir:' . $dv->maildir('alice'));
is($rc, 0, 'import of files Dovecot has not numbered yet') or diag($err);

# bob: dates in Received and Date, and none; a bare-LF file with dots

$dv->deliver('bob', "Received: from mx.example.org by mail.example.org"
    . " with ESMTP id 1;\n\tTue, 1 Jul 2003 10:52:37 +0200\n"
    . "Date: Mon, 30 Jun 2003 10:00:00 +0000\nSubject: bob 1\n\nb1\n");
$dv->deliver('bob', "Date: Wed, 2 Jul 2003 01:02:03 -0500 (EST)\n"
    . "Subject: bob 2\n\nb2\n");
$dv->deliver('bob', "Subject: bob 3\n\nb3\n");
$dv->drop('bob', '1500000002.M3P1.test',
    "Subject: bob 4\n\n.\n..\nend\n");

# the clients, each as its users run it: keep mail on the server, fetch
# only what they have not seen, by UIDL

my $N = { alice => 7, bob => 4 };

make_path(map { my $m = $_; map { "$d/$m/$_" } qw/ cur new tmp / } qw/ mp gm /);
make_path("$d/fm", "$d/gmstate", "$d/mpop");

$x->write_file('fetchmailrc', <<"EOF");
set no syslog
set invisible
poll 127.0.0.1 with proto POP3 service $port uidl timeout 20
    user "alice" there with password "alice-pw" is "root" here
    options keep no rewrite stripcr sslproto ''
    mda "cat > $d/fm/msg.\$\$"
    user "bob" there with password "bob-pw" is "root" here
    options keep no rewrite stripcr sslproto ''
    mda "cat > $d/fm/msg.\$\$"
EOF
chmod 0600, "$d/fetchmailrc";

my $mpop = <<"EOF";
defaults
tls off
auth user
keep on
only_new on
received_header off
timeout 20
uidls_file $d/mpop/%U_at_%H
delivery maildir $d/mp
EOF
$mpop .= "\naccount $_\nhost 127.0.0.1\nport $port\nuser $_\n"
    . "password $_-pw\n" for qw/ alice bob /;
$x->write_file('mpoprc', $mpop);
chmod 0600, "$d/mpoprc";

# getmail delivers to a Maildir as another user than root, if root

my $gmuser = '';
if ($> == 0) {
    my @pw = getpwnam('mail');
    chown $pw[2], $pw[3], "$d/gm", map { "$d/gm/$_" } qw/ cur new tmp /;
    $gmuser = "user = mail\n";
}

for my $u (qw/ alice bob /) {
    $x->write_file("getmail-$u.rc", <<"EOF");
[retriever]
type = SimplePOP3Retriever
server = 127.0.0.1
port = $port
username = $u
password = $u-pw

[destination]
type = Maildir
path = $d/gm/
$gmuser
[options]
delete = false
read_all = false
received = false
delivered_to = false
verbose = 0
EOF
}

# a client's run: (exit code, output, the messages it wrote, by user)

my %env = (HOME => $d, FETCHMAILHOME => $d);

sub run_client {
    my ($name) = @_;
    my @cmd = $name eq 'fetchmail'
        ? ($client{fetchmail}, '-f', "$d/fetchmailrc", '-N', '--nosyslog',
            '--pidfile', "$d/fetchmail.pid", '-i', "$d/fetchids")
        : $name eq 'mpop' ? ($client{mpop}, '-C', "$d/mpoprc", '-a')
        : ($client{getmail}, '--getmaildir', "$d/gmstate",
            '--rcfile', "$d/getmail-alice.rc",
            '--rcfile', "$d/getmail-bob.rc");
    my ($rc, $out, $err) = $x->run_cmd(\@cmd, { timeout => 60,
        env => \%env });
    my @files = map { glob("$d/$_") }
        $name eq 'fetchmail' ? 'fm/msg.*'
        : $name eq 'mpop' ? ('mp/new/*', 'mp/cur/*')
        : ('gm/new/*', 'gm/cur/*');
    my %got;
    for my $f (@files) {
        my $m = $x->read_file($f);
        unlink $f;
        my ($u) = $m =~ /^Subject: (\w+)/m;
        push @{$got{$u // '?'}}, $m;
    }
    return ($rc, "$out$err", \%got);
}

sub count { scalar @{$_[0]{$_[1]} || []} }

# a client's exit code when there was nothing to download

my %none = (fetchmail => 1, mpop => 0, getmail => 0);

for my $c (qw/ fetchmail mpop getmail /) {
    SKIP: {
        skip "$c not installed", 2 unless $client{$c};
        my ($rc, $log, $got) = run_client($c);
        is(count($got, 'alice') . ' ' . count($got, 'bob'), '7 4',
            "$c downloaded everything from Dovecot") or diag($log);
        ($rc, $log, $got) = run_client($c);
        is($rc . ' ' . (count($got, 'alice') + count($got, 'bob')),
            "$none{$c} 0", "$c: nothing more from Dovecot") or diag($log);
    }
}

# what Dovecot serves now, for the comparisons

my %dlist = map { $_ => [ $dv->listing($_, "$_-pw") ] } qw/ alice bob /;
my %dbody;
for my $u (qw/ alice bob /) {
    my $s = $dv->session($u, "$u-pw");
    $dbody{$u} = [ map { scalar $s->cmd_multi("RETR $_->[0]") }
        @{$dlist{$u}} ];
    $s->cmd('QUIT');
}

is(join(' ', map { $_->[1] } @{$dlist{alice}}[0 .. 2]), 'old-1 old-2 old-3',
    'Dovecot keeps the saved UIDLs after the format changed');
like($dlist{alice}[3][1], qr/^00000004[0-9a-f]{8}\z/,
    'and makes the others in the default format, lowercase hex');

# the imports

# the users, with their Dovecot secrets, as docs/migration.md says

for my $u (qw/ alice bob /) {
    my $cli = Test::Nginx::POP3Ext::cli_path();
    my ($rc, $out, $err) = $x->run_cmd([ 'sh', '-c', "grep '^$u:' "
        . $dv->dir . "/passwd | cut -d: -f2 | $cli -r '"
        . $x->redis_spec() . "' user add --hash $u" ]);
    is($rc, 0, "$u: user add --hash from Dovecot's passwd-file")
        or diag($err);
}

($rc, $out, $err) = import_cmd('alice', '--from',
    'maildir:' . $dv->maildir('alice'));
is($rc, 0, 'maildir import: exit 0') or diag($err);
is($out, "imported 7, already there 0, skipped 0\n", 'maildir: summary');
is($err, '', 'maildir: nothing on stderr (a pipe: no progress)');

# STLS is offered: the source's certificate is checked

($rc, $out, $err) = import_cmd('bob', '--from', "pop3://bob\@127.0.0.1:$port",
    '--tls-ca', $crt, { stdin => "bob-pw\n" });
is($rc, 0, 'pop3 import: exit 0') or diag($err);
is($out, "imported 4, already there 0, skipped 0\n", 'pop3: summary');

for my $u (qw/ alice bob /) {
    is_deeply(uidls_of($u), [ map { $_->[1] } @{$dlist{$u}} ],
        "$u: Dovecot's UIDLs, in its order");
    is_deeply([ map { body_of($u, $_->[1]) } @{$dlist{$u}} ],
        $dbody{$u}, "$u: the messages as Dovecot sends them");
}

is_deeply(uidls_of('early'), uidls_of('alice'),
    'files not yet numbered: the UIDLs Dovecot gave them later');

# sizes: Dovecot counts LF as CRLF too; the message without a final line
# end is 2 octets longer here, where it got its CRLF

my @size = map { $_->[1] } @{index_of('alice')};
is_deeply(\@size, [ map { $_->[2] + ($_->[0] == 6 ? 2 : 0) }
    @{$dlist{alice}} ], 'sizes: as Dovecot lists them, but for the final CRLF');

# delivery times

my %tm = map { $_->[1] => time_of('alice', $_->[1]) } @{$dlist{alice}};
is($tm{$dlist{alice}[5][1]}, '1500000000000',
    'maildir: the time in the file name, older than its mtime');
is($tm{$dlist{alice}[6][1]}, '1400000000000',
    'maildir: the mtime, older than the name');
is(time_of('bob', $dlist{bob}[0][1]), '1057049557000',
    'pop3: the date of the first Received');
is(time_of('bob', $dlist{bob}[1][1]), '1057125723000',
    'pop3: else the Date');
my $t3 = time_of('bob', $dlist{bob}[2][1]) // 0;
ok($t3 >= ($now - 5) * 1000 && $t3 <= (time() + 5) * 1000,
    'pop3: else the time of the import');

# again: nothing new, nothing downloaded from the source

($rc, $out, $err) = import_cmd('alice', '--from',
    'maildir:' . $dv->maildir('alice'));
is("$rc $out", "0 imported 0, already there 7, skipped 0\n",
    'maildir import again: all already there') or diag($err);

($rc, $out, $err) = import_cmd('bob', '--from', "pop3://bob\@127.0.0.1:$port",
    '--tls-ca', $crt, { stdin => "bob-pw\n" });
is("$rc $out", "0 imported 0, already there 4, skipped 0\n",
    'pop3 import again: all already there') or diag($err);
my @retr = $dv->log =~ /Disconnected: Logged out top=\d+\/\d+, retr=(\d+)/g;
is($retr[-1], 0, 'and no RETR sent');
unlike($dv->log, qr/del=[1-9]/, 'the source deleted nothing, ever');

# TLS: pop3s with the source's CA, STLS on pop3://, --insecure

my $tls = port(8995);

for my $case (
    [ 's1', "pop3s://bob\@127.0.0.1:$tls", '--tls-ca', $crt ],
    [ 's2', "pop3://bob\@127.0.0.1:$port", '--tls-ca', $crt ],
    [ 's3', "pop3s://bob\@localhost:$tls", '--insecure' ])
{
    my ($u, $from, @o) = @$case;
    $x->add_user($u, 'pw');
    ($rc, $out, $err) = import_cmd($u, '--from', $from, @o,
        { stdin => "bob-pw\n" });
    is("$rc $out", "0 imported 4, already there 0, skipped 0\n",
        "import over TLS: $from @o") or diag($err);
    my @login = $dv->log =~ /(Login: user=<bob>.*)/g;
    like($login[-1], qr/, TLS, /, "$u: Dovecot saw TLS");
}
is_deeply(uidls_of('s2'), uidls_of('bob'), 'the same UIDLs over TLS');

($rc, $out, $err) = import_cmd('s1', '--from',
    "pop3s://bob\@127.0.0.1:$tls", { stdin => "bob-pw\n" });
is($rc, 75, 'an unverified certificate: exit 75');
like($err, qr/certificate not verified/, 'and says so');

($rc, $out, $err) = import_cmd('s1', '--from',
    "pop3://bob\@127.0.0.1:$port", '--tls-ca', $crt,
    { stdin => "wrong\n" });
is($rc, 77, 'a wrong password: exit 77');
like($err, qr/refused PASS for "bob"/, 'and says so');

# POP3 order fields, saved UIDLs, X-UIDL: a uidlist written as a
# migration into Dovecot writes it; import and Dovecot agree

$dv->add_user('dave', 'dave-pw', pop3_reuse_xuidl => 'yes');
my $md = $dv->maildir('dave');
$dv->drop('dave', '1000.M1P1.h', "Subject: dave a\n\nA\n");
$dv->drop('dave', '1001.M1P1.h', "Subject: dave b\nX-UIDL: xuidl-b\n\nB\n");
$dv->drop('dave', '1002.M1P1.h', "Subject: dave c\n\nC\n");
$dv->drop('dave', '1003.M1P1.h', "Subject: dave d\n\nD\n");
$dv->drop('dave', '1004.M1P1.h', "Subject: dave e\nX-UIDL: xuidl-e\n\nE\n");
$dv->drop('dave', '999.M5P1.h', "Subject: dave f\n\nF\n");
$dv->drop('dave', '1005.M1P1.h', "Subject: dave g\n\nG\n");
rename "$md/new/1000.M1P1.h", "$md/cur/1000.M1P1.h:2,S";
$dv->put('dave', 'dovecot-uidlist', "3 V1234 N10\n"
    . "1 O3 :1000.M1P1.h\n"
    . "2 :1001.M1P1.h\n"
    . "3 O1 Pthree :1002.M1P1.h\n"
    . "4 :1001.5.M1P1.gone\n"
    . "5 O2 P :1003.M1P1.h\n"
    . "6 Xother W99 :1004.M1P1.h:2,S\n");

my @dave = map { $_->[1] } $dv->listing('dave', 'dave-pw');
is(join(' ', @dave), 'three 1003.M1P1.h 00000001000004d2 xuidl-b xuidl-e '
    . '0000000a000004d2 0000000b000004d2',
    'Dovecot: O fields first, P, X-UIDL, new files numbered by name time');

$x->add_user('dave', 'dave-pw');
($rc, $out, $err) = import_cmd('dave', '--from', "maildir:$md",
    '--reuse-xuidl');
is($rc, 0, 'import with --reuse-xuidl') or diag($err);
is_deeply(uidls_of('dave'), \@dave, 'the same UIDLs in the same order');

# %m: Dovecot computes it for mbox only; the same messages in a Maildir
# give the same UIDLs

$dv->add_user('carol', 'carol-pw', mail => 'mbox:~/mail:INBOX=~/inbox',
    pop3_uidl_format => '%m');
my @cm = (
    "Received: from a by b; Tue, 1 Jul 2003 10:52:37 +0200\n"
        . "Date: Mon, 30 Jun 2003 10:00:00 +0000\nMessage-ID: <c1\@y>\n"
        . "Subject: carol 1\n\nbody\n",
    "Date: Mon, 30 Jun 2003 10:00:00 +0000\nMessage-ID: <c2\@y>\n"
        . "Received: from a\n\tby b with SMTP;\n  Tue, 1 Jul 2003 10:52:37"
        . " +0200\nReceived: second\nDelivered-To: carol\@x\n"
        . "Subject: carol 2\n\nbody2\n",
    "Subject: carol 3\r\nDate:   Wed, 2 Jul 2003 01:02:03 -0500\r\n"
        . "Message-Id:<c3\@y>\r\n\r\nbody3\r\n",
);
$dv->deliver('carol', $_) for @cm;
my @carol = map { $_->[1] } $dv->listing('carol', 'carol-pw');

# the Maildir: the mbox's messages as they are, From_ line left out

my $mbox = $x->read_file($dv->home('carol') . '/inbox');
my @raw = map { s/\A[^\n]*\n//r } split /\n(?=From )/, $mbox;
make_path(map { "$d/carol-md/$_" } qw/ cur new tmp /);
for my $i (0 .. $#raw) {
    $x->write_file("carol-md/new/" . (1000000000 + $i) . ".M${i}P1.x",
        $raw[$i]);
}

$x->add_user('carol', 'carol-pw');
($rc, $out, $err) = import_cmd('carol', '--from', "maildir:$d/carol-md",
    '--uidl-format', '%m');
is($rc, 0, 'import with --uidl-format %m, without a uidlist') or diag($err);
is(scalar(@carol), 3, 'Dovecot gave three %m UIDLs');
is_deeply(uidls_of('carol'), \@carol, '%m: the UIDLs of Dovecot\'s mbox');

# refused: a UIDL too long, another message under a UID, a native UID of
# this very message; each named, the rest imported, exit 65

$x->add_user('frank', 'frank-pw');
$x->deliver('frank', "Subject: native\n\nnative body\n");
$x->deliver('frank', "Subject: native 2\n\nother body\n");
my ($n1, $n2) = @{uidls_of('frank')};

make_path(map { "$d/bad/$_" } qw/ cur new tmp /);
$x->write_file("bad/cur/1.M1P1.x:2,S", "Subject: long\n\nL\n");
$x->write_file("bad/cur/2.M1P1.x:2,S", "Subject: taken\n\nT\n");
$x->write_file("bad/cur/3.M1P1.x:2,S",
    "Subject: native\r\n\r\nnative body\r\n");
$x->write_file("bad/cur/4.M1P1.x:2,S", "Subject: fine\n\nF\n");
$x->write_file("bad/dovecot-uidlist", "3 V7 N5\n"
    . "1 P" . ('x' x 71) . " :1.M1P1.x\n"
    . "2 P$n2 :2.M1P1.x\n"
    . "3 P$n1 :3.M1P1.x\n"
    . "4 :4.M1P1.x\n");

($rc, $out, $err) = import_cmd('frank', '--from', "maildir:$d/bad");
is($rc, 65, 'refused messages: exit 65');
is($out, "imported 1, already there 1, skipped 2\n",
    'refused: summary');
like($err, qr{cur/1\.M1P1\.x:2,S \(UIDL "x{71}"\): .*not 1 to 70}, 
    'a UIDL too long, named by its file');
my $named = qq{cur/2.M1P1.x:2,S (UIDL "$n2"): UIDL "$n2" has the form of};
like($err, qr/\Q$named\E the UIDs this server makes/,
    'a native UID of another message');
is(body_of('frank', $n2), "Subject: native 2\r\n\r\nother body\r\n",
    'which is left as it was');
is_deeply(uidls_of('frank'), [ $n1, $n2, '0000000400000007' ],
    'the fine one imported');

# usage and source errors

($rc) = import_cmd('nobody', '--from', "maildir:$d/bad");
is($rc, 67, 'unknown user: exit 67');
($rc) = import_cmd('frank', '--from', "maildir:$d/none");
is($rc, 66, 'no Maildir: exit 66');
($rc, $out, $err) = import_cmd('frank', '--from', "maildir:$d/bad",
    '--uidl-format', '%u%{uid}');
is($rc, 64, '%{...}: refused as Dovecot does, exit 64');
($rc) = import_cmd('frank', '--from', "maildir:$d/bad",
    '--uidl-format', 'none');
is($rc, 64, 'a format without a variable: exit 64');
($rc) = import_cmd('frank', '--from', 'imap://x@y');
is($rc, 64, 'an unknown source: exit 64');

# progress on a terminal, through script(1)

SKIP: {
    my $script = $x->prog('script');
    skip 'script(1) not installed', 1 unless $script;
    $x->add_user('tty', 'pw');
    my $cli = Test::Nginx::POP3Ext::cli_path();
    my ($rc, $out) = $x->run_cmd([ $script, '-qec', "$cli -r '"
        . $x->redis_spec() . "' import tty --from "
        . "maildir:" . $dv->maildir('alice') . ' >/dev/null', '/dev/null' ],
        { timeout => 60 });
    like($out, qr/\rpop3ext: importing into "tty": \d+ of 7 messages/,
        'a progress line on a terminal');
}

# one imported copy: a message a client deletes here does not come back

$x->add_user('alice2', 'alice-pw');
($rc, $out) = import_cmd('alice2', '--from',
    'maildir:' . $dv->maildir('alice'));
is($out, "imported 7, already there 0, skipped 0\n", 'alice2 imported');

# the switch: Dovecot stops, nginx with the module takes its port

$dv->stop();
$x->run_pop3();

my $s = $x->session($port, 'alice2', 'alice-pw');
$s->cmd_ok('DELE 1', 'a client deletes a message here');
$s->cmd_ok('QUIT');

($rc, $out) = import_cmd('alice2', '--from',
    'maildir:' . $dv->maildir('alice'));
is($out, "imported 0, already there 7, skipped 0\n",
    'an import again does not bring it back');
is(scalar @{uidls_of('alice2')}, 6, 'six messages left');

# the clients, pointed at this server: nothing to download; then a new
# message, downloaded once

for my $c (qw/ fetchmail mpop getmail /) {
    SKIP: {
        skip "$c not installed", 1 unless $client{$c};
        my ($rc, $log, $got) = run_client($c);
        is($rc . ' ' . (count($got, 'alice') + count($got, 'bob')),
            "$none{$c} 0", "$c downloads nothing from the new server")
            or diag($log);
    }
}

my @ends = $x->error_log =~ /session end, user="(?:alice|bob)"/g;
is(scalar @ends, 2 * grep({ $_ } values %client),
    'each client logged in here as alice and bob');

$x->deliver('alice', "Subject: alice new\n\nnew for alice\n");
$x->deliver('bob', "Subject: bob new\n\nnew for bob\n");

for my $c (qw/ fetchmail mpop getmail /) {
    SKIP: {
        skip "$c not installed", 3 unless $client{$c};
        my ($rc, $log, $got) = run_client($c);
        is(count($got, 'alice') . ' ' . count($got, 'bob'), '1 1',
            "$c downloads the new messages") or diag($log);
        like(join('', @{$got->{alice} || []}, @{$got->{bob} || []}),
            qr/new for alice.*new for bob|new for bob.*new for alice/s,
            "$c: those two");
        ($rc, $log, $got) = run_client($c);
        is($rc . ' ' . (count($got, 'alice') + count($got, 'bob')),
            "$none{$c} 0", "$c: and then nothing") or diag($log);
    }
}

# from this server itself, as from another installation of the module:
# its own UIDs, the new one included, are kept

$x->add_user('alice3', 'pw');
($rc, $out, $err) = import_cmd('alice3', '--from',
    "pop3://alice\@127.0.0.1:$port", { stdin => "alice-pw\n" });
is("$rc $out", "0 imported 8, already there 0, skipped 0\n",
    'import from this server over POP3') or diag($err);
is_deeply(uidls_of('alice3'), uidls_of('alice'),
    'the same UIDs, a native one among them');

###############################################################################

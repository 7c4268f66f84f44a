#!/usr/bin/perl

# Byte-exactness: line ends, dot-stuffing (also where a line start falls on
# the boundary of the chunks the module reads and writes), 8-bit octets,
# sizes in LIST and STAT, a 5 MB message.

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

# two more servers read bodies from Redis in small chunks, so that chunk
# boundaries fall everywhere: on every 1024th octet, and at 1500 octets
# (not a power of two)

$x->run_pop3(mail => $x->server(8111, 'pop3_ext_chunk_size 1k;')
    . $x->server(8112, 'pop3_ext_chunk_size 1500;'));

$x->add_user('alice', 'secret');

# [ name, as delivered (stdin of pop3ext deliver), as a client must see it ]

my @cases;

sub msg {
    my ($name, $in, $out) = @_;
    push @cases, [ $name, $in, $out ];
}

msg('bare LF becomes CRLF', "Subject: lf\n\na\nb\n",
    "Subject: lf\r\n\r\na\r\nb\r\n");
msg('CRLF stays CRLF', "Subject: crlf\r\n\r\na\r\nb\r\n",
    "Subject: crlf\r\n\r\na\r\nb\r\n");
msg('mixed line ends', "Subject: mixed\r\n\na\r\nb\n",
    "Subject: mixed\r\n\r\na\r\nb\r\n");
msg('no final newline', "Subject: nonl\n\nlast line",
    "Subject: nonl\r\n\r\nlast line\r\n");
msg('lines starting with dots',
    "Subject: dots\n\n.\n..\n.leading\nmid.dle\n. space\n...\n.\n",
    "Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nmid.dle\r\n. space\r\n"
    . "...\r\n.\r\n");
msg('a message that is one dot', ".\n", ".\r\n");
msg('dot first, then headers', ".Subject: x\n\nbody\n",
    ".Subject: x\r\n\r\nbody\r\n");
msg('8-bit octets', "Subject: 8bit\n\n" . join('', map { chr } 0x80 .. 0xff)
    . "\nGr\xc3\xbc\xc3\x9fe \xe2\x82\xac\n\x01\x02\x7f\x1b[0m\n",
    "Subject: 8bit\r\n\r\n" . join('', map { chr } 0x80 .. 0xff)
    . "\r\nGr\xc3\xbc\xc3\x9fe \xe2\x82\xac\r\n\x01\x02\x7f\x1b[0m\r\n");
msg('empty body', "Subject: empty\n\n", "Subject: empty\r\n\r\n");
msg('a 20000-octet line', "Subject: long\n\n" . ('z' x 20000) . "\n",
    "Subject: long\r\n\r\n" . ('z' x 20000) . "\r\n");
msg('CRLF.CRLF inside the message', "Subject: eom\n\nbefore\n.\nafter\n",
    "Subject: eom\r\n\r\nbefore\r\n.\r\nafter\r\n");

# line starts on every 1024-octet boundary, in three alignments: CR|LF,
# LF|dot and dot|dot split by the boundary, for any chunk size that is a
# multiple of 1024

for my $shift (0, 1, 2) {
    my $head = "Subject: boundary $shift\r\n\r\n";
    my $first = 1024 + 1 - $shift - length($head);
    my $body = $head . ('a' x ($first - 2)) . "\r\n";
    my $line = $shift == 2 ? '..' . ('b' x 1020) . "\r\n"
        : '.' . ('b' x 1021) . "\r\n";
    $body .= $line for 1 .. 300;
    msg("dots at chunk boundaries ($shift)", $body, $body);
}

# 5 MB: lines of every length 0..199, a third of them starting with dots

my $big = "Subject: big\r\n\r\n";
my $i = 0;
while (length($big) < 5 * 1024 * 1024) {
    my $len = $i % 200;
    my $l = join('', map { chr(0x21 + ($i * 7 + $_) % 94) } 1 .. $len);
    $l = '.' . $l if $i % 3 == 0;
    $big .= "$l\r\n";
    $i++;
}
msg('5 MB message', $big, $big);

$x->deliver('alice', $_->[1]) for @cases;

$t->plan(4 * @cases + 6 + 2 * (@cases + 1));

###############################################################################

my $s = $x->session(port(8110), 'alice', 'secret');
die "cannot log in\n" unless $s;
$s->timeout(20);

my ($st, $list) = $s->cmd_multi('LIST');
my %size = map { $_->[0] => $_->[1] }
    @{$x->listing($list) || []};

my $n = 0;
my $sum = 0;
for my $c (@cases) {
    my ($name, undef, $want) = @$c;
    $n++;

    is($size{$n}, length($want), "$name: LIST size is exact");
    $sum += $size{$n} // 0;

    my ($r, $raw) = $s->cmd_multi_raw("RETR $n");
    like($r // '', qr/^\+OK/, "$name: RETR");
    ok(defined $raw && $raw eq $x->stuff($want) . ".\r\n",
        "$name: dot-stuffed on the wire")
        or diag(first_difference($raw, $x->stuff($want)
            . ".\r\n"));
    ok(defined $raw && $x->unstuff($raw) eq $want,
        "$name: byte-exact");
}

is($s->cmd('STAT'), "+OK $n $sum", 'STAT is the sum of LIST');

# TOP with dot-stuffed lines in the part it sends

my ($r, $raw) = $s->cmd_multi_raw('TOP 5 3');
is($raw, "Subject: dots\r\n\r\n..\r\n...\r\n..leading\r\n.\r\n",
    'TOP dot-stuffs');

# the big one again, after the TOP of a small one and with a NOOP behind it
# in the same write (the reply order survives a long body)

$s->send('TOP 1 0', 'RETR ' . scalar(@cases), 'NOOP');
$r = $s->reply();
my $top = $s->read_multi();
is($top, "Subject: lf\r\n\r\n", 'TOP before a big RETR');
$r = $s->reply();
my $b = $s->read_multi();
ok(defined $b && $b eq $big, 'big RETR in a pipeline byte-exact');
like($s->reply() // '', qr/^\+OK/, 'NOOP after the big RETR');

$s->cmd_ok('QUIT');

# the same with small chunks

for my $p (8111, 8112) {
    my $c = $x->session(port($p), 'alice', 'secret');
    die "cannot log in\n" unless $c;
    $c->timeout(20);
    my $k = 0;
    for my $case (@cases) {
        my ($name, undef, $want) = @$case;
        $k++;
        my (undef, $w) = $c->cmd_multi_raw("RETR $k");
        ok(defined $w && $w eq $x->stuff($want) . ".\r\n",
            "$name: exact with small chunks (PORT_$p)")
            or diag(first_difference($w, $x->stuff($want)
                . ".\r\n"));
    }
    like($c->cmd('QUIT') // '', qr/^\+OK/, "QUIT (PORT_$p)");
}

###############################################################################

sub first_difference {
    my ($got, $want) = @_;
    return 'got nothing' unless defined $got;
    my $i = 0;
    $i++ while $i < length($got) && $i < length($want)
        && substr($got, $i, 1) eq substr($want, $i, 1);
    my $show = sub {
        (my $x = substr($_[0], $i > 20 ? $i - 20 : 0, 60)) =~
            s/([^\x20-\x7e])/sprintf('\x%02x', ord $1)/ge;
        return $x;
    };
    return "lengths got " . length($got) . " want " . length($want)
        . ", first difference at octet $i:\n got:  " . $show->($got)
        . "\n want: " . $show->($want);
}

###############################################################################

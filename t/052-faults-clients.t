#!/usr/bin/perl

# Correct under failure (issue 7), the faults that come from clients and
# from the data, not from Redis (t/050-faults.t injects those into the one
# Redis server): what the client is told must be what happened.  Moved
# from t/050-faults.t as they were, to run on a Redis Cluster too
# (TEST_P3X_REDIS=cluster).
#
#   - a burst of wrong passwords from one address gets no more checks than
#     the block allows, the right password last included; closing right
#     after PASS does not escape the count
#   - CRAM-MD5 with a 253-octet server name
#   - a body stored with bare LF line ends reaches a slow reader whole
#   - slow clients cannot stay before login past pop3_ext_login_timeout

use strict;
use warnings;

use Test::More;
use MIME::Base64 qw/ decode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;
use Test::Nginx::POP3Ext::Faults;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

Test::Nginx::POP3Ext::Faults::run_servers($x);    # 8110 and 8111
my $NAME = $Test::Nginx::POP3Ext::Faults::NAME;   # 8110's server_name

$x->add_user('alice', 'secret');

$t->plan(17);

my $P = port(8110);
my $Q = port(8111);

sub fill {
    my ($user, $n) = @_;
    $x->redis_cmd('DEL', $x->mbox_key($x->mailbox_of($user), 'INDEX'));
    $x->deliver($user, "Subject: $user $_\n\nbody $_\n") for 1 .. $n;
}

###############################################################################

# the burst: 200 connections from one address at once, 199 wrong
# passwords and the right one last; the address is blocked after 20
# checks, so at most 20 [AUTH] answers, and the right one is refused

{
    my @c;
    for my $i (1 .. 200) {
        my $c = $x->client(port => $P, timeout => 30) or last;
        push @c, $c;
    }
    my $i = 0;
    for my $c (@c) {
        $i++;
        my $pw = $i == @c ? 'secret' : "wrong$i";
        $c->send("USER alice\r\nPASS $pw");
    }
    my (%n, $last);
    for my $c (@c) {
        $c->read_line();                              # USER's +OK
        my $r = $c->read_line() // '(none)';
        $last = $r;
        $n{$r =~ /^\+OK/ ? 'ok' : $r =~ /\[AUTH\]/ ? 'checked'
            : $r =~ /too many failed/ ? 'blocked' : 'other'}++;
    }
    $_->close() for @c;

    is(scalar @c, 200, 'burst: 200 connections');
    cmp_ok($n{checked} // 0, '<=', 20, 'burst: at most 20 passwords checked')
        or diag(explain(\%n));
    is($n{ok} // 0, 0, 'burst: the right password, sent last, refused');
    is(($n{checked} // 0) + ($n{blocked} // 0), 200,
        'burst: every attempt answered once, checked or blocked');
    like($last, qr/too many failed/, 'burst: the last one was blocked');
    $x->redis_cmd('DEL', $x->model('P3X_FAIL_ADDR_PREFIX') . '127.0.0.1'
        . $x->model('P3X_TAG_CLOSE'));
}

# closing 150 ms after PASS does not escape the count

{
    my $tries = 0;
    for (1 .. 30) {
        my $c = $x->client(port => $P) or last;
        $c->send("USER alice\r\nPASS wrong");
        sleep(0.15);
        $c->close();
        $tries++;
    }
    sleep(1);
    my $checked = () = $x->error_log() =~ /authentication failed for user "alice"/g;
    my $key = $x->model('P3X_FAIL_ADDR_PREFIX') . '127.0.0.1'
        . $x->model('P3X_TAG_CLOSE');
    is($x->redis_cmd('GET', $key), $tries,
        'closing early: every attempt counted');
    cmp_ok($checked, '<=', 20 + 20, 'closing early: checks stay bounded');
    $x->redis_cmd('DEL', $key);
}

###############################################################################

# CRAM-MD5 with a 253-octet server name: the challenge carries it whole

{
    my $c = $x->client(port => $P);
    my $r = $c->cmd('AUTH CRAM-MD5') // '';
    like($r, qr/^\+ \S+$/, 'CRAM-MD5: a challenge');
    my ($b64) = $r =~ /^\+ (\S+)$/;
    my $salt = decode_base64($b64 // '');
    like($salt, qr/^<[^>]*\@\Q$NAME\E>$/,
        'CRAM-MD5: the challenge names the whole server name');
    $c->send('*');
    like($c->read_line() // '', qr/^-ERR/, 'CRAM-MD5: cancelled');
    $c->close();
}

###############################################################################

# a body stored against the model's rules, with bare LF line ends
# (a raw writer), to a reader that takes a little at a time: every line
# arrives, dot-stuffed, CRLF-terminated, and the log says why

{
    fill('alice', 0);
    my $body = ".\n" x 300000;
    my $mbox = $x->mailbox_of('alice');
    $x->redis_cmd('SET', $x->mbox_key($mbox, 'MSG') . 'rawbarelf', $body);
    $x->redis_cmd('RPUSH', $x->mbox_key($mbox, 'INDEX'),
        'rawbarelf ' . length $body);
    my $c = $x->session($Q, 'alice', 'secret');
    $c->send('RETR 1');
    my $head = $c->read_line() // '';
    like($head, qr/^\+OK 600000 octets/, 'bare LF: the stored size');
    my ($got, $n) = ('', 0);
    my $deadline = time() + 60;
    while ($got !~ /\r\n\.\r\n\z/ && time() < $deadline) {
        sleep(0.05) unless $n++ % 2000;               # a slow reader
        my $line = $c->read_line() // last;
        $got .= $line;
    }
    my @lines = split /\r\n/, $got;
    pop @lines;                                       # the terminator
    is(scalar @lines, 300000, 'bare LF: every line arrived');
    is(scalar(grep { $_ ne '..' } @lines), 0, 'bare LF: every dot stuffed');
    ok($x->wait_for_log(qr/stored with bare LF line ends/),
        'bare LF: logged');
    $c->cmd('QUIT');
}

###############################################################################

# slow clients: one octet every half second, never a line; all are
# closed at the login timeout (2 s) with a reply

{
    my @c = map { $x->client(port => $Q) } 1 .. 20;
    my $t0 = time();
    my $closed = 0;
    while (time() - $t0 < 8 && $closed < @c) {
        $closed = 0;
        for my $c (@c) {
            $c->print('U');
            $closed++ if $c->closed(0.01);
        }
        sleep(0.5);
    }
    is($closed, 20, 'slow clients: all 20 closed');
    cmp_ok(time() - $t0, '<', 6, 'slow clients: within the login timeout');
    ok($x->wait_for_log(qr/no login within 2000 ms/),
        'slow clients: logged');
}

###############################################################################

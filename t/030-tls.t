#!/usr/bin/perl

# TLS: implicit TLS on a "listen ... ssl" port (RFC 8314) and STLS
# (RFC 2595); CAPA offers STLS only before TLS and only when starttls is
# on; "starttls only" refuses every credential before TLS; without a
# trusted network plaintext USER/PASS, AUTH PLAIN and LOGIN are refused
# with [AUTH] before TLS and hidden from CAPA, and allowed inside TLS or
# with "pop3_ext_plaintext_auth always"; commands pipelined behind STLS are
# discarded, never executed inside TLS; STLS twice or inside TLS is
# refused; handshake garbage closes the connection and nothing else; the
# greeting after an implicit TLS handshake is not held back by Nagle.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_ssl;

my ($crt, $key) = $x->make_self_signed('server', 'localhost');

# 8110: STLS, no trusted networks (plaintext only inside TLS)
# 8111: implicit TLS
# 8112: starttls only (APOP on, to see it refused too)
# 8113: no TLS at all, no trusted networks
# 8114: STLS, plaintext always allowed
# 8115: STLS, the default trusted networks (loopback)

$x->run_pop3(
    mail => "    ssl_certificate $crt;\n"
        . "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        . "    ssl_certificate_key $key;\n"
        . $x->server(8111, 'pop3_ext_secure_networks off;',
            listen => 'ssl')
        . $x->server(8112, "starttls only;\n"
            . 'pop3_ext_auth user plain login apop;')
        . $x->server(8113, "starttls off;\n"
            . 'pop3_ext_secure_networks off;')
        . $x->server(8114, "starttls on;\n"
            . "pop3_ext_secure_networks off;\n"
            . 'pop3_ext_plaintext_auth always;')
        . $x->server(8115, 'starttls on;'),
    server => "        starttls on;\n"
        . "        pop3_ext_secure_networks off;\n",
);

my $msg = "Subject: tls\r\n\r\nover TLS\r\n.dot\r\n";
$x->add_user('alice', 'secret');
$x->deliver('alice', $msg);

$t->plan(103);

my $STLS = port(8110);
my $SSL = port(8111);
my $ONLY = port(8112);
my $NOTLS = port(8113);
my $ALWAYS = port(8114);
my $TRUSTED = port(8115);

my $PLAINTEXT = qr/^-ERR \[AUTH\] plaintext authentication disallowed on non-secure connections$/;
my $MUST_STLS = qr/^-ERR \[AUTH\] must issue a STLS command first$/;

use MIME::Base64 qw/ encode_base64 /;

sub b64 { encode_base64($_[0], '') }

sub capa {
    my ($s) = @_;
    my ($st, $body) = $s->cmd_multi('CAPA');
    return '' unless defined $st && $st =~ /^\+OK/ && defined $body;
    return $body;
}

sub stls {
    my ($s) = @_;
    my $r = $s->cmd('STLS');
    return 0 unless defined $r && $r eq '+OK begin TLS negotiation';
    return $s->start_tls();
}

###############################################################################

# implicit TLS

my $s = $x->client(port => $SSL, ssl => 1);
ok($s->is_tls, 'implicit TLS handshake');
like($s->greeting // '', qr/^\+OK/, 'greeting inside TLS');
my $capa = capa($s);
unlike($capa, qr/^STLS\r?$/m, 'implicit TLS: CAPA without STLS');
like($capa, qr/^USER\r?$/m, 'implicit TLS: CAPA with USER');
like($capa, qr/^SASL PLAIN LOGIN\r?$/m, 'implicit TLS: CAPA with SASL PLAIN LOGIN');
$s->cmd_err('STLS', 'STLS inside implicit TLS');
$s->cmd_ok('USER alice');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'implicit TLS: login');
is($s->cmd_multi('RETR 1'), $msg, 'implicit TLS: RETR byte-exact');
$s->cmd_ok('QUIT');

# STLS, without a trusted network

$s = $x->client(port => $STLS);
$capa = capa($s);
like($capa, qr/^STLS\r?$/m, 'before TLS: CAPA with STLS');
unlike($capa, qr/^USER\r?$/m, 'before TLS: CAPA hides USER');
unlike($capa, qr/^SASL\b.*\b(PLAIN|LOGIN)\b/m,
    'before TLS: CAPA hides SASL PLAIN and LOGIN');
$s->cmd_err('USER alice', $PLAINTEXT, 'USER before TLS');
$s->cmd_err('PASS secret', $PLAINTEXT, 'PASS before TLS');
$s->cmd_err('AUTH PLAIN ' . b64("\0alice\0secret"), $PLAINTEXT,
    'AUTH PLAIN before TLS');
$s->cmd_err('AUTH LOGIN', $PLAINTEXT, 'AUTH LOGIN before TLS');
$s->cmd_err('STAT', 'STAT before login');

ok(stls($s), 'STLS handshake');
$capa = capa($s);
unlike($capa, qr/^STLS\r?$/m, 'after STLS: CAPA without STLS');
like($capa, qr/^USER\r?$/m, 'after STLS: CAPA with USER');
like($capa, qr/^SASL PLAIN LOGIN\r?$/m, 'after STLS: CAPA with PLAIN LOGIN');
$s->cmd_err('STLS', 'STLS twice');

# every plaintext mechanism works inside TLS

$s->cmd_ok('USER alice', 'USER after STLS');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'USER/PASS after STLS');
$s->cmd_err('STLS', 'STLS after login');
is($s->cmd_multi('RETR 1'), $msg, 'after STLS: RETR byte-exact');
$s->cmd_ok('QUIT');

$s = $x->client(port => $STLS);
ok(stls($s), 'STLS for AUTH PLAIN');
like($s->cmd('AUTH PLAIN ' . b64("\0alice\0secret"), 15) // '', qr/^\+OK/,
    'AUTH PLAIN after STLS');
$s->cmd_ok('QUIT');

$s = $x->client(port => $STLS);
ok(stls($s), 'STLS for AUTH LOGIN');
is($s->cmd('AUTH LOGIN'), '+ ' . b64('Username:'), 'AUTH LOGIN challenge');
is($s->cmd(b64('alice')), '+ ' . b64('Password:'), 'AUTH LOGIN password');
like($s->cmd(b64('secret'), 15) // '', qr/^\+OK/, 'AUTH LOGIN after STLS');
$s->cmd_ok('QUIT');

# starttls only: nothing about credentials before TLS

$s = $x->client(port => $ONLY);
like($s->greeting // '', qr/^\+OK .*<[^>]+>/, 'starttls only: APOP greeting');
$capa = capa($s);
like($capa, qr/^STLS\r?$/m, 'starttls only: CAPA with STLS');
unlike($capa, qr/^(USER|SASL)\b/m, 'starttls only: no USER, no SASL');
$s->cmd_err('USER alice', $MUST_STLS, 'starttls only: USER');
$s->cmd_err('PASS secret', $MUST_STLS, 'starttls only: PASS');
$s->cmd_err('AUTH PLAIN ' . b64("\0alice\0secret"), $MUST_STLS,
    'starttls only: AUTH PLAIN');
$s->cmd_err('APOP alice ' . ('0' x 32), $MUST_STLS, 'starttls only: APOP');
ok(stls($s), 'starttls only: STLS');
$s->cmd_ok('USER alice', 'starttls only: USER inside TLS');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/,
    'starttls only: login inside TLS');
$s->cmd_ok('QUIT');

# starttls off, no trusted network: no STLS, no plaintext

$s = $x->client(port => $NOTLS);
$capa = capa($s);
unlike($capa, qr/^STLS\r?$/m, 'starttls off: CAPA without STLS');
unlike($capa, qr/^USER\r?$/m, 'starttls off: CAPA hides USER');
$s->cmd_err('STLS', 'starttls off: STLS refused');
$s->cmd_err('USER alice', $PLAINTEXT, 'starttls off: USER refused');
$s->cmd_err('AUTH LOGIN', $PLAINTEXT, 'starttls off: AUTH LOGIN refused');

# plaintext always: allowed before TLS, STLS still offered

$s = $x->client(port => $ALWAYS);
$capa = capa($s);
like($capa, qr/^USER\r?$/m, 'plaintext always: CAPA with USER');
like($capa, qr/^SASL PLAIN LOGIN\r?$/m, 'plaintext always: SASL PLAIN LOGIN');
like($capa, qr/^STLS\r?$/m, 'plaintext always: CAPA with STLS');
$s->cmd_ok('USER alice', 'plaintext always: USER');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'plaintext always: login');
$s->cmd_ok('QUIT');

$s = $x->client(port => $ALWAYS);
like($s->cmd('AUTH PLAIN ' . b64("\0alice\0secret"), 15) // '', qr/^\+OK/,
    'plaintext always: AUTH PLAIN');
$s->cmd_ok('QUIT');

# a USER given in plaintext does not survive STLS: the AUTHORIZATION
# state starts over inside TLS

$s = $x->client(port => $ALWAYS);
$s->cmd_ok('USER alice', 'plaintext always: USER before STLS');
ok(stls($s), 'plaintext always: STLS');
like($s->cmd('PASS secret', 15) // '', qr/^-ERR/,
    'PASS inside TLS needs a USER inside TLS');
$s->cmd_ok('USER alice', 'USER inside TLS');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'then PASS logs in');
$s->cmd_ok('QUIT');

# a trusted network (loopback by default) counts as secure

$s = $x->client(port => $TRUSTED);
like(capa($s), qr/^USER\r?$/m, 'loopback: CAPA with USER');
$s->cmd_ok('USER alice', 'loopback: USER');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'loopback: login');
$s->cmd_ok('QUIT');

# STLS injection: what the client pipelined behind STLS in plaintext is
# dropped, never executed inside TLS (CVE-2011-0411).  On the trusted port
# USER/PASS would have logged in if they ran.

for my $port ($STLS, $TRUSTED) {
    my $name = $port == $STLS ? 'untrusted' : 'trusted';
    $s = $x->client(port => $port);
    $s->send("STLS", "USER alice", "PASS secret");
    is($s->reply, '+OK begin TLS negotiation', "$name: STLS with injection");
    ok($s->start_tls(), "$name: handshake after injection")
        or diag($s->{ssl_error});
    is($s->{plaintext_left}, '', "$name: nothing more in plaintext");
    my $r = $s->cmd('STAT');
    like($r // '', qr/^-ERR/, "$name: STAT inside TLS: not logged in");
    $r = $s->cmd('PASS secret', 15);
    like($r // '', qr/^-ERR/, "$name: injected USER was not executed");
    $s->close();
}

ok($x->wait_for_log(qr/client pipelined \d+ octets after STLS, dropped/),
    'injection logged');

# garbage instead of a TLS handshake closes the connection cleanly, and
# the server goes on serving

my $garbage = join('', map { chr((($_ * 7919) ^ ($_ >> 3)) & 255) } 1 .. 3000);

# a TLS record header (handshake, TLS 1.0) in front of garbage: the
# record layer accepts it and the handshake parser sees the garbage

my $record = "\x16\x03\x01\x01\x00" . substr($garbage, 100, 256);

for my $case ([ 'implicit TLS', $SSL, 0, $garbage ],
    [ 'after STLS', $STLS, 1, $garbage ],
    [ 'HTTP on the TLS port', $SSL, 0, "GET / HTTP/1.0\r\n\r\n" ],
    [ 'bad ClientHello, implicit TLS', $SSL, 0, $record ],
    [ 'bad ClientHello after STLS', $STLS, 1, $record ])
{
    my ($name, $port, $stls, $data) = @$case;
    my $c = $x->client(port => $port, greeting => 0);
    if ($stls) {
        $c->reply();
        $c->cmd('STLS');
    }
    $c->print($data);
    ok($c->closed(10), "$name: garbage closes the connection");
}

$s = $x->client(port => $SSL, ssl => 1);
like($s->greeting // '', qr/^\+OK/, 'implicit TLS works after garbage');
$s = $x->client(port => $STLS);
ok(stls($s), 'STLS works after garbage');
like($s->cmd('CAPA') // '', qr/^\+OK/, 'CAPA after STLS after garbage');
ok($x->nginx_running, 'nginx still running');

# a client that closes in the middle of the handshake

my $c = $x->client(port => $SSL, greeting => 0);
$c->print(substr("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" . ('A' x 64),
    0, 40));
$c->close();
$s = $x->client(port => $SSL, ssl => 1);
like($s->greeting // '', qr/^\+OK/, 'implicit TLS works after a cut handshake');

# the greeting follows the handshake at once (no Nagle / delayed-ACK
# stall of ~40 ms); the median of several tries, for TLS 1.3 and 1.2

for my $ver ('TLSv1_3', 'TLSv1_2') {
    my @lat;
    for (1 .. 7) {
        my $g = eval {
            $x->client(port => $SSL, ssl => 1,
                ssl_opts => { SSL_version => $ver });
        };
        diag("no TLS greeting ($ver): $@") unless $g;
        next unless $g && defined $g->greeting;
        push @lat, ($g->{greeting_at} - $g->{handshake_done}) * 1000;
        $g->close();
    }
    @lat = sort { $a <=> $b } @lat;
    my $median = @lat ? $lat[$#lat / 2] : 9999;
    note(sprintf("%s greeting latency after handshake: median %.1f ms "
        . "(%s)", $ver, $median, join(' ', map { sprintf('%.1f', $_) } @lat)));
    ok($median < 30, "$ver: greeting within 30 ms of the handshake")
        or diag(sprintf('median %.1f ms', $median));
}

###############################################################################

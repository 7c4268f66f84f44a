#!/usr/bin/perl

# SASL (RFC 5034) and APOP: PLAIN with and without an initial response and
# with an empty, equal or different authorization identity; LOGIN with and
# without the user name up front; CRAM-MD5 against {PLAIN} and Dovecot's
# {CRAM-MD5} secrets; APOP against {PLAIN} (a hashed secret fails with
# [AUTH]); EXTERNAL with a verified client certificate (none, an
# unverified one, a foreign authzid: [AUTH]); "*" aborts, "=" is the empty
# response, bad or empty base64, an over-long SASL line, AUTH without an
# argument lists the mechanisms, unknown mechanisms; a wrong secret gives
# [AUTH] for every mechanism and the session can try again.

use strict;
use warnings;

use Test::More;
use Digest::MD5 qw/ md5 md5_hex /;
use MIME::Base64 qw/ encode_base64 decode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_ssl;

$x->make_ca('ca');
$x->make_signed('alice', 'alice', 'ca');
$x->make_signed('nobody', 'nobody', 'ca');
$x->make_self_signed('rogue', 'alice');
my ($crt, $key) = $x->make_self_signed('server', 'localhost');
my $d = $x->testdir;

# short failure delays and no blocking: this file fails on purpose often

my $limits = "pop3_ext_auth_fail_delay 10ms;\n"
    . "pop3_ext_auth_fail_delay_max 40ms;\n"
    . "pop3_ext_auth_block_addr 0;\n"
    . "pop3_ext_max_auth_attempts 0;\n";
my $all = 'pop3_ext_auth user plain login cram-md5 apop external;';

# 8110: plaintext (loopback is trusted), every mechanism
# 8111: implicit TLS, client certificates optional, from our CA
# 8112: implicit TLS, any client certificate taken, none verified
# 8113: the default mechanisms

$x->run_pop3(
    mail => "    ssl_certificate $crt;\n"
        . "    ssl_certificate_key $key;\n"
        . "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        . $x->server(8111, "$all\n$limits"
            . "ssl_verify_client optional;\n"
            . "ssl_client_certificate $d/ca.crt;\n", listen => 'ssl')
        . $x->server(8112, "$all\n$limits"
            . "ssl_verify_client optional_no_ca;\n", listen => 'ssl')
        . $x->server(8113, $limits),
    server => "        $all\n$limits",
);

my $port = port(8110);
my $SSL = port(8111);
my $NOCA = port(8112);
my $DEFAULT = port(8113);

$x->set_user_secret('alice', '{PLAIN}secret');
$x->add_user('dave', 'davepw');                 # the default, SHA512-CRYPT
my $cram = $x->doveadm_pw('CRAM-MD5', 'carolpw');
$x->set_user_secret('carol', $cram) if $cram;
$x->set_user_secret('nobody', '{PLAIN}x');
$x->redis_cmd('HSET', $x->user_key('nobody'),
    $x->model('P3X_FIELD_DISABLED'), '1');
$x->deliver('alice', "Subject: a\n\na\n");

$t->plan(130);

my $AUTHFAIL = qr/^-ERR \[AUTH\]/;

sub b64 { encode_base64($_[0], '') }

sub hmac_md5_hex {
    my ($data, $key) = @_;
    $key = md5($key) if length $key > 64;
    $key .= "\0" x (64 - length $key);
    return md5_hex(($key ^ ("\x5c" x 64)) . md5(($key ^ ("\x36" x 64)) . $data));
}

sub conn {
    my ($p, %o) = @_;
    return $x->client(port => $p // $port, %o);
}

# the reply to a command that may end in a login (failures are delayed)

sub login_reply {
    my ($s, $line) = @_;
    return $s->cmd($line, 15) // '(no reply)';
}

# the session still takes commands (CAPA, valid in every state)

sub alive {
    my ($s, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($st, $body) = $s->cmd_multi('CAPA');
    ok(defined $st && $st =~ /^\+OK/ && defined $body, $name);
}

sub logged_in {
    my ($s, $r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    like($r, qr/^\+OK/, $name) or return;
    like($s->cmd('STAT') // '', qr/^\+OK 1 /, "$name: STAT")
        if $name =~ /alice/;
    $s->cmd('QUIT');
}

###############################################################################

# the mechanisms: CAPA and AUTH without an argument agree

my $s = conn();
my ($st, $body) = $s->cmd_multi('CAPA');
like($body // '', qr/^SASL PLAIN LOGIN CRAM-MD5\r$/m,
    'CAPA: SASL PLAIN LOGIN CRAM-MD5, no EXTERNAL without TLS');
($st, $body) = $s->cmd_multi('AUTH');
like($st // '', qr/^\+OK/, 'AUTH without argument +OK');
is($body, "PLAIN\r\nLOGIN\r\nCRAM-MD5\r\n", 'AUTH lists the mechanisms');
$s->cmd_err('AUTH GSSAPI', 'unknown mechanism');
$s->cmd_err('AUTH X-NOT-A-MECH =', 'unknown mechanism with a response');
$s->cmd_err('AUTH EXTERNAL =', 'EXTERNAL without TLS');
alive($s, 'session goes on after refusals');

$s = conn($DEFAULT);
($st, $body) = $s->cmd_multi('AUTH');
is($body, "PLAIN\r\nLOGIN\r\n", 'default mechanisms: PLAIN LOGIN');
$s->cmd_err('AUTH CRAM-MD5', 'CRAM-MD5 not enabled by default');
unlike($s->greeting // '', qr/</, 'no APOP timestamp when APOP is off');
$s->cmd_err('APOP alice ' . md5_hex('x'), 'APOP not enabled by default');

# PLAIN

$s = conn();
logged_in($s, login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0secret")),
    'PLAIN alice, initial response');

$s = conn();
is($s->cmd('AUTH PLAIN'), '+ ', 'PLAIN: empty challenge');
logged_in($s, login_reply($s, b64("\0alice\0secret")),
    'PLAIN alice, after the challenge');

$s = conn();
logged_in($s, login_reply($s, 'auth plain ' . b64("alice\0alice\0secret")),
    'PLAIN alice, authzid equal to authcid, lower-case command');

$s = conn();
like(login_reply($s, 'AUTH PLAIN ' . b64("bob\0alice\0secret")), $AUTHFAIL,
    'PLAIN: another authzid refused');
like(login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0wrong")), $AUTHFAIL,
    'PLAIN: wrong password');
like(login_reply($s, 'AUTH PLAIN ' . b64("\0mallory\0secret")), $AUTHFAIL,
    'PLAIN: unknown user');
like(login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0")), $AUTHFAIL,
    'PLAIN: empty password');
like(login_reply($s, 'AUTH PLAIN ' . b64("alice\0secret")), $AUTHFAIL,
    'PLAIN: one NUL only');
like(login_reply($s, 'AUTH PLAIN ='), $AUTHFAIL,
    'PLAIN: empty initial response');
like(login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0sec\0ret")), $AUTHFAIL,
    'PLAIN: NUL inside the password');
logged_in($s, login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0secret")),
    'PLAIN alice after failures on the same connection');

# LOGIN

$s = conn();
is($s->cmd('AUTH LOGIN'), '+ ' . b64('Username:'), 'LOGIN: Username:');
is($s->cmd(b64('alice')), '+ ' . b64('Password:'), 'LOGIN: Password:');
logged_in($s, login_reply($s, b64('secret')), 'LOGIN alice');

$s = conn();
is($s->cmd('AUTH LOGIN ' . b64('alice')), '+ ' . b64('Password:'),
    'LOGIN with the user name up front');
logged_in($s, login_reply($s, b64('secret')), 'LOGIN alice, initial user');

$s = conn();
$s->cmd('AUTH LOGIN ' . b64('alice'));
like(login_reply($s, b64('wrong')), $AUTHFAIL, 'LOGIN: wrong password');
like(login_reply($s, 'AUTH LOGIN ='), $AUTHFAIL, 'LOGIN: empty user name');
$s->cmd('AUTH LOGIN ' . b64('alice'));
like(login_reply($s, '='), $AUTHFAIL, 'LOGIN: empty password');
alive($s, 'LOGIN: session goes on');

# CRAM-MD5

sub cram {
    my ($user, $secret, $p) = @_;
    my $c = conn($p);
    my $ch = $c->cmd('AUTH CRAM-MD5') // '';
    return ($c, "no challenge: $ch", '') unless $ch =~ /^\+ (\S+)$/;
    my $challenge = decode_base64($1);
    my $r = login_reply($c, b64("$user " . hmac_md5_hex($challenge, $secret)));
    return ($c, $r, $challenge);
}

my ($c, $r, $ch1) = cram('alice', 'secret');
like($ch1, qr/^<[^<>\s]+\@[^<>\s]*>$/, 'CRAM-MD5 challenge is <id@host>');
logged_in($c, $r, 'CRAM-MD5 alice ({PLAIN})');
my $ch2;
($c, $r, $ch2) = cram('alice', 'wrong');
like($r, $AUTHFAIL, 'CRAM-MD5: wrong secret');
isnt($ch1, $ch2, 'CRAM-MD5 challenges differ');
($c, $r) = cram('dave', 'davepw');
like($r, $AUTHFAIL, 'CRAM-MD5: a {SHA512-CRYPT} user fails with [AUTH]');
ok($x->wait_for_log(qr/stored secret of user "dave" cannot serve CRAM-MD5/),
    'CRAM-MD5 on a hashed secret logged');
($c, $r) = cram('mallory', 'x');
like($r, $AUTHFAIL, 'CRAM-MD5: unknown user');

SKIP: {
    skip 'doveadm not found: no {CRAM-MD5} secret', 2 unless $cram;
    ($c, $r) = cram('carol', 'carolpw');
    logged_in($c, $r, 'CRAM-MD5 carol (Dovecot {CRAM-MD5} secret)');
    ($c, $r) = cram('carol', 'carolpx');
    like($r, $AUTHFAIL, 'CRAM-MD5 carol: wrong secret');
}

$s = conn();
$s->cmd('AUTH CRAM-MD5');
like(login_reply($s, b64('alice 0123')), $AUTHFAIL,
    'CRAM-MD5: malformed response');
$s->cmd('AUTH CRAM-MD5');
like(login_reply($s, b64('alice ' . ('Z' x 32))), $AUTHFAIL,
    'CRAM-MD5: digest not hex');
$s->cmd_err('AUTH CRAM-MD5 ' . b64('alice x'),
    'CRAM-MD5 takes no initial response');
alive($s, 'CRAM-MD5: session goes on');

# APOP

sub apop {
    my ($user, $secret, $p) = @_;
    my $c = conn($p);
    my ($ts) = ($c->greeting // '') =~ /(<[^>]+>)/;
    return ($c, 'no timestamp', '') unless $ts;
    return ($c, login_reply($c, "APOP $user " . md5_hex($ts . $secret)), $ts);
}

my ($ts1, $ts2);
($c, $r, $ts1) = apop('alice', 'secret');
like($ts1, qr/^<[^<>\s]+\@[^<>\s]*>$/, 'APOP timestamp in the greeting');
logged_in($c, $r, 'APOP alice ({PLAIN})');
($c, $r, $ts2) = apop('alice', 'wrong');
like($r, $AUTHFAIL, 'APOP: wrong secret');
isnt($ts1, $ts2, 'APOP timestamps differ');
($c, $r) = apop('dave', 'davepw');
like($r, $AUTHFAIL, 'APOP: a {SHA512-CRYPT} user fails with [AUTH]');
($c, $r) = apop('mallory', 'x');
like($r, $AUTHFAIL, 'APOP: unknown user');
SKIP: {
    skip 'doveadm not found', 1 unless $cram;
    ($c, $r) = apop('carol', 'carolpw');
    like($r, $AUTHFAIL, 'APOP: a {CRAM-MD5} user fails with [AUTH]');
}
$c->cmd_err('APOP alice', 'APOP without digest');
$c->cmd_err('APOP alice 1234', 'APOP with a short digest');
alive($c, 'APOP: session goes on');

# "*" aborts, at every step

for my $m ('PLAIN', 'LOGIN', 'CRAM-MD5') {
    $s = conn();
    $s->cmd("AUTH $m");
    $s->cmd_err('*', qr/^-ERR \[AUTH\] authentication cancelled$/, "$m: * aborts");
    like($s->cmd('CAPA') // '', qr/^\+OK/, "$m: next line is a command");
    $s->read_multi();
}
$s = conn();
$s->cmd('AUTH LOGIN');
$s->cmd(b64('alice'));
$s->cmd_err('*', qr/^-ERR \[AUTH\] authentication cancelled$/,
    'LOGIN: * aborts at the password');
$s->cmd_err('AUTH PLAIN *', qr/^-ERR \[AUTH\] authentication cancelled$/,
    '* as initial response');
alive($s, 'session goes on after aborts');

# bad base64

for my $bad ('!!!!', 'abc', 'YWxp=2Nl', 'Y W x p', "\x80\x81\x82\x83",
    '====', '')
{
    $s = conn();
    $s->cmd('AUTH PLAIN');
    (my $n = $bad) =~ s/([^\x21-\x7e])/sprintf('\x%02x', ord $1)/ge;
    $s->cmd_err($bad, qr/^-ERR \[AUTH\] invalid base64 in SASL response$/,
        "bad base64 '$n'");
    alive($s, "bad base64 '$n': session goes on");
}

# over-long SASL lines: refused, and the exchange is over

$s = conn();
$s->cmd('AUTH PLAIN');
$r = $s->cmd('A' x 5000);
like($r // '', qr/^-ERR \[AUTH\] SASL response too long$/,
    'SASL line of 5000 octets refused');
$r = $s->cmd('CAPA');
like($r // '', qr/^\+OK/,
    'after an over-long SASL line the next line is a command');
$s->read_multi() if defined $r && $r =~ /^\+OK/;
logged_in($s, login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0secret")),
    'PLAIN alice after an over-long SASL line');

# EXTERNAL: the verified certificate names the user

my %ca = (SSL_cert_file => "$d/alice.crt", SSL_key_file => "$d/alice.key");

$s = conn($SSL, ssl => 1, ssl_opts => \%ca);
($st, $body) = $s->cmd_multi('CAPA');
like($body // '', qr/^SASL PLAIN LOGIN CRAM-MD5 EXTERNAL\r$/m,
    'TLS: CAPA with EXTERNAL');
logged_in($s, login_reply($s, 'AUTH EXTERNAL ='), 'EXTERNAL alice, no authzid');

$s = conn($SSL, ssl => 1, ssl_opts => \%ca);
is($s->cmd('AUTH EXTERNAL'), '+ ', 'EXTERNAL: empty challenge');
logged_in($s, login_reply($s, '='), 'EXTERNAL alice, after the challenge');

$s = conn($SSL, ssl => 1, ssl_opts => \%ca);
logged_in($s, login_reply($s, 'AUTH EXTERNAL ' . b64('alice')),
    'EXTERNAL alice, authzid alice');

$s = conn($SSL, ssl => 1, ssl_opts => \%ca);
like(login_reply($s, 'AUTH EXTERNAL ' . b64('bob')), $AUTHFAIL,
    'EXTERNAL: another authzid refused');
ok($x->wait_for_log(qr/EXTERNAL authorization identity "bob" is not the certificate's "alice"/),
    'EXTERNAL authzid mismatch logged');
like(login_reply($s, 'AUTH EXTERNAL ' . b64('alicex')), $AUTHFAIL,
    'EXTERNAL: a longer authzid refused');
logged_in($s, login_reply($s, 'AUTH EXTERNAL ='),
    'EXTERNAL alice after refusals');

$s = conn($SSL, ssl => 1);
like(login_reply($s, 'AUTH EXTERNAL ='), $AUTHFAIL,
    'EXTERNAL without a client certificate');
$s->cmd_ok('USER alice', 'no certificate: USER still works');
like(login_reply($s, 'PASS secret'), qr/^\+OK/, 'no certificate: PASS');

$s = conn($SSL, ssl => 1, ssl_opts => {
    SSL_cert_file => "$d/nobody.crt", SSL_key_file => "$d/nobody.key" });
like(login_reply($s, 'AUTH EXTERNAL ='), $AUTHFAIL,
    'EXTERNAL: certificate of a disabled user');

# a certificate from an unknown CA is refused by nginx when verification
# is on, and never logs in when it is not (optional_no_ca)

$s = eval { conn($SSL, ssl => 1, ssl_opts => {
    SSL_cert_file => "$d/rogue.crt", SSL_key_file => "$d/rogue.key" }) };
unlike(($s && $s->greeting) // '', qr/^\+OK/,
    'unknown CA: no session (optional)');

$s = conn($NOCA, ssl => 1, ssl_opts => {
    SSL_cert_file => "$d/rogue.crt", SSL_key_file => "$d/rogue.key" });
like($s->greeting // '', qr/^\+OK/, 'optional_no_ca: session');
like(login_reply($s, 'AUTH EXTERNAL ='), $AUTHFAIL,
    'optional_no_ca: unverified certificate does not log in');
like(login_reply($s, 'AUTH EXTERNAL ' . b64('alice')), $AUTHFAIL,
    'optional_no_ca: not with an authzid either');

# AUTH after login

$s = conn();
like(login_reply($s, 'AUTH PLAIN ' . b64("\0alice\0secret")), qr/^\+OK/,
    'login for AUTH in TRANSACTION');
$s->cmd_err('AUTH PLAIN ' . b64("\0alice\0secret"), 'AUTH after login');
$s->cmd_err('AUTH', 'AUTH list after login');
$s->cmd_err('APOP alice ' . md5_hex('x'), 'APOP after login');
$s->cmd_ok('QUIT');

# every failure above was logged for fail2ban, with the mechanism

ok($x->wait_for_log(qr/authentication failed for user "alice" \(CRAM-MD5\)[^\n]*client: 127\.0\.0\.1/),
    'CRAM-MD5 failure logged');
ok($x->wait_for_log(qr/authentication failed for user "alice" \(APOP\)/),
    'APOP failure logged');

###############################################################################

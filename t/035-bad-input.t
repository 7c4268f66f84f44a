#!/usr/bin/perl

# Bad input: over-long lines with and without CRLF (also longer than the
# buffer, also never ended), NUL octets and bare CR (refused), bare LF line
# ends (accepted), invalid or empty base64, huge and wrapping numbers,
# every command in the wrong state, and clients that walk away in the
# middle of a SASL exchange, of a password check or of a failure delay:
# the server answers or closes, and the next session is fine.

use strict;
use warnings;

use Test::More;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

$x->run_pop3(server => "        pop3_ext_auth_fail_delay 300ms;\n"
    . "        pop3_ext_auth_fail_delay_max 300ms;\n"
    . "        pop3_ext_auth_block_addr 0;\n"
    . "        pop3_ext_max_auth_attempts 0;\n"
    . "        pop3_ext_auth user plain login cram-md5 apop;\n");

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->deliver('alice', "Subject: one\n\n1\n");
$x->deliver('alice', "Subject: two\n\n2\n");

$t->plan(119);

my $port = port(8110);

sub b64 { encode_base64($_[0], '') }

sub conn { $x->client(port => $port) }

# CAPA answered: the session takes commands

sub alive {
    my ($s, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($st, $body) = $s->cmd_multi('CAPA');
    ok(defined $st && $st =~ /^\+OK/ && defined $body, $name)
        or diag('CAPA: ' . ($st // '(no reply)'));
}

sub session {
    my $s = $x->session($port, 'alice', 'secret');
    return $s // conn();
}

###############################################################################

# over-long lines (line_max 1024, buffer 2048)

my $s = conn();
$s->cmd_err('NOOP ' . ('x' x 1100), qr/^-ERR line too long$/,
    '1105 octets with CRLF');
alive($s, 'after 1105 octets');
$s->cmd_err('NOOP ' . ('x' x 5000), qr/^-ERR line too long$/,
    '5005 octets with CRLF, more than the buffer');
alive($s, 'after 5005 octets');
$s->cmd_err('X' x 300000, qr/^-ERR line too long$/, '300000 octets');
alive($s, 'after 300000 octets');

# without CRLF: one refusal, however long it goes on, until the LF

$s->print('A' x 3000);
is($s->reply(), '-ERR line too long', '3000 octets without CRLF refused');
$s->print('B' x 100000);
is($s->reply(0.5), undef, 'more of the same line: no more replies');
$s->print('C' x 1000 . "\r\n");
is($s->reply(0.5), undef, 'its end: no reply either');
alive($s, 'the next line is a command again');

# a line shorter than the limit, in pieces, waits for its end

$s->print('CA');
is($s->reply(0.3), undef, 'partial command: no reply');
$s->print("PA\r");
is($s->reply(0.3), undef, 'partial command up to CR: no reply');
$s->print("\n");
like($s->reply() // '', qr/^\+OK/, 'completed command answered');
$s->read_multi();

# a client that leaves in the middle of a long line

$s = conn();
$s->print('Z' x 1500);
$s->close();
$s = conn();
$s->print('Z' x 5000);
$s->close();

# NUL and bare CR: refused, never split into two commands

$s = conn();
$s->cmd_err("CA\0PA", qr/^-ERR invalid octets in command$/, 'NUL in a command');
$s->cmd_err("USER al\0ice", 'NUL in a user name');
$s->cmd_err("CAPA\rUSER alice", 'bare CR inside a line');
$s->cmd_err("USER alice\rPASS secret", 'bare CR: no smuggled PASS');
$s->cmd_err("\tCAPA", 'TAB in a command');
$s->cmd_err("CAPA\x7f", 'DEL in a command');
$s->cmd_ok('USER alice');
like($s->cmd("PASS se\0cret", 15) // '', qr/^-ERR/, 'NUL in a password');
$s->cmd_ok('USER alice');
like($s->cmd("PASS secret\0", 15) // '', qr/^-ERR/,
    'NUL after a right password: no login');
$s->cmd_err('', qr/^-ERR/, 'empty line');
$s->cmd_err('   ', qr/^-ERR/, 'blank line');
alive($s, 'after NUL and CR');

# bare LF line ends are taken (RFC 1939 says CRLF; clients differ)

$s = conn();
$s->print("CAPA\n");
my ($st) = $s->reply();
like($st // '', qr/^\+OK/, 'CAPA with LF');
my $raw = $s->read_multi_raw();
like($raw // '', qr/\r\n\.\r\n\z/, 'reply still ends in CRLF');
$s->print("USER alice\nPASS secret\n");
like($s->reply() // '', qr/^\+OK/, 'USER with LF');
like($s->reply(15) // '', qr/^\+OK/, 'PASS with LF: logged in');
$s->print("RETR 1\n");
like($s->reply() // '', qr/^\+OK/, 'RETR with LF');
is($s->read_multi(), "Subject: one\r\n\r\n1\r\n", 'RETR body with CRLF');
$s->print("QUIT\n");
like($s->reply() // '', qr/^\+OK/, 'QUIT with LF');

# invalid and empty base64, in every SASL step

$s = conn();
for my $case ([ 'AUTH PLAIN', '' ], [ 'AUTH PLAIN', 'QUJD=' ],
    [ 'AUTH PLAIN', 'QU=D' ], [ 'AUTH LOGIN', '@@@@' ],
    [ 'AUTH LOGIN', "QUJD\0" ], [ 'AUTH CRAM-MD5', 'YWJj ZA==' ])
{
    my ($cmd, $bad) = @$case;
    $s->cmd($cmd);
    (my $n = $bad) =~ s/([^\x21-\x7e])/sprintf('\x%02x', ord $1)/ge;
    $s->cmd_err($bad, qr/^-ERR \[AUTH\] invalid base64 in SASL response$/,
        "$cmd: bad base64 '$n'");
}
$s->cmd('AUTH LOGIN');
$s->cmd(b64('alice'));
$s->cmd_err('!', qr/^-ERR \[AUTH\] invalid base64 in SASL response$/,
    'AUTH LOGIN: bad base64 as the password');
$s->cmd_err('AUTH PLAIN !!!!', qr/^-ERR \[AUTH\] invalid base64 in SASL response$/,
    'bad base64 as initial response');
alive($s, 'after bad base64');

# huge, negative and wrapping numbers never address a message

$s = session();
for my $arg ('0', '-1', '+1', '3', '1x', '0x1', '1.0', '4294967297',
    '18446744073709551617', '99999999999999999999999999999999',
    '2147483648', '00000000001')
{
    my $r = $s->cmd("DELE $arg");
    if ($arg eq '00000000001') {
        # leading zeros: either message 1 or refused, never another
        ok(defined $r && ($r =~ /^-ERR/ || $r =~ /^\+OK/),
            "DELE $arg: refused or message 1");
        next;
    }
    like($r // '', qr/^-ERR/, "DELE $arg refused");
}
$s->cmd('RSET');
$s->cmd_err('RETR 4294967297', 'RETR 2^32+1');
$s->cmd_err('TOP 1 -1', 'TOP negative lines');
$s->cmd_err('TOP 4294967297 0', 'TOP 2^32+1');
my ($tst, $tbody) = $s->cmd_multi('TOP 1 4294967296');
ok(defined $tst && ($tst =~ /^-ERR/
    || ($tst =~ /^\+OK/ && $tbody eq "Subject: one\r\n\r\n1\r\n")),
    'TOP 1 2^32: refused or the whole message');
$s->cmd_err('LIST 1 2', 'LIST two arguments');
$s->cmd_err('UIDL 18446744073709551616', 'UIDL 2^64');
like($s->cmd('STAT') // '', qr/^\+OK 2 /, 'nothing was deleted');
$s->cmd('QUIT');
is(join(' ', $x->mailbox_stat('alice')), join(' ', 2, length(
    "Subject: one\r\n\r\n1\r\n") + length("Subject: two\r\n\r\n2\r\n")),
    'the maildrop is whole');

# every command in the wrong state

$s = conn();
for my $cmd ('STAT', 'LIST', 'LIST 1', 'RETR 1', 'DELE 1', 'NOOP', 'RSET',
    'TOP 1 1', 'UIDL', 'UIDL 1', 'LAST')
{
    $s->cmd_err($cmd, qr/^-ERR/, "$cmd before login");
}
$s->cmd_ok('USER alice');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'login');
for my $cmd ('USER alice', 'PASS secret', 'APOP alice ' . ('0' x 32),
    'AUTH PLAIN ' . b64("\0alice\0secret"), 'AUTH', 'STLS')
{
    (my $n = $cmd) =~ s/^(\S+ \S+).*/$1/;
    $s->cmd_err($cmd, qr/^-ERR/, "$n after login");
}
like($s->cmd('STAT') // '', qr/^\+OK 2 /, 'TRANSACTION goes on');
$s->cmd('QUIT');

# clients that walk away: in a SASL exchange, during a password check in
# the thread pool, during a failure delay, with a login pipelined

for my $i (1 .. 3) {
    my $c = conn();
    $c->cmd('AUTH LOGIN');
    $c->cmd(b64('alice')) if $i > 1;
    $c->close();

    $c = conn();
    $c->cmd('AUTH CRAM-MD5');
    $c->close();

    $c = conn();
    $c->cmd('AUTH PLAIN');
    $c->print('AGFsaWNlAHNl');         # half a response
    $c->close();

    $c = conn();
    $c->send('AUTH PLAIN ' . b64("\0alice\0wrong"));    # answered late
    $c->close();

    $c = conn();
    $c->cmd('USER bob');
    $c->send('PASS wrong');
    sleep(0.05);                                    # in the delay
    $c->close();
}

# a login the client does not wait for must not keep the maildrop
# locked: the next session logs in at once (not after the lock TTL)

my $c = conn();
$c->send('USER alice', 'PASS secret');
$c->close();

my $t0 = time();
my $r;
while (1) {
    my $extra = conn();
    $extra->cmd('USER alice');
    $r = $extra->cmd('PASS secret', 15) // '(no reply)';
    $extra->cmd('QUIT') if $r =~ /^\+OK/;
    last if $r =~ /^\+OK/ || time() - $t0 > 5;
    sleep(0.1);
}
like($r, qr/^\+OK/, 'abandoned login released the maildrop');
note(sprintf('free after %.2f s', time() - $t0));

# the same, with the client gone in the middle of a multi-line reply

$c = session();
$c->send('RETR 1', 'RETR 2', 'LIST', 'UIDL');
$c->close();

$t0 = time();
while (1) {
    my $extra = conn();
    $extra->cmd('USER alice');
    $r = $extra->cmd('PASS secret', 15) // '(no reply)';
    $extra->cmd('QUIT') if $r =~ /^\+OK/;
    last if $r =~ /^\+OK/ || time() - $t0 > 5;
    sleep(0.1);
}
like($r, qr/^\+OK/, 'dropped TRANSACTION session released the maildrop');

# after all that: nginx and a fresh session are fine

ok($x->nginx_running, 'nginx running');
$s = conn();
like($s->cmd('AUTH PLAIN ' . b64("\0alice\0secret"), 15) // '', qr/^\+OK/,
    'a fresh session logs in');
like($s->cmd('STAT') // '', qr/^\+OK 2 /, 'and sees the maildrop');
$s->cmd('QUIT');
ok(!grep({ /[\x00-\x08\x0b-\x1f\x7f]/ } $x->log_lines),
    'no control octets in the log');

###############################################################################

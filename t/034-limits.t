#!/usr/bin/perl

# Limits, each a directive: pop3_ext_max_conn_per_addr (the next
# connection gets [SYS/TEMP] and is closed; a closed session frees its
# slot at once; another address is not counted; slots are shared by the
# hosts of a cluster), pop3_ext_max_conn_per_user (the next session of a
# user is refused after its password is checked), pop3_ext_max_commands,
# pop3_ext_line_max (-ERR line too long, the session goes on) and
# pop3_ext_sasl_line_max.

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

my $fast = "pop3_ext_auth_fail_delay 10ms;\n"
    . "pop3_ext_auth_fail_delay_max 20ms;\n"
    . "pop3_ext_auth_block_addr 0;\n";

# 8110 (and a second nginx's 8210): 3 connections per address
# 8111 (and the second nginx's 8211): 1 session per user; 8112 2 per user
# 8113: 5 commands per session
# 8114: lines of 255 octets
# 8115: SASL lines of 512 octets

my $peruser = "$fast" . 'pop3_ext_max_conn_per_user 1;';

$x->run_pop3(
    server => "        $fast        pop3_ext_max_conn_per_addr 3;\n",
    mail => $x->server(8111, $peruser)
        . $x->server(8112, "$fast" . 'pop3_ext_max_conn_per_user 2;')
        . $x->server(8113, "$fast" . 'pop3_ext_max_commands 5;')
        . $x->server(8114, "$fast" . 'pop3_ext_line_max 255;')
        . $x->server(8115, "$fast" . 'pop3_ext_sasl_line_max 512;'),
);

# a second host: its own nginx process, the same Redis

my $t2 = $x->peer();
$x->run_pop3(
    nginx => $t2,
    port => 8210,
    server => "        $fast        pop3_ext_max_conn_per_addr 3;\n",
    mail => $x->server(8211, $peruser),
);

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->deliver('alice', "Subject: a\n\na\n");

$t->plan(67 + 2);    # and the second nginx's end checks

my $ADDR = port(8110);
my $ADDR2 = port(8210);

my $TOO_MANY_ADDR = qr/^-ERR \[SYS\/TEMP\] too many connections from your address$/;
my $TOO_MANY_USER = qr/^-ERR \[SYS\/TEMP\] too many sessions of this user$/;

sub conn {
    my ($port, %o) = @_;
    return $x->client(port => $port, %o);
}

# poll: a new connection greeted +OK within $timeout seconds

sub greeted_within {
    my ($port, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (1) {
        my $c = conn($port);
        return $c if ($c->greeting // '') =~ /^\+OK/;
        $c->close();
        return undef if time() > $deadline;
        sleep(0.05);
    }
}

sub login {
    my ($port, $user, $pass) = @_;
    my $c = conn($port);
    $c->cmd("USER $user");
    my $r = $c->cmd("PASS $pass", 15) // '(no reply)';
    return ($r, $c);
}

###############################################################################

# connections per address

my @c = map { conn($ADDR) } 1 .. 3;
is(scalar(grep { ($_->greeting // '') =~ /^\+OK/ } @c), 3,
    'three connections greeted');
my $extra = conn($ADDR);
like($extra->greeting // '', $TOO_MANY_ADDR, 'fourth connection refused');
ok($extra->closed(5), 'fourth connection closed');
ok($x->wait_for_log(qr/too many connections from this address[^\n]*client: 127\.0\.0\.1/),
    'refusal logged');

$extra = conn($ADDR2);
like($extra->greeting // '', $TOO_MANY_ADDR,
    'fourth connection on the second host refused too');
$extra->close();

$extra = conn($ADDR, local => '127.0.0.2');
like($extra->greeting // '', qr/^\+OK/, 'another address has its own slots');
$extra->close();

# the refused connections took no slot, a session in TRANSACTION holds one

$c[0]->cmd_ok('USER alice');
like($c[0]->cmd('PASS secret', 15) // '', qr/^\+OK/,
    'a limited connection logs in');

$c[1]->cmd('QUIT');
$c[1]->close();
my $t0 = time();
my $n1 = greeted_within($ADDR, 3);
ok($n1, 'QUIT frees a slot');
note(sprintf('slot free after %.0f ms', (time() - $t0) * 1000));

# a dropped connection (no QUIT) frees its slot too

$c[2]->close();
my $n = greeted_within($ADDR2, 3);
ok($n, 'a dropped connection frees a slot, seen by the second host');

$extra = conn($ADDR);
like($extra->greeting // '', $TOO_MANY_ADDR, 'full again: refused');
$extra->close();

# the logged-in session QUITs: its slot comes back

$c[0]->cmd('QUIT');
$c[0]->close();
$n->close();
my $m = greeted_within($ADDR, 3);
ok($m, 'the logged-in session frees its slot');
$_->close() for grep { defined } @c, $m, $n, $n1;

my $zkey = $x->model('P3X_CONN_ADDR_PREFIX') . '127.0.0.1'
    . $x->model('P3X_TAG_CLOSE');
my $deadline = time() + 3;
sleep(0.05) while $x->redis_cmd('ZCARD', $zkey) > 0 && time() < $deadline;
is($x->redis_cmd('ZCARD', $zkey), 0, 'no slot left once all are closed');

# a scanner that connects and drops at once, many times, leaves no slot
# behind: afterwards three sessions are greeted again

my $accepted = () = $x->error_log() =~ /connected to 127\.0\.0\.1:$ADDR\b/g;
for (1 .. 20) {
    my $extra = conn($ADDR, greeting => 0);
    $extra->close();
}
# the kernel accepts the connections before nginx does: wait until nginx
# has taken all 20, then until the count stays 0 for half a second
$deadline = time() + 10;
while (time() < $deadline) {
    my $n = () = $x->error_log() =~ /connected to 127\.0\.0\.1:$ADDR\b/g;
    last if $n >= $accepted + 20;
    sleep(0.05);
}
$deadline = time() + 10;
while (time() < $deadline) {
    if ($x->redis_cmd('ZCARD', $zkey) == 0) {
        sleep(0.5);
        last if $x->redis_cmd('ZCARD', $zkey) == 0;
    }
    sleep(0.05);
}
is($x->redis_cmd('ZCARD', $zkey), 0, 'dropped connections left no slot')
    or diag(explain($x->redis_cmd('ZRANGE', $zkey, 0, -1)));
@c = map { conn($ADDR) } 1 .. 3;
is(scalar(grep { ($_->greeting // '') =~ /^\+OK/ } @c), 3,
    'three sessions greeted after the scan');
$_->close() for @c;

# sessions per user (1): the second session of alice is refused after
# the password check, on either host; a wrong password takes no slot

my $U1 = port(8111);
my $U1b = port(8211);

my ($r, $a1) = login($U1, 'alice', 'secret');
like($r, qr/^\+OK/, 'alice session 1');
my ($r2, $a2) = login($U1, 'alice', 'secret');
like($r2, $TOO_MANY_USER, 'alice session 2 refused');
like($a2->cmd('CAPA') // '', qr/^\+OK/, 'refused session goes on');
$a2->read_multi();
($r2) = login($U1b, 'alice', 'secret');
like($r2, $TOO_MANY_USER, 'alice session 2 on the second host refused');
($r2) = login($U1, 'alice', 'wrong');
like($r2, qr/^-ERR \[AUTH\]/, 'wrong password: [AUTH], not the limit');
($r2) = login($U1, 'bob', 'bobpw');
like($r2, qr/^\+OK/, 'bob is not limited by alice');
ok($x->wait_for_log(qr/too many sessions of user "alice"/), 'logged');

$a1->cmd('QUIT');
$a1->close();
$deadline = time() + 3;
while (1) {
    ($r2, $a2) = login($U1b, 'alice', 'secret');
    last if $r2 =~ /^\+OK/ || time() > $deadline;
    sleep(0.05);
}
like($r2, qr/^\+OK/, 'after QUIT alice logs in again, on the second host');
$a2->cmd('QUIT');

# sessions per user (2): a session refused with [IN-USE] did not log in
# and gives its slot back, so a third session is [IN-USE] too, not over
# the limit; a session that then logs in as someone else leaves no slot of
# the first user behind

my $U2 = port(8112);
my $ukey = $x->model('P3X_CONN_USER_PREFIX') . 'alice'
    . $x->model('P3X_TAG_CLOSE');

sub zcard_within {
    my ($key, $want, $timeout) = @_;
    my $deadline = time() + $timeout;
    my $n;
    while (1) {
        $n = $x->redis_cmd('ZCARD', $key);
        return $n if $n == $want || time() > $deadline;
        sleep(0.05);
    }
}

($r, $a1) = login($U2, 'alice', 'secret');
like($r, qr/^\+OK/, 'limit 2: alice session 1');
($r2, $a2) = login($U2, 'alice', 'secret');
like($r2, qr/^-ERR \[IN-USE\]/, 'limit 2: alice session 2 [IN-USE]');
is(zcard_within($ukey, 1, 3), 1, 'the [IN-USE] session holds no slot')
    or diag(explain($x->redis_cmd('ZRANGE', $ukey, 0, -1)));
my ($r3, $a3) = login($U2, 'alice', 'secret');
like($r3, qr/^-ERR \[IN-USE\]/, 'limit 2: alice session 3 [IN-USE] too');
$a2->cmd_ok('USER bob', 'session 2 turns to bob');
like($a2->cmd('PASS bobpw', 15) // '', qr/^\+OK/, 'session 2 logged in as bob');
$a2->cmd('QUIT');
$a2->close();
$a3->close();
$a1->cmd('QUIT');
$a1->close();
is(zcard_within($ukey, 0, 3), 0,
    'no slot of alice left once her sessions are closed')
    or diag(explain($x->redis_cmd('ZRANGE', $ukey, 0, -1)));

# commands per session

my $C = port(8113);
my $s = conn($C);
for my $i (1 .. 5) {
    like($s->cmd('CAPA') // '', qr/^\+OK/, "command $i answered");
    $s->read_multi();
}
like($s->cmd('CAPA') // '', qr/^-ERR \[SYS\/PERM\] too many commands$/,
    'command 6: too many commands');
ok($s->closed(5), 'session closed after too many commands');
ok($x->wait_for_log(qr/client sent too many commands/), 'logged');

# line length: 255 octets with CRLF pass, 256 do not; the session goes on

my $L = port(8114);
$s = conn($L);
my $line = 'USER ' . ('u' x 248);
is(length("$line\r\n"), 255, 'a line of 255 octets');
like($s->cmd($line) // '', qr/^\+OK/, '255 octets: a command');
$s->cmd_err('USER ' . ('u' x 249), qr/^-ERR line too long$/, '256 octets');
$s->cmd_err('NOOP ' . ('x' x 295), qr/^-ERR line too long$/, '300 octets');
$s->cmd_err('NOOP ' . ('x' x 9000), qr/^-ERR line too long$/,
    '9000 octets, more than the buffer');
$s->cmd_ok('USER alice', 'after long lines: USER');
like($s->cmd('PASS secret', 15) // '', qr/^\+OK/, 'after long lines: login');
$s->cmd_err('TOP 1 ' . ('9' x 300), qr/^-ERR line too long$/,
    'long line in TRANSACTION');
like($s->cmd('STAT') // '', qr/^\+OK 1 /, 'TRANSACTION goes on');
$s->cmd('QUIT');

# a SASL response has its own limit (2048 here), not the line limit

$s = conn($L);
my $pw = 'p' x 700;
$r = $s->cmd('AUTH PLAIN');
is($r, '+ ', 'AUTH PLAIN challenge');
$r = $s->cmd(encode_base64("\0alice\0$pw", ''), 15);
like($r // '', qr/^-ERR \[AUTH\] invalid user name or password$/,
    'SASL line of 940 octets with line_max 255: checked');
$r = $s->cmd('AUTH PLAIN ' . encode_base64("\0alice\0secret", ''));
like($r // '', qr/^\+OK/, 'initial response within 255 octets: login');
$s->cmd('QUIT');

# SASL line limit 512

my $S = port(8115);
$s = conn($S);
is($s->cmd('AUTH PLAIN'), '+ ', 'sasl_line_max: challenge');
$s->cmd_err(encode_base64("\0alice\0" . ('p' x 400), ''),
    qr/^-ERR \[AUTH\] SASL response too long$/, 'SASL response of 544');
like($s->cmd('CAPA') // '', qr/^\+OK/, 'the exchange is over: CAPA');
$s->read_multi();
$s->cmd_err('AUTH PLAIN ' . encode_base64("\0alice\0" . ('p' x 400), ''),
    qr/^-ERR \[AUTH\] SASL response too long$/, 'initial response of 544');
$s->cmd('AUTH LOGIN');
$s->cmd_err('A' x 600, qr/^-ERR \[AUTH\] SASL response too long$/,
    'LOGIN user name of 600');
$s->cmd('AUTH LOGIN');
$s->cmd_err('A' x 5000, qr/^-ERR \[AUTH\] SASL response too long$/,
    'LOGIN user name of 5000, more than the buffer');
like($s->cmd('CAPA') // '', qr/^\+OK/, 'the exchange is over again: CAPA');
$s->read_multi();
$s->cmd('AUTH PLAIN');
like($s->cmd(encode_base64("\0alice\0" . ('p' x 370), ''), 15) // '',
    qr/^-ERR \[AUTH\] invalid user name or password$/,
    'SASL response of 504 checked');
like($s->cmd('AUTH PLAIN ' . encode_base64("\0alice\0secret", ''), 15) // '',
    qr/^\+OK/, 'sasl_line_max: login');
$s->cmd('QUIT');

###############################################################################

#!/usr/bin/perl

# USER / PASS: success, wrong password and unknown user (alike, [AUTH]),
# disabled and deleted users, PASS without USER, retry after a failure,
# commands of the wrong state, names the data model refuses, and the log
# line a fail2ban filter reads.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();

$x->add_user('alice', 'secret');
$x->add_user('bob', 'p@ss:w0rd!%x');
$x->add_user("j\xc3\xb6rg", 'utf8pw');
$x->add_user('carol', 'carolpw');
$x->add_user('dave', 'davepw');
$x->deliver('alice', "Subject: one\n\nbody\n");
$x->deliver('alice', "Subject: two\n\nbody\n");

$t->plan(36);

my $port = port(8110);

# a failed PASS may be answered late (a brute-force delay)

my $FAIL_WAIT = 15;

###############################################################################

my $s = $x->client(port => $port);
$s->cmd_ok('USER alice');
my $r = $s->cmd('PASS secret', $FAIL_WAIT);
like($r // '', qr/^\+OK/, 'login');
$s->cmd_ok('STAT', 'STAT after login');
$s->cmd_err('USER alice', 'USER after login');
$s->cmd_err('PASS secret', 'PASS after login');
$s->cmd_ok('QUIT');

# wrong password and unknown user get the same [AUTH] reply

$s = $x->client(port => $port);
$s->cmd_ok('USER alice', 'USER of a known user');
my $wrong = $s->cmd('PASS wrong', $FAIL_WAIT);
like($wrong // '', qr/^-ERR \[AUTH\]/, 'wrong password: -ERR [AUTH]');

$s = $x->client(port => $port);
$r = $s->cmd('USER mallory');
like($r // '', qr/^\+OK/, 'USER of an unknown user +OK');
my $unknown = $s->cmd('PASS whatever', $FAIL_WAIT);
like($unknown // '', qr/^-ERR \[AUTH\]/, 'unknown user: -ERR [AUTH]');
is($unknown, $wrong, 'unknown user and wrong password look the same');

# the log says who failed from where, for fail2ban

ok($x->wait_for_log(
    qr/pop3_ext: [^\n]*auth[^\n]*failed[^\n]*user "mallory"[^\n]*client: 127\.0\.0\.1/i),
    'failed login logged with user and client');
ok($x->wait_for_log(
    qr/pop3_ext: [^\n]*auth[^\n]*failed[^\n]*user "alice"[^\n]*client: 127\.0\.0\.1/i),
    'wrong password logged with user and client');

# after a failure, the same connection may try again

$s->cmd_ok('USER alice', 'USER after a failed PASS');
$r = $s->cmd('PASS secret', $FAIL_WAIT);
like($r // '', qr/^\+OK/, 'login after a failed PASS');
$s->cmd_ok('QUIT');

# PASS without USER, PASS with no argument, USER with no argument

$s = $x->client(port => $port);
$r = $s->cmd('PASS secret', $FAIL_WAIT);
like($r // '', qr/^-ERR/, 'PASS without USER');
$s->cmd_ok('USER alice');
$r = $s->cmd('PASS', $FAIL_WAIT);
like($r // '', qr/^-ERR/, 'PASS without argument');
$r = $s->cmd('USER', $FAIL_WAIT);
like($r // '', qr/^-ERR/, 'USER without argument');

# a later USER replaces the earlier one

$s->cmd_ok('USER mallory');
$s->cmd_ok('USER alice');
$r = $s->cmd('PASS secret', $FAIL_WAIT);
like($r // '', qr/^\+OK/, 'the last USER counts');
$s->cmd_ok('QUIT');

# passwords with punctuation, user names in UTF-8

like(login('bob', 'p@ss:w0rd!%x') // '', qr/^\+OK/,
    'password with punctuation');
like(login("j\xc3\xb6rg", 'utf8pw') // '', qr/^\+OK/, 'UTF-8 user name');

# a disabled user cannot log in; a deleted user is unknown

$x->redis_cmd('HSET', $x->user_key('carol'),
    $x->model('P3X_FIELD_DISABLED'), '1');
like(login('carol', 'carolpw') // '', qr/^-ERR \[AUTH\]/,
    'disabled user: -ERR [AUTH]');

my ($rc) = $x->pop3ext('user', 'del', 'dave');
is($rc, 0, 'pop3ext user del');
like(login('dave', 'davepw') // '', qr/^-ERR \[AUTH\]/,
    'deleted user: -ERR [AUTH]');

# a password change takes effect at the next login

$x->add_user('alice', 'newsecret');
like(login('alice', 'secret') // '', qr/^-ERR \[AUTH\]/,
    'old password refused after a change');
like(login('alice', 'newsecret') // '', qr/^\+OK/,
    'new password accepted');

# names the data model refuses never log in

for my $name ('al{ice}', 'x' x 300) {
    my $c = $x->client(port => $port);
    my $u = $c->cmd("USER $name");
    my $p = defined $u && $u =~ /^\+OK/ ? $c->cmd('PASS x', $FAIL_WAIT) : $u;
    like($p // '', qr/^-ERR/, 'invalid user name refused: '
        . substr($name, 0, 10));
}

# control octets in a user name never reach the log (log forging)

$s = $x->client(port => $port);
$r = $s->cmd("USER ev\x1b[2Jil\x08\rx");
$r = $s->cmd('PASS x', $FAIL_WAIT) if defined $r && $r =~ /^\+OK/;
like($r // '', qr/^-ERR/, 'user name with control octets refused');
ok(!grep({ /[\x00-\x08\x0a-\x1f\x7f]/ } $x->log_lines),
    'no control octets in the log');

# a password with spaces: the rest of the line is the password (RFC 1939
# permits it, and users have such passwords)

$x->add_user('erin', 'two words');
like(login('erin', 'two words') // '', qr/^\+OK/, 'password with a space');

###############################################################################

# log in and out on a fresh connection; the PASS reply

sub login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    my $u = $c->cmd("USER $user");
    return $u unless defined $u && $u =~ /^\+OK/;
    my $p = $c->cmd("PASS $pass", $FAIL_WAIT);
    $c->cmd('QUIT');
    $c->close();
    return $p;
}

###############################################################################

#!/usr/bin/perl

# Retention and login pacing (issue 10, RFC 2449 6.5 and 6.7):
#
# - CAPA's EXPIRE before login (the least any user may have, "USER" when
#   a user's may differ: pop3_ext_expire and its user_min=) and after it
#   (the user's own "expire", else the server's), LOGIN-DELAY in whole
#   seconds, rounded up; configurations refused;
# - user add/set --expire and user show;
# - EXPIRE 0: what a session retrieved with RETR (not TOP, and RSET does
#   not undo it) is removed at its QUIT only, the usage kept exact;
# - pop3ext expunge: by the faked delivery times (the time hash, else the
#   clock in a new UID; undated mail stays), a user's own retention over
#   --older-than, a shared mailbox keeping the longest, POP3EXT_EXPIRE,
#   --dry-run, a maildrop a session holds refused (75) and done after its
#   QUIT, bodies, times and usage cleaned;
# - LOGIN-DELAY across hosts: a second login within the delay refused on
#   a second nginx with [LOGIN-DELAY], without the lock, accepted after.

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

# 8110: 30 days, users may keep longer; 8111: the defaults (never, no
# delay); 8112: 30 days, users may keep less, down to 0; 8113: never,
# users down to 7; 8114 (and a second nginx's 8214): LOGIN-DELAY 3s;
# 8115: a delay that is not whole seconds

$x->run_pop3(
    server => "        pop3_ext_expire 30;\n",
    mail => $x->server(8111, '')
        . $x->server(8112, 'pop3_ext_expire 30 user_min=0;')
        . $x->server(8113, 'pop3_ext_expire never user_min=7;')
        . $x->server(8114, 'pop3_ext_login_delay 3s;')
        . $x->server(8115, 'pop3_ext_login_delay 1500ms;'),
);

my $t2 = $x->peer();
$x->run_pop3(nginx => $t2, port => 8214,
    server => "        pop3_ext_login_delay 3s;\n");

my $bad = $x->peer();

$t->plan(93 + 2 * 2);

my $DAY = 86400 * 1000;

sub capa {
    my ($s) = @_;
    my (undef, $body) = $s->cmd_multi('CAPA');
    my %c;
    for (split /\r\n/, $body // '') {
        $c{(split / /)[0]} = $_;
    }
    return \%c;
}

sub before_login {
    my ($port) = @_;
    my $s = $x->client(port => port($port));
    my $c = capa($s);
    $s->close();
    return $c;
}

sub after_login {
    my ($port, $user) = @_;
    my $s = $x->session(port($port), $user, 'pw') or return {};
    my $c = capa($s);
    $s->cmd('QUIT');
    return $c;
}

sub index_of {
    my ($user) = @_;
    my $e = $x->redis_cmd('LRANGE',
        $x->mbox_key($x->mailbox_of($user), 'INDEX'), 0, -1);
    return ref $e eq 'ARRAY' ? @$e : ();
}

sub uids {
    return map { (split / /)[0] } index_of(@_);
}

sub index_usage {
    my @e = index_of(@_);
    my $octets = 0;
    $octets += (/ (\d+)$/)[0] for @e;
    return scalar(@e) . " $octets";
}

sub kept_usage {
    my ($user) = @_;
    my $r = $x->redis_cmd('HMGET',
        $x->mbox_key($x->mailbox_of($user), 'META'), 'messages', 'octets');
    return join(' ', map { $_ // 'undef' } @$r);
}

# n messages, numbered in their subjects

sub fill {
    my ($user, $n) = @_;
    $x->deliver($user, "Subject: $_\n\nbody $_\n") for 1 .. $n;
}

# the delivery time of the n-th message (1-based): $days ago

sub age {
    my ($user, $n, $days) = @_;
    my $uid = (uids($user))[$n - 1];
    $x->redis_cmd('HSET', $x->mbox_key($x->mailbox_of($user), 'TIME'), $uid,
        int(time() * 1000 - $days * $DAY));
}

# a message stored with a UID of our choosing and no delivery time

sub store_undated {
    my ($user, $uid) = @_;
    my $mbox = $x->mailbox_of($user);
    my $r = $x->redis_cmd('EVAL', $x->model('P3X_SCRIPT_DELIVER'), 4,
        $x->mbox_key($mbox, 'INDEX'), $x->mbox_key($mbox, 'MSG') . $uid,
        $x->mbox_key($mbox, 'META'), $x->mbox_key($mbox, 'TIME'),
        "Subject: $uid\r\n\r\nold\r\n", $uid, 0, 0, 0, 0);
    die "DELIVER: $r\n" unless ref $r eq 'ARRAY';
    $x->redis_cmd('HDEL', $x->mbox_key($mbox, 'TIME'), $uid);
}

sub expunge {
    return $x->pop3ext('expunge', @_);
}

###############################################################################

# user add/set --expire, user show

$x->add_user('u30', 'pw');
$x->add_user('kim', 'pw', '--expire', 'never');
$x->add_user('u60', 'pw', '--expire', '60');
$x->add_user('sam', 'pw', '--expire', '5');
$x->add_user('zed', 'pw', '--expire', '0');
$x->add_user($_, 'pw') for qw/ ola lox env1 odd pacer /;
$x->add_user('sh1', 'pw', '--mailbox', 'shared', '--expire', '5');
$x->add_user('sh2', 'pw', '--mailbox', 'shared', '--expire', '40');

sub field {
    return $x->redis_cmd('HGET', $x->user_key($_[0]),
        $x->model('P3X_FIELD_EXPIRE')) // 'undef';
}

is(field('kim') . ',' . field('u60') . ',' . field('u30'), 'never,60,undef',
    'user add --expire: the field, or none');
my ($rc, $out, $err) = $x->pop3ext('user', 'show', 'u60');
like($out, qr/^expire: 60$/m, 'user show: the retention');
($rc, $out) = $x->pop3ext('user', 'show', 'u30');
unlike($out, qr/^expire:/m, 'user show: none of its own, no line');

($rc) = $x->pop3ext('user', 'set', 'u60', '--expire', 'NEVER');
is($rc . ' ' . field('u60'), '0 never', 'user set --expire NEVER');
($rc) = $x->pop3ext('user', 'set', '--expire=default', 'u60');
is($rc . ' ' . field('u60'), '0 undef', 'user set --expire=default');
$x->pop3ext('user', 'set', '--expire', '60', '--', 'u60');
is(field('u60'), '60', 'user set --expire 60 -- USER');

($rc) = $x->pop3ext('user', 'set', 'u60', '--expire', '-1');
is($rc, 64, 'user set --expire -1: 64');
($rc) = $x->pop3ext('user', 'set', 'u60', '--expire', '36501');
is($rc, 64, 'user set --expire past the maximum: 64');
($rc) = $x->pop3ext('user', 'set', 'u60');
is($rc, 64, 'user set without --expire: 64');
($rc) = $x->pop3ext('user', 'set', 'nobody', '--expire', '3');
is($rc, 67, 'user set of an unknown user: 67');
($rc) = $x->pop3ext('user', 'add', '--expire', 'soon', 'new1',
    { stdin => "pw\n" });
is($rc, 64, 'user add --expire soon: 64');

# a user record with a value the module does not read: the server's

$x->redis_cmd('HSET', $x->user_key('odd'), 'expire', 'soon');

###############################################################################

# CAPA, before and after login

my $c = before_login(8110);
is($c->{EXPIRE}, 'EXPIRE 30 USER', 'before login: the server\'s, USER');
ok(!$c->{'LOGIN-DELAY'}, 'no LOGIN-DELAY without one');
is(after_login(8110, 'u30')->{EXPIRE}, 'EXPIRE 30',
    'after login: the server\'s for a user without one');
is(after_login(8110, 'kim')->{EXPIRE}, 'EXPIRE NEVER', 'a user\'s never');
is(after_login(8110, 'u60')->{EXPIRE}, 'EXPIRE 60', 'a user\'s 60 days');
is(after_login(8110, 'odd')->{EXPIRE}, 'EXPIRE 30',
    'an invalid field: the server\'s');
ok($x->wait_for_log(qr/user "odd" has an invalid "expire" field "soon"/),
    'and it is logged');

is(before_login(8111)->{EXPIRE}, 'EXPIRE NEVER',
    'the default: EXPIRE NEVER, no USER');
is(after_login(8111, 'u30')->{EXPIRE}, 'EXPIRE NEVER', 'after login too');
is(after_login(8111, 'sam')->{EXPIRE}, 'EXPIRE 5',
    'a user\'s own below the announcement: the user\'s');
ok($x->wait_for_log(qr/user "sam" keeps mail 5 days, less than the EXPIRE /),
    'and the configuration that lied is logged');

is(before_login(8112)->{EXPIRE}, 'EXPIRE 0 USER', 'user_min=0: EXPIRE 0 USER');
is(after_login(8112, 'zed')->{EXPIRE}, 'EXPIRE 0', 'a user\'s 0');
is(after_login(8112, 'u30')->{EXPIRE}, 'EXPIRE 30', 'others the server\'s');
is(before_login(8113)->{EXPIRE}, 'EXPIRE 7 USER', 'never, user_min=7');

$c = before_login(8114);
is($c->{'LOGIN-DELAY'}, 'LOGIN-DELAY 3', 'LOGIN-DELAY before login');
is(after_login(8114, 'u30')->{'LOGIN-DELAY'}, 'LOGIN-DELAY 3',
    'LOGIN-DELAY after login');
is(before_login(8115)->{'LOGIN-DELAY'}, 'LOGIN-DELAY 2',
    'LOGIN-DELAY 1500ms: 2 seconds');

# configurations refused

# nginx -t of a server block: what nginx said if it refused, or ''.  The
# nginx is an argument, not captured: a named sub would keep it alive past
# the end of the test, and nginx-tests' lib runs its end checks when the
# object goes

sub check_conf {
    my ($ng, $server) = @_;
    $ng->write_file_expand('nginx.conf',
        $x->conf(port => 8120, server => "        $server\n"));
    my ($rc, $out) = $x->nginx_t($ng);
    return $rc ? $out : '';
}

like(check_conf($bad, 'pop3_ext_expire 30 user_min=40;'),
    qr/user_min "40" is longer than the retention "30"/,
    'user_min= longer than the retention: refused');
like(check_conf($bad, 'pop3_ext_expire soon;'),
    qr/invalid retention "soon"/, 'pop3_ext_expire soon: refused');
like(check_conf($bad, 'pop3_ext_expire 3 min=1;'),
    qr/invalid parameter "min=1"/, 'an unknown parameter: refused');
is(check_conf($bad, 'pop3_ext_expire 36500 user_min=0;'), '',
    'the longest retention, user_min=0: accepted');

###############################################################################

# EXPIRE 0: what was retrieved goes at QUIT, and only then

fill('zed', 4);
my @zed = uids('zed');

my $s = $x->session(port(8110), 'zed', 'pw');
$s->cmd_multi('RETR 1');
$s->cmd_multi('TOP 2 0');
$s->cmd_multi('RETR 3');
like($s->cmd('STAT') // '', qr/^\+OK 4 /, 'EXPIRE 0: nothing gone before QUIT');
$s->close();

is(scalar(uids('zed')), 4, 'EXPIRE 0: a session without QUIT removes nothing');

$s = $x->session(port(8110), 'zed', 'pw');
my ($st) = $s->cmd_multi('RETR 1');
like($st // '', qr/^\+OK/, 'RETR 1');
$s->cmd_multi('TOP 2 0');
$s->cmd_ok('DELE 4');
is($s->cmd('QUIT'), '+OK bye, 2 messages left',
    'EXPIRE 0: QUIT removes the retrieved one and the deleted one');
is(join(',', uids('zed')), "$zed[1],$zed[2]",
    'the retrieved and the deleted are gone, TOP kept its message');

$s = $x->session(port(8110), 'zed', 'pw');
$s->cmd_multi('RETR 2');
$s->cmd_ok('RSET');
is($s->cmd('QUIT'), '+OK bye, 1 messages left',
    'EXPIRE 0: RSET does not undo a download');
is(join(',', uids('zed')), $zed[1], 'only the message never retrieved left');
is(kept_usage('zed'), index_usage('zed'), 'EXPIRE 0: the usage exact');
is($x->redis_cmd('HLEN', $x->mbox_key('zed', 'TIME')), 1,
    'EXPIRE 0: the delivery times of the removed are gone');
is($x->redis_cmd('EXISTS', $x->mbox_key('zed', 'MSG') . $zed[0]), 0,
    'EXPIRE 0: the bodies too');

# any other retention keeps what was retrieved

fill('u30', 2);
$s = $x->session(port(8110), 'u30', 'pw');
$s->cmd_multi('RETR 1');
$s->cmd_multi('RETR 2');
is($s->cmd('QUIT'), '+OK bye, 2 messages left',
    'EXPIRE 30: retrieved messages stay');

###############################################################################

# pop3ext expunge

fill('ola', 4);
age('ola', 1, 100);
age('ola', 2, 31);
age('ola', 3, 29);
my @ola = uids('ola');

($rc, $out) = expunge('--dry-run', '--older-than', '30', 'ola');
is($rc, 0, 'expunge --dry-run');
like($out, qr/^ola: 2 messages \(\d+ octets\) older than 30 days, to remove$/m,
    'expunge --dry-run: what it would remove');
is(scalar(uids('ola')), 4, 'expunge --dry-run removes nothing');

($rc, $out, $err) = expunge('--older-than', '30', 'ola');
is($rc, 0, 'expunge --older-than 30') or diag($err);
like($out, qr/^ola: 2 messages \(\d+ octets\) older than 30 days removed$/m,
    'expunge says what it removed');
is(join(',', uids('ola')), "$ola[2],$ola[3]", 'the two older than 30 days');
is(kept_usage('ola'), index_usage('ola'), 'expunge: the usage exact');
is($x->redis_cmd('HLEN', $x->mbox_key('ola', 'TIME')), 2,
    'expunge: their delivery times gone');
is($x->redis_cmd('EXISTS', map { $x->mbox_key('ola', 'MSG') . $_ } @ola[0, 1]),
    0, 'expunge: their bodies gone');

($rc, $out) = expunge('--older-than', '30', 'ola');
is($rc . $out, '0', 'expunge again: nothing to do, nothing said');

# no time: the clock in a new UID, else the message stays

my $old_uid = sprintf('%012x', int(time() * 1000 - 200 * $DAY)) . 'abcdef012345';
store_undated('ola', $old_uid);
store_undated('ola', 'legacy.1');
($rc) = expunge('--older-than', '30', 'ola');
is(join(',', uids('ola')), "$ola[2],$ola[3],legacy.1",
    'the UID\'s clock dates a message without a time; undated mail stays');
is(kept_usage('ola'), index_usage('ola'), 'the usage exact');

# a user's own retention wins over --older-than; never is never

fill('kim', 1);
age('kim', 1, 1000);
fill('sam', 2);
age('sam', 1, 10);
age('sam', 2, 3);
my @sam = uids('sam');
($rc, $out, $err) = expunge('--older-than', '30', 'kim', 'sam');
is($rc, 0, 'expunge of two users') or diag($err);
is(scalar(uids('kim')), 1, 'expire never: kept after 1000 days');
is(join(',', uids('sam')), $sam[1], 'expire 5: 10 days old removed, not 3');

# a shared mailbox keeps the longest retention of its users (5 and 40)

fill('sh1', 3);
age('sh1', 1, 50);
age('sh1', 2, 30);
my @shared = uids('sh1');

($rc, $out, $err) = expunge('--older-than', '30', '--all');
is($rc, 0, 'expunge --all') or diag($err);
is(join(',', uids('sh1')), join(',', @shared[1, 2]),
    'expunge --all: the shared mailbox keeps the longest, 40 days');

($rc, $out, $err) = expunge('--older-than', '30', 'sh1');
is(join(',', uids('sh1')), $shared[2],
    'a shared mailbox named by one user: that user\'s 5 days');

# POP3EXT_EXPIRE: the default without --older-than

fill('env1', 1);
age('env1', 1, 10);
($rc) = expunge('env1');
is(scalar(uids('env1')), 1, 'no default: never');
($rc) = expunge('env1', { env => { POP3EXT_EXPIRE => '7' } });
is($rc . ' ' . scalar(uids('env1')), '0 0', 'POP3EXT_EXPIRE=7');

# a maildrop a session holds is not touched; after its QUIT it is

fill('lox', 2);
age('lox', 1, 60);
age('lox', 2, 60);
$s = $x->session(port(8111), 'lox', 'pw');
($rc, $out, $err) = expunge('--older-than', '30', 'lox');
is($rc, 75, 'expunge of a maildrop in use: 75');
like($err, qr/mailbox "lox" is in use by a session, not expunged/,
    'expunge says it is in use');
is(scalar(uids('lox')), 2, 'nothing removed under the session');
like($s->cmd('STAT') // '', qr/^\+OK 2 /, 'the session sees its messages');
$s->cmd_ok('QUIT');
($rc) = expunge('--older-than', '30', 'lox');
is($rc . ' ' . scalar(uids('lox')), '0 0', 'after QUIT: expunged');

# the script itself refuses a locked maildrop (the check before it passed)

fill('lox', 1);
age('lox', 1, 60);
my $lock = $x->mbox_key('lox', 'LOCK');
$x->redis_cmd('SET', $lock, 'token');
my $r = $x->redis_cmd('EVAL', $x->model('P3X_SCRIPT_EXPUNGE'), 5, $lock,
    $x->mbox_key('lox', 'INDEX'), $x->mbox_key('lox', 'META'),
    $x->mbox_key('lox', 'TIME'), $x->mbox_key('lox', 'MSG') . (uids('lox'))[0],
    (index_of('lox'))[0]);
like("$r", qr/^IN-USE/, 'EXPUNGE: IN-USE while a lock is held');
$x->redis_cmd('DEL', $lock);

# usage errors

($rc) = expunge();
is($rc, 64, 'expunge without USER or --all: 64');
($rc) = expunge('--all', 'ola');
is($rc, 64, 'expunge --all with a USER: 64');
($rc) = expunge('--older-than', '0', '--all');
is($rc, 64, 'expunge --older-than 0: 64');
($rc) = expunge('--older-than', 'soon', '--all');
is($rc, 64, 'expunge --older-than soon: 64');
($rc) = expunge('--frob', '--all');
is($rc, 64, 'expunge --frob: 64');
($rc) = expunge('--all', { env => { POP3EXT_EXPIRE => 'x' } });
is($rc, 64, 'POP3EXT_EXPIRE=x: 64');
($rc) = expunge('nobody');
is($rc, 67, 'expunge of an unknown user: 67');

###############################################################################

# LOGIN-DELAY, across hosts: the second login within it refused

my $last = $x->mbox_key('pacer', 'LAST');
$lock = $x->mbox_key('pacer', 'LOCK');

$s = $x->session(port(8114), 'pacer', 'pw');
ok($s, 'a login on the first host');
$s->cmd_ok('QUIT');
ok($x->redis_cmd('PTTL', $last) > 0, 'it is remembered in Redis');

$s = $x->client(port => port(8214));
$s->cmd_ok('USER pacer');
my $reply = $s->cmd('PASS pw');
like($reply // '',
    qr/^-ERR \[LOGIN-DELAY\] logged in too recently, try again in [123] seconds$/,
    'a second login on the second host: -ERR [LOGIN-DELAY]');
is($x->redis_cmd('EXISTS', $lock), 0, 'the maildrop was not locked');
like(capa($s)->{'LOGIN-DELAY'} // '', qr/^LOGIN-DELAY 3$/,
    'the session is still before login');
ok($x->wait_for_log(qr/login of user "pacer" to "pacer" within the login /,
    5, $t2), 'the refusal is logged');

# another server without LOGIN-DELAY does not look at it

my $s2 = $x->session(port(8111), 'pacer', 'pw');
ok($s2, 'a server without LOGIN-DELAY lets it in');
$s2->cmd_ok('QUIT') if $s2;

# once the delay has passed, the same connection logs in

my $deadline = time() + 10;
sleep(0.2) while $x->redis_cmd('EXISTS', $last) && time() < $deadline;
$s->cmd_ok('USER pacer');
like($s->cmd('PASS pw') // '', qr/^\+OK maildrop has/,
    'after the delay: logged in');
$s->cmd_ok('QUIT');

#!/usr/bin/perl

# pop3ext, the command-line tool: user add / user del / deliver / stat,
# sysexits codes (64 usage, 65 bad input, 67 unknown user, 75 temporary
# failure), delivery to several users is all or nothing for unknown users,
# passwords are stored hashed, Redis down is a temporary failure.

use strict;
use warnings;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;

my $t = Test::Nginx->new()->has_redis->has_cli;
$t->run_redis();

$t->plan(39);

###############################################################################

my ($rc, $out, $err);

# usage

($rc, $out) = $t->pop3ext('--help', { redis => undef });
is($rc, 0, '--help exits 0');
like($out, qr/usage: pop3ext/, '--help prints usage');

($rc, undef, $err) = $t->pop3ext({ redis => undef });
is($rc, 64, 'no command: 64');
($rc) = $t->pop3ext('frobnicate');
is($rc, 64, 'unknown command: 64');
($rc) = $t->pop3ext('user', 'add', { stdin => "pw\n" });
is($rc, 64, 'user add without USER: 64');
($rc) = $t->pop3ext('user', 'add', 'a', 'b', { stdin => "pw\n" });
is($rc, 64, 'user add with two USERs: 64');
($rc) = $t->pop3ext('deliver', { stdin => "x\n" });
is($rc, 64, 'deliver without USER: 64');
($rc) = $t->pop3ext('stat', { redis => 'no-port-here' });
is($rc, 64, 'bad redis address: 64');
($rc) = $t->pop3ext('user', 'add', 'bad{name}', { stdin => "pw\n" });
ok($rc == 64 || $rc == 65, 'user name with braces refused') or diag($rc);
($rc) = $t->pop3ext('user', 'add', 'x' x 256, { stdin => "pw\n" });
ok($rc == 64 || $rc == 65, 'user name of 256 octets refused') or diag($rc);

# user add: stored hashed

($rc, $out, $err) = $t->pop3ext('user', 'add', 'alice',
    { stdin => "s3cret\n" });
is($rc, 0, 'user add') or diag($err);
my $secret = $t->redis_cmd('HGET', $t->user_key('alice'),
    $t->model('P3X_FIELD_SECRET'));
ok(defined $secret && !ref $secret && $secret !~ /s3cret/,
    'password not stored in clear') or diag($secret);
like($secret // '', qr/\$6\$/, 'SHA512-CRYPT by default');

($rc) = $t->pop3ext('user', 'add', '--scheme', 'BLF-CRYPT', 'bob',
    { stdin => "pw\n" });
is($rc, 0, 'user add --scheme BLF-CRYPT');
like($t->redis_cmd('HGET', $t->user_key('bob'), 'secret') // '',
    qr/\$2[aby]\$/, 'bcrypt hash stored');
($rc) = $t->pop3ext('user', 'add', '--scheme', 'NOSUCH', 'carol',
    { stdin => "pw\n" });
ok($rc == 64 || $rc == 65, 'unknown scheme refused') or diag($rc);

# deliver and stat

($rc, $out, $err) = $t->pop3ext('deliver', 'alice',
    { stdin => "Subject: a\n\nhello\n" });
is($rc, 0, 'deliver') or diag($err);
($rc, $out) = $t->pop3ext('stat', 'alice');
is($rc, 0, 'stat');
is($out, "1 " . length("Subject: a\r\n\r\nhello\r\n") . "\n",
    'stat prints COUNT OCTETS of the CRLF message');

($rc) = $t->pop3ext('deliver', 'alice', 'bob', { stdin => "Subject: b\n\nb\n" });
is($rc, 0, 'deliver to two users');
is(($t->pop3ext('stat', 'alice'))[1], "2 "
    . (length("Subject: a\r\n\r\nhello\r\n") + length("Subject: b\r\n\r\nb\r\n"))
    . "\n", 'first recipient got it');
like(($t->pop3ext('stat', 'bob'))[1], qr/^1 /, 'second recipient got it');

($rc) = $t->pop3ext('deliver', 'bob', 'bob', { stdin => "Subject: c\n\nc\n" });
is($rc, 0, 'deliver to the same user twice');
like(($t->pop3ext('stat', 'bob'))[1], qr/^2 /, 'stored once');

# the index entries are "UID SIZE"

my $index = $t->redis_cmd('LRANGE',
    $t->mbox_key($t->mailbox_of('alice'), 'INDEX'), 0, -1);
is(scalar(grep { /^[\x21-\x7e]{1,70} \d+\z/ } @$index), 2,
    'index entries are UID SIZE');

# unknown users: 67, and nothing stored for anyone

($rc, undef, $err) = $t->pop3ext('deliver', 'nobody',
    { stdin => "Subject: x\n\nx\n" });
is($rc, 67, 'deliver to an unknown user: 67');
($rc) = $t->pop3ext('deliver', 'alice', 'nobody', 'bob',
    { stdin => "Subject: x\n\nx\n" });
is($rc, 67, 'an unknown user among several: 67');
like(($t->pop3ext('stat', 'alice'))[1], qr/^2 /, 'nothing stored for alice');
like(($t->pop3ext('stat', 'bob'))[1], qr/^2 /, 'nothing stored for bob');
($rc) = $t->pop3ext('stat', 'nobody');
is($rc, 67, 'stat of an unknown user: 67');

# bad input: 65

($rc) = $t->pop3ext('deliver', 'alice', { stdin => '' });
is($rc, 65, 'empty message: 65');
($rc) = $t->pop3ext('deliver', 'alice',
    { stdin => "Subject: big\n\n" . ('y' x 100) . "\n",
      env => { POP3EXT_MAX_SIZE => 50 } });
is($rc, 65, 'message over POP3EXT_MAX_SIZE: 65');
like(($t->pop3ext('stat', 'alice'))[1], qr/^2 /, 'nothing stored');

# user del removes the user and the mailbox

($rc) = $t->pop3ext('user', 'del', 'bob');
is($rc, 0, 'user del');
is($t->redis_cmd('EXISTS', $t->user_key('bob')), 0, 'user gone');
my $keys = $t->redis_cmd('KEYS', $t->model('P3X_MBOX_PREFIX') . 'bob}*');
is(scalar @$keys, 0, 'mailbox keys gone') or diag("@$keys");

# Redis down: 75, the code an MTA retries on

$t->stop_redis();
($rc) = $t->pop3ext('deliver', 'alice', { stdin => "Subject: x\n\nx\n" });
is($rc, 75, 'deliver with Redis down: 75');
($rc) = $t->pop3ext('stat', 'alice');
is($rc, 75, 'stat with Redis down: 75');
($rc) = $t->pop3ext('user', 'add', 'carol', { stdin => "pw\n" });
is($rc, 75, 'user add with Redis down: 75');

###############################################################################

#!/usr/bin/perl

# pop3ext, the command-line tool: user add / del / show / disable /
# enable, deliver, stat; sysexits codes (64 usage, 65 bad input, 67 unknown
# user, 75 temporary failure); delivery to several users is all or nothing
# for unknown users; passwords are stored hashed.
#
# Every scheme "user add --scheme" makes is checked against Dovecot's
# "doveadm pw -t" and by a real login through nginx (right password +OK,
# wrong one [AUTH]); hashes made by "doveadm pw" are imported with --hash
# and log in; users sharing a mailbox through --mailbox see the same mail;
# a disabled user cannot log in but still gets mail; "user show" never
# prints the secret.  Redis down is a temporary failure.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;
$x->run_redis();

# the logins need nginx and the module; the rest runs without them

my $have_nginx = $x->module_found;

# (the end checks read nginx's error log: an empty one when it never ran)

$t->write_file('error.log', '') unless $have_nginx;
my $doveadm = Test::Nginx::POP3Ext::find_prog('doveadm');

my @SCHEMES = qw/ SHA512-CRYPT SHA256-CRYPT BLF-CRYPT ARGON2ID PBKDF2
    SSHA512 SSHA256 CRAM-MD5 PLAIN /;

# the shapes of what the CLI makes, as Dovecot makes them

my $B64 = '[A-Za-z0-9+/]';
my %SHAPE = (
    'SHA512-CRYPT' => qr/^\{SHA512-CRYPT\}\$6\$[.\/0-9A-Za-z]{16}\$[.\/0-9A-Za-z]{86}\z/,
    'SHA256-CRYPT' => qr/^\{SHA256-CRYPT\}\$5\$[.\/0-9A-Za-z]{16}\$[.\/0-9A-Za-z]{43}\z/,
    'BLF-CRYPT' => qr/^\{BLF-CRYPT\}\$2b\$10\$[.\/0-9A-Za-z]{53}\z/,
    'ARGON2ID' => qr/^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$$B64{22}\$$B64{43}\z/,
    'PBKDF2' => qr/^\{PBKDF2\}\$1\$[.\/0-9A-Za-z]{16}\$5000\$[0-9a-f]{40}\z/,
    'SSHA512' => qr/^\{SSHA512\}$B64{107}=\z/,
    'SSHA256' => qr/^\{SSHA256\}$B64{64}\z/,
    'CRAM-MD5' => qr/^\{CRAM-MD5\}[0-9a-f]{64}\z/,
    'PLAIN' => qr/^\{PLAIN\}/,
);

# doveadm pw imports: the scheme Dovecot names, the one stored

my @IMPORTS = (
    [ 'SHA512-CRYPT' ], [ 'SHA256-CRYPT' ], [ 'BLF-CRYPT' ],
    [ 'ARGON2ID' ], [ 'PBKDF2' ], [ 'SSHA512' ], [ 'SSHA256' ],
    [ 'CRAM-MD5' ], [ 'PLAIN' ], [ 'MD5-CRYPT' ], [ 'CLEARTEXT', 'PLAIN' ],
    [ 'DES-CRYPT', 'CRYPT' ],
);

# the bare hashes whose shape names their scheme

my @BARE = qw/ SHA512-CRYPT SHA256-CRYPT BLF-CRYPT ARGON2ID PBKDF2
    MD5-CRYPT /;

$t->plan(40 + 25 + 3 * @SCHEMES + (2 * @SCHEMES + 2) + (2 * @SCHEMES + 5)
    + 3 * @IMPORTS + (@BARE + 2) + 19 + 9 + 6);

###############################################################################

my ($rc, $out, $err);

# usage

($rc, $out) = $x->pop3ext('--help', { redis => undef });
is($rc, 0, '--help exits 0');
like($out, qr/usage: pop3ext/, '--help prints usage');

($rc, undef, $err) = $x->pop3ext({ redis => undef });
is($rc, 64, 'no command: 64');
($rc) = $x->pop3ext('frobnicate');
is($rc, 64, 'unknown command: 64');
($rc) = $x->pop3ext('user', 'add', { stdin => "pw\n" });
is($rc, 64, 'user add without USER: 64');
($rc) = $x->pop3ext('user', 'add', 'a', 'b', { stdin => "pw\n" });
is($rc, 64, 'user add with two USERs: 64');
($rc) = $x->pop3ext('deliver', { stdin => "x\n" });
is($rc, 64, 'deliver without USER: 64');
($rc) = $x->pop3ext('stat', 'alice', { redis => 'localhost:no-port' });
is($rc, 64, 'bad redis address: 64');
($rc, undef, $err) = $x->pop3ext('stat', 'alice',
    { redis => '127.0.0.1:6379 127.0.0.1:6380' });
ok($rc == 64 && $err =~ /more than one address needs cluster or sentinel=/,
    'two addresses without cluster or sentinel=: 64') or diag("$rc $err");
($rc) = $x->pop3ext('user', 'add', 'bad{name}', { stdin => "pw\n" });
ok($rc == 64 || $rc == 65, 'user name with braces refused') or diag($rc);
($rc) = $x->pop3ext('user', 'add', 'x' x 256, { stdin => "pw\n" });
ok($rc == 64 || $rc == 65, 'user name of 256 octets refused') or diag($rc);

# user add: stored hashed

($rc, $out, $err) = $x->pop3ext('user', 'add', 'alice',
    { stdin => "s3cret\n" });
is($rc, 0, 'user add') or diag($err);
my $secret = $x->redis_cmd('HGET', $x->user_key('alice'),
    $x->model('P3X_FIELD_SECRET'));
ok(defined $secret && !ref $secret && $secret !~ /s3cret/,
    'password not stored in clear') or diag($secret);
like($secret // '', qr/\$6\$/, 'SHA512-CRYPT by default');

($rc) = $x->pop3ext('user', 'add', '--scheme', 'BLF-CRYPT', 'bob',
    { stdin => "pw\n" });
is($rc, 0, 'user add --scheme BLF-CRYPT');
like($x->redis_cmd('HGET', $x->user_key('bob'), 'secret') // '',
    qr/\$2[aby]\$/, 'bcrypt hash stored');
($rc) = $x->pop3ext('user', 'add', '--scheme', 'NOSUCH', 'carol',
    { stdin => "pw\n" });
ok($rc == 64 || $rc == 65, 'unknown scheme refused') or diag($rc);

# deliver and stat

($rc, $out, $err) = $x->pop3ext('deliver', 'alice',
    { stdin => "Subject: a\n\nhello\n" });
is($rc, 0, 'deliver') or diag($err);
($rc, $out) = $x->pop3ext('stat', 'alice');
is($rc, 0, 'stat');
is($out, "1 " . length("Subject: a\r\n\r\nhello\r\n") . "\n",
    'stat prints COUNT OCTETS of the CRLF message');

($rc) = $x->pop3ext('deliver', 'alice', 'bob', { stdin => "Subject: b\n\nb\n" });
is($rc, 0, 'deliver to two users');
is(($x->pop3ext('stat', 'alice'))[1], "2 "
    . (length("Subject: a\r\n\r\nhello\r\n") + length("Subject: b\r\n\r\nb\r\n"))
    . "\n", 'first recipient got it');
like(($x->pop3ext('stat', 'bob'))[1], qr/^1 /, 'second recipient got it');

($rc) = $x->pop3ext('deliver', 'bob', 'bob', { stdin => "Subject: c\n\nc\n" });
is($rc, 0, 'deliver to the same user twice');
like(($x->pop3ext('stat', 'bob'))[1], qr/^2 /, 'stored once');

# the index entries are "UID SIZE"

my $index = $x->redis_cmd('LRANGE',
    $x->mbox_key($x->mailbox_of('alice'), 'INDEX'), 0, -1);
is(scalar(grep { /^[\x21-\x7e]{1,70} \d+\z/ } @$index), 2,
    'index entries are UID SIZE');

# unknown users: 67, and nothing stored for anyone

($rc, undef, $err) = $x->pop3ext('deliver', 'nobody',
    { stdin => "Subject: x\n\nx\n" });
is($rc, 67, 'deliver to an unknown user: 67');
($rc) = $x->pop3ext('deliver', 'alice', 'nobody', 'bob',
    { stdin => "Subject: x\n\nx\n" });
is($rc, 67, 'an unknown user among several: 67');
like(($x->pop3ext('stat', 'alice'))[1], qr/^2 /, 'nothing stored for alice');
like(($x->pop3ext('stat', 'bob'))[1], qr/^2 /, 'nothing stored for bob');
($rc) = $x->pop3ext('stat', 'nobody');
is($rc, 67, 'stat of an unknown user: 67');

# bad input: 65

($rc) = $x->pop3ext('deliver', 'alice', { stdin => '' });
is($rc, 65, 'empty message: 65');
($rc) = $x->pop3ext('deliver', 'alice',
    { stdin => "Subject: big\n\n" . ('y' x 100) . "\n",
      env => { POP3EXT_MAX_SIZE => 50 } });
is($rc, 65, 'message over POP3EXT_MAX_SIZE: 65');
like(($x->pop3ext('stat', 'alice'))[1], qr/^2 /, 'nothing stored');

# user del removes the user and the mailbox

($rc) = $x->pop3ext('user', 'del', 'bob');
is($rc, 0, 'user del');
is($x->redis_cmd('EXISTS', $x->user_key('bob')), 0, 'user gone');
my $keys = $x->redis_cmd('KEYS', $x->model('P3X_MBOX_PREFIX') . 'bob}*');
is(scalar @$keys, 0, 'mailbox keys gone') or diag("@$keys");

###############################################################################

# the new commands and options: usage errors, unknown users

($rc, $out) = $x->pop3ext('--help', { redis => undef });
like($out, qr/user show USER.*user disable USER.*user enable USER/s,
    '--help: show, disable, enable');
like($out, qr/--mailbox MBOX/, '--help: --mailbox');
is(join(' ', grep { $out !~ /\b\Q$_\E\b/ } @SCHEMES, 'MD5-CRYPT', 'CRYPT'),
    '', '--help names every scheme');

($rc) = $x->pop3ext('user', 'frob', 'alice');
is($rc, 64, 'unknown user subcommand: 64');
($rc) = $x->pop3ext('user', 'show');
is($rc, 64, 'user show without USER: 64');
($rc) = $x->pop3ext('user', 'disable', 'alice', 'bob');
is($rc, 64, 'user disable with two USERs: 64');
($rc) = $x->pop3ext('user', 'add', '--mailbox', { stdin => "pw\n" });
is($rc, 64, '--mailbox without MBOX: 64');
($rc) = $x->pop3ext('user', 'add', '--mailbox', 'bad{box}', 'carol',
    { stdin => "pw\n" });
is($rc, 64, 'invalid mailbox name: 64');
($rc, undef, $err) = $x->pop3ext('user', 'add', '--scheme', 'MD5-CRYPT',
    'carol', { stdin => "pw\n" });
is($rc, 64, 'MD5-CRYPT makes no new hashes: 64') or diag($err);
($rc) = $x->pop3ext('user', 'add', '--scheme', 'CRYPT', 'carol',
    { stdin => "pw\n" });
is($rc, 64, 'CRYPT makes no new hashes: 64');
is($x->redis_cmd('EXISTS', $x->user_key('carol')), 0, 'carol not created');

($rc) = $x->pop3ext('user', 'show', 'nobody');
is($rc, 67, 'user show of an unknown user: 67');
($rc) = $x->pop3ext('user', 'disable', 'nobody');
is($rc, 67, 'user disable of an unknown user: 67');
($rc) = $x->pop3ext('user', 'enable', 'nobody');
is($rc, 67, 'user enable of an unknown user: 67');
is($x->redis_cmd('EXISTS', $x->user_key('nobody')), 0,
    'no record made for an unknown user');

# --hash refuses what the module could not verify: 65

for my $bad ('secret', '{FOO}x', '{SHA512-CRYPT}$6$salt$short',
    '{SSHA512}c2hvcnQ=', '{CRAM-MD5}' . ('g' x 64),
    '{PBKDF2}$1$salt$0$' . ('0' x 40),
    '{ARGON2ID}$argon2id$v=19$m=65536$c2FsdHNhbHQ$aGFzaGhhc2g',
    '{BLF-CRYPT}$2b$1$' . ('a' x 53))
{
    ($rc, undef, $err) = $x->pop3ext('user', 'add', '--hash', 'carol',
        { stdin => "$bad\n" });
    is($rc, 65, "--hash refuses '$bad': 65") or diag($err);
}

($rc) = $x->pop3ext('user', 'add', '--hash', '--scheme', 'PLAIN', 'carol',
    { stdin => '{SHA512-CRYPT}$6$abcdefgh$' . ('a' x 86) . "\n" });
is($rc, 65, '--hash with another --scheme: 65');
is($x->redis_cmd('EXISTS', $x->user_key('carol')), 0, 'carol not created');

###############################################################################

# every scheme: the value has Dovecot's shape and Dovecot verifies it

for my $sc (@SCHEMES) {
    my $user = lc "u-$sc";
    ($rc, undef, $err) = $x->pop3ext('user', 'add', '--scheme', $sc, $user,
        { stdin => pw($sc) . "\n" });
    is($rc, 0, "user add --scheme $sc") or diag($err);
    my $secret = secret($user);
    like($secret, $SHAPE{$sc}, "$sc: Dovecot's format");
    if ($sc eq 'PLAIN') {
        is($secret, '{PLAIN}' . pw($sc), 'PLAIN: the password itself');
    } else {
        ok(index($secret, pw($sc)) < 0, "$sc: password not in clear");
    }
}

SKIP: {
    skip 'doveadm not found', 2 * @SCHEMES + 2 unless $doveadm;

    for my $sc (@SCHEMES) {
        my $secret = secret(lc "u-$sc");
        my ($rc, $out, $err) = doveadm('pw', '-t', $secret, '-p', pw($sc));
        ok($rc == 0 && $out =~ /\(verified\)/, "doveadm pw -t verifies $sc")
            or diag("$rc $out $err");
        ($rc) = doveadm('pw', '-t', $secret, '-p', pw($sc) . 'x');
        isnt($rc, 0, "doveadm pw -t refuses a wrong password for $sc");
    }

    # {CRAM-MD5} has no salt: the value is Dovecot's exactly, also for a
    # key longer than a block (hashed first)

    for my $pw ('short', 'k' x 65) {
        $x->pop3ext('user', 'add', '--scheme', 'CRAM-MD5', 'cram',
            { stdin => "$pw\n" });
        my ($rc, $out) = doveadm('pw', '-s', 'CRAM-MD5', '-p', $pw);
        $out =~ s/\s+\z//;
        is(secret('cram'), $out, 'CRAM-MD5 equals doveadm\'s for a password'
            . ' of ' . length($pw) . ' octets');
    }
}

###############################################################################

# and the module takes them: a real login through nginx

if ($have_nginx) {
    $x->run_pop3(server =>
          "        pop3_ext_auth user plain login cram-md5 apop;\n"
        . "        pop3_ext_auth_fail_delay 0;\n"
        . "        pop3_ext_auth_block_addr 0;\n");
}

my $port = $have_nginx ? port(8110) : 0;
my $AUTHFAIL = qr/^-ERR \[AUTH\]/;

SKIP: {
    skip 'nginx or the module not found', 2 * @SCHEMES + 5 unless $have_nginx;

    for my $sc (@SCHEMES) {
        my $user = lc "u-$sc";
        like(pass_login($user, pw($sc)), qr/^\+OK/, "$sc: login");
        like(pass_login($user, pw($sc) . 'x'), $AUTHFAIL,
            "$sc: wrong password [AUTH]");
    }

    # the challenge-response methods, where the secret permits them

    like(cram_login('u-cram-md5', pw('CRAM-MD5')), qr/^\+OK/,
        'AUTH CRAM-MD5 with a {CRAM-MD5} secret');
    like(cram_login('u-cram-md5', 'wrong'), $AUTHFAIL,
        'AUTH CRAM-MD5, wrong password: [AUTH]');
    like(cram_login('u-plain', pw('PLAIN')), qr/^\+OK/,
        'AUTH CRAM-MD5 with a {PLAIN} secret');
    like(apop_login('u-plain', pw('PLAIN')), qr/^\+OK/,
        'APOP with a {PLAIN} secret');
    like(apop_login('u-cram-md5', pw('CRAM-MD5')), $AUTHFAIL,
        'APOP with a {CRAM-MD5} secret: [AUTH]');
}

# hashes made by Dovecot, imported with --hash, log in

for my $imp (@IMPORTS) {
    my ($dsc, $sc) = @$imp;
    $sc //= $dsc;
    my $user = lc "i-$dsc";
    my $pw = "imp $dsc pw";

    SKIP: {
        skip 'doveadm not found', 3 unless $doveadm;

        my ($rc, $hash) = doveadm('pw', '-s', $dsc, '-p', $pw);
        $hash =~ s/\s+\z//;
        skip "doveadm pw -s $dsc failed", 3 unless $rc == 0 && $hash =~ /^\{/;

        ($rc, undef, $err) = $x->pop3ext('user', 'add', '--hash', $user,
            { stdin => "$hash\n" });
        is($rc, 0, "--hash {$dsc} from doveadm") or diag($err);
        (my $value = $hash) =~ s/^\{[^}]*\}//;
        is(secret($user), "{$sc}$value", "stored as {$sc}, verbatim");

        skip 'nginx or the module not found', 1 unless $have_nginx;
        like(pass_login($user, $pw), qr/^\+OK/, "{$dsc} imported: login");
    }
}

# a bare hash: its shape names the scheme

for my $sc (@BARE) {
    SKIP: {
        skip 'doveadm not found', 1 unless $doveadm;
        my ($rc, $hash) = doveadm('pw', '-s', $sc, '-p', 'bare pw');
        $hash =~ s/\s+\z//;
        $hash =~ s/^\{[^}]*\}//;
        ($rc, undef, $err) = $x->pop3ext('user', 'add', '--hash', 'bare',
            { stdin => "$hash\n" });
        ok($rc == 0 && secret('bare') eq "{$sc}$hash",
            "bare $sc hash: {$sc}") or diag("$rc $err");
    }
}

($rc, undef, $err) = $x->pop3ext('user', 'add', '--hash', '--scheme',
    'ssha256', 'bare', { stdin => "{ssha256}" . ('A' x 64) . "\n" });
is($rc, 0, 'scheme names are case-insensitive') or diag($err);
is(secret('bare'), '{SSHA256}' . ('A' x 64), 'stored with the canonical name');

###############################################################################

# --mailbox: users sharing one mailbox

$x->add_user('team', 'team pw');
($rc, undef, $err) = $x->pop3ext('user', 'add', '--mailbox', 'team', 'ann',
    { stdin => "ann pw\n" });
is($rc, 0, 'user add --mailbox') or diag($err);
($rc) = $x->pop3ext('user', 'add', '--mailbox=team', 'ben',
    { stdin => "ben pw\n" });
is($rc, 0, 'user add --mailbox=MBOX');
is($x->redis_cmd('HGET', $x->user_key('ann'),
    $x->model('P3X_FIELD_MAILBOX')), 'team', 'mailbox field set');

($rc) = $x->pop3ext('deliver', 'ann',
    { stdin => "Subject: shared\n\nfor the team\n" });
is($rc, 0, 'deliver to a user of a shared mailbox');
$keys = $x->redis_cmd('KEYS', $x->model('P3X_MBOX_PREFIX') . 'ann}*');
is(scalar @$keys, 0, 'no mailbox named after that user') or diag("@$keys");
like(($x->pop3ext('stat', 'team'))[1], qr/^1 /, 'in the shared mailbox');
($rc) = $x->pop3ext('deliver', 'team', 'ann', 'ben',
    { stdin => "Subject: all\n\nto all three\n" });
is($rc, 0, 'deliver to three users of one mailbox');
like(($x->pop3ext('stat', 'team'))[1], qr/^2 /, 'stored once');
is(($x->pop3ext('stat', 'ann'))[1], ($x->pop3ext('stat', 'team'))[1],
    'stat of a sharing user is the shared mailbox');

SKIP: {
    skip 'nginx or the module not found', 4 unless $have_nginx;

    for my $u ([ 'team', 'team pw' ], [ 'ann', 'ann pw' ]) {
        my $s = $x->session($port, @$u);
        my ($st, $body) = $s ? $s->cmd_multi('RETR 1') : ();
        like($s ? $s->cmd('STAT') // '' : '', qr/^\+OK 2 /,
            "$u->[0] sees both messages");
        like($body // '', qr/for the team/, "$u->[0] reads the shared one");
        $s->cmd('QUIT') if $s;
    }
}

like(join('', ($x->pop3ext('user', 'show', 'ann'))[1]), qr/^mailbox: team$/m,
    'user show: the shared mailbox');

# a user who leaves: the shared mailbox stays

($rc, undef, $err) = $x->pop3ext('user', 'del', 'ben');
is($rc, 0, 'user del of a sharing user');
like($err, qr/mailbox "team" .*kept/, 'says the shared mailbox is kept');
like(($x->pop3ext('stat', 'team'))[1], qr/^2 /, 'shared mailbox kept');

# an empty MBOX gives the user its own mailbox back

($rc) = $x->pop3ext('user', 'add', '--mailbox', '', 'ann',
    { stdin => "ann pw\n" });
is($rc, 0, 'user add --mailbox ""');
like(join('', ($x->pop3ext('user', 'show', 'ann'))[1]), qr/^mailbox: ann$/m,
    'own mailbox again');

###############################################################################

# disable and enable: logins refused, mail still accepted

$x->add_user('dora', 'dora pw');
($rc) = $x->pop3ext('user', 'disable', 'dora');
is($rc, 0, 'user disable');
like(join('', ($x->pop3ext('user', 'show', 'dora'))[1]),
    qr/^disabled: yes$/m, 'user show: disabled');

SKIP: {
    skip 'nginx or the module not found', 1 unless $have_nginx;
    like(pass_login('dora', 'dora pw'), $AUTHFAIL, 'disabled: login [AUTH]');
}

($rc) = $x->pop3ext('deliver', 'dora', { stdin => "Subject: d\n\nd\n" });
is($rc, 0, 'deliver to a disabled user');
like(($x->pop3ext('stat', 'dora'))[1], qr/^1 /, 'mail kept for a disabled user');

($rc) = $x->pop3ext('user', 'enable', 'dora');
is($rc, 0, 'user enable');
is($x->redis_cmd('HEXISTS', $x->user_key('dora'),
    $x->model('P3X_FIELD_DISABLED')), 0, 'disabled field gone');

SKIP: {
    skip 'nginx or the module not found', 1 unless $have_nginx;
    like(pass_login('dora', 'dora pw'), qr/^\+OK/, 'enabled: login');
}

$x->pop3ext('user', 'disable', 'dora');
$x->add_user('dora', 'new dora pw');
like(join('', ($x->pop3ext('user', 'show', 'dora'))[1]),
    qr/^disabled: no$/m, 'user add enables the user');

###############################################################################

# user show: what a login reads, never the secret

($rc, $out) = $x->pop3ext('user', 'show', 'u-plain');
is($rc, 0, 'user show');
like($out, qr/\Auser: u-plain\nscheme: PLAIN\nmethods: password, APOP, CRAM-MD5\n(?#
    )mailbox: u-plain\ndisabled: no\nfailures: \d+\n\z/, 'user show: the fields');
ok(index($out, pw('PLAIN')) < 0, 'user show: no PLAIN password');

my $sha = secret('u-sha512-crypt');
(my $salt = $sha) =~ s/^.*\$6\$([^\$]+)\$.*\z/$1/s;
($rc, $out) = $x->pop3ext('user', 'show', 'u-sha512-crypt');
ok($out =~ /^scheme: SHA512-CRYPT$/m && index($out, $salt) < 0
    && index($out, substr($sha, -20)) < 0, 'user show: no hash, no salt')
    or diag($out);

$x->redis_cmd('HSET', $x->user_key('odd'), 'secret', '{FOO}x');
like(join('', ($x->pop3ext('user', 'show', 'odd'))[1]),
    qr/^scheme: FOO \(not verified/m, 'user show: an unknown scheme');

SKIP: {
    skip 'nginx or the module not found', 1 unless $have_nginx;
    $x->add_user('fay', 'fay pw');
    pass_login('fay', 'wrong') for 1 .. 2;
    like(join('', ($x->pop3ext('user', 'show', 'fay'))[1]),
        qr/^failures: 2$/m, 'user show: failed logins counted');
}

###############################################################################

# Redis down: 75, the code an MTA retries on

$x->stop_redis();
($rc) = $x->pop3ext('deliver', 'alice', { stdin => "Subject: x\n\nx\n" });
is($rc, 75, 'deliver with Redis down: 75');
($rc) = $x->pop3ext('stat', 'alice');
is($rc, 75, 'stat with Redis down: 75');
($rc) = $x->pop3ext('user', 'add', 'carol', { stdin => "pw\n" });
is($rc, 75, 'user add with Redis down: 75');

###############################################################################

###############################################################################

sub pw { "pw $_[0] !x" }

sub secret {
    my ($user) = @_;
    my $v = $x->redis_cmd('HGET', $x->user_key($user),
        $x->model('P3X_FIELD_SECRET'));
    return defined $v && !ref $v ? $v : '';
}

sub doveadm {
    return $x->run_cmd([ $doveadm, '-o', 'base_dir=' . $x->testdir, @_ ],
        { timeout => 60 });
}

# the reply to PASS (or to USER if that failed) on a fresh connection

sub pass_login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    my $r = $c->login($user, $pass) // '(no reply)';
    $c->cmd('QUIT') if $r =~ /^\+OK/;
    $c->close();
    return $r;
}

sub cram_login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    my $ch = $c->cmd('AUTH CRAM-MD5') // '';
    return "no challenge: $ch" unless $ch =~ /^\+ (\S+)$/;
    my $key = length $pass > 64 ? md5($pass) : $pass;
    $key .= "\0" x (64 - length $key);
    my $digest = md5_hex(($key ^ ("\x5c" x 64))
        . md5(($key ^ ("\x36" x 64)) . decode_base64($1)));
    my $r = $c->cmd(encode_base64("$user $digest", ''), 15) // '(no reply)';
    $c->cmd('QUIT') if $r =~ /^\+OK/;
    $c->close();
    return $r;
}

sub apop_login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    my ($ts) = ($c->greeting // '') =~ /(<[^>]+>)/;
    return 'no timestamp' unless $ts;
    my $r = $c->cmd("APOP $user " . md5_hex($ts . $pass), 15)
        // '(no reply)';
    $c->cmd('QUIT') if $r =~ /^\+OK/;
    $c->close();
    return $r;
}

###############################################################################

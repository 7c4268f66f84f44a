#!/usr/bin/perl

# pop3ext's admin commands (issue 11), against the module and a standalone
# Redis, then a Redis Cluster of three masters:
#
#   - user list (every user record; a key of another shape left out),
#     mailbox list (numbers as a login's UIDL gives them, a malformed
#     entry left out, delivery times from the time hash, from a native
#     UID, or unknown), both also as JSON
#   - who and kick with a live session: the owner record's fields (host,
#     worker pid, client, since, user); after kick the lock, the owner
#     record and the marks are gone and no message is; a second kick
#     finds no session (exit 1).  How the session itself ends is the
#     module's part, not asserted here
#   - user rename: refused while a session holds the maildrop (75) or
#     when NEW exists (73); the record moves, the mailbox stays and the
#     new name logs in to it; an interrupted rename finishes when run
#     again
#   - export: mboxrd and Maildir read back by Python's mailbox module,
#     each message byte for byte as stored (From lines, >From lines, 8-bit
#     octets, a NUL, a message delivered without a final newline, an empty
#     one); Maildir names and mtimes from the delivery time; an existing
#     FILE is never overwritten (73)
#   - the audit trail: who, what (without the options before the
#     command), when, sudo_user; deliveries leave none; --since as an age
#     and as a date; an entry that cannot be written stops the change (75)
#   - progress on a terminal (script(1)), none on a pipe
#   - usage errors (64), unknown users (67), Redis down (75)
#   - Cluster: user list and who across all masters, kick, a rename whose
#     two records are in different slots, the audit trail

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX qw/ strftime /;
use Sys::Hostname;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->has_prog('redis-cli');

my $PY = '/usr/bin/python3';
$x->skip_all("$PY not found") unless -x $PY;

# three masters, no replicas: what is tested is the SCAN of every master

my $cluster = $x->redis_cluster(base => 8400, replicas => 0);
my @masters = $cluster->masters;
my $CSPEC = join(' ', map { $_->addr } @masters[0, 1]) . ' cluster';
my $CCONF = join(' ', map { $_->conf_addr } @masters[0, 1]) . ' cluster';

$x->run_pop3(mail => $x->server(8111, '', redis => $CCONF));

$t->plan(164);

my $JSON = JSON::PP->new->utf8(0);
my $D = $t->testdir();
my $me = (getpwuid($<))[0] // $<;
my $WHO = "$me\@" . hostname();
my ($rc, $out, $err);

sub json {
    my ($text) = @_;
    my $v = eval { $JSON->decode($text) };
    diag("not JSON: $@$text") unless $v;
    return $v // {};
}

# the stored messages of a mailbox, in index order: [uid, body, time ms]

sub stored {
    my ($mbox, $redis) = @_;
    $redis //= sub { $x->redis_cmd(@_) };
    my $index = $redis->('LRANGE', $x->mbox_key($mbox, 'INDEX'), 0, -1);
    my @m;
    for my $e (@$index) {
        my ($uid) = $e =~ /^(\S+) \d+\z/ or next;
        push @m, [ $uid,
            $redis->('GET', $x->mbox_key($mbox, 'MSG') . $uid),
            $redis->('HGET', $x->mbox_key($mbox, 'TIME'), $uid) ];
    }
    return @m;
}

sub audit_entries {
    my (@o) = @_;
    my ($rc, $out) = $x->pop3ext('audit', '--json', @o);
    return @{ json($out)->{entries} // [] };
}

###############################################################################

# usage errors: 64, before Redis is asked

for my $args ([ 'user', 'list', 'alice' ], [ 'user', 'list', '--long' ],
    [ 'user', 'rename', 'a' ], [ 'user', 'rename', 'a', 'a' ],
    [ 'user', 'rename', 'a', 'b{c}' ], [ 'mailbox', 'list' ],
    [ 'mailbox', 'frob', 'a' ], [ 'who', 'alice' ], [ 'kick' ],
    [ 'kick', 'a', 'b' ], [ 'export', 'alice' ],
    [ 'export', 'alice', '--mbox', 'f', '--maildir', 'd' ],
    [ 'export', '--mbox', 'f' ], [ 'audit', '--since', 'yesterday' ],
    [ 'audit', '--since', '2026-13-01' ], [ 'audit', 'extra' ])
{
    ($rc, undef, $err) = $x->pop3ext(@$args, { redis => 'localhost:1' });
    is($rc, 64, "usage: @$args: 64") or diag($err);
}

($rc, $out) = $x->pop3ext('--help', { redis => undef });
like($out, qr/user list \[--json\].*user rename OLD NEW.*mailbox list(?#
    ).*who \[--json\].*kick USER.*export \(--mbox FILE \| --maildir DIR\)(?#
    ).*audit \[--since TIME\] \[--json\]/s, '--help: the admin commands');
like($out, qr/exit status:.*\b1 kick found no session.*\b73 cannot create/s,
    '--help: exit statuses 1 and 73');

###############################################################################

# an entry of 2001, written by hand before any other (a stream's ids only
# grow), for --since

$x->redis_cmd('XADD', $x->model('P3X_AUDIT_KEY'), '1000000000000-0',
    'who', 'old@host', 'what', 'user add ancient', 'when', '1000000000000');

# users and mail

$x->add_user('alice', 'alicepw');
$x->add_user('bob', 'bobpw', '--mailbox', 'alice');
$x->add_user('carol', 'carolpw');
$x->pop3ext('user', 'disable', 'carol');
$x->deliver('alice', "Subject: a1\n\nfirst\n");
$x->deliver('bob', "Subject: a2\n\nsecond\n");

# a key of the pattern's shape that is no user record of the model

$x->redis_cmd('SET', $x->model('P3X_USER_PREFIX') . 'x y}', 'stray');

($rc, $out, $err) = $x->pop3ext('user', 'list');
is($rc, 0, 'user list') or diag($err);
is($out, "alice\nbob mailbox=alice\ncarol disabled\n",
    'user list: sorted, mailbox and flag');
is($err, '', 'user list: nothing on stderr (a pipe: no progress)');

($rc, $out) = $x->pop3ext('user', 'list', '--json');
is_deeply(json($out), { count => 3, users => [
    { user => 'alice', mailbox => 'alice', disabled => JSON::PP::false },
    { user => 'bob', mailbox => 'alice', disabled => JSON::PP::false },
    { user => 'carol', mailbox => 'carol', disabled => JSON::PP::true } ] },
    'user list --json');

# names are octets: UTF-8 passes, an octet outside it is \u00XX

$x->add_user("j\xc3\xb6rg", 'pw');
$x->add_user("x\xff", 'pw');
($rc, $out) = $x->pop3ext('user', 'list', '--json');
like($out, qr/"user":"j\xc3\xb6rg".*"user":"x\\u00ff"/,
    'user list --json: UTF-8 as it is, another octet escaped');
is_deeply([ map { $_->{user} } @{ JSON::PP->new->utf8->decode($out)->{users} } ],
    [ 'alice', 'bob', 'carol', "j\x{f6}rg", "x\x{ff}" ],
    'user list --json: valid JSON');
$x->pop3ext('user', 'del', $_) for "j\xc3\xb6rg", "x\xff";

# mailbox list: a native UID without a time entry, an imported UID
# without one, a malformed entry; numbered as UIDL numbers them

$x->add_user('mal', 'malpw');
$x->deliver('mal', "Subject: m1\n\none\n");
my ($native) = $x->deliver_fast('mal', "Subject: m2\r\n\r\ntwo\r\n");
$x->redis_cmd('HDEL', $x->mbox_key('mal', 'TIME'), $native);
my $sha = $x->redis_cmd('SCRIPT', 'LOAD', $x->model('P3X_SCRIPT_DELIVER'));
$x->redis_cmd('EVALSHA', $sha, 4, $x->mbox_key('mal', 'INDEX'),
    $x->mbox_key('mal', 'MSG') . 'legacy.7', $x->mbox_key('mal', 'META'),
    $x->mbox_key('mal', 'TIME'), "Subject: m3\r\n\r\n3\r\n", 'legacy.7', 0,
    1000, 0, 0);
$x->redis_cmd('HDEL', $x->mbox_key('mal', 'TIME'), 'legacy.7');
$x->redis_cmd('RPUSH', $x->mbox_key('mal', 'INDEX'), 'malformed');
$x->deliver('mal', "Subject: m4\n\nfour\n");

my @mal = stored('mal');

($rc, $out, $err) = $x->pop3ext('mailbox', 'list', 'mal');
is($rc, 0, 'mailbox list') or diag($err);
like($err, qr/entry 4 of the index of mailbox "mal" is malformed/,
    'mailbox list: the malformed entry named');
my @lines = split /\n/, $out;
is(scalar @lines, 4, 'mailbox list: one line per message');

my $s = $x->session(port(8110), 'mal', 'malpw');
my $uidl = $s ? $s->cmd_multi('UIDL') // '' : '';
$s->cmd('QUIT') if $s;
is(join("\n", map { join ' ', (split / /)[0, 1] } @lines) . "\n",
    $uidl =~ s/\r\n/\n/gr, 'mailbox list: numbers and UIDs as UIDL');

my $iso = qr/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d/;
my @size = map { length $_->[1] } @mal;
like($lines[0], qr/^1 \Q$mal[0][0]\E $size[0] $iso\z/,
    'from the time hash');
like($lines[2], qr/^3 legacy\.7 $size[2] -\z/, 'a foreign UID: unknown');

($rc, $out) = $x->pop3ext('mailbox', 'list', '--json', 'mal');
my $ml = json($out);
is_deeply([ map { $ml->{$_} } qw/ user mailbox count octets / ],
    [ 'mal', 'mal', 4, $size[0] + $size[1] + $size[2] + $size[3] ],
    'mailbox list --json: totals');
is_deeply([ map { [ @$_{qw/ number uid size delivered_from /} ] }
    @{$ml->{messages}} ],
    [ [ 1, $mal[0][0], $size[0], 'time' ], [ 2, $native, $size[1], 'uid' ],
      [ 3, 'legacy.7', $size[2], undef ],
      [ 4, $mal[3][0], $size[3], 'time' ] ],
    'mailbox list --json: messages');
is($ml->{messages}[0]{delivered}, $mal[0][2], 'delivered: the time hash');
is($ml->{messages}[1]{delivered},
    do { no warnings 'portable'; hex(substr($native, 0, 12)) },
    'delivered: the clock of a native UID');
ok(!defined $ml->{messages}[2]{delivered}, 'delivered: unknown is null');

($rc) = $x->pop3ext('mailbox', 'list', 'nobody');
is($rc, 67, 'mailbox list of an unknown user: 67');

###############################################################################

# who and kick with a live session: bob reads alice's mailbox

($rc, $out) = $x->pop3ext('who');
ok($rc == 0 && $out eq '', 'who: no session');
($rc, undef, $err) = $x->pop3ext('kick', 'alice');
is($rc, 1, 'kick without a session: 1');
like($err, qr/no session holds the maildrop of user "alice"/,
    'kick: says there is none');

my $before = time();
$s = $x->session(port(8110), 'bob', 'bobpw');
ok($s, 'bob logged in');
my $after = time();
like($s ? $s->cmd('DELE 1') // '' : '', qr/^\+OK/, 'a message marked');

my $owner = $x->redis_cmd('GET', $x->mbox_key('alice', 'OWNER')) // '';
my ($opid, $ocl, $osince) = $owner =~
    /^host=\Q${\ lc(hostname())}\E pid=(\d+) client=([^ ]+) since=(\d+) user=bob\z/;
ok(defined $opid, 'owner record: host=H pid=P client=ADDR since=MS user=NAME')
    or diag($owner);

($rc, $out, $err) = $x->pop3ext('who');
is($rc, 0, 'who') or diag($err);
like($out, qr/^user=bob mailbox=alice host=\Q${\ lc(hostname())}\E pid=(\d+) (?#
    )client=127\.0\.0\.1 since=$iso\n\z/, 'who: the session');

($rc, $out) = $x->pop3ext('who', '--json');
my $w = json($out);
is($w->{count}, 1, 'who --json: one session');
my $ws = $w->{sessions}[0] // {};
is_deeply([ @$ws{qw/ user mailbox host client /} ],
    [ 'bob', 'alice', lc(hostname()), '127.0.0.1' ], 'who --json: the fields');
is($ws->{pid}, $opid, 'who --json: pid as a number');
my ($ppid) = (do { local $/; open my $f, '<', "/proc/$opid/stat"; <$f> }
    // '') =~ /^\d+ \(.*\) \S (\d+)/;
is($ppid, $x->nginx_pid, 'pid: a worker of this nginx');
ok($ws->{since} >= int($before * 1000) - 1000
    && $ws->{since} <= int($after * 1000) + 1000,
    'since: the login time, in ms') or diag("$ws->{since} $before $after");

# rename while the session holds the maildrop: refused

($rc, undef, $err) = $x->pop3ext('user', 'rename', 'alice', 'alice.smith');
is($rc, 75, 'user rename while a session holds the maildrop: 75');
like($err, qr/a session holds the maildrop .*user=bob/, 'says whose');
is($x->redis_cmd('EXISTS', $x->user_key('alice.smith')), 0,
    'nothing renamed');

my @audit0 = audit_entries();
my $index0 = $x->redis_cmd('LRANGE', $x->mbox_key('alice', 'INDEX'), 0, -1);

($rc, $out, $err) = $x->pop3ext('kick', 'alice');
is($rc, 0, 'kick') or diag($err);
like($out, qr/^kicked user=bob mailbox=alice host=\S+ pid=$opid (?#
    )client=127\.0\.0\.1 since=$iso\n\z/, 'kick: says who was kicked');
is_deeply([ map { $x->redis_cmd('EXISTS', $x->mbox_key('alice', $_)) }
    qw/ LOCK OWNER DELE / ], [ 0, 0, 0 ], 'lock, owner record, marks gone');
is_deeply($x->redis_cmd('LRANGE', $x->mbox_key('alice', 'INDEX'), 0, -1),
    $index0, 'the index unchanged');
is(scalar(grep { defined $_->[1] } stored('alice')), 2, 'no body deleted');

my @audit1 = audit_entries();
is(scalar @audit1, @audit0 + 1, 'kick: one audit entry');
is($audit1[-1]{what}, 'kick alice', 'kick: its command line');

($rc) = $x->pop3ext('kick', 'bob');
is($rc, 1, 'kick again: no session, 1');
is(scalar(audit_entries()), scalar @audit1, 'no entry for nothing done');
$s->close() if $s;
undef $s;

($rc) = $x->pop3ext('kick', 'nobody');
is($rc, 67, 'kick of an unknown user: 67');

###############################################################################

# user rename

($rc, undef, $err) = $x->pop3ext('user', 'rename', 'alice', 'carol');
is($rc, 73, 'rename onto an existing user: 73');
($rc) = $x->pop3ext('user', 'rename', 'nobody', 'newbody');
is($rc, 67, 'rename of an unknown user: 67');

my $secret = $x->redis_cmd('HGET', $x->user_key('alice'), 'secret');
my @stat0 = $x->mailbox_stat('alice');

($rc, $out, $err) = $x->pop3ext('user', 'rename', 'alice', 'alice.smith');
is($rc, 0, 'user rename') or diag($err);
like($err, qr/note: user "alice.smith" reads mailbox "alice"/,
    'rename: a note that the mailbox keeps its name');
is($x->redis_cmd('EXISTS', $x->user_key('alice')), 0, 'the old record gone');
is_deeply({ @{ $x->redis_cmd('HGETALL', $x->user_key('alice.smith')) } },
    { secret => $secret, mailbox => 'alice' },
    'the new record: the secret, the mailbox named');
is_deeply([ $x->mailbox_stat('alice.smith') ], \@stat0, 'the same mail');

$s = $x->session(port(8110), 'alice.smith', 'alicepw');
like($s ? $s->cmd('STAT') // '' : '', qr/^\+OK $stat0[0] $stat0[1]\z/,
    'the new name logs in to the mailbox');
$s->cmd('QUIT') if $s;
undef $s;

$s = $x->client(port => port(8110));
$s->cmd('USER alice');
like($s->cmd('PASS alicepw', 15) // '', qr/^-ERR/, 'the old name does not');
$s->close();
undef $s;

($rc) = $x->pop3ext('deliver', 'alice', { stdin => "Subject: x\n\nx\n" });
is($rc, 67, 'deliver to the old name: unknown user');

# the old name cannot be taken by a new user unawares: it would read the
# mailbox that keeps the name

($rc, undef, $err) = $x->pop3ext('user', 'add', 'alice',
    { stdin => "newpw\n" });
is($rc, 73, 'user add of the old name: 73');
like($err, qr/mailbox "alice" holds mail, and no user "alice" exists/,
    'says why');
is($x->redis_cmd('EXISTS', $x->user_key('alice')), 0, 'no user made');
$x->deliver('alice.smith', "Subject: a3\n\nthird\n");
is(($x->mailbox_stat('bob'))[0], 3, 'deliver to the new name: the mailbox');

# an explicit mailbox stays as it is

($rc) = $x->pop3ext('user', 'rename', 'bob', 'robert');
is($rc, 0, 'rename of a user with a mailbox field');
is($x->redis_cmd('HGET', $x->user_key('robert'), 'mailbox'), 'alice',
    'its mailbox field kept');

# an interrupted rename (NEW made, OLD not deleted) is finished

$x->add_user('yan', 'yanpw');
my %yan = @{ $x->redis_cmd('HGETALL', $x->user_key('yan')) };
$x->redis_cmd('HSET', $x->user_key('zed'), %yan, 'mailbox', 'yan');
($rc, undef, $err) = $x->pop3ext('user', 'rename', 'yan', 'zed');
is($rc, 0, 'an interrupted rename, run again') or diag($err);
is($x->redis_cmd('EXISTS', $x->user_key('yan')), 0, 'finished: OLD gone');

# a NEW that is not the copy is another user

$x->add_user('yan', 'other');
($rc) = $x->pop3ext('user', 'rename', 'yan', 'zed');
is($rc, 73, 'NEW with other fields: 73');

###############################################################################

# export: each message byte for byte, through Python's mailbox module

$x->add_user('exp', 'exppw');
my @bodies = (
    "Subject: from lines\n\nFrom the start\n>From quoted\n>>From twice\n"
        . "From\nFromage\n From indented\nFrom \n",
    "From looks-like-a-separator Thu Nov 28 10:00:00 2026\n"
        . "Subject: first line\n\nbody\n",
    "Subject: 8bit\n\n" . join('', map { chr } 0x80 .. 0xff) . "\n"
        . "a NUL \x00 in a line\n",
    "Subject: no newline\n\nthe last line has no end",
    "Subject: trailing empty line\n\nbody\n\n",
);
$x->deliver('exp', $_) for @bodies;
$x->deliver_fast('exp', '');                 # DELIVER takes an empty one

my @exp = stored('exp');
is(scalar @exp, 6, 'six messages to export');
is($exp[3][1], "Subject: no newline\r\n\r\nthe last line has no end\r\n",
    'the message without a final newline was stored with CRLF');

my $mbox = "$D/exp.mbox";
($rc, $out, $err) = $x->pop3ext('export', 'exp', '--mbox', $mbox);
is($rc, 0, 'export --mbox') or diag($err);
is($err, '', 'export: nothing on stderr (a pipe: no progress)');

my $READ = <<'EOF';
import json, mailbox, re, sys
kind, path = sys.argv[1], sys.argv[2]
out = []
if kind == 'mbox':
    mb = mailbox.mbox(path, create=False)
    for k in sorted(mb.keys()):
        b = mb.get_bytes(k)
        # mboxrd: one '>' less on each line of '>'s and 'From '
        b = re.sub(rb'(?m)^>(>*From )', rb'\1', b)
        out.append({'from': mb.get_message(k).get_from(), 'body': b.hex()})
else:
    md = mailbox.Maildir(path, factory=None, create=False)
    for k in md.keys():
        out.append({'name': k, 'subdir': md.get_message(k).get_subdir(),
                    'body': md.get_bytes(k).hex()})
print(json.dumps(out))
EOF

($rc, $out, $err) = $x->run_cmd([ $PY, '-c', $READ, 'mbox', $mbox ]);
my $back = json($out);
is(scalar @$back, 6, 'mbox: Python reads six messages') or diag($err);
for my $i (0 .. $#exp) {
    is(pack('H*', $back->[$i]{body} // ''), $exp[$i][1],
        "mbox: message " . ($i + 1) . ", byte for byte");
}
is(scalar(grep { ($back->[$_]{from} // '') eq 'MAILER-DAEMON '
        . strftime('%a %b %e %H:%M:%S %Y', gmtime($exp[$_][2] / 1000)) }
    0 .. $#exp), 6, 'mbox: From lines with the delivery time');

my $raw = $x->read_file($mbox);
like($raw, qr/\n>From the start\r\n>>From quoted\r\n>>>From twice\r\n(?#
    )From\r\nFromage\r\n From indented\r\n>From \r\n\n/,
    'mbox: mboxrd quoting in the file');
is(scalar(grep { !/^From MAILER-DAEMON / && !/\r\z/ && $_ ne '' }
    split /\n/, $raw), 0, 'mbox: an LF alone ends only From lines and '
    . 'separators');

($rc, undef, $err) = $x->pop3ext('export', 'exp', '--mbox', $mbox);
is($rc, 73, 'export onto an existing file: 73');
is($x->read_file($mbox), $raw, 'the file untouched');

($rc, $out) = $x->pop3ext('export', '--mbox', '-', 'exp');
is($out, $raw, 'export --mbox -: the same on stdout');

my $md = "$D/md";
($rc, undef, $err) = $x->pop3ext('export', 'exp', '--maildir', $md);
is($rc, 0, 'export --maildir') or diag($err);
($rc, $out, $err) = $x->run_cmd([ $PY, '-c', $READ, 'maildir', $md ]);
$back = json($out);
is(scalar @$back, 6, 'Maildir: Python reads six messages') or diag($err);
is_deeply([ sort map { pack('H*', $_->{body}) } @$back ],
    [ sort map { $_->[1] } @exp ], 'Maildir: every message byte for byte');
is(scalar(grep { ($_->{subdir} // '') eq 'cur' } @$back), 6, 'all in cur/');
is_deeply([ sort map { $_->{name} =~ /^(\d+\.M\d{6})P\d+Q\d+\./ ? $1 : '' }
        @$back ],
    [ sort map { sprintf('%d.M%06d', int($_->[2] / 1000),
        ($_->[2] % 1000) * 1000) } @exp ],
    'Maildir: names from the delivery times');
my @files = glob("$md/cur/*");
ok(scalar(grep { (stat $_)[9] == int($exp[0][2] / 1000) } @files),
    'Maildir: the mtime is the delivery time');
is_deeply([ glob("$md/tmp/*"), glob("$md/new/*") ], [], 'tmp/ and new/ empty');

($rc) = $x->pop3ext('export', 'exp', '--maildir', $md);
is($rc, 0, 'a second export into the same Maildir');
is(scalar(() = glob("$md/cur/*")), 12, 'adds, never replaces');

$x->write_file('notadir', '');
($rc) = $x->pop3ext('export', 'exp', '--maildir', "$D/notadir");
is($rc, 73, 'export into a file as DIR: 73');
($rc) = $x->pop3ext('export', 'nobody', '--mbox', "$D/nobody.mbox");
ok($rc == 67 && !-e "$D/nobody.mbox", 'export of an unknown user: 67, '
    . 'no file');

###############################################################################

# progress: on a terminal (script(1) gives a pty), not on a pipe

SKIP: {
    my $script = $x->prog('script');
    skip 'script(1) not found', 2 unless $script;

    my $cmd = join ' ', map { "'$_'" } $x->cli_path, '-r',
        $x->redis_spec;
    ($rc, $out) = $x->run_cmd([ $script, '-qec',
        "$cmd export exp --mbox $D/tty.mbox", '/dev/null' ]);
    like($out, qr/\rpop3ext: export: \d+ of 6 messages/,
        'export: progress on a terminal') or diag($out);
    my $masters = $x->cluster_mode ? 3 : 1;
    ($rc, $out) = $x->run_cmd([ $script, '-qec', "$cmd user list",
        '/dev/null' ]);
    like($out, qr/\rpop3ext: user list: \d+ users \(master \d of $masters\)/,
        'user list: progress on a terminal') or diag($out);
}

###############################################################################

# the audit trail

my @all = grep { $_->{what} ne 'user add ancient' } audit_entries();
my %what = map { $_->{what} => $_ } @all;

ok($what{'user add --mailbox alice bob'}, 'user add entered, with its '
    . 'options in order') or diag(join "\n", keys %what);
ok($what{'user disable carol'}, 'user disable entered');
ok($what{'user rename alice alice.smith'}, 'user rename entered');
ok($what{"export exp --mbox $D/exp.mbox"}, 'export entered');
ok(!grep({ $_->{what} =~ /^deliver/ } @all), 'deliveries are not entered');
ok(!grep({ $_->{what} =~ /^(who|user list|mailbox list|audit)/ } @all),
    'reading commands are not');
is(scalar(grep { $_->{what} eq 'user rename alice alice.smith' } @all), 1,
    'the refused rename left no entry');
is(scalar(grep { $_->{who} eq $WHO } @all), scalar @all, "who: $WHO");
ok(!grep({ $_->{when} < time() * 1000 - 600000
    || $_->{when} > time() * 1000 + 1000 } @all), 'when: ms, now');
like($all[0]{id}, qr/^\d+-\d+\z/, 'id: the stream id');

# the options before the command (the Redis specification) are left out

($rc) = $x->pop3ext('user', 'enable', 'carol',
    { redis => $x->redis_spec . ' timeout=7s' });
is((audit_entries())[-1]{what}, 'user enable carol',
    'without the Redis specification');

# the retention and quota changes are entered too; a dry run is not

$x->pop3ext('quota', 'set', '--messages', '100', 'carol');
is((audit_entries())[-1]{what}, 'quota set --messages 100 carol',
    'quota set entered');
$x->pop3ext('user', 'set', '--expire', '30', 'carol');
is((audit_entries())[-1]{what}, 'user set --expire 30 carol',
    'user set entered');
my $n = () = audit_entries();
$x->pop3ext('expunge', '--dry-run', 'carol');
is(scalar(audit_entries()), $n, 'expunge --dry-run: no entry');
$x->pop3ext('expunge', 'carol');
is((audit_entries())[-1]{what}, 'expunge carol', 'expunge entered');

SKIP: {
    skip 'not root: sudo_user is written for uid 0 only', 2 if $<;

    $x->pop3ext('user', 'disable', 'carol', { env => { SUDO_USER => 'op' } });
    is((audit_entries())[-1]{sudo_user}, 'op', 'sudo_user');
    ($rc, $out) = $x->pop3ext('audit');
    like($out, qr/^$iso \Q$WHO\E \(sudo op\): user disable carol$/m,
        'audit: text lines');
}

# --since: the old entry written by hand first

@all = audit_entries();
is($all[0]{what}, 'user add ancient', 'oldest first');
is(scalar(audit_entries('--since', '1d')), @all - 1, '--since 1d');
is(scalar(audit_entries('--since', '2001-09-09T01:46:40Z')), scalar @all,
    '--since a date and time in UTC, inclusive');
is(scalar(audit_entries('--since', '2001-09-09T03:46:41+02:00')),
    @all - 1, '--since with an offset');
is(scalar(audit_entries('--since', '2100-01-01')), 0, '--since the future');

# no entry, no change

my $akey = $x->model('P3X_AUDIT_KEY');
$x->redis_cmd('RENAME', $akey, "$akey.saved");
$x->redis_cmd('SET', $akey, 'not a stream');
($rc, undef, $err) = $x->pop3ext('user', 'del', 'carol');
is($rc, 75, 'audit entry not written: 75');
like($err, qr/cannot enter "user del carol" in the audit trail .*nothing (?#
    )was changed/, 'says why');
is($x->redis_cmd('EXISTS', $x->user_key('carol')), 1, 'nothing changed');
($rc) = $x->pop3ext('export', 'exp', '--mbox', "$D/noaudit.mbox");
ok($rc == 75 && !-e "$D/noaudit.mbox", 'no export without its entry');
$x->redis_cmd('DEL', $akey);
$x->redis_cmd('RENAME', "$akey.saved", $akey);

###############################################################################

# Redis Cluster: every master scanned

my %C = (redis => $CSPEC);
my @cu = map { "c$_" } 1 .. 9;
for my $u (@cu) {
    ($rc, undef, $err) = $x->pop3ext('user', 'add', $u,
        { %C, stdin => "pw$u\n" });
    die "user add $u on the cluster: $err" if $rc;
    $x->pop3ext('deliver', $u, { %C, stdin => "Subject: $u\n\n$u\n" });
}

my %on;
push @{$on{$cluster->master_of($x->user_key($_))->port}}, $_ for @cu;
is(scalar keys %on, 3, 'cluster: the users on all three masters');

($rc, $out, $err) = $x->pop3ext('user', 'list', \%C);
is($rc, 0, 'cluster: user list') or diag($err);
is($out, join('', map { "$_\n" } sort @cu), 'cluster: every user');

# a session per master, through the server on the cluster

my %pick = map { $_ => $on{$_}[0] } keys %on;
my @sessions;
my $deadline = time() + 20;
for my $u (sort values %pick) {
    my $c;
    while (!$c && time() < $deadline) {
        $c = $x->session(port(8111), $u, "pw$u");
        sleep(0.2) unless $c;
    }
    push @sessions, $c if $c;
}
is(scalar @sessions, 3, 'cluster: three sessions');

($rc, $out, $err) = $x->pop3ext('who', '--json', \%C);
$w = json($out);
is_deeply([ sort map { $_->{user} } @{$w->{sessions}} ],
    [ sort values %pick ], 'cluster: who finds the session on each master')
    or diag($out . $err);
is(scalar(keys %{{ map { $cluster->master_of(
        $x->mbox_key($_->{mailbox}, 'OWNER'))->port => 1 }
    @{$w->{sessions}} }}), 3, 'cluster: their owner records on 3 masters');

my ($kicked) = sort values %pick;
($rc, $out) = $x->pop3ext('kick', $kicked, \%C);
like($out, qr/^kicked user=\Q$kicked\E mailbox=\Q$kicked\E /,
    'cluster: kick');
my $lk = $x->mbox_key($kicked, 'LOCK');
is($cluster->cmd($lk, 'EXISTS', $lk), 0, 'cluster: its lock gone');
($rc, $out) = $x->pop3ext('who', \%C);
is(scalar(() = $out =~ /^user=/mg), 2, 'cluster: two sessions left');
$_->close() for @sessions;
@sessions = ();

# a rename between two slots

my ($ru) = grep { $_ ne $kicked } sort @cu;
my $nu = "$ru-renamed";
$nu .= 'x' while $cluster->master_of($x->user_key($nu))->port
    == $cluster->master_of($x->user_key($ru))->port;
($rc, undef, $err) = $x->pop3ext('user', 'rename', $ru, $nu, \%C);
is($rc, 0, 'cluster: rename across masters') or diag($err);
my $nk = $x->user_key($nu);
is($cluster->cmd($nk, 'HGET', $nk, 'mailbox'), $ru,
    'cluster: the record moved, naming the mailbox');
my $c = $x->session(port(8111), $nu, "pw$ru");
like($c ? $c->cmd('STAT') // '' : '', qr/^\+OK 1 /,
    'cluster: the new name logs in');
$c->cmd('QUIT') if $c;
undef $c;

($rc, $out) = $x->pop3ext('audit', '--json', \%C);
my @ca = map { $_->{what} } @{ json($out)->{entries} // [] };
is_deeply([ grep { /^(kick|user rename)/ } @ca ],
    [ "kick $kicked", "user rename $ru $nu" ], 'cluster: the audit trail');

my $cm = "$D/cluster.mbox";
($rc, undef, $err) = $x->pop3ext('export', $nu, '--mbox', $cm, \%C);
is($rc, 0, 'cluster: export') or diag($err);
like($x->read_file($cm), qr/^From MAILER-DAEMON .*\nSubject: \Q$ru\E\r\n/s,
    'cluster: the message exported');

# an export interrupted: held at its audit entry by CLIENT PAUSE of writes
# on the master of the audit trail, once its file is made (the user's
# keys are on another master), then SIGTERM; when the pause ends it
# stops, removes the file and dies of the signal

my $amaster = $cluster->master_of($x->model('P3X_AUDIT_KEY'));
my ($iu) = grep { $cluster->master_of($x->user_key($_))->port
    != $amaster->port && $_ ne $ru } sort @cu;
my $im = "$D/interrupted.mbox";
$amaster->cmd('CLIENT', 'PAUSE', 10000, 'WRITE');
my $pid = $x->spawn("$D/interrupted.out", $x->cli_path, '-r', $CSPEC,
    'export', $iu, '--mbox', $im);
my $wait = time() + 10;
sleep(0.05) until -e $im || time() > $wait;
ok(-e $im, 'interrupted export: the file made, the export held');
kill 'TERM', $pid;
sleep(0.2);
$amaster->cmd('CLIENT', 'UNPAUSE');
my $st = Test::Nginx::POP3Ext::reap($pid, 20) // -1;
is($st & 127, 15, 'interrupted export: dies of SIGTERM') or diag($st);
ok(!-e $im, 'interrupted export: the file removed');
like($x->read_file('interrupted.out'), qr/interrupted after 0 of 1 (?#
    )messages.*"\Q$im\E" was removed/s, 'interrupted export: says so');

###############################################################################

# Redis down: 75, and no file made

$x->stop_redis();
for my $args ([ 'who' ], [ 'user', 'list' ], [ 'audit' ],
    [ 'mailbox', 'list', 'exp' ], [ 'kick', 'exp' ],
    [ 'user', 'rename', 'exp', 'exp2' ],
    [ 'export', 'exp', '--mbox', "$D/down.mbox" ])
{
    ($rc) = $x->pop3ext(@$args);
    is($rc, 75, "Redis down: @$args: 75");
}
ok(!-e "$D/down.mbox", 'Redis down: no file made');

###############################################################################

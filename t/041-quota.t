#!/usr/bin/perl

# Quotas (issue 10): the limits of a mailbox (its meta hash) and the
# server's default (deliver --quota, POP3EXT_QUOTA); pop3ext quota get
# (text and --json), set (numbers, suffixes, 0 for none, "default") and
# recalc; deliver to a full mailbox exits 75 with 4.2.2, or with
# --quota-full permanent 77 with 5.2.2, and the other recipients still get
# the message; the usage the scripts keep is exact after parallel
# deliveries at the limit (exactly the limit stored, the rest refused)
# and after deletions at QUIT; a mailbox written before the usage was
# kept is counted from its index, and recalc repairs a wrong usage.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX ();

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;
$x->run_pop3();

$x->add_user($_, 'pw') for qw/ alice bob carol dave erin fred /;

$t->plan(63);

my $port = port(8110);
my $META = 'META';

sub meta {
    my ($user, @fields) = @_;
    my $r = $x->redis_cmd('HMGET', $x->mbox_key($x->mailbox_of($user), $META),
        @fields);
    return ref $r eq 'ARRAY' ? @$r : ();
}

# what the index holds, as the usage should say: "COUNT OCTETS"

sub index_usage {
    my ($user) = @_;
    my $e = $x->redis_cmd('LRANGE',
        $x->mbox_key($x->mailbox_of($user), 'INDEX'), 0, -1);
    my $octets = 0;
    $octets += (/ (\d+)$/)[0] for @$e;
    return scalar(@$e) . " $octets";
}

sub kept_usage {
    my ($user) = @_;
    return join(' ', map { $_ // 'undef' } meta($user, 'messages', 'octets'));
}

sub deliver {
    my ($user, @opt) = @_;
    my $o = ref $opt[-1] eq 'HASH' ? pop @opt : {};
    return $x->pop3ext('deliver', @opt, $user,
        { stdin => "Subject: q\n\n" . ('x' x ($o->{size} // 10)) . "\n",
          env => $o->{env} });
}

# quota get of a new mailbox: no limits, no usage

my ($rc, $out, $err) = $x->pop3ext('quota', 'get', 'alice');
is($rc, 0, 'quota get') or diag($err);
is($out, "user: alice\nmailbox: alice\nmessages: 0 / none [default]\n"
    . "octets: 0 / none [default]\nusage: counted from the index, not kept "
    . "yet (the next delivery or \"quota recalc\" keeps it)\n",
    'quota get: an empty mailbox, no limits');

# quota set: numbers with suffixes, 0 for none, default to drop them

($rc, undef, $err) = $x->pop3ext('quota', 'set', 'alice', '--messages', '2',
    '--octets', '10k');
is($rc, 0, 'quota set') or diag($err);
is(join(',', meta('alice', 'quota_messages', 'quota_octets')), '2,10240',
    'quota set: both limits in meta, 10k as 10240');

($rc, $out) = $x->pop3ext('quota', 'get', '--json', 'alice');
my $j = eval { decode_json($out) } || {};
is_deeply($j, { user => 'alice', mailbox => 'alice', usage_kept => JSON::PP::false,
    messages => { used => 0, limit => 2, percent => 0, source => 'mailbox' },
    octets => { used => 0, limit => 10240, percent => 0,
        source => 'mailbox' } }, 'quota get --json');

($rc) = $x->pop3ext('quota', 'set', 'alice', '--octets=0');
is(join(',', map { $_ // 'undef' } meta('alice', 'quota_octets')), '0',
    'quota set --octets=0: no limit, kept as 0');
($rc, $out) = $x->pop3ext('quota', 'get', 'alice');
like($out, qr/^octets: 0 \/ none \[mailbox\]$/m,
    'quota get: 0 is no limit of the mailbox');

($rc) = $x->pop3ext('quota', 'set', '--octets', 'default', '--', 'alice');
is(join(',', map { $_ // 'undef' } meta('alice', 'quota_octets')), 'undef',
    'quota set --octets default: the field goes');

# the server's default, from --quota or POP3EXT_QUOTA

($rc, $out) = $x->pop3ext('quota', 'get', '--quota', '1m:100', 'bob');
like($out, qr/^messages: 0 \/ 100 \(0%\) \[default\]\noctets: 0 \/ 1048576 /m,
    'quota get --quota: the default limits');
($rc, $out) = $x->pop3ext('quota', 'get', 'bob',
    { env => { POP3EXT_QUOTA => '2k:7' } });
like($out, qr/^messages: 0 \/ 7 .*\noctets: 0 \/ 2048 /m,
    'quota get: POP3EXT_QUOTA');

# usage errors and unknown users

($rc) = $x->pop3ext('quota', 'set', 'alice', '--octets', 'lots');
is($rc, 64, 'quota set: a bad number is 64');
($rc) = $x->pop3ext('quota', 'set', 'alice', '--messages', '1k');
is($rc, 64, 'quota set: no suffix for messages');
($rc) = $x->pop3ext('quota', 'set', 'alice');
is($rc, 64, 'quota set without a limit: 64');
($rc) = $x->pop3ext('quota', 'get');
is($rc, 64, 'quota get without USER: 64');
($rc) = $x->pop3ext('quota', 'get', '--quota', '5', 'alice');
is($rc, 64, 'quota get --quota without MESSAGES: 64');
($rc) = $x->pop3ext('quota', 'frob', 'alice');
is($rc, 64, 'quota frob: 64');
($rc) = $x->pop3ext('quota', 'get', 'nobody');
is($rc, 67, 'quota get of an unknown user: 67');
($rc) = $x->pop3ext('quota', 'set', 'nobody', '--messages', '1');
is($rc, 67, 'quota set of an unknown user: 67');
($rc) = $x->pop3ext('deliver', '--quota', 'x:1', 'alice', { stdin => "x\n" });
is($rc, 64, 'deliver --quota: a bad value is 64');
($rc) = $x->pop3ext('deliver', '--quota-full', 'maybe', 'alice',
    { stdin => "x\n" });
is($rc, 64, 'deliver --quota-full: a bad value is 64');

# a full mailbox: 75 and 4.2.2 by default, 77 and 5.2.2 when permanent

is((deliver('alice'))[0], 0, 'deliver within the quota, 1');
is((deliver('alice'))[0], 0, 'deliver within the quota, 2');
($rc, undef, $err) = deliver('alice');
is($rc, 75, 'deliver to a full mailbox: 75');
like($err, qr/\A4\.2\.2 mailbox "alice" is full \(its messages quota\)/,
    'the output starts with 4.2.2');
($rc, undef, $err) = deliver('alice', '--quota-full', 'permanent');
is($rc, 77, 'deliver --quota-full permanent: 77');
like($err, qr/\A5\.2\.2 mailbox "alice" is full/,
    'the output starts with 5.2.2');
($rc) = deliver('alice', '--quota-full=tempfail');
is($rc, 75, 'deliver --quota-full=tempfail: 75');
is(kept_usage('alice'), '2 ' . (split / /, index_usage('alice'))[1],
    'nothing stored past the limit, the usage exact');
($rc, $out) = $x->pop3ext('quota', 'get', 'alice');
like($out, qr/^messages: 2 \/ 2 \(100%\) \[mailbox\]$/m,
    'quota get: 100% of the messages');

# the octets: a message that would pass the limit is refused

$x->pop3ext('quota', 'set', 'carol', '--octets', '100');
is((deliver('carol', { size => 40 }))[0], 0, 'deliver within the octets');
($rc, undef, $err) = deliver('carol', { size => 40 });
is($rc, 75, 'deliver past the octets: 75');
like($err, qr/its octets quota/, 'the octets quota named');
is((deliver('carol', { size => 1 }))[0], 0, 'a smaller one still fits');

# the default quota, and a mailbox's own 0 that lifts it

is((deliver('dave', '--quota', '0:1'))[0], 0, 'deliver --quota 0:1, 1');
is((deliver('dave', '--quota', '0:1'))[0], 75, 'deliver --quota 0:1, 2: full');
is((deliver('dave', { env => { POP3EXT_QUOTA => '0:1' } }))[0], 75,
    'POP3EXT_QUOTA: full');
is((deliver('dave'))[0], 0, 'without a default: no limit');
$x->pop3ext('quota', 'set', 'dave', '--messages', '0');
is((deliver('dave', '--quota', '0:1'))[0], 0,
    'the mailbox\'s 0 beats the default');

# several recipients: the ones with room get it, the status says full

my ($bob_before) = split / /, index_usage('bob');
($rc, undef, $err) = $x->pop3ext('deliver', 'alice', 'bob',
    { stdin => "Subject: two\n\ntwo\n" });
is($rc, 75, 'deliver to a full and a free mailbox: 75');
is((split / /, index_usage('bob'))[0], $bob_before + 1,
    'the free one got the message');
is((split / /, index_usage('alice'))[0], 2, 'the full one did not');

# parallel deliveries at the limit: exactly the limit stored

sub parallel {
    my ($user, $n, %o) = @_;

    my $in = $x->testdir() . "/par-$user.eml";
    open my $fh, '>', $in or die "$in: $!";
    print $fh "Subject: p\n\n" . ('y' x ($o{size} // 10)) . "\n";
    close $fh;

    my @cmd = (Test::Nginx::POP3Ext::cli_path(), '-r',
        $x->redis_spec, 'deliver', $user);
    my @pids;

    for (1 .. $n) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;

        if ($pid == 0) {
            open STDIN, '<', $in;
            open STDOUT, '>', '/dev/null';
            open STDERR, '>', '/dev/null';
            { no warnings 'exec'; exec { $cmd[0] } @cmd; }
            POSIX::_exit(127);
        }

        push @pids, $pid;
    }

    my %codes;
    for my $pid (@pids) {
        waitpid($pid, 0);
        $codes{$? >> 8}++;
    }

    return \%codes;
}

$x->pop3ext('quota', 'set', 'erin', '--messages', '5');
my $codes = parallel('erin', 12);
is_deeply($codes, { 0 => 5, 75 => 7 },
    '12 deliveries at once to a limit of 5: 5 stored, 7 refused');
is(index_usage('erin'), '5 ' . 5 * 26, 'exactly 5 in the index');
is(kept_usage('erin'), index_usage('erin'), 'and in the usage');

# each message is 16 + 111 octets with CRLF line ends

$x->pop3ext('quota', 'set', 'fred', '--octets', 5 * 127);
$codes = parallel('fred', 10, size => 111);
is_deeply($codes, { 0 => 5, 75 => 5 },
    '10 deliveries at once to 5 messages\' octets: 5 stored');
is(kept_usage('fred'), index_usage('fred'), 'the usage exact');
is((split / /, index_usage('fred'))[1], 5 * 127, 'to the octet');

# deletions at QUIT keep the usage exact, and make room

my $s = $x->session($port, 'erin', 'pw');
$s->cmd_ok('DELE 1');
$s->cmd_ok('DELE 3');
like($s->cmd('QUIT') // '', qr/^\+OK bye, 3 messages left/, 'QUIT removed 2');
is(kept_usage('erin'), '3 78', 'the usage after QUIT');
is(kept_usage('erin'), index_usage('erin'), 'the usage as the index says');
is((deliver('erin'))[0], 0, 'room again after the deletions');

# a mailbox of 0.2 has no usage: counted from the index; recalc keeps it

$x->redis_cmd('HDEL', $x->mbox_key('bob', $META), 'messages', 'octets');
($rc, $out) = $x->pop3ext('quota', 'get', '--json', 'bob');
$j = eval { decode_json($out) } || {};
is(($j->{usage_kept} // 1) ? 'kept' : 'counted', 'counted',
    'quota get: the usage is not kept');
is(($j->{messages}{used} // '') . ' ' . ($j->{octets}{used} // ''),
    index_usage('bob'), 'quota get: counted from the index');
($rc, $out) = $x->pop3ext('quota', 'recalc', 'bob');
is($rc, 0, 'quota recalc');
is($out, index_usage('bob') . "\n", 'quota recalc prints COUNT OCTETS');
is(kept_usage('bob'), index_usage('bob'), 'quota recalc stored the usage');

# a delivery counts a mailbox without usage once, then keeps it

$x->redis_cmd('HDEL', $x->mbox_key('bob', $META), 'messages', 'octets');
is((deliver('bob'))[0], 0, 'deliver to a mailbox without usage');
is(kept_usage('bob'), index_usage('bob'), 'DELIVER counted it');

# a wrong usage is repaired

$x->redis_cmd('HSET', $x->mbox_key('bob', $META), 'messages', 99,
    'octets', 1);
($rc, $out) = $x->pop3ext('quota', 'recalc', 'bob');
is($out, index_usage('bob') . "\n", 'quota recalc of a wrong usage');
is(kept_usage('bob'), index_usage('bob'), 'repaired');

($rc) = $x->pop3ext('quota', 'recalc', 'nobody');
is($rc, 67, 'quota recalc of an unknown user: 67');

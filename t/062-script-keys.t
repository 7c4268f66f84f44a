#!/usr/bin/perl

# Every key a script touches is one of its KEYS, and all its KEYS share
# one hash tag (issue 8): checked on what Redis executes.  A MONITOR
# client records a session mix that runs every script of the data model
# (deliver, login with connection slots and the attempt counters, DELE,
# RSET, the marks read back after an RSET of unknown outcome, QUIT, a
# dropped session's release, lock refreshes, an EXPIRE 0 commit, expunge,
# quota recalc, an LMTP delivery's STAGE and STORE); for each command a
# script runs, COMMAND GETKEYS names its keys, and each must be a declared
# KEY.
# Redis Cluster routes a script by its KEYS and migrates slots key by key:
# an undeclared key would go to the wrong node or break mid-migration.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;
use Test::Nginx::POP3Ext::LMTP;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli
    ->needs_standalone_redis('MONITOR and DEBUG SLEEP on the one Redis server'
        . ' that runs every script');

$x->run_pop3(
    redis => '127.0.0.1:%%PORT_8379%% timeout=1s',
    server => "        pop3_ext_lock_ttl 3s;\n"
        . "        pop3_ext_max_conn_per_addr 10;\n"
        . "        pop3_ext_max_conn_per_user 2;\n",
    mail => lmtp_server(8024, '', redis => '127.0.0.1:%%PORT_8379%% '
        . 'timeout=1s'),
);

$t->plan(4);

my $monitor = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . port(8379))
    or die "monitor: $!\n";
print $monitor "MONITOR\r\n";
my $ok = <$monitor>;
die "MONITOR refused\n" unless $ok && $ok =~ /^\+OK/;

###############################################################################

# the mix

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->deliver('alice', "Subject: $_\n\n$_\n") for 1 .. 4;
$x->pop3ext('deliver', '--id', 'Q1', 'bob', { stdin => "Subject: q\n\nq\n" });
$x->pop3ext('user', 'show', 'alice');

{
    my $l = lmtp_client(port(8024));                  # STAGE, STORE
    $l->lmtp('LHLO x');
    $l->lmtp('MAIL FROM:<>');
    $l->lmtp('RCPT TO:<alice@example.org>');
    $l->lmtp('RCPT TO:<bob@example.org>');
    $l->data("Subject: lmtp\r\n\r\nlmtp\r\n", 2);
    $l->lmtp('QUIT');
}

{
    my $c = $x->client();
    $c->login('alice', 'wrong');                      # FAIL, AUTHINFO
    $c->close();

    $c = $x->session(port(8110), 'alice', 'secret');  # REFUND, CONN, LOCK
    $c->cmd('DELE 1');                                # MARK
    $c->cmd('RSET');                                  # MARK, cleared
    $c->cmd('DELE 2');
    sleep(1.5);                                       # REFRESH
    $c->cmd('QUIT');                                  # COMMIT

    $c = $x->session(port(8110), 'bob', 'bobpw');
    $c->close();                                      # RELEASE
    sleep(0.5);

    # an RSET of unknown outcome: the marks are read back (MARKS)
    $c = $x->session(port(8110), 'alice', 'secret');
    $c->cmd('DELE 1');
    $x->redis->debug_sleep(2);
    $c->cmd('RSET', 10);
    $c->cmd('STAT', 10);
    $c->cmd('QUIT', 10);

    # retention and quotas: COMMIT's forced entries (EXPIRE 0) with their
    # bodies, and pop3ext's EXPUNGE and USAGE
    $x->add_user('zed', 'zedpw', '--expire', '0');
    $x->deliver('zed', "Subject: z$_\n\nz\n") for 1 .. 2;
    $c = $x->session(port(8110), 'zed', 'zedpw');
    $c->cmd_multi('RETR 1');
    $c->cmd('QUIT');
    my ($old) = split / /, $x->redis_cmd('LINDEX',
        $x->mbox_key('bob', 'INDEX'), 0);
    $x->redis_cmd('HSET', $x->mbox_key('bob', 'TIME'), $old, 1000);
    $x->pop3ext('expunge', '--older-than', '1', 'bob');
    $x->pop3ext('quota', 'recalc', 'alice');
}

sleep(0.5);

###############################################################################

# what Redis ran: "+TIME [DB ADDR] "CMD" "ARG"..." lines

my $log = '';
my $sel = IO::Select->new($monitor);
while ($sel->can_read(0.5)) {
    sysread($monitor, my $buf, 1 << 20) or last;
    $log .= $buf;
}
close $monitor;

my $probe = $x->redis;
my (%declared, $script, %scripts, @undeclared, @mixed);

for my $line (split /\r\n/, $log) {
    my ($who, $args) = $line =~ /^\+[\d.]+ \[\d+ ([^\]]+)\] (.*)$/ or next;
    my @a = words($args);
    next unless @a;

    if ($who ne 'lua') {
        $script = undef;
        next unless uc $a[0] eq 'EVALSHA' || uc $a[0] eq 'EVAL';

        my $n = $a[2];
        my @keys = @a[3 .. 2 + $n];
        $script = uc $a[0] eq 'EVAL' ? 'deliver' : $a[1];
        $scripts{$script}++;
        %declared = map { $_ => 1 } @keys;

        my %tags = map { tag($_) => 1 } @keys;
        push @mixed, "$script: @keys" if keys %tags > 1;
        next;
    }

    next unless defined $script;

    # the keys of a command, as Redis itself finds them
    my $keys = $probe->cmd('COMMAND', 'GETKEYS', @a);
    next unless ref $keys eq 'ARRAY';         # a command with no key

    for my $k (@$keys) {
        push @undeclared, "$script: $a[0] $k" unless $declared{$k};
    }
}

# the scripts of the model: every one ran

my %sha = map { sha1_hex($x->model($_)) => $_ } qw/ P3X_SCRIPT_LOCK
    P3X_SCRIPT_REFRESH P3X_SCRIPT_MARK P3X_SCRIPT_MARKS P3X_SCRIPT_COMMIT
    P3X_SCRIPT_RELEASE P3X_SCRIPT_AUTHINFO P3X_SCRIPT_FAIL
    P3X_SCRIPT_REFUND P3X_SCRIPT_CONN P3X_SCRIPT_STAGE P3X_SCRIPT_STORE /;

my @missing = grep { !$scripts{$_} } sort(keys %sha), 'deliver';
is(join(', ', map { $sha{$_} // $_ } @missing), '',
    'every script of the model ran');
cmp_ok(scalar keys %scripts, '>=', 13, 'scripts seen');
is(join("\n", @undeclared), '', 'every key a script touched is in its KEYS');
is(join("\n", @mixed), '', 'the KEYS of each script share one hash tag');

###############################################################################

# MONITOR's quoting: "..." with \" \\ \xHH \n \r \t

sub words {
    my ($s) = @_;
    my @w;
    while ($s =~ /\G\s*"((?:[^"\\]|\\.)*)"/gc) {
        my $w = $1;
        $w =~ s/\\x([0-9a-fA-F]{2})/chr(hex($1))/ge;
        $w =~ s/\\([nrt"\\])/{ n => "\n", r => "\r", t => "\t",
            '"' => '"', '\\' => '\\' }->{$1}/ge;
        push @w, $w;
    }
    return @w;
}

# Redis Cluster's hash tag: the text in the first {...} if not empty

sub tag {
    my ($k) = @_;
    return $1 if $k =~ /\{([^}]+)\}/;
    return $k;
}

sub sha1_hex {
    require Digest::SHA;
    return Digest::SHA::sha1_hex($_[0]);
}

###############################################################################

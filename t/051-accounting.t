#!/usr/bin/perl

# Counting mail across faults, under load.  Sessions (one per user, in
# loops: log in, UIDL, RETR, sometimes DELE, QUIT) and a deliverer
# (pop3ext deliver --id, retried with the same id until acknowledged) run
# while these faults are injected for real:
#
#   - kill -9 of Redis (AOF with appendfsync always), restarted
#   - kill -9 of an nginx worker (the master starts another)
#   - Redis paused (SIGSTOP) longer than the lock TTL, then resumed
#
# Every process writes down what it was told.  Afterwards each mailbox
# must hold exactly what it should:
#
#   - every acknowledged delivery is there, unless a QUIT acknowledged
#     its deletion (or one of unknown outcome may have removed it)
#   - nothing whose deletion was acknowledged is there
#   - nothing is there twice
#   - no UIDL names two messages, in the end or in anything a client saw
#   - no maildrop lock is left once the lock TTL has passed

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use IO::Handle;
use POSIX qw/ _exit WNOHANG /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

my $LOAD = 24;                  # seconds of load
my @USERS = map { "u$_" } 1 .. 4;

my $redis = $x->redis_server(8390, aof => 1,
    args => [ '--appendfsync', 'always' ]);
my $SPEC = '127.0.0.1:' . $redis->port . ' timeout=2s';

$x->run_pop3(
    redis => $SPEC,
    main => "worker_processes 2;\n",
    server => "        pop3_ext_lock_ttl 3s;\n",
);

for my $u (@USERS) {
    my ($rc, $out, $err) = $x->pop3ext('-r', $SPEC, 'user', 'add', $u,
        { stdin => "pw$u\n" });
    die "user add $u: $err\n" if $rc;
}

$t->plan(11);

my $DIR = $x->testdir();
my $PORT = port(8110);
my $stop_at = time() + $LOAD;

###############################################################################

# what a child was told, one line each, to a file of its own

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

sub ledger {
    my ($name) = @_;
    open my $fh, '>>', "$DIR/ledger-$name" or die "ledger: $!\n";
    $fh->autoflush(1);
    return $fh;
}

sub child(&$) {
    my ($code, $name) = @_;
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;
    return $pid if $pid;
    # a child must not run the harness's END (it would stop nginx)
    my $ok = eval { $code->(ledger($name)); 1 };
    print STDERR "child $name: $@" unless $ok;
    _exit(0);
}

# a minimal POP3 client that gives up on any error

sub pop_open {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$PORT",
        Timeout => 5) or return;
    $s->timeout(10);
    my $g = <$s>;
    return unless defined $g && $g =~ /^\+OK/;
    return $s;
}

sub pop_cmd {
    my ($s, $cmd) = @_;
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm(15);
    my $r = eval { print $s "$cmd\r\n"; scalar <$s> };
    alarm(0);
    return unless defined $r;
    $r =~ s/\r?\n\z//;
    return $r;
}

sub pop_multi {
    my ($s) = @_;
    my @lines;
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm(30);
    my $ok = eval {
        while (defined(my $l = <$s>)) {
            $l =~ s/\r?\n\z//;
            return 1 if $l eq '.';
            $l =~ s/^\.//;
            push @lines, $l;
        }
        0;
    };
    alarm(0);
    return $ok ? \@lines : undef;
}

# a session loop for one user

sub sessions {
    my ($user, $log) = @_;
    my $n = 0;
    srand($$);

    while (time() < $stop_at) {
        my $s = pop_open() or (sleep(0.1), next);
        my $r = pop_cmd($s, "USER $user");
        $r = pop_cmd($s, "PASS pw$user") if $r && $r =~ /^\+OK/;
        unless ($r && $r =~ /^\+OK maildrop has (\d+) messages/) {
            close $s;
            sleep(0.1);
            next;
        }
        my $total = $1;

        $r = pop_cmd($s, 'UIDL');
        my $list = ($r && $r =~ /^\+OK/) ? pop_multi($s) : undef;
        unless ($list) { close $s; next; }
        my %uidl = map { split / / } @$list;

        my (@dele, $dele_ok);
        $dele_ok = 0;
        for my $i (1 .. 2) {
            last unless $total;
            my $m = 1 + int(rand($total));
            $r = pop_cmd($s, "RETR $m") or last;
            next unless $r =~ /^\+OK/;
            my $body = pop_multi($s) or last;
            my ($id) = map { /^X-Id: (\S+)/ ? $1 : () } @$body;
            print $log "SEEN $user $uidl{$m} $id\n" if $id && $uidl{$m};

            if (rand() < 0.03 && $id && !grep { $_->[0] == $m } @dele) {
                $r = pop_cmd($s, "DELE $m") or last;
                if ($r =~ /^\+OK/) {
                    push @dele, [ $m, $id ];
                    $dele_ok++;
                } elsif ($r =~ /may or may not/) {
                    # the marks are read back: from now on, unknown
                    push @dele, [ $m, $id, 'maybe' ];
                }
            }
        }

        $r = pop_cmd($s, 'QUIT') // '(none)';
        close $s;

        # what the commit did, as QUIT says: all, none, or not known
        my $what = 'MAYBE';

        if ($r =~ /^\+OK bye, (\d+) messages left/) {
            $what = $1 == $total - $dele_ok ? 'DEL' : 'MAYBE';
        } elsif ($r =~ /no message removed/) {
            $what = 'KEPT';
        }

        for my $d (@dele) {
            my $kind = ($d->[2] || $what eq 'MAYBE') ? 'MAYBE'
                : $what eq 'DEL' ? 'DEL' : 'KEPT';
            print $log "$kind $user $d->[1]\n" if $d->[1];
        }

        print $log "SESSION $user $what\n";
        $n++;
        sleep(0.05);
    }
}

# the deliverer: one id after the other, each retried until acknowledged

sub deliveries {
    my ($log) = @_;
    my $n = 0;
    srand($$);

    while (time() < $stop_at) {
        my $id = sprintf('d%05d', ++$n);
        my $user = $USERS[int(rand(@USERS))];
        my $acked = 0;

        for my $try (1 .. 20) {
            my ($rc) = $x->pop3ext('-r', $SPEC, 'deliver', '--id', $id,
                $user, { stdin => "Subject: $id\nX-Id: $id\n\nmail $id\n",
                timeout => 15 });
            if ($rc == 0) { $acked = 1; last; }
            sleep(0.3);
        }

        print $log(($acked ? 'ACK' : 'NOACK') . " $user $id\n");
        sleep(0.05);
    }
}

###############################################################################

# a start: some mail in every mailbox, acknowledged

{
    my $log = ledger('initial');
    for my $i (1 .. 5) {
        for my $u (@USERS) {
            my $id = "i$u-$i";
            my ($rc) = $x->pop3ext('-r', $SPEC, 'deliver', '--id', $id, $u,
                { stdin => "Subject: $id\nX-Id: $id\n\nmail $id\n" });
            die "initial delivery failed\n" if $rc;
            print $log "ACK $u $id\n";
        }
    }
}

my @kids;
for my $u (@USERS) {
    push @kids, child { sessions($u, $_[0]) } "s-$u";
}
push @kids, child { deliveries($_[0]) } 'deliver';

sleep(4);

# 1. Redis killed (AOF always), back on the same port with its data

$redis->kill9();
sleep(0.5);
$redis->start();

sleep(4);

# 2. an nginx worker killed; the master starts another

my $master = $x->nginx_pid;
my ($worker) = grep { ((_slurp("/proc/$_/stat") =~ /^\d+ \(.*?\) \S (\d+)/)[0]
    // 0) == $master } map { m{/proc/(\d+)$} ? $1 : () } glob('/proc/[0-9]*');
kill 'KILL', $worker if $worker;
my $worker_killed = $worker
    && $x->wait_for_log(qr/worker process \Q$worker\E exited on signal 9/);

sleep(4);

# 3. Redis paused longer than the lock TTL (3 s)

$redis->pause();
sleep(4.5);
$redis->resume();

# the rest of the load, then everything settles: locks run out

waitpid($_, 0) for @kids;
sleep(3.5);

###############################################################################

my (%acked, %deleted, %maybe, %kept, %seen_uidl, %sessions, $noack);
my $conflicts = 0;
$noack = 0;

for my $file (glob("$DIR/ledger-*")) {
    open my $fh, '<', $file or die "$file: $!\n";
    while (<$fh>) {
        chomp;
        my ($kind, $user, $a, $b) = split / /;
        if ($kind eq 'ACK') { $acked{"$user $a"} = 1 }
        elsif ($kind eq 'DEL') { $deleted{"$user $a"} = 1 }
        elsif ($kind eq 'MAYBE') { $maybe{"$user $a"} = 1 }
        elsif ($kind eq 'KEPT') { $kept{"$user $a"} = 1 }
        elsif ($kind eq 'NOACK') { $noack++ }
        elsif ($kind eq 'SESSION') { $sessions{$a}++ }
        elsif ($kind eq 'SEEN') {
            my $k = "$user $a";
            $conflicts++ if defined $seen_uidl{$k} && $seen_uidl{$k} ne $b;
            $seen_uidl{$k} //= $b;
        }
    }
}

# the mailboxes as Redis has them: UIDL and X-Id of every message

my (%have, %uidl_of, $doubled);
$doubled = 0;

for my $u (@USERS) {
    my $mbox = $x->mailbox_of($u);
    my $entries = $redis->cmd('LRANGE', $x->mbox_key($mbox, 'INDEX'), 0, -1);
    for my $e (@$entries) {
        my ($uid) = split / /, $e;
        my $body = $redis->cmd('GET', $x->mbox_key($mbox, 'MSG') . $uid)
            // '';
        my ($id) = $body =~ /^X-Id: (\S+)/m;
        $id //= "(no id: $uid)";
        $doubled++ if $have{"$u $id"}++;
        $conflicts++ if defined $seen_uidl{"$u $uid"}
            && $seen_uidl{"$u $uid"} ne $id;
        $conflicts++ if defined $uidl_of{"$u $uid"};
        $uidl_of{"$u $uid"} = $id;
    }
}

my @lost = grep { !$have{$_} && !$deleted{$_} && !$maybe{$_} }
    keys %acked;
my @back = grep { $have{$_} } keys %deleted;

note(sprintf('%d deliveries acknowledged (%d given up), %d deletions '
    . 'acknowledged, %d of unknown outcome, %d messages at the end; '
    . 'sessions by how their QUIT ended: %s',
    scalar keys %acked, $noack, scalar keys %deleted, scalar keys %maybe,
    scalar keys %have,
    join(', ', map { "$_ $sessions{$_}" } sort keys %sessions)));

cmp_ok(scalar keys %acked, '>', 40, 'the load delivered mail');
cmp_ok(scalar keys %deleted, '>', 5, 'the load deleted mail');
cmp_ok(scalar keys %have, '>', 20, 'mail is left to count');
is(scalar @lost, 0, 'nothing acknowledged is lost')
    or diag(explain([ sort @lost ]));
is(scalar @back, 0, 'nothing whose deletion was acknowledged is back')
    or diag(explain([ sort @back ]));
is($doubled, 0, 'nothing is doubled');
is($conflicts, 0, 'no UIDL names two messages');

my $locks = 0;
for my $u (@USERS) {
    $locks++ if $redis->cmd('EXISTS',
        $x->mbox_key($x->mailbox_of($u), 'LOCK'));
}
is($locks, 0, 'no lock left after the lock TTL');
ok($x->nginx_running, 'nginx runs');
ok($worker_killed, 'a worker was killed, and the master saw it');

# the one alert expected: the worker this test killed
my @alerts = grep { /\[alert\]/ && !/worker process \Q$worker\E exited on signal 9/ }
    split /\n/, $x->error_log();
is(join("\n", @alerts), '', 'no alert but the killed worker\'s');
$t->todo_alerts();

###############################################################################

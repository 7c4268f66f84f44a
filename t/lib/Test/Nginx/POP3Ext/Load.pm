package Test::Nginx::POP3Ext::Load;

# Mail counted across faults.  Child processes load the servers while a
# test injects faults: one POP3 session loop per user (log in, UIDL, RETR
# two messages, sometimes DELE one, QUIT) and a deliverer (pop3ext deliver
# --id, each id retried until acknowledged).  Every process writes down
# what it was told, in a ledger file of its own.  Afterwards verify()
# reads the mailboxes from Redis and holds them against the ledgers:
#
#   lost       acknowledged deliveries missing, unless a QUIT acknowledged
#              their deletion or one of unknown outcome may have removed
#              them
#   back       messages whose deletion a QUIT acknowledged, still there
#   doubled    a delivery id stored twice in a mailbox
#   conflicts  a UIDL that names two messages, at the end or in anything
#              a client saw
#
#   my $load = Test::Nginx::POP3Ext::Load->new($x, ports => [port(8110)],
#       spec => $SPEC, users => [qw/u1 u2/], seconds => 20);
#   $load->provision(5);          # users, and 5 acknowledged messages each
#   $load->start();
#   ... faults ...
#   $load->wait();
#   my $r = $load->verify(sub { my ($key, @cmd) = @_; ... });
#   $load->tests($r);             # TESTS tests
#
# The children never return into the test: they leave with _exit(), so
# that no END block of the harness runs in them.

use strict;
use warnings;

use IO::Handle;
use IO::Socket::INET;
use POSIX qw/ _exit /;
use Test::More ();
use Time::HiRes qw/ time sleep /;

our $TESTS = 8;

sub new {
    my ($class, $x, %o) = @_;

    my $self = bless {
        x => $x,
        ports => $o{ports},
        spec => $o{spec},
        users => $o{users} || [ map { "u$_" } 1 .. 4 ],
        seconds => $o{seconds} || 20,
        dele => $o{dele} // 0.03,
        pause => $o{pause} // 0.05,
        local => $o{local},               # client addresses, in turn
        dir => $x->testdir() . '/load-' . ($o{name} // 'ledgers'),
        kids => [],
    }, $class;

    mkdir $self->{dir};

    return $self;
}

sub users { @{$_[0]{users}} }

sub pop3ext {
    my ($self, @args) = @_;
    return $self->{x}->pop3ext('-r', $self->{spec}, @args);
}

sub ledger {
    my ($self, $name) = @_;
    open my $fh, '>>', "$self->{dir}/$name" or die "ledger $name: $!\n";
    $fh->autoflush(1);
    return $fh;
}

# the users, and some acknowledged mail to start with

sub provision {
    my ($self, $messages) = @_;

    my $log = $self->ledger('initial');

    for my $u ($self->users) {
        my ($rc, undef, $err) = $self->pop3ext('user', 'add', $u,
            { stdin => "pw$u\n" });
        die "user add $u: $err\n" if $rc;
    }

    for my $i (1 .. $messages // 0) {
        for my $u ($self->users) {
            my $id = "i$u-$i";
            my ($rc, undef, $err) = $self->pop3ext('deliver', '--id', $id,
                $u, { stdin => "Subject: $id\nX-Id: $id\n\nmail $id\n" });
            die "initial delivery to $u: $err\n" if $rc;
            print $log "ACK $u $id\n";
        }
    }

    return $self;
}

sub start {
    my ($self) = @_;

    $self->{stop_at} = time() + $self->{seconds};

    my $i = 0;
    for my $u ($self->users) {
        my $port = $self->{ports}[$i % @{$self->{ports}}];
        my $local = $self->{local} ? $self->{local}[$i % @{$self->{local}}]
            : undef;
        $i++;
        $self->_child("s-$u", sub { $self->_sessions($u, $port, $local, @_) });
    }

    $self->_child('deliver', sub { $self->_deliveries(@_) });

    return $self;
}

sub wait {
    my ($self) = @_;
    waitpid($_, 0) for @{$self->{kids}};
    $self->{kids} = [];
    return $self;
}

sub _child {
    my ($self, $name, $code) = @_;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid) {
        push @{$self->{kids}}, $pid;
        return;
    }

    srand($$ ^ time());
    my $ok = eval { $code->($self->ledger($name)); 1 };
    print STDERR "load child $name: $@" unless $ok;
    _exit(0);
}

# a POP3 client that gives up on any error

sub _open {
    my ($port, $local) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Timeout => 5, (defined $local ? (LocalAddr => $local) : ()))
        or return;
    my $g = _line($s);
    return unless defined $g && $g =~ /^\+OK/;
    return $s;
}

sub _line {
    my ($s) = @_;
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm(15);
    my $l = eval { scalar <$s> };
    alarm(0);
    return unless defined $l;
    $l =~ s/\r?\n\z//;
    return $l;
}

sub _cmd {
    my ($s, $cmd) = @_;
    print $s "$cmd\r\n" or return;
    return _line($s);
}

sub _multi {
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

sub _sessions {
    my ($self, $user, $port, $local, $log) = @_;

    while (time() < $self->{stop_at}) {
        my $s = _open($port, $local) or (sleep(0.1), next);
        my $r = _cmd($s, "USER $user");
        $r = _cmd($s, "PASS pw$user") if $r && $r =~ /^\+OK/;

        unless ($r && $r =~ /^\+OK maildrop has (\d+) messages/) {
            close $s;
            sleep(0.1);
            next;
        }

        my $total = $1;

        $r = _cmd($s, 'UIDL');
        my $list = ($r && $r =~ /^\+OK/) ? _multi($s) : undef;
        unless ($list) { close $s; next; }
        my %uidl = map { split / / } @$list;

        my (@dele, $dele_ok);
        $dele_ok = 0;

        for (1 .. 2) {
            last unless $total;
            my $m = 1 + int(rand($total));
            $r = _cmd($s, "RETR $m") or last;
            next unless $r =~ /^\+OK/;
            my $body = _multi($s) or last;
            my ($id) = map { /^X-Id: (\S+)/ ? $1 : () } @$body;
            print $log "SEEN $user $uidl{$m} $id\n" if $id && $uidl{$m};

            next unless $id && rand() < $self->{dele}
                && !grep { $_->[0] == $m } @dele;

            $r = _cmd($s, "DELE $m") or last;

            if ($r =~ /^\+OK/) {
                push @dele, [ $m, $id ];
                $dele_ok++;

            } elsif ($r =~ /may or may not/) {
                push @dele, [ $m, $id, 'maybe' ];
            }
        }

        $r = _cmd($s, 'QUIT') // '(none)';
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
            print $log "$kind $user $d->[1]\n";
        }

        print $log "SESSION $user $what\n";
        sleep($self->{pause});
    }
}

sub _deliveries {
    my ($self, $log) = @_;
    my $n = 0;
    my @users = $self->users;

    while (time() < $self->{stop_at}) {
        my $id = sprintf('d%05d', ++$n);
        my $user = $users[int(rand(@users))];
        my $acked = 0;

        for (1 .. 30) {
            my ($rc) = $self->pop3ext('deliver', '--id', $id, $user,
                { stdin => "Subject: $id\nX-Id: $id\n\nmail $id\n",
                timeout => 20 });
            if ($rc == 0) { $acked = 1; last; }
            sleep(0.3);
        }

        print $log(($acked ? 'ACK' : 'NOACK') . " $user $id\n");
        sleep($self->{pause});
    }
}

# the ledgers against the mailboxes; $redis->($key, @command) runs a
# command on the node that holds $key

sub verify {
    my ($self, $redis) = @_;

    my $x = $self->{x};
    my (%acked, %deleted, %maybe, %seen, %sessions, %have, %uidl_of);
    my ($conflicts, $doubled, $noack) = (0, 0, 0);

    for my $file (glob("$self->{dir}/*")) {
        open my $fh, '<', $file or die "$file: $!\n";
        while (<$fh>) {
            chomp;
            my ($kind, $user, $a, $b) = split / /;
            if ($kind eq 'ACK') { $acked{"$user $a"} = 1 }
            elsif ($kind eq 'NOACK') { $noack++ }
            elsif ($kind eq 'DEL') { $deleted{"$user $a"} = 1 }
            elsif ($kind eq 'MAYBE') { $maybe{"$user $a"} = 1 }
            elsif ($kind eq 'SESSION') { $sessions{$a}++ }
            elsif ($kind eq 'SEEN') {
                my $k = "$user $a";
                $conflicts++ if defined $seen{$k} && $seen{$k} ne $b;
                $seen{$k} //= $b;
            }
        }
    }

    my $locks = 0;

    for my $u ($self->users) {
        my $mbox = $x->mailbox_of($u);
        my $index = $x->mbox_key($mbox, 'INDEX');
        my $prefix = $x->mbox_key($mbox, 'MSG');

        my $entries = $redis->($index, 'LRANGE', $index, 0, -1);
        die "LRANGE $index: $entries\n" unless ref $entries eq 'ARRAY';

        for my $e (@$entries) {
            my ($uid) = split / /, $e;
            my $body = $redis->($index, 'GET', $prefix . $uid) // '';
            my ($id) = $body =~ /^X-Id: (\S+)/m;
            $id //= "(no id: $uid)";
            $doubled++ if $have{"$u $id"}++;
            $conflicts++ if defined $seen{"$u $uid"}
                && $seen{"$u $uid"} ne $id;
            $conflicts++ if defined $uidl_of{"$u $uid"};
            $uidl_of{"$u $uid"} = $id;
        }

        my $lock = $x->mbox_key($mbox, 'LOCK');
        $locks++ if $redis->($lock, 'EXISTS', $lock);
    }

    return {
        acked => scalar keys %acked,
        noack => $noack,
        deleted => scalar keys %deleted,
        maybe => scalar keys %maybe,
        have => scalar keys %have,
        sessions => \%sessions,
        lost => [ sort grep { !$have{$_} && !$deleted{$_} && !$maybe{$_} }
            keys %acked ],
        back => [ sort grep { $have{$_} } keys %deleted ],
        doubled => $doubled,
        conflicts => $conflicts,
        locks => $locks,
    };
}

# the standard checks of a verify() result: $TESTS tests

sub tests {
    my ($self, $r, $what) = @_;

    $what = $what ? "$what: " : '';

    Test::More::note(sprintf('%s%d deliveries acknowledged (%d given up), '
        . '%d deletions acknowledged, %d of unknown outcome, %d messages '
        . 'at the end; sessions by how their QUIT ended: %s', $what,
        $r->{acked}, $r->{noack}, $r->{deleted}, $r->{maybe}, $r->{have},
        join(', ', map { "$_ $r->{sessions}{$_}" }
            sort keys %{$r->{sessions}})));

    Test::More::cmp_ok($r->{acked}, '>', 30, "${what}the load delivered mail");
    Test::More::cmp_ok($r->{deleted}, '>', 3, "${what}the load deleted mail");
    Test::More::cmp_ok($r->{have}, '>', 10, "${what}mail is left to count");
    Test::More::is(scalar @{$r->{lost}}, 0,
        "${what}nothing acknowledged is lost")
        or Test::More::diag(Test::More::explain($r->{lost}));
    Test::More::is(scalar @{$r->{back}}, 0,
        "${what}nothing whose deletion was acknowledged is back")
        or Test::More::diag(Test::More::explain($r->{back}));
    Test::More::is($r->{doubled}, 0, "${what}nothing is doubled");
    Test::More::is($r->{conflicts}, 0, "${what}no UIDL names two messages");
    Test::More::is($r->{locks}, 0, "${what}no lock left after the lock TTL");
}

1;

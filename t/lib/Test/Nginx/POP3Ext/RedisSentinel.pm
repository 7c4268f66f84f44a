package Test::Nginx::POP3Ext::RedisSentinel;

# A Redis master, its replica and 3 Sentinels watching them, on loopback
# ports, as Test::Nginx::POP3Ext->redis_sentinel makes it:
#
#   my $g = $x->redis_sentinel();            # ports of 8450 ..
#   $g->master_addr;                         # '127.0.0.1:P', all agree
#   my $new = $g->failover();                # SENTINEL FAILOVER, waited
#   $g->master;                              # the Redis object now master
#   $g->wait_replica($old);                  # the old one replicates it
#
# Ready when every sentinel reports the same master, knows the other two
# sentinels and sees the replica.  Down-after 1000 ms, failover timeout
# 10 s.  With tls => {...} every one of them speaks only TLS: the
# servers, their replication, the sentinels, and the sentinels' own
# connections to the servers and to each other.

use strict;
use warnings;

use Time::HiRes qw/ time sleep /;

use Test::Nginx ();
use Test::Nginx::POP3Ext::Redis;


# new($ext, base => 8450, name => 'p3x', sentinels => 3, quorum => 2,
# tls => undef): not started; tls => { cert, key, ca, client_cert,
# client_key, auth_clients } for servers and sentinels that speak only
# TLS (the certificate must serve as server and client, make_signed's
# both => 1: each is a client of the others; client_cert and client_key
# are what the harness' redis-cli presents)

sub new {
    my ($class, $ext, %o) = @_;

    my $base = $o{base} // 8450;
    my $self = bless {
        ext => $ext,
        name => $o{name} // 'p3x',
        timeout => $o{timeout} // 60,
    }, $class;

    my $tls = $o{tls};

    # the master with TLS replication too: after a failover it is a
    # replica of the other
    my $master = Test::Nginx::POP3Ext::Redis->new($ext, num => $base,
        name => "sentinel-master-$base",
        ($tls ? (tls => { %$tls, replication => 1 }) : ()));
    my $replica = Test::Nginx::POP3Ext::Redis->new($ext, num => $base + 1,
        name => "sentinel-replica-$base", replicaof => $master->addr,
        ($tls ? (tls => $tls) : ()));
    $self->{redis} = [ $master, $replica ];

    my $n = $o{sentinels} // 3;
    my $quorum = $o{quorum} // 2;
    for my $i (1 .. $n) {
        my $num = $base + 1 + $i;
        push @{$self->{sentinels}}, Test::Nginx::POP3Ext::Redis->new($ext,
            num => $num, name => "sentinel-$num",
            ($tls ? (tls => $tls) : ()), sentinel => [
                "sentinel monitor $self->{name} 127.0.0.1 "
                    . $master->port . " $quorum",
                "sentinel down-after-milliseconds $self->{name} 1000",
                "sentinel failover-timeout $self->{name} 10000",
                "sentinel parallel-syncs $self->{name} 1",
            ]);
    }

    return $self;
}

sub name { $_[0]{name} }
sub sentinels { @{$_[0]{sentinels}} }
sub servers { @{$_[0]{redis}} }

# start master, replica (waited for until in sync) and sentinels (waited
# for until they agree); $self

sub start {
    my ($self) = @_;

    my ($master, $replica) = @{$self->{redis}};
    $master->start();
    $replica->start();

    $self->wait_for(sub {
        ($replica->info('replication')->{master_link_status} // '') eq 'up'
    }) or die "replica not in sync with the master\n";

    $_->start() for @{$self->{sentinels}};

    $self->wait_agree($master->addr)
        or die "sentinels do not agree on " . $master->addr . ":\n"
            . $self->report() . "\n";

    return $self;
}

sub wait_for {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time() + ($timeout // $self->{timeout});
    while (1) {
        my $r = eval { $cond->() };
        return $r if $r;
        return undef if time() > $deadline;
        sleep(0.1);
    }
}

# the master's address as one sentinel reports it

sub reported_by {
    my ($self, $sentinel) = @_;
    my $r = $sentinel->cmd_data('SENTINEL', 'get-master-addr-by-name',
        $self->{name});
    return ref $r eq 'ARRAY' ? "$r->[0]:$r->[1]" : undef;
}

# the master's address when every sentinel reports the same, else undef

sub master_addr {
    my ($self) = @_;
    my %a = map { ($self->reported_by($_) // 'none') => 1 }
        @{$self->{sentinels}};
    my @a = keys %a;
    return @a == 1 && $a[0] ne 'none' ? $a[0] : undef;
}

# SENTINEL MASTER as a hash, from one sentinel

sub _master_state {
    my ($self, $sentinel) = @_;
    my $r = $sentinel->cmd_data('SENTINEL', 'MASTER', $self->{name});
    return ref $r eq 'ARRAY' ? { @$r } : {};
}

# whether every sentinel reports $addr, sees it as a master that is up,
# knows the other sentinels and sees a replica

sub agree {
    my ($self, $addr) = @_;
    my $others = @{$self->{sentinels}} - 1;
    for my $s (@{$self->{sentinels}}) {
        return 0 unless ($self->reported_by($s) // '') eq $addr;
        my $m = $self->_master_state($s);
        return 0 unless ($m->{flags} // '') eq 'master'
            && ($m->{'num-other-sentinels'} // 0) >= $others
            && ($m->{'num-slaves'} // 0) >= 1;
    }
    return 1;
}

sub wait_agree {
    my ($self, $addr, $timeout) = @_;
    return $self->wait_for(sub { $self->agree($addr) }, $timeout);
}

# the Redis object at the address the sentinels report (undef if they do
# not agree)

sub master {
    my ($self) = @_;
    my $a = $self->master_addr() // return undef;
    my ($m) = grep { $_->addr eq $a } @{$self->{redis}};
    return $m;
}

sub replica {
    my ($self) = @_;
    my $m = $self->master() or return undef;
    my ($r) = grep { $_ != $m } @{$self->{redis}};
    return $r;
}

# SENTINEL FAILOVER through the first sentinel, and wait until every
# sentinel reports another master, which says it is one (ROLE) and sees
# its replica; the new master's address (dies on timeout)

sub failover {
    my ($self, $timeout) = @_;

    my $old = $self->master_addr()
        // die "sentinels do not agree before the failover:\n"
            . $self->report() . "\n";

    my $r = $self->{sentinels}[0]->cmd_data('SENTINEL', 'FAILOVER',
        $self->{name});
    die "SENTINEL FAILOVER refused: $r\n" unless $r;

    my $new = $self->wait_for(sub {
        my $a = $self->master_addr();
        return undef unless defined $a && $a ne $old;
        my $m = $self->master() or return undef;
        return undef unless ($m->role // '') eq 'master';
        return $self->agree($a) ? $a : undef;
    }, $timeout) // die "no new master reported after the failover:\n"
        . $self->report() . "\n";

    return $new;
}

# wait until $server replicates the master the sentinels agree on: INFO
# says it is a replica of that address, its link is up and no sync is in
# progress.  After SENTINEL FAILOVER the old master stays a master until
# the sentinels convert it (about 8 s later): until then a write on the
# new master has no replica to confirm it (wait=N).  True, or undef on
# timeout

sub wait_replica {
    my ($self, $server, $timeout) = @_;
    return $self->wait_for(sub {
        my $m = $self->master_addr() // return 0;
        my $i = $server->info('replication');
        ($i->{role} // '') eq 'slave'
            && ($i->{master_host} // '') . ':' . ($i->{master_port} // '')
                eq $m
            && ($i->{master_link_status} // '') eq 'up'
            && !($i->{master_sync_in_progress} // 1);
    }, $timeout);
}

sub report {
    my ($self) = @_;
    return join("\n", map {
        my $s = $_;
        my $m = eval { $self->_master_state($s) } || {};
        $s->name . ': ' . ($self->reported_by($s) // '?')
            . ' flags=' . ($m->{flags} // '?')
            . ' sentinels=' . ($m->{'num-other-sentinels'} // '?')
            . ' replicas=' . ($m->{'num-slaves'} // '?')
    } @{$self->{sentinels}});
}

sub stop {
    my ($self) = @_;
    $_->stop('TERM') for @{$self->{sentinels}}, @{$self->{redis}};
    return $self;
}


1;

package Test::Nginx::POP3Ext::RedisCluster;

# A Redis Cluster of 3 masters and 3 replicas on loopback ports, as
# Test::Nginx::POP3Ext->redis_cluster makes it:
#
#   my $c = $x->redis_cluster();              # ports of 8400 ..
#   my $m = $c->master_of('{alice}:index');   # a Redis object
#   $c->cmd('{alice}:index', 'RPUSH', '{alice}:index', 'x');
#   $c->kill_master($m);
#   my $new = $c->wait_failover($m);          # its replica, promoted
#   $c->reshard($from, $to, 100);             # 100 slots moved
#
# Each node is a Test::Nginx::POP3Ext::Redis (cluster-enabled, AOF on,
# node timeout 1500 ms) with its bus port (port + 10000) free; the cluster
# is made by redis-cli --cluster create and is ready when every node says
# cluster_state:ok and sees all 16384 slots served.

use strict;
use warnings;

use Time::HiRes qw/ time sleep /;

use Test::Nginx ();
use Test::Nginx::POP3Ext::Redis;

our $SLOTS = 16384;


# new($ext, base => 8400, masters => 3, replicas => 1, node_timeout =>
# 1500): not started

sub new {
    my ($class, $ext, %o) = @_;

    my $self = bless {
        ext => $ext,
        masters => $o{masters} // 3,
        replicas => $o{replicas} // 1,
        timeout => $o{timeout} // 60,
    }, $class;

    my $n = $self->{masters} * (1 + $self->{replicas});
    my $num = $o{base} // 8400;

    for (1 .. $n) {
        $num = $ext->port_pair($num, 10000);
        push @{$self->{nodes}}, Test::Nginx::POP3Ext::Redis->new($ext,
            num => $num, name => "cluster-$num", cluster => 1, aof => 1,
            node_timeout => $o{node_timeout} // 1500);
        $num++;
    }

    return $self;
}

sub nodes { @{$_[0]{nodes}} }

# the nodes running now

sub live { grep { $_->running } @{$_[0]{nodes}} }

sub node_by_port {
    my ($self, $port) = @_;
    my ($n) = grep { $_->port == $port } @{$self->{nodes}};
    return $n;
}

# start the nodes, create the cluster, wait until it is ready; $self

sub start {
    my ($self) = @_;

    $_->start() for @{$self->{nodes}};

    my ($rc, $out, $err) = $self->{nodes}[0]->cli('--cluster', 'create',
        (map { $_->addr } @{$self->{nodes}}),
        '--cluster-replicas', $self->{replicas}, '--cluster-yes');
    die "redis-cli --cluster create failed ($rc): $err$out\n"
        if $rc != 0 || $out !~ /All 16384 slots covered/;

    $self->wait_ok()
        or die "cluster not ready within $self->{timeout} s:\n"
            . $self->state_report() . "\n";

    # every replica attached to its master
    $self->wait_for(sub {
        my @m = $self->masters;
        @m == $self->{masters}
            && !grep { ($_->info('replication')->{connected_slaves} // 0)
                < $self->{replicas} } @m;
    }) or die "cluster replicas not attached:\n" . $self->state_report()
        . "\n";

    return $self;
}

# call $cond every 0.1 s until it is true or $timeout s passed

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

# CLUSTER INFO of a node as a hash

sub cluster_info {
    my ($self, $node) = @_;
    my $r = $node->cmd('CLUSTER', 'INFO');
    return {} if ref $r || !defined $r;
    return { map { /^([^:]+):(.*?)\r?$/ ? ($1, $2) : () } split /\n/, $r };
}

# whether every live node says cluster_state:ok and all slots ok

sub is_ok {
    my ($self) = @_;
    for my $n ($self->live) {
        my $i = $self->cluster_info($n);
        return 0 unless ($i->{cluster_state} // '') eq 'ok'
            && ($i->{cluster_slots_ok} // 0) == $SLOTS;
    }
    return 1;
}

sub wait_ok {
    my ($self, $timeout) = @_;
    return $self->wait_for(sub { $self->is_ok }, $timeout);
}

# one line per node (state, slots, role), and with $logs the last lines of
# each node's log: for diag() when something did not happen

sub state_report {
    my ($self, $logs) = @_;
    return join("\n", map {
        my $n = $_;
        my $i = eval { $n->running ? $self->cluster_info($n) : {} } || {};
        my $role = eval { $n->running ? $n->role : undef };
        my $l = $n->name . ': ' . ($n->running ? 'running' : 'down')
            . ' state=' . ($i->{cluster_state} // '?')
            . ' slots_ok=' . ($i->{cluster_slots_ok} // '?')
            . ' role=' . ($role // '?');
        if ($logs) {
            my @log = split /\n/, $n->log;
            @log = @log[-8 .. -1] if @log > 8;
            $l .= join('', map { "\n    $_" } @log);
        }
        $l;
    } @{$self->{nodes}});
}

# the node's id (CLUSTER MYID)

sub node_id {
    my ($self, $node) = @_;
    my $id = $node->cmd('CLUSTER', 'MYID');
    die $node->name . ": CLUSTER MYID failed: $id\n" unless $id;
    return $id;
}

# the masters serving slots now, as the first live node sees them
# (CLUSTER SLOTS): a list of nodes

sub masters {
    my ($self) = @_;
    my %seen;
    return grep { defined && !$seen{$_->port}++ }
        map { $self->node_by_port($_->[2][1]) } @{$self->_slots()};
}

# the replicas of the running masters

sub replicas {
    my ($self) = @_;
    my %m = map { $_->port => 1 } $self->masters;
    return grep { !$m{$_->port} } $self->live;
}

sub _slots {
    my ($self) = @_;
    for my $n ($self->live) {
        my $r = eval { $n->cmd('CLUSTER', 'SLOTS') };
        return $r if ref $r eq 'ARRAY' && @$r;
    }
    die "no live cluster node answers CLUSTER SLOTS\n";
}

# the hash slot of a key

sub slot_of {
    my ($self, $key) = @_;
    my ($n) = $self->live;
    my $s = $n->cmd('CLUSTER', 'KEYSLOT', $key);
    die "CLUSTER KEYSLOT failed: $s\n" if ref $s;
    return $s;
}

# the master node serving the key's slot now

sub master_of {
    my ($self, $key) = @_;
    my $slot = $self->slot_of($key);
    for my $range (@{$self->_slots()}) {
        my ($from, $to, $master) = @$range;
        return $self->node_by_port($master->[1])
            if $slot >= $from && $slot <= $to;
    }
    return undef;
}

# how many slots a node serves

sub slot_count {
    my ($self, $node) = @_;
    my $n = 0;
    for my $range (@{$self->_slots()}) {
        $n += $range->[1] - $range->[0] + 1
            if $range->[2][1] == $node->port;
    }
    return $n;
}

# a command about $key, sent to its master; MOVED and ASK are followed
# (a few times); the reply

sub cmd {
    my ($self, $key, @cmd) = @_;

    my $node = $self->master_of($key);
    my $asking;

    for (1 .. 5) {
        my @r = $asking ? $node->pipeline([ 'ASKING' ], [ @cmd ])
            : ($node->cmd(@cmd));
        my $r = $r[-1];
        return $r unless ref $r && !$r && "$r" =~ /^(MOVED|ASK) \d+ \S+:(\d+)/;
        $asking = $1 eq 'ASK';
        $node = $self->node_by_port($2) or return $r;
    }

    die "cluster: too many redirections for $key\n";
}

# kill -9 a master (the first slot it served is noted for wait_failover)

sub kill_master {
    my ($self, $node) = @_;
    for my $range (@{$self->_slots()}) {
        next unless $range->[2][1] == $node->port;
        $self->{slot_of_failed}{$node->port} = $range->[0];
        last;
    }
    $node->stop('KILL');
    return $self;
}

# after kill_master($old): wait until another live node serves the slots
# $old served and every live node says the cluster is ok; the new master
# (undef on timeout)

sub wait_failover {
    my ($self, $old, $timeout) = @_;
    my $slot = $self->{slot_of_failed}{$old->port};
    die 'wait_failover: ' . $old->name . " was not killed by kill_master\n"
        unless defined $slot;
    return $self->wait_for(sub {
        for my $range (@{$self->_slots()}) {
            my ($from, $to, $master) = @$range;
            next unless $slot >= $from && $slot <= $to;
            my $n = $self->node_by_port($master->[1]);
            return $n && $n->port != $old->port && $n->running
                && $self->is_ok ? $n : undef;
        }
        return undef;
    }, $timeout);
}

# move $n slots from master $from to master $to with redis-cli --cluster
# reshard, and wait until the cluster is ok; the number of slots $to
# gained

sub reshard {
    my ($self, $from, $to, $n) = @_;

    my $before = $self->slot_count($to);

    my ($rc, $out, $err) = $to->cli('--cluster', 'reshard', $to->addr,
        '--cluster-from', $self->node_id($from),
        '--cluster-to', $self->node_id($to),
        '--cluster-slots', $n, '--cluster-yes');
    die "redis-cli --cluster reshard failed ($rc): $err$out\n" if $rc != 0;

    $self->wait_ok() or die "cluster not ok after the reshard:\n"
        . $self->state_report() . "\n";

    return $self->slot_count($to) - $before;
}

sub stop {
    my ($self) = @_;
    $_->stop('TERM') for @{$self->{nodes}};
    return $self;
}


1;

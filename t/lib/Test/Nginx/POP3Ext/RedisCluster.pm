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
# 1500, aof => 1, tls => undef): not started; aof => 0 for nodes that keep
# nothing on disk but nodes.conf (the test's Redis of
# TEST_P3X_REDIS=cluster); tls => { cert, key, ca, client_cert,
# client_key, auth_clients } for nodes that speak only TLS, their bus
# included (the certificate must serve as server and client: make_signed's
# both => 1)

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
            num => $num, name => "cluster-$num", cluster => 1,
            aof => $o{aof} // 1,
            ($o{tls} ? (tls => $o{tls}) : ()),
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

    # and done with the initial sync: a failover test that kills a
    # master before its replica loaded the RDB promotes an empty node
    $self->wait_for(sub {
        !grep {
            my $i = $_->info('replication');
            ($i->{master_link_status} // '') ne 'up'
                || ($i->{master_sync_in_progress} // 1) != 0
        } $self->replicas;
    }) or die "cluster replicas not in sync:\n" . $self->state_report()
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
        my $r = eval { $n->cmd_data('CLUSTER', 'SLOTS') };
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


# ---- any command, routed: the harness' redis_cmd and redis_pipeline when
# the test's Redis is this cluster (TEST_P3X_REDIS=cluster) ------------------

# the hash slot of a key, computed here as Redis Cluster does: CRC16
# (XMODEM) of the key, or of its {hash tag} when the first "{" has a "}"
# after it with something between, modulo 16384

my @CRC16 = map {
    my $c = $_ << 8;
    $c = ($c & 0x8000 ? ($c << 1) ^ 0x1021 : $c << 1) & 0xffff for 1 .. 8;
    $c;
} 0 .. 255;

sub hash_slot {
    my ($self, $key) = @_;
    utf8::encode($key) if utf8::is_utf8($key);
    my $open = index($key, '{');
    if ($open >= 0) {
        my $close = index($key, '}', $open + 1);
        $key = substr($key, $open + 1, $close - $open - 1)
            if $close > $open + 1;
    }
    my $crc = 0;
    $crc = (($crc << 8) & 0xffff) ^ $CRC16[(($crc >> 8) ^ $_) & 0xff]
        for unpack('C*', $key);
    return $crc % $SLOTS;
}

# scripts: the keys are the numkeys arguments after the number
our %SCRIPTS = map { $_ => 1 } qw/ EVAL EVALSHA EVAL_RO EVALSHA_RO FCALL
    FCALL_RO /;

# keyless, but about the node that answers: one node is asked
our %ONE_NODE = map { $_ => 1 } qw/ CLUSTER COMMAND ECHO TIME READONLY
    READWRITE ASKING HELLO LASTSAVE ROLE /;

# state of one connection, which the router does not keep (a connection
# per node): refused
our %REFUSED = map { $_ => 1 } qw/ MULTI EXEC DISCARD WATCH UNWATCH SELECT
    SUBSCRIBE PSUBSCRIBE SSUBSCRIBE MONITOR AUTH /;

# keyless commands whose replies from the masters are added up
our %SUMMED = map { $_ => 1 } ('DBSIZE', 'PUBLISH', 'CLIENT KILL');

# what Redis says about a command (COMMAND INFO, asked once): its key
# positions, whether they move (movablekeys) or depend on a subcommand;
# undef for a command Redis does not know

sub _cmd_info {
    my ($self, $name) = @_;
    return $self->{cmd_info}{$name} if exists $self->{cmd_info}{$name};
    my $r = $self->_any_node->cmd('COMMAND', 'INFO', $name);
    my $i = ref $r eq 'ARRAY' && ref $r->[0] eq 'ARRAY' ? $r->[0] : undef;
    return $self->{cmd_info}{$name} = $i && {
        first => $i->[3], last => $i->[4], step => $i->[5] || 1,
        ask => (grep { lc $_ eq 'movablekeys' } @{$i->[2] || []})
            || (ref $i->[9] eq 'ARRAY' && @{$i->[9]}) ? 1 : 0,
    };
}

sub _any_node {
    my ($self) = @_;
    my ($n) = $self->live or die "cluster: no node is running\n";
    return $n;
}

# the keys of each command (array references; empty: keyless; undef: a
# command Redis does not know): scripts read here, the usual positions
# from COMMAND INFO, the others (movable keys, subcommands) asked with
# COMMAND GETKEYS, all of those in one round trip

sub keys_of {
    my ($self, @cmds) = @_;

    my (@keys, @ask);

    for my $i (0 .. $#cmds) {
        my @c = @{$cmds[$i]};
        my $name = uc $c[0];

        if ($SCRIPTS{$name}) {
            my $n = $c[2] // 0;
            $n = 0 unless $n =~ /^\d+\z/;
            my $last = 2 + $n < $#c ? 2 + $n : $#c;
            $keys[$i] = [ @c[3 .. $last] ];
            next;
        }

        my $info = $self->_cmd_info($name);
        if (!$info) {
            $keys[$i] = undef;
        } elsif ($info->{ask}) {
            push @ask, $i;
        } else {
            my $last = $info->{last} < 0 ? @c + $info->{last} : $info->{last};
            my @k;
            for (my $p = $info->{first}; $p > 0 && $p <= $last && $p <= $#c;
                $p += $info->{step})
            {
                push @k, $c[$p];
            }
            $keys[$i] = \@k;
        }
    }

    if (@ask) {
        my @r = $self->_any_node->pipeline(map {
            [ 'COMMAND', 'GETKEYS', @{$cmds[$_]} ] } @ask);
        # an error: no key arguments (or arguments Redis will refuse)
        $keys[$ask[$_]] = ref $r[$_] eq 'ARRAY' ? $r[$_] : [] for 0 .. $#ask;
    }

    return @keys;
}

# one command, wherever it belongs: a command with keys to the master of
# their slot (cmd: MOVED and ASK followed); DEL, UNLINK, EXISTS, TOUCH and
# MGET with keys in several slots key by key (counts added, values in
# order), other commands with keys in several slots to the first key's
# master (Redis answers CROSSSLOT); a keyless command to every master
# (broadcast), or to one node (%ONE_NODE, and commands Redis does not
# know, so that it says so); the reply

sub command {
    my ($self, @cmd) = @_;
    my ($keys) = $self->keys_of([ @cmd ]);
    return $self->_command($keys, @cmd);
}

sub _command {
    my ($self, $keys, @cmd) = @_;

    my $name = uc $cmd[0];

    die "cluster: $name is not routed (it needs one connection, the router"
        . " has one per node)\n" if $REFUSED{$name};

    return $self->_any_master->cmd(@cmd) if !defined $keys || $ONE_NODE{$name};
    return $self->broadcast(@cmd) unless @$keys;
    return $self->cmd($keys->[0], @cmd) if $self->_one_slot($keys);

    if ($name =~ /^(?:DEL|UNLINK|EXISTS|TOUCH)\z/) {
        my $n = 0;
        for my $k (@$keys) {
            my $r = $self->cmd($k, $name, $k);
            return $r if _is_error($r);
            $n += $r;
        }
        return $n;
    }

    return [ map { $self->cmd($_, 'GET', $_) } @$keys ] if $name eq 'MGET';

    return $self->cmd($keys->[0], @cmd);
}

sub _any_master {
    my ($self) = @_;
    my ($m) = $self->masters;
    return $m;
}

sub _one_slot {
    my ($self, $keys) = @_;
    my $slot = $self->hash_slot($keys->[0]);
    return !grep { $self->hash_slot($_) != $slot } @$keys;
}

sub _is_error {
    my ($r) = @_;
    return ref $r && ref $r ne 'ARRAY' && !$r;
}

# a keyless command sent to every master, the replies combined: the first
# error if one failed; KEYS: all keys; SCAN 0: a whole scan of every
# master, as one reply ('0', [keys]); SCRIPT EXISTS: 1 where every master
# has the script; DBSIZE, PUBLISH, CLIENT KILL: the sum; any other: the
# reply when all masters gave the same, else it dies (ask the masters one
# by one instead)

sub broadcast {
    my ($self, @cmd) = @_;

    my $name = uc $cmd[0];
    my $sub = uc($cmd[1] // '');
    my @masters = $self->masters;

    if ($name eq 'SCAN') {
        die "cluster: SCAN is routed from cursor 0 only (one call scans"
            . " every master)\n" unless $cmd[1] eq '0';
        my @all;
        for my $m (@masters) {
            my $cursor = '0';
            do {
                my $r = $m->cmd('SCAN', $cursor, @cmd[2 .. $#cmd]);
                return $r if _is_error($r);
                ($cursor, my $k) = @$r;
                push @all, @$k;
            } while ($cursor ne '0');
        }
        return [ '0', \@all ];
    }

    my @r = map { $_->cmd(@cmd) } @masters;

    for (@r) {
        return $_ if _is_error($_);
    }

    return [ map { @$_ } @r ] if $name eq 'KEYS';

    if ($name eq 'SCRIPT' && $sub eq 'EXISTS') {
        return [ map { my $i = $_; (grep { !$_->[$i] } @r) ? 0 : 1 }
            0 .. $#{$r[0]} ];
    }

    my $first = _canon($r[0]);
    return $r[0] unless grep { _canon($_) ne $first } @r;

    if ($SUMMED{$name} || $SUMMED{"$name $sub"}) {
        my $n = 0;
        $n += $_ for @r;
        return $n;
    }

    die "cluster: the masters answer \"@cmd[0 .. ($#cmd < 2 ? $#cmd : 2)]\""
        . " differently; ask them one by one (the masters of"
        . " test_cluster), or call needs_standalone_redis\n";
}

sub _canon {
    my ($v) = @_;
    return 'u' unless defined $v;
    return '[' . join(',', map { _canon($_) } @$v) . ']' if ref $v eq 'ARRAY';
    return "s" . length("$v") . ":$v";
}

# several commands, each where it belongs; the replies in the order of
# the commands.  Commands with keys of one slot are sent in one pipeline
# per master, in their order; a keyless or cross-slot command is sent
# alone (as command does) after those before it and before those after
# it; a reply MOVED or ASK (a slot being moved) is asked again through cmd

sub pipeline {
    my ($self, @cmds) = @_;

    my @keys = $self->keys_of(@cmds);
    my (@replies, @batch);

    for my $i (0 .. $#cmds) {
        my $k = $keys[$i];
        my $name = uc $cmds[$i][0];
        if (defined $k && @$k && !$ONE_NODE{$name} && !$REFUSED{$name}
            && $self->_one_slot($k))
        {
            push @batch, $i;
            next;
        }
        $self->_pipeline_batch(\@cmds, \@keys, \@replies, splice(@batch));
        $replies[$i] = $self->_command($k, @{$cmds[$i]});
    }
    $self->_pipeline_batch(\@cmds, \@keys, \@replies, @batch);

    return @replies;
}

sub _pipeline_batch {
    my ($self, $cmds, $keys, $replies, @idx) = @_;

    return unless @idx;

    # slot -> master, from one CLUSTER SLOTS
    my @map;
    for my $range (@{$self->_slots()}) {
        my $n = $self->node_by_port($range->[2][1]);
        $map[$_] = $n for $range->[0] .. $range->[1];
    }

    my (%by, @ports);
    for my $i (@idx) {
        my $slot = $self->hash_slot($keys->[$i][0]);
        my $n = $map[$slot] or die "cluster: no master serves slot $slot\n";
        push @ports, $n->port unless $by{$n->port};
        push @{$by{$n->port}}, $i;
    }

    for my $port (@ports) {
        my @i = @{$by{$port}};
        @$replies[@i] = $self->node_by_port($port)->pipeline(
            map { $cmds->[$_] } @i);
    }

    for my $i (@idx) {
        my $r = $replies->[$i];
        next unless _is_error($r) && "$r" =~ /^(?:MOVED|ASK) /;
        $replies->[$i] = $self->cmd($keys->[$i][0], @{$cmds->[$i]});
    }
}

# the nodes' Redis.pm connections dropped (made again on the next command)

sub close_clients {
    my ($self) = @_;
    $_->close_client() for @{$self->{nodes}};
    return $self;
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
    my ($self, $sig) = @_;
    $_->stop($sig // 'TERM') for @{$self->{nodes}};
    return $self;
}

# after stop: the nodes started again, the same cluster (nodes.conf), and
# waited for as start does (only the data that AOF kept is back)

sub start_again {
    my ($self) = @_;
    $_->start() for grep { !$_->running } @{$self->{nodes}};
    $self->wait_ok()
        or die "cluster not ready again within $self->{timeout} s:\n"
            . $self->state_report() . "\n";
    return $self;
}


1;

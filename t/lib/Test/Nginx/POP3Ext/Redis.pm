package Test::Nginx::POP3Ext::Redis;

# One redis-server (or redis-sentinel) of a test, on a loopback port, with
# its own directory under the test directory, and the faults a test
# injects into it.  Made by Test::Nginx::POP3Ext (run_redis, redis_server,
# redis_tls, redis_cluster, redis_sentinel), which stops it at the end.
#
#   my $r = $x->redis_server(8380, aof => 1);
#   $r->cmd('SET', 'k', 'v');            # 'OK', or a RedisError object
#   $r->kill9; $r->start;                # same port, same data directory
#   $r->pause; ...; $r->resume;          # SIGSTOP / SIGCONT
#   $r->debug_sleep(3);                  # DEBUG SLEEP 3, reply not awaited
#
# Commands go through Redis.pm (libredis-perl) with bounded timeouts; an
# error reply is returned as a Test::Nginx::POP3Ext::RedisError object
# (false, prints as its text), so that it never passes for a value; a
# connection that fails dies.  A TLS instance is spoken to through
# redis-cli --tls.

use strict;
use warnings;

use File::Copy qw/ copy /;
use File::Path qw/ make_path rmtree /;
use IO::Select;
use IO::Socket::INET;
use Scalar::Util qw/ weaken /;
use Time::HiRes qw/ time sleep /;

use Test::Nginx ();

our $SERVER = $ENV{TEST_NGINX_REDIS} || 'redis-server';
our $CLI = 'redis-cli';
our $SENTINEL = 'redis-sentinel';

# seconds: connect, and any one command or pipeline
our $CONNECT_TIMEOUT = 5;
our $TIMEOUT = 60;


# new($ext, %o): not started.  num => placeholder number (port(num));
# port => a real port instead; name => directory name (default
# "redis-NUM"); aof => 1 (appendonly yes, fsync everysec); save => 1 (RDB
# snapshots on Redis' default schedule; off by default: SAVE still works);
# password => requirepass; cluster => 1 (cluster-enabled, nodes.conf);
# replicaof => 'host:port'; tls => { cert, key, ca, auth_clients,
# client_cert, client_key, replication } (the port is the TLS port,
# plaintext off; with cluster, replicaof or replication => 1 the bus and
# replication too, the certificate then also the client's: a master that
# may become a replica; client_cert and client_key are what cli()
# presents); sentinel => [ lines of sentinel.conf ] (runs redis-sentinel;
# with tls, TLS only, and TLS to the servers and the other sentinels);
# args => [ more redis-server arguments ].

sub new {
    my ($class, $ext, %o) = @_;

    my $self = bless { %o }, $class;
    $self->{ext} = $ext;
    weaken($self->{ext});

    $self->{port} //= Test::Nginx::port($o{num});
    $self->{name} //= 'redis-' . ($o{num} // $self->{port});
    $self->{dir} = $ext->testdir() . "/$self->{name}";
    make_path($self->{dir});

    return $self;
}

sub port { $_[0]{port} }
sub addr { '127.0.0.1:' . $_[0]{port} }

# the address for a configuration that write_file_expand() expands: it
# rewrites "127.0.0.1:8nnn" to port(8nnn), which is another port when the
# real one is not 8nnn itself; a placeholder expands to this port
sub conf_addr {
    defined $_[0]{num} ? "127.0.0.1:%%PORT_$_[0]{num}%%" : $_[0]->addr;
}
sub dir { $_[0]{dir} }
sub pid { $_[0]{pid} }
sub name { $_[0]{name} }
sub log_file { "$_[0]{dir}/redis.log" }

sub log {
    my ($self) = @_;
    open my $fh, '<', $self->log_file or return '';
    local $/;
    my $l = <$fh>;
    return $l // '';
}

sub _argv {
    my ($self) = @_;

    my $d = $self->{dir};

    if ($self->{sentinel}) {
        my $conf = "$d/sentinel.conf";
        unless (-e $conf) {
            open my $fh, '>', $conf or die "can't create $conf: $!\n";
            my @port = ("port $self->{port}");
            if (my $tls = $self->{tls}) {
                # TLS only, also to the servers it watches and to the
                # other sentinels (tls-replication), with its certificate
                # as the client's there
                @port = ("port 0", "tls-port $self->{port}",
                    "tls-cert-file $tls->{cert}",
                    "tls-key-file $tls->{key}",
                    "tls-ca-cert-file $tls->{ca}",
                    "tls-replication yes",
                    (defined $tls->{auth_clients}
                        ? "tls-auth-clients $tls->{auth_clients}" : ()));
            }
            print $fh join("\n", "bind 127.0.0.1", @port,
                "dir $d", "logfile $d/redis.log", "protected-mode no",
                @{$self->{sentinel}}), "\n";
            close $fh;
        }
        return ($self->{ext}->find_prog($SENTINEL) // $SENTINEL, $conf);
    }

    my @a = ($self->{ext}->find_prog($SERVER) // $SERVER,
        '--bind', '127.0.0.1', '--dir', $d, '--daemonize', 'no',
        '--logfile', "$d/redis.log", '--protected-mode', 'no',
        '--appendonly', $self->{aof} ? 'yes' : 'no',
        '--appendfsync', 'everysec');
    push @a, '--save', '' unless $self->{save};
    # a replica's first sync at once, not after the default 5 s: a
    # replica that has not synced cannot confirm wait=N nor fail over
    push @a, '--repl-diskless-sync-delay', 0;
    # Redis 7 refuses DEBUG unless told (debug_sleep needs it)
    push @a, '--enable-debug-command', 'local' if $self->server_major >= 7;

    if (my $tls = $self->{tls}) {
        push @a, '--port', 0, '--tls-port', $self->{port},
            '--tls-cert-file', $tls->{cert}, '--tls-key-file', $tls->{key},
            '--tls-ca-cert-file', $tls->{ca};
        push @a, '--tls-auth-clients', $tls->{auth_clients}
            if defined $tls->{auth_clients};
        # a cluster's bus and replication over TLS too, with the node's
        # certificate as the client's
        push @a, '--tls-cluster', 'yes' if $self->{cluster};
        push @a, '--tls-replication', 'yes'
            if $self->{cluster} || $self->{replicaof} || $tls->{replication};
    } else {
        push @a, '--port', $self->{port};
    }

    push @a, '--requirepass', $self->{password}
        if defined $self->{password};
    push @a, '--masterauth', $self->{password}
        if defined $self->{password} && $self->{replicaof};
    push @a, '--replicaof', split(/:/, $self->{replicaof})
        if $self->{replicaof};
    push @a, '--cluster-enabled', 'yes', '--cluster-config-file',
        "$d/nodes.conf", '--cluster-node-timeout',
        $self->{node_timeout} // 1500
        if $self->{cluster};
    push @a, @{$self->{args} || []};

    return @a;
}

# the major version of redis-server

my $MAJOR;

sub server_major {
    my ($self) = @_;
    return $MAJOR if defined $MAJOR;
    my $bin = $self->{ext}->find_prog($SERVER) // $SERVER;
    my $v = `$bin --version 2>/dev/null` // '';
    return $MAJOR = $v =~ /\bv=(\d+)\./ ? $1 : 0;
}

# start (again: the same port, the same directory and data); waits until
# it answers PING (10 s), dies if it does not

sub start {
    my ($self) = @_;

    die "$self->{name} already running\n" if $self->running;
    $self->close_client();

    my $ext = $self->{ext};
    $self->{pid} = $ext->spawn("$self->{dir}/redis.out", $self->_argv);
    $ext->_register_proc($self);

    my $deadline = time() + 10;
    while (1) {
        my $r = eval { $self->ping };
        last if defined $r && $r eq 'PONG';
        $self->close_client();
        unless ($self->running) {
            delete $self->{pid};
            die "$self->{name} exited on start:\n" . $self->log
                . $ext->_slurp("$self->{dir}/redis.out") . "\n";
        }
        die "$self->{name} did not answer PING within 10 s\n"
            if time() > $deadline;
        sleep(0.05);
    }

    return $self;
}

sub running {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    return !defined Test::Nginx::POP3Ext::reap($pid, 0);
}

# stop with a signal (TERM by default: Redis saves if it is set to, and
# exits; KILL: nothing saved, clients see a reset); waits for the exit

sub stop {
    my ($self, $sig) = @_;
    $self->close_client();
    close $_ for @{delete $self->{raw} || []};
    my $pid = delete $self->{pid} or return $self;
    kill 'CONT', $pid if $self->{paused};
    delete $self->{paused};
    Test::Nginx::POP3Ext::stop_pid($pid, $sig // 'TERM', 10);
    return $self;
}

sub kill9 { $_[0]->stop('KILL') }

# kill -9 and start again on the same port with the same directory

sub restart {
    my ($self, $sig) = @_;
    $self->stop($sig // 'KILL');
    return $self->start();
}

sub pause {
    my ($self) = @_;
    kill 'STOP', $self->{pid} if $self->{pid};
    $self->{paused} = 1;
    return $self;
}

sub resume {
    my ($self) = @_;
    kill 'CONT', $self->{pid} if $self->{pid};
    delete $self->{paused};
    return $self;
}


# ---- commands -------------------------------------------------------------

# the Redis.pm connection (made on first use, dropped by close_client, a
# failed command, stop and start)

sub client {
    my ($self) = @_;

    return $self->{client} if $self->{client};

    die "$self->{name}: TLS, use cli()\n" if $self->{tls};

    require Redis;
    $self->{client} = Redis->new(
        server => $self->addr,
        cnx_timeout => $CONNECT_TIMEOUT,
        read_timeout => $TIMEOUT,
        write_timeout => $TIMEOUT,
        reconnect => 0,
        (defined $self->{password} ? (password => $self->{password}) : ()),
    );

    return $self->{client};
}

sub close_client {
    my ($self) = @_;
    delete $self->{client};      # its socket closes with it
}

# several commands in one round trip: the list of their replies, each a
# string, a number, undef, an array reference or a RedisError

sub pipeline {
    my ($self, @cmds) = @_;

    return map { $self->_cli_cmd(@$_) } @cmds if $self->{tls};

    my @replies;
    my $ok = eval {
        my $c = $self->client;
        for my $i (0 .. $#cmds) {
            my ($name, @args) = @{$cmds[$i]};
            for (@args) {
                $_ = '' unless defined;
                utf8::encode($_) if utf8::is_utf8($_);
            }
            # upper case: every command through Redis.pm's AUTOLOAD, also
            # those it has lower-case methods of its own for (ping, info)
            my $m = uc $name;
            $c->$m(@args, sub {
                my ($reply, $error) = @_;
                $replies[$i] = defined $error
                    ? Test::Nginx::POP3Ext::RedisError->new($error) : $reply;
            });
        }
        $c->wait_all_responses;
        1;
    };

    unless ($ok) {
        my $e = $@;
        $self->close_client();
        die "$self->{name}: $e";
    }

    return @replies;
}

sub cmd {
    my ($self, @args) = @_;

    my ($r) = eval { $self->pipeline([ @args ]) };
    return $r unless $@;

    # a connection closed under us (a restart, a failover: Sentinels kill
    # the clients of a server they reconfigure): once more, on a new one
    die $@ unless $@ =~ /connect|closed|reset|EOF|broken pipe/i;
    ($r) = $self->pipeline([ @args ]);
    return $r;
}

sub ping { $_[0]->cmd('PING') }

# redis-cli with the instance's address, password and TLS options:
# (exit code, stdout, stderr)

sub cli {
    my ($self, @args) = @_;
    my $ext = $self->{ext};
    my @cmd = ($ext->find_prog($CLI) // $CLI, '-h', '127.0.0.1',
        '-p', $self->{port});
    if (my $tls = $self->{tls}) {
        push @cmd, '--tls', '--cacert', $tls->{ca};
        push @cmd, '--cert', $tls->{client_cert}, '--key', $tls->{client_key}
            if $tls->{client_cert};
    }
    my %env;
    $env{REDISCLI_AUTH} = $self->{password} if defined $self->{password};
    return $ext->run_cmd([ @cmd, @args ], { timeout => $TIMEOUT,
        env => \%env });
}

# one command, its reply as Perl data as cmd() gives it (a string, a
# number, undef, an array reference or a RedisError) also from a TLS
# instance, which the harness reaches with redis-cli only: there through
# redis-cli -2 --json (RESP2, so that a map is a flat array as Redis.pm
# has it), decoded.  cmd() of a TLS instance gives redis-cli's raw text,
# which loses the structure of arrays.

sub cmd_data {
    my ($self, @args) = @_;

    return $self->cmd(@args) unless $self->{tls};

    require JSON::PP;
    my ($rc, $out, $err) = $self->cli('-2', '--json', @args);
    die "$self->{name}: redis-cli failed ($rc): $err\n"
        if $rc != 0 && $out eq '';
    $out =~ s/\s+\z//;
    my $json = JSON::PP->new->utf8->allow_nonref;
    # an error reply: error:"TEXT"
    return Test::Nginx::POP3Ext::RedisError->new($json->decode($1))
        if $out =~ /^error:(".*")\z/s;
    my $r = eval { $json->decode($out) };
    die "$self->{name}: redis-cli --json gave no JSON: $out\n" if $@;
    return _bytes($r);
}

# strings as Redis.pm gives them: bytes, not characters

sub _bytes {
    my ($v) = @_;
    return [ map { _bytes($_) } @$v ] if ref $v eq 'ARRAY';
    utf8::encode($v) if defined $v && !ref $v && utf8::is_utf8($v);
    return $v;
}

# one command through redis-cli (a TLS instance): the reply as redis-cli
# prints it raw, or a RedisError

sub _cli_cmd {
    my ($self, @args) = @_;
    my ($rc, $out, $err) = $self->cli(@args);
    die "$self->{name}: redis-cli failed ($rc): $err\n"
        if $rc != 0 && $out eq '';
    $out =~ s/\n\z//;
    return Test::Nginx::POP3Ext::RedisError->new($out)
        if $out =~ /^(?:ERR|WRONGTYPE|NOAUTH|MOVED|ASK|LOADING|BUSY|NOSCRIPT)\b/;
    return $out;
}


# ---- faults ---------------------------------------------------------------

# DEBUG SLEEP $seconds on a connection of its own, without waiting for the
# reply: Redis is busy that long.  Returns once Redis has stopped
# answering (a PING on another connection unanswered for 0.2 s), so that
# the next command waits for the sleep; the connections are closed at
# stop.

sub debug_sleep {
    my ($self, $seconds) = @_;

    my $conn = sub {
        my $s = IO::Socket::INET->new(PeerAddr => $self->addr,
            Timeout => $CONNECT_TIMEOUT)
            or die "$self->{name}: can't connect: $!\n";
        push @{$self->{raw}}, $s;
        my $auth = defined $self->{password}
            ? _resp('AUTH', $self->{password}) : '';
        return ($s, $auth);
    };

    my ($s, $auth) = $conn->();
    my $out = $auth . _resp('DEBUG', 'SLEEP', $seconds);
    syswrite($s, $out) == length $out
        or die "$self->{name}: can't send DEBUG SLEEP: $!\n";

    my ($probe) = $conn->();
    my $deadline = time() + 5;
    while (time() < $deadline) {
        syswrite($probe, _resp('PING'));
        return $self unless IO::Select->new($probe)->can_read(0.2);
        sysread($probe, my $buf, 4096) or last;
    }

    return $self;
}

sub _resp {
    my @a = @_;
    return '*' . @a . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" }
        @a);
}

# CLIENT KILL TYPE normal: every normal client (nginx's connections too)
# is disconnected, not ours; the number killed

sub client_kill_normal {
    my ($self) = @_;
    return $self->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
}

# SAVE, and a copy of dump.rdb as snapshot NAME; its path

sub save_snapshot {
    my ($self, $name) = @_;
    my $r = $self->cmd('SAVE');
    die "$self->{name}: SAVE failed: $r\n" unless $r && $r eq 'OK';
    my $copy = "$self->{dir}/snapshot-$name.rdb";
    copy("$self->{dir}/dump.rdb", $copy)
        or die "$self->{name}: can't copy dump.rdb: $!\n";
    return $copy;
}

# kill -9, put snapshot NAME back as dump.rdb, start: the data as it was
# at the snapshot.  With AOF on, the AOF is removed (Redis would load it
# instead), Redis starts from the RDB with AOF off, and AOF is turned on
# again (a rewrite from the restored data, waited for).

sub restore_snapshot {
    my ($self, $name) = @_;
    my $copy = "$self->{dir}/snapshot-$name.rdb";
    die "$self->{name}: no snapshot $name\n" unless -f $copy;
    $self->stop('KILL');
    rmtree("$self->{dir}/appendonlydir");
    unlink "$self->{dir}/appendonly.aof";
    copy($copy, "$self->{dir}/dump.rdb")
        or die "$self->{name}: can't restore $copy: $!\n";

    return $self->start() unless $self->{aof};

    {
        local $self->{aof} = 0;
        $self->start();
    }

    my $r = $self->cmd('CONFIG', 'SET', 'appendonly', 'yes');
    die "$self->{name}: CONFIG SET appendonly yes failed: $r\n" unless $r;

    my $deadline = time() + 30;
    while (1) {
        my $i = $self->info('persistence');
        last if ($i->{aof_enabled} // 0) == 1
            && !$i->{aof_rewrite_in_progress} && !$i->{aof_rewrite_scheduled};
        die "$self->{name}: AOF rewrite after the restore did not finish\n"
            if time() > $deadline;
        sleep(0.05);
    }

    return $self;
}

# "role" of ROLE: master, slave or sentinel

sub role {
    my ($self) = @_;
    my $r = $self->cmd_data('ROLE');
    return ref $r eq 'ARRAY' ? $r->[0] : undef;
}

# INFO section as a hash

sub info {
    my ($self, $section) = @_;
    my $r = $self->cmd('INFO', defined $section ? ($section) : ());
    return {} if ref $r || !defined $r;
    return { map { /^([^:#]+):(.*?)\r?$/ ? ($1, $2) : () } split /\n/, $r };
}


package Test::Nginx::POP3Ext::RedisError;

# an error reply: false in boolean context, its text when printed

use overload '""' => sub { $_[0]{text} }, 'bool' => sub { 0 },
    fallback => 1;

sub new {
    my ($class, $text) = @_;
    # Redis.pm adds no prefix to a callback's error; keep the text as Redis
    # sent it
    return bless { text => $text }, $class;
}

sub text { $_[0]{text} }


1;

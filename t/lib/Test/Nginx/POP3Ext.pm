package Test::Nginx::POP3Ext;

# The project's test helpers, beside Test::Nginx and Test::Nginx::POP3
# (this project's, or nginx-tests' when its lib/ is first on @INC): the
# module's load_module line, Redis servers (one per test by default; more,
# a cluster, sentinels, TLS, with fault injection), users and delivery
# through the pop3ext CLI, the data model read from the C header, TLS
# certificates, Dovecot hashes, second nginx instances on the same Redis,
# and the POP3 client Test::Nginx::POP3Ext::Client.
#
#   use Test::Nginx;
#   use Test::Nginx::POP3;
#   use Test::Nginx::POP3Ext;
#
#   my $t = Test::Nginx->new()->has(qw/mail/);
#   my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();
#   $x->add_user('alice', 'secret');
#   $t->plan(3);
#   my $s = $x->session(port(8110), 'alice', 'secret');
#
# Everything it starts is stopped at the end of the test, also when the
# test dies or is killed: first the POP3 clients are closed, then every
# nginx (Test::Nginx's stop), then the Redis processes.
#
# Environment:
#   TEST_NGINX_MODULE   the module's .so (default build/ of this
#                       repository); set and empty: the module is compiled
#                       into nginx, no load_module line
#   TEST_NGINX_CLI      pop3ext (default build/pop3ext)
#   TEST_NGINX_REDIS    redis-server (default: from PATH)
#   TEST_NGINX_BINARY   unset: /usr/sbin/nginx (Debian's), for both
#                       Test::Nginx libraries
#   TEST_P3X_REDIS      the test's Redis: "standalone" (unset: one
#                       redis-server) or "cluster" (a Redis Cluster of 3
#                       masters and 3 replicas, named in cluster mode in
#                       nginx.conf and pop3ext -r; redis_cmd and
#                       redis_pipeline routed by key)

use strict;
use warnings;

use Cwd qw/ abs_path /;
use File::Basename qw/ dirname /;
use File::Temp qw/ tempfile /;
use IO::Socket::INET;
use POSIX qw/ WNOHANG /;
use Scalar::Util qw/ weaken /;
use Test::More ();
use Time::HiRes qw/ time sleep /;

use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext::Client;
use Test::Nginx::POP3Ext::Redis;

our $VERSION = '1.0';

my $REPO = abs_path(dirname(__FILE__) . '/../../../..');

# the project's nginx when none is named: Debian's (nginx-tests' default,
# ../nginx/objs/nginx, means nothing in this repository)

$Test::Nginx::NGINX = '/usr/sbin/nginx' unless defined $ENV{TEST_NGINX_BINARY};

our $MODULE = defined $ENV{TEST_NGINX_MODULE} ? $ENV{TEST_NGINX_MODULE}
    : "$REPO/build/ngx_mail_pop3_ext_module.so";
our $CLI = $ENV{TEST_NGINX_CLI} || "$REPO/build/pop3ext";
our $MODEL_H = "$REPO/ngx_mail_pop3_ext_module/ngx_mail_pop3_ext_model.h";

# what the test's Redis is (TEST_P3X_REDIS): one server, or a cluster
# whose first node is on port($CLUSTER_BASE) or after

our $REDIS_MODE = $ENV{TEST_P3X_REDIS} || 'standalone';
die "TEST_P3X_REDIS=$REDIS_MODE: standalone or cluster\n"
    unless $REDIS_MODE =~ /^(?:standalone|cluster)\z/;
our $CLUSTER_BASE = 8470;

# the file every configuration includes after %%TEST_GLOBALS%%: the
# module's load_module line, or nothing

our $MODULES_CONF = 'pop3ext_modules.conf';

# live objects, for END

my @LIVE;

# a signal from prove or a terminal must still stop what the test started

$SIG{INT} = $SIG{TERM} = $SIG{HUP} = sub { exit 1; };

# a server that closes while a test writes must fail the test, not kill it

$SIG{PIPE} = 'IGNORE';

sub repo { $REPO }


# new($t, redis_mode => 'cluster'): the helpers for the test whose
# Test::Nginx object is $t; redis_mode instead of TEST_P3X_REDIS's

sub new {
    my ($class, $t, %o) = @_;

    my $self = bless {
        pid => $$,
        t => $t,
        nginx => [ $t ],
        procs => [],
        port_locks => [],
        redis_mode => $o{redis_mode} // $REDIS_MODE,
    }, $class;

    $self->_write_modules_conf($t);

    push @LIVE, $self;
    weaken($LIVE[-1]);

    return $self;
}

sub t { $_[0]{t} }

# whether the module's .so is there (or the module is compiled in)

sub module_found { !length $MODULE || -f $MODULE }

# skip the file (plan skip_all) unless module_found

sub has_module {
    my ($self) = @_;
    $self->skip_all("ngx_mail_pop3_ext_module not found: $MODULE (run make,"
        . ' or set TEST_NGINX_MODULE)') unless module_found();
    return $self;
}
sub testdir { $_[0]{t}->testdir() }
sub module { $MODULE }
sub cli_path { $CLI }

sub _write_modules_conf {
    my ($self, $t) = @_;
    my $s = "# written by Test::Nginx::POP3Ext\n";
    $s .= "load_module $MODULE;\n" if length $MODULE;
    $t->write_file($MODULES_CONF, $s);
}

# the main-context lines of the module: an include of the file above (put
# it after %%TEST_GLOBALS%%, which loads nginx's mail core when that is a
# dynamic module)

sub modules_include { "include $MODULES_CONF;\n" }


# ---- requirements ---------------------------------------------------------

sub skip_all {
    my ($self, $why) = @_;
    Test::More::plan(skip_all => $why);
}

sub has_redis {
    my ($self) = @_;
    $self->{t}->has_daemon('redis-server');
    $self->skip_all('Redis.pm not installed (libredis-perl)')
        unless eval { require Redis; 1 };
    $self->{want_redis} = 1;
    return $self;
}

sub has_redis_password {
    my ($self, $password) = @_;
    $self->_standalone_only('has_redis_password');
    $self->{redis_password} = $password;
    return $self;
}

# 'standalone' or 'cluster': what the test's Redis is (TEST_P3X_REDIS)

sub redis_mode { $_[0]{redis_mode} }

sub cluster_mode { $_[0]{redis_mode} eq 'cluster' }

# a file that injects faults into one Redis server (kill, restart, pause,
# DEBUG SLEEP, snapshots, requirepass, MONITOR) skips itself when the
# test's Redis is a cluster, saying why

sub needs_standalone_redis {
    my ($self, $why) = @_;
    $self->skip_all('needs a standalone Redis, the test\'s Redis is a'
        . ' cluster (TEST_P3X_REDIS=cluster): ' . ($why // 'not said'))
        if $self->cluster_mode;
    return $self;
}

# what only a standalone test Redis has: dies in cluster mode, naming the
# call, so that a file that needs it and did not say so fails loudly

sub _standalone_only {
    my ($self, $what) = @_;
    return unless $self->cluster_mode;
    die "$what: the test's Redis is a cluster (TEST_P3X_REDIS=cluster); a"
        . " file that needs one server calls"
        . " \$x->needs_standalone_redis('why') first\n";
}

sub has_cli {
    my ($self) = @_;
    $self->skip_all("pop3ext not found: $CLI (run make, or set "
        . "TEST_NGINX_CLI)") unless -x $CLI;
    return $self;
}

# a program in PATH (skips the file without it); prog() gives its path

sub has_prog {
    my ($self, $prog) = @_;
    my $path = find_prog($prog);
    $self->skip_all("$prog not found in PATH") unless defined $path;
    return $self;
}

sub prog { find_prog($_[1]) }

sub find_prog {
    my $prog = pop;
    return (-x $prog ? $prog : undef) if $prog =~ m{/};
    for my $dir (split /:/, $ENV{PATH} // '') {
        my $p = "$dir/$prog";
        return $p if -f $p && -x _;
    }
    return undef;
}

# Dovecot and its LDA (dovecot-core), for dovecot()

sub has_dovecot {
    my ($self) = @_;
    require Test::Nginx::POP3Ext::Dovecot;
    my ($ok, $why) = Test::Nginx::POP3Ext::Dovecot->available($self);
    $self->skip_all($why) unless $ok;
    return $self;
}

# dovecot(%o): a private Dovecot, not started: port => P (its POP3
# port), tls => [ crt, key ] (STLS, and pop3s on tls_port => P), conf =>
# more lines; a Test::Nginx::POP3Ext::Dovecot, stopped at the end

sub dovecot {
    my ($self, %o) = @_;
    require Test::Nginx::POP3Ext::Dovecot;
    return Test::Nginx::POP3Ext::Dovecot->new($self, %o);
}

# openssl to make certificates, IO::Socket::SSL to talk TLS, nginx's mail
# TLS

sub has_ssl {
    my ($self) = @_;
    $self->{t}->has(qw/mail_ssl socket_ssl/);
    return $self->has_prog('openssl');
}


# ---- files and the error log ------------------------------------------------

# a file of the test directory, '' when it is not there

sub read_file {
    my ($self, $name) = @_;
    return _slurp($name =~ m{^/} ? $name : $self->testdir() . "/$name");
}

sub _slurp {
    my $path = pop;
    open my $fh, '<', $path or return '';
    binmode $fh;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

sub write_file {
    my ($self, $name, $content) = @_;
    $self->{t}->write_file($name, $content);
    return $self;
}

# The error log and the nginx of the test, or of the Test::Nginx object
# given last (a peer)

sub error_log {
    my ($self, $t) = @_;
    return _slurp(($t // $self->{t})->testdir() . '/error.log');
}

# error log lines not at debug level

sub log_lines {
    my ($self, $t) = @_;
    return grep { !/\[debug\]/ } split /\n/, $self->error_log($t);
}

# wait up to $timeout seconds (5) until the error log matches $re; the
# match (or $1) or undef

sub wait_for_log {
    my ($self, $re, $timeout, $t) = @_;
    my $deadline = time() + ($timeout // 5);
    while (1) {
        my $log = $self->error_log($t);
        return $1 // $& if $log =~ $re;
        return undef if time() > $deadline;
        sleep(0.05);
    }
}

sub nginx_pid {
    my ($self, $t) = @_;
    my $pid = _slurp(($t // $self->{t})->testdir() . '/nginx.pid');
    $pid =~ s/\s+//g;
    return $pid =~ /^\d+\z/ ? $pid : undef;
}

sub nginx_running {
    my ($self, $t) = @_;
    my $pid = $self->nginx_pid($t) or return 0;
    return 0 if defined reap($pid, 0);
    return kill(0, $pid) ? 1 : 0;
}


# ---- configuration ----------------------------------------------------------

# The usual configuration: one POP3 server on PORT_8110 (port => N for
# another placeholder) talking to the Redis of this test on PORT_8379.
# main, mail and server add lines to the main context, the mail block and
# the server block; redis gives pop3_ext_redis's parameters; max_errors
# is 1000 unless given (the module counts every -ERR, and nginx's default
# of 5 would end sessions that test many errors).

sub conf {
    my ($self, %o) = @_;

    my $main = $o{main} // '';
    my $mail = $o{mail} // '';
    my $server = $o{server} // '';
    my $port = $o{port} // 8110;
    my $listen = defined $o{listen} ? " $o{listen}" : '';
    my $redis = $o{redis} // '127.0.0.1:%%PORT_8379%%';
    $server = "        max_errors 1000;\n$server"
        unless $server =~ /\bmax_errors\b/;

    # files that test many wrong passwords would be blocked or slowed by
    # the abuse limits meant for a real network; t/033 tests those
    $server = "        pop3_ext_auth_block_addr 0;\n$server"
        unless "$mail$server" =~ /\bpop3_ext_auth_block_addr\b/;
    $server = "        pop3_ext_auth_fail_delay 100ms;\n$server"
        unless "$mail$server" =~ /\bpop3_ext_auth_fail_delay\b/;

    my $include = $self->modules_include();

    return <<"EOF";
%%TEST_GLOBALS%%
$include
daemon off;
$main
events {
}

mail {
    auth_http 127.0.0.1:1/unused;    # required by the mail core, unused
$mail
    server {
        listen 127.0.0.1:%%PORT_$port%%$listen;
        protocol pop3_ext;
        pop3_ext_redis $redis;
$server
    }
}
EOF
}

# one more POP3 server block for conf(mail => ...): PORT_$n, the same
# Redis (or redis => 'address [options]'), extra directives; listen =>
# 'ssl' adds parameters to the listen directive

sub server {
    my ($self, $n, $extra, %o) = @_;
    my $redis = $o{redis} // '127.0.0.1:%%PORT_8379%%';
    my $listen = defined $o{listen} ? " $o{listen}" : '';
    $extra //= '';
    $extra = "max_errors 1000;\n$extra" unless $extra =~ /\bmax_errors\b/;
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$n%%$listen;
        protocol pop3_ext;
        pop3_ext_redis $redis;
        $extra
    }
EOF
}

# the usual configuration (conf's options) written into nginx.conf of $t,
# the test's Redis started when has_redis asked for it, nginx started

sub run_pop3 {
    my ($self, %o) = @_;
    my $t = delete $o{nginx} // $self->{t};
    $t->write_file_expand('nginx.conf', $self->conf(%o));
    return $self->run($t);
}

# the test's Redis (when has_redis asked for it), then $t->run(); skips the
# file when the module is not there

sub run {
    my ($self, $t) = @_;
    $t //= $self->{t};
    $self->has_module();
    $self->run_redis() if $self->{want_redis}
        && !($self->cluster_mode ? $self->{cluster} : $self->{redis});
    $self->_name_cluster($t) if $self->cluster_mode && $self->{cluster};
    $t->run();
    return $self;
}

# cluster mode: every pop3_ext_redis of nginx.conf that names the test's
# Redis (127.0.0.1:port(8379), as conf(), server() and configurations
# written by hand do) names the cluster instead: its masters' addresses
# and "cluster", the directive's other parameters kept

sub _name_cluster {
    my ($self, $t) = @_;

    my $port = port(8379);
    my $seeds = $self->_cluster_seeds();
    my $conf = $t->read_file('nginx.conf');

    my $n = $conf =~ s/(\bpop3_ext_redis\s+)127\.0\.0\.1:$port(?=[\s;])
        /$1$seeds cluster/gx;
    Test::Nginx::log_core('##', "cluster mode: $n pop3_ext_redis named the"
        . " cluster ($seeds)");

    die "nginx.conf names the test's Redis (127.0.0.1:$port) other than as"
        . " the first address of pop3_ext_redis, which cluster mode"
        . " (TEST_P3X_REDIS=cluster) cannot rewrite\n"
        if $conf =~ /127\.0\.0\.1:$port\b/;

    $t->write_file('nginx.conf', $conf);
}

sub _cluster_seeds {
    my ($self) = @_;
    return $self->{cluster_seeds} //= join(' ',
        map { $_->addr } $self->test_cluster->masters);
}

# another Test::Nginx object (its own directory, error log and nginx), as
# a second host of a cluster on the same Redis: the same ports
# (%%PORT_8379%% is the same Redis), so give its servers other numbers:
#
#   my $t2 = $x->peer();
#   $x->run_pop3(nginx => $t2, port => 8210);
#
# Stopped before Redis.  Its end checks ("no alerts", "no sanitizer
# errors") are its own: plan() two more tests for each peer.

sub peer {
    my ($self) = @_;
    my $p = (ref $self->{t})->new();
    $self->_write_modules_conf($p);
    push @{$self->{nginx}}, $p;
    return $p;
}


# ---- processes --------------------------------------------------------------

# fork and exec @cmd, stdout and stderr appended to $out, in a process
# group of its own, and SIGTERM for it when this process dies (also when
# it is killed); its pid

sub spawn {
    my ($self, $out, @cmd) = @_;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        _pdeathsig();
        $SIG{$_} = 'DEFAULT' for qw/ INT TERM HUP PIPE /;
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }

    Test::Nginx::log_core('##', "started $pid: @cmd");
    return $pid;
}

# prctl(PR_SET_PDEATHSIG, SIGTERM), Linux on x86-64 and arm64

sub _pdeathsig {
    require Config;
    my $arch = $Config::Config{archname};
    my $nr = $arch =~ /x86_64/ ? 157 : $arch =~ /aarch64/ ? 167 : undef;
    syscall($nr, 1, 15) if defined $nr;
}

# wait up to $timeout seconds for child $pid to exit: its status, -1 if it
# is not a child, undef while it runs

sub reap {
    my ($pid, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r == -1;
        return undef if time() >= $deadline;
        sleep(0.02);
    }
}

# $sig, up to $timeout seconds, then SIGKILL: (status, killed)

sub stop_pid {
    my ($pid, $sig, $timeout) = @_;
    kill $sig, $pid;
    my $st = reap($pid, $timeout);
    return ($st, 0) if defined $st;
    kill 'KILL', $pid;
    return (reap($pid, 5), 1);
}

sub _register_proc {
    my ($self, $p) = @_;
    push @{$self->{procs}}, $p unless grep { $_ == $p } @{$self->{procs}};
}

# nginx -t on the configuration of a Test::Nginx object (not started):
# (exit code, stdout and stderr together).  A module built with ASan loads
# only after libasan, as in Test::Nginx's run()

sub nginx_t {
    my ($self, $t) = @_;
    my $d = $t->testdir();

    local %ENV = %ENV;
    Test::Nginx::_asan_env()
        if $ENV{TEST_NGINX_ASAN} && Test::Nginx->can('_asan_env');

    my ($rc, $out, $err) = $self->run_cmd([ $Test::Nginx::NGINX, '-t',
        '-p', "$d/", '-c', 'nginx.conf', '-e', 'error.log' ]);
    return ($rc, "$out$err");
}

# run a command: (exit code, stdout, stderr); options stdin => text,
# timeout => seconds (30), env => { NAME => value }

sub run_cmd {
    my ($self, $cmd, $o) = @_;

    $o ||= {};
    my $d = $self->testdir();

    my ($in_fh, $in) = tempfile('cmd-in-XXXXXX', DIR => $d, UNLINK => 1);
    binmode $in_fh;
    print $in_fh $o->{stdin} if defined $o->{stdin};
    close $in_fh;

    my ($out_fh, $out) = tempfile('cmd-out-XXXXXX', DIR => $d, UNLINK => 1);
    my ($err_fh, $err) = tempfile('cmd-err-XXXXXX', DIR => $d, UNLINK => 1);
    close $out_fh;
    close $err_fh;

    Test::Nginx::log_core('##', "run: @$cmd");

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        _pdeathsig();
        $SIG{$_} = 'DEFAULT' for qw/ INT TERM HUP PIPE /;
        POSIX::setpgid(0, 0);
        open STDIN, '<', $in or POSIX::_exit(127);
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>', $err or POSIX::_exit(127);
        @ENV{keys %{$o->{env}}} = values %{$o->{env}} if $o->{env};
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }

    my $st = reap($pid, $o->{timeout} // 30);
    unless (defined $st) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        reap($pid, 5);
        $st = -1;
    }

    my $code = $st == -1 ? -1
        : ($st & 127) ? 128 + ($st & 127)
        : $st >> 8;

    my ($so, $se) = (_slurp($out), _slurp($err));
    unlink $in, $out, $err;

    Test::Nginx::log_core('##', "exit $code");
    Test::Nginx::log_core('## stdout:', $so) if length $so;
    Test::Nginx::log_core('## stderr:', $se) if length $se;

    return ($code, $so, $se);
}


# ---- the test's Redis (PORT_8379) -------------------------------------------

# start the test's Redis on port(8379) (no persistence; has_redis_password
# makes it require a password); in cluster mode (TEST_P3X_REDIS=cluster) a
# Redis Cluster of 3 masters and 3 replicas on ports from
# port($CLUSTER_BASE), without AOF or RDB, started once (start_redis after
# stop_redis starts the same nodes again); $x

sub run_redis {
    my ($self) = @_;

    if ($self->cluster_mode) {
        if (!$self->{cluster}) {
            require Test::Nginx::POP3Ext::RedisCluster;
            $self->{cluster} = Test::Nginx::POP3Ext::RedisCluster->new($self,
                base => $CLUSTER_BASE, aof => 0)->start();
        } elsif (grep { !$_->running } $self->{cluster}->nodes) {
            $self->{cluster}->start_again();
        }
        return $self;
    }

    $self->{redis} //= Test::Nginx::POP3Ext::Redis->new($self, num => 8379,
        name => 'redis',
        (defined $self->{redis_password}
            ? (password => $self->{redis_password}) : ()));
    $self->{redis}{password} = $self->{redis_password};
    $self->{redis}->start() unless $self->{redis}->running;
    return $self;
}

sub start_redis { $_[0]->run_redis() }

# the test's Redis as a Test::Nginx::POP3Ext::Redis object (standalone
# only)

sub redis {
    my ($self) = @_;
    $self->_standalone_only('redis');
    die "the test's Redis was not started (run_redis)\n"
        unless $self->{redis};
    return $self->{redis};
}

# the test's cluster (cluster mode only): a
# Test::Nginx::POP3Ext::RedisCluster

sub test_cluster {
    my ($self) = @_;
    die "test_cluster: the test's Redis is not a cluster (TEST_P3X_REDIS)\n"
        unless $self->cluster_mode;
    die "the test's Redis was not started (run_redis)\n"
        unless $self->{cluster};
    return $self->{cluster};
}

sub redis_port {
    my ($self) = @_;
    $self->_standalone_only('redis_port');
    return port(8379);
}

# the test's Redis as pop3_ext_redis and pop3ext -r name it:
# "127.0.0.1:PORT", or in cluster mode "127.0.0.1:P1 127.0.0.1:P2
# 127.0.0.1:P3 cluster" (the masters)

sub redis_spec {
    my ($self) = @_;
    return $self->_cluster_seeds() . ' cluster' if $self->cluster_mode;
    return '127.0.0.1:' . port(8379);
}

# stop the test's Redis the hard way (SIGKILL: nothing saved, clients see
# a reset), or with another signal; in cluster mode every node

sub stop_redis {
    my ($self, $sig) = @_;
    $self->{redis}->stop($sig // 'KILL') if $self->{redis};
    $self->{cluster}->stop($sig // 'KILL') if $self->{cluster};
    return $self;
}

sub redis_pid {
    my ($self) = @_;
    $self->_standalone_only('redis_pid');
    return $self->{redis} ? $self->{redis}->pid : undef;
}

# whether the test's Redis runs (cluster mode: every node)

sub redis_running {
    my ($self) = @_;
    return $self->{cluster} && !grep { !$_->running } $self->{cluster}->nodes
        if $self->cluster_mode;
    return $self->{redis} ? $self->{redis}->running : 0;
}

# one command: the reply (a string, a number, undef, an array reference,
# or a Test::Nginx::POP3Ext::RedisError: false, prints as its text).  In
# cluster mode a command with keys goes to the master of their slot
# (MOVED and ASK followed), a keyless one to every master with the replies
# combined: see Test::Nginx::POP3Ext::RedisCluster's command and broadcast

sub redis_cmd {
    my ($self, @args) = @_;
    return $self->test_cluster->command(@args) if $self->cluster_mode;
    return $self->redis->cmd(@args);
}

# several commands in one round trip (cluster mode: one per master); their
# replies

sub redis_pipeline {
    my ($self, @cmds) = @_;
    return $self->test_cluster->pipeline(@cmds) if $self->cluster_mode;
    return $self->redis->pipeline(@cmds);
}

# drop the test Redis' client connection (the next command connects
# again, with the password as it is set then)

sub redis_reconnect {
    my ($self) = @_;
    $self->{cluster}->close_clients() if $self->{cluster};
    return $self unless $self->{redis};
    $self->{redis}{password} = $self->{redis_password};
    $self->{redis}->close_client();
    return $self;
}


# the password the harness' client and pop3ext give the test's Redis
# (not Redis' own: CONFIG SET requirepass changes that); the client
# connects again

sub set_redis_password {
    my ($self, $password) = @_;
    $self->_standalone_only('set_redis_password');
    $self->{redis_password} = $password;
    return $self->redis_reconnect();
}


# ---- more Redis servers -----------------------------------------------------

# redis_server($num, %o): another Redis, started, on port($num); options
# as Test::Nginx::POP3Ext::Redis->new: aof => 1, password => ..., args =>
# [...], name => ...; the object

sub redis_server {
    my ($self, $num, %o) = @_;
    my $r = Test::Nginx::POP3Ext::Redis->new($self, num => $num, %o);
    return $r->start();
}

# redis_tls($num, %o): a Redis that speaks only TLS on port($num), with a
# certificate of a CA made here (make_ca, make_signed) for CN=localhost,
# DNS:localhost and IP:127.0.0.1 (cn => and san => as make_signed's),
# client certificates required unless auth_clients => 'no'; the object
# (cli() talks to it with redis-cli --tls; {tls} has the file names: cert,
# key, ca, client_cert, client_key)

sub redis_tls {
    my ($self, $num, %o) = @_;

    $self->find_prog('openssl')
        or $self->skip_all('openssl not found in PATH');

    my $name = $o{name} // "redis-tls-$num";
    my ($ca) = $self->make_ca("$name-ca", "p3x redis test CA");
    my ($crt, $key) = $self->make_signed("$name-server",
        delete $o{cn} // 'localhost', "$name-ca", server => 1,
        (defined $o{san} ? (san => delete $o{san}) : ()));
    my ($ccrt, $ckey) = $self->make_signed("$name-client", 'p3x client',
        "$name-ca");

    my $r = Test::Nginx::POP3Ext::Redis->new($self, num => $num,
        name => $name, %o, tls => { cert => $crt, key => $key, ca => $ca,
            client_cert => $ccrt, client_key => $ckey,
            auth_clients => $o{auth_clients} // 'yes' });
    return $r->start();
}

# redis_cluster(%o): 3 masters and 3 replicas on port(8400 ..) (base =>
# N), created with redis-cli --cluster create and waited for; a
# Test::Nginx::POP3Ext::RedisCluster

sub redis_cluster {
    my ($self, %o) = @_;
    require Test::Nginx::POP3Ext::RedisCluster;
    return Test::Nginx::POP3Ext::RedisCluster->new($self, %o)->start();
}

# redis_sentinel(%o): a master, a replica and 3 sentinels on port(8450 ..)
# (base => N), master name "p3x" (name => ...), all speaking only TLS with
# tls => { cert, key, ca, client_cert, client_key, auth_clients }, waited
# for until the sentinels agree on the master; a
# Test::Nginx::POP3Ext::RedisSentinel

sub redis_sentinel {
    my ($self, %o) = @_;
    require Test::Nginx::POP3Ext::RedisSentinel;
    return Test::Nginx::POP3Ext::RedisSentinel->new($self, %o)->start();
}

# a loopback port for placeholder $num whose port + $offset is free too
# (a cluster node's bus port); the next number is tried when it is not.
# The second port is held like port()'s until the end.  The number used.

sub port_pair {
    my ($self, $num, $offset) = @_;
    for my $n ($num .. $num + 50) {
        my $p = port($n);
        my $lock = IO::Socket::INET->new(Proto => 'udp',
            LocalAddr => '127.0.0.1:' . ($p + $offset)) or next;
        my $probe = IO::Socket::INET->new(Proto => 'tcp', Listen => 1,
            Reuse => 1, LocalAddr => '127.0.0.1:' . ($p + $offset)) or next;
        push @{$self->{port_locks}}, $lock;
        return $n;
    }
    die "no port pair near $num (+$offset)\n";
}


# ---- the data model, read from the C header ---------------------------------

# the string value of a #define in ngx_mail_pop3_ext_model.h: a sequence of
# C string literals, possibly over several lines

my %MODEL;

sub model {
    my ($self, $name) = @_;

    return $MODEL{$name} if exists $MODEL{$name};

    open my $fh, '<', $MODEL_H or die "can't open $MODEL_H: $!\n";
    my $h = do { local $/; <$fh> };
    close $fh;

    $h =~ /^#define[ \t]+\Q$name\E\b((?:[^\n]*\\\n)*[^\n]*)/m
        or die "$name not found in $MODEL_H\n";
    my $body = $1;

    my $v = '';
    my $found = 0;
    while ($body =~ /"((?:[^"\\]|\\.)*)"/gs) {
        $v .= _c_unescape($1);
        $found = 1;
    }

    unless ($found) {
        $body =~ s/\\\n//g;
        $body =~ s/^\s+|\s+$//g;
        $v = $body;
    }

    return $MODEL{$name} = $v;
}

sub _c_unescape {
    my ($s) = @_;
    my %esc = (n => "\n", t => "\t", r => "\r", '\\' => '\\', '"' => '"',
        "'" => "'", 0 => "\0", a => "\a", b => "\b", f => "\f", v => "\013",
        '?' => '?');
    $s =~ s/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/
        my $e = $1;
        $e =~ m{^x} ? chr(hex(substr($e, 1)))
        : $e =~ m{^[0-7]} ? chr(oct($e))
        : exists $esc{$e} ? $esc{$e} : $e
    /ge;
    return $s;
}

sub user_key {
    my ($self, $user) = @_;
    return $self->model('P3X_USER_PREFIX') . $user
        . $self->model('P3X_USER_SUFFIX');
}

sub mbox_key {
    my ($self, $mbox, $suffix) = @_;
    return $self->model('P3X_MBOX_PREFIX') . $mbox
        . $self->model("P3X_${suffix}_SUFFIX");
}

# the mailbox name of a user, as the CLI stored it

sub mailbox_of {
    my ($self, $user) = @_;
    my $m = $self->redis_cmd('HGET', $self->user_key($user),
        $self->model('P3X_FIELD_MAILBOX'));
    return defined $m && !ref $m && length $m ? $m : $user;
}

# deliver many messages to one user quickly: pipelines of EVALSHA of the
# DELIVER script taken from the header, so that the test never has its
# own copy of it.  Messages must already have CRLF line ends.  The UIDs.

sub deliver_fast {
    my ($self, $user, @messages) = @_;

    my $mbox = $self->mailbox_of($user);
    my $script = $self->model('P3X_SCRIPT_DELIVER');
    my $index = $self->mbox_key($mbox, 'INDEX');
    my $prefix = $self->mbox_key($mbox, 'MSG');
    my $meta = $self->mbox_key($mbox, 'META');
    my $mtime = $self->mbox_key($mbox, 'TIME');
    my $now = int(time() * 1000);

    my $sha = $self->redis_cmd('SCRIPT', 'LOAD', $script);
    die "SCRIPT LOAD failed: $sha\n" if ref $sha;

    my @uids;
    my $seq = 0;
    while (my @chunk = splice(@messages, 0, 2000)) {
        # UIDs as the model makes them: clock in ms, then random bits
        my @u = map {
            sprintf('%012x%06x%06x', int(time() * 1000), $seq++ & 0xffffff,
                int(rand(0x1000000)))
        } @chunk;
        my $i = 0;
        my @r = $self->redis_pipeline(map {
            my $uid = $u[$i++];
            [ 'EVALSHA', $sha, 4, $index, $prefix . $uid, $meta, $mtime,
                $_, $uid, 0, $now, 0, 0 ]
        } @chunk);
        for (@r) {
            die "deliver script failed: $_\n" if ref $_ ne 'ARRAY';
        }
        push @uids, map { $_->[0] } @r;
    }

    return @uids;
}


# ---- the command-line tool --------------------------------------------------

# pop3ext with the test's Redis; a hash reference as the last argument
# gives options: stdin => text, redis => 'host:port' (instead of ours;
# undef for no -r at all), timeout => seconds, env => {...}.
# (exit code, stdout, stderr)

sub pop3ext {
    my ($self, @args) = @_;

    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};

    my @cmd = ($CLI);
    my $redis = exists $o->{redis} ? $o->{redis} : $self->redis_spec();
    push @cmd, '-r', $redis if defined $redis;
    push @cmd, @args;

    if (defined $self->{redis_password}) {
        $o->{env} = { POP3EXT_REDIS_PASSWORD => $self->{redis_password},
                      %{$o->{env} || {}} };
    }

    return $self->run_cmd(\@cmd, $o);
}

# set-up helpers: they die (failing the file) when the CLI fails

sub add_user {
    my ($self, $user, $pass, @extra) = @_;
    my ($rc, $out, $err) = $self->pop3ext('user', 'add', @extra, $user,
        { stdin => "$pass\n" });
    die "pop3ext add $user failed ($rc): $err$out\n" if $rc != 0;
    return $self;
}

sub deliver {
    my ($self, $user, $message) = @_;
    my @users = ref $user ? @$user : ($user);
    my ($rc, $out, $err) = $self->pop3ext('deliver', @users,
        { stdin => $message });
    die "pop3ext deliver @users failed ($rc): $err$out\n" if $rc != 0;
    return $self;
}

# (count, octets) of a mailbox, from "pop3ext stat"

sub mailbox_stat {
    my ($self, $user) = @_;
    my ($rc, $out, $err) = $self->pop3ext('stat', $user);
    die "pop3ext stat $user failed ($rc): $err$out\n" if $rc != 0;
    return $out =~ /^(\d+) (\d+)$/ ? ($1, $2) : ();
}

# store a user record with this secret verbatim ("{SCHEME}..."), as a
# migration from another server would

sub set_user_secret {
    my ($self, $user, $secret) = @_;
    my $r = $self->redis_cmd('HSET', $self->user_key($user),
        $self->model('P3X_FIELD_SECRET'), $secret);
    die "HSET secret of $user failed: $r\n" if ref $r;
    return $self;
}


# ---- POP3 clients -----------------------------------------------------------

# client(%o): a Test::Nginx::POP3Ext::Client (port => P, default
# port(8110); greeting read unless greeting => 0; ssl, timeout, local)

sub client {
    my ($self, %o) = @_;
    return Test::Nginx::POP3Ext::Client->new(%o);
}

# session($port, $user, $pass, %o): connected and logged in, or undef
# (diagnosed)

sub session {
    my ($self, @args) = @_;
    return Test::Nginx::POP3Ext::Client->session(@args);
}

sub listing { Test::Nginx::POP3Ext::Client::listing(pop) }
sub stuff { Test::Nginx::POP3Ext::Client::stuff(pop) }
sub unstuff { Test::Nginx::POP3Ext::Client::unstuff(pop) }


# ---- TLS material and password hashes ---------------------------------------

sub _openssl {
    my ($self, @args) = @_;
    my ($rc, $out, $err) = $self->run_cmd([ find_prog('openssl')
        // 'openssl', @args ], { timeout => 60 });
    die "openssl @args failed ($rc): $err$out\n" if $rc != 0;
    return $self;
}

# a self-signed certificate NAME.crt and its key NAME.key in the test
# directory, for CN=$cn, also named by subjectAltName DNS:$cn and
# IP:127.0.0.1; (crt path, key path)

sub make_self_signed {
    my ($self, $name, $cn, %o) = @_;
    my $d = $self->testdir();
    $self->_openssl('req', '-x509', '-newkey', $o{key} // 'rsa:2048',
        '-nodes', '-days', '2', '-subj', "/CN=$cn",
        '-addext', "subjectAltName=DNS:$cn,IP:127.0.0.1",
        '-keyout', "$d/$name.key", '-out', "$d/$name.crt");
    return ("$d/$name.crt", "$d/$name.key");
}

# a certificate authority NAME.crt / NAME.key (self-signed, CA:true)

sub make_ca {
    my ($self, $name, $cn) = @_;
    my $d = $self->testdir();
    $self->_openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes',
        '-days', '2', '-subj', '/CN=' . ($cn // 'p3x test CA'),
        '-addext', 'basicConstraints=critical,CA:true',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-keyout', "$d/$name.key", '-out', "$d/$name.crt");
    return ("$d/$name.crt", "$d/$name.key");
}

# NAME.crt / NAME.key for CN=$cn signed by the CA $ca (a make_ca name); a
# client certificate, or a server one (also for DNS:$cn and IP:127.0.0.1,
# or for the names of san => 'DNS:a,IP:...' instead) with server => 1,
# one for both ends (a Redis Cluster node's, on its bus) with both => 1

sub make_signed {
    my ($self, $name, $cn, $ca, %o) = @_;
    my $d = $self->testdir();
    my $ext = "basicConstraints=CA:false\nextendedKeyUsage="
        . ($o{both} ? 'serverAuth,clientAuth'
            : $o{server} ? 'serverAuth' : 'clientAuth') . "\n";
    $ext .= 'subjectAltName=' . ($o{san} // "DNS:$cn,IP:127.0.0.1") . "\n"
        if $o{server} || $o{both};
    $self->{t}->write_file("$name.ext", $ext);
    $self->_openssl('req', '-newkey', 'rsa:2048', '-nodes',
        '-subj', "/CN=$cn", '-keyout', "$d/$name.key",
        '-out', "$d/$name.csr");
    $self->_openssl('x509', '-req', '-in', "$d/$name.csr", '-days', '2',
        '-CA', "$d/$ca.crt", '-CAkey', "$d/$ca.key", '-CAcreateserial',
        '-extfile', "$d/$name.ext", '-out', "$d/$name.crt");
    return ("$d/$name.crt", "$d/$name.key");
}

# a hash made by Dovecot's "doveadm pw -s SCHEME -p PASSWORD", with its
# "{SCHEME}" prefix; undef when doveadm is missing or refuses

sub doveadm_pw {
    my ($self, $scheme, $password) = @_;
    my $doveadm = find_prog('doveadm') or return undef;
    my ($rc, $out, $err) = $self->run_cmd([ $doveadm, '-o',
        'base_dir=' . $self->testdir(), 'pw', '-s', $scheme,
        '-p', $password ], { timeout => 30 });
    return undef if $rc != 0;
    $out =~ s/\s+\z//;
    return undef unless $out =~ /^\{\Q$scheme\E\}\S/;
    return $out;
}


# ---- the end ----------------------------------------------------------------

# close the clients, stop every nginx of the test, then every Redis; the
# Test::Nginx objects are let go (their end checks run when the last
# reference goes)

sub finish {
    my ($self) = @_;

    # not in a child of fork() (run_daemon's code ends with exit)
    return if $self->{pid} != $$;
    return if $self->{finished}++;

    Test::Nginx::POP3Ext::Client::close_all();

    for my $t (reverse @{$self->{nginx}}) {
        eval { $t->stop(); };
    }

    for my $p (reverse @{$self->{procs}}) {
        eval { $p->stop('TERM'); };
    }

    close $_ for @{$self->{port_locks}};
    $self->{port_locks} = [];

    delete $self->{redis};
    delete $self->{cluster};
    $self->{procs} = [];
    delete $self->{t};
    $self->{nginx} = [];
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->finish();
}

END {
    local $?;
    for my $x (grep { defined } @LIVE) {
        $x->finish();
    }
}


1;

package Test::Nginx;

# Test harness for ngx_mail_pop3_ext_module, in the manner of nginx's own
# test suite: each t/*.t file writes an nginx.conf with placeholders, starts
# its own nginx and its own Redis on free loopback ports, talks to them and
# stops everything when it ends.  This is the project's own code; CPAN's
# Test::Nginx is not used (and is not needed).
#
#   my $t = Test::Nginx->new()->has_redis->has_cli
#       ->write_file_expand('nginx.conf', $conf)->run();
#   $t->plan(10);
#
# Environment:
#   TEST_NGINX_BINARY       nginx to run (default /usr/sbin/nginx)
#   TEST_NGINX_MODULE       the module (default <repo>/build/...so)
#   TEST_NGINX_MAIL_MODULE  nginx's mail core (default Debian's .so)
#   TEST_NGINX_CLI          pop3ext (default <repo>/build/pop3ext)
#   TEST_NGINX_GLOBALS      extra lines for the main context
#   TEST_NGINX_LEAVE        keep the temporary directory
#   TEST_NGINX_VERBOSE      print protocol exchanges and commands
#   TEST_NGINX_ASAN         run nginx with libasan preloaded and fail on
#                           sanitizer reports

use strict;
use warnings;

use Test::More ();
use Cwd qw/ abs_path /;
use Errno qw/ EINTR EAGAIN /;
use Fcntl qw/ :flock O_RDWR O_CREAT /;
use File::Basename qw/ dirname /;
use File::Path qw/ rmtree /;
use File::Spec;
use File::Temp qw/ tempdir tempfile /;
use IO::Select;
use IO::Socket::INET;
use POSIX qw/ WNOHANG /;
use Scalar::Util qw/ weaken /;
use Time::HiRes qw/ time sleep /;

our $VERSION = '0.1';

my $REPO = abs_path(dirname(__FILE__) . '/../../..');

our $NGINX = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our $MODULE = $ENV{TEST_NGINX_MODULE}
    || "$REPO/build/ngx_mail_pop3_ext_module.so";
our $MAIL_MODULE = $ENV{TEST_NGINX_MAIL_MODULE}
    || '/usr/lib/nginx/modules/ngx_mail_module.so';
our $CLI = $ENV{TEST_NGINX_CLI} || "$REPO/build/pop3ext";
our $REDIS_SERVER = $ENV{TEST_NGINX_REDIS} || '/usr/bin/redis-server';
our $MODEL_H = "$REPO/ngx_mail_pop3_ext_module/ngx_mail_pop3_ext_model.h";

my $VERBOSE = $ENV{TEST_NGINX_VERBOSE};

# every live harness object, so that END can stop what is still running

my @INSTANCES;

# a signal from prove or a terminal must still run END, which stops nginx
# and Redis; otherwise they would outlive the test

$SIG{INT} = $SIG{TERM} = $SIG{HUP} = sub { exit 1; };

# a server that closes while a test writes must fail the test, not kill it

$SIG{PIPE} = 'IGNORE';

sub repo { $REPO }


sub new {
    my ($class, %opts) = @_;

    my $self = bless {
        ports => {},             # placeholder number -> real port
        port_locks => [],
        planned => 0,
        allowed_alerts => [],
    }, $class;

    $self->{testdir} = tempdir('p3x-test-XXXXXXXXXX', TMPDIR => 1,
        CLEANUP => 0);
    chmod 0755, $self->{testdir};

    push @INSTANCES, $self;
    weaken($INSTANCES[-1]);

    return $self;
}

sub testdir { $_[0]{testdir} }


# ---- requirements ---------------------------------------------------------

sub skip_all {
    my ($self, $why) = @_;
    Test::More::plan(skip_all => $why);
}

sub _need_exec {
    my ($self, $path, $what) = @_;
    $self->skip_all("$what not found ($path)") unless -x $path;
    return $self;
}

sub _need_file {
    my ($self, $path, $what) = @_;
    $self->skip_all("$what not found ($path)") unless -f $path;
    return $self;
}

sub has_nginx {
    my ($self) = @_;
    $self->_need_exec($NGINX, 'nginx binary (TEST_NGINX_BINARY)');
    $self->_need_file($MAIL_MODULE,
        'nginx mail module (TEST_NGINX_MAIL_MODULE)');
    $self->_need_file($MODULE,
        'ngx_mail_pop3_ext_module, run make (TEST_NGINX_MODULE)');
    return $self;
}

sub has_redis {
    my ($self) = @_;
    $self->_need_exec($REDIS_SERVER, 'redis-server');
    $self->{want_redis} = 1;
    return $self;
}

sub has_cli {
    my ($self) = @_;
    $self->_need_exec($CLI, 'pop3ext, run make (TEST_NGINX_CLI)');
    return $self;
}

# has_prog('curl'): a program in PATH; returns its path in list context

sub has_prog {
    my ($self, $prog) = @_;
    my $path = find_prog($prog);
    $self->skip_all("$prog not found in PATH") unless defined $path;
    $self->{progs}{$prog} = $path;
    return $self;
}

sub prog { $_[0]{progs}{$_[1]} // find_prog($_[1]) }

sub find_prog {
    my ($prog) = @_;
    return (-x $prog ? $prog : undef) if $prog =~ m{/};
    for my $dir (split /:/, $ENV{PATH} // '') {
        my $p = "$dir/$prog";
        return $p if -f $p && -x _;
    }
    return undef;
}

# Tests planned by the test file; one more is added: at stop, the error
# log is checked for alerts, crashes and sanitizer reports.

sub plan {
    my ($self, $n) = @_;
    $self->{planned} = 1;
    Test::More::plan(tests => $n + 1);
    return $self;
}

# alerts that a test provokes on purpose and that must not fail it

sub allow_alerts {
    my ($self, @re) = @_;
    push @{$self->{allowed_alerts}}, @re;
    return $self;
}


# ---- ports ----------------------------------------------------------------

# A port for placeholder number $n (%%PORT_8110%%): random, free on
# 127.0.0.1, and reserved against other test files running in parallel
# (prove -j) by an flock held until this process exits.  Chosen below the
# Linux ephemeral range, so that outgoing connections do not take it.

my $PORT_LOCK_DIR = File::Spec->tmpdir() . '/p3x-test-ports';

sub port {
    my ($self, $n) = @_;

    return $self->{ports}{$n} if defined $self->{ports}{$n};

    mkdir $PORT_LOCK_DIR, 01777 unless -d $PORT_LOCK_DIR;

    my %taken = map { $_ => 1 } values %{$self->{ports}};

    for (1 .. 1000) {
        my $port = 20000 + int(rand(12000));
        next if $taken{$port};

        my $file = "$PORT_LOCK_DIR/$port";
        sysopen(my $fh, $file, O_RDWR | O_CREAT, 0666) or next;
        unless (flock($fh, LOCK_EX | LOCK_NB)) {
            close $fh;
            next;
        }

        my $probe = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => $port,
            Proto => 'tcp',
            ReuseAddr => 1,
            Listen => 1,
        );
        unless ($probe) {
            close $fh;
            next;
        }
        close $probe;

        push @{$self->{port_locks}}, $fh;
        return $self->{ports}{$n} = $port;
    }

    die "no free port found for PORT_$n\n";
}


# ---- files and configuration ----------------------------------------------

sub write_file {
    my ($self, $name, $content) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{testdir}/$name";
    open my $fh, '>', $path or die "can't create $path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh or die "can't write $path: $!\n";
    return $self;
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{testdir}/$name";
    open my $fh, '<', $path or return '';
    binmode $fh;
    local $/;
    my $content = <$fh>;
    close $fh;
    return $content // '';
}

# the main-context lines every configuration starts with

sub test_globals {
    my ($self) = @_;
    my $d = $self->{testdir};
    my $s = "load_module $MAIL_MODULE;\n"
        . "load_module $MODULE;\n"
        . "\n"
        . "daemon off;\n"
        . "pid $d/nginx.pid;\n"
        . "error_log $d/error.log debug;\n"
        . "worker_processes 1;\n";
    $s .= "$ENV{TEST_NGINX_GLOBALS}\n" if $ENV{TEST_NGINX_GLOBALS};
    return $s;
}

sub expand {
    my ($self, $text) = @_;

    $text =~ s/%%TEST_GLOBALS%%/$self->test_globals()/ge;
    $text =~ s/%%TESTDIR%%/$self->{testdir}/g;
    $text =~ s/%%MAIL_MODULE%%/$MAIL_MODULE/g;
    $text =~ s/%%MODULE%%/$MODULE/g;
    $text =~ s/%%PORT_(\d+)%%/$self->port($1)/ge;

    return $text;
}

# nginx.conf without a load_module line at its start and without
# %%TEST_GLOBALS%% gets the globals put in front of it, so that every
# configuration loads the mail core first, then the module

sub write_file_expand {
    my ($self, $name, $content) = @_;

    if ($name eq 'nginx.conf' && $content !~ /%%TEST_GLOBALS%%/
        && $content !~ /\A\s*load_module\b/)
    {
        $content = "%%TEST_GLOBALS%%\n" . $content;
    }

    return $self->write_file($name, $self->expand($content));
}

# The usual configuration: one POP3 server on PORT_8110 talking to the
# Redis of this test on PORT_8379.  Options add lines to the main context
# (main), the mail block (mail) or the server block (server); redis gives
# the pop3_ext_redis parameters (address and options); max_errors
# is 1000 unless given (the module counts every -ERR, and nginx's default
# of 5 would end sessions that test many errors).

sub pop3_conf {
    my ($self, %o) = @_;

    my $main = $o{main} // '';
    my $mail = $o{mail} // '';
    my $server = $o{server} // '';
    my $redis = $o{redis} // '127.0.0.1:%%PORT_8379%%';
    $server = "        max_errors 1000;\n$server"
        unless $server =~ /\bmax_errors\b/;

    # files that test many wrong passwords would be blocked or slowed by
    # the abuse limits meant for a real network; t/033 tests those
    $server = "        pop3_ext_auth_block_addr 0;\n$server"
        unless "$mail$server" =~ /\bpop3_ext_auth_block_addr\b/;
    $server = "        pop3_ext_auth_fail_delay 100ms;\n$server"
        unless "$mail$server" =~ /\bpop3_ext_auth_fail_delay\b/;

    return <<"EOF";
%%TEST_GLOBALS%%
$main
events {
}

mail {
    auth_http 127.0.0.1:1/unused;    # required by the mail core, unused
$mail
    server {
        listen 127.0.0.1:%%PORT_8110%%;
        protocol pop3_ext;
        pop3_ext_redis $redis;
$server
    }
}
EOF
}

# the usual configuration, written and run

sub run_pop3 {
    my ($self, %o) = @_;
    $self->write_file_expand('nginx.conf', $self->pop3_conf(%o));
    return $self->run();
}

sub pop3_port { $_[0]->port(8110) }


# ---- processes ------------------------------------------------------------

# fork and exec @cmd with stdout and stderr appended to $out; the child
# gets SIGTERM when this process dies, so that nothing outlives a test
# killed hard (prctl(PR_SET_PDEATHSIG), on Linux x86-64 and arm64)

sub _spawn {
    my ($self, $env, $out, @cmd) = @_;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        eval {
            require Config;
            my $arch = $Config::Config{archname};
            my $nr = $arch =~ /x86_64/ ? 157 : $arch =~ /aarch64/ ? 167
                : undef;
            syscall($nr, 1, 15) if defined $nr;
        };
        $SIG{$_} = 'DEFAULT' for qw/ INT TERM HUP /;
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        @ENV{keys %$env} = values %$env;
        { no warnings q/exec/; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }

    return $pid;
}

# wait up to $timeout seconds for $pid to exit; its status or undef

sub _reap {
    my ($pid, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r == -1;
        return undef if time() > $deadline;
        sleep(0.02);
    }
}

sub _stop_pid {
    my ($pid, $sig, $timeout) = @_;
    kill $sig, $pid;
    my $st = _reap($pid, $timeout);
    return ($st, 0) if defined $st;
    kill 'KILL', $pid;
    return (_reap($pid, 5), 1);
}


# ---- nginx ----------------------------------------------------------------

sub run {
    my ($self) = @_;

    my $d = $self->{testdir};

    # nginx and every module the configuration loads must be there

    $self->_need_exec($NGINX, 'nginx binary (TEST_NGINX_BINARY)');
    my $conf = $self->read_file('nginx.conf');
    die "no nginx.conf written\n" unless length $conf;
    while ($conf =~ /^\s*load_module\s+"?([^";\s]+)"?\s*;/mg) {
        my $m = $1;
        $m = "$d/$m" unless $m =~ m{^/};
        $self->skip_all("module not found: $m"
            . ($m eq $MODULE ? ' (run make, or set TEST_NGINX_MODULE)' : ''))
            unless -f $m;
    }

    $self->run_redis() if $self->{want_redis} && !$self->{redis_pid};
    my %env;

    if ($ENV{TEST_NGINX_ASAN}) {
        my $lib = `gcc -print-file-name=libasan.so 2>/dev/null`;
        chomp $lib;
        $self->skip_all("libasan.so not found (gcc -print-file-name)")
            unless $lib && $lib =~ m{/} && -e $lib;
        $env{LD_PRELOAD} = $lib;
        $env{ASAN_OPTIONS} = 'detect_leaks=0:abort_on_error=0';
        $env{UBSAN_OPTIONS} = 'print_stacktrace=1';
    }

    unlink "$d/nginx.pid";

    my @cmd = ($NGINX, '-p', "$d/", '-c', "$d/nginx.conf",
        '-e', "$d/error.log");

    Test::More::note("starting: @cmd") if $VERBOSE;

    my $pid = $self->_spawn(\%env, "$d/stderr", @cmd);
    $self->{nginx_pid} = $pid;

    # the master creates the pid file after it has opened the listening
    # sockets, so once it is there the ports accept connections

    my $deadline = time() + 15;
    while (!-s "$d/nginx.pid") {
        my $st = _reap($pid, 0);
        if (defined $st) {
            delete $self->{nginx_pid};
            my $log = $self->_log_tail();
            die "nginx exited on start (status $st):\n$log\n";
        }
        if (time() > $deadline) {
            die "nginx did not start within 15 s:\n"
                . $self->_log_tail() . "\n";
        }
        sleep(0.02);
    }

    return $self;
}

# like run(), but a configuration nginx refuses skips the file: for
# features the binary may lack

sub try_run {
    my ($self, $why) = @_;
    eval { $self->run(); };
    if ($@) {
        $self->skip_all("$why: $@");
    }
    return $self;
}

sub nginx_pid { $_[0]{nginx_pid} }

sub nginx_running {
    my ($self) = @_;
    return 0 unless $self->{nginx_pid};
    return !defined _reap($self->{nginx_pid}, 0);
}

sub _log_tail {
    my ($self) = @_;
    my $log = $self->read_file('error.log') . $self->read_file('stderr');
    my @l = grep { !/\[debug\]/ } split /\n/, $log;
    @l = @l[-30 .. -1] if @l > 30;
    return join("\n", @l);
}

sub stop_nginx {
    my ($self) = @_;

    my $pid = delete $self->{nginx_pid} or return;

    # open client connections would keep a gracefully stopping worker
    # alive: close them first

    Test::Nginx::POP3::close_all() if defined &Test::Nginx::POP3::close_all;

    my ($st, $killed) = _stop_pid($pid, 'QUIT', 10);
    if ($killed) {
        push @{$self->{stop_problems}},
            'nginx did not exit within 10 s of SIGQUIT (killed)';
    }

    return $self;
}

sub error_log { $_[0]->read_file('error.log') }

# wait up to $timeout seconds until the error log matches $re; the match
# or undef

sub wait_for_log {
    my ($self, $re, $timeout) = @_;
    my $deadline = time() + ($timeout // 5);
    while (1) {
        my $log = $self->error_log();
        return $1 // $& if $log =~ $re;
        return undef if time() > $deadline;
        sleep(0.05);
    }
}

# error log lines not at debug level

sub log_lines {
    my ($self) = @_;
    return grep { !/\[debug\]/ } split /\n/, $self->error_log();
}

sub _check_logs {
    my ($self) = @_;

    my @problems = @{$self->{stop_problems} || []};
    my $log = $self->read_file('error.log');
    my $err = $self->read_file('stderr');

    for my $l (split /\n/, $log) {
        next unless $l =~ /\[(alert|emerg|crit)\]|exited on signal/;
        next if grep { $l =~ $_ } @{$self->{allowed_alerts}};
        push @problems, $l;
    }

    if ($ENV{TEST_NGINX_ASAN}) {
        for my $l (split /\n/, $log . "\n" . $err) {
            push @problems, $l
                if $l =~ /ERROR: AddressSanitizer|runtime error:/;
        }
    }

    return @problems;
}


# ---- Redis ----------------------------------------------------------------

sub redis_port { $_[0]->port(8379) }

sub run_redis {
    my ($self) = @_;

    $self->_need_exec($REDIS_SERVER, 'redis-server');

    my $d = $self->{testdir};
    my $port = $self->redis_port();

    my @cmd = ($REDIS_SERVER, '--save', '', '--appendonly', 'no',
        '--bind', '127.0.0.1', '--port', $port, '--dir', $d,
        '--daemonize', 'no', '--logfile', "$d/redis.log",
        '--protected-mode', 'no');
    push @cmd, '--requirepass', $self->{redis_password}
        if defined $self->{redis_password};

    my $pid = $self->_spawn({}, "$d/redis.out", @cmd);
    $self->{redis_pid} = $pid;

    my $deadline = time() + 10;
    while (1) {
        my $r = eval { $self->redis_cmd('PING') };
        last if defined $r && $r eq 'PONG';
        $self->_redis_close();
        if (defined _reap($pid, 0)) {
            delete $self->{redis_pid};
            die "redis-server exited on start:\n"
                . $self->read_file('redis.log')
                . $self->read_file('redis.out') . "\n";
        }
        die "redis-server did not answer PING within 10 s\n"
            if time() > $deadline;
        sleep(0.02);
    }

    return $self;
}

sub start_redis { $_[0]->run_redis() }

# stop Redis the hard way (SIGKILL by default: nothing is saved, clients
# see the connection reset), or with another signal

sub stop_redis {
    my ($self, $sig) = @_;
    $self->_redis_close();
    my $pid = delete $self->{redis_pid} or return $self;
    _stop_pid($pid, $sig // 'KILL', 10);
    return $self;
}

sub redis_pid { $_[0]{redis_pid} }

# a second POP3 server block for pop3_conf(mail => ...): PORT_$n, the same
# Redis (or redis => 'address [options]'), extra directives; listen =>
# 'ssl' adds parameters to the listen directive

sub pop3_server {
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

sub redis_running {
    my ($self) = @_;
    return 0 unless $self->{redis_pid};
    return !defined _reap($self->{redis_pid}, 0);
}

sub _redis_close {
    my ($self) = @_;
    close delete $self->{redis_sock} if $self->{redis_sock};
    $self->{redis_buf} = '';
}

sub _redis_sock {
    my ($self) = @_;

    return $self->{redis_sock} if $self->{redis_sock};

    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $self->redis_port(),
        Proto => 'tcp',
        Timeout => 5,
    ) or die "can't connect to redis on port " . $self->redis_port()
        . ": $!\n";

    binmode $s;
    $s->blocking(0);
    $self->{redis_buf} = '';
    $self->{redis_sock} = $s;

    if (defined $self->{redis_password}) {
        my ($r) = $self->redis_pipeline(['AUTH', $self->{redis_password}]);
    }

    return $s;
}

# has_redis_password: Redis runs with requirepass; the harness's client
# and pop3ext (POP3EXT_REDIS_PASSWORD) authenticate

sub has_redis_password {
    my ($self, $password) = @_;
    $self->{redis_password} = $password;
    return $self;
}

sub _resp_encode {
    my @args = @_;
    my $s = '*' . scalar(@args) . "\r\n";
    for my $a (@args) {
        $a = '' unless defined $a;
        utf8::encode($a) if utf8::is_utf8($a);
        $s .= '$' . length($a) . "\r\n" . $a . "\r\n";
    }
    return $s;
}

sub _redis_fill {
    my ($self, $need_line, $need_len, $deadline) = @_;

    # read until the buffer holds a line ($need_line) or $need_len octets

    my $s = $self->{redis_sock};
    my $sel = IO::Select->new($s);

    while (1) {
        if ($need_line) {
            return if index($self->{redis_buf}, "\r\n") >= 0;
        } else {
            return if length($self->{redis_buf}) >= $need_len;
        }

        my $left = $deadline - time();
        die "redis: reply timed out\n" if $left <= 0;
        next unless $sel->can_read($left);

        my $n = sysread($s, $self->{redis_buf}, 1 << 20,
            length $self->{redis_buf});
        next if !defined $n && ($! == EINTR || $! == EAGAIN);
        die "redis: read failed: $!\n" unless defined $n;
        die "redis: connection closed\n" if $n == 0;
    }
}

sub _redis_reply {
    my ($self, $deadline) = @_;

    $self->_redis_fill(1, 0, $deadline);
    my $i = index($self->{redis_buf}, "\r\n");
    my $line = substr($self->{redis_buf}, 0, $i + 2, '');
    substr($line, -2) = '';

    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));

    return $rest if $type eq '+';
    return Test::Nginx::RedisError->new($rest) if $type eq '-';
    return 0 + $rest if $type eq ':';

    if ($type eq '$') {
        return undef if $rest < 0;
        $self->_redis_fill(0, $rest + 2, $deadline);
        my $v = substr($self->{redis_buf}, 0, $rest + 2, '');
        substr($v, -2) = '';
        return $v;
    }

    if ($type eq '*') {
        return undef if $rest < 0;
        return [ map { $self->_redis_reply($deadline) } 1 .. $rest ];
    }

    die "redis: unexpected reply line '$line'\n";
}

# one command; the parsed reply: a string, a number, undef, an array
# reference, or a Test::Nginx::RedisError object (false in boolean
# context, its text when printed)

sub redis_cmd {
    my ($self, @args) = @_;
    my ($r) = $self->redis_pipeline([@args]);
    return $r;
}

# several commands in one write; the list of their replies

sub redis_pipeline {
    my ($self, @cmds) = @_;

    my $s = $self->_redis_sock();
    my $deadline = time() + 60;

    my $out = join('', map { _resp_encode(@$_) } @cmds);
    my $sent = 0;
    my @replies;

    # the socket is non-blocking: write and read at the same time, so that
    # a long pipeline cannot deadlock on full socket buffers

    while (@replies < @cmds) {
        die "redis: pipeline timed out\n" if time() > $deadline;

        my $rsel = IO::Select->new($s);
        my $wsel = $sent < length($out) ? IO::Select->new($s) : undef;
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, 0.5);

        if ($w && @$w) {
            my $n = syswrite($s, $out, 1 << 20, $sent);
            die "redis: write failed: $!\n"
                if !defined $n && $! != EINTR && $! != EAGAIN;
            $sent += $n if $n;
        }

        if ($r && @$r) {
            my $n = sysread($s, $self->{redis_buf}, 1 << 20,
                length $self->{redis_buf});
            die "redis: connection closed\n" if defined $n && $n == 0;
            die "redis: read failed: $!\n"
                if !defined $n && $! != EINTR && $! != EAGAIN;
        }

        while (@replies < @cmds && $self->_redis_complete()) {
            push @replies, $self->_redis_reply($deadline);
        }
    }

    return @replies;
}

# whether the buffer holds at least one complete reply

sub _redis_complete {
    my ($self) = @_;
    my $pos = 0;
    return _resp_skip(\$self->{redis_buf}, \$pos);
}

sub _resp_skip {
    my ($buf, $pos) = @_;
    my $i = index($$buf, "\r\n", $$pos);
    return 0 if $i < 0;
    my $type = substr($$buf, $$pos, 1);
    my $rest = substr($$buf, $$pos + 1, $i - $$pos - 1);
    $$pos = $i + 2;
    if ($type eq '$') {
        return 1 if $rest < 0;
        return 0 if length($$buf) < $$pos + $rest + 2;
        $$pos += $rest + 2;
        return 1;
    }
    if ($type eq '*') {
        return 1 if $rest < 0;
        for (1 .. $rest) {
            return 0 unless _resp_skip($buf, $pos);
        }
    }
    return 1;
}


# ---- the data model, read from the C header -------------------------------

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

# deliver many messages to one user quickly: one pipeline of EVALs of the
# DELIVER script taken from the header, so that the test never has its own
# copy of it.  Messages must already have CRLF line ends.  Returns the UIDs.

sub deliver_fast {
    my ($self, $user, @messages) = @_;

    my $mbox = $self->mailbox_of($user);
    my $script = $self->model('P3X_SCRIPT_DELIVER');
    my $index = $self->mbox_key($mbox, 'INDEX');
    my $prefix = $self->mbox_key($mbox, 'MSG');

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
            [ 'EVALSHA', $sha, 2, $index, $prefix . $uid, $_, $uid ]
        } @chunk);
        for (@r) {
            die "deliver script failed: $_\n" if ref $_ ne 'ARRAY';
        }
        push @uids, map { $_->[0] } @r;
    }

    return @uids;
}


# ---- the command-line tool ------------------------------------------------

# run pop3ext with the Redis of this test; a hash reference as the last
# argument gives options: stdin => text, redis => 'host:port' (instead of
# ours; undef for no -r at all), timeout => seconds.
# Returns (exit code, stdout, stderr).

sub pop3ext {
    my ($self, @args) = @_;

    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};

    my @cmd = ($CLI);
    my $redis = exists $o->{redis} ? $o->{redis}
        : '127.0.0.1:' . $self->redis_port();
    push @cmd, '-r', $redis if defined $redis;
    push @cmd, @args;

    if (defined $self->{redis_password}) {
        $o->{env} = { POP3EXT_REDIS_PASSWORD => $self->{redis_password},
                      %{$o->{env} || {}} };
    }

    return $self->run_cmd(\@cmd, $o);
}

# run a command: (exit code, stdout, stderr); options stdin, timeout, env

sub run_cmd {
    my ($self, $cmd, $o) = @_;

    $o ||= {};
    my $d = $self->{testdir};

    my ($in_fh, $in) = tempfile('cmd-in-XXXXXX', DIR => $d, UNLINK => 1);
    binmode $in_fh;
    print $in_fh $o->{stdin} if defined $o->{stdin};
    close $in_fh;

    my ($out_fh, $out) = tempfile('cmd-out-XXXXXX', DIR => $d, UNLINK => 1);
    my ($err_fh, $err) = tempfile('cmd-err-XXXXXX', DIR => $d, UNLINK => 1);
    close $out_fh;
    close $err_fh;

    Test::More::note("run: @$cmd") if $VERBOSE;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw/ INT TERM HUP /;
        POSIX::setpgid(0, 0);
        open STDIN, '<', $in or POSIX::_exit(127);
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>', $err or POSIX::_exit(127);
        @ENV{keys %{$o->{env}}} = values %{$o->{env}} if $o->{env};
        { no warnings q/exec/; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }

    my $st = _reap($pid, $o->{timeout} // 30);
    unless (defined $st) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        _reap($pid, 5);
        $st = -1;
    }

    my $code = $st == -1 ? -1
        : ($st & 127) ? 128 + ($st & 127)
        : $st >> 8;

    my ($so, $se) = ($self->read_file($out), $self->read_file($err));
    unlink $in, $out, $err;

    if ($VERBOSE) {
        Test::More::note("exit $code");
        Test::More::note("stdout: $so") if length $so;
        Test::More::note("stderr: $se") if length $se;
    }

    return ($code, $so, $se);
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


# ---- TLS material and password hashes -------------------------------------

# has_ssl: skip the file unless openssl (to make certificates),
# IO::Socket::SSL (to talk TLS) and nginx's mail TLS are there

sub has_ssl {
    my ($self) = @_;
    $self->has_prog('openssl');
    $self->skip_all('IO::Socket::SSL not installed')
        unless eval { require IO::Socket::SSL; 1 };
    my $v = `$NGINX -V 2>&1`;
    $self->skip_all('nginx built without --with-mail_ssl_module')
        if defined $v && length $v && $v !~ /--with-mail_ssl_module/;
    return $self;
}

sub _openssl {
    my ($self, @args) = @_;
    my ($rc, $out, $err) = $self->run_cmd([ $self->prog('openssl'), @args ],
        { timeout => 60 });
    die "openssl @args failed ($rc): $err$out\n" if $rc != 0;
    return $self;
}

# a self-signed certificate NAME.crt and its key NAME.key in the test
# directory, for subject CN=$cn, also named by subjectAltName DNS:$cn and
# IP:127.0.0.1 (so that clients that verify can be pointed at it);
# returns the paths (crt, key)

sub make_self_signed {
    my ($self, $name, $cn, %o) = @_;
    my $d = $self->{testdir};
    $self->_openssl('req', '-x509', '-newkey', $o{key} // 'rsa:2048',
        '-nodes', '-days', '2', '-subj', "/CN=$cn",
        '-addext', "subjectAltName=DNS:$cn,IP:127.0.0.1",
        '-keyout', "$d/$name.key", '-out', "$d/$name.crt");
    return ("$d/$name.crt", "$d/$name.key");
}

# a certificate authority NAME.crt / NAME.key (self-signed, CA:true)

sub make_ca {
    my ($self, $name, $cn) = @_;
    my $d = $self->{testdir};
    $self->_openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes',
        '-days', '2', '-subj', "/CN=" . ($cn // 'p3x test CA'),
        '-addext', 'basicConstraints=critical,CA:true',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-keyout', "$d/$name.key", '-out', "$d/$name.crt");
    return ("$d/$name.crt", "$d/$name.key");
}

# a certificate NAME.crt / NAME.key for subject CN=$cn signed by the CA
# $ca (a name given to make_ca); a client certificate unless server => 1

sub make_signed {
    my ($self, $name, $cn, $ca, %o) = @_;
    my $d = $self->{testdir};
    my $usage = $o{server} ? 'serverAuth' : 'clientAuth';
    $self->write_file("$name.ext",
        "basicConstraints=CA:false\nextendedKeyUsage=$usage\n");
    $self->_openssl('req', '-newkey', 'rsa:2048', '-nodes',
        '-subj', "/CN=$cn", '-keyout', "$d/$name.key",
        '-out', "$d/$name.csr");
    $self->_openssl('x509', '-req', '-in', "$d/$name.csr", '-days', '2',
        '-CA', "$d/$ca.crt", '-CAkey', "$d/$ca.key", '-CAcreateserial',
        '-extfile', "$d/$name.ext", '-out', "$d/$name.crt");
    return ("$d/$name.crt", "$d/$name.key");
}

# a hash made by Dovecot's own "doveadm pw -s SCHEME -p PASSWORD", with
# its "{SCHEME}" prefix; undef when doveadm is missing or refuses

sub doveadm_pw {
    my ($self, $scheme, $password) = @_;
    my $doveadm = find_prog('doveadm') or return undef;
    my ($rc, $out, $err) = $self->run_cmd([ $doveadm, '-o',
        "base_dir=$self->{testdir}", 'pw', '-s', $scheme,
        '-p', $password ], { timeout => 30 });
    return undef if $rc != 0;
    $out =~ s/\s+\z//;
    return undef unless $out =~ /^\{\Q$scheme\E\}\S/;
    return $out;
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


# ---- a second nginx on the same Redis -------------------------------------

# $t->peer(): another harness object whose nginx (its own directory, its
# own ports, its own process) talks to the Redis of $t, as a second host
# of a cluster would.  Its error log is checked with $t's at the end, and
# it is stopped before $t's Redis.
#
#   my $t2 = $t->peer();
#   $t2->run_pop3(server => '...');
#   ... $t2->pop3_port ...

sub peer {
    my ($self) = @_;
    my $p = (ref $self)->new();
    $p->{ports}{8379} = $self->redis_port();
    $p->{is_peer} = 1;
    $p->{allowed_alerts} = $self->{allowed_alerts};
    push @{$self->{peers}}, $p;
    return $p;
}


# ---- the end --------------------------------------------------------------

sub stop {
    my ($self) = @_;

    return if $self->{stopped}++;

    my @peer_problems;
    for my $p (@{$self->{peers} || []}) {
        next if $p->{stopped};
        $p->stop_nginx();
        push @peer_problems, map { "peer: $_" } $p->_check_logs();
        $p->stop();
    }

    $self->stop_nginx();
    $self->stop_redis('TERM');

    if ($self->{planned} && !$self->{ran_final}++) {
        my @p = ($self->_check_logs(), @peer_problems);
        Test::More::ok(!@p, 'no alerts, crashes or sanitizer reports')
            or Test::More::diag(join("\n",
                @p > 20 ? (@p[0 .. 19], '...') : @p));
    }

    if ($ENV{TEST_NGINX_LEAVE}) {
        Test::More::diag("test directory left: $self->{testdir}");
    } else {
        rmtree($self->{testdir});
    }

    close $_ for @{$self->{port_locks}};
    $self->{port_locks} = [];
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop() unless $self->{stopped};
}

END {
    local $?;
    for my $t (grep { defined } @INSTANCES) {
        $t->stop();
    }
}


package Test::Nginx::RedisError;

use overload '""' => sub { $_[0]{text} }, 'bool' => sub { 0 },
    fallback => 1;

sub new { bless { text => $_[1] }, $_[0] }
sub text { $_[0]{text} }


1;

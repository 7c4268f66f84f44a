package Test::Nginx;

# The generic part of the test harness, with the interface of nginx's own
# test suite (nginx-tests, lib/Test/Nginx.pm): the same exported functions,
# methods, placeholders, environment variables and plan() accounting, so
# that every t/*.t file runs unchanged with this file or with nginx-tests'
# lib/ first on @INC.  This is the project's own code, written from that
# interface; the project's helpers (Redis, users, the CLI, the data model)
# are in Test::Nginx::POP3Ext.
#
#   my $t = Test::Nginx->new()->has(qw/mail/);
#   $t->write_file_expand('nginx.conf', <<'EOF');
#   %%TEST_GLOBALS%%
#   daemon off;
#   events {
#   }
#   ...listen 127.0.0.1:%%PORT_8110%%;...
#   EOF
#   $t->run()->plan(10);      # 10 + 2: "no alerts", "no sanitizer errors"
#
# Environment (as nginx-tests reads it):
#   TEST_NGINX_BINARY        nginx to run (default ../nginx/objs/nginx;
#                            Test::Nginx::POP3Ext makes /usr/sbin/nginx the
#                            default for this project)
#   TEST_NGINX_MODULES       where the dynamic modules nginx -V lists are
#                            (default: the binary's directory)
#   TEST_NGINX_GLOBALS       main-context lines for %%TEST_GLOBALS%%
#   TEST_NGINX_GLOBALS_HTTP  http-context lines for %%TEST_GLOBALS_HTTP%%
#   TEST_NGINX_GLOBALS_STREAM  stream lines for %%TEST_GLOBALS_STREAM%%
#   TEST_NGINX_LEAVE         keep the test directory
#   TEST_NGINX_VERBOSE       print what clients send and receive (log_in,
#                            log_out) and the error log of a failed try_run
#   TEST_NGINX_CATLOG        print the error log at the end
# and, this harness only:
#   TEST_NGINX_ASAN          preload libasan.so into nginx (a module built
#                            with -fsanitize=address: make test-asan); its
#                            reports land in error.log, which the
#                            "no sanitizer errors" test reads
#
# Where this file differs from nginx-tests, on purpose: no Windows and
# Solaris cases; an nginx started by run() gets SIGTERM when the test
# process dies (so it never outlives a killed test); %%TEST_GLOBALS%% loads
# a dynamic module that nginx -V lists only when its .so is there, and
# looks for it also in nginx's --modules-path; try_run() gives standard
# error back also when nginx fails to start.

use warnings;
use strict;

use base qw/ Exporter /;

our @EXPORT = qw/ log_in log_out http http_get http_head port /;
our @EXPORT_OK = qw/ http_gzip_request http_gzip_like http_start http_end
    http_content /;
our %EXPORT_TAGS = (gzip => [ qw/ http_gzip_request http_gzip_like / ]);

use File::Path qw/ rmtree /;
use File::Spec;
use File::Temp qw/ tempdir /;
use IO::Socket;
use POSIX qw/ WNOHANG /;
use Scalar::Util qw/ weaken /;
use Socket qw/ CRLF /;
use Test::More qw//;

our $NGINX = defined $ENV{TEST_NGINX_BINARY} ? $ENV{TEST_NGINX_BINARY}
    : '../nginx/objs/nginx';

# placeholder number -> { port => real port, socket => the lock }

our %ports = ();

# live objects, for END (a test that keeps $t referenced from a named sub
# would otherwise reach its end checks only in global destruction, after
# Test::More has closed the plan)

my @LIVE;


sub new {
    my ($class) = @_;

    my $self = bless {
        _pid => $$,
        _alerts => 1,
    }, ref $class || $class || __PACKAGE__;

    $self->{_testdir} = tempdir('nginx-test-XXXXXXXXXX', TMPDIR => 1)
        or die "Can't create temp directory: $!\n";

    Test::More::BAIL_OUT("no $NGINX binary found") unless -x $NGINX;

    push @LIVE, $self;
    weaken($LIVE[-1]);

    return $self;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@);

    return if $self->{_pid} != $$;
    return if $self->{_finished}++;

    $self->stop();
    $self->stop_daemons();

    if (Test::More->builder->expected_tests) {
        my $log = $self->read_file('error.log');

        {
            # todo_start, not "local $TODO": from an END block (where
            # this often runs) Test::Builder finds no package's $TODO
            my $tb = Test::More->builder;
            $tb->todo_start('alerts') unless $self->{_alerts};
            my @alerts = $log =~ /.+\[alert\].+/gm;
            Test::More::is(join("\n", @alerts), '', 'no alerts');
            $tb->todo_end() unless $self->{_alerts};
        }

        {
            local $Test::Nginx::TODO;
            my @reports = $log =~ /.+Sanitizer.+/gm;
            Test::More::is(join("\n", @reports), '', 'no sanitizer errors');
        }
    }

    if ($ENV{TEST_NGINX_CATLOG}) {
        system('cat', "$self->{_testdir}/error.log");
    }

    unless ($ENV{TEST_NGINX_LEAVE}) {
        eval { rmtree($self->{_testdir}); };
    }
}

END {
    for my $t (grep { defined } @LIVE) {
        $t->DESTROY();
    }
}


# ---- what the binary has ---------------------------------------------------

sub has {
    my ($self, @features) = @_;

    for my $f (@features) {
        next if $self->has_module($f) || $self->has_feature($f);
        Test::More::plan(skip_all => "no $f available");
    }

    return $self;
}

# nginx -V, once

sub _configure_args {
    my ($self) = @_;
    $self->{_configure_args} = `$NGINX -V 2>&1`
        unless defined $self->{_configure_args};
    return $self->{_configure_args};
}

# feature name -> what nginx -V must show.  Modules built by default are
# there unless a --without- option removed them; the others need their
# --with- option.

my %WITH = (
    sni => qr/TLS SNI support enabled/,
    mail => qr/--with-mail(?:=dynamic|(?!\S))/,
    stream => qr/--with-stream(?:=dynamic|(?!\S))/,
    stream_ssl => qr/--with-stream_ssl_module/,
    map {; $_ => qr/--with-http_${_}_module/ }
        qw/ flv perl auth_request realip sub /,
);

my %WITHOUT = (
    http => '--without-http(?!\S)',
    cache => '--without-http-cache',
    pcre => '--without-pcre',
    (map {; $_ => "--without-mail_${_}_module" } qw/ pop3 imap smtp /),
    (map {; $_ => "--without-http_${_}_module" } qw/ charset gzip ssi mirror
        userid access auth_basic autoindex geo map referer rewrite proxy
        fastcgi uwsgi scgi grpc memcached limit_conn limit_req empty_gif
        browser split_clients tunnel /),
    (map {; "upstream_$_" => "--without-http_upstream_${_}" } qw/ hash
        ip_hash least_conn least_time random keepalive zone sticky /),
    (map {; "stream_$_" => "--without-stream_${_}" } qw/ access geo
        limit_conn map pass return set split_clients upstream_hash
        upstream_least_conn upstream_least_time upstream_random
        upstream_zone /),
);

# modules that can be loaded through TEST_NGINX_GLOBALS instead

my %SO = (
    http_geoip => 'ngx_http_geoip_module',
    image_filter => 'ngx_http_image_filter_module',
    perl => 'ngx_http_perl_module',
    xslt => 'ngx_http_xslt_filter_module',
    mail => 'ngx_mail_module',
    stream => 'ngx_stream_module',
    stream_geoip => 'ngx_stream_geoip_module',
);

sub has_module {
    my ($self, $feature) = @_;

    my $args = $self->_configure_args();

    my $re = $WITH{$feature};
    $re = qr/\A(?!.*$WITHOUT{$feature})/s
        if !defined $re && defined $WITHOUT{$feature};
    $re = $feature unless defined $re;

    return 1 if $args =~ $re;

    my $so = $SO{$feature};
    if (defined $so && defined $ENV{TEST_NGINX_GLOBALS}) {
        return 1 if $ENV{TEST_NGINX_GLOBALS}
            =~ /load_module\s+[^;]*\Q$so\E[-\w]*\.so\s*;/;
    }

    return 0;
}

sub has_feature {
    my ($self, $feature) = @_;

    return 1 if $feature eq 'symlink' || $feature eq 'unix'
        || $feature eq 'udp';

    if ($feature =~ /^socket_ssl/) {
        return 0 unless eval { require IO::Socket::SSL;
            IO::Socket::SSL::SSL_VERIFY_NONE(); 1 };
        return 1 if $feature eq 'socket_ssl';
        return eval { IO::Socket::SSL->can_client_sni() } ? 1 : 0
            if $feature eq 'socket_ssl_sni';
        return eval { IO::Socket::SSL->can_alpn() } ? 1 : 0
            if $feature eq 'socket_ssl_alpn';
        return IO::Socket::SSL->can('get_sslversion') ? 1 : 0
            if $feature eq 'socket_ssl_sslversion';
        return IO::Socket::SSL->can('get_session_reused') ? 1 : 0
            if $feature eq 'socket_ssl_reused';
        return 0;
    }

    if ($feature =~ /^(openssl|libressl):([0-9.]+)([a-z]*)/) {
        my ($lib, $need, $letters) = ($1, $2, $3);
        $self->_configure_args() =~ /with $lib ([0-9.]+)([a-z]*)/i
            or return 0;
        return _version_ge([ split(/\./, $1), unpack('C*', $2) ],
            [ split(/\./, $need), unpack('C*', $letters) ]);
    }

    if ($feature eq 'cryptx') {
        return eval { require Crypt::Misc; $Crypt::Misc::VERSION >= 0.067 }
            ? 1 : 0;
    }

    return 0;
}

# whether version @$have is at least @$need, part by part

sub _version_ge {
    my ($have, $need) = @_;
    my @h = @$have;
    for my $n (@$need) {
        my $v = shift(@h) || 0;
        return 0 if $n > $v;
        return 1 if $v > $n;
    }
    return 1;
}

sub has_version {
    my ($self, $need) = @_;
    my ($v) = $self->_configure_args() =~ m!nginx version: nginx/([0-9.]+)!;
    return _version_ge([ split /\./, $v // '0' ], [ split /\./, $need ]);
}

sub has_daemon {
    my ($self, $daemon) = @_;
    Test::More::plan(skip_all => "$daemon not found")
        unless `which $daemon 2>/dev/null`;
    return $self;
}

sub plan {
    my ($self, $plan) = @_;
    Test::More::plan(tests => $plan + 2);
    return $self;
}

sub todo_alerts {
    my ($self) = @_;
    $self->{_alerts} = 0;
    return $self;
}


# ---- nginx -----------------------------------------------------------------

# the -g option: only when the configuration has no %%TEST_GLOBALS%% (which
# already names the pid file and the error log)

sub _globals_opt {
    my ($self) = @_;
    return () if $self->{_test_globals};
    my $d = $self->{_testdir};
    return ('-g', "pid $d/nginx.pid; error_log $d/error.log debug;");
}

sub run {
    my ($self, $conf) = @_;

    my $d = $self->{_testdir};

    if (defined $conf) {
        open my $fh, '<', $conf or die "Can't open $conf: $!\n";
        local $/;
        $self->write_file_expand('nginx.conf', scalar <$fh>);
        close $fh;
    }

    my @cmd = ($NGINX, '-p', "$d/", '-c', 'nginx.conf', '-e', 'error.log',
        $self->_globals_opt());

    my $pid = fork();
    die "Unable to fork(): $!\n" unless defined $pid;

    if ($pid == 0) {
        _die_with_parent();
        _asan_env() if $ENV{TEST_NGINX_ASAN};
        exec(@cmd) or die "Unable to exec(): $!\n";
    }

    $self->waitforfile("$d/nginx.pid", $pid)
        or die "Can't start nginx";

    $self->{_started} = 1;
    return $self;
}

# in the child of fork(): SIGTERM when the test process dies, also when it
# is killed (prctl(PR_SET_PDEATHSIG), Linux on x86-64 and arm64)

sub _die_with_parent {
    require Config;
    my $arch = $Config::Config{archname};
    my $nr = $arch =~ /x86_64/ ? 157 : $arch =~ /aarch64/ ? 167 : undef;
    syscall($nr, 1, 15) if defined $nr;
}

sub _asan_env {
    my $lib = `gcc -print-file-name=libasan.so 2>/dev/null`;
    chomp $lib;
    die "libasan.so not found (gcc -print-file-name)\n"
        unless $lib =~ m{/} && -e $lib;
    $ENV{LD_PRELOAD} = $lib;
    $ENV{ASAN_OPTIONS} //= 'detect_leaks=0:abort_on_error=0';
    $ENV{UBSAN_OPTIONS} //= 'print_stacktrace=1';
}

sub try_run {
    my ($self, $message) = @_;

    open my $stderr, '>&', \*STDERR or die "Can't dup STDERR: $!\n";
    close STDERR;
    eval { $self->run(); };
    my $error = $@;
    open STDERR, '>&', $stderr or die "Can't restore STDERR: $!\n";

    return $self unless $error;

    if ($ENV{TEST_NGINX_VERBOSE}) {
        open my $fh, '<', "$self->{_testdir}/error.log"
            or die "Can't open error.log: $!";
        log_core($_) while <$fh>;
        close $fh;
    }

    Test::More::plan(skip_all => $message);
    return $self;
}

sub dump_config {
    my ($self) = @_;
    my $d = $self->{_testdir};
    my $cmd = "$NGINX -T -p $d/ -c nginx.conf -e error.log "
        . join(' ', map { "'$_'" } $self->_globals_opt());
    return qx/$cmd 2>&1/;
}

# wait up to 5 s for $file, or until process $pid exits: 1, 0 or undef

sub waitforfile {
    my ($self, $file, $pid) = @_;
    my $exited;

    for (1 .. 50) {
        return 1 if -e $file;
        return 0 if $exited;
        $exited = waitpid($pid, WNOHANG) != 0 if $pid;
        select undef, undef, undef, 0.1;
    }

    return undef;
}

# wait up to 5 s until host:port accepts connections

sub waitforsocket {
    my ($self, $peer) = @_;

    for (1 .. 50) {
        my $s = IO::Socket::INET->new(Proto => 'tcp', PeerAddr => $peer);
        return 1 if defined $s;
        select undef, undef, undef, 0.1;
    }

    return undef;
}

sub reload {
    my ($self) = @_;
    return $self unless $self->{_started};
    kill 'HUP', $self->read_file('nginx.pid');
    return $self;
}

# SIGQUIT (graceful), up to 90 s, then SIGTERM

sub stop {
    my ($self) = @_;

    return $self unless $self->{_started};

    my $pid = $self->read_file('nginx.pid');
    $pid =~ s/\s+//g;

    kill 'QUIT', $pid;

    my $exited;
    for (1 .. 900) {
        $exited = waitpid($pid, WNOHANG) != 0;
        last if $exited;
        select undef, undef, undef, 0.1;
    }

    unless ($exited) {
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }

    $self->{_started} = 0;
    return $self;
}

sub stop_daemons {
    my ($self) = @_;

    while ($self->{_daemons} && @{$self->{_daemons}}) {
        my $pid = shift @{$self->{_daemons}};
        kill 'TERM', $pid;

        my $exited;
        for (1 .. 50) {
            $exited = waitpid($pid, WNOHANG) != 0;
            last if $exited;
            select undef, undef, undef, 0.1;
        }

        unless ($exited) {
            kill 'TERM', $pid;
            waitpid($pid, 0);
        }
    }

    return $self;
}

sub run_daemon {
    my ($self, $code, @args) = @_;

    my $pid = fork();
    die "Can't fork daemon: $!\n" unless defined $pid;

    if ($pid == 0) {
        if (ref $code eq 'CODE') {
            $code->(@args);
            exit 0;
        }
        exec($code, @args);
        exit 0;
    }

    push @{$self->{_daemons}}, $pid;
    return $self;
}


# ---- files -----------------------------------------------------------------

sub testdir {
    my ($self) = @_;
    return $self->{_testdir};
}

sub read_file {
    my ($self, $name) = @_;
    open my $fh, '<', "$self->{_testdir}/$name" or die "Can't open $name: $!";
    local $/;
    my $content = <$fh>;
    close $fh;
    return $content;
}

sub write_file {
    my ($self, $name, $content) = @_;
    open my $fh, '>', "$self->{_testdir}/$name"
        or die "Can't create $name: $!";
    binmode $fh;
    print $fh $content;
    close $fh;
    return $self;
}

sub write_file_expand {
    my ($self, $name, $content) = @_;

    $content =~ s/%%TEST_GLOBALS%%/$self->test_globals()/gmse;
    $content =~ s/%%TEST_GLOBALS_HTTP%%/$self->test_globals_http()/gmse;
    $content =~ s/%%TEST_GLOBALS_STREAM%%/$self->test_globals_stream()/gmse;
    $content =~ s/%%TESTDIR%%/$self->{_testdir}/gms;

    $content =~ s/127\.0\.0\.1:(8\d\d\d)/'127.0.0.1:' . port($1)/gmse;

    $content =~ s/%%PORT_(\d+)%%/port($1)/gmse;
    $content =~ s/%%PORT_(\d+)_UDP%%/port($1, udp => 1)/gmse;

    return $self->write_file($name, $content);
}

# the main-context lines of %%TEST_GLOBALS%%: the pid file and the error
# log in the test directory, TEST_NGINX_GLOBALS, the dynamic modules

sub test_globals {
    my ($self) = @_;

    return $self->{_test_globals} if defined $self->{_test_globals};

    my $d = $self->{_testdir};
    my $s = "pid $d/nginx.pid;\n" . "error_log $d/error.log debug;\n";
    $s .= $ENV{TEST_NGINX_GLOBALS} if $ENV{TEST_NGINX_GLOBALS};
    $s .= $self->test_globals_modules();
    $s .= $self->test_globals_perl5lib() if $s !~ /env PERL5LIB/;

    return $self->{_test_globals} = $s;
}

# load_module for every module nginx -V lists as dynamic, from
# TEST_NGINX_MODULES or the binary's directory (or, when the .so is not
# there, nginx's --modules-path)

sub test_globals_modules {
    my ($self) = @_;

    my @dirs = defined $ENV{TEST_NGINX_MODULES} ? ($ENV{TEST_NGINX_MODULES})
        : ((File::Spec->splitpath(File::Spec->rel2abs($NGINX)))[1]);
    push @dirs, $1 if !defined $ENV{TEST_NGINX_MODULES}
        && $self->_configure_args() =~ /--modules-path=(\S+)/;
    @dirs = map { my $x = File::Spec->rel2abs($_); $x =~ s{/+\z}{}; $x }
        @dirs;

    my $s = '';

    for my $m (
        [ 'http_geoip\S+=dynamic', 'ngx_http_geoip_module' ],
        [ 'image_filter\S+=dynamic', 'ngx_http_image_filter_module' ],
        [ 'perl\S+=dynamic', 'ngx_http_perl_module' ],
        [ 'xslt\S+=dynamic', 'ngx_http_xslt_filter_module' ],
        [ 'mail=dynamic', 'ngx_mail_module' ],
        [ 'stream=dynamic', 'ngx_stream_module' ],
        [ 'stream_geoip\S+=dynamic', 'ngx_stream_geoip_module' ],
    ) {
        my ($re, $name) = @$m;
        next unless $self->has_module($re);
        my ($dir) = grep { -e "$_/$name.so" } @dirs;
        $dir //= $dirs[0] if defined $ENV{TEST_NGINX_MODULES};
        $s .= "load_module $dir/$name.so;\n" if defined $dir;
    }

    return $s;
}

sub test_globals_perl5lib {
    my ($self) = @_;

    return '' unless $self->has_module('perl');

    my $objs = (File::Spec->splitpath(File::Spec->rel2abs($NGINX)))[1];
    $objs =~ s{/+\z}{};

    return "env PERL5LIB=$objs/src/http/modules/perl:"
        . "$objs/src/http/modules/perl/blib/arch;\n";
}

sub test_globals_http {
    my ($self) = @_;

    return $self->{_test_globals_http}
        if defined $self->{_test_globals_http};

    my $d = $self->{_testdir};
    my $s = "root $d;\n"
        . "access_log $d/access.log;\n"
        . "client_body_temp_path $d/client_body_temp;\n";

    for my $m (qw/ fastcgi proxy uwsgi scgi /) {
        $s .= "${m}_temp_path $d/${m}_temp;\n" if $self->has_module($m);
    }

    $s .= $ENV{TEST_NGINX_GLOBALS_HTTP} if $ENV{TEST_NGINX_GLOBALS_HTTP};

    return $self->{_test_globals_http} = $s;
}

sub test_globals_stream {
    my ($self) = @_;

    return $self->{_test_globals_stream}
        if defined $self->{_test_globals_stream};

    return $self->{_test_globals_stream} = $ENV{TEST_NGINX_GLOBALS_STREAM}
        // '';
}


# ---- ports -----------------------------------------------------------------

# port(8110): the real port of placeholder 8110.  The number itself if it
# is free, else a random one of the same block of 500 (8000..8499 here);
# taken for as long as this process lives by a UDP socket bound to it,
# which other test processes respect (prove -j).  port(N, udp => 1) takes
# a UDP port (held by a TCP listener); socket => 1 returns that lock
# socket instead of the number.

sub port {
    my ($num, %opts) = @_;

    unless (defined $ports{$num}) {
        my $tcp = sub {
            IO::Socket::INET->new(Proto => 'tcp', Listen => 1, Reuse => 1,
                LocalAddr => '127.0.0.1:' . $_[0]);
        };
        my $udp = sub {
            IO::Socket::INET->new(Proto => 'udp',
                LocalAddr => '127.0.0.1:' . $_[0]);
        };
        my ($try, $lock) = $opts{udp} ? ($udp, $tcp) : ($tcp, $udp);

        my ($port, $held, $probe) = ($num);

        for my $i (1 .. 10) {
            $port = int($num / 500) * 500 + int(rand(500)) if $i > 1;
            $held = $lock->($port) or next;
            $probe = $try->($port) and last;
            undef $held;
        }

        die "Port limit exceeded" unless $held && $probe;

        $ports{$num} = { port => $port, socket => $held };
    }

    return $ports{$num}{socket} if $opts{socket};
    return $ports{$num}{port};
}


# ---- verbose output --------------------------------------------------------

sub log_core {
    return unless $ENV{TEST_NGINX_VERBOSE};
    my ($prefix, $msg) = @_;
    ($prefix, $msg) = ('', $prefix) unless defined $msg;
    $prefix .= ' ' if length $prefix;

    if (length($msg) > 2048) {
        $msg = substr($msg, 0, 2048)
            . "(...logged only 2048 of " . length($msg) . " bytes)";
    }

    $msg =~ s/^/# $prefix/gm;
    $msg =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)
        . ($1 eq "\n" ? "\n" : '')/ge;
    $msg .= "\n" unless $msg =~ /\n\z/;
    print $msg;
}

sub log_out { log_core('>>', @_); }
sub log_in { log_core('<<', @_); }


# ---- HTTP, as nginx-tests' clients do it -----------------------------------

sub http_get {
    my ($url, %extra) = @_;
    return http("GET $url HTTP/1.0" . CRLF . "Host: localhost" . CRLF . CRLF,
        %extra);
}

sub http_head {
    my ($url, %extra) = @_;
    return http("HEAD $url HTTP/1.0" . CRLF . "Host: localhost" . CRLF
        . CRLF, %extra);
}

sub http {
    my ($request, %extra) = @_;
    my $s = http_start($request, %extra);
    return $s if $extra{start} || !defined $s;
    return http_end($s, %extra);
}

# connect (port 8080, or 8443 with SSL => 1), send the request (and body);
# the socket, or undef within 8 s

sub http_start {
    my ($request, %extra) = @_;
    my $s;

    my $ok = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        local $SIG{PIPE} = sub { die "sigpipe\n" };
        alarm(8);

        $s = $extra{socket} || IO::Socket::INET->new(
            Proto => 'tcp',
            PeerAddr => '127.0.0.1:' . port($extra{SSL} ? 8443 : 8080),
            %extra
        ) or die "Can't connect to nginx: $!\n";

        if ($extra{SSL}) {
            require IO::Socket::SSL;
            IO::Socket::SSL->start_SSL($s,
                SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(),
                %extra
            ) or die IO::Socket::SSL::errstr() . "\n";

            unless (defined $extra{SSL_startHandshake}) {
                log_in('ssl cipher: ' . $s->get_cipher());
                log_in('ssl cert: ' . $s->peer_certificate('issuer'));
            }
        }

        log_out($request);
        $s->print($request);

        select undef, undef, undef, $extra{sleep} if $extra{sleep};

        if (!$extra{aborted} && $extra{body}) {
            log_out($extra{body});
            $s->print($extra{body});
        }

        alarm(0);
        1;
    };
    alarm(0);

    unless ($ok) {
        log_in("died: $@");
        return undef;
    }

    return '' if $extra{aborted};
    return $s;
}

# read the whole response (8 s at most), close

sub http_end {
    my ($s) = @_;
    my $reply;

    my $ok = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        local $SIG{PIPE} = sub { die "sigpipe\n" };
        alarm(8);
        local $/;
        $reply = $s->getline();
        $s->close();
        alarm(0);
        1;
    };
    alarm(0);

    unless ($ok) {
        log_in("died: $@");
        return undef;
    }

    log_in($reply);
    return $reply;
}

sub http_gzip_request {
    my ($url) = @_;
    return http("GET $url HTTP/1.1" . CRLF . "Host: localhost" . CRLF
        . "Connection: close" . CRLF . "Accept-Encoding: gzip" . CRLF . CRLF);
}

# the body of a response, chunked transfer encoding undone
# ("[no-last-chunk]" appended when the last chunk is missing)

sub http_content {
    my ($text) = @_;

    return undef unless defined $text;
    return undef unless $text =~ /(.*?)\x0d\x0a?\x0d\x0a?(.*)/ms;

    my ($headers, $body) = ($1, $2);
    return $body unless $headers =~ /Transfer-Encoding: chunked/i;

    my ($content, $len) = ('', -1);
    while ($body =~ /\G\x0d?\x0a?([0-9a-f]+)\x0d\x0a?/gcmsi) {
        $len = hex $1;
        $content .= substr($body, pos($body), $len);
        pos($body) += $len;
    }
    $content .= '[no-last-chunk]' if $len != 0;

    return $content;
}

sub http_gzip_like {
    my ($text, $re, $name) = @_;

    SKIP: {
        Test::More::skip('IO::Uncompress::Gunzip not installed', 1)
            unless eval { require IO::Uncompress::Gunzip; 1 };

        my $in = http_content($text);
        my $out;
        IO::Uncompress::Gunzip::gunzip(\$in => \$out);
        Test::More->builder->like($out, $re, $name);
    }
}


1;

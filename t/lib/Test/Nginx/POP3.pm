package Test::Nginx::POP3;

# A small POP3 client for the tests: it sends exactly the octets it is
# given (so that pipelining, partial lines and bad bytes can be sent), reads
# replies with a deadline on every read (no test can hang on a silent
# server), and has the checks the test files use.
#
#   my $s = Test::Nginx::POP3->new(port => $t->pop3_port);   # greeting read
#   $s->ok('USER alice');
#   my ($status, $body) = $s->cmd_multi('RETR 1');

use strict;
use warnings;

use Test::More ();
use Errno qw/ EINTR EAGAIN /;
use IO::Select;
use IO::Socket::INET;
use Scalar::Util qw/ weaken /;
use Time::HiRes qw/ time /;

my $VERBOSE = $ENV{TEST_NGINX_VERBOSE};

our $TIMEOUT = 5;

my @OPEN;    # live clients, closed by close_all() before nginx stops


# new(port => P, [host => H], [timeout => S], [greeting => 0],
#     [ssl => 1], [ssl_opts => { IO::Socket::SSL options }],
#     [local => '127.0.0.2'])
# connects and, unless greeting => 0, reads the greeting into
# $s->{greeting}.  Dies when it cannot connect.  With ssl => 1 the TLS
# handshake is done first (implicit TLS, RFC 8314; certificates are not
# verified unless ssl_opts say so) and dies when it fails;
# $s->{handshake_done} is the time it completed, $s->{greeting_at} the
# time the greeting arrived.  local => A connects from source address A
# (any of 127.0.0.0/8 works on Linux): another client address.

sub new {
    my ($class, %o) = @_;

    my $self = bless {
        host => $o{host} // '127.0.0.1',
        port => $o{port},
        timeout => $o{timeout} // $TIMEOUT,
        buf => '',
        eof => 0,
    }, $class;

    die "Test::Nginx::POP3: no port\n" unless $self->{port};

    my $sock = IO::Socket::INET->new(
        PeerAddr => $self->{host},
        PeerPort => $self->{port},
        Proto => 'tcp',
        Timeout => $self->{timeout},
        (defined $o{local} ? (LocalAddr => $o{local}) : ()),
    ) or die "can't connect to $self->{host}:$self->{port}: $@\n";

    binmode $sock;
    $sock->autoflush(1);
    $sock->blocking(0);
    $self->{sock} = $sock;

    push @OPEN, $self;
    weaken($OPEN[-1]);

    if ($o{ssl}) {
        $self->start_tls(%{$o{ssl_opts} || {}})
            or die "TLS handshake with $self->{host}:$self->{port} failed: "
                . $self->{ssl_error} . "\n";
    }

    if ($o{greeting} // 1) {
        $self->{greeting} = $self->reply();
        $self->{greeting_at} = time();
    }

    return $self;
}

sub greeting { $_[0]{greeting} }
sub sock { $_[0]{sock} }


# ---- TLS ------------------------------------------------------------------

# the TLS handshake on the connection as it is (after "+OK" to STLS, or
# at once for implicit TLS), with IO::Socket::SSL options; 1 on success,
# 0 on failure ($s->{ssl_error} says why).  Nothing already buffered in
# plaintext is kept: what the server sent before the handshake is in
# $s->{plaintext_left}.

sub start_tls {
    my ($self, %opts) = @_;

    require IO::Socket::SSL;

    my $sock = $self->{sock} or return 0;

    $self->{plaintext_left} = $self->{buf};
    $self->{buf} = '';

    my $verify = exists $opts{SSL_verify_mode} ? $opts{SSL_verify_mode}
        : IO::Socket::SSL::SSL_VERIFY_NONE();

    _show('C:', '(TLS handshake)') if $VERBOSE;

    $sock->blocking(1);
    my $ok = IO::Socket::SSL->start_SSL($sock,
        SSL_verify_mode => $verify,
        SSL_hostname => '',
        Timeout => $self->{timeout},
        %opts,
        SSL_startHandshake => 1,
    );
    $self->{handshake_done} = time();

    unless ($ok) {
        $self->{ssl_error} = IO::Socket::SSL::errstr() || "$!";
        _show('S:', "(TLS handshake failed: $self->{ssl_error})")
            if $VERBOSE;
        # the socket may be unusable now: keep it only to close it
        $sock->blocking(0) if $sock->opened;
        return 0;
    }

    $sock->blocking(0);
    $self->{tls} = 1;

    return 1;
}

sub is_tls { $_[0]{tls} }

# the protocol version of the TLS channel, e.g. "TLSv1_3"

sub tls_version {
    my ($self) = @_;
    return undef unless $self->{tls};
    return $self->{sock}->get_sslversion();
}

sub timeout {
    my ($self, $t) = @_;
    $self->{timeout} = $t if defined $t;
    return $self->{timeout};
}

sub close {
    my ($self) = @_;
    if ($self->{sock}) {
        CORE::close($self->{sock});
        delete $self->{sock};
    }
}

sub close_all {
    for my $s (grep { defined } @OPEN) {
        $s->close();
    }
    @OPEN = ();
}

sub DESTROY { $_[0]->close() }


# ---- sending --------------------------------------------------------------

sub _show {
    my ($dir, $data) = @_;
    my $s = $data;
    $s = substr($s, 0, 300) . '... (' . length($data) . ' octets)'
        if length($s) > 400;
    $s =~ s/([^\x20-\x7e\n])/$1 eq "\r" ? '\r' : sprintf('\x%02x', ord $1)/ge;
    $s =~ s/\n/\\n\n/g;
    for my $l (split /\n/, $s) {
        Test::More::note("$dir $l");
    }
}

# send octets as they are

sub send_raw {
    my ($self, $data) = @_;

    _show('C:', $data) if $VERBOSE;

    my $sock = $self->{sock} or return 0;
    my $sel = IO::Select->new($sock);
    my $deadline = time() + $self->{timeout};
    my $off = 0;

    while ($off < length $data) {
        my $left = $deadline - time();
        return 0 if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($sock, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            return 0;
        }
        $off += $n;
    }

    return 1;
}

# send command lines, each ended by CRLF, in one write

sub send {
    my ($self, @lines) = @_;
    return $self->send_raw(join('', map { "$_\r\n" } @lines));
}


# ---- reading --------------------------------------------------------------

# read more into the buffer; 1 on data, 0 on EOF or error, undef on
# timeout

sub _fill {
    my ($self, $deadline) = @_;

    my $sock = $self->{sock} or return 0;
    return 0 if $self->{eof};

    my $sel = IO::Select->new($sock);

    while (1) {
        my $left = $deadline - time();
        return undef if $left <= 0;

        # TLS may hold decrypted octets that select() does not see

        unless ($self->{tls} && $sock->pending()) {
            next unless $sel->can_read($left);
        }

        my $n = sysread($sock, $self->{buf}, 65536, length $self->{buf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            $self->{eof} = 1;
            $self->{error} = "$!";
            return 0;
        }
        if ($n == 0) {
            $self->{eof} = 1;
            return 0;
        }
        return 1;
    }
}

# one raw line with its line end (or whatever is left at EOF); undef on
# timeout or at EOF with nothing buffered

sub read_line {
    my ($self, $timeout) = @_;

    my $deadline = time() + ($timeout // $self->{timeout});

    while (1) {
        my $i = index($self->{buf}, "\n");
        if ($i >= 0) {
            my $l = substr($self->{buf}, 0, $i + 1, '');
            _show('S:', $l) if $VERBOSE;
            return $l;
        }
        my $r = $self->_fill($deadline);
        next if $r;
        $self->{timed_out} = 1 unless defined $r;
        if (length $self->{buf}) {
            my $l = $self->{buf};
            $self->{buf} = '';
            _show('S:', $l) if $VERBOSE;
            return $l;
        }
        _show('S:', defined $r ? '(closed)' : '(timeout)') if $VERBOSE;
        return undef;
    }
}

# a single-line reply without its CRLF; undef on timeout or EOF

sub reply {
    my ($self, $timeout) = @_;
    my $l = $self->read_line($timeout);
    return undef unless defined $l;
    $self->{last_line_raw} = $l;
    $l =~ s/\r?\n\z//;
    return $l;
}

# the body of a multi-line response as it is on the wire, up to and
# including the terminating ".\r\n"; undef when the terminator does not
# come in time (no progress for the timeout, or 60 s in all)

sub read_multi_raw {
    my ($self, $timeout) = @_;

    $timeout //= $self->{timeout};
    my $hard = time() + 60;
    my $from = 0;

    while (1) {
        my $buf = \$self->{buf};

        if (substr($$buf, 0, 3) eq ".\r\n") {
            substr($$buf, 0, 3, '');
            _show('S:', ".\r\n") if $VERBOSE;
            return ".\r\n";
        }

        my $i = index($$buf, "\r\n.\r\n", $from);
        if ($i >= 0) {
            my $raw = substr($$buf, 0, $i + 5, '');
            _show('S:', $raw) if $VERBOSE;
            return $raw;
        }

        $from = length($$buf) > 4 ? length($$buf) - 4 : 0;

        my $deadline = time() + $timeout;
        $deadline = $hard if $deadline > $hard;
        my $r = $self->_fill($deadline);
        next if $r;

        $self->{timed_out} = 1 unless defined $r;
        _show('S:', '(multi-line response incomplete: '
            . (defined $r ? 'closed' : 'timeout') . ')') if $VERBOSE;
        return undef;
    }
}

# the body of a multi-line response with the terminator removed and the
# dot-stuffing undone: the octets the server meant

sub read_multi {
    my ($self, $timeout) = @_;
    my $raw = $self->read_multi_raw($timeout);
    return undef unless defined $raw;
    return unstuff($raw);
}

sub unstuff {
    my ($raw) = @_;
    $raw = substr($raw, 0, -3);              # ".\r\n"
    $raw =~ s/^\.//mg;
    return $raw;
}

# the dot-stuffed form of a message, as a server must send it

sub stuff {
    my ($msg) = @_;
    (my $s = $msg) =~ s/^\./../mg;
    return $s;
}

# whether the server closes the connection within $timeout seconds
# (anything it sends first is discarded)

sub closed {
    my ($self, $timeout) = @_;
    my $deadline = time() + ($timeout // $self->{timeout});
    while (1) {
        $self->{buf} = '';
        my $r = $self->_fill($deadline);
        return 0 unless defined $r;
        return 1 if !$r;
    }
}


# ---- commands -------------------------------------------------------------

# send a command line, return its single-line reply

sub cmd {
    my ($self, $line, $timeout) = @_;
    $self->send($line) or return undef;
    return $self->reply($timeout);
}

# send a command with a multi-line answer; returns (status line, body
# un-stuffed) -- the body is undef when the status is not +OK or the body
# was incomplete.  In scalar context the body.

sub cmd_multi {
    my ($self, $line, $timeout) = @_;
    $self->send($line) or return;
    my $st = $self->reply($timeout);
    my $body;
    $body = $self->read_multi($timeout) if defined $st && $st =~ /^\+OK/;
    return wantarray ? ($st, $body) : $body;
}

# the same with the raw body, terminator included

sub cmd_multi_raw {
    my ($self, $line, $timeout) = @_;
    $self->send($line) or return;
    my $st = $self->reply($timeout);
    my $body;
    $body = $self->read_multi_raw($timeout) if defined $st && $st =~ /^\+OK/;
    return wantarray ? ($st, $body) : $body;
}


# ---- checks (each is one test) --------------------------------------------

sub _name {
    my ($line, $name) = @_;
    return $name if defined $name;
    $line =~ s/^(PASS) .*/$1 .../i;
    $line =~ s/([^\x20-\x7e])/sprintf('\x%02x', ord $1)/ge;
    $line = substr($line, 0, 40) . '...' if length $line > 43;
    return $line;
}

# $s->ok('NOOP') -- the reply is +OK; returns the reply

sub ok {
    my ($self, $line, $name) = @_;
    my $r = $self->cmd($line);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::like($r // '(no reply)', qr/^\+OK(?: |\z)/,
        _name($line, $name) . ' +OK');
    return $r;
}

# $s->err('STAT', qr/\[SYS\/TEMP\]/) -- the reply is -ERR (and matches)

sub err {
    my ($self, $line, $re, $name) = @_;
    if (defined $re && !ref $re) {
        ($re, $name) = (undef, $re);
    }
    my $r = $self->cmd($line);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = Test::More::like($r // '(no reply)',
        qr/^-ERR(?: |\z)/, _name($line, $name) . ' -ERR');
    if ($ok && $re) {
        Test::More::like($r, $re, _name($line, $name) . ' reply text');
    } elsif ($re) {
        Test::More::fail(_name($line, $name) . ' reply text');
    }
    return $r;
}

# log in, without counting as tests; the PASS reply

sub login {
    my ($self, $user, $pass) = @_;
    my $r = $self->cmd("USER $user");
    return $r unless defined $r && $r =~ /^\+OK/;
    return $self->cmd("PASS $pass", 15);
}

# connect and log in; the client, or undef (diagnosed) if it failed

sub session {
    my ($class, $port, $user, $pass) = @_;
    my $s = eval { $class->new(port => $port) };
    unless ($s && defined $s->greeting) {
        Test::More::diag("no session: " . ($@ || 'no greeting'));
        return undef;
    }
    my $r = $s->login($user, $pass);
    unless (defined $r && $r =~ /^\+OK/) {
        Test::More::diag("login $user failed: " . ($r // '(no reply)'));
        return undef;
    }
    return $s;
}

# parse "i size" / "i uid" scan listings into an array reference of pairs

sub listing {
    my ($body) = @_;
    return undef unless defined $body;
    my @r;
    for my $l (split /\r\n/, $body) {
        return undef unless $l =~ /^(\d+) (\S+)\z/;
        push @r, [ $1, $2 ];
    }
    return \@r;
}


1;

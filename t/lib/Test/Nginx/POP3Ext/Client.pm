package Test::Nginx::POP3Ext::Client;

# The project's POP3 client, a Test::Nginx::POP3 (whichever one is loaded:
# this project's or nginx-tests'): its send, print, read, getline, ok,
# check, eof, can_read and socket have nginx-tests' meaning, and it adds
# what the project's tests need.  It sends exactly the octets it is given
# (pipelining, partial lines, bad bytes), every read has a deadline (no
# test hangs on a silent server), and it reads big multi-line replies in
# linear time.
#
#   my $s = $x->client();                  # port(8110), greeting read
#   $s->send('NOOP');
#   $s->ok('NOOP');                        # nginx-tests: reads, +OK
#   $s->cmd_ok('STAT');                    # sends, reads, +OK (one test)
#   $s->cmd_err('LIST 9', qr/no such/);    # -ERR, and the text
#   my ($status, $body) = $s->cmd_multi('RETR 1');

use strict;
use warnings;

use Errno qw/ EINTR EAGAIN /;
use IO::Select;
use IO::Socket::INET;
use Scalar::Util qw/ weaken /;
use Test::More ();
use Time::HiRes qw/ time /;

use Test::Nginx;
use Test::Nginx::POP3;

our @ISA = ('Test::Nginx::POP3');

our $TIMEOUT = 5;

my @OPEN;    # live clients, closed by close_all() before nginx stops


# new([port => P], [host => H], [timeout => S], [greeting => 0],
#     [ssl => 1], [ssl_opts => { IO::Socket::SSL options }],
#     [local => '127.0.0.2'])
# connects to P (default port(8110)) and, unless greeting => 0, reads the
# greeting into $s->greeting.  Dies when it cannot connect.  ssl => 1:
# the TLS handshake first (implicit TLS; certificates not verified unless
# ssl_opts say so); dies when it fails.  $s->{handshake_done} is when the
# handshake completed, $s->{greeting_at} when the greeting arrived.
# local => A: connect from source address A (any of 127.0.0.0/8).

sub new {
    my ($class, %o) = @_;

    my $self = bless {
        host => $o{host} // '127.0.0.1',
        port => $o{port} // port(8110),
        timeout => $o{timeout} // $TIMEOUT,
        buf => '',
        eof => 0,
    }, ref $class || $class;

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
    $self->{_socket} = $sock;

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
sub socket { $_[0]{_socket} }
sub sock { $_[0]{_socket} }
sub peer_port { $_[0]{port} }

sub timeout {
    my ($self, $t) = @_;
    $self->{timeout} = $t if defined $t;
    return $self->{timeout};
}

sub close {
    my ($self) = @_;
    if (my $s = delete $self->{_socket}) {
        CORE::close($s);
    }
}

sub close_all {
    for my $s (grep { defined } @OPEN) {
        $s->close();
    }
    @OPEN = ();
}

sub DESTROY { $_[0]->close() }


# ---- TLS --------------------------------------------------------------------

# the TLS handshake on the connection as it is (after "+OK" to STLS, or at
# once for implicit TLS), with IO::Socket::SSL options; 1 on success, 0 on
# failure ($s->{ssl_error} says why).  What the server sent in plaintext
# and was not read yet is moved to $s->{plaintext_left}.

sub start_tls {
    my ($self, %opts) = @_;

    require IO::Socket::SSL;

    my $sock = $self->{_socket} or return 0;

    $self->{plaintext_left} = $self->{buf};
    $self->{buf} = '';

    my $verify = exists $opts{SSL_verify_mode} ? $opts{SSL_verify_mode}
        : IO::Socket::SSL::SSL_VERIFY_NONE();

    log_out('(TLS handshake)');

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
        log_in("(TLS handshake failed: $self->{ssl_error})");
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
    return $self->{_socket}->get_sslversion();
}


# ---- sending ----------------------------------------------------------------

# octets as they are (nginx-tests' print); true when all were written
# within the timeout

sub print {
    my ($self, $data) = @_;

    log_out($data);

    my $sock = $self->{_socket} or return 0;
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

sub send_raw { shift->print(@_) }

# command lines, each ended by CRLF, in one write (one line: nginx-tests'
# send)

sub send {
    my ($self, @lines) = @_;
    return $self->print(join('', map { "$_\r\n" } @lines));
}


# ---- reading ----------------------------------------------------------------

# read more into the buffer; 1 on data, 0 on EOF or error, undef on timeout

sub _fill {
    my ($self, $deadline) = @_;

    my $sock = $self->{_socket} or return 0;
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

# one line with its line end (or what is left at EOF); undef on timeout,
# or at EOF with nothing buffered.  nginx-tests' getline and read are this
# with the client's timeout.

sub read_line {
    my ($self, $timeout) = @_;

    my $deadline = time() + ($timeout // $self->{timeout});

    while (1) {
        my $i = index($self->{buf}, "\n");
        if ($i >= 0) {
            my $l = substr($self->{buf}, 0, $i + 1, '');
            log_in($l);
            return $l;
        }
        my $r = $self->_fill($deadline);
        next if $r;
        $self->{timed_out} = 1 unless defined $r;
        if (length $self->{buf}) {
            my $l = $self->{buf};
            $self->{buf} = '';
            log_in($l);
            return $l;
        }
        log_in(defined $r ? '(closed)' : '(timeout)');
        return undef;
    }
}

sub getline { $_[0]->read_line() }
sub read { $_[0]->read_line() }

sub eof {
    my ($self) = @_;
    return 0 if length $self->{buf};
    return 1 if $self->{eof} || !$self->{_socket};
    my $r = $self->_fill(time() + $self->{timeout});
    return defined $r && !$r ? 1 : 0;
}

sub can_read {
    my ($self, $timo) = @_;
    return 1 if length $self->{buf};
    my $sock = $self->{_socket} or return 0;
    return 1 if $self->{tls} && $sock->pending();
    return IO::Select->new($sock)->can_read($timo || 3);
}

# a single-line reply without its line end; undef on timeout or EOF

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
            log_in(".\r\n");
            return ".\r\n";
        }

        my $i = index($$buf, "\r\n.\r\n", $from);
        if ($i >= 0) {
            my $raw = substr($$buf, 0, $i + 5, '');
            log_in($raw);
            return $raw;
        }

        $from = length($$buf) > 4 ? length($$buf) - 4 : 0;

        my $deadline = time() + $timeout;
        $deadline = $hard if $deadline > $hard;
        my $r = $self->_fill($deadline);
        next if $r;

        $self->{timed_out} = 1 unless defined $r;
        log_in('(multi-line response incomplete: '
            . (defined $r ? 'closed' : 'timeout') . ')');
        return undef;
    }
}

# the body with the terminator removed and the dot-stuffing undone

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


# ---- commands ---------------------------------------------------------------

# send a command line, return its single-line reply

sub cmd {
    my ($self, $line, $timeout) = @_;
    $self->send($line) or return undef;
    return $self->reply($timeout);
}

# a command with a multi-line answer: (status line, body un-stuffed); the
# body is undef when the status is not +OK or the body was incomplete.  In
# scalar context the body.

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


# ---- checks that send (each is one test, or two for cmd_err with a text) ---

sub _name {
    my ($line, $name) = @_;
    return $name if defined $name;
    $line =~ s/^(PASS) .*/$1 .../i;
    $line =~ s/([^\x20-\x7e])/sprintf('\x%02x', ord $1)/ge;
    $line = substr($line, 0, 40) . '...' if length $line > 43;
    return $line;
}

# $s->cmd_ok('NOOP'): the reply is "+OK" alone or "+OK text"; the reply

sub cmd_ok {
    my ($self, $line, $name) = @_;
    my $r = $self->cmd($line);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::like($r // '(no reply)', qr/^\+OK(?: |\z)/,
        _name($line, $name) . ' +OK');
    return $r;
}

# $s->cmd_err('STAT', qr/\[SYS\/TEMP\]/): the reply is -ERR (one test) and
# matches the pattern (a second test, when one is given); the reply

sub cmd_err {
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

# USER and PASS, not counted as tests; the PASS reply (or the USER reply
# when that was not +OK)

sub login {
    my ($self, $user, $pass) = @_;
    my $r = $self->cmd("USER $user");
    return $r unless defined $r && $r =~ /^\+OK/;
    return $self->cmd("PASS $pass", 15);
}

# connect and log in; the client, or undef (diagnosed) when that failed

sub session {
    my ($class, $port, $user, $pass, %o) = @_;
    my $s = eval { $class->new(port => $port, %o) };
    unless ($s && defined $s->greeting) {
        Test::More::diag('no session: ' . ($@ || 'no greeting'));
        return undef;
    }
    my $r = $s->login($user, $pass);
    unless (defined $r && $r =~ /^\+OK/) {
        Test::More::diag("login $user failed: " . ($r // '(no reply)'));
        return undef;
    }
    return $s;
}

# "i size" / "i uid" scan listings: an array reference of pairs

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

package Test::Nginx::POP3;

# A POP3 client with the interface of nginx-tests' Test::Nginx::POP3 (the
# project's own code, written from that interface):
#
#   my $s = Test::Nginx::POP3->new();          # 127.0.0.1:port(8110)
#   $s->ok('greeting');                        # a line starting +OK
#   $s->send('USER alice');                    # the command and CRLF
#   $s->ok('user');
#   $s->send('LIST 9');
#   $s->check(qr/^-ERR/, 'list past the end');
#
# new(%args): connects to port(8110), or port(8995) with SSL => 1 (then
# the TLS handshake, certificates not verified); %args go to
# IO::Socket::INET (PeerAddr => ... for another port) and IO::Socket::SSL.
# Nothing is read at connect: the greeting is the first read().  read()
# waits up to 8 s for a line and returns it with its line end, or undef.
#
# The project's richer client (multi-line replies, STLS, timeouts, raw
# octets, several addresses) is Test::Nginx::POP3Ext::Client, a subclass.

use warnings;
use strict;

use IO::Select;
use IO::Socket;
use Socket qw/ CRLF /;
use Test::More qw//;

use Test::Nginx;

sub new {
    my ($class, @args) = @_;
    my %args = @args;

    my $self = bless { _read_buffer => '' }, $class;

    my $ok = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        local $SIG{PIPE} = sub { die "sigpipe\n" };
        alarm(8);

        $self->{_socket} = IO::Socket::INET->new(
            Proto => 'tcp',
            PeerAddr => '127.0.0.1:' . port($args{SSL} ? 8995 : 8110),
            @args
        ) or die "Can't connect to nginx: $!\n";

        if ($args{SSL}) {
            require IO::Socket::SSL;
            IO::Socket::SSL->start_SSL($self->{_socket},
                SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(),
                @args
            ) or die IO::Socket::SSL::errstr() . "\n";

            my $s = $self->{_socket};
            log_in('ssl cipher: ' . $s->get_cipher());
            log_in('ssl cert: ' . $s->peer_certificate('issuer'));
        }

        alarm(0);
        1;
    };
    alarm(0);
    log_in("died: $@") unless $ok;

    $self->{_socket}->autoflush(1) if $self->{_socket};

    return $self;
}

sub DESTROY {
    my ($self) = @_;
    $self->{_socket}->close() if $self->{_socket};
}

sub eof {
    my ($self) = @_;
    return $self->{_socket}->eof();
}

# octets as they are

sub print {
    my ($self, $data) = @_;
    log_out($data);
    return $self->{_socket}->print($data);
}

# one command line; CRLF is added

sub send {
    my ($self, $cmd) = @_;
    log_out($cmd);
    return $self->{_socket}->print($cmd . CRLF);
}

# the next line with its line end; undef when none comes within 8 s or the
# connection ends first

sub getline {
    my ($self) = @_;

    my $sock = $self->{_socket} or return undef;
    my $buf = \$self->{_read_buffer};
    my $from = 0;

    while (1) {
        my $i = index($$buf, "\x0a", $from);
        return substr($$buf, 0, $i + 1, '') if $i >= 0;
        $from = length $$buf;

        # IO::Socket::SSL may hold decrypted octets that select() misses
        unless ($sock->can('pending') && $sock->pending()) {
            IO::Select->new($sock)->can_read(8) or return undef;
        }

        $sock->blocking(0);
        my $n = $sock->sysread($$buf, 65536, length $$buf);
        my $again = !defined $n && ($!{EWOULDBLOCK} || $!{EAGAIN});
        $sock->blocking(1);
        next if $again;
        return undef unless $n;
    }
}

sub read {
    my ($self) = @_;
    my $line = $self->getline();
    log_in($line) if defined $line;
    return $line;
}

sub check {
    my ($self, $regex, $name) = @_;
    Test::More->builder->like($self->read(), $regex, $name);
}

sub ok {
    my $self = shift;
    Test::More->builder->like($self->read(), qr/^\+OK/, @_);
}

sub can_read {
    my ($self, $timo) = @_;
    IO::Select->new($self->{_socket})->can_read($timo || 3);
}

sub socket {
    my ($self) = @_;
    return $self->{_socket};
}


# a POP3 server to proxy to, on port(8111) or $port: +OK to
# "user test@example.com", "pass secret" and QUIT, -ERR to the rest

sub pop3_test_daemon {
    my ($port) = @_;

    my $server = IO::Socket::INET->new(
        Proto => 'tcp',
        LocalAddr => '127.0.0.1:' . ($port || port(8111)),
        Listen => 5,
        Reuse => 1
    ) or die "Can't create listening socket: $!\n";

    while (my $client = $server->accept()) {
        $client->autoflush(1);
        print $client '+OK fake pop3 server ready' . CRLF;

        while (<$client>) {
            my $reply = /^quit/i ? '+OK quit ok'
                : /^user test\@example.com/i ? '+OK user ok'
                : /^pass secret/i ? '+OK pass ok'
                : '-ERR unknown command';
            print $client $reply . CRLF;
        }

        close $client;
    }
}


1;

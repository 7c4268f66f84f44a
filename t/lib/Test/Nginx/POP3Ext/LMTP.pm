package Test::Nginx::POP3Ext::LMTP;

# Helpers of the LMTP tests (t/07x-lmtp*.t): the nginx.conf of a
# pop3_ext_lmtp server, an LMTP client (a Test::Nginx::POP3Ext::Client
# that reads SMTP-style replies), swaks, and a private Postfix instance
# that delivers over LMTP.
#
#   my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;
#   $x->run_pop3(mail => lmtp_server(8024, 'pop3_ext_quota_messages 5;'));
#   my $c = lmtp_client(port(8024));        # greeting read
#   my @r = $c->lmtp('LHLO test');          # reply lines, CRLF removed
#   lmtp_code(@r)                           # "250"

use strict;
use warnings;

use Exporter qw/ import /;
use File::Path qw/ make_path /;
use Time::HiRes qw/ time sleep /;

use Test::Nginx;
use Test::Nginx::POP3Ext::Client;

our @EXPORT = qw/ lmtp_server lmtp_client lmtp_code lmtp_text
    lmtp_message /;


# a server block for conf(mail => ...): PORT_$n, the test's Redis (or
# redis => '...'), extra directives; listen => 'ssl' adds to listen

sub lmtp_server {
    my ($n, $extra, %o) = @_;
    my $redis = $o{redis} // '127.0.0.1:%%PORT_8379%%';
    my $listen = defined $o{listen} ? " $o{listen}" : '';
    my $addr = $o{addr} // '127.0.0.1';
    $extra //= '';
    $extra = "max_errors 1000;\n$extra" unless $extra =~ /\bmax_errors\b/;
    return <<"EOF";
    server {
        listen $addr:%%PORT_$n%%$listen;
        protocol pop3_ext_lmtp;
        pop3_ext_redis $redis;
        $extra
    }
EOF
}

# an LMTP connection (port => P, local => A, greeting => 0, timeout)

sub lmtp_client {
    my ($port, %o) = @_;
    return Test::Nginx::POP3Ext::LMTP::Client->new(port => $port, %o);
}

# the code of a reply's last line, and its text (all lines' text joined)

sub lmtp_code {
    my @r = @_;
    return '' unless @r && defined $r[-1];
    return $r[-1] =~ /^(\d{3})/ ? $1 : '';
}

sub lmtp_text { join "\n", map { defined $_ ? $_ : '' } @_ }

# a message with CRLF line ends, $size octets or a little more

sub lmtp_message {
    my ($subject, $size) = @_;
    my $m = "From: a\@example.org\r\nTo: b\@example.org\r\n"
        . "Subject: $subject\r\n\r\n";
    my $line = ('x' x 70) . "\r\n";
    $m .= $line while length($m) < ($size // 0);
    $m .= "end\r\n";
    return $m;
}


package Test::Nginx::POP3Ext::LMTP::Client;

use strict;
use warnings;

use Test::Nginx;

our @ISA = ('Test::Nginx::POP3Ext::Client');

sub new {
    my ($class, %o) = @_;
    my $greet = !exists $o{greeting} || $o{greeting};
    my $self = Test::Nginx::POP3Ext::Client::new($class, %o,
        greeting => 0);
    if ($greet) {
        my @g = $self->read_reply();
        $self->{greeting} = join("\n", @g);
    }
    return $self;
}

# one reply: its lines without line ends ("250-..." up to "250 ..."), or
# () on timeout or EOF

sub read_reply {
    my ($self, $timeout) = @_;
    my @lines;
    while (defined(my $l = $self->read_line($timeout))) {
        $l =~ s/\r?\n\z//;
        push @lines, $l;
        return @lines unless $l =~ /^\d{3}-/;
    }
    return ();
}

# n replies, as array references

sub read_replies {
    my ($self, $n, $timeout) = @_;
    my @all;
    for (1 .. $n) {
        my @r = $self->read_reply($timeout);
        push @all, [ @r ];
        last unless @r;
    }
    return @all;
}

# send a line, read its reply

sub lmtp {
    my ($self, $line, $timeout) = @_;
    $self->send($line);
    return $self->read_reply($timeout);
}

# the DATA exchange for a message given with CRLF line ends (dot-stuffed
# here); returns the 354 reply's code and then one reply (a code and
# text) per recipient

sub data {
    my ($self, $msg, $nrcpt, $timeout) = @_;
    my @r = $self->lmtp('DATA');
    return (Test::Nginx::POP3Ext::LMTP::lmtp_code(@r)) unless
        Test::Nginx::POP3Ext::LMTP::lmtp_code(@r) eq '354';
    (my $s = $msg) =~ s/^\./../mg;
    $self->print($s . ".\r\n");
    my @out = ('354');
    for (1 .. $nrcpt) {
        my @x = $self->read_reply($timeout // 30);
        push @out, join("\n", @x);
    }
    return @out;
}

1;

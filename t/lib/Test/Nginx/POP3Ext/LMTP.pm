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
    lmtp_message postfix /;


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


# a private Postfix (Test::Nginx::POP3Ext::LMTP::Postfix) that delivers
# the domains it is given over LMTP: postfix($x, 'example.org' =>
# port(8024), ...); undef when Postfix is not installed

sub postfix {
    my ($x, @routes) = @_;
    return Test::Nginx::POP3Ext::LMTP::Postfix->new($x, @routes);
}


package Test::Nginx::POP3Ext::LMTP::Postfix;

# A Postfix instance of the test's own: its configuration, queue and log
# in TESTDIR/postfix, no listener at all (mail comes in by its sendmail,
# -C DIR), loopback only, each domain delivered by
# "lmtp:inet:127.0.0.1:PORT" (the lines docs/delivery.md shows), its
# master in the foreground and stopped at the end of the test.  Retries
# come within seconds.  Needs root (postdrop trusts another configuration
# directory only for root) and the postfix user.

use strict;
use warnings;

use Time::HiRes qw/ time sleep /;

our $MASTER = '/usr/lib/postfix/sbin/master';
our $SENDMAIL = '/usr/sbin/sendmail';
our $POSTQUEUE = '/usr/sbin/postqueue';
our $POSTFIX = '/usr/sbin/postfix';

sub available {
    return -x $MASTER && -x $SENDMAIL && -x $POSTFIX && $> == 0
        && defined getpwnam('postfix') && defined getgrnam('postdrop');
}

sub new {
    my ($class, $x, @routes) = @_;

    return undef unless available();

    my $top = $x->testdir();
    my $d = "$top/postfix";

    # the postfix user walks to its queue: the test directory is 0700
    chmod 0711, $top;

    mkdir $d;
    mkdir "$d/$_" for qw/ conf queue data /;
    chmod 0755, $d;
    chown scalar(getpwnam('postfix')), -1, "$d/data";

    my (@domains, @transport);

    while (my ($domain, $port) = splice @routes, 0, 2) {
        push @domains, $domain;
        push @transport, "$domain=lmtp:inet:127.0.0.1:$port";
    }

    my $domains = join ', ', @domains;
    my $transport = join ' ', @transport;

    # retries soon, but not at once: a deferred file whose retry time is
    # within a second of now is fed again at the next scan, possibly
    # while the delivery agent still holds its lock; qmgr then logs
    # "skipped, still being delivered" and puts it off for 60 s

    $x->write_file('postfix/conf/main.cf', <<"END");
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $d/maillog
maillog_file_prefixes = $d
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.test
mydomain = test
myorigin = mx.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = $domains
transport_maps = inline:{ $transport }
virtual_transport = error:no transport
queue_run_delay = 1s
minimal_backoff_time = 3s
maximal_backoff_time = 4s
lmtp_connect_timeout = 5s
END

    $x->write_file('postfix/conf/master.cf', <<'END');
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
END

    my $self = bless { x => $x, dir => $d, conf => "$d/conf" }, $class;

    my ($rc, $out, $err) = $x->run_cmd([ $POSTFIX, '-c', "$d/conf",
        'check' ]);
    die "postfix check failed ($rc): $out$err" . $self->log() if $rc;

    $self->{pid} = $x->spawn("$d/master.out", $MASTER, '-d', '-c',
        "$d/conf");
    $x->_register_proc($self);

    # ready when the pickup service's FIFO is there
    my $deadline = time() + 10;
    sleep 0.1 until -p "$d/queue/public/pickup" || time() > $deadline;
    sleep 0.2;

    return $self;
}

sub dir { $_[0]{dir} }

sub log {
    my ($self) = @_;
    my $f = "$self->{dir}/maillog";
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

# a message submitted: (exit code, stdout, stderr)

sub sendmail {
    my ($self, $from, $rcpts, $msg) = @_;
    return $self->{x}->run_cmd([ $SENDMAIL, '-C', $self->{conf}, '-i',
        '-f', $from, @$rcpts ], { stdin => $msg });
}

# messages in the queue, or undef when it cannot be listed

sub queued {
    my ($self) = @_;
    my ($rc, $out) = $self->{x}->run_cmd([ $POSTQUEUE, '-c',
        $self->{conf}, '-p' ]);
    return undef if $rc;
    return 0 if $out =~ /Mail queue is empty/;
    return $out =~ /in (\d+) Requests?\./ ? $1 : undef;
}

# wait until the queue holds $n messages (default 0); true when it did

sub wait_queue {
    my ($self, $n, $timeout) = @_;
    my $deadline = time() + ($timeout // 30);
    while (time() < $deadline) {
        my $q = $self->queued();
        return 1 if defined $q && $q == ($n // 0);
        sleep 0.2;
    }
    return 0;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    Test::Nginx::POP3Ext::stop_pid($pid, 'TERM', 10);
    kill 'KILL', -$pid;
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

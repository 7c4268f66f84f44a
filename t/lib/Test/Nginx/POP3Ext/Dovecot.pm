package Test::Nginx::POP3Ext::Dovecot;

# A private Dovecot for a test: POP3 on a loopback port, Maildir homes in
# the test directory, users in a passwd-file with {PLAIN} passwords and
# per-user settings as userdb fields, mail delivered by dovecot-lda.
# Made by Test::Nginx::POP3Ext (dovecot()), which stops it at the end.
#
#   my $d = $x->dovecot(port => port(8110), tls => [ $crt, $key ]);
#   $d->add_user('alice', 'secret', pop3_save_uidl => 'yes');
#   $d->deliver('alice', "Subject: hi\n\nhello\n");
#   my @u = $d->uidl('alice', 'secret');       # ([num, uidl], ...)
#   $d->stop;
#
# As root, mail belongs to the user "mail" (Dovecot runs no mail process
# as root); otherwise to the user who runs the test, and Dovecot runs as
# that user too.  The idea is bench/servers.py's Dovecot.

use strict;
use warnings;

use File::Path qw/ make_path /;
use IO::Socket::INET;
use Scalar::Util qw/ weaken /;
use Time::HiRes qw/ time sleep /;

use Test::Nginx ();

our $DOVECOT = 'dovecot';
our $LDA = '/usr/lib/dovecot/dovecot-lda';
our $POP3 = '/usr/lib/dovecot/pop3';


# new($ext, port => P, tls => [ crt, key ] (STLS and a pop3s port),
# tls_port => P, conf => 'more lines'): not started

sub new {
    my ($class, $ext, %o) = @_;

    my $self = bless { %o }, $class;
    $self->{ext} = $ext;
    weaken($self->{ext});

    $self->{dir} = $ext->testdir() . '/dovecot';
    $self->{users} = [];
    make_path(map { "$self->{dir}/$_" } qw/ run state home /);

    if ($> == 0) {
        my @pw = getpwnam('mail') or die "no user \"mail\"\n";
        @$self{qw/ uid gid /} = @pw[2, 3];
        # the mail user walks from / to its home
        chmod 0755, $ext->testdir(), $self->{dir}, "$self->{dir}/home";
        chown $self->{uid}, $self->{gid}, "$self->{dir}/home";
    } else {
        @$self{qw/ uid gid /} = ($>, $) + 0);
        $self->{user} = getpwuid($>);
    }

    $self->_write_passwd();

    return $self;
}

sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub tls_port { $_[0]{tls_port} }
sub log { $_[0]{ext}->read_file("$_[0]{dir}/dovecot.log") }
sub home { "$_[0]{dir}/home/$_[1]" }
sub maildir { "$_[0]{dir}/home/$_[1]/Maildir" }

# (available, why not): dovecot, its LDA and its POP3 server are installed

sub available {
    my ($class, $ext) = @_;
    return (0, 'dovecot not found (dovecot-core)')
        unless $ext->find_prog($DOVECOT) || -x "/usr/sbin/$DOVECOT";
    return (0, "$LDA not found (dovecot-core)") unless -x $LDA;
    return (0, "$POP3 not found (dovecot-pop3d)") unless -x $POP3;
    return (1, '');
}

sub _conf {
    my ($self) = @_;

    my $d = $self->{dir};
    my $tls = $self->{tls};
    my $ssl = $tls ? "ssl = yes\nssl_cert = <$tls->[0]\nssl_key = <$tls->[1]\n"
        . "ssl_min_protocol = TLSv1.2\n" : "ssl = no\n";
    my $pop3s = $tls && $self->{tls_port}
        ? "    address = 127.0.0.1\n    port = $self->{tls_port}\n"
        : "    port = 0\n";

    # not root: every process runs as this user, and nothing is chrooted
    my $users = '';
    if ($> != 0) {
        my $group = getgrgid($self->{gid});
        $users = "default_internal_user = $self->{user}\n"
            . "default_internal_group = $group\n"
            . "default_login_user = $self->{user}\n";
    }
    my $chroot = $> != 0 ? "  chroot =\n" : '';

    return <<"EOF";
# a private Dovecot of Test::Nginx::POP3Ext::Dovecot
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
protocols = pop3
listen = 127.0.0.1
disable_plaintext_auth = no
$ssl$users
mail_location = maildir:~/Maildir
first_valid_uid = $self->{uid}
first_valid_gid = $self->{gid}
passdb {
  driver = passwd-file
  args = $d/passwd
}
userdb {
  driver = passwd-file
  args = $d/passwd
}
service pop3-login {
$chroot  inet_listener pop3 {
    address = 127.0.0.1
    port = $self->{port}
  }
  inet_listener pop3s {
$pop3s  }
}
service imap-login {
$chroot  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
$chroot}
${\ ($self->{conf} // '') }
EOF
}

# a user with a {PLAIN} password; %fields are per-user settings
# (pop3_uidl_format => '%u', mail => 'mbox:~/mail:INBOX=~/inbox'), their
# "%" written as Dovecot wants them in a passwd-file, "%%".  Again for an
# existing user: its fields replaced.  Dovecot reads the file again when
# its modification time changes, so a change waits for the next second.

sub add_user {
    my ($self, $name, $pass, %fields) = @_;
    @{$self->{users}} = grep { $_->[0] ne $name } @{$self->{users}};
    push @{$self->{users}}, [ $name, $pass, \%fields ];
    make_path($self->home($name));
    chown $self->{uid}, $self->{gid}, $self->home($name);
    $self->_write_passwd();
    return $self;
}

sub _write_passwd {
    my ($self) = @_;
    my $s = '';
    for my $u (@{$self->{users}}) {
        my ($name, $pass, $f) = @$u;
        my $extra = join ' ', map {
            (my $v = $f->{$_}) =~ s/%/%%/g;
            "userdb_$_=$v"
        } sort keys %$f;
        $s .= "$name:{PLAIN}$pass:$self->{uid}:$self->{gid}::"
            . $self->home($name) . "::$extra\n";
    }
    my $path = "$self->{dir}/passwd";
    my $old = (stat $path)[9];
    open my $fh, '>', $path or die "can't write $path: $!\n";
    print $fh $s;
    close $fh;
    # Dovecot looks at the file at most once a second, and reads it again
    # when its time or size changed: a time later than the last one's,
    # and the next second
    my $t = defined $old && $old >= int(time()) ? $old + 1 : int(time());
    utime $t, $t, $path;
    sleep(int(time()) + 1.02 - time());
}


sub start {
    my ($self) = @_;

    my $ext = $self->{ext};
    my $conf = "$self->{dir}/dovecot.conf";
    open my $fh, '>', $conf or die "can't write $conf: $!\n";
    print $fh $self->_conf();
    close $fh;

    my $bin = $ext->find_prog($DOVECOT) // "/usr/sbin/$DOVECOT";
    $self->{pid} = $ext->spawn("$self->{dir}/stderr.log", $bin, '-F',
        '-c', $conf);
    $ext->_register_proc($self);

    my @ports = ($self->{port});
    push @ports, $self->{tls_port} if $self->{tls} && $self->{tls_port};
    my $deadline = time() + 20;
    for my $p (@ports) {
        until (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p")) {
            die "dovecot exited on start:\n" . $self->log
                . $ext->read_file("$self->{dir}/stderr.log") . "\n"
                unless $self->running;
            die "dovecot did not listen on $p within 20 s\n"
                if time() > $deadline;
            sleep(0.05);
        }
    }

    return $self;
}

sub running {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    return !defined Test::Nginx::POP3Ext::reap($pid, 0);
}

# stop (SIGTERM: Dovecot stops all its processes), and wait until its
# POP3 port is free for another server

sub stop {
    my ($self, $sig) = @_;
    my $pid = delete $self->{pid} or return $self;
    Test::Nginx::POP3Ext::stop_pid($pid, $sig // 'TERM', 10);
    my $deadline = time() + 10;
    while (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}")
           && time() < $deadline)
    {
        sleep(0.05);
    }
    return $self;
}

# deliver a message with dovecot-lda, as an MTA would; dies on failure

sub deliver {
    my ($self, $user, $message) = @_;
    my ($rc, $out, $err) = $self->{ext}->run_cmd([ $LDA, '-c',
        "$self->{dir}/dovecot.conf", '-d', $user ], { stdin => $message });
    die "dovecot-lda -d $user failed ($rc): $err$out\n" if $rc != 0;
    return $self;
}

# a file written into the Maildir's new/ by hand, as a foreign MDA would
# (name: the file name; its time is in it); its path

sub drop {
    my ($self, $user, $name, $message) = @_;
    return $self->put($user, "new/$name", $message);
}

# any file of a user's Maildir ("cur/NAME:2,S", "dovecot-uidlist"), owned
# by the mail user; its path

sub put {
    my ($self, $user, $rel, $content) = @_;
    my $md = $self->maildir($user);
    make_path(map { "$md/$_" } qw/ cur new tmp /);
    chown $self->{uid}, $self->{gid}, $md, map { "$md/$_" } qw/ cur new tmp /;
    open my $fh, '>', "$md/$rel" or die "can't write $md/$rel: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh;
    chown $self->{uid}, $self->{gid}, "$md/$rel";
    return "$md/$rel";
}

# a POP3 session to this Dovecot, logged in (Test::Nginx::POP3Ext::Client)

sub session {
    my ($self, $user, $pass) = @_;
    return Test::Nginx::POP3Ext::Client->session($self->{port}, $user,
        $pass);
}

# UIDL and LIST of a user, as Dovecot gives them: ([num, uidl, size], ...)

sub listing {
    my ($self, $user, $pass) = @_;
    my $s = $self->session($user, $pass)
        or die "cannot log in to dovecot as $user\n";
    my ($st, $uidl) = $s->cmd_multi('UIDL');
    die "UIDL failed: $st\n" unless $st =~ /^\+OK/;
    my ($st2, $list) = $s->cmd_multi('LIST');
    die "LIST failed: $st2\n" unless $st2 =~ /^\+OK/;
    my %size = map { /^(\d+) (\d+)/ ? ($1, $2) : () } split /\r\n/, $list;
    my @r = map { /^(\d+) (.*)\z/s ? [ $1, $2, $size{$1} ] : () }
        split /\r\n/, $uidl;
    $s->cmd('QUIT');
    $s->close;
    return @r;
}


1;

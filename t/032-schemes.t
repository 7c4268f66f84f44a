#!/usr/bin/perl

# Password schemes in Dovecot's notation, with hashes made by Dovecot's own
# "doveadm pw": for every scheme a user logs in with the right password
# (USER/PASS and AUTH PLAIN) and fails with [AUTH] with a wrong one.  The
# CLI's "user add --scheme" and "--hash" (a hash imported verbatim) make
# secrets the server takes.  A secret of an unknown scheme fails cleanly,
# with [AUTH] and an error log line.  Hashes are verified in the thread
# pool: a storm of expensive logins does not stall other sessions.

use strict;
use warnings;

use Test::More;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli;

$x->run_pop3(server => "        pop3_ext_auth_fail_delay 10ms;\n"
    . "        pop3_ext_auth_fail_delay_max 40ms;\n"
    . "        pop3_ext_auth_block_addr 0;\n"
    . "        pop3_ext_max_auth_attempts 0;\n");

my @SCHEMES = qw/ SHA512-CRYPT SHA256-CRYPT BLF-CRYPT MD5-CRYPT CRYPT
    ARGON2ID PBKDF2 SSHA512 SSHA256 CRAM-MD5 PLAIN /;

my $have_doveadm = defined Test::Nginx::POP3Ext::find_prog('doveadm');

# users u-<scheme>, each with its own password, hashed by doveadm

my %hash;
if ($have_doveadm) {
    for my $sc (@SCHEMES) {
        my $h = $x->doveadm_pw($sc, "pw-$sc!");
        die "doveadm pw -s $sc failed\n" unless $h;
        $hash{$sc} = $h;
        $x->set_user_secret(lc "u-$sc", $h);
    }
}

# the CLI's schemes, and hashes imported with --hash

my @CLI = qw/ PLAIN SHA512-CRYPT SHA256-CRYPT BLF-CRYPT /;
for my $sc (@CLI) {
    $x->add_user(lc "cli-$sc", "cli pw $sc", '--scheme', $sc);
}
if ($have_doveadm) {
    for my $sc ('SHA512-CRYPT', 'BLF-CRYPT') {
        $x->add_user(lc "imp-$sc", $hash{$sc}, '--hash');
    }
}

$x->set_user_secret('foo', '{FOO}x');
$x->set_user_secret('nobrace', '{PLAINsecret');
$x->set_user_secret('lower', '{plain}lowpw');
$x->set_user_secret('empty', '{SHA512-CRYPT}');

$t->plan(4 * @SCHEMES + 3 * @CLI + 4 + 8 + 3 + 3);

my $port = port(8110);

sub pass_login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    my $r = $c->cmd("USER $user");
    $r = $c->cmd("PASS $pass", 15) if defined $r && $r =~ /^\+OK/;
    $c->cmd('QUIT');
    return $r // '(no reply)';
}

sub plain_login {
    my ($user, $pass) = @_;
    my $c = $x->client(port => $port);
    my $r = $c->cmd('AUTH PLAIN ' . encode_base64("\0$user\0$pass", ''), 15);
    $c->cmd('QUIT');
    return $r // '(no reply)';
}

my $AUTHFAIL = qr/^-ERR \[AUTH\] invalid user name or password$/;

###############################################################################

SKIP: {
    skip 'doveadm not found (dovecot-core)', 4 * @SCHEMES
        unless $have_doveadm;

    for my $sc (@SCHEMES) {
        my $u = lc "u-$sc";
        like(pass_login($u, "pw-$sc!"), qr/^\+OK/, "$sc: USER/PASS");
        like(pass_login($u, "pw-$sc?"), $AUTHFAIL, "$sc: wrong password");
        like(plain_login($u, "pw-$sc!"), qr/^\+OK/, "$sc: AUTH PLAIN");
        like(plain_login($u, "PW-$sc!"), $AUTHFAIL,
            "$sc: AUTH PLAIN, wrong case");
    }
}

for my $sc (@CLI) {
    my $u = lc "cli-$sc";
    my $stored = $x->redis_cmd('HGET', $x->user_key($u),
        $x->model('P3X_FIELD_SECRET')) // '';
    like($stored, qr/^\{\Q$sc\E\}/, "pop3ext --scheme $sc stored {$sc}");
    like(pass_login($u, "cli pw $sc"), qr/^\+OK/, "pop3ext --scheme $sc: login");
    like(pass_login($u, "cli pw $sc."), $AUTHFAIL,
        "pop3ext --scheme $sc: wrong password");
}

SKIP: {
    skip 'doveadm not found (dovecot-core)', 4 unless $have_doveadm;
    for my $sc ('SHA512-CRYPT', 'BLF-CRYPT') {
        like(pass_login(lc "imp-$sc", "pw-$sc!"), qr/^\+OK/,
            "doveadm $sc hash imported with --hash: login");
        like(pass_login(lc "imp-$sc", 'nope'), $AUTHFAIL,
            "imported $sc: wrong password");
    }
}

# secrets the module cannot use: [AUTH], logged, the session goes on

my $c = $x->client(port => $port);
$c->cmd('USER foo');
like($c->cmd('PASS x', 15) // '', $AUTHFAIL, 'unknown scheme {FOO}: [AUTH]');
like($c->cmd('CAPA') // '', qr/^\+OK/, 'unknown scheme: session goes on');
$c->read_multi();
ok($x->wait_for_log(qr/\[error\][^\n]*stored secret of user "foo" cannot serve password authentication/),
    'unknown scheme logged as an error');
like(pass_login('foo', '{FOO}x'), $AUTHFAIL,
    'unknown scheme: the stored string is not a password');
like(pass_login('nobrace', 'secret'), $AUTHFAIL, 'unterminated {scheme}');
like(pass_login('nobrace', '{PLAINsecret'), $AUTHFAIL,
    'unterminated {scheme}: not a password');
like(pass_login('lower', 'lowpw'), qr/^\+OK/,
    'scheme names are case-insensitive ({plain})');
like(pass_login('empty', 'x'), $AUTHFAIL, 'empty hash');

# a scheme label must match its crypt(3) string: a relabelled hash is
# not verified under the wrong scheme

SKIP: {
    skip 'doveadm not found (dovecot-core)', 3 unless $have_doveadm;
    for my $case ([ 'SHA512-CRYPT', 'MD5-CRYPT' ], [ 'MD5-CRYPT', 'SHA512-CRYPT' ],
        [ 'BLF-CRYPT', 'SHA256-CRYPT' ])
    {
        my ($label, $real) = @$case;
        (my $body = $hash{$real}) =~ s/^\{[^}]+\}//;
        my $u = lc "mis-$label";
        $x->set_user_secret($u, "{$label}$body");
        like(pass_login($u, "pw-$real!"), $AUTHFAIL,
            "{$label} label on a $real hash: [AUTH]");
    }
}

# a storm of expensive hashes does not stall the worker: while several
# ARGON2ID checks (64 MiB each, as doveadm makes them) run, another session's CAPA is answered fast

SKIP: {
    skip 'doveadm not found (dovecot-core)', 3 unless $have_doveadm;

    my $u = 'u-argon2id';

    my $t0 = time();
    pass_login($u, 'wrong');
    my $one = time() - $t0;

    my $probe = $x->client(port => $port);
    my @storm = map { $x->client(port => $port) } 1 .. 6;
    $_->cmd("USER $u") for @storm;

    my $start = time();
    $_->send('PASS wrong') for @storm;

    my @rtt;
    my $pending = @storm;
    my %done;
    while (time() - $start < 30) {
        my $s0 = time();
        $probe->send('CAPA');
        my $st = $probe->reply(10);
        $probe->read_multi(10);
        push @rtt, (time() - $s0) * 1000;
        last unless defined $st;

        for my $i (0 .. $#storm) {
            next if $done{$i};
            # a reply that has arrived
            my $l = $storm[$i]->read_line(0.001);
            $done{$i} = $l if defined $l;
        }
        last if keys %done == @storm;
    }
    my $storm = time() - $start;

    @rtt = sort { $a <=> $b } @rtt;
    my $max = @rtt ? $rtt[-1] : 9999;
    my $median = @rtt ? $rtt[$#rtt / 2] : 9999;
    note(sprintf('one ARGON2ID login %.0f ms; 6 at once %.0f ms; CAPA '
        . 'meanwhile: %d probes, median %.1f ms, max %.1f ms', $one * 1000,
        $storm * 1000, scalar @rtt, $median, $max));

    is(scalar(grep { /^-ERR \[AUTH\]/ } values %done), 6,
        'every login of the storm answered [AUTH]');
    ok(@rtt >= 3, 'the other session was answered during the storm')
        or diag(sprintf('%d probes in %.0f ms', scalar @rtt, $storm * 1000));

    # hashing on the event loop would hold a probe for about 6 hashes

    ok($median < 50 && $max < 6 * $one * 1000 / 2 + 50,
        'CAPA latency during the storm stays low')
        or diag(sprintf('median %.1f ms, max %.1f ms; one hash %.0f ms',
            $median, $max, $one * 1000));
}

###############################################################################

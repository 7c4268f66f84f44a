#!/usr/bin/perl

# The module's TLS to Redis ("pop3_ext_redis ... tls" and the
# pop3_ext_redis_ssl_* directives), against TLS-only Redis servers, each
# with a CA of its own; one nginx per configuration:
#
#   - the right CA: login, STAT, RETR, DELE and QUIT work, the session end
#     is logged, the deletion is in Redis;
#   - a wrong CA: PASS is answered [SYS/TEMP], the certificate verify
#     error is logged, nothing crashes, and the next login gets the same;
#   - a certificate that does not name 127.0.0.1: [SYS/TEMP] and the name
#     mismatch logged; with pop3_ext_redis_ssl_name set to its name, it
#     works;
#   - a Redis that requires client certificates: it works with
#     pop3_ext_redis_ssl_certificate and _key, and is [SYS/TEMP] without;
#   - pop3_ext_redis_ssl_verify off with a wrong CA: it works;
#   - nginx refuses a configuration with "tls" and verification on but no
#     pop3_ext_redis_ssl_trusted_certificate, or a client certificate
#     without its key (nginx -t fails, and so does starting it).

use strict;
use warnings;

use Test::More;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl/);
my $x = Test::Nginx::POP3Ext->new($t)->has_cli->has_module
    ->has_prog('openssl');
$t->has_daemon('redis-server')->has_daemon('redis-cli');

###############################################################################

# r1 names localhost and 127.0.0.1; r2 asks for client certificates; r3
# names only redis.p3x.test

my %num = (1 => 8460, 2 => 8461, 3 => 8462);

my $r1 = $x->redis_tls($num{1}, auth_clients => 'no');
my $r2 = $x->redis_tls($num{2}, auth_clients => 'yes');
my $r3 = $x->redis_tls($num{3}, auth_clients => 'no',
    cn => 'redis.p3x.test', san => 'DNS:redis.p3x.test');

my %ca = map { $_->[0] => $_->[1]{tls}{ca} }
    ([ 1, $r1 ], [ 2, $r2 ], [ 3, $r3 ]);
my ($ccrt, $ckey) = @{$r2->{tls}}{qw/ client_cert client_key /};

# pop3ext over TLS to each of them

my %cli = (
    1 => [ $r1, '--tls-ca', $ca{1} ],
    2 => [ $r2, '--tls-ca', $ca{2}, '--tls-cert', $ccrt, '--tls-key', $ckey ],
    3 => [ $r3, '--tls-ca', $ca{3}, '--tls-name', 'redis.p3x.test' ],
);

sub p3x {
    my ($n, @args) = @_;
    my ($r, @tls) = @{$cli{$n}};
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    return $x->pop3ext(@tls, @args,
        { %$o, redis => '127.0.0.1:' . $r->port . ' tls' });
}

for my $n (1 .. 3) {
    my ($rc, $out, $err) = p3x($n, 'user', 'add', 'alice',
        { stdin => "secret\n" });
    die "user add in redis $n: $rc $err\n" if $rc != 0;
    for my $m (1, 2) {
        ($rc, $out, $err) = p3x($n, 'deliver', 'alice',
            { stdin => "Subject: m$m\n\nmessage $m of redis $n\n" });
        die "deliver to redis $n: $rc $err\n" if $rc != 0;
    }
}

# the messages in one Redis, or "exit N"

sub count {
    my ($n) = @_;
    my ($rc, $out, $err) = p3x($n, 'stat', 'alice');
    return $rc == 0 && $out =~ /^(\d+) / ? $1 : "exit $rc: $err";
}

###############################################################################

# one nginx per configuration: $t and peers, on PORT_8110 + $i; Redis by
# its placeholder (a real port "127.0.0.1:8nnn" in a configuration is
# taken for the placeholder 8nnn and rewritten)

sub trusted { "    pop3_ext_redis_ssl_trusted_certificate $ca{$_[0]};\n" }

my @confs = (
    [ 'right CA', 1, trusted(1) ],
    [ 'wrong CA', 1, trusted(2) ],
    [ 'name mismatch', 3, trusted(3) ],
    [ 'pop3_ext_redis_ssl_name', 3, trusted(3)
        . "    pop3_ext_redis_ssl_name redis.p3x.test;\n" ],
    [ 'client certificate', 2, trusted(2)
        . "    pop3_ext_redis_ssl_certificate $ccrt;\n"
        . "    pop3_ext_redis_ssl_certificate_key $ckey;\n" ],
    [ 'no client certificate', 2, trusted(2) ],
    [ 'verify off', 1, trusted(2) . "    pop3_ext_redis_ssl_verify off;\n" ],
);

my (%nginx, %port);
for my $i (0 .. $#confs) {
    my ($name, $n, $mail) = @{$confs[$i]};
    my $ng = $i == 0 ? $t : $x->peer();
    $x->run_pop3(nginx => $ng, port => 8110 + $i, mail => $mail,
        redis => "127.0.0.1:%%PORT_$num{$n}%% tls");
    $nginx{$name} = $ng;
    $port{$name} = port(8110 + $i);
}

# and one that must not start

my $bad = $x->peer();

$t->plan(29 + 2 * (keys(%nginx) - 1) + 2);

###############################################################################

# log in on the nginx of configuration $name: the client and PASS's reply

sub login {
    my ($name) = @_;
    my $s = eval { $x->client(port => $port{$name}) } or return (undef, $@);
    my $r = $s->cmd('USER alice');
    return ($s, $r) unless defined $r && $r =~ /^\+OK/;
    return ($s, $s->cmd('PASS secret', 20));
}

# the error log of the nginx $ng matches $re (within 10 s); a named sub
# must not hold the Test::Nginx objects (their end checks run when they
# go: see README.md)

sub logged {
    my ($ng, $re) = @_;
    return $x->wait_for_log($re, 10, $ng);
}

# what the nginx $ng logged above debug level, and the state of the
# Redis servers, for diag() when something did not happen

sub report {
    my ($ng) = @_;
    my @l = $x->log_lines($ng);
    @l = @l[-15 .. -1] if @l > 15;
    return join("\n", @l, map {
        my $r = $cli{$_}[0];
        "redis $_ (" . $r->port . '): '
            . ($r->running ? 'running' : 'not running')
    } sort keys %cli);
}

my ($s, $r, $body);

# the right CA

($s, $r) = login('right CA');
like($r // '', qr/^\+OK/, 'right CA: login')
    or diag(report($nginx{'right CA'}));
like($s && $s->cmd('STAT') // '', qr/^\+OK 2 \d+/, 'right CA: STAT');
($r, $body) = $s ? $s->cmd_multi('RETR 1') : ();
ok(($r // '') =~ /^\+OK/ && ($body // '') =~ /^message 1 of redis 1\r\n\z/m,
    'right CA: RETR') or diag($r);
like($s && $s->cmd('DELE 1') // '', qr/^\+OK/, 'right CA: DELE');
like($s && $s->cmd('QUIT') // '', qr/^\+OK/, 'right CA: QUIT');
ok(logged($nginx{'right CA'},
    qr/pop3_ext: session end, user="alice"[^\n]*retr=1\/[^\n]*dele=1\//),
    'right CA: session end logged');
is(count(1), 1, 'right CA: the deletion is in Redis');

# a wrong CA: the certificate does not verify

($s, $r) = login('wrong CA');
like($r // '', qr/^-ERR \[SYS\/TEMP\]/, 'wrong CA: PASS is [SYS/TEMP]');
ok(logged($nginx{'wrong CA'},
    qr/\[error\][^\n]*pop3_ext:\ redis\ 127\.0\.0\.1:\d+:
    \ certificate\ verify\ error:\ \(\d+:[^\n]*certificate/x),
    'wrong CA: the verify error logged')
    or diag(report($nginx{'wrong CA'}));
($s, $r) = login('wrong CA');
like($r // '', qr/^-ERR \[SYS\/TEMP\]/, 'wrong CA: again [SYS/TEMP]');
ok($x->nginx_running($nginx{'wrong CA'}), 'wrong CA: nginx runs');

# a certificate without the address, and with pop3_ext_redis_ssl_name

($s, $r) = login('name mismatch');
like($r // '', qr/^-ERR \[SYS\/TEMP\]/, 'name mismatch: PASS is [SYS/TEMP]');
ok(logged($nginx{'name mismatch'},
    qr/\[error\][^\n]*pop3_ext:\ redis\ 127\.0\.0\.1:\d+:
    \ certificate\ does\ not\ match\ "127\.0\.0\.1"/x),
    'name mismatch: logged') or diag(report($nginx{'name mismatch'}));

($s, $r) = login('pop3_ext_redis_ssl_name');
like($r // '', qr/^\+OK/, 'pop3_ext_redis_ssl_name: login')
    or diag(report($nginx{'pop3_ext_redis_ssl_name'}));
like($s && $s->cmd('STAT') // '', qr/^\+OK 2 /,
    'pop3_ext_redis_ssl_name: STAT');
($r, $body) = $s ? $s->cmd_multi('RETR 2') : ();
ok(($body // '') =~ /^message 2 of redis 3\r\n\z/m,
    'pop3_ext_redis_ssl_name: RETR');
like($s && $s->cmd('QUIT') // '', qr/^\+OK/, 'pop3_ext_redis_ssl_name: QUIT');

# client certificates required by Redis

($s, $r) = login('client certificate');
like($r // '', qr/^\+OK/, 'client certificate: login')
    or diag(report($nginx{'client certificate'}));
like($s && $s->cmd('STAT') // '', qr/^\+OK 2 /, 'client certificate: STAT');
like($s && $s->cmd('QUIT') // '', qr/^\+OK/, 'client certificate: QUIT');

($s, $r) = login('no client certificate');
like($r // '', qr/^-ERR \[SYS\/TEMP\]/,
    'no client certificate: PASS is [SYS/TEMP]');
ok(logged($nginx{'no client certificate'},
    qr/certificate required|TLS handshake failed/),
    'no client certificate: Redis refusing logged');

# no verification: a wrong CA does not matter

($s, $r) = login('verify off');
like($r // '', qr/^\+OK/, 'verify off: login')
    or diag(report($nginx{'verify off'}));
like($s && $s->cmd('STAT') // '', qr/^\+OK 1 /, 'verify off: STAT');
like($s && $s->cmd('QUIT') // '', qr/^\+OK/, 'verify off: QUIT');
unlike($x->error_log($nginx{'verify off'}),
    qr/certificate (?:verify error|does not match)/,
    'verify off: nothing about the certificate logged');

undef $s;

###############################################################################

# "tls" with verification on and no trusted certificate: refused

sub starts {
    my ($ng) = @_;
    open my $stderr, '>&', \*STDERR or die "can't dup STDERR: $!\n";
    close STDERR;
    my $ok = eval { $ng->run(); 1 };
    open STDERR, '>&', $stderr or die "can't restore STDERR: $!\n";
    return $ok;
}

$bad->write_file_expand('nginx.conf', $x->conf(port => 8120,
    redis => "127.0.0.1:%%PORT_$num{1}%% tls"));
my ($rc, $out) = $x->nginx_t($bad);
ok($rc != 0 && $out
    =~ /pop3_ext_redis with "tls" needs pop3_ext_redis_ssl_trusted_certificate/,
    'no trusted certificate: nginx -t fails, naming the directive')
    or diag("$rc $out");
ok(!starts($bad), 'no trusted certificate: nginx does not start');

# a client certificate without its key: refused

$bad->write_file_expand('nginx.conf', $x->conf(port => 8120,
    redis => "127.0.0.1:%%PORT_$num{2}%% tls", mail => trusted(2)
        . "    pop3_ext_redis_ssl_certificate $ccrt;\n"));
($rc, $out) = $x->nginx_t($bad);
ok($rc != 0
    && $out =~ /no pop3_ext_redis_ssl_certificate_key for the client cert/,
    'a client certificate without its key: nginx -t fails')
    or diag("$rc $out");

###############################################################################

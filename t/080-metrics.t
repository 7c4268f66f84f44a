#!/usr/bin/perl

# Metrics and the session log.  One nginx, two workers, with the metrics
# zone in mail {} and the HTTP endpoint in http {} (http {} first: the
# zone is named by the endpoint before mail {} sizes it).  A scripted set
# of sessions (logins good and bad by four methods, RETR and TOP of known
# sizes, DELE and QUIT, a dropped connection, an unknown command, a
# maildrop in use, implicit TLS and STLS, each also failing, TLS to a
# Redis trusted and to one not, a Redis stalled past the request
# deadline) is read back from /metrics exactly:
# both workers served sessions and the counts are the sums, so the zone
# is shared.  The Redis requests counted match what Redis itself counted
# (INFO commandstats).  Then Redis is killed and started again: connection
# errors, requests not run, reconnects.  promtool checks the output;
# Prometheus scrapes it and its query API gives back every series; every
# metric the Grafana dashboard uses exists.  The session log has one line
# per session, in text and JSON, with the client's escapes, is reopened
# on USR1, and fail2ban's filter still finds the failed logins in the
# error log and none in the session log.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail http/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_ssl
    ->needs_standalone_redis('MONITOR, SIGSTOP and kill -9 of the one'
        . " Redis server (t/082 counts a cluster's redirections)");

my ($crt, $key) = $x->make_self_signed('server', 'localhost');

# one connection per worker to Redis, so that both are on the wire when
# Redis stalls; a deadline short enough to see it pass
$x->run_redis();
my $redis = $x->redis->conf_addr . ' connections=1 timeout=2s';

# TLS to Redis: one whose certificate is trusted, one whose is not
my $tls1 = $x->redis_tls(8460, auth_clients => 'no');
my $tls2 = $x->redis_tls(8461, auth_clients => 'no');

# 8110: plaintext with STLS (loopback: passwords allowed)
# 8111: implicit TLS
# 8112: the session log in JSON
# 8113, 8114: TLS to Redis, trusted and not

$x->run_pop3(
    redis => $redis,
    main => <<'EOF',
worker_processes 2;

http {
    %%TEST_GLOBALS_HTTP%%
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_8180%%;
        location = /metrics { pop3_ext_metrics pop3; }
    }
}
EOF
    mail => "    pop3_ext_metrics_zone pop3 256k;\n"
        . "    pop3_ext_auth_fail_delay 100ms;\n"
        . "    pop3_ext_auth_block_addr 0;\n"
        . "    pop3_ext_session_log %%TESTDIR%%/session.log;\n"
        . "    pop3_ext_lock_refresh 10s;\n"
        . "    ssl_certificate $crt;\n"
        . "    ssl_certificate_key $key;\n"
        . "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        . "    pop3_ext_redis_ssl_trusted_certificate $tls1->{tls}{ca};\n"
        . $x->server(8111, '', listen => 'ssl', redis => $redis)
        . $x->server(8112, 'pop3_ext_session_log %%TESTDIR%%/session.json '
            . 'json;', redis => $redis)
        . $x->server(8113, '', redis => $tls1->conf_addr . ' tls connections=1')
        . $x->server(8114, '', redis => $tls2->conf_addr . ' tls connections=1'),
    server => "        starttls on;\n",
);

my $m1 = "Subject: one\r\n\r\nfirst\r\n";
my $m2 = "Subject: two\r\n\r\n" . (('x' x 100) . "\r\n") x 50;
my $head3 = "Subject: three\r\nX-Test: t\r\n\r\n";
my $m3 = $head3 . "line one\r\nline two\r\n";

$x->add_user('alice', 'secret');
$x->add_user('bob', 'bobpw');
$x->deliver('alice', $_) for $m1, $m2, $m3;

$t->plan(89);

# from here on, what Redis runs for its clients (not inside scripts)

my $monitor = IO::Socket::INET->new('127.0.0.1:' . $x->redis_port)
    or die "monitor: $!\n";
print $monitor "MONITOR\r\n";
die "MONITOR refused\n" unless (<$monitor> // '') =~ /^\+OK/;
$monitor->blocking(0);
my $monitored = '';

my $NODE = '127.0.0.1:' . $x->redis_port;

# what the script did, to compare with what nginx counted

my (%cmd, %login, %end, %tls);
my ($checks, $retr, $top, $commits, $deleted, $deleted_bytes) = (0) x 6;

sub c {
    my ($s, $line) = @_;
    $cmd{uc((split / /, $line)[0])}++;
    return $s->cmd($line);
}

sub multi {
    my ($s, $line) = @_;
    $cmd{uc((split / /, $line)[0])}++;
    return $s->cmd_multi($line);
}

sub b64 { encode_base64($_[0], '') }

# the metrics page, its body

sub scrape {
    my $r = http_get('/metrics', PeerAddr => '127.0.0.1:' . port(8180)) // '';
    $r =~ s/^.*?\r\n\r\n//s;
    return $r;
}

# name{labels} -> value, with the labels sorted

sub canon {
    my ($name, $labels) = @_;
    my @l = map { "$_=\"$labels->{$_}\"" }
        grep { $_ ne 'job' && $_ ne 'instance' } sort keys %$labels;
    return @l ? $name . '{' . join(',', @l) . '}' : $name;
}

sub parse {
    my ($text) = @_;
    my %v;
    for (split /\n/, $text) {
        next if /^#/ || !/^(\w+)(?:\{(.*)\})? (\S+)$/;
        my ($name, $l, $val) = ($1, $2 // '', $3);
        my %l;
        $l{$1} = $2 while $l =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
        $v{canon($name, \%l)} = $val;
    }
    return \%v;
}

sub metric {
    my ($v, $name, %l) = @_;
    return $v->{canon($name, \%l)} // 0;
}

sub session_pids {
    my %p;
    my $log = $x->read_file('session.log');
    $p{$1} = 1 while $log =~ / pid=(\d+) /g;
    return scalar keys %p;
}

# until Redis and nginx agree on the requests (replies nobody waits for
# arrive a little later), or 10 s

sub redis_calls {
    while (1) {
        my $n = sysread($monitor, my $buf, 1 << 20);
        last unless $n;
        $monitored .= $buf;
    }
    my $n = 0;
    $n++ while $monitored =~ /^\S+ \[\d+ [\d.]+:\d+\] "(?:EVALSHA|GETRANGE|LRANGE|DEL|ZREM)"/mg;
    return $n;
}

sub settled {
    my $deadline = time() + 10;
    my ($v, $calls);
    while (1) {
        $v = parse(scrape());
        $calls = redis_calls();
        my $sent = metric($v, 'pop3ext_redis_requests_total',
                node => $NODE, outcome => 'ok')
            + metric($v, 'pop3ext_redis_requests_total',
                node => $NODE, outcome => 'unknown');
        last if ($sent == $calls
            && metric($v, 'pop3ext_sessions_active') == 0)
            || time() > $deadline;
        sleep(0.2);
    }
    return ($v, $calls);
}

# until no session is open: a session is counted when it ends, after the
# client has read its last reply

sub idle {
    my $deadline = time() + 10;
    my $v;
    while (1) {
        $v = parse(scrape());
        last if metric($v, 'pop3ext_sessions_active') == 0
            || time() > $deadline;
        sleep(0.1);
    }
    return $v;
}

###############################################################################

# both workers serve sessions (and each opens its Redis connection)

my $primed = 0;

for my $round (1 .. 40) {
    my @s = map { $x->client(port => port(8110)) } 1 .. 3;
    for my $s (@s) {
        c($s, 'USER bob');
        c($s, 'PASS bobpw');
        c($s, 'QUIT');
        $login{'user/ok'}++;
        $end{quit}++;
        $checks++;
        $commits++;
        $primed++;
    }
    last if session_pids() >= 2;
}

is(session_pids(), 2, 'both workers served sessions');

# S1: a wrong password, then RETR, TOP, DELE, an unknown command, QUIT

my $s = $x->client(port => port(8110));
c($s, 'USER alice');
like(c($s, 'PASS wrong') // '', qr/^-ERR \[AUTH\]/, 'wrong password');
c($s, 'USER alice');
like(c($s, 'PASS secret') // '', qr/^\+OK maildrop has 3 messages/,
    'logged in');
$login{'user/bad_credentials'}++;
$login{'user/ok'}++;
$checks += 2;
c($s, 'STAT');
multi($s, 'LIST');
my ($st, $body) = multi($s, 'RETR 1');
is($body, $m1, 'RETR 1');
($st, $body) = multi($s, 'RETR 2');
is($body, $m2, 'RETR 2');
($st, $body) = multi($s, 'TOP 3 1');
is($body, "${head3}line one\r\n", 'TOP 3 1');
$retr += length($m1) + length($m2);
$top += length("${head3}line one\r\n");
like(c($s, 'DELE 1') // '', qr/^\+OK/, 'DELE 1');
like(c($s, 'XYZZY') // '', qr/^-ERR unknown command/, 'unknown command');
like(c($s, 'QUIT') // '', qr/^\+OK bye, 2 messages left/, 'QUIT commits');
$end{quit}++;
$commits++;
$deleted++;
$deleted_bytes += length($m1);

# S2: AUTH PLAIN with an initial response, then the connection dropped

$s = $x->client(port => port(8110));
like(c($s, 'AUTH PLAIN ' . b64("\0bob\0bobpw")) // '', qr/^\+OK/,
    'AUTH PLAIN');
$login{'plain/ok'}++;
$checks++;
c($s, 'NOOP');
$s->close();
$end{closed}++;

# S3: AUTH LOGIN, wrong password, QUIT

$s = $x->client(port => port(8110));
like(c($s, 'AUTH LOGIN') // '', qr/^\+ /, 'AUTH LOGIN');
$s->cmd(b64('bob'));
like($s->cmd(b64('nope')) // '', qr/^-ERR \[AUTH\]/, 'AUTH LOGIN refused');
$login{'login/bad_credentials'}++;
$checks++;
c($s, 'QUIT');
$end{quit}++;

# S4: implicit TLS

$s = $x->client(port => port(8111), ssl => 1);
ok($s->is_tls, 'implicit TLS');
c($s, 'USER alice');
like(c($s, 'PASS secret') // '', qr/^\+OK maildrop has 2 messages/,
    'login over TLS');
multi($s, 'UIDL');
c($s, 'QUIT');
$tls{'implicit/ok'}++;
$login{'user/ok'}++;
$checks++;
$end{quit}++;
$commits++;

# S5: STLS

$s = $x->client(port => port(8110));
multi($s, 'CAPA');
like(c($s, 'STLS') // '', qr/^\+OK/, 'STLS');
ok($s->start_tls(), 'STLS handshake');
multi($s, 'CAPA');
c($s, 'QUIT');
$tls{'stls/ok'}++;
$end{quit}++;

# S6: an implicit TLS handshake that fails: no session

$s = $x->client(port => port(8111), greeting => 0);
$s->print("this is not TLS\r\n\r\n");
ok($s->closed(5), 'not TLS: closed');
$tls{'implicit/failed'}++;

# S7: a STLS handshake that fails

$s = $x->client(port => port(8110));
like(c($s, 'STLS') // '', qr/^\+OK/, 'STLS again');
$s->print("not a ClientHello\r\n\r\n");
ok($s->closed(5), 'failed STLS handshake: closed');
$tls{'stls/failed'}++;
$end{tls_failed}++;

# S8: the maildrop in use; two sessions open at once

my $sa = $x->client(port => port(8110));
c($sa, 'USER alice');
like(c($sa, 'PASS secret') // '', qr/^\+OK/, 'first session');
my $sb = $x->client(port => port(8110));
c($sb, 'USER alice');
like(c($sb, 'PASS secret') // '', qr/^-ERR \[IN-USE\]/, 'second: in use');
$login{'user/ok'}++;
$login{'user/in_use'}++;
$checks += 2;
is(metric(parse(scrape()), 'pop3ext_sessions_active'), 2,
    'two sessions open, over both workers');
c($sb, 'QUIT');
c($sa, 'QUIT');
$end{quit} += 2;
$commits++;

# T1, T2: TLS to Redis; the trusted one has no user bob, the other
# cannot be used

$s = $x->client(port => port(8113));
c($s, 'USER bob');
like(c($s, 'PASS bobpw') // '', qr/^-ERR \[AUTH\]/,
    'TLS to Redis: a user it does not have');
$login{'user/bad_credentials'}++;
$checks++;
c($s, 'QUIT');
$end{quit}++;

$s = $x->client(port => port(8114));
c($s, 'USER bob');
like(c($s, 'PASS bobpw') // '', qr/^-ERR \[SYS\/TEMP\] mail store/,
    'TLS to an untrusted Redis: mail store unavailable');
$login{'user/redis_error'}++;
c($s, 'QUIT');
$end{quit}++;

# J1: the JSON log, a name with a quote, a backslash, UTF-8 and an octet
# that is not UTF-8

my $odd = "q\"\\\xc3\xa9\xff";
$s = $x->client(port => port(8112));
c($s, "USER $odd");
like(c($s, 'PASS x') // '', qr/^-ERR \[AUTH\]/, 'odd name refused');
$login{'user/bad_credentials'}++;
$checks++;
c($s, 'QUIT');
$end{quit}++;

# Redis stalled past the deadline: a login's two requests time out, their
# outcome unknown

$x->redis->pause();
$s = $x->client(port => port(8110));
c($s, 'USER bob');
my $start = time();
like(c($s, 'PASS bobpw') // '', qr/^-ERR \[SYS\/TEMP\] mail store/,
    'Redis stalled: mail store unavailable');
my $took = time() - $start;
$x->redis->resume();
ok($took >= 1.5 && $took < 4, 'at the 2 s deadline') or diag("took $took");
$login{'user/redis_error'}++;
c($s, 'QUIT');
$end{quit}++;

###############################################################################

# everything counted, exactly

my ($v, $calls) = settled();

for my $k (sort keys %login) {
    my ($method, $result) = split m{/}, $k;
    is(metric($v, 'pop3ext_logins_total', method => $method,
        result => $result), $login{$k}, "logins $method $result");
}

my $logins = 0;
$logins += $v->{$_} for grep { /^pop3ext_logins_total/ } keys %$v;
my $want = 0;
$want += $_ for values %login;
is($logins, $want, 'no other logins counted');

my %cmdv = map { /command="(\w+)"/ ? ($1, $v->{$_}) : () }
    grep { /^pop3ext_commands_total/ } keys %$v;
$cmd{unknown} = delete $cmd{XYZZY};
is_deeply({ map { $_ => $cmdv{$_} } grep { $cmdv{$_} } keys %cmdv },
    \%cmd, 'commands by name');

for my $o (qw/ quit closed tls_failed timeout limit lock_lost error /) {
    is(metric($v, 'pop3ext_sessions_total', outcome => $o),
        $end{$o} // 0, "sessions ended: $o");
}

is(metric($v, 'pop3ext_sessions_active'), 0, 'no session open');
is(metric($v, 'pop3ext_message_sent_bytes_total', command => 'RETR'), $retr,
    'RETR octets');
is(metric($v, 'pop3ext_message_sent_bytes_total', command => 'TOP'), $top,
    'TOP octets');
is(metric($v, 'pop3ext_commits_total', result => 'ok'), $commits,
    'commits');
is(metric($v, 'pop3ext_deleted_messages_total'), $deleted,
    'messages deleted');
is(metric($v, 'pop3ext_deleted_bytes_total'), $deleted_bytes,
    'octets deleted');

for my $k (qw{ implicit/ok implicit/failed stls/ok stls/failed }) {
    my ($mode, $result) = split m{/}, $k;
    is(metric($v, 'pop3ext_tls_handshakes_total', mode => $mode,
        result => $result), $tls{$k}, "TLS $mode $result");
}

is(metric($v, 'pop3ext_auth_check_duration_seconds_count'), $checks,
    'credential checks');
is(metric($v, 'pop3ext_auth_queue_length'), 0, 'no check waiting');

my $ok = metric($v, 'pop3ext_redis_requests_total', node => $NODE,
    outcome => 'ok');
is(metric($v, 'pop3ext_redis_requests_total', node => $NODE,
    outcome => 'unknown'), 2, 'redis: the stalled login\'s two requests');
is(metric($v, 'pop3ext_redis_requests_total', node => $NODE,
    outcome => 'notrun'), 0, 'redis: none refused');
is($ok + 2, $calls, 'redis: what nginx sent is what Redis ran')
    or diag("nginx ok $ok, redis $calls");
is(metric($v, 'pop3ext_redis_request_duration_seconds_count',
    node => $NODE), $ok, 'redis: latency of every answered request');
is(metric($v, 'pop3ext_redis_errors_total', node => $NODE, kind => 'reply'),
    0, 'redis: no error replies (IN-USE is an answer)');

is(metric($v, 'pop3ext_redis_tls_handshakes_total', node => $tls1->addr,
    result => 'ok'), 2, 'redis TLS: one handshake per worker\'s connection');
ok(metric($v, 'pop3ext_redis_tls_handshakes_total', node => $tls2->addr,
    result => 'failed') >= 1, 'redis TLS: the untrusted one failed');
is(metric($v, 'pop3ext_redis_requests_total', node => $tls2->addr,
    outcome => 'notrun'), 1, 'redis TLS: its login refused at once');

# the session log: a line per session, each worker's

my @lines = split /\n/, $x->read_file('session.log');
my @json = split /\n/, $x->read_file('session.json');
my $sessions = 0;
$sessions += $_ for values %end;
is(@lines + @json, $sessions, 'a log line per session');

my ($s1) = grep { /user="alice" method=user login=ok failed_logins=1 / }
    @lines;
like($s1 // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d pop3_ext_session host=\S+ pid=\d+ conn=\d+ client=127\.0\.0\.1 server=127\.0\.0\.1:\d+ user="alice" method=user login=ok failed_logins=1 tls=- cipher=- duration=\d+\.\d{3} commands=12 retr=2\/${\(length($m1) + length($m2))} dele=1\/${\length($m1)} left=2 end=quit reason="quit"$/,
    'the line of the first session');
like(join("\n", @lines), qr/ method=user login=ok failed_logins=0 tls=TLSv1\.3 cipher=TLS_\w+ /,
    'implicit TLS logged');
like(join("\n", @lines), qr/ user="" method=- login=none failed_logins=0 tls=TLSv1\.3 cipher=\S+ .* end=quit /,
    'STLS logged');
like(join("\n", @lines), qr/ tls=- .* end=tls_failed reason="TLS handshake failed"$/m,
    'failed STLS logged');
like(join("\n", @lines), qr/ user="bob" method=plain login=ok .* end=closed reason="connection closed"$/m,
    'dropped connection logged');

my $j = eval { decode_json($json[0] // '') } // {};
is($j->{user}, "q\"\\\x{e9}\x{ff}", 'JSON: the name, escaped, valid UTF-8');
is_deeply([ @$j{qw/ method login failed_logins end reason client /} ],
    [ 'user', 'failed', 1, 'quit', 'quit', '127.0.0.1' ], 'JSON: fields');

# fail2ban reads the error log, as before; the session log bans nobody

SKIP: {
    my $f2b = $x->prog('fail2ban-regex');
    skip 'fail2ban-regex not installed', 2 unless $f2b;

    my $filter = Test::Nginx::POP3Ext::repo()
        . '/docs/fail2ban/filter.d/nginx-pop3-ext.conf';
    my (undef, $out) = $x->run_cmd([ $f2b, $t->testdir() . '/error.log',
        $filter ], { timeout => 60 });
    like($out, qr/^Lines: \d+ lines, \d+ ignored, 4 matched/m,
        'fail2ban: the four refused logins in the error log');
    (undef, $out) = $x->run_cmd([ $f2b, $t->testdir() . '/session.log',
        $filter ], { timeout => 60 });
    like($out, qr/^Lines: \d+ lines, \d+ ignored, 0 matched/m,
        'fail2ban: nothing in the session log');
}

###############################################################################

# the output passes promtool; Prometheus scrapes it and gives every series
# back

my $text = scrape();

SKIP: {
    my $promtool = $x->prog('promtool');
    skip 'promtool not installed (prometheus)', 1 unless $promtool;

    my ($code, $out, $err) = $x->run_cmd([ $promtool, 'check', 'metrics' ],
        { stdin => $text });
    is("$code $out$err", '0 ', 'promtool check metrics: no problem');
}

SKIP: {
    my $prom = $x->prog('prometheus');
    skip 'prometheus not installed', 3 unless $prom;

    my $d = $t->testdir();
    my $pport = port(8190);
    $x->write_file('prometheus.yml', <<"EOF");
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pop3ext
    static_configs:
      - targets: ['127.0.0.1:${\port(8180)}']
EOF
    my $pid = $x->spawn("$d/prometheus.out", $prom,
        "--config.file=$d/prometheus.yml", "--storage.tsdb.path=$d/prom",
        "--web.listen-address=127.0.0.1:$pport");

    # the untrusted Redis's counts go on: its connections are tried again
    my $moving = $tls2->addr;
    my $want = parse($text);
    delete $want->{$_} for grep { /node="\Q$moving\E"/ } keys %$want;
    my ($got, $diff) = ({}, 'no answer');
    my $deadline = time() + 60;

    while (time() < $deadline) {
        sleep(1);
        $got = prom_query($pport, '{__name__=~"pop3ext_.+",node!="'
            . $moving . '"}') or next;
        $diff = compare($want, $got);
        last unless $diff;
    }

    is($diff, '', 'Prometheus has every series, with the same values');
    ok(keys %$got > 100, 'and many of them') or diag(scalar keys %$got);

    # the dashboard's queries, with Grafana's variables filled in

    my @bad;
    for my $e (dashboard_exprs()) {
        (my $q = $e) =~ s/\$__rate_interval/1m/g;
        $q =~ s/\$instance/.*/g;
        push @bad, $e unless prom_query($pport, $q);
    }
    is("@bad", '', 'Prometheus runs every query of the dashboard');

    Test::Nginx::POP3Ext::stop_pid($pid, 'TERM', 10);
}

sub prom_query {
    my ($pport, $q) = @_;
    $q =~ s/([^A-Za-z0-9_.-])/sprintf('%%%02X', ord $1)/ge;
    my $r = http_get("/api/v1/query?query=$q",
        PeerAddr => "127.0.0.1:$pport") // return;
    $r =~ s/^.*?\r\n\r\n//s;
    my $j = eval { decode_json($r) } or return;
    return unless ($j->{status} // '') eq 'success';
    my %v;
    for my $e (@{$j->{data}{result}}) {
        my %l = %{$e->{metric}};
        my $name = delete $l{__name__} // "";
        $v{canon($name, \%l)} = $e->{value}[1];
    }
    return \%v;
}

sub dashboard {
    return eval {
        decode_json(Test::Nginx::POP3Ext::_slurp(Test::Nginx::POP3Ext::repo()
            . '/docs/grafana-dashboard.json'));
    };
}

# the "expr" of every target, anywhere in the dashboard

sub dashboard_exprs {
    my @todo = (dashboard());
    my @e;
    while (@todo) {
        my $n = shift @todo;
        if (ref $n eq 'HASH') {
            push @e, $n->{expr} if defined $n->{expr} && !ref $n->{expr};
            push @todo, values %$n;
        } elsif (ref $n eq 'ARRAY') {
            push @todo, @$n;
        }
    }
    return @e;
}

sub compare {
    my ($want, $got) = @_;
    for my $k (sort keys %$want) {
        return "$k missing" unless exists $got->{$k};
        return "$k: $got->{$k}, not $want->{$k}"
            unless $got->{$k} == $want->{$k};
    }
    for my $k (sort keys %$got) {
        return "$k not in the output" unless exists $want->{$k};
    }
    return '';
}

# every metric the dashboard asks for is in the output

my $dash = dashboard();
ok($dash && @{$dash->{panels} // []}, 'the dashboard is JSON, with panels');

my (%names, %used);
$names{$1} = 1 while $text =~ /^(pop3ext_\w+)[{ ]/mg;

for my $e (dashboard_exprs()) {
    $used{$1} = 1 while $e =~ /\b(pop3ext_\w+)/g;
}

my @missing = grep { !$names{$_} } sort keys %used;
ok(keys %used >= 10 && !@missing, 'the dashboard uses metrics that exist')
    or diag("missing: @missing; used: " . join(' ', sort keys %used));

###############################################################################

# USR1 reopens the session log (the workers, not root, reopen it too)

chmod(0711, $t->testdir());
rename($t->testdir() . '/session.log', $t->testdir() . '/session.log.1');
kill 'USR1', $x->nginx_pid();
my $deadline = time() + 10;
sleep(0.1) until -e $t->testdir() . '/session.log' || time() > $deadline;
ok(-e $t->testdir() . '/session.log', 'USR1: the log reopened');
sleep(0.5);    # the workers reopen it after the master

$s = $x->client(port => port(8110));
$s->cmd('QUIT');
$s->close();
$deadline = time() + 5;
sleep(0.1) until $x->read_file('session.log') =~ /end=quit/
    || time() > $deadline;
like($x->read_file('session.log'), qr/user="" .* end=quit reason="quit"$/m,
    'the next session written to the new file');

###############################################################################

# Redis killed, then back: connection errors, requests not run, reconnects

$x->redis_cmd('SAVE');
my $before = parse(scrape());
$x->redis->stop('KILL');
sleep(1.5);                             # both workers tried to reconnect

$s = $x->client(port => port(8110));
$s->cmd('USER bob');
like($s->cmd('PASS bobpw') // '', qr/^-ERR \[SYS\/TEMP\] mail store/,
    'Redis down: mail store unavailable');
$s->cmd('QUIT');

$x->redis->start();
$deadline = time() + 15;
my $back;
while (time() < $deadline) {
    $s = $x->client(port => port(8110));
    $s->cmd('USER bob');
    $back = ($s->cmd('PASS bobpw') // '') =~ /^\+OK/;
    $s->cmd('QUIT');
    last if $back;
    sleep(0.3);
}
ok($back, 'logins work again');

$v = parse(scrape());
my $delta = sub { metric($v, @_) - metric($before, @_) };

ok($delta->('pop3ext_redis_errors_total', node => $NODE,
    kind => 'connection') >= 2, 'connection errors counted');
ok($delta->('pop3ext_redis_requests_total', node => $NODE,
    outcome => 'notrun') >= 1, 'requests not run counted');
ok($delta->('pop3ext_redis_reconnects_total', node => $NODE) >= 1,
    'reconnects counted');
ok($delta->('pop3ext_logins_total', method => 'user',
    result => 'redis_error') >= 1, 'the failed login counted');

###############################################################################

# a reload, with mail {} before http {} this time: nginx reuses the zone
# (same name, size and tag), and the counts go on

my $conf = $x->read_file('nginx.conf');
$conf =~ s/^(http \{.*?^\}\n)//ms;
my $http = $1 // '';
$http =~ s{(location = /metrics[^\n]*\n)}
    {$1        location = /reloaded { return 204; }\n};
$t->write_file('nginx.conf', $conf . $http);

$s->close();
$before = idle();
$t->reload();

$deadline = time() + 15;
my $reloaded;
while (time() < $deadline) {
    $reloaded = (http_get('/reloaded',
        PeerAddr => '127.0.0.1:' . port(8180)) // '') =~ /^HTTP\S+ 204 /;
    last if $reloaded;
    sleep(0.2);
}
ok($reloaded, 'reloaded, http {} last');

$v = parse(scrape());
is_deeply([ map { metric($v, @$_) } [ 'pop3ext_sessions_total',
    outcome => 'quit' ], [ 'pop3ext_logins_total', method => 'user',
    result => 'ok' ], [ 'pop3ext_sessions_active' ] ],
    [ map { metric($before, @$_) } [ 'pop3ext_sessions_total',
    outcome => 'quit' ], [ 'pop3ext_logins_total', method => 'user',
    result => 'ok' ], [ 'pop3ext_sessions_active' ] ],
    'the counts kept across the reload');

$s = $x->client(port => port(8110));
$s->cmd('USER bob');
$s->cmd('PASS bobpw');
$s->cmd('QUIT');
$s->close();

$deadline = time() + 5;
sleep(0.1) until metric(parse(scrape()), 'pop3ext_sessions_total',
    outcome => 'quit') > metric($v, 'pop3ext_sessions_total',
    outcome => 'quit') || time() > $deadline;
my $v2 = parse(scrape());
is(metric($v2, 'pop3ext_logins_total', method => 'user', result => 'ok')
    - metric($v, 'pop3ext_logins_total', method => 'user', result => 'ok'),
    1, 'and counted on by the new workers');

###############################################################################

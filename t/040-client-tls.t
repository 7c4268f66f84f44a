#!/usr/bin/perl

# Real clients written by others, over TLS: curl pop3s:// (implicit TLS,
# with -k and with the certificate verified) and pop3:// --ssl-reqd
# (STLS); curl refused in plaintext where the policy says so; Python's
# poplib.POP3_SSL and POP3.stls(); fetchmail with "ssl" and with STLS.
# Messages arrive byte-exact.  Each client is skipped when it is missing.

use strict;
use warnings;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_ssl;

my ($crt, $key) = $x->make_self_signed('server', 'localhost');
my $d = $x->testdir;

# 8110: STLS, plaintext only inside TLS; 8111: implicit TLS

$x->run_pop3(
    mail => "    ssl_certificate $crt;\n"
        . "    ssl_certificate_key $key;\n"
        . "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        . $x->server(8111, 'pop3_ext_secure_networks off;',
            listen => 'ssl'),
    server => "        starttls on;\n"
        . "        pop3_ext_secure_networks off;\n"
        . "        pop3_ext_auth_fail_delay 10ms;\n",
);

my @m = (
    "Subject: one\r\n\r\nfirst\r\n.dotted\r\n..two dots\r\n.\r\nend\r\n",
    "Subject: two\r\n\r\nGr\xc3\xbc\xc3\x9fe \xff\x80\r\n",
);
my $big = "Subject: big\r\n\r\n";
my $i = 0;
while (length($big) < 300 * 1024) {
    $big .= ($i % 7 == 0 ? '.' : '') . ('z' x ($i % 150)) . "\r\n";
    $i++;
}
push @m, $big;

$x->add_user('alice', 'secret');
$x->deliver('alice', $_) for @m;

$t->plan(25);

my $STLS = port(8110);
my $SSL = port(8111);

# lists of messages: equal, or a short diagnosis (sizes, not contents)

sub same {
    my ($got, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = @$got == @$want
        && !grep { $got->[$_] ne $want->[$_] } 0 .. $#$want;
    ok($ok, $name) or diag('got sizes ' . join(' ', map { length } @$got)
        . '; want ' . join(' ', map { length } @$want));
}

###############################################################################

# curl

SKIP: {
    my $curl = Test::Nginx::POP3Ext::find_prog('curl');
    skip 'curl not found', 9 unless $curl;

    my @curl = ($curl, '-sS', '--max-time', '30');

    my ($rc, $out, $err) = $x->run_cmd([ @curl, '-k',
        "pop3s://alice:secret\@127.0.0.1:$SSL/1" ], { timeout => 40 });
    is($rc, 0, 'curl pop3:// -k: RETR 1') or diag($err);
    is($out, $m[0], 'curl pop3s://: message 1 byte-exact');

    ($rc, $out, $err) = $x->run_cmd([ @curl, '--cacert', $crt,
        '--resolve', "localhost:$SSL:127.0.0.1",
        "pop3s://alice:secret\@localhost:$SSL/3" ], { timeout => 40 });
    is($rc, 0, 'curl pop3s:// with the certificate verified') or diag($err);
    ok($out eq $m[2], 'curl pop3s://: 300 kB message byte-exact')
        or diag('got ' . length($out) . ' octets');

    ($rc, $out, $err) = $x->run_cmd([ @curl, '-k', '--ssl-reqd',
        "pop3://alice:secret\@127.0.0.1:$STLS/2" ], { timeout => 40 });
    is($rc, 0, 'curl pop3:// --ssl-reqd (STLS): RETR 2') or diag($err);
    is($out, $m[1], 'curl STLS: message 2 byte-exact');

    ($rc, $out, $err) = $x->run_cmd([ @curl, '-k', '--ssl-reqd',
        "pop3://alice:secret\@127.0.0.1:$STLS/" ], { timeout => 40 });
    is($out, join('', map { "$_ " . length($m[$_ - 1]) . "\r\n" } 1 .. 3),
        'curl STLS: LIST');

    # no TLS: the credentials never cross, curl fails to log in

    ($rc, $out, $err) = $x->run_cmd([ @curl,
        "pop3://alice:secret\@127.0.0.1:$STLS/1" ], { timeout => 40 });
    isnt($rc, 0, 'curl pop3:// without TLS: refused');
    is($out, '', 'curl pop3:// without TLS: no message');
}

# Python poplib

SKIP: {
    my $py = Test::Nginx::POP3Ext::find_prog('python3');
    skip 'python3 not found', 10 unless $py;
    my ($prc) = $x->run_cmd([ $py, '-c', 'import poplib, ssl' ]);
    skip 'python3 without poplib or ssl', 10 if $prc != 0;

    $x->write_file('client.py', <<'EOF');
import poplib, ssl, sys

mode, port, cafile, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = True

if mode == 'ssl':
    p = poplib.POP3_SSL('localhost', port, context=ctx, timeout=20)
    print('TLS', p.sock.version())
else:
    p = poplib.POP3('127.0.0.1', port, timeout=20)
    caps = p.capa()
    print('BEFORE', ' '.join(sorted(caps)))
    try:
        p.user('alice')
        print('USER-PLAINTEXT ok')
    except poplib.error_proto as e:
        print('USER-PLAINTEXT', e.args[0].decode())
    ctx.check_hostname = False
    p.stls(context=ctx)
    print('TLS', p.sock.version())
    print('AFTER', ' '.join(sorted(p.capa())))

p.user('alice')
print('PASS', p.pass_('secret').decode())
count, size = p.stat()
print('STAT', count, size)
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    with open('%s/%s-%d' % (outdir, mode, i), 'wb') as f:
        f.write(b''.join(l + b'\r\n' for l in lines))
print('QUIT', p.quit().decode())
EOF

    my ($rc, $out, $err) = $x->run_cmd([ $py, "$d/client.py", 'ssl', $SSL,
        $crt, $d ], { timeout => 60 });
    is($rc, 0, 'poplib.POP3_SSL session') or diag("$out$err");
    like($out, qr/^PASS \+OK/m, 'POP3_SSL: logged in');
    like($out, qr/^STAT 3 /m, 'POP3_SSL: STAT');
    same([ map { $x->read_file("ssl-$_") } 1 .. 3 ], \@m,
        'POP3_SSL: every message byte-exact');

    ($rc, $out, $err) = $x->run_cmd([ $py, "$d/client.py", 'stls', $STLS,
        $crt, $d ], { timeout => 60 });
    is($rc, 0, 'poplib stls() session') or diag("$out$err");
    like($out, qr/^BEFORE .*\bSTLS\b/m, 'stls(): STLS in CAPA before');
    like($out, qr/^USER-PLAINTEXT -ERR \[AUTH\] plaintext/m,
        'stls(): USER refused in plaintext');
    like($out, qr/^AFTER (?!.*\bSTLS\b).*\bUSER\b/m,
        'stls(): after TLS, USER and no STLS');
    like($out, qr/^PASS \+OK/m, 'stls(): logged in');
    same([ map { $x->read_file("stls-$_") } 1 .. 3 ], \@m,
        'stls(): every message byte-exact');
}

# fetchmail

SKIP: {
    my $fm = Test::Nginx::POP3Ext::find_prog('fetchmail');
    skip 'fetchmail not found', 6 unless $fm;

    mkdir "$d/out";

    my $fetch = sub {
        my ($port, $opts) = @_;
        $x->write_file('fetchmailrc', <<"EOF");
set no syslog
set invisible
poll localhost via 127.0.0.1 with proto POP3 service $port timeout 20
    user "alice" there with password "secret" is "root" here
    options keep no rewrite fetchall stripcr $opts
    mda "cat > $d/out/msg.\$\$"
EOF
        chmod 0600, "$d/fetchmailrc";
        return $x->run_cmd([ $fm, '-f', "$d/fetchmailrc", '-N',
            '--nosyslog', '--pidfile', "$d/fetchmail.pid",
            '-i', "$d/fetchids" ],
            { timeout => 60, env => { HOME => $d, FETCHMAILHOME => $d } });
    };

    my $fetched = sub {
        opendir(my $dh, "$d/out") or return [];
        my @f = grep { /^msg\./ } readdir $dh;
        closedir $dh;
        my @msgs = map { $x->read_file("out/$_") } @f;
        unlink map { "$d/out/$_" } @f;
        return [ sort @msgs ];
    };

    # stripcr: the MDA gets LF line ends

    my @lf = sort map { (my $x = $_) =~ s/\r\n/\n/g; $x } @m;

    my ($rc, $out, $err) = $fetch->($SSL,
        "ssl sslproto TLS1.2+ sslcertck sslcertfile $crt "
        . "sslcommonname localhost");
    is($rc, 0, 'fetchmail ssl, certificate checked') or diag("$out$err");
    same($fetched->(), \@lf, 'fetchmail ssl: all messages byte-exact');

    ($rc, $out, $err) = $fetch->($STLS,
        "sslproto TLS1.2+ no sslcertck");
    is($rc, 0, 'fetchmail STLS (sslproto TLS1.2+, no sslcertck)')
        or diag("$out$err");
    same($fetched->(), \@lf, 'fetchmail STLS: all messages');

    # STLS refused by policy would leave plaintext only: fetchmail with
    # sslproto '' must not get in

    ($rc, $out, $err) = $fetch->($STLS, "sslproto ''");
    isnt($rc, 0, 'fetchmail without TLS: refused') or diag("$out$err");
    is_deeply($fetched->(), [], 'fetchmail without TLS: nothing fetched');
}

###############################################################################

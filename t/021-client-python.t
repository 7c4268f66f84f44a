#!/usr/bin/perl

# A real client written by others: Python's poplib.  user / pass_, stat,
# list, retr (dot-stuffed lines, 8-bit octets), uidl, top, capa, dele,
# quit; the next session sees the deletion; a wrong password raises.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::POP3Ext;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->has_prog('python3')
    ->run_pop3();

my @m = (
    "Subject: one\n\nfirst\n.dotted\n..two dots\n.\n",
    "Subject: two\n\nGr\xc3\xbc\xc3\x9fe \xff\x80\n",
    "Subject: three\nX-A: b\n\nl1\nl2\nl3\n",
);
my @crlf = map { (my $x = $_) =~ s/\n/\r\n/g; $x } @m;

$x->add_user('alice', 'secret');
$x->deliver('alice', $_) for @m;

# everything the client saw, as JSON; octets as latin-1 code points

my $script = <<'PY';
import json, poplib, sys

port = int(sys.argv[1])
out = {}

def s(b):
    return b.decode('latin-1')

def body(lines):
    return ''.join(s(l) + '\r\n' for l in lines)

p = poplib.POP3('127.0.0.1', port, timeout=10)
out['welcome'] = s(p.getwelcome())
out['capa'] = sorted(p.capa().keys())
out['user'] = s(p.user('alice'))
out['pass'] = s(p.pass_('secret'))
out['stat'] = list(p.stat())
out['list'] = [s(l) for l in p.list()[1]]
out['uidl'] = [s(l) for l in p.uidl()[1]]
out['retr'] = [body(p.retr(i)[1]) for i in (1, 2, 3)]
out['top'] = body(p.top(3, 1)[1])
out['dele'] = s(p.dele(2))
out['quit'] = s(p.quit())

p = poplib.POP3('127.0.0.1', port, timeout=10)
p.user('alice')
p.pass_('secret')
out['stat2'] = list(p.stat())
out['uidl2'] = [s(l) for l in p.uidl()[1]]
p.quit()

p = poplib.POP3('127.0.0.1', port, timeout=20)
p.user('alice')
try:
    p.pass_('wrong')
    out['wrong'] = 'accepted'
except poplib.error_proto as e:
    out['wrong'] = s(e.args[0])

print(json.dumps(out))
PY

$t->plan(14);

###############################################################################

my ($rc, $json, $err) = $x->run_cmd([ $x->prog('python3'), '-c', $script,
    port(8110) ], { timeout => 40 });
is($rc, 0, 'python poplib script ran') or diag($err);

my $o = eval { decode_json($json) } || {};

like($o->{welcome} // '', qr/^\+OK/, 'welcome');
ok((grep { $_ eq 'UIDL' } @{$o->{capa} || []}), 'capa has UIDL');
like($o->{pass} // '', qr/^\+OK/, 'pass_');
is_deeply($o->{stat}, [ 3, length(join '', @crlf) ], 'stat');
is_deeply($o->{list}, [ map { "$_ " . length($crlf[$_ - 1]) } 1 .. 3 ],
    'list');
is(scalar @{$o->{uidl} || []}, 3, 'uidl');
is_deeply($o->{retr}, \@crlf, 'retr byte-exact');
is($o->{top}, "Subject: three\r\nX-A: b\r\n\r\nl1\r\n", 'top');
like($o->{dele} // '', qr/^\+OK/, 'dele');
like($o->{quit} // '', qr/^\+OK/, 'quit');
is_deeply($o->{stat2}, [ 2, length($crlf[0]) + length($crlf[2]) ],
    'the next session sees the deletion');
is_deeply([ map { (split / /)[1] } @{$o->{uidl2} || []} ],
    [ map { (split / /)[1] } @{$o->{uidl} || []}[0, 2] ],
    'UIDs kept');
like($o->{wrong} // '', qr/^-ERR \[AUTH\]/, 'wrong password raises [AUTH]');

###############################################################################

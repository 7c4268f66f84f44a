#!/usr/bin/perl

# Flow control: RETR of a large message to a client that does not read
# costs the worker a bounded amount of memory (two chunks), not the size
# of the message; once the client reads, the message arrives whole.

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

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();

$x->add_user('alice', 'secret');

my $line = ('x' x 998) . "\r\n";
my $msg = "Subject: big\r\n\r\n" . ($line x 20000);      # 20 MB
$x->deliver_fast('alice', $msg);

$t->plan(5);

sub worker_rss_kb {
    my $out = `pgrep -P ${\ $x->nginx_pid}`;
    my ($pid) = split /\s+/, $out;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    while (<$fh>) {
        return $1 if /^VmRSS:\s+(\d+)/;
    }
    return 0;
}

###############################################################################

my $s = $x->session(port(8110), 'alice', 'secret');
ok($s, 'login');

my $before = worker_rss_kb();

# ask for the message and read nothing for a while

$s->send('RETR 1');
sleep(1.5);

my $during = worker_rss_kb();
my $grown = $during - $before;
note("worker RSS before $before KB, with RETR stalled $during KB");
SKIP: {
    # AddressSanitizer keeps freed memory in quarantine: RSS says nothing
    skip 'RSS is not meaningful under ASan', 1 if $ENV{TEST_NGINX_ASAN};

    cmp_ok($grown, '<', 4096,
        'a stalled 20 MB RETR costs the worker less than 4 MB');
}

# now read it all: it arrives whole

like($s->reply(30) // '', qr/^\+OK ${\ length($msg)} octets/, 'RETR +OK');
my $body = $s->read_multi(60);
is(length($body // ''), length($msg), 'the whole message after the stall');
ok(defined $body && $body eq $msg, 'byte-exact');

###############################################################################

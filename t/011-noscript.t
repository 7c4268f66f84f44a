#!/usr/bin/perl

# The Redis script cache is lost on a restart, a failover or SCRIPT FLUSH:
# the module loads a script again when Redis answers NOSCRIPT and repeats
# the request, so sessions never see the difference.  Here the cache is
# flushed in the middle of a session, before each kind of script runs.

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
my $x = Test::Nginx::POP3Ext->new($t)->has_redis->has_cli->run_pop3();

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: $_\r\n\r\nbody $_\r\n") for 1 .. 3;

$t->plan(9);

my $port = port(8110);

###############################################################################

# LOCK after a flush

$x->redis_cmd('SCRIPT', 'FLUSH');

my $s = $x->session($port, 'alice', 'secret');
ok($s, 'login after SCRIPT FLUSH');

# MARK after a flush

$x->redis_cmd('SCRIPT', 'FLUSH');
like($s->cmd('DELE 1') // '', qr/^\+OK/, 'DELE after SCRIPT FLUSH');

# MARK (RSET form) after a flush

$x->redis_cmd('SCRIPT', 'FLUSH');
like($s->cmd('RSET') // '', qr/^\+OK/, 'RSET after SCRIPT FLUSH');
like($s->cmd('DELE 2') // '', qr/^\+OK/, 'DELE again');

# COMMIT after a flush: the deletion is applied

$x->redis_cmd('SCRIPT', 'FLUSH');
like($s->cmd('QUIT') // '', qr/^\+OK/, 'QUIT after SCRIPT FLUSH');

my ($count) = $x->mailbox_stat('alice');
is($count, 2, 'the commit deleted one message');

# RELEASE after a flush: a dropped session leaves no lock behind

$s = $x->session($port, 'alice', 'secret');
ok($s, 'second login');
$x->redis_cmd('SCRIPT', 'FLUSH');
$s->close();

my $ok = 0;
for (1 .. 50) {
    my $lock = $x->redis_cmd('EXISTS', $x->mbox_key('alice', 'LOCK'));
    if (defined $lock && $lock == 0) {
        $ok = 1;
        last;
    }
    select(undef, undef, undef, 0.1);
}
ok($ok, 'lock released after SCRIPT FLUSH');

$s = $x->session($port, 'alice', 'secret');
ok($s, 'login after the release');

###############################################################################

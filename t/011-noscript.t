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
use Test::Nginx;
use Test::Nginx::POP3;

my $t = Test::Nginx->new()->has_redis->has_cli->run_pop3();

$t->add_user('alice', 'secret');
$t->deliver('alice', "Subject: $_\r\n\r\nbody $_\r\n") for 1 .. 3;

$t->plan(9);

my $port = $t->pop3_port;

###############################################################################

# LOCK after a flush

$t->redis_cmd('SCRIPT', 'FLUSH');

my $s = Test::Nginx::POP3->session($port, 'alice', 'secret');
ok($s, 'login after SCRIPT FLUSH');

# MARK after a flush

$t->redis_cmd('SCRIPT', 'FLUSH');
like($s->cmd('DELE 1') // '', qr/^\+OK/, 'DELE after SCRIPT FLUSH');

# MARK (RSET form) after a flush

$t->redis_cmd('SCRIPT', 'FLUSH');
like($s->cmd('RSET') // '', qr/^\+OK/, 'RSET after SCRIPT FLUSH');
like($s->cmd('DELE 2') // '', qr/^\+OK/, 'DELE again');

# COMMIT after a flush: the deletion is applied

$t->redis_cmd('SCRIPT', 'FLUSH');
like($s->cmd('QUIT') // '', qr/^\+OK/, 'QUIT after SCRIPT FLUSH');

my ($count) = $t->mailbox_stat('alice');
is($count, 2, 'the commit deleted one message');

# RELEASE after a flush: a dropped session leaves no lock behind

$s = Test::Nginx::POP3->session($port, 'alice', 'secret');
ok($s, 'second login');
$t->redis_cmd('SCRIPT', 'FLUSH');
$s->close();

my $ok = 0;
for (1 .. 50) {
    my $lock = $t->redis_cmd('EXISTS', $t->mbox_key('alice', 'LOCK'));
    if (defined $lock && $lock == 0) {
        $ok = 1;
        last;
    }
    select(undef, undef, undef, 0.1);
}
ok($ok, 'lock released after SCRIPT FLUSH');

$s = Test::Nginx::POP3->session($port, 'alice', 'secret');
ok($s, 'login after the release');

###############################################################################

#!/usr/bin/perl

# A Redis that requires a password: pop3_ext_redis ... password= sends
# AUTH first on every connection, also after a reconnect; a refused AUTH
# is logged, the logins answer [SYS/TEMP], and the connection is tried
# again, so a password set right again is picked up without a reload.
# pop3ext reads POP3EXT_REDIS_PASSWORD.

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

my $PW = 'p3x-secret';

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)
    ->needs_standalone_redis('requirepass set and changed on the one Redis'
        . ' server')
    ->has_redis_password($PW)->has_redis->has_cli
    ->run_pop3(redis => "127.0.0.1:%%PORT_8379%% password=$PW");

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: a\r\n\r\nbody\r\n");

$t->plan(8);

my $port = port(8110);

sub login_ok {
    my $s = $x->session($port, 'alice', 'secret');
    return defined $s;
}

sub login_reply {
    my $c = $x->client(port => $port);
    $c->cmd('USER alice');
    my $r = $c->cmd('PASS secret', 15) // '';
    $c->close();
    return $r;
}

###############################################################################

# the configured password opens the way

my $s = $x->session($port, 'alice', 'secret');
ok($s, 'login through an authenticated connection');
is($s->cmd_multi('RETR 1'), "Subject: a\r\n\r\nbody\r\n", 'RETR');
$s->cmd('QUIT');

# pop3ext without the password is refused by Redis: a temporary failure

my ($rc, $out, $err) = $x->pop3ext('stat', 'alice',
    { env => { POP3EXT_REDIS_PASSWORD => '' } });
is($rc, 75, 'pop3ext without POP3EXT_REDIS_PASSWORD: exit 75');

# the password changes on Redis: nginx's connections are dropped, its AUTH
# is refused on reconnect, logins answer [SYS/TEMP]

$x->redis_cmd('CONFIG', 'SET', 'requirepass', 'other');
$x->set_redis_password('other');
$x->redis_cmd('CLIENT', 'KILL', 'TYPE', 'normal');
$x->redis_reconnect();

my $r = '';
my $deadline = time() + 10;
while (time() < $deadline) {
    $r = login_reply();
    last if $r =~ /SYS\/TEMP/;
    sleep(0.2);
}
like($r, qr/^-ERR \[SYS\/TEMP\]/, 'wrong password on Redis: [SYS/TEMP]');
ok($x->wait_for_log(qr/refused AUTH/), 'the refused AUTH is logged');

# the password is set back: the connections come back by themselves

$x->redis_cmd('CONFIG', 'SET', 'requirepass', $PW);
$x->set_redis_password($PW);

my $ok = 0;
$deadline = time() + 15;
while (time() < $deadline) {
    last if $ok = login_ok();
    sleep(0.2);
}
ok($ok, 'logins work again once the password is right');

($rc) = $x->pop3ext('stat', 'alice');
is($rc, 0, 'pop3ext with POP3EXT_REDIS_PASSWORD');

# nothing was lost on the way

my ($count) = $x->mailbox_stat('alice');
is($count, 1, 'the message is still there');

###############################################################################

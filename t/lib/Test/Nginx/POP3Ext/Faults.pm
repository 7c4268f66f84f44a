package Test::Nginx::POP3Ext::Faults;

# The servers of the fault tests (t/050-faults.t, t/052-faults-clients.t):
# 8110 with the block (20 checks), CRAM-MD5 and a 253-octet server name;
# 8111 for everything else, with a short Redis timeout and login timeout,
# no block.  Both on the test's Redis with a 2 s request deadline.
#
#   Test::Nginx::POP3Ext::Faults::run_servers($x);

use strict;
use warnings;

our $NAME = ('a' x 63) . '.' . ('b' x 63) . '.' . ('c' x 63) . '.'
    . ('d' x 61);                                     # 253 octets

sub run_servers {
    my ($x) = @_;
    my $redis = '127.0.0.1:%%PORT_8379%% timeout=2s';

    $x->run_pop3(
        redis => $redis,
        mail => "    server_name $NAME;\n"
            . $x->server(8111,
                "pop3_ext_auth_block_addr 0;\n"
                . "        pop3_ext_auth_fail_delay 100ms;\n"
                . "        pop3_ext_login_timeout 2s;\n"
                . "        pop3_ext_lock_ttl 10s;\n",
                redis => $redis),
        server => "        pop3_ext_auth_block_addr 20;\n"
            . "        pop3_ext_auth_fail_delay 100ms;\n"
            . "        pop3_ext_auth_fail_delay_max 200ms;\n"
            . "        pop3_ext_max_auth_attempts 1;\n"
            . "        pop3_ext_auth user plain login cram-md5;\n",
    );
}

1;

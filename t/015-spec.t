#!/usr/bin/perl

# The Redis specification (ngx_mail_pop3_ext_spec.h), the grammar that the
# pop3_ext_redis directive and pop3ext -r share: a unit test in C
# (util/spec_test.c), built here and run; its TAP is this file's.

use strict;
use warnings;

use File::Temp qw/ tempdir /;
use FindBin;

my $top = "$FindBin::Bin/..";
my $cc = $ENV{CC} // 'cc';
my $dir = tempdir('spec-XXXXXX', TMPDIR => 1, CLEANUP => 1);

if (system("$cc --version >/dev/null 2>&1") != 0) {
    print "1..0 # SKIP no C compiler ($cc)\n";
    exit 0;
}

system($cc, '-g', '-O1', '-Wall', '-Wextra', '-Werror',
    "-I$top/ngx_mail_pop3_ext_module", '-o', "$dir/spec-test",
    "$top/util/spec_test.c") == 0
    or die "cannot build util/spec_test.c\n";

system("$dir/spec-test");
exit($? == 0 ? 0 : 1);

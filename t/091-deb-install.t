#!/usr/bin/perl

# The Debian packages installed as an operator installs them, then removed:
#
#   - make deb's packages, installed with apt-get install ./FILE.deb;
#   - the module in /usr/lib/nginx/modules, its load_module snippet linked
#     into /etc/nginx/modules-enabled (after the mail core's), the system's
#     nginx -t still passing, /usr/bin/pop3ext and its manual page;
#   - an nginx whose configuration loads the module through that snippet:
#     a POP3 session (USER, PASS, STAT, RETR, DELE, QUIT) on users made by
#     the installed pop3ext;
#   - apt-get remove: the module, its link and pop3ext gone, nginx -t
#     still passing.
#
# It changes the machine (packages installed, then removed), so it runs
# only with TEST_DEB_INSTALL=1, as root, and not when either package is
# installed already: make test-deb-install, which CI runs on its fresh
# machine.  About 40 s.

use strict;
use warnings;

BEGIN {
    # the packaged module and tool, not the checkout's build
    $ENV{TEST_NGINX_MODULE} = '';
    $ENV{TEST_NGINX_CLI} = '/usr/bin/pop3ext';
}

use Test::More;

use Cwd qw/ abs_path /;
use File::Temp qw/ tempdir /;
use FindBin;
use lib "$FindBin::Bin/lib";
use lib $ENV{TEST_NGINX_LIB} || ();    # nginx-tests' lib/, first

my $top = abs_path("$FindBin::Bin/..");
my @PKGS = qw/ libnginx-mod-mail-pop3-ext pop3ext /;
my $SNIPPET = '/etc/nginx/modules-enabled/70-mod-mail-pop3-ext.conf';
my $SO = '/usr/lib/nginx/modules/ngx_mail_pop3_ext_module.so';

sub installed {
    my ($pkg) = @_;
    my $s = `dpkg-query -W -f='\${Status}' $pkg 2>/dev/null`;
    return $s =~ /install ok installed/;
}

plan skip_all => 'changes the machine: TEST_DEB_INSTALL=1 (make '
    . 'test-deb-install) to run' unless $ENV{TEST_DEB_INSTALL};
plan skip_all => 'needs root (apt-get install)' if $>;
plan skip_all => 'sanitizer run: the packages do not use build-asan/'
    if $ENV{TEST_NGINX_ASAN};
for my $p (@PKGS) {
    plan skip_all => "$p is installed already: left alone" if installed($p);
}

require Test::Nginx;
Test::Nginx->import();
require Test::Nginx::POP3;
require Test::Nginx::POP3Ext;

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my $apt = 'DEBIAN_FRONTEND=noninteractive apt-get -y -q '
    . '--no-install-recommends';

# whatever happens below, the machine gets its state back: what dpkg did
# not know before is purged (removal leaves a package's configuration)

sub known {
    my ($pkg) = @_;
    my $s = `dpkg-query -W -f='\${db:Status-Abbrev}' $pkg 2>/dev/null`;
    return $s =~ /^[a-z][^n]/;
}

my @unknown = grep { !known($_) } @PKGS;
my $did_install;
END {
    system("$apt purge @unknown >/dev/null 2>&1") if $did_install && @unknown;
}

my $dir = tempdir('deb-install-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my ($rc, $out) = run("LINTIAN=no '$top/util/deb.sh' '$dir/out'");
if ($rc != 0) {
    plan tests => 1;
    fail('util/deb.sh builds the packages');
    diag($out);
    exit;
}

my $version = `dpkg-parsechangelog -l '$top/debian/changelog' -S Version`;
chomp $version;
my $arch = `dpkg --print-architecture`;
chomp $arch;
my @debs = map { "$dir/out/${_}_${version}_$arch.deb" } @PKGS;

my $t = Test::Nginx->new()->has(qw/mail/);
my $x = Test::Nginx::POP3Ext->new($t)->has_redis;

$t->plan(16);

###############################################################################

# installed

$did_install = 1;
($rc, $out) = run("$apt install @debs");
is($rc, 0, 'apt-get install ./libnginx-mod-mail-pop3-ext*.deb '
    . './pop3ext*.deb') or diag($out);

ok(-f $SO, "the module in $SO");
my $link = readlink($SNIPPET) // '';
like($link, qr{/usr/share/nginx/modules-available/mod-mail-pop3-ext\.conf\z},
    "its snippet enabled: $SNIPPET");
my @enabled = sort glob('/etc/nginx/modules-enabled/*.conf');
my ($mail_at) = grep { $enabled[$_] =~ /mod-mail\.conf\z/ } 0 .. $#enabled;
my ($ours_at) = grep { $enabled[$_] eq $SNIPPET } 0 .. $#enabled;
ok(defined $mail_at && defined $ours_at && $mail_at < $ours_at,
    'loaded after the mail core') or diag("@enabled");
($rc, $out) = run('/usr/sbin/nginx -t');
is($rc, 0, "the system's nginx -t") or diag($out);
($rc, $out) = run('/usr/bin/pop3ext --help');
ok($rc == 0 && $out =~ /^usage: pop3ext/m, '/usr/bin/pop3ext');
ok(-f '/usr/share/man/man1/pop3ext.1.gz', 'its manual page');

# an nginx that loads the module through the snippet, as the system's
# nginx.conf does (include modules-enabled/*.conf); the snippet names it
# relative to the prefix, where Debian's /usr/share/nginx has the link
# modules -> /usr/lib/nginx/modules: the test's prefix gets the same

symlink('/usr/lib/nginx/modules', $t->testdir() . '/modules')
    or die "symlink: $!\n";
$x->run_pop3(main => "include $SNIPPET;\n");

$x->add_user('alice', 'secret');
$x->deliver('alice', "Subject: packaged\r\n\r\nfrom the package\r\n");
$x->deliver('alice', "Subject: second\r\n\r\nsecond\r\n");

my $s = $x->session(port(8110), 'alice', 'secret');
ok($s, 'POP3: USER and PASS');
like($s ? $s->cmd('STAT') // '' : '', qr/^\+OK 2 \d+/, 'POP3: STAT');
my $m = $s ? $s->cmd_multi('RETR 1') // '' : '';
like($m, qr/^from the package\r$/m, 'POP3: RETR');
like($s ? $s->cmd('DELE 1') // '' : '', qr/^\+OK/, 'POP3: DELE');
like($s ? $s->cmd('QUIT') // '' : '', qr/^\+OK/, 'POP3: QUIT');
is(join(' ', $x->mailbox_stat('alice')) =~ /^(\d+)/ ? $1 : '?', 1,
    'the deletion done, seen by the installed pop3ext');

$t->stop();

# removed

($rc, $out) = run("$apt remove @PKGS");
is($rc, 0, 'apt-get remove') or diag($out);
ok(!-e $SO && !-e $SNIPPET && !-e '/usr/bin/pop3ext',
    'the module, its link and pop3ext gone');
($rc, $out) = run('/usr/sbin/nginx -t');
is($rc, 0, "the system's nginx -t after the removal") or diag($out);

###############################################################################

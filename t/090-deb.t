#!/usr/bin/perl

# The Debian packages (debian/, make deb): built by util/deb.sh into a
# temporary directory and looked at there, never installed.  Their control
# fields (version, the nginx-abi dependency read from nginx-dev), the files
# unpacked with dpkg -x, the load_module snippet and its place after the
# mail core's, the packaged module loaded into nginx with nginx -t, the
# packaged pop3ext, its manual page against its usage text, lintian when
# installed, and a checkout left as it was.
#
# Skips itself without dpkg-buildpackage and debhelper (make deb installs
# them) or without the build dependencies, in the sanitizer run (the
# packages do not use build-asan/), and with TEST_DEB=0.  About 25 s.

use strict;
use warnings;

use Test::More;

use Cwd qw/ abs_path /;
use File::Temp qw/ tempdir /;
use FindBin;

my $top = abs_path("$FindBin::Bin/..");

plan skip_all => 'TEST_DEB=0'
    if defined $ENV{TEST_DEB} && $ENV{TEST_DEB} eq '0';
plan skip_all => 'sanitizer run: the packages do not use build-asan/'
    if $ENV{TEST_NGINX_ASAN};

sub have {
    my ($prog) = @_;
    return system("command -v $prog >/dev/null 2>&1") == 0;
}

for my $prog (qw/ dpkg-buildpackage dpkg-checkbuilddeps dpkg-parsechangelog
                  dpkg-deb dh /)
{
    plan skip_all => "$prog not installed (dpkg-dev, debhelper)"
        unless have($prog);
}

my $missing = `cd '$top' && dpkg-checkbuilddeps 2>&1`;
if ($? != 0) {
    $missing =~ s/\s+/ /g;
    plan skip_all => "build dependencies missing: $missing";
}

sub slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return undef;
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my $dir = tempdir('deb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $out = "$dir/out";

# what a build in the checkout would leave: debian/tmp, debian/files, ...
# in it, the packages beside it

my $git = -e "$top/.git" && have('git');
my $status = $git ? `git -C '$top' status --porcelain 2>&1` : '';
my $beside = join(' ', glob("'$top/..'/{ngx-mail-pop3-ext,pop3ext,"
                            . "libnginx-mod-mail-pop3-ext}_*"));

my $version = `dpkg-parsechangelog -l '$top/debian/changelog' -S Version`;
chomp $version;
my $arch = `dpkg --print-architecture`;
chomp $arch;

# the build

my ($rc, $log) = run("LINTIAN=no '$top/util/deb.sh' '$out'");
is($rc, 0, 'util/deb.sh builds the packages') or do {
    diag($log);
    diag(slurp("$out/build.log") // '');
    done_testing();
    exit;
};

my $mod = "$out/libnginx-mod-mail-pop3-ext_${version}_$arch.deb";
my $cli = "$out/pop3ext_${version}_$arch.deb";

ok(-f $mod, "libnginx-mod-mail-pop3-ext $version built");
ok(-f $cli, "pop3ext $version built");
ok(-f "$out/ngx-mail-pop3-ext_$version.dsc", 'the source package too');

is(`git -C '$top' status --porcelain 2>&1`, $status,
   'the checkout is as it was (git status)')
    if $git;
is(join(' ', glob("'$top/..'/{ngx-mail-pop3-ext,pop3ext,"
                  . "libnginx-mod-mail-pop3-ext}_*")), $beside,
   'nothing was written beside it');

sub field {
    my ($deb, $name) = @_;
    my $v = `dpkg-deb -f '$deb' $name`;
    chomp $v;
    return $v;
}

is(field($mod, 'Version'), $version, 'module: version from debian/changelog');
is(field($cli, 'Version'), $version, 'pop3ext: version from debian/changelog');

# the ABI: what nginx-dev names, as Debian's own libnginx-mod-* depend on it

my $abisv = slurp('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars')
    // '';
my ($abi) = $abisv =~ /^nginx:abi=(\S+)/m;

my @depends = split /\s*,\s*/, field($mod, 'Depends');

ok(defined $abi, "nginx-dev names the ABI ($abi)") if defined $abi;
ok(defined $abi && (grep { $_ eq $abi } @depends),
   'module: depends on exactly that nginx ABI')
    or diag("Depends: @depends");
ok((grep { $_ eq 'libnginx-mod-mail' } @depends),
   'module: depends on libnginx-mod-mail');
is(scalar(grep { /^nginx-abi-/ } @depends), 1, 'module: one ABI, no other');
unlike(field($cli, 'Depends'), qr/nginx/, 'pop3ext: no nginx dependency');
is(field($mod, 'Section'), 'httpd', 'module: section httpd');

# the files

for my $deb ($mod, $cli) {
    system('dpkg-deb', '-x', $deb, "$dir/root") == 0
        or BAIL_OUT("dpkg-deb -x $deb failed");
}

my $so = "$dir/root/usr/lib/nginx/modules/ngx_mail_pop3_ext_module.so";
ok(-f $so, 'module: in /usr/lib/nginx/modules');

my $snippet = 'usr/share/nginx/modules-available/mod-mail-pop3-ext.conf';
is(slurp("$dir/root/$snippet"),
   "load_module modules/ngx_mail_pop3_ext_module.so;\n",
   "module: /$snippet loads it");

ok(-x "$dir/root/usr/bin/pop3ext", 'pop3ext: /usr/bin/pop3ext');
my $man = "$dir/root/usr/share/man/man1/pop3ext.1.gz";
ok(-f $man, 'pop3ext: its manual page');
ok(-f "$dir/root/usr/share/doc/$_/copyright", "$_: copyright")
    for qw/ libnginx-mod-mail-pop3-ext pop3ext /;

# the link in modules-enabled that postinst makes, after the mail core's

system('dpkg-deb', '-e', $mod, "$dir/ctl") == 0
    or BAIL_OUT("dpkg-deb -e $mod failed");

my $postinst = slurp("$dir/ctl/postinst") // '';
my ($link) = $postinst =~ /mod-mail-pop3-ext\.conf:(\d+-mod-mail-pop3-ext\.conf)/;
ok(defined $link, 'postinst links the snippet into modules-enabled')
    or diag($postinst);

my $core = slurp('/var/lib/dpkg/info/libnginx-mod-mail.postinst') // '';
my ($core_link) = $core =~ /mod-mail\.conf:(\d+-mod-mail\.conf)/;
$core_link //= '50-mod-mail.conf';

ok(defined $link && $link gt $core_link && $link =~ /^\d\d-/,
   "$link is included after $core_link");
like(slurp("$dir/ctl/prerm") // '', qr/\Q${\($link \/\/ 'none')}\E/,
     'prerm disables it on removal');
like(slurp("$dir/ctl/postrm") // '', qr/purge/, 'postrm removes it on purge');

# the packaged module loads into nginx, after the mail core

SKIP: {
    my $nginx = '/usr/sbin/nginx';
    my $core_so = '/usr/lib/nginx/modules/ngx_mail_module.so';
    skip 'no nginx or mail core installed', 1
        unless -x $nginx && -f $core_so;

    open(my $fh, '>', "$dir/nginx.conf") or die "$dir/nginx.conf: $!";
    print $fh <<"CONF";
load_module $core_so;
load_module $so;
events {}
mail {
    auth_http 127.0.0.1:1/unused;
    server {
        listen 127.0.0.1:1110;
        protocol pop3_ext;
        pop3_ext_redis 127.0.0.1:6379;
    }
}
CONF
    close $fh;

    my ($rc, $o) = run("$nginx -q -t -p '$dir' -c '$dir/nginx.conf' "
                       . "-g 'error_log stderr; pid $dir/nginx.pid;'");
    is($rc, 0, 'nginx -t loads the packaged module') or diag($o);
}

# the packaged pop3ext, and its manual page against its usage text

my ($hrc, $help) = run("'$dir/root/usr/bin/pop3ext' --help");
is($hrc, 0, 'pop3ext --help runs');

my $roff = `gzip -dc '$man'`;
(my $text = $roff) =~ s/\\-/-/g;
$text =~ s/\\%//g;
$text =~ s/\\f[BIRP]//g;
$text =~ s/^\.\w+\s*//mg;
$text =~ s/"//g;

my %want;
$want{$1} = 1 while $help =~ /(--[a-z][a-z-]*)/g;
$want{$1} = 1 while $help =~ /\b(POP3EXT_[A-Z_]*[A-Z])\b/g;
$want{"user $1"} = 1 while $help =~ /\] user (\w+)/g;
$want{$1} = 1 while $help =~ /\[OPTIONS\] (deliver|stat|import)\b/g;
$want{$_} = 1 for qw/ -r -h /;
my ($schemes) = $help =~ /\n  SCHEME(.*?)APOP needs/s;
$want{$1} = 1
    while ($schemes // '') =~ /\b([A-Z][A-Z0-9]+(?:-[A-Z0-9]+)*)\b/g;
my ($codes) = $help =~ /exit status:(.*)/s;
$want{$1} = 1 while ($codes // '') =~ /\b(\d{1,2}) [A-Za-z]/g;

my @absent = grep { index($text, $_) < 0 } sort keys %want;
is("@absent", '', 'the manual page names every option, command, scheme, '
   . 'variable and exit status of the usage (' . scalar(keys %want) . ')');

like($text, qr/ADDRESS|address\.\.\./i, 'and the -r SPEC grammar');

SKIP: {
    skip 'man not installed', 1 unless have('man');

    my $warn = `LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l '$man' 2>&1 >/dev/null`;
    is($warn, '', 'man -l renders it without warnings');
}

# lintian, when installed: no errors or warnings

SKIP: {
    skip 'lintian not installed', 1 unless have('lintian');

    my ($changes) = glob("$out/*.changes");
    my ($rc, $o) = run("lintian --fail-on error,warning '$changes'");
    is($rc, 0, 'lintian: no errors or warnings') or diag($o);
}

done_testing();

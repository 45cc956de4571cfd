# Rules of the C sources that no compiler checks:
#
# - no call of jansson's json_object(): the server exports a function of the
#   same name (the SQL json_object), to which the dynamic linker binds the
#   call inside a backend, and the worker crashes at the first object it
#   builds (a restart of the whole server).  json_pack("{}") builds one.
#
# Each breach is printed with its file and line.
use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/../..";
my @files = (glob("$root/src/*.c"), glob("$root/src/providers/*.c"), glob("$root/src/*.h"));
ok(@files > 20, 'the sources are found') or diag("$root/src");

my @breaches;
for my $file (@files)
{
	open my $fh, '<', $file or die "$file: $!";
	my $text = do { local $/; <$fh> };
	# comments and string literals may name it
	$text =~ s{/\*.*?\*/}{ my $c = $&; $c =~ s/[^\n]//g; $c }gse;
	$text =~ s{//[^\n]*}{}g;
	$text =~ s{"(?:[^"\\\n]|\\.)*"}{""}g;
	my $line = 0;
	for (split /\n/, $text)
	{
		$line++;
		push @breaches, "$file:$line: $_" if /\bjson_object\s*\(/;
	}
}
is(scalar @breaches, 0, 'no call of json_object() (json_pack("{}") builds an object)')
  or diag(join("\n", @breaches));

done_testing();

# The docs tell the truth about the installed extension:
#
# - every signature in README.md and docs/*.md (inline code naming an llmgw
#   function with a parameter list: `llmgw.cost(p llmgw.prices, ...)`) names
#   a function or procedure of the extension, with its parameters in order;
#   a type or a DEFAULT, when shown, is the real one; a `→ TABLE (...)` or
#   `→ type` after it is what the function returns;
# - every function and procedure of the extension has a signature somewhere;
# - every llmgw.* setting (pg_settings, and what src/ defines) has its row in
#   the settings table of README.md, with its real default, unit and context;
# - every llmgw.name the docs mention exists (a relation, a function, a
#   setting, or a span attribute src/otel.c writes);
# - the source map of docs/design.md has one row per file of src/ and
#   src/providers/, and names no file that is gone.
#
# The conventions are in docs/testing.md ("Docs that stay true").  Each
# problem is printed with the file and line that says it.
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::Bin;
use Cwd qw(abs_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LlmgwTest;

my $root = abs_path("$FindBin::Bin/../..");

my $node = LlmgwTest::bare_node('docs', 1);
$node->safe_psql('postgres', 'CREATE EXTENSION llmgw');

# --- what the installed extension has ----------------------------------------

# Functions and procedures: name as the docs write it (llmgw.x, or llm_x in
# the extension's schema), result, arguments with mode, type and default
my $functions = decode_json(
	$node->safe_psql(
		'postgres', q{
	SELECT coalesce(json_agg(json_build_object(
	           'name', CASE WHEN n.nspname = 'llmgw' THEN 'llmgw.' ELSE '' END || p.proname,
	           'rettype', format_type(p.prorettype, NULL),
	           'retset', p.proretset,
	           'args', (SELECT coalesce(json_agg(json_build_object(
	                        'name', coalesce(p.proargnames[i], ''),
	                        'mode', coalesce(p.proargmodes[i]::text, 'i'),
	                        'type', format_type(coalesce(p.proallargtypes[i], p.proargtypes[i - 1]), NULL),
	                        'default', pg_get_function_arg_default(p.oid, i)) ORDER BY i), '[]')
	                      FROM generate_series(1, coalesce(array_length(p.proallargtypes, 1),
	                                                       p.pronargs)) i))
	           ORDER BY n.nspname, p.proname), '[]')
	  FROM pg_proc p
	  JOIN pg_namespace n ON n.oid = p.pronamespace
	  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	                  AND d.deptype = 'e'
	                  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'llmgw')}));
my %functions;
push @{ $functions{ $_->{name} } }, $_ for @$functions;
ok(scalar(keys %functions) > 50, 'the extension has its functions (' . scalar(keys %functions) . ')');

# Relations of the extension's schema (tables, views, sequences, partitions)
my %relations = map { ("llmgw.$_" => 1) } split /\n/,
  $node->safe_psql('postgres',
	"SELECT relname FROM pg_class WHERE relnamespace = 'llmgw'::regnamespace AND relkind <> 'i'");

# Settings: pg_settings, and what src/ defines (some are hidden from pg_settings)
my %settings;
for (split /\n/,
	$node->safe_psql('postgres',
		"SELECT name, boot_val, coalesce(unit, ''), context FROM pg_settings WHERE name LIKE 'llmgw.%'"))
{
	my ($name, $boot, $unit, $context) = split /\|/, $_, -1;
	$settings{$name} = { boot => $boot, unit => $unit, context => $context };
}
my %pgc_context = (
	PGC_POSTMASTER => 'postmaster', PGC_SIGHUP => 'sighup', PGC_SUSET => 'superuser',
	PGC_USERSET => 'user', PGC_INTERNAL => 'internal', PGC_BACKEND => 'backend',
	PGC_SU_BACKEND => 'superuser-backend');
my %gucunit = (GUC_UNIT_BYTE => 'B', GUC_UNIT_KB => 'kB', GUC_UNIT_MS => 'ms',
	GUC_UNIT_S => 's', GUC_UNIT_MIN => 'min');
for my $src (glob("$root/src/*.c"), glob("$root/src/providers/*.c"))
{
	my $c = slurp_file($src);
	while ($c =~ /DefineCustom\w+Variable\(\s*"(llmgw\.\w+)"(.*?)\);/sg)
	{
		my ($name, $rest) = ($1, $2);
		next if $settings{$name};
		my ($pgc) = $rest =~ /\b(PGC_\w+)/;
		my ($u) = $rest =~ /\b(GUC_UNIT_\w+)/;
		my $shown = $node->safe_psql('postgres', "SELECT current_setting('$name')");
		$settings{$name} = {
			boot => $shown,
			unit => $u ? $gucunit{$u} : '',
			context => $pgc_context{ $pgc // '' } // '?'
		};
	}
}
ok($settings{'llmgw.workers'} && $settings{'llmgw.rollup_shard'},
	'the settings are known (' . scalar(keys %settings) . ')');

# The llmgw.* attributes of OpenTelemetry spans (docs/tracing.md): the names
# src/otel.c adds to a span, add_text(attrs, "llmgw.cost", ...)
my %attributes;
for my $src (glob("$root/src/*.c"))
{
	my $c = slurp_file($src);
	$attributes{$1} = 1 while $c =~ /\badd_\w+\(\s*\w+,\s*"(llmgw\.\w+)"/g;
}

# --- what the docs say -------------------------------------------------------

my @docs = ('README.md', map { s{^\Q$root\E/}{}r } sort glob("$root/docs/*.md"));
my %text = map { ($_ => scalar slurp_file("$root/$_")) } @docs;
utf8::decode($text{$_}) for @docs;

# The text without its fenced code blocks (examples, not signatures): each
# character of a block becomes a space, so offsets and lines stay the same
sub prose
{
	my ($t) = @_;
	$t =~ s/^([ \t]*```.*?^[ \t]*```)/blank($1)/gmse;
	return $t;
}

sub blank
{
	my ($s) = @_;
	$s =~ s/[^\n]/ /g;
	return $s;
}

# Problems as one text for is(), in UTF-8 (the docs write →)
sub report
{
	my $s = join("\n", @_);
	utf8::encode($s);
	return $s;
}

sub line_of
{
	my ($t, $offset) = @_;
	return 1 + (substr($t, 0, $offset) =~ tr/\n//);
}

# Split a parameter list at top-level commas (not inside quotes or brackets)
sub split_list
{
	my ($s) = @_;
	my @parts;
	my ($cur, $depth, $quote) = ('', 0, 0);
	for my $ch (split //, $s)
	{
		if ($quote) { $quote = 0 if $ch eq "'"; }
		elsif ($ch eq "'") { $quote = 1; }
		elsif ($ch =~ /[\(\[\{]/) { $depth++; }
		elsif ($ch =~ /[\)\]\}]/) { $depth--; }
		elsif ($ch eq ',' && $depth == 0) { push @parts, $cur; $cur = ''; next; }
		$cur .= $ch;
	}
	push @parts, $cur if $cur =~ /\S/ || @parts;
	s/^\s+|\s+$//g for @parts;
	return @parts;
}

# An entry of a signature: "...", or name [type] [DEFAULT value]; undef when
# the text is an argument of a call (a literal, an expression)
sub parse_entry
{
	my ($e) = @_;
	return { ellipsis => 1 } if $e eq '...' || $e eq '…';
	my ($head, $default) = split /\s+DEFAULT\s+/, $e, 2;
	return undef unless $head =~ /^([a-z_][a-z0-9_]*)(?:\s+(.+))?$/;
	my ($name, $type) = ($1, $2);
	# the convention is "name [type] DEFAULT value"
	return { name => $name, bad => 'write a default as "name DEFAULT value"' }
	  if defined $type && $type =~ /^=\s/;
	return { name => $name, type => $type, default => $default };
}

# The signatures a text states: [line, text, name, entries, returns]
sub signatures
{
	my ($t) = @_;
	my $p = prose($t);
	my @found;
	while ($p =~ /`([^`]+)`/g)
	{
		my ($span, $at) = ($1, $-[1]);
		$span =~ s/\s+/ /g;
		next unless $span =~ /^(?:CALL )?((?:llmgw\.)?[a-z_][a-z0-9_]*) ?\(/;
		my $name = $1;
		my $open = $+[0];
		# the matching parenthesis
		my ($depth, $close, $quote) = (1, undef, 0);
		for my $i ($open .. length($span) - 1)
		{
			my $ch = substr($span, $i, 1);
			if ($quote) { $quote = 0 if $ch eq "'"; next; }
			if ($ch eq "'") { $quote = 1; next; }
			$depth++ if $ch eq '(';
			$depth-- if $ch eq ')';
			if ($depth == 0) { $close = $i; last; }
		}
		next unless defined $close;
		my $inside = substr($span, $open, $close - $open);
		my $after = substr($span, $close + 1);
		next if $inside =~ /=>/;    # a call with named arguments
		my @entries = map { parse_entry($_) } split_list($inside);
		next if grep { !defined } @entries;    # a call
		my ($returns) = $after =~ /^\s*(?:→|->)\s*(.+)$/;
		push @found, [ line_of($t, $at), $span, $name, \@entries, $returns ];
	}
	return @found;
}

# Does a list of documented entries fit the real names?  "..." stands for
# one or more parameters.
sub fits
{
	my ($entries, $names) = @_;
	my $re = join ',',
	  map { $_->{ellipsis} ? '[^,]+(?:,[^,]+)*' : quotemeta($_->{name}) } @$entries;
	return join(',', @$names) =~ /^$re$/;
}

our @problems;
our @types_to_check;       # [where, doc type, real type]
our @defaults_to_check;    # [where, doc default, type, real default]
our %documented;

# Check one signature against the catalog; problems go to @problems
sub check_signature
{
	my ($file, $sig) = @_;
	my ($line, $span, $name, $entries, $returns) = @$sig;
	my $where = "$file:$line: `$span`";
	my $candidates = $functions{$name} // $functions{"llmgw.$name"};
	if (!$candidates)
	{
		# a bare name that is not llmgw's (pg_cancel_backend(), set_config(...))
		push @problems, "$where: the extension has no function $name"
		  if $name =~ /^(llmgw\.|llm_)/;
		return;
	}
	my @why;
	for my $f (@$candidates)
	{
		my @in = grep { $_->{mode} =~ /^[ibv]$/ } @{ $f->{args} };
		my @out = grep { $_->{mode} =~ /^[obt]$/ } @{ $f->{args} };
		my @in_names = map { $_->{name} } @in;
		if (!fits($entries, \@in_names))
		{
			push @why, "its parameters are (" . join(', ', @in_names) . ")";
			next;
		}
		$documented{ $f->{name} } = 1;
		push @problems, "$where: $_->{name}: $_->{bad}" for grep { $_->{bad} } @$entries;
		# types and defaults of the parameters documented by name
		my %arg = map { ($_->{name} => $_) } @in;
		for my $e (grep { !$_->{ellipsis} } @$entries)
		{
			my $a = $arg{ $e->{name} };
			push @types_to_check, [ "$where: parameter $e->{name}", $e->{type}, $a->{type} ]
			  if defined $e->{type};
			next unless defined $e->{default};
			if (!defined $a->{default})
			{
				push @problems, "$where: parameter $e->{name} has no default";
				next;
			}
			push @defaults_to_check,
			  [ "$where: default of $e->{name}", $e->{default}, $a->{type}, $a->{default} ];
		}
		# what it returns, when the signature says
		if (defined $returns)
		{
			if ($returns =~ /^(?:TABLE ?)?\((.*)\)\s*$/)
			{
				my @cols = map { parse_entry($_) } split_list($1);
				my @out_names = map { $_->{name} } @out;
				push @problems,
				  "$where: it returns (" . join(', ', @out_names) . ")"
				  if grep({ !defined } @cols) || !fits(\@cols, \@out_names);
			}
			else
			{
				my $type = $returns =~ s/^SETOF //r;
				push @problems, "$where: it returns " . ($f->{retset} ? 'SETOF ' : '') . $f->{rettype}
				  if ($returns =~ /^SETOF / ? 1 : 0) != ($f->{retset} ? 1 : 0);
				push @types_to_check, [ "$where: the result", $type, $f->{rettype} ];
			}
		}
		return;
	}
	push @problems, "$where: " . join('; ', @why);
}

for my $file (@docs)
{
	check_signature($file, $_) for signatures($text{$file});
}

# Types and defaults, evaluated by the server: a documented type must be the
# real one; a documented default must equal the real default
sub check_types_and_defaults
{
	if (@types_to_check)
	{
		my @distinct = sort keys %{ { map { ($_->[1] => 1) } @types_to_check } };
		my $i = 0;
		my $values = join ', ', map { $i++; "($i, \$t\$$_\$t\$)" } @distinct;
		my %by_number = map { split /\|/, $_, 2 } split /\n/, $node->safe_psql(
			'postgres', qq{
			CREATE FUNCTION pg_temp.type_of(t text) RETURNS text
			LANGUAGE plpgsql AS \$f\$
			BEGIN
			    RETURN format_type(t::regtype, NULL);
			EXCEPTION WHEN others THEN
			    RETURN '?';
			END
			\$f\$;
			SELECT i, pg_temp.type_of(t) FROM (VALUES $values) v(i, t) ORDER BY i;});
		$i = 0;
		my %real = map { $i++; ($_ => $by_number{$i}) } @distinct;
		for (@types_to_check)
		{
			my ($where, $doc, $type) = @$_;
			push @problems, "$where: the type is $type, not $doc"
			  unless ($real{$doc} // '?') eq $type;
		}
	}
	if (@defaults_to_check)
	{
		my $i = 0;
		my $values = join ",\n", map {
			$i++;
			"($i, \$d\$$_->[1]\$d\$, \$d\$$_->[2]\$d\$, \$d\$$_->[3]\$d\$)"
		} @defaults_to_check;
		my %same = map { split /\|/, $_, 2 } split /\n/, $node->safe_psql(
			'postgres', qq{
			CREATE FUNCTION pg_temp.same(doc text, typ text, actual text) RETURNS text
			LANGUAGE plpgsql AS \$f\$
			DECLARE r boolean;
			BEGIN
			    EXECUTE format('SELECT (%s)::%s IS NOT DISTINCT FROM (%s)::%s', doc, typ, actual, typ) INTO r;
			    RETURN CASE WHEN r THEN 'same' ELSE 'different' END;
			EXCEPTION WHEN others THEN
			    RETURN SQLERRM;
			END
			\$f\$;
			SELECT i, pg_temp.same(d, t, r) FROM (VALUES $values) v(i, d, t, r) ORDER BY i;});
		$i = 0;
		for (@defaults_to_check)
		{
			$i++;
			my ($where, $doc, $type, $real) = @$_;
			push @problems, "$where: it is $real, not $doc ($same{$i})"
			  unless ($same{$i} // '') eq 'same';
		}
	}
}
check_types_and_defaults();

is(report(@problems), '',
	'every signature in README.md and docs/*.md is the installed function\'s');

my @undocumented = grep { !$documented{$_} } sort keys %functions;
is(report(map { "$_: no signature in README.md or docs/*.md" } @undocumented),
	'', 'every function and procedure of the extension has a signature in the docs');

# --- settings: the table of README.md ----------------------------------------

my %context_word = (postmaster => 'restart', sighup => 'reload', user => 'session',
	superuser => 'superuser', internal => 'internal');
my %mem = (B => 1, kB => 1024, MB => 1024**2, GB => 1024**3, TB => 1024**4);
my %time = (us => 0.001, ms => 1, s => 1000, min => 60000, h => 3600000, d => 86400000);

# A documented default in the setting's own unit ("16MB" in B: 16777216)
sub in_unit
{
	my ($value, $unit) = @_;
	return $value unless $value =~ /^(-?\d+(?:\.\d+)?)\s*([a-zA-Z]+)$/;
	my ($n, $u) = ($1, $2);
	return $n * $mem{$u} / $mem{$unit} if $mem{$u} && $mem{$unit};
	return $n * $time{$u} / $time{$unit} if $time{$u} && $time{$unit};
	return $value;
}

my @setting_problems;
my %rows;
my $readme = $text{'README.md'};
while ($readme =~ /^\| `(llmgw\.\w+)` \|(.*)$/mg)
{
	my ($name, $rest, $line) = ($1, $2, line_of($readme, $-[0]));
	my @cells = map { s/^\s+|\s+$//gr } split /\|/, $rest;
	my ($default, $unit, $context) = map { s/`//gr } @cells[ 0 .. 2 ];
	$rows{$name} = 1;
	my $s = $settings{$name};
	my $where = "README.md:$line: $name";
	if (!$s)
	{
		push @setting_problems, "$where: there is no such setting";
		next;
	}
	$unit = '' if $unit eq '-' || $unit eq '—';
	push @setting_problems, "$where: the unit is '$s->{unit}', not '$unit'"
	  unless $unit eq $s->{unit};
	my $want_context = $context_word{ $s->{context} } // $s->{context};
	push @setting_problems, "$where: the context is $want_context, not $context"
	  unless $context eq $want_context;
	my $doc = $default eq 'empty' ? '' : $default;
	$doc = in_unit($doc, $s->{unit}) if $s->{unit};
	push @setting_problems,
	  "$where: the default is '$s->{boot}'" . ($s->{unit} ? " $s->{unit}" : '') . ", not '$default'"
	  unless $doc eq $s->{boot};
}
push @setting_problems, "$_: no row in the settings table of README.md"
  for grep { !$rows{$_} } sort keys %settings;
is(report(@setting_problems), '',
	'every llmgw setting has its row in README.md, with its default, unit and context');

# --- names the docs mention --------------------------------------------------

my @stale;
for my $file (@docs)
{
	my $t = $text{$file};
	while ($t =~ m{(?<![\w/.-])llmgw\.([a-z_][a-z0-9_]*)}g)
	{
		my ($n, $at) = ("llmgw.$1", $-[0]);
		next if $1 =~ /^(c|h|o|so|control|dump|sql)$/;    # a file
		next if $relations{$n} || $functions{$n} || $settings{$n} || $attributes{$n};
		push @stale, "$file:" . line_of($t, $at) . ": $n does not exist";
	}
}
is(report(@stale), '', 'every llmgw.name the docs mention exists');

# --- the source map of docs/design.md ----------------------------------------

my $design = $text{'docs/design.md'};
my %mapped;
my @map_problems;
while ($design =~ /^\| `(src\/[^`]+)` \|(.*)$/mg)
{
	my ($path, $rest, $line) = ($1, $2, line_of($design, $-[0]));
	push @map_problems, "docs/design.md:$line: $path is not in the tree" unless -f "$root/$path";
	push @map_problems, "docs/design.md:$line: $path has two rows" if $mapped{$path}++;
	push @map_problems, "docs/design.md:$line: one file per row" if $rest =~ /`src\//;
}
for my $f (sort(glob("$root/src/*.[ch]"), glob("$root/src/providers/*.[ch]")))
{
	my $path = $f =~ s{^\Q$root\E/}{}r;
	push @map_problems, "$path: no row in the source map of docs/design.md" unless $mapped{$path};
}
is(report(@map_problems), '', 'the source map of docs/design.md has one row per source file');

# --- the checks can fail -----------------------------------------------------

# A wrong parameter list, an unknown function, a wrong type and a wrong
# default are reported; right ones and calls are not
{
	local @problems;
	local @types_to_check;
	local @defaults_to_check;
	check_signature('x.md', $_) for signatures(<<'MD');
`llmgw.cost(price, input, ...)` and `llmgw.no_such_function(a)`;
`llmgw.wait(id text, timeout DEFAULT '1 minute')`;
`llmgw.wait(id bigint, timeout interval DEFAULT '30 seconds') → (status, ...)`,
but not `llmgw.stats().life_started_at` or `llm_complete('hello', 'fast')`:

```
`llmgw.cost(price)` in a code block is an example
```
MD
	check_types_and_defaults();
	is(scalar(@problems), 4, 'wrong signatures are found, right ones and calls are not')
	  or diag(report(@problems));
	like($problems[0] // '', qr/^x\.md:1: .*its parameters are \(p, input_tokens/,
		'with the file, the line and the real parameters');
	like($problems[1] // '', qr/^x\.md:1: .*no function llmgw\.no_such_function/,
		'an unknown function');
	like($problems[2] // '', qr/^x\.md:2: .*parameter id: the type is bigint, not text/,
		'a wrong type');
	like($problems[3] // '', qr/^x\.md:2: .*default of timeout: it is '00:00:30'::interval, not '1 minute'/,
		'a wrong default');
}

$node->stop;
done_testing();

# Conformance through the real path: every case of the corpus (chat, JSON
# bodies and SSE streams, and embeddings) is
# replayed byte for byte by the mock, called with llm_chat() or
# llm_embed_many() through a
# worker, and the usage row and the answer are checked against the case's
# expected fields.  Skipped when ../shared/corpus is absent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $corpus = $ENV{LLMGW_CORPUS};
plan skip_all => 'corpus not found (set LLMGW_CORPUS)' unless $corpus && -d $corpus;

my $node = LlmgwTest::node('conformance', 2);
my $url = $ENV{LLMGW_MOCK_URL};
(my $root = $url) =~ s{/v1$}{};
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_provider('c_openai', 'openai', '$url', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('c_openai_compatible', 'openai_compatible', '$url', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('c_azure', 'azure', '$root', secret => 'env:LLMGW_TEST_KEY', api_version => '2024-10-21');
	SELECT llmgw.create_provider('c_anthropic', 'anthropic', '$root/v1', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('c_openai_responses', 'openai_responses', '$url', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('c_gemini', 'gemini', '$root/v1beta', secret => 'env:LLMGW_TEST_KEY');
});

my %chat_endpoint = map { $_ => 1 } qw(chat.completions responses messages generateContent streamGenerateContent);
my %embed_endpoint = map { $_ => 1 } qw(embeddings embedContent batchEmbedContents);
my %coarse = (quota => 'rate_limit', model_not_found => 'invalid_request');
my $json = JSON::PP->new->canonical;

opendir(my $dh, $corpus) or die "cannot read $corpus: $!";
my @cases = sort grep { -f "$corpus/$_/case.json" } readdir($dh);
closedir($dh);

my $n = 0;
foreach my $id (@cases)
{
	my $case = decode_json(slurp_file("$corpus/$id/case.json"));
	my $resp = $case->{response};
	my $embed = $embed_endpoint{ $case->{endpoint} };
	next unless $chat_endpoint{ $case->{endpoint} } || $embed;
	my $stream = $resp->{sse_file} ? 'true' : 'false';
	$n++;
	my $alias = "case$n";
	$node->safe_psql('postgres',
		"SELECT llmgw.create_model('$alias', 'c_$case->{provider}"
		  . ($case->{endpoint} eq 'responses' ? '_responses' : '') . "', 'm;replay:$id')");
	my $e = $case->{expected};
	my $sql = $embed ?
	  "SELECT count(*) || ' x ' || max(array_length(embedding, 1)) FROM "
	  . "llm_embed_many(array_fill('x'::text, ARRAY[$e->{embedding_count}]), '$alias')"
	  : qq{SELECT llm_chat('{"model": "$alias", "stream": $stream, "messages": [{"role": "user", "content": "x"}]}')};
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	my $row = $node->safe_psql('postgres', qq{
		SELECT coalesce(input_tokens::text, 'null'), coalesce(output_tokens::text, 'null'),
		       coalesce(cached_input_tokens::text, 'null'), coalesce(cache_write_tokens::text, 'null'),
		       coalesce(reasoning_tokens::text, 'null'), coalesce(error_class, 'null')
		  FROM llmgw.usage WHERE model = '$alias' ORDER BY id DESC LIMIT 1});
	my %got;
	@got{qw(input_tokens output_tokens cached_input_tokens cache_write_tokens reasoning_tokens error_class)}
	  = split /\|/, $row;
	$got{error_class} = $coarse{ $got{error_class} } // $got{error_class};
	my @diff;
	foreach my $k (qw(input_tokens output_tokens cached_input_tokens cache_write_tokens reasoning_tokens error_class))
	{
		my $want = defined $e->{$k} ? "$e->{$k}" : 'null';
		push @diff, "$k: expected $want, got $got{$k}" if $want ne $got{$k};
	}
	if ($rc == 0 && $embed)
	{
		my $want = "$e->{embedding_count} x $e->{embedding_dimensions}";
		push @diff, "embeddings: expected $want, got $out" if $out ne $want;
	}
	elsif ($rc == 0)
	{
		my $answer = decode_json($out);
		my $text = $answer->{message}{content};
		push @diff, "text differs" if defined $e->{text} && (!defined $text || $text ne $e->{text});
		my $fr = $answer->{finish_reason} // 'null';
		my $want_fr = $e->{finish_reason} // 'null';
		push @diff, "finish_reason: expected $want_fr, got $fr" if $fr ne $want_fr;
		foreach my $i (0 .. $#{ $e->{tool_calls} // [] })
		{
			my $w = $e->{tool_calls}[$i];
			my $g = $answer->{message}{tool_calls}[$i] // {};
			push @diff, "tool call $i differs"
			  if ($g->{name} // '') ne $w->{name}
			  || $json->encode(decode_json($w->{arguments})) ne $json->encode($g->{arguments} // {});
		}
	}
	elsif (!defined $e->{error_class})
	{
		push @diff, "unexpected error: $err";
	}
	ok(!@diff, "$id") or diag(join("\n", @diff));
}

$node->stop;
done_testing();

-- Content parts (text, images) and response_format in every wire format
-- (docs/providers.md, "Content parts and response_format"): what llmgw
-- sends, read back from the mock's echo_body (its answer is the request
-- body it received), and what llmgw refuses before sending anything.
\getenv mock_url LLMGW_MOCK_URL
SELECT regexp_replace(:'mock_url', '/v1$', '') AS mock_root \gset

SELECT llmgw.create_provider(name, kind, :'mock_root' || path, secret => 'env:LLMGW_TEST_KEY')
  FROM (VALUES ('cp-anthropic', 'anthropic', '/v1'), ('cp-gemini', 'gemini', '/v1beta'),
               ('cp-responses', 'openai_responses', '/v1')) v(name, kind, path);
SELECT llmgw.create_model(alias, provider, upstream)
  FROM (VALUES ('cp-claude', 'cp-anthropic', 'claude-cp;echo_body'),
               ('cp-gemini', 'cp-gemini', 'gemini-cp;echo_body'),
               ('cp-responses', 'cp-responses', 'gpt-cp;echo_body'),
               ('cp-openai', 'mock', 'mock-cp;echo_body'),
               -- answers with a call of the first tool offered: the response_format tool
               ('cp-claude-json', 'cp-anthropic', 'claude-cp;tool_call'),
               -- refusals only: the mock must never see these
               ('cp-claude-no', 'cp-anthropic', 'claude-cp-refused'),
               ('cp-gemini-no', 'cp-gemini', 'gemini-cp-refused'),
               ('cp-responses-no', 'cp-responses', 'gpt-cp-refused'),
               ('cp-openai-no', 'mock', 'mock-cp-refused')) v(alias, provider, upstream);

-- cp_sent(model, request): the body the provider received for an llm_chat
-- request (without its "model")
CREATE FUNCTION cp_sent(model text, request jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (llm_chat(request || jsonb_build_object('model', model))->'message'->>'content')::jsonb
$$;

-- A question about two images: inline (a data: URL) and by URL
CREATE TABLE cp_requests (name text PRIMARY KEY, request jsonb);
INSERT INTO cp_requests VALUES
('images', '{"messages": [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}]},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}'),
('inline', '{"messages": [
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this?"},
        {"type": "image_url", "image_url": {"url": "DATA:Image/JPEG;base64,/9j/4AAQ"}}]}]}'),
('tool_image', '{"messages": [
    {"role": "user", "content": "Zoom in"},
    {"role": "assistant", "content": [{"type": "text", "text": "Zooming."}], "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": "{\"x\": 2}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": [
        {"type": "text", "text": "zoomed"},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}}]}]}'),
('tool_text', '{"messages": [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "22 C"}]}]}');

-- Anthropic: image blocks, base64 or by URL; system text joined
SELECT jsonb_pretty(cp_sent('cp-claude', request) - 'max_tokens') FROM cp_requests WHERE name = 'images';
-- the media type of a data: URL is read case-insensitively
SELECT cp_sent('cp-claude', request)->'messages' FROM cp_requests WHERE name = 'inline';
-- images in a tool result too
SELECT jsonb_pretty(cp_sent('cp-claude', request)->'messages') FROM cp_requests WHERE name = 'tool_image';

-- Gemini: inline data
SELECT jsonb_pretty(cp_sent('cp-gemini', request)) FROM cp_requests WHERE name = 'inline';
-- (the question without its image by URL)
SELECT jsonb_pretty(cp_sent('cp-gemini', request #- '{messages,1,content,2}'))
  FROM cp_requests WHERE name = 'images';
-- a tool result's text parts become one string
SELECT cp_sent('cp-gemini', request)->'contents'->2 FROM cp_requests WHERE name = 'tool_text';

-- Responses API: input_text, input_image (detail kept, else auto), output_text
-- for an earlier answer, instructions from the system message
SELECT jsonb_pretty(cp_sent('cp-responses', request)) FROM cp_requests WHERE name = 'images';
SELECT jsonb_pretty(cp_sent('cp-responses', request)->'input') FROM cp_requests WHERE name = 'tool_image';

-- OpenAI-compatible: passed through unchanged
SELECT cp_sent('cp-openai', request)->'messages' = request->'messages' AS unchanged
  FROM cp_requests;

-- Refused before anything is sent: the part's place, its type, the kind
SELECT m, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m, 'messages', jsonb_build_array(
    jsonb_build_object('role', 'user', 'content', jsonb_build_array(
        jsonb_build_object('type', 'text', 'text', 'Listen'),
        jsonb_build_object('type', 'input_audio', 'input_audio',
                           jsonb_build_object('data', 'AAAA', 'format', 'wav'))))))))
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no']) m;
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": [
    {"type": "file", "file": {"file_id": "file-1"}}]}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": [
    {"text": "no type"}]}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": [
    {"type": "text", "text": 42}]}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"detail": "high"}}]}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}]}')$$);
-- the OpenAI kinds pass any part on: the provider decides
SELECT cp_sent('cp-openai', '{"messages": [{"role": "user", "content": [
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}')->'messages';

-- Files (documents: a PDF inline as a data: URL, or an OpenAI file id), as
-- OpenAI's file parts give them: Anthropic's document block (the filename
-- its title), Gemini's inlineData, the Responses API's input_file; the
-- OpenAI kinds get them as they are
INSERT INTO cp_requests VALUES
('pdf', '{"messages": [{"role": "user", "content": [
    {"type": "text", "text": "Total of this invoice?"},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQK", "filename": "invoice.pdf"},
     "cache_control": {"type": "ephemeral"}}]}]}');
SELECT m AS model, cp_sent(m, request) #> '{messages,0,content,1}' AS sent
  FROM cp_requests, unnest(ARRAY['cp-claude', 'cp-openai']) m WHERE name = 'pdf';
SELECT cp_sent('cp-gemini', request) #> '{contents,0,parts,1}' AS gemini,
       cp_sent('cp-responses', request) #> '{input,0,content,1}' AS responses
  FROM cp_requests WHERE name = 'pdf';
-- a text file to Gemini; a file by id to the Responses API
SELECT cp_sent('cp-gemini', '{"messages": [{"role": "user", "content": [{"type": "file",
    "file": {"file_data": "data:text/csv;base64,YSxiCjEsMgo="}}]}]}') #> '{contents,0,parts,0}' AS gemini,
       cp_sent('cp-responses', '{"messages": [{"role": "user", "content": [{"type": "file",
    "file": {"file_id": "file-abc", "filename": "a.pdf"}}]}]}') #> '{input,0,content,0}' AS responses;
-- what a kind cannot take, refused before anything is sent
SELECT m AS model, f AS file, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m,
    'messages', jsonb_build_array(jsonb_build_object('role', 'user', 'content',
        jsonb_build_array(jsonb_build_object('type', 'file', 'file', f))))))) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no']) m,
       unnest(ARRAY['{"file_data": "data:application/zip;base64,UEsDBA=="}', '{"file_data": "JVBERi0xLjQK"}',
                    '{"filename": "x.pdf"}', '{"file_data": "data:application/pdf;base64,JVBERi0xLjQK", "filename": 7}']::jsonb[]) f
UNION ALL
SELECT m, f, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m,
    'messages', jsonb_build_array(jsonb_build_object('role', 'user', 'content',
        jsonb_build_array(jsonb_build_object('type', 'file', 'file', f)))))))
  FROM (VALUES ('cp-claude-no', '{"file_data": "data:text/csv;base64,YSxiCjEsMgo="}'::jsonb),
               ('cp-responses-no', '{"file_data": "data:text/csv;base64,YSxiCjEsMgo="}'),
               ('cp-gemini-no', '{"file_id": "file-abc"}')) v(m, f);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "system", "content": [
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQK"}}]},
    {"role": "user", "content": "x"}]}')$$) AS in_system;

-- data: URLs that are not base64 images of a media type the kind takes
SELECT url, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', 'cp-claude-no', 'messages', jsonb_build_array(
    jsonb_build_object('role', 'user', 'content', jsonb_build_array(
        jsonb_build_object('type', 'image_url', 'image_url', jsonb_build_object('url', url))))))))
  FROM unnest(ARRAY['data:image/png,iVBORw0KGgo=', 'data:image/png;base64',
                    'data:image/png;base64,', 'data:image/png;base64,iVBO Rw0K',
                    'data:image/png;base64,iVBORw0KGg', 'data:image/png;base64,iV=ORw0K',
                    'data:image/bmp;base64,Qk0=', 'data:;base64,Qk0=',
                    'file:///etc/passwd', 'ftp://example.com/cat.png']) url;
SELECT try($$SELECT llm_chat('{"model": "cp-gemini-no", "messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlh"}}]}]}')$$);
-- Gemini takes no image by URL
SELECT try(format('SELECT llm_chat(%L)', request || '{"model": "cp-gemini-no"}'))
  FROM cp_requests WHERE name = 'images';
-- images only where the role takes them
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "system", "content": [
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-responses-no", "messages": [{"role": "assistant", "content": [
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}')$$);
SELECT try(format('SELECT llm_chat(%L)', request || '{"model": "cp-gemini-no"}'))
  FROM cp_requests WHERE name = 'tool_image';

-- response_format on Anthropic: a forced tool, llmgw_response, whose input
-- schema is the json_schema's schema ({"type": "object"} for json_object)
SELECT cp_sent('cp-claude', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true,
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}')
       - 'messages' - 'max_tokens' AS sent;
SELECT cp_sent('cp-claude', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "json_object"}}') - 'messages' - 'max_tokens' AS sent;
SELECT cp_sent('cp-claude', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "text"}}') - 'messages' - 'max_tokens' AS sent;
-- the tool's call comes back as the answer's text, compact JSON, ending as a
-- plain answer ends; streamed or not, json_schema or json_object
SELECT stream, format, r->'message' AS message, r->>'finish_reason' AS finish_reason,
       r->'usage'->>'output_tokens' AS output_tokens
  FROM (VALUES (false), (true)) s(stream),
       (VALUES ('{"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}'::jsonb),
               ('{"type": "json_object"}')) f(format),
       LATERAL llm_chat(jsonb_build_object('model', 'cp-claude-json', 'stream', stream,
           'response_format', format,
           'messages', '[{"role": "user", "content": "A city"}]'::jsonb)) r;
-- without response_format the same answer is a tool call
SELECT r->'message'->'tool_calls' AS tool_calls, r->>'finish_reason' AS finish_reason
  FROM llm_chat('{"model": "cp-claude-json", "messages": [{"role": "user", "content": "A city"}],
      "tools": [{"type": "function", "function": {"name": "get_city"}}]}') r;
-- response_format and tools of the caller's own cannot both go to Anthropic
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": "x"}],
    "response_format": {"type": "json_object"},
    "tools": [{"type": "function", "function": {"name": "get_city"}}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": "x"}],
    "response_format": {"type": "json_object"}, "tool_choice": "none"}')$$);
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": "x"}],
    "tools": [{"type": "function", "function": {"name": "llmgw_response"}}]}')$$);
-- a response_format llmgw does not know is refused by every translating kind
SELECT m, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m,
    'response_format', r, 'messages', '[{"role": "user", "content": "x"}]'::jsonb)))
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no']) m,
       unnest(ARRAY['{"type": "xml"}', '{"type": "json_schema"}',
                    '{"type": "json_schema", "json_schema": {"schema": "object"}}']::jsonb[]) r;

-- Gemini: JSON mode, with the schema in responseJsonSchema
SELECT cp_sent('cp-gemini', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "city",
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}}}')->'generationConfig';
SELECT cp_sent('cp-gemini', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "json_object"}}')->'generationConfig';
-- Responses API: text.format
SELECT cp_sent('cp-responses', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true,
        "schema": {"type": "object"}}}}')->'text';
SELECT cp_sent('cp-responses', '{"messages": [{"role": "user", "content": "A city"}],
    "response_format": {"type": "json_object"}}')->'text';

-- tool_choice in each wire format's shape; an unknown form is refused
SELECT m AS model, cp_sent(m, '{"messages": [{"role": "user", "content": "Weather?"}],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "weather"}}}') -> k AS named,
       cp_sent(m, '{"messages": [{"role": "user", "content": "Weather?"}],
    "tools": [{"type": "function", "function": {"name": "weather"}}], "tool_choice": "required"}') -> k AS required
  FROM (VALUES ('cp-claude', 'tool_choice'), ('cp-gemini', 'toolConfig'),
               ('cp-responses', 'tool_choice')) v(m, k);
SELECT m AS model, try(format($$SELECT llm_chat('{"model": "%s", "tool_choice": "sometimes",
    "messages": [{"role": "user", "content": "x"}]}')$$, m)) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no']) m;

-- Prompt-cache marks (cache_control, as Anthropic places them): an
-- Anthropic deployment gets them where they were: on system parts (system
-- is then text blocks), text and image parts, a tool call, a tool result
-- and a tool
INSERT INTO cp_requests VALUES
('cached', '{"messages": [
    {"role": "system", "content": [{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}},
                                   {"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": [
        {"type": "text", "text": "Look", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
         "cache_control": {"type": "ephemeral"}}]},
    {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": "{}"},
         "cache_control": {"type": "ephemeral"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "zoomed", "cache_control": {"type": "ephemeral", "ttl": "5m"}}],
  "tools": [{"type": "function", "function": {"name": "zoom", "parameters": {"type": "object"}},
             "cache_control": {"type": "ephemeral"}}]}');
SELECT jsonb_pretty(cp_sent('cp-claude', request) - 'max_tokens') FROM cp_requests WHERE name = 'cached';
-- a mark on the request itself (Anthropic's automatic caching) stays there
SELECT m AS model, cp_sent(m, '{"cache_control": {"type": "ephemeral", "ttl": "1h"}, "messages": [{"role": "user", "content": "x"}]}')
       -> 'cache_control' AS sent
  FROM unnest(ARRAY['cp-claude', 'cp-openai', 'cp-gemini', 'cp-responses']) m;
SELECT try($$SELECT llm_chat('{"model": "cp-openai-no", "cache_control": {"type": "ephemeral", "ttl": "1d"},
    "messages": [{"role": "user", "content": "x"}]}')$$);
-- without a mark on a system part, system stays one string
SELECT cp_sent('cp-claude', request #- '{messages,0,content,0,cache_control}')->'system'
  FROM cp_requests WHERE name = 'cached';
-- the other kinds get the request without them (OpenAI's Chat Completions
-- caches on its own): the same messages and tools otherwise
SELECT m AS model, cp_sent(m, request)::text LIKE '%cache_control%' AS marks_sent
  FROM cp_requests, unnest(ARRAY['cp-openai', 'cp-gemini', 'cp-responses']) m WHERE name = 'cached';
SELECT cp_sent('cp-openai', request) - 'max_tokens' - 'stream' AS sent
  FROM cp_requests WHERE name = 'cached';
-- a mark that is not {"type": "ephemeral"} with an optional ttl of 5m or
-- 1h is refused by every kind, before anything is sent
SELECT m AS model, mark, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m, 'messages', jsonb_build_array(
    jsonb_build_object('role', 'user', 'content', jsonb_build_array(
        jsonb_build_object('type', 'text', 'text', 'x', 'cache_control', mark))))))) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no', 'cp-openai-no']) m,
       unnest(ARRAY['{"type": "persistent"}', '{"type": "ephemeral", "ttl": "2h"}', '"ephemeral"',
                    '{"type": "ephemeral", "scope": "org"}']::jsonb[]) mark;
SELECT m AS model, try(format($$SELECT llm_chat('{"model": "%s", "messages": [{"role": "user", "content": "x"}],
    "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral", "ttl": 300}}]}')$$, m)) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-openai-no']) m;
SELECT try($$SELECT llm_chat('{"model": "cp-claude-no", "messages": [{"role": "user", "content": "x"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{}"}, "cache_control": {}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "y", "cache_control": null}]}')$$);

-- Extended thinking (Anthropic's "thinking" and an assistant message's
-- "thinking_blocks", docs/providers.md): an Anthropic deployment gets the
-- setting, and the blocks of an earlier answer first in its assistant
-- message, as they were; the other kinds get neither
INSERT INTO cp_requests VALUES
('thinking', '{"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096, "messages": [
    {"role": "user", "content": "Two and two?"},
    {"role": "assistant", "content": "4", "reasoning_content": "Two and two: 4", "thinking_blocks": [
        {"type": "thinking", "thinking": "Two and two: 4", "signature": "EqQB"},
        {"type": "redacted_thinking", "data": "EmwK"}]},
    {"role": "user", "content": "And three?"}]}');
SELECT jsonb_pretty(cp_sent('cp-claude', request)) FROM cp_requests WHERE name = 'thinking';
-- without a max_tokens, room for the answer beyond the thinking budget
SELECT cp_sent('cp-claude', request - 'max_tokens')->'max_tokens' AS max_tokens
  FROM cp_requests WHERE name = 'thinking';
-- (nor does any kind get an answer's reasoning_content sent back); Gemini
-- gets the setting as its thinkingConfig, with thought summaries
SELECT m AS model, cp_sent(m, request)::text LIKE '%thinking%' AS thinking_sent,
       cp_sent(m, request)::text LIKE '%reasoning%' AS reasoning_sent
  FROM cp_requests, unnest(ARRAY['cp-openai', 'cp-responses', 'cp-claude']) m WHERE name = 'thinking';
SELECT t AS thinking, cp_sent('cp-gemini', request || jsonb_build_object('thinking', t))->'generationConfig' AS sent
  FROM cp_requests, unnest(ARRAY['{"type": "enabled", "budget_tokens": 2048}', '{"type": "disabled"}',
                                 '{"type": "adaptive"}']::jsonb[]) t WHERE name = 'thinking';
SELECT cp_sent('cp-gemini', request)->'contents' AS gemini_contents FROM cp_requests WHERE name = 'thinking';
-- malformed, refused by every kind before anything is sent
SELECT m AS model, bad, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m,
    'messages', '[{"role": "user", "content": "x"}]'::jsonb) || bad)) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no', 'cp-openai-no']) m,
       unnest(ARRAY['{"thinking": true}', '{"thinking": {"type": "enabled"}}',
                    '{"thinking": {"type": "enabled", "budget_tokens": 0}}']::jsonb[]) bad;
SELECT m AS model, blocks, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m,
    'messages', jsonb_build_array('{"role": "user", "content": "x"}'::jsonb,
        jsonb_build_object('role', 'assistant', 'content', 'y', 'thinking_blocks', blocks),
        '{"role": "user", "content": "z"}'::jsonb)))) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-openai-no']) m,
       unnest(ARRAY['{"type": "thinking"}', '[{"type": "thinking", "thinking": 4}]',
                    '[{"type": "redacted_thinking"}]', '[{"type": "summary", "text": "x"}]']::jsonb[]) blocks;

-- top_k (Anthropic's and Gemini's sampling setting): as it is to Anthropic,
-- as generationConfig.topK to Gemini, dropped for the OpenAI formats, which
-- have none; anything but a non-negative integer refused by every kind
SELECT m AS model, cp_sent(m, '{"top_k": 40, "messages": [{"role": "user", "content": "x"}]}') AS sent
  FROM unnest(ARRAY['cp-claude', 'cp-openai', 'cp-responses']) m;
SELECT cp_sent('cp-gemini', '{"top_k": 0, "messages": [{"role": "user", "content": "x"}]}')->'generationConfig' AS gemini_config;
-- and OpenAI's seed and penalties, which Gemini has too
SELECT cp_sent('cp-gemini', '{"seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.25, "messages": [{"role": "user", "content": "x"}]}')->'generationConfig' AS gemini_config;
SELECT m AS model, bad, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m,
    'messages', '[{"role": "user", "content": "x"}]'::jsonb) || bad)) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-gemini-no', 'cp-responses-no', 'cp-openai-no']) m,
       unnest(ARRAY['{"top_k": -1}', '{"top_k": 2.5}', '{"top_k": "40"}']::jsonb[]) bad;

-- logprobs: an OpenAI-format deployment's, as it gave them, and a Gemini
-- deployment's logprobsResult in OpenAI's shape (a stream's chunks
-- joined); refused where the kind gives none, rather than an answer
-- without them
SELECT llmgw.create_model('cp-logprobs', 'mock', 'mock-model');
SELECT llmgw.create_model('cp-gemini-logprobs', 'cp-gemini', 'mock-model');
SELECT m AS model, s AS streamed, jsonb_array_length(a->'logprobs'->'content') AS tokens,
       (SELECT string_agg(e->>'token', '|') FROM jsonb_array_elements(a->'logprobs'->'content') e) AS joined,
       a->'logprobs'->'content'->0->'top_logprobs' AS first_top
  FROM (SELECT m, s, llm_chat(jsonb_build_object('model', m, 'stream', s, 'logprobs', true,
          'top_logprobs', 2, 'messages', '[{"role": "user", "content": "two words"}]'::jsonb)) a
          FROM unnest(ARRAY['cp-logprobs', 'cp-gemini-logprobs']) m, unnest(ARRAY[false, true]) s) t;
SELECT cp_sent('cp-gemini', '{"logprobs": true, "top_logprobs": 3, "messages": [{"role": "user", "content": "x"}]}')->'generationConfig' AS gemini_config;
SELECT m AS model, llm_chat(jsonb_build_object('model', m, 'messages', '[{"role": "user", "content": "x"}]'::jsonb)) ? 'logprobs' AS logprobs_unasked
  FROM unnest(ARRAY['cp-logprobs', 'cp-gemini-logprobs']) m;
SELECT m AS model, try(format('SELECT llm_chat(%L)', jsonb_build_object('model', m, 'logprobs', true,
    'messages', '[{"role": "user", "content": "x"}]'::jsonb))) AS refused
  FROM unnest(ARRAY['cp-claude-no', 'cp-responses-no']) m;

-- The answer: the thinking blocks as the provider gave them, signature and
-- all, and their text as reasoning_content; plain and streamed alike
SELECT llmgw.create_model('cp-claude-think', 'cp-anthropic', 'claude-cp');
SELECT a->'message'->'content' AS content, a->'message'->'reasoning_content' AS reasoning,
       a->'message'->'thinking_blocks' AS blocks, a->'usage'->'output_tokens' AS output_tokens
  FROM (SELECT llm_chat('{"model": "cp-claude-think", "thinking": {"type": "enabled", "budget_tokens": 1024},
                          "messages": [{"role": "user", "content": "Hi"}]}') a) t;
SELECT a->'message'->'content' AS content, a->'message'->'thinking_blocks' AS blocks
  FROM (SELECT llm_chat('{"model": "cp-claude-think", "stream": true, "thinking": {"type": "enabled", "budget_tokens": 1024},
                          "messages": [{"role": "user", "content": "Hi"}]}') a) t;
-- without thinking, neither member
SELECT llm_chat('{"model": "cp-claude-think", "messages": [{"role": "user", "content": "Hi"}]}')->'message' AS message;
-- reasoning of another kind (an OpenAI-compatible server's reasoning_content;
-- Gemini's thought summaries, the Responses API's reasoning summaries):
-- reasoning_content alone, plain and streamed
SELECT llmgw.create_model('cp-openai-reasoning', 'mock', 'mock-cp;reasoning:3');
SELECT llmgw.create_model('cp-gemini-think', 'cp-gemini', 'gemini-cp');
SELECT m AS model, s AS stream, llm_chat(jsonb_build_object('model', m, 'stream', s,
    'thinking', '{"type": "enabled", "budget_tokens": 1024}'::jsonb,
    'messages', '[{"role": "user", "content": "Hi"}]'::jsonb))->'message' AS message
  FROM unnest(ARRAY['cp-openai-reasoning', 'cp-gemini-think']) m, unnest(ARRAY[false, true]) s;
-- the next turn sends the blocks back as they came (the provider checks
-- their signature); a block changed on the way is the provider's 400
SELECT llm_chat(jsonb_build_object('model', 'cp-claude-think', 'thinking', '{"type": "enabled", "budget_tokens": 1024}'::jsonb,
    'messages', jsonb_build_array('{"role": "user", "content": "Hi"}'::jsonb,
        jsonb_build_object('role', 'assistant', 'content', a->'message'->'content', 'thinking_blocks', a->'message'->'thinking_blocks'),
        '{"role": "user", "content": "Again"}'::jsonb)))->'message'->'reasoning_content' AS next_turn
  FROM (SELECT llm_chat('{"model": "cp-claude-think", "thinking": {"type": "enabled", "budget_tokens": 1024},
                          "messages": [{"role": "user", "content": "Hi"}]}') a) t;
SELECT try(format('SELECT llm_chat(%L)', jsonb_build_object('model', 'cp-claude-think',
    'messages', '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello",
        "thinking_blocks": [{"type": "thinking", "thinking": "Altered", "signature": "mocksig-0000000000000000"}]},
        {"role": "user", "content": "Again"}]'::jsonb))) AS altered;

-- Gemini's thought signatures on function calls (Gemini 3 refuses a turn
-- of calls without one): the normalised answer's tool call keeps it as
-- thought_signature, and a later turn sends it back on its call, from that
-- member or from where Gemini's OpenAI-compatible API puts it
-- (extra_content.google); calls made elsewhere get the value Gemini
-- documents for them on the first
SELECT llmgw.create_model('cp-gemini-signed', 'cp-gemini', 'gemini-cp;tool_call;thought_signatures');
CREATE TABLE cp_tools AS SELECT '[{"type": "function", "function": {"name": "get_weather",
    "parameters": {"type": "object"}}}]'::jsonb AS tools;
SELECT llm_chat(jsonb_build_object('model', 'cp-gemini-signed', 'tools', tools,
    'messages', '[{"role": "user", "content": "weather?"}]'::jsonb))->'message'->'tool_calls' AS calls
  FROM cp_tools;
SELECT how, cp_sent('cp-gemini', jsonb_build_object('messages', jsonb_build_array(
           '{"role": "user", "content": "weather?"}'::jsonb,
           jsonb_build_object('role', 'assistant', 'content', null, 'tool_calls', calls),
           '{"role": "tool", "tool_call_id": "c1", "content": "sunny"}'::jsonb)))->'contents'->1 AS sent
  FROM (VALUES
    ('thought_signature', '[{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"},
                            "thought_signature": "sig-1"}]'::jsonb),
    ('extra_content', '[{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"},
                        "extra_content": {"google": {"thought_signature": "sig-2"}}}]'),
    ('none', '[{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
               {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]')) v(how, calls);
-- the round trip to a deployment that checks them, and a turn of calls
-- made elsewhere; the OpenAI kinds get the calls without llmgw's member
SELECT how, llm_chat(jsonb_build_object('model', 'cp-gemini-signed', 'tools', tools,
    'messages', jsonb_build_array('{"role": "user", "content": "weather?"}'::jsonb,
        jsonb_build_object('role', 'assistant', 'content', null, 'tool_calls', calls),
        '{"role": "tool", "tool_call_id": "c1", "content": "sunny"}'::jsonb)))->'message'->'tool_calls'->0->'name' AS next_call
  FROM cp_tools, (VALUES
    ('answered', '[{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"},
                   "thought_signature": "mocksig-gemini"}]'::jsonb),
    ('made elsewhere', '[{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]')) v(how, calls);
SELECT cp_sent('cp-openai', '{"messages": [{"role": "user", "content": "weather?"},
    {"role": "assistant", "content": null, "reasoning_content": "hmm", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"}, "thought_signature": "sig-1",
        "extra_content": {"google": {"thought_signature": "sig-2"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]}')->'messages'->1 AS sent;
DROP TABLE cp_tools;

-- nothing refused reached a provider: no request at the mock (where the
-- calls of cp-claude-json above were counted), no usage row
\! perl test/scripts/mock_count.pl 'claude-cp-refused' 'gemini-cp-refused' 'gpt-cp-refused' 'mock-cp-refused' 'claude-cp;tool_call'
SELECT count(*) FILTER (WHERE model LIKE 'cp-%-no') AS refused_rows,
       count(*) FILTER (WHERE model = 'cp-claude-json') AS cp_claude_json_rows
  FROM llmgw.usage;

-- the tests that follow see the configuration as it was
DO $$
BEGIN
    PERFORM llmgw.drop_model(alias) FROM llmgw.models WHERE alias LIKE 'cp-%';
    PERFORM llmgw.drop_provider(p) FROM unnest(ARRAY['cp-anthropic', 'cp-gemini', 'cp-responses']) p;
END
$$;
DROP FUNCTION cp_sent(text, jsonb);
DROP TABLE cp_requests;

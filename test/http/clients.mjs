// The official OpenAI and Anthropic SDKs against llmgw's HTTP front door.
// test/t/016_http_clients.pl runs one scenario per process:
//
//   node clients.mjs SCENARIO
//
// and asserts on the one JSON object it prints: what the SDK returned, or
// the facts of the exception it threw (class, status, code, headers).  The
// script asserts nothing itself, so that every check is a named TAP test.
//
// Environment: LLMGW_HTTP (http://127.0.0.1:PORT), LLMGW_KEYS (a JSON
// object of virtual keys by role), LLMGW_PSQL (a connection string, for the
// scenarios that run SQL between calls), LLMGW_ARGS (a JSON object of the
// scenario's parameters).
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { Readable } from 'node:stream';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { generateText, streamText, tool, jsonSchema, stepCountIs } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';

const base = process.env.LLMGW_HTTP;
const keys = JSON.parse(process.env.LLMGW_KEYS || '{}');
const args = JSON.parse(process.env.LLMGW_ARGS || '{}');
const PROOF = ['x-request-id', 'x-llmgw-deployment', 'x-llmgw-attempts', 'x-llmgw-cost',
	'x-llmgw-currency', 'x-llmgw-cache', 'x-llmgw-error-code', 'retry-after', 'content-type'];

// The SDKs' exception classes, most specific first
const OPENAI_ERRORS = ['BadRequestError', 'AuthenticationError', 'PermissionDeniedError',
	'NotFoundError', 'RateLimitError', 'InternalServerError', 'APIConnectionTimeoutError',
	'APIConnectionError', 'APIError', 'OpenAIError'];
const ANTHROPIC_ERRORS = ['BadRequestError', 'AuthenticationError', 'PermissionDeniedError',
	'NotFoundError', 'RateLimitError', 'GatewayTimeoutError', 'ServiceUnavailableError',
	'InternalServerError', 'APIConnectionTimeoutError', 'APIConnectionError', 'APIError',
	'AnthropicError'];

function openai(apiKey, opts = {})
{
	return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 30000, ...opts });
}

function anthropic(apiKey, opts = {})
{
	return new Anthropic({ baseURL: base, apiKey, maxRetries: 0, timeout: 30000, ...opts });
}

// The proof headers of a response (a fetch Headers object)
function headersOf(h)
{
	const out = {};

	if (!h || typeof h.get !== 'function')
		return out;
	for (const name of PROOF)
		if (h.get(name) !== null)
			out[name] = h.get(name);
	return out;
}

// The facts of an exception: the first SDK class it is an instance of
function errorFacts(e, sdk)
{
	const names = sdk === Anthropic ? ANTHROPIC_ERRORS : OPENAI_ERRORS;
	const cls = names.find((n) => typeof sdk[n] === 'function' && e instanceof sdk[n]) ?? null;

	return {
		ok: false,
		class: cls,
		status: e.status ?? null,
		code: e.code ?? null,					/* OpenAI: error.code of the body */
		type: e.type ?? null,
		body: e.error ?? null,					/* OpenAI: the error member; Anthropic: the body */
		message: String(e.message).slice(0, 300),
		headers: headersOf(e.headers),
	};
}

// Run fn; its value as {ok: true, ...}, or the facts of what it threw
async function attempt(sdk, fn)
{
	try
	{
		return { ok: true, ...(await fn()) };
	}
	catch (e)
	{
		return errorFacts(e, sdk);
	}
}

// Run one SQL statement with psql: {ok, out, err}
function sql(statement)
{
	try
	{
		const out = execFileSync('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose',
			'-d', process.env.LLMGW_PSQL, '-c', statement],
			{ encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
		return { ok: true, out: out.trim(), err: '' };
	}
	catch (e)
	{
		return { ok: false, out: String(e.stdout ?? '').trim(), err: String(e.stderr ?? '').trim() };
	}
}

// A fetch over one kept-alive socket (node:http), for the SDKs' fetch
// option: reused[i] says whether request i went over an open connection
function socketFetch()
{
	const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
	const reused = [];
	const fetch = (url, init = {}) => new Promise((resolve, reject) => {
		const req = http.request(String(url), {
			method: init.method ?? 'GET', agent, signal: init.signal ?? undefined,
			headers: Object.fromEntries(new Headers(init.headers ?? {})),
		});

		req.on('response', (res) => {
			const headers = new Headers();

			reused.push(req.reusedSocket);
			for (const [k, v] of Object.entries(res.headers))
				headers.set(k, Array.isArray(v) ? v.join(', ') : v);
			resolve(new Response(Readable.toWeb(res), { status: res.statusCode, headers }));
		});
		req.on('error', reject);
		req.end(init.body ?? undefined);
	});

	return { fetch, reused, agent };
}

const ask = (text) => [{ role: 'user', content: text }];

const WEATHER_TOOL = {
	type: 'function',
	function: {
		name: 'get_weather',
		description: 'The weather in a city',
		parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
	},
};

// An OpenAI chat call's facts: the text, finish reason, usage, proof
async function chatFacts(client, body, options)
{
	const { data, response } = await client.chat.completions.create(body, options).withResponse();
	const choice = data.choices[0];

	return {
		object: data.object,
		id: data.id,
		model: data.model,
		text: choice.message.content,
		role: choice.message.role,
		finish: choice.finish_reason,
		tool_calls: choice.message.tool_calls ?? null,
		usage: data.usage,
		sdk_request_id: data._request_id ?? null,
		headers: headersOf(response.headers),
	};
}

const scenarios = {
	// 0. The Vercel AI SDK (ai), as JavaScript applications use it: its
	// OpenAI-compatible, OpenAI (Chat Completions) and Anthropic providers,
	// text, streams with usage, and a tool loop whose results go back
	async aisdk()
	{
		const out = {};
		const compat = createOpenAICompatible({ name: 'llmgw', baseURL: `${base}/v1`, apiKey: keys.main,
			includeUsage: true });
		const oai = createOpenAI({ baseURL: `${base}/v1`, apiKey: keys.main });
		const anth = createAnthropic({ baseURL: `${base}/v1`, apiKey: keys.main });
		const tools = { get_weather: tool({ description: 'The weather in a city',
			inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } } }),
			execute: async ({ city }) => `sunny in ${city}` }) };
		const usage = (u) => ({ input: u.inputTokens, output: u.outputTokens });
		const run = async (fn) => { try { return { ok: true, ...(await fn()) }; }
			catch (e) { return { ok: false, message: String(e.message).slice(0, 300) }; } };

		for (const [name, model] of [['compat', compat('demo')], ['openai_chat', oai.chat('demo')],
			['anthropic', anth('demo')]])
		{
			out[`${name}_text`] = await run(async () => {
				const r = await generateText({ model, prompt: 'hello from the ai sdk', maxOutputTokens: 100 });
				return { text: r.text, usage: usage(r.usage) };
			});
			out[`${name}_stream`] = await run(async () => {
				const r = streamText({ model, prompt: 'hello from the ai sdk', maxOutputTokens: 100 });
				let text = '';
				for await (const piece of r.textStream)
					text += piece;
				return { text, usage: usage(await r.usage) };
			});
		}
		for (const [name, model] of [['compat', compat('tools')], ['anthropic', anth('tools-claude')]])
			out[`${name}_tools`] = await run(async () => {
				const r = await generateText({ model, prompt: 'weather in Paris?', tools, maxOutputTokens: 100,
					stopWhen: stepCountIs(2) });
				return { steps: r.steps.length, calls: r.steps.map((s) => s.toolCalls.map((c) => c.toolName)),
					results: r.steps.map((s) => s.toolResults.map((t) => t.output)),
					second_request: JSON.stringify(r.steps[1]?.request?.body ?? '') };
			});
		// the OpenAI provider's default model speaks the Responses API
		out.responses_text = await run(async () => {
			const r = await generateText({ model: oai('demo'), prompt: 'hello from the ai sdk', maxOutputTokens: 100 });
			return { text: r.text, usage: usage(r.usage) };
		});
		out.responses_stream = await run(async () => {
			const r = streamText({ model: oai('demo'), prompt: 'hello from the ai sdk', maxOutputTokens: 100 });
			let text = '';
			for await (const piece of r.textStream)
				text += piece;
			return { text, usage: usage(await r.usage) };
		});
		out.responses_tools = await run(async () => {
			const r = await generateText({ model: oai('tools'), prompt: 'weather in Paris?', tools,
				maxOutputTokens: 100, stopWhen: stepCountIs(2) });
			return { steps: r.steps.length, calls: r.steps.map((s) => s.toolCalls.map((c) => c.toolName)),
				results: r.steps.map((s) => s.toolResults.map((t) => t.output)),
				second_request: JSON.stringify(r.steps[1]?.request?.body ?? '') };
		});
		return out;
	},

	// 0b. The OpenAI SDK's Responses API (responses.create, responses.stream):
	// text with instructions, a stream's events, a function call and its
	// output sent back, JSON schema output, a streamed call, the proof
	async responses()
	{
		const c = openai(keys.main);
		const out = {};
		const tools = [{ type: 'function', name: 'get_weather', description: 'The weather in a city',
			parameters: { type: 'object', properties: { city: { type: 'string' } } } }];

		out.plain = await attempt(OpenAI, async () => {
			const { data: r, response } = await c.responses.create({ model: 'demo', instructions: 'be brief',
				input: 'hello from the responses api', user: 'carol', metadata: { source: 'responses' } })
				.withResponse();
			return { id: r.id, text: r.output_text, status: r.status, output: r.output, usage: r.usage,
				headers: headersOf(response.headers) };
		});
		out.stream = await attempt(OpenAI, async () => {
			const s = c.responses.stream({ model: 'demo', input: 'hello from the responses api' });
			const types = [];
			let text = '';
			let proof = null;
			s.on('event', (e) => {
				types.push(e.type);
				if (e.type === 'response.completed')
					proof = e.llmgw ?? null;
			});
			s.on('response.output_text.delta', (e) => { text += e.delta; });
			const f = await s.finalResponse();
			return { types, text, final: f.output[0]?.content?.[0]?.text ?? null, status: f.status,
				usage: f.usage, proof };
		});
		// logprobs asked for with include, plain and streamed (in the completed Response)
		const rlp = (r) => (r.output[0]?.content?.[0]?.logprobs ?? []).map((e) => [e.token, e.logprob,
			e.top_logprobs.length]);
		out.logprobs = await attempt(OpenAI, async () => ({ content: rlp(await c.responses.create({
			model: 'demo', input: 'two words', include: ['message.output_text.logprobs'], top_logprobs: 1 })) }));
		out.logprobs_stream = await attempt(OpenAI, async () => {
			const s = c.responses.stream({ model: 'demo', input: 'two words',
				include: ['message.output_text.logprobs'], top_logprobs: 1 });
			return { content: rlp(await s.finalResponse()) };
		});
		out.tools = await attempt(OpenAI, async () => {
			const first = await c.responses.create({ model: 'tools', input: 'weather in Paris?', tools });
			const call = first.output.find((i) => i.type === 'function_call');
			const second = await c.responses.create({ model: 'echo', tools, input: [
				{ role: 'user', content: 'weather in Paris?' }, call,
				{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' }] });
			return { call, sent: second.output_text };
		});
		out.stream_tools = await attempt(OpenAI, async () => {
			const s = c.responses.stream({ model: 'tools', input: 'weather in Paris?', tools });
			const pieces = [];
			s.on('response.function_call_arguments.delta', (e) => pieces.push(e.delta));
			const f = await s.finalResponse();
			return { output: f.output, pieces };
		});
		out.json = await attempt(OpenAI, async () => {
			const r = await c.responses.create({ model: 'echo', input: 'a city', metadata: { run: 'json' },
				text: { format: { type: 'json_schema', name: 'city', schema: { type: 'object',
					properties: { name: { type: 'string' } } } } } });
			return { sent: r.output_text };
		});
		// the client leaves in the middle of a stream
		out.abort = await attempt(OpenAI, async () => {
			const { data: stream, response } = await c.responses.create({ model: 'paced',
				input: 'one two three four five six seven eight nine ten', stream: true }).withResponse();
			let text = '';

			for await (const e of stream)
			{
				if (e.type === 'response.output_text.delta')
					text += e.delta;
				if (text.length > 0)
				{
					stream.controller.abort();
					break;
				}
			}
			return { text, headers: headersOf(response.headers) };
		});
		out.stored = await attempt(OpenAI, () => c.responses.create({ model: 'demo', input: 'again',
			previous_response_id: 'resp_123' }));
		out.unknown_model = await attempt(OpenAI, () => c.responses.create({ model: 'no-such-model',
			input: 'hi' }));
		return out;
	},

	// 1. The OpenAI SDK's calls: plain, streamed, tools, JSON mode,
	// embeddings, models, tags
	async openai()
	{
		const c = openai(keys.main);
		const out = {};
		const messages = ask('hello from the openai sdk: ünïcødé 日本語 🎉');

		out.plain = await attempt(OpenAI, () => chatFacts(c, { model: 'priced', messages }));

		// the provider sends an event every 100 ms: the client sees them come
		out.stream = await attempt(OpenAI, async () => {
			const t0 = performance.now();
			const { data: stream, response } = await c.chat.completions.create({
				model: 'priced-paced', messages, stream: true, stream_options: { include_usage: true },
			}).withResponse();
			const s = { text: '', chunks: 0, content_chunks: 0, finish: null, usage: null,
				llmgw: null, last_choices: null, ids: new Set(), objects: new Set(),
				first_content_ms: null, end_ms: null };

			for await (const chunk of stream)
			{
				s.chunks++;
				s.ids.add(chunk.id);
				s.objects.add(chunk.object);
				const choice = chunk.choices?.[0];
				if (choice?.delta?.content)
				{
					s.text += choice.delta.content;
					s.content_chunks++;
					s.first_content_ms ??= performance.now() - t0;
				}
				if (choice?.finish_reason)
					s.finish = choice.finish_reason;
				if (chunk.usage)
					s.usage = chunk.usage;
				s.llmgw = chunk.llmgw ?? null;		/* the last chunk's */
				s.last_choices = chunk.choices?.length ?? null;
			}
			s.end_ms = performance.now() - t0;
			return { ...s, ids: [...s.ids], objects: [...s.objects], headers: headersOf(response.headers) };
		});

		out.tools = await attempt(OpenAI, () => chatFacts(c, {
			model: 'tools', messages: ask('what is the weather in Paris?'), tools: [WEATHER_TOOL],
		}));

		// logprobs, plain and through the SDK's stream helper, which joins
		// the chunks' lists; and a deployment that has none refuses them
		const lp = (content) => (content ?? []).map((e) => [e.token, e.logprob, e.top_logprobs.length]);
		out.logprobs = await attempt(OpenAI, async () => {
			const r = await c.chat.completions.create({ model: 'demo', messages: ask('two words'),
				logprobs: true, top_logprobs: 2 });
			return { text: r.choices[0].message.content, content: lp(r.choices[0].logprobs?.content) };
		});
		out.logprobs_stream = await attempt(OpenAI, async () => {
			const runner = c.chat.completions.stream({ model: 'demo', messages: ask('two words'),
				logprobs: true, top_logprobs: 2 });
			const done = await runner.finalChatCompletion();
			return { text: done.choices[0].message.content, content: lp(done.choices[0].logprobs?.content) };
		});
		out.logprobs_refused = await attempt(OpenAI, () => c.chat.completions.create({
			model: 'claude-think', messages: ask('two words'), logprobs: true }));

		out.tools_stream = await attempt(OpenAI, async () => {
			const runner = c.chat.completions.stream({
				model: 'tools', messages: ask('what is the weather in Paris?'), tools: [WEATHER_TOOL],
			});
			const final = await runner.finalChatCompletion();

			return { finish: final.choices[0].finish_reason, tool_calls: final.choices[0].message.tool_calls };
		});

		// tool calls as they stream, from each provider's wire format (the
		// provider sends an event every 100 ms): the chunks that carry them
		for (const model of ['tools-paced', 'tools-claude', 'tools-gemini'])
			out[`tools_pieces_${model}`] = await attempt(OpenAI, async () => {
				const t0 = performance.now();
				const stream = await c.chat.completions.create({
					model, messages: ask('what is the weather in Paris?'), tools: [WEATHER_TOOL], stream: true,
				});
				const s = { starts: [], pieces: [], first_tool_ms: null, end_ms: null, finish: null };

				for await (const chunk of stream)
				{
					const choice = chunk.choices?.[0];
					for (const tc of choice?.delta?.tool_calls ?? [])
					{
						s.first_tool_ms ??= performance.now() - t0;
						if (tc.id || tc.function?.name)
							s.starts.push({ index: tc.index, id: tc.id, name: tc.function?.name });
						if (tc.function?.arguments)
							s.pieces.push({ index: tc.index, arguments: tc.function.arguments });
					}
					if (choice?.finish_reason)
						s.finish = choice.finish_reason;
				}
				s.end_ms = performance.now() - t0;
				return s;
			});

		// three calls at once (the first without arguments), plain and
		// streamed, as the SDK assembles them
		for (const model of ['tools3', 'tools3-claude', 'tools3-gemini'])
			out[`tools3_${model}`] = await attempt(OpenAI, async () => {
				const body = { model, messages: ask('what is the weather in Paris?'), tools: [WEATHER_TOOL] };
				const plain = await c.chat.completions.create(body);
				const streamed = await c.chat.completions.stream(body).finalChatCompletion();
				const calls = (m) => (m.choices[0].message.tool_calls ?? []).map((tc) => ({
					id: tc.id, name: tc.function.name, arguments: tc.function.arguments }));
				return { plain: calls(plain), streamed: calls(streamed),
					finish: [plain.choices[0].finish_reason, streamed.choices[0].finish_reason] };
			});

		// the tool's result sent back: the provider gets the tool message
		out.tool_result = await attempt(OpenAI, () => chatFacts(c, {
			model: 'echo', tools: [WEATHER_TOOL], messages: [
				...ask('what is the weather in Paris?'),
				{ role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
					function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
				{ role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 C' },
			],
		}));

		// the provider's stream breaks after some text: the SDK throws
		out.stream_broken = await attempt(OpenAI, async () => {
			const stream = await c.chat.completions.create({ model: 'midfail', messages, stream: true });
			let text = '';
			try
			{
				for await (const chunk of stream)
					text += chunk.choices?.[0]?.delta?.content ?? '';
			}
			catch (e)
			{
				return { text, thrown: errorFacts(e, OpenAI) };
			}
			return { text, thrown: null };
		});

		// without include_usage: no usage chunk, the proof rides on the finish chunk
		out.stream_plain = await attempt(OpenAI, async () => {
			const stream = await c.chat.completions.create({ model: 'demo', messages, stream: true });
			const s = { text: '', usage: null, llmgw: null, finish: null };

			for await (const chunk of stream)
			{
				s.text += chunk.choices?.[0]?.delta?.content ?? '';
				s.usage ??= chunk.usage ?? null;
				s.llmgw ??= chunk.llmgw ?? null;
				if (chunk.llmgw)
					s.finish = chunk.choices?.[0]?.finish_reason ?? null;
			}
			return s;
		});

		// the client leaves in the middle of a stream
		out.abort = await attempt(OpenAI, async () => {
			const { data: stream, response } = await c.chat.completions.create({
				model: 'paced', messages: ask('one two three four five six seven eight nine ten'), stream: true,
			}).withResponse();
			let text = '';

			for await (const chunk of stream)
			{
				text += chunk.choices?.[0]?.delta?.content ?? '';
				if (text.length > 0)
				{
					stream.controller.abort();
					break;
				}
			}
			return { text, headers: headersOf(response.headers) };
		});

		// newer parameters pass through to the provider
		out.passthrough = await attempt(OpenAI, () => chatFacts(c, {
			model: 'echo', messages: [{ role: 'system', content: 'be brief' }, ...ask('hi')],
			max_completion_tokens: 500, temperature: 0.2, seed: 7,
		}));

		// prompt-cache marks on content parts (as LiteLLM takes them) reach
		// an Anthropic deployment
		out.cache_marks = await attempt(OpenAI, () => chatFacts(c, {
			model: 'echo-claude', max_tokens: 4000, cache_control: { type: 'ephemeral', ttl: '1h' }, messages: [
				{ role: 'system', content: [{ type: 'text', text: 'Long rules.', cache_control: { type: 'ephemeral' } }] },
				...ask('hi')],
		}));

		out.json_mode = await attempt(OpenAI, () => chatFacts(c, {
			model: 'echo', messages: ask('answer in JSON'), response_format: { type: 'json_object' },
		}));

		out.embed_one = await attempt(OpenAI, async () => {
			const r = await c.embeddings.create({ model: 'embed', input: 'alpha' });
			return { object: r.object, model: r.model, usage: r.usage, data: r.data };
		});
		out.embed_list = await attempt(OpenAI, async () => {
			const r = await c.embeddings.create({ model: 'embed', input: ['alpha', 'beta', 'gamma'] });
			return { data: r.data };
		});
		out.embed_float = await attempt(OpenAI, async () => {
			const r = await c.embeddings.create({ model: 'embed', input: ['alpha', 'beta', 'gamma'],
				encoding_format: 'float' });
			return { data: r.data };
		});
		// token arrays, as LangChain sends them: one, several; to Gemini; mixed
		out.embed_tokens_one = await attempt(OpenAI, async () => {
			const r = await c.embeddings.create({ model: 'embed', input: [9906, 1917], encoding_format: 'float' });
			return { data: r.data, usage: r.usage };
		});
		out.embed_tokens = await attempt(OpenAI, async () => {
			const r = await c.embeddings.create({ model: 'embed', input: [[9906, 1917], [15339]],
				encoding_format: 'float' });
			return { data: r.data, usage: r.usage };
		});
		out.embed_tokens_gemini = await attempt(OpenAI, () =>
			c.embeddings.create({ model: 'embed-gemini', input: [[9906, 1917]] }));
		out.embed_tokens_mixed = await attempt(OpenAI, () =>
			c.embeddings.create({ model: 'embed', input: ['alpha', [9906]] }));

		const limited = openai(keys.allow);
		out.models = await attempt(OpenAI, async () => {
			const ids = [];
			for await (const m of limited.models.list())
				ids.push(m.id);
			const all = [];
			for await (const m of c.models.list())
				all.push(m.id);
			return { ids: ids.sort(), all: all.sort() };
		});
		out.model_one = await attempt(OpenAI, async () => {
			const m = await limited.models.retrieve('demo');
			return { id: m.id, object: m.object };
		});
		out.model_hidden = await attempt(OpenAI, () => limited.models.retrieve('embed'));
		out.model_slash = await attempt(OpenAI, async () => {
			const m = await c.models.retrieve('acme/fast');
			const r = await chatFacts(c, { model: 'acme/fast', messages: ask('slash') });
			return { id: m.id, text: r.text };
		});

		out.tags = await attempt(OpenAI, () => chatFacts(c, {
			model: 'demo', messages: ask('tag me'), user: 'alice', metadata: { project: 'apollo' },
		}, { headers: { 'x-llmgw-tags': JSON.stringify({ source: 'sdk-test', project: 'header' }) } }));

		return out;
	},

	// 2. Each error class as the OpenAI SDK's exception (maxRetries 0)
	async errors()
	{
		const out = {};
		const c = openai(keys.main);
		const messages = ask('this should fail');

		out.unknown_key = await attempt(OpenAI, () =>
			openai('lgw_' + '0'.repeat(40)).chat.completions.create({ model: 'demo', messages }));
		out.missing_key = await attempt(OpenAI, () =>
			openai('unused', { defaultHeaders: { Authorization: null } })
				.chat.completions.create({ model: 'demo', messages }));

		// revoked while the client holds its connection (one kept-alive socket)
		const sock = socketFetch();
		const r = openai(keys.revoke, { fetch: sock.fetch });
		out.before_revoke = await attempt(OpenAI, () => chatFacts(r, { model: 'demo', messages: ask('still valid') }));
		out.revoke_sql = sql(`SELECT llmgw.revoke_key(${args.revoke_id})`);
		out.revoked = await attempt(OpenAI, () => r.chat.completions.create({ model: 'demo', messages }));
		out.revoked_models = await attempt(OpenAI, () => r.models.list());
		out.revoke_reused = sock.reused;
		sock.agent.destroy();

		out.not_allowed = await attempt(OpenAI, () =>
			openai(keys.allow).chat.completions.create({ model: 'tools', messages }));
		out.unknown_model = await attempt(OpenAI, () =>
			c.chat.completions.create({ model: 'no-such-model', messages }));

		const b = openai(keys.budget);
		out.budget_first = await attempt(OpenAI, () => chatFacts(b, { model: 'metered', messages, max_tokens: 5 }));
		out.budget = await attempt(OpenAI, () => b.chat.completions.create({ model: 'metered', messages, max_tokens: 5 }));
		const d = openai(keys.daily);
		out.daily_first = await attempt(OpenAI, () => chatFacts(d, { model: 'metered', messages, max_tokens: 5 }));
		out.daily = await attempt(OpenAI, () => d.chat.completions.create({ model: 'metered', messages, max_tokens: 5 }));

		const rpm = openai(keys.rpm);
		out.rpm_allowed = [];
		for (let i = 0; i < args.rpm; i++)
			out.rpm_allowed.push(await attempt(OpenAI, () => chatFacts(rpm, { model: 'demo', messages })));
		out.rpm = await attempt(OpenAI, () => rpm.chat.completions.create({ model: 'demo', messages }));

		out.bad_tags = await attempt(OpenAI, () => c.chat.completions.create({ model: 'demo', messages },
			{ headers: { 'x-llmgw-tags': 'not json' } }));
		out.no_messages = await attempt(OpenAI, () => c.chat.completions.create({ model: 'demo' }));
		out.context = await attempt(OpenAI, () => c.chat.completions.create({ model: 'ctx', messages }));
		out.server = await attempt(OpenAI, () => c.chat.completions.create({ model: 'broken', messages }));
		out.timeout = await attempt(OpenAI, () => c.chat.completions.create({ model: 'late', messages }));
		// a stream that fails before its first byte: a plain HTTP error
		out.stream_server = await attempt(OpenAI, async () => {
			const stream = await c.chat.completions.create({ model: 'broken', messages, stream: true });
			for await (const chunk of stream)
				;
			return {};
		});
		return out;
	},

	// 3. The Anthropic SDK: messages plain, streamed, tools, errors
	async anthropic()
	{
		const a = anthropic(keys.main);
		const out = {};
		const messages = ask('hello from the anthropic sdk');

		out.plain = await attempt(Anthropic, async () => {
			const { data, response } = await a.messages.create({ model: 'demo', max_tokens: 100, messages,
				metadata: { user_id: 'bob' } }, { headers: { 'x-llmgw-tags': '{"source":"anthropic-sdk"}' } })
				.withResponse();
			return { message: data, headers: headersOf(response.headers) };
		});

		out.stream = await attempt(Anthropic, async () => {
			const t0 = performance.now();
			const stream = a.messages.stream({ model: 'paced', max_tokens: 100, messages });
			const texts = [];
			const events = [];
			let proof = null;
			let first_text_ms = null;

			stream.on('text', (t) => {
				texts.push(t);
				first_text_ms ??= performance.now() - t0;
			});
			stream.on('streamEvent', (e) => {
				events.push(e.type);
				if (e.type === 'message_delta')
					proof = e.llmgw ?? null;
			});
			const { data: s, response } = await stream.withResponse();
			const message = await stream.finalMessage();
			return { texts, events, message, proof, first_text_ms, end_ms: performance.now() - t0,
				headers: headersOf(response.headers) };
		});

		out.tools = await attempt(Anthropic, async () => {
			const m = await a.messages.create({
				model: 'tools', max_tokens: 100, messages: ask('what is the weather in Paris?'),
				tools: [{ name: 'get_weather', description: 'The weather in a city',
					input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }],
			});
			return { message: m };
		});

		out.tools_stream = await attempt(Anthropic, async () => {
			const stream = a.messages.stream({
				model: 'tools', max_tokens: 100, messages: ask('what is the weather in Paris?'),
				tools: [{ name: 'get_weather', description: 'The weather in a city',
					input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }],
			});
			const json = [];
			stream.on('inputJson', (piece) => json.push(piece));
			return { message: await stream.finalMessage(), json };
		});

		// tool calls as they stream, from each provider's wire format (the
		// provider sends an event every 100 ms): the input_json_delta pieces
		for (const model of ['tools-paced', 'tools-claude', 'tools-gemini'])
			out[`tools_pieces_${model}`] = await attempt(Anthropic, async () => {
				const t0 = performance.now();
				const stream = a.messages.stream({
					model, max_tokens: 100, messages: ask('what is the weather in Paris?'),
					tools: [{ name: 'get_weather', description: 'The weather in a city',
						input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }],
				});
				const json = [];
				const blocks = [];
				let first_json_ms = null;

				stream.on('inputJson', (piece) => {
					json.push(piece);
					first_json_ms ??= performance.now() - t0;
				});
				stream.on('streamEvent', (e) => {
					if (e.type === 'content_block_start')
						blocks.push(e.content_block.type);
				});
				const message = await stream.finalMessage();
				return { message, json, blocks, first_json_ms, end_ms: performance.now() - t0 };
			});

		// three calls at once (the first without input), plain and streamed
		for (const model of ['tools3', 'tools3-claude', 'tools3-gemini'])
			out[`tools3_${model}`] = await attempt(Anthropic, async () => {
				const body = { model, max_tokens: 100, messages: ask('what is the weather in Paris?'),
					tools: [{ name: 'get_weather', description: 'The weather in a city',
						input_schema: { type: 'object', properties: { city: { type: 'string' } } } }] };
				const uses = (m) => m.content.filter((b) => b.type === 'tool_use')
					.map((b) => ({ id: b.id, name: b.name, input: b.input }));
				const plain = await a.messages.create(body);
				const streamed = await a.messages.stream(body).finalMessage();
				return { plain: uses(plain), streamed: uses(streamed),
					blocks: streamed.content.map((b) => b.type), stop: [plain.stop_reason, streamed.stop_reason] };
			});

		// the tool's result sent back: what the provider received
		out.tool_result = await attempt(Anthropic, async () => {
			const m = await a.messages.create({
				model: 'echo', max_tokens: 1000,
				tools: [{ name: 'get_weather', description: 'The weather in a city',
					input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
				messages: [
					...ask('what is the weather in Paris?'),
					{ role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather',
						input: { city: 'Paris' } }] },
					{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny, 21 C' }] },
				],
			});
			return { message: m };
		});

		// a deployment that reports prompt-cache reads and writes: the usage
		// as Anthropic reports it, from both APIs
		out.cache_usage = await attempt(Anthropic, async () => {
			const long = ask(Array.from({ length: 40 }, (_, k) => `word${k}`).join(' '));
			const { data, response } = await a.messages.create({ model: 'claude-cached', max_tokens: 100,
				messages: long }).withResponse();
			const { data: o, response: oresponse } = await openai(keys.main).chat.completions.create({
				model: 'claude-cached', messages: long }).withResponse();
			return { usage: data.usage, headers: headersOf(response.headers), openai_usage: o.usage,
				openai_headers: headersOf(oresponse.headers) };
		});

		// prompt-cache marks where Anthropic clients put them, to an
		// Anthropic deployment and to an OpenAI one: what each received
		out.cache_marks = await attempt(Anthropic, async () => {
			const mark = { type: 'ephemeral' };
			const body = {
				max_tokens: 4000,
				system: [{ type: 'text', text: 'Long rules.', cache_control: mark }, { type: 'text', text: 'Be brief.' }],
				tools: [{ name: 'get_weather', input_schema: { type: 'object' }, cache_control: mark }],
				messages: [
					{ role: 'user', content: [{ type: 'text', text: 'weather?', cache_control: { type: 'ephemeral', ttl: '1h' } }] },
					{ role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {},
						cache_control: mark }] },
					{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny',
						cache_control: mark }] },
				],
			};
			const sent = async (model, more = {}) => (await a.messages.create({ ...body, ...more, model })).content[0].text;
			return { anthropic: await sent('echo-claude'), openai: await sent('echo'),
				automatic: await sent('echo-claude', { cache_control: mark }) };
		});

		// extended thinking from an Anthropic deployment: the blocks plain
		// and streamed (thinking_delta, signature_delta), sent back on the
		// next turn as they came (the mock checks their signature), an
		// altered one refused by the provider; from the OpenAI SDK,
		// reasoning_content and thinking_blocks
		out.thinking = await attempt(Anthropic, async () => {
			const body = { model: 'claude-think', max_tokens: 2000,
				thinking: { type: 'enabled', budget_tokens: 1024 }, messages: ask('two and two?') };
			const plain = await a.messages.create(body);
			const deltas = new Set();
			const stream = a.messages.stream(body);
			stream.on('streamEvent', (e) => {
				if (e.type === 'content_block_delta')
					deltas.add(e.delta.type);
			});
			const streamed = await stream.finalMessage();
			const turn = (content, text) => ({ ...body,
				messages: [...body.messages, { role: 'assistant', content }, ...ask(text)] });
			const next = await a.messages.create(turn(streamed.content, 'and three?'));
			const altered = await attempt(Anthropic, () => a.messages.create(
				turn([{ ...plain.content[0], thinking: 'altered' }, plain.content[1]], 'again')));
			const o = openai(keys.main);
			const omessage = (await o.chat.completions.create({ model: 'claude-think',
				messages: ask('two and two?'), thinking: body.thinking })).choices[0].message;
			let reasoning = '';
			let blocks = null;
			for await (const chunk of await o.chat.completions.create({ model: 'claude-think',
				messages: ask('two and two?'), thinking: body.thinking, stream: true }))
			{
				const d = chunk.choices[0]?.delta ?? {};
				reasoning += d.reasoning_content ?? '';
				blocks = d.thinking_blocks ?? blocks;
			}
			// a streamed answer from the cache: its thinking sent whole first
			const cached = [];
			for (let k = 0; k < 2; k++)
			{
				const { data, response } = await a.messages.stream({ ...body, model: 'claude-think-cached' })
					.withResponse();
				const m = await data.finalMessage();
				cached.push({ content: m.content, cache: response.headers.get('x-llmgw-cache') });
			}
			const ocached = [];
			for (let k = 0; k < 2; k++)
			{
				const { data, response } = await o.chat.completions.create({ model: 'claude-think-cached',
					messages: ask('two and two?'), thinking: body.thinking, stream: true }).withResponse();
				let text = '';
				let oreasoning = '';
				for await (const chunk of data)
				{
					text += chunk.choices[0]?.delta?.content ?? '';
					oreasoning += chunk.choices[0]?.delta?.reasoning_content ?? '';
				}
				ocached.push({ text, reasoning: oreasoning, cache: response.headers.get('x-llmgw-cache') });
			}
			// reasoning that is no thinking block (an OpenAI-compatible
			// server's reasoning_content): to the OpenAI SDK only
			const rmessage = (await o.chat.completions.create({ model: 'reasoner',
				messages: ask('two and two?') })).choices[0].message;
			let rstreamed = '';
			for await (const chunk of await o.chat.completions.create({ model: 'reasoner',
				messages: ask('two and two?'), stream: true }))
				rstreamed += chunk.choices[0]?.delta?.reasoning_content ?? '';
			const rblocks = [(await a.messages.create({ ...body, model: 'reasoner' })).content,
				(await a.messages.stream({ ...body, model: 'reasoner' }).finalMessage()).content]
				.map((c) => c.map((b) => b.type).join(','));
			// Gemini's thought signatures on function calls (a deployment that
			// checks them, as Gemini 3 does): the OpenAI SDK's message sent
			// back as it came; an Anthropic client's tool_use (no place for
			// the signature) goes through too
			const weather = [{ type: 'function', function: { name: 'get_weather',
				parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
			const first = (await o.chat.completions.create({ model: 'tools-gemini-signed', tools: weather,
				messages: ask('weather in Paris?') })).choices[0].message;
			const second = (await o.chat.completions.create({ model: 'tools-gemini-signed', tools: weather,
				messages: [...ask('weather in Paris?'), first,
					{ role: 'tool', tool_call_id: first.tool_calls[0].id, content: 'sunny' }] })).choices[0];
			let streamed_signature = null;
			for await (const chunk of await o.chat.completions.create({ model: 'tools-gemini-signed',
				tools: weather, messages: ask('weather in Paris?'), stream: true }))
				streamed_signature ??= chunk.choices[0]?.delta?.tool_calls?.[0]?.extra_content?.google
					?.thought_signature ?? null;
			const atools = [{ name: 'get_weather', input_schema: { type: 'object' } }];
			const afirst = await a.messages.create({ model: 'tools-gemini-signed', max_tokens: 100,
				tools: atools, messages: ask('weather in Paris?') });
			const use = afirst.content.find((b) => b.type === 'tool_use');
			const asecond = await a.messages.create({ model: 'tools-gemini-signed', max_tokens: 100,
				tools: atools, messages: [...ask('weather in Paris?'), { role: 'assistant', content: afirst.content },
					{ role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny' }] }] });
			return { plain: plain.content, streamed: streamed.content, deltas: [...deltas].sort(),
				next: next.content, altered, openai: omessage, openai_stream: { reasoning, blocks },
				cached, ocached, reasoner: { message: rmessage, streamed: rstreamed, anthropic: rblocks },
				signed: { first, second_finish: second.finish_reason, anthropic_stop: asecond.stop_reason,
					streamed_signature } };
		});

		// documents: a PDF and a plain text one, to an Anthropic deployment
		// and to an OpenAI one (what each received), and the OpenAI SDK's
		// file part to an Anthropic deployment
		out.documents = await attempt(Anthropic, async () => {
			const body = { max_tokens: 4000, messages: [{ role: 'user', content: [
				{ type: 'document', title: 'invoice.pdf', source: { type: 'base64', media_type: 'application/pdf',
					data: 'JVBERi0xLjQK' } },
				{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'Total: 42 EUR' } },
				{ type: 'text', text: 'Total?' }] }] };
			const sent = async (model) => (await a.messages.create({ ...body, model })).content[0].text;
			const o = openai(keys.main);
			const ofile = (await o.chat.completions.create({ model: 'echo-claude', messages: [{ role: 'user',
				content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0xLjQK',
					filename: 'invoice.pdf' } }, { type: 'text', text: 'Total?' }] }] })).choices[0].message.content;
			return { anthropic: await sent('echo-claude'), openai: await sent('echo'), from_openai: ofile };
		});

		out.system = await attempt(Anthropic, async () => ({ message: await a.messages.create({
			model: 'echo', max_tokens: 500, system: 'be brief', temperature: 0.2,
			stop_sequences: ['END'], messages: ask('hi'),
		}) }));

		// a stop sequence ends the answer: which one, from an Anthropic deployment
		// (plain and streamed), and from an OpenAI-format one (which does not say)
		out.stop_sequence = await attempt(Anthropic, async () => {
			const body = { model: 'claude-plain', max_tokens: 100, stop_sequences: ['nowhere', 'said'],
				messages: ask('stop here') };
			const facts = (m) => ({ text: m.content[0]?.text, stop_reason: m.stop_reason,
				stop_sequence: m.stop_sequence });
			return { plain: facts(await a.messages.create(body)),
				streamed: facts(await a.messages.stream(body).finalMessage()),
				openai_format: facts(await a.messages.create({ ...body, model: 'demo' })),
				vllm: facts(await a.messages.create({ ...body, model: 'vllm' })),
				vllm_streamed: facts(await a.messages.stream({ ...body, model: 'vllm' }).finalMessage()) };
		});

		out.stream_broken = await attempt(Anthropic, async () => {
			const stream = a.messages.stream({ model: 'midfail', max_tokens: 100, messages });
			const texts = [];
			stream.on('text', (t) => texts.push(t));
			try
			{
				await stream.finalMessage();
			}
			catch (e)
			{
				return { text: texts.join(''), thrown: errorFacts(e, Anthropic) };
			}
			return { text: texts.join(''), thrown: null };
		});

		out.models = await attempt(Anthropic, async () => {
			const ids = [];
			for await (const m of a.models.list())
			{
				ids.push(m.id);
				if (ids.length > 100)
					break;
			}
			return { ids };
		});

		out.bad_key = await attempt(Anthropic, () =>
			anthropic('lgw_' + '0'.repeat(40)).messages.create({ model: 'demo', max_tokens: 10, messages }));
		out.unknown_model = await attempt(Anthropic, () =>
			a.messages.create({ model: 'no-such-model', max_tokens: 10, messages }));
		out.not_allowed = await attempt(Anthropic, () =>
			anthropic(keys.allow).messages.create({ model: 'tools', max_tokens: 10, messages }));
		return out;
	},

	// 4. args.n concurrent calls with one key against a hard budget
	async race()
	{
		const c = openai(keys.race);
		const calls = [];

		for (let i = 0; i < args.n; i++)
			calls.push(attempt(OpenAI, () => chatFacts(c, { model: 'metered', messages: ask(`race ${i}`), max_tokens: 5 })));
		const results = await Promise.all(calls);
		return {
			ok: results.filter((r) => r.ok).length,
			budget: results.filter((r) => !r.ok && r.class === 'RateLimitError' && r.code === 'budget_exhausted'
				&& r.headers['x-llmgw-error-code'] === 'budget_exhausted').length,
			other: results.filter((r) => !r.ok && !(r.class === 'RateLimitError' && r.code === 'budget_exhausted'))
				.map((r) => `${r.class} ${r.status} ${r.code}: ${r.message}`),
			request_ids: results.filter((r) => r.ok).map((r) => r.headers['x-request-id']),
		};
	},

	// 5. A team's rate limit shared by SQL and HTTP calls of one key
	async mixed()
	{
		const c = openai(keys.mixed);
		const sqlCall = (i) => sql(`SET llmgw.api_key = '${keys.mixed}'; `
			+ `SELECT llm_complete('sql call ${i}', 'metered', max_tokens => 5)`);
		const httpCall = (i) => attempt(OpenAI, () =>
			chatFacts(c, { model: 'metered', messages: ask(`http call ${i}`), max_tokens: 5 }));
		const steps = [];

		for (let i = 0; i < args.limit; i++)
			steps.push(i % 2 === 0 ? { via: 'sql', ...sqlCall(i) } : { via: 'http', ...(await httpCall(i)) });
		return {
			steps,
			http_after: await httpCall('over'),
			sql_after: sqlCall('over'),
		};
	},
};

const run = scenarios[process.argv[2]];
if (!run)
{
	console.error(`unknown scenario "${process.argv[2]}"; one of ${Object.keys(scenarios).join(', ')}`);
	process.exit(2);
}
process.stdout.write(JSON.stringify(await run()) + '\n');

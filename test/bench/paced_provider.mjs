// A provider that streams the way a model does: on any POST, an OpenAI chat
// completion stream whose first chunk ("Hello") leaves at once and whose
// rest (" world", the finish, the usage, [DONE]) follows PAUSE_MS later.
// test/bench/http.sh times the first token through it, while the stream is
// still open.  Listens on 127.0.0.1 only.
//   node test/bench/paced_provider.mjs PORT [PAUSE_MS, default 50]
import http from 'node:http';

const port = Number(process.argv[2]);
const pause = Number(process.argv[3] ?? 50);
const base = { id: 'chatcmpl-paced', object: 'chat.completion.chunk', created: 1700000000, model: 'paced-model' };
const event = (extra) => `data: ${JSON.stringify({ ...base, ...extra })}\n\n`;

http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write(event({ choices: [{ index: 0, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }] }));
    setTimeout(() => {
      res.write(event({ choices: [{ index: 0, delta: { content: ' world' }, finish_reason: null }] }));
      res.write(event({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }));
      res.write(event({ choices: [], usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 } }));
      res.end('data: [DONE]\n\n');
    }, pause);
  });
}).listen(port, '127.0.0.1');

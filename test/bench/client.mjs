// Load client for the enrich benchmark: N chat calls at a fixed concurrency
// against an OpenAI-style endpoint (the mock directly, or a gateway).
// Usage: node client.mjs URL N CONCURRENCY MODEL [header:value ...]
// Prints "calls ok failed seconds".
const [url, n, concurrency, model, ...headerArgs] = process.argv.slice(2);
const headers = { 'content-type': 'application/json', authorization: 'Bearer bench' };
for (const h of headerArgs) {
  const i = h.indexOf(':');
  headers[h.slice(0, i)] = h.slice(i + 1);
}
let next = 0, ok = 0, failed = 0;
async function worker() {
  while (next < Number(n)) {
    const i = next++;
    try {
      const res = await fetch(url, {
        method: 'POST', headers,
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'row ' + i }] }),
      });
      const body = await res.json();
      if (res.ok && body.choices) ok++; else failed++;
    } catch (e) {
      failed++;
    }
  }
}
const start = process.hrtime.bigint();
await Promise.all(Array.from({ length: Number(concurrency) }, worker));
const secs = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`${n} ${ok} ${failed} ${secs.toFixed(3)}`);

// rank1 playground: calls POST v1/rerank with "stream": true and draws the events.
// Every URL is relative to the page, so the page works behind a path-prefix proxy.
"use strict";

const $ = (id) => document.getElementById(id);
const API = "v1/rerank";
let controller = null;
let fileDocs = null; // documents read from a JSONL file, if one was chosen

function apiUrl() {
  return new URL(API, document.baseURI).href;
}

function parseJsonl(text) {
  const docs = [];
  text.split(/\r?\n/).forEach((line, n) => {
    if (!line.trim()) return;
    let value;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`line ${n + 1} of the file is not JSON: ${e.message}`);
    }
    if (typeof value === "string") docs.push(value);
    else if (value && typeof value.text === "string") {
      docs.push(value.title ? { text: value.text, title: String(value.title) } : { text: value.text });
    } else throw new Error(`line ${n + 1} of the file is neither a string nor {"text": ...}`);
  });
  return docs;
}

function documents() {
  if (fileDocs) return fileDocs;
  return $("passages").value.split(/\r?\n/).filter((l) => l.trim());
}

function requestBody() {
  const body = { query: $("query").value, documents: documents() };
  const instruction = $("instruction").value.trim();
  if (instruction) body.instruction = instruction;
  const budget = parseInt($("budget").value, 10);
  if (budget > 0) body.max_reasoning_tokens = budget;
  return body;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value;
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) {
  $("status").textContent = text;
}

function docText(d) {
  return typeof d === "string" ? d : (d.title ? `${d.title}: ${d.text}` : d.text);
}

function makeItem(i, d) {
  const li = document.createElement("li");
  li.className = "doc";
  li.tabIndex = 0;
  li.dataset.index = i;
  li.setAttribute("aria-label", `document ${i}`);
  li.innerHTML =
    '<div class="top"><span class="rank"></span><span class="verdict">judging…</span>' +
    '<span class="score"></span><span class="bar" aria-hidden="true"><span></span></span></div>' +
    '<p class="text"></p><p class="live"></p>';
  li.querySelector(".rank").textContent = `#${i}`;
  li.querySelector(".text").textContent = docText(d);
  li.reasoning = "";
  li.result = null;
  const open = () => openChain(li);
  li.addEventListener("click", open);
  li.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); }
  });
  return li;
}

function openChain(li) {
  const r = li.result;
  $("chain-title").textContent = `Reasoning for document ${li.dataset.index}`;
  $("chain-meta").textContent = r
    ? `${r.relevant ? "relevant" : "not relevant"}, score ${r.relevance_score.toFixed(4)}, ` +
      `${r.reasoning_tokens} reasoning tokens (budget ${r.reasoning_budget}), verdict: ${r.source}` +
      (r.truncated ? ", passage cut to fit" : "")
    : "still judging…";
  $("chain-text").textContent = r ? r.reasoning : li.reasoning;
  $("chain").showModal();
}

function showResult(li, r) {
  li.result = r;
  li.classList.add(r.relevant ? "relevant" : "irrelevant");
  const v = li.querySelector(".verdict");
  v.textContent = r.relevant ? "relevant" : "not relevant";
  v.className = `verdict ${r.relevant ? "yes" : "no"}`;
  li.querySelector(".score").textContent = r.relevance_score.toFixed(4);
  li.querySelector(".bar > span").style.width = `${(100 * r.relevance_score).toFixed(1)}%`;
  li.querySelector(".live").textContent = r.reasoning;
  li.dataset.score = r.relevance_score;
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

async function run(event) {
  if (event) event.preventDefault();
  if (controller) return;
  let body;
  try {
    body = requestBody();
  } catch (e) {
    setStatus(e.message);
    return;
  }
  if (!body.query.trim() || !body.documents.length) {
    setStatus("Give a query and at least one passage.");
    return;
  }
  const list = $("results");
  list.replaceChildren();
  const items = body.documents.map((d, i) => makeItem(i, d));
  items.forEach((li) => list.appendChild(li));
  controller = new AbortController();
  $("run").disabled = true;
  $("stop").disabled = false;
  document.body.dataset.state = "running";
  setStatus(`Judging ${items.length} passage(s)…`);
  let landed = 0;
  try {
    const response = await fetch(apiUrl(), {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ ...body, stream: true }),
    });
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { message += `: ${(await response.json()).error.message}`; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    for await (const ev of sseEvents(response)) {
      if (ev.type === "reasoning") {
        const li = items[ev.index];
        li.reasoning += ev.delta;
        li.querySelector(".live").textContent = li.reasoning.slice(-300);
      } else if (ev.type === "result") {
        showResult(items[ev.result.index], ev.result);
        landed += 1;
        setStatus(`${landed} of ${items.length} verdicts…`);
      } else if (ev.type === "done") {
        ev.ranking.forEach((index, rank) => {
          const li = items[index];
          li.querySelector(".rank").textContent = `${rank + 1}.`;
          li.dataset.rank = rank + 1;
          list.appendChild(li); // moves it: the list ends in ranking order
        });
        const u = ev.usage || {};
        setStatus(`Done: ${items.length} passage(s) ranked, ${u.completion_tokens} tokens generated.`);
        document.body.dataset.state = "done";
      } else if (ev.type === "error") {
        throw new Error(ev.error.message);
      }
    }
  } catch (e) {
    document.body.dataset.state = "error";
    setStatus(e.name === "AbortError" ? "Stopped." : `Error: ${e.message}`);
  } finally {
    controller = null;
    $("run").disabled = false;
    $("stop").disabled = true;
  }
}

function shellQuote(s) {
  return `'${s.replace(/'/g, "'\\''")}'`;
}

function curlSnippet() {
  const body = JSON.stringify({ ...requestBody(), stream: true });
  const key = $("apikey").value ? " \\\n  -H 'Authorization: Bearer $RANK1_API_KEY'" : "";
  return `curl -N ${shellQuote(apiUrl())} \\\n  -H 'Content-Type: application/json'${key} \\\n` +
    `  -d ${shellQuote(body)}`;
}

function pythonSnippet() {
  const b = requestBody();
  const base = new URL("v1", document.baseURI).href;
  const py = (v) => JSON.stringify(v);
  const docs = b.documents.map((d) => (typeof d === "string" ? py(d)
    : `Passage(text=${py(d.text)}${d.title ? `, title=${py(d.title)}` : ""})`));
  const args = [];
  if (b.instruction) args.push(`instruction=${py(b.instruction)}`);
  if (b.max_reasoning_tokens) args.push(`max_reasoning_tokens=${b.max_reasoning_tokens}`);
  const key = $("apikey").value ? ', api_key=os.environ["RANK1_API_KEY"]' : "";
  return [
    $("apikey").value ? "import os\n" : "",
    "from rank1_integrations import Passage, Rank1Client\n\n",
    `with Rank1Client(base_url=${py(base)}, mode="rerank"${key}${args.length ? ", " + args.join(", ") : ""}) as client:\n`,
    `    judgments = client.rerank(${py(b.query)}, [\n`,
    docs.map((d) => `        ${d},\n`).join(""),
    "    ])\n",
    "for j in sorted(judgments, key=lambda j: j.score, reverse=True):\n",
    "    print(j.index, j.relevant, round(j.score, 4))\n",
  ].join("");
}

async function copy(text, what) {
  const pre = $("snippet");
  pre.textContent = text;
  pre.hidden = false;
  try {
    await navigator.clipboard.writeText(text);
    setStatus(`${what} copied.`);
  } catch (e) {
    // no clipboard API (plain http on another host): select it for Ctrl+C
    const range = document.createRange();
    range.selectNodeContents(pre);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    pre.focus();
    setStatus(`${what} shown below and selected: press Ctrl+C.`);
  }
}

$("form").addEventListener("submit", run);
$("form").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(e);
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("copy-curl").addEventListener("click", () => copy(curlSnippet(), "curl command"));
$("copy-python").addEventListener("click", () => copy(pythonSnippet(), "Python call"));
$("file").addEventListener("change", async () => {
  const f = $("file").files[0];
  fileDocs = null;
  $("passages").disabled = false;
  $("passages").required = true;
  if (!f) return;
  try {
    fileDocs = parseJsonl(await f.text());
    $("passages").disabled = true;
    $("passages").required = false;
    setStatus(`${fileDocs.length} passage(s) from ${f.name}.`);
  } catch (e) {
    $("file").value = "";
    setStatus(`Error: ${e.message}`);
  }
});
fetch(new URL("v1/models", document.baseURI).href, { headers: headers() })
  .then((r) => (r.ok ? r.json() : null))
  .then((m) => { if (m && m.data && m.data[0]) $("model").textContent = m.data[0].id; })
  .catch(() => {});
